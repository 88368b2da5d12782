"""What a project holds: the format's names, :class:`ProjectError`, the dataset reference, the
models and :class:`ProjectData`, and :func:`project_from_session`.  See :mod:`studio.project`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.canvas import Canvas, CanvasState, Renderer


PROJECT_FORMAT = "harmonium-project"
PROJECT_VERSION = 1
PROJECT_SUFFIX = ".harmonium"
PROJECT_MIMETYPE = b"application/x-harmonium-project"
MANIFEST = "project.json"
THUMBNAIL = "thumbnail.png"
THUMBNAIL_MAX = 256


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
