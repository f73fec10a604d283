"""Evaluation and model facts: ``mmaif eval``, ``mmaif bench``, ``mmaif info``,
``mmaif latent-stats``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmaif.cli.common import add_out
from mmaif.errors import InputError, UsageError


def add_parsers(sub) -> None:
    e = sub.add_parser("eval", help="degrade clean pairs, fuse with several methods, score")
    e.add_argument("--data", required=True, help="dataset root with clean pairs")
    add_out(e, "output folder (results.csv, images/, index.html)", required=True)
    e.add_argument("--model", help="model for mmaif-reg / mmaif-flow (default: the shipped one)")
    e.add_argument("--methods", default="teacher,two-stage,mmaif-reg",
                   help="comma-separated: teacher (the task's teacher on the degraded inputs), "
                   "gff, two-stage (oracle fixes, then the teacher), mmaif-reg, mmaif-flow "
                   "(default: teacher,two-stage,mmaif-reg)")
    e.add_argument("--prompt-modes", default="given",
                   help="comma-separated prompts for the model methods: given (the sample's), "
                   "task (mmaif fuse's default), empty, mismatched (another sample's, with "
                   "other degradations), auto (the model's detector's; also writes "
                   "detections.csv); rows are named METHOD@MODE (default: given)")
    e.add_argument("--teacher", help="teachers as in synth: 'gff' or 'vif=gff,mef=mertens,"
                   "mff=DIR' (default: vif=gff,mef=mertens,mff=gff)")
    e.add_argument("--steps", type=int, default=8, help="flow sampler steps")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--pairs", help="file of pair names to use (one per line)")
    e.add_argument("--repeats", type=int, default=1,
                   help="degraded samples per pair (different degradations; default: 1)")
    e.add_argument("--stacks", metavar="N,N",
                   help="instead: render N-shot exposure brackets and focus stacks (e.g. 2,3,5) "
                   "from each MEF / MFF pair's scene and score the model on all N shots and on "
                   "the two extreme shots against the teacher on N (writes stacks.csv, "
                   "stacks.md)")
    e.set_defaults(func=cmd_eval)

    bn = sub.add_parser("bench", help="latency, peak memory and FLOP rate vs resolution")
    bn.add_argument("--presets", default="default,tiny,base",
                    help="default (the shipped model, end to end), tiny, small, base")
    bn.add_argument("--sizes", help="comma-separated WxH (default 256x256,640x480,1024x768)")
    bn.add_argument("--full", action="store_true", help="add 1920x1080 and 3840x2160")
    bn.add_argument("--runs", type=int, default=1, help="timed runs per size (median)")
    bn.add_argument("--no-pixel-space", action="store_true",
                    help="skip the f = 1 (no space-to-depth) comparison")
    add_out(bn, "also write the rows as JSON")
    bn.add_argument("--json", action="store_true",
                    help="print only the rows as a JSON list on stdout (table on stderr)")
    bn.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="model size, FLOPs and token grid for a preset or config")
    i.add_argument("--preset", default="tiny", help="tiny, small or base (default: tiny)")
    i.add_argument("--config", help="YAML config (preset + overrides) instead of --preset")
    i.add_argument("--size", default="640x480", help="image size WxH (default: 640x480)")
    i.add_argument("--tokenizer", default="pixel", help="pixel, kl:FOLDER or cosmos:FOLDER")
    i.add_argument("--flow", action="store_true", help="the flow variant (one sampler step)")
    i.set_defaults(func=cmd_info)

    ls = sub.add_parser("latent-stats", help="per-channel latent mean/std of a tokenizer")
    ls.add_argument("--tokenizer", required=True, help="kl:FOLDER or cosmos:FOLDER")
    ls.add_argument("--data", required=True, help="folder of images (searched recursively)")
    ls.add_argument("--max-images", type=int, default=200)
    add_out(ls, "JSON file (default: latent_stats.json in the tokenizer folder)")
    ls.set_defaults(func=cmd_latent_stats)


def cmd_eval(args: argparse.Namespace) -> int:
    from mmaif.evaluation.evaluate import run_eval

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if args.stacks:
        return _eval_stacks(args, out)
    results = run_eval(args.data, out, args.methods, args.model, args.steps, args.seed,
                       args.pairs, repeats=args.repeats, prompt_modes=args.prompt_modes,
                       teachers=args.teacher)
    from mmaif.distributed import rank_world
    from mmaif.evaluation.evaluate import (
        degradation_markdown,
        degradation_rows,
        markdown_table,
        summary_rows,
    )

    if rank_world()[0] != 0:  # under torchrun, rank 0 reports for everyone
        return 0
    names = list(dict.fromkeys(r["method"] for r in results))
    print(markdown_table(summary_rows(results, names)))
    print("\nPSNR_gt per degradation type (samples containing it):\n")
    print(degradation_markdown(degradation_rows(results, names)))
    print(f"wrote {out / 'summary.csv'}, {out / 'results.csv'} and {out / 'index.html'}",
          file=sys.stderr)
    return 0


def _eval_stacks(args: argparse.Namespace, out: Path) -> int:
    import csv
    import io

    from mmaif.data.images import atomic_write_bytes
    from mmaif.evaluation.stacks import markdown, parse_shots, run_stacks, summary
    from mmaif.inference.pipeline import FusionPipeline

    shots = parse_shots(args.stacks)
    if args.repeats < 1:
        raise UsageError("--repeats must be 1 or more (here: renders per scene)")
    pipe = FusionPipeline.from_pretrained(args.model)
    rows = run_stacks(args.data, pipe, shots, names_file=args.pairs, seed=args.seed,
                      variants=args.repeats)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(out / "stacks.csv", buf.getvalue().encode())
    table = markdown(summary(rows))
    atomic_write_bytes(out / "stacks.md", (table + "\n").encode())
    print(table)
    print(f"wrote {out / 'stacks.csv'} and {out / 'stacks.md'}", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from mmaif.evaluation.bench import DEFAULT_SIZES, FULL_SIZES, run_bench
    from mmaif.model.dit import PRESETS

    sizes = args.sizes.split(",") if args.sizes else (FULL_SIZES if args.full else DEFAULT_SIZES)
    for size in sizes:
        _parse_size(size)
    presets = args.presets.split(",")
    bad = [p for p in presets if p not in PRESETS and p != "default"]
    if bad:
        raise UsageError(f"unknown preset {bad[0]!r}; choose from {', '.join(PRESETS)}")
    if args.out:
        from mmaif.data.images import check_output_path

        check_output_path(args.out, exts=(".json",))
    log = (lambda text: print(text, file=sys.stderr)) if args.json else print
    rows = run_bench(presets, sizes, args.runs, not args.no_pixel_space, log=log)
    if args.json:
        print(json.dumps(rows))
    if args.out:
        from mmaif.data.images import atomic_write_bytes

        atomic_write_bytes(args.out, (json.dumps(rows, indent=1) + "\n").encode())
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r}: expected WxH, e.g. 640x480") from None
    if w < 1 or h < 1:
        raise UsageError(f"--size {text!r}: sides must be positive")
    return w, h


def cmd_info(args: argparse.Namespace) -> int:
    from mmaif.evaluation.info import model_info

    w, h = _parse_size(args.size)
    for line in model_info(args.preset, args.config, (w, h), args.tokenizer, args.flow):
        print(line)
    return 0


def cmd_latent_stats(args: argparse.Namespace) -> int:
    import torch

    from mmaif.data.images import READ_EXTS, atomic_write_bytes, read_image
    from mmaif.model.tokenizers import latent_stats, make_tokenizer

    tok = make_tokenizer(args.tokenizer)
    files = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in READ_EXTS)
    if not files:
        raise InputError(f"{args.data}: no images found")
    imgs = []
    for p in files[: args.max_images]:
        x = read_image(p).data
        x = x if x.ndim == 3 else x[..., None].repeat(3, -1)
        imgs.append(torch.from_numpy(x.transpose(2, 0, 1).copy()) * 2 - 1)
    stats = latent_stats(tok, imgs)
    out = Path(args.out) if args.out else Path(args.tokenizer.partition(":")[2]) / \
        "latent_stats.json"
    atomic_write_bytes(out, (json.dumps({**stats, "images": len(imgs)}) + "\n").encode())
    print(f"wrote {out} ({len(imgs)} images, {len(stats['mean'])} channels)", file=sys.stderr)
    return 0
