"""How closely the default model (or --model) imitates its teacher on clean dev pairs.

    python benchmarks/clean_fidelity.py [--data ../shared/fusion-samples]
                                        [--pairs splits/fusion_samples_dev.txt] [--model DIR]
                                        [--prompt auto]

Prints, per pair and per task, PSNR against the teacher's fusion of the clean pair (GFF for
VIF and MFF, Mertens for MEF: the training ground truth) for the model, for the plain mean of
the inputs (the model's output at initialisation) and for GFF. This is the ceiling the model
works under once degradations are added: `mmaif eval` measures those.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mmaif.evaluation.fidelity import clean_fidelity

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "fusion-samples"))
    ap.add_argument("--pairs", default=str(REPO / "splits" / "fusion_samples_dev.txt"))
    ap.add_argument("--model", help="model folder (default: the shipped one)")
    ap.add_argument("--prompt", help="the model's prompt (default: the task's; 'auto': what "
                    "its detector finds on the clean pair)")
    args = ap.parse_args()
    rows = clean_fidelity(args.data, args.pairs, args.model, prompt=args.prompt)
    print(f"{'pair':28s} {'model':>7s} {'mean':>7s} {'gff':>7s}  (PSNR vs teacher, dB)")
    def db(v: float) -> str:  # GFF is the teacher for VIF and MFF: identical, infinite PSNR
        return "= GT" if np.isinf(v) else f"{v:.2f}"

    for r in rows:
        print(f"{r['pair']:28s} {r['model']:7.2f} {r['mean']:7.2f} {db(r['gff']):>7s}")
    print("\n| task | pairs | model | mean of inputs | gff |\n|---|---|---|---|---|")
    for task in ("vif", "mef", "mff"):
        rs = [r for r in rows if r["task"] == task]
        if rs:
            m = {k: np.mean([r[k] for r in rs]) for k in ("model", "mean", "gff")}
            print(f"| {task} | {len(rs)} | {m['model']:.2f} | {m['mean']:.2f} | {db(m['gff'])} |")


if __name__ == "__main__":
    main()
