"""Dropping an exported PNG back onto the window: it reads what made the image and offers to
reopen it (as ComfyUI does with its PNGs) instead of loading it as a training image.

:func:`offer_reopen` is called with the paths of every drop; it takes one PNG that carries the
studio's provenance (validated by :func:`studio.provenance.read_studio_png`; a damaged one is
refused in one sentence) and shows :class:`ReopenDialog`, which offers, as far as the session
can: make the layer again with the same model, seed and settings; open the checkpoint that made
it; add the image to the canvas; or train on it after all."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QPushButton, QVBoxLayout, QWidget

from studio.provenance import Origin, ProvenanceError, find_origin, read_studio_png, summary_lines


class ReopenDialog(QDialog):
    """What made a dropped image, and what the studio can reopen of it. Non-modal."""

    def __init__(self, path: Path, origin: Origin, window: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"{path.name}: made in Harmonium")
        self.path, self.origin, self.window_ = path, origin, window
        lines = summary_lines(origin.provenance)
        job = origin.job
        if job is not None:
            how = "its checkpoint" if origin.matched_by == "checkpoint" else "its weights"
            lines.append(f"Its model is open: {getattr(job, 'title', 'model')} · run #{getattr(job, 'id', '?')} "
                         f"(recognised by {how}).")
        elif origin.checkpoint_file is not None:
            lines.append(f"Its checkpoint is on disk: {origin.checkpoint_file}")
        else:
            lines.append("The model that made it is not open in this session.")
        lines += [n[0].upper() + n[1:] + "." for n in origin.notes]
        self.label = QLabel("\n".join(lines))
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setWordWrap(True)
        buttons = QDialogButtonBox()
        self.make_again_button = self._button(buttons, "Make It Again", self.make_again,
                                              "Sample the same model with the same seed and settings into a new layer")
        self.make_again_button.setVisible(origin.can_make_again and getattr(window, "canvas_view", None) is not None)
        self.open_model_button = self._button(buttons, "Open the Model", self.open_model,
                                              "Open the checkpoint that made this image")
        self.open_model_button.setVisible(origin.job is None and origin.checkpoint_file is not None)
        self.to_canvas_button = self._button(buttons, "Add to the Canvas", self.add_to_canvas,
                                             "Add the image as a layer (it keeps this provenance)")
        self.to_canvas_button.setVisible(getattr(window, "canvas_view", None) is not None)
        self.train_button = self._button(buttons, "Train on It", self.train_on_it,
                                         "Load the image as a training image, as any other dropped image")
        buttons.addButton(QDialogButtonBox.StandardButton.Close).clicked.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.label)
        lay.addWidget(buttons)

    def _button(self, box: QDialogButtonBox, text: str, slot, tip: str) -> QPushButton:
        button = box.addButton(text, QDialogButtonBox.ButtonRole.ActionRole)
        button.setToolTip(tip)
        button.clicked.connect(lambda: (slot(), self.accept()))
        return button

    def make_again(self) -> None:
        """The same model, seed, steps, temperature, show and scale into a new canvas layer."""
        from studio.ui.canvas.dialogs import model_choices

        p, view = self.origin.provenance, self.window_.canvas_view
        choice = next((c for c in model_choices(self.window_.session) if c.model is self.origin.job.model), None)
        if choice is None:
            self.window_.show_error("The model cannot sample layers", "Its run has no model to sample now.")
            return
        tiling = (p.get("blend") or {}).get("tiling") if isinstance(p.get("blend"), dict) else None
        make = "frame" if p.get("source") == "model-frame" else (tiling or "single")
        scale = (p.get("blend") or {}).get("scale", 4.0) if isinstance(p.get("blend"), dict) else 4.0
        view.add_model_layer(choice, make=make, steps=int(p["steps"]), seed=int(p["seed"]),
                             temperature=float(p.get("temperature") or 1.0),
                             show=p.get("show") if p.get("show") in ("probs", "samples") else "probs",
                             scale=float(scale) if isinstance(scale, (int, float)) and scale > 0 else 4.0)
        self.window_.tabs.setCurrentWidget(view)

    def open_model(self) -> None:
        self.window_.open_model(self.origin.checkpoint_file)

    def add_to_canvas(self) -> None:
        view = self.window_.canvas_view
        view.import_image(self.path)
        self.window_.tabs.setCurrentWidget(view)

    def train_on_it(self) -> None:
        self.window_.open_sources([str(self.path)])


def offer_reopen(window: Any, paths: list[str]) -> bool:
    """True when the drop was one studio PNG and has been handled here (the dialog shown, or
    a damaged file refused); False to load the paths as images, as before."""
    if len(paths) != 1 or not str(paths[0]).lower().endswith((".png", ".apng")):
        return False
    path = Path(paths[0])
    try:
        prov = read_studio_png(path)
    except ProvenanceError as exc:
        window.show_error("This image cannot be reopened", str(exc))
        return True
    if prov is None:
        return False
    origin = find_origin(prov, getattr(window.session, "jobs", []) or [])
    dialog = ReopenDialog(path, origin, window, window)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    window.reopen_dialog = dialog
    dialog.show()
    return True
