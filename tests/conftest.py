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


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    for t, (da, db) in {"vif": ("ir", "vi"), "mef": ("under", "over"),
                        "mff": ("near", "far")}.items():
        for k in range(2):
            a = texture(48, 64, 0 if t == "vif" else 3, seed=k)
            b = texture(48, 64, 3, seed=10 + k)
            if t == "mef":
                a, b = a * 0.4, np.clip(b * 1.6, 0, 1)
            save(root / t / da / f"p{k}.png", a)
            save(root / t / db / f"p{k}.png", b)
    return root


@pytest.fixture(scope="module")
def four(tmp_path_factory):
    """4 synthesized 64x64 samples (full-frame crops, so every epoch sees the same pixels)."""
    root = tmp_path_factory.mktemp("four")
    for t, (da, db) in {"vif": ("ir", "vi"), "mff": ("near", "far")}.items():
        for k in range(2):
            save(root / "src" / t / da / f"p{k}.png", texture(64, 64, 0 if t == "vif" else 3, k))
            save(root / "src" / t / db / f"p{k}.png", texture(64, 64, 3, 5 + k))
    from mmaif.synthesis.synth import SynthConfig, synthesize

    cfg = SynthConfig(tasks=["vif", "mff"], sources=[str(root / "src")], n=4, seed=0,
                      crop_scales=[1.0], clean_prob=0.0)
    synthesize(cfg, root / "data", progress="none")
    return root / "data"


def small(data, out, **kw):
    """A small, fast TrainConfig over ``data`` (e.g. :func:`four`)."""
    from mmaif.training.config import TrainConfig

    base = dict(data=str(data), out=str(out), batch=4, crop=64, warmup=10, lr=1e-3,
                log_every=50, save_every=1000, sample_every=0, weight_decay=0.0,
                model=dict(dim=64, depth=2, heads=2, adaln_rank=16))
    return TrainConfig(**{**base, **kw})


def weights(run, name="model.safetensors"):
    """The tensors of a run's latest checkpoint file."""
    from safetensors.torch import load_file

    from mmaif.model.storage import latest_checkpoint

    return load_file(str(latest_checkpoint(run) / name))


# ---------------------------------------------------------------- small models and stand-ins
Z = 12  # tiny latent channels for speed


def tiny(**kw):
    """A DiTConfig small enough for unit tests (``kw`` overrides its fields)."""
    from mmaif.model.dit import DiTConfig

    base = dict(latent_channels=Z, dim=32, depth=3, heads=2, text_dim=16, adaln_rank=8,
                ape_grid=(8, 8))
    return DiTConfig(**{**base, **kw})


def inputs(cfg, h=8, w=12, b=2, seed=0):
    """(condition latents, pooled text, flow extras) for a model of config ``cfg``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(b, cfg.latent_channels * cfg.n_inputs, h, w, generator=g)
    text = torch.randn(b, cfg.text_dim, generator=g)
    extra = {}
    if cfg.flow:
        extra = {"t": torch.rand(b, generator=g),
                 "x_t": torch.randn(b, cfg.latent_channels, h, w, generator=g)}
    return cond, text, extra


def perturb(model, std=0.05):
    """``model`` with seeded noise added to every trainable weight (zero-initialised paths
    included), so that it computes something non-trivial."""
    import torch

    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * std)
    return model


def png(arr: np.ndarray) -> bytes:
    """An image in [0, 1] as 8-bit PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def tiny_vae(folder):
    """A tiny diffusers AutoencoderKL (f = 8, 4 latent channels) saved in ``folder``."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4,
                        scaling_factor=0.3611, shift_factor=0.1159)
    vae.save_pretrained(folder)
    return vae


def tiny_cosmos(folder) -> Path:
    """A Cosmos-style TorchScript tokenizer (encoder.jit / decoder.jit, f = 8, 16 channels)
    in ``folder``: a strided convolution each way."""
    import torch

    class Enc(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 8, stride=8)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            return (self.conv(x),)

    class Dec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.ConvTranspose2d(16, 3, 8, stride=8)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.conv(z)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Enc()).save(str(folder / "encoder.jit"))
    torch.jit.script(Dec()).save(str(folder / "decoder.jit"))
    return folder
