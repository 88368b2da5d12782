"""Small widgets: placeholder tabs, the live dreams preview, the theme."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

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


class DreamsPreview(QWidget):
    """The Dreams tab until the full viewer lands: the newest frame of the current run
    (the RBM's persistent chains, the VAE's samples, the autoencoder's reconstructions)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from studio.ui.plots import MosaicView

        self.caption = QLabel("<span style='color:#8a9099'>No model yet.</span>")
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.view = MosaicView("Start training a model (Space) and its dreams appear here, live.")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.caption)
        lay.addWidget(self.view, 1)
        self.job_id: int | None = None
        self._pending = None
        self._throttle = None

    def show_job(self, job) -> None:
        self.job_id = job.id if job is not None else None
        self._pending = None
        if job is None:
            self.view.set_image(None)
            return
        self.caption.setText(f"<b>{job.title}</b> <span style='color:#8a9099'>· run #{job.id} · "
                             "newest frame of the model's dreams</span>")
        update = job.update(frame=True, filters=False)
        self.view.set_image(update.frame)

    def show_update(self, update) -> None:
        if update.job_id == self.job_id and update.frame is not None:
            self._pending = update.frame
            self._flush()

    def _flush_now(self) -> None:
        frame, self._pending = self._pending, None
        if frame is not None:
            self.view.set_image(frame)

    def _flush(self) -> None:
        if self._throttle is None:
            from superqt.utils import qthrottled

            self._throttle = qthrottled(self._flush_now, timeout=100)  # ≤ 10 frames a second
        self._throttle()
