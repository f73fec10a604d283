from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmaif.data.images import read_image, read_pair, write_image
from mmaif.errors import InputError

from .conftest import save, texture


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif"])
@pytest.mark.parametrize("channels", [0, 3])
def test_lossless_round_trip_8bit(tmp_path, ext, channels):
    img = np.round(texture(23, 37, channels) * 255) / 255
    pic = read_image(save(tmp_path / f"x{ext}", img))
    assert pic.bits == 8 and pic.data.dtype == np.float32
    assert pic.data.shape == img.shape
    np.testing.assert_allclose(pic.data, img, atol=1e-6)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [0, 3])
def test_round_trip_16bit_keeps_precision(tmp_path, ext, channels):
    img = texture(19, 31, channels)
    pic = read_image(save(tmp_path / f"x{ext}", img, bits=16))
    assert pic.bits == 16 and pic.data.shape == img.shape
    assert np.abs(pic.data - img).max() < 1.0 / 65535 + 1e-7  # 8-bit would be off by ~2e-3


def test_jpeg_is_close(tmp_path):
    yy, xx = np.mgrid[:40, :48] / 48
    img = np.stack([xx, yy, 0.5 + 0.3 * np.sin(6 * xx)], -1).astype(np.float32)
    pic = read_image(save(tmp_path / "x.jpg", img))
    assert pic.data.shape == img.shape and np.abs(pic.data - img).mean() < 0.01


@pytest.mark.parametrize("mode,expect_ndim", [("L", 2), ("LA", 2), ("RGB", 3), ("RGBA", 3),
                                              ("1", 2)])
def test_pillow_modes(tmp_path, mode, expect_ndim):
    arr = (texture(10, 12, 0 if mode in ("L", "1") else len(mode)) * 255).astype(np.uint8)
    im = Image.fromarray(arr).convert(mode) if mode != "LA" else Image.fromarray(
        np.dstack([arr[..., 0], arr[..., 1]]), "LA")
    im.save(tmp_path / "x.png")
    pic = read_image(tmp_path / "x.png")
    assert pic.data.ndim == expect_ndim and pic.size == (12, 10)
    if mode in ("RGBA", "RGB"):
        np.testing.assert_allclose(pic.data, arr[..., :3] / 255, atol=1e-6)


def test_palette_gray_and_colour(tmp_path):
    gray = Image.fromarray((texture(8, 9) * 255).astype(np.uint8)).convert("P")
    gray.save(tmp_path / "g.png")
    colour = Image.fromarray((texture(8, 9, 3) * 255).astype(np.uint8)).quantize(16)
    colour.save(tmp_path / "c.png")
    assert read_image(tmp_path / "g.png").data.ndim == 2
    assert read_image(tmp_path / "c.png").data.shape == (8, 9, 3)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :5] = 255  # white strip on the left
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    pic = read_image(tmp_path / "r.jpg")
    assert pic.size == (10, 20)  # width and height swapped
    assert pic.data[:5].mean() > 0.9 and pic.data[-5:].mean() < 0.1  # strip now on top


def test_write_is_atomic_and_leaves_no_temp(tmp_path):
    write_image(tmp_path / "a.png", texture(5, 5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_pair_size_mismatch_names_both_sizes(tmp_path):
    a, b = save(tmp_path / "a.png", texture(10, 12)), save(tmp_path / "b.png", texture(11, 12))
    with pytest.raises(InputError, match=r"12x10.*12x11"):
        read_pair(a, b)
    pa, pb = read_pair(a, b, resize=True)
    assert pa.size == pb.size == (12, 10)


def test_written_files_get_normal_permissions(tmp_path):
    import os
    import stat

    from mmaif.data.images import write_image

    old = os.umask(0o022)
    try:
        write_image(tmp_path / "f.png", np.zeros((4, 4), np.float32))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.png").stat().st_mode) == 0o644  # not mkstemp's 0600
