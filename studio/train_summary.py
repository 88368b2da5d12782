"""The settings a training run actually uses, in a line a person can read (no Qt).

`describe_training(trainer)` reads them back from a built trainer (its config, its model's
config, its batch and step counts), so what it shows is what the factory chose from the data,
not a second guess at it; `harmonium train` prints it at the start, and the studio can show
the same text. Settings the person chose are marked with a `*`.
"""
from __future__ import annotations

from typing import Any, Iterable

MARK = "*"


def _num(x: float) -> str:
    return f"{x:g}"


class _Items:
    """Items of one line, each marked when one of its fields was given by the person."""

    def __init__(self, given: set[str]):
        self.given = given
        self.items: list[str] = []
        self.marked = False

    def mark(self, text: str, *fields: str) -> str:
        if self.given.intersection(fields):
            self.marked = True
            return text + MARK
        return text

    def add(self, text: str, *fields: str) -> None:
        self.items.append(self.mark(text, *fields))

    def line(self) -> str:
        return " · ".join(self.items)


def _lr(items: "_Items", cfg: Any, prefix: str = "") -> str:
    text = items.mark(f"{prefix}lr {_num(cfg.learning_rate)}", "learning_rate")
    if cfg.lr_schedule != "constant":
        text += f" ({cfg.lr_schedule} → {_num(round(cfg.lr_final_fraction * 100, 6))} %)"
    if cfg.warmup_steps:
        text += f", warm-up {cfg.warmup_steps:,} steps"
    return text


def _updates(items: _Items, epochs: int, updates: int) -> None:
    items.add(f"{epochs:,} epoch{'s' if epochs != 1 else ''}", "epochs")
    items.items[-1] += f" = {updates:,} updates"


def _rbm_items(items: _Items, cfg: Any, n_visible: int, n_hidden: int, batch: int, updates: int,
               binary: bool, centering: bool = True) -> None:
    """An RBMTrainConfig's settings (`centering`: show it, as a choice of this kind)."""
    items.add(f"{n_visible:,} visible × {n_hidden:,} hidden", "hidden")
    algo = items.mark(f"{'PCD' if cfg.persistent else 'CD'}-{cfg.k}", "persistent", "k")
    if cfg.persistent:
        algo += ", " + items.mark(f"{cfg.n_chains:,} chains", "n_chains")
        replicas = int(getattr(cfg, "tempering", 0) or 0)
        if replicas > 1:
            algo += ", " + items.mark(f"tempered over {replicas} replicas", "tempering")
        elif "tempering" in items.given:
            algo += ", " + items.mark("no tempering", "tempering")
        restart = int(getattr(cfg, "restart_every", 0) or 0)
        if restart:
            algo += ", " + items.mark(f"each restarted from noise every {restart:,} updates", "restart_every")
    items.items.append(algo)
    items.items.append(_lr(items, cfg))
    items.add(f"batch {batch:,}", "batch_size")
    moment = _num(cfg.final_momentum)
    if cfg.momentum_epochs > 0 and cfg.momentum != cfg.final_momentum:
        moment = f"{_num(cfg.momentum)}→{moment}"
    if cfg.optimizer == "adam":
        items.add(f"{items.mark('adam', 'optimizer')}, β₁ {moment}", "final_momentum")
    else:
        prefix = items.mark("sgd", "optimizer") + ", " if "optimizer" in items.given else ""
        items.add(f"{prefix}momentum {moment}", "final_momentum")
    items.add(f"weight decay {_num(cfg.weight_decay)}", "weight_decay")
    if cfg.grad_clip:
        items.add(f"gradient clip {_num(cfg.grad_clip)}", "grad_clip")
    if binary and centering:
        items.add(f"centering {'on' if cfg.centering else 'off'}", "centering")
    if binary and getattr(cfg, "sample_data", False):
        items.add("data sampled as binary", "sample_data")
    _updates(items, cfg.epochs, updates)


def _texture_items(items: _Items, cfg: Any, model_cfg: Any, trainer: Any) -> None:
    """The texture RBM's settings (a `models.conv_rbm.ConvRBMTrainConfig`): its filters, short
    runs from noise (or PCD / CD) on random crops, the sparsity target."""
    f, p = model_cfg.filter_size, model_cfg.pooling
    items.items.append(items.mark(f"{model_cfg.n_filters:,} filters", "hidden") + " "
                       + items.mark(f"{f}×{f}", "filter_size") + (items.mark(f", max-pooled {p}×{p}", "pooling") if p > 1 else ""))
    short = int(getattr(cfg, "short_run", 0) or 0)
    if short and getattr(cfg, "short_run_weight", 1.0) >= 1.0:
        algo = items.mark(f"short runs from noise ({short} chain{'s' if short > 1 else ''} of "
                          f"{cfg.short_run_sweeps} sweeps a step)", "short_run")
    else:
        algo = items.mark(f"{'PCD' if cfg.persistent else 'CD'}-{cfg.k}", "persistent", "k")
        if cfg.persistent:
            algo += ", " + items.mark(f"{cfg.n_chains:,} chains", "n_chains")
    items.items.append(algo)
    items.items.append(_lr(items, cfg, "adam "))
    items.add(f"{trainer.batch_size:,} crops of {trainer.crop} px a step", "batch_size", "crop")
    items.add(f"weight decay {_num(cfg.weight_decay)}", "weight_decay")
    items.add(f"sparsity {_num(cfg.sparsity_target)}", "sparsity_target")
    _updates(items, cfg.epochs, trainer.total_steps)


def _conv_items(items: _Items, cfg: Any, model_cfg: Any, batch: int, updates: int, beta: float | None = None) -> None:
    """An autoencoder's or a VAE's settings (`beta`: the VAE's KL weight in force)."""
    items.items.append(f"{items.mark(f'latent {model_cfg.latent}', 'latent')} (conv width {model_cfg.width})")
    if beta is not None:
        text = f"β {_num(beta)}"
        if getattr(cfg, "kl_warmup_epochs", 0):
            text += f" (warm-up {cfg.kl_warmup_epochs} epochs)"
        items.add(text, "beta", "kl_warmup_epochs")
        text = f"{model_cfg.likelihood} likelihood"
        if model_cfg.likelihood == "gaussian":
            text += f" σ {_num(model_cfg.sigma)}"
        items.add(text, "likelihood", "sigma")
    else:
        text = f"{cfg.loss} loss"
        if getattr(cfg, "code_noise", 0):
            text += f", code noise {_num(cfg.code_noise)}"
        items.add(text, "loss", "code_noise")
    items.items.append(_lr(items, cfg, "adam "))
    items.add(f"batch {batch:,}", "batch_size")
    if cfg.weight_decay or "weight_decay" in items.given:
        items.add(f"weight decay {_num(cfg.weight_decay)}", "weight_decay")
    if cfg.grad_clip:
        items.add(f"gradient clip {_num(cfg.grad_clip)}", "grad_clip")
    _updates(items, cfg.epochs, updates)


def describe_training(trainer: Any, given: Iterable[str] = (), where: str | None = None) -> str:
    """One line (two for the hybrid: one per phase) with the settings `trainer` will train
    with, e.g. ``rbm on 300 images 1×32×32: 1,024 visible × 100 hidden · PCD-1, 64 chains ·
    lr 0.01 (linear → 5 %) · batch 30 · momentum 0.5→0.9 · weight decay 0.0001 · centering on ·
    167 epochs = 1,670 updates``.

    `given`: names of the settings the person chose, marked `*`: training-config field names
    (``k``, ``rbm_k``, ``batch_size``, ``epochs`` ...) and ``hidden`` / ``latent`` for the model's
    size. `where`: the device, said in the first line's head when given."""
    from models.hybrid import HybridTrainConfig
    from models.rbm_trainer import RBMTrainConfig
    from models.vae import VAETrainConfig

    given = set(given)
    model, cfg = trainer.model, trainer.config
    kind = getattr(model, "kind", type(model).__name__)
    shape = getattr(model.config, "image_shape", None)
    head = f"training {kind} on {where}, " if where else f"{kind} on "
    head += f"{trainer.n_samples:,} images" + (f" {'×'.join(str(int(s)) for s in shape)}" if shape else "")
    items = _Items(given)
    if isinstance(cfg, HybridTrainConfig):
        n = trainer.n_samples
        phase1 = _Items({"epochs" if g == "ae_epochs" else g for g in given if g != "epochs"})
        _conv_items(phase1, cfg.ae_config(trainer.seed), model.config.autoencoder,
                    min(cfg.batch_size, n), trainer.ae_total_steps)
        phase2 = _Items({g[4:] for g in given if g.startswith("rbm_")} | ({"hidden"} & given))
        _rbm_items(phase2, cfg.rbm_config(trainer.seed), model.latent, model.config.n_hidden,
                   min(cfg.rbm_batch_size, n), cfg.rbm_epochs * trainer.rbm_batches_per_epoch,
                   binary=True, centering=False)
        legend = f"   ({MARK} from your flags)" if phase1.marked or phase2.marked else ""
        return (f"{head}, phase 1, the autoencoder: {phase1.line()}\n"
                f"  phase 2, the RBM on its codes: {phase2.line()}{legend}")
    if isinstance(cfg, RBMTrainConfig):
        _rbm_items(items, cfg, model.n_visible, model.n_hidden, trainer.batch_size, trainer.total_steps,
                   binary=bool(getattr(model, "binary_visible", kind == "rbm")))
    elif hasattr(cfg, "steps_per_epoch"):  # the texture RBM: filters, PCD on random crops
        _texture_items(items, cfg, model.config, trainer)
    elif isinstance(cfg, VAETrainConfig):
        beta = model.config.beta if cfg.beta is None else float(cfg.beta)
        _conv_items(items, cfg, model.config, trainer.batch_size, trainer.total_steps, beta=beta)
    else:
        _conv_items(items, cfg, model.config, trainer.batch_size, trainer.total_steps)
    legend = f"   ({MARK} from your flags)" if items.marked else ""
    return f"{head}: {items.line()}{legend}"
