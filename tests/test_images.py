"""studio.images: the one float → uint8 conversion and the one mosaic every view and file uses."""
from __future__ import annotations

import numpy as np
import torch

from studio.images import GAP_FILL, GridLayout, images_to_uint8, mosaic, tile, to_uint8


def test_to_uint8_rounds_half_up_clamps_and_maps_nan_to_zero():
    got = to_uint8(np.array([0.0, 0.5, 1.0, 1.2, -0.1, np.nan, np.inf, -np.inf, 0.25, 254.5 / 255], np.float32))
    np.testing.assert_array_equal(got, [0, 128, 255, 255, 0, 0, 255, 0, 64, 255])
    u = np.arange(256, dtype=np.uint8)
    assert to_uint8(u) is u  # uint8 passes through
    np.testing.assert_array_equal(to_uint8(np.array([0.5, 1.0])), [128, 255])  # float64 too
    np.testing.assert_array_equal(to_uint8(torch.tensor([[0.2, 0.8]])), [[51, 204]])  # and tensors


def test_images_to_uint8_takes_the_models_layout_to_channels_last_read_only():
    x = torch.rand(3, 2, 4, 5)
    out = images_to_uint8(x)
    assert out.shape == (3, 4, 5, 2) and out.dtype == np.uint8 and not out.flags.writeable
    np.testing.assert_array_equal(out, to_uint8(x.numpy()).transpose(0, 2, 3, 1))


def test_tile_lays_images_out_about_square():
    m = tile(np.ones((5, 1, 4, 4), np.float32))
    assert m.shape == (2 * 5 + 1, 3 * 5 + 1)
    assert m.dtype == np.float32 and m[0, 0] == np.float32(GAP_FILL / 255) and m[1, 1] == 1.0
    assert tile(np.zeros((4, 3, 2, 2))).shape == (7, 7, 3)


def test_mosaic_and_layout_agree():
    pix = np.arange(5 * 3 * 2 * 1, dtype=np.uint8).reshape(5, 3, 2, 1)
    lay = GridLayout(5, 3, 2, pad=1)
    m = mosaic(pix, pad=1, fill=7)
    assert m.shape[:2] == lay.shape == (2 * 4 + 1, 3 * 3 + 1)
    for i in range(5):
        y, x = lay.origin(i)
        assert np.array_equal(m[y : y + 3, x : x + 2], pix[i])
        assert lay.chain_at(y + 2.5, x + 0.5) == (i, 2.5, 0.5)
    assert lay.chain_at(0.5, 0.5) is None  # a gap
    assert lay.chain_at(5.5, 7.5) is None  # past the last chain
    assert m[0, 0, 0] == 7
    assert m[-2, -2, 0] == 7  # the sixth place, past the last tile, is gap too


def test_mosaic_fills_per_channel_and_takes_columns():
    rgba = np.full((3, 2, 2, 4), 9, np.uint8)
    m = mosaic(rgba, pad=2, fill=[32, 32, 32, 255], cols=3)
    assert m.shape == (2 + 2 + 2, 3 * 4 + 2, 4)
    np.testing.assert_array_equal(m[0, 0], [32, 32, 32, 255])  # an opaque gap
    np.testing.assert_array_equal(m[2:4, 2:4], rgba[0])
    np.testing.assert_array_equal(m[2:4, 10:12], rgba[2])
