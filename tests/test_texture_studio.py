"""The texture RBM in the studio (issue 15): the Dreams session dreaming one large seamless
texture (temperature, the brush's clamp, a reset from images of any size), the canvas source
that fills a canvas at its own size, and, through the window (pytest-qt), the training page
with the texture's settings and its filters live, the Dreams tab and the canvas's "Layer from a
model"."""
from __future__ import annotations

import math
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
import pytest
import torch
from PIL import Image

from models.conv_rbm import DEFAULT_SWEEPS, ConvRBM, ConvRBMConfig, ConvRBMTrainConfig, ConvRBMTrainer, seam_ratio
from studio.canvas.sources import LayerSourceError, canvas_texture
from studio.dreams import BrushUnavailable, DreamSession
from studio.dreams.session import TEXTURE_DREAM_SIDE, TEXTURE_MAX_CHAINS

pytest.importorskip("pytestqt")

WAIT = 30_000


def stripes(size: int = 48, period: int = 6, seed: int = 0) -> np.ndarray:
    """A grey diagonal-stripe texture with a little noise, uint8 [size, size]."""
    y, x = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(seed)
    img = 0.5 + 0.35 * np.sin(2 * math.pi * (x + y) / period) + 0.05 * rng.standard_normal((size, size))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def texture_model() -> ConvRBM:
    """A small texture RBM trained briefly (60 steps) on the stripes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = ConvRBM(ConvRBMConfig(channels=1, n_filters=4, filter_size=5, image_shape=(1, 48, 48)))
        cfg = ConvRBMTrainConfig(epochs=1, steps_per_epoch=60, crop=24, k=1, n_chains=2, learning_rate=0.01, seed=0,
                                 threads=1, frame_every=0)
        ConvRBMTrainer(model, torch.from_numpy(stripes())[None, None], cfg).fit()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


# ------------------------------------------------------------------------------ Dreams
def test_a_texture_dreams_one_large_seamless_chain_with_temperature_and_the_brush(texture_model):
    session = DreamSession.from_model(texture_model, {"title": "stripes"}, n_chains=64, seed=3)
    s = session.sampler
    assert session.settings.n_chains == 1 and s.size == (TEXTURE_DREAM_SIDE, TEXTURE_DREAM_SIDE)
    assert s.warm_up > 0 and session.image_chw() == (1, TEXTURE_DREAM_SIDE, TEXTURE_DREAM_SIDE)
    assert s.cycle == DEFAULT_SWEEPS  # warmed again every 40 sweeps, the runs its model trained on
    assert session.can_brush and session.brush_refusal is None
    session.step()
    frame = session.latest()
    assert frame.pixels.shape == (1, TEXTURE_DREAM_SIDE, TEXTURE_DREAM_SIDE, 1)
    for _ in range(s.warm_up):  # through the warm-up: annealed from T = 2 down to 1
        session.step()
    assert s._warm_left == 0 and s.temperature == 1.0
    texture = torch.tensor(session.latest().pixels[..., 0]).float()[:, None] / 255
    assert seam_ratio(texture) < 1.25 and texture.std() > 0.05
    # the temperature reaches the sampler at the next step
    session.set_temperature(0.7)
    session.step()
    assert s.temperature == 0.7 and session.latest().temperature == 0.7
    # the brush: a painted disc keeps dreaming, the rest holds still
    session.paint(0, 100, 120, radius=30)
    session.step()
    before = session.latest().pixels[0, ..., 0].copy()
    for _ in range(3):
        session.step()
    after = session.latest().pixels[0, ..., 0]
    painted = session.mask[0]
    assert painted.sum() > 2000 and s.clamp_mask is not None
    assert np.array_equal(after[~painted], before[~painted])
    assert np.abs(after[painted].astype(int) - before[painted]).mean() > 1
    session.clear_mask()
    session.step()
    assert s.clamp_mask is None


def test_a_texture_session_caps_its_chains_and_restarts_from_images_of_any_size(texture_model):
    session = DreamSession.from_model(texture_model, n_chains=1, seed=0)
    session.set_n_chains(64)
    assert session.settings.n_chains == TEXTURE_MAX_CHAINS
    session.step()
    assert session.latest().pixels.shape[0] == TEXTURE_MAX_CHAINS
    grey = np.stack([stripes(40)[None], stripes(40, seed=1)[None]])  # 40 px: tiled over the 384 px torus
    assert session.check_images(grey) is None
    assert "channel" in session.check_images(np.zeros((2, 3, 40, 40), np.uint8))
    session.reset(grey)
    session.apply_pending()
    start = session.latest().pixels[0, :40, :40, 0]
    tiled = stripes(40)[(np.arange(40)[:, None] + 8) % 40, (np.arange(40)[None] + 8) % 40]  # 10 tiles, 8 px cut each side
    assert np.abs(start.astype(int) - tiled).max() <= 1  # seeded from the image, centred on the torus


def test_the_brush_is_still_refused_where_no_unit_is_a_pixel():
    from models.vae import ConvVAE, VAEConfig

    session = DreamSession.from_model(ConvVAE(VAEConfig(image_size=28, channels=1, latent=2, width=2)), n_chains=2, seed=0)
    assert "texture RBM" in session.brush_refusal
    with pytest.raises(BrushUnavailable):
        session.paint(0, 1, 1)


# ------------------------------------------------------------------------------ canvas
def test_canvas_texture_fills_the_canvas_at_its_own_size_seamlessly(texture_model):
    layer = canvas_texture(texture_model, 300, 170, steps=8, seed=5, checkpoint_sha256="ab" * 32,
                           provenance={"model_step": 60})
    assert layer.source.shape == (170, 300, 1) and layer.scale == 1.0 and layer.tiling == "plain"
    p = layer.provenance
    assert (p["source"], p["model"], p["kind"], p["seed"], p["steps"], p["temperature"]) == ("texture", "texture", "texture", 5, 8, 1.0)
    assert (p["width"], p["height"], p["canvas"], p["seamless"], p["model_step"]) == (300, 170, [300, 170], True, 60)
    assert p["checkpoint_sha256"] == "ab" * 32
    pixels = torch.from_numpy(np.asarray(layer.source[..., 0], np.float32))[None, None] / 255
    assert seam_ratio(pixels) < 1.25
    again = canvas_texture(texture_model, 300, 170, steps=8, seed=5)
    assert np.array_equal(again.source, layer.source)  # the same seed, the same texture
    # an odd side: whole pooling blocks; beyond 2048 px: tiles of 2048; below 64: one tile of 64
    assert canvas_texture(texture_model, 65, 64, steps=1).source.shape[:2] == (64, 66)
    assert canvas_texture(texture_model, 20, 10, steps=1).source.shape[:2] == (64, 64)
    with pytest.raises(LayerSourceError, match="only a texture RBM fills a canvas"):
        canvas_texture(torch.nn.Linear(2, 2), 64, 64)


# ----------------------------------------------------------------------- the window
from test_ui import window  # noqa: E402,F401  (the studio window, as the UI tests make it)


def test_the_studio_trains_a_texture_from_one_image_shows_its_filters_dreams_it_and_fills_a_canvas(window, qtbot, tmp_path):
    from studio.jobs import JobState
    from studio.ui.canvas import model_choices

    png = tmp_path / "stripes.png"
    Image.fromarray(stripes(64)).save(png)
    window.start(str(png))  # one texture photo is the whole training set
    qtbot.waitUntil(lambda: window.is_ready and window.images_ready, timeout=60_000)
    assert len(window.session.images) == 1
    # the training page: the kind in the list, its settings
    panel = window.training_panel
    titles = [panel.kind_box.itemText(i) for i in range(panel.kind_box.count())]
    assert "Texture RBM" in titles
    page = panel.page("texture")
    labels = {p.key: p.label for p in page.form.params}
    assert (labels["hidden"], labels["filter_size"], labels["batch_size"]) == ("Filters", "Filter size (px)", "Crops per step")
    panel.set_current_kind("texture")
    page.set_values({"hidden": 6, "filter_size": 5, "epochs": 50, "batch_size": 4, "k": 1, "n_chains": 2, "seed": 1})
    page.start_button.click()
    job = page.job
    assert job is not None and job.kind == "texture"
    # its filters, live, while it trains: one tile of 5×5 per filter
    qtbot.waitUntil(lambda: job.state is JobState.RUNNING and job.step > 5 and page.mosaic.has_image, timeout=WAIT)
    filters = job.weight_filters()
    assert filters is not None and filters.shape[0] >= 5 and filters.shape[1] >= 5
    # the Dreams tab follows the run's chains, then dreams one large texture when it stops
    dreams = window.dreams
    qtbot.waitUntil(lambda: dreams.session is not None and dreams.session.latest() is not None, timeout=WAIT)
    assert dreams.session.source == "training" and dreams.chains_spin.value() == 1  # a texture's count, not a grid's
    page.stop_button.click()
    qtbot.waitUntil(lambda: dreams.session is not None and dreams.session.source == "sampler"
                    and dreams.session.kind == "texture", timeout=WAIT)
    qtbot.waitUntil(lambda: dreams.session.latest() is not None and dreams.session.steps > 2, timeout=WAIT)
    assert dreams.session.latest().pixels.shape == (1, TEXTURE_DREAM_SIDE, TEXTURE_DREAM_SIDE, 1)
    assert dreams.brush_button.isEnabled()
    dreams.temp_slider.setValue(0.8)
    qtbot.waitUntil(lambda: dreams.session.sampler.temperature == pytest.approx(0.8, abs=0.01), timeout=WAIT)
    qtbot.waitUntil(lambda: dreams.status.text().startswith("1 texture · "), timeout=WAIT)  # not "1 chains"
    # the canvas: a layer of the canvas's size, seamless, nothing scaled
    choices = [c for c in model_choices(window.session) if c.kind == "texture"]
    assert choices
    qtbot.waitUntil(lambda: window.canvas_view is not None, timeout=60_000)
    canvas_view = window.canvas_view
    width, height = canvas_view.canvas.width, canvas_view.canvas.height
    n = len(canvas_view.canvas.layers)
    canvas_view.add_model_layer(choices[0], make="fill", steps=3, seed=2)
    qtbot.waitUntil(lambda: len(canvas_view.canvas.layers) == n + 1, timeout=WAIT)
    layer = canvas_view.canvas.layers[-1]
    side = lambda v: min(max(v, 64), 2048) + min(max(v, 64), 2048) % 2  # noqa: E731
    assert layer.source.shape[:2] == (side(height), side(width)) and layer.scale == 1.0 and layer.tiling == "plain"
    assert layer.provenance["source"] == "texture" and layer.provenance["seamless"] is True


def test_the_model_layer_dialog_offers_a_texture_the_canvas_fill(qtbot, texture_model):
    from studio.app import make_application
    from studio.ui.canvas import ModelChoice, ModelLayerDialog

    make_application()
    rbm_choice = ModelChoice("Binary RBM", "rbm", object())
    texture_choice = ModelChoice("Texture RBM", "texture", texture_model)
    dialog = ModelLayerDialog([rbm_choice, texture_choice])
    qtbot.addWidget(dialog)
    makes = lambda: [dialog.make_box.itemData(i) for i in range(dialog.make_box.count())]  # noqa: E731
    assert makes() == ["mirror", "plain", "single", "frame"] and dialog.scale.isEnabled()
    dialog.model_box.setCurrentIndex(1)
    assert makes() == ["fill"] and not dialog.scale.isEnabled() and dialog.steps.value() == 40
    assert dialog.values()["make"] == "fill" and dialog.values()["choice"] is texture_choice
    dialog.model_box.setCurrentIndex(0)
    assert makes()[0] == "mirror" and dialog.steps.value() == 500


def test_the_chains_box_counts_textures_while_a_texture_rbm_trains(qtbot):
    """While a texture RBM trains, the Dreams tab's (disabled) Chains box reads what a texture
    dreams (one texture, 1-4), not a grid's 64 chains; a pixel RBM's run gets the grid's count back."""
    from studio.app import make_application
    from studio.dreams.session import TEXTURE_MAX_CHAINS
    from studio.ui.dreams import DreamsView

    make_application()
    view = DreamsView(history=5)
    qtbot.addWidget(view)
    spin = view.chains_spin
    crops = np.zeros((8, 1, 32, 32), np.uint8)  # a texture trainer's frame: its 8 persistent chains' crops
    view.show_training_frame(crops, {"job_id": 1, "kind": "texture", "title": "Texture RBM", "step": 10})
    assert view.session.source == "training" and view.session.kind == "texture"
    assert not spin.isEnabled()
    assert (spin.value(), spin.minimum(), spin.maximum()) == (1, 1, TEXTURE_MAX_CHAINS)
    assert "training run" in spin.toolTip()
    view.show_training_frame(np.zeros((16, 1, 8, 8), np.uint8), {"job_id": 2, "kind": "rbm", "title": "Binary RBM"})
    assert view.session.kind == "rbm"
    assert (spin.value(), spin.minimum(), spin.maximum()) == (64, 16, 256)
