"""The texture RBM (the package models/conv_rbm/): its energies and conditionals against a fully connected
RBM with the convolution unrolled into a weight matrix, probabilistic max-pooling against brute
force, seamless periodic sampling, the dream brush's clamp, a config + state round trip (and a
checkpoint round trip through models.checkpoint with the kind's record), and training on a
synthetic stripe texture that recovers the stripes' period."""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from models.conv_rbm import (
    ConvGibbsSampler,
    ConvRBM,
    ConvRBMConfig,
    ConvRBMError,
    ConvRBMTrainConfig,
    ConvRBMTrainer,
    seam_ratio,
    synthesize,
)
from models.rbm import BernoulliRBM, GaussianBernoulliRBM, RBMConfig


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: on a busy two-core machine a second torch thread only waits on
    the first at every op (a 96² synthesis: 0.06 s on one thread, 7 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_model(visible="gaussian", channels=2, n_filters=3, f=3, pooling=1, seed=0) -> ConvRBM:
    torch.manual_seed(seed)
    m = ConvRBM(ConvRBMConfig(channels=channels, n_filters=n_filters, filter_size=f, pooling=pooling, visible=visible))
    with torch.no_grad():
        m.weight.normal_(0, 0.5)
        m.visible_bias.normal_(0, 0.3)
        m.hidden_bias.normal_(0, 0.3)
        m.log_variance.normal_(0, 0.3)
    return m


def fully_connected(m: ConvRBM, H: int, W: int):
    """The pixel RBM of models/rbm.py with the conv model's tied weights unrolled on an H×W torus."""
    C, K = m.channels, m.n_filters
    cfg = RBMConfig(C * H * W, K * H * W)
    fc = BernoulliRBM(cfg) if m.binary_visible else GaussianBernoulliRBM(cfg)
    with torch.no_grad():
        fc.weight.copy_(m.unrolled_weight(H, W))
        fc.visible_bias.copy_(m.visible_bias.repeat_interleave(H * W))
        fc.hidden_bias.copy_(m.hidden_bias.repeat_interleave(H * W))
        if not m.binary_visible:
            fc.log_variance.copy_(m.variance.log().repeat_interleave(H * W))
    return fc


# --------------------------------------------------------------------------- the maths
@pytest.mark.parametrize("visible", ["gaussian", "binary"])
@pytest.mark.parametrize("f", [3, 4])
def test_energy_and_conditionals_equal_a_fully_connected_rbm_with_tied_weights(visible, f):
    m = random_model(visible, f=f)
    H, W, B = 5, 6, 4
    fc = fully_connected(m, H, W)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(B, 2, H, W, generator=g) if visible == "gaussian" else (torch.rand(B, 2, H, W, generator=g) > 0.5).float()
    h = (torch.rand(B, 3, H, W, generator=g) > 0.5).float()
    flat_v, flat_h = v.reshape(B, -1), h.reshape(B, -1)
    with torch.no_grad():
        assert torch.allclose(m.hidden_logits(v).reshape(B, -1), fc.hidden_logits(flat_v), atol=1e-5)
        assert torch.allclose(m.hidden_probs(v).reshape(B, -1), fc.hidden_probs(flat_v), atol=1e-6)
        assert torch.allclose(m.visible_mean(h).reshape(B, -1), fc.visible_mean(flat_h), atol=1e-5)
        assert torch.allclose(m.energy(v, h), fc.energy(flat_v, flat_h), rtol=1e-5, atol=1e-4)
        assert torch.allclose(m.free_energy(v), fc.free_energy(flat_v), rtol=1e-5, atol=1e-4)
        # per position on the torus: F / (H·W)
        assert torch.allclose(m.free_energy_density(v), fc.free_energy(flat_v) / (H * W), rtol=1e-5, atol=1e-5)
        # the interior ("valid") logits the trainer's data phase uses are the torus's where no wrap is involved
        valid = m.hidden_logits(v, periodic=False)
        before = (f - 1) // 2
        assert torch.allclose(valid, m.hidden_logits(v)[..., before : before + H - f + 1, before : before + W - f + 1], atol=1e-5)


def test_a_torus_smaller_than_the_filter_still_wraps_like_the_unrolled_rbm():
    m = random_model("gaussian", channels=1, n_filters=2, f=5)
    fc = fully_connected(m, 3, 4)  # taps fold onto the same pixel several times
    v = torch.randn(2, 1, 3, 4, generator=torch.Generator().manual_seed(0))
    h = (torch.rand(2, 2, 3, 4, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    with torch.no_grad():
        assert torch.allclose(m.hidden_logits(v).reshape(2, -1), fc.hidden_logits(v.reshape(2, -1)), atol=1e-5)
        assert torch.allclose(m.visible_mean(h).reshape(2, -1), fc.visible_mean(h.reshape(2, -1)), atol=1e-5)


def test_probabilistic_max_pooling_against_brute_force():
    """Blocks of 2×2 with at most one unit on: F(v) and p(h_i = 1 | v) by enumerating all
    5⁴ hidden states of a 4×4 torus, and the sampler's draws (never two on in a block)."""
    m = random_model("gaussian", channels=1, n_filters=1, f=3, pooling=2)
    H = W = 4
    fc = fully_connected(m, H, W)
    v = torch.randn(1, 1, H, W, generator=torch.Generator().manual_seed(2))
    blocks = [[(by * 2 + dy) * W + bx * 2 + dx for dy in (0, 1) for dx in (0, 1)] for by in (0, 1) for bx in (0, 1)]
    states = []
    for choice in itertools.product(range(5), repeat=4):  # per block: one of 4 units on, or none
        h = torch.zeros(H * W)
        for block, c in zip(blocks, choice):
            if c < 4:
                h[block[c]] = 1.0
        states.append(h)
    hs = torch.stack(states).double()  # [625, 16]
    with torch.no_grad():
        vf = v.reshape(1, -1).double()
        var = m.variance.double()
        e = ((vf - m.visible_bias.double()) ** 2 / (2 * var)).sum() - hs @ (fc.hidden_logits(v.reshape(1, -1)).double()[0])
        log_z = torch.logsumexp(-e, 0)
        assert math.isclose(m.free_energy(v).item(), -log_z.item(), rel_tol=1e-5, abs_tol=1e-4)
        marg = (torch.softmax(-e, 0)[:, None] * hs).sum(0)
        assert torch.allclose(m.hidden_probs(v).reshape(-1).double(), marg, atol=1e-6)
        # draws: one unit on or none per block, at the block's probabilities
        p = m.hidden_probs(v).expand(4000, -1, -1, -1)
        draws = m.draw_hidden(p, torch.Generator().manual_seed(3))
        per_block = draws.reshape(4000, 2, 2, 2, 2).permute(0, 1, 3, 2, 4).reshape(4000, 4, 4).sum(-1)
        assert per_block.max().item() == 1.0
        assert torch.allclose(draws.mean(0).reshape(-1).double(), marg, atol=0.03)


# ------------------------------------------------------------------------ the stripes
PERIOD = 8


def stripes(height=96, width=96, seed=0) -> torch.Tensor:
    """Vertical stripes of period 8 px (a sine, grey), with a little noise: uint8 [1, 1, H, W]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(width).float()
    row = 0.5 + 0.35 * torch.sin(2 * math.pi * x / PERIOD)
    img = row.expand(height, width) + 0.04 * torch.randn(height, width, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)[None, None]


@pytest.fixture(scope="module")
def stripe_model():
    torch.manual_seed(0)
    model = ConvRBM(ConvRBMConfig(channels=1, n_filters=8, filter_size=9, image_shape=(1, 96, 96)))
    cfg = ConvRBMTrainConfig(epochs=3, steps_per_epoch=60, batch_size=8, crop=32, learning_rate=0.01, k=2, seed=0,
                             threads=1, frame_every=0)
    trainer = ConvRBMTrainer(model, stripes(), cfg)
    events = list(trainer.run())
    assert events[-1].kind == "done" and trainer.step == 180
    return model, trainer


def dominant_period(img: torch.Tensor, axis: int) -> float:
    """The period (px) of the strongest frequency along `axis` of a [H, W] image (rows' or
    columns' power spectra averaged)."""
    x = img - img.mean()
    power = torch.fft.rfft(x, dim=axis).abs().pow(2).mean(1 - axis)
    power[0] = 0
    return img.shape[axis] / int(power.argmax())


def test_training_on_stripes_recovers_their_period(stripe_model):
    """The sample's spectrum across the stripes peaks at the stripes' period, give or take one
    frequency bin (96 px hold 12 stripes of 8 px, or 11 or 13 of 8.7 or 7.4 px: a 9 px filter
    sees just over one period), and the peak stands far above every other frequency."""
    model, _ = stripe_model
    sample = synthesize(model, 96, 96, n=1, steps=40, seed=0)[0, 0]
    assert abs(dominant_period(sample, axis=1) - PERIOD) < 1.0
    assert peak_prominence(sample, axis=1) > 100
    assert dominant_period(sample, axis=0) > 40  # down the stripes: no period shorter than the image's half
    # the stripes run vertically: far more contrast across columns than down rows
    across = (sample[:, 1:] - sample[:, :-1]).abs().mean()
    along = (sample[1:, :] - sample[:-1, :]).abs().mean()
    assert across > 2 * along


def peak_prominence(img: torch.Tensor, axis: int) -> float:
    """The strongest frequency's power along `axis` over the median power of the others."""
    x = img - img.mean()
    power = torch.fft.rfft(x, dim=axis).abs().pow(2).mean(1 - axis)[1:]
    top = int(power.argmax())
    rest = torch.cat([power[:top], power[top + 1 :]])
    return float(power[top] / rest.median().clamp_min(1e-12))


def test_a_periodic_sample_is_seamless(stripe_model):
    """The wrap-around edge differs no more than interior neighbours do; a crop of the stripes
    whose width is not a whole number of periods shows its seam by the same measure."""
    model, _ = stripe_model
    sample = synthesize(model, 60, 68, n=2, steps=40, seed=1)  # sides not a multiple of the period
    for axis in (-1, -2):  # across columns, across rows
        seam, interior = neighbour_differences(sample, axis)
        assert seam <= 1.1 * interior.max()  # as much as the most different pair of interior neighbours
        assert seam <= 3 * interior.mean()
    crop = stripes(60, 80)[..., 2:71].float() / 255  # from a crest to a trough: tiled, the stripes jump
    seam, interior = neighbour_differences(crop, -1)
    assert seam > 2 * interior.max()
    assert seam_ratio(crop) > 1.5  # (the bench's measure; on stripes the sample's depends on where the seam falls in a stripe)


def neighbour_differences(images: torch.Tensor, axis: int) -> tuple[float, torch.Tensor]:
    """(mean |difference| across the wrap-around seam, the same across each interior pair of
    neighbouring columns (axis -1) or rows (axis -2))."""
    x = images.float().movedim(axis, -1)
    interior = (x[..., 1:] - x[..., :-1]).abs().flatten(0, -2).mean(0)
    return float((x[..., 0] - x[..., -1]).abs().mean()), interior


# --------------------------------------------------------------------------- sampling
def test_sampler_sizes_seeds_temperature_and_the_brush(stripe_model):
    model, _ = stripe_model
    s = model.make_sampler(n_chains=2, seed=0, size=(40, 72))
    assert s.images().shape == (2, 1, 40, 72) and s.image_shape == (1, 40, 72)
    seed = stripes(16, 16)  # smaller than the torus: tiled (48×80), then the middle 40×72 taken
    s.reset(2, start=seed)
    y, x = torch.meshgrid(torch.arange(40), torch.arange(72), indexing="ij")
    expected = seed[0, 0][(y + 4) % 16, (x + 4) % 16].float() / 255
    assert torch.allclose(s.images("samples")[1, 0], expected, atol=1e-5)
    # the dream brush: the clamp mask arrives flat, [n, V]; clamped pixels never change
    mask = torch.zeros(2, 1, 40, 72, dtype=torch.bool)
    mask[:, :, :, :36] = True
    before = s.states("samples").clone()
    s.clamp(mask.reshape(2, -1))
    s.temperature = 1.5
    s.step(5)
    after = s.states("samples")
    assert torch.equal(after[mask], before[mask])
    assert (after[~mask] - before[~mask]).abs().mean() > 0.1
    s.unclamp()
    s.reset(1, size=(24, 24))
    assert s.states().shape == (1, 1, 24, 24) and s.clamp_mask is None
    with pytest.raises(ConvRBMError, match="clamp"):
        s.clamp(torch.ones(7, dtype=torch.bool))


def test_pooled_sizes_and_bad_settings_are_refused_with_one_sentence():
    pooled = ConvRBM(ConvRBMConfig(n_filters=2, filter_size=3, pooling=2))
    with pytest.raises(ConvRBMError, match="multiple of the pooling size 2"):
        pooled.make_sampler(size=(64, 65))
    assert pooled.make_sampler(size=(64, 66)).images().shape == (1, 1, 64, 66)
    for bad in ({"n_filters": 0}, {"filter_size": 100}, {"visible": "poisson"}, {"var_floor": float("nan")},
                {"channels": 3, "image_shape": (1, 8, 8)}, {"n_filters": 10**9}, {"image_shape": (1, 8)}):
        with pytest.raises(ConvRBMError) as e:
            ConvRBMConfig(**bad)
        assert "\n" not in str(e.value) and str(e.value)
    with pytest.raises(ConvRBMError, match="unknown texture model setting"):
        ConvRBMConfig.from_dict({"n_filters": 4, "evil": 1})
    model = ConvRBM(ConvRBMConfig(n_filters=2, filter_size=9))
    with pytest.raises(ConvRBMError, match="too small"):
        ConvRBMTrainer(model, torch.zeros(1, 1, 6, 6, dtype=torch.uint8))
    with pytest.raises(ConvRBMError, match="channel"):
        ConvRBMTrainer(model, torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ConvRBMError, match="not finite"):
        ConvRBMTrainer(model, torch.full((1, 1, 32, 32), float("nan")))
    with pytest.raises(ConvRBMError, match="GiB"):
        model.make_sampler(n_chains=64, size=(8192, 8192))


# ---------------------------------------------------------------------- saving, resuming
def test_config_and_state_round_trip(tmp_path, stripe_model):
    from safetensors.torch import load_file, save_file

    model, _ = stripe_model
    (tmp_path / "config.json").write_text(json.dumps(model.config.to_dict()))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    config = ConvRBMConfig.from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert config == model.config
    again = ConvRBM(config)
    again.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    a = synthesize(model, 32, 32, steps=3, seed=5)
    b = synthesize(again, 32, 32, steps=3, seed=5)
    assert torch.equal(a, b)


def test_checkpoint_round_trip_and_resume_with_the_kinds_record(tmp_path):
    """Through its record in models.kinds.KINDS, a texture model and its trainer save through
    models.checkpoint, load, and resume on the step an uninterrupted run takes."""
    from models import checkpoint
    from models.conv_rbm import load, save
    from models.factory import Options, build

    data = stripes(48, 48)
    trainer = build(Options(kind="texture", image_shape=(1, 48, 48), hidden=4, epochs=1, seed=3, frame_every=0,
                            extra={"filter_size": 5, "crop": 24, "steps_per_epoch": 4, "n_chains": 2, "threads": 1}), data)
    trainer.fit()
    path = save(tmp_path / "t.safetensors", trainer.model, trainer=trainer, preprocess={"size": 48, "color": False})
    model = load(path)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert model.config == trainer.model.config
    resumed = checkpoint.load_checkpoint(path).make_trainer(data, epochs=2)
    trainer.config.epochs = 2
    trainer.fit()
    resumed.fit()
    for k, v in trainer.model.state_dict().items():
        assert torch.allclose(resumed.model.state_dict()[k], v, atol=1e-6), k
    # a checkpoint of another kind is not a texture model
    from models.rbm import BernoulliRBM, RBMConfig as RC

    other = checkpoint.save_checkpoint(tmp_path / "rbm.safetensors", BernoulliRBM(RC(4, 2, image_shape=(1, 2, 2))))
    with pytest.raises(checkpoint.CheckpointError, match="not a texture model"):
        load(other)


def test_trainer_state_is_checked_when_loaded(stripe_model):
    _, trainer = stripe_model
    tensors, meta = trainer.state()
    tensors = dict(tensors)
    tensors["extra.sampler.hidden"] = tensors["extra.sampler.hidden"][:, :3]
    fresh = ConvRBMTrainer(ConvRBM(trainer.model.config), stripes(), trainer.config)
    with pytest.raises(ValueError, match="hidden"):
        fresh.load_state(tensors, meta)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("pooling", [1, 2])
def test_fast_sweeps_draw_from_the_same_conditionals(pooling, dtype):
    """The free-running sampler's fast sweeps (bfloat16 where the CPU has it, float32 on any
    CPU): hidden units drawn at p(h | v) (averaged over 300 sweeps from one state), E[v | h]
    that of the float32 model within bfloat16's rounding, and the torus's borders copied right
    (a 9 px filter on a 12×10 torus)."""
    from models.conv_rbm import _FastSweeps, bf16_convolutions_available
    from models.noise import NoiseSource

    if dtype == torch.bfloat16 and not bf16_convolutions_available(torch.device("cpu")):
        pytest.skip("this CPU has no bfloat16 convolutions")

    m = random_model("gaussian", channels=1, n_filters=4, f=9, pooling=pooling, seed=4)
    with torch.no_grad():
        m.weight.mul_(0.3)
    g = torch.Generator().manual_seed(0)
    v = torch.randn(1, 1, 12, 10, generator=g)
    fast, noise = _FastSweeps(m, dtype), NoiseSource(g)
    assert fast.sweep(v, 1.0, noise, g)[0].dtype == dtype
    total = torch.zeros(1, 4, 12, 10)
    for _ in range(300):
        h, mean, sample = fast.sweep(v, 1.0, noise, g)
        total += h.float()
        if pooling > 1:  # never two units on in a block
            assert F.max_pool2d(F.avg_pool2d(h.float(), 2) * 4, 1).max() <= 1
        with torch.no_grad():
            want = m.visible_mean(h.float())
        assert torch.allclose(mean, want, atol=0.02 * want.abs().max().item() + 1e-3)
    with torch.no_grad():
        p = m.hidden_probs(v)
    assert (total / 300 - p).abs().max() < 0.12  # 3.5 standard deviations of a frequency of 300 draws
    assert (total / 300 - p).abs().mean() < 0.025
    s = m.make_sampler(n_chains=1, seed=0, size=(12, 10))
    assert s._fast() is not None
    s.free_running = False  # a trainer's chains take the float32 path
    assert s._fast() is None


def test_the_trained_model_holds_the_moving_average_of_its_parameters():
    """Between runs the model holds the (bias-corrected) moving average of the trained
    parameters, and the trainer the last trained values, which the next run starts from."""
    torch.manual_seed(0)
    model = ConvRBM(ConvRBMConfig(n_filters=4, filter_size=5))
    cfg = ConvRBMTrainConfig(epochs=1, steps_per_epoch=20, crop=24, k=1, n_chains=2, seed=0, threads=1, frame_every=0)
    trainer = ConvRBMTrainer(model, stripes(48, 48), cfg)
    trainer.fit()
    assert trainer._avg_count == trainer.step == 20
    correction = 1 - trainer.config.average**trainer._avg_count
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p, trainer._avg[name] / correction, atol=1e-6), name
            assert not torch.equal(p, trainer._raw[name]), name
    raw = {n: t.clone() for n, t in trainer._raw.items()}
    trainer.config.epochs = 2
    run = trainer.run()
    next(run)  # one more step, from the raw values
    run.close()
    assert trainer.step == 21 and trainer._avg_count == 21
    assert all(not torch.equal(trainer._raw[n], raw[n]) for n in raw)


def _block_states(h: torch.Tensor, k: int) -> torch.Tensor:
    """Per k×k block of hidden maps [n, K, H, W] (0/1): which unit is on (0 … k²-1, row-major), or k² for none."""
    n, K, H, W = h.shape
    units = h.float().unflatten(3, (W // k, k)).unflatten(2, (H // k, k)).permute(0, 1, 2, 4, 3, 5).reshape(n, K, H // k, W // k, k * k)
    on = units.sum(-1)
    assert on.max() <= 1  # never two units on in a block
    return torch.where(on == 1, units.argmax(-1), k * k)


def _binomial_ok(freq: torch.Tensor, p: torch.Tensor, draws: int, sigmas: float = 5.0) -> None:
    """Every frequency within `sigmas` binomial standard errors (plus one count) of its probability."""
    se = (p * (1 - p) / draws).sqrt()
    worst = ((freq - p).abs() / (se + 1.0 / draws)).max().item()
    assert worst < sigmas, f"a frequency lies {worst:.1f} standard errors from its probability"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("visible,channels,pooling,f", [("gaussian", 1, 2, 3), ("binary", 3, 3, 5), ("gaussian", 2, 1, 3)])
def test_fast_sweeps_draw_each_pooling_block_state_at_its_exact_probability(visible, channels, pooling, f, dtype):
    """The bfloat16 sweeps' one-uniform-per-block draw (`draw_pooled`; without pooling, one
    Bernoulli draw per unit): over 20,000 draws from one visible state, each block's states
    (each unit on, all off) come up at p(h | v) of the float32 model within 5 binomial
    standard errors. Weights, biases and pixels are multiples of ¼ with σ² = 1, so the
    bfloat16 logits are exact and any gap is the sampler's. Also E[v | h] of the split 1×f
    convolutions against the model's (1 to 3 channels), the sweep cut into strips of rows
    (the last one shorter with pooling 1 and 2)."""
    from models.conv_rbm import _FastSweeps, bf16_convolutions_available
    from models.noise import NoiseSource

    if dtype == torch.bfloat16 and not bf16_convolutions_available(torch.device("cpu")):
        pytest.skip("this CPU has no bfloat16 convolutions")
    torch.manual_seed(1)
    m = ConvRBM(ConvRBMConfig(channels=channels, n_filters=2, filter_size=f, pooling=pooling, visible=visible))
    with torch.no_grad():
        m.weight.copy_(torch.randint(-1, 2, m.weight.shape) * (0.5 if channels == 1 else 0.25))
        m.hidden_bias.copy_(torch.tensor([-1.0, 0.5]))
        m.log_variance.zero_()
        m.visible_bias.copy_(torch.randint(-2, 3, (channels,)) * 0.5)
    low = 0 if visible == "binary" else -1
    v = torch.randint(low, 2, (1, channels, 6, 6)).float()
    with torch.no_grad():
        logits = m.hidden_logits(v)
        assert torch.equal(logits.bfloat16().float(), logits)  # exact in bfloat16
        p = m.hidden_probs(v)
    k, n, sweeps = pooling, 4000, 5
    k2 = k * k
    p_units = p[0].unflatten(2, (6 // k, k)).unflatten(1, (6 // k, k)).permute(0, 1, 3, 2, 4).reshape(2, 6 // k, 6 // k, k2)
    exact = torch.cat([p_units, 1 - p_units.sum(-1, keepdim=True)], -1)  # [K, blocks, blocks, k² + 1]
    assert 0.02 < exact.max() and exact.min() < 0.5  # a range of probabilities, not all near 0 or 1

    g = torch.Generator().manual_seed(0)
    fast, noise = _FastSweeps(m, dtype), NoiseSource(g)
    fast.strip_units = 4 * n * 6 * max(2, channels * f)  # strips of whole blocks, about 4 rows: 4 + 2 rows (pooling 2), 3 + 3 (pooling 3)
    fast.strip_outputs = 4 * n * 6 * channels * f  # the visible half's strips: 4 + 2 rows
    counts = torch.zeros_like(exact)
    vs = v.expand(n, -1, -1, -1).contiguous()
    for i in range(sweeps):
        h, mean, _ = fast.sweep(vs, 1.0, noise, g)
        counts += F.one_hot(_block_states(h, k), k2 + 1).sum(0)
        if i == 0:
            with torch.no_grad():
                want = m.visible_mean(h[:50].float())
            assert torch.allclose(mean[:50], want, atol=0.01 * want.abs().max().item() + 1e-3)
    _binomial_ok(counts / (n * sweeps), exact, n * sweeps)


def test_draw_pooled_is_exact_for_logits_that_overflow_exp():
    """`draw_pooled` with logits beyond float32's exp (100, 99, 97: each block shifted by its
    largest logit), logits far below it (-200: always off), pooling 3 and float32 logits:
    frequencies within 5 binomial standard errors of the softmax with the "off" state."""
    from models.conv_rbm.sampler import draw_pooled

    n, k = 20000, 3
    block_a = torch.tensor([100.0, 99.0, 97.0, -5.0, 98.5, -300.0, 0.0, 99.5, 90.0])
    block_b = torch.full((9,), -200.0)
    block_c = torch.tensor([-1.0, 0.5, -2.0, -0.3, 1.0, -4.0, 0.0, -1.5, -0.7])
    blocks = torch.stack([block_a, block_b, block_c]).view(3, k, k)  # [3 blocks, dy, dx]
    logits = blocks.permute(1, 0, 2).reshape(1, 1, k, 3 * k).expand(n, 1, k, 3 * k).contiguous()
    g = torch.Generator().manual_seed(0)
    u = torch.rand(n, 1, 1, 3, generator=g)
    out = torch.full(logits.shape, 7.0, dtype=torch.bfloat16)
    draw_pooled(logits, k, u, out)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    freq = F.one_hot(_block_states(out, k), k * k + 1).float().mean(0)[0, 0]  # [3, 10]
    exact = torch.softmax(torch.cat([blocks.reshape(3, 9).double(), torch.zeros(3, 1, dtype=torch.float64)], 1), 1).float()
    assert freq[1, 9] == 1.0  # block b: always off
    _binomial_ok(freq, exact, n)


def test_a_cycling_sampler_warms_up_again_from_where_it_is_every_cycle_sweeps():
    """`cycle` (the Dreams tab's texture): every `cycle` sweeps an annealing runs again on the
    current state (from `CYCLE_ANNEAL`, gentler than the first from noise), not from noise; a
    reset starts the count again."""
    from models.conv_rbm.sampler import CYCLE_ANNEAL, DEFAULT_ANNEAL

    s = ConvGibbsSampler(random_model(), n_chains=1, seed=0, size=(12, 12))
    s.warm_up, s.cycle = 3, 5
    s.reset()
    temps, states = [], []
    real = s._sweep

    def sweep(t):
        temps.append(round(t, 6))
        states.append(s.visible.clone())
        real(t)

    s._sweep = sweep
    s.step(12)
    hot = [i for i, t in enumerate(temps) if t > 1.0]
    assert hot == [0, 1, 5, 6, 10, 11] and temps[0] == DEFAULT_ANNEAL and temps[5] == temps[10] == CYCLE_ANNEAL
    assert temps[2] == temps[7] == 1.0
    assert not torch.equal(states[5], states[0])  # warmed again from the state reached, not from noise
    s.reset()  # a reset counts from 0 again
    temps.clear()
    s.step(4)
    assert [t > 1.0 for t in temps] == [True, True, False, False]
    s.cycle = 0  # off: once warmed, it stays at T
    temps.clear()
    s.step(10)
    assert set(temps) == {1.0}
