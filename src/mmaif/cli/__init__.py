"""The ``mmaif`` command: one module per command group (``fuse``, ``data``, ``train``,
``evaluate``, ``app``), each adding its sub-commands. Expected errors print one line and exit
with 2 (no traceback)."""

from __future__ import annotations

import argparse
import sys

from mmaif import __version__
from mmaif.errors import MmaifError

GROUPS = ("fuse", "data", "train", "evaluate", "app")


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    parser = argparse.ArgumentParser(
        prog="mmaif", description="Multi-task, multi-degradation image fusion (VIF, MEF, MFF): "
        "fuse, measure, synthesize data, train, evaluate, serve.")
    parser.add_argument("--version", action="version", version=f"mmaif {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        import_module(f"mmaif.cli.{group}").add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except MmaifError as exc:
        print(f"mmaif {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mmaif: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
