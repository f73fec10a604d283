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
    """(..., 3) RGB in [0, 1] -> (..., 3) YCbCr, chroma centred on 0.5 (float32 in, float32
    out; else float64)."""
    y = x @ _RGB2YCC.T.astype(np.float32 if x.dtype == np.float32 else np.float64)
    y[..., 1:] += 0.5
    return y


def ycbcr_to_rgb(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[..., 1:] -= 0.5
    return np.clip(x @ _YCC2RGB.T.astype(np.float32 if x.dtype == np.float32 else np.float64),
                   0.0, 1.0)


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

    gray: Callable[[list[np.ndarray]], np.ndarray]
    rgb: Callable[[list[np.ndarray]], np.ndarray]
    native_colour: bool = False
    about: str = ""
    dtype: type = np.float64  # what the method computes in


METHODS: dict[str, Method] = {
    "gff": Method(classical.gff, classical.gff, about="guided-filtering fusion (Li et al. 2013)"),
    "mertens": Method(classical.mertens, classical.mertens, native_colour=True,
                      about="exposure fusion (Mertens et al. 2007), for MEF", dtype=np.float32),
    "laplacian": Method(classical.laplacian_gray, classical.laplacian_rgb,
                        about="Laplacian pyramid, max-magnitude detail", dtype=np.float32),
}

_MIN_SIDE = 8  # pyramids need a few pixels; smaller inputs are edge-padded and cropped back

# GFF is local: an output pixel depends on inputs within 2 * r1 + 6 = 96 pixels (two box means
# of radius 45 around the saliency's 11x11 Gaussian of a 3x3 Laplacian; the base layer's 31x31
# mean is inside that). Larger images are fused in tiles with that margin, so the result is the
# untiled one (to float rounding) in a bounded working set (float64 planes of one tile).
GFF_MARGIN = 128
GFF_TILE = 1536


def fuse_arrays(a: np.ndarray, b: np.ndarray, method: str = "gff",
                colour: str = "auto") -> np.ndarray:
    """Fuse two registered images (float [0, 1], (H, W) or (H, W, 3)) with a classical method:
    :func:`fuse_stack` of ``[a, b]``."""
    return fuse_stack([a, b], method, colour)


def fuse_stack(images, method: str = "gff", colour: str = "auto") -> np.ndarray:
    """Fuse two or more registered images (float [0, 1], (H, W) or (H, W, 3); an exposure
    bracket, a focus stack) with a classical method; every method is defined for N inputs.

    Returns float32 of the inputs' height and width: gray if all are gray, else RGB. GFF runs
    in tiles of ``GFF_TILE`` pixels (plus ``GFF_MARGIN``) on larger images, with the same
    result.
    """
    images = list(images)
    if len(images) < 2:
        raise InputError(f"{len(images)} image(s): fusion needs two or more")
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if colour not in COLOUR_MODES:
        raise InputError(f"unknown colour mode {colour!r}; choose one of {', '.join(COLOUR_MODES)}")
    h, w = images[0].shape[:2]
    for k, x in enumerate(images[1:], 2):
        if x.shape[:2] != (h, w):
            raise InputError(f"image sizes differ: input 1 is {w}x{h}, input {k} is "
                             f"{x.shape[1]}x{x.shape[0]}; register/crop them, or pass --resize")
    ph, pw = max(0, _MIN_SIDE - h), max(0, _MIN_SIDE - w)
    if ph or pw:
        def pad(x):
            return np.pad(x, ((0, ph), (0, pw)) + ((0, 0),) * (x.ndim - 2), mode="edge")
        return fuse_stack([pad(x) for x in images], method, colour)[:h, :w]
    if method == "gff" and max(h, w) > GFF_TILE + 2 * GFF_MARGIN:
        return fuse_tiled(images, method, colour, GFF_TILE, GFF_MARGIN)
    return fuse_whole(images, method, colour)


def fuse_tiled(images, method: str, colour: str, tile: int, margin: int) -> np.ndarray:
    """:func:`fuse_whole` of a local method tile by tile: each tile's core is cut from the fusion
    of the core plus ``margin`` pixels on every side (clipped at the image's own borders)."""
    h, w = images[0].shape[:2]
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(0, y0 - margin), max(0, x0 - margin)
            yb, xb = min(h, y1 + margin), min(w, x1 + margin)
            part = fuse_whole([x[ya:yb, xa:xb] for x in images], method, colour)
            if out is None:
                out = np.empty((h, w, *part.shape[2:]), np.float32)
            out[y0:y1, x0:x1] = part[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return out


def fuse_whole(images, method: str, colour: str) -> np.ndarray:
    m = METHODS[method]
    images = [np.asarray(x, m.dtype) for x in images]  # no copy when it is already
    if all(x.ndim == 2 for x in images):
        return np.asarray(m.gray(images), np.float32)
    if colour == "per-channel" or (m.native_colour and all(x.ndim == 3 for x in images)):
        return np.asarray(m.rgb([to_rgb(x) for x in images]), np.float32)
    ycc = [rgb_to_ycbcr(x) if x.ndim == 3 else None for x in images]
    lum = [x if c is None else c[..., 0] for x, c in zip(images, ycc, strict=True)]
    y = m.gray(lum)
    chroma = np.stack([c[..., 1:] for c in ycc if c is not None])  # (colour inputs, H, W, 2)
    cbcr = chroma[0] if len(chroma) == 1 else np.stack(
        [blend_chroma(chroma[..., k]) for k in range(2)], axis=-1)
    return ycbcr_to_rgb(np.concatenate([y[..., None], cbcr], axis=-1)).astype(np.float32)
