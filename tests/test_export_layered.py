"""Layered exports read back by independent readers: the .ora with zipfile + ElementTree, the
.psd with psd-tools; blend modes, opacity, visibility, names, order, offsets and the composite
pixels; what painting programs are told; layer file names (issue 16, items 1, 2 and 7)."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
from PIL import Image

from studio.canvas import Canvas, Layer
from studio.canvas.blend import BLEND_MODES, composite
from studio.canvas.export import (
    BLEND_MODE_FOR_ORA,
    ExportError,
    export_layers,
    interop_notes,
    read_provenance,
    save_ora,
    save_psd,
)

psd_tools = pytest.importorskip("psd_tools")


def twelve_mode_canvas(background=(0.95, 0.9, 0.85, 1.0)) -> Canvas:
    """A base photo-like layer and one layer per blend mode, each with its own opacity and
    offset (some partly off the canvas), soft alpha, one hidden."""
    rng = np.random.default_rng(16)
    canvas = Canvas(48, 36, background=background)
    base = (np.linspace(0, 255, 48 * 36 * 3).reshape(36, 48, 3)).astype(np.uint8)
    canvas.add_layer(Layer(name="base", source=base))
    for i, mode in enumerate(BLEND_MODES):
        px = (rng.random((9, 11, 4)) * 255).astype(np.uint8)
        px[..., 3] = np.where(rng.random((9, 11)) < 0.7, 255, 96)
        canvas.add_layer(Layer(name=f"{mode} ü·{i}", source=px, x=(i % 4) * 12 - 2, y=(i // 4) * 12 - 1,
                               blend_mode=mode, opacity=round(1.0 - 0.07 * i, 2), visible=i != 5))
    return canvas


def test_ora_read_back_with_zip_and_xml(tmp_path):
    canvas = twelve_mode_canvas()
    with zipfile.ZipFile(save_ora(canvas, tmp_path / "c.ora")) as zf:
        stack = ET.fromstring(zf.read("stack.xml")).find("stack").findall("layer")[::-1]  # bottom first
        assert [el.get("name") for el in stack] == ["Background", *(layer.name for layer in canvas.layers)]
        ops = {el.get("name"): el.get("composite-op") for el in stack}
        assert ops["exclusion ü·11"] == "krita:exclusion"  # Krita reads its own op; svg:exclusion it opens as Normal
        assert ops["multiply ü·1"] == "svg:multiply" and ops["normal ü·0"] == "svg:src-over"
        # rebuild the image from the stack as an OpenRaster reader would
        w, h = canvas.width, canvas.height
        image = np.zeros((h, w, 4), np.float32)
        for el, layer in zip(stack, [None, *canvas.layers]):
            if layer is not None:
                assert BLEND_MODE_FOR_ORA[el.get("composite-op")] == layer.blend_mode
                assert float(el.get("opacity")) == pytest.approx(layer.opacity)
                assert (el.get("visibility") == "visible") == layer.visible
            if el.get("visibility") != "visible":
                continue
            png = np.asarray(Image.open(zf.open(el.get("src"))).convert("RGBA"), np.float32) / 255
            x, y = int(el.get("x")), int(el.get("y"))
            src = np.zeros_like(image)
            src[y:y + png.shape[0], x:x + png.shape[1]] = png
            image = composite(image, src, BLEND_MODE_FOR_ORA[el.get("composite-op")], float(el.get("opacity")))
        merged = np.asarray(Image.open(zf.open("mergedimage.png")))
    np.testing.assert_array_equal(merged, canvas.render_uint8())  # mergedimage.png is exact
    assert np.abs(image * 255 - merged).max() <= 3  # layers stored in 8 bits


def read_psd(path):
    return psd_tools.PSDImage.open(path)


@pytest.mark.parametrize("background", [(0.95, 0.9, 0.85, 1.0), None])
def test_psd_read_back_with_psd_tools(tmp_path, background):
    canvas = twelve_mode_canvas(background)
    psd = read_psd(save_psd(canvas, tmp_path / "c.psd"))
    assert (psd.width, psd.height) == (48, 36)
    layers = list(psd)  # bottom first
    studio = list(canvas.layers)
    if background is not None:
        assert layers[0].name == "Background" and layers[0].blend_mode.name == "NORMAL"
        layers = layers[1:]
    assert [l.name for l in layers] == [l.name for l in studio]  # Unicode names kept
    for got, layer in zip(layers, studio):
        assert got.blend_mode.name == layer.blend_mode.replace("-", "_").upper()
        assert got.opacity == round(layer.opacity * 255)
        assert got.visible == layer.visible
        bounds = canvas.layer_bounds(layer)
        assert (got.left, got.top) == (bounds[0], bounds[1])  # offsets, cropped to the canvas
        pixels = np.asarray(got.topil().convert("RGBA"))
        x0, y0, x1, y1 = bounds
        np.testing.assert_array_equal(pixels, np.asarray(Image.fromarray(
            (np.clip(canvas.render_layer(layer)[y0:y1, x0:x1], 0, 1) * 255 + 0.5).astype(np.uint8))))
    merged = np.asarray(psd.topil())
    reference = canvas.render_uint8()
    assert merged.shape == reference.shape
    opaque = reference[..., 3] == 255
    np.testing.assert_array_equal(merged[..., 3], reference[..., 3])
    np.testing.assert_array_equal(merged[opaque], reference[opaque])  # the composite preview is the studio's


def test_psd_rejects_what_it_cannot_hold_in_one_sentence(tmp_path, monkeypatch):
    import studio.canvas.export as export

    monkeypatch.setattr(export, "PSD_MAX_SIDE", 40)
    with pytest.raises(ExportError, match="at most 40 pixels") as info:
        save_psd(twelve_mode_canvas(), tmp_path / "big.psd")
    assert "\n" not in str(info.value) and not (tmp_path / "big.psd").exists()


def test_psd_save_is_atomic(tmp_path, monkeypatch):
    path = save_psd(twelve_mode_canvas(), tmp_path / "c.psd")
    before = path.read_bytes()

    def broken(self, *a, **k):
        raise RuntimeError("crash while writing")

    monkeypatch.setattr(psd_tools.PSDImage, "save", broken)
    with pytest.raises(RuntimeError):
        save_psd(twelve_mode_canvas(None), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.psd"]


def test_interop_notes_name_only_what_the_canvas_uses():
    canvas = Canvas(8, 8)
    canvas.add_layer(Layer(name="a", source=np.zeros((4, 4, 3), np.uint8)))
    assert interop_notes(canvas, "psd") == [] == interop_notes(canvas, "ora")
    canvas.add_layer(Layer(name="x", source=np.zeros((4, 4, 3), np.uint8), blend_mode="exclusion"))
    canvas.add_layer(Layer(name="d", source=np.zeros((4, 4, 3), np.uint8), blend_mode="color-dodge", visible=False))
    ora = interop_notes(canvas, "ora")
    assert any("krita:exclusion" in n and "MyPaint" in n for n in ora)
    assert interop_notes(canvas, "psd") == []  # the dodge layer is hidden
    canvas.set_layer(canvas.layers[-1].id, visible=True)
    assert any("Color Dodge" in n and "GIMP" in n for n in interop_notes(canvas, "psd"))


def test_layer_files_are_named_without_a_doubled_suffix(tmp_path):
    canvas = Canvas(6, 6)
    for name in ("Image-00002.png", "photo.JPG", "plain", "a/b"):
        canvas.add_layer(Layer(name=name, source=np.zeros((2, 2, 3), np.uint8)))
    paths = export_layers(canvas, tmp_path / "new" / "layers")  # a new folder is made
    assert [p.name for p in paths] == ["000-Image-00002.png", "001-photo.png", "002-plain.png", "003-a-b.png",
                                       "composite.png"]
    assert read_provenance(paths[0])["layer"]["name"] == "Image-00002.png"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="is a file, not a folder"):
        export_layers(canvas, tmp_path / "file")
