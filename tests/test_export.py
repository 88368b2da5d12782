"""Exports: PNG provenance, per-layer PNGs, OpenRaster, animations, atomic writes."""

from __future__ import annotations

import os
import struct
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import studio.canvas.export as export
import studio.images as images
from studio.canvas.blend import BLEND_MODE_FOR_ORA_OP, composite
from studio.canvas import Canvas, Layer
from studio.canvas.export import (
    export_animation,
    export_layers,
    read_provenance,
    save_animation,
    save_ora,
    save_png,
)
from studio.images import to_uint8

PROVENANCE = {
    "model": "rbm",
    "checkpoint_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "seed": 1234,
    "steps": 1000,
    "temperature": 0.85,
    "blend": {"mode": "multiply", "opacity": 0.5},
    "note": "dreamt at 3 a.m. — ünïcödé",
}


def read_png(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def make_canvas(background=(0.9, 0.85, 0.8)) -> Canvas:
    rng = np.random.default_rng(11)
    canvas = Canvas(40, 30, background=background)
    canvas.add_layer(Layer(name="texture", source=(rng.random((6, 6)) * 255).astype(np.uint8), tiling="mirror",
                           scale=2, resample="nearest", provenance={"model": "rbm", "seed": 5, "steps": 200}))
    canvas.add_layer(Layer(name="vae frame", source=rng.random((12, 16, 3)).astype(np.float32), x=5, y=4,
                           blend_mode="multiply", opacity=0.6,
                           provenance={"model": "vae", "checkpoint_sha256": "ab" * 32, "temperature": 1.0}))
    canvas.add_layer(Layer(name="cut/out", source=(rng.random((10, 10, 4)) * 255).astype(np.uint8), x=-3, y=22,
                           blend_mode="color-dodge", opacity=0.8))
    canvas.add_layer(Layer(name="hidden", source=np.full((5, 5), 200, np.uint8), x=30, y=2, visible=False,
                           blend_mode="difference"))
    return canvas


# ---------------------------------------------------------------------------
# PNG provenance
# ---------------------------------------------------------------------------


def test_png_provenance_round_trips(tmp_path):
    pixels = (np.random.default_rng(0).random((7, 9, 4)) * 255).astype(np.uint8)
    path = save_png(tmp_path / "x.png", pixels, PROVENANCE)
    assert read_provenance(path) == PROVENANCE
    np.testing.assert_array_equal(read_png(path), pixels)
    with Image.open(path) as im:
        im.load()
        text = im.text
    assert text["harmonium:model"] == "rbm"
    assert text["harmonium:checkpoint_sha256"] == PROVENANCE["checkpoint_sha256"]
    assert text["harmonium:seed"] == "1234"
    assert text["harmonium:steps"] == "1000"
    assert text["harmonium:temperature"] == "0.85"
    assert text["harmonium:blend"] == '{"mode": "multiply", "opacity": 0.5}'


def test_provenance_falls_back_to_per_key_chunks(tmp_path):
    path = save_png(tmp_path / "x.png", np.zeros((2, 2, 3), np.uint8), {"seed": 7, "model": "vae"})
    with Image.open(path) as im:  # strip the JSON chunk, keep the per-key ones
        im.load()
        info = export.PngInfo()
        for k, v in im.text.items():
            if k != "harmonium":
                info.add_text(k, v)
        im.save(tmp_path / "y.png", pnginfo=info)
    assert read_provenance(tmp_path / "y.png") == {"seed": 7, "model": "vae"}


def test_float_and_gray_pixels_are_quantised(tmp_path):
    path = save_png(tmp_path / "g.png", np.array([[0.0, 0.5, 1.0]], np.float32), {})
    with Image.open(path) as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), [[0, 128, 255]])
    assert read_provenance(path) == {}


# ---------------------------------------------------------------------------
# Per-layer export
# ---------------------------------------------------------------------------


def test_export_layers_writes_each_layer_and_the_composite(tmp_path):
    canvas = make_canvas()
    paths = export_layers(canvas, tmp_path / "out")
    assert [p.name for p in paths] == [
        "000-texture.png", "001-vae-frame.png", "002-cut-out.png", "003-hidden.png", "composite.png"
    ]
    for path, layer in zip(paths, canvas.layers):
        np.testing.assert_array_equal(read_png(path), to_uint8(canvas.render_layer(layer)))
        prov = read_provenance(path)
        assert prov["blend"] == layer.blend_settings()
        assert prov["layer"]["id"] == layer.id
        for key, value in layer.provenance.items():
            assert prov[key] == value
    np.testing.assert_array_equal(read_png(paths[-1]), canvas.render_uint8())
    comp = read_provenance(paths[-1])
    assert [entry["blend"]["mode"] for entry in comp["layers"]] == [l.blend_mode for l in canvas.layers]
    assert comp["layers"][1]["checkpoint_sha256"] == "ab" * 32


# ---------------------------------------------------------------------------
# OpenRaster
# ---------------------------------------------------------------------------


def test_ora_structure(tmp_path):
    canvas = make_canvas()
    path = save_ora(canvas, tmp_path / "art.ora")
    raw = path.read_bytes()
    # First local file header: "mimetype", stored (method 0), no extra field, content right after.
    assert raw[:4] == b"PK\x03\x04"
    method, = struct.unpack("<H", raw[8:10])
    name_len, extra_len = struct.unpack("<HH", raw[26:30])
    assert (method, name_len, extra_len) == (0, 8, 0)
    assert raw[30:38] == b"mimetype" and raw[38:54] == b"image/openraster"

    with zipfile.ZipFile(path) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[0] == "mimetype" and zf.getinfo("mimetype").compress_type == zipfile.ZIP_STORED
        assert {"stack.xml", "mergedimage.png", "Thumbnails/thumbnail.png"} <= set(names)
        root = ET.fromstring(zf.read("stack.xml"))
        assert root.tag == "image" and root.get("version") == "0.0.3"
        assert (root.get("w"), root.get("h")) == ("40", "30")
        stack = root.find("stack")
        layers = stack.findall("layer")
        # top first; the background colour becomes a bottom layer
        assert [el.get("name") for el in layers] == ["hidden", "cut/out", "vae frame", "texture", "Background"]
        assert [el.get("composite-op") for el in layers] == [
            "svg:difference", "svg:color-dodge", "svg:multiply", "svg:src-over", "svg:src-over"
        ]
        assert [el.get("visibility") for el in layers] == ["hidden", "visible", "visible", "visible", "visible"]
        assert [float(el.get("opacity")) for el in layers] == [1.0, 0.8, 0.6, 1.0, 1.0]
        for el in layers:
            assert el.get("src").startswith("data/") and el.get("src") in names
        # a layer's PNG is its pixels cropped to its footprint, placed at x, y
        cut = layers[1]
        assert (cut.get("x"), cut.get("y")) == ("0", "22")
        cut_png = np.asarray(Image.open(zf.open(cut.get("src"))))
        layer = canvas.layers[2]
        np.testing.assert_array_equal(cut_png, to_uint8(canvas.render_layer(layer)[22:30, 0:7]))

        merged = np.asarray(Image.open(zf.open("mergedimage.png")))
        np.testing.assert_array_equal(merged, canvas.render_uint8())
        thumb = Image.open(zf.open("Thumbnails/thumbnail.png"))
        assert max(thumb.size) <= 256


def test_ora_layers_recomposite_to_the_merged_image(tmp_path):
    """Rebuild the image from stack.xml the way an OpenRaster reader would."""
    canvas = make_canvas()
    path = save_ora(canvas, tmp_path / "art.ora")
    with zipfile.ZipFile(path) as zf:
        root = ET.fromstring(zf.read("stack.xml"))
        w, h = int(root.get("w")), int(root.get("h"))
        image = np.zeros((h, w, 4), np.float32)
        for el in reversed(root.find("stack").findall("layer")):  # bottom to top
            if el.get("visibility") != "visible":
                continue
            png = np.asarray(Image.open(zf.open(el.get("src"))).convert("RGBA"), np.float32) / 255
            x, y = int(el.get("x")), int(el.get("y"))
            src = np.zeros_like(image)
            src[y : y + png.shape[0], x : x + png.shape[1]] = png
            mode = BLEND_MODE_FOR_ORA_OP[el.get("composite-op")]
            image = composite(image, src, mode, float(el.get("opacity")))
        merged = np.asarray(Image.open(zf.open("mergedimage.png")), np.float32) / 255
    np.testing.assert_allclose(image, merged, atol=3 / 255)  # layers are stored as 8-bit


def test_ora_thumbnail_is_bounded(tmp_path):
    canvas = Canvas(600, 300, background="#336699")
    path = save_ora(canvas, tmp_path / "big.ora")
    with zipfile.ZipFile(path) as zf:
        thumb = Image.open(zf.open("Thumbnails/thumbnail.png"))
        assert thumb.size == (256, 128)
        assert np.asarray(thumb.convert("RGB"))[64, 128].tolist() == [0x33, 0x66, 0x99]


def test_transparent_canvas_ora_has_no_background_layer(tmp_path):
    canvas = make_canvas(background=None)
    with zipfile.ZipFile(save_ora(canvas, tmp_path / "t.ora")) as zf:
        names = [el.get("name") for el in ET.fromstring(zf.read("stack.xml")).iter("layer")]
        assert "Background" not in names and len(names) == 4
        np.testing.assert_array_equal(np.asarray(Image.open(zf.open("mergedimage.png"))), canvas.render_uint8())


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_failed_png_write_keeps_the_original(tmp_path, monkeypatch):
    path = save_png(tmp_path / "art.png", np.zeros((4, 4, 3), np.uint8), {"seed": 1})
    original = path.read_bytes()

    def broken(image, f, provenance):
        f.write(b"\x89PNG half a file")
        raise OSError("disk full")

    monkeypatch.setattr(images, "_encode_png", broken)  # the studio's one PNG writer
    with pytest.raises(OSError, match="disk full"):
        save_png(path, np.ones((4, 4, 3), np.uint8), {"seed": 2})
    assert path.read_bytes() == original
    assert leftovers(tmp_path) == []


def test_failed_ora_write_keeps_the_original(tmp_path, monkeypatch):
    canvas = make_canvas()
    path = save_ora(canvas, tmp_path / "art.ora")
    original = path.read_bytes()

    def broken(rgba):
        raise RuntimeError("crash while zipping")

    monkeypatch.setattr(export, "_thumbnail", broken)  # fails after mimetype, stack.xml and layers
    canvas.set_layer(canvas.layers[0].id, opacity=0.1)
    with pytest.raises(RuntimeError):
        save_ora(canvas, path)
    assert path.read_bytes() == original
    assert leftovers(tmp_path) == []


def test_failed_rename_leaves_nothing_new(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise PermissionError("locked")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(PermissionError):
        save_png(tmp_path / "new.png", np.zeros((2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# Animation
# ---------------------------------------------------------------------------


def solid_frames() -> list[np.ndarray]:
    colours = [(255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 255, 128)]
    return [np.broadcast_to(np.array(c, np.uint8), (6, 8, 4)).copy() for c in colours]


def test_apng_round_trips_frames(tmp_path):
    frames = solid_frames()
    path = save_animation(frames, tmp_path / "a.png", fps=10, format="apng", provenance={"seed": 3})
    with Image.open(path) as im:
        assert im.n_frames == 3 and im.is_animated
        for i, frame in enumerate(frames):
            im.seek(i)
            assert im.info["duration"] == 100
            np.testing.assert_array_equal(np.asarray(im.convert("RGBA")), frame)
    assert read_provenance(path)["seed"] == 3


def test_gif_frames(tmp_path):
    frames = solid_frames()[:2]
    path = save_animation(frames, tmp_path / "a.gif", fps=5)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 2
        assert im.info["duration"] == 200 and im.info["loop"] == 0
        for i, frame in enumerate(frames):
            im.seek(i)
            np.testing.assert_array_equal(np.asarray(im.convert("RGBA")), frame)


def test_export_animation_of_an_animated_layer(tmp_path):
    canvas = Canvas(8, 6, background=(0, 0, 0))
    frames = [np.full((6, 8), v, np.uint8) for v in (0, 100, 200, 255)]
    layer = canvas.add_layer(Layer(name="chain", frames=frames, blend_mode="screen", provenance={"model": "rbm"}))
    path = export_animation(canvas, layer.id, tmp_path / "chain.png", fps=8, format="apng")
    with Image.open(path) as im:
        assert im.n_frames == 4
        for i, v in enumerate((0, 100, 200, 255)):
            im.seek(i)
            np.testing.assert_array_equal(np.asarray(im.convert("RGB"))[..., 0], v)
    prov = read_provenance(path)
    assert prov["model"] == "rbm" and prov["blend"]["mode"] == "screen" and prov["frames"] == 4


def test_animation_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        save_animation([], tmp_path / "a.gif")
    with pytest.raises(ValueError):
        save_animation([np.zeros((2, 2)), np.zeros((3, 3))], tmp_path / "a.gif")
    with pytest.raises(ValueError):
        save_animation([np.zeros((2, 2))], tmp_path / "a.gif", format="webp")


# ---------------------------------------------------------------------------
# Planted links
# ---------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="symbolic links")
def test_exports_replace_planted_links_and_never_write_through_them(tmp_path):
    """A link planted at an output name (to a file outside the folder, or to nowhere) is
    replaced by the new file: the file it pointed at keeps its bytes, nothing is created there."""
    canvas = make_canvas()
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    names = ["000-texture.png", "001-vae-frame.png", "002-cut-out.png", "003-hidden.png", "composite.png",
             "art.ora", "anim.gif", "anim.png", "single.png"]
    for i, name in enumerate(names):
        if i % 2:
            (out / name).symlink_to(outside / f"missing-{name}")  # dangling: must not come to exist
        else:
            (outside / name).write_bytes(b"precious " + name.encode())
            (out / name).symlink_to(outside / name)
    export_layers(canvas, out)
    save_ora(canvas, out / "art.ora")
    save_animation(solid_frames(), out / "anim.gif")
    save_animation(solid_frames(), out / "anim.png", format="apng")
    save_png(out / "single.png", np.zeros((4, 4, 3), np.uint8), {"seed": 1})
    assert sorted(p.name for p in outside.iterdir()) == sorted(n for i, n in enumerate(names) if i % 2 == 0)
    for name in names:
        if not name.startswith("missing"):
            assert not (out / name).is_symlink(), name
        if (outside / name).exists():
            assert (outside / name).read_bytes() == b"precious " + name.encode()
    np.testing.assert_array_equal(read_png(out / "composite.png"), canvas.render_uint8())
    assert zipfile.ZipFile(out / "art.ora").read("mimetype") == export.ORA_MIMETYPE
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # and no temporaries


@pytest.mark.parametrize("fps, fmt", [(12, "gif"), (7, "gif"), (12, "apng"), (30, "gif")])
def test_an_animation_plays_at_the_frame_rate_asked(tmp_path, fps, fmt):
    """Issue 16: a chain GIF asked at 12 fps played at 12.5 (80 ms a frame, GIF delays being
    hundredths of a second). The frames' delays now add up to n / fps seconds."""
    from PIL import Image

    n = 24
    frames = [np.full((8, 8), i * 10, np.uint8) for i in range(n)]
    path = save_animation(frames, tmp_path / f"a.{'gif' if fmt == 'gif' else 'png'}", fps=fps, format=fmt)
    with Image.open(path) as im:
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    assert len(durations) == n
    assert abs(sum(durations) - 1000.0 * n / fps) <= 10  # within one GIF tick over the whole loop
    assert max(durations) - min(durations) <= 10
