"""Fusing pairs and measuring fused images: ``mmaif fuse``, ``mmaif metrics``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from mmaif.cli.common import EPILOG_FUSE, add_out
from mmaif.errors import InputError, UsageError

PARTIAL_EXIT = 3  # folder mode: some pairs fused, some failed (failed.txt says which and why)


def add_parsers(sub) -> None:
    from mmaif.classical.fusion import COLOUR_MODES, METHODS
    from mmaif.data.images import BYTES_PER_PIXEL, fitting_max_pixels

    max_px = fitting_max_pixels()
    from mmaif.data.pairs import STACK_ORDERS, TASKS

    f = sub.add_parser("fuse", help="fuse a pair of images, or every pair of a dataset folder",
                       epilog=EPILOG_FUSE, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="two image files (a then b), three or more (an exposure bracket or a "
                   "focus stack), or one dataset root folder (pairs, or one folder per stack)")
    add_out(f, "output image file (pair or stack) or output folder (dataset root)",
            required=True)
    f.add_argument("--method", choices=sorted(METHODS),
                   help="a classical fusion method instead of the model")
    f.add_argument("--colour", "--color", choices=COLOUR_MODES,
                   help="colour policy of --method (default: auto = fuse luminance, keep chroma)")
    f.add_argument("--task", choices=TASKS, help="task, for layouts that do not imply one")
    f.add_argument("--resize", action="store_true",
                   help="resize b to a's size when the sizes differ (default: refuse)")
    f.add_argument("--bits", choices=("auto", "8", "16"), default="auto",
                   help="output bit depth; auto keeps 16 bits if an input had them")
    f.add_argument("--ext", help="file type in folder mode (default: .png)")
    f.add_argument("--max-pixels", type=int, default=max_px,
                   help="refuse larger images, before decoding them (default here: "
                   f"{max_px / 1e6:.0f} M, what fits in half this machine's memory at "
                   f"{BYTES_PER_PIXEL} bytes per pixel, at most 200 M)")
    f.add_argument("--model", help="trained model: a saved pipeline folder or a training run "
                   "folder (its latest checkpoint); default: the model shipped with mmaif")
    f.add_argument("--prompt", help="instruction for the model (default: a task prompt); "
                   "'auto': the sentence the degradations the model's detector finds call for "
                   "(printed with them on stderr)")
    f.add_argument("--order", choices=STACK_ORDERS, default="tree",
                   help="how the model fuses a stack of three or more images in pair fusions: "
                   "tree (neighbours level by level; default) or chain (a running result with "
                   "the next image)")
    f.add_argument("--steps", type=int, help="flow sampler steps (default: 8)")
    f.add_argument("--sampler", choices=("euler", "heun"), help="flow sampler (default: euler)")
    f.add_argument("--shift", type=float, help="flow timestep shift (default: 1)")
    f.add_argument("--seed", type=int, help="flow sampler seed (default: 0)")
    f.add_argument("--compile", action="store_true",
                   help="torch.compile the model (pays off on GPUs and large folders)")
    f.add_argument("--tile", type=int, default=512, help="largest tile (pixels) the model "
                   "fuses at once; images over 1 M pixels are fused in overlapping tiles")
    f.add_argument("--overlap", type=int, default=64,
                   help="pixels neighbouring tiles share, blended linearly (default 64; less is "
                   "faster on big images, more hides tile borders better)")
    f.add_argument("--progress", choices=("bar", "none"), default="bar",
                   help="progress bars on stderr (pairs of a folder; tiles of a large image "
                   "when they take more than 2 s)")
    f.add_argument("--stop-on-error", action="store_true",
                   help="folder mode: stop at the first pair that fails (default: fuse every "
                   "readable pair, list the failures in OUT/failed.txt and exit with 3)")
    f.set_defaults(func=cmd_fuse)

    d = sub.add_parser("detect", help="tell what is wrong with each input of a pair (or of "
                       "every pair of a dataset folder), and the prompt that would fix it")
    d.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="two image files (a then b), or one dataset root folder")
    d.add_argument("--task", choices=TASKS, help="task (default: guessed as `mmaif fuse` does)")
    d.add_argument("--json", action="store_true", help="one JSON object per pair on stdout")
    d.add_argument("--model", help="the detector: a saved pipeline folder with a detector/ "
                   "folder, a detector folder or a `mmaif train-detector` run (default: the "
                   "one shipped with mmaif)")
    d.add_argument("--resize", action="store_true",
                   help="resize b to a's size when the sizes differ (default: refuse)")
    d.add_argument("--max-pixels", type=int, default=max_px,
                   help=f"refuse larger images (default here: {max_px / 1e6:.0f} M)")
    d.set_defaults(func=cmd_detect)

    m = sub.add_parser("metrics", help="fusion quality metrics (VIFB conventions)")
    m.add_argument("--a", help="source a (VIF: infrared)")
    m.add_argument("--b", help="source b (VIF: visible)")
    m.add_argument("--fused", help="fused image")
    m.add_argument("--gt", help="ground truth, adds PSNR_gt and SSIM_gt")
    m.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    m.add_argument("--data", help="folder mode: dataset root with the sources")
    m.add_argument("--fused-dir", help="folder mode: fused images named after the pairs")
    m.add_argument("--task", choices=TASKS, help="restrict / label the dataset's task")
    add_out(m, "folder mode: CSV file to write (default: print CSV to stdout)")
    m.add_argument("--resize", action="store_true", help="resize to the fused image's size")
    m.add_argument("--max-pixels", type=int, default=max_px,
                   help=f"refuse larger images (default here: {max_px / 1e6:.0f} M)")
    m.set_defaults(func=cmd_metrics)


def _finite(d: dict) -> dict:
    return {k: (v if isinstance(v, float) and math.isfinite(v) else None) for k, v in d.items()}


def _out_bits(bits: str, *pictures) -> int:
    if bits != "auto":
        return int(bits)
    return 16 if any(p.bits == 16 for p in pictures) else 8


def _fuser(args: argparse.Namespace):
    """(images..., task=, how=) -> fused array: a classical --method, or the model (--model or
    the shipped default; a stack of three or more in pair fusions, ``--order``)."""
    from mmaif.classical.fusion import fuse_stack

    said = set()

    def say(task: str | None, what: str, how: str = "") -> None:
        """Tell (once per distinct setting) which task and prompt or method a fusion used,
        and how the task was guessed when it was."""
        if (task, what) not in said:
            said.add((task, what))
            from tqdm import tqdm

            guessed = f" (guessed {how}; --task overrides)" if how else ""
            tqdm.write(f"task {task or 'unknown'}{guessed}; {what}", file=sys.stderr)

    flow_flags = [f"--{k}" for k in ("steps", "sampler", "shift", "seed")
                  if getattr(args, k) is not None]
    if args.method:
        if args.model:
            raise UsageError("give either --method (classical) or --model, not both")
        model_only = flow_flags + [f for f, v in (("--prompt", args.prompt),
                                                   ("--compile", args.compile)) if v]
        if model_only:
            raise UsageError(f"{model_only[0]} applies to the model; a classical --method "
                             "takes no prompt or sampler settings (leave it out)")
        colour = args.colour or "auto"

        def classical(*images, task, how=""):
            say(task, f"method {args.method} (colour {colour})", how)
            return fuse_stack(images, args.method, colour)
        return classical
    if args.colour:
        raise UsageError("--colour is the colour policy of a classical --method; the model "
                         "keeps the colour of the colour input")
    from mmaif.inference.pipeline import FusionPipeline, default_prompt

    pipe = FusionPipeline.from_pretrained(args.model)
    if args.prompt == "auto" and pipe.detector is None:
        raise InputError(f"--prompt auto: {args.model or 'the default model'} has no "
                         "degradation detector (detector/ folder); give a prompt, or train one "
                         "with `mmaif train-detector`")
    if args.compile:
        pipe.compile()
    if flow_flags and pipe.objective != "flow":
        print(f"warning: {', '.join(flow_flags)} ignored: {args.model or 'the default model'} "
              "is a regression model (one pass, no sampler)", file=sys.stderr)
    opts = {"steps": args.steps or 8, "sampler": args.sampler or "euler",
            "shift": 1.0 if args.shift is None else args.shift,
            "seed": args.seed or 0}

    tiling = {"tile": args.tile, "overlap": args.overlap, "progress": args.progress != "none"}

    def model(*images, task, how=""):
        prompt = default_prompt(task) if args.prompt is None else args.prompt
        note = " (the task's default; give --prompt to name the degradations)" \
            if args.prompt is None else ""
        if len(images) > 2:
            note += (" (detected per pair fusion)" if args.prompt == "auto" else "") + \
                f"; {len(images)} images in {len(images) - 1} pair fusions ({args.order})"
            say(task, f"prompt: {prompt!r}{note}", how)
            return pipe.fuse_stack(images, prompt, task, order=args.order, output="numpy",
                                   **tiling, **opts)
        a, b = images
        if args.prompt == "auto":
            from mmaif.model.detector import detections_text

            _, found, prompt = pipe.detect(a, b, task)
            seen = "; ".join(f"{r}: {detections_text(found[r]) or 'nothing'}" for r in "ab")
            note = f" (detected {seen})"
        say(task, f"prompt: {prompt!r}{note}", how)
        return pipe(a, b, prompt=prompt, task=task, output="numpy", **tiling, **opts)
    return model


def _check_numbers(args: argparse.Namespace) -> None:
    """Numeric flags in range, before any work."""
    rules = [("--max-pixels", args.max_pixels, args.max_pixels >= 1, "1 or more"),
             ("--tile", args.tile, args.tile >= 64, "64 or more pixels (large images are "
              "fused in tiles of this size)"),
             ("--overlap", args.overlap, 0 <= args.overlap <= args.tile // 2,
              f"0 to half of --tile ({args.tile // 2}) pixels")]
    if args.steps is not None:
        rules.append(("--steps", args.steps, args.steps >= 1, "1 or more"))
    if args.shift is not None:
        rules.append(("--shift", args.shift, math.isfinite(args.shift) and args.shift > 0,
                      "a positive number"))
    for flag, value, ok, must in rules:
        if not ok:
            raise UsageError(f"{flag} {value}: must be {must}")


def _fuse_stack(args: argparse.Namespace) -> int:
    """Three or more files: an exposure bracket (MEF) or a focus stack (MFF), fused by a
    classical method (each is defined for N inputs) or the model (pair fusions)."""
    from mmaif.data.images import check_output_path, read_stack, write_image
    from mmaif.data.pairs import guess_stack_task

    if args.ext:
        raise UsageError("--ext applies to folder mode; a stack's output type comes from -o")
    if args.task == "vif":
        raise UsageError(f"{len(args.inputs)} images given: VIF fuses two (infrared, visible); "
                         "stacks of three or more are MEF or MFF (--task mef|mff)")
    out = check_output_path(args.out, tuple(args.inputs))
    pics = read_stack(args.inputs, resize=args.resize, max_pixels=args.max_pixels)
    task, how = (args.task, "") if args.task else guess_stack_task([p.data for p in pics])
    fused = _fuser(args)(*[p.data for p in pics], task=task, how=how)
    write_image(out, fused, _out_bits(args.bits, *pics))
    print(f"wrote {out} ({pics[0].size[0]}x{pics[0].size[1]}, {len(pics)} inputs, "
          f"{'gray' if fused.ndim == 2 else 'RGB'})", file=sys.stderr)
    return 0


def cmd_fuse(args: argparse.Namespace) -> int:
    from mmaif.data.images import WRITE_EXTS, check_output_path, read_pair, read_stack, write_image
    from mmaif.data.pairs import discover_pairs, discover_stacks, guess_stack_task, guess_task

    _check_numbers(args)
    if len(args.inputs) > 2:
        return _fuse_stack(args)
    if len(args.inputs) == 2:
        if args.ext:
            raise UsageError("--ext applies to folder mode; a pair's output type comes from -o")
        out = check_output_path(args.out, tuple(args.inputs))
        a, b = read_pair(*args.inputs, resize=args.resize, max_pixels=args.max_pixels)
        task, how = (args.task, "") if args.task else guess_task(a.data, b.data, *args.inputs)
        fused = _fuser(args)(a.data, b.data, task=task, how=how)
        write_image(out, fused, _out_bits(args.bits, a, b))
        print(f"wrote {out} ({a.size[0]}x{a.size[1]}, {'gray' if fused.ndim == 2 else 'RGB'})",
              file=sys.stderr)
        return 0
    if len(args.inputs) != 1:
        raise UsageError("give two image files (a b) or one dataset folder")
    root = Path(args.inputs[0])
    if root.is_file():
        raise UsageError(f"{root}: one file given; fuse needs two files (a b) or a dataset folder")
    try:
        layout, pairs = discover_pairs(root, args.task)
        jobs = [(p.name, (p.a, p.b), p.task) for p in pairs]
        unit = "pair"
    except InputError as no_pairs:
        try:  # one folder of images per stack (an exposure bracket, a focus stack)
            layout, stacks = discover_stacks(root, args.task)
        except InputError:
            raise InputError(f"{no_pairs}; nor stack folders (a folder of two or more images "
                             "per exposure bracket or focus stack)") from None
        jobs = [(st.name, st.files, st.task) for st in stacks]
        unit = "stack"
    ext = args.ext or ".png"
    ext = ext if ext.startswith(".") else "." + ext
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; folder mode writes one file per "
                         "pair into a folder")
    if out_dir.resolve() == root.resolve():
        raise InputError(f"{out_dir}: is the input dataset folder; choose another output folder")
    if ext.lower() not in WRITE_EXTS:
        raise UsageError(f"--ext {ext}: unknown image type; use one of {', '.join(WRITE_EXTS)}")
    from mmaif.data.images import check_writable_folder

    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder will be created inside its first existing parent
    check_writable_folder(existing)
    from mmaif.distributed import rank_world

    rank, world = rank_world()  # under torchrun: rank r fuses pairs r, r + N, ...
    print(f"{root}: {layout}, {len(jobs)} {unit}s"
          + (f"; rank {rank} of {world} fuses {len(jobs[rank::world])}" if world > 1 else ""),
          file=sys.stderr)
    jobs = jobs[rank::world]
    from tqdm import tqdm

    fuse = _fuser(args)
    failed: list[tuple[str, str]] = []
    for name, files, task in tqdm(jobs, desc="fuse", unit=unit, file=sys.stderr,
                                  disable=args.progress == "none"):
        try:
            pics = read_stack(files, resize=args.resize, max_pixels=args.max_pixels)
            data = [p.data for p in pics]
            fused = fuse(*data, task=task or args.task or guess_stack_task(data)[0])
            target = out_dir / (name + ext)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_image(target, fused, _out_bits(args.bits, *pics))
        except InputError as exc:
            if args.stop_on_error:
                raise
            failed.append((name, str(exc)))
            tqdm.write(f"mmaif fuse: {name}: {exc}", file=sys.stderr)
    done = len(jobs) - len(failed)
    print(f"fused {done} of {len(jobs)} {unit}s into {out_dir}"
          + (f"; {len(failed)} failed (listed in {out_dir / 'failed.txt'})" if failed else ""),
          file=sys.stderr)
    if failed:
        from mmaif.data.images import atomic_write_bytes

        out_dir.mkdir(parents=True, exist_ok=True)
        name = "failed.txt" if world == 1 else f"failed_rank{rank}.txt"
        atomic_write_bytes(out_dir / name, "".join(f"{n}\t{why}\n" for n, why in failed)
                           .encode())
        return PARTIAL_EXIT
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from mmaif.data.images import atomic_write_bytes, check_output_path
    from mmaif.evaluation.measure import csv_text, folder_metrics, pair_metrics

    if args.data or args.fused_dir:
        if not (args.data and args.fused_dir):
            raise UsageError("folder mode needs both --data ROOT and --fused-dir DIR")
        single = [f for f, v in (("--json", args.json), ("--gt", args.gt), ("--a", args.a),
                                 ("--b", args.b), ("--fused", args.fused)) if v]
        if single:
            raise UsageError(f"{single[0]} applies to one pair; folder mode (--data, "
                             "--fused-dir) writes one CSV row per pair (-o FILE)")
        if args.out:
            check_output_path(args.out, exts=(".csv",))
        rows = folder_metrics(args.data, args.fused_dir, args.task, args.resize,
                              args.max_pixels)
        text = csv_text(rows)
        if args.out:
            atomic_write_bytes(args.out, text.encode())
            print(f"wrote {args.out} ({len(rows) - 1} pairs + mean)", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    if not (args.a and args.b and args.fused):
        raise UsageError("give --a A --b B --fused F (or --data ROOT --fused-dir DIR)")
    if args.out:
        raise UsageError("-o/--out is the CSV of folder mode; for one pair use --json (stdout)")
    vals = pair_metrics(args.a, args.b, args.fused, args.gt, args.resize, args.max_pixels)
    if args.json:
        print(json.dumps(_finite(vals)))
    else:
        for k, v in vals.items():
            print(f"{k:8s} {v:.6g}")
    return 0


def _detection_text(task: str, found: dict, prompt: str) -> str:
    from mmaif.data.pairs import ROLE_NAMES
    from mmaif.model.detector import detections_text

    lines = [f"{r} ({ROLE_NAMES[task][r]}): {detections_text(found[r]) or 'nothing found'}"
             for r in ("a", "b")]
    return "\n".join([*lines, f"prompt: {prompt}"])


def cmd_detect(args: argparse.Namespace) -> int:
    from mmaif.data.images import read_pair
    from mmaif.data.pairs import discover_pairs, guess_task
    from mmaif.model.detector import detections_json, detections_prompt, load_detector

    if args.max_pixels < 1:
        raise UsageError(f"--max-pixels {args.max_pixels}: must be 1 or more")
    if len(args.inputs) == 2:
        jobs = [(None, *args.inputs, args.task)]
    elif len(args.inputs) == 1 and Path(args.inputs[0]).is_dir():
        _, pairs = discover_pairs(args.inputs[0], args.task)
        jobs = [(p.name, p.a, p.b, p.task or args.task) for p in pairs]
    else:
        raise UsageError("give two image files (a b) or one dataset folder")
    if args.model is None:
        from mmaif.inference.pipeline import DEFAULT_MODEL

        args.model = DEFAULT_MODEL
    detector = load_detector(args.model)
    for name, path_a, path_b, task in jobs:
        a, b = read_pair(path_a, path_b, resize=args.resize, max_pixels=args.max_pixels)
        task = task or guess_task(a.data, b.data, path_a, path_b)[0]
        found = detector.detect(a.data, b.data, task)
        prompt = detections_prompt(task, found)
        if args.json:
            out = detections_json(task, found, prompt)
            print(json.dumps({"pair": name, **out} if name else out))
        else:
            print((f"{name} [{task}]\n" if name else "") + _detection_text(task, found, prompt))
    return 0
