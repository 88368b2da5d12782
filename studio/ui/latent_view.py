"""The "Latent" tab: sliders over a VAE's (or the hybrid's autoencoder's) latent space,
decoded live, with randomise / reset and a dream mode.

The model behind it is a :class:`studio.latent.LatentExplorer` (a private copy of the model);
every decode runs in one worker thread (:class:`studio.latent.LatentRunner`) that keeps only
the newest request, so dragging a slider faster than the model decodes skips stale values and
never queues them. Each request carries the *whole* latent vector the sliders show, so a
skipped request loses nothing. Results come back to the UI thread through a queued signal.

Sliders: the ``max_sliders`` (16) most used dimensions (VAE: KL per dimension over the set;
hybrid: code variance), each labelled with its dimension and score. Dream mode walks the
latent space smoothly (``LatentExplorer.walk``) at the chosen speed; the sliders follow it.
Moving a slider stops the dream. "To canvas" hands the frame shown to the Canvas tab through
:attr:`LatentView.frameToCanvas` (the same shape as the Dreams tab's snapshots).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from studio.latent import LatentExplorer, LatentRunner

MUTED = "#8a9099"
MAX_SLIDERS = 16


def _rgba(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, C] (C = 1 or 3) -> opaque uint8 [H, W, 4]."""
    from studio.dreams import to_rgba

    return to_rgba(pixels)


class LatentView(QWidget):
    """The Latent tab. Public: :meth:`set_model`, :meth:`clear`, :meth:`shutdown`,
    :meth:`randomise`, :meth:`reset`, :meth:`set_dreaming`; signals :attr:`frameToCanvas`
    and :attr:`statusMessage`."""

    #: A frame for the canvas: (uint8 RGBA [H, W, 4], provenance dict).
    frameToCanvas = Signal(object, dict)
    #: A short message for the status bar.
    statusMessage = Signal(str)
    _ready = Signal(object, object)  # (explorer, first frame), from the worker
    _frame = Signal(object)  # (pixels, z, sync), from the worker
    _failed = Signal(str)

    def __init__(self, parent: QWidget | None = None, *, max_sliders: int = MAX_SLIDERS, fps: float = 30.0) -> None:
        super().__init__(parent)
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
        self._seed = 0
        self._speed_value = 1.0  # read by the worker when a dream starts
        self.runner = LatentRunner(self._frame.emit, lambda exc: self._failed.emit(str(exc)), fps=fps)
        self._ready.connect(self._on_ready)
        self._frame.connect(self._on_frame)
        self._failed.connect(self._on_failed)
        self._build()
        self._update_controls()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    # ============================================================================= layout
    def _build(self) -> None:
        self.caption = QLabel(f"<span style='color:{MUTED}'>No model yet: train or open a VAE or an "
                              f"autoencoder + RBM to walk its latent space.</span>")
        self.caption.setTextFormat(Qt.TextFormat.RichText)
        self.caption.setWordWrap(True)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setAntialiasing(False)
        self.graphics.setBackground("#1b1d21")
        self.viewbox = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
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

        self.slider_box = QWidget()
        self.slider_form = QFormLayout(self.slider_box)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.slider_box)

        right = QVBoxLayout()
        right.addLayout(buttons)
        right.addWidget(dream_box)
        right.addWidget(QLabel("Latent dimensions (most used first)"))
        right.addWidget(scroll, 1)
        right_widget = QWidget()
        right_widget.setLayout(right)
        right_widget.setMinimumWidth(320)

        root = QHBoxLayout(self)
        root.addLayout(left, 1)
        root.addWidget(right_widget)

    # ============================================================================= public
    def set_model(self, model: Any, images: Any = None, meta: Mapping[str, Any] | None = None, *, lock: Any = None) -> None:
        """Explore ``model`` (a VAE, a hybrid or an autoencoder; copied, under ``lock`` when
        given) with the set ``images`` (uint8 [N, C, H, W]) for the slider order. The copy and
        the encoding run in the worker; the sliders appear when it is done."""
        self.set_dreaming(False)
        self._generation += 1
        generation = self._generation
        self.meta = dict(meta or {})
        self._message("Reading the latent space…")

        def build():
            explorer = LatentExplorer(model, images, lock=lock)
            self._ready.emit(explorer, (generation, explorer.current(), explorer.z.numpy().copy()))
            return None

        self.runner.request(build)

    def clear(self) -> None:
        self.set_dreaming(False)
        self._generation += 1
        self.explorer = None
        self._rebuild_sliders()
        self.image.clear()
        self.shown = self.shown_z = self.z = None
        self._update_controls()

    def shutdown(self) -> None:
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

    def send_to_canvas(self) -> None:
        if self.shown is None:
            return
        prov = {"source": "model-frame", "model": self.meta.get("kind") or (self.explorer.kind if self.explorer else None),
                "latent": [float(v) for v in self.shown_z] if self.shown_z is not None else None,
                **{k: v for k, v in self.meta.items() if k in ("title", "path", "job_id", "checkpoint_sha256")}}
        self.frameToCanvas.emit(_rgba(self.shown), prov)
        self._message("Frame sent to the canvas")

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
        if generation != self._generation:
            return
        self.explorer = explorer
        self.z = z.copy()
        self._rebuild_sliders()
        what = {"vae": "VAE latent", "hybrid": "autoencoder code", "ae": "autoencoder code"}[explorer.kind]
        title = self.meta.get("title") or explorer.kind
        n = 0 if explorer.means is None else len(explorer.means)
        self.caption.setText(f"<b>{title}</b> — {explorer.latent_dim}-dimensional {what}"
                             + (f", ordered over {n} images" if n else ""))
        self._show(pixels, z)
        self._update_controls()
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

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
