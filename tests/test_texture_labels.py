"""The labels that say what a texture RBM is (issue 15): the Dreams tab's Chains box counts its
large seamless textures (one, up to four), not a grid's 64 chains, and gives the grid its count
back; the training page's filters say what a texture filter is (a small patch placed at every
position, not one hidden unit's view of the whole image) and what was done to its photos."""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

from models.conv_rbm import ConvRBM, ConvRBMConfig

pytest.importorskip("pytestqt")


def test_the_dreams_tab_counts_a_textures_chains_and_gives_the_grid_its_count_back(qtbot):
    from models.rbm import BernoulliRBM, RBMConfig
    from studio.app import make_application
    from studio.dreams.session import TEXTURE_MAX_CHAINS
    from studio.ui.dreams import DreamsView

    make_application()
    view = DreamsView(history=5)
    qtbot.addWidget(view)
    spin = view.chains_spin
    assert (spin.value(), spin.minimum(), spin.maximum()) == (64, 16, 256)
    torch.manual_seed(0)
    texture = ConvRBM(ConvRBMConfig(channels=1, n_filters=2, filter_size=3, image_shape=(1, 32, 32)))
    assert view.set_model(texture, {"title": "stripes"})
    qtbot.waitUntil(lambda: view.session is not None and view.session.model is texture, timeout=10_000)
    assert view.session.settings.n_chains == 1
    assert (spin.value(), spin.minimum(), spin.maximum()) == (1, 1, TEXTURE_MAX_CHAINS)
    assert "seamless textures dream side by side" in spin.toolTip() and "not a grid of chains" in spin.toolTip()
    spin.setValue(2)  # the person asks for two textures
    qtbot.waitUntil(lambda: view.session.settings.n_chains == 2, timeout=10_000)
    rbm = BernoulliRBM(RBMConfig(n_visible=16, n_hidden=4, image_shape=(1, 4, 4)))
    assert view.set_model(rbm, {"title": "rbm"})
    qtbot.waitUntil(lambda: view.session is not None and view.session.model is rbm, timeout=10_000)
    assert (spin.value(), spin.minimum(), spin.maximum()) == (64, 16, 256)
    assert view.session.settings.n_chains == 64 and "16-256" in spin.toolTip()
    view._stop_runner()


def test_the_training_page_says_what_a_texture_filter_is_and_what_its_photos_became(qtbot):
    from models.rbm import BernoulliRBM, RBMConfig
    from studio.app import make_application
    from studio.jobs import JobState, Session, TrainingJob
    from studio.ui.training_panel import TrainingPage
    from studio.ui.workers import JobsController

    make_application()
    session = Session(device="cpu")
    controller = JobsController(session)
    page = TrainingPage("texture", "Texture RBM", session, controller)
    qtbot.addWidget(page)
    model = ConvRBM(ConvRBMConfig(channels=1, n_filters=4, filter_size=5, image_shape=(1, 64, 64)))
    job = TrainingJob(model=model, kind="texture", title="Texture RBM")
    job._state = JobState.DONE
    job.texture_note = "gravel.jpg: its middle 2000×2000 square downscaled to 1024 px"
    page.add_job(job)
    title = page.mosaic_title.text()
    assert "Texture filters" in title and "one tile per hidden unit" not in title
    assert "a 5×5 px patch the model looks for, and paints, at every position of the texture" in title
    assert "Trained on gravel.jpg: its middle 2000×2000 square downscaled to 1024 px" in title
    assert page.mosaic.has_image
    rbm_page = TrainingPage("rbm", "Binary RBM", session, controller)
    qtbot.addWidget(rbm_page)
    rbm_job = TrainingJob(model=BernoulliRBM(RBMConfig(n_visible=16, n_hidden=4, image_shape=(1, 4, 4))), kind="rbm")
    rbm_job._state = JobState.DONE
    rbm_page.add_job(rbm_job)
    assert "one tile per hidden unit" in rbm_page.mosaic_title.text()
