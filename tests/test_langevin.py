"""Gibbs-Langevin chains of a Gaussian RBM (models/langevin.py) against a marginal known exactly:
with few hidden units, p(v) is a mixture of 2^H Gaussians N(b + W h, σ²), one per hidden state h,
weighted by p(h) ∝ exp(c·h + Σ_i ((b + W h)_i² - b_i²) / 2σ_i²)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from models.langevin import GibbsLangevinSampler
from models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMConfig


def tiny_grbm() -> GaussianBernoulliRBM:
    """2 visible, 3 hidden units; a marginal with several modes of real weight."""
    m = GaussianBernoulliRBM(RBMConfig(2, 3))
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.5, -1.0, 0.3], [0.4, 0.8, -1.2]]))
        m.hidden_bias.copy_(torch.tensor([-1.0, 0.2, 0.5]))
        m.visible_bias.copy_(torch.tensor([0.3, -0.2]))
        m.log_variance.copy_(torch.log(torch.tensor([0.3, 0.6])))
    return m


def exact_moments(m: GaussianBernoulliRBM, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [V] and covariance [V, V] of p_T(v), by enumerating the hidden states."""
    with torch.no_grad():
        var = m.variance * temperature
        hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=m.n_hidden)))
        mu = m.visible_bias + hs @ m.weight.t()  # [2^H, V]
        log_p = (hs @ m.hidden_bias + ((mu**2 - m.visible_bias**2) / (2 * m.variance)).sum(1)) / temperature
        w = torch.softmax(log_p, 0)
        mean = w @ mu
        second = torch.einsum("k,ki,kj->ij", w, mu, mu) + torch.diag(var)
        return mean, second - torch.outer(mean, mean)


def chain_moments(sampler, sweeps: int, burn_in: int, move) -> tuple[torch.Tensor, torch.Tensor]:
    move(burn_in)
    xs = []
    for _ in range(sweeps):
        move(1)
        xs.append(sampler.visible.clone())
    x = torch.cat(xs)
    return x.mean(0), torch.cov(x.t())


@pytest.mark.parametrize("temperature", [1.0, 1.5])
def test_gibbs_langevin_matches_the_exact_marginal(temperature):
    m = tiny_grbm()
    mean, cov = exact_moments(m, temperature)
    s = GibbsLangevinSampler(m, n_chains=3000, seed=0, temperature=temperature, langevin_steps=3, step_size=0.3, adapt=False)
    got_mean, got_cov = chain_moments(s, sweeps=8, burn_in=20, move=s.step)
    assert torch.allclose(got_mean, mean, atol=0.03), (got_mean, mean)
    assert torch.allclose(got_cov, cov, atol=0.04), (got_cov, cov)
    assert 0.5 < s.acceptance < 1.0


def test_langevin_alone_leaves_the_marginal_invariant_and_its_step_size_adapts():
    """Metropolis-adjusted Langevin steps without any Gibbs step sample p(v) too: the check that
    the acceptance ratio is right (an unadjusted or wrongly adjusted step at ε = 0.8 is biased)."""
    m = tiny_grbm()
    mean, cov = exact_moments(m)
    s = GibbsLangevinSampler(m, n_chains=3000, seed=1, step_size=0.8, adapt=False)
    got_mean, got_cov = chain_moments(s, sweeps=20, burn_in=150, move=s.langevin)
    assert torch.allclose(got_mean, mean, atol=0.04), (got_mean, mean)
    assert torch.allclose(got_cov, cov, atol=0.05), (got_cov, cov)
    refused = 1 - s.acceptance
    assert refused > 0.05  # the big step is refused often: the test exercises the correction


def test_the_step_size_adapts_toward_the_target_acceptance():
    """In 200 dimensions a step of ε = 1 is mostly refused; adapted, each chain's ε
    shrinks until about 57 % of its proposals pass."""
    torch.manual_seed(0)
    m = GaussianBernoulliRBM(RBMConfig(200, 20))
    with torch.no_grad():
        m.weight.normal_(0, 0.3)
        m.log_variance.fill_(math.log(0.2))
    fixed = GibbsLangevinSampler(m, n_chains=100, seed=2, step_size=1.0, adapt=False)
    fixed.langevin(30)
    a = GibbsLangevinSampler(m, n_chains=100, seed=2, step_size=1.0, adapt=True)
    a.langevin(150)
    a.accepted = a.proposed = 0
    a.langevin(100)
    assert fixed.acceptance < 0.3
    assert abs(a.acceptance - 0.574) < 0.08, a.acceptance
    assert float(a.step_size.max()) < 1.0


def test_clamped_units_stay_and_the_state_round_trips():
    m = tiny_grbm()
    s = GibbsLangevinSampler(m, n_chains=8, seed=3)
    mask = torch.tensor([True, False])
    s.clamp(mask, torch.tensor([0.25, 0.0]))
    s.step(3)
    assert torch.equal(s.visible[:, 0], torch.full((8,), 0.25))
    assert s.visible[:, 1].unique().numel() == 8  # the free unit moved, differently in each chain
    state = s.state_tensors()
    t = GibbsLangevinSampler(m, n_chains=2, seed=4)
    t.load_state_tensors(state)
    assert t.n_chains == 8 and t.step_size.shape == (8, 1)
    assert torch.equal(t.visible, s.visible)


def test_refuses_what_it_cannot_sample():
    with pytest.raises(ValueError, match="Gaussian RBM"):
        GibbsLangevinSampler(BernoulliRBM(RBMConfig(4, 2)))
    with pytest.raises(ValueError, match="step_size"):
        GibbsLangevinSampler(tiny_grbm(), step_size=math.nan)
    with pytest.raises(ValueError, match="langevin_steps"):
        GibbsLangevinSampler(tiny_grbm(), langevin_steps=-1)
