"""Showing the model: ``mmaif demo`` (an HTML page) and ``mmaif serve`` (web page and HTTP API)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mmaif.cli.common import add_out
from mmaif.errors import InputError, UsageError


def add_parsers(sub) -> None:
    d = sub.add_parser("demo", help="fuse built-in demo pairs and write an HTML page")
    add_out(d, "output folder (default: demo_out)", default="demo_out")
    d.add_argument("--model", help="model folder (default: the model shipped with mmaif)")
    d.set_defaults(func=cmd_demo)

    sv = sub.add_parser("serve", help="local web page and HTTP API (POST /api/fuse)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=7860)
    sv.add_argument("--model", help="model folder (default: the model shipped with mmaif)")
    sv.add_argument("--max-upload-mb", type=float, default=32.0, help="per request")
    sv.add_argument("--max-pixels", type=int, default=16_000_000, help="per image")
    sv.set_defaults(func=cmd_serve)


def cmd_demo(args: argparse.Namespace) -> int:
    from mmaif.evaluation.demo import run_demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    page = run_demo(out, args.model)
    print(f"wrote {page} — open it in a browser")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mmaif.inference.serve import serve

    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: use 1-65535")
    serve(args.host, args.port, args.model, args.max_upload_mb, args.max_pixels)
    return 0
