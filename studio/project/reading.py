"""Opening a project (:func:`open_project`, :func:`read_manifest`): everything validated, bounded
in memory and time, before the session is touched.  See :mod:`studio.project`."""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np

from studio.canvas import MAX_SCALED_SIDE, Canvas, Layer
from studio.project.data import (
    DatasetRef,
    MANIFEST,
    PROJECT_FORMAT,
    PROJECT_VERSION,
    ProjectData,
    ProjectError,
    ProjectModel,
)
from studio.project.saving import _safe_name


# What opening a project may cost, whatever its bytes (see open_project).  Each is far
# beyond what the studio writes; a file past one is damaged or hostile.
#: A manifest larger than this is refused (it is never inflated past it).
MAX_MANIFEST_BYTES = 64 << 20
#: Members of the archive, and the size of its central directory (parsed all at once).
MAX_MEMBERS = 50_000
MAX_DIRECTORY_BYTES = 16 << 20
#: Layers of a canvas (a project with more is refused) and frames of one layer.
MAX_LAYERS = 10_000
MAX_FRAMES = 4_096
#: Models of a project, and the size of one model's checkpoint.
MAX_MODELS = 256
MAX_MODEL_BYTES = 2 << 30
#: Bytes unpacked from the archive in all (declared and read), and bytes of decoded pixels.
MAX_UNPACKED_BYTES = 8 << 30
MAX_PIXEL_BYTES = 2 << 30
#: A member larger than RATIO_FREE_BYTES may inflate at most MAX_RATIO times (the studio
#: stores models and pixels uncompressed; only project.json is deflated, about 10×).
MAX_RATIO = 100
RATIO_FREE_BYTES = 1 << 20
#: Lists and objects in project.json nest at most this deep (later steps recurse over them).
MAX_JSON_DEPTH = 64
#: A layer's x and y lie within ± this many pixels.
MAX_OFFSET = 1 << 24
#: Dataset sources, and informative image paths, kept from a project's dataset reference.
MAX_SOURCES = 10_000
MAX_DATASET_PATHS = 1_000_000
_PIXEL_DTYPES = ("uint8", "uint16", "bool", "float16", "float32", "float64")


# --------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------
#
# Whatever its bytes, opening a file is bounded: only a regular file is opened
# (a FIFO or a device could block or never end), the zip's central directory is
# sized before it is parsed, every member is streamed through a cap (its own,
# and the whole project's) and never inflated before it is checked, and the
# pixels a layer declares are counted before they are decoded.  A member that is
# damaged costs only what it belongs to: a layer or a model is skipped and
# reported in ``ProjectData.problems``; only a broken archive, manifest or canvas
# makes the whole project unopenable.


class _Bad(Exception):
    """One part of a project (a layer, a model, a member) cannot be used.

    ``reason`` completes a sentence about that part: "is missing from the project
    (models/a.safetensors)".  It becomes a :class:`ProjectError` when the part is
    essential (the manifest) and a line of ``ProjectData.problems`` when the part
    can be skipped (a layer, a model)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Budget:
    """What opening one project may still read (bytes unpacked) and decode (pixel bytes)."""

    def __init__(self) -> None:
        self.unpacked = 0
        self.pixels = 0


def _fail(path: Path, why: str) -> ProjectError:
    return ProjectError(f"Cannot open {path.name}: {why}")


def _skipped(what: str, reason: str) -> str:
    """One line of ``ProjectData.problems``: "Skipped the model “X”: it is damaged (…)."."""
    return f"Skipped {what}: it {reason.rstrip('.')}."


def _size(n: int) -> str:
    """``n`` bytes for people: "2 GiB", "64 MiB", "288 bytes"."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.3g} {unit}"
    return f"{n} bytes"


def _short(text: Any, limit: int = 80) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _open_regular_file(path: Path) -> BinaryIO:
    """The project file opened for reading, refused at once unless it is a regular file.

    A FIFO would block ``open()`` until a writer comes (forever: the studio could then
    never quit) and a device such as ``/dev/zero`` never ends, so the file is stat'ed
    first and opened with ``O_NONBLOCK`` (a FIFO swapped in after the stat cannot block
    either), then checked again on the open descriptor."""
    not_regular = "it is not a regular file (a pipe, a device or a socket); a project is a .harmonium file."
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise _fail(path, "the file does not exist.") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise _fail(path, f"it cannot be read ({getattr(exc, 'strerror', None) or exc}).") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(path, "it is a folder, not a project file.")
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, not_regular)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _fail(path, f"it cannot be read ({exc.strerror or exc}).") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _fail(path, not_regular)
        if st.st_size == 0:
            raise _fail(path, "the file is empty.")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@contextmanager
def _open_archive(path: Path) -> Iterator[zipfile.ZipFile]:
    """The project's zip, its central directory sized before it is parsed (zipfile
    parses it all at once) and its members counted, named uniquely and sized."""
    with _open_regular_file(path) as f:
        try:
            head = f.read(4)
            # zipfile's own reader of the end-of-central-directory record (what
            # ZipFile() itself calls first): it tells the directory's size and entries.
            endrec = zipfile._EndRecData(f)  # type: ignore[attr-defined]
        except (OSError, ValueError, struct.error) as exc:
            raise _fail(path, f"it cannot be read ({exc}).") from None
        if not endrec:
            if head == b"PK\x03\x04":
                raise _fail(path, "the file is truncated or damaged (its zip directory is missing).")
            raise _fail(path, "it is not a Harmonium project (not a zip archive).")
        if endrec[zipfile._ECD_SIZE] > MAX_DIRECTORY_BYTES or endrec[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:  # type: ignore[attr-defined]
            raise _fail(path, f"it holds more than {MAX_MEMBERS:,} files; the file is damaged or hostile.")
        try:
            zf = zipfile.ZipFile(f, "r")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error,
                NotImplementedError, OverflowError) as exc:
            raise _fail(path, f"the file is truncated or damaged ({_short(exc, 200)}).") from None
        with zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise _fail(path, f"it holds more than {MAX_MEMBERS:,} files; the file is damaged or hostile.")
            if len(zf.NameToInfo) != len(infos):
                dup = next(n for n, c in Counter(i.filename for i in infos).items() if c > 1)
                raise _fail(path, f"it holds two files named {_short(dup)!r}; the file is damaged or was tampered with.")
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES:
                raise _fail(path, f"its contents would unpack to more than {_size(MAX_UNPACKED_BYTES)}; "
                                  "the file is damaged or hostile.")
            yield zf


class _Members:
    """Reads members of the open archive through the caps, checked against the manifest's SHA-256.

    A member is never inflated before it is checked: its declared size and
    compression ratio are checked first, then it is streamed in chunks of at most
    ``CHUNK`` bytes, so that a member declaring 200 B and inflating to 1 GB costs
    at most its cap plus one chunk (``zipfile`` itself stops at the declared size
    and then fails the CRC)."""

    CHUNK = 1 << 20

    def __init__(self, zf: zipfile.ZipFile, path: Path, files: Mapping[str, str] | None, budget: _Budget) -> None:
        self.zf, self.path, self.files, self.budget = zf, path, files, budget

    def _info(self, name: str, limit: int) -> zipfile.ZipInfo:
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise _Bad(f"is missing from the project ({_short(name)})") from None
        if self.files is not None and name not in self.files:
            raise _Bad(f"is not listed in the project's manifest ({_short(name)})")
        if info.flag_bits & 0x1:
            raise _Bad(f"is encrypted ({_short(name)})")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Bad(f"is compressed in a way Harmonium does not write ({_short(name)})")
        if info.file_size > limit:
            raise _Bad(f"is implausibly large ({_short(name)}: {info.file_size:,} bytes)")
        if info.file_size > RATIO_FREE_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise _Bad(f"is a compression bomb ({_short(name)} would inflate {info.file_size // max(info.compress_size, 1):,}×)")
        return info

    def chunks(self, name: str, limit: int) -> Iterator[bytes]:
        """The member's bytes in chunks; raises :class:`_Bad` (or :class:`ProjectError`
        when the whole project's budget is spent) and checks the SHA-256 at the end."""
        info = self._info(name, limit)
        h = hashlib.sha256()
        size = 0
        try:
            with self.zf.open(info) as member:
                while True:
                    chunk = member.read(min(self.CHUNK, limit + 1 - size))
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise _Bad(f"is larger than it declares ({_short(name)})")
                    self.budget.unpacked += len(chunk)
                    if self.budget.unpacked > MAX_UNPACKED_BYTES:
                        raise _fail(self.path, f"its contents unpack to more than {_size(MAX_UNPACKED_BYTES)}; "
                                               "the file is damaged or hostile.")
                    h.update(chunk)
                    yield chunk
        except ProjectError:  # the whole project's budget is spent (a ValueError: let it through)
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError, NotImplementedError,
                struct.error) as exc:
            raise _Bad(f"is damaged ({_short(name)}: {_short(exc, 200)})") from None
        except OSError as exc:
            raise _Bad(f"cannot be read ({_short(name)}: {exc.strerror or exc})") from None
        if self.files is not None and h.hexdigest() != self.files[name]:
            raise _Bad(f"is damaged or was modified: its checksum does not match ({_short(name)})")

    def read(self, name: str, limit: int) -> bytes:
        return b"".join(self.chunks(name, limit))

    def extract(self, name: str, limit: int, target: Path) -> None:
        """Stream the member into ``target`` (removed again on any failure)."""
        try:
            with open(target, "wb") as out:
                for chunk in self.chunks(name, limit):
                    out.write(chunk)
        except OSError as exc:
            target.unlink(missing_ok=True)
            raise _Bad(f"could not be extracted ({exc.strerror or exc})") from None
        except BaseException:
            target.unlink(missing_ok=True)
            raise


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``project.json`` of a project (format, version and shape checked)."""
    path = Path(path)
    try:
        with _open_archive(path) as zf:
            return _manifest(zf, path)
    except MemoryError:
        raise _fail(path, "it needs more memory than is free.") from None


def _nesting_ok(value: Any, limit: int) -> bool:
    """True when no list or object in ``value`` is nested deeper than ``limit`` (checked
    without recursion, so that no later step (saving, exporting) recurses too deep)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            stack.extend((x, depth + 1) for x in (item.values() if isinstance(item, dict) else item))
    return True


def _manifest(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    members = _Members(zf, path, None, _Budget())
    if MANIFEST not in zf.NameToInfo:
        raise _fail(path, "it is not a Harmonium project (project.json is missing).")
    try:
        raw = members.read(MANIFEST, MAX_MANIFEST_BYTES)
    except _Bad as exc:
        raise _fail(path, f"its project.json {exc.reason}.") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, an int of too many digits
        raise _fail(path, f"its project.json is not valid JSON ({_short(exc, 200)}).") from None
    except RecursionError:
        raise _fail(path, "its project.json is nested too deeply; the file is damaged or hostile.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PROJECT_FORMAT:
        raise _fail(path, "it is not a Harmonium project (project.json describes something else).")
    if not _nesting_ok(manifest, MAX_JSON_DEPTH):
        raise _fail(path, "its project.json is nested too deeply; the file is damaged or hostile.")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _fail(path, "its project.json has no valid format version.")
    if version > PROJECT_VERSION:
        raise _fail(path, f"it was saved by a newer Harmonium (project format {version}; this version "
                          f"reads up to {PROJECT_VERSION}). Update Harmonium to open it.")
    for key, kind in (("files", dict), ("models", list), ("canvas", dict)):
        if not isinstance(manifest.get(key), kind):
            raise _fail(path, f"its project.json is incomplete ('{key}' is missing or malformed).")
    if not isinstance(manifest["canvas"].get("layers"), list):
        raise _fail(path, "its project.json is incomplete (the canvas has no layer list).")
    return manifest


def _pixel_limit(shape: list[int], dtype: str) -> int:
    """Bytes the encoded pixels of this shape may take: the raw size plus headroom
    (a PNG of noise is a little larger than its pixels; a .npy has a header)."""
    raw = shape[0] * shape[1] * shape[2] * np.dtype(dtype).itemsize
    return raw + raw // 8 + (64 << 10)


def _check_pixel_ref(ref: Any) -> tuple[str, list[int], str]:
    """``(member, shape, dtype)`` of a layer's pixel reference, or :class:`_Bad`."""
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
        raise _Bad("has pixels that project.json does not describe")
    shape, dtype = ref.get("shape"), ref.get("dtype")
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
            or not (1 <= shape[0] <= MAX_SCALED_SIDE and 1 <= shape[1] <= MAX_SCALED_SIDE and shape[2] in (1, 2, 3, 4))
            or dtype not in _PIXEL_DTYPES):
        raise _Bad("has pixels of an invalid size or type in project.json")
    return ref["file"], shape, dtype


def _decode_npy(data: bytes, shape: list[int], dtype: str) -> np.ndarray:
    """A ``.npy`` member's array, its header checked against the declared shape and
    dtype *before* anything is allocated (``np.load`` allocates what the header says)."""
    fmt = np.lib.format
    buf = io.BytesIO(data)
    version = fmt.read_magic(buf)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"unsupported .npy version {version}")
    read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    try:
        got_shape, fortran, got_dtype = read_header(buf)
    except Exception as exc:  # noqa: BLE001 - numpy parses the header as Python (tokenize, ast): any error
        raise ValueError(f"its .npy header is invalid ({type(exc).__name__})") from None
    if str(got_dtype) != dtype or got_dtype.hasobject:
        raise ValueError(f"the pixels are {got_dtype}, expected {dtype}")
    count = shape[0] * shape[1] * shape[2]
    if math.prod(got_shape) != count:
        raise ValueError(f"the pixels are {list(got_shape)}, expected {shape}")
    offset = buf.tell()
    if len(data) - offset != count * got_dtype.itemsize:
        raise ValueError("the pixel data is truncated or too long")
    a = np.frombuffer(data, dtype=got_dtype, count=count, offset=offset)
    a = a.reshape(got_shape, order="F" if fortran else "C")
    if a.dtype == np.bool_:
        a = a.view(np.uint8) != 0  # only 0 and 1 are booleans
    return a


def _decode_pixels(data: bytes, file: str, shape: list[int], dtype: str) -> np.ndarray:
    """A layer's pixels from its member's bytes (PNG or ``.npy``), of exactly the declared
    shape and dtype, read-only; raises :class:`_Bad`."""
    try:
        if file.endswith(".png"):
            from PIL import Image

            if dtype != "uint8":
                raise ValueError("a PNG layer must be uint8")
            with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
                if im.size != (shape[1], shape[0]):
                    raise ValueError(f"the PNG is {im.size[0]}×{im.size[1]}, expected {shape[1]}×{shape[0]}")
                im.load()
                a = np.asarray(im)
        elif file.endswith(".npy"):
            a = _decode_npy(data, shape, dtype)
        else:
            raise ValueError("unknown pixel file type")
        a = a.reshape(shape) if a.size == shape[0] * shape[1] * shape[2] else a
        if tuple(a.shape) != tuple(shape) or str(a.dtype) != dtype:
            raise ValueError(f"the pixels are {a.dtype} {list(a.shape)}, expected {dtype} {shape}")
    except (OSError, ValueError, SyntaxError, EOFError, TypeError, struct.error, zlib.error) as exc:
        raise _Bad(f"cannot be decoded ({_short(file)}: {_short(exc, 200)})") from None
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


#: The layer settings project.json may give, with the JSON types each must have.
_INT = (int,)
_NUMBER = (int, float)
_LAYER_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,), "name": (str,), "provenance": (dict,), "blend_mode": (str,), "opacity": _NUMBER,
    "visible": (bool,), "x": _INT, "y": _INT, "scale": _NUMBER, "resample": (str,), "tiling": (str, type(None)),
    "colourise": (dict, list, type(None)), "invert": (bool,), "levels": (dict, list, type(None)),
    "frame_index": _INT,
}


def _layer_settings(entry: dict[str, Any]) -> dict[str, Any]:
    """The layer's settings from its manifest entry, each of its JSON type; raises :class:`_Bad`."""
    settings = {k: entry[k] for k in _LAYER_TYPES if k in entry}
    for key, value in settings.items():
        types = _LAYER_TYPES[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise _Bad(f"has an invalid {key} in project.json")
    layer_id = settings.get("id")  # opaque (any characters: pixel members are not named after it)
    if not isinstance(layer_id, str) or not 1 <= len(layer_id) <= 1000:
        raise _Bad("has no valid id")
    for key in ("x", "y"):
        if abs(settings.get(key, 0)) > MAX_OFFSET:
            raise _Bad(f"is placed implausibly far away ({key} = {settings[key]})")
    return settings


def _layer_label(entry: Any, index: int) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"layer “{_short(name)}”" if isinstance(name, str) and name else f"layer {index + 1}"


class _LayerReader:
    """Builds the layers of the manifest, decoding each pixel member once (layers share
    pixels: a duplicated layer, an animation's first frame) within the pixel budget."""

    def __init__(self, members: _Members, budget: _Budget) -> None:
        self.members, self.budget = members, budget
        self.pixels: dict[str, np.ndarray | _Bad] = {}

    def load(self, ref: Any) -> np.ndarray:
        name, shape, dtype = _check_pixel_ref(ref)
        got = self.pixels.get(name)
        if got is None:
            try:
                need = shape[0] * shape[1] * shape[2] * np.dtype(dtype).itemsize
                if self.budget.pixels + need > MAX_PIXEL_BYTES:
                    raise _Bad(f"would take the project's layers past {_size(MAX_PIXEL_BYTES)} of pixels")
                got = _decode_pixels(self.members.read(name, _pixel_limit(shape, dtype)), name, shape, dtype)
                self.budget.pixels += need
            except _Bad as exc:
                got = exc
            self.pixels[name] = got
        if isinstance(got, _Bad):
            raise got
        if list(got.shape) != shape or str(got.dtype) != dtype:
            raise _Bad(f"has pixels that do not match their description ({_short(name)})")
        return got

    def layer(self, entry: Any) -> Layer:
        if not isinstance(entry, dict):
            raise _Bad("is malformed in project.json")
        settings = _layer_settings(entry)
        raw_frames = entry.get("frames", [])
        if not isinstance(raw_frames, list) or len(raw_frames) > MAX_FRAMES:
            raise _Bad("has malformed frames in project.json")
        frames = tuple(self.load(ref) for ref in raw_frames)
        src = entry.get("source")
        if isinstance(src, dict) and "frame" in src and "file" not in src:
            if not frames or src.get("frame") != 0 or isinstance(src.get("frame"), bool):
                raise _Bad("refers to a frame it does not have")
            source = frames[0]
        else:
            source = self.load(src)
        try:
            return Layer(source=source, frames=frames, **settings)
        except (TypeError, ValueError, KeyError, IndexError, OverflowError, AttributeError) as exc:
            raise _Bad(f"has invalid settings ({_short(exc, 200)})") from None


def _build_canvas(manifest: dict[str, Any], members: _Members, budget: _Budget, path: Path,
                  problems: list[str]) -> Canvas:
    """The canvas and every layer that can be read; a layer that cannot (its pixels missing,
    damaged or tampered with, its settings invalid, its id taken) is skipped and reported."""
    c = manifest["canvas"]
    width, height, background = c.get("width"), c.get("height"), c.get("background")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (width, height)):
        raise _fail(path, "its canvas settings are invalid (the size is not a whole number of pixels).")
    if background is not None and not isinstance(background, (str, list)):
        raise _fail(path, "its canvas settings are invalid (the background is not a colour).")
    try:
        canvas = Canvas(width, height, background)
    except (TypeError, ValueError, OverflowError, IndexError) as exc:
        raise _fail(path, f"its canvas settings are invalid ({_short(exc, 200)}).") from None
    entries = c["layers"]
    if len(entries) > MAX_LAYERS:
        raise _fail(path, f"it has {len(entries):,} layers; Harmonium opens at most {MAX_LAYERS:,}.")
    reader = _LayerReader(members, budget)
    layers: list[Layer] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        what = f"the {_layer_label(entry, i)}"
        try:
            layer = reader.layer(entry)
            if layer.id in seen:
                raise _Bad(f"has the id of another layer ({_short(layer.id)})")
        except _Bad as exc:
            problems.append(_skipped(what, exc.reason))
            continue
        seen.add(layer.id)
        layers.append(layer)
    # All layers in one step: adding them one by one diffs and copies the whole stack
    # each time (10,000 layers took minutes).  The canvas is new: no history, no listener.
    canvas._apply_state(dataclasses.replace(canvas.snapshot(), layers=tuple(layers)))
    canvas.clear_history()
    return canvas


def _clean_path_list(raw: Any, limit: int = MAX_SOURCES) -> list[str] | None:
    """``raw`` as a list of usable path strings, or None when it is not one."""
    if not isinstance(raw, list) or len(raw) > limit:
        return None
    if not all(isinstance(s, str) and s and "\x00" not in s and len(s) <= 4096 for s in raw):
        return None
    return list(raw)


def _build_dataset(raw: Any, problems: list[str]) -> DatasetRef | None:
    """The dataset reference, or None (reported) when it is malformed: the canvas and the
    models do not need it.  Nothing here reads a dataset image (see :meth:`ProjectData.outside_sources`)."""
    if raw is None:
        return None
    lost = "Skipped the project's dataset reference: "
    if not isinstance(raw, dict):
        problems.append(lost + "it is malformed.")
        return None
    sources = _clean_path_list(raw.get("sources", []))
    if sources is None:
        problems.append(lost + "its list of image sources is malformed.")
        return None
    rel_raw = raw.get("sources_relative") or []
    rel: list[str | None] = []
    if isinstance(rel_raw, list) and len(rel_raw) == len(sources):
        rel = [r if isinstance(r, str) and r and "\x00" not in r and len(r) <= 4096 else None for r in rel_raw]
    pp = raw.get("preprocess") or {}
    if not isinstance(pp, dict):
        problems.append(lost + "its preprocessing is malformed.")
        return None
    from studio.dataset import Preprocess

    try:
        pp = Preprocess.from_dict(pp).to_dict()
    except (TypeError, ValueError, KeyError, OverflowError, AttributeError) as exc:
        problems.append(lost + f"its preprocessing is invalid ({_short(exc, 200)}).")
        return None
    paths = _clean_path_list(raw.get("paths") or [], MAX_DATASET_PATHS) or []
    count = raw.get("count", 0)
    count = count if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= 1 << 40 else 0
    return DatasetRef(sources=sources, preprocess=pp, paths=paths, count=count, sources_relative=rel)


def _build_models(manifest: dict[str, Any], members: _Members, path: Path, extract_dir: Path,
                  problems: list[str]) -> list[ProjectModel]:
    """Every model that can be read; one that cannot (missing, damaged, tampered with,
    an invalid checkpoint) is skipped and reported: the others and the canvas still open."""
    from models.checkpoint import CheckpointError, load_checkpoint

    entries = manifest["models"]
    if len(entries) > MAX_MODELS:
        raise _fail(path, f"it lists {len(entries):,} models; Harmonium opens at most {MAX_MODELS}.")
    out: list[ProjectModel] = []
    names: set[str] = set()
    for i, entry in enumerate(entries):
        ok = isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("name"), str)
        title = entry.get("title") if ok and isinstance(entry.get("title"), str) and entry["title"] else None
        title = title or (entry["name"] if ok and entry["name"] else f"model {i + 1}")
        what = f"the model “{_short(title)}”"
        if not ok:
            problems.append(_skipped(f"model {i + 1}", "is malformed in project.json"))
            continue
        target = extract_dir / f"{_safe_name(entry['name'], names)}.safetensors"
        try:
            members.extract(entry["file"], MAX_MODEL_BYTES, target)
            try:
                ckpt = load_checkpoint(target)
            except CheckpointError as exc:
                raise _Bad(f"is damaged: {str(exc).split(': ', 1)[-1].rstrip('.')}") from None
            except (ImportError, NameError, SyntaxError):
                raise  # a bug of this program, not of the file
            except Exception as exc:  # noqa: BLE001 - one bad model never makes the project unopenable
                raise _Bad(f"could not be loaded ({type(exc).__name__}: {_short(exc, 200)})") from None
            kind = entry.get("kind")
            if kind is not None and kind != ckpt.kind:
                raise _Bad(f"is listed as {_short(kind)!r} but holds a {ckpt.kind!r} model")
        except _Bad as exc:
            target.unlink(missing_ok=True)
            problems.append(_skipped(what, exc.reason))
            continue
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        out.append(ProjectModel(name=entry["name"], kind=ckpt.kind, title=title, model=ckpt.model,
                                preprocess=ckpt.preprocess, meta=meta, sha256=ckpt.sha256, checkpoint=ckpt,
                                path=target))
    return out


_EXTRACT_DIRS: list[Path] = []


def _cleanup_extract_dirs() -> None:
    for d in _EXTRACT_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_extract_dirs)


def open_project(path: str | os.PathLike[str], *, extract_dir: str | os.PathLike[str] | None = None) -> ProjectData:
    """Read and validate a project; nothing outside the returned object is touched.

    Opens whatever it can: a layer or a model that cannot be read (missing, damaged,
    tampered with, invalid) is skipped and described, one sentence each, in the result's
    ``problems``, and the canvas, the other layers and the other models still open.
    Show ``problems`` to the person before the project replaces anything: saving the
    opened project drops what was skipped.  An archive, manifest or canvas that cannot
    be read, or a file that is not a regular file, raises :class:`ProjectError` with a
    clear message, whatever its bytes: nothing else escapes, not even ``MemoryError``.

    Bounded: the file is opened only if it is a regular file (a FIFO or a device is
    refused at once), members are streamed through caps (:data:`MAX_MANIFEST_BYTES`,
    :data:`MAX_MODEL_BYTES`, the layers' declared sizes, :data:`MAX_UNPACKED_BYTES`
    in all, :data:`MAX_RATIO` of compression), at most :data:`MAX_MEMBERS` members,
    :data:`MAX_LAYERS` layers and :data:`MAX_MODELS` models, and
    :data:`MAX_PIXEL_BYTES` of decoded pixels.  Time grows linearly with the layers.

    Never reads a dataset image: the dataset reference is returned as it is; its
    sources are read later by the caller, after :meth:`ProjectData.outside_sources`
    has been shown and confirmed.

    Model checkpoints are extracted to ``extract_dir`` (default: a fresh temporary
    folder removed when the program exits) so that jobs can be made of them
    (``Session.open_model(model.path)``) and resumed; on failure the extraction
    folder it made is removed.
    """
    path = Path(path)
    own_dir = extract_dir is None
    # Named with this process's id: what a killed studio leaves is swept at the next start (models.atomic).
    target = Path(tempfile.mkdtemp(prefix=f"harmonium-project-{os.getpid()}-")) if own_dir else Path(extract_dir)  # type: ignore[arg-type]
    problems: list[str] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        with _open_archive(path) as zf:
            manifest = _manifest(zf, path)
            files = {k: v for k, v in manifest["files"].items() if isinstance(v, str)}
            members = _Members(zf, path, files, _Budget())
            dataset = _build_dataset(manifest.get("dataset"), problems)
            canvas = _build_canvas(manifest, members, members.budget, path, problems)
            models = _build_models(manifest, members, path, target, problems)
    except BaseException as exc:
        if own_dir:
            shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, MemoryError):
            raise _fail(path, "it needs more memory than is free; the file is damaged or too large.") from None
        if isinstance(exc, RecursionError):
            raise _fail(path, "it is nested too deeply; the file is damaged or hostile.") from None
        raise
    if own_dir:
        _EXTRACT_DIRS.append(target)
    meta = {k: manifest.get(k) for k in ("format_version", "created", "app")}
    if isinstance(manifest.get("meta"), dict):
        meta.update(manifest["meta"])
    return ProjectData(canvas=canvas, dataset=dataset, models=models, meta=meta, path=path,
                       extract_dir=target, renderer=canvas.renderer, problems=problems)
