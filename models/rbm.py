"""Restricted Boltzmann Machines: binary (Bernoulli) and Gaussian-Bernoulli.

A Restricted Boltzmann Machine ("Harmonium", Smolensky 1986) is a bipartite energy-based model
over visible units v and binary hidden units h. Both models here keep the weights as
`weight` [visible, hidden], `visible_bias` [visible], `hidden_bias` [hidden].

* `BernoulliRBM`: binary visible units. Grayscale intensities in [0, 1] are accepted as
  probabilities (the positive phase uses them as they are).
      E(v, h) = -v·b - h·c - vᵀ W h
      F(v)    = -v·b - Σ_j softplus(c_j + (vᵀW)_j)
* `GaussianBernoulliRBM`: real-valued visible units with a learned per-pixel variance σ²,
  in the parameterisation of Cho, Ilin & Raiko (2011), "Improved learning of Gaussian-Bernoulli
  restricted Boltzmann machines":
      E(v, h) = Σ_i (v_i - b_i)² / 2σ_i² - h·c - (v/σ²)ᵀ W h
      F(v)    = Σ_i (v_i - b_i)² / 2σ_i² - Σ_j softplus(c_j + ((v/σ²)ᵀW)_j)
  Training is kept stable as Liao et al. (2022), "Gaussian-Bernoulli RBMs without tears",
  advise: the data are standardised per pixel (mean and std are kept as buffers, so the model
  maps pixels in and out itself), log σ² is learned with a floor on σ², and gradients are
  clipped by the trainer.

A temperature T divides the energy: p_T(v, h) ∝ exp(-E(v, h) / T).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import sigmoid_linear
from .noise import NoiseSource


def bernoulli(p: Tensor, generator=None) -> Tensor:
    """Binary samples with probabilities p, as p's dtype. `generator`: a torch.Generator (3×
    faster than torch.bernoulli on the CPU) or a `NoiseSource` (another 3× on the CPU)."""
    if isinstance(generator, NoiseSource):
        return generator.bernoulli(p)
    return (torch.rand(p.shape, device=p.device, dtype=p.dtype, generator=generator) < p).to(p.dtype)


@dataclass
class RBMConfig:
    """Architecture of an RBM. `image_shape` (C, H, W) says how visible units form an image."""

    n_visible: int
    n_hidden: int = 100
    image_shape: tuple[int, int, int] | None = None
    var_floor: float = 1e-2  # Gaussian-Bernoulli only: σ² never goes below this (standardised units)

    def __post_init__(self) -> None:
        if self.image_shape is not None:
            self.image_shape = tuple(int(s) for s in self.image_shape)  # type: ignore[assignment]
            if math.prod(self.image_shape) != self.n_visible:
                raise ValueError(
                    f"image_shape {self.image_shape} has {math.prod(self.image_shape)} pixels, "
                    f"but the RBM has {self.n_visible} visible units"
                )
        if self.n_visible < 1 or self.n_hidden < 1:
            raise ValueError("an RBM needs at least one visible and one hidden unit")
        if not (isinstance(self.var_floor, (int, float)) and math.isfinite(self.var_floor) and self.var_floor > 0):
            raise ValueError(f"var_floor must be a finite number above 0 (got {self.var_floor!r})")


class RBMBase(nn.Module):
    """What both RBMs share: conditionals, Gibbs half-steps, energies, images in and out. The
    full Gibbs step lives in one place, `models.sampling.GibbsSampler.step`."""

    kind = "rbm-base"
    binary_visible = True

    def __init__(self, config: RBMConfig):
        super().__init__()
        self.config = config
        v, h = config.n_visible, config.n_hidden
        self.weight = nn.Parameter(torch.randn(v, h) * 0.01)  # [V, H]
        self.visible_bias = nn.Parameter(torch.zeros(v))  # [V]
        self.hidden_bias = nn.Parameter(torch.zeros(h))  # [H]

    # ----------------------------------------------------------------- sizes and devices
    @property
    def n_visible(self) -> int:
        return self.config.n_visible

    @property
    def n_hidden(self) -> int:
        return self.config.n_hidden

    @property
    def device(self) -> torch.device:
        return self.weight.device

    # ------------------------------------------------------------ conditionals (to override)
    def hidden_logits(self, v: Tensor) -> Tensor:
        """Pre-activation of the hidden units: [B, V] -> [B, H]."""
        raise NotImplementedError

    def visible_mean(self, h: Tensor, temperature: float = 1.0) -> Tensor:
        """E[v | h] at temperature T: [B, H] -> [B, V]."""
        raise NotImplementedError

    def sample_visible(self, h: Tensor, temperature: float = 1.0, generator=None) -> tuple[Tensor, Tensor]:
        """(E[v | h], a sample of v | h), both [B, V]."""
        raise NotImplementedError

    # ------------------------------------------------------------------------ shared maths
    def hidden_probs(self, v: Tensor, temperature: float = 1.0) -> Tensor:
        """p(h_j = 1 | v) at temperature T: [B, V] -> [B, H]."""
        logits = self.hidden_logits(v)
        return torch.sigmoid(logits if temperature == 1.0 else logits / temperature)

    def sample_hidden(self, v: Tensor, temperature: float = 1.0, generator=None) -> tuple[Tensor, Tensor]:
        """(p(h | v), a binary sample of h | v), both [B, H]."""
        p = self.hidden_probs(v, temperature)
        return p, bernoulli(p, generator)

    def transform(self, v: Tensor) -> Tensor:
        """Hidden feature probabilities (scikit-learn's name): [B, V] -> [B, H]."""
        return self.hidden_probs(v)

    def reconstruct(self, v: Tensor) -> Tensor:
        """Mean-field reconstruction E[v | p(h | v)]: [B, V] -> [B, V]."""
        return self.visible_mean(self.hidden_probs(v))

    def reconstruction_error(self, v: Tensor) -> Tensor:
        """Mean squared error per visible unit between v and its mean-field reconstruction."""
        return F.mse_loss(self.reconstruct(v), v)

    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) for paired batches [B, V], [B, H] -> [B]."""
        raise NotImplementedError

    def free_energy(self, v: Tensor) -> Tensor:
        """F(v) = -log Σ_h exp(-E(v, h)): [B, V] -> [B]."""
        raise NotImplementedError

    # ------------------------------------------------------------------- pixels in and out
    def images_to_visible(self, images: Tensor, out: Tensor | None = None) -> Tensor:
        """Pixels (uint8 [B, C, H, W] or float in [0, 1]) -> visible units [B, V] on this device
        (written into `out` [B, V] when given)."""
        x = images.to(self.device)
        x = x.reshape(x.shape[0], -1)
        if x.dtype == torch.uint8:
            return torch.div(x, 255.0, out=out)  # one pass: to float and scaled
        return x.float() if out is None else out.copy_(x)

    def visible_to_images(self, v: Tensor) -> Tensor:
        """Visible units [B, V] -> images [B, C, H, W] in [0, 1] (CPU-friendly float32)."""
        shape = self.config.image_shape or (1, 1, self.n_visible)
        return v.reshape(v.shape[0], *shape).clamp(0.0, 1.0)

    def initial_visible(self, n: int, generator=None) -> Tensor:
        """A starting state for n chains: independent draws from the visible biases alone."""
        raise NotImplementedError


class BernoulliRBM(RBMBase):
    """RBM with binary visible and hidden units (Hinton 2002; Hinton 2010, "A practical guide to
    training restricted Boltzmann machines")."""

    kind = "rbm"
    binary_visible = True

    def hidden_logits(self, v: Tensor) -> Tensor:
        return torch.addmm(self.hidden_bias, v, self.weight)  # [B, H]

    def visible_logits(self, h: Tensor) -> Tensor:
        return torch.addmm(self.visible_bias, h, self.weight.t())  # [B, V]

    def hidden_probs(self, v: Tensor, temperature: float = 1.0) -> Tensor:
        if temperature == 1.0:
            return sigmoid_linear(v, self.weight.t(), self.hidden_bias)  # one fused call on the CPU
        return super().hidden_probs(v, temperature)

    def visible_mean(self, h: Tensor, temperature: float = 1.0) -> Tensor:
        if temperature == 1.0:
            return sigmoid_linear(h, self.weight, self.visible_bias)
        return torch.sigmoid(self.visible_logits(h) / temperature)

    def sample_visible(self, h: Tensor, temperature: float = 1.0, generator=None) -> tuple[Tensor, Tensor]:
        p = self.visible_mean(h, temperature)
        return p, bernoulli(p, generator)

    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        return -(v @ self.visible_bias) - (h @ self.hidden_bias) - ((v @ self.weight) * h).sum(1)

    def free_energy(self, v: Tensor) -> Tensor:
        return -(v @ self.visible_bias) - F.softplus(self.hidden_logits(v)).sum(1)

    def init_visible_bias_from_data(self, mean: Tensor, eps: float = 1e-3) -> None:
        """b_i = log(p_i / (1 - p_i)) with p_i the data's base rate (Hinton 2010, §8.1)."""
        p = mean.to(self.visible_bias).clamp(eps, 1 - eps)
        with torch.no_grad():
            self.visible_bias.copy_(torch.log(p) - torch.log1p(-p))

    def initial_visible(self, n: int, generator=None) -> Tensor:
        p = torch.sigmoid(self.visible_bias.detach()).expand(n, -1)
        return bernoulli(p, generator)

    def pseudo_likelihood(self, v: Tensor, exact: bool = False, generator=None) -> Tensor:
        """Log pseudo-likelihood Σ_i log p(v_i | v_-i) per sample [B] (Besag 1975).

        Data are binarised at 0.5. `exact=False` flips one random unit per sample and scales by
        V (the stochastic estimate scikit-learn reports); `exact=True` sums over every unit.
        Uses p(v_i | v_-i) = σ(F(v with i flipped) - F(v)).
        """
        v = (v > 0.5).to(self.weight.dtype)
        pre = self.hidden_logits(v)  # [B, H]
        sign = 1.0 - 2.0 * v  # +1 where flipping 0 -> 1, -1 where 1 -> 0      [B, V]
        fe = -(v @ self.visible_bias) - F.softplus(pre).sum(1)  # F(v) [B], from the same logits
        if exact:
            # F(v_flip_i) for all i at once: [B, V, H] pre-activations.
            pre_flip = pre.unsqueeze(1) + sign.unsqueeze(2) * self.weight.unsqueeze(0)
            fe_flip = -(v @ self.visible_bias).unsqueeze(1) - sign * self.visible_bias
            fe_flip = fe_flip - F.softplus(pre_flip).sum(2)  # [B, V]
            return F.logsigmoid(fe_flip - fe.unsqueeze(1)).sum(1)
        idx = torch.randint(0, self.n_visible, (v.shape[0],), device=v.device, generator=generator)
        s = sign.gather(1, idx[:, None]).squeeze(1)  # [B]
        pre_flip = pre + s[:, None] * self.weight[idx]  # [B, H]
        fe_flip = -(v @ self.visible_bias) - s * self.visible_bias[idx] - F.softplus(pre_flip).sum(1)
        return self.n_visible * F.logsigmoid(fe_flip - fe)


class GaussianBernoulliRBM(RBMBase):
    """RBM with real-valued Gaussian visible units and binary hidden units, learned variances
    (Cho, Ilin & Raiko 2011; Liao, Kornblith, Ren, Fleet & Hinton 2022)."""

    kind = "grbm"
    binary_visible = False

    def __init__(self, config: RBMConfig):
        super().__init__(config)
        v = config.n_visible
        self.log_variance = nn.Parameter(torch.zeros(v))  # log σ², [V]
        # Per-pixel standardisation of the data (set from the training set by the trainer).
        self.register_buffer("data_mean", torch.zeros(v))  # [V], pixels in [0, 1]
        self.register_buffer("data_std", torch.ones(v))  # [V]

    @property
    def variance(self) -> Tensor:
        """σ² [V], never below the floor."""
        return self.log_variance.clamp(min=math.log(self.config.var_floor)).exp()

    def hidden_logits(self, v: Tensor) -> Tensor:
        return torch.addmm(self.hidden_bias, v / self.variance, self.weight)  # [B, H]

    def visible_mean(self, h: Tensor, temperature: float = 1.0) -> Tensor:
        return torch.addmm(self.visible_bias, h, self.weight.t())  # [B, V]

    def sample_visible(self, h: Tensor, temperature: float = 1.0, generator=None) -> tuple[Tensor, Tensor]:
        mean = self.visible_mean(h)
        std = (self.variance * temperature).sqrt()
        noise = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        return mean, mean + noise * std

    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        var = self.variance
        quad = ((v - self.visible_bias) ** 2 / (2 * var)).sum(1)
        return quad - h @ self.hidden_bias - (((v / var) @ self.weight) * h).sum(1)

    def free_energy(self, v: Tensor) -> Tensor:
        quad = ((v - self.visible_bias) ** 2 / (2 * self.variance)).sum(1)
        return quad - F.softplus(self.hidden_logits(v)).sum(1)

    def set_standardisation(self, mean: Tensor, std: Tensor, min_std: float = 0.05) -> None:
        """Keep the training set's per-pixel mean and std; pixels are standardised with them."""
        with torch.no_grad():
            self.data_mean.copy_(mean.to(self.data_mean))
            self.data_std.copy_(std.to(self.data_std).clamp_min(min_std))

    def images_to_visible(self, images: Tensor) -> Tensor:
        x = super().images_to_visible(images)
        return (x - self.data_mean) / self.data_std

    def visible_to_images(self, v: Tensor) -> Tensor:
        return super().visible_to_images(v * self.data_std + self.data_mean)

    def initial_visible(self, n: int, generator=None) -> Tensor:
        noise = torch.randn(n, self.n_visible, device=self.device, generator=generator)
        return self.visible_bias.detach() + noise * self.variance.detach().sqrt()

