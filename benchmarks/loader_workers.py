"""Training-data throughput with 0, 1, 2 DataLoader workers (the `workers:` setting).

    python benchmarks/loader_workers.py [--data data/exp_synth | --src ../shared/fusion-samples]
                                        [--batches 30] [--batch 8] [--crop 192]

``--data``: a `mmaif synth` folder (decode PNGs, crop; cache off so every read decodes);
``--src``: clean pairs synthesized on the fly (teacher + degradations per sample — the case
where workers matter). Prints samples/s per worker count, first batch excluded (start-up).
"""

from __future__ import annotations

import argparse
import time

import torch

from mmaif.training.config import TrainConfig
from mmaif.training.data import make_dataset, make_loader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data")
    ap.add_argument("--src", action="append")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--workers", default="0,1,2")
    args = ap.parse_args()
    cfg = TrainConfig(data=args.data, src=args.src or [], batch=args.batch, crop=args.crop,
                      cache=False)
    cfg.check()
    ds = make_dataset(cfg)
    print(f"{'workers':>7s} {'samples/s':>10s}  ({len(ds)} samples, batch {args.batch}, "
          f"crop {args.crop}, torch threads {torch.get_num_threads()})")
    for w in (int(v) for v in args.workers.split(",")):
        cfg.workers = w
        it = iter(make_loader(ds, cfg, 0, 1, 0, 0, torch.device("cpu")))
        next(it)
        t = time.perf_counter()
        for _ in range(args.batches):
            next(it)
        rate = args.batches * args.batch / (time.perf_counter() - t)
        print(f"{w:7d} {rate:10.1f}", flush=True)
        del it


if __name__ == "__main__":
    main()
