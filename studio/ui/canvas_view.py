"""The Canvas tab: compose the models' dreams, textures and images into layered art.

A view of a :class:`studio.canvas.Canvas` (the model: layers, settings, undo/redo,
rendering — no Qt there):

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

import math
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PySide6.QtCore import QMetaMethod, QObject, QPointF, QRectF, QSignalBlocker, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (
    QAction,
    QBrush,
    QColor,
    QIcon,
    QImage,
    QKeySequence,
    QPainter,
    QPen,
    QPixmap,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGraphicsItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QStyle,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.blend import BLEND_MODES
from studio.canvas import (
    MAX_CANVAS_SIZE,
    MAX_SCALED_SIDE,
    RESAMPLE_MODES,
    Canvas,
    CanvasEvent,
    CanvasState,
    GradientMap,
    Layer,
    Levels,
    Palette,
    Renderer,
)
from studio.ui.qimage import array_to_qimage
from studio.ui.widgets import show_warning
from studio.ui.workers import run_in_background
from studio.worker import LatestWorker

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

#: Blend modes as the combo box shows them.
BLEND_TITLES: dict[str, str] = {m: m.replace("-", " ").capitalize() for m in BLEND_MODES}
TILING_TITLES: dict[str | None, str] = {None: "None (place once)", "plain": "Plain repeat", "mirror": "Mirrored (seamless)"}
RESAMPLE_TITLES: dict[str, str] = {"nearest": "Nearest (crisp pixels)", "bilinear": "Bilinear", "bicubic": "Bicubic (smooth)"}

#: Gradient-map presets: (name, colours dark → light); three colours make a middle stop.
GRADIENT_PRESETS: dict[str, tuple[str, ...]] = {
    "Ink": ("#0b0c10", "#f4f1e8"),
    "Ember": ("#14001f", "#d9480f", "#fff3bf"),
    "Ocean": ("#03045e", "#0096c7", "#caf0f8"),
    "Moss": ("#1b2d1b", "#6a994e", "#f2e8cf"),
    "Neon": ("#240046", "#ff006e", "#ffbe0b"),
    "Duotone": ("#2b2d42", "#ef8354"),
}
#: Palette presets, darkest band first.
PALETTE_PRESETS: dict[str, tuple[str, ...]] = {
    "Risograph": ("#1d3557", "#e63946", "#a8dadc", "#f1faee"),
    "Autumn": ("#3d1308", "#9f2042", "#f2a65a", "#fff1d0"),
    "Game Boy": ("#0f380f", "#306230", "#8bac0f", "#9bbc0f"),
    "Mono 3": ("#111111", "#808080", "#eeeeee"),
}
#: Canvas size presets: (label, width, height).
CANVAS_PRESETS: tuple[tuple[str, int, int], ...] = (
    ("512 × 512", 512, 512),
    ("1024 × 1024", 1024, 1024),
    ("2048 × 2048", 2048, 2048),
    ("4096 × 4096 (print)", 4096, 4096),
    ("1920 × 1080 (HD)", 1920, 1080),
    ("3840 × 2160 (4K)", 3840, 2160),
    ("2480 × 3508 (A4 at 300 dpi)", 2480, 3508),
    ("1080 × 1350 (portrait post)", 1080, 1350),
)
THUMB = 44
ORA_FILTER = "OpenRaster (*.ora)"
PNG_FILTER = "PNG images (*.png)"
IMAGE_FILTER = "Images (*.png *.apng *.gif *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
ANIMATION_FILTER = "Animated GIF (*.gif);;Animated PNG (*.png *.apng)"


def _shortcut_text(action: QAction) -> str:
    return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())


def _colour_hex(c: Sequence[float]) -> str:
    return "#" + "".join(f"{round(v * 255):02x}" for v in c[:3])


def _qcolour(c: Sequence[float] | str) -> QColor:
    return QColor(c) if isinstance(c, str) else QColor.fromRgbF(*[float(v) for v in c[:3]])


def _rgb(q: QColor) -> tuple[float, float, float]:
    return (q.red() / 255.0, q.green() / 255.0, q.blue() / 255.0)


def thumbnail(pixels: np.ndarray, size: int = THUMB) -> QPixmap:
    """A small pixmap of layer pixels (strided, so cheap even for large sources), on a checkerboard."""
    h, w = pixels.shape[:2]
    step = max(1, math.ceil(max(h, w) / (size * 2)))
    image = array_to_qimage(pixels[::step, ::step])
    image = image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                         Qt.TransformationMode.FastTransformation if max(h, w) <= size else Qt.TransformationMode.SmoothTransformation)
    pix = QPixmap(size, size)
    pix.fill(QColor("#3a3e45"))
    p = QPainter(pix)
    p.fillRect(pix.rect(), _checker_brush(6))
    p.drawImage((size - image.width()) // 2, (size - image.height()) // 2, image)
    p.end()
    return pix


def _checker_brush(cell: int = 8) -> QBrush:
    tile = QPixmap(cell * 2, cell * 2)
    tile.fill(QColor("#9a9ea6"))
    p = QPainter(tile)
    p.fillRect(0, 0, cell, cell, QColor("#c8cbd0"))
    p.fillRect(cell, cell, cell, cell, QColor("#c8cbd0"))
    p.end()
    return QBrush(tile)


# ==========================================================================
# Rendering off the UI thread
# ==========================================================================


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


# ==========================================================================
# The picture
# ==========================================================================


class CompositeItem(QGraphicsItem):
    """Paints the rendered composite (a QImage) over a checkerboard, only the exposed part;
    zoomed out on a big canvas it paints the smaller preview instead."""

    def __init__(self) -> None:
        super().__init__()
        self.image: QImage | None = None
        self.preview: QImage | None = None
        self.size = QSize(1, 1)
        self.transparent = False
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self._checker = _checker_brush(8)

    def set_size(self, width: int, height: int) -> None:
        if (width, height) != (self.size.width(), self.size.height()):
            self.prepareGeometryChange()
            self.size = QSize(width, height)

    def set_image(self, image: QImage | None, preview: QImage | None = None) -> None:
        self.image, self.preview = image, preview
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt API
        return QRectF(0, 0, self.size.width(), self.size.height())

    def paint(self, painter: QPainter, option, widget=None) -> None:  # noqa: D102
        rect = option.exposedRect.intersected(self.boundingRect())
        if rect.isEmpty():
            return
        if self.transparent or self.image is None:
            painter.fillRect(rect, self._checker)
        image = self.image
        if image is None:
            return
        zoom = painter.worldTransform().m11()
        preview = self.preview
        if preview is not None and zoom * image.width() <= preview.width() * 1.05:
            f = preview.width() / image.width()
            source = QRectF(rect.x() * f, rect.y() * f, rect.width() * f, rect.height() * f)
            painter.drawImage(rect, preview, source)
        elif image.size() == self.size:
            painter.drawImage(rect, image, rect)
        else:  # a stale image while a new size renders: stretch it
            painter.drawImage(self.boundingRect(), image)


class CanvasGraphicsView(QGraphicsView):
    """Zoom (wheel, about the cursor), pan (drag), fit; with the move tool on, a left
    drag moves the selected layer instead: ``move_started()``, ``moved(dx, dy)`` in
    canvas pixels from the press, ``move_finished()``."""

    zoom_changed = Signal(float)
    move_started = Signal()
    moved = Signal(int, int)
    move_finished = Signal()

    def __init__(self, scene: QGraphicsScene, parent: QWidget | None = None) -> None:
        super().__init__(scene, parent)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setBackgroundBrush(QColor("#16181c"))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setToolTip("Wheel: zoom · drag: pan · M: move the selected layer · F: fit")
        self.auto_fit = True
        self.move_mode = False
        self._press: QPointF | None = None

    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, zoom: float) -> None:
        zoom = min(64.0, max(1 / 64, zoom))
        self.setTransform(QTransform.fromScale(zoom, zoom))
        self._zoomed()

    def _zoomed(self) -> None:
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom < 1.0)
        self.zoom_changed.emit(self.zoom)

    def fit(self) -> None:
        """Show the whole canvas, and keep fitting on resizes until the person zooms."""
        rect = self.sceneRect()
        if rect.isEmpty():
            return
        self.fitInView(rect.adjusted(-8, -8, 8, 8), Qt.AspectRatioMode.KeepAspectRatio)
        self.auto_fit = True
        self._zoomed()

    def zoom_by(self, factor: float) -> None:
        self.auto_fit = False
        self.set_zoom(self.zoom * factor)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt API
        delta = event.angleDelta().y()
        if delta:
            self.auto_fit = False
            self.set_zoom(self.zoom * (1.0015 ** delta))
        event.accept()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self.auto_fit:
            self.fit()

    def set_move_mode(self, on: bool) -> None:
        self.move_mode = on
        self.setDragMode(QGraphicsView.DragMode.NoDrag if on else QGraphicsView.DragMode.ScrollHandDrag)
        self.viewport().setCursor(Qt.CursorShape.SizeAllCursor if on else Qt.CursorShape.OpenHandCursor)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if self.move_mode and event.button() == Qt.MouseButton.LeftButton:
            self._press = self.mapToScene(event.position().toPoint())
            self.move_started.emit()
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._press is not None:
            here = self.mapToScene(event.position().toPoint())
            self.moved.emit(round(here.x() - self._press.x()), round(here.y() - self._press.y()))
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._press is not None and event.button() == Qt.MouseButton.LeftButton:
            self._press = None
            self.move_finished.emit()
            event.accept()
            return
        super().mouseReleaseEvent(event)


# ==========================================================================
# Small widgets and dialogs
# ==========================================================================


class ColourButton(QPushButton):
    """A swatch; clicking opens a colour picker.  ``colour_changed(QColor)``."""

    colour_changed = Signal(QColor)

    def __init__(self, colour: QColor | str = "#000000", tip: str = "Choose a colour", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._colour = QColor(colour)
        self.setFixedSize(34, 22)
        self.setToolTip(tip)
        self.clicked.connect(self._pick)
        self._paint()

    @property
    def colour(self) -> QColor:
        return QColor(self._colour)

    def set_colour(self, colour: QColor | str, emit: bool = False) -> None:
        colour = QColor(colour)
        if colour == self._colour:
            return
        self._colour = colour
        self._paint()
        if emit:
            self.colour_changed.emit(QColor(colour))

    def _paint(self) -> None:
        self.setStyleSheet(f"QPushButton {{ background: {self._colour.name()}; border: 1px solid #6b7079; "
                           "border-radius: 3px; } QPushButton:hover { border: 1px solid #4fc3f7; }")

    def _pick(self) -> None:
        chosen = QColorDialog.getColor(self._colour, self, self.toolTip())
        if chosen.isValid():
            self.set_colour(chosen, emit=True)


@dataclass
class ModelChoice:
    """A model the add-layer dialog offers: its label, kind, the model, the lock to
    hold while copying it (a job's ``step_lock``) and its checkpoint hash if known."""

    label: str
    kind: str
    model: Any
    lock: Any = None
    checkpoint_sha256: str | None = None
    step: int = 0


def model_choices(session: Any) -> list[ModelChoice]:
    """The session's jobs whose models' dreams make textures (`models.kinds`), newest first."""
    from models import kinds

    texture = kinds.keys("texture")
    out = []
    for job in reversed(list(getattr(session, "jobs", []) or [])):
        model = getattr(job, "model", None)
        if model is None or job.kind not in texture:
            continue
        ckpt = getattr(job, "checkpoint", None)
        sha = getattr(ckpt, "sha256", None) if ckpt is not None and getattr(job, "trainer", None) is None else None
        where = f" · {job.path.name}" if getattr(job, "path", None) else ""
        out.append(ModelChoice(f"{job.title} · run #{job.id} · step {job.step:,}{where}", job.kind, model,
                               getattr(job, "step_lock", None), sha, int(job.step or 0)))
    return out


class ModelLayerDialog(QDialog):
    """Choose a model and how to sample it: a tiled texture (one chain after N Gibbs
    steps; mirrored tiling is seamless) or a single frame; seed, temperature, scale."""

    def __init__(self, choices: Sequence[ModelChoice], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Layer from a model")
        self.choices = list(choices)
        form = QFormLayout()
        self.model_box = QComboBox()
        for c in self.choices:
            self.model_box.addItem(c.label)
        self.model_box.setToolTip("A trained (or training) model; it is copied, so training goes on undisturbed")
        self.make_box = QComboBox()
        for text, data in (("Texture, mirrored tiles (seamless)", "mirror"), ("Texture, plain tiles", "plain"),
                           ("Single dream, placed once", "single"), ("Frame (VAE sample / hybrid dream)", "frame")):
            self.make_box.addItem(text, data)
        self.make_box.setToolTip("Mirrored tiling flips every other tile so all edges meet: a seamless texture")
        self.steps = QSpinBox()
        self.steps.setRange(0, 100_000)
        self.steps.setValue(500)
        self.steps.setSingleStep(100)
        self.steps.setToolTip("Gibbs steps from noise before the picture is taken (more: a better-mixed dream)")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(random.randrange(100_000))
        self.seed.setToolTip("The same seed, model and steps give the same picture")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.05, 10.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(1.0)
        self.temperature.setToolTip("Sampling temperature: below 1 calmer, above 1 wilder")
        self.show_box = QComboBox()
        self.show_box.addItem("Probabilities (smooth)", "probs")
        self.show_box.addItem("Samples (binary grain)", "samples")
        self.scale = QDoubleSpinBox()
        self.scale.setRange(0.1, 128.0)
        self.scale.setDecimals(2)
        self.scale.setValue(4.0)
        self.scale.setToolTip("Upscale factor (bicubic): a 28 px dream at ×4 is a 112 px tile")
        form.addRow("Model", self.model_box)
        form.addRow("Make", self.make_box)
        form.addRow("Gibbs steps", self.steps)
        form.addRow("Seed", self.seed)
        form.addRow("Temperature", self.temperature)
        form.addRow("Show", self.show_box)
        form.addRow("Scale", self.scale)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Add Layer")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(buttons)

    def values(self) -> dict[str, Any]:
        return {"choice": self.choices[self.model_box.currentIndex()], "make": self.make_box.currentData(),
                "steps": self.steps.value(), "seed": self.seed.value(), "temperature": self.temperature.value(),
                "show": self.show_box.currentData(), "scale": self.scale.value()}


class CanvasSizeDialog(QDialog):
    """Canvas size (presets up to 4096 × 4096, or custom) and background colour or transparency."""

    def __init__(self, width: int, height: int, background: tuple[float, ...] | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Canvas size")
        self.preset = QComboBox()
        self.preset.addItem("Custom", None)
        for label, w, h in CANVAS_PRESETS:
            self.preset.addItem(label, (w, h))
        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for box, value in ((self.width_box, width), (self.height_box, height)):
            box.setRange(1, MAX_CANVAS_SIZE)
            box.setValue(value)
            box.setSuffix(" px")
            box.valueChanged.connect(self._sync_preset)
        self.transparent = QCheckBox("Transparent background")
        self.transparent.setChecked(background is None)
        self.transparent.setToolTip("No background colour: exports keep transparency")
        self.colour = ColourButton(_qcolour(background) if background is not None else QColor("#ffffff"),
                                   "Background colour")
        self.colour.setEnabled(background is not None)
        self.transparent.toggled.connect(lambda on: self.colour.setEnabled(not on))
        self.note = QLabel()
        self.note.setStyleSheet("color: #8a9099")
        self.note.setWordWrap(True)
        self.preset.currentIndexChanged.connect(self._preset_chosen)
        form = QFormLayout()
        form.addRow("Preset", self.preset)
        form.addRow("Width", self.width_box)
        form.addRow("Height", self.height_box)
        row = QHBoxLayout()
        row.addWidget(self.colour)
        row.addWidget(self.transparent)
        row.addStretch(1)
        form.addRow("Background", row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.note)
        lay.addWidget(buttons)
        self._sync_preset()

    def _preset_chosen(self) -> None:
        size = self.preset.currentData()
        if size:
            with QSignalBlocker(self.width_box), QSignalBlocker(self.height_box):
                self.width_box.setValue(size[0])
                self.height_box.setValue(size[1])
        self._sync_note()

    def _sync_preset(self) -> None:
        size = (self.width_box.value(), self.height_box.value())
        index = next((i for i in range(1, self.preset.count()) if self.preset.itemData(i) == size), 0)
        with QSignalBlocker(self.preset):
            self.preset.setCurrentIndex(index)
        self._sync_note()

    def _sync_note(self) -> None:
        mp = self.width_box.value() * self.height_box.value() / 1e6
        self.note.setText(f"{mp:.1f} megapixels." + (" Large canvases render in the background; edits take "
                                                     "longer to appear." if mp > 4.5 else ""))

    def values(self) -> tuple[int, int, tuple[float, float, float, float] | None]:
        bg = None if self.transparent.isChecked() else (*_rgb(self.colour.colour), 1.0)
        return self.width_box.value(), self.height_box.value(), bg


def _group(title: str) -> tuple[QGroupBox, QFormLayout]:
    box = QGroupBox(title)
    form = QFormLayout(box)
    form.setContentsMargins(8, 6, 8, 6)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return box, form


def _spin(minimum: float, maximum: float, step: float, decimals: int, tip: str, suffix: str = "") -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(minimum, maximum)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setKeyboardTracking(False)
    box.setToolTip(tip)
    if suffix:
        box.setSuffix(suffix)
    return box


# ==========================================================================
# The Canvas tab
# ==========================================================================


class CanvasView(QWidget):
    """The Canvas tab.  See the module docs.

    Public slots: :meth:`add_snapshot_layer` (a dream snapshot: uint8 RGBA and its
    provenance, e.g. from the Dreams tab's ``snapshotToCanvas``), :meth:`add_layer`,
    :meth:`add_dataset_image`, :meth:`import_image`, :meth:`undo`, :meth:`redo`,
    :meth:`fit`, :meth:`replace_canvas` (an opened project).  Context: :meth:`set_session`
    (models and images to offer), ``dream_snapshot`` (a callable returning what the
    Dreams tab shows, ``(rgba, provenance)``, or ``None``: "Snapshot of the Dreams" takes
    it, else the newest training frame), ``selected_image`` (a callable returning the
    dataset index the person selected, or ``None``).  Signals: ``status_message(text,
    ms)``, ``error_raised(title, message)`` (with no listener the view shows the error in
    a box of its own), ``rendered(ms)``.
    """

    status_message = Signal(str, int)
    error_raised = Signal(str, str)
    rendered = Signal(float)

    def __init__(self, canvas: Canvas | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas if canvas is not None else Canvas(1024, 1024, background=(1.0, 1.0, 1.0, 1.0))
        self.session: Any = None
        self.dream_snapshot: Callable[[], tuple[np.ndarray, dict] | None] | None = None
        self.selected_image: Callable[[], int | None] | None = None
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
        self.canvas.events.connect(self._on_canvas_event)
        self._schedule(list_=True, props=True)

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        self.scene = QGraphicsScene(self)
        self.item = CompositeItem()
        self.scene.addItem(self.item)
        self.outline = QGraphicsRectItem()
        pen = QPen(QColor("#4fc3f7"))
        pen.setCosmetic(True)
        pen.setWidth(1)
        pen.setStyle(Qt.PenStyle.DashLine)
        self.outline.setPen(pen)
        self.outline.setZValue(10)
        self.outline.hide()
        self.scene.addItem(self.outline)
        self.view = CanvasGraphicsView(self.scene)
        self.view.zoom_changed.connect(lambda _z: self._update_info())
        self.view.move_started.connect(self._move_started)
        self.view.moved.connect(self._move_by)
        self.view.move_finished.connect(self._move_finished)

        self.toolbar = QToolBar("Canvas")
        self.toolbar.setIconSize(QSize(16, 16))
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)

        self.info = QLabel()
        self.info.setStyleSheet("color: #8a9099; padding: 2px 6px;")
        self.info.setToolTip("Canvas size, layers, the last render time, zoom")

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.setSpacing(0)
        ll.addWidget(self.toolbar)
        ll.addWidget(self.view, 1)
        ll.addWidget(self.info)

        # layer list ---------------------------------------------------------
        self.layer_list = QListWidget()
        self.layer_list.setIconSize(QSize(THUMB, THUMB))
        self.layer_list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.layer_list.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.layer_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.layer_list.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked
                                        | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.layer_list.setToolTip("Layers, top first. Tick to show or hide, drag to reorder, double-click to rename")
        self.layer_list.setMinimumHeight(120)
        self.layer_list.currentItemChanged.connect(self._current_item_changed)
        self.layer_list.itemChanged.connect(self._item_changed)
        self.layer_list.model().rowsMoved.connect(lambda *_: QTimer.singleShot(0, self._list_reordered))

        self.layer_buttons = QHBoxLayout()
        self.layer_buttons.setSpacing(2)

        layers_box = QGroupBox("Layers")
        lb = QVBoxLayout(layers_box)
        lb.setContentsMargins(6, 6, 6, 6)
        lb.addWidget(self.layer_list, 1)
        lb.addLayout(self.layer_buttons)

        # properties -----------------------------------------------------------
        props = QWidget()
        pl = QVBoxLayout(props)
        pl.setContentsMargins(0, 0, 0, 0)

        box, form = _group("Blending")
        self.name_edit = QLineEdit()
        self.name_edit.setToolTip("The layer's name (also its file name in exports)")
        self.name_edit.editingFinished.connect(lambda: self._edit(name=self.name_edit.text().strip() or "Layer"))
        self.blend_box = QComboBox()
        for mode in BLEND_MODES:
            self.blend_box.addItem(BLEND_TITLES[mode], mode)
        self.blend_box.setToolTip("How the layer mixes with the layers below (W3C Compositing and Blending)")
        self.blend_box.setMaxVisibleItems(12)
        self.blend_box.currentIndexChanged.connect(lambda _i: self._edit(blend_mode=self.blend_box.currentData()))
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("Opacity of the layer")
        self.opacity_spin = QSpinBox()
        self.opacity_spin.setRange(0, 100)
        self.opacity_spin.setSuffix(" %")
        self.opacity_spin.setKeyboardTracking(False)
        self.opacity_spin.setToolTip("Opacity of the layer")
        self._gesture(self.opacity_slider)
        self.opacity_slider.valueChanged.connect(self._opacity_slid)
        self.opacity_spin.valueChanged.connect(lambda v: self._edit(merge=True, opacity=v / 100))
        self.opacity_spin.editingFinished.connect(self.canvas.end_merge)
        row = QHBoxLayout()
        row.addWidget(self.opacity_slider, 1)
        row.addWidget(self.opacity_spin)
        form.addRow("Name", self.name_edit)
        form.addRow("Blend", self.blend_box)
        form.addRow("Opacity", row)
        pl.addWidget(box)

        box, form = _group("Placement")
        self.x_spin, self.y_spin = QSpinBox(), QSpinBox()
        for spin, name in ((self.x_spin, "x"), (self.y_spin, "y")):
            spin.setRange(-4 * MAX_SCALED_SIDE, 4 * MAX_SCALED_SIDE)
            spin.setSuffix(" px")
            spin.setKeyboardTracking(False)
            spin.setToolTip(f"{name.upper()} of the layer's top-left corner (or the tile origin) on the canvas; "
                            "drag on the canvas with the move tool (M)")
            spin.valueChanged.connect(lambda v, n=name: self._edit(merge=True, **{n: v}))
            spin.editingFinished.connect(self.canvas.end_merge)
        row = QHBoxLayout()
        row.addWidget(self.x_spin)
        row.addWidget(self.y_spin)
        self.scale_spin = _spin(0.01, 512.0, 0.25, 3, "Scale factor: a 32 px texture at ×32 fills a 1024 px canvas",
                                suffix=" ×")
        self.scale_spin.valueChanged.connect(lambda v: self._edit(merge=True, scale=v))
        self.scale_spin.editingFinished.connect(self.canvas.end_merge)
        self.fill_button = QToolButton()
        self.fill_button.setText("Fill")
        self.fill_button.setToolTip("Scale the layer to cover the whole canvas, at the top-left")
        self.fill_button.clicked.connect(self.fill_canvas)
        self.center_button = QToolButton()
        self.center_button.setText("Centre")
        self.center_button.setToolTip("Centre the layer on the canvas")
        self.center_button.clicked.connect(self.center_layer)
        srow = QHBoxLayout()
        srow.addWidget(self.scale_spin, 1)
        srow.addWidget(self.fill_button)
        srow.addWidget(self.center_button)
        self.resample_box = QComboBox()
        for mode in RESAMPLE_MODES:
            self.resample_box.addItem(RESAMPLE_TITLES[mode], mode)
        self.resample_box.setToolTip("Upsampling filter: nearest keeps pixels crisp, bicubic is smooth")
        self.resample_box.currentIndexChanged.connect(lambda _i: self._edit(resample=self.resample_box.currentData()))
        self.tiling_box = QComboBox()
        for mode, text in TILING_TITLES.items():
            self.tiling_box.addItem(text, mode)
        self.tiling_box.setToolTip("Repeat the layer over the whole canvas; mirrored tiles meet without seams")
        self.tiling_box.currentIndexChanged.connect(lambda _i: self._edit(tiling=self.tiling_box.currentData()))
        form.addRow("Position", row)
        form.addRow("Scale", srow)
        form.addRow("Resample", self.resample_box)
        form.addRow("Tiling", self.tiling_box)
        pl.addWidget(box)

        box, form = _group("Colour")
        self.colourise_box = QComboBox()
        for text, data in (("None", None), ("Gradient map", "gradient"), ("Palette", "palette")):
            self.colourise_box.addItem(text, data)
        self.colourise_box.setToolTip("Colourise by luminance: a gradient map, or a posterising palette")
        self.colourise_box.currentIndexChanged.connect(self._colourise_kind_changed)
        self.colour_stack = QStackedWidget()
        self.colour_stack.addWidget(QWidget())
        # gradient editor
        grad = QWidget()
        gl = QHBoxLayout(grad)
        gl.setContentsMargins(0, 0, 0, 0)
        self.gradient_buttons = [ColourButton("#000000", tip) for tip in
                                 ("Colour of the darkest tones", "Colour of the mid tones", "Colour of the lightest tones")]
        self.gradient_mid = QCheckBox("3 stops")
        self.gradient_mid.setToolTip("Add a middle stop (at 50 % luminance)")
        self.gradient_preset = QComboBox()
        self.gradient_preset.addItem("Preset…", None)
        for name in GRADIENT_PRESETS:
            self.gradient_preset.addItem(name, name)
        self.gradient_preset.setToolTip("Gradient presets")
        for b in self.gradient_buttons:
            b.colour_changed.connect(lambda _c: self._apply_colourise())
            gl.addWidget(b)
        self.gradient_mid.toggled.connect(self._gradient_mid_toggled)
        self.gradient_preset.activated.connect(self._gradient_preset_chosen)
        gl.addWidget(self.gradient_mid)
        gl.addWidget(self.gradient_preset, 1)
        self.colour_stack.addWidget(grad)
        # palette editor
        pal = QWidget()
        pg = QHBoxLayout(pal)
        pg.setContentsMargins(0, 0, 0, 0)
        self.palette_count = QSpinBox()
        self.palette_count.setRange(2, 8)
        self.palette_count.setValue(4)
        self.palette_count.setToolTip("Number of palette colours (luminance bands)")
        self.palette_count.valueChanged.connect(self._palette_count_changed)
        self.palette_buttons = [ColourButton("#000000", f"Palette colour {i + 1} (band {i + 1}, dark to light)")
                                for i in range(8)]
        self.palette_buttons_row = QHBoxLayout()
        self.palette_buttons_row.setSpacing(2)
        for b in self.palette_buttons:
            b.setFixedSize(20, 22)
            b.colour_changed.connect(lambda _c: self._apply_colourise())
            self.palette_buttons_row.addWidget(b)
        self.palette_preset = QComboBox()
        self.palette_preset.addItem("Preset…", None)
        for name in PALETTE_PRESETS:
            self.palette_preset.addItem(name, name)
        self.palette_preset.setToolTip("Palette presets")
        self.palette_preset.activated.connect(self._palette_preset_chosen)
        pv = QVBoxLayout()
        top = QHBoxLayout()
        top.addWidget(self.palette_count)
        top.addWidget(self.palette_preset, 1)
        pv.addLayout(top)
        pv.addLayout(self.palette_buttons_row)
        pg.addLayout(pv)
        self.colour_stack.addWidget(pal)
        self.colour_stack.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.invert_check = QCheckBox("Invert")
        self.invert_check.setToolTip("Invert the colours (after colourising)")
        self.invert_check.toggled.connect(lambda on: self._edit(invert=on))
        form.addRow("Colourise", self.colourise_box)
        form.addRow(self.colour_stack)
        form.addRow("", self.invert_check)
        pl.addWidget(box)

        box, form = _group("Levels")
        self.level_spins = {
            "in_black": _spin(0.0, 0.99, 0.01, 2, "Input black point: darker tones become black"),
            "in_white": _spin(0.01, 1.0, 0.01, 2, "Input white point: lighter tones become white"),
            "gamma": _spin(0.1, 10.0, 0.05, 2, "Midtones: above 1 brightens, below 1 darkens"),
            "out_black": _spin(0.0, 1.0, 0.01, 2, "Output black: the darkest the layer gets"),
            "out_white": _spin(0.0, 1.0, 0.01, 2, "Output white: the lightest the layer gets"),
        }
        for spin in self.level_spins.values():
            spin.valueChanged.connect(lambda _v: self._levels_changed())
            spin.editingFinished.connect(self.canvas.end_merge)
        r1, r2 = QHBoxLayout(), QHBoxLayout()
        for key in ("in_black", "gamma", "in_white"):
            r1.addWidget(self.level_spins[key])
        for key in ("out_black", "out_white"):
            r2.addWidget(self.level_spins[key])
        self.levels_reset = QToolButton()
        self.levels_reset.setText("Reset")
        self.levels_reset.setToolTip("Reset the levels")
        self.levels_reset.clicked.connect(lambda: self._edit(levels=Levels()))
        r2.addWidget(self.levels_reset)
        form.addRow("Input", r1)
        form.addRow("Output", r2)
        pl.addWidget(box)

        self.anim_box, form = _group("Animation")
        self.frame_spin = QSpinBox()
        self.frame_spin.setToolTip("The frame of the animated source shown on the canvas")
        self.frame_spin.valueChanged.connect(lambda v: self._edit(merge=True, frame_index=v))
        self.frames_label = QLabel()
        row = QHBoxLayout()
        row.addWidget(self.frame_spin)
        row.addWidget(self.frames_label, 1)
        form.addRow("Frame", row)
        pl.addWidget(self.anim_box)

        self.provenance_label = QLabel()
        self.provenance_label.setWordWrap(True)
        self.provenance_label.setStyleSheet("color: #8a9099; font-size: 11px; padding: 2px 4px;")
        self.provenance_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        pl.addWidget(self.provenance_label)
        pl.addStretch(1)

        self.props = props
        scroll = QScrollArea()
        scroll.setWidget(props)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.empty_label = QLabel("<p style='color:#8a9099'>Add a layer (the <b>Add</b> menu): a dream snapshot, a "
                                  "texture from a trained model, a dataset image or an image file.</p>")
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.props_stack = QStackedWidget()
        self.props_stack.addWidget(self.empty_label)
        self.props_stack.addWidget(scroll)

        side = QSplitter(Qt.Orientation.Vertical)
        side.addWidget(layers_box)
        side.addWidget(self.props_stack)
        side.setStretchFactor(0, 2)
        side.setStretchFactor(1, 5)
        side.setChildrenCollapsible(False)
        side.setMinimumWidth(330)
        side.setSizes([290, 520])
        self.side_splitter = side

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(side)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([900, 350])
        split.setChildrenCollapsible(False)
        self.splitter = split
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.addWidget(split)

    def _gesture(self, slider: QSlider) -> None:
        """A slider drag is one undo step: close merging when it starts and ends."""
        slider.sliderPressed.connect(self.canvas.end_merge)
        slider.sliderReleased.connect(self.canvas.end_merge)

    def _act(self, text: str, slot: Callable[[], Any], shortcut: str | Sequence[str] | QKeySequence.StandardKey | None = None,
             tip: str = "", icon: QStyle.StandardPixmap | None = None) -> QAction:
        action = QAction(text, self)
        if icon is not None:
            action.setIcon(self.style().standardIcon(icon))
        if shortcut is not None:
            keys = [shortcut] if isinstance(shortcut, (str, QKeySequence.StandardKey)) else list(shortcut)
            action.setShortcuts([QKeySequence(k) for k in keys])
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        keys_text = _shortcut_text(action)
        tip = tip or text.replace("&", "").rstrip("…")
        action.setToolTip(f"{tip} ({keys_text})" if keys_text else tip)
        action.setStatusTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)
        return action

    def _make_actions(self) -> None:
        SP = QStyle.StandardPixmap
        # adding layers
        self.action_add_dream = self._act("Snapshot of the &Dreams", self.add_dream_snapshot, "Ctrl+Shift+D",
                                          "Add the current dream grid (the newest frame of the model's chains)")
        self.action_add_model = self._act("From a &Model…", self.add_model_layer_dialog, "Ctrl+Shift+T",
                                          "Sample a trained model: a seamless tiled texture or a single frame")
        self.action_add_dataset = self._act("Dataset &Image", self.add_dataset_image, "Ctrl+Shift+I",
                                            "Add the selected dataset image (as the models see it)")
        self.action_import = self._act("&Import Image…", self.import_image_dialog, "Ctrl+I",
                                       "Import a PNG (or JPEG, WebP, GIF; animated files become animated layers)",
                                       SP.SP_DialogOpenButton)
        self.add_menu = QMenu("Add layer", self)
        for a in (self.action_add_dream, self.action_add_model, self.action_add_dataset, None, self.action_import):
            self.add_menu.addSeparator() if a is None else self.add_menu.addAction(a)
        self.add_menu.aboutToShow.connect(self._refresh_add_menu)
        add_button = QToolButton()
        add_button.setText("Add")
        add_button.setIcon(self.style().standardIcon(SP.SP_FileDialogNewFolder))
        add_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        add_button.setMenu(self.add_menu)
        add_button.setToolTip("Add a layer: a dream snapshot, a model texture, a dataset image, an image file")
        self.add_button = add_button

        # history
        self.action_undo = self._act("&Undo", self.undo, QKeySequence.StandardKey.Undo, "Undo", SP.SP_ArrowBack)
        self.action_redo = self._act("&Redo", self.redo, ["Ctrl+Shift+Z", "Ctrl+Y"], "Redo", SP.SP_ArrowForward)
        self.action_undo.setShortcuts([QKeySequence("Ctrl+Z")])
        self.action_undo.setToolTip("Undo (Ctrl+Z)")
        # layers
        self.action_raise = self._act("Raise", lambda: self.move_selected(+1), "Ctrl+]", "Move the layer up", SP.SP_ArrowUp)
        self.action_lower = self._act("Lower", lambda: self.move_selected(-1), "Ctrl+[", "Move the layer down",
                                      SP.SP_ArrowDown)
        self.action_duplicate = self._act("Duplicate", self.duplicate_selected, "Ctrl+J", "Duplicate the layer",
                                          SP.SP_FileDialogContentsView)
        self.action_delete = self._act("Delete", self.delete_selected, "Delete", "Delete the layer", SP.SP_TrashIcon)
        for a in (self.action_raise, self.action_lower, self.action_duplicate, self.action_delete):
            b = QToolButton()
            b.setDefaultAction(a)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
            b.setAutoRaise(True)
            self.layer_buttons.addWidget(b)
        self.layer_buttons.addStretch(1)
        # view
        self.action_move = self._act("&Move", lambda: self.view.set_move_mode(self.action_move.isChecked()), "M",
                                     "Move tool: drag the selected layer on the canvas")
        self.action_move.setCheckable(True)
        self.action_fit = self._act("&Fit", self.fit, ["F", "Ctrl+0"], "Fit the canvas in the view")
        self.action_actual = self._act("100 %", lambda: self._zoom_to(1.0), "Ctrl+Alt+0", "Actual pixels")
        self.action_zoom_in = self._act("Zoom In", lambda: self.view.zoom_by(1.25), QKeySequence.StandardKey.ZoomIn)
        self.action_zoom_out = self._act("Zoom Out", lambda: self.view.zoom_by(0.8), QKeySequence.StandardKey.ZoomOut)
        self.action_size = self._act("Canvas &Size…", self.canvas_size_dialog, "Ctrl+Alt+C",
                                     "Canvas size (up to 4096 × 4096) and background")
        # export
        self.action_export_layers = self._act("Layers + Composite (PNG)…", self.export_layers_dialog, "Ctrl+Shift+E",
                                              "Export every layer and the composite as PNGs with provenance")
        self.action_export_png = self._act("Composite (PNG)…", self.export_composite_dialog, "Ctrl+E",
                                           "Export the composite as a PNG with provenance")
        self.action_export_ora = self._act("OpenRaster (.ora)…", self.export_ora_dialog, "Ctrl+Alt+E",
                                           "Export the layers as OpenRaster (opens in Krita, GIMP, MyPaint)")
        self.action_export_anim = self._act("Animation (GIF / APNG)…", self.export_animation_dialog, None,
                                            "Export an animated layer's frames, composited, as a GIF or APNG")
        self.export_menu = QMenu("Export", self)
        for a in (self.action_export_layers, self.action_export_png, self.action_export_ora, self.action_export_anim):
            self.export_menu.addAction(a)
        export_button = QToolButton()
        export_button.setText("Export")
        export_button.setIcon(self.style().standardIcon(SP.SP_DialogSaveButton))
        export_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        export_button.setMenu(self.export_menu)
        export_button.setToolTip("Export PNGs with provenance, OpenRaster, or an animation")
        self.export_button = export_button

        tb = self.toolbar
        for item in (add_button, None, self.action_undo, self.action_redo, None, self.action_move, self.action_fit,
                     self.action_actual, None, self.action_size, export_button):
            if item is None:
                tb.addSeparator()
            elif isinstance(item, QAction):
                tb.addAction(item)
            else:
                tb.addWidget(item)

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
    def set_session(self, session: Any, selected_image: Callable[[], int | None] | None = None) -> None:
        """Offer ``session``'s models (textures, frames) and images (dataset layers)."""
        self.session = session
        if selected_image is not None:
            self.selected_image = selected_image

    def _refresh_add_menu(self) -> None:
        self.action_add_dream.setEnabled(self._dream_source() is not None)
        self.action_add_model.setEnabled(bool(model_choices(self.session)))
        images = getattr(self.session, "images", None)
        self.action_add_dataset.setEnabled(images is not None and len(images) > 0)

    # ------------------------------------------------------------------ canvas events, sync
    def _on_canvas_event(self, event: CanvasEvent) -> None:
        kind = event.kind
        if kind == "history-changed":
            self._update_history()
            return
        if kind == "layer-added" and event.layer_id is not None:
            self.selected_id = event.layer_id
        if kind in ("layer-added", "layer-removed", "layers-reordered"):
            self._schedule(list_=True, props=True)
        elif kind == "layer-changed":
            fields = set(event.fields)
            self._schedule(list_=bool(fields & {"name", "visible", "source", "frames", "frame_index"}),
                           props=event.layer_id == self.selected_id)
        else:
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

    # ------------------------------------------------------------------ layer list
    def _icon(self, layer: Layer) -> QIcon:
        pixels = layer.pixels
        hit = self._thumbs.get(id(pixels))
        if hit is not None and hit[0] is pixels:
            return hit[1]
        icon = QIcon(thumbnail(pixels))
        self._thumbs[id(pixels)] = (pixels, icon)
        return icon

    def _rebuild_list(self, state: CanvasState) -> None:
        live = {id(layer.pixels) for layer in state.layers}
        for key in [k for k in self._thumbs if k not in live]:
            del self._thumbs[key]
        lw = self.layer_list
        with QSignalBlocker(lw):
            lw.clear()
            current = None
            for layer in reversed(state.layers):
                item = QListWidgetItem(self._icon(layer), layer.name)
                item.setData(Qt.ItemDataRole.UserRole, layer.id)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEditable
                              | Qt.ItemFlag.ItemIsUserCheckable | Qt.ItemFlag.ItemIsDragEnabled)
                item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
                bits = [BLEND_TITLES[layer.blend_mode]]
                if layer.opacity < 1:
                    bits.append(f"{layer.opacity:.0%}")
                if layer.tiling:
                    bits.append(f"{layer.tiling} tiles")
                if layer.frames:
                    bits.append(f"{len(layer.frames)} frames")
                h, w = layer.pixels.shape[:2]
                item.setToolTip(f"{layer.name}\n{w}×{h} px source · " + " · ".join(bits)
                                + "\nTick: visible · drag: reorder · double-click: rename")
                if not layer.visible:
                    item.setForeground(QColor("#6b7079"))
                lw.addItem(item)
                if layer.id == self.selected_id:
                    current = item
            if current is not None:
                lw.setCurrentItem(current)
        self.props_stack.setCurrentIndex(1 if state.layers else 0)
        self._update_layer_actions()

    def _row_layer_id(self, item: QListWidgetItem | None) -> str | None:
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def _current_item_changed(self, current: QListWidgetItem | None, _previous=None) -> None:
        lid = self._row_layer_id(current)
        if lid is not None and lid != self.selected_id:
            self.canvas.end_merge()
            self.selected_id = lid
            self._load_props()
            self._update_outline()
            self._update_layer_actions()

    def _item_changed(self, item: QListWidgetItem) -> None:
        lid = self._row_layer_id(item)
        if lid is None:
            return
        try:
            layer = self.canvas.layer(lid)
        except KeyError:
            return
        visible = item.checkState() == Qt.CheckState.Checked
        name = item.text().strip()
        changes: dict[str, Any] = {}
        if visible != layer.visible:
            changes["visible"] = visible
        if name and name != layer.name:
            changes["name"] = name
        if changes:
            self._edit_layer(lid, **changes)

    def _list_reordered(self) -> None:
        """The person dragged a row: apply the list's order to the canvas in one undo step."""
        lw = self.layer_list
        order = [lw.item(r).data(Qt.ItemDataRole.UserRole) for r in range(lw.count())][::-1]  # bottom first
        if order == [layer.id for layer in self.canvas.layers] or sorted(order) != sorted(l.id for l in self.canvas.layers):
            self._schedule(list_=True)
            return
        with self.canvas.macro("Reorder layers"):
            for index, lid in enumerate(order):
                self.canvas.reorder_layer(lid, index)
        self.flush()

    def selected_layer(self) -> Layer | None:
        if self.selected_id is None:
            return None
        try:
            return self.canvas.layer(self.selected_id)
        except KeyError:
            return None

    def select_layer(self, layer_id: str) -> None:
        self.canvas.end_merge()
        self.selected_id = layer_id
        self._schedule(list_=True, props=True)
        self.flush()

    def _update_layer_actions(self) -> None:
        layers = self.canvas.layers
        layer = self.selected_layer()
        index = self.canvas.index_of(layer.id) if layer is not None else -1
        self.action_raise.setEnabled(layer is not None and index < len(layers) - 1)
        self.action_lower.setEnabled(layer is not None and index > 0)
        self.action_duplicate.setEnabled(layer is not None)
        self.action_delete.setEnabled(layer is not None)
        self.action_export_anim.setEnabled(any(layer.frames for layer in layers))

    # ------------------------------------------------------------------ properties
    def _load_props(self) -> None:
        layer = self.selected_layer()
        self.props.setEnabled(layer is not None)
        if layer is None:
            self.provenance_label.setText("")
            return
        self._loading = True
        try:
            widgets = [self.name_edit, self.blend_box, self.opacity_slider, self.opacity_spin, self.x_spin, self.y_spin,
                       self.scale_spin, self.resample_box, self.tiling_box, self.colourise_box, self.invert_check,
                       self.frame_spin, self.gradient_mid, self.palette_count, *self.level_spins.values(),
                       *self.gradient_buttons, *self.palette_buttons]
            blockers = [QSignalBlocker(w) for w in widgets]
            if not self.name_edit.hasFocus():
                self.name_edit.setText(layer.name)
            self.blend_box.setCurrentIndex(self.blend_box.findData(layer.blend_mode))
            self.opacity_slider.setValue(round(layer.opacity * 100))
            self.opacity_spin.setValue(round(layer.opacity * 100))
            self.x_spin.setValue(layer.x)
            self.y_spin.setValue(layer.y)
            self.scale_spin.setValue(layer.scale)
            self.resample_box.setCurrentIndex(self.resample_box.findData(layer.resample))
            self.tiling_box.setCurrentIndex(self.tiling_box.findData(layer.tiling))
            self.invert_check.setChecked(layer.invert)
            for key, spin in self.level_spins.items():
                spin.setValue(getattr(layer.levels, key))
            colourise = layer.colourise
            if isinstance(colourise, GradientMap):
                self.colourise_box.setCurrentIndex(1)
                stops = colourise.stops
                self.gradient_buttons[0].set_colour(_qcolour(stops[0][1]))
                self.gradient_buttons[2].set_colour(_qcolour(stops[-1][1]))
                mid = len(stops) >= 3
                self.gradient_mid.setChecked(mid)
                if mid:
                    self.gradient_buttons[1].set_colour(_qcolour(stops[len(stops) // 2][1]))
            elif isinstance(colourise, Palette):
                self.colourise_box.setCurrentIndex(2)
                colours = colourise.colours[:8]
                self.palette_count.setValue(max(2, len(colours)))
                for b, c in zip(self.palette_buttons, colours):
                    b.set_colour(_qcolour(c))
            else:
                self.colourise_box.setCurrentIndex(0)
            self._show_colour_editor()
            n = len(layer.frames)
            self.anim_box.setVisible(n > 0)
            self.frame_spin.setRange(0, max(0, n - 1))
            self.frame_spin.setValue(layer.frame_index)
            self.frames_label.setText(f"of {n} (0–{n - 1})" if n else "")
            del blockers
        finally:
            self._loading = False
        self.provenance_label.setText(self._provenance_text(layer))

    @staticmethod
    def _provenance_text(layer: Layer) -> str:
        p = layer.provenance
        h, w = layer.pixels.shape[:2]
        bits = [f"{w}×{h} px"]
        source = p.get("source")
        if source:
            bits.append(str(source))
        for key, label in (("model", "model"), ("seed", "seed"), ("steps", "steps"), ("temperature", "T"),
                           ("file", "file"), ("path", "path")):
            value = p.get(key)
            if value is not None and not (key == "path" and p.get("file")):
                bits.append(f"{label} {Path(str(value)).name if key == 'path' else value}")
        sha = p.get("checkpoint_sha256")
        if sha:
            bits.append(f"checkpoint {str(sha)[:12]}…")
        return "Provenance: " + " · ".join(bits)

    def _show_colour_editor(self) -> None:
        kind = self.colourise_box.currentData()
        self.colour_stack.setCurrentIndex({None: 0, "gradient": 1, "palette": 2}[kind])
        self.gradient_buttons[1].setVisible(self.gradient_mid.isChecked())
        n = self.palette_count.value()
        for i, b in enumerate(self.palette_buttons):
            b.setVisible(i < n)
        self.colour_stack.setVisible(kind is not None)

    def _edit(self, merge: bool = False, **changes: Any) -> None:
        """Apply a property edit to the selected layer (ignored while the panel is loading)."""
        if self._loading or self.selected_id is None:
            return
        self._edit_layer(self.selected_id, merge=merge, **changes)

    def _edit_layer(self, layer_id: str, merge: bool = False, **changes: Any) -> Layer | None:
        try:
            return self.canvas.set_layer(layer_id, merge=merge, **changes)
        except (ValueError, TypeError) as exc:
            self._status(f"Not applied: {exc}", 6000)
            self._schedule(props=True)
            return None
        except KeyError:
            return None

    def _opacity_slid(self, value: int) -> None:
        if self._loading:
            return
        with QSignalBlocker(self.opacity_spin):
            self.opacity_spin.setValue(value)
        self._edit(merge=True, opacity=value / 100)

    def _levels_changed(self) -> None:
        if self._loading:
            return
        values = {k: s.value() for k, s in self.level_spins.items()}
        if values["in_white"] <= values["in_black"]:
            self._status("Levels: the input white point must be above the black point", 4000)
            return
        self._edit(merge=True, levels=Levels(**values))

    def _colourise_kind_changed(self, _index: int) -> None:
        if self._loading:
            return
        kind = self.colourise_box.currentData()
        if kind == "gradient" and all(b.colour == QColor("#000000") for b in self.gradient_buttons):
            self._set_gradient_colours(GRADIENT_PRESETS["Ember"])
        if kind == "palette" and all(b.colour == QColor("#000000") for b in self.palette_buttons):
            self._set_palette_colours(PALETTE_PRESETS["Risograph"])
        self._show_colour_editor()
        self._apply_colourise()

    def _set_gradient_colours(self, colours: Sequence[str]) -> None:
        with QSignalBlocker(self.gradient_mid):
            self.gradient_mid.setChecked(len(colours) >= 3)
        self.gradient_buttons[0].set_colour(colours[0])
        self.gradient_buttons[2].set_colour(colours[-1])
        if len(colours) >= 3:
            self.gradient_buttons[1].set_colour(colours[1])
        self._show_colour_editor()

    def _set_palette_colours(self, colours: Sequence[str]) -> None:
        with QSignalBlocker(self.palette_count):
            self.palette_count.setValue(len(colours))
        for b, c in zip(self.palette_buttons, colours):
            b.set_colour(c)
        self._show_colour_editor()

    def set_gradient_colour(self, index: int, colour: QColor | str) -> None:
        """Set gradient stop ``index`` (0 dark, 1 middle, 2 light) and apply (as the colour picker does)."""
        if index == 1 and not self.gradient_mid.isChecked():
            with QSignalBlocker(self.gradient_mid):
                self.gradient_mid.setChecked(True)
        self.gradient_buttons[index].set_colour(colour, emit=True)

    def _gradient_mid_toggled(self, on: bool) -> None:
        if on and self.gradient_buttons[1].colour == QColor("#000000"):
            a, b = self.gradient_buttons[0].colour, self.gradient_buttons[2].colour
            mid = QColor((a.red() + b.red()) // 2, (a.green() + b.green()) // 2, (a.blue() + b.blue()) // 2)
            self.gradient_buttons[1].set_colour(mid)
        self._show_colour_editor()
        self._apply_colourise()

    def _gradient_preset_chosen(self, _index: int) -> None:
        name = self.gradient_preset.currentData()
        if name:
            self._set_gradient_colours(GRADIENT_PRESETS[name])
            self._apply_colourise()
        with QSignalBlocker(self.gradient_preset):
            self.gradient_preset.setCurrentIndex(0)

    def _palette_preset_chosen(self, _index: int) -> None:
        name = self.palette_preset.currentData()
        if name:
            self._set_palette_colours(PALETTE_PRESETS[name])
            self._apply_colourise()
        with QSignalBlocker(self.palette_preset):
            self.palette_preset.setCurrentIndex(0)

    def _palette_count_changed(self, _n: int) -> None:
        self._show_colour_editor()
        self._apply_colourise()

    def current_colourise(self) -> GradientMap | Palette | None:
        """The colourise setting the panel describes."""
        kind = self.colourise_box.currentData()
        if kind == "gradient":
            b = self.gradient_buttons
            stops = [(0.0, _rgb(b[0].colour))]
            if self.gradient_mid.isChecked():
                stops.append((0.5, _rgb(b[1].colour)))
            stops.append((1.0, _rgb(b[2].colour)))
            return GradientMap(tuple(stops))
        if kind == "palette":
            return Palette(tuple(_rgb(b.colour) for b in self.palette_buttons[: self.palette_count.value()]))
        return None

    def _apply_colourise(self) -> None:
        if self._loading:
            return
        self._edit(colourise=self.current_colourise())

    # ------------------------------------------------------------------ layer operations
    def add_layer(self, layer: Layer, *, center: bool = False) -> Layer:
        """Put ``layer`` on top (centred on the canvas when ``center`` and it is not tiled) and select it."""
        if center and layer.tiling is None:
            w, h = layer.scaled_size
            layer = _replace(layer, x=(self.canvas.width - w) // 2, y=(self.canvas.height - h) // 2)
        self.canvas.end_merge()
        self.canvas.add_layer(layer)
        self.selected_id = layer.id
        self._schedule(list_=True, props=True)
        self.flush()
        self._status(f"Added “{layer.name}”", 4000)
        return layer

    def _fit_scale(self, layer: Layer, fraction: float, integer: bool) -> float:
        h, w = layer.pixels.shape[:2]
        s = fraction * min(self.canvas.width / w, self.canvas.height / h)
        s = max(1.0, math.floor(s)) if integer and s >= 1 else s
        return max(1e-3, min(s, MAX_SCALED_SIDE / max(h, w)))

    @Slot(object, dict)
    def add_snapshot_layer(self, rgba: np.ndarray, provenance: Mapping[str, Any] | None = None) -> Layer | None:
        """Add a dream snapshot (uint8 RGBA grid or chain, and its provenance) as a layer,
        scaled up crisply (nearest, whole factors) to about half the canvas and centred."""
        from studio.layer_sources import LayerSourceError, from_dream_snapshot

        try:
            layer = from_dream_snapshot(rgba, dict(provenance or {}))
            layer = _replace(layer, scale=self._fit_scale(layer, 0.6, integer=True))
        except (LayerSourceError, ValueError, TypeError) as exc:
            self._error("The snapshot could not be added", str(exc))
            return None
        return self.add_layer(layer, center=True)

    def _dream_source(self) -> tuple[np.ndarray, dict] | None:
        if self.dream_snapshot is not None:
            try:
                got = self.dream_snapshot()
            except Exception:  # noqa: BLE001 - no snapshot to offer
                got = None
            if got is not None:
                return got
        jobs = list(getattr(self.session, "jobs", []) or [])
        for job in reversed(jobs):
            frame = getattr(job, "last_frame", None)
            if frame is not None:
                from studio.layer_sources import grid, batch_pixels

                prov = {"model": job.kind, "steps": int(job.step or 0), "seed": getattr(getattr(job, "options", None), "seed", None),
                        "temperature": 1.0, "title": job.title, "run": job.id, "source": "dreams"}
                return grid(batch_pixels(frame[:64])), prov
        return None

    def add_dream_snapshot(self) -> Layer | None:
        """Add the grid the Dreams tab shows (``dream_snapshot``), else the newest training frame."""
        got = self._dream_source()
        if got is None:
            self._status("No dreams yet: train a model (Space) or start the Dreams tab first.", 6000)
            return None
        return self.add_snapshot_layer(*got)

    def add_dataset_image(self, index: int | None = None) -> Layer | None:
        """Add dataset image ``index`` (default: the selected one, else the first), scaled up bicubic."""
        from studio.layer_sources import LayerSourceError, dataset_image

        images = getattr(self.session, "images", None)
        if images is None or len(images) == 0:
            self._status("No images loaded: open a folder first (Ctrl+O).", 6000)
            return None
        if index is None and self.selected_image is not None:
            index = self.selected_image()
        index = 0 if index is None else index
        try:
            layer = dataset_image(images, index)
        except LayerSourceError as exc:
            self._error("The image could not be added", str(exc))
            return None
        layer = _replace(layer, scale=self._fit_scale(layer, 0.7, integer=False))
        return self.add_layer(layer, center=True)

    def import_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import an image as a layer", "", IMAGE_FILTER)
        if path:
            self.import_image(path)

    def import_image(self, path: str | Path) -> None:
        """Import an image file as a layer; decoding runs in the background."""
        from studio.layer_sources import import_png

        path = Path(path)
        self._status(f"Importing {path.name}…", 0)

        def done(layer: Layer) -> None:
            h, w = layer.pixels.shape[:2]
            if w > self.canvas.width or h > self.canvas.height:
                layer = _replace(layer, scale=self._fit_scale(layer, 1.0, integer=False))
            self.add_layer(layer, center=True)

        self._background(import_png, path, on_result=done, error_title=f"{path.name} could not be imported")

    def add_model_layer_dialog(self) -> None:
        choices = model_choices(self.session)
        if not choices:
            self._status("No model to sample yet: train an RBM, a hybrid or a VAE first.", 6000)
            return
        dialog = ModelLayerDialog(choices, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.add_model_layer(**dialog.values())

    def add_model_layer(self, choice: ModelChoice, make: str = "mirror", steps: int = 500, seed: int = 0,
                        temperature: float = 1.0, show: str = "probs", scale: float = 4.0) -> None:
        """Sample ``choice``'s model in the background (a private copy, taken under its lock)
        and add the result: ``make`` = "mirror" / "plain" (tiled texture), "single"
        (one dream placed once) or "frame" (a VAE sample / hybrid dream)."""
        from studio.layer_sources import detach_model, rbm_texture, sample_frame

        def work() -> Layer:
            model = detach_model(choice.model, choice.lock)
            if make == "frame":
                return sample_frame(model, seed, temperature=temperature, steps=steps, scale=scale,
                                    checkpoint_sha256=choice.checkpoint_sha256)
            tiling = None if make == "single" else make
            return rbm_texture(model, steps, seed, tiling, temperature=temperature, show=show, scale=scale,
                               checkpoint_sha256=choice.checkpoint_sha256,
                               provenance={"model_step": choice.step})

        self._status(f"Sampling {choice.label}…", 0)
        self._background(work, on_result=lambda layer: self.add_layer(layer, center=make in ("single", "frame")),
                         error_title="The model could not be sampled")

    def move_selected(self, delta: int) -> None:
        layer = self.selected_layer()
        if layer is None:
            return
        index = self.canvas.index_of(layer.id) + delta
        if 0 <= index < len(self.canvas.layers):
            self.canvas.end_merge()
            self.canvas.reorder_layer(layer.id, index)
            self.flush()

    def duplicate_selected(self) -> None:
        layer = self.selected_layer()
        if layer is not None:
            copy = self.canvas.duplicate_layer(layer.id)
            self.select_layer(copy.id)

    def delete_selected(self) -> None:
        layer = self.selected_layer()
        if layer is None:
            return
        index = self.canvas.index_of(layer.id)
        self.canvas.remove_layer(layer.id)
        layers = self.canvas.layers
        if layers:
            self.selected_id = layers[max(0, index - 1)].id
        self._schedule(list_=True, props=True)
        self.flush()
        self._status(f"Deleted “{layer.name}” (Ctrl+Z brings it back)", 5000)

    def fill_canvas(self) -> None:
        """Scale the selected layer to cover the canvas, from the top-left."""
        layer = self.selected_layer()
        if layer is None:
            return
        h, w = layer.pixels.shape[:2]
        scale = min(max(self.canvas.width / w, self.canvas.height / h), MAX_SCALED_SIDE / max(h, w))
        self._edit_layer(layer.id, scale=scale, x=0, y=0)

    def center_layer(self) -> None:
        layer = self.selected_layer()
        if layer is None:
            return
        w, h = layer.scaled_size
        self._edit_layer(layer.id, x=(self.canvas.width - w) // 2, y=(self.canvas.height - h) // 2)

    # moving with the mouse
    def _move_started(self) -> None:
        layer = self.selected_layer()
        self.canvas.end_merge()
        self._move_origin = (layer.x, layer.y) if layer is not None else None

    def _move_by(self, dx: int, dy: int) -> None:
        if self._move_origin is not None and self.selected_id is not None:
            x0, y0 = self._move_origin
            self._edit_layer(self.selected_id, merge=True, x=x0 + dx, y=y0 + dy)

    def _move_finished(self) -> None:
        self._move_origin = None
        self.canvas.end_merge()

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

    def _update_history(self) -> None:
        c = self.canvas
        self.action_undo.setEnabled(c.can_undo)
        self.action_redo.setEnabled(c.can_redo)
        self.action_undo.setToolTip(f"Undo {c.undo_label} (Ctrl+Z)" if c.can_undo else "Nothing to undo (Ctrl+Z)")
        self.action_redo.setToolTip(f"Redo {c.redo_label} (Ctrl+Shift+Z)" if c.can_redo else
                                    "Nothing to redo (Ctrl+Shift+Z)")

    # ------------------------------------------------------------------ view
    @Slot()
    def fit(self) -> None:
        self.view.fit()

    def _zoom_to(self, zoom: float) -> None:
        self.view.auto_fit = False
        self.view.set_zoom(zoom)

    def _update_outline(self) -> None:
        layer = self.selected_layer()
        bounds = self.canvas.layer_bounds(layer) if layer is not None and layer.tiling is None else None
        if bounds is None:
            self.outline.hide()
            return
        x0, y0, x1, y1 = bounds
        self.outline.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        self.outline.show()

    def _update_info(self) -> None:
        c = self.canvas
        rect = QRectF(0, 0, c.width, c.height)
        if self.view.sceneRect() != rect:
            self.scene.setSceneRect(rect)
            self.item.set_size(c.width, c.height)
            if self.view.auto_fit:
                self.view.fit()
        bits = [f"{c.width} × {c.height}", f"{len(c.layers)} layer{'s' if len(c.layers) != 1 else ''}"]
        if self.rendering or (self.shown_state is not c.snapshot()):
            bits.append("rendering…")
        elif self.last_render is not None:
            bits.append(f"rendered in {self.last_render.ms:.0f} ms")
        bits.append(f"zoom {self.view.zoom:.0%}")
        text = "  ·  ".join(bits)
        if self.info.text() != text:
            self.info.setText(text)

    # ------------------------------------------------------------------ canvas size, projects
    def canvas_size_dialog(self) -> None:
        dialog = CanvasSizeDialog(self.canvas.width, self.canvas.height, self.canvas.background, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.set_canvas_size(*dialog.values())

    def set_canvas_size(self, width: int, height: int, background: Any = "keep") -> None:
        """Resize the canvas (and set the background unless "keep") in one undo step."""
        try:
            with self.canvas.macro("Canvas size"):
                self.canvas.resize(width, height)
                if background != "keep":
                    self.canvas.set_background(background)
        except ValueError as exc:
            self._error("The canvas size was not changed", str(exc))
            return
        self.view.auto_fit = True
        self._schedule(props=True)
        self.flush()

    def replace_canvas(self, other: Canvas | CanvasState, label: str = "Open project") -> None:
        """Make this canvas look like ``other`` (an opened project's) in one undo step."""
        state = other.snapshot() if isinstance(other, Canvas) else other
        c = self.canvas
        with c.macro(label):
            for layer in list(c.layers):
                c.remove_layer(layer.id)
            c.resize(state.width, state.height)
            c.set_background(state.background)
            for layer in state.layers:
                c.add_layer(layer)
        self.selected_id = state.layers[-1].id if state.layers else None
        self.view.auto_fit = True
        self._schedule(list_=True, props=True)
        self.flush()

    # ------------------------------------------------------------------ exports
    def detached_canvas(self) -> Canvas:
        """A copy of the canvas as it is now (sharing pixels and the renderer) for a background export."""
        state = self.canvas.snapshot()
        copy = Canvas(state.width, state.height, state.background, renderer=self.canvas.renderer)
        for layer in state.layers:
            copy.add_layer(layer)
        return copy

    def _has_layers(self) -> bool:
        if not self.canvas.layers:
            self._status("The canvas is empty: add a layer first.", 5000)
            return False
        return True

    def export_layers_dialog(self) -> None:
        if not self._has_layers():
            return
        folder = QFileDialog.getExistingDirectory(self, "Export the layers and the composite to a folder")
        if folder:
            self.export_layers(folder)

    def export_layers(self, folder: str | Path) -> None:
        """Every layer as its own PNG and ``composite.png``, with provenance, into ``folder`` (background)."""
        from studio.export import export_layers

        canvas = self.detached_canvas()
        self._export(lambda: export_layers(canvas, folder), f"{len(canvas.layers) + 1} PNGs to {folder}")

    def _save_path(self, title: str, name: str, filter: str) -> str | None:
        """A file to export the layers to, asked in a save dialog (``name``: the default, whose
        suffix is added when the person leaves it off); None when cancelled or no layers."""
        if not self._has_layers():
            return None
        path, _ = QFileDialog.getSaveFileName(self, title, name, filter)
        suffix = Path(name).suffix
        return (path if path.lower().endswith(suffix) else path + suffix) if path else None

    def export_composite_dialog(self) -> None:
        path = self._save_path("Export the composite", "composite.png", PNG_FILTER)
        if path:
            self.export_composite(path)

    def export_composite(self, path: str | Path) -> None:
        from studio.export import composite_provenance, save_png

        canvas = self.detached_canvas()
        self._export(lambda: save_png(path, canvas.render_uint8(), composite_provenance(canvas)), str(path))

    def export_ora_dialog(self) -> None:
        path = self._save_path("Export OpenRaster", "canvas.ora", ORA_FILTER)
        if path:
            self.export_ora(path)

    def export_ora(self, path: str | Path) -> None:
        """An OpenRaster file (Krita, GIMP) of the layers (background)."""
        from studio.export import save_ora

        canvas = self.detached_canvas()
        self._export(lambda: save_ora(canvas, path), str(path))

    def animated_layer(self) -> Layer | None:
        """The selected layer if it is animated, else the topmost animated layer."""
        layer = self.selected_layer()
        if layer is not None and layer.frames:
            return layer
        return next((l for l in reversed(self.canvas.layers) if l.frames), None)

    def export_animation_dialog(self) -> None:
        if self.animated_layer() is None:
            self._status("No animated layer: import an animated GIF / APNG or add an interpolation.", 6000)
            return
        path, chosen = QFileDialog.getSaveFileName(self, "Export an animation", "animation.gif", ANIMATION_FILTER)
        if path:
            if not Path(path).suffix:
                path += ".gif" if "GIF" in chosen else ".png"
            self.export_animation(path)

    def export_animation(self, path: str | Path, fps: float = 12.0) -> None:
        """The composite once per frame of the animated layer, as a GIF or APNG (by suffix)."""
        from studio.export import export_animation

        layer = self.animated_layer()
        if layer is None:
            self._status("No animated layer to export.", 5000)
            return
        canvas = self.detached_canvas()
        self._export(lambda: export_animation(canvas, layer.id, path, fps), str(path))

    def _export(self, work: Callable[[], Any], what: str) -> None:
        self._status(f"Exporting {what}…", 0)

        def done(result: Any) -> None:
            self._status(f"Exported {what}", 8000)

        self._background(work, on_result=done, error_title="The export failed",
                         error_suffix="\n\nNo file was overwritten with a partial one.")

    # ------------------------------------------------------------------ plumbing
    @property
    def busy(self) -> bool:
        """A background task (sampling, import, export) is running."""
        return self._busy_tasks > 0

    def _background(self, fn: Callable[..., Any], *args: Any, on_result: Callable[[Any], None],
                    error_title: str, error_suffix: str = "") -> None:
        self._busy_tasks += 1

        def ok(result: Any) -> None:
            self._busy_tasks -= 1
            on_result(result)

        def failed(exc: BaseException) -> None:
            self._busy_tasks -= 1
            self._error(error_title, (str(exc) or type(exc).__name__) + error_suffix)

        run_in_background(fn, *args, on_result=ok, on_error=failed)

    def _status(self, text: str, ms: int = 5000) -> None:
        self.status_message.emit(text, ms)

    def _error(self, title: str, message: str) -> None:
        """Report an error: to whoever listens to ``error_raised`` (the main window shows it),
        else in a non-modal box of this view's own."""
        self._status(title, 8000)
        self.error_raised.emit(title, message)
        if not self.isSignalConnected(QMetaMethod.fromSignal(self.error_raised)):
            show_warning(self, title, message, self._boxes)


def _replace(layer: Layer, **changes: Any) -> Layer:
    import dataclasses

    return dataclasses.replace(layer, **changes)
