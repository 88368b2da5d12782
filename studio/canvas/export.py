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
from studio.canvas.blend import ORA_COMPOSITE_OPS
from studio.canvas import Canvas, Layer
from studio.images import to_uint8

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
    "save_animation",
    "export_animation",
]

PROVENANCE_KEY = "harmonium"
ORA_MIMETYPE = b"image/openraster"
ORA_VERSION = "0.0.3"
THUMBNAIL_MAX = 256
_PNG_KEYWORD_MAX = 79  # PNG spec: text chunk keywords are 1–79 Latin-1 bytes


# --------------------------------------------------------------------------
# PNG with provenance
# --------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"provenance value of type {type(value).__name__} is not JSON-serialisable")


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, sort_keys=True)


def _png_info(provenance: Mapping[str, Any]) -> PngInfo:
    info = PngInfo()
    for key, value in provenance.items():
        keyword = f"{PROVENANCE_KEY}:{key}"
        if len(keyword.encode("latin-1", "replace")) > _PNG_KEYWORD_MAX:
            continue  # too long for a PNG keyword; still in the JSON chunk
        info.add_itxt(keyword, value if isinstance(value, str) else _to_json(value))
    info.add_itxt(PROVENANCE_KEY, _to_json(dict(provenance)), zip=True)
    return info


def _image(pixels: np.ndarray) -> Image.Image:
    """uint8 or float [0, 1] ``H×W``/``H×W×{1,2,3,4}`` -> a PIL image (L, LA, RGB or RGBA)."""
    a = to_uint8(np.asarray(pixels))
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ValueError(f"expected H×W or H×W×{{1,2,3,4}} pixels, got shape {a.shape}")
    return Image.fromarray(np.ascontiguousarray(a))


def _encode_png(image: Image.Image, f: BinaryIO, provenance: Mapping[str, Any] | None) -> None:
    image.save(f, format="PNG", pnginfo=None if provenance is None else _png_info(provenance))


def _png_bytes(pixels: np.ndarray, provenance: Mapping[str, Any] | None = None) -> bytes:
    buf = io.BytesIO()
    _encode_png(_image(pixels), buf, provenance)
    return buf.getvalue()


def save_png(path: str | os.PathLike[str], rgba: np.ndarray, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``rgba`` (uint8, or float in [0, 1]; gray, gray+alpha, RGB or RGBA)
    as a PNG carrying ``provenance`` in text chunks.  Atomic.  Returns the path."""
    path = Path(path)
    image = _image(rgba)
    with atomic_open(path) as f:
        _encode_png(image, f, provenance)
    return path


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance dictionary stored by :func:`save_png` (``{}`` if none).

    Reads the JSON ``harmonium`` chunk; failing that, rebuilds the dictionary
    from the ``harmonium:<key>`` chunks.  (JSON round-trips tuples as lists.)
    """
    with Image.open(path) as im:
        im.load()
        text = dict(getattr(im, "text", {}) or {})
    if PROVENANCE_KEY in text:
        return json.loads(text[PROVENANCE_KEY])
    out: dict[str, Any] = {}
    prefix = f"{PROVENANCE_KEY}:"
    for key, value in text.items():
        if key.startswith(prefix):
            try:
                out[key[len(prefix) :]] = json.loads(value)
            except ValueError:
                out[key[len(prefix) :]] = value
    return out


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


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug[:60] or "layer"


def export_layers(canvas: Canvas, folder: str | os.PathLike[str]) -> list[Path]:
    """Write each layer as ``NNN-<name>.png`` (bottom = 000; canvas-sized, as the
    layer lands on the canvas before opacity and blending) and ``composite.png``.

    Every file carries provenance, including the layer's blend settings.
    Returns the paths, layers bottom to top, then the composite.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, layer in enumerate(canvas.layers):
        path = folder / f"{index:03d}-{_slug(layer.name)}.png"
        paths.append(save_png(path, canvas.render_layer(layer), layer_provenance(canvas, layer)))
    paths.append(save_png(folder / "composite.png", canvas.render_uint8(), composite_provenance(canvas)))
    return paths


# --------------------------------------------------------------------------
# OpenRaster
# --------------------------------------------------------------------------


def _ora_layers(canvas: Canvas) -> list[tuple[dict[str, str], bytes]]:
    """``(stack.xml attributes, PNG bytes)`` per layer, bottom to top; an opaque
    background colour becomes a bottom "Background" layer so that applications
    rebuild the same composite."""
    entries: list[tuple[dict[str, str], bytes]] = []
    if canvas.background is not None:
        fill = np.empty((canvas.height, canvas.width, 4), dtype=np.float32)
        fill[:] = canvas.background
        entries.append((_ora_attrs("Background", 0, 0, 1.0, True, "normal"), _png_bytes(fill)))
    for layer in canvas.layers:
        bounds = canvas.layer_bounds(layer)
        if bounds is None:  # entirely off-canvas: keep it, as a 1×1 transparent pixel
            pixels, (x0, y0) = np.zeros((1, 1, 4), np.float32), (0, 0)
        else:
            x0, y0, x1, y1 = bounds
            pixels = canvas.render_layer(layer)[y0:y1, x0:x1]
        attrs = _ora_attrs(layer.name, x0, y0, layer.opacity, layer.visible, layer.blend_mode)
        entries.append((attrs, _png_bytes(pixels, layer_provenance(canvas, layer))))
    return entries


def _ora_attrs(name: str, x: int, y: int, opacity: float, visible: bool, mode: str) -> dict[str, str]:
    return {
        "name": name,
        "x": str(x),
        "y": str(y),
        "opacity": f"{opacity:.6g}",
        "visibility": "visible" if visible else "hidden",
        "composite-op": ORA_COMPOSITE_OPS[mode],
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
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


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
    images = [_image(frame) for frame in frames]
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
            options["comment"] = _to_json(dict(provenance)).encode("utf-8")
    else:
        options["default_image"] = False
        if provenance is not None:
            options["pnginfo"] = _png_info(provenance)
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
