"""How good the teacher-gate candidate (the teacher's fusion of the fixes, what ``two-stage``
outputs) is on training samples, per degradation type and severity: for the samples of a
``mmaif synth`` folder with exactly one degradation, PSNR of the candidate written by
``full_candidates`` (``DATA/candidates/ts/``) against the GT, and of the inputs' mean.

    python benchmarks/candidate_quality.py --data data/synth_s5 [--task vif] [--per-type 12]

A gate can only learn to trust the candidate where it is reliably close to the GT: the spread
(min..max) says how reliable it is for each type.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from mmaif.data.images import read_image, to_rgb
from mmaif.evaluation.metrics import psnr_gt
from mmaif.synthesis.synth import read_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="a `mmaif synth` folder with candidates/ "
                    "(written by a full_candidates run)")
    ap.add_argument("--task", default="vif")
    ap.add_argument("--per-type", type=int, default=12, help="samples per type and severity")
    args = ap.parse_args()
    root = Path(args.data)
    if not (root / "candidates" / "ts").is_dir():
        raise SystemExit(f"{root}/candidates/ts: missing; a training run with "
                         "full_candidates: true on this folder writes it")
    scores = defaultdict(list)
    for row in read_manifest(root / "manifest.jsonl"):
        if row["task"] != args.task or len(row["ops"]) != 1:
            continue
        op = row["ops"][0]
        key = f"{op['name']} ({op['severity']})"
        ts_path = root / "candidates" / "ts" / f"{row['id']}.png"
        if len(scores[key]) >= args.per_type or not ts_path.exists():
            continue
        gt, ts, a, b = (to_rgb(read_image(root / sub / f"{row['id']}.png").data)
                        for sub in ("gt", "candidates/ts", "a", "b"))
        scores[key].append((psnr_gt(ts, gt), psnr_gt((a + b) / 2, gt)))
    print(f"| {args.task} degradation | n | candidate PSNR: mean | min | max | "
          "inputs' mean |")
    print("|---|---|---|---|---|---|")
    for key in sorted(scores):
        v = np.array(scores[key])
        print(f"| {key} | {len(v)} | {v[:, 0].mean():.2f} | {v[:, 0].min():.2f} | "
              f"{v[:, 0].max():.2f} | {v[:, 1].mean():.2f} |")


if __name__ == "__main__":
    main()
