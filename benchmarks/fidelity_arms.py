"""Compare trained models (experiment arms) on the dev split: clean fidelity to the teacher,
degraded PSNR, blockiness and latency — one row per model.

    python benchmarks/fidelity_arms.py runs/exp/baseline runs/exp/maps ... [--default]
                                       [--repeats 4] [--json out.json]

Columns, all on the dev pairs (never trained on):
- clean VIF / MEF / MFF: PSNR (dB) against the teacher's fusion of the *clean* pair, the task
  prompt (``mmaif.evaluation.fidelity.clean_fidelity``): how well the model learned the fusion
  itself;
- degraded VIF / MEF / MFF: mean PSNR_gt of ``mmaif eval``'s degraded samples (``--repeats``
  per pair, fixed seeds, the sample's prompt);
- block: the model's blockiness (8-px grid) on the clean pairs over the teacher's (1.00 = as
  blocky as the teacher);
- s @640x480: median of 3 end-to-end ``FusionPipeline`` calls on this machine after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from mmaif.evaluation.evaluate import eval_rows
from mmaif.evaluation.fidelity import clean_fidelity, task_means
from mmaif.evaluation.metrics import psnr_gt
from mmaif.inference.pipeline import FusionPipeline
from mmaif.synthesis.synth import render

REPO = Path(__file__).resolve().parents[1]
TASKS = ("vif", "mef", "mff")


def degraded(model: str | None, root: str, names: str, repeats: int) -> dict[str, float]:
    pipe = FusionPipeline.from_pretrained(model)
    per: dict[str, list[float]] = {t: [] for t in TASKS}
    for row in eval_rows(root, names_file=names, repeats=repeats):
        s = render(row)
        fused = pipe(s["a"], s["b"], prompt=row["prompt"], task=row["task"], output="numpy")
        per[row["task"]].append(psnr_gt(fused, s["gt"]))
    return {t: float(np.mean(v)) for t, v in per.items() if v}


def latency(model: str | None) -> float:
    pipe = FusionPipeline.from_pretrained(model)
    rng = np.random.default_rng(0)
    a, b = rng.random((480, 640), np.float32), rng.random((480, 640, 3), np.float32)
    pipe(a, b, output="numpy")
    times = []
    for _ in range(3):
        t = time.perf_counter()
        pipe(a, b, output="numpy")
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def measure(model: str | None, root: str, names: str, repeats: int) -> dict:
    rows = clean_fidelity(root, names, model)
    clean = task_means(rows)
    block = float(np.mean([r["block_model"] / r["block_teacher"] for r in rows]))
    return {"model": model or "default", "clean": clean, "degraded": degraded(
        model, root, names, repeats), "block": block, "seconds": latency(model)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="run folders or saved pipelines")
    ap.add_argument("--default", action="store_true", help="also the shipped default model")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "fusion-samples"))
    ap.add_argument("--pairs", default=str(REPO / "splits" / "fusion_samples_dev.txt"))
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()
    models = ([None] if args.default else []) + list(args.models)
    print("| model | clean VIF | clean MEF | clean MFF | degraded VIF | degraded MEF | "
          "degraded MFF | block | s @640x480 |\n|---|---|---|---|---|---|---|---|---|",
          flush=True)
    out = []
    for m in models:
        r = measure(m, args.data, args.pairs, args.repeats)
        out.append(r)
        print(f"| {r['model']} | " + " | ".join(f"{r['clean'][t]:.2f}" for t in TASKS) + " | "
              + " | ".join(f"{r['degraded'][t]:.2f}" for t in TASKS)
              + f" | {r['block']:.2f} | {r['seconds']:.3f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
