"""Projects: the whole studio session — dataset reference, models, canvas — as one file.  No Qt.

A project is a ``*.harmonium`` file: a zip archive (never a pickle) holding ::

    mimetype                      "application/x-harmonium-project" (first, stored)
    models/<name>.safetensors     one checkpoint per model (``models.checkpoint`` format,
                                  with the trainer's resumable state when there is one)
    layers/<id>.png               each layer's source pixels, lossless (uint8 as PNG;
    layers/<id>-frame-NNN.png     any other dtype as ``.npy`` without pickle); an animated
                                  layer's frames; pixels shared by layers are stored once
    thumbnail.png                 the composite, at most 256×256
    project.json                  written last: format name and version, the dataset
                                  reference (sources and Preprocess), the models (name,
                                  kind, title, file), the canvas (size, background) and
                                  every layer's settings and provenance, and the SHA-256
                                  of every other member

Saving (:func:`save_project`) is atomic: the archive is written to a temporary
file in the destination folder and renamed over the target only when complete,
so a failed save leaves an existing project untouched and no partial file.

Opening (:func:`open_project`) validates *everything* — the archive, the
manifest, its version, every checksum, every layer's pixels and settings, every
model checkpoint — and builds a fresh :class:`ProjectData` before anything in
the live session is touched.  It opens whatever it can: a layer or a model that
cannot be read is skipped and described in ``ProjectData.problems``; a file that
is not a project, or whose archive, manifest or canvas is broken, raises
:class:`ProjectError` with a message for people.  Whatever the bytes, opening is
bounded in memory and time (see the ``MAX_*`` limits) and never blocks (only
regular files are opened).  It never reads the dataset's images: applying the
result to a session (confirming sources outside the project's folder with
:meth:`ProjectData.outside_sources`, loading the images, adding the models as
jobs, replacing the canvas) is the caller's job: see :func:`project_from_session`
for the other direction, and the main window.
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections import Counter
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping

import numpy as np

from models.atomic import atomic_open, work_dir
from studio.canvas import MAX_SCALED_SIDE, Canvas, CanvasState, Layer, Renderer
from studio.canvas.export import _json_default

__all__ = [
    "PROJECT_FORMAT",
    "PROJECT_VERSION",
    "PROJECT_SUFFIX",
    "PROJECT_MIMETYPE",
    "ProjectError",
    "DatasetRef",
    "ProjectModel",
    "ProjectData",
    "save_project",
    "open_project",
    "project_from_session",
    "read_manifest",
    "layers_equal",
]

PROJECT_FORMAT = "harmonium-project"
PROJECT_VERSION = 1
PROJECT_SUFFIX = ".harmonium"
PROJECT_MIMETYPE = b"application/x-harmonium-project"
MANIFEST = "project.json"
THUMBNAIL = "thumbnail.png"
THUMBNAIL_MAX = 256
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


class ProjectError(ValueError):
    """A project could not be saved or opened; the message says why, for a person."""


# --------------------------------------------------------------------------
# What a project holds
# --------------------------------------------------------------------------


def _exists(path: Path) -> bool:
    """``path.exists()``, False for a name the system refuses (too long, a NUL, a loop)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


@dataclass
class DatasetRef:
    """Where the images came from: ``sources`` (files and folders; empty = the built-in
    demo set) and the :class:`~studio.dataset.Preprocess` settings as a dict.

    ``paths`` (the image files loaded when the project was saved) and ``count`` are
    informative; ``sources_relative`` (relative to the project's folder) lets a
    project moved together with its images find them again (:meth:`resolve`).
    """

    sources: list[str] = field(default_factory=list)
    preprocess: dict[str, Any] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    count: int = 0
    sources_relative: list[str | None] = field(default_factory=list)

    @property
    def is_demo(self) -> bool:
        return not self.sources

    def resolve(self, project_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], list[str]]:
        """``(found, missing)``: each source as saved, or else relative to ``project_dir``.

        Only looks whether the sources exist (``stat``); reads nothing."""
        found, missing = [], []
        relative = list(self.sources_relative) + [None] * (len(self.sources) - len(self.sources_relative))
        for source, rel in zip(self.sources, relative):
            if _exists(Path(source)):
                found.append(source)
            elif rel is not None and project_dir is not None and _exists(Path(project_dir) / rel):
                found.append(os.path.realpath(Path(project_dir) / rel))
            else:
                missing.append(source)
        return found, missing

    def outside(self, project_dir: str | os.PathLike[str]) -> list[str]:
        """The sources of ``resolve(project_dir)[0]`` (same strings, same order) that lie
        outside ``project_dir`` once every symlink is resolved: a project can name any path,
        so these must be shown and confirmed before they are read.  Reads nothing."""
        root = Path(os.path.realpath(project_dir))
        out = []
        for source in self.resolve(project_dir)[0]:
            real = Path(os.path.realpath(source))
            if real != root and root not in real.parents:
                out.append(source)
        return out

    def to_json(self, project_dir: Path | None = None) -> dict[str, Any]:
        rel: list[str | None] = []
        for s in self.sources:
            try:
                rel.append(os.path.relpath(s, project_dir) if project_dir is not None else None)
            except ValueError:  # another drive (Windows)
                rel.append(None)
        return {"sources": list(self.sources), "sources_relative": rel, "preprocess": dict(self.preprocess),
                "paths": list(self.paths), "count": int(self.count)}


@dataclass
class ProjectModel:
    """One model of a project.

    For saving, give ``model`` (an ``nn.Module`` the checkpoint registry knows) and
    optionally ``trainer`` (its resumable state is saved too), ``preprocess``,
    ``meta`` (JSON-friendly: stored in the checkpoint's ``extra``) and ``lock``
    (held while the model is read: a training job's ``step_lock``), or
    ``checkpoint_file`` (an existing checkpoint, copied as it is when its SHA-256
    equals ``sha256``).

    After :func:`open_project`: ``checkpoint`` is the validated
    :class:`models.checkpoint.Checkpoint` (``.model`` on the CPU, ``.meta``,
    trainer tensors), ``path`` the extracted checkpoint file and ``sha256`` its hash.
    """

    name: str
    kind: str
    title: str = ""
    model: Any = None
    trainer: Any = None
    preprocess: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    lock: Any = None
    checkpoint_file: Path | None = None
    sha256: str = ""
    checkpoint: Any = None
    path: Path | None = None


@dataclass
class ProjectData:
    """Everything a project holds.

    ``canvas`` is a :class:`~studio.canvas.Canvas` (or, for saving, an immutable
    :class:`~studio.canvas.CanvasState` snapshot); ``renderer`` (optional) renders
    the thumbnail from a warm cache.  After opening, ``path`` is the project file,
    ``extract_dir`` the folder holding the extracted model checkpoints,
    ``meta`` the manifest's other information (``created``, ``format_version``...)
    and ``problems`` one sentence per part that could not be read and was left
    out (a layer, a model, the dataset reference), for the person to see.
    """

    canvas: Canvas | CanvasState
    dataset: DatasetRef | None = None
    models: list[ProjectModel] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    extract_dir: Path | None = None
    renderer: Renderer | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def state(self) -> CanvasState:
        return self.canvas.snapshot() if isinstance(self.canvas, Canvas) else self.canvas

    def outside_sources(self, project_path: str | os.PathLike[str] | None = None) -> list[str]:
        """The dataset sources to confirm before reading them: those of
        ``self.dataset.resolve(folder)[0]`` (the same strings) that resolve, symlinks
        followed, outside ``folder``, the folder of the project file ``project_path``
        (default: :attr:`path`, where it was opened from).  ``[]`` without a dataset.

        :func:`open_project` never reads a dataset image; the caller does, like this::

            found, missing = project.dataset.resolve(path.parent)
            outside = project.outside_sources(path)
            if outside and not person_confirms(outside):
                found = [s for s in found if s not in outside]
            load(found)
        """
        if self.dataset is None:
            return []
        where = project_path if project_path is not None else self.path
        if where is None:
            raise ValueError("outside_sources: this project has no path; give the project file's path")
        return self.dataset.outside(Path(where).parent)


def project_from_session(session: Any, canvas: Canvas | CanvasState, *, renderer: Renderer | None = None,
                         include_training_state: bool = True) -> ProjectData:
    """What :func:`save_project` needs from a :class:`studio.jobs.Session` (duck-typed:
    ``sources``, ``preprocess``, ``images``, ``jobs`` with ``model``, ``kind``, ``title``,
    ``trainer``, ``step_lock``...).  Cheap: reads no model (the save does, under each
    job's ``step_lock``), so call it on the UI thread and save in a worker.
    """
    images = getattr(session, "images", None)
    preprocess = getattr(session, "preprocess", None)
    dataset = DatasetRef(
        sources=[str(s) for s in getattr(session, "sources", []) or []],
        preprocess=preprocess.to_dict() if hasattr(preprocess, "to_dict") else dict(preprocess or {}),
        paths=[str(p) for p in getattr(images, "paths", []) or []],
        count=len(images) if images is not None else 0,
    )
    models: list[ProjectModel] = []
    for job in list(getattr(session, "jobs", [])):
        model = getattr(job, "model", None)
        if model is None:
            continue
        trainer = getattr(job, "trainer", None) if include_training_state else None
        opened = getattr(job, "checkpoint", None)
        copy_from = None
        if trainer is None and opened is not None and include_training_state and Path(opened.path).is_file():
            copy_from = Path(opened.path)  # opened and not trained since: keep its training state
        state = getattr(job, "state", None)
        models.append(ProjectModel(
            name=f"{job.kind}-{job.id}",
            kind=job.kind,
            title=getattr(job, "title", "") or job.kind,
            model=model,
            trainer=trainer,
            preprocess=getattr(job, "preprocess", None),
            meta={"source": getattr(job, "source", ""), "state": getattr(state, "value", str(state)),
                  "step": int(getattr(job, "step", 0) or 0),
                  "saved_as": str(job.path) if getattr(job, "path", None) else None},
            lock=getattr(job, "step_lock", None),
            checkpoint_file=copy_from,
            sha256=getattr(opened, "sha256", "") if copy_from is not None else "",
        ))
    return ProjectData(canvas=canvas, dataset=dataset, models=models,
                       renderer=renderer or getattr(canvas, "renderer", None))


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safe_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")[:60] or "model"
    out, i = base, 2
    while out in taken:
        out, i = f"{base}-{i}", i + 1
    taken.add(out)
    return out


def _encode_pixels(a: np.ndarray) -> tuple[str, bytes]:
    """``(extension, bytes)``: uint8 as PNG (exact), any other dtype as ``.npy`` (exact, no pickle)."""
    if a.dtype == np.uint8:
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(a[:, :, 0] if a.shape[2] == 1 else a))
        buf = io.BytesIO()
        image.save(buf, format="PNG", compress_level=4)
        return "png", buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return "npy", buf.getvalue()


def _thumbnail_png(rgba: np.ndarray) -> bytes:
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgba))
    image.thumbnail((THUMBNAIL_MAX, THUMBNAIL_MAX), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _colourise_json(value: Any) -> Any:
    return None if value is None else value.to_dict()


def _layer_json(layer: Layer) -> dict[str, Any]:
    return {
        "id": layer.id,
        "name": layer.name,
        "provenance": dict(layer.provenance),
        "blend_mode": layer.blend_mode,
        "opacity": layer.opacity,
        "visible": layer.visible,
        "x": layer.x,
        "y": layer.y,
        "scale": layer.scale,
        "resample": layer.resample,
        "tiling": layer.tiling,
        "colourise": _colourise_json(layer.colourise),
        "invert": layer.invert,
        "levels": layer.levels.to_dict(),
        "frame_index": layer.frame_index,
    }


class _Writer:
    """Writes members into the open zip and records their SHA-256 for the manifest."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.files: dict[str, str] = {}

    def bytes(self, name: str, data: bytes, compress: int = zipfile.ZIP_STORED) -> None:
        self.zf.writestr(name, data, compress_type=compress)
        self.files[name] = _sha256(data)

    def file(self, name: str, path: Path) -> None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        self.zf.write(path, name, compress_type=zipfile.ZIP_STORED)
        self.files[name] = h.hexdigest()


def _write_model(w: _Writer, entry: ProjectModel, name: str, tmpdir: Path) -> dict[str, Any]:
    """Store one model as ``models/<name>.safetensors``; returns its manifest entry."""
    from models.checkpoint import CheckpointError, file_sha256, save_checkpoint

    member = f"models/{name}.safetensors"
    tmp = tmpdir / f"{name}.safetensors"
    source = entry.checkpoint_file
    if source is not None and Path(source).is_file() and (not entry.sha256 or file_sha256(source) == entry.sha256):
        shutil.copyfile(source, tmp)
    elif entry.model is not None:
        lock = entry.lock if entry.lock is not None else nullcontext()
        try:
            with lock:
                save_checkpoint(tmp, entry.model, trainer=entry.trainer, preprocess=entry.preprocess,
                                extra=json.loads(json.dumps(entry.meta, default=_json_default)))
        except CheckpointError as exc:
            raise ProjectError(f"The model “{entry.title or entry.name}” could not be saved: {exc}") from None
    else:
        raise ProjectError(f"The model “{entry.title or entry.name}” has nothing to save.")
    w.file(member, tmp)
    return {"name": name, "kind": entry.kind, "title": entry.title or entry.kind, "file": member,
            "meta": json.loads(json.dumps(entry.meta, default=_json_default))}


def _write_layers(w: _Writer, state: CanvasState) -> list[dict[str, Any]]:
    """Store every layer's pixels (each distinct array once); returns the layers' manifest entries."""
    stored: dict[int, dict[str, Any]] = {}  # id(array) -> {"file", "shape", "dtype"}
    keep_alive: list[np.ndarray] = []  # ids stay unique while we hold the arrays
    stems: set[str] = set()

    def store(a: np.ndarray, stem: str) -> dict[str, Any]:
        ref = stored.get(id(a))
        if ref is None:
            ext, data = _encode_pixels(a)
            # a layer id can be any string (a NUL would cut a zip name short): names are made safe and unique
            name = f"layers/{_safe_name(stem, stems)}.{ext}"
            w.bytes(name, data)
            ref = {"file": name, "shape": list(a.shape), "dtype": str(a.dtype)}
            stored[id(a)] = ref
            keep_alive.append(a)
        return dict(ref)

    out = []
    for layer in state.layers:
        entry = _layer_json(layer)
        frames = [store(f, f"{layer.id}-frame-{i:03d}") for i, f in enumerate(layer.frames)]
        if layer.frames and layer.source is layer.frames[0]:
            entry["source"] = {"frame": 0}
        else:
            entry["source"] = store(layer.source, layer.id)  # type: ignore[arg-type]
        entry["frames"] = frames
        out.append(entry)
    return out


def save_project(path: str | os.PathLike[str], project: ProjectData | Any, canvas: Canvas | CanvasState | None = None,
                 *, thumbnail: bool = True) -> Path:
    """Write ``project`` to ``path`` (``.harmonium`` is appended when missing) atomically.

    ``project`` is a :class:`ProjectData`, or a session (see :func:`project_from_session`)
    with ``canvas``.  Models are read under their ``lock``.  Raises :class:`ProjectError`
    (or ``OSError`` for a disk problem); an existing file at ``path`` is then untouched.
    Returns the path written.
    """
    if not isinstance(project, ProjectData):
        if canvas is None:
            raise TypeError("save_project(path, session, canvas): the canvas is missing")
        project = project_from_session(project, canvas)
    path = Path(path)
    if path.suffix.lower() != PROJECT_SUFFIX:
        path = path.with_name(path.name + PROJECT_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = project.state
    with work_dir("save") as tmp, atomic_open(path) as f:
        with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
            info = zipfile.ZipInfo("mimetype", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, PROJECT_MIMETYPE)
            w = _Writer(zf)
            taken: set[str] = set()
            models = [_write_model(w, m, _safe_name(m.name, taken), Path(tmp)) for m in project.models]
            layers = _write_layers(w, state)
            if thumbnail:
                renderer = project.renderer or Renderer(layer_cache_bytes=256 << 20, composite_cache_bytes=256 << 20)
                w.bytes(THUMBNAIL, _thumbnail_png(renderer.render_uint8(state)))
            manifest = {
                "format": PROJECT_FORMAT,
                "format_version": PROJECT_VERSION,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "app": "Harmonium",
                "dataset": None if project.dataset is None else project.dataset.to_json(path.parent.resolve()),
                "models": models,
                "canvas": {
                    "width": state.width,
                    "height": state.height,
                    "background": None if state.background is None else list(state.background),
                    "layers": layers,
                },
                "meta": json.loads(json.dumps(project.meta, default=_json_default)),
                "files": w.files,
            }
            text = json.dumps(manifest, default=_json_default, ensure_ascii=False, indent=1)
            zf.writestr(MANIFEST, text.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
    return path


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


def layers_equal(a: Iterable[Layer], b: Iterable[Layer]) -> bool:
    """True if two layer stacks have equal settings (JSON-normalised) and equal pixels."""
    la, lb = list(a), list(b)
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        norm = lambda layer: json.loads(json.dumps(_layer_json(layer), default=_json_default))  # noqa: E731
        if norm(x) != norm(y):
            return False
        if not (np.array_equal(x.source, y.source) and x.source.dtype == y.source.dtype):
            return False
        if len(x.frames) != len(y.frames) or not all(np.array_equal(f, g) for f, g in zip(x.frames, y.frames)):
            return False
    return True
