"""What a training step minimises: the regression / flow loss of one batch (:func:`step_loss`),
the auxiliary fusion loss, and the distillation of the full-resolution head's blend weights,
gates and tone toward least-squares targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmaif.errors import UsageError
from mmaif.model import flow
from mmaif.model.components import (
    Components,
    _seeded,
)
from mmaif.training.config import TrainConfig


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def fusion_loss(pred: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
    """sum_i |X~ - X_i|_1 + |grad X~ - grad X_i|_1 (means over pixels)."""
    gx, gy = _grad(pred)
    total = pred.new_zeros(())
    for x in inputs:
        ix, iy = _grad(x)
        total = total + F.l1_loss(pred, x) + F.l1_loss(gx, ix) + F.l1_loss(gy, iy)
    return total


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


def tone_targets(us: list[torch.Tensor], keep: torch.Tensor | float, resid: torch.Tensor,
                 f: int, ridge: float = 0.01) -> torch.Tensor:
    """Ridge least-squares tone per f x f block and channel for an output that is affine in
    it, ``y = rest + sum_i g_i * u_i + keep * o`` (``us``: each input's share of the output,
    (B, C, H, W)): the gains g_i and offset o that bring y closest to the GT (``resid = gt -
    rest``), shrunk toward 0 (no change) by ``ridge`` (in squared [-1, 1] units per pixel).
    Returns (B, C, n + 1, H/f, W/f): the n gains, then the offset."""
    keep = torch.as_tensor(keep, dtype=torch.float32, device=resid.device).expand_as(resid)
    feats = [u.float() for u in us] + [keep.float()]
    k = len(feats)
    a = torch.stack([torch.stack([F.avg_pool2d(fi * fj, f) for fj in feats], -1)
                     for fi in feats], -2)                          # (B, C, h, w, k, k)
    rhs = torch.stack([F.avg_pool2d(fi * resid.float(), f) for fi in feats], -1)
    a = a + ridge * torch.eye(k, device=a.device)
    theta = torch.linalg.solve(a, rhs[..., None])[..., 0]           # (B, C, h, w, k)
    return theta.permute(0, 1, 4, 2, 3)


def head_distill(parts: dict, logits: torch.Tensor, gt: torch.Tensor, f: int,
                 min_diff: float) -> dict[str, torch.Tensor]:
    """Distillation terms of the fullres head, each toward least-squares targets given the
    head's other (detached) outputs: blend weights over the restored inputs, each fix gate,
    the teacher gate, the tone (ridge). ``logits``: the head's channels after the residual, in
    :meth:`DiTConfig.head_channels` order."""
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
    return terms


def step_loss(comps: Components, net, batch: dict, pooled: torch.Tensor, indices: list[int],
          step: int, cfg: TrainConfig) -> tuple[torch.Tensor, dict, torch.Tensor]:
    a, b, gt = batch["a"], batch["b"], batch["gt"]
    parts = {}
    if cfg.objective == "reg":
        cands = {"fixes": [batch["fa"], batch["fb"]], "teacher": batch.get("ts"),
                 "teacher_on": batch.get("ts_on")} if "fa" in batch else None
        pred, lat, aux = comps.regress(net, a, b, pooled, cands)
        main = F.l1_loss(lat, comps.tok.encode(gt)) if lat is not None else F.l1_loss(pred, gt)
    else:
        z0 = comps.tok.encode(gt)
        gens = [_seeded(cfg.seed, step, i) for i in indices]  # per sample: shard-independent
        eps = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in gens]).to(z0)
        t = torch.cat([flow.sample_t(1, g, cfg.t_mean, cfg.t_std, cfg.t_shift)
                       for g in gens]).to(z0.device)
        cond = comps.condition(a, b)
        out, aux = net(cond, pooled, t, flow.noisy(z0, eps, t), images=[a, b])
        main = F.mse_loss(out.float(), flow.velocity_target(z0, eps).float())
        tt = t.view(-1, 1, 1, 1)
        # the one-step estimate of the clean sample; with a gradient when a loss uses it
        v = out if cfg.fusion_weight > 0 else out.detach()
        pred = comps.tok.decode(flow.noisy(z0, eps, t) - tt * v.float())
    parts["main"] = main.detach()
    loss = main + cfg.balance_weight * aux["balance"]
    parts["balance"] = aux["balance"].detach()
    if cfg.distill_weight > 0:
        if "parts" not in aux:
            raise UsageError("distill_weight needs the fullres head (blend weights) and the "
                             "regression objective")
        fp = {**aux["parts"], "inputs": [a, b]}
        if "fa" in batch:
            fp.update(fixes=[batch["fa"], batch["fb"]], teacher=batch.get("ts"),
                      teacher_on=batch.get("ts_on"))
        for k, term in head_distill(fp, aux["logits"], gt, comps.tok.f,
                                    cfg.distill_min_diff).items():
            loss = loss + cfg.distill_weight * term
            parts[k] = term.detach()
    if cfg.fusion_weight > 0:
        fl = fusion_loss(pred, [a, b])
        loss = loss + cfg.fusion_weight * fl
        parts["fusion"] = fl.detach()
    parts["loss"] = loss.detach()
    return loss, parts, pred
