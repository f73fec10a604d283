"""Exposure (MEF) and focus (MFF) pairs and stacks rendered from photos: the demo's pairs,
``mmaif stacks`` (training pairs, or N-shot stacks, from scikit-image's bundled photos) and the
stacks ``mmaif eval --stacks`` renders. Exposure shots scale linear light; focus slices blur
what lies away from their focus depth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from mmaif.data.images import fit_within, resize_to, write_image


def photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    return (img.astype(np.float32) / 255.0)[..., :3] if img.ndim == 3 else \
        img.astype(np.float32) / 255.0


def exposure_stack(img: np.ndarray, n: int, stops: float = 2.0) -> list[np.ndarray]:
    """``n`` shots of ``img`` (in [0, 1], display gamma 2.2) from ``-stops`` to ``+stops`` EV,
    evenly spaced, darkest first: linear light scaled by 2^EV and clipped."""
    lin = img.astype(np.float64) ** 2.2
    return [(np.clip(lin * 2.0 ** ev, 0, 1) ** (1 / 2.2)).astype(np.float32)
            for ev in np.linspace(-stops, stops, n)]


def exposure_pair(img: np.ndarray, stops: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """The two-shot :func:`exposure_stack` (-stops, +stops)."""
    under, over = exposure_stack(img, 2, stops)
    return under, over


def depth_map(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth random scene depth in [0, 1] (low-frequency noise, rank-normalised so every
    depth is equally common)."""
    h, w = shape
    d = ndimage.gaussian_filter(rng.standard_normal((h, w)), min(h, w) / 6)
    rank = np.empty(d.size)
    rank[np.argsort(d, axis=None)] = np.arange(d.size)
    return (rank / max(d.size - 1, 1)).reshape(h, w)


def focus_stack(img: np.ndarray, depth: np.ndarray, n: int,
                sigma: float = 3.0) -> list[np.ndarray]:
    """``n`` focus slices of ``img``, nearest first: slice k is in focus over the depth band
    [k / n, (k + 1) / n] (its depth of field), and a pixel at depth d outside it is blurred
    with a Gaussian of sigma ``sigma`` times its distance to the band in bands, so every pixel
    is sharp in the slice of its band."""
    sig3 = (0,) if img.ndim == 3 else ()
    levels = np.linspace(0, sigma * n, 2 * n + 1)  # the blurs a pixel can need, interpolated
    blurred = np.stack([img if s == 0 else ndimage.gaussian_filter(img, (s, s, *sig3))
                        for s in levels])
    yy, xx = np.indices(depth.shape)
    out = []
    for k in range(n):
        need = sigma * np.maximum(0.0, n * np.abs(depth - (k + 0.5) / n) - 0.5)
        pos = np.clip(np.interp(need, levels, np.arange(len(levels))), 0, len(levels) - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, len(levels) - 1)
        t = (pos - lo).astype(np.float32)
        if img.ndim == 3:
            t = t[..., None]
        a, b = blurred[lo, yy, xx], blurred[hi, yy, xx]
        out.append((a * (1 - t) + b * t).astype(np.float32))
    return out


def focus_pair(img: np.ndarray, mask: np.ndarray, sigma: float = 3.0):
    sig = (sigma, sigma) + ((0,) if img.ndim == 3 else ())
    blur = ndimage.gaussian_filter(img, sig)
    m = ndimage.gaussian_filter(mask.astype(np.float32), 4.0)
    if img.ndim == 3:
        m = m[..., None]
    near = m * img + (1 - m) * blur
    far = (1 - m) * img + m * blur
    return near.astype(np.float32), far.astype(np.float32)


# Photos for generated training stacks: scikit-image's bundled images that the demo does not
# show (the demo's astronaut / chelsea / coffee / camera stay unseen by the default model).
STACK_PHOTOS = ("rocket", "hubble_deep_field", "immunohistochemistry", "retina", "coins",
                "clock", "moon", "brick", "grass", "gravel", "cell", "page", "text")


def _stack_photo(name: str, max_side: int = 640) -> np.ndarray:
    img = photo(name)
    size = fit_within(img.shape, max_side)
    return np.clip(resize_to(img, size) if size else img, 0, 1).astype(np.float32)


def _blob_mask(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    kind = int(rng.integers(3))
    if kind == 0:  # a straight boundary at a random angle through a random point
        ang = rng.uniform(0, np.pi)
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        return (np.cos(ang) * (xx - cx) + np.sin(ang) * (yy - cy)) > 0
    if kind == 1:  # an ellipse (a near object)
        cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        ry, rx = rng.uniform(0.15, 0.35) * h, rng.uniform(0.15, 0.35) * w
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    noise = ndimage.gaussian_filter(rng.standard_normal((h, w)), min(h, w) / 8)
    return noise > 0  # irregular regions


def write_photo_stacks(out_dir: str | Path, variants: int = 2, seed: int = 0,
                       shots: int = 2) -> list[str]:
    """Write exposure (MEF) and focus (MFF) stacks rendered from :data:`STACK_PHOTOS`;
    returns their names. Two shots: pairs in the fusion-samples layout (``mef/{under,over}``,
    ``mff/{near,far}``), what ``mmaif synth`` trains on. More: the stack layout, one folder per
    stack with its shots in order (``mef/<name>/shot_0.png`` darkest first,
    ``mff/<name>/slice_0.png`` nearest first). Deterministic in ``seed``."""
    out = Path(out_dir)
    if shots == 2:
        for sub in ("mef/under", "mef/over", "mff/near", "mff/far"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for k, pname in enumerate(STACK_PHOTOS):
        img = _stack_photo(pname)
        for v in range(variants):
            rng = np.random.default_rng([seed, k, v])
            name = f"gen_{pname}_{v}"
            stops = float(rng.uniform(1.0, 2.5))
            if shots == 2:  # the pair draws stay as they were (the training data of the default)
                u, o = exposure_pair(img, stops)
                near, far = focus_pair(img, _blob_mask(img.shape[:2], rng),
                                       float(rng.uniform(1.5, 4.0)))
                files = {"mef/under": u, "mef/over": o, "mff/near": near, "mff/far": far}
                for sub, x in files.items():
                    write_image(out / sub / f"{name}.png", x)
            else:
                sigma = float(rng.uniform(1.5, 4.0))
                exp = exposure_stack(img, shots, stops)
                foc = focus_stack(img, depth_map(img.shape[:2], rng), shots, sigma)
                for task, role, stack in (("mef", "shot", exp), ("mff", "slice", foc)):
                    (out / task / name).mkdir(parents=True, exist_ok=True)
                    for i, x in enumerate(stack):
                        write_image(out / task / name / f"{role}_{i}.png", x)
            names += [f"mef/{name}", f"mff/{name}"]
    return names


# ------------------------------------------------------------ the demo's pairs
@dataclass
class DemoPair:
    name: str
    task: str
    a: np.ndarray
    b: np.ndarray
    gt: np.ndarray | None
    note: str


def demo_pairs() -> list[DemoPair]:
    """The demo's pairs (deterministic)."""
    astro, chelsea, coffee, camera = (photo(n) for n in ("astronaut", "chelsea", "coffee",
                                                          "camera"))
    pairs = []
    u, o = exposure_pair(astro)
    pairs.append(DemoPair("mef_astronaut", "mef", u, o, astro, "exposure pair, +/-2 stops"))
    u, o = exposure_pair(chelsea, 1.5)
    pairs.append(DemoPair("mef_chelsea", "mef", u, o, chelsea, "exposure pair, +/-1.5 stops"))
    h, w = coffee.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    near, far = focus_pair(coffee, xx < w * 0.55)
    pairs.append(DemoPair("mff_coffee", "mff", near, far, coffee, "focus pair, left/right"))
    h, w = camera.shape
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h * 0.45) ** 2 + (xx - w * 0.4) ** 2 < (0.3 * min(h, w)) ** 2
    near, far = focus_pair(camera, disc)
    pairs.append(DemoPair("mff_camera_gray", "mff", near, far, camera, "gray focus pair"))
    # VIF: a visible photo with a dark region, and a heat image where a 'warm' object shows.
    h, w = chelsea.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    shade = 1 - 0.8 * (xx > w * 0.6)
    visible = (chelsea * shade[..., None]).astype(np.float32)
    heat = ndimage.gaussian_filter(chelsea.mean(-1), 6) * 0.35
    body = ((yy - h * 0.55) / (h * 0.28)) ** 2 + ((xx - w * 0.8) / (w * 0.07)) ** 2 < 1
    head = ((yy - h * 0.2) / (h * 0.08)) ** 2 + ((xx - w * 0.8) / (w * 0.04)) ** 2 < 1
    heat = np.maximum(heat, ndimage.gaussian_filter(0.9 * (body | head), 1.5))
    pairs.append(DemoPair("vif_chelsea", "vif", np.clip(heat, 0, 1).astype(np.float32), visible,
                          None, "synthetic infrared (a warm figure in the dark region) + visible"))
    return pairs
