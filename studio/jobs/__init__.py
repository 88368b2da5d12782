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
    :attr:`Session.events` (psygnal signals, emitted on the thread that made the change).

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

Modules: ``job`` (:class:`TrainingJob`, :class:`JobState`, :class:`JobUpdate`), ``session``
(:class:`Session`), ``params`` (:func:`hyperparameters`), ``heldout`` (:class:`ScoringSet`),
``common`` (:func:`format_duration`, :func:`describe_error`).
"""

from studio.dataset import LoadCancelled
from studio.jobs.common import describe_error, format_duration
from studio.jobs.heldout import ScoringSet
from studio.jobs.job import JobState, JobUpdate, TrainingJob
from studio.jobs.params import HyperParam, hyperparameters
from studio.jobs.session import Session

__all__ = [
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
