"""Convolutional variational autoencoder (Kingma & Welling 2014, "Auto-encoding variational
Bayes"; Rezende, Mohamed & Wierstra 2014), with a β-weighted KL term (Higgins et al. 2017,
"β-VAE").

The encoder (the same convolutional layout as `ConvAutoencoder`) gives a diagonal Gaussian
q(z | x) = N(μ(x), diag σ²(x)) as (μ, log σ²); the prior is p(z) = N(0, I); the decoder gives
the mean of p(x | z). Per image, in nats:

    KL(q(z|x) ‖ p(z)) = ½ Σ_j (μ_j² + σ_j² - 1 - log σ_j²)
    ELBO(x) = E_q[log p(x | z)] - KL  ≤ log p(x)          (one reparameterised sample of z)
    training loss = -E_q[log p(x | z)] + β·KL

The likelihood p(x | z) is chosen in the config:
* "bernoulli" (default): log p(x | z) = Σ_i x_i log p_i + (1 - x_i) log(1 - p_i), the
  cross-entropy on intensities in [0, 1]. For grey values this is not a normalised density,
  so ELBOs compare models on the same images, not to other papers' figures on binarised data.
* "gaussian": a fixed per-pixel σ (`sigma`, intensities in [0, 1]):
  log p(x | z) = Σ_i -(x_i - p_i)² / 2σ² - log σ - ½ log 2π.

Sampling: z ~ N(0, T·I) at temperature T (the prior raised to 1/T, as for the RBM), decoded to
the mean image. With `prior_components` K > 0 the dreams come instead from a K-component
Gaussian mixture fitted to the training images' latent means when training ends (ex-post
density estimation, Ghosh et al. 2020; `models.mixture`): the standard prior leaves holes
where the encoder put no image, and draws there decode to blends that look like no image of
the set (70 faces: MMD² 0.025 → 0.021; 40 colour photo crops at 64 px: 0.076 → 0.04). The
ELBO and the training loss keep N(0, I). `interpolate` walks between the means of two images, linearly or spherically
(slerp; White 2016, "Sampling generative networks"). `LatentWalkSampler` gives the VAE the
surface of a `GibbsSampler`, so the Dreams viewer can show it: its "chains" are latent points
doing a slow random walk that leaves the prior invariant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .autoencoder import ConvGeometry, ConvImageModel, ReconstructionTrainer, eval_forward, images_to_input
from .device import make_generator
from .mixture import component_log_probs, fit_mixture, sample_mixture
from .training import TrainConfig

LIKELIHOODS = ("bernoulli", "gaussian")
MAX_PRIOR_COMPONENTS = 100
PRIOR_SHRINKAGE = 8.0  # pseudo-images pulling each mixture component's covariance toward all codes'
LOGVAR_RANGE = (-30.0, 20.0)  # log σ² is clamped here (σ from 3e-7 to 2e4) so exp never overflows


@dataclass
class VAEConfig(ConvGeometry):
    """Architecture and likelihood of a convolutional VAE for square `image_size` px images."""

    beta: float = 1.0  # weight of the KL term in the training loss (β-VAE); the ELBO always uses 1
    likelihood: str = "bernoulli"  # "bernoulli" | "gaussian"
    sigma: float = 0.1  # std of the Gaussian likelihood (intensities in [0, 1])
    prior_components: int = 0  # K of the ex-post mixture the dreams are drawn from (0: N(0, I))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.beta, self.sigma = float(self.beta), float(self.sigma)
        self.prior_components = int(self.prior_components)
        if not 0 <= self.prior_components <= MAX_PRIOR_COMPONENTS:
            raise ValueError(f"prior_components must be 0 to {MAX_PRIOR_COMPONENTS} (got {self.prior_components})")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.likelihood!r} ({', '.join(LIKELIHOODS)})")
        if not self.beta >= 0 or not math.isfinite(self.beta):
            raise ValueError(f"beta must be a finite number ≥ 0 (got {self.beta})")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive (got {self.sigma})")


def default_latent(n_images: int, per_dimension: int = 8, least: int = 8, most: int = 32) -> int:
    """The latent size for a set of `n_images`: about `per_dimension` images per latent
    dimension, `least` to `most`.

    The dreams come from a mixture fitted to the training codes (`ConvVAE.fit_prior`), and a
    few dozen codes cannot fill a 32-dimensional space: draws land between them, where the
    decoder (which reconstructs its training images almost exactly: MSE 0.0002 per pixel on 70
    faces) was never trained, and decode to blends. Measured on 70 faces (bench/quality.py's
    faces-32, 300 samples, 3 draws; PCA + GMM 0.0187, floor 0.0172): reconstructions of the
    training images score MMD² 0.0179 at every latent size, while the dreams score 0.0268 at
    latent 32, 0.0214 at 16, 0.0204 at 8 and 0.0208 at 4 (split seed 1: 0.0262 at 32, 0.0214
    at 8, PCA + GMM 0.0221)."""
    return int(min(most, max(least, int(n_images) // per_dimension)))


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag e^logvar) ‖ N(0, I)) per sample: [B, L] × 2 -> [B], in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def slerp(a: Tensor, b: Tensor, t: Tensor, eps: float = 1e-7) -> Tensor:
    """Spherical interpolation between rows of a and b [B, L] at fractions t [T] -> [T, B, L].
    The angle is taken between the directions; the norm is interpolated by the same weights,
    so t = 0 and t = 1 give a and b. Nearly parallel vectors fall back to linear."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    cos = ((a / na.clamp_min(eps)) * (b / nb.clamp_min(eps))).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)  # [B, 1]
    so = torch.sin(omega)
    t = t.view(-1, 1, 1).to(a)
    wa = torch.where(so > 1e-4, torch.sin((1 - t) * omega) / so.clamp_min(1e-12), 1 - t)
    wb = torch.where(so > 1e-4, torch.sin(t * omega) / so.clamp_min(1e-12), t)
    return wa * a + wb * b


def lerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Linear interpolation between rows of a and b [B, L] at fractions t [T] -> [T, B, L]."""
    t = t.view(-1, 1, 1).to(a)
    return (1 - t) * a + t * b


class ConvVAE(ConvImageModel):
    """Convolutional VAE: `encode` -> (μ, log σ²), `reparameterize`, `decode` -> mean image."""

    kind = "vae"
    name = "a VAE"

    def __init__(self, config: VAEConfig):
        super().__init__(config, 2 * config.latent)  # the encoder gives μ and log σ²
        K, L = config.prior_components, config.latent
        if K:  # K copies of N(0, I) until `fit_prior` fits them to the training codes
            self.register_buffer("prior_weights", torch.full((K,), 1.0 / K))  # [K]
            self.register_buffer("prior_means", torch.zeros(K, L))  # [K, L]
            self.register_buffer("prior_scale_tril", torch.eye(L).repeat(K, 1, 1))  # [K, L, L]


    # ---------------------------------------------------------------------- the model
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images [B, C, H, W] (uint8 or float in [0, 1]) -> (μ, log σ²), each [B, L]."""
        h = self.encoder(self.images_to_input(x))  # [B, 2L]
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def reparameterize(self, mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z = μ + σ ε with ε ~ N(0, I): [B, L]."""
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode_logits(self, z: Tensor) -> Tensor:
        """Latents [B, L] -> logits of the mean image [B, C, H, W]."""
        return self.decoder(z.to(self.device))

    def decode(self, z: Tensor) -> Tensor:
        """Latents [B, L] -> mean images [B, C, H, W] in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: Tensor) -> Tensor:
        """Mean reconstruction (decoded μ) [B, C, H, W] in [0, 1]."""
        return self.decode(self.encode(x)[0])

    reconstruct = forward

    @staticmethod
    def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
        """½ Σ_j (μ_j² + σ_j² - 1 - log σ_j²) per sample: [B]."""
        return kl_divergence(mu, logvar)

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """log p(x | z) per image [B] (nats) from the decoder's logits [B, C, H, W]."""
        if self.config.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        s = self.config.sigma
        sq = (x - torch.sigmoid(logits)).pow(2).flatten(1).sum(1)
        return -sq / (2 * s * s) - x[0].numel() * (math.log(s) + 0.5 * math.log(2 * math.pi))

    def terms(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The pieces of the ELBO for a batch, per image [B]: "log_px" (E_q log p(x|z), one
        sample), "kl", and "logits" [B, C, H, W] of the sampled reconstruction."""
        x = self.images_to_input(x)
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator)
        logits = self.decode_logits(z)
        return {"log_px": self.log_likelihood(x, logits), "kl": kl_divergence(mu, logvar), "logits": logits,
                "mu": mu, "logvar": logvar}

    def elbo(self, x: Tensor, n_samples: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """ELBO per image [B] in nats (β = 1), averaged over `n_samples` draws of z."""
        x = self.images_to_input(x)
        mu, logvar = self.encode(x)
        log_px = torch.zeros(x.shape[0], device=x.device)
        for _ in range(n_samples):
            log_px = log_px + self.log_likelihood(x, self.decode_logits(self.reparameterize(mu, logvar, generator)))
        return log_px / n_samples - kl_divergence(mu, logvar)

    # ---------------------------------------------------------------------- sampling
    @property
    def has_mixture_prior(self) -> bool:
        return self.config.prior_components > 0

    def sample_latent(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """n dreams' latents [n, L] on this device: from the ex-post mixture, each component's
        spread scaled by √T, when the model has one; z ~ N(0, T·I) otherwise."""
        if self.has_mixture_prior:
            return sample_mixture(self.prior_weights, self.prior_means, self.prior_scale_tril, n,
                                  math.sqrt(temperature), generator)
        z = torch.randn(n, self.latent, device=self.device, generator=generator)
        return z * math.sqrt(temperature) if temperature != 1.0 else z

    @torch.no_grad()
    def fit_prior(self, images: Tensor, batch_size: int = 256, seed: int = 0) -> None:
        """Fit the ex-post mixture (`prior_components` > 0) to the latent means of `images`
        (uint8 [N, C, H, W], the training set), in eval mode; a no-op without one."""
        if not self.has_mixture_prior or len(images) < 2:
            return
        was = self.training
        self.eval()
        try:
            mu = torch.cat([self.encode(images[i : i + batch_size].to(self.device))[0] for i in range(0, len(images), batch_size)])
        finally:
            self.train(was)
        fitted = fit_mixture(mu, self.config.prior_components, shrinkage=PRIOR_SHRINKAGE, seed=seed)
        k = len(fitted.weights)  # fewer than K when there are fewer images: the rest get weight 0
        self.prior_weights.zero_()[:k] = fitted.weights
        self.prior_means.zero_()[:k] = fitted.means
        self.prior_scale_tril[:k] = fitted.scale_tril

    def prior_component(self, z: Tensor) -> Tensor:
        """The mixture component most responsible for each latent [n, L] -> [n] (long)."""
        return component_log_probs(z, self.prior_weights, self.prior_means, self.prior_scale_tril).argmax(1)

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """n fresh dreams: decoded prior draws at temperature T, [n, C, H, W] in [0, 1] on this device."""
        return self.decode(self.sample_latent(n, temperature, generator))

    @torch.no_grad()
    def interpolate(self, x_a: Tensor, x_b: Tensor, steps: int = 8, method: Literal["linear", "slerp"] = "linear") -> Tensor:
        """Decoded walk between the latent means of x_a and x_b, `steps` images including both
        ends (which are the reconstructions of x_a and x_b).

        x_a, x_b: one image [C, H, W] -> [steps, C, H, W]; or batches [B, C, H, W] -> [B, steps, C, H, W].
        """
        if steps < 2:
            raise ValueError("an interpolation needs at least 2 steps (its two ends)")
        single = x_a.dim() == 3
        a = self.encode(x_a.unsqueeze(0) if single else x_a)[0]  # [B, L]
        b = self.encode(x_b.unsqueeze(0) if single else x_b)[0]
        z = self.interpolate_latents(a, b, steps, method)  # [steps, B, L]
        imgs = self.decode(z.flatten(0, 1)).view(steps, a.shape[0], *self.image_shape)
        return imgs[:, 0] if single else imgs.transpose(0, 1)

    @staticmethod
    def interpolate_latents(a: Tensor, b: Tensor, steps: int, method: str = "linear") -> Tensor:
        """Points between latents a and b [B, L]: [steps, B, L], the ends exactly a and b."""
        t = torch.linspace(0.0, 1.0, steps)
        if method == "linear":
            z = lerp(a, b, t)
        elif method == "slerp":
            z = slerp(a, b, t)
        else:
            raise ValueError(f"unknown interpolation {method!r} (linear, slerp)")
        z[0], z[-1] = a, b
        return z

    def make_sampler(self, n_chains: int = 64, k: int = 1, temperature: float = 1.0, seed: int | None = None, **kw) -> "LatentWalkSampler":
        """Dreams with the surface of a `GibbsSampler` (see `LatentWalkSampler`)."""
        return LatentWalkSampler(self, n_chains=n_chains, k=k, temperature=temperature, seed=seed, **kw)

    # -------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, images: Tensor, batch_size: int = 256, seed: int = 0) -> dict[str, float]:
        """Averages per image over `images` (uint8 [N, C, H, W]), seeded so they repeat:
        "elbo" (nats, one sample of z per image, β = 1, the config's likelihood), "kl" (nats),
        "log_px" (nats, E_q log p(x|z)), "recon_error" (MSE per pixel of the mean reconstruction)."""
        g = make_generator(self.device, seed)
        sums = {"elbo": 0.0, "kl": 0.0, "log_px": 0.0}
        sq, count = 0.0, 0
        for i in range(0, images.shape[0], batch_size):
            x = self.images_to_input(images[i : i + batch_size])
            t = self.terms(x, g)
            sums["log_px"] += t["log_px"].sum().item()
            sums["kl"] += t["kl"].sum().item()
            sums["elbo"] += (t["log_px"] - t["kl"]).sum().item()
            sq += F.mse_loss(self.decode(t["mu"]), x, reduction="sum").item()
            count += x.numel()
        n = max(1, images.shape[0])
        out = {k: v / n for k, v in sums.items()}
        out["recon_error"] = sq / max(1, count)
        return out

    @torch.no_grad()
    def latent_usage(self, images: Tensor, max_images: int = 1000, batch_size: int = 256) -> Tensor:
        """Average KL per latent dimension over (up to `max_images` of) `images`: [L] nats on
        the CPU. Dimensions near 0 are unused (posterior = prior); sort descending to order the
        sliders of a latent explorer."""
        images = images[:max_images]
        total = torch.zeros(self.latent, dtype=torch.float64)
        for i in range(0, images.shape[0], batch_size):
            mu, logvar = self.encode(images[i : i + batch_size])
            total += (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(0).cpu().double()
        return (total / max(1, images.shape[0])).float()


class LatentWalkSampler:
    """The VAE's dreams with the surface of a `GibbsSampler`: n "chains", each a point z in
    latent space, decoded to images on demand.

    A step is an autoregressive Gaussian move that leaves the tempered prior N(0, T·I) invariant
    (Ornstein-Uhlenbeck in discrete time):

        z ← √(1 - ρ²) · z + ρ · √T · ε,   ε ~ N(0, I)

    so every frame is itself a fair draw from the prior (once the chain has mixed after a
    change of T), while consecutive frames morph slowly; ρ = `step_size` (1 gives independent
    fresh samples each step).

    With an ex-post mixture prior (`ConvVAE.fit_prior`) each chain sits in a component c and
    the same move runs on its whitened point u = L_c⁻¹ (z - μ_c) / √T; with probability ρ²/2 per
    step the chain moves to a component drawn by the mixture's weights, keeping u. Both moves
    leave the tempered mixture invariant.

    State, on the model's device: latent [n, L].
    """

    def __init__(self, model: ConvVAE, n_chains: int = 64, k: int = 1, temperature: float = 1.0,
                 seed: int | None = None, generator: torch.Generator | None = None, step_size: float = 0.2):
        if n_chains < 1:
            raise ValueError("n_chains must be at least 1")
        if not 0 < step_size <= 1:
            raise ValueError("step_size must be in (0, 1]")
        self.model = model
        self.k = int(k)
        self.temperature = float(temperature)
        self.step_size = float(step_size)
        self.generator = generator or make_generator(model.device, seed)
        self.steps_taken = 0
        self.reset(n_chains)

    @property
    def n_chains(self) -> int:
        return self.latent.shape[0]

    @torch.no_grad()
    def reset(self, n_chains: int | None = None, start: Tensor | None = None) -> "LatentWalkSampler":
        """Restart the chains: at the latent means of `start` (images [n, C, H, W], or latents
        [n, L]), or at fresh draws from N(0, T·I) when `start` is None."""
        n = n_chains if n_chains is not None else self.n_chains
        self.component = None  # (mixture prior) the chains' components, found from the latents at the next step
        if start is None:
            self.latent = self.model.sample_latent(n, self.temperature, self.generator)
        elif start.dim() == 2:
            if start.shape[1] != self.model.latent:
                raise ValueError(f"start has {start.shape[1]} latent units, the model {self.model.latent}")
            self.latent = start.to(self.model.device, torch.float32).clone()
        else:
            self.latent = self.model.encode(start)[0]
        self.steps_taken = 0
        return self

    @torch.no_grad()
    def step(self, k: int | None = None) -> "LatentWalkSampler":
        """Move every chain k steps of the prior-preserving random walk."""
        k = self.k if k is None else int(k)
        rho = self.step_size
        if self.model.has_mixture_prior:
            return self._step_mixture(k, rho)
        keep, scale = math.sqrt(1 - rho * rho), rho * math.sqrt(self.temperature)
        for _ in range(k):
            noise = torch.randn(self.latent.shape, device=self.latent.device, generator=self.generator)
            self.latent = keep * self.latent + scale * noise
        self.steps_taken += k
        return self

    def _step_mixture(self, k: int, rho: float) -> "LatentWalkSampler":
        m = self.model
        spread = math.sqrt(self.temperature)
        c = self.component if getattr(self, "component", None) is not None else m.prior_component(self.latent)
        diff = (self.latent - m.prior_means[c]).unsqueeze(-1)  # [n, L, 1]
        u = torch.linalg.solve_triangular(m.prior_scale_tril[c], diff, upper=False).squeeze(-1) / max(spread, 1e-6)
        keep = math.sqrt(1 - rho * rho)
        for _ in range(k):
            u = keep * u + rho * torch.randn(u.shape, device=u.device, generator=self.generator)
            jump = torch.rand(len(c), device=c.device, generator=self.generator) < rho * rho / 2
            if bool(jump.any()):
                fresh = torch.multinomial(m.prior_weights, len(c), replacement=True, generator=self.generator)
                c = torch.where(jump, fresh, c)
        self.component = c
        self.latent = m.prior_means[c] + spread * (m.prior_scale_tril[c] @ u.unsqueeze(-1)).squeeze(-1)
        self.steps_taken += k
        return self

    __call__ = step

    def states(self, kind: Literal["probs", "samples"] = "probs") -> Tensor:
        """The chains' latent points [n, L] (the same for both kinds)."""
        return self.latent

    @torch.no_grad()
    def images(self, kind: Literal["probs", "samples"] = "probs", batch_size: int = 256) -> Tensor:
        """The chains as images [n, C, H, W] in [0, 1] on the CPU: the decoder's mean ("probs"),
        or a draw from p(x | z) ("samples": Bernoulli pixels, or the mean plus Gaussian noise)."""
        out = []
        for i in range(0, self.n_chains, batch_size):
            mean = self.model.decode(self.latent[i : i + batch_size])
            if kind == "samples":
                if self.model.config.likelihood == "bernoulli":
                    mean = torch.bernoulli(mean, generator=self.generator)
                else:
                    noise = torch.randn(mean.shape, device=mean.device, generator=self.generator)
                    mean = (mean + self.model.config.sigma * noise).clamp(0, 1)
            out.append(mean.cpu())
        return torch.cat(out)

    def state_tensors(self) -> dict[str, Tensor]:
        return {"latent": self.latent, "rng": self.generator.get_state()}

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        self.latent = state["latent"].to(self.model.device, torch.float32)
        self.component = None
        if "rng" in state:
            self.generator.set_state(state["rng"].to(torch.uint8).cpu())


# ---------------------------------------------------------------------------- training
@dataclass
class VAETrainConfig(TrainConfig):
    """Adam on the β-weighted negative ELBO per image."""

    epochs: int = 30
    learning_rate: float = 1e-3
    beta: float | None = None  # None: the model's config.beta
    kl_warmup_epochs: int = 0  # ramp β linearly from 0 over this many epochs (0: no ramp)
    frame_every: int = 10
    n_frames: int = 16
    frame_kind: str = "samples"  # "samples" (decoded fixed prior draws) | "reconstructions"


class VAETrainer(ReconstructionTrainer):
    """Trains a `ConvVAE`. Step metrics (per image, nats): loss (-log p(x|z) + β·KL), elbo,
    kl, recon_error (MSE per pixel of the sampled reconstruction), beta, lr; epoch metrics:
    their averages over the epoch. Frames: the decoded images of a fixed set of prior draws
    (the model's dreams as it learns), or reconstructions of a fixed batch."""

    config: VAETrainConfig

    def __init__(self, model: ConvVAE, data: Tensor, config: VAETrainConfig | None = None, device=None):
        config = config or VAETrainConfig()
        if config.frame_kind not in ("samples", "reconstructions"):
            raise ValueError(f"unknown frame kind {config.frame_kind!r} (samples, reconstructions)")
        super().__init__(model, data, config, device)
        self.model: ConvVAE
        g = make_generator(self.device, self.seed + 1)
        self.frame_latent = torch.randn(self.config.n_frames, model.latent, device=self.device, generator=g)

    def current_beta(self) -> float:
        beta = self.model.config.beta if self.config.beta is None else float(self.config.beta)
        ramp = self.config.kl_warmup_epochs * self.batches_per_epoch
        return beta * min(1.0, (self.step + 1) / ramp) if ramp else beta

    def train_step(self, batch: Tensor) -> dict[str, float]:
        m = self.model
        x = m.images_to_input(batch)
        t = m.terms(x, self.generator)
        beta = self.current_beta()
        loss = (beta * t["kl"] - t["log_px"]).mean()
        self._optimise(loss)
        with torch.no_grad():
            mse = F.mse_loss(torch.sigmoid(t["logits"]), x).item()
            kl = t["kl"].mean().item()
            elbo = t["log_px"].mean().item() - kl
        return self._accumulate({"loss": loss.item(), "elbo": elbo, "kl": kl, "recon_error": mse, "beta": beta})

    def epoch_metrics(self) -> dict[str, float]:
        """The epoch's averages; after the last epoch, the ex-post prior is fitted too (one
        pass of the encoder over the training images)."""
        metrics = super().epoch_metrics()
        if self.step >= self.total_steps:
            self.model.fit_prior(self.data, seed=self.seed)
        return metrics

    @torch.no_grad()
    def frame(self) -> Tensor | None:
        if self.config.frame_kind == "reconstructions":
            return eval_forward(self.model, self.frame_batch()).clamp(0, 1).cpu()
        return self.model.decode(self.frame_latent).cpu()
