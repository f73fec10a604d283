"""Shared fixtures. Tests that need ../shared (real pairs, VIFB reference) skip without it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "fusion-samples"
VIFB = SHARED / "reference" / "vifb"


def need(path: Path) -> Path:
    """Skip the calling test, with the reason, when a ../shared resource is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared is provided beside the repo in CI)")
    return path


def texture(h: int, w: int, channels: int = 0, seed: int = 0) -> np.ndarray:
    """A smooth-plus-detail test image in [0, 1] ((h, w) or (h, w, channels))."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    base = 0.5 + 0.25 * np.sin(9 * xx + 3 * yy) * np.cos(7 * yy)
    shape = (h, w) if channels == 0 else (h, w, channels)
    detail = rng.random(shape) * 0.3
    img = (base if channels == 0 else base[..., None]) * 0.7 + detail
    return np.clip(img, 0, 1).astype(np.float32)


def save(path: Path, arr: np.ndarray, bits: int = 8) -> Path:
    from mmaif.data.images import write_image

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, arr, bits)


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from mmaif.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
