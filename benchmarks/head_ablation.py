"""Output-head ablation on CPU: full-resolution head vs latent head (residual over the inputs'
mean, or direct), pixel tokenizer, same data, steps and seed.

    python benchmarks/head_ablation.py [--steps 400] [--src ../shared/fusion-samples]

Synthesizes a small train set (seed 0) and a held-out set (seed 1) with ``mmaif synth``
(max side 128), trains a reduced DiT (dim 96, depth 4) with L1 loss on random 64x64 patches,
and prints held-out PSNR against the teacher GT and blockiness (gradient across 8-px block
edges / elsewhere; the GT's own value is printed for reference). Short runs: a comparison of
heads, not a trained model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mmaif.evaluation.metrics import blockiness
from mmaif.model.components import Components
from mmaif.model.dit import FusionDiT, make_config
from mmaif.model.objectives import Regression
from mmaif.model.text import make_text_encoder
from mmaif.model.tokenizers import PixelTokenizer, crop_to, pad_to_multiple
from mmaif.synthesis.datasets import SynthFolder
from mmaif.synthesis.synth import SynthConfig, synthesize

VARIANTS = {"fullres head": dict(head="fullres"),
            "latent, residual over mean": dict(head="latent", residual_mean=True),
            "latent, direct": dict(head="latent", residual_mean=False)}


def predict(model, tok, a, b, pooled):
    """Images in [-1, 1] (B, 3, H, W) -> (fused image in [-1, 1], aux): the one regression
    step of training and inference (``Regression.predict``), so any head config works."""
    image, _, aux = Regression(Components(model, tok, None)).predict(model, a, b, pooled)
    return image, aux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--n-train", type=int, default=192)
    ap.add_argument("--src", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "fusion-samples")
    args = ap.parse_args()
    if not args.src.is_dir():
        print(f"{args.src}: source pairs not found; pass --src", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    text = make_text_encoder("minilm")
    tok = PixelTokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        sets = {}
        for name, seed, n in (("train", 0, args.n_train), ("test", 1, 32)):
            cfg = SynthConfig(tasks=["vif", "mef", "mff"], sources=[str(args.src)], n=n,
                              seed=seed, max_side=128)
            synthesize(cfg, Path(tmp) / name, workers=2, progress="none")
        sets["train"] = SynthFolder(Path(tmp) / "train", crop=64)
        sets["test"] = SynthFolder(Path(tmp) / "test")
        test = [sets["test"][i] for i in range(len(sets["test"]))]
        gt_block = np.nanmean([blockiness(x["gt"].permute(1, 2, 0).numpy()) for x in test])
        print(f"{args.steps} steps, batch 16, 64x64 patches; held-out: 32 samples "
              f"(GT blockiness {gt_block:.2f})\n")
        print(f"{'variant':28s} {'PSNR dB':>8s} {'blockiness':>10s} {'train s':>8s}")
        for label, flags in VARIANTS.items():
            torch.manual_seed(0)
            model = FusionDiT(make_config("tiny", dim=96, depth=4, heads=2, adaln_rank=16,
                                          latent_channels=tok.z, **flags))
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
            loader = DataLoader(sets["train"], batch_size=16, shuffle=True,
                                generator=torch.Generator().manual_seed(0), drop_last=True)
            step, t0 = 0, time.perf_counter()
            while step < args.steps:
                for batch in loader:
                    a, b, gt = (batch[k] * 2 - 1 for k in ("a", "b", "gt"))
                    pred, aux = predict(model, tok, a, b, text.encode(batch["prompt"])[2])
                    loss = F.l1_loss(pred, gt) + 0.01 * aux["balance"]
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    step += 1
                    if step >= args.steps:
                        break
            train_s = time.perf_counter() - t0
            psnrs, blocks = [], []
            model.eval()
            with torch.no_grad():
                for x in test:
                    a, size = pad_to_multiple(x["a"][None] * 2 - 1, tok.f)
                    b, _ = pad_to_multiple(x["b"][None] * 2 - 1, tok.f)
                    pred, _ = predict(model, tok, a, b, text.encode([x["prompt"]])[2])
                    img = ((crop_to(pred, size)[0] + 1) / 2).clamp(0, 1)
                    mse = F.mse_loss(img, x["gt"]).item()
                    psnrs.append(10 * np.log10(1 / max(mse, 1e-12)))
                    blocks.append(blockiness(img.permute(1, 2, 0).numpy()))
            print(f"{label:28s} {np.mean(psnrs):8.2f} {np.nanmean(blocks):10.2f} "
                  f"{train_s:8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
