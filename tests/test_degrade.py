from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmaif.data.degrade import OPS, SEVERITIES, TASK_OPS, apply_op, compose_prompt, sample_ops
from mmaif.data.degrade.depth import FallbackDepth, make_depth_estimator
from mmaif.data.degrade.pipeline import prompt_bank
from mmaif.errors import InputError

from .conftest import texture


def run(name, img, severity="heavy", seed=0, **override):
    params = {**OPS[name].sample(np.random.default_rng(seed), severity), **override}
    depth = FallbackDepth()(img) if OPS[name].uses_depth else None
    return apply_op(name, img, params, np.random.default_rng([seed, 1]), depth)


def test_at_least_twelve_operators():
    assert len(OPS) >= 12
    for op in OPS.values():
        assert set(op.ranges) == set(SEVERITIES) and op.doc


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(OPS)), h=st.integers(1, 40), w=st.integers(1, 40),
       rgb=st.booleans(), severity=st.sampled_from(SEVERITIES), seed=st.integers(0, 2**31 - 2))
def test_operator_contract(name, h, w, rgb, severity, seed):
    img = np.random.default_rng(seed).random((h, w, 3) if rgb else (h, w)).astype(np.float32)
    out = run(name, img, severity, seed)
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(out, run(name, img, severity, seed))  # deterministic


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_operator_changes_the_image(name):
    img = texture(64, 80, 3, 1)
    assert np.abs(run(name, img) - img).mean() > 0.005


def _grad_energy(x):
    return float(np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean())


@pytest.mark.parametrize("name,measure,direction", [
    ("gaussian_blur", _grad_energy, -1), ("motion_blur", _grad_energy, -1),
    ("low_contrast", np.std, -1), ("low_exposure", np.mean, -1), ("high_exposure", np.mean, 1),
])
def test_severity_is_monotonic(name, measure, direction):
    img = texture(96, 96, 3, 2)
    vals = [measure(run(name, img, s, seed=3)) for s in SEVERITIES]
    assert (np.diff(vals) * direction > 0).all(), vals


@pytest.mark.parametrize("name", ["noise", "jpeg", "downsample"])
def test_severity_increases_error(name):
    img = texture(96, 96, 3, 2)
    errs = [np.abs(run(name, img, s, seed=5) - img).mean() for s in SEVERITIES]
    assert errs[0] < errs[2], errs


def test_haze_follows_the_scattering_model():
    img = texture(20, 30, 3)
    near = apply_op("haze", img, {"beta": 2.0, "airlight": 0.9, "tint": 0.0},
                    np.random.default_rng(0), np.zeros((20, 30)))
    np.testing.assert_allclose(near, img, atol=1e-6)  # depth 0: t = 1
    far = apply_op("haze", img, {"beta": 2.0, "airlight": 0.9, "tint": 0.0},
                   np.random.default_rng(0), np.ones((20, 30)))
    t = np.exp(-2.0)
    np.testing.assert_allclose(far, img * t + 0.9 * (1 - t), atol=1e-5)


def test_stripes_are_column_wise():
    img = np.full((50, 40), 0.5, np.float32)
    out = run("stripes", img)
    assert np.allclose(out, out[:1])  # constant down each column
    assert out[0].std() > 0.01


def test_fallback_depth():
    img = np.full((40, 30, 3), 0.4, np.float32)
    d = FallbackDepth()(img)
    assert d.shape == (40, 30) and d.min() >= 0 and d.max() <= 1
    assert d[0].mean() > d[-1].mean()  # top of the frame is farther
    assert make_depth_estimator(None).name == "fallback"


def test_depth_anything_needs_a_model_folder(tmp_path):
    with pytest.raises(InputError, match=r"config\.json"):
        make_depth_estimator(str(tmp_path))


@pytest.mark.parametrize("task", sorted(TASK_OPS))
def test_sampling_respects_the_task(task):
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        recs = sample_ops(task, rng)
        assert 1 <= len(recs) <= 3
        names = [r["name"] for r in recs]
        assert len(set(names)) == len(names)
        assert not {"low_exposure", "high_exposure"} <= set(names)
        assert [OPS[n].order for n in names] == sorted(OPS[n].order for n in names)
        for r in recs:
            assert r["target"] in TASK_OPS[task][r["name"]] and r["severity"] in SEVERITIES
            seen.add(r["name"])
    assert seen == set(TASK_OPS[task])
    if task == "vif":
        assert TASK_OPS[task]["stripes"] == ("a",) and TASK_OPS[task]["haze"] == ("b",)
    assert sample_ops(task, rng, clean_prob=1.0) == []


def test_prompt_bank_sizes():
    bank = prompt_bank()
    for name in OPS:
        assert 10 <= len(set(bank["degradations"][name])) <= 20, name
    for task in TASK_OPS:
        assert 10 <= len(bank["fusion"][task]) <= 20 and 10 <= len(bank["clean"][task]) <= 20
        assert set(bank["targets"][task]) == {"a", "b", "both"}


@pytest.mark.parametrize("task", sorted(TASK_OPS))
def test_prompts_are_sentences_and_deterministic(task):
    for seed in range(40):
        recs = sample_ops(task, np.random.default_rng(seed), clean_prob=0.2)
        p1 = compose_prompt(task, recs, np.random.default_rng(seed))
        assert p1 == compose_prompt(task, recs, np.random.default_rng(seed))
        assert p1[0].isupper() and p1.endswith(".") and "{" not in p1 and "  " not in p1


def _tiny_depth_anything(folder):
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=64, patch_size=14, image_size=56,
                            out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32,
                              neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                              head_hidden_size=8, patch_size=14)
    model = DepthAnythingForDepthEstimation(cfg).eval()
    model.save_pretrained(folder)  # config.json + model.safetensors, like a real checkpoint
    return model


def test_depth_anything_loads_a_local_folder(tmp_path):
    import torch

    model = _tiny_depth_anything(tmp_path / "da")
    est = make_depth_estimator(str(tmp_path / "da"), size=56)
    img = texture(40, 60, 3)
    d = est(img)
    assert d.shape == (40, 60) and d.min() == 0 and d.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(d, est(img))
    # the loaded weights are the saved ones: same prediction as the in-memory model
    x = torch.randn(1, 3, 56, 84)
    with torch.no_grad():
        assert torch.allclose(model(pixel_values=x).predicted_depth,
                              est.model(pixel_values=x).predicted_depth, atol=1e-5)


def test_degrade_haze_with_depth_model(cli, tmp_path):
    _tiny_depth_anything(tmp_path / "da")
    from .conftest import save

    img = save(tmp_path / "x.png", texture(30, 40, 3))
    code, _, err = cli("degrade", img, "--op", "haze", "--depth", tmp_path / "da", "-o",
                       tmp_path / "h.png")
    assert code == 0, err
