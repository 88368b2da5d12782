"""Image ingestion: turn whatever folder an artist drops into a clean uint8 image array.

No Qt in here: the CLI (`harmonium scan`, `harmonium train`) and the studio both use it.

The pipeline, per file::

    scan ─► open (format sniffed from content) ─► size guards ─► JPEG draft ─► decode
         ─► EXIF orientation ─► normalise mode (alpha, palette, CMYK/ICC, 16/32-bit, 1-bit)
         ─► geometry (center crop | fit with padding | stretch) ─► gray/RGB ─► binarize
         ─► written straight into one preallocated uint8 array [N, C, H, W]

Promises
--------
* **Nothing per-file escapes.** Every problem with one file (truncated, empty, not an image,
  unreadable, too big, too small, ...) becomes a :class:`Rejected` entry with a reason a person
  can read.  Only programming errors in the arguments (a bad :class:`Preprocess`) raise, and
  cancellation raises :class:`LoadCancelled`.
* **No file is lost silently.** Files that are not images by name (``notes.txt``, ``.DS_Store``)
  are listed in :attr:`ImageSet.ignored`; image-named files are either loaded or rejected.
* **Memory stays close to the result.** Decoding runs in a thread pool (Pillow releases the GIL
  while decoding and resizing) and each image is written into its row of a preallocated uint8
  array; there is never a float copy of the whole set.  JPEGs are decoded at reduced scale
  (``Image.draft``), which is what makes 10,000 photos load in seconds.

Policies worth knowing
----------------------
* Tiny images: sources smaller than ``Preprocess.min_size`` (default 8 px) on either side are
  *refused*, not upscaled: a 1×1 or 4×4 image blown up to 28×28 is a flat block that carries
  nothing learnable and would quietly poison a small training set.  Images between ``min_size``
  and ``size`` are upscaled.  Set ``min_size=1`` to accept everything.
* High bit depth: 16-bit values map to 8-bit by ``round(v * 255 / 65535)`` (65535 → 255,
  32768 → 128).  32-bit integer images use their declared bit depth (TIFF BitsPerSample) and
  map ``0 .. 2**31-1`` onto ``0 .. 255``; negative values clip to 0.  Float images in [0, 1]
  are scaled by 255, other float ranges are stretched min..max (and say so in the notes).
* Colour: CMYK with an embedded ICC profile goes through LittleCMS to sRGB (relative
  colorimetric + black point compensation); CMYK without one uses Pillow's plain conversion.
  Embedded profiles of RGB images are not applied (they are nearly always sRGB-like).
* Grayscale is ITU-R 601-2 luma (Pillow's ``convert("L")``); a JPEG loaded as grayscale is
  decoded from its luma channel directly.
* Transparency (RGBA, LA, PA, palette or colour-key transparency) is composited onto
  ``Preprocess.background``; the padding of ``crop="fit"`` uses the same colour.
* Animated GIF/WebP/PNG and multi-picture files contribute their first frame.
* Binarized images are stored as 0/255 so :meth:`ImageSet.as_float` gives exactly 0.0/1.0.
  ``"dither"`` is Floyd–Steinberg (Pillow's, midpoint 128; ``threshold`` is not used).
* Decompression bombs: the header's claimed size is checked against ``Preprocess.max_pixels``
  before any pixel is decoded.  Pillow's own hard limit (``2 * Image.MAX_IMAGE_PIXELS``, about
  179 MP) still applies on top, so ``max_pixels`` above that has no effect.  Pillow's
  ``DecompressionBombWarning`` is silenced because the per-call limit replaces it.
* Links: a symbolic link in a dropped folder is followed when it leads inside the dropped
  folders; one that leads out of them (a link to ``/``, to ``/etc/shadow``) is rejected with
  its target and never read, unless ``follow_links=True``.  Loops end (each real folder is
  walked once), and a walk stops after ``MAX_ENTRIES`` entries or ``MAX_FILES`` image files,
  saying so in a rejection.
* File names in reports go through :func:`display_path`: bytes that are not UTF-8 become
  ``\\xNN`` and, in the text report, newlines and other control characters are escaped.
* Cancellation raises :class:`LoadCancelled` (a partial set would be a misleading thing to
  train on); the caller just loads again.
* If some other part of the process sets ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES = True``,
  truncated files load with grey filler instead of being rejected; this module never sets it.
"""
from __future__ import annotations

import importlib
import errno
import json
import os
import re
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError

# Register the decoders we use now, so worker threads never race Pillow's lazy plugin set-up.
for _plugin in ("Bmp", "Gif", "Jpeg", "Mpo", "Png", "Tiff", "WebP"):
    importlib.import_module(f"PIL.{_plugin}ImagePlugin")

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "ImageSet",
    "LoadCancelled",
    "Preprocess",
    "Rejected",
    "augment",
    "default_workers",
    "demo_folder",
    "display_path",
    "load_demo",
    "load_images",
    "scan",
    "scan_report",
]

#: File name endings treated as images when walking folders (compared case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff"}
)
#: Pillow decoders we allow; the format is sniffed from content, never trusted from the name.
#: (Multi-picture JPEGs arrive through "JPEG" and report format "MPO".)
_PIL_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "DIB", "GIF", "TIFF")

CROPS: tuple[str, ...] = ("center", "fit", "stretch")
BINARIZE: tuple[str | None, ...] = (None, "threshold", "dither")
MIN_TARGET, MAX_TARGET = 16, 128

_RESAMPLE = Image.Resampling.LANCZOS
_ROOT = Path(__file__).resolve().parents[1]

ProgressFn = Callable[[int, int], None]

# Our per-call ``max_pixels`` check replaces Pillow's process-wide warning.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# ----------------------------------------------------------------------------- data types


@dataclass
class Preprocess:
    """How every source image becomes one training image.  Stored in checkpoints as a dict.

    Attributes:
        size: output side in pixels (square), 16..128.
        crop: ``"center"`` (scale the short side to ``size``, crop the middle), ``"fit"``
            (scale the long side to ``size``, pad with ``background``) or ``"stretch"``.
        color: False → 1 channel (grayscale), True → 3 channels (RGB).
        background: RGB colour transparent pixels are composited on, and fit padding colour.
        binarize: None, ``"threshold"`` (pixel ≥ threshold·255 → 255, else 0) or ``"dither"``.
        threshold: the cut for ``binarize="threshold"``, in 0..1.
        min_size: sources smaller than this on either side are refused (see module docs).
        max_pixels: sources whose header claims more pixels are refused before decoding.
    """

    size: int = 28
    crop: str = "center"
    color: bool = False
    background: tuple[int, int, int] = (255, 255, 255)
    binarize: str | None = None
    threshold: float = 0.5
    min_size: int = 8
    max_pixels: int = 64_000_000

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ValueError(f"size must be a whole number of pixels, got {self.size!r}")
        if not MIN_TARGET <= self.size <= MAX_TARGET:
            raise ValueError(f"size must be between {MIN_TARGET} and {MAX_TARGET} pixels, got {self.size}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}; got {self.crop!r}")
        if self.binarize not in BINARIZE:
            raise ValueError(f"binarize must be None, 'threshold' or 'dither'; got {self.binarize!r}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold!r}")
        self.threshold = float(self.threshold)
        self.color = bool(self.color)
        bg = tuple(self.background)
        if len(bg) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in bg):
            raise ValueError(f"background must be three integers 0..255, got {self.background!r}")
        self.background = bg  # type: ignore[assignment]  # lists from JSON become tuples
        if not isinstance(self.min_size, int) or self.min_size < 1:
            raise ValueError(f"min_size must be a positive whole number, got {self.min_size!r}")
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive whole number, got {self.max_pixels!r}")

    @property
    def channels(self) -> int:
        """1 for grayscale, 3 for RGB."""
        return 3 if self.color else 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (background becomes a list)."""
        d = asdict(self)
        d["background"] = list(self.background)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`.  Missing keys take defaults; unknown keys (written by a
        newer Harmonium) are ignored so old code can still open new checkpoints."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        """One line for people, e.g. ``28×28 grayscale, center crop``."""
        parts = [f"{self.size}×{self.size}", "RGB" if self.color else "grayscale", f"{self.crop} crop"]
        if self.binarize:
            parts.append(f"binarized ({self.binarize})")
        return ", ".join(parts)


@dataclass
class Rejected:
    """A file (or folder) that could not be used, and why, in words."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an accepted source file was, and anything notable done to it."""

    format: str
    mode: str
    width: int
    height: int
    notes: tuple[str, ...] = ()


@dataclass
class ImageSet:
    """The loaded set: ``images[i]`` came from ``paths[i]``.

    ``images`` is uint8, C-contiguous, shape ``[N, C, H, W]`` with C = 1 (gray) or 3 (RGB).
    """

    images: np.ndarray
    paths: list[str]
    rejected: list[Rejected]
    preprocess: Preprocess
    info: list[ImageInfo] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:  # the default would print every path
        return (f"ImageSet({len(self)} images {tuple(self.images.shape)} uint8, "
                f"{len(self.rejected)} rejected, {len(self.ignored)} ignored, "
                f"{self.preprocess.describe()})")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return (c, h, w)

    def as_float(self, indices: Sequence[int] | np.ndarray | slice | None = None) -> np.ndarray:
        """float32 in [0, 1] for the given images (a batch); ``None`` means all of them
        (that is a full float copy: 4× the uint8 size — prefer batches for big sets)."""
        batch = self.images if indices is None else self.images[indices]
        return batch.astype(np.float32) * np.float32(1 / 255)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as H×W (gray) or H×W×3 (RGB) uint8, handy for thumbnails."""
        a = self.images[i]
        return a[0] if a.shape[0] == 1 else np.ascontiguousarray(a.transpose(1, 2, 0))

    def pil_image(self, i: int) -> Image.Image:
        """Image ``i`` as a Pillow image (mode L or RGB)."""
        return Image.fromarray(self.image(i))


class LoadCancelled(Exception):
    """Raised by :func:`load_images` when its ``cancel`` event is set.  No partial set is
    returned; ``done``/``total`` say how far it got."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"loading cancelled after {done} of {total} files")
        self.done = done
        self.total = total


class _Refused(Exception):
    """A per-file problem whose reason is already worded for people."""


# ----------------------------------------------------------------------------- scanning


@dataclass
class _ScanResult:
    files: list[Path]
    rejected: list[Rejected]
    ignored: list[Path]


def _sort_key(p: Path) -> tuple[str, str]:
    s = str(p)
    return (s.casefold(), s)


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    return exc.strerror or str(exc) or type(exc).__name__


def _dir_key(folder: Path, st: os.stat_result) -> tuple[Any, ...]:
    """Identity of a real folder; some file systems report no inode numbers."""
    return (st.st_dev, st.st_ino) if st.st_ino else ("path", str(folder.resolve()))


#: Bounds of one walk: folder entries looked at, and image files found. A link to "/" or a
#: dropped home folder must not turn a drop into a walk of the whole disk.
MAX_ENTRIES = 1_000_000
MAX_FILES = 100_000


@dataclass
class _Walk:
    """What a walk knows as it goes: the real folders of the dropped sources (links may lead
    anywhere inside them), whether links out of them are followed, the folders already
    walked (so link loops end) and how much it may still look at."""

    roots: list[str]
    follow_links: bool
    max_entries: int
    max_files: int
    entries: int = 0
    files: int = 0
    seen_dirs: set[tuple[Any, ...]] = field(default_factory=set)
    stopped: bool = False

    def inside(self, real: str) -> bool:
        """Whether the real path ``real`` lies in one of the dropped folders."""
        for root in self.roots:
            base = root if root.endswith(os.sep) else root + os.sep
            if real == root or real.startswith(base):
                return True
        return False


_LOOP = "link loop (the link leads back to itself)"


def _link_target(path: Path) -> tuple[str | None, str | None]:
    """(the real path a link leads to, None) or (None, why it leads nowhere)."""
    try:
        return os.path.realpath(path, strict=True), None
    except OSError as exc:
        return None, _LOOP if exc.errno == errno.ELOOP else "broken link (its target does not exist)"
    except RuntimeError:  # older Pythons report a loop so
        return None, _LOOP


def _walk_folder(root: Path, out: _ScanResult, walk: _Walk,
                 candidates: list[tuple[Path, tuple[int, int] | None]]) -> None:
    """Depth-first walk of ``root``.  Links are followed only where they lead inside the dropped
    folders (anywhere with ``follow_links``); each real folder (device, inode) is visited at most
    once, so link loops end; the walk stops at ``MAX_ENTRIES`` entries or ``MAX_FILES`` image
    files, and says so.  Hidden entries (dot-names) are not images: hidden files are listed as
    ignored, hidden folders are not entered."""
    stack = [root]
    while stack and not walk.stopped:
        folder = stack.pop()
        try:
            key = _dir_key(folder, folder.stat())
            if key in walk.seen_dirs:
                continue  # a link back to a folder already walked (or a loop)
            walk.seen_dirs.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.rejected.append(Rejected(str(folder), f"cannot open folder: {_os_reason(exc)}"))
            continue
        subfolders = []
        for entry in entries:
            if walk.entries >= walk.max_entries or walk.files >= walk.max_files:
                limit = (f"{walk.max_files:,} image files" if walk.files >= walk.max_files
                         else f"{walk.max_entries:,} entries")
                out.rejected.append(Rejected(str(folder), f"not walked to the end: the walk stops after {limit}; "
                                             "drop a smaller folder"))
                walk.stopped = True
                return
            walk.entries += 1
            path = folder / entry.name
            try:
                link = entry.is_symlink()
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                loop = exc.errno == errno.ELOOP
                out.rejected.append(Rejected(str(path), _LOOP if loop else f"cannot inspect: {_os_reason(exc)}"))
                continue
            if entry.name.startswith("."):
                if not is_dir:
                    out.ignored.append(path)
                continue
            if link and (is_dir or (is_file and _is_image_name(entry.name))):
                target, why = _link_target(path)
                if target is None:
                    out.rejected.append(Rejected(str(path), why or "broken link"))
                    continue
                if not walk.follow_links and not walk.inside(target):
                    what = "folder" if is_dir else "file"
                    out.rejected.append(Rejected(str(path), f"link to a {what} outside the dropped folders "
                                                 f"({target}): not followed"))
                    continue
            if is_dir:
                subfolders.append((link, path))
            elif not _is_image_name(entry.name):
                out.ignored.append(path)
            elif is_file:
                walk.files += 1
                candidates.append((path, _file_key(path)))
            elif link:
                out.rejected.append(Rejected(str(path), _link_target(path)[1] or "broken link"))
            else:
                out.rejected.append(Rejected(str(path), "not a regular file"))
        # Real subfolders before linked ones: a folder reachable both ways is listed by its own path.
        stack.extend(path for _, path in reversed(sorted(subfolders, key=lambda s: s[0])))


def _file_key(path: Path) -> tuple[int, int] | None:
    """Identity of the file behind ``path`` (through links), for de-duplication."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st.st_ino else None


def _walk(sources: Iterable[str | os.PathLike[str]], follow_links: bool = False) -> _ScanResult:
    out = _ScanResult([], [], [])
    sources = list(sources)
    roots = []
    for src in sources:  # the dropped folders, as real paths: links may lead anywhere inside them
        try:
            if os.path.isdir(src):
                roots.append(os.path.realpath(src))
        except (OSError, ValueError):
            pass
    walk = _Walk(roots, follow_links, MAX_ENTRIES, MAX_FILES)
    candidates: list[tuple[Path, tuple[int, int] | None]] = []
    for src in sources:
        path = Path(src)
        try:
            st = path.stat()
        except (OSError, ValueError) as exc:
            if isinstance(exc, FileNotFoundError) and path.is_symlink():
                out.rejected.append(Rejected(str(path), "broken link (its target does not exist)"))
            elif isinstance(exc, OSError):
                out.rejected.append(Rejected(str(path), _os_reason(exc)))
            else:
                out.rejected.append(Rejected(str(path), "not a valid path"))
            continue
        if stat.S_ISDIR(st.st_mode):
            if not walk.stopped:
                _walk_folder(path, out, walk, candidates)
        elif stat.S_ISREG(st.st_mode):
            # Named explicitly: always tried, whatever its extension; content decides.
            candidates.append((path, (st.st_dev, st.st_ino) if st.st_ino else None))
        else:
            out.rejected.append(Rejected(str(path), "not a regular file or folder"))
    _dedupe(candidates, out)
    out.ignored.sort(key=_sort_key)
    return out


def _dedupe(candidates: list[tuple[Path, tuple[int, int] | None]], out: _ScanResult) -> None:
    """Sort candidates by path and keep one path per real file: the first that is not itself
    a link (else the first); the others are reported as duplicates."""
    candidates.sort(key=lambda c: _sort_key(c[0]))
    keeper: dict[tuple[int, int], Path] = {}
    for path, key in candidates:
        if key is None:
            continue
        held = keeper.get(key)
        if held is None or (held.is_symlink() and not path.is_symlink()):
            keeper[key] = path
    for path, key in candidates:
        if key is not None and keeper[key] != path:
            out.rejected.append(Rejected(
                str(path), f"same file as {keeper[key]} (reached twice, e.g. through a link); loaded once"))
        else:
            out.files.append(path)


def _as_sources(sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list:
    if isinstance(sources, (str, os.PathLike)):
        return [sources]
    return list(sources)


def scan(sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str], *,
         follow_links: bool = False) -> tuple[list[Path], list[Rejected]]:
    """Find candidate image files under ``sources`` (files and folders, recursive).

    Folders contribute files whose name ends in an image extension (any case); files named
    directly are always candidates.  Order is deterministic (sorted by path).  Missing sources,
    unreadable folders, broken links, link loops, links that lead out of the dropped folders
    (unless ``follow_links``) and duplicates (one file reached twice through links) come back
    as :class:`Rejected`; so does a walk cut short at ``MAX_ENTRIES`` entries or ``MAX_FILES``
    image files.  Nothing raises.
    """
    result = _walk(_as_sources(sources), follow_links)
    return result.files, result.rejected


# ----------------------------------------------------------------------------- decoding


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


# ----------------------------------------------------------------------------- loading


def default_workers() -> int:
    """Decode threads used when ``workers`` is None: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _compact(images: np.ndarray, keep: list[int]) -> np.ndarray:
    """Move the kept rows to the front, in order, and shrink the array in place (no copy of
    the whole set).  Safe because no views of ``images`` outlive the decoding tasks."""
    for dst, src in enumerate(keep):
        if dst != src:
            images[dst] = images[src]
    if len(keep) != images.shape[0]:
        images.resize((len(keep), *images.shape[1:]), refcheck=False)
    return images


def load_images(
    sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    preprocess: Preprocess | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    follow_links: bool = False,
) -> ImageSet:
    """Scan ``sources`` and decode every candidate into one uint8 ``[N, C, H, W]`` array.

    Args:
        sources: files and/or folders (a single path is accepted too).
        preprocess: how to turn each source into a training image (default ``Preprocess()``).
        progress: called as ``progress(done, total)`` on the *calling* thread: once with
            ``(0, total)`` before decoding, then whenever files finish (``done`` only grows,
            possibly by several at a time, and ends at ``total`` unless cancelled).
        cancel: when set (from any thread), loading stops promptly and
            :class:`LoadCancelled` is raised; no partial set is returned.
        workers: decoding threads (default :func:`default_workers`); 1 decodes inline.
        follow_links: follow symbolic links that lead out of the dropped folders too (by
            default such links are rejected, with their target, and not read: a link to "/"
            in a dropped folder must not walk the whole disk). Links inside are followed.

    Per-file problems never raise: they end up in ``ImageSet.rejected`` with a reason.
    """
    pp = preprocess if preprocess is not None else Preprocess()
    if not isinstance(pp, Preprocess):
        raise TypeError(f"preprocess must be a Preprocess, got {type(pp).__name__}")
    found = _walk(_as_sources(sources), follow_links)
    files = found.files
    total = len(files)
    if cancel is not None and cancel.is_set():
        raise LoadCancelled(0, total)
    images = np.empty((total, pp.channels, pp.size, pp.size), dtype=np.uint8)
    results: list[ImageInfo | Rejected | None] = [None] * total
    n_workers = default_workers() if workers is None else max(1, int(workers))
    if progress is not None:
        progress(0, total)
    if n_workers == 1 or total <= 1:
        done = _run_inline(files, pp, images, results, progress, cancel)
    else:
        done = _run_pool(files, pp, images, results, progress, cancel, n_workers)
    if done < total:
        raise LoadCancelled(done, total)

    keep = [i for i, r in enumerate(results) if isinstance(r, ImageInfo)]
    rejected = found.rejected + [r for r in results if isinstance(r, Rejected)]
    rejected.sort(key=lambda r: _sort_key(Path(r.path)))
    return ImageSet(
        images=_compact(images, keep),
        paths=[str(files[i]) for i in keep],
        rejected=rejected,
        preprocess=pp,
        info=[results[i] for i in keep],  # type: ignore[misc]
        ignored=[str(p) for p in found.ignored],
    )


def _run_inline(files: list[Path], pp: Preprocess, images: np.ndarray, results: list,
                progress: ProgressFn | None, cancel: threading.Event | None) -> int:
    for i, path in enumerate(files):
        if cancel is not None and cancel.is_set():
            return i
        results[i] = _load_one(path, pp, images[i])
        if progress is not None:
            progress(i + 1, len(files))
    return len(files)


def _run_pool(files: list[Path], pp: Preprocess, images: np.ndarray, results: list,
              progress: ProgressFn | None, cancel: threading.Event | None, n_workers: int) -> int:
    """Decode with a bounded window of in-flight tasks so cancellation is prompt and the
    bookkeeping stays small; results are collected on the calling thread."""
    total = len(files)
    window = n_workers * 4
    next_index = 0
    done = 0
    pending: dict[Future, int] = {}
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="harmonium-ingest") as pool:
        try:
            while True:
                while next_index < total and len(pending) < window:
                    fut = pool.submit(_load_one, files[next_index], pp, images[next_index])
                    pending[fut] = next_index
                    next_index += 1
                if not pending:
                    break
                finished, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for fut in finished:
                    results[pending.pop(fut)] = fut.result()
                    done += 1
                if finished and progress is not None:
                    progress(done, total)
                if cancel is not None and cancel.is_set():
                    return done
        finally:
            for fut in pending:
                fut.cancel()
    return done


# ----------------------------------------------------------------------------- augmentation


def augment(
    images: np.ndarray,
    n: int,
    rng: np.random.Generator | int | None = None,
    *,
    hflip: bool = True,
    vflip: bool = False,
    max_shift: float = 0.125,
    max_zoom: float = 0.15,
) -> np.ndarray:
    """``n`` new images made from random picks of ``images`` ([N, C, H, W] uint8), for tiny sets.

    Each pick is optionally mirrored (``hflip``; ``vflip`` is off by default because most
    pictures have an up), zoomed in by up to ``max_zoom`` (a random crop scaled back up) and
    shifted by up to ``max_shift`` of the side (edges repeat into the gap).  Sampling is nearest
    neighbour, so binarized sets stay exactly 0/255.  Returns a new uint8 [n, C, H, W] array.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError("augment needs a non-empty [N, C, H, W] array")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    _, c, h, w = images.shape
    out = np.empty((n, c, h, w), dtype=images.dtype)
    rows, cols = np.arange(h), np.arange(w)
    for k in range(n):
        src = images[rng.integers(images.shape[0])]
        zoom = 1.0 + rng.uniform(0.0, max_zoom)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        dy = rng.uniform(-max_shift, max_shift) * h
        dx = rng.uniform(-max_shift, max_shift) * w
        ry = np.clip(np.rint((rows - cy) / zoom + cy - dy), 0, h - 1).astype(np.intp)
        rx = np.clip(np.rint((cols - cx) / zoom + cx - dx), 0, w - 1).astype(np.intp)
        if hflip and rng.random() < 0.5:
            rx = rx[::-1]
        if vflip and rng.random() < 0.5:
            ry = ry[::-1]
        out[k] = src[:, ry[:, None], rx[None, :]]
    return out


# ----------------------------------------------------------------------------- demo set


def demo_folder() -> Path:
    """The built-in demo set (``resources/demo``), made by ``resources/demo/make_demo.py``."""
    return _ROOT / "resources" / "demo"


def load_demo(preprocess: Preprocess | None = None, **kwargs: Any) -> ImageSet:
    """Load the built-in demo images (keyword arguments go to :func:`load_images`)."""
    folder = demo_folder()
    files = sorted(p for p in folder.glob("*") if p.is_file() and _is_image_name(p.name))
    if not files:
        raise FileNotFoundError(
            f"the demo images are missing from {folder}; make them with "
            f"`python {folder / 'make_demo.py'}`")
    return load_images(files, preprocess, **kwargs)


# ----------------------------------------------------------------------------- report


def display_path(path: str | os.PathLike[str], *, one_line: bool = True) -> str:
    """A path as text that any terminal or UTF-8 file takes: bytes of a file name that are not
    UTF-8 become ``\\xNN`` (a name from a Latin-1 disk would otherwise make printing fail on a
    strict UTF-8 stdout and the JSON report invalid), and with ``one_line`` characters that
    are not printable (a newline, a tab, an escape) become ``\\n``, ``\\t``, ``\\x1b``, so
    that a file name cannot forge lines of a report."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        raw = text
    else:
        try:
            raw = os.fsencode(text)
        except UnicodeError:  # a lone surrogate that no file name bytes make
            raw = text.encode("utf-8", "backslashreplace")
    text = raw.decode("utf-8", "backslashreplace")
    if one_line and not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text


def _report_dict(result: ImageSet, sources: list) -> dict[str, Any]:
    """The JSON report; every path through :func:`display_path` (whole: JSON escapes the
    control characters itself), so the JSON is valid UTF-8 whatever the file names."""
    show = lambda p: display_path(p, one_line=False)  # noqa: E731
    return {
        "sources": [show(s) for s in sources],
        "preprocess": result.preprocess.to_dict(),
        "counts": {"accepted": len(result), "rejected": len(result.rejected), "ignored": len(result.ignored)},
        "array": {"shape": list(result.images.shape), "dtype": str(result.images.dtype),
                  "bytes": int(result.images.nbytes)},
        "accepted": [
            {"path": show(p), "format": i.format, "mode": i.mode, "width": i.width, "height": i.height,
             "notes": list(i.notes)}
            for p, i in zip(result.paths, result.info, strict=True)
        ],
        "rejected": [{"path": show(r.path), "reason": show(r.reason)} for r in result.rejected],
        "ignored": [show(p) for p in result.ignored],
    }


def _report_text(result: ImageSet, sources: list) -> str:
    """The text report: one line per file, every path and reason through :func:`display_path`."""
    pp = result.preprocess
    show = display_path
    lines = [
        f"Scanned {', '.join(show(s) for s in sources) or '(nothing)'}",
        f"Preprocess: {pp.describe()}; refuse smaller than {pp.min_size} px "
        f"or larger than {_human_pixels(pp.max_pixels)}",
        f"{len(result)} accepted, {len(result.rejected)} rejected, "
        f"{len(result.ignored)} ignored (not image files)",
        "",
        f"Accepted ({len(result)}):",
    ]
    for p, i in zip(result.paths, result.info, strict=True):
        note = f"  [{'; '.join(i.notes)}]" if i.notes else ""
        lines.append(f"  {show(p)}  {i.format} {i.width}×{i.height} {i.mode}{note}")
    lines += ["", f"Rejected ({len(result.rejected)}):"]
    lines += [f"  {show(r.path)}: {show(r.reason)}" for r in result.rejected] or ["  (none)"]
    if result.ignored:
        lines += ["", f"Ignored, not image files by name ({len(result.ignored)}):"]
        lines += [f"  {show(p)}" for p in result.ignored]
    if len(result):
        n, c, h, w = result.images.shape
        size = result.images.nbytes
        human = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"
        lines += ["", f"Array: {n}×{c}×{h}×{w} uint8 ({human})"]
    return "\n".join(lines)


def scan_report(
    sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    preprocess: Preprocess | None = None,
    as_json: bool = False,
    **kwargs: Any,
) -> str:
    """What ``harmonium scan FOLDER [--json]`` prints: every accepted file (with its format,
    size and what was done to it), every rejected file with its reason, and the ignored files.

    It decodes everything (truncated files only show up when decoded); keyword arguments
    (progress, cancel, workers) go to :func:`load_images`.
    """
    srcs = _as_sources(sources)
    result = load_images(srcs, preprocess, **kwargs)
    if as_json:
        return json.dumps(_report_dict(result, srcs), indent=2, ensure_ascii=False)
    return _report_text(result, srcs)
