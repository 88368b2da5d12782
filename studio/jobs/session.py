"""The studio's document: the images, their sources and preprocessing, and the training jobs.
See :mod:`studio.jobs`."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal, SignalGroup

from models import kinds  # the kinds' records: no torch imported
from studio.dataset import ImageSet, Preprocess, load_demo, load_images
from studio.dataset.records import ProgressFn
from studio.jobs.heldout import ScoringSet, split_images
from studio.jobs.job import JobState, TrainingJob
from studio.jobs.params import hyperparameters

if TYPE_CHECKING:  # torch stays unimported until a job needs it
    from models.training import Trainer


class SessionEvents(SignalGroup):
    """What a :class:`Session` announces, on the thread that made the change: ``images``
    (the new :class:`~studio.dataset.ImageSet`), ``preprocess`` (the
    :class:`~studio.dataset.Preprocess`), ``job_added`` (the :class:`TrainingJob`)."""

    images = Signal(object)
    preprocess = Signal(object)
    job_added = Signal(object)


class Session:
    """The studio's state: images, preprocessing, jobs. No Qt; views listen to :attr:`events`
    (:class:`SessionEvents`)."""

    def __init__(self, preprocess: Preprocess | None = None, device: str | None = None) -> None:
        self.preprocess = preprocess or Preprocess()
        self.images: ImageSet | None = None
        self.sources: list[str] = []  # empty: the demo set
        self.jobs: list[TrainingJob] = []
        self.events = SessionEvents()
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
        self.events.preprocess.emit(preprocess)

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
        self.events.images.emit(images)

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
        self.events.job_added.emit(job)

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
        job._total_hint = _total_steps(tmeta, job._step_hint, done=not resumable)
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


def _total_steps(tmeta: dict, step: int, done: bool) -> int:
    """The total steps of the run a checkpoint was saved from, for its progress bar: its step
    when it finished; else its epochs times the steps per epoch its history shows (one phase
    only: a run made of phases, the hybrid, gives 0, unknown)."""
    if done:
        return step
    history = tmeta.get("history") or []
    config = tmeta.get("train_config") or {}
    if "ae_epochs" in config or "rbm_epochs" in config:  # phases of different lengths
        return 0
    epochs = config.get("epochs")
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    e, s = last.get("epoch"), last.get("step")
    if not (isinstance(epochs, int) and isinstance(e, int) and isinstance(s, int)) or e <= 0 or s <= 0 or s % e:
        return 0
    return max(step, epochs * (s // e))
