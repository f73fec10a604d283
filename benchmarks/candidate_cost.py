"""What the classical candidates cost at 640x480: each fix (on a gray and on a colour image),
each teacher, and a model end to end on the task prompt and on prompts naming two
degradations, against the bare tiny DiT (same size, pixel tokens, random weights).

    python benchmarks/candidate_cost.py [--model DIR] [--runs 3]

Medians of ``--runs`` timed calls after one warm-up; this machine, fp32, one process. A fix is
computed only when the prompt names its degradation (the gated model's fixes are otherwise the
inputs themselves); a model with the teacher gate runs the teacher on every call, or, with
``teacher_named`` (the shipped default), only when the prompt names a degradation.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from mmaif.classical.fusion import fuse_arrays
from mmaif.classical.restore import FIXES
from mmaif.evaluation.bench import median_time

PROMPTS = {
    "task prompt": None,
    "haze (b) + stripes (a)": "Remove the haze from the visible image, destripe the infrared "
                              "image, and fuse them.",
    "low contrast (a) + JPEG (b)": "Enhance the contrast of the infrared image, deblock the "
                                   "visible image, and fuse them.",
    "noise (both) + motion blur (b)": "Denoise both images, remove the motion blur from the "
                                      "visible image, and fuse them.",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: the shipped one)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    gray, rgb = rng.random((480, 640), np.float32), rng.random((480, 640, 3), np.float32)

    print("| fix | gray 640×480 (s) | colour 640×480 (s) |")
    print("|---|---|---|")
    for name, fn in FIXES.items():
        print(f"| {name} | {median_time(lambda fn=fn: fn(gray), args.runs):.3f} | "
              f"{median_time(lambda fn=fn: fn(rgb), args.runs):.3f} |")
    print()
    print("| teacher (gray + colour, 640×480) | s |")
    print("|---|---|")
    for method in ("gff", "mertens"):
        t = median_time(lambda m=method: fuse_arrays(gray, rgb, m), args.runs)
        print(f"| {method} | {t:.3f} |")
    print()

    from mmaif.inference.pipeline import FusionPipeline
    from mmaif.model.components import Components
    from mmaif.model.dit import FusionDiT, make_config
    from mmaif.model.objectives import Regression
    from mmaif.model.tokenizers import PixelTokenizer

    tok = PixelTokenizer()
    torch.manual_seed(0)
    bare = FusionDiT(make_config("tiny", latent_channels=tok.z, text_dim=384)).eval()
    reg = Regression(Components(bare, tok, None))
    a, b, pooled = torch.rand(1, 3, 480, 640) * 2 - 1, torch.rand(1, 3, 480, 640) * 2 - 1, \
        torch.randn(1, 384)
    with torch.no_grad():
        t_bare = median_time(lambda: reg.predict(bare, a, b, pooled), args.runs)
    pipe = FusionPipeline.from_pretrained(args.model)
    cfg = pipe.model.cfg
    print(f"model: fix_gates={cfg.fix_gates}, teacher_gate={cfg.teacher_gate}, tone={cfg.tone}; "
          f"bare tiny DiT at 640×480: {t_bare:.3f} s")
    print()
    print("| VIF prompt | end to end (s) | × bare tiny |")
    print("|---|---|---|")
    for label, prompt in PROMPTS.items():
        pipe(gray, rgb, prompt=prompt, task="vif", output="numpy")  # caches the embedding
        t = median_time(lambda p=prompt: pipe(gray, rgb, prompt=p, task="vif", output="numpy"),
                   args.runs)
        print(f"| {label} | {t:.3f} | {t / t_bare:.2f} |")


if __name__ == "__main__":
    main()
