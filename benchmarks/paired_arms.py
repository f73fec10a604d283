"""Two models' `mmaif eval` on the same samples, paired: per task and prompt mode, the mean
PSNR_gt of each, their difference with its 95 % interval (bootstrap over source pairs, as the
eval's own intervals) and on how many samples the second is better.

    python benchmarks/paired_arms.py eval_arms/default eval_arms/full_candidates_s5
        [--method mmaif-reg] [--modes given,task]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from mmaif.evaluation.evaluate import bootstrap_ci


def psnr(folder: str, method: str) -> dict[str, tuple[str, str, float]]:
    """pair id -> (task, source pair, PSNR_gt) of one method row of a results.csv."""
    with open(Path(folder) / "results.csv", newline="") as fh:
        return {r["pair"]: (r["task"], r["source"], float(r["PSNR_gt"]))
                for r in csv.DictReader(fh) if r["method"] == method}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", help="an `mmaif eval --out` folder (the reference)")
    ap.add_argument("second", help="another, on the same samples")
    ap.add_argument("--method", default="mmaif-reg")
    ap.add_argument("--modes", default="given,task", help="prompt modes (given = no suffix)")
    args = ap.parse_args()
    print(f"| task | prompt | n | {Path(args.first).name} | {Path(args.second).name} | "
          "difference [95 % CI] | second better |")
    print("|---|---|---|---|---|---|---|")
    for mode in args.modes.split(","):
        method = args.method if mode == "given" else f"{args.method}@{mode}"
        a, b = psnr(args.first, method), psnr(args.second, method)
        if set(a) != set(b):
            raise SystemExit(f"{method}: the two evaluations hold different samples; run both "
                             "with the same --data, --pairs, --repeats and seed")
        for task in ("vif", "mef", "mff"):
            keys = sorted(k for k in a if a[k][0] == task)
            if not keys:
                continue
            x = np.array([a[k][2] for k in keys])
            y = np.array([b[k][2] for k in keys])
            lo, hi = bootstrap_ci(y - x, [a[k][1] for k in keys])
            print(f"| {task} | {mode} | {len(keys)} | {x.mean():.2f} | {y.mean():.2f} | "
                  f"{(y - x).mean():+.2f} [{lo:+.2f}, {hi:+.2f}] | {(y > x).sum()} of "
                  f"{len(keys)} |")


if __name__ == "__main__":
    main()
