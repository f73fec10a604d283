"""Image-fusion quality metrics with the conventions of the VIFB benchmark.

Every metric here is implemented from its paper; the *conventions* (colour handling, sums
versus means over the two sources, bits versus nats, quirks of the reference MATLAB code)
follow VIFB (Zhang, Ye, Xiao, CVPR-W 2020) so that numbers are comparable with its published
table. ``tests/test_metrics_vifb.py`` checks all 13 VIFB metrics against the MATLAB values.

Shared conventions
------------------
* Images are arrays ``(H, W)`` (gray) or ``(H, W, 3)`` (RGB), float in [0, 1] as returned
  by :func:`mmaif.data.images.read_image`. Metrics work on the 0–255 scale: values are
  multiplied by 255 and, when they are within 1e-3 of integers (8-bit sources), rounded to
  those integers.
* ``a`` and ``b`` are the two sources (VIF: a = infrared, b = visible). Every metric is
  symmetric in a and b.
* Colour (VIFB's convention): when the fused image is RGB, each metric is computed per channel
  — channel k of the fused image against channel k of each colour source, or against the
  whole of a gray source — and the per-channel values are averaged. When the fused image is
  gray, colour sources are converted to gray with MATLAB's ``rgb2gray`` weights (no rounding).
* Histograms have 256 bins over 0–255.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

from mmaif.classical.filters import gaussian_window
from mmaif.data.images import to_gray

METRIC_NAMES = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR",
                "CE", "EI", "RMSE", "Qcb", "Qcv")
# Sobel correlation kernels giving MATLAB's conv2(x, [-1 0 1; -2 0 2; -1 0 1]) and
# conv2(x, [1 2 1; 0 0 0; -1 -2 -1]): the signs matter for Qabf's orientation at gx == 0.
_SOBEL_X = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
_SOBEL_Y = np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])


# ----------------------------------------------------------------------------- helpers
def to_255(x: np.ndarray) -> np.ndarray:
    """Float [0, 1] image -> float64 on the 0-255 scale (snapped to integers for 8-bit data)."""
    y = np.asarray(x, dtype=np.float64) * 255.0
    r = np.rint(y)
    if y.size and np.abs(y - r).max() < 1e-3:
        return r
    return y


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """MATLAB ``round``: halves go away from zero (numpy rounds them to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _hist256(x: np.ndarray, rounding: Callable = np.floor) -> np.ndarray:
    idx = np.clip(rounding(x), 0, 255).astype(np.int64).ravel()
    return np.bincount(idx, minlength=256).astype(np.float64)


def _filter_valid(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Separable correlation with a symmetric 1-D window, keeping only the 'valid' part."""
    k = len(win) // 2
    y = ndimage.correlate1d(ndimage.correlate1d(x, win, axis=0, mode="constant"),
                            win, axis=1, mode="constant")
    return y[k:x.shape[0] - k, k:x.shape[1] - k]


def _sobel(x: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Sobel responses (gx, gy); ``mode`` is the border rule ('constant' = zeros)."""
    return (ndimage.correlate(x, _SOBEL_X, mode=mode), ndimage.correlate(x, _SOBEL_Y, mode=mode))


def _normalize_255(x: np.ndarray) -> np.ndarray:
    """Min-max stretch to 0-255 and round (Z. Liu's ``normalize1``, used by Qcb and Qcv)."""
    lo, hi = x.min(), x.max()
    if lo == 0 and hi == 0:
        return x.copy()
    if hi == lo:  # MATLAB divides 0/0 here and gets NaN; we return zeros instead
        return np.zeros_like(x)
    return _round_half_away((x - lo) / (hi - lo) * 255.0)


def _radial_frequency(shape: tuple[int, int], scale_rows: float, scale_cols: float) -> np.ndarray:
    """Radius of MATLAB ``freqspace`` (meshgrid) frequencies, in FFT order (ifftshifted)."""
    h, w = shape
    fu = (np.arange(w) - w // 2) * (2.0 / w) * scale_cols
    fv = (np.arange(h) - h // 2) * (2.0 / h) * scale_rows
    r = np.sqrt(fu[None, :] ** 2 + fv[:, None] ** 2)
    return np.fft.ifftshift(r)


def _block_reduce(x: np.ndarray, size: int, fn: Callable) -> np.ndarray:
    """Apply ``fn`` over non-overlapping size x size blocks, zero-padding partial blocks."""
    h, w = x.shape
    ph, pw = -h % size, -w % size
    xp = np.pad(x, ((0, ph), (0, pw)))
    blocks = xp.reshape(xp.shape[0] // size, size, xp.shape[1] // size, size)
    return fn(blocks, axis=(1, 3))


# ----------------------------------------------- single-channel kernels (2-D, 0-255 scale)
def _entropy(f: np.ndarray) -> float:
    p = _hist256(f) / f.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _relative_entropy(s: np.ndarray, f: np.ndarray) -> float:
    ps, pf = _hist256(s, _round_half_away) / s.size, _hist256(f, _round_half_away) / f.size
    m = (ps > 0) & (pf > 0)
    return float((ps[m] * np.log2(ps[m] / pf[m])).sum())


def _mutual_information(s: np.ndarray, f: np.ndarray) -> float:
    def quant(x: np.ndarray) -> np.ndarray:
        lo, hi = x.min(), x.max()
        x = (x - lo) / (hi - lo) if hi != lo else np.zeros_like(x)
        return _round_half_away(x * 255.0).astype(np.int64).ravel()

    joint = np.bincount(quant(s) * 256 + quant(f), minlength=65536).astype(np.float64)

    def ent(h: np.ndarray) -> float:
        p = h[h > 0] / h.sum()
        return float(-(p * np.log(p)).sum())

    j = joint.reshape(256, 256)
    return ent(j.sum(1)) + ent(j.sum(0)) - ent(joint)


def _vifb_mse(s: np.ndarray, f: np.ndarray) -> float:
    """VIFB's 'mse': sqrt(sum of squared differences) / (H*W) — not a mean squared error."""
    return float(np.sqrt(((s - f) ** 2).sum()) / s.size)


def _orientation(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gx == 0, np.pi / 2, np.arctan(gy / np.where(gx == 0, 1.0, gx)))


def _qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    tg, kg, dg, ta, ka, da = 0.9994, -15.0, 0.5, 0.9879, -22.0, 0.8
    fx, fy = _sobel(f, "constant")
    gf, af = np.hypot(fx, fy), _orientation(fx, fy)
    num = den = 0.0
    for s in (a, b):
        sx, sy = _sobel(s, "constant")
        gs, as_ = np.hypot(sx, sy), _orientation(sx, sy)
        with np.errstate(divide="ignore", invalid="ignore"):
            # Strength ratio; the reference code sets it to gF (not 1) where gS == gF.
            g = np.where(gs > gf, gf / np.where(gs > gf, gs, 1.0),
                         np.where(gs == gf, gf, gs / np.where(gf > 0, gf, 1.0)))
        ang = 1.0 - np.abs(as_ - af) / (np.pi / 2)
        q = tg / (1 + np.exp(kg * (g - dg))) * (ta / (1 + np.exp(ka * (ang - da))))
        num += float((q * gs).sum())
        den += float(gs.sum())
    return num / den if den > 0 else float("nan")


def _ssim_mean(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM map (Wang et al. 2004): 11x11 Gaussian, sigma 1.5, 'valid' window, L = 255."""
    if min(x.shape) < 11:
        return float("nan")
    win = gaussian_window(11, 1.5)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _filter_valid(x, win), _filter_valid(y, win)
    sxx = _filter_valid(x * x, win) - mx * mx
    syy = _filter_valid(y * y, win) - my * my
    sxy = _filter_valid(x * y, win) - mx * my
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(m.mean())


def _qcb(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Chen-Blum (2009): contrast-sensitivity filtered local contrast preservation."""
    h, w = f.shape
    r = _radial_frequency((h, w), h / 30.0, w / 30.0)
    csf = np.exp(-(r / 15.3870) ** 2) - 0.7622 * np.exp(-(r / 1.3456) ** 2)
    t = np.arange(-15, 16, dtype=np.float64)

    def kernel(sigma: float) -> np.ndarray:
        g = np.exp(-(t[None, :] ** 2 + t[:, None] ** 2) / (2 * sigma * sigma))
        return g / (2 * np.pi * sigma * sigma)

    g1, g2 = kernel(2.0), kernel(4.0)

    def masked_contrast(x: np.ndarray) -> np.ndarray:
        xf = np.fft.ifft2(np.fft.fft2(_normalize_255(x)) * csf)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.abs(fftconvolve(xf, g1, mode="same") / fftconvolve(xf, g2, mode="same") - 1)
        return c**3 / (c**2 + 1e-4)  # k=h=1, p=3, q=2, Z=1e-4

    ca, cb, cf = masked_contrast(a), masked_contrast(b), masked_contrast(f)
    with np.errstate(divide="ignore", invalid="ignore"):
        qa = np.where(ca < cf, ca / cf, cf / ca)
        qb = np.where(cb < cf, cb / cf, cf / cb)
        wa = ca * ca / (ca * ca + cb * cb)
    return float((wa * qa + (1 - wa) * qb).mean())


def _qcv(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Chen-Varshney (2007): saliency-weighted CSF-filtered error over 16x16 regions (lower is
    better). Mannos-Sakrison CSF; region saliency = sum of gradient magnitude ** 5."""
    a, b, f = _normalize_255(a), _normalize_255(b), _normalize_255(f)
    h, w = f.shape
    r = _radial_frequency((h, w), h / 8.0, w / 8.0)
    csf = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    num = den = 0.0
    for s in (a, b):
        lam = _block_reduce(np.hypot(*_sobel(s, "constant")) ** 5, 16, np.sum)
        err = np.fft.ifft2(np.fft.fft2(s - f) * csf)
        # complex square, as the reference code (its imaginary part is ~1e-15 and dropped)
        d = _block_reduce(err * err, 16, np.mean)
        num += (lam * d).sum()
        den += lam.sum()
    return float(np.real(num / den)) if den > 0 else float("nan")


def _vif_pixel(ref: np.ndarray, dist: np.ndarray) -> float:
    """Pixel-domain multiscale VIF (Sheikh & Bovik, TIP 2006), 4 scales, sigma_n^2 = 2."""
    sigma_n2, eps = 2.0, 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = gaussian_window(n, n / 5.0)
        if scale > 1:
            if min(ref.shape) < n:
                break
            ref, dist = _filter_valid(ref, win)[::2, ::2], _filter_valid(dist, win)[::2, ::2]
        if min(ref.shape) < n:
            break
        mu1, mu2 = _filter_valid(ref, win), _filter_valid(dist, win)
        s1 = np.maximum(_filter_valid(ref * ref, win) - mu1 * mu1, 0)
        s2 = np.maximum(_filter_valid(dist * dist, win) - mu2 * mu2, 0)
        s12 = _filter_valid(ref * dist, win) - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        flat_ref = s1 < eps
        g[flat_ref], sv[flat_ref], s1[flat_ref] = 0, s2[flat_ref], 0
        flat_dist = s2 < eps
        g[flat_dist], sv[flat_dist] = 0, 0
        neg = g < 0
        sv[neg], g[neg] = s2[neg], 0
        sv = np.maximum(sv, eps)
        num += np.log10(1 + g * g * s1 / (sv + sigma_n2)).sum()
        den += np.log10(1 + s1 / sigma_n2).sum()
    return float(num / den) if den > 0 else float("nan")


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    d = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / d) if d > 0 else float("nan")


# ------------------------------------------------------------------- colour handling
def _per_channel(kernel: Callable[..., float], a: np.ndarray, b: np.ndarray,
                 f: np.ndarray) -> float:
    """VIFB's colour rule: per fused channel, against the matching channel of each source."""
    if f.ndim == 2:
        return kernel(to_gray(a), to_gray(b), f)
    vals = [kernel(a if a.ndim == 2 else a[..., k], b if b.ndim == 2 else b[..., k], f[..., k])
            for k in range(f.shape[2])]
    return float(np.mean(vals))


def _channels(f: np.ndarray) -> list[np.ndarray]:
    return [f] if f.ndim == 2 else [f[..., k] for k in range(f.shape[2])]


# ------------------------------------------------------------------ public metrics
def metric_en(a, b, f):
    """EN, entropy in bits of the fused image's 256-bin histogram (values floored); mean over
    channels."""
    return float(np.mean([_entropy(c) for c in _channels(f)]))


def metric_sd(a, b, f):
    """SD (VIFB 'Variance'): population standard deviation of the fused image; mean over
    channels."""
    return float(np.mean([c.std() for c in _channels(f)]))


def metric_sf(a, b, f):
    """SF, spatial frequency sqrt(RF^2 + CF^2), each the sum of squared neighbour differences
    divided by the pixel count. VIFB quirk kept: an RGB image is treated as one H x 3W matrix,
    its channels side by side (so two seams between channels are included)."""
    m = f if f.ndim == 2 else np.concatenate(_channels(f), axis=1)
    rf = (np.diff(m, axis=1) ** 2).sum() / m.size
    cf = (np.diff(m, axis=0) ** 2).sum() / m.size
    return float(np.sqrt(rf + cf))


def metric_ag(a, b, f):
    """AG, average gradient: sum of sqrt((dx^2 + dy^2) / 2) / ((H-1)(W-1)), with MATLAB's
    ``gradient`` (central differences inside, one-sided at borders); mean over channels."""
    vals = []
    for c in _channels(f):
        if min(c.shape) < 2:
            return float("nan")
        dy, dx = np.gradient(c)
        vals.append(np.sqrt((dx * dx + dy * dy) / 2).sum() / ((c.shape[0] - 1) * (c.shape[1] - 1)))
    return float(np.mean(vals))


def metric_ei(a, b, f):
    """EI, edge intensity: mean Sobel gradient magnitude (replicated borders), over all
    channels."""
    return float(np.mean([np.hypot(*_sobel(c, "nearest")).mean() for c in _channels(f)]))


def metric_mi(a, b, f):
    """MI, in nats (natural log), summed over the two sources: MI(a, F) + MI(b, F). Each image
    is min-max stretched to 0-255 and rounded before the 256x256 joint histogram."""
    return _per_channel(lambda x, y, z: _mutual_information(x, z) + _mutual_information(y, z),
                        a, b, f)


def metric_ce(a, b, f):
    """CE, cross entropy (relative entropy, bits) of each source's histogram to the fused one,
    averaged over the two sources (lower is better)."""
    return _per_channel(lambda x, y, z: (_relative_entropy(x, z) + _relative_entropy(y, z)) / 2,
                        a, b, f)


def metric_rmse(a, b, f):
    """RMSE as VIFB computes it: sqrt(sum of squared errors) / (H*W) per source — not the root
    of the mean squared error — averaged over the two sources."""
    return _per_channel(lambda x, y, z: (_vifb_mse(x, z) + _vifb_mse(y, z)) / 2, a, b, f)


def metric_psnr(a, b, f):
    """PSNR to the sources as VIFB computes it: 20 log10(255 / sqrt(m)), m the mean over the two
    sources of VIFB's RMSE term above (so values sit near 60 dB)."""
    def k(x, y, z):
        m = (_vifb_mse(x, z) + _vifb_mse(y, z)) / 2
        return float("inf") if m == 0 else 20 * math.log10(255 / math.sqrt(m))
    return _per_channel(k, a, b, f)


def metric_ssim(a, b, f):
    """SSIM, summed over the two sources: SSIM(a, F) + SSIM(b, F) (range up to 2); each the mean
    of Wang's SSIM map with an 11x11 Gaussian window (sigma 1.5), 'valid' borders, L = 255."""
    return _per_channel(lambda x, y, z: _ssim_mean(x, z) + _ssim_mean(y, z), a, b, f)


def metric_qabf(a, b, f):
    """Qabf (Xydeas & Petrovic 2000): edge-strength and orientation preservation with Sobel
    (zero borders), weighted by source gradient strength; range 0-1."""
    return _per_channel(_qabf, a, b, f)


def metric_qcb(a, b, f):
    """Qcb (Chen & Blum 2009) with Z. Liu's parameters as used by VIFB; range 0-1."""
    return _per_channel(_qcb, a, b, f)


def metric_qcv(a, b, f):
    """Qcv (Chen & Varshney 2007), 16x16 regions, alpha = 5; lower is better."""
    return _per_channel(_qcv, a, b, f)


def metric_vif(a, b, f):
    """VIF (Sheikh & Bovik, pixel-domain multiscale), summed over the two sources:
    VIF(a -> F) + VIF(b -> F)."""
    return _per_channel(lambda x, y, z: _vif_pixel(x, z) + _vif_pixel(y, z), a, b, f)


def metric_scd(a, b, f):
    """SCD (Aslantas & Bendes 2015): corr(F - b, a) + corr(F - a, b), Pearson correlation."""
    return _per_channel(lambda x, y, z: _corr(z - y, x) + _corr(z - x, y), a, b, f)


METRICS: dict[str, Callable[..., float]] = {
    "EN": metric_en, "SD": metric_sd, "SF": metric_sf, "AG": metric_ag, "MI": metric_mi,
    "SCD": metric_scd, "VIF": metric_vif, "Qabf": metric_qabf, "SSIM": metric_ssim,
    "PSNR": metric_psnr, "CE": metric_ce, "EI": metric_ei, "RMSE": metric_rmse,
    "Qcb": metric_qcb, "Qcv": metric_qcv,
}


def blockiness(img: np.ndarray, block: int = 8) -> float:
    """Mean absolute neighbour difference across ``block``-pixel grid lines divided by the
    mean elsewhere (1 = no visible block structure; pixel_shuffle artefacts give 2-3)."""
    x = to_gray(np.asarray(img, np.float64))
    dx, dy = np.abs(np.diff(x, axis=1)), np.abs(np.diff(x, axis=0))
    on_x = (np.arange(dx.shape[1]) % block) == block - 1
    on_y = (np.arange(dy.shape[0]) % block) == block - 1
    edge = np.concatenate([dx[:, on_x].ravel(), dy[on_y].ravel()])
    rest = np.concatenate([dx[:, ~on_x].ravel(), dy[~on_y].ravel()])
    if not edge.size or not rest.size:
        return float("nan")
    if rest.mean() == 0:
        return float("inf") if edge.mean() > 0 else float("nan")
    return float(edge.mean() / rest.mean())


def psnr_gt(fused: np.ndarray, gt: np.ndarray) -> float:
    """PSNR against a ground truth: 10 log10(1 / MSE) on [0, 1] images, over all channels."""
    fused, gt = _match_channels(fused, gt)
    mse = float(((np.asarray(fused, np.float64) - np.asarray(gt, np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def ssim_gt(fused: np.ndarray, gt: np.ndarray) -> float:
    """SSIM against a ground truth (Wang et al. 2004, 11x11 Gaussian, 'valid'); mean over
    channels."""
    fused, gt = _match_channels(to_255(fused), to_255(gt))
    pairs = zip(_channels(fused), _channels(gt), strict=True)
    return float(np.mean([_ssim_mean(x, y) for x, y in pairs]))


def _match_channels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[:2] != y.shape[:2]:
        raise ValueError(f"size mismatch: {x.shape[1]}x{x.shape[0]} vs {y.shape[1]}x{y.shape[0]}")
    if x.ndim != y.ndim:
        return to_gray(x), to_gray(y)
    return x, y


def compute_metrics(a: np.ndarray, b: np.ndarray, fused: np.ndarray,
                    gt: np.ndarray | None = None,
                    names: tuple[str, ...] = METRIC_NAMES) -> dict[str, float]:
    """All (or the named) metrics for one fused image; adds PSNR_gt / SSIM_gt when ``gt`` is
    given. Inputs are [0, 1] float images of the same height and width."""
    shapes = {x.shape[:2] for x in (a, b, fused)}
    if len(shapes) != 1:
        raise ValueError(f"images differ in size: {sorted(shapes)}")
    a255, b255, f255 = to_255(a), to_255(b), to_255(fused)
    out = {n: METRICS[n](a255, b255, f255) for n in names}
    if gt is not None:
        out["PSNR_gt"] = psnr_gt(fused, gt)
        out["SSIM_gt"] = ssim_gt(fused, gt)
    return out
