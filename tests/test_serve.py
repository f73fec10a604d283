"""`mmaif serve`: the HTTP API (Starlette's test client) and the page in a real headless
Chromium (skips with the reason when the browser or its driver is missing; `.ci/run`
installs them)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from mmaif.inference.serve import Fuser, create_app, guess_task

from .conftest import REPO, png, save, texture

IR, VI = texture(45, 61, 0, seed=1), texture(45, 61, 3, seed=2)


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(), raise_server_exceptions=False)


def fuse(client, a=None, b=None, **fields):
    files = {"a": ("ir.png", png(IR) if a is None else a, "image/png"),
             "b": ("vi.png", png(VI) if b is None else b, "image/png")}
    return client.post("/api/fuse", files=files, data=fields)


def test_health_and_page(client):
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    page = client.get("/").text
    assert "api/fuse" in page and "<script" in page
    assert "http://" not in page and "https://" not in page  # no CDN: works offline
    demos = client.get("/api/demo").json()
    assert {d["task"] for d in demos} == {"vif", "mef", "mff"}
    img = Image.open(io.BytesIO(client.get(f"/api/demo/{demos[0]['name']}/a.png").content))
    assert img.size[0] > 32


@pytest.mark.parametrize("method", ["model", "gff", "mertens", "laplacian"])
def test_fuse_returns_a_png_of_the_input_size(client, method):
    r = fuse(client, task="vif", method=method, prompt="remove the noise and fuse them")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (61, 45) and img.mode == "RGB"
    assert r.headers["X-Mmaif-Task"] == "vif" and float(r.headers["X-Mmaif-Seconds"]) >= 0
    if method == "model":
        assert unquote(r.headers["X-Mmaif-Prompt"]) == "remove the noise and fuse them"


def test_model_without_prompt_uses_the_task_prompt_and_auto_guesses_the_task(client):
    r = fuse(client)
    assert r.status_code == 200
    assert r.headers["X-Mmaif-Task"] == "vif"  # gray + colour
    assert unquote(r.headers["X-Mmaif-Prompt"]) == "Fuse the infrared and visible images."


def test_guess_task():
    rgb = texture(20, 30, 3)
    assert guess_task(rgb[..., 0], rgb) == "vif"
    assert guess_task(rgb * 0.3, np.clip(rgb * 1.8, 0, 1)) == "mef"
    assert guess_task(rgb, rgb[::-1].copy()) == "mff"


def test_a_stack_of_shots_is_fused_whole(client, tmp_path):
    """Further shots come as repeated ``more`` fields: the model and a classical method fuse
    all of them; VIF stacks, mixed sizes, too many files and detecting a stack are errors."""
    from mmaif.classical.fusion import fuse_stack

    base = texture(45, 61, 3, seed=3)
    shots = [np.clip(base * g, 0, 1).astype(np.float32) for g in (0.4, 1.0, 1.7)]
    files = [("a", ("s0.png", png(shots[0]), "image/png")),
             ("b", ("s1.png", png(shots[1]), "image/png")),
             ("more", ("s2.png", png(shots[2]), "image/png"))]
    for method in ("model", "mertens"):
        r = client.post("/api/fuse", files=files, data={"method": method})
        assert r.status_code == 200, r.text
        assert r.headers["X-Mmaif-Inputs"] == "3" and r.headers["X-Mmaif-Task"] == "mef"
        img = np.asarray(Image.open(io.BytesIO(r.content)), np.float32) / 255
        assert img.shape == (45, 61, 3)
    # the classical method fused all three (decoded as the server decodes them)
    from mmaif.data.images import read_image

    decoded = [read_image(save(tmp_path / f"{k}.png", x)).data for k, x in enumerate(shots)]
    assert np.abs(img - fuse_stack(decoded, "mertens")).max() <= 0.5 / 255 + 1e-6
    bad = [(client.post("/api/fuse", files=files, data={"task": "vif"}), "VIF fuses two"),
           (client.post("/api/fuse", files=[*files, ("more", ("x.png", png(IR[:20]),
                                                               "image/png"))]),
            "sizes differ"),
           (client.post("/api/fuse", files=files + [("more", ("s.png", png(shots[0]),
                                                              "image/png"))] * 8),
            "too many file fields"),
           (client.post("/api/detect", files=files), "reads a pair")]
    for r, words in bad:
        assert r.status_code == 400 and words in r.json()["error"], r.text


def test_errors_are_one_line_json_and_the_server_keeps_answering(client):
    cases = [
        (fuse(client, a=b"this is not an image\n"), 400, "not a readable image"),
        (fuse(client, a=png(IR)[:200]), 400, "truncated"),
        (fuse(client, b=png(texture(20, 20, 3))), 400, "sizes differ"),
        (fuse(client, method="magic"), 400, "method"),
        (fuse(client, task="xray"), 400, "task"),
        (client.post("/api/fuse", files={"a": ("a.png", png(IR), "image/png")}), 400, "'b'"),
        (client.post("/api/fuse", content=b"garbage",
                     headers={"content-type": "multipart/form-data; boundary=x"}), 400, ""),
        (client.get("/api/nothing"), 404, ""),
        (client.get("/api/fuse"), 405, ""),
    ]
    for r, status, words in cases:
        assert r.status_code == status, (r.status_code, r.text)
        msg = r.json()["error"]
        assert words in msg and "\n" not in msg and "Traceback" not in msg
        assert "mmaif-upload-" not in msg  # the temporary file's name is not shown
    assert client.get("/api/health").json()["status"] == "ok"
    assert fuse(client, method="gff").status_code == 200


def test_limits_give_413():
    small = TestClient(create_app(max_upload_mb=0.001, max_pixels=100))
    r = fuse(small, method="gff")
    assert r.status_code == 413 and "limit" in r.json()["error"]
    pixels = TestClient(create_app(max_pixels=1000))
    r = fuse(pixels, method="gff")
    assert r.status_code == 413 and "pixels" in r.json()["error"]


def test_internal_errors_do_not_leak_a_traceback():
    class Broken(Fuser):
        def fuse(self, *args):
            raise RuntimeError("secret detail: token-1234")

    r = fuse(TestClient(create_app(fuser=Broken()), raise_server_exceptions=False),
             method="gff")
    assert r.status_code == 500
    assert "secret" not in r.text and "Traceback" not in r.text and "error" in r.json()


def test_port_in_use_is_a_one_line_error(cli):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        code, _, err = cli("serve", "--port", s.getsockname()[1])
    assert code == 2 and "cannot listen" in err and "--port" in err


# ------------------------------------------------------------------ real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "mmaif", "serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:  # poll until the server answers (it loads the model first)
        try:
            with urllib.request.urlopen(url + "api/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail("server did not start: " + (tmp_path / "server.log").read_text())
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.mark.slow
@pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and "
                    "chromium-driver (apt-get install chromium chromium-driver; .ci/run does)")
def test_browser_fuses_a_pair(server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from mmaif.data.stacks import demo_pairs

    pair = next(p for p in demo_pairs() if p.task == "vif")  # a photo + a synthetic heat image
    a, b = save(tmp_path / "ir.png", pair.a), save(tmp_path / "vi.png", pair.b)
    h, w = pair.a.shape[:2]
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1200,1500"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get(server)
        assert "mmaif" in driver.title
        driver.find_element(By.ID, "file-a").send_keys(str(a))
        driver.find_element(By.ID, "file-b").send_keys(str(b))
        driver.find_element(By.ID, "prompt").send_keys("Denoise both images and fuse them.")
        button = driver.find_element(By.ID, "fuse")
        WebDriverWait(driver, 10).until(lambda d: button.is_enabled())
        button.click()
        WebDriverWait(driver, 120).until(ec.visibility_of_element_located((By.ID, "results")))
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.getElementById('out-model').naturalWidth > 0"))
        size = driver.execute_script("const i = document.getElementById('out-model');"
                                     "return [i.naturalWidth, i.naturalHeight];")
        assert size == [w, h]
        assert "VIF" in driver.find_element(By.ID, "timing").text
        assert driver.find_element(By.ID, "status").get_attribute("class") != "err"
        shot = tmp_path / "serve.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("MMAIF_SCREENSHOT")  # e.g. docs/serve.png for the README
        if keep:
            shutil.copyfile(shot, REPO / keep if not Path(keep).is_absolute() else keep)
    finally:
        driver.quit()


def test_detect_endpoint_and_auto_prompt(client, four, tmp_path):
    """POST /api/detect answers what the model's detector finds (as `mmaif detect --json`);
    the page's prompt "auto" fuses with that sentence; a model without a detector says so."""
    from mmaif.inference.pipeline import FusionPipeline
    from mmaif.model.detector import load_detector
    from mmaif.training.detector import DetectorTrainConfig, train_detector
    from mmaif.training.trainer import train

    from .conftest import small

    files = {"a": ("ir.png", png(IR), "image/png"), "b": ("vi.png", png(VI), "image/png")}
    train(small(four, tmp_path / "run", max_steps=1), progress="none")
    without = TestClient(create_app(str(tmp_path / "run")), raise_server_exceptions=False)
    r = without.post("/api/detect", files=files, data={"task": "vif"})
    assert r.status_code == 404 and "no degradation detector" in r.json()["error"]
    r = without.post("/api/fuse", files=files, data={"task": "vif", "prompt": "auto"})
    assert r.status_code == 404 and "no degradation detector" in r.json()["error"]
    r = client.post("/api/detect", files=files, data={"task": "vif"})  # the shipped one
    assert r.status_code == 200 and set(r.json()) == {"task", "a", "b", "prompt"}
    train_detector(DetectorTrainConfig(data=[str(four)], out=str(tmp_path / "det"), epochs=2,
                                       batch=4, val_share=0.0), progress="none")
    pipe = FusionPipeline.from_pretrained(tmp_path / "run")
    pipe.detector = load_detector(tmp_path / "det")
    pipe.save_pretrained(tmp_path / "p")
    with_detector = TestClient(create_app(str(tmp_path / "p")), raise_server_exceptions=False)
    r = with_detector.post("/api/detect", files=files, data={"task": "auto"})
    assert r.status_code == 200, r.text
    found = r.json()
    assert set(found) == {"task", "a", "b", "prompt"} and found["task"] == "vif"
    r = with_detector.post("/api/fuse", files=files, data={"task": "vif", "prompt": "auto"})
    assert r.status_code == 200, r.text
    assert unquote(r.headers["X-Mmaif-Prompt"]) == found["prompt"]
