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


def add_settings(p: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the dataclass ``cls`` (``--name-with-dashes``), with the help
    in its field metadata: lists repeatable, booleans ``--x/--no-x``, ``out`` as ``-o/--out``,
    a dict field as repeatable ``KEY=VALUE``. A flag not given leaves no attribute (so a
    config file's value stands)."""
    import typing
    from dataclasses import fields

    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        flag, help_ = "--" + f.name.replace("_", "-"), f.metadata.get("help")
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if f.name == "out":
            p.add_argument("-o", flag, default=argparse.SUPPRESS, help=help_)
        elif hint is dict or typing.get_origin(hint) is dict:
            p.add_argument(flag, action="append", metavar="KEY=VALUE", help=help_,
                           default=argparse.SUPPRESS)
        elif hint is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_,
                           default=argparse.SUPPRESS)
        elif typing.get_origin(hint) is list or any(typing.get_origin(a) is list for a in args):
            p.add_argument(flag, action="append", default=argparse.SUPPRESS, help=help_)
        else:
            p.add_argument(flag, type=hint if hint in (int, float, str) else args[0],
                           default=argparse.SUPPRESS, help=help_)
