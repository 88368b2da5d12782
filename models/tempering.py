"""Parallel tempering (replica exchange) for RBM chains that must mix: the Dreams viewer, the
samples that score a model, optionally PCD's negative phase.

Plain Gibbs chains over a trained RBM stop moving: each falls into one mode (one kind of digit)
and stays there for thousands of steps, because every step changes the state only a little and
the modes are separated by states of very low probability. Parallel tempering (Swendsen & Wang
1986; Geyer 1991; for RBMs Desjardins, Courville, Bengio, Vincent & Delalleau 2010, "Tempered
Markov chain Monte Carlo for training of restricted Boltzmann machines", and Salakhutdinov 2009)
runs, beside each chain, R - 1 replicas of it at flatter distributions, where the modes are
joined, and lets neighbouring replicas exchange their states: a state found at a flat level
climbs down to β = 1 whenever the exchanges accept it.

The ladder of distributions
    Replica r (0 ≤ r < R) of a chain samples, at the user's temperature T,

        p_r(v, h) ∝ exp(-(β_r E(v, h) + (1 - β_r) E_A(v)) / T),    1 = β_0 > β_1 > ... > β_{R-1} = β_min

    E is the RBM's energy (`models.rbm`) and E_A the energy of a *base* model without weights:
    the same path annealed importance sampling walks (`models.likelihood`), not the plain
    "hotter" p ∝ exp(-β E), whose top replicas are uniform noise (binary units) or Gaussians
    of infinite variance (Gaussian units). The base is

    * binary RBM:   E_A(v) = -a·v, independent pixels with P(v_i = 1) = σ(a_i / T);
    * Gaussian RBM: E_A(v) = Σ_i (v_i - a_i)² / 2σ_i², independent pixels around a;

    with a = the model's own visible biases b (`base=None`: only the weights and the hidden
    biases are tempered), or the base rate of the training data (`base_from_data`: logits of
    the pixel means for binary units, the pixel means for Gaussian ones). Both conditionals
    stay the RBM's, with per-row scales, so all replicas of all chains are one stacked batch
    [R·n, ·] and share every matrix product:

        p_r(h_j = 1 | v) = σ(β_r (c_j + (vW)_j) / T)                       (binary v; Gaussian v: v/σ²)
        binary:   p_r(v_i = 1 | h) = σ((β_r (b_i + (Wh)_i) + (1 - β_r) a_i) / T)
        Gaussian: v_i | h ~ N(β_r (b_i + (Wh)_i) + (1 - β_r) a_i, T σ_i²)

The exchanges
    Every sweep of all replicas starts with exchange proposals between neighbours r, r + 1,
    even pairs (0-1, 2-3, ...) and odd pairs (1-2, 3-4, ...) on alternate sweeps ("deterministic
    even-odd", Okabe et al. 2001; Syed et al. 2022 show it beats random pair choice). The
    exchange of x_r and x_s is a Metropolis move on the product of the replicas'
    distributions, accepted with probability

        min(1, p_r(x_s) p_s(x_r) / (p_r(x_r) p_s(x_s)))

    We exchange visible states with the hidden units summed out (the Rao-Blackwellised form;
    joint (v, h) states would do too). With the ladder above,

        log p*_r(v) = (β_r d(v) + a·v) / T + Σ_j softplus(β_r z_j(v) / T)     (binary; Gaussian:
                       -Σ_i (v_i - a_i)²/2σ_i² instead of a·v, a constant in β that cancels too)

    where z(v) = c + vW (Gaussian: c + (v/σ²)W) are the hidden pre-activations and d(v) the
    part of the energy that the base replaces: d(v) = (b - a)·v (Gaussian: ((b - a)/σ²)·v).
    The terms that do not depend on β cancel in the ratio, which is

        log α = Σ_j [softplus(β_r z_s / T) + softplus(β_s z_r / T) - softplus(β_r z_r / T) - softplus(β_s z_s / T)]
                + (β_r - β_s)(d(v_s) - d(v_r)) / T

    The second line is the textbook min(1, exp((β_r - β_s)(E_r - E_s))) for the part of the
    energy that is linear in β, E = -d (zero when a = b); the first is the exact sum over h of
    the rest. z(v) is what the
    sweep's hidden half-step needs anyway, so an exchange costs no extra matrix product: the
    rows of z are exchanged (z belongs to v), then h ~ p_r(h | v) and v ~ p_r(v | h) are drawn
    at each row's own β. Each exchange is a reversible move that leaves the product of the
    replicas' distributions invariant, and so do the Gibbs sweeps; the β_0 rows are therefore
    samples of the RBM at temperature T. The decisions are drawn on the chains' device from
    their noise stream (no host sync); acceptance counts are kept there too (`swap_rates`).

Clamping (the dream brush, inpainting) fixes the same units to the same values in every replica
of a chain; each replica then samples the conditional given them, and the exchanges are exact
for that conditional too (the clamped part of v is the same in both replicas).

Measured on the digits RBM of bench/rbm_quality.py (784 × 100, PCD-1; bench/mixing.py). Its
equilibrium, from two 30,000-sweep runs of 20 replicas on a GPU that agree with each other (one
started from noise, one from training images; MMD² 0.0007 between them), is about 45 % 2s, 21 %
9s and no 3s. MMD² of 500 chains to those reference samples after 1,000 sweeps (10,000):

    plain Gibbs from the visible biases' draws            0.105 (0.091)   stuck in 6s, 4s, 8s
    plain Gibbs from draws of the data's base rate        0.048 (0.035)
    tempered, 10 replicas 1 → 0.2, toward the base rate   0.019 (0.010)   the defaults
      ... β evenly spaced in log instead                  0.023 (0.018)
      ... 6 replicas 1 → 0.3 / 16 replicas 1 → 0.15       0.026 / 0.020
    tempered toward the model's visible biases            0.111 (0.115)   does not mix (20 replicas: 0.108)
    all chains at one training 6: plain / tempered        0.227 / 0.041

So the base matters more than the ladder: toward the visible biases (or toward estimates of the
model's own pixel means, which fared no better: 0.09 and worse) the intermediate distributions
hold only a few kinds of digit, and the exchanges, however often accepted, carry nothing new
down. Without the data's base rate at hand, `models.factory.make_sampler` therefore keeps plain
chains.

PCD's negative phase (`RBMTrainConfig.tempering`), same digits and recipe (batch 50, 100
chains, 250 epochs of PCD-1 in ~15 s of one core), each trained for the same CPU time, AIS test
log-likelihood (nats, 4 seeds) and MMD² to test of its tempered samples (1,000 sweeps):

    PCD                          -117.8  -115.1  -113.2  -116.7   mean -115.7   MMD² 0.035 0.086 0.023 0.078
    PCD + 10 replicas (~92 ep.)  -114.2  -115.8  -112.7  -114.8   mean -114.3   MMD² 0.029 0.029 0.020 0.028

A tempered update costs ~2.7× a plain one. The log-likelihood gain (1.4 ± 0.9 nats) is within
the seeds' spread, so plain PCD stays the default; the tempered runs' own equilibrium is closer
to the data on every seed (with as many updates as PCD, ~3× the time: -111.1 and -117.0 nats,
MMD² 0.012 and 0.025 on seeds 0 and 1).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import calibrate
from .kernels import linear as _linear, sigmoid_linear
from .noise import NoiseSource
from .rbm import BernoulliRBM, GaussianBernoulliRBM, RBMBase
from .sampling import GibbsSampler

DEFAULT_REPLICAS = 10  # measured above: 6 mix less per sweep, 16 little more per cost
DEFAULT_BETA_MIN = 0.2  # at β = 0.2 (base-rate path) the digits chains change class every ~13 sweeps


def ladder(replicas: int = DEFAULT_REPLICAS, beta_min: float = DEFAULT_BETA_MIN) -> Tensor:
    """Inverse temperatures 1 = β_0 > ... > β_{R-1} = beta_min, evenly spaced (float32 [R])."""
    if replicas < 1:
        raise ValueError("parallel tempering needs at least one replica")
    if not 0.0 <= beta_min < 1.0 and replicas > 1:
        raise ValueError(f"beta_min must lie in [0, 1), got {beta_min}")
    if replicas == 1:
        return torch.ones(1)
    return torch.linspace(1.0, float(beta_min), replicas)


@torch.no_grad()
def base_from_data(model: RBMBase, images: Tensor, batch: int = 1024) -> Tensor:
    """The base model of the tempering ladder from training images (uint8 [N, C, H, W] or float
    in [0, 1]): logits of the pixel means for a binary RBM (AIS's base-rate model), the mean of
    the model's (standardised) visible units for a Gaussian one. [V] on the model's device."""
    total, count = None, 0
    for i in range(0, images.shape[0], batch):
        v = model.images_to_visible(images[i : i + batch]).double()
        total = v.sum(0) if total is None else total + v.sum(0)
        count += v.shape[0]
    return base_from_mean(model, (total / max(1, count)).float())


def base_from_mean(model: RBMBase, mean: Tensor, eps: float = 1e-3) -> Tensor:
    """The base from the mean of visible states [V] (see `base_from_data`)."""
    mean = mean.to(model.device, torch.float32)
    if model.binary_visible:
        p = mean.clamp(eps, 1 - eps)
        return torch.log(p) - torch.log1p(-p)
    return mean


def base_from_checkpoint(model: RBMBase, path) -> Tensor | None:
    """The base rate of the data a checkpoint's model was trained on, from what its trainer
    saved: a tempered run's own base, a centred run's data mean, else the mean of the PCD chains
    (training matches their pixel means to the data's: on digits they agree to 0.02 per pixel
    and mix as well as the data's own base rate). None when the file holds none of them."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            for name in ("trainer.extra.sampler.base", "trainer.extra.visible_offset", "trainer.extra.sampler.visible"):
                if name not in names:
                    continue
                t = f.get_tensor(name).float()
                if name.endswith("base"):
                    return t.to(model.device) if t.numel() == model.n_visible else None
                if name.endswith("visible_offset"):
                    if not model.binary_visible or not bool(t.any()):  # zeros: a run without centering
                        continue
                else:
                    t = t.reshape(-1, model.n_visible).mean(0)
                if t.numel() == model.n_visible and bool(torch.isfinite(t).all()):
                    return base_from_mean(model, t)
    except Exception:  # not a checkpoint, unreadable, another layout: no base
        return None
    return None


class TemperedSampler(GibbsSampler):
    """n persistent chains over `model` (a `BernoulliRBM` or `GaussianBernoulliRBM`) mixed by
    parallel tempering: each chain has `replicas` copies on the ladder `betas` (default: R evenly
    spaced from 1 to `beta_min`), and neighbours exchange states after every sweep (see the
    module docstring for the ladder and the acceptance rule).

    The surface is `GibbsSampler`'s: `visible`, `mean`, `hidden` [n, ·] are the β = 1 chains (views
    into the stacked replicas, so writing into them writes the chains), `temperature` T scales
    the whole ladder, `clamp` fixes units in every replica, `state_tensors()` holds the replicas.
    `replica_visible` / `replica_mean` / `replica_hidden` [R·n, ·] are all of them, replica-major
    (rows r·n .. r·n + n - 1 are replica r). `swap_rates` [R - 1]: the fraction of accepted
    exchanges between replicas r and r + 1 since the last reset.

    `base`: the base model's visible vector a (see the module docstring); None: the model's own
    visible biases. One noise stream draws every replica (on the CPU, numpy's SFC64), so a seed
    fixes the chains whatever the number of cores.
    """

    def __init__(
        self,
        model,
        n_chains: int = 64,
        k: int = 1,
        temperature: float = 1.0,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        *,
        replicas: int = DEFAULT_REPLICAS,
        beta_min: float = DEFAULT_BETA_MIN,
        betas: Sequence[float] | Tensor | None = None,
        base: Tensor | None = None,
    ):
        if not isinstance(model, (BernoulliRBM, GaussianBernoulliRBM)):
            raise TypeError(f"parallel tempering needs a BernoulliRBM or GaussianBernoulliRBM, not {type(model).__name__}")
        b = torch.as_tensor(betas, dtype=torch.float32).flatten() if betas is not None else ladder(replicas, beta_min)
        if b.numel() < 1 or b[0] != 1.0 or (b.numel() > 1 and not bool((b[1:] < b[:-1]).all())) or b[-1] < 0:
            raise ValueError(f"betas must start at 1 and fall strictly, staying ≥ 0 (got {b.tolist()})")
        self.model = model
        self._betas = b.to(model.device)
        self._sweeps = 0  # exchange phase: even pairs on even sweeps, odd pairs on odd ones
        self.set_base(base)
        self._v = self._mean = self._h = None
        super().__init__(model, n_chains=n_chains, k=k, temperature=temperature, seed=seed, generator=generator)

    # ------------------------------------------------------------------------------ ladder
    @property
    def replicas(self) -> int:
        return self._betas.numel()

    @property
    def betas(self) -> Tensor:
        """The inverse temperatures [R] (before the user's temperature divides them)."""
        return self._betas

    @property
    def base(self) -> Tensor | None:
        return self._base

    def set_base(self, base: Tensor | None) -> None:
        """Use `base` (see `base_from_data`; None: the model's visible biases) as the top of the
        ladder from the next sweep on. The chains keep their states."""
        V = self.model.n_visible
        if base is not None:
            base = torch.as_tensor(base).to(self.model.device, torch.float32).flatten()
            if base.numel() != V:
                raise ValueError(f"the base has {base.numel()} units, the model {V}")
        self._base = base

    @property
    def swap_rates(self) -> Tensor:
        """Accepted / proposed exchanges between replicas r and r + 1 since the reset ([R - 1], CPU)."""
        return (self._accepted / self._proposed.clamp(min=1)).cpu()

    # ------------------------------------------------------------------------------ state
    @property
    def n_chains(self) -> int:
        return self._v.shape[0] // self.replicas

    @property
    def visible(self) -> Tensor:
        return self._v[: self.n_chains]

    @visible.setter
    def visible(self, value: Tensor) -> None:
        self._v = self._with_top(self._v, value)

    @property
    def mean(self) -> Tensor:
        return self._mean[: self.n_chains]

    @mean.setter
    def mean(self, value: Tensor) -> None:
        self._mean = self._with_top(self._mean, value)

    @property
    def hidden(self) -> Tensor:
        return self._h[: self.n_chains]

    @hidden.setter
    def hidden(self, value: Tensor) -> None:
        self._h = self._with_top(self._h, value)

    @property
    def replica_visible(self) -> Tensor:
        return self._v

    @property
    def replica_mean(self) -> Tensor:
        return self._mean

    @property
    def replica_hidden(self) -> Tensor:
        return self._h

    def _with_top(self, full: Tensor | None, top: Tensor) -> Tensor:
        """`full` [R·n, ·] with its β = 1 rows replaced by `top` [n, ·] (a new tensor); every
        replica starts from `top` when the number of chains changes."""
        top = top.to(self.model.device, torch.float32)
        n = top.shape[0]
        if full is None or full.shape[0] != self.replicas * n or full.shape[1:] != top.shape[1:]:
            return top.repeat(self.replicas, 1)
        return torch.cat([top, full[n:]])

    def groups(self) -> list[tuple[int, int, NoiseSource]]:
        """One stream for the whole stacked batch: the exchanges tie the rows together."""
        return [(0, self._v.shape[0] if self._v is not None else 0, self._noises[0])]

    @torch.no_grad()
    def reset(self, n_chains: int | None = None, start: Tensor | None = None) -> "TemperedSampler":
        """Restart the chains at independent draws of the base model (see `initial_visible`),
        the β = 1 chains at `start` when given (visible states [n, V], e.g. dataset images):
        the flatter replicas start near their own distributions, not at the images (measured:
        200 digits chains all started at one 6 showed 1.6 nats of digit classes after 100
        sweeps, against 0.4 with every replica at the 6). Clears the exchange counts."""
        n = n_chains if n_chains is not None else self.n_chains
        R, V = self.replicas, self.model.n_visible
        if start is not None:
            start = start.to(self.model.device, torch.float32).reshape(start.shape[0], -1)
            if start.shape[1] != V:
                raise ValueError(f"start has {start.shape[1]} units per chain, the model {V}")
            n = start.shape[0]
            v = torch.cat([start, self.initial_visible((R - 1) * n)])
        else:
            v = self.initial_visible(R * n)
        self._v, self._mean = v, v.clone()
        self._h = torch.zeros(v.shape[0], self.model.n_hidden, device=v.device)
        if self.clamp_mask is not None and self.clamp_mask.shape[0] != self.n_chains:
            self.unclamp()
        self._apply_clamp()
        self.steps_taken = 0
        self._sweeps = 0
        self._accepted = torch.zeros(max(0, R - 1), device=v.device)
        self._proposed = torch.zeros(max(0, R - 1), device=v.device)
        return self

    @torch.no_grad()
    def initial_visible(self, rows: int) -> Tensor:
        """Starting states: independent draws of the base model (its pixels at their base
        rates a), or of the model's visible biases without a base."""
        m = self.model
        a = self._base if self._base is not None else m.visible_bias.detach()
        if m.binary_visible:
            return self._noises[0].bernoulli(torch.sigmoid(a / self.temperature).expand(rows, -1).contiguous())
        noise = torch.randn(rows, m.n_visible, device=m.device, generator=self.generator)
        return a + noise * (m.variance.detach() * self.temperature).sqrt()

    def _apply_clamp(self) -> None:
        if self.clamp_mask is not None:
            R, V = self.replicas, self.model.n_visible
            self._v = torch.where(self.clamp_mask, self.clamp_values, self._v.view(R, -1, V)).view(-1, V)
            self._mean = torch.where(self.clamp_mask, self.clamp_values, self._mean.view(R, -1, V)).view(-1, V)

    # ------------------------------------------------------------------------------ moving
    @torch.no_grad()
    def step(self, k: int | None = None) -> "TemperedSampler":
        """Advance every chain k sweeps: exchanges between neighbours, then one Gibbs step
        (v -> h -> v) of every replica at its own β, keeping clamped units fixed."""
        k = self.k if k is None else int(k)
        if k > 0:
            # new state tensors every call (a viewer may still hold the previous ones), written
            # in place by every sweep of the call; the scratch is kept between calls
            out = (torch.empty_like(self._v), torch.empty_like(self._h))
            for _ in range(k):
                self._sweep(*out)
        self.steps_taken += k
        return self

    __call__ = step

    def _row_scale(self, rows: int) -> Tensor:
        """β_r of every row [R·n, 1] (cached by the number of rows)."""
        cached = getattr(self, "_scale_cache", None)
        if cached is None or cached[0] != rows or cached[1] is not self._betas:
            col = self._betas.repeat_interleave(rows // self.replicas)[:, None].contiguous()
            cached = self._scale_cache = (rows, self._betas, col)
        return cached[2]

    def _scratch(self, rows: int) -> tuple[Tensor, Tensor, Tensor]:
        """Buffers of a sweep that never leave it: thresholds [R·n, H] and [R·n, V], β_r h [R·n, H]."""
        cached = getattr(self, "_scratch_cache", None)
        V, H, dev = self.model.n_visible, self.model.n_hidden, self._v.device
        if cached is None or cached[0].shape[0] != rows or cached[0].device != dev:
            cached = self._scratch_cache = (torch.empty(rows, H, device=dev), torch.empty(rows, V, device=dev), torch.empty(rows, H, device=dev))
        return cached

    def _sweep(self, v_out: Tensor, h_out: Tensor) -> None:
        m, T, noise = self.model, self.temperature, self._noises[0]
        R, V = self.replicas, m.n_visible
        v = self._v
        rows = v.shape[0]
        beta = self._row_scale(rows)  # [R·n, 1]
        thr_h, thr_v, hb = self._scratch(rows)
        # z = the hidden pre-activations at β = 1, divided by T: every use below is β_r z
        W, b, c = m.weight, m.visible_bias, m.hidden_bias
        z = _linear(v if m.binary_visible else v / m.variance, W.t(), c)
        if T != 1.0:
            z = z.div_(T)
        if R > 1:
            z = self._exchange(z, v)
        h = noise.bernoulli(torch.sigmoid_(z.mul_(beta)), h_out, thr_h)  # p_r(h | v) = σ(β_r z)
        hb = torch.mul(h, beta, out=hb)
        a = self._base
        if m.binary_visible:
            packed = None
            if (a is None and self.free_running and v.device.type == "cpu"
                    and calibrate.calibration().fastest(("addmm", "fused", "packed"), rows * V * m.n_hidden) == "packed"):
                packed = self._packed_model(torch.float32, rows)  # W/T and b/T, packed once for weights that sit still
            if packed is not None:
                mean = packed.visible_probs(hb)
            elif a is None:  # σ((β_r hWᵀ + b) / T): one fused call
                mean = sigmoid_linear(hb.div_(T) if T != 1.0 else hb, W, b / T if T != 1.0 else b)
            else:  # (β_r (hWᵀ + b) + (1 - β_r) a) / T = (β_r hWᵀ + b + (1 - β_r)(a - b)) / T
                logits = _linear(hb, W, b).addcmul_(1.0 - beta, a - b)
                mean = torch.sigmoid_(logits.div_(T) if T != 1.0 else logits)
            v = noise.bernoulli(mean, v_out, thr_v)
        else:
            mean = _linear(hb, W, b)  # β_r (Wh + b) + (1 - β_r) b
            if a is not None:
                mean = mean.addcmul_(1.0 - beta, a - b)
            std = (m.variance * T).sqrt()
            v = torch.randn(mean.shape, device=mean.device, generator=self.generator).mul_(std).add_(mean)
        self._v, self._mean, self._h = v, mean, h
        self._apply_clamp()
        self._sweeps += 1

    def _exchange(self, z: Tensor, v: Tensor) -> Tensor:
        """Propose exchanges between neighbouring replicas (even or odd pairs, alternately) and
        return z [R·n, H] with the rows of the accepted pairs exchanged."""
        R, T = self.replicas, self.temperature
        lo = self._sweeps % 2
        P = (R - lo) // 2  # pairs (lo, lo+1), (lo+2, lo+3), ...
        if P == 0:
            return z
        H = z.shape[1]
        Z = z.view(R, -1, H)
        zi, zj = Z[lo : lo + 2 * P : 2], Z[lo + 1 : lo + 2 * P : 2]  # [P, n, H]
        b = self._betas
        bi, bj = b[lo : lo + 2 * P : 2].view(P, 1, 1), b[lo + 1 : lo + 2 * P : 2].view(P, 1, 1)
        log_a = (F.softplus(bi * zj) + F.softplus(bj * zi) - F.softplus(bi * zi) - F.softplus(bj * zj)).sum(2)  # [P, n]
        if self._base is not None:
            m = self.model
            w = m.visible_bias - self._base
            if not m.binary_visible:
                w = w / m.variance
            d = (v @ w).view(R, -1)  # d(v) [R, n]
            log_a += (bi.view(P, 1) - bj.view(P, 1)) / T * (d[lo + 1 : lo + 2 * P : 2] - d[lo : lo + 2 * P : 2])
        accept = self._noises[0].bernoulli(log_a.clamp_(max=0.0).exp_())  # [P, n], 0/1
        self._accepted[lo : lo + 2 * P - 1 : 2] += accept.sum(1)
        self._proposed[lo : lo + 2 * P - 1 : 2] += accept.shape[1]
        take = accept.bool().unsqueeze(2)
        out = z.clone()
        O = out.view(R, -1, H)
        O[lo : lo + 2 * P : 2] = torch.where(take, zj, zi)
        O[lo + 1 : lo + 2 * P : 2] = torch.where(take, zi, zj)
        return out

    # ------------------------------------------------------------------------ persistence
    def state_tensors(self) -> dict[str, Tensor]:
        """GibbsSampler's state of the β = 1 chains (a plain sampler can load it) plus every
        replica, the ladder, the base, the exchange phase and counts."""
        out = super().state_tensors()
        out.update(
            replica_visible=self._v,
            replica_mean=self._mean,
            replica_hidden=self._h,
            betas=self._betas,
            sweeps=torch.tensor([self._sweeps], dtype=torch.int64),
            swap_accepted=self._accepted,
            swap_proposed=self._proposed,
        )
        if self._base is not None:
            out["base"] = self._base
        return out

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        """Restore a state saved by `state_tensors` (the same continuation follows), or a plain
        GibbsSampler's: then every replica starts from the loaded chains."""
        super().load_state_tensors(state)  # β = 1 chains (every replica from them), streams, clamp
        dev = self.model.device
        n = self.n_chains
        if "replica_visible" in state and state["replica_visible"].shape[0] == state["betas"].numel() * n:
            self._betas = state["betas"].to(dev, torch.float32, copy=True)
            self._v = state["replica_visible"].to(dev, torch.float32, copy=True)
            self._mean = state["replica_mean"].to(dev, torch.float32, copy=True)
            self._h = state["replica_hidden"].to(dev, torch.float32, copy=True)
            self._sweeps = int(state["sweeps"].reshape(-1)[0]) if "sweeps" in state else 0
            self._accepted = state["swap_accepted"].to(dev, torch.float32, copy=True)
            self._proposed = state["swap_proposed"].to(dev, torch.float32, copy=True)
            self.set_base(state.get("base"))
        else:
            self._sweeps = 0
            self._accepted = torch.zeros(max(0, self.replicas - 1), device=dev)
            self._proposed = torch.zeros(max(0, self.replicas - 1), device=dev)

