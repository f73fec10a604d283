"""Fusing a pair with a classical method under a colour policy.

Colour policies:

* ``auto`` (default): gray + colour -> fuse the gray image with the colour image's luminance
  (Y of full-range BT.601 YCbCr) and keep the colour image's chroma; colour + colour -> fuse
  luminance, and blend each chroma channel weighted by its distance from neutral (0.5), so the
  more saturated source wins; gray + gray -> gray. Methods that are defined on colour images
  (Mertens) fuse colour + colour natively.
* ``per-channel``: gray sources are replicated to RGB and the method fuses RGB images — each
  channel on its own for Laplacian, with weights from luminance for GFF as in the authors' code
  (how VIFB and several benchmarks ran their baselines).

The output always has the inputs' height and width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmaif.classical import filters as classical
from mmaif.data.images import to_rgb
from mmaif.errors import InputError

COLOUR_MODES = ("auto", "per-channel")

# Full-range BT.601 (JPEG) YCbCr, Cb/Cr centred on 0.5.
_RGB2YCC = np.array([[0.299, 0.587, 0.114],
                     [-0.168735892, -0.331264108, 0.5],
                     [0.5, -0.418687589, -0.081312411]])
_YCC2RGB = np.linalg.inv(_RGB2YCC)


def rgb_to_ycbcr(x: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> (..., 3) YCbCr, chroma centred on 0.5."""
    y = x @ _RGB2YCC.T
    y[..., 1:] += 0.5
    return y


def ycbcr_to_rgb(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[..., 1:] -= 0.5
    return np.clip(x @ _YCC2RGB.T, 0.0, 1.0)


def blend_chroma(c: np.ndarray) -> np.ndarray:
    """Blend chroma planes ``(N, H, W)`` weighted by |c - 0.5| (neutral sources count less)."""
    w = np.abs(c - 0.5)
    s = w.sum(0)
    mean = c.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (w * c).sum(0) / s
    return np.where(s > 1e-8, out, mean)


@dataclass(frozen=True)
class Method:
    """A classical method: gray stack -> gray, RGB stack -> RGB; ``native_colour`` says whether
    the auto policy should hand colour + colour pairs to ``rgb`` directly."""

    gray: Callable[[np.ndarray], np.ndarray]
    rgb: Callable[[np.ndarray], np.ndarray]
    native_colour: bool = False
    about: str = ""


METHODS: dict[str, Method] = {
    "gff": Method(classical.gff, classical.gff, about="guided-filtering fusion (Li et al. 2013)"),
    "mertens": Method(classical.mertens_gray, classical.mertens_rgb, native_colour=True,
                      about="exposure fusion (Mertens et al. 2007), for MEF"),
    "laplacian": Method(classical.laplacian_gray, classical.laplacian_rgb,
                        about="Laplacian pyramid, max-magnitude detail"),
}

_MIN_SIDE = 8  # pyramids need a few pixels; smaller inputs are edge-padded and cropped back


def fuse_arrays(a: np.ndarray, b: np.ndarray, method: str = "gff",
                colour: str = "auto") -> np.ndarray:
    """Fuse two registered images (float [0, 1], (H, W) or (H, W, 3)) with a classical method.

    Returns float32 of the inputs' height and width: gray if both are gray, else RGB.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if colour not in COLOUR_MODES:
        raise InputError(f"unknown colour mode {colour!r}; choose one of {', '.join(COLOUR_MODES)}")
    if a.shape[:2] != b.shape[:2]:
        raise InputError(f"image sizes differ: {a.shape[1]}x{a.shape[0]} vs "
                         f"{b.shape[1]}x{b.shape[0]}; register/crop them, or pass --resize")
    h, w = a.shape[:2]
    ph, pw = max(0, _MIN_SIDE - h), max(0, _MIN_SIDE - w)
    if ph or pw:
        def pad(x):
            return np.pad(x, ((0, ph), (0, pw)) + ((0, 0),) * (x.ndim - 2), mode="edge")
        return fuse_arrays(pad(a), pad(b), method, colour)[:h, :w]
    m = METHODS[method]
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a64.ndim == 2 and b64.ndim == 2:
        return m.gray(np.stack([a64, b64])).astype(np.float32)
    if colour == "per-channel" or (m.native_colour and a64.ndim == 3 and b64.ndim == 3):
        rgb = [to_rgb(x) for x in (a64, b64)]
        return m.rgb(np.stack(rgb)).astype(np.float32)
    ycc = [rgb_to_ycbcr(x) if x.ndim == 3 else None for x in (a64, b64)]
    lum = np.stack([x if c is None else c[..., 0] for x, c in zip((a64, b64), ycc, strict=True)])
    y = m.gray(lum)
    chroma = np.stack([c[..., 1:] for c in ycc if c is not None])  # (1 or 2, H, W, 2)
    cbcr = chroma[0] if len(chroma) == 1 else np.stack(
        [blend_chroma(chroma[..., k]) for k in range(2)], axis=-1)
    return ycbcr_to_rgb(np.concatenate([y[..., None], cbcr], axis=-1)).astype(np.float32)
