"""The Canvas tab's exports (layers and composite PNGs, OpenRaster, GIF / APNG) and the
background plumbing they share with imports and model layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtWidgets import QFileDialog

from studio.canvas import Canvas, Layer
from studio.ui.canvas.widgets import ANIMATION_FILTER, ORA_FILTER, PNG_FILTER
from studio.ui.workers import run_in_background


class Exports:
    """The part of :class:`~studio.ui.canvas.view.CanvasView` that exports and runs work in the background."""

    # ------------------------------------------------------------------ exports
    def detached_canvas(self) -> Canvas:
        """A copy of the canvas as it is now (sharing pixels and the renderer) for a background export."""
        state = self.canvas.snapshot()
        copy = Canvas(state.width, state.height, state.background, renderer=self.canvas.renderer)
        for layer in state.layers:
            copy.add_layer(layer)
        return copy

    def _has_layers(self) -> bool:
        if not self.canvas.layers:
            self._status("The canvas is empty: add a layer first.", 5000)
            return False
        return True

    def export_layers_dialog(self) -> None:
        if not self._has_layers():
            return
        folder = QFileDialog.getExistingDirectory(self, "Export the layers and the composite to a folder")
        if folder:
            self.export_layers(folder)

    def export_layers(self, folder: str | Path) -> None:
        """Every layer as its own PNG and ``composite.png``, with provenance, into ``folder`` (background)."""
        from studio.canvas.export import export_layers

        canvas = self.detached_canvas()
        self._export(lambda: export_layers(canvas, folder), f"{len(canvas.layers) + 1} PNGs to {folder}")

    def _save_path(self, title: str, name: str, filter: str) -> str | None:
        """A file to export the layers to, asked in a save dialog (``name``: the default, whose
        suffix is added when the person leaves it off); None when cancelled or no layers."""
        if not self._has_layers():
            return None
        path, _ = QFileDialog.getSaveFileName(self, title, name, filter)
        suffix = Path(name).suffix
        return (path if path.lower().endswith(suffix) else path + suffix) if path else None

    def export_composite_dialog(self) -> None:
        path = self._save_path("Export the composite", "composite.png", PNG_FILTER)
        if path:
            self.export_composite(path)

    def export_composite(self, path: str | Path) -> None:
        from studio.canvas.export import composite_provenance, save_png

        canvas = self.detached_canvas()
        self._export(lambda: save_png(path, canvas.render_uint8(), composite_provenance(canvas)), str(path))

    def export_ora_dialog(self) -> None:
        path = self._save_path("Export OpenRaster", "canvas.ora", ORA_FILTER)
        if path:
            self.export_ora(path)

    def export_ora(self, path: str | Path) -> None:
        """An OpenRaster file (Krita, GIMP) of the layers (background)."""
        from studio.canvas.export import save_ora

        canvas = self.detached_canvas()
        self._export(lambda: save_ora(canvas, path), str(path))

    def animated_layer(self) -> Layer | None:
        """The selected layer if it is animated, else the topmost animated layer."""
        layer = self.selected_layer()
        if layer is not None and layer.frames:
            return layer
        return next((l for l in reversed(self.canvas.layers) if l.frames), None)

    def export_animation_dialog(self) -> None:
        if self.animated_layer() is None:
            self._status("No animated layer: import an animated GIF / APNG or add an interpolation.", 6000)
            return
        path, chosen = QFileDialog.getSaveFileName(self, "Export an animation", "animation.gif", ANIMATION_FILTER)
        if path:
            if not Path(path).suffix:
                path += ".gif" if "GIF" in chosen else ".png"
            self.export_animation(path)

    def export_animation(self, path: str | Path, fps: float = 12.0) -> None:
        """The composite once per frame of the animated layer, as a GIF or APNG (by suffix)."""
        from studio.canvas.export import export_animation

        layer = self.animated_layer()
        if layer is None:
            self._status("No animated layer to export.", 5000)
            return
        canvas = self.detached_canvas()
        self._export(lambda: export_animation(canvas, layer.id, path, fps), str(path))

    def _export(self, work: Callable[[], Any], what: str) -> None:
        self._status(f"Exporting {what}…", 0)

        def done(result: Any) -> None:
            self._status(f"Exported {what}", 8000)

        self._background(work, on_result=done, error_title="The export failed",
                         error_suffix="\n\nNo file was overwritten with a partial one.")

    # ------------------------------------------------------------------ plumbing
    @property
    def busy(self) -> bool:
        """A background task (sampling, import, export) is running."""
        return self._busy_tasks > 0

    def _background(self, fn: Callable[..., Any], *args: Any, on_result: Callable[[Any], None],
                    error_title: str, error_suffix: str = "") -> None:
        self._busy_tasks += 1

        def ok(result: Any) -> None:
            self._busy_tasks -= 1
            on_result(result)

        def failed(exc: BaseException) -> None:
            self._busy_tasks -= 1
            self._error(error_title, (str(exc) or type(exc).__name__) + error_suffix)

        run_in_background(fn, *args, on_result=ok, on_error=failed)
