"""The canvas model: immutable states, change events (psygnal), the undo stack and :class:`Canvas`.
See :mod:`studio.canvas`."""

from __future__ import annotations

import dataclasses
import math
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
from psygnal import Signal, SignalGroup

from studio.canvas.layer import HISTORY_LIMIT, Layer, MAX_CANVAS_SIZE, MAX_SCALED_SIDE, parse_colour, RGBA
from studio.canvas.render import _footprint, Renderer


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


class CanvasEvents(SignalGroup):
    """What a :class:`Canvas` announces, on the thread that edited it (the UI thread).

    ``layer_added(layer_id)``, ``layer_removed(layer_id)``, ``layer_changed(layer_id,
    fields)`` (``fields`` names the changed attributes), ``layers_reordered()``,
    ``canvas_changed()`` (size or background) and ``history_changed()`` (undo / redo
    availability or labels).  ``events.all`` relays every one of them.
    """

    layer_added = Signal(str)
    layer_removed = Signal(str)
    layer_changed = Signal(str, tuple)
    layers_reordered = Signal()
    canvas_changed = Signal()
    history_changed = Signal()


_LAYER_FIELDS = tuple(f.name for f in dataclasses.fields(Layer))


def _diff_events(before: CanvasState, after: CanvasState) -> list[tuple[str, tuple[Any, ...]]]:
    """The events that describe going from ``before`` to ``after``: (signal name, arguments)
    of :class:`CanvasEvents`, in the order they are emitted."""
    events: list[tuple[str, tuple[Any, ...]]] = []
    if (before.width, before.height, before.background) != (after.width, after.height, after.background):
        events.append(("canvas_changed", ()))
    old = {layer.id: layer for layer in before.layers}
    new = {layer.id: layer for layer in after.layers}
    events += [("layer_removed", (lid,)) for lid in old if lid not in new]
    events += [("layer_added", (lid,)) for lid in new if lid not in old]
    for lid, layer in new.items():
        prev = old.get(lid)
        if prev is not None and prev is not layer:
            changed = tuple(
                name
                for name in _LAYER_FIELDS
                if not _same_value(getattr(prev, name), getattr(layer, name))
            )
            events.append(("layer_changed", (lid, changed)))
    common_old = [lid for lid in old if lid in new]
    common_new = [lid for lid in new if lid in old]
    if common_old != common_new:
        events.append(("layers_reordered", ()))
    return events


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is b
    if isinstance(a, tuple) and a and isinstance(a[0], np.ndarray):
        return len(a) == len(b) and all(x is y for x, y in zip(a, b))
    return a == b


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


def fit_scale(layer: Layer, width: int, height: int, fraction: float, integer: bool) -> float:
    """The scale that makes ``layer``'s source about ``fraction`` of a ``width``×``height``
    canvas (whole factors when ``integer`` and it grows: crisp pixels), within the scaled-size
    limit."""
    h, w = layer.pixels.shape[:2]
    s = fraction * min(width / w, height / h)
    s = max(1.0, math.floor(s)) if integer and s >= 1 else s
    return max(1e-3, min(s, MAX_SCALED_SIDE / max(h, w)))


def centred(layer: Layer, width: int, height: int) -> Layer:
    """``layer`` placed in the middle of a ``width``×``height`` canvas (a tiled layer as it is)."""
    if layer.tiling is not None:
        return layer
    w, h = layer.scaled_size
    return dataclasses.replace(layer, x=(width - w) // 2, y=(height - h) // 2)


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
        self.events = CanvasEvents()
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
        self.events.history_changed.emit()
        return True

    def clear_history(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self.events.history_changed.emit()

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
        self.events.history_changed.emit()

    def _apply_state(self, state: CanvasState) -> None:
        before, self._state = self._state, state
        for name, args in _diff_events(before, state):
            getattr(self.events, name).emit(*args)
