"""Equal-budget arms in two tables, from `scripts/arms.sh`'s outputs: per arm, clean
fidelity, degraded PSNR (given prompt, and every other prompt mode all arms were evaluated
with) and its difference to two-stage, blockiness and latency; then PSNR per degradation type
against two-stage (two-stage from whichever arm's eval ran it).

    python benchmarks/gate_arms_table.py continue fixes fixes_teacher all
        [--evals eval_arms] [--runs runs]
    python benchmarks/gate_arms_table.py default=src/mmaif/weights/default evidence_long ...

An arm ARM reads ``EVALS/ARM/summary.csv`` and ``summary_degradations.csv`` (its `mmaif eval`
on the dev split, 4 draws per pair) and the run folder ``RUNS/arm_ARM`` (or the model folder
PATH of an arm given as ``ARM=PATH``, e.g. the shipped default) (clean fidelity on the
13 dev pairs, ``mmaif.evaluation.fidelity``; latency of one 640x480 VIF pair end to end,
median of 3, with the task prompt and with a prompt naming two degradations).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from mmaif.evaluation.bench import median_time
from mmaif.evaluation.fidelity import clean_fidelity, task_means
from mmaif.inference.pipeline import FusionPipeline

REPO = Path(__file__).resolve().parents[1]
TASKS = ("vif", "mef", "mff")
TWO = "Remove the haze from the visible image, destripe the infrared image, and fuse them."


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def latency(model: str, prompt: str | None) -> float:
    pipe = FusionPipeline.from_pretrained(model)
    rng = np.random.default_rng(0)
    a, b = rng.random((480, 640), np.float32), rng.random((480, 640, 3), np.float32)
    return median_time(lambda: pipe(a, b, prompt=prompt, task="vif", output="numpy"), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arms", nargs="+")
    ap.add_argument("--evals", default="eval_arms")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "fusion-samples"))
    ap.add_argument("--pairs", default=str(REPO / "splits" / "fusion_samples_dev.txt"))
    args = ap.parse_args()
    models = dict(a.split("=", 1) if "=" in a else (a, str(Path(args.runs) / f"arm_{a}"))
                  for a in args.arms)
    args.arms = list(models)
    summaries = {arm: {(r["task"], r["method"]): r
                       for r in rows(Path(args.evals) / arm / "summary.csv")} for arm in args.arms}
    # two-stage and the teacher do not depend on the arm: any arm's eval that ran them
    ts = next({t: float(s[(t, "two-stage")]["PSNR_gt"]) for t in TASKS}
              for s in summaries.values() if ("vif", "two-stage") in s)
    modes = [m for m in ("task", "empty", "auto")
             if all(("vif", f"mmaif-reg@{m}") in s for s in summaries.values())]
    print("| arm | clean VIF | clean MEF | clean MFF | degraded VIF | MEF | MFF | Δ two-stage "
          "VIF | MEF | MFF | " + "".join(f"@{m} VIF | MEF | MFF | " for m in modes)
          + "block | s task | s 2 named |")
    print("|---|" + "---|" * (12 + 3 * len(modes)))
    degs: dict[str, dict[str, float]] = {}
    two_stage: dict[str, float] = {}
    counts: dict[str, int] = {}
    for arm in args.arms:
        run = models[arm]
        summ = summaries[arm]
        fid = clean_fidelity(args.data, args.pairs, run)
        clean = task_means(fid)
        block = float(np.mean([r["block_model"] / r["block_teacher"] for r in fid]))
        given = {t: float(summ[(t, "mmaif-reg")]["PSNR_gt"]) for t in TASKS}
        cells = ([f"{clean[t]:.2f}" for t in TASKS] + [f"{given[t]:.2f}" for t in TASKS]
                 + [f"{given[t] - ts[t]:+.2f}" for t in TASKS]
                 + [f"{float(summ[(t, f'mmaif-reg@{m}')]['PSNR_gt']):.2f}"
                    for m in modes for t in TASKS]
                 + [f"{block:.2f}", f"{latency(run, None):.2f}", f"{latency(run, TWO):.2f}"])
        print(f"| `{arm}` | " + " | ".join(cells) + " |", flush=True)
        for r in rows(Path(args.evals) / arm / "summary_degradations.csv"):
            if r["method"] == "mmaif-reg":
                degs.setdefault(r["degradation"], {})[arm] = float(r["PSNR_gt"])
                counts[r["degradation"]] = int(r["n"])
            elif r["method"] == "two-stage":
                two_stage[r["degradation"]] = float(r["PSNR_gt"])
    print()
    print("| degradation | n | two-stage | " + " | ".join(f"`{a}` (Δ)" for a in args.arms) + " |")
    print("|---|---|---|" + "---|" * len(args.arms))
    for d in sorted(degs):
        print(f"| {d} | {counts[d]} | {two_stage[d]:.2f} | " + " | ".join(
            f"{degs[d][a]:.2f} ({degs[d][a] - two_stage[d]:+.2f})" for a in args.arms) + " |")


if __name__ == "__main__":
    main()
