"""How closely a model imitates its teacher on *clean* pairs — the ceiling it works under
once degradations are added (``benchmarks/clean_fidelity.py``, ``benchmarks/fidelity_arms.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmaif.classical.fusion import fuse_arrays
from mmaif.data.images import to_rgb
from mmaif.evaluation.evaluate import eval_rows
from mmaif.evaluation.metrics import blockiness, psnr_gt
from mmaif.synthesis.synth import render


def clean_fidelity(root: str | Path, names_file: str | None = None, model: str | None = None,
                   max_side: int = 640, prompt: str | None = None) -> list[dict]:
    """How well a model imitates the teacher on *clean* pairs: per pair, PSNR against the
    teacher's fusion (the training GT) of the model, of the plain mean of the inputs (what the
    model outputs at initialisation) and of GFF, and the blockiness (8-px grid) of the model's
    output and of the teacher's. Pairs are framed as in :func:`eval_rows`, with the
    degradations left out. ``prompt``: the model's prompt (default: the task's; "auto": the
    detector's sentence)."""
    from mmaif.inference.pipeline import FusionPipeline, default_prompt

    pipe = FusionPipeline.from_pretrained(model)
    out = []
    for row in eval_rows(root, names_file=names_file, max_side=max_side):
        s = render({**row, "ops": []})
        a, b, gt = s["a"], s["b"], s["gt"]
        a3, b3 = (to_rgb(a), to_rgb(b)) if a.ndim != b.ndim else (a, b)
        fused = pipe(a, b, prompt=default_prompt(row["task"]) if prompt is None else prompt,
                     task=row["task"], output="numpy")
        out.append({"pair": row["sources"]["pair"], "task": row["task"],
                    "model": psnr_gt(fused, gt), "mean": psnr_gt((a3 + b3) / 2, gt),
                    "gff": psnr_gt(fuse_arrays(a, b, "gff"), gt),
                    "block_model": blockiness(fused), "block_teacher": blockiness(gt)})
    return out


def task_means(rows: list[dict], key: str = "model") -> dict[str, float]:
    """Mean of ``key`` per task (in VIF, MEF, MFF order) over :func:`clean_fidelity` rows."""
    return {t: float(np.mean([r[key] for r in rows if r["task"] == t]))
            for t in ("vif", "mef", "mff") if any(r["task"] == t for r in rows)}
