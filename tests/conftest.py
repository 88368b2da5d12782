"""Shared test set-up: Qt runs without a display, and nothing a test saves lands in the
developer's own data folder (recovery files, autosaves, the journal of saves in flight)."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
_DATA = tempfile.mkdtemp(prefix="harmonium-tests-data-")
os.environ["XDG_DATA_HOME"] = _DATA
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)
# The engine's paths from the plain float32 reference, not from a timing of this machine
# (models/calibrate.py): tests that want a fast path inject a calibration.
os.environ["HARMONIUM_CALIBRATION"] = "off"

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _ctrl_c_raises():
    """Ctrl+C raises KeyboardInterrupt in every test, however the suite was started: a shell
    that runs a command in the background (`cmd &` without job control) starts it with SIGINT
    ignored, and then the tests that send themselves a real SIGINT saw nothing happen."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        yield
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        yield


class ShownErrors:
    """The errors each window or canvas view showed during a test, recorded by wrapping their
    ``show_error`` / ``_error`` (the production classes keep no record for tests)."""

    def __init__(self) -> None:
        self.shown: list[tuple[object, str, str]] = []

    def last(self, source: object) -> tuple[str, str] | None:
        """(title, message) of the last error ``source`` showed, or None."""
        for who, title, message in reversed(self.shown):
            if who is source:
                return title, message
        return None


@pytest.fixture
def errors(monkeypatch) -> ShownErrors:
    """Record every error a ``MainWindow`` or ``CanvasView`` shows: ``errors.last(window)``."""
    from studio.ui.canvas import CanvasView
    from studio.ui.main_window import MainWindow

    spy = ShownErrors()
    for cls, name in ((MainWindow, "show_error"), (CanvasView, "_error")):
        real = getattr(cls, name)

        def wrapper(self, title: str, message: str, _real=real) -> None:
            spy.shown.append((self, title, message))
            _real(self, title, message)

        monkeypatch.setattr(cls, name, wrapper)
    return spy


@pytest.fixture
def settings(tmp_path):
    """The studio's settings in a temporary INI file (never the developer's own)."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def make_main_window(qtbot, settings, monkeypatch, tmp_path):
    """Makes a shown `MainWindow` on a fresh 28 px session: ``make_main_window(score_options=...,
    size=(w, h), answer=QMessageBox.StandardButton.X)``. Autosaves and recovery files go to a
    temporary data folder; at the end every thread is stopped and a closing question answered
    with `answer` (default Yes), so no test blocks on a dialog or leaves a thread behind."""
    from PySide6.QtWidgets import QMessageBox

    from studio.app import make_application
    from studio.dataset import Preprocess
    from studio.jobs import Session
    from studio.ui.main_window import MainWindow

    made = []

    def make(*, score_options, size=None, answer=None):
        monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
        make_application()
        session = Session(Preprocess(size=28))
        session.score_options = score_options  # ended runs are scored in the background: quickly here
        w = MainWindow(session, settings=settings)
        if size is not None:
            w.resize(*size)
        w.show()
        qtbot.waitExposed(w)
        made.append((w, answer if answer is not None else QMessageBox.StandardButton.Yes))
        return w

    yield make
    for w, reply in made:
        w.controller.shutdown(timeout=5.0)
        monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, _r=reply, **k: _r))
        w.close()
        qtbot.waitUntil(lambda: not w.busy_threads(), timeout=10_000)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (as the studio's jobs run; results do not depend on the
    machine's cores), the previous count restored after it. Files use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
