"""``mmaif demo``: fuse pairs built from scikit-image's bundled photos, write images + HTML.

The pairs are made here so the demo runs anywhere with no download: exposure pairs (MEF) by
scaling linear light, focus pairs (MFF) by blurring complementary regions, and a
visible + infrared-like pair (VIF) from a photo and a synthetic heat image. For MEF and MFF the
original photo is a ground truth, so PSNR / SSIM against it are reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .fusion import fuse_arrays
from .io import write_image
from .metrics import compute_metrics
from .report import Section, write_page

DEMO_METRICS = ("EN", "SD", "AG", "MI", "Qabf", "SSIM", "VIF")


@dataclass
class DemoPair:
    name: str
    task: str
    a: np.ndarray
    b: np.ndarray
    gt: np.ndarray | None
    note: str


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    return (img.astype(np.float32) / 255.0)[..., :3] if img.ndim == 3 else \
        img.astype(np.float32) / 255.0


def _exposure_pair(img: np.ndarray, stops: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    lin = img.astype(np.float64) ** 2.2
    under = np.clip(lin * 2.0 ** -stops, 0, 1) ** (1 / 2.2)
    over = np.clip(lin * 2.0 ** stops, 0, 1) ** (1 / 2.2)
    return under.astype(np.float32), over.astype(np.float32)


def _focus_pair(img: np.ndarray, mask: np.ndarray, sigma: float = 3.0):
    sig = (sigma, sigma) + ((0,) if img.ndim == 3 else ())
    blur = ndimage.gaussian_filter(img, sig)
    m = ndimage.gaussian_filter(mask.astype(np.float32), 4.0)
    if img.ndim == 3:
        m = m[..., None]
    near = m * img + (1 - m) * blur
    far = (1 - m) * img + m * blur
    return near.astype(np.float32), far.astype(np.float32)


def demo_pairs() -> list[DemoPair]:
    """The demo's pairs (deterministic)."""
    astro, chelsea, coffee, camera = (_photo(n) for n in ("astronaut", "chelsea", "coffee",
                                                          "camera"))
    pairs = []
    u, o = _exposure_pair(astro)
    pairs.append(DemoPair("mef_astronaut", "mef", u, o, astro, "exposure pair, +/-2 stops"))
    u, o = _exposure_pair(chelsea, 1.5)
    pairs.append(DemoPair("mef_chelsea", "mef", u, o, chelsea, "exposure pair, +/-1.5 stops"))
    h, w = coffee.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    near, far = _focus_pair(coffee, xx < w * 0.55)
    pairs.append(DemoPair("mff_coffee", "mff", near, far, coffee, "focus pair, left/right"))
    h, w = camera.shape
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h * 0.45) ** 2 + (xx - w * 0.4) ** 2 < (0.3 * min(h, w)) ** 2
    near, far = _focus_pair(camera, disc)
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


def run_demo(out_dir: str | Path, methods_for: dict[str, tuple[str, ...]] | None = None,
             log=print) -> Path:
    """Fuse the demo pairs, write PNGs and ``index.html`` into ``out_dir``; return the page."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods_for = methods_for or {"mef": ("gff", "mertens", "laplacian"),
                                  "mff": ("gff", "laplacian"), "vif": ("gff", "laplacian")}
    sections = []
    for p in demo_pairs():
        t0 = time.perf_counter()
        images = [("a: " + _role(p.task, 0), f"{p.name}_a.png"),
                  ("b: " + _role(p.task, 1), f"{p.name}_b.png")]
        write_image(out / images[0][1], p.a)
        write_image(out / images[1][1], p.b)
        table = {}
        for m in methods_for[p.task]:
            fused = fuse_arrays(p.a, p.b, m)
            fname = f"{p.name}_{m}.png"
            write_image(out / fname, fused)
            images.append((m, fname))
            table[m] = compute_metrics(p.a, p.b, fused, p.gt, names=DEMO_METRICS)
        if p.gt is not None:
            write_image(out / f"{p.name}_gt.png", p.gt)
            images.append(("original (ground truth)", f"{p.name}_gt.png"))
        sections.append(Section(f"{p.name} ({p.task.upper()}, {p.a.shape[1]}x{p.a.shape[0]})",
                                p.note, images, table))
        log(f"{p.name:18s} " + "  ".join(
            f"{m}: EN {v['EN']:.3f} Qabf {v['Qabf']:.3f}"
            + (f" PSNR_gt {v['PSNR_gt']:.2f} dB" if "PSNR_gt" in v else "")
            for m, v in table.items()) + f"  ({time.perf_counter() - t0:.1f}s)")
    intro = ("Pairs built from scikit-image's bundled photos and fused with classical methods. "
             "Metrics follow VIFB's conventions (see mmaif.metrics); PSNR_gt / SSIM_gt compare "
             "with the original photo where one exists.")
    return write_page(out / "index.html", "mmaif demo", intro, sections)


def _role(task: str, i: int) -> str:
    return {"vif": ("infrared", "visible"), "mef": ("under-exposed", "over-exposed"),
            "mff": ("near focus", "far focus")}[task][i]
