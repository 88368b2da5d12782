"""The main window's files: models (save, open) and projects (save, open, restore)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog, QMessageBox

from studio.autosave import Orphan, dataset_key, restored_project_path, set_aside
from studio.dataset import Preprocess
from studio.jobs import TrainingJob
from studio.ui.settings import setting_folder
from studio.ui.workers import run_in_background


MODEL_FILTER = "Harmonium models (*.safetensors);;All files (*)"


class ModelAndProjectFiles:
    """The part of :class:`~studio.ui.main_window.window.MainWindow` that saves and opens models
        and projects in the background."""

    # ===================================================================== models on disk
    def save_model(self, ask: bool = False) -> None:
        job = self.current_job()
        if job is None or job.model is None:
            self.statusBar().showMessage("Nothing to save yet: train a model first (Space).", 5000)
            return
        path = job.path if (job.path is not None and not ask) else None
        if path is None:
            start = Path(setting_folder(self.settings, "models/last_dir"))
            name = f"{job.kind}-{time.strftime('%Y%m%d-%H%M')}.safetensors"
            chosen, _ = QFileDialog.getSaveFileName(self, f"Save the {job.title}", str(start / name), MODEL_FILTER)
            if not chosen:
                return
            path = Path(chosen)
            if path.suffix.lower() != ".safetensors":
                path = path.with_name(path.name + ".safetensors")
        self.settings.setValue("models/last_dir", str(Path(path).parent))
        self.statusBar().showMessage(f"Saving {Path(path).name}…")
        step = job.step
        run_in_background(self.session.save_model, job, path,
                          on_result=lambda out, j=job, s=step: self._model_saved(j, out, s),
                          on_error=lambda exc: self.show_error("The model could not be saved", str(exc)))

    def _model_saved(self, job: TrainingJob, path: Path, step: int | None = None) -> None:
        self.statusBar().showMessage(f"Saved the {job.title.lower()} to {path}", 8000)
        self.unsaved.model_saved(job.id, job.step if step is None else step)

    def open_model_dialog(self) -> None:
        start = setting_folder(self.settings, "models/last_dir")
        chosen, _ = QFileDialog.getOpenFileName(self, "Open a model", str(start), MODEL_FILTER)
        if chosen:
            self.open_model(chosen)

    def open_model(self, path: str | Path) -> None:
        self.settings.setValue("models/last_dir", str(Path(path).parent))
        self.statusBar().showMessage(f"Opening {Path(path).name}…")
        run_in_background(self.session.open_model, path, on_result=self._model_opened,
                          on_error=lambda exc: self.show_error("The model could not be opened", str(exc)))

    def _model_opened(self, job: TrainingJob) -> None:
        self.unsaved.model_saved(job.id, job.step)  # its file holds it
        self.session.add_job(job)
        self.statusBar().showMessage(f"Opened {job.path.name if job.path else 'the model'}", 5000)
        if self.training_panel is None:
            self._pending_jobs.append(job)
        else:
            self._show_opened_job(job)
        self.controller.score(job)  # no card saved in it: scored against the current images, if they fit

    def _show_opened_job(self, job: TrainingJob) -> None:
        panel = self.training_panel
        if panel is None:
            return
        if job.kind not in panel.pages:
            self.show_error("Unknown model kind", f"This studio has no page for '{job.kind}' models.")
            return
        panel.set_current_kind(job.kind)
        panel.page(job.kind).add_job(job)

    def _make_project_actions(self) -> None:
        """File → Save Project (Ctrl+Alt+S), Save Project As… (Ctrl+Alt+Shift+S), Open Project… (Ctrl+Alt+O)."""
        self.action_save_project = self._action("Save &Project", self.save_project, "Ctrl+Alt+S",
                                                "Save the session (dataset reference, models, canvas) as one file")
        self.action_save_project_as = self._action("Save Project A&s…", lambda: self.save_project(ask=True),
                                                   "Ctrl+Alt+Shift+S", "Save the session under a new name")
        self.action_open_project = self._action("Open Pro&ject…", self.open_project_dialog, "Ctrl+Alt+O",
                                                "Open a saved session (.harmonium)")
        self.project_actions = [self.action_open_project, self.action_save_project, self.action_save_project_as]
        for action in self.project_actions:
            action.setEnabled(False)  # until the Canvas tab exists (the model engine is ready)
            self.file_menu.insertAction(self.action_open_model, action)
        self.file_menu.insertSeparator(self.action_open_model)

    def save_project(self, ask: bool = False, then=None) -> bool:
        """Save the whole session in a worker; the previous file stays intact if it fails.
        ``then`` runs on the UI thread once the file is written. Returns False when nothing
        was started (the engine is still starting, or no file name was chosen)."""
        if self.canvas_view is None:
            self.statusBar().showMessage("The model engine is still starting: try again in a moment.", 5000)
            return False
        path = self._project_target(ask)
        if path is None:
            return False
        self._start_project_save(path, then)
        return True

    def _project_target(self, ask: bool) -> Path | None:
        """Where Save Project writes: the project's file, else one the person chooses (None: cancelled)."""
        from studio.project import PROJECT_SUFFIX

        path = self.project_path if not ask else None
        if path is None:
            start = Path(setting_folder(self.settings, "projects/last_dir"))
            chosen, _ = QFileDialog.getSaveFileName(self, "Save the project", str(start / f"untitled{PROJECT_SUFFIX}"),
                                                    f"Harmonium projects (*{PROJECT_SUFFIX})")
            if not chosen:
                return None
            path = Path(chosen)
            if path.suffix.lower() != PROJECT_SUFFIX:
                path = path.with_name(path.name + PROJECT_SUFFIX)
        return path

    def _start_project_save(self, path: Path, then=None, failed=None) -> None:
        from studio.project import save_project

        data = self.session.project_data()
        state = data.canvas
        # What the file will hold, taken now (the canvas and the job list may change while it saves).
        marks = (state, self._job_marks(), self._dataset_key())
        self.settings.setValue("projects/last_dir", str(path.parent))
        self.statusBar().showMessage(f"Saving {path.name}…")

        def done(out: Path) -> None:
            self._project_saved(out, marks)
            if then is not None:
                then()

        def error(exc: BaseException) -> None:
            self.show_error("The project could not be saved",
                            f"{exc}\n\nNothing was overwritten: {path.name} is as it was before.")
            if failed is not None:
                failed()

        run_in_background(save_project, path, data, on_result=done, on_error=error)

    def _project_saved(self, path: Path, marks: tuple | None = None) -> None:
        self.session.set_project_path(path)
        self.statusBar().showMessage(f"Saved the project to {path}", 8000)
        if marks is not None:
            state, jobs, dataset = marks
            self.unsaved.project_saved(state, jobs, dataset)
        self._drop_stale_recovery()

    def open_project_dialog(self) -> None:
        from studio.project import PROJECT_SUFFIX

        start = setting_folder(self.settings, "projects/last_dir")
        chosen, _ = QFileDialog.getOpenFileName(self, "Open a project", str(start),
                                                f"Harmonium projects (*{PROJECT_SUFFIX});;All files (*)")
        if chosen:
            self.open_project(chosen)

    def open_project(self, path: str | Path, restoring: Orphan | None = None) -> None:
        """Read and validate the project in a worker; only a valid one replaces the canvas,
        adds its models and reloads its images (the current session is untouched otherwise).

        Three stages: the project and its models are read in a worker; on the UI thread its
        problems are shown and, when its images lie outside its folder, the person confirms
        before any is read; the dataset is then resolved in a worker and everything applied
        (:meth:`_project_opened`). ``restoring``: a crashed session's recovery file
        (:meth:`answer_recovery`)."""
        path = Path(path)
        if restoring is None:
            self.settings.setValue("projects/last_dir", str(path.parent))
        self.statusBar().showMessage(f"Opening {path.name}…" if restoring is None else "Restoring the autosaved work…")
        run_in_background(self._read_project, path,
                          on_result=lambda result, r=restoring: self._project_read(path, result, r),
                          on_error=lambda exc, r=restoring: self._project_failed(exc, r))

    def _project_failed(self, exc: BaseException, restoring: Orphan | None = None) -> None:
        if restoring is None:
            self.show_error("The project could not be opened", f"{exc}\n\nNothing was changed.")
            return
        kept = set_aside(restoring)  # not offered again, not deleted
        self.show_error("The autosaved work could not be restored",
                        f"{exc}\n\nNothing was changed. The file is kept at {kept}.")

    def _read_project(self, path: Path) -> tuple[Any, list[TrainingJob], list[str], list[str], list[str]]:
        """Worker side: the validated project, a job per model, the dataset sources found and
        missing, and those found outside the project's folder (``stat`` only: no image is read
        here, the images load after the person confirmed the outside ones)."""
        project, jobs = self.session.read_project(path)
        if project.dataset is None:
            return project, jobs, [], [], []
        found, missing = project.dataset.resolve(path.parent)
        return project, jobs, found, missing, project.outside_sources(path)

    def _confirm_outside_sources(self, sources: list[str], path: Path) -> bool:
        """Ask before reading images a project names outside its own folder (a project from
        elsewhere could point anywhere). Modal: the person is opening the project and waits."""
        shown = "\n".join(sources[:10]) + (f"\n… and {len(sources) - 10} more" if len(sources) > 10 else "")
        answer = QMessageBox.question(
            self, "Read images outside the project's folder?",
            f"{path.name} reads images from outside its own folder:\n\n{shown}\n\n"
            "Read them? With No, only the project's own images are read (or, if it has none, "
            "the images you have now are kept).",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _project_read(self, path: Path, result: tuple, restoring: Orphan | None = None) -> None:
        """UI side, between reading the project and reading its images: the images outside
        its folder are shown and confirmed (not for a recovery file: it holds this user's own
        session), then everything is applied."""
        project, jobs, found, missing, outside = result
        if self._closing or self.canvas_view is None:
            if restoring is not None:
                restoring.release()
            return
        refused: list[str] = []
        if outside and restoring is None and not self._confirm_outside_sources(outside, path):
            refused = [s for s in found if s in outside]
            found = [s for s in found if s not in outside]
        if self._closing:
            return
        self._project_opened((project, jobs, found, missing), restoring, refused=refused)

    def _project_opened(self, result: tuple[Any, list[TrainingJob], list[str], list[str]],
                        restoring: Orphan | None = None, refused: list[str] | None = None) -> None:
        project, jobs, found, missing = result
        if self._closing or self.canvas_view is None:
            if restoring is not None:
                restoring.release()
            return
        self.session.apply_project(project, jobs, "Restore autosaved work" if restoring else "Open project")
        self.canvas_view.show_replaced_canvas()
        for job in jobs:
            if self.training_panel is None:
                self._pending_jobs.append(job)
            else:
                self._show_opened_job(job)
            self.controller.score(job)
        dataset = project.dataset
        expected = self._dataset_key()  # the images the session will have once loaded
        if dataset is not None:
            pp = Preprocess.from_dict(dataset.preprocess)
            same = self.session.images is not None and self.session.sources == found and self.session.preprocess == pp
            if missing:
                self.show_error("Some images of the project were not found",
                                "Missing:\n" + "\n".join(missing[:10]) + ("\n…" if len(missing) > 10 else "")
                                + ("\n\nThe images that were found are loaded." if found else
                                   "\n\nThe current images are kept."))
            if not same and (found or (dataset.is_demo and not refused)):
                self.dataset_panel.set_preprocess(pp)
                self.open_sources(found, pp)
                expected = dataset_key(found, pp)
        problems = [str(p) for p in project.problems]
        if problems:
            self.show_error("Some of the project could not be opened",
                            "\n".join(problems[:10]) + (f"\n… and {len(problems) - 10} more" if len(problems) > 10 else "")
                            + "\n\nEverything else was opened.")
        state = self.canvas_view.canvas.snapshot()
        members = self._job_marks()
        n = len(project.canvas.layers)
        if restoring is None:
            self.session.set_project_path(project.path)
            opened = {job.id for job in jobs}
            self.unsaved.project_saved(state, [m for m in members if m[0] in opened], expected,
                                       members=[m[0] for m in members])
            self.statusBar().showMessage(
                f"Opened {self.project_path.name if self.project_path else 'the project'}: {n} layer{'s' * (n != 1)}, "
                f"{len(jobs)} model{'s' * (len(jobs) != 1)}"
                + (f", {len(refused)} image source{'s' * (len(refused) != 1)} outside its folder not read"
                   if refused else "")
                + " (Ctrl+Z in the Canvas brings the previous canvas back)", 10000)
            return
        # Restored after a crash: unsaved until saved, into the project it belonged to if any;
        # the recovery file becomes this studio's own until the next autosave replaces it.
        self.session.set_project_path(restored_project_path(project.meta))
        self.unsaved.restored_from_recovery(state, [(j.id, j.step) for j in jobs], expected,
                                            in_project=self.project_path is not None)
        try:
            self.last_autosave = self.recovery.adopt(restoring)
        except OSError:
            restoring.release()
        else:
            restored = {job.id for job in jobs}
            if all(job.id in restored for job in self.session.jobs if job.model is not None):
                # the adopted file holds the session as it is now: no need to write it again
                self._autosaved = self.unsaved.fingerprint(state, self.session.jobs, expected)
            else:
                self._autosaved = None  # models from before the restore are not in it yet
        self.statusBar().showMessage(
            f"Restored the autosaved work: {n} layer{'s' * (n != 1)}, {len(jobs)} model{'s' * (len(jobs) != 1)}. "
            "Save it (Ctrl+Alt+S) to keep it.", 15000)
