"""Training jobs and the studio's state, without Qt.

This module is the source of truth of the studio; Qt views only listen to it and send user
intent back (napari's model/view split). Tests, scripts and the CLI can drive it directly.

:class:`TrainingJob`
    Owns one trainer and its training generator (``trainer.run()``), with a small state machine::

        idle ──start──► running ◄──resume── paused
                          │  └────pause────►  │
                          ▼                   ▼
                 done / failed / stopped ◄──stop──  (stopped can be resumed: run() again)

    *Pausing is not pulling*: the thread that iterates the job (:meth:`TrainingJob.step_once`)
    waits on a condition variable while the job is paused, it never spins. *Stopping is closing
    the generator*: the pulling thread closes it between two steps, or :meth:`stop` closes it
    at once when nobody is pulling. The trainer is built lazily by the pulling thread (building
    copies data and imports torch: never the UI thread's job).

    Errors inside a step never escape: divergence (the trainer has already restored the last good
    weights), out of memory and any other exception put the job in ``failed`` with a message for
    people in :attr:`TrainingJob.error`; for errors other than divergence the job restores the
    trainer's last good snapshot itself, so the model that stays is always the last good one.

    Thread safety: user intent (:meth:`start`, :meth:`pause`, :meth:`resume`, :meth:`stop`) may
    come from any thread; one thread pulls. :attr:`TrainingJob.step_lock` is held while a step
    runs: hold it to read or save the model consistently (:meth:`Session.save_model` does).
    Every change of state bumps :attr:`TrainingJob.state_serial`, and each :class:`JobUpdate`
    carries the serial it was made at: views order updates made on different threads by it,
    never by the order they arrive in (an update queued before a stop may arrive after it).

    *Quality*: a run that ends (done, or stopped after at least one epoch) can be scored
    (:meth:`TrainingJob.score`, seconds: never on the UI thread) against the images it did not
    train on (:attr:`TrainingJob.scoring_set`). The report lands in :attr:`TrainingJob.quality`
    (``quality_status``: "" → "scoring" → "ready" | "failed"), is announced as a "quality" event
    and goes into the checkpoint's metadata when the model is saved.

:class:`Session`
    The studio's document: the current :class:`~studio.dataset.ImageSet`, its sources and
    :class:`~studio.dataset.Preprocess`, and the training jobs. Changes are announced through
    :attr:`Session.events` (plain callbacks, called on the thread that made the change).

    *Held-out images*: a fixed part of every loaded set (``models.quality.split_heldout`` with
    fraction 0.1, at least 4 and at most 300 images, seed 0: the same images in the same order
    give the same split in every session, so a saved model is scored later on images it never
    saw) is kept out of training. New jobs train on the rest (:meth:`Session.scoring_set`). A
    set too small to spare 4 images and keep 4 (fewer than 8) trains on everything and its runs
    get no quality card, which says why: a score against the training images themselves would
    reward copying them. Opened models are scored against the current images when they have
    the model's size (and keep the card saved in their file, if any).

:func:`hyperparameters`
    What a person can set for each model kind, with the defaults of its record
    (``models.kinds.ModelKind.default``); a kind added to ``models.kinds.KINDS`` without a form
    of its own here gets the common ones.
"""
from __future__ import annotations

import dataclasses
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

from models import kinds  # the kinds' records: no torch imported

from .dataset import (
    ImageSet,
    LoadCancelled,
    Preprocess,
    ProgressFn,
    load_demo,
    load_images,
)
from .images import tile, to_uint8

if TYPE_CHECKING:  # torch stays unimported until a job needs it
    from models.training import Trainer, TrainEvent

__all__ = [
    "Emitter",
    "HyperParam",
    "JobState",
    "JobUpdate",
    "LoadCancelled",
    "ScoringSet",
    "Session",
    "TrainingJob",
    "describe_error",
    "format_duration",
    "hyperparameters",
]


# ----------------------------------------------------------------------------- small helpers


class Emitter:
    """A minimal observer: ``connect(callback)``, ``emit(*args)`` calls every callback."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        try:
            self._callbacks.remove(callback)
        except ValueError:
            pass

    def emit(self, *args: Any) -> None:
        for cb in list(self._callbacks):
            cb(*args)


def format_duration(seconds: float) -> str:
    """``75`` → ``1:15``; ``3725`` → ``1 h 02 min``; NaN → ``…``."""
    if seconds is None or not math.isfinite(seconds):
        return "…"
    s = int(round(max(0.0, seconds)))
    if s >= 3600:
        return f"{s // 3600} h {(s % 3600) // 60:02d} min"
    return f"{s // 60}:{s % 60:02d}"


def describe_error(exc: BaseException) -> str:
    """A message for people about an exception that ended a training job."""
    name = type(exc).__name__
    text = str(exc).strip()
    low = text.lower()
    if isinstance(exc, MemoryError) or name == "OutOfMemoryError" or "out of memory" in low:
        return ("Out of memory while training. Try a smaller batch size, fewer hidden units or "
                f"latent dimensions, or smaller images. ({text or name})")
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return f"A file could not be read: {text or name}"
    if isinstance(exc, ValueError):
        return f"The model could not be trained with these settings: {text}"
    return f"Training stopped because of an error: {text or name} ({name})"


# ----------------------------------------------------------------------------- hyperparameters


@dataclass(frozen=True)
class HyperParam:
    """One setting of a model kind, as a form shows it.

    ``target`` says where the value goes: ``"options"`` → the attribute ``key`` of
    ``models.factory.Options``; ``"extra"`` → ``Options.extra[key]`` (kind-specific config).
    ``special`` is the text shown for the ``minimum`` value, which then means "automatic"
    (the value passed on is ``None``).
    """

    key: str
    label: str
    type: str  # "int" | "float" | "bool" | "choice"
    default: Any
    minimum: float = 0
    maximum: float = 1_000_000
    step: float = 1
    decimals: int = 0
    choices: tuple[str, ...] = ()
    special: str | None = None
    tooltip: str = ""
    target: str = "options"

    def coerce(self, value: Any) -> Any:
        """A value from a form or a settings file → what :func:`Session.options_for` takes."""
        if value is None:
            return None
        if self.type == "bool":
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if self.type == "choice":
            return value if value in self.choices else self.default
        v = int(value) if self.type == "int" else float(value)
        if self.special is not None and v <= self.minimum:
            return None
        return min(max(v, self.minimum), self.maximum)


def _field_default(cls: type, name: str, fallback: Any) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                return f.default_factory()  # type: ignore[misc]
    return fallback


def _common_params(lr: float) -> list[HyperParam]:
    return [
        HyperParam("epochs", "Epochs", "int", 0, 0, 100_000, special="auto",
                   tooltip="Passes over the images. Auto: about 5,000 updates (20–500 epochs), "
                           "so a small set trains as long as a big one."),
        HyperParam("batch_size", "Batch size", "int", 0, 0, 4096, special="auto",
                   tooltip="Images per update. Auto: 64, or fewer on a small set (at least ten "
                           "batches per epoch)."),
        HyperParam("learning_rate", "Learning rate", "float", lr, 0.0, 10.0, step=lr / 2 or 1e-4,
                   decimals=5, special="model default",
                   tooltip="Step size of the optimiser. Lower it if training diverges."),
        HyperParam("seed", "Seed", "int", -1, -1, 2**31 - 1, special="random",
                   tooltip="Fix it to repeat a run exactly; 'random' draws a new one."),
    ]


def hyperparameters(kind: str) -> list[HyperParam]:
    """The settings of ``kind`` with the defaults its record gives (imports the model modules,
    hence torch); ValueError for an unknown kind."""
    from models.factory import Options

    default = kinds.kind(kind).default
    n_chains = _field_default(Options, "n_chains", 64)
    lr = default("learning_rate")
    if kind in ("rbm", "grbm"):
        return [
            HyperParam("hidden", "Hidden units", "int", 0, 0, 10_000, special="auto",
                       tooltip="Feature detectors the RBM learns; each is one weight filter. "
                               "Auto: about one per three images, 100 to 500."),
            *_common_params(lr),
            HyperParam("k", "Gibbs steps (k)", "int", default("k"), 1, 100,
                       target="extra", tooltip="Gibbs steps per update: CD-k / PCD-k."),
            HyperParam("persistent", "Persistent chains (PCD)", "bool", default("persistent"), target="extra",
                       tooltip="On: persistent contrastive divergence (the chains are the dreams). "
                               "Off: plain CD-k started at the data."),
            HyperParam("n_chains", "Chains", "int", n_chains, 1, 4096,
                       tooltip="Persistent chains: how many dreams run alongside training."),
        ]
    if kind == "ae":
        return [
            HyperParam("latent", "Latent size", "int", default("latent"), 1, 4096,
                       tooltip="Numbers in the code of each image."),
            *_common_params(lr),
            HyperParam("loss", "Loss", "choice", default("loss"),
                       choices=("bce", "mse"), target="extra",
                       tooltip="bce: cross-entropy on intensities (sharper); mse: squared error."),
        ]
    if kind == "vae":
        return [
            HyperParam("latent", "Latent size", "int", default("latent"), 1, 4096,
                       tooltip="Dimensions of the latent space the Latent explorer walks."),
            *_common_params(lr),
            HyperParam("beta", "β (KL weight)", "float", default("beta"), 0.0, 100.0,
                       step=0.1, decimals=2, target="extra",
                       tooltip="Weight of the KL term: above 1 gives smoother, blurrier latents."),
            HyperParam("kl_warmup_epochs", "KL warm-up epochs", "int", default("kl_warmup_epochs"), 0, 10_000,
                       target="extra",
                       tooltip="Ramp β up from 0 over this many epochs (helps avoid posterior collapse)."),
        ]
    if kind == "hybrid":
        return [
            HyperParam("latent", "Latent size", "int", default("latent"), 1, 4096,
                       tooltip="Code size of the autoencoder the RBM learns on."),
            HyperParam("n_hidden", "RBM hidden units", "int", default("n_hidden"),
                       1, 10_000, target="extra", tooltip="Hidden units of the RBM on the codes."),
            *_common_params(lr),
            HyperParam("rbm_epochs", "RBM epochs", "int", 0, 0, 100_000, target="extra", special="auto",
                       tooltip="Epochs of phase 2 (the RBM on the codes); 'Epochs' is phase 1. "
                               "Auto: about 6,000 updates, whatever the number of images."),
            HyperParam("n_chains", "Chains", "int", n_chains, 1, 4096,
                       tooltip="Persistent chains of the RBM: the dreams."),
        ]
    return [
        HyperParam("hidden", "Hidden units", "int", default("n_hidden", 100), 1, 10_000),
        HyperParam("latent", "Latent size", "int", default("latent", 32), 1, 4096),
        *_common_params(lr),
    ]


# ----------------------------------------------------------------------------- held-out images

#: The held-out part of a loaded set (see :meth:`Session.scoring_set`).
HELDOUT_FRACTION = 0.1
HELDOUT_MIN = 4
HELDOUT_MAX = 300


@dataclass(frozen=True)
class ScoringSet:
    """The images of a set split for scoring: ``images`` is the whole set (uint8
    ``[N, C, H, W]``, shared, never copied here), the two index arrays part it. An empty
    ``heldout_index`` means the set was too small to hold any out (``note`` says so)."""

    images: np.ndarray
    train_index: np.ndarray
    heldout_index: np.ndarray
    note: str = ""

    @property
    def has_heldout(self) -> bool:
        return len(self.heldout_index) > 0

    @property
    def shape(self) -> tuple[int, ...]:
        """(C, H, W) of one image."""
        return tuple(int(s) for s in self.images.shape[1:])

    def train(self) -> np.ndarray:
        """The training images (a copy when some are held out)."""
        return self.images if not self.has_heldout else self.images[self.train_index]

    def heldout(self) -> np.ndarray:
        return self.images[self.heldout_index]


def split_images(images: np.ndarray) -> ScoringSet:
    """``images`` (uint8 ``[N, C, H, W]``) with its fixed held-out part (imports torch)."""
    from models.quality import MIN_TRAIN, split_heldout

    n = int(images.shape[0])
    try:
        train, heldout = split_heldout(n, HELDOUT_FRACTION, seed=0, min_heldout=HELDOUT_MIN,
                                       max_heldout=HELDOUT_MAX)
    except ValueError:
        every = np.arange(n, dtype=np.int64)
        need = HELDOUT_MIN + MIN_TRAIN
        return ScoringSet(images, every, every[:0],
                          note=f"No quality card: {n} image{'s are' if n != 1 else ' is'} too few to keep "
                               f"{HELDOUT_MIN} aside for a fair score (the model trains on all of them). "
                               f"Open at least {need} images to get one.")
    return ScoringSet(images, np.sort(np.asarray(train, dtype=np.int64)),
                      np.sort(np.asarray(heldout, dtype=np.int64)))


# ----------------------------------------------------------------------------- jobs


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
        #: emit(job, "state" | "step" | "failed"), on the pulling thread; (job, "quality") on the
        #: scoring thread (and on the caller's of :meth:`begin_scoring`).
        self.events = Emitter()
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
        self.events.emit(self, "state")

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
        self.events.emit(self, "state")

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
                self.events.emit(self, "state")
            elif self._stop_requested:
                self._close_generator()
        self.events.emit(self, "step")
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
        self.events.emit(self, "failed")

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
        self.events.emit(self, "quality")
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
        self.events.emit(self, "quality")
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
        self.events.emit(self, "quality")

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
        total_steps = ev.total_steps if ev is not None else (trainer.total_steps if trainer is not None else 0)
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


# ----------------------------------------------------------------------------- the session


class Session:
    """The studio's state: images, preprocessing, jobs. No Qt; views listen to :attr:`events`.

    ``events.emit(name, payload)`` with name ``"images"`` (payload: the ImageSet),
    ``"preprocess"`` (the Preprocess), ``"job_added"`` (the job).
    """

    def __init__(self, preprocess: Preprocess | None = None, device: str | None = None) -> None:
        self.preprocess = preprocess or Preprocess()
        self.images: ImageSet | None = None
        self.sources: list[str] = []  # empty: the demo set
        self.jobs: list[TrainingJob] = []
        self.events = Emitter()
        self._device_name = device
        self._device = None
        #: ``build(options, data, device) -> Trainer``; tests swap it to inject failures.
        self.trainer_factory: Callable[..., Trainer] | None = None
        #: Keywords for ``models.quality.score_model`` given to every job (tests: quick scores).
        self.score_options: dict[str, Any] = {}
        self._split: ScoringSet | None = None  # the current images' split, made when first needed
        self._split_lock = threading.Lock()

    # --------------------------------------------------------------------- device
    @property
    def device(self):
        if self._device is None:
            from models.device import default_device

            self._device = default_device(self._device_name)
        return self._device

    def describe_device(self) -> str:
        from models.device import describe_device

        return describe_device(self.device)

    # --------------------------------------------------------------------- images
    def set_preprocess(self, preprocess: Preprocess) -> None:
        self.preprocess = preprocess
        self.events.emit("preprocess", preprocess)

    def load(self, sources: Sequence[str] | None, preprocess: Preprocess | None = None, *,
             progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> ImageSet:
        """Load ``sources`` (the demo set when empty) without changing the session; safe to call
        from a worker thread. Raises :class:`LoadCancelled` when cancelled."""
        pp = preprocess or self.preprocess
        if not sources:
            return load_demo(pp, progress=progress, cancel=cancel)
        return load_images(list(sources), pp, progress=progress, cancel=cancel)

    def set_images(self, images: ImageSet, sources: Sequence[str] | None) -> None:
        with self._split_lock:
            self.images = images
            self._split = None
        self.sources = [str(s) for s in sources or []]
        self.preprocess = images.preprocess
        self.events.emit("images", images)

    def open_images(self, sources: Sequence[str] | None, preprocess: Preprocess | None = None) -> ImageSet:
        """Load and make current (synchronously: for scripts and tests)."""
        images = self.load(sources, preprocess)
        self.set_images(images, sources)
        return images

    def scoring_set(self, images: ImageSet | None = None) -> ScoringSet | None:
        """The current images (or ``images``) with their fixed held-out part, made on first use
        (imports torch: not for the UI thread before the engine is loaded). None without images."""
        images = images if images is not None else self.images
        if images is None or len(images) == 0:
            return None
        with self._split_lock:  # never held while torch is imported: set_images takes it
            if images is self.images and self._split is not None and self._split.images is images.images:
                return self._split
        split = split_images(images.images)  # the same split for the same images, whoever makes it
        with self._split_lock:
            if images is self.images:
                if self._split is not None and self._split.images is images.images:
                    return self._split
                self._split = split
        return split

    @property
    def source_label(self) -> str:
        if not self.sources:
            return "demo set"
        if len(self.sources) == 1:
            return Path(self.sources[0]).name or self.sources[0]
        return f"{len(self.sources)} sources"

    # --------------------------------------------------------------------- jobs
    def options_for(self, kind: str, params: dict[str, Any] | None = None):
        """``models.factory.Options`` for ``kind`` from form values (keys of :func:`hyperparameters`)."""
        from models.factory import Options

        if self.images is None:
            raise ValueError("no images are loaded")
        specs = {p.key: p for p in hyperparameters(kind)}
        opt_fields = {f.name for f in dataclasses.fields(Options)}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, raw in (params or {}).items():
            spec = specs.get(key)
            value = spec.coerce(raw) if spec is not None else raw
            if spec is not None and spec.target == "extra":
                if value is not None:
                    extra[key] = value
            elif key in opt_fields and key not in ("kind", "image_shape", "extra"):
                if key == "seed" and value is not None and value < 0:
                    value = None
                values[key] = value
            elif value is not None:
                extra[key] = value
        values.setdefault("frame_every", 10)
        return Options(kind=kind, image_shape=tuple(self.images.shape), extra=extra, **values)

    def new_job(self, kind: str, params: dict[str, Any] | None = None) -> TrainingJob:
        """A job training a fresh ``kind`` model on the current images (built when it first runs)."""
        images = self.images
        if images is None or len(images) == 0:
            raise ValueError("there are no images to train on: open a folder first")
        options = self.options_for(kind, params)
        factory = self.trainer_factory
        device = self.device
        split = self.scoring_set(images)
        assert split is not None

        def make():
            import torch

            from models.factory import build

            train = np.ascontiguousarray(split.train())  # the held-out images stay out
            return (factory or build)(options, torch.from_numpy(train), device)

        job = TrainingJob(make, kind=kind, title=kinds.kind(kind).title,
                          preprocess=images.preprocess.to_dict(), source=self.source_label)
        job.options = options  # type: ignore[attr-defined]
        job.scoring_set = split
        job.score_options = dict(self.score_options)
        self.add_job(job)
        return job

    def add_job(self, job: TrainingJob) -> None:
        self.jobs.append(job)
        self.events.emit("job_added", job)

    def active_jobs(self) -> list[TrainingJob]:
        return [j for j in self.jobs if j.state.active]

    # --------------------------------------------------------------------- files
    def save_model(self, job: TrainingJob, path: str | Path, *, wait_for_score: float = 120.0) -> Path:
        """Write ``job``'s model (and its resumable training state) as a safetensors checkpoint,
        with its quality report (``extra["quality"]``, when it is about the model saved).
        Waits for the current step to end, and for a report being computed (at most
        ``wait_for_score`` seconds: saving right after a run keeps its card); safe from any
        thread but the UI's."""
        from models.checkpoint import save_checkpoint

        if job.model is None:
            raise ValueError("this job has no model yet: start training first")
        if job.scoring:
            job.wait_scored(wait_for_score)
        opened = getattr(job, "checkpoint", None)
        if job.trainer is None and opened is not None and Path(opened.path).is_file():
            # Opened and not trained since: copy the file, keeping its training state.
            import shutil

            from models.checkpoint import atomic_write

            quality = job.quality_for_checkpoint()
            same = Path(path).resolve() == Path(opened.path).resolve()
            if quality is not None and (opened.meta.get("extra") or {}).get("quality") != quality:
                _rewrite_extra(opened, path, {"quality": quality, "quality_step": job.quality_step})
            elif not same:
                atomic_write(path, lambda tmp: shutil.copyfile(opened.path, tmp))
            job.path = Path(path)
            return Path(path)
        with job.step_lock:
            extra: dict[str, Any] = {"source": job.source, "state": job.state.value}
            quality = job.quality_for_checkpoint()
            if quality is not None:
                extra.update(quality=quality, quality_step=job.quality_step)
            out = save_checkpoint(path, job.model, trainer=job.trainer, preprocess=job.preprocess, extra=extra)
        job.path = Path(out)
        return Path(out)

    def open_model(self, path: str | Path) -> TrainingJob:
        """Open a checkpoint as a job (not added to the session: call :meth:`add_job` on the
        thread that owns the views). Raises ``CheckpointError`` with a clear message."""
        from models.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path, device=self.device)
        resumable = bool(ckpt.meta.get("trainer"))
        pp = ckpt.preprocess

        def make():
            import torch

            images = self.images
            if images is None or len(images) == 0:
                raise ValueError("open the images this model was trained on before resuming it")
            if pp:
                want = Preprocess.from_dict(pp)
                need = (want.channels, want.size, want.size)
                if tuple(images.shape) != need:
                    raise ValueError(
                        f"this model was trained on {want.describe()} images but the current set is "
                        f"{images.preprocess.describe()}; set the preprocessing to match to resume it")
            split = self.scoring_set(images)
            assert split is not None
            job.scoring_set = split
            return ckpt.make_trainer(torch.from_numpy(np.ascontiguousarray(split.train())), self.device)

        extra = ckpt.meta.get("extra") or {}
        job = TrainingJob(make if resumable else None, model=ckpt.model, kind=ckpt.kind,
                          title=kinds.kind(ckpt.kind).title, preprocess=pp,
                          source=extra.get("source", ""), history=ckpt.history)
        job.path = Path(path)
        job.checkpoint = ckpt  # type: ignore[attr-defined]
        tmeta = ckpt.meta.get("trainer") or {}
        job._state = JobState.STOPPED if resumable else JobState.DONE
        job._step_hint = int(tmeta.get("step", 0))
        job.score_options = dict(self.score_options)
        # Its card, as saved (no recomputing); else it is scored against the current images'
        # held-out part when they have the model's size (the same split it was trained with,
        # if it was trained here on these images).
        saved = extra.get("quality")
        if isinstance(saved, dict) and kinds.kind(ckpt.kind).dreams:
            try:
                from models.quality import QualityReport

                job.set_quality(QualityReport.from_dict(saved), job.step)  # saved only with its model
            except (TypeError, ValueError, KeyError):
                pass  # an unreadable card: scored again
        images = self.images
        if images is not None and len(images) and _image_shape(ckpt.model) == tuple(images.shape):
            job.scoring_set = self.scoring_set(images)
        return job


def _image_shape(model: Any) -> tuple[int, ...] | None:
    """(C, H, W) of the images ``model`` makes (the RBMs keep it in their config)."""
    shape = getattr(model, "image_shape", None) or getattr(getattr(model, "config", None), "image_shape", None)
    return tuple(int(s) for s in shape) if shape else None


def _rewrite_extra(ckpt: Any, path: str | Path, extra: dict[str, Any]) -> None:
    """Write the opened checkpoint ``ckpt`` to ``path`` with ``extra`` merged into its metadata
    (``models.checkpoint.copy_with_extra``); when that is its own file, keep ``ckpt`` true to it."""
    from models.checkpoint import copy_with_extra, file_sha256

    out, meta = copy_with_extra(ckpt.path, path, extra)
    if Path(out).resolve() == Path(ckpt.path).resolve():
        ckpt.meta = meta  # the file changed under the opened checkpoint
        ckpt.sha256 = file_sha256(out)
