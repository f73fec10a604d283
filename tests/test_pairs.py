from __future__ import annotations

import numpy as np
import pytest

from mmaif.data.pairs import discover_pairs, infer_task
from mmaif.errors import InputError

from .conftest import SAMPLES, need, save, texture


def make(root, rel_paths, value=0.5):
    for rel in rel_paths:
        save(root / rel, texture(6, 7) * 0 + value)


@pytest.mark.parametrize("dirs,task", [
    (("ir", "vi"), "vif"), (("Infrared", "Visible"), "vif"),
    (("cropinfrared", "crop_HR_visible"), "vif"), (("ue", "oe"), "mef"),
    (("under", "over"), "mef"), (("source_1", "source_2"), "mff"),
    (("imageA", "imageB"), "mff"), (("A", "B"), None),
])
def test_two_folder_layouts(tmp_path, dirs, task):
    make(tmp_path, [f"{dirs[0]}/0001.png", f"{dirs[0]}/0002.png",
                    f"{dirs[1]}/0001.png", f"{dirs[1]}/0002.jpg"])
    layout, pairs = discover_pairs(tmp_path)
    assert [p.name for p in pairs] == ["0001", "0002"]
    assert all(p.a.parent.name == dirs[0] and p.b.parent.name == dirs[1] for p in pairs)
    assert {p.task for p in pairs} == {task}
    assert layout


def test_llvip_splits(tmp_path):
    make(tmp_path, ["infrared/train/1.jpg", "visible/train/1.jpg",
                    "infrared/test/9.jpg", "visible/test/9.jpg"])
    _, pairs = discover_pairs(tmp_path)
    assert sorted(p.name for p in pairs) == ["test/9", "train/1"]


def test_generic_layout_takes_task_flag(tmp_path):
    make(tmp_path, ["A/x.png", "B/x.png"])
    _, pairs = discover_pairs(tmp_path, task="mff")
    assert pairs[0].task == "mff"


def test_lytro_suffixes(tmp_path):
    make(tmp_path, ["lytro-01-A.jpg", "lytro-01-B.jpg", "lytro-02-A.jpg", "lytro-02-B.jpg"])
    layout, pairs = discover_pairs(tmp_path)
    assert "Lytro" in layout and [p.name for p in pairs] == ["lytro-01", "lytro-02"]
    assert pairs[0].a.name == "lytro-01-A.jpg" and pairs[0].task == "mff"


def test_mefb_puts_darker_image_first(tmp_path):
    make(tmp_path, ["Arno/Arno_A.png"], value=0.9)
    make(tmp_path, ["Arno/Arno_B.png"], value=0.1)
    make(tmp_path, ["Lamp/Lamp_A.png"], value=0.2)
    make(tmp_path, ["Lamp/Lamp_B.png"], value=0.8)
    layout, pairs = discover_pairs(tmp_path)
    assert "MEFB" in layout
    assert [(p.name, p.a.name) for p in pairs] == [("Arno", "Arno_B.png"), ("Lamp", "Lamp_A.png")]


def test_fusion_samples_layout(tmp_path):
    make(tmp_path, ["vif/ir/t1.png", "vif/vi/t1.png", "mef/under/m.png", "mef/over/m.png",
                    "mff/near/f.png", "mff/far/f.png"])
    _, pairs = discover_pairs(tmp_path)
    assert [(p.name, p.task) for p in pairs] == [("vif/t1", "vif"), ("mef/m", "mef"),
                                                 ("mff/f", "mff")]
    _, only = discover_pairs(tmp_path, task="mff")
    assert [p.name for p in only] == ["mff/f"]


def test_real_fusion_samples_are_all_found():
    root = need(SAMPLES)
    _, pairs = discover_pairs(root)
    counts = {t: sum(p.task == t for p in pairs) for t in ("vif", "mef", "mff")}
    assert counts == {"vif": 28, "mef": 13, "mff": 17}


def test_unmatched_names_are_reported(tmp_path):
    make(tmp_path, ["ir/1.png", "ir/2.png", "vi/1.png"])
    with pytest.raises(InputError, match=r"1 image\(s\) in .*ir have no partner.*2.png"):
        discover_pairs(tmp_path)


def test_unknown_layout(tmp_path):
    make(tmp_path, ["left/1.png", "right/1.png"])
    with pytest.raises(InputError, match="no known dataset layout"):
        discover_pairs(tmp_path)


def test_infer_task_from_folder_names(tmp_path):
    assert infer_task(tmp_path / "ir/1.png", tmp_path / "vi/1.png") == "vif"
    assert infer_task(tmp_path / "under/1.png", tmp_path / "over/1.png") == "mef"
    assert infer_task(tmp_path / "x/1.png", tmp_path / "y/1.png") is None


def test_committed_split_covers_the_samples():
    from pathlib import Path

    root = need(SAMPLES)
    splits = Path(__file__).parents[1] / "splits"

    def names(kind):
        lines = (splits / f"fusion_samples_{kind}.txt").read_text().splitlines()
        return {ln for ln in lines if ln and not ln.startswith("#")}

    train, dev = names("train"), names("dev")
    _, pairs = discover_pairs(root)
    assert train.isdisjoint(dev) and train | dev == {p.name for p in pairs}
    assert not any("llvip_" in n for n in train)
    for task in ("vif", "mef", "mff"):
        n_dev = sum(n.startswith(task) for n in dev)
        n_all = n_dev + sum(n.startswith(task) for n in train)
        assert 0.15 <= n_dev / n_all <= 0.3


def test_guess_task_folder_names_first_then_pixels(tmp_path):
    from mmaif.data.pairs import guess_task

    rng = np.random.default_rng(0)
    rgb = rng.random((8, 8, 3)).astype(np.float32)
    gray = rgb[..., 0]
    # folder names that name the roles decide, whatever the pixels
    assert guess_task(rgb, rgb, tmp_path / "under/1.png", tmp_path / "over/1.png")[0] == "mef"
    task, how = guess_task(gray, rgb, tmp_path / "x/1.png", tmp_path / "y/1.png")
    assert task == "vif" and "pixels" in how
    assert guess_task(rgb * 0.3, np.clip(rgb * 1.8, 0, 1))[0] == "mef"
    assert guess_task(rgb, rgb[::-1].copy())[0] == "mff"


def test_cli_says_how_it_guessed_the_task(cli, tmp_path):
    a = save(tmp_path / "a.png", texture(20, 24, 0, 1))
    b = save(tmp_path / "b.png", texture(20, 24, 3, 2))
    code, _, err = cli("fuse", a, b, "-o", tmp_path / "f.png", "--method", "gff")
    assert code == 0 and "task vif (guessed from the pixels" in err and "--task overrides" in err
