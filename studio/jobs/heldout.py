"""Held-out images: the fixed part of every loaded set kept out of training and scored on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
