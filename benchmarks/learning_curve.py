"""Clean fidelity (PSNR against the teacher on clean dev pairs, per task) at every checkpoint
of a training run: how fast the recipe learns, to size longer runs.

    python benchmarks/learning_curve.py runs/exp/maps_distill [--every 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmaif.evaluation.fidelity import clean_fidelity, task_means

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a training run folder (its checkpoints/step_*)")
    ap.add_argument("--every", type=int, default=1, help="use every k-th checkpoint")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "fusion-samples"))
    ap.add_argument("--pairs", default=str(REPO / "splits" / "fusion_samples_dev.txt"))
    args = ap.parse_args()
    cks = sorted((Path(args.run) / "checkpoints").glob("step_*"))[::-1][::args.every][::-1]
    print("| step | clean VIF | clean MEF | clean MFF |\n|---|---|---|---|", flush=True)
    for ck in cks:
        rows = clean_fidelity(args.data, args.pairs, str(ck))
        vals = task_means(rows).values()
        print(f"| {int(ck.name.split('_')[1])} | " + " | ".join(f"{v:.2f}" for v in vals) + " |",
              flush=True)


if __name__ == "__main__":
    main()
