"""How far the teacher's fusion of the fixes (the teacher-gate candidate, what ``two-stage``
outputs) is from the GT when computed on a training crop instead of on the whole sample and
then cropped, as inference computes it on the whole image.

    python benchmarks/candidate_crop.py --data data/synth_s3 [--every 50] [--crop 192]

For every ``--every``-th sample of a ``mmaif synth`` folder whose prompt names a degradation:
the candidates of the degradations its prompt names and the task's default teacher, (1) on a
random ``--crop`` window and (2) on the whole sample, cropped to the same window; PSNR of each
against the GT window. Prints per task the mean of both, the mean and median difference, and
how many samples differ by more than 3 dB either way. The crop sees only a window of the image:
the contrast stretch, the dehazing's airlight, the denoiser's noise estimate and Mertens's
pyramid depth all change with it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mmaif.classical.restore import candidates
from mmaif.data.degrade.names import named_degradations
from mmaif.data.images import read_image
from mmaif.evaluation.metrics import psnr_gt
from mmaif.synthesis.synth import read_manifest
from mmaif.synthesis.teachers import DEFAULT_TEACHERS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a `mmaif synth` output folder")
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--crop", type=int, default=192)
    args = ap.parse_args()
    rows = read_manifest(args.data / "manifest.jsonl")
    per_task: dict[str, list[tuple[float, float]]] = {}
    for i in range(0, len(rows), args.every):
        row = rows[i]
        names = named_degradations(row["prompt"], row["task"])
        if not (names.get("a") or names.get("b")):
            continue
        im = {k: read_image(args.data / k / f"{row['id']}.png").data for k in ("a", "b", "gt")}
        teacher = DEFAULT_TEACHERS.get(row["task"], "gff")
        h, w = im["a"].shape[:2]
        c = min(args.crop, h, w)
        rng = np.random.default_rng(i)
        y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
        box = (slice(y0, y0 + c), slice(x0, x0 + c))
        whole = candidates(im["a"], im["b"], names, teacher)[2][box]
        crop = candidates(im["a"][box], im["b"][box], names, teacher)[2]
        gt = im["gt"][box]
        per_task.setdefault(row["task"], []).append((psnr_gt(whole, gt), psnr_gt(crop, gt)))
    print(f"{args.data}: every {args.every}th sample with a named degradation, "
          f"{args.crop}-px windows; PSNR of the teacher's fusion of the fixes against the GT\n")
    print("| task | n | whole sample, cropped | on the crop | mean diff | median diff | "
          "> 3 dB better whole / on crop |")
    print("|---|---|---|---|---|---|---|")
    for task in sorted(per_task):
        v = np.array(per_task[task])
        d = v[:, 0] - v[:, 1]
        print(f"| {task.upper()} | {len(v)} | {v[:, 0].mean():.2f} | {v[:, 1].mean():.2f} | "
              f"{d.mean():+.2f} | {np.median(d):+.2f} | {(d > 3).sum()} / {(d < -3).sum()} |")


if __name__ == "__main__":
    main()
