"""Stacks of N >= 2 images (exposure brackets, focus stacks): rendering, discovery, the pair
model's reduction (tree / chain) and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from mmaif.data.images import read_image
from mmaif.errors import InputError

from .conftest import save, texture


class _Recorder:
    """A stand-in pair fusion for FusionPipeline.fuse_stack: records what it fuses (as the
    mean brightness of each input) and returns the mean of the two."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, y, prompt, task, output="pil", progress=True, **kw):
        self.calls.append((round(float(x.mean()), 4), round(float(y.mean()), 4), prompt, task,
                           output))
        return (x + y) / 2


def _shots(n, h=9, w=11):
    return [np.full((h, w, 3), 0.1 * (k + 1), np.float32) for k in range(n)]


@pytest.mark.parametrize("order, want", [
    ("tree", [(0.1, 0.2), (0.3, 0.4), (0.15, 0.35)]),
    ("chain", [(0.1, 0.2), (0.15, 0.3), (0.225, 0.4)]),
])
def test_a_stack_is_n_minus_1_pair_fusions_in_order(order, want):
    from mmaif.inference.pipeline import FusionPipeline

    rec = _Recorder()
    shots = _shots(4)
    shuffled = [shots[k] for k in (2, 0, 3, 1)]
    FusionPipeline.fuse_stack(rec, shuffled, "p", "mef", order=order, output="numpy",
                              progress=False)
    # exposure shots are sorted darkest first; every step gets the prompt and the task; only
    # the last step converts to the asked output
    assert [c[:2] for c in rec.calls] == [pytest.approx(p) for p in want]
    assert {c[2:4] for c in rec.calls} == {("p", "mef")}
    rec.calls.clear()
    FusionPipeline.fuse_stack(rec, shuffled, None, "mff", order=order, output="pil",
                              progress=False)
    assert rec.calls[0][:2] == pytest.approx((0.3, 0.1))  # focus slices keep their order
    assert [c[4] for c in rec.calls] == ["numpy", "numpy", "pil"]


def test_odd_stacks_carry_the_last_image_up_the_tree():
    from mmaif.inference.pipeline import FusionPipeline

    rec = _Recorder()
    FusionPipeline.fuse_stack(rec, _shots(5), None, "mff", order="tree", progress=False)
    assert [c[:2] for c in rec.calls] == [pytest.approx(p) for p in
                                          [(0.1, 0.2), (0.3, 0.4), (0.15, 0.35), (0.25, 0.5)]]


@pytest.fixture(scope="module")
def pipe():
    from mmaif.inference.pipeline import FusionPipeline

    return FusionPipeline.from_pretrained()


def test_the_model_on_stacks(pipe):
    """Two images through the stack path are exactly the pair path; three of an odd size give
    an output of that size; one image, mixed sizes, a bad order and VIF stacks are errors."""
    base = texture(33, 47, 3, seed=4)
    under, mid, over = (np.clip(base * g, 0, 1).astype(np.float32) for g in (0.4, 1.0, 1.7))
    pair = pipe(under, over, task="mef", output="numpy", progress=False)
    assert np.array_equal(pipe([under, over], task="mef", output="numpy", progress=False), pair)
    for order in ("tree", "chain"):
        out = pipe([over, under, mid], task="mef", output="numpy", order=order, progress=False)
        assert out.shape == (33, 47, 3) and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    img = pipe([under, mid, over], progress=False)  # task guessed, PIL out
    assert img.size == (47, 33)
    for args, kw, phrase in (([under], {}, "two or more"),
                             ([under, mid[:, :40]], {}, "sizes differ"),
                             ([under, mid, over], {"order": "spiral"}, "order="),
                             ([under, mid, over], {"task": "vif"}, "VIF fuses two")):
        with pytest.raises(InputError, match=phrase):
            pipe(args, progress=False, **kw)


def test_focus_slices_are_sharp_in_their_depth_band():
    from mmaif.data.stacks import exposure_pair, exposure_stack, focus_stack

    img = texture(40, 60, 3, seed=2)
    depth = np.zeros((40, 60))
    depth[:, 30:] = 0.9  # left in band 0 of 3, right in band 2
    near, mid, far = focus_stack(img, depth, 3, sigma=2.0)
    assert np.abs(near[:, :25] - img[:, :25]).max() < 1e-6
    assert np.abs(far[:, 35:] - img[:, 35:]).max() < 1e-6
    assert np.abs(near[:, 35:] - img[:, 35:]).mean() > 0.02  # out of focus there
    assert np.abs(mid - img).mean() > 0.01
    shots = exposure_stack(img, 5, 2.0)
    assert np.all(np.diff([s.mean() for s in shots]) > 0)  # darkest first
    assert all(np.array_equal(x, y) for x, y in zip(exposure_stack(img, 2, 1.5),
                                                     exposure_pair(img, 1.5), strict=True))


def test_rendered_stacks_are_found_and_fused_folder_by_folder(cli, tmp_path):
    from mmaif.classical.fusion import fuse_stack
    from mmaif.data.pairs import discover_stacks
    from mmaif.data.stacks import STACK_PHOTOS

    code, _, err = cli("stacks", "--out", tmp_path / "st", "--variants", "1", "--shots", "3")
    assert code == 0 and "3-shot stacks" in err, err
    layout, stacks = discover_stacks(tmp_path / "st")
    assert len(stacks) == 2 * len(STACK_PHOTOS) and "mef/" in layout
    st = next(s for s in stacks if s.task == "mef")
    assert [f.name for f in st.files] == ["shot_0.png", "shot_1.png", "shot_2.png"]
    means = [read_image(f).data.mean() for f in st.files]
    assert means[0] < means[1] < means[2]
    code, _, err = cli("stacks", "--out", tmp_path / "bad", "--shots", "12")
    assert code == 2 and "--shots 12" in err
    # a generic root: one folder per stack, numbers sorted as numbers
    root = tmp_path / "brackets"
    base = texture(24, 30, 3, seed=1)
    for name in ("x", "y"):
        for k, g in ((2, 1.0), (10, 1.6), (1, 0.5)):
            save(root / name / f"shot_{k}.png", np.clip(base * g, 0, 1).astype(np.float32))
    _, found = discover_stacks(root, "mef")
    assert [f.name for f in found[0].files] == ["shot_1.png", "shot_2.png", "shot_10.png"]
    code, _, err = cli("fuse", root, "--method", "mertens", "--task", "mef",
                       "-o", tmp_path / "out", "--progress", "none")
    assert code == 0 and "2 stacks" in err, err
    want = fuse_stack([read_image(f).data for f in found[0].files], "mertens")
    got = read_image(tmp_path / "out" / "x.png").data
    assert np.abs(got - want).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(InputError, match="VIF fuses pairs"):
        discover_stacks(root, "vif")
    code, _, err = cli("fuse", tmp_path / "out", "-o", tmp_path / "o2")  # images, no folders
    assert code == 2 and "no known dataset layout" in err and "nor stack folders" in err


def test_eval_on_stacks_scores_n_shots_against_the_teacher_on_n(cli, src, tmp_path):
    import csv
    import io

    (tmp_path / "pairs.txt").write_text("mef/p0\nmff/p1\nvif/p0\n")
    code, out, err = cli("eval", "--data", src, "--stacks", "2,3", "--pairs",
                         tmp_path / "pairs.txt", "--out", tmp_path / "e")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "e" / "stacks.csv").read_text())))
    # one MEF and one MFF scene (the VIF pair is skipped); N = 2: three methods, N = 3: four
    assert len(rows) == 2 * (3 + 4)
    model = {"mmaif-reg N (tree)", "mmaif-reg N (chain)", "mmaif-reg extremes"}
    assert {r["method"] for r in rows if r["n"] == "2"} == model
    assert {r["method"] for r in rows if r["task"] == "mff" and r["n"] == "3"} == \
        model | {"gff extremes"}
    assert all(np.isfinite(float(r["psnr"])) for r in rows)
    # a 3-slice focus stack's middle slice carries detail the extremes lack
    assert all(float(r["psnr"]) < 60 for r in rows if r["method"] == "gff extremes")
    # two shots: the stack path is the pair path
    two = {r["method"]: r["psnr"] for r in rows if r["n"] == "2" and r["task"] == "mef"}
    assert two["mmaif-reg N (tree)"] == two["mmaif-reg N (chain)"] == two["mmaif-reg extremes"]
    assert "| MEF | mmaif-reg N (tree) |" in out and "N = 3" in out
    for spec in ("1,2", "two", "10"):
        code, _, err = cli("eval", "--data", src, "--stacks", spec, "--out", tmp_path / "f")
        assert code == 2 and "--stacks" in err and len(err.strip().splitlines()) == 1
