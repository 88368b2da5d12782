"""Gibbs-Langevin chains for a Gaussian-Bernoulli RBM (Liao, Kornblith, Ren, Fleet & Hinton 2022,
"Gaussian-Bernoulli RBMs without tears").

Plain Gibbs sampling of a Gaussian RBM alternates h ~ p(h | v) and v ~ N(b + W h, σ²). Once
σ² is small beside the spread of the images, p(h | v) is nearly deterministic, and a chain
stays by the mode it started in: its E[v | h] stops changing. Langevin steps move v along the
gradient of the *marginal* free energy, with h summed out,

    F_T(v) = Σ_i (v_i - b_i)² / 2σ_i²T - Σ_j softplus((c_j + (v/σ²)ᵀW_j) / T),

so they follow the soft responsibilities p(h | v) instead of one binary draw. Each step here
is preconditioned by σ²T (a diagonal mass matrix: pixels with a small variance take small
steps),

    v' = v + ε (b + W p_T(h | v) - v) + √(2ε σ² T) ξ,    ξ ~ N(0, I),

and accepted or refused by Metropolis-Hastings (MALA: Roberts & Tweedie 1996), so the chain
leaves p_T(v) invariant whatever ε. The step size is tuned toward MALA's optimal acceptance
rate (0.574) while the chains run, one ε per chain. A sweep of `GibbsLangevinSampler` is
`langevin_steps` such steps followed by one ordinary Gibbs step (h ~ p(h | v), v ~ p(v | h)),
which keeps the hidden sample and E[v | h] of the chains as the Gibbs sampler's are.

`GibbsLangevinSampler` has `GibbsSampler`'s interface and state (`visible`, `mean`, `hidden`,
clamping, `state_tensors`), so the viewer, the trainer's persistent chains and scoring can take
either.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .rbm import GaussianBernoulliRBM
from .sampling import GibbsSampler

#: Langevin steps per Gibbs step (Liao et al. take 10)
LANGEVIN_STEPS = 10
#: the starting step size ε (a fraction of the way to the mean-field reconstruction)
STEP_SIZE = 0.1
#: MALA's optimal acceptance rate in high dimension (Roberts & Rosenthal 1998)
TARGET_ACCEPTANCE = 0.574
STEP_BOUNDS = (1e-4, 1.0)


class GibbsLangevinSampler(GibbsSampler):
    """n persistent Gibbs-Langevin chains over a `GaussianBernoulliRBM` (see the module's
    docstring). `langevin_steps` Metropolis-adjusted Langevin steps on the marginal p_T(v), then
    one Gibbs step, per sweep; `adapt` tunes each chain's step size toward `TARGET_ACCEPTANCE`
    (turn it off for an exactly invariant chain)."""

    def __init__(self, model: GaussianBernoulliRBM, n_chains: int = 64, k: int = 1, temperature: float = 1.0,
                 seed: int | None = None, generator: torch.Generator | None = None, *,
                 langevin_steps: int = LANGEVIN_STEPS, step_size: float = STEP_SIZE, adapt: bool = True):
        if not isinstance(model, GaussianBernoulliRBM):
            raise ValueError("Gibbs-Langevin sampling needs a Gaussian RBM (real-valued visible units)")
        if langevin_steps < 0:
            raise ValueError(f"langevin_steps must be 0 or more (got {langevin_steps})")
        if not (math.isfinite(step_size) and STEP_BOUNDS[0] <= step_size <= STEP_BOUNDS[1]):
            raise ValueError(f"step_size must be within {STEP_BOUNDS[0]:g}..{STEP_BOUNDS[1]:g} (got {step_size!r})")
        self.langevin_steps = int(langevin_steps)
        self.initial_step_size = float(step_size)
        self.adapt = bool(adapt)
        self.accepted = 0  # Langevin proposals accepted and made, over every chain
        self.proposed = 0
        super().__init__(model, n_chains=n_chains, k=k, temperature=temperature, seed=seed, generator=generator)

    @torch.no_grad()
    def reset(self, n_chains: int | None = None, start: Tensor | None = None) -> "GibbsLangevinSampler":
        super().reset(n_chains, start)
        self.step_size = torch.full((self.n_chains, 1), self.initial_step_size, device=self.visible.device)
        return self

    @property
    def acceptance(self) -> float:
        """The fraction of Langevin proposals accepted so far (NaN before the first)."""
        return self.accepted / self.proposed if self.proposed else math.nan

    # ------------------------------------------------------------------------------ moving
    @torch.no_grad()
    def step(self, k: int | None = None) -> "GibbsLangevinSampler":
        """Advance every chain k sweeps: `langevin_steps` Langevin steps, then a Gibbs step."""
        k = self.k if k is None else int(k)
        model, t, g = self.model, self.temperature, self.generator
        for _ in range(k):
            self.langevin(self.langevin_steps)
            _, self.hidden = model.sample_hidden(self.visible, t, g)
            self.mean, self.visible = model.sample_visible(self.hidden, t, g)
            self._apply_clamp()
        self.steps_taken += k
        return self

    @torch.no_grad()
    def langevin(self, steps: int) -> "GibbsLangevinSampler":
        """Move every chain's visible units `steps` Metropolis-adjusted Langevin steps on p_T(v)
        (h summed out), keeping clamped units fixed; `mean` and `hidden` are left as they were."""
        if steps > 0:
            self.visible = self._langevin(self.visible, int(steps))
            self._apply_clamp()
        return self

    def _terms(self, v: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        """(F_T(v) [n], the drift b + W p_T(h | v) - v [n, V]) at the sampler's temperature."""
        m, t = self.model, self.temperature
        logits = torch.addmm(m.hidden_bias, v / var, m.weight)
        if t != 1.0:
            logits = logits / t
        diff = v - m.visible_bias
        free = (diff * diff / var).sum(1) / (2 * t) - torch.nn.functional.softplus(logits).sum(1)
        drift = torch.addmm(m.visible_bias, torch.sigmoid(logits), m.weight.t()).sub_(v)
        return free, drift

    def _langevin(self, v: Tensor, steps: int) -> Tensor:
        """`steps` Metropolis-adjusted Langevin steps from v [n, V] on p_T(v); returns the new v."""
        m, g = self.model, self.generator
        var = m.variance.detach()
        scale = (var * self.temperature).sqrt()  # σ√T [V]
        free, drift = self._terms(v, var)
        keep = None if self.clamp_mask is None else self.clamp_mask
        for _ in range(steps):
            eps = self.step_size  # [n, 1]
            noise = torch.randn(v.shape, device=v.device, dtype=v.dtype, generator=g)
            if keep is not None:
                noise = noise.masked_fill(keep, 0.0)
            forward = eps * drift + (2 * eps).sqrt() * scale * noise  # v' - v
            if keep is not None:
                forward = forward.masked_fill(keep, 0.0)
            proposal = v + forward
            free_new, drift_new = self._terms(proposal, var)
            if keep is not None:
                drift_new = drift_new.masked_fill(keep, 0.0)
            # log q(v | v') - log q(v' | v), with q(x' | x) = N(x + ε drift(x), 2ε σ²T)
            backward = -forward - eps * drift_new  # v - v' - ε drift(v')
            log_q = ((noise * noise).sum(1) / 2) - (backward * backward / (4 * eps * scale * scale)).sum(1)
            log_accept = free - free_new + log_q
            u = torch.rand(log_accept.shape, device=v.device, generator=g)
            accept = torch.log(u) < log_accept  # [n]
            a = accept[:, None]
            v = torch.where(a, proposal, v)
            drift = torch.where(a, drift_new, drift)
            free = torch.where(accept, free_new, free)
            n_acc = int(accept.sum())
            self.accepted += n_acc
            self.proposed += accept.numel()
            if self.adapt:
                # Robbins-Monro in log ε toward the target rate, each chain on its own acceptance
                rate = accept.to(v.dtype)[:, None]
                self.step_size = (self.step_size * torch.exp(0.1 * (rate - TARGET_ACCEPTANCE))).clamp_(*STEP_BOUNDS)
        return v

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        super().load_state_tensors(state)
        # step sizes are not saved: the loaded chains start from the initial one and adapt again
        self.step_size = torch.full((self.n_chains, 1), self.initial_step_size, device=self.visible.device)
