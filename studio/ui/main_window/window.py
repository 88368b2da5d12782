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
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QStyle,
    QTabWidget,
    QToolBar,
    QWidget,
)

from models import kinds  # the kinds' records: no torch imported
from studio.autosave import (
    AUTOSAVE_MINUTES,
    Orphan,
    RecoveryStore,
    UnsavedWork,
    autosave_interval_ms,
    dataset_key,
    discard,
    find_orphans,
    recovery_meta,
    restored_project_path,
    set_aside,
    write_recovery,
)
from studio.dataset import Preprocess
from studio.jobs import JobState, Session, TrainingJob
from studio.ui.settings import setting_folder, setting_json, setting_text
from studio.ui.dataset_panel import DatasetPanel, local_paths
from studio.ui.widgets import Placeholder, app_icon, show_warning
from studio.ui.workers import JobsController, LoadWorker, owned_by, run_in_background, wait_background
from studio.worker import registered, shutdown_all

MAX_RECENT = 8
MODEL_FILTER = "Harmonium models (*.safetensors);;All files (*)"


def load_engine() -> dict[str, Any]:
    """Import torch and the model kinds, warm them up; runs in a worker thread at start-up.

    Torch's default thread count comes from the process's thread policy
    (`models.device.default_threads`: a core is left for the UI thread); training jobs take
    theirs from the same policy (`models.device.job_threads`). ``HARMONIUM_TORCH_THREADS``
    overrides both.
    """
    import gc

    # Importing torch makes ~350,000 long-lived objects; each full collection meanwhile walks
    # them all (up to 0.3 s, holding the GIL, so the window freezes). Pause the collector for
    # the import, then freeze what exists: later full collections skip it (~2 ms instead).
    gc.disable()
    try:
        info = _load_engine()
    finally:
        gc.freeze()
        gc.enable()
    return info


def _load_engine() -> dict[str, Any]:
    import torch

    from models.device import default_threads

    threads = default_threads()
    torch.set_num_threads(threads)
    import pyqtgraph  # noqa: F401 - imported here so the UI thread never pays for it

    import models.checkpoint  # noqa: F401
    from models.device import default_device, describe_device

    # The first optimiser imports torch._dynamo (seconds): pay it now, not at the first Start.
    p = torch.zeros(1, requires_grad=True)
    torch.optim.SGD([p], lr=0.1)
    torch.optim.Adam([p], lr=0.1)
    for record in kinds.KINDS.values():  # every kind's modules, here rather than on the UI thread
        record.load()
    return {"device": describe_device(default_device()), "threads": threads}


class MainWindow(QMainWindow):
    engine_ready = Signal()
    images_loaded = Signal(object)  # ImageSet

    def __init__(self, session: Session | None = None, settings: QSettings | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session or Session()
        self.settings = settings if settings is not None else QSettings()
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
        self._latent_shown: tuple[int, int] | None = None  # (job id, step) the Latent tab explores
        self._dreams_wanted: tuple[int, int] | None = None  # (job id, step) the Dreams tab dreams over
        self.project_path: Path | None = None  # where the project was last saved or opened from
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
        dp.load_requested.connect(self.open_sources)
        dp.open_folder_requested.connect(self.open_folder_dialog)
        dp.preprocess_changed.connect(self._preprocess_edited)
        dp.cancel_requested.connect(self.cancel_loading)
        self.session.events.connect(self._session_event)
        self.controller.failed.connect(self._job_failed)
        self.controller.state_changed.connect(lambda *_: self._refresh_actions())

    # ===================================================================== start-up
    def start(self, folder: str | list[str] | None = None, train: str | None = None) -> None:
        """Begin the background work: import the engine, load ``folder`` (the demo set when
        None), and with ``train`` start that model kind when both are ready."""
        self._pending_train = train
        self.start_engine()
        self.check_recovery()
        self.sweep_stale_files()
        sources = [folder] if isinstance(folder, str) else list(folder or [])
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
        from studio.ui.dreams_view import DreamsView
        from studio.ui.training_panel import TrainingPanel

        panel = TrainingPanel(self.session, self.controller)
        self.training_panel = panel
        self.training_dock.setWidget(panel)
        self.device_label.setText(f"Device: {info['device']}".replace("(1 threads)", "(1 thread)"))
        self.device_label.setToolTip(f"Models train on {info['device']}; torch uses {info['threads']} "
                                     "thread(s), leaving a core for the window")
        self._install_dreams_tab(DreamsView())
        self._install_canvas_tab()
        self._install_latent_tab()
        self.dreams.snapshotToCanvas.connect(self._dream_to_canvas)
        for page in panel.pages.values():
            page.job_changed.connect(lambda job, p=page: self._page_job_changed(p, job))
            page.frame_ready.connect(self._frame_ready)
        panel.current_changed.connect(lambda _kind: self._page_job_changed(panel.current_page, panel.current_page.job))
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

    # ===================================================================== images
    def open_folder_dialog(self) -> None:
        start = setting_folder(self.settings, "dataset/last_dir")
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of images", str(start))
        if folder:
            self.open_sources([folder])

    def open_sources(self, sources: list[str], preprocess: Preprocess | None = None) -> None:
        """Load ``sources`` (files and folders; the demo set when empty) in a worker."""
        if self._closing:
            return
        if self._loader is not None:
            self._loader.cancel()  # superseded: its result will be ignored
        pp = preprocess or self.dataset_panel.preprocess_form.preprocess(self.session.preprocess)
        loader = LoadWorker(self.session, sources, pp, self)
        loader.progress.connect(lambda d, t, ld=loader: ld is self._loader and self.dataset_panel.show_loading(d, t))
        loader.loaded.connect(lambda images, srcs, ld=loader: self._on_loaded(ld, images, srcs))
        loader.failed.connect(lambda msg, ld=loader: self._on_load_failed(ld, msg))
        loader.cancelled.connect(lambda ld=loader: ld is self._loader and self.dataset_panel.hide_loading())
        loader.finished.connect(lambda ld=loader: self._loader_finished(ld))
        self._loader = loader
        self._loaders.add(loader)
        if sources:
            label = ", ".join(Path(s).name or s for s in sources[:2]) + ("…" if len(sources) > 2 else "")
        else:
            label = "the demo set"
        self.dataset_panel.show_loading_started(label)
        self.statusBar().showMessage(f"Loading {label}…")
        loader.start()

    def cancel_loading(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            self.statusBar().showMessage("Loading cancelled", 3000)

    def _loader_finished(self, loader: LoadWorker) -> None:
        self._loaders.discard(loader)
        if loader is self._loader:
            self._loader = None
        loader.deleteLater()

    def _on_loaded(self, loader: LoadWorker, images, sources: list[str]) -> None:
        if loader is not self._loader or self._closing:
            return
        self.session.set_images(images, sources)
        if self.dreams is not None:
            self.dreams.set_dataset_images(images.images)
        if sources:
            self._remember_sources(sources)
        self.statusBar().showMessage(
            f"{len(images)} images loaded, {len(images.rejected)} rejected", 5000)

    def _on_load_failed(self, loader: LoadWorker, message: str) -> None:
        if loader is not self._loader:
            return
        self.dataset_panel.show_error(f"Could not load the images: {message}")
        self.show_error("Could not load the images", message)

    def _preprocess_edited(self, pp: Preprocess) -> None:
        self.session.set_preprocess(pp)
        self.settings.setValue("dataset/preprocess", json.dumps(pp.to_dict()))
        if self.images_ready or self.session.images is not None:
            self.open_sources(self.session.sources, pp)

    def _session_event(self, name: str, payload: Any) -> None:
        if name == "images":
            self.dataset_panel.show_images(payload, self.session.source_label)
            self.setWindowTitle(f"Harmonium Studio — {self.session.source_label} ({len(payload)} images)")
            self.images_ready = True
            self.images_loaded.emit(payload)
            self._maybe_autostart()

    def _remember_sources(self, sources: list[str]) -> None:
        folders = []
        for s in sources:
            p = Path(s)
            folders.append(str(p if p.is_dir() else p.parent))
        recent = [f for f in self.recent_folders() if f not in folders]
        recent = (folders + recent)[:MAX_RECENT]
        self.settings.setValue("dataset/recent", json.dumps(recent))
        self.settings.setValue("dataset/last_dir", folders[0])

    def recent_folders(self) -> list[str]:
        return [v for v in setting_json(self.settings, "dataset/recent", [], list) if isinstance(v, str)]

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.recent_folders()
        if not recent:
            a = self.recent_menu.addAction("No recent folders")
            a.setEnabled(False)
            return
        for i, folder in enumerate(recent):
            a = self.recent_menu.addAction(f"&{i + 1}  {folder}")
            a.triggered.connect(lambda _=False, f=folder: self.open_sources([f]))
        self.recent_menu.addSeparator()
        clear = self.recent_menu.addAction("Clear the List")
        clear.triggered.connect(lambda: self.settings.setValue("dataset/recent", "[]"))

    # drops anywhere on the window
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        self.dataset_panel.drop_zone.dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dataset_panel.drop_zone.dragMoveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.open_sources(paths)

    # ===================================================================== training
    def current_page(self):
        return self.training_panel.current_page if self.training_panel is not None else None

    def current_job(self) -> TrainingJob | None:
        page = self.current_page()
        return page.job if page is not None else None

    def toggle_training(self) -> None:
        page = self.current_page()
        if page is not None:
            page.toggle()
        self._refresh_actions()

    def stop_training(self) -> None:
        page = self.current_page()
        if page is not None:
            page.stop()

    def stop_all_training(self) -> None:
        for job in self.controller.active_jobs():
            self.controller.stop(job)

    def _step_kind(self, delta: int) -> None:
        if self.training_panel is not None:
            self.training_panel.step_kind(delta)

    def _page_job_changed(self, page, job) -> None:
        if self.training_panel is not None and page is self.training_panel.current_page:
            self._dream_with(job)
            self._explore_with(job)
        self._refresh_actions()

    # ===================================================================== dreams
    def _install_dreams_tab(self, view) -> None:
        """The Dreams tab (studio.ui.dreams_view): the training job's chains while it trains,
        free-running chains over its model otherwise; snapshots go to the Canvas."""
        self.dreams = view
        view.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 5000))
        if self.session.images is not None:
            view.set_dataset_images(self.session.images.images)
        self.replace_tab("Dreams", view)
        self.controller.state_changed.connect(self._job_state_for_dreams)
        self.controller.scored.connect(self._job_scored)

    def _current_job_id(self) -> int | None:
        job = self.current_job()
        return job.id if job is not None else None

    def _dream_with(self, job: TrainingJob | None) -> None:
        """Show `job` in the Dreams tab: its live chains when it trains (frames arrive through
        `_frame_ready`), free-running dreams over a private copy of its model otherwise."""
        if self.dreams is None or job is None or job.model is None or self._closing:
            return
        if job.state in (JobState.RUNNING, JobState.PAUSED):
            if job.last_frame is not None:
                self.dreams.show_training_frame(job.last_frame, self._frame_info(job))
            return
        key = (job.id, int(getattr(job, "step", 0) or 0))
        shown = self.dreams.session
        if key == self._dreams_wanted and (shown is None or (shown.source == "sampler" and shown.meta.get("job_id") == job.id)):
            return  # this run at this step dreams already, or its copy is on its way
        self._dreams_wanted = key
        from studio.canvas.sources import detach_model
        from studio.ui.workers import run_in_background

        meta = {"kind": job.kind, "title": f"{job.title} · run #{job.id}", "job_id": job.id}
        if job.path is not None:
            meta["path"] = str(job.path)

        def show(model) -> None:
            if self._closing or self.dreams is None or self.current_job() is not job:
                return  # another run was chosen meanwhile: it shows its own dreams
            if job.state in (JobState.RUNNING, JobState.PAUSED):
                return  # it trains again: its live chains show
            if self._dreams_wanted != key:
                return  # a newer copy was asked for since: that one is set, once
            self.dreams.set_model(model, meta)
            self._dreams_quality(job)

        # The private copy is taken under the job's lock in a worker: for the hybrid it takes
        # about 20 ms, which the UI thread would otherwise spend when a run stops.
        run_in_background(detach_model, job.model, job.step_lock, on_result=show,
                          on_error=lambda exc: self.statusBar().showMessage(f"Dreams could not start: {exc}", 8000))

    def _dreams_quality(self, job: TrainingJob) -> None:
        """The Dreams tab's banner follows the quality report of the run it dreams over (the
        report of the model at its current step only)."""
        view = self.dreams
        shown = view.session if view is not None else None
        if shown is None or shown.source != "sampler" or shown.meta.get("job_id") != job.id:
            return
        fresh = job.quality_status == "ready" and job.quality_step == job.step
        view.set_quality(job.quality if fresh else None, key=(job.id, job.quality_step))

    def _job_scored(self, job_id: int) -> None:
        job = self.current_job()
        if job is not None and job.id == job_id:
            self._dreams_quality(job)

    @staticmethod
    def _frame_info(job: TrainingJob) -> dict[str, Any]:
        return {"job_id": job.id, "kind": job.kind, "title": job.title, "step": job.step}

    def _job_state_for_dreams(self, job_id: int, state: str) -> None:
        if job_id == self._current_job_id() and state in ("stopped", "done"):
            self._dream_with(self.current_job())
            self._explore_with(self.current_job())

    def _frame_ready(self, update) -> None:
        """A training frame for the Dreams tab. The job's own state decides, not the order
        updates arrive in: a frame that lands after its job stopped (made before the stop, or
        the worker's closing word) must not replace the free-running dreams with a frozen
        training view."""
        if self.dreams is None or update.job_id != self._current_job_id() or update.frame is None:
            return
        job = self.current_job()
        if job is None or not job.state.active or update.state not in (JobState.RUNNING.value, JobState.PAUSED.value):
            return
        if job.last_frame is not None:
            self.dreams.show_training_frame(job.last_frame, self._frame_info(job))

    def _dreams_on_screen(self) -> tuple[Any, dict] | None:
        """The grid the Dreams tab shows, for the canvas's "Snapshot of the Dreams"."""
        return self.dreams.grid_on_screen() if self.dreams is not None else None

    def _dream_to_canvas(self, rgba, provenance: dict) -> None:
        if getattr(self, "canvas_view", None) is not None:
            self.canvas_view.add_snapshot_layer(rgba, provenance)
            self.statusBar().showMessage("Dream snapshot added to the canvas", 4000)

    def _job_failed(self, job_id: int, message: str) -> None:
        job = next((j for j in self.session.jobs if j.id == job_id), None)
        title = f"{job.title} training stopped" if job is not None else "Training stopped"
        self.show_error(title, message + "\n\nThe last good model is kept: you can save it (Ctrl+S).")

    def _refresh_actions(self) -> None:
        job = self.current_job()
        state = job.state if job is not None else None
        SP = QStyle.StandardPixmap
        look = {JobState.RUNNING: ("&Pause", SP.SP_MediaPause), JobState.PAUSED: ("&Resume", SP.SP_MediaPlay)}
        text, icon = look.get(state, ("&Start", SP.SP_MediaPlay))  # type: ignore[arg-type]
        if self.action_toggle.text() != text:  # only touch what changed: no relayout every tick
            self.action_toggle.setText(text)
            self.action_toggle.setIcon(self.style().standardIcon(icon))
        has_model = job is not None and job.model is not None
        for action, on in ((self.action_toggle, self.is_ready),
                           (self.action_stop, state is not None and (state.active or state is JobState.IDLE)),
                           (self.action_save, has_model), (self.action_save_as, has_model)):
            if action.isEnabled() != on:
                action.setEnabled(on)

    def _refresh_status(self) -> None:
        running = [j for j in self.session.jobs if j.state is JobState.RUNNING]
        paused = [j for j in self.session.jobs if j.state is JobState.PAUSED]
        rate = self.controller.steps_per_second()
        bits = []
        if running:
            bits.append(f"{len(running)} training")
        if paused:
            bits.append(f"{len(paused)} paused")
        for label, text in ((self.rate_label, f"{rate:,.0f} steps/s" if running else "idle"),
                            (self.jobs_label, " · ".join(bits))):
            if label.text() != text:
                label.setText(text)
        self._refresh_actions()

    # ===================================================================== models on disk
    def save_model(self, ask: bool = False) -> None:
        job = self.current_job()
        if job is None or job.model is None:
            self.statusBar().showMessage("Nothing to save yet: train a model first (Space).", 5000)
            return
        path = job.path if (job.path is not None and not ask) else None
        if path is None:
            start = Path(setting_folder(self.settings, "models/last_dir"))
            name = f"{job.kind}-{time.strftime('%Y%m%d-%H%M')}.safetensors"
            chosen, _ = QFileDialog.getSaveFileName(self, f"Save the {job.title}", str(start / name), MODEL_FILTER)
            if not chosen:
                return
            path = Path(chosen)
            if path.suffix.lower() != ".safetensors":
                path = path.with_name(path.name + ".safetensors")
        self.settings.setValue("models/last_dir", str(Path(path).parent))
        self.statusBar().showMessage(f"Saving {Path(path).name}…")
        step = job.step
        run_in_background(self.session.save_model, job, path,
                          on_result=lambda out, j=job, s=step: self._model_saved(j, out, s),
                          on_error=lambda exc: self.show_error("The model could not be saved", str(exc)))

    def _model_saved(self, job: TrainingJob, path: Path, step: int | None = None) -> None:
        self.statusBar().showMessage(f"Saved the {job.title.lower()} to {path}", 8000)
        self.unsaved.model_saved(job.id, job.step if step is None else step)

    def open_model_dialog(self) -> None:
        start = setting_folder(self.settings, "models/last_dir")
        chosen, _ = QFileDialog.getOpenFileName(self, "Open a model", str(start), MODEL_FILTER)
        if chosen:
            self.open_model(chosen)

    def open_model(self, path: str | Path) -> None:
        self.settings.setValue("models/last_dir", str(Path(path).parent))
        self.statusBar().showMessage(f"Opening {Path(path).name}…")
        run_in_background(self.session.open_model, path, on_result=self._model_opened,
                          on_error=lambda exc: self.show_error("The model could not be opened", str(exc)))

    def _model_opened(self, job: TrainingJob) -> None:
        self.unsaved.model_saved(job.id, job.step)  # its file holds it
        self.session.add_job(job)
        self.statusBar().showMessage(f"Opened {job.path.name if job.path else 'the model'}", 5000)
        if self.training_panel is None:
            self._pending_jobs.append(job)
        else:
            self._show_opened_job(job)
        self.controller.score(job)  # no card saved in it: scored against the current images, if they fit

    def _show_opened_job(self, job: TrainingJob) -> None:
        panel = self.training_panel
        if panel is None:
            return
        if job.kind not in panel.pages:
            self.show_error("Unknown model kind", f"This studio has no page for '{job.kind}' models.")
            return
        panel.set_current_kind(job.kind)
        panel.page(job.kind).add_job(job)

    # ===================================================================== canvas and projects
    def _install_canvas_tab(self) -> None:
        """The Canvas tab (studio.ui.canvas), once torch is imported; enables the project actions."""
        from studio.ui.canvas import CanvasView

        view = CanvasView()
        view.set_session(self.session, selected_image=self._selected_image_index)
        view.status_message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        view.error_raised.connect(self.show_error)
        view.dream_snapshot = self._dreams_on_screen  # Ctrl+Shift+D takes what the Dreams tab shows
        self.canvas_view = view
        self.unsaved.canvas_reset(view.canvas.snapshot())  # an empty canvas: nothing to lose
        self.replace_tab("Canvas", view)
        for action in self.project_actions:
            action.setEnabled(True)

    def _install_latent_tab(self) -> None:
        """The Latent tab (studio.ui.latent_view): sliders over the latent space of the current
        VAE / hybrid / autoencoder job once it stops; its frames go to the Canvas."""
        from studio.ui.latent_view import LatentView

        view = LatentView()
        view.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 5000))
        view.frameToCanvas.connect(self._latent_to_canvas)
        view.layerToCanvas.connect(self._latent_layer_to_canvas)
        view.selected_indices = self._selected_image_indices
        view.explorerChanged.connect(lambda: self.dataset_panel.set_explorer(view.explorer))
        self.dataset_panel.denoised.connect(self._show_denoised)
        self.dataset_panel.status_message.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.latent_view = view
        self.replace_tab("Latent", view)

    def _explore_with(self, job: TrainingJob | None) -> None:
        """Give the Latent tab `job`'s model (a private copy, taken under the job's lock in the
        tab's worker) when the job is not training, with the set's images for the slider order."""
        view = self.latent_view
        if view is None or job is None or job.model is None or self._closing:
            return
        record = kinds.KINDS.get(job.kind)
        if record is None or not record.explorable or job.state in (JobState.RUNNING, JobState.PAUSED):
            return
        key = (job.id, int(getattr(job, "step", 0) or 0))
        if key == self._latent_shown:
            return
        self._latent_shown = key
        images = self.session.images.images if self.session.images is not None else None
        if images is not None and tuple(images.shape[1:]) != tuple(getattr(job.model, "image_shape", ())):
            images = None  # another preprocessing than the model's: explore without the set
        meta = {"kind": job.kind, "title": f"{job.title} · run #{job.id}", "job_id": job.id}
        if job.path is not None:
            meta["path"] = str(job.path)
        view.set_model(job.model, images, meta, lock=job.step_lock)

    def _latent_to_canvas(self, rgba, provenance: dict) -> None:
        if getattr(self, "canvas_view", None) is not None:
            self.canvas_view.add_snapshot_layer(rgba, provenance)
            self.statusBar().showMessage("Latent frame added to the canvas", 4000)

    def _latent_layer_to_canvas(self, layer) -> None:
        if getattr(self, "canvas_view", None) is not None:
            self.canvas_view.add_layer(layer, center=True)
            self.statusBar().showMessage("Interpolation strip added to the canvas", 4000)

    def _show_denoised(self, index: int, original, denoised) -> None:
        """The dataset panel's "Denoise through the autoencoder": the two images in a dialog
        whose "To canvas" adds the denoised one as a layer."""
        from studio.ui.latent_view import DenoiseDialog

        view = self.latent_view
        meta = view.meta if view is not None else {}
        prov = {"source": "denoised", "model": meta.get("kind"), "image_index": int(index),
                **{k: v for k, v in meta.items() if k in ("title", "path", "job_id", "checkpoint_sha256")}}
        paths = getattr(self.session.images, "paths", None) or []
        if index < len(paths):
            prov["image_path"] = str(paths[index])
        dialog = DenoiseDialog(original, denoised, prov, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.toCanvas.connect(self._latent_to_canvas)
        self.denoise_dialog = dialog
        dialog.show()

    def _selected_image_indices(self) -> list[int]:
        """The dataset panel's selected images (set indices, ascending, whatever the view's order)."""
        return self.dataset_panel.selected_set_indices()

    def _selected_image_index(self) -> int | None:
        rows = self.dataset_panel.selected_set_indices()
        return rows[0] if rows else None

    def _make_project_actions(self) -> None:
        """File → Save Project (Ctrl+Alt+S), Save Project As… (Ctrl+Alt+Shift+S), Open Project… (Ctrl+Alt+O)."""
        self.action_save_project = self._action("Save &Project", self.save_project, "Ctrl+Alt+S",
                                                "Save the session (dataset reference, models, canvas) as one file")
        self.action_save_project_as = self._action("Save Project A&s…", lambda: self.save_project(ask=True),
                                                   "Ctrl+Alt+Shift+S", "Save the session under a new name")
        self.action_open_project = self._action("Open Pro&ject…", self.open_project_dialog, "Ctrl+Alt+O",
                                                "Open a saved session (.harmonium)")
        self.project_actions = [self.action_open_project, self.action_save_project, self.action_save_project_as]
        for action in self.project_actions:
            action.setEnabled(False)  # until the Canvas tab exists (the model engine is ready)
            self.file_menu.insertAction(self.action_open_model, action)
        self.file_menu.insertSeparator(self.action_open_model)

    def save_project(self, ask: bool = False, then=None) -> bool:
        """Save the whole session in a worker; the previous file stays intact if it fails.
        ``then`` runs on the UI thread once the file is written. Returns False when nothing
        was started (the engine is still starting, or no file name was chosen)."""
        if self.canvas_view is None:
            self.statusBar().showMessage("The model engine is still starting: try again in a moment.", 5000)
            return False
        path = self._project_target(ask)
        if path is None:
            return False
        self._start_project_save(path, then)
        return True

    def _project_target(self, ask: bool) -> Path | None:
        """Where Save Project writes: the project's file, else one the person chooses (None: cancelled)."""
        from studio.project import PROJECT_SUFFIX

        path = self.project_path if not ask else None
        if path is None:
            start = Path(setting_folder(self.settings, "projects/last_dir"))
            chosen, _ = QFileDialog.getSaveFileName(self, "Save the project", str(start / f"untitled{PROJECT_SUFFIX}"),
                                                    f"Harmonium projects (*{PROJECT_SUFFIX})")
            if not chosen:
                return None
            path = Path(chosen)
            if path.suffix.lower() != PROJECT_SUFFIX:
                path = path.with_name(path.name + PROJECT_SUFFIX)
        return path

    def _start_project_save(self, path: Path, then=None, failed=None) -> None:
        from studio.project import project_from_session, save_project

        canvas = self.canvas_view.canvas
        state = canvas.snapshot()
        data = project_from_session(self.session, state, renderer=canvas.renderer)
        # What the file will hold, taken now (the canvas and the job list may change while it saves).
        marks = (state, self._job_marks(), self._dataset_key())
        self.settings.setValue("projects/last_dir", str(path.parent))
        self.statusBar().showMessage(f"Saving {path.name}…")

        def done(out: Path) -> None:
            self._project_saved(out, marks)
            if then is not None:
                then()

        def error(exc: BaseException) -> None:
            self.show_error("The project could not be saved",
                            f"{exc}\n\nNothing was overwritten: {path.name} is as it was before.")
            if failed is not None:
                failed()

        run_in_background(save_project, path, data, on_result=done, on_error=error)

    def _project_saved(self, path: Path, marks: tuple | None = None) -> None:
        self.project_path = Path(path)
        self.statusBar().showMessage(f"Saved the project to {path}", 8000)
        if marks is not None:
            state, jobs, dataset = marks
            self.unsaved.project_saved(state, jobs, dataset)
        self._drop_stale_recovery()

    def open_project_dialog(self) -> None:
        from studio.project import PROJECT_SUFFIX

        start = setting_folder(self.settings, "projects/last_dir")
        chosen, _ = QFileDialog.getOpenFileName(self, "Open a project", str(start),
                                                f"Harmonium projects (*{PROJECT_SUFFIX});;All files (*)")
        if chosen:
            self.open_project(chosen)

    def open_project(self, path: str | Path, restoring: Orphan | None = None) -> None:
        """Read and validate the project in a worker; only a valid one replaces the canvas,
        adds its models and reloads its images (the current session is untouched otherwise).

        Three stages: the project and its models are read in a worker; on the UI thread its
        problems are shown and, when its images lie outside its folder, the person confirms
        before any is read; the dataset is then resolved in a worker and everything applied
        (:meth:`_project_opened`). ``restoring``: a crashed session's recovery file
        (:meth:`answer_recovery`)."""
        path = Path(path)
        if restoring is None:
            self.settings.setValue("projects/last_dir", str(path.parent))
        self.statusBar().showMessage(f"Opening {path.name}…" if restoring is None else "Restoring the autosaved work…")
        run_in_background(self._read_project, path,
                          on_result=lambda result, r=restoring: self._project_read(path, result, r),
                          on_error=lambda exc, r=restoring: self._project_failed(exc, r))

    def _project_failed(self, exc: BaseException, restoring: Orphan | None = None) -> None:
        if restoring is None:
            self.show_error("The project could not be opened", f"{exc}\n\nNothing was changed.")
            return
        kept = set_aside(restoring)  # not offered again, not deleted
        self.show_error("The autosaved work could not be restored",
                        f"{exc}\n\nNothing was changed. The file is kept at {kept}.")

    def _read_project(self, path: Path) -> tuple[Any, list[TrainingJob], list[str], list[str], list[str]]:
        """Worker side: the validated project, a job per model, the dataset sources found and
        missing, and those found outside the project's folder (``stat`` only: no image is read
        here, the images load after the person confirmed the outside ones)."""
        from studio.project import open_project

        project = open_project(path)
        jobs = [self.session.open_model(m.path) for m in project.models]
        if project.dataset is None:
            return project, jobs, [], [], []
        found, missing = project.dataset.resolve(path.parent)
        return project, jobs, found, missing, project.outside_sources(path)

    def _confirm_outside_sources(self, sources: list[str], path: Path) -> bool:
        """Ask before reading images a project names outside its own folder (a project from
        elsewhere could point anywhere). Modal: the person is opening the project and waits."""
        shown = "\n".join(sources[:10]) + (f"\n… and {len(sources) - 10} more" if len(sources) > 10 else "")
        answer = QMessageBox.question(
            self, "Read images outside the project's folder?",
            f"{path.name} reads images from outside its own folder:\n\n{shown}\n\n"
            "Read them? With No, only the project's own images are read (or, if it has none, "
            "the images you have now are kept).",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _project_read(self, path: Path, result: tuple, restoring: Orphan | None = None) -> None:
        """UI side, between reading the project and reading its images: the images outside
        its folder are shown and confirmed (not for a recovery file: it holds this user's own
        session), then everything is applied."""
        project, jobs, found, missing, outside = result
        if self._closing or self.canvas_view is None:
            if restoring is not None:
                restoring.release()
            return
        refused: list[str] = []
        if outside and restoring is None and not self._confirm_outside_sources(outside, path):
            refused = [s for s in found if s in outside]
            found = [s for s in found if s not in outside]
        if self._closing:
            return
        self._project_opened((project, jobs, found, missing), restoring, refused=refused)

    def _project_opened(self, result: tuple[Any, list[TrainingJob], list[str], list[str]],
                        restoring: Orphan | None = None, refused: list[str] | None = None) -> None:
        project, jobs, found, missing = result
        if self._closing or self.canvas_view is None:
            if restoring is not None:
                restoring.release()
            return
        self.canvas_view.replace_canvas(project.canvas, "Restore autosaved work" if restoring else "Open project")
        for job in jobs:
            job.path = None  # Save Model asks where: the checkpoint lives inside the project
            self.session.add_job(job)
            if self.training_panel is None:
                self._pending_jobs.append(job)
            else:
                self._show_opened_job(job)
            self.controller.score(job)
        dataset = project.dataset
        expected = self._dataset_key()  # the images the session will have once loaded
        if dataset is not None:
            pp = Preprocess.from_dict(dataset.preprocess)
            same = self.session.images is not None and self.session.sources == found and self.session.preprocess == pp
            if missing:
                self.show_error("Some images of the project were not found",
                                "Missing:\n" + "\n".join(missing[:10]) + ("\n…" if len(missing) > 10 else "")
                                + ("\n\nThe images that were found are loaded." if found else
                                   "\n\nThe current images are kept."))
            if not same and (found or (dataset.is_demo and not refused)):
                self.dataset_panel.set_preprocess(pp)
                self.open_sources(found, pp)
                expected = dataset_key(found, pp)
        problems = [str(p) for p in project.problems]
        if problems:
            self.show_error("Some of the project could not be opened",
                            "\n".join(problems[:10]) + (f"\n… and {len(problems) - 10} more" if len(problems) > 10 else "")
                            + "\n\nEverything else was opened.")
        state = self.canvas_view.canvas.snapshot()
        members = self._job_marks()
        n = len(project.canvas.layers)
        if restoring is None:
            self.project_path = Path(project.path) if project.path is not None else None
            opened = {job.id for job in jobs}
            self.unsaved.project_saved(state, [m for m in members if m[0] in opened], expected,
                                       members=[m[0] for m in members])
            self.statusBar().showMessage(
                f"Opened {self.project_path.name if self.project_path else 'the project'}: {n} layer{'s' * (n != 1)}, "
                f"{len(jobs)} model{'s' * (len(jobs) != 1)}"
                + (f", {len(refused)} image source{'s' * (len(refused) != 1)} outside its folder not read"
                   if refused else "")
                + " (Ctrl+Z in the Canvas brings the previous canvas back)", 10000)
            return
        # Restored after a crash: unsaved until saved, into the project it belonged to if any;
        # the recovery file becomes this studio's own until the next autosave replaces it.
        self.project_path = restored_project_path(project.meta)
        self.unsaved.restored_from_recovery(state, [(j.id, j.step) for j in jobs], expected,
                                            in_project=self.project_path is not None)
        try:
            self.last_autosave = self.recovery.adopt(restoring)
        except OSError:
            restoring.release()
        else:
            restored = {job.id for job in jobs}
            if all(job.id in restored for job in self.session.jobs if job.model is not None):
                # the adopted file holds the session as it is now: no need to write it again
                self._autosaved = self.unsaved.fingerprint(state, self.session.jobs, expected)
            else:
                self._autosaved = None  # models from before the restore are not in it yet
        self.statusBar().showMessage(
            f"Restored the autosaved work: {n} layer{'s' * (n != 1)}, {len(jobs)} model{'s' * (len(jobs) != 1)}. "
            "Save it (Ctrl+Alt+S) to keep it.", 15000)

    # ===================================================================== unsaved work
    def _job_marks(self) -> list[tuple[int, int]]:
        """(job id, step) of every job with a model: what a project saved now holds."""
        return [(job.id, job.step) for job in self.session.jobs if job.model is not None]

    def _dataset_key(self) -> tuple:
        return dataset_key(self.session.sources, self.session.preprocess)

    def unsaved_reasons(self) -> list[str]:
        """What quitting now would lose, one sentence each (empty: nothing)."""
        state = self.canvas_view.canvas.snapshot() if self.canvas_view is not None else None
        return self.unsaved.reasons(state, self.session.jobs, self._dataset_key(),
                                    project_open=self.project_path is not None)

    def autosave_now(self) -> bool:
        """Write the recovery project in a worker when something is unsaved and changed since
        the last one (the autosave timer calls this; the UI thread never waits on it). Returns
        whether a write was started."""
        if self._closing or self.canvas_view is None or self._autosave_inflight:
            return False
        reasons = self.unsaved_reasons()
        if not reasons:
            self._drop_stale_recovery()
            return False
        from studio.project import project_from_session

        canvas = self.canvas_view.canvas
        state = canvas.snapshot()
        fingerprint = self.unsaved.fingerprint(state, self.session.jobs, self._dataset_key())
        if fingerprint == self._autosaved and self.recovery.exists():
            return False
        try:
            path = self.recovery.claim()
        except OSError as exc:
            self._autosave_failed(exc)
            return False
        data = project_from_session(self.session, state, renderer=canvas.renderer)
        data.meta.update(recovery_meta(self.project_path, reasons))
        self._autosave_inflight = True
        run_in_background(write_recovery, path, data,
                          on_result=lambda out, fp=fingerprint: self._autosaved_to(out, fp),
                          on_error=self._autosave_failed)
        return True

    def _autosaved_to(self, path: Path, fingerprint: tuple) -> None:
        self._autosave_inflight = False
        self._autosaved = fingerprint
        self.last_autosave = Path(path)
        if not self._closing:
            self.statusBar().showMessage("Autosaved (for recovery after a crash)", 3000)
        self._drop_stale_recovery()

    def _autosave_failed(self, exc: BaseException) -> None:
        self._autosave_inflight = False
        if self._closing:
            return
        self.statusBar().showMessage(f"Autosave failed: {exc}", 10000)
        if not self._autosave_warned:  # once: not a box every few minutes
            self._autosave_warned = True
            self.show_error("Autosave failed", f"{exc}\n\nUntil you save your work, a crash would lose it.")

    def _drop_stale_recovery(self) -> None:
        """Everything is saved: a recovery file would only offer older work after a crash."""
        if not self._autosave_inflight and not self.unsaved_reasons():
            self.recovery.clear()
            self._autosaved = None

    def sweep_stale_files(self) -> None:
        """Remove, in a worker, the temporary files and folders saves killed outright left behind
        (``models.atomic.sweep_stale``: only ours, only of writers no longer running)."""
        from models.atomic import sweep_stale

        run_in_background(sweep_stale, on_result=self._swept)

    def _swept(self, removed: list) -> None:
        if removed and not self._closing:
            self.statusBar().showMessage(
                f"Removed {len(removed)} temporary file{'s' * (len(removed) != 1)} left by an interrupted save", 8000)

    def check_recovery(self) -> None:
        """Look (in a worker) for work a crashed studio autosaved; offered once the Canvas exists."""
        if self.recovery_offer or self.recovery_box is not None:
            return
        run_in_background(find_orphans, self.recovery.root, on_result=self._recovery_found)

    def _recovery_found(self, orphans: list[Orphan]) -> None:
        if self._closing or not orphans or self.recovery_offer:
            for orphan in orphans:
                orphan.release()
            return
        self.recovery_offer = list(orphans)
        if self.canvas_view is not None and self.recovery_box is None:
            self._offer_recovery()

    def _offer_recovery(self) -> None:
        """A non-modal question: the window works meanwhile, nothing waits on the answer."""
        newest = self.recovery_offer[0]
        more = len(self.recovery_offer) - 1
        text = (f"Harmonium did not quit properly last time. Work it autosaved on {newest.describe()} "
                "can be restored.")
        if more:
            text += (f"\n\n{more} older autosave{'s' if more != 1 else ''} of other sessions "
                     f"{'are' if more != 1 else 'is'} kept for the next start; Discard deletes them all.")
        box = QMessageBox(QMessageBox.Icon.Question, "Restore unsaved work?", text,
                          QMessageBox.StandardButton.NoButton, self)
        restore = box.addButton("Restore", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Not Now", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(restore)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        roles = {QMessageBox.ButtonRole.AcceptRole: "restore", QMessageBox.ButtonRole.DestructiveRole: "discard"}
        box.buttonClicked.connect(lambda button, b=box: self.answer_recovery(roles.get(b.buttonRole(button), "later")))
        box.finished.connect(lambda _=0: self.answer_recovery("later"))  # closed without a choice
        self.recovery_box = box
        self._boxes.append(box)
        box.finished.connect(lambda _=0, b=box: self._boxes.remove(b) if b in self._boxes else None)
        box.show()

    def answer_recovery(self, choice: str) -> None:
        """``restore`` the newest crashed session (through the Open Project flow), ``discard``
        them all, or ``later`` (kept, offered at the next start)."""
        offer, self.recovery_offer = self.recovery_offer, []
        self.recovery_box = None
        if not offer:
            return
        if choice == "restore" and not self._closing and self.canvas_view is not None:
            for orphan in offer[1:]:
                orphan.release()
            self.open_project(offer[0].project, restoring=offer[0])
        elif choice == "discard":
            discard(offer)
            self.statusBar().showMessage("The autosaved work was discarded", 5000)
        else:
            for orphan in offer:
                orphan.release()

    # ===================================================================== messages
    def show_error(self, title: str, message: str) -> None:
        """A clear, non-blocking message (training goes on behind it)."""
        self.statusBar().showMessage(title, 10000)
        show_warning(self, title, message, self._boxes)

    def _show_shortcuts(self) -> None:
        rows = []
        for a in self.actions():
            seq = a.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if seq:
                rows.append(f"<tr><td><b>{seq}</b></td><td>&nbsp;&nbsp;{a.text().replace('&', '')}</td></tr>")
        QMessageBox.information(self, "Keyboard shortcuts", "<table>" + "".join(rows) + "</table>")

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
