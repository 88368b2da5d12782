"""The main window's image sources: open a folder or files, load them in a worker, recent
folders (drops on the window arrive through :meth:`MainWindow.dropEvent`)."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from studio.dataset import Preprocess
from studio.ui.settings import setting_folder, setting_json
from studio.ui.workers import LoadWorker


MAX_RECENT = 8


class ImageSources:
    """The part of :class:`~studio.ui.main_window.window.MainWindow` that opens and loads images."""

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
        self._remember_sources(sources)
        note, self._relaunch_note = getattr(self, "_relaunch_note", ""), ""
        self.statusBar().showMessage(
            f"{note}{len(images)} images loaded, {len(images.rejected)} rejected", 15000 if note else 5000)

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

    def _images_changed(self, images) -> None:
        """The document's images changed (on the UI thread: the loader's result is set there)."""
        self.dataset_panel.show_images(images, self.session.source_label)
        # Qt adds the application's name ("… — Harmonium Studio") to the title by itself.
        self.setWindowTitle(f"{self.session.source_label} ({len(images)} images)")
        self.images_ready = True
        self.images_loaded.emit(images)
        self._maybe_autostart()

    def last_sources(self) -> list[str]:
        """What to open at launch: the sources loaded last time (the demo set when that was the
        demo set, or nothing is remembered). When they are gone, the demo set, and the status
        bar says so once the images are in."""
        last = [v for v in setting_json(self.settings, "dataset/last_sources", [], list) if isinstance(v, str) and v]
        found = [v for v in last if Path(v).exists()]
        if last and not found:
            name = Path(last[0]).name or last[0]
            self._relaunch_note = (f"The last folder, {name}, is gone: opened the demo set · " if len(last) == 1
                                   else f"The last images ({name}, …) are gone: opened the demo set · ")
        return found

    def _remember_sources(self, sources: list[str]) -> None:
        """Remember what was loaded (the next launch opens it again: ``dataset/last_sources``,
        [] for the demo set) and the folders among the recent ones."""
        self.settings.setValue("dataset/last_sources", json.dumps([str(s) for s in sources]))
        if not sources:
            return
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
