"""Classical candidates in the head: the degradations a prompt names, the fixes and
the teacher's fusion of them (what two-stage computes), the gates that select them, their
distillation targets, and exact warm starts of models without them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmaif.classical.restore import candidates, head_candidates, restore, two_stage
from mmaif.data.degrade.names import named_degradations, names_from_ops
from mmaif.data.degrade.pipeline import compose_prompt, prompt_bank, sample_ops
from mmaif.errors import InputError, UsageError
from mmaif.model.components import Components
from mmaif.model.dit import DiTConfig, FusionDiT
from mmaif.model.head import fullres_parts, gate_targets, head_distill, tone_targets
from mmaif.model.objectives import Regression
from mmaif.model.storage import save_model
from mmaif.model.tokenizers import PixelTokenizer
from mmaif.training.checkpoint import warm_start
from mmaif.training.data import add_candidates

from .conftest import perturb, small, texture

GATES = dict(fix_gates=True, teacher_gate=True)
ALL = dict(fix_gates=True, teacher_gate=True, tone=True, global_tone=True)


@pytest.mark.parametrize("task", ["vif", "mef", "mff"])
def test_every_synthesized_prompt_names_exactly_its_degradations(task):
    """The parser inverts compose_prompt: 600 random compound degradations per task, each
    prompt parsed back to the same types on the same inputs."""
    for s in range(600):
        rng = np.random.default_rng([s, 11])
        ops = sample_ops(task, rng)
        prompt = compose_prompt(task, ops, rng)
        assert named_degradations(prompt, task) == names_from_ops(ops), prompt


def test_task_and_clean_prompts_name_nothing():
    from mmaif.data.degrade.pipeline import TASK_PROMPTS

    bank = prompt_bank()
    for task in ("vif", "mef", "mff"):
        for text in bank["clean"][task] + bank["fusion"][task] + [TASK_PROMPTS[task], ""]:
            assert named_degradations(text, task) == {"a": [], "b": []}, text
    assert named_degradations(None) == {"a": [], "b": []}


@pytest.mark.parametrize("prompt,task,want", [
    ("remove the haze and the stripes, then fuse", "vif", ({"stripes"}, {"haze"})),
    ("denoise, then deblur the visible image", "vif", (set(), {"noise", "gaussian_blur"})),
    ("Please get rid of the rain in both shots", "mff", ({"rain"}, {"rain"})),
    ("the far image is blurry and has JPEG artifacts", "mff", (set(), {"gaussian_blur", "jpeg"})),
    ("fix the low contrast of the dark exposure", "mef", ({"low_contrast"}, set())),
    ("make the thermal image sharper; it is noisy", "vif", ({"gaussian_blur", "noise"}, set())),
    ("dehaze it", None, ({"haze"}, {"haze"})),
])
def test_free_sentences(prompt, task, want):
    got = named_degradations(prompt, task)
    assert (set(got["a"]), set(got["b"])) == want


def test_candidates_are_two_stages_fixes_and_output():
    """From the sample's own prompt, the candidates are exactly two-stage's restored inputs
    and its fused output (two-stage reads the true degradations from the manifest)."""
    a, b = texture(48, 64, 0, seed=1), texture(48, 64, 3, seed=2)
    checked = 0
    for s in range(40):
        rng = np.random.default_rng([s, 5])
        ops = sample_ops("vif", rng)
        if not ops:
            continue
        names = named_degradations(compose_prompt("vif", ops, rng), "vif")
        fa, fb, ts = candidates(a, b, names, "gff")
        on = names_from_ops(ops)
        assert np.array_equal(fa, restore(a, on["a"]) if on["a"] else a)
        assert np.array_equal(fb, restore(b, on["b"]) if on["b"] else b)
        assert np.array_equal(ts, two_stage(a, b, ops, "gff"))
        checked += 1
    assert checked > 30
    fa, fb, ts = candidates(a, b, {"a": [], "b": []})  # nothing named: the inputs themselves
    assert np.array_equal(fa, a) and np.array_equal(fb, b) and ts is None


def tiny_full(**kw) -> DiTConfig:
    return DiTConfig(dim=32, depth=2, heads=2, adaln_rank=8, patch=2, text_dim=384,
                     evidence=("laplacian", "exposure"), **kw)


def _batch(h=32, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(2, 3, h, w, generator=g) * 2 - 1 for _ in range(5)]


def test_warm_start_from_a_model_without_gates_is_exact(tmp_path):
    """Gate channels (interleaved per patch position in the output layer) and the
    candidates' evidence start at zero: the gated model reproduces the old one bit for bit."""
    tok = PixelTokenizer()
    old = perturb(FusionDiT(tiny_full()))
    save_model(old, tmp_path / "old")
    for kw in (dict(fix_gates=True), dict(teacher_gate=True), dict(tone=True),
               dict(global_tone=True), GATES, ALL):
        new = FusionDiT(tiny_full(**kw))
        assert warm_start(new, tmp_path / "old") == len(old.state_dict())
        a, b, fa, fb, ts = _batch()
        text = torch.randn(2, 384)
        with torch.no_grad():
            ref = Regression(Components(old, tok, None)).predict(old, a, b, text)[0]
            got = Regression(Components(new, tok, None)).predict(
                new, a, b, text, {"fixes": [fa, fb], "teacher": ts})[0]
        assert torch.equal(ref, got), kw
    with pytest.raises(ValueError, match="cands"):
        Regression(Components(new, tok, None)).predict(new, a, b, text)


def test_warm_start_maps_channels_by_kind(tmp_path):
    """From a model with the teacher gate to one that adds fix gates before it: the teacher
    channel follows its kind, not its position."""
    tok = PixelTokenizer()
    old = perturb(FusionDiT(tiny_full(teacher_gate=True)))
    save_model(old, tmp_path / "old")
    new = FusionDiT(tiny_full(**ALL))
    warm_start(new, tmp_path / "old")
    a, b, fa, fb, ts = _batch(seed=8)
    text = torch.randn(2, 384)
    with torch.no_grad():
        ref = Regression(Components(old, tok, None)).predict(old, a, b, text, {"fixes": None,
                                                                          "teacher": ts})[0]
        got = Regression(Components(new, tok, None)).predict(
            new, a, b, text, {"fixes": [fa, fb], "teacher": ts})[0]
    assert torch.equal(ref, got)


def test_gradients_reach_every_new_parameter():
    tok = PixelTokenizer()
    model = FusionDiT(tiny_full(**ALL))
    with torch.no_grad():  # a trained model: every path non-zero
        perturb(model)
    a, b, fa, fb, ts = _batch(seed=3)
    out = Regression(Components(model, tok, None)).predict(
        model, a, b, torch.randn(2, 384), {"fixes": [fa, fb], "teacher": ts})[0]
    (out - ts.flip(-1)).abs().mean().backward()
    c, p, z = model.cfg.out_channels, model.cfg.patch, model.cfg.latent_channels
    rows = model.out.weight.grad.view(p, p, c, -1)
    for ch in range(z + 2, c):  # the two fix gates, the teacher gate, the tone
        assert rows[:, :, ch].abs().sum() > 0, ch
    k_old = len(model.cfg.evidence) * 2 * model.cfg.evidence_f ** 2
    assert model.evidence.embed.weight.grad[:, k_old:].abs().sum() > 0  # candidates' evidence
    assert (model.global_tone.weight.grad.abs().sum(1) > 0).all()  # every global gain, offset


def test_global_tone_inverts_a_global_contrast_change():
    """A per-input affine map of the whole image (low contrast, exposure) is undone exactly by
    the global tone's gain and offset: with weights 1, 0 the output is a * (1 + g) + o."""
    a, b, *_ = _batch(16, 16, seed=5)
    low = 0.5 * a - 0.1                                  # contrast halved, darker
    pred = torch.zeros(2, 192 + 2, 2, 2)
    pred[:, 192] = 20.0                                  # all weight on a
    g = torch.zeros(2, 2, 2, 3)                          # (B, gain|offset, input, RGB)
    g[:, 0, 0], g[:, 1, 0] = 1.0, 0.2                    # (1 + 1) * low + 0.2 = a
    out = fullres_parts(pred, [low, b], 8, global_tone=g.view(2, 12))["out"]
    assert torch.allclose(out, a, atol=1e-5)
    with pytest.raises(InputError, match="fullres"):
        DiTConfig(head="latent", global_tone=True)
    # its distillation target is that gain and offset: near zero there, large at zero
    terms = {}
    for name, gt_ in (("right", g), ("zero", torch.zeros_like(g))):
        gtone = gt_.view(2, 12)
        parts = fullres_parts(pred, [low, b], 8, global_tone=gtone)
        fp = {**parts, "inputs": [low, b]}
        terms[name] = head_distill(fp, pred[:, 192:], a, 8, 0.05,
                                   gtone)["distill_global_tone"].item()
    assert terms["right"] < 0.01 < 0.1 < terms["zero"], terms


def test_gates_select_the_candidates():
    """Gate logits of 1 give the fixes' blend, then the teacher's image exactly."""
    a, b, fa, fb, ts = _batch(16, 16, seed=4)
    pred = torch.zeros(2, 192 + 5, 2, 2)
    pred[:, 194:196] = 1.0
    parts = fullres_parts(pred, [a, b], 8, [fa, fb], ts)
    assert torch.allclose(parts["base"], (fa + fb) / 2, atol=1e-6)
    assert torch.allclose(parts["out"], (fa + fb) / 2, atol=1e-6)
    pred[:, 196] = 5.0  # clamped to 1
    assert torch.allclose(fullres_parts(pred, [a, b], 8, [fa, fb], ts)["out"], ts, atol=1e-6)


def test_gate_targets_recover_a_known_per_block_gate():
    g = torch.Generator().manual_seed(0)
    rest, d = torch.rand(1, 3, 32, 48, generator=g), torch.rand(1, 3, 32, 48, generator=g) - 0.5
    true = torch.rand(1, 1, 4, 6, generator=g)
    y = rest + torch.nn.functional.interpolate(true, scale_factor=8, mode="nearest") * d
    got, mask = gate_targets(d, y - rest, 8, min_diff=0.0)
    assert mask.all() and torch.allclose(got, true[:, 0], atol=1e-5)


def test_tone_targets_recover_a_known_per_block_affine_map():
    """Generated inputs, a GT made by known per-block gains and offsets (8 x 8 blocks): the
    ridge targets give them back."""
    g = torch.Generator().manual_seed(1)
    us = [torch.rand(2, 3, 32, 48, generator=g) * 2 - 1 for _ in range(2)]
    rest = torch.rand(2, 3, 32, 48, generator=g)
    true = torch.randn(2, 3, 3, 4, 6, generator=g) * 0.3            # gains a, b; offset

    def up(t):
        return torch.nn.functional.interpolate(t, scale_factor=8, mode="nearest")
    gt = rest + up(true[:, :, 0]) * us[0] + up(true[:, :, 1]) * us[1] + up(true[:, :, 2])
    got = tone_targets(us, 1.0, gt - rest, 8, ridge=1e-6)
    assert got.shape == true.shape and torch.allclose(got, true, atol=1e-3)
    shrunk = tone_targets(us, 1.0, gt - rest, 8, ridge=10.0)        # the ridge pulls to 0
    assert shrunk.abs().mean() < 0.5 * true.abs().mean()


def test_head_distillation_is_zero_at_its_targets():
    """Targets conditional on the head's other outputs: with every gate at its target,
    the gate terms vanish."""
    a, b, fa, fb, ts = _batch(16, 16, seed=5)
    gt = 0.5 * ts + 0.5 * (a + 0.4 * (fa - a) + b) / 2  # reachable by the gates
    pred = torch.zeros(2, 192 + 5, 2, 2)
    pred[:, 194] = 0.4
    pred[:, 196] = 0.5
    parts = {**fullres_parts(pred, [a, b], 8, [fa, fb], ts), "inputs": [a, b],
             "fixes": [fa, fb], "teacher": ts}
    terms = head_distill(parts, pred[:, 192:], gt, 8, 0.0)
    assert set(terms) == {"distill", "distill_fix_a", "distill_fix_b", "distill_teacher"}
    assert terms["distill_teacher"] < 1e-4 and terms["distill_fix_a"] < 1e-4
    # with tone: gains and offset the GT was made with are their own targets
    pred = torch.zeros(2, 192 + 2 + 9, 2, 2)
    pred[:, 194:197] = 0.2                                         # gains of a (RGB)
    pred[:, 200:203] = -0.1                                        # offsets
    parts = fullres_parts(pred, [a, b], 8, tone=True)
    gt = parts["out"]
    terms = head_distill({**parts, "inputs": [a, b]}, pred[:, 192:], gt, 8, 0.0)
    assert terms["distill_tone"] < 0.02


def test_training_items_get_the_candidates_of_their_prompt():
    rng = np.random.default_rng(0)
    a, b = texture(40, 40, 0, seed=6), texture(40, 40, 3, seed=7)
    item = {"a": torch.from_numpy(a)[None].repeat(3, 1, 1),
            "b": torch.from_numpy(b).permute(2, 0, 1), "task": "vif",
            "prompt": "Suppress the stripes in the IR input and fuse them."}
    add_candidates(item, DiTConfig(**GATES))
    fa, _, ts = candidates(a, b, {"a": ["stripes"], "b": []}, "gff")
    assert torch.equal(item["fa"][0], torch.from_numpy(fa)) and torch.equal(item["fb"], item["b"])
    assert torch.allclose(item["ts"], torch.from_numpy(ts).permute(2, 0, 1))
    assert item["ts_on"] == 1
    del rng
    # fix gates only: no teacher is computed
    fixes_only = add_candidates({k: item[k] for k in ("a", "b", "task", "prompt")},
                                DiTConfig(fix_gates=True))
    assert torch.equal(fixes_only["fa"], item["fa"])
    assert "ts" not in fixes_only and "ts_on" not in fixes_only


def test_teacher_only_where_a_degradation_is_named():
    """teacher_named: with nothing named the teacher is not run, the fixes' mean stands in for
    it and the gate is closed, so the output is the base blend whatever the gate logit."""
    a, b = texture(24, 24, 0, seed=1), texture(24, 24, 3, seed=2)
    _, _, ts, on = head_candidates(a, b, {"a": [], "b": []}, "gff", named_only=True)
    assert not on and np.allclose(ts, (a[..., None] + b) / 2)
    _, _, ts, on = head_candidates(a, b, {"a": ["noise"], "b": []}, "gff", named_only=True)
    assert on and np.array_equal(ts, candidates(a, b, {"a": ["noise"]}, "gff")[2])
    assert head_candidates(a, b, {}, "gff")[3]  # without named_only the gate is always open
    x, y, fx, fy, tt = _batch(16, 16, seed=4)
    pred = torch.zeros(2, 192 + 5, 2, 2)
    pred[:, 196] = 5.0
    parts = fullres_parts(pred, [x, y], 8, [fx, fy], tt, teacher_on=torch.tensor([0.0, 1.0]))
    assert torch.equal(parts["out"][0], parts["base"][0])
    assert torch.allclose(parts["out"][1], tt[1], atol=1e-6)
    for item_prompt, want in (("Fuse them.", 0), ("Denoise the visible image, then fuse.", 1)):
        item = {"a": torch.from_numpy(a)[None].repeat(3, 1, 1),
                "b": torch.from_numpy(b).permute(2, 0, 1), "task": "vif", "prompt": item_prompt}
        assert add_candidates(item, DiTConfig(**GATES, teacher_named=True))["ts_on"] == want
    with pytest.raises(InputError, match="teacher_named"):
        DiTConfig(teacher_named=True)


def test_pipeline_with_gates_keeps_odd_sizes_and_uses_the_prompt():
    from mmaif.inference.pipeline import FusionPipeline

    pipe = FusionPipeline(perturb(FusionDiT(tiny_full(**GATES, evidence_f=8))))
    rng = np.random.default_rng(0)
    for h, w in ((37, 53), (17, 9)):
        a, b = rng.random((h, w), np.float32), rng.random((h, w, 3), np.float32)
        out = pipe(a, b, prompt="remove the stripes from the infrared image", task="vif",
                   output="numpy")
        assert out.shape == (h, w, 3) and np.isfinite(out).all()
    c = pipe.candidates(a, b, "denoise the visible image", "vif")
    assert torch.equal(c["fixes"][0][0, 0], torch.from_numpy(a) * 2 - 1)  # a untouched
    assert not torch.equal(c["fixes"][1], pipe.candidates(a, b, "", "vif")["fixes"][1])
    assert c["teacher_on"].item() == 1
    named = FusionPipeline(perturb(FusionDiT(tiny_full(**GATES, teacher_named=True,
                                                       evidence_f=8))))
    assert named.candidates(a, b, "", "vif")["teacher_on"].item() == 0
    out = named(a, b, prompt="", task="vif", output="numpy", tile=32, overlap=8,
                tile_threshold=0)
    assert out.shape == (*a.shape[:2], 3) and np.isfinite(out).all()


def test_gates_need_the_fullres_head():
    with pytest.raises(InputError, match="fullres"):
        DiTConfig(head="latent", fix_gates=True)


def test_tiles_are_cut_lazily_and_blend_to_the_untiled_image():
    """The tile path of ``pipe(...)`` (arrays cut and converted per tile) equals
    ``fuse_tensors`` on whole tensors; with a head at zero (the inputs' mean, a per-pixel
    map) the blended tiles give the untiled image, so the ramps' weights sum to one."""
    from mmaif.inference.pipeline import FusionPipeline, rgb_tensor

    rng = np.random.default_rng(3)
    a, b = rng.random((70, 90), np.float32), rng.random((70, 90, 3), np.float32)
    tiles = dict(tile=32, overlap=8, tile_threshold=0)
    pipe = FusionPipeline(perturb(FusionDiT(tiny_full(**GATES, evidence_f=8))))
    out = pipe(a, b, prompt="denoise the infrared image", task="vif", output="numpy", **tiles)
    ref = pipe.fuse_tensors(rgb_tensor(a), rgb_tensor(b), "denoise the infrared image",
                            cands=pipe.candidates(a, b, "denoise the infrared image", "vif"),
                            **tiles)
    assert np.allclose(out, ((ref[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy(),
                       atol=1e-6)
    flat = FusionPipeline(FusionDiT(tiny_full(evidence_f=8)))
    with torch.no_grad():
        flat.model.out.weight.zero_()
        flat.model.out.bias.zero_()
    whole = flat(a, b, prompt="", task="vif", output="numpy")
    assert np.allclose(flat(a, b, prompt="", task="vif", output="numpy", **tiles), whole,
                       atol=1e-5)
    assert np.allclose(whole, (a[..., None] + b) / 2, atol=1e-5)


@pytest.mark.parametrize("n,tile,overlap,m", [(3000, 512, 64, 16), (2000, 512, 32, 16),
                                              (513, 512, 64, 16), (4000, 96, 32, 1),
                                              (1000, 512, 256, 16)])
def test_tile_spans_cover_with_the_overlap_and_few_pixels(n, tile, overlap, m):
    from mmaif.inference.pipeline import tile_spans

    spans = tile_spans(n, tile, overlap, m)
    sizes = {e - s for s, e in spans}
    assert len(sizes) == 1 and max(sizes) <= tile and spans[0][0] == 0 and spans[-1][1] == n
    assert all(e1 - s2 >= overlap for (_, e1), (s2, _) in itertools.pairwise(spans))
    # no more tiles than strides of (tile - overlap) need
    assert len(spans) == -(-(n - overlap) // (tile - overlap))


def test_training_a_gated_model_with_the_teacher_only_where_named(four, tmp_path):
    """The loader adds each item's candidates (the teacher only for named degradations), the
    distillation terms of every gate are logged, and the run's model fuses."""
    from mmaif.inference.pipeline import FusionPipeline
    from mmaif.training.trainer import train

    model = dict(dim=32, depth=2, heads=2, adaln_rank=8, evidence=["laplacian", "exposure"],
                 **GATES, teacher_named=True)
    out = train(small(four, tmp_path / "run", max_steps=2, distill_weight=1.0, log_every=1,
                      prompt_dropout=0.5, model=model), progress="none")
    assert {"distill_fix_a", "distill_fix_b", "distill_teacher"} <= set(out["last"])
    assert all(np.isfinite(v) for v in out["last"].values())
    pipe = FusionPipeline.from_pretrained(tmp_path / "run")
    assert pipe.model.cfg.teacher_named
    a, b = texture(21, 35, 0, seed=1), texture(21, 35, 3, seed=2)
    assert pipe(a, b, task="vif", output="numpy").shape == (21, 35, 3)


def test_full_candidates_are_the_whole_samples_cropped(four, tmp_path):
    """full_candidates: the run writes each sample's candidates once, computed on the whole
    sample for its own prompt; a training item carries them cropped with it (as inference
    computes them on the whole image), and an item whose prompt was dropped computes its own
    on the crop."""
    import shutil

    from mmaif.data.images import read_image
    from mmaif.errors import UsageError
    from mmaif.synthesis.synth import read_manifest
    from mmaif.training.config import TrainConfig
    from mmaif.training.data import make_dataset, make_loader, prepare_candidates
    from mmaif.training.trainer import train

    data = shutil.copytree(four, tmp_path / "data")
    model = dict(dim=32, depth=2, heads=2, adaln_rank=8, evidence=["laplacian"], **GATES,
                 teacher_named=True)
    cfg = small(data, tmp_path / "run", max_steps=1, crop=32, distill_weight=1.0,
                prompt_dropout=0.5, full_candidates=True, model=model)
    train(cfg, progress="none")
    rows = {r["id"]: r for r in read_manifest(data / "manifest.jsonl")}
    assert len(list((data / "candidates" / "ts").glob("*.png"))) == len(rows)
    assert prepare_candidates(cfg, progress=False) == 0  # written once

    whole = {}
    for i, r in rows.items():
        a, b = (read_image(data / k / f"{i}.png").data for k in ("a", "b"))
        names = named_degradations(r["prompt"], r["task"])
        whole[i] = (read_image(data / "gt" / f"{i}.png").data,
                    candidates(a, b, names, "gff")[2])
    seen = {True: 0, False: 0}
    for epoch in range(3):
        loader = make_loader(make_dataset(cfg), cfg, 0, 1, epoch, 0, torch.device("cpu"),
                             candidates=DiTConfig(**GATES, teacher_named=True))
        for _ in range(len(rows) // cfg.batch):
            for item in next(iter(loader))[1]:
                gt, ts = whole[item["id"]]
                y, x = next((y, x) for y in range(33) for x in range(33) if np.allclose(
                    gt[y:y + 32, x:x + 32].transpose(2, 0, 1), item["gt"].numpy(), atol=1e-6))
                on_crop = ts[y:y + 32, x:x + 32].transpose(2, 0, 1)
                own = item["prompt"] == rows[item["id"]]["prompt"]
                seen[own] += 1
                if own:  # the whole sample's teacher (8-bit), cropped with the item
                    assert np.abs(item["ts"].numpy() - on_crop).max() <= 0.5 / 255 + 1e-6
                else:  # dropped prompt: nothing named, the gate closed, the inputs' mean
                    assert item["ts_on"] == 0
                    assert torch.allclose(item["ts"], (item["a"] + item["b"]) / 2, atol=1e-6)
    assert seen[True] and seen[False]
    with pytest.raises(UsageError, match="full_candidates"):
        TrainConfig(src=[str(tmp_path)], full_candidates=True).check()
    with pytest.raises(UsageError, match="no fix_gates"):
        train(small(data, tmp_path / "run2", max_steps=1, full_candidates=True),
              progress="none")


@pytest.mark.parametrize("teacher_weight", [None, 0.0, 3.0])
def test_the_teacher_gates_distillation_has_its_own_weight(four, tmp_path, teacher_weight):
    """teacher_distill_weight weighs the teacher gate's term alone (default: distill_weight):
    the loss a step logs is its terms, weighted so."""
    from mmaif.training.trainer import train

    model = dict(dim=32, depth=2, heads=2, adaln_rank=8, evidence=["laplacian"], **GATES)
    cfg = small(four, tmp_path / "run", max_steps=1, distill_weight=0.5, log_every=1,
                teacher_distill_weight=teacher_weight, model=model)
    t = train(cfg, progress="none")["last"]
    tw = 0.5 if teacher_weight is None else teacher_weight
    want = (t["main"] + cfg.balance_weight * t["balance"]
            + 0.5 * (t["distill"] + t["distill_fix_a"] + t["distill_fix_b"])
            + tw * t["distill_teacher"])
    assert t["distill_teacher"] > 0
    assert t["loss"] == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_teacher_distill_weight_must_not_be_negative(tmp_path):
    from mmaif.training.config import TrainConfig

    with pytest.raises(UsageError, match=r"--teacher-distill-weight -1\.0: must be 0 or more"):
        TrainConfig(data=str(tmp_path), teacher_distill_weight=-1.0).check()


def test_guided_upsampling_follows_the_guides_edge_inside_a_cell():
    """A map that steps between two 8-pixel cells ramps over 8 pixels when upsampled
    bilinearly; guided by an image whose edge lies inside that ramp, it steps at the edge and
    stays low before it. A constant map stays constant."""
    from mmaif.model.head import guided_upsample

    guide = torch.zeros(1, 1, 32, 64)
    guide[..., 30:] = 1.0                                     # the guide's edge: column 30
    cells = torch.zeros(1, 1, 4, 8)
    cells[..., 4:] = 1.0                                      # the map's: column 32
    bil = F.interpolate(cells, size=(32, 64), mode="bilinear", align_corners=False)
    gui = guided_upsample(cells, guide, r=8)
    assert gui.shape == (1, 1, 32, 64)
    jump = lambda m: (m[..., 30] - m[..., 29]).mean()         # noqa: E731
    assert jump(gui) > 0.5 and jump(bil) < 0.15
    assert gui[..., 20:30].max() < 0.1 < bil[..., 20:30].max()
    const = torch.full((2, 3, 4, 8), 0.7)
    torch.testing.assert_close(guided_upsample(const, guide.expand(2, 1, 32, 64), 8),
                               torch.full((2, 3, 32, 64), 0.7))


def test_guided_head_keeps_sizes_warm_starts_and_passes_gradients():
    """upsample='guided': at pred = 0 the output is still the inputs' mean (a warm start from
    a bilinear model changes nothing there), every head channel gets a gradient, and the
    pipeline keeps odd sizes."""
    from mmaif.inference.pipeline import FusionPipeline

    a, b = torch.rand(2, 3, 24, 40) * 2 - 1, torch.rand(2, 3, 24, 40) * 2 - 1
    fa, fb, ts = (torch.rand(2, 3, 24, 40) * 2 - 1 for _ in range(3))
    zero = torch.zeros(2, 192 + 5, 3, 5)
    out = fullres_parts(zero, [a, b], 8, [fa, fb], ts, upsample="guided")["out"]
    torch.testing.assert_close(out, (a + b) / 2)
    pred = (torch.randn(2, 192 + 5, 3, 5) * 0.3).requires_grad_()
    fullres_parts(pred, [a, b], 8, [fa, fb], ts, upsample="guided")["out"].square().sum() \
        .backward()
    assert (pred.grad[:, 192:].abs().flatten(2).sum(-1) > 0).all()
    pipe = FusionPipeline(perturb(FusionDiT(tiny_full(**GATES, evidence_f=8,
                                                      upsample="guided"))))
    x, y = np.random.default_rng(0).random((2, 37, 53, 3), np.float32)
    out = pipe(x, y, prompt="remove the stripes from the infrared image", task="vif",
               output="numpy")
    assert out.shape == (37, 53, 3) and np.isfinite(out).all()
    with pytest.raises(InputError, match="upsample='nearest'"):
        DiTConfig(upsample="nearest")
