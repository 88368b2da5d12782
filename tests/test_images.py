"""studio.images: the one float → uint8 conversion and the one mosaic every view and file uses."""
from __future__ import annotations

import numpy as np
import pytest
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


# ------------------------------------------------------------------- the one PNG writer, scaling


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, payload) of every chunk, read with struct (independently of Pillow)."""
    import struct

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out


def test_every_png_carries_software_description_and_creation_time(tmp_path):
    import email.utils
    import zlib

    from studio.images import read_provenance, save_png

    prov = {"model": "rbm", "source": "dreams", "seed": 1234, "steps": 500, "temperature": 0.85,
            "checkpoint_sha256": "9f" * 32, "title": "tëst"}
    path = save_png(tmp_path / "x.png", np.zeros((3, 4, 3), np.uint8), prov)
    chunks = _png_chunks(path.read_bytes())
    texts = {}
    for kind, payload in chunks:
        if kind == b"tEXt":
            key, value = payload.split(b"\0", 1)
            texts[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt":
            key, rest = payload.split(b"\0", 1)
            compressed, rest = rest[0], rest[2:]
            _lang, _translated, value = rest.split(b"\0", 2)
            texts[key.decode("latin-1")] = (zlib.decompress(value) if compressed else value).decode("utf-8")
    assert texts["Software"].startswith("Harmonium Studio")
    assert texts["Description"] == ("Harmonium Studio: RBM dreams, 500 steps at temperature 0.85, seed 1234, "
                                    "checkpoint 9f9f9f9f9f9f…")
    created = email.utils.parsedate_to_datetime(texts["Creation Time"])  # RFC 1123, as the PNG spec asks
    assert created.tzinfo is not None
    assert texts["harmonium:seed"] == "1234" and read_provenance(path) == prov  # beside the studio's own chunks
    # the standard chunks come before the pixels, so viewers read them without decoding the image
    kinds = [k for k, _ in chunks]
    assert kinds.index(b"IDAT") > max(i for i, k in enumerate(kinds) if k in (b"tEXt", b"iTXt"))
    assert _png_chunks(save_png(tmp_path / "bare.png", np.zeros((2, 2), np.uint8)).read_bytes())  # no provenance: fine


def test_the_cli_and_the_exports_write_pngs_through_studio_images():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "studio"
    for path in root.rglob("*.py"):
        if path.name == "images.py" or "project" in path.parts:  # projects store pixels, not exports
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "format" and getattr(node.value, "value", None) == "PNG":
                raise AssertionError(f"{path.relative_to(root)} writes a PNG itself: use studio.images.save_png")
    source = (root / "cli.py").read_text()
    assert "from studio.images import" in source and "save_png" in source


def test_upscale_nearest_and_smooth():
    from studio.images import upscale

    a = np.array([[0, 255], [255, 0]], np.uint8)
    np.testing.assert_array_equal(upscale(a, 2), [[0, 0, 255, 255], [0, 0, 255, 255],
                                                   [255, 255, 0, 0], [255, 255, 0, 0]])
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[1:3, 1:3] = [200, 10, 10, 255]  # a red square on transparent black
    big = upscale(rgba, 4, smooth=True)
    assert big.shape == (16, 16, 4) and big.dtype == np.uint8
    seen = big[big[..., 3] > 16]
    assert (seen[:, 0] > seen[:, 1]).all()  # no dark fringe bled from the transparent pixels' colour
    assert upscale(rgba, 1) is rgba
    with pytest.raises(ValueError, match="at most 16384 pixels"):
        upscale(np.zeros((4000, 10), np.uint8), 8)
