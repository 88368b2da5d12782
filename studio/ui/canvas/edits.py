"""The Canvas tab's layer operations: adding layers from every source, moving,
duplicating, deleting, the view's zoom and outline, canvas size and replacing the canvas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QDialog, QFileDialog

from studio.canvas import MAX_SCALED_SIDE, Canvas, CanvasState, Layer
from studio.canvas.model import fit_scale
from studio.ui.canvas.dialogs import CanvasSizeDialog, model_choices, ModelChoice, ModelLayerDialog
from studio.ui.canvas.widgets import _replace, IMAGE_FILTER


class LayerEdits:
    """The part of :class:`~studio.ui.canvas.view.CanvasView` that adds and edits layers."""

    # ------------------------------------------------------------------ layer operations
    def add_layer(self, layer: Layer, *, center: bool = False) -> Layer:
        """Put ``layer`` on top (centred on the canvas when ``center`` and it is not tiled) and select it."""
        return self._added(self.session.add_layer(layer, center=center))

    def _added(self, layer: Layer) -> Layer:
        """``layer`` was put on the document's canvas: select it and show it at once."""
        self.selected_id = layer.id
        self._schedule(list_=True, props=True)
        self.flush()
        self._status(f"Added “{layer.name}”", 4000)
        return layer

    def _fit_scale(self, layer: Layer, fraction: float, integer: bool) -> float:
        return fit_scale(layer, self.canvas.width, self.canvas.height, fraction, integer)

    def _dream_source(self) -> tuple[np.ndarray, dict] | None:
        if self.dream_snapshot is not None:
            try:
                got = self.dream_snapshot()
            except Exception:  # noqa: BLE001 - no snapshot to offer
                got = None
            if got is not None:
                return got
        jobs = list(getattr(self.session, "jobs", []) or [])
        for job in reversed(jobs):
            frame = getattr(job, "last_frame", None)
            if frame is not None:
                from studio.canvas.sources import grid, batch_pixels

                prov = {"model": job.kind, "steps": int(job.step or 0), "seed": getattr(getattr(job, "options", None), "seed", None),
                        "temperature": 1.0, "title": job.title, "run": job.id, "source": "dreams"}
                return grid(batch_pixels(frame[:64])), prov
        return None

    def add_dream_snapshot(self) -> Layer | None:
        """Add the grid the Dreams tab shows (``dream_snapshot``), else the newest training frame."""
        got = self._dream_source()
        if got is None:
            self._status("No dreams yet: train a model (Space) or start the Dreams tab first.", 6000)
            return None
        return self.add_snapshot_layer(*got)

    def add_dataset_image(self, index: int | None = None) -> Layer | None:
        """Add dataset image ``index`` (default: the selected one, else the first), scaled up bicubic."""
        from studio.canvas.sources import LayerSourceError, dataset_image

        images = getattr(self.session, "images", None)
        if images is None or len(images) == 0:
            self._status("No images loaded: open a folder first (Ctrl+O).", 6000)
            return None
        if index is None and self.selected_image is not None:
            index = self.selected_image()
        index = 0 if index is None else index
        try:
            layer = dataset_image(images, index)
        except LayerSourceError as exc:
            self._error("The image could not be added", str(exc))
            return None
        layer = _replace(layer, scale=self._fit_scale(layer, 0.7, integer=False))
        return self.add_layer(layer, center=True)

    def import_image_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import an image as a layer", "", IMAGE_FILTER)
        if path:
            self.import_image(path)

    def import_image(self, path: str | Path) -> None:
        """Import an image file as a layer; decoding runs in the background."""
        from studio.canvas.sources import import_png

        path = Path(path)
        self._status(f"Importing {path.name}…", 0)

        def done(layer: Layer) -> None:
            h, w = layer.pixels.shape[:2]
            if w > self.canvas.width or h > self.canvas.height:
                layer = _replace(layer, scale=self._fit_scale(layer, 1.0, integer=False))
            self.add_layer(layer, center=True)

        self._background(import_png, path, on_result=done, error_title=f"{path.name} could not be imported")

    def add_model_layer_dialog(self) -> None:
        choices = model_choices(self.session)
        if not choices:
            self._status("No model to sample yet: train an RBM, a hybrid or a VAE first.", 6000)
            return
        dialog = ModelLayerDialog(choices, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.add_model_layer(**dialog.values())

    def add_model_layer(self, choice: ModelChoice, make: str = "mirror", steps: int = 500, seed: int = 0,
                        temperature: float = 1.0, show: str = "probs", scale: float = 4.0) -> None:
        """Sample ``choice``'s model in the background (a private copy, taken under its lock)
        and add the result: ``make`` = "mirror" / "plain" (tiled texture), "single"
        (one dream placed once), "frame" (a VAE sample / hybrid dream) or "fill" (a texture
        RBM's seamless texture at the canvas's own size)."""
        from studio.canvas.sources import canvas_texture, detach_model, rbm_texture, sample_frame

        size = (self.canvas.width, self.canvas.height)

        def work() -> Layer:
            model = detach_model(choice.model, choice.lock)
            if make == "fill":
                return canvas_texture(model, *size, steps, seed, temperature=temperature, show=show,
                                      checkpoint_sha256=choice.checkpoint_sha256, provenance={"model_step": choice.step})
            if make == "frame":
                return sample_frame(model, seed, temperature=temperature, steps=steps, scale=scale,
                                    checkpoint_sha256=choice.checkpoint_sha256)
            tiling = None if make == "single" else make
            return rbm_texture(model, steps, seed, tiling, temperature=temperature, show=show, scale=scale,
                               checkpoint_sha256=choice.checkpoint_sha256,
                               provenance={"model_step": choice.step})

        self._status(f"Sampling {choice.label}…", 0)
        self._background(work, on_result=lambda layer: self.add_layer(layer, center=make in ("single", "frame")),
                         error_title="The model could not be sampled")

    def move_selected(self, delta: int) -> None:
        layer = self.selected_layer()
        if layer is None:
            return
        index = self.canvas.index_of(layer.id) + delta
        if 0 <= index < len(self.canvas.layers):
            self.canvas.end_merge()
            self.canvas.reorder_layer(layer.id, index)
            self.flush()

    def duplicate_selected(self) -> None:
        layer = self.selected_layer()
        if layer is not None:
            copy = self.canvas.duplicate_layer(layer.id)
            self.select_layer(copy.id)

    def delete_selected(self) -> None:
        layer = self.selected_layer()
        if layer is None:
            return
        index = self.canvas.index_of(layer.id)
        self.canvas.remove_layer(layer.id)
        layers = self.canvas.layers
        if layers:
            self.selected_id = layers[max(0, index - 1)].id
        self._schedule(list_=True, props=True)
        self.flush()
        self._status(f"Deleted “{layer.name}” (Ctrl+Z brings it back)", 5000)

    def fill_canvas(self) -> None:
        """Scale the selected layer to cover the canvas, from the top-left."""
        layer = self.selected_layer()
        if layer is None:
            return
        h, w = layer.pixels.shape[:2]
        scale = min(max(self.canvas.width / w, self.canvas.height / h), MAX_SCALED_SIDE / max(h, w))
        self._edit_layer(layer.id, scale=scale, x=0, y=0)

    def center_layer(self) -> None:
        layer = self.selected_layer()
        if layer is None:
            return
        w, h = layer.scaled_size
        self._edit_layer(layer.id, x=(self.canvas.width - w) // 2, y=(self.canvas.height - h) // 2)

    # moving with the mouse
    def _move_started(self) -> None:
        layer = self.selected_layer()
        self.canvas.end_merge()
        self._move_origin = (layer.x, layer.y) if layer is not None else None

    def _move_by(self, dx: int, dy: int) -> None:
        if self._move_origin is not None and self.selected_id is not None:
            x0, y0 = self._move_origin
            self._edit_layer(self.selected_id, merge=True, x=x0 + dx, y=y0 + dy)

    def _move_finished(self) -> None:
        self._move_origin = None
        self.canvas.end_merge()

    def _update_history(self) -> None:
        c = self.canvas
        self.action_undo.setEnabled(c.can_undo)
        self.action_redo.setEnabled(c.can_redo)
        self.action_undo.setToolTip(f"Undo {c.undo_label} (Ctrl+Z)" if c.can_undo else "Nothing to undo (Ctrl+Z)")
        self.action_redo.setToolTip(f"Redo {c.redo_label} (Ctrl+Shift+Z)" if c.can_redo else
                                    "Nothing to redo (Ctrl+Shift+Z)")


    def _zoom_to(self, zoom: float) -> None:
        self.view.auto_fit = False
        self.view.set_zoom(zoom)

    def _update_outline(self) -> None:
        layer = self.selected_layer()
        bounds = self.canvas.layer_bounds(layer) if layer is not None and layer.tiling is None else None
        if bounds is None:
            self.outline.hide()
            return
        x0, y0, x1, y1 = bounds
        self.outline.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        self.outline.show()

    def _update_info(self) -> None:
        c = self.canvas
        rect = QRectF(0, 0, c.width, c.height)
        if self.view.sceneRect() != rect:
            self.scene.setSceneRect(rect)
            self.item.set_size(c.width, c.height)
            if self.view.auto_fit:
                self.view.fit()
        bits = [f"{c.width} × {c.height}", f"{len(c.layers)} layer{'s' if len(c.layers) != 1 else ''}"]
        if self.rendering or (self.shown_state is not c.snapshot()):
            bits.append("rendering…")
        elif self.last_render is not None:
            bits.append(f"rendered in {self.last_render.ms:.0f} ms")
        bits.append(f"zoom {self.view.zoom:.0%}")
        text = "  ·  ".join(bits)
        if self.info.text() != text:
            self.info.setText(text)

    # ------------------------------------------------------------------ canvas size, projects
    def canvas_size_dialog(self) -> None:
        dialog = CanvasSizeDialog(self.canvas.width, self.canvas.height, self.canvas.background, self)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.set_canvas_size(*dialog.values())

    def set_canvas_size(self, width: int, height: int, background: Any = "keep") -> None:
        """Resize the canvas (and set the background unless "keep") in one undo step."""
        try:
            with self.canvas.macro("Canvas size"):
                self.canvas.resize(width, height)
                if background != "keep":
                    self.canvas.set_background(background)
        except ValueError as exc:
            self._error("The canvas size was not changed", str(exc))
            return
        self.view.auto_fit = True
        self._schedule(props=True)
        self.flush()

    def replace_canvas(self, other: Canvas | CanvasState, label: str = "Open project") -> None:
        """Make the document's canvas look like ``other`` (an opened project's) in one undo step."""
        self.session.replace_canvas(other, label)
        self.show_replaced_canvas()

    def show_replaced_canvas(self) -> None:
        """The document's canvas was replaced as a whole (an opened project): select its top
        layer and fit it in the view."""
        layers = self.canvas.layers
        self.selected_id = layers[-1].id if layers else None
        self.view.auto_fit = True
        self._schedule(list_=True, props=True)
        self.flush()
