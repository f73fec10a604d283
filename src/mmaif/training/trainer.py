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
import os
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from mmaif.errors import InputError, UsageError
from mmaif.model.components import Components
from mmaif.model.dit import DiTConfig, FusionDiT
from mmaif.model.objectives import make_objective
from mmaif.model.storage import latest_checkpoint, read_checkpoint
from mmaif.training.checkpoint import load_optimizer, save_checkpoint, warm_start
from mmaif.training.config import (
    TrainConfig,
    build_model_config,
    lr_at,
)
from mmaif.training.data import collate, make_dataset, make_loader, prepare_candidates


# -------------------------------------------------------------------------- training
def _dist() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world, int(os.environ.get("LOCAL_RANK", "0"))


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


def param_groups(model: FusionDiT, head_lr: float) -> list[dict]:
    """The optimizer's parameter groups: one, or with ``head_lr`` != 1 the output layers (the
    head's, the global tone's) apart, their learning rate multiplied by ``head_lr`` (the
    ``lr_mult`` the schedule reads)."""
    if head_lr == 1.0:
        return [{"params": list(model.parameters())}]
    head = [*model.out.parameters(),
            *(model.global_tone.parameters() if model.global_tone is not None else ())]
    ids = {id(p) for p in head}
    return [{"params": [p for p in model.parameters() if id(p) not in ids]},
            {"params": head, "lr_mult": head_lr}]


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
        cfg = _resumed_config(cfg, TrainConfig.from_saved(state["train"]), given,
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
    dataset = make_dataset(cfg)
    if len(dataset) < cfg.batch:
        raise InputError(f"{len(dataset)} samples is fewer than one batch ({cfg.batch})")
    text = make_text_encoder(cfg.text, device)
    tok = make_tokenizer(cfg.tokenizer, device)
    if cfg.fusion_weight > 0 and not tok.differentiable:
        raise UsageError(f"fusion_weight needs gradients through the decoder; the {tok.name} "
                         "tokenizer decodes without them: use pixel or kl tokens, or drop it")
    mcfg = build_model_config(cfg, tok.z, text.dim)
    gated = mcfg.fix_gates or mcfg.teacher_gate
    if cfg.full_candidates and not gated:
        raise UsageError("full_candidates: this model reads no classical candidates (its "
                         "config has no fix_gates or teacher_gate)")
    grid = tok.f * mcfg.patch
    if cfg.crop % grid:
        raise UsageError(f"--crop {cfg.crop}: the training crop must be a multiple of "
                         f"{grid} (tokenizer f {tok.f} x model patch {mcfg.patch}), e.g. "
                         f"{max(grid, cfg.crop // grid * grid)}")
    model = FusionDiT(mcfg).to(device)
    if cfg.init_from and not resume:
        warm_start(model, cfg.init_from)
    ema = FusionDiT(mcfg).to(device).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(param_groups(model, cfg.head_lr), lr=cfg.lr,
                            weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    step, epoch, pos = 0, 0, 0
    if resume:
        if DiTConfig.from_dict(state["model"]) != mcfg:
            raise InputError(f"{ck}: its model config differs from the one rebuilt now")
        model.load_state_dict(tensors["model.safetensors"])
        ema.load_state_dict(tensors["ema.safetensors"])
        load_optimizer(opt, tensors["optim.safetensors"], state["optimizer"])
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
    objective = make_objective(Components(model, tok, text))
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if (cfg.amp and device.type == "cuda") \
        else torch.autocast("cpu", enabled=False)
    end = cfg.max_steps if stop_after is None else min(cfg.max_steps, step + stop_after)
    logger = _Logger(run, rank == 0, cfg.max_steps, step, progress)
    per_epoch = len(dataset) // cfg.batch
    t_start, first_loss, last, start_step = time.perf_counter(), None, {}, step
    if cfg.full_candidates:
        if rank == 0:
            prepare_candidates(cfg, progress=progress == "bar")
        if world > 1:
            torch.distributed.barrier()
    micro_batches = iter(make_loader(dataset, cfg, rank, world, epoch, pos, device,
                                     candidates=mcfg if gated else None))
    while step < end:
        while pos < per_epoch and step < end:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg) * g.get("lr_mult", 1.0)
            terms: dict[str, torch.Tensor] = {}  # detached; read (a device sync) at log steps
            for m in range(cfg.accum):
                keys, items = next(micro_batches)
                micro = [i for _, i in keys]
                batch = collate(items, device)
                pooled = text.encode(batch["prompt"])[2].to(device)
                sync = m == cfg.accum - 1 or world == 1
                ctx = ddp.no_sync() if (world > 1 and not sync) else contextlib.nullcontext()
                with ctx, amp:
                    loss, parts, pred = objective.loss(net, batch, pooled, micro, step, cfg)
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
