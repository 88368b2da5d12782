"""Unsaved work is never lost without a word (issue 13, item 6).

Qt-free first (studio/autosave.py: what is unsaved, the autosave interval, recovery slots and
their locks, a real kill -9 of a process holding one), then the window (pytest-qt, offscreen):
quitting asks whenever something would be lost (Save / Discard / Cancel, Save quits only once
the project is written), the autosave writes a recovery project, a crashed session's recovery
project is offered at the next start and restores the canvas, a clean quit removes it.
No test waits on a modal dialog: QMessageBox.question is replaced, the recovery offer is a
non-modal box whose buttons are clicked.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from studio import autosave
from studio.autosave import (
    RECOVERY_NAME,
    RecoveryStore,
    UnsavedWork,
    autosave_interval_ms,
    dataset_key,
    find_orphans,
)
from studio.canvas import Canvas, Layer

ROOT = Path(__file__).resolve().parents[1]


def solid(rgb, side: int = 8) -> np.ndarray:
    a = np.empty((side, side, 3), np.uint8)
    a[...] = rgb
    return a


def job(job_id: int, step: int, state: str = "stopped", model: object = "model", title: str = "Binary RBM"):
    return SimpleNamespace(id=job_id, step=step, state=SimpleNamespace(value=state), model=model, title=title,
                           kind="rbm")


# ----------------------------------------------------------------------------- settings, folders


@pytest.mark.parametrize("value, ms", [
    (None, 180_000), ("", 180_000), ("2", 120_000), (2.5, 150_000), ("abc", 180_000), ("nan", 180_000),
    ("inf", 180_000), (float("-inf"), 180_000), ([1, 2], 180_000), (True, 180_000), ("0", 0), (-3, 0),
    ("off", 0), (" Never ", 0), (0.001, 6_000), (1e12, 24 * 60 * 60_000),
])
def test_the_autosave_interval_comes_from_a_setting_validated_at_the_boundary(value, ms):
    assert autosave_interval_ms(value) == ms


def test_the_data_folder_honours_xdg_data_home(monkeypatch, tmp_path):
    if sys.platform in ("win32", "darwin"):
        pytest.skip("XDG folders are for Linux and the BSDs")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert autosave.autosave_root() == tmp_path / "harmonium" / "autosave"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/path")  # the spec: a relative value is ignored
    assert autosave.data_dir() == Path.home() / ".local" / "share" / "harmonium"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert autosave.data_dir() == Path.home() / ".local" / "share" / "harmonium"


# ----------------------------------------------------------------------------- what is unsaved


def test_a_new_layer_is_unsaved_and_its_undo_is_not():
    canvas = Canvas(64, 64)
    work = UnsavedWork()
    work.canvas_reset(canvas.snapshot())
    assert work.reasons(canvas.snapshot(), []) == []
    canvas.add_layer(Layer(name="red", source=solid((255, 0, 0))))
    assert work.reasons(canvas.snapshot(), []) == ["The canvas has 1 layer that was never saved."]
    canvas.undo()
    assert work.reasons(canvas.snapshot(), []) == []
    canvas.resize(32, 32)  # an empty canvas, resized: nothing anyone would miss
    assert work.reasons(canvas.snapshot(), []) == []


def test_models_are_unsaved_until_a_file_holds_them_at_their_step():
    work = UnsavedWork()
    stopped = job(3, 1200)
    assert work.reasons(None, [stopped]) == ["The Binary RBM (run #3, step 1,200) has never been saved."]
    work.model_saved(3, 1200)
    assert work.reasons(None, [stopped]) == []
    stopped.step = 1300  # resumed, trained on, stopped again
    assert work.reasons(None, [stopped]) == ["The Binary RBM (run #3, step 1,300) has changed since it was saved."]
    fresh = job(4, 0)  # stopped before its first step: its random start
    no_model = job(5, 0, state="idle", model=None)
    assert work.reasons(None, [stopped, fresh, no_model]) == ["The Binary RBM (run #3, step 1,300) has changed since it was saved."]
    training = [job(6, 10, "running"), job(7, 0, "paused", model=None)]
    assert work.reasons(None, training) == ["2 models are training: they would be stopped."]
    assert work.reasons(None, training[:1]) == ["1 model is training: it would be stopped."]


def test_project_changes_since_the_last_save_or_open():
    canvas = Canvas(64, 64)
    canvas.add_layer(Layer(name="red", source=solid((255, 0, 0))))
    work = UnsavedWork()
    work.canvas_reset(Canvas(64, 64).snapshot())
    data = dataset_key(["/images"], {"size": 28})
    work.project_saved(canvas.snapshot(), [(1, 50)], data)
    jobs = [job(1, 50)]
    assert work.reasons(canvas.snapshot(), jobs, data, project_open=True) == []

    canvas.add_layer(Layer(name="blue", source=solid((0, 0, 255))))
    assert work.reasons(canvas.snapshot(), jobs, data, True) == ["The canvas has changed since the project was saved."]
    canvas.undo()
    more = jobs + [job(2, 10)]
    work.model_saved(2, 10)  # saved as a model file, but not in the project
    assert work.reasons(canvas.snapshot(), more, data, True) == [
        "Models were added to or removed from the project since it was saved."]
    other = dataset_key(["/images"], {"size": 32})
    assert work.reasons(canvas.snapshot(), jobs, other, True) == [
        "The project's images or their preparation changed since it was saved."]
    assert work.reasons(canvas.snapshot(), jobs, other, False) == []  # no project: images alone are not work

    # opening a project into a session that had models: they belong to it from now on
    work.project_saved(canvas.snapshot(), [(1, 50)], data, members=[1, 2])
    assert work.reasons(canvas.snapshot(), more, data, True) == []

    work.restored_from_recovery(canvas.snapshot(), [(1, 50)], data, in_project=True)
    assert work.reasons(canvas.snapshot(), jobs, data, True) == [
        "The work restored after the crash has not been saved yet.",
        "The Binary RBM (run #1, step 50) has never been saved."]


def test_the_fingerprint_follows_the_canvas_the_steps_and_the_images():
    canvas = Canvas(16, 16)
    data = dataset_key([], {"size": 28})
    first = UnsavedWork.fingerprint(canvas.snapshot(), [job(1, 5)], data)
    assert UnsavedWork.fingerprint(canvas.snapshot(), [job(1, 5)], data) == first
    assert UnsavedWork.fingerprint(canvas.snapshot(), [job(1, 6)], data) != first
    assert UnsavedWork.fingerprint(canvas.snapshot(), [job(1, 5)], dataset_key(["/x"], {"size": 28})) != first
    canvas.add_layer(Layer(name="red", source=solid((255, 0, 0))))
    assert UnsavedWork.fingerprint(canvas.snapshot(), [job(1, 5)], data) != first


# ----------------------------------------------------------------------------- recovery slots


def _recovery_project(path: Path, names=("red", "green"), project_path: str | None = None) -> Path:
    from studio.project import ProjectData, save_project

    canvas = Canvas(32, 32)
    for i, name in enumerate(names):
        canvas.add_layer(Layer(name=name, source=solid((80 * i, 200, 40))))
    data = ProjectData(canvas=canvas.snapshot(), meta=autosave.recovery_meta(project_path, ["test"]))
    return autosave.write_recovery(path, data)


def test_a_running_studio_s_slot_is_never_offered_a_crashed_one_is(tmp_path):
    root = tmp_path / "autosave"
    store = RecoveryStore(root)
    path = store.claim()
    _recovery_project(path)
    assert find_orphans(root) == []  # locked: its studio runs
    os.close(store._fd)  # the process is gone (the kernel drops its lock)
    store._fd = None
    found = find_orphans(root)
    assert [o.project for o in found] == [path]
    assert find_orphans(root) == []  # the finder holds it until it decides
    found[0].release()
    again = find_orphans(root)
    assert len(again) == 1
    autosave.discard(again)
    assert not path.parent.exists() and find_orphans(root) == []


def test_odd_things_in_the_autosave_folder_are_skipped_without_a_hang(tmp_path):
    root = tmp_path / "autosave"
    (root / "session-empty").mkdir(parents=True)  # crashed before its first autosave
    fifo_dir = root / "session-fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / RECOVERY_NAME)  # opening it would block forever
    (root / "session-link").symlink_to(tmp_path)  # a link is not a slot
    (root / "session-file").write_bytes(b"x")
    (root / "unrelated").mkdir()
    t0 = time.monotonic()
    assert find_orphans(root) == []
    assert time.monotonic() - t0 < 2.0
    assert not (root / "session-empty").exists() and not fifo_dir.exists()  # stale slots removed
    assert (root / "session-link").is_symlink() and tmp_path.exists() and (root / "unrelated").exists()
    assert find_orphans(tmp_path / "missing") == []


def test_set_aside_keeps_an_unopenable_recovery_file_out_of_the_offers(tmp_path):
    root = tmp_path / "autosave"
    (root / "session-bad").mkdir(parents=True)
    (root / "session-bad" / RECOVERY_NAME).write_bytes(b"not a zip at all")
    [orphan] = find_orphans(root)
    kept = autosave.set_aside(orphan)
    assert kept.read_bytes() == b"not a zip at all" and kept.parent.name == "unopenable-bad"
    assert find_orphans(root) == []


def test_adopting_a_restored_file_makes_it_ours_and_a_clean_quit_removes_it(tmp_path):
    from studio.project import open_project

    root = tmp_path / "autosave"
    (root / "session-dead").mkdir(parents=True)
    original = tmp_path / "mine.harmonium"
    original.write_bytes(b"placeholder")
    _recovery_project(root / "session-dead" / RECOVERY_NAME, project_path=str(original))
    [orphan] = find_orphans(root)
    opened = open_project(orphan.project)
    assert [layer.name for layer in opened.canvas.layers] == ["red", "green"]
    assert autosave.restored_project_path(opened.meta) == original
    store = RecoveryStore(root)
    mine = store.adopt(orphan)
    assert mine.is_file() and not (root / "session-dead").exists()
    assert find_orphans(root) == []  # ours now, locked
    store.remove()
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("meta", [None, [], {"recovery": "x"}, {"recovery": {"project_path": 3}},
                                  {"recovery": {"project_path": "relative.harmonium"}},
                                  {"recovery": {"project_path": "/nowhere/at/all.harmonium"}},
                                  {"recovery": {"project_path": "/a\0b"}}])
def test_a_recovery_file_s_project_path_is_validated(meta):
    assert autosave.restored_project_path(meta) is None


def test_kill_9_keeps_the_recovery_file_and_the_next_start_finds_it(tmp_path):
    """A real process claims a slot, autosaves and is killed with SIGKILL: while it lives its
    slot is not offered, once it is dead it is, whole."""
    root = tmp_path / "autosave"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from studio.autosave import RecoveryStore
        from test_unsaved import _recovery_project
        store = RecoveryStore(Path({str(root)!r}))
        print(_recovery_project(store.claim(), ("a", "b", "c")), flush=True)
        sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    try:
        written = Path(proc.stdout.readline().strip())
        assert written.is_file()
        assert find_orphans(root) == []  # alive
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    [orphan] = find_orphans(root)
    from studio.project import open_project

    assert orphan.project == written
    assert [layer.name for layer in open_project(written).canvas.layers] == ["a", "b", "c"]
    orphan.release()


# ----------------------------------------------------------------------------- the window

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QFileDialog, QMessageBox  # noqa: E402

from test_ui import image_folder, ready, spy_model_saves, start_tiny, window  # noqa: E402,F401  (fixtures)

WAIT = 60_000


@pytest.fixture
def canvas_window(window, qtbot):
    """The window with its Canvas tab (the engine imported), no images asked for."""
    window.start_engine()
    qtbot.waitUntil(lambda: window.canvas_view is not None, timeout=WAIT)
    return window


def answer(monkeypatch, button, asked: list | None = None):
    """QMessageBox.question answers ``button`` (and records what it was asked)."""
    def question(parent, title, text, *a, **k):
        if asked is not None:
            asked.append((title, text))
        return button

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))


def red_layer(name: str = "red") -> Layer:
    return Layer(name=name, source=solid((255, 0, 0)))


def session_dirs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "data" / "harmonium" / "autosave"
    return sorted(root.glob("session-*")) if root.exists() else []


def test_quitting_with_nothing_unsaved_asks_nothing(canvas_window, qtbot, monkeypatch):
    w = canvas_window
    asked: list = []
    answer(monkeypatch, QMessageBox.StandardButton.Cancel, asked)
    w.close()
    qtbot.waitUntil(lambda: w._close_ok, timeout=5_000)
    assert asked == [] and not w.isVisible()


def test_quit_asks_save_discard_cancel_for_a_layer(canvas_window, qtbot, monkeypatch):
    w = canvas_window
    w.canvas_view.add_layer(red_layer())
    asked: list = []
    answer(monkeypatch, QMessageBox.StandardButton.Cancel, asked)
    w.action_quit.trigger()
    assert len(asked) == 1 and w.isVisible() and not w._closing
    assert "The canvas has 1 layer that was never saved." in asked[0][1]
    assert [layer.name for layer in w.canvas_view.canvas.layers] == ["red"]
    answer(monkeypatch, QMessageBox.StandardButton.Discard, asked)
    w.close()
    qtbot.waitUntil(lambda: w._close_ok, timeout=5_000)
    assert len(asked) == 2 and not w.isVisible()


def test_save_on_quit_saves_the_project_then_quits(canvas_window, qtbot, monkeypatch, tmp_path):
    from studio.project import open_project

    w = canvas_window
    w.canvas_view.add_layer(red_layer())
    answer(monkeypatch, QMessageBox.StandardButton.Save)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))
    w.close()  # the file dialog is cancelled: nothing saved, still open
    assert w.isVisible() and w.project_path is None and not w._quit_save_pending

    target = tmp_path / "work.harmonium"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    w.close()
    assert w.isVisible()  # quits only once the file is written
    qtbot.waitUntil(lambda: w._close_ok and not w.isVisible(), timeout=WAIT)
    assert [layer.name for layer in open_project(target).canvas.layers] == ["red"]


def test_a_failed_save_on_quit_leaves_the_window_open(errors, canvas_window, qtbot, monkeypatch, tmp_path):
    w = canvas_window
    w.canvas_view.add_layer(red_layer())
    answer(monkeypatch, QMessageBox.StandardButton.Save)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(blocker / "inside.harmonium"), "")))
    w.close()
    qtbot.waitUntil(lambda: errors.last(w) is not None, timeout=WAIT)
    assert errors.last(w)[0] == "The project could not be saved"
    assert w.isVisible() and not w._closing and not w._quit_save_pending


def test_a_saved_project_quits_without_a_question_until_it_changes(canvas_window, qtbot, monkeypatch, tmp_path):
    w = canvas_window
    w.canvas_view.add_layer(red_layer())
    target = tmp_path / "p.harmonium"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    w.action_save_project.trigger()
    qtbot.waitUntil(lambda: w.project_path == target, timeout=WAIT)
    assert w.unsaved_reasons() == []
    w.canvas_view.add_layer(red_layer("second"))
    assert w.unsaved_reasons() == ["The canvas has changed since the project was saved."]
    w.canvas_view.undo()
    assert w.unsaved_reasons() == []
    asked: list = []
    answer(monkeypatch, QMessageBox.StandardButton.Cancel, asked)
    w.close()
    qtbot.waitUntil(lambda: w._close_ok, timeout=5_000)
    assert asked == []


def test_a_stopped_model_never_saved_makes_quit_ask_until_it_is_saved(ready, qtbot, monkeypatch, tmp_path):
    w = ready
    page, job = start_tiny(w, "rbm", epochs=400)
    qtbot.waitUntil(lambda: job.step >= 3, timeout=WAIT)
    w.stop_training()
    qtbot.waitUntil(lambda: job.state.finished and not w.busy_threads(), timeout=WAIT)
    reasons = w.unsaved_reasons()
    assert reasons == [f"The Binary RBM (run #{job.id}, step {job.step:,}) has never been saved."]
    asked: list = []
    answer(monkeypatch, QMessageBox.StandardButton.Cancel, asked)
    w.close()
    assert len(asked) == 1 and reasons[0] in asked[0][1] and w.isVisible()

    model_file = tmp_path / "rbm.safetensors"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(model_file), "")))
    model_saves = spy_model_saves(monkeypatch)
    w.save_model()
    qtbot.waitUntil(lambda: model_file in model_saves, timeout=WAIT)
    assert w.unsaved_reasons() == []
    w.close()
    qtbot.waitUntil(lambda: w._close_ok, timeout=10_000)
    assert len(asked) == 1  # not asked again


def test_the_autosave_writes_a_recovery_project_and_a_clean_quit_removes_it(canvas_window, qtbot, monkeypatch,
                                                                             tmp_path):
    from studio.project import open_project

    w = canvas_window
    assert w._autosave_timer.isActive() and w._autosave_timer.interval() == 180_000  # the default, 3 min
    assert w.autosave_now() is False and session_dirs(tmp_path) == []  # nothing unsaved: nothing written
    w.canvas_view.add_layer(red_layer())
    assert w.autosave_now() is True
    qtbot.waitUntil(lambda: w.last_autosave is not None, timeout=WAIT)
    [slot] = session_dirs(tmp_path)
    assert w.last_autosave == slot / RECOVERY_NAME
    recovered = open_project(w.last_autosave)
    assert [layer.name for layer in recovered.canvas.layers] == ["red"]
    assert recovered.meta["recovery"]["reasons"] == ["The canvas has 1 layer that was never saved."]
    assert w.autosave_now() is False  # unchanged since: not written again
    assert find_orphans(slot.parent) == []  # this studio runs: never offered

    answer(monkeypatch, QMessageBox.StandardButton.Discard)
    w.close()
    qtbot.waitUntil(lambda: w._close_ok, timeout=5_000)
    assert session_dirs(tmp_path) == []


def test_the_autosave_interval_comes_from_the_settings(qtbot, settings, tmp_path, monkeypatch):
    from studio.jobs import Session
    from studio.ui.main_window import MainWindow

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for value, active, ms in ((0.5, True, 30_000), ("off", False, None), ("garbage", True, 180_000)):
        settings.setValue("autosave/minutes", value)
        w = MainWindow(Session(), settings=settings)
        qtbot.addWidget(w)
        assert w._autosave_timer.isActive() is active
        if ms is not None:
            assert w._autosave_timer.interval() == ms


def _crash_leftover(tmp_path: Path, names=("red", "green"), project_path: str | None = None) -> Path:
    """What a studio killed after an autosave leaves: an unlocked slot with a recovery file."""
    slot = tmp_path / "data" / "harmonium" / "autosave" / "session-crashed"
    slot.mkdir(parents=True)
    return _recovery_project(slot / RECOVERY_NAME, names, project_path)


def test_after_a_crash_the_autosave_is_offered_and_restores_the_layers(window, image_folder, qtbot, monkeypatch,
                                                                      tmp_path):
    original = tmp_path / "mine.harmonium"
    original.write_bytes(b"the project the work belonged to")
    _crash_leftover(tmp_path, project_path=str(original))
    window.start(str(image_folder))
    qtbot.waitUntil(lambda: window.recovery_box is not None and window.recovery_box.isVisible(), timeout=WAIT)
    box = window.recovery_box
    assert "did not quit properly" in box.text()
    [restore] = [b for b in box.buttons() if b.text() == "Restore"]
    restore.click()
    view = window.canvas_view
    qtbot.waitUntil(lambda: [layer.name for layer in view.canvas.layers] == ["red", "green"], timeout=WAIT)
    assert window.project_path == original  # Save Project writes where the work belonged
    assert window.unsaved_reasons()[0] == "The work restored after the crash has not been saved yet."
    [slot] = session_dirs(tmp_path)  # the crashed slot became this studio's own
    assert slot.name != "session-crashed" and (slot / RECOVERY_NAME).is_file()
    assert window.last_autosave == slot / RECOVERY_NAME

    answer(monkeypatch, QMessageBox.StandardButton.Discard)
    window.close()
    qtbot.waitUntil(lambda: window._close_ok, timeout=10_000)
    assert session_dirs(tmp_path) == []
    assert original.read_bytes() == b"the project the work belonged to"


@pytest.mark.parametrize("choice, kept", [("Discard", False), ("Not Now", True)])
def test_the_offer_can_be_discarded_or_kept_for_later(window, image_folder, qtbot, tmp_path, choice, kept):
    path = _crash_leftover(tmp_path)
    window.start(str(image_folder))
    qtbot.waitUntil(lambda: window.recovery_box is not None and window.recovery_box.isVisible(), timeout=WAIT)
    layers_before = window.canvas_view.canvas.snapshot()
    [button] = [b for b in window.recovery_box.buttons() if b.text() == choice]
    button.click()
    assert window.recovery_box is None and window.canvas_view.canvas.snapshot() is layers_before
    assert path.is_file() is kept
    assert len(find_orphans(path.parent.parent)) == int(kept)


def test_an_unreadable_autosave_is_reported_and_set_aside(errors, window, image_folder, qtbot, tmp_path):
    path = _crash_leftover(tmp_path)
    path.write_bytes(path.read_bytes()[:200])  # cut short by the crash of the disk
    window.start(str(image_folder))
    qtbot.waitUntil(lambda: window.recovery_box is not None and window.recovery_box.isVisible(), timeout=WAIT)
    window.answer_recovery("restore")
    qtbot.waitUntil(lambda: errors.last(window) is not None, timeout=WAIT)
    title, message = errors.last(window)
    assert title == "The autosaved work could not be restored" and "unopenable-crashed" in message
    assert window.canvas_view.canvas.layers == ()
    assert find_orphans(tmp_path / "data" / "harmonium" / "autosave") == []  # not offered again
    assert (tmp_path / "data" / "harmonium" / "autosave" / "unopenable-crashed" / RECOVERY_NAME).is_file()


def test_save_on_quit_while_training_pauses_saves_the_model_then_quits(ready, qtbot, monkeypatch, tmp_path):
    from studio.jobs import JobState
    from studio.project import open_project

    w = ready
    page, job = start_tiny(w, "rbm", epochs=400)
    qtbot.waitUntil(lambda: job.step >= 3, timeout=WAIT)
    asked: list = []
    answer(monkeypatch, QMessageBox.StandardButton.Save, asked)
    target = tmp_path / "training.harmonium"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), "")))
    w.close()
    assert asked and "1 model is training: it would be stopped." in asked[0][1]
    assert job.state is JobState.PAUSED  # the file holds the model as it ends
    qtbot.waitUntil(lambda: w._close_ok, timeout=WAIT)
    opened = open_project(target)
    assert [m.kind for m in opened.models] == ["rbm"]
    assert opened.models[0].checkpoint.meta["trainer"]["step"] == job.step
