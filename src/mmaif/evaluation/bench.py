"""``mmaif bench``: latency, peak memory and achieved FLOP rate of the fusion pipeline
(tokenize both inputs + DiT + decode/head; the prompt embedding is excluded, it is cached)
against resolution, for presets and objectives, plus the same model in pixel space (f = 1,
no space-to-depth) where that is feasible, and the machine's measured matmul rate.

Preset ``default`` times the shipped model end to end through ``FusionPipeline`` (numpy
arrays in and out: conversion, padding, tokenize, DiT, full-resolution head; the prompt
embedding is cached after the first call), at the given size without rounding.

Rows: preset, objective (reg | flow; a flow row is one sampler step, ``steps`` = 1), space
(latent = pixel tokenizer f = 8, pixel = f = 1), device, width, height (padded to the model's
grid), seconds (median), peak_mb, plus f, tokens, gflop and the achieved rate.
Each (preset, objective) runs in a fresh process, sizes in increasing order, so the process's
peak resident memory (ru_maxrss) after a size is that size's peak. Random weights: cost does
not depend on training.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import torch

DEFAULT_SIZES = ["256x256", "640x480", "1024x768"]
FULL_SIZES = [*DEFAULT_SIZES, "1920x1080", "3840x2160"]
PIXEL_SPACE_MAX_TOKENS = 16384  # beyond this, f = 1 attention is impractical on a CPU


def median_time(fn, runs: int) -> float:
    """Median wall time of ``runs`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def _measure(preset: str, objective: str, f: int, sizes: list[str], runs: int) -> list[dict]:
    from mmaif.evaluation.info import count_flops
    from mmaif.model.components import Components
    from mmaif.model.dit import FusionDiT, make_config
    from mmaif.model.objectives import make_objective
    from mmaif.model.tokenizers import PixelTokenizer

    if preset == "default":  # the shipped pipeline end to end: numpy in, numpy out
        import numpy as np

        from mmaif.inference.pipeline import FusionPipeline

        pipe = FusionPipeline.from_pretrained()
        model = pipe.model
    else:
        tok = PixelTokenizer(f=f)
        over = {"latent_channels": tok.z, "text_dim": 384}
        if objective == "flow":
            over.update(flow=True, head="latent")
        torch.manual_seed(0)
        model = FusionDiT(make_config(preset, **over)).eval()
        obj = make_objective(Components(model, tok, None))
    out = []
    for size in sizes:
        w, h = (int(v) for v in size.split("x"))
        m = f * model.cfg.patch
        if preset == "default":
            rng = np.random.default_rng(0)
            an, bn = rng.random((h, w), np.float32), rng.random((h, w, 3), np.float32)

            def step(an=an, bn=bn):
                return pipe(an, bn, prompt="Fuse them.", output="numpy")
        else:
            w, h = -(-w // m) * m, -(-h // m) * m
            a, b = torch.rand(1, 3, h, w) * 2 - 1, torch.rand(1, 3, h, w) * 2 - 1
            pooled = torch.randn(1, 384)

            def step(a=a, b=b, pooled=pooled):
                if objective == "flow":  # one sampler step = one network evaluation
                    return obj.sample(model, a, b, pooled, steps=1)
                return obj.predict(model, a, b, pooled)[0]

        flops, _ = count_flops(step)
        with torch.no_grad():
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
        sec = statistics.median(times)
        tokens = -(-h // m) * -(-w // m)
        out.append({"preset": preset, "objective": objective, "steps": 1,
                    "space": "latent" if f > 1 else "pixel",
                    "device": str(pipe.device) if preset == "default" else "cpu",
                    "width": w, "height": h, "f": f, "size": size,
                    "tokens": tokens, "seconds": sec, "gflop": flops / 1e9,
                    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return out


def run_bench(presets: list[str], sizes: list[str], runs: int = 1, pixel_space: bool = True,
              log=print) -> list[dict]:
    peak = matmul_gflops()
    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul (fp32 2048^2) "
        f"{peak:.0f} GFLOP/s")
    log(f"{'preset':6s} {'objective':9s} {'f':>2s} {'size':>9s} {'tokens':>7s} {'seconds':>8s} "
        f"{'GFLOP':>8s} {'GFLOP/s':>8s} {'of peak':>7s} {'peak MB':>8s}")
    rows = []
    jobs = [(p, o, 8, sizes) for p in presets for o in (("reg",) if p == "default" else
                                                        ("reg", "flow"))]
    if pixel_space:
        small = [s for s in sizes if _tokens(s) <= PIXEL_SPACE_MAX_TOKENS] or ["128x128"]
        jobs += [(p, "reg", 1, small) for p in presets if p != "default"]
    for preset, objective, f, szs in jobs:
        cmd = [sys.executable, "-m", "mmaif.evaluation.bench", preset, objective, str(f),
               ",".join(szs), str(runs)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"bench worker failed: {res.stderr.strip().splitlines()[-1:]}")
        for r in json.loads(res.stdout.strip().splitlines()[-1]):
            rate = r["gflop"] / r["seconds"]
            log(f"{r['preset']:6s} {r['objective']:9s} {r['f']:2d} {r['size']:>9s} "
                f"{r['tokens']:7d} {r['seconds']:8.3f} {r['gflop']:8.1f} {rate:8.1f} "
                f"{rate / peak:7.0%} {r['peak_mb']:8.0f}")
            rows.append({**r, "gflops_per_s": rate, "fraction_of_matmul": rate / peak})
    return rows


def _tokens(size: str) -> int:
    w, h = (int(v) for v in size.split("x"))
    return w * h


if __name__ == "__main__":  # worker: python -m mmaif.evaluation.bench PRESET OBJECTIVE F SIZES RUNS
    p, o, f, s, n = sys.argv[1:6]
    print(json.dumps(_measure(p, o, int(f), s.split(","), int(n))))
