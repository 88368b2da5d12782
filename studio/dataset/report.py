"""What a scan found, for people and for scripts (:func:`scan_report`, :func:`display_path`).
See :mod:`studio.dataset`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from studio.dataset.decode import _human_pixels
from studio.dataset.load import load_images
from studio.dataset.records import ImageSet, Preprocess
from studio.dataset.walk import _as_sources


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
