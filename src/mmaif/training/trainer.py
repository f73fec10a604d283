"""Training: regression or rectified flow, single process or under ``torchrun`` (DDP).

Every random draw is a function of (seed, step, sample index): the data order of epoch e is
a permutation seeded by (seed, e), and each sample's flow noise and timestep are seeded by
(seed, step, its index). So a run resumed from a checkpoint continues bit-exactly, and N
processes with the same global batch compute the same update as one (DDP averages gradients;
the MoE balance loss is computed per process, as in common MoE implementations).

Run folder: ``checkpoints/step_NNNNNNN/`` (model, EMA and optimizer tensors in safetensors,
``state.json`` with configs, step, data position, RNG state and file checksums; written to a
temporary folder and renamed), ``log.jsonl``, ``tb/`` (TensorBoard, when installed) and
``samples/`` (input / prediction / GT grids).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmaif.errors import InputError, UsageError
from mmaif.model import flow
from mmaif.model.components import (
    CKPT_FILES,
    Components,
    _seeded,
    latest_checkpoint,
    load_run_weights,
    read_checkpoint,
    sha256_file,
)
from mmaif.model.dit import DiTConfig, FusionDiT, make_config


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


# --------------------------------------------------------------------------- helpers
def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr at the schedule horizon
    (``schedule_steps``, fixed when the run starts; ``max_steps`` if unset)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    horizon = cfg.schedule_steps or cfg.max_steps
    p = min(1.0, (step - cfg.warmup) / max(1, horizon - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def fusion_loss(pred: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """sum_i |X~ - X_i|_1 + |grad X~ - grad X_i|_1 (means over pixels)."""
    gx, gy = _grad(pred)
    total = pred.new_zeros(())
    for x in inputs:
        ix, iy = _grad(x)
        total = total + F.l1_loss(pred, x) + F.l1_loss(gx, ix) + F.l1_loss(gy, iy)
    return total


def gate_targets(d: torch.Tensor, resid: torch.Tensor, f: int,
                 min_diff: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares gate per f x f block for an output that is linear in it,
    ``y = rest + g * d``: the g in [0, 1] that brings y closest to the GT (``resid = gt -
    rest``), and a mask of the blocks where ``d`` is large enough (RMS > ``min_diff``, [-1, 1]
    units) for g to matter. Images (B, C, H, W), H and W multiples of f -> (B, H/f, W/f)."""
    d, e = d.float(), resid.float()
    num = F.avg_pool2d((d * e).sum(1, keepdim=True), f)
    den = F.avg_pool2d((d * d).sum(1, keepdim=True), f)
    g = (num / den.clamp_min(1e-12)).clamp(0, 1)
    mask = (den / d.shape[1]).sqrt() > min_diff
    return g[:, 0], mask[:, 0].float()


def blend_targets(a: torch.Tensor, b: torch.Tensor, gt: torch.Tensor, f: int,
                  min_diff: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares blend weight of ``a`` per f x f block: the w in [0, 1] that makes
    w * a + (1 - w) * b closest to ``gt`` (the teacher), and a mask of the blocks where the
    inputs differ enough (RMS > ``min_diff``) for the weight to matter (:func:`gate_targets`
    with d = a - b)."""
    return gate_targets(a - b, gt - b, f, min_diff)


def distill_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked L1 between the model's weight of input a (softmax of the blend logits on the token
    grid) and the least-squares targets of :func:`blend_targets`."""
    w = logits.float().softmax(dim=1)[:, 0]
    return ((w - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def gate_distill_loss(logit: torch.Tensor, target: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """Masked L1 between a gate's raw logit (B, h, w) and its :func:`gate_targets`; on the raw
    logit, so a gate clamped at 0 or 1 is still pulled back into range."""
    return ((logit.float() - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def tone_targets(us: list[torch.Tensor], keep: torch.Tensor | float, resid: torch.Tensor,
                 f: int, ridge: float = 0.01) -> torch.Tensor:
    """Ridge least-squares tone per f x f block and channel for an output that is affine in
    it, ``y = rest + sum_i g_i * u_i + keep * o`` (``us``: each input's share of the output,
    (B, C, H, W)): the gains g_i and offset o that bring y closest to the GT (``resid = gt -
    rest``), shrunk toward 0 (no change) by ``ridge`` (in squared [-1, 1] units per pixel).
    Returns (B, C, n + 1, H/f, W/f): the n gains, then the offset."""
    keep = torch.as_tensor(keep, dtype=torch.float32, device=resid.device).expand_as(resid)
    feats = [u.float() for u in us] + [keep.float()]
    k = len(feats)
    a = torch.stack([torch.stack([F.avg_pool2d(fi * fj, f) for fj in feats], -1)
                     for fi in feats], -2)                          # (B, C, h, w, k, k)
    rhs = torch.stack([F.avg_pool2d(fi * resid.float(), f) for fi in feats], -1)
    a = a + ridge * torch.eye(k, device=a.device)
    theta = torch.linalg.solve(a, rhs[..., None])[..., 0]           # (B, C, h, w, k)
    return theta.permute(0, 1, 4, 2, 3)


def head_distill(parts: dict, logits: torch.Tensor, gt: torch.Tensor, f: int,
                 min_diff: float) -> dict[str, torch.Tensor]:
    """Distillation terms of the fullres head, each toward least-squares targets given the
    head's other (detached) outputs: blend weights over the restored inputs, each fix gate,
    the teacher gate, the tone (ridge). ``logits``: the head's channels after the residual, in
    :meth:`DiTConfig.head_channels` order."""
    restored = [x.detach() for x in parts["restored"]]
    n = len(restored)
    target, mask = blend_targets(restored[0], restored[1], gt, f, min_diff)
    terms = {"distill": distill_loss(logits[:, :n], target, mask)}
    base, out = parts["base"].detach(), parts["out"].detach()
    w = parts["weights"].detach()
    keep = 1 - parts["teacher_gate"].detach() if "teacher_gate" in parts else 1
    i_teacher = n + (n if "fix_gates" in parts else 0)
    if "fix_gates" in parts:
        gain = [1 + parts["gains"][:, 3 * i:3 * i + 3].detach() for i in range(n)] \
            if "gains" in parts else [1] * n
        for i, name in enumerate(("a", "b")[:n]):
            # out = rest + r_i * d: the restored input's share of the blend (after its tone),
            # times what the teacher gate leaves of the blend
            d = keep * w[:, i:i + 1] * gain[i] * (parts["fixes"][i] - parts["inputs"][i])
            rest = out - parts["fix_gates"][:, i:i + 1].detach() * d
            t, m = gate_targets(d, gt - rest, f, min_diff)
            terms[f"distill_fix_{name}"] = gate_distill_loss(logits[:, n + i], t, m)
    if "teacher_gate" in parts:
        t, m = gate_targets(parts["teacher"] - base, gt - base, f, min_diff)
        if parts.get("teacher_on") is not None:  # no target where the gate is closed
            m = m * parts["teacher_on"].to(m).view(-1, 1, 1)
        terms["distill_teacher"] = gate_distill_loss(logits[:, i_teacher], t, m)
    if "gains" in parts:
        c0 = i_teacher + int("teacher_gate" in parts)
        gains, offset = parts["gains"].detach(), parts["offset"].detach()
        us = [keep * w[:, i:i + 1] * restored[i] for i in range(n)]
        rest = out - sum(gains[:, 3 * i:3 * i + 3] * us[i] for i in range(n)) - keep * offset
        theta = tone_targets(us, keep, gt - rest, f)              # (B, 3, n + 1, h, w)
        pred = torch.cat([logits[:, c0:c0 + 3 * n].unflatten(1, (n, 3)).transpose(1, 2),
                          logits[:, c0 + 3 * n:c0 + 3 * n + 3, None]], dim=2)
        terms["distill_tone"] = (pred.float() - theta).abs().mean()
    return terms


def warm_start(model: FusionDiT, path: str | Path) -> int:
    """Load the weights of a saved pipeline folder or a run folder (its EMA) into ``model``.
    Parameters the source lacks must belong to zero-initialised paths added since (the
    evidence path; gate and tone channels of the head and evidence of the candidates, padded
    by :meth:`FusionDiT.adapt_state`), so the warm-started model computes what the source
    computed. Returns the number of tensors loaded."""
    from safetensors.torch import load_file

    p = Path(path)
    if (p / "model.safetensors").is_file():
        state = load_file(str(p / "model.safetensors"))
        try:
            source = json.loads((p / "config.json").read_text())["model"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            source = None
    else:
        source, _, state = load_run_weights(p)
    state = model.adapt_state(state, DiTConfig.from_dict(source) if source else None)
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith("evidence.")]
    extra = [k for k in state if k not in own]
    shape = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or extra or shape:
        what = (missing and f"missing {missing[:3]}") or (extra and f"unexpected {extra[:3]}") \
            or f"shapes differ for {shape[:3]}"
        raise InputError(f"init_from {p}: its weights do not fit this model ({what}); warm "
                         "starts need the same architecture, plus zero-initialised new paths")
    model.load_state_dict(state, strict=False)
    return len(state)


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


# ------------------------------------------------------------------------ checkpoints
def _optim_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "scalars": {}}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                meta["scalars"][f"{pid}.{k}"] = v
    return tensors, meta


def _optim_load(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
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
    opt_t, opt_meta = _optim_tensors(opt)
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


# -------------------------------------------------------------------------- training
def _dist() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world, int(os.environ.get("LOCAL_RANK", "0"))


def _dataset(cfg: TrainConfig):
    from mmaif.synthesis.datasets import SynthDataset, SynthFolder, SynthFolders
    from mmaif.synthesis.synth import SynthConfig

    if cfg.data:
        folders = [cfg.data] if isinstance(cfg.data, str) else list(cfg.data)
        for folder in folders:
            if not (Path(folder) / "manifest.jsonl").is_file():
                raise InputError(f"{folder}: no manifest.jsonl; --data takes a `mmaif synth` "
                                 "output folder")
        parts = [SynthFolder(f, patch=cfg.patch, cache=cfg.cache) for f in folders]
        return parts[0] if len(parts) == 1 else SynthFolders(parts)
    return SynthDataset(SynthConfig(tasks=["vif", "mef", "mff"], sources=list(cfg.src),
                                    n=cfg.onthefly_n, seed=cfg.seed), patch=cfg.patch)


class _EpochIndexed(torch.utils.data.Dataset):
    """Items addressed by (epoch, index): each DataLoader worker (persistent or not) sets its
    own copy's epoch from the key, so random patches follow the epoch exactly as without
    workers. Items are pure functions of (seed, epoch, index): worker seeds play no part.
    Prompt dropout and the classical candidates (for a model with gates) are added here, in
    the workers, so the candidates follow the prompt the model will see."""

    def __init__(self, dataset, cfg: TrainConfig | None = None,
                 candidates: DiTConfig | None = None):
        self.dataset, self.cfg, self.candidates = dataset, cfg, candidates

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[tuple[int, int], dict]:
        epoch, i = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        item = self.dataset[i]
        if self.cfg is not None:
            drop_prompts([item], [i], self.cfg, epoch)
        if self.candidates is not None:
            add_candidates(item, self.candidates)
        return key, item


def _array(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) when its channels are equal (a replicated gray image, as
    the datasets give), else (H, W, C): the classical methods' colour policy needs the gray."""
    if x.shape[0] == 3 and torch.equal(x[0], x[1]) and torch.equal(x[0], x[2]):
        return x[0].numpy()
    return x.permute(1, 2, 0).numpy()


def add_candidates(item: dict, mcfg: DiTConfig) -> dict:
    """``item['fa'], item['fb']``: the classical fixes of the degradations the item's prompt
    names; for a model with a teacher gate also ``item['ts']``, the task's default teacher on
    them, and ``item['ts_on']``, whether the gate is open (:func:`mmaif.classical.restore.
    head_candidates`; exactly what ``FusionPipeline.candidates`` computes at inference);
    images as (3, H, W) in [0, 1]."""
    from mmaif.classical.restore import head_candidates
    from mmaif.data.degrade.names import named_degradations
    from mmaif.synthesis.teachers import DEFAULT_TEACHERS

    names = named_degradations(item["prompt"], item.get("task"))
    teacher = DEFAULT_TEACHERS.get(item.get("task"), "gff") if mcfg.teacher_gate else None
    fa, fb, ts, on = head_candidates(_array(item["a"]), _array(item["b"]), names, teacher,
                                     mcfg.teacher_named)
    for key, x in (("fa", fa), ("fb", fb), ("ts", ts)):
        if x is not None:
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            item[key] = t[None].repeat(3, 1, 1) if t.dim() == 2 \
                else t.permute(2, 0, 1).contiguous()
    if ts is not None:
        item["ts_on"] = torch.tensor(float(on))
    return item


class _MicroBatches(torch.utils.data.Sampler):
    """This rank's micro-batches of (epoch, index) keys, from (epoch, position) on, forever:
    a seeded permutation per epoch, each global batch sharded rank::world (the semantics of
    DistributedSampler, arranged so one process and N see identical global batches)."""

    def __init__(self, n: int, cfg: TrainConfig, rank: int, world: int, epoch: int, pos: int):
        self.n, self.cfg, self.rank, self.world = n, cfg, rank, world
        self.epoch, self.pos = epoch, pos

    def __iter__(self):
        cfg, epoch, pos = self.cfg, self.epoch, self.pos
        per_micro = cfg.batch // (self.world * cfg.accum)
        while True:
            perm = torch.randperm(self.n, generator=_seeded(cfg.seed, epoch))
            for p in range(pos, self.n // cfg.batch):
                mine = perm[p * cfg.batch:(p + 1) * cfg.batch][self.rank::self.world].tolist()
                for m in range(cfg.accum):
                    yield [(epoch, i) for i in mine[m * per_micro:(m + 1) * per_micro]]
            epoch, pos = epoch + 1, 0


def _keys_and_items(pairs: list) -> tuple[list, list]:
    return [k for k, _ in pairs], [it for _, it in pairs]


def make_loader(dataset, cfg: TrainConfig, rank: int, world: int, epoch: int, pos: int,
                device: torch.device, candidates: DiTConfig | None = None
                ) -> torch.utils.data.DataLoader:
    """A DataLoader over this rank's micro-batches from (epoch, pos): ``cfg.workers``
    processes (persistent), pinned memory on CUDA; with ``candidates`` (the config of a model
    with gates), each item carries that model's classical candidates. Yields (keys, items)."""
    sampler = _MicroBatches(len(dataset), cfg, rank, world, epoch, pos)
    w = cfg.workers
    return torch.utils.data.DataLoader(
        _EpochIndexed(dataset, cfg, candidates), batch_sampler=sampler, num_workers=w,
        collate_fn=_keys_and_items,
        pin_memory=device.type == "cuda", persistent_workers=w > 0,
        prefetch_factor=2 if w > 0 else None)


def _collate(items: list[dict], device) -> dict:
    keys = [k for k in ("a", "b", "gt", "fa", "fb", "ts") if k in items[0]]
    out = {k: torch.stack([it[k] for it in items]).to(device) * 2 - 1 for k in keys}
    if "ts_on" in items[0]:
        out["ts_on"] = torch.stack([it["ts_on"] for it in items]).to(device)
    out["prompt"] = [it["prompt"] for it in items]
    return out


def drop_prompts(items: list[dict], indices: list[int], cfg: TrainConfig, epoch: int) -> None:
    """Prompt dropout: a ``cfg.prompt_dropout`` share of the *degraded* samples gets the task's
    default prompt (what ``mmaif fuse`` uses without ``--prompt``) or the empty prompt, half
    each, so the model restores what it sees without being told. Seeded per (seed, epoch,
    sample index): exact resumes and any number of processes see the same prompts."""
    if cfg.prompt_dropout <= 0:
        return
    from mmaif.data.degrade.pipeline import default_prompt

    for it, i in zip(items, indices, strict=True):
        if it.get("ops", "[]") == "[]":
            continue
        u = torch.rand(2, generator=_seeded(cfg.seed, epoch, i, 7)).tolist()
        if u[0] < cfg.prompt_dropout:
            it["prompt"] = default_prompt(it.get("task")) if u[1] < 0.5 else ""


class _Logger:
    def __init__(self, run: Path, enabled: bool, total: int, start: int, progress: str):
        self.enabled, self.progress = enabled, progress
        self.fh = open(run / "log.jsonl", "a") if enabled else None  # noqa: SIM115
        self.tb = None
        self.bar = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run / "tb"))
        except ImportError:
            self.tb = None
        if progress == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="train", unit="step",
                            file=sys.stderr)

    def log(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        self.fh.write(json.dumps({"step": step, **values}) + "\n")
        self.fh.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k != "lr"})
        elif self.progress == "lines":
            print(f"step {step} " + " ".join(f"{k}={v:.4g}" for k, v in values.items()),
                  file=sys.stderr, flush=True)

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def say(self, text: str) -> None:
        if self.enabled and self.progress != "none":
            (self.bar.write if self.bar is not None else
             lambda s: print(s, file=sys.stderr, flush=True))(text)

    def close(self) -> None:
        if self.fh:
            self.fh.close()
        if self.tb is not None:
            self.tb.close()
        if self.bar is not None:
            self.bar.close()


def _sample_grid(path: Path, batch: dict, pred: torch.Tensor) -> None:
    from mmaif.data.images import atomic_write_bytes, encode_image

    rows = []
    for i in range(min(2, pred.shape[0])):
        cells = [batch["a"][i], batch["b"][i], pred[i], batch["gt"][i]]
        rows.append(torch.cat([((c.float().cpu().clamp(-1, 1) + 1) / 2) for c in cells], dim=2))
    grid = torch.cat(rows, dim=1).permute(1, 2, 0).numpy()
    atomic_write_bytes(path, encode_image(grid, ".png"))


# what a resume may change (applied and printed): where the run stops, where its folder and its
# data now are, and settings that do not change the numbers
RESUME_MAY_CHANGE = ("max_steps", "out", "data", "src", "workers", "cache", "log_every",
                     "keep_last", "compile", "save_every", "sample_every")


def _resumed_config(cfg: TrainConfig, saved: TrainConfig, given: set[str] | None,
                    say) -> TrainConfig:
    """The saved config, with the changes a resume allows applied and told (once the result
    passes :meth:`TrainConfig.check`); any other difference (among ``given`` keys, or every key
    when None) is refused."""
    keys = [f.name for f in fields(TrainConfig)] if given is None else sorted(given)
    notes = []
    out = TrainConfig.from_dict(asdict(saved))
    out.schedule_steps = saved.schedule_steps or saved.max_steps
    out.out = cfg.out  # the folder may have moved since
    for k in keys:
        new, old = getattr(cfg, k), getattr(saved, k)
        if k in ("out", "schedule_steps") or new == old:
            continue
        if k not in RESUME_MAY_CHANGE:
            raise UsageError(f"--resume continues a run exactly: {k} cannot change (the run has "
                             f"{old!r}, asked {new!r}); start a new run with --init-from to "
                             "change it")
        setattr(out, k, new)
        note = ""
        if k == "max_steps":
            note = (f"; the learning-rate schedule keeps its horizon of {out.schedule_steps} "
                    "steps" + (" (minimum lr after it)" if new > out.schedule_steps else ""))
        notes.append(f"resume: {k} {old} -> {new}{note}")
    out.check()
    for note in notes:
        say(note)
    return out


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None,
          progress: str = "bar", given: set[str] | None = None) -> dict:
    """Train to ``cfg.max_steps`` (or ``stop_after`` more steps); returns a summary. On
    ``resume``, ``given`` names the settings the caller set explicitly (the CLI's flags);
    None compares every setting of ``cfg`` with the run's."""
    from safetensors.torch import load_file  # noqa: F401  (fail early if missing)

    from mmaif.model.text import make_text_encoder
    from mmaif.model.tokenizers import make_tokenizer

    run = Path(cfg.out)
    if resume:
        ck = latest_checkpoint(run)
        if ck is None:
            raise InputError(f"{run}: no checkpoint to resume from (expected "
                             f"{run}/checkpoints/step_*)")
        state, tensors = read_checkpoint(ck)
        cfg = _resumed_config(cfg, TrainConfig.from_dict(state["train"]), given,
                              lambda m: print(m, file=sys.stderr))
    else:
        cfg = TrainConfig.from_dict({**asdict(cfg),
                                     "schedule_steps": cfg.schedule_steps or cfg.max_steps})
    cfg.check()
    rank, world, local = _dist()
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # subnormal floats are slow on x86 CPUs; train as GPUs do
    per_micro = cfg.batch // (world * cfg.accum)
    if per_micro * world * cfg.accum != cfg.batch:
        raise UsageError(f"--batch {cfg.batch} must be a multiple of processes x accum "
                         f"({world} x {cfg.accum})")
    torch.manual_seed(cfg.seed)
    dataset = _dataset(cfg)
    if len(dataset) < cfg.batch:
        raise InputError(f"{len(dataset)} samples is fewer than one batch ({cfg.batch})")
    text = make_text_encoder(cfg.text, device)
    tok = make_tokenizer(cfg.tokenizer, device)
    if cfg.fusion_weight > 0 and not tok.differentiable:
        raise UsageError(f"fusion_weight needs gradients through the decoder; the {tok.name} "
                         "tokenizer decodes without them: use pixel or kl tokens, or drop it")
    mcfg = build_model_config(cfg, tok.z, text.dim)
    grid = tok.f * mcfg.patch
    if cfg.patch % grid:
        raise UsageError(f"--patch {cfg.patch}: the training crop must be a multiple of "
                         f"{grid} (tokenizer f {tok.f} x model patch {mcfg.patch}), e.g. "
                         f"{max(grid, cfg.patch // grid * grid)}")
    model = FusionDiT(mcfg).to(device)
    if cfg.init_from and not resume:
        warm_start(model, cfg.init_from)
    ema = FusionDiT(mcfg).to(device).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.99))
    step, epoch, pos = 0, 0, 0
    if resume:
        if DiTConfig.from_dict(state["model"]) != mcfg:
            raise InputError(f"{ck}: its model config differs from the one rebuilt now")
        model.load_state_dict(tensors["model.safetensors"])
        ema.load_state_dict(tensors["ema.safetensors"])
        _optim_load(opt, tensors["optim.safetensors"], state["optimizer"])
        torch.set_rng_state(tensors["rng.safetensors"]["torch_cpu"])
        step, epoch, pos = state["step"], state["position"]["epoch"], state["position"]["batch"]
    if rank == 0:
        run.mkdir(parents=True, exist_ok=True)
        (run / "samples").mkdir(exist_ok=True)
        (run / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    net = model
    if world > 1:
        # MoE: an expert that no token of this rank's micro-batch chose gets no gradient here;
        # DDP must be told, or the ranks wait for each other forever
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local] if device.type == "cuda" else None,
            find_unused_parameters=mcfg.moe)
    ddp = net  # no_sync lives on the DDP wrapper, not on a compiled one
    if cfg.compile:
        net = torch.compile(net)
    comps = Components(model, tok, text, cfg.objective)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.amp and device.type == "cuda") \
        else torch.autocast("cpu", enabled=False)
    end = cfg.max_steps if stop_after is None else min(cfg.max_steps, step + stop_after)
    logger = _Logger(run, rank == 0, cfg.max_steps, step, progress)
    per_epoch = len(dataset) // cfg.batch
    t_start, first_loss, last, start_step = time.perf_counter(), None, {}, step
    micro_batches = iter(make_loader(dataset, cfg, rank, world, epoch, pos, device,
                                     candidates=mcfg if mcfg.fix_gates or mcfg.teacher_gate
                                     else None))
    while step < end:
        while pos < per_epoch and step < end:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            terms: dict[str, torch.Tensor] = {}  # detached; read (a device sync) at log steps
            for m in range(cfg.accum):
                keys, items = next(micro_batches)
                micro = [i for _, i in keys]
                batch = _collate(items, device)
                pooled = text.encode(batch["prompt"])[2].to(device)
                sync = m == cfg.accum - 1 or world == 1
                ctx = ddp.no_sync() if (world > 1 and not sync) else contextlib.nullcontext()
                with ctx, amp:
                    loss, parts, pred = _loss(comps, net, batch, pooled, micro, step, cfg)
                    (loss / cfg.accum).backward()
                for k, v in parts.items():
                    terms[k] = terms.get(k, 0.0) + v / cfg.accum
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                    pe.lerp_(pm, 1 - cfg.ema)
            step += 1
            pos += 1
            logger.tick()
            first_loss = float(terms["loss"]) if first_loss is None else first_loss
            last = terms
            if rank == 0 and (step % cfg.log_every == 0 or step == end):
                rate = (step - start_step) / max(1e-9, time.perf_counter() - t_start)
                logger.log(step, {**{k: float(v) for k, v in terms.items()},
                                  "lr": opt.param_groups[0]["lr"],
                                  "grad_norm": float(gnorm), "steps_per_s": rate})
            if rank == 0 and cfg.sample_every and step % cfg.sample_every == 0:
                _sample_grid(run / "samples" / f"step_{step:07d}.png", batch, pred.detach())
            if rank == 0 and (step % cfg.save_every == 0 or step == end):
                ck = save_checkpoint(run, step, model, ema, opt, cfg,
                                     {"epoch": epoch, "batch": pos}, cfg.keep_last)
                logger.say(f"saved {ck}")
        if pos >= per_epoch:
            epoch, pos = epoch + 1, 0
    logger.close()
    if world > 1:
        torch.distributed.barrier()
    return {"step": step, "first_loss": first_loss,
            "last": {k: float(v) for k, v in last.items()}, "run": str(run)}


def _loss(comps: Components, net, batch: dict, pooled: torch.Tensor, indices: list[int],
          step: int, cfg: TrainConfig) -> tuple[torch.Tensor, dict, torch.Tensor]:
    a, b, gt = batch["a"], batch["b"], batch["gt"]
    parts = {}
    if cfg.objective == "reg":
        cands = {"fixes": [batch["fa"], batch["fb"]], "teacher": batch.get("ts"),
                 "teacher_on": batch.get("ts_on")} if "fa" in batch else None
        pred, lat, aux = comps.regress(net, a, b, pooled, cands)
        main = F.l1_loss(lat, comps.tok.encode(gt)) if lat is not None else F.l1_loss(pred, gt)
    else:
        z0 = comps.tok.encode(gt)
        gens = [_seeded(cfg.seed, step, i) for i in indices]  # per sample: shard-independent
        eps = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in gens]).to(z0)
        t = torch.cat([flow.sample_t(1, g, cfg.t_mean, cfg.t_std, cfg.t_shift)
                       for g in gens]).to(z0.device)
        cond = comps.condition(a, b)
        out, aux = net(cond, pooled, t, flow.noisy(z0, eps, t), images=[a, b])
        main = F.mse_loss(out.float(), flow.velocity_target(z0, eps).float())
        tt = t.view(-1, 1, 1, 1)
        # the one-step estimate of the clean sample; with a gradient when a loss uses it
        v = out if cfg.fusion_weight > 0 else out.detach()
        pred = comps.tok.decode(flow.noisy(z0, eps, t) - tt * v.float())
    parts["main"] = main.detach()
    loss = main + cfg.balance_weight * aux["balance"]
    parts["balance"] = aux["balance"].detach()
    if cfg.distill_weight > 0:
        if "parts" not in aux:
            raise UsageError("distill_weight needs the fullres head (blend weights) and the "
                             "regression objective")
        fp = {**aux["parts"], "inputs": [a, b]}
        if "fa" in batch:
            fp.update(fixes=[batch["fa"], batch["fb"]], teacher=batch.get("ts"),
                      teacher_on=batch.get("ts_on"))
        for k, term in head_distill(fp, aux["logits"], gt, comps.tok.f,
                                    cfg.distill_min_diff).items():
            loss = loss + cfg.distill_weight * term
            parts[k] = term.detach()
    if cfg.fusion_weight > 0:
        fl = fusion_loss(pred, [a, b])
        loss = loss + cfg.fusion_weight * fl
        parts["fusion"] = fl.detach()
    parts["loss"] = loss.detach()
    return loss, parts, pred
