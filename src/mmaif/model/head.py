"""The full-resolution head: the image a 'fullres' prediction makes of the inputs and their
classical candidates (blend weights, fix and teacher gates, tone, residual), the latent head's
output, and the distillation of the head's weights, gates and tone toward least-squares
targets against the ground truth."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmaif.data.images import RGB2GRAY
from mmaif.model.dit import DiTConfig


# ------------------------------------------------------------------- output composition
def latent_output(out: torch.Tensor, cond: torch.Tensor, cfg: DiTConfig) -> torch.Tensor:
    """Regression with the 'latent' head: the predicted latent, as a correction of the mean of
    the input latents when ``residual_mean`` (NAFNet-style global residual) is on."""
    if cfg.flow or not cfg.residual_mean:
        return out
    b, _, h, w = cond.shape
    return out + cond.view(b, cfg.n_inputs, cfg.latent_channels, h, w).mean(dim=1)


# --------------------------------------------------------------- full-resolution head
def box_mean(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r + 1)^2 window around each pixel, inside the image (two 1-D passes)."""
    k = 2 * r + 1
    x = F.avg_pool2d(x, (1, k), 1, (0, r), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), 1, (r, 0), count_include_pad=False)


def guided_upsample(t: torch.Tensor, guide: torch.Tensor, r: int,
                    eps: float = 1e-3) -> torch.Tensor:
    """Edge-aware upsampling of per-cell maps ``t`` (B, K, h, w) to the size of ``guide``
    (B, 1, H, W, e.g. luminance in [0, 1]): the bilinear upsampling, then a guided filter
    (He et al., ECCV 2010) of radius ``r`` on the guide, so each map follows the guide's edges
    inside a cell instead of crossing them (the role of bilateral-grid slicing in HDRNet).
    Locally the result is affine in the guide; a constant map stays constant."""
    p = F.interpolate(t.float(), size=guide.shape[-2:], mode="bilinear", align_corners=False)
    g = guide.float()
    mg, mp = box_mean(g, r), box_mean(p, r)
    var = box_mean(g * g, r) - mg * mg
    a = (box_mean(g * p, r) - mg * mp) / (var + eps)
    b = mp - a * mg
    return box_mean(a, r) * g + box_mean(b, r)


def luminance(inputs: list[torch.Tensor]) -> torch.Tensor:
    """The guide of :func:`guided_upsample`: the luminance of the inputs' mean, in [0, 1]
    ((B, 1, H, W); edges of either input show in it)."""
    x = (sum(inputs) / len(inputs)).float()
    return ((x * x.new_tensor(RGB2GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True) + 1) / 2


def fullres_parts(pred: torch.Tensor, inputs: list[torch.Tensor], f: int,
                  fixes: list[torch.Tensor] | None = None,
                  teacher: torch.Tensor | None = None, tone: bool = False,
                  teacher_on: torch.Tensor | None = None,
                  global_tone: torch.Tensor | None = None,
                  upsample: str = "bilinear") -> dict[str, torch.Tensor]:
    """Image from a 'fullres' prediction (B, out_channels, h, w; channels as
    :meth:`DiTConfig.head_channels`) and the full-resolution inputs (each (B, C, h*f, w*f), in
    [-1, 1]), with what it is made of:

    - ``restored``: each input moved toward its classical fix (``fixes``) by a gate in [0, 1]
      (``r = clamp(logit, 0, 1)``, on the token grid, upsampled bilinearly), then, with
      ``global_tone`` ((B, 6 n): per input and channel a gain, then per input and channel an
      offset, for the whole image), times (1 + its gain) plus its offset;
    - with ``tone``: each restored input times (1 + its gain), per cell and channel
      (HDRNet-like local affine; Gharbi et al. 2017), and an offset per channel added after the
      blend;
    - ``base``: softmax blend weights (``weights``) over those, plus the first z channels
      pixel-shuffled as a residual for what blending cannot fix;
    - ``out``: ``base`` moved toward the teacher's fusion of the fixes (``teacher``) by a gate,
      closed for the samples where ``teacher_on`` (B,) is 0.

    Per-cell maps reach full resolution bilinearly, or edge-aware (``upsample='guided'``:
    :func:`guided_upsample` on the inputs' :func:`luminance`, radius f).
    Gates and gains multiply the full-resolution images: a contrast stretch or dehazing that a
    192-number token could not carry pixel by pixel is selected, not regressed. With the new
    channels at zero this is the blend of the inputs plus the residual (the head without
    them); at pred = 0 it is the inputs' mean."""
    n = len(inputs)
    k_fix, k_t, k_tone = (n if fixes is not None else 0), int(teacher is not None), 3 * n + 3
    z = pred.shape[1] - n - k_fix - k_t - (k_tone if tone else 0)
    size = inputs[0].shape[-2:]

    guide = luminance(inputs) if upsample == "guided" else None

    def up(t):
        if guide is not None:
            return guided_upsample(t, guide, f)
        return F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)

    dt = inputs[0].dtype
    parts = {"weights": up(pred[:, z:z + n]).softmax(dim=1).to(dt)}
    restored = list(inputs)
    if fixes is not None:
        gates = up(pred[:, z + n:z + 2 * n]).clamp(0, 1).to(dt)
        restored = [x + gates[:, i:i + 1] * (fx - x)
                    for i, (x, fx) in enumerate(zip(inputs, fixes, strict=True))]
        parts["fix_gates"] = gates
    if global_tone is not None:
        g = global_tone.to(dt).view(-1, 2, n, 3, 1, 1)
        parts.update(fixed=restored, global_gains=g[:, 0], global_offsets=g[:, 1])
        restored = [x * (1 + g[:, 0, i]) + g[:, 1, i] for i, x in enumerate(restored)]
    w = parts["weights"]
    toned = restored
    offset = 0
    if tone:
        c0 = z + n + k_fix + k_t
        gains = up(pred[:, c0:c0 + 3 * n]).to(dt)
        toned = [x * (1 + gains[:, 3 * i:3 * i + 3]) for i, x in enumerate(restored)]
        offset = up(pred[:, c0 + 3 * n:c0 + k_tone]).to(dt)
        parts.update(gains=gains, offset=offset)
    base = sum(w[:, i:i + 1] * toned[i] for i in range(n)) + offset \
        + F.pixel_shuffle(pred[:, :z], f)
    parts.update(restored=restored, base=base, out=base)
    if teacher is not None:
        s = up(pred[:, z + n + k_fix:z + n + k_fix + 1]).clamp(0, 1).to(base.dtype)
        if teacher_on is not None:
            s = s * teacher_on.to(s).view(-1, 1, 1, 1)
        parts.update(teacher_gate=s, out=base + s * (teacher - base))
    return parts


def fullres_output(pred: torch.Tensor, inputs: list[torch.Tensor], f: int,
                   fixes: list[torch.Tensor] | None = None,
                   teacher: torch.Tensor | None = None, tone: bool = False,
                   teacher_on: torch.Tensor | None = None,
                   global_tone: torch.Tensor | None = None,
                   upsample: str = "bilinear") -> torch.Tensor:
    """The image of :func:`fullres_parts`."""
    return fullres_parts(pred, inputs, f, fixes, teacher, tone, teacher_on, global_tone,
                         upsample)["out"]


# ----------------------------------------------------------------------- distillation
def gate_targets(d: torch.Tensor, resid: torch.Tensor, f: int,
                 min_diff: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares gate per f x f block for an output that is linear in it,
    ``y = rest + g * d``: the g in [0, 1] that brings y closest to the GT (``resid = gt -
    rest``), and a mask of the blocks where ``d`` is large enough (RMS > ``min_diff``, [-1, 1]
    units) for g to matter. Images (B, C, H, W), H and W multiples of f -> (B, H/f, W/f)."""
    d, e = d.float(), resid.float()
    num = F.avg_pool2d((d * e).sum(1, keepdim=True), f)
    den = F.avg_pool2d((d * d).sum(1, keepdim=True), f)
    g = (num / den.clamp_min(1e-12)).clamp(0, 1)
    mask = (den / d.shape[1]).sqrt() > min_diff
    return g[:, 0], mask[:, 0].float()


def blend_targets(a: torch.Tensor, b: torch.Tensor, gt: torch.Tensor, f: int,
                  min_diff: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares blend weight of ``a`` per f x f block: the w in [0, 1] that makes
    w * a + (1 - w) * b closest to ``gt`` (the teacher), and a mask of the blocks where the
    inputs differ enough (RMS > ``min_diff``) for the weight to matter (:func:`gate_targets`
    with d = a - b)."""
    return gate_targets(a - b, gt - b, f, min_diff)


def distill_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked L1 between the model's weight of input a (softmax of the blend logits on the token
    grid) and the least-squares targets of :func:`blend_targets`."""
    w = logits.float().softmax(dim=1)[:, 0]
    return ((w - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def gate_distill_loss(logit: torch.Tensor, target: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """Masked L1 between a gate's raw logit (B, h, w) and its :func:`gate_targets`; on the raw
    logit, so a gate clamped at 0 or 1 is still pulled back into range."""
    return ((logit.float() - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def affine_targets(feats: list[torch.Tensor], resid: torch.Tensor, block,
                   ridge: float = 0.01) -> torch.Tensor:
    """Ridge least squares per block and channel for an output that is linear in k
    parameters, ``y = rest + sum_j theta_j * feats_j`` (each feature (B, C, H, W), or
    broadcastable to ``resid``): the thetas that bring y closest to the GT (``resid = gt -
    rest``), shrunk toward 0 by ``ridge`` (squared [-1, 1] units per pixel). ``block``: the
    block size (an int, or (h, w): the whole image). Returns (B, C, k, H/bh, W/bw)."""
    feats = [fi.float().expand_as(resid) for fi in feats]
    k = len(feats)
    a = torch.stack([torch.stack([F.avg_pool2d(fi * fj, block) for fj in feats], -1)
                     for fi in feats], -2)                          # (B, C, h, w, k, k)
    rhs = torch.stack([F.avg_pool2d(fi * resid.float(), block) for fi in feats], -1)
    a = a + ridge * torch.eye(k, device=a.device)
    theta = torch.linalg.solve(a, rhs[..., None])[..., 0]           # (B, C, h, w, k)
    return theta.permute(0, 1, 4, 2, 3)


def tone_targets(us: list[torch.Tensor], keep: torch.Tensor | float, resid: torch.Tensor,
                 f: int, ridge: float = 0.01) -> torch.Tensor:
    """Ridge least-squares tone per f x f block and channel for an output that is affine in
    it, ``y = rest + sum_i g_i * u_i + keep * o`` (``us``: each input's share of the output,
    (B, C, H, W)): the gains g_i and offset o that bring y closest to the GT (``resid = gt -
    rest``), shrunk toward 0 (no change) by ``ridge`` (in squared [-1, 1] units per pixel).
    Returns (B, C, n + 1, H/f, W/f): the n gains, then the offset."""
    keep = torch.as_tensor(keep, dtype=torch.float32, device=resid.device)
    return affine_targets([*us, keep], resid, f, ridge)


def head_distill(parts: dict, logits: torch.Tensor, gt: torch.Tensor, f: int,
                 min_diff: float, global_tone: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
    """Distillation terms of the fullres head, each toward least-squares targets given the
    head's other (detached) outputs: blend weights over the restored inputs, each fix gate,
    the teacher gate, the tone (ridge), the global tone (ridge, over the whole image).
    ``logits``: the head's channels after the residual, in :meth:`DiTConfig.head_channels`
    order; ``global_tone``: the model's global tone output (B, 6 n)."""
    restored = [x.detach() for x in parts["restored"]]
    n = len(restored)
    target, mask = blend_targets(restored[0], restored[1], gt, f, min_diff)
    terms = {"distill": distill_loss(logits[:, :n], target, mask)}
    base, out = parts["base"].detach(), parts["out"].detach()
    w = parts["weights"].detach()
    keep = 1 - parts["teacher_gate"].detach() if "teacher_gate" in parts else 1
    i_teacher = n + (n if "fix_gates" in parts else 0)
    if "fix_gates" in parts:
        gain = [1 + parts["gains"][:, 3 * i:3 * i + 3].detach() for i in range(n)] \
            if "gains" in parts else [1] * n
        if "global_gains" in parts:  # the fix's share passes the global gain too
            gain = [gi * (1 + parts["global_gains"][:, i].detach()) for i, gi in enumerate(gain)]
        for i, name in enumerate(("a", "b")[:n]):
            # out = rest + r_i * d: the restored input's share of the blend (after its tone),
            # times what the teacher gate leaves of the blend
            d = keep * w[:, i:i + 1] * gain[i] * (parts["fixes"][i] - parts["inputs"][i])
            rest = out - parts["fix_gates"][:, i:i + 1].detach() * d
            t, m = gate_targets(d, gt - rest, f, min_diff)
            terms[f"distill_fix_{name}"] = gate_distill_loss(logits[:, n + i], t, m)
    if "teacher_gate" in parts:
        t, m = gate_targets(parts["teacher"] - base, gt - base, f, min_diff)
        if parts.get("teacher_on") is not None:  # no target where the gate is closed
            m = m * parts["teacher_on"].to(m).view(-1, 1, 1)
        terms["distill_teacher"] = gate_distill_loss(logits[:, i_teacher], t, m)
    if "gains" in parts:
        c0 = i_teacher + int("teacher_gate" in parts)
        gains, offset = parts["gains"].detach(), parts["offset"].detach()
        us = [keep * w[:, i:i + 1] * restored[i] for i in range(n)]
        rest = out - sum(gains[:, 3 * i:3 * i + 3] * us[i] for i in range(n)) - keep * offset
        theta = tone_targets(us, keep, gt - rest, f)              # (B, 3, n + 1, h, w)
        pred = torch.cat([logits[:, c0:c0 + 3 * n].unflatten(1, (n, 3)).transpose(1, 2),
                          logits[:, c0 + 3 * n:c0 + 3 * n + 3, None]], dim=2)
        terms["distill_tone"] = (pred.float() - theta).abs().mean()
    if "global_gains" in parts and global_tone is not None:
        # y = rest + sum_i G_i * share_i * fixed_i + O_i * share_i, share_i = what the teacher
        # gate, the blend weight and the cell tone pass of input i (per channel)
        gg, go = parts["global_gains"].detach(), parts["global_offsets"].detach()
        cell = [1 + parts["gains"][:, 3 * i:3 * i + 3].detach() for i in range(n)] \
            if "gains" in parts else [1] * n
        share = [keep * w[:, i:i + 1] * cell[i] for i in range(n)]
        us = [share[i] * parts["fixed"][i].detach() for i in range(n)]
        rest = out - sum(gg[:, i] * us[i] + go[:, i] * share[i] for i in range(n))
        # a whole image of evidence per parameter: a light ridge
        theta = affine_targets([*us, *share], gt - rest, tuple(gt.shape[-2:]),
                               ridge=1e-3)[..., 0, 0]
        pred = global_tone.float().view(-1, 2, n, 3).permute(0, 3, 1, 2).flatten(2)
        terms["distill_global_tone"] = (pred - theta).abs().mean()     # (B, 3, 2n): G, then O
    return terms
