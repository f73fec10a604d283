"""Training: ``mmaif train`` (also under torchrun). Its flags are made from the fields of
:class:`~mmaif.training.config.TrainConfig`, so every setting a YAML file holds is a flag too,
with the same name (``_`` -> ``-``) and the field's help."""

from __future__ import annotations

import argparse
import sys

from mmaif.cli.common import add_settings

# flags that are not a field of TrainConfig: (name, what to say instead)
OLD_FLAGS = {"patch": "--crop N (the training crop, pixels)"}


def add_parsers(sub) -> None:
    from mmaif.training.config import DetectorTrainConfig, TrainConfig

    t = sub.add_parser("train", help="train the fusion model (also under torchrun)",
                       description="Train the fusion model. Settings come from --config (a YAML "
                       "file of the keys below, with `model:` and `extends:`), then from the "
                       "flags, which override it.")
    t.add_argument("--config", help="YAML training config (keys as the flags below, `_` for "
                   "`-`; `model:` a mapping; `extends: BASE.yaml`)")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint "
                   "in --out exactly: only --max-steps may change (the lr schedule keeps its "
                   "horizon); other changed settings are refused")
    t.add_argument("--stop-after", type=int, help="stop after this many steps (resume later)")
    t.add_argument("--progress", choices=("bar", "lines", "none"), default="bar")
    t.add_argument("--preset", default=argparse.SUPPRESS,
                   help="model preset: tiny, small, base (the same as --model preset=NAME)")
    add_settings(t, TrainConfig)
    for name in OLD_FLAGS:  # hidden: accepted only to say what replaced them
        t.add_argument(f"--{name}", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    t.set_defaults(func=cmd_train)

    d = sub.add_parser("train-detector", help="train the degradation detector (what `mmaif "
                       "detect` and --prompt auto use) on `mmaif synth` folders")
    add_settings(d, DetectorTrainConfig)
    d.add_argument("--resume", action="store_true",
                   help="continue from the run's checkpoint exactly (same settings)")
    d.add_argument("--stop-after", type=int, help="stop after this many epochs (resume later)")
    d.add_argument("--progress", choices=("bar", "lines", "none"), default="bar")
    d.set_defaults(func=cmd_train_detector)


def _model_overrides(pairs: list[str]) -> dict:
    """``KEY=VALUE`` strings -> {KEY: VALUE read as YAML}; a malformed one is a UsageError."""
    import yaml

    from mmaif.errors import UsageError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--model {pair!r}: write KEY=VALUE (e.g. --model depth=6)")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError(f"--model {pair!r}: the value is not valid YAML") from None
    return out


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict, fields

    from mmaif.errors import UsageError
    from mmaif.training.config import TrainConfig, load_train_config
    from mmaif.training.trainer import train

    for name, instead in OLD_FLAGS.items():
        if name in vars(args):
            raise UsageError(f"--{name} is no longer a flag; use {instead}")
    values = asdict(load_train_config(args.config) if args.config else TrainConfig())
    given = set()
    for f in fields(TrainConfig):
        if f.name not in vars(args) or getattr(args, f.name) is None:
            continue
        value = getattr(args, f.name)
        if f.name == "data" and len(value) == 1:
            value = value[0]
        if f.name == "model":
            value = {**values["model"], **_model_overrides(value)}
        values[f.name] = value
        given.add(f.name)
    if "preset" in vars(args):
        values["model"] = {**values["model"], "preset": args.preset}
        given.add("model")
    cfg = TrainConfig.from_dict(values)
    # on --resume, a --config file counts as setting every key it holds (compared in full)
    summary = train(cfg, resume=args.resume, stop_after=args.stop_after, progress=args.progress,
                    given=None if args.config else given)
    last = summary["last"]
    print(f"{summary['run']}: step {summary['step']}, loss "
          f"{summary['first_loss'] or float('nan'):.4g} -> {last.get('loss', float('nan')):.4g}",
          file=sys.stderr)
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from mmaif.training.config import DetectorTrainConfig
    from mmaif.training.detector import train_detector

    cfg = DetectorTrainConfig(**{f.name: getattr(args, f.name)
                                 for f in fields(DetectorTrainConfig) if f.name in vars(args)})
    scores = train_detector(cfg, resume=args.resume, progress=args.progress,
                            stop_after=args.stop_after)
    micro = scores["micro"]
    print(f"{cfg.out}: held-out micro F1 {micro['f1']:.3f} (precision {micro['precision']:.3f}"
          f", recall {micro['recall']:.3f}, {scores['held_out_samples']} samples); per type: "
          f"{cfg.out}/metrics.json", file=sys.stderr)
    return 0
