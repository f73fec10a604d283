"""Contact sheets: a grid image, one row per sample (A, B, GT), captioned with the prompt and
the applied degradations, so a person can look at what was synthesized."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmaif.data.degrade.pipeline import describe
from mmaif.data.images import (
    atomic_write_bytes,
    encode_image,
    read_image,
    resize_to,
    to_rgb,
)


def _tile(path: Path, height: int) -> np.ndarray:
    img = to_rgb(read_image(path).data)
    w = max(1, round(img.shape[1] * height / img.shape[0]))
    return resize_to(img, (w, height))


def contact_sheet(rows: list[dict], folder: str | Path, path: str | Path, max_rows: int = 24,
                  tile: int = 160, width: int = 1100) -> Path:
    """Render up to ``max_rows`` samples of a synthesis folder into one image at ``path``."""
    folder = Path(folder)
    font = ImageFont.load_default(size=13)
    strips = []
    for r in rows[:max_rows]:
        tiles = [_tile(folder / k / f"{r['id']}.png", tile) for k in ("a", "b", "gt")]
        gap = np.ones((tile, 6, 3), np.float32)
        strip = np.concatenate([t for x in tiles for t in (x, gap)][:-1], axis=1)
        strip = strip[:, :width] if strip.shape[1] > width else np.pad(
            strip, ((0, 0), (0, width - strip.shape[1]), (0, 0)), constant_values=1.0)
        caption = f"{r['id']} {r['task'].upper()}  {describe(r['ops'])}\n" + "\n".join(
            textwrap.wrap(r["prompt"], 150))
        lines = caption.count("\n") + 1
        canvas = Image.new("RGB", (width, 16 * lines + 6), "white")
        ImageDraw.Draw(canvas).multiline_text((4, 3), caption, fill="black", font=font,
                                              spacing=3)
        text = np.asarray(canvas, np.float32) / 255
        strips += [text, strip, np.ones((10, width, 3), np.float32)]
    if not strips:
        raise ValueError("no samples to draw")
    sheet = np.concatenate(strips, axis=0)
    path = Path(path)
    atomic_write_bytes(path, encode_image(sheet, path.suffix, quality=85))
    return path
