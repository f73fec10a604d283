"""The GPU and scale-out path, checked on the CPU: every tensor on the requested device,
self-contained pipeline folders, gradients of the auxiliary losses, resume semantics (incl. a
real SIGKILL), and flags that do not apply."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from itertools import chain

import numpy as np
import pytest
import torch

from mmaif.errors import UsageError
from mmaif.inference.pipeline import FusionPipeline
from mmaif.model.components import Components
from mmaif.model.dit import DiTConfig, FusionDiT
from mmaif.model.objectives import Flow
from mmaif.model.storage import latest_checkpoint
from mmaif.training.config import TrainConfig, lr_at
from mmaif.training.trainer import train

from .conftest import perturb, save, small, texture, tiny_cosmos, tiny_vae, weights


def _tensors(module):
    return list(chain(module.parameters(), module.buffers()))


def test_pipeline_puts_every_tensor_on_the_device():
    cfg = DiTConfig(dim=32, depth=1, heads=2, adaln_rank=8, patch=2, evidence=("laplacian",),
                    stem=4)
    built = FusionPipeline(FusionDiT(cfg), device="meta")  # built for a device
    moved = FusionPipeline(FusionDiT(cfg), device="cpu").to("meta")  # moved afterwards
    for pipe in (built, moved):
        assert pipe.c.text.encoder is None  # loaded on the first prompt, on the pipeline's device
        parts = {"model": pipe.model, "tokenizer": pipe.c.tok, "text": pipe.c.text.load().model}
        for name, module in parts.items():
            ts = _tensors(module)
            assert ts and all(t.device.type == "meta" for t in ts), name
        assert pipe.c.text.device.type == "meta" and pipe.device.type == "meta"


def test_moved_pipeline_folder_gives_identical_output(tmp_path):
    """A saved pipeline carries its tokenizer folder and latent statistics: moved elsewhere
    (and with the original tokenizer folder gone) it fuses identically."""
    tiny_vae(tmp_path / "vae")
    (tmp_path / "vae" / "latent_stats.json").write_text(json.dumps(
        {"mean": [0.1, -0.2, 0.3, 0.0], "std": [2.0, 0.5, 1.5, 1.0]}))
    cfg = DiTConfig(latent_channels=4, dim=32, depth=1, heads=2, adaln_rank=8, head="latent")
    pipe = FusionPipeline(perturb(FusionDiT(cfg)), tokenizer=f"kl:{tmp_path / 'vae'}",
                          device="cpu")
    assert pipe.c.tok.std.flatten().tolist() == [2.0, 0.5, 1.5, 1.0]
    pipe.save_pretrained(tmp_path / "saved")
    meta = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert meta["pipeline"]["tokenizer"] == "kl:tokenizer" and "objective" not in meta["pipeline"]
    assert meta["pipeline"]["latent_stats"]["mean"] == pytest.approx([0.1, -0.2, 0.3, 0.0])
    shutil.move(tmp_path / "saved", tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "vae")
    again = FusionPipeline.from_pretrained(tmp_path / "elsewhere", device="cpu")
    a, b = texture(32, 40, 0, 1), texture(32, 40, 3, 2)
    assert np.array_equal(pipe(a, b, output="numpy"), again(a, b, output="numpy"))
    assert again.objective == "reg"


def test_objective_has_one_source_of_truth():
    with pytest.raises(Exception, match="disagrees"):
        FusionPipeline(FusionDiT(DiTConfig(dim=32, depth=1, heads=2, adaln_rank=8)),
                       objective="flow", device="cpu")


def test_flow_fusion_loss_has_a_gradient(four):
    """The fusion term reaches the weights through the predicted clean sample."""
    from mmaif.model.text import make_text_encoder
    from mmaif.model.tokenizers import make_tokenizer
    from mmaif.synthesis.datasets import SynthFolder
    from mmaif.training.data import collate

    torch.manual_seed(0)
    tok, text = make_tokenizer("pixel"), make_text_encoder("minilm")
    cfg = DiTConfig(latent_channels=tok.z, dim=32, depth=1, heads=2, adaln_rank=8, flow=True,
                    head="latent", text_dim=text.dim)
    model = perturb(FusionDiT(cfg))
    objective = Flow(Components(model, tok, text))
    batch = collate([SynthFolder(four, crop=32)[i] for i in range(2)], "cpu")
    pooled = text.encode(batch["prompt"])[2]

    def grads(fusion_weight):
        model.zero_grad()
        tc = TrainConfig(data="x", objective="flow", fusion_weight=fusion_weight,
                         balance_weight=0.0)
        loss = objective.loss(model, batch, pooled, [0, 1], 0, tc)[0]
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    assert not torch.allclose(grads(0.0), grads(1.0))


def test_fusion_loss_with_a_decoder_without_gradients_is_refused(four, tmp_path):
    folder = tmp_path / "cosmos"
    tiny_cosmos(folder)
    with pytest.raises(UsageError, match="fusion_weight"):
        train(small(four, tmp_path / "r", max_steps=1, tokenizer=f"cosmos:{folder}",
                    fusion_weight=0.1, model=dict(dim=32, depth=1, heads=2)), progress="none")


def test_resume_keeps_the_schedule_and_refuses_other_changes(cli, four, tmp_path):
    run = tmp_path / "r"
    train(small(four, run, max_steps=4, warmup=1), progress="none")
    state = json.loads((latest_checkpoint(run) / "state.json").read_text())
    assert state["train"]["schedule_steps"] == 4
    code, _, err = cli("train", "--out", run, "--resume", "--max-steps", 6, "--progress", "none")
    assert code == 0, err
    assert "max_steps 4 -> 6" in err and "horizon of 4 steps" in err
    cfg = TrainConfig.from_dict(json.loads((latest_checkpoint(run) / "state.json").read_text())
                                ["train"])
    assert cfg.max_steps == 6 and cfg.schedule_steps == 4
    assert lr_at(5, cfg) == pytest.approx(cfg.lr * cfg.min_lr_ratio)  # no jump back up
    code, _, err = cli("train", "--out", run, "--resume", "--max-steps", 8, "--lr", 0.1)
    assert code == 2 and "lr cannot change" in err and len(err.strip().splitlines()) == 1
    assert latest_checkpoint(run).name == "step_0000006"


@pytest.mark.slow
def test_sigkill_mid_run_resumes_to_identical_weights(four, tmp_path):
    args = ["--data", four, "--max-steps", 8, "--batch", 2, "--crop", 32, "--save-every", 2,
            "--keep-last", 10, "--progress", "none", "--preset", "tiny"]
    model = {"model": {"dim": 32, "depth": 1, "heads": 2, "adaln_rank": 8}}
    (tmp_path / "m.yaml").write_text(json.dumps(model))  # YAML is a superset of JSON

    def cmd(out, *extra):
        return [sys.executable, "-m", "mmaif", "train", "--config", str(tmp_path / "m.yaml"),
                "--out", str(out), *map(str, args), *extra]

    subprocess.run(cmd(tmp_path / "full"), check=True, capture_output=True)
    # a checkpointed step drawn from a fixed seed (the same in every run of the test), then
    # killed wherever the run is after that checkpoint
    stop_at = int(np.random.default_rng(25).choice([2, 4, 6]))
    proc = subprocess.Popen(cmd(tmp_path / "part"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    target = tmp_path / "part" / "checkpoints" / f"step_{stop_at:07d}" / "state.json"
    deadline = time.monotonic() + 300
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a file the trainer writes atomically, not a fixed wait
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL or latest_checkpoint(tmp_path / "part").name \
        == "step_0000008", "the run finished before it could be killed"
    out = subprocess.run(cmd(tmp_path / "part", "--resume"), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("model.safetensors", "ema.safetensors", "optim.safetensors"):
        a, b = weights(tmp_path / "full", name), weights(tmp_path / "part", name)
        assert all(torch.equal(a[k], b[k]) for k in a), (name, stop_at)


def test_flags_that_do_not_apply(cli, tmp_path):
    a = save(tmp_path / "ir.png", texture(24, 32, 0, 1))
    b = save(tmp_path / "vi.png", texture(24, 32, 3, 2))
    o = tmp_path / "f.png"
    for extra, words in ((["--method", "gff", "--prompt", "x"], "--prompt applies to the model"),
                         (["--method", "gff", "--steps", "4"], "--steps applies to the model"),
                         (["--colour", "per-channel"], "--colour is the colour policy"),
                         (["--ext", ".jpg"], "--ext applies to folder mode")):
        code, _, err = cli("fuse", a, b, "-o", o, *extra)
        assert code == 2 and words in err, (extra, err)
        assert not o.exists()
    code, _, err = cli("fuse", a, b, "-o", o, "--seed", "3")
    assert code == 0 and "--seed ignored" in err and "regression model" in err
    code, _, err = cli("metrics", "--data", tmp_path, "--fused-dir", tmp_path, "--json")
    assert code == 2 and "--json applies to one pair" in err
    code, _, err = cli("metrics", "--a", a, "--b", b, "--fused", a, "-o", tmp_path / "m.csv")
    assert code == 2 and "folder mode" in err


@pytest.mark.slow
def test_workers_give_the_same_batches_and_weights(four, tmp_path):
    from mmaif.synthesis.datasets import SynthFolder
    from mmaif.training.data import make_loader

    ds = SynthFolder(four, crop=32)
    cfg = TrainConfig(data=str(four), batch=2, seed=3)
    first = []
    for workers in (0, 2):
        cfg.workers = workers
        it = iter(make_loader(ds, cfg, 0, 1, epoch=1, pos=1, device=torch.device("cpu")))
        first.append([next(it) for _ in range(5)])  # crosses into later epochs
    (k0, _), (k2, _) = first[0][0], first[1][0]
    assert k0 == k2 and k0[0][0] == 1
    assert [k for k, _ in first[0]] == [k for k, _ in first[1]]
    assert [keys[0][0] for keys, _ in first[0]] == [1, 2, 2, 3, 3]  # 2 batches per epoch
    for (_, a), (_, b) in zip(first[0], first[1], strict=True):
        for x, y in zip(a, b, strict=True):
            assert all(torch.equal(x[k], y[k]) for k in ("a", "b", "gt"))
            assert x["prompt"] == y["prompt"]
    runs = []
    for workers in (0, 2):
        train(small(four, tmp_path / f"w{workers}", max_steps=3, crop=32, batch=2,
                    workers=workers), progress="none")
        runs.append(weights(tmp_path / f"w{workers}"))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_synth_shards_are_disjoint_parts_of_the_same_plan(cli, tmp_path):
    from mmaif.synthesis.synth import read_manifest

    root = tmp_path / "src"
    for k in range(2):
        save(root / "mff" / "near" / f"p{k}.png", texture(40, 56, 3, seed=k))
        save(root / "mff" / "far" / f"p{k}.png", texture(40, 56, 3, seed=10 + k))
    common = ["--task", "mff", "--src", root, "--n", 7, "--seed", 4, "--progress", "none"]
    code, _, err = cli("synth", *common, "--out", tmp_path / "all")
    assert code == 0, err
    rows = []
    for i in range(3):
        code, _, err = cli("synth", *common, "--out", tmp_path / f"s{i}", "--shard", f"{i}/3")
        assert code == 0, err
        part = read_manifest(tmp_path / f"s{i}" / "manifest.jsonl")
        assert all(int(r["index"]) % 3 == i for r in part)
        rows += part
    whole = read_manifest(tmp_path / "all" / "manifest.jsonl")
    assert sorted(rows, key=lambda r: r["id"]) == whole  # concatenated = the unsharded plan
    r = whole[4]
    a = (tmp_path / "all" / "gt" / f"{r['id']}.png").read_bytes()
    assert (tmp_path / "s1" / "gt" / f"{r['id']}.png").read_bytes() == a
    code, _, err = cli("synth", *common, "--out", tmp_path / "x", "--shard", "3/3")
    assert code == 2 and "--shard" in err


@pytest.mark.slow
def test_eval_and_fuse_shard_across_torchrun_ranks(tmp_path):
    root = tmp_path / "src"
    for k in range(3):
        save(root / "vif" / "ir" / f"p{k}.png", texture(32, 48, 0, seed=k))
        save(root / "vif" / "vi" / f"p{k}.png", texture(32, 48, 3, seed=10 + k))
    ev = ["eval", "--data", str(root), "--methods", "teacher,gff", "--repeats", "2"]
    one = subprocess.run([sys.executable, "-m", "mmaif", *ev, "--out", str(tmp_path / "e1")],
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    logs = tmp_path / "logs"

    def ranks_said(proc) -> str:
        """Every rank's own stderr (torchrun --log-dir), for a failure's message."""
        parts = [f"--- {p.relative_to(logs)}\n{p.read_text()[-3000:]}"
                 for p in sorted(logs.rglob("*.log")) if p.stat().st_size]
        return f"torchrun exit {proc.returncode}\n{proc.stderr[-2000:]}\n" + "\n".join(parts)

    run2 = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
            "2", "--log-dir", str(logs), "--tee", "3", "-m", "mmaif"]
    two = subprocess.run([*run2, *ev, "--out", str(tmp_path / "e2")], capture_output=True,
                         text=True)
    assert two.returncode == 0, ranks_said(two)
    for f in ("results.csv", "summary.csv", "summary_degradations.csv"):
        assert (tmp_path / "e1" / f).read_text() == (tmp_path / "e2" / f).read_text(), f
    assert sorted(p.name for p in (tmp_path / "e2" / "images").iterdir()) == sorted(
        p.name for p in (tmp_path / "e1" / "images").iterdir())
    assert two.stdout.count("| vif | teacher |") == 1  # rank 0 alone prints the table
    fu = subprocess.run([*run2, "fuse", str(root), "-o", str(tmp_path / "f"), "--method",
                         "gff"], capture_output=True, text=True)
    assert fu.returncode == 0, ranks_said(fu)
    assert "rank 1 of 2 fuses 1" in fu.stderr
    assert sorted(p.name for p in (tmp_path / "f" / "vif").iterdir()) == \
        ["p0.png", "p1.png", "p2.png"]
