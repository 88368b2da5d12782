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

Modules: ``data`` (what a project holds, :func:`project_from_session`), ``saving``
(:func:`save_project`, :func:`layers_equal`), ``reading`` (:func:`open_project`,
:func:`read_manifest`, and the limits opening keeps to, ``MAX_*``).
"""

from studio.project.data import (
    PROJECT_FORMAT,
    PROJECT_MIMETYPE,
    PROJECT_SUFFIX,
    PROJECT_VERSION,
    DatasetRef,
    ProjectData,
    ProjectError,
    ProjectModel,
    project_from_session,
)
from studio.project.reading import open_project, read_manifest
from studio.project.saving import layers_equal, save_project

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
