"""Build a model and its trainer from common options, make a sampler of its dreams, evaluate
it on images. The CLI and the studio both use this; what each kind is and how it is built is
its record in `models.kinds`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from . import kinds
from .kinds import (  # noqa: F401  (the defaults chosen from the data, imported from here by the CLI, benches, tests)
    HIDDEN_WEIGHT_BUDGET,
    HYBRID_RBM_UPDATES,
    default_batch_size,
    default_epochs,
    default_hidden,
    default_width,
)
from .likelihood import ais_log_partition, base_rate_bias, log_likelihood
from .rbm import BernoulliRBM, GaussianBernoulliRBM, RBMBase
from .sampling import GibbsSampler
from .training import Trainer


@dataclass
class Options:
    """What a person chooses before training, whatever the kind (None: the kind's default)."""

    kind: str = "rbm"
    image_shape: tuple[int, int, int] = (1, 28, 28)  # C, H, W
    hidden: int | None = None  # RBM hidden units (also the hybrid's RBM)
    latent: int | None = None  # AE / VAE / hybrid code size
    epochs: int | None = None  # None: about `target_updates` optimiser steps, within 20-500 epochs
    batch_size: int | None = None
    learning_rate: float | None = None
    seed: int | None = None
    frame_every: int = 10
    n_chains: int = 100  # persistent chains of PCD (the RBMs and the hybrid's code RBM)
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific training options


def build(options: Options, data: Tensor, device: torch.device | str | None = None) -> Trainer:
    """A fresh model of `options.kind` and its trainer over `data` (uint8 [N, C, H, W]): the
    kind's `models.kinds.ModelKind.build` (ValueError for an unknown kind)."""
    return kinds.kind(options.kind).build(options, data, device)


# ------------------------------------------------------------------------------ sampling
def make_sampler(model: nn.Module, n_chains: int = 64, seed: int | None = None, k: int = 1, temperature: float = 1.0,
                 *, tempering: bool | int = True, base: Tensor | None = None, size: tuple[int, int] | None = None):
    """A sampler of `model`'s dreams with `.step(k)`, `.images(kind)`, `.reset(...)`,
    `.temperature`. Raises ValueError for a model that cannot dream (a plain autoencoder).

    `size` (height, width): chains of that many pixels, for a model that samples at any size
    (the texture RBM: its chains live on a torus of that size); ValueError for the others,
    which dream at their training images' size. None: the training images' size.

    RBMs: `tempering` mixes the chains by parallel tempering (`models.tempering`) toward `base`,
    the base rate of the training data (`base_from_data`, `base_from_checkpoint`), and starts
    them from its draws. True (the default): with `DEFAULT_REPLICAS` replicas for a binary RBM
    when a base is given, plain Gibbs chains otherwise (tempering toward the model's own visible biases did not
    mix the digits RBM at 10× the cost: bench/mixing.py). An int > 1: that many replicas, toward
    the visible biases when no base is given. False, 0 or 1: plain Gibbs chains."""
    if size is not None and not hasattr(model, "synthesize"):
        kind = getattr(model, "kind", type(model).__name__)
        raise ValueError(f"a {kind} model dreams at its training images' size; only a texture model samples at any size")
    if isinstance(model, RBMBase):
        from .tempering import DEFAULT_REPLICAS, TemperedSampler

        # By default only binary RBMs temper: the Gaussian RBM's tempered chains scored worse
        # than its plain ones on 70 faces (MMD² 0.152 against 0.023), not yet understood.
        auto = base is not None and isinstance(model, BernoulliRBM)
        replicas = (DEFAULT_REPLICAS if auto else 0) if tempering is True else int(tempering)
        if replicas > 1:
            return TemperedSampler(model, n_chains=n_chains, k=k, temperature=temperature, seed=seed, replicas=replicas, base=base)
        return GibbsSampler(model, n_chains=n_chains, k=k, temperature=temperature, seed=seed)
    maker = getattr(model, "make_sampler", None)
    if maker is None:
        raise ValueError(f"a {getattr(model, 'kind', type(model).__name__)} model has no sampler")
    return maker(n_chains=n_chains, k=k, temperature=temperature, seed=seed, **({"size": size} if size is not None else {}))


# ---------------------------------------------------------------------------- evaluating
@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, *, ais_runs: int = 100, ais_betas: int = 14_500, seed: int = 0, base_images: Tensor | None = None) -> dict[str, float]:
    """Metrics of `model` on `images` (uint8 [N, C, H, W]): reconstruction error for every
    kind; for a binary RBM also the AIS estimate of log Z and the average test log-likelihood
    in nats (base-rate model from `base_images`, the training set, when given)."""
    if isinstance(model, RBMBase):
        v = torch.cat([model.images_to_visible(images[i : i + 1024]) for i in range(0, len(images), 1024)])
        out = {"recon_error": model.reconstruction_error(v).item()}
        if kinds.kind(model.kind).scorable:  # AIS estimates its log-likelihood (a binary RBM)
            base = None
            if base_images is not None:
                base = base_rate_bias((model.images_to_visible(base_images) > 0.5).float())
            ais = ais_log_partition(model, n_runs=ais_runs, betas=ais_betas, base_visible_bias=base, seed=seed)
            ll = log_likelihood(model, v, ais.log_z)
            out.update(log_z=ais.log_z, log_z_low=ais.log_z_low, log_z_high=ais.log_z_high, log_likelihood=ll.mean().item())
        return out
    evaluator = getattr(model, "evaluate", None)
    if evaluator is None:
        raise ValueError(f"no evaluation for {type(model).__name__}")
    return evaluator(images)


# ------------------------------------------------------------------------- drawing samples
SAMPLE_BURN_IN = 1000  # Gibbs steps before an RBM's chains are read as samples


@torch.no_grad()
def sample_images(model: nn.Module, n: int, *, seed: int = 0, steps: int | None = None, data: Tensor | None = None,
                  size: tuple[int, int] | None = None) -> Tensor:
    """`n` independent dreams of `model` as images [n, C, H, W] in [0, 1] on the CPU: the
    recipe that scoring (`models.quality`) and the benches share (`harmonium sample` and the
    Dreams tab take the base rate from the checkpoint instead of `data`).

    RBMs and the hybrid run `steps` Gibbs steps (default `SAMPLE_BURN_IN`) of free-running
    chains from the model's own starting state and show E[v | h] of the last step (a binary
    RBM), the sampled pixels (a Gaussian RBM) or the decoded code samples (the hybrid); a VAE
    decodes prior draws. A plain autoencoder cannot dream (ValueError).

    `data`, the training images (uint8 [N, C, H, W]): a binary RBM's chains are then tempered
    toward their base rate and start from its draws (`models.tempering`: plain Gibbs chains
    from the visible biases stay in a few modes). The hybrid tempers its code chains toward
    the mean training code it keeps.

    A texture RBM synthesises seamless textures of `size` (height, width; default its training
    images' size) by its own recipe (`models.conv_rbm.synthesize`: `steps` sweeps, default
    `DEFAULT_SWEEPS`, annealed from noise); `size` for any other kind: ValueError."""
    if hasattr(model, "synthesize"):
        options = {"steps": int(steps)} if steps is not None else {}
        if size is not None:
            return model.synthesize(int(size[0]), int(size[1]), n=n, seed=seed, **options).float().clamp(0, 1).cpu()
        # the training images' size (what scoring compares with), synthesised in whole pooling blocks
        h, w = (int(s) for s in model.config.image_shape[1:])
        p = model.pooling
        images = model.synthesize(h + (-h) % p, w + (-w) % p, n=n, seed=seed, **options)
        return images[..., :h, :w].float().clamp(0, 1).cpu()
    if size is not None:
        raise ValueError(f"a {getattr(model, 'kind', type(model).__name__)} model dreams at its training images' size; "
                         "only a texture model samples at any size")
    steps = SAMPLE_BURN_IN if steps is None else int(steps)
    sample = getattr(model, "sample", None)
    if sample is not None and not isinstance(model, RBMBase) and not hasattr(model, "rbm"):
        g = torch.Generator(device=model.device).manual_seed(seed) if model.device.type != "mps" else None
        return sample(n, generator=g).float().clamp(0, 1).cpu()
    base = None
    if data is not None and isinstance(model, BernoulliRBM):
        from .tempering import base_from_data

        base = base_from_data(model, data)
    sampler = make_sampler(model, n_chains=n, seed=seed, base=base)
    sampler.step(steps)
    # A Gaussian RBM's dreams are its sampled pixels: E[v | h] alone is a blend of a few
    # filters, smoother and more alike than the images (70 faces: MMD² 0.085 as means, 0.057
    # as samples; 300 texture patches: 0.019 against 0.015).
    show = "samples" if isinstance(model, GaussianBernoulliRBM) else "probs"
    return sampler.images(show).float().clamp(0, 1).cpu()
