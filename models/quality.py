"""How good are a model's dreams? Scores of its samples against held-out images.

Every measure works in pixel space: an image is a row of intensities in [0, 1] and the distance
between two images is the Euclidean distance between their rows. Held-out images (never seen in
training) are the reference for what a *new* image of the artist's set looks like, and every
measure is read against them, so the numbers mean the same on small and large, dark and bright,
grayscale and colour sets.

* **MMD²** (maximum mean discrepancy; Gretton, Borgwardt, Rasch, Schölkopf & Smola 2012, "A
  kernel two-sample test", JMLR 13) between the samples X and the held-out images Y, with the
  Gaussian kernel k(a, b) = exp(-|a - b|² / 2σ²):

      MMD² = mean_ij k(x_i, x_j) + mean_ij k(y_i, y_j) - 2 mean_ij k(x_i, y_j)

  This is the biased estimate (their V-statistic, eq. 5): it is never negative and is exactly 0
  for identical sets. σ is the *median heuristic* (Gretton et al. 2012, §8; Schölkopf & Smola
  2002): the median distance between held-out images, so the kernel sees the scale of the data.
  A raw MMD² is hard to read, so it is printed beside two references scored the same way: the
  **floor**, the training images against the held-out ones (what a model that had learned the
  distribution exactly, but drew only as many images as the training set, would get; small sets
  have a high floor), and the **ceiling**, uniform noise against the held-out images.
* **Diversity**: mean distance between two different samples over the mean distance between two
  different held-out images. 1: as varied as real images; 0: all samples alike (mode collapse).
* **Memorisation**: median distance from a sample to its nearest training image over the same
  median for held-out images. 1: samples are as far from the training images as new images are;
  0: the samples are copies of training images (a nearest-neighbour test of the kind used to
  check generative models for copying, e.g. Theis, van den Oord & Bethge 2016, "A note on the
  evaluation of generative models").
* **Log-likelihood** (binary RBMs only): the average log p(v) of the held-out images in nats,
  log Z estimated by annealed importance sampling (Salakhutdinov & Murray 2008; see
  `models.likelihood`).

Distances are computed in float64 (centred, expanded form |a|² + |b|² - 2a·b) a block of rows at a
time, so 1,000 images of 128×128 RGB need tens of megabytes, not gigabytes. This module imports
torch and numpy only (no Qt, nothing of `studio`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

COLLAPSE_BELOW = 0.3  # diversity under this: "the samples have collapsed"
COPIES_BELOW = 0.3  # memorisation under this: "the samples copy the training images"
NOISE_FRACTION = 1.0  # MMD² at or above this fraction of the ceiling: "no better than noise"
MIN_TRAIN = 4  # split_heldout keeps at least this many training images
BANDWIDTH_ROWS = 1000  # median_bandwidth looks at this many rows at most
_BLOCK_BYTES = 32 * 2**20  # float64 bytes of one block of columns in the distance computation
_ZERO_REL = 1e-11  # squared distances below this fraction of |a|² + |b|² are rounding error: 0


# ----------------------------------------------------------------------------- distances
def to_matrix(images) -> Tensor:
    """Images as rows: uint8 [N, C, H, W] (0..255), or float in [0, 1] as [N, C, H, W] or [N, D]
    (torch or numpy) -> float32 [N, D] in [0, 1] on the CPU. Raises ValueError on a shape with no
    image axis or on values that are not finite."""
    x = images if isinstance(images, Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if x.dim() < 2:
        raise ValueError(f"images must be [N, C, H, W] or [N, D] (got shape {tuple(x.shape)})")
    x = x.detach().cpu().reshape(x.shape[0], -1)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    x = x.float()
    if x.numel() and not torch.isfinite(x).all():
        raise ValueError("the images hold values that are not finite numbers (NaN or infinity)")
    return x


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances [len(a), len(b)] (float64) between the rows of two float32
    matrices: |a|² + |b|² - 2a·b of the centred rows, summed over blocks of columns so that each
    block is ≤ 32 MB in float64 and every value is converted once."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"the sets have images of different sizes ({a.shape[1]} and {b.shape[1]} values each)")
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    dot = torch.zeros(n, m, dtype=torch.float64)
    na = torch.zeros(n, dtype=torch.float64)
    nb = torch.zeros(m, dtype=torch.float64)
    cols = max(1, _BLOCK_BYTES // (8 * max(n, m, 1)))
    for c in range(0, d, cols):
        ac = a[:, c : c + cols].double().sub_(0.5)  # centred: smaller norms, less cancellation
        bc = ac if b is a else b[:, c : c + cols].double().sub_(0.5)
        na += ac.square().sum(1)
        nb += bc.square().sum(1)
        dot.addmm_(ac, bc.t())
    scale = na[:, None] + nb[None, :]
    d2 = scale.sub_(dot, alpha=2.0)
    d2[d2 <= _ZERO_REL * (na[:, None] + nb[None, :])] = 0.0  # rounding error (and negatives): 0
    return d2


def _self_sq_dists(a: Tensor) -> Tensor:
    d2 = _sq_dists(a, a)
    d2.fill_diagonal_(0.0)
    return d2


def _subsample(x: Tensor, k: int, gen: torch.Generator) -> Tensor:
    if len(x) <= k:
        return x
    idx = torch.randperm(len(x), generator=gen)[:k].sort().values
    return x[idx]


def _median_offdiagonal(d2: Tensor) -> float:
    """The median distance between different rows (i < j), from their squared distances; the
    median of the non-zero ones when most are 0; 1.0 when all rows are equal."""
    n = d2.shape[0]
    if n < 2:
        return 1.0
    i, j = torch.triu_indices(n, n, offset=1)
    dist = d2[i, j].sqrt().numpy()
    med = float(np.median(dist))
    if med > 0:
        return med
    nonzero = dist[dist > 0]
    return float(np.median(nonzero)) if nonzero.size else 1.0


def median_bandwidth(y) -> float:
    """The median heuristic: median Euclidean distance between two different rows of `y`
    (≤ 1,000 rows, a fixed random subset of larger sets). Always > 0: the median of the non-zero
    distances when most rows are duplicates, 1.0 when all rows are equal."""
    y = _subsample(to_matrix(y), BANDWIDTH_ROWS, torch.Generator().manual_seed(0))
    return _median_offdiagonal(_self_sq_dists(y))


def _mmd2(dxx: Tensor, dyy: Tensor, dxy: Tensor, bandwidth: float) -> float:
    g = -1.0 / (2.0 * bandwidth * bandwidth)
    v = dxx.mul(g).exp_().mean() + dyy.mul(g).exp_().mean() - 2.0 * dxy.mul(g).exp_().mean()
    return max(0.0, v.item())  # a V-statistic is ≥ 0; a negative value is rounding


def mmd2(x, y, bandwidth: float) -> float:
    """Biased (V-statistic) MMD² between the rows of x and y with the Gaussian kernel
    k(a, b) = exp(-|a - b|² / 2·bandwidth²). ≥ 0, symmetric, 0 for identical sets."""
    if not bandwidth > 0 or not math.isfinite(bandwidth):
        raise ValueError(f"the bandwidth must be a positive number (got {bandwidth})")
    x, y = to_matrix(x), to_matrix(y)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("MMD² needs at least one image in each set")
    return _mmd2(_self_sq_dists(x), _self_sq_dists(y), _sq_dists(x, y), bandwidth)


def _mean_offdiagonal(d2: Tensor) -> float:
    n = d2.shape[0]
    return d2.sqrt().sum().item() / (n * (n - 1))  # the diagonal is 0


def _ratio(num: float, den: float) -> float:
    """num / den, with 0 / 0 = 1 (no difference from the reference) and x / 0 = inf."""
    if den > 0:
        return num / den
    return 1.0 if num <= 0 else math.inf


def _diversity(dss: Tensor, dhh: Tensor) -> float:
    return _ratio(_mean_offdiagonal(dss), _mean_offdiagonal(dhh))


def diversity(samples, heldout) -> float:
    """Mean distance between two different samples over the same for held-out images: about 1
    when the samples vary as much as real images, 0 when they have collapsed onto one image.
    (All held-out images equal: 1 if the samples are too, else inf.)"""
    s, h = to_matrix(samples), to_matrix(heldout)
    if len(s) < 2 or len(h) < 2:
        raise ValueError("diversity needs at least two samples and two held-out images")
    return _diversity(_self_sq_dists(s), _self_sq_dists(h))


def _memorisation(dst: Tensor, dht: Tensor) -> float:
    near_s = float(np.median(dst.min(1).values.sqrt().numpy()))
    near_h = float(np.median(dht.min(1).values.sqrt().numpy()))
    return _ratio(near_s, near_h)


def memorisation(samples, train, heldout) -> float:
    """Median distance from a sample to its nearest training image over the median distance from
    a held-out image to its nearest training image: about 1 when samples are as new as unseen
    images, 0 when they are copies of training images. (Held-out images that are mostly copies
    of training images make the reference 0: then 1 if the samples are copies too, else inf.)"""
    s, t, h = to_matrix(samples), to_matrix(train), to_matrix(heldout)
    if len(s) == 0 or len(t) == 0 or len(h) == 0:
        raise ValueError("memorisation needs samples, training images and held-out images")
    return _memorisation(_sq_dists(s, t), _sq_dists(h, t))


# --------------------------------------------------------------------------------- split
def split_heldout(n: int, fraction: float = 0.2, *, seed: int = 0, min_heldout: int = 4,
                  max_heldout: int = 500) -> tuple[Tensor, Tensor]:
    """A fixed random split of n images: (train_idx, heldout_idx), sorted LongTensors that are
    disjoint and together cover range(n). round(n·fraction) images are held out, but at least
    `min_heldout` and at most `max_heldout`; at least 4 stay for training (ValueError if n is too
    small for both)."""
    n = int(n)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be between 0 and 1 (got {fraction})")
    if min_heldout < 1 or max_heldout < min_heldout:
        raise ValueError(f"cannot hold out between {min_heldout} and {max_heldout} images")
    k = min(max_heldout, max(min_heldout, round(n * fraction)))
    if n - k < MIN_TRAIN:
        raise ValueError(f"{n} images are too few to hold out {k} for scoring and keep {MIN_TRAIN} for training "
                         f"(at least {min_heldout + MIN_TRAIN} are needed)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[k:].sort().values, perm[:k].sort().values


# -------------------------------------------------------------------------------- report
def _g(v: float) -> str:
    return f"{v:.3g}"


@dataclass
class QualityReport:
    """The scores of one set of samples (see the module docstring for what each one means)."""

    mmd2: float  # samples vs held-out
    floor: float  # training images vs held-out (same bandwidth)
    ceiling: float  # uniform noise (as many rows as samples) vs held-out
    diversity: float
    memorisation: float
    bandwidth: float
    n_samples: int  # the images the scores were computed on (after subsampling)
    n_train: int
    n_heldout: int
    log_likelihood: float | None = None  # AIS test log-likelihood, nats per held-out image (binary RBMs)
    seconds: float = 0.0  # time the scoring took

    @property
    def ratio(self) -> float:
        """MMD² over its floor (inf when the floor is 0)."""
        return self.mmd2 / self.floor if self.floor > 0 else math.inf

    def warnings(self) -> list[str]:
        """Plain one-sentence warnings; empty when nothing looks wrong."""
        out = []
        if self.diversity < COLLAPSE_BELOW:
            out.append(f"The samples have collapsed: they are nearly all alike (diversity {self.diversity:.2f}, "
                       f"where your held-out images score 1).")
        if self.memorisation < COPIES_BELOW:
            out.append(f"The samples copy your training images: they sit much closer to them than new images do "
                       f"(memorisation {self.memorisation:.2f}, where 1 is as far as a new image).")
        if self.mmd2 >= NOISE_FRACTION * self.ceiling:
            out.append(f"The samples are no better than noise: random pixels match your held-out images as well "
                       f"(MMD² {_g(self.mmd2)} against {_g(self.ceiling)} for noise).")
        return out

    def lines(self) -> list[str]:
        """Human-readable lines for the command line and the studio, then the warnings."""
        ratio = self.ratio
        times = "" if math.isinf(ratio) else f"  {ratio:.1f}× the floor" if ratio < 10 else f"  {ratio:.0f}× the floor"
        out = [
            f"MMD² {_g(self.mmd2)}  (floor {_g(self.floor)} = training vs held-out, noise {_g(self.ceiling)}){times}",
            f"diversity {self.diversity:.2f} (1 = as varied as held-out images; 0 = collapsed)"
            if math.isfinite(self.diversity) else "diversity: no reference (the held-out images are all alike)",
            f"memorisation {self.memorisation:.2f} (1 = as far from the training images as new images are; 0 = copies)"
            if math.isfinite(self.memorisation) else
            "memorisation: no reference (most held-out images are also among the training images)",
        ]
        if self.log_likelihood is not None:
            out.append(f"log-likelihood {self.log_likelihood:.1f} nats per image (AIS)")
        return out + self.warnings()

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, JSON-able (non-finite values as Python's json writes them)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Any) -> "QualityReport":
        """The inverse of `to_dict`. Raises ValueError on a missing or mistyped field; unknown
        keys (from a newer version) are ignored."""
        if not isinstance(d, dict):
            raise ValueError(f"a quality report must be a dict (got {type(d).__name__})")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                if f.name in ("log_likelihood", "seconds"):
                    continue
                raise ValueError(f"a quality report needs {f.name!r}")
            v = d[f.name]
            if f.name.startswith("n_"):
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"{f.name} must be a whole number ≥ 0 (got {v!r})")
            elif f.name == "log_likelihood" and v is None:
                pass
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{f.name} must be a number (got {v!r})")
            else:
                v = float(v)
            kwargs[f.name] = v
        return cls(**kwargs)


# ------------------------------------------------------------------------------- scoring
def score_samples(samples, train, heldout, *, seed: int = 0, max_images: int = 1000) -> QualityReport:
    """Score `samples` against `heldout` with `train` as the memorisation and floor reference.
    Each set is cut to ≤ `max_images` rows (a fixed random subset); the bandwidth is the median
    heuristic over the held-out images."""
    start = time.perf_counter()
    if max_images < 2:
        raise ValueError(f"max_images must be at least 2 (got {max_images})")
    gen = torch.Generator().manual_seed(int(seed))
    s = _subsample(to_matrix(samples), max_images, gen)
    t = _subsample(to_matrix(train), max_images, gen)
    h = _subsample(to_matrix(heldout), max_images, gen)
    if len(s) < 2 or len(h) < 2 or len(t) < 1:
        raise ValueError(f"scoring needs at least 2 samples, 1 training image and 2 held-out images "
                         f"(got {len(s)}, {len(t)} and {len(h)})")
    dhh = _self_sq_dists(h)
    bw = _median_offdiagonal(dhh) if len(h) <= BANDWIDTH_ROWS else median_bandwidth(h)
    dss, dsh = _self_sq_dists(s), _sq_dists(s, h)
    dth = _sq_dists(t, h)
    noise = torch.rand(s.shape, generator=torch.Generator().manual_seed(int(seed) + 1))
    report = QualityReport(
        mmd2=_mmd2(dss, dhh, dsh, bw),
        floor=_mmd2(_self_sq_dists(t), dhh, dth, bw),
        ceiling=_mmd2(_self_sq_dists(noise), dhh, _sq_dists(noise, h), bw),
        diversity=_diversity(dss, dhh),
        memorisation=_memorisation(_sq_dists(s, t), dth.t()),
        bandwidth=bw,
        n_samples=len(s),
        n_train=len(t),
        n_heldout=len(h),
    )
    report.seconds = time.perf_counter() - start
    return report


def default_n_samples(n_heldout: int) -> int:
    """Samples drawn when none is asked for: twice the held-out images, within 64..500."""
    return max(64, min(500, 2 * int(n_heldout)))


def score_model(model, train, heldout, *, n_samples: int | None = None, seed: int = 0, steps: int | None = None,
                ais: bool = True, ais_runs: int = 100, ais_betas: int = 10_000) -> QualityReport:
    """Draw `n_samples` dreams of `model` (`models.factory.sample_images`, `steps` Gibbs steps
    for the RBMs and the hybrid) and score them against `heldout` (uint8 [N, C, H, W]). For a
    binary RBM with `ais`, adds the AIS test log-likelihood of the held-out images (base-rate
    model from `train`). `seconds` counts the sampling and AIS too. A model that cannot dream (a
    plain autoencoder) raises ValueError."""
    from .factory import evaluate, sample_images
    from .rbm import BernoulliRBM

    start = time.perf_counter()
    n = default_n_samples(len(heldout)) if n_samples is None else int(n_samples)
    samples = sample_images(model, n, seed=seed, steps=steps, data=torch.as_tensor(train))  # tempered toward the training set's base rate
    report = score_samples(samples, train, heldout, seed=seed)
    if ais and isinstance(model, BernoulliRBM):
        metrics = evaluate(model, torch.as_tensor(heldout), ais_runs=ais_runs, ais_betas=ais_betas, seed=seed,
                           base_images=torch.as_tensor(train))
        report.log_likelihood = float(metrics["log_likelihood"])
    report.seconds = time.perf_counter() - start
    return report
