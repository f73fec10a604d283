"""`mmaif metrics` as functions: the metrics of one fused pair (sources resized to the fused
image's size when asked), of every pair of a dataset root against a folder of fused images,
and the CSV text both `mmaif metrics` and `mmaif eval` write."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from mmaif.data.images import DEFAULT_MAX_PIXELS, READ_EXTS, read_image, resize_to
from mmaif.errors import InputError
from mmaif.evaluation.metrics import METRIC_NAMES, compute_metrics


def csv_text(rows: list[dict], fields: list[str] | None = None) -> str:
    """Rows as CSV (header from ``fields`` or the first row's keys; floats to 6 significant
    digits)."""
    buf = io.StringIO()
    keys = fields or (list(rows[0]) if rows else ["pair"])
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def pair_metrics(a, b, fused, gt=None, resize: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, float]:
    """The fusion metrics of the image file ``fused`` against sources ``a``, ``b`` (and
    ``gt``); a source of another size is an error unless ``resize``."""
    f = read_image(fused, max_pixels=max_pixels).data
    size = (f.shape[1], f.shape[0])
    imgs = []
    for p in (a, b) + ((gt,) if gt else ()):
        x = read_image(p, max_pixels=max_pixels).data
        if (x.shape[1], x.shape[0]) != size:
            if not resize:
                raise InputError(f"sizes differ: {p} is {x.shape[1]}x{x.shape[0]}, fused {fused} "
                                 f"is {size[0]}x{size[1]}; pass --resize to resize sources")
            x = resize_to(x, size)
        imgs.append(x)
    return compute_metrics(imgs[0], imgs[1], f, imgs[2] if gt else None)


def find_fused(folder: Path, name: str) -> Path | None:
    """The fused image of pair ``name`` in ``folder`` (any readable extension), or None."""
    for ext in READ_EXTS:
        for cand in (folder / (name + ext), folder / (name + ext.upper())):
            if cand.is_file():
                return cand
    return None


def folder_metrics(root, fused_dir, task: str | None = None, resize: bool = False,
                   max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True) -> list[dict]:
    """One row per pair of the dataset ``root`` (``name``, ``task``, the metrics of its fused
    image in ``fused_dir``), then their mean; every pair must have its fused image."""
    from tqdm import tqdm

    from mmaif.data.pairs import discover_pairs

    _, pairs = discover_pairs(root, task)
    fdir = Path(fused_dir)
    if not fdir.is_dir():
        raise InputError(f"{fdir}: not a folder of fused images")
    missing = [p.name for p in pairs if find_fused(fdir, p.name) is None]
    if missing:
        raise InputError(f"{len(missing)} pair(s) have no fused image in {fdir} "
                         f"(e.g. {missing[0]}.png)")
    rows = [{"name": p.name, "task": p.task or "",
             **pair_metrics(p.a, p.b, find_fused(fdir, p.name), resize=resize,
                            max_pixels=max_pixels)}
            for p in tqdm(pairs, desc="metrics", unit="pair", file=sys.stderr,
                          disable=not progress)]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in METRIC_NAMES}
    return [*rows, {"name": "mean", "task": "", **mean}]
