"""Shared pieces of the command modules."""

from __future__ import annotations

import argparse

EPILOG_FUSE = """examples:
  mmaif fuse ir.png vi.png -o fused.png                 # a pair (a = IR/under/near, b = other)
  mmaif fuse --prompt "remove the haze" ir.png vi.png -o fused.png   # the shipped default model
  mmaif fuse --method mertens under.jpg over.jpg -o f.jpg   # a classical method
  mmaif fuse /data/MSRS/test -o fused/                  # every pair of a dataset root
  mmaif fuse --model runs/tiny --prompt "remove the haze and fuse them" ir.png vi.png -o f.png
dataset layouts: MSRS/M3FD/TNO (ir/, vi/), LLVIP (infrared/, visible/), RoadScene, SICE (ue/, oe/
or under/, over/), MEFB (<scene>/<scene>_A/_B), Lytro (*-A/*-B), MFI-WHU (source_1/, source_2/),
RealMFF (imageA/, imageB/), fusion-samples (vif/ mef/ mff/), generic A/, B/."""


def add_out(p: argparse.ArgumentParser, help_text: str, required: bool = False,
            default: str | None = None) -> None:
    p.add_argument("-o", "--out", required=required, default=default, help=help_text)
