from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from mmaif.synthesis.datasets import SynthDataset, SynthFolder
from mmaif.synthesis.synth import SynthConfig, synthesize


def cfg(src_root, n=6, seed=0):
    return SynthConfig(tasks=["vif", "mef", "mff"], sources=[str(src_root)], n=n, seed=seed)


def test_on_the_fly_items_are_deterministic_per_epoch(src):
    ds = SynthDataset(cfg(src), crop=32)
    x0, again = ds[1], ds[1]
    assert x0["a"].shape == (3, 32, 32) and x0["gt"].dtype == torch.float32
    assert torch.equal(x0["a"], again["a"]) and x0["prompt"] == again["prompt"]
    ds.set_epoch(1)
    x1 = ds[1]
    assert not torch.equal(x0["a"], x1["a"]) or x0["ops"] != x1["ops"]
    ds.set_epoch(0)
    assert torch.equal(ds[1]["gt"], x0["gt"])


def test_dataloader_batches_mixed_tasks(src):
    loader = DataLoader(SynthDataset(cfg(src), crop=24), batch_size=3, num_workers=2)
    batch = next(iter(loader))
    assert batch["a"].shape == (3, 3, 24, 24) and batch["task"] == ["vif", "mef", "mff"]
    assert batch["b"].min() >= 0 and batch["b"].max() <= 1


def test_on_the_fly_equals_written_samples(src, tmp_path):
    rows = synthesize(cfg(src, n=3, seed=5), tmp_path / "o", progress="none")
    written = SynthFolder(tmp_path / "o", channels=None)
    fly = SynthDataset(cfg(src, n=3, seed=5), channels=None)
    for i in range(3):
        assert fly.row(i) == rows[i]
        np.testing.assert_allclose(fly[i]["b"].numpy(), written[i]["b"].numpy(),
                                   atol=0.5 / 255 + 1e-6)


def test_folder_cache_returns_identical_items(src, tmp_path):
    synthesize(SynthConfig(tasks=["vif", "mef"], sources=[str(src)], n=4, seed=3), tmp_path / "d",
               progress="none")
    plain = SynthFolder(tmp_path / "d", crop=32)
    cached = SynthFolder(tmp_path / "d", crop=32, cache=True)
    for _ in range(2):  # first read fills the cache, second is served from it
        for i in range(4):
            x, y = plain[i], cached[i]
            assert all(torch.equal(x[k], y[k]) for k in ("a", "b", "gt"))
    assert len(cached._cache) == 4


def test_several_folders_train_as_one(src, tmp_path):
    from mmaif.synthesis.datasets import SynthFolders
    from mmaif.training.config import TrainConfig
    from mmaif.training.data import make_dataset

    for name, seed in (("d1", 1), ("d2", 2)):
        synthesize(cfg(src, n=3, seed=seed), tmp_path / name, progress="none")
    one = [SynthFolder(tmp_path / n, crop=32) for n in ("d1", "d2")]
    both = make_dataset(TrainConfig(data=[str(tmp_path / "d1"), str(tmp_path / "d2")], crop=32))
    assert isinstance(both, SynthFolders) and len(both) == 6
    both.set_epoch(3)
    for part in one:
        part.set_epoch(3)
    for i in range(6):  # indices run through the folders in order; the epoch reaches each
        x, y = both[i], one[i // 3][i % 3]
        assert x["id"] == y["id"] and torch.equal(x["a"], y["a"])
    assert not torch.equal(both[0]["a"], SynthFolder(tmp_path / "d1", crop=32)[0]["a"])
