"""The main window's wiring between the training dock and the Dreams, Canvas and Latent tabs."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QStyle

from models import kinds  # the kinds' records: no torch imported
from studio.jobs import JobState, TrainingJob


class TabWiring:
    """The part of :class:`~studio.ui.main_window.window.MainWindow` that relays between the
        training dock and the tabs (what each shows), and keeps the actions and status bar current."""

    # ===================================================================== training
    def current_page(self):
        return self.training_panel.current_page if self.training_panel is not None else None

    def current_job(self) -> TrainingJob | None:
        page = self.current_page()
        return page.job if page is not None else None

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

    def _page_job_changed(self, page, job) -> None:
        if self.training_panel is not None and page is self.training_panel.current_page:
            self._dream_with(job)
            self._explore_with(job)
        self._refresh_actions()

    # ===================================================================== dreams
    def _install_dreams_tab(self, view) -> None:
        """The Dreams tab (studio.ui.dreams): the training job's chains while it trains,
        free-running chains over its model otherwise; snapshots go to the Canvas."""
        self.dreams = view
        view.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 5000))
        if self.session.images is not None:
            view.set_dataset_images(self.session.images.images)
        self.replace_tab("Dreams", view)
        self.controller.state_changed.connect(self._job_state_for_dreams)
        self.controller.scored.connect(self._job_scored)

    def _current_job_id(self) -> int | None:
        job = self.current_job()
        return job.id if job is not None else None

    def _dream_with(self, job: TrainingJob | None) -> None:
        """Show `job` in the Dreams tab: its live chains when it trains (frames arrive through
        `_frame_ready`), free-running dreams over a private copy of its model otherwise."""
        if self.dreams is None or job is None or job.model is None or self._closing:
            return
        if job.state in (JobState.RUNNING, JobState.PAUSED):
            if job.last_frame is not None:
                self.dreams.show_training_frame(job.last_frame, self._frame_info(job))
            return
        key = (job.id, int(getattr(job, "step", 0) or 0))
        shown = self.dreams.session
        if key == self._dreams_wanted and (shown is None or (shown.source == "sampler" and shown.meta.get("job_id") == job.id)):
            return  # this run at this step dreams already, or its copy is on its way
        self._dreams_wanted = key
        from studio.canvas.sources import detach_model
        from studio.ui.workers import run_in_background

        meta = {"kind": job.kind, "title": f"{job.title} · run #{job.id}", "job_id": job.id}
        if job.path is not None:
            meta["path"] = str(job.path)

        def show(model) -> None:
            if self._closing or self.dreams is None or self.current_job() is not job:
                return  # another run was chosen meanwhile: it shows its own dreams
            if job.state in (JobState.RUNNING, JobState.PAUSED):
                return  # it trains again: its live chains show
            if self._dreams_wanted != key:
                return  # a newer copy was asked for since: that one is set, once
            self.dreams.set_model(model, meta)
            self._dreams_quality(job)

        # The private copy is taken under the job's lock in a worker: for the hybrid it takes
        # about 20 ms, which the UI thread would otherwise spend when a run stops.
        run_in_background(detach_model, job.model, job.step_lock, on_result=show,
                          on_error=lambda exc: self.statusBar().showMessage(f"Dreams could not start: {exc}", 8000))

    def _dreams_quality(self, job: TrainingJob) -> None:
        """The Dreams tab's banner follows the quality report of the run it dreams over (the
        report of the model at its current step only)."""
        view = self.dreams
        shown = view.session if view is not None else None
        if shown is None or shown.source != "sampler" or shown.meta.get("job_id") != job.id:
            return
        fresh = job.quality_status == "ready" and job.quality_step == job.step
        view.set_quality(job.quality if fresh else None, key=(job.id, job.quality_step))

    def _job_scored(self, job_id: int) -> None:
        job = self.current_job()
        if job is not None and job.id == job_id:
            self._dreams_quality(job)

    @staticmethod
    def _frame_info(job: TrainingJob) -> dict[str, Any]:
        return {"job_id": job.id, "kind": job.kind, "title": job.title, "step": job.step}

    def _job_state_for_dreams(self, job_id: int, state: str) -> None:
        if job_id == self._current_job_id() and state in ("stopped", "done"):
            self._dream_with(self.current_job())
            self._explore_with(self.current_job())

    def _frame_ready(self, update) -> None:
        """A training frame for the Dreams tab. The job's own state decides, not the order
        updates arrive in: a frame that lands after its job stopped (made before the stop, or
        the worker's closing word) must not replace the free-running dreams with a frozen
        training view."""
        if self.dreams is None or update.job_id != self._current_job_id() or update.frame is None:
            return
        job = self.current_job()
        if job is None or not job.state.active or update.state not in (JobState.RUNNING.value, JobState.PAUSED.value):
            return
        if job.last_frame is not None:
            self.dreams.show_training_frame(job.last_frame, self._frame_info(job))

    def _dreams_on_screen(self) -> tuple[Any, dict] | None:
        """The grid the Dreams tab shows, for the canvas's "Snapshot of the Dreams"."""
        return self.dreams.grid_on_screen() if self.dreams is not None else None

    def _dream_to_canvas(self, rgba, provenance: dict) -> None:
        if getattr(self, "canvas_view", None) is not None:
            self.canvas_view.add_snapshot_layer(rgba, provenance)
            self.statusBar().showMessage("Dream snapshot added to the canvas", 4000)

    def _job_failed(self, job_id: int, message: str) -> None:
        job = next((j for j in self.session.jobs if j.id == job_id), None)
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

        view = CanvasView()
        view.set_session(self.session, selected_image=self._selected_image_index)
        view.status_message.connect(lambda text, ms: self.statusBar().showMessage(text, ms))
        view.error_raised.connect(self.show_error)
        view.dream_snapshot = self._dreams_on_screen  # Ctrl+Shift+D takes what the Dreams tab shows
        self.canvas_view = view
        self.unsaved.canvas_reset(view.canvas.snapshot())  # an empty canvas: nothing to lose
        self.replace_tab("Canvas", view)
        for action in self.project_actions:
            action.setEnabled(True)

    def _install_latent_tab(self) -> None:
        """The Latent tab (studio.ui.latent_view): sliders over the latent space of the current
        VAE / hybrid / autoencoder job once it stops; its frames go to the Canvas."""
        from studio.ui.latent_view import LatentView

        view = LatentView()
        view.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 5000))
        view.frameToCanvas.connect(self._latent_to_canvas)
        view.layerToCanvas.connect(self._latent_layer_to_canvas)
        view.selected_indices = self._selected_image_indices
        view.explorerChanged.connect(lambda: self.dataset_panel.set_explorer(view.explorer))
        self.dataset_panel.denoised.connect(self._show_denoised)
        self.dataset_panel.status_message.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.latent_view = view
        self.replace_tab("Latent", view)

    def _explore_with(self, job: TrainingJob | None) -> None:
        """Give the Latent tab `job`'s model (a private copy, taken under the job's lock in the
        tab's worker) when the job is not training, with the set's images for the slider order."""
        view = self.latent_view
        if view is None or job is None or job.model is None or self._closing:
            return
        record = kinds.KINDS.get(job.kind)
        if record is None or not record.explorable or job.state in (JobState.RUNNING, JobState.PAUSED):
            return
        key = (job.id, int(getattr(job, "step", 0) or 0))
        if key == self._latent_shown:
            return
        self._latent_shown = key
        images = self.session.images.images if self.session.images is not None else None
        if images is not None and tuple(images.shape[1:]) != tuple(getattr(job.model, "image_shape", ())):
            images = None  # another preprocessing than the model's: explore without the set
        meta = {"kind": job.kind, "title": f"{job.title} · run #{job.id}", "job_id": job.id}
        if job.path is not None:
            meta["path"] = str(job.path)
        view.set_model(job.model, images, meta, lock=job.step_lock)

    def _latent_to_canvas(self, rgba, provenance: dict) -> None:
        if getattr(self, "canvas_view", None) is not None:
            self.canvas_view.add_snapshot_layer(rgba, provenance)
            self.statusBar().showMessage("Latent frame added to the canvas", 4000)

    def _latent_layer_to_canvas(self, layer) -> None:
        if getattr(self, "canvas_view", None) is not None:
            self.canvas_view.add_layer(layer, center=True)
            self.statusBar().showMessage("Interpolation strip added to the canvas", 4000)

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
        dialog.toCanvas.connect(self._latent_to_canvas)
        self.denoise_dialog = dialog
        dialog.show()

    def _selected_image_indices(self) -> list[int]:
        """The dataset panel's selected images (set indices, ascending, whatever the view's order)."""
        return self.dataset_panel.selected_set_indices()

    def _selected_image_index(self) -> int | None:
        rows = self.dataset_panel.selected_set_indices()
        return rows[0] if rows else None
