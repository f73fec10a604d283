"""Render docs/contact_sheet.jpg: 24 synthesized samples from redistributable images.

    python docs/make_contact_sheet.py

Sources are the demo's pairs, built from scikit-image's bundled photos (public domain or
freely licensed, shipped with scikit-image), never ../shared.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from mmaif.data.images import write_image
from mmaif.data.pairs import SAMPLES_TASK_DIRS
from mmaif.data.sheet import contact_sheet
from mmaif.data.stacks import demo_pairs
from mmaif.synthesis.synth import SynthConfig, synthesize


def main() -> int:
    target = Path(__file__).resolve().parent / "contact_sheet.jpg"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        for p in demo_pairs():
            for role, img in zip(SAMPLES_TASK_DIRS[p.task], (p.a, p.b), strict=True):
                (src / p.task / role).mkdir(parents=True, exist_ok=True)
                write_image(src / p.task / role / f"{p.name}.png", img)
        cfg = SynthConfig(tasks=["vif", "mef", "mff"], sources=[str(src)], n=24, seed=0,
                          clean_prob=0.05, max_side=256)
        rows = synthesize(cfg, Path(tmp) / "out", progress="none")
        contact_sheet(rows, Path(tmp) / "out", target, max_rows=24, tile=150, width=900)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
