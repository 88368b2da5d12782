"""The Latent tab (studio/ui/latent_view.py): sliders appear for the most used dimensions,
a slider change decodes in the worker and shows the vector the sliders hold, randomise / reset
move the sliders, dream mode animates, frames go to the canvas, and the worker stops."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.factory import Options, build
from studio.dreams import images_to_uint8
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


def test_to_canvas_sends_an_rgba_frame_with_its_latent(qtbot, view):
    with qtbot.waitSignal(view.frameToCanvas, timeout=2000) as sig:
        view.send_to_canvas()
    rgba, prov = sig.args
    assert rgba.shape == (SIZE, SIZE, 4) and rgba.dtype == np.uint8
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


# ------------------------------------------------------------------- main window wiring
from test_ui import image_folder, ready, settings, start_tiny, window  # noqa: E402,F401  (fixtures)


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
