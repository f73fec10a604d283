"""Exposure (MEF) and focus (MFF) pairs rendered from scikit-image's bundled photos: the
demo's pairs and ``mmaif stacks`` (training pairs from other photos). Exposure pairs scale
linear light; focus pairs blur complementary regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from mmaif.data.images import fit_within, resize_to, write_image


def photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    return (img.astype(np.float32) / 255.0)[..., :3] if img.ndim == 3 else \
        img.astype(np.float32) / 255.0


def exposure_pair(img: np.ndarray, stops: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    lin = img.astype(np.float64) ** 2.2
    under = np.clip(lin * 2.0 ** -stops, 0, 1) ** (1 / 2.2)
    over = np.clip(lin * 2.0 ** stops, 0, 1) ** (1 / 2.2)
    return under.astype(np.float32), over.astype(np.float32)


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


def write_photo_stacks(out_dir: str | Path, variants: int = 2, seed: int = 0) -> list[str]:
    """Write exposure (MEF) and focus (MFF) pairs rendered from :data:`STACK_PHOTOS` in the
    fusion-samples layout (``mef/{under,over}``, ``mff/{near,far}``); returns the pair names.
    Deterministic in ``seed``."""
    out = Path(out_dir)
    for sub in ("mef/under", "mef/over", "mff/near", "mff/far"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for k, pname in enumerate(STACK_PHOTOS):
        img = _stack_photo(pname)
        for v in range(variants):
            rng = np.random.default_rng([seed, k, v])
            name = f"gen_{pname}_{v}"
            u, o = exposure_pair(img, float(rng.uniform(1.0, 2.5)))
            write_image(out / "mef" / "under" / f"{name}.png", u)
            write_image(out / "mef" / "over" / f"{name}.png", o)
            near, far = focus_pair(img, _blob_mask(img.shape[:2], rng),
                                    float(rng.uniform(1.5, 4.0)))
            write_image(out / "mff" / "near" / f"{name}.png", near)
            write_image(out / "mff" / "far" / f"{name}.png", far)
            names += [f"mef/{name}", f"mff/{name}"]
    return names
