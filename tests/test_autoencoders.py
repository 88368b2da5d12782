"""The smooth half: the convolutional autoencoder, the VAE (KL in closed form, ELBO, sampling,
interpolation, latent walk), the AE+RBM hybrid (two phases in one event stream, decoded
chains), and what every kind must do: seeded runs repeat bit for bit, a divergence stops with
the last good weights, checkpoints round-trip and resume."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors import safe_open

from models.autoencoder import AEConfig, AETrainConfig, AETrainer, ConvAutoencoder, conv_layout
from models.checkpoint import load_checkpoint, save_checkpoint
from models.factory import Options, build, evaluate, make_sampler
from models.hybrid import HybridConfig, LatentGibbsSampler
from models.training import TrainingDiverged
from models.vae import ConvVAE, LatentWalkSampler, VAEConfig, VAETrainConfig, VAETrainer, slerp

SHAPE = (1, 28, 28)
TINY = {"width": 8}  # first-stage channels: tiny models keep this file fast


def make_shapes(n: int = 64, size: int = 28, seed: int = 0) -> torch.Tensor:
    """n grayscale images uint8 [n, 1, size, size]: a soft disc or square at a random place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((n, 1, size, size), dtype=np.uint8)
    for i in range(n):
        cx, cy = rng.uniform(0.3, 0.7, 2) * size
        r = rng.uniform(0.15, 0.3) * size
        d = np.hypot(xx - cx, yy - cy) if i % 2 else np.maximum(np.abs(xx - cx), np.abs(yy - cy))
        out[i, 0] = (255 / (1 + np.exp(d - r))).astype(np.uint8)
    return torch.from_numpy(out)


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return make_shapes(64)


def options(kind: str, epochs: int = 2, seed: int = 0, **extra) -> Options:
    if kind in ("ae", "vae", "hybrid"):
        extra = {**TINY, **extra}
    if kind == "hybrid":
        extra.setdefault("rbm_epochs", 3)
    else:
        extra.pop("rbm_epochs", None)  # lets one call site serve every kind
    return Options(kind=kind, image_shape=SHAPE, latent=8, hidden=16, epochs=epochs, batch_size=16, seed=seed,
                   frame_every=2, n_chains=8, extra=extra)


def state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


# ------------------------------------------------------------------------ architecture
@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (48, 1), (64, 3), (100, 1), (128, 3)])
def test_autoencoders_give_exactly_the_input_size(size, channels):
    n, final, padded = conv_layout(size)
    assert 4 <= final <= 7 and padded >= size and padded - size < 2**n
    x = torch.randint(0, 256, (2, channels, size, size), dtype=torch.uint8)
    ae = ConvAutoencoder(AEConfig(image_size=size, channels=channels, latent=6, width=4, sigmoid_codes=True))
    codes = ae.encode(x)
    assert codes.shape == (2, 6) and codes.min() >= 0 and codes.max() <= 1
    out = ae(x)
    assert out.shape == (2, channels, size, size) and out.min() >= 0 and out.max() <= 1
    vae = ConvVAE(VAEConfig(image_size=size, channels=channels, latent=6, width=4))
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (2, 6)
    assert vae.sample(3).shape == (3, channels, size, size)


def test_configs_refuse_what_they_cannot_build():
    with pytest.raises(ValueError, match="between 28 and 128"):
        AEConfig(image_size=16)
    with pytest.raises(ValueError, match="channels"):
        VAEConfig(channels=2)
    with pytest.raises(ValueError, match="latent"):
        VAEConfig(latent=1)
    with pytest.raises(ValueError, match="likelihood"):
        VAEConfig(likelihood="poisson")
    with pytest.raises(ValueError, match="sigmoid codes"):
        HybridConfig(AEConfig(latent=8))
    with pytest.raises(ValueError, match="square"):
        build(Options(kind="vae", image_shape=(1, 28, 32)), make_shapes(4))
    with pytest.raises(ValueError, match="unknown vae option"):
        build(options("vae", widht=4), make_shapes(4))


# -------------------------------------------------------------------------------- VAE
def test_kl_equals_the_closed_form_of_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 5, generator=g) * 2
    logvar = torch.randn(6, 5, generator=g) * 1.5
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    want = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(ConvVAE.kl_divergence(mu, logvar), want, atol=1e-5)
    assert ConvVAE.kl_divergence(torch.zeros(2, 5), torch.zeros(2, 5)).abs().max() == 0  # q = p


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_elbo_is_the_likelihood_term_minus_kl(data, likelihood):
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(latent=4, width=4, likelihood=likelihood, sigma=0.2))
    x = vae.images_to_input(data[:5])
    elbo = vae.elbo(x, generator=torch.Generator().manual_seed(3))
    # The same draw of z, through torch.distributions.
    mu, logvar = vae.encode(x)
    z = vae.reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    mean = vae.decode(z)
    if likelihood == "bernoulli":
        log_px = torch.distributions.Bernoulli(logits=vae.decode_logits(z), validate_args=False).log_prob(x).flatten(1).sum(1)
    else:
        log_px = torch.distributions.Normal(mean, 0.2).log_prob(x).flatten(1).sum(1)
    kl = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(elbo, log_px - kl, rtol=1e-5, atol=1e-3)


def test_elbo_improves_on_a_fixed_small_set(data):
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(latent=8, width=8))
    before = vae.evaluate(data)
    events = list(VAETrainer(vae, data, VAETrainConfig(epochs=25, batch_size=16, learning_rate=3e-3, seed=0, frame_every=0)).run())
    after = vae.evaluate(data)
    assert after["elbo"] > before["elbo"] + 150, (before, after)  # nats per image
    assert after["recon_error"] < 0.5 * before["recon_error"]
    assert after["kl"] > 0 and after["elbo"] == pytest.approx(after["log_px"] - after["kl"], abs=1e-3)
    epochs = [e.metrics for e in events if e.kind == "epoch"]
    assert epochs[-1]["elbo"] > epochs[0]["elbo"] and all(math.isfinite(v) for m in epochs for v in m.values())
    # latent_usage is the KL split per dimension: it sums to the average KL.
    usage = vae.latent_usage(data)
    assert usage.shape == (8,) and (usage >= 0).all()
    assert usage.sum().item() == pytest.approx(after["kl"], rel=1e-4)


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_endpoints_are_the_reconstructions(data, method):
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(latent=8, width=8)).eval()
    a, b = data[0], data[1]
    path = vae.interpolate(a, b, steps=6, method=method)
    assert path.shape == (6, *SHAPE)
    with torch.no_grad():
        rec = vae.reconstruct(data[:2])
    assert torch.allclose(path[0], rec[0], atol=1e-5) and torch.allclose(path[-1], rec[1], atol=1e-5)
    assert not torch.allclose(path[2], rec[0], atol=1e-4)  # it moves in between
    batch = vae.interpolate(data[:3], data[3:6], steps=4, method=method)
    assert batch.shape == (3, 4, *SHAPE)
    assert torch.allclose(batch[:, 0], vae.reconstruct(data[:3]).detach(), atol=1e-5)


def test_slerp_keeps_to_the_sphere_and_lerp_cuts_through():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    t = torch.tensor([0.0, 0.5, 1.0])
    s = slerp(a, b, t)
    assert torch.allclose(s[1].norm(), torch.tensor(1.0)) and torch.allclose(s[1], torch.tensor([[0.7071068, 0.7071068]]))
    assert torch.equal(ConvVAE.interpolate_latents(a, b, 3, "linear")[1], torch.tensor([[0.5, 0.5]]))


def test_latent_walk_has_the_sampler_surface_and_keeps_the_tempered_prior():
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(latent=8, width=4))
    s = make_sampler(vae, 512, seed=1, temperature=4.0)
    assert isinstance(s, LatentWalkSampler) and s.n_chains == 512 and s.temperature == 4.0
    s.step(300)
    assert s.states().var().item() == pytest.approx(4.0, rel=0.1)  # stationary: N(0, T·I)
    before = s.images("probs")
    s.step(1)
    after = s.images("probs")
    assert after.shape == (512, *SHAPE) and 0 <= after.min() and after.max() <= 1
    assert not torch.equal(before, after) and (after - before).abs().mean() < 0.1  # slow morphing
    s.reset(3, start=make_shapes(3))
    assert s.n_chains == 3 and torch.allclose(s.states(), vae.encode(make_shapes(3))[0])
    a = make_sampler(vae, 4, seed=7).step(5).images()
    b = make_sampler(vae, 4, seed=7).step(5).images()
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------- hybrid
def test_hybrid_runs_both_phases_as_one_stream_and_dreams_in_range(data):
    tr = build(options("hybrid", epochs=2, rbm_epochs=4), data)
    events = list(tr.run())
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == list(range(1, tr.total_steps + 1))  # monotonic, covers both phases
    assert all(e.total_steps == tr.total_steps for e in events) and events[-1].kind == "done"
    phases = [e.metrics["phase"] for e in steps]
    assert phases == sorted(phases) and set(phases) == {1.0, 2.0}
    epochs = [e.epoch for e in events if e.kind == "epoch"]
    assert epochs == list(range(1, 7)) and events[-1].total_epochs == 6
    frames = [(e.metrics["phase"], e.frame) for e in steps if e.frame is not None]
    assert {f.shape[0] for p, f in frames if p == 2} == {8}  # phase 2 frames: the 8 decoded chains
    assert all(f.shape[1:] == SHAPE for _, f in frames)

    model = tr.model
    assert set(model.state_dict()) == {f"autoencoder.{k}" for k in model.autoencoder.state_dict()} | {f"rbm.{k}" for k in model.rbm.state_dict()} | {"code_mean"}
    codes = model.autoencoder.encode_images(data)
    assert torch.allclose(model.code_mean, codes.mean(0), atol=1e-5)  # kept for the code chains' tempering
    s = make_sampler(model, 10, seed=0)
    assert isinstance(s, LatentGibbsSampler)
    first = s.step(1).images("probs")
    assert first.shape == (10, *SHAPE) and first.min() >= 0 and first.max() <= 1
    later = s.step(5).images("probs")
    assert not torch.equal(first, later)  # the stream moves
    assert s.images("samples").shape == (10, *SHAPE)
    s.temperature = 2.0
    assert s.gibbs.temperature == 2.0
    s.reset(4, start=data[:4])
    assert s.n_chains == 4 and torch.allclose(s.states(), model.encode(data[:4]))
    m = evaluate(model, data)
    assert {"recon_error", "code_recon_error"} <= set(m) and all(math.isfinite(v) for v in m.values())


# ------------------------------------------------------------------------- every kind
@pytest.mark.parametrize("kind", ["ae", "vae", "hybrid"])
def test_seeded_runs_are_bit_reproducible(data, kind):
    def run(seed):
        tr = build(options(kind, seed=seed), data)
        metrics = [e.metrics for e in tr.run()]
        return tr.model.state_dict(), metrics

    s1, m1 = run(0)
    s2, m2 = run(0)
    s3, _ = run(1)
    assert state_equal(s1, s2) and m1 == m2
    assert not state_equal(s1, s3)


@pytest.mark.parametrize("kind,phase", [("ae", 1), ("vae", 1), ("hybrid", 1), ("hybrid", 2), ("grbm", 1)])
def test_forced_divergence_stops_with_the_last_good_weights(data, kind, phase):
    opts = options(kind, epochs=4, rbm_epochs=6, snapshot_every=5)  # 16 steps; the hybrid 16 + 18
    if kind == "grbm":
        opts.image_shape, data = (1, 8, 8), data[:, :, 10:18, 10:18].contiguous()
    tr = build(opts, data)
    gen = tr.run()
    stop = 11 if phase == 1 else tr.ae_total_steps + 11  # hybrid: 16 AE steps, then the RBM's
    for ev in gen:
        if ev.step == stop:
            break
    assert ev.metrics.get("phase", 1.0) == phase
    good = {k: v.clone() for k, v in tr.good_state.items()}
    good_step = tr.good_step
    assert stop - 3 <= good_step < stop
    inner = getattr(tr, "active", tr)  # the hybrid's phase trainer holds its own learning rate
    lr = inner.config.learning_rate
    inner.config.learning_rate = float("inf")  # the next step blows the weights up
    with pytest.raises(TrainingDiverged) as info:
        for _ in range(5):
            next(gen)
    msg = str(info.value)
    assert "diverged" in msg and f"rolled back to step {good_step}" in msg and "NaN or infinite" in msg
    assert info.value.good_step == good_step
    state = tr.model.state_dict()
    assert state_equal(state, good)
    assert all(torch.isfinite(v).all() for v in state.values())
    if kind != "grbm":  # with a sane rate again, training goes on from the restored weights
        inner.config.learning_rate = lr
        events = list(tr.run())
        assert events[-1].kind == "done" and all(math.isfinite(v) for e in events for v in e.metrics.values())
        assert all(torch.isfinite(v).all() for v in tr.model.state_dict().values())


@pytest.mark.parametrize("kind", ["ae", "vae", "hybrid"])
def test_checkpoint_round_trip(tmp_path, data, kind):
    tr = build(options(kind), data)
    tr.fit()
    path = save_checkpoint(tmp_path / f"{kind}.safetensors", tr.model, trainer=tr, preprocess={"size": 28})
    ck = load_checkpoint(path)
    assert ck.kind == kind and type(ck.model) is type(tr.model) and ck.preprocess == {"size": 28}
    assert ck.model.config == tr.model.config
    assert state_equal(ck.model.state_dict(), tr.model.state_dict())
    with torch.no_grad():
        assert torch.equal(ck.model(data[:4]), tr.model.eval()(data[:4]))
    with safe_open(str(path), framework="pt") as f:
        names = set(f.keys())
    if kind == "hybrid":  # one file, both parts
        assert any(n.startswith("autoencoder.encoder.") for n in names)
        assert {"rbm.weight", "rbm.visible_bias", "rbm.hidden_bias"} <= names


@pytest.mark.parametrize("kind,where", [("ae", 5), ("vae", 5), ("hybrid", 10), ("hybrid", 21)])
def test_resume_from_checkpoint_continues_bit_for_bit(tmp_path, data, kind, where):
    """Stopping at step `where`, saving, loading and going on lands on the same weights as
    one uninterrupted run (hybrid: 10 is inside the AE phase, 21 inside the RBM phase)."""
    whole = build(options(kind, epochs=4, rbm_epochs=3), data)
    whole.fit()
    part = build(options(kind, epochs=4, rbm_epochs=3), data)
    gen = part.run()
    for ev in gen:
        if ev.kind == "step" and ev.step == where:
            break
    gen.close()
    path = save_checkpoint(tmp_path / "part.safetensors", part.model, trainer=part)
    resumed = load_checkpoint(path).make_trainer(data)
    assert resumed.step == where and resumed.total_steps == whole.total_steps
    events = list(resumed.run())
    assert events[0].step == where + 1 and events[-1].step == whole.total_steps
    assert state_equal(resumed.model.state_dict(), whole.model.state_dict())
    assert resumed.history == whole.history


def test_factory_evaluates_and_samples_every_kind(data):
    for kind in ("ae", "vae", "hybrid"):
        tr = build(options(kind, epochs=1, rbm_epochs=1), data)
        tr.fit()
        m = evaluate(tr.model, data)
        assert "recon_error" in m and all(math.isfinite(v) for v in m.values())
        if kind == "vae":
            assert {"elbo", "kl"} <= set(m)
        if kind == "ae":
            with pytest.raises(ValueError, match="no sampler"):
                make_sampler(tr.model, 4)
        else:
            imgs = make_sampler(tr.model, 4, seed=0).step(2).images("probs")
            assert imgs.shape == (4, *SHAPE)


@pytest.mark.parametrize("noise", [0.0, 2.0])
def test_sigmoid_codes_stay_informative(data, noise):
    """Sigmoid codes of a small set must not saturate at one corner for every image (the
    encoder would stop learning); the codes vary between images and carry the reconstruction."""
    torch.manual_seed(0)
    ae = ConvAutoencoder(AEConfig(latent=8, width=8, sigmoid_codes=True))
    AETrainer(ae, data, AETrainConfig(epochs=40, batch_size=16, learning_rate=3e-3, code_noise=noise, seed=0, frame_every=0)).fit()
    codes = ae.encode_images(data)
    assert codes.min() >= 0 and codes.max() <= 1
    assert codes.std(0).min() > 0.05  # every unit varies over the images
    assert torch.equal(codes, ae.encode_images(data))  # the noise is for training only
    x = data.float() / 255
    mean_image_error = (x - x.mean(0)).pow(2).mean().item()
    assert ae.evaluate(data)["recon_error"] < 0.5 * mean_image_error


def test_hybrid_epochs_override_extends_the_rbm_phase():
    from models.hybrid import HybridTrainConfig

    cfg = HybridTrainConfig.from_dict({"ae_epochs": 2, "rbm_epochs": 3, "epochs": 5})
    assert (cfg.ae_epochs, cfg.rbm_epochs, cfg.epochs) == (2, 3, 5)  # as saved: unchanged
    cfg = HybridTrainConfig.from_dict({"ae_epochs": 2, "rbm_epochs": 3, "epochs": 10})  # "train to 10 epochs"
    assert (cfg.ae_epochs, cfg.rbm_epochs, cfg.epochs) == (2, 8, 10)


def test_hybrid_code_rbm_trains_with_tempered_chains_and_older_files_keep_plain_ones(data):
    from models.hybrid import HybridTrainConfig
    from models.tempering import TemperedSampler

    tr = build(options("hybrid", epochs=1, rbm_epochs=2), data)
    list(tr.run())
    assert tr.config.rbm_tempering == 10
    assert isinstance(tr.rbm_trainer.sampler, TemperedSampler) and tr.rbm_trainer.sampler.replicas == 10
    plain = build(options("hybrid", epochs=1, rbm_epochs=2, rbm_tempering=0), data)
    list(plain.run())
    assert not isinstance(plain.rbm_trainer.sampler, TemperedSampler)
    # A file saved before tempered training resumes with the plain chains it was trained with.
    assert HybridTrainConfig.from_dict({"ae_epochs": 2, "rbm_epochs": 3}).rbm_tempering == 0
    assert HybridTrainConfig.from_dict({"ae_epochs": 2, "rbm_epochs": 3, "rbm_tempering": 10}).rbm_tempering == 10


def test_hybrid_optimizer_belongs_to_the_active_phase_and_never_drops_an_assignment(data):
    tr = build(options("hybrid", epochs=1, rbm_epochs=1), data)
    assert tr.phase == 1 and tr.optimizer is tr.ae_trainer.optimizer
    fresh = tr.make_optimizer()
    tr.optimizer = fresh  # what a roll-back does: the active phase takes it
    assert tr.ae_trainer.optimizer is fresh and tr.optimizer is fresh
    with pytest.raises(ValueError, match="cannot be removed"):
        tr.optimizer = None
    assert tr.ae_trainer.optimizer is fresh
    tr.fit()
    assert tr.phase == 2 and tr.optimizer is tr.rbm_trainer.optimizer
    fresh = tr.make_optimizer()
    tr.optimizer = fresh
    assert tr.rbm_trainer.optimizer is fresh and tr.ae_trainer.optimizer is not fresh
