"""Training settings: :class:`TrainConfig` (a dataclass; YAML files hold its keys plus
``model:``, and may ``extends:`` a base file), the learning-rate schedule, and the model
config a run builds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mmaif.errors import InputError, UsageError
from mmaif.model.dit import DiTConfig, make_config


@dataclass
class TrainConfig:
    """Training settings; YAML files hold these keys plus ``model:`` (preset + overrides)."""

    data: str | list[str] | None = None  # one or more `mmaif synth` folders
    src: list[str] = field(default_factory=list)  # or clean pair roots, synthesized on the fly
    out: str = "runs/mmaif"
    objective: str = "reg"            # reg | flow
    preset: str = "tiny"
    model: dict = field(default_factory=dict)
    tokenizer: str = "pixel"
    text: str = "minilm"
    max_steps: int = 2000
    batch: int = 8                    # global batch per optimizer step
    accum: int = 1                    # micro-batches per optimizer step (per process)
    patch: int = 128                  # training crop size (pixels)
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema: float = 0.999
    balance_weight: float = 0.01
    fusion_weight: float = 0.0        # auxiliary sum_i |X~ - X_i| + |grad X~ - grad X_i|
    distill_weight: float = 0.0       # L1 of the blend weights to least-squares block targets
    distill_min_diff: float = 0.05    # no target where the inputs differ less (RMS, [-1, 1])
    init_from: str | None = None      # warm start: a saved pipeline or run folder (weights only)
    prompt_dropout: float = 0.0       # share of degraded samples given the task prompt or ""
    workers: int = 0                  # DataLoader worker processes (0: load in the main one)
    compile: bool = False             # torch.compile the network (pays off on GPUs)
    schedule_steps: int | None = None  # lr schedule horizon (default and on a fresh run: max_steps)
    t_mean: float = 0.0
    t_std: float = 1.0
    t_shift: float = 1.0
    seed: int = 0
    onthefly_n: int = 10000
    cache: bool = True                # keep a --data folder's decoded images in memory
    log_every: int = 10
    save_every: int = 500
    keep_last: int = 3
    sample_every: int = 500
    amp: bool = True                  # bf16 autocast on GPU

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From a mapping: unknown keys and wrongly typed values are an :class:`InputError`
        naming the field."""
        from mmaif.config import typed

        return cls(**typed(cls, d, "train config"))

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
            ("warmup", self.warmup >= 0, "0 or more"),
            ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             "0 or more"),
            ("grad_clip", math.isfinite(self.grad_clip) and self.grad_clip > 0, "positive"),
            ("save_every", self.save_every >= 1, "1 or more (steps between checkpoints)"),
            ("log_every", self.log_every >= 1, "1 or more (steps between log lines)"),
            ("keep_last", self.keep_last >= 1, "1 or more (checkpoints kept)"),
            ("sample_every", self.sample_every >= 0, "0 (off) or more"),
            ("patch", self.patch >= 8, "8 or more pixels (the training crop)"),
            ("onthefly_n", self.onthefly_n >= 1, "1 or more"),
            ("t_std", math.isfinite(self.t_std) and self.t_std > 0, "positive"),
            ("t_shift", math.isfinite(self.t_shift) and self.t_shift > 0, "positive"),
        ] + [(k, math.isfinite(getattr(self, k)) and getattr(self, k) >= 0, "0 or more")
             for k in ("balance_weight", "fusion_weight", "distill_weight", "distill_min_diff")]
        for key, ok, must in rules:
            if not ok:
                raise UsageError(f"--{key.replace('_', '-')} {getattr(self, key)!r}: must be "
                                 f"{must}")
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise UsageError("schedule_steps must be positive")
        for folder in [self.data] if isinstance(self.data, str) else list(self.data or []):
            if not Path(folder).is_dir():
                raise InputError(f"--data {folder}: no such folder" + (
                    " (a relative path saved in the run; on --resume from another working "
                    "folder, pass --data with its path from here)" if not Path(folder)
                    .is_absolute() else "") + "; --data takes a `mmaif synth` output folder")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out}: exists and is a file; a run is a folder (give a new "
                             "or an existing run folder)")


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
    """YAML: keys of :class:`TrainConfig`, plus ``model:`` (preset + model overrides), plus
    optionally ``extends: BASE.yaml`` (a file whose keys this one overrides)."""
    data = _config_mapping(Path(path))
    model = dict(data.pop("model", {}) or {})
    if "preset" in model:
        data.setdefault("preset", model.pop("preset"))
    return TrainConfig.from_dict({**data, "model": model})


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr at the schedule horizon
    (``schedule_steps``, fixed when the run starts; ``max_steps`` if unset)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    horizon = cfg.schedule_steps or cfg.max_steps
    p = min(1.0, (step - cfg.warmup) / max(1, horizon - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def build_model_config(cfg: TrainConfig, latent_channels: int, text_dim: int) -> DiTConfig:
    over = {"latent_channels": latent_channels, "text_dim": text_dim, **cfg.model}
    if cfg.objective == "flow":
        if over.get("head", "latent") != "latent":
            raise UsageError(f"model.head={over['head']!r} with objective flow: a flow model "
                             "predicts velocities in latent space; use head: latent (or omit it)")
        over.update(flow=True, head="latent")
    elif cfg.tokenizer != "pixel":
        over.setdefault("head", "latent")
    return make_config(cfg.preset, **over)
