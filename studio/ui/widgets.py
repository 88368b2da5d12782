"""Small widgets and helpers: placeholder tabs, the pixel-art view, the theme."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QVBoxLayout, QWidget

ICONS = Path(__file__).resolve().parents[2] / "resources" / "icons"


def app_icon() -> QIcon:
    return QIcon(str(ICONS / "harmonium.svg"))


def apply_theme(app: QApplication) -> None:
    """Fusion with a dark palette: images read better on a dark ground."""
    app.setStyle("Fusion")
    p = QPalette()
    base, window, text = QColor("#1b1d21"), QColor("#25282d"), QColor("#dde1e6")
    p.setColor(QPalette.ColorRole.Window, window)
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, QColor("#2a2d33"))
    p.setColor(QPalette.ColorRole.ToolTipBase, QColor("#30343a"))
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.PlaceholderText, QColor("#8a9099"))
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, QColor("#30343a"))
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.BrightText, QColor("#ff6e6e"))
    p.setColor(QPalette.ColorRole.Link, QColor("#4fc3f7"))
    p.setColor(QPalette.ColorRole.Highlight, QColor("#2f7fb5"))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b7079"))
    app.setPalette(p)


class Placeholder(QWidget):
    """A tab waiting for its real content."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        label = QLabel(f"<h2 style='color:#8a9099'>{title}</h2><p style='color:#8a9099'>{text}</p>")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.addWidget(label)
        self.label = label


def pixel_view(background: str = "#1b1d21"):
    """A pyqtgraph view for pixel art: no antialiasing, aspect locked, y down, no context menu.
    Returns (GraphicsLayoutWidget, ViewBox); the Dreams and Latent tabs show their images in it."""
    import pyqtgraph as pg

    graphics = pg.GraphicsLayoutWidget()
    graphics.setAntialiasing(False)
    graphics.setBackground(background)
    viewbox = graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
    return graphics, viewbox


def show_warning(parent: QWidget, title: str, message: str, boxes: list[QMessageBox]) -> QMessageBox:
    """A non-modal warning box over ``parent`` (work goes on behind it) that deletes itself
    when closed; it stays in ``boxes`` while open, so its owner can close those left."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, parent)
    box.setWindowModality(Qt.WindowModality.NonModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.finished.connect(lambda _=0: boxes.remove(box) if box in boxes else None)
    boxes.append(box)
    box.show()
    return box
