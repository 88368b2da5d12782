"""The Canvas composition model: layers, their settings, undo/redo and rendering.

No Qt here.  A Qt view listens through :attr:`Canvas.events` (psygnal signals,
:class:`CanvasEvents`) and never renders on the UI thread: a worker renders the newest immutable
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

Modules
-------
* ``layer``   — the limits, colours, :class:`GradientMap`, :class:`Palette`, :class:`Levels`, :class:`Layer`;
* ``model``   — :class:`CanvasState`, :class:`CanvasEvents`, the undo stack, :class:`Canvas`;
* ``render``  — the per-layer pipeline and :class:`Renderer`;
* ``blend``   — the 12 W3C blend modes;
* ``sources`` — layers made from dreams, model textures and frames, dataset and imported images;
* ``export``  — PNG (with provenance), OpenRaster, GIF / APNG exports.
"""

from studio.canvas.layer import (
    MAX_CANVAS_SIZE,
    MAX_SCALED_SIDE,
    RESAMPLE_MODES,
    TILING_MODES,
    GradientMap,
    Layer,
    Levels,
    Palette,
    parse_colour,
)
from studio.canvas.model import Canvas, CanvasEvents, CanvasState
from studio.canvas.render import Renderer

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
    "CanvasEvents",
    "Canvas",
    "Renderer",
    "parse_colour",
]
