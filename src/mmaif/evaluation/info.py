"""``mmaif info``: parameters, FLOPs and token grid of a model configuration.

FLOPs are counted by torch's FlopCounterMode on one real forward pass (batch 1) at the given
size (matmuls, convolutions, attention), reported as GFLOPs = 1e9 floating-point operations
(a multiply-add counts as 2).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from mmaif.model.dit import FusionDiT, load_config_file, make_config
from mmaif.model.tokenizers import make_tokenizer


def _count_cpu_attention() -> None:
    """torch's counter has formulas for the CUDA attention kernels but not for the CPU flash
    kernel that ``scaled_dot_product_attention`` runs here, so attention would count as 0;
    register the same formula for it (once, on first use)."""
    from torch.utils import flop_counter as fc

    op = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if op in fc.flop_registry or op.default in fc.flop_registry:
        return

    @fc.register_flop_formula(op)
    def _cpu_sdpa(q_shape, k_shape, v_shape, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(q_shape, k_shape, v_shape)


def count_flops(fn) -> tuple[int, object]:
    """(FLOPs of one call of ``fn`` under no_grad, its result)."""
    _count_cpu_attention()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = fn()
    return counter.get_total_flops(), out


def _flops(fn) -> int:
    return count_flops(fn)[0]


def model_info(preset: str, config: str | None, size: tuple[int, int], tokenizer: str = "pixel",
               flow: bool = False) -> list[str]:
    tok = make_tokenizer(tokenizer)
    overrides = {"latent_channels": tok.z}
    if tok.name != "pixel":  # the full-resolution head blends pixels: pixel tokens only
        overrides["head"] = "latent"
    if flow:
        overrides.update(flow=True, head="latent")
    cfg = load_config_file(config) if config else make_config(preset)
    cfg = type(cfg).from_dict({**cfg.to_dict(), **overrides})
    torch.manual_seed(0)
    model = FusionDiT(cfg).eval()
    w, h = size
    m = tok.f * cfg.patch
    pw, ph = -(-w // m) * m, -(-h // m) * m
    lh, lw = ph // tok.f, pw // tok.f
    cond = torch.randn(1, cfg.latent_channels * cfg.n_inputs, lh, lw)
    text = torch.randn(1, cfg.text_dim)
    extra = {"t": torch.rand(1), "x_t": torch.randn(1, cfg.latent_channels, lh, lw)} \
        if flow else {}
    img = torch.rand(cfg.n_inputs, tok.image_channels, ph, pw) * 2 - 1
    if cfg.evidence_maps:  # the evidence path reads the full-resolution inputs
        extra["images"] = [img[i:i + 1] for i in range(cfg.n_inputs)]
    dit = _flops(lambda: model(cond, text, **extra))
    tok_flops = _flops(lambda: tok.decode(tok.encode(img)[:1]))
    counts = model.param_counts()
    name = f"config {config}" if config else f"preset {preset}"
    moe = f"on: shared + top-{cfg.top_k} of {cfg.n_experts}" if cfg.moe else "off"
    return [
        f"{name}: dim {cfg.dim}, depth {cfg.depth}, heads {cfg.heads}, patch {cfg.patch}, "
        f"{'flow' if flow else 'regression'}, head {cfg.head}",
        f"tokenizer {tok.name}: f = {tok.f}, z = {tok.z}",
        f"image {w}x{h} (padded to {pw}x{ph}) -> latent {lw}x{lh} -> token grid "
        f"{lw // cfg.patch}x{lh // cfg.patch} = {(lw // cfg.patch) * (lh // cfg.patch)} tokens",
        f"parameters: {counts['total'] / 1e6:.2f} M total, "
        f"{counts['active_per_token'] / 1e6:.2f} M active per token "
        f"(MoE {moe})",
        f"GFLOPs per image: DiT {dit / 1e9:.2f} (one {'step' if flow else 'pass'}), "
        f"tokenizer {tok_flops / 1e9:.2f} ({cfg.n_inputs} encodes + 1 decode)",
        "switches: " + ", ".join(f"{k}={getattr(cfg, k)}" for k in (
            "naf", "rope", "ape", "value_residual", "moe", "adaln", "residual_mean")),
    ]
