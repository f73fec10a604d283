"""What the trainer reads: the dataset of a run (synth folders or on the fly), batches of
(epoch, index) keys sharded like DistributedSampler, prompt dropout and the classical
candidates added per item, and collation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmaif.errors import InputError
from mmaif.model.components import seeded_generator
from mmaif.model.dit import DiTConfig
from mmaif.training.config import TrainConfig

CANDIDATES = "candidates"            # DATA/candidates/{fa,fb,ts}/ID.png: whole-sample candidates
CANDIDATE_KEYS = ("fa", "fb", "ts")


def make_dataset(cfg: TrainConfig):
    """The run's samples; with ``full_candidates``, each item also carries the classical
    candidates of its whole sample, cropped like it (:func:`prepare_candidates` writes them)."""
    from mmaif.synthesis.datasets import SynthDataset, SynthFolder, SynthFolders
    from mmaif.synthesis.synth import SynthConfig

    if cfg.data:
        folders = cfg.data_folders()
        for folder in folders:
            if not (Path(folder) / "manifest.jsonl").is_file():
                raise InputError(f"{folder}: no manifest.jsonl; --data takes a `mmaif synth` "
                                 "output folder")
        parts = [SynthFolder(f, crop=cfg.crop, cache=cfg.cache,
                             extra={k: Path(f) / CANDIDATES / k for k in CANDIDATE_KEYS}
                             if cfg.full_candidates else None) for f in folders]
        return parts[0] if len(parts) == 1 else SynthFolders(parts)
    return SynthDataset(SynthConfig(tasks=["vif", "mef", "mff"], sources=list(cfg.src),
                                    n=cfg.onthefly_n, seed=cfg.seed), crop=cfg.crop)


class _CandidateWriter(torch.utils.data.Dataset):
    """Item i: computes and writes the whole-sample candidates of ``rows[i]`` of ``folder``."""

    def __init__(self, folder: Path, rows: list[dict]):
        self.folder, self.rows = folder, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> str:
        from mmaif.classical.restore import candidates
        from mmaif.data.degrade.names import named_degradations
        from mmaif.data.images import read_image, write_image
        from mmaif.synthesis.teachers import DEFAULT_TEACHERS

        row = self.rows[i]
        a, b = (read_image(self.folder / k / f"{row['id']}.png").data for k in ("a", "b"))
        images = candidates(a, b, named_degradations(row["prompt"], row["task"]),
                            DEFAULT_TEACHERS.get(row["task"], "gff"))
        for k, x in zip(CANDIDATE_KEYS, images, strict=True):
            write_image(self.folder / CANDIDATES / k / f"{row['id']}.png", np.clip(x, 0, 1))
        return row["id"]


def prepare_candidates(cfg: TrainConfig, progress: bool = True) -> int:
    """For ``full_candidates``: write, once per ``--data`` folder, the classical candidates of
    each whole sample for its own prompt (the fixes of the degradations it names and the task's
    default teacher on them: what inference computes on a whole image) to
    ``DATA/candidates/{fa,fb,ts}/ID.png``; samples already written are kept, so an interrupted
    run continues. ``cfg.workers`` processes. Returns how many samples it wrote."""
    from mmaif.data.images import check_writable_folder
    from mmaif.synthesis.synth import read_manifest

    todo = []
    for folder in map(Path, cfg.data_folders()):
        rows = [r for r in read_manifest(folder / "manifest.jsonl")
                if not all((folder / CANDIDATES / k / f"{r['id']}.png").is_file()
                           for k in CANDIDATE_KEYS)]
        if rows:
            check_writable_folder(folder)
            for k in CANDIDATE_KEYS:
                (folder / CANDIDATES / k).mkdir(parents=True, exist_ok=True)
            todo.append(_CandidateWriter(folder, rows))
    if not todo:
        return 0
    loader = torch.utils.data.DataLoader(torch.utils.data.ConcatDataset(todo), batch_size=None,
                                         num_workers=cfg.workers)
    n = sum(len(t) for t in todo)
    if progress:
        import sys

        from tqdm import tqdm

        loader = tqdm(loader, total=n, desc="candidates", unit="sample", file=sys.stderr)
    for _ in loader:
        pass
    return n


class _EpochIndexed(torch.utils.data.Dataset):
    """Items addressed by (epoch, index): each DataLoader worker (persistent or not) sets its
    own copy's epoch from the key, so random crops follow the epoch exactly as without
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
        given = item["prompt"]
        if self.cfg is not None:
            drop_prompts([item], [i], self.cfg, epoch)
        if self.candidates is not None:  # whole-sample ones hold for the sample's own prompt
            add_candidates(item, self.candidates, whole=item["prompt"] == given)
        else:  # a model without gates reads no candidates
            for k in CANDIDATE_KEYS:
                item.pop(k, None)
        return key, item


def _array(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) when its channels are equal (a replicated gray image, as
    the datasets give), else (H, W, C): the classical methods' colour policy needs the gray."""
    if x.shape[0] == 3 and torch.equal(x[0], x[1]) and torch.equal(x[0], x[2]):
        return x[0].numpy()
    return x.permute(1, 2, 0).numpy()


def add_candidates(item: dict, mcfg: DiTConfig, whole: bool = False) -> dict:
    """``item['fa'], item['fb']``: the classical fixes of the degradations the item's prompt
    names; for a model with a teacher gate also ``item['ts']``, the task's default teacher on
    them, and ``item['ts_on']``, whether the gate is open (:func:`mmaif.classical.restore.
    head_candidates`; exactly what ``FusionPipeline.candidates`` computes at inference);
    images as (3, H, W) in [0, 1]. With ``whole`` and the item holding them already
    (``full_candidates``), the fixes and the teacher are those of the whole sample, cropped
    like the item (as inference computes them on the whole image, not on a window of it);
    otherwise they are computed on the crop."""
    from mmaif.classical.restore import head_candidates
    from mmaif.data.degrade.names import named_degradations
    from mmaif.synthesis.teachers import DEFAULT_TEACHERS

    names = named_degradations(item["prompt"], item.get("task"))
    teacher = DEFAULT_TEACHERS.get(item.get("task"), "gff") if mcfg.teacher_gate else None
    on = not mcfg.teacher_named or bool(names.get("a") or names.get("b"))
    if whole and all(k in item for k in CANDIDATE_KEYS) and on:
        if teacher is None:
            item.pop("ts")
        else:
            item["ts_on"] = torch.tensor(1.0)
        return item
    fa, fb, ts, on = head_candidates(_array(item["a"]), _array(item["b"]), names, teacher,
                                     mcfg.teacher_named)
    item.pop("ts", None)
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
            perm = torch.randperm(self.n, generator=seeded_generator(cfg.seed, epoch))
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


def collate(items: list[dict], device) -> dict:
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
        u = torch.rand(2, generator=seeded_generator(cfg.seed, epoch, i, 7)).tolist()
        if u[0] < cfg.prompt_dropout:
            it["prompt"] = default_prompt(it.get("task")) if u[1] < 0.5 else ""
