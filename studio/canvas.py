"""The Canvas composition model: layers, their settings, undo/redo and rendering.

No Qt here.  A Qt view listens through :attr:`Canvas.events` (a plain callback
list) and never renders on the UI thread: a worker renders the newest immutable
:meth:`Canvas.snapshot` (:meth:`Canvas.render`, cached and incremental, serves
scripts, exports and tests).

Model
-----
* :class:`Layer` is a frozen dataclass.  Every edit replaces a layer with a
  modified copy (``dataclasses.replace``), so a :class:`CanvasState` (a tuple of
  layers plus the canvas size and background) is an immutable value.  Undo and
  redo swap whole states, which restores the exact previous state by
  construction; pixel arrays are shared, never copied.
* Layer source pixels are ``H×W×{1,2,3,4}`` (or ``H×W``) uint8, uint16, bool or
  float arrays (float in [0, 1]; 1 channel = gray, 2 = gray+alpha).  They are
  stored read-only and must not be mutated afterwards: the render cache keys on
  the array's identity.  To change pixels, set a new array.

Per-layer pipeline (colour operations run after resampling, on the scaled
tile, so a gradient map over a bicubic-upscaled texture stays smooth; tiling
and placement are per-pixel copies, so the result equals applying the colour
operations to the placed layer)::

    source → float [0,1] → scale (nearest | bilinear | bicubic)
           → colourise (gradient map | palette) → invert → levels
           → tile (plain | mirror) or place at (x, y) → blend onto the canvas

Rendering output
----------------
:meth:`Canvas.render` returns an ``H×W×4`` **float32, straight (non-premultiplied)
RGBA** array in [0, 1], read-only (it is the cached value; copy it to modify).
:meth:`Canvas.render_uint8` gives the same as uint8.

Caching (see :class:`Renderer`): every pipeline stage is cached in a byte-bounded
LRU keyed by the settings that affect it; composites of the layers *below* the
most recently edited layer are cached as premultiplied snapshots; the final
composite is cached by the full key, so undo is a cache hit.
"""

from __future__ import annotations

import dataclasses
import math
import mmap
import threading
import uuid
from types import MappingProxyType
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeAlias

import numpy as np
import torch
import torch.nn.functional as F

from studio.blend import TINY_ALPHA, check_mode, composite_into, to_float

__all__ = [
    "MAX_CANVAS_SIZE",
    "MAX_SCALED_SIDE",
    "RESAMPLE_MODES",
    "TILING_MODES",
    "GradientMap",
    "Palette",
    "Levels",
    "Layer",
    "CanvasState",
    "CanvasEvent",
    "Signal",
    "Canvas",
    "Renderer",
    "parse_colour",
]

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


# --------------------------------------------------------------------------
# Colours and colour settings
# --------------------------------------------------------------------------


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
        One of :data:`studio.blend.BLEND_MODES`; opacity in [0, 1].
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


# --------------------------------------------------------------------------
# Canvas state, events
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class CanvasState:
    """An immutable snapshot of a canvas: safe to hand to a render thread."""

    width: int
    height: int
    background: RGBA | None
    layers: tuple[Layer, ...]

    def index_of(self, layer_id: str) -> int:
        for i, layer in enumerate(self.layers):
            if layer.id == layer_id:
                return i
        raise KeyError(f"no layer with id {layer_id!r}")


@dataclass(frozen=True)
class CanvasEvent:
    """A change notification.

    ``kind`` is one of ``"layer-added"``, ``"layer-removed"``, ``"layer-changed"``
    (``fields`` names the changed attributes), ``"layers-reordered"``,
    ``"canvas-changed"`` (size or background) and ``"history-changed"`` (undo /
    redo availability or labels).  ``layer_id`` is set for layer events.
    """

    kind: str
    layer_id: str | None = None
    fields: tuple[str, ...] = ()


class Signal:
    """A minimal observer list: ``connect(fn)``, ``disconnect(fn)``, ``emit(event)``."""

    def __init__(self) -> None:
        self._slots: list[Callable[[CanvasEvent], Any]] = []

    def connect(self, fn: Callable[[CanvasEvent], Any]) -> Callable[[CanvasEvent], Any]:
        """Register ``fn`` (returned, so this works as a decorator)."""
        if fn not in self._slots:
            self._slots.append(fn)
        return fn

    def disconnect(self, fn: Callable[[CanvasEvent], Any]) -> None:
        self._slots.remove(fn)

    def emit(self, event: CanvasEvent) -> None:
        for fn in list(self._slots):
            fn(event)


_LAYER_FIELDS = tuple(f.name for f in dataclasses.fields(Layer))


def _diff_events(before: CanvasState, after: CanvasState) -> list[CanvasEvent]:
    """The events that describe going from ``before`` to ``after``."""
    events: list[CanvasEvent] = []
    if (before.width, before.height, before.background) != (after.width, after.height, after.background):
        events.append(CanvasEvent("canvas-changed"))
    old = {layer.id: layer for layer in before.layers}
    new = {layer.id: layer for layer in after.layers}
    events += [CanvasEvent("layer-removed", lid) for lid in old if lid not in new]
    events += [CanvasEvent("layer-added", lid) for lid in new if lid not in old]
    for lid, layer in new.items():
        prev = old.get(lid)
        if prev is not None and prev is not layer:
            changed = tuple(
                name
                for name in _LAYER_FIELDS
                if not _same_value(getattr(prev, name), getattr(layer, name))
            )
            events.append(CanvasEvent("layer-changed", lid, changed))
    common_old = [lid for lid in old if lid in new]
    common_new = [lid for lid in new if lid in old]
    if common_old != common_new:
        events.append(CanvasEvent("layers-reordered"))
    return events


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is b
    if isinstance(a, tuple) and a and isinstance(a[0], np.ndarray):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b))
    return a == b


# --------------------------------------------------------------------------
# Undo stack
# --------------------------------------------------------------------------


@dataclass
class Command:
    """One undoable step: swap the canvas between two immutable states.

    ``merge_key`` lets consecutive edits of the same thing (e.g. dragging an
    opacity slider) collapse into one step.
    """

    label: str
    before: CanvasState
    after: CanvasState
    merge_key: tuple[Any, ...] | None = None

    def do(self, canvas: "Canvas") -> None:
        canvas._apply_state(self.after)

    def undo(self, canvas: "Canvas") -> None:
        canvas._apply_state(self.before)


# --------------------------------------------------------------------------
# Canvas
# --------------------------------------------------------------------------


def _check_size(width: int, height: int) -> tuple[int, int]:
    width, height = int(width), int(height)
    if not (1 <= width <= MAX_CANVAS_SIZE and 1 <= height <= MAX_CANVAS_SIZE):
        raise ValueError(f"canvas size must be within 1..{MAX_CANVAS_SIZE} per side, got {width}×{height}")
    return width, height


def _check_background(background: Any) -> RGBA | None:
    return None if background is None else parse_colour(background, alpha=True)  # type: ignore[return-value]


class Canvas:
    """An ordered stack of layers (index 0 = bottom) with undo/redo and cached rendering.

    All edits go through the undo stack and notify :attr:`events`.  Edit the
    canvas from one thread (the UI thread); rendering of a :meth:`snapshot` may
    happen in any thread (the :class:`Renderer` is locked).
    """

    def __init__(
        self,
        width: int = 1024,
        height: int = 1024,
        background: Any = (1.0, 1.0, 1.0, 1.0),
        *,
        renderer: "Renderer | None" = None,
    ) -> None:
        width, height = _check_size(width, height)
        self._state = CanvasState(width, height, _check_background(background), ())
        self.events = Signal()
        self.renderer = renderer if renderer is not None else Renderer()
        self._undo: list[Command] = []
        self._redo: list[Command] = []
        self._macro_depth = 0
        self._macro_before: CanvasState | None = None
        self._macro_label = ""

    # ---- read access -----------------------------------------------------

    @property
    def width(self) -> int:
        return self._state.width

    @property
    def height(self) -> int:
        return self._state.height

    @property
    def background(self) -> RGBA | None:
        """RGBA floats, or ``None`` for a transparent canvas."""
        return self._state.background

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Layers bottom to top."""
        return self._state.layers

    def snapshot(self) -> CanvasState:
        """The current immutable state (cheap: no pixels are copied)."""
        return self._state

    def layer(self, layer_id: str) -> Layer:
        return self._state.layers[self._state.index_of(layer_id)]

    def index_of(self, layer_id: str) -> int:
        return self._state.index_of(layer_id)

    # ---- layer operations (all undoable) -------------------------------

    def add_layer(self, layer: Layer, index: int | None = None) -> Layer:
        """Insert ``layer`` at ``index`` (default: on top).  Returns it."""
        if any(existing.id == layer.id for existing in self.layers):
            raise ValueError(f"a layer with id {layer.id!r} is already on the canvas")
        layers = list(self.layers)
        index = len(layers) if index is None else self._check_insert_index(index)
        layers.insert(index, layer)
        self._push(f"Add layer “{layer.name}”", self._with_layers(layers))
        return layer

    def remove_layer(self, layer_id: str) -> Layer:
        """Remove a layer; returns the removed layer."""
        layers = list(self.layers)
        removed = layers.pop(self.index_of(layer_id))
        self._push(f"Remove layer “{removed.name}”", self._with_layers(layers))
        return removed

    def reorder_layer(self, layer_id: str, index: int) -> None:
        """Move a layer to stack position ``index`` (0 = bottom; negative counts from the top)."""
        layers = list(self.layers)
        layer = layers.pop(self.index_of(layer_id))
        n = len(layers) + 1
        if not -n <= index < n:
            raise IndexError(f"layer index {index} out of range")
        layers.insert(index % n, layer)
        if tuple(layers) != self.layers:
            self._push(f"Reorder layer “{layer.name}”", self._with_layers(layers))

    def move_layer(self, layer_id: str, x: int, y: int, *, merge: bool = False) -> Layer:
        """Set a layer's position (top-left of its scaled source, or the tile origin)."""
        return self.set_layer(layer_id, merge=merge, x=x, y=y)

    def set_layer(self, layer_id: str, *, merge: bool = False, **changes: Any) -> Layer:
        """Change any layer attributes in one undoable step; returns the new layer.

        ``merge=True`` folds this edit into the previous step when that step
        edited the same attributes of the same layer (slider drags).
        """
        if "id" in changes:
            raise ValueError("a layer's id cannot be changed")
        unknown = set(changes) - set(_LAYER_FIELDS)
        if unknown:
            raise AttributeError(f"unknown layer attribute(s): {', '.join(sorted(unknown))}")
        index = self.index_of(layer_id)
        old = self.layers[index]
        new = dataclasses.replace(old, **changes)
        if all(_same_value(getattr(old, k), getattr(new, k)) for k in changes):
            return old
        layers = list(self.layers)
        layers[index] = new
        names = ", ".join(sorted(changes))
        key = ("set", layer_id, tuple(sorted(changes))) if merge else None
        self._push(f"Change {names} of “{new.name}”", self._with_layers(layers), merge_key=key)
        return new

    def duplicate_layer(self, layer_id: str, name: str | None = None) -> Layer:
        """Copy a layer (sharing its pixels) directly above the original; returns the copy."""
        index = self.index_of(layer_id)
        original = self.layers[index]
        copy = dataclasses.replace(
            original, id=uuid.uuid4().hex, name=name or f"{original.name} copy", provenance=dict(original.provenance)
        )
        layers = list(self.layers)
        layers.insert(index + 1, copy)
        self._push(f"Duplicate layer “{original.name}”", self._with_layers(layers))
        return copy

    def resize(self, width: int, height: int) -> None:
        """Change the canvas size (layers keep their positions)."""
        width, height = _check_size(width, height)
        if (width, height) != (self.width, self.height):
            self._push("Resize canvas", dataclasses.replace(self._state, width=width, height=height))

    def set_background(self, background: Any) -> None:
        """Set the background colour (RGB/RGBA floats or ``"#rrggbb"``), or ``None`` for transparent."""
        bg = _check_background(background)
        if bg != self.background:
            self._push("Change background", dataclasses.replace(self._state, background=bg))

    @contextmanager
    def macro(self, label: str) -> Iterator[None]:
        """Group the operations inside the ``with`` block into one undo step."""
        if self._macro_depth == 0:
            self._macro_before = self._state
            self._macro_label = label
        self._macro_depth += 1
        try:
            yield
        finally:
            self._macro_depth -= 1
            if self._macro_depth == 0:
                before, self._macro_before = self._macro_before, None
                assert before is not None
                if before is not self._state:
                    self._record(Command(self._macro_label, before, self._state))

    # ---- undo / redo -----------------------------------------------------

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_label(self) -> str | None:
        return self._undo[-1].label if self._undo else None

    @property
    def redo_label(self) -> str | None:
        return self._redo[-1].label if self._redo else None

    def undo(self) -> bool:
        """Undo the last step; returns False when there is nothing to undo."""
        return self._travel(self._undo, self._redo, forward=False)

    def redo(self) -> bool:
        """Redo the last undone step; returns False when there is nothing to redo."""
        return self._travel(self._redo, self._undo, forward=True)

    def _travel(self, source: list[Command], target: list[Command], forward: bool) -> bool:
        """Move the newest command of ``source`` to ``target``, doing it again (``forward``) or
        undoing it; False when ``source`` is empty."""
        self._check_not_in_macro()
        if not source:
            return False
        command = source.pop()
        if forward:
            command.do(self)
        else:
            command.undo(self)
        target.append(command)
        self.events.emit(CanvasEvent("history-changed"))
        return True

    def clear_history(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self.events.emit(CanvasEvent("history-changed"))

    def end_merge(self) -> None:
        """Close the last undo step to merging: the next ``merge=True`` edit starts a new
        step.  A view calls it when a gesture (a slider drag) begins or ends, so that
        one drag is one step and two drags are two."""
        if self._undo:
            self._undo[-1].merge_key = None

    # ---- rendering -------------------------------------------------------

    def render(self) -> np.ndarray:
        """The composite: ``H×W×4`` float32 straight RGBA in [0, 1] (read-only, cached)."""
        return self.renderer.render(self._state)

    def render_uint8(self) -> np.ndarray:
        """The composite as ``H×W×4`` uint8 straight RGBA (read-only, cached), e.g. for a ``QImage``."""
        return self.renderer.render_uint8(self._state)

    def render_layer(self, layer: Layer | str, *, apply_opacity: bool = False) -> np.ndarray:
        """One layer alone on a transparent canvas-sized ``H×W×4`` float32 straight RGBA
        array: scaled, colourised, levelled, tiled and placed, but not blended.

        Opacity is left out unless ``apply_opacity`` (exports record it separately).
        Hidden layers render too.
        """
        if isinstance(layer, str):
            layer = self.layer(layer)
        return self.renderer.render_layer(layer, self.width, self.height, apply_opacity=apply_opacity)

    def layer_bounds(self, layer: Layer | str) -> tuple[int, int, int, int] | None:
        """``(x0, y0, x1, y1)`` of the layer's footprint clipped to the canvas, or ``None`` if off-canvas."""
        if isinstance(layer, str):
            layer = self.layer(layer)
        return _footprint(layer, self.width, self.height)

    def render_frames(self, layer_id: str) -> list[np.ndarray]:
        """The composite once per frame of an animated layer (not undoable, no events)."""
        index = self.index_of(layer_id)
        layer = self.layers[index]
        if not layer.frames:
            return [self.render().copy()]
        out = []
        for i in range(len(layer.frames)):
            layers = list(self.layers)
            layers[index] = dataclasses.replace(layer, frame_index=i)
            out.append(self.renderer.render(self._with_layers(layers)).copy())
        return out

    # ---- internals -------------------------------------------------------

    def _with_layers(self, layers: Sequence[Layer]) -> CanvasState:
        return dataclasses.replace(self._state, layers=tuple(layers))

    def _check_insert_index(self, index: int) -> int:
        n = len(self.layers)
        if not -n - 1 <= index <= n:
            raise IndexError(f"layer index {index} out of range")
        return index if index >= 0 else n + 1 + index

    def _check_not_in_macro(self) -> None:
        if self._macro_depth:
            raise RuntimeError("cannot undo or redo inside a macro")

    def _push(self, label: str, after: CanvasState, merge_key: tuple[Any, ...] | None = None) -> None:
        before = self._state
        self._apply_state(after)
        if self._macro_depth == 0:
            self._record(Command(label, before, after, merge_key))

    def _record(self, command: Command) -> None:
        top = self._undo[-1] if self._undo else None
        if (
            command.merge_key is not None
            and top is not None
            and top.merge_key == command.merge_key
            and not self._redo
            and top.after is command.before
        ):
            top.after = command.after
        else:
            self._undo.append(command)
            del self._undo[:-HISTORY_LIMIT]
        self._redo.clear()
        self.events.emit(CanvasEvent("history-changed"))

    def _apply_state(self, state: CanvasState) -> None:
        before, self._state = self._state, state
        for event in _diff_events(before, state):
            self.events.emit(event)


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------


class _Ident:
    """Hashable identity wrapper for a pixel array (holds a reference, so the
    ``id`` cannot be recycled while a cache key containing it is alive)."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ident) and other.obj is self.obj

    def __repr__(self) -> str:
        return f"_Ident({id(self.obj):#x})"


class _ByteLRU:
    """A least-recently-used cache bounded by the total bytes of its values.

    Scan-resistant: entries used since the last :meth:`new_pass` are never
    evicted to make room; a value that does not fit otherwise is simply not
    stored.  (With plain LRU, a render whose layers need more than the budget
    would evict each layer just before it is needed again, every time.)
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._pass = 0
        self._items: OrderedDict[Any, tuple[Any, int, int]] = OrderedDict()  # key -> (value, nbytes, pass)

    def new_pass(self) -> None:
        """Start a render pass: entries used from now on are protected until the next pass."""
        self._pass += 1

    def get(self, key: Any) -> Any | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items[key] = (item[0], item[1], self._pass)
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, value: Any, nbytes: int) -> bool:
        """Store ``value``; returns False if it could not be made to fit."""
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]
        for old_key in [k for k, (_, _, used) in self._items.items() if used < self._pass]:
            if self.bytes + nbytes <= self.max_bytes:
                break
            self.bytes -= self._items.pop(old_key)[1]
        if self.bytes + nbytes > self.max_bytes:
            return False
        self._items[key] = (value, nbytes, self._pass)
        self.bytes += nbytes
        return True

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class _Planes:
    """Channel-first float32 tensors: straight colour ``(1|3, h, w)`` and alpha
    ``(1, h, w)`` (``None`` = opaque).  Channel-first because broadcasting alpha
    over the leading axis is much faster in torch than over a trailing axis."""

    colour: torch.Tensor
    alpha: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        """Memory held (whole storages: a tiled layer is a view into a slightly taller buffer)."""
        n = self.colour.untyped_storage().nbytes()
        if self.alpha is not None:
            n += self.alpha.untyped_storage().nbytes()
        return n


def _to_planes(pixels: np.ndarray) -> _Planes:
    """Pixels -> float planes; an alpha channel that is fully opaque is dropped."""
    f = torch.from_numpy(to_float(pixels)).permute(2, 0, 1)
    channels = f.shape[0]
    colour, alpha = (f[:1], f[1:]) if channels == 2 else (f[:3], f[3:]) if channels == 4 else (f, None)
    if alpha is not None and bool((alpha >= 1.0).all()):
        alpha = None
    return _Planes(colour.contiguous(), None if alpha is None else alpha.contiguous())


_TORCH_MODES = {"nearest": "nearest-exact", "bilinear": "bilinear", "bicubic": "bicubic"}


def _resample(planes: _Planes, width: int, height: int, method: str) -> _Planes:
    """Resize to ``width×height``; premultiplies alpha around filtering so
    transparent pixels don't bleed their colour."""
    c, h, w = planes.colour.shape
    if (w, h) == (width, height):
        return planes
    stack = planes.colour if planes.alpha is None else torch.cat([planes.colour * planes.alpha, planes.alpha])
    nchw = stack.unsqueeze(0)
    mode = _TORCH_MODES[method]
    if mode == "nearest-exact":
        out = F.interpolate(nchw, size=(height, width), mode=mode)
    else:
        antialias = width < w or height < h
        out = F.interpolate(nchw, size=(height, width), mode=mode, align_corners=False, antialias=antialias)
    out = out[0].clamp_(0.0, 1.0)
    if planes.alpha is None:
        return _Planes(out, None)
    alpha = out[c:].clone()  # a copy, so the 4-channel buffer can be freed
    colour = (out[:c] / alpha.clamp(min=TINY_ALPHA)).clamp_(0.0, 1.0)  # premultiplied colour is 0 where α is 0
    return _Planes(colour, alpha)


def _luminance(colour: torch.Tensor) -> torch.Tensor:
    """Lum(C) = 0.3 R + 0.59 G + 0.11 B (W3C Compositing § "Non-separable blend modes")."""
    if colour.shape[0] == 1:
        return colour[0]
    r, g, b = LUMA_WEIGHTS
    return colour[0] * r + colour[1] * g + colour[2] * b


def _colourise(colour: torch.Tensor, spec: GradientMap | Palette) -> torch.Tensor:
    """Map luminance through a gradient map or palette; returns ``(3, h, w)``."""
    lum = _luminance(colour)
    if isinstance(spec, Palette):
        table = torch.tensor(spec.colours, dtype=torch.float32).t().contiguous()  # (3, N)
        n = len(spec.colours)
        band = torch.clamp((lum * n).long(), 0, n - 1)
        return table[:, band]
    return _gradient(lum, spec.stops)


def _gradient(lum: torch.Tensor, stops: tuple[tuple[float, RGB], ...]) -> torch.Tensor:
    """Piecewise-linear gradient lookup: ``C0 + Σ_k clamp((L − p_k) / (p_k+1 − p_k), 0, 1) · (C_k+1 − C_k)``.

    Exact linear interpolation between neighbouring stops (no lookup table);
    two stops at the same position make a hard edge, luminance at or above it
    taking the later stop's colour.
    """
    (_, first), *_ = stops
    out = _alloc((3, *lum.shape))
    for k in range(3):
        out[k].fill_(first[k])
    for (p0, c0), (p1, c1) in zip(stops, stops[1:]):
        if p1 > p0:
            t = ((lum - p0) / (p1 - p0)).clamp_(0.0, 1.0)
        else:
            t = (lum >= p0).to(torch.float32)
        for k in range(3):
            if c1[k] != c0[k]:
                out[k].add_(t, alpha=c1[k] - c0[k])
    return out


def _apply_levels(colour: torch.Tensor, levels: Levels) -> torch.Tensor:
    out = (colour - levels.in_black).div_(levels.in_white - levels.in_black).clamp_(0.0, 1.0)
    if levels.gamma != 1.0:
        out.pow_(1.0 / levels.gamma)
    return out.mul_(levels.out_white - levels.out_black).add_(levels.out_black)


def _has_colour_ops(layer: Layer) -> bool:
    return layer.colourise is not None or layer.invert or not layer.levels.is_identity


def _adjust(planes: _Planes, layer: Layer) -> _Planes:
    colour = planes.colour
    if layer.colourise is not None:
        colour = _colourise(colour, layer.colourise)
    if layer.invert:
        colour = 1.0 - colour
    if not layer.levels.is_identity:
        colour = _apply_levels(colour, layer.levels)
    return _Planes(colour.contiguous(), planes.alpha)


def _tile_period(t: torch.Tensor, tiling: str) -> torch.Tensor:
    """One period of the tiling: the tile itself, or for ``"mirror"`` a 2×2 block
    ``[[T, flipX T], [flipY T, flipXY T]]`` whose edges all meet seamlessly."""
    if tiling == "plain":
        return t
    top = torch.cat([t, t.flip(2)], dim=2)
    return torch.cat([top, top.flip(1)], dim=1)


def _tile(t: torch.Tensor, tiling: str, x: int, y: int, width: int, height: int) -> torch.Tensor:
    """Fill ``height×width`` with tiles whose origin is at canvas (x, y):
    canvas pixel (X, Y) takes period pixel ((Y − y) mod Ph, (X − x) mod Pw)."""
    period = _tile_period(t, tiling)
    c, ph, pw = period.shape
    oy, ox = (-y) % ph, (-x) % pw
    reps_y, reps_x = -(-(height + oy) // ph), -(-(width + ox) // pw)
    strip = period.repeat(1, 1, reps_x)[:, :, ox : ox + width]  # one period tall, canvas wide
    # Copy the strip down the canvas; the row offset is a view (every channel
    # plane stays contiguous, which is all the blend kernels need).
    rows = _alloc((c, reps_y * ph, width))
    rows.view(c, reps_y, ph, width).copy_(strip.unsqueeze(1).expand(c, reps_y, ph, width))
    return rows[:, oy : oy + height]


def _footprint(layer: Layer, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Canvas rectangle ``(x0, y0, x1, y1)`` the layer covers, or ``None``."""
    if layer.tiling is not None:
        return 0, 0, width, height
    w, h = layer.scaled_size
    x0, y0 = max(layer.x, 0), max(layer.y, 0)
    x1, y1 = min(layer.x + w, width), min(layer.y + h, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


class Renderer:
    """Renders :class:`CanvasState` values with caching.  Thread-safe (one lock).

    Two byte-bounded LRU caches.  Per-layer pixels (``layer_cache_bytes``):

    * ``scaled``   — pixels identity, scale, resample;
    * ``adjusted`` — scaled key + colourise, invert, levels;
    * ``placed``   — adjusted key + tiling, x, y, canvas size (tiled layers only;
      untiled layers blend straight from the adjusted pixels at their offset).

    Composites (``composite_cache_bytes``), keyed by canvas size, background and
    the *blend keys* (adjusted key + tiling, x, y, mode, opacity) of visible layers:

    * ``prefix`` — a premultiplied snapshot of the composite below the most
      recently edited layer, so editing it again re-blends only it and the
      layers above it;
    * ``final`` / ``uint8`` — finished composites, so undo/redo back to a
      rendered state is a lookup.

    Changing opacity or blend mode re-blends from the cached prefix; changing
    levels re-runs that layer's colour stage from its cached scaled pixels.
    The accumulator is a reused workspace, so an edit allocates little.

    ``threads``: torch intra-op threads while rendering (restored afterwards;
    ``None`` leaves torch's setting alone).  The default is 1: the kernels are
    memory-bound, and on a busy machine (a model training next to the
    canvas, other jobs) each multi-threaded torch op can wait a whole
    scheduler slice for its second thread — measured on the 2-core dev box
    under load, a 1024² edit took ~25 ms with 1 thread and 100–250 ms with 2.
    With torch's OpenMP backend the setting is per calling thread, so a render
    worker thread does not affect other threads.
    """

    def __init__(
        self,
        layer_cache_bytes: int = 2 << 30,
        composite_cache_bytes: int = 1 << 30,
        threads: int | None = 1,
    ) -> None:
        self.threads = threads
        self._layers = _ByteLRU(layer_cache_bytes)
        self._composites = _ByteLRU(composite_cache_bytes)
        self._lock = threading.RLock()
        self._last_keys: tuple[Any, ...] = ()
        self._work: tuple[torch.Tensor, torch.Tensor] | None = None
        self.stats = {"final_hits": 0, "prefix_hits": 0, "blends": 0, "prepares": 0}

    def clear(self) -> None:
        """Drop every cached value and the workspace."""
        with self._lock:
            self._layers.clear()
            self._composites.clear()
            self._last_keys = ()
            self._work = None

    # ---- per-layer preparation -------------------------------------------

    def _cached(self, key: tuple[Any, ...], make: Callable[[], _Planes]) -> _Planes:
        value = self._layers.get(key)
        if value is None:
            value = make()
            self._layers.put(key, value, value.nbytes)
        return value

    @staticmethod
    def _adjust_key(layer: Layer) -> tuple[Any, ...]:
        scale = (1.0, None) if layer.scaled_size == layer.pixels.shape[1::-1] else (layer.scale, layer.resample)
        return (_Ident(layer.pixels), *scale, layer.colourise, layer.invert, layer.levels)

    def _prepared(self, layer: Layer, width: int, height: int) -> tuple[_Planes, int, int]:
        """The layer's finished pixels and where their top-left lands on the canvas."""
        adjust_key = self._adjust_key(layer)
        scaled_key = ("scaled", *adjust_key[:3])

        def make_scaled() -> _Planes:
            self.stats["prepares"] += 1
            planes = _to_planes(layer.pixels)
            return _resample(planes, *layer.scaled_size, layer.resample)

        def make_adjusted() -> _Planes:
            if not _has_colour_ops(layer):
                return make_scaled()  # the same pixels: cache them once, under this key
            # keep the scaled pixels too, so colour edits don't resample again
            return _adjust(self._cached(scaled_key, make_scaled), layer)

        adjusted = self._cached(("adjusted", *adjust_key), make_adjusted)
        if layer.tiling is None:
            return adjusted, layer.x, layer.y

        def make_placed() -> _Planes:
            alpha = adjusted.alpha
            return _Planes(
                _tile(adjusted.colour, layer.tiling, layer.x, layer.y, width, height),
                None if alpha is None else _tile(alpha, layer.tiling, layer.x, layer.y, width, height),
            )

        placed_key = ("placed", *adjust_key, layer.tiling, layer.x, layer.y, width, height)
        return self._cached(placed_key, make_placed), 0, 0

    @classmethod
    def _blend_key(cls, layer: Layer) -> tuple[Any, ...]:
        return (*cls._adjust_key(layer), layer.tiling, layer.x, layer.y, layer.blend_mode, layer.opacity)

    # ---- compositing -----------------------------------------------------

    def _blend_layer(self, acc_rgb: torch.Tensor, acc_alpha: torch.Tensor | None, layer: Layer) -> None:
        height, width = acc_rgb.shape[1:]
        box = _footprint(layer, width, height)
        if box is None or layer.opacity <= 0.0:
            return
        planes, px, py = self._prepared(layer, width, height)
        x0, y0, x1, y1 = box
        self.stats["blends"] += 1
        for top, bottom in _bands(y0, y1, x1 - x0):
            src = (slice(None), slice(top - py, bottom - py), slice(x0 - px, x1 - px))
            dst = (slice(None), slice(top, bottom), slice(x0, x1))
            composite_into(
                acc_rgb[dst],
                None if acc_alpha is None else acc_alpha[dst],
                planes.colour[src],
                None if planes.alpha is None else planes.alpha[src],
                layer.blend_mode,
                layer.opacity,
            )

    def _workspace(self, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Reused accumulator planes (premultiplied colour, alpha) for this size."""
        if self._work is None or self._work[0].shape[1:] != (height, width):
            self._work = None  # free the old one first
            self._work = (_alloc((3, height, width)), _alloc((1, height, width)))
        return self._work

    def _start_point(
        self, state: CanvasState, base: tuple[Any, ...], keys: tuple[Any, ...]
    ) -> tuple[int, torch.Tensor, torch.Tensor | None]:
        """Load the deepest cached prefix composite, or the background, into the
        workspace.  Returns the index of the first layer still to blend."""
        rgb, alpha = self._workspace(state.width, state.height)
        for k in range(len(keys), 0, -1):
            snap = self._composites.get(("prefix", base, keys[:k]))
            if snap is not None:
                self.stats["prefix_hits"] += 1
                rgb.copy_(snap[0])
                if snap[1] is None:
                    return k, rgb, None
                alpha.copy_(snap[1])
                return k, rgb, alpha
        if state.background is None:
            rgb.zero_()
            alpha.zero_()
            return 0, rgb, alpha
        r, g, b, a = state.background
        for channel, value in enumerate((r * a, g * a, b * a)):
            rgb[channel].fill_(value)
        if a >= 1.0:
            return 0, rgb, None
        alpha.fill_(a)
        return 0, rgb, alpha

    def _store_prefix(
        self, base: tuple[Any, ...], keys: tuple[Any, ...], rgb: torch.Tensor, alpha: torch.Tensor | None
    ) -> None:
        key = ("prefix", base, keys)
        if self._composites.get(key) is None:
            snap = (_alloc(rgb.shape).copy_(rgb), None if alpha is None else _alloc(alpha.shape).copy_(alpha))
            nbytes = rgb.numel() * 4 + (0 if alpha is None else alpha.numel() * 4)
            self._composites.put(key, snap, nbytes)

    def _covers_opaquely(self, layer: Layer, state: CanvasState) -> bool:
        """True if the layer leaves the composite fully opaque (αs = 1 everywhere)."""
        if layer.opacity < 1.0 or _footprint(layer, state.width, state.height) != (0, 0, state.width, state.height):
            return False
        planes, _, _ = self._prepared(layer, state.width, state.height)
        return planes.alpha is None

    def _final_key(self, state: CanvasState) -> tuple[Any, ...]:
        visible = tuple(layer for layer in state.layers if layer.visible)
        return ((state.width, state.height, state.background), tuple(self._blend_key(layer) for layer in visible))

    def _composite(self, state: CanvasState) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Blend the visible layers into the workspace, starting from the deepest
        cached prefix.  Returns premultiplied colour and alpha (``None`` = opaque)."""
        self._layers.new_pass()
        self._composites.new_pass()
        visible = [layer for layer in state.layers if layer.visible]
        base, keys = self._final_key(state)
        start, acc_rgb, acc_alpha = self._start_point(state, base, keys)
        edited = _common_prefix_len(keys, self._last_keys)
        for i in range(start, len(visible)):
            if i == edited and i > start:
                self._store_prefix(base, keys[:i], acc_rgb, acc_alpha)
            self._blend_layer(acc_rgb, acc_alpha, visible[i])
            if acc_alpha is not None and self._covers_opaquely(visible[i], state):
                acc_alpha = None  # αo = 1 everywhere from here on: take the opaque fast path
        self._last_keys = keys
        return acc_rgb, acc_alpha

    def _render_cached(self, state: CanvasState, kind: str, finish: Callable[..., torch.Tensor]) -> np.ndarray:
        key = (kind, *self._final_key(state))
        cached = self._composites.get(key)
        if cached is not None:
            self.stats["final_hits"] += 1
            self._last_keys = key[2]
            return cached
        out = finish(*self._composite(state)).numpy()
        out.flags.writeable = False
        self._composites.put(key, out, out.nbytes)
        return out

    def render(self, state: CanvasState) -> np.ndarray:
        """The composite of ``state``: ``H×W×4`` float32 straight RGBA in [0, 1], read-only."""
        with self._lock, _torch_threads(self.threads):
            return self._render_cached(state, "final", _to_rgba_float)

    def render_uint8(self, state: CanvasState) -> np.ndarray:
        """The composite as ``H×W×4`` uint8 straight RGBA, read-only; identical to
        ``to_uint8(render(state))`` but made straight from the accumulator."""
        with self._lock, _torch_threads(self.threads):
            return self._render_cached(state, "uint8", _to_rgba_uint8)

    def render_layer(self, layer: Layer, width: int, height: int, *, apply_opacity: bool = False) -> np.ndarray:
        """The layer alone on a transparent ``height×width`` canvas (straight RGBA float32)."""
        with self._lock, _torch_threads(self.threads):
            out = _alloc((height, width, 4)).zero_()
            box = _footprint(layer, width, height)
            if box is None:
                return out.numpy()
            planes, px, py = self._prepared(layer, width, height)
            x0, y0, x1, y1 = box
            src = (slice(None), slice(y0 - py, y1 - py), slice(x0 - px, x1 - px))
            region = out[y0:y1, x0:x1].permute(2, 0, 1)  # channel-first view
            region[:3] = planes.colour[src]
            region[3:] = 1.0 if planes.alpha is None else planes.alpha[src]
            if apply_opacity:
                region[3:] *= layer.opacity
            return out.numpy()


_HUGE_PAGE_MIN_BYTES = 32 << 20
_NUMPY_DTYPES = {torch.float32: np.float32, torch.uint8: np.uint8}


def _alloc(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor; very large ones are backed by transparent huge pages where offered.

    glibc serves allocations above 32 MiB with a fresh ``mmap`` every time, so
    each 4 KiB page of a 4096² buffer (192–256 MiB) page-faults on first touch
    — on the dev VM that was ~0.75 ms per MiB, a large share of a 4096²
    re-render.  An anonymous mapping advised ``MADV_HUGEPAGE`` faults per
    2 MiB instead (measured: 4096² edits ~25–30 % faster).  Smaller buffers
    use ``torch.empty``: glibc recycles those without faults, and huge pages
    measured slower there.  The mapping is released when the last tensor /
    array viewing it is garbage-collected.
    """
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if nbytes < _HUGE_PAGE_MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE") or dtype not in _NUMPY_DTYPES:
        return torch.empty(tuple(shape), dtype=dtype)
    try:
        buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        buffer.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):
        return torch.empty(tuple(shape), dtype=dtype)
    array = np.frombuffer(buffer, dtype=_NUMPY_DTYPES[dtype]).reshape(tuple(shape))
    return torch.from_numpy(array)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the setting."""
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _bands(y0: int, y1: int, width: int) -> Iterator[tuple[int, int]]:
    """Row ranges of about :data:`BAND_PIXELS` pixels covering ``[y0, y1)``.

    Working band by band keeps the kernels' temporaries small: they stay in CPU
    cache and are recycled by the allocator instead of being fresh,
    page-faulting allocations the size of the whole layer.
    """
    step = max(1, BAND_PIXELS // max(1, width))
    for top in range(y0, y1, step):
        yield top, min(top + step, y1)


def _straight_band(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Straight colour of a band of premultiplied planes, clamped to [0, 1]."""
    if alpha is None:
        return rgb.clamp(0.0, 1.0)
    return torch.div(rgb, alpha.clamp(min=TINY_ALPHA)).clamp_(0.0, 1.0)  # colour is 0 where α is 0


def _to_rgba_float(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Premultiplied channel-first planes -> straight ``H×W×4`` float32 RGBA in [0, 1]."""
    height, width = rgb.shape[1:]
    out = _alloc((height, width, 4))
    view = out.permute(2, 0, 1)
    for top, bottom in _bands(0, height, width):
        rows = slice(top, bottom)
        view[:3, rows] = _straight_band(rgb[:, rows], None if alpha is None else alpha[:, rows])
        view[3:, rows] = 1.0 if alpha is None else alpha[:, rows].clamp(0.0, 1.0)
    return out


def _to_rgba_uint8(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Like :func:`_to_rgba_float` then :func:`studio.images.to_uint8`, bit for bit,
    without the full-size float intermediate."""
    height, width = rgb.shape[1:]
    out = _alloc((height, width, 4), torch.uint8)
    view = out.permute(2, 0, 1)
    for top, bottom in _bands(0, height, width):
        rows = slice(top, bottom)
        view[:3, rows] = _straight_band(rgb[:, rows], None if alpha is None else alpha[:, rows]).mul_(255.0).add_(0.5)
        view[3:, rows] = 255 if alpha is None else alpha[:, rows].clamp(0.0, 1.0).mul_(255.0).add_(0.5)
    return out


def _common_prefix_len(a: Sequence[Any], b: Sequence[Any]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
