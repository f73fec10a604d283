"""Image tokenizers: one protocol for the pixel (space-to-depth), KL-VAE and Cosmos tokenizers.

``encode(x)`` takes images in [-1, 1], (B, C, H, W) with H, W multiples of ``f``, and returns
latents (B, z, H/f, W/f), normalised with the tokenizer's per-channel ``mean``/``std``;
``decode`` inverts it. :func:`pad_to_multiple` / :func:`crop_to` pad inputs to the
tokenizer x patch multiple and crop outputs back — the only place this happens.

Safety: KL folders are loaded with safetensors only. Cosmos checkpoints are TorchScript
(``encoder.jit`` / ``decoder.jit``), i.e. code: they are loaded only from a local folder the
user names, never downloaded — only point it at files you trust.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmaif.errors import InputError


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (replicate when too small to reflect) H and W up to multiples of ``m``;
    returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = -h % m, -w % m
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def crop_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x[..., : size[0], : size[1]]


class Tokenizer(nn.Module):
    """Base class: subclasses implement ``_encode``/``_decode`` on raw latents."""

    name = "base"
    f: int = 8
    z: int = 0
    image_channels: int = 3
    differentiable = True  # decode() passes gradients (pixel-space losses can train through it)

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1), persistent=False)
        self.register_buffer("std", torch.ones(1), persistent=False)

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean = mean.detach().reshape(1, -1, 1, 1).float().to(self.mean.device)
        self.std = std.detach().reshape(1, -1, 1, 1).float().clamp_min(1e-6).to(self.std.device)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (self._encode(x) - self.mean) / self.std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._decode(z * self.std + self.mean)

    def describe(self) -> dict:
        return {"name": self.name, "f": self.f, "z": self.z}


class PixelTokenizer(Tokenizer):
    """Lossless space-to-depth: (B, C, H, W) -> (B, C*f*f, H/f, W/f). No weights; exact
    inverse. Latents keep pixel values (mean 0, std 1: no normalisation)."""

    name = "pixel"

    def __init__(self, f: int = 8, channels: int = 3):
        super().__init__()
        self.f, self.image_channels, self.z = f, channels, channels * f * f

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(x, self.f)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(z, self.f)


class KLTokenizer(Tokenizer):
    """A diffusers ``AutoencoderKL`` folder (e.g. the Flux VAE: 16 channels, scaling 0.3611,
    shift 0.1159, read from its config). ``encode`` uses the posterior mode; the decoder keeps
    gradients so a pixel-space loss can flow through it."""

    name = "kl"

    def __init__(self, folder: str | Path):
        super().__init__()
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise InputError(f"{folder}: not a diffusers AutoencoderKL folder (no config.json)")
        from diffusers import AutoencoderKL

        self.vae = AutoencoderKL.from_pretrained(folder, local_files_only=True,
                                                 use_safetensors=True).eval()
        cfg = self.vae.config
        self.f = 2 ** (len(cfg.block_out_channels) - 1)
        self.z = cfg.latent_channels
        self.image_channels = cfg.in_channels
        self.scale = float(getattr(cfg, "scaling_factor", 1.0) or 1.0)
        self.shift = float(getattr(cfg, "shift_factor", 0.0) or 0.0)
        self.name = f"kl:{folder.name}"
        self.vae.requires_grad_(False)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mode()
        return ((z - self.shift) * self.scale).float()

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode((z / self.scale + self.shift).to(self.vae.dtype)).sample.float()


class CosmosTokenizer(Tokenizer):
    """NVIDIA Cosmos continuous image tokenizer (e.g. CI8x8): TorchScript ``encoder.jit`` and
    ``decoder.jit`` from a local folder. Input in [-1, 1]; bf16 on GPU by default. TorchScript
    is code — load only files you trust. The wrappers run without gradients; a pixel-space loss
    must call ``self.decoder`` directly. No published scale: compute per-channel statistics
    with ``mmaif latent-stats``."""

    name = "cosmos"
    differentiable = False

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None):
        super().__init__()
        folder = Path(folder)
        for part in ("encoder.jit", "decoder.jit"):
            if not (folder / part).is_file():
                raise InputError(f"{folder}: missing {part}; expected a Cosmos tokenizer folder")
        device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        try:
            self.encoder = torch.jit.load(str(folder / "encoder.jit"), map_location=device)
            self.decoder = torch.jit.load(str(folder / "decoder.jit"), map_location=device)
        except RuntimeError as exc:
            raise InputError(f"{folder}: cannot load TorchScript ({str(exc).splitlines()[0]})") \
                from None
        self.encoder.eval()
        self.decoder.eval()
        self.name = f"cosmos:{folder.name}"
        with torch.no_grad():  # probe f and z with a small input
            probe = self._raw_encode(torch.zeros(1, 3, 64, 64, device=device))
        self.z, self.f = probe.shape[1], 64 // probe.shape[-1]

    def _raw_encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.encoder(x.to(self.dtype))
        return (out[0] if isinstance(out, (tuple, list)) else out).float()

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._raw_encode(x)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.decoder(z.to(self.dtype)).float()


def make_tokenizer(spec: str = "pixel", device: str | torch.device = "cpu") -> Tokenizer:
    """'pixel' | 'kl:FOLDER' | 'cosmos:FOLDER'; a ``latent_stats.json`` in the folder (from
    ``mmaif latent-stats``) sets the normalisation."""
    kind, _, folder = spec.partition(":")
    if kind == "pixel":
        return PixelTokenizer().to(device)
    if kind not in ("kl", "cosmos") or not folder:
        raise InputError(f"unknown tokenizer {spec!r}; use pixel, kl:FOLDER or cosmos:FOLDER")
    tok = KLTokenizer(folder) if kind == "kl" else CosmosTokenizer(folder, device)
    stats = Path(folder) / "latent_stats.json"
    if stats.is_file():
        d = json.loads(stats.read_text())
        tok.set_stats(torch.tensor(d["mean"]), torch.tensor(d["std"]))
    return tok.to(device)


@torch.no_grad()
def latent_stats(tok: Tokenizer, images: list[torch.Tensor]) -> dict[str, list[float]]:
    """Per-channel mean and std of raw latents over images ((C, H, W) in [-1, 1])."""
    s = s2 = None
    n = 0
    for img in images:
        x, _ = pad_to_multiple(img[None], tok.f)
        z = tok._encode(x.to(tok.mean.device)).double()
        zs, z2 = z.sum(dim=(0, 2, 3)), (z * z).sum(dim=(0, 2, 3))
        s, s2 = (zs, z2) if s is None else (s + zs, s2 + z2)
        n += z.shape[0] * z.shape[2] * z.shape[3]
    if n == 0:
        raise InputError("no images to compute latent statistics from")
    mean = s / n
    std = (s2 / n - mean * mean).clamp_min(0).sqrt()
    return {"mean": mean.tolist(), "std": std.tolist()}
