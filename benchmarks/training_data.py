"""What a model was trained on: source pairs and synthesized samples per dataset, from the
``mmaif synth`` manifests of its training folders (one Markdown table on stdout).

    python benchmarks/training_data.py data/exp_synth data/synth_s1 data/synth_s2

A sample's dataset is the ``dataset`` column of the ``MANIFEST.csv`` beside its source pair
(``../shared/fusion-samples``, ``../shared/train-corpus``); pairs from elsewhere (the rendered
stacks of ``mmaif stacks``) are listed by their root folder. Clean = samples without any
degradation (the model's fusion target on undegraded inputs).
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from mmaif.synthesis.synth import read_manifest


def _datasets(root: Path) -> dict[str, str]:
    """Pair name (task/NAME) -> dataset, from a MANIFEST.csv at ``root``, if any."""
    manifest = root / "MANIFEST.csv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as fh:
        return {f"{r['set']}/{r['pair']}": r["dataset"] for r in csv.DictReader(fh)}


def table(folders: list[str]) -> list[dict]:
    known: dict[Path, dict[str, str]] = {}
    pairs: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    samples: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for folder in folders:
        for row in read_manifest(Path(folder) / "manifest.jsonl"):
            pair = row["sources"]["pair"]
            # sources a: ROOT/TASK/ROLE/NAME.png
            root = Path(row["sources"]["a"]).parents[2]
            if root not in known:
                known[root] = _datasets(root)
            dataset = known[root].get(pair, "mmaif stacks")
            key = (row["task"], root.name, dataset)
            pairs[key].add(pair)
            samples[key][0] += 1
            samples[key][1] += not row["ops"]
    return [{"task": t, "root": r, "dataset": d, "pairs": len(pairs[(t, r, d)]),
             "samples": samples[(t, r, d)][0], "clean": samples[(t, r, d)][1]}
            for t, r, d in sorted(pairs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", help="mmaif synth output folders")
    rows = table(ap.parse_args().folders)
    print("| task | root | dataset | pairs | samples | of them clean |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['root']} | {r['dataset']} | {r['pairs']} | {r['samples']} "
              f"| {r['clean']} |")
    print(f"| all | | | {sum(r['pairs'] for r in rows)} | {sum(r['samples'] for r in rows)} "
          f"| {sum(r['clean'] for r in rows)} |")


if __name__ == "__main__":
    main()
