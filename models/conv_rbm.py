"""Texture RBM: a convolutional RBM on a torus, sampled seamlessly at any size.

A pixel RBM learns whole 28-32 px images; a *convolutional* RBM shares one small set of
weights across every position of the image, so it learns the local statistics of a texture
from one photograph or a few, and its Gibbs chains run on a grid of any size. Here the grid is
a torus (circular padding): pixel (y, W) is pixel (y, 0), so every sample tiles without a seam.

The model
    K filters W_k [C, f, f], a hidden bias c_k per filter, a visible bias b_c and (Gaussian
    units) a variance σ_c² per colour channel. Visible v [C, H, W] (standardised pixels: the
    data's per-channel mean and std are kept as buffers), hidden h [K, H, W], one binary hidden
    unit per filter and position. With I = W ⋆ (v/σ²) + c, the circular cross-correlation of
    the scaled image with each filter (`hidden_logits`):

        Gaussian  E(v, h) = Σ (v - b)² / 2σ² - Σ h·I          p(v | h) = N(b + Σ_k W_k * h_k, σ²)
        binary    E(v, h) = -Σ b·v        - Σ h·I (σ = 1)    p(v = 1 | h) = sigmoid(b + Σ_k W_k * h_k)
        F(v) = Σ (v - b)² / 2σ² (or -Σ b·v) - Σ softplus(I)

    `W_k * h_k` is the transposed operation (a circular convolution: `visible_mean`). With
    probabilistic max-pooling (`pooling` = p > 1) at most one hidden unit of each p×p block of
    a map is on: p(h_i = 1 | v) = exp(I_i) / (1 + Σ_block exp(I_j)), and the block's term of
    F is -log(1 + Σ_block exp(I_j)). A temperature T divides the energy: logits / T, σ² T.
    tests/test_conv_rbm.py checks all of this against a fully connected RBM whose weight
    matrix is the convolution unrolled (`unrolled_weight`).

Training (`ConvRBMTrainer`, a `models.training.Trainer`: training is a generator of events)
    PCD-k (or CD-k) on random crops of the training images: a batch is `batch_size` crops of
    `crop` px from random images at random places, so one photograph is a whole training set.
    The model is stationary, so the gradient is taken per position: the data's statistics come
    from the hidden units whose field lies wholly inside a crop ("valid" correlation: the crop's
    edges are not a seam the model should learn) and the model's from persistent chains on a
    torus of `chain_size` px; the loss is the difference of the two free energies per position,
    differentiated by autograd. Adam (a step size per parameter: the weights, biases and log σ²
    have gradients of very different sizes), gradient-norm clipping, weight decay on the
    filters, a floor on σ² (Liao et al. 2022), and Lee et al.'s sparsity target on the hidden
    biases. An epoch is `steps_per_epoch` steps, whatever the number of images.
    What the defaults came from (gravel, brick, grass; bench/texture.py and its history):
    - without pooling, overlapping hidden units of a filter reinforce each other through the
      visible units, and from noise the chains fell into flat grey or saturated "worms";
      2×2 probabilistic max-pooling (one unit on per block) gave stable, textured samples;
    - PCD-1's chains were dragged along by the weights (PCD's samples looked right, the
      model's own did not); PCD-5 keeps them nearer the model;
    - a chain restarted from noise every `restart_every` steps shows the model what its
      sampler meets from noise (persistent chains alone never visit the flat mode);
    - PCD's weights never settle: the model's samples swung between good and washed-out from
      one hundred steps to the next, so the model keeps the moving average of its parameters
      (`average`, Polyak averaging) whenever training is not running.

Sampling (`ConvGibbsSampler`, `synthesize`)
    n chains on an H×W torus (any size from the filter size up, 64 to 2048 px and beyond),
    started from noise or a seed image (tiled or cropped to the size), k block-Gibbs sweeps per
    call at a temperature, optionally annealed from a higher one (`synthesize` anneals from
    T = 2 over its first half: structure then forms everywhere at once), with a clamp mask (the
    dream brush: clamped pixels keep their values, the rest resample given them). Everything is
    `torch.nn.functional` convolutions on the model's device (CUDA when present); on a CPU with
    bfloat16 convolutions free-running chains sweep in bfloat16 (`_FastSweeps`), and binary
    draws come from `models.noise.NoiseSource`'s stream on the CPU. Frames show E[v | h] of the
    last sweep (the denoised mean; "samples" shows the noisy draw). The sampler has the surface
    `studio.dreams` drives: `step(k)`, `images(kind)`, `states(kind)`, `reset(n, start)`,
    `temperature`, `clamp(mask, values)` / `unclamp()`, `state_tensors()`.

What was taken from the papers
* Lee, Grosse, Ranganath & Ng 2009 (convolutional deep belief networks): weights shared across
  positions through convolution, one hidden bias per filter, the "valid"/"full" pair of
  correlations for the two conditionals, real-valued (Gaussian) visible units for natural
  images, probabilistic max-pooling (the block softmax with an "all off" state, as energy and
  free energy), and the sparsity regularisation that moves each filter's hidden bias toward a
  target mean activation (the hidden layer is K times overcomplete, so without it the filters
  stay unspecific).
* Norouzi, Ranjbar & Mori 2009 (stacks of convolutional RBMs): the same model trained from
  images by contrastive divergence with the conditionals written as convolutions, and its
  warning about the border: visible units near an image's edge see fewer hidden units, so a
  model trained with zero padding learns edge effects. Here there is no border at all: the
  chains live on a torus and the data's statistics come from interior positions only.
* Kivinen & Williams 2012 (multiple texture Boltzmann machines): a texture is a stationary
  field, so a model with weights shared across positions (theirs tiled, with Gaussian visible
  units on standardised pixels) synthesises it at any size; what makes samples good there:
  filters wide enough to see the texture's structure, long burn-in of the Gibbs chains, the
  visible means shown rather than noisy draws, and judging samples against held-out texture,
  not the training crops. Their inpainting (clamp the known pixels, resample the rest) is the
  dream brush here.
* Luo, Carrier, Courville & Bengio 2013 (convolutional spike-and-slab RBMs for textures): tiled
  convolution lets a model synthesise patches of variable size while spending its capacity on
  local structure; synthesis and inpainting scored on held-out regions of each texture (the
  bench does the same with patch MMD²). Their spike-and-slab units (which model the local
  covariance: contrast) and deep extensions are not implemented; a plain Gaussian-Bernoulli
  conv RBM is the baseline their tables compare with.
Not implemented: tiling of the weights (Kivinen & Williams, Luo et al.), parallel tempering
(annealing from a higher temperature is offered instead: `ConvGibbsSampler.anneal`).

Checkpoints: the model's `state_dict` holds tensors only and its `config` is a dataclass of
JSON values, so `models.checkpoint.save_checkpoint` / `load_checkpoint` store it once the kind
is registered in `models.kinds.KINDS` (`save` / `load` here call them). `build_texture` is the
kind's builder for that record.
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .device import make_generator
from .noise import NoiseSource
from .sampling import Clamping
from .training import TrainConfig, Trainer

KIND = "texture"
VISIBLE_TYPES = ("gaussian", "binary")
MAX_FILTERS = 1024
MAX_FILTER_SIZE = 64
MAX_POOLING = 8
MAX_SIDE = 8192  # a sampler's side (2048 px is the studio's largest canvas; memory is capped apart)
#: The chains' memory a sampler may take (hidden maps dominate: n × K × H × W units, about 20 bytes each
#: in the buffers of a sweep).
MAX_SAMPLER_BYTES = 8 << 30


class ConvRBMError(ValueError):
    """A texture model's settings, images or saved state that cannot be used; says why."""


# ------------------------------------------------------------------------------ the config
@dataclass
class ConvRBMConfig:
    """Architecture of a texture RBM. `image_shape` (C, H, W): the training images' shape (a
    checkpoint's preprocessing is checked against it) and the default size of its dreams; the
    model itself runs at any size."""

    channels: int = 1
    n_filters: int = 32
    filter_size: int = 9
    pooling: int = 2  # probabilistic max-pooling over p×p blocks of each hidden map (1: none)
    visible: str = "gaussian"  # "gaussian" (real-valued pixels, grey or colour) | "binary"
    learn_variance: bool = True  # Gaussian: learn σ² per channel (with a floor) or keep it at `variance`
    variance: float = 0.3  # Gaussian: σ² at the start (learned) or throughout (standardised units)
    var_floor: float = 0.01  # Gaussian: σ² never goes below this
    image_shape: tuple[int, int, int] | None = None  # None: (channels, 64, 64)

    def __post_init__(self) -> None:
        def whole(name: str, lo: int, hi: int) -> int:
            v = getattr(self, name)
            if type(v) is not int or not lo <= v <= hi:
                raise ConvRBMError(f"{name} must be a whole number from {lo} to {hi} (got {v!r})")
            return v

        whole("channels", 1, 4)
        whole("n_filters", 1, MAX_FILTERS)
        whole("filter_size", 1, MAX_FILTER_SIZE)
        whole("pooling", 1, MAX_POOLING)
        if self.visible not in VISIBLE_TYPES:
            raise ConvRBMError(f"visible must be one of {', '.join(VISIBLE_TYPES)} (got {self.visible!r})")
        if type(self.learn_variance) is not bool:
            raise ConvRBMError(f"learn_variance must be true or false (got {self.learn_variance!r})")
        for name in ("var_floor", "variance"):
            v = getattr(self, name)
            if type(v) not in (int, float) or not (math.isfinite(v) and 0 < v <= 1e3):
                raise ConvRBMError(f"{name} must be a finite number above 0 and at most 1000 (got {v!r})")
        if self.variance < self.var_floor:
            raise ConvRBMError(f"variance ({self.variance}) must not be below var_floor ({self.var_floor})")
        if self.image_shape is None:
            self.image_shape = (self.channels, 64, 64)
        shape = self.image_shape
        if not isinstance(shape, (tuple, list)) or len(shape) != 3 or any(type(s) is not int for s in shape):
            raise ConvRBMError(f"image_shape must be three whole numbers (C, H, W) (got {shape!r})")
        self.image_shape = tuple(shape)
        c, h, w = self.image_shape
        if c != self.channels:
            raise ConvRBMError(f"image_shape {self.image_shape} has {c} channel(s), the model {self.channels}")
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise ConvRBMError(f"image_shape's sides must be 1 to {MAX_SIDE} px (got {h}×{w})")

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON values (what a checkpoint stores under "config")."""
        d = dataclasses.asdict(self)
        d["image_shape"] = list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> "ConvRBMConfig":
        """A config from `to_dict`'s JSON; unknown or missing keys and bad values: ConvRBMError."""
        if not isinstance(d, dict):
            raise ConvRBMError("a texture model's config must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k)[:40] for k in d if k not in names)
        if unknown:
            raise ConvRBMError(f"unknown texture model setting(s): {', '.join(unknown)}")
        d = dict(d)
        if isinstance(d.get("image_shape"), list):
            d["image_shape"] = tuple(d["image_shape"])
        return cls(**d)


# ------------------------------------------------------------------------ circular helpers
def _pads(f: int) -> tuple[int, int]:
    """(before, after) padding of a "same" correlation with an f-wide filter: the filter's
    centre tap (f // 2 for odd f) sits over the output pixel."""
    before = (f - 1) // 2
    return before, f - 1 - before


def _fold(t: Tensor, before: int, after: int, dim: int) -> Tensor:
    """Wrap a "full" result of length n + before + after back onto a circle of length n along
    `dim`: entry j goes to (j - before) mod n."""
    total = t.shape[dim]
    n = total - before - after
    if n >= max(before, after):
        out = t.narrow(dim, before, n).clone()
        if before:
            out.narrow(dim, n - before, before).add_(t.narrow(dim, 0, before))
        if after:
            out.narrow(dim, 0, after).add_(t.narrow(dim, before + n, after))
        return out
    idx = (torch.arange(total, device=t.device) - before) % n  # a circle smaller than the filter
    shape = [1] * t.dim()
    shape[dim] = total
    out = torch.zeros(*t.shape[:dim], n, *t.shape[dim + 1 :], dtype=t.dtype, device=t.device)
    return out.index_add_(dim, idx, t)


def circular_pad(x: Tensor, f: int) -> Tensor:
    """x [B, C, H, W] padded on a torus so that a valid correlation with an f×f filter gives
    H×W outputs (also when the image is smaller than the filter)."""
    before, after = _pads(f)
    if before <= x.shape[-1] and after <= x.shape[-1] and before <= x.shape[-2] and after <= x.shape[-2]:
        return F.pad(x, (before, after, before, after), mode="circular")
    h, w = x.shape[-2:]
    rows = (torch.arange(-before, h + after, device=x.device) % h)
    cols = (torch.arange(-before, w + after, device=x.device) % w)
    return x.index_select(-2, rows).index_select(-1, cols)


# --------------------------------------------------------------------------------- the model
class ConvRBM(nn.Module):
    """Convolutional RBM with periodic (toroidal) boundaries; see the module's docstring.

    Tensors (`state_dict`): weight [K, C, f, f], visible_bias [C], hidden_bias [K],
    log_variance [C] (log σ², used by Gaussian units), and the buffers data_mean [C],
    data_std [C] that standardise pixels (identity for binary units)."""

    kind = KIND

    def __init__(self, config: ConvRBMConfig):
        super().__init__()
        self.config = config
        K, C, f = config.n_filters, config.channels, config.filter_size
        self.weight = nn.Parameter(torch.randn(K, C, f, f) * (0.5 / math.sqrt(C * f * f)))
        self.visible_bias = nn.Parameter(torch.zeros(C))
        self.hidden_bias = nn.Parameter(torch.full((K,), -2.0))
        self.log_variance = nn.Parameter(torch.full((C,), math.log(config.variance)),
                                         requires_grad=config.learn_variance and not self.binary_visible)
        self.register_buffer("data_mean", torch.zeros(C))
        self.register_buffer("data_std", torch.ones(C))

    # ------------------------------------------------------------------------- properties
    @property
    def binary_visible(self) -> bool:
        return self.config.visible == "binary"

    @property
    def device(self) -> torch.device:
        return self.weight.device

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def n_filters(self) -> int:
        return self.config.n_filters

    @property
    def filter_size(self) -> int:
        return self.config.filter_size

    @property
    def pooling(self) -> int:
        return self.config.pooling

    @property
    def variance(self) -> Tensor:
        """σ² [C] (ones for binary units), never below the floor."""
        if self.binary_visible:
            return torch.ones_like(self.log_variance)
        return self.log_variance.clamp(min=math.log(self.config.var_floor)).exp()

    def _channel(self, t: Tensor) -> Tensor:
        return t.view(1, -1, 1, 1)

    # ---------------------------------------------------------------------- conditionals
    def hidden_logits(self, v: Tensor, periodic: bool = True) -> Tensor:
        """I = W ⋆ (v/σ²) + c: [B, C, H, W] -> [B, K, H, W] on the torus (`periodic`), or
        [B, K, H-f+1, W-f+1] for the fields wholly inside the image (`periodic=False`)."""
        x = v if self.binary_visible else v / self._channel(self.variance)
        if periodic:
            x = circular_pad(x, self.filter_size)
        logits = F.conv2d(x, self.weight, self.hidden_bias)
        if self.pooling > 1:  # channels-last maps: the pooling ops that follow run 10× faster on them on the CPU
            logits = logits.contiguous(memory_format=torch.channels_last)
        return logits

    def _crop_to_blocks(self, t: Tensor) -> Tensor:
        p = self.pooling
        H, W = t.shape[-2:]
        return t[..., : H - H % p, : W - W % p] if p > 1 else t

    def _up(self, t: Tensor) -> Tensor:
        """A value per block [B, K, H/p, W/p] spread over its units [B, K, H, W]."""
        return F.interpolate(t, scale_factor=self.pooling, mode="nearest")

    def _block_logsumexp(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(m, e, s) for logits z [B, K, H, W] (whole blocks): m = max(0, the block's largest
        logit) [B, K, H/p, W/p], e = exp(z - m) per unit, s = exp(-m) + Σ_block e, so that
        log(1 + Σ_block exp z) = m + log s. Pooled and spread back with pooling ops: no copy of
        the maps into a blocks-last layout."""
        p = self.pooling
        m = F.max_pool2d(z, p).clamp_min_(0.0)
        e = (z - self._up(m)).exp_()
        s = F.avg_pool2d(e, p).mul_(p * p).add_((-m).exp())
        return m, e, s

    def hidden_probs_from_logits(self, logits: Tensor, temperature: float = 1.0) -> Tensor:
        """p(h = 1 | v) from `hidden_logits` (with pooling: exp(I_i) / (1 + Σ_block exp I_j))."""
        if temperature != 1.0:
            logits = logits / temperature
        if self.pooling == 1:
            return torch.sigmoid(logits)
        _, e, s = self._block_logsumexp(self._crop_to_blocks(logits))
        return e.div_(self._up(s))

    def hidden_probs(self, v: Tensor, temperature: float = 1.0, periodic: bool = True) -> Tensor:
        return self.hidden_probs_from_logits(self.hidden_logits(v, periodic), temperature)

    def sample_hidden(self, v: Tensor, temperature: float = 1.0, generator=None) -> tuple[Tensor, Tensor]:
        """(p(h | v), a sample of h) on the torus. `generator`: a torch.Generator or (CPU, no
        pooling) a `NoiseSource`."""
        p = self.hidden_probs(v, temperature)
        return p, self.draw_hidden(p, generator)

    def draw_hidden(self, p: Tensor, generator=None) -> Tensor:
        """A sample of binary hidden units with probabilities p; with pooling, one unit on per
        block or none, drawn by the Gumbel-max trick: the unit (or "off") whose log probability
        plus independent Gumbel noise is largest."""
        if self.pooling == 1:
            if isinstance(generator, NoiseSource):
                return generator.bernoulli(p)
            return (torch.rand(p.shape, device=p.device, dtype=p.dtype, generator=generator) < p).to(p.dtype)
        g = generator.generator if isinstance(generator, NoiseSource) else generator
        k = self.pooling
        tiny = torch.finfo(p.dtype).tiny
        off = (1.0 - F.avg_pool2d(p, k) * (k * k)).clamp_min_(tiny).log_()  # log p(block off)

        def gumbel(shape) -> Tensor:
            u = torch.rand(shape, device=p.device, dtype=p.dtype, generator=g).clamp_min_(tiny)
            return u.log_().neg_().log_().neg_()

        score = p.clamp_min(tiny).log_().add_(gumbel(p.shape))
        best = F.max_pool2d(score, k)
        best = torch.where(best > off.add_(gumbel(off.shape)), best, torch.inf)  # "off" won: no unit equals inf
        return (score == self._up(best)).to(p.dtype)

    def visible_mean(self, h: Tensor, temperature: float = 1.0) -> Tensor:
        """E[v | h] on the torus: b + Σ_k W_k * h_k (sigmoid of it for binary units):
        [B, K, H, W] -> [B, C, H, W]. `temperature` scales a binary unit's logits."""
        before, after = _pads(self.filter_size)
        x = _fold(_fold(self._full_transpose(h), before, after, 2), before, after, 3) + self._channel(self.visible_bias)
        if self.binary_visible:
            return torch.sigmoid(x if temperature == 1.0 else x / temperature)
        return x

    def _full_transpose(self, h: Tensor) -> Tensor:
        """Σ_k W_k * h_k, the "full" convolution [B, K, H, W] -> [B, C, H+f-1, W+f-1]
        (`F.conv_transpose2d(h, weight)`), as one matrix product [C·f·f, K] × [K, H·W] and a
        col2im sum (`F.fold`): twice as fast on the CPU as conv_transpose2d, whose K input
        channels and C (1 or 3) outputs oneDNN handles poorly."""
        B, K, H, W = h.shape
        C, f = self.channels, self.filter_size
        cols = h.permute(0, 2, 3, 1).reshape(B, H * W, K).transpose(1, 2)  # [B, K, H·W]; a view of channels-last maps
        taps = torch.matmul(self.weight.reshape(K, C * f * f).t(), cols)  # [B, C·f·f, H·W]
        return F.fold(taps, (H + f - 1, W + f - 1), f)

    def sample_visible(self, h: Tensor, temperature: float = 1.0, generator=None) -> tuple[Tensor, Tensor]:
        """(E[v | h], a sample of v | h) at temperature T (a Gaussian unit's variance σ²T)."""
        mean = self.visible_mean(h, temperature)
        return mean, self.draw_visible(mean, temperature, generator)

    def draw_visible(self, mean: Tensor, temperature: float = 1.0, generator=None) -> Tensor:
        """A sample of v given its conditional mean E[v | h] (binary: probabilities)."""
        g = generator.generator if isinstance(generator, NoiseSource) else generator
        if self.binary_visible:
            if isinstance(generator, NoiseSource):
                return generator.bernoulli(mean)
            return (torch.rand(mean.shape, device=mean.device, dtype=mean.dtype, generator=g) < mean).to(mean.dtype)
        std = self._channel((self.variance * temperature).sqrt())
        noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=g)
        return noise.mul_(std).add_(mean)

    # -------------------------------------------------------------------------- energies
    def _visible_term(self, v: Tensor) -> Tensor:
        """Σ (v - b)² / 2σ² (Gaussian) or -Σ b·v (binary), per pixel: [B, C, H, W] -> [B, H, W]."""
        if self.binary_visible:
            return -(v * self._channel(self.visible_bias)).sum(1)
        return ((v - self._channel(self.visible_bias)) ** 2 / (2 * self._channel(self.variance))).sum(1)

    def _hidden_term(self, logits: Tensor) -> Tensor:
        """Σ_k softplus(I) per position, or Σ_k log(1 + Σ_block exp I) per block: [B, ...]."""
        if self.pooling == 1:
            return F.softplus(logits).sum(1)
        z = self._crop_to_blocks(logits)
        p = self.pooling
        m = F.max_pool2d(z.detach(), p).clamp_min(0.0)  # a constant shift: exact, and no gradient through the max
        s = F.avg_pool2d((z - self._up(m)).exp(), p) * (p * p) + (-m).exp()
        return (m + s.log()).sum(1)

    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) on the torus for paired batches [B, C, H, W], [B, K, H, W] -> [B]."""
        return self._visible_term(v).flatten(1).sum(1) - (h * self.hidden_logits(v)).flatten(1).sum(1)

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -log Σ_h exp(-E(v, h)) on the torus: [B, C, H, W] -> [B]."""
        return self._visible_term(v).flatten(1).sum(1) - self._hidden_term(self.hidden_logits(v)).flatten(1).sum(1)

    def free_energy_density(self, v: Tensor, periodic: bool = True, logits: Tensor | None = None) -> Tensor:
        """F per position [B]: the visible term's mean over pixels minus the hidden term's mean
        over hidden positions (on the torus, or only the fields wholly inside the image). For a
        torus this is F(v) / (H·W); the difference between data (interior) and chains (torus)
        is the per-position estimate of the log-likelihood gradient the trainer follows."""
        if logits is None:
            logits = self.hidden_logits(v, periodic)
        hidden = self._hidden_term(logits).flatten(1)
        per_position = hidden.sum(1) / (hidden.shape[1] * self.pooling**2)
        return self._visible_term(v).flatten(1).mean(1) - per_position

    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per unit of the mean-field reconstruction E[v | p(h | v)] (torus)."""
        return F.mse_loss(self.visible_mean(self.hidden_probs(v)), v)

    # ---------------------------------------------------------------- pixels in and out
    def set_standardisation(self, mean: Tensor, std: Tensor, min_std: float = 0.02) -> None:
        """Keep the training pixels' per-channel mean and std (Gaussian units standardise
        with them; binary units take pixels in [0, 1] as they are)."""
        if self.binary_visible:
            return
        with torch.no_grad():
            self.data_mean.copy_(mean.to(self.data_mean))
            self.data_std.copy_(std.to(self.data_std).clamp_min(min_std))

    def images_to_visible(self, images: Tensor) -> Tensor:
        """Pixels (uint8 [B, C, H, W], or float in [0, 1]) -> visible units on this device."""
        if images.dim() != 4 or images.shape[1] != self.channels:
            raise ConvRBMError(f"expected images [N, {self.channels}, H, W], got shape {tuple(images.shape)}")
        x = images.to(self.device)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if self.binary_visible:
            return x
        return (x - self._channel(self.data_mean)) / self._channel(self.data_std)

    def visible_to_images(self, v: Tensor) -> Tensor:
        """Visible units -> images in [0, 1] (float32, same device)."""
        if not self.binary_visible:
            v = v * self._channel(self.data_std) + self._channel(self.data_mean)
        return v.clamp(0.0, 1.0)

    def initial_visible(self, n: int, height: int, width: int, generator=None) -> Tensor:
        """Starting states of n chains: independent draws of each unit from its bias alone."""
        shape = (n, self.channels, height, width)
        b = self._channel(self.visible_bias.detach())
        if self.binary_visible:
            p = torch.sigmoid(b).expand(shape)
            return (torch.rand(shape, device=self.device, generator=generator) < p).float()
        std = self._channel(self.variance.detach().sqrt())
        return b + std * torch.randn(shape, device=self.device, generator=generator)

    @torch.no_grad()
    def filter_images(self) -> Tensor:
        """The filters as images [K, C, f, f] in [0, 1], each scaled to its own range (what a
        training page shows)."""
        w = self.weight.detach().float().cpu()
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
        return (w - lo) / (hi - lo).clamp_min(1e-12)

    # ---------------------------------------------------------------------- dreaming
    def make_sampler(self, n_chains: int = 1, k: int = 1, temperature: float = 1.0, seed: int | None = None,
                     size: tuple[int, int] | None = None, **_: Any) -> "ConvGibbsSampler":
        """Chains of this model's dreams (`models.factory.make_sampler` calls this), at `size`
        (H, W) or the config's image size."""
        return ConvGibbsSampler(self, n_chains=n_chains, k=k, temperature=temperature, seed=seed, size=size)

    @torch.no_grad()
    def unrolled_weight(self, height: int, width: int) -> Tensor:
        """The fully connected weight matrix [C·H·W, K·H·W] of this model on an H×W torus
        (visible index c·H·W + y·W + x, hidden k·H·W + y·W + x): hidden_logits(v) equals
        (v/σ²) @ it plus the biases. For tests and small sizes only (it grows as (H·W)²)."""
        K, C, f = self.n_filters, self.channels, self.filter_size
        before, _ = _pads(f)
        W = torch.zeros(C, height, width, K, height, width, dtype=self.weight.dtype)
        w = self.weight.detach().cpu()
        for y in range(height):
            for x in range(width):
                for i in range(f):
                    for j in range(f):
                        W[:, (y + i - before) % height, (x + j - before) % width, :, y, x] += w[:, :, i, j].t()
        return W.reshape(C * height * width, K * height * width)


# --------------------------------------------------------------------------- the sampler
def _side(name: str, value: Any, model: ConvRBM) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SIDE:
        raise ConvRBMError(f"the {name} must be a whole number of pixels from 1 to {MAX_SIDE} (got {value!r})")
    p = model.pooling
    if value % p:
        raise ConvRBMError(f"the {name} ({value} px) must be a multiple of the pooling size {p}")
    return value


def seed_to_size(images: Tensor, height: int, width: int) -> Tensor:
    """Images [N, C, h, w] tiled (when smaller) and centre-cropped to height × width."""
    h, w = images.shape[-2:]
    reps_y, reps_x = -(-height // h), -(-width // w)
    if reps_y > 1 or reps_x > 1:
        images = images.repeat(1, 1, reps_y, reps_x)
    h, w = images.shape[-2:]
    top, left = (h - height) // 2, (w - width) // 2
    return images[..., top : top + height, left : left + width]


def bf16_convolutions_available(device: torch.device) -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively here (a CPU with AVX-512 BF16 or AMX)."""
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # an older or newer torch without the query
        return False


class _FastSweeps:
    """Block-Gibbs sweeps of a free-running sampler on the CPU, for big canvases.

    The two convolutions run in bfloat16, channels-last (oneDNN: on this machine 5× faster for
    the hidden side, 2× for the visible side than float32); hidden units are 0 or 1, exact in
    bfloat16, and a logit rounded to 8 bits of mantissa moves a probability by at most 0.2 %.
    The hidden maps (n × K × H × W: 268 M units for 2048² and K = 32) live in buffers kept
    between sweeps, the hidden draws written straight into a padded buffer whose borders are
    copied from the opposite edges (the torus) before the visible convolution, so no big tensor
    is allocated, padded or converted per sweep. Only the generic path trains (its weights
    change every step; this one caches them converted)."""

    def __init__(self, model: ConvRBM):
        self.model = model
        self._key = None
        self._buffers: dict[str, Tensor] = {}

    def _weights(self) -> tuple[Tensor, Tensor]:
        m = self.model
        key = (m.weight._version, m.weight.data_ptr())
        if self._key != key:
            w = m.weight.detach()
            self._w = w.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            flipped = w.flip(-1, -2).transpose(0, 1)  # the visible side: a correlation with the flipped filters
            self._wt = flipped.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            self._key = key
        return self._w, self._wt

    def _buffer(self, name: str, shape: tuple[int, ...], dtype) -> Tensor:
        b = self._buffers.get(name)
        if b is None or tuple(b.shape) != shape or b.dtype != dtype:
            b = torch.zeros(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
            self._buffers[name] = b
        return b

    def sweep(self, v: Tensor, t: float, noise: NoiseSource, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """One sweep from visible states v [n, C, H, W]: (hidden draw (a bfloat16 view), E[v | h], v)."""
        m = self.model
        w, wt = self._weights()
        n, C, H, W = v.shape
        K, f = m.n_filters, m.filter_size
        before, after = _pads(f)
        # the temperature divides the logits: scale the (small) visible input and the bias instead
        scale = m._channel(1.0 / (m.variance.detach() * t)) if not m.binary_visible else 1.0 / t
        x = circular_pad(v * scale, f).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        logits = F.conv2d(x, w, (m.hidden_bias.detach() / t).to(torch.bfloat16))  # [n, K, H, W] channels-last
        # Uniform noise as models.noise.NoiseSource draws it (16-bit integers r from its fast
        # stream), in channels-last order: the integers are independent, so laying them out
        # [n, H, W, K] changes nothing but the memory order.
        u = self._buffer("u", (n, K, H, W), torch.float32)
        count = n * K * H * W
        bits = noise._bits
        r = torch.from_numpy(bits.random_raw((count + 3) >> 2).view(np.int16)[:count]).view(n, H, W, K).permute(0, 3, 1, 2)
        u.copy_(r)
        on = self._buffer("on", (n, K, H, W), torch.bool)
        k = m.pooling
        if k == 1:  # on when r < p·2¹⁶ - 2¹⁵ (NoiseSource.bernoulli)
            z = self._buffer("z", (n, K, H, W), torch.float32)
            torch.lt(u, z.copy_(logits).sigmoid_().mul_(65536.0).sub_(32768.0), out=on)
        else:  # Gumbel-max per block (ConvRBM.draw_hidden), u = (r + 2¹⁵ + ½) / 2¹⁶ in (0, 1)
            score = self._buffer("z", (n, K, H, W), torch.float32).copy_(logits)  # (adding bfloat16 to float32 in one op is 3× slower)
            score.add_(u.add_(32768.5).mul_(1.0 / 65536).log_().neg_().log_().neg_())
            best = F.max_pool2d(score, k)  # [n, K, H/k, W/k], channels-last as the maps
            h_, w_ = H // k, W // k
            g_off = torch.rand((n, h_, w_, K), generator=generator).permute(0, 3, 1, 2)  # in best's memory order
            g_off = g_off.clamp_min_(1e-38).log_().neg_().log_().neg_()
            best = torch.where(best > g_off, best, torch.inf)  # "off" won: no unit equals inf
            # each unit against its block's best, broadcast over views of the maps as blocks (no copies)
            torch.eq(score.unflatten(3, (w_, k)).unflatten(2, (h_, k)), best[:, :, :, None, :, None],
                     out=on.unflatten(3, (w_, k)).unflatten(2, (h_, k)))
        del logits
        # the draws go into the middle of the padded map; its borders are the opposite edges
        hp = self._buffer("hp", (n, K, H + f - 1, W + f - 1), torch.bfloat16)
        a, b = after, before
        h = hp[:, :, a : a + H, a : a + W]
        h.copy_(on)
        hp[:, :, :a, a : a + W] = hp[:, :, H : H + a, a : a + W]  # rows, then columns over all rows
        hp[:, :, a + H :, a : a + W] = hp[:, :, a : a + b, a : a + W]
        hp[:, :, :, :a] = hp[:, :, :, W : W + a]
        hp[:, :, :, a + W :] = hp[:, :, :, a : a + b]
        mean = F.conv2d(hp, wt).float().contiguous() + m._channel(m.visible_bias.detach())
        if m.binary_visible:
            mean = torch.sigmoid(mean if t == 1.0 else mean / t)
        return h, mean, m.draw_visible(mean, t, generator)


class ConvGibbsSampler(Clamping):
    """n persistent block-Gibbs chains of a `ConvRBM` on an H×W torus (`size`).

    State (model's device): visible [n, C, H, W] (the last sample, standardised units), mean
    [n, C, H, W] (E[v | h] of the last half-step), hidden [n, K, H, W] (the last hidden draw).
    `clamp_mask` (bool) and `clamp_values` have the visible state's shape; masks and values
    may be given flat ([V] or [n, V], V = C·H·W, as the dream brush hands them) or shaped."""

    def __init__(self, model: ConvRBM, n_chains: int = 1, k: int = 1, temperature: float = 1.0, seed: int | None = None,
                 size: tuple[int, int] | None = None, generator: torch.Generator | None = None):
        if type(n_chains) is not int or n_chains < 1:
            raise ConvRBMError(f"n_chains must be a whole number of at least 1 (got {n_chains!r})")
        self.model = model
        self.k = int(k)
        self.temperature = float(temperature)
        self.generator = generator or make_generator(model.device, seed)
        self.noise = NoiseSource(self.generator)
        # The weights sit still between calls (a viewer's dreams): on a CPU with bfloat16
        # convolutions the sweeps run in bfloat16 (`_FastSweeps`; `fast = False` turns that off).
        # A trainer's chains, whose weights change every step, set `free_running` False.
        self.free_running = True
        self.fast = True
        self._fast_sweeps: _FastSweeps | None = None
        self.clamp_mask: Tensor | None = None
        self.clamp_values: Tensor | None = None
        self.steps_taken = 0
        self.height, self.width = self._checked_size(*(size or model.config.image_shape[1:]), n=n_chains)
        self.reset(n_chains)

    # ------------------------------------------------------------------------------ state
    @property
    def n_chains(self) -> int:
        return self.visible.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.model.channels, self.height, self.width

    def _checked_size(self, height: int, width: int, n: int = 1) -> tuple[int, int]:
        """(height, width) when n chains of that size can be run, else ConvRBMError."""
        m = self.model
        h, w = _side("height", height, m), _side("width", width, m)
        need = n * h * w * (20 * m.n_filters + 24 * m.channels)  # bytes: the hidden maps' buffers, the images'
        if need > MAX_SAMPLER_BYTES:
            raise ConvRBMError(f"{n} chain(s) of {w}×{h} px with {m.n_filters} filters would take {need / 2**30:.0f} GiB "
                               f"(at most {MAX_SAMPLER_BYTES / 2**30:.0f}): fewer chains or a smaller size")
        return h, w

    def _as_visible(self, start: Tensor, n: int) -> Tensor:
        """Seed images (uint8 [N, C, h, w] or float in [0, 1]) as n chains' visible states."""
        m = self.model
        if not isinstance(start, Tensor) or start.dim() != 4 or start.shape[1] != m.channels or start.shape[0] < 1:
            raise ConvRBMError(f"a seed must be images [N, {m.channels}, H, W] (got "
                               f"{tuple(start.shape) if isinstance(start, Tensor) else type(start).__name__})")
        if start.dtype != torch.uint8 and not bool(torch.isfinite(start).all()):
            raise ConvRBMError("the seed images hold values that are not finite numbers")
        if start.shape[0] != n:
            start = start[torch.arange(n) % start.shape[0]]
        return m.images_to_visible(seed_to_size(start, self.height, self.width)).contiguous()

    @torch.no_grad()
    def reset(self, n_chains: int | None = None, start: Tensor | None = None, size: tuple[int, int] | None = None,
              visible: Tensor | None = None) -> "ConvGibbsSampler":
        """Restart the chains: from `start`, seed images (uint8 [N, C, h, w] or float in [0, 1]:
        tiled or centre-cropped to the size; the first n of them, repeated when fewer), from
        `visible` (states [n, C, H, W] in the model's units), or from noise (draws of the
        visible biases). `size` (H, W) changes the torus; a change of size or of the number of
        chains drops the clamp."""
        n = n_chains if n_chains is not None else (self.n_chains if hasattr(self, "visible") else 1)
        if type(n) is not int or n < 1:
            raise ConvRBMError(f"n_chains must be a whole number of at least 1 (got {n!r})")
        self.height, self.width = self._checked_size(*(size or (self.height, self.width)), n=n)
        m = self.model
        if visible is not None:
            v = visible.to(m.device, torch.float32).reshape(-1, m.channels, self.height, self.width).clone()
        elif start is not None:
            v = self._as_visible(start, n)
        else:
            v = m.initial_visible(n, self.height, self.width, generator=self.generator)
        self.visible = v
        self.mean = v.clone()
        self.hidden = torch.zeros(v.shape[0], m.n_filters, self.height, self.width, device=v.device)
        if self.clamp_mask is not None and self.clamp_mask.shape != v.shape:
            self.unclamp()
        self._apply_clamp()
        self.steps_taken = 0
        return self

    # ----------------------------------------------------------------------------- clamping
    def _shaped(self, t: Tensor, dtype) -> Tensor:
        t = t.to(self.model.device, dtype)
        shape = self.visible.shape
        per_chain = shape[1] * shape[2] * shape[3]
        if t.numel() % per_chain or t.numel() // per_chain not in (1, shape[0]):
            raise ConvRBMError(f"a clamp of {t.numel():,} values does not fit {shape[0]} chain(s) of "
                               f"{shape[1]}×{shape[2]}×{shape[3]} units")
        return t.reshape(-1, *shape[1:]).expand(shape).clone()

    @torch.no_grad()
    def clamp(self, mask: Tensor, values: Tensor | None = None) -> None:
        """Fix the visible units where `mask` is True (per chain or for all; flat or shaped) to
        `values` (the chains' current states when None; the model's units). The rest resample."""
        self.clamp_mask = self._shaped(mask, torch.bool)
        self.clamp_values = self._shaped(self.visible if values is None else values, torch.float32)
        self._apply_clamp()

    # ------------------------------------------------------------------------------ moving
    @torch.no_grad()
    def step(self, k: int | None = None) -> "ConvGibbsSampler":
        """Advance every chain k block-Gibbs sweeps (v -> h -> v) at `temperature`, keeping
        clamped units fixed."""
        k = self.k if k is None else int(k)
        for _ in range(k):
            self._sweep(self.temperature)
        return self

    __call__ = step

    def _fast(self) -> _FastSweeps | None:
        """The bfloat16 sweeps (`_FastSweeps`) when they apply: free-running chains on a CPU that
        has bfloat16 convolutions, a torus at least as large as the filter."""
        m = self.model
        if not (self.free_running and self.fast and min(self.height, self.width) >= m.filter_size
                and bf16_convolutions_available(self.visible.device)):
            return None
        if self._fast_sweeps is None:
            self._fast_sweeps = _FastSweeps(m)
        return self._fast_sweeps

    def _sweep(self, t: float) -> None:
        m = self.model
        fast = self._fast()
        if fast is not None:
            self.hidden, self.mean, self.visible = fast.sweep(self.visible, t, self.noise, self.generator)
        else:
            g = self.noise if (self.visible.device.type == "cpu" and m.pooling == 1) else self.generator
            _, self.hidden = m.sample_hidden(self.visible, t, g)
            self.mean, self.visible = m.sample_visible(self.hidden, t, self.generator)
        self._apply_clamp()
        self.steps_taken += 1

    @torch.no_grad()
    def anneal(self, steps: int, start: float = 2.0, end: float | None = None) -> "ConvGibbsSampler":
        """`steps` sweeps with the temperature falling geometrically from `start` to `end`
        (default: `temperature`), which lets the chains cross between arrangements early on."""
        end = self.temperature if end is None else float(end)
        steps = int(steps)
        for i in range(steps):
            frac = i / max(1, steps - 1)
            self._sweep(start * (end / start) ** frac)
        return self

    # ------------------------------------------------------------------------------ reading
    def states(self, kind: Literal["probs", "samples"] = "probs") -> Tensor:
        """The chains' visible units [n, C, H, W]: E[v | h] ("probs") or the sampled states."""
        return self.mean if kind == "probs" else self.visible

    @torch.no_grad()
    def images(self, kind: Literal["probs", "samples"] = "probs") -> Tensor:
        """The chains as images [n, C, H, W] in [0, 1] on the CPU."""
        return self.model.visible_to_images(self.states(kind)).detach().cpu()

    # ------------------------------------------------------------------------ persistence
    def state_tensors(self) -> dict[str, Tensor]:
        out = {"visible": self.visible, "mean": self.mean, "hidden": self.hidden.float().contiguous(), "rng": self.generator.get_state(),
               "noise": self.noise.state_tensor()}
        if self.clamp_mask is not None:
            out["clamp_mask"] = self.clamp_mask.to(torch.uint8)
            out["clamp_values"] = self.clamp_values
        return out

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        """Chains from `state_tensors` (shapes checked: ConvRBMError when they do not fit)."""
        m, dev = self.model, self.model.device
        v = state["visible"]
        if v.dim() != 4 or v.shape[1] != m.channels or v.shape[0] < 1:
            raise ConvRBMError(f"saved chains of shape {list(v.shape)} do not fit a model of {m.channels} channel(s)")
        n, _, h, w = v.shape
        self.height, self.width = self._checked_size(int(h), int(w), n=int(n))
        want = {"visible": (n, m.channels, h, w), "mean": (n, m.channels, h, w), "hidden": (n, m.n_filters, h, w),
                "clamp_mask": (n, m.channels, h, w), "clamp_values": (n, m.channels, h, w)}
        for name, shape in want.items():
            if name in state and tuple(state[name].shape) != shape:
                raise ConvRBMError(f"the saved chains' {name.replace('_', ' ')} has shape {list(state[name].shape)}, "
                                   f"not {list(shape)}")
        self.visible = v.to(dev, torch.float32, copy=True)
        self.mean = state["mean"].to(dev, torch.float32, copy=True)
        self.hidden = state["hidden"].to(dev, torch.float32, copy=True)
        if "rng" in state:
            self.generator.set_state(state["rng"].to(torch.uint8).cpu())
        if "noise" in state and state["noise"].numel():
            self.noise.load_state_tensor(state["noise"])
        else:
            self.noise.reseed()
        if "clamp_mask" in state:
            self.clamp_mask = state["clamp_mask"].to(dev, torch.bool)
            self.clamp_values = state["clamp_values"].to(dev, torch.float32, copy=True)
        else:
            self.unclamp()


DEFAULT_SWEEPS = 40  # sweeps of `synthesize` (see bench/texture.py)
DEFAULT_ANNEAL = 2.0  # `synthesize` anneals from this temperature over its first half


@torch.no_grad()
def synthesize(model: ConvRBM, height: int, width: int, *, n: int = 1, steps: int = DEFAULT_SWEEPS, seed: int | None = None,
               start: Tensor | None = None, temperature: float = 1.0, anneal_from: float | None = None,
               mask: Tensor | None = None, values: Tensor | None = None, show: Literal["probs", "samples"] = "probs") -> Tensor:
    """n seamless textures of height × width px as images [n, C, H, W] in [0, 1] on the CPU.

    `steps` sweeps from noise (or from the seed images `start`), the first half annealed from
    `anneal_from` down to `temperature`. None: from `DEFAULT_ANNEAL` when starting from noise
    (a hot start lets the texture's structure form everywhere at once: from noise at T = 1 a
    brick model's chains kept a flat grey for 40 sweeps, patch MMD² 0.12; annealed from T = 2,
    0.009), not at all from a seed (it would melt it); a number ≤ `temperature`: no annealing.
    `mask` / `values` (images [n, C, H, W] in [0, 1], or uint8) clamp pixels as the dream brush
    does (inpainting). E[v | h] is shown ("probs"), or the sampled pixels ("samples")."""
    model.eval()
    s = ConvGibbsSampler(model, n_chains=n, temperature=temperature, seed=seed, size=(height, width))
    if start is not None:
        s.reset(n, start=start)
    if mask is not None:
        vals = None
        if values is not None:
            vals = model.images_to_visible(seed_to_size(values if values.dim() == 4 else values[None], height, width))
        s.clamp(mask, vals)
    steps = int(steps)
    if anneal_from is None:
        anneal_from = DEFAULT_ANNEAL if start is None else temperature
    if anneal_from > temperature:
        s.anneal(steps // 2, start=float(anneal_from))
        steps -= steps // 2
    s.step(steps)
    return s.images(show)


def seam_ratio(images: Tensor) -> float:
    """How visible the wrap-around seam of tiled images is: the mean absolute difference
    between the last and first column (and row), over the same between neighbouring interior
    columns (and rows). About 1 for a seamless tile; well above 1 when tiling shows a seam."""
    x = images.float()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    sx = (x[..., :, 0] - x[..., :, -1]).abs().mean()
    sy = (x[..., 0, :] - x[..., -1, :]).abs().mean()
    return float((sx + sy) / (dx + dy).clamp_min(1e-12))


# ----------------------------------------------------------------------------- training
@dataclass
class ConvRBMTrainConfig(TrainConfig):
    """PCD on random crops. An epoch is `steps_per_epoch` steps of `batch_size` crops."""

    epochs: int = 12
    steps_per_epoch: int = 100
    batch_size: int = 8  # crops per step
    crop: int = 40  # side of the training crops (px; the images' smaller side when they are smaller)
    learning_rate: float = 1e-3
    lr_schedule: str = "linear"
    lr_final_fraction: float = 0.1
    weight_decay: float = 1e-4  # on the filters only
    grad_clip: float | None = 10.0
    momentum: float = 0.5  # Adam's first-moment decay
    k: int = 5  # Gibbs sweeps per update
    persistent: bool = True  # PCD (True) or CD-k from the crops (False)
    n_chains: int = 8
    chain_size: int = 0  # side of the chains' torus (0: the crop's, rounded up to the pooling)
    sparsity_target: float = 0.05  # the hidden units' mean activation Lee et al.'s regulariser aims at
    sparsity_cost: float = 1.0  # its weight (0: off)
    restart_every: int = 20  # PCD: every this many steps one chain (in turn) restarts from noise (0: never)
    average: float = 0.99  # the model keeps this moving average of the trained parameters (0: the last ones)
    frame_every: int = 10


class ConvRBMTrainer(Trainer):
    """PCD-k / CD-k for a `ConvRBM` on random crops of `data` (uint8 [N, C, H, W], or float in
    [0, 1]; one image is enough). `trainer.sampler` holds the persistent chains, whose means
    are the training page's dreams."""

    config: ConvRBMTrainConfig

    def __init__(self, model: ConvRBM, data: Tensor, config: ConvRBMTrainConfig | None = None, device=None):
        config = config or ConvRBMTrainConfig()
        if not isinstance(data, Tensor) or data.dim() != 4 or data.shape[0] < 1:
            raise ConvRBMError("the training images must be a non-empty stack [N, C, H, W]")
        if data.shape[1] != model.channels:
            raise ConvRBMError(f"the training images have {data.shape[1]} channel(s), the model {model.channels}")
        if data.dtype != torch.uint8 and not data.is_floating_point():
            raise ConvRBMError(f"the training images must be uint8 or floating point (got {data.dtype})")
        if data.is_floating_point() and not bool(torch.isfinite(data).all()):
            raise ConvRBMError("the training images hold values that are not finite numbers (NaN or infinity)")
        f, p = model.filter_size, model.pooling
        crop = min(int(config.crop), int(data.shape[2]), int(data.shape[3]))
        if crop < f + p - 1:
            raise ConvRBMError(f"training crops of {crop} px are too small for {f} px filters"
                               + (f" pooled {p}×{p}" if p > 1 else "") + ": larger images or smaller filters")
        for name in ("batch_size", "steps_per_epoch", "n_chains", "k"):
            v = getattr(config, name)
            if type(v) is not int or v < 1:
                raise ConvRBMError(f"{name} must be a whole number of at least 1 (got {v!r})")
        if not 0 < config.sparsity_target < 1 or config.sparsity_cost < 0:
            raise ConvRBMError("sparsity_target must be between 0 and 1 and sparsity_cost at least 0")
        super().__init__(model, data, config, device)
        self.model: ConvRBM
        self.crop = crop
        if config.persistent:  # a torus of chain_size (the crop's by default), a whole number of blocks
            side = max(int(config.chain_size) or crop, f)
            side += (-side) % p
        else:  # CD: chains started at the crops, cut to whole blocks
            side = crop - crop % p
        self.sampler = ConvGibbsSampler(model, n_chains=config.n_chains if config.persistent else config.batch_size,
                                        k=config.k, seed=self.seed, size=(side, side))
        self.sampler.free_running = False
        self._chains = (self.sampler.n_chains, side)
        self._last_recon = float("nan")
        if not 0 <= config.average < 1:
            raise ConvRBMError(f"average must be from 0 up to (not including) 1 (got {config.average!r})")
        # The parameters' moving average (biased, as Adam's moments: divided by 1 - decay^count
        # when used) and, while the model holds the average, the last trained ("raw") values.
        self._avg = {n: torch.zeros_like(p) for n, p in self._averaged()}
        self._avg_count = 0
        self._raw: dict[str, Tensor] | None = None

    # ----------------------------------------------------------------------- averaging
    def _averaged(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def run(self):
        """`Trainer.run`, with the parameters' moving average handed over at both ends: while
        the generator runs, the model holds the trained ("raw") parameters, which PCD needs; the
        rest of the time (paused, stopped, done, saved) it holds their moving average
        (`average`), which it samples from. PCD's parameters never settle: the chains and the
        weights chase each other, and from one hundred steps to the next the model's samples
        swing between a fine texture and a washed-out or over-contrasted one (gravel, patch
        MMD² 0.007 to 0.35 at successive checks); the average of the last hundred or so steps
        (Polyak averaging) held 0.006-0.012 over the same run."""
        self._use_raw()
        try:
            yield from super().run()
        finally:
            self._use_average()

    @torch.no_grad()
    def _use_raw(self) -> None:
        if self._raw is not None:
            for n, p in self._averaged():
                p.copy_(self._raw[n])
            self._raw = None

    @torch.no_grad()
    def _use_average(self) -> None:
        if self._raw is not None or not self.config.average or not self._avg_count:
            return
        correction = 1.0 - self.config.average**self._avg_count
        average = {n: a / correction for n, a in self._avg.items()}
        if not all(bool(torch.isfinite(a).all()) for a in average.values()):
            return  # (never: only finite parameters are averaged)
        self._raw = {n: p.detach().clone() for n, p in self._averaged()}
        for n, p in self._averaged():
            p.copy_(average[n])
        if not self.model.binary_visible:
            self.model.log_variance.clamp_(min=math.log(self.model.config.var_floor))

    @torch.no_grad()
    def _update_average(self) -> None:
        decay = self.config.average
        if not decay:
            return
        params = self._averaged()
        if not all(bool(torch.isfinite(p).all()) for _, p in params):
            return  # a diverged step is rolled back, never averaged
        for n, p in params:
            self._avg[n].mul_(decay).add_(p, alpha=1.0 - decay)
        self._avg_count += 1

    # ----------------------------------------------------------------------- sizes
    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def batches_per_epoch(self) -> int:
        return self.config.steps_per_epoch

    def batch_indices(self, step: int) -> Tensor:
        """Which images the step's crops come from: drawn with replacement, fixed by (seed,
        step) so a resumed run takes the crops an uninterrupted one takes."""
        g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}:images:{step}".encode()))
        return torch.randint(0, self.n_samples, (self.batch_size,), generator=g)

    def _crops(self, images: Tensor, step: int) -> Tensor:
        """One random crop of `crop` px from each image (places fixed by (seed, step))."""
        g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}:crops:{step}".encode()))
        H, W, c = images.shape[2], images.shape[3], self.crop
        ys = torch.randint(0, H - c + 1, (images.shape[0],), generator=g).tolist()
        xs = torch.randint(0, W - c + 1, (images.shape[0],), generator=g).tolist()
        return torch.stack([img[:, y : y + c, x : x + c] for img, y, x in zip(images, ys, xs)])

    # --------------------------------------------------------------------- optimiser
    def make_optimizer(self) -> torch.optim.Optimizer:
        m = self.model
        params = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in params if n == "weight"], "weight_decay": self.config.weight_decay},
            {"params": [p for n, p in params if n != "weight"], "weight_decay": 0.0},
        ]
        return torch.optim.Adam(groups, lr=self.config.learning_rate, betas=(self.config.momentum, 0.999))

    # ----------------------------------------------------------------------- the steps
    @torch.no_grad()
    def prepare(self) -> None:
        """Standardise: the training pixels' per-channel mean and std (Gaussian units)."""
        m = self.model
        n, C = 0, m.channels
        s = torch.zeros(C, dtype=torch.float64)
        s2 = torch.zeros(C, dtype=torch.float64)
        for i in range(self.n_samples):
            x = self.data[i].to("cpu", torch.float64).reshape(C, -1)
            if self.data.dtype == torch.uint8:
                x = x / 255.0
            s += x.sum(1)
            s2 += (x * x).sum(1)
            n += x.shape[1]
        mean = s / n
        std = (s2 / n - mean * mean).clamp_min(0).sqrt()
        m.set_standardisation(mean.float(), std.float())
        m.visible_bias.zero_()
        self.sampler.reset()

    def train_step(self, batch: Tensor) -> dict[str, float]:
        m, cfg = self.model, self.config
        v0 = m.images_to_visible(self._crops(batch, self.step))
        with torch.no_grad():
            if cfg.persistent:
                if cfg.restart_every and self.step % cfg.restart_every == cfg.restart_every - 1:
                    self._restart_chain((self.step // cfg.restart_every) % self.sampler.n_chains)
                self.sampler.step(cfg.k)
                vk = self.sampler.visible
            else:  # CD-k: chains started at the crops (on the crop's torus)
                side = self._chains[1]
                self.sampler.reset(v0.shape[0], visible=v0[..., :side, :side])
                self.sampler.step(cfg.k)
                vk = self.sampler.visible
        logits0 = m.hidden_logits(v0, periodic=False)
        loss = m.free_energy_density(v0, periodic=False, logits=logits0).mean() - m.free_energy_density(vk).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            q = m.hidden_probs_from_logits(logits0.detach()).mean((0, 2, 3))  # mean activation per filter
            if cfg.sparsity_cost:
                m.hidden_bias.grad.add_(q - cfg.sparsity_target, alpha=cfg.sparsity_cost)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            m.log_variance.clamp_(min=math.log(m.config.var_floor))
            self._update_average()
            if self.step % 10 == 0 or not math.isfinite(self._last_recon):
                self._last_recon = m.reconstruction_error(v0).item()
        return {"recon_error": self._last_recon, "free_energy_gap": loss.item(), "activation": q.mean().item(),
                "lr": self.optimizer.param_groups[0]["lr"]}

    def _restart_chain(self, i: int) -> None:
        """Chain i starts again from noise. Persistent chains alone settle in the modes the
        model has learned; a texture is then drawn from noise, and a mode that only chains
        started there reach (a washed-out, nearly flat image when a sparsity target holds the
        hidden units down) is never corrected. Chains restarted in turn, each living
        n_chains × restart_every steps, show the model what its sampler meets from noise."""
        s = self.sampler
        v = self.model.initial_visible(1, s.height, s.width, generator=s.generator)
        s.visible[i : i + 1] = v
        s.mean[i : i + 1] = v
        s.hidden[i : i + 1] = 0

    @torch.no_grad()
    def epoch_metrics(self) -> dict[str, float]:
        """On 16 fixed crops: reconstruction error, free energy per position, mean activation,
        and σ (the mean over channels, in standardised units)."""
        m = self.model
        g = torch.Generator().manual_seed(0)
        idx = torch.randint(0, self.n_samples, (16,), generator=g)
        v = m.images_to_visible(self._crops(self.data.index_select(0, idx.to(self.data.device)), -1))
        logits = m.hidden_logits(v, periodic=False)
        return {"recon_error": m.reconstruction_error(v).item(),
                "free_energy": m.free_energy_density(v, periodic=False, logits=logits).mean().item(),
                "activation": m.hidden_probs_from_logits(logits).mean().item(),
                "sigma": m.variance.sqrt().mean().item()}

    def frame(self) -> Tensor | None:
        """The persistent chains' E[v | h] as images (CD: the last negative states)."""
        return self.sampler.images("probs")

    def on_rollback(self) -> None:
        s = self.sampler
        if not (torch.isfinite(s.visible).all() and torch.isfinite(s.mean).all()):
            s.reset()

    # ------------------------------------------------------------------------- state
    def extra_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The chains, the moving average (biased, with its count) and, while the model holds
        the average, the raw parameters training resumes from."""
        t = {f"sampler.{k}": v for k, v in self.sampler.state_tensors().items()}
        t.update({f"average.{n}": a for n, a in self._avg.items()})
        t["average_count"] = torch.tensor(self._avg_count, dtype=torch.int64)
        if self._raw is not None:
            t.update({f"raw.{n}": r for n, r in self._raw.items()})
        return t, {}

    def load_extra_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        s = {k[len("sampler."):]: v for k, v in tensors.items() if k.startswith("sampler.")}
        if s:
            if "visible" not in s or "mean" not in s or "hidden" not in s:
                raise ConvRBMError("the saved chains are incomplete (visible, mean and hidden states are needed)")
            self.sampler.load_state_tensors(s)
        params = dict(self._averaged())
        for prefix, into in (("average.", "_avg"), ("raw.", "_raw")):
            saved = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not saved:
                continue
            if set(saved) != set(params):
                raise ConvRBMError(f"its saved {prefix[:-1]} parameters are {', '.join(sorted(saved))}, this model trains "
                                   f"{', '.join(sorted(params))}")
            for n, t in saved.items():
                if tuple(t.shape) != tuple(params[n].shape) or not t.is_floating_point() or not bool(torch.isfinite(t).all()):
                    raise ConvRBMError(f"its saved {prefix[:-1]} of {n} has shape {list(t.shape)} or values this model cannot take")
            setattr(self, into, {n: t.to(self.device, torch.float32, copy=True) for n, t in saved.items()})
        if "average_count" in tensors:
            count = tensors["average_count"]
            if count.numel() != 1 or count.is_floating_point() or int(count) < 0:
                raise ConvRBMError("its saved average count is not a whole number of steps")
            self._avg_count = int(count)

    def check_state(self) -> None:
        """The loaded chains are this trainer's: n chains on its torus, finite values."""
        n, side = self._chains
        s, m = self.sampler, self.model
        want = {"visible": (n, m.channels, side, side), "mean": (n, m.channels, side, side),
                "hidden": (n, m.n_filters, side, side)}
        for name, shape in want.items():
            t = getattr(s, name)
            if tuple(t.shape) != shape:
                raise ConvRBMError(f"its chains' {name} has shape {list(t.shape)}, this training needs {list(shape)}")
            if not bool(torch.isfinite(t).all()):
                raise ConvRBMError(f"its chains' {name} holds NaN or infinite values")


# -------------------------------------------------------------------- the kind's glue
def build_texture(kind: Any, options: Any, data: Tensor, device: Any) -> ConvRBMTrainer:
    """The builder of the "texture" kind's `models.kinds.ModelKind` record: a fresh
    `ConvRBM` and its trainer from `models.factory.Options`. `options.hidden` is the number of
    filters; `options.extra` keys go to the model's config or the training config (unknown keys
    are refused); `options.epochs`, `batch_size`, `learning_rate`, `seed`, `frame_every` as
    for every kind. `options.n_chains` is a pixel RBM's setting (100 there) and is not used:
    "n_chains" in `options.extra` sets the texture chains."""
    c, h, w = (int(s) for s in options.image_shape)
    model_fields = {f.name for f in dataclasses.fields(ConvRBMConfig)} - {"channels", "image_shape"}
    train_fields = {f.name for f in dataclasses.fields(ConvRBMTrainConfig)}
    extra = dict(getattr(options, "extra", {}) or {})
    unknown = sorted(set(extra) - model_fields - train_fields)
    if unknown:
        raise ConvRBMError(f"unknown texture option(s): {', '.join(unknown)} (known: {', '.join(sorted(model_fields | train_fields))})")
    defaults = dict(getattr(kind, "defaults", {}) or {})
    model_cfg = {k: v for k, v in defaults.items() if k in model_fields}
    model_cfg.update({k: v for k, v in extra.items() if k in model_fields})
    if options.hidden:
        model_cfg["n_filters"] = int(options.hidden)
    model = ConvRBM(ConvRBMConfig(channels=c, image_shape=(c, h, w), **model_cfg)).to(device)
    train = {k: v for k, v in defaults.items() if k in train_fields}
    for name in ("epochs", "batch_size", "learning_rate", "seed", "frame_every"):
        value = getattr(options, name, None)
        if value is not None and (name != "learning_rate" or value):
            train[name] = value
    train.update({k: v for k, v in extra.items() if k in train_fields})
    return ConvRBMTrainer(model, data, ConvRBMTrainConfig.from_dict(train), device)


def rebuild(config: dict[str, Any]) -> ConvRBM:
    """The untrained model a checkpoint's "config" describes."""
    return ConvRBM(ConvRBMConfig.from_dict(config))


def save(path, model: ConvRBM, *, trainer: ConvRBMTrainer | None = None, preprocess: dict[str, Any] | None = None,
         extra: dict[str, Any] | None = None):
    """Save through `models.checkpoint.save_checkpoint` (atomic, validated; needs the kind
    registered in `models.kinds.KINDS`)."""
    from .checkpoint import save_checkpoint

    return save_checkpoint(path, model, trainer=trainer, preprocess=preprocess, extra=extra)


def load(path, device: torch.device | str = "cpu") -> ConvRBM:
    """A texture model from a checkpoint (`models.checkpoint.load_checkpoint`); a checkpoint of
    another kind is refused with `models.checkpoint.CheckpointError`."""
    from .checkpoint import CheckpointError, load_checkpoint

    ckpt = load_checkpoint(path, device)
    if ckpt.kind != KIND:
        raise CheckpointError(f"Cannot open {ckpt.path.name}: it holds a {ckpt.kind} model, not a texture model")
    return ckpt.model
