"""Threads of the studio: training jobs, image loading, one-off tasks. No widget is touched here.

* :class:`TrainingWorker` (a ``QThread``) pulls events from one :class:`~studio.jobs.TrainingJob`
  and emits *throttled* plain-data :class:`~studio.jobs.JobUpdate` s: at most ``max_rate`` per
  second (20), only the newest frame, weight filters at most every half second, and always an
  update when the state changes. While the job is paused the thread sleeps on the job's
  condition variable (no polling).
* :class:`JobsController` owns the workers: start / pause / resume / stop a job, several at once,
  and :meth:`JobsController.shutdown` stops them all within a deadline. Views hear of states in
  the order they happened (by :attr:`~studio.jobs.JobUpdate.state_serial`), not in the order
  updates arrive: a worker's update queued before a stop never makes a stopped job "running". When a run ends (done,
  or stopped after an epoch) it scores the model with :func:`run_in_background` (the job's
  :meth:`~studio.jobs.TrainingJob.score`, seconds) and announces the card (``scored``).
* :class:`LoadWorker` loads images (progress, cancel) off the UI thread.
* :func:`run_in_background` runs a function in Qt's thread pool through superqt's
  ``create_worker`` (saving and opening models, importing the engine, scoring): one-off tasks
  nobody can stop, only wait for (:func:`wait_background`).

The controller and each loader register with :mod:`studio.worker`, as the views' workers do,
so a window stops all of its threads with one ``studio.worker.shutdown_all(deadline,
where=owned_by(window))``.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, QThread, QThreadPool, Signal

from studio.dataset import LoadCancelled, Preprocess
from studio.jobs import JobState, JobUpdate, Session, TrainingJob
from studio.worker import register


class TrainingWorker(QThread):
    """Iterates one job; emits ``updated(JobUpdate)`` at most ``max_rate`` times a second."""

    updated = Signal(object)  # JobUpdate

    def __init__(self, job: TrainingJob, max_rate: float = 20.0, filters_every: float = 0.5,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job = job
        self.interval = 1.0 / max_rate
        self.filters_every = filters_every
        self.setObjectName(f"training-{job.kind}-{job.id}")

    def run(self) -> None:  # noqa: D401 - QThread API
        _lower_priority()
        job = self.job
        last_emit = 0.0
        last_filters = 0.0
        frame_serial = -1
        last_state: JobState | None = None
        dirty = False
        while True:
            event = job.step_once(block=True, timeout=1.0)
            if event is not None:
                dirty = True
            state = job.state
            now = time.monotonic()
            changed = state is not last_state or (event is not None and event.kind != "step")
            if changed or (dirty and now - last_emit >= self.interval):
                want_filters = changed or now - last_filters >= self.filters_every
                update = job.update(frame=True, filters=want_filters, since_frame=frame_serial)
                frame_serial = update.frame_serial
                if want_filters:
                    last_filters = now
                self.updated.emit(update)
                last_emit, last_state, dirty = now, state, False
            # Leave only through step_once() returning None on a finished job: that call is
            # the one that closes the generator if a stop arrived while we were busy here.
            if event is None and job.finished:
                break
        # The closing word: everything, whatever the throttle said.
        self.updated.emit(job.update(frame=True, filters=True, since_frame=frame_serial))


def _lower_priority() -> None:
    """Training yields the CPU to the window: this thread's nice value goes up (Linux, where
    threads have their own; elsewhere nothing happens). ``HARMONIUM_WORKER_NICE`` sets it."""
    import os

    nice = int(os.environ.get("HARMONIUM_WORKER_NICE", "0") or 0)
    if nice and hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:
            pass


class JobsController(QObject):
    """Starts and stops the workers of the session's jobs. Lives on the UI thread.

    Signals carry plain data: ``updated(JobUpdate)``, ``failed(job_id, message)``,
    ``state_changed(job_id, state)``, ``worker_finished(job_id)``, ``scored(job_id)`` (a quality
    report, or a note why there is none, has landed on the job).
    """

    updated = Signal(object)
    failed = Signal(int, str)
    state_changed = Signal(int, str)
    worker_finished = Signal(int)
    scored = Signal(int)

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.workers: dict[int, TrainingWorker] = {}
        self._jobs: dict[int, TrainingJob] = {}
        # The newest state views have heard of, per job: (state serial, state, error).
        self._last_state: dict[int, tuple[int, str, str | None]] = {}
        self._reported: set[int] = set()
        self._shut_down = False  # no scoring once the studio is closing
        self.name = "training-workers"
        register(self)  # studio.worker.shutdown_all stops the jobs and waits for the workers

    # ----------------------------------------------------------------- intent
    def start(self, job: TrainingJob) -> None:
        """Start (or resume) ``job`` and make sure a worker pulls it."""
        self._jobs[job.id] = job
        job.start()
        self._ensure_worker(job)
        self._announce(job)

    def pause(self, job: TrainingJob) -> None:
        job.pause()
        self._announce(job)

    def resume(self, job: TrainingJob) -> None:
        self.start(job)

    def toggle(self, job: TrainingJob) -> None:
        if job.state is JobState.RUNNING:
            self.pause(job)
        else:
            self.start(job)

    def stop(self, job: TrainingJob) -> None:
        job.stop()
        self._announce(job)

    # ----------------------------------------------------------------- workers
    def _ensure_worker(self, job: TrainingJob) -> None:
        if job.state is not JobState.RUNNING:
            return
        w = self.workers.get(job.id)
        if w is not None and w.isRunning():
            return
        w = TrainingWorker(job, parent=self)
        w.updated.connect(self._on_update)
        w.finished.connect(lambda jid=job.id: self._on_worker_finished(jid))
        self.workers[job.id] = w
        w.start(QThread.Priority.LowPriority)

    def _on_worker_finished(self, job_id: int) -> None:
        w = self.workers.get(job_id)
        job = self._jobs.get(job_id)
        if w is not None and not w.isRunning():
            self.workers.pop(job_id, None)
            w.deleteLater()
        # Resumed while the old worker was on its way out: give it a new one.
        if job is not None and job.state is JobState.RUNNING:
            self._ensure_worker(job)
        self.worker_finished.emit(job_id)

    def _on_update(self, update: JobUpdate) -> None:
        """Pass ``update`` on to the views. States only move forward from their point of view:
        an update made before a change of state they have already heard of (a worker's, queued
        before a stop that :meth:`_announce` reported at once) keeps its numbers but takes the
        newer state, so a stopped job never looks "running" again and ``state_changed`` fires
        once per real change (one model copy for the Dreams tab, one score)."""
        seen = self._last_state.get(update.job_id)
        if seen is not None and update.state_serial < seen[0]:
            serial, state, error = seen
            update = dataclasses.replace(
                update, state_serial=serial, state=state, error=error,
                steps_per_second=update.steps_per_second if state == JobState.RUNNING.value else 0.0)
        self.updated.emit(update)
        self._last_state[update.job_id] = (update.state_serial, update.state, update.error)
        if seen is None or seen[1] != update.state:
            self.state_changed.emit(update.job_id, update.state)
            job = self._jobs.get(update.job_id)
            if job is not None and update.state in (JobState.DONE.value, JobState.STOPPED.value):
                self.score(job)
        if update.state == JobState.FAILED.value and update.error and update.job_id not in self._reported:
            self._reported.add(update.job_id)
            self.failed.emit(update.job_id, update.error)

    # ----------------------------------------------------------------- quality
    def score(self, job: TrainingJob) -> bool:
        """Score ``job``'s model in the background if it is due (a run that ended, an opened
        model with images to score on): the page shows "scoring…" at once, the card when it
        lands. False when there is nothing to score now."""
        self._jobs.setdefault(job.id, job)
        if self._shut_down or not job.begin_scoring():
            return False
        self._announce(job)
        run_in_background(job.score, on_result=lambda _report, j=job: self._scored(j),
                          on_error=lambda exc, j=job: self._scored(j, exc))
        return True

    def _scored(self, job: TrainingJob, exc: BaseException | None = None) -> None:
        if exc is not None:  # score() keeps its own errors; this is a bug: say so on the card
            job.quality_status, job.quality_note = "failed", f"The model could not be scored: {exc}"
            job.quality_step = job.step  # not again at this step
        self._announce(job)
        self.scored.emit(job.id)
        if job.wants_score:  # trained on (and stopped again) while it was being scored
            self.score(job)

    def _announce(self, job: TrainingJob) -> None:
        """Intent applied on the UI thread: views hear about it at once (no filters: the worker
        may be mid-step)."""
        self._on_update(job.update(frame=False, filters=False))

    # ----------------------------------------------------------------- queries
    def active_jobs(self) -> list[TrainingJob]:
        return [j for j in self._jobs.values() if j.state.active]

    def running_threads(self) -> list[TrainingWorker]:
        return [w for w in self.workers.values() if w.isRunning()]

    def steps_per_second(self) -> float:
        return sum(j.steps_per_second for j in self._jobs.values() if j.state is JobState.RUNNING)

    # ----------------------------------------------------------------- studio.worker.Stoppable
    @property
    def owner(self) -> QObject | None:
        return self.parent()

    @property
    def alive(self) -> bool:
        return bool(self.running_threads())

    def shutdown(self, timeout: float = 1.0) -> bool:
        """Stop every job and wait for the workers; True when all ended within ``timeout`` s.
        No run is scored from now on (a score already under way finishes in the pool)."""
        self._shut_down = True
        for job in list(self._jobs.values()):
            if job.state.active or job.state is JobState.IDLE:
                job.stop()
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait at most ``timeout`` s (None: as long as it takes) for the workers to end."""
        end = None if timeout is None else time.monotonic() + timeout
        for w in list(self.workers.values()):
            w.wait() if end is None else w.wait(int(max(0.0, end - time.monotonic()) * 1000))
        return not self.running_threads()


class LoadWorker(QThread):
    """Loads images with progress and cancel; ``loaded(ImageSet, sources)`` or ``failed(str)``
    or ``cancelled()`` at the end."""

    progress = Signal(int, int)
    loaded = Signal(object, object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, session: Session, sources: Sequence[str] | None, preprocess: Preprocess,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.sources = list(sources or [])
        self.preprocess = preprocess
        self.cancel_event = threading.Event()
        self._last_progress = 0.0
        self.name = "image-loader"
        self.setObjectName(self.name)
        register(self)

    def cancel(self) -> None:
        self.cancel_event.set()

    # ----------------------------------------------------------------- studio.worker.Stoppable
    @property
    def owner(self) -> QObject | None:
        return self.parent()

    @property
    def alive(self) -> bool:
        return self.isRunning()

    def shutdown(self, deadline: float = 0.0) -> bool:
        """Cancel the loading; wait at most ``deadline`` s; True when the thread has ended."""
        self.cancel()
        return self.join(deadline)

    def join(self, timeout: float | None = None) -> bool:
        return self.wait() if timeout is None else self.wait(int(max(0.0, timeout) * 1000))

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done in (0, total) or now - self._last_progress >= 1 / 20:  # ≤ 20 updates a second
            self._last_progress = now
            self.progress.emit(done, total)

    def run(self) -> None:
        try:
            images = self.session.load(self.sources, self.preprocess, progress=self._progress,
                                       cancel=self.cancel_event)
        except LoadCancelled:
            self.cancelled.emit()
        except Exception as exc:  # noqa: BLE001 - a message for people, never a traceback
            self.failed.emit(f"{exc}" or type(exc).__name__)
        else:
            if self.cancel_event.is_set():
                self.cancelled.emit()
            else:
                self.loaded.emit(images, self.sources)


def run_in_background(fn: Callable[..., Any], *args: Any,
                      on_result: Callable[[Any], None] | None = None,
                      on_error: Callable[[BaseException], None] | None = None, **kwargs: Any):
    """Run ``fn(*args, **kwargs)`` in Qt's global thread pool (superqt's FunctionWorker); the
    callbacks run on the UI thread. Returns the worker."""
    from superqt.utils import create_worker

    connect: dict[str, Callable] = {}
    if on_result is not None:
        connect["returned"] = on_result
    connect["errored"] = on_error if on_error is not None else _log_error
    return create_worker(fn, *args, _start_thread=True, _connect=connect, **kwargs)


def _log_error(exc: BaseException) -> None:
    import traceback

    traceback.print_exception(exc)


def wait_background(timeout: float = 1.0) -> bool:
    """Wait for :func:`run_in_background` tasks (on quitting)."""
    return QThreadPool.globalInstance().waitForDone(int(timeout * 1000))


def owned_by(root: QObject) -> Callable[[Any], bool]:
    """For ``studio.worker.shutdown_all(where=...)``: is a registered item's ``owner`` ``root``
    or one of its descendants (by QObject parents)? An owner whose C++ side is gone is not."""

    def test(item: Any) -> bool:
        try:
            obj = item.owner
            while obj is not None:
                if obj is root:
                    return True
                obj = obj.parent()
        except (AttributeError, RuntimeError):  # not a QObject, or its C++ side is gone
            return False
        return False

    return test
