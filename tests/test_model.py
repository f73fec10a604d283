from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from mmaif.errors import InputError
from mmaif.model.dit import (
    PRESETS,
    DiTConfig,
    FusionDiT,
    MoEGLU,
    apply_rope,
    load_config_file,
    make_config,
    rope_2d,
)
from mmaif.model.head import fullres_output
from mmaif.model.storage import load_model, save_model

from .conftest import Z, inputs, perturb, tiny


@pytest.mark.parametrize("flow,head", [(False, "fullres"), (False, "latent"), (True, "latent")])
def test_zero_output_and_identity_blocks_at_init(flow, head):
    cfg = tiny(flow=flow, head=head)
    model = FusionDiT(cfg)
    cond, text, extra = inputs(cfg)
    out, aux = model(cond, text, **extra)
    assert out.shape == (2, cfg.out_channels, 8, 12) and torch.count_nonzero(out) == 0
    x = torch.randn(2, 96, cfg.dim)
    c = torch.randn(2, cfg.dim)
    ang = rope_2d(8, 12, cfg.dim // cfg.heads, cfg.rope_theta, "cpu", torch.float32)
    for blk in model.blocks:
        y, _, _ = blk(x, c, 8, 12, ang, None)
        assert torch.equal(y, x)
    assert aux["balance"].ndim == 0


def test_fullres_head_is_the_mean_of_the_inputs_at_init():
    a, b = torch.rand(1, 3, 16, 24) * 2 - 1, torch.rand(1, 3, 16, 24) * 2 - 1
    pred = torch.zeros(1, 3 * 4 * 4 + 2, 4, 6)
    assert torch.allclose(fullres_output(pred, [a, b], 4), (a + b) / 2, atol=1e-6)


def test_h_ne_w_and_unseen_grids():
    cfg = tiny(patch=2)
    model = perturb(FusionDiT(cfg))
    for h, w in [(8, 8), (12, 20), (6, 16), (2, 2)]:
        cond, text, _ = inputs(cfg, h, w)
        out, _ = model(cond, text)
        assert out.shape == (2, cfg.out_channels, h, w) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="multiple of patch"):
        model(*inputs(cfg, 7, 8)[:2])


def test_rope_is_relative():
    hd = 16
    q, k = torch.randn(1, 1, 1, hd), torch.randn(1, 1, 1, hd)
    ang = rope_2d(10, 10, hd, 100.0, "cpu", torch.float32).view(10, 10, -1)

    def score(p, r):
        return (apply_rope(q, ang[p][None]) * apply_rope(k, ang[r][None])).sum()

    s1 = score((2, 3), (5, 7))
    s2 = score((4, 1), (7, 5))  # same offset (3, 4)
    s3 = score((2, 3), (6, 7))  # another offset
    assert torch.allclose(s1, s2, atol=1e-5) and not torch.allclose(s1, s3, atol=1e-3)


def test_moe_dropless_equals_dense_and_balance_minimum():
    torch.manual_seed(0)
    moe = MoEGLU(16, 24, n_experts=4, top_k=2, shared=True)
    torch.nn.init.normal_(moe.router.weight, std=1.0)
    x = torch.randn(3, 50, 16)
    out, loss = moe(x)
    assert torch.allclose(out, moe.dense_reference(x), atol=1e-5)
    assert loss >= 1.0 - 1e-6
    # uniform routing: router outputs equal logits, assignments spread evenly
    idx = torch.arange(8).remainder(4).view(4, 2)
    probs = torch.full((4, 4), 0.25)
    assert moe.balance_loss(probs, idx).item() == pytest.approx(1.0)
    collapsed = moe.balance_loss(torch.tensor([[1.0, 0, 0, 0]] * 4), torch.zeros(4, 2).long())
    assert collapsed.item() == pytest.approx(4.0)


def test_value_residual_modes():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 32)
    for mode in ("none", "prev", "first"):
        model = perturb(FusionDiT(tiny(value_residual=mode, vr_eta=0.3, vr_learnable=False)))
        attn = [b.attn for b in model.blocks]
        assert (attn[1].eta is None) == (mode == "none")
        if mode == "none":
            continue
        assert attn[0].eta is None and attn[2].eta.item() == pytest.approx(0.3)
        assert not attn[2].eta_logit.requires_grad
        v_in = torch.randn(1, 2, 4, 16)
        _, v_out = attn[1](x, None, v_in)
        own = attn[1].qkv(x).view(1, 4, 3, 2, 16).permute(2, 0, 3, 1, 4)[2]
        assert torch.allclose(v_out, 0.7 * own + 0.3 * v_in, atol=1e-6)
    # 'first' feeds block 0's V to every later block; 'prev' chains them
    m = perturb(FusionDiT(tiny(value_residual="first")))
    seen = []
    for blk in m.blocks:
        orig = blk.attn.forward
        blk.attn.forward = lambda xx, a, v, orig=orig: (seen.append(v), orig(xx, a, v))[1]
    m(*inputs(m.cfg)[:2])
    assert seen[0] is None and seen[1] is seen[2]


FLAGS = [dict(naf=False), dict(rope=False), dict(ape=False), dict(moe=False),
         dict(shared_expert=False), dict(adaln="full"), dict(value_residual="none"),
         dict(head="latent"), dict(flow=True, head="latent"), dict(patch=2), dict(top_k=1)]


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
def test_every_switch_runs_forward_and_backward(flags):
    cfg = tiny(**flags)
    model = perturb(FusionDiT(cfg))
    cond, text, extra = inputs(cfg)
    out, aux = model(cond, text, **extra)
    (out.square().mean() + 0.01 * aux["balance"]).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_save_load_round_trip(tmp_path):
    model = perturb(FusionDiT(tiny()))
    save_model(model, tmp_path / "m", extra={"step": 3})
    again = load_model(tmp_path / "m")
    assert again.cfg == model.cfg
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items(),
                                strict=True):
        assert k == k2 and torch.equal(v, v2)
    cond, text, _ = inputs(model.cfg)
    assert torch.equal(model(cond, text)[0], again(cond, text)[0])


def test_bf16_storage_loads_as_float32(tmp_path):
    """Weights stored in bf16 take half the bytes and load as float32, rounded to bf16."""
    model = perturb(FusionDiT(tiny()))
    save_model(model, tmp_path / "fp32")
    save_model(model, tmp_path / "bf16", dtype=torch.bfloat16)
    size = {k: (tmp_path / k / "model.safetensors").stat().st_size for k in ("fp32", "bf16")}
    assert size["bf16"] < 0.55 * size["fp32"]
    again = load_model(tmp_path / "bf16")
    for k, v in model.state_dict().items():
        got = again.state_dict()[k]
        assert got.dtype == v.dtype, k
        if v.is_floating_point():
            assert torch.equal(got, v.to(torch.bfloat16).float()), k


def test_damaged_checkpoints_are_reported(tmp_path):
    save_model(FusionDiT(tiny()), tmp_path / "m")
    w = tmp_path / "m/model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(InputError, match="not a readable safetensors file"):
        load_model(tmp_path / "m")
    with pytest.raises(InputError, match=r"missing config\.json"):
        load_model(tmp_path)


def test_config_rules(tmp_path):
    with pytest.raises(InputError, match="unknown key"):
        DiTConfig.from_dict({"dimm": 3})
    with pytest.raises(InputError, match="value_residual"):
        tiny(value_residual="all")
    (tmp_path / "c.yaml").write_text("preset: tiny\ndepth: 2\nrope: false\n")
    cfg = load_config_file(tmp_path / "c.yaml")
    assert (cfg.depth, cfg.rope, cfg.dim) == (2, False, PRESETS["tiny"]["dim"])
    assert make_config("base").patch == 2
    assert dataclasses.asdict(cfg) == dataclasses.asdict(DiTConfig.from_dict(cfg.to_dict()))


def test_shipped_yaml_configs_load():
    from pathlib import Path

    files = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert files
    for f in files:
        load_config_file(f)


def test_param_counts_active_below_total():
    counts = FusionDiT(tiny()).param_counts()
    assert counts["active_per_token"] < counts["total"]
    dense = FusionDiT(tiny(moe=False)).param_counts()
    assert dense["active_per_token"] == dense["total"]
    assert math.isfinite(counts["total"])


def test_latent_output_residual_over_the_mean():
    from mmaif.model.head import latent_output

    cfg = tiny(head="latent")
    cond, text, _ = inputs(cfg)
    out, _ = FusionDiT(cfg)(cond, text)
    mean = (cond[:, :Z] + cond[:, Z:]) / 2
    assert torch.allclose(latent_output(out, cond, cfg), mean)
    off = tiny(head="latent", residual_mean=False)
    assert torch.equal(latent_output(out, cond, off), out)


def test_flop_count_includes_cpu_attention():
    import torch.nn.functional as F

    from mmaif.evaluation.info import count_flops

    q, k, v = torch.randn(1, 3, 50, 16), torch.randn(1, 3, 70, 16), torch.randn(1, 3, 70, 8)
    flops, out = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert out.shape == (1, 3, 50, 8)
    assert flops == 2 * 3 * 50 * 70 * 16 + 2 * 3 * 50 * 70 * 8  # QK^T and (scores)V
