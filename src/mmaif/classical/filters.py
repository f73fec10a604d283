"""Classical fusion methods, vectorized: teachers (ground truth) and baselines.

Each method fuses a stack of N registered sources. ``*_gray`` functions take ``(N, H, W)``;
``*_rgb`` functions take ``(N, H, W, 3)``; all values float in [0, 1]. Colour policies (which
function sees which channels) live in :mod:`mmaif.classical.fusion`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mmaif.data.images import to_gray, to_rgb

_LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


# ------------------------------------------------------------------------------ filters
def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps (MATLAB fspecial('gaussian') is its outer
    product)."""
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(t * t) / (2.0 * sigma * sigma))
    return g / g.sum()


def box_mean(x: np.ndarray, r: int, axes: tuple[int, int] = (-2, -1)) -> np.ndarray:
    """Mean over a (2r+1)^2 window clipped at the image border (He et al.'s ``boxfilter / N``),
    via cumulative sums: O(1) per pixel for any r, valid for any size down to 1x1."""
    out, count = np.asarray(x, np.float64), None
    for ax in axes:
        n = out.shape[ax]
        c = np.cumsum(out, axis=ax)
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=ax)), c], axis=ax)
        hi = np.minimum(np.arange(n) + r + 1, n)
        lo = np.maximum(np.arange(n) - r, 0)
        out = np.take(c, hi, axis=ax) - np.take(c, lo, axis=ax)
        cnt = (hi - lo).astype(np.float64)
        shape = [1] * out.ndim
        shape[ax] = n
        cnt = cnt.reshape(shape)
        count = cnt if count is None else count * cnt
    return out / count


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """Gray-guide guided filter (He, Sun, Tang, ECCV 2010 / TPAMI 2013) over the last two axes."""
    mean_i, mean_p = box_mean(guide, r), box_mean(src, r)
    var_i = box_mean(guide * guide, r) - mean_i * mean_i
    cov_ip = box_mean(guide * src, r) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, r) * guide + box_mean(b, r)


def _separable(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Correlate the last two axes with 1-D kernel ``k`` (replicated borders, as imfilter)."""
    y = ndimage.correlate1d(x, k, axis=-1, mode="nearest")
    return ndimage.correlate1d(y, k, axis=-2, mode="nearest")


# --------------------------------------------------------------------------------- GFF
def gff_weights(guides: np.ndarray, r1: int = 45, eps1: float = 0.3, r2: int = 7,
                eps2: float = 1e-6, quantize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """GFF weight maps (Li, Kang, Hu, TIP 2013) for gray guides ``(N, H, W)``.

    Saliency = |3x3 Laplacian| smoothed by an 11x11 Gaussian (sigma 5); the initial weight of a
    source is 1 where its saliency is the largest; guided filtering with the source as guide
    refines it for the base (r1, eps1) and detail (r2, eps2) layers. ``quantize`` keeps the
    authors' clip-and-round of the weights to 1/255 steps.
    """
    n = guides.shape[0]
    h = np.abs(np.stack([ndimage.correlate(g, _LAPLACIAN, mode="nearest") for g in guides]))
    s = _separable(h, gaussian_window(11, 5.0))
    p = (np.argmax(s, axis=0)[None] == np.arange(n)[:, None, None]).astype(np.float64)
    out = []
    for r, eps in ((r1, eps1), (r2, eps2)):
        w = guided_filter(guides, p, r, eps)
        w = np.clip(w, 0.0, 1.0)
        if quantize:
            w = np.floor(w * 255 + 0.5) / 255
        w = w + 1e-12
        out.append(w / w.sum(axis=0, keepdims=True))
    return out[0], out[1]


def gff(images: np.ndarray, guides: np.ndarray | None = None, **kw) -> np.ndarray:
    """Guided-filtering fusion. ``images`` (N, H, W) or (N, H, W, C); ``guides`` (N, H, W)
    default to the images' luma. Colour images share the weights of their luma, as in the
    authors' colour code (and VIFB's runs)."""
    images = np.asarray(images, np.float64)
    colour = images.ndim == 4
    if guides is None:
        guides = to_gray(images) if colour else images
    wb, wd = gff_weights(np.asarray(guides, np.float64), **kw)
    # two-scale decomposition: base = 31x31 mean (replicated borders), detail = rest
    base = _mean31(images, (1, 2))
    detail = images - base
    if colour:
        wb, wd = wb[..., None], wd[..., None]
    return np.clip((wb * base).sum(0) + (wd * detail).sum(0), 0.0, 1.0)


def _mean31(x: np.ndarray, axes: tuple[int, int]) -> np.ndarray:
    k = np.full(31, 1.0 / 31)
    y = ndimage.correlate1d(x, k, axis=axes[0], mode="nearest")
    return ndimage.correlate1d(y, k, axis=axes[1], mode="nearest")


# ----------------------------------------------------------------------------- Mertens
def mertens_rgb(images: np.ndarray) -> np.ndarray:
    """Exposure fusion (Mertens, Kautz, Van Reeth 2007) with OpenCV's implementation:
    contrast, saturation and well-exposedness weights blended in a Laplacian pyramid."""
    import cv2

    merge = cv2.createMergeMertens()
    # OpenCV scales every input by 1/255, float ones included: hand it 0-255 floats.
    bgr = [np.ascontiguousarray(im[..., ::-1].astype(np.float32) * 255) for im in images]
    out = merge.process(bgr)[..., ::-1]
    return np.clip(out, 0.0, 1.0).astype(np.float64)


def mertens_gray(images: np.ndarray) -> np.ndarray:
    """Mertens on gray sources (replicated to RGB; the saturation weight is then constant)."""
    return mertens_rgb(np.stack([to_rgb(x) for x in images]))[..., 0]


# ------------------------------------------------------------------- Laplacian pyramid
def laplacian_gray(images: np.ndarray, levels: int = 5) -> np.ndarray:
    """Laplacian-pyramid fusion (Burt & Adelson 1983): per level keep the coefficient with the
    largest magnitude; average the coarsest Gaussian level."""
    import cv2

    h, w = images.shape[1:3]
    levels = max(0, min(levels, int(np.log2(max(1, min(h, w)))) - 2))
    pyrs = []
    for im in images.astype(np.float32):
        g, lap = im, []
        for _ in range(levels):
            down = cv2.pyrDown(g)
            lap.append(g - cv2.pyrUp(down, dstsize=(g.shape[1], g.shape[0])))
            g = down
        pyrs.append((lap, g))
    out = np.mean([p[1] for p in pyrs], axis=0)
    for lvl in range(levels - 1, -1, -1):
        coeffs = np.stack([p[0][lvl] for p in pyrs])
        pick = np.take_along_axis(coeffs, np.abs(coeffs).argmax(0)[None], 0)[0]
        size = (coeffs.shape[2], coeffs.shape[1])
        out = cv2.pyrUp(out, dstsize=size) + pick
    return np.clip(out, 0.0, 1.0).astype(np.float64)


def laplacian_rgb(images: np.ndarray) -> np.ndarray:
    """Laplacian-pyramid fusion of each RGB channel independently."""
    return np.stack([laplacian_gray(images[..., c]) for c in range(3)], axis=-1)
