"""Training the texture RBM: `ConvRBMTrainConfig`, `ConvRBMTrainer` (PCD-k / CD-k on random
crops, a `models.training.Trainer`, with the parameters' moving average), and the kind's glue
(`build_texture`, `rebuild`, `save`, `load`)."""
from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..training import TrainConfig, Trainer
from .model import KIND, ConvRBM, ConvRBMConfig, ConvRBMError
from .sampler import DEFAULT_ANNEAL, DEFAULT_SWEEPS, ConvGibbsSampler

@dataclass
class ConvRBMTrainConfig(TrainConfig):
    """PCD on random crops. An epoch is `steps_per_epoch` steps of `batch_size` crops."""

    epochs: int = 12
    steps_per_epoch: int = 100
    batch_size: int = 8  # crops per step
    crop: int = 40  # side of the training crops (px; the images' smaller side when they are smaller)
    learning_rate: float = 1e-3
    lr_schedule: str = "linear"
    lr_final_fraction: float = 0.1
    weight_decay: float = 1e-4  # on the filters only
    grad_clip: float | None = 10.0
    momentum: float = 0.5  # Adam's first-moment decay
    k: int = 5  # Gibbs sweeps per update
    persistent: bool = True  # PCD (True) or CD-k from the crops (False)
    n_chains: int = 8
    chain_size: int = 0  # side of the chains' torus (0: the crop's, rounded up to the pooling)
    sparsity_target: float = 0.05  # the hidden units' mean activation Lee et al.'s regulariser aims at
    sparsity_cost: float = 1.0  # its weight (0: off)
    restart_every: int = 20  # PCD: every this many steps one chain (in turn) restarts from noise (0: never)
    average: float = 0.99  # the model keeps this moving average of the trained parameters (0: the last ones)
    # Short-run chains (Nijkamp et al. 2019): every `short_run_every` steps, `short_run` chains
    # start from noise and run `short_run_sweeps` sweeps as `synthesize` does (the first half
    # annealed from T = 2); their final states take `short_run_weight` of the negative phase,
    # the persistent chains the rest (weight 1, the default: the persistent chains do not run;
    # k, n_chains, restart_every and persistent then go unused). 0: PCD / CD alone. The model
    # learns what its sampler makes in 40 sweeps from noise, not its equilibrium: bench/texture.py
    # (tiles, seed 0, one thread) at 40 sweeps, ×floor PCD -> short-run 1: brick 41 -> 1.8,
    # immunohistochemistry 0.96 -> 0.71 (at ¼ bandwidth 2.8 -> 0.65: the colours), grass 9.4 ->
    # 1.1, gravel 4.8 -> 2.7, in as long (brick is seed-sensitive: seeds 1, 2 gave PCD 4.1, 22
    # against 5.0, 2.3; immunohistochemistry seed 1 1.35 against 1.15, at ¼ bandwidth 0.86
    # against 0.88); but chains swept on past 80 sweeps drift further
    # than PCD's (at 320: immunohistochemistry ×9 instead of ×1.1, gravel ×14 instead of ×3.6).
    # Half and half (weight 0.5) did not help brick (×36), and 20 sweeps in training with 40
    # in `synthesize` made it worse (×79).
    short_run: int = 1
    short_run_sweeps: int = DEFAULT_SWEEPS
    short_run_every: int = 1
    short_run_size: int = 0  # side of their torus (0: the persistent chains')
    short_run_weight: float = 1.0
    frame_every: int = 10
    # a checkpoint saved before short runs trained by PCD or CD, and resumes so
    SAVED_DEFAULTS: ClassVar[dict[str, Any]] = {"short_run": 0}


class ConvRBMTrainer(Trainer):
    """Short-run chains from noise (by default), PCD-k or CD-k for a `ConvRBM` on random crops
    of `data` (uint8 [N, C, H, W], or float in [0, 1]; one image is enough). `trainer.sampler`
    holds the persistent chains, whose means are the training page's dreams (the last
    short-run chains' when they alone train: `frame`)."""

    config: ConvRBMTrainConfig

    def __init__(self, model: ConvRBM, data: Tensor, config: ConvRBMTrainConfig | None = None, device=None):
        config = config or ConvRBMTrainConfig()
        if not isinstance(data, Tensor) or data.dim() != 4 or data.shape[0] < 1:
            raise ConvRBMError("the training images must be a non-empty stack [N, C, H, W]")
        if data.shape[1] != model.channels:
            raise ConvRBMError(f"the training images have {data.shape[1]} channel(s), the model {model.channels}")
        if data.dtype != torch.uint8 and not data.is_floating_point():
            raise ConvRBMError(f"the training images must be uint8 or floating point (got {data.dtype})")
        if data.is_floating_point() and not bool(torch.isfinite(data).all()):
            raise ConvRBMError("the training images hold values that are not finite numbers (NaN or infinity)")
        f, p = model.filter_size, model.pooling
        crop = min(int(config.crop), int(data.shape[2]), int(data.shape[3]))
        if crop < f + p - 1:
            raise ConvRBMError(f"training crops of {crop} px are too small for {f} px filters"
                               + (f" pooled {p}×{p}" if p > 1 else "") + ": larger images or smaller filters")
        for name in ("batch_size", "steps_per_epoch", "n_chains", "k", "crop"):
            v = getattr(config, name)
            if type(v) is not int or v < 1:
                raise ConvRBMError(f"{name} must be a whole number of at least 1 (got {v!r})")
        for name in ("short_run_sweeps", "short_run_every"):
            v = getattr(config, name)
            if type(v) is not int or v < 1:
                raise ConvRBMError(f"{name} must be a whole number of at least 1 (got {v!r})")
        if not 0 <= config.short_run_weight <= 1:
            raise ConvRBMError(f"short_run_weight must be from 0 to 1 (got {config.short_run_weight!r})")
        for name in ("chain_size", "restart_every", "short_run", "short_run_size"):
            v = getattr(config, name)
            if type(v) is not int or v < 0:
                raise ConvRBMError(f"{name} must be a whole number, 0 or more (got {v!r})")
        if not 0 < config.sparsity_target < 1 or config.sparsity_cost < 0:
            raise ConvRBMError("sparsity_target must be between 0 and 1 and sparsity_cost at least 0")
        super().__init__(model, data, config, device)
        self.model: ConvRBM
        self.crop = crop
        if config.persistent:  # a torus of chain_size (the crop's by default), a whole number of blocks
            side = max(int(config.chain_size) or crop, f)
            side += (-side) % p
        else:  # CD: chains started at the crops, cut to whole blocks
            side = crop - crop % p
        self.sampler = ConvGibbsSampler(model, n_chains=config.n_chains if config.persistent else config.batch_size,
                                        k=config.k, seed=self.seed, size=(side, side))
        self.sampler.free_running = False
        self._chains = (self.sampler.n_chains, side)
        short_side = max(int(config.short_run_size) or side, f)
        self._short_side = short_side + (-short_side) % p
        self._short_sampler: ConvGibbsSampler | None = None
        self._last_recon = float("nan")
        if not 0 <= config.average < 1:
            raise ConvRBMError(f"average must be from 0 up to (not including) 1 (got {config.average!r})")
        # The parameters' moving average (biased, as Adam's moments: divided by 1 - decay^count
        # when used) and, while the model holds the average, the last trained ("raw") values.
        self._avg = {n: torch.zeros_like(p) for n, p in self._averaged()}
        self._avg_count = 0
        self._raw: dict[str, Tensor] | None = None

    # ----------------------------------------------------------------------- averaging
    def _averaged(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def run(self):
        """`Trainer.run`, with the parameters' moving average handed over at both ends: while
        the generator runs, the model holds the trained ("raw") parameters, which PCD needs; the
        rest of the time (paused, stopped, done, saved) it holds their moving average
        (`average`), which it samples from. PCD's parameters never settle: the chains and the
        weights chase each other, and from one hundred steps to the next the model's samples
        swing between a fine texture and a washed-out or over-contrasted one (gravel, patch
        MMD² 0.007 to 0.35 at successive checks); the average of the last hundred or so steps
        (Polyak averaging) held 0.006-0.012 over the same run."""
        self._use_raw()
        try:
            yield from super().run()
        finally:
            self._use_average()

    @torch.no_grad()
    def _use_raw(self) -> None:
        if self._raw is not None:
            for n, p in self._averaged():
                p.copy_(self._raw[n])
            self._raw = None

    @torch.no_grad()
    def _use_average(self) -> None:
        if self._raw is not None or not self.config.average or not self._avg_count:
            return
        correction = 1.0 - self.config.average**self._avg_count
        average = {n: a / correction for n, a in self._avg.items()}
        if not all(bool(torch.isfinite(a).all()) for a in average.values()):
            return  # (never: only finite parameters are averaged)
        self._raw = {n: p.detach().clone() for n, p in self._averaged()}
        for n, p in self._averaged():
            p.copy_(average[n])
        if not self.model.binary_visible:
            self.model.log_variance.clamp_(min=math.log(self.model.config.var_floor))

    @torch.no_grad()
    def _update_average(self) -> None:
        decay = self.config.average
        if not decay:
            return
        params = self._averaged()
        if not all(bool(torch.isfinite(p).all()) for _, p in params):
            return  # a diverged step is rolled back, never averaged
        for n, p in params:
            self._avg[n].mul_(decay).add_(p, alpha=1.0 - decay)
        self._avg_count += 1

    # ----------------------------------------------------------------------- sizes
    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def batches_per_epoch(self) -> int:
        return self.config.steps_per_epoch

    def batch_indices(self, step: int) -> Tensor:
        """Which images the step's crops come from: drawn with replacement, fixed by (seed,
        step) so a resumed run takes the crops an uninterrupted one takes."""
        g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}:images:{step}".encode()))
        return torch.randint(0, self.n_samples, (self.batch_size,), generator=g)

    def _crops(self, images: Tensor, step: int) -> Tensor:
        """One random crop of `crop` px from each image (places fixed by (seed, step))."""
        g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}:crops:{step}".encode()))
        H, W, c = images.shape[2], images.shape[3], self.crop
        ys = torch.randint(0, H - c + 1, (images.shape[0],), generator=g).tolist()
        xs = torch.randint(0, W - c + 1, (images.shape[0],), generator=g).tolist()
        return torch.stack([img[:, y : y + c, x : x + c] for img, y, x in zip(images, ys, xs)])

    # --------------------------------------------------------------------- optimiser
    def make_optimizer(self) -> torch.optim.Optimizer:
        m = self.model
        params = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for n, p in params if n == "weight"], "weight_decay": self.config.weight_decay},
            {"params": [p for n, p in params if n != "weight"], "weight_decay": 0.0},
        ]
        return torch.optim.Adam(groups, lr=self.config.learning_rate, betas=(self.config.momentum, 0.999))

    # ----------------------------------------------------------------------- the steps
    @torch.no_grad()
    def prepare(self) -> None:
        """Standardise: the training pixels' per-channel mean and std (Gaussian units)."""
        m = self.model
        n, C = 0, m.channels
        s = torch.zeros(C, dtype=torch.float64)
        s2 = torch.zeros(C, dtype=torch.float64)
        for i in range(self.n_samples):
            x = self.data[i].to("cpu", torch.float64).reshape(C, -1)
            if self.data.dtype == torch.uint8:
                x = x / 255.0
            s += x.sum(1)
            s2 += (x * x).sum(1)
            n += x.shape[1]
        mean = s / n
        std = (s2 / n - mean * mean).clamp_min(0).sqrt()
        m.set_standardisation(mean.float(), std.float())
        m.visible_bias.zero_()
        self.sampler.reset()

    def train_step(self, batch: Tensor) -> dict[str, float]:
        m, cfg = self.model, self.config
        v0 = m.images_to_visible(self._crops(batch, self.step))
        short_now = bool(cfg.short_run) and self.step % cfg.short_run_every == 0
        with torch.no_grad():
            if short_now and cfg.short_run_weight == 1:
                vk = None  # the short-run chains alone make the negative phase this step
            elif cfg.persistent:
                if cfg.restart_every and self.step % cfg.restart_every == cfg.restart_every - 1:
                    self._restart_chain((self.step // cfg.restart_every) % self.sampler.n_chains)
                self.sampler.step(cfg.k)
                vk = self.sampler.visible
            else:  # CD-k: chains started at the crops (on the crop's torus)
                side = self._chains[1]
                self.sampler.reset(v0.shape[0], visible=v0[..., :side, :side])
                self.sampler.step(cfg.k)
                vk = self.sampler.visible
            short = self._short_run() if short_now else None
        logits0 = m.hidden_logits(v0, periodic=False)
        if short is None:
            negative = m.free_energy_density(vk).mean()
        elif vk is None:
            negative = m.free_energy_density(short).mean()
        else:
            w = cfg.short_run_weight
            negative = (1.0 - w) * m.free_energy_density(vk).mean() + w * m.free_energy_density(short).mean()
        loss = m.free_energy_density(v0, periodic=False, logits=logits0).mean() - negative
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            q = m.hidden_probs_from_logits(logits0.detach()).mean((0, 2, 3))  # mean activation per filter
            if cfg.sparsity_cost:
                m.hidden_bias.grad.add_(q - cfg.sparsity_target, alpha=cfg.sparsity_cost)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip)
        self.optimizer.step()
        with torch.no_grad():
            m.log_variance.clamp_(min=math.log(m.config.var_floor))
            self._update_average()
            if self.step % 10 == 0 or not math.isfinite(self._last_recon):
                self._last_recon = m.reconstruction_error(v0).item()
        return {"recon_error": self._last_recon, "free_energy_gap": loss.item(), "activation": q.mean().item(),
                "lr": self.optimizer.param_groups[0]["lr"]}

    @torch.no_grad()
    def _short_run(self) -> Tensor:
        """`short_run` chains from noise run as `synthesize` runs its sampler (`short_run_sweeps`
        sweeps, the first half annealed from `DEFAULT_ANNEAL` down to 1) with the current
        parameters; their final visible states. The noise is fixed by (seed, step), so a resumed
        run draws what an uninterrupted one draws."""
        cfg = self.config
        seed = zlib.crc32(f"{self.seed}:short-run:{self.step}".encode())
        s = ConvGibbsSampler(self.model, n_chains=cfg.short_run, seed=seed, size=(self._short_side, self._short_side))
        s.free_running = False
        self._short_sampler = s.run(cfg.short_run_sweeps, DEFAULT_ANNEAL)
        return s.visible

    @property
    def short_chains(self) -> Tensor | None:
        """The last short-run chains' final visible states (None before the first)."""
        return None if self._short_sampler is None else self._short_sampler.visible

    def _restart_chain(self, i: int) -> None:
        """Chain i starts again from noise. Persistent chains alone settle in the modes the
        model has learned; a texture is then drawn from noise, and a mode that only chains
        started there reach (a washed-out, nearly flat image when a sparsity target holds the
        hidden units down) is never corrected. Chains restarted in turn, each living
        n_chains × restart_every steps, show the model what its sampler meets from noise."""
        s = self.sampler
        v = self.model.initial_visible(1, s.height, s.width, generator=s.generator)
        s.visible[i : i + 1] = v
        s.mean[i : i + 1] = v
        s.hidden[i : i + 1] = 0

    @torch.no_grad()
    def epoch_metrics(self) -> dict[str, float]:
        """On 16 fixed crops: reconstruction error, free energy per position, mean activation,
        and σ (the mean over channels, in standardised units)."""
        m = self.model
        g = torch.Generator().manual_seed(0)
        idx = torch.randint(0, self.n_samples, (16,), generator=g)
        v = m.images_to_visible(self._crops(self.data.index_select(0, idx.to(self.data.device)), -1))
        logits = m.hidden_logits(v, periodic=False)
        return {"recon_error": m.reconstruction_error(v).item(),
                "free_energy": m.free_energy_density(v, periodic=False, logits=logits).mean().item(),
                "activation": m.hidden_probs_from_logits(logits).mean().item(),
                "sigma": m.variance.sqrt().mean().item()}

    def frame(self) -> Tensor | None:
        """The persistent chains' E[v | h] as images (CD: the last negative states; the last
        short-run chains' when they alone make the negative phase, `short_run_weight` 1)."""
        if self.config.short_run and self.config.short_run_weight == 1 and self._short_sampler is not None:
            return self._short_sampler.images("probs")
        return self.sampler.images("probs")

    def on_rollback(self) -> None:
        s = self.sampler
        if not (torch.isfinite(s.visible).all() and torch.isfinite(s.mean).all()):
            s.reset()

    # ------------------------------------------------------------------------- state
    def extra_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The chains, the moving average (biased, with its count) and, while the model holds
        the average, the raw parameters training resumes from."""
        t = {f"sampler.{k}": v for k, v in self.sampler.state_tensors().items()}
        t.update({f"average.{n}": a for n, a in self._avg.items()})
        t["average_count"] = torch.tensor(self._avg_count, dtype=torch.int64)
        if self._raw is not None:
            t.update({f"raw.{n}": r for n, r in self._raw.items()})
        return t, {}

    def load_extra_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        s = {k[len("sampler."):]: v for k, v in tensors.items() if k.startswith("sampler.")}
        if s:
            if "visible" not in s or "mean" not in s or "hidden" not in s:
                raise ConvRBMError("the saved chains are incomplete (visible, mean and hidden states are needed)")
            self.sampler.load_state_tensors(s)
        params = dict(self._averaged())
        for prefix, into in (("average.", "_avg"), ("raw.", "_raw")):
            saved = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not saved:
                continue
            if set(saved) != set(params):
                raise ConvRBMError(f"its saved {prefix[:-1]} parameters are {', '.join(sorted(saved))}, this model trains "
                                   f"{', '.join(sorted(params))}")
            for n, t in saved.items():
                if tuple(t.shape) != tuple(params[n].shape) or not t.is_floating_point() or not bool(torch.isfinite(t).all()):
                    raise ConvRBMError(f"its saved {prefix[:-1]} of {n} has shape {list(t.shape)} or values this model cannot take")
            setattr(self, into, {n: t.to(self.device, torch.float32, copy=True) for n, t in saved.items()})
        if "average_count" in tensors:
            count = tensors["average_count"]
            if count.numel() != 1 or count.is_floating_point() or int(count) < 0:
                raise ConvRBMError("its saved average count is not a whole number of steps")
            self._avg_count = int(count)

    def check_state(self) -> None:
        """The loaded chains are this trainer's: n chains on its torus, finite values."""
        n, side = self._chains
        s, m = self.sampler, self.model
        want = {"visible": (n, m.channels, side, side), "mean": (n, m.channels, side, side),
                "hidden": (n, m.n_filters, side, side)}
        for name, shape in want.items():
            t = getattr(s, name)
            if tuple(t.shape) != shape:
                raise ConvRBMError(f"its chains' {name} has shape {list(t.shape)}, this training needs {list(shape)}")
            if not bool(torch.isfinite(t).all()):
                raise ConvRBMError(f"its chains' {name} holds NaN or infinite values")


# -------------------------------------------------------------------- the kind's glue
def build_texture(kind: Any, options: Any, data: Tensor, device: Any) -> ConvRBMTrainer:
    """The builder of the "texture" kind's `models.kinds.ModelKind` record: a fresh
    `ConvRBM` and its trainer from `models.factory.Options`. `options.hidden` is the number of
    filters; `options.extra` keys go to the model's config or the training config (unknown keys
    are refused); `options.epochs`, `batch_size`, `learning_rate`, `seed`, `frame_every` as
    for every kind. `options.n_chains` is a pixel RBM's setting (100 there) and is not used:
    "n_chains" in `options.extra` sets the texture chains."""
    c, h, w = (int(s) for s in options.image_shape)
    model_fields = {f.name for f in dataclasses.fields(ConvRBMConfig)} - {"channels", "image_shape"}
    train_fields = {f.name for f in dataclasses.fields(ConvRBMTrainConfig)}
    extra = dict(getattr(options, "extra", {}) or {})
    unknown = sorted(set(extra) - model_fields - train_fields)
    if unknown:
        raise ConvRBMError(f"unknown texture option(s): {', '.join(unknown)} (known: {', '.join(sorted(model_fields | train_fields))})")
    defaults = dict(getattr(kind, "defaults", {}) or {})
    model_cfg = {k: v for k, v in defaults.items() if k in model_fields}
    model_cfg.update({k: v for k, v in extra.items() if k in model_fields})
    if options.hidden:
        model_cfg["n_filters"] = int(options.hidden)
    model = ConvRBM(ConvRBMConfig(channels=c, image_shape=(c, h, w), **model_cfg)).to(device)
    train = {k: v for k, v in defaults.items() if k in train_fields}
    for name in ("epochs", "batch_size", "learning_rate", "seed", "frame_every"):
        value = getattr(options, name, None)
        if value is not None and (name != "learning_rate" or value):
            train[name] = value
    train.update({k: v for k, v in extra.items() if k in train_fields})
    return ConvRBMTrainer(model, data, ConvRBMTrainConfig.from_dict(train), device)


def rebuild(config: dict[str, Any]) -> ConvRBM:
    """The untrained model a checkpoint's "config" describes."""
    return ConvRBM(ConvRBMConfig.from_dict(config))


def save(path, model: ConvRBM, *, trainer: ConvRBMTrainer | None = None, preprocess: dict[str, Any] | None = None,
         extra: dict[str, Any] | None = None):
    """Save through `models.checkpoint.save_checkpoint` (atomic, validated; needs the kind
    registered in `models.kinds.KINDS`)."""
    from ..checkpoint import save_checkpoint

    return save_checkpoint(path, model, trainer=trainer, preprocess=preprocess, extra=extra)


def load(path, device: torch.device | str = "cpu") -> ConvRBM:
    """A texture model from a checkpoint (`models.checkpoint.load_checkpoint`); a checkpoint of
    another kind is refused with `models.checkpoint.CheckpointError`."""
    from ..checkpoint import CheckpointError, load_checkpoint

    ckpt = load_checkpoint(path, device)
    if ckpt.kind != KIND:
        raise CheckpointError(f"Cannot open {ckpt.path.name}: it holds a {ckpt.kind} model, not a texture model")
    return ckpt.model
