"""Classical single-degradation fixes and the ``two-stage`` baseline (restore, then fuse).

The baseline knows which degradations were applied to which input (an oracle on the *names*
and targets, as in the paper's two-stage comparisons) but not their parameters: every fix
estimates what it needs from the image. Fixes run in the reverse of the physical order.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from mmaif.classical.filters import guided_filter
from mmaif.classical.fusion import fuse_arrays
from mmaif.data.degrade.names import names_from_ops
from mmaif.data.degrade.ops import OPS


def _per_channel(fn, img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return fn(img)
    return np.stack([fn(img[..., c]) for c in range(img.shape[2])], axis=-1)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def noise_sigma(img: np.ndarray) -> float:
    """Noise std estimate (Immerkaer 1996, fast Laplacian-based), on [0, 1]."""
    if min(img.shape[:2]) < 3:
        return 0.0
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    chans = [img] if img.ndim == 2 else [img[..., c] for c in range(img.shape[2])]
    est = [np.abs(ndimage.convolve(c.astype(np.float64), k)[1:-1, 1:-1]).mean() for c in chans]
    return float(np.sqrt(np.pi / 2) * np.mean(est) / 6)


def denoise(img: np.ndarray) -> np.ndarray:
    h = max(1.0, 255 * noise_sigma(img) * 1.2)
    if img.ndim == 2:
        out = cv2.fastNlMeansDenoising(_u8(img), None, h, 7, 21)
    else:
        out = cv2.fastNlMeansDenoisingColored(_u8(img), None, h, h, 7, 21)
    return out.astype(np.float32) / 255


def sharpen(img: np.ndarray, sigma: float = 2.0, amount: float = 1.0) -> np.ndarray:
    sig = (sigma, sigma) + ((0,) if img.ndim == 3 else ())
    return np.clip(img + amount * (img - ndimage.gaussian_filter(img, sig)), 0, 1)


def dehaze(img: np.ndarray, patch: int = 15, omega: float = 0.95) -> np.ndarray:
    """Dark channel prior (He, Sun, Tang, CVPR 2009) with guided-filter refinement."""
    rgb = img if img.ndim == 3 else img[..., None]
    dark = ndimage.minimum_filter(rgb.min(-1), size=patch, mode="nearest")
    n = max(1, dark.size // 1000)
    idx = np.argsort(dark.ravel())[-n:]
    airlight = rgb.reshape(-1, rgb.shape[-1])[idx].max(0).clip(0.05, 1)
    t = 1 - omega * ndimage.minimum_filter((rgb / airlight).min(-1), size=patch, mode="nearest")
    t = guided_filter(rgb.mean(-1).astype(np.float64), t, 30, 1e-3).clip(0.1, 1)
    out = (rgb - airlight) / t[..., None] + airlight
    out = np.clip(out, 0, 1)
    return out if img.ndim == 3 else out[..., 0]


def auto_exposure(img: np.ndarray, target: float = 0.45) -> np.ndarray:
    m = float(np.clip(img.mean(), 1e-3, 0.999))
    return np.clip(img, 0, 1) ** (np.log(target) / np.log(m))


def stretch(img: np.ndarray, target_std: float = 0.18, max_gain: float = 3.0) -> np.ndarray:
    """Contrast back up around the mean to a typical natural-image spread."""
    m, s = float(img.mean()), float(img.std())
    gain = min(max_gain, target_std / max(s, 1e-4)) if s < target_std else 1.0
    return np.clip(m + (img - m) * gain, 0, 1)


def destripe(img: np.ndarray) -> np.ndarray:
    """Remove column offsets: column means minus their smooth trend."""
    g = img if img.ndim == 2 else img.mean(-1)
    col = g.mean(0)
    offset = col - ndimage.median_filter(col, size=9, mode="nearest")
    return np.clip(img - (offset[None, :, None] if img.ndim == 3 else offset[None, :]), 0, 1)


def median(img: np.ndarray, size: int = 5) -> np.ndarray:
    return _per_channel(lambda c: ndimage.median_filter(c, size=size, mode="nearest"), img)


def deblock(img: np.ndarray) -> np.ndarray:
    return _per_channel(lambda c: cv2.bilateralFilter(c.astype(np.float32), 5, 0.08, 3), img)


FIXES = {
    "noise": denoise, "gaussian_blur": sharpen, "motion_blur": sharpen,
    "downsample": lambda x: sharpen(x, 1.5, 0.8), "jpeg": deblock, "haze": dehaze,
    "rain": median, "snow": median, "low_exposure": auto_exposure,
    "high_exposure": auto_exposure, "low_contrast": stretch, "stripes": destripe,
}


def restore(img: np.ndarray, names: list[str]) -> np.ndarray:
    """Apply the fix of each named degradation, last applied first."""
    for name in sorted(names, key=lambda n: OPS[n].order, reverse=True):
        img = FIXES[name](np.asarray(img, np.float32)).astype(np.float32)
    return np.clip(img, 0, 1)


def candidates(a: np.ndarray, b: np.ndarray, names: dict[str, list[str]],
               teacher: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The classical candidates of a pair: each input restored from the degradations named for
    it (``names = {"a": [...], "b": [...]}``; an input with none is returned as it is), and,
    with a ``teacher`` method, the teacher's fusion of the two (what ``two-stage`` outputs)."""
    fa = restore(a, names.get("a", [])) if names.get("a") else np.asarray(a, np.float32)
    fb = restore(b, names.get("b", [])) if names.get("b") else np.asarray(b, np.float32)
    return fa, fb, (fuse_arrays(fa, fb, teacher) if teacher else None)


def head_candidates(a: np.ndarray, b: np.ndarray, names: dict[str, list[str]],
                    teacher: str | None, named_only: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """What a model's gates read (training and inference alike): :func:`candidates` plus
    whether the teacher gate is open. With ``named_only`` and nothing named, the teacher is
    not run: the fixes' mean stands in for it (its evidence maps still fill the tokens) and
    the gate is closed."""
    on = not named_only or bool(names.get("a") or names.get("b"))
    fa, fb, ts = candidates(a, b, names, teacher if on else None)
    if teacher and not on:  # a gray input broadcasts over the colour one's channels
        ts = ((fa[..., None] if fa.ndim < fb.ndim else fa)
              + (fb[..., None] if fb.ndim < fa.ndim else fb)) / 2
    return fa, fb, ts, on


def two_stage(a: np.ndarray, b: np.ndarray, ops: list[dict], method: str = "gff") -> np.ndarray:
    """Restore each input from the degradations applied to it, then fuse with ``method`` (the
    task's teacher in ``mmaif eval``)."""
    return candidates(a, b, names_from_ops(ops), method)[2]
