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
the live session is touched; any problem raises :class:`ProjectError` with a
message for people.  Applying the result to a session (loading the images,
adding the models as jobs, replacing the canvas) is the caller's job: see
:func:`project_from_session` for the other direction, and the main window.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from studio.canvas import MAX_SCALED_SIDE, Canvas, CanvasState, Layer, Renderer
from studio.export import _json_default, atomic_write

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
#: A manifest larger than this is refused before it is read (a damaged or hostile file).
MAX_MANIFEST_BYTES = 64 << 20
_PIXEL_DTYPES = ("uint8", "uint16", "bool", "float16", "float32", "float64")


class ProjectError(ValueError):
    """A project could not be saved or opened; the message says why, for a person."""


# --------------------------------------------------------------------------
# What a project holds
# --------------------------------------------------------------------------


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
        """``(found, missing)``: each source as saved, or else relative to ``project_dir``."""
        found, missing = [], []
        relative = list(self.sources_relative) + [None] * (len(self.sources) - len(self.sources_relative))
        for source, rel in zip(self.sources, relative):
            if Path(source).exists():
                found.append(source)
            elif rel is not None and project_dir is not None and (Path(project_dir) / rel).exists():
                found.append(str((Path(project_dir) / rel).resolve()))
            else:
                missing.append(source)
        return found, missing

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
    ``extract_dir`` the folder holding the extracted model checkpoints and
    ``meta`` the manifest's other information (``created``, ``format_version``...).
    """

    canvas: Canvas | CanvasState
    dataset: DatasetRef | None = None
    models: list[ProjectModel] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    extract_dir: Path | None = None
    renderer: Renderer | None = None

    @property
    def state(self) -> CanvasState:
        return self.canvas.snapshot() if isinstance(self.canvas, Canvas) else self.canvas


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

    def store(a: np.ndarray, stem: str) -> dict[str, Any]:
        ref = stored.get(id(a))
        if ref is None:
            ext, data = _encode_pixels(a)
            name = f"layers/{stem}.{ext}"
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
    with tempfile.TemporaryDirectory(prefix="harmonium-save-") as tmp, atomic_write(path) as f:
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


def _fail(path: Path, why: str) -> ProjectError:
    return ProjectError(f"Cannot open {path.name}: {why}")


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise _fail(path, "the file does not exist.")
    if path.is_dir():
        raise _fail(path, "it is a folder, not a project file.")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise _fail(path, f"it cannot be read ({exc.strerror or exc}).") from None
    if size == 0:
        raise _fail(path, "the file is empty.")
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            raise _fail(path, "the file is truncated or damaged (its zip directory is missing).")
        raise _fail(path, "it is not a Harmonium project (not a zip archive).")
    try:
        return zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise _fail(path, f"the file is truncated or damaged ({exc}).") from None


def _read_member(zf: zipfile.ZipFile, path: Path, name: str, files: Mapping[str, str] | None, what: str) -> bytes:
    """A member's bytes, checked against its manifest SHA-256."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _fail(path, f"{what} is missing from the project ({name}).") from None
    try:
        data = zf.read(info)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
        raise _fail(path, f"{what} is damaged ({name}: {exc}).") from None
    if files is not None:
        expected = files.get(name)
        if expected is None:
            raise _fail(path, f"{what} is not listed in the project's manifest ({name}).")
        if _sha256(data) != expected:
            raise _fail(path, f"{what} is damaged or was modified: its checksum does not match ({name}).")
    return data


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``project.json`` of a project (format, version and shape checked)."""
    path = Path(path)
    with _open_zip(path) as zf:
        return _manifest(zf, path)


def _manifest(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        info = zf.getinfo(MANIFEST)
    except KeyError:
        raise _fail(path, "it is not a Harmonium project (project.json is missing).") from None
    if info.file_size > MAX_MANIFEST_BYTES:
        raise _fail(path, "its project.json is implausibly large; the file is damaged.")
    raw = _read_member(zf, path, MANIFEST, None, "project.json")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"its project.json is not valid JSON ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PROJECT_FORMAT:
        raise _fail(path, "it is not a Harmonium project (project.json describes something else).")
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


def _decode_pixels(data: bytes, ref: Mapping[str, Any], path: Path, what: str) -> np.ndarray:
    shape = ref.get("shape")
    dtype = ref.get("dtype")
    if (not isinstance(shape, list) or len(shape) != 3 or not all(isinstance(s, int) for s in shape)
            or not (1 <= shape[0] <= MAX_SCALED_SIDE and 1 <= shape[1] <= MAX_SCALED_SIDE and shape[2] in (1, 2, 3, 4))
            or dtype not in _PIXEL_DTYPES):
        raise _fail(path, f"{what} has an invalid size or type in project.json.")
    file = str(ref.get("file", ""))
    try:
        if file.endswith(".png"):
            from PIL import Image

            if dtype != "uint8":
                raise ValueError("a PNG layer must be uint8")
            with Image.open(io.BytesIO(data)) as im:
                if im.format != "PNG" or im.size != (shape[1], shape[0]):
                    raise ValueError(f"the PNG is {im.size[0]}×{im.size[1]}, expected {shape[1]}×{shape[0]}")
                im.load()
                a = np.asarray(im)
        elif file.endswith(".npy"):
            a = np.load(io.BytesIO(data), allow_pickle=False)
            if str(a.dtype) != dtype:
                raise ValueError(f"the pixels are {a.dtype}, expected {dtype}")
        else:
            raise ValueError("unknown pixel file type")
        a = a.reshape(shape) if a.size == shape[0] * shape[1] * shape[2] else a
        if tuple(a.shape) != tuple(shape) or str(a.dtype) != dtype:
            raise ValueError(f"the pixels are {a.dtype} {list(a.shape)}, expected {dtype} {shape}")
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise _fail(path, f"{what} cannot be decoded ({exc}).") from None
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _build_layer(entry: Any, pixels: dict[str, np.ndarray], zf: zipfile.ZipFile, path: Path,
                 files: Mapping[str, str], index: int) -> Layer:
    if not isinstance(entry, dict):
        raise _fail(path, f"layer {index + 1} in project.json is malformed.")
    label = f"layer “{entry.get('name', index + 1)}”"

    def load(ref: Any) -> np.ndarray:
        if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
            raise _fail(path, f"the pixels of {label} are not described in project.json.")
        name = ref["file"]
        if name not in pixels:
            data = _read_member(zf, path, name, files, f"the pixels of {label}")
            pixels[name] = _decode_pixels(data, ref, path, f"the pixels of {label}")
        elif list(pixels[name].shape) != ref.get("shape"):
            raise _fail(path, f"the pixels of {label} do not match their description.")
        return pixels[name]

    raw_frames = entry.get("frames", [])
    if not isinstance(raw_frames, list):
        raise _fail(path, f"the frames of {label} are malformed in project.json.")
    frames = tuple(load(ref) for ref in raw_frames)
    src = entry.get("source")
    if isinstance(src, dict) and "frame" in src and "file" not in src:
        if not frames or src.get("frame") != 0:
            raise _fail(path, f"{label} refers to a frame it does not have.")
        source = frames[0]
    else:
        source = load(src)
    settings = {k: entry[k] for k in ("id", "name", "provenance", "blend_mode", "opacity", "visible", "x", "y",
                                      "scale", "resample", "tiling", "colourise", "invert", "levels", "frame_index")
                if k in entry}
    if not isinstance(settings.get("id"), str) or not settings["id"]:
        raise _fail(path, f"{label} has no id.")
    if not isinstance(settings.get("provenance", {}), dict):
        raise _fail(path, f"the provenance of {label} is malformed.")
    try:
        return Layer(source=source, frames=frames, **settings)
    except (TypeError, ValueError, KeyError) as exc:
        raise _fail(path, f"{label} has invalid settings ({exc}).") from None


def _build_canvas(manifest: dict[str, Any], zf: zipfile.ZipFile, path: Path) -> Canvas:
    c = manifest["canvas"]
    try:
        canvas = Canvas(c.get("width"), c.get("height"), c.get("background"))
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"its canvas settings are invalid ({exc}).") from None
    pixels: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    for i, entry in enumerate(c["layers"]):
        layer = _build_layer(entry, pixels, zf, path, manifest["files"], i)
        if layer.id in seen:
            raise _fail(path, f"two layers share the id {layer.id!r}.")
        seen.add(layer.id)
        canvas.add_layer(layer)
    canvas.clear_history()
    return canvas


def _build_dataset(raw: Any, path: Path) -> DatasetRef | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail(path, "its dataset reference is malformed.")
    sources = raw.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise _fail(path, "its dataset sources are malformed.")
    rel = raw.get("sources_relative") or []
    if not isinstance(rel, list) or not all(r is None or isinstance(r, str) for r in rel):
        rel = []
    pp = raw.get("preprocess") or {}
    if not isinstance(pp, dict):
        raise _fail(path, "its dataset preprocessing is malformed.")
    from studio.dataset import Preprocess

    try:
        pp = Preprocess.from_dict(pp).to_dict()
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"its dataset preprocessing is invalid ({exc}).") from None
    paths = raw.get("paths") or []
    if not isinstance(paths, list):
        paths = []
    count = raw.get("count", 0)
    return DatasetRef(sources=list(sources), preprocess=pp, paths=[str(p) for p in paths],
                      count=int(count) if isinstance(count, int) else 0, sources_relative=list(rel))


def _build_models(manifest: dict[str, Any], zf: zipfile.ZipFile, path: Path, extract_dir: Path) -> list[ProjectModel]:
    from models.checkpoint import CheckpointError, load_checkpoint

    out: list[ProjectModel] = []
    names: set[str] = set()
    for i, entry in enumerate(manifest["models"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not isinstance(entry.get("name"), str):
            raise _fail(path, f"model {i + 1} in project.json is malformed.")
        title = entry.get("title") or entry["name"]
        what = f"the model “{title}”"
        data = _read_member(zf, path, entry["file"], manifest["files"], what)
        name = _safe_name(entry["name"], names)
        target = extract_dir / f"{name}.safetensors"
        target.write_bytes(data)
        try:
            ckpt = load_checkpoint(target)
        except CheckpointError as exc:
            raise _fail(path, f"{what} is damaged: {str(exc).split(': ', 1)[-1]}") from None
        if entry.get("kind") not in (None, ckpt.kind):
            raise _fail(path, f"{what} is listed as {entry.get('kind')!r} but holds a {ckpt.kind!r} model.")
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        out.append(ProjectModel(name=entry["name"], kind=ckpt.kind, title=str(title), model=ckpt.model,
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

    Model checkpoints are extracted to ``extract_dir`` (default: a fresh temporary
    folder removed when the program exits) so that jobs can be made of them
    (``Session.open_model(model.path)``) and resumed.  Raises :class:`ProjectError`
    with a clear message for a missing, empty, truncated, corrupted, tampered or
    newer-version file; on failure the extraction folder it made is removed.
    """
    path = Path(path)
    own_dir = extract_dir is None
    target = Path(tempfile.mkdtemp(prefix="harmonium-project-")) if own_dir else Path(extract_dir)  # type: ignore[arg-type]
    target.mkdir(parents=True, exist_ok=True)
    try:
        with _open_zip(path) as zf:
            manifest = _manifest(zf, path)
            dataset = _build_dataset(manifest.get("dataset"), path)
            canvas = _build_canvas(manifest, zf, path)
            models = _build_models(manifest, zf, path, target)
    except BaseException:
        if own_dir:
            shutil.rmtree(target, ignore_errors=True)
        raise
    if own_dir:
        _EXTRACT_DIRS.append(target)
    meta = {k: manifest.get(k) for k in ("format_version", "created", "app")}
    if isinstance(manifest.get("meta"), dict):
        meta.update(manifest["meta"])
    return ProjectData(canvas=canvas, dataset=dataset, models=models, meta=meta, path=path,
                       extract_dir=target, renderer=canvas.renderer)


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
