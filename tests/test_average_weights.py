"""scripts/average_weights.py: two models' weights averaged into a pipeline folder that loads
and computes with exactly those weights; bad arguments are one-line errors with nothing
written."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from mmaif.inference.pipeline import FusionPipeline
from mmaif.model.dit import FusionDiT, make_config

from .conftest import REPO, perturb


def _script():
    spec = importlib.util.spec_from_file_location("average_weights",
                                                  REPO / "scripts" / "average_weights.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _saved(folder, std, **kw):
    torch.manual_seed(0)
    model = FusionDiT(make_config("tiny", dim=32, depth=1, heads=2, adaln_rank=8, **kw))
    FusionPipeline(perturb(model, std)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    root = tmp_path_factory.mktemp("avg")
    return _saved(root / "first", 0.05), _saved(root / "second", 0.2), root


def test_average_is_the_weighted_mean_and_records_its_sources(two, capsys):
    first, second, root = two
    main = _script().main
    sa = FusionPipeline.from_pretrained(first).model.state_dict()
    sb = FusionPipeline.from_pretrained(second).model.state_dict()
    assert any(not torch.equal(sa[k], sb[k]) for k in sa)
    for alpha in (0.0, 0.25, 1.0):
        out = root / f"mix{alpha}"
        assert main([str(first), str(second), "--alpha", str(alpha), "--out", str(out)]) == 0
        mixed = FusionPipeline.from_pretrained(out)
        for k, v in mixed.model.state_dict().items():
            torch.testing.assert_close(v, (1 - alpha) * sa[k] + alpha * sb[k], rtol=0,
                                       atol=1e-7, msg=k)
        meta = json.loads((out / "config.json").read_text())["training"]["average"]
        assert meta["alpha"] == alpha and meta["first"] == str(first)
    assert not list(root.glob(".*.tmp"))  # written atomically


@pytest.mark.parametrize("args,message", [
    (["--alpha", "1.5"], "--alpha 1.5: give a number in [0, 1]"),
    (["--alpha", "nan"], "--alpha nan"),
])
def test_bad_alpha_is_a_usage_error(two, capsys, args, message):
    first, second, root = two
    with pytest.raises(SystemExit) as e:
        _script().main([str(first), str(second), *args, "--out", str(root / "bad")])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (root / "bad").exists()


def test_existing_out_and_other_architecture_are_refused(two, tmp_path, capsys):
    first, second, _ = two
    main = _script().main
    with pytest.raises(SystemExit) as e:
        main([str(first), str(second), "--out", str(first)])
    assert e.value.code == 2 and "exists" in capsys.readouterr().err
    other = _saved(tmp_path / "other", 0.05, evidence=["laplacian"])
    with pytest.raises(SystemExit) as e:
        main([str(first), str(other), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "differ at" in err and "one architecture" in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_crashed_runs_leftovers_do_not_end_up_in_the_folder(two):
    first, second, root = two
    stale = root / ".fresh.tmp"
    (stale / "tokenizer").mkdir(parents=True)
    (stale / "tokenizer" / "old.bin").write_bytes(b"from a crashed run")
    assert _script().main([str(first), str(second), "--out", str(root / "fresh")]) == 0
    assert not (root / "fresh" / "tokenizer").exists() and not stale.exists()
    FusionPipeline.from_pretrained(root / "fresh")
