from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from mmaif.data.degrade import OPS
from mmaif.data.images import read_image
from mmaif.synthesis.synth import SynthConfig, read_manifest, render, synthesize

from .conftest import SAMPLES, need, save, texture

ROW_KEYS = {"id", "task", "sources", "crop", "teacher", "ops", "prompt", "seed"}


def images(folder, ids):
    return {(k, i): read_image(folder / k / f"{i}.png").data for i in ids for k in ("a", "b", "gt")}


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mmaif", *map(str, args)], capture_output=True,
                          text=True, **kw)


def test_synth_writes_images_and_manifest(cli, src, tmp_path):
    code, _, err = cli("synth", "--task", "all", "--src", src, "--out", tmp_path / "o",
                       "--n", 12, "--seed", 1, "--progress", "none", "--keep-clean")
    assert code == 0, err
    rows = read_manifest(tmp_path / "o/manifest.jsonl")
    assert [r["id"] for r in rows] == [f"{i:06d}" for i in range(12)]
    assert Counter(r["task"] for r in rows) == {"vif": 4, "mef": 4, "mff": 4}
    for r in rows:
        assert set(r) >= ROW_KEYS and r["prompt"].endswith(".")
        for op in r["ops"]:
            assert set(op) == {"name", "target", "severity", "params", "seed"}
        a = read_image(tmp_path / "o/a" / f"{r['id']}.png").data
        gt = read_image(tmp_path / "o/gt" / f"{r['id']}.png").data
        assert a.shape[:2] == gt.shape[:2] == (r["crop"]["h"], r["crop"]["w"])
        assert (tmp_path / "o/clean_b" / f"{r['id']}.png").exists()
    assert r["teacher"] in ("gff", "mertens")


def test_replay_is_pixel_identical(src, tmp_path):
    cfg = SynthConfig(tasks=["vif", "mef", "mff"], sources=[str(src)], n=9, seed=3)
    rows = synthesize(cfg, tmp_path / "first", progress="none")
    assert run_cli("synth", "--replay", tmp_path / "first/manifest.jsonl", "--out",
                   tmp_path / "again", "--progress", "none").returncode == 0
    ids = [r["id"] for r in rows]
    first, again = images(tmp_path / "first", ids), images(tmp_path / "again", ids)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=str(key))
    assert read_manifest(tmp_path / "again/manifest.jsonl") == rows


def test_workers_do_not_change_results(src, tmp_path):
    cfg = dict(tasks=["vif", "mef", "mff"], sources=[str(src)], n=6, seed=4)
    r1 = synthesize(SynthConfig(**cfg), tmp_path / "w1", workers=1, progress="none")
    r2 = synthesize(SynthConfig(**cfg), tmp_path / "w2", workers=2, progress="none")
    assert r1 == r2
    ids = [r["id"] for r in r1]
    i1, i2 = images(tmp_path / "w1", ids), images(tmp_path / "w2", ids)
    assert all(np.array_equal(i1[k], i2[k]) for k in i1)


def test_render_matches_written_images(src, tmp_path):
    rows = synthesize(SynthConfig(tasks=["vif"], sources=[str(src)], n=2, seed=5),
                      tmp_path / "o", progress="none")
    out = render(rows[1])
    written = read_image(tmp_path / "o/b" / f"{rows[1]['id']}.png").data
    np.testing.assert_allclose(out["b"], written, atol=0.5 / 255 + 1e-6)


def test_killed_run_resumes_to_exactly_n(src, tmp_path):
    out, n = tmp_path / "o", 16
    args = [sys.executable, "-m", "mmaif", "synth", "--task", "all", "--src", str(src),
            "--out", str(out), "--n", str(n), "--seed", "2", "--progress", "lines"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait until 5 samples are committed, then kill hard
        if "(5/" in line:
            proc.kill()
            break
    proc.wait()
    proc.stderr.close()
    assert proc.returncode != 0
    partial = read_manifest(out / "manifest.jsonl", strict=False)
    assert 5 <= len(partial) < n
    with open(out / "manifest.jsonl", "a") as fh:  # also a half-written last line
        fh.write('{"id": "0000')
    assert subprocess.run(args, capture_output=True).returncode == 0
    rows = read_manifest(out / "manifest.jsonl")
    assert sorted(r["id"] for r in rows) == [f"{i:06d}" for i in range(n)]
    assert len({r["id"] for r in rows}) == n
    assert len(list((out / "gt").glob("*.png"))) == n
    assert not list(out.rglob("*.tmp"))
    fresh = synthesize(SynthConfig(tasks=["vif", "mef", "mff"], sources=[str(src)], n=n, seed=2),
                       tmp_path / "fresh", progress="none")
    assert rows == fresh


def test_rerun_with_another_config_is_refused(cli, src, tmp_path):
    assert cli("synth", "--src", src, "-o", tmp_path / "o", "--n", 3, "--progress", "none")[0] == 0
    code, _, err = cli("synth", "--src", src, "-o", tmp_path / "o", "--n", 3, "--seed", 9,
                       "--progress", "none")
    assert code == 2 and "another configuration" in err


@pytest.mark.parametrize("case", ["task", "operator", "empty", "unpaired", "unwritable"])
def test_bad_synth_input(cli, src, tmp_path, case):
    (tmp_path / "empty").mkdir()
    save(tmp_path / "unp/ir/x.png", texture(8, 8))
    save(tmp_path / "unp/vi/y.png", texture(8, 8))
    (tmp_path / "file").write_text("x")
    out = tmp_path / "out"
    args = {
        "task": ["synth", "--task", "fusion", "--src", src, "-o", out],
        "operator": ["degrade", src / "vif/ir/p0.png", "--op", "fog", "-o", tmp_path / "d.png"],
        "empty": ["synth", "--src", tmp_path / "empty", "-o", out],
        "unpaired": ["synth", "--task", "vif", "--src", tmp_path / "unp", "-o", out],
        "unwritable": ["synth", "--src", src, "-o", tmp_path / "file/sub"],
    }[case]
    code, _, err = cli(*args, "--n", 2) if args[0] == "synth" else cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and not (tmp_path / "d.png").exists()


def test_degrade_cli(cli, tmp_path):
    code, out, _ = cli("degrade", "--list")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) >= 12
    assert [ln.split()[0] for ln in lines] == list(OPS)
    img = save(tmp_path / "x.png", texture(30, 40, 3))
    code, _, err = cli("degrade", img, "--op", "haze", "--severity", "heavy", "-o",
                       tmp_path / "h.png", "--param", "beta=3.0")
    assert code == 0 and "beta=3" in err
    assert read_image(tmp_path / "h.png").size == (40, 30)


def test_contact_sheet(cli, src, tmp_path):
    code, _, err = cli("synth", "--src", src, "-o", tmp_path / "o", "--n", 4, "--progress",
                       "none", "--sheet", tmp_path / "sheet.jpg")
    assert code == 0, err
    assert read_image(tmp_path / "sheet.jpg").size[0] == 1100


@pytest.mark.slow
def test_synth_300_on_shared_samples_uses_every_operator(tmp_path):
    root = need(SAMPLES)
    r = run_cli("synth", "--task", "all", "--src", root, "--out", tmp_path / "x", "--n", 300,
                "--seed", 0, "--workers", 2, "--progress", "none", "--max-side", 320)
    assert r.returncode == 0, r.stderr
    rows = read_manifest(tmp_path / "x/manifest.jsonl")
    ops = Counter(o["name"] for row in rows for o in row["ops"])
    assert len(rows) == 300 and {row["task"] for row in rows} == {"vif", "mef", "mff"}
    assert set(ops) == set(OPS) and min(ops.values()) >= 5, ops
    assert json.loads((tmp_path / "x/synth_config.json").read_text())["n"] == 300


def test_synth_pairs_and_exclude_select_source_pairs(cli, src, tmp_path):
    (tmp_path / "dev.txt").write_text("# held out\nvif/p1\nmef/*\n")
    code, _, err = cli("synth", "--src", src, "--out", tmp_path / "s", "--n", "12",
                       "--task", "all", "--exclude", tmp_path / "dev.txt", "--progress", "none")
    assert code == 2 and "no MEF pairs" in err  # every MEF pair excluded
    code, _, err = cli("synth", "--src", src, "--out", tmp_path / "s", "--n", "12", "--task",
                       "vif", "--exclude", tmp_path / "dev.txt", "--progress", "none")
    assert code == 0, err
    used = {r["sources"]["pair"] for r in read_manifest(tmp_path / "s/manifest.jsonl")}
    assert used == {"vif/p0"}
    (tmp_path / "only.txt").write_text("p1\n")
    assert cli("synth", "--src", src, "--out", tmp_path / "t", "--n", "6", "--pairs",
               tmp_path / "only.txt", "--progress", "none")[0] == 0
    used = {r["sources"]["pair"] for r in read_manifest(tmp_path / "t/manifest.jsonl")}
    assert used == {"vif/p1", "mef/p1", "mff/p1"}
    code, _, err = cli("synth", "--src", src, "--out", tmp_path / "u", "--pairs",
                       tmp_path / "missing.txt")
    assert code == 2 and "no such pairs file" in err


def test_photo_stacks_are_pairs_of_the_right_tasks(cli, tmp_path):
    from mmaif.data.pairs import discover_pairs
    from mmaif.data.stacks import STACK_PHOTOS

    code, _, err = cli("stacks", "--out", tmp_path / "st", "--variants", "1")
    assert code == 0, err
    _, pairs = discover_pairs(tmp_path / "st")
    assert sorted({p.task for p in pairs}) == ["mef", "mff"]
    assert len(pairs) == 2 * len(STACK_PHOTOS)
    for p in pairs[:4]:
        a, b = read_image(p.a).data, read_image(p.b).data
        assert a.shape == b.shape
        if p.task == "mef":  # under is darker than over
            assert a.mean() < b.mean() - 0.1
        else:  # near and far differ where one of them is blurred
            assert np.abs(a - b).max() > 0.05
