"""The Dreams tab follows the document's current run by itself: its live chains while it
trains, free-running dreams over a private copy of its model once it stops, and the banner of
its quality report.

The document says which run is current (``events.current_job``, on the UI thread); the jobs'
news reach the UI thread through the :class:`~studio.ui.workers.JobsController`'s queued Qt
signals (``updated``, ``state_changed``, ``scored``), which order a job's updates by its state
serial. Whatever order they arrive in, the job's own state decides what is shown.
"""

from __future__ import annotations

from typing import Any

from studio.jobs import JobState, JobUpdate, TrainingJob
from studio.ui.relay import listen


class FollowRun:
    """The part of :class:`~studio.ui.dreams.view.DreamsView` that follows the current run."""

    def _init_follow(self) -> None:
        self._shut = False
        self._dreams_wanted: tuple[int, int] | None = None  # (job id, step) a model copy was asked for

    def follow_jobs(self, controller: Any) -> None:
        """Follow the document's current run, its news brought by ``controller``."""
        controller.updated.connect(self._run_update)
        controller.state_changed.connect(self._run_state)
        controller.scored.connect(self._run_scored)
        listen(self, self.document.events.current_job, self.dream_with)

    def stop_following(self) -> None:
        """Follow no more (the window is closing: no new sampler may start)."""
        self._shut = True

    def dream_with(self, job: TrainingJob | None) -> None:
        """Show ``job``: its live chains when it trains (frames arrive through
        :meth:`_run_update`), free-running dreams over a private copy of its model otherwise."""
        if job is None or job.model is None or self._shut:
            return
        if job.state in (JobState.RUNNING, JobState.PAUSED):
            if job.last_frame is not None:
                self.show_training_frame(job.last_frame, _frame_info(job))
            return
        key = (job.id, int(getattr(job, "step", 0) or 0))
        shown = self.session
        if key == self._dreams_wanted and (shown is None or (shown.source == "sampler" and shown.meta.get("job_id") == job.id)):
            return  # this run at this step dreams already, or its copy is on its way
        self._dreams_wanted = key
        from studio.canvas.sources import detach_model
        from studio.ui.workers import run_in_background

        meta = {"kind": job.kind, "title": f"{job.title} · run #{job.id}", "job_id": job.id}
        if job.path is not None:
            meta["path"] = str(job.path)

        def show(model) -> None:
            if self._shut or self.document.current_job is not job:
                return  # another run was chosen meanwhile: it shows its own dreams
            if job.state in (JobState.RUNNING, JobState.PAUSED):
                return  # it trains again: its live chains show
            if self._dreams_wanted != key:
                return  # a newer copy was asked for since: that one is set, once
            self.set_model(model, meta)
            self._show_quality_of(job)

        # The private copy is taken under the job's lock in a worker: for the hybrid it takes
        # about 20 ms, which the UI thread would otherwise spend when a run stops.
        run_in_background(detach_model, job.model, job.step_lock, on_result=show,
                          on_error=lambda exc: self._message(f"Dreams could not start: {exc}"))

    def _show_quality_of(self, job: TrainingJob) -> None:
        """The banner follows the quality report of the run dreamt over (the report of the
        model at its current step only)."""
        shown = self.session
        if shown is None or shown.source != "sampler" or shown.meta.get("job_id") != job.id:
            return
        fresh = job.quality_status == "ready" and job.quality_step == job.step
        self.set_quality(job.quality if fresh else None, key=(job.id, job.quality_step))

    def _current_id(self) -> int | None:
        job = self.document.current_job
        return job.id if job is not None else None

    def _run_scored(self, job_id: int) -> None:
        job = self.document.current_job
        if job is not None and job.id == job_id:
            self._show_quality_of(job)

    def _run_state(self, job_id: int, state: str) -> None:
        if job_id == self._current_id() and state in ("stopped", "done"):
            self.dream_with(self.document.current_job)

    def _run_update(self, update: JobUpdate) -> None:
        """A training frame of the current run. The job's own state decides, not the order
        updates arrive in: a frame that lands after its job stopped (made before the stop, or
        the worker's closing word) must not replace the free-running dreams with a frozen
        training view."""
        if self._shut or update.job_id != self._current_id() or update.frame is None:
            return
        job = self.document.current_job
        if job is None or not job.state.active or update.state not in (JobState.RUNNING.value, JobState.PAUSED.value):
            return
        if job.last_frame is not None:
            self.show_training_frame(job.last_frame, _frame_info(job))


def _frame_info(job: TrainingJob) -> dict[str, Any]:
    return {"job_id": job.id, "kind": job.kind, "title": job.title, "step": job.step}
