"""The MMAIF fusion DiT (paper Fig. 3c), in one file, top-down:
helpers -> embedders -> NAFBlock -> attention (2D RoPE, value residual) -> MoE GLU -> AdaLN ->
block -> model -> full-resolution head -> presets.

Input: the channel concatenation of the tokenizer latents of the inputs (+ the noisy target
latent for flow), (B, n_inputs*z [+ z], h, w) on the tokenizer grid (h = H/f). Conditioning
``c`` = projected pooled text embedding (+ timestep embedding of 1000*t for flow), applied by
AdaLN. Output: (B, out, h, w). Every modernisation has a flag in :class:`DiTConfig` (the
paper's ablation toggles them one by one). At initialisation the output is exactly zero and
every block is the identity (zero-initialised gates, NAF scales, per-block APE and final layer).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmaif.data.images import RGB2GRAY
from mmaif.errors import InputError


# ----------------------------------------------------------------------------- config
@dataclass
class DiTConfig:
    """Model hyper-parameters and ablation switches. Unknown keys are an error."""

    latent_channels: int = 192      # z of the tokenizer (pixel f=8: 3*64)
    n_inputs: int = 2               # source images fused
    flow: bool = False              # adds the noisy target latent and a timestep embedding
    patch: int = 1                  # DiT patch on the latent grid
    dim: int = 192
    depth: int = 6
    heads: int = 3
    mlp_ratio: float = 1.0          # SwiGLU hidden (each expert) = mlp_ratio * dim
    text_dim: int = 384
    head: str = "fullres"           # 'fullres' (blend weights + residual) | 'latent'
    residual_mean: bool = True      # predict a correction of the inputs' mean latent
    # ablation switches (paper components)
    naf: bool = True                # NAFBlock before attention
    rope: bool = True               # 2D axial RoPE in attention
    ape: bool = True                # per-block learnable absolute positional encoding
    ape_grid: tuple[int, int] = (16, 16)  # APE parameter grid, interpolated to any grid
    value_residual: str = "prev"    # 'none' | 'prev' (paper) | 'first' (ResFormer)
    vr_eta: float = 0.5
    vr_learnable: bool = True
    moe: bool = True                # MoE GLU (else one SwiGLU of the same width)
    n_experts: int = 4
    top_k: int = 2
    shared_expert: bool = True
    adaln: str = "lora"             # 'lora' (D -> r -> 6D) | 'full' (D -> 6D)
    adaln_rank: int = 32
    rope_theta: float = 100.0
    # local evidence from the full-resolution inputs, space-to-depth'd into the tokens
    evidence: tuple[str, ...] = ()  # classical maps per input: see EVIDENCE_MAPS
    stem: int = 0                   # width of a learned full-res conv stem per input (0: off)
    stem_maps: int = 4              # maps the stem outputs per input
    evidence_f: int = 8             # space-to-depth factor (= the tokenizer's f)
    # classical candidates in the fullres head (zero-initialised: a warm start is exact)
    fix_gates: bool = False         # per input, a gate toward its classical fix
    teacher_gate: bool = False      # a gate toward the teacher's fusion of the fixes
    teacher_named: bool = False     # ... only where the prompt names a degradation (else closed)
    tone: bool = False              # per cell, a gain per input and channel, an offset per channel
    global_tone: bool = False       # per input and channel, one gain and offset for the image
    upsample: str = "bilinear"      # the head's per-cell maps to full resolution: 'bilinear' |
                                    # 'guided' (edge-aware: a guided filter on the luminance)

    def __post_init__(self):
        self.ape_grid = tuple(self.ape_grid)
        self.evidence = tuple(self.evidence)
        bad = [m for m in self.evidence if m not in EVIDENCE_MAPS]
        if bad or len(set(self.evidence)) != len(self.evidence):
            raise InputError(f"config: evidence={list(self.evidence)!r}; use distinct names "
                             f"from {list(EVIDENCE_MAPS)}")
        if self.stem < 0 or self.stem_maps < 1 or self.evidence_f < 1:
            raise InputError("config: stem must be >= 0, stem_maps and evidence_f >= 1")
        checks = {"head": ("fullres", "latent"), "value_residual": ("none", "prev", "first"),
                  "adaln": ("lora", "full"), "upsample": ("bilinear", "guided")}
        for key, allowed in checks.items():
            if getattr(self, key) not in allowed:
                raise InputError(f"config: {key}={getattr(self, key)!r}; use one of {allowed}")
        if self.dim % self.heads or (self.dim // self.heads) % 4:
            raise InputError("config: dim / heads must be a multiple of 4 (2D RoPE)")
        if self.flow and self.head == "fullres":
            raise InputError("config: the fullres head predicts images, not velocities; use "
                             "head: latent with flow")
        if self.teacher_named and not self.teacher_gate:
            raise InputError("config: teacher_named needs teacher_gate: true")
        if (self.fix_gates or self.teacher_gate or self.tone or self.global_tone) \
                and self.head != "fullres":
            raise InputError("config: fix_gates / teacher_gate / tone / global_tone belong to "
                             "the fullres head; use head: fullres")
        if not 1 <= self.top_k <= self.n_experts:
            raise InputError("config: top_k must be in 1..n_experts")

    def head_channels(self) -> list[str]:
        """What each output channel is, in order: the residual latent, then (fullres) the blend
        logits, the fix gates, the teacher gate, the tone gains (per input, RGB) and offsets."""
        if self.head != "fullres":
            return ["residual"] * self.latent_channels
        n = self.n_inputs
        return (["residual"] * self.latent_channels + ["blend"] * n + ["fix"] * n * self.fix_gates
                + ["teacher"] * self.teacher_gate + ["gain"] * 3 * n * self.tone
                + ["offset"] * 3 * self.tone)

    @property
    def out_channels(self) -> int:
        return len(self.head_channels())

    def image_kinds(self) -> list[str]:
        """The full-resolution images the model reads, in order: the inputs, their fixes, the
        teacher's fusion of the fixes."""
        return (["input"] * self.n_inputs + ["fix"] * self.n_inputs * self.fix_gates
                + ["teacher"] * self.teacher_gate)

    @property
    def n_images(self) -> int:
        return len(self.image_kinds())

    @property
    def in_channels(self) -> int:
        return self.latent_channels * (self.n_inputs + int(self.flow))

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        """From a mapping (a config file, a checkpoint): unknown keys and wrongly typed values
        are an :class:`InputError` naming the field."""
        from mmaif.config import typed

        if not isinstance(d, dict):
            raise InputError(f"config: expected a mapping of model settings, got "
                             f"{type(d).__name__}")
        return cls(**typed(cls, d, "config"))

    def evidence_kinds(self) -> list[str]:
        """The evidence maps of each image, in channel order: the classical ones, then the
        stem's."""
        return list(self.evidence) + ["stem"] * (self.stem_maps if self.stem else 0)

    @property
    def evidence_maps(self) -> int:
        """Evidence maps per input (classical + learned); 0 when the path is off."""
        return len(self.evidence_kinds())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ape_grid"] = list(self.ape_grid)
        d["evidence"] = list(self.evidence)
        return d


# ---------------------------------------------------------------------------- helpers
def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN modulation; x (B, N, D), shift/scale (B, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


def tokens_to_grid(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)  # (B, N, D) -> (B, D, h, w)


def grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, N, D)


# -------------------------------------------------------------------------- embedders
class TimestepEmbedder(nn.Module):
    """Sinusoidal embedding of 1000*t (DiT), then an MLP."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # t (B,) in [0, 1]
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
        args = 1000.0 * t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(
            self.mlp[0].weight.dtype))


class GridAPE(nn.Module):
    """Learnable absolute positions on a base grid, bilinearly resized to the token grid
    (so any H x W works). Zero-initialised: blocks start as the identity."""

    def __init__(self, dim: int, grid: tuple[int, int]):
        super().__init__()
        self.pe = nn.Parameter(torch.zeros(1, dim, *grid))

    def forward(self, h: int, w: int) -> torch.Tensor:  # -> (1, h*w, D)
        # Always resized (exact when the size matches): never returns a view of the parameter,
        # which under no_grad would look like a grad-requiring leaf to module hooks.
        pe = F.interpolate(self.pe, size=(h, w), mode="bilinear", align_corners=False)
        return grid_to_tokens(pe)


# Computed per input at full resolution (inputs in [-1, 1]): what the teachers select by (GFF:
# local |Laplacian| saliency; Mertens: contrast, saturation, well-exposedness), then what tells
# a degradation apart when the prompt does not name it: local noise level, dark channel (haze),
# column offsets (stripes), 8 x 8 block edges (JPEG), local mean (exposure, low light).
EVIDENCE_MAPS = ("laplacian", "contrast", "exposure", "saturation",
                 "noise", "dark", "stripes", "blockiness", "mean")


def evidence_maps(x: torch.Tensor, names=EVIDENCE_MAPS) -> torch.Tensor:
    """The classical evidence maps ``names`` (of :data:`EVIDENCE_MAPS`) of images ``x``
    (B, 3, H, W) in [-1, 1], at full resolution: (B, len(names), H, W)."""
    x = (x.float() + 1) / 2
    gray = (x * x.new_tensor(RGB2GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True)
    wanted = set(names)

    def box(t, kh=7, kw=7):  # local mean over the pixels inside the image, two 1-D passes
        t = F.avg_pool2d(t, (1, kw), 1, (0, kw // 2), count_include_pad=False)
        return F.avg_pool2d(t, (kh, 1), 1, (kh // 2, 0), count_include_pad=False)

    def shifts(t, dim):  # t's previous and next neighbours along dim (the edges repeated)
        n = t.shape[dim]
        return (torch.cat([t.narrow(dim, 0, 1), t.narrow(dim, 0, n - 1)], dim=dim),
                torch.cat([t.narrow(dim, 1, n - 1), t.narrow(dim, n - 1, 1)], dim=dim))

    maps = {}
    mean = box(gray) if wanted & {"contrast", "mean"} else None
    if wanted & {"laplacian", "noise"}:
        (up, down), (left, right) = shifts(gray, -2), shifts(gray, -1)
    if "laplacian" in wanted:  # GFF's saliency: smoothed |Laplacian| (log-compressed)
        lap = up + down + left + right - 4 * gray
        maps["laplacian"] = torch.log1p(10 * box(lap.abs()))
    if "contrast" in wanted:   # local standard deviation
        maps["contrast"] = 4 * (box(gray ** 2) - mean ** 2).clamp_min(0).sqrt()
    if "exposure" in wanted:   # Mertens' well-exposedness, sigma 0.2
        maps["exposure"] = torch.exp(-((gray - 0.5) ** 2) / (2 * 0.2 ** 2))
    if "saturation" in wanted:  # Mertens' saturation: std over the colour channels
        maps["saturation"] = 4 * (x - x.mean(1, keepdim=True)).square().mean(
            1, keepdim=True).sqrt()
    if "noise" in wanted:  # Immerkaer's estimator: [1 -2 1] (x) [1 -2 1], blind to ramps
        h = left + right - 2 * gray
        hu, hd = shifts(h, -2)
        r = hu + hd - 2 * h
        maps["noise"] = torch.log1p(20 * box(r.abs()) * (math.sqrt(math.pi / 2) / 6))
    if "dark" in wanted:  # He et al.'s dark channel: high where haze lifts the minimum
        dark = -F.pad(x.amin(dim=1, keepdim=True), (3, 3, 3, 3), mode="replicate")
        maps["dark"] = -F.max_pool2d(F.max_pool2d(dark, (1, 7), 1), (7, 1), 1)
    if "stripes" in wanted:  # column offsets survive a tall vertical mean, texture not
        dx = gray[..., 1:] - gray[..., :-1]
        maps["stripes"] = 8 * box(torch.cat([dx, dx[..., -1:]], dim=-1), 63, 1).abs()
    if "blockiness" in wanted:
        # 8 x 8 block edges: a step above its neighbours' mean, coherent along the edge and
        # repeating every 8 pixels across it (noise and texture average out), relative to
        # the local gradient
        jump = 0
        for dim in (-1, -2):
            g = (gray - shifts(gray, dim)[1]).abs()
            prev, nxt = shifts(g, dim)
            along, across = ((15, 1), (1, 15)) if dim == -1 else ((1, 15), (15, 1))
            step = box(g - (prev + nxt) / 2, *along)
            padded = F.pad(step, (16, 16, 0, 0) if dim == -1 else (0, 0, 16, 16),
                           mode="replicate")
            n = step.shape[dim]
            periodic = sum(padded.narrow(dim, 8 * k, n) for k in range(5)) / 5
            jump = jump + (periodic - box(step, *across)).clamp_min(0) / (box(g) + 0.01)
        maps["blockiness"] = 4 * jump
    if "mean" in wanted:   # local brightness
        maps["mean"] = mean
    return torch.cat([maps[n] for n in names], dim=1)


class Evidence(nn.Module):
    """Local evidence per input at full resolution, space-to-depth'd onto the token grid and
    embedded, added to the token embedding (the role of the paper's NAFNet conv before the
    transformer). Classical maps (``cfg.evidence``) are fixed; the stem (``cfg.stem`` wide,
    3 convs, shared by the inputs) is learned. The embedding is zero-initialised, so a model
    with this path computes exactly what it computed without it (warm starts)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.names, self.f = cfg.evidence, cfg.evidence_f
        w = cfg.stem
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GELU(), nn.Conv2d(w, w, 3, padding=1), nn.GELU(),
            nn.Conv2d(w, cfg.stem_maps, 3, padding=1)) if w else None
        self.n_images = cfg.n_images
        k = cfg.evidence_maps * cfg.n_images * cfg.evidence_f ** 2
        self.embed = nn.Conv2d(k, cfg.dim, cfg.patch, stride=cfg.patch)

    def classical(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, k, H, W)
        return evidence_maps(x, self.names)

    def forward(self, images: list[torch.Tensor], grid: tuple[int, int]) -> torch.Tensor:
        if len(images) != self.n_images:
            raise ValueError(f"evidence: {len(images)} images given, the model reads "
                             f"{self.n_images} (inputs, then their fixes, then the teacher's)")
        feats, seen = [], []
        for x in images:  # each (B, 3, H, W) in [-1, 1]
            if x.shape[-2] != grid[0] * self.f or x.shape[-1] != grid[1] * self.f:
                raise ValueError(f"evidence: image {tuple(x.shape[-2:])} is not the latent grid "
                                 f"{grid} x evidence_f {self.f}")
            if self.names:
                with torch.no_grad():
                    # a candidate equal to an earlier image (an input nothing was named for)
                    # reuses its maps
                    same = next((m for prev, m in seen if prev.shape == x.shape
                                 and torch.equal(prev, x)), None)
                    maps = same if same is not None else self.classical(x).to(x.dtype)
                    seen.append((x, maps))
                    feats.append(maps)
            if self.stem is not None:
                feats.append(self.stem(x))
        y = F.pixel_unshuffle(torch.cat(feats, dim=1), self.f)
        return grid_to_tokens(self.embed(y.to(self.embed.weight.dtype)))


# ---------------------------------------------------------------------------- NAFBlock
class NAFBlock(nn.Module):
    """NAFNet block (Chen et al., ECCV 2022) on tokens: LayerNorms act in token layout, the
    convolutions on the grid. Simplified channel attention uses the global mean of the
    current grid, so any resolution works. beta / gamma are zero-initialised (identity)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.pw1 = nn.Conv2d(dim, 2 * dim, 1)
        self.dw = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim)
        self.sca = nn.Conv2d(dim, dim, 1)
        self.pw2 = nn.Conv2d(dim, dim, 1)
        self.ffn1, self.ffn2 = nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.beta = nn.Parameter(torch.zeros(dim))
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:  # (B, N, D)
        y = tokens_to_grid(self.norm1(x), h, w)
        a, b = self.dw(self.pw1(y)).chunk(2, dim=1)
        y = a * b  # SimpleGate
        y = y * self.sca(y.mean(dim=(2, 3), keepdim=True))
        x = x + grid_to_tokens(self.pw2(y)) * self.beta
        a, b = self.ffn1(self.norm2(x)).chunk(2, dim=-1)
        return x + self.ffn2(a * b) * self.gamma


# --------------------------------------------------------------------------- attention
def rope_2d(h: int, w: int, head_dim: int, theta: float, device, dtype) -> torch.Tensor:
    """Axial 2D RoPE angles (N, head_dim/2): the first half of the rotated pairs encodes the
    row, the second half the column (Heo et al., ECCV 2024; Su et al. 2021)."""
    quarter = head_dim // 4
    freqs = theta ** (-torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    ang = torch.cat([ys.reshape(-1, 1) * freqs, xs.reshape(-1, 1) * freqs], dim=-1)
    return ang.to(dtype)


def apply_rope(x: torch.Tensor, ang: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x (B, H, N, hd) by angles (N, hd/2)."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = ang.float().cos(), ang.float().sin()
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return out.to(x.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with optional 2D RoPE and value residual learning:
    'prev' (paper): V^l = (1 - eta) W_V X + eta V^{l-1}; 'first' (ResFormer, Zhou et al.
    2024): V^l = (1 - eta) W_V X + eta V^1. eta fixed or learnable (sigmoid of a logit)."""

    def __init__(self, cfg: DiTConfig, layer: int):
        super().__init__()
        self.heads, self.rope = cfg.heads, cfg.rope
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.mix = cfg.value_residual != "none" and layer > 0
        if self.mix:
            logit = math.log(cfg.vr_eta / (1 - cfg.vr_eta))
            self.eta_logit = nn.Parameter(torch.tensor(logit), requires_grad=cfg.vr_learnable)

    @property
    def eta(self) -> torch.Tensor | None:
        return torch.sigmoid(self.eta_logit) if self.mix else None

    def forward(self, x: torch.Tensor, ang: torch.Tensor | None,
                v_res: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.mix and v_res is not None:
            eta = self.eta.to(v.dtype)
            v = (1 - eta) * v + eta * v_res
        if self.rope and ang is not None:
            q, k = apply_rope(q, ang), apply_rope(k, ang)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d)), v


# ---------------------------------------------------------------------------- MoE GLU
class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w13 = nn.Linear(dim, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(a) * b)


class MoEGLU(nn.Module):
    """Mixture of SwiGLU experts (n routed, top-k, softmax gates renormalised over the chosen
    k) + an always-on shared expert. Dispatch is dropless: tokens are sorted by expert and
    each expert runs once on its contiguous slice (equal to :meth:`dense_reference`).

    Load-balancing loss (Switch Transformer, Fedus et al. 2022, generalised to top-k):
    ``E * sum_e f_e * P_e`` with f_e the share of the N*k assignments that went to expert e and
    P_e its mean router probability; it is 1 when routing is uniform (its minimum over f for
    uniform P), and grows as routing collapses."""

    def __init__(self, dim: int, hidden: int, n_experts: int, top_k: int, shared: bool):
        super().__init__()
        self.n_experts, self.top_k = n_experts, top_k
        self.router = nn.Linear(dim, n_experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(dim, hidden) for _ in range(n_experts))
        self.shared = SwiGLU(dim, hidden) if shared else None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        probs = self.router(x).float().softmax(dim=-1)            # (T, E)
        gates, idx = probs.topk(self.top_k, dim=-1)                # (T, k)
        gates = gates / gates.sum(dim=-1, keepdim=True)
        return probs, gates.to(x.dtype), idx

    def balance_loss(self, probs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        counts = torch.bincount(idx.flatten(), minlength=self.n_experts).float()
        f = counts / idx.numel()
        return self.n_experts * (f * probs.mean(dim=0)).sum()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = x.shape
        x = x.reshape(-1, shape[-1])                                # (T, D)
        probs, gates, idx = self.route(x)
        flat = idx.flatten()                                        # (T*k,)
        order = flat.argsort(stable=True)
        token = order // self.top_k
        counts = torch.bincount(flat, minlength=self.n_experts).tolist()
        out = torch.zeros_like(x)
        start = 0
        for e, cnt in enumerate(counts):
            if cnt:
                sel = order[start:start + cnt]
                y = self.experts[e](x[token[start:start + cnt]])
                out.index_add_(0, token[start:start + cnt], y * gates.flatten()[sel, None])
            start += cnt
        if self.shared is not None:
            out = out + self.shared(x)
        return out.reshape(shape), self.balance_loss(probs, idx)

    def dense_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Every expert on every token, combined with the same gates (for tests)."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        _, gates, idx = self.route(x)
        dense = torch.stack([e(x) for e in self.experts], dim=1)   # (T, E, D)
        w = torch.zeros(x.shape[0], self.n_experts, dtype=x.dtype, device=x.device)
        w.scatter_(1, idx, gates)
        out = (dense * w[..., None]).sum(dim=1)
        if self.shared is not None:
            out = out + self.shared(x)
        return out.reshape(shape)


# ------------------------------------------------------------------------------ AdaLN
class AdaLN(nn.Module):
    """c -> (shift, scale, gate) x n_chunks. 'lora': SiLU -> D -> r -> n*D (MMAIF's low-rank
    AdaLN); 'full': SiLU -> D -> n*D (DiT). The last layer is zero-initialised."""

    def __init__(self, dim: int, n_chunks: int, kind: str, rank: int):
        super().__init__()
        self.n = n_chunks
        layers = [nn.SiLU()] + ([nn.Linear(dim, rank, bias=False), nn.Linear(rank, n_chunks * dim)]
                                if kind == "lora" else [nn.Linear(dim, n_chunks * dim)])
        self.net = nn.Sequential(*layers)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net(c).chunk(self.n, dim=-1)


# ------------------------------------------------------------------------------ block
class Block(nn.Module):
    """x = NAF(x + pe_l); x += g1 * Attn(mod(LN(x))); x += g2 * MoE(mod(LN(x)))."""

    def __init__(self, cfg: DiTConfig, layer: int):
        super().__init__()
        self.ape = GridAPE(cfg.dim, cfg.ape_grid) if cfg.ape else None
        self.naf = NAFBlock(cfg.dim) if cfg.naf else None
        self.norm1 = nn.LayerNorm(cfg.dim, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(cfg.dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(cfg, layer)
        hidden = int(cfg.mlp_ratio * cfg.dim)
        self.mlp = (MoEGLU(cfg.dim, hidden, cfg.n_experts, cfg.top_k, cfg.shared_expert)
                    if cfg.moe else SwiGLU(cfg.dim, hidden))
        self.ada = AdaLN(cfg.dim, 6, cfg.adaln, cfg.adaln_rank)

    def forward(self, x, c, h, w, ang, v_res):
        if self.ape is not None:
            x = x + self.ape(h, w)
        if self.naf is not None:
            x = self.naf(x, h, w)
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c)
        a, v = self.attn(modulate(self.norm1(x), sh1, sc1), ang, v_res)
        x = x + g1[:, None] * a
        m = self.mlp(modulate(self.norm2(x), sh2, sc2))
        m, aux = m if isinstance(m, tuple) else (m, x.new_zeros(()))
        return x + g2[:, None] * m, v, aux


# ------------------------------------------------------------------------------ model
class FusionDiT(nn.Module):
    """The all-in-one fusion DiT. ``forward(cond, text, t=None, x_t=None)``:
    cond (B, n_inputs*z, h, w) input latents; text (B, text_dim) pooled prompt embedding;
    flow: t (B,) in [0, 1] and x_t (B, z, h, w). Returns (out (B, out_channels, h, w),
    {'balance': mean MoE balance loss}). h and w must be multiples of ``patch``."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.dim, cfg.patch
        self.embed = nn.Conv2d(cfg.in_channels, d, p, stride=p)
        self.evidence = Evidence(cfg) if cfg.evidence_maps else None
        self.text = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time = TimestepEmbedder(d) if cfg.flow else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.depth))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = AdaLN(d, 2, cfg.adaln, cfg.adaln_rank)
        self.out = nn.Linear(d, p * p * cfg.out_channels)
        # per input and channel a gain and an offset for the whole image (from the mean token)
        self.global_tone = nn.Linear(d, 6 * cfg.n_inputs) if cfg.global_tone else None
        self.initialize()

    def initialize(self) -> None:
        """All initialisation, in one place."""
        def base(m):  # transformer default: Xavier for linear layers, zero biases
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(base)
        nn.init.xavier_uniform_(self.embed.weight.view(self.embed.weight.shape[0], -1))
        nn.init.zeros_(self.embed.bias)
        for blk in [*self.blocks]:
            last = blk.ada.net[-1]  # AdaLN: zero shift/scale/gate -> the block is the identity
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            if isinstance(blk.mlp, MoEGLU):  # small router init: near-uniform routing
                nn.init.normal_(blk.mlp.router.weight, std=0.02)
        nn.init.zeros_(self.ada_out.net[-1].weight)
        nn.init.zeros_(self.ada_out.net[-1].bias)
        nn.init.zeros_(self.out.weight)  # final layer zero: the model outputs 0 at init
        nn.init.zeros_(self.out.bias)
        if self.evidence is not None:  # zero: adding the path changes nothing at first
            nn.init.zeros_(self.evidence.embed.weight)
            nn.init.zeros_(self.evidence.embed.bias)
        if self.global_tone is not None:  # zero: gain 1, offset 0
            nn.init.zeros_(self.global_tone.weight)
            nn.init.zeros_(self.global_tone.bias)

    def forward(self, cond: torch.Tensor, text: torch.Tensor, t: torch.Tensor | None = None,
                x_t: torch.Tensor | None = None,
                images: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        if cfg.flow:
            if t is None or x_t is None:
                raise ValueError("flow model needs t and x_t")
            cond = torch.cat([cond, x_t], dim=1)
        b, _, hh, ww = cond.shape
        p = cfg.patch
        if hh % p or ww % p:
            raise ValueError(f"latent grid {hh}x{ww} is not a multiple of patch {p}")
        h, w = hh // p, ww // p
        x = grid_to_tokens(self.embed(cond))                       # (B, N, D)
        if self.evidence is not None:
            if images is None:
                raise ValueError("this model reads evidence from the full-resolution inputs: "
                                 "pass images=[a, b, ...]")
            x = x + self.evidence(images, (hh, ww)).to(x.dtype)
        c = self.text(text.to(x.dtype))
        if self.time is not None:
            c = c + self.time(t)
        ang = rope_2d(h, w, cfg.dim // cfg.heads, cfg.rope_theta, x.device, x.dtype) \
            if cfg.rope else None
        v_first = v_prev = None
        balance = []
        for i, blk in enumerate(self.blocks):
            v_res = v_prev if cfg.value_residual == "prev" else v_first
            x, v, aux = blk(x, c, h, w, ang, v_res)
            v_prev = v
            if i == 0:
                v_first = v
            balance.append(aux)
        sh, sc = self.ada_out(c)
        feat = modulate(self.norm_out(x), sh, sc)
        x = self.out(feat)                                         # (B, N, p*p*C)
        x = x.view(b, h, w, p, p, cfg.out_channels).permute(0, 5, 1, 3, 2, 4)
        out = x.reshape(b, cfg.out_channels, hh, ww)
        aux = {"balance": torch.stack(balance).mean()}
        if self.global_tone is not None:  # (B, 6 n): the gains (n x RGB), then the offsets
            aux["global_tone"] = self.global_tone(feat.mean(dim=1))
        return out, aux

    def param_counts(self) -> dict[str, int]:
        """Total parameters and parameters active per token (shared + top-k routed experts)."""
        total = sum(p.numel() for p in self.parameters())
        idle = 0
        for blk in self.blocks:
            if isinstance(blk.mlp, MoEGLU):
                per = sum(p.numel() for p in blk.mlp.experts[0].parameters())
                idle += per * (blk.mlp.n_experts - blk.mlp.top_k)
        return {"total": total, "active_per_token": total - idle}


    def adapt_state(self, state: dict[str, torch.Tensor],
                    source: DiTConfig | None = None) -> dict[str, torch.Tensor]:
        """A state dict of a model (config ``source``) without some of this model's
        zero-initialised paths, made to fit it: output channels the source lacks (fix / teacher
        gates, tone; matched by :meth:`DiTConfig.head_channels`, in each patch position) and
        evidence channels of images or maps it did not read (matched by
        :meth:`DiTConfig.image_kinds` and :meth:`DiTConfig.evidence_kinds`) keep this model's
        zero init, so the result computes what the source computed. Without
        ``source``, the source's channels are taken to be a prefix of this model's."""
        own, out = self.state_dict(), dict(state)
        p, new = self.cfg.patch, self.cfg.head_channels()
        for key in ("out.weight", "out.bias"):
            src = state.get(key)
            if src is None or src.shape == own[key].shape or src.shape[0] % (p * p):
                continue
            c_old = src.shape[0] // (p * p)
            old = source.head_channels() if source is not None else new[:c_old]
            if len(old) != c_old:
                continue
            index = _match_kinds(old, new)
            if index is None:
                continue  # the source has channels this model lacks: left for the caller
            pad = own[key].detach().clone().view(p, p, len(new), *own[key].shape[1:])
            pad[:, :, index] = src.view(p, p, c_old, *src.shape[1:])
            out[key] = pad.view_as(own[key])
        key = "evidence.embed.weight"
        src = state.get(key)
        if src is not None and key in own and src.shape != own[key].shape:
            f2 = self.cfg.evidence_f ** 2  # channels per map (space-to-depth)
            new_m, new_k = self.cfg.evidence_kinds(), self.cfg.image_kinds()
            if source is not None:
                old_m, old_k = source.evidence_kinds(), source.image_kinds()
            else:  # the same maps, a prefix of the images
                old_m, old_k = new_m, new_k[:src.shape[1] // (len(new_m) * f2)]
            images, maps = _match_kinds(old_k, new_k), _match_kinds(old_m, new_m)
            if images is not None and maps is not None \
                    and len(old_k) * len(old_m) * f2 == src.shape[1]:
                pad = own[key].detach().clone()
                for j_old, j_new in enumerate(images):
                    for m_old, m_new in enumerate(maps):
                        a, b = (j_old * len(old_m) + m_old) * f2, (j_new * len(new_m) + m_new) * f2
                        pad[:, b:b + f2] = src[:, a:a + f2]
                out[key] = pad
        return out


# modules a warm start may lack: zero-initialised, so adding them changes nothing at first
ZERO_INIT_MODULES = ("evidence.", "global_tone.")


def _match_kinds(old: list[str], new: list[str]) -> list[int] | None:
    """Where each of ``old``'s entries goes in ``new``: the k-th of a kind to the k-th of the
    same kind; None when ``new`` lacks one."""
    index, seen = [], {}
    for name in old:
        k = seen[name] = seen.get(name, -1) + 1
        where = [i for i, nm in enumerate(new) if nm == name]
        if k >= len(where):
            return None
        index.append(where[k])
    return index


# ------------------------------------------------------------------ presets and I/O
PRESETS: dict[str, dict] = {
    # trains on 2 CPU cores: pixel tokens (f = 8), patch 2 (1200 tokens at 640x480)
    # Expert width = dim: shared + top-2 experts activate 3 x 3 x dim^2 weights per token,
    # close to a dense 4x MLP (2 x 4 x dim^2), as in fine-grained MoE.
    "tiny": dict(dim=192, depth=6, heads=3, mlp_ratio=1.0, patch=2, adaln_rank=32),
    "small": dict(dim=384, depth=8, heads=6, mlp_ratio=1.0, patch=1, adaln_rank=64),
    # paper scale, around DiT-B/2: patch 2 on the f = 8 grid
    "base": dict(dim=768, depth=12, heads=12, mlp_ratio=1.0, patch=2, adaln_rank=128),
}


def make_config(preset: str = "tiny", **overrides) -> DiTConfig:
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return DiTConfig.from_dict({**PRESETS[preset], **overrides})


def load_config_file(path: str | Path) -> DiTConfig:
    """YAML file: ``preset: NAME`` plus overrides of :class:`DiTConfig` keys (at the top level
    or under ``model:``, as in training configs)."""
    from mmaif.data.images import read_yaml_mapping

    data = read_yaml_mapping(path)
    model = dict(data.get("model", data))
    return make_config(model.pop("preset", "tiny"), **model)
