"""Dreams: the model behind the live Gibbs-chain viewer (plain Python, no Qt).

A :class:`DreamSession` is what the Dreams tab shows: a grid of persistent chains, either

* **free-running** — it owns a sampler (`models.factory.make_sampler`: a `GibbsSampler` over a
  binary or Gaussian RBM, the hybrid's `LatentGibbsSampler`, the VAE's latent walk) and moves it
  with :meth:`DreamSession.step`, or
* **training** — a running training job hands it the persistent chains of PCD with
  :meth:`DreamSession.push_frame` (the chains are computed for the gradient anyway).

Frames
    Every frame is kept as a read-only ``uint8`` array ``[n, H, W, C]`` (C = 1 or 3): what is
    shown, what the scrubber scrubs and what the exports write, so an export is pixel for pixel
    the history. The last ``history`` frames stay in a ring buffer (fewer when the frames are so
    big that they would pass ``max_history_bytes``); a change of frame shape (another number of
    chains, another model) starts a fresh history.

Threads
    One worker thread moves the chains (:class:`DreamRunner`, or the caller in tests) and any
    other thread (the UI) changes settings. Settings, resets and the brush are *intents*: the
    calls only note them (under a lock held for microseconds) and the worker applies them at its
    next :meth:`~DreamSession.apply_pending` / :meth:`~DreamSession.step`, so the UI never waits
    for a Gibbs step. Reading frames takes the same short lock.

The dream brush (pixel RBMs only)
    Each chain has a pixel mask ``[H, W]``: True where the artist painted. Painted pixels keep
    resampling; every other visible unit of that chain stays clamped at the value it had when
    the brush touched the chain (the value shown: probabilities or samples). So the clamp mask
    handed to the sampler is the *inverse* of the painted area, for the chains that have paint;
    chains without paint run freely. The hybrid's and the VAE's chains live in a code space, not
    on pixels, so the brush refuses them with :class:`BrushUnavailable`.

Modules: ``session`` (:class:`DreamSession`, :class:`DreamFrame`, :class:`DreamSettings`,
:func:`to_rgba`), ``runner`` (:class:`DreamRunner`, the thread of a free-running session).
"""

from studio.dreams.runner import DreamRunner
from studio.dreams.session import MAX_CHAINS, BrushUnavailable, DreamFrame, DreamSession, DreamSettings, to_rgba

__all__ = [
    "BrushUnavailable",
    "DreamFrame",
    "DreamRunner",
    "DreamSession",
    "DreamSettings",
    "MAX_CHAINS",
    "to_rgba",
]
