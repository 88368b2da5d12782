"""The RBM engine: energies against brute force, log Z exact and by AIS, learning a known
distribution, Gaussian-Bernoulli stability, sampling with clamps, divergence handling."""
from __future__ import annotations

import math

import pytest
import torch

from models.likelihood import _all_binary_states, ais_log_partition, exact_log_partition, log_likelihood
from models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMConfig
from models.rbm_trainer import RBMTrainConfig, RBMTrainer
from models.sampling import GibbsSampler
from models.training import TrainingDiverged


def tiny_rbm(V=5, H=4, seed=0, scale=1.0) -> BernoulliRBM:
    torch.manual_seed(seed)
    m = BernoulliRBM(RBMConfig(V, H))
    with torch.no_grad():
        m.weight.normal_(0, scale)
        m.visible_bias.normal_(0, 0.5)
        m.hidden_bias.normal_(0, 0.5)
    return m


def brute_free_energy(m: BernoulliRBM, v: torch.Tensor) -> torch.Tensor:
    hs = _all_binary_states(m.n_hidden, 0, 2**m.n_hidden, "cpu")  # [S, H]
    # E(v, h) for every v (rows) and h (columns): [B, S]
    e = -(v @ m.visible_bias)[:, None] - (hs @ m.hidden_bias)[None, :] - (v @ m.weight) @ hs.t()
    return -torch.logsumexp(-e, dim=1)


def test_free_energy_and_gradient_match_brute_force():
    m = tiny_rbm()
    v = (torch.rand(7, 5) > 0.5).float()
    fe = m.free_energy(v)
    fb = brute_free_energy(m, v)
    assert torch.allclose(fe, fb, atol=1e-5)
    # The gradient of F w.r.t. every parameter, through the closed form and the brute sum.
    g1 = torch.autograd.grad(fe.sum(), [m.weight, m.visible_bias, m.hidden_bias])
    g2 = torch.autograd.grad(fb.sum(), [m.weight, m.visible_bias, m.hidden_bias])
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-5)
    # The closed form of the weight gradient: ∂F/∂W = -v p(h|v)ᵀ.
    assert torch.allclose(g1[0], -(v.t() @ m.hidden_probs(v)), atol=1e-5)


def test_energy_matches_definition():
    m = tiny_rbm()
    v = (torch.rand(3, 5) > 0.5).float()
    h = (torch.rand(3, 4) > 0.5).float()
    want = torch.stack([-(v[i] @ m.visible_bias) - h[i] @ m.hidden_bias - v[i] @ m.weight @ h[i] for i in range(3)])
    assert torch.allclose(m.energy(v, h), want, atol=1e-6)


@pytest.mark.parametrize("V,H", [(6, 4), (4, 7)])  # enumerate hidden, then visible
def test_exact_log_partition_matches_joint_enumeration(V, H):
    m = tiny_rbm(V, H, seed=3)
    vs = _all_binary_states(V, 0, 2**V, "cpu")
    hs = _all_binary_states(H, 0, 2**H, "cpu")
    e = -(vs @ m.visible_bias)[:, None] - (hs @ m.hidden_bias)[None, :] - (vs @ m.weight) @ hs.t()
    assert exact_log_partition(m) == pytest.approx(torch.logsumexp(-e.flatten().double(), 0).item(), abs=1e-5)


def test_ais_within_a_tenth_of_a_nat_of_exact():
    m = tiny_rbm(20, 12, seed=5, scale=0.6)
    exact = exact_log_partition(m)
    est = ais_log_partition(m, n_runs=200, betas=4000, seed=1)
    assert abs(est.log_z - exact) < 0.1
    assert est.log_z_low <= est.log_z <= est.log_z_high
    # The log-likelihoods it implies sum to one over the whole space when log Z is exact.
    vs = _all_binary_states(12, 0, 2**12, "cpu")
    small = tiny_rbm(12, 5, seed=2)
    ll = log_likelihood(small, vs, exact_log_partition(small))
    assert torch.logsumexp(ll, 0).item() == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------- learning a known target
def toy_truth(V=8, seed=0):
    """A mixture of three binary prototypes with 10% independent bit flips, over 2^V states."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(3, V, generator=g) > 0.5).float()
    states = _all_binary_states(V, 0, 2**V, "cpu")
    d = (states[:, None, :] != protos[None]).float().sum(2)
    p = (0.1**d * 0.9 ** (V - d)).mean(1).double()
    return states, p / p.sum()


def kl_to_truth(m, states, p) -> float:
    with torch.no_grad():
        q = torch.exp(-m.free_energy(states).double() - exact_log_partition(m))
    return (p * (p.log() - q.log())).sum().item()


@pytest.fixture(scope="module")
def toy_data():
    states, p = toy_truth()
    g = torch.Generator().manual_seed(1)
    idx = torch.multinomial(p.float(), 3000, replacement=True, generator=g)
    return states, p, states[idx].reshape(-1, 1, 1, 8)


@pytest.mark.parametrize(
    "persistent,centering,k,bound",
    [(True, False, 1, 0.05), (True, True, 1, 0.05), (False, False, 5, 0.15), (False, True, 1, 0.3)],
    ids=["PCD-1", "PCD-1-centered", "CD-5", "CD-1-centered"],
)
def test_cd_and_pcd_learn_a_known_distribution(toy_data, persistent, centering, k, bound):
    states, p, data = toy_data
    torch.manual_seed(0)
    m = BernoulliRBM(RBMConfig(8, 8, (1, 1, 8)))
    kl0 = kl_to_truth(m, states, p)
    cfg = RBMTrainConfig(
        epochs=60, batch_size=50, learning_rate=0.1, lr_schedule="linear", lr_final_fraction=0.05,
        persistent=persistent, centering=centering, k=k, n_chains=50, seed=0,
    )
    RBMTrainer(m, data, cfg).fit()
    kl = kl_to_truth(m, states, p)
    assert kl0 > 1.0
    assert kl < bound, f"KL to the truth {kl:.4f} (started at {kl0:.3f})"


def test_visible_biases_start_at_the_data_base_rates():
    data = torch.zeros(100, 1, 1, 4, dtype=torch.uint8)
    data[:30, ..., 0] = 255  # unit 0 on in 30% of images
    data[:, ..., 1] = 255  # unit 1 always on
    m = BernoulliRBM(RBMConfig(4, 3))
    tr = RBMTrainer(m, data, RBMTrainConfig(epochs=1, seed=0))
    tr.prepare()
    p = torch.sigmoid(m.visible_bias.detach())
    assert p[0].item() == pytest.approx(0.3, abs=1e-4)
    assert p[1].item() == pytest.approx(0.999, abs=1e-4)  # clipped, not infinite
    assert p[2].item() == pytest.approx(0.001, abs=1e-4)


def test_hand_written_gradient_equals_autograd_of_free_energy():
    """The fast CD statistics are the gradient of mean F(data) - mean F(model samples)."""
    m = tiny_rbm(6, 5, seed=4)
    v0 = torch.rand(10, 6)
    vk = (torch.rand(12, 6) > 0.5).float()
    loss = m.free_energy(v0).mean() - m.free_energy(vk).mean()
    gW, gb, gc = torch.autograd.grad(loss, [m.weight, m.visible_bias, m.hidden_bias])
    tr = RBMTrainer(m, (v0 * 255).to(torch.uint8).reshape(10, 1, 1, 6), RBMTrainConfig(persistent=True, n_chains=12, momentum=0.0, final_momentum=0.0, weight_decay=0.0, learning_rate=1.0))
    tr.sampler.step = lambda k=None: tr.sampler  # freeze the chains at vk
    tr.sampler.visible = vk
    before = [p.detach().clone() for p in (m.weight, m.visible_bias, m.hidden_bias)]
    tr._bernoulli_step(v0)
    for b, p, g in zip(before, (m.weight, m.visible_bias, m.hidden_bias), (gW, gb, gc)):
        assert torch.allclose(b - p.detach(), g, atol=1e-5)  # SGD with lr 1: p_new = p - grad


def test_cd1_update_is_the_free_energy_gradient_at_its_own_reconstruction():
    """CD-1's one-GEMM update (data and reconstruction rows stacked) equals autograd's gradient
    of mean F(v0) - mean F(v1) at the reconstruction v1 it used, with weight decay and momentum
    entering as torch.optim.SGD does."""
    m = tiny_rbm(6, 5, seed=7)
    v0 = (torch.rand(10, 6) > 0.5).float()
    cfg = RBMTrainConfig(persistent=False, k=1, momentum=0.5, final_momentum=0.5, weight_decay=0.01, learning_rate=0.3)
    tr = RBMTrainer(m, (v0 * 255).to(torch.uint8).reshape(10, 1, 1, 6), cfg)
    for g in tr.optimizer.param_groups:
        g["momentum"] = 0.5
    params = (m.weight, m.visible_bias, m.hidden_bias)
    bufs = [torch.zeros_like(p) for p in params]
    for _ in range(3):
        before = [p.detach().clone() for p in params]
        tr._bernoulli_step(v0)
        v1 = tr._last_negative
        m2 = tiny_rbm(6, 5)
        with torch.no_grad():
            for p2, b in zip(m2.parameters(), before):
                p2.copy_(b)
        loss = m2.free_energy(v0).mean() - m2.free_energy(v1).mean()
        grads = torch.autograd.grad(loss, [m2.weight, m2.visible_bias, m2.hidden_bias])
        for i, (b, p, g) in enumerate(zip(before, params, grads)):
            g = g + (0.01 * b if i == 0 else 0)  # weight decay on the weights only
            bufs[i] = 0.5 * bufs[i] + g
            assert torch.allclose(p.detach(), b - 0.3 * bufs[i], atol=1e-5)


# ------------------------------------------------------------------------ Gaussian RBM
def test_gaussian_rbm_trains_on_real_data_without_nan():
    g = torch.Generator().manual_seed(0)
    # Real-valued 4x4 "images": two smooth patterns with noise, as bytes.
    base = torch.stack([torch.linspace(0, 1, 16), torch.linspace(1, 0, 16)])
    idx = torch.randint(0, 2, (600,), generator=g)
    x = (base[idx] + 0.08 * torch.randn(600, 16, generator=g)).clamp(0, 1)
    data = (x * 255).round().to(torch.uint8).reshape(600, 1, 4, 4)
    torch.manual_seed(0)
    m = GaussianBernoulliRBM(RBMConfig(16, 8, (1, 4, 4)))
    tr = RBMTrainer(m, data, RBMTrainConfig(epochs=15, batch_size=50, learning_rate=0.02, seed=0))
    events = list(tr.run())
    epochs = [e for e in events if e.kind == "epoch"]
    assert all(math.isfinite(v) for e in events for v in e.metrics.values())
    assert all(torch.isfinite(p).all() for p in m.parameters())
    assert epochs[-1].metrics["recon_error"] < 0.5 * epochs[0].metrics["recon_error"]
    assert (m.variance >= m.config.var_floor - 1e-7).all()
    # Dreams look like the data: each chain ends near one of the two patterns.
    s = GibbsSampler(m, n_chains=64, seed=0).step(200)
    imgs = s.images("probs").reshape(64, 16)
    dist = torch.cdist(imgs, base).min(1).values
    assert dist.median() < 0.5


def _two_patterns(n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    base = torch.stack([torch.linspace(0, 1, 16), torch.linspace(1, 0, 16)])
    x = (base[torch.randint(0, 2, (n,), generator=g)] + 0.08 * torch.randn(n, 16, generator=g)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).reshape(n, 1, 4, 4)


def test_chains_restart_from_noise_in_turn():
    """restart_every = N: at each update one chain in N starts again from the model's own
    starting state (each chain once in N updates, their ages spread evenly); N = 1: every chain
    every update (short-run chains: the step count never passes k); 0: plain PCD."""
    data = _two_patterns()
    torch.manual_seed(0)
    m = GaussianBernoulliRBM(RBMConfig(16, 8, (1, 4, 4)))
    tr = RBMTrainer(m, data, RBMTrainConfig(epochs=1, batch_size=16, k=3, n_chains=10, restart_every=4, seed=0,
                                            optimizer="adam", learning_rate=1e-3))
    restarted = []
    for step in range(1, 5):
        tr.step = step
        tr.sampler.visible = torch.full((10, 16), 1e3)
        tr.sampler.mean = tr.sampler.visible.clone()
        tr._restart_chains()
        fresh = (tr.sampler.visible != 1e3).all(1)
        assert torch.equal(fresh, (tr.sampler.mean != 1e3).all(1))
        assert (tr.sampler.visible[fresh].abs() < 10).all()  # draws around the visible biases
        restarted.append(fresh.nonzero().flatten().tolist())
    assert restarted == [[1, 5, 9], [2, 6], [3, 7], [0, 4, 8]]

    counts = {}
    for every in (0, 1):
        torch.manual_seed(0)
        m = GaussianBernoulliRBM(RBMConfig(16, 8, (1, 4, 4)))
        tr = RBMTrainer(m, data, RBMTrainConfig(epochs=1, batch_size=16, k=3, n_chains=8, restart_every=every,
                                                optimizer="adam", learning_rate=1e-3, seed=0))
        counts[every] = [tr.sampler.steps_taken for event in tr.run() if event.kind == "step"]
    assert counts[0] == [3, 6, 9, 12]
    assert counts[1] == [3, 3, 3, 3]


def test_a_default_gaussian_rbm_restarts_its_chains_on_large_images_only():
    """`default_restart`: 64 px colour (12,288 visible units) restarts each chain every 100 updates;
    32 px grey keeps plain PCD; the binary RBM never restarts; a user's choice wins."""
    from models.factory import Options, build

    def restart(kind, shape, **extra):
        data = torch.randint(0, 256, (16, *shape), dtype=torch.uint8)
        return build(Options(kind=kind, image_shape=shape, seed=0, frame_every=0, extra=extra), data).config.restart_every

    assert restart("grbm", (3, 64, 64)) == 100
    assert restart("grbm", (1, 32, 32)) == 0
    assert restart("rbm", (3, 64, 64)) == 0
    assert restart("grbm", (3, 64, 64), restart_every=7) == 7


def test_the_trainer_takes_gibbs_langevin_chains_for_a_gaussian_rbm_only():
    from models.langevin import GibbsLangevinSampler

    data = _two_patterns(32)
    m = GaussianBernoulliRBM(RBMConfig(16, 8, (1, 4, 4)))
    tr = RBMTrainer(m, data, RBMTrainConfig(epochs=2, batch_size=16, k=2, n_chains=8, sampler="langevin", seed=0,
                                            optimizer="adam", learning_rate=1e-3))
    assert isinstance(tr.sampler, GibbsLangevinSampler)
    tr.fit()
    assert tr.sampler.proposed == 4 * 2 * 8 * tr.sampler.langevin_steps  # 4 updates of k sweeps over 8 chains
    assert all(torch.isfinite(p).all() for p in m.parameters())
    with pytest.raises(ValueError, match="Gaussian RBM"):
        RBMTrainer(BernoulliRBM(RBMConfig(16, 8)), data, RBMTrainConfig(sampler="langevin"))
    with pytest.raises(ValueError, match="unknown sampler"):
        RBMTrainer(m, data, RBMTrainConfig(sampler="hmc"))
    with pytest.raises(ValueError, match="restart_every"):
        RBMTrainer(m, data, RBMTrainConfig(restart_every=-1))
    with pytest.raises(ValueError, match="tempered"):
        RBMTrainer(m, data, RBMTrainConfig(restart_every=5, tempering=4))


# --------------------------------------------------------------------------- sampling
def test_clamped_units_never_change_and_free_units_do():
    m = tiny_rbm(16, 8, seed=1, scale=0.5)
    s = GibbsSampler(m, n_chains=10, seed=0)
    start = (torch.rand(10, 16) > 0.5).float()
    s.reset(start=start)
    mask = torch.zeros(16, dtype=torch.bool)
    mask[:8] = True
    s.clamp(mask)
    changed = torch.zeros(10, 16, dtype=torch.bool)
    for _ in range(50):
        s.step()
        assert torch.equal(s.visible[:, :8], start[:, :8])
        assert torch.equal(s.states("probs")[:, :8], start[:, :8])
        changed |= s.visible != start
    assert changed[:, 8:].any()


def test_reset_from_data_starts_at_those_images_and_temperature_flattens():
    m = tiny_rbm(16, 8, seed=1, scale=2.0)
    s = GibbsSampler(m, n_chains=4, seed=0)
    start = torch.rand(4, 16)
    s.reset(start=start)
    assert torch.equal(s.states("samples"), start)
    # High temperature drives the visible conditionals towards 1/2.
    h = (torch.rand(100, 8) > 0.5).float()
    cold = m.visible_mean(h, temperature=0.5)
    hot = m.visible_mean(h, temperature=20.0)
    assert (hot - 0.5).abs().mean() < 0.2 * (cold - 0.5).abs().mean()


def test_seeded_sampling_is_reproducible():
    m = tiny_rbm(16, 8)
    a = GibbsSampler(m, n_chains=5, seed=7).step(20).states("samples")
    b = GibbsSampler(m, n_chains=5, seed=7).step(20).states("samples")
    c = GibbsSampler(m, n_chains=5, seed=8).step(20).states("samples")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pseudo_likelihood_exact_matches_brute_force():
    m = tiny_rbm(6, 4, seed=2)
    v = (torch.rand(5, 6) > 0.5).float()
    pl = m.pseudo_likelihood(v, exact=True)
    want = torch.zeros(5)
    for i in range(6):
        flip = v.clone()
        flip[:, i] = 1 - flip[:, i]
        want += torch.nn.functional.logsigmoid(m.free_energy(flip) - m.free_energy(v))
    assert torch.allclose(pl, want, atol=1e-5)
    # The stochastic estimate is unbiased: its average approaches the exact value.
    est = torch.stack([m.pseudo_likelihood(v) for _ in range(3000)]).mean(0)
    assert torch.allclose(est, pl, atol=0.25)


# ------------------------------------------------------------------------- divergence
def test_forced_divergence_stops_with_last_good_weights():
    data = (torch.rand(200, 1, 4, 4) * 255).to(torch.uint8)
    torch.manual_seed(0)
    m = BernoulliRBM(RBMConfig(16, 8, (1, 4, 4)))
    tr = RBMTrainer(m, data, RBMTrainConfig(epochs=10, batch_size=20, seed=0, snapshot_every=5))
    gen = tr.run()
    for ev in gen:
        if ev.step == 12:
            break
    good = {k: v.clone() for k, v in tr.good_state.items()}
    assert tr.good_step == 10
    tr.config.learning_rate = float("inf")  # the next step blows the weights up
    with pytest.raises(TrainingDiverged) as info:
        next(gen)
    assert "diverged" in str(info.value) and "rolled back to step 10" in str(info.value)
    assert info.value.good_step == 10
    for k, v in m.state_dict().items():
        assert torch.equal(v, good[k])
        assert torch.isfinite(v).all()


def test_an_rbm_trains_with_the_thread_policys_count_and_restores_the_thread_count():
    """The count comes from the process's thread policy (`models.device.thread_rule`, no size
    constant): a job alone leaves a core for the rest, so one thread on a 2-core machine."""
    from models.device import thread_rule, usable_cores

    before = torch.get_num_threads()
    data = (torch.rand(40, 1, 4, 4) * 255).to(torch.uint8)
    m = BernoulliRBM(RBMConfig(16, 8, (1, 4, 4)))
    tr = RBMTrainer(m, data, RBMTrainConfig(epochs=2, batch_size=10, seed=0))
    during = {torch.get_num_threads() for _ in tr.run()}
    assert during == {thread_rule(usable_cores(), jobs=1, busy=0)}
    if usable_cores() <= 2:
        assert during == {1}
    assert torch.get_num_threads() == before
    gen = RBMTrainer(m, data, RBMTrainConfig(epochs=2, batch_size=10, seed=0, threads=2)).run()
    next(gen)
    assert torch.get_num_threads() == 2
    gen.close()  # stopping restores it too
    assert torch.get_num_threads() == before


def test_bad_weights_are_never_kept_as_good_and_chains_restart_after_a_rollback():
    """A step's metrics may come from before its update, so the snapshot checks the weights
    themselves; after a rollback, chains that ran on bad weights start afresh."""
    data = (torch.rand(200, 1, 4, 4) * 255).to(torch.uint8)
    torch.manual_seed(0)
    m = BernoulliRBM(RBMConfig(16, 8, (1, 4, 4)))

    def poisoned(trainer):
        """From now on each update leaves a NaN weight; the step's metrics stay finite."""
        step = trainer._bernoulli_step

        def bad_step(v0, vv=None):
            metrics = step(v0, vv)
            with torch.no_grad():
                m.weight[0, 0] = float("nan")
            return metrics

        trainer._bernoulli_step = bad_step

    tr = RBMTrainer(m, data, RBMTrainConfig(epochs=10, batch_size=20, seed=0, snapshot_every=1, persistent=True))
    gen = tr.run()
    for ev in gen:
        if ev.step == 7:
            break
    good = {k: v.clone() for k, v in m.state_dict().items()}
    poisoned(tr)
    with pytest.raises(TrainingDiverged) as info:
        next(gen)  # step 8 reports finite numbers; the snapshot refuses its weights
    assert info.value.good_step == 7
    assert all(torch.equal(v, good[k]) for k, v in m.state_dict().items())

    # With rare snapshots the bad weights live on for a step and poison the chains: they restart.
    tr2 = RBMTrainer(m, data, RBMTrainConfig(epochs=10, batch_size=20, seed=0, snapshot_every=50, persistent=True))
    gen2 = tr2.run()
    next(gen2)
    poisoned(tr2)
    with pytest.raises(TrainingDiverged):
        for _ in gen2:
            pass
    assert not torch.isnan(tr2.sampler.visible).any() and not torch.isnan(tr2.sampler.hidden).any()
    assert all(torch.isfinite(p).all() for p in m.parameters())
