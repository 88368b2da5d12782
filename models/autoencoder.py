"""Convolutional autoencoder: the smooth half of the studio, and the front end of the hybrid.

`ConvAutoencoder` maps a square image [B, C, S, S] (S in 28..128, C in {1, 3}) to a code
[B, L] and back. The layout is computed from the size: n stride-2 convolutions take S down to
a final grid f×f with f = ⌈S / 2ⁿ⌉ in 4..7 (28 → 7×7, 32 → 4×4, 64 → 4×4, 100 → 7×7 from a
112 px canvas), then a linear layer gives the code. A size that 2ⁿ does not divide is padded
(edge pixels repeated) on the way in and cropped on the way out, so the output is always
exactly S×S. The decoder mirrors the encoder with transposed convolutions and a sigmoid, so
reconstructions are pixel intensities in [0, 1].

With `sigmoid_codes=True` the codes are squashed into [0, 1], so a binary RBM can take them
as probabilities (the hybrid model). The code logits are batch-normalised first (`CodeNorm`):
without it, on a small set, Adam grows them until every sigmoid saturates, often at the same
corner for every image, and the encoder stops learning. Training can add Gaussian noise to the
code logits before the sigmoid (`AETrainConfig.code_noise`): the decoder then only sees codes
that survive noise, which pushes them towards 0 or 1, as in semantic hashing (Salakhutdinov &
Hinton 2009), and makes them easier for a binary RBM to model.

`AETrainer` trains it with Adam on a per-pixel loss (binary cross-entropy on intensities, or
mean squared error) through the shared `Trainer` loop; `ReconstructionTrainer` holds what the
autoencoder and the VAE trainers share (the random stream, epoch averages, frames).

Data are uint8 images [N, C, H, W]; every batch is converted to float on its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .device import make_generator
from .training import TrainConfig, Trainer, TrainingDiverged

MIN_SIZE, MAX_SIZE = 28, 128


def images_to_input(images: Tensor, device: torch.device) -> Tensor:
    """Pixels (uint8 [B, C, H, W], or float already in [0, 1]) -> float [B, C, H, W] on `device`."""
    x = images.to(device)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def check_image_geometry(image_size: int, channels: int, latent: int, width: int) -> None:
    """The shared validation of the autoencoders' architecture fields."""
    if not MIN_SIZE <= image_size <= MAX_SIZE:
        raise ValueError(f"image_size must be between {MIN_SIZE} and {MAX_SIZE} px (got {image_size})")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")
    if not 2 <= latent <= 512:
        raise ValueError(f"the latent size must be between 2 and 512 (got {latent})")
    if width < 1:
        raise ValueError(f"width must be at least 1 (got {width})")


def conv_layout(size: int) -> tuple[int, int, int]:
    """(n_stages, final, padded): n stride-2 stages take a `padded` px canvas to final×final,
    with final in 4..7 and padded = final·2ⁿ ≥ size (the smallest such canvas)."""
    n = max(1, int(math.floor(math.log2(size / 4))))
    final = math.ceil(size / 2**n)
    return n, final, final * 2**n


def stage_channels(width: int, n_stages: int) -> list[int]:
    """Channels after each stride-2 stage: width, 2·width, 4·width, then capped at 8·width."""
    return [width * min(2**i, 8) for i in range(n_stages)]


class ConvEncoder(nn.Module):
    """[B, C, S, S] float -> [B, out_features]: stride-2 4×4 convolutions, then a linear layer."""

    def __init__(self, image_size: int, channels: int, width: int, out_features: int):
        super().__init__()
        self.image_size = image_size
        n, final, padded = conv_layout(image_size)
        pad = padded - image_size
        self.padding = (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)  # left, right, top, bottom
        chans = stage_channels(width, n)
        layers: list[nn.Module] = []
        c_in = channels
        for c_out in chans:
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(chans[-1] * final * final, out_features)

    def forward(self, x: Tensor) -> Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding, mode="replicate")  # [B, C, P, P]
        h = self.convs(x)  # [B, c_last, f, f]
        return self.fc(h.flatten(1))  # [B, out_features]


class ConvDecoder(nn.Module):
    """[B, L] -> logits [B, C, S, S]: a linear layer to a f×f grid, then stride-2 transposed
    4×4 convolutions up to the padded canvas, cropped to S×S."""

    def __init__(self, image_size: int, channels: int, width: int, latent: int):
        super().__init__()
        n, final, padded = conv_layout(image_size)
        pad = padded - image_size
        self.crop = (pad // 2, pad // 2 + image_size)
        chans = stage_channels(width, n)
        self.grid = (chans[-1], final, final)
        self.fc = nn.Linear(latent, chans[-1] * final * final)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[::-1], chans[::-1][1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.ConvTranspose2d(chans[0], channels, 4, stride=2, padding=1))
        self.deconvs = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = F.leaky_relu(self.fc(z), 0.2).view(z.shape[0], *self.grid)  # [B, c_last, f, f]
        logits = self.deconvs(h)  # [B, C, P, P]
        a, b = self.crop
        return logits[:, :, a:b, a:b] if logits.shape[-1] != b - a else logits  # [B, C, S, S]


class CodeNorm(nn.BatchNorm1d):
    """Batch normalisation of the code logits before the sigmoid (sigmoid codes only).

    Without it the code logits of a small set grow under Adam until every sigmoid saturates,
    often at the same corner for every image, and the encoder stops learning (its gradient
    through a saturated sigmoid is zero). Centering each code unit over the batch keeps the
    codes varying between images; the learned scale lets them become nearly binary where the
    reconstruction (and the code noise) ask for it. A batch of one uses the running statistics.
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


@dataclass
class ConvGeometry:
    """What every convolutional image model's config holds: square `image_size` px images of
    `channels`, a code of `latent` numbers, `width` channels in the first stage."""

    image_size: int = 28
    channels: int = 1
    latent: int = 32
    width: int = 32  # channels of the first stage (doubling per stage, capped at 8×)

    def __post_init__(self) -> None:
        self.image_size, self.channels, self.latent, self.width = (
            int(self.image_size), int(self.channels), int(self.latent), int(self.width))
        check_image_geometry(self.image_size, self.channels, self.latent, self.width)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)


@dataclass
class AEConfig(ConvGeometry):
    """Architecture of a convolutional autoencoder for square `image_size` px images."""

    sigmoid_codes: bool = False  # codes in [0, 1] (for a binary RBM on top) instead of unbounded

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sigmoid_codes = bool(self.sigmoid_codes)


class ConvImageModel(nn.Module):
    """What the convolutional image models share (the autoencoder and the VAE): their config,
    encoder (to `encoder_out` numbers) and decoder (from the `latent` code), device, code size,
    image shape, and pixels in. Subclasses have a `name`."""

    name = "a model"

    def __init__(self, config: ConvGeometry, encoder_out: int):
        super().__init__()
        self.config = config
        c = config
        self.encoder = ConvEncoder(c.image_size, c.channels, c.width, encoder_out)
        self.decoder = ConvDecoder(c.image_size, c.channels, c.width, c.latent)

    @property
    def device(self) -> torch.device:
        return self.encoder.fc.weight.device

    @property
    def latent(self) -> int:
        return self.config.latent

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.config.image_shape

    def images_to_input(self, images: Tensor) -> Tensor:
        """uint8 [B, C, H, W] (or float in [0, 1]) -> float [B, C, H, W] on this device."""
        x = images_to_input(images, self.device)
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"images of shape {list(x.shape[1:])} given to {self.name} for {list(self.image_shape)}")
        return x


class ConvAutoencoder(ConvImageModel):
    """Deterministic convolutional autoencoder: `encode` [B, C, S, S] -> [B, L], `decode`
    [B, L] -> [B, C, S, S] in [0, 1]."""

    kind = "ae"
    name = "an autoencoder"

    def __init__(self, config: AEConfig):
        super().__init__(config, config.latent)
        self.code_norm = CodeNorm(config.latent) if config.sigmoid_codes else None


    def code_logits(self, x: Tensor) -> Tensor:
        """The encoder's output before any squashing: [B, C, H, W] -> [B, L] (batch-normalised
        with sigmoid codes: batch statistics in training mode, running ones in eval mode)."""
        z = self.encoder(self.images_to_input(x))
        return self.code_norm(z) if self.code_norm is not None else z

    def encode(self, x: Tensor) -> Tensor:
        """Images (uint8, or float in [0, 1]) [B, C, H, W] -> codes [B, L] (in [0, 1] with sigmoid codes)."""
        z = self.code_logits(x)
        return torch.sigmoid(z) if self.config.sigmoid_codes else z

    def decode_logits(self, z: Tensor) -> Tensor:
        """Codes [B, L] -> pixel logits [B, C, H, W]."""
        return self.decoder(z.to(self.device))

    def decode(self, z: Tensor) -> Tensor:
        """Codes [B, L] -> images [B, C, H, W] in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction [B, C, H, W] in [0, 1]."""
        return self.decode(self.encode(x))

    reconstruct = forward

    @torch.no_grad()
    def encode_images(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """Codes [N, L] of a whole set (uint8 [N, C, H, W]), batch by batch, without gradients."""
        was = self.training
        self.eval()
        out = torch.cat([self.encode(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)])
        self.train(was)
        return out

    @torch.no_grad()
    def evaluate(self, images: Tensor, batch_size: int = 256) -> dict[str, float]:
        """{"recon_error": mean squared error per pixel (intensities in [0, 1])} over `images`."""
        total, count = 0.0, 0
        was = self.training
        self.eval()
        for i in range(0, images.shape[0], batch_size):
            x = self.images_to_input(images[i : i + batch_size])
            total += F.mse_loss(self.forward(x), x, reduction="sum").item()
            count += x.numel()
        self.train(was)
        return {"recon_error": total / max(1, count)}


@torch.no_grad()
def eval_forward(model: nn.Module, x: Tensor) -> Tensor:
    """model(x) in eval mode (running statistics, nothing updated), then back to the mode it had."""
    was = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was)


# ---------------------------------------------------------------------------- training
def pixel_loss(logits: Tensor, x: Tensor, kind: str) -> Tensor:
    """Mean per-pixel reconstruction loss: "bce" (cross-entropy on intensities) or "mse"."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, x)
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(logits), x)
    raise ValueError(f"unknown reconstruction loss {kind!r} (bce, mse)")


class ReconstructionTrainer(Trainer):
    """What the autoencoder and VAE trainers share: a private random stream on the device,
    epoch metrics as averages of the epoch's step metrics (free: no extra pass over the data),
    a fixed batch for frames, gradient clipping."""

    def __init__(self, model: nn.Module, data: Tensor, config: TrainConfig, device=None):
        super().__init__(model, data, config, device)
        self.generator = make_generator(self.device, self.seed)
        g = torch.Generator().manual_seed(self.seed)
        n = getattr(config, "n_frames", 16)
        self.frame_indices = torch.randperm(self.n_samples, generator=g)[: min(n, self.n_samples)]
        self._sums: dict[str, float] = {}
        self._count = 0

    def _check(self, metrics: dict[str, float], params: bool = False) -> None:
        try:
            super()._check(metrics, params)
        except TrainingDiverged:
            self.forget_epoch()  # the bad step's numbers must not poison the epoch's averages
            raise

    def forget_epoch(self) -> None:
        """Drop the running sums of the epoch's step metrics."""
        self._sums, self._count = {}, 0

    def _optimise(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()

    def _accumulate(self, metrics: dict[str, float]) -> dict[str, float]:
        for k, v in metrics.items():
            if k != "lr":
                self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        return metrics

    def epoch_metrics(self) -> dict[str, float]:
        """The averages of this epoch's step metrics."""
        out = {k: v / max(1, self._count) for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        return out

    def frame_batch(self) -> Tensor:
        return self.data[self.frame_indices.to(self.data.device)]

    def extra_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {"rng": self.generator.get_state()}, {"sums": self._sums, "count": self._count}

    def load_extra_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        if "rng" in tensors:
            self.generator.set_state(tensors["rng"].to(torch.uint8).cpu())
        self._sums = {k: float(v) for k, v in meta.get("sums", {}).items()}
        self._count = int(meta.get("count", 0))


@dataclass
class AETrainConfig(TrainConfig):
    """Adam on a per-pixel reconstruction loss."""

    epochs: int = 30
    learning_rate: float = 1e-3
    loss: str = "bce"  # "bce" (cross-entropy on intensities) | "mse"
    code_noise: float = 0.0  # std of Gaussian noise on the code logits in training (sigmoid codes only)
    frame_every: int = 10
    n_frames: int = 16  # images in a frame (a fixed batch, reconstructed)


class AETrainer(ReconstructionTrainer):
    """Trains a `ConvAutoencoder`. Step metrics: loss, recon_error (MSE per pixel), lr; epoch
    metrics: their averages over the epoch. Frames: reconstructions of a fixed batch."""

    config: AETrainConfig

    def __init__(self, model: ConvAutoencoder, data: Tensor, config: AETrainConfig | None = None, device=None):
        config = config or AETrainConfig()
        pixel_loss(torch.zeros(1), torch.zeros(1), config.loss)  # validate the loss name early
        super().__init__(model, data, config, device)
        self.model: ConvAutoencoder

    def train_step(self, batch: Tensor) -> dict[str, float]:
        m = self.model
        x = m.images_to_input(batch)  # [B, C, H, W]
        z = m.code_logits(x)  # [B, L]
        if m.config.sigmoid_codes:
            if self.config.code_noise > 0:
                noise = torch.randn(z.shape, device=z.device, generator=self.generator)
                z = z + self.config.code_noise * noise
            z = torch.sigmoid(z)
        logits = m.decode_logits(z)  # [B, C, H, W]
        loss = pixel_loss(logits, x, self.config.loss)
        self._optimise(loss)
        with torch.no_grad():
            mse = F.mse_loss(torch.sigmoid(logits), x).item()
        return self._accumulate({"loss": loss.item(), "recon_error": mse})

    @torch.no_grad()
    def frame(self) -> Tensor | None:
        """Reconstructions [n, C, H, W] of a fixed batch of training images, on the CPU."""
        return eval_forward(self.model, self.frame_batch()).clamp(0, 1).cpu()
