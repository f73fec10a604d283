"""Local evidence in the tokens (classical maps and a learned stem), blend-weight distillation
and warm starts: the options the fidelity experiments compare (docs/experiments.md, "What the
model sees")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mmaif.classical.fusion import fuse_arrays
from mmaif.errors import InputError, UsageError
from mmaif.evaluation.metrics import psnr_gt
from mmaif.model.dit import EVIDENCE_MAPS, DiTConfig, FusionDiT
from mmaif.model.head import blend_targets, distill_loss, fullres_output
from mmaif.model.storage import save_model
from mmaif.training.checkpoint import warm_start
from mmaif.training.trainer import train

from .conftest import inputs, perturb, small, texture, tiny

F = 4  # evidence_f of the tiny configs: latent grid (8, 12) <-> images (32, 48)


def images(cfg: DiTConfig, h=8, w=12, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, 3, h * cfg.evidence_f, w * cfg.evidence_f, generator=g) * 2 - 1
            for _ in range(cfg.n_inputs)]


EVIDENCE = dict(evidence=EVIDENCE_MAPS, stem=8, evidence_f=F)


def test_new_paths_start_at_zero_and_warm_start_reproduces_the_old_model(tmp_path):
    """A trained model without evidence, loaded into one with evidence + stem (both
    zero-initialised), computes exactly the same output."""
    torch.manual_seed(0)
    old = perturb(FusionDiT(tiny(patch=2)))
    new = FusionDiT(tiny(patch=2, **EVIDENCE))
    save_model(old, tmp_path / "old")
    assert warm_start(new, tmp_path / "old") == len(old.state_dict())
    cond, text, _ = inputs(old.cfg)
    imgs = images(new.cfg)
    with torch.no_grad():
        assert torch.equal(old(cond, text)[0], new(cond, text, images=imgs)[0])
    with pytest.raises(ValueError, match="images"):
        new(cond, text)
    # a model that lacks a trained path cannot be warm-started from one that has it
    with pytest.raises(InputError, match="do not fit"):
        warm_start(FusionDiT(tiny(patch=2)), _saved(perturb(new), tmp_path / "new"))


def _saved(model, folder):
    save_model(model, folder)
    return folder


@pytest.mark.parametrize("kw", [dict(evidence=("laplacian",)), dict(stem=4), EVIDENCE],
                         ids=["maps", "stem", "both"])
def test_gradients_reach_every_new_parameter(kw):
    cfg = tiny(patch=2, **{"evidence_f": F, **kw})
    model = perturb(FusionDiT(cfg))  # the zero-initialised embedding made non-zero
    cond, text, _ = inputs(cfg)
    out, _ = model(cond, text, images=images(cfg))
    out.square().mean().backward()
    new = [(n, p) for n, p in model.named_parameters() if n.startswith("evidence.")]
    assert new and all(p.grad is not None and p.grad.abs().sum() > 0 for _, p in new), \
        [n for n, p in new if p.grad is None or p.grad.abs().sum() == 0]


def test_evidence_maps_carry_what_the_teachers_select_by():
    cfg = tiny(evidence=EVIDENCE_MAPS, evidence_f=F)
    ev = FusionDiT(cfg).evidence
    sharp = torch.from_numpy(texture(32, 48, 3, seed=1)).permute(2, 0, 1)[None] * 2 - 1
    blurred = torch.from_numpy(ndimage.gaussian_filter(
        texture(32, 48, 3, seed=1), (2, 2, 0))).permute(2, 0, 1)[None] * 2 - 1
    bright = (sharp + 1.8).clamp(-1, 1)
    m = {n: i for i, n in enumerate(EVIDENCE_MAPS)}
    lap_s, lap_b = (ev.classical(x)[:, m["laplacian"]].mean() for x in (sharp, blurred))
    assert lap_s > 2 * lap_b  # the in-focus input is more salient (GFF's rule)
    exp_s, exp_o = (ev.classical(x)[:, m["exposure"]].mean() for x in (sharp, bright))
    assert exp_s > exp_o  # the blown-out input is less well exposed (Mertens' rule)
    gray = sharp.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    assert ev.classical(gray)[:, m["saturation"]].abs().max() < 1e-6
    assert ev.classical(sharp)[:, m["saturation"]].mean() > 0.05


# map: (its degradation, the direction it moves, degradations allowed to move it as much)
DEGRADATION_MAPS = {
    "noise": ("noise", +1, ()),
    "stripes": ("stripes", +1, ()),
    "blockiness": ("jpeg", +1, ("stripes",)),         # column edges are block edges too
    "dark": ("haze", +1, ("high_exposure", "noise")),  # brightening lifts the minimum too
    "mean": ("low_exposure", -1, ("haze", "high_exposure", "noise")),
}


@pytest.mark.parametrize("name", list(DEGRADATION_MAPS))
def test_degradation_maps_tell_their_degradation_apart(name):
    """Each map moves (heavy degradation, natural-like image) in its direction at least twice
    as much as any other degradation but the named confusions moves it that way."""
    from mmaif.data.degrade import OPS, apply_op

    op, sign, confused = DEGRADATION_MAPS[name]
    ev = FusionDiT(tiny(evidence=EVIDENCE_MAPS, evidence_f=F)).evidence
    k = EVIDENCE_MAPS.index(name)
    img = ndimage.gaussian_filter(texture(96, 128, 3, seed=4), (1.5, 1.5, 0)) * 0.6 + 0.25

    def level(x):
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).permute(2, 0, 1)[None] * 2 - 1
        return float(ev.classical(t)[:, k].mean())

    def moved(o):
        rng = np.random.default_rng(0)
        x = apply_op(o, img, OPS[o].sample(rng, "heavy"), rng,
                     depth=np.full(img.shape[:2], 0.7, np.float32))
        return sign * (level(x) - level(img))

    change = {o: moved(o) for o in OPS}
    others = max(v for o, v in change.items() if o != op and o not in confused)
    assert change[op] > 0.1 and change[op] > 2 * others, change


def test_warm_start_with_more_maps_reproduces_the_old_model(tmp_path):
    """New classical maps (zero columns of the embedding) leave a warm-started model's output
    exactly as it was; the old maps' weights land on their own channels."""
    torch.manual_seed(0)
    old = perturb(FusionDiT(tiny(patch=2, evidence=("laplacian", "exposure"), evidence_f=F)))
    new = FusionDiT(tiny(patch=2, evidence=("noise", "laplacian", "dark", "exposure"),
                         evidence_f=F))
    warm_start(new, _saved(old, tmp_path / "old"))
    cond, text, _ = inputs(old.cfg)
    imgs = images(new.cfg)
    with torch.no_grad():
        assert torch.equal(old(cond, text, images=imgs)[0], new(cond, text, images=imgs)[0])
    w_old, w_new = old.evidence.embed.weight, new.evidence.embed.weight
    f2 = F * F
    assert torch.equal(w_new[:, f2:2 * f2], w_old[:, :f2])  # laplacian of input a
    assert w_new[:, :f2].abs().sum() == 0  # noise: new, zero


def test_config_rules_for_evidence():
    with pytest.raises(InputError, match="evidence"):
        tiny(evidence=("sharpness",))
    with pytest.raises(InputError, match="evidence"):
        tiny(evidence=("laplacian", "laplacian"))
    with pytest.raises(InputError, match="stem"):
        tiny(stem=-1)
    cfg = tiny(**EVIDENCE)
    assert DiTConfig.from_dict(cfg.to_dict()) == cfg and cfg.evidence_maps == len(EVIDENCE_MAPS) + 4


def _pair(kind: str, seed: int):
    """Generated MFF-like (complementary blur) or VIF-like (a warm body in IR) pairs."""
    img = texture(64, 96, 3, seed=seed)
    if kind == "mff":
        blur = ndimage.gaussian_filter(img, (3, 3, 0))
        left = np.zeros((64, 96, 1), np.float32)
        left[:, :48] = 1
        return img * left + blur * (1 - left), blur * left + img * (1 - left)
    img = ndimage.gaussian_filter(img, (1.5, 1.5, 0))  # natural images are not white noise
    yy, xx = np.mgrid[:64, :96]
    hot = np.exp(-(((yy - 32) / 12) ** 2 + ((xx - 30 - 10 * seed) / 14) ** 2))  # a warm body
    ir = 0.5 * ndimage.gaussian_filter(texture(64, 96, 0, seed=seed + 50), 1.5) ** 2 + 0.6 * hot
    return np.clip(ir, 0, 1).astype(np.float32), img


@pytest.mark.parametrize("kind", ["mff", "vif"])
def test_distillation_targets_reproduce_the_teacher(kind):
    """Blending with the least-squares block targets (8 x 8 blocks, bilinearly upsampled, as
    the head does) reproduces the teacher (GFF) far better than the mean of the inputs."""
    for seed in range(3):
        a, b = _pair(kind, seed)
        gt = fuse_arrays(a, b, "gff")
        a3 = np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a
        ta, tb, tg = (torch.from_numpy(x).permute(2, 0, 1)[None] * 2 - 1 for x in (a3, b, gt))
        w, mask = blend_targets(ta, tb, tg, 8, min_diff=0.0)
        assert mask.all() and ((w >= 0) & (w <= 1)).all()
        up = torch.nn.functional.interpolate(w[:, None], size=(64, 96), mode="bilinear",
                                             align_corners=False)
        blend = ((up * ta + (1 - up) * tb)[0].permute(1, 2, 0).numpy() + 1) / 2
        ours, mean = psnr_gt(blend, gt), psnr_gt((a3 + b) / 2, gt)
        assert ours > 30 and ours > mean + 10, (kind, seed, ours, mean)


def test_distill_loss_is_zero_at_the_target_and_masked():
    target = torch.tensor([[[0.2, 0.9]]])
    logit = torch.log(target / (1 - target))  # softmax([l, 0])[0] == target
    logits = torch.stack([logit, torch.zeros_like(logit)], dim=1)
    assert distill_loss(logits, target, torch.ones_like(target)) < 1e-6
    off = torch.zeros_like(logits)  # weight 0.5 everywhere
    assert distill_loss(off, target, torch.tensor([[[1.0, 0.0]]])) == pytest.approx(0.3)
    # where the inputs agree there is no target
    a = torch.rand(1, 3, 16, 16) * 2 - 1
    assert blend_targets(a, a.clone(), a, 8)[1].sum() == 0
    # the image from the head, blended with the weights the loss sees
    pred = torch.zeros(1, 3 * 64 + 2, 2, 2)
    assert fullres_output(pred, [a, -a], 8).abs().max() < 1e-6


def test_training_with_evidence_and_distillation(four, tmp_path):
    model = dict(dim=64, depth=2, heads=2, adaln_rank=16, evidence=["laplacian", "exposure"],
                 stem=4)
    out = train(small(four, tmp_path / "run", max_steps=3, distill_weight=1.0, log_every=1,
                      model=model), progress="none")
    assert np.isfinite(out["last"]["loss"]) and "distill" in out["last"]
    with pytest.raises(UsageError, match="distill_weight"):
        train(small(four, tmp_path / "r2", max_steps=1, distill_weight=1.0,
                     model=dict(dim=64, depth=2, heads=2, head="latent")), progress="none")


def test_pipeline_output_keeps_odd_sizes_with_evidence():
    from mmaif.inference.pipeline import FusionPipeline

    cfg = DiTConfig(dim=32, depth=1, heads=2, adaln_rank=8, patch=2, **{**EVIDENCE,
                                                                      "evidence_f": 8})
    pipe = FusionPipeline(perturb(FusionDiT(cfg)))
    rng = np.random.default_rng(0)
    for h, w in ((37, 53), (17, 9)):
        out = pipe(rng.random((h, w), np.float32), rng.random((h, w, 3), np.float32),
                   output="numpy")
        assert out.shape == (h, w, 3) and np.isfinite(out).all()


def test_prompt_dropout_replaces_only_degraded_prompts_deterministically():
    from mmaif.data.degrade.pipeline import default_prompt
    from mmaif.training.config import TrainConfig
    from mmaif.training.data import drop_prompts

    def batch():
        return [{"prompt": f"remove the haze {i}", "task": "vif",
                 "ops": "[]" if i % 5 == 0 else '[{"name": "haze"}]'} for i in range(400)]

    cfg = TrainConfig(data="x", prompt_dropout=0.3)
    items, again = batch(), batch()
    drop_prompts(items, list(range(400)), cfg, epoch=2)
    drop_prompts(again, list(range(400)), cfg, epoch=2)
    assert items == again
    changed = [i for i, it in enumerate(items) if it["prompt"] != f"remove the haze {i}"]
    assert all(i % 5 for i in changed)  # clean samples keep their (task) prompts
    assert 0.22 < len(changed) / 320 < 0.38
    kinds = {items[i]["prompt"] for i in changed}
    assert kinds == {"", default_prompt("vif")}
    other = batch()
    drop_prompts(other, list(range(400)), cfg, epoch=3)
    assert other != items  # a new draw each epoch
    with pytest.raises(UsageError, match="prompt_dropout"):
        TrainConfig(data="x", prompt_dropout=1.5).check()
