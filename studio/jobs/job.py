"""A training job: one trainer, its training generator and its state machine.  See
:mod:`studio.jobs`."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal, SignalGroup

from models import kinds  # the kinds' records: no torch imported
from studio.images import tile, to_uint8
from studio.jobs.common import describe_error
from studio.jobs.heldout import ScoringSet

if TYPE_CHECKING:  # torch stays unimported until a job needs it
    from models.training import Trainer, TrainEvent


class JobState(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobState.STOPPED, JobState.DONE, JobState.FAILED)

    @property
    def active(self) -> bool:
        return self in (JobState.RUNNING, JobState.PAUSED)


@dataclass
class JobUpdate:
    """Plain data about a job at one moment, for views (safe to send between threads)."""

    job_id: int
    kind: str
    title: str
    state: str
    step: int
    total_steps: int
    epoch: int
    total_epochs: int
    elapsed: float
    eta: float
    steps_per_second: float
    metrics: dict[str, float]
    epoch_metrics: dict[str, float]
    error: str | None = None
    frame: np.ndarray | None = None  # newest frame as a uint8 mosaic (see `tile`), None: unchanged
    filters: np.ndarray | None = None  # weight-filter uint8 mosaic (128 = 0), None: none / unchanged
    frame_serial: int = 0
    #: Grows with every change of the job's state (:attr:`TrainingJob.state_serial`): an update
    #: that arrives with a smaller one than a view has seen was made before that change, and its
    #: ``state`` is out of date (see ``JobsController._on_update``).
    state_serial: int = 0
    quality: Any = None  # the run's models.quality.QualityReport (frozen once made), or None
    quality_status: str = ""  # "" (none yet) | "scoring" | "ready" | "failed" | "unavailable"
    quality_note: str = ""  # why there is no card, or what went wrong
    quality_step: int = -1  # the step the report is about

    @property
    def progress(self) -> float:
        return self.step / max(1, self.total_steps)


class JobEvents(SignalGroup):
    """What a :class:`TrainingJob` announces, each signal with the job as its argument.

    ``state`` (a change of state), ``step`` (a step pulled: metrics and maybe a frame),
    ``failed`` (the run failed: :attr:`TrainingJob.error` says why) are emitted on the pulling
    thread; ``quality`` (scoring began or ended) on the scoring thread, or the caller's of
    :meth:`TrainingJob.begin_scoring`. A Qt view marshals them to its own thread (connect a
    queued Qt signal's ``emit``, or ``connect(..., thread=...)``).
    """

    state = Signal(object)
    step = Signal(object)
    failed = Signal(object)
    quality = Signal(object)


class TrainingJob:
    """One training run: a trainer, its generator, a state machine and what views need."""

    _ids = itertools.count(1)

    def __init__(
        self,
        make_trainer: Callable[[], Trainer] | None = None,
        *,
        trainer: Trainer | None = None,
        model: Any = None,
        kind: str = "",
        title: str | None = None,
        preprocess: dict[str, Any] | None = None,
        source: str = "",
        history: Sequence[dict[str, float]] = (),
    ) -> None:
        if make_trainer is None and trainer is None and model is None:
            raise ValueError("a job needs a trainer, a way to make one, or a model")
        self.id = next(self._ids)
        self.kind = kind
        self.title = title or kind
        self.preprocess = preprocess
        self.source = source
        self.path: Path | None = None  # where the model was last saved or opened from
        self._make_trainer = make_trainer
        self._trainer = trainer
        self._model = trainer.model if trainer is not None else model
        self._step_hint = 0  # the step of an opened checkpoint, until its trainer is built
        self._total_hint = 0  # its run's total steps, when the checkpoint tells (0: unknown)
        self._gen: Iterator[TrainEvent] | None = None
        self._state = JobState.IDLE
        self._state_serial = 0  # + 1 on every change of state (under _cond)
        self._cond = threading.Condition()
        self._stop_requested = False
        #: Held while a step runs (and while the trainer is built): hold it to read the model.
        self.step_lock = threading.Lock()
        self.error: str | None = None
        self.error_type: str | None = None
        self.last_event: TrainEvent | None = None
        self.last_metrics: dict[str, float] = {}
        self.last_epoch_metrics: dict[str, float] = {}
        self._series: dict[str, tuple[list[int], list[float]]] = {}
        self._epoch_series: dict[str, tuple[list[int], list[float]]] = {}
        self._data_lock = threading.Lock()  # guards the series and the frame
        self._rate: deque[tuple[float, int]] = deque(maxlen=256)
        self.last_frame: np.ndarray | None = None  # float32 [n, C, H, W] in [0, 1]
        self.frame_serial = 0
        self.generator_closed = False
        #: ``state``, ``step``, ``failed``, ``quality`` (see :class:`JobEvents`).
        self.events = JobEvents()
        #: What the run can be scored on (the set it trained on and its held-out part), or None.
        self.scoring_set: ScoringSet | None = None
        #: Keywords for ``models.quality.score_model`` (tests make scoring quick with ``steps``).
        self.score_options: dict[str, Any] = {}
        self.quality: Any = None  # models.quality.QualityReport
        self.quality_status = ""  # "" | "scoring" | "ready" | "failed" | "unavailable"
        self.quality_note = ""
        self.quality_step = -1  # the step the report (or the last attempt) is about
        self._scoring = threading.Lock()  # held while a report is computed
        for rec in history:
            self._record_epoch(int(rec.get("step", 0)), {k: v for k, v in rec.items() if k not in ("epoch", "step")})

    def __repr__(self) -> str:
        return f"TrainingJob(#{self.id} {self.kind} {self._state.value} step {self.step})"

    # --------------------------------------------------------------------- what it is
    @property
    def state(self) -> JobState:
        return self._state

    @property
    def finished(self) -> bool:
        return self._state.finished

    @property
    def state_serial(self) -> int:
        """How many times the state has changed: orders updates made on different threads."""
        return self._state_serial

    @property
    def trainer(self) -> Trainer | None:
        return self._trainer

    @property
    def model(self):
        """The model (the last good one after a failure); None before the trainer is built."""
        return self._trainer.model if self._trainer is not None else self._model

    @property
    def step(self) -> int:
        t = self._trainer
        if t is not None:
            return int(t.step)
        return self.last_event.step if self.last_event is not None else self._step_hint

    @property
    def can_resume(self) -> bool:
        if self._state is JobState.PAUSED:
            return True
        if self._state is JobState.STOPPED:
            return self._trainer is not None or self._make_trainer is not None
        return False

    @property
    def steps_per_second(self) -> float:
        if self._state is not JobState.RUNNING or len(self._rate) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if time.monotonic() - t1 > 2.0:
            return 0.0
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    # --------------------------------------------------------------------- user intent
    def _set_state(self, state: JobState) -> None:
        with self._cond:
            if state is not self._state:
                self._state_serial += 1
            self._state = state
            self._cond.notify_all()
        self.events.state.emit(self)

    def start(self) -> None:
        """idle → running; a paused or stopped job resumes."""
        if self._state is JobState.IDLE:
            self._set_state(JobState.RUNNING)
        elif self.can_resume:
            self.resume()

    def pause(self) -> None:
        if self._state is JobState.RUNNING:
            self._set_state(JobState.PAUSED)

    def resume(self) -> None:
        """paused → running; stopped → running again (``trainer.run()`` resumes where it stopped)."""
        with self._cond:
            if self._state is JobState.PAUSED:
                pass
            elif self._state is JobState.STOPPED and self.can_resume:
                self._stop_requested = False
                self._gen = None
                self.generator_closed = False
            else:
                return
        self._set_state(JobState.RUNNING)

    def toggle(self) -> None:
        """Start, pause or resume: what Space does."""
        if self._state is JobState.RUNNING:
            self.pause()
        else:
            self.start()

    def stop(self) -> None:
        """Stop for good (or until :meth:`resume`): the generator is closed between two steps."""
        with self._cond:
            if self._state.finished and self._state is not JobState.STOPPED:
                return
            self._stop_requested = True
            if self._state is not JobState.STOPPED:
                self._state_serial += 1
            self._state = JobState.STOPPED
            self._cond.notify_all()
        # Nobody pulling right now? Close the generator here; otherwise the puller does.
        if self.step_lock.acquire(blocking=False):
            try:
                self._close_generator()
            finally:
                self.step_lock.release()
        self.events.state.emit(self)

    # --------------------------------------------------------------------- the pulling side
    def _close_generator(self) -> None:
        if self._gen is not None:
            try:
                self._gen.close()
            finally:
                self._gen = None
                self.generator_closed = True

    def step_once(self, block: bool = True, timeout: float | None = None) -> TrainEvent | None:
        """Pull one event from the training generator (the worker's call).

        Blocks while the job is idle or paused (without spinning) unless ``block`` is False or
        ``timeout`` passes; returns None then, and when the job ends (stopped, done, failed).
        """
        with self._cond:
            if block:
                self._cond.wait_for(lambda: self._state not in (JobState.IDLE, JobState.PAUSED), timeout)
            if self._state is not JobState.RUNNING:
                stop_now = self._stop_requested
            else:
                stop_now = None
        if stop_now is not None:
            if stop_now:
                with self.step_lock:
                    self._close_generator()
            return None
        with self.step_lock:
            if self._stop_requested:
                self._close_generator()
                return None
            try:
                if self._trainer is None:
                    assert self._make_trainer is not None
                    self._trainer = self._make_trainer()
                    self._model = self._trainer.model
                if self._gen is None:
                    self._gen = self._trainer.run()
                    self.generator_closed = False
                event = next(self._gen)
            except StopIteration:
                self._gen = None
                self.generator_closed = True
                self._set_state(JobState.DONE)
                return None
            except Exception as exc:  # noqa: BLE001 — every failure reaches the user as a message
                self._fail(exc)
                return None
            self._record(event)
            if event.kind == "done":
                self._close_generator()
                with self._cond:
                    if self._state is JobState.RUNNING:
                        self._state = JobState.DONE
                        self._state_serial += 1
                    self._cond.notify_all()
                self.events.state.emit(self)
            elif self._stop_requested:
                self._close_generator()
        self.events.step.emit(self)
        return event

    def iterate(self, block: bool = True) -> Iterator[TrainEvent]:
        """Events until the job ends (or, with ``block=False``, until it is paused)."""
        while not self.finished:
            event = self.step_once(block=block)
            if event is None:
                if not block and self._state in (JobState.PAUSED, JobState.IDLE):
                    return
                continue
            yield event

    def _fail(self, exc: BaseException) -> None:
        from models.training import TrainingDiverged

        self._gen = None
        self.generator_closed = True
        self.error_type = type(exc).__name__
        if isinstance(exc, TrainingDiverged):
            self.error = str(exc)  # the trainer rolled back and explains
        else:
            message = describe_error(exc)
            trainer = self._trainer
            good = trainer.good_state if trainer is not None else None
            if good is not None:
                try:
                    trainer.model.load_state_dict(good)  # type: ignore[union-attr]
                    message += (f" The model was rolled back to step {trainer.good_step}, "
                                "the last good state.")
                except Exception:  # noqa: BLE001 - the message stays honest below
                    message += " The model may be incomplete."
            self.error = message
        self._set_state(JobState.FAILED)
        self.events.failed.emit(self)

    # --------------------------------------------------------------------- quality
    @property
    def can_dream(self) -> bool:
        """Whether the model draws samples (a plain autoencoder does not: it gets no card)."""
        record = kinds.KINDS.get(self.kind)
        return record is not None and record.dreams

    @property
    def wants_score(self) -> bool:
        """A finished run (done, or stopped after at least one epoch) whose model has no report
        for its current step yet, and images to be scored on."""
        if not self.can_dream or self.model is None or self._state is JobState.FAILED:
            return False
        if self._state is JobState.STOPPED:
            if not self._epoch_series:
                return False
        elif self._state is not JobState.DONE:
            return False
        data = self.scoring_set
        if data is None or not data.has_heldout:
            return False
        return self.quality_status != "scoring" and self.quality_step != self.step

    def begin_scoring(self) -> bool:
        """Mark the run "scoring" (cheap: the UI thread may call it, then run :meth:`score` in
        a worker); False when it needs no score now."""
        with self._cond:
            if not self.wants_score:
                return False
            self.quality_status = "scoring"
            self.quality_note = ""
        self.events.quality.emit(self)
        return True

    @property
    def scoring(self) -> bool:
        return self.quality_status == "scoring"

    def score(self, **options: Any) -> Any:
        """Compute the quality report of the model as it is now (seconds: call it off the UI
        thread), store it in :attr:`quality` and announce it ("quality" event). Scores a private
        copy of the model taken under :attr:`step_lock`, so training may resume meanwhile.
        Returns the report, or None (no images to score on, or it failed: see
        :attr:`quality_note`). ``options`` go to ``models.quality.score_model`` (over
        :attr:`score_options`)."""
        if not self.scoring and not self.begin_scoring():
            return self.quality if self.quality_status == "ready" else None
        if not self._scoring.acquire(blocking=False):
            return None  # another thread is on it
        try:
            return self._score({**self.score_options, **options})
        finally:
            self._scoring.release()
            with self._cond:
                self._cond.notify_all()

    def _score(self, options: dict[str, Any]) -> Any:
        import copy

        data = self.scoring_set
        report, status, note = None, "failed", ""
        step = self.step
        try:
            with self.step_lock:
                model = copy.deepcopy(self.model)
                step = self.step
            import torch

            from models.quality import score_model

            assert data is not None and data.has_heldout
            report = score_model(model, torch.from_numpy(np.ascontiguousarray(data.train())),
                                 torch.from_numpy(np.ascontiguousarray(data.heldout())), **options)
            status = "ready"
        except Exception as exc:  # noqa: BLE001 - a note for people; the run itself is fine
            note = f"The model could not be scored: {str(exc).strip() or type(exc).__name__}"
        with self._cond:
            if status == "ready":
                self.quality = report
            self.quality_status, self.quality_note, self.quality_step = status, note, step
        self.events.quality.emit(self)
        return report

    def wait_scored(self, timeout: float | None = None) -> bool:
        """Block until no report is being computed (saving waits for the card of a run that has
        just ended); True unless ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._scoring.locked(), timeout)

    def set_quality(self, report: Any, step: int) -> None:
        """A report made earlier (an opened checkpoint's), for the model at ``step``."""
        with self._cond:
            self.quality, self.quality_step = report, int(step)
            self.quality_status, self.quality_note = ("ready", "") if report is not None else ("", "")
        self.events.quality.emit(self)

    def quality_for_checkpoint(self) -> dict[str, Any] | None:
        """The report as JSON-able data, if it is about the model as it is now."""
        q = self.quality
        if q is None or self.quality_status != "ready" or self.quality_step != self.step:
            return None
        return q.to_dict()

    # --------------------------------------------------------------------- history
    def _record(self, ev: TrainEvent) -> None:
        self.last_event = ev
        if ev.kind == "step":
            self.last_metrics = dict(ev.metrics)
            self._rate.append((time.monotonic(), ev.step))
            with self._data_lock:
                for k, v in ev.metrics.items():
                    xs, ys = self._series.setdefault(k, ([], []))
                    xs.append(ev.step)
                    ys.append(float(v))
            if ev.frame is not None:
                frame = ev.frame.detach().to("cpu").float().clamp(0, 1).numpy().copy()
                with self._data_lock:
                    self.last_frame = frame
                    self.frame_serial += 1
        elif ev.kind == "epoch":
            self._record_epoch(ev.step, ev.metrics)

    def _record_epoch(self, step: int, metrics: dict[str, float]) -> None:
        self.last_epoch_metrics = dict(metrics)
        with self._data_lock:
            for k, v in metrics.items():
                xs, ys = self._epoch_series.setdefault(k, ([], []))
                xs.append(step)
                ys.append(float(v))

    def series(self, per: str = "step") -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Metric curves, ``{name: (steps, values)}`` copies; ``per`` = "step" or "epoch"."""
        src = self._series if per == "step" else self._epoch_series
        with self._data_lock:
            return {k: (np.asarray(xs, np.float64), np.asarray(ys, np.float64)) for k, (xs, ys) in src.items()}

    # --------------------------------------------------------------------- views' data
    def weight_filters(self, max_filters: int = 100) -> np.ndarray | None:
        """The RBM's weight filters as a mosaic in [0, 1] (0.5 = zero weight, each filter scaled
        by its largest magnitude), or None for models without image-shaped weights.
        Call it from the pulling thread or while holding :attr:`step_lock`."""
        model = self.model
        weight = getattr(model, "weight", None)
        shape = getattr(getattr(model, "config", None), "image_shape", None)
        if getattr(weight, "ndim", 0) == 4:  # a texture RBM's filters [K, C, f, f], as a pixel RBM's columns
            shape, weight = tuple(weight.shape[1:]), weight.detach().flatten(1).t()
        if weight is None or shape is None or getattr(weight, "ndim", 0) != 2:
            return None
        shape = tuple(int(s) for s in shape)
        if math.prod(shape) != weight.shape[0]:
            return None
        k = min(max_filters, int(weight.shape[1]))
        w = weight[:, :k].detach().to("cpu").float().numpy()
        filters = w.T.reshape(k, *shape)
        scale = np.abs(filters).reshape(k, -1).max(axis=1)
        scale[scale == 0] = 1.0
        filters = 0.5 + 0.5 * filters / scale[:, None, None, None]
        return tile(filters, fill=0.0)

    def update(self, frame: bool = True, filters: bool = False, since_frame: int = -1) -> JobUpdate:
        """A plain-data snapshot for views. ``frame``: include the newest frame if its serial is
        past ``since_frame``; ``filters``: include the weight-filter mosaic (skipped while a step
        runs on another thread). ``state`` and ``state_serial`` are read together."""
        with self._cond:
            state, state_serial = self._state, self._state_serial
        ev = self.last_event
        trainer = self._trainer
        total_steps = ev.total_steps if ev is not None else (trainer.total_steps if trainer is not None else self._total_hint)
        total_epochs = ev.total_epochs if ev is not None else 0
        step = self.step
        elapsed = trainer.elapsed if trainer is not None else (ev.elapsed if ev is not None else 0.0)
        eta = elapsed / step * (total_steps - step) if step and total_steps else float("nan")
        mosaic = None
        serial = self.frame_serial
        if frame and serial > since_frame:
            with self._data_lock:
                f = self.last_frame
            if f is not None:
                mosaic = tile(to_uint8(f[:64]))
        fil = None
        if filters and self.model is not None and self.step_lock.acquire(blocking=False):
            try:
                fil = self.weight_filters()
            finally:
                self.step_lock.release()
            if fil is not None:
                fil = to_uint8(fil)
        return JobUpdate(
            job_id=self.id, kind=self.kind, title=self.title, state=state.value, step=step,
            total_steps=total_steps, epoch=ev.epoch if ev is not None else 0, total_epochs=total_epochs,
            elapsed=elapsed, eta=eta, steps_per_second=self.steps_per_second,
            metrics=dict(self.last_metrics), epoch_metrics=dict(self.last_epoch_metrics),
            error=self.error, frame=mosaic, filters=fil, frame_serial=serial, state_serial=state_serial,
            **self.quality_info(),
        )

    def quality_info(self) -> dict[str, Any]:
        """``quality``, ``quality_status``, ``quality_note``, ``quality_step`` as views show them
        (the fields of :class:`JobUpdate`; "unavailable" for a model that does not dream)."""
        with self._cond:
            return {"quality": self.quality,
                    "quality_status": "unavailable" if not self.can_dream else self.quality_status,
                    "quality_note": self._quality_note(), "quality_step": self.quality_step}

    def _quality_note(self) -> str:
        if not self.can_dream:
            return "A plain autoencoder does not dream, so it has no quality card."
        data = self.scoring_set
        if self.quality_note or self.quality_status:
            return self.quality_note
        if data is not None and not data.has_heldout:
            return data.note
        if data is None and getattr(self, "checkpoint", None) is not None:
            return "Not scored: open images of this model's size to score it against them."
        return ""
