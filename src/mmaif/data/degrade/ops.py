"""Degradation operators: pure functions of (image, rng, params) on float images in [0, 1].

Images are ``(H, W)`` gray or ``(H, W, 3)`` RGB float32, any size down to 1x1. Every operator
returns an array of the same shape with finite values in [0, 1], and is deterministic for a
given rng state and parameters. :data:`OPS` describes each one: its parameter ranges per
severity (slight / moderate / heavy), which sampled values are drawn from, and its place in the
physical order (scene -> exposure -> sensor -> optics -> resampling -> noise -> compression).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

SEVERITIES = ("slight", "moderate", "heavy")
Range = tuple[float, float]


def _f32(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0).astype(np.float32)


def _scale(img: np.ndarray) -> float:
    """Size factor for pixel-sized parameters, relative to a 480-pixel short side."""
    return max(min(img.shape[:2]), 1) / 480.0


def _filter(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    out = cv2.filter2D(img.astype(np.float32), -1, kernel.astype(np.float32),
                       borderType=cv2.BORDER_REPLICATE)
    return out.reshape(img.shape)


# --------------------------------------------------------------------------- general
def gaussian_blur(img, rng, sigma: float):
    """Defocus-like Gaussian blur with standard deviation ``sigma`` px (replicated borders)."""
    sig = (sigma, sigma) + ((0,) * (img.ndim - 2))
    return _f32(ndimage.gaussian_filter(img, sig, mode="nearest"))


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised line kernel of ``length`` px at ``angle`` degrees, anti-aliased."""
    n = int(np.ceil(length)) | 1
    up = 8
    canvas = np.zeros((n * up, n * up), np.float32)
    c, r = (n * up - 1) / 2.0, (length * up - 1) / 2.0
    dx, dy = r * np.cos(np.deg2rad(angle)), -r * np.sin(np.deg2rad(angle))
    cv2.line(canvas, (round(c - dx), round(c - dy)),
             (round(c + dx), round(c + dy)), 1.0, thickness=up, lineType=cv2.LINE_AA)
    k = cv2.resize(canvas, (n, n), interpolation=cv2.INTER_AREA)
    return k / k.sum()


def motion_blur(img, rng, length: float, angle: float):
    """Linear camera/object motion: a line PSF of ``length`` px at ``angle`` degrees."""
    return _f32(_filter(img, motion_kernel(length, angle)))


_INTERP = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC,
           "area": cv2.INTER_AREA}


def downsample(img, rng, factor: float, down: str, up: str):
    """Resolution loss: resize down by ``factor`` with ``down`` interpolation, back up with
    ``up``."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w / factor)), max(1, round(h / factor))),
                       interpolation=_INTERP[down])
    return _f32(cv2.resize(small, (w, h), interpolation=_INTERP[up]).reshape(img.shape))


def noise(img, rng, sigma: float, peak: float = 0.0):
    """Sensor noise: Gaussian with std ``sigma`` (on [0, 1]); with ``peak`` > 0, Poisson shot
    noise at ``peak`` photons for white is added first (signal-dependent)."""
    x = img.astype(np.float64)
    if peak > 0:
        x = rng.poisson(np.clip(x, 0, 1) * peak) / peak
    return _f32(x + rng.normal(0.0, sigma, img.shape))


def jpeg(img, rng, quality: float):
    """JPEG compression at ``quality`` (OpenCV/libjpeg, 4:2:0 chroma for colour)."""
    q = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    bgr = q[..., ::-1] if q.ndim == 3 else q
    _, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY,
                                                               round(quality)])
    dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    dec = dec[..., ::-1] if dec.ndim == 3 else dec
    return _f32(dec.reshape(img.shape).astype(np.float32) / 255.0)


def _streak_layer(shape, rng, count, length, angle, jitter, width) -> np.ndarray:
    h, w = shape
    layer = np.zeros((h, w), np.float32)
    n = int(count)
    xs, ys = rng.uniform(-0.1 * w, 1.1 * w, n), rng.uniform(-0.1 * h, 1.1 * h, n)
    lens = length * rng.uniform(0.6, 1.4, n)
    angs = np.deg2rad(angle + rng.normal(0, jitter, n))
    vals = rng.uniform(0.5, 1.0, n)
    for x, y, ln, a, v in zip(xs, ys, lens, angs, vals, strict=True):
        dx, dy = ln * np.sin(a), ln * np.cos(a)
        cv2.line(layer, (int(x), int(y)), (int(x + dx), int(y + dy)), float(v),
                 thickness=max(1, round(width)), lineType=cv2.LINE_AA)
    return layer


def _screen(img: np.ndarray, layer: np.ndarray, alpha: float, veil: float = 0.0,
            light: float = 1.0) -> np.ndarray:
    m = np.clip(layer * alpha, 0, 1)
    if img.ndim == 3:
        m = m[..., None]
    x = img * (1 - veil) + veil * light
    return _f32(x * (1 - m) + m * light)


def rain(img, rng, density: float, length: float, angle: float, alpha: float, veil: float):
    """Rain: bright anti-aliased streaks (``density`` per 1000 px, ``length`` px at 480 px
    short side, ``angle`` degrees from vertical), slightly blurred, screened over the image,
    plus a veil that lowers contrast."""
    h, w = img.shape[:2]
    s = _scale(img)
    layer = _streak_layer((h, w), rng, density * h * w / 1000, length * s, angle, 4.0,
                          1 + s * rng.uniform(0, 1))
    layer = cv2.GaussianBlur(layer, (0, 0), 0.6, borderType=cv2.BORDER_REPLICATE)
    return _screen(img, layer.reshape(h, w), alpha, veil, 0.9)


def snow(img, rng, density: float, size: float, motion: float, alpha: float, veil: float):
    """Snow: flakes of radius up to ``size`` px (at 480 px short side), ``density`` per 1000 px,
    some defocused, smeared by ``motion`` px of fall, screened over the image with a veil."""
    h, w = img.shape[:2]
    s = _scale(img)
    layer = np.zeros((h, w), np.float32)
    n = int(density * h * w / 1000)
    radii = np.maximum(0.5, rng.power(0.5, n) * size * s)
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    vals = rng.uniform(0.6, 1.0, n)
    for x, y, r, v in zip(xs, ys, radii, vals, strict=True):
        cv2.circle(layer, (int(x), int(y)), max(1, round(r)), float(v), -1, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), 0.5 + 0.5 * s, borderType=cv2.BORDER_REPLICATE)
    if motion * s >= 1:
        layer = _filter(layer, motion_kernel(motion * s, 90 + rng.normal(0, 10)))
    return _screen(img, layer.reshape(h, w), alpha, veil, 0.95)


def haze(img, rng, beta: float, airlight: float, depth: np.ndarray | None = None,
         tint: float = 0.0):
    """Atmospheric scattering I = J t + A (1 - t), t = exp(-beta d) (Koschmieder), with depth d
    in [0, 1] (0 = near) from the sample's depth estimate, airlight ``A``; ``tint`` shifts A
    towards blue (positive) or yellow (negative) for colour images."""
    if depth is None:
        from mmaif.data.degrade.depth import FallbackDepth

        depth = FallbackDepth()(img)
    t = np.exp(-beta * np.asarray(depth, np.float64))
    if img.ndim == 3:
        a = airlight + np.array([-tint, 0.0, tint])
        return _f32(img * t[..., None] + a * (1 - t[..., None]))
    return _f32(img * t + airlight * (1 - t))


# ----------------------------------------------------------------- exposure, contrast
def _exposure(img, stops):
    lin = np.clip(img.astype(np.float64), 0, 1) ** 2.2
    return _f32((lin * 2.0 ** stops) ** (1 / 2.2))


def low_exposure(img, rng, stops: float):
    """Under-exposure by ``stops`` in linear light (gamma 2.2)."""
    return _exposure(img, -stops)


def high_exposure(img, rng, stops: float):
    """Over-exposure by ``stops`` in linear light, clipping highlights."""
    return _exposure(img, stops)


def low_contrast(img, rng, factor: float):
    """Contrast reduction towards the image mean by ``factor`` (1 = unchanged)."""
    m = float(img.mean()) if img.size else 0.5
    return _f32(m + (img - m) * factor)


def stripes(img, rng, sigma: float, fraction: float, darkness: float):
    """Infrared fixed-pattern noise: per-column offsets of std ``sigma`` plus dark stripes on
    ``fraction`` of the columns (1-3 px wide), each darkening by up to ``darkness``."""
    w = img.shape[1]
    offs = rng.normal(0, sigma, w)
    n = round(fraction * w)
    for x in rng.integers(0, w, n):
        offs[x:x + int(rng.integers(1, 4))] -= darkness * rng.uniform(0.4, 1.0)
    offs = offs[None, :, None] if img.ndim == 3 else offs[None, :]
    return _f32(img + offs)


# ----------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Op:
    """An operator: ``fn(img, rng, **params)``; ``ranges[severity][param]`` = (lo, hi);
    ``choices`` are categorical parameters drawn uniformly; ``order`` is its physical rank."""

    name: str
    fn: Callable[..., np.ndarray]
    order: int
    ranges: dict[str, dict[str, Range]]
    choices: dict[str, tuple] = field(default_factory=dict)
    uses_depth: bool = False

    def sample(self, rng: np.random.Generator, severity: str) -> dict:
        params: dict = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in
                        self.ranges[severity].items()}
        params.update({k: opts[int(rng.integers(len(opts)))] for k, opts in self.choices.items()})
        return params

    @property
    def doc(self) -> str:
        return " ".join((self.fn.__doc__ or "").split("\n\n")[0].split())


def _sev(**per_param: tuple[Range, Range, Range]) -> dict[str, dict[str, Range]]:
    """Ranges given per parameter as (slight, moderate, heavy) -> per severity dicts."""
    return {s: {k: v[i] for k, v in per_param.items()} for i, s in enumerate(SEVERITIES)}


OPS: dict[str, Op] = {op.name: op for op in [
    Op("haze", haze, 10, _sev(beta=((0.4, 0.9), (0.9, 1.6), (1.6, 2.6)),
                               airlight=((0.7, 0.85), (0.75, 0.9), (0.8, 0.95)),
                               tint=((-0.03, 0.03),) * 3), uses_depth=True),
    Op("rain", rain, 11, _sev(density=((1.0, 2.0), (2.0, 4.0), (4.0, 7.0)),
                               length=((8, 16), (14, 26), (22, 40)), angle=((-20, 20),) * 3,
                               alpha=((0.25, 0.45), (0.4, 0.6), (0.55, 0.8)),
                               veil=((0.0, 0.05), (0.05, 0.12), (0.1, 0.2)))),
    Op("snow", snow, 12, _sev(density=((0.5, 1.0), (1.0, 2.0), (2.0, 4.0)),
                               size=((2.0, 3.0), (2.5, 4.0), (3.5, 6.0)),
                               motion=((0, 3), (2, 6), (4, 10)),
                               alpha=((0.5, 0.7), (0.6, 0.85), (0.75, 1.0)),
                               veil=((0.0, 0.05), (0.05, 0.12), (0.1, 0.2)))),
    Op("low_exposure", low_exposure, 20, _sev(stops=((0.7, 1.3), (1.3, 2.2), (2.2, 3.2)))),
    Op("high_exposure", high_exposure, 21, _sev(stops=((0.5, 1.0), (1.0, 1.8), (1.8, 2.8)))),
    Op("low_contrast", low_contrast, 22, _sev(factor=((0.65, 0.8), (0.45, 0.65), (0.25, 0.45)))),
    Op("stripes", stripes, 30, _sev(sigma=((0.005, 0.015), (0.015, 0.03), (0.03, 0.05)),
                                     fraction=((0.01, 0.03), (0.03, 0.06), (0.06, 0.12)),
                                     darkness=((0.05, 0.12), (0.12, 0.25), (0.25, 0.45)))),
    Op("gaussian_blur", gaussian_blur, 40, _sev(sigma=((0.6, 1.2), (1.2, 2.2), (2.2, 4.0)))),
    Op("motion_blur", motion_blur, 41, _sev(length=((3, 7), (7, 13), (13, 25)),
                                             angle=((0, 180),) * 3)),
    Op("downsample", downsample, 50, _sev(factor=((1.5, 2.0), (2.0, 3.0), (3.0, 4.5))),
       choices={"down": ("nearest", "linear", "cubic", "area"), "up": ("linear", "cubic")}),
    Op("noise", noise, 60, _sev(sigma=((0.01, 0.03), (0.03, 0.07), (0.07, 0.14))),
       choices={"peak": (0.0, 0.0, 30.0, 100.0)}),  # half Gaussian only, half shot noise too
    Op("jpeg", jpeg, 70, _sev(quality=((60, 85), (35, 60), (10, 35)))),
]}


def apply_op(name: str, img: np.ndarray, params: dict, rng: np.random.Generator,
             depth: np.ndarray | None = None) -> np.ndarray:
    """Apply operator ``name`` with recorded ``params``; ``depth`` feeds depth-aware ones."""
    op = OPS[name]
    kw = dict(params)
    if op.uses_depth:
        kw["depth"] = depth
    return op.fn(np.asarray(img, np.float32), rng, **kw)
