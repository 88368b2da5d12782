"""The Canvas tab: compose the models' dreams, textures and images into layered art.

A view of the document's (:class:`studio.jobs.Session`) :class:`studio.canvas.Canvas` (the
model: layers, settings, undo/redo, rendering — no Qt there). The view never owns the canvas:
it listens to its events (a layer added headless, by another tab or by a script shows here)
and sends every edit to it:

* the composite in a zoomable, pannable view (wheel zooms about the cursor,
  drag pans, **M** toggles the move tool that drags the selected layer,
  **F** / Ctrl+0 fits the canvas in the view, Ctrl+Alt+0 shows it at 100 %);
* the layer list (top layer first): thumbnail, name (double-click renames),
  visibility checkbox, drag to reorder, raise / lower / duplicate / delete;
* the selected layer's properties: blend mode (the 12 W3C modes), opacity,
  position, scale and resampling, tiling, colourise (gradient map with 2–3 stops
  or palette, with presets and colour pickers), invert, levels, animation frame;
* the add-layer menu (dream snapshot, model texture or frame, dataset image,
  imported image), undo / redo (Ctrl+Z, Ctrl+Shift+Z, Ctrl+Y), canvas size,
  and exports (layers + composite PNGs, OpenRaster, GIF / APNG).

Threads.  The UI thread never renders: every change of the canvas asks a
:class:`RenderThread` for a render of the immutable ``canvas.snapshot()``; the
thread renders the newest request only (a request that arrives while a render
is in flight replaces any older waiting one), converts the result into a
``QImage`` and hands it back through a queued signal.  Model sampling, image
import and every export run in the background (:func:`run_in_background`);
their results and errors come back as a status message or a message box.
Slider drags edit with ``merge=True`` between :meth:`Canvas.end_merge` calls, so
one drag is one undo step.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from PySide6.QtCore import QMetaMethod, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from studio.canvas import Canvas, CanvasState, Layer
from studio.jobs import Session
from studio.ui.canvas.build import ViewBuilder
from studio.ui.canvas.dialogs import model_choices
from studio.ui.canvas.edits import LayerEdits
from studio.ui.canvas.exports import Exports
from studio.ui.canvas.layers import LayerPanel
from studio.ui.canvas.render import RenderResult, RenderThread
from studio.ui.widgets import show_warning


class CanvasView(ViewBuilder, LayerPanel, LayerEdits, Exports, QWidget):
    """The Canvas tab.  See the module docs.

    Built from the document ``session`` (a :class:`studio.jobs.Session`; a bare
    :class:`~studio.canvas.Canvas` is given a document of its own, for scripts): its canvas
    is shown, its models and images are offered, and "Snapshot of the Dreams" takes what
    its Dreams tab shows (``session.dream_snapshot``), else the newest training frame.
    Public slots: :meth:`add_snapshot_layer` (a dream snapshot: uint8 RGBA and its
    provenance), :meth:`add_layer`, :meth:`add_dataset_image`, :meth:`import_image`,
    :meth:`undo`, :meth:`redo`, :meth:`fit`, :meth:`replace_canvas` (an opened project).
    ``selected_image``: a callable returning the dataset index the person selected, or
    ``None``.  Signals: ``status_message(text, ms)``, ``error_raised(title, message)`` (with
    no listener the view shows the error in a box of its own), ``rendered(ms)``.
    """

    status_message = Signal(str, int)
    error_raised = Signal(str, str)
    rendered = Signal(float)

    def __init__(self, session: Session | Canvas | None = None, parent: QWidget | None = None, *,
                 selected_image: Callable[[], int | None] | None = None) -> None:
        super().__init__(parent)
        if not isinstance(session, Session):
            session = Session(canvas=session)
        #: The document: the canvas shown, the models and images offered.
        self.session: Session = session
        self.canvas = session.canvas
        self.dream_snapshot: Callable[[], tuple[np.ndarray, dict] | None] | None = session.dream_snapshot
        self.selected_image = selected_image
        self.selected_id: str | None = None
        # what is on screen
        self.shown_state: CanvasState | None = None
        self.shown_pixels: np.ndarray | None = None
        self.last_render: RenderResult | None = None
        self._serial = 0
        self._requested_state: CanvasState | None = None
        self._busy_tasks = 0
        self._dirty_list = True
        self._dirty_props = True
        self._loading = False
        self._move_origin: tuple[int, int] | None = None
        self._thumbs: dict[int, tuple[np.ndarray, QIcon]] = {}
        self._boxes: list[QMessageBox] = []

        self._build()
        self._make_actions()
        self._sync_timer = QTimer(self)
        self._sync_timer.setSingleShot(True)
        self._sync_timer.setInterval(0)
        self._sync_timer.timeout.connect(self._sync)
        self.renderer_thread = RenderThread(self.canvas.renderer, self._on_rendered, owner=self)
        # The render thread outlives nothing: it stops when the view is closed (shutdown, or
        # closeEvent for a top-level view) and, failing that, when the widget is destroyed.
        # Each window closed used to leave one 'canvas-render' thread waiting forever.
        holder = self._render_holder = [self.renderer_thread]
        self.destroyed.connect(lambda *_: holder[0].stop(timeout=0))
        self._listen(self.canvas)
        self._schedule(list_=True, props=True)


    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        """Shown (e.g. its tab chosen): take the keyboard focus, so the shortcuts work at once.
        A view shown again after it was closed gets a render thread again."""
        super().showEvent(event)
        if self.renderer_thread.stopped:
            self.renderer_thread = RenderThread(self.canvas.renderer, self._on_rendered, owner=self)
            self._render_holder[0] = self.renderer_thread
            self._requested_state = None
            self.shown_state = None
            self.request_render()
        focus = QApplication.focusWidget()
        if focus is None or not self.isAncestorOf(focus):
            self.view.setFocus(Qt.FocusReason.OtherFocusReason)

    # ------------------------------------------------------------------ context
    def _refresh_add_menu(self) -> None:
        self.action_add_dream.setEnabled(self._dream_source() is not None)
        self.action_add_model.setEnabled(bool(model_choices(self.session)))
        images = getattr(self.session, "images", None)
        self.action_add_dataset.setEnabled(images is not None and len(images) > 0)

    # ------------------------------------------------------------------ canvas events, sync
    def _listen(self, canvas: Canvas) -> None:
        """Follow ``canvas``'s events (psygnal holds the bound methods weakly: a view that is
        gone stops listening by itself)."""
        ev = canvas.events
        ev.history_changed.connect(self._update_history)
        ev.layer_added.connect(self._on_layer_added)
        ev.layer_removed.connect(self._on_stack_changed)
        ev.layers_reordered.connect(self._on_stack_changed)
        ev.layer_changed.connect(self._on_layer_changed)
        ev.canvas_changed.connect(self._on_canvas_changed)

    def _on_layer_added(self, layer_id: str) -> None:
        self.selected_id = layer_id
        self._schedule(list_=True, props=True)

    def _on_stack_changed(self, *_: Any) -> None:
        self._schedule(list_=True, props=True)

    def _on_layer_changed(self, layer_id: str, fields: tuple[str, ...]) -> None:
        self._schedule(list_=bool(set(fields) & {"name", "visible", "source", "frames", "frame_index"}),
                       props=layer_id == self.selected_id)

    def _on_canvas_changed(self) -> None:
        self._schedule(props=True)

    def _schedule(self, list_: bool = False, props: bool = False) -> None:
        self._dirty_list |= list_
        self._dirty_props |= props
        self._sync_timer.start()

    def flush(self) -> None:
        """Bring the widgets up to date now (instead of at the next turn of the event loop)."""
        self._sync_timer.stop()
        self._sync()

    def _sync(self) -> None:
        """Bring the widgets up to date with the canvas and ask for a render."""
        state = self.canvas.snapshot()
        ids = [layer.id for layer in state.layers]
        if self.selected_id not in ids:
            self.selected_id = ids[-1] if ids else None
        if self._dirty_list:
            self._dirty_list = False
            self._rebuild_list(state)
        if self._dirty_props:
            self._dirty_props = False
            self._load_props()
        self._update_outline()
        self._update_history()
        self._update_info()
        self.request_render()

    def request_render(self) -> None:
        """Ask the render thread for the current state (coalesced; never blocks)."""
        state = self.canvas.snapshot()
        if state is self._requested_state or state is self.shown_state:
            return
        self._requested_state = state
        self._serial += 1
        if self.renderer_thread.renderer is not self.canvas.renderer:
            self.renderer_thread.renderer = self.canvas.renderer
        self.renderer_thread.request(state, self._serial)
        self._update_info()

    def _on_rendered(self, result: RenderResult) -> None:
        if result.serial < (self.last_render.serial if self.last_render else 0):
            return
        self.last_render = result
        if result.error is not None:
            self._error("The canvas could not be rendered", result.error)
            return
        self.shown_state = result.state
        self.shown_pixels = result.pixels
        self.item.set_size(result.state.width, result.state.height)
        self.item.transparent = result.state.background is None or result.state.background[3] < 1.0
        self.item.set_image(result.image, result.preview)
        self._update_info()
        self.rendered.emit(result.ms)

    @property
    def rendering(self) -> bool:
        """A render is in flight or waiting."""
        return self.renderer_thread.busy

    def is_current(self) -> bool:
        """The picture on screen is the canvas as it is now."""
        return self.shown_state is self.canvas.snapshot()

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop the render thread (the view can't show new renders afterwards, until it is
        shown again); waits at most ``timeout`` s for a render in flight (the thread ends
        after it on its own)."""
        self.renderer_thread.stop(timeout=timeout)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        """A top-level view closed (a tab inside a window is shut down by its window)."""
        self.shutdown(timeout=0.5)
        super().closeEvent(event)


    @Slot(object, dict)
    def add_snapshot_layer(self, rgba: np.ndarray, provenance: Mapping[str, Any] | None = None) -> Layer | None:
        """Add a dream snapshot (uint8 RGBA grid or chain, and its provenance) as a layer,
        scaled up crisply (nearest, whole factors) to about half the canvas and centred."""
        try:
            layer = self.session.add_snapshot_layer(rgba, dict(provenance or {}))
        except (ValueError, TypeError) as exc:  # LayerSourceError is a ValueError
            self._error("The snapshot could not be added", str(exc))
            return None
        return self._added(layer)


    # ------------------------------------------------------------------ history
    @Slot()
    def undo(self) -> bool:
        """Undo the last layer operation (Ctrl+Z)."""
        label = self.canvas.undo_label
        done = self.canvas.undo()
        if done:
            self._schedule(list_=True, props=True)
            self.flush()
            self._status(f"Undone: {label}", 3000)
        return done

    @Slot()
    def redo(self) -> bool:
        """Redo (Ctrl+Shift+Z or Ctrl+Y)."""
        label = self.canvas.redo_label
        done = self.canvas.redo()
        if done:
            self._schedule(list_=True, props=True)
            self.flush()
            self._status(f"Redone: {label}", 3000)
        return done


    # ------------------------------------------------------------------ view
    @Slot()
    def fit(self) -> None:
        self.view.fit()


    def _status(self, text: str, ms: int = 5000) -> None:
        self.status_message.emit(text, ms)

    def _error(self, title: str, message: str) -> None:
        """Report an error: to whoever listens to ``error_raised`` (the main window shows it),
        else in a non-modal box of this view's own."""
        self._status(title, 8000)
        self.error_raised.emit(title, message)
        if not self.isSignalConnected(QMetaMethod.fromSignal(self.error_raised)):
            show_warning(self, title, message, self._boxes)
