"""Data: ``mmaif degrade``, ``mmaif synth``, ``mmaif stacks``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmaif.cli.common import add_out
from mmaif.errors import UsageError


def add_parsers(sub) -> None:
    g = sub.add_parser("degrade", help="apply one degradation operator to an image")
    g.add_argument("image", nargs="?", help="input image")
    g.add_argument("--list", action="store_true", help="list every operator and its ranges")
    g.add_argument("--op", help="operator name (see --list)")
    g.add_argument("--severity", default="moderate", help="slight, moderate or heavy")
    g.add_argument("--seed", type=int, default=0, help="seed of the parameter draw and noise")
    g.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a drawn parameter (repeatable)")
    g.add_argument("--depth", help="Depth Anything model folder for haze (default: heuristic)")
    add_out(g, "output image file")
    g.set_defaults(func=cmd_degrade)

    s = sub.add_parser("synth", help="synthesize degraded pairs + GT + prompts with a manifest")
    s.add_argument("--task", default="all", help="vif, mef, mff or all (default: all)")
    s.add_argument("--src", action="append", default=[], metavar="ROOT",
                   help="dataset root with clean pairs (repeatable)")
    add_out(s, "output folder")
    s.add_argument("--n", type=int, default=100, help="number of samples in total")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    s.add_argument("--teacher", help="gff, mertens, laplacian, a GT folder, or per task: "
                   "vif=gff,mef=mertens,mff=gff (the default)")
    s.add_argument("--max-side", type=int, help="downscale crops to this long side")
    s.add_argument("--clean-prob", type=float, default=0.1,
                   help="share of samples without degradation (default: 0.1)")
    s.add_argument("--counts", default="1:0.4,2:0.4,3:0.2",
                   help="distribution of the number of degradations per sample")
    s.add_argument("--crop-scales", default="1,0.8,0.6,0.5",
                   help="crop sizes as fractions of the source (one drawn per sample)")
    s.add_argument("--severity", default="slight,moderate,heavy",
                   help="severities to draw from (comma-separated)")
    s.add_argument("--keep-clean", action="store_true", help="also write the clean crops")
    s.add_argument("--pairs", metavar="NAMES_FILE",
                   help="use only the pairs listed (names like vif/tno_07, or glob patterns)")
    s.add_argument("--exclude", metavar="NAMES_FILE",
                   help="leave out the pairs listed (e.g. splits/fusion_samples_dev.txt)")
    s.add_argument("--depth", help="Depth Anything model folder for haze (default: heuristic)")
    s.add_argument("--replay", metavar="MANIFEST", help="regenerate the samples of a manifest")
    s.add_argument("--progress", choices=("bar", "lines", "none"), default="bar")
    s.add_argument("--shard", metavar="I/N", help="only samples i with i %% N == I (array "
                   "jobs: run 0/N..N-1/N into separate folders, concatenate the manifests)")
    s.add_argument("--sheet", metavar="IMAGE", help="also render a contact sheet image")
    s.add_argument("--sheet-rows", type=int, default=24)
    s.set_defaults(func=cmd_synth)

    st = sub.add_parser("stacks", help="render exposure and focus training pairs (or N-shot "
                        "stacks) from scikit-image's bundled photos")
    add_out(st, "output folder", required=True)
    st.add_argument("--variants", type=int, default=2, help="stacks per photo and task")
    st.add_argument("--shots", type=int, default=2,
                    help="shots per stack: 2 writes pairs in the fusion-samples layout "
                    "(mef/under, mef/over, mff/near, mff/far); 3 to 9 one folder per stack "
                    "(mef/NAME/shot_K.png, mff/NAME/slice_K.png)")
    st.add_argument("--seed", type=int, default=0)
    st.set_defaults(func=cmd_stacks)


def cmd_degrade(args: argparse.Namespace) -> int:
    import numpy as np

    from mmaif.data.degrade.depth import make_depth_estimator
    from mmaif.data.degrade.ops import OPS, SEVERITIES, apply_op
    from mmaif.data.degrade.pipeline import TASK_OPS
    from mmaif.data.images import check_output_path, read_image, write_image

    if args.list:
        for name, op in OPS.items():
            where = ", ".join(f"{t}({'/'.join(v[name])})" for t, v in TASK_OPS.items()
                              if name in v)
            ranges = "; ".join(f"{sev}: " + ", ".join(f"{k} {lo:g}..{hi:g}" for k, (lo, hi)
                                                      in op.ranges[sev].items())
                               for sev in SEVERITIES)
            extra = "".join(f"; {k} in {list(v)}" for k, v in op.choices.items())
            print(f"{name:14s} {op.doc} [tasks: {where}] [{ranges}{extra}]")
        return 0
    if not args.image or not args.op or not args.out:
        raise UsageError("give IMAGE --op NAME -o OUT (or --list)")
    if args.op not in OPS:
        raise UsageError(f"unknown operator {args.op!r}; choose one of {', '.join(OPS)}")
    if args.severity not in SEVERITIES:
        raise UsageError(f"unknown severity {args.severity!r}; use {', '.join(SEVERITIES)}")
    out = check_output_path(args.out, (args.image,))
    pic = read_image(args.image)
    op = OPS[args.op]
    params = op.sample(np.random.default_rng(args.seed), args.severity)
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or key not in params:
            raise UsageError(f"--param {item!r}: expected NAME=VALUE with NAME in "
                             f"{', '.join(params) or '(none)'}")
        params[key] = type(params[key])(value) if not isinstance(params[key], str) else value
    depth = make_depth_estimator(args.depth)(pic.data) if op.uses_depth else None
    img = apply_op(args.op, pic.data, params, np.random.default_rng([args.seed, 1]), depth)
    write_image(out, img, pic.bits)
    print(f"wrote {out}: {args.op} ({args.severity}) "
          + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in params.items()), file=sys.stderr)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from mmaif.data.pairs import TASKS, read_names_file
    from mmaif.data.sheet import contact_sheet
    from mmaif.synthesis.synth import SynthConfig, parse_shard, replay, summary, synthesize
    from mmaif.synthesis.teachers import parse_teachers

    if not args.out:
        raise UsageError("give the output folder with -o/--out")
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.replay:
        if args.shard:
            raise UsageError("--shard splits a new synthesis; --replay regenerates a manifest "
                             "as it is (replay each shard's manifest instead)")
        rows = replay(args.replay, args.out, args.workers, args.progress)
    else:
        tasks = list(TASKS) if args.task == "all" else [args.task]
        if args.task != "all" and args.task not in TASKS:
            raise UsageError(f"unknown task {args.task!r}; use vif, mef, mff or all")
        try:
            counts = {int(k): float(v) for k, v in
                      (item.split(":") for item in args.counts.split(","))}
            scales = [float(x) for x in args.crop_scales.split(",")]
        except ValueError:
            raise UsageError("--counts takes N:P pairs like 1:0.4,2:0.4,3:0.2 and "
                             "--crop-scales numbers like 1,0.8,0.5") from None
        if not all(1 <= k <= 3 for k in counts) or not all(0 < x <= 1 for x in scales):
            raise UsageError("--counts: N in 1..3; --crop-scales: values in (0, 1]")
        cfg = SynthConfig(tasks=tasks, sources=[str(Path(s)) for s in args.src], n=args.n,
                          seed=args.seed, clean_prob=args.clean_prob, counts=counts,
                          crop_scales=scales,
                          severities=[s.strip() for s in args.severity.split(",")],
                          max_side=args.max_side, teachers=parse_teachers(args.teacher),
                          depth=args.depth, keep_clean=args.keep_clean,
                          include=read_names_file(args.pairs) if args.pairs else [],
                          exclude=read_names_file(args.exclude) if args.exclude else [])
        rows = synthesize(cfg, args.out, args.workers, args.progress, parse_shard(args.shard))
    info = summary(rows)
    print(f"{args.out}: {info['samples']} samples {info['tasks']}, {info['clean']} clean; "
          f"ops {info['ops']}", file=sys.stderr)
    if args.sheet:
        from mmaif.data.images import check_output_path

        check_output_path(args.sheet, exts=(".png", ".jpg", ".jpeg"))
        contact_sheet(rows, args.out, args.sheet, args.sheet_rows)
        print(f"wrote {args.sheet}", file=sys.stderr)
    return 0


def cmd_stacks(args: argparse.Namespace) -> int:
    from mmaif.data.pairs import MAX_SHOTS
    from mmaif.data.stacks import write_photo_stacks
    from mmaif.synthesis.synth import prepare_out

    if args.variants < 1:
        raise UsageError("--variants must be at least 1")
    if not 2 <= args.shots <= MAX_SHOTS:
        raise UsageError(f"--shots {args.shots}: must be 2 to {MAX_SHOTS}")
    prepare_out(Path(args.out))
    names = write_photo_stacks(args.out, args.variants, args.seed, args.shots)
    what = "pairs" if args.shots == 2 else f"{args.shots}-shot stacks"
    print(f"{args.out}: {len(names)} {what} (mef/, mff/)", file=sys.stderr)
    return 0
