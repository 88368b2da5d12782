"""The model kinds: one `ModelKind` record per kind, and every place that takes a kind reads it.

A record says what a kind is called (`key`, `title`), which classes make it (model, model config,
training config, trainer), how a fresh one is built from `models.factory.Options` (`build`), how a
checkpoint rebuilds and resumes it (`rebuild`, `resume`, `trainer_extra_schema`), the kind's own
default settings (`default`) and what it can do (`CAPABILITIES`). The factory, the checkpoints,
the studio's hyperparameter forms, the CLI's `--model`, the training panel's pages and the tabs
that take a kind (Dreams, Latent, canvas textures) all read `KINDS`; none keeps a list of its own.

Adding a kind is one record in `KINDS` (with a builder, here or in the model's module) and one
model module holding its model, configs and trainer.

Importing this module imports no torch: the CLI's parser (`harmonium scan` runs in 0.07 s, 1.0 s
once torch is imported) and the studio's window (shown before torch loads) read the keys, titles
and capabilities. So a record names its classes as "module:attribute" and they are imported on
first use (`pkgutil.resolve_name`, what entry points use), never when the table is read.
"""
from __future__ import annotations

import dataclasses
import math
import pkgutil
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from .factory import Options
    from .training import Trainer

#: What a kind can do; `keys(where=...)` lists the kinds that can.
CAPABILITIES = ("dreams", "texture", "explorable", "scorable", "filters")

_MISSING = object()


@dataclass(frozen=True)
class ModelKind:
    """One kind of model, described once.

    `model`, `config`, `train_config` and `trainer` name classes as "module:attribute" (imported
    when first used: see the module's docstring). `builder(kind, options, data, device)` makes a
    fresh model and its trainer; call it through `build`, which fills in the options left to the
    kind and seeds the weights. `trainer_extra` names the checkpoint schema (a
    `models.checkpoint.Rule`) of the trainer's own saved state, None when it keeps none.
    `defaults` are the kind's own choices where they differ from its config classes' defaults
    (see `default`).

    Capabilities: `dreams` it samples images (a plain autoencoder does not); `texture` its dreams
    become canvas textures; `explorable` it has a latent space the Latent tab explores;
    `scorable` AIS estimates its log-likelihood; `filters` its weights are image-shaped filters
    (the training tab shows them).
    """

    key: str
    title: str
    model: str
    config: str
    train_config: str
    trainer: str
    builder: Callable[..., Any]
    trainer_extra: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    dreams: bool = False
    texture: bool = False
    explorable: bool = False
    scorable: bool = False
    filters: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    # ----------------------------------------------------------------------- the classes
    @property
    def model_class(self) -> type[nn.Module]:
        return pkgutil.resolve_name(self.model)

    @property
    def config_class(self) -> type:
        return pkgutil.resolve_name(self.config)

    @property
    def train_config_class(self) -> type:
        return pkgutil.resolve_name(self.train_config)

    @property
    def trainer_class(self) -> type[Trainer]:
        return pkgutil.resolve_name(self.trainer)

    @property
    def trainer_extra_schema(self) -> Any:
        """The checkpoint rule of "trainer.extra" (None: the trainer saves no state of its own)."""
        return pkgutil.resolve_name(self.trainer_extra) if self.trainer_extra else None

    def load(self) -> ModelKind:
        """Import the kind's classes now (the studio's engine loader does, in its worker thread,
        so that no later reader pays for the import on the UI thread); returns the record."""
        for name in (self.model, self.config, self.train_config, self.trainer, self.trainer_extra):
            if name:
                pkgutil.resolve_name(name)
        return self

    # ----------------------------------------------------------------------- defaults
    def default(self, name: str, fallback: Any = _MISSING) -> Any:
        """What a fresh model of this kind takes for the setting `name` when nobody chooses it:
        the kind's own choice (`defaults`), else its model config's default (looking inside a
        nested config: the hybrid's autoencoder), else its training config's. Forms show these,
        so no default is typed twice. Without one: `fallback`, or KeyError."""
        if name in self.defaults:
            return self.defaults[name]
        for cls in (self.config_class, self.train_config_class):
            value = _field_default(cls, name)
            if value is not _MISSING:
                return value
        if fallback is _MISSING:
            raise KeyError(f"the {self.key} kind has no setting {name!r}")
        return fallback

    # ----------------------------------------------------------------------- building
    def build(self, options: Options, data: Tensor, device: torch.device | str | None = None) -> Trainer:
        """A fresh model of this kind and its trainer over `data` (uint8 [N, C, H, W]).
        `options.batch_size` and `options.epochs` left as None are filled in (in `options`)."""
        import torch

        from .device import default_device
        from .training import GLOBAL_RNG_LOCK

        if options.kind != self.key:
            raise ValueError(f"options for a {options.kind!r} model cannot build a {self.key!r} model")
        device = torch.device(device) if device is not None else default_device()
        # A kind whose record sets them (the texture RBM: steps of random crops, whatever the
        # number of images) keeps its own batch and epochs; the others' follow the set's size.
        if options.batch_size is None:
            options.batch_size = self.defaults.get("batch_size") or default_batch_size(len(data))
        if options.epochs is None:
            options.epochs = self.defaults.get("epochs") or default_epochs(len(data), options.batch_size)
        # The initial weights come from torch's global generator. Seeded, it is seeded and drawn
        # from under a lock and inside fork_rng: two jobs started together in two threads each get
        # their seed's weights (they raced on the global seed), and the caller's stream is not moved.
        with GLOBAL_RNG_LOCK:
            if options.seed is None:
                return self.builder(self, options, data, device)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(options.seed)
                return self.builder(self, options, data, device)

    def rebuild(self, config: dict[str, Any]) -> nn.Module:
        """The model a checkpoint's "config" describes (untrained: the caller loads the weights)."""
        return self.model_class(self.config_class(**config))

    def resume(self, model: nn.Module, data: Tensor, train_config: dict[str, Any], device) -> Trainer:
        """A trainer for `model` from a checkpoint's "trainer.train_config" (the caller loads its
        state)."""
        return self.trainer_class(model, data, self.train_config_class.from_dict(train_config), device)


def _field_default(cls: type, name: str) -> Any:
    """The default of dataclass `cls`'s field `name`, or of a field of that name of a nested
    config's default (the hybrid's autoencoder: latent 16); `_MISSING` when there is none."""
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        if f.name == name:
            return value
        if dataclasses.is_dataclass(value) and name in {g.name for g in dataclasses.fields(value)}:
            return getattr(value, name)
    return _MISSING


# -------------------------------------------------------------------- defaults from the data
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


def default_restart(n_visible: int, large: int = 4096, every: int = 100) -> int:
    """How often each of a Gaussian RBM's PCD chains restarts from noise (`restart_every`, in
    updates; 0: never): every `every` updates above `large` visible units, else never.

    From noise a chain's hidden units see the noise's projection on their filters, which grows
    with the number of pixels (~ √V): on 64 px colour photos (12,288 units) fresh chains fell in
    two steps into blends of a few images that persistent chains never visit, so training never
    pushed them up. 40 photos, MMD² against PCA + GMM's (split and training seeds 0, 1, 2):
    plain PCD 6.4× (seed 0); each chain restarting every 100 updates in turn 1.32×, 1.59×,
    1.31×; every 10 updates 0.62×, 1.86×, 1.33× (chains that live 10 steps, while the dreams
    run 1,000: kept to 100); every 1,000 4.6× (seed 0); short-run chains (all restarted every
    update, 5 steps each) 0.67× at 2-3× the time. At 32 px (1,024 units) restarts cost more
    than they give: 300 texture patches 0.011 plain, 0.030 every 100 updates (their chains
    drift away after the ages they trained at), 0.017 every 1,000; 70 faces 0.028 and 0.029
    (bench/quality.py, 64-240 samples after 1,000 Gibbs steps)."""
    return every if n_visible > large else 0


def default_batch_size(n_images: int, preferred: int = 64) -> int:
    """The preferred batch, but at least ten batches per epoch on a small set (≥ 8 images each)."""
    return int(max(8, min(preferred, n_images // 10)))


def default_width(image_size: int, channels: int) -> int:
    """Channels of the autoencoders' first stage: 32 up to 32 px; 16 above. A VAE on 1,000 RGB
    images of 64×64 then trains an epoch in 0.8 s on an idle 2-core CPU (width 32: 2.4 s,
    too close to the 3 s target on a busy machine); see bench/vae_speed.py."""
    return 32 if image_size <= 32 else 16


HYBRID_RBM_UPDATES = 6000


# ------------------------------------------------------------------------------ builders
def _build_rbm(kind: ModelKind, options: Options, data: Tensor, device) -> Trainer:
    """A pixel RBM (binary or Gaussian) and its PCD trainer, on the kind's training recipe."""
    shape = tuple(options.image_shape)
    n_visible = math.prod(shape)
    least = kind.default("least_hidden")
    cfg = kind.config_class(n_visible=n_visible, n_hidden=options.hidden or default_hidden(len(data), n_visible, least),
                            image_shape=shape)
    model = kind.model_class(cfg).to(device)
    train = {"epochs": options.epochs, "seed": options.seed, "frame_every": options.frame_every, "n_chains": options.n_chains,
             "batch_size": options.batch_size}
    fields = {f.name for f in dataclasses.fields(kind.train_config_class)}
    train.update((k, v) for k, v in kind.defaults.items() if k in fields)
    if kind.key == "grbm":
        train["restart_every"] = default_restart(n_visible)
    if train.get("sample_data") and _is_binary(data):
        # Binary images are their own draws: drawing only moves the chains' random stream, and
        # on the 1,500 binary digits that cost MMD² 0.016 → 0.042 (−99.1 against −103.2 nats).
        train["sample_data"] = False
    if options.learning_rate:
        train["learning_rate"] = options.learning_rate
    train.update(options.extra)
    if "restart_every" not in options.extra and (int(train.get("tempering") or 0) > 1 or train.get("persistent") is False):
        train["restart_every"] = 0  # the default restarts plain PCD chains; tempered or CD chains keep theirs
    return kind.resume(model, data, train, device)


def _is_binary(data: Tensor) -> bool:
    """Whether uint8 images hold only 0 and 255 (float images: only 0 and 1)."""
    import torch

    top = 255 if data.dtype == torch.uint8 else 1
    return bool(((data == 0) | (data == top)).all())


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


def _square_size(kind: ModelKind, options: Options) -> tuple[int, int]:
    c, h, w = (int(s) for s in options.image_shape)
    if h != w:
        raise ValueError(f"the {kind.title.lower()} takes square images (got {h}×{w}); crop or resize to a square")
    return c, h


def _common_train(options: Options) -> dict[str, Any]:
    train: dict[str, Any] = {"epochs": options.epochs, "seed": options.seed, "frame_every": options.frame_every}
    if options.batch_size:
        train["batch_size"] = options.batch_size
    if options.learning_rate:
        train["learning_rate"] = options.learning_rate
    return train


def _build_conv(kind: ModelKind, options: Options, data: Tensor, device) -> Trainer:
    """A convolutional image model (autoencoder or VAE) and its trainer: the keys of
    `options.extra` that are fields of the model's config (other than its geometry) go there,
    the rest to the training config."""
    c, size = _square_size(kind, options)
    config_cls = kind.config_class
    model_keys = {f.name for f in dataclasses.fields(config_cls)} - {"image_size", "channels", "latent"}
    model_extra, train_extra = _split_extra(options, model_keys, kind.train_config_class)
    cfg = config_cls(image_size=size, channels=c, latent=options.latent or kind.default("latent"), width=default_width(size, c))
    cfg = dataclasses.replace(cfg, **model_extra)
    model = kind.model_class(cfg).to(device)
    return kind.resume(model, data, _common_train(options) | train_extra, device)


def _build_vae(kind: ModelKind, options: Options, data: Tensor, device) -> Trainer:
    from .mixture import default_components

    # Dreams come from a mixture fitted to the training codes (`ConvVAE.fit_prior`): 10
    # components, fewer for small sets (at least 5 images each); the latent size follows the
    # number of images too (`models.vae.default_latent`).
    from .vae import default_latent

    options = dataclasses.replace(options, latent=options.latent or default_latent(len(data)),
                                  extra={"prior_components": default_components(len(data)),
                                         "beta": kind.default("beta"), **options.extra})
    return _build_conv(kind, options, data, device)


def _build_hybrid(kind: ModelKind, options: Options, data: Tensor, device) -> Trainer:
    """`options.epochs` is the autoencoder's phase; the RBM's phase takes `rbm_epochs` from
    `options.extra` (default: about HYBRID_RBM_UPDATES updates), `options.n_chains` its chains."""
    from .autoencoder import AEConfig

    c, size = _square_size(kind, options)
    train_cls = kind.train_config_class
    model_extra, train_extra = _split_extra(options, {"width", "n_hidden"}, train_cls)
    ae = AEConfig(image_size=size, channels=c, latent=options.latent or kind.default("latent"),
                  width=model_extra.get("width", default_width(size, c)), sigmoid_codes=True)
    n_hidden = model_extra.get("n_hidden", options.hidden or kind.default("n_hidden"))
    model = kind.model_class(kind.config_class(ae, n_hidden=n_hidden)).to(device)
    train = _common_train(options)
    train["ae_epochs"] = train.pop("epochs")
    train["rbm_n_chains"] = options.n_chains
    # The code RBM is cheap (L×H weights): give it about HYBRID_RBM_UPDATES updates whatever the
    # set's size. A fixed 200 epochs gave 70 faces 600 updates, too few for the RBM to learn
    # more than independent bits (MMD² 0.027 against 0.019 with 6,000 updates).
    # A shorter autoencoder phase than its default (`--epochs`) shortens the RBM's by as much.
    rbm_batch = int(train_extra.get("rbm_batch_size", kind.default("rbm_batch_size")))
    share = min(1.0, train["ae_epochs"] / default_epochs(len(data), options.batch_size))
    rbm_per_epoch = max(1, len(data) // max(1, min(rbm_batch, len(data))))
    train["rbm_epochs"] = max(1, min(5000, math.ceil(HYBRID_RBM_UPDATES * share / rbm_per_epoch)))
    # Named, so the saved config says so: a config without it is from a file saved before the
    # code chains were tempered, and resumes plain (`HybridTrainConfig.from_dict`).
    train["rbm_tempering"] = kind.default("rbm_tempering")
    train |= train_extra
    return kind.resume(model, data, train, device)


def _build_texture(kind: ModelKind, options: Options, data: Tensor, device) -> Trainer:
    """The texture RBM and its trainer (`models.conv_rbm.build_texture`, imported on use: it
    imports torch)."""
    from .conv_rbm import build_texture

    return build_texture(kind, options, data, device)


# ------------------------------------------------------------------------------ the kinds
#: The training recipe both pixel RBMs share: PCD-1, momentum 0.5 → 0.9, weight decay 1e-3 and a
#: linear decay to 2 % of the learning rate. On the digits
#: (bench/rbm_quality.py) weight decay 1e-4 and 64 chains scored −133.6 nats, 1e-3 and 100 chains
#: −117.7 (100 hidden units); with 500 hidden units 3e-4 scored −116.0.
_RBM_RECIPE = {"lr_schedule": "linear", "lr_final_fraction": 0.02, "weight_decay": 1e-3}

#: Every kind, in the order the studio and the CLI list them.
KINDS: dict[str, ModelKind] = {k.key: k for k in (
    ModelKind(
        "rbm", "Binary RBM", "models.rbm:BernoulliRBM", "models.rbm:RBMConfig",
        "models.rbm_trainer:RBMTrainConfig", "models.rbm_trainer:RBMTrainer", _build_rbm,
        # Centred gradients. A binary RBM trains on binary draws of the grey levels, a fresh draw
        # per visit (`sample_data`), not on the levels as they are (mean-field): with the levels
        # its chains fell into grey stripes on 300 texture patches (MMD² 0.022, diversity 0.6)
        # and into copies of a few training images on 40 colour photos (0.25, memorisation 0.38);
        # with draws and the hidden units of `default_hidden` (at least 300) textures score
        # 0.0055 and 70 faces 0.015, both better than PCA + GMM (0.0079, 0.019). Binary images
        # are their own draws: nothing changes there. The learning rate decays to 2 %, not to 0:
        # on the digits (seed 0) a decay to 0 scored −104.9 nats against −110.5, but its dreams
        # were worse (MMD² 0.037 against 0.016) and on 40 colour photos it copied the training
        # images (memorisation 0.31 against 0.72); between seeds the log-likelihood of either
        # moves by about 6 nats (seed 1: −103.7 and −104.6). A learning rate of 0.02: −138.2.
        defaults={**_RBM_RECIPE, "learning_rate": 0.01, "centering": True, "sample_data": True, "least_hidden": 300},
        dreams=True, texture=True, scorable=True, filters=True),
    ModelKind(
        "grbm", "Gaussian RBM", "models.rbm:GaussianBernoulliRBM", "models.rbm:RBMConfig",
        "models.rbm_trainer:RBMTrainConfig", "models.rbm_trainer:RBMTrainer", _build_rbm,
        # Adam gives each parameter its own step size: W, the biases and log σ² have gradients of
        # very different sizes, and one global clip (norm 1.0, as before) froze the weights (std
        # 0.035 after training: the mean image plus noise). 70 faces: MMD² 0.082 → 0.033.
        # Its PCD chains restart from noise in turn on large images (`default_restart`).
        defaults={**_RBM_RECIPE, "learning_rate": 1e-3, "optimizer": "adam", "least_hidden": 100},
        dreams=True, texture=True, filters=True),
    ModelKind(
        "ae", "Autoencoder", "models.autoencoder:ConvAutoencoder", "models.autoencoder:AEConfig",
        "models.autoencoder:AETrainConfig", "models.autoencoder:AETrainer", _build_conv,
        trainer_extra="models.checkpoint:RECONSTRUCTION_EXTRA", explorable=True),
    ModelKind(
        "vae", "Variational autoencoder", "models.vae:ConvVAE", "models.vae:VAEConfig",
        "models.vae:VAETrainConfig", "models.vae:VAETrainer", _build_vae,
        # β = 0.03: the dreams are drawn from a mixture fitted to the training codes after
        # training (`ConvVAE.fit_prior`), not from N(0, I), so the KL term need not pull the codes
        # onto the prior; a weaker pull keeps the detail of the images (a two-stage VAE: Dai & Wipf
        # 2019; a regularised autoencoder with an ex-post density, Ghosh et al. 2020). MMD² with
        # β = 1, 0.3, 0.1, 0.03, 0.01 (bench/quality.py's sets, 64 samples): 300 texture patches
        # 0.024, 0.016, 0.014, 0.0071, 0.0060 (diversity 0.55 → 0.89; PCA + GMM 0.013); 40
        # colour photos at 64 px 0.094, 0.062, 0.058, 0.041, 0.054 (PCA + GMM 0.047); 70 faces,
        # 300 samples, mean of 3 draws, β = 0.3, 0.1, 0.03: 0.031, 0.030, 0.027 (PCA + GMM 0.019).
        trainer_extra="models.checkpoint:RECONSTRUCTION_EXTRA", defaults={"beta": 0.03},
        dreams=True, texture=True, explorable=True),
    ModelKind(
        "hybrid", "Autoencoder + RBM", "models.hybrid:HybridModel", "models.hybrid:HybridConfig",
        "models.hybrid:HybridTrainConfig", "models.hybrid:HybridTrainer", _build_hybrid,
        trainer_extra="models.checkpoint:HYBRID_EXTRA", dreams=True, texture=True, explorable=True),
    ModelKind(
        "texture", "Texture RBM", "models.conv_rbm:ConvRBM", "models.conv_rbm:ConvRBMConfig",
        "models.conv_rbm:ConvRBMTrainConfig", "models.conv_rbm:ConvRBMTrainer", _build_texture,
        # A convolutional RBM on random crops: one photograph is a whole training set, so an
        # epoch is a fixed number of steps (`steps_per_epoch`) and the run's length does not
        # follow the number of images: 12 epochs of 100 steps of 8 crops (bench/texture.py:
        # gravel and grass within 3x of the floor's patch MMD² in about a minute). The crops
        # (40 px, or the images' side when smaller) and the chains' torus follow the images.
        trainer_extra="models.checkpoint:TEXTURE_EXTRA", defaults={"epochs": 12, "batch_size": 8},
        dreams=True, texture=True, filters=True),
)}


def kind(key: str) -> ModelKind:
    """The record of `key`; a ValueError that names the known kinds for any other key."""
    record = KINDS.get(key) if isinstance(key, str) else None
    if record is None:
        raise ValueError(f"unknown model kind {key!r} (known: {', '.join(KINDS)})")
    return record


def keys(where: str | None = None) -> tuple[str, ...]:
    """Every kind's key in `KINDS` order, or those with the capability `where` (one of
    `CAPABILITIES`, e.g. "explorable")."""
    if where is None:
        return tuple(KINDS)
    if where not in CAPABILITIES:
        raise ValueError(f"unknown capability {where!r} (known: {', '.join(CAPABILITIES)})")
    return tuple(k for k, record in KINDS.items() if getattr(record, where))
