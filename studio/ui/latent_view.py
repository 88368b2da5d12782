"""The "Latent" tab: sliders over a VAE's (or the hybrid's autoencoder's) latent space,
decoded live, with randomise / reset and a dream mode.

The model behind it is the document's (:class:`studio.jobs.Session`) explorer,
``session.latent``, a :class:`studio.latent.LatentExplorer` over a private copy of the model: the
view asks the document to make one (:meth:`LatentView.set_model`, in the worker) and shows
whichever the document holds (``events.latent``); with :meth:`LatentView.follow_jobs` it explores
the document's current run by itself once it stops. Every decode runs in one worker thread (:class:`studio.latent.LatentRunner`) that keeps only
the newest request, so dragging a slider faster than the model decodes skips stale values and
never queues them. Each request carries the *whole* latent vector the sliders show, so a
skipped request loses nothing. Results come back to the UI thread through a queued signal.

Sliders: the ``max_sliders`` (16) most used dimensions (VAE: KL per dimension over the set;
hybrid: code variance), each labelled with its dimension and score. Dream mode walks the
latent space smoothly (``LatentExplorer.walk``) at the chosen speed; the sliders follow it.
Moving a slider stops the dream. "To canvas" puts the frame shown on the document's canvas
(as the Dreams tab's snapshots).

Interpolate: two set images A and B (spin boxes over the set's indices, or "Use selected":
the first two indices of :attr:`LatentView.selected_indices`, a callable the main window sets
to the dataset panel's selection), a method (linear / spherical) and a number of steps; "Make
strip" decodes the walk in the worker (``LatentExplorer.interpolate``), shows the frames side by
side and plays them in the preview (a QTimer) until a slider, randomise, reset or a dream takes
the preview back. The strip exports as a PNG (the mosaic) or an animation (GIF / APNG by the
suffix), both with provenance (``studio.canvas.export``), and goes to the canvas as one layer
(``studio.canvas.sources.interpolation_strip``) on the document's canvas.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from models import kinds  # the kinds' records
from studio.jobs import JobState, Session, TrainingJob
from studio.latent import LatentExplorer, LatentRunner
from studio.ui.relay import listen
from studio.ui.widgets import pixel_view

MUTED = "#8a9099"
MAX_SLIDERS = 16
METHODS = (("linear", "linear"), ("spherical", "slerp"))  # (shown, LatentExplorer's name)
PLAY_FPS = 8.0


def _rgba(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, C] (C = 1 or 3) -> opaque uint8 [H, W, 4]."""
    from studio.dreams import to_rgba

    return to_rgba(pixels)


class LatentView(QWidget):
    """The Latent tab, built from a document (a private one when none is given). Public:
    :meth:`set_model`, :meth:`follow_jobs`, :meth:`clear`, :meth:`shutdown`, :meth:`randomise`,
    :meth:`reset`, :meth:`set_dreaming`; signals :attr:`explorerChanged` and
    :attr:`statusMessage`."""

    #: The explorer changed (a new model is ready, or the tab was cleared): read :attr:`explorer`.
    explorerChanged = Signal()
    #: A short message for the status bar.
    statusMessage = Signal(str)
    _ready = Signal(object, object)  # (explorer, first frame), from the worker
    _strip = Signal(object)  # (generation, frames, provenance), from the worker
    _frame = Signal(object)  # (pixels, z, sync), from the worker
    _failed = Signal(str)

    def __init__(self, document: Session | None = None, parent: QWidget | None = None, *,
                 max_sliders: int = MAX_SLIDERS, fps: float = 30.0) -> None:
        super().__init__(parent)
        #: The document: the explorer it holds (``document.latent``), its images and canvas.
        self.document = document if document is not None else Session()
        self.max_sliders = int(max_sliders)
        self.explorer: LatentExplorer | None = None
        self.meta: dict[str, Any] = {}
        self.sliders: dict[int, QLabeledDoubleSlider] = {}  # latent dimension -> slider
        self.z: np.ndarray | None = None  # the vector the sliders show
        self.shown: np.ndarray | None = None  # the frame shown, uint8 [H, W, C]
        self.shown_z: np.ndarray | None = None
        self.frames_shown = 0
        self.last_error = ""
        self._generation = 0  # bumps with every set_model: late results of an old model are dropped
        self._latent_shown: tuple[int, int] | None = None  # (job id, step) of the run explored
        self._shut = False
        self._seed = 0
        self._speed_value = 1.0  # read by the worker when a dream starts
        #: () -> the dataset panel's selected set indices (the main window sets it).
        self.selected_indices: Callable[[], Sequence[int]] | None = None
        #: () -> the set's image file paths, in set order (default: the document's images'): the
        #: interpolation's provenance names its two images' files.
        self.image_paths: Callable[[], Sequence[str]] | None = None
        self.strip_frames: np.ndarray | None = None  # the last interpolation, uint8 [n, H, W, C]
        self.strip_provenance: dict[str, Any] = {}
        self._play_index = 0
        self.play_timer = QTimer(self)
        self.play_timer.setInterval(int(round(1000 / PLAY_FPS)))
        self.play_timer.timeout.connect(self._play_step)
        self.runner = LatentRunner(self._frame.emit, lambda exc: self._failed.emit(str(exc)), fps=fps, owner=self)
        self._ready.connect(self._on_ready)
        self._strip.connect(self._on_strip)
        self._frame.connect(self._on_frame)
        self._failed.connect(self._on_failed)
        self._build()
        self._update_controls()
        listen(self, self.document.events.latent, self._on_latent)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # ============================================================================= layout
    def _build(self) -> None:
        self.caption = QLabel(f"<span style='color:{MUTED}'>No model yet: train or open a VAE or an "
                              f"autoencoder + RBM to walk its latent space.</span>")
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.caption.setWordWrap(True)

        self.graphics, self.viewbox = pixel_view()
        self.viewbox.setMouseEnabled(False, False)
        self.image = pg.ImageItem(axisOrder="row-major", autoDownsample=False)
        self.viewbox.addItem(self.image)

        left = QVBoxLayout()
        left.setContentsMargins(0, 0, 0, 0)
        left.addWidget(self.caption)
        left.addWidget(self.graphics, 1)
        self.status = QLabel("")
        self.status.setStyleSheet(f"color: {MUTED};")
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        left.addWidget(self.status)

        # --- buttons ------------------------------------------------------------------
        self.randomise_button = QPushButton("Randomise")
        self.randomise_button.setToolTip("A fresh point of the latent space (the prior, or the set's spread)")
        self.randomise_button.clicked.connect(lambda: self.randomise())
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the centre (the prior's mean, or the set's mean code)")
        self.reset_button.clicked.connect(self.reset)
        self.canvas_button = QPushButton("To canvas")
        self.canvas_button.setToolTip("Add the frame shown to the canvas as a layer")
        self.canvas_button.clicked.connect(self.send_to_canvas)
        buttons = QHBoxLayout()
        for b in (self.randomise_button, self.reset_button, self.canvas_button):
            buttons.addWidget(b)

        dream_box = QGroupBox("Dream mode")
        dream_form = QFormLayout(dream_box)
        self.dream_button = QPushButton("Dream")
        self.dream_button.setCheckable(True)
        self.dream_button.setToolTip("A smooth random walk through the latent space")
        self.dream_button.toggled.connect(self.set_dreaming)
        self.speed = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.speed.setRange(0.05, 5.0)
        self.speed.setValue(1.0)
        self.speed.setToolTip("How fast the dream moves")
        self.speed.valueChanged.connect(self._on_speed)
        dream_form.addRow(self.dream_button)
        dream_form.addRow("Speed", self.speed)

        self.interp_box = self._build_interpolation()

        self.slider_box = QWidget()
        self.slider_form = QFormLayout(self.slider_box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.slider_box)

        right = QVBoxLayout()
        right.addLayout(buttons)
        right.addWidget(dream_box)
        right.addWidget(self.interp_box)
        right.addWidget(QLabel("Latent dimensions (most used first)"))
        right.addWidget(scroll, 1)
        right_widget = QWidget()
        right_widget.setLayout(right)
        right_widget.setMinimumWidth(320)

        root = QHBoxLayout(self)
        root.addLayout(left, 1)
        root.addWidget(right_widget)

    def _build_interpolation(self) -> QGroupBox:
        box = QGroupBox("Interpolate")
        form = QFormLayout(box)
        self.spin_a, self.spin_b = QSpinBox(), QSpinBox()
        for spin, which in ((self.spin_a, "A"), (self.spin_b, "B")):
            spin.setRange(0, 0)
            spin.setToolTip(f"Image {which}: its index in the set (the thumbnails' order)")
        self.use_selected_button = QPushButton("Use selected")
        self.use_selected_button.setToolTip("A and B from the images selected in the dataset panel")
        self.use_selected_button.clicked.connect(self.use_selected)
        ab = QHBoxLayout()
        ab.addWidget(QLabel("A"))
        ab.addWidget(self.spin_a, 1)
        ab.addWidget(QLabel("B"))
        ab.addWidget(self.spin_b, 1)
        ab.addWidget(self.use_selected_button)
        form.addRow(ab)
        self.method_combo = QComboBox()
        for shown, name in METHODS:
            self.method_combo.addItem(shown, name)
        self.method_combo.setToolTip("linear: a straight line between the two codes; spherical: "
                                     "a great-circle walk (keeps the codes' norm)")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(2, 64)
        self.steps_spin.setValue(8)
        self.steps_spin.setToolTip("Frames in the strip, both ends included")
        row = QHBoxLayout()
        row.addWidget(self.method_combo, 1)
        row.addWidget(QLabel("Steps"))
        row.addWidget(self.steps_spin)
        form.addRow("Method", row)
        self.make_strip_button = QPushButton("Make strip")
        self.make_strip_button.setToolTip("Decode the walk from A to B and play it in the preview")
        self.make_strip_button.clicked.connect(lambda: self.make_strip())
        self.strip_label = QLabel()
        self.strip_label.setMinimumHeight(40)
        self.strip_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.strip_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.export_png_button = QPushButton("Export strip PNG…")
        self.export_png_button.clicked.connect(lambda: self.export_strip_png())
        self.export_anim_button = QPushButton("Export animation…")
        self.export_anim_button.setToolTip("An animated GIF or APNG (by the file's suffix)")
        self.export_anim_button.clicked.connect(lambda: self.export_animation())
        self.strip_canvas_button = QPushButton("Strip to canvas")
        self.strip_canvas_button.setToolTip("Add the strip to the canvas as one layer")
        self.strip_canvas_button.clicked.connect(self.strip_to_canvas)
        form.addRow(self.make_strip_button)
        form.addRow(self.strip_label)
        out = QHBoxLayout()
        for b in (self.export_png_button, self.export_anim_button, self.strip_canvas_button):
            out.addWidget(b)
        form.addRow(out)
        return box

    # ============================================================================= public
    def set_model(self, model: Any, images: Any = None, meta: Mapping[str, Any] | None = None, *, lock: Any = None) -> None:
        """Explore ``model`` (a VAE, a hybrid or an autoencoder; copied, under ``lock`` when
        given) with the set ``images`` (uint8 [N, C, H, W]) for the slider order. The copy and
        the encoding run in the worker; the sliders appear when it is done."""
        self.set_dreaming(False)
        self._generation += 1
        self.meta = dict(meta or {})
        self._message("Reading the latent space…")
        document, meta = self.document, self.meta

        def build():  # the document makes the explorer and announces it (here, on the worker)
            document.explore(model, images, meta, lock=lock)

        self.runner.request(build, keep=True)  # a new explorer is never dropped

    def _on_latent(self, explorer: LatentExplorer | None) -> None:
        """The document's explorer changed (UI thread): its first frame is decoded in the
        worker, then the sliders appear (:meth:`_on_ready`)."""
        if explorer is None:
            self._clear_view()
            return
        if explorer is not self.document.latent:
            return  # a newer one was made since
        generation = self._generation
        self.meta = dict(explorer.meta or self.meta)

        def first_frame() -> None:  # on the worker; returns nothing, so it delivers no frame
            self._ready.emit(explorer, (generation, explorer.current(), explorer.z.numpy().copy()))

        self.runner.request(first_frame, keep=True)

    def clear(self) -> None:
        """Explore nothing: the document holds no explorer."""
        self.document.set_latent(None)
        self._clear_view()

    def _clear_view(self) -> None:
        self.set_dreaming(False)
        self._generation += 1
        self.explorer = None
        self.explorerChanged.emit()
        self._rebuild_sliders()
        self.image.clear()
        self.shown = self.shown_z = self.z = None
        self.stop_playing()
        self.strip_frames = None
        self.strip_label.clear()
        self._update_controls()

    def shutdown(self) -> None:
        self._shut = True
        self.play_timer.stop()
        self.runner.stop()

    def randomise(self, seed: int | None = None) -> None:
        ex = self.explorer
        if ex is None:
            return
        self.set_dreaming(False)
        if seed is None:
            self._seed += 1
            seed = self._seed
        gen = self._generation
        self.runner.request(lambda: (gen, ex.randomise(seed), ex.z.numpy().copy(), True))

    def reset(self) -> None:
        ex = self.explorer
        if ex is None:
            return
        self.set_dreaming(False)
        gen = self._generation
        self.runner.request(lambda: (gen, ex.reset(), ex.z.numpy().copy(), True))

    def set_dreaming(self, on: bool) -> None:
        on = bool(on) and self.explorer is not None
        if self.dream_button.isChecked() != on:
            self.dream_button.blockSignals(True)
            self.dream_button.setChecked(on)
            self.dream_button.blockSignals(False)
        if not on:
            self.runner.set_dreaming(None)
            return
        ex, gen = self.explorer, self._generation
        start = None if self.z is None else self.z.copy()
        walk = None

        def step():  # runs on the worker: the walk starts there, from the vector the sliders show
            nonlocal walk
            if walk is None:
                if start is not None:
                    ex.z = torch.from_numpy(start)
                walk = ex.walk(speed=self._speed_value)
            return (gen, next(walk), ex.z.numpy().copy(), True)

        self.runner.set_dreaming(step)

    @property
    def dreaming(self) -> bool:
        return self.runner.dreaming

    # ============================================================================= the current run
    def follow_jobs(self, controller: Any) -> None:
        """Explore the document's current run by itself once it is not training; the jobs'
        changes of state reach the UI thread through ``controller`` (its queued signals)."""
        listen(self, self.document.events.current_job, self.explore_with)
        controller.state_changed.connect(self._run_state)

    def stop_following(self) -> None:
        """Follow no more (the window is closing: no new explorer may be built)."""
        self._shut = True

    def _run_state(self, job_id: int, state: str) -> None:
        job = self.document.current_job
        if job is not None and job.id == job_id and state in ("stopped", "done"):
            self.explore_with(job)

    def explore_with(self, job: TrainingJob | None) -> None:
        """Explore ``job``'s model (a private copy, taken under the job's lock in the worker)
        when it is not training, with the set's images for the slider order."""
        if job is None or job.model is None or self._shut:
            return
        record = kinds.KINDS.get(job.kind)
        if record is None or not record.explorable or job.state in (JobState.RUNNING, JobState.PAUSED):
            return
        key = (job.id, int(getattr(job, "step", 0) or 0))
        if key == self._latent_shown:
            return
        self._latent_shown = key
        images = self.document.images.images if self.document.images is not None else None
        if images is not None and tuple(images.shape[1:]) != tuple(getattr(job.model, "image_shape", ())):
            images = None  # another preprocessing than the model's: explore without the set
        meta = {"kind": job.kind, "title": f"{job.title} · run #{job.id}", "job_id": job.id}
        if job.path is not None:
            meta["path"] = str(job.path)
        self.set_model(job.model, images, meta, lock=job.step_lock)

    def send_to_canvas(self) -> None:
        if self.shown is None:
            return
        prov = {"source": "model-frame", "model": self.meta.get("kind") or (self.explorer.kind if self.explorer else None),
                "latent": [float(v) for v in self.shown_z] if self.shown_z is not None else None,
                **{k: v for k, v in self.meta.items() if k in ("title", "path", "job_id", "checkpoint_sha256")}}
        try:
            self.document.add_snapshot_layer(_rgba(self.shown), prov)
        except ValueError as exc:  # pixels that make no layer
            self._message(f"The frame could not go to the canvas: {exc}")
            return
        self._message("Frame sent to the canvas")

    # ====================================================================== interpolation
    def set_count(self) -> int:
        """How many set images the explorer encoded (0: none)."""
        ex = self.explorer
        return 0 if ex is None or ex.means is None else int(len(ex.means))

    def use_selected(self) -> None:
        """A and B from the dataset panel's selection (the first two selected; one: A only)."""
        if self.selected_indices is None:
            return
        try:
            rows = sorted(int(i) for i in self.selected_indices())
        except Exception:  # noqa: BLE001 - no selection to offer
            rows = []
        n = self.set_count()
        rows = [r for r in rows if 0 <= r < n]
        if not rows:
            self._message("Select one or two images in the dataset panel first")
            return
        self.spin_a.setValue(rows[0])
        if len(rows) > 1:
            self.spin_b.setValue(rows[1])

    def make_strip(self, a: int | None = None, b: int | None = None, steps: int | None = None,
                   method: str | None = None) -> None:
        """Decode the walk from set image ``a`` to ``b`` (default: the controls') in the worker;
        the frames arrive in :attr:`strip_frames` and play in the preview."""
        ex = self.explorer
        if ex is None or self.set_count() == 0:
            return
        a = self.spin_a.value() if a is None else int(a)
        b = self.spin_b.value() if b is None else int(b)
        steps = self.steps_spin.value() if steps is None else int(steps)
        method = self.method_combo.currentData() if method is None else str(method)
        self.set_dreaming(False)
        gen = self._generation
        prov = {"source": "interpolation", "model": self.meta.get("kind") or ex.kind, "from_index": a,
                "to_index": b, "steps": steps, "method": method,
                **{k: v for k, v in self.meta.items() if k in ("title", "path", "job_id", "checkpoint_sha256")}}
        paths = self._set_paths()
        for key, index in (("from_file", a), ("to_file", b)):  # the images' own names, not only their places
            if 0 <= index < len(paths):
                prov[key] = Path(str(paths[index])).name
                prov[key.replace("file", "path")] = str(paths[index])
        self._message("Interpolating…")

        def run():
            frames = ex.interpolate(a, b, steps, method)
            self._strip.emit((gen, np.ascontiguousarray(frames), prov))
            return None

        self.runner.request(run, keep=True)  # a slider moved meanwhile does not drop the strip

    def strip_image(self) -> np.ndarray | None:
        """The strip's frames side by side: uint8 [H, n·W, C]."""
        if self.strip_frames is None:
            return None
        return np.concatenate(list(self.strip_frames), axis=1)

    def export_strip_png(self, path: str | Path | None = None, scale: int = 1, smooth: bool = False) -> Path | None:
        """Save the strip as a PNG with its provenance, enlarged `scale`× (nearest, or `smooth`);
        with no ``path`` it asks where, at the export scale of File → Export → Scale."""
        if self.strip_frames is None:
            return None
        if path is None:
            path, scale, smooth = self._export_path("Export strip PNG", "interpolation", ".png", "PNG image (*.png)")
            if not path:
                return None
        from studio.images import save_png, upscale

        try:
            out = save_png(path, upscale(self.strip_image(), scale, smooth), self._scaled_provenance(scale, smooth))
        except (OSError, ValueError) as exc:
            self._message(f"Could not save the strip: {exc}")
            return None
        self._message(f"Strip saved to {out}")
        return out

    def export_animation(self, path: str | Path | None = None, fps: float = PLAY_FPS, scale: int = 1,
                         smooth: bool = False) -> Path | None:
        """Save the strip's frames as an animated GIF or APNG (by the suffix), with provenance,
        enlarged `scale`×; with no ``path`` it asks where, at the export scale of File → Export."""
        if self.strip_frames is None:
            return None
        if path is None:
            path, scale, smooth = self._export_path("Export animation", "interpolation", ".gif",
                                                    "Animated GIF (*.gif);;Animated PNG (*.png *.apng)")
            if not path:
                return None
        from studio.canvas.export import save_animation
        from studio.images import upscale

        try:
            frames = [upscale(f, scale, smooth) for f in self.strip_frames]
            out = save_animation(frames, path, fps, provenance=self._scaled_provenance(scale, smooth))
        except (OSError, ValueError) as exc:
            self._message(f"Could not save the animation: {exc}")
            return None
        self._message(f"Animation saved to {out}")
        return out

    def _set_paths(self) -> list[str]:
        """The set's image files in set order: from :attr:`image_paths`, else from the document's
        images (the view's, or the main window's); [] when there are none."""
        if self.image_paths is not None:
            return [str(p) for p in self.image_paths()]
        session = getattr(self, "document", None) or getattr(self.window(), "session", None)
        return [str(p) for p in (getattr(getattr(session, "images", None), "paths", None) or [])]

    def _export_path(self, title: str, stem: str, suffix: str, filters: str) -> tuple[str, int, bool]:
        """(path or "", scale, smooth) from a save dialog that opens in the last export folder
        (remembered), at the export scale of File → Export → Scale."""
        from studio.ui.settings import export_prefs

        prefs = export_prefs()
        factor, smooth = prefs.scale()
        name = stem + (f"-x{factor}" if factor > 1 else "") + suffix
        path, _ = QFileDialog.getSaveFileName(self, f"{title} (×{factor}, File → Export → Scale)",
                                              prefs.start(name), filters)
        if path:
            if not Path(path).suffix:
                path += suffix
            prefs.remember(path)
        return path, factor, smooth

    def _scaled_provenance(self, scale: int, smooth: bool) -> dict[str, Any]:
        prov = dict(self.strip_provenance)
        if scale > 1:
            prov.update(scale=int(scale), smooth=bool(smooth))
        return prov

    def strip_to_canvas(self) -> None:
        """The strip as one layer (``interpolation_strip``), centred on the document's canvas."""
        if self.strip_frames is None:
            return
        from studio.canvas.sources import interpolation_strip

        layer = interpolation_strip(self.strip_frames, self.strip_provenance)
        self.document.add_layer(layer, center=True)
        self._message("Strip sent to the canvas")

    @property
    def playing(self) -> bool:
        return self.play_timer.isActive()

    def stop_playing(self) -> None:
        self.play_timer.stop()

    def _on_strip(self, payload) -> None:
        generation, frames, prov = payload
        if generation != self._generation:
            return
        self.strip_frames = frames
        self.strip_provenance = dict(prov)
        mosaic = self.strip_image()
        from studio.ui.qimage import array_to_qimage

        qimg = array_to_qimage(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic[..., :3])
        pix = QPixmap.fromImage(qimg)
        height = max(40, min(96, 2 * frames.shape[1]))
        self.strip_label.setPixmap(pix.scaledToHeight(height, Qt.TransformationMode.FastTransformation))
        self.strip_label.setToolTip(f"{len(frames)} frames, {prov['method']}, image {prov['from_index']} → "
                                    f"{prov['to_index']}")
        self._play_index = 0
        self._play_step()
        self.play_timer.start()
        self._update_controls()
        self._message(f"Interpolation: {len(frames)} frames")

    def _play_step(self) -> None:
        frames = self.strip_frames
        if frames is None or not len(frames):
            self.play_timer.stop()
            return
        pixels = frames[self._play_index % len(frames)]
        self._play_index = (self._play_index + 1) % len(frames)
        self.image.setImage(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, levels=(0, 255), autoLevels=False)

    # ============================================================================ internals
    def _rebuild_sliders(self) -> None:
        while self.slider_form.rowCount():
            self.slider_form.removeRow(0)
        self.sliders = {}
        ex = self.explorer
        if ex is None:
            return
        for dim in ex.order[: self.max_sliders]:
            s = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            low, high = ex.slider_range(dim)
            s.setRange(low, high)
            s.setDecimals(2)
            s.setValue(float(ex.z[dim]))
            s.valueChanged.connect(lambda value, d=dim: self._on_slider(d, value))
            score = float(ex.usage[dim])
            label = QLabel(f"z{dim}")
            label.setToolTip(f"dimension {dim}: {'KL' if ex.kind == 'vae' else 'variance'} {score:.3g}")
            self.slider_form.addRow(label, s)
            self.sliders[dim] = s

    def _on_ready(self, explorer: LatentExplorer, payload) -> None:
        generation, pixels, z = payload
        if generation != self._generation or explorer is not self.document.latent:
            return
        self.explorer = explorer
        self.z = z.copy()
        self._rebuild_sliders()
        what = {"vae": "VAE latent", "hybrid": "autoencoder code", "ae": "autoencoder code"}[explorer.kind]
        title = self.meta.get("title") or explorer.kind
        n = 0 if explorer.means is None else len(explorer.means)
        self.caption.setText(f"<b>{title}</b> — {explorer.latent_dim}-dimensional {what}"
                             + (f", ordered over {n} images" if n else ""))
        self.stop_playing()
        self.strip_frames = None
        self.strip_label.clear()
        top = max(0, n - 1)
        for spin, value in ((self.spin_a, 0), (self.spin_b, top)):
            spin.setRange(0, top)
            spin.setValue(value)
        self._show(pixels, z)
        self._update_controls()
        self.explorerChanged.emit()
        self._message("Ready")

    def _on_slider(self, dim: int, value: float) -> None:
        ex = self.explorer
        if ex is None or self.z is None:
            return
        if self.dreaming:
            self.set_dreaming(False)
        self.z[dim] = value
        z, gen = self.z.copy(), self._generation
        self.runner.request(lambda: (gen, ex.set_latent(z), z, False))

    def _on_speed(self, value: float) -> None:
        self._speed_value = float(value)
        ex = self.explorer
        if ex is not None and ex.walker is not None:
            ex.walker.speed = float(value)

    def _on_frame(self, result) -> None:
        generation, pixels, z, sync = result
        if generation != self._generation:
            return
        self.stop_playing()
        if sync:
            self.z = np.array(z, dtype=np.float32)
            for dim, s in self.sliders.items():
                s.blockSignals(True)
                s.setValue(float(z[dim]))
                s.blockSignals(False)
        self._show(pixels, z)

    def _show(self, pixels: np.ndarray, z) -> None:
        self.shown = pixels
        self.shown_z = np.array(z, dtype=np.float32)
        self.image.setImage(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, levels=(0, 255), autoLevels=False)
        self.frames_shown += 1

    def _on_failed(self, text: str) -> None:
        self.last_error = text
        self._message(f"Latent explorer: {text}")

    def _message(self, text: str) -> None:
        self.status.setText(text)
        self.statusMessage.emit(text)

    def _update_controls(self) -> None:
        on = self.explorer is not None
        for w in (self.randomise_button, self.reset_button, self.canvas_button, self.dream_button, self.speed):
            w.setEnabled(on)
        has_set = on and self.set_count() > 0
        for w in (self.spin_a, self.spin_b, self.use_selected_button, self.method_combo, self.steps_spin,
                  self.make_strip_button):
            w.setEnabled(has_set)
        self.use_selected_button.setEnabled(has_set and self.selected_indices is not None)
        has_strip = self.strip_frames is not None
        for w in (self.export_png_button, self.export_anim_button, self.strip_canvas_button):
            w.setEnabled(has_strip)

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)


class DenoiseDialog(QDialog):
    """An image beside its pass through the autoencoder, with "To canvas" (the denoised one,
    through :attr:`toCanvas`: uint8 RGBA [H, W, 4] and provenance)."""

    toCanvas = Signal(object, dict)

    def __init__(self, original: np.ndarray, denoised: np.ndarray, provenance: Mapping[str, Any] | None = None,
                 parent: QWidget | None = None, *, zoom: int = 4) -> None:
        super().__init__(parent)
        from studio.ui.qimage import array_to_qimage

        self.setWindowTitle("Denoised through the autoencoder")
        self.original = np.asarray(original)
        self.denoised = np.asarray(denoised)
        self.provenance = dict(provenance or {})
        pictures = QHBoxLayout()
        for title, pixels in (("Original", self.original), ("Denoised", self.denoised)):
            col = QVBoxLayout()
            label = QLabel()
            img = array_to_qimage(pixels[..., 0] if pixels.shape[-1] == 1 else pixels[..., :3])
            h, w = pixels.shape[:2]
            label.setPixmap(QPixmap.fromImage(img).scaled(w * zoom, h * zoom, Qt.AspectRatioMode.KeepAspectRatio,
                                                          Qt.TransformationMode.FastTransformation))
            col.addWidget(QLabel(title))
            col.addWidget(label)
            pictures.addLayout(col)
        self.canvas_button = QPushButton("To canvas")
        self.canvas_button.setToolTip("Add the denoised image to the canvas as a layer")
        self.canvas_button.clicked.connect(self.send_to_canvas)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.canvas_button)
        buttons.addWidget(close)
        root = QVBoxLayout(self)
        root.addLayout(pictures)
        root.addLayout(buttons)

    def send_to_canvas(self) -> None:
        self.toCanvas.emit(_rgba(self.denoised), dict(self.provenance))
