"""Model weights on disk, one way in and one way out.

* :func:`save_model` writes a model folder: ``config.json`` (the model config plus what the
  caller adds: the pipeline spec, the training config) and ``model.safetensors``, each
  atomically; ``dtype=torch.bfloat16`` stores the floating tensors at half the size.
* :func:`load_weights` reads any of the three places weights live — a model folder, a training
  run (the EMA of its latest checkpoint) or one checkpoint folder — as :class:`Weights`, with
  floating tensors in float32 and a one-line error for anything missing or damaged.
  :func:`load_model` builds the model from them; the pipeline, warm start, fuse and eval all
  load through these.
* :func:`read_checkpoint` verifies a checkpoint's checksums (the trainer's resume reads the
  optimizer and RNG tensors through it too).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmaif.errors import InputError
from mmaif.model.dit import DiTConfig, FusionDiT

CKPT_FILES = ("model.safetensors", "ema.safetensors", "optim.safetensors", "rng.safetensors")


@dataclass
class Weights:
    """What :func:`load_weights` read: the model config (a dict), the tensors, and the rest
    of the folder's metadata (``pipeline``, ``training``; for a run, ``training`` and
    ``checkpoint``; always ``source``, the weights file)."""

    model: dict
    state: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)

    @property
    def config(self) -> DiTConfig:
        return DiTConfig.from_dict(self.model)

    def build(self) -> FusionDiT:
        """The model with these weights (every tensor must fit the config)."""
        model = FusionDiT(self.config)
        missing, unexpected = model.load_state_dict(self.state, strict=False)
        if missing or unexpected:
            raise InputError(f"{self.meta.get('source', 'weights')}: the weights do not match "
                             f"the config (missing {len(missing)}, unexpected "
                             f"{len(unexpected)})")
        return model


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def latest_checkpoint(run: str | Path) -> Path | None:
    found = sorted((Path(run) / "checkpoints").glob("step_*"))
    return found[-1] if found else None


def read_tensors(path: Path, what: str = "weights") -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc}); it is damaged, "
                         f"truncated or another format (only safetensors {what} are loaded)") \
            from None


def read_checkpoint(ck: Path) -> tuple[dict, dict[str, dict]]:
    """Verify and load a checkpoint folder -> (state, {file: tensors}); clear errors."""
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
        tensors[name] = read_tensors(p, "checkpoints")
    return state, tensors


def _float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors stored at lower precision (bf16 weights) back to float32."""
    return {k: v.float() if v.is_floating_point() and v.dtype != torch.float32 else v
            for k, v in state.items()}


def load_weights(path: str | Path, use_ema: bool = True) -> Weights:
    """The weights of a model folder (``config.json`` + ``model.safetensors``), a training
    run folder (its latest checkpoint) or a checkpoint folder; a run's are its EMA weights
    unless ``use_ema`` is False."""
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"{p}: not a folder; give a saved model folder, a run folder or a "
                         "checkpoint folder")
    cfg_path, w_path = p / "config.json", p / "model.safetensors"
    if (w_path.is_file() or cfg_path.is_file()) and not (p / "state.json").is_file():
        for q in (cfg_path, w_path):
            if not q.is_file():
                raise InputError(f"{p}: missing {q.name}; not a saved mmaif model folder")
        try:
            meta = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{cfg_path}: not valid JSON ({exc}); re-save the model folder "
                             "(save_pretrained)") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
            raise InputError(f"{cfg_path}: no 'model' settings; not a saved mmaif model folder")
        model = meta.pop("model")
        try:
            DiTConfig.from_dict(model)
        except InputError as exc:
            raise InputError(f"{cfg_path}: {exc}") from None
        except TypeError as exc:
            raise InputError(f"{cfg_path}: not a valid model config ({exc})") from None
        return Weights(model, _float32(read_tensors(w_path, "weights")),
                       {**meta, "source": str(w_path)})
    ck = p if (p / "state.json").is_file() else latest_checkpoint(p)
    if ck is None:
        raise InputError(f"{p}: no model here: missing config.json + model.safetensors (a "
                         "saved model folder) and checkpoints/step_* (a run folder)")
    state, tensors = read_checkpoint(ck)
    name = "ema.safetensors" if use_ema else "model.safetensors"
    return Weights(state["model"], _float32(tensors[name]),
                   {"training": state["train"], "checkpoint": str(ck), "source": str(ck / name)})


def load_model(path: str | Path, device: str | torch.device = "cpu") -> FusionDiT:
    """The model whose weights :func:`load_weights` reads at ``path``, on ``device``."""
    return load_weights(path).build().to(device)


def save_model(model: FusionDiT, folder: str | Path, extra: dict | None = None,
               dtype: torch.dtype | None = None) -> Path:
    """``folder/config.json`` + ``folder/model.safetensors``, each written atomically; with
    ``dtype``, floating tensors are stored in it (loading casts them back to float32)."""
    state = {k: v.detach().to("cpu", dtype if dtype and v.is_floating_point() else v.dtype)
             for k, v in model.state_dict().items()}
    return write_folder(folder, state, {"model": model.cfg.to_dict(), **(extra or {})})


def write_folder(folder: str | Path, state: dict[str, torch.Tensor], meta: dict) -> Path:
    """A weights folder: ``meta`` as ``config.json``, ``state`` as ``model.safetensors``,
    each written atomically (the fusion model's and the detector's)."""
    from safetensors.torch import save as st_save

    from mmaif.data.images import atomic_write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "model.safetensors",
                       st_save({k: v.detach().cpu().contiguous() for k, v in state.items()}))
    atomic_write_bytes(folder / "config.json", (json.dumps(meta, indent=1) + "\n").encode())
    return folder
