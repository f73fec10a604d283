from __future__ import annotations

import csv

import numpy as np
import pytest

from mmaif.data.images import read_image
from mmaif.evaluation.evaluate import bootstrap_ci, eval_rows, mismatched_prompts
from mmaif.training.trainer import train

from .conftest import small


def test_eval_classical_and_model(cli, src, four, tmp_path):
    train(small(four, tmp_path / "run", max_steps=2), progress="none")
    (tmp_path / "names.txt").write_text("# two pairs\np0\n")
    code, out, err = cli("eval", "--data", src, "--out", tmp_path / "ev", "--methods",
                         "gff,two-stage,mmaif-reg", "--model", tmp_path / "run", "--pairs",
                         tmp_path / "names.txt")
    assert code == 0, err
    with open(tmp_path / "ev/results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * 3  # p0 of each task x 3 methods
    assert {r["method"] for r in rows} == {"gff", "two-stage", "mmaif-reg"}
    assert all(float(r["PSNR_gt"]) > 5 for r in rows)
    page = (tmp_path / "ev/index.html").read_text()
    assert "per degradation type" in page and "images/" in page
    with open(tmp_path / "ev/summary.csv", newline="") as fh:
        summary = list(csv.DictReader(fh))
    # the output contract: one row per (task, method), these columns first
    assert list(summary[0])[:5] == ["task", "method", "n", "PSNR_gt", "SSIM_gt"]
    assert [(r["task"], r["method"]) for r in summary] == [
        (t, m) for t in ("vif", "mef", "mff") for m in ("gff", "two-stage", "mmaif-reg")]
    gff_vif = [float(r["PSNR_gt"]) for r in rows if r["method"] == "gff" and r["task"] == "vif"]
    assert float(summary[0]["PSNR_gt"]) == pytest.approx(sum(gff_vif) / len(gff_vif), rel=1e-4)
    assert "mmaif-reg" in out and "PSNR_gt" in out


def test_eval_repeats_draw_different_degradations(cli, src, tmp_path):
    (tmp_path / "names.txt").write_text("vif/p0\n")
    code, _, err = cli("eval", "--data", src, "--out", tmp_path / "ev", "--methods", "gff",
                       "--pairs", tmp_path / "names.txt", "--repeats", "3")
    assert code == 0, err
    with open(tmp_path / "ev/results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["pair"] for r in rows] == ["vif_p0_0", "vif_p0_1", "vif_p0_2"]
    assert len({r["degradations"] for r in rows}) > 1
    assert (tmp_path / "ev/summary_degradations.csv").is_file()


def test_eval_errors(cli, src, four, tmp_path):
    train(small(four, tmp_path / "run", max_steps=1), progress="none")
    code, _, err = cli("eval", "--data", src, "--out", tmp_path / "e", "--methods", "mmaif-flow",
                       "--model", tmp_path / "run")
    assert code == 2 and "no flow weights" in err
    code, _, err = cli("eval", "--data", src, "--out", tmp_path / "e", "--repeats", "0")
    assert code == 2 and "--repeats" in err
    code, _, err = cli("eval", "--data", src, "--out", tmp_path / "e", "--methods", "magic")
    assert code == 2 and "unknown method" in err


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_mef_teacher_is_mertens_of_the_degraded_inputs(cli, src, tmp_path):
    """The teacher row of an MEF sample is exactly `mmaif fuse --method mertens` of the saved
    degraded inputs (and not GFF, the VIF/MFF teacher)."""
    (tmp_path / "names.txt").write_text("mef/p0\nvif/p1\n")
    code, out, err = cli("eval", "--data", src, "--out", tmp_path / "ev", "--methods",
                         "teacher,gff,two-stage", "--pairs", tmp_path / "names.txt")
    assert code == 0, err
    im = tmp_path / "ev/images"
    for name, method in (("mef_p0", "mertens"), ("vif_p1", "gff")):
        code, _, err = cli("fuse", im / f"{name}_a.png", im / f"{name}_b.png", "--method",
                           method, "-o", tmp_path / f"{name}.png")
        assert code == 0, err
        assert f"method {method}" in err
        teacher = read_image(im / f"{name}_teacher.png").data
        np.testing.assert_array_equal(read_image(tmp_path / f"{name}.png").data, teacher)
    gff = read_image(im / "mef_p0_gff.png").data
    assert np.abs(gff - read_image(im / "mef_p0_teacher.png").data).mean() > 0.01
    summary = read_csv(tmp_path / "ev/summary.csv")
    assert {r["vs"] for r in summary} == {"teacher"}  # deltas are against the teacher
    assert all(float(r["dPSNR"]) == 0 for r in summary if r["method"] == "teacher")
    assert "Δ vs teacher" in out and "per degradation type" in out


def test_every_prompt_mode_gives_its_own_rows(cli, src, four, tmp_path):
    train(small(four, tmp_path / "run", max_steps=1), progress="none")
    (tmp_path / "names.txt").write_text("vif/p0\nvif/p1\nmff/p0\n")
    code, out, err = cli("eval", "--data", src, "--out", tmp_path / "ev", "--methods",
                         "teacher,mmaif-reg", "--model", tmp_path / "run", "--pairs",
                         tmp_path / "names.txt", "--prompt-modes", "given,task,empty,mismatched")
    assert code == 0, err
    want = ["teacher", "mmaif-reg", "mmaif-reg@task", "mmaif-reg@empty", "mmaif-reg@mismatched"]
    rows = read_csv(tmp_path / "ev/results.csv")
    assert [r["method"] for r in rows[:5]] == want and len(rows) == 3 * 5
    for f in ("summary.csv", "summary_degradations.csv"):
        assert {r["method"] for r in read_csv(tmp_path / "ev" / f)} == set(want)
    page = (tmp_path / "ev/index.html").read_text()
    for m in want[1:]:
        assert m in page and m in out
    by = {(r["pair"], r["method"]): r["prompt"] for r in rows}
    for pair in ("vif_p0", "vif_p1", "mff_p0"):
        assert by[(pair, "mmaif-reg@empty")] == ""
        assert by[(pair, "mmaif-reg@task")].startswith("Fuse")
        assert by[(pair, "mmaif-reg@mismatched")] not in ("", by[(pair, "mmaif-reg")])
    assert (tmp_path / "ev/images/vif_p0_mmaif-reg_mismatched.png").is_file()
    code, _, err = cli("eval", "--data", src, "--out", tmp_path / "e2", "--prompt-modes", "loud")
    assert code == 2 and "--prompt-modes" in err


def test_mismatched_prompts_share_no_degradation(src):
    rows = eval_rows(src, repeats=6)
    prompts = mismatched_prompts(rows)
    assert prompts == mismatched_prompts(rows)  # deterministic
    by_prompt = {r["prompt"]: r for r in rows}
    borrowed = 0
    for row, p in zip(rows, prompts, strict=True):
        assert p != row["prompt"]
        if p in by_prompt:  # taken from another sample: same task, disjoint degradation types
            other = by_prompt[p]
            borrowed += 1
            assert other["task"] == row["task"]
            assert not {o["name"] for o in other["ops"]} & {o["name"] for o in row["ops"]}
    assert borrowed >= len(rows) // 2


def test_bootstrap_interval_resamples_whole_pairs():
    rng = np.random.default_rng(0)
    vals = rng.normal(20, 2, 8)
    lo, hi = bootstrap_ci(vals, range(8))
    assert lo < vals.mean() < hi and hi - lo < 4 * 2 / np.sqrt(8)
    # four identical repeats of each pair carry no new information: the same interval
    assert bootstrap_ci(np.repeat(vals, 4), np.repeat(np.arange(8), 4)) == (lo, hi)
    # treated as independent samples the interval would (wrongly) shrink by about half
    naive = bootstrap_ci(np.repeat(vals, 4), range(32))
    assert naive[1] - naive[0] < 0.7 * (hi - lo)


def test_auto_prompt_mode_scores_the_detector(cli, src, four, tmp_path):
    from mmaif.inference.pipeline import FusionPipeline
    from mmaif.model.detector import load_detector
    from mmaif.training.detector import DetectorTrainConfig, train_detector

    train(small(four, tmp_path / "run", max_steps=1), progress="none")
    train_detector(DetectorTrainConfig(data=[str(four)], out=str(tmp_path / "det"), epochs=2,
                                       batch=4, val_share=0.0), progress="none")
    pipe = FusionPipeline.from_pretrained(tmp_path / "run")
    (tmp_path / "names.txt").write_text("vif/p0\nmff/p0\n")
    args = ["eval", "--data", src, "--methods", "mmaif-reg", "--pairs", tmp_path / "names.txt",
            "--prompt-modes", "given,auto"]
    code, _, err = cli(*args, "--out", tmp_path / "e0", "--model", tmp_path / "run")
    assert code == 2 and "no degradation detector" in err and not (tmp_path / "e0").exists()
    pipe.detector = load_detector(tmp_path / "det")
    pipe.save_pretrained(tmp_path / "p")
    code, _, err = cli(*args, "--out", tmp_path / "ev", "--model", tmp_path / "p")
    assert code == 0, err
    rows = read_csv(tmp_path / "ev/results.csv")
    assert [r["method"] for r in rows] == ["mmaif-reg", "mmaif-reg@auto"] * 2
    for r in rows[1::2]:  # the detector's sentence, the same as the pipeline composes
        a = read_image(tmp_path / f"ev/images/{r['pair']}_a.png").data
        b = read_image(tmp_path / f"ev/images/{r['pair']}_b.png").data
        assert r["prompt"] == pipe.detect(a, b, r["task"])[2]
    det = {r["type"]: r for r in read_csv(tmp_path / "ev/detections.csv")}
    assert len(det) == 13 and "micro" in det
    for r in det.values():  # every (input, type) of the 2 samples is counted once
        assert sum(int(r[k]) for k in ("tp", "fp", "fn", "tn")) == (2 * 2 * 12 if
                                                                     r["type"] == "micro" else 4)
    assert "Degradation detector" in (tmp_path / "ev/index.html").read_text()
