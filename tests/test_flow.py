from __future__ import annotations

import pytest
import torch

from mmaif.model import flow


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_oracle_velocity_recovers_data_in_one_step(method):
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(2, 4, 5, 7, generator=g), torch.randn(2, 4, 5, 7, generator=g)

    def oracle(z, t):  # the straight path's velocity is constant: eps - z0
        return flow.velocity_target(z0, eps)

    out = flow.sample(oracle, eps, steps=1, method=method)
    assert torch.allclose(out, z0, atol=1e-6)
    assert torch.allclose(flow.sample(oracle, eps, steps=5, shift=3.0), z0, atol=1e-5)


def test_noisy_interpolates_and_refine_starts_at_t0():
    z0, eps = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)
    assert torch.allclose(flow.noisy(z0, eps, torch.tensor([0.25])), torch.full_like(z0, 0.25))
    assert torch.allclose(flow.refine_start(z0, eps, 0.4), torch.full_like(z0, 0.4))


def test_timesteps_and_shift():
    ts = flow.timesteps(4, shift=3.0)
    assert ts[0] == 1 and ts[-1] == 0 and (ts[1:] < ts[:-1]).all()
    assert (ts[1:-1] > torch.linspace(1, 0, 5)[1:-1]).all()  # shift > 1 keeps t higher
    t = flow.sample_t(1000, torch.Generator().manual_seed(0))
    assert t.min() > 0 and t.max() < 1 and abs(t.mean() - 0.5) < 0.05
    with pytest.raises(ValueError):
        flow.sample(lambda z, t: z, torch.zeros(1), 1, method="rk4")
