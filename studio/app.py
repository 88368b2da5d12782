"""Starting the studio (the window itself lives in studio/ui).

    python main.py [FOLDER] [--train MODEL]

opens the window with FOLDER loaded (when none is given, the folders loaded last time, else the built-in demo set); ``--train
MODEL`` starts training that model kind as soon as the images and the model engine are ready.

Start-up is ordered for a fast first picture: only Qt (and superqt) are imported before the
window is shown; torch, the model kinds and pyqtgraph are imported in a worker thread afterwards
(``MainWindow.start``), while the images load in another. ``HARMONIUM_STARTUP_PROBE=1`` prints
how long that took (``bench/ui_latency.py`` uses it) and quits once the window is exposed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

#: How often (seconds) Python hands the GIL between threads. The default 5 ms lets a training
#: thread that runs Python code hold the UI thread up for 5 ms at a time; 1 ms keeps the event
#: loop's stalls short at a negligible cost to training (see bench/ui_latency.py).
SWITCH_INTERVAL = 0.001

ORGANIZATION = "Harmonium"
APPLICATION = "Harmonium Studio"


def _process_age() -> float | None:
    """Seconds since this process started (Linux), for the start-up probe."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def parse_args(argv: list[str]) -> argparse.Namespace:
    from models import kinds  # the kinds' records: no torch imported

    p = argparse.ArgumentParser(prog="harmonium", description="Open the Harmonium studio.")
    p.add_argument("folder", nargs="?", help="folder of images to open (default: the folders loaded last time, else the demo set)")
    p.add_argument("--train", metavar="MODEL", help=f"start training MODEL at once ({', '.join(kinds.keys())})")
    return p.parse_args(argv)


def make_application(argv0: str = "harmonium"):
    """The QApplication, named for QSettings, themed, with the app icon."""
    from PySide6.QtWidgets import QApplication

    from studio.ui.widgets import app_icon, apply_theme

    app = QApplication.instance()
    if app is None:
        app = QApplication([argv0])
        apply_theme(app)
    app.setOrganizationName(ORGANIZATION)
    app.setOrganizationDomain("harmonium.art")
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    app.setWindowIcon(app_icon())
    return app


class _StartupProbe:
    """Prints the time to the window's first expose, then quits (HARMONIUM_STARTUP_PROBE=1)."""

    def __init__(self, window, t_entry: float) -> None:
        from PySide6.QtCore import QEvent, QObject

        self.t_entry = t_entry
        self.window = window
        probe = self

        class Filter(QObject):
            def eventFilter(self, obj, event):  # noqa: N802
                if event.type() == QEvent.Type.Expose and obj.isExposed():
                    probe.exposed()
                return False

        self.filter = Filter()
        self.done = False

    def install(self) -> None:
        handle = self.window.windowHandle()
        if handle is not None:
            handle.installEventFilter(self.filter)

    def exposed(self) -> None:
        if self.done:
            return
        self.done = True
        from PySide6.QtCore import QTimer

        age = _process_age()
        since_entry = time.perf_counter() - self.t_entry
        print(f"HARMONIUM_SHOWN since_process_start={age if age is not None else float('nan'):.3f} "
              f"since_run_studio={since_entry:.3f}", flush=True)
        if os.environ.get("HARMONIUM_STARTUP_PROBE") == "ready":
            def ready():
                print(f"HARMONIUM_READY since_run_studio={time.perf_counter() - self.t_entry:.3f}", flush=True)
                self.window.close()

            if self.window.is_ready and self.window.images_ready:
                ready()
            else:
                def check():
                    if self.window.is_ready and self.window.images_ready:
                        ready()
                    else:
                        QTimer.singleShot(20, check)

                QTimer.singleShot(20, check)
        else:
            QTimer.singleShot(0, self.window.close)


def _settings():
    """The user's settings (QSettings, native format), or an ini file named by
    ``HARMONIUM_SETTINGS`` (scripts, screenshots); the start-up probe uses a throw-away one so
    it never writes the user's."""
    from PySide6.QtCore import QSettings

    path = os.environ.get("HARMONIUM_SETTINGS")
    if not path and os.environ.get("HARMONIUM_STARTUP_PROBE"):
        import tempfile

        path = os.path.join(tempfile.mkdtemp(prefix="harmonium-probe-"), "settings.ini")
    return QSettings(path, QSettings.Format.IniFormat) if path else QSettings()


def run_studio(argv: list[str]) -> int:
    t_entry = time.perf_counter()
    args = parse_args(argv)
    sys.setswitchinterval(SWITCH_INTERVAL)
    app = make_application(sys.argv[0] if sys.argv else "harmonium")

    from PySide6.QtCore import QTimer

    from studio.ui.main_window import MainWindow

    window = MainWindow(settings=_settings())
    probe = _StartupProbe(window, t_entry) if os.environ.get("HARMONIUM_STARTUP_PROBE") else None
    if probe is not None:
        window.create()  # the native window exists: watch its first expose
        probe.install()
    window.show()
    folder = os.path.abspath(args.folder) if args.folder else None
    QTimer.singleShot(0, lambda: window.start(folder, train=args.train))
    return app.exec()
