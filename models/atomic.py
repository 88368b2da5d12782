"""Files written whole or not at all, and nothing left behind when a writer dies.

Every save in Harmonium (checkpoints, projects, exported images) goes through here. The bytes
go to a temporary file beside the target, ``.NAME.<pid>.<random>.tmp`` (or, for writers that
take a file name and make temporaries of their own, into a folder of that name), are flushed
to disk, and the file is renamed over the target in one step. The rename replaces whatever the target
name held, a symbolic link included, so a link planted at the target is replaced, never
written through. On any failure (an exception, a KeyboardInterrupt) the temporary is removed.

A writer killed outright (SIGKILL, power cut) cannot clean up, so each write in flight is noted
in a journal (``<data dir>/pending/<pid>.<random>``, holding the temporary's path) that the write
removes when it ends. The next start of the CLI or the studio calls :func:`sweep_stale`, which
removes the temporaries of writers that are no longer running, and the work folders
``harmonium-<purpose>-<pid>-*`` such writers left in the temp dir (see :func:`work_dir`).
Only our own files are touched: our name patterns, owned by this user, written by a process
that has ended (its PID is gone, or the PID now belongs to a process started after the file).

Pure standard library: no torch, no Qt; ``models`` and ``studio`` both use it.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

__all__ = ["atomic_open", "atomic_write", "data_dir", "recovery_dir", "sweep_stale", "temp_name", "work_dir"]

APP = "harmonium"
#: ``.NAME.<pid>.<12 hex>.tmp``: what :func:`temp_name` makes (NAME may be shortened); a file
#: (:func:`atomic_open`) or a folder holding the file being written (:func:`atomic_write`).
TEMP_RE = re.compile(r"\..*\.(\d+)\.[0-9a-f]{12}\.tmp", re.S)
#: ``harmonium-<purpose>-<pid>-<random>``: what :func:`work_dir` makes in the temp dir.
WORK_DIR_RE = re.compile(r"harmonium-([a-z]+)-(\d+)-[A-Za-z0-9_]+")
_NOTE_RE = re.compile(r"(\d+)\.[0-9a-f]{12}")
_NAME_BYTES = 200  # room for the suffix within the usual 255-byte name limit


# ------------------------------------------------------------------------------ places
def data_dir() -> Path:
    """The user's data folder for Harmonium: ``$XDG_DATA_HOME/harmonium`` when XDG_DATA_HOME
    is set (any platform), else ``~/.local/share/harmonium`` (Linux and other Unixes),
    ``~/Library/Application Support/Harmonium`` (macOS) or ``%LOCALAPPDATA%\\Harmonium``
    (Windows). Not created here."""
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is invalid, ignore it
        return Path(xdg) / APP
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "Harmonium"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Harmonium"
    return Path.home() / ".local" / "share" / APP


def recovery_dir() -> Path:
    """Where work that could not be saved where it was meant to go is put instead."""
    return data_dir() / "recovery"


def _journal_dir() -> Path:
    return data_dir() / "pending"


def temp_name(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.<pid>.<random>.tmp`` (hidden, and
    recognisable by :func:`sweep_stale` as this process's)."""
    path = Path(path)
    name = path.name
    while len(os.fsencode(name)) > _NAME_BYTES:
        name = name[:-1]
    return path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def work_dir(purpose: str) -> tempfile.TemporaryDirectory:
    """A private temporary folder ``harmonium-<purpose>-<pid>-XXXXXXXX`` (a context manager that
    removes it on exit); one that a killed process leaves behind is removed by the next
    :func:`sweep_stale`. ``purpose`` is lower-case letters, e.g. "save"."""
    if not re.fullmatch(r"[a-z]+", purpose):
        raise ValueError(f"a work folder's purpose is lower-case letters, got {purpose!r}")
    return tempfile.TemporaryDirectory(prefix=f"{APP}-{purpose}-{os.getpid()}-")


# ------------------------------------------------------------------------------ writes
def _note(tmp: Path) -> Path | None:
    """Record ``tmp`` in the journal of writes in flight; None when the journal cannot be
    written (a read-only home): the write goes on, only the after-crash sweep loses it."""
    try:
        folder = _journal_dir()
        folder.mkdir(parents=True, exist_ok=True)
        note = folder / f"{os.getpid()}.{secrets.token_hex(6)}"
        fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.fsencode(os.path.abspath(tmp)))
        finally:
            os.close(fd)
        return note
    except OSError:
        return None


def _unlink(path: Path | None) -> None:
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; best effort: some file systems refuse)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _in_flight(path: Path) -> Iterator[tuple[Path, int]]:
    """Create the temporary (exclusively: never an existing file or link) and yield it with an
    open descriptor; on a clean exit it is renamed over ``path``, on any exception removed."""
    tmp = temp_name(path)
    note = _note(tmp)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except BaseException:
        _unlink(note)
        raise
    try:
        yield tmp, fd
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    finally:
        _unlink(note)
    _sync_folder(path.parent)


@contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for binary writing; on success it is fsynced and
    renamed over ``path``, on any exception removed (``path`` is then as it was). The file gets
    ordinary permissions (0o666 minus the umask). The folder must exist."""
    path = Path(path)
    with _in_flight(path) as (_, fd), os.fdopen(fd, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(file)`` to write a file by its name (for writers such as safetensors that
    take a path), fsync it and rename it over ``path``; on any exception nothing is left and
    ``path`` is as it was. Creates the folder.

    The file is written inside a private temporary folder beside ``path`` (named as
    :func:`temp_name` names a temporary, and journalled), because such writers make their own
    temporaries beside the file they are given (safetensors writes ``.tmpXXXXXX`` and renames
    it): those then lie in our folder, which is removed on failure, or swept after a kill -9."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    box = temp_name(path)
    note = _note(box)
    try:
        os.mkdir(box, 0o700)
    except BaseException:
        _unlink(note)
        raise
    try:
        inner = box / path.name
        write(inner)
        fd = os.open(inner, os.O_RDWR | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(inner, path)
    finally:
        shutil.rmtree(box, ignore_errors=True)
        _unlink(note)
    _sync_folder(path.parent)
    return path


# ------------------------------------------------------------------------------ sweep
def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, ±1 s), on Linux; else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime, in clock ticks after boot
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def writer_alive(pid: int, written: float) -> bool:
    """Whether the process that wrote a file last modified at ``written`` (a time) under PID
    ``pid`` may still be running. Unsure is alive: only the certainly dead are swept."""
    if pid <= 0 or pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no safe, cheap check here (os.kill would terminate): keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process holds the PID
    except (OSError, OverflowError):
        return True
    started = _start_time(pid)
    return started is None or started <= written + 2.0  # a PID reused after the write: not it


def _ours(st: os.stat_result) -> bool:
    return not hasattr(os, "getuid") or st.st_uid == os.getuid()


def _sweep_journal(removed: list[Path]) -> None:
    folder = _journal_dir()
    try:
        notes = list(os.scandir(folder))
    except OSError:
        return
    for entry in notes:
        m = _NOTE_RE.fullmatch(entry.name)
        if not m:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_file(follow_symlinks=False) or writer_alive(int(m[1]), st.st_mtime):
                continue
            with open(entry.path, "rb") as f:
                target = Path(os.fsdecode(f.read(8192)))
        except OSError:
            continue
        t = TEMP_RE.fullmatch(target.name)
        if t and t[1] == m[1] and target.is_absolute():
            try:
                tst = os.lstat(target)  # never through a link: only our own file or folder
                if _ours(tst) and stat.S_ISREG(tst.st_mode):
                    os.unlink(target)
                    removed.append(target)
                elif _ours(tst) and stat.S_ISDIR(tst.st_mode):
                    shutil.rmtree(target, ignore_errors=True)
                    removed.append(target)
            except OSError:
                pass
        _unlink(Path(entry.path))


#: Work folders named before they carried the writer's PID: ``harmonium-save-XXXXXXXX`` lived
#: only while a project was being saved, so one untouched for a day is a killed save's.
_LEGACY_SAVE_RE = re.compile(r"harmonium-save-[a-z0-9_]{8}")
_LEGACY_AGE = 24 * 3600.0


def _sweep_temp_dir(root: Path, removed: list[Path]) -> None:
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        m = WORK_DIR_RE.fullmatch(entry.name)
        legacy = m is None and _LEGACY_SAVE_RE.fullmatch(entry.name) is not None
        if not (m or legacy) or (m and m[1] == "recovery"):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not entry.is_dir(follow_symlinks=False) or not _ours(st):
                continue
        except OSError:
            continue
        if (now - st.st_mtime < _LEGACY_AGE) if legacy else writer_alive(int(m[2]), st.st_mtime):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))


def sweep_stale(temp_root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove what writers that are no longer running left behind: the temporaries of atomic
    writes named in the journal (beside their targets, wherever those are) and the
    ``harmonium-<purpose>-<pid>-*`` work folders in the temp dir (``temp_root``, default
    ``tempfile.gettempdir()``). Returns what was removed. Never raises for a file it cannot
    read or remove; costs one listing of the journal and one of the temp dir. Call it when
    the CLI or the studio starts."""
    removed: list[Path] = []
    _sweep_journal(removed)
    if temp_root is None:
        try:
            temp_root = tempfile.gettempdir()
        except OSError:  # no writable temp dir (a full disk): nothing of ours can be there either
            return removed
    _sweep_temp_dir(Path(temp_root), removed)
    return removed


def unique_path(folder: Path, name: str) -> Path:
    """``folder/name`` with a timestamp before the suffix (and a counter if that is taken):
    a recovery copy never replaces an earlier one."""
    stem, suffix = os.path.splitext(name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stem}-{stamp}{suffix}"
    n = 2
    while os.path.lexists(path):
        path = folder / f"{stem}-{stamp}-{n}{suffix}"
        n += 1
    return path
