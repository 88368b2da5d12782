"""Saving a project atomically (:func:`save_project`), and comparing layer stacks as a saved
project would (:func:`layers_equal`).  See :mod:`studio.project`."""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from models.atomic import atomic_open, work_dir
from studio.canvas import Canvas, CanvasState, Layer, Renderer
from studio.canvas.export import _json_default
from studio.project.data import (
    MANIFEST,
    PROJECT_FORMAT,
    project_from_session,
    PROJECT_MIMETYPE,
    PROJECT_SUFFIX,
    PROJECT_VERSION,
    ProjectData,
    ProjectError,
    ProjectModel,
    THUMBNAIL,
    THUMBNAIL_MAX,
)


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


def _write_model(w: _Writer, entry: ProjectModel, name: str, tmpdir: Path,
                 written: dict[str, str] | None = None) -> dict[str, Any]:
    """Store one model as ``models/<name>.safetensors``; returns its manifest entry.

    ``written`` (optional) gets ``{weights hash: checkpoint file hash}`` for the model, its
    weights hashed under the same lock as they are written (:func:`_fill_checkpoint_hashes`)."""
    from models.checkpoint import CheckpointError, file_sha256, save_checkpoint
    from studio.canvas.sources import weights_sha256

    member = f"models/{name}.safetensors"
    tmp = tmpdir / f"{name}.safetensors"
    source = entry.checkpoint_file
    lock = entry.lock if entry.lock is not None else nullcontext()
    weights = None
    if source is not None and Path(source).is_file() and (not entry.sha256 or file_sha256(source) == entry.sha256):
        shutil.copyfile(source, tmp)
        if entry.model is not None:
            with lock:
                weights = weights_sha256(entry.model)
    elif entry.model is not None:
        try:
            with lock:
                save_checkpoint(tmp, entry.model, trainer=entry.trainer, preprocess=entry.preprocess,
                                extra=json.loads(json.dumps(entry.meta, default=_json_default)))
                weights = weights_sha256(entry.model)
        except CheckpointError as exc:
            raise ProjectError(f"The model “{entry.title or entry.name}” could not be saved: {exc}") from None
    else:
        raise ProjectError(f"The model “{entry.title or entry.name}” has nothing to save.")
    w.file(member, tmp)
    if written is not None and weights is not None:
        written.setdefault(weights, w.files[member])
    return {"name": name, "kind": entry.kind, "title": entry.title or entry.kind, "file": member,
            "meta": json.loads(json.dumps(entry.meta, default=_json_default))}


def _fill_checkpoint_hashes(layers: list[dict[str, Any]], written: dict[str, str]) -> None:
    """Name the checkpoint that made each layer: a layer made by a model the studio trained
    records only the hash of the model's weights (``weights_sha256``: no checkpoint file held
    them yet); the project now stores a checkpoint of exactly those weights, so its layers'
    ``checkpoint_sha256`` become that file's SHA-256 (the same bytes as the file extracted when
    the project is opened). A layer whose weights match no model saved here (made before the
    model trained on, say) keeps ``None``: no checkpoint holds what made it."""
    for entry in layers:
        prov = entry.get("provenance")
        if not isinstance(prov, dict) or prov.get("checkpoint_sha256"):
            continue
        sha = written.get(prov.get("weights_sha256") or "")
        if sha:
            prov["checkpoint_sha256"] = sha


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
            written: dict[str, str] = {}
            models = [_write_model(w, m, _safe_name(m.name, taken), Path(tmp), written) for m in project.models]
            layers = _write_layers(w, state)
            _fill_checkpoint_hashes(layers, written)
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
