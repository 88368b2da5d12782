"""The "Dreams" tab: a live grid of persistent Gibbs chains, steered by the artist.

A view of the document's (:class:`studio.jobs.Session`) dreams, ``session.dreams``: the view
never builds a :class:`~studio.dreams.DreamSession`; it asks the document for one and shows
whatever the document holds (``events.dreams``). Two sources (see :mod:`studio.dreams`):

* :meth:`DreamsView.set_model` — a free-running sampler over a trained model; it runs in a
  worker thread (:class:`~studio.dreams.DreamRunner`), never on the UI thread;
* :meth:`DreamsView.show_training_frame` — the chains of a running PCD job, as it trains.

With :meth:`DreamsView.follow_jobs` it follows the document's current run by itself
(:mod:`studio.ui.dreams.follow`). Snapshots go to the document's canvas.

Rendering never queues frames: the worker (or the training job) only replaces the session's
newest frame; a display-paced ``QTimer`` (~60 Hz) pulls it and, if it is new, sets it on one
``pyqtgraph.ImageItem`` as a uint8 mosaic with fixed levels (0, 255), nearest-neighbour, no
per-frame autoscaling. A slow display skips frames; it never falls behind.

Controls: chains, Gibbs steps per frame, temperature, probabilities / samples, reset (noise or
dataset images), pause / single step, zoom, a scrubber over the recent history, the dream brush
(drag on a chain to paint the pixels that keep dreaming; the rest of that chain stays clamped),
snapshots to the canvas and exports (grid PNG, a chain's evolution as GIF / APNG, written in a
background thread). When the shown model's quality report says its dreams have collapsed or
copy the training images (:meth:`DreamsView.set_quality`), a dismissible banner over the grid
says so in plain words. Keys: P pause/resume, S single step, R reset, Ctrl+E export the grid,
B brush, F fit.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import QApplication, QFileDialog, QWidget

from models.kinds import KINDS
from studio.dreams import BrushUnavailable, DreamFrame, DreamRunner, DreamSession, MAX_CHAINS
from studio.dreams.session import TEXTURE_DREAM_SIDE, TEXTURE_MAX_CHAINS
from studio.images import GridLayout, mosaic
from studio.jobs import Session
from studio.quality_card import dreams_banner
from studio.ui.dreams.build import DreamsBuilder
from studio.ui.settings import export_prefs
from studio.ui.dreams.controls import DreamsControls
from studio.ui.dreams.follow import FollowRun
from studio.ui.relay import listen
from studio.ui.dreams.widgets import _kind_title, DISPLAY_INTERVAL_MS, MESSAGE_SECONDS, MUTED, PAD
from studio.worker import TaskQueue


#: What the Dreams tab shows while a model of each kind trains (the trainers' frames).
TRAINING_FRAMES = {
    "rbm": "the persistent chains of training",
    "grbm": "the persistent chains of training",
    "texture": "its last short run from noise, as it dreams (or PCD's chains)",
    "ae": "its reconstructions of a fixed batch of images",
    "vae": "the same prior draws, decoded as it learns",
    "hybrid": "reconstructions of a fixed batch (phase 1), then its RBM's persistent chains, decoded (phase 2)",
}


def arrival_text(frames: Sequence[Any], now: float, window: float = 10.0) -> str:
    """How often new frames arrived over the last ``window`` seconds (frames with a ``time``,
    oldest first): "4 frames/s", "a new frame every 2.5 s", or "waiting for frames"."""
    recent = [f.time for f in frames if now - f.time <= window]
    if len(recent) < 2 or recent[-1] <= recent[0]:
        return "waiting for frames" if not recent else "a new frame now and then"
    rate = (len(recent) - 1) / (recent[-1] - recent[0])
    return f"{rate:.0f} frames/s" if rate >= 1.5 else f"a new frame every {1 / rate:.1f} s"


def _dreams_textures(s: DreamSession | None) -> bool:
    """Whether `s` shows a texture RBM (a model that dreams at any size: it has `synthesize`),
    dreaming or training (a training session has no model: its kind's model class tells)."""
    if s is None:
        return False
    if s.source == "sampler":
        return hasattr(s.model, "synthesize")
    kind = KINDS.get(s.kind)
    return kind is not None and hasattr(kind.model_class, "synthesize")


class DreamsView(DreamsBuilder, DreamsControls, FollowRun, QWidget):
    """The Dreams tab, built from a document (a private one when none is given). Public slots:
    :meth:`set_model`, :meth:`show_training_frame`, :meth:`set_dataset_images`, :meth:`clear`;
    :meth:`follow_jobs`; signal :attr:`statusMessage`."""

    #: A short message for the status bar.
    statusMessage = Signal(str)
    _exportDone = Signal(str)  # from the export thread, queued to the UI thread
    _texture_chains = False  # the Chains box counts a texture RBM's large textures (see _sync_chains)
    _grid_chains = 64  # the grid's chain count, kept while a texture shows

    def __init__(self, document: Session | None = None, parent: QWidget | None = None, *, history: int = 600,
                 max_fps: float = 75.0) -> None:
        super().__init__(parent)
        #: The document: what it dreams (``document.dreams``), its images, its canvas.
        self.document = document if document is not None else Session()
        # A click anywhere on the tab (its empty area included) takes the keyboard focus from a
        # text field elsewhere, so Space then starts or pauses training instead of typing into
        # that field (issue 16, item 3).
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.history = int(history)
        self.max_fps = float(max_fps)
        self.session: DreamSession | None = None
        self.runner: DreamRunner | None = None
        self.dataset_images: np.ndarray | None = None
        self.selected_chain = 0
        self._user_paused = False
        self._display_frozen = False  # training source: pause freezes the picture
        self._pinned: int | None = None  # serial shown while scrubbing; None = live
        self._layout: GridLayout | None = None
        self._mask_version = -1
        self._stroke_chain: int | None = None
        self._shown: DreamFrame | None = None
        self._error_shown: str | None = None
        self._exporter: TaskQueue | None = None  # made on the first export
        self._quality_key: Any = None  # which report the banner is about
        self._dismissed: set[Any] = set()  # reports whose banner the user closed
        self._fps_count = 0
        self._fps_t0 = time.monotonic()
        self.shown_fps = 0.0
        self.display_ticks = 0  # display-timer ticks so far (benchmarks compare with frames_shown)
        self._build()
        self._exportDone.connect(self._on_export_done)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(DISPLAY_INTERVAL_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._update_controls()
        self._init_follow()
        listen(self, self.document.events.dreams, self._on_dreams)
        listen(self, self.document.events.images, lambda images: self.set_dataset_images(images.images))
        if self.document.images is not None:
            self.set_dataset_images(self.document.images.images)
        if self.document.dreams is not None:
            self._on_dreams(self.document.dreams)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)  # children get no closeEvent when the window closes


    @Slot(bool)
    def show_controls(self, on: bool) -> None:
        """Show or hide the controls column (the grid takes the room, fitted again)."""
        self.controls.setVisible(bool(on))
        if self.controls_button.isChecked() != bool(on):
            self.controls_button.setChecked(bool(on))
        self._refit()

    def _refit(self, *_: Any) -> None:
        """The grid's room changed (controls shown or hidden, the splitter dragged): fit it
        again unless the user has zoomed by hand."""
        if getattr(self, "_auto_fit", True):
            QTimer.singleShot(0, self.fit)  # after the layout has settled

    # ======================================================================= public slots
    @Slot(object, dict)
    def set_model(self, model: Any, meta: Mapping[str, Any] | None = None) -> bool:
        """Dream freely over a trained model (RBM, Gaussian RBM, hybrid, VAE): a sampler in a
        worker thread. `meta`: ``checkpoint_sha256``, ``path``, ``title``, ``seed`` (all
        optional). Use a model no job is training (e.g. a checkpoint's): it is put in eval
        mode. Returns False (with a message shown) for a model that cannot dream. The model
        that dreams already, with the same `meta`, is kept dreaming as it is: the grid on
        screen stays (its chains, history and brush too)."""
        s = self.session
        if (s is not None and s.source == "sampler" and s.model is model and s.meta == dict(meta or {})
                and self.runner is not None and self.runner.alive):
            return True
        self._stop_runner()
        if s is None or s.model is not model:
            # A temperature chosen for one model means nothing for the next (issue 16: a hybrid
            # opened after an RBM explored at T 0.41 showed 64 identical dark chains).
            self.temp_slider.setValue(1.0)
        try:  # the document makes the session; _on_dreams shows it
            chains = self._grid_chains if self._texture_chains else self.chains_spin.value()
            self.document.dream(model, dict(meta or {}), n_chains=chains,
                                steps_per_frame=self.steps_slider.value(), temperature=self.temp_slider.value(),
                                show=self._show_kind(), history=self.history)
        except ValueError as e:
            self.placeholder.setText(str(e))
            self._message(str(e))
            return False
        return True

    def _on_dreams(self, session: DreamSession | None) -> None:
        """The document's dreams changed: show them (a sampler runs in its own thread)."""
        if session is self.session:
            return
        self._stop_runner()
        self._set_session(session)
        if session is None:
            self.caption.setText(f"<span style='color:{MUTED}'>No model yet.</span>")
            return
        if session.source == "training":
            title = session.meta.get("title") or _kind_title(session.meta.get("kind", ""))
            job = f" · run #{session.meta['job_id']}" if session.meta.get("job_id") is not None else ""
            what = TRAINING_FRAMES.get(session.meta.get("kind", ""), TRAINING_FRAMES["rbm"])
            self.caption.setText(f"<b>{title}</b> <span style='color:{MUTED}'>{job} · {what}, live</span>")
            return
        self.runner = DreamRunner(session, max_fps=self.max_fps, owner=self)
        self.runner.start(paused=not self._should_run())
        title = session.meta.get("title") or _kind_title(session.kind)
        sha = session.meta.get("checkpoint_sha256") or session.meta.get("sha256")
        extra = f" · checkpoint {sha[:10]}…" if sha else ""
        self.caption.setText(f"<b>{title}</b> <span style='color:{MUTED}'>· free-running dreams{extra}</span>")
        self._message(f"Dreaming with {title}")

    @Slot(object, dict)
    def show_training_frame(self, frame: Any, info: Mapping[str, Any] | None = None) -> None:
        """Show (and record) a frame of a running training job: float or uint8 ``[n, C, H, W]``
        (``TrainEvent.frame``, ``Job.last_frame``). ``info``: ``job_id``, ``title``, ``kind``,
        ``step``, ``epoch`` (all optional); a new ``job_id`` starts a new history. UI thread;
        a worker thread can push to :meth:`begin_training`'s session directly instead."""
        if frame is None:
            return
        info = dict(info or {})
        s = self.session
        if s is None or s.source != "training" or ("job_id" in info and info["job_id"] != s.meta.get("job_id")):
            s = self.begin_training(info)
        s.push_frame(frame, info)

    def begin_training(self, meta: Mapping[str, Any] | None = None) -> DreamSession:
        """Switch to showing a training job; returns the session, whose thread-safe
        :meth:`~DreamSession.push_frame` a training thread may call directly."""
        return self.document.dream_training(dict(meta or {}), history=self.history)

    @Slot(object)
    def set_dataset_images(self, images: Any) -> None:
        """Images for "Reset: dataset", uint8 ``[N, C, H, W]`` (None: none)."""
        if images is None:
            self.dataset_images = None
        else:
            arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
            self.dataset_images = arr if arr.ndim == 4 and len(arr) else None
        self._update_controls()

    def set_quality(self, report: Any, key: Any = None) -> bool:
        """The quality report of the model shown (a ``models.quality.QualityReport`` or None):
        a banner over the grid when its dreams have collapsed or copy the training images,
        unless the user closed the banner of this report (``key``, e.g. (job id, step)) before.
        Showing another model hides it. Returns whether the banner shows."""
        text = dreams_banner(report) if report is not None else None
        self._quality_key = key
        on = bool(text) and (key is None or key not in self._dismissed)
        self.quality_label.setText(text or "")
        self.quality_banner.setVisible(on)
        return on

    @Slot()
    def dismiss_quality_banner(self) -> None:
        """Close the banner (it stays closed for this report)."""
        if self._quality_key is not None:
            self._dismissed.add(self._quality_key)
        self.quality_banner.hide()

    @property
    def quality_banner_text(self) -> str:
        """The banner's words while it shows, else ""."""
        return self.quality_label.text() if not self.quality_banner.isHidden() else ""

    @Slot()
    def clear(self) -> None:
        """Show nothing (stops the sampler)."""
        self._stop_runner()
        self.document.set_dreams(None)

    @Slot()
    def shutdown(self) -> None:
        """Stop the sampler thread and finish pending exports (closing the widget and quitting
        the application do it; calling it twice is harmless). Showing the widget again restarts
        the display; dreams need a new :meth:`set_model`."""
        self._timer.stop()
        self._shut = True
        self._stop_runner()
        if self._exporter is not None:
            self._exporter.shutdown(None)  # every export asked for is written
            self._exporter = None

    # ----------------------------------------------------------------------- controls
    @Slot()
    def toggle_pause(self) -> None:
        self.pause_button.toggle()

    @Slot()
    def single_step(self) -> None:
        """One frame, then paused (free-running only)."""
        if self.runner is None:
            return
        if not self.pause_button.isChecked():
            self.pause_button.setChecked(True)
        self.go_live()
        self.runner.single_step()

    @Slot()
    def reset_from_noise(self) -> None:
        s = self.session
        if s is None or s.source != "sampler":
            return
        s.reset("noise")
        self.go_live()
        self._message("Chains restarted from noise")

    @Slot()
    def reset_from_dataset(self) -> None:
        s, images = self.session, self.dataset_images
        if s is None or s.source != "sampler" or images is None:
            return
        n = s.settings.n_chains
        pick = np.random.default_rng().permutation(len(images))[:n]
        try:
            s.reset(images[pick])
        except ValueError as e:
            self._message(str(e))
            return
        self.go_live()
        self._message(f"Chains restarted at {min(n, len(images))} dataset image(s)")

    @Slot()
    def go_live(self) -> None:
        self._pinned = None
        self._display_frozen = False
        if self.session is not None and self.session.source == "training" and self.pause_button.isChecked():
            self.pause_button.blockSignals(True)
            self.pause_button.setChecked(False)
            self.pause_button.blockSignals(False)

    @Slot()
    def fit(self) -> None:
        """Fit the grid to the view; it stays fitted as the view resizes until the user zooms."""
        self._auto_fit = True
        if self.image.image is not None:
            self.viewbox.autoRange(padding=0.01)
            self._sync_zoom_slider()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._refit()

    @Slot()
    def clear_mask(self) -> None:
        if self.session is not None:
            self.session.clear_mask()

    @Slot()
    def invert_mask(self) -> None:
        if self.session is None:
            return
        try:
            self.session.invert_mask()
        except BrushUnavailable as e:
            self._message(str(e))

    @property
    def brush_active(self) -> bool:
        return self.brush_button.isChecked() and self.session is not None and self.session.can_brush

    @property
    def worker_alive(self) -> bool:
        """True while the sampler's thread runs."""
        return self.runner is not None and self.runner.alive

    @property
    def frames_shown(self) -> int:
        """Distinct frames painted so far (the benchmark counts these)."""
        return self.image.frames_painted

    @property
    def shown_frame(self) -> DreamFrame | None:
        """The frame on screen."""
        return self._shown

    # ------------------------------------------------------------------- snapshots, export
    @Slot()
    def snapshot_grid(self) -> tuple[np.ndarray, dict] | None:
        """Put the grid on screen on the document's canvas; returns (rgba, provenance)."""
        return self._snapshot(None)

    @Slot()
    def snapshot_chain(self) -> tuple[np.ndarray, dict] | None:
        """Put the selected chain on screen on the document's canvas; returns (rgba, provenance)."""
        return self._snapshot(self.selected_chain)

    def _on_screen(self) -> DreamFrame | None:
        """The frame on screen; when the session has frames but no display tick has shown one
        yet (a new session), its newest is shown first: what has a frame can be snapshotted."""
        if self._shown is None:
            self._show_current()
        return self._shown

    def _snapshot(self, chain: int | None) -> tuple[np.ndarray, dict] | None:
        s, shown = self.session, self._on_screen()
        if s is None or shown is None:
            self._message("Nothing to snapshot yet")
            return None
        try:
            rgba, prov = s.snapshot_grid(shown.serial) if chain is None else s.snapshot_chain(chain, shown.serial)
        except (ValueError, IndexError) as e:
            self._message(str(e))
            return None
        what = "grid" if chain is None else f"chain {chain}"
        try:
            self.document.add_snapshot_layer(rgba, prov)
        except ValueError as e:  # pixels that make no layer
            self._message(f"The snapshot could not go to the canvas: {e}")
            return None
        self._message(f"Snapshot of the {what} sent to the canvas")
        return rgba, prov

    def export_grid_png(self, path: str | Path, scale: int = 1, smooth: bool = False) -> concurrent.futures.Future:
        """Write the grid on screen as a PNG (enlarged `scale`×: nearest, or `smooth`), in the
        export thread; returns its Future."""
        s, shown = self.session, self._on_screen()
        if s is None or shown is None:
            raise ValueError("nothing to export yet")
        serial = shown.serial
        return self._submit(lambda: s.export_grid_png(path, serial, scale, smooth), f"Grid saved to {path}")

    def export_chain_animation(self, path: str | Path, chain: int | None = None, fps: float | None = None,
                               format: str | None = None, scale: int | None = None,
                               smooth: bool = False) -> concurrent.futures.Future:
        """Write a chain's evolution over the history (the selected chain by default) as an
        animated GIF or APNG, in the export thread; returns its Future."""
        s = self.session
        if s is None or s.latest() is None:
            raise ValueError("no history to export yet")
        chain = self.selected_chain if chain is None else int(chain)
        fps = float(self.fps_spin.value() if fps is None else fps)
        if scale is None:
            h, w, _ = s.latest().image_shape
            scale = max(1, math.ceil(128 / max(h, w)))
        return self._submit(lambda: s.export_chain_animation(chain, path, fps, format, scale, smooth),
                            f"Chain {chain}'s evolution saved to {path}")

    def _submit(self, job, done_text: str) -> concurrent.futures.Future:
        if self._exporter is None:
            self._exporter = TaskQueue("dreams-export", owner=self)
        fut = self._exporter.submit(job)

        def finished(f: concurrent.futures.Future) -> None:
            e = f.exception()
            self._exportDone.emit(done_text if e is None else f"Export failed: {e}")

        fut.add_done_callback(finished)
        self._message("Exporting…")
        return fut

    @Slot(str)
    def _on_export_done(self, text: str) -> None:
        self._message(text)

    @Slot()
    def export_grid_dialog(self) -> None:
        s, shown = self.session, self._on_screen()
        if s is None or shown is None:
            self._message("Nothing to export yet")
            return
        prefs = export_prefs()
        factor, smooth = prefs.scale()
        name = f"dreams-{s.kind}-step{shown.steps}" + (f"-x{factor}" if factor > 1 else "") + ".png"
        path, _ = QFileDialog.getSaveFileName(self, f"Export the grid as PNG (×{factor}, File → Export → Scale)",
                                              prefs.start(name), "PNG image (*.png)")
        if path:
            if not path.lower().endswith(".png"):
                path += ".png"
            prefs.remember(path)
            self.export_grid_png(path, factor, smooth)

    @Slot()
    def export_chain_dialog(self) -> None:
        s = self.session
        if s is None or s.latest() is None:
            self._message("No history to export yet")
            return
        prefs = export_prefs()
        factor, smooth = prefs.scale()
        name = f"dreams-{s.kind}-chain{self.selected_chain}" + (f"-x{factor}" if factor > 1 else "") + ".gif"
        filters = "Animated GIF (*.gif);;Animated PNG (*.png *.apng)"
        path, chosen = QFileDialog.getSaveFileName(self, f"Export the chain's evolution (×{factor}, File → Export → "
                                                   "Scale)", prefs.start(name), filters)
        if not path:
            return
        prefs.remember(path)
        fmt = "apng" if (chosen.startswith("Animated PNG") or path.lower().endswith((".png", ".apng"))) else "gif"
        if fmt == "gif" and not path.lower().endswith(".gif"):
            path += ".gif"
        if fmt == "apng" and not path.lower().endswith((".png", ".apng")):
            path += ".png"
        self.export_chain_animation(path, format=fmt, scale=factor, smooth=smooth)

    # ====================================================================== internals
    def _show_kind(self) -> str:
        return "samples" if self.samples_radio.isChecked() else "probs"

    def _message(self, text: str) -> None:
        """A transient message (cleared after a few seconds), also sent to the status bar."""
        self._message_text = text
        self._message_time = time.monotonic()
        self.status.setText(text)
        self.status.setStyleSheet("")  # the palette's text colour: brighter than the state line
        self.statusMessage.emit(text)

    @property
    def last_message(self) -> str:
        """The last message shown (for the main window's status bar, and tests)."""
        return self._message_text

    def _set_session(self, session: DreamSession | None) -> None:
        self.session = session
        self.quality_banner.hide()  # about the model shown before; set_quality for the new one
        self._quality_key = None
        self._pinned = None
        self._display_frozen = False
        self._shown = None
        self._layout = None
        self._mask_version = -1
        self._error_shown = None
        self.image.clear()
        self.image.serial = -1
        self.overlay.clear()
        self.selection.setVisible(False)
        self.selected_chain = 0
        self.chain_label.setText("Selected chain: 0")
        self._user_paused = False
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(False)
        self.pause_button.setText("Pause")
        self.pause_button.blockSignals(False)
        self._stack.setCurrentWidget(self.graphics if session is not None else self.placeholder)
        if session is None:
            self.placeholder.setText("Open a trained model to watch it dream, or start training:\n"
                                     "its chains appear here, live.")
        self._update_controls()

    def _stop_runner(self) -> None:
        if self.runner is not None:
            if not self.runner.stop(timeout=5.0):
                self._message("The dreams' sampler is slow to stop; it will end on its own")
            self.runner = None

    def _should_run(self) -> bool:
        return not self._user_paused and self.isVisible()

    def _sync_running(self) -> None:
        if self.runner is None:
            return
        if self._should_run():
            self.runner.resume()
        elif not self.runner.paused:
            self.runner.pause()

    def _update_controls(self) -> None:
        s = self.session
        free = s is not None and s.source == "sampler"
        for w in (self.chains_spin, self.steps_slider, self.temp_slider, self.probs_radio, self.samples_radio,
                  self.reset_noise_button, self.step_button):
            w.setEnabled(free)
        self._sync_chains(s)
        self.pause_button.setEnabled(s is not None)
        self.pause_button.setToolTip("Pause or resume the dreams (P)" if free else
                                     "Freeze the picture (training goes on) (P)")
        data_reason = None
        if not free:
            data_reason = "Open a model to restart its chains"
        elif self.dataset_images is None:
            data_reason = "Load a dataset first"
        else:
            data_reason = s.check_images(self.dataset_images)
        self.reset_data_button.setEnabled(data_reason is None)
        self.reset_data_button.setToolTip(data_reason or "Restart the chains at random images of the dataset")
        refusal = s.brush_refusal if s is not None else "Open an RBM to paint on its dreams"
        for w in (self.brush_button, self.brush_size, self.clear_mask_button, self.invert_mask_button):
            w.setEnabled(refusal is None)
        if refusal is not None and self.brush_button.isChecked():
            self.brush_button.setChecked(False)
        self.brush_hint.setText(refusal or "Left-drag on a chain: those pixels keep dreaming, the rest of the "
                                           "chain holds still. Right-drag erases.")
        for w in (self.snap_grid_button, self.snap_chain_button, self.export_grid_button, self.export_chain_button):
            w.setEnabled(s is not None)
        if not free:
            tip = "A training run's chains follow its own settings" if s is not None else "No model yet"
            for w in (self.chains_spin, self.steps_slider, self.temp_slider):
                w.setToolTip(tip)


    def _sync_chains(self, s: DreamSession | None) -> None:
        """The Chains box counts what dreams: a texture RBM's large seamless textures (1 to
        TEXTURE_MAX_CHAINS; it dreams one) or a grid's chains (16-256; that count is kept for
        the next grid while a texture shows), also while a texture RBM trains."""
        texture = _dreams_textures(s)
        spin = self.chains_spin
        if not texture and not self._texture_chains:
            return
        if not self._texture_chains:
            self._grid_chains = spin.value()
        self._texture_chains = texture
        spin.blockSignals(True)
        if texture:
            spin.setRange(1, TEXTURE_MAX_CHAINS)
            spin.setSingleStep(1)
            # a training run shows its chains' crops; its model opens dreaming one texture (DreamSession.from_model)
            spin.setValue(s.settings.n_chains if s.source == "sampler" else 1)
            spin.setToolTip(f"How many {TEXTURE_DREAM_SIDE}×{TEXTURE_DREAM_SIDE} seamless textures dream side by side "
                            f"(1-{TEXTURE_MAX_CHAINS}): a texture RBM dreams one large texture, not a grid of chains.")
        else:
            spin.setRange(16, MAX_CHAINS)
            spin.setSingleStep(16)
            spin.setValue(self._grid_chains)
            spin.setToolTip("How many chains dream side by side (16-256). "
                            "Chains you keep keep their state; new ones start from noise.")
        spin.blockSignals(False)

    # ---------------------------------------------------------------------- the display
    def _tick(self) -> None:
        self.display_ticks += 1
        s = self.session
        if s is None:
            return
        self._show_current()
        if s.mask_version != self._mask_version:
            self._refresh_overlay()
        self._update_scrubber()
        self._fps_count_update()
        err = s.error
        if err and err != self._error_shown:
            self._error_shown = err
            self._message(err)

    def _show_current(self) -> None:
        """Put the frame that belongs on screen (the pinned one, else the newest) there."""
        s = self.session
        if s is None:
            return
        frame = s.frame(self._pinned) if self._pinned is not None else s.latest()
        if frame is not None and self._pinned is not None and frame.serial != self._pinned:
            self._pinned = frame.serial  # the pinned frame left the history: hold the oldest
        if frame is not None and (self._shown is None or frame.serial != self._shown.serial):
            self._show(frame)

    def _show(self, frame: DreamFrame) -> None:
        img = mosaic(frame.pixels, PAD)
        if img.shape[2] == 1:
            img = img[..., 0]
        self.image.setImage(img, autoLevels=False, levels=(0, 255))
        self.image.serial = frame.serial
        self._shown = frame
        if self.session is self.document.dreams:
            self.document.dreams_shown = frame.serial  # what the canvas's "Snapshot of the Dreams" takes
        n, h, w, _ = frame.pixels.shape
        if self._layout is None or (self._layout.n, self._layout.height, self._layout.width) != (n, h, w):
            self._layout = GridLayout(n, h, w, PAD)
            if self.selected_chain >= n:
                self._select(0)
            self._place_selection()
            self._refresh_overlay()
            self.fit()

    def _update_scrubber(self) -> None:
        s = self.session
        rng = s.serial_range() if s is not None else None
        if rng is None or self._shown is None:
            return
        first, last = rng
        pos = self._shown.serial - first
        self.scrub.blockSignals(True)
        if self.scrub.maximum() != last - first:
            self.scrub.setMaximum(last - first)
        if not self.scrub.isSliderDown() and self.scrub.value() != pos:
            self.scrub.setValue(max(0, pos))
        self.scrub.blockSignals(False)

    def _fps_count_update(self) -> None:
        now = time.monotonic()
        if now - self._fps_t0 >= 0.5:
            painted = self.image.frames_painted
            self.shown_fps = (painted - self._fps_count) / (now - self._fps_t0)
            self._fps_count, self._fps_t0 = painted, now
            f, s = self._shown, self.session
            if f is None or s is None:
                return
            rng = s.serial_range()
            back = (rng[1] - f.serial) if rng else 0
            where = "live" if back == 0 and self._pinned is None else f"{back} frame(s) back"
            self.scrub_label.setText(f"{where} · step {f.steps:,}")
            if s.source == "sampler":
                st = s.settings
                state = "paused" if self.runner is not None and self.runner.paused else "dreaming"
                unit = ("texture" if s.meta.get("kind") == "texture" else "chain") + ("" if f.n_chains == 1 else "s")
                text = (f"{f.n_chains} {unit} · {st.steps_per_frame} step(s)/frame · T {f.temperature:.2f} · "
                        f"{f.show} · {state} · {self.shown_fps:.0f} frames/s shown")
            else:
                # Training frames come every few steps, often less than once in the half second
                # the painted rate is counted over: their own rate, over the last seconds.
                unit = ("chain" if s.meta.get("kind") in ("rbm", "grbm", "texture") else "image") + ("" if f.n_chains == 1 else "s")
                text = f"{f.n_chains} {unit} · training step {f.steps:,} · {arrival_text(s.frames(), now)}"
            if s.has_mask:
                text += " · brush on"
            if now - self._message_time > MESSAGE_SECONDS and not s.error:
                self.status.setText(text)
                self.status.setStyleSheet(f"color: {MUTED};")

    # -------------------------------------------------------------------------- events
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        screen = self.screen()
        rate = screen.refreshRate() if screen is not None else 60.0
        # A hair faster than the refresh, so timer jitter never drops a refresh's frame.
        self._timer.setInterval(max(4, int(1000.0 / rate) - 1) if rate and rate > 1 else DISPLAY_INTERVAL_MS)
        if not self._timer.isActive():
            self._timer.start()
        self._sync_running()

    def hideEvent(self, event) -> None:  # noqa: N802
        super().hideEvent(event)
        self._timer.stop()
        self._sync_running()  # a hidden tab does not burn the CPU dreaming

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
