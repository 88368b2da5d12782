"""Unsaved work and crash recovery: what would be lost, when to autosave, where recovery lives.  No Qt.

The main window only asks and shows; the decisions are made here so they can be tested
without a screen.

* :class:`UnsavedWork` knows what was last written to disk (the canvas and the models in the
  last project saved or opened, each model saved to its own file) and, given the session as
  it is now, says in sentences for people what quitting would lose (:meth:`UnsavedWork.reasons`).
  Nothing in the session is edited for that: the canvas's states are immutable
  (:class:`~studio.canvas.CanvasState`, a new one for every edit, the same one again after an
  undo), so "changed since the save" is "not equal to the state that was saved"; a model is
  saved when the file holds it at its current step.
* :class:`RecoveryStore` is one running studio's recovery slot:
  ``<data dir>/harmonium/autosave/session-XXXX/recovery.harmonium`` (the data dir honours
  ``XDG_DATA_HOME``).  The folder holds a lock file, locked (``flock``) for as long as the
  studio runs: the kernel drops the lock when the process dies however it dies, so a folder
  whose lock can be taken belongs to a studio that crashed.  Two studios running at once each
  have their own slot and never offer each other's work.
* :func:`find_orphans` lists the crashed sessions' recovery projects (newest first, each one
  locked by the caller until it is restored, discarded or released), :func:`discard` removes
  them, :func:`set_aside` moves one that cannot be opened out of the way (kept, not offered
  again), :meth:`RecoveryStore.adopt` makes a restored one this studio's own recovery file.

The recovery project is an ordinary project (:func:`studio.project.save_project`, atomic)
written in a worker (:func:`write_recovery`); its manifest's ``meta["recovery"]`` remembers
the project the work belonged to (``project_path``), so that a restored session saves there.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from models.atomic import data_dir  # the user's data folder (honours XDG_DATA_HOME): pure stdlib

try:  # POSIX: the lock that tells a running studio from a crashed one
    import fcntl
except ImportError:  # pragma: no cover - Windows: every slot but ours counts as crashed
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "AUTOSAVE_MINUTES",
    "RECOVERY_NAME",
    "Orphan",
    "RecoveryStore",
    "UnsavedWork",
    "autosave_interval_ms",
    "autosave_root",
    "data_dir",
    "dataset_key",
    "discard",
    "find_orphans",
    "recovery_meta",
    "restored_project_path",
    "set_aside",
    "write_recovery",
]

#: Minutes between two autosaves when the settings say nothing (``autosave/minutes``).
AUTOSAVE_MINUTES = 3.0
#: The shortest and longest interval a setting can ask for (minutes); 0 turns autosave off.
MIN_MINUTES, MAX_MINUTES = 0.1, 24 * 60.0
RECOVERY_NAME = "recovery.harmonium"
LOCK_NAME = "lock"
SESSION_PREFIX = "session-"
SET_ASIDE_PREFIX = "unopenable-"


# --------------------------------------------------------------------------
# Where recovery files live, how often they are written
# --------------------------------------------------------------------------


def autosave_root() -> Path:
    """The folder holding every running (or crashed) studio's recovery slot."""
    return data_dir() / "autosave"


def autosave_interval_ms(value: Any, default: float = AUTOSAVE_MINUTES) -> int:
    """The autosave timer's interval in ms from a setting in minutes (a settings file is read
    from disk: anything that is not a finite number means the default; 0 or less, or
    ``off``/``false``/``no``, turns autosave off and gives 0; the rest is kept within
    :data:`MIN_MINUTES` … :data:`MAX_MINUTES`)."""
    if isinstance(value, str) and value.strip().lower() in ("off", "false", "no", "never"):
        return 0
    if value is None or value == "" or isinstance(value, bool):
        minutes = default
    else:
        try:
            minutes = float(value)
        except (TypeError, ValueError, OverflowError):
            minutes = default
        if not math.isfinite(minutes):
            minutes = default
    if minutes <= 0:
        return 0
    return int(round(min(MAX_MINUTES, max(MIN_MINUTES, minutes)) * 60_000))


# --------------------------------------------------------------------------
# What is unsaved
# --------------------------------------------------------------------------


def dataset_key(sources: Iterable[Any] | None, preprocess: Any) -> tuple[tuple[str, ...], str]:
    """A comparable summary of where the session's images come from and how they are prepared."""
    pp = preprocess.to_dict() if hasattr(preprocess, "to_dict") else dict(preprocess or {})
    return tuple(str(s) for s in sources or ()), json.dumps(pp, sort_keys=True, default=str)


def _state_name(job: Any) -> str:
    state = getattr(job, "state", "")
    return str(getattr(state, "value", state))


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _has_work(job: Any) -> bool:
    """A job with a model (one at step 0 and never saved is its random start: see
    :meth:`UnsavedWork.reasons`)."""
    return getattr(job, "model", None) is not None


class UnsavedWork:
    """What was last written to disk, and what quitting now would lose.

    Jobs are duck-typed (:class:`studio.jobs.TrainingJob`: ``id``, ``title``, ``step``,
    ``state``, ``model``); canvas states are :class:`~studio.canvas.CanvasState` (compared with
    ``==``: same size, background and the very same layer objects).
    """

    def __init__(self) -> None:
        self._canvas: Any = None  # the canvas state saved, opened, or found at start
        self._canvas_in_project = False  # that state is in a project file
        self._models: dict[int, int] = {}  # job id -> the step a file holds
        self._project_jobs: frozenset[int] | None = None  # the jobs of the project saved/opened
        self._project_dataset: tuple | None = None
        self.restored = False  # the session came back from a recovery file and was not saved since

    # -- what was written ------------------------------------------------------------------
    def canvas_reset(self, state: Any) -> None:
        """The canvas as the studio starts with it: nothing on it can be lost."""
        self._canvas = state

    def model_saved(self, job_id: int, step: int) -> None:
        """A file now holds this job's model at ``step`` (saved as a model, or opened from one)."""
        self._models[int(job_id)] = int(step)

    def project_saved(self, state: Any, jobs: Iterable[tuple[int, int]], dataset: tuple | None,
                      members: Iterable[int] | None = None) -> None:
        """A project file now holds the canvas ``state``, the jobs ``(id, step)`` (those with a
        model) and the images ``dataset`` (:func:`dataset_key`): it was saved or opened.
        ``members`` (default: the ids in ``jobs``) are the jobs the project is made of from now
        on: opening a project adds its models to those already in the session, which are
        then part of it without being in its file."""
        jobs = [(int(i), int(s)) for i, s in jobs]
        self._canvas, self._canvas_in_project = state, True
        for job_id, step in jobs:
            self._models[job_id] = step
        self._project_jobs = frozenset(int(i) for i in members) if members is not None else \
            frozenset(i for i, _ in jobs)
        self._project_dataset = dataset
        self.restored = False

    def restored_from_recovery(self, state: Any, jobs: Iterable[tuple[int, int]], dataset: tuple | None,
                               in_project: bool) -> None:
        """The session was just restored from a recovery file: it is all unsaved until the next
        project save (``in_project``: it belonged to a project that will be saved over)."""
        jobs = list(jobs)
        self._canvas, self._canvas_in_project = None, in_project
        for job_id, _ in jobs:
            self._models.pop(int(job_id), None)
        self._project_jobs = frozenset() if in_project else None
        self._project_dataset = dataset if in_project else None
        self.restored = True

    # -- what is not ---------------------------------------------------------------------
    def reasons(self, state: Any, jobs: Iterable[Any], dataset: tuple | None = None,
                project_open: bool = False) -> list[str]:
        """One sentence per thing quitting now would lose; empty when nothing would be lost."""
        out: list[str] = []
        jobs = list(jobs)
        if self.restored:
            out.append("The work restored after the crash has not been saved yet.")
        training = [j for j in jobs if _state_name(j) in ("running", "paused")]
        jobs = [j for j in jobs if _has_work(j)]
        if training:
            n = len(training)
            out.append(f"{_plural(n, 'model is', 'models are')} training: "
                       f"{'it' if n == 1 else 'they'} would be stopped.")
        for job in jobs:
            if job in training:
                continue
            step = int(getattr(job, "step", 0) or 0)
            saved = self._models.get(job.id)
            if saved == step or (saved is None and step == 0):
                continue  # in a file as it is, or never trained (its random start)
            title = getattr(job, "title", "") or getattr(job, "kind", "model")
            what = "has changed since it was saved" if saved is not None else "has never been saved"
            out.append(f"The {title} (run #{job.id}, step {step:,}) {what}.")
        if state is not None and not self.restored and state != self._canvas:
            layers = len(getattr(state, "layers", ()) or ())
            if self._canvas_in_project:
                out.append("The canvas has changed since the project was saved.")
            elif layers:
                out.append(f"The canvas has {_plural(layers, 'layer')} that {'was' if layers == 1 else 'were'} "
                           "never saved.")
        if project_open and self._project_jobs is not None and not self.restored:
            if frozenset(j.id for j in jobs) != self._project_jobs:
                out.append("Models were added to or removed from the project since it was saved.")
            if dataset is not None and self._project_dataset is not None and dataset != self._project_dataset:
                out.append("The project's images or their preparation changed since it was saved.")
        return out

    @staticmethod
    def fingerprint(state: Any, jobs: Iterable[Any], dataset: tuple | None = None) -> tuple:
        """Changes whenever anything a recovery file holds changes (to skip writing the same
        recovery file twice)."""
        return (state, tuple((j.id, int(getattr(j, "step", 0) or 0), _state_name(j))
                             for j in jobs if _has_work(j)), dataset)


# --------------------------------------------------------------------------
# Recovery slots
# --------------------------------------------------------------------------


def _try_lock(path: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``path`` (created if missing), or None
    when another process (or another descriptor of ours) holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError:
        return None
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _close(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)  # closing the descriptor drops its lock
        except OSError:
            pass


def _regular_file(path: Path) -> os.stat_result | None:
    """``path``'s status when it is a regular file (not a link, a FIFO, a device...), else None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


@dataclass
class Orphan:
    """The recovery project a crashed studio left behind (locked by whoever found it)."""

    dir: Path
    project: Path
    saved_at: float  # seconds since the epoch (the file's modification time)
    size: int
    _fd: int | None = field(default=None, repr=False, compare=False)

    def release(self) -> None:
        """Let go of it without deciding (it is offered again at the next start)."""
        _close(self._fd)
        self._fd = None

    def describe(self) -> str:
        """When it was saved, for people."""
        return time.strftime("%A %d %B at %H:%M", time.localtime(self.saved_at))


def find_orphans(root: str | os.PathLike[str] | None = None) -> list[Orphan]:
    """The recovery projects of studios that ended without quitting (newest first), each locked
    until :meth:`Orphan.release`, :func:`discard`, :func:`set_aside` or
    :meth:`RecoveryStore.adopt`.  Slots of running studios are skipped; a crashed slot without
    a recovery file (the studio died before its first autosave) is removed.  Never raises for
    what it finds on disk: odd entries are skipped."""
    root = Path(root) if root is not None else autosave_root()
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    found: list[Orphan] = []
    for entry in entries[:1000]:  # bounded: a folder stuffed with entries is not ours
        try:
            if not entry.name.startswith(SESSION_PREFIX) or not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        folder = Path(entry.path)
        fd = _try_lock(folder / LOCK_NAME)
        if fd is None:
            continue  # a studio running now (or a slot we cannot lock: left alone)
        st = _regular_file(folder / RECOVERY_NAME)
        if st is None or st.st_size == 0:
            shutil.rmtree(folder, ignore_errors=True)
            _close(fd)
            continue
        found.append(Orphan(folder, folder / RECOVERY_NAME, st.st_mtime, st.st_size, fd))
    found.sort(key=lambda o: o.saved_at, reverse=True)
    return found


def discard(orphans: Iterable[Orphan]) -> None:
    """Delete these crashed sessions' recovery files (the person said so)."""
    for orphan in orphans:
        shutil.rmtree(orphan.dir, ignore_errors=True)
        orphan.release()


def set_aside(orphan: Orphan) -> Path:
    """Move a recovery file that cannot be opened out of the offers, keeping it (returns where)."""
    target = orphan.dir.with_name(SET_ASIDE_PREFIX + orphan.dir.name[len(SESSION_PREFIX):])
    try:
        os.replace(orphan.dir, target)
    except OSError:
        target = orphan.dir
    orphan.release()
    return target / RECOVERY_NAME


def recovery_meta(project_path: str | os.PathLike[str] | None, reasons: Iterable[str] = ()) -> dict[str, Any]:
    """What a recovery project remembers in its manifest's ``meta`` (see :func:`restored_project_path`)."""
    return {"recovery": {"project_path": str(project_path) if project_path else None,
                         "reasons": [str(r) for r in reasons][:20], "saved_at": time.time()}}


def restored_project_path(meta: Any) -> Path | None:
    """The project a restored recovery file's work belonged to, when it still is a file
    (``meta`` comes from a file: anything unexpected means none)."""
    info = meta.get("recovery") if isinstance(meta, dict) else None
    raw = info.get("project_path") if isinstance(info, dict) else None
    if not isinstance(raw, str) or not raw or len(raw) > 4096 or "\0" in raw:
        return None
    path = Path(raw)
    return path if path.is_absolute() and _regular_file(path) is not None else None


def write_recovery(path: str | os.PathLike[str], data: Any) -> Path:
    """Worker side of an autosave: write ``data`` (a :class:`~studio.project.ProjectData`)
    to ``path`` atomically; the previous recovery file stays whole until the new one is."""
    from studio.project import save_project

    return save_project(path, data)


class RecoveryStore:
    """This studio's recovery slot, made (and locked) at the first autosave."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else autosave_root()
        self.dir: Path | None = None
        self._fd: int | None = None

    @property
    def path(self) -> Path | None:
        """The recovery project's path once the slot exists."""
        return self.dir / RECOVERY_NAME if self.dir is not None else None

    def exists(self) -> bool:
        p = self.path
        return p is not None and _regular_file(p) is not None

    def claim(self) -> Path:
        """Make and lock the slot if not done yet; returns the recovery project's path.
        Raises ``OSError`` when the data folder cannot be written."""
        if self.dir is None:
            self.root.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=SESSION_PREFIX, dir=self.root))
            fd = _try_lock(folder / LOCK_NAME)
            if fd is None:
                shutil.rmtree(folder, ignore_errors=True)
                raise OSError(f"cannot lock the autosave folder {folder}")
            self.dir, self._fd = folder, fd
        return self.dir / RECOVERY_NAME

    def clear(self) -> None:
        """Drop the recovery file (everything is saved now); the slot stays."""
        p = self.path
        if p is not None:
            try:
                p.unlink()
            except OSError:
                pass

    def adopt(self, orphan: Orphan) -> Path:
        """Make a restored crashed session's recovery file this studio's own (until the next
        autosave replaces it): the restored work is never without a recovery file."""
        target = self.claim()
        try:
            os.replace(orphan.project, target)
        except OSError:
            pass
        discard([orphan])
        return target

    def remove(self) -> None:
        """The studio quits cleanly: the slot and its recovery file go."""
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        _close(self._fd)
        self.dir, self._fd = None, None
