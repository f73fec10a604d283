"""Edge-aware against bilinear upsampling of the head's per-cell maps (blend weights, gates),
training-free: the same weights, sliced both ways (``DiTConfig.upsample``). Per task, on the
clean dev pairs (task prompt) and on the degraded dev samples of the card's evaluation (given
prompt): PSNR against the GT, PSNR in the band around the GT's strong edges (where halos
live), and the halo itself: the mean amount by which the output leaves the GT's local range
(3x3 min..max) in that band, in 8-bit levels.

    python benchmarks/head_upsample.py [--model DIR] [--repeats 4]
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dev_samples import DEV, dev_setup
from mmaif.data.degrade.pipeline import default_prompt
from mmaif.data.images import to_gray
from mmaif.evaluation.evaluate import eval_rows
from mmaif.evaluation.metrics import psnr_gt
from mmaif.synthesis.synth import render

MODES = ("bilinear", "guided")


def edge_band(gt: np.ndarray, share: float = 0.05, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` of the GT's strongest edges (top ``share`` of the gradient
    magnitude of its luminance): (H, W) bool."""
    g = torch.from_numpy(gt.mean(-1, dtype=np.float32))[None, None]
    gx = F.pad(g[..., :, 1:] - g[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(g[..., 1:, :] - g[..., :-1, :], (0, 0, 0, 1))
    mag = (gx.square() + gy.square()).sqrt()
    edges = (mag >= torch.quantile(mag.flatten(), 1 - share)).float()
    return F.max_pool2d(edges, 2 * width + 1, 1, width)[0, 0].numpy() > 0


def halo(out: np.ndarray, gt: np.ndarray, band: np.ndarray) -> float:
    """Mean overshoot of ``out`` beyond the GT's 3x3 local range in ``band``, 8-bit levels."""
    t = torch.from_numpy(gt).permute(2, 0, 1)[None]
    hi = F.max_pool2d(t, 3, 1, 1)[0].permute(1, 2, 0).numpy()
    lo = -F.max_pool2d(-t, 3, 1, 1)[0].permute(1, 2, 0).numpy()
    over = np.maximum(out - hi, 0) + np.maximum(lo - out, 0)
    return float(over[band].mean() * 255)


def main() -> None:
    args, pipe, rows = dev_setup(__doc__)
    clean = [({**row, "ops": []}, "clean", default_prompt(row["task"]))
             for row in eval_rows(args.data, 0, DEV)]
    scores: dict = {}
    for row, kind, prompt in clean + [(row, "degraded", row["prompt"]) for row in rows]:
        s = render(row)
        gt0 = s["gt"].astype(np.float32)
        band = edge_band(np.atleast_3d(gt0))  # one band per sample, both modes
        for mode in MODES:
            gt = gt0
            pipe.model.cfg.upsample = mode
            out = pipe(s["a"], s["b"], prompt=prompt, task=row["task"], output="numpy")
            if out.ndim != gt.ndim:  # gray GT, colour output: compare luminances
                out, gt = to_gray(out), to_gray(gt)
            out, gt = np.atleast_3d(out), np.atleast_3d(gt)
            err = (out - gt)[band]
            scores.setdefault((row["task"], kind, mode), []).append(
                (psnr_gt(out, gt), float(-10 * np.log10(np.mean(err ** 2) + 1e-12)),
                 halo(out, gt, band)))
    print("| task | pairs | upsampling | n | PSNR_gt | edge-band PSNR | halo (8-bit levels) |")
    print("|---|---|---|---|---|---|---|")
    for (task, kind, mode), v in sorted(scores.items()):
        m = np.mean(v, axis=0)
        print(f"| {task} | {kind} | {mode} | {len(v)} | {m[0]:.2f} | {m[1]:.2f} | "
              f"{m[2]:.2f} |")


if __name__ == "__main__":
    main()
