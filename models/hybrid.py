"""The hybrid: an RBM that dreams in an autoencoder's code space.

A binary RBM over raw pixels needs a weight per pixel per hidden unit and many images to
learn them; at 64×64 and above, with the hundred images an artist may have, it mostly learns
a blurry average. The hybrid splits the work (in the spirit of Hinton & Salakhutdinov 2006,
"Reducing the dimensionality of data with neural networks", run the other way round):

1. a convolutional autoencoder with sigmoid codes learns to squeeze each image into L numbers
   in [0, 1] (noise on the code logits in training pushes them towards binary, as in semantic
   hashing, Salakhutdinov & Hinton 2009);
2. the whole set is encoded (batched, no gradients);
3. a `BernoulliRBM` with L visible units learns the distribution of the codes by PCD (its
   chains mixed by parallel tempering: `HybridTrainConfig.rbm_tempering`), taking the codes
   as probabilities;
4. persistent Gibbs chains over the RBM produce binary codes, and the decoder turns the
   chains' code samples into images (not their means E[v | h]: see `LatentGibbsSampler.images`).

`HybridModel` holds both parts as submodules, so its state_dict is `autoencoder.*` + `rbm.*`
and one checkpoint file holds both. `LatentGibbsSampler` has the surface of `GibbsSampler`
(`step`, `images`, `reset`, `temperature`, `n_chains`, clamping over code units), so the
Dreams viewer shows either. `HybridTrainer` runs both phases from one `run()` generator.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .autoencoder import AEConfig, AETrainConfig, AETrainer, ConvAutoencoder
from .rbm import BernoulliRBM, RBMConfig
from .rbm_trainer import RBMTrainConfig, RBMTrainer
from .sampling import GibbsSampler
from .tempering import DEFAULT_REPLICAS, TemperedSampler
from .training import TrainConfig, Trainer, TrainingDiverged


@dataclass
class HybridConfig:
    """An autoencoder with sigmoid codes, and the number of hidden units of the RBM over them."""

    autoencoder: AEConfig = field(default_factory=lambda: AEConfig(latent=16, sigmoid_codes=True))
    n_hidden: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.autoencoder, dict):
            self.autoencoder = AEConfig(**self.autoencoder)
        if not self.autoencoder.sigmoid_codes:
            raise ValueError("the hybrid's autoencoder must emit sigmoid codes (sigmoid_codes=True)")
        self.n_hidden = int(self.n_hidden)
        if self.n_hidden < 1:
            raise ValueError("the hybrid's RBM needs at least one hidden unit")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.autoencoder.image_shape


class HybridModel(nn.Module):
    """Autoencoder + binary RBM over its codes: `autoencoder` (ConvAutoencoder) and `rbm`
    (BernoulliRBM with `latent` visible units)."""

    kind = "hybrid"

    def __init__(self, config: HybridConfig):
        super().__init__()
        self.config = config
        L = config.autoencoder.latent
        self.autoencoder = ConvAutoencoder(config.autoencoder)
        self.rbm = BernoulliRBM(RBMConfig(n_visible=L, n_hidden=config.n_hidden, image_shape=(1, 1, L)))
        # The mean code of the training set (-1: not known yet): the code chains are tempered
        # toward it. Files from before it existed open without it (`optional_tensors`).
        self.register_buffer("code_mean", torch.full((L,), -1.0))

    optional_tensors = ("code_mean",)

    @property
    def code_base(self) -> Tensor | None:
        """The base of the code chains' tempering ladder (logits of the mean training code), or
        None when the mean code is not known."""
        if bool((self.code_mean < 0).any()):
            return None
        from .tempering import base_from_mean

        return base_from_mean(self.rbm, self.code_mean)

    @property
    def device(self) -> torch.device:
        return self.autoencoder.device

    @property
    def latent(self) -> int:
        return self.config.autoencoder.latent

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.image_shape

    def images_to_input(self, images: Tensor) -> Tensor:
        return self.autoencoder.images_to_input(images)

    def encode(self, images: Tensor) -> Tensor:
        """Images [B, C, H, W] -> codes [B, L] in [0, 1]."""
        return self.autoencoder.encode(images)

    def decode(self, codes: Tensor) -> Tensor:
        """Codes [B, L] in [0, 1] -> images [B, C, H, W] in [0, 1]."""
        return self.autoencoder.decode(codes)

    def forward(self, images: Tensor) -> Tensor:
        """The autoencoder's reconstruction [B, C, H, W]."""
        return self.autoencoder(images)

    def make_sampler(self, n_chains: int = 64, k: int = 1, temperature: float = 1.0, seed: int | None = None, **kw) -> "LatentGibbsSampler":
        return LatentGibbsSampler(self, n_chains=n_chains, k=k, temperature=temperature, seed=seed, **kw)

    @torch.no_grad()
    def evaluate(self, images: Tensor, batch_size: int = 256) -> dict[str, float]:
        """"recon_error": the autoencoder's MSE per pixel; "code_recon_error": the RBM's
        mean-field reconstruction error per code unit; "code_free_energy": mean F(codes)."""
        out = self.autoencoder.evaluate(images, batch_size)
        codes = self.autoencoder.encode_images(images, batch_size)
        out["code_recon_error"] = self.rbm.reconstruction_error(codes).item()
        out["code_free_energy"] = self.rbm.free_energy(codes).mean().item()
        return out


def _of_the_chains(name: str, cast=None) -> property:
    """A property that reads `self.gibbs.<name>` (and, given `cast`, sets it to `cast(value)`)."""

    def get(self):
        return getattr(self.gibbs, name)

    def set_(self, value) -> None:
        setattr(self.gibbs, name, cast(value))

    return property(get, set_ if cast is not None else None, doc=f"The code chains' `{name}`.")


class LatentGibbsSampler:
    """Persistent Gibbs chains over the hybrid's RBM, seen through the decoder.

    The chains live in code space (a `GibbsSampler` over `model.rbm`, state [n, L]); `images()`
    decodes them: "probs" decodes the chains' means E[v | h] (code probabilities), "samples"
    the binary code samples. Clamping fixes chosen code units.
    """

    def __init__(self, model: HybridModel, n_chains: int = 64, k: int = 1, temperature: float = 1.0,
                 seed: int | None = None, generator: torch.Generator | None = None, tempering: bool | int = True):
        self.model = model
        base = model.code_base
        replicas = (DEFAULT_REPLICAS if tempering is True else int(tempering)) if base is not None else 0
        if replicas > 1:
            # Code chains of an RBM trained on a few dozen codes fall into one of its modes and
            # stay (70 faces: MMD² from 0.019 to 0.051 between seeds): temper them toward the
            # mean training code, as the pixel RBMs' chains are (models/tempering.py).
            self.gibbs: GibbsSampler = TemperedSampler(model.rbm, n_chains=n_chains, k=k, temperature=temperature, seed=seed,
                                                       generator=generator, replicas=replicas, base=base)
        else:
            self.gibbs = GibbsSampler(model.rbm, n_chains=n_chains, k=k, temperature=temperature, seed=seed, generator=generator)

    # What the viewer reads and sets, passed through to the chains.
    temperature = _of_the_chains("temperature", float)
    k = _of_the_chains("k", int)
    n_chains = _of_the_chains("n_chains")
    steps_taken = _of_the_chains("steps_taken")
    generator = _of_the_chains("generator")

    @torch.no_grad()
    def reset(self, n_chains: int | None = None, start: Tensor | None = None) -> "LatentGibbsSampler":
        """Restart the chains: at the codes of `start` (images [n, C, H, W], or codes [n, L]),
        or at draws from the RBM's visible biases when `start` is None."""
        if start is not None and start.dim() == 4:
            start = self.model.autoencoder.encode_images(start)
        self.gibbs.reset(n_chains, start)
        return self

    def step(self, k: int | None = None) -> "LatentGibbsSampler":
        self.gibbs.step(k)
        return self

    __call__ = step

    def clamp(self, mask: Tensor, values: Tensor | None = None) -> None:
        """Fix code units (mask [L] or [n, L]) to `values`; see `GibbsSampler.clamp`."""
        self.gibbs.clamp(mask, values)

    def unclamp(self) -> None:
        self.gibbs.unclamp()

    def states(self, kind: Literal["probs", "samples"] = "probs") -> Tensor:
        """The chains' codes [n, L]."""
        return self.gibbs.states(kind)

    @torch.no_grad()
    def images(self, kind: Literal["probs", "samples", "code_means"] = "probs", batch_size: int = 256) -> Tensor:
        """The chains decoded: images [n, C, H, W] in [0, 1] on the CPU.

        "probs" and "samples" both decode each chain's current binary code sample (the decoder
        gives pixel means either way). "code_means" decodes E[v | h] instead: uncertain code
        bits sit near 0.5, and the decoder (trained on codes pushed to 0 or 1) turns such codes
        into the average image, so every chain looks alike (measured on 70 faces: MMD² 0.059
        against 0.027 for decoded samples)."""
        codes = self.gibbs.mean if kind == "code_means" else self.gibbs.visible
        return decode_codes(self.model.autoencoder, codes, batch_size)

    def state_tensors(self) -> dict[str, Tensor]:
        return self.gibbs.state_tensors()

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        self.gibbs.load_state_tensors(state)


@torch.no_grad()
def decode_codes(autoencoder: ConvAutoencoder, codes: Tensor, batch_size: int = 256) -> Tensor:
    """Codes [n, L] -> images [n, C, H, W] in [0, 1] on the CPU, batch by batch."""
    return torch.cat([autoencoder.decode(codes[i : i + batch_size]).cpu() for i in range(0, codes.shape[0], batch_size)])


# ---------------------------------------------------------------------------- training
@dataclass
class HybridTrainConfig(TrainConfig):
    """Phase 1 (the autoencoder) takes the common fields (batch_size, learning_rate, schedule,
    grad_clip ...) plus `loss` and `code_noise`; phase 2 (the RBM on the codes) takes the
    `rbm_*` fields. `epochs` is derived: ae_epochs + rbm_epochs."""

    ae_epochs: int = 30
    learning_rate: float = 1e-3
    loss: str = "bce"
    code_noise: float = 2.0  # std of the noise on the code logits (pushes codes towards 0/1)
    rbm_epochs: int = 200  # the factory sets it from the set's size (about `RBM_UPDATES` updates)
    rbm_batch_size: int = 10
    rbm_learning_rate: float = 0.1
    rbm_lr_schedule: str = "linear"
    rbm_k: int = 1
    rbm_n_chains: int = 64
    rbm_weight_decay: float = 1e-4
    rbm_momentum: float = 0.5
    rbm_final_momentum: float = 0.9
    # PCD's chains over the codes mixed by parallel tempering with this many replicas (0: plain
    # PCD; models.rbm_trainer). Plain chains of a code RBM on a few dozen codes stay in a few of
    # its modes, so training never lowers the others and the model stays diffuse: on 70 faces
    # (bench/quality.py's faces-32, 300 dreams, 3 draws, the same autoencoder, 3 RBM seeds each)
    # MMD² 0.0227 plain against 0.0191 tempered (PCA + GMM 0.0187); split seed 1: 0.0294 against
    # 0.0260 (PCA + GMM 0.0221). Its phase takes 2-3x as long (5-8 s instead of 3 s there).
    rbm_tempering: int = 10
    frame_every: int = 10
    n_frames: int = 16

    def __post_init__(self) -> None:
        self.epochs = int(self.ae_epochs) + int(self.rbm_epochs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HybridTrainConfig":
        """As for every config; an `epochs` that disagrees with ae_epochs + rbm_epochs (e.g. an
        override when resuming: "train to 300 epochs") is the new total, the RBM phase taking
        the difference."""
        cfg = super().from_dict(d)
        if "rbm_tempering" not in d:  # a file from before tempered training: its chains were plain
            cfg.rbm_tempering = 0
        epochs = d.get("epochs")
        if epochs is not None and int(epochs) != cfg.epochs:
            cfg.rbm_epochs = max(0, int(epochs) - cfg.ae_epochs)
            cfg.__post_init__()
        return cfg

    def ae_config(self, seed: int) -> AETrainConfig:
        common = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainConfig)}
        common.update(epochs=self.ae_epochs, seed=seed)
        return AETrainConfig(**common, loss=self.loss, code_noise=self.code_noise, n_frames=self.n_frames)

    def rbm_config(self, seed: int) -> RBMTrainConfig:
        return RBMTrainConfig(
            epochs=self.rbm_epochs, batch_size=self.rbm_batch_size, learning_rate=self.rbm_learning_rate,
            lr_schedule=self.rbm_lr_schedule, lr_final_fraction=self.lr_final_fraction, k=self.rbm_k,
            n_chains=self.rbm_n_chains, weight_decay=self.rbm_weight_decay, momentum=self.rbm_momentum,
            final_momentum=self.rbm_final_momentum, persistent=True, tempering=self.rbm_tempering, seed=seed, frame_every=0,
            snapshot_every=self.snapshot_every,
        )


class HybridTrainer(Trainer):
    """Both phases from one `run()`: the steps count on across them, every event carries a
    "phase" metric (1: autoencoder, 2: RBM on the codes), frames are reconstructions of a
    fixed batch in phase 1 and the decoded persistent chains in phase 2. Snapshots hold the
    whole model, so a divergence in either phase rolls both parts back.

    Inside, phase 1 is an `AETrainer` over `model.autoencoder` and phase 2 an `RBMTrainer`
    over `model.rbm` on the codes (built when phase 2 starts); this trainer drives their steps.
    Phase-2 metrics are prefixed "rbm_" (rbm_recon_error is per code unit).
    """

    config: HybridTrainConfig

    def __init__(self, model: HybridModel, data: Tensor, config: HybridTrainConfig | None = None, device=None):
        self.ae_trainer: AETrainer | None = None
        self.rbm_trainer: RBMTrainer | None = None
        self.rbm_start: int | None = None  # the step at which phase 2 began
        config = config or HybridTrainConfig()
        super().__init__(model, data, config, device)
        self.model: HybridModel
        self.ae_trainer = AETrainer(model.autoencoder, self.data, config.ae_config(self.seed), self.device)

    # The optimiser is the active phase's (the base class reads, saves and replaces it).
    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        inner = self.active
        return inner.optimizer if inner is not None else None

    @optimizer.setter
    def optimizer(self, value: torch.optim.Optimizer | None) -> None:
        """Give the active phase `value`. Before phase 1's trainer exists (inside the base
        constructor, whose `make_optimizer()` is then None) there is nothing to hold one, and
        only None is taken; anything else that cannot be kept raises instead of vanishing."""
        inner = self.active
        if inner is None:
            if value is not None:
                raise RuntimeError("the hybrid trainer has no active phase to take an optimiser yet")
            return
        if value is None:
            raise ValueError("the active phase's optimiser cannot be removed")
        inner.optimizer = value

    def make_optimizer(self) -> torch.optim.Optimizer | None:
        inner = self.active
        return inner.make_optimizer() if inner is not None else None

    @property
    def phase(self) -> int:
        return 2 if self.rbm_trainer is not None else 1

    @property
    def active(self) -> Trainer | None:
        return self.rbm_trainer if self.rbm_trainer is not None else self.ae_trainer

    # ------------------------------------------------------------------------------ sizes
    @property
    def ae_batches_per_epoch(self) -> int:
        return max(1, self.n_samples // max(1, min(self.config.batch_size, self.n_samples)))

    @property
    def rbm_batches_per_epoch(self) -> int:
        return max(1, self.n_samples // max(1, min(self.config.rbm_batch_size, self.n_samples)))

    @property
    def ae_total_steps(self) -> int:
        return self.rbm_start if self.rbm_start is not None else self.config.ae_epochs * self.ae_batches_per_epoch

    @property
    def batches_per_epoch(self) -> int:
        return self.rbm_batches_per_epoch if self.phase == 2 else self.ae_batches_per_epoch

    @property
    def total_steps(self) -> int:
        return self.ae_total_steps + self.config.rbm_epochs * self.rbm_batches_per_epoch

    @property
    def epoch(self) -> int:
        if self.rbm_start is None:
            return min(self.step, self.ae_total_steps) // self.ae_batches_per_epoch
        return self.config.ae_epochs + (self.step - self.rbm_start) // self.rbm_batches_per_epoch

    def current_lr(self) -> float:
        inner = self.active
        return inner.current_lr() if inner is not None else self.config.learning_rate

    # ------------------------------------------------------------------------ phases
    @torch.no_grad()
    def encode_codes(self) -> Tensor:
        """The codes [N, L] of the whole training set (batched, no gradients)."""
        return self.model.autoencoder.encode_images(self.data)

    def _start_phase2(self, prepare: bool = True) -> None:
        if self.rbm_start is None:
            self.rbm_start = self.step
        codes = self.encode_codes()
        with torch.no_grad():
            self.model.code_mean.copy_(codes.mean(0))
        self.rbm_trainer = RBMTrainer(self.model.rbm, codes, self.config.rbm_config(self.seed), self.device)
        self.rbm_trainer.step = self.step - self.rbm_start
        if prepare:
            self.rbm_trainer.prepare()

    def prepare(self) -> None:
        self.ae_trainer.prepare()

    # ------------------------------------------------------------------------------ loop
    def _driver(self) -> tuple[Trainer, int]:
        """Phase 1's trainer from step 0, then (the autoencoder done) phase 2's from `rbm_start`:
        the base loop runs both as one stream of events (close it to stop, call run() again to
        resume)."""
        if self.phase == 1 and self.step >= self.ae_total_steps:
            t0 = time.perf_counter()
            self._start_phase2()
            self._snapshot()
            self.elapsed += time.perf_counter() - t0
        return self.active, self.rbm_start or 0

    def _label(self, metrics: dict[str, float]) -> dict[str, float]:
        """Phase 2's metrics are the RBM's (prefixed `rbm_`); every event says its phase."""
        if self.phase == 2:
            metrics = {f"rbm_{k}": v for k, v in metrics.items()}
        metrics["phase"] = float(self.phase)
        return metrics

    def _watched(self) -> tuple[nn.Module, str]:
        """Phase 2 changes only the code RBM: the autoencoder is not copied or scanned again."""
        return (self.model.rbm, "rbm.") if self.phase == 2 else (self.model, "")

    def _check(self, metrics: dict[str, float], params: bool = False) -> None:
        try:
            super()._check(metrics, params)
        except TrainingDiverged:
            self.ae_trainer.forget_epoch()
            # The chains ran on the bad weights; restart them from the restored model.
            if self.rbm_trainer is not None and not torch.isfinite(self.rbm_trainer.sampler.visible).all():
                self.rbm_trainer.sampler.reset()
            raise

    @torch.no_grad()
    def frame(self) -> Tensor | None:
        """Phase 1: reconstructions of a fixed batch; phase 2: the decoded persistent chains."""
        if self.rbm_trainer is None:
            return self.ae_trainer.frame()
        return decode_codes(self.model.autoencoder, self.rbm_trainer.sampler.visible)  # code samples, not means

    # ----------------------------------------------------------------------------- state
    def extra_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        t_ae, m_ae = self.ae_trainer.extra_state()
        tensors = {f"ae.{k}": v for k, v in t_ae.items()}
        meta: dict[str, Any] = {"phase": self.phase, "rbm_start": self.rbm_start, "ae": m_ae}
        if self.rbm_trainer is not None:
            t_rbm, m_rbm = self.rbm_trainer.extra_state()
            tensors.update({f"rbm.{k}": v for k, v in t_rbm.items()})
            meta["rbm"] = m_rbm
        return tensors, meta

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        extra = meta.get("extra", {}) or {}
        self.step = int(meta["step"])
        self.rbm_trainer, self.rbm_start = None, None
        if extra.get("phase") == 2:
            # Build phase 2 first, so the saved optimiser state goes to the RBM's optimiser.
            self.rbm_start = int(extra["rbm_start"])
            self._start_phase2(prepare=False)
        super().load_state(tensors, meta)

    def check_state(self) -> None:
        """Each phase's trainer checks its own loaded state."""
        for inner in (self.ae_trainer, self.rbm_trainer):
            if inner is not None:
                inner.check_state()

    def load_extra_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        ae = {k[3:]: v for k, v in tensors.items() if k.startswith("ae.")}
        self.ae_trainer.load_extra_state(ae, meta.get("ae", {}))
        self.ae_trainer.step = min(self.step, self.ae_total_steps)
        if self.rbm_trainer is not None:
            rbm = {k[4:]: v for k, v in tensors.items() if k.startswith("rbm.")}
            self.rbm_trainer.load_extra_state(rbm, meta.get("rbm", {}))
            self.rbm_trainer.step = self.step - self.rbm_start
