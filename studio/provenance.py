"""Reading back what made an image the studio exported (no Qt): a PNG dropped on the window is
checked here before anything is offered, as ComfyUI does with the PNGs it writes.

:func:`read_studio_png` validates the file at the boundary: a PNG (by its bytes, not its name)
of bounded size, whose ``harmonium`` provenance chunk (``studio.images.save_png``) decodes to a
dictionary whose known fields have the types the studio writes. Anything else is refused with
one sentence (:class:`ProvenanceError`); a PNG without the studio's chunk is simply not one of
its exports (None). :func:`find_origin` then names what in the session made it: the run whose
checkpoint hash, or whose weights' hash, the provenance records, or a checkpoint file on disk
that still has the recorded hash."""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from studio.images import PROVENANCE_KEY

__all__ = ["ProvenanceError", "Origin", "read_studio_png", "find_origin", "summary_lines", "MAX_PNG_BYTES"]

MAX_PNG_BYTES = 256 << 20  # a studio export is far smaller; a larger file is not read
MAX_PNG_PIXELS = 64 << 20  # width × height beyond which the file is not decoded
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ProvenanceError(ValueError):
    """A dropped file that claims to be, or looks like, a studio export but cannot be read as one."""


def _check_fields(prov: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The provenance with its known fields checked (types and ranges the studio writes)."""
    def bad(key: str, what: str) -> ProvenanceError:
        return ProvenanceError(f"{name}'s Harmonium provenance has a {key} that is not {what}")

    for key in ("checkpoint_sha256", "weights_sha256"):
        value = prov.get(key)
        if value is not None and not (isinstance(value, str) and _SHA256.fullmatch(value)):
            raise bad(key, "a SHA-256 hash")
    for key in ("seed", "steps", "chain", "n"):
        value = prov.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise bad(key, "a whole number of at least 0")
    t = prov.get("temperature")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0):
        raise bad("temperature", "a positive number")
    for key in ("model", "kind", "source", "checkpoint", "title", "show"):
        value = prov.get(key)
        if value is not None and not isinstance(value, str):
            raise bad(key, "text")
    return dict(prov)


def read_studio_png(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The provenance of a PNG the studio exported; None for a file that is not a PNG or a PNG
    without the studio's provenance (an ordinary image); :class:`ProvenanceError` (one sentence)
    for a PNG that cannot be read or whose provenance is damaged."""
    path = Path(path)
    name = path.name
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            if f.read(len(_PNG_SIGNATURE)) != _PNG_SIGNATURE:
                return None
        size = path.stat().st_size
    except OSError as exc:
        raise ProvenanceError(f"{name} could not be read ({exc.strerror or exc})") from None
    if size > MAX_PNG_BYTES:
        return None  # far larger than any export: treat it as an ordinary image
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=["PNG"]) as im:
            if im.width * im.height > MAX_PNG_PIXELS:
                return None
            im.load()  # text chunks after the pixels are read with them (Pillow bounds their size)
            text = dict(getattr(im, "text", {}) or {})
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ProvenanceError(f"{name} is a damaged PNG ({str(exc).rstrip('.') or type(exc).__name__})") from None
    raw = text.get(PROVENANCE_KEY)
    if raw is None:
        return None
    try:
        prov = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProvenanceError(f"{name}'s Harmonium provenance is not readable JSON") from None
    if not isinstance(prov, dict):
        raise ProvenanceError(f"{name}'s Harmonium provenance is not a set of named fields")
    return _check_fields(prov, name)


@dataclass
class Origin:
    """What made an exported image, as far as this session can tell."""

    provenance: dict[str, Any]
    job: Any = None  # the session's run whose model made it
    matched_by: str = ""  # "checkpoint" or "weights"
    checkpoint_file: Path | None = None  # a checkpoint on disk with the recorded hash (not in the session)
    notes: list[str] = field(default_factory=list)

    @property
    def can_make_again(self) -> bool:
        """A canvas layer sampled from a model the session has, with its seed and settings."""
        p = self.provenance
        return (self.job is not None and p.get("source") in ("texture", "model-frame")
                and p.get("seed") is not None and p.get("steps") is not None)


def _job_weights_hash(job: Any) -> str | None:
    model = getattr(job, "model", None)
    if model is None:
        return None
    from studio.canvas.sources import weights_sha256

    lock = getattr(job, "step_lock", None)
    if lock is None:
        return weights_sha256(model)
    with lock:
        return weights_sha256(model)


def find_origin(provenance: Mapping[str, Any], jobs: Iterable[Any]) -> Origin:
    """Match the provenance against the session's runs (``jobs``: objects with ``model``,
    ``checkpoint`` (opened ones, with ``sha256``), ``step_lock``): by checkpoint hash first, then
    by the weights' hash; failing both, a checkpoint file the provenance names that still has
    the recorded hash."""
    prov = dict(provenance)
    origin = Origin(prov)
    sha, weights = prov.get("checkpoint_sha256"), prov.get("weights_sha256")
    jobs = list(jobs)
    if sha:
        for job in jobs:
            if getattr(getattr(job, "checkpoint", None), "sha256", None) == sha:
                origin.job, origin.matched_by = job, "checkpoint"
                return origin
    if weights:
        for job in jobs:
            if _job_weights_hash(job) == weights:
                origin.job, origin.matched_by = job, "weights"
                return origin
    named = prov.get("checkpoint")
    if sha and isinstance(named, str) and named:
        from models.checkpoint import file_sha256

        try:
            candidate = Path(named)
            if candidate.is_file() and file_sha256(candidate) == sha:
                origin.checkpoint_file = candidate
            else:
                origin.notes.append(f"{candidate.name} is no longer the checkpoint that made it")
        except (OSError, ValueError):
            origin.notes.append("the checkpoint it names cannot be read")
    return origin


def summary_lines(provenance: Mapping[str, Any]) -> list[str]:
    """What made the image, one line per fact present (for the drop dialog)."""
    p = provenance
    lines = []
    what = p.get("source") or p.get("kind")
    if p.get("model"):
        lines.append(f"Model: {p['model']}" + (f" ({p['title']})" if p.get("title") else ""))
    if what:
        lines.append(f"Made as: {what}")
    if p.get("checkpoint_sha256"):
        lines.append(f"Checkpoint: {p['checkpoint_sha256'][:16]}…")
    elif p.get("weights_sha256"):
        lines.append(f"Weights: {p['weights_sha256'][:16]}… (not saved as a checkpoint then)")
    settings = [f"{k} {p[k]}" for k in ("seed", "steps", "temperature", "show") if p.get(k) is not None]
    if settings:
        lines.append("Settings: " + ", ".join(settings))
    if p.get("from_file") or p.get("to_file"):
        lines.append(f"Between: {p.get('from_file', '?')} → {p.get('to_file', '?')}")
    if isinstance(p.get("layers"), list):
        lines.append(f"Canvas composite of {len(p['layers'])} layers")
    return lines
