"""Cost of fusing a stack of N shots against N: the shipped model (N - 1 pair fusions, tree and
chain orders) and the N-input classical methods, on an exposure bracket at 1024x768.

    python benchmarks/stack_cost.py [--shots 2,3,5,9] [--size 1024x768] [--runs 3]
                                    [--methods tree,chain,mertens]

Each (method, N) runs in its own process: "fuse s" is the median of ``--runs`` calls of the
fusion on decoded arrays (the model after a 64x64 warm-up call), "peak GB" the process's
peak resident memory (ru_maxrss: the N decoded shots, the model, the fusion), "s / (N - 1)"
the seconds per pair fusion (constant = cost linear in N). The bracket is rendered from a
synthetic scene (exposure_stack, +-2 EV); cost does not depend on content.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys


def child(method: str, n: int, w: int, h: int, runs: int) -> None:
    import statistics
    import time

    import numpy as np

    from mmaif.data.stacks import exposure_stack

    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(x / 37.0) * np.cos(y / 53.0)
    scene = np.clip(np.stack([base * 0.9, 1 - base, base**2], -1), 0, 1)
    shots = exposure_stack(scene, n, 2.0)
    if method in ("tree", "chain"):
        from mmaif.inference.pipeline import FusionPipeline

        pipe = FusionPipeline.from_pretrained()
        pipe([s[:64, :64] for s in shots[:2]], task="mef", output="numpy")  # one-off costs

        def fuse():
            return pipe(shots, task="mef", order=method, output="numpy", progress=False)
    else:
        from mmaif.classical.fusion import fuse_stack

        def fuse():
            return fuse_stack(shots, method)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fuse()
        times.append(time.perf_counter() - t0)
    print(statistics.median(times), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", default="2,3,5,9")
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--methods", default="tree,chain,mertens")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        m, n, w, h, runs = args.child
        child(m, int(n), int(w), int(h), int(runs))
        return 0
    w, h = (int(v) for v in args.size.split("x"))
    print(f"| method | N | fuse s | s / (N - 1) | peak GB |  ({w}x{h})")
    print("|---|---|---|---|---|")
    for m in args.methods.split(","):
        for n in (int(v) for v in args.shots.split(",")):
            res = subprocess.run([sys.executable, __file__, "--child", m, str(n), str(w), str(h),
                                  str(args.runs)], capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"{m} N={n} failed: {res.stderr[-300:]}")
            sec, peak_kb = res.stdout.split()[-2:]
            print(f"| {m} | {n} | {float(sec):.2f} | {float(sec) / (n - 1):.2f} | "
                  f"{int(peak_kb) / 1024**2:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
