"""Run checkpoints, written atomically (``checkpoints/step_NNNNNNN/``: model, EMA and optimizer
tensors in safetensors, ``state.json`` with configs, step, data position, RNG state and file
checksums; read by :func:`mmaif.model.storage.read_checkpoint`), and warm starts."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from mmaif.errors import InputError
from mmaif.model.dit import ZERO_INIT_MODULES, FusionDiT
from mmaif.model.storage import CKPT_FILES, load_weights, sha256_file
from mmaif.training.config import TrainConfig


def warm_start(model: FusionDiT, path: str | Path) -> int:
    """Load the weights of a saved pipeline folder or a run folder (its EMA) into ``model``.
    Parameters the source lacks must belong to zero-initialised paths added since (the
    evidence path, the global tone: ``ZERO_INIT_MODULES``; gate and tone channels of the head
    and evidence of the candidates, padded by :meth:`FusionDiT.adapt_state`), so the
    warm-started model computes what the source computed. Returns the number of tensors loaded."""
    p = Path(path)
    try:
        w = load_weights(p)
    except InputError as exc:
        raise InputError(f"init_from {exc}") from None
    state = model.adapt_state(w.state, w.config)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(ZERO_INIT_MODULES)]
    extra = [k for k in state if k not in own]
    shape = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or extra or shape:
        what = (missing and f"missing {missing[:3]}") or (extra and f"unexpected {extra[:3]}") \
            or f"shapes differ for {shape[:3]}"
        raise InputError(f"init_from {p}: its weights do not fit this model ({what}); warm "
                         "starts need the same architecture, plus zero-initialised new paths")
    model.load_state_dict(state, strict=False)
    return len(state)


# ------------------------------------------------------------------------ checkpoints
def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(tensors, JSON-able rest) of an optimizer's state; :func:`load_optimizer` inverts it."""
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "scalars": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                meta["scalars"][f"{pid}.{k}"] = v
    return tensors, meta


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for name, v in tensors.items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for name, v in meta["scalars"].items():
        pid, k = name.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(run: Path, step: int, model: FusionDiT, ema: FusionDiT,
                    opt: torch.optim.Optimizer, cfg: TrainConfig, position: dict,
                    keep_last: int) -> Path:
    from safetensors.torch import save_file

    ckdir = run / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step_{step:07d}"
    tmp = ckdir / f".tmp_step_{step:07d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    def cpu(m):
        return {k: v.detach().contiguous().cpu() for k, v in m.state_dict().items()}

    save_file(cpu(model), str(tmp / "model.safetensors"))
    save_file(cpu(ema), str(tmp / "ema.safetensors"))
    opt_t, opt_meta = optimizer_tensors(opt)
    save_file(opt_t, str(tmp / "optim.safetensors"))
    save_file({"torch_cpu": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    state = {"step": step, "position": position, "train": asdict(cfg),
             "model": model.cfg.to_dict(), "optimizer": opt_meta,
             "numpy_rng": np.random.get_state()[1][:4].tolist(),
             "files": {f: sha256_file(tmp / f) for f in CKPT_FILES}}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    with open(tmp / "state.json", "rb") as fh:
        os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(ckdir.glob("step_*"))[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final
