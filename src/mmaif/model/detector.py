"""What is wrong with each input: a small degradation recogniser, beside any fusion model.

Per input, a multi-label prediction over the degradation types of ``mmaif degrade --list``
(:data:`TYPES`), each with a severity (slight / moderate / heavy). It reads cheap statistics
of the image (:func:`image_features`: the classical evidence maps of
:func:`mmaif.model.dit.evidence_maps` — Laplacian, contrast, exposure, saturation, noise
level, dark channel, column offsets, 8 x 8 blockiness, local mean — pooled as mean, spread
and quantiles at two scales, plus a brightness histogram and clipping) of the input and of
its partner, and the task; a two-layer MLP turns them into probabilities. Labels are free:
every `mmaif synth` manifest says which degradation hit which input at which severity.

Saved as a folder of its own (``config.json`` + ``model.safetensors``; a pipeline keeps it in
``detector/``)::

    det = load_detector("runs/det/detector")
    found = det.detect(a, b, "vif")        # {"a": [Detection, ...], "b": [...]}
    prompt = detections_prompt("vif", found)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmaif.data.degrade.ops import OPS, SEVERITIES
from mmaif.errors import InputError

TYPES: tuple[str, ...] = tuple(sorted(OPS, key=lambda n: OPS[n].order))
TASK_INDEX = {"vif": 0, "mef": 1, "mff": 2}
FEATURE_SIDE = 512        # longer images are read at this long side (the training images')
QUANTILES = (0.1, 0.5, 0.9)
HIST_BINS = 16
# names what image_features computes: change it with the features, so a detector trained on
# other features is refused rather than fed numbers it never saw
FEATURES = "evidence-pooled-v1"


def image_features(x) -> torch.Tensor:
    """Statistics of one image in [0, 1] — a (3, H, W) or (H, W) tensor, or an (H, W, C) or
    (H, W) array — -> a float32 vector (:func:`feature_count` long)."""
    from mmaif.model.dit import EVIDENCE_MAPS, evidence_maps

    x = _chw(x).float()
    if x.dim() == 2:
        x = x[None]
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = x[None]
    h, w = x.shape[-2:]
    if max(h, w) > FEATURE_SIDE:
        s = FEATURE_SIDE / max(h, w)
        x = F.interpolate(x, size=(max(8, round(h * s)), max(8, round(w * s))), mode="area")
    feats = []
    q = torch.tensor(QUANTILES)
    for scale in range(2):
        if scale:
            x = F.avg_pool2d(x, 2) if min(x.shape[-2:]) >= 16 else x
        maps = evidence_maps(x * 2 - 1, EVIDENCE_MAPS)[0].flatten(1)  # (k, N)
        step = max(1, maps.shape[1] // 65536)                          # quantiles on a sample
        feats += [maps.mean(1), maps.std(1), *torch.quantile(maps[:, ::step], q, dim=1)]
    gray = x[0].mean(0).flatten()
    feats.append(torch.histc(gray, HIST_BINS, 0, 1) / gray.numel())
    feats.append(torch.stack([(gray <= 1 / 255).float().mean(), (gray >= 254 / 255).float()
                              .mean(), (x[0].amax(0) - x[0].amin(0)).mean()]))
    return torch.cat(feats).float()


def feature_count() -> int:
    from mmaif.model.dit import EVIDENCE_MAPS

    return 2 * len(EVIDENCE_MAPS) * (2 + len(QUANTILES)) + HIST_BINS + 3


@dataclass
class DetectorConfig:
    n_features: int = field(default_factory=feature_count)
    features: str = FEATURES
    hidden: int = 128
    types: tuple[str, ...] = TYPES
    severities: tuple[str, ...] = SEVERITIES
    threshold: float = 0.5   # a type is reported at p >= threshold

    @classmethod
    def from_dict(cls, d: dict) -> DetectorConfig:
        from mmaif.config import typed

        d = dict(d)
        for k in ("types", "severities"):
            if isinstance(d.get(k), list):
                d[k] = tuple(d[k])
        return cls(**typed(cls, d, "detector config"))


@dataclass(frozen=True)
class Detection:
    type: str
    severity: str
    p: float

    def to_dict(self) -> dict:
        return {"type": self.type, "severity": self.severity, "p": round(self.p, 4)}


class DegradationDetector(nn.Module):
    """features of (the input, its partner) + task + role -> per-type logits and, per type,
    severity logits. Inputs are standardised with the training set's statistics (buffers)."""

    def __init__(self, cfg: DetectorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DetectorConfig()
        self.trained_with: dict | None = None  # its training config, kept by save_detector
        n_in = 2 * cfg.n_features + len(TASK_INDEX) + 2
        self.register_buffer("mu", torch.zeros(n_in))
        self.register_buffer("sigma", torch.ones(n_in))
        self.body = nn.Sequential(nn.Linear(n_in, cfg.hidden), nn.GELU(),
                                  nn.Linear(cfg.hidden, cfg.hidden), nn.GELU())
        self.kind = nn.Linear(cfg.hidden, len(cfg.types))
        self.severity = nn.Linear(cfg.hidden, len(cfg.types) * len(cfg.severities))

    @staticmethod
    def inputs(own: torch.Tensor, other: torch.Tensor, task: torch.Tensor,
               role: torch.Tensor) -> torch.Tensor:
        """The network's input rows: (B, F) features of the input and its partner, (B,) task
        and role (0 = a, 1 = b) indices."""
        return torch.cat([own, own - other, F.one_hot(task, len(TASK_INDEX)).float(),
                          F.one_hot(role, 2).float()], dim=1)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body((rows - self.mu) / self.sigma)
        sev = self.severity(h).view(len(rows), len(self.cfg.types), len(self.cfg.severities))
        return self.kind(h), sev

    @torch.no_grad()
    def detect(self, a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, task: str,
               features: tuple[torch.Tensor, torch.Tensor] | None = None
               ) -> dict[str, list[Detection]]:
        """Per input ("a", "b"), the degradations found (p >= threshold), most likely first.
        ``a``, ``b``: images in [0, 1], (H, W) or (H, W, C) arrays or (C, H, W) tensors."""
        if task not in TASK_INDEX:
            raise InputError(f"task {task!r}: the detector knows {', '.join(TASK_INDEX)}")
        fa, fb = features or (image_features(a), image_features(b))
        rows = self.inputs(torch.stack([fa, fb]), torch.stack([fb, fa]),
                           torch.full((2,), TASK_INDEX[task]), torch.tensor([0, 1]))
        kind, sev = self.eval()(rows.to(self.mu.device))
        p, s = torch.sigmoid(kind).cpu(), sev.argmax(-1).cpu()
        out = {}
        for i, role in enumerate(("a", "b")):
            found = [Detection(t, self.cfg.severities[int(s[i, j])], float(p[i, j]))
                     for j, t in enumerate(self.cfg.types) if p[i, j] >= self.cfg.threshold]
            out[role] = sorted(found, key=lambda d: -d.p)
        return out


def _chw(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    x = np.asarray(x, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x if x.ndim == 2 else x.transpose(2, 0, 1)))


def detections_records(task: str, found: dict[str, list[Detection]]) -> list[dict]:
    """The detections as degradation records (name, target, severity) the task allows, in
    physical order: a type found in both inputs targets "both" where the task has it."""
    from mmaif.data.degrade.pipeline import TASK_OPS

    allowed = TASK_OPS[task]
    best = {}
    for role in ("a", "b"):
        for d in found.get(role, []):
            best.setdefault(d.type, {})[role] = d
    records = []
    for name in sorted(best, key=lambda n: OPS[n].order):
        roles, ok = best[name], allowed.get(name, ())
        if len(roles) == 2 and "both" in ok:
            target = "both"
        else:  # the likeliest input the task allows it on; weather of a shared scene: both
            fits = sorted((r for r in roles if r in ok), key=lambda r: -roles[r].p)
            target = fits[0] if fits else "both" if ok == ("both",) else None
        if target is None:  # the task never has it there (e.g. haze on the infrared image)
            continue
        d = max(roles.values(), key=lambda d: d.p)
        records.append({"name": name, "target": target, "severity": d.severity})
    return records


def detections_text(found: list[Detection]) -> str:
    """One input's detections in words: "noise (moderate, p 0.93), haze (slight, p 0.61)"."""
    return ", ".join(f"{d.type} ({d.severity}, p {d.p:.2f})" for d in found)


def detections_json(task: str, found: dict[str, list[Detection]], prompt: str) -> dict:
    """What `mmaif detect --json` and ``POST /api/detect`` answer."""
    return {"task": task, **{r: [d.to_dict() for d in found[r]] for r in ("a", "b")},
            "prompt": prompt}


def detections_prompt(task: str, found: dict[str, list[Detection]]) -> str:
    """The instruction the detections call for, deterministically (the prompt bank's first
    phrasing of each clause); the task's default prompt when nothing was found."""
    from mmaif.data.degrade.pipeline import compose_prompt, default_prompt

    records = detections_records(task, found)
    return compose_prompt(task, records, None) if records else default_prompt(task)


# --------------------------------------------------------------------- labels, scores
def labels(ops: list[dict], types: tuple[str, ...], severities: tuple[str, ...]
           ) -> tuple[np.ndarray, np.ndarray]:
    """(present (2, T) of 0/1, severity index (2, T), -1 where absent) for inputs a, b."""
    present = np.zeros((2, len(types)), np.float32)
    severity = np.full((2, len(types)), -1, np.int64)
    for op in ops:
        j = types.index(op["name"])
        for i, role in enumerate(("a", "b")):
            if op["target"] in (role, "both"):
                present[i, j] = 1
                severity[i, j] = severities.index(op["severity"])
    return present, severity


def type_scores(pred: np.ndarray, true: np.ndarray, types: tuple[str, ...]) -> dict:
    """Per type and micro-averaged counts (tp, fp, fn, tn), precision, recall and F1 of 0/1
    arrays (rows, T), with the support (how many rows have the type)."""
    def prf(p, t):
        tp, fp, fn = int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum())
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
        return {"tp": tp, "fp": fp, "fn": fn, "tn": int((~p & ~t).sum()), "precision": prec,
                "recall": rec, "f1": f1, "support": int(t.sum())}

    pred, true = pred.astype(bool), true.astype(bool)
    out = {t: prf(pred[:, j], true[:, j]) for j, t in enumerate(types)}
    out["micro"] = prf(pred.ravel(), true.ravel())
    return out


# ------------------------------------------------------------------------------ storage
def save_detector(model: DegradationDetector, folder: str | Path, extra: dict | None = None
                  ) -> Path:
    """``folder/config.json`` + ``folder/model.safetensors``, each written atomically; the
    config keeps the detector's training config (``extra``'s, else the one it was loaded
    with)."""
    from mmaif.model.storage import write_folder

    kept = {"training": model.trained_with} if model.trained_with else {}
    return write_folder(folder, model.state_dict(),
                        {"detector": asdict(model.cfg), **kept, **(extra or {})})


def load_detector(folder: str | Path, device: str | torch.device = "cpu"
                  ) -> DegradationDetector:
    """A detector folder, a pipeline folder holding one in ``detector/``, or a
    ``mmaif train-detector`` run; one-line errors."""
    p = Path(folder)
    for cand in (p, p / "detector"):
        if (cand / "config.json").is_file() and (cand / "model.safetensors").is_file():
            try:
                meta = json.loads((cand / "config.json").read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise InputError(f"{cand / 'config.json'}: not valid JSON ({exc})") from None
            if isinstance(meta, dict) and isinstance(meta.get("detector"), dict):
                break
    else:
        raise InputError(f"{p}: no degradation detector here (expected config.json + "
                         "model.safetensors with 'detector' settings, or a detector/ folder; "
                         "train one with `mmaif train-detector`)")
    cfg = DetectorConfig.from_dict(meta["detector"])
    if (cfg.n_features, cfg.features) != (feature_count(), FEATURES):
        raise InputError(f"{cand}: made for image features {cfg.features!r} ({cfg.n_features}),"
                         f" this version computes {FEATURES!r} ({feature_count()}); retrain it "
                         "with `mmaif train-detector`")
    from mmaif.model.storage import read_tensors

    model = DegradationDetector(cfg)
    missing, unexpected = model.load_state_dict(read_tensors(cand / "model.safetensors"),
                                                strict=False)
    if missing or unexpected:
        raise InputError(f"{cand}: the weights do not match the config (missing "
                         f"{len(missing)}, unexpected {len(unexpected)})")
    model.trained_with = meta.get("training")
    return model.to(device).eval()
