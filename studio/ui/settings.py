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


# ------------------------------------------------------------------------------------ exports
EXPORT_DIR_KEY = "export/last_dir"
EXPORT_SCALE_KEY = "export/scale"
EXPORT_SMOOTH_KEY = "export/smooth"
DEFAULT_EXPORT_SCALE = 4  # a 28 px dream exported at 112 px; 1 keeps the model's own pixels


class ExportPrefs:
    """Where the studio's exports go and how big they are: the last export folder (every
    export dialog opens there and remembers where it saved) and the export scale (×1, ×2, ×4,
    ×8; nearest or smooth) that grids, chains, strips and animations are written at.

    Kept in the user's settings once the main window :meth:`attach`-es them; a view built on
    its own (tests, scripts) keeps them in memory, never in the user's file."""

    def __init__(self, settings: Any = None) -> None:
        self._memory: dict[str, Any] = {}
        self.settings = settings

    def attach(self, settings: Any) -> None:
        self.settings = settings

    def _get(self, key: str) -> Any:
        return self._memory.get(key) if self.settings is None else self.settings.value(key)

    def _set(self, key: str, value: Any) -> None:
        if self.settings is None:
            self._memory[key] = value
        else:
            self.settings.setValue(key, value)

    def folder(self) -> str:
        """The folder the last export went to, if it still exists; else the home folder."""
        value = self._get(EXPORT_DIR_KEY)
        try:
            if isinstance(value, str) and value and "\x00" not in value and Path(value).is_dir():
                return value
        except (OSError, ValueError):
            pass
        return str(Path.home())

    def start(self, name: str) -> str:
        """Where a save dialog starts: ``name`` in the remembered folder."""
        return str(Path(self.folder()) / name)

    def remember(self, path: str | Path, *, is_folder: bool = False) -> None:
        """Remember the folder of an export (``path`` a file, or the folder itself)."""
        path = Path(path)
        self._set(EXPORT_DIR_KEY, str(path if is_folder else path.parent))

    def scale(self) -> tuple[int, bool]:
        """(factor, smooth): the export scale, a factor of 1, 2, 4 or 8 (a bad value: the default)."""
        from studio.images import EXPORT_SCALES

        raw = self._get(EXPORT_SCALE_KEY)
        try:
            factor = int(raw) if raw is not None and not isinstance(raw, bool) else DEFAULT_EXPORT_SCALE
        except (TypeError, ValueError):
            factor = DEFAULT_EXPORT_SCALE
        if factor not in EXPORT_SCALES:
            factor = DEFAULT_EXPORT_SCALE
        smooth = self._get(EXPORT_SMOOTH_KEY)
        return factor, smooth in (True, "true", "1", 1)

    def set_scale(self, factor: int, smooth: bool | None = None) -> None:
        from studio.images import EXPORT_SCALES

        if int(factor) not in EXPORT_SCALES:
            raise ValueError(f"the export scale is one of {', '.join(f'×{s}' for s in EXPORT_SCALES)}")
        self._set(EXPORT_SCALE_KEY, int(factor))
        if smooth is not None:
            self._set(EXPORT_SMOOTH_KEY, bool(smooth))


_EXPORT_PREFS = ExportPrefs()


def export_prefs() -> ExportPrefs:
    """The studio's one :class:`ExportPrefs` (the main window attaches its settings to it)."""
    return _EXPORT_PREFS
