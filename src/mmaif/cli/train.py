"""Training: ``mmaif train`` (also under torchrun)."""

from __future__ import annotations

import argparse
import sys

from mmaif.cli.common import add_out


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train the fusion model (also under torchrun)")
    t.add_argument("--config", help="YAML training config (keys of TrainConfig + model:)")
    t.add_argument("--data", action="append", help="a `mmaif synth` output folder "
                   "(repeatable: the folders' samples are used together)")
    t.add_argument("--src", action="append", help="clean pair roots, synthesized on the fly")
    add_out(t, "run folder (checkpoints, logs, samples)")
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
    t.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the network (pays off on GPUs)")
    t.add_argument("--tokenizer", help="pixel (default), kl:FOLDER, cosmos:FOLDER")
    t.add_argument("--text", help="minilm (default), t5:FOLDER, t5-bf16:FOLDER")
    t.add_argument("--progress", choices=("bar", "lines", "none"), default="bar")
    t.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from mmaif.training.config import TrainConfig, load_train_config
    from mmaif.training.trainer import train

    cfg = load_train_config(args.config) if args.config else TrainConfig()
    data = args.data[0] if args.data and len(args.data) == 1 else args.data
    simple = {"data": data, "out": args.out, "objective": args.objective,
              "preset": args.preset, "max_steps": args.max_steps, "tokenizer": args.tokenizer,
              "text": args.text, "src": args.src, "init_from": args.init_from,
              "compile": args.compile}
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
