"""The Latent tab (studio/ui/latent_view.py): sliders appear for the most used dimensions,
a slider change decodes in the worker and shows the vector the sliders hold, randomise / reset
move the sliders, dream mode animates, frames go to the canvas, and the worker stops."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.factory import Options, build
from studio.images import images_to_uint8
from studio.latent import LatentRunner
from studio.ui.latent_view import LatentView

SIZE = 28


def discs(n: int = 24, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    out = np.empty((n, 1, SIZE, SIZE), np.uint8)
    for i in range(n):
        cx, cy = rng.uniform(0.3, 0.7, 2) * SIZE
        r = rng.uniform(0.12, 0.3) * SIZE
        out[i, 0] = (255 / (1 + np.exp(np.hypot(xx - cx, yy - cy) - r))).astype(np.uint8)
    return torch.from_numpy(out)


@pytest.fixture(scope="module")
def data():
    return discs()


@pytest.fixture(scope="module")
def vae(data):
    tr = build(Options(kind="vae", image_shape=(1, SIZE, SIZE), latent=6, epochs=2, batch_size=8, seed=0,
                       frame_every=0, extra={"width": 4}), data, device="cpu")
    for _ in tr.run():
        pass
    return tr.model.eval()


@pytest.fixture()
def view(qtbot, vae, data):
    v = LatentView(max_sliders=4)
    qtbot.addWidget(v)
    v.resize(800, 500)
    v.set_model(vae, data, {"kind": "vae", "title": "tiny VAE"})
    qtbot.waitUntil(lambda: v.explorer is not None, timeout=10_000)
    yield v
    v.shutdown()


def decoded(vae, z) -> np.ndarray:
    with torch.no_grad():
        return images_to_uint8(vae.decode(torch.as_tensor(z, dtype=torch.float32)[None]))[0]


def test_sliders_follow_the_usage_order_and_a_move_decodes_the_vector_shown(qtbot, view, vae):
    ex = view.explorer
    assert ex.model is not vae  # a private copy
    assert list(view.sliders) == ex.order[:4]
    assert view.shown is not None and view.randomise_button.isEnabled()
    dim = ex.order[0]
    view.sliders[dim].setValue(1.5)
    want = np.zeros(6, np.float32)
    want[dim] = 1.5
    qtbot.waitUntil(lambda: view.shown_z is not None and np.allclose(view.shown_z, want, atol=1e-6), timeout=5000)
    assert np.abs(view.shown.astype(int) - decoded(vae, want).astype(int)).max() <= 1
    # a second slider keeps the first one's value
    other = ex.order[1]
    view.sliders[other].setValue(-2.0)
    want[other] = -2.0
    qtbot.waitUntil(lambda: np.allclose(view.shown_z, want, atol=1e-6), timeout=5000)


def test_randomise_and_reset_move_the_sliders(qtbot, view):
    view.randomise(seed=5)
    qtbot.waitUntil(lambda: view.shown_z is not None and np.abs(view.shown_z).sum() > 0, timeout=5000)
    dim = view.explorer.order[0]
    assert view.sliders[dim].value() == pytest.approx(float(np.clip(view.shown_z[dim], -3, 3)), abs=0.01)
    view.reset()
    qtbot.waitUntil(lambda: np.abs(view.shown_z).sum() == 0, timeout=5000)
    assert view.sliders[dim].value() == pytest.approx(0.0, abs=1e-9)


def test_dream_mode_animates_and_a_slider_stops_it(qtbot, view):
    before = view.frames_shown
    view.dream_button.setChecked(True)
    assert view.dreaming
    qtbot.waitUntil(lambda: view.frames_shown >= before + 5, timeout=5000)
    view.speed.setValue(3.0)
    qtbot.waitUntil(lambda: view.explorer.walker is not None and view.explorer.walker.speed == 3.0, timeout=5000)
    view.sliders[view.explorer.order[0]].setValue(0.5)
    assert not view.dreaming and not view.dream_button.isChecked()


def test_to_canvas_puts_the_frame_with_its_latent_on_the_documents_canvas(qtbot, view):
    assert view.document.canvas.layers == ()
    view.send_to_canvas()
    (layer,) = view.document.canvas.layers
    pixels = np.asarray(layer.source)
    assert pixels.shape == (SIZE, SIZE, 4) and pixels.dtype == np.uint8
    assert np.array_equal(pixels[..., 0], view.shown[..., 0]) and (pixels[..., 3] == 255).all()
    prov = layer.provenance
    assert prov["model"] == "vae" and len(prov["latent"]) == 6 and prov["title"] == "tiny VAE"


def test_clear_and_shutdown_stop_the_worker(qtbot, view):
    view.clear()
    assert view.explorer is None and not view.sliders and not view.randomise_button.isEnabled()
    view.shutdown()
    assert not view.runner.alive


def test_the_runner_keeps_only_the_newest_request():
    import threading

    got, gate = [], threading.Event()
    runner = LatentRunner(got.append)
    runner.request(lambda: gate.wait(5) and "first")
    import time

    time.sleep(0.05)  # the first request is running
    for i in range(10):
        runner.request(lambda i=i: i)
    gate.set()
    deadline = time.monotonic() + 5
    while 9 not in got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got == ["first", 9] and runner.requests_dropped == 9
    assert runner.stop()


def test_kept_requests_run_in_order_and_are_never_dropped():
    """An interpolation strip (or a new explorer) asked for while the worker is busy still runs,
    before the newest slider position, whatever the slider does meanwhile."""
    import threading
    import time

    got, gate = [], threading.Event()
    runner = LatentRunner(got.append)
    runner.request(lambda: gate.wait(5) and "busy")
    time.sleep(0.05)
    runner.request(lambda: 0)
    runner.request(lambda: "strip", keep=True)
    for i in range(1, 6):
        runner.request(lambda i=i: i)  # the slider goes on moving
    runner.request(lambda: "export", keep=True)
    assert not runner.idle()
    gate.set()
    deadline = time.monotonic() + 5
    while len(got) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got == ["busy", "strip", "export", 5] and runner.requests_dropped == 5
    assert runner.idle() and runner.stop()


# ------------------------------------------------------------------------ interpolation
def make_strip(qtbot, view, a=2, b=7, steps=5, method="linear"):
    view.spin_a.setValue(a)
    view.spin_b.setValue(b)
    view.steps_spin.setValue(steps)
    view.method_combo.setCurrentIndex(view.method_combo.findData(method))
    assert view.make_strip_button.isEnabled() and not view.export_png_button.isEnabled()
    view.make_strip_button.click()
    qtbot.waitUntil(lambda: view.strip_frames is not None, timeout=10_000)
    return view.strip_frames


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_a_strip_runs_from_the_reconstruction_of_a_to_that_of_b_and_plays(qtbot, view, method):
    ex = view.explorer
    assert view.spin_a.maximum() == len(ex.means) - 1
    frames = make_strip(qtbot, view, 2, 7, 5, method)
    assert frames.shape == (5, SIZE, SIZE, 1) and frames.dtype == np.uint8
    for frame, i in ((frames[0], 2), (frames[-1], 7)):
        assert np.abs(frame.astype(int) - ex.decode(ex.means[i]).astype(int)).max() <= 1
    assert np.array_equal(frames, ex.interpolate(2, 7, 5, method))
    assert view.strip_provenance["method"] == method and view.strip_provenance["from_index"] == 2
    assert view.strip_image().shape == (SIZE, 5 * SIZE, 1)
    assert not view.strip_label.pixmap().isNull()
    assert view.playing and view.export_png_button.isEnabled()
    shown = []
    qtbot.waitUntil(lambda: shown.append(view.image.image.copy()) or
                    len({im.tobytes() for im in shown}) >= 3, timeout=5000)  # the preview animates
    # a slider takes the preview back
    view.sliders[ex.order[0]].setValue(0.7)
    qtbot.waitUntil(lambda: not view.playing, timeout=5000)


def test_use_selected_takes_the_dataset_selection(view):
    assert not view.use_selected_button.isEnabled()
    view.selected_indices = lambda: [9, 4, 12]
    view._update_controls()
    view.use_selected_button.click()
    assert (view.spin_a.value(), view.spin_b.value()) == (4, 9)


def test_the_strip_exports_as_png_and_as_gif_and_apng(qtbot, view, tmp_path):
    from PIL import Image, ImageSequence

    from studio.canvas.export import read_provenance

    frames = make_strip(qtbot, view, 0, 5, 6)
    png = view.export_strip_png(tmp_path / "strip.png")
    with Image.open(png) as im:
        assert np.array_equal(np.asarray(im), view.strip_image()[..., 0])
    prov = read_provenance(png)
    assert prov["source"] == "interpolation" and prov["title"] == "tiny VAE" and prov["steps"] == 6
    for name in ("walk.gif", "walk.png"):
        path = view.export_animation(tmp_path / name)
        with Image.open(path) as im:
            got = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(im)]
        assert len(got) == len(frames)
        for g, f in zip(got, frames):
            assert np.abs(g.astype(int) - f[..., 0].astype(int)).max() <= (0 if name.endswith(".png") else 2)


def test_the_strip_goes_to_the_canvas_as_one_layer(qtbot, view):
    make_strip(qtbot, view, 1, 3, 4)
    view.strip_canvas_button.click()
    (layer,) = view.document.canvas.layers
    assert np.array_equal(np.asarray(layer.source), view.strip_image())
    assert layer.provenance["source"] == "interpolation" and layer.provenance["frames"] == 4


# ------------------------------------------------------------------- main window wiring
from test_ui import image_folder, ready, start_tiny, window  # noqa: E402,F401  (fixtures)


def test_the_latent_tab_explores_a_stopped_vae_job_and_sends_frames_to_the_canvas(ready, qtbot):
    view = ready.latent_view
    assert view is not None and ready.tab("Latent") is view
    page, job = start_tiny(ready, "vae", latent=4, epochs=3)
    qtbot.waitUntil(lambda: job.state.name in ("DONE", "STOPPED") or job.finished, timeout=30_000)
    qtbot.waitUntil(lambda: view.explorer is not None, timeout=20_000)
    ex = view.explorer
    assert ex.model is not job.model and ex.latent_dim == 4
    assert ex.means is not None and len(ex.means) == 20  # the set ordered the sliders
    assert len(view.sliders) == 4 and view.shown.shape == (28, 28, 1)
    n_layers = len(ready.canvas_view.canvas.layers)
    view.send_to_canvas()
    assert len(ready.canvas_view.canvas.layers) == n_layers + 1
    assert ready.canvas_view.canvas.layers[-1].provenance["kind"] == "vae"
    # an interpolation between the two images selected in the dataset panel, to the canvas
    grid = ready.dataset_panel.grid
    for row in (3, 11):
        grid.selectionModel().select(grid.model().index(row, 0), grid.selectionModel().SelectionFlag.Select)
    view.use_selected_button.click()
    assert (view.spin_a.value(), view.spin_b.value()) == (3, 11)
    view.make_strip_button.click()
    qtbot.waitUntil(lambda: view.strip_frames is not None, timeout=10_000)
    view.strip_canvas_button.click()
    assert len(ready.canvas_view.canvas.layers) == n_layers + 2
    added = ready.canvas_view.canvas.layers[-1]
    assert np.array_equal(np.asarray(added.source), view.strip_image())
    assert added.provenance["from_index"] == 3 and added.provenance["to_index"] == 11
    # the dataset panel's latent actions work on the tab's explorer; denoise -> dialog -> canvas
    panel = ready.dataset_panel
    assert panel.explorer is ex and panel.sort_outliers_action.isEnabled()
    panel.select_set_indices([5])
    panel.denoise_action.trigger()
    qtbot.waitUntil(lambda: ready.denoise_dialog is not None, timeout=10_000)
    assert np.array_equal(ready.denoise_dialog.denoised, ex.denoise(ex.images[5]))
    ready.denoise_dialog.canvas_button.click()
    assert len(ready.canvas_view.canvas.layers) == n_layers + 3
    assert ready.canvas_view.canvas.layers[-1].provenance["image_index"] == 5
    ready.denoise_dialog.close()
