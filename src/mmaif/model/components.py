"""What training and inference share: the wiring of tokenizer, text encoder and model
(:class:`Components`), seeded generators, and reading run checkpoints (a training run folder
can be loaded for inference without importing the trainer)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from mmaif.errors import InputError
from mmaif.model.dit import FusionDiT

CKPT_FILES = ("model.safetensors", "ema.safetensors", "optim.safetensors", "rng.safetensors")


def _seeded(*key: int) -> torch.Generator:
    h = hashlib.sha256(",".join(map(str, key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(h[:8], "little") & (2**63 - 1))


class Components:
    """Tokenizer, text encoder and model wiring shared by training and inference (the
    objectives in :mod:`mmaif.model.objectives` turn it into losses and images)."""

    def __init__(self, model: FusionDiT, tokenizer, text):
        self.model, self.tok, self.text = model, tokenizer, text

    @property
    def objective(self) -> str:
        """'flow' or 'reg': the model's own (its config is the one source of truth)."""
        return "flow" if self.model.cfg.flow else "reg"

    def condition(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tok.encode(a), self.tok.encode(b)], dim=1)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def latest_checkpoint(run: str | Path) -> Path | None:
    found = sorted((Path(run) / "checkpoints").glob("step_*"))
    return found[-1] if found else None


def read_checkpoint(ck: Path) -> tuple[dict, dict[str, dict]]:
    """Verify and load a checkpoint folder -> (state, {file: tensors}); clear errors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = json.loads((ck / "state.json").read_text())
        files = state["files"]
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise InputError(f"{ck}: state.json is missing or damaged ({exc.__class__.__name__}); "
                         "delete this checkpoint folder to resume from an earlier one") from None
    tensors = {}
    for name, digest in files.items():
        p = ck / name
        if not p.is_file() or sha256_file(p) != digest:
            raise InputError(f"{ck}: {name} is missing, truncated or corrupt (checksum "
                             "mismatch); delete this checkpoint folder to resume from an "
                             "earlier one")
        try:
            tensors[name] = load_file(str(p))
        except SafetensorError as exc:
            raise InputError(f"{p}: unreadable ({exc})") from None
    return state, tensors


def load_run_weights(run_or_ckpt: str | Path, use_ema: bool = True):
    """(model config dict, train config dict, state dict) of a run's latest checkpoint."""
    p = Path(run_or_ckpt)
    ck = p if (p / "state.json").is_file() else latest_checkpoint(p)
    if ck is None:
        raise InputError(f"{p}: no checkpoint found (expected {p}/checkpoints/step_*)")
    state, tensors = read_checkpoint(ck)
    return state["model"], state["train"], tensors["ema.safetensors" if use_ema else
                                                   "model.safetensors"]
