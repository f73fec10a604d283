"""The degradation detector: it learns a toy set, its prompt is deterministic, its run resumes
exactly, and `mmaif detect` prints the documented JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from mmaif.errors import InputError
from mmaif.model.detector import (
    TYPES,
    Detection,
    DetectorConfig,
    detections_prompt,
    detections_records,
    feature_count,
    image_features,
    labels,
    load_detector,
    type_scores,
)
from mmaif.training.detector import DetectorTrainConfig, train_detector

from .conftest import save, texture


def _toy(root, n=36, seed=0):
    """A synth-like folder: MFF pairs whose a is clean, noisy or blurred (b always clean)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = ("clean", "noise", "gaussian_blur")[i % 3]
        img = ndimage.gaussian_filter(texture(48, 64, 3, seed=seed * 1000 + i), (0.7, 0.7, 0))
        a = img.copy()
        if kind == "noise":
            a = np.clip(a + rng.normal(0, 0.08, a.shape), 0, 1)
        elif kind == "gaussian_blur":
            a = ndimage.gaussian_filter(a, (2.5, 2.5, 0))
        sid = f"{i:06d}"
        for k, arr in (("a", a), ("b", img), ("gt", img)):
            save(root / k / f"{sid}.png", arr.astype(np.float32))
        ops = [] if kind == "clean" else [{"name": kind, "target": "a", "severity": "heavy"}]
        rows.append({"id": sid, "task": "mff", "ops": ops, "prompt": "", "seed": seed,
                     "index": i})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_features_are_finite_and_sized_for_any_image():
    for x in (torch.rand(3, 37, 53), torch.rand(41, 29), torch.rand(3, 700, 300)):
        f = image_features(x)
        assert f.shape == (feature_count(),) and torch.isfinite(f).all()


def test_labels_from_manifest_ops():
    ops = [{"name": "haze", "target": "both", "severity": "slight"},
           {"name": "noise", "target": "a", "severity": "heavy"}]
    present, severity = labels(ops, TYPES, ("slight", "moderate", "heavy"))
    h, n = TYPES.index("haze"), TYPES.index("noise")
    assert present[0, h] == present[1, h] == present[0, n] == 1 and present[1, n] == 0
    assert present.sum() == 3 and severity[0, n] == 2 and severity[1, h] == 0
    assert severity[1, n] == -1


@pytest.mark.slow
def test_detector_learns_noise_vs_blur_vs_clean(tmp_path):
    data = _toy(tmp_path / "train", n=90)
    test = _toy(tmp_path / "test", n=30, seed=1)
    cfg = DetectorTrainConfig(data=[str(data)], out=str(tmp_path / "run"), epochs=80, batch=32,
                              val_share=0.0, seed=0)
    train_detector(cfg, progress="none")
    det = load_detector(tmp_path / "run")
    right = 0
    for i in range(30):
        want = ("clean", "noise", "gaussian_blur")[i % 3]
        from mmaif.data.images import read_image

        a, b = (read_image(test / k / f"{i:06d}.png").data for k in ("a", "b"))
        found = det.detect(a, b, "mff")
        got = {d.type for d in found["a"]}
        right += got == (set() if want == "clean" else {want}) and not found["b"]
    assert right / 30 > 0.9, right


def test_training_resumes_exactly_and_reports_scores(tmp_path):
    data = _toy(tmp_path / "d", n=12)
    full = DetectorTrainConfig(data=[str(data)], out=str(tmp_path / "full"), epochs=4, batch=8)
    train_detector(full, progress="none")
    part = DetectorTrainConfig(data=[str(data)], out=str(tmp_path / "part"), epochs=4, batch=8)
    train_detector(part, progress="none", stop_after=2)
    assert json.loads((tmp_path / "part/checkpoint.json").read_text())["epoch"] == 2
    scores = train_detector(part, resume=True, progress="none")
    assert (tmp_path / "part/features").is_dir()  # computed once, then read from the cache
    a, b = load_detector(tmp_path / "full"), load_detector(tmp_path / "part")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert set(scores) >= {"micro", "noise", "severity_accuracy", "held_out_samples"}
    saved = json.loads((tmp_path / "part/metrics.json").read_text())
    assert saved["micro"]["support"] == scores["micro"]["support"]


def test_type_scores():
    pred = np.array([[1, 0], [1, 1], [0, 0]])
    true = np.array([[1, 0], [0, 1], [1, 0]])
    s = type_scores(pred, true, ("x", "y"))
    assert s["x"]["precision"] == 0.5 and s["x"]["recall"] == 0.5 and s["y"]["f1"] == 1.0
    assert s["micro"]["support"] == 3 and abs(s["micro"]["f1"] - 2 * 2 / (2 * 2 + 1 + 1)) < 1e-9


def test_auto_prompt_is_deterministic_and_follows_the_task():
    found = {"a": [Detection("stripes", "heavy", 0.9), Detection("haze", "slight", 0.6)],
             "b": [Detection("haze", "moderate", 0.8), Detection("noise", "slight", 0.7)]}
    recs = detections_records("vif", found)
    # haze belongs to the visible image in VIF, stripes to the infrared one; physical order
    assert [(r["name"], r["target"]) for r in recs] == [("haze", "b"), ("stripes", "a"),
                                                        ("noise", "b")]
    p = detections_prompt("vif", found)
    assert p == detections_prompt("vif", found) and p.endswith(".")
    from mmaif.data.degrade.names import named_degradations

    assert named_degradations(p, "vif") == {"a": ["stripes"], "b": ["haze", "noise"]}
    both = {"a": [Detection("noise", "slight", 0.7)], "b": [Detection("noise", "heavy", 0.8)]}
    assert detections_records("mef", both)[0]["target"] == "both"
    # MEF weather is the shared scene's: found on one shot, it is named for both
    assert detections_records("mef", {"a": [Detection("rain", "slight", 0.9)], "b": []}) \
        == [{"name": "rain", "target": "both", "severity": "slight"}]
    nothing = {"a": [], "b": []}
    assert detections_prompt("mff", nothing) == "Fuse the images into an all-in-focus image."


def test_detect_cli_json_and_errors(cli, tmp_path):
    data = _toy(tmp_path / "d", n=6)
    train_detector(DetectorTrainConfig(data=[str(data)], out=str(tmp_path / "run"), epochs=2,
                                       batch=8), progress="none")
    a, b = data / "a/000001.png", data / "b/000001.png"
    code, out, err = cli("detect", a, b, "--task", "mff", "--json", "--model", tmp_path / "run")
    assert code == 0, err
    obj = json.loads(out)
    assert set(obj) == {"task", "a", "b", "prompt"} and obj["task"] == "mff"
    for d in obj["a"] + obj["b"]:
        assert set(d) == {"type", "severity", "p"} and d["type"] in TYPES
        assert d["severity"] in ("slight", "moderate", "heavy") and 0.5 <= d["p"] <= 1
    code, out, _ = cli("detect", a, b, "--task", "mff", "--model", tmp_path / "run")
    assert code == 0 and out.splitlines()[0].startswith("a (near focus): ")
    assert out.splitlines()[-1].startswith("prompt: ")
    run = ["--model", tmp_path / "run"]
    for args, phrase in (([a, b, "--model", tmp_path], "no degradation detector"),
                         ([a, b, *run, "--max-pixels", "0"], "--max-pixels"),
                         ([a, b, a, *run], "two image files"),
                         ([a, tmp_path / "none.png", *run], "none.png")):
        code, _, err = cli("detect", *args)
        assert code == 2 and phrase in err and len(err.strip().splitlines()) == 1, err
    code, _, err = cli("train-detector", "--data", tmp_path / "nope", "--out", tmp_path / "r2")
    assert code == 2 and "manifest.jsonl" in err
    code, _, err = cli("train-detector", "--data", data, "--out", tmp_path / "r3",
                       "--resume")
    assert code == 2 and "no checkpoint" in err


def test_detector_config_round_trip_and_feature_version(tmp_path):
    from mmaif.model.detector import DegradationDetector, save_detector

    cfg = DetectorConfig(hidden=16)
    assert DetectorConfig.from_dict(json.loads(json.dumps(cfg.__dict__))) == cfg
    save_detector(DegradationDetector(DetectorConfig(hidden=8, features="older")), tmp_path)
    with pytest.raises(InputError, match="retrain"):
        load_detector(tmp_path)


def test_pipeline_prompt_auto_uses_the_detector_and_keeps_it(cli, tmp_path):
    from mmaif.inference.pipeline import FusionPipeline
    from mmaif.model.dit import FusionDiT, make_config

    from .conftest import perturb

    data = _toy(tmp_path / "d", n=6)
    train_detector(DetectorTrainConfig(data=[str(data)], out=str(tmp_path / "run"), epochs=2,
                                       batch=8), progress="none")
    torch.manual_seed(0)
    model = perturb(FusionDiT(make_config("tiny", dim=32, depth=1, heads=2, adaln_rank=8)))
    pipe = FusionPipeline(model)
    rng = np.random.default_rng(0)
    a, b = rng.random((24, 40, 3), np.float32), rng.random((24, 40, 3), np.float32)
    with pytest.raises(InputError, match="no degradation detector"):
        pipe(a, b, prompt="auto", task="mff")
    pipe.detector = load_detector(tmp_path / "run")
    task, found, prompt = pipe.detect(a, b, "mff")
    assert task == "mff" and set(found) == {"a", "b"} and prompt
    auto = pipe(a, b, prompt="auto", task="mff", output="numpy")
    assert np.array_equal(auto, pipe(a, b, prompt=prompt, task="mff", output="numpy"))
    pipe.save_pretrained(tmp_path / "p")
    again = FusionPipeline.from_pretrained(tmp_path / "p")
    assert again.detector is not None
    # its training config travels with it (the shipped detector's record of how it was made)
    assert pipe.detector.trained_with["epochs"] == 2
    assert again.detector.trained_with == pipe.detector.trained_with
    for k, v in pipe.detector.state_dict().items():
        assert torch.equal(v, again.detector.state_dict()[k]), k
    save(tmp_path / "x/a.png", a)
    save(tmp_path / "x/b.png", b)
    code, _, err = cli("fuse", tmp_path / "x/a.png", tmp_path / "x/b.png", "--task", "mff",
                       "--model", tmp_path / "p", "--prompt", "auto", "-o", tmp_path / "f.png")
    assert code == 0 and "prompt: " in err and "detected a: " in err, err
    (tmp_path / "p2").mkdir()
    pipe.detector = None
    pipe.save_pretrained(tmp_path / "p2")
    code, _, err = cli("fuse", tmp_path / "x/a.png", tmp_path / "x/b.png", "--task", "mff",
                       "--model", tmp_path / "p2", "--prompt", "auto", "-o", tmp_path / "g.png")
    assert code == 2 and "no degradation detector" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "g.png").exists()
