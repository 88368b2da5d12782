"""What a person can set for each model kind (:func:`hyperparameters`), with the defaults of its
record (``models.kinds.ModelKind.default``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from models import kinds  # the kinds' records: no torch imported


@dataclass(frozen=True)
class HyperParam:
    """One setting of a model kind, as a form shows it.

    ``target`` says where the value goes: ``"options"`` → the attribute ``key`` of
    ``models.factory.Options``; ``"extra"`` → ``Options.extra[key]`` (kind-specific config).
    ``special`` is the text shown for the ``minimum`` value, which then means "automatic"
    (the value passed on is ``None``).
    """

    key: str
    label: str
    type: str  # "int" | "float" | "bool" | "choice"
    default: Any
    minimum: float = 0
    maximum: float = 1_000_000
    step: float = 1
    decimals: int = 0
    choices: tuple[str, ...] = ()
    special: str | None = None
    tooltip: str = ""
    target: str = "options"

    def coerce(self, value: Any) -> Any:
        """A value from a form or a settings file → what :func:`Session.options_for` takes."""
        if value is None:
            return None
        if self.type == "bool":
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if self.type == "choice":
            return value if value in self.choices else self.default
        v = int(value) if self.type == "int" else float(value)
        if self.special is not None and v <= self.minimum:
            return None
        return min(max(v, self.minimum), self.maximum)


def _field_default(cls: type, name: str, fallback: Any) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                return f.default_factory()  # type: ignore[misc]
    return fallback


def _common_params(lr: float) -> list[HyperParam]:
    return [
        HyperParam("epochs", "Epochs", "int", 0, 0, 100_000, special="auto",
                   tooltip="Passes over the images. Auto: about 5,000 updates (20–500 epochs), "
                           "so a small set trains as long as a big one."),
        HyperParam("batch_size", "Batch size", "int", 0, 0, 4096, special="auto",
                   tooltip="Images per update. Auto: 64, or fewer on a small set (at least ten "
                           "batches per epoch)."),
        HyperParam("learning_rate", "Learning rate", "float", lr, 0.0, 10.0, step=lr / 2 or 1e-4,
                   decimals=5, special="model default",
                   tooltip="Step size of the optimiser. Lower it if training diverges."),
        HyperParam("seed", "Seed", "int", -1, -1, 2**31 - 1, special="random",
                   tooltip="Fix it to repeat a run exactly; 'random' draws a new one."),
    ]


def hyperparameters(kind: str) -> list[HyperParam]:
    """The settings of ``kind`` with the defaults its record gives (imports the model modules,
    hence torch); ValueError for an unknown kind."""
    from models.factory import Options

    default = kinds.kind(kind).default
    n_chains = _field_default(Options, "n_chains", 64)
    lr = default("learning_rate")
    if kind in ("rbm", "grbm"):
        return [
            HyperParam("hidden", "Hidden units", "int", 0, 0, 10_000, special="auto",
                       tooltip="Feature detectors the RBM learns; each is one weight filter. "
                               "Auto: about one per three images, 100 to 500."),
            *_common_params(lr),
            HyperParam("k", "Gibbs steps (k)", "int", default("k"), 1, 100,
                       target="extra", tooltip="Gibbs steps per update: CD-k / PCD-k."),
            HyperParam("persistent", "Persistent chains (PCD)", "bool", default("persistent"), target="extra",
                       tooltip="On: persistent contrastive divergence (the chains are the dreams). "
                               "Off: plain CD-k started at the data."),
            HyperParam("n_chains", "Chains", "int", n_chains, 1, 4096,
                       tooltip="Persistent chains: how many dreams run alongside training."),
            HyperParam("restart_every", "Restart chains every", "int", -1, -1, 1_000_000, special="auto",
                       target="extra",
                       tooltip="Each persistent chain starts again from noise once every this many updates, "
                               "in turn, so training sees what dreams started from noise meet (0: never). "
                               "Auto: every 100 for a Gaussian RBM on more than 4,096 pixel values, else never."),
        ]
    if kind == "ae":
        return [
            HyperParam("latent", "Latent size", "int", default("latent"), 1, 4096,
                       tooltip="Numbers in the code of each image."),
            *_common_params(lr),
            HyperParam("loss", "Loss", "choice", default("loss"),
                       choices=("bce", "mse"), target="extra",
                       tooltip="bce: cross-entropy on intensities (sharper); mse: squared error."),
        ]
    if kind == "vae":
        return [
            HyperParam("latent", "Latent size", "int", 0, 0, 4096, special="auto",
                       tooltip="Dimensions of the latent space the Latent explorer walks. "
                               "Auto: about one per eight images, 8 to 32."),
            *_common_params(lr),
            HyperParam("beta", "β (KL weight)", "float", default("beta"), 0.0, 100.0,
                       step=0.1, decimals=2, target="extra",
                       tooltip="Weight of the KL term: above 1 gives smoother, blurrier latents."),
            HyperParam("kl_warmup_epochs", "KL warm-up epochs", "int", default("kl_warmup_epochs"), 0, 10_000,
                       target="extra",
                       tooltip="Ramp β up from 0 over this many epochs (helps avoid posterior collapse)."),
        ]
    if kind == "hybrid":
        return [
            HyperParam("latent", "Latent size", "int", default("latent"), 1, 4096,
                       tooltip="Code size of the autoencoder the RBM learns on."),
            HyperParam("n_hidden", "RBM hidden units", "int", default("n_hidden"),
                       1, 10_000, target="extra", tooltip="Hidden units of the RBM on the codes."),
            *_common_params(lr),
            HyperParam("rbm_epochs", "RBM epochs", "int", 0, 0, 100_000, target="extra", special="auto",
                       tooltip="Epochs of phase 2 (the RBM on the codes); 'Epochs' is phase 1. "
                               "Auto: about 6,000 updates, whatever the number of images."),
            HyperParam("n_chains", "Chains", "int", n_chains, 1, 4096,
                       tooltip="Persistent chains of the RBM: the dreams."),
        ]
    if kind == "texture":
        return _texture_params(default, lr)
    return [
        HyperParam("hidden", "Hidden units", "int", default("n_hidden", 100), 1, 10_000),
        HyperParam("latent", "Latent size", "int", default("latent", 32), 1, 4096),
        *_common_params(lr),
    ]


def _texture_params(default, lr: float) -> list[HyperParam]:
    """The texture RBM's settings: its filters, and PCD on random crops (one image is enough)."""
    steps = default("steps_per_epoch")
    return [
        HyperParam("hidden", "Filters", "int", default("n_filters"), 1, 1024,
                   tooltip="Filters the texture RBM learns, each a small patch it can place anywhere."),
        HyperParam("filter_size", "Filter size (px)", "int", default("filter_size"), 3, 64, target="extra",
                   tooltip="Side of each filter: wide enough to see the texture's grain."),
        HyperParam("pooling", "Max-pooling", "int", default("pooling"), 1, 8, target="extra",
                   tooltip="At most one unit of each p×p block of a filter's map is on (1: none); "
                           "2 keeps the dreams textured rather than flat or streaked."),
        HyperParam("epochs", "Epochs", "int", 0, 0, 100_000, special="auto",
                   tooltip=f"Each epoch is {steps} steps of random crops, whatever the number of images. "
                           f"Auto: {default('epochs')}."),
        HyperParam("batch_size", "Crops per step", "int", 0, 0, 4096, special="auto",
                   tooltip=f"Random crops of the images per update. Auto: {default('batch_size')}."),
        HyperParam("crop", "Crop size (px)", "int", default("crop"), 8, 4096, target="extra",
                   tooltip="Side of the training crops (the images' side when they are smaller)."),
        HyperParam("learning_rate", "Learning rate", "float", lr, 0.0, 10.0, step=lr / 2 or 1e-4,
                   decimals=5, special="model default",
                   tooltip="Step size of the optimiser (Adam). Lower it if training diverges."),
        HyperParam("short_run", "Short-run chains", "int", default("short_run"), 0, 256, target="extra",
                   tooltip="Chains per update that start from noise and run as the dreams do (40 sweeps, "
                           "annealed), so the model learns what its dreams make. 0: persistent chains (PCD-k) "
                           "with the two settings below."),
        HyperParam("k", "Gibbs sweeps (k)", "int", default("k"), 1, 100, target="extra",
                   tooltip="PCD only (short-run chains 0): Gibbs sweeps of the persistent chains per update."),
        HyperParam("n_chains", "Chains", "int", default("n_chains"), 1, 256, target="extra",
                   tooltip="PCD only (short-run chains 0): persistent chains, each a torus of the crop's size."),
        HyperParam("seed", "Seed", "int", -1, -1, 2**31 - 1, special="random",
                   tooltip="Fix it to repeat a run exactly; 'random' draws a new one."),
    ]
