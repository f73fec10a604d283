"""Training settings: :class:`TrainConfig` (a dataclass; YAML files hold its keys plus
``model:``, and may ``extends:`` a base file), :class:`DetectorTrainConfig` (``mmaif
train-detector``), the learning-rate schedule, and the model config a run builds. Loads no
torch: the CLI builds its flags from these fields."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mmaif.errors import InputError, UsageError

if TYPE_CHECKING:  # the model (and torch) load when a model config is built, not before
    from mmaif.model.dit import DiTConfig


def setting(default, help: str):
    """A :class:`TrainConfig` field with its ``--help`` text (``mmaif train`` makes one flag
    per field from these)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=type(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


# keys that were renamed or moved, and what to write instead (run folders saved with them are
# still read: TrainConfig.from_saved)
RENAMED = {"patch": "`crop:` (the training crop, pixels; the model's patch size is "
                    "`model: {patch: N}`)",
           "preset": "`model: {preset: NAME}` (or --preset NAME)"}


@dataclass
class TrainConfig:
    """Training settings; YAML files hold these keys (``model:`` holds the preset and the
    model overrides). ``mmaif train`` has a flag for each, with the help written here."""

    data: str | list[str] | None = setting(None, "a `mmaif synth` output folder (repeatable: "
                                        "the folders' samples are used together)")
    src: list[str] = setting([], "clean pair roots, synthesized on the fly (repeatable)")
    out: str = setting("runs/mmaif", "run folder (checkpoints, logs, samples)")
    objective: str = setting("reg", "reg (regression) or flow (flow matching)")
    model: dict = setting({}, "model config: `preset` (tiny, small, base) and overrides of its "
                       "fields (KEY=VALUE, repeatable; values read as YAML)")
    tokenizer: str = setting("pixel", "pixel, kl:FOLDER or cosmos:FOLDER")
    text: str = setting("minilm", "minilm, t5:FOLDER or t5-bf16:FOLDER")
    max_steps: int = setting(2000, "optimizer steps of the run")
    batch: int = setting(8, "global batch per optimizer step")
    accum: int = setting(1, "micro-batches per optimizer step (per process)")
    crop: int = setting(128, "training crop size (pixels)")
    lr: float = setting(3e-4, "peak learning rate")
    min_lr_ratio: float = setting(0.1, "the cosine schedule ends at this share of lr")
    head_lr: float = setting(1.0, "learning-rate multiplier of the network's output layer (the "
                          "head's rows: new gates and tone start at zero there)")
    warmup: int = setting(100, "linear warm-up steps")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    grad_clip: float = setting(1.0, "gradient norm clip")
    ema: float = setting(0.999, "EMA decay of the weights that are saved for inference")
    balance_weight: float = setting(0.01, "MoE load-balancing loss weight")
    fusion_weight: float = setting(0.0, "auxiliary loss sum_i |X~ - X_i| + |grad X~ - grad X_i|")
    distill_weight: float = setting(0.0, "L1 of the blend weights to least-squares block targets")
    teacher_distill_weight: float | None = setting(None, "weight of the teacher gate's "
                                                   "distillation term (default: "
                                                   "distill_weight)")
    distill_min_diff: float = setting(0.05, "no distillation target where the inputs differ "
                                   "less (RMS, [-1, 1])")
    global_tone_weight: float = setting(0.0, "L1 of the global tone (model: global_tone) to "
                                     "its least-squares gain and offset per input (with "
                                     "distill_weight > 0)")
    full_candidates: bool = setting(False, "the classical candidates (fixes, teacher) of the "
                                    "whole sample, cropped, as inference computes them on "
                                    "the whole image (written once to DATA/candidates/); "
                                    "off: computed on the crop")
    init_from: str | None = setting(None, "warm start: a saved pipeline or run folder (weights "
                                 "only)")
    prompt_dropout: float = setting(0.0, "share of degraded samples given the task prompt or \"\"")
    workers: int = setting(0, "DataLoader worker processes (0: load in the main one)")
    compile: bool = setting(False, "torch.compile the network (pays off on GPUs)")
    schedule_steps: int | None = setting(None, "lr schedule horizon (default and on a fresh run: "
                                      "max_steps)")
    t_mean: float = setting(0.0, "flow: mean of the logit-normal time distribution")
    t_std: float = setting(1.0, "flow: its standard deviation")
    t_shift: float = setting(1.0, "flow: time shift (> 1 spends more steps at high noise)")
    seed: int = setting(0, "seed of the model init, the batches and the prompt dropout")
    onthefly_n: int = setting(10000, "samples per epoch when synthesizing from --src")
    cache: bool = setting(True, "keep a --data folder's decoded images in memory")
    log_every: int = setting(10, "steps between log lines")
    save_every: int = setting(500, "steps between checkpoints")
    keep_last: int = setting(3, "checkpoints kept")
    sample_every: int = setting(500, "steps between sample pictures (0: off)")
    amp: bool = setting(True, "bf16 autocast on GPU")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From a mapping: unknown keys and wrongly typed values are an :class:`InputError`
        naming the field."""
        from mmaif.config import typed

        for key, instead in RENAMED.items():
            if key in d:
                raise InputError(f"train config: `{key}` is no longer a key; write {instead}")
        return cls(**typed(cls, d, "train config"))

    @classmethod
    def from_saved(cls, d: dict) -> TrainConfig:
        """A config saved by a run (its checkpoints' ``state.json``), older key names taken."""
        d = dict(d)
        if "patch" in d:
            d.setdefault("crop", d.pop("patch"))
        if "preset" in d:
            preset = d.pop("preset")
            d["model"] = {"preset": preset, **(d.get("model") or {})}
        return cls.from_dict(d)

    def data_folders(self) -> list[str]:
        """The ``--data`` folders as a list (``data`` is one folder or several)."""
        return [self.data] if isinstance(self.data, str) else list(self.data or [])

    def check(self) -> None:
        if self.objective not in ("reg", "flow"):
            raise UsageError(f"--objective {self.objective!r}: use reg or flow")
        if not self.data and not self.src:
            raise UsageError("give --data SYNTH_DIR (from mmaif synth) or --src ROOT")
        if self.max_steps < 1 or self.batch < 1 or self.accum < 1:
            raise UsageError("--max-steps, --batch and --accum must be positive")
        if self.workers < 0:
            raise UsageError("--workers must be 0 or more")
        if not 0 <= self.prompt_dropout <= 1:
            raise UsageError("prompt_dropout must be in [0, 1]")
        rules = [  # (key, ok, what it must be); each names the flag or config key
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a positive number"),
            ("ema", math.isfinite(self.ema) and 0 <= self.ema < 1, "in [0, 1) (e.g. 0.999)"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("head_lr", math.isfinite(self.head_lr) and self.head_lr > 0, "a positive number"),
            ("warmup", self.warmup >= 0, "0 or more"),
            ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             "0 or more"),
            ("grad_clip", math.isfinite(self.grad_clip) and self.grad_clip > 0, "positive"),
            ("save_every", self.save_every >= 1, "1 or more (steps between checkpoints)"),
            ("log_every", self.log_every >= 1, "1 or more (steps between log lines)"),
            ("keep_last", self.keep_last >= 1, "1 or more (checkpoints kept)"),
            ("sample_every", self.sample_every >= 0, "0 (off) or more"),
            ("crop", self.crop >= 8, "8 or more pixels (the training crop)"),
            ("onthefly_n", self.onthefly_n >= 1, "1 or more"),
            ("t_std", math.isfinite(self.t_std) and self.t_std > 0, "positive"),
            ("t_shift", math.isfinite(self.t_shift) and self.t_shift > 0, "positive"),
        ] + [(k, getattr(self, k) is None  # optional: None takes another field's value
              or (math.isfinite(getattr(self, k)) and getattr(self, k) >= 0), "0 or more")
             for k in ("balance_weight", "fusion_weight", "distill_weight", "distill_min_diff",
                       "global_tone_weight", "teacher_distill_weight")]
        for key, ok, must in rules:
            if not ok:
                raise UsageError(f"--{key.replace('_', '-')} {getattr(self, key)!r}: must be "
                                 f"{must}")
        if self.full_candidates and not self.data:
            raise UsageError("full_candidates reads the candidates of `mmaif synth` folders: "
                             "give --data (on-the-fly samples compute them on the crop)")
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise UsageError("schedule_steps must be positive")
        for folder in self.data_folders():
            if not Path(folder).is_dir():
                raise InputError(f"--data {folder}: no such folder" + (
                    " (a relative path saved in the run; on --resume from another working "
                    "folder, pass --data with its path from here)" if not Path(folder)
                    .is_absolute() else "") + "; --data takes a `mmaif synth` output folder")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: exists and is a file; a run is a folder (give a new "
                             "or an existing run folder)")


@dataclass
class DetectorTrainConfig:
    """``mmaif train-detector``'s settings (a flag each, with the help written here)."""

    data: list[str] = setting([], "a `mmaif synth` output folder (repeatable)")
    out: str = setting("runs/detector", "run folder (feature cache, checkpoint, "
                       "metrics.json, detector/)")
    epochs: int = setting(150, "passes over the training samples")
    batch: int = setting(256, "rows per step")
    lr: float = setting(2e-3, "peak learning rate, cosine to 0")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    hidden: int = setting(128, "width of the MLP's two hidden layers")
    severity_weight: float = setting(0.5, "weight of the severity loss (on the types present)")
    val_share: float = setting(0.1, "share of samples held out")
    seed: int = setting(0, "seed of the split, the init and the order")
    workers: int = setting(0, "DataLoader workers computing features")

    def check(self) -> None:
        if not self.data:
            raise UsageError("give --data SYNTH_DIR (a `mmaif synth` output folder)")
        rules = [("epochs", self.epochs >= 1, "1 or more"), ("batch", self.batch >= 1,
                 "1 or more"), ("lr", math.isfinite(self.lr) and self.lr > 0, "positive"),
                 ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                  "0 or more"), ("hidden", self.hidden >= 1, "1 or more"),
                 ("severity_weight", math.isfinite(self.severity_weight)
                  and self.severity_weight >= 0, "0 or more"),
                 ("val_share", 0 <= self.val_share < 1, "in [0, 1)"),
                 ("workers", self.workers >= 0, "0 or more")]
        for key, ok, must in rules:
            if not ok:
                raise UsageError(f"--{key.replace('_', '-')} {getattr(self, key)!r}: must be "
                                 f"{must}")
        for folder in self.data:
            if not (Path(folder) / "manifest.jsonl").is_file():
                raise InputError(f"--data {folder}: no manifest.jsonl there; --data takes a "
                                 "`mmaif synth` output folder")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: exists and is a file; a run is a folder")


def _config_mapping(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    """A training YAML with its ``extends:`` chain resolved: the named file (relative to this
    one) first, this file's keys over it, ``model:`` merged key by key."""
    from mmaif.data.images import read_yaml_mapping

    path = Path(path)
    if path.resolve() in seen:
        raise InputError(f"{path}: `extends:` comes back to this file; break the cycle")
    data = read_yaml_mapping(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise InputError(f"{path}: extends={base!r}; give the path of one YAML file")
    parent = _config_mapping(path.parent / base, (*seen, path.resolve()))
    model = {**(parent.get("model") or {}), **(data.get("model") or {})}
    return {**parent, **data, **({"model": model} if model else {})}


def load_train_config(path: str | Path) -> TrainConfig:
    """YAML: keys of :class:`TrainConfig` (``model:`` holds the preset and the model
    overrides), plus optionally ``extends: BASE.yaml`` (a file whose keys this one
    overrides)."""
    try:
        return TrainConfig.from_dict(_config_mapping(Path(path)))
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr at the schedule horizon
    (``schedule_steps``, fixed when the run starts; ``max_steps`` if unset)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    horizon = cfg.schedule_steps or cfg.max_steps
    p = min(1.0, (step - cfg.warmup) / max(1, horizon - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def build_model_config(cfg: TrainConfig, latent_channels: int, text_dim: int) -> DiTConfig:
    from mmaif.model.dit import make_config

    over = {"latent_channels": latent_channels, "text_dim": text_dim, **cfg.model}
    preset = over.pop("preset", "tiny")
    if cfg.objective == "flow":
        if over.get("head", "latent") != "latent":
            raise UsageError(f"model.head={over['head']!r} with objective flow: a flow model "
                             "predicts velocities in latent space; use head: latent (or omit it)")
        over.update(flow=True, head="latent")
    elif cfg.tokenizer != "pixel":
        over.setdefault("head", "latent")
    return make_config(preset, **over)
