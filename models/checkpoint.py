"""Checkpoints: one safetensors file holding the tensors, with JSON metadata in its header.

No pickle anywhere: a checkpoint is tensors (safetensors) plus a JSON document stored under the
header key "harmonium": model kind, architecture config, preprocessing of the images, training
config and history, and the trainer's scalars for resuming. Tensor names are the model's own
`state_dict` names (a binary RBM stores `weight` [visible, hidden], `visible_bias` [visible],
`hidden_bias` [hidden]); the trainer's state (optimiser buffers, persistent chains, random
state) is stored under names starting with "trainer.".

Loading validates everything before it builds anything: a file that is not safetensors, lacks
or mangles the metadata, names an unknown kind, was written by a newer format, or holds
tensors of the wrong names, shapes, dtypes or non-finite values is refused with a
`CheckpointError` that says what is wrong, never a traceback.

Saves are atomic: written to a temporary file in the same folder, then renamed over the target.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

FORMAT = "harmonium-checkpoint"
FORMAT_VERSION = 1
META_KEY = "harmonium"
TRAINER_PREFIX = "trainer."


class CheckpointError(ValueError):
    """A checkpoint could not be read or written; the message says why, for a person."""


@dataclass
class ModelKind:
    """How to rebuild one kind of model from JSON, and how to resume its training."""

    kind: str
    title: str
    build: Callable[[dict[str, Any]], nn.Module]  # config dict -> model
    trainer: Callable[..., Any] | None = None  # (model, data, train_config dict, device) -> Trainer


REGISTRY: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> None:
    REGISTRY[kind.kind] = kind


def _config_dict(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        raise CheckpointError(f"{type(model).__name__} has no dataclass `config`; it cannot be saved")
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` for a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path



def copy_with_extra(src: str | os.PathLike, dst: str | os.PathLike, extra: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write the checkpoint `src` to `dst` (atomically; it may be the same file) with `extra`
    merged into its metadata's "extra": every tensor, the training state included, stays as it
    is. Returns (the path written, the new metadata)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        header = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(header[META_KEY])
    meta["extra"] = {**(meta.get("extra") or {}), **extra}
    header[META_KEY] = json.dumps(meta, allow_nan=True)
    out = atomic_write(dst, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    return out, meta

def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    trainer: Any = None,
    preprocess: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (and, if given, the trainer's resumable state) to `path` atomically."""
    from safetensors.torch import save_file

    kind = getattr(model, "kind", None)
    if kind not in REGISTRY:
        raise CheckpointError(f"cannot save a model of unknown kind {kind!r}")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": _config_dict(model),
        "preprocess": preprocess,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "trainer": None,
        "extra": extra or {},
    }
    if trainer is not None:
        t_tensors, t_meta = trainer.state()
        for k, v in t_tensors.items():
            tensors[TRAINER_PREFIX + k] = v.detach().to("cpu").contiguous().clone()
        meta["trainer"] = t_meta
    header = {META_KEY: json.dumps(meta, allow_nan=True)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


@dataclass
class Checkpoint:
    """A loaded, validated checkpoint."""

    path: Path
    kind: str
    model: nn.Module
    meta: dict[str, Any]
    trainer_tensors: dict[str, Tensor] = field(default_factory=dict)
    sha256: str = ""

    @property
    def preprocess(self) -> dict[str, Any] | None:
        return self.meta.get("preprocess")

    @property
    def history(self) -> list[dict[str, float]]:
        return (self.meta.get("trainer") or {}).get("history", [])

    def make_trainer(self, data: Tensor, device=None, **overrides: Any):
        """A trainer that resumes where this checkpoint stopped (on `data`), with optional
        overrides of the training config (e.g. more `epochs`)."""
        info = REGISTRY[self.kind]
        tmeta = self.meta.get("trainer")
        if info.trainer is None or not tmeta:
            raise CheckpointError(f"{self.path.name} holds no training state to resume from")
        cfg = dict(tmeta.get("train_config", {}), **overrides)
        trainer = info.trainer(self.model, data, cfg, device)
        trainer.load_state(self.trainer_tensors, tmeta)
        return trainer


def _fail(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"Cannot open {path.name}: {why}")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, validated, without reading the tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    if path.stat().st_size == 0:
        raise _fail(path, "the file is empty")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a broken file
        raise _fail(path, f"it is not a safetensors checkpoint or it is damaged ({e})") from None
    if META_KEY not in header:
        raise _fail(path, "it is a safetensors file but not a Harmonium checkpoint (no 'harmonium' metadata)")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as e:
        raise _fail(path, f"its metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _fail(path, "its metadata does not describe a Harmonium checkpoint")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise _fail(path, "its metadata has no format version")
    if version > FORMAT_VERSION:
        raise _fail(path, f"it was written by a newer Harmonium (format {version}; this version reads up to {FORMAT_VERSION})")
    kind = meta.get("kind")
    if kind not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise _fail(path, f"unknown model kind {kind!r} (known: {known})")
    if not isinstance(meta.get("config"), dict):
        raise _fail(path, "its metadata has no model config")
    return meta


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> Checkpoint:
    """Read, validate and rebuild a checkpoint. Raises `CheckpointError` with a clear message."""
    from safetensors import safe_open

    path = Path(path)
    meta = read_metadata(path)
    kind = meta["kind"]
    try:
        model = REGISTRY[kind].build(meta["config"])
    except (TypeError, ValueError, KeyError) as e:
        raise _fail(path, f"its {kind} config is invalid ({e})") from None
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            model_names = [n for n in names if not n.startswith(TRAINER_PREFIX)]
            optional = set(getattr(model, "optional_tensors", ()))  # newer buffers older files lack
            missing = sorted(set(expected) - set(model_names) - optional)
            unexpected = sorted(set(model_names) - set(expected))
            if missing:
                raise _fail(path, f"tensors missing: {', '.join(missing[:5])}")
            if unexpected:
                raise _fail(path, f"unexpected tensors: {', '.join(unexpected[:5])}")
            state = {}
            for n in model_names:
                t = f.get_tensor(n)
                want = expected[n]
                if tuple(t.shape) != tuple(want.shape):
                    raise _fail(path, f"tensor {n!r} has shape {list(t.shape)} but the config needs {list(want.shape)}")
                if t.dtype != want.dtype:
                    raise _fail(path, f"tensor {n!r} is {t.dtype}, expected {want.dtype}")
                if t.is_floating_point() and not torch.isfinite(t).all():
                    raise _fail(path, f"tensor {n!r} contains NaN or infinite values")
                state[n] = t
            trainer_tensors = {n[len(TRAINER_PREFIX) :]: f.get_tensor(n) for n in names if n.startswith(TRAINER_PREFIX)}
    except CheckpointError:
        raise
    except Exception as e:
        raise _fail(path, f"its tensors could not be read ({e})") from None
    model.load_state_dict(state, strict=not optional)  # an optional tensor a file lacks keeps its built value
    model.to(device)
    model.eval()
    return Checkpoint(path, kind, model, meta, trainer_tensors, file_sha256(path))


# ------------------------------------------------------------------------ built-in kinds
def _register_builtin() -> None:
    from .rbm import BernoulliRBM, GaussianBernoulliRBM, RBMConfig
    from .rbm_trainer import RBMTrainConfig, RBMTrainer

    def rbm_trainer(model, data, cfg, device):
        return RBMTrainer(model, data, RBMTrainConfig.from_dict(cfg), device)

    register(ModelKind("rbm", "Binary RBM", lambda c: BernoulliRBM(RBMConfig(**c)), rbm_trainer))
    register(ModelKind("grbm", "Gaussian RBM", lambda c: GaussianBernoulliRBM(RBMConfig(**c)), rbm_trainer))

    from .autoencoder import AEConfig, AETrainConfig, AETrainer, ConvAutoencoder
    from .hybrid import HybridConfig, HybridModel, HybridTrainConfig, HybridTrainer
    from .vae import ConvVAE, VAEConfig, VAETrainConfig, VAETrainer

    def ae_trainer(model, data, cfg, device):
        return AETrainer(model, data, AETrainConfig.from_dict(cfg), device)

    def vae_trainer(model, data, cfg, device):
        return VAETrainer(model, data, VAETrainConfig.from_dict(cfg), device)

    def hybrid_trainer(model, data, cfg, device):
        return HybridTrainer(model, data, HybridTrainConfig.from_dict(cfg), device)

    register(ModelKind("ae", "Autoencoder", lambda c: ConvAutoencoder(AEConfig(**c)), ae_trainer))
    register(ModelKind("vae", "Variational autoencoder", lambda c: ConvVAE(VAEConfig(**c)), vae_trainer))
    register(ModelKind("hybrid", "Autoencoder + RBM", lambda c: HybridModel(HybridConfig(**c)), hybrid_trainer))


_register_builtin()
