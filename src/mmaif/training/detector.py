"""Training the degradation detector (:mod:`mmaif.model.detector`) on `mmaif synth` folders:
``mmaif train-detector --data DIR [--data DIR2] --out RUN``.

Each sample gives two rows (input a, input b) labelled from its manifest: which of the
degradation types hit that input, at which severity. The image features are computed once per
folder (torch DataLoader workers, a progress bar) and cached in the run folder, so a resumed
or repeated run starts training at once. A seeded tenth of the samples is held out; the run
writes per-type precision / recall / F1 on it (``metrics.json``) and the detector
(``detector/``, loadable with :func:`~mmaif.model.detector.load_detector`). Checkpoints are
written atomically every epoch; ``--resume`` continues from the last exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmaif.errors import InputError, UsageError
from mmaif.model.detector import (
    TASK_INDEX,
    DegradationDetector,
    DetectorConfig,
    image_features,
    labels,
    save_detector,
    type_scores,
)
from mmaif.training.checkpoint import load_optimizer, optimizer_tensors
from mmaif.training.config import DetectorTrainConfig


# --------------------------------------------------------------------------- the data
class _FeatureSet(torch.utils.data.Dataset):
    """The features of one synth folder's images, sample by sample: (2, F)."""

    def __init__(self, folder: Path, rows: list[dict]):
        self.folder, self.rows = folder, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        from mmaif.data.images import read_image

        torch.set_num_threads(1)
        row = self.rows[i]
        return torch.stack([image_features(read_image(self.folder / k / f"{row['id']}.png").data)
                            for k in ("a", "b")])


def folder_features(folder: Path, rows: list[dict], cache: Path, workers: int,
                    progress: str) -> torch.Tensor:
    """(N, 2, F) features of a synth folder's samples, from ``cache`` when it holds them for
    this very manifest (keyed by its checksum), else computed and cached atomically."""
    from safetensors.torch import load_file, save

    from mmaif.data.images import atomic_write_bytes

    key = hashlib.sha256((folder / "manifest.jsonl").read_bytes()).hexdigest()[:16]
    path = cache / f"{folder.name}-{key}.safetensors"
    if path.is_file():
        return load_file(str(path))["features"]
    loader = torch.utils.data.DataLoader(_FeatureSet(folder, rows), batch_size=None,
                                         num_workers=workers)
    it = loader
    if progress == "bar":
        from tqdm import tqdm

        it = tqdm(loader, total=len(rows), desc=f"features {folder.name}", unit="sample",
                  file=sys.stderr)
    feats = []
    for n, f in enumerate(it):
        feats.append(f)
        if progress == "lines" and (n + 1) % 500 == 0:
            print(f"features {folder.name}: {n + 1}/{len(rows)}", file=sys.stderr, flush=True)
    out = torch.stack(feats)
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save({"features": out.contiguous()}))
    return out


def training_rows(cfg: DetectorTrainConfig, dcfg: DetectorConfig, progress: str
                  ) -> dict[str, torch.Tensor]:
    """Every sample of every folder as network rows and labels, with a seeded train / val
    split by sample (both inputs of a sample on the same side)."""
    from mmaif.synthesis.synth import read_manifest

    own, other, task, role, present, severity = [], [], [], [], [], []
    for folder in map(Path, cfg.data):
        rows = read_manifest(folder / "manifest.jsonl")
        feats = folder_features(folder, rows, Path(cfg.out) / "features", cfg.workers,
                                progress)
        for r, f in zip(rows, feats, strict=True):
            p, s = labels(r["ops"], dcfg.types, dcfg.severities)
            for i in range(2):
                own.append(f[i])
                other.append(f[1 - i])
                task.append(TASK_INDEX[r["task"]])
                role.append(i)
                present.append(p[i])
                severity.append(s[i])
    n = len(own) // 2
    val = np.zeros(n, bool)
    val[np.random.default_rng(cfg.seed).permutation(n)[:round(n * cfg.val_share)]] = True
    return {"x": DegradationDetector.inputs(torch.stack(own), torch.stack(other),
                                            torch.tensor(task), torch.tensor(role)),
            "present": torch.from_numpy(np.stack(present)),
            "severity": torch.from_numpy(np.stack(severity)),
            "val": torch.from_numpy(np.repeat(val, 2))}


# ----------------------------------------------------------------------- the metrics
def _evaluate(model: DegradationDetector, data: dict, mask: torch.Tensor) -> dict:
    with torch.no_grad():
        kind, sev = model.eval()(data["x"][mask])
    pred = (torch.sigmoid(kind) >= model.cfg.threshold).numpy()
    true = data["present"][mask].numpy()
    scores = type_scores(pred, true, model.cfg.types)
    s_true = data["severity"][mask]
    hit = s_true >= 0
    scores["severity_accuracy"] = float((sev.argmax(-1)[hit] == s_true[hit]).float().mean()) \
        if hit.any() else float("nan")
    return scores


# -------------------------------------------------------------------------- the loop
def _loss(model: DegradationDetector, x, present, severity, w: float) -> torch.Tensor:
    kind, sev = model(x)
    loss = F.binary_cross_entropy_with_logits(kind, present)
    hit = severity >= 0
    if hit.any() and w > 0:
        loss = loss + w * F.cross_entropy(sev[hit], severity[hit])
    return loss


def _checkpoint(run: Path, model, opt, epoch: int, cfg: DetectorTrainConfig) -> None:
    from safetensors.torch import save

    from mmaif.data.images import atomic_write_bytes

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = optimizer_tensors(opt)
    tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
    tensors["rng"] = torch.get_rng_state()
    atomic_write_bytes(run / "checkpoint.safetensors", save(tensors))
    atomic_write_bytes(run / "checkpoint.json", json.dumps(
        {"epoch": epoch, "train": asdict(cfg), "optimizer": opt_meta},
        indent=1).encode())


def _restore(run: Path, model, opt, cfg: DetectorTrainConfig) -> int:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        meta = json.loads((run / "checkpoint.json").read_text())
        tensors = load_file(str(run / "checkpoint.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise InputError(f"{run}: no readable checkpoint to resume from ({exc.__class__.__name__}"
                         "); start a new run, or delete the folder") from None
    saved = meta["train"]
    for k in ("epochs", "lr", "weight_decay", "hidden", "severity_weight", "val_share", "seed",
              "batch"):
        if saved[k] != getattr(cfg, k):
            raise UsageError(f"--resume continues a run exactly: {k} cannot change (the run "
                             f"has {saved[k]!r}, asked {getattr(cfg, k)!r})")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    load_optimizer(opt, {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")},
                   meta["optimizer"])
    torch.set_rng_state(tensors["rng"])
    return int(meta["epoch"])


def train_detector(cfg: DetectorTrainConfig, resume: bool = False, progress: str = "bar",
                   stop_after: int | None = None) -> dict:
    """Train (or, with ``resume``, continue) a detector, to ``cfg.epochs`` or ``stop_after``
    more epochs; returns the held-out scores of the detector it wrote."""
    cfg.check()
    run = Path(cfg.out)
    if resume and not (run / "checkpoint.json").is_file():
        raise InputError(f"{run}: no checkpoint to resume from (expected {run}/checkpoint.json)")
    torch.manual_seed(cfg.seed)
    dcfg = DetectorConfig(hidden=cfg.hidden)
    data = training_rows(cfg, dcfg, progress)
    train_mask = ~data["val"]
    if int(train_mask.sum()) < 2:
        raise InputError(f"{int(train_mask.sum()) // 2} training samples: too few to learn "
                         "from; give more `mmaif synth` samples")
    model = DegradationDetector(dcfg)
    x = data["x"][train_mask]
    model.mu.copy_(x.mean(0))
    model.sigma.copy_(x.std(0).clamp_min(1e-4))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    epoch = _restore(run, model, opt, cfg) if resume else 0
    run.mkdir(parents=True, exist_ok=True)
    present, severity = data["present"][train_mask], data["severity"][train_mask]
    n, g = len(x), torch.Generator()
    bar = None
    if progress == "bar":
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs, initial=epoch, desc="train-detector", unit="epoch",
                   file=sys.stderr)
    end = cfg.epochs if stop_after is None else min(cfg.epochs, epoch + stop_after)
    while epoch < end:
        model.train()
        g.manual_seed(cfg.seed * 100003 + epoch)   # the epoch's order: resumes exactly
        for group in opt.param_groups:              # cosine decay over the epochs
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
        total = 0.0
        for idx in torch.randperm(n, generator=g).split(cfg.batch):
            loss = _loss(model, x[idx], present[idx], severity[idx], cfg.severity_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        epoch += 1
        _checkpoint(run, model, opt, epoch, cfg)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / n:.4f}")
        elif progress == "lines" and (epoch % 10 == 0 or epoch == end):
            print(f"epoch {epoch} loss={total / n:.4f}", file=sys.stderr, flush=True)
    if bar is not None:
        bar.close()
    scores = _evaluate(model, data, data["val"] if bool(data["val"].any()) else train_mask)
    scores["held_out_samples"] = int(data["val"].sum()) // 2
    save_detector(model, run / "detector", {"training": asdict(cfg)})
    from mmaif.data.images import atomic_write_bytes

    atomic_write_bytes(run / "metrics.json", json.dumps(scores, indent=1).encode())
    return scores
