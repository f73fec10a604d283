from __future__ import annotations

import math

import numpy as np
import pytest

from mmaif.evaluation import metrics as M

from .conftest import texture

KEYS = ["EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR", "CE", "EI", "RMSE",
        "Qcb", "Qcv"]


def test_metric_names_are_the_documented_keys():
    assert list(M.METRIC_NAMES) == KEYS == list(M.METRICS)
    for fn in M.METRICS.values():
        assert fn.__doc__ and len(fn.__doc__) > 30  # each states its convention


def test_entropy_in_bits():
    ramp = np.tile(np.arange(256) / 255, (4, 1))
    assert M.compute_metrics(ramp, ramp, ramp, names=("EN",))["EN"] == pytest.approx(8.0)
    flat = np.full((8, 8), 0.3)
    assert M.compute_metrics(flat, flat, flat, names=("EN",))["EN"] == 0.0


def test_mutual_information_is_in_nats_and_summed():
    x = np.round(texture(64, 64) * 255) / 255
    x[0, 0], x[0, 1] = 0.0, 1.0  # full range: the min-max stretch is the identity
    en_bits = M.compute_metrics(x, x, x, names=("EN",))["EN"]
    mi = M.compute_metrics(x, x, x, names=("MI",))["MI"]
    # MI(x, x) = H(x), counted once per source: MI = 2 H ln 2 (nats).
    assert mi == pytest.approx(2 * en_bits * math.log(2), rel=1e-9)


def test_ssim_and_vif_are_sums_over_two_sources():
    x = texture(48, 48, 3)
    vals = M.compute_metrics(x, x, x)
    assert vals["SSIM"] == pytest.approx(2.0)
    assert vals["VIF"] == pytest.approx(2.0)
    assert vals["Qabf"] > 0.95 and vals["Qcb"] == pytest.approx(1.0)
    assert vals["CE"] == 0.0 and vals["Qcv"] == 0.0


def test_better_fusion_scores_better():
    sharp = texture(64, 64, 0, 5)
    rng = np.random.default_rng(0)
    good = sharp
    bad = np.clip(sharp + rng.normal(0, 0.1, sharp.shape), 0, 1)
    g = M.compute_metrics(sharp, sharp, good)
    b = M.compute_metrics(sharp, sharp, bad)
    for k in ("SSIM", "VIF", "Qabf", "PSNR", "Qcb"):
        assert g[k] > b[k], k
    for k in ("RMSE", "CE", "Qcv"):
        assert g[k] < b[k], k


def test_scd_detects_complementary_content():
    a, b = texture(32, 32, 0, 1), texture(32, 32, 0, 2)
    s_sum = M.metric_scd(*(M.to_255(x) for x in (a, b, (a + b) / 2)))
    s_one = M.metric_scd(*(M.to_255(x) for x in (a, b, 0.9 * a + 0.1 * b)))
    assert s_sum > s_one


def test_gt_metrics():
    x = texture(32, 40, 3)
    vals = M.compute_metrics(x, x, x, gt=x)
    assert math.isinf(vals["PSNR_gt"]) and vals["SSIM_gt"] == pytest.approx(1.0)
    noisy = np.clip(x + 0.01, 0, 1)
    assert M.psnr_gt(noisy, x) == pytest.approx(40.0, abs=0.3)
    assert M.ssim_gt(noisy, x.mean(-1)) < 1  # gray GT against RGB fused compares luma


def test_per_channel_convention():
    """RGB fused: channel k against channel k of colour sources, the whole of gray ones."""
    ir, vi, f = texture(24, 24, 0, 1), texture(24, 24, 3, 2), texture(24, 24, 3, 3)
    got = M.metric_ssim(M.to_255(ir), M.to_255(vi), M.to_255(f))
    by_hand = np.mean([M._ssim_mean(M.to_255(ir), M.to_255(f[..., k]))
                       + M._ssim_mean(M.to_255(vi[..., k]), M.to_255(f[..., k]))
                       for k in range(3)])
    assert got == pytest.approx(by_hand)


def test_to_255_snaps_8bit_values():
    x = np.arange(256, dtype=np.float32) / 255
    np.testing.assert_array_equal(M.to_255(x), np.arange(256))
    y = np.array([0.5 / 65535 * 3], np.float32)  # 16-bit data keeps its fractions
    assert M.to_255(y)[0] != round(M.to_255(y)[0])


def test_tiny_images_do_not_crash():
    x = np.full((1, 1, 3), 0.5, np.float32)
    vals = M.compute_metrics(x, x, x)
    assert set(vals) == set(KEYS)
    assert vals["EN"] == 0.0 and math.isnan(vals["SSIM"])


def test_sizes_must_match():
    with pytest.raises(ValueError, match="differ in size"):
        M.compute_metrics(texture(4, 5), texture(4, 5), texture(5, 5))


def test_blockiness():
    smooth = texture(64, 64)
    blocky = np.kron(texture(8, 8, 0, 3), np.ones((8, 8))) + 0.01 * smooth  # 8x8 blocks
    assert 0.8 < M.blockiness(smooth) < 1.2
    assert M.blockiness(blocky) > 10
