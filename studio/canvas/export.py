"""Exporting a :class:`~studio.canvas.Canvas`: PNGs with provenance, OpenRaster, animations.

Every file is written atomically (:func:`models.atomic.atomic_open`): to a
temporary file in the destination folder, flushed and fsynced, then
``os.replace``-d over the target.  A failure part-way leaves no partial file
behind and leaves an existing file at the destination untouched; a symbolic
link planted at the destination is replaced by the new file, never written
through; a temporary left by a killed process is swept at the next start.

Provenance is stored in PNG text chunks: one ``harmonium:<key>`` chunk per
top-level key (strings as they are, other values as JSON), e.g.
``harmonium:model``, ``harmonium:checkpoint_sha256``, ``harmonium:seed``,
``harmonium:steps``, ``harmonium:temperature``, ``harmonium:blend``, plus a
``harmonium`` chunk holding the whole dictionary as JSON, which is what
:func:`read_provenance` reads back.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from models.atomic import atomic_open
from studio.canvas.blend import BLEND_MODES, ORA_COMPOSITE_OPS
from studio.canvas import Canvas, Layer
from studio.images import (
    PROVENANCE_KEY,
    png_bytes as _png_bytes,
    png_info,
    provenance_json,
    read_provenance,
    save_png,
    to_pil,
    to_uint8,
    upscale,
)

__all__ = [
    "PROVENANCE_KEY",
    "ORA_MIMETYPE",
    "THUMBNAIL_MAX",
    "save_png",
    "read_provenance",
    "layer_provenance",
    "composite_provenance",
    "export_layers",
    "save_ora",
    "save_psd",
    "interop_notes",
    "ExportError",
    "ORA_OPS",
    "PSD_BLEND_MODES",
    "save_animation",
    "export_animation",
]

ORA_MIMETYPE = b"image/openraster"
ORA_VERSION = "0.0.3"
THUMBNAIL_MAX = 256


class ExportError(ValueError):
    """An export that cannot be written, in one sentence (the canvas is not changed)."""


# --------------------------------------------------------------------------
# PNG with provenance: the studio's one PNG writer lives in studio.images
# --------------------------------------------------------------------------

# ``studio.project.saving`` serialises its manifest with the same JSON rules.
from studio.images import _json_default  # noqa: E402,F401


# --------------------------------------------------------------------------
# Per-layer PNGs and the composite
# --------------------------------------------------------------------------


def layer_provenance(canvas: Canvas, layer: Layer) -> dict[str, Any]:
    """The layer's own provenance plus its identity, stack index, blend settings and the canvas."""
    return {
        **layer.provenance,
        "layer": {"id": layer.id, "name": layer.name, "index": canvas.index_of(layer.id)},
        "blend": layer.blend_settings(),
        "canvas": _canvas_info(canvas),
    }


def composite_provenance(canvas: Canvas) -> dict[str, Any]:
    """Provenance of the flattened image: every layer's provenance, bottom to top."""
    return {
        "kind": "composite",
        "canvas": _canvas_info(canvas),
        "layers": [
            {**layer.provenance, "layer": {"id": layer.id, "name": layer.name}, "blend": layer.blend_settings()}
            for layer in canvas.layers
        ],
    }


def _canvas_info(canvas: Canvas) -> dict[str, Any]:
    bg = None if canvas.background is None else list(canvas.background)
    return {"width": canvas.width, "height": canvas.height, "background": bg}


_IMAGE_SUFFIX = re.compile(r"\.(png|apng|jpe?g|gif|webp|bmp|tiff?|ora|psd)$", re.IGNORECASE)


def _slug(name: str) -> str:
    """A file-name-safe form of a layer name, without an image suffix the name carries (a
    layer imported from ``Image-00002.png`` is written ``NNN-Image-00002.png``, not ``….png.png``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", _IMAGE_SUFFIX.sub("", name.strip())).strip("-.")
    return slug[:60] or "layer"


def export_layers(canvas: Canvas, folder: str | os.PathLike[str]) -> list[Path]:
    """Write each layer as ``NNN-<name>.png`` (bottom = 000; canvas-sized, as the
    layer lands on the canvas before opacity and blending) and ``composite.png``.

    Every file carries provenance, including the layer's blend settings.
    Returns the paths, layers bottom to top, then the composite.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder.name} is a file, not a folder: give the layers' folder another name")
    folder.mkdir(parents=True, exist_ok=True)  # a new folder's name typed in the dialog is made
    paths = []
    for index, layer in enumerate(canvas.layers):
        path = folder / f"{index:03d}-{_slug(layer.name)}.png"
        paths.append(save_png(path, canvas.render_layer(layer), layer_provenance(canvas, layer)))
    paths.append(save_png(folder / "composite.png", canvas.render_uint8(), composite_provenance(canvas)))
    return paths


# --------------------------------------------------------------------------
# OpenRaster
# --------------------------------------------------------------------------

#: The ``composite-op`` written per blend mode: the OpenRaster baseline's ``svg:`` operation,
#: and where the baseline has none (exclusion) Krita's own ``krita:exclusion``: Krita 5.1
#: opens ``svg:exclusion`` as Normal (a 58–67/255 difference on that layer) but reads any
#: ``krita:<op>`` as its own operation.  Other readers that know neither open it as Normal;
#: :data:`INTEROP` says so to the person exporting.
ORA_OPS: Mapping[str, str] = {**ORA_COMPOSITE_OPS, "exclusion": "krita:exclusion"}

#: ``composite-op`` -> blend mode, for reading an OpenRaster stack back (both spellings of exclusion).
BLEND_MODE_FOR_ORA: Mapping[str, str] = {**{op: mode for mode, op in ORA_OPS.items()}, "svg:exclusion": "exclusion"}


def _ora_layers(canvas: Canvas) -> list[tuple[dict[str, str], bytes]]:
    """``(stack.xml attributes, PNG bytes)`` per layer, bottom to top; an opaque
    background colour becomes a bottom "Background" layer so that applications
    rebuild the same composite."""
    entries: list[tuple[dict[str, str], bytes]] = []
    if canvas.background is not None:
        fill = np.empty((canvas.height, canvas.width, 4), dtype=np.float32)
        fill[:] = canvas.background
        entries.append((_ora_attrs("Background", 0, 0, 1.0, True, "normal"), _png_bytes(fill)))
    for layer, pixels, x0, y0 in _layer_crops(canvas):
        attrs = _ora_attrs(layer.name, x0, y0, layer.opacity, layer.visible, layer.blend_mode)
        entries.append((attrs, _png_bytes(pixels, layer_provenance(canvas, layer))))
    return entries


def _layer_crops(canvas: Canvas) -> list[tuple[Layer, np.ndarray, int, int]]:
    """(layer, its pixels cropped to its footprint on the canvas before opacity, x, y), bottom
    to top; a layer entirely off the canvas is kept as one transparent pixel at (0, 0), so
    every exported file has the studio's layers, in order."""
    out = []
    for layer in canvas.layers:
        bounds = canvas.layer_bounds(layer)
        if bounds is None:
            out.append((layer, np.zeros((1, 1, 4), np.float32), 0, 0))
        else:
            x0, y0, x1, y1 = bounds
            out.append((layer, canvas.render_layer(layer)[y0:y1, x0:x1], x0, y0))
    return out


def _ora_attrs(name: str, x: int, y: int, opacity: float, visible: bool, mode: str) -> dict[str, str]:
    return {
        "name": name,
        "x": str(x),
        "y": str(y),
        "opacity": f"{opacity:.6g}",
        "visibility": "visible" if visible else "hidden",
        "composite-op": ORA_OPS[mode],
    }


def _stack_xml(canvas: Canvas, layers: Sequence[dict[str, str]]) -> bytes:
    """``stack.xml``: ``<image><stack>`` with layers listed top first, as OpenRaster orders them."""
    image = ET.Element("image", {"version": ORA_VERSION, "w": str(canvas.width), "h": str(canvas.height)})
    stack = ET.SubElement(image, "stack")
    for attrs in reversed(layers):
        ET.SubElement(stack, "layer", attrs)
    ET.indent(image)
    return ET.tostring(image, encoding="UTF-8", xml_declaration=True)


def _thumbnail(rgba: np.ndarray) -> bytes:
    image = Image.fromarray(rgba)
    image.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX), Image.Resampling.LANCZOS)
    return _png_bytes(np.asarray(image))


def _write_ora(f: BinaryIO, canvas: Canvas) -> None:
    merged = canvas.render_uint8()
    entries = [
        ({"name": attrs.pop("name"), "src": f"data/{i:03d}.png", **attrs}, png)
        for i, (attrs, png) in enumerate(_ora_layers(canvas))
    ]
    with zipfile.ZipFile(f, "w") as zf:
        # OpenRaster: "mimetype" first, stored (uncompressed), no extra field.
        info = zipfile.ZipInfo("mimetype", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        zf.writestr(info, ORA_MIMETYPE)
        zf.writestr("stack.xml", _stack_xml(canvas, [a for a, _ in entries]), compress_type=zipfile.ZIP_DEFLATED)
        for attrs, png in entries:
            zf.writestr(attrs["src"], png, compress_type=zipfile.ZIP_STORED)  # PNG is compressed already
        zf.writestr("Thumbnails/thumbnail.png", _thumbnail(merged), compress_type=zipfile.ZIP_STORED)
        merged_png = _png_bytes(merged, composite_provenance(canvas))
        zf.writestr("mergedimage.png", merged_png, compress_type=zipfile.ZIP_STORED)


def save_ora(canvas: Canvas, path: str | os.PathLike[str]) -> Path:
    """Write an OpenRaster file (Krita, GIMP, MyPaint open it).  Atomic.

    Contents: ``mimetype`` (first, stored), ``stack.xml`` (``<image w h
    version="0.0.3"><stack>`` with one ``<layer>`` per layer, top first,
    ``composite-op="svg:…"``), ``data/NNN.png`` (each layer's pixels cropped to
    its footprint on the canvas, before opacity), ``Thumbnails/thumbnail.png``
    (at most 256×256) and ``mergedimage.png`` (the composite, pixel for pixel
    :meth:`Canvas.render_uint8`).
    """
    path = Path(path)
    with atomic_open(path) as f:
        _write_ora(f, canvas)
    return path


# --------------------------------------------------------------------------
# Photoshop (PSD), through psd-tools
# --------------------------------------------------------------------------

#: Blend mode -> the name of psd-tools' ``BlendMode`` (Photoshop's four-letter keys): the
#: twelve W3C modes are all Photoshop modes.
PSD_BLEND_MODES: Mapping[str, str] = {mode: mode.replace("-", "_").upper() for mode in BLEND_MODES}
PSD_MAX_SIDE = 30_000  # the PSD (version 1) format's largest width or height


def _psd_document(canvas: Canvas, merged: np.ndarray) -> Any:
    """A psd-tools document of the canvas: 8-bit RGB with transparency, one pixel layer per
    studio layer (bottom first; an opaque background colour as a bottom "Background" layer, as
    in the OpenRaster file) with its name, offset, opacity, visibility and blend mode, and
    ``merged`` (the studio's composite) as the document's composite image."""
    from psd_tools import PSDImage
    from psd_tools.api import numpy_io
    from psd_tools.api.layers import PixelLayer
    from psd_tools.constants import BlendMode, Tag

    class StudioPSD(PSDImage):
        """Saves the studio's composite as the file's composite image (what previews,
        Photoshop's "maximize compatibility" readers and psd-tools show) instead of
        psd-tools' own re-rendering of the layers."""

        def _update_preview(self) -> None:
            values = merged.astype(np.float32) / 255.0
            planes = numpy_io.encode_image_data(self, values[..., :3], values[..., 3:])
            self._record.image_data.set_data(planes, self._record.header)

    psd = StudioPSD.new("RGBA", (canvas.width, canvas.height), color=(0, 0, 0, 0))
    if canvas.background is not None:
        fill = np.empty((canvas.height, canvas.width, 4), np.float32)
        fill[:] = canvas.background
        PixelLayer.frompil(to_pil(fill), psd, name="Background")
    for layer, pixels, x, y in _layer_crops(canvas):
        rgba = to_uint8(pixels)
        if rgba.ndim == 2 or rgba.shape[2] != 4:  # layers render as RGBA; be safe with anything else
            rgba = np.asarray(to_pil(rgba).convert("RGBA"))
        item = PixelLayer.frompil(Image.fromarray(np.ascontiguousarray(rgba), "RGBA"), psd,
                                  name="Layer", top=y, left=x)
        # Through the name property: it adds the Unicode name block ("luni") that Photoshop,
        # GIMP and Krita read; the Pascal-string name alone is Mac Roman, which GIMP misreads.
        item.name = (layer.name or "Layer")[:255]
        item.blend_mode = BlendMode[PSD_BLEND_MODES[layer.blend_mode]]
        item.opacity = int(round(layer.opacity * 255))
        item.visible = layer.visible
    # The composite's transparency: the document's fourth channel is the merged image's alpha.
    psd.tagged_blocks.set_data(Tag.SAVING_MERGED_TRANSPARENCY)
    return psd


def save_psd(canvas: Canvas, path: str | os.PathLike[str]) -> Path:
    """Write a layered Photoshop file (Photoshop, Affinity Photo, Photopea, Krita and GIMP
    open it) through psd-tools.  Atomic.

    Layers as in :func:`save_ora` (cropped to their footprint, before opacity, with name,
    offset, opacity, visibility and blend mode).  The file's composite image is
    :meth:`Canvas.render_uint8`: exactly, wherever the canvas is opaque; where it is partly
    transparent PSD stores the composite over white in 8 bits, so a colour there reads back
    within the rounding of that matting.
    """
    path = Path(path)
    if max(canvas.width, canvas.height) > PSD_MAX_SIDE:
        raise ExportError(f"a PSD file is at most {PSD_MAX_SIDE} pixels a side; this canvas is "
                          f"{canvas.width} × {canvas.height}")
    psd = _psd_document(canvas, canvas.render_uint8())
    with atomic_open(path) as f:
        psd.save(f)
    return path


def read_psd_layers(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The layers of a PSD file as psd-tools reads them, bottom first: name, blend mode (the
    studio's name, or psd-tools' for another), opacity 0–1, visibility and offset (x, y).
    For tests and ``bench/interop.py``: an independent reading of what :func:`save_psd` wrote."""
    from psd_tools import PSDImage

    modes = {v: k for k, v in PSD_BLEND_MODES.items()}
    psd = PSDImage.open(path)
    return [{"name": l.name, "mode": modes.get(l.blend_mode.name, l.blend_mode.name), "opacity": l.opacity / 255,
             "visible": l.visible, "x": l.left, "y": l.top} for l in psd]


# --------------------------------------------------------------------------
# What painting programs make of the layered files (measured by bench/interop.py)
# --------------------------------------------------------------------------

#: Per format: (blend modes, what to say when a visible layer uses one of them).  The figures
#: are bench/interop.py's (Krita 5.1.5, GIMP 2.10.34; mean difference on that mode's layer).
#: GIMP 2.10 as Debian ships it has no OpenRaster plug-in at all: the OpenRaster dialog's title
#: says so, and points to the .psd.
INTEROP: Mapping[str, tuple[tuple[frozenset[str], str], ...]] = {
    "ora": (
        (frozenset({"exclusion"}),
         "Exclusion is not in the OpenRaster standard: it is written as Krita's own operation "
         "(krita:exclusion), which Krita shows as here; MyPaint and other OpenRaster readers show "
         "such a layer as Normal."),
    ),
    "psd": (
        (frozenset({"color-dodge", "color-burn"}),
         "GIMP 2.10 renders Color Dodge and Color Burn differently wherever such a layer is not "
         "fully opaque (its opacity or soft edges): about 9 and 19 levels in 255 in bench/interop.py. "
         "Krita and Photoshop-compatible programs show them as here."),
    ),
}


def interop_notes(canvas: Canvas, format: str) -> list[str]:
    """What the person exporting ``canvas`` as ``format`` ("ora" or "psd") should know: one
    sentence per way a painting program will show the file differently from the studio, only
    for the blend modes the canvas's visible layers use ([] when every program shows it as here)."""
    used = {layer.blend_mode for layer in canvas.layers if layer.visible}
    return [text for modes, text in INTEROP.get(format, ()) if used & modes]


# --------------------------------------------------------------------------
# Animations
# --------------------------------------------------------------------------

_ANIMATION_FORMATS = {"gif": "GIF", "apng": "PNG"}


def _animation_format(path: Path, format: str | None) -> str:
    if format is None:
        format = "gif" if path.suffix.lower() == ".gif" else "apng"
    format = format.lower()
    if format not in _ANIMATION_FORMATS:
        raise ValueError(f"animation format must be 'gif' or 'apng', got {format!r}")
    return format


def frame_durations(n: int, fps: float, unit: int) -> list[int]:
    """Each frame's display time in ms, a multiple of `unit` ms (a GIF counts in hundredths of
    a second: 10), chosen so that frame i ends at (i + 1) / fps seconds to the nearest unit: 12
    fps in a GIF alternates 80 and 90 ms and plays at 12 fps, where 80 ms each played at 12.5."""
    period = 1000.0 / fps
    ends = [max(unit, round((i + 1) * period / unit) * unit) for i in range(n)]
    durations = [ends[0]] + [b - a for a, b in zip(ends, ends[1:])]
    return [max(unit, d) for d in durations]


def save_animation(
    frames: Sequence[np.ndarray],
    path: str | os.PathLike[str],
    fps: float = 12.0,
    format: str | None = None,
    *,
    loop: int = 0,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write an animated GIF or APNG (``format`` "gif" | "apng"; default from the
    suffix: ``.gif`` -> GIF, else APNG).  Atomic.

    ``frames`` are same-sized uint8 or float [0, 1] pixel arrays (gray, RGB or
    RGBA; transparency is kept).  ``loop=0`` loops forever.  Provenance goes
    into APNG text chunks, or the GIF comment as JSON.
    """
    path = Path(path)
    fmt = _animation_format(path, format)
    if not frames:
        raise ValueError("an animation needs at least one frame")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = [to_pil(frame) for frame in frames]
    if len({im.size for im in images}) != 1:
        raise ValueError("all animation frames must have the same size")
    mode = "RGBA" if any(im.mode in ("RGBA", "LA") for im in images) else "RGB"
    images = [im.convert(mode) for im in images]
    options: dict[str, Any] = {
        "save_all": True,
        "append_images": images[1:],
        "duration": frame_durations(len(images), fps, 10 if fmt == "gif" else 1),
        "loop": loop,
    }
    if fmt == "gif":
        options["disposal"] = 2  # restore to background: transparent frames don't pile up
        if provenance is not None:
            options["comment"] = provenance_json(dict(provenance)).encode("utf-8")
    else:
        options["default_image"] = False
        if provenance is not None:
            options["pnginfo"] = png_info(provenance)
    with atomic_open(path) as f:
        images[0].save(f, format=_ANIMATION_FORMATS[fmt], **options)
    return path


def export_animation(
    canvas: Canvas,
    layer_id: str,
    path: str | os.PathLike[str],
    fps: float = 12.0,
    format: str | None = None,
    *,
    composite: bool = True,
) -> Path:
    """Animate an animated layer: the whole composite per frame (``composite=True``)
    or the layer alone.  Provenance records the layer and its blend settings."""
    layer = canvas.layer(layer_id)
    if composite:
        frames = canvas.render_frames(layer_id)
    else:
        frames = [
            canvas.render_layer(layer if not layer.frames else _with_frame(layer, i))
            for i in range(max(1, len(layer.frames)))
        ]
    provenance = {**layer_provenance(canvas, layer), "fps": fps, "frames": len(frames), "composite": composite}
    return save_animation(frames, path, fps, format, provenance=provenance)


def _with_frame(layer: Layer, index: int) -> Layer:
    return dataclasses.replace(layer, frame_index=index)
