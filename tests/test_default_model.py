"""The trained default model shipped inside the package: present, described by a card whose
numbers regenerate, guided by its prompt, and closer to its teacher than its starting point."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest

from mmaif.data.images import read_yaml_mapping
from mmaif.inference.pipeline import DEFAULT_MODEL, FusionPipeline

from .conftest import REPO, SAMPLES, need


@pytest.fixture(scope="module")
def pipe():
    return FusionPipeline.from_pretrained()


def test_shipped_files_card_and_config(pipe):
    files = sorted(p.name for p in DEFAULT_MODEL.iterdir())
    assert files == ["README.md", "config.json", "detector", "model.safetensors",
                     "prompt_embeddings.safetensors"]
    assert pipe.detector is not None  # detector/: what `mmaif detect` and --prompt auto use
    meta = json.loads((DEFAULT_MODEL / "config.json").read_text())
    assert meta["pipeline"] == {"tokenizer": "pixel", "text": "minilm"}
    assert pipe.objective == "reg" and not meta["model"]["flow"]
    # scripts/train_default.sh's last stage: stage 4's weights averaged with the last run's
    average = meta["training"]["average"]
    assert average["first"] == "src/mmaif/weights/default" and 0 < average["alpha"] < 1
    run, recipe = average["second_training"], read_yaml_mapping(
        REPO / "configs/recipes/default/5_long.yaml")
    assert average["second"] == recipe["out"]
    for key in ("seed", "init_from", "prompt_dropout", "distill_weight", "max_steps", "data",
                "full_candidates"):
        assert run[key] == recipe[key], key
    assert run["model"]["preset"] == "tiny"
    assert pipe.model.cfg.patch == 2 and pipe.model.cfg.head == "fullres"
    assert list(pipe.model.cfg.evidence) == recipe["model"]["evidence"]
    card = (DEFAULT_MODEL / "README.md").read_text()
    digest = hashlib.sha256((DEFAULT_MODEL / "model.safetensors").read_bytes()).hexdigest()
    assert digest in card  # the card describes these very weights
    for must in ("scripts/train_default.sh", "mmaif eval", "mmaif bench", "LLVIP", "Limits"):
        assert must in card
    # the package ships the weights (pyproject package data)
    assert "weights/default/*" in (REPO / "pyproject.toml").read_text()
    assert "weights/default/detector/*" in (REPO / "pyproject.toml").read_text()


def test_shipped_prompt_encodings_match_the_encoder():
    """The task prompts' encodings shipped beside the weights are what the text encoder
    computes (so answering from them changes nothing), and a fusion without a prompt does not
    load the encoder."""
    import torch

    from mmaif.inference.pipeline import TASK_PROMPTS
    from mmaif.model.text import make_text_encoder

    fresh = FusionPipeline.from_pretrained()
    rng = np.random.default_rng(1)
    fresh(rng.random((24, 32), np.float32), rng.random((24, 32, 3), np.float32), task="mef",
          output="numpy")
    assert fresh.c.text.encoder is None
    enc = make_text_encoder("minilm")
    for prompt in [*TASK_PROMPTS.values(), ""]:
        want, got = enc.encode([prompt]), fresh.c.text.encode([prompt])
        assert torch.allclose(want[2], got[2], atol=1e-5), prompt
        assert torch.allclose(want[0], got[0], atol=1e-5), prompt


def test_no_argument_loads_the_default(pipe):
    rng = np.random.default_rng(0)
    a, b = rng.random((37, 53), np.float32), rng.random((37, 53, 3), np.float32)
    out = pipe(a, b, output="numpy")
    assert out.shape == (37, 53, 3) and np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


DEV = REPO / "splits" / "fusion_samples_dev.txt"


@pytest.mark.slow
def test_the_prompt_changes_the_output(pipe):
    """Text guidance is not ignored: on a degraded dev sample the four prompt modes of
    `mmaif eval` give four different fusions, and the given prompt (naming the true
    degradations) moves the output more than rephrasing noise would."""
    from mmaif.evaluation.evaluate import eval_rows, mismatched_prompts
    from mmaif.inference.pipeline import default_prompt
    from mmaif.synthesis.synth import render

    rows = eval_rows(need(SAMPLES), names_file=str(DEV), repeats=1)
    i = next(k for k, r in enumerate(rows) if r["task"] == "mff")
    row, s = rows[i], render(rows[i])
    prompts = [row["prompt"], default_prompt("mff"), "", mismatched_prompts(rows)[i]]
    assert len(set(prompts)) == 4
    outs = [pipe(s["a"], s["b"], prompt=p, task="mff", output="numpy") for p in prompts]
    for j in range(4):
        for k in range(j + 1, 4):
            diff = float(np.abs(outs[j] - outs[k]).mean())
            assert diff > 2e-3, f"prompts {prompts[j]!r} and {prompts[k]!r}: mean |diff| {diff}"


@pytest.mark.slow
def test_imitates_the_teacher_better_than_the_input_mean():
    """On clean dev pairs the model is closer to the teacher than its starting point (the mean
    of the inputs) in every task: it learned the fusion, not only the averaging."""
    from mmaif.evaluation.fidelity import clean_fidelity

    rows = clean_fidelity(need(SAMPLES), str(DEV))
    for task in ("vif", "mef", "mff"):
        rs = [r for r in rows if r["task"] == task]
        gain = np.mean([r["model"] - r["mean"] for r in rs])
        assert gain > 1.0, f"{task}: {gain:.2f} dB over the mean of the inputs"


CARD_EVAL = ("mmaif eval --data ../shared/fusion-samples --pairs splits/fusion_samples_dev.txt "
             "--repeats 4 --methods teacher,two-stage,mmaif-reg --prompt-modes "
             "given,task,empty,mismatched --out eval_dev")


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
    table = {(m[1], m[2]): [float(v) for v in m.groups()[2:]] for m in re.finditer(
        r"^\| (vif|mef|mff) \| ([a-z@-]+) \| (\d+) \| ([\d.]+) \| \[([\d.]+), ([\d.]+)\] "
        r"\| [^|]+ \| ([\d.]+) \|", card, re.M)}
    assert len(table) == len(rows) == 18
    for r in rows:
        n, psnr, lo, hi, ssim = table[(r["task"], r["method"])]
        assert n == int(r["n"])
        for card_value, key in ((psnr, "PSNR_gt"), (lo, "PSNR_lo"), (hi, "PSNR_hi")):
            assert abs(card_value - float(r[key])) <= 0.011, key
        assert abs(ssim - float(r["SSIM_gt"])) <= 0.0011
