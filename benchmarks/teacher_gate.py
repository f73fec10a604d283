"""Does the teacher gate open where the teacher's fusion of the fixes is better? Per degraded
dev sample of the card's evaluation (given prompt): the model's output, its own blend before
the teacher gate (``base``), the teacher candidate (= two-stage when the prompt names the
applied degradations) and the mean teacher gate.

    python benchmarks/teacher_gate.py [--model DIR] [--repeats 4]

Prints one row per sample (PSNR against the GT) and, at the end, the mean gate over the
samples where the candidate beats the model's blend by more than 3 dB and where it loses by
more than 3 dB: a gate that selects well is near 1 on the first and near 0 on the second.
"""

from __future__ import annotations

import numpy as np
import torch

from dev_samples import dev_setup
from mmaif.data.degrade.pipeline import describe
from mmaif.evaluation.metrics import psnr_gt
from mmaif.inference.pipeline import FusionPipeline, rgb_tensor
from mmaif.synthesis.synth import render


def image(t: torch.Tensor, h: int, w: int) -> np.ndarray:
    return ((t[0, :, :h, :w].permute(1, 2, 0).float().numpy() + 1) / 2).clip(0, 1)


def main() -> None:
    _, pipe, rows = dev_setup(__doc__)
    if not pipe.model.cfg.teacher_gate:
        raise SystemExit("this model has no teacher gate")
    good, bad = [], []
    print("| task | degradations | model | own blend | teacher candidate | gate |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        s = render(row)
        h, w = s["gt"].shape[:2]
        cands = pipe.candidates(s["a"], s["b"], row["prompt"], row["task"])
        a, b = rgb_tensor(s["a"]), rgb_tensor(s["b"])
        pooled = pipe.c.text.encode([row["prompt"]])[2]
        pa, pb, pc = pad(pipe, a, b, cands)
        with torch.no_grad():
            aux = pipe.obj.predict(pipe.net, pa, pb, pooled, pc)[2]
        parts = aux["parts"]
        out, base = image(parts["out"], h, w), image(parts["base"], h, w)
        teacher = image(cands["teacher"], h, w)
        gate = float(parts["teacher_gate"][..., :h, :w].mean())
        p_out, p_base, p_t = (psnr_gt(x, s["gt"]) for x in (out, base, teacher))
        (good if p_t > p_base + 3 else bad if p_t < p_base - 3 else []).append(gate)
        print(f"| {row['task']} | {describe(row['ops'])} | {p_out:.2f} | {p_base:.2f} | "
              f"{p_t:.2f} | {gate:.2f} |")
    print(f"\nmean gate where the candidate is > 3 dB better than the blend: "
          f"{np.mean(good):.2f} ({len(good)} samples); > 3 dB worse: {np.mean(bad):.2f} "
          f"({len(bad)} samples)")


def pad(pipe: FusionPipeline, a: torch.Tensor, b: torch.Tensor, cands: dict):
    """The inputs and candidates padded to the model's grid, as the pipeline does."""
    from mmaif.model.tokenizers import pad_to_multiple

    m = pipe.c.tok.f * pipe.model.cfg.patch
    c = {"fixes": [pad_to_multiple(x, m)[0] for x in cands["fixes"]],
         "teacher": pad_to_multiple(cands["teacher"], m)[0], "teacher_on": cands["teacher_on"]}
    return pad_to_multiple(a, m)[0], pad_to_multiple(b, m)[0], c


if __name__ == "__main__":
    main()
