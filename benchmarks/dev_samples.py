"""What the per-sample benchmarks share (``python benchmarks/NAME.py`` puts this folder on the
import path): their flags (--model, --repeats, --data), the model, and the degraded dev samples
of the card's evaluation."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mmaif.evaluation.evaluate import eval_rows
from mmaif.inference.pipeline import FusionPipeline

REPO = Path(__file__).resolve().parents[1]
DEV = str(REPO / "splits" / "fusion_samples_dev.txt")


def dev_setup(doc: str) -> tuple[argparse.Namespace, FusionPipeline, list[dict]]:
    """Parse the flags (the description: ``doc``'s first line), load the model (2 threads)
    and return the dev samples' manifest rows (``--repeats`` draws per pair)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", help="model folder or run (default: the shipped one)")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "fusion-samples"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    return args, FusionPipeline.from_pretrained(args.model), eval_rows(
        args.data, 0, DEV, repeats=args.repeats)
