"""Pixels without Qt or torch: the one float → uint8 conversion and the one mosaic.

Every part of the studio that turns model output into bytes (the training panel's frames, the
Dreams tab, the CLI's ``harmonium sample``, the canvas's layer sources and exports) goes through
:func:`to_uint8` / :func:`images_to_uint8`, and every grid of tiles is laid out by
:func:`mosaic` at the places :class:`GridLayout` says, so a grid on screen, in a PNG and on the
canvas is the same, pixel for pixel.

Conversion: floats are clamped to [0, 1], scaled by 255 and rounded half up, in float32 (so
``0.5`` is 128); NaN becomes 0, +inf 255, -inf 0. ``uint8`` passes through untouched.

Plain numpy, so ``studio.jobs`` and the CLI's light commands import it without torch; a torch
tensor is accepted too (it is moved to the CPU and read as an array).

It is also the studio's one PNG writer (:func:`save_png`): every PNG the studio exports (the
Dreams grid, the canvas's layers and composite, the Latent strip, ``harmonium sample``) carries
the studio's provenance (``harmonium`` text chunks, read back by :func:`read_provenance`) beside
the standard ``Software``, ``Description`` and ``Creation Time`` keywords of the PNG
specification (§ 11.3.4.2), which exiftool, file managers and image viewers show. Export scaling
(×2, ×4, ×8; nearest or smooth) is :func:`upscale`.
"""
from __future__ import annotations

import email.utils
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

import numpy as np

__all__ = [
    "EXPORT_SCALES",
    "GAP_FILL",
    "GridLayout",
    "PROVENANCE_KEY",
    "describe_provenance",
    "images_to_uint8",
    "mosaic",
    "png_bytes",
    "png_info",
    "read_provenance",
    "save_png",
    "tile",
    "to_pil",
    "to_uint8",
    "upscale",
]

GAP_FILL = 32  # grey of the gaps between tiles (uint8)


def _as_array(pixels: Any) -> np.ndarray:
    """An ndarray view of ``pixels`` (a torch tensor is detached and brought to the CPU)."""
    if isinstance(pixels, np.ndarray):
        return pixels
    detach = getattr(pixels, "detach", None)
    if detach is not None:  # a torch tensor, without importing torch here
        return detach().to("cpu").numpy()
    return np.asarray(pixels)


def to_uint8(pixels: Any) -> np.ndarray:
    """Float pixels in [0, 1] (any shape) -> uint8 [0, 255], round half up, clamped, NaN as 0;
    uint8 is returned as it is (the same array)."""
    a = _as_array(pixels)
    if a.dtype == np.uint8:
        return a
    out = np.fmax(a, np.float32(0.0), dtype=np.float32)  # fmax/fmin drop NaN: NaN -> 0
    np.fmin(out, np.float32(1.0), out=out)
    out *= np.float32(255.0)
    out += np.float32(0.5)
    return out.astype(np.uint8)


def images_to_uint8(images: Any) -> np.ndarray:
    """Images ``[n, C, H, W]`` (float in [0, 1], or uint8; array or tensor) -> read-only uint8
    ``[n, H, W, C]``, the layout every frame, mosaic and PNG of the studio uses."""
    a = _as_array(images)
    if a.ndim != 4:
        raise ValueError(f"expected images [n, C, H, W], got shape {tuple(a.shape)}")
    out = np.ascontiguousarray(to_uint8(a).transpose(0, 2, 3, 1))
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class GridLayout:
    """Where each tile lies in a :func:`mosaic`: ``cols`` tiles per row (0: about square),
    ``pad`` pixels of gap around and between the tiles."""

    n: int
    height: int
    width: int
    pad: int = 1
    cols: int = 0  # 0: ceil(sqrt(n))

    def __post_init__(self) -> None:
        if self.cols <= 0:
            object.__setattr__(self, "cols", max(1, math.ceil(math.sqrt(self.n))))

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.n / self.cols))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the mosaic in pixels."""
        return (self.rows * (self.height + self.pad) + self.pad, self.cols * (self.width + self.pad) + self.pad)

    def origin(self, chain: int) -> tuple[int, int]:
        """(y, x) of the tile's top-left pixel."""
        r, q = divmod(int(chain), self.cols)
        return self.pad + r * (self.height + self.pad), self.pad + q * (self.width + self.pad)

    def chain_at(self, y: float, x: float) -> tuple[int, float, float] | None:
        """The tile under mosaic point (y, x) and the point in the tile's pixels, or None
        over a gap or outside."""
        cy, ry = divmod(y - self.pad, self.height + self.pad)
        cx, rx = divmod(x - self.pad, self.width + self.pad)
        if cy < 0 or cx < 0 or cx >= self.cols or ry >= self.height or rx >= self.width:
            return None
        chain = int(cy) * self.cols + int(cx)
        if chain >= self.n:
            return None
        return chain, float(ry), float(rx)


def mosaic(pixels: Any, pad: int = 1, fill: float | Sequence[float] | None = None, cols: int = 0) -> np.ndarray:
    """Tiles ``[n, H, W, C]`` -> one ``[rows·(H+pad)+pad, cols·(W+pad)+pad, C]`` mosaic of the
    same dtype, laid out as :class:`GridLayout` says, with ``fill`` in the gaps: a number, or
    one per channel (e.g. an opaque alpha); None: :data:`GAP_FILL` grey (for floats, 32/255).
    No Python loop over the tiles."""
    pixels = np.asarray(pixels)
    n, h, w, c = pixels.shape
    if fill is None:
        fill = GAP_FILL if pixels.dtype == np.uint8 else GAP_FILL / 255.0
    gap = np.asarray(fill, dtype=pixels.dtype)
    lay = GridLayout(n, h, w, pad, cols)
    tiles = np.empty((lay.rows * lay.cols, h + pad, w + pad, c), pixels.dtype)
    tiles[...] = gap
    tiles[:n, :h, :w] = pixels
    grid = tiles.reshape(lay.rows, lay.cols, h + pad, w + pad, c).transpose(0, 2, 1, 3, 4)
    out = np.empty((*lay.shape, c), pixels.dtype)
    out[...] = gap
    out[pad:, pad:] = grid.reshape(lay.rows * (h + pad), lay.cols * (w + pad), c)
    return out


def tile(images: Any, cols: int = 0, pad: int = 1, fill: float | None = None) -> np.ndarray:
    """Images in the models' layout ``[n, C, H, W]`` (any dtype) -> their :func:`mosaic`:
    ``[Hm, Wm]`` for gray (C = 1), else ``[Hm, Wm, C]``, of the same dtype."""
    m = mosaic(_as_array(images).transpose(0, 2, 3, 1), pad, fill, cols)
    return m[..., 0] if m.shape[-1] == 1 else m


# ------------------------------------------------------------------------------ export scale
EXPORT_SCALES = (1, 2, 4, 8)  # the factors the export menus offer
MAX_EXPORT_SIDE = 16384  # pixels: an enlarged export stays within bounded memory


def upscale(pixels: Any, factor: int, smooth: bool = False) -> np.ndarray:
    """uint8 (or float [0, 1]) ``H×W`` / ``H×W×C`` pixels enlarged ``factor``× for an export:
    nearest neighbour (every pixel a ``factor``-square block: crisp, what small dreams want) or
    smooth (Pillow's Lanczos, alpha premultiplied so transparent pixels do not bleed their
    colour). Returns uint8; ``factor`` 1 returns the pixels as uint8 unchanged."""
    a = to_uint8(pixels)
    factor = int(factor)
    if factor < 1 or max(a.shape[:2], default=0) * factor > MAX_EXPORT_SIDE:
        raise ValueError(f"an export is at most {MAX_EXPORT_SIDE} pixels a side: ×{factor} of "
                         f"{a.shape[1]} × {a.shape[0]} is too large" if factor >= 1 else
                         f"an export scale is a whole factor of at least 1, got {factor}")
    if factor == 1:
        return a
    if not smooth:
        return np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)
    from PIL import Image

    image = to_pil(a)
    big = image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)
    out = np.asarray(big)
    return out if a.ndim == out.ndim else out.reshape(*out.shape[:2], *a.shape[2:])


# ------------------------------------------------------------------------------------- PNG
PROVENANCE_KEY = "harmonium"
_PNG_KEYWORD_MAX = 79  # PNG spec: text chunk keywords are 1–79 Latin-1 bytes
SOFTWARE = "Harmonium Studio"


def _software() -> str:
    """``Harmonium Studio <version>`` (the installed package's version, when it is installed)."""
    try:
        from importlib.metadata import version

        return f"{SOFTWARE} {version('harmonium-studio')}"
    except Exception:  # not installed (a source checkout): the name alone
        return SOFTWARE


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


def provenance_json(value: Any) -> str:
    """``value`` as the JSON the provenance chunks hold (numpy scalars and paths as plain values)."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, sort_keys=True)


_KIND_NAMES = {"rbm": "RBM", "grbm": "Gaussian RBM", "vae": "VAE", "ae": "autoencoder", "hybrid": "AE+RBM hybrid",
               "texture": "texture RBM"}


def describe_provenance(provenance: Mapping[str, Any]) -> str:
    """One readable sentence of where an image came from, for the PNG ``Description``:
    e.g. "Harmonium Studio: RBM dreams, 500 Gibbs steps at temperature 0.85, seed 1234,
    checkpoint 9f86d0818841…". Only the keys present are named."""
    p = provenance
    model = p.get("model")
    what = {"dreams": "dreams", "interpolation": "latent interpolation", "model-frame": "frame",
            "composite": "canvas composite", "denoised": "denoised image"}.get(str(p.get("source") or p.get("kind")),
                                                                              "image")
    head = f"{_KIND_NAMES.get(str(model), str(model))} {what}" if isinstance(model, str) and model else what
    parts = [head]
    if isinstance(p.get("steps"), int):
        t = p.get("temperature")
        parts.append(f"{p['steps']} steps" + (f" at temperature {t:g}" if isinstance(t, (int, float)) else ""))
    if p.get("seed") is not None:
        parts.append(f"seed {p['seed']}")
    if isinstance(p.get("from_file"), str) and isinstance(p.get("to_file"), str):
        parts.append(f"from {p['from_file']} to {p['to_file']}")
    if isinstance(p.get("checkpoint_sha256"), str):
        parts.append(f"checkpoint {p['checkpoint_sha256'][:12]}…")
    layers = p.get("layers")
    if isinstance(layers, list):
        parts.append(f"{len(layers)} layer{'s' * (len(layers) != 1)}")
    if isinstance(p.get("scale"), int) and p["scale"] > 1:
        parts.append(f"scaled ×{p['scale']}")
    return f"{SOFTWARE}: " + ", ".join(parts)


def png_info(provenance: Mapping[str, Any] | None, *, created: float | None = None):
    """The text chunks of a studio PNG (a Pillow ``PngInfo``): the standard ``Software``,
    ``Description`` and ``Creation Time`` (RFC 1123, as the PNG spec asks), then one
    ``harmonium:<key>`` iTXt chunk per top-level provenance key (strings as they are, other
    values as JSON) and the whole dictionary as compressed JSON in ``harmonium``."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", _software())  # Latin-1 tEXt; Pillow writes iTXt for other text
    if created is None and os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():  # reproducible files, when asked
        created = float(os.environ["SOURCE_DATE_EPOCH"])
    info.add_text("Creation Time", email.utils.formatdate(created, usegmt=True))
    if provenance is None:
        return info
    info.add_text("Description", describe_provenance(provenance))
    for key, value in provenance.items():
        keyword = f"{PROVENANCE_KEY}:{key}"
        if len(keyword.encode("latin-1", "replace")) > _PNG_KEYWORD_MAX:
            continue  # too long for a PNG keyword; still in the JSON chunk
        info.add_itxt(keyword, value if isinstance(value, str) else provenance_json(value))
    info.add_itxt(PROVENANCE_KEY, provenance_json(dict(provenance)), zip=True)
    return info


def to_pil(pixels: Any):
    """uint8 or float [0, 1] ``H×W``/``H×W×{1,2,3,4}`` -> a PIL image (L, LA, RGB or RGBA)."""
    from PIL import Image

    a = to_uint8(_as_array(pixels))
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ValueError(f"expected H×W or H×W×{{1,2,3,4}} pixels, got shape {a.shape}")
    return Image.fromarray(np.ascontiguousarray(a))


def _encode_png(image: Any, f: BinaryIO, provenance: Mapping[str, Any] | None) -> None:
    image.save(f, format="PNG", pnginfo=png_info(provenance))


def png_bytes(pixels: Any, provenance: Mapping[str, Any] | None = None) -> bytes:
    """The PNG file :func:`save_png` writes, in memory (for the PNGs inside an OpenRaster file)."""
    buf = io.BytesIO()
    _encode_png(to_pil(pixels), buf, provenance)
    return buf.getvalue()


def save_png(path: str | os.PathLike[str], rgba: Any, provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``rgba`` (uint8, or float in [0, 1]; gray, gray+alpha, RGB or RGBA) as a PNG
    carrying ``provenance`` and the standard text keywords (:func:`png_info`). Atomic
    (:func:`models.atomic.atomic_open`): a failure leaves any earlier file whole. Returns the path."""
    from models.atomic import atomic_open

    path = Path(path)
    image = to_pil(rgba)
    with atomic_open(path) as f:
        _encode_png(image, f, provenance)
    return path


def read_provenance(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The provenance dictionary stored by :func:`save_png` (``{}`` if none).

    Reads the JSON ``harmonium`` chunk; failing that, rebuilds the dictionary from the
    ``harmonium:<key>`` chunks. (JSON round-trips tuples as lists.) For files from elsewhere
    use :func:`studio.provenance.read_studio_png`, which validates them first."""
    from PIL import Image

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
