"""A texture's training images at their own grain (the "texture" kind, ``models.conv_rbm``).

Every other kind sees each picture whole, shrunk to at most 128 px. A texture RBM learns the
local statistics of a photograph from random 40 px crops, so its images must keep the photo's
own grain: a 3,000 px gravel photo shrunk to 128 px has pebbles 23× smaller than the photo's.
:func:`plan_native` reads the sources' headers (no pixel decoded) and picks the side ``S`` of
the :class:`~studio.dataset.Preprocess` (``native=True``) they are loaded with by
:func:`~studio.dataset.load_images`: each image is its middle square, at its own pixels when
its shorter side is ``S``, downscaled only where it is larger, never upscaled.

Bounds (memory):

* ``S`` is at most ``MAX_NATIVE`` (1,024 px, or the ``max_side`` asked) and at most the
  smallest image's shorter side, so no image is upscaled;
* the set in memory is ``N × C × S × S`` bytes, ``N`` counting every candidate file, and at
  most ``TEXTURE_BUDGET`` (256 MiB: 85 colour photos at 1,024 px); more images make ``S``
  smaller, and say so;
* a file is decoded only when its header claims at most ``Preprocess.max_pixels`` (64 MP):
  a 20,000 × 20,000 photo is refused in one sentence before a pixel is decoded; a JPEG is
  decoded at 1/2 to 1/8 scale where that still covers ``S`` (``studio.dataset.decode``).
"""
from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from studio.dataset.decode import _PIL_FORMATS, _open_file
from studio.dataset.load import load_images
from studio.dataset.records import MAX_NATIVE, MIN_TARGET, ImageSet, Preprocess, ProgressFn
from studio.dataset.report import display_path
from studio.dataset.walk import _as_sources, _walk

#: The most memory a texture's training images take (uint8 bytes, every candidate file counted).
TEXTURE_BUDGET = 256 * 2**20

Sources = Iterable[str | os.PathLike[str]] | str | os.PathLike[str]


def _shorter_side(path: Path, pp: Preprocess) -> int | None:
    """The shorter side its header claims, or None where loading will refuse it (unreadable,
    not an image, over ``max_pixels``, under ``min_size``: :func:`load_images` says why)."""
    try:
        with _open_file(path) as fh, Image.open(fh, formats=_PIL_FORMATS) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - the load that follows gives the reason
        return None
    if w * h > pp.max_pixels or min(w, h) < pp.min_size:
        return None
    return min(w, h)


def plan_native(sources: Sources, *, color: bool = False, max_side: int = MAX_NATIVE,
                budget: int = TEXTURE_BUDGET, follow_links: bool = False) -> tuple[Preprocess, str]:
    """(the ``native`` Preprocess a texture's images load with, one sentence saying what it
    does to them). Reads headers only. ``max_side``: the largest side kept (16 to 1,024 px);
    ValueError outside."""
    if isinstance(max_side, bool) or not isinstance(max_side, int) or not MIN_TARGET <= max_side <= MAX_NATIVE:
        raise ValueError(f"a texture's images keep at most {MIN_TARGET} to {MAX_NATIVE:,} px a side (got {max_side!r})")
    base = Preprocess(size=max_side, color=color, native=True)
    found = _walk(_as_sources(sources), follow_links)
    sides = [(p, s) for p in found.files if (s := _shorter_side(p, base)) is not None]
    n, channels = max(1, len(found.files)), base.channels
    side = min([max_side] + [s for _, s in sides])
    fits = math.isqrt(budget // (n * channels))
    if fits < side:
        side = max(MIN_TARGET, fits)
        note = (f"{n:,} images: their middle squares downscaled to {side} px, so that they fit in "
                f"{budget / 2**20:.0f} MB (at most {MAX_NATIVE:,} px a side, never upscaled)")
    elif not sides:
        note = "none of the images can be used (why, below)"
    elif len(sides) == 1:
        path, own = sides[0]
        note = (f"{display_path(path.name)}: its middle {own}×{own} square, at its own grain" if own <= side else
                f"{display_path(path.name)}: its middle {own}×{own} square downscaled to {side} px "
                f"(a texture keeps at most {max_side:,} px a side)")
    else:
        larger = sum(s > side for _, s in sides)
        note = (f"{len(sides)} images: their middle squares at {side} px, the "
                + ("largest side a texture keeps" if side == max_side else "smallest image's side")
                + (f" ({larger} of them downscaled to it, none upscaled)" if larger else ", each at its own grain"))
    return Preprocess(size=side, color=color, native=True), note


def load_native(sources: Sources, *, color: bool = False, max_side: int = MAX_NATIVE,
                progress: ProgressFn | None = None, cancel: threading.Event | None = None,
                follow_links: bool = False) -> tuple[ImageSet, str]:
    """(the images at their own grain as :func:`plan_native` plans them, its sentence):
    :func:`~studio.dataset.load_images` with that plan (rejections as it gives them)."""
    pp, note = plan_native(sources, color=color, max_side=max_side, follow_links=follow_links)
    images = load_images(sources, pp, progress=progress, cancel=cancel, follow_links=follow_links)
    return images, note
