"""The ``mmaif`` command. Expected errors print one line and exit with 2 (no traceback)."""

from __future__ import annotations

import argparse
import csv
import io as _io
import json
import math
import sys
from pathlib import Path

from . import __version__
from .errors import InputError, MmaifError, UsageError

EPILOG_FUSE = """examples:
  mmaif fuse ir.png vi.png -o fused.png                 # a pair (a = IR/under/near, b = other)
  mmaif fuse --method mertens under.jpg over.jpg -o f.jpg
  mmaif fuse /data/MSRS/test -o fused/                  # every pair of a dataset root
dataset layouts: MSRS/M3FD/TNO (ir/, vi/), LLVIP (infrared/, visible/), RoadScene, SICE (ue/, oe/
or under/, over/), MEFB (<scene>/<scene>_A/_B), Lytro (*-A/*-B), MFI-WHU (source_1/, source_2/),
RealMFF (imageA/, imageB/), fusion-samples (vif/ mef/ mff/), generic A/, B/."""


def _add_out(p: argparse.ArgumentParser, help_text: str, required: bool = False,
             default: str | None = None) -> None:
    p.add_argument("-o", "--out", required=required, default=default, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    from .fusion import COLOUR_MODES, METHODS
    from .io import DEFAULT_MAX_PIXELS
    from .pairs import TASKS

    parser = argparse.ArgumentParser(prog="mmaif", description="Multi-task, multi-degradation "
                                     "image fusion (VIF, MEF, MFF): fuse, measure, demo.")
    parser.add_argument("--version", action="version", version=f"mmaif {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    f = sub.add_parser("fuse", help="fuse a pair of images, or every pair of a dataset folder",
                       epilog=EPILOG_FUSE, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="two image files (a then b), or one dataset root folder")
    _add_out(f, "output image file (pair) or output folder (dataset root)", required=True)
    f.add_argument("--method", default="gff", choices=sorted(METHODS),
                   help="classical fusion method (default: gff)")
    f.add_argument("--colour", "--color", default="auto", choices=COLOUR_MODES,
                   help="colour policy (default: auto = fuse luminance, keep chroma)")
    f.add_argument("--task", choices=TASKS, help="task, for layouts that do not imply one")
    f.add_argument("--resize", action="store_true",
                   help="resize b to a's size when the sizes differ (default: refuse)")
    f.add_argument("--bits", choices=("auto", "8", "16"), default="auto",
                   help="output bit depth; auto keeps 16 bits if an input had them")
    f.add_argument("--ext", default=".png", help="file type in folder mode (default: .png)")
    f.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse larger images (decompression-bomb guard)")

    m = sub.add_parser("metrics", help="fusion quality metrics (VIFB conventions)")
    m.add_argument("--a", help="source a (VIF: infrared)")
    m.add_argument("--b", help="source b (VIF: visible)")
    m.add_argument("--fused", help="fused image")
    m.add_argument("--gt", help="ground truth, adds PSNR_gt and SSIM_gt")
    m.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    m.add_argument("--data", help="folder mode: dataset root with the sources")
    m.add_argument("--fused-dir", help="folder mode: fused images named after the pairs")
    m.add_argument("--task", choices=TASKS, help="restrict / label the dataset's task")
    _add_out(m, "folder mode: CSV file to write (default: print CSV to stdout)")
    m.add_argument("--resize", action="store_true", help="resize to the fused image's size")
    m.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)

    d = sub.add_parser("demo", help="fuse built-in demo pairs and write an HTML page")
    _add_out(d, "output folder (default: demo_out)", default="demo_out")
    return parser


def _finite(d: dict) -> dict:
    return {k: (v if isinstance(v, float) and math.isfinite(v) else None) for k, v in d.items()}


def _out_bits(bits: str, *pictures) -> int:
    if bits != "auto":
        return int(bits)
    return 16 if any(p.bits == 16 for p in pictures) else 8


def cmd_fuse(args: argparse.Namespace) -> int:
    from .fusion import fuse_arrays
    from .io import WRITE_EXTS, check_output_path, read_pair, write_image
    from .pairs import discover_pairs

    if len(args.inputs) == 2:
        out = check_output_path(args.out, tuple(args.inputs))
        a, b = read_pair(*args.inputs, resize=args.resize, max_pixels=args.max_pixels)
        fused = fuse_arrays(a.data, b.data, args.method, args.colour)
        write_image(out, fused, _out_bits(args.bits, a, b))
        print(f"wrote {out} ({a.size[0]}x{a.size[1]}, {'gray' if fused.ndim == 2 else 'RGB'})",
              file=sys.stderr)
        return 0
    if len(args.inputs) != 1:
        raise UsageError("give two image files (a b) or one dataset folder")
    root = Path(args.inputs[0])
    if root.is_file():
        raise UsageError(f"{root}: one file given; fuse needs two files (a b) or a dataset folder")
    layout, pairs = discover_pairs(root, args.task)
    ext = args.ext if args.ext.startswith(".") else "." + args.ext
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; folder mode writes one file per "
                         "pair into a folder")
    if out_dir.resolve() == root.resolve():
        raise InputError(f"{out_dir}: is the input dataset folder; choose another output folder")
    if ext.lower() not in WRITE_EXTS:
        raise UsageError(f"--ext {ext}: unknown image type; use one of {', '.join(WRITE_EXTS)}")
    print(f"{root}: {layout}, {len(pairs)} pairs", file=sys.stderr)
    from tqdm import tqdm

    for p in tqdm(pairs, desc="fuse", unit="pair", file=sys.stderr):
        a, b = read_pair(p.a, p.b, resize=args.resize, max_pixels=args.max_pixels)
        fused = fuse_arrays(a.data, b.data, args.method, args.colour)
        target = out_dir / (p.name + ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_image(target, fused, _out_bits(args.bits, a, b))
    print(f"wrote {len(pairs)} images to {out_dir}", file=sys.stderr)
    return 0


def _find_fused(folder: Path, name: str) -> Path | None:
    from .io import READ_EXTS

    for ext in READ_EXTS:
        for cand in (folder / (name + ext), folder / (name + ext.upper())):
            if cand.is_file():
                return cand
    return None


def cmd_metrics(args: argparse.Namespace) -> int:
    from .io import atomic_write_bytes, check_output_path, read_image, resize_to
    from .metrics import METRIC_NAMES, compute_metrics

    def load(path):
        return read_image(path, max_pixels=args.max_pixels).data

    def measure(pa, pb, pf, pg=None):
        f = load(pf)
        size = (f.shape[1], f.shape[0])
        imgs = []
        for p in (pa, pb) + ((pg,) if pg else ()):
            x = load(p)
            if (x.shape[1], x.shape[0]) != size:
                if not args.resize:
                    raise InputError(f"sizes differ: {p} is {x.shape[1]}x{x.shape[0]}, fused {pf} "
                                     f"is {size[0]}x{size[1]}; pass --resize to resize sources")
                x = resize_to(x, size)
            imgs.append(x)
        return compute_metrics(imgs[0], imgs[1], f, imgs[2] if pg else None)

    if args.data or args.fused_dir:
        if not (args.data and args.fused_dir):
            raise UsageError("folder mode needs both --data ROOT and --fused-dir DIR")
        from tqdm import tqdm

        from .pairs import discover_pairs

        _, pairs = discover_pairs(args.data, args.task)
        fdir = Path(args.fused_dir)
        if not fdir.is_dir():
            raise InputError(f"{fdir}: not a folder of fused images")
        missing = [p.name for p in pairs if _find_fused(fdir, p.name) is None]
        if missing:
            raise InputError(f"{len(missing)} pair(s) have no fused image in {fdir} "
                             f"(e.g. {missing[0]}.png)")
        if args.out:
            check_output_path(args.out, exts=(".csv",))
        rows = []
        for p in tqdm(pairs, desc="metrics", unit="pair", file=sys.stderr):
            vals = measure(p.a, p.b, _find_fused(fdir, p.name))
            rows.append({"name": p.name, "task": p.task or "", **vals})
        mean = {k: sum(r[k] for r in rows) / len(rows) for k in METRIC_NAMES}
        rows.append({"name": "mean", "task": "", **mean})
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["name", "task", *METRIC_NAMES], lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        if args.out:
            atomic_write_bytes(args.out, buf.getvalue().encode())
            print(f"wrote {args.out} ({len(pairs)} pairs + mean)", file=sys.stderr)
        else:
            sys.stdout.write(buf.getvalue())
        return 0
    if not (args.a and args.b and args.fused):
        raise UsageError("give --a A --b B --fused F (or --data ROOT --fused-dir DIR)")
    vals = measure(args.a, args.b, args.fused, args.gt)
    if args.json:
        print(json.dumps(_finite(vals)))
    else:
        for k, v in vals.items():
            print(f"{k:8s} {v:.6g}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    page = run_demo(out)
    print(f"wrote {page} — open it in a browser")
    return 0


COMMANDS = {"fuse": cmd_fuse, "metrics": cmd_metrics, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except MmaifError as exc:
        print(f"mmaif {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mmaif: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
