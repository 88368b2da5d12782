"""The Canvas tab's dialogs: add a model layer (and the models it offers), canvas size."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

from PySide6.QtCore import QSignalBlocker
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.canvas import MAX_CANVAS_SIZE
from studio.ui.canvas.widgets import _qcolour, _rgb, CANVAS_PRESETS, ColourButton


@dataclass
class ModelChoice:
    """A model the add-layer dialog offers: its label, kind, the model, the lock to
    hold while copying it (a job's ``step_lock``) and its checkpoint hash if known."""

    label: str
    kind: str
    model: Any
    lock: Any = None
    checkpoint_sha256: str | None = None
    step: int = 0


def model_choices(session: Any) -> list[ModelChoice]:
    """The session's jobs whose models' dreams make textures (`models.kinds`), newest first."""
    from models import kinds

    texture = kinds.keys("texture")
    out = []
    for job in reversed(list(getattr(session, "jobs", []) or [])):
        model = getattr(job, "model", None)
        if model is None or job.kind not in texture:
            continue
        ckpt = getattr(job, "checkpoint", None)
        sha = getattr(ckpt, "sha256", None) if ckpt is not None and getattr(job, "trainer", None) is None else None
        where = f" · {job.path.name}" if getattr(job, "path", None) else ""
        out.append(ModelChoice(f"{job.title} · run #{job.id} · step {job.step:,}{where}", job.kind, model,
                               getattr(job, "step_lock", None), sha, int(job.step or 0)))
    return out


class ModelLayerDialog(QDialog):
    """Choose a model and how to sample it: a tiled texture (one chain after N Gibbs
    steps; mirrored tiling is seamless) or a single frame; seed, temperature, scale."""

    def __init__(self, choices: Sequence[ModelChoice], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Layer from a model")
        self.choices = list(choices)
        form = QFormLayout()
        self.model_box = QComboBox()
        for c in self.choices:
            self.model_box.addItem(c.label)
        self.model_box.setToolTip("A trained (or training) model; it is copied, so training goes on undisturbed")
        self.make_box = QComboBox()
        self.make_box.setToolTip("Mirrored tiling flips every other tile so all edges meet: a seamless texture")
        self.steps = QSpinBox()
        self.steps.setRange(0, 100_000)
        self.steps.setValue(500)
        self.steps.setSingleStep(100)
        self.steps.setToolTip("Gibbs steps from noise before the picture is taken (more: a better-mixed dream)")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(random.randrange(100_000))
        self.seed.setToolTip("The same seed, model and steps give the same picture")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.05, 10.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setValue(1.0)
        self.temperature.setToolTip("Sampling temperature: below 1 calmer, above 1 wilder")
        self.show_box = QComboBox()
        self.show_box.addItem("Probabilities (smooth)", "probs")
        self.show_box.addItem("Samples (binary grain)", "samples")
        self.scale = QDoubleSpinBox()
        self.scale.setRange(0.1, 128.0)
        self.scale.setDecimals(2)
        self.scale.setValue(4.0)
        self.scale.setToolTip("Upscale factor (bicubic): a 28 px dream at ×4 is a 112 px tile")
        form.addRow("Model", self.model_box)
        form.addRow("Make", self.make_box)
        form.addRow("Gibbs steps", self.steps)
        form.addRow("Seed", self.seed)
        form.addRow("Temperature", self.temperature)
        form.addRow("Show", self.show_box)
        form.addRow("Scale", self.scale)
        self.model_box.currentIndexChanged.connect(self._model_chosen)
        self.make_box.currentIndexChanged.connect(self._make_chosen)
        self._model_chosen()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Add Layer")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(buttons)

    def _model_chosen(self, *_: Any) -> None:
        """What the chosen model can make: a texture RBM fills the canvas at its own size
        (seamless, nothing scaled, 40 sweeps from noise); the others' dreams are tiled, placed
        or shown as a frame, scaled up."""
        texture = bool(self.choices) and self.choices[self.model_box.currentIndex()].kind == "texture"
        makes = ((("Texture filling the canvas (seamless, at its own size)", "fill"),) if texture else
                 (("Texture, mirrored tiles (seamless)", "mirror"), ("Texture, plain tiles", "plain"),
                  ("Single dream, placed once", "single"), ("Frame (VAE sample / hybrid dream)", "frame")))
        if [self.make_box.itemData(i) for i in range(self.make_box.count())] != [data for _, data in makes]:
            self.make_box.clear()
            for text, data in makes:
                self.make_box.addItem(text, data)
            from models.conv_rbm import DEFAULT_SWEEPS

            self.steps.setValue(DEFAULT_SWEEPS if texture else 500)
        self.scale.setEnabled(not texture)
        self.scale.setToolTip("A texture RBM's texture is made at the canvas's size: nothing is scaled" if texture else
                              "Upscale factor (bicubic): a 28 px dream at ×4 is a 112 px tile")

        self._make_chosen()

    def _make_chosen(self, *_: Any) -> None:
        """Only the settings that apply: a VAE's frame is a prior draw decoded (no Gibbs steps;
        the temperature scales the draw), and a frame always shows probabilities."""
        kind = self.choices[self.model_box.currentIndex()].kind if self.choices else ""
        frame = self.make_box.currentData() == "frame"
        vae_frame = frame and kind == "vae"
        self.steps.setEnabled(not vae_frame)
        self.steps.setToolTip("A VAE's frame is one prior draw, decoded: there are no Gibbs steps" if vae_frame else
                              "Gibbs steps from noise before the picture is taken (more: a better-mixed dream)")
        self.temperature.setToolTip("A VAE's frame: the prior draw's spread (below 1 closer to the average image)"
                                    if vae_frame else "Sampling temperature: below 1 calmer, above 1 wilder")
        self.show_box.setEnabled(not frame)

    def values(self) -> dict[str, Any]:
        return {"choice": self.choices[self.model_box.currentIndex()], "make": self.make_box.currentData(),
                "steps": self.steps.value(), "seed": self.seed.value(), "temperature": self.temperature.value(),
                "show": self.show_box.currentData(), "scale": self.scale.value()}


class CanvasSizeDialog(QDialog):
    """Canvas size (presets up to 4096 × 4096, or custom) and background colour or transparency."""

    def __init__(self, width: int, height: int, background: tuple[float, ...] | None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Canvas size")
        self.preset = QComboBox()
        self.preset.addItem("Custom", None)
        for label, w, h in CANVAS_PRESETS:
            self.preset.addItem(label, (w, h))
        self.width_box, self.height_box = QSpinBox(), QSpinBox()
        for box, value in ((self.width_box, width), (self.height_box, height)):
            box.setRange(1, MAX_CANVAS_SIZE)
            box.setValue(value)
            box.setSuffix(" px")
            box.valueChanged.connect(self._sync_preset)
        self.transparent = QCheckBox("Transparent background")
        self.transparent.setChecked(background is None)
        self.transparent.setToolTip("No background colour: exports keep transparency")
        self.colour = ColourButton(_qcolour(background) if background is not None else QColor("#ffffff"),
                                   "Background colour")
        self.colour.setEnabled(background is not None)
        self.transparent.toggled.connect(lambda on: self.colour.setEnabled(not on))
        self.note = QLabel()
        self.note.setStyleSheet("color: #8a9099")
        self.note.setWordWrap(True)
        self.preset.currentIndexChanged.connect(self._preset_chosen)
        form = QFormLayout()
        form.addRow("Preset", self.preset)
        form.addRow("Width", self.width_box)
        form.addRow("Height", self.height_box)
        row = QHBoxLayout()
        row.addWidget(self.colour)
        row.addWidget(self.transparent)
        row.addStretch(1)
        form.addRow("Background", row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.note)
        lay.addWidget(buttons)
        self._sync_preset()

    def _preset_chosen(self) -> None:
        size = self.preset.currentData()
        if size:
            with QSignalBlocker(self.width_box), QSignalBlocker(self.height_box):
                self.width_box.setValue(size[0])
                self.height_box.setValue(size[1])
        self._sync_note()

    def _sync_preset(self) -> None:
        size = (self.width_box.value(), self.height_box.value())
        index = next((i for i in range(1, self.preset.count()) if self.preset.itemData(i) == size), 0)
        with QSignalBlocker(self.preset):
            self.preset.setCurrentIndex(index)
        self._sync_note()

    def _sync_note(self) -> None:
        mp = self.width_box.value() * self.height_box.value() / 1e6
        self.note.setText(f"{mp:.1f} megapixels." + (" Large canvases render in the background; edits take "
                                                     "longer to appear." if mp > 4.5 else ""))

    def values(self) -> tuple[int, int, tuple[float, float, float, float] | None]:
        bg = None if self.transparent.isChecked() else (*_rgb(self.colour.colour), 1.0)
        return self.width_box.value(), self.height_box.value(), bg
