"""The models learn: a Gaussian RBM on real photographs, the hybrid's chains on a multi-modal set.

Real images come from packages (scikit-image's LFW faces), never drawn by the test; each test
trains a small model with the project's defaults for a few seconds and checks what its samples
look like, with the measures the studio shows (`models.quality`).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.factory import Options, build, sample_images
from models.quality import mmd2, median_bandwidth, score_samples, to_matrix

pytest.importorskip("skimage")


def _faces(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The 100 LFW faces that scikit-image ships, `size` px grey, 70 train / 30 held out."""
    from PIL import Image
    from skimage.data import lfw_subset

    faces = (lfw_subset()[:100] * 255).round().astype(np.uint8)  # [100, 25, 25]
    x = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BICUBIC)) for f in faces])[:, None]
    perm = np.random.default_rng(0).permutation(100)
    return torch.from_numpy(x[perm[:70]]), torch.from_numpy(x[perm[70:]])


def test_gaussian_rbm_on_real_faces_improves_mmd_over_its_initial_state():
    train, heldout = _faces(16)
    trainer = build(Options(kind="grbm", image_shape=(1, 16, 16), seed=0, epochs=40, frame_every=0,
                            extra={"threads": 1}), train)
    before = sample_images(trainer.model, 100, seed=1, steps=200)
    trainer.fit()
    after = sample_images(trainer.model, 100, seed=1, steps=200)
    r0 = score_samples(before, train, heldout)
    r1 = score_samples(after, train, heldout)
    assert r1.mmd2 < 0.5 * r0.mmd2, (r0.mmd2, r1.mmd2)
    assert r1.mmd2 < 0.5 * r1.ceiling  # well clear of noise


def _three_modes(n_per: int = 24, size: int = 28) -> torch.Tensor:
    """Three kinds of image that share no pixels' pattern: horizontal bars, vertical bars, a
    centred disc, each with a little jitter in position and grey level."""
    g = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for kind in range(3):
        for _ in range(n_per):
            s = int(g.integers(0, 4))
            if kind == 0:
                img = ((yy + s) // 4) % 2 == 0
            elif kind == 1:
                img = ((xx + s) // 4) % 2 == 0
            else:
                img = (yy - size / 2 - s + 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
            level = g.uniform(0.75, 1.0)
            out.append((img * level * 255).astype(np.uint8))
    return torch.from_numpy(np.stack(out))[:, None]


def test_hybrid_code_chains_visit_more_than_one_mode():
    data = _three_modes()
    trainer = build(Options(kind="hybrid", image_shape=(1, 28, 28), seed=0, epochs=60, frame_every=0,
                            extra={"threads": 1}), data)
    trainer.fit()
    model = trainer.model.eval()
    samples = to_matrix(sample_images(model, 60, seed=3, steps=300))  # [60, 784]
    modes = to_matrix(data).reshape(3, -1, 28 * 28).mean(1)  # the three kinds' mean images [3, 784]
    nearest = torch.cdist(samples.double(), modes.double()).argmin(1)
    counts = torch.bincount(nearest, minlength=3)
    assert (counts > 0).sum() >= 2, counts  # not every chain in one mode
    assert counts.max() < 60 * 0.9, counts
    # and they look like the data, not like the average of the three kinds
    bw = median_bandwidth(data)
    noise = torch.rand(60, 28 * 28)
    assert mmd2(samples, data, bw) < 0.5 * mmd2(noise, data, bw)
