"""The studio window (pytest-qt, offscreen) and its Qt-free core (studio.jobs).

Tiny data (20 images of 16×16), tiny models, short runs: the whole file runs in well under a
minute on two cores (most of it is importing torch once).
"""
from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.dataset import Preprocess
from studio.jobs import JobState, Session, TrainingJob, describe_error, hyperparameters

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QKeySequence  # noqa: E402
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox  # noqa: E402


TINY = {"hidden": 16, "epochs": 400, "batch_size": 5, "n_chains": 8, "seed": 1}
QUICK_SCORE = {"steps": 20, "n_samples": 32, "ais": False}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """20 small PNGs, one broken file, one text file."""
    folder = tmp_path / "pictures"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        arr = np.zeros((20, 20), np.uint8)
        arr[rng.integers(0, 10) :, rng.integers(0, 10) :] = 255
        where = folder / "sub" if i % 4 == 0 else folder
        Image.fromarray(arr).save(where / f"img_{i:02d}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def window(make_main_window):
    return make_main_window(score_options=QUICK_SCORE)


@pytest.fixture
def ready(window, image_folder, qtbot):
    """The window with the engine imported and the test folder loaded."""
    window.start(str(image_folder))
    qtbot.waitUntil(lambda: window.is_ready and window.images_ready, timeout=60_000)
    assert window.session.images is not None and len(window.session.images) == 20
    return window


def start_tiny(window, kind: str = "rbm", **params):
    page = window.training_panel.page(kind)
    window.training_panel.set_current_kind(kind)
    page.set_values({**TINY, **params})
    page.start_button.click()
    assert page.job is not None
    return page, page.job


def thread_done(worker) -> bool:
    """The QThread has finished (the controller deletes finished workers)."""
    import shiboken6

    return not shiboken6.isValid(worker) or worker.isFinished()


def drag_events(paths: list[Path], pos: QPointF | None = None):
    pos = pos if pos is not None else QPointF(20, 20)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    return mime, enter, drop


# ----------------------------------------------------------------------------- dataset panel


def test_drop_folder_fills_thumbnails_and_rejected_list(window, image_folder, qtbot):
    zone = window.dataset_panel.drop_zone
    mime, enter, drop = drag_events([image_folder])
    QApplication.sendEvent(zone, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(zone, drop)
    assert drop.isAccepted()
    qtbot.waitUntil(lambda: window.dataset_panel.thumbnail_count() == 20, timeout=10_000)
    panel = window.dataset_panel
    # The thumbnails are real pictures of the loaded images.
    index = panel.thumbnails.index(0)
    pix = panel.thumbnails.data(index, Qt.ItemDataRole.DecorationRole)
    assert not pix.isNull() and pix.width() > 0
    entries = dict(panel.rejected_entries())
    broken = str(image_folder / "broken.png")
    assert broken in entries and entries[broken]  # rejected, with a reason
    assert "ignored" in entries[str(image_folder / "notes.txt")]
    assert "20" in panel.views.tabText(0) and "2" in panel.views.tabText(1)
    assert window.session.sources == [str(image_folder)]
    assert str(image_folder) in window.recent_folders()


def test_drop_zone_refuses_drags_without_files(window):
    zone = window.dataset_panel.drop_zone
    mime = QMimeData()
    mime.setText("just some words")
    enter = QDragEnterEvent(QPoint(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(zone, enter)
    assert not enter.isAccepted()


def test_dropping_single_files_loads_just_them(window, image_folder, qtbot):
    files = sorted(image_folder.glob("img_0[1-3].png"))
    _, enter, drop = drag_events(files)
    QApplication.sendEvent(window.dataset_panel.drop_zone, enter)
    QApplication.sendEvent(window.dataset_panel.drop_zone, drop)
    qtbot.waitUntil(lambda: window.dataset_panel.thumbnail_count() == 3, timeout=10_000)
    assert window.dataset_panel.rejected_entries() == []


# ----------------------------------------------------------------------------- training


def test_start_pause_resume_stop(ready, qtbot):
    w = ready
    page, job = start_tiny(w)
    qtbot.waitUntil(lambda: job.state is JobState.RUNNING and job.step > 20, timeout=20_000)
    worker = w.controller.workers[job.id]
    assert worker.isRunning()

    page.pause_button.click()
    assert job.state is JobState.PAUSED
    time.sleep(0.1)  # the step in flight ends
    paused_at = job.step
    qtbot.wait(300)
    assert job.step == paused_at, "a paused job must not pull steps"
    assert worker.isRunning(), "the worker waits (it is not torn down) while paused"
    assert page.resume_button.isEnabled() and not page.pause_button.isEnabled()

    page.resume_button.click()
    qtbot.waitUntil(lambda: job.step > paused_at + 5, timeout=10_000)

    # The view followed: progress bar, live curves, weight filters, dreams.
    qtbot.waitUntil(lambda: page.progress.value() > 0 and bool(page.curves.metric_names), timeout=5_000)
    assert "recon_error" in page.curves.metric_names
    qtbot.waitUntil(lambda: page.mosaic.has_image, timeout=5_000)
    assert "left" in page.progress.format()

    page.stop_button.click()
    qtbot.waitUntil(lambda: thread_done(worker), timeout=2_000)
    assert job.state is JobState.STOPPED
    assert job.generator_closed
    stopped_at = job.step
    qtbot.wait(100)
    assert job.step == stopped_at
    assert page.start_button.isEnabled() and page.resume_button.isEnabled()


def test_space_toggles_the_current_job(ready, qtbot):
    w = ready
    assert w.action_toggle.shortcut() == QKeySequence("Space")
    assert w.action_open_folder.shortcut() == QKeySequence("Ctrl+O")
    assert w.action_save.shortcut() == QKeySequence("Ctrl+S")
    assert w.action_quit.shortcut() == QKeySequence("Ctrl+Q")
    page = w.training_panel.page("ae")
    w.training_panel.set_current_kind("ae")
    page.set_values({"latent": 4, "epochs": 400, "batch_size": 5})
    w.action_toggle.trigger()  # Space: start
    job = page.job
    qtbot.waitUntil(lambda: job.step > 2, timeout=20_000)
    w.action_toggle.trigger()  # Space: pause
    assert job.state is JobState.PAUSED
    w.action_toggle.trigger()  # Space: resume
    assert job.state is JobState.RUNNING
    w.action_stop.trigger()
    qtbot.waitUntil(lambda: not w.busy_threads(), timeout=2_000)


def test_two_jobs_at_once(ready, qtbot):
    w = ready
    _, rbm = start_tiny(w, "rbm")
    _, ae = start_tiny(w, "ae", latent=4)
    qtbot.waitUntil(lambda: rbm.step > 5 and ae.step > 2, timeout=30_000)
    assert len(w.controller.running_threads()) == 2
    assert {j.state for j in (rbm, ae)} == {JobState.RUNNING}
    w.stop_all_training()
    qtbot.waitUntil(lambda: not w.busy_threads(), timeout=2_000)


def test_closing_while_training_asks_then_stops_every_thread(ready, qtbot, monkeypatch):
    w = ready
    before = threading.active_count()
    page, job = start_tiny(w, "rbm")
    _, job2 = start_tiny(w, "vae", latent=2)
    qtbot.waitUntil(lambda: job.step > 5 and job2.step > 1, timeout=30_000)
    workers = list(w.controller.workers.values())

    asked = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(
        lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Cancel))
    w.close()
    assert asked and w.isVisible() and job.state is JobState.RUNNING  # cancelled: nothing stopped

    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    t0 = time.monotonic()
    w.close()
    qtbot.waitUntil(lambda: all(thread_done(t) for t in workers), timeout=1_000)
    assert time.monotonic() - t0 < 1.0
    assert not w.isVisible()
    assert job.state is JobState.STOPPED and job.generator_closed
    assert job2.state is JobState.STOPPED
    qtbot.waitUntil(lambda: threading.active_count() <= before, timeout=1_000)


def test_closing_during_a_long_step_hides_at_once_and_finishes_later(ready, qtbot, monkeypatch):
    """A step that outlasts the 1 s budget: the window goes away at once, the thread is never
    abandoned, and closing completes when the step ends."""
    from models.factory import build

    w = ready
    release = threading.Event()

    def slow_factory(options, data, device):
        trainer = build(options, data, device)
        real = trainer.train_step

        def train_step(batch):
            if trainer.step >= 3:
                release.wait(5.0)
            return real(batch)

        trainer.train_step = train_step
        return trainer

    w.session.trainer_factory = slow_factory
    page, job = start_tiny(w, "rbm")
    qtbot.waitUntil(lambda: job.step >= 3, timeout=20_000)
    worker = w.controller.workers[job.id]
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    t0 = time.monotonic()
    w.close()
    assert time.monotonic() - t0 < 1.5
    assert not w.isVisible() and worker.isRunning()  # hidden, still finishing its step
    release.set()
    qtbot.waitUntil(lambda: thread_done(worker), timeout=5_000)
    qtbot.waitUntil(lambda: w._close_ok, timeout=2_000)
    assert job.state is JobState.STOPPED and job.generator_closed


def _diverge_after(n_steps: int):
    """A trainer factory whose model goes NaN after `n_steps` steps."""
    from models.factory import build

    def factory(options, data, device):
        trainer = build(options, data, device)
        real = trainer.train_step

        def train_step(batch):
            metrics = real(batch)
            if trainer.step >= n_steps:
                metrics = dict(metrics, recon_error=float("nan"))
            return metrics

        trainer.train_step = train_step
        return trainer

    return factory


def test_error_in_a_job_reaches_the_user_and_keeps_the_last_good_model(errors, ready, qtbot):
    import torch

    w = ready
    w.session.trainer_factory = _diverge_after(30)
    page, job = start_tiny(w, "rbm")
    qtbot.waitUntil(lambda: job.state is JobState.FAILED, timeout=20_000)
    qtbot.waitUntil(lambda: errors.last(w) is not None, timeout=5_000)
    title, message = errors.last(w)
    assert "diverged" in message and "last good" in message
    boxes = [b for b in w.findChildren(QMessageBox) if b.isVisible()]
    assert any("diverged" in b.text() for b in boxes)
    assert page.error_label.isVisible() and "diverged" in page.error_label.text()
    # The model is the last good one: finite, equal to the trainer's snapshot.
    model = job.model
    assert model is not None and all(torch.isfinite(p).all() for p in model.parameters())
    good = job.trainer.good_state
    assert torch.equal(model.weight, good["weight"])
    assert w.action_save.isEnabled()
    qtbot.waitUntil(lambda: not w.busy_threads(), timeout=2_000)


def test_save_and_open_a_model(ready, qtbot, monkeypatch, tmp_path):
    import torch

    w = ready
    model_saves = spy_model_saves(monkeypatch)
    page, job = start_tiny(w, "rbm", epochs=3)
    qtbot.waitUntil(lambda: job.state is JobState.DONE, timeout=20_000)
    target = tmp_path / "models" / "tiny"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    qtbot.waitUntil(w.action_save.isEnabled, timeout=2_000)  # the worker's last word has arrived
    w.action_save.trigger()
    saved = target.with_name("tiny.safetensors")
    qtbot.waitUntil(lambda: saved in model_saves, timeout=10_000)
    assert saved.is_file() and job.path == saved

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(saved), "")))
    w.training_panel.set_current_kind("ae")
    w.action_open_model.trigger()
    qtbot.waitUntil(lambda: page.job is not job and page.job is not None, timeout=10_000)
    opened = page.job
    assert w.training_panel.current_kind == "rbm"
    assert opened.path == saved and opened.kind == "rbm"
    assert torch.equal(opened.model.weight, job.model.weight)
    assert opened.state is JobState.STOPPED and opened.can_resume
    # Its progress is the run's, as saved (issue 16: it showed "0 % · stopped" beside its step).
    assert opened.update(frame=False).total_steps == job.update(frame=False).total_steps == opened.step > 0
    qtbot.waitUntil(lambda: page.progress.format().startswith("100%"), timeout=5_000)
    assert f"step {opened.step:,}/{opened.step:,}" in page.progress.format()
    # Its history and weight filters are shown.
    assert "recon_error" in page.curves.metric_names
    assert page.mosaic.has_image
    # It can go on training where it stopped.
    step0 = opened.step
    page.set_values({"epochs": 3})
    page.resume_button.click()
    qtbot.waitUntil(lambda: opened.finished, timeout=20_000)
    assert opened.error is None and opened.step >= step0


def spy_model_saves(monkeypatch) -> list[Path]:
    """The paths the window reports as saved models, in order (a spy on its save callback)."""
    from studio.ui.main_window import MainWindow

    saves: list[Path] = []
    real = MainWindow._model_saved

    def spy(self, job, path, *rest) -> None:
        real(self, job, path, *rest)
        saves.append(path)

    monkeypatch.setattr(MainWindow, "_model_saved", spy)
    return saves


def test_opening_a_broken_model_says_why(errors, ready, qtbot, monkeypatch, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(bad), "")))
    ready.action_open_model.trigger()
    qtbot.waitUntil(lambda: errors.last(ready) is not None, timeout=10_000)
    assert "bad.safetensors" in errors.last(ready)[1]


def test_settings_persist(window, settings, qtbot, image_folder):
    from studio.ui.main_window import MainWindow

    window.dataset_panel.preprocess_form.size.setValue(20)
    qtbot.waitUntil(lambda: window.session.preprocess.size == 20, timeout=5_000)
    window.open_sources([str(image_folder)])
    qtbot.waitUntil(lambda: window.session.sources == [str(image_folder)], timeout=10_000)
    window.save_settings()
    again = MainWindow(Session(), settings=settings)
    qtbot.addWidget(again)
    assert again.session.preprocess.size == 20
    assert again.dataset_panel.preprocess_form.size.value() == 20
    assert again.recent_folders()[0] == str(image_folder)


def test_tabs_can_be_replaced(window):
    from PySide6.QtWidgets import QLabel

    assert [window.tabs.tabText(i) for i in range(window.tabs.count())] == ["Dreams", "Canvas", "Latent"]
    label = QLabel("the real canvas")
    i = window.replace_tab("Canvas", label)
    assert window.tabs.widget(i) is label and window.tab("Canvas") is label
    window.add_tab("Export", QLabel("x"))
    assert window.tabs.tabText(window.tabs.count() - 1) == "Export"


# ----------------------------------------------------------------------------- the Qt-free core


class FakeTrainer:
    """A trainer whose generator counts pulls and notes when it is closed."""

    def __init__(self, total: int = 1000, fail_at: int | None = None):
        import torch

        self.model = torch.nn.Linear(2, 2)
        self.step = 0
        self.total_steps = total
        self.elapsed = 0.0
        self.pulls = 0
        self.runs = 0
        self.closed = 0
        self.fail_at = fail_at
        self.good_state = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.good_step = 0

    def run(self):
        from models.training import TrainEvent

        self.runs += 1
        try:
            while self.step < self.total_steps:
                self.pulls += 1
                self.step += 1
                if self.fail_at is not None and self.step >= self.fail_at:
                    with __import__("torch").no_grad():
                        self.model.weight.fill_(float("nan"))
                    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
                yield TrainEvent("step", self.step, 0, self.total_steps, 1, {"loss": 1.0 / self.step}, 0.0)
            yield TrainEvent("done", self.step, 1, self.total_steps, 1, {}, 0.0)
        finally:
            self.closed += 1


def test_job_pause_pulls_nothing_and_stop_closes_the_generator():
    trainer = FakeTrainer()
    job = TrainingJob(trainer=trainer, kind="fake")
    assert job.step_once(block=False) is None and trainer.pulls == 0  # idle: nothing pulled
    job.start()
    for _ in range(3):
        assert job.step_once() is not None
    assert trainer.pulls == 3
    job.pause()
    assert job.step_once(block=False) is None
    assert job.step_once(timeout=0.05) is None
    assert trainer.pulls == 3
    job.resume()
    assert job.step_once() is not None and trainer.pulls == 4
    job.stop()  # nobody is pulling: closed at once
    assert job.state is JobState.STOPPED and job.generator_closed and trainer.closed == 1
    assert job.step_once() is None and trainer.pulls == 4
    # Stopped can resume: run() is called again and carries on from the same step.
    assert job.can_resume
    job.resume()
    assert job.step_once().step == 5 and trainer.runs == 2
    xs, ys = job.series()["loss"]
    assert list(xs) == [1, 2, 3, 4, 5]


def test_job_in_a_thread_pauses_without_spinning_and_stops_promptly():
    trainer = FakeTrainer(total=10**9)
    job = TrainingJob(trainer=trainer, kind="fake")
    job.start()

    def work():
        for _ in job.iterate():
            time.sleep(0.0005)

    t = threading.Thread(target=work)
    t.start()
    deadline = time.monotonic() + 5
    while trainer.pulls < 10 and time.monotonic() < deadline:
        time.sleep(0.005)
    job.pause()
    time.sleep(0.05)
    n = trainer.pulls
    cpu0 = time.thread_time()
    time.sleep(0.2)
    assert trainer.pulls == n
    job.resume()
    deadline = time.monotonic() + 5
    while trainer.pulls <= n and time.monotonic() < deadline:
        time.sleep(0.005)
    assert trainer.pulls > n
    t0 = time.monotonic()
    job.stop()
    t.join(1.0)
    assert not t.is_alive() and time.monotonic() - t0 < 1.0
    assert trainer.closed == 1 and job.generator_closed
    assert time.thread_time() - cpu0 < 0.5


def test_job_failure_is_a_message_and_the_model_rolls_back():
    import torch

    trainer = FakeTrainer(fail_at=4)
    job = TrainingJob(trainer=trainer, kind="fake")
    job.start()
    events = list(job.iterate())
    assert len(events) == 3
    assert job.state is JobState.FAILED
    assert "Out of memory" in job.error and "rolled back" in job.error
    assert all(torch.isfinite(p).all() for p in job.model.parameters())
    assert job.error_type == "RuntimeError"


def test_job_done_and_session_round_trip(tmp_path, image_folder):
    import torch

    session = Session(Preprocess(size=28))
    session.open_images([str(image_folder)])
    assert len(session.images) == 20 and len(session.images.rejected) == 1
    # 16 of the 20 images train (4 are held out for scoring): batches of 4 give 12 steps, past
    # the first frame (step 10).
    job = session.new_job("rbm", {**TINY, "epochs": 3, "batch_size": 4})
    assert job.state is JobState.IDLE and job.trainer is None  # built by the puller, not here
    job.start()
    events = list(job.iterate())
    assert events[-1].kind == "done" and job.state is JobState.DONE
    assert job.series("epoch")["recon_error"][0].size == 3
    update = job.update(filters=True)
    assert update.filters is not None and update.filters.dtype == np.uint8 and update.filters.ndim == 2
    assert abs(float(np.median(job.weight_filters())) - 0.5) < 0.25  # grey = a zero weight
    assert update.frame is not None
    path = session.save_model(job, tmp_path / "m.safetensors")
    opened = session.open_model(path)
    assert opened.kind == "rbm" and torch.equal(opened.model.weight, job.model.weight)
    assert opened.state is JobState.STOPPED and opened.step == job.step


def test_hyperparameters_cover_every_kind_and_map_to_options(image_folder):
    from models.kinds import KINDS

    session = Session(Preprocess(size=28))
    session.open_images([str(image_folder)])
    for kind in KINDS:
        params = hyperparameters(kind)
        keys = {p.key for p in params}
        assert {"epochs", "batch_size", "learning_rate", "seed"} <= keys
        options = session.options_for(kind, {p.key: p.default for p in params})
        assert options.kind == kind and options.epochs is None and options.seed is None
        assert options.image_shape == (1, 28, 28)
    vae = session.options_for("vae", {"beta": 4.0, "latent": 3})
    assert vae.extra == {"beta": 4.0} and vae.latent == 3


def test_helpers():
    assert "Out of memory" in describe_error(RuntimeError("CUDA out of memory"))
    assert math.isnan(float("nan"))


# ----------------------------------------------------------------------------- dreams wiring
def test_dreams_tab_follows_the_training_job_then_dreams_freely(ready, qtbot):
    """While a job trains its persistent chains stream into the Dreams tab; when it stops, the
    tab dreams freely over a copy of its model; a snapshot of the grid becomes a canvas layer."""
    dreams = ready.dreams
    page, job = start_tiny(ready, "rbm")
    qtbot.waitUntil(lambda: dreams.session is not None and dreams.session.source == "training"
                    and dreams.session.latest() is not None, timeout=20_000)
    live = dreams.session.latest().pixels
    assert live.shape[:3] == (8, 28, 28)  # the job's 8 persistent chains, as images
    import threading

    import studio.canvas.sources as layer_sources

    copied_on, real_detach = [], layer_sources.detach_model

    def spy(model, lock=None):
        copied_on.append(threading.current_thread() is threading.main_thread())
        return real_detach(model, lock)

    layer_sources.detach_model = spy
    try:
        page.stop_button.click()
        qtbot.waitUntil(lambda: dreams.session is not None and dreams.session.source == "sampler", timeout=20_000)
    finally:
        layer_sources.detach_model = real_detach
    # the copy is taken in a worker, never on the UI thread (usually once; a second time when the
    # job's last step lands after its state change)
    assert copied_on and not any(copied_on)
    assert dreams.session.model is not job.model  # a private copy: training state untouched
    first = dreams.session.latest()
    qtbot.waitUntil(lambda: dreams.session.latest() is not None and dreams.session.latest() is not first, timeout=10_000)
    n_layers = len(ready.canvas_view.canvas.layers)
    rgba, provenance = dreams.snapshot_grid()
    assert len(ready.canvas_view.canvas.layers) == n_layers + 1
    layer = ready.canvas_view.canvas.layers[-1]
    assert np.array_equal(layer.pixels, rgba)  # the very pixels of the grid on screen
    assert layer.provenance["kind"] == "rbm"


def test_an_ended_run_is_scored_off_the_ui_thread_its_card_and_the_dreams_say_so(ready, qtbot, monkeypatch):
    """Done → "scoring…" on the card while a worker scores it against the 4 held-out images →
    the numbers and the warning on the card → the Dreams tab's banner over its free dreams."""
    import models.quality as quality

    scored_on, release = [], threading.Event()
    collapsed = quality.QualityReport(mmd2=0.11, floor=0.05, ceiling=0.4, diversity=0.02, memorisation=1.1,
                                      bandwidth=3.0, n_samples=32, n_train=16, n_heldout=4, seconds=0.5)

    def spy(model, train, heldout, **kw):
        scored_on.append((threading.current_thread() is threading.main_thread(), len(train), len(heldout)))
        release.wait(20)
        return collapsed

    monkeypatch.setattr(quality, "score_model", spy)
    page, job = start_tiny(ready, "rbm", epochs=3)
    qtbot.waitUntil(lambda: bool(scored_on), timeout=30_000)
    assert job.state is JobState.DONE
    qtbot.waitUntil(lambda: page.quality_card.card is not None and page.quality_card.card.status == "scoring",
                    timeout=5_000)
    assert page.quality_card.isVisible() and "scoring…" in page.quality_card.headline.text()
    release.set()
    qtbot.waitUntil(lambda: page.quality_card.card.status == "ready", timeout=20_000)
    assert scored_on == [(False, 16, 4)]  # once, in a worker, on the images it did not train on
    assert page.quality_card.value_text("diversity").startswith("0.02")
    assert "collapsed" in page.quality_card.warnings_text()
    qtbot.waitUntil(lambda: "collapsed" in ready.dreams.quality_banner_text, timeout=20_000)
    assert ready.dreams.session.source == "sampler" and ready.dreams.session.meta["job_id"] == job.id


def test_job_updates_carry_a_state_serial_that_grows_with_every_change_of_state():
    """What lets the views tell an update made before a change of state from one made after."""
    job = TrainingJob(trainer=FakeTrainer(), kind="fake")
    serials = [job.update(frame=False).state_serial]
    for intent in (job.start, job.pause, job.resume, job.stop):
        intent()
        serials.append(job.update(frame=False).state_serial)
    assert serials == sorted(set(serials))  # strictly growing
    job.stop()  # stopped again: no change of state, no new serial
    assert job.update(frame=False).state_serial == serials[-1]


def _settle(qtbot) -> None:
    """Every background task finished and every queued callback delivered."""
    from PySide6.QtCore import QThreadPool

    for _ in range(3):
        QThreadPool.globalInstance().waitForDone(30_000)
        QApplication.processEvents()
        qtbot.wait(1)


def test_an_update_made_before_stop_but_delivered_after_it_changes_nothing(ready, qtbot, monkeypatch):
    """Regression (a flaky Dreams test): the worker's update queued before Stop reached the
    window after the window's own "stopped": the state went stopped → running → stopped, the
    model was copied and set twice and the grid could not be snapshotted until the next display
    tick; a late training frame flipped the tab back to a frozen training view. Reproduced here
    without timing: the stale update and a late frame are delivered by hand after the stop."""
    import studio.canvas.sources as layer_sources

    dreams, controller = ready.dreams, ready.controller
    page, job = start_tiny(ready, "rbm")
    qtbot.waitUntil(lambda: dreams.session is not None and dreams.session.source == "training"
                    and dreams.session.latest() is not None, timeout=20_000)
    stale = job.update(frame=True, since_frame=-1)  # made while it trains: "running", with a frame
    assert stale.state == "running" and stale.frame is not None
    states: list[str] = []
    controller.state_changed.connect(lambda jid, state: states.append(state) if jid == job.id else None)
    copies, real_detach = [], layer_sources.detach_model
    monkeypatch.setattr(layer_sources, "detach_model",
                        lambda model, lock=None: (copies.append(model), real_detach(model, lock))[1])

    page.stop_button.click()
    qtbot.waitUntil(lambda: not controller.running_threads() and job.id not in controller.workers, timeout=20_000)
    qtbot.waitUntil(lambda: dreams.session is not None and dreams.session.source == "sampler"
                    and dreams.session.latest() is not None, timeout=20_000)
    _settle(qtbot)
    free = dreams.session
    assert job.state is JobState.STOPPED and states == ["stopped"] and len(copies) == 1
    dreams._timer.stop()  # no display tick from here on: nothing below may wait for one

    controller._on_update(stale)  # the worker's update from before the stop, delivered late
    late = job.update(frame=True, since_frame=-1)  # and a training frame after it (the closing word's)
    assert late.frame is not None
    controller._on_update(late)
    dreams._run_update(stale)  # the controller's updates, straight to the Dreams tab, both ways
    dreams._run_update(late)
    _settle(qtbot)

    assert job.state is JobState.STOPPED and states == ["stopped"]  # never "running" again
    assert page._last_update.state == "stopped" and page._last_update.steps_per_second == 0
    assert len(copies) == 1  # the model was copied once, and set once
    assert dreams.session is free and free.source == "sampler"  # still dreaming freely
    got = dreams.snapshot_grid()  # at once, without a display tick
    assert got is not None
    rgba, provenance = got
    assert rgba.ndim == 3 and provenance["model"] == "rbm" and provenance["dreams_source"] == "sampler"
    dreams._timer.start()


# ----------------------------------------------------------------------------- render threads


def _canvas_render_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "canvas-render" and t.is_alive())


def test_closing_windows_leaves_no_canvas_render_thread_behind(qtbot, tmp_path, monkeypatch):
    """Each closed window used to leak its Canvas tab's render thread (issue 13, item 7)."""
    from studio.app import make_application
    from studio.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    make_application()
    before = _canvas_render_threads()
    for i in range(3):
        w = MainWindow(Session(Preprocess(size=16)),
                       settings=QSettings(str(tmp_path / f"s{i}.ini"), QSettings.Format.IniFormat))
        w.show()
        w.start_engine()
        qtbot.waitUntil(lambda: w.canvas_view is not None, timeout=60_000)
        assert _canvas_render_threads() == before + 1
        w.close()
        qtbot.waitUntil(lambda: w._close_ok, timeout=10_000)
        qtbot.waitUntil(lambda: _canvas_render_threads() == before, timeout=5_000)
        w.deleteLater()


def test_a_closed_canvas_view_stops_its_render_thread_and_renders_again_when_shown(qtbot):
    from studio.canvas import Layer
    from studio.ui.canvas import CanvasView

    before = _canvas_render_threads()
    view = CanvasView()
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    first = view.renderer_thread
    assert _canvas_render_threads() == before + 1
    view.close()
    qtbot.waitUntil(lambda: _canvas_render_threads() == before, timeout=5_000)
    assert first.stopped
    view.show()  # shown again: a fresh thread, and the picture follows the canvas
    assert view.renderer_thread is not first and _canvas_render_threads() == before + 1
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    view.add_layer(Layer(name="red", source=red))
    qtbot.waitUntil(view.is_current, timeout=10_000)
    assert tuple(view.shown_pixels[0, 0]) == (255, 0, 0, 255)
    view.close()
    qtbot.waitUntil(lambda: _canvas_render_threads() == before, timeout=5_000)


def test_a_destroyed_canvas_view_stops_its_render_thread(qtbot):
    import shiboken6

    from studio.ui.canvas import CanvasView

    before = _canvas_render_threads()
    view = CanvasView()
    thread = view.renderer_thread
    assert _canvas_render_threads() == before + 1
    shiboken6.delete(view)  # never closed, just deleted (its C++ side goes)
    qtbot.waitUntil(lambda: _canvas_render_threads() == before, timeout=5_000)
    assert thread.stopped


# ----------------------------------------------------------------------------- opening projects


def _project_file(folder: Path, sources: list[Path], bad_layer: bool = False) -> Path:
    """A project with one red layer whose images come from ``sources``; ``bad_layer`` adds a
    malformed layer entry to its manifest (skipped and reported when opened)."""
    import json
    import zipfile

    from studio.canvas import Canvas, Layer
    from studio.project import DatasetRef, ProjectData, save_project

    canvas = Canvas(32, 32)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    canvas.add_layer(Layer(name="red", source=red))
    data = ProjectData(canvas=canvas.snapshot(), dataset=DatasetRef(
        sources=[str(s) for s in sources], preprocess=Preprocess(size=28).to_dict()))
    path = save_project(folder / "p.harmonium", data)
    if bad_layer:
        with zipfile.ZipFile(path) as zf:
            members = [(info, zf.read(info)) for info in zf.infolist()]
        with zipfile.ZipFile(path, "w") as zf:
            for info, raw in members:
                if info.filename == "project.json":
                    manifest = json.loads(raw)
                    manifest["canvas"]["layers"].append([1, 2])
                    raw = json.dumps(manifest).encode()
                zf.writestr(info, raw)
    return path


@pytest.fixture
def engine_window(window, qtbot):
    window.start_engine()
    qtbot.waitUntil(lambda: window.canvas_view is not None, timeout=60_000)
    return window


@pytest.mark.parametrize("yes", [False, True])
def test_a_project_s_images_outside_its_folder_are_confirmed_before_they_are_read(engine_window, image_folder,
                                                                                    qtbot, monkeypatch, tmp_path, yes):
    w = engine_window
    folder = tmp_path / "project"
    folder.mkdir()
    path = _project_file(folder, [image_folder])
    asked = []
    loads = []
    if not yes:  # with Yes, the real loader reads them
        monkeypatch.setattr(w.session, "load", lambda *a, **k: loads.append(a) or pytest.fail("images read"))
    monkeypatch.setattr(QMessageBox, "question", staticmethod(
        lambda parent, title, text, *a, **k: asked.append((title, text, list(loads))) or
        (QMessageBox.StandardButton.Yes if yes else QMessageBox.StandardButton.No)))
    w.open_project(path)
    qtbot.waitUntil(lambda: [layer.name for layer in w.canvas_view.canvas.layers] == ["red"], timeout=30_000)
    assert len(asked) == 1 and asked[0][0] == "Read images outside the project's folder?"
    assert str(image_folder) in asked[0][1] and asked[0][2] == []  # asked before anything was read
    if yes:
        qtbot.waitUntil(lambda: w.session.sources == [str(image_folder)], timeout=30_000)
        assert len(w.session.images) == 20
    else:
        qtbot.wait(50)
        assert loads == [] and w.session.images is None and w._loader is None
        assert "1 image source outside its folder not read" in w.statusBar().currentMessage()


def test_a_project_s_own_images_are_read_without_a_question(engine_window, image_folder, qtbot, monkeypatch,
                                                             tmp_path):
    import shutil

    w = engine_window
    inside = tmp_path / "project" / "images"
    shutil.copytree(image_folder, inside)
    path = _project_file(tmp_path / "project", [inside])
    asked = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: asked.append(a)))
    w.open_project(path)
    qtbot.waitUntil(lambda: w.session.sources == [str(inside)], timeout=30_000)
    assert asked == [] and len(w.session.images) == 20


def test_a_project_s_skipped_parts_are_reported_and_the_rest_opens(errors, engine_window, qtbot, tmp_path):
    w = engine_window
    path = _project_file(tmp_path, [], bad_layer=True)
    w.open_project(path)
    qtbot.waitUntil(lambda: errors.last(w) is not None, timeout=30_000)
    title, message = errors.last(w)
    assert title == "Some of the project could not be opened"
    assert message.startswith("Skipped the layer 2: it is malformed in project.json.")
    assert message.endswith("Everything else was opened.")
    assert [layer.name for layer in w.canvas_view.canvas.layers] == ["red"]
    assert w.project_path == path and w.unsaved_reasons() == []


def test_the_studio_sweeps_what_killed_saves_left_at_start_off_the_ui_thread(window, image_folder, qtbot,
                                                                            monkeypatch, tmp_path):
    import subprocess
    import sys
    import tempfile

    import models.atomic

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    temp = tmp_path / "temp"
    stale = temp / f"harmonium-save-{dead}-abcdefgh"  # a save's work folder, its writer gone
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"\0" * 1000)
    mine = temp / f"harmonium-save-{os.getpid()}-abcdefgh"  # a writer that runs: kept
    mine.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    real, threads = models.atomic.sweep_stale, []
    monkeypatch.setattr(models.atomic, "sweep_stale",
                        lambda *a, **k: threads.append(threading.current_thread()) or real(*a, **k))
    window.start(str(image_folder))
    qtbot.waitUntil(lambda: not stale.exists(), timeout=30_000)
    assert mine.is_dir()
    assert len(threads) == 1 and threads[0] is not threading.main_thread()


def test_a_click_on_the_empty_dreams_area_takes_the_focus_so_space_is_not_typed(ready, qtbot):
    """Issue 16, item 3: edit Size, click the empty Dreams area, press Space: the field became
    " px" and training did not start."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtWidgets import QApplication

    w = ready
    toggled: list[bool] = []
    w.action_toggle.setEnabled(True)
    w.action_toggle.triggered.disconnect()  # what Space does, without starting a run here
    w.action_toggle.triggered.connect(lambda *_: toggled.append(True))
    w.tabs.setCurrentWidget(w.dreams)
    w.activateWindow()
    size = w.dataset_panel.preprocess_form.size
    size.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is size, timeout=2_000)
    before = size.text()
    empty = w.dreams.placeholder if w.dreams.placeholder.isVisible() else w.dreams
    qtbot.mouseClick(empty, Qt.MouseButton.LeftButton, pos=QPoint(5, 5))
    qtbot.waitUntil(lambda: QApplication.focusWidget() is not size, timeout=2_000)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Space)
    assert size.text() == before and toggled == [True]


def test_f1_lists_the_dreams_and_canvas_keys_too(ready):
    """Issue 16, item 8: F1 listed only the window's shortcuts."""
    sections = dict(ready.shortcut_sections())
    assert {"Window", "Dreams", "Canvas"} <= set(sections)
    window_keys = {k for k, _ in sections["Window"]}
    assert {"F1", "Space"} <= window_keys
    dreams = dict(sections["Dreams"])
    assert {"P", "S", "R", "B", "F", "C", "Ctrl+E"} <= set(dreams) and dreams["B"] == "Dream brush on / off"
    canvas_keys = {k for k, _ in sections["Canvas"]}
    assert "Ctrl+Z" in canvas_keys and len(canvas_keys) >= 5
