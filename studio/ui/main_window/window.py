"""The studio's main window: dataset dock, training dock, central tabs, menus, status bar.

The window is a view and a dispatcher of intent: the :class:`~studio.jobs.Session` holds the
state, :class:`~studio.ui.workers.JobsController` runs the jobs, loaders and file tasks run in
workers. The UI thread never waits on training, loading, saving, opening or scoring (a run
that ends is scored in the background by the controller; the Dreams tab shows a banner when
its dreams collapsed or copy the training images).

Start-up is staged so the window shows fast: the window (without torch or pyqtgraph) is built
and shown first, then :meth:`MainWindow.start` imports the model engine in the background
(torch, the model kinds, pyqtgraph) while the images load in another thread; the training panel
appears when the engine is ready (``engine_ready`` signal, :attr:`MainWindow.is_ready`).

``main_window.tabs`` is the central ``QTabWidget`` with the tabs "Dreams", "Canvas" and
"Latent", placeholders until the engine is ready; :meth:`MainWindow.replace_tab` puts the real
widget in place of a placeholder, :meth:`MainWindow.add_tab` adds one.
:meth:`MainWindow.current_job` is the job of the visible training page (its ``model``,
``trainer.sampler``...; read the model under ``job.step_lock`` while it trains).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QMessageBox,
    QStyle,
    QTabWidget,
    QToolBar,
    QWidget,
)

from studio.autosave import AUTOSAVE_MINUTES, Orphan, RecoveryStore, UnsavedWork, autosave_interval_ms
from studio.dataset import Preprocess
from studio.jobs import JobState, Session, TrainingJob
from studio.ui.dataset_panel import DatasetPanel, local_paths
from studio.ui.main_window.engine import load_engine
from studio.ui.main_window.files import ModelAndProjectFiles
from studio.ui.main_window.images import ImageSources
from studio.ui.main_window.recovery import Recovery
from studio.ui.main_window.tabs import TabWiring
from studio.ui.export_menu import ExportMenu
from studio.ui.reopen import offer_reopen
from studio.ui.settings import export_prefs, setting_json, setting_text
from studio.ui.widgets import Placeholder, app_icon, show_warning
from studio.ui.workers import JobsController, LoadWorker, owned_by, run_in_background, wait_background
from studio.worker import registered, shutdown_all


class MainWindow(ImageSources, TabWiring, ModelAndProjectFiles, Recovery, QMainWindow):
    engine_ready = Signal()
    images_loaded = Signal(object)  # ImageSet

    def __init__(self, session: Session | None = None, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session or Session()
        self.settings = settings if settings is not None else QSettings()
        export_prefs().attach(self.settings)  # the last export folder and the export scale live there
        self.controller = JobsController(self.session, self)
        self.training_panel = None  # built when the engine is ready
        self.dreams = None
        self.is_ready = False
        self.images_ready = False
        self._loader: LoadWorker | None = None
        self._loaders: set[LoadWorker] = set()
        self._pending_train: str | None = None
        self._pending_jobs: list[TrainingJob] = []
        self._closing = False
        self._close_ok = False
        self._boxes: list[QMessageBox] = []
        self.canvas_view = None  # the Canvas tab, built when the engine is ready (_install_canvas_tab)
        self.latent_view = None  # the Latent tab, built when the engine is ready (_install_latent_tab)
        self.denoise_dialog = None  # the last "Denoise through the autoencoder" result shown
        # Unsaved work (studio.autosave decides, the window asks): what quitting would lose,
        # the autosave slot, the crashed sessions offered at start.
        self.unsaved = UnsavedWork()
        self.recovery = RecoveryStore()
        self.recovery_offer: list[Orphan] = []
        self.recovery_box: QMessageBox | None = None
        self.last_autosave: Path | None = None
        self._autosaved: tuple | None = None  # UnsavedWork.fingerprint of the recovery file written
        self._autosave_inflight = False
        self._autosave_warned = False
        self._quit_confirmed = False  # the person chose; closeEvent asks no more
        self._quit_save_pending = False  # Save was chosen on quitting: the save is on its way
        self.setWindowTitle("Harmonium Studio")
        self.setWindowIcon(app_icon())
        self.setObjectName("HarmoniumMainWindow")
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)
        self.setAcceptDrops(True)

        # central tabs ------------------------------------------------------------
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.setObjectName("CentralTabs")
        self.tabs.addTab(Placeholder("Dreams", "Starting the model engine…"), "Dreams")
        self.tabs.addTab(Placeholder("Canvas", "Starting the model engine…"), "Canvas")
        self.tabs.addTab(Placeholder("Latent", "Starting the model engine…"), "Latent")
        self.setCentralWidget(self.tabs)

        # docks -------------------------------------------------------------------
        self.dataset_panel = DatasetPanel()
        self.dataset_dock = QDockWidget("Dataset", self)
        self.dataset_dock.setObjectName("DatasetDock")
        self.dataset_dock.setWidget(self.dataset_panel)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dataset_dock)
        self.training_dock = QDockWidget("Training", self)
        self.training_dock.setObjectName("TrainingDock")
        self.training_dock.setWidget(Placeholder("Training", "Starting the model engine…"))
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.training_dock)
        self.resizeDocks([self.dataset_dock, self.training_dock], [330, 460], Qt.Orientation.Horizontal)

        # status bar ----------------------------------------------------------------
        self.device_label = QLabel("Device: …")
        self.device_label.setToolTip("Where the models train")
        self.rate_label = QLabel("idle")
        self.rate_label.setToolTip("Training speed, all running jobs together")
        self.rate_label.setMinimumWidth(150)
        self.jobs_label = QLabel("")
        sb = self.statusBar()
        sb.addPermanentWidget(self.jobs_label)
        sb.addPermanentWidget(self.rate_label)
        sb.addPermanentWidget(self.device_label)
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(500)
        self._status_timer.timeout.connect(self._refresh_status)
        self._status_timer.start()

        self._make_actions()
        self._make_project_actions()
        self._connect()
        self._restore_settings()
        self._autosave_timer = QTimer(self)
        self._autosave_timer.timeout.connect(self.autosave_now)
        interval = autosave_interval_ms(self.settings.value("autosave/minutes", AUTOSAVE_MINUTES))
        if interval:
            self._autosave_timer.start(interval)

    # ===================================================================== set-up
    def _action(self, text: str, slot, shortcut=None, tip: str = "", icon=None) -> QAction:
        a = QAction(text, self)
        if icon is not None:
            a.setIcon(self.style().standardIcon(icon))
        if shortcut is not None:
            seqs = shortcut if isinstance(shortcut, list) else [shortcut]
            a.setShortcuts([QKeySequence(s) for s in seqs])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            shown = a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            a.setToolTip(f"{tip} ({shown})" if shown else tip)
            a.setStatusTip(tip)
        a.triggered.connect(slot)
        self.addAction(a)
        return a

    def _make_actions(self) -> None:
        SP = QStyle.StandardPixmap
        self.action_open_folder = self._action("&Open Folder…", self.open_folder_dialog, QKeySequence.StandardKey.Open,
                                               "Open a folder of images", SP.SP_DirOpenIcon)
        self.action_demo = self._action("Open the &Demo Set", lambda: self.open_sources([]), None,
                                        "Load the built-in demo images")
        self.action_open_model = self._action("Open &Model…", self.open_model_dialog, "Ctrl+Shift+O",
                                              "Open a trained model (.safetensors)", SP.SP_DialogOpenButton)
        self.action_save = self._action("&Save Model", self.save_model, QKeySequence.StandardKey.Save,
                                        "Save the current model", SP.SP_DialogSaveButton)
        self.action_save_as = self._action("Save Model &As…", lambda: self.save_model(ask=True), "Ctrl+Shift+S",
                                           "Save the current model under a new name")
        self.action_quit = self._action("&Quit", self.close, "Ctrl+Q", "Quit Harmonium")
        self.action_quit.setMenuRole(QAction.MenuRole.QuitRole)
        self.action_toggle = self._action("Start / &Pause", self.toggle_training, "Space",
                                          "Start, pause or resume the current model", SP.SP_MediaPlay)
        self.action_stop = self._action("S&top", self.stop_training, "Ctrl+.",
                                        "Stop the current model (it is kept)", SP.SP_MediaStop)
        self.action_stop_all = self._action("Stop &All", self.stop_all_training, "Ctrl+Shift+.",
                                            "Stop every training job")
        self.action_next_kind = self._action("&Next Model Kind", lambda: self._step_kind(1), "Ctrl+PgDown",
                                             "Show the next model kind")
        self.action_prev_kind = self._action("P&revious Model Kind", lambda: self._step_kind(-1), "Ctrl+PgUp",
                                             "Show the previous model kind")
        self.action_cancel_load = self._action("Cancel Loading", self.cancel_loading, "Esc", "Stop loading images")
        self.action_fullscreen = self._action("&Full Screen", self._toggle_fullscreen,
                                              QKeySequence.StandardKey.FullScreen, "Full screen on / off")
        self.action_shortcuts = self._action("&Keyboard Shortcuts", self._show_shortcuts, "F1",
                                             "List the keyboard shortcuts")
        self.action_about = self._action("&About Harmonium", self._about)
        self.tab_actions = []
        for i in range(self.tabs.count()):
            act = self._action(f"Show {self.tabs.tabText(i)}", lambda _=False, i=i: self.tabs.setCurrentIndex(i),
                               f"Ctrl+{i + 1}", f"Show the {self.tabs.tabText(i)} tab")
            self.tab_actions.append(act)

        mb = self.menuBar()
        self.file_menu = m = mb.addMenu("&File")
        m.addAction(self.action_open_folder)
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        m.addAction(self.action_demo)
        m.addSeparator()
        m.addAction(self.action_open_model)
        m.addAction(self.action_save)
        m.addAction(self.action_save_as)
        m.addSeparator()
        self.export_menu = m.addMenu("&Export")  # every export, and the export scale (studio.ui.export_menu)
        self.export_entries = ExportMenu(self, self.export_menu)
        m.addSeparator()
        m.addAction(self.action_quit)
        m = mb.addMenu("&Training")
        for a in (self.action_toggle, self.action_stop, self.action_stop_all, None,
                  self.action_next_kind, self.action_prev_kind):
            m.addSeparator() if a is None else m.addAction(a)
        m = mb.addMenu("&View")
        m.addAction(self.dataset_dock.toggleViewAction())
        m.addAction(self.training_dock.toggleViewAction())
        m.addSeparator()
        for a in self.tab_actions:
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.action_fullscreen)
        m = mb.addMenu("&Help")
        m.addAction(self.action_shortcuts)
        m.addAction(self.action_about)

        tb = QToolBar("Main", self)
        tb.setObjectName("MainToolBar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for a in (self.action_open_folder, self.action_open_model, self.action_save, None,
                  self.action_toggle, self.action_stop):
            tb.addSeparator() if a is None else tb.addAction(a)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        self.toolbar = tb

    def _connect(self) -> None:
        dp = self.dataset_panel
        dp.load_requested.connect(lambda sources: offer_reopen(self, sources) or self.open_sources(sources))
        dp.open_folder_requested.connect(self.open_folder_dialog)
        dp.preprocess_changed.connect(self._preprocess_edited)
        dp.cancel_requested.connect(self.cancel_loading)
        self.session.events.images.connect(self._images_changed)
        self.session.events.current_job.connect(lambda _job: self._refresh_actions())
        self.controller.failed.connect(self._job_failed)
        self.controller.state_changed.connect(lambda *_: self._refresh_actions())

    # ===================================================================== start-up
    def start(self, folder: str | list[str] | None = None, train: str | None = None) -> None:
        """Begin the background work: import the engine, load ``folder`` (when None, what was
        loaded last time, or the demo set: :meth:`last_sources`), and with ``train`` start that
        model kind when both are ready."""
        self._pending_train = train
        self.start_engine()
        self.check_recovery()
        self.sweep_stale_files()
        sources = ([folder] if isinstance(folder, str) else list(folder)) if folder else self.last_sources()
        self.open_sources(sources)

    def start_engine(self) -> None:
        if self.is_ready:
            return
        run_in_background(load_engine, on_result=self._on_engine_ready, on_error=self._engine_failed)

    def _engine_failed(self, exc: BaseException) -> None:
        self.show_error("The model engine could not start", f"{type(exc).__name__}: {exc}")

    def _on_engine_ready(self, info: dict[str, Any]) -> None:
        if self._closing:
            return
        from studio.ui.dreams import DreamsView
        from studio.ui.training_panel import TrainingPanel

        panel = TrainingPanel(self.session, self.controller)
        self.training_panel = panel
        self.training_dock.setWidget(panel)
        self.device_label.setText(f"Device: {info['device']}".replace("(1 threads)", "(1 thread)"))
        self.device_label.setToolTip(f"Models train on {info['device']}; torch uses {info['threads']} "
                                     "thread(s), leaving a core for the window")
        self._install_dreams_tab(DreamsView(self.session))
        self._install_canvas_tab()
        self._install_latent_tab()
        panel.current_changed.connect(lambda _kind: self._refresh_actions())
        self._restore_training_settings()
        self.is_ready = True
        for job in self._pending_jobs:
            self._show_opened_job(job)
        self._pending_jobs.clear()
        self._refresh_actions()
        self.engine_ready.emit()
        if self.recovery_offer and self.recovery_box is None:
            self._offer_recovery()
        self._maybe_autostart()

    def _maybe_autostart(self) -> None:
        kind = self._pending_train
        if not kind or not self.is_ready or not self.images_ready:
            return
        self._pending_train = None
        assert self.training_panel is not None
        if not self.training_panel.set_current_kind(kind):
            known = ", ".join(self.training_panel.pages)
            self.show_error("Unknown model kind", f"There is no model kind '{kind}'. Known kinds: {known}.")
            return
        self.training_panel.current_page.start()

    # ===================================================================== the document
    @property
    def project_path(self) -> Path | None:
        """The document's project file (where it was last saved or opened from)."""
        return self.session.project_path

    # ===================================================================== tabs
    def add_tab(self, title: str, widget: QWidget, index: int | None = None) -> int:
        i = self.tabs.insertTab(index if index is not None else self.tabs.count(), widget, title)
        return i

    def replace_tab(self, title: str, widget: QWidget) -> int:
        """Put ``widget`` in the tab called ``title`` (added when there is none)."""
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i) == title:
                current = self.tabs.currentIndex()
                old = self.tabs.widget(i)
                self.tabs.removeTab(i)
                self.tabs.insertTab(i, widget, title)
                self.tabs.setCurrentIndex(current)
                if old is not None:
                    old.deleteLater()
                return i
        return self.add_tab(title, widget)

    def tab(self, title: str) -> QWidget | None:
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i) == title:
                return self.tabs.widget(i)
        return None


    # drops anywhere on the window
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        self.dataset_panel.drop_zone.dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dataset_panel.drop_zone.dragMoveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            if not offer_reopen(self, paths):  # an exported PNG dropped back: reopen what made it
                self.open_sources(paths)


    # ===================================================================== messages
    def show_error(self, title: str, message: str) -> None:
        """A clear, non-blocking message (training goes on behind it)."""
        self.statusBar().showMessage(title, 10000)
        show_warning(self, title, message, self._boxes)

    def shortcut_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Every keyboard shortcut, by where it works: (section, [(keys, what it does)]): the
        window's actions, then each tab's own actions and shortcuts (the Dreams tab's keys carry
        their description as `whatsThis`)."""
        from PySide6.QtGui import QAction, QShortcut

        def entries(widget, own: bool) -> list[tuple[str, str]]:
            out: list[tuple[str, str]] = []
            actions = widget.actions() if own else widget.findChildren(QAction)
            for a in actions:
                for seq in a.shortcuts():
                    keys = seq.toString(QKeySequence.SequenceFormat.NativeText)
                    if keys and a.text():
                        out.append((keys, a.text().replace("&", "")))
            if not own:
                for sc in widget.findChildren(QShortcut):
                    keys = sc.key().toString(QKeySequence.SequenceFormat.NativeText)
                    if keys and sc.whatsThis():
                        out.append((keys, sc.whatsThis()))
            return list(dict.fromkeys(out))

        sections = [("Window", entries(self, True))]
        for title, view in (("Dreams", self.dreams), ("Canvas", self.canvas_view), ("Latent", self.latent_view)):
            if view is not None:
                found = entries(view, False)
                if found:
                    sections.append((title, found))
        return sections

    def _show_shortcuts(self) -> None:
        rows = []
        for title, found in self.shortcut_sections():
            rows.append(f"<tr><td colspan=2><br><b><u>{title}</u></b></td></tr>")
            rows += [f"<tr><td><b>{keys}</b></td><td>&nbsp;&nbsp;{what}</td></tr>" for keys, what in found]
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", "<table>" + "".join(rows) + "</table>",
                          QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    def _about(self) -> None:
        QMessageBox.about(self, "About Harmonium",
                          "<h3>Harmonium Studio</h3><p>Train small generative models (RBMs, autoencoders, "
                          "VAEs) on your own images and paint with their dreams.</p>")

    def _toggle_fullscreen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()

    # ===================================================================== settings
    def _restore_settings(self) -> None:
        s = self.settings
        geo = s.value("window/geometry")
        if isinstance(geo, QByteArray) and not geo.isEmpty():
            self.restoreGeometry(geo)
        else:
            self._default_geometry()
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        try:
            tab = int(s.value("window/tab", 0) or 0)
        except (TypeError, ValueError):
            tab = 0
        if 0 <= tab < self.tabs.count():
            self.tabs.setCurrentIndex(tab)
        raw = setting_json(s, "dataset/preprocess", None, dict)
        if raw:
            try:
                self.session.preprocess = Preprocess.from_dict(raw)
            except (TypeError, ValueError, OverflowError):
                pass  # a stale or damaged value: keep the default
        self.dataset_panel.set_preprocess(self.session.preprocess)

    def _default_geometry(self) -> None:
        """First run: 1440×900, or 92% of a smaller screen, centred."""
        screen = QApplication.primaryScreen()
        if screen is None:
            self.resize(1440, 900)
            return
        avail = screen.availableGeometry()
        w, h = min(1440, int(avail.width() * 0.92)), min(900, int(avail.height() * 0.92))
        self.setGeometry(avail.x() + (avail.width() - w) // 2, avail.y() + (avail.height() - h) // 2, w, h)

    def _restore_training_settings(self) -> None:
        panel = self.training_panel
        if panel is None:
            return
        for kind, page in panel.pages.items():
            raw = setting_json(self.settings, f"training/params/{kind}", None, dict)
            if raw:
                try:
                    page.set_values(raw)
                except (TypeError, ValueError, OverflowError):
                    pass
        kind = setting_text(self.settings, "training/kind")
        if kind:
            panel.set_current_kind(str(kind))

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/tab", self.tabs.currentIndex())
        s.setValue("dataset/preprocess", json.dumps(self.session.preprocess.to_dict()))
        if self.training_panel is not None:
            s.setValue("training/kind", self.training_panel.current_kind)
            for kind, page in self.training_panel.pages.items():
                s.setValue(f"training/params/{kind}", json.dumps(page.values()))
        s.sync()

    # ===================================================================== closing
    def _ask_quit(self, reasons: list[str]) -> str:
        """Save / Discard / Cancel when quitting would lose something: ``save``, ``discard`` or
        ``cancel`` (Yes, as older callers answer, means quit anyway)."""
        B = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self, "Quit Harmonium?",
            "Quitting now would lose:\n\n" + "\n".join(f"• {r}" for r in reasons[:12])
            + ("\n• …" if len(reasons) > 12 else "") + "\n\nSave the project before quitting?",
            B.Save | B.Discard | B.Cancel, B.Save)
        if answer == B.Save:
            return "save"
        if answer in (B.Discard, B.Yes):
            return "discard"
        return "cancel"

    def _save_then_quit(self) -> None:
        """Save was chosen on quitting: pause the training (the file holds the models as they
        end), save the project in the background, quit only once it is written; a failed or
        cancelled save leaves the window open."""
        if self.canvas_view is None:
            self.statusBar().showMessage("The model engine is still starting: try again in a moment.", 5000)
            return
        path = self._project_target(ask=False)
        if path is None:
            self.statusBar().showMessage("Not quitting: the project was not saved.", 5000)
            return
        paused = [job for job in self.controller.active_jobs() if job.state is JobState.RUNNING]
        for job in paused:
            self.controller.pause(job)
        self._quit_save_pending = True

        def saved() -> None:
            self._quit_save_pending = False
            self._quit_confirmed = True
            self.close()

        def failed() -> None:
            self._quit_save_pending = False
            if paused:
                self.statusBar().showMessage("Not quitting. Training is paused: resume it with Space.", 10000)

        self._start_project_save(path, then=saved, failed=failed)

    def busy_threads(self) -> list:
        """Threads of ours still running (training workers, loaders)."""
        return self.controller.running_threads() + [w for w in self._loaders if w.isRunning()]

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if self._close_ok:
            event.accept()
            return
        if not self._closing:
            if self._quit_save_pending:
                self.statusBar().showMessage("Saving the project before quitting…", 5000)
                event.ignore()
                return
            reasons = [] if self._quit_confirmed else self.unsaved_reasons()
            if reasons:
                choice = self._ask_quit(reasons)
                if choice != "discard":
                    event.ignore()
                    if choice == "save":
                        self._save_then_quit()
                    return
            self._closing = True
            for view in (self.dreams, self.latent_view):
                if view is not None:
                    view.stop_following()  # no sampler or explorer starts while the window closes
            self.save_settings()
            self._status_timer.stop()
            self._autosave_timer.stop()
            for loader in list(self._loaders):
                loader.cancel()
            for box in list(self._boxes):
                box.close()
            for orphan in self.recovery_offer:
                orphan.release()
            self.recovery_offer = []
        # Every thread this window owns (training workers, loaders, the tabs' render, sampler,
        # decode and export threads) is asked to stop at once and given one second in all.
        deadline = time.monotonic() + 1.0
        stopped = shutdown_all(1.0, where=owned_by(self))
        pool_idle = wait_background(max(0.0, deadline - time.monotonic()))
        if stopped and pool_idle:
            self._closed_cleanly()
            event.accept()
            return
        # A step, a save or the engine import is still finishing: hide now, quit when done.
        event.ignore()
        self.hide()
        QTimer.singleShot(50, self._finish_close)

    def _closed_cleanly(self) -> None:
        """Every thread of ours is done (an autosave in flight included): the recovery slot goes."""
        self._close_ok = True
        self.recovery.remove()

    def _finish_close(self) -> None:
        if registered(owned_by(self)) or not wait_background(0.0):
            QTimer.singleShot(50, self._finish_close)
            return
        self._closed_cleanly()
        self.close()
        app = QApplication.instance()
        if app is not None and not any(w.isVisible() for w in app.topLevelWidgets()):
            app.quit()
