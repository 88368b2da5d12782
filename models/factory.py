"""One place that knows every model kind: build a model and its trainer from common options,
make a sampler of its dreams, evaluate it on images. The CLI and the studio both use this.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .device import default_device
from .likelihood import ais_log_partition, base_rate_bias, log_likelihood
from .rbm import BernoulliRBM, GaussianBernoulliRBM, RBMBase, RBMConfig
from .rbm_trainer import RBMTrainConfig, RBMTrainer
from .sampling import GibbsSampler
from .training import GLOBAL_RNG_LOCK, Trainer

KIND_TITLES = {
    "rbm": "Binary RBM",
    "grbm": "Gaussian RBM",
    "ae": "Autoencoder",
    "vae": "Variational autoencoder",
    "hybrid": "Autoencoder + RBM",
}


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


def default_epochs(n_images: int, batch_size: int, target_updates: int = 5000, low: int = 20, high: int = 500) -> int:
    """Epochs that give about `target_updates` optimiser steps: a small set needs many epochs."""
    per_epoch = max(1, n_images // max(1, min(batch_size, n_images)))
    return int(min(high, max(low, math.ceil(target_updates / per_epoch))))


def default_hidden(n_images: int, n_visible: int = 784, least: int = 300) -> int:
    """Hidden units of a pixel RBM: about one per three training images, `least` to 500, and no
    more than `HIDDEN_WEIGHT_BUDGET` weights in all (a default run on 40 colour photos at 64 px
    then takes minutes, not a quarter of an hour, on two cores: 122 units).

    Trained on binary draws of grey images (the default), 70 faces score MMD² 0.040 with 100
    units, 0.019 with 200 and 0.015 with 300 (PCA + GMM: 0.019), 300 texture patches 0.0075 with
    100 and 0.0055 with 300 (PCA + GMM 0.0079). On the 1,500 digits of bench/rbm_quality.py
    500 units score −103.2 nats against −117.7 for 100 (300: −113.1). The Gaussian RBM takes
    `least` 100 (70 faces: MMD² 0.033 with 100)."""
    by_images = min(500, max(least, n_images // 3))
    return int(min(by_images, max(100, HIDDEN_WEIGHT_BUDGET // max(1, n_visible))))


HIDDEN_WEIGHT_BUDGET = 1_500_000  # weights of a default pixel RBM at most (V × H)


def default_batch_size(n_images: int, preferred: int = 64) -> int:
    """The preferred batch, but at least ten batches per epoch on a small set (≥ 8 images each)."""
    return int(max(8, min(preferred, n_images // 10)))


def build(options: Options, data: Tensor, device: torch.device | str | None = None) -> Trainer:
    """A fresh model of `options.kind` and its trainer over `data` (uint8 [N, C, H, W])."""
    device = torch.device(device) if device is not None else default_device()
    if options.batch_size is None:
        options.batch_size = default_batch_size(len(data))
    if options.epochs is None:
        options.epochs = default_epochs(len(data), options.batch_size)
    builder = BUILDERS.get(options.kind)
    if builder is None:
        raise ValueError(f"unknown model kind {options.kind!r} (known: {', '.join(BUILDERS)})")
    # The initial weights come from torch's global generator. Seeded, it is seeded and drawn
    # from under a lock and inside fork_rng: two jobs started together in two threads each get
    # their seed's weights (they raced on the global seed), and the caller's stream is not moved.
    with GLOBAL_RNG_LOCK:
        if options.seed is None:
            return builder(options, data, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            return builder(options, data, device)


def _build_rbm(options: Options, data: Tensor, device) -> Trainer:
    shape = tuple(options.image_shape)
    n_visible = math.prod(shape)
    cfg = RBMConfig(n_visible=n_visible, n_hidden=options.hidden or default_hidden(len(data), n_visible, 300 if options.kind == "rbm" else 100),
                    image_shape=shape)
    cls = BernoulliRBM if options.kind == "rbm" else GaussianBernoulliRBM
    model = cls(cfg).to(device)
    # PCD-1 with centering, momentum 0.5 → 0.9, weight decay 1e-3 and a linear decay to 2 % of
    # the learning rate: on the digits (bench/rbm_quality.py) weight decay 1e-4 and 64 chains
    # scored −133.6 nats, 1e-3 and 100 chains −117.7 (100 hidden units).
    train = {"epochs": options.epochs, "seed": options.seed, "frame_every": options.frame_every, "n_chains": options.n_chains,
             "batch_size": options.batch_size, "learning_rate": 0.01, "centering": options.kind == "rbm",
             "lr_schedule": "linear", "lr_final_fraction": 0.02, "weight_decay": 1e-3}
    # A binary RBM trains on binary draws of the grey levels, a fresh draw per visit
    # (`sample_data`), not on the levels as they are (mean-field): with the levels its chains
    # fell into grey stripes on 300 texture patches (MMD² 0.022, diversity 0.6) and into copies of a
    # few training images on 40 colour photos (0.25, memorisation 0.38); with draws and the
    # hidden units of `default_hidden` textures score 0.0055 and 70 faces 0.015, both better
    # than PCA + GMM (0.0079, 0.019). Binary images are their own draws: nothing changes there.
    if options.kind == "rbm":
        train["sample_data"] = True
    if options.kind == "grbm":
        # Adam gives each parameter its own step size: W, the biases and log σ² have gradients
        # of very different sizes, and one global clip (norm 1.0, as before) froze the weights
        # (std 0.035 after training: the mean image plus noise). 70 faces: MMD² 0.082 → 0.033.
        train.update(learning_rate=1e-3, optimizer="adam")
    if options.learning_rate:
        train["learning_rate"] = options.learning_rate
    train.update(options.extra)
    return RBMTrainer(model, data, RBMTrainConfig.from_dict(train), device)


def default_width(image_size: int, channels: int) -> int:
    """Channels of the autoencoders' first stage: 32 up to 32 px; 16 above. A VAE on 1,000 RGB
    images of 64×64 then trains an epoch in 0.8 s on an idle 2-core CPU (width 32: 2.4 s,
    too close to the 3 s target on a busy machine); see bench/vae_speed.py."""
    return 32 if image_size <= 32 else 16


def _split_extra(options: Options, model_fields: set[str], train_cls) -> tuple[dict[str, Any], dict[str, Any]]:
    """`options.extra` split into (model config, train config) keys; unknown keys are refused."""
    train_fields = {f.name for f in dataclasses.fields(train_cls)}
    unknown = sorted(set(options.extra) - model_fields - train_fields)
    if unknown:
        known = ", ".join(sorted(model_fields | train_fields))
        raise ValueError(f"unknown {options.kind} option(s): {', '.join(unknown)} (known: {known})")
    model = {k: v for k, v in options.extra.items() if k in model_fields}
    train = {k: v for k, v in options.extra.items() if k in train_fields and k not in model_fields}
    return model, train


def _square_size(options: Options) -> tuple[int, int]:
    c, h, w = (int(s) for s in options.image_shape)
    if h != w:
        raise ValueError(f"the {KIND_TITLES[options.kind].lower()} takes square images (got {h}×{w}); crop or resize to a square")
    return c, h


def _common_train(options: Options) -> dict[str, Any]:
    train: dict[str, Any] = {"epochs": options.epochs, "seed": options.seed, "frame_every": options.frame_every}
    if options.batch_size:
        train["batch_size"] = options.batch_size
    if options.learning_rate:
        train["learning_rate"] = options.learning_rate
    return train


def _build_conv(options: Options, data: Tensor, device, config_cls, model_cls, train_cfg_cls, trainer_cls,
                model_keys: set[str]) -> Trainer:
    """A convolutional image model (autoencoder or VAE) and its trainer: `model_keys` of
    `options.extra` go to the model's config, the rest to the training config."""
    c, size = _square_size(options)
    model_extra, train_extra = _split_extra(options, model_keys, train_cfg_cls)
    cfg = config_cls(image_size=size, channels=c, latent=options.latent or 32, width=default_width(size, c))
    cfg = dataclasses.replace(cfg, **model_extra)
    model = model_cls(cfg).to(device)
    train = _common_train(options) | train_extra
    return trainer_cls(model, data, train_cfg_cls.from_dict(train), device)


def _build_ae(options: Options, data: Tensor, device) -> Trainer:
    from .autoencoder import AEConfig, AETrainConfig, AETrainer, ConvAutoencoder

    return _build_conv(options, data, device, AEConfig, ConvAutoencoder, AETrainConfig, AETrainer,
                       {"width", "sigmoid_codes"})


def _build_vae(options: Options, data: Tensor, device) -> Trainer:
    from .mixture import default_components
    from .vae import ConvVAE, VAEConfig, VAETrainConfig, VAETrainer

    # Dreams come from a mixture fitted to the training codes (`ConvVAE.fit_prior`): 10
    # components, fewer for small sets (at least 5 images each).
    options = dataclasses.replace(options, extra={"prior_components": default_components(len(data)), **options.extra})
    return _build_conv(options, data, device, VAEConfig, ConvVAE, VAETrainConfig, VAETrainer,
                       {"width", "beta", "likelihood", "sigma", "prior_components"})


HYBRID_RBM_UPDATES = 6000


def _build_hybrid(options: Options, data: Tensor, device) -> Trainer:
    """`options.epochs` is the autoencoder's phase; the RBM's phase takes `rbm_epochs` from
    `options.extra` (default: about HYBRID_RBM_UPDATES updates), `options.n_chains` its chains."""
    from .autoencoder import AEConfig
    from .hybrid import HybridConfig, HybridModel, HybridTrainConfig, HybridTrainer

    c, size = _square_size(options)
    model_extra, train_extra = _split_extra(options, {"width", "n_hidden"}, HybridTrainConfig)
    ae = AEConfig(image_size=size, channels=c, latent=options.latent or 16, width=model_extra.get("width", default_width(size, c)), sigmoid_codes=True)
    model = HybridModel(HybridConfig(ae, n_hidden=model_extra.get("n_hidden", options.hidden or 64))).to(device)
    train = _common_train(options)
    train["ae_epochs"] = train.pop("epochs")
    train["rbm_n_chains"] = options.n_chains
    # The code RBM is cheap (L×H weights): give it about HYBRID_RBM_UPDATES updates whatever the
    # set's size. A fixed 200 epochs gave 70 faces 600 updates, too few for the RBM to learn
    # more than independent bits (MMD² 0.027 against 0.019 with 6,000 updates).
    # A shorter autoencoder phase than its default (`--epochs`) shortens the RBM's by as much.
    rbm_batch = int(train_extra.get("rbm_batch_size", HybridTrainConfig.rbm_batch_size))
    share = min(1.0, train["ae_epochs"] / default_epochs(len(data), options.batch_size))
    rbm_per_epoch = max(1, len(data) // max(1, min(rbm_batch, len(data))))
    train["rbm_epochs"] = max(1, min(5000, math.ceil(HYBRID_RBM_UPDATES * share / rbm_per_epoch)))
    train |= train_extra
    return HybridTrainer(model, data, HybridTrainConfig.from_dict(train), device)


BUILDERS = {"rbm": _build_rbm, "grbm": _build_rbm, "ae": _build_ae, "vae": _build_vae, "hybrid": _build_hybrid}


# ------------------------------------------------------------------------------ sampling
def make_sampler(model: nn.Module, n_chains: int = 64, seed: int | None = None, k: int = 1, temperature: float = 1.0,
                 *, tempering: bool | int = True, base: Tensor | None = None):
    """A sampler of `model`'s dreams with `.step(k)`, `.images(kind)`, `.reset(...)`,
    `.temperature`. Raises ValueError for a model that cannot dream (a plain autoencoder).

    RBMs: `tempering` mixes the chains by parallel tempering (`models.tempering`) toward `base`,
    the base rate of the training data (`base_from_data`, `base_from_checkpoint`), and starts
    them from its draws. True (the default): with `DEFAULT_REPLICAS` replicas for a binary RBM
    when a base is given, plain Gibbs chains otherwise (tempering toward the model's own visible biases did not
    mix the digits RBM at 10× the cost: bench/mixing.py). An int > 1: that many replicas, toward
    the visible biases when no base is given. False, 0 or 1: plain Gibbs chains."""
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
    return maker(n_chains=n_chains, k=k, temperature=temperature, seed=seed)


# ---------------------------------------------------------------------------- evaluating
@torch.no_grad()
def evaluate(model: nn.Module, images: Tensor, *, ais_runs: int = 100, ais_betas: int = 14_500, seed: int = 0, base_images: Tensor | None = None) -> dict[str, float]:
    """Metrics of `model` on `images` (uint8 [N, C, H, W]): reconstruction error for every
    kind; for a binary RBM also the AIS estimate of log Z and the average test log-likelihood
    in nats (base-rate model from `base_images`, the training set, when given)."""
    if isinstance(model, RBMBase):
        v = torch.cat([model.images_to_visible(images[i : i + 1024]) for i in range(0, len(images), 1024)])
        out = {"recon_error": model.reconstruction_error(v).item()}
        if isinstance(model, BernoulliRBM):
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
def sample_images(model: nn.Module, n: int, *, seed: int = 0, steps: int | None = None, data: Tensor | None = None) -> Tensor:
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
    the mean training code it keeps."""
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
