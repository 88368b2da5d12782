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

from PySide6.QtCore import QRectF  # noqa: E402
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
def window(make_main_window):
    """The main window at its first-run size, 1440×900, settings in a temporary file."""
    return make_main_window(size=(1440, 900), score_options={"steps": 20, "n_samples": 32, "ais": False},
                            answer=QMessageBox.StandardButton.Discard)


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


# ----------------------------------------------------------------------------- item 10


def test_the_window_title_names_the_images_and_leaves_the_app_name_to_qt(ready):
    from PySide6.QtWidgets import QApplication

    assert QApplication.applicationDisplayName() == "Harmonium Studio"  # Qt appends it to every title
    assert ready.windowTitle() == "pictures (20 images)"


def test_relaunch_opens_the_last_folder_or_says_it_is_gone(ready, settings, image_folder, qtbot, tmp_path):
    import shutil

    from studio.ui.main_window import MainWindow

    again = MainWindow(Session(Preprocess(size=28)), settings=settings)
    try:
        again.start()  # no folder given: the last one
        qtbot.waitUntil(lambda: again.images_ready, timeout=60_000)
        assert again.session.sources == [str(image_folder)] and len(again.session.images) == 20
        shutil.rmtree(image_folder)
        assert again.last_sources() == []
        again.open_sources(again.last_sources())  # what a launch now opens: the demo set
        qtbot.waitUntil(lambda: again.session.sources == [] and again.images_ready and
                        "is gone" in again.statusBar().currentMessage(), timeout=60_000)
        assert again.statusBar().currentMessage().startswith("The last folder, pictures, is gone: opened the demo set")
    finally:
        again.controller.shutdown(timeout=5.0)
        again.close()


def test_a_clean_folder_leaves_the_rejected_tab_and_reasons_wrap(ready, qtbot, tmp_path):
    panel = ready.dataset_panel
    messy = tmp_path / "messy"
    messy.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(messy / "fine.png")
    (messy / "broken-file-with-a-long-name.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png at all")
    ready.open_sources([str(messy)])
    qtbot.waitUntil(lambda: ready.session.sources == [str(messy)] and panel.rejected.topLevelItemCount() == 1,
                    timeout=20_000)
    panel.views.setCurrentWidget(panel.rejected)
    qtbot.wait(50)
    item = panel.rejected.topLevelItem(0)
    line = panel.rejected.fontMetrics().height()
    reason_rect = panel.rejected.visualItemRect(item)
    assert panel.rejected.columnWidth(1) < panel.rejected.fontMetrics().horizontalAdvance(item.text(1))
    assert reason_rect.height() >= 2 * line, "a long reason wraps in the narrow panel"
    assert item.toolTip(1) == item.text(1)
    ready.open_sources([str(tmp_path / "pictures")])  # a clean folder
    qtbot.waitUntil(lambda: ready.session.sources == [str(tmp_path / "pictures")], timeout=20_000)
    assert panel.views.currentWidget() is panel.grid


def _dreams_view(qtbot, width=900, height=600):
    from studio.ui.dreams import DreamsView

    view = DreamsView(history=20)
    qtbot.addWidget(view)
    view.resize(width, height)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_dreams_while_a_vae_trains_say_what_they_show_and_how_often(qtbot):
    import torch

    from studio.ui.dreams.view import arrival_text

    view = _dreams_view(qtbot)
    view.show_training_frame(torch.rand(16, 1, 28, 28), {"job_id": 3, "step": 10, "kind": "vae", "title": "VAE"})
    caption = view.caption.text()
    assert "prior draws" in caption and "persistent chains" not in caption
    view._fps_t0 = 0.0  # the status line's next refresh is due
    view._message_time = 0.0
    qtbot.waitUntil(lambda: view.shown_frame is not None, timeout=3_000)
    view._fps_count_update()
    assert "training step 10" in view.status.text() and "frames/s shown" not in view.status.text()

    class F:
        def __init__(self, t):
            self.time = t

    assert arrival_text([F(0.0), F(2.5), F(5.0)], now=6.0) == "a new frame every 2.5 s"
    assert arrival_text([F(i / 10) for i in range(11)], now=1.0) == "10 frames/s"
    assert arrival_text([F(0.0), F(1.0)], now=30.0) == "waiting for frames"


def test_the_zoom_label_says_the_true_scale_of_a_fitted_grid_of_large_tiles(qtbot):
    import torch

    view = _dreams_view(qtbot, 800, 500)
    view.show_training_frame(torch.rand(64, 1, 64, 64), {"job_id": 1, "step": 0, "kind": "rbm"})
    qtbot.waitUntil(lambda: view.shown_frame is not None and view.image.image is not None, timeout=3_000)
    view.fit()
    qtbot.wait(50)
    true_zoom = view.viewbox.width() / view.viewbox.viewRect().width()
    assert true_zoom < 0.9  # 64 tiles of 64 px in a small view: drawn below their size
    assert abs(view.zoom_slider.value() - true_zoom) <= 0.01


def test_the_brush_mask_is_an_outline_and_a_light_tint(qtbot):
    import torch

    from models.rbm import BernoulliRBM, RBMConfig

    torch.manual_seed(0)
    view = _dreams_view(qtbot)
    view.set_model(BernoulliRBM(RBMConfig(64, 16, (1, 8, 8))), {})
    qtbot.waitUntil(lambda: view._layout is not None, timeout=5_000)
    view.brush_button.setChecked(True)
    view.brush_size.setValue(1)
    y, x = view._layout.origin(9)
    view._brush_stroke(y + 4.5, x + 6.5, y + 4.5, x + 1.5, True, False)
    qtbot.waitUntil(lambda: view.overlay.image is not None, timeout=3_000)
    alpha = view.overlay.image[..., 3]
    painted = view.session.mask[9]
    rows, cols = np.nonzero(painted)
    assert alpha[y + rows, x + cols].max() <= 40, "the dreaming pixels stay visible"
    for r, c in zip(rows, cols):  # every held pixel beside a painted one is outlined
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            rr, cc = r + dr, c + dc
            if 0 <= rr < 8 and 0 <= cc < 8 and not painted[rr, cc]:
                assert alpha[y + rr, x + cc] >= 200, (rr, cc)


def test_the_vae_frame_dialog_offers_only_what_applies(qtbot):
    from studio.ui.canvas.dialogs import ModelChoice, ModelLayerDialog

    dialog = ModelLayerDialog([ModelChoice("VAE", "vae", None), ModelChoice("Hybrid", "hybrid", None)])
    qtbot.addWidget(dialog)
    dialog.make_box.setCurrentIndex(dialog.make_box.findData("frame"))
    assert not dialog.steps.isEnabled() and not dialog.show_box.isEnabled()
    assert dialog.temperature.isEnabled()  # a VAE's prior draw is scaled by it
    dialog.make_box.setCurrentIndex(dialog.make_box.findData("mirror"))
    assert dialog.steps.isEnabled() and dialog.show_box.isEnabled()
    dialog.model_box.setCurrentIndex(1)
    dialog.make_box.setCurrentIndex(dialog.make_box.findData("frame"))
    assert dialog.steps.isEnabled(), "a hybrid's frame is dreamt by Gibbs steps"
