"""``mmaif demo``: fuse pairs built from scikit-image's bundled photos with GFF and the default
model, write images + HTML. The pairs (:func:`mmaif.data.stacks.demo_pairs`; training stacks
come from other photos) need no download: exposure pairs (MEF) by
scaling linear light, focus pairs (MFF) by blurring complementary regions, and a
visible + infrared-like pair (VIF) from a photo and a synthetic heat image. For MEF and MFF the
original photo is a ground truth, so PSNR / SSIM against it are reported.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mmaif.classical.fusion import fuse_arrays
from mmaif.data.images import write_image
from mmaif.data.stacks import DemoPair, demo_pairs  # noqa: F401  (public here too)
from mmaif.evaluation.metrics import compute_metrics
from mmaif.evaluation.report import Section, write_page

DEMO_METRICS = ("EN", "SD", "AG", "MI", "Qabf", "SSIM", "VIF")


def run_demo(out_dir: str | Path, model: str | Path | None = None, log=print) -> Path:
    """Fuse the demo pairs with GFF and the mmaif model (``model``: a folder, or None for the
    shipped default), each as given and with two degradations plus the matching prompt; write
    PNGs and ``index.html`` into ``out_dir``; return the page."""
    from mmaif.data.degrade.pipeline import compose_prompt, describe, sample_ops
    from mmaif.inference.pipeline import TASK_PROMPTS, FusionPipeline
    from mmaif.synthesis.synth import degrade_pair
    from mmaif.synthesis.teachers import DEFAULT_TEACHERS

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipe = FusionPipeline.from_pretrained(model)
    sections = []
    for k, p in enumerate(demo_pairs()):
        teacher = DEFAULT_TEACHERS[p.task]
        ref = p.gt if p.gt is not None else fuse_arrays(p.a, p.b, teacher)
        ref_label = ("original photo" if p.gt is not None
                     else f"{teacher.upper()} of the clean pair")
        write_image(out / f"{p.name}_ref.png", ref)
        rng = np.random.default_rng([2025, k])
        ops = sample_ops(p.task, rng, counts={2: 1.0}, severities=("moderate",))
        variants = [("clean", p.a, p.b, TASK_PROMPTS[p.task], "as given")]
        da, db = degrade_pair(p.task, p.a, p.b, ops)
        variants.append(("degraded", da, db, compose_prompt(p.task, ops, rng), describe(ops)))
        for tag, a, b, prompt, what in variants:
            t0 = time.perf_counter()
            stem = f"{p.name}_{tag}"
            images = [("a: " + _role(p.task, 0), f"{stem}_a.png"),
                      ("b: " + _role(p.task, 1), f"{stem}_b.png")]
            write_image(out / images[0][1], a)
            write_image(out / images[1][1], b)
            table = {}
            for method in ("gff", "mmaif"):
                fused = (fuse_arrays(a, b, "gff") if method == "gff" else
                         pipe(a, b, prompt=prompt, task=p.task, output="numpy"))
                fname = f"{stem}_{method}.png"
                write_image(out / fname, fused)
                images.append((method, fname))
                table[method] = compute_metrics(a, b, fused, ref, names=DEMO_METRICS)
            images.append((f"reference: {ref_label}", f"{p.name}_ref.png"))
            sections.append(Section(
                f"{p.name}, {tag} ({p.task.upper()}, {a.shape[1]}x{a.shape[0]})",
                f"{p.note}; inputs {what}. Prompt: “{prompt}”", images, table))
            log(f"{stem:26s} " + "  ".join(
                f"{m}: PSNR_ref {v['PSNR_gt']:.2f} dB Qabf {v['Qabf']:.3f}"
                for m, v in table.items()) + f"  ({time.perf_counter() - t0:.1f}s)")
    intro = ("Pairs built from scikit-image's bundled photos (not used in training), fused by "
             "the classical GFF baseline and by the mmaif model with the prompt shown. Each pair "
             "appears as given and with two degradations. PSNR_gt / SSIM_gt compare with the "
             "reference named in each row (the original photo where one exists); the other "
             "metrics follow VIFB's conventions (see mmaif.evaluation.metrics).")
    return write_page(out / "index.html", "mmaif demo", intro, sections)


def _role(task: str, i: int) -> str:
    return {"vif": ("infrared", "visible"), "mef": ("under-exposed", "over-exposed"),
            "mff": ("near focus", "far focus")}[task][i]
