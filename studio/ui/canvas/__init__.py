"""The Canvas tab (a view of :class:`studio.canvas.Canvas`), one module per part:

* ``view``    — :class:`CanvasView` itself: state, canvas events, sync and render requests;
* ``build``   — its widgets and actions (toolbar, layer list, properties panel);
* ``layers``  — the layer list and the selected layer's properties;
* ``edits``   — adding layers from every source, moving, deleting, zoom, canvas size;
* ``exports`` — PNG / OpenRaster / GIF / APNG exports and the background plumbing;
* ``render``  — :class:`RenderThread`, rendering off the UI thread;
* ``dialogs`` — the add-model-layer and canvas-size dialogs;
* ``widgets`` — titles, presets, the composite item, the zoomable view, the colour button.
"""

from studio.ui.canvas.dialogs import CanvasSizeDialog, ModelChoice, ModelLayerDialog, model_choices
from studio.ui.canvas.render import RenderResult, RenderThread
from studio.ui.canvas.view import CanvasView
from studio.ui.canvas.widgets import (
    BLEND_TITLES,
    CANVAS_PRESETS,
    GRADIENT_PRESETS,
    PALETTE_PRESETS,
    CanvasGraphicsView,
)

__all__ = [
    "BLEND_TITLES",
    "GRADIENT_PRESETS",
    "PALETTE_PRESETS",
    "CANVAS_PRESETS",
    "ModelChoice",
    "RenderResult",
    "RenderThread",
    "CanvasGraphicsView",
    "CanvasSizeDialog",
    "ModelLayerDialog",
    "CanvasView",
    "model_choices",
]
