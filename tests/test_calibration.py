"""The engine's calibration (models/calibrate.py): the cache file round trip, hostile cache
files, the paths an injected calibration chooses, and every fast path against the plain
float32 reference (bfloat16 within its stated tolerance)."""
from __future__ import annotations

import json
import math
import os
import sys
import warnings

import pytest
import torch

from models import calibrate
from models.calibrate import Calibration, read_cache, write_cache
from models.kernels import PackedRBM, gram_update, linear, onednn_available, sigmoid_linear
from models.rbm import BernoulliRBM
from models.rbm_trainer import RBMTrainConfig, RBMTrainer
from models.sampling import GibbsSampler
from test_fast_sampling import rbm as fast_rbm

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this torch has no oneDNN linear")


def table(threads: int = 1, **times: float) -> Calibration:
    """A calibration whose paths take `times[path]` µs per million multiply-adds, at every size."""
    macs = tuple(float(r * i * o) for r, i, o in calibrate.LADDER)
    return Calibration(macs, {p: tuple(t * 1e-6 * m / 1e6 for m in macs) for p, t in times.items()}, 2e-5, 1e-10, threads)


@pytest.fixture
def fake_measure(monkeypatch):
    """`calibrate.measure` replaced by an instant one (no timing inside tests), counting calls;
    the process's tables and the env switch cleared for the test."""
    calls = []

    def fake(budget: float = 0.6) -> Calibration:
        calls.append(torch.get_num_threads())
        return table(torch.get_num_threads(), addmm=10.0, fused=5.0)

    monkeypatch.setattr(calibrate, "measure", fake)
    monkeypatch.delenv("HARMONIUM_CALIBRATION", raising=False)
    calibrate.forget()
    yield calls
    calibrate.forget()


# ------------------------------------------------------------------------------- the table
def test_times_interpolate_between_sizes_and_scale_beyond_them():
    cal = table(addmm=10.0, fused=5.0)
    m0, m1 = cal.macs[0], cal.macs[1]
    assert cal.time("fused", m0) == pytest.approx(5e-6 * m0 / 1e6)
    assert cal.time("fused", math.sqrt(m0 * m1)) == pytest.approx(5e-6 * math.sqrt(m0 * m1) / 1e6)
    assert cal.time("fused", 10 * cal.macs[-1]) == pytest.approx(5e-5 * cal.macs[-1] / 1e6)
    assert cal.time("packed", m0) == math.inf  # not in the table
    assert cal.fastest(("addmm", "fused"), 1e6) == "fused"
    assert cal.fastest(("packed",), 1e6) == "addmm"  # the plain path is always there
    assert calibrate.REFERENCE.fastest(calibrate.PATHS, 1e7) == "addmm"


def test_bfloat16_is_never_chosen_when_the_user_asks_for_float32(monkeypatch):
    cal = table(addmm=10.0, fused=5.0, packed_bf16=1.0)
    assert cal.fastest(calibrate.PATHS, 1e7) == "packed_bf16"
    monkeypatch.setenv("HARMONIUM_PRECISION", "float32")
    assert cal.fastest(calibrate.PATHS, 1e7) == "fused"


# ------------------------------------------------------------------------------- the cache
def test_cache_round_trip_and_a_new_machine_or_torch_measures_again(tmp_path, monkeypatch):
    path = tmp_path / "calibration.json"
    tables = {1: table(1, addmm=10.0, fused=5.0, packed=4.0), 2: table(2, addmm=6.0)}
    write_cache(tables, path)
    doc = json.loads(path.read_text())
    assert doc["machine"] == calibrate.machine_key() and set(doc["tables"]) == {"1", "2"}
    assert read_cache(path) == tables
    monkeypatch.setattr(calibrate.torch, "__version__", "9.9.9")
    assert read_cache(path) == {}  # another torch: not this machine's table
    monkeypatch.undo()
    monkeypatch.setattr(calibrate, "cpu_model", lambda: "Another CPU")
    assert read_cache(path) == {}


def test_first_use_measures_once_saves_and_the_next_process_reads_it(fake_measure):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = calibrate.calibration()
        assert fake_measure == [1] and calibrate.calibration() is a  # kept in the process
        assert calibrate.cache_path().is_file()
        calibrate.forget()  # a new process: the file, no measuring
        assert calibrate.calibration() == a and fake_measure == [1]
        torch.set_num_threads(2)  # another thread count: measured and added to the file
        calibrate.calibration()
        assert fake_measure == [1, 2] and set(read_cache()) == {1, 2}
    finally:
        torch.set_num_threads(before)


HOSTILE = {
    "not JSON": b"\x00\xffcalibration",
    "truncated": b'{"format": 1, "machine": ',
    "deeply nested": b"[" * 200_000 + b"]" * 200_000,
    "huge": b'{"pad": "' + b"x" * (calibrate.MAX_CACHE_BYTES + 10) + b'"}',
    "a list": b"[1, 2, 3]",
    "another format": b'{"format": 99}',
}


def _bad_table(**change) -> bytes:
    t = table(1, addmm=10.0, fused=5.0).to_json() | change
    return json.dumps({"format": 1, "machine": calibrate.machine_key(), "tables": {"1": t}}).encode()


HOSTILE |= {
    "NaN times": _bad_table(times={"addmm": [float("nan")] * 6}).replace(b"NaN", b"NaN"),
    "negative times": _bad_table(times={"addmm": [-1.0] * 6}),
    "too few times": _bad_table(times={"addmm": [1.0] * 3}),
    "an unknown path": _bad_table(times={"os.system": [1.0] * 6}),
    "a string for a number": _bad_table(handoff="fast"),
    "a boolean thread count": _bad_table(threads=True),
    "sizes falling": _bad_table(macs=[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]),
}


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_a_hostile_cache_file_is_ignored_with_one_warning_and_replaced(what, fake_measure):
    path = calibrate.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HOSTILE[what])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cal = calibrate.calibration()
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "calibration cache" in msgs[0] and "\n" not in msgs[0]
    assert len(fake_measure) == 1 and cal.has("fused")  # measured again ...
    assert read_cache(path) == {torch.get_num_threads(): cal}  # ... and the file replaced


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_cache_that_is_not_a_regular_file_never_blocks(kind, tmp_path):
    path = tmp_path / "calibration.json"
    os.mkdir(path) if kind == "folder" else os.mkfifo(path)  # a FIFO's open would wait for a writer
    with pytest.warns(RuntimeWarning, match="calibration cache"):
        assert read_cache(path) == {}


def test_off_gives_the_reference_and_use_injects(monkeypatch):
    monkeypatch.setenv("HARMONIUM_CALIBRATION", "off")
    assert calibrate.calibration() is calibrate.REFERENCE
    cal = table(addmm=3.0)
    with calibrate.use(cal):
        assert calibrate.calibration() is cal
    assert calibrate.calibration() is calibrate.REFERENCE
    assert calibrate.calibration("meta") is calibrate.REFERENCE


# ------------------------------------------------------------------------ paths chosen
def rbm(V=64, H=32, seed=0) -> BernoulliRBM:
    """test_fast_sampling's RBM, with hidden biases too."""
    m = fast_rbm(V, H, seed)
    with torch.no_grad():
        m.hidden_bias.normal_(0.0, 0.5)
    return m


@needs_onednn
@pytest.mark.parametrize("path,dtype", [("addmm", None), ("packed", torch.float32), ("packed_bf16", torch.bfloat16)])
def test_the_sampler_takes_the_path_the_calibration_finds_fastest(path, dtype):
    with calibrate.use(calibrate.only(path)):
        s = GibbsSampler(rbm(), n_chains=40, seed=0).step(3)
    assert (s._packed.dtype if s._packed is not None else None) == dtype
    assert s.visible.dtype == s.mean.dtype == s.hidden.dtype == torch.float32
    assert set(s.visible.unique().tolist()) <= {0.0, 1.0}


def test_the_trainer_takes_bfloat16_only_where_it_pays_and_is_allowed(monkeypatch):
    data = (torch.rand(64, 1, 8, 8) * 255).to(torch.uint8)
    cfg = RBMTrainConfig(epochs=1, batch_size=16, persistent=False, k=1, seed=0)
    for cal, want in ((table(addmm=10.0, fused=5.0, fused_bf16=1.0), onednn_available()), (table(addmm=10.0, fused=5.0, fused_bf16=8.0), False),
                      (calibrate.REFERENCE, False)):
        with calibrate.use(cal):
            assert RBMTrainer(rbm(), data, cfg)._cd_bf16(16, 16) == want
    monkeypatch.setenv("HARMONIUM_PRECISION", "float32")
    with calibrate.use(table(addmm=10.0, fused=5.0, fused_bf16=1.0)):
        assert RBMTrainer(rbm(), data, cfg)._cd_bf16(16, 16) is False


# ------------------------------------------------------------------ numbers of every path
@needs_onednn
def test_every_float32_path_agrees_with_the_plain_one():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(48, 96, generator=g) < 0.3).float()
    W, b = torch.randn(40, 96, generator=g) * 0.2, torch.randn(40, generator=g)
    want_s, want_l = torch.sigmoid(torch.addmm(b, x, W.t())), torch.addmm(b, x, W.t())
    buf0 = torch.randn(96, 40, generator=g)
    h = torch.rand(48, 40, generator=g)
    want_g = 0.9 * buf0 + x.t() @ h
    for cal in (calibrate.REFERENCE, calibrate.only("fused")):
        with calibrate.use(cal), torch.no_grad():
            assert torch.allclose(sigmoid_linear(x, W, b), want_s, atol=2e-6)
            assert torch.allclose(linear(x, W, b), want_l, atol=1e-5)
            assert torch.allclose(gram_update(buf0.clone(), x, h, 0.9), want_g, atol=1e-5)


@needs_onednn
def test_packed_conditionals_agree_with_the_model_float32_closely_and_bfloat16_within_1e_2():
    """bfloat16 keeps 8 bits of mantissa: each weight is off by up to 2^-9 of itself, so a
    logit of a few units by a few thousandths (float32 accumulation), a probability by a
    quarter of that (σ' ≤ 1/4), and the probability itself is returned rounded to bfloat16
    (2^-9 = 0.002 near 1): 1e-2 bounds the sum for an RBM's logits (seeded: no flakes)."""
    m = rbm(V=200, H=100)
    g = torch.Generator().manual_seed(1)
    v = (torch.rand(32, 200, generator=g) < 0.4).float()
    h = (torch.rand(32, 100, generator=g) < 0.4).float()
    with torch.no_grad():
        want_h, want_v = m.hidden_probs(v, 0.7), m.visible_mean(h, 0.7)
        p32 = PackedRBM(m, 0.7, torch.float32)
        assert torch.allclose(p32.hidden_probs(v), want_h, atol=1e-5) and torch.allclose(p32.visible_probs(h), want_v, atol=1e-5)
        p16 = PackedRBM(m, 0.7, torch.bfloat16)
        got_h, got_v = p16.hidden_probs(v.bfloat16()).float(), p16.visible_probs(h.bfloat16()).float()
    assert (got_h - want_h).abs().max() < 1e-2 and (got_v - want_v).abs().max() < 1e-2


@needs_onednn
def test_the_bfloat16_sampler_follows_the_float32_chains_from_one_state():
    """Same start, same noise: the float32 and bfloat16 chains draw alike except where a
    probability sits within bfloat16's rounding of its uniform number (under 1 % of draws)."""
    m = rbm(V=256, H=64)
    a, b = (GibbsSampler(m, n_chains=64, seed=5) for _ in range(2))
    with calibrate.use(calibrate.only("packed")):
        a.step(1)
    with calibrate.use(calibrate.only("packed_bf16")):
        b.step(1)
    assert (a.visible != b.visible).float().mean() < 0.01 and (a.hidden != b.hidden).float().mean() < 0.01
    same = (a.hidden == b.hidden).all(1)  # chains whose hidden draws agree: their means agree closely
    assert same.any() and (a.mean[same] - b.mean[same]).abs().max() < 1e-2


@pytest.fixture
def one_thread():
    """Tiny products: a second torch thread's fork and join cost more than they do (and on a
    busy machine far more)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@needs_onednn
def test_one_step_calls_in_bfloat16_sample_the_float32_models_marginals(one_thread):
    """The one-step calls of the Dreams viewer on the bfloat16 path (its reused buffers, the
    uniforms drawn for both halves at once, bfloat16 probabilities compared as float32): each
    unit's mean over 256 chains × 300 calls agrees with the exact marginal of the float32
    model (enumerated) and with the float32 sampler's. 0.03 is over ten standard errors of
    these means (autocorrelation included) plus bfloat16's rounding of the weights (~0.002);
    seeded, so nothing can flake. Clamped units stay fixed on this path too."""
    m = rbm(V=10, H=6, seed=3)
    vs = torch.tensor([[(i >> j) & 1 for j in range(10)] for i in range(1024)], dtype=torch.float32)
    with torch.no_grad():
        exact = (torch.softmax(-m.free_energy(vs), 0)[:, None] * vs).sum(0)  # p(v_i = 1)
    means = {}
    for path in ("addmm", "packed_bf16"):
        with calibrate.use(calibrate.only(path)):
            s = GibbsSampler(m, n_chains=256, seed=7).step(50)
            total = torch.zeros(10)
            for _ in range(300):
                total += s.step(1).visible.mean(0)
        assert (s._packed is not None and s._packed.dtype == torch.bfloat16) == (path == "packed_bf16")
        means[path] = total / 300
        assert (means[path] - exact).abs().max() < 0.03, path
    assert (means["packed_bf16"] - means["addmm"]).abs().max() < 0.03
    assert 0.05 < exact.min() and exact.max() < 0.95  # no unit pinned: the comparison has teeth
    with calibrate.use(calibrate.only("packed_bf16")):
        s.clamp(torch.arange(10) < 3, torch.tensor([1.0, 0.0, 1.0] + [0.0] * 7))
        for _ in range(5):
            s.step(1)
        s.step(4)
    assert (s.visible[:, :3] == torch.tensor([1.0, 0.0, 1.0])).all() and (s.mean[:, :3] == s.visible[:, :3]).all()
    assert 0 < s.visible[:, 3:].mean() < 1


@needs_onednn
def test_a_bfloat16_cd_step_agrees_with_the_float32_one():
    """One CD-1 update from the same weights and the same noise: the weights after it agree
    to the gradient's bfloat16 rounding (lr 0.05, |ΔW| ≤ 0.05 · (1 + 4e-3 ...): within 2e-3)."""
    data = ((torch.rand(64, 1, 16, 16) < 0.3) * 255).to(torch.uint8)
    cfg = RBMTrainConfig(epochs=1, batch_size=64, persistent=False, k=1, seed=0, learning_rate=0.05)
    out = []
    for cal in (calibrate.only("fused"), table(addmm=10.0, fused=5.0, fused_bf16=1.0)):
        m = rbm(V=256, H=64)
        with calibrate.use(cal):
            tr = RBMTrainer(m, data, cfg)
            tr.prepare()
            tr.train_step(data)
            assert tr._cd_bf16(64, 64) == cal.has("fused_bf16")
        out.append(m.weight.detach().clone())
    assert (out[0] - out[1]).abs().max() < 2e-3 and not torch.equal(out[0], out[1])


def test_cd_steps_between_checks_never_wait_for_the_host(monkeypatch):
    """A GPU's queue drains at every .item(): the CD step reads a number back only every 10
    steps (its reconstruction error and NaN check). Counted here with a mock on the CPU."""
    data = (torch.rand(64, 1, 8, 8) * 255).to(torch.uint8)
    for persistent in (False, True):
        tr = RBMTrainer(rbm(), data, RBMTrainConfig(epochs=1, batch_size=16, persistent=persistent, k=1, seed=0))
        tr.prepare()
        tr.train_step(data[:16])  # step 0: a check
        calls = []
        real = torch.Tensor.item
        monkeypatch.setattr(torch.Tensor, "item", lambda t: calls.append(1) or real(t))
        for step in range(1, 10):
            tr.step = step
            tr.train_step(data[:16])
        assert calls == []
        tr.step = 10
        tr.train_step(data[:16])
        assert calls
        monkeypatch.undo()


def test_gaussian_rbm_steps_between_checks_never_wait_for_the_host_and_divergence_is_still_caught(monkeypatch):
    """The Gaussian RBM's step reads its two numbers (reconstruction error, free-energy gap)
    back together every 10 steps only; a NaN that appears between two reads is caught at the
    next one, and the model is rolled back to finite weights."""
    from models.rbm import GaussianBernoulliRBM, RBMConfig
    from models.training import TrainingDiverged

    torch.manual_seed(0)
    data = (torch.rand(64, 1, 4, 4) * 255).to(torch.uint8)
    m = GaussianBernoulliRBM(RBMConfig(16, 8, (1, 4, 4)))
    tr = RBMTrainer(m, data, RBMTrainConfig(epochs=1, batch_size=16, seed=0, optimizer="adam", learning_rate=1e-3))
    tr.prepare()
    first = tr.train_step(data[:16])  # step 0: a read
    assert math.isfinite(first["recon_error"]) and math.isfinite(first["free_energy_gap"])
    calls = []

    def counted(real):
        def read(t):
            # torch.optim.Adam reads its step count, a CPU tensor whatever the device (no sync)
            if "torch" + os.sep + "optim" not in sys._getframe(1).f_code.co_filename:
                calls.append(1)
            return real(t)
        return read

    for name in ("item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counted(getattr(torch.Tensor, name)))
    for step in range(1, 10):
        tr.step = step
        assert tr.train_step(data[:16]) == first  # the last numbers read, not a new read
    assert calls == []
    tr.step = 10
    tenth = tr.train_step(data[:16])
    assert len(calls) == 1 and tenth != first
    monkeypatch.undo()

    # divergence: the learning rate blows the weights up between two reads; the run stops at
    # the next read with the last good (finite) weights
    tr = RBMTrainer(m, data, RBMTrainConfig(epochs=50, batch_size=16, seed=0, optimizer="adam", learning_rate=1e-3, snapshot_every=5))
    gen = tr.run()
    for ev in gen:
        if ev.step == 11:
            break
    tr.config.learning_rate = float("inf")
    with pytest.raises(TrainingDiverged) as info:
        for _ in gen:
            pass
    assert 11 < info.value.step <= 21  # caught at the next read (step 20), not later
    assert all(torch.isfinite(v).all() for v in m.state_dict().values())
