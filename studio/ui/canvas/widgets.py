"""The Canvas tab's small parts: titles and presets, file filters, thumbnails, the
composite item and the zoomable view, the colour button, form helpers."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QBrush,
    QColor,
    QImage,
    QKeySequence,
    QPainter,
    QPixmap,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QColorDialog,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsView,
    QGroupBox,
    QPushButton,
    QWidget,
)

from studio.canvas.blend import BLEND_MODES
from studio.canvas import Layer
from studio.ui.qimage import array_to_qimage


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


def _replace(layer: Layer, **changes: Any) -> Layer:
    import dataclasses

    return dataclasses.replace(layer, **changes)
