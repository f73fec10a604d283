"""Bad input, as a new user meets it: each case of the table is one command that must
end with exit 2 and one line naming the problem (and what to do), write nothing and leave the
inputs as they were. Plus the pixel rules, folder mode that finishes what it can, and the
server's header and form limits."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from mmaif.data.images import read_image

from .conftest import digest, png, save, texture

IR, VI = texture(45, 61, 0, seed=1), texture(45, 61, 3, seed=2)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _png(w: int, h: int, rows: int, colour: int = 0) -> bytes:
    """A gray (colour 0) or RGB (colour 2) 8-bit PNG whose data holds only ``rows`` rows."""
    ch = 3 if colour == 2 else 1
    rng = np.random.default_rng(0)
    raw = b"".join(b"\0" + rng.integers(0, 255, w * ch, dtype=np.uint8).tobytes()
                   for _ in range(rows))
    head = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", head) + _chunk(b"IDAT", zlib.compress(raw))
            + _chunk(b"IEND", b""))


def _tiff(path: Path, arr: np.ndarray) -> Path:
    import tifffile

    tifffile.imwrite(path, arr)
    return path


@pytest.fixture
def env(tmp_path):
    """A good pair; no synth folder: the train cases fail before reading data."""
    a = save(tmp_path / "ir.png", texture(30, 44, 0, 1))
    b = save(tmp_path / "vi.png", texture(30, 44, 3, 2))
    return tmp_path, a, b


def _make(case: str, tmp: Path, a: Path, b: Path) -> tuple[list, str]:
    """(command arguments, phrase the one-line error must contain)."""
    out = tmp / "out.png"
    nan = np.random.default_rng(0).random((30, 44)).astype(np.float32)
    if case == "nan-tiff":
        nan[3:6, 3:6] = np.nan
        return ["fuse", _tiff(tmp / "nan.tif", nan), b, "-o", out], "NaN or infinite"
    if case == "float-over-1":
        return ["fuse", _tiff(tmp / "f.tif", nan * 1000), b, "-o", out], "float pixels in"
    if case == "negative-int32":
        arr = np.random.default_rng(1).integers(-500, 500, (30, 44)).astype(np.int32)
        return ["fuse", _tiff(tmp / "i.tif", arr), b, "-o", out], "integer pixels in"
    if case == "short-png":
        (tmp / "short.png").write_bytes(_png(44, 30, 15))
        return ["fuse", tmp / "short.png", b, "-o", out], "ends before its last row"
    if case == "huge-header-vs-small":
        (tmp / "huge.png").write_bytes(_png(14000, 14000, 1))
        return ["fuse", a, tmp / "huge.png", "-o", out, "--max-pixels", str(10**9)], \
            "sizes differ"
    if case == "symlink-loop":
        os.symlink(tmp / "l1", tmp / "l2")
        os.symlink(tmp / "l2", tmp / "l1")
        return ["fuse", tmp / "l1", b, "-o", out], "symbolic links"
    if case == "out-is-folder":
        (tmp / "folder").mkdir()
        return ["fuse", a, b, "-o", tmp / "folder"], "is a folder"
    if case == "tile-0":
        return ["fuse", a, b, "-o", out, "--tile", "0"], "--tile 0"
    if case == "overlap-over-half-tile":
        return ["fuse", a, b, "-o", out, "--overlap", "400"], "--overlap 400"
    if case == "max-pixels-0":
        return ["fuse", a, b, "-o", out, "--max-pixels", "0"], "--max-pixels 0"
    if case in ("model-bad-json", "model-bad-type"):
        m = tmp / "model"
        m.mkdir()
        (m / "model.safetensors").write_bytes(b"x")
        text = "{not json" if case == "model-bad-json" else json.dumps(
            {"model": {"depth": "six"}, "pipeline": {}})
        (m / "config.json").write_text(text)
        return ["fuse", a, b, "-o", out, "--model", m], \
            "not valid JSON" if case == "model-bad-json" else "depth='six'"
    if case == "train-config-type":
        (tmp / "c.yaml").write_text("max_steps: ten\ndata: d\n")
        return ["train", "--config", tmp / "c.yaml", "--out", tmp / "run"], "max_steps='ten'"
    if case == "train-out-is-file":
        (tmp / "run").write_text("x")
        return ["train", "--data", tmp, "--out", tmp / "run"], "exists and is a file"
    if case == "old-patch-flag":
        return ["train", "--data", tmp, "--out", tmp / "run", "--patch", "64"], "--crop"
    if case == "old-patch-key":
        (tmp / "c.yaml").write_text("patch: 64\ndata: d\n")
        return ["train", "--config", tmp / "c.yaml"], "`crop:`"
    if case == "model-flag-no-value":
        return ["train", "--data", tmp, "--out", tmp / "run", "--model", "depth"], "KEY=VALUE"
    flags = {"crop-7": ("--crop", "7"), "save-every-0": ("--save-every", "0"),
             "log-every-0": ("--log-every", "0"), "lr-nan": ("--lr", "nan"),
             "ema-2": ("--ema", "2.0"), "keep-last-0": ("--keep-last", "0")}
    if case in flags:
        flag, value = flags[case]
        return ["train", "--data", tmp, "--out", tmp / "run", flag, value], f"{flag} "
    if case == "train-data-missing":
        return ["train", "--data", tmp / "nope", "--out", tmp / "run"], "no such folder"
    if case == "eval-data-missing":
        return ["eval", "--data", tmp / "nope", "--out", tmp / "ev", "--methods", "teacher"], \
            "no such folder"
    raise KeyError(case)


CASES = ["nan-tiff", "float-over-1", "negative-int32", "short-png", "huge-header-vs-small",
         "symlink-loop", "out-is-folder", "tile-0", "overlap-over-half-tile", "max-pixels-0",
         "model-bad-json", "model-bad-type", "train-config-type", "train-out-is-file", "crop-7",
         "old-patch-flag", "old-patch-key", "model-flag-no-value",
         "save-every-0", "log-every-0", "lr-nan", "ema-2", "keep-last-0", "train-data-missing",
         "eval-data-missing"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_table(cli, env, case):
    tmp, a, b = env
    args, phrase = _make(case, tmp, a, b)
    before = sorted(p.name for p in tmp.iterdir())
    digests = (digest(a), digest(b))
    code, _, err = cli(*args)
    lines = err.strip().splitlines()
    assert code == 2, (case, err)
    assert len(lines) == 1 and phrase in lines[0], (case, err)
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp.iterdir()) == before  # nothing written
    assert (digest(a), digest(b)) == digests                 # inputs untouched


def test_pixel_rules(tmp_path):
    """16-bit and in-range float TIFFs are read by their range; PNGs with every row pass."""
    ok = np.random.default_rng(2).random((20, 30)).astype(np.float32)
    assert np.allclose(read_image(_tiff(tmp_path / "f.tif", ok)).data, ok)
    u16 = (ok * 65535).astype(np.uint16)
    assert np.allclose(read_image(_tiff(tmp_path / "u.tif", u16)).data, u16 / 65535, atol=1e-6)
    i32 = (ok * 65535).astype(np.int32)
    assert read_image(_tiff(tmp_path / "i.tif", i32)).bits == 16
    (tmp_path / "full.png").write_bytes(_png(44, 30, 30, colour=2))
    assert read_image(tmp_path / "full.png").data.shape == (30, 44, 3)
    from PIL import Image

    Image.fromarray((ok * 255).astype(np.uint8)).save(tmp_path / "inter.png", interlace=1)
    assert read_image(tmp_path / "inter.png").data.shape == (20, 30)


def test_api_refuses_non_finite_arrays():
    from mmaif.errors import InputError
    from mmaif.inference.pipeline import as_array

    x = np.zeros((4, 4), np.float32)
    x[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        as_array(x)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        as_array(np.full((4, 4), 3.0))


def test_folder_mode_finishes_what_it_can(cli, tmp_path):
    root = tmp_path / "ds"
    for k in range(3):
        save(root / "ir" / f"p{k}.png", texture(24, 32, 0, k))
        save(root / "vi" / f"p{k}.png", texture(24, 32, 3, 10 + k))
    (root / "vi" / "p1.png").write_bytes(_png(32, 24, 5, colour=2))  # the middle one is bad
    out = tmp_path / "out"
    code, _, err = cli("fuse", root, "-o", out, "--method", "gff")
    assert code == 3, err
    assert sorted(p.name for p in out.iterdir()) == ["failed.txt", "p0.png", "p2.png"]
    failed = (out / "failed.txt").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith("p1\t") and "truncated" in failed[0]
    assert "fused 2 of 3 pairs" in err
    code, _, err = cli("fuse", root, "-o", tmp_path / "out2", "--method", "gff",
                       "--stop-on-error")
    assert code == 2 and "p1.png" in err.strip().splitlines()[-1]


def test_server_header_and_form_limits():
    from urllib.parse import unquote

    from starlette.testclient import TestClient

    from mmaif.inference.serve import MAX_PROMPT_CHARS, PROMPT_HEADER_CHARS, Fuser, create_app

    class Echo(Fuser):  # the prompt handling of the real Fuser, with GFF's speed
        @property
        def pipe(self):
            return lambda a, b, **kw: (a if a.ndim == 3 else np.stack([a] * 3, -1))

    client = TestClient(create_app(fuser=Echo()), raise_server_exceptions=False)

    files = {"a": ("ir.png", png(IR), "image/png"), "b": ("vi.png", png(VI), "image/png")}
    prompt = "remove the haze\nand the stripes \x1b[31m " + "é" * 600
    r = client.post("/api/fuse", files=files, data={"prompt": prompt})
    assert r.status_code == 200, r.text
    head = r.headers["X-Mmaif-Prompt"]
    assert "\n" not in head and "\x1b" not in head and head.isascii()
    assert unquote(head) == prompt[:PROMPT_HEADER_CHARS]
    assert r.headers["X-Mmaif-Prompt-Truncated"] == "1"
    r = client.post("/api/fuse", files=files, data={"prompt": "x" * (MAX_PROMPT_CHARS + 1)})
    assert r.status_code == 413 and str(MAX_PROMPT_CHARS) in r.json()["error"]
    three = {**files, "c": ("c.png", png(VI), "image/png")}
    r = client.post("/api/fuse", files=three, data={"method": "gff"})
    assert r.status_code == 400 and "unknown file field 'c'" in r.json()["error"]
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a\x00.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + png(IR) + b"\r\n--XyZ\r\nContent-Disposition: "
            b"form-data; name=\"b\"; filename=\"b.png\"\r\nContent-Type: image/png\r\n\r\n"
            + png(VI) + b"\r\n--XyZ--\r\n")
    r = client.post("/api/fuse", content=body,
                    headers={"content-type": "multipart/form-data; boundary=XyZ"})
    assert r.status_code == 400 and "NUL" in r.json()["error"]


def test_server_queue_admits_one_fusing_plus_queue_waiting():
    """12 simultaneous requests with queue=8: the one being fused and 8 waiting are served
    (200), the other 3 get 503 at once. The fusion is held on an event, not on time."""
    import asyncio
    import threading

    import httpx

    from mmaif.inference.serve import Fuser, create_app


    release = threading.Event()

    class Held(Fuser):
        def fuse(self, files, task, prompt, method):
            release.wait(120)
            return b"png", {}

    app = create_app(fuser=Held(), queue=8)
    files = {"a": ("ir.png", png(IR), "image/png"), "b": ("vi.png", png(VI), "image/png")}

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            tasks = [asyncio.create_task(client.post("/api/fuse", files=files))
                     for _ in range(12)]
            done: set = set()
            while len(done) < 3:  # the rejected ones answer while the others are held
                new, _ = await asyncio.wait(set(tasks) - done, timeout=120,
                                            return_when=asyncio.FIRST_COMPLETED)
                assert new, "no request was refused"
                done |= new
            early = [t.result().status_code for t in done]
            release.set()
            codes = [r.status_code for r in await asyncio.gather(*tasks)]
        return early, codes

    early, codes = asyncio.run(main())
    assert early == [503, 503, 503]
    assert sorted(codes) == [200] * 9 + [503] * 3


def test_resume_messages(cli, tmp_path, monkeypatch):
    """A refused change on --resume is refused before it is announced; a run whose saved
    (relative) data path does not resolve from here says how to point at it."""
    from mmaif.training.trainer import train

    from .conftest import small

    root = tmp_path / "src"
    for k in range(2):
        save(root / "mff" / "near" / f"p{k}.png", texture(64, 64, 3, k))
        save(root / "mff" / "far" / f"p{k}.png", texture(64, 64, 3, 5 + k))
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("synth", "--task", "mff", "--src", root, "--out", "data", "--n", 4,
                       "--seed", 0, "--progress", "none")
    assert code == 0, err
    train(small("data", "run", max_steps=1, batch=2, crop=32), progress="none")
    code, _, err = cli("train", "--out", "run", "--resume", "--max-steps", "-1")
    assert code == 2 and err.strip().splitlines() == [
        "mmaif train: error: --max-steps, --batch and --accum must be positive"]
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    code, _, err = cli("train", "--out", tmp_path / "run", "--resume", "--max-steps", "2")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "pass --data" in lines[0]


def test_default_max_pixels_fits_the_machines_memory(monkeypatch):
    from mmaif.data import images

    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2**30 // 4096}  # a 1 GiB machine
    monkeypatch.setattr(images.os, "sysconf", lambda k: pages[k])
    assert images.fitting_max_pixels() == 2**29 // images.BYTES_PER_PIXEL
    pages["SC_PHYS_PAGES"] = 2**50  # a huge machine: still the bomb guard's cap
    assert images.fitting_max_pixels() == images.DEFAULT_MAX_PIXELS

    def unknown(k):
        raise ValueError(k)
    monkeypatch.setattr(images.os, "sysconf", unknown)
    assert images.fitting_max_pixels() == images.DEFAULT_MAX_PIXELS


def test_flow_with_the_fullres_head_is_refused_not_overridden(tmp_path):
    from mmaif.errors import UsageError
    from mmaif.training.config import TrainConfig, build_model_config

    cfg = TrainConfig(objective="flow", model={"head": "fullres"})
    with pytest.raises(UsageError, match="head: latent"):
        build_model_config(cfg, 192, 384)
    assert build_model_config(TrainConfig(objective="flow"), 192, 384).head == "latent"
