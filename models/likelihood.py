"""Log-likelihood of binary RBMs: exact log Z for tiny models, AIS for real ones.

log p(v) = -F(v) - log Z. The partition function Z is a sum over 2^min(V, H) terms, so it is
computed exactly only when the smaller layer is small (≤ 24 units here). Otherwise it is
estimated by annealed importance sampling (Neal 2001; Salakhutdinov & Murray 2008, "On the
quantitative analysis of deep belief networks"), annealing from a base-rate model p_A(v) ∝
exp(b_A·v) (no weights) to the RBM through the intermediate distributions

    p*_β(v) = exp((1 - β) b_A·v + β b·v) Π_j (1 + exp(β (c_j + (vᵀW)_j)))

with Gibbs transitions that leave each p_β invariant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .device import make_generator
from .rbm import BernoulliRBM

MAX_EXACT_UNITS = 24


def _all_binary_states(n: int, start: int, stop: int, device) -> Tensor:
    """Rows start..stop-1 of the 2^n binary configurations, as float [stop-start, n]."""
    idx = torch.arange(start, stop, device=device)
    bits = (idx.unsqueeze(1) >> torch.arange(n, device=device)) & 1
    return bits.float()


@torch.no_grad()
def exact_log_partition(model: BernoulliRBM, chunk: int = 1 << 16) -> float:
    """log Z by enumerating the smaller layer (float64 accumulation)."""
    W = model.weight.detach().double()
    b = model.visible_bias.detach().double()
    c = model.hidden_bias.detach().double()
    V, H = W.shape
    if min(V, H) > MAX_EXACT_UNITS:
        raise ValueError(f"exact log Z needs a layer of ≤ {MAX_EXACT_UNITS} units (this RBM: {V}×{H}); use AIS")
    # Sum over the smaller layer: over h, log Z = logsumexp_h [c·h + Σ_i softplus(b_i + (W h)_i)].
    if H <= V:
        n, bias_sum, other_bias, Wm = H, c, b, W.t()  # states over h: [*, H]; Wm maps h -> visible
    else:
        n, bias_sum, other_bias, Wm = V, b, c, W
    parts = []
    total = 1 << n
    for start in range(0, total, chunk):
        s = _all_binary_states(n, start, min(total, start + chunk), W.device).double()
        parts.append(s @ bias_sum + F.softplus(s @ Wm + other_bias).sum(1))
    return torch.logsumexp(torch.cat(parts), 0).item()


def default_betas(n_betas: int = 14_500) -> Tensor:
    """Salakhutdinov & Murray's schedule: 500 steps to 0.5, 4,000 to 0.9, 10,000 to 1 (scaled)."""
    n1, n2 = round(n_betas * 500 / 14_500), round(n_betas * 4_000 / 14_500)
    n3 = n_betas - n1 - n2
    return torch.cat(
        [
            torch.linspace(0.0, 0.5, n1 + 1)[:-1],
            torch.linspace(0.5, 0.9, n2 + 1)[:-1],
            torch.linspace(0.9, 1.0, n3 + 1),
        ]
    ).double()


@dataclass
class AISResult:
    """An AIS estimate of log Z: the estimate and a ±3σ band (in log space)."""

    log_z: float
    log_z_low: float
    log_z_high: float
    log_weights: Tensor  # [runs]

    def __float__(self) -> float:
        return self.log_z


@torch.no_grad()
def ais_log_partition(
    model: BernoulliRBM,
    n_runs: int = 100,
    betas: Tensor | int = 14_500,
    base_visible_bias: Tensor | None = None,
    seed: int | None = 0,
) -> AISResult:
    """Estimate log Z of a binary RBM by annealed importance sampling.

    `base_visible_bias`: biases b_A of the base-rate model (usually the logits of the training
    data's pixel means); zeros (the uniform distribution) if None.
    """
    W, b, c = model.weight.detach(), model.visible_bias.detach(), model.hidden_bias.detach()
    dev = W.device
    gen = make_generator(dev, seed)
    bA = torch.zeros_like(b) if base_visible_bias is None else base_visible_bias.to(b)
    if isinstance(betas, int):
        betas = default_betas(betas)
    betas = betas.tolist()

    def log_p_star(v: Tensor, beta: float) -> Tensor:  # [R, V] -> [R], float64 at the end
        pre = torch.addmm(c, v, W)  # [R, H]
        vis = v @ ((1 - beta) * bA + beta * b)
        return (vis + F.softplus(beta * pre).sum(1)).double()

    # v_0 ~ p_A; log Z_A = Σ softplus(b_A) + H log 2 (the hidden units of p_A are uncoupled).
    v = torch.bernoulli(torch.sigmoid(bA).expand(n_runs, -1), generator=gen)
    log_w = torch.zeros(n_runs, dtype=torch.float64, device=dev)
    log_w -= log_p_star(v, betas[0])
    for beta in betas[1:]:
        log_w += log_p_star(v, beta)
        # A Gibbs transition T_β that leaves p_β invariant.
        h = torch.bernoulli(torch.sigmoid(beta * torch.addmm(c, v, W)), generator=gen)
        v_logits = (1 - beta) * bA + beta * torch.addmm(b, h, W.t())
        v = torch.bernoulli(torch.sigmoid(v_logits), generator=gen)
        log_w -= log_p_star(v, beta)
    log_w += log_p_star(v, betas[-1])
    log_za = F.softplus(bA.double()).sum().item() + model.n_hidden * math.log(2.0)

    r = torch.logsumexp(log_w, 0) - math.log(n_runs)
    # ±3 standard deviations of the mean importance weight, in log space.
    w = torch.exp(log_w - log_w.max())
    mean, std = w.mean(), w.std() / math.sqrt(n_runs)
    scale = log_w.max().item() + log_za
    high = scale + math.log((mean + 3 * std).item())
    low = scale + math.log(lo) if (lo := (mean - 3 * std).item()) > 0 else float("-inf")
    return AISResult(log_z=log_za + r.item(), log_z_low=low, log_z_high=high, log_weights=log_w.cpu())


@torch.no_grad()
def log_likelihood(model: BernoulliRBM, v: Tensor, log_z: float, batch: int = 1024) -> Tensor:
    """log p(v) = -F(v) - log Z per sample [N] (data binarised at 0.5)."""
    out = []
    for i in range(0, v.shape[0], batch):
        x = (v[i : i + batch].to(model.device) > 0.5).float()
        out.append(-model.free_energy(x).double() - log_z)
    return torch.cat(out)


def base_rate_bias(data: Tensor, eps: float = 1e-3) -> Tensor:
    """Logits of the per-pixel means of binary data [N, V]: the usual AIS base model."""
    p = data.float().mean(0).clamp(eps, 1 - eps)
    return torch.log(p) - torch.log1p(-p)
