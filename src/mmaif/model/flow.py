"""Rectified flow (Liu et al. 2022; SD3's recipe): data at t = 0, noise at t = 1,
z_t = (1 - t) z_0 + t eps, velocity target v = eps - z_0; samplers integrate dz/dt = v from
t = 1 (or t0 for refinement) down to 0."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch


def shift_t(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Timestep shift (SD3): t' = s t / (1 + (s - 1) t); s > 1 spends more time at high noise."""
    return shift * t / (1 + (shift - 1) * t) if shift != 1.0 else t


def sample_t(n: int, generator: torch.Generator | None = None, mean: float = 0.0,
             std: float = 1.0, shift: float = 1.0) -> torch.Tensor:
    """Logit-normal training timesteps (SD3), optionally shifted."""
    t = torch.sigmoid(torch.randn(n, generator=generator) * std + mean)
    return shift_t(t, shift)


def noisy(z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    tt = t.view(-1, *([1] * (z0.dim() - 1))).to(z0.dtype)
    return (1 - tt) * z0 + tt * eps


def velocity_target(z0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    return eps - z0


def timesteps(steps: int, shift: float = 1.0, t0: float = 1.0) -> torch.Tensor:
    """Decreasing grid t0 = t_0 > ... > t_N = 0 (shifted)."""
    return shift_t(torch.linspace(t0, 0.0, steps + 1), shift) if t0 == 1.0 else \
        torch.linspace(t0, 0.0, steps + 1)


@torch.no_grad()
def sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z: torch.Tensor,
           steps: int, method: str = "euler", shift: float = 1.0,
           t0: float = 1.0) -> torch.Tensor:
    """Integrate from ``z`` at time ``t0`` to t = 0. ``velocity(z, t)`` with t of shape (B,).

    Euler: z += (t_next - t) v(z, t). Heun: the trapezoidal correction with a second
    evaluation (skipped on the last step to t = 0, as in EDM)."""
    if method not in ("euler", "heun"):
        raise ValueError(f"unknown sampler {method!r}; use euler or heun")
    ts = timesteps(steps, shift, t0).to(z.device)
    b = z.shape[0]
    for t, t_next in pairwise(ts):
        tb = t.expand(b)
        v = velocity(z, tb)
        z_next = z + (t_next - t) * v
        if method == "heun" and t_next > 0:
            v2 = velocity(z_next, t_next.expand(b))
            z_next = z + (t_next - t) * (v + v2) / 2
        z = z_next
    return z


def refine_start(z_reg: torch.Tensor, eps: torch.Tensor, t0: float) -> torch.Tensor:
    """SDEdit-style refinement: start the flow at t0 from the regression estimate."""
    return noisy(z_reg, eps, torch.full((z_reg.shape[0],), t0, device=z_reg.device))
