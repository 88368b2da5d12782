"""The Canvas tab (studio.ui.canvas) and the layer sources behind it (studio.canvas.sources).

Small canvases (≤ 64 px), tiny models; the renders run in the view's render thread, so every
check that needs the picture waits for it with ``qtbot.waitUntil``.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import threading
import time
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from models.rbm import BernoulliRBM, RBMConfig
from studio.canvas import sources as ls
from studio.canvas import Canvas, GradientMap, Layer, Palette, Renderer
from studio.canvas.export import read_provenance, save_animation, save_png

pytest.importorskip("pytestqt")

from PySide6.QtCore import QModelIndex, QSettings, Qt  # noqa: E402
from PySide6.QtGui import QColor  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox  # noqa: E402

from studio.ui.canvas import BLEND_TITLES, CanvasView, ModelChoice  # noqa: E402

WAIT = 10_000


def tiny_rbm(seed: int = 0, side: int = 8) -> BernoulliRBM:
    torch.manual_seed(seed)
    model = BernoulliRBM(RBMConfig(n_visible=side * side, n_hidden=6, image_shape=(1, side, side)))
    with torch.no_grad():
        model.weight.normal_(0, 0.5)
    return model


def solid(h: int, w: int, rgb, alpha: int | None = None) -> np.ndarray:
    a = np.empty((h, w, 3 if alpha is None else 4), np.uint8)
    a[..., :3] = rgb
    if alpha is not None:
        a[..., 3] = alpha
    return a


@pytest.fixture
def view(qtbot):
    from studio.app import make_application

    make_application()
    v = CanvasView(Canvas(48, 40, background=(0.2, 0.4, 0.6, 1.0)))
    qtbot.addWidget(v)
    v.resize(1000, 700)
    v.show()
    qtbot.waitExposed(v)
    qtbot.waitUntil(v.is_current, timeout=WAIT)
    yield v
    qtbot.waitUntil(lambda: not v.busy, timeout=WAIT)
    v.shutdown()


def expected(view: CanvasView) -> np.ndarray:
    """The composite of the canvas as it is, rendered by a fresh renderer (no shared cache)."""
    return Renderer().render_uint8(view.canvas.snapshot())


def wait_current(qtbot, view: CanvasView) -> np.ndarray:
    qtbot.waitUntil(view.is_current, timeout=WAIT)
    return view.shown_pixels


# ----------------------------------------------------------------------------- the view


def test_adding_a_layer_lists_it_and_changes_the_picture(view, qtbot):
    before = wait_current(qtbot, view).copy()
    layer = view.add_layer(Layer(name="sun", source=solid(10, 12, (250, 200, 0)), x=5, y=6))
    assert view.layer_list.count() == 1
    item = view.layer_list.item(0)
    assert item.text() == "sun" and item.checkState() == Qt.CheckState.Checked
    assert not item.icon().isNull()
    assert view.selected_id == layer.id and view.name_edit.text() == "sun"
    after = wait_current(qtbot, view)
    assert not np.array_equal(before, after)
    assert tuple(after[6, 5]) == (250, 200, 0, 255) and tuple(after[0, 0]) == tuple(before[0, 0])
    assert np.array_equal(after, expected(view))
    # top layer first in the list
    view.add_layer(Layer(name="moon", source=solid(4, 4, (9, 9, 9))))
    assert [view.layer_list.item(r).text() for r in range(2)] == ["moon", "sun"]


def test_blend_mode_combo_rerenders_to_the_expected_pixels(view, qtbot):
    assert view.blend_box.count() == 12
    assert [view.blend_box.itemText(i) for i in range(12)] == list(BLEND_TITLES.values())
    view.add_layer(Layer(name="half", source=solid(40, 48, (200, 100, 50), alpha=128)))
    wait_current(qtbot, view)
    for mode in ("multiply", "screen", "difference", "color-burn"):
        view.blend_box.setCurrentIndex(view.blend_box.findData(mode))
        assert view.canvas.layers[0].blend_mode == mode
        shown = wait_current(qtbot, view)
        assert np.array_equal(shown, view.canvas.renderer.render_uint8(view.canvas.snapshot()))
        assert np.array_equal(shown, expected(view))
    # multiply of (200,100,50)@α=0.5 over the (51,102,153) background, by the W3C formula
    view.blend_box.setCurrentIndex(view.blend_box.findData("multiply"))
    shown = wait_current(qtbot, view)
    cb, cs, a = np.array([0.2, 0.4, 0.6]), np.array([200, 100, 50]) / 255, 128 / 255
    want = np.floor((a * cb * cs + (1 - a) * cb) * 255 + 0.5)
    assert np.abs(shown[0, 0, :3].astype(int) - want).max() <= 1


def test_undo_and_redo_restore_the_exact_pixels(view, qtbot):
    view.add_layer(Layer(name="a", source=solid(20, 20, (255, 0, 0))))
    first = wait_current(qtbot, view).copy()
    state_before = view.canvas.snapshot()
    view.invert_check.setChecked(True)
    inverted = wait_current(qtbot, view).copy()
    assert not np.array_equal(first, inverted)
    assert view.action_undo.isEnabled() and "invert" in view.action_undo.toolTip()
    view.action_undo.trigger()
    assert view.canvas.snapshot() is state_before
    assert np.array_equal(wait_current(qtbot, view), first)
    assert not view.invert_check.isChecked()  # the panel follows
    view.action_redo.trigger()
    assert np.array_equal(wait_current(qtbot, view), inverted)
    assert view.invert_check.isChecked()
    # the shortcuts are the usual ones
    keys = lambda a: [s.toString() for s in a.shortcuts()]  # noqa: E731
    assert keys(view.action_undo) == ["Ctrl+Z"]
    assert keys(view.action_redo) == ["Ctrl+Shift+Z", "Ctrl+Y"]


def test_undo_shortcut_from_the_keyboard(view, qtbot):
    view.add_layer(Layer(name="a", source=solid(8, 8, (0, 255, 0))))
    view.blend_box.setCurrentIndex(view.blend_box.findData("screen"))
    view.activateWindow()
    view.view.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is view.view, timeout=WAIT)
    qtbot.keyClick(view.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert view.canvas.layers[0].blend_mode == "normal"
    qtbot.keyClick(view.view, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert view.canvas.layers[0].blend_mode == "screen"


def test_rendering_happens_off_the_ui_thread(view, qtbot, monkeypatch):
    threads: list[threading.Thread] = []
    real = view.canvas.renderer.render_uint8

    def spy(state):
        threads.append(threading.current_thread())
        return real(state)

    monkeypatch.setattr(view.canvas.renderer, "render_uint8", spy)
    view.add_layer(Layer(name="a", source=solid(8, 8, (1, 2, 3))))
    wait_current(qtbot, view)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert view.last_render.thread_id != threading.main_thread().ident


def test_a_slow_render_never_blocks_and_requests_coalesce(view, qtbot, monkeypatch):
    real = view.canvas.renderer.render_uint8
    calls = []

    def slow(state):
        calls.append(state)
        time.sleep(0.3)
        return real(state)

    monkeypatch.setattr(view.canvas.renderer, "render_uint8", slow)
    layer = view.add_layer(Layer(name="a", source=solid(8, 8, (100, 100, 100))))
    t0 = time.perf_counter()
    for value in range(20, 100, 8):  # ten edits while the first render is in flight
        view.opacity_slider.setValue(value)
        QApplication.processEvents()
    assert time.perf_counter() - t0 < 0.25  # the UI thread did not wait for a render
    final = wait_current(qtbot, view)
    assert len(calls) <= 3  # the one in flight, then only the newest
    assert view.canvas.layer(layer.id).opacity == pytest.approx(0.92)
    assert np.array_equal(final, real(view.canvas.snapshot()))


def test_a_slider_drag_is_one_undo_step(view, qtbot):
    layer = view.add_layer(Layer(name="a", source=solid(8, 8, (100, 100, 100))))
    steps = len(view.canvas._undo)
    for drag in ((80, 60, 40), (50, 70)):
        view.opacity_slider.sliderPressed.emit()
        for v in drag:
            view.opacity_slider.setValue(v)
        view.opacity_slider.sliderReleased.emit()
    assert view.canvas.layer(layer.id).opacity == pytest.approx(0.7)
    assert len(view.canvas._undo) == steps + 2
    view.undo()
    assert view.canvas.layer(layer.id).opacity == pytest.approx(0.4)
    view.undo()
    assert view.canvas.layer(layer.id).opacity == 1.0


def test_properties_panel_edits_every_setting(view, qtbot):
    layer = view.add_layer(Layer(name="gray", source=(np.arange(1024).reshape(32, 32) % 256).astype(np.uint8)))
    view.x_spin.setValue(3)
    view.y_spin.setValue(-2)
    view.scale_spin.setValue(2.5)
    view.resample_box.setCurrentIndex(view.resample_box.findData("bicubic"))
    view.tiling_box.setCurrentIndex(view.tiling_box.findData("mirror"))
    view.colourise_box.setCurrentIndex(1)  # gradient map, with a default preset
    view.set_gradient_colour(0, QColor("#000000"))
    view.set_gradient_colour(2, QColor("#ff0000"))
    view.gradient_mid.setChecked(False)
    view.level_spins["gamma"].setValue(1.5)
    got = view.canvas.layer(layer.id)
    assert (got.x, got.y, got.scale, got.resample, got.tiling) == (3, -2, 2.5, "bicubic", "mirror")
    assert got.colourise == GradientMap(((0.0, (0, 0, 0)), (1.0, (1, 0, 0))))
    assert got.levels.gamma == 1.5
    view.colourise_box.setCurrentIndex(2)
    view.palette_count.setValue(3)
    got = view.canvas.layer(layer.id)
    assert isinstance(got.colourise, Palette) and len(got.colourise.colours) == 3
    assert np.array_equal(wait_current(qtbot, view), expected(view))
    # an impossible value is refused with a message, and the panel shows the real value again
    view.scale_spin.setValue(512.0)  # 32 px × 512 > the 8192 px limit
    assert view.canvas.layer(layer.id).scale == 2.5
    qtbot.waitUntil(lambda: view.scale_spin.value() == 2.5, timeout=WAIT)


def test_layer_list_visibility_rename_and_reorder(view, qtbot):
    a = view.add_layer(Layer(name="bottom", source=solid(40, 48, (255, 0, 0))))
    b = view.add_layer(Layer(name="top", source=solid(40, 48, (0, 0, 255))))
    assert tuple(wait_current(qtbot, view)[0, 0, :3]) == (0, 0, 255)
    top_item = view.layer_list.item(0)
    top_item.setCheckState(Qt.CheckState.Unchecked)  # hide "top"
    assert not view.canvas.layer(b.id).visible
    assert tuple(wait_current(qtbot, view)[0, 0, :3]) == (255, 0, 0)
    view.layer_list.item(1).setText("renamed")
    qtbot.waitUntil(lambda: view.canvas.layer(a.id).name == "renamed", timeout=WAIT)
    # a drag in the list (a row move) reorders the canvas in one undo step
    view.layer_list.item(0).setCheckState(Qt.CheckState.Checked)
    qtbot.waitUntil(lambda: view.layer_list.item(0).checkState() == Qt.CheckState.Checked, timeout=WAIT)
    model = view.layer_list.model()
    assert model.moveRows(QModelIndex(), 1, 1, QModelIndex(), 0)
    qtbot.waitUntil(lambda: [l.id for l in view.canvas.layers] == [b.id, a.id], timeout=WAIT)
    assert view.canvas.undo_label == "Reorder layers"
    assert tuple(wait_current(qtbot, view)[0, 0, :3]) == (255, 0, 0)
    # buttons: lower, raise, duplicate, delete
    view.select_layer(b.id)
    view.action_raise.trigger()
    assert [l.id for l in view.canvas.layers] == [a.id, b.id]
    view.action_duplicate.trigger()
    assert len(view.canvas.layers) == 3 and view.canvas.layers[2].source is view.canvas.layers[1].source
    view.action_delete.trigger()
    assert len(view.canvas.layers) == 2
    qtbot.waitUntil(lambda: view.layer_list.count() == 2, timeout=WAIT)


def test_add_snapshot_layer_slot(view, qtbot):
    grid = np.zeros((19, 19, 4), np.uint8)
    grid[..., 3] = 255
    grid[1:10, 1:10, 0] = 255
    prov = {"model": "rbm", "checkpoint_sha256": "cd" * 32, "seed": 4, "steps": 1200, "temperature": 0.8}
    layer = view.add_snapshot_layer(grid, prov)
    assert layer.resample == "nearest" and layer.scale == int(layer.scale) >= 1
    assert layer.provenance["checkpoint_sha256"] == "cd" * 32 and layer.provenance["source"] == "dreams"
    w, h = layer.scaled_size
    assert (layer.x, layer.y) == ((48 - w) // 2, (40 - h) // 2)
    assert "rbm" in view.provenance_label.text() and "seed 4" in view.provenance_label.text()
    assert np.array_equal(wait_current(qtbot, view), expected(view))


def test_model_texture_layer_is_sampled_in_the_background(view, qtbot):
    model = tiny_rbm()
    lock = threading.Lock()
    choice = ModelChoice("Binary RBM · run #1", "rbm", model, lock, checkpoint_sha256="ef" * 32, step=99)
    weights = model.weight.detach().clone()
    view.add_model_layer(choice, make="mirror", steps=30, seed=11, temperature=1.0, scale=2.0)
    qtbot.waitUntil(lambda: len(view.canvas.layers) == 1, timeout=WAIT)
    layer = view.canvas.layers[0]
    assert layer.tiling == "mirror" and layer.scale == 2.0 and layer.source.shape == (8, 8, 1)
    p = layer.provenance
    assert (p["model"], p["seed"], p["steps"], p["temperature"], p["checkpoint_sha256"]) == ("rbm", 11, 30, 1.0, "ef" * 32)
    assert torch.equal(model.weight, weights)  # the model itself was not touched
    assert np.array_equal(wait_current(qtbot, view), expected(view))


def test_dataset_image_and_import(errors, view, qtbot, tmp_path):
    from studio.dataset import Preprocess

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20), 60 * i, np.uint8)).save(folder / f"im{i}.png")
    session = view.session  # the document the view was built from
    session.open_images([str(folder)], Preprocess(size=16))
    view.selected_image = lambda: 2
    layer = view.add_dataset_image()
    assert layer.provenance["source"] == "dataset" and layer.provenance["index"] == 2
    assert layer.provenance["path"].endswith("im2.png") and layer.resample == "bicubic"
    # import: a real PNG with provenance, then a broken file
    png = save_png(tmp_path / "in.png", solid(6, 5, (1, 2, 3), alpha=200), {"model": "vae", "seed": 3})
    view.import_image(png)
    qtbot.waitUntil(lambda: len(view.canvas.layers) == 2, timeout=WAIT)
    imported = view.canvas.layers[1]
    assert imported.source.shape == (6, 5, 4) and imported.provenance["imported"]["seed"] == 3
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    view.import_image(broken)
    qtbot.waitUntil(lambda: errors.last(view) is not None, timeout=WAIT)
    title, message = errors.last(view)
    assert "broken.png" in title and "damaged or truncated" in message
    assert len(view.canvas.layers) == 2


def test_exports_through_patched_file_dialogs(errors, view, qtbot, tmp_path, monkeypatch):
    view.add_layer(Layer(name="base", source=solid(40, 48, (240, 230, 200)), provenance={"model": "rbm", "seed": 1}))
    view.add_layer(Layer(name="dream", source=solid(10, 10, (20, 40, 200), alpha=180), x=4, y=4,
                         blend_mode="multiply", opacity=0.7))
    composite = wait_current(qtbot, view).copy()
    # the layers' folder is named in a save dialog (a new folder's name can be typed: issue 16, item 7)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(
        lambda parent, title, *a, **k: (str(tmp_path / ("pngs" if "folder" in title else "art")), "")))
    view.action_export_ora.trigger()
    qtbot.waitUntil(lambda: (tmp_path / "art.ora").exists() and not view.busy, timeout=WAIT)
    with zipfile.ZipFile(tmp_path / "art.ora") as zf:
        assert zf.namelist()[0] == "mimetype" and zf.read("mimetype") == b"image/openraster"
        stack = ET.fromstring(zf.read("stack.xml"))
        assert [l.get("name") for l in stack.iter("layer")] == ["dream", "base", "Background"]
        with Image.open(zipfile.Path(zf, "mergedimage.png").open("rb")) as im:
            assert np.array_equal(np.asarray(im), composite)
    view.action_export_layers.trigger()
    qtbot.waitUntil(lambda: (tmp_path / "pngs" / "composite.png").exists() and not view.busy, timeout=WAIT)
    names = sorted(p.name for p in (tmp_path / "pngs").iterdir())
    assert names == ["000-base.png", "001-dream.png", "composite.png"]
    assert read_provenance(tmp_path / "pngs" / "000-base.png")["seed"] == 1
    assert read_provenance(tmp_path / "pngs" / "001-dream.png")["blend"]["mode"] == "multiply"
    with Image.open(tmp_path / "pngs" / "composite.png") as im:
        assert np.array_equal(np.asarray(im), composite)
    assert errors.last(view) is None


def test_a_failed_export_says_so(errors, view, qtbot, tmp_path, monkeypatch):
    view.add_layer(Layer(name="a", source=solid(4, 4, (1, 1, 1))))
    target = tmp_path / "keep.ora"
    target.write_bytes(b"the old file")

    def boom(canvas, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("studio.canvas.export.save_ora", boom)
    view.export_ora(target)
    qtbot.waitUntil(lambda: errors.last(view) is not None, timeout=WAIT)
    title, message = errors.last(view)
    assert title == "The export failed" and "No space left on device" in message
    assert target.read_bytes() == b"the old file"


def test_animation_export_of_an_animated_layer(view, qtbot, tmp_path):
    frames = [solid(6, 6, (40 * i, 0, 0)) for i in range(4)]
    view.add_layer(ls.interpolation_strip(frames, {"model": "vae", "seed": 2}, animate=True))
    assert view.action_export_anim.isEnabled() and view.anim_box.isVisibleTo(view)
    view.frame_spin.setValue(2)
    assert view.canvas.layers[0].frame_index == 2
    view.export_animation(tmp_path / "walk.gif")
    qtbot.waitUntil(lambda: (tmp_path / "walk.gif").exists() and not view.busy, timeout=WAIT)
    with Image.open(tmp_path / "walk.gif") as im:
        assert im.n_frames == 4


def test_canvas_size_and_replacing_the_canvas_are_undoable(view, qtbot):
    view.add_layer(Layer(name="a", source=solid(4, 4, (1, 1, 1))))
    view.set_canvas_size(64, 32, None)
    assert (view.canvas.width, view.canvas.height, view.canvas.background) == (64, 32, None)
    shown = wait_current(qtbot, view)
    assert shown.shape == (32, 64, 4) and view.item.transparent
    other = Canvas(20, 10, background=(1, 0, 0, 1))
    other.add_layer(Layer(name="x", source=solid(2, 2, (0, 0, 0))))
    other.add_layer(Layer(name="y", source=solid(2, 2, (9, 9, 9))))
    view.replace_canvas(other)
    assert [l.name for l in view.canvas.layers] == ["x", "y"] and view.canvas.width == 20
    assert wait_current(qtbot, view).shape == (10, 20, 4)
    view.undo()
    assert [l.name for l in view.canvas.layers] == ["a"] and view.canvas.width == 64
    view.undo()
    assert (view.canvas.width, view.canvas.height) == (48, 40)


def test_a_large_canvas_renders_without_blocking_the_ui(view, qtbot):
    view.add_layer(ls.rbm_texture(tiny_rbm(), steps=5, seed=1, scale=16.0))
    t0 = time.perf_counter()
    view.set_canvas_size(4096, 4096)
    QApplication.processEvents()
    assert time.perf_counter() - t0 < 0.5  # the 4096² render runs in the render thread
    qtbot.waitUntil(view.is_current, timeout=60_000)
    assert view.shown_pixels.shape == (4096, 4096, 4)
    assert view.last_render.preview is not None and view.last_render.preview.width() <= 1024


# ----------------------------------------------------------------------------- the main window


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    from studio.app import make_application
    from studio.dataset import Preprocess
    from studio.jobs import Session
    from studio.ui.main_window import MainWindow

    make_application()
    w = MainWindow(Session(Preprocess(size=16)), settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    w.show()
    qtbot.waitExposed(w)
    w.start_engine()
    qtbot.waitUntil(lambda: w.is_ready and w.canvas_view is not None, timeout=60_000)
    yield w
    w.controller.shutdown(timeout=5.0)
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    w.close()
    qtbot.waitUntil(lambda: not w.busy_threads(), timeout=10_000)


def test_main_window_saves_and_opens_projects(errors, window, qtbot, tmp_path, monkeypatch):
    from studio.jobs import TrainingJob

    assert window.tab("Canvas") is window.canvas_view
    assert window.action_save_project.isEnabled()
    shortcuts = {a.text(): a.shortcut().toString() for a in window.project_actions}
    assert shortcuts == {"Open Pro&ject…": "Ctrl+Alt+O", "Save &Project": "Ctrl+Alt+S",
                         "Save Project A&s…": "Ctrl+Alt+Shift+S"}
    view = window.canvas_view
    view.add_layer(Layer(name="red", source=solid(8, 8, (255, 0, 0))))
    window.session.add_job(TrainingJob(model=tiny_rbm(), kind="rbm", title="Binary RBM"))
    path = tmp_path / "session.harmonium"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(path), "")))
    window.action_save_project.trigger()
    qtbot.waitUntil(lambda: window.project_path == path, timeout=WAIT)
    saved = path.read_bytes()

    # a corrupted project: a clear message, and nothing in the session changes
    bad = tmp_path / "bad.harmonium"
    bad.write_bytes(saved[: len(saved) // 3])
    n_jobs, state = len(window.session.jobs), view.canvas.snapshot()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(bad), "")))
    window.action_open_project.trigger()
    qtbot.waitUntil(lambda: errors.last(window) is not None, timeout=WAIT)
    assert errors.last(window)[0] == "The project could not be opened"
    assert "truncated" in errors.last(window)[1] and "Nothing was changed" in errors.last(window)[1]
    assert len(window.session.jobs) == n_jobs and view.canvas.snapshot() is state
    assert window.project_path == path and path.read_bytes() == saved

    # change the canvas, then open the saved project: its canvas and model come back
    view.add_layer(Layer(name="blue", source=solid(8, 8, (0, 0, 255))))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    window.action_open_project.trigger()
    qtbot.waitUntil(lambda: [l.name for l in view.canvas.layers] == ["red"], timeout=WAIT)
    qtbot.waitUntil(lambda: len(window.session.jobs) == n_jobs + 1, timeout=WAIT)
    opened = window.session.jobs[-1]
    assert opened.kind == "rbm" and opened.path is None
    assert torch.equal(opened.model.weight, window.session.jobs[0].model.weight)
    view.undo()  # the canvas before opening is one undo away
    assert [l.name for l in view.canvas.layers] == ["red", "blue"]


def test_ctrl_shift_d_takes_the_grid_the_dreams_tab_shows(window, qtbot):
    from studio.dreams import to_rgba
    from studio.images import mosaic
    from studio.jobs import TrainingJob

    view, dreams = window.canvas_view, window.dreams
    assert view.action_add_dream.shortcut().toString() == "Ctrl+Shift+D"
    job = TrainingJob(model=tiny_rbm(), kind="rbm", title="Binary RBM")  # a training frame to fall back on
    job.last_frame = np.zeros((4, 1, 8, 8), np.float32)
    window.session.add_job(job)
    window.tabs.setCurrentWidget(dreams)
    assert dreams.set_model(tiny_rbm(seed=1), {"kind": "rbm", "checkpoint_sha256": "cd" * 32})
    qtbot.waitUntil(lambda: dreams.frames_shown >= 2, timeout=WAIT)
    view.action_add_dream.trigger()
    shown = dreams.shown_frame  # no event ran since the snapshot: the frame it took
    layer = view.canvas.layers[-1]
    assert np.array_equal(layer.source, to_rgba(mosaic(shown.pixels)))
    assert layer.provenance["checkpoint_sha256"] == "cd" * 32 and layer.provenance["steps"] == shown.steps
    assert shown.n_chains == 64 != job.last_frame.shape[0]  # not the training frame

    dreams.clear()  # nothing on the Dreams tab: the newest training frame, as before
    view.action_add_dream.trigger()
    layer = view.canvas.layers[-1]
    assert layer.provenance["run"] == job.id and layer.source.shape[:2] == (2 * 9 + 1, 2 * 9 + 1)


# ----------------------------------------------------------------------------- layer sources (no Qt)


def test_image_pixels_accepts_the_usual_layouts():
    chw = np.random.default_rng(0).random((3, 5, 7)).astype(np.float32)
    a = ls.image_pixels(chw)
    assert a.shape == (5, 7, 3) and a.dtype == np.uint8 and not a.flags.writeable
    assert a[2, 3, 1] == round(chw[1, 2, 3] * 255)
    assert ls.image_pixels(np.zeros((4, 6))).shape == (4, 6, 1)
    assert ls.image_pixels(torch.ones(1, 8, 8)).shape == (8, 8, 1)
    assert ls.image_pixels(np.full((2, 2), 65535, np.uint16)).max() == 255
    with pytest.raises(ls.LayerSourceError):
        ls.image_pixels(np.zeros((2, 3, 4, 5, 6)))


def test_dream_snapshot_grid_and_single_chain():
    chains = np.random.default_rng(1).random((5, 1, 4, 4)).astype(np.float32)
    prov = {"model": "grbm", "seed": 9, "steps": 40, "temperature": 1.2, "checkpoint_sha256": None}
    grid = ls.from_dream_snapshot(chains, prov)
    assert grid.source.shape == (2 * 5 + 1, 3 * 5 + 1, 1) and grid.resample == "nearest"
    assert grid.provenance["grid"]["n"] == 5 and grid.provenance["kind"] == "grbm"
    one = ls.from_dream_snapshot(chains, prov, chain=3)
    assert np.array_equal(one.source[..., 0], (chains[3, 0] * 255 + 0.5).astype(np.uint8))
    assert one.provenance["chain"] == 3 and "chain 3" in one.name
    rgba = np.zeros((7, 7, 4), np.uint8)
    assert ls.from_dream_snapshot(rgba, prov).source.shape == (7, 7, 4)
    with pytest.raises(ls.LayerSourceError):
        ls.from_dream_snapshot(chains, prov, chain=5)


def test_rbm_texture_is_deterministic_and_tiles():
    model = tiny_rbm(2)
    a = ls.rbm_texture(model, steps=20, seed=5)
    b = ls.rbm_texture(model, steps=20, seed=5)
    c = ls.rbm_texture(model, steps=20, seed=6, tiling="plain", temperature=1.5)
    assert np.array_equal(a.source, b.source) and not np.array_equal(a.source, c.source)
    assert a.tiling == "mirror" and c.tiling == "plain"
    assert c.provenance["temperature"] == 1.5 and c.provenance["steps"] == 20 and c.provenance["source"] == "texture"
    # a sampler works too (stepped in place)
    from models.factory import make_sampler

    sampler = make_sampler(model, n_chains=3, seed=1)
    t = ls.rbm_texture(sampler, steps=4, chain=2)
    assert t.provenance["steps"] == 4 and t.provenance["chain"] == 2 and sampler.steps_taken == 4
    # mirrored tiling over a canvas is seamless at every tile edge
    canvas = Canvas(64, 64, background=None)
    canvas.add_layer(Layer(source=a.source, tiling="mirror"))
    out = canvas.render_uint8()
    assert np.array_equal(out[:, 7], out[:, 8]) and np.array_equal(out[7], out[8])


def test_texture_of_a_model_that_cannot_dream_is_refused():
    with pytest.raises(ls.LayerSourceError, match="cannot make a texture"):
        ls.rbm_texture(torch.nn.Linear(2, 2), steps=1)


def test_vae_frame_and_interpolation_strip():
    frame = ls.vae_frame(np.random.default_rng(2).random((3, 6, 6)), {"model": "vae", "seed": 4, "temperature": 0.7})
    assert frame.source.shape == (6, 6, 3) and frame.provenance["source"] == "model-frame"
    frames = np.random.default_rng(3).random((4, 1, 5, 5)).astype(np.float32)
    strip = ls.interpolation_strip(frames, {"model": "hybrid"}, gap=2)
    assert strip.source.shape == (5, 4 * 5 + 3 * 2, 2)  # gray + alpha: the gaps are transparent
    assert strip.source[0, 5, 1] == 0 and strip.source[0, 0, 1] == 255
    vertical = ls.interpolation_strip(frames, vertical=True)
    assert vertical.source.shape == (20, 5, 1)
    animated = ls.interpolation_strip(list(frames), animate=True)
    assert len(animated.frames) == 4 and animated.provenance["frames"] == 4
    with pytest.raises(ls.LayerSourceError):
        ls.interpolation_strip([np.zeros((4, 4)), np.zeros((5, 5))])


def test_import_png_reads_modes_animations_and_refuses_bad_files(tmp_path):
    for mode, shape in (("L", (5, 4, 1)), ("LA", (5, 4, 2)), ("RGB", (5, 4, 3)), ("RGBA", (5, 4, 4))):
        Image.new(mode, (4, 5)).save(tmp_path / f"{mode}.png")
        assert ls.import_png(tmp_path / f"{mode}.png").source.shape == shape
    Image.new("P", (4, 4)).save(tmp_path / "p.png")
    assert ls.import_png(tmp_path / "p.png").source.shape == (4, 4, 3)
    save_animation([solid(4, 4, (i * 60, 0, 0)) for i in range(3)], tmp_path / "a.png", format="apng")
    anim = ls.import_png(tmp_path / "a.png")
    assert len(anim.frames) == 3 and anim.provenance["frames"] == 3
    for name, content, words in (("missing.png", None, "does not exist"),
                                 ("text.png", b"hello", "not an image"),
                                 ("cut.png", (tmp_path / "RGB.png").read_bytes()[:40], "damaged")):
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ls.LayerSourceError, match=words):
            ls.import_png(path)
    with pytest.raises(ls.LayerSourceError, match="folder"):
        ls.import_png(tmp_path)


def test_dataset_image_carries_its_path_and_preprocess(tmp_path):
    from studio.dataset import Preprocess
    from studio.jobs import Session

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(folder / "x.png")
    session = Session(Preprocess(size=16, color=True))
    images = session.open_images([str(folder)])
    layer = ls.dataset_image(images, 0)
    assert layer.source.shape == (16, 16, 3) and layer.provenance["preprocess"]["color"] is True
    with pytest.raises(ls.LayerSourceError, match="no image 3"):
        ls.dataset_image(images, 3)


def test_vae_and_hybrid_models_make_frames_and_textures():
    from models.autoencoder import AEConfig
    from models.hybrid import HybridConfig, HybridModel
    from models.vae import ConvVAE, VAEConfig

    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(image_size=28, channels=3, latent=4, width=8)).eval()
    a = ls.sample_frame(vae, seed=3, temperature=0.8)
    b = ls.sample_frame(vae, seed=3, temperature=0.8)
    assert a.source.shape == (28, 28, 3) and np.array_equal(a.source, b.source)
    p = a.provenance
    assert (p["model"], p["seed"], p["temperature"], p["source"]) == ("vae", 3, 0.8, "model-frame")
    assert ls.sample_frame(vae, seed=1, n=4).source.shape == (2 * 29 + 1, 2 * 29 + 1, 3)  # a 2×2 grid
    hybrid = HybridModel(HybridConfig(AEConfig(image_size=28, latent=6, width=8, sigmoid_codes=True), n_hidden=5)).eval()
    texture = ls.rbm_texture(hybrid, steps=10, seed=2, tiling="plain")
    assert texture.source.shape == (28, 28, 1) and texture.provenance["model"] == "hybrid"
    frame = ls.sample_frame(hybrid, seed=2, steps=10)
    assert frame.provenance["steps"] == 10 and np.array_equal(frame.source, texture.source)
