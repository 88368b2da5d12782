"""The Canvas tab's exports (layers and composite PNGs, OpenRaster, Photoshop, GIF / APNG) and
the background plumbing they share with imports and model layers.

Every save dialog opens in the last export folder and remembers the one it saved to
(:class:`studio.ui.settings.ExportPrefs`); the layers go into a folder the person names (made
when it does not exist). Before a layered file is written, what a painting program will show
differently (:func:`studio.canvas.export.interop_notes`) is said, once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtWidgets import QFileDialog, QMessageBox

from studio.canvas import Canvas, Layer
from studio.ui.canvas.widgets import ANIMATION_FILTER, ORA_FILTER, PNG_FILTER
from studio.ui.settings import export_prefs

PSD_FILTER = "Photoshop (*.psd)"
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
        """Ask for a folder by name (typed: a new one is made; an existing one is written into)
        in a save dialog that opens in the last export folder."""
        if not self._has_layers():
            return
        prefs = export_prefs()
        folder, _ = QFileDialog.getSaveFileName(
            self, "Export the layers and the composite into a folder (type a new folder's name)",
            prefs.start("canvas-layers"), "Folder (*)", options=QFileDialog.Option.DontConfirmOverwrite)
        if folder:
            prefs.remember(folder, is_folder=True)
            self.export_layers(folder)

    def export_layers(self, folder: str | Path) -> None:
        """Every layer as its own PNG and ``composite.png``, with provenance, into ``folder`` (background)."""
        from studio.canvas.export import export_layers

        canvas = self.detached_canvas()
        self._export(lambda: export_layers(canvas, folder), f"{len(canvas.layers) + 1} PNGs to {folder}")

    def _save_path(self, title: str, name: str, filter: str) -> str | None:
        """A file to export the layers to, asked in a save dialog that opens in the last export
        folder (``name``: the default, whose suffix is added when the person leaves it off);
        None when cancelled or no layers. The folder is remembered."""
        if not self._has_layers():
            return None
        prefs = export_prefs()
        path, _ = QFileDialog.getSaveFileName(self, title, prefs.start(name), filter)
        if not path:
            return None
        suffix = Path(name).suffix
        path = path if path.lower().endswith(suffix) else path + suffix
        prefs.remember(path)
        return path

    def interop_ok(self, format: str) -> bool:
        """Say what painting programs will show differently in a ``format`` ("ora", "psd")
        export of this canvas, and let the person go on or not; asked once per session for
        the same notes. True: export."""
        from studio.canvas.export import interop_notes

        notes = interop_notes(self.canvas, format)
        key = (format, tuple(notes))
        told: set = getattr(self, "_interop_told", set())
        self._interop_told = told
        if not notes or key in told:
            return True
        answer = QMessageBox.question(
            self, f"Exporting {format.upper()}", "\n\n".join(notes) + "\n\nExport anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        told.add(key)
        return True

    def export_composite_dialog(self) -> None:
        path = self._save_path("Export the composite", "composite.png", PNG_FILTER)
        if path:
            self.export_composite(path)

    def export_composite(self, path: str | Path) -> None:
        from studio.canvas.export import composite_provenance, save_png

        canvas = self.detached_canvas()
        self._export(lambda: save_png(path, canvas.render_uint8(), composite_provenance(canvas)), str(path))

    def export_ora_dialog(self) -> None:
        if self._has_layers() and self.interop_ok("ora"):
            path = self._save_path("Export OpenRaster (Krita, MyPaint; for GIMP export a .psd)", "canvas.ora",
                                   ORA_FILTER)
            if path:
                self.export_ora(path)

    def export_psd_dialog(self) -> None:
        if self._has_layers() and self.interop_ok("psd"):
            path = self._save_path("Export Photoshop (Photoshop, Affinity, Photopea, Krita, GIMP)", "canvas.psd",
                                   PSD_FILTER)
            if path:
                self.export_psd(path)

    def export_psd(self, path: str | Path) -> None:
        """A layered Photoshop file of the canvas (background), through psd-tools."""
        from studio.canvas.export import save_psd

        canvas = self.detached_canvas()
        self._export(lambda: save_psd(canvas, path), str(path))

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
        prefs = export_prefs()
        path, chosen = QFileDialog.getSaveFileName(self, "Export an animation", prefs.start("animation.gif"),
                                                   ANIMATION_FILTER)
        if path:
            prefs.remember(path)
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
