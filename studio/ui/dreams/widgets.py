"""The Dreams tab's small parts: its colours and timings, the mosaic image item that turns
clicks and drags into selections and brush strokes, a form group, a kind's title."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox

if TYPE_CHECKING:  # annotations only: the view imports this module
    from studio.ui.dreams.view import DreamsView


MUTED = "#8a9099"
# The brush's mask: a faint tint over the painted pixels (they keep dreaming: the artist must
# see them) and a solid magenta outline on the held pixels around them.
BRUSH_RGBA = (255, 64, 200, 36)
BRUSH_OUTLINE_RGBA = (255, 64, 200, 230)
MIN_ZOOM, MAX_ZOOM = 0.25, 16.0  # screen pixels per image pixel, as the zoom slider shows it
SELECT_COLOUR = "#ffb74d"
PAD = 1  # gap between tiles, in image pixels
MESSAGE_SECONDS = 4.0  # a message holds the status line this long
DISPLAY_INTERVAL_MS = 15  # a hair faster than a 60 Hz display


class _MosaicImage(pg.ImageItem):
    """The mosaic: counts the frames actually painted and hands mouse strokes to the view."""

    def __init__(self, view: "DreamsView") -> None:
        super().__init__(axisOrder="row-major", autoDownsample=False)
        self._view = view
        self.serial = -1  # serial of the frame set on the item
        self._painted_serial = -1
        self.frames_painted = 0  # distinct frames painted so far

    def paint(self, painter, *args) -> None:  # noqa: D102
        super().paint(painter, *args)
        if self.serial != self._painted_serial and self.image is not None:
            self._painted_serial = self.serial
            self.frames_painted += 1

    # pyqtgraph mouse protocol --------------------------------------------------------
    def hoverEvent(self, ev) -> None:  # noqa: N802
        if not ev.isExit() and self._view.brush_active:
            ev.acceptDrags(Qt.MouseButton.LeftButton)
            ev.acceptDrags(Qt.MouseButton.RightButton)
            ev.acceptClicks(Qt.MouseButton.LeftButton)
            ev.acceptClicks(Qt.MouseButton.RightButton)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802
        if ev.button() not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            ev.ignore()
            return
        ev.accept()
        p = ev.pos()
        self._view._mosaic_click(p.y(), p.x(), ev.button() == Qt.MouseButton.RightButton)

    def mouseDragEvent(self, ev) -> None:  # noqa: N802
        if not self._view.brush_active or ev.button() not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            ev.ignore()  # the view box pans
            return
        ev.accept()
        p, last = ev.pos(), ev.lastPos()
        self._view._brush_stroke(p.y(), p.x(), last.y(), last.x(), ev.isStart(),
                                 ev.button() == Qt.MouseButton.RightButton)


def _group(title: str) -> tuple[QGroupBox, QFormLayout]:
    box = QGroupBox(title)
    form = QFormLayout(box)
    form.setContentsMargins(8, 6, 8, 6)
    form.setSpacing(5)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return box, form


def _kind_title(kind: str) -> str:
    from models.kinds import KINDS

    record = KINDS.get(kind)
    return record.title if record is not None else (kind.upper() if kind else "Model")
