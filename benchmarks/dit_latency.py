"""Forward latency of the fusion DiT on this machine (median of runs), plus matmul GFLOP/s.

    python benchmarks/dit_latency.py [--runs 3] [--presets tiny,base]

One forward = one regression pass or one flow sampler step (pixel tokenizer, batch 1, fp32,
no torch.compile). The tokenizer is the lossless pixel one, so this is the whole network cost.
"""

from __future__ import annotations

import argparse
import sys

import torch

from mmaif.evaluation.bench import matmul_gflops, median_time
from mmaif.model.dit import FusionDiT, make_config
from mmaif.model.tokenizers import PixelTokenizer

SIZES = [(256, 256), (640, 480), (1024, 768)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--presets", default="tiny,base")
    args = ap.parse_args()
    tok = PixelTokenizer()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"matmul {matmul_gflops():.0f} GFLOP/s (fp32 2048^2)\n")
    print(f"{'preset':6s} {'mode':10s} {'size':>9s} {'tokens':>6s} {'median s':>9s}")
    for preset in args.presets.split(","):
        for flow in (False, True):
            overrides = {"flow": True, "head": "latent"} if flow else {}
            torch.manual_seed(0)
            model = FusionDiT(make_config(preset, **overrides)).eval()
            cfg = model.cfg
            for w, h in SIZES:
                lh, lw = h // tok.f, w // tok.f
                cond = torch.randn(1, 2 * tok.z, lh, lw)
                text = torch.randn(1, cfg.text_dim)
                extra = {"t": torch.rand(1), "x_t": torch.randn(1, tok.z, lh, lw)} if flow \
                    else {}
                with torch.no_grad():
                    sec = median_time(lambda m=model, c=cond, t=text, e=extra: m(c, t, **e),
                                      args.runs)
                n = (lh // cfg.patch) * (lw // cfg.patch)
                print(f"{preset:6s} {'flow step' if flow else 'regression':10s} "
                      f"{w:>4d}x{h:<4d} {n:6d} {sec:9.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
