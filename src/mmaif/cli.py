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
  mmaif fuse --prompt "remove the haze" ir.png vi.png -o fused.png   # the shipped default model
  mmaif fuse --method mertens under.jpg over.jpg -o f.jpg   # a classical method
  mmaif fuse /data/MSRS/test -o fused/                  # every pair of a dataset root
  mmaif fuse --model runs/tiny --prompt "remove the haze and fuse them" ir.png vi.png -o f.png
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

    parser = argparse.ArgumentParser(
        prog="mmaif", description="Multi-task, multi-degradation image fusion (VIF, MEF, MFF): "
        "fuse, measure, synthesize data, train.")
    parser.add_argument("--version", action="version", version=f"mmaif {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    f = sub.add_parser("fuse", help="fuse a pair of images, or every pair of a dataset folder",
                       epilog=EPILOG_FUSE, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="two image files (a then b), or one dataset root folder")
    _add_out(f, "output image file (pair) or output folder (dataset root)", required=True)
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
    f.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="refuse larger images (decompression-bomb guard)")
    f.add_argument("--model", help="trained model: a saved pipeline folder or a training run "
                   "folder (its latest checkpoint); default: the model shipped with mmaif")
    f.add_argument("--prompt", help="instruction for the model (default: a task prompt)")
    f.add_argument("--steps", type=int, help="flow sampler steps (default: 8)")
    f.add_argument("--sampler", choices=("euler", "heun"), help="flow sampler (default: euler)")
    f.add_argument("--shift", type=float, help="flow timestep shift (default: 1)")
    f.add_argument("--seed", type=int, help="flow sampler seed (default: 0)")
    f.add_argument("--compile", action="store_true",
                   help="torch.compile the model (pays off on GPUs and large folders)")
    f.add_argument("--tile", type=int, default=512, help="tile size for large images")

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

    t = sub.add_parser("train", help="train the fusion model (also under torchrun)")
    t.add_argument("--config", help="YAML training config (keys of TrainConfig + model:)")
    t.add_argument("--data", help="a `mmaif synth` output folder")
    t.add_argument("--src", action="append", help="clean pair roots, synthesized on the fly")
    _add_out(t, "run folder (checkpoints, logs, samples)")
    t.add_argument("--objective", choices=("reg", "flow"))
    t.add_argument("--preset", help="model preset: tiny, small, base")
    t.add_argument("--max-steps", type=int)
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint "
                   "in --out exactly: only --max-steps may change (the lr schedule keeps its "
                   "horizon); other changed settings are refused")
    t.add_argument("--stop-after", type=int, help="stop after this many steps (resume later)")
    for name, typ in (("batch", int), ("accum", int), ("patch", int), ("lr", float),
                      ("warmup", int), ("seed", int), ("save-every", int),
                      ("sample-every", int), ("log-every", int), ("keep-last", int),
                      ("ema", float), ("balance-weight", float), ("fusion-weight", float),
                      ("distill-weight", float), ("t-shift", float), ("workers", int)):
        t.add_argument(f"--{name}", type=typ)
    t.add_argument("--init-from", help="warm start from a saved pipeline or run folder")
    t.add_argument("--tokenizer", help="pixel (default), kl:FOLDER, cosmos:FOLDER")
    t.add_argument("--text", help="minilm (default), t5:FOLDER, t5-bf16:FOLDER")
    t.add_argument("--progress", choices=("bar", "lines", "none"), default="bar")

    g = sub.add_parser("degrade", help="apply one degradation operator to an image")
    g.add_argument("image", nargs="?", help="input image")
    g.add_argument("--list", action="store_true", help="list every operator and its ranges")
    g.add_argument("--op", help="operator name (see --list)")
    g.add_argument("--severity", default="moderate", help="slight, moderate or heavy")
    g.add_argument("--seed", type=int, default=0, help="seed of the parameter draw and noise")
    g.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a drawn parameter (repeatable)")
    g.add_argument("--depth", help="Depth Anything model folder for haze (default: heuristic)")
    _add_out(g, "output image file")

    s = sub.add_parser("synth", help="synthesize degraded pairs + GT + prompts with a manifest")
    s.add_argument("--task", default="all", help="vif, mef, mff or all (default: all)")
    s.add_argument("--src", action="append", default=[], metavar="ROOT",
                   help="dataset root with clean pairs (repeatable)")
    _add_out(s, "output folder")
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

    e = sub.add_parser("eval", help="degrade clean pairs, fuse with several methods, score")
    e.add_argument("--data", required=True, help="dataset root with clean pairs")
    _add_out(e, "output folder (results.csv, images/, index.html)", required=True)
    e.add_argument("--model", help="model for mmaif-reg / mmaif-flow (default: the shipped one)")
    e.add_argument("--methods", default="teacher,two-stage,mmaif-reg",
                   help="comma-separated: teacher (the task's teacher on the degraded inputs), "
                   "gff, two-stage (oracle fixes, then the teacher), mmaif-reg, mmaif-flow "
                   "(default: teacher,two-stage,mmaif-reg)")
    e.add_argument("--prompt-modes", default="given",
                   help="comma-separated prompts for the model methods: given (the sample's), "
                   "task (mmaif fuse's default), empty, mismatched (another sample's, with "
                   "other degradations); rows are named METHOD@MODE (default: given)")
    e.add_argument("--teacher", help="teachers as in synth: 'gff' or 'vif=gff,mef=mertens,"
                   "mff=DIR' (default: vif=gff,mef=mertens,mff=gff)")
    e.add_argument("--steps", type=int, default=8, help="flow sampler steps")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--pairs", help="file of pair names to use (one per line)")
    e.add_argument("--repeats", type=int, default=1,
                   help="degraded samples per pair (different degradations; default: 1)")

    bn = sub.add_parser("bench", help="latency, peak memory and FLOP rate vs resolution")
    bn.add_argument("--presets", default="default,tiny,base",
                    help="default (the shipped model, end to end), tiny, small, base")
    bn.add_argument("--sizes", help="comma-separated WxH (default 256x256,640x480,1024x768)")
    bn.add_argument("--full", action="store_true", help="add 1920x1080 and 3840x2160")
    bn.add_argument("--runs", type=int, default=1, help="timed runs per size (median)")
    bn.add_argument("--no-pixel-space", action="store_true",
                    help="skip the f = 1 (no space-to-depth) comparison")
    _add_out(bn, "also write the rows as JSON")
    bn.add_argument("--json", action="store_true",
                    help="print only the rows as a JSON list on stdout (table on stderr)")

    i = sub.add_parser("info", help="model size, FLOPs and token grid for a preset or config")
    i.add_argument("--preset", default="tiny", help="tiny, small or base (default: tiny)")
    i.add_argument("--config", help="YAML config (preset + overrides) instead of --preset")
    i.add_argument("--size", default="640x480", help="image size WxH (default: 640x480)")
    i.add_argument("--tokenizer", default="pixel", help="pixel, kl:FOLDER or cosmos:FOLDER")
    i.add_argument("--flow", action="store_true", help="the flow variant (one sampler step)")

    ls = sub.add_parser("latent-stats", help="per-channel latent mean/std of a tokenizer")
    ls.add_argument("--tokenizer", required=True, help="kl:FOLDER or cosmos:FOLDER")
    ls.add_argument("--data", required=True, help="folder of images (searched recursively)")
    ls.add_argument("--max-images", type=int, default=200)
    _add_out(ls, "JSON file (default: latent_stats.json in the tokenizer folder)")

    st = sub.add_parser("stacks", help="render exposure and focus training pairs from "
                        "scikit-image's bundled photos (fusion-samples layout)")
    _add_out(st, "output folder", required=True)
    st.add_argument("--variants", type=int, default=2, help="pairs per photo and task")
    st.add_argument("--seed", type=int, default=0)

    sv = sub.add_parser("serve", help="local web page and HTTP API (POST /api/fuse)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=7860)
    sv.add_argument("--model", help="model folder (default: the model shipped with mmaif)")
    sv.add_argument("--max-upload-mb", type=float, default=32.0, help="per request")
    sv.add_argument("--max-pixels", type=int, default=16_000_000, help="per image")

    d = sub.add_parser("demo", help="fuse built-in demo pairs and write an HTML page")
    _add_out(d, "output folder (default: demo_out)", default="demo_out")
    d.add_argument("--model", help="model folder (default: the model shipped with mmaif)")
    return parser


def _finite(d: dict) -> dict:
    return {k: (v if isinstance(v, float) and math.isfinite(v) else None) for k, v in d.items()}


def _out_bits(bits: str, *pictures) -> int:
    if bits != "auto":
        return int(bits)
    return 16 if any(p.bits == 16 for p in pictures) else 8


def _fuser(args: argparse.Namespace):
    """(a, b, task) -> fused array: a classical --method, else the model (--model or the
    shipped default)."""
    from .fusion import fuse_arrays

    said = set()

    def say(task: str | None, what: str) -> None:
        """Tell (once per distinct setting) which task and prompt or method a fusion used."""
        if (task, what) not in said:
            said.add((task, what))
            from tqdm import tqdm

            tqdm.write(f"task {task or 'unknown'}; {what}", file=sys.stderr)

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

        def classical(a, b, task):
            say(task, f"method {args.method} (colour {colour})")
            return fuse_arrays(a, b, args.method, colour)
        return classical
    if args.colour:
        raise UsageError("--colour is the colour policy of a classical --method; the model "
                         "keeps the colour of the colour input")
    from .pipeline import FusionPipeline, default_prompt

    pipe = FusionPipeline.from_pretrained(args.model)
    if args.compile:
        pipe.compile()
    if flow_flags and pipe.objective != "flow":
        print(f"warning: {', '.join(flow_flags)} ignored: {args.model or 'the default model'} "
              "is a regression model (one pass, no sampler)", file=sys.stderr)
    opts = {"steps": args.steps or 8, "sampler": args.sampler or "euler",
            "shift": 1.0 if args.shift is None else args.shift,
            "seed": args.seed or 0}

    def model(a, b, task):
        prompt = default_prompt(task) if args.prompt is None else args.prompt
        say(task, f"prompt: {prompt!r}" + (" (the task's default; give --prompt to name the "
                                            "degradations)" if args.prompt is None else ""))
        return pipe(a, b, prompt=prompt, task=task, output="numpy", tile=args.tile, **opts)
    return model


def cmd_fuse(args: argparse.Namespace) -> int:
    from .io import WRITE_EXTS, check_output_path, read_pair, write_image
    from .pairs import discover_pairs, infer_task

    if len(args.inputs) == 2:
        if args.ext:
            raise UsageError("--ext applies to folder mode; a pair's output type comes from -o")
        out = check_output_path(args.out, tuple(args.inputs))
        a, b = read_pair(*args.inputs, resize=args.resize, max_pixels=args.max_pixels)
        fused = _fuser(args)(a.data, b.data, args.task or infer_task(*args.inputs))
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
    from .distributed import rank_world

    rank, world = rank_world()  # under torchrun: rank r fuses pairs r, r + N, ...
    print(f"{root}: {layout}, {len(pairs)} pairs"
          + (f"; rank {rank} of {world} fuses {len(pairs[rank::world])}" if world > 1 else ""),
          file=sys.stderr)
    pairs = pairs[rank::world]
    from tqdm import tqdm

    fuse = _fuser(args)
    for p in tqdm(pairs, desc="fuse", unit="pair", file=sys.stderr):
        a, b = read_pair(p.a, p.b, resize=args.resize, max_pixels=args.max_pixels)
        fused = fuse(a.data, b.data, p.task or args.task)
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
        single = [f for f, v in (("--json", args.json), ("--gt", args.gt), ("--a", args.a),
                                 ("--b", args.b), ("--fused", args.fused)) if v]
        if single:
            raise UsageError(f"{single[0]} applies to one pair; folder mode (--data, "
                             "--fused-dir) writes one CSV row per pair (-o FILE)")
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
    if args.out:
        raise UsageError("-o/--out is the CSV of folder mode; for one pair use --json (stdout)")
    vals = measure(args.a, args.b, args.fused, args.gt)
    if args.json:
        print(json.dumps(_finite(vals)))
    else:
        for k, v in vals.items():
            print(f"{k:8s} {v:.6g}")
    return 0


def cmd_stacks(args: argparse.Namespace) -> int:
    from .demo import write_photo_stacks
    from .synth import prepare_out

    if args.variants < 1:
        raise UsageError("--variants must be at least 1")
    prepare_out(Path(args.out))
    names = write_photo_stacks(args.out, args.variants, args.seed)
    print(f"{args.out}: {len(names)} pairs (mef/, mff/)", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    page = run_demo(out, args.model)
    print(f"wrote {page} — open it in a browser")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: use 1-65535")
    serve(args.host, args.port, args.model, args.max_upload_mb, args.max_pixels)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, load_train_config, train

    cfg = load_train_config(args.config) if args.config else TrainConfig()
    simple = {"data": args.data, "out": args.out, "objective": args.objective,
              "preset": args.preset, "max_steps": args.max_steps, "tokenizer": args.tokenizer,
              "text": args.text, "src": args.src, "init_from": args.init_from}
    for key in ("batch", "accum", "patch", "lr", "warmup", "seed", "save_every",
                "sample_every", "log_every", "keep_last", "ema", "balance_weight",
                "fusion_weight", "distill_weight", "t_shift", "workers"):
        simple[key] = getattr(args, key)
    given = set()
    for key, value in simple.items():
        if value is not None:
            setattr(cfg, key, value)
            given.add(key)
    # on --resume, a --config file counts as setting every key it holds (compared in full)
    summary = train(cfg, resume=args.resume, stop_after=args.stop_after, progress=args.progress,
                    given=None if args.config else given)
    last = summary["last"]
    print(f"{summary['run']}: step {summary['step']}, loss "
          f"{summary['first_loss'] or float('nan'):.4g} -> {last.get('loss', float('nan')):.4g}",
          file=sys.stderr)
    return 0


def cmd_degrade(args: argparse.Namespace) -> int:
    import numpy as np

    from .degrade.depth import make_depth_estimator
    from .degrade.ops import OPS, SEVERITIES, apply_op
    from .degrade.pipeline import TASK_OPS
    from .io import check_output_path, read_image, write_image

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
    from .pairs import TASKS, read_names_file
    from .sheet import contact_sheet
    from .synth import SynthConfig, parse_shard, replay, summary, synthesize
    from .teachers import parse_teachers

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
        from .io import check_output_path

        check_output_path(args.sheet, exts=(".png", ".jpg", ".jpeg"))
        contact_sheet(rows, args.out, args.sheet, args.sheet_rows)
        print(f"wrote {args.sheet}", file=sys.stderr)
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r}: expected WxH, e.g. 640x480") from None
    if w < 1 or h < 1:
        raise UsageError(f"--size {text!r}: sides must be positive")
    return w, h


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import run_eval

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    results = run_eval(args.data, out, args.methods, args.model, args.steps, args.seed,
                       args.pairs, repeats=args.repeats, prompt_modes=args.prompt_modes,
                       teachers=args.teacher)
    from .distributed import rank_world
    from .evaluate import degradation_markdown, degradation_rows, markdown_table, summary_rows

    if rank_world()[0] != 0:  # under torchrun, rank 0 reports for everyone
        return 0
    names = list(dict.fromkeys(r["method"] for r in results))
    print(markdown_table(summary_rows(results, names)))
    print("\nPSNR_gt per degradation type (samples containing it):\n")
    print(degradation_markdown(degradation_rows(results, names)))
    print(f"wrote {out / 'summary.csv'}, {out / 'results.csv'} and {out / 'index.html'}",
          file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import DEFAULT_SIZES, FULL_SIZES, run_bench
    from .model import PRESETS

    sizes = args.sizes.split(",") if args.sizes else (FULL_SIZES if args.full else DEFAULT_SIZES)
    for size in sizes:
        _parse_size(size)
    presets = args.presets.split(",")
    bad = [p for p in presets if p not in PRESETS and p != "default"]
    if bad:
        raise UsageError(f"unknown preset {bad[0]!r}; choose from {', '.join(PRESETS)}")
    if args.out:
        from .io import check_output_path

        check_output_path(args.out, exts=(".json",))
    log = (lambda text: print(text, file=sys.stderr)) if args.json else print
    rows = run_bench(presets, sizes, args.runs, not args.no_pixel_space, log=log)
    if args.json:
        print(json.dumps(rows))
    if args.out:
        from .io import atomic_write_bytes

        atomic_write_bytes(args.out, (json.dumps(rows, indent=1) + "\n").encode())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .info import model_info

    w, h = _parse_size(args.size)
    for line in model_info(args.preset, args.config, (w, h), args.tokenizer, args.flow):
        print(line)
    return 0


def cmd_latent_stats(args: argparse.Namespace) -> int:
    import torch

    from .io import READ_EXTS, atomic_write_bytes, read_image
    from .tokenizers import latent_stats, make_tokenizer

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


COMMANDS = {"fuse": cmd_fuse, "metrics": cmd_metrics, "train": cmd_train,
            "degrade": cmd_degrade, "synth": cmd_synth, "eval": cmd_eval, "bench": cmd_bench,
            "serve": cmd_serve,
            "info": cmd_info,
            "latent-stats": cmd_latent_stats, "stacks": cmd_stacks, "demo": cmd_demo}


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
