"""The main window's tabs: installing the Dreams, Canvas and Latent views (each built from the
document, :class:`studio.jobs.Session`, and following it by itself), the training actions and
the status bar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyle

from studio.jobs import JobState, TrainingJob


class TabWiring:
    """The part of :class:`~studio.ui.main_window.window.MainWindow` that installs the tabs and
    keeps the actions and status bar current. It relays nothing between tabs: the training
    dock sets the document's current run, the tabs listen to the document."""

    # ===================================================================== training
    def current_page(self):
        return self.training_panel.current_page if self.training_panel is not None else None

    def current_job(self) -> TrainingJob | None:
        """The document's current run (the training dock's visible run)."""
        return self.session.current_job

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

    # ===================================================================== dreams
    def _install_dreams_tab(self, view) -> None:
        """The Dreams tab (studio.ui.dreams), built from the document: it follows the current
        run by itself (its chains while it trains, free-running dreams otherwise) and puts its
        snapshots on the document's canvas."""
        self.dreams = view
        view.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 5000))
        view.follow_jobs(self.controller)
        self.replace_tab("Dreams", view)

    def _job_failed(self, job_id: int, message: str) -> None:
        job = self.session.job_by_id(job_id)
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

    # ===================================================================== canvas and projects
    def _install_canvas_tab(self) -> None:
        """The Canvas tab (studio.ui.canvas), once torch is imported; enables the project actions."""
        from studio.ui.canvas import CanvasView

        view = CanvasView(self.session, selected_image=self._selected_image_index)
        view.status_message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        view.error_raised.connect(self.show_error)
        self.canvas_view = view
        self.unsaved.canvas_reset(view.canvas.snapshot())  # an empty canvas: nothing to lose
        self.replace_tab("Canvas", view)
        for action in self.project_actions:
            action.setEnabled(True)

    def _install_latent_tab(self) -> None:
        """The Latent tab (studio.ui.latent_view), built from the document: sliders over the
        latent space of the current VAE / hybrid / autoencoder run once it stops; its frames
        and strips go to the document's canvas."""
        from studio.ui.latent_view import LatentView

        view = LatentView(self.session)
        view.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 5000))
        view.selected_indices = self._selected_image_indices
        view.follow_jobs(self.controller)
        view.explorerChanged.connect(lambda: self.dataset_panel.set_explorer(view.explorer))
        self.dataset_panel.denoised.connect(self._show_denoised)
        self.dataset_panel.status_message.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.latent_view = view
        self.replace_tab("Latent", view)

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
        dialog.toCanvas.connect(self.canvas_view.add_snapshot_layer)
        self.denoise_dialog = dialog
        dialog.show()

    def _selected_image_indices(self) -> list[int]:
        """The dataset panel's selected images (set indices, ascending, whatever the view's order)."""
        return self.dataset_panel.selected_set_indices()

    def _selected_image_index(self) -> int | None:
        rows = self.dataset_panel.selected_set_indices()
        return rows[0] if rows else None
