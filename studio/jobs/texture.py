"""A texture RBM's run in the studio: trained on its photos at their own grain.

The studio's images are loaded at the preprocessing of the data page (at most 128 px), right
for the pixel kinds that see each picture whole, and the texture RBM learns from random 40 px
crops: trained on those, a 3,000 px photograph's grain is 23× coarser than its own. So a
texture job loads the same sources again, when it starts (in the job's thread), as
:mod:`studio.dataset.texture` plans them: each photo's middle square at its own pixels (at
most 1,024 px a side, downscaled only beyond, never upscaled; 256 MB for the set). The
session's images stay as they are (thumbnails, the Dreams tab's "Reset: dataset")."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from studio.dataset import ImageSet, demo_folder, display_path
from studio.jobs.heldout import ScoringSet
from studio.jobs.job import TrainingJob

#: Why a texture run has no quality card: cards compare dreams with held-out images of the
#: set's size; a texture trains at its photos' own size.
NO_CARD = ("No quality card: a texture RBM trains on crops of its photos at their own grain, not on "
           "the set's images that cards compare its dreams with.")


def texture_images(sources: Sequence[str], color: bool, *, max_side: int | None = None) -> tuple[ImageSet, str]:
    """The photos at their own grain (the demo set when ``sources`` is empty) and the sentence
    saying what was done to them; ValueError (one sentence) when none can be read."""
    from studio.dataset.texture import load_native

    kwargs = {} if max_side is None else {"max_side": max_side}
    images, note = load_native(list(sources) or [demo_folder()], color=color, **kwargs)
    if len(images) == 0:
        why = f" ({display_path(images.rejected[0].path)}: {images.rejected[0].reason})" if images.rejected else ""
        raise ValueError(f"none of the images could be read at their own size{why}")
    return images, note


def texture_job(options: Any, images: ImageSet, sources: Sequence[str], source_label: str,
                factory: Callable[..., Any] | None, device: Any, title: str) -> TrainingJob:
    """A job training a fresh texture RBM (``options``: ``models.factory.Options``) on
    ``sources`` at their own grain, loaded when it first runs; ``images`` (the session's) give
    the colour. Its ``preprocess`` (None until then) and ``texture_note`` are set as it loads."""
    sources, color = [str(s) for s in sources], images.preprocess.color
    job: TrainingJob

    def make():
        import torch

        from models.factory import build

        native, note = texture_images(sources, color)
        job.preprocess = native.preprocess.to_dict()
        job.texture_note = note  # type: ignore[attr-defined]
        opts = dataclasses.replace(options, image_shape=tuple(native.shape))
        return (factory or build)(opts, torch.from_numpy(native.images), device)

    job = TrainingJob(make, kind="texture", title=title, preprocess=None, source=source_label)
    job.scoring_set = no_card(images.images)
    return job


def no_card(images: np.ndarray | None = None) -> ScoringSet:
    """A texture run's scoring set: nothing held out, and `NO_CARD` saying why."""
    images = images if images is not None else np.zeros((0, 1, 1, 1), np.uint8)
    every = np.arange(len(images), dtype=np.int64)
    return ScoringSet(images, every, every[:0], note=NO_CARD)


def texture_resume(ckpt: Any, sources: Sequence[str], preprocess: dict[str, Any], device: Any):
    """The trainer resuming a texture checkpoint trained at its photos' own grain
    (``preprocess["native"]``): ``sources`` (the demo set when empty) loaded again as it was
    trained on them, whatever the data page's preprocessing; ValueError (one sentence)."""
    import torch

    from studio.dataset import Preprocess, load_images

    images = load_images(list(sources) or [demo_folder()], Preprocess.from_dict(preprocess))
    if len(images) == 0:
        raise ValueError("none of the images could be read to resume this texture on")
    return ckpt.make_trainer(torch.from_numpy(images.images), device)
