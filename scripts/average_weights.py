"""Average two models' weights (a "model soup", Wortsman et al. 2022): (1 - alpha) * FIRST +
alpha * SECOND, for two models of the same architecture fine-tuned from one another (e.g. the
shipped default and a continuation of it). Saved as a pipeline folder with FIRST's tokenizer,
text encoder and detector; its config records both sources and alpha.

    python scripts/average_weights.py src/mmaif/weights/default runs/arm_full_candidates_s5 \
        --alpha 0.5 --out runs/soup50
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path


def average(first, second, alpha: float) -> dict:
    """The state dict (1 - alpha) * first + alpha * second (floating tensors; the rest is
    first's). A different architecture is a ValueError naming the first key that differs."""
    sa, sb = first.state_dict(), second.state_dict()
    for k in sa.keys() | sb.keys():
        if k not in sa or k not in sb or sa[k].shape != sb[k].shape:
            raise ValueError(f"the two models differ at {k!r}: average models of one "
                             f"architecture (one fine-tuned from the other)")
    return {k: (1 - alpha) * v + alpha * sb[k] if v.is_floating_point() else v
            for k, v in sa.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", help="a saved pipeline or run folder")
    ap.add_argument("second", help="a saved pipeline or run folder of the same architecture")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of SECOND, in [0, 1]")
    ap.add_argument("--out", required=True, help="new pipeline folder (must not exist)")
    args = ap.parse_args(argv)
    if not (math.isfinite(args.alpha) and 0 <= args.alpha <= 1):
        ap.exit(2, f"error: --alpha {args.alpha}: give a number in [0, 1]\n")
    out = Path(args.out)
    if out.exists():
        ap.exit(2, f"error: --out {out} exists: name a new folder\n")

    from mmaif.errors import MmaifError
    from mmaif.inference.pipeline import FusionPipeline

    try:
        a = FusionPipeline.from_pretrained(args.first)
        b = FusionPipeline.from_pretrained(args.second)
        mixed = average(a.model, b.model, args.alpha)
    except (MmaifError, ValueError) as e:
        ap.exit(2, f"error: {e}\n")
    a.model.load_state_dict(mixed)
    a.training = {"average": {"first": args.first, "second": args.second, "alpha": args.alpha,
                              "first_training": a.training, "second_training": b.training}}
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # a crashed earlier run's leftovers
    a.save_pretrained(tmp)
    tmp.rename(out)
    print(f"wrote {out}: (1 - {args.alpha}) * {args.first} + {args.alpha} * {args.second}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
