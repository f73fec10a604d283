"""Checks against VIFB's published results (a local copy of its fused images and metric table).

``root`` is a folder with ``input/{ir,vi}/<image>.jpg``, ``fused/<image>_<method>.jpg`` and
``metrics/vifb_metrics_per_image.csv`` (VIFB @ 22b2ea9, as staged in ``../shared/reference``).
Used by the tests and by ``benchmarks/vifb_reference.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from mmaif.classical import filters as classical
from mmaif.data.images import to_gray, to_rgb
from mmaif.evaluation.metrics import compute_metrics, psnr_gt

# VIFB column -> our metric key
VIFB_COLUMNS = {"Cross_entropy": "CE", "Entropy": "EN", "Mutinf": "MI", "Psnr": "PSNR",
                "Avg_gradient": "AG", "Edge_intensity": "EI", "Qabf": "Qabf", "Variance": "SD",
                "Spatial_frequency": "SF", "Rmse": "RMSE", "Ssim": "SSIM", "Qcb": "Qcb",
                "Qcv": "Qcv"}
# Pairs whose IR JPEG is 1-channel: VIFB's GFF loader mis-stacked them (see gff_vs_vifb).
GRAY_IR_PAIRS = ("manWalking", "running", "walking2", "walkingnight")


def load_jpeg(path: Path) -> np.ndarray:
    """Decode as VIFB's MATLAB did (Pillow matches imread here): float [0, 1], channels kept."""
    return np.asarray(Image.open(path), dtype=np.float64) / 255.0


def metric_deviations(root: str | Path, limit: int | None = None):
    """Yield (image, method, column, reference, ours, relative deviation) for every metric of
    every published fused image (a = IR, b = visible)."""
    root = Path(root)
    with open(root / "metrics" / "vifb_metrics_per_image.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["fused_image_included"] == "yes"]
    for r in rows[:limit]:
        ir = load_jpeg(root / "input" / "ir" / f"{r['image']}.jpg")
        vi = load_jpeg(root / "input" / "vi" / f"{r['image']}.jpg")
        fused = load_jpeg(root / "fused" / f"{r['image']}_{r['method']}.jpg")
        ours = compute_metrics(ir, vi, fused, names=tuple(VIFB_COLUMNS.values()))
        for col, key in VIFB_COLUMNS.items():
            ref = float(r[col])
            yield r["image"], r["method"], col, ref, ours[key], abs(ours[key] - ref) / abs(ref)


def gff_vs_vifb(root: str | Path, reproduce_loader_bug: bool = True) -> dict[str, float]:
    """PSNR (dB) of our GFF against VIFB's published GFF output, per image.

    VIFB ran the authors' colour GFF (weights from the luma of each source, two-scale fusion per
    RGB channel) on (visible, IR replicated to RGB). For the 4 pairs whose IR JPEG is 1-channel,
    its ``load_images.m`` indexes a 4-D array with 3 subscripts: the IR overwrites the visible
    image's green channel and the second source stays black. With ``reproduce_loader_bug`` we
    feed our GFF the same input for those 4, so every published image is a fair check;
    without it, those 4 are compared against what VIFB should have computed.
    """
    root = Path(root)
    out = {}
    for p in sorted((root / "fused").glob("*_GFF.jpg")):
        name = p.name[: -len("_GFF.jpg")]
        ir = load_jpeg(root / "input" / "ir" / f"{name}.jpg")
        vi = load_jpeg(root / "input" / "vi" / f"{name}.jpg")
        if ir.ndim == 2:
            if reproduce_loader_bug:
                vi = vi.copy()
                vi[..., 1] = ir
                ir = np.zeros_like(vi)
            else:
                ir = to_rgb(ir)
        stack = np.stack([vi, ir])
        guides = np.round(to_gray(stack) * 255) / 255  # MATLAB rgb2gray(uint8) rounds
        out[name] = psnr_gt(classical.gff(stack, guides), load_jpeg(p))
    return out
