from __future__ import annotations

import numpy as np
import pytest

from mmaif.classical.restore import FIXES, noise_sigma, restore, two_stage
from mmaif.data.degrade import OPS, apply_op
from mmaif.data.degrade.depth import FallbackDepth

from .conftest import texture


def smooth_image(h=96, w=128):
    yy, xx = np.mgrid[:h, :w] / 40.0
    base = 0.5 + 0.3 * np.sin(xx * 2 + yy) * np.cos(yy * 1.5)
    return np.stack([base, np.roll(base, 5, 1), base[::-1]], -1).astype(np.float32)


def test_every_operator_has_a_fix():
    assert set(FIXES) == set(OPS)


def test_noise_estimate():
    img = smooth_image()
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 0.05, img.shape), 0, 1)
    assert noise_sigma(noisy) == pytest.approx(0.05, rel=0.3)
    assert noise_sigma(img) < 0.01


@pytest.mark.parametrize("name", ["noise", "haze", "low_exposure", "low_contrast", "stripes",
                                  "rain", "snow"])
def test_fix_reduces_the_error(name):
    img = smooth_image()
    params = OPS[name].sample(np.random.default_rng(1), "moderate")
    depth = FallbackDepth()(img) if OPS[name].uses_depth else None
    bad = apply_op(name, img, params, np.random.default_rng(2), depth)
    fixed = restore(bad, [name])
    assert fixed.shape == img.shape
    assert np.abs(fixed - img).mean() < np.abs(bad - img).mean(), name


def test_two_stage_fuses_restored_inputs():
    a, b = texture(40, 56, 0, 1), texture(40, 56, 3, 2)
    ops = [{"name": "noise", "target": "a"}, {"name": "low_exposure", "target": "b"}]
    out = two_stage(a, b, ops)
    assert out.shape == (40, 56, 3) and np.isfinite(out).all()
