"""Small self-contained HTML pages: image grids with captions and metric tables."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

from mmaif.data.images import atomic_write_bytes

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em} h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ddd}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;max-width:320px} figure img{width:100%;image-rendering:auto;border:1px solid #ccc}
figcaption{font-size:.85em;text-align:center;color:#444}
table{border-collapse:collapse;font-size:.85em;margin-top:.6em}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left} .note{color:#555;font-size:.9em}
"""


@dataclass
class Section:
    """One block of a page: a heading, a note, images (caption, relative path) and a table
    (row label -> {column -> value})."""

    title: str
    note: str = ""
    images: list[tuple[str, str]] = field(default_factory=list)
    table: dict[str, dict[str, float | str]] = field(default_factory=dict)


def _fmt(v: float | str) -> str:
    if isinstance(v, str):
        return html.escape(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.4g}"


def render(title: str, intro: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style><h1>{html.escape(title)}</h1>",
             f"<p class='note'>{html.escape(intro)}</p>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.note:
            parts.append(f"<p class='note'>{html.escape(s.note)}</p>")
        if s.images:
            figs = "".join(f"<figure><img src='{html.escape(p)}' loading='lazy' "
                           f"alt='{html.escape(c)}'><figcaption>{html.escape(c)}</figcaption>"
                           "</figure>" for c, p in s.images)
            parts.append(f"<div class='grid'>{figs}</div>")
        if s.table:
            cols = list(dict.fromkeys(k for row in s.table.values() for k in row))
            head = "".join(f"<th>{html.escape(c)}</th>" for c in ["", *cols])
            body = "".join(
                "<tr><td>" + html.escape(label) + "</td>"
                + "".join(f"<td>{_fmt(row.get(c, float('nan')))}</td>" for c in cols) + "</tr>"
                for label, row in s.table.items())
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
    return "\n".join(parts) + "\n"


def write_page(path: str | Path, title: str, intro: str, sections: list[Section]) -> Path:
    path = Path(path)
    atomic_write_bytes(path, render(title, intro, sections).encode("utf-8"))
    return path
