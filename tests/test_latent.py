"""The latent explorer (studio/latent.py) on tiny trained models: sliders decode the vector they
show, interpolations end at the reconstructions, nearest neighbours start with the image itself,
a planted noise image sorts to the top of the outliers, and dream mode walks smoothly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.factory import Options, build
from studio.images import images_to_uint8
from studio.latent import LatentExplorer

SIZE = 28
NOISE = 37  # where the planted noise image sits in the set


def make_set(n: int = 60, seed: int = 0) -> torch.Tensor:
    """n soft discs of varying size and position, uint8 [n + 1, 1, 28, 28], with one image of
    uniform noise planted at index NOISE."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    discs = np.empty((n, 1, SIZE, SIZE), np.uint8)
    for i in range(n):
        cx, cy = rng.uniform(0.3, 0.7, 2) * SIZE
        r = rng.uniform(0.12, 0.3) * SIZE
        discs[i, 0] = (255 / (1 + np.exp(np.hypot(xx - cx, yy - cy) - r))).astype(np.uint8)
    noise = rng.integers(0, 256, (1, 1, SIZE, SIZE), dtype=np.uint8)
    return torch.from_numpy(np.concatenate([discs[:NOISE], noise, discs[NOISE:]]))


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """uint8 images equal but for a rounding step."""
    return a.shape == b.shape and int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def train(kind: str, data: torch.Tensor, epochs: int, **extra):
    opts = Options(kind=kind, image_shape=(1, SIZE, SIZE), latent=8, hidden=16, epochs=epochs, batch_size=16,
                   learning_rate=3e-3, seed=0, frame_every=0, n_chains=8, extra={"width": 8, **extra})
    tr = build(opts, data, device="cpu")
    for _ in tr.run():
        pass
    return tr.model


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return make_set()


@pytest.fixture(scope="module")
def vae(data):
    return train("vae", data, epochs=20)


@pytest.fixture(scope="module")
def hybrid(data):
    return train("hybrid", data, epochs=12, rbm_epochs=4)


@pytest.fixture()
def explorer(vae, data) -> LatentExplorer:
    return LatentExplorer(vae, data)


# ----------------------------------------------------------------------------- sliders
def test_the_explorer_works_on_a_private_copy(vae, data):
    ex = LatentExplorer(vae, data)
    assert ex.model is not vae and not ex.model.training
    with torch.no_grad():
        next(ex.model.parameters()).add_(1.0)  # the copy changes, the job's model does not
    assert not torch.equal(next(ex.model.parameters()), next(vae.parameters()))


def test_sliders_are_ordered_by_kl_most_used_first(explorer, vae, data):
    usage = vae.latent_usage(data)
    assert explorer.order == torch.argsort(usage, descending=True, stable=True).tolist()
    assert sorted(explorer.order) == list(range(8))
    assert usage[explorer.order[0]] >= usage[explorer.order[-1]]


def test_a_slider_change_decodes_the_expected_latent_vector(explorer, vae):
    start = explorer.reset()
    assert torch.equal(explorer.z, torch.zeros(8))
    dim = explorer.order[0]
    image = explorer.set_dim(dim, 2.0)
    want = torch.zeros(8)
    want[dim] = 2.0
    assert torch.equal(explorer.z, want)
    with torch.no_grad():
        expected = images_to_uint8(vae.decode(want[None]))[0]
    assert image.shape == (SIZE, SIZE, 1) and image.dtype == np.uint8
    assert close(image, expected)
    assert not np.array_equal(image, start)  # the most used dimension changes the picture
    # a second slider keeps the first one's value
    other = explorer.order[1]
    explorer.set_dim(other, -1.0)
    assert explorer.z[dim] == 2.0 and explorer.z[other] == -1.0
    assert np.array_equal(explorer.reset(), start) and torch.equal(explorer.z, torch.zeros(8))
    a, b = explorer.randomise(seed=3).copy(), explorer.z.clone()
    assert np.array_equal(explorer.randomise(seed=3), a) and torch.equal(explorer.z, b)
    assert explorer.slider_range() == (-3.0, 3.0)
    with pytest.raises(IndexError):
        explorer.set_dim(8, 0.0)


# ------------------------------------------------------------------------ interpolation
@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_endpoints_are_the_endpoints_reconstructions(explorer, vae, data, method):
    frames = explorer.interpolate(3, 10, steps=7, method=method)
    assert frames.shape == (7, SIZE, SIZE, 1) and frames.dtype == np.uint8
    with torch.no_grad():
        rec = images_to_uint8(vae.eval().reconstruct(data[[3, 10]]))
    # equal up to the last bit of float rounding (the set was encoded in another batch)
    assert close(frames[0], rec[0]) and close(frames[-1], rec[1])
    assert not close(frames[3], frames[0])  # it moves in between
    # the same from images rather than set indices
    assert close(explorer.interpolate(data[3], data[10], steps=7, method=method), frames)


# -------------------------------------------------------------------------- the set
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_nearest_neighbours_of_an_image_start_with_itself(explorer, data, metric):
    for i in range(len(data)):
        found = explorer.nearest(i, k=5, metric=metric)
        assert found[0] == (i, 0.0) and len(found) == 5
        assert [d for _, d in found] == sorted(d for _, d in found)
    # a query image that is in the set finds it first
    assert explorer.nearest(data[12], k=3)[0][0] == 12


def test_outlier_sorting_puts_the_planted_noise_near_the_top(explorer, data):
    order = explorer.outlier_order()
    assert sorted(order) == list(range(len(data)))
    assert order.index(NOISE) < 3, order[:5]
    scores = explorer.outlier_scores()
    assert scores[order[0]] == scores.max()


def test_denoise_brings_a_noisy_disc_closer_to_the_clean_one(explorer, data):
    clean = data[5].float() / 255
    g = torch.Generator().manual_seed(0)
    noisy = ((clean + 0.25 * torch.randn(clean.shape, generator=g)).clamp(0, 1) * 255).round().to(torch.uint8)
    out = explorer.denoise(noisy)
    assert out.shape == (SIZE, SIZE, 1)
    err_before = (noisy.float() / 255 - clean).pow(2).mean()
    err_after = (torch.from_numpy(out.astype(np.float32)).permute(2, 0, 1) / 255 - clean).pow(2).mean()
    assert err_after < err_before


# ------------------------------------------------------------------------- dream mode
def test_dream_mode_walks_smoothly_and_its_speed_changes_the_pace(explorer):
    explorer.reset()
    gen = explorer.walk(speed=1.0, seed=0)
    frames = [next(gen) for _ in range(60)]
    assert all(f.shape == (SIZE, SIZE, 1) for f in frames)
    path = []
    explorer.reset()
    walker = explorer.start_walk(speed=1.0, seed=0)
    for _ in range(1500):
        path.append(walker.step())
    z = torch.stack(path)
    velocity = z.diff(dim=0)
    steps = velocity.norm(dim=1)
    # smooth: the velocity changes slowly (a plain random walk's steps are uncorrelated)
    corr = torch.nn.functional.cosine_similarity(velocity[1:], velocity[:-1], dim=1)
    assert corr.mean() > 0.8 and steps.max() < 0.5
    assert z[300:].std(0).mean() > 0.3  # but it travels (stationary spread 1)
    assert z.abs().max() <= 3.0
    walker.speed = 0.0
    assert torch.equal(walker.step(), walker.step())  # paused
    fast = explorer.start_walk(speed=4.0, seed=0)
    fast_steps = torch.stack([fast.step() for _ in range(100)]).diff(dim=0).norm(dim=1)
    assert fast_steps.mean() > steps[:100].mean()


# ------------------------------------------------------------------------------ hybrid
def test_hybrid_sliders_follow_code_variance_and_outliers_rank_by_both_scores(hybrid, data):
    ex = LatentExplorer(hybrid, data)
    codes = ex.means
    assert codes.shape == (len(data), 8) and codes.min() >= 0 and codes.max() <= 1
    assert ex.order == torch.argsort(codes.var(0, unbiased=False), descending=True, stable=True).tolist()
    assert torch.allclose(ex.z, codes.mean(0)) and ex.slider_range() == (0.0, 1.0)
    image = ex.set_dim(ex.order[0], 1.0)
    with torch.no_grad():
        want = images_to_uint8(hybrid.eval().decode(ex.z[None]))[0]
    assert close(image, want)
    frames = ex.interpolate(0, 1, steps=5, method="slerp")
    with torch.no_grad():
        rec = images_to_uint8(hybrid.eval()(data[:2]))
    assert close(frames[0], rec[0]) and close(frames[-1], rec[1])
    assert ex.nearest(4, k=3)[0] == (4, 0.0)
    assert ex.outlier_order().index(NOISE) < 3
    fe = ex.outlier_order("free_energy")
    assert sorted(fe) == list(range(len(data)))
    ex.randomise(seed=1)
    assert ex.z.min() >= 0 and ex.z.max() <= 1
    walk = ex.walk(speed=2.0, seed=0)
    for _ in range(20):
        next(walk)
    assert ex.z.min() >= 0 and ex.z.max() <= 1


def test_kinds_without_a_latent_space_are_refused(data):
    rbm = build(Options(kind="rbm", image_shape=(1, SIZE, SIZE), hidden=8, epochs=1, batch_size=16), data).model
    with pytest.raises(ValueError, match="no latent space"):
        LatentExplorer(rbm)
    ex = LatentExplorer(build(Options(kind="vae", image_shape=(1, SIZE, SIZE), latent=4, epochs=1, extra={"width": 4}), data).model)
    with pytest.raises(ValueError, match="encode_set"):
        ex.nearest(0)
    with pytest.raises(ValueError, match="shape"):
        ex.encode_set(torch.zeros(2, 3, SIZE, SIZE, dtype=torch.uint8))
