"""The two objectives, each in one place: what a training step minimises (``loss``) and how an
image is made at inference (``predict`` for regression, ``sample`` for flow). The trainer, the
pipeline and the benchmarks all go through these (``make_objective(components)``).

* :class:`Regression` — one pass of the network; with the 'fullres' head the image is what
  :func:`~mmaif.model.head.fullres_parts` makes of the inputs and their classical candidates,
  L1 to the ground truth (pixels, or latents with the 'latent' head), plus the head's
  distillation terms.
* :class:`Flow` — rectified flow in the tokenizer's latent space: velocity MSE at a seeded
  timestep per sample; sampling integrates the velocity from noise (or from a given start).

Both add the MoE balance loss and, optionally, the fusion loss on the (one-step) image. The
training settings a loss reads (weights, seeds, timestep law) come from the trainer's
``TrainConfig``; this module does not import the trainer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmaif.errors import UsageError
from mmaif.model import flow
from mmaif.model.components import Components, seeded_generator
from mmaif.model.head import fullres_parts, head_distill, latent_output


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


def batch_candidates(batch: dict) -> dict | None:
    """The classical candidates a collated training batch carries (None without gates)."""
    if "fa" not in batch:
        return None
    return {"fixes": [batch["fa"], batch["fb"]], "teacher": batch.get("ts"),
            "teacher_on": batch.get("ts_on")}


class _Objective:
    name = ""

    def __init__(self, comps: Components):
        self.c = comps

    def _finish(self, main, aux, pred, batch, cfg) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Add the balance, distillation and fusion terms to ``main``; detached terms."""
        a, b, gt = batch["a"], batch["b"], batch["gt"]
        terms = {"main": main.detach(), "balance": aux["balance"].detach()}
        loss = main + cfg.balance_weight * aux["balance"]
        if cfg.distill_weight > 0:
            if "parts" not in aux:
                raise UsageError("distill_weight needs the fullres head (blend weights) and the "
                                 "regression objective")
            cands = batch_candidates(batch) or {}
            fp = {**aux["parts"], "inputs": [a, b], **cands}
            gtone = aux.get("global_tone") if cfg.global_tone_weight > 0 else None
            for k, term in head_distill(fp, aux["logits"], gt, self.c.tok.f,
                                        cfg.distill_min_diff, gtone).items():
                weight = {"distill_global_tone": cfg.global_tone_weight,
                          "distill_teacher": cfg.teacher_distill_weight}.get(k)
                weight = cfg.distill_weight if weight is None else weight
                loss = loss + weight * term
                terms[k] = term.detach()
        if cfg.fusion_weight > 0:
            fl = fusion_loss(pred, [a, b])
            loss = loss + cfg.fusion_weight * fl
            terms["fusion"] = fl.detach()
        terms["loss"] = loss.detach()
        return loss, terms, pred


class Regression(_Objective):
    name = "reg"

    def predict(self, net, a, b, pooled, cands: dict | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        """One regression pass -> (image in [-1, 1], latent or None, aux). ``cands`` holds the
        classical candidates the model's gates read (``fixes``: [fix(a), fix(b)], ``teacher``:
        the teacher's fusion of the fixes; images like a and b; optional ``teacher_on``: (B,),
        0 where the teacher gate is closed), required when the model has fix / teacher gates.
        With the fullres head, aux['logits'] holds the head's channels after the residual on
        the token grid (blend logits, gate logits, tone) and aux['parts'] what
        :func:`~mmaif.model.head.fullres_parts` made the image of."""
        cfg = self.c.model.cfg
        fixes = teacher = teacher_on = None
        if cfg.fix_gates or cfg.teacher_gate:
            if cands is None:
                raise ValueError("this model fuses with classical candidates: pass cands="
                                 "{'fixes': [fa, fb], 'teacher': ts} (FusionPipeline."
                                 "candidates makes them)")
            fixes = cands["fixes"] if cfg.fix_gates else None
            teacher = cands["teacher"] if cfg.teacher_gate else None
            teacher_on = cands.get("teacher_on")
        images = [a, b] + (fixes or []) + ([teacher] if teacher is not None else [])
        cond = self.c.condition(a, b)
        out, aux = net(cond, pooled, images=images)
        if cfg.head == "fullres":
            aux["logits"] = out[:, cfg.latent_channels:]
            aux["parts"] = fullres_parts(out, [a, b], self.c.tok.f, fixes, teacher, cfg.tone,
                                         teacher_on, aux.get("global_tone"), cfg.upsample)
            return aux["parts"]["out"], None, aux
        lat = latent_output(out, cond, cfg)
        return self.c.tok.decode(lat), lat, aux

    def loss(self, net, batch: dict, pooled: torch.Tensor, indices: list[int], step: int,
             cfg) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """(loss, detached terms, predicted image) of one batch: L1 to the GT (pixels, or
        latents with the latent head) + the shared terms."""
        pred, lat, aux = self.predict(net, batch["a"], batch["b"], pooled,
                                      batch_candidates(batch))
        gt = batch["gt"]
        main = F.l1_loss(lat, self.c.tok.encode(gt)) if lat is not None else F.l1_loss(pred, gt)
        return self._finish(main, aux, pred, batch, cfg)


class Flow(_Objective):
    name = "flow"

    def sample(self, net, a, b, pooled, steps: int, method: str = "euler", shift: float = 1.0,
               seed: int = 0, start: torch.Tensor | None = None, t0: float = 1.0
               ) -> torch.Tensor:
        """An image in [-1, 1]: the velocity integrated over ``steps`` from seeded noise (or
        from ``start`` noised to time ``t0``, SDEdit-style)."""
        cond = self.c.condition(a, b)
        g = seeded_generator(seed, 0)
        eps = torch.randn(cond.shape[0], self.c.tok.z, *cond.shape[2:], generator=g).to(cond)
        z = eps if start is None else flow.refine_start(start, eps, t0)

        def velocity(zt, t):
            return net(cond, pooled, t, zt, images=[a, b])[0]

        return self.c.tok.decode(flow.sample(velocity, z, steps, method, shift, t0))

    def loss(self, net, batch: dict, pooled: torch.Tensor, indices: list[int], step: int,
             cfg) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """Velocity MSE at a timestep and noise seeded per (seed, step, sample index), so any
        sharding sees the same draws; the image is the one-step estimate of the clean sample."""
        a, b = batch["a"], batch["b"]
        z0 = self.c.tok.encode(batch["gt"])
        gens = [seeded_generator(cfg.seed, step, i) for i in indices]
        eps = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in gens]).to(z0)
        t = torch.cat([flow.sample_t(1, g, cfg.t_mean, cfg.t_std, cfg.t_shift)
                       for g in gens]).to(z0.device)
        cond = self.c.condition(a, b)
        out, aux = net(cond, pooled, t, flow.noisy(z0, eps, t), images=[a, b])
        main = F.mse_loss(out.float(), flow.velocity_target(z0, eps).float())
        tt = t.view(-1, 1, 1, 1)
        # with a gradient only when a loss uses the image
        v = out if cfg.fusion_weight > 0 else out.detach()
        pred = self.c.tok.decode(flow.noisy(z0, eps, t) - tt * v.float())
        return self._finish(main, aux, pred, batch, cfg)


def make_objective(comps: Components) -> Regression | Flow:
    """The objective of ``comps``: the model's own (``cfg.flow``)."""
    return (Flow if comps.objective == "flow" else Regression)(comps)
