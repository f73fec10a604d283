"""Torch datasets: synthesized samples on the fly, or read from a ``mmaif synth`` folder.

Items are dicts: ``a``, ``b``, ``gt`` float tensors (C, H, W) in [0, 1], ``prompt``, ``task``,
``id`` and ``ops`` (JSON text of the applied degradations). With ``channels=3`` gray images
are replicated so tasks can share a batch; ``crop`` cuts a fixed-size random square so batches
stack.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from mmaif.data.degrade.depth import make_depth_estimator
from mmaif.data.images import read_image, resize_to
from mmaif.synthesis.synth import SynthConfig, collect_pairs, plan, read_manifest, render


def _to_tensor(x: np.ndarray, channels: int | None) -> torch.Tensor:
    if x.ndim == 2:
        x = x[..., None]
    if channels == 3 and x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))


def _crop(images: dict[str, np.ndarray], size: int, rng: np.random.Generator):
    h, w = images["a"].shape[:2]
    if min(h, w) < size:  # enlarge small images so a full crop fits
        s = size / min(h, w)
        new = (max(size, round(w * s)), max(size, round(h * s)))
        images = {k: resize_to(v, new) for k, v in images.items()}
        h, w = images["a"].shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return {k: v[y:y + size, x:x + size] for k, v in images.items()}


def _item(row: dict, images: dict[str, np.ndarray], crop: int | None,
          channels: int | None, epoch: int = 0) -> dict:
    """The item of a sample: a, b, gt and any further images of it (the same crop for all:
    the crop window does not depend on what is cropped), the prompt, task, id and ops."""
    if crop:
        rng = np.random.default_rng([row["seed"], epoch, row["index"], 7])
        images = _crop(images, crop, rng)
    return {**{k: _to_tensor(x, channels) for k, x in images.items()}, "prompt": row["prompt"],
            "task": row["task"], "id": row["id"], "ops": json.dumps(row["ops"])}


class SynthDataset(Dataset):
    """The synthesis pipeline applied per item, without writing to disk.

    Item ``i`` of epoch ``e`` is deterministic in (``cfg.seed``, e, i) — epoch 0 equals what
    ``mmaif synth`` writes with the same config; call :meth:`set_epoch` between epochs (as with
    a DistributedSampler) for fresh crops and degradations.
    """

    def __init__(self, cfg: SynthConfig, crop: int | None = None, channels: int | None = 3):
        cfg.check()
        self.cfg, self.crop, self.channels = cfg, crop, channels
        self.pairs = collect_pairs(cfg)
        self.epoch = 0
        self._depth = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.cfg.n

    def row(self, i: int) -> dict:
        """The manifest row item ``i`` would have this epoch."""
        return plan(i, self.cfg, self.pairs, epoch=self.epoch)

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self._depth is None:  # built lazily, inside each DataLoader worker
            self._depth = make_depth_estimator(self.cfg.depth)
        row = self.row(i)
        return _item(row, render(row, self._depth), self.crop, self.channels, self.epoch)


class SynthFolder(Dataset):
    """Samples written by ``mmaif synth`` (``OUT/{a,b,gt}/ID.png`` + ``manifest.jsonl``);
    ``cache`` keeps decoded 8-bit images in memory after their first read. ``extra`` (key ->
    folder of ``ID.png``): further whole-sample images per item, cropped with a, b and gt
    (e.g. classical candidates computed on the whole sample)."""

    def __init__(self, folder: str | Path, crop: int | None = None,
                 channels: int | None = 3, cache: bool = False,
                 extra: dict[str, Path] | None = None):
        self.folder = Path(folder)
        self.rows = read_manifest(self.folder / "manifest.jsonl")
        self.crop, self.channels = crop, channels
        self.extra = dict(extra or {})
        self.epoch = 0
        self._cache: dict[int, dict[str, np.ndarray]] | None = {} if cache else None

    def set_epoch(self, epoch: int) -> None:
        """New random crops each epoch (deterministic in the epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        if self._cache is not None and i in self._cache:
            images = {k: v.astype(np.float32) / 255.0 for k, v in self._cache[i].items()}
        else:
            paths = {**{k: self.folder / k for k in ("a", "b", "gt")}, **self.extra}
            pics = {k: read_image(d / f"{row['id']}.png") for k, d in paths.items()}
            images = {k: p.data for k, p in pics.items()}
            if self._cache is not None and all(p.bits == 8 for p in pics.values()):
                # 8-bit PNGs: uint8 holds them exactly, at a quarter of float32's memory
                self._cache[i] = {k: np.round(v * 255).astype(np.uint8)
                                  for k, v in images.items()}
        return _item(row, images, self.crop, self.channels, self.epoch)


class SynthFolders(ConcatDataset):
    """Several ``mmaif synth`` folders as one dataset (indices run through them in order);
    ``set_epoch`` reaches each folder, so crops follow the epoch as with one."""

    def set_epoch(self, epoch: int) -> None:
        for part in self.datasets:
            part.set_epoch(epoch)
