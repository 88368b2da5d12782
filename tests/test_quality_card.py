"""The quality card: held-out images in the session, scoring a run that ended, the report in the
checkpoint, and what the card and the Dreams banner say (studio.quality_card, the training page).

Tiny data (20 images of 16×16, of which 4 are held out), tiny models, quick scores.
"""
from __future__ import annotations

import math
import os
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from studio.dataset import Preprocess
from studio.jobs import JobState, Session, TrainingJob
from studio.quality_card import BAR_CEILING, BAR_FLOOR, bar_positions, card, card_for, dreams_banner, flags

TINY = {"hidden": 16, "epochs": 3, "batch_size": 4, "n_chains": 8, "seed": 1}
QUICK = {"steps": 50, "n_samples": 32, "ais_runs": 8, "ais_betas": 200}


def report(**kw):
    from models.quality import QualityReport

    base = dict(mmd2=0.06, floor=0.05, ceiling=0.4, diversity=0.95, memorisation=1.05, bandwidth=3.0,
                n_samples=64, n_train=16, n_heldout=4, log_likelihood=-61.3, seconds=2.5)
    return QualityReport(**{**base, **kw})


def collapsed():
    return report(mmd2=0.11, diversity=0.01)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "pictures"
    out.mkdir()
    rng = np.random.default_rng(0)
    for i in range(20):
        arr = np.zeros((20, 20), np.uint8)
        arr[rng.integers(0, 10):, rng.integers(0, 10):] = 255
        Image.fromarray(arr).save(out / f"img_{i:02d}.png")
    return out


@pytest.fixture
def session(folder) -> Session:
    s = Session(Preprocess(size=16))
    s.open_images([str(folder)])
    s.score_options = dict(QUICK)
    return s


# ----------------------------------------------------------------------------- the card, Qt-free


def test_card_reads_a_report_in_plain_words():
    healthy = card(report(), "ready", "", 1200)
    assert healthy.status == "ready" and healthy.visible and not healthy.warnings and not healthy.flags
    values = {r.key: r.value for r in healthy.rows}
    assert values["mmd2"].startswith("0.06 · 1.2× the floor")
    assert values["diversity"].startswith("0.95") and values["memorisation"].startswith("1.05")
    assert values["log_likelihood"] == "-61.3 nats per image"
    assert "4 held-out images" in values["scored"] and "2.5 s" in values["scored"]
    assert all(r.tooltip.endswith(".") for r in healthy.rows)  # one sentence each
    assert "step 1,200" in healthy.headline and "rough" in healthy.caveat  # 4 held-out images
    assert healthy.bar_labels == ("floor 0.05", "noise 0.4")

    bad = card(collapsed(), "ready", "", 1200)
    assert bad.flags == {"collapsed"} and len(bad.warnings) == 1 and "collapsed" in bad.warnings[0]
    assert [r.key for r in bad.rows if r.warn] == ["diversity"]
    copies = card(report(memorisation=0.05, log_likelihood=None), "ready")
    assert copies.flags == {"copies"} and "copy your training images" in copies.warnings[0]
    assert "log_likelihood" not in {r.key for r in copies.rows}  # not a binary RBM
    noise = card(report(mmd2=0.5), "ready")
    assert noise.flags == {"noise"} and "noise" in noise.warnings[0]

    assert card(None, "scoring").headline == "Quality: scoring…"
    assert not card(None, "unavailable").visible and not card().visible  # an autoencoder; nothing yet
    none = card(None, "", "No quality card: 6 images are too few")
    assert none.status == "none" and "too few" in none.text()
    later = card(report(), "ready", "", 100, current_step=300)
    assert "step 100" in later.note and "scored again" in later.note


def test_bar_is_a_log_scale_from_floor_to_noise():
    assert bar_positions(report(mmd2=0.05)) == pytest.approx((BAR_FLOOR, BAR_FLOOR, BAR_CEILING))
    assert bar_positions(report(mmd2=0.4))[1] == pytest.approx(BAR_CEILING)
    mid = math.sqrt(0.05 * 0.4)  # the geometric mean sits halfway
    assert bar_positions(report(mmd2=mid))[1] == pytest.approx((BAR_FLOOR + BAR_CEILING) / 2)
    assert bar_positions(report(mmd2=0.01))[1] < BAR_FLOOR  # better than the floor: left of it
    assert bar_positions(report(mmd2=9.0))[1] == 1.0  # worse than noise: at the right end
    assert bar_positions(report(floor=0.0, mmd2=0.2))[1] == pytest.approx(BAR_FLOOR + (BAR_CEILING - BAR_FLOOR) / 2)
    assert bar_positions(report(ceiling=0.01)) is None  # no scale to draw


def test_dreams_banner_only_for_collapse_or_copies():
    assert dreams_banner(None) is None and dreams_banner(report()) is None
    assert dreams_banner(report(mmd2=0.5)) is None  # noise-like: the card says it, no banner
    text = dreams_banner(collapsed())
    assert text.startswith("These dreams have collapsed: nearly all chains show the same image.")
    assert "quality card" in text
    assert "copy your training images" in dreams_banner(report(memorisation=0.1))
    assert flags(report(memorisation=0.1, diversity=0.1)) == {"collapsed", "copies"}
    assert flags(collapsed().to_dict()) == {"collapsed"}  # a report read back from a checkpoint


# ----------------------------------------------------------------------------- the session, headless


def test_the_session_holds_images_out_and_a_run_is_scored_saved_and_read_back(session, tmp_path, monkeypatch):
    import torch

    import models.quality as quality
    from models.checkpoint import read_metadata
    from models.factory import build

    split = session.scoring_set()
    assert split is session.scoring_set()  # made once per loaded set
    assert len(split.heldout_index) == 4 and len(split.train_index) == 16  # 10 %, at least 4
    assert set(split.heldout_index).isdisjoint(split.train_index)
    assert sorted([*split.heldout_index, *split.train_index]) == list(range(20))
    trained_on = []

    def factory(options, data, device):
        trained_on.append(data.clone())
        return build(options, data, device)

    session.trainer_factory = factory
    job = session.new_job("rbm", TINY)
    assert job.scoring_set is split and not job.wants_score  # not run yet
    events = []
    job.events.quality.connect(lambda j: events.append("quality"))
    job.start()
    assert list(job.iterate())[-1].kind == "done" and job.state is JobState.DONE
    # It trained on the 16 training images only: none of the held-out ones.
    data = trained_on[0]
    assert data.shape == (16, 1, 16, 16)
    assert torch.equal(data, torch.from_numpy(session.images.images[split.train_index]))

    assert job.wants_score
    rep = job.score()
    assert job.quality is rep and job.quality_status == "ready" and job.quality_step == job.step
    assert events.count("quality") == 2  # "scoring", then the report
    assert not job.wants_score  # once per step
    assert (rep.n_heldout, rep.n_train, rep.n_samples) == (4, 16, 32)
    values = [rep.mmd2, rep.floor, rep.ceiling, rep.diversity, rep.memorisation, rep.log_likelihood]
    assert all(math.isfinite(v) for v in values)
    assert 0 <= rep.floor < rep.ceiling and rep.mmd2 >= 0 and rep.log_likelihood < 0
    assert job.update().quality is rep and job.update().quality_status == "ready"

    path = session.save_model(job, tmp_path / "m.safetensors")
    extra = read_metadata(path)["extra"]
    assert extra["quality"] == rep.to_dict() and extra["quality_step"] == job.step

    # Opened: its card comes from the file, nothing is recomputed.
    monkeypatch.setattr(quality, "score_model", lambda *a, **k: pytest.fail("the card was recomputed"))
    opened = session.open_model(path)
    assert opened.quality == rep and opened.quality_status == "ready" and opened.quality_step == opened.step
    assert not opened.wants_score and opened.score() == rep
    assert card_for(opened.quality_info()).rows == card(rep, "ready", "", job.step).rows


def test_an_opened_model_without_a_card_is_scored_against_matching_images_only(session, tmp_path):
    job = session.new_job("rbm", TINY)
    job.start()
    list(job.iterate())
    path = session.save_model(job, tmp_path / "plain.safetensors")  # not scored: no card in it
    opened = session.open_model(path)
    assert opened.quality is None and opened.wants_score
    rep = opened.score()
    assert rep is not None and opened.quality_status == "ready"
    # Saving the opened model (its file is copied) keeps the new card, and its training state.
    from models.checkpoint import read_metadata

    out = session.save_model(opened, tmp_path / "copy.safetensors")
    meta = read_metadata(out)
    assert meta["extra"]["quality"] == rep.to_dict() and meta["trainer"]
    assert session.open_model(out).quality == rep

    other = Session(Preprocess(size=20))  # images of another size: no card
    other.open_images([str(session.sources[0])])
    foreign = other.open_model(path)
    assert foreign.scoring_set is None and not foreign.wants_score
    assert "open images of this model's size" in foreign.quality_info()["quality_note"]


def test_small_sets_stopped_runs_and_autoencoders(folder, tmp_path):
    small = Session(Preprocess(size=16))
    small.open_images([str(p) for p in sorted(folder.glob("*.png"))[:6]])
    split = small.scoring_set()
    assert not split.has_heldout and len(split.train()) == 6  # trains on all of them
    job = small.new_job("rbm", {**TINY, "batch_size": 2})
    job.start()
    list(job.iterate())
    assert job.state is JobState.DONE and not job.wants_score and job.score() is None
    info = job.quality_info()
    assert info["quality_status"] == "" and "too few" in info["quality_note"] and "at least 8" in info["quality_note"]
    assert card_for(info).status == "none"

    session = Session(Preprocess(size=16))
    session.open_images([str(folder)])
    job = session.new_job("rbm", {**TINY, "epochs": 50})
    job.start()
    assert job.step_once() is not None
    job.stop()  # before the first epoch ended: nothing worth a score
    assert job.state is JobState.STOPPED and not job.wants_score
    job.resume()
    while not job.series("epoch"):
        job.step_once()
    job.stop()
    assert job.wants_score  # stopped after an epoch

    ae = session.new_job("ae", {"latent": 2, "epochs": 1, "batch_size": 4})
    ae.start()
    list(ae.iterate())
    assert not ae.wants_score and ae.quality_info()["quality_status"] == "unavailable"
    assert not card_for(ae.quality_info()).visible


# ----------------------------------------------------------------------------- the training page


@pytest.fixture
def page(qtbot):
    pytest.importorskip("pytestqt")
    from studio.app import make_application
    from studio.ui.training_panel import TrainingPage
    from studio.ui.workers import JobsController

    make_application()
    session = Session()
    controller = JobsController(session)
    p = TrainingPage("rbm", "Binary RBM", session, controller)
    controller.updated.connect(p.on_update)  # what the training panel does for its pages
    p.resize(460, 900)
    p.show()
    qtbot.waitExposed(p)
    yield p
    from studio.ui.workers import wait_background

    wait_background(10.0)


def finished_job(step: int = 1200) -> TrainingJob:
    from models.rbm import BernoulliRBM, RBMConfig

    job = TrainingJob(model=BernoulliRBM(RBMConfig(n_visible=16, n_hidden=4, image_shape=(1, 4, 4))),
                      kind="rbm", title="Binary RBM")
    job._state = JobState.DONE
    job._step_hint = step
    return job


def test_the_card_shows_the_numbers_and_the_warnings(page, qtbot, tmp_path):
    job = finished_job()
    job.set_quality(collapsed(), 1200)
    page.add_job(job)
    qc = page.quality_card
    assert qc.isVisible() and qc.card.status == "ready"
    assert qc.value_text("mmd2").startswith("0.11 · 2.2× the floor")
    assert qc.value_text("diversity").startswith("0.01") and qc.value_text("log_likelihood").startswith("-61.3")
    assert "The samples have collapsed" in qc.warnings_text() and qc.warnings.isVisible()
    assert "#ffb74d" in qc.warnings.styleSheet()  # the warning colour
    assert qc.row_labels["diversity"][0].toolTip().startswith("How varied the dreams are")
    assert qc.bar.isVisible() and qc.bar.positions is not None
    # The dot sits between the floor and noise ticks, in pixels too.
    floor_x, noise_x = qc.bar._x(qc.bar.positions[0]), qc.bar._x(qc.bar.positions[2])
    assert floor_x < qc.bar.model_x() < noise_x
    # What it looks like (checked by eye when it was built): the page with its card.
    page.grab().save(str(tmp_path / "card.png"))

    healthy = finished_job()
    healthy.set_quality(report(), 1200)
    page.add_job(healthy)
    assert qc.card.status == "ready" and qc.warnings_text() == "" and not qc.warnings.isVisible()
    assert qc.value_text("diversity").startswith("0.95")

    ae_page_job = finished_job()
    ae_page_job.kind = "ae"
    page.add_job(ae_page_job)
    assert not qc.isVisible()  # an autoencoder has no card


def test_scoring_runs_off_the_ui_thread_and_shows_scoring_meanwhile(page, qtbot, monkeypatch, session):
    import models.quality as quality

    on_ui, release = [], threading.Event()

    def spy(model, train, heldout, **kw):
        on_ui.append(threading.current_thread() is threading.main_thread())
        assert (len(train), len(heldout)) == (16, 4)
        release.wait(20)
        return collapsed()

    monkeypatch.setattr(quality, "score_model", spy)
    job = finished_job()
    job.scoring_set = session.scoring_set()
    job._epoch_series["recon_error"] = ([1], [0.1])
    page.add_job(job)
    assert page.controller.score(job)
    assert page.quality_card.card.status == "scoring"  # at once, before any score
    assert "scoring…" in page.quality_card.headline.text()
    qtbot.waitUntil(lambda: bool(on_ui), timeout=10_000)
    assert page.quality_card.card.status == "scoring"  # the UI thread is free meanwhile
    with qtbot.waitSignal(page.controller.scored, timeout=20_000):
        release.set()
    assert on_ui == [False]
    assert page.quality_card.card.status == "ready" and "collapsed" in page.quality_card.warnings_text()
    assert not page.controller.score(job)  # once per step


@pytest.mark.parametrize("kind", ["rbm", "grbm", "vae", "hybrid"])
def test_the_studio_forms_defaults_train_what_the_cli_defaults_train(tmp_path, kind):
    """The training page's untouched form gives the model and training settings that
    `harmonium train` chooses from the data (the form once retyped older defaults: a Gaussian
    RBM at learning rate 0.005, a hybrid with 200 RBM epochs whatever the set's size)."""
    from models.factory import Options, build
    from studio.jobs import hyperparameters

    out = tmp_path / "pics"
    out.mkdir()
    rng = np.random.default_rng(1)
    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(out / f"p{i:02d}.png")
    s = Session(Preprocess(size=28))
    s.open_images([str(out)])
    form = {p.key: p.default for p in hyperparameters(kind)}
    studio = build(s.options_for(kind, form), torch.from_numpy(s.images.images))
    cli = build(Options(kind=kind, image_shape=tuple(s.images.shape), frame_every=10), torch.from_numpy(s.images.images))
    a, b = studio.config.to_dict(), cli.config.to_dict()
    a.pop("seed"), b.pop("seed")
    assert a == b
    assert sum(p.numel() for p in studio.model.parameters()) == sum(p.numel() for p in cli.model.parameters())
