from __future__ import annotations

import csv

import pytest

from mmaif.train import train

from .test_synth import src  # noqa: F401  (module fixture: clean pairs of every task)
from .test_train import four, small  # noqa: F401  (module fixture: 4 synthesized samples)


def test_eval_classical_and_model(cli, src, four, tmp_path):  # noqa: F811
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


def test_eval_repeats_draw_different_degradations(cli, src, tmp_path):  # noqa: F811
    (tmp_path / "names.txt").write_text("vif/p0\n")
    code, _, err = cli("eval", "--data", src, "--out", tmp_path / "ev", "--methods", "gff",
                       "--pairs", tmp_path / "names.txt", "--repeats", "3")
    assert code == 0, err
    with open(tmp_path / "ev/results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["pair"] for r in rows] == ["vif_p0_0", "vif_p0_1", "vif_p0_2"]
    assert len({r["degradations"] for r in rows}) > 1
    assert (tmp_path / "ev/summary_degradations.csv").is_file()


def test_eval_errors(cli, src, four, tmp_path):  # noqa: F811
    train(small(four, tmp_path / "run", max_steps=1), progress="none")
    code, _, err = cli("eval", "--data", src, "--out", tmp_path / "e", "--methods", "mmaif-flow",
                       "--model", tmp_path / "run")
    assert code == 2 and "no flow weights" in err
    code, _, err = cli("eval", "--data", src, "--out", tmp_path / "e", "--repeats", "0")
    assert code == 2 and "--repeats" in err
    code, _, err = cli("eval", "--data", src, "--out", tmp_path / "e", "--methods", "magic")
    assert code == 2 and "unknown method" in err
