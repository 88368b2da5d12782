"""The exports as a person uses them (pytest-qt, offscreen; issue 16, items 2, 7 and the drop-back):
File → Export, the remembered folder, the export scale, a PSD from the window, a layers folder
typed by name, and an exported PNG dropped back onto the window."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QMessageBox  # noqa: E402

from studio.canvas import Layer  # noqa: E402
from studio.dataset import Preprocess  # noqa: E402
from studio.jobs import Session, TrainingJob  # noqa: E402
from studio.ui.settings import ExportPrefs, export_prefs  # noqa: E402

WAIT = 20_000


def tiny_rbm(seed: int = 0):
    from models.rbm import BernoulliRBM, RBMConfig

    torch.manual_seed(seed)
    return BernoulliRBM(RBMConfig(64, 16, (1, 8, 8)))


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    """A main window with its engine ready (its tabs built), a tiny RBM run in its session,
    settings in a temporary file."""
    from studio.app import make_application
    from studio.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    make_application()
    session = Session(Preprocess(size=16))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(session, settings=settings)
    w.show()
    qtbot.waitExposed(w)
    w.start_engine()
    qtbot.waitUntil(lambda: w.is_ready and w.canvas_view is not None, timeout=60_000)
    yield w
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Discard))
    w.controller.shutdown(timeout=5.0)
    w.close()
    qtbot.waitUntil(lambda: not w.busy_threads(), timeout=10_000)
    export_prefs().attach(None)


def menu_entry(window, text: str):
    return next(a for a in window.export_menu.actions() if a.text().split("\t")[0] == text)


def test_export_prefs_remember_the_folder_and_the_scale(tmp_path):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    prefs = ExportPrefs(settings)
    assert prefs.folder() == str(Path.home()) and prefs.scale() == (4, False)
    (tmp_path / "out").mkdir()
    prefs.remember(tmp_path / "out" / "grid.png")
    prefs.set_scale(8, True)
    again = ExportPrefs(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    assert again.folder() == str(tmp_path / "out") and again.scale() == (8, True)
    settings.setValue("export/scale", "huge")  # a damaged settings file gives the defaults
    settings.setValue("export/last_dir", str(tmp_path / "gone"))
    assert prefs.scale() == (4, True) and prefs.folder() == str(Path.home())
    with pytest.raises(ValueError, match="×1, ×2, ×4, ×8"):
        prefs.set_scale(3)


def test_file_export_menu_runs_the_canvas_psd_export_in_the_remembered_folder(window, qtbot, tmp_path, monkeypatch):
    from psd_tools import PSDImage

    view = window.canvas_view
    labels = [a.text().split("\t")[0] for a in window.export_menu.actions() if a.text()]
    assert "Canvas as Photoshop (.psd)…" in labels and "Dreams Grid (PNG)…" in labels and "Latent Strip (PNG)…" in labels
    keys = [a.text().split("\t")[1] for a in window.export_menu.actions() if "\t" in a.text()]
    assert len(keys) == len(set(keys)) and "Ctrl+E in Dreams" in keys  # a key two tabs share names its tab
    window.export_menu.aboutToShow.emit()
    assert not menu_entry(window, "Canvas as Photoshop (.psd)…").isEnabled()  # nothing on the canvas yet
    view.add_layer(Layer(name="base", source=np.full((20, 30, 3), 200, np.uint8)))
    view.add_layer(Layer(name="dodge", source=np.full((6, 6, 3), 90, np.uint8), x=3, y=4, blend_mode="color-dodge",
                         opacity=0.5))
    window.export_menu.aboutToShow.emit()
    assert menu_entry(window, "Canvas as Photoshop (.psd)…").isEnabled()
    assert not menu_entry(window, "Dreams Grid (PNG)…").isEnabled()  # no dreams yet

    first = tmp_path / "first"
    first.mkdir()
    export_prefs().remember(first, is_folder=True)
    asked, told = [], []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(
        lambda parent, title, text, *a, **k: told.append(text) or QMessageBox.StandardButton.Yes))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(
        lambda parent, title, start, *a, **k: asked.append(start) or (str(first / "art"), "")))
    menu_entry(window, "Canvas as Photoshop (.psd)…").trigger()
    qtbot.waitUntil(lambda: (first / "art.psd").exists() and not view.busy, timeout=WAIT)
    assert asked == [str(first / "canvas.psd")]  # opened in the remembered folder
    assert len(told) == 1 and "GIMP 2.10 renders Color Dodge" in told[0]  # a clear word on what GIMP cannot show
    psd = PSDImage.open(first / "art.psd")
    assert [(l.name, l.blend_mode.name, l.opacity) for l in psd][1:] == [("base", "NORMAL", 255),
                                                                         ("dodge", "COLOR_DODGE", 128)]
    assert window.settings.value("export/last_dir") == str(first)
    # the next export starts there too; a layers folder typed by name is made
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(
        lambda parent, title, start, *a, **k: asked.append(start) or (str(first / "new layers"), "")))
    menu_entry(window, "Canvas Layers + Composite (PNG)…").trigger()
    qtbot.waitUntil(lambda: (first / "new layers" / "composite.png").exists() and not view.busy, timeout=WAIT)
    assert asked[-1].startswith(str(first)) and sorted(p.name for p in (first / "new layers").iterdir()) == [
        "000-base.png", "001-dodge.png", "composite.png"]
    assert len(told) == 1  # the same word is not repeated in the session


def test_scale_menu_sets_the_size_of_a_dreams_grid_export(window, qtbot, tmp_path, monkeypatch):
    scale = window.export_entries.scale_actions[8]
    scale.trigger()
    assert export_prefs().scale() == (8, False) and int(window.settings.value("export/scale")) == 8
    window.export_entries.smooth_action.trigger()
    assert export_prefs().scale() == (8, True)
    window.export_entries.smooth_action.trigger()
    from studio.ui.dreams import DreamsView

    dreams = DreamsView(history=20)
    qtbot.addWidget(dreams)
    dreams.show()
    assert dreams.set_model(tiny_rbm(), {"title": "tiny"})
    qtbot.waitUntil(lambda: dreams.shown_frame is not None, timeout=WAIT)
    out = tmp_path / "grid.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    dreams.export_grid_dialog()
    qtbot.waitUntil(lambda: out.exists() and "saved" in dreams.last_message, timeout=WAIT)
    with Image.open(out) as im:
        got = np.asarray(im)
    grids = [dreams.session.snapshot_grid(f.serial)[0] for f in dreams.session.frames()]  # it dreams on meanwhile
    assert got.shape[:2] == (grids[0].shape[0] * 8, grids[0].shape[1] * 8)
    assert any(np.array_equal(got[::8, ::8], g) for g in grids)  # nearest: every pixel an 8×8 block
    assert np.array_equal(got[7::8, 7::8], got[::8, ::8])
    dreams.close()


def drop(window, path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    window.dropEvent(QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))


def test_an_exported_png_dropped_back_is_made_again(window, qtbot, tmp_path, errors, monkeypatch):
    from studio.canvas import Canvas
    from studio.canvas.export import export_layers
    from studio.canvas.sources import rbm_texture

    rbm = tiny_rbm(3)
    job = TrainingJob(None, model=rbm, kind="rbm", title="RBM")
    window.session.add_job(job)
    canvas = Canvas(40, 40)
    original = canvas.add_layer(rbm_texture(rbm, steps=4, seed=None, tiling="mirror", scale=2.0))
    png = export_layers(canvas, tmp_path / "out")[0]

    loaded = []
    monkeypatch.setattr(window, "open_sources", lambda paths, *a: loaded.append(paths))
    drop(window, png)
    dialog = window.reopen_dialog
    assert dialog.isVisible() and loaded == []  # not loaded as a training image
    text = dialog.label.text()
    assert "recognised by its weights" in text and f"seed {original.provenance['seed']}" in text
    before = len(window.canvas_view.canvas.layers)
    dialog.make_again_button.click()
    qtbot.waitUntil(lambda: len(window.canvas_view.canvas.layers) == before + 1, timeout=WAIT)
    again = window.canvas_view.canvas.layers[-1]
    np.testing.assert_array_equal(np.asarray(again.source), np.asarray(original.source))  # same pixels
    assert (again.tiling, again.scale, again.provenance["seed"]) == ("mirror", 2.0, original.provenance["seed"])

    # an ordinary image is loaded as before; a damaged studio PNG is refused in one sentence
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "plain.png")
    drop(window, tmp_path / "plain.png")
    assert loaded == [[str(tmp_path / "plain.png")]]
    broken = tmp_path / "broken.png"
    broken.write_bytes(png.read_bytes()[:200])
    drop(window, broken)
    title, message = errors.last(window)
    assert title == "This image cannot be reopened" and message.startswith("broken.png") and "\n" not in message


def test_interpolation_exports_name_their_files_and_scale(qtbot, tmp_path, monkeypatch):
    from models.vae import ConvVAE, VAEConfig
    from studio.images import read_provenance
    from studio.ui.latent_view import LatentView

    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(image_size=28, latent=4, width=4))
    data = torch.rand(6, 1, 28, 28)
    view = LatentView(max_sliders=4)
    qtbot.addWidget(view)
    view.set_model(vae, data, {"kind": "vae", "title": "tiny VAE"})
    qtbot.waitUntil(lambda: view.explorer is not None, timeout=WAIT)
    view.image_paths = lambda: [f"/pictures/cat-{i}.png" for i in range(6)]
    view.spin_a.setValue(1)
    view.spin_b.setValue(4)
    view.steps_spin.setValue(3)
    view.make_strip_button.click()
    qtbot.waitUntil(lambda: view.strip_frames is not None, timeout=WAIT)
    export_prefs().set_scale(2)
    out = tmp_path / "strip.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    view.export_png_button.click()
    prov = read_provenance(out)
    assert (prov["from_file"], prov["to_file"]) == ("cat-1.png", "cat-4.png") and prov["from_index"] == 1
    assert prov["to_path"] == "/pictures/cat-4.png" and prov["scale"] == 2
    with Image.open(out) as im:
        assert im.size == (2 * view.strip_image().shape[1], 2 * view.strip_image().shape[0])
        assert "from cat-1.png to cat-4.png" in im.text["Description"]
    export_prefs().set_scale(4)
    view.shutdown()
