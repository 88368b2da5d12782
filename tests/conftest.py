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
