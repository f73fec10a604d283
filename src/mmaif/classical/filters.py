"""Classical fusion methods, vectorized: teachers (ground truth) and baselines.

Each method fuses a stack of N registered sources. ``*_gray`` functions take ``(N, H, W)``;
``*_rgb`` functions take ``(N, H, W, 3)``; all values float in [0, 1]. Colour policies (which
function sees which channels) live in :mod:`mmaif.classical.fusion`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mmaif.data.images import to_gray

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
def mertens(images, contrast: float = 1.0, saturation: float = 1.0,
            exposure: float = 0.0) -> np.ndarray:
    """Exposure fusion (Mertens, Kautz, Van Reeth 2007): per source a weight map (Laplacian
    contrast ** ``contrast`` * saturation ** ``saturation`` * well-exposedness ** ``exposure``),
    normalised over the sources, blended in a Laplacian pyramid (``log2(min(H, W))`` levels).
    ``images``: a sequence of (H, W, 3) RGB or (H, W) gray arrays in [0, 1]; float32 result.

    The defaults are OpenCV's ``createMergeMertens()`` (exposure weight 0; contrast on
    ``0.299 B + 0.587 G + 0.114 R``, as OpenCV converts its BGR images with RGB2GRAY), which
    this reproduces to float rounding (the weights in OpenCV's own arithmetic); gray sources
    have no saturation, so their weight is contrast and well-exposedness alone (OpenCV's
    constant zero saturation would make it the plain mean). Memory: one source's pyramid at a
    time, accumulated into the result's."""
    import cv2

    ims = [np.asarray(x, np.float32) for x in images]
    def weight(part):
        return _mertens_weight(part, contrast, saturation if part.ndim == 3 else 0.0, exposure)

    weights = [_in_strips(x, weight) for x in ims]
    total = weights[0].copy()
    for w in weights[1:]:
        total += w
    levels = int(np.log(np.float32(min(ims[0].shape[:2]))) / np.log(np.float32(2)))
    res: list[np.ndarray] = []
    for x, w in zip(ims, weights, strict=True):
        w /= total
        gp, wp = [x], [w]
        for _ in range(levels):
            gp.append(cv2.pyrDown(gp[-1]))
            wp.append(cv2.pyrDown(wp[-1]))
        for lvl in range(levels + 1):
            if lvl < levels:  # a new array: weighted in place
                band = gp[lvl] - _up(gp[lvl + 1], gp[lvl])
                band *= wp[lvl][..., None] if band.ndim == 3 else wp[lvl]
            else:
                band = gp[lvl] * (wp[lvl][..., None] if gp[lvl].ndim == 3 else wp[lvl])
            if len(res) <= lvl:
                res.append(band)
            else:
                res[lvl] += band
        del gp, wp
    for lvl in range(levels, 0, -1):
        res[lvl - 1] += _up(res[lvl], res[lvl - 1])
    return np.clip(res[0], 0.0, 1.0, out=res[0])


def _in_strips(x: np.ndarray, fn, rows: int = 256) -> np.ndarray:
    """``fn`` (a per-pixel map that looks one pixel away, like a 3x3 Laplacian) over bands of
    ``rows`` rows with a one-row halo: the whole image's result, in a bounded working set."""
    h = x.shape[0]
    out = None
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        ya, yb = max(0, y0 - 1), min(h, y1 + 1)
        part = fn(x[ya:yb])
        if out is None:
            out = np.empty((h, *part.shape[1:]), part.dtype)
        out[y0:y1] = part[y0 - ya:y1 - ya]
    return out


def _up(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.pyrUp(x, dstsize=(like.shape[1], like.shape[0]))


def _mertens_weight(x: np.ndarray, wc: float, ws: float, we: float) -> np.ndarray:
    """One source's weight, in OpenCV's float32 arithmetic step for step (its 0-255 -> [0, 1]
    scaling, the gray of its BGR image, the channel mean as a sum times 1/3): where the
    saturation is zero in every source (gray pixels), OpenCV's weights are those rounding
    residues, so only the same arithmetic gives the same fusion."""
    import cv2

    img = (x * np.float32(255)).astype(np.float32) * np.float32(1 / 255)
    if x.ndim == 3:
        bgr = np.ascontiguousarray(img[..., ::-1])
        gray = cv2.cvtColor(bgr, cv2.COLOR_RGB2GRAY)   # as OpenCV does: 0.299 B + 0.587 G + ...
    else:
        gray = img
    w = np.abs(cv2.Laplacian(np.ascontiguousarray(gray), cv2.CV_32F)) ** wc
    if ws and x.ndim == 3:
        b, g, r = bgr[..., 0], bgr[..., 1], bgr[..., 2]
        mean = (b + g + r) * np.float32(1 / 3)
        sat = (b - mean) ** 2 + (g - mean) ** 2 + (r - mean) ** 2
        w *= np.sqrt(sat) ** ws
    if we:
        e = np.exp(-((img - 0.5) ** 2) / np.float32(0.08))
        w *= (e.prod(-1) if x.ndim == 3 else e) ** we
    return w + np.float32(1e-12)


# ------------------------------------------------------------------- Laplacian pyramid
def laplacian_gray(images: np.ndarray, levels: int = 5) -> np.ndarray:
    """Laplacian-pyramid fusion (Burt & Adelson 1983): per level keep the coefficient with the
    largest magnitude; average the coarsest Gaussian level."""
    import cv2

    images = np.asarray(images, np.float32)
    h, w = images.shape[1:3]
    levels = max(0, min(levels, int(np.log2(max(1, min(h, w)))) - 2))
    pyrs = []
    for im in images:
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
    images = np.asarray(images, np.float32)
    return np.stack([laplacian_gray(images[..., c]) for c in range(3)], axis=-1)
