"""The texture RBM's model: its config, the circular (torus) helpers and `ConvRBM`, with its
energies, conditionals and pixel conversions. See `models.conv_rbm` for the model and what was
taken from the papers."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..noise import NoiseSource

if TYPE_CHECKING:
    from .sampler import ConvGibbsSampler

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
        from .sampler import ConvGibbsSampler

        return ConvGibbsSampler(self, n_chains=n_chains, k=k, temperature=temperature, seed=seed, size=size)

    def synthesize(self, height: int, width: int, **options: Any) -> Tensor:
        """n seamless textures of height × width px (`models.conv_rbm.synthesize`, whose
        keywords `options` takes): what `models.factory.sample_images` draws for this kind."""
        from .sampler import synthesize

        return synthesize(self, height, width, **options)

    @torch.no_grad()
    def evaluate(self, images: Tensor) -> dict[str, float]:
        """Metrics of this model on images (uint8 [N, C, H, W], or float in [0, 1]; each on
        its own torus), as `models.factory.evaluate` reports them: the mean-field
        reconstruction error per unit and the free energy per position, over at most 64 images
        taken 8 at a time."""
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[0] < 1:
            raise ConvRBMError("there are no images to evaluate on (a stack [N, C, H, W] is needed)")
        recon, free, n = 0.0, 0.0, 0
        for i in range(0, min(64, images.shape[0]), 8):
            v = self.images_to_visible(images[i : i + 8])
            recon += self.reconstruction_error(v).item() * v.shape[0]
            free += self.free_energy_density(v).sum().item()
            n += v.shape[0]
        return {"recon_error": recon / n, "free_energy": free / n}

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
