"""Write the train/dev split of ../shared/fusion-samples (pair names only, never images).

    python splits/make_splits.py [--root ../shared/fusion-samples]

About 80/20 per task, chosen by a stable hash of the pair name (so adding pairs does not
reshuffle the others). ``llvip_*`` pairs never go to train: LLVIP's terms forbid derivative
works for commercial use, and a shipped model is one.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from mmaif.data.pairs import discover_pairs


def is_dev(name: str) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 5 == 0


def main() -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=here.parents[1] / "shared" / "fusion-samples")
    args = ap.parse_args()
    _, pairs = discover_pairs(args.root)
    split: dict[str, list[str]] = {"train": [], "dev": []}
    for task in ("vif", "mef", "mff"):
        names = sorted(p.name.split("/")[-1] for p in pairs if p.task == task)
        dev = [n for n in names if is_dev(n) or n.startswith("llvip_")]
        if len(dev) < max(1, round(0.15 * len(names))):  # keep roughly 20 % per task
            extra = [n for n in names if n not in dev][-(round(0.2 * len(names)) - len(dev)):]
            dev += extra
        split["dev"] += [f"{task}/{n}" for n in sorted(dev)]
        split["train"] += [f"{task}/{n}" for n in names if n not in dev]
        print(f"{task}: {len(names) - len(dev)} train, {len(dev)} dev")
    for name, items in split.items():
        (here / f"fusion_samples_{name}.txt").write_text(
            f"# {name} split of ../shared/fusion-samples ({len(items)} pairs; "
            "splits/make_splits.py)\n" + "\n".join(items) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
