"""Dreams: the live Gibbs-chain viewer (studio/dreams/, studio/ui/dreams/).

Tiny models (8×8 images, 16 hidden units), so the whole file runs in a few seconds.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMConfig
from models.sampling import GibbsSampler
from studio.dreams import BrushUnavailable, DreamRunner, DreamSession
from studio.canvas.export import read_provenance
from studio.images import GridLayout, images_to_uint8, mosaic


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny matmuls: OpenMP threads only wait on each other on a busy machine (as the studio
    does, one thread fewer than the cores; here one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_rbm(cls=BernoulliRBM, seed: int = 0, scale: float = 0.6) -> BernoulliRBM:
    torch.manual_seed(seed)
    m = cls(RBMConfig(64, 16, (1, 8, 8)))
    with torch.no_grad():
        m.weight.normal_(0.0, scale)
        m.visible_bias.normal_(0.0, 0.5)
        m.hidden_bias.normal_(0.0, 0.5)
    return m


def session(show: str = "samples", n: int = 16, cls=BernoulliRBM, history: int = 240) -> DreamSession:
    s = DreamSession.from_model(tiny_rbm(cls), {"checkpoint_sha256": "ab" * 32}, n_chains=n, seed=3, show=show,
                                history=history)
    s.apply_pending()  # the start state is the first frame
    return s


def dedupe(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Consecutive identical frames collapse into one in GIF / APNG files (Pillow merges them)."""
    out: list[np.ndarray] = []
    for f in frames:
        if not out or not np.array_equal(out[-1], f):
            out.append(f)
    return out


def read_animation(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


# ------------------------------------------------------------------------------- session
def test_frames_change_as_the_chains_move_and_history_is_bounded():
    s = session(history=5)
    first = s.latest()
    assert first.pixels.shape == (16, 8, 8, 1) and first.pixels.dtype == np.uint8 and first.steps == 0
    frames = [s.step() for _ in range(8)]
    assert [f.serial for f in frames] == list(range(1, 9))
    assert all(not np.array_equal(a.pixels, b.pixels) for a, b in zip(frames, frames[1:]))
    assert frames[-1].steps == 8
    hist = s.frames()
    assert len(hist) == 5 and [f.serial for f in hist] == list(range(4, 9))
    assert s.frame(0).serial == 4  # gone from the history: the oldest kept frame
    s.set_steps_per_frame(7)
    assert s.step().steps == 15


def test_settings_are_intents_applied_by_the_worker():
    s = session(show="probs")
    s.set_temperature(2.5)
    s.set_show("samples")
    assert s.sampler.temperature == 1.0  # nothing touched the sampler yet
    assert s.apply_pending()  # probs -> samples: a new frame of the same state
    assert s.sampler.temperature == 2.5
    assert set(np.unique(s.latest().pixels)) <= {0, 255}
    with pytest.raises(ValueError, match="temperature"):
        s.set_temperature(0.0)
    with pytest.raises(ValueError, match="chains"):
        s.set_n_chains(1000)


def test_changing_the_number_of_chains_keeps_the_kept_chains():
    s = session()
    before = s.step().pixels
    s.set_n_chains(25)
    s.apply_pending()
    after = s.latest().pixels
    assert after.shape == (25, 8, 8, 1)
    assert np.array_equal(after[:16], before)
    assert len(s.frames()) == 1  # a new frame shape starts a new history


@pytest.mark.parametrize("show", ["samples", "probs"])
def test_brush_clamped_units_never_change_and_painted_ones_do(show):
    s = session(show=show)
    for _ in range(3):
        s.step()
    s.paint(5, 2.5, 2.5, radius=2.0)  # a disc around pixel (2, 2) of chain 5
    s.paint(5, 6.0, 6.0, radius=1.0, y0=6.0, x0=2.0)  # a stroke along row 5
    painted = s.mask[5]
    assert painted[2, 2] and painted[5, 4] and not painted[0, 7] and s.mask[:5].sum() == 0
    s.apply_pending()
    # What the sampler is asked: the inverse of the paint, for chain 5 only.
    clamp = s.sampler.clamp_mask.cpu().numpy()
    assert np.array_equal(clamp[5], ~painted.reshape(-1)) and not clamp[:5].any() and not clamp[6:].any()
    held = s.latest().pixels[5, ..., 0].copy()
    changed = np.zeros((8, 8), bool)
    others_changed = False
    for _ in range(60):
        f = s.step().pixels
        assert np.array_equal(f[5, ..., 0][~painted], held[~painted])
        changed |= f[5, ..., 0] != held
        others_changed |= not np.array_equal(f[0], s.frames()[-2].pixels[0])
    assert changed[painted].any() and others_changed
    # Invert: the painted pixels hold, the rest dreams; clear: chain 5 is free again.
    s.invert_mask()
    s.apply_pending()
    assert np.array_equal(s.mask[5], ~painted)
    held = s.latest().pixels[5, ..., 0].copy()
    for _ in range(20):
        assert np.array_equal(s.step().pixels[5, ..., 0][painted], held[painted])
    s.clear_mask()
    s.apply_pending()
    assert s.sampler.clamp_mask is None and not s.has_mask


def test_brush_on_a_gaussian_rbm_holds_pixels_too():
    s = session(show="probs", cls=GaussianBernoulliRBM)
    s.paint(0, 4.0, 4.0, radius=2.5)
    s.apply_pending()
    painted = s.mask[0]
    held = s.latest().pixels[0, ..., 0].copy()
    for _ in range(20):
        assert np.array_equal(s.step().pixels[0, ..., 0][~painted], held[~painted])


def test_brush_is_refused_where_it_has_no_pixels():
    training = DreamSession.for_training({"kind": "rbm"})
    training.push_frame(torch.rand(4, 1, 8, 8), {"step": 10})
    with pytest.raises(BrushUnavailable, match="training"):
        training.paint(0, 1, 1)
    from models.autoencoder import AEConfig
    from models.hybrid import HybridConfig, HybridModel

    torch.manual_seed(0)
    hybrid = HybridModel(HybridConfig(AEConfig(image_size=28, latent=8, width=4, sigmoid_codes=True), n_hidden=8))
    s = DreamSession.from_model(hybrid, n_chains=4, seed=0)
    s.apply_pending()
    assert s.step().pixels.shape == (4, 28, 28, 1)  # hybrid chains, decoded to images
    with pytest.raises(BrushUnavailable, match="code space"):
        s.paint(0, 1, 1)
    with pytest.raises(BrushUnavailable):
        s.invert_mask()


@pytest.mark.parametrize("cls", [BernoulliRBM, GaussianBernoulliRBM])
def test_reset_from_dataset_images_starts_the_chains_at_those_images(cls):
    s = session(show="probs", cls=cls)
    s.step()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 1, 8, 8), dtype=np.uint8)
    s.reset(images)
    s.apply_pending()
    first = s.latest()
    assert first.steps == 0
    assert np.array_equal(first.pixels, images[:16].transpose(0, 2, 3, 1))  # the first n images
    assert not np.array_equal(s.step().pixels, first.pixels)  # and then they dream on
    with pytest.raises(ValueError, match="model's size"):
        s.reset(np.zeros((4, 1, 9, 9), np.uint8))
    s.reset("noise")
    s.apply_pending()
    assert s.latest().steps == 0


def test_training_frames_are_recorded():
    s = DreamSession.for_training({"kind": "rbm", "job_id": 3})
    frames = [torch.rand(9, 1, 8, 8) for _ in range(3)]
    for i, f in enumerate(frames):
        s.push_frame(f, {"step": 10 * (i + 1), "epoch": 0})
    hist = s.frames()
    assert [f.steps for f in hist] == [10, 20, 30]
    assert np.array_equal(hist[1].pixels, images_to_uint8(frames[1]))
    with pytest.raises(ValueError):
        s.set_temperature(2.0)


def test_exports_match_the_grid_and_the_chain_history(tmp_path):
    s = session(show="samples")  # binary frames: a GIF's palette holds them exactly
    for _ in range(12):
        s.step()
    rgba, prov = s.snapshot_grid()
    path = s.export_grid_png(tmp_path / "grid.png")
    with Image.open(path) as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im), rgba)
    assert np.array_equal(rgba[..., 0], mosaic(s.latest().pixels)[..., 0])
    meta = read_provenance(path)
    assert meta["model"] == "rbm" and meta["checkpoint_sha256"] == "ab" * 32 and meta["steps"] == 12
    assert meta["seed"] == 3 and meta["temperature"] == 1.0

    history = [np.repeat(f.pixels[4], 3, axis=2) for f in s.frames()]  # chain 4, as RGB
    want = dedupe(history)
    for fmt in ("apng", "gif"):
        out = s.export_chain_animation(4, tmp_path / f"chain.{fmt}", fps=10, format=fmt)
        got = read_animation(out)
        assert len(got) == len(want)
        assert all(np.array_equal(g, w) for g, w in zip(got, want)), fmt
    # Scaled up, nearest neighbour.
    big = read_animation(s.export_chain_animation(4, tmp_path / "big.png", format="apng", scale=3))
    assert np.array_equal(big[0][::3, ::3], want[0])

    chain, cprov = s.snapshot_chain(4)
    assert chain.shape == (8, 8, 4) and cprov["chain"] == 4 and (chain[..., 3] == 255).all()
    layer = s.snapshot_layer(4)
    assert layer.provenance["chain"] == 4 and layer.source.shape == (8, 8, 4)


def test_probabilities_gif_is_close_to_the_history(tmp_path):
    s = session(show="probs")
    for _ in range(6):
        s.step()
    want = dedupe([np.repeat(f.pixels[0], 3, axis=2) for f in s.frames()])
    got = read_animation(s.export_chain_animation(0, tmp_path / "p.gif"))
    assert len(got) == len(want)
    assert max(np.abs(g.astype(int) - w.astype(int)).max() for g, w in zip(got, want)) <= 8


def test_runner_steps_in_its_thread_applies_intents_and_stops():
    s = session()
    r = DreamRunner(s, max_fps=200).start()
    try:
        deadline = time.monotonic() + 5
        while r.frames < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.frames >= 5 and r.alive
        s.set_temperature(1.7)
        deadline = time.monotonic() + 5
        while s.sampler.temperature != 1.7 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.sampler.temperature == 1.7
        r.pause()
        time.sleep(0.05)
        n = r.frames
        time.sleep(0.1)
        assert r.frames == n  # paused
        r.single_step()
        deadline = time.monotonic() + 5
        while r.frames == n and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert r.frames == n + 1
    finally:
        assert r.stop()
    assert not r.alive


def test_fast_binary_gibbs_step_matches_the_generic_one():
    """models/sampling.py steps binary RBMs without the generic calls; same draws, same bits."""
    m = tiny_rbm()
    for t, clamp in ((1.0, False), (0.6, True)):
        a = GibbsSampler(m, n_chains=6, seed=11, temperature=t)
        a.free_running = False  # addmm, as the model's own calls (free-running chains use oneDNN)
        b = GibbsSampler(m, n_chains=6, seed=11, temperature=t)
        if clamp:
            mask = torch.zeros(64, dtype=torch.bool)
            mask[::3] = True
            a.clamp(mask)
            b.clamp(mask)
        a.step(25)
        with torch.no_grad():  # as the sampler runs them
            for _ in range(25):
                _, b.hidden = m.sample_hidden(b.visible, t, b.noise)
                b.mean, b.visible = m.sample_visible(b.hidden, t, b.noise)
                b._apply_clamp()
        assert torch.equal(a.visible, b.visible) and torch.equal(a.mean, b.mean) and torch.equal(a.hidden, b.hidden)
        before = a.visible
        a.step(1)
        assert a.visible is not before  # new tensors each step: earlier states are never overwritten


# -------------------------------------------------------------------------------- widget
@pytest.fixture
def view(qtbot):
    from studio.ui.dreams import DreamsView

    v = DreamsView(history=50)
    qtbot.addWidget(v)
    v.resize(900, 600)
    v.show()
    qtbot.waitExposed(v)
    yield v
    v.close()


def test_view_shows_new_frames_as_the_chains_move(view, qtbot):
    assert view.set_model(tiny_rbm(), {"checkpoint_sha256": "cd" * 32})
    assert view.worker_alive
    qtbot.waitUntil(lambda: view.frames_shown >= 2, timeout=5000)
    first = view.image.image.copy()
    assert first.dtype == np.uint8 and first.shape == GridLayout(64, 8, 8).shape
    assert tuple(view.image.levels) == (0, 255)  # fixed levels, never autoscaled
    qtbot.waitUntil(lambda: not np.array_equal(view.image.image, first), timeout=5000)
    shown = view.shown_frame
    assert np.array_equal(view.image.image, mosaic(shown.pixels)[..., 0])
    # Pausing holds the picture still.
    view.pause_button.click()
    qtbot.wait(100)
    held = view.frames_shown
    qtbot.wait(150)
    assert view.frames_shown == held
    view.single_step()
    qtbot.waitUntil(lambda: view.frames_shown == held + 1, timeout=5000)


def test_view_training_frames_history_scrubber(view, qtbot):
    frames = [torch.full((4, 1, 8, 8), v) for v in (0.1, 0.5, 0.9)]
    for i, f in enumerate(frames):
        view.show_training_frame(f, {"job_id": 7, "step": i * 10, "kind": "rbm"})
    assert view.session.source == "training" and not view.worker_alive
    qtbot.waitUntil(lambda: view.shown_frame is not None and view.shown_frame.steps == 20, timeout=3000)
    assert view.image.image[1, 1] == round(0.9 * 255)
    view.scrub.setValue(0)  # back to the oldest frame
    qtbot.waitUntil(lambda: view.shown_frame.steps == 0, timeout=3000)
    assert view.image.image[1, 1] == round(0.1 * 255)
    assert not view.brush_button.isEnabled() and not view.chains_spin.isEnabled()
    view.go_live()
    qtbot.waitUntil(lambda: view.shown_frame.steps == 20, timeout=3000)
    view.show_training_frame(frames[0], {"job_id": 8, "step": 0})  # another job: a new history
    assert len(view.session.frames()) == 1


def test_view_brush_strokes_paint_the_chain_under_the_mouse(view, qtbot):
    view.set_model(tiny_rbm(), {})
    qtbot.waitUntil(lambda: view._layout is not None, timeout=5000)
    view.brush_button.setChecked(True)
    view.brush_size.setValue(1)
    lay = view._layout
    y, x = lay.origin(9)
    view._brush_stroke(y + 4.5, x + 6.5, y + 4.5, x + 1.5, True, False)  # drag along row 4 of chain 9
    mask = view.session.mask
    assert mask[9, 4, 2:6].all() and mask.sum() == mask[9].sum() and view.selected_chain == 9
    qtbot.waitUntil(lambda: view.overlay.image is not None, timeout=3000)
    assert view.overlay.image[y + 4, x + 3, 3] > 0 and view.overlay.image[y, x - 1, 3] == 0
    view.invert_mask_button.click()
    assert not view.session.mask[9, 4, 3]
    view.clear_mask_button.click()
    assert not view.session.has_mask


def test_view_snapshot_export_and_dataset_reset(view, qtbot, tmp_path):
    view.set_model(tiny_rbm(), {"checkpoint_sha256": "ef" * 32})
    view.chains_spin.setValue(16)
    images = np.random.default_rng(1).integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    view.set_dataset_images(images)
    assert view.reset_data_button.isEnabled()
    view.pause_button.click()
    view.samples_radio.setChecked(True)
    view.reset_data_button.click()
    qtbot.waitUntil(lambda: view.shown_frame is not None and view.shown_frame.steps == 0
                    and view.shown_frame.n_chains == 16, timeout=5000)
    shown = view.shown_frame.pixels.transpose(0, 3, 1, 2)
    assert all(any(np.array_equal(c, im) for im in images) for c in shown)  # chains start at dataset images
    view.set_dataset_images(np.zeros((3, 1, 5, 5), np.uint8))
    assert not view.reset_data_button.isEnabled() and "model's size" in view.reset_data_button.toolTip()

    n_layers = len(view.document.canvas.layers)
    rgba, prov = view.snapshot_chain()
    assert rgba.shape == (8, 8, 4) and prov["checkpoint_sha256"] == "ef" * 32 and prov["chain"] == 0
    assert len(view.document.canvas.layers) == n_layers + 1  # on the document's canvas, pixels and all
    layer = view.document.canvas.layers[-1]
    assert np.array_equal(np.asarray(layer.source), rgba) and layer.provenance["chain"] == 0
    fut = view.export_grid_png(tmp_path / "g.png")
    assert fut.result(timeout=10) == tmp_path / "g.png"
    for _ in range(3):
        view.single_step()
        qtbot.wait(30)
    fut = view.export_chain_animation(tmp_path / "c.gif", chain=2, fps=8)
    got = read_animation(fut.result(timeout=10))
    assert len(got) >= 1 and got[0].shape[0] % 8 == 0
    qtbot.waitUntil(lambda: "saved" in view.last_message, timeout=3000)


def test_view_refuses_a_model_that_cannot_dream_and_disables_brush_for_hybrid(view):
    from models.autoencoder import AEConfig, ConvAutoencoder
    from models.hybrid import HybridConfig, HybridModel

    assert not view.set_model(ConvAutoencoder(AEConfig(image_size=28, latent=4, width=4)), {})
    assert "cannot dream" in view.placeholder.text() or "no sampler" in view.placeholder.text()
    hybrid = HybridModel(HybridConfig(AEConfig(image_size=28, latent=8, width=4, sigmoid_codes=True), n_hidden=8))
    assert view.set_model(hybrid, {})
    assert not view.brush_button.isEnabled() and "code space" in view.brush_hint.text()


def test_closing_the_view_stops_its_worker(qtbot):
    from studio.ui.dreams import DreamsView

    v = DreamsView()
    qtbot.addWidget(v)
    v.show()
    v.set_model(tiny_rbm(), {})
    qtbot.waitUntil(lambda: v.runner.frames > 0, timeout=5000)
    v.close()
    assert not v.worker_alive
    names = [t.name for t in threading.enumerate()]
    assert not any(n.startswith(("dreams-sampler", "dreams-export")) for n in names), names


def test_hidden_view_stops_dreaming_and_resumes_when_shown(qtbot):
    from PySide6.QtWidgets import QLabel, QTabWidget

    from studio.ui.dreams import DreamsView

    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    v = DreamsView()
    tabs.addTab(v, "Dreams")
    tabs.addTab(QLabel("other"), "Other")
    tabs.show()
    v.set_model(tiny_rbm(), {})
    qtbot.waitUntil(lambda: v.runner.frames > 0, timeout=5000)
    tabs.setCurrentIndex(1)  # a hidden tab does not burn the CPU
    assert v.runner.paused
    tabs.setCurrentIndex(0)
    assert not v.runner.paused
    v.shutdown()
    v.shutdown()
    assert not v.worker_alive


def test_hiding_the_controls_gives_the_grid_the_width_and_refits_it(view, qtbot):
    from PySide6.QtCore import Qt

    view.resize(700, 900)  # a tall, narrow room: the grid's width is what limits it
    assert view.set_model(tiny_rbm(), {})
    qtbot.waitUntil(lambda: view.frames_shown >= 1, timeout=5000)
    view.fit()
    qtbot.wait(50)
    width_before = view.graphics.width()
    zoom_before = view.viewbox.width() / view.viewbox.viewRect().width()
    view.graphics.setFocus()
    qtbot.keyClick(view.graphics, Qt.Key.Key_C)  # the C shortcut
    qtbot.waitUntil(lambda: not view.controls.isVisible(), timeout=2000)
    assert not view.controls_button.isChecked()
    qtbot.waitUntil(lambda: view.graphics.width() > width_before + 200, timeout=2000)
    qtbot.wait(50)

    def fitted() -> bool:  # the whole mosaic in view, and filling it in one direction
        img, vr = view.image.boundingRect(), view.viewbox.viewRect()
        inside = vr.contains(img.adjusted(1, 1, -1, -1))
        return inside and (vr.height() <= img.height() * 1.05 or vr.width() <= img.width() * 1.05)

    qtbot.waitUntil(fitted, timeout=2000)
    assert view.viewbox.width() / view.viewbox.viewRect().width() > 1.3 * zoom_before  # bigger pixels
    view.controls_button.click()  # and back
    qtbot.waitUntil(lambda: view.controls.isVisible(), timeout=2000)
    qtbot.waitUntil(lambda: view.graphics.width() <= width_before + 5, timeout=2000)


def test_view_warns_over_the_grid_when_the_dreams_collapsed_and_the_warning_can_be_closed(view, qtbot, tmp_path):
    from models.quality import QualityReport

    def report(diversity: float = 0.9, memorisation: float = 1.0) -> QualityReport:
        return QualityReport(mmd2=0.1, floor=0.05, ceiling=0.4, diversity=diversity, memorisation=memorisation,
                             bandwidth=3.0, n_samples=64, n_train=16, n_heldout=4)

    assert view.set_model(tiny_rbm(), {"job_id": 1})
    assert not view.set_quality(report(), key=(1, 10))  # healthy: no banner
    assert view.quality_banner.isHidden() and view.quality_banner_text == ""
    assert view.set_quality(report(diversity=0.02), key=(1, 10))
    qtbot.waitUntil(view.quality_banner.isVisible, timeout=2000)
    assert view.quality_banner_text.startswith("These dreams have collapsed: nearly all chains show the same image.")
    # over the grid, full width of the dreams' column
    assert view.quality_banner.geometry().bottom() <= view.graphics.geometry().top()
    view.grab().save(str(tmp_path / "banner.png"))
    view.quality_close.click()
    assert view.quality_banner.isHidden()
    assert not view.set_quality(report(diversity=0.02), key=(1, 10))  # closed for this report
    assert view.set_quality(report(memorisation=0.05), key=(1, 20))  # a new report warns again
    assert "copy your training images" in view.quality_banner_text
    assert view.set_model(tiny_rbm(), {"job_id": 2})  # another model: its own report decides
    assert view.quality_banner.isHidden()


def test_view_snapshots_a_new_sessions_grid_before_any_display_tick_and_keeps_the_same_model(view, qtbot):
    """What has a frame can be snapshotted at once (no waiting for the display timer), and the
    model that dreams already, set again, keeps dreaming: its grid is not cleared."""
    view._timer.stop()  # no display ticks: nothing below may wait for one
    model, meta = tiny_rbm(), {"checkpoint_sha256": "ab" * 32, "kind": "rbm"}
    assert view.set_model(model, meta)
    qtbot.waitUntil(lambda: view.session.latest() is not None, timeout=5000)
    assert view.shown_frame is None
    got = view.snapshot_grid()
    assert got is not None and view.shown_frame is not None
    rgba, prov = got
    assert np.array_equal(rgba[..., 0], view.image.image) and prov["checkpoint_sha256"] == "ab" * 32
    session, shown = view.session, view.shown_frame
    assert view.set_model(model, dict(meta))  # the same model again
    assert view.session is session and view.shown_frame is shown and view.worker_alive
    assert view.snapshot_grid() is not None
    assert view.set_model(tiny_rbm(), meta)  # another model: dreams of its own
    assert view.session is not session


def test_a_new_model_dreams_at_temperature_one_and_the_same_model_keeps_its_own(view, qtbot):
    first = tiny_rbm()
    assert view.set_model(first, {})
    view.temp_slider.setValue(0.41)
    assert abs(view.session.settings.temperature - 0.41) < 1e-6
    assert view.set_model(first, {})  # the same model, still dreaming: its temperature stays
    assert abs(view.temp_slider.value() - 0.41) < 1e-6
    assert view.set_model(tiny_rbm(seed=1), {})  # another model starts at T = 1
    assert view.temp_slider.value() == 1.0
    assert abs(view.session.settings.temperature - 1.0) < 1e-6
