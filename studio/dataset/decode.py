"""Decoding one file into a row of the image array: format sniffed from content, size guards,
orientation, mode, geometry, binarisation; every failure a :class:`Rejected` reason for people.
See :mod:`studio.dataset`."""

from __future__ import annotations

import importlib
import os
import re
import struct
import warnings
import zlib
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

from studio.dataset.records import _Refused, ImageInfo, Preprocess, Rejected


# Register the decoders we use now, so worker threads never race Pillow's lazy plugin set-up.
for _plugin in ("Bmp", "Gif", "Jpeg", "Mpo", "Png", "Tiff", "WebP"):
    importlib.import_module(f"PIL.{_plugin}ImagePlugin")


#: Pillow decoders we allow; the format is sniffed from content, never trusted from the name.
#: (Multi-picture JPEGs arrive through "JPEG" and report format "MPO".)
_PIL_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "DIB", "GIF", "TIFF")


_RESAMPLE = Image.Resampling.LANCZOS


# Our per-call ``max_pixels`` check replaces Pillow's process-wide warning.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _open_file(path: Path) -> BinaryIO:
    """Open ``path`` for reading (a seam for tests that simulate unreadable files)."""
    return open(path, "rb")


def _human_pixels(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.3g} gigapixels"
    return f"{n / 1e6:.3g} MP"


def _too_large(w: int | None, h: int | None, pixels: int, limit: int) -> str:
    dims = f"{w}×{h} claims " if w and h else "header claims "
    return f"image too large: {dims}{_human_pixels(pixels)} (limit {_human_pixels(limit)})"


def _check_dimensions(w: int, h: int, pp: Preprocess) -> None:
    if w * h > pp.max_pixels:
        raise _Refused(_too_large(w, h, w * h, pp.max_pixels))
    if min(w, h) < pp.min_size:
        raise _Refused(f"image too small: {w}×{h} px (the minimum is {pp.min_size} px on each side)")


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "corrupt PNG file (its header cannot be read)"),
    (b"\xff\xd8", "corrupt JPEG file (its header cannot be read)"),
    (b"GIF8", "corrupt GIF file (its header cannot be read)"),
    (b"BM", "corrupt BMP file (its header cannot be read)"),
    (b"II*\x00", "corrupt or unsupported TIFF file"),
    (b"MM\x00*", "corrupt or unsupported TIFF file"),
    (b"%PDF", "not an image (a PDF document)"),
    (b"8BPS", "Photoshop documents (PSD) are not supported; export a PNG"),
    (b"PK\x03\x04", "not an image (a ZIP archive, or a Krita/OpenRaster document)"),
    (b"\x00\x00\x01\x00", "icon files (ICO) are not supported"),
)


def _sniff(head: bytes) -> str:
    """Say what a file Pillow could not identify looks like."""
    if not head:
        return "empty file (0 bytes)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "corrupt WebP file (its header cannot be read)"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace")
        if brand in {"heic", "heix", "mif1", "msf1", "avif", "avis"}:
            return "HEIC/AVIF images are not supported; export a PNG or JPEG"
        return "not an image (a video or other media container)"
    for magic, reason in _MAGIC:
        if head.startswith(magic):
            return reason
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in head.lower():
        return "SVG vector images are not supported; export a PNG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "not an image (looks like a web page)"
    if b"\x00" not in head:
        printable = sum(1 for b in head if b >= 0x20 or b in b"\t\n\r\f")
        if printable >= 0.95 * len(head):
            return "not an image (looks like text)"
    return "not an image (unrecognised content)"


def _header_size(head: bytes) -> tuple[int, int] | None:
    """Width/height from a PNG or GIF header, for wording a decompression-bomb rejection."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head.startswith(b"GIF8") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    return None


_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
#: Pillow's caps on PNG text: one chunk inflated, and all of a file's chunks together. Pillow
#: raises a plain ValueError naming the cap, which would otherwise read as "corrupt".
_PNG_TEXT_CHUNK = PngImagePlugin.MAX_TEXT_CHUNK
_PNG_TEXT_MEMORY = PngImagePlugin.MAX_TEXT_MEMORY
#: What Pillow's decoders raise on damaged data (OSError "image file is truncated", PNG
#: SyntaxError "broken PNG file", EOFError, zlib.error, struct.error, ...).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


def _describe_error(exc: BaseException, head: bytes, pp: Preprocess) -> str:
    """Turn any per-file exception into a reason for people."""
    if isinstance(exc, _Refused):
        return str(exc)
    if isinstance(exc, Image.DecompressionBombError):
        m = _BOMB_PIXELS.search(str(exc))
        wh = _header_size(head)
        pixels = int(m.group(1)) if m else (wh[0] * wh[1] if wh else 0)
        limit = pp.max_pixels  # Pillow's hard limit may be the lower one here
        if Image.MAX_IMAGE_PIXELS:
            limit = min(limit, 2 * int(Image.MAX_IMAGE_PIXELS))
        return _too_large(*(wh or (None, None)), pixels, limit)
    if isinstance(exc, UnidentifiedImageError):
        return _sniff(head)
    if isinstance(exc, PermissionError):
        return "permission denied (the file cannot be read)"
    if isinstance(exc, FileNotFoundError):
        return "file disappeared before it could be read"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode this image"
    detail = str(exc).strip() or type(exc).__name__
    if isinstance(exc, ValueError) and "MAX_TEXT_CHUNK" in detail:
        return (f"PNG text chunk too large: a compressed text chunk (zTXt/iTXt) inflates past "
                f"{_PNG_TEXT_CHUNK // 2**20} MB, a decompression bomb; not loaded")
    if isinstance(exc, ValueError) and "MAX_TEXT_MEMORY" in detail:
        return (f"PNG text chunks too large: together they inflate past {_PNG_TEXT_MEMORY // 2**20} MB, "
                "a decompression bomb; not loaded")
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"cannot read the file: {exc.strerror or detail}"
    if isinstance(exc, _DECODE_ERRORS):
        return f"truncated or corrupt image data ({detail})"
    return f"could not be decoded ({type(exc).__name__}: {detail})"


def _draft(im: Image.Image, pp: Preprocess) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale (never below the target size) and, for
    grayscale output, decode luma only.  This is the main speed trick for photos."""
    if im.format in ("JPEG", "MPO"):
        im.draft("RGB" if pp.color else "L", (pp.size, pp.size))


_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}


def _apply_orientation(im: Image.Image, notes: list[str]) -> Image.Image:
    """Rotate/flip as the EXIF Orientation tag says; returns ``im`` itself when upright."""
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # unreadable EXIF is not worth refusing the picture for
        return im
    method = _ORIENTATION.get(orientation)
    if method is None:
        return im
    notes.append("EXIF orientation applied")
    try:
        return ImageOps.exif_transpose(im)  # a turned copy; `im` is left as it was
    except Exception:  # odd EXIF blocks can trip Pillow's rewrite of the tag; pixels still turn
        return im.transpose(method)


def _bits_per_sample(im: Image.Image) -> int | None:
    tags = getattr(im, "tag_v2", None)
    if tags is not None and 258 in tags:
        bps = tags[258]
        return int(bps[0] if isinstance(bps, tuple) else bps)
    if im.format == "PNG":
        return 16
    return None


def _high_bit_to_l(im: Image.Image, bits: int | None, notes: list[str]) -> Image.Image:
    """16/32-bit integer or float grayscale → 8-bit L, scaled over the full range.
    ``bits`` is the file's declared bit depth, when it declares one."""
    arr = np.asarray(im)
    if im.mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            scaled = arr * 255.0
            notes.append("floating-point values 0..1 scaled to 8-bit")
        else:
            scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
            notes.append(f"floating-point values stretched from {lo:g}..{hi:g}")
    else:
        if im.mode.startswith("I;16"):
            bits = min(16, bits or 16)  # e.g. 12-bit camera data in a 16-bit TIFF
        else:
            bits = bits or (16 if int(arr.max(initial=0)) <= 65535 else 32)
        top = (1 << 31) - 1 if bits >= 32 else (1 << bits) - 1
        scaled = np.clip(arr.astype(np.float64), 0, top) * (255.0 / top)
        notes.append(f"{bits}-bit values scaled to 8-bit")
    return Image.fromarray(np.rint(scaled).astype(np.uint8), "L")


@lru_cache(maxsize=1)
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _cmyk_to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """CMYK → sRGB through the embedded ICC profile when there is a usable one."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(BytesIO(icc))
            out = ImageCms.profileToProfile(
                im, src, _srgb_profile(), outputMode="RGB",
                renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                flags=ImageCms.Flags.BLACKPOINTCOMPENSATION,
            )
            if out is not None:
                notes.append("CMYK converted to sRGB with its ICC profile")
                return out
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            notes.append("CMYK ICC profile unusable; converted without it")
            return im.convert("RGB")
    notes.append("CMYK converted without a colour profile")
    return im.convert("RGB")


def _composite(im: Image.Image, background: tuple[int, int, int], notes: list[str]) -> Image.Image:
    """Flatten any kind of transparency onto an opaque background colour."""
    if im.mode == "La":
        im = im.convert("LA")
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    canvas.alpha_composite(rgba)
    notes.append("transparency composited onto the background colour")
    return canvas.convert("RGB")


_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def _normalise_mode(im: Image.Image, pp: Preprocess, notes: list[str], bits: int | None = None) -> Image.Image:
    """Any decoded mode → "L" (gray output) or "RGB" (colour output)."""
    mode = im.mode
    if mode == "F" or mode == "I" or mode.startswith("I;16"):
        im = _high_bit_to_l(im, bits, notes)
    elif mode == "CMYK":
        im = _cmyk_to_rgb(im, notes)
    elif mode in _ALPHA_MODES or "transparency" in im.info:
        im = _composite(im, pp.background, notes)
    elif mode == "1":
        im = im.convert("L")
    elif mode not in ("L", "RGB"):
        im = im.convert("RGB")  # P, YCbCr, LAB, HSV, ...
    target = "RGB" if pp.color else "L"
    return im if im.mode == target else im.convert(target)


def _background_for(mode: str, background: tuple[int, int, int]) -> int | tuple[int, int, int]:
    if mode == "RGB":
        return background
    return Image.new("RGB", (1, 1), background).convert("L").getpixel((0, 0))  # type: ignore[return-value]


def _geometry(im: Image.Image, pp: Preprocess, notes: list[str]) -> Image.Image:
    """Scale/crop/pad to ``size``×``size`` according to ``pp.crop``."""
    s = pp.size
    w, h = im.size
    needed = max(w, h) if pp.crop == "fit" else min(w, h)
    if needed < s:
        notes.append(f"upscaled from {w}×{h}")
    factor = min(w, h) // (2 * s)
    if factor >= 2:  # cheap box pre-reduction of big non-JPEG sources before the good filter
        im = im.reduce(factor)
    if pp.native:  # a texture: the middle square at whole-pixel offsets, resampled only when larger
        side = min(im.size)
        left, top = (im.width - side) // 2, (im.height - side) // 2
        square = im.crop((left, top, left + side, top + side))
        if side > s:
            notes.append(f"its middle {min(w, h)}×{min(w, h)} square downscaled to {s}×{s}")
        return square if side == s else square.resize((s, s), _RESAMPLE)
    if pp.crop == "center":
        return ImageOps.fit(im, (s, s), method=_RESAMPLE)
    if pp.crop == "fit":
        return ImageOps.pad(im, (s, s), method=_RESAMPLE, color=_background_for(im.mode, pp.background))
    return im.resize((s, s), _RESAMPLE)


def _binarize(arr: np.ndarray, pp: Preprocess) -> np.ndarray:
    """H×W or H×W×3 uint8 → same shape with only 0 and 255."""
    if pp.binarize == "threshold":
        return np.where(arr >= pp.threshold * 255.0, 255, 0).astype(np.uint8)
    planes = [arr] if arr.ndim == 2 else [arr[..., c] for c in range(arr.shape[2])]
    dithered = [np.asarray(Image.fromarray(p, "L").convert("1", dither=Image.Dither.FLOYDSTEINBERG))
                for p in planes]
    out = np.stack(dithered, axis=-1) if arr.ndim == 3 else dithered[0]
    return out.astype(np.uint8) * np.uint8(255)


def _is_animated(im: Image.Image) -> bool:
    try:
        return bool(getattr(im, "is_animated", False))
    except Exception:
        return False


def _decode_into(path: Path, pp: Preprocess, dest: np.ndarray) -> ImageInfo:
    """Decode ``path`` and write the preprocessed pixels into ``dest`` ([C, H, W] uint8).
    Raises on any problem; :func:`_load_one` turns that into a reason."""
    if os.stat(path).st_size == 0:
        raise _Refused("empty file (0 bytes)")
    notes: list[str] = []
    with _open_file(path) as fh, Image.open(fh, formats=_PIL_FORMATS) as im:
        w, h = im.size
        _check_dimensions(w, h, pp)
        fmt, mode = im.format or "?", im.mode
        _draft(im, pp)
        im.load()
        upright = _apply_orientation(im, notes)  # may be a copy without the file's tags
        # _geometry always returns a new image, so nothing refers to `im` after the block.
        img = _geometry(_normalise_mode(upright, pp, notes, _bits_per_sample(im)), pp, notes)
        if _is_animated(im):
            notes.append("animated: first frame used")
    arr = np.asarray(img)
    if pp.binarize:
        arr = _binarize(arr, pp)
    dest[...] = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return ImageInfo(fmt, mode, w, h, tuple(notes))


def _read_head(path: Path, n: int = 1024) -> bytes:
    try:
        with _open_file(path) as fh:
            return fh.read(n)
    except Exception:
        return b""


def _load_one(path: Path, pp: Preprocess, dest: np.ndarray) -> ImageInfo | Rejected:
    """Never raises for a per-file problem (only BaseExceptions like KeyboardInterrupt pass)."""
    try:
        return _decode_into(path, pp, dest)
    except Exception as exc:  # noqa: BLE001 — the whole point: nothing per-file escapes
        needs_head = isinstance(exc, (UnidentifiedImageError, Image.DecompressionBombError))
        head = _read_head(path) if needs_head else b""
        try:
            reason = _describe_error(exc, head, pp)
        except Exception:  # pragma: no cover - belt and braces
            reason = f"could not be loaded ({type(exc).__name__})"
        return Rejected(str(path), reason)
