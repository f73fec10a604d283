"""Synthesized pairs per second at 640x480, with 1 and 2 worker processes.

    python benchmarks/synth_speed.py [--n 60] [--src ROOT]

Sources: 640x480-resized copies of ../shared/fusion-samples pairs (or of the demo's photos
when ../shared is absent), written to a temporary folder; crops fixed at scale 1.0 so every
sample is 640x480. Times the whole pipeline: read, teacher GT, degradations, prompt, PNG writes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from mmaif.data.images import read_image, resize_to, write_image
from mmaif.data.pairs import SAMPLES_TASK_DIRS, discover_pairs
from mmaif.synthesis.synth import SynthConfig, synthesize


def make_sources(dst: Path, shared: Path) -> None:
    if shared.is_dir():
        _, pairs = discover_pairs(shared)
        items = [(p.task, p.name.split("/")[-1], read_image(p.a).data, read_image(p.b).data)
                 for p in pairs[::3]]
    else:
        from mmaif.data.stacks import demo_pairs

        items = [(p.task, p.name, p.a, p.b) for p in demo_pairs()]
    for task, name, a, b in items:
        for role, img in zip(SAMPLES_TASK_DIRS[task], (a, b), strict=True):
            (dst / task / role).mkdir(parents=True, exist_ok=True)
            write_image(dst / task / role / f"{name}.png", resize_to(img, (640, 480)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--src", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "fusion-samples")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_sources(tmp / "src", args.src)
        print(f"{'workers':>7s} {'samples':>8s} {'seconds':>8s} {'pairs/s':>8s}")
        for workers in (1, 2):
            cfg = SynthConfig(tasks=["vif", "mef", "mff"], sources=[str(tmp / "src")],
                              n=args.n, seed=0, crop_scales=[1.0])
            t0 = time.perf_counter()
            synthesize(cfg, tmp / f"out{workers}", workers=workers, progress="none")
            dt = time.perf_counter() - t0
            print(f"{workers:7d} {args.n:8d} {dt:8.2f} {args.n / dt:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
