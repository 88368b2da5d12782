"""Reading the user's settings file (QSettings) at the boundary: it is a file on disk like any
other, so a value of the wrong type, undecodable JSON or a folder that no longer exists gives
the default, never an exception."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_JSON = 1 << 20  # characters: the studio writes a few hundred


def setting_text(settings: Any, key: str, default: str = "") -> str:
    """The setting as a string, or `default` when it is missing or not a string."""
    value = settings.value(key, default)
    return value if isinstance(value, str) else default


def setting_folder(settings: Any, key: str) -> str:
    """A remembered folder that still exists, else the home folder (where file dialogs start)."""
    value = setting_text(settings, key)
    try:
        if value and "\x00" not in value and Path(value).is_dir():
            return value
    except (OSError, ValueError):
        pass
    return str(Path.home())


def setting_json(settings: Any, key: str, default: Any = None, kind: type | tuple[type, ...] = object) -> Any:
    """The setting decoded as JSON when it is a string of at most `MAX_JSON` characters that
    decodes (without recursing too deep) to an instance of `kind`; `default` otherwise."""
    raw = setting_text(settings, key)
    if not raw or len(raw) > MAX_JSON:
        return default
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return default
    return value if isinstance(value, kind) else default
