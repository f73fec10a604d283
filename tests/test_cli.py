from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from mmaif.data.images import read_image

from .conftest import SAMPLES, digest, need, save, texture

KEYS = ["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR", "CE", "EI", "RMSE",
        "Qcb", "Qcv"]


@pytest.fixture
def pair(tmp_path):
    a = save(tmp_path / "ir.png", texture(30, 44, 0, 1))
    b = save(tmp_path / "vi.png", texture(30, 44, 3, 2))
    return a, b


def _bomb_png(path: Path, width=60000, height=60000) -> Path:
    """A valid-looking PNG header declaring 3.6 G pixels, with a tiny body."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_fuse_pair_keeps_size_and_colour(cli, pair, tmp_path):
    out = tmp_path / "fused.png"
    code, _, err = cli("fuse", *pair, "-o", out)
    assert code == 0, err
    pic = read_image(out)
    assert pic.size == (44, 30) and pic.data.ndim == 3


def test_out_and_o_are_synonyms(cli, pair, tmp_path):
    assert cli("fuse", *pair, "--out", tmp_path / "x.png")[0] == 0
    assert cli("fuse", *pair, "-o", tmp_path / "y.png")[0] == 0
    assert (tmp_path / "x.png").read_bytes() == (tmp_path / "y.png").read_bytes()


def test_fuse_keeps_16_bits(cli, tmp_path):
    a = save(tmp_path / "a.png", texture(16, 16), bits=16)
    b = save(tmp_path / "b.png", texture(16, 16, 0, 1), bits=16)
    assert cli("fuse", a, b, "-o", tmp_path / "f.png")[0] == 0
    assert read_image(tmp_path / "f.png").bits == 16
    assert cli("fuse", a, b, "-o", tmp_path / "f8.png", "--bits", "8")[0] == 0
    assert read_image(tmp_path / "f8.png").bits == 8


def test_fuse_folder_mode(cli, tmp_path):
    for name in ("001", "002"):
        save(tmp_path / "msrs/ir" / f"{name}.png", texture(20, 24, 0, 1))
        save(tmp_path / "msrs/vi" / f"{name}.png", texture(20, 24, 3, 2))
    code, _, err = cli("fuse", tmp_path / "msrs", "-o", tmp_path / "out", "--method", "laplacian")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["001.png", "002.png"]
    assert "MSRS" in err and "2 pairs" in err


def test_fuse_real_pair_from_shared(cli, tmp_path):
    root = need(SAMPLES)
    a, b = root / "vif/ir/vifb_labMan.png", root / "vif/vi/vifb_labMan.png"
    assert cli("fuse", a, b, "-o", tmp_path / "f.jpg")[0] == 0
    pic = read_image(tmp_path / "f.jpg")
    assert pic.size == read_image(b).size == (640, 480) and pic.data.ndim == 3


def test_metrics_json_keys(cli, pair, tmp_path):
    fused = tmp_path / "f.png"
    cli("fuse", *pair, "-o", fused)
    code, out, _ = cli("metrics", "--a", pair[0], "--b", pair[1], "--fused", fused, "--json")
    assert code == 0
    vals = json.loads(out)  # stdout holds exactly one JSON object
    assert list(vals) == KEYS and all(isinstance(v, float) for v in vals.values())
    code, out, _ = cli("metrics", "--a", pair[0], "--b", pair[1], "--fused", fused,
                       "--gt", pair[1], "--json")
    assert list(json.loads(out)) == [*KEYS, "PSNR_gt", "SSIM_gt"]


def test_metrics_json_is_strict_for_nan_and_inf(cli, pair):
    code, out, _ = cli("metrics", "--a", pair[0], "--b", pair[0], "--fused", pair[0],
                       "--gt", pair[0], "--json")
    assert code == 0
    vals = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert vals["PSNR_gt"] is None  # identical images: infinite PSNR written as null


def test_metrics_folder_mode_writes_csv(cli, tmp_path):
    for name in ("a1", "a2"):
        save(tmp_path / "data/ir" / f"{name}.png", texture(16, 20, 0, 1))
        save(tmp_path / "data/vi" / f"{name}.png", texture(16, 20, 3, 2))
    cli("fuse", tmp_path / "data", "-o", tmp_path / "fused")
    code, _, err = cli("metrics", "--data", tmp_path / "data", "--fused-dir", tmp_path / "fused",
                       "-o", tmp_path / "m.csv")
    assert code == 0, err
    with open(tmp_path / "m.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == ["a1", "a2", "mean"]
    assert float(rows[2]["EN"]) == pytest.approx((float(rows[0]["EN"]) + float(rows[1]["EN"])) / 2,
                                                 rel=1e-5)
    # the same rows from the functions behind the command
    from mmaif.evaluation.measure import csv_text, folder_metrics

    again = folder_metrics(tmp_path / "data", tmp_path / "fused", progress=False)
    assert csv_text(again) == (tmp_path / "m.csv").read_text()


def test_demo_writes_images_and_html(cli, tmp_path):
    code, _, err = cli("demo", "-o", tmp_path / "demo")
    assert code == 0, err
    page = (tmp_path / "demo/index.html").read_text()
    imgs = sorted(p.name for p in (tmp_path / "demo").glob("*.png"))
    assert all(name in page for name in imgs)
    for pair in ("mef_astronaut", "mff_coffee", "vif_chelsea"):
        for tag in ("clean", "degraded"):
            assert {f"{pair}_{tag}_{m}.png" for m in ("a", "b", "gff", "mmaif")} <= set(imgs)
    assert page.count("Prompt:") == 10 and "PSNR_gt" in page


def test_fuse_uses_the_shipped_model_by_default(cli, tmp_path):
    from mmaif.classical.fusion import fuse_arrays
    from mmaif.inference.pipeline import FusionPipeline

    a = save(tmp_path / "ir.png", texture(40, 56, 0, 1))
    b = save(tmp_path / "vi.png", texture(40, 56, 3, 2))
    assert cli("fuse", a, b, "-o", tmp_path / "m.png")[0] == 0
    assert cli("fuse", a, b, "-o", tmp_path / "g.png", "--method", "gff")[0] == 0
    expected = FusionPipeline.from_pretrained()(a, b, output="numpy")
    got = read_image(tmp_path / "m.png").data
    assert np.abs(got - expected).max() <= 1 / 255 + 1e-6  # 8-bit rounding only
    gff = fuse_arrays(read_image(a).data, read_image(b).data, "gff")
    assert np.abs(read_image(tmp_path / "g.png").data - gff).max() <= 1 / 255 + 1e-6
    assert np.abs(got - gff).mean() > 1e-3  # the model is not GFF
    code, _, err = cli("fuse", a, b, "-o", tmp_path / "x.png", "--method", "gff", "--model", "m")
    assert code == 2 and "not both" in err


# ------------------------------------------------------------------------- bad input
def _bad_inputs(tmp_path, good):
    (tmp_path / "notimage.png").write_text("hello, I am text")
    full = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(full[: len(full) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "adir").mkdir()
    return {
        "missing": (tmp_path / "nope.png", "no such file"),
        "directory": (tmp_path / "adir", "is a directory"),
        "non-image": (tmp_path / "notimage.png", "not a readable image"),
        "truncated": (tmp_path / "trunc.png", "truncated or corrupt"),
        "zero-byte": (tmp_path / "empty.png", "empty file"),
        "bomb": (_bomb_png(tmp_path / "bomb.png"), "decompression bomb"),
    }


@pytest.mark.parametrize("case", ["missing", "directory", "non-image", "truncated", "zero-byte",
                                  "bomb"])
def test_bad_input_files(cli, pair, tmp_path, case):
    bad, message = _bad_inputs(tmp_path, pair[1])[case]
    before = digest(pair[0])
    out = tmp_path / "out.png"
    code, _, err = cli("fuse", pair[0], bad, "-o", out)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and digest(pair[0]) == before
    code, _, err = cli("metrics", "--a", pair[0], "--b", bad, "--fused", pair[0], "--json")
    assert code == 2 and message in err


def test_size_mismatch_and_resize(cli, tmp_path):
    a = save(tmp_path / "a.png", texture(20, 30))
    b = save(tmp_path / "b.png", texture(24, 32, 3))
    code, _, err = cli("fuse", a, b, "-o", tmp_path / "f.png")
    assert code == 2 and "30x20" in err and "32x24" in err and "--resize" in err
    assert not (tmp_path / "f.png").exists()
    assert cli("fuse", a, b, "-o", tmp_path / "f.png", "--resize")[0] == 0
    assert read_image(tmp_path / "f.png").size == (30, 20)


def test_one_pixel_images_fuse(cli, tmp_path):
    a = save(tmp_path / "a.png", np.full((1, 1), 0.2, np.float32))
    b = save(tmp_path / "b.png", np.full((1, 1, 3), 0.7, np.float32))
    assert cli("fuse", a, b, "-o", tmp_path / "f.png")[0] == 0
    assert read_image(tmp_path / "f.png").size == (1, 1)
    code, out, _ = cli("metrics", "--a", a, "--b", b, "--fused", tmp_path / "f.png", "--json")
    assert code == 0 and json.loads(out)["SSIM"] is None


@pytest.mark.parametrize("case", ["missing-folder", "same-as-input", "bad-extension"])
def test_bad_output_paths(cli, pair, tmp_path, case):
    out = {"missing-folder": tmp_path / "no/such/dir/f.png", "same-as-input": pair[1],
           "bad-extension": tmp_path / "f.xyz"}[case]
    before = digest(pair[1])
    code, _, err = cli("fuse", *pair, "-o", out)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert digest(pair[1]) == before
    assert not (tmp_path / "no").exists() and not (tmp_path / "f.xyz").exists()


def test_usage_errors(cli, pair):
    assert cli("fuse", pair[0], "-o", "x.png")[0] == 2
    assert cli("metrics", "--a", pair[0])[0] == 2


def test_subprocess_error_has_no_traceback(tmp_path, pair):
    r = subprocess.run([sys.executable, "-m", "mmaif", "fuse", pair[0], tmp_path / "missing.png",
                        "-o", tmp_path / "o.png"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [f"mmaif fuse: error: {tmp_path / 'missing.png'}: "
                                             "no such file; check the path"]


def test_fuse_a_stack_of_three(cli, tmp_path):
    """Three or more files are an exposure bracket or a focus stack: a classical method and
    the model fuse all of them at the inputs' size (odd sizes too); VIF and mixed sizes are
    one-line errors that write nothing."""
    import numpy as np

    from mmaif.classical.fusion import fuse_stack
    from mmaif.data.images import read_image

    base = texture(33, 47, 3, seed=4)
    paths = [save(tmp_path / f"s{k}.png", np.clip(base * g, 0, 1).astype(np.float32))
             for k, g in enumerate((0.5, 1.0, 1.6))]
    code, _, err = cli("fuse", *paths, "--method", "mertens", "--task", "mef",
                       "-o", tmp_path / "f.png")
    assert code == 0, err
    assert "3 inputs" in err and "method mertens" in err
    out = read_image(tmp_path / "f.png").data
    want = fuse_stack([read_image(p).data for p in paths], "mertens")
    assert out.shape == (33, 47, 3) and np.abs(out - want).max() <= 0.5 / 255 + 1e-6
    code, _, err = cli("fuse", *paths, "--order", "chain", "-o", tmp_path / "m.png")
    assert code == 0 and "3 images in 2 pair fusions (chain)" in err, err
    assert read_image(tmp_path / "m.png").data.shape == (33, 47, 3)
    other = save(tmp_path / "small.png", texture(20, 20, 3))
    for args, phrase in (([*paths, "--task", "vif", "-o", tmp_path / "g.png"], "VIF fuses two"),
                         ([*paths, "--method", "gff", "--task", "vif", "-o", tmp_path / "g.png"],
                          "VIF fuses two"),
                         ([*paths[:2], other, "--method", "gff", "-o", tmp_path / "g.png"],
                          "sizes differ")):
        code, _, err = cli("fuse", *args)
        assert code == 2 and phrase in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "g.png").exists()
