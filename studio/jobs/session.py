"""The studio's document: the images, their sources and preprocessing, the training jobs, the
current run, the canvas, what the Dreams and Latent tabs show and the project's file.
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

if TYPE_CHECKING:  # torch stays unimported until a job (or the canvas) needs it
    from models.training import Trainer
    from studio.canvas import Canvas, CanvasState, Layer
    from studio.dreams import DreamSession
    from studio.latent import LatentExplorer
    from studio.project import ProjectData


class SessionEvents(SignalGroup):
    """What a :class:`Session` announces, on the thread that made the change: ``images``
    (the new :class:`~studio.dataset.ImageSet`), ``preprocess`` (the
    :class:`~studio.dataset.Preprocess`), ``job_added`` (the :class:`TrainingJob`),
    ``current_job`` (the run the tabs follow, or None), ``project_path`` (a ``Path`` or None),
    ``dreams`` (the :class:`~studio.dreams.DreamSession` the Dreams tab shows, or None: set on
    the UI thread), ``latent`` (the :class:`~studio.latent.LatentExplorer` the Latent tab
    explores, or None: made, and announced, on the Latent tab's worker thread)."""

    images = Signal(object)
    preprocess = Signal(object)
    job_added = Signal(object)
    current_job = Signal(object)
    project_path = Signal(object)
    dreams = Signal(object)
    latent = Signal(object)


class Session:
    """The studio's document: images, preprocessing, jobs, the current run, the canvas, what
    the Dreams and Latent tabs show, the project's file. No Qt; views are built from it, listen
    to :attr:`events` (:class:`SessionEvents`) and send intent back through its methods."""

    def __init__(self, preprocess: Preprocess | None = None, device: str | None = None, *,
                 canvas: Canvas | None = None) -> None:
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
        self._canvas = canvas  # made on first use: the canvas's renderer imports torch
        self._canvas_lock = threading.Lock()
        #: The run the tabs follow (the training dock's visible run), or None.
        self.current_job: TrainingJob | None = None
        #: Where the project was last saved or opened from (None: never saved).
        self.project_path: Path | None = None
        #: What the Dreams tab shows (free-running chains or a run's training frames), or None.
        self.dreams: DreamSession | None = None
        #: The serial of the dreams' frame on screen (the Dreams view sets it; None: the newest).
        self.dreams_shown: int | None = None
        #: The latent space the Latent tab explores, or None.
        self.latent: LatentExplorer | None = None

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
        if kind == "texture":  # its photos at their own grain, loaded as it starts (studio.jobs.texture)
            from studio.jobs.texture import texture_job

            job = texture_job(options, images, self.sources, self.source_label, factory, device, kinds.kind(kind).title)
            job.options = options  # type: ignore[attr-defined]
            self.add_job(job)
            return job
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

            if pp and pp.get("native") is True:  # a texture trained at its photos' own grain: loaded so again
                from studio.jobs.texture import texture_resume

                return texture_resume(ckpt, self.sources, pp, self.device)
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
        if pp and pp.get("native") is True:  # a texture at its photos' own grain: no card (studio.jobs.texture)
            from studio.jobs.texture import no_card

            job.scoring_set = no_card()
        return job


    # --------------------------------------------------------------------- the current run
    def set_current_job(self, job: TrainingJob | None) -> None:
        """Make ``job`` the run the tabs follow (the training dock's visible run)."""
        if job is not self.current_job:
            self.current_job = job
            self.events.current_job.emit(job)

    def job_by_id(self, job_id: int) -> TrainingJob | None:
        return next((j for j in self.jobs if j.id == job_id), None)

    # --------------------------------------------------------------------- the canvas
    @property
    def canvas(self) -> Canvas:
        """The composition (made on first use, 1024² on white; it stays the same object: an
        opened project replaces its layers in one undo step, :meth:`apply_project`)."""
        if self._canvas is None:
            with self._canvas_lock:
                if self._canvas is None:
                    from studio.canvas import Canvas

                    self._canvas = Canvas(1024, 1024, background=(1.0, 1.0, 1.0, 1.0))
        return self._canvas

    def add_snapshot_layer(self, rgba: np.ndarray, provenance: dict[str, Any] | None = None) -> Layer:
        """Put a dream snapshot (a uint8 RGBA grid or chain, from the Dreams or Latent tab) on
        the canvas: scaled up crisply (nearest, whole factors) to about 60 % of the canvas and
        centred. Raises ``LayerSourceError`` (a ValueError) for pixels that make no layer."""
        import dataclasses

        from studio.canvas.model import fit_scale
        from studio.canvas.sources import from_dream_snapshot

        canvas = self.canvas
        layer = from_dream_snapshot(rgba, dict(provenance or {}))
        layer = dataclasses.replace(layer, scale=fit_scale(layer, canvas.width, canvas.height, 0.6, integer=True))
        return self.add_layer(layer, center=True)

    def add_layer(self, layer: Layer, *, center: bool = False) -> Layer:
        """Put ``layer`` on top of the canvas (centred when ``center`` and it is not tiled), one
        undo step of its own. A layer that names the run that made it gets the hash of that
        run's weights now (``stamp_job_weights``), so a saved project names its checkpoint."""
        from studio.canvas.model import centred
        from studio.canvas.sources import stamp_job_weights

        canvas = self.canvas
        layer = stamp_job_weights(layer, self.job_by_id)
        if center:
            layer = centred(layer, canvas.width, canvas.height)
        canvas.end_merge()
        return canvas.add_layer(layer)

    def replace_canvas(self, other: Canvas | CanvasState, label: str = "Open project") -> CanvasState:
        """Make the canvas look like ``other`` (an opened project's) in one undo step (the
        canvas stays the same object: its views follow); returns ``other``'s state."""
        state = other.snapshot() if hasattr(other, "snapshot") else other
        c = self.canvas
        with c.macro(label):
            for layer in list(c.layers):
                c.remove_layer(layer.id)
            c.resize(state.width, state.height)
            c.set_background(state.background)
            for layer in state.layers:
                c.add_layer(layer)
        return state

    # --------------------------------------------------------------------- what the tabs show
    def dream(self, model: Any, meta: dict[str, Any] | None = None, **settings: Any) -> DreamSession:
        """Free-running dreams over ``model`` (a private copy no job trains) for the Dreams tab;
        ``settings``: ``DreamSession.from_model``'s (chains, steps per frame, temperature,
        show, history). Raises ValueError, with a sentence for people, for a model that does
        not dream (the tab then shows nothing)."""
        from studio.dreams import DreamSession

        try:
            session = DreamSession.from_model(model, meta, **settings)
        except ValueError:
            self.set_dreams(None)
            raise
        self.set_dreams(session)
        return session

    def dream_training(self, meta: dict[str, Any] | None = None, *, history: int = 240) -> DreamSession:
        """The Dreams tab shows a training run's frames (``push_frame``, thread-safe)."""
        from studio.dreams import DreamSession

        session = DreamSession.for_training(meta, history=history)
        self.set_dreams(session)
        return session

    def set_dreams(self, session: DreamSession | None) -> None:
        if session is not self.dreams:
            self.dreams = session
            self.dreams_shown = None
            self.events.dreams.emit(session)

    def dream_snapshot(self) -> tuple[np.ndarray, dict[str, Any]] | None:
        """(uint8 RGBA grid, provenance) of the dreams' frame on screen (:attr:`dreams_shown`,
        else the newest), or None when the Dreams tab shows no frame."""
        s = self.dreams
        if s is None:
            return None
        for serial in (self.dreams_shown, None):
            frame = s.frame(serial) if serial is not None else s.latest()
            if frame is not None:
                try:
                    return s.snapshot_grid(frame.serial)
                except ValueError:  # the frame left the history meanwhile
                    continue
        return None

    def explore(self, model: Any, images: Any = None, meta: dict[str, Any] | None = None, *,
                lock: Any = None) -> LatentExplorer:
        """The latent space of ``model`` (copied, under ``lock`` when given) for the Latent tab,
        with the set ``images`` (uint8 [N, C, H, W]) encoded for the slider order. Seconds:
        call it from a worker (the Latent tab's); announced there. Raises ValueError for a
        model without a latent space."""
        from studio.latent import LatentExplorer

        explorer = LatentExplorer(model, images, lock=lock, meta=meta)
        self.set_latent(explorer)
        return explorer

    def set_latent(self, explorer: LatentExplorer | None) -> None:
        if explorer is not self.latent:
            self.latent = explorer
            self.events.latent.emit(explorer)

    # --------------------------------------------------------------------- projects
    def set_project_path(self, path: str | Path | None) -> None:
        path = Path(path) if path is not None else None
        if path != self.project_path:
            self.project_path = path
            self.events.project_path.emit(path)

    def project_data(self) -> ProjectData:
        """What a project file would hold now (cheap, no model read: the UI thread may call it
        and save in a worker with :func:`studio.project.save_project`)."""
        from studio.project import project_from_session

        canvas = self.canvas
        return project_from_session(self, canvas.snapshot(), renderer=canvas.renderer)

    def save_project(self, path: str | Path) -> Path:
        """Save the document as a ``.harmonium`` project (atomic: the previous file stays intact
        if it fails) and make ``path`` its file. Reads each model under its job's lock."""
        from studio.project import save_project

        out = Path(save_project(path, self.project_data()))
        self.set_project_path(out)
        return out

    def read_project(self, path: str | Path) -> tuple[ProjectData, list[TrainingJob]]:
        """Read and validate a project and open a job per model, changing nothing (a worker's
        part; raises ``ProjectError`` / ``CheckpointError`` with one sentence)."""
        from studio.project import open_project

        project = open_project(path)
        return project, [self.open_model(m.path) for m in project.models]

    def apply_project(self, project: ProjectData, jobs: Sequence[TrainingJob], label: str = "Open project") -> None:
        """Make the document show an opened project (on the thread that owns the views): its
        canvas replaces this one's layers in one undo step, its models join the jobs (their
        checkpoints live inside the project: Save Model asks where). The images are the
        caller's to load (:meth:`open_images`, or a loader in a worker)."""
        self.replace_canvas(project.canvas, label)
        for job in jobs:
            job.path = None
            self.add_job(job)

    def open_project(self, path: str | Path) -> ProjectData:
        """Open a project headless (scripts, tests): read it, apply it, load its images when it
        names any that are found (synchronously), and make ``path`` the document's file."""
        project, jobs = self.read_project(path)
        self.apply_project(project, jobs)
        if project.dataset is not None:
            found, _missing = project.dataset.resolve(Path(path).parent)
            if found or project.dataset.is_demo:
                self.open_images(found, Preprocess.from_dict(project.dataset.preprocess))
        self.set_project_path(Path(project.path) if project.path is not None else Path(path))
        return project


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
