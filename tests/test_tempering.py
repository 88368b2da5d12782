"""Parallel tempering (models/tempering.py): exact on tiny RBMs, mixes where Gibbs chains stick,
keeps the GibbsSampler's surface, and is wired into make_sampler, PCD and the Dreams session."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMConfig
from models.sampling import GibbsSampler
from models.tempering import DEFAULT_REPLICAS, TemperedSampler, base_from_checkpoint, base_from_data, ladder

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread is fastest, and two that wait on each other at every op are many
    times slower on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_rbm(V=8, H=4, seed=0, scale=1.5, device="cpu") -> BernoulliRBM:
    g = torch.Generator().manual_seed(seed)
    m = BernoulliRBM(RBMConfig(V, H))
    with torch.no_grad():
        m.weight.copy_(torch.randn(V, H, generator=g) * scale)
        m.visible_bias.copy_(torch.randn(V, generator=g))
        m.hidden_bias.copy_(torch.randn(H, generator=g))
    return m.to(device)


def states(V: int, device="cpu") -> Tensor:
    return ((torch.arange(1 << V, device=device)[:, None] >> torch.arange(V, device=device)) & 1).float()


def index(v: Tensor) -> Tensor:
    return (v * (2 ** torch.arange(v.shape[1], device=v.device))).sum(1).long()



def bimodal(w: float = 5.0) -> tuple[BernoulliRBM, Tensor]:
    """16 visible units, two hidden units: one turns the first 8 pixels on and the last 8 off
    (mode A), the other the reverse (mode B); equal mass, a barrier of ~e^-10 in between. A
    Gibbs chain in A has to pass through states of probability ~1e-5 to reach B."""
    u = torch.tensor([1.0] * 8 + [0.0] * 8)
    m = BernoulliRBM(RBMConfig(16, 2))
    with torch.no_grad():
        m.weight[:, 0] = w * (2 * u - 1)
        m.weight[:, 1] = -w * (2 * u - 1)
        m.visible_bias.zero_()
        m.hidden_bias.fill_(-4 * w)
    return m, u


# ------------------------------------------------------------------------------ the ladder
def test_ladder_runs_from_one_down_to_beta_min_and_bad_ladders_are_refused():
    b = ladder(10, 0.2)
    assert b.shape == (10,) and b[0] == 1.0 and abs(b[-1].item() - 0.2) < 1e-6 and bool((b[1:] < b[:-1]).all())
    assert ladder(1).tolist() == [1.0]
    m = tiny_rbm()
    for bad in ([0.9, 0.5], [1.0, 1.0], [1.0, 0.5, 0.7], [1.0, -0.1]):
        with pytest.raises(ValueError):
            TemperedSampler(m, betas=bad)
    with pytest.raises(TypeError):
        TemperedSampler(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="units"):
        TemperedSampler(m, base=torch.zeros(3))


# ------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("base", ["biases", "given"])
def test_tempered_chains_sample_the_exact_distribution_of_a_tiny_rbm(device, base):
    """The β = 1 chains' empirical p(v) against enumeration: the exchanges keep detailed
    balance, on either tempering path (KL ≈ 0.002 here; accepting every exchange gives 0.13,
    the linear term's sign flipped 0.09)."""
    m = tiny_rbm(device=device)
    # a base far from the visible biases, so that the linear part of the rule matters too
    a = 3 * torch.randn(8, generator=torch.Generator().manual_seed(5)) if base == "given" else None
    s = TemperedSampler(m, n_chains=200, seed=1, replicas=4, beta_min=0.1, base=a).step(30)
    exact = torch.softmax(-m.free_energy(states(8, device)).detach().double(), 0).cpu()
    counts = torch.zeros(256, dtype=torch.float64)
    for _ in range(300):
        counts += torch.bincount(index(s.step(1).visible).cpu(), minlength=256)
    emp = counts / counts.sum()
    kl = (emp * (emp.clamp_min(1e-12) / exact).log()).sum().item()
    assert kl < 0.01
    rates = s.swap_rates
    assert rates.shape == (3,) and bool(((rates > 0) & (rates < 1)).all())


def test_tempered_chains_cross_a_barrier_that_stops_gibbs_chains():
    m, u = bimodal()
    steps, n = 500, 64
    side = lambda v: ((v * (2 * u - 1)).sum(1) > 0)  # noqa: E731  True: mode A
    plain = GibbsSampler(m, n_chains=n, seed=0).reset(start=u.expand(n, -1))
    pt = TemperedSampler(m, n_chains=n, seed=0, replicas=8, beta_min=0.1).reset(start=u.expand(n, -1))
    left_plain = torch.zeros(n, dtype=torch.bool)
    left_pt, in_a = torch.zeros(n, dtype=torch.bool), 0.0
    for _ in range(steps):
        left_plain |= ~side(plain.step(1).visible)
        a = side(pt.step(1).visible)
        left_pt |= ~a
        in_a += a.float().mean().item() / steps
    assert left_plain.sum() == 0  # no Gibbs chain ever reached mode B
    assert left_pt.all()  # every tempered chain did ...
    assert 0.35 < in_a < 0.65  # ... and they spend about half their time in each mode (exact: 0.5)
    assert bool(((pt.swap_rates > 0) & (pt.swap_rates < 1)).all())


# ------------------------------------------------------------------------------ surface
@pytest.mark.parametrize("device", DEVICES)
def test_clamped_units_never_move_in_any_replica(device):
    m = tiny_rbm(V=12, H=5, device=device)
    s = TemperedSampler(m, n_chains=10, seed=0, replicas=5, temperature=0.8)
    mask = torch.zeros(12, dtype=torch.bool)
    mask[:4] = True
    values = torch.tensor([1.0, 0.0, 1.0, 0.0] + [0.5] * 8)
    s.clamp(mask, values)
    for _ in range(20):
        s.step(1)
        assert (s.replica_visible[:, :4].cpu() == values[:4]).all() and (s.replica_mean[:, :4].cpu() == values[:4]).all()
    assert 0 < s.visible[:, 4:].mean() < 1  # the free units move
    s.unclamp()
    s.step(5)
    assert s.clamp_mask is None


@pytest.mark.parametrize("device", DEVICES)
def test_state_round_trip_continues_identically(device):
    m = tiny_rbm(V=10, H=6, device=device)
    a = TemperedSampler(m, n_chains=7, seed=3, replicas=4, base=torch.zeros(10)).step(5)  # an odd sweep count: the phase
    a.clamp(torch.arange(10) < 2)
    state = {k: v.clone() for k, v in a.state_tensors().items()}
    want = a.step(9)
    b = TemperedSampler(m, n_chains=3, seed=99, replicas=2)
    b.load_state_tensors(state)
    assert b.replicas == 4 and b.n_chains == 7 and torch.equal(b.base, a.base)
    b.step(9)
    for name in ("replica_visible", "replica_mean", "replica_hidden"):
        assert torch.equal(getattr(b, name), getattr(want, name)), name
    assert torch.equal(b.swap_rates, want.swap_rates)
    # a plain sampler loads the β = 1 chains of a tempered state, and the other way round
    plain = GibbsSampler(m, n_chains=2, seed=0)
    plain.load_state_tensors(state)
    assert torch.equal(plain.visible, state["visible"])
    c = TemperedSampler(m, n_chains=2, seed=0, replicas=3)
    c.load_state_tensors(plain.state_tensors())
    assert c.n_chains == 7 and torch.equal(c.visible, state["visible"]) and c.replica_visible.shape == (21, 10)


def test_surface_of_a_gibbs_sampler():
    m = tiny_rbm(V=16, H=6)
    m.config.image_shape = (1, 4, 4)
    s = TemperedSampler(m, n_chains=5, seed=0, replicas=3, k=2)
    assert isinstance(s, GibbsSampler) and s.n_chains == 5 and s.replicas == 3 and s.k == 2
    assert s.visible.shape == (5, 16) and s.hidden.shape == (5, 6) and s.replica_visible.shape == (15, 16)
    assert s() is s and s.steps_taken == 2 and s.step(3).steps_taken == 5
    assert s.images("probs").shape == (5, 1, 4, 4) and s.images("samples").shape == (5, 1, 4, 4)
    assert s.states("samples") is not None and isinstance(s.noise, object) and s.generator is not None
    s.visible[:2] = 1.0  # the Dreams tab keeps chains by writing into them: the β = 1 rows change
    assert (s.replica_visible[:2] == 1).all()
    start = torch.zeros(4, 16)
    s.reset(start=start)
    assert s.n_chains == 4 and torch.equal(s.visible, start) and s.steps_taken == 0
    assert not torch.equal(s.replica_visible[4:], torch.zeros(8, 16))  # the flatter replicas start at the base's draws
    s.reset(6)
    assert s.n_chains == 6 and s.swap_rates.tolist() == [0.0, 0.0]
    s.temperature = 1.5
    assert torch.isfinite(s.step(3).mean).all()


@pytest.mark.parametrize("device", DEVICES)
def test_gaussian_rbm_chains_have_the_models_mean(device):
    """A hand-set 3×2 Gaussian RBM: E[v] = Σ_h p(h) (b + Wh), p(h) ∝ exp(c·h + Σ_i ((b_i + (Wh)_i)² - b_i²) / 2σ_i²)."""
    m = GaussianBernoulliRBM(RBMConfig(3, 2))
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 0.5], [-1.0, 0.0]]))
        m.visible_bias.copy_(torch.tensor([0.2, -0.3, 0.1]))
        m.hidden_bias.copy_(torch.tensor([0.5, -0.5]))
        m.log_variance.copy_(torch.tensor([0.5, 1.0, 0.8]).log())
    hs = states(2)
    mu = m.visible_bias.detach() + hs @ m.weight.detach().t()  # [4, 3]
    b, var = m.visible_bias.detach(), m.variance.detach()
    logp = hs @ m.hidden_bias.detach() + ((mu ** 2 - b ** 2) / (2 * var)).sum(1)
    want = (torch.softmax(logp, 0)[:, None] * mu).sum(0)
    m.to(device)
    s = TemperedSampler(m, n_chains=400, seed=0, replicas=4, beta_min=0.2).step(20)
    assert s.visible.shape == (400, 3) and s.hidden.shape == (400, 2) and s.replica_visible.shape == (1600, 3)
    total = torch.zeros(3, device=device)
    for _ in range(100):
        total += s.step(1).visible.mean(0)
    assert torch.isfinite(total).all()
    assert torch.allclose((total / 100).cpu(), want, atol=0.06)
    assert bool(((s.swap_rates > 0) & (s.swap_rates < 1)).all())
    base = base_from_data(m, torch.rand(10, 3))  # a Gaussian base: the standardised data's mean
    assert base.shape == (3,) and torch.isfinite(TemperedSampler(m, n_chains=4, replicas=3, base=base).step(5).visible).all()


# ------------------------------------------------------------------------------ wiring
def test_make_sampler_tempers_when_the_data_base_rate_is_known():
    from models.factory import make_sampler

    m = tiny_rbm()
    assert type(make_sampler(m, n_chains=4)) is GibbsSampler  # no base: plain chains (see make_sampler)
    s = make_sampler(m, n_chains=4, base=torch.zeros(8))
    assert isinstance(s, TemperedSampler) and s.replicas == DEFAULT_REPLICAS
    assert make_sampler(m, n_chains=4, tempering=3).replicas == 3
    assert type(make_sampler(m, n_chains=4, tempering=False, base=torch.zeros(8))) is GibbsSampler
    p = (torch.rand(50, 1, 2, 4) > 0.3).to(torch.uint8) * 255
    base = base_from_data(m, p)
    want = p.float().div(255).reshape(50, -1).mean(0).clamp(1e-3, 1 - 1e-3)
    assert torch.allclose(torch.sigmoid(base), want, atol=1e-5)


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, 1, 4, 4, generator=g) > 0.5) * 255).to(torch.uint8)


def _trained(epochs, **cfg):
    from models.rbm_trainer import RBMTrainConfig, RBMTrainer

    torch.manual_seed(0)
    m = BernoulliRBM(RBMConfig(16, 6, (1, 4, 4)))
    tr = RBMTrainer(m, _data(), RBMTrainConfig(epochs=epochs, batch_size=20, n_chains=6, seed=3, tempering=4, **cfg))
    tr.fit()
    return m, tr


def test_pcd_with_tempering_trains_and_resumes_exactly(tmp_path):
    from models.checkpoint import load_checkpoint, save_checkpoint

    full, tr_full = _trained(4)
    assert isinstance(tr_full.sampler, TemperedSampler) and tr_full.sampler.replicas == 4
    assert torch.allclose(torch.sigmoid(tr_full.sampler.base), _data().float().div(255).reshape(60, -1).mean(0).clamp(1e-3, 1 - 1e-3))
    assert tr_full.frame().shape == (6, 1, 4, 4)  # the β = 1 chains are the dreams
    half, tr = _trained(2)
    path = save_checkpoint(tmp_path / "half.safetensors", half, trainer=tr)
    ck = load_checkpoint(path)
    assert torch.equal(base_from_checkpoint(ck.model, path), tr.sampler.base)
    resumed = ck.make_trainer(_data(), epochs=4)
    assert isinstance(resumed.sampler, TemperedSampler) and torch.equal(resumed.sampler.replica_visible, tr.sampler.replica_visible)
    resumed.fit()
    for k, v in full.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v), k


def test_dreams_temper_with_the_checkpoints_base_or_the_reset_images(tmp_path):
    from models.checkpoint import save_checkpoint
    from studio.dreams import DreamSession

    m, tr = _trained(1)
    path = save_checkpoint(tmp_path / "m.safetensors", m, trainer=tr)
    s = DreamSession.from_model(m, {"path": str(path)}, n_chains=4)
    assert isinstance(s.sampler, TemperedSampler) and torch.equal(s.sampler.base, tr.sampler.base)
    assert s.can_brush and s.step() is not None
    plain = DreamSession.from_model(m, {}, n_chains=4)
    assert type(plain.sampler) is GibbsSampler  # no data at hand yet
    images = _data(8, seed=1).numpy()
    plain.reset(images)
    plain.step()
    assert isinstance(plain.sampler, TemperedSampler) and plain.sampler.n_chains == 4
    assert torch.allclose(plain.sampler.base, base_from_data(m, torch.from_numpy(images)))
    off = DreamSession.from_model(m, {"path": str(path)}, n_chains=4, tempering=False)
    off.reset(images)
    assert type(off.sampler) is GibbsSampler
