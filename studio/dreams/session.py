"""A :class:`DreamSession`: what the Dreams tab shows, a grid of persistent chains, its frames,
settings, brush and snapshots.  See :mod:`studio.dreams`."""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np
import torch
from torch import Tensor

from studio.images import GridLayout, images_to_uint8, mosaic



Show = Literal["probs", "samples"]
MAX_CHAINS = 256
#: A texture RBM dreams one large seamless texture (px a side), live: a 384² sweep takes about
#: 0.04 s on two cores (bench/texture.py: 512² in 40 sweeps, 3 s), so it moves at video pace;
#: at most `TEXTURE_MAX_CHAINS` of them.
TEXTURE_DREAM_SIDE = 384
TEXTURE_MAX_CHAINS = 4


class BrushUnavailable(ValueError):
    """The dream brush cannot be used here; the message says why, for a person."""


# ---------------------------------------------------------------------------------- pixels
def to_rgba(pixels: np.ndarray) -> np.ndarray:
    """uint8 ``[..., C]`` with C = 1 (grey), 3 (RGB) or 4 -> opaque uint8 ``[..., 4]``."""
    c = pixels.shape[-1]
    if c == 4:
        return np.array(pixels, dtype=np.uint8)
    out = np.empty((*pixels.shape[:-1], 4), np.uint8)
    out[..., :3] = pixels if c == 3 else pixels[..., :1]
    out[..., 3] = 255
    return out


def _any_size(model: Any) -> bool:
    """Whether `model` dreams at any size (a texture RBM: `models.factory.make_sampler`'s `size`)."""
    return hasattr(model, "synthesize")


# ---------------------------------------------------------------------------------- frames
@dataclass(frozen=True)
class DreamFrame:
    """One frame of the chains' history."""

    serial: int  # increasing by one per recorded frame, over the session's life
    pixels: np.ndarray  # read-only uint8 [n, H, W, C]
    steps: int  # Gibbs steps since the last reset (free-running) or the training step
    temperature: float
    show: str  # "probs" | "samples"
    time: float  # time.monotonic() when recorded
    info: Mapping[str, Any] = field(default_factory=dict)  # training: step, epoch, job ...

    @property
    def n_chains(self) -> int:
        return self.pixels.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one chain's image."""
        return tuple(self.pixels.shape[1:])  # type: ignore[return-value]


@dataclass
class DreamSettings:
    """What the artist sets. Ranges: 1-256 chains, 1-10,000 steps per frame, T in (0, 100]."""

    n_chains: int = 64
    steps_per_frame: int = 1
    temperature: float = 1.0
    show: str = "probs"

    def validated(self) -> "DreamSettings":
        n, k, t = int(self.n_chains), int(self.steps_per_frame), float(self.temperature)
        if not 1 <= n <= MAX_CHAINS:
            raise ValueError(f"the number of chains must be 1 to {MAX_CHAINS}, got {n}")
        if not 1 <= k <= 10_000:
            raise ValueError(f"Gibbs steps per frame must be 1 to 10,000, got {k}")
        if not (0.0 < t <= 100.0 and math.isfinite(t)):
            raise ValueError(f"the temperature must be above 0 (and at most 100), got {t}")
        if self.show not in ("probs", "samples"):
            raise ValueError(f"show must be 'probs' or 'samples', got {self.show!r}")
        return DreamSettings(n, k, t, self.show)


# --------------------------------------------------------------------------------- session
class DreamSession:
    """The Dreams tab's model: chains, their history, settings, the brush, snapshots, exports.

    Build one with :meth:`from_model` (free-running) or :meth:`for_training`. See the module
    docstring for the frame format and the threading rules: setters only queue intents, the
    worker applies them in :meth:`apply_pending` (called by :meth:`step`).
    """

    STEP_CHUNK = 16  # a long frame is stepped in chunks, so cancel() answers quickly

    def __init__(
        self,
        sampler: Any = None,
        *,
        model: Any = None,
        meta: Mapping[str, Any] | None = None,
        settings: DreamSettings | None = None,
        seed: int | None = None,
        history: int = 240,
        max_history_bytes: int = 256 << 20,
    ) -> None:
        self.sampler = sampler
        self.model = model if model is not None else getattr(sampler, "model", None)
        self.meta: dict[str, Any] = dict(meta or {})
        self._weights_sha256: str | None = None  # of `model`, computed at the first snapshot
        self.seed = seed
        self.history_limit = max(1, int(history))
        self.max_history_bytes = int(max_history_bytes)
        self._lock = threading.Lock()  # intents, mask, history: held only for moments
        self._sampler_lock = threading.RLock()  # the sampler: held by the worker while it steps
        self.wakeup = threading.Event()  # set when an intent arrives (wakes a paused runner)
        self._cancel = threading.Event()
        self._history: deque[DreamFrame] = deque(maxlen=self.history_limit)
        self._serial = 0
        self._steps = 0
        self.error: str | None = None
        if sampler is not None:
            s = DreamSettings(n_chains=sampler.n_chains, steps_per_frame=max(1, int(getattr(sampler, "k", 1))),
                              temperature=float(sampler.temperature))
            if settings is not None:
                s = settings
            self._wanted = s.validated()
            self._applied = replace(self._wanted, n_chains=sampler.n_chains, temperature=float(sampler.temperature))
        else:
            self._wanted = (settings or DreamSettings()).validated()
            self._applied = replace(self._wanted)
        self._reset_request: tuple[str, np.ndarray | None] | None = None
        self._mask: np.ndarray | None = None  # bool [n, H, W]: True = painted = resamples
        self._mask_dirty = False
        self.mask_version = 0  # bumped on every change of the painted mask (views redraw it)
        self._frame_dirty = sampler is not None  # record the start state as the first frame

    # ------------------------------------------------------------------------ building
    @classmethod
    def from_model(
        cls,
        model: Any,
        meta: Mapping[str, Any] | None = None,
        *,
        n_chains: int = 64,
        steps_per_frame: int = 1,
        temperature: float = 1.0,
        show: Show = "probs",
        seed: int | None = None,
        history: int = 240,
        tempering: bool | int = True,
    ) -> "DreamSession":
        """A free-running session over a trained `model` (RBM, Gaussian RBM, hybrid, VAE).
        `meta` may hold ``checkpoint_sha256``, ``path``, ``title``, ``seed``. Raises ValueError
        (with a message for a person) for a model that cannot dream, e.g. a plain autoencoder.

        An RBM's chains mix by parallel tempering (`models.tempering`, `tempering` as in
        `models.factory.make_sampler`) toward the base rate of its training data: the one its
        checkpoint (``meta["path"]``) records, or that of the images a reset starts from; with
        neither, they are plain Gibbs chains until a reset from images.

        A texture RBM dreams one seamless texture of `TEXTURE_DREAM_SIDE` px (whatever
        `n_chains` says; `set_n_chains` takes up to `TEXTURE_MAX_CHAINS`), annealed from noise
        over its first sweeps (`ConvGibbsSampler.warm_up`) and warmed again from where it is
        every `DEFAULT_SWEEPS` sweeps (`ConvGibbsSampler.cycle`), the length of the runs its
        model was trained on: past them it would drift."""
        from models.factory import make_sampler
        from models.rbm import RBMBase
        from models.tempering import base_from_checkpoint

        meta = dict(meta or {})
        if seed is None and meta.get("seed") is not None:
            seed = int(meta["seed"])
        if seed is None:  # a random run draws its seed here, so its exports record the seed it used
            seed = secrets.randbelow(2**31)
        settings = DreamSettings(n_chains, steps_per_frame, temperature, show).validated()
        was_training = getattr(model, "training", False)
        if hasattr(model, "eval"):
            model.eval()  # dreams never train: dropout / batch norm in inference mode
        base = None
        if tempering and isinstance(model, RBMBase) and meta.get("path"):
            base = base_from_checkpoint(model, meta["path"])
        options: dict[str, Any] = {"tempering": tempering, "base": base} if isinstance(model, RBMBase) else {}
        if _any_size(model):  # a texture RBM: one large seamless texture, its structure annealed in
            settings = replace(settings, n_chains=1)
            options["size"] = (TEXTURE_DREAM_SIDE, TEXTURE_DREAM_SIDE)
        try:
            sampler = make_sampler(model, n_chains=settings.n_chains, seed=seed, k=1, temperature=settings.temperature,
                                   **options)
            if _any_size(model):
                from models.conv_rbm import DEFAULT_SWEEPS

                sampler.warm_up = DEFAULT_SWEEPS // 2
                sampler.cycle = DEFAULT_SWEEPS  # warmed again every 40 sweeps: past them a texture drifts
                sampler.reset()
        except ValueError as e:
            if was_training and hasattr(model, "train"):
                model.train()
            raise ValueError(f"{e}: the Dreams tab needs an RBM, a Gaussian RBM, a hybrid or a VAE") from None
        session = cls(sampler, model=model, meta=meta, settings=settings, seed=seed, history=history)
        session.tempering = tempering
        return session

    @classmethod
    def for_training(cls, meta: Mapping[str, Any] | None = None, *, history: int = 240) -> "DreamSession":
        """A session that shows the frames a training job hands to :meth:`push_frame`."""
        return cls(None, meta=meta, history=history)

    # -------------------------------------------------------------------------- describing
    @property
    def source(self) -> str:
        """"sampler" (free-running) or "training"."""
        return "sampler" if self.sampler is not None else "training"

    @property
    def kind(self) -> str:
        """The model kind ("rbm", "grbm", "hybrid", "vae", ...), "unknown" if not known."""
        kind = self.meta.get("kind") or getattr(self.model, "kind", None)
        return str(kind) if kind else "unknown"

    @property
    def brush_refusal(self) -> str | None:
        """Why the brush cannot be used here, or None when it can."""
        from models.rbm import RBMBase
        from models.sampling import GibbsSampler

        if self.sampler is None:
            return ("The dream brush steers free-running chains; these are a training run's "
                    "chains, which the brush must not disturb. Open the model to paint on its dreams.")
        pixels = isinstance(self.sampler, GibbsSampler) and isinstance(self.model, RBMBase)
        if not pixels and not (_any_size(self.model) and hasattr(self.sampler, "clamp")):  # (a texture's units are pixels)
            what = {"hybrid": "the hybrid's", "vae": "the VAE's"}.get(self.kind, "this model's")
            return (f"The dream brush needs one visible unit per pixel (a binary, Gaussian or texture RBM); "
                    f"{what} chains live in a code space, where no unit belongs to a pixel.")
        return None

    @property
    def can_brush(self) -> bool:
        return self.brush_refusal is None

    @property
    def settings(self) -> DreamSettings:
        """The settings asked for (applied by the worker at its next step)."""
        with self._lock:
            return replace(self._wanted)

    @property
    def steps(self) -> int:
        """Gibbs steps since the last reset (free-running) or the last training step seen."""
        return self._steps

    # ----------------------------------------------------------------------------- intents
    def _intent(self, **changes: Any) -> None:
        if self.sampler is None:
            raise ValueError("a training run's chains follow the training settings; they cannot be changed here")
        with self._lock:
            self._wanted = replace(self._wanted, **changes).validated()
        self.wakeup.set()

    def set_n_chains(self, n: int) -> None:
        """Run `n` chains (1-256; a texture's, 1 to `TEXTURE_MAX_CHAINS`). Kept chains keep
        their state; new ones start from noise."""
        n = int(n)
        self._intent(n_chains=min(n, TEXTURE_MAX_CHAINS) if _any_size(self.model) and n > 0 else n)

    def set_steps_per_frame(self, k: int) -> None:
        self._intent(steps_per_frame=int(k))

    def set_temperature(self, t: float) -> None:
        self._intent(temperature=float(t))

    def set_show(self, show: Show) -> None:
        """Record E[v | h] ("probs") or the sampled states ("samples") from the next frame on."""
        self._intent(show=str(show))

    def reset(self, start: Literal["noise"] | np.ndarray | Tensor = "noise") -> None:
        """Restart the chains from noise, or from dataset images (uint8 or float in [0, 1],
        ``[N, C, H, W]``): the first n of them when N ≥ n (shuffle beforehand for a random
        pick), repeated when fewer. Clears the brush. Applied at the worker's next step."""
        if self.sampler is None:
            raise ValueError("a training run's chains cannot be reset from the Dreams tab")
        if isinstance(start, str):
            if start != "noise":
                raise ValueError(f"reset from 'noise' or from images, not {start!r}")
            request: tuple[str, np.ndarray | None] = ("noise", None)
        else:
            images = start.detach().cpu().numpy() if isinstance(start, Tensor) else np.asarray(start)
            reason = self.check_images(images)
            if reason:
                raise ValueError(reason)
            request = ("images", images)
        with self._lock:
            self._reset_request = request
        self.wakeup.set()

    def check_images(self, images: np.ndarray) -> str | None:
        """Why `images` cannot start the chains (wrong shape for the model), or None."""
        if images.ndim != 4 or len(images) == 0:
            return f"expected a non-empty stack of images [N, C, H, W], got shape {tuple(images.shape)}"
        want = self.image_chw()
        if want is not None and _any_size(self.model):  # a texture starts from images of any size, tiled
            if images.shape[1] != want[0]:
                return (f"the dataset's images have {images.shape[1]} channel(s); this texture model dreams with "
                        f"{want[0]}: prepare the dataset in {'colour' if want[0] == 3 else 'grey'}")
            return None
        if want is not None and tuple(images.shape[1:]) != want:
            c, h, w = want
            return (f"the dataset's images are {images.shape[3]}×{images.shape[2]} with {images.shape[1]} channel(s); "
                    f"this model dreams {w}×{h} with {c}: prepare the dataset at the model's size")
        return None

    def image_chw(self) -> tuple[int, int, int] | None:
        """(C, H, W) of the model's images, when known."""
        m = self.model
        cfg = getattr(m, "config", None)
        shape = getattr(cfg, "image_shape", None) or getattr(m, "image_shape", None)
        if _any_size(m) and self.sampler is not None:  # a texture dreams at its sampler's size
            shape = self.sampler.image_shape
        if shape is None and cfg is not None and hasattr(cfg, "image_size"):
            shape = (cfg.channels, cfg.image_size, cfg.image_size)
        if shape is None:
            latest = self.latest()
            if latest is not None:
                h, w, c = latest.image_shape
                shape = (c, h, w)
        return tuple(int(s) for s in shape) if shape is not None else None

    def cancel(self) -> None:
        """Ask a running :meth:`step` to stop at its next chunk (used when closing)."""
        self._cancel.set()

    # ------------------------------------------------------------------------ the worker
    def apply_pending(self) -> bool:
        """Apply the queued settings, reset and brush to the sampler (worker thread). Records
        a frame when what is shown changed without a step (reset, chains, probs/samples).
        Returns True when it recorded one."""
        if self.sampler is None:
            return False
        with self._sampler_lock:
            with self._lock:
                wanted, reset, mask_dirty = replace(self._wanted), self._reset_request, self._mask_dirty
                self._reset_request, self._mask_dirty = None, False
            s, applied = self.sampler, self._applied
            changed = self._frame_dirty
            if wanted.temperature != applied.temperature:
                s.temperature = wanted.temperature
            if wanted.n_chains != applied.n_chains and reset is None:
                self._resize(wanted.n_chains)
                changed = True
            if reset is not None:
                self._do_reset(wanted.n_chains, reset)
                changed = True
            if wanted.show != applied.show:
                changed = True
            self._applied = wanted
            if mask_dirty:
                self._apply_mask()
            if changed:
                self._frame_dirty = False
                self._record()
            return changed

    def step(self) -> DreamFrame | None:
        """Apply pending intents, move the chains `steps_per_frame` Gibbs steps and record the
        frame (worker thread). Returns the frame, or None if cancelled part-way."""
        if self.sampler is None:
            raise ValueError("a training session has no sampler to step; frames come from push_frame()")
        with self._sampler_lock:
            self.apply_pending()
            k = self._applied.steps_per_frame
            done = 0
            while done < k:
                if self._cancel.is_set():
                    return None
                chunk = min(self.STEP_CHUNK, k - done)
                self.sampler.step(chunk)
                done += chunk
            self._steps += k
            return self._record()

    def _resize(self, n: int) -> None:
        """Change the number of chains, keeping the first min(old, n) chains' states."""
        s = self.sampler
        inner = getattr(s, "gibbs", s)  # the hybrid's chains live in its inner GibbsSampler
        keep = min(n, s.n_chains)
        saved = {name: getattr(inner, name)[:keep].clone() for name in ("visible", "mean", "latent") if isinstance(getattr(inner, name, None), Tensor)}
        if hasattr(s, "unclamp"):
            s.unclamp()
        s.reset(n)
        for name, value in saved.items():
            getattr(inner, name)[:keep] = value
        with self._lock:
            self._mask = None
            self.mask_version += 1

    def _do_reset(self, n: int, request: tuple[str, np.ndarray | None]) -> None:
        s = self.sampler
        if hasattr(s, "unclamp"):
            s.unclamp()
        with self._lock:
            self._mask = None
            self.mask_version += 1
        what, images = request
        if what == "noise" or images is None:
            s.reset(n)
        else:
            idx = np.arange(n) % len(images)
            picked = images[idx]
            if picked.dtype != np.uint8:
                picked = picked.astype(np.float32)  # intensities in [0, 1]
            batch = torch.from_numpy(np.ascontiguousarray(picked))
            from models.rbm import RBMBase

            if isinstance(self.model, RBMBase):
                tempering = getattr(self, "tempering", False)
                if tempering:  # the data at hand: temper toward its base rate
                    from models.factory import make_sampler
                    from models.tempering import TemperedSampler, base_from_data

                    base = base_from_data(self.model, torch.from_numpy(np.ascontiguousarray(images)))
                    if isinstance(s, TemperedSampler):
                        s.set_base(base)
                    else:
                        s = self.sampler = make_sampler(self.model, n_chains=n, seed=self.seed, k=1, temperature=s.temperature,
                                                        tempering=tempering, base=base)
                s.reset(n, start=self.model.images_to_visible(batch))
            else:  # the hybrid / VAE encode images themselves
                s.reset(n, start=batch)
        self._steps = 0

    def _record(self, pixels: np.ndarray | None = None, info: Mapping[str, Any] | None = None,
                steps: int | None = None, temperature: float | None = None, show: str | None = None) -> DreamFrame:
        if pixels is None:
            pixels = images_to_uint8(self.sampler.images(self._applied.show))
        with self._lock:
            frame = DreamFrame(
                serial=self._serial,
                pixels=pixels,
                steps=self._steps if steps is None else int(steps),
                temperature=self._applied.temperature if temperature is None else float(temperature),
                show=self._applied.show if show is None else show,
                time=time.monotonic(),
                info=dict(info or {}),
            )
            self._serial += 1
            h = self._history
            if h and h[-1].pixels.shape != pixels.shape:
                h.clear()
            limit = max(2, min(self.history_limit, self.max_history_bytes // max(1, pixels.nbytes)))
            if h.maxlen != limit:
                h = self._history = deque(h, maxlen=limit)
            h.append(frame)
            if self._mask is not None and self._mask.shape != pixels.shape[:3]:
                self._mask = None
                self.mask_version += 1
        return frame

    # ----------------------------------------------------------------------- training feed
    def push_frame(self, frame: Tensor | np.ndarray, info: Mapping[str, Any] | None = None) -> DreamFrame:
        """Record a frame from a training job (any thread): float or uint8 ``[n, C, H, W]``
        (as `TrainEvent.frame`). ``info`` may carry ``step`` (shown as the frame's steps),
        ``epoch``, ``job_id``, ``temperature``."""
        info = dict(info or {})
        pixels = images_to_uint8(frame)
        step = info.get("step")
        if step is not None:
            self._steps = int(step)
        return self._record(pixels, info, steps=self._steps, temperature=float(info.get("temperature", 1.0)), show="probs")

    # ------------------------------------------------------------------------------ history
    def latest(self) -> DreamFrame | None:
        """The newest frame, or None before the first."""
        with self._lock:
            return self._history[-1] if self._history else None

    def frames(self) -> list[DreamFrame]:
        """The history, oldest first (all the same shape)."""
        with self._lock:
            return list(self._history)

    def serial_range(self) -> tuple[int, int] | None:
        """(oldest, newest) serial in the history; serials in between are all there."""
        with self._lock:
            if not self._history:
                return None
            return self._history[0].serial, self._history[-1].serial

    def frame(self, serial: int | None = None) -> DreamFrame | None:
        """The frame with this serial (the newest when None); the oldest kept frame when it
        has already left the history; None when there is no frame."""
        with self._lock:
            h = self._history
            if not h:
                return None
            if serial is None:
                return h[-1]
            i = int(serial) - h[0].serial
            return h[min(max(i, 0), len(h) - 1)]

    def clear_history(self) -> None:
        with self._lock:
            self._history.clear()

    # -------------------------------------------------------------------------------- brush
    def _require_brush(self) -> None:
        reason = self.brush_refusal
        if reason:
            raise BrushUnavailable(reason)

    def _mask_for_update(self) -> np.ndarray:
        """The mask, made to match the newest frame (call with the lock held)."""
        h = self._history
        if not h:
            raise BrushUnavailable("there are no chains to paint on yet")
        n, hh, ww, _ = h[-1].pixels.shape
        if self._mask is None or self._mask.shape != (n, hh, ww):
            self._mask = np.zeros((n, hh, ww), bool)
        return self._mask

    @property
    def mask(self) -> np.ndarray | None:
        """A copy of the painted mask, bool ``[n, H, W]`` (True = resamples), or None."""
        with self._lock:
            return None if self._mask is None else self._mask.copy()

    @property
    def has_mask(self) -> bool:
        with self._lock:
            return self._mask is not None and bool(self._mask.any())

    def paint(self, chain: int, y: float, x: float, radius: float = 2.0, erase: bool = False,
              y0: float | None = None, x0: float | None = None) -> None:
        """Paint (or erase) a disc of `radius` pixels at (y, x) of `chain`'s image — a stroke
        from (y0, x0) when given. Painted pixels keep dreaming; the rest of the chain stays."""
        self._require_brush()
        with self._lock:
            mask = self._mask_for_update()
            n, hh, ww = mask.shape
            if not 0 <= chain < n:
                raise IndexError(f"chain {chain} out of range (0-{n - 1})")
            yy, xx = np.mgrid[0:hh, 0:ww]
            yy, xx = yy + 0.5, xx + 0.5  # pixel centres
            if y0 is None or x0 is None:
                y0, x0 = y, x
            # Distance from each pixel centre to the segment (y0, x0)-(y, x).
            dy, dx = y - y0, x - x0
            length2 = dy * dy + dx * dx
            t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / length2, 0.0, 1.0) if length2 > 0 else 0.0
            d2 = (yy - (y0 + t * dy)) ** 2 + (xx - (x0 + t * dx)) ** 2
            disc = d2 <= max(0.5, float(radius)) ** 2
            mask[chain] = (mask[chain] & ~disc) if erase else (mask[chain] | disc)
            self._mask_dirty = True
            self.mask_version += 1
        self.wakeup.set()

    def clear_mask(self, chain: int | None = None) -> None:
        """Erase the paint of one chain, or of all: those chains run freely again."""
        with self._lock:
            if self._mask is not None:
                if chain is None:
                    self._mask[:] = False
                else:
                    self._mask[chain] = False
                self._mask_dirty = True
            self.mask_version += 1
        self.wakeup.set()

    def invert_mask(self, chain: int | None = None) -> None:
        """Swap painted and unpainted pixels of one chain, or of every chain that has paint
        (a chain without paint stays free)."""
        self._require_brush()
        with self._lock:
            m = self._mask_for_update()
            rows = [chain] if chain is not None else [i for i in range(len(m)) if m[i].any()]
            for i in rows:
                m[i] = ~m[i]
            self._mask_dirty = True
            self.mask_version += 1
        self.wakeup.set()

    def clamp_mask(self) -> np.ndarray | None:
        """The clamp mask the brush asks of the sampler, bool ``[n, V]`` (True = fixed), or
        None when nothing is painted: the inverse of the paint, for chains that have paint."""
        with self._lock:
            mask = None if self._mask is None else self._mask.copy()
        if mask is None or not mask.any():
            return None
        c = self.image_chw()[0]
        n = mask.shape[0]
        painted = np.broadcast_to(mask[:, None], (n, c, *mask.shape[1:])).reshape(n, -1)
        return mask.reshape(n, -1).any(1)[:, None] & ~painted

    def _apply_mask(self) -> None:
        """Hand the brush to the sampler (worker thread, sampler lock held)."""
        s = self.sampler
        if not self.can_brush:
            return
        clamp = self.clamp_mask()
        if clamp is None or clamp.shape[0] != s.n_chains:
            s.unclamp()
            return
        new = torch.from_numpy(clamp).to(s.visible.device)
        shown = s.states(self._applied.show)
        values = shown if s.clamp_mask is None else torch.where(s.clamp_mask, s.clamp_values, shown)
        s.clamp(new, values.clone())

    # ---------------------------------------------------------------------------- snapshots
    def provenance(self, frame: DreamFrame, chain: int | None = None) -> dict[str, Any]:
        """Where a snapshot comes from: model kind, checkpoint sha256, seed, steps, T, ..."""
        prov: dict[str, Any] = {
            "source": "dreams",
            "model": self.kind,
            "checkpoint_sha256": self.meta.get("checkpoint_sha256") or self.meta.get("sha256"),
            "seed": self.seed,
            "steps": frame.steps,
            "temperature": frame.temperature,
            "show": frame.show,
            "n_chains": frame.n_chains,
            "frame": frame.serial,
            "dreams_source": self.source,
        }
        if self.meta.get("path"):
            prov["checkpoint"] = str(self.meta["path"])
        if self.source == "sampler" and self.model is not None:
            # Free dreams run a model whose weights do not change: their hash names it even
            # before any checkpoint holds it (a project saved later names its checkpoint).
            if self._weights_sha256 is None:
                from studio.canvas.sources import weights_sha256

                self._weights_sha256 = weights_sha256(self.model)
            if self._weights_sha256:
                prov["weights_sha256"] = self._weights_sha256
        if self.sampler is not None:
            prov["steps_per_frame"] = self._applied.steps_per_frame
            prov["brush"] = self.has_mask
        if frame.info:
            prov["training"] = {k: v for k, v in frame.info.items() if isinstance(v, (int, float, str, bool)) or v is None}
        if chain is not None:
            prov["chain"] = int(chain)
        return prov

    def _frame_or_raise(self, serial: int | None) -> DreamFrame:
        frame = self.frame(serial)
        if frame is None:
            raise ValueError("there is no frame yet to snapshot")
        return frame

    def snapshot_grid(self, serial: int | None = None, pad: int = 1) -> tuple[np.ndarray, dict[str, Any]]:
        """(uint8 RGBA mosaic [Hm, Wm, 4], provenance) of a frame (the newest by default)."""
        frame = self._frame_or_raise(serial)
        lay = GridLayout(frame.n_chains, frame.pixels.shape[1], frame.pixels.shape[2], pad)
        prov = self.provenance(frame) | {"grid": {"rows": lay.rows, "cols": lay.cols, "pad": pad}}
        return to_rgba(mosaic(frame.pixels, pad)), prov

    def snapshot_chain(self, chain: int, serial: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """(uint8 RGBA [H, W, 4], provenance) of one chain in a frame (the newest by default)."""
        frame = self._frame_or_raise(serial)
        if not 0 <= chain < frame.n_chains:
            raise IndexError(f"chain {chain} out of range (0-{frame.n_chains - 1})")
        return to_rgba(frame.pixels[chain]), self.provenance(frame, chain)

    def snapshot_layer(self, chain: int | None = None, serial: int | None = None, name: str | None = None):
        """A :class:`studio.canvas.Layer` of the grid (chain None) or of one chain."""
        from studio.canvas import Layer

        rgba, prov = self.snapshot_grid(serial) if chain is None else self.snapshot_chain(chain, serial)
        if name is None:
            name = f"Dreams · {self.kind} · " + ("grid" if chain is None else f"chain {chain}") + f" · step {prov['steps']}"
        return Layer(name=name, source=rgba, provenance=prov, resample="nearest")

    # ------------------------------------------------------------------------------ exports
    def export_grid_png(self, path: str | Path, serial: int | None = None, scale: int = 1,
                        smooth: bool = False) -> Path:
        """Write the grid of a frame (the newest by default) as an RGBA PNG with provenance,
        enlarged `scale`× (nearest neighbour, or `smooth`: Lanczos)."""
        from studio.images import save_png, upscale

        rgba, prov = self.snapshot_grid(serial)
        if scale > 1:
            rgba, prov = upscale(rgba, scale, smooth), prov | {"scale": int(scale), "smooth": bool(smooth)}
        return save_png(path, rgba, prov)

    def chain_history(self, chain: int) -> tuple[list[np.ndarray], list[DreamFrame]]:
        """One chain's images over the history, uint8 [H, W, C] each, and their frames."""
        frames = self.frames()
        if not frames:
            raise ValueError("there is no history to animate yet")
        if not 0 <= chain < frames[-1].n_chains:
            raise IndexError(f"chain {chain} out of range (0-{frames[-1].n_chains - 1})")
        return [f.pixels[chain] for f in frames], frames

    def export_chain_animation(self, chain: int, path: str | Path, fps: float = 12.0,
                               format: Literal["gif", "apng"] | None = None, scale: int = 1,
                               smooth: bool = False) -> Path:
        """Write `chain`'s evolution over the history as an animated GIF or APNG (default
        from the suffix), each image scaled up `scale`× (nearest neighbours, or `smooth`:
        Lanczos). Safe to call from any thread: it copies the history first."""
        from studio.canvas.export import save_animation
        from studio.images import upscale

        images, frames = self.chain_history(chain)
        scale = max(1, int(scale))
        if scale > 1:
            images = [upscale(im, scale, smooth) for im in images]
        prov = self.provenance(frames[-1], chain) | {
            "frames": len(frames), "first_frame": frames[0].serial, "first_steps": frames[0].steps,
            "fps": fps, "scale": scale, "smooth": bool(smooth),
        }
        return save_animation(images, path, fps, format, provenance=prov)
