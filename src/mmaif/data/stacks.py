"""Exposure (MEF) and focus (MFF) pairs rendered from scikit-image's bundled photos: the
demo's pairs and ``mmaif stacks`` (training pairs from other photos). Exposure pairs scale
linear light; focus pairs blur complementary regions."""

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
