"""The latent explorer: the model behind the Latent tab (plain Python, no Qt).

A :class:`LatentExplorer` holds a *private copy* of a trained model (``studio.canvas.sources.
detach_model``, taken under the training job's lock when there is one) in eval mode, so that
decoding from a worker thread never races a training thread, and offers:

Sliders
    One slider per latent dimension, in :attr:`LatentExplorer.order`: for a VAE the most used
    dimensions first (average KL per dimension over the set, ``ConvVAE.latent_usage``); for the
    hybrid (and a plain autoencoder) the code dimensions by their variance over the set. The
    explorer keeps the current latent vector :attr:`~LatentExplorer.z`; :meth:`set_dim` changes
    one dimension and returns the decoded image, :meth:`randomise` draws a fresh vector,
    :meth:`reset` goes back to the origin (the VAE's prior mean 0; the set's mean code for the
    hybrid, 0.5 before a set is known).

Interpolation and dreams
    :meth:`interpolate` decodes a linear or spherical walk between the latent means of two
    images (set indices or images); its ends are the two reconstructions. :meth:`walk` is dream
    mode: a smooth random walk (an Ornstein-Uhlenbeck process low-pass filtered once more, so
    the path has no Brownian jitter) around the origin, with the set's (or the prior's) spread,
    at a speed that can be changed while it runs.

The set
    :meth:`encode_set` encodes a set of images (batched, no gradients) to their latent means;
    then :meth:`nearest` gives an image's nearest neighbours in latent space (the image itself
    first), :meth:`outlier_order` the set sorted by reconstruction error (or, for the hybrid,
    the RBM's free energy of the codes), most unusual first, and :meth:`denoise` passes any
    image through the autoencoder.

Images come in as uint8 (or float in [0, 1]) ``[C, H, W]`` / ``[N, C, H, W]`` tensors or arrays;
images go out as read-only uint8 numpy arrays ``[H, W, C]`` (``[N, H, W, C]`` for several), as
the Dreams tab and the canvas layers take them. Calls are serialised by an internal lock, so a
UI worker and an analysis may share one explorer.
"""
from __future__ import annotations

import math
import threading
from typing import Any, Iterator, Literal, Mapping

import numpy as np
import torch
from torch import Tensor

from models import kinds
from studio.images import images_to_uint8
from studio.canvas.sources import detach_model
from studio.worker import LatestWorker

__all__ = ["LatentExplorer", "LatentRunner", "LatentWalk"]

Method = Literal["linear", "slerp"]
Metric = Literal["euclidean", "cosine"]


def _as_batch(images: Any) -> Tensor:
    """uint8 / float images [C, H, W] or [N, C, H, W] (tensor or array) -> a CPU tensor [N, C, H, W]."""
    x = images if isinstance(images, Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    x = x.detach().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected images [C, H, W] or [N, C, H, W], got shape {tuple(x.shape)}")
    return x


class LatentWalk:
    """Dream mode's path: a smooth random walk around ``origin`` with per-dimension spread
    ``scale``, clipped to [``low``, ``high``].

    A unit-variance Ornstein-Uhlenbeck process u (in discrete time, u ← a·u + √(1-a²)·ε) is
    low-pass filtered once more (y ← b·y + (1-b)·u) and normalised to unit variance, so the path
    is smooth (its velocity, not its position, is the noisy part) and every dimension keeps the
    stationary spread ``scale``: z = origin + scale · y / std(y). ``speed`` (changeable at any
    time) sets the time constant: about ``1/speed`` seconds at ``fps`` frames per second.
    """

    def __init__(self, start: Tensor, origin: Tensor, scale: Tensor, *, speed: float = 1.0, fps: float = 30.0,
                 seed: int | None = None, low: float = -math.inf, high: float = math.inf):
        self.origin = origin.detach().float().clone()
        self.scale = scale.detach().float().clamp_min(1e-6).clone()
        self.speed = float(speed)
        self.fps = float(fps)
        self.low, self.high = float(low), float(high)
        self.generator = torch.Generator().manual_seed(int(seed)) if seed is not None else torch.Generator()
        if seed is None:
            self.generator.seed()
        y = ((start.detach().float() - self.origin) / self.scale).clamp(-3.0, 3.0)
        self._u = y.clone()
        self._y = y.clone()
        self.steps_taken = 0

    def _coefficients(self) -> tuple[float, float, float]:
        rate = max(0.0, self.speed) / max(1e-6, self.fps)  # frames per time constant, inverted
        a = b = math.exp(-rate)
        c = 1.0 - b
        var = c * c * (1 + a * b) / max(1e-12, (1 - b * b) * (1 - a * b)) if rate > 0 else 1.0
        return a, b, math.sqrt(var)

    def step(self) -> Tensor:
        """Move one frame; the new point [L]."""
        a, b, std = self._coefficients()
        if self.speed > 0:
            eps = torch.randn(self._u.shape, generator=self.generator)
            self._u = a * self._u + math.sqrt(max(0.0, 1 - a * a)) * eps
            self._y = b * self._y + (1 - b) * self._u / std
        self.steps_taken += 1
        return self.point()

    def point(self) -> Tensor:
        return (self.origin + self.scale * self._y).clamp(self.low, self.high)


class LatentExplorer:
    """Sliders, interpolation, dreams and set analyses over a VAE's or an autoencoder's
    latent space (see the module docs). ``model``: a ``ConvVAE``, a ``HybridModel`` (its
    autoencoder's sigmoid codes) or a ``ConvAutoencoder``; copied unless ``copy=False``
    (``lock``: held while copying). ``images``: the set, encoded at once when given."""

    def __init__(self, model: Any, images: Any = None, *, copy: bool = True, lock: Any = None,
                 batch_size: int = 256, temperature: float = 1.0, meta: Mapping[str, Any] | None = None):
        kind = str(getattr(model, "kind", ""))
        if kind not in kinds.keys("explorable"):
            raise ValueError(f"a {kind or type(model).__name__} model has no latent space to explore "
                             f"(use a VAE, an autoencoder or the AE+RBM hybrid)")
        self.model = detach_model(model, lock) if copy else model
        self.model.eval()
        #: Where the model comes from (``kind``, ``title``, ``job_id``, ``path``...), for provenance.
        self.meta: dict[str, Any] = dict(meta or {})
        self.kind = kind
        self.coder = self.model.autoencoder if kind == "hybrid" else self.model
        self.latent_dim = int(self.coder.latent)
        self.image_shape = tuple(self.model.image_shape)
        self.batch_size = int(batch_size)
        self.temperature = float(temperature)
        self._lock = threading.RLock()
        L = self.latent_dim
        self.images: Tensor | None = None  # the set, uint8 [N, C, H, W] on the CPU
        self.means: Tensor | None = None  # its latent means / codes [N, L]
        self.usage = torch.zeros(L)  # per-dimension score the order comes from (KL or variance)
        self.order: list[int] = list(range(L))
        self._errors: Tensor | None = None
        if kind == "vae":
            self.origin, self.spread = torch.zeros(L), torch.full((L,), math.sqrt(self.temperature))
            self.low, self.high = -3.0, 3.0
        elif kind == "hybrid":
            self.origin, self.spread = torch.full((L,), 0.5), torch.full((L,), 0.25)
            self.low, self.high = 0.0, 1.0
        else:
            self.origin, self.spread = torch.zeros(L), torch.ones(L)
            self.low, self.high = -3.0, 3.0
        self.z = self.origin.clone()
        self.walker: LatentWalk | None = None
        if images is not None:
            self.encode_set(images)

    # ------------------------------------------------------------------------ the model
    @torch.no_grad()
    def encode(self, images: Any) -> Tensor:
        """Latent means (VAE) or codes (autoencoders) [N, L] on the CPU, batch by batch."""
        x = _as_batch(images)
        with self._lock:
            out = []
            for i in range(0, x.shape[0], self.batch_size):
                chunk = x[i : i + self.batch_size]
                out.append((self.coder.encode(chunk)[0] if self.kind == "vae" else self.coder.encode(chunk)).float().cpu())
            return torch.cat(out) if out else torch.zeros(0, self.latent_dim)

    @torch.no_grad()
    def decode_float(self, z: Tensor) -> Tensor:
        """Latents [L] or [N, L] -> images [N, C, H, W] in [0, 1] on the CPU."""
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        with self._lock:
            return torch.cat([self.coder.decode(z[i : i + self.batch_size]).cpu()
                              for i in range(0, z.shape[0], self.batch_size)])

    def decode(self, z: Tensor) -> np.ndarray:
        """A latent [L] -> uint8 [H, W, C]; several [N, L] -> uint8 [N, H, W, C]."""
        z = torch.as_tensor(z, dtype=torch.float32)
        out = images_to_uint8(self.decode_float(z))
        return out[0] if z.dim() == 1 else out

    # -------------------------------------------------------------------------- sliders
    def slider_range(self, dim: int | None = None) -> tuple[float, float]:
        """The values a slider spans: ±3 for the VAE (3 prior standard deviations), [0, 1]
        for the hybrid's codes, ±3 spreads around the mean for a plain autoencoder."""
        if self.kind == "ae" and dim is not None:
            o, s = float(self.origin[dim]), float(self.spread[dim])
            return (o - 3 * s, o + 3 * s)
        return (self.low, self.high)

    def current(self) -> np.ndarray:
        """The current latent vector decoded: uint8 [H, W, C]."""
        return self.decode(self.z)

    def set_latent(self, z: Any) -> np.ndarray:
        """Set the whole latent vector [L]; the decoded image."""
        z = torch.as_tensor(z, dtype=torch.float32).flatten()
        if z.numel() != self.latent_dim:
            raise ValueError(f"a latent vector of {z.numel()} values for a latent space of {self.latent_dim}")
        self.z = z.clone()
        return self.current()

    def set_dim(self, dim: int, value: float) -> np.ndarray:
        """Set latent dimension ``dim`` (a dimension, not a slider position: the slider at
        position p drives ``order[p]``) to ``value``; the decoded image uint8 [H, W, C]."""
        if not 0 <= dim < self.latent_dim:
            raise IndexError(f"latent dimension {dim} out of range (0–{self.latent_dim - 1})")
        z = self.z.clone()
        z[dim] = float(value)
        self.z = z
        return self.current()

    def randomise(self, seed: int | None = None) -> np.ndarray:
        """A fresh latent vector: the VAE's prior N(0, T·I); for the autoencoders a draw with
        the set's per-dimension mean and spread (clipped to the codes' range)."""
        g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
        eps = torch.randn(self.latent_dim, generator=g)
        if self.kind == "vae":
            z = eps * math.sqrt(self.temperature)
        else:
            z = (self.origin + self.spread * eps).clamp(self.low, self.high)
        self.z = z
        return self.current()

    def reset(self) -> np.ndarray:
        """Back to the origin (the VAE's 0; the set's mean code); the decoded image."""
        self.z = self.origin.clone()
        return self.current()

    # -------------------------------------------------------------------- interpolation
    def _latent_of(self, image: Any) -> Tensor:
        """A set index -> its stored mean; an image -> its encoding. [L]."""
        if isinstance(image, (int, np.integer)):
            if self.means is None:
                raise ValueError("no set has been encoded (call encode_set first)")
            return self.means[int(image)]
        return self.encode(image)[0]

    def interpolate_latents(self, a: Tensor, b: Tensor, steps: int = 8, method: Method = "linear") -> Tensor:
        """Points [steps, L] from a to b (both ends exact). The autoencoders' spherical walk
        turns around the set's mean code (their codes are not centred on 0)."""
        if steps < 2:
            raise ValueError("an interpolation needs at least 2 steps (its two ends)")
        from models.vae import ConvVAE

        centre = torch.zeros(self.latent_dim) if self.kind == "vae" else self.origin
        z = ConvVAE.interpolate_latents((a - centre)[None], (b - centre)[None], steps, method)[:, 0] + centre
        z[0], z[-1] = a, b
        return z

    def interpolate(self, image_a: Any, image_b: Any, steps: int = 8, method: Method = "linear") -> np.ndarray:
        """The decoded walk between two images' latent means (set indices or images [C, H, W]):
        uint8 [steps, H, W, C]; the first and last frames are the two reconstructions."""
        return self.decode(self.interpolate_latents(self._latent_of(image_a), self._latent_of(image_b), steps, method))

    # ----------------------------------------------------------------------- dream mode
    def start_walk(self, speed: float = 1.0, seed: int | None = None, fps: float = 30.0) -> LatentWalk:
        """A new smooth random walk starting at the current vector (kept as :attr:`walker`)."""
        self.walker = LatentWalk(self.z, self.origin, self.spread, speed=speed, fps=fps, seed=seed,
                                 low=self.low, high=self.high)
        return self.walker

    def walk(self, speed: float = 1.0, seed: int | None = None, fps: float = 30.0) -> Iterator[np.ndarray]:
        """Dream mode: an endless generator of decoded frames uint8 [H, W, C] along a smooth
        random walk from the current vector; the current vector follows the walk. Change
        ``explorer.walker.speed`` at any time (0 pauses)."""
        walker = self.start_walk(speed, seed, fps)
        while True:
            self.z = walker.step()
            yield self.current()

    # -------------------------------------------------------------------------- the set
    def encode_set(self, images: Any) -> Tensor:
        """Encode the set (uint8 [N, C, H, W]; batched, no gradients); its means [N, L] are kept,
        the slider order and the autoencoders' origin and spread come from them."""
        x = _as_batch(images)
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"images of shape {list(x.shape[1:])} for a model of {list(self.image_shape)}")
        means = self.encode(x)
        with self._lock:
            self.images, self.means, self._errors = x, means, None
            if self.kind == "vae":
                with torch.no_grad():
                    self.usage = self.model.latent_usage(x, max_images=len(x), batch_size=self.batch_size).float().cpu()
            else:
                self.usage = means.var(0, unbiased=False) if len(means) > 1 else torch.zeros(self.latent_dim)
                if len(means):
                    self.origin = means.mean(0)
                    if len(means) > 1:
                        self.spread = means.std(0, unbiased=False).clamp_min(1e-3)
                    self.z = self.origin.clone()
            self.order = [int(i) for i in torch.argsort(self.usage, descending=True, stable=True)]
        return means

    def _need_set(self) -> Tensor:
        if self.means is None:
            raise ValueError("no set has been encoded (call encode_set first)")
        return self.means

    def nearest(self, query: Any, k: int = 8, metric: Metric = "euclidean") -> list[tuple[int, float]]:
        """The ``k`` nearest images of the set in latent space, as (index, distance), nearest
        first. ``query``: a set index (then the image itself comes first, at distance 0) or an
        image. "euclidean" on the means, or "cosine" (1 - cos) around the set's mean."""
        means = self._need_set()
        q = self._latent_of(query)
        if metric == "euclidean":
            d = (means - q).norm(dim=1)
        elif metric == "cosine":
            centre = means.mean(0)
            a, b = means - centre, q - centre
            d = 1.0 - (a @ b) / (a.norm(dim=1) * b.norm()).clamp_min(1e-12)
        else:
            raise ValueError(f"unknown metric {metric!r} (euclidean, cosine)")
        order = torch.argsort(d, stable=True).tolist()
        if isinstance(query, (int, np.integer)):
            i = int(query)
            d[i] = 0.0
            order = [i] + [j for j in order if j != i]
        return [(j, float(d[j])) for j in order[: max(0, int(k))]]

    @torch.no_grad()
    def reconstruction_errors(self) -> Tensor:
        """Mean squared error per pixel of each set image's reconstruction (decoded mean) [N]."""
        means = self._need_set()
        with self._lock:
            if self._errors is None:
                errs = []
                for i in range(0, len(means), self.batch_size):
                    x = self.images[i : i + self.batch_size].float()
                    x = x / 255.0 if self.images.dtype == torch.uint8 else x
                    rec = self.decode_float(means[i : i + self.batch_size])
                    errs.append((rec - x).pow(2).flatten(1).mean(1))
                self._errors = torch.cat(errs) if errs else torch.zeros(0)
            return self._errors

    @torch.no_grad()
    def free_energies(self) -> Tensor:
        """The hybrid's RBM free energy F(code) of each set image's code [N] (high: unlikely)."""
        if self.kind != "hybrid":
            raise ValueError("free energy needs the hybrid (an RBM over the codes)")
        means = self._need_set()
        with self._lock:
            rbm = self.model.rbm
            device = next(rbm.parameters()).device
            return torch.cat([rbm.free_energy(means[i : i + self.batch_size].to(device)).float().cpu()
                              for i in range(0, len(means), self.batch_size)])

    def outlier_scores(self, by: Literal["recon", "free_energy"] = "recon") -> Tensor:
        """Per set image, how unusual it is [N]: reconstruction error, or the RBM's free energy."""
        if by == "recon":
            return self.reconstruction_errors()
        if by == "free_energy":
            return self.free_energies()
        raise ValueError(f"unknown outlier score {by!r} (recon, free_energy)")

    def outlier_order(self, by: Literal["recon", "free_energy"] = "recon") -> list[int]:
        """The set's indices, most unusual first (descending score)."""
        return [int(i) for i in torch.argsort(self.outlier_scores(by), descending=True, stable=True)]

    def denoise(self, image: Any, passes: int = 1) -> np.ndarray:
        """An image (or batch) through the autoencoder ``passes`` times (the decoded mean):
        uint8 [H, W, C] (or [N, H, W, C] for a batch)."""
        single = len(getattr(image, "shape", ())) == 3
        out = _as_batch(image)
        for _ in range(max(1, int(passes))):
            out = self.decode_float(self.encode(out))
        pixels = images_to_uint8(out)
        return pixels[0] if single else pixels


# ------------------------------------------------------------------------------- worker
class LatentRunner(LatestWorker):
    """The Latent tab's worker (a :class:`studio.worker.LatestWorker`): it runs *requests*
    (callables) with only the newest one kept — a slider dragged faster than the model decodes
    skips the stale values, it never queues them — and, while dreaming, steps a walk at
    ``fps`` frames per second when no request waits. Every result that is not None goes to
    ``deliver(result)`` (called on the worker thread: a Qt view re-emits it as a signal).
    Errors go to ``on_error(exc)``.

    Requests made with ``keep=True`` (building an explorer, an interpolation strip) are jobs,
    not positions: they wait in order, run before the newest position, and are never dropped.

    ``request`` / ``set_dreaming`` / ``stop`` only note intents under a lock held for
    microseconds, so the UI never waits for a decode.
    """

    def __init__(self, deliver, on_error=None, *, fps: float = 30.0, name: str = "latent-explorer", owner=None):
        super().__init__(name, deliver, on_error, owner=owner)
        self.fps = float(fps)

    def request(self, fn, *, keep: bool = False) -> None:
        """Run ``fn()`` next, replacing a request that has not started yet; with ``keep``,
        after the kept ones before it, replacing nothing and never replaced."""
        self.submit(fn, keep=keep)

    def set_dreaming(self, step) -> None:
        """``step``: a callable giving the next dream result (None: stop dreaming)."""
        self.tick(step, 1.0 / self.fps)

    @property
    def dreaming(self) -> bool:
        return self.ticking

    @property
    def frames_dreamt(self) -> int:
        return self.ticks

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread (after the request it is running); True if it ended in time."""
        return self.shutdown(timeout)
