"""A canvas layer and its settings: the limits, colours, gradient maps, palettes, levels and
the frozen :class:`Layer` (every edit replaces it with a modified copy).  See :mod:`studio.canvas`."""

from __future__ import annotations

import dataclasses
import math
import uuid
from types import MappingProxyType
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeAlias

import numpy as np

from studio.canvas.blend import check_mode


MAX_CANVAS_SIZE = 4096
#: Longest side a layer's scaled source may have (guards memory: 8192² RGBA float = 1 GiB).
MAX_SCALED_SIDE = 8192
RESAMPLE_MODES: tuple[str, ...] = ("nearest", "bilinear", "bicubic")
TILING_MODES: tuple[str | None, ...] = (None, "plain", "mirror")
#: Luminance weights of W3C Compositing § "Non-separable blend modes" (Lum).
LUMA_WEIGHTS = (0.3, 0.59, 0.11)
HISTORY_LIMIT = 500
#: Pixels per horizontal band when blending and finishing (see ``_bands``).
BAND_PIXELS = 1 << 16

RGB: TypeAlias = tuple[float, float, float]
RGBA: TypeAlias = tuple[float, float, float, float]


def parse_colour(value: Any, *, alpha: bool = False) -> tuple[float, ...]:
    """A colour as a tuple of floats in [0, 1].

    Accepts ``"#rrggbb"`` / ``"#rrggbbaa"`` strings or sequences of 3 (or 4)
    floats in [0, 1].  Returns RGB, or RGBA when ``alpha`` (alpha defaults to 1).
    """
    if isinstance(value, str):
        text = value.lstrip("#")
        if len(text) not in (6, 8):
            raise ValueError(f"bad colour string {value!r}")
        comps = [int(text[i : i + 2], 16) / 255.0 for i in range(0, len(text), 2)]
    else:
        comps = [float(c) for c in value]
    if len(comps) not in (3, 4) or not all(0.0 <= c <= 1.0 for c in comps):
        raise ValueError(f"colour must be 3 or 4 components in [0, 1], got {value!r}")
    if alpha:
        return tuple(comps) if len(comps) == 4 else (*comps, 1.0)
    if len(comps) == 4:
        raise ValueError(f"expected an RGB colour, got RGBA {value!r}")
    return tuple(comps)


@dataclass(frozen=True)
class GradientMap:
    """Map luminance through a piecewise-linear gradient.

    ``stops`` are ``(position, rgb)`` pairs, position in [0, 1]; they are sorted
    by position.  Luminance below the first / above the last stop takes that
    stop's colour.  Example: ``GradientMap([(0, (0, 0, 0)), (1, (1, 0, 0))])``
    maps gray 0.5 to (0.5, 0, 0).
    """

    stops: tuple[tuple[float, RGB], ...]

    def __post_init__(self) -> None:
        stops = tuple(sorted(((float(p), parse_colour(c)) for p, c in self.stops), key=lambda s: s[0]))
        if not stops:
            raise ValueError("a gradient map needs at least one stop")
        if not all(0.0 <= p <= 1.0 for p, _ in stops):
            raise ValueError("gradient stop positions must be in [0, 1]")
        object.__setattr__(self, "stops", stops)

    def to_dict(self) -> dict[str, Any]:
        return {"gradient": [[p, list(c)] for p, c in self.stops]}


@dataclass(frozen=True)
class Palette:
    """Posterise luminance into ``len(colours)`` equal bands, darkest band first.

    Band ``i`` covers luminance ``[i/N, (i+1)/N)`` (the last band includes 1.0)
    and is painted ``colours[i]``.
    """

    colours: tuple[RGB, ...]

    def __post_init__(self) -> None:
        colours = tuple(parse_colour(c) for c in self.colours)
        if not colours:
            raise ValueError("a palette needs at least one colour")
        object.__setattr__(self, "colours", colours)

    def to_dict(self) -> dict[str, Any]:
        return {"palette": [list(c) for c in self.colours]}


#: A layer's colourise setting.
Colourise: TypeAlias = "GradientMap | Palette | None"


def coerce_colourise(value: Any) -> GradientMap | Palette | None:
    """Accept a :class:`GradientMap`, :class:`Palette`, ``None``, their ``to_dict()``
    forms, a list of ``(position, rgb)`` pairs (gradient) or a list of colours (palette)."""
    if value is None or isinstance(value, (GradientMap, Palette)):
        return value
    if isinstance(value, Mapping):
        if "gradient" in value:
            return GradientMap(tuple((p, c) for p, c in value["gradient"]))
        if "palette" in value:
            return Palette(tuple(value["palette"]))
        raise ValueError(f"bad colourise mapping {value!r}")
    items = list(value)
    if items and all(_looks_like_colour(it) for it in items):
        return Palette(tuple(items))
    return GradientMap(tuple((p, c) for p, c in items))


def _looks_like_colour(item: Any) -> bool:
    """``"#rrggbb"`` or three numbers (as opposed to a ``(position, colour)`` stop)."""
    if isinstance(item, str):
        return True
    return len(item) == 3 and all(isinstance(c, (int, float, np.number)) for c in item)


@dataclass(frozen=True)
class Levels:
    """Photoshop-style levels on RGB (alpha untouched), all values in [0, 1].

    ``out = out_black + (out_white − out_black) · clip((x − in_black) / (in_white − in_black), 0, 1) ** (1 / gamma)``

    ``gamma > 1`` brightens the midtones, ``< 1`` darkens them.
    """

    in_black: float = 0.0
    in_white: float = 1.0
    gamma: float = 1.0
    out_black: float = 0.0
    out_white: float = 1.0

    def __post_init__(self) -> None:
        for name in ("in_black", "in_white", "gamma", "out_black", "out_white"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if not 0.0 <= self.in_black < self.in_white <= 1.0:
            raise ValueError("levels need 0 <= in_black < in_white <= 1")
        if not (0.0 < self.gamma < math.inf):
            raise ValueError("levels gamma must be positive and finite")
        if not (0.0 <= self.out_black <= 1.0 and 0.0 <= self.out_white <= 1.0):
            raise ValueError("levels output range must be in [0, 1]")

    @property
    def is_identity(self) -> bool:
        return self == Levels()

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def coerce_levels(value: Any) -> Levels:
    """Accept :class:`Levels`, ``None`` (identity), a mapping or a 5-sequence."""
    if isinstance(value, Levels):
        return value
    if value is None:
        return Levels()
    if isinstance(value, Mapping):
        return Levels(**value)
    return Levels(*value)


# --------------------------------------------------------------------------
# Layer
# --------------------------------------------------------------------------


def _readonly_pixels(pixels: Any, what: str) -> np.ndarray:
    """Validate a pixel array and return it as a read-only ``H×W×C`` array.

    Already-valid read-only arrays are returned as they are (same object), so
    ``dataclasses.replace`` keeps their identity and the render cache stays warm.
    """
    a = pixels if isinstance(pixels, np.ndarray) else np.asarray(pixels)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{what} must be H×W×{{1,2,3,4}} (or H×W), got shape {a.shape}")
    if not (a.dtype in (np.uint8, np.uint16, np.bool_) or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"{what} dtype {a.dtype} unsupported; use uint8, uint16, bool or float")
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False, kw_only=True)
class Layer:
    """One layer of the composition.  Immutable: edit through :class:`Canvas`
    (or ``dataclasses.replace`` for a detached copy).

    Attributes
    ----------
    id, name:
        Stable identity (hex uuid by default) and display name.
    source:
        Pixels, ``H×W×{1,2,3,4}`` uint8/uint16/bool/float (see module docs).
        May be omitted when ``frames`` is given (it then is ``frames[0]``).
    provenance:
        Where the pixels came from: model kind, checkpoint hash, seed, steps,
        temperature, ... (JSON-serialisable values).  Written into exports.
    blend_mode, opacity, visible:
        One of :data:`studio.canvas.blend.BLEND_MODES`; opacity in [0, 1].
    x, y, scale, resample:
        Placement of the scaled source's top-left corner on the canvas (pixels,
        may be negative), uniform scale factor (> 0) and the resampling filter.
    tiling:
        ``None`` (place once), ``"plain"`` (repeat the scaled source over the
        whole canvas, tile origin at (x, y)) or ``"mirror"`` (odd tiles flipped
        horizontally / vertically, so every tile edge is seamless).
    colourise, invert, levels:
        Colour operations (see :class:`GradientMap`, :class:`Palette`, :class:`Levels`).
    frames, frame_index:
        Animated sources: a tuple of pixel arrays (same rules as ``source``) and
        the frame shown.
    """

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    name: str = "Layer"
    source: np.ndarray | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    blend_mode: str = "normal"
    opacity: float = 1.0
    visible: bool = True
    x: int = 0
    y: int = 0
    scale: float = 1.0
    resample: str = "bilinear"
    tiling: str | None = None
    colourise: Colourise = None
    invert: bool = False
    levels: Levels = field(default_factory=Levels)
    frames: tuple[np.ndarray, ...] = ()
    frame_index: int = 0

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        frames = tuple(_readonly_pixels(f, f"frame {i}") for i, f in enumerate(self.frames))
        set_("frames", frames)
        if self.source is None:
            if not frames:
                raise ValueError("a layer needs source pixels or frames")
            set_("source", frames[0])
        else:
            set_("source", _readonly_pixels(self.source, "source"))
        if frames and not 0 <= self.frame_index < len(frames):
            raise ValueError(f"frame_index {self.frame_index} out of range for {len(frames)} frames")
        if not frames and self.frame_index != 0:
            raise ValueError("frame_index must be 0 for a layer without frames")
        check_mode(self.blend_mode)
        set_("opacity", float(self.opacity))
        if not 0.0 <= self.opacity <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {self.opacity}")
        set_("visible", bool(self.visible))
        set_("invert", bool(self.invert))
        for name in ("x", "y"):
            value = getattr(self, name)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer pixel offset, got {value!r}")
            set_(name, int(value))
        set_("scale", float(self.scale))
        if not (0.0 < self.scale < math.inf):
            raise ValueError(f"scale must be positive and finite, got {self.scale}")
        h, w = self.pixels.shape[:2]
        if max(h, w) * self.scale > MAX_SCALED_SIDE + 0.5:
            raise ValueError(f"scaled layer would exceed {MAX_SCALED_SIDE} px per side")
        if self.resample not in RESAMPLE_MODES:
            raise ValueError(f"resample must be one of {RESAMPLE_MODES}, got {self.resample!r}")
        if self.tiling not in TILING_MODES:
            raise ValueError(f"tiling must be one of {TILING_MODES}, got {self.tiling!r}")
        set_("colourise", coerce_colourise(self.colourise))
        set_("levels", coerce_levels(self.levels))
        if not isinstance(self.provenance, MappingProxyType):
            # read-only view of a private copy: all versions of a layer share it
            set_("provenance", MappingProxyType(dict(self.provenance)))

    @property
    def pixels(self) -> np.ndarray:
        """The pixels currently shown: ``frames[frame_index]``, or ``source``."""
        return self.frames[self.frame_index] if self.frames else self.source  # type: ignore[return-value]

    @property
    def scaled_size(self) -> tuple[int, int]:
        """``(width, height)`` of the source after scaling (at least 1×1)."""
        h, w = self.pixels.shape[:2]
        if self.scale == 1.0:
            return w, h
        return max(1, round(w * self.scale)), max(1, round(h * self.scale))

    def blend_settings(self) -> dict[str, Any]:
        """Every setting that decides how the layer lands on the canvas (JSON-friendly)."""
        return {
            "mode": self.blend_mode,
            "opacity": self.opacity,
            "visible": self.visible,
            "x": self.x,
            "y": self.y,
            "scale": self.scale,
            "resample": self.resample,
            "tiling": self.tiling,
            "colourise": None if self.colourise is None else self.colourise.to_dict(),
            "invert": self.invert,
            "levels": self.levels.to_dict(),
            "frame_index": self.frame_index,
        }

    def settings(self) -> dict[str, Any]:
        """All non-pixel state: identity, provenance and :meth:`blend_settings`."""
        return {
            "id": self.id,
            "name": self.name,
            "provenance": dict(self.provenance),
            "frames": len(self.frames),
            **self.blend_settings(),
        }
