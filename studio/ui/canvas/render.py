"""Rendering off the UI thread: the canvas view's :class:`RenderThread` (a thin use of
:class:`studio.worker.LatestWorker`, the newest request wins) and what it hands back."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage

from studio.canvas import CanvasState, Renderer
from studio.worker import LatestWorker


@dataclass
class RenderResult:
    """What the render thread hands back: the state it rendered, its pixels (read-only
    uint8 ``H×W×4`` straight RGBA, as :meth:`Renderer.render_uint8` gives them), a
    premultiplied ``QImage`` copy for painting, a downscaled preview for zoomed-out
    painting of big canvases, the time it took and the thread it ran on."""

    state: CanvasState
    serial: int
    pixels: np.ndarray | None
    image: QImage | None
    preview: QImage | None
    ms: float
    thread_id: int
    error: str | None = None


class _Bridge(QObject):
    """Carries results from the render thread to the UI thread (a queued connection)."""

    done = Signal(object)


class RenderThread(LatestWorker):
    """One daemon thread (a :class:`studio.worker.LatestWorker` named ``canvas-render``)
    rendering the newest requested :class:`CanvasState`.

    :meth:`request` never blocks: it replaces the waiting request (if any) and
    wakes the thread.  ``on_done`` is called on the UI thread with a
    :class:`RenderResult` (via a queued Qt signal).  A preview of at most
    ``preview_side`` pixels is made too when the canvas is larger.
    """

    def __init__(self, renderer: Renderer, on_done: Callable[[RenderResult], None], preview_side: int = 1024,
                 owner: Any = None) -> None:
        self.renderer = renderer
        self.preview_side = preview_side
        self._bridge = _Bridge()
        self._bridge.done.connect(on_done, Qt.ConnectionType.QueuedConnection)
        super().__init__("canvas-render", self._emit, owner=owner)

    def request(self, state: CanvasState, serial: int) -> None:
        self.submit(lambda: self._render(state, serial))

    def stop(self, timeout: float = 2.0) -> None:
        self.shutdown(timeout)

    def _emit(self, result: RenderResult) -> None:
        try:
            self._bridge.done.emit(result)
        except RuntimeError:  # the view is gone
            self.shutdown(0.0)

    def _render(self, state: CanvasState, serial: int) -> RenderResult:
        t0 = time.perf_counter()
        tid = threading.get_ident()
        try:
            pixels = self.renderer.render_uint8(state)
            h, w = pixels.shape[:2]
            raw = QImage(pixels.data, w, h, w * 4, QImage.Format.Format_RGBA8888)
            image = raw.convertToFormat(QImage.Format.Format_RGBA8888_Premultiplied)
            preview = None
            if max(w, h) > self.preview_side * 1.5:
                preview = image.scaled(self.preview_side, self.preview_side, Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.SmoothTransformation)
            return RenderResult(state, serial, pixels, image, preview, (time.perf_counter() - t0) * 1000, tid)
        except Exception as exc:  # noqa: BLE001 - reported to the person, the view goes on
            return RenderResult(state, serial, None, None, None, (time.perf_counter() - t0) * 1000, tid,
                                error=f"{type(exc).__name__}: {exc}")
