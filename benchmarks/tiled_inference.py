"""Time and peak memory of tiled inference on a 3000x2000 pair (tiny preset, pixel
tokenizer, random weights: the cost does not depend on training), against tile size.

    python benchmarks/tiled_inference.py [--size 3000x2000] [--tiles 256,512]

Each configuration runs in a fresh process so ru_maxrss is that run's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(size: tuple[int, int], tile: int) -> None:
    import numpy as np
    import torch

    from mmaif.inference.pipeline import FusionPipeline
    from mmaif.model.dit import FusionDiT, make_config

    torch.manual_seed(0)
    pipe = FusionPipeline(FusionDiT(make_config("tiny", latent_channels=192, text_dim=384)))
    w, h = size
    rng = np.random.default_rng(0)
    a, b = rng.random((h, w), np.float32), rng.random((h, w, 3), np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = pipe(a, b, prompt="Fuse them.", output="numpy", tile=tile, overlap=64)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"tile": tile, "seconds": dt, "peak_mb": peak / 1024,
                      "before_mb": base / 1024, "shape": list(out.shape)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="3000x2000")
    ap.add_argument("--tiles", default="256,512")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.child:
        child(size, args.child)
        return 0
    print(f"{'tile':>5s} {'seconds':>8s} {'peak RSS MB':>12s} {'after loading MB':>17s}")
    for tile in (int(t) for t in args.tiles.split(",")):
        r = subprocess.run([sys.executable, __file__, "--size", args.size, "--child", str(tile)],
                           capture_output=True, text=True, check=True)
        d = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"{tile:5d} {d['seconds']:8.1f} {d['peak_mb']:12.0f} {d['before_mb']:17.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
