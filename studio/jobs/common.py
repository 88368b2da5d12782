"""Small helpers of the jobs and the session: durations and errors for people."""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """``75`` → ``1:15``; ``3725`` → ``1 h 02 min``; NaN → ``…``."""
    if seconds is None or not math.isfinite(seconds):
        return "…"
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600} h {(s % 3600) // 60:02d} min"
    return f"{s // 60}:{s % 60:02d}"


def describe_error(exc: BaseException) -> str:
    """A message for people about an exception that ended a training job."""
    name = type(exc).__name__
    text = str(exc).strip()
    low = text.lower()
    if isinstance(exc, MemoryError) or name == "OutOfMemoryError" or "out of memory" in low:
        return ("Out of memory while training. Try a smaller batch size, fewer hidden units or "
                f"latent dimensions, or smaller images. ({text or name})")
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return f"A file could not be read: {text or name}"
    if isinstance(exc, ValueError):
        return f"The model could not be trained with these settings: {text}"
    return f"Training stopped because of an error: {text or name} ({name})"
