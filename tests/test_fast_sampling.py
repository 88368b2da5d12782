"""The fast paths of the RBM engine: Bernoulli noise, grouped and parallel Gibbs chains, packed weights."""
from __future__ import annotations

import math

import pytest
import torch

from models.noise import NoiseSource
from models.rbm import BernoulliRBM, RBMConfig
from models.sampling import CHAIN_GROUP, GibbsSampler


def source(seed: int = 0, stream: int = 0) -> NoiseSource:
    return NoiseSource(torch.Generator().manual_seed(seed), stream)


def assert_follows_the_model(sampler, m, start, groups, k):
    """The sampler's chains after k steps from `start` equal, group by group, k steps of the
    model's own `sample_hidden` / `sample_visible` calls with that group's noise stream."""
    for x, y, noise in groups:
        v = start[x:y]
        with torch.no_grad():
            for _ in range(k):
                _, h = m.sample_hidden(v, 1.0, noise)
                mean, v = m.sample_visible(h, 1.0, noise)
        assert torch.equal(sampler.visible[x:y], v) and torch.equal(sampler.mean[x:y], mean) and torch.equal(sampler.hidden[x:y], h)


def test_bernoulli_frequencies_follow_p_and_the_ends_are_exact():
    p = torch.tensor([0.0, 1e-9, 0.1, 0.5, 0.73, 1.0 - 1e-9, 1.0]).repeat(200_000, 1)  # [200k, 7]
    x = source().bernoulli(p)
    assert x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}
    freq = x.mean(0)
    assert freq[0] == 0.0 and freq[-1] == 1.0  # p = 0 never fires, p = 1 always does
    for f, q in zip(freq[1:-1].tolist(), p[0, 1:-1].tolist()):
        # P(1) = ceil(2^16 p) / 2^16: within 2^-16 of p, plus 5 standard errors of 200k draws
        q16 = math.ceil(q * 65536) / 65536
        assert abs(f - q16) <= 5 * math.sqrt(max(q16 * (1 - q16), 1e-6) / 200_000) + 1e-6


def test_draws_are_independent_of_each_other():
    """Neighbouring draws (one 64-bit word feeds four) are uncorrelated."""
    x = source(3).bernoulli(torch.full((400_000,), 0.5)).view(-1, 4)  # the 4 draws of each word
    c = torch.corrcoef(x.t())
    off = c[~torch.eye(4, dtype=torch.bool)]
    assert off.abs().max() < 5 / math.sqrt(100_000)


def test_streams_repeat_by_seed_and_stream_and_differ_otherwise():
    p = torch.full((64, 100), 0.5)
    a, b = source(1).bernoulli(p), source(1).bernoulli(p)
    assert torch.equal(a, b)
    assert not torch.equal(a, source(2).bernoulli(p))
    assert not torch.equal(a, source(1, stream=1).bernoulli(p))


def test_state_round_trip_continues_the_same_stream():
    s = source(5)
    p = torch.full((10, 50), 0.3)
    s.bernoulli(p)
    saved = s.state_tensor()
    want = s.bernoulli(p)
    t = source(99)
    t.load_state_tensor(saved)
    assert torch.equal(t.bernoulli(p), want)
    with pytest.raises(ValueError, match="6 words"):
        t.load_state_tensor(torch.zeros(3, dtype=torch.int64))


def test_uniforms_drawn_at_once_are_the_ones_successive_draws_compare():
    """`uniforms16(a, b)` (one call into the stream for a Gibbs step's two halves) yields the
    16-bit integers that `bernoulli` calls of a and then b draws would compare, whatever a and b
    (sizes that do not fill their last 64-bit word included); u = (r + 2^15)/2^16 < p."""
    from models.noise import to_uniform

    for a, b in ((32 * 16, 32 * 64), (7, 13), (5, 4)):
        p1, p2 = torch.rand(a, generator=torch.Generator().manual_seed(a)), torch.rand(b, generator=torch.Generator().manual_seed(b))
        s1, s2 = source(4), source(4)
        want = s1.bernoulli(p1), s1.bernoulli(p2)
        r1, r2 = s2.uniforms16(a, b)
        assert r1.dtype == torch.int16 and r1.shape == (a,) and r2.shape == (b,)
        assert torch.equal((to_uniform(r1) < p1).float(), want[0]) and torch.equal((to_uniform(r2) < p2).float(), want[1])
        assert torch.equal(s1.state_tensor(), s2.state_tensor())  # the stream is where both left it
    u = to_uniform(torch.tensor([-32768, 0, 32767], dtype=torch.int16))
    assert u.tolist() == [0.0, 0.5, 1 - 2**-16]


# --------------------------------------------------------------------- grouped sampler
def rbm(V=48, H=12, seed=0) -> BernoulliRBM:
    torch.manual_seed(seed)
    m = BernoulliRBM(RBMConfig(V, H))
    with torch.no_grad():
        m.weight.normal_(0.0, 0.5)
        m.visible_bias.normal_(0.0, 0.5)
    return m


def test_each_chain_group_is_the_generic_chain_with_its_own_stream(one_thread):
    """70 chains = groups of 32, 32 and 6; each is what model.sample_* give with its stream
    (on one thread, so that the BLAS rounds alike in both)."""
    m = rbm()
    a = GibbsSampler(m, n_chains=2 * CHAIN_GROUP + 6, seed=4)
    a.free_running = False  # addmm, as the model's own calls (free-running chains use oneDNN)
    start = a.visible.clone()
    a.step(7)
    b = GibbsSampler(m, n_chains=2 * CHAIN_GROUP + 6, seed=4)
    groups = b.groups()
    assert [(x, y) for x, y, _ in groups] == [(0, 32), (32, 64), (64, 70)]
    assert_follows_the_model(a, m, start, groups, 7)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast_paths_for_tiny_models():
    """Packing and worker threads pay off from some size on, as the machine's calibration
    says; a calibration in which they always do makes the tiny test RBMs take them."""
    from models import calibrate

    with calibrate.use(calibrate.only("packed", "addmm", handoff=0.0)):
        yield


def test_packed_weights_give_the_same_chains_as_addmm_and_follow_weight_changes(fast_paths_for_tiny_models):
    """Free-running chains use oneDNN over packed weights; they agree with the addmm path to
    float rounding, at any temperature, and are packed again when the weights change."""
    from models.sampling import onednn_available

    if not onednn_available():
        pytest.skip("this torch has no oneDNN linear")
    m = rbm(V=64, H=16)
    for t in (1.0, 0.6):
        a = GibbsSampler(m, n_chains=40, seed=3, temperature=t)
        b = GibbsSampler(m, n_chains=40, seed=3, temperature=t)
        b.free_running = False
        a.step(1)
        b.step(1)
        assert a._packed is not None
        assert torch.allclose(a.mean, b.mean, atol=1e-5) and (a.visible != b.visible).float().mean() < 0.01
    packed = a._packed
    with torch.no_grad():
        m.weight.mul_(0.0)  # every conditional becomes σ(bias / T)
    a.step(1)
    assert a._packed is not packed
    want = torch.sigmoid(m.visible_bias.detach() / 0.6).expand(40, -1)
    assert torch.allclose(a.mean, want, atol=1e-6)


def test_the_chains_do_not_depend_on_the_number_of_cores(fast_paths_for_tiny_models):
    from models import sampling

    m = rbm(V=64, H=16)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # groups one after another in this thread
        one = GibbsSampler(m, n_chains=96, seed=2).step(20)
        torch.set_num_threads(2)  # groups side by side in the worker threads
        two = GibbsSampler(m, n_chains=96, seed=2)
        calls = []
        real = sampling.run_groups
        sampling.run_groups = lambda groups, work: calls.append(len(groups)) or real(groups, work)
        try:
            two.step(20)
        finally:
            sampling.run_groups = real
        assert calls == [3]  # it did go to the workers
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one.visible, two.visible) and torch.equal(one.mean, two.mean)
    assert torch.get_num_threads() == before


def test_chains_drawing_from_torchs_generator_follow_the_model_calls(one_thread):
    """Off the CPU (CUDA, MPS) the noise is torch's own generator: the sampler then runs the
    model's conditionals with those draws, in order (simulated here on the CPU by a stream
    without numpy bits), clamps included."""
    m = rbm(V=40, H=10)
    mask = torch.arange(40) < 5
    for clamp in (False, True):
        a, b = GibbsSampler(m, n_chains=20, seed=3, temperature=0.8), GibbsSampler(m, n_chains=20, seed=3, temperature=0.8)
        for s in (a, b):
            s.noise._bits = None
            if clamp:
                s.clamp(mask, torch.ones(40))
        a.step(4)
        v, noise = b.visible, b.noise
        with torch.no_grad():
            for _ in range(4):
                h = noise.bernoulli(m.hidden_probs(v, 0.8))
                mean = m.visible_mean(h, 0.8)
                v = noise.bernoulli(mean)
                if clamp:
                    v = torch.where(mask, 1.0, v)
        if clamp:
            mean = torch.where(mask, 1.0, mean)
        assert torch.equal(a.visible, v) and torch.equal(a.hidden, h) and torch.equal(a.mean, mean)
        assert not clamp or (a.visible[:, :5] == 1).all()


def test_clamped_units_stay_fixed_in_every_group_and_temperature_applies():
    m = rbm(V=40, H=10)
    s = GibbsSampler(m, n_chains=80, seed=0, temperature=0.7)
    mask = torch.zeros(40, dtype=torch.bool)
    mask[:10] = True
    s.clamp(mask, torch.ones(40))
    s.step(15)
    assert (s.visible[:, :10] == 1).all() and (s.mean[:, :10] == 1).all()
    assert 0 < s.visible[:, 10:].mean() < 1  # the free units move


def test_sampler_state_with_several_groups_resumes_exactly():
    m = rbm()
    a = GibbsSampler(m, n_chains=70, seed=8).step(5)
    state = {k: v.clone() for k, v in a.state_tensors().items()}
    assert state["noise"].shape == (3, 6)
    want = a.step(9).visible.clone()
    b = GibbsSampler(m, n_chains=70, seed=123)
    b.load_state_tensors(state)
    assert torch.equal(b.step(9).visible, want)


def test_samples_follow_the_exact_distribution_of_a_tiny_rbm():
    """Empirical p(v) of 256 chains (8 groups) after burn-in against enumeration: the 16-bit
    draws and the grouping leave the stationary distribution alone."""
    m = rbm(V=4, H=3, seed=1)
    vs = torch.tensor([[(i >> j) & 1 for j in range(4)] for i in range(16)], dtype=torch.float32)
    logp = -m.free_energy(vs).detach()
    exact = torch.softmax(logp, 0)
    s = GibbsSampler(m, n_chains=256, seed=0).step(50)
    counts = torch.zeros(16)
    for _ in range(200):
        s.step(2)
        idx = (s.visible * torch.tensor([1.0, 2.0, 4.0, 8.0])).sum(1).long()
        counts += torch.bincount(idx, minlength=16)
    emp = counts / counts.sum()
    kl = (emp * (emp.clamp_min(1e-12) / exact).log()).sum().item()
    assert kl < 2e-3


def test_worker_threads_run_torch_on_one_core_and_leave_the_default_alone():
    import threading

    from models import sampling

    before = torch.get_num_threads()
    size = (sampling._POOL._max_workers if sampling._POOL else 1) + 1
    pool = sampling.chain_workers(size)  # a new, larger pool
    assert all(n == 1 for n in pool.map(lambda _: torch.get_num_threads(), range(4 * size)))
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [before] and torch.get_num_threads() == before  # threads started later: as before


def test_only_large_free_running_models_are_packed():
    from models import calibrate
    from models.sampling import onednn_available

    # a machine on which packing pays from 4 M multiply-adds on
    sizes = tuple(float(r * i * o) for r, i, o in calibrate.LADDER)
    packed = tuple(1e-6 * m / sizes[0] + 1e-5 for m in sizes)
    addmm = tuple(p * (0.5 if m < 4e6 else 1.5) for p, m in zip(packed, sizes))
    with calibrate.use(calibrate.Calibration(sizes, {"addmm": addmm, "packed": packed}, 1.0, 1e-9, 1)):
        small = GibbsSampler(rbm(V=64, H=16), n_chains=64, seed=0).step(2)
        assert small._packed is None  # below the crossover addmm is faster
        big_model = BernoulliRBM(RBMConfig(1024, 256))
        big = GibbsSampler(big_model, n_chains=64, seed=0).step(1)
        assert (big._packed is not None) == onednn_available()
        trainer_chains = GibbsSampler(big_model, n_chains=64, seed=0)
        trainer_chains.free_running = False  # weights that change every step are never packed
        assert trainer_chains.step(1)._packed is None


# ------------------------------------------------------------ the one-step call's fast path
def test_a_steps_uniforms_go_row_for_row_to_the_chains_and_are_the_ones_uniforms16_returns():
    """The scratch's draw: each group's stream drawn once for both halves, its hidden uniforms
    to its rows of u_h and its visible ones to its rows of u_v, exactly those `uniforms16`
    returns (after `to_uniform`), halves that leave part of their last 64-bit word unused
    included; and `raw16` leaves the stream where `uniforms16` leaves it."""
    from models.noise import to_uniform
    from models.sampling import _Scratch

    for sizes, H, V in (((32, 32, 6), 16, 64), ((5, 3), 3, 5), ((4,), 2, 6)):
        sc = _Scratch(sizes, H, V, torch.float32, torch.device("cpu"))
        sc.u.fill_(-1.0)
        groups, r = [], 0
        for i, s in enumerate(sizes):
            groups.append((r, r + s, source(8, stream=i)))
            r += s
        sc.draw(groups)
        for i, (x, y, noise) in enumerate(groups):
            want_h, want_v = (to_uniform(t.float()) for t in source(8, stream=i).uniforms16((y - x) * H, (y - x) * V))
            assert torch.equal(sc.u_h[x:y].reshape(-1), want_h) and torch.equal(sc.u_v[x:y].reshape(-1), want_v)
    a, b = source(2), source(2)
    assert torch.equal(torch.from_numpy(a.raw16(10)), torch.cat(b.uniforms16(40)))
    assert torch.equal(a.state_tensor(), b.state_tensor())


def test_groups_whose_halves_leave_words_part_used_follow_the_generic_chain(one_thread):
    """38 chains of an RBM with 3 hidden units: the second group's hidden half (6 × 3 = 18
    draws) leaves half a 64-bit word unused, which the step's one call into the stream must
    skip as `bernoulli` does; and groups of two sizes compare one at a time."""
    m = rbm(V=5, H=3, seed=2)
    a = GibbsSampler(m, n_chains=38, seed=9)
    a.free_running = False
    start = a.visible.clone()
    a.step(5)
    assert_follows_the_model(a, m, start, GibbsSampler(m, n_chains=38, seed=9).groups(), 5)


@pytest.mark.parametrize("path", ["addmm", "packed_bf16"])
def test_one_step_calls_never_write_over_what_a_viewer_holds(path, one_thread):
    """A call writes the new state into new tensors: what a viewer held of the
    previous one (a reference, a view, a numpy array, an image of the chains) keeps its
    values. Held or not, the chains are the same draw for draw."""
    from models import calibrate
    from models.sampling import onednn_available

    if path == "packed_bf16" and not onednn_available():
        pytest.skip("this torch has no oneDNN linear")
    m = rbm(V=64, H=16)
    with calibrate.use(calibrate.only(path)):
        free, held = GibbsSampler(m, n_chains=64, seed=5), GibbsSampler(m, n_chains=64, seed=5)
        free.step(1)
        held.step(1)
        kept = []
        for i in range(12):
            k = 1 if i % 3 else 3  # calls of several steps too (their steps before the last use buffers of their own)
            free.step(k)
            holders = [lambda: held.visible, lambda: held.mean.view(-1), lambda: held.hidden.numpy(), lambda: held.images("samples")]
            h = holders[i % 4]()  # one holder at a time
            kept.append((h, torch.as_tensor(h).clone()))
            before = h.data_ptr() if isinstance(h, torch.Tensor) else h.ctypes.data
            held.step(k)
            assert before not in (held.hidden.data_ptr(), held.mean.data_ptr(), held.visible.data_ptr())
        free.step(1)
        held.step(1)
        assert torch.equal(free.visible, held.visible) and torch.equal(free.mean, held.mean) and torch.equal(free.hidden, held.hidden)
        for h, copy in kept:  # what the viewer held was never written over
            assert torch.equal(torch.as_tensor(h), copy)


@pytest.mark.parametrize("path", ["addmm", "packed_bf16"])
def test_what_a_call_depends_on_is_taken_up_by_the_next_call(path, one_thread):
    """The remembered setup of a call gives way when the temperature, the weights or the
    number of chains change: the next call steps as a new sampler in that state would."""
    from models import calibrate
    from models.sampling import onednn_available

    if path == "packed_bf16" and not onednn_available():
        pytest.skip("this torch has no oneDNN linear")
    m = rbm(V=64, H=16)
    with calibrate.use(calibrate.only(path)):
        a = GibbsSampler(m, n_chains=40, seed=1).step(1)
        for change in ("temperature", "weights"):
            state = {k: v.clone() for k, v in a.state_tensors().items()}
            if change == "temperature":
                a.temperature = 0.6
            else:
                with torch.no_grad():
                    m.weight.mul_(-1.5)
            a.step(1)
            b = GibbsSampler(m, n_chains=40, seed=77, temperature=a.temperature)
            b.load_state_tensors(state)
            b.step(1)
            assert torch.equal(a.visible, b.visible) and torch.equal(a.mean, b.mean)
        a.reset(7)
        assert a.step(1).visible.shape == (7, 64) and a.hidden.shape == (7, 16)


def test_a_calibration_put_in_place_is_taken_up_by_the_next_call(one_thread):
    """The remembered setup also gives way to a calibration injected (or withdrawn) between
    two calls of one sampler: its products take the path the new one picks."""
    from models import calibrate
    from models.sampling import onednn_available

    if not onednn_available():
        pytest.skip("this torch has no oneDNN linear")
    m = rbm(V=64, H=16)
    s = GibbsSampler(m, n_chains=40, seed=1)
    with calibrate.use(calibrate.only("addmm")):
        s.step(1)
        assert s._setup(1)[2] is None  # no packed weights
    with calibrate.use(calibrate.only("packed_bf16")):
        s.step(1)
        assert s._setup(1)[2] is not None and s._setup(1)[2].dtype == torch.bfloat16
    with calibrate.use(calibrate.only("packed")):
        s.step(1)
        assert s._setup(1)[2].dtype == torch.float32
