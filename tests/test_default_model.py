"""The trained default model shipped inside the package: present, described, and better than
the classical baseline on data it never saw."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from mmaif.pipeline import DEFAULT_MODEL, FusionPipeline

from .conftest import REPO, SAMPLES, need


@pytest.fixture(scope="module")
def pipe():
    return FusionPipeline.from_pretrained()


def test_shipped_files_card_and_config(pipe):
    files = sorted(p.name for p in DEFAULT_MODEL.iterdir())
    assert files == ["README.md", "config.json", "model.safetensors"]
    meta = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert meta["pipeline"] == {"tokenizer": "pixel", "text": "minilm", "objective": "reg"}
    assert meta["training"]["preset"] == "tiny" and meta["training"]["seed"] == 0
    assert pipe.model.cfg.patch == 2 and pipe.model.cfg.head == "fullres"
    card = (DEFAULT_MODEL / "README.md").read_text()
    digest = hashlib.sha256((DEFAULT_MODEL / "model.safetensors").read_bytes()).hexdigest()
    assert digest in card  # the card describes these very weights
    for must in ("scripts/train_default.sh", "mmaif eval", "mmaif bench", "LLVIP", "Limits"):
        assert must in card
    # the package ships the weights (pyproject package data)
    assert "weights/default/*" in (REPO / "pyproject.toml").read_text()


def test_no_argument_loads_the_default(pipe):
    rng = np.random.default_rng(0)
    a, b = rng.random((37, 53), np.float32), rng.random((37, 53, 3), np.float32)
    out = pipe(a, b, output="numpy")
    assert out.shape == (37, 53, 3) and np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


DEV = REPO / "splits" / "fusion_samples_dev.txt"


def test_mef_beats_gff_by_3db_on_degraded_dev_pairs(pipe):
    """Dev pairs were never used in training; degradations come from the eval protocol."""
    from mmaif.evaluate import eval_rows
    from mmaif.fusion import fuse_arrays
    from mmaif.metrics import psnr_gt
    from mmaif.synth import render

    rows = [r for r in eval_rows(need(SAMPLES), names_file=str(DEV), repeats=2)
            if r["task"] == "mef"]
    assert len(rows) == 6
    gains = []
    for row in rows:
        s = render(row)
        model = pipe(s["a"], s["b"], prompt=row["prompt"], output="numpy")
        gains.append(psnr_gt(model, s["gt"]) - psnr_gt(fuse_arrays(s["a"], s["b"], "gff"), s["gt"]))
    assert np.mean(gains) > 3.0, f"mean gain over GFF {np.mean(gains):.2f} dB"


def test_imitates_the_teacher_better_than_the_input_mean():
    """On clean dev pairs the model is closer to the teacher than its starting point (the mean
    of the inputs) in every task: it learned the fusion, not only the averaging."""
    from mmaif.evaluate import clean_fidelity

    rows = clean_fidelity(need(SAMPLES), str(DEV))
    for task in ("vif", "mef", "mff"):
        rs = [r for r in rows if r["task"] == task]
        gain = np.mean([r["model"] - r["mean"] for r in rs])
        assert gain > 1.0, f"{task}: {gain:.2f} dB over the mean of the inputs"


CARD_EVAL = ("mmaif eval --data ../shared/fusion-samples --pairs splits/fusion_samples_dev.txt "
             "--repeats 4 --methods gff,two-stage,mmaif-reg --out eval_dev")


@pytest.mark.slow
def test_card_numbers_regenerate_from_the_eval_command(cli, tmp_path):
    """Rerun the card's evaluation command; its per-task table must match the card."""
    import csv

    card = (DEFAULT_MODEL / "README.md").read_text()
    assert CARD_EVAL in card
    need(SAMPLES)
    args = CARD_EVAL.split()[2:]
    args[args.index("--out") + 1] = str(tmp_path / "ev")
    args[args.index("--data") + 1] = str(SAMPLES)
    args[args.index("--pairs") + 1] = str(REPO / "splits/fusion_samples_dev.txt")
    code, _, err = cli("eval", *args)
    assert code == 0, err
    with open(tmp_path / "ev/summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    table = {(m[1], m[2]): (int(m[3]), float(m[4]), float(m[5])) for m in re.finditer(
        r"^\| (vif|mef|mff) \| ([a-z-]+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|", card, re.M)}
    assert len(table) == len(rows) == 9
    for r in rows:
        n, psnr, ssim = table[(r["task"], r["method"])]
        assert n == int(r["n"])
        assert abs(psnr - float(r["PSNR_gt"])) <= 0.011
        assert abs(ssim - float(r["SSIM_gt"])) <= 0.0011
