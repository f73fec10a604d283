"""Our metrics and GFF against VIFB's published MATLAB numbers and fused images.

    python benchmarks/vifb_reference.py [--root ../shared/reference/vifb]

Prints, per VIFB metric, the largest and mean relative deviation over the 105 published fused
images, then the PSNR of our GFF against VIFB's 21 GFF outputs, and the time per image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from mmaif.evaluation.reference import GRAY_IR_PAIRS, VIFB_COLUMNS, gff_vs_vifb, metric_deviations


def main() -> int:
    default = Path(__file__).resolve().parents[2] / "shared" / "reference" / "vifb"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=default)
    args = ap.parse_args()
    if not (args.root / "metrics" / "vifb_metrics_per_image.csv").exists():
        print(f"{args.root}: VIFB reference not found; pass --root", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = list(metric_deviations(args.root))
    t_metrics = time.perf_counter() - t0
    print(f"VIFB metrics: {len(rows) // 13} fused images x 13 metrics "
          f"({t_metrics / (len(rows) // 13):.2f} s per image for all 13)\n")
    print(f"{'VIFB column':18s} {'ours':5s} {'max rel dev':>12s} {'mean rel dev':>13s}")
    for col, key in VIFB_COLUMNS.items():
        devs = [r[5] for r in rows if r[2] == col]
        print(f"{col:18s} {key:5s} {max(devs):12.2e} {statistics.mean(devs):13.2e}")
    t0 = time.perf_counter()
    with_bug = gff_vs_vifb(args.root, reproduce_loader_bug=True)
    t_gff = (time.perf_counter() - t0) / len(with_bug)
    naive = gff_vs_vifb(args.root, reproduce_loader_bug=False)
    proper = [v for k, v in with_bug.items() if k not in GRAY_IR_PAIRS]
    print(f"\nGFF vs VIFB's published GFF outputs (PSNR, dB; {t_gff:.2f} s per pair):")
    print(f"  17 pairs with 3-channel IR:                 mean {statistics.mean(proper):.2f}, "
          f"min {min(proper):.2f}")
    print(f"  all 21, same inputs as VIFB's GFF run:       mean "
          f"{statistics.mean(with_bug.values()):.2f}, min {min(with_bug.values()):.2f}")
    print(f"  all 21, correct inputs for the 4 gray-IR pairs: mean "
          f"{statistics.mean(naive.values()):.2f} (VIFB's loader mis-stacked those 4)")
    for name in GRAY_IR_PAIRS:
        print(f"    {name:14s} as VIFB ran it {with_bug[name]:6.2f}   "
              f"correct input {naive[name]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
