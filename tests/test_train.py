from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmaif.model.components import Components
from mmaif.model.storage import latest_checkpoint
from mmaif.synthesis.datasets import SynthFolder
from mmaif.training.trainer import train

from .conftest import small, texture, weights


def read_checkpoint_state(run):
    import json

    return json.loads((latest_checkpoint(run) / "state.json").read_text())


@pytest.mark.slow
def test_overfit_regression(four, tmp_path):
    # the real tiny preset (no overrides); 120 steps gave 15x here
    summary = train(small(four, tmp_path / "r", max_steps=150, model={}), progress="none")
    assert summary["last"]["main"] < summary["first_loss"] / 10, summary


@pytest.mark.slow
def test_overfit_flow(four, tmp_path):
    # tiny preset (patch 1); ema 0 so the evaluated (EMA) weights are the trained ones
    # measured: fixed-(t, noise) loss 1.08 -> 0.08, sampler MSE to GT 1.08 -> 0.04
    # patch 1: at 64x64 the tiny preset's patch 2 leaves a 4x4 token grid, too coarse to
    # overfit velocities in 120 steps; this test checks the objective and sampler, not the patch
    cfg = small(four, tmp_path / "f", objective="flow", max_steps=120, model={"patch": 1},
                lr=2e-3, ema=0.0)
    ds = SynthFolder(four, channels=3)
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) * 2 - 1 for k in ("a", "b", "gt")}
    prompts = [ds[i]["prompt"] for i in range(4)]

    def evaluate(run):
        from mmaif.inference.pipeline import FusionPipeline

        pipe = FusionPipeline.from_pretrained(run)
        c: Components = pipe.c
        pooled = c.text.encode(prompts)[2]
        z0 = c.tok.encode(batch["gt"])
        g = torch.Generator().manual_seed(123)
        eps = torch.randn(z0.shape, generator=g)
        t = torch.full((4,), 0.5)
        with torch.no_grad():
            v = c.model(c.condition(batch["a"], batch["b"]), pooled, t,
                        (1 - 0.5) * z0 + 0.5 * eps)[0]
            fixed = torch.mean((v - (eps - z0)) ** 2).item()
            img = pipe.obj.sample(c.model, batch["a"], batch["b"], pooled, steps=8)
        return fixed, torch.mean((img - batch["gt"]) ** 2).item()

    start = train(small(four, tmp_path / "f0", objective="flow", max_steps=1, lr=1e-12,
                        ema=0.0, model={}), progress="none")
    before = evaluate(start["run"])
    train(cfg, progress="none")
    after = evaluate(tmp_path / "f")
    assert after[0] < before[0] / 3, (before, after)  # loss at fixed (t, noise)
    assert after[1] < before[1] / 4, (before, after)  # sampler error against the GT


def test_resume_is_exact(four, tmp_path):
    # 32-px patches of 64-px samples (positions change every epoch); batch 2 of 4 samples, so
    # stopping after 3 steps stops in the middle of epoch 1
    kw = dict(max_steps=6, objective="flow", crop=32, batch=2)
    train(small(four, tmp_path / "full", **kw), progress="none")
    part = small(four, tmp_path / "part", **kw)
    train(part, stop_after=3, progress="none")
    assert latest_checkpoint(tmp_path / "part").name == "step_0000003"
    assert read_checkpoint_state(tmp_path / "part")["position"] == {"epoch": 1, "batch": 1}
    train(small(four, tmp_path / "part", **kw), resume=True, progress="none")
    for name in ("model.safetensors", "ema.safetensors", "optim.safetensors"):
        a, b = weights(tmp_path / "full", name), weights(tmp_path / "part", name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_head_lr_moves_the_output_layer_faster_and_resumes_exactly(four, tmp_path):
    # AdamW's first step moves each weight by about lr (the sign of its gradient); at step 1
    # only the zero-initialised output layer has a gradient, so its step is lr * head_lr
    from mmaif.model.dit import FusionDiT
    from mmaif.training.trainer import param_groups

    from .conftest import tiny

    groups = param_groups(FusionDiT(tiny()), 5.0)
    assert [g.get("lr_mult", 1.0) for g in groups] == [1.0, 5.0]
    assert len(groups[1]["params"]) == 2  # the output layer's weight and bias
    kw = dict(max_steps=4, crop=32, batch=2, lr=1e-3, warmup=0, min_lr_ratio=1.0, ema=0.0)
    start = train(small(four, tmp_path / "s0", max_steps=1, lr=1e-12, ema=0.0), progress="none")
    w0 = weights(start["run"])
    for mult in (1.0, 5.0):
        one = train(small(four, tmp_path / f"one{mult}", **{**kw, "max_steps": 1},
                          head_lr=mult), progress="none")
        step = (weights(one["run"])["out.bias"] - w0["out.bias"]).abs().max().item()
        assert step == pytest.approx(1e-3 * mult, rel=0.05), (mult, step)
    # two groups resume exactly
    train(small(four, tmp_path / "full", **kw, head_lr=5.0), progress="none")
    train(small(four, tmp_path / "part", **kw, head_lr=5.0), stop_after=2, progress="none")
    train(small(four, tmp_path / "part", **kw, head_lr=5.0), resume=True, progress="none")
    for name in ("model.safetensors", "optim.safetensors"):
        a, b = weights(tmp_path / "full", name), weights(tmp_path / "part", name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_corrupt_checkpoint_is_an_error(cli, four, tmp_path):
    run = tmp_path / "c"
    train(small(four, run, max_steps=2), progress="none")
    ck = latest_checkpoint(run)
    w = ck / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-100])
    code, _, err = cli("train", "--out", run, "--resume", "--max-steps", 4, "--progress", "none")
    assert code == 2 and "truncated or corrupt" in err and len(err.strip().splitlines()) == 1
    assert latest_checkpoint(run) == ck  # nothing restarted or overwritten
    code, _, err = cli("train", "--out", tmp_path / "empty", "--resume", "--data", four)
    assert code == 2 and "no checkpoint" in err


@pytest.mark.slow
def test_ddp_two_processes_match_one(four, tmp_path):
    common = ["--data", four, "--max-steps", 3, "--batch", 4, "--crop", 32,
              "--balance-weight", 0, "--objective", "flow", "--progress", "none",
              "--warmup", 1, "--config", tmp_path / "c.yaml"]
    (tmp_path / "c.yaml").write_text("model:\n  preset: tiny\n  dim: 64\n  depth: 2\n"
                                     "  heads: 2\n  adaln_rank: 16\n")
    one = subprocess.run([sys.executable, "-m", "mmaif", "train", "--out", tmp_path / "one",
                          *map(str, common)], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "-m", "mmaif", "train", "--out",
                          tmp_path / "two", *map(str, common)], capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    assert any(not torch.equal(a[k], load_file(str(latest_checkpoint(tmp_path / "one")
                                                   / "ema.safetensors"))[k]) for k in a)


def test_train_contract_defaults_and_config(cli, four, tmp_path):
    code, _, err = cli("train", "--data", four, "--out", tmp_path / "d", "--max-steps", 2,
                       "--batch", 4, "--crop", 32, "--preset", "tiny", "--objective", "reg",
                       "--progress", "none")
    assert code == 0, err
    ck = latest_checkpoint(tmp_path / "d")
    assert ck.name == "step_0000002" and (tmp_path / "d/log.jsonl").exists()
    # one loader for a run, one of its checkpoints and a saved folder: the same EMA weights
    from mmaif.inference.pipeline import FusionPipeline
    from mmaif.model.storage import load_weights

    run, one = load_weights(tmp_path / "d"), load_weights(ck)
    FusionPipeline.from_pretrained(tmp_path / "d").save_pretrained(tmp_path / "saved")
    saved = load_weights(tmp_path / "saved")
    assert run.meta["training"]["crop"] == 32 and saved.meta["training"]["crop"] == 32
    assert run.model == one.model == saved.model
    for k, v in run.state.items():
        assert torch.equal(v, one.state[k]) and torch.equal(v, saved.state[k]), k
    assert not all(torch.equal(v, load_weights(ck, use_ema=False).state[k])
                   for k, v in run.state.items())
    code, _, err = cli("train", "--out", tmp_path / "x", "--max-steps", 1)
    assert code == 2 and "--data" in err
    (tmp_path / "bad.yaml").write_text("lr: 0.1\nwarp: 3\n")
    code, _, err = cli("train", "--config", tmp_path / "bad.yaml", "--data", four)
    assert code == 2 and "unknown key" in err


def test_pipeline_round_trip_and_inputs(four, tmp_path):
    from PIL import Image

    from mmaif.inference.pipeline import FusionPipeline

    train(small(four, tmp_path / "r", max_steps=2), progress="none")
    pipe = FusionPipeline.from_pretrained(tmp_path / "r")
    pipe.save_pretrained(tmp_path / "saved")
    again = FusionPipeline.from_pretrained(tmp_path / "saved")
    a, b = texture(37, 53, 0, 1), texture(37, 53, 3, 2)
    out1 = pipe(a, b, task="vif", output="numpy")
    out2 = again(Image.fromarray((a * 255).astype(np.uint8)),
                 torch.from_numpy(b.transpose(2, 0, 1)), task="vif", output="numpy")
    assert out1.shape == (37, 53, 3)
    assert np.abs(out1 - out2).max() < 0.02  # uint8 input rounding only
    gray = pipe(a, a, prompt="Fuse them.")
    assert gray.mode == "L" and gray.size == (53, 37)


def _pattern(h, w):
    yy, xx = np.mgrid[:h, :w] / 100.0
    img = 0.5 + 0.25 * np.sin(xx * 3 + yy) * np.cos(yy * 2)
    return np.stack([img, np.roll(img, 7, 1), img[::-1]], -1).astype(np.float32)


@pytest.mark.slow
def test_tiled_inference_has_no_seams(four, tmp_path):
    from mmaif.inference.pipeline import FusionPipeline

    train(small(four, tmp_path / "r", max_steps=2), progress="none")
    pipe = FusionPipeline.from_pretrained(tmp_path / "r")
    with torch.no_grad():  # a non-trivial network: perturb the zero-initialised layers
        g = torch.Generator().manual_seed(0)
        for p in pipe.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    h, w = 2000, 3000
    gt = _pattern(h, w)
    a = gt.mean(-1) * 0.8
    b = np.clip(gt * 1.3, 0, 1)
    out = pipe(a, b, prompt="Fuse them.", output="numpy", tile=512, overlap=64)
    assert out.shape == (h, w, 3)
    err = np.abs(out - gt).mean(-1)
    stride = 512 - 64
    band = np.zeros((h, w), bool)
    for k in range(1, 10):
        c = k * stride + 32  # centre of each blend region
        if c < w:
            band[:, max(0, c - 40):c + 40] = True
        if c < h:
            band[max(0, c - 40):c + 40] = True
    assert err[band].mean() <= err[~band].mean() * 1.15
    jump = np.abs(np.diff(out, axis=1)).mean(-1)
    seam_cols = [k * stride + 32 for k in range(1, 6)]
    assert jump[:, seam_cols].mean() <= jump.mean() * 1.5


@pytest.mark.slow
def test_end_to_end_cli(tmp_path):
    from .conftest import SAMPLES, need

    root = need(SAMPLES)

    def run(*args):
        r = subprocess.run([sys.executable, "-m", "mmaif", *map(str, args)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]

    run("synth", "--src", root, "--out", tmp_path / "data", "--n", 32, "--max-side", 256,
        "--workers", 2, "--progress", "none")
    run("train", "--data", tmp_path / "data", "--out", tmp_path / "run", "--max-steps", 50,
        "--preset", "tiny", "--batch", 4, "--crop", 64, "--progress", "none")
    a, b = root / "vif/ir/vifb_labMan.png", root / "vif/vi/vifb_labMan.png"
    run("fuse", "--model", tmp_path / "run", a, b, "-o", tmp_path / "fused.png")
    from mmaif.data.images import read_image

    out = read_image(tmp_path / "fused.png")
    assert out.size == (640, 480) and out.data.ndim == 3  # visible's colour kept


def test_shipped_train_configs_load():
    from pathlib import Path

    from mmaif.training.config import load_train_config

    configs = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))
    assert len(configs) > 10
    for path in configs:  # every training config in the repository loads
        cfg = load_train_config(path)
        assert cfg.model["preset"] in ("tiny", "base") and cfg.max_steps > 0, path
    arm = load_train_config(Path(__file__).parents[1] / "configs/exp/gates/fixes_teacher.yaml")
    assert arm.out == "runs/arm_fixes_teacher" and arm.max_steps == 600  # base.yaml's
    assert arm.model["teacher_gate"] and arm.model["evidence"]           # merged model keys


def test_config_extends_a_base_file(tmp_path):
    from mmaif.errors import InputError
    from mmaif.training.config import load_train_config

    (tmp_path / "base.yaml").write_text("lr: 0.001\nseed: 4\nmodel:\n  preset: tiny\n"
                                        "  moe: false\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/arm.yaml").write_text("extends: ../base.yaml\nseed: 5\nmodel:\n  depth: 2\n")
    cfg = load_train_config(tmp_path / "sub/arm.yaml")
    assert (cfg.lr, cfg.seed) == (0.001, 5)
    assert cfg.model == {"preset": "tiny", "moe": False, "depth": 2}
    (tmp_path / "base.yaml").write_text("extends: sub/arm.yaml\n")
    with pytest.raises(InputError, match="cycle"):
        load_train_config(tmp_path / "sub/arm.yaml")
    (tmp_path / "base.yaml").write_text("extends: [a, b]\n")
    with pytest.raises(InputError, match="one YAML file"):
        load_train_config(tmp_path / "sub/arm.yaml")


def test_flow_pipeline_batches_and_refine(four, tmp_path):
    from mmaif.inference.pipeline import FusionPipeline

    train(small(four, tmp_path / "f", objective="flow", max_steps=2), progress="none")
    pipe = FusionPipeline.from_pretrained(tmp_path / "f")
    a, b = texture(24, 40, 0, 1), texture(24, 40, 3, 2)
    outs = pipe([a, a], [b, b], prompt=["Fuse them.", "Denoise and fuse them."], steps=2,
                output="numpy")
    assert len(outs) == 2 and outs[0].shape == (24, 40, 3)
    heun = pipe(a, b, steps=2, sampler="heun", output="numpy")
    assert np.isfinite(heun).all()
    start = texture(24, 40, 3, 9)
    near = pipe(a, b, steps=4, refine=start, t0=0.05, output="numpy")
    far = pipe(a, b, steps=4, refine=start, t0=1.0, output="numpy")
    # starting close to t = 0 keeps the result close to the given image
    assert np.abs(near - start).mean() < np.abs(far - start).mean()


def test_every_train_setting_is_a_flag(cli, capsys, monkeypatch):
    """Each TrainConfig field has a flag in `mmaif train --help`, and flags reach the config
    (model overrides as KEY=VALUE, booleans both ways, --preset into model)."""
    from dataclasses import fields

    import mmaif.training.trainer as trainer
    from mmaif.training.config import TrainConfig

    with pytest.raises(SystemExit):
        cli("train", "--help")
    text = capsys.readouterr().out
    missing = [f.name for f in fields(TrainConfig) if "--" + f.name.replace("_", "-") not in text]
    assert not missing

    seen = {}

    def fake_train(cfg, **kw):
        seen["cfg"], seen["given"] = cfg, kw["given"]
        return {"run": cfg.out, "step": 0, "first_loss": None, "last": {}}

    monkeypatch.setattr(trainer, "train", fake_train)
    code, _, err = cli("train", "--data", "d1", "--data", "d2", "--out", "r", "--preset", "small",
                       "--model", "depth=3", "--model", "evidence=[laplacian, noise]",
                       "--no-cache", "--compile", "--schedule-steps", 9, "--t-mean", 0.5,
                       "--crop", 96, "--init-from", "w")
    assert code == 0, err
    cfg = seen["cfg"]
    assert cfg.data == ["d1", "d2"] and cfg.out == "r" and cfg.crop == 96
    assert cfg.model == {"preset": "small", "depth": 3, "evidence": ["laplacian", "noise"]}
    assert cfg.cache is False and cfg.compile is True and cfg.schedule_steps == 9
    assert cfg.t_mean == 0.5 and cfg.init_from == "w" and cfg.max_steps == 2000
    assert {"data", "out", "model", "cache", "compile", "crop"} <= seen["given"]
    assert "max_steps" not in seen["given"]


def test_saved_runs_with_old_keys_still_resume():
    from mmaif.errors import InputError
    from mmaif.training.config import TrainConfig

    old = {"data": "d", "patch": 192, "preset": "tiny", "model": {"fix_gates": True}}
    cfg = TrainConfig.from_saved(old)
    assert cfg.crop == 192 and cfg.model == {"preset": "tiny", "fix_gates": True}
    with pytest.raises(InputError, match="crop"):
        TrainConfig.from_dict(old)
