"""Depth for the haze operator: a :class:`DepthEstimator` maps an image to depth in [0, 1]
(0 = near, 1 = far). Nothing is ever downloaded.

* :class:`FallbackDepth` (default) — a heuristic, not a measurement: the image row (scenes are
  usually farther towards the top) blended with the dark channel (He et al., CVPR 2009: bright,
  colourless regions such as sky tend to be distant), smoothed.
* :class:`DepthAnythingDepth` — a local Depth Anything folder (transformers format), run on the
  CPU or GPU; preprocessing is done here so torchvision is never needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import ndimage

from mmaif.data.images import to_rgb
from mmaif.errors import InputError


class DepthEstimator(Protocol):
    name: str

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, 3) float in [0, 1] -> (H, W) float depth in [0, 1], 0 = near."""


def _normalise(d: np.ndarray) -> np.ndarray:
    lo, hi = float(d.min()), float(d.max())
    return np.zeros_like(d) if hi - lo < 1e-8 else (d - lo) / (hi - lo)


class FallbackDepth:
    """Heuristic depth from image height and the dark channel (see module docstring)."""

    name = "fallback"

    def __init__(self, row_weight: float = 0.6, patch: int = 15):
        self.row_weight, self.patch = row_weight, patch

    def __call__(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        dark = img.min(axis=2) if img.ndim == 3 else img
        dark = ndimage.minimum_filter(dark, size=min(self.patch, max(h, w)), mode="nearest")
        rows = np.broadcast_to(np.linspace(1.0, 0.0, h)[:, None], (h, w))
        d = self.row_weight * rows + (1 - self.row_weight) * _normalise(dark.astype(np.float64))
        d = ndimage.gaussian_filter(d, max(1.0, min(h, w) / 40), mode="nearest")
        return _normalise(d).astype(np.float32)


class DepthAnythingDepth:
    """Depth Anything (v1/v2) from a local transformers folder (config.json + safetensors).

    The model predicts relative inverse depth; we normalise it and return 1 - disparity.
    Input is resized so both sides are multiples of 14 near ``size`` on the short side and
    normalised with ImageNet statistics, as the model's own processor does.
    """

    name = "depth-anything"

    def __init__(self, folder: str | Path, device: str | None = None, size: int = 518):
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise InputError(f"{folder}: not a transformers model folder (no config.json)")
        import torch
        from transformers import AutoModelForDepthEstimation
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForDepthEstimation.from_pretrained(
            folder, local_files_only=True, use_safetensors=True).to(self.device).eval()
        self.size = size
        self.name = f"depth-anything:{folder.name}"

    def __call__(self, img: np.ndarray) -> np.ndarray:
        import cv2
        import torch

        h, w = img.shape[:2]
        rgb = to_rgb(img)
        s = self.size / min(h, w)
        th, tw = (max(14, round(v * s / 14) * 14) for v in (h, w))
        x = cv2.resize(rgb.astype(np.float32), (tw, th), interpolation=cv2.INTER_CUBIC)
        x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
        t = torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32)).to(self.device)
        with torch.no_grad():
            disp = self.model(pixel_values=t).predicted_depth  # (1, h', w')
        disp = torch.nn.functional.interpolate(disp[:, None], size=(h, w), mode="bilinear",
                                               align_corners=False)[0, 0].float().cpu().numpy()
        return (1.0 - _normalise(disp.astype(np.float64))).astype(np.float32)


def make_depth_estimator(spec: str | None, **kw) -> DepthEstimator:
    """``None`` / 'fallback' -> :class:`FallbackDepth`; a folder path -> Depth Anything."""
    if spec in (None, "", "fallback"):
        return FallbackDepth()
    return DepthAnythingDepth(spec, **kw)
