"""models.quality: each measure on sets with known answers, checked against brute-force sums."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

import models.quality as q
from models.likelihood import exact_log_partition, log_likelihood
from models.quality import (QualityReport, diversity, median_bandwidth, memorisation, mmd2, score_model,
                            score_samples, split_heldout, to_matrix)
from models.rbm import BernoulliRBM, RBMConfig


def blobs(n: int, seed: int, low: float = 3.0, high: float = 5.0, size: int = 12) -> torch.Tensor:
    """uint8 [n, 1, size, size]: one bright Gaussian blob each, its centre uniform in [low, high]²."""
    g = torch.Generator().manual_seed(seed)
    centre = low + (high - low) * torch.rand(n, 2, 1, 1, generator=g)
    width = 1.0 + torch.rand(n, 1, 1, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    img = torch.exp(-((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2) / (2 * width**2))
    return (img * 255).round().to(torch.uint8).unsqueeze(1)


def brute_dist(a, b) -> np.ndarray:
    a = to_matrix(a).double().numpy()
    b = to_matrix(b).double().numpy()
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


@pytest.fixture(scope="module")
def sets():
    return {"train": blobs(60, 1), "heldout": blobs(30, 2), "other": blobs(40, 3), "shifted": blobs(40, 4, low=7.0, high=9.0)}


# ---------------------------------------------------------------------------- to_matrix
def test_to_matrix_reads_uint8_and_float_alike():
    x = blobs(5, 0)
    m = to_matrix(x)
    assert m.dtype == torch.float32 and m.shape == (5, 144) and m.device.type == "cpu"
    assert 0 <= m.min() and m.max() <= 1 and m.max() > 0.9
    as_float = x.float() / 255
    assert torch.equal(to_matrix(as_float), m)
    assert torch.equal(to_matrix(as_float.numpy()), m)
    assert torch.equal(to_matrix(x.numpy()), m)
    assert torch.equal(to_matrix(as_float.reshape(5, -1)), m)
    with pytest.raises(ValueError):
        to_matrix(torch.zeros(5))
    with pytest.raises(ValueError, match="not finite"):
        to_matrix(torch.tensor([[0.5, float("nan")]]))


# ------------------------------------------------------------------------------ distances
def test_blocked_distances_match_brute_force(monkeypatch, sets):
    a, b = to_matrix(sets["train"][:7]), to_matrix(sets["other"][:9])
    whole = q._sq_dists(a, b)
    monkeypatch.setattr(q, "_BLOCK_BYTES", 8 * 9 * 5)  # 5 columns a block: 29 blocks of 144
    blocked = q._sq_dists(a, b)
    ref = brute_dist(a, b) ** 2
    assert np.allclose(whole.numpy(), ref, rtol=1e-10, atol=1e-10)
    assert np.allclose(blocked.numpy(), ref, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------ MMD
def test_mmd2_matches_its_definition_and_is_symmetric_and_non_negative(sets):
    x, y = sets["other"][:15], sets["heldout"][:11]
    bw = 2.5
    k = lambda a, b: np.exp(-brute_dist(a, b) ** 2 / (2 * bw**2))
    expected = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    assert mmd2(x, y, bw) == pytest.approx(expected, rel=1e-9)
    assert mmd2(y, x, bw) == pytest.approx(mmd2(x, y, bw), rel=1e-9)
    assert mmd2(x, y, bw) > 0
    for seed in range(3):  # ≥ 0 for random sets, bandwidths and sizes
        g = torch.Generator().manual_seed(seed)
        a, b = torch.rand(3 + seed, 20, generator=g), torch.rand(5, 20, generator=g)
        assert mmd2(a, b, 0.3 + seed) >= 0
    with pytest.raises(ValueError):
        mmd2(x, y, 0.0)


def test_identical_sets_score_zero_mmd_and_one_for_the_ratios(sets):
    h, t = sets["heldout"], sets["train"]
    bw = median_bandwidth(h)
    assert mmd2(h, h.clone(), bw) == pytest.approx(0.0, abs=1e-12)
    assert diversity(h, h) == pytest.approx(1.0, rel=1e-12)
    assert memorisation(h, t, h) == pytest.approx(1.0, rel=1e-12)
    r = score_samples(h, t, h)
    assert r.mmd2 == pytest.approx(0.0, abs=1e-12) and r.diversity == pytest.approx(1.0) and r.memorisation == pytest.approx(1.0)
    assert 0 < r.floor < r.ceiling and r.warnings() == []


def test_draws_of_one_distribution_are_much_closer_than_a_shifted_one(sets):
    h = sets["heldout"]
    bw = median_bandwidth(h)
    same, shifted = mmd2(sets["other"], h, bw), mmd2(sets["shifted"], h, bw)
    assert same * 5 < shifted
    r = score_samples(sets["shifted"], sets["train"], h)
    assert r.mmd2 == pytest.approx(shifted, rel=1e-9) and r.ratio > 5


def test_uniform_noise_scores_at_the_ceiling_and_blank_dreams_are_called_noise(sets):
    noise = torch.rand(30, 1, 12, 12, generator=torch.Generator().manual_seed(123))
    r = score_samples(noise, sets["train"], sets["heldout"])
    assert r.mmd2 == pytest.approx(r.ceiling, rel=0.05)  # another draw of the same noise
    assert r.ceiling > 10 * r.floor
    blank = torch.ones(30, 1, 12, 12)  # white pages: further from the images than noise
    worse = score_samples(blank, sets["train"], sets["heldout"])
    assert worse.mmd2 > worse.ceiling
    assert any("no better than noise" in w for w in worse.warnings())
    good = score_samples(sets["other"], sets["train"], sets["heldout"])
    assert good.mmd2 < 0.1 * good.ceiling and not any("noise" in w for w in good.warnings())


# ------------------------------------------------------------------------------ bandwidth
def test_median_bandwidth_is_the_median_distance_and_scales_with_the_data(sets):
    h = to_matrix(sets["heldout"])
    d = brute_dist(h, h)
    expected = np.median(d[np.triu_indices(len(h), 1)])
    bw = median_bandwidth(h)
    assert bw == pytest.approx(expected, rel=1e-9)
    assert median_bandwidth(h * 0.5) == pytest.approx(bw * 0.5, rel=1e-9)
    assert median_bandwidth(torch.full((6, 10), 0.3)) == 1.0  # all equal: the fallback
    dup = torch.cat([torch.zeros(8, 4), torch.ones(2, 4)])  # most pairs equal: the non-zero median
    assert median_bandwidth(dup) == pytest.approx(2.0)


def test_median_bandwidth_of_a_large_set_uses_a_fixed_subset():
    x = torch.rand(1200, 3, generator=torch.Generator().manual_seed(5))
    a, b = median_bandwidth(x), median_bandwidth(x.clone())
    assert a == b
    full = brute_dist(x[:600], x[600:]).ravel()
    assert a == pytest.approx(np.median(full), rel=0.05)


# ------------------------------------------------------------------ diversity, memorisation
def test_diversity_matches_its_definition_and_a_collapse_is_zero(sets):
    s, h = sets["other"][:12], sets["heldout"]
    ds, dh = brute_dist(s, s), brute_dist(h, h)
    expected = ds.sum() / (12 * 11) / (dh.sum() / (len(h) * (len(h) - 1)))
    assert diversity(s, h) == pytest.approx(expected, rel=1e-9)
    collapsed = sets["other"][3:4].expand(25, -1, -1, -1)
    assert diversity(collapsed, h) == 0.0
    r = score_samples(collapsed, sets["train"], h)
    assert r.diversity == 0.0
    assert any("collapsed" in w for w in r.warnings())


def test_memorisation_matches_its_definition_and_copies_are_zero(sets):
    s, t, h = sets["other"], sets["train"], sets["heldout"]
    expected = np.median(brute_dist(s, t).min(1)) / np.median(brute_dist(h, t).min(1))
    assert memorisation(s, t, h) == pytest.approx(expected, rel=1e-9)
    assert 0.5 < expected < 2  # new draws are about as far from the training set as held-out ones
    copies = t[torch.randperm(len(t), generator=torch.Generator().manual_seed(0))[:40]]
    assert memorisation(copies, t, h) == 0.0
    assert memorisation(copies.float() / 255, t, h) == 0.0  # the same copies as floats
    r = score_samples(copies, t, h)
    assert r.memorisation == 0.0 and r.diversity > q.COLLAPSE_BELOW
    warnings = r.warnings()
    assert any("copy" in w for w in warnings) and not any("collapsed" in w for w in warnings)



def test_held_out_copies_of_training_images_leave_memorisation_without_a_reference(sets):
    t, h = sets["train"], sets["train"][:10]
    assert memorisation(t[10:20], t, h) == 1.0  # copies against copies: as close as held-out images are
    assert memorisation(sets["other"], t, h) == math.inf


# ---------------------------------------------------------------------------------- split
def test_split_heldout_is_disjoint_covering_and_fixed():
    tr, ho = split_heldout(50, 0.2, seed=3)
    assert tr.dtype == ho.dtype == torch.long
    assert len(ho) == 10 and len(tr) == 40
    assert sorted(torch.cat([tr, ho]).tolist()) == list(range(50))
    assert torch.equal(tr, tr.sort().values) and torch.equal(ho, ho.sort().values)
    tr2, ho2 = split_heldout(50, 0.2, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(ho, ho2)
    assert not torch.equal(ho, split_heldout(50, 0.2, seed=4)[1])
    assert len(split_heldout(10, 0.1)[1]) == 4  # at least min_heldout
    assert len(split_heldout(10_000, 0.2)[1]) == 500  # at most max_heldout
    assert len(split_heldout(8)[0]) == 4
    with pytest.raises(ValueError, match="too few"):
        split_heldout(7)
    with pytest.raises(ValueError):
        split_heldout(50, 1.0)


# --------------------------------------------------------------------------------- report
def test_score_samples_agrees_with_the_measures_and_subsamples(sets):
    s, t, h = sets["other"], sets["train"], sets["heldout"]
    r = score_samples(s, t, h)
    bw = median_bandwidth(h)
    assert r.bandwidth == pytest.approx(bw, rel=1e-12)
    assert r.mmd2 == pytest.approx(mmd2(s, h, bw), rel=1e-9)
    assert r.floor == pytest.approx(mmd2(t, h, bw), rel=1e-9)
    assert r.diversity == pytest.approx(diversity(s, h), rel=1e-9)
    assert r.memorisation == pytest.approx(memorisation(s, t, h), rel=1e-9)
    assert (r.n_samples, r.n_train, r.n_heldout) == (40, 60, 30) and r.seconds > 0
    small = score_samples(s, t, h, max_images=10, seed=1)
    assert (small.n_samples, small.n_train, small.n_heldout) == (10, 10, 10)
    assert small.to_dict() | {"seconds": 0} == score_samples(s, t, h, max_images=10, seed=1).to_dict() | {"seconds": 0}


def report(**kw) -> QualityReport:
    base = dict(mmd2=0.02, floor=0.005, ceiling=0.4, diversity=0.9, memorisation=0.8, bandwidth=3.0,
                n_samples=64, n_train=40, n_heldout=10)
    return QualityReport(**(base | kw))


def test_report_lines_show_its_numbers_and_the_warnings_follow_the_thresholds():
    r = report(log_likelihood=-104.34)
    text = "\n".join(r.lines())
    nums = [float(v) for v in re.findall(r"-?\d+\.\d+", text)]
    for v in (r.mmd2, r.floor, r.ceiling, r.ratio, r.diversity, r.memorisation, r.log_likelihood):
        assert any(math.isclose(v, n, rel_tol=0.01) for n in nums), v
    assert r.ratio == pytest.approx(4.0) and r.warnings() == []
    assert report(floor=0.0).ratio == math.inf and "× the floor" not in report(floor=0.0).lines()[0]
    assert "log-likelihood" not in "\n".join(report().lines())
    assert "no reference" in report(memorisation=math.inf).lines()[2] and report(memorisation=math.inf).warnings() == []
    below, above = q.COLLAPSE_BELOW * 0.99, q.COLLAPSE_BELOW * 1.01
    assert "collapsed" in " ".join(report(diversity=below).warnings())
    assert report(diversity=above).warnings() == []
    assert "copy" in " ".join(report(memorisation=q.COPIES_BELOW * 0.99).warnings())
    assert report(memorisation=q.COPIES_BELOW * 1.01).warnings() == []
    assert "noise" in " ".join(report(mmd2=0.4 * q.NOISE_FRACTION).warnings())
    assert report(mmd2=0.4 * q.NOISE_FRACTION * 0.99).warnings() == []
    bad = report(diversity=0.01, mmd2=1.0)
    assert bad.lines()[-len(bad.warnings()):] == bad.warnings() and len(bad.warnings()) == 2


def test_report_dict_round_trip_and_refusals():
    r = report(log_likelihood=-88.5, seconds=1.25)
    back = QualityReport.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    assert QualityReport.from_dict(report().to_dict()).log_likelihood is None
    d = r.to_dict()
    for bad in ({k: v for k, v in d.items() if k != "mmd2"}, d | {"floor": "0.1"}, d | {"n_samples": 3.5},
                d | {"n_train": -1}, d | {"diversity": True}, d | {"log_likelihood": "high"}):
        with pytest.raises(ValueError):
            QualityReport.from_dict(bad)
    with pytest.raises(ValueError):
        QualityReport.from_dict([1, 2])


# ------------------------------------------------------------------------------- models
def tiny_rbm() -> tuple[BernoulliRBM, torch.Tensor]:
    torch.manual_seed(0)
    model = BernoulliRBM(RBMConfig(n_visible=64, n_hidden=8, image_shape=(1, 8, 8)))
    with torch.no_grad():
        model.weight.normal_(0, 0.5)
        model.visible_bias.normal_(0, 0.5)
    data = (torch.rand(40, 1, 8, 8) < 0.4).to(torch.uint8) * 255
    return model, data


def test_score_model_adds_the_ais_log_likelihood_for_a_binary_rbm():
    model, data = tiny_rbm()
    train, heldout = data[:30], data[30:]
    r = score_model(model, train, heldout, n_samples=16, steps=20, ais_runs=20, ais_betas=300)
    exact = log_likelihood(model, heldout.reshape(10, -1).float() / 255, exact_log_partition(model)).mean().item()
    assert r.log_likelihood is not None and math.isfinite(r.log_likelihood)
    assert r.log_likelihood == pytest.approx(exact, abs=1.0)  # AIS against the exact log Z of 8 hidden units
    assert r.n_samples == 16 and r.n_heldout == 10 and 0 < r.floor and r.seconds > 0
    assert score_model(model, train, heldout, n_samples=16, steps=20, ais=False).log_likelihood is None
    assert score_model(model, train, heldout, steps=2, ais=False).n_samples == 64  # the default: at least 64


def test_score_model_of_a_vae_has_no_log_likelihood():
    from models.vae import ConvVAE, VAEConfig

    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(image_size=28, channels=1, latent=4, width=4))
    data = (torch.rand(20, 1, 28, 28) * 255).to(torch.uint8)
    r = score_model(vae, data[:12], data[12:], n_samples=10)
    assert r.log_likelihood is None and r.n_samples == 10
    assert all(math.isfinite(v) for v in (r.mmd2, r.floor, r.ceiling, r.diversity, r.memorisation))
