"""The ex-post mixture (models.mixture) and the VAE dreaming from it (ConvVAE.fit_prior)."""
from __future__ import annotations

import math

import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.factory import Options, build, sample_images
from models.mixture import default_components, fit_mixture
from models.vae import ConvVAE, VAEConfig, default_latent

CENTRES = torch.tensor([[-6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [6.0, 0.0, 3.0]])


def clusters(n_per: tuple[int, ...] = (100, 200, 300), spread: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    label = torch.cat([torch.full((n,), i) for i, n in enumerate(n_per)])
    return CENTRES[label] + spread * torch.randn(len(label), 3, generator=g), label


def test_em_recovers_three_clusters_their_weights_and_spread():
    z, _ = clusters()
    m = fit_mixture(z, 3, shrinkage=0.0, seed=1)
    order = torch.cdist(CENTRES, m.means).argmin(1)  # component of each true centre
    assert sorted(order.tolist()) == [0, 1, 2]
    assert torch.allclose(m.means[order], CENTRES, atol=0.15)
    assert torch.allclose(m.weights[order], torch.tensor([1 / 6, 2 / 6, 3 / 6]), atol=0.02)
    cov = m.scale_tril @ m.scale_tril.transpose(1, 2)
    assert torch.allclose(cov.diagonal(dim1=1, dim2=2), torch.full((3, 3), 0.25), atol=0.08)
    # Its draws land in the clusters in the same proportions.
    s = m.sample(6000, generator=torch.Generator().manual_seed(2))
    near = torch.cdist(s, CENTRES).argmin(1)
    assert torch.allclose(torch.bincount(near, minlength=3).float() / 6000, torch.tensor([1 / 6, 2 / 6, 3 / 6]), atol=0.02)
    # And it explains the data better than one Gaussian.
    one = fit_mixture(z, 1, seed=1)
    assert m.log_prob(z).mean() > one.log_prob(z).mean() + 1.0


def test_temperature_zero_gives_the_means_and_shrinkage_keeps_few_point_components_full_rank():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(12, 8, generator=g)  # 12 points, 8 dims, 4 components: 3 points each
    m = fit_mixture(z, 4, shrinkage=8.0, seed=0)
    eig = torch.linalg.eigvalsh(m.scale_tril @ m.scale_tril.transpose(1, 2))
    total = torch.linalg.eigvalsh(torch.cov(z.T))
    assert eig.min() > 0.05 * total.min()  # a 3-point covariance alone would have rank 2
    s = m.sample(50, temperature=0.0, generator=g)
    assert (s[:, None] - m.means[None]).norm(dim=-1).min(1).values.max() < 1e-5


def test_default_components_leave_five_images_per_component_up_to_ten():
    assert [default_components(n) for n in (3, 10, 40, 70, 10_000)] == [1, 2, 8, 10, 10]


def test_the_vae_latent_follows_the_number_of_images_unless_asked():
    # About eight images per latent dimension, 8 to 32: 70 faces get 8 (their dreams: MMD² 0.027
    # at 32, 0.020 at 8), a thousand images the full 32.
    assert [default_latent(n) for n in (10, 70, 100, 300, 10_000)] == [8, 8, 12, 32, 32]
    data = _blobs(40)
    small = build(Options(kind="vae", image_shape=(1, 28, 28), epochs=1, seed=0, frame_every=0, extra={"width": 4}), data)
    assert small.model.latent == 8 and small.model.config.prior_components == default_components(40)
    asked = build(Options(kind="vae", image_shape=(1, 28, 28), epochs=1, seed=0, frame_every=0, latent=5,
                          extra={"width": 4}), data)
    assert asked.model.latent == 5
    big = build(Options(kind="vae", image_shape=(1, 28, 28), epochs=1, seed=0, frame_every=0, extra={"width": 4}),
                _blobs(300))
    assert big.model.latent == 32


def _blobs(n: int = 60, size: int = 28, seed: int = 0) -> torch.Tensor:
    """Three kinds of image: dark, bright, and half-and-half (uint8 [n, 1, size, size])."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    x[n // 3 : 2 * n // 3] = 1.0
    x[2 * n // 3 :, :, :, : size // 2] = 1.0
    x = (0.8 * x + 0.1 + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8)


def test_a_trained_vae_fits_its_ex_post_prior_and_dreams_from_it(tmp_path):
    data = _blobs()
    trainer = build(Options(kind="vae", image_shape=(1, 28, 28), epochs=12, seed=0, frame_every=0,
                            extra={"width": 8}), data)
    model = trainer.model
    assert model.config.prior_components == default_components(len(data))
    untouched = model.prior_means.clone()
    assert torch.equal(untouched, torch.zeros_like(untouched))  # K copies of N(0, I) before training ends
    trainer.fit()
    model.eval()
    # The components now sit where the encoder put the training images.
    mu = model.encode(data)[0]
    assert not torch.equal(model.prior_means, untouched)
    near = torch.cdist(model.prior_means, mu).min(1).values
    typical = torch.cdist(mu, mu).mean()
    assert (near[model.prior_weights > 0] < 0.5 * typical).all()
    z = model.sample_latent(400, generator=torch.Generator().manual_seed(0))
    assert torch.cdist(z, mu).min(1).values.median() < torch.cdist(torch.randn(400, model.latent), mu).min(1).values.median()
    # The checkpoint keeps it, bit for bit, and the reopened model dreams the same images.
    path = save_checkpoint(tmp_path / "vae.safetensors", model, trainer=trainer)
    back = load_checkpoint(path).model.eval()
    assert torch.equal(back.prior_scale_tril, model.prior_scale_tril)
    assert torch.equal(sample_images(back, 8, seed=3), sample_images(model, 8, seed=3))


def test_the_latent_walk_keeps_the_mixture_it_walks_in():
    torch.manual_seed(0)
    model = ConvVAE(VAEConfig(image_size=28, channels=1, latent=3, width=4, prior_components=3)).eval()
    with torch.no_grad():  # a hand-made mixture: three far-apart, tight components
        model.prior_weights.copy_(torch.tensor([0.2, 0.3, 0.5]))
        model.prior_means.copy_(CENTRES)
        model.prior_scale_tril.copy_(0.3 * torch.eye(3).repeat(3, 1, 1))
    walk = model.make_sampler(n_chains=2000, seed=0, step_size=0.5)
    start = walk.latent.clone()
    walk.step(60)
    z = walk.latent
    share = torch.bincount(torch.cdist(z, CENTRES).argmin(1), minlength=3).float() / len(z)
    assert torch.allclose(share, torch.tensor([0.2, 0.3, 0.5]), atol=0.04)
    within = (z - CENTRES[torch.cdist(z, CENTRES).argmin(1)]).std()
    assert math.isclose(within.item(), 0.3, rel_tol=0.1)
    assert (z - start).norm(dim=1).median() > 0.1  # the chains moved
    # Temperature scales the spread around each component's mean.
    cold = model.make_sampler(n_chains=2000, seed=0, temperature=0.25, step_size=0.5).step(60).latent
    assert math.isclose((cold - CENTRES[torch.cdist(cold, CENTRES).argmin(1)]).std().item(), 0.15, rel_tol=0.15)


def test_files_from_before_the_mixture_open_with_the_standard_prior(tmp_path):
    old = ConvVAE(VAEConfig(image_size=28, channels=1, latent=3, width=4))  # prior_components 0, as before
    path = save_checkpoint(tmp_path / "old.safetensors", old)
    model = load_checkpoint(path).model
    assert not model.has_mixture_prior and not hasattr(model, "prior_means")
    z = model.sample_latent(4000, generator=torch.Generator().manual_seed(0))
    assert abs(z.std().item() - 1.0) < 0.05 and abs(z.mean().item()) < 0.05


def test_prior_components_out_of_range_are_refused():
    with pytest.raises(ValueError, match="prior_components"):
        VAEConfig(prior_components=-1)
    with pytest.raises(ValueError, match="prior_components"):
        VAEConfig(prior_components=10_000)
