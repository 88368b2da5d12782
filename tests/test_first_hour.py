"""The artist's first hour, the rough edges (issue 16, items 5, 7 and 10), driven in the real
window (pytest-qt, offscreen) at the default 1440×900: curves that stay readable when a run
ends, a canvas toolbar whose actions all show, and the smaller things."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pytestqt")

from PySide6.QtCore import QRectF, QSettings  # noqa: E402
from PySide6.QtGui import QImage, QPainter  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from studio.dataset import Preprocess  # noqa: E402
from studio.jobs import JobState, Session  # noqa: E402

WAIT = 30_000


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """20 small PNGs of blocks: something to train on in a second."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        arr = np.zeros((28, 28), np.uint8)
        arr[rng.integers(0, 14):, rng.integers(0, 14):] = 255
        Image.fromarray(arr).save(folder / f"img_{i:02d}.png")
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings, monkeypatch, tmp_path):
    """The main window at its first-run size, 1440×900, settings in a temporary file."""
    from studio.app import make_application
    from studio.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    make_application()
    session = Session(Preprocess(size=28))
    session.score_options = {"steps": 20, "n_samples": 32, "ais": False}
    w = MainWindow(session, settings=settings)
    w.resize(1440, 900)
    w.show()
    qtbot.waitExposed(w)
    yield w
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Discard))
    w.controller.shutdown(timeout=5.0)
    w.close()
    qtbot.waitUntil(lambda: not w.busy_threads(), timeout=10_000)


@pytest.fixture
def ready(window, image_folder, qtbot):
    window.start(str(image_folder))
    qtbot.waitUntil(lambda: window.is_ready and window.images_ready, timeout=60_000)
    return window


def train_to_the_end(window, qtbot, kind: str, **params):
    page = window.training_panel.page(kind)
    window.training_panel.set_current_kind(kind)
    page.set_values({"seed": 1, "batch_size": 5, **params})
    page.start_button.click()
    job = page.job
    qtbot.waitUntil(lambda: job.state in (JobState.DONE, JobState.FAILED), timeout=WAIT)
    assert job.state is JobState.DONE, (job.state, job.error, job.step)
    return page, job


def label_rects(axis) -> list[QRectF]:
    """The rectangles of the tick labels ``axis`` draws, as pyqtgraph lays them out."""
    image = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [rect for rect, _flags, _text in specs[2]] if specs else []


# ----------------------------------------------------------------------------- item 5


@pytest.mark.parametrize("kind, params, metrics", [
    ("hybrid", {"epochs": 6, "rbm_epochs": 6, "latent": 4, "n_hidden": 8, "n_chains": 8}, 5),
    ("rbm", {"hidden": 8, "epochs": 10, "n_chains": 8}, 3),
])
def test_the_curves_stay_readable_when_a_run_ends(ready, qtbot, kind, params, metrics):
    """Item 5: when training ends the settings stay folded, every plot keeps a readable height
    (the page scrolls instead; the window keeps its size), its y axis shows two labels or more,
    and no two tick labels overlap. The hybrid's bookkeeping (its RBM's learning rate) gets no
    plot."""
    page, job = train_to_the_end(ready, qtbot, kind, **params)
    curves = page.curves
    qtbot.waitUntil(lambda: len(curves.metric_names) == metrics and not curves._dirty, timeout=WAIT)
    qtbot.wait(50)  # the layout settles
    assert "rbm_lr" not in curves.metric_names and "lr" not in curves.metric_names
    assert not page.settings_box.isExpanded(), "the settings must not unfold by themselves at the end of a run"
    assert ready.height() == 900, "the page scrolls: the window is not made taller"
    for name in curves.metric_names:
        plot = curves._plots[name]
        data_px = plot.getViewBox().sceneBoundingRect().height()
        assert data_px >= 60, f"{name}: {data_px:.0f} px of plot"
        assert plot.getAxis("left").isVisible()
        for axis_name in ("left", "bottom"):
            rects = label_rects(plot.getAxis(axis_name))
            assert len(rects) >= 2, f"{name}: {len(rects)} labels on the {axis_name} axis"
            for i, a in enumerate(rects):
                for b in rects[i + 1:]:
                    assert not a.intersects(b), f"{name}: {axis_name} labels overlap ({a}, {b})"


# ----------------------------------------------------------------------------- item 7


def test_the_canvas_toolbar_shows_export_and_canvas_size_at_the_default_size(ready, qtbot):
    """Item 7: at 1440×900 every button of the canvas toolbar shows (no "»" overflow), Export
    and the Canvas menu (Canvas Size…, Fit, 100 %) among them."""
    from PySide6.QtWidgets import QToolButton

    view = ready.canvas_view
    ready.tabs.setCurrentWidget(view)
    tb = view.toolbar
    # The docks settle to their widths a few event-loop turns after the window first shows.
    qtbot.waitUntil(lambda: tb.isVisible() and tb.sizeHint().width() <= tb.width(), timeout=5_000)
    qtbot.wait(200)
    assert tb.sizeHint().width() <= tb.width(), (tb.sizeHint().width(), tb.width())
    overflow = tb.findChild(QToolButton, "qt_toolbar_ext_button")
    assert overflow is None or not overflow.isVisible()
    for action in tb.actions():
        widget = tb.widgetForAction(action)
        assert widget is not None and widget.isVisible(), action.text()
        assert widget.geometry().right() <= tb.width(), action.text()
    assert view.export_button.isVisible() and view.canvas_button.isVisible()
    assert view.action_size in view.canvas_menu.actions()
    assert view.action_export_psd in view.export_menu.actions()
