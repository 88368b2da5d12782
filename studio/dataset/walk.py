"""Scanning: the image files under the sources, walked with bounds, links checked, duplicates
removed (:func:`scan`).  See :mod:`studio.dataset`."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.dataset.records import Rejected


#: File name endings treated as images when walking folders (compared case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff"}
)


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
