"""Latency and peak memory of fusing one big pair, against image size: the shipped model,
GFF and Mertens, on a gray + colour pair (PNG in, PNG out), as ``mmaif fuse`` does it.

    python benchmarks/big_images.py [--sizes 640x480,1920x1080,3840x2160,6000x4000]
                                    [--methods model,gff,mertens]

Each run is its own process (its peak resident memory is its ru_maxrss at the end: decoding
and encoding included). Columns: fuse s (the fusion call alone: the pipeline, or the classical
method, on decoded arrays), wall s (the whole process: imports, model load, decode, fuse,
encode), peak GB, and "x linear": fuse seconds per pixel over the same method's at the first
size (1.0 = time grows exactly with the pixel count). Fuse seconds are the median of
``--runs`` calls up to 1920x1080 (this machine's timings vary by up to 2x between calls),
one call above. The pair is synthetic (smooth structure plus
noise, written once to a temporary folder); cost does not depend on content.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_pair(folder: Path, w: int, h: int) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.3 * np.sin(x / 37.0) * np.cos(y / 53.0)
    ir = np.clip(base + 0.05 * rng.standard_normal((h, w), np.float32), 0, 1)
    vis = np.clip(np.stack([base * 0.9, 1 - base, base**2], -1)
                  + 0.03 * rng.standard_normal((h, w, 3), np.float32), 0, 1)
    pa, pb = folder / f"ir_{w}x{h}.png", folder / f"vi_{w}x{h}.png"
    Image.fromarray((ir * 255).astype(np.uint8)).save(pa)
    Image.fromarray((vis * 255).astype(np.uint8)).save(pb)
    return pa, pb


def child(method: str, pa: str, pb: str, out: str, runs: int = 1) -> None:
    """The fusion as the CLI does it, ``runs`` times (the model after a 64x64 warm-up call:
    first-call costs are not a size's); prints the median call's seconds and the peak
    resident KB."""
    import statistics

    from mmaif.data.images import read_pair, write_image

    a, b = read_pair(pa, pb)
    if method == "model":
        from mmaif.inference.pipeline import FusionPipeline

        pipe = FusionPipeline.from_pretrained()
        pipe(a.data[:64, :64], b.data[:64, :64], task="vif", output="numpy")  # one-off costs

        def fuse():
            return pipe(a.data, b.data, task="vif", output="numpy", progress=False)
    else:
        from mmaif.classical.fusion import fuse_arrays

        def fuse():
            return fuse_arrays(a.data, b.data, method)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fused = fuse()
        times.append(time.perf_counter() - t0)
    write_image(out, fused)
    print(statistics.median(times), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run(cmd: list[str]) -> tuple[float, float, float]:
    """(fuse seconds, wall seconds, peak resident GB) of one child process."""
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {res.stderr[-300:]}")
    sec, peak_kb = res.stdout.split()[-2:]
    return float(sec), wall, int(peak_kb) / 1024**2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="640x480,1920x1080,3840x2160,6000x4000")
    ap.add_argument("--methods", default="model,gff,mertens")
    ap.add_argument("--runs", type=int, default=3,
                    help="timed calls per size up to 2.1 M pixels (median; 1 above)")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child[:4], int(args.child[4]))
        return 0
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    methods = args.methods.split(",")
    print("| size | MP | method | fuse s | wall s | peak GB | x linear |")
    print("|---|---|---|---|---|---|---|")
    first: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for w, h in sizes:
            pa, pb = make_pair(folder, w, h)
            for m in methods:
                runs = args.runs if w * h <= 2_100_000 else 1
                sec, wall, gb = run([sys.executable, __file__, "--child", m, str(pa), str(pb),
                                     str(folder / f"out_{m}.png"), str(runs)])
                per_px = sec / (w * h)
                first.setdefault(m, per_px)
                print(f"| {w}x{h} | {w * h / 1e6:.1f} | {m} | {sec:.2f} | {wall:.1f} | "
                      f"{gb:.2f} | {per_px / first[m]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
