"""Checkpoints: one safetensors file holding the tensors, with JSON metadata in its header.

No pickle anywhere: a checkpoint is tensors (safetensors) plus a JSON document stored under the
header key "harmonium": model kind, architecture config, preprocessing of the images, training
config and history, and the trainer's scalars for resuming. Tensor names are the model's own
`state_dict` names (a binary RBM stores `weight` [visible, hidden], `visible_bias` [visible],
`hidden_bias` [hidden]); the trainer's state (optimiser buffers, persistent chains, random
state) is stored under names starting with "trainer.".

Reading is validated at the boundary, each step bounded before the next begins, and whatever
fails is refused with one `CheckpointError` sentence (a ValueError), never a traceback:

1. the file: a regular file (never a FIFO that would block), its safetensors header at most
   `MAX_HEADER_BYTES` and within the file;
2. the metadata: at most `MAX_META_CHARS` of JSON nested at most `MAX_NESTING` deep, measured
   before parsing (so no RecursionError), then checked against the declared schema below
   (`_top_schema`, `_MODEL_FIELDS`, `_TRAIN_FIELDS`, `_PREPROCESS`, the kinds' trainer records):
   types, ranges, sizes, and consistency (the preprocessing's image size and colour against the
   model's, a hybrid's phase against its step);
3. the tensors: names, shapes and dtypes compared with the model built from the config on
   torch's "meta" device, so a config asking for a huge model allocates nothing; then values
   (finite, no larger than `MAX_MAGNITUDE`, `_TENSOR_RULES`). The trainer's tensors are checked
   by name, dtype and value here, and by shape against the trainer that resumes from them
   (`Trainer.load_state`, `check_state`); what does not fit is a CheckpointError there too.

Saves are atomic (`models.atomic.atomic_write`: a temporary file beside the target, flushed and
renamed over it) and refuse what loading would refuse: a model or training state holding NaN or
infinite values, metadata outside the schema. So a saved model always reopens.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .atomic import atomic_write  # noqa: F401  (the one atomic writer; studio.jobs imports it from here)
from .kinds import KINDS, ModelKind

FORMAT = "harmonium-checkpoint"
FORMAT_VERSION = 1
META_KEY = "harmonium"
TRAINER_PREFIX = "trainer."

MAX_HEADER_BYTES = 64 << 20  # the safetensors header (tensor index + metadata); its own cap is 100 MB
MAX_META_CHARS = 16 << 20  # the JSON metadata (a hybrid's 5,000-epoch history is about 1 MB)
MAX_NESTING = 32  # arrays and objects inside each other (Harmonium writes 4 levels)
MAX_MAGNITUDE = 1e15  # no trained weight, statistic or optimiser moment comes near (float32 tops at 3e38)
MAX_TRAINER_TENSORS = 4096


class CheckpointError(ValueError):
    """A checkpoint could not be read or written; the message says why, for a person."""


# ------------------------------------------------------------------------- the schema
class Invalid(Exception):
    """Raised inside the schema check: `where` (a dotted path) must be `want`, and is `got`."""

    def __init__(self, where: str, want: str, got: Any):
        super().__init__(where)
        self.where, self.want, self.got = where, want, got

    def sentence(self) -> str:
        got = repr(self.got)
        got = got if len(got) <= 60 else got[:57] + "..."
        return f"{self.where or 'it'} must be {self.want} (got {got})"


class Rule:
    """One JSON value's rule. `check(value, where)` returns the value (or raises `Invalid`)."""

    want = "valid"

    def check(self, v: Any, where: str) -> Any:
        raise NotImplementedError


class Int(Rule):
    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi
        self.want = f"a whole number from {lo:,} to {hi:,}"

    def check(self, v, where):
        if type(v) is not int or not self.lo <= v <= self.hi:
            raise Invalid(where, self.want, v)
        return v


class Real(Rule):
    """A finite number (an int is one) in [lo, hi], or in (lo, hi] when `above`; `or_inf`
    admits +inf too (never NaN)."""

    def __init__(self, lo: float, hi: float, above: bool = False, or_inf: bool = False):
        self.lo, self.hi, self.above, self.or_inf = lo, hi, above, or_inf
        self.want = f"a finite number {'above' if above else 'from'} {lo:g}{' up' if above else ''} to {hi:g}"
        self.want += " (or Infinity)" if or_inf else ""

    def check(self, v, where):
        if self.or_inf and type(v) is float and v == math.inf:
            return v
        ok = type(v) in (int, float) and math.isfinite(v) and (v > self.lo if self.above else v >= self.lo) and v <= self.hi
        if not ok:
            raise Invalid(where, self.want, v)
        return v


class Number(Rule):
    """Any number, NaN and the infinities included (metrics in the history, notes)."""

    want = "a number"

    def check(self, v, where):
        if type(v) not in (int, float):
            raise Invalid(where, self.want, v)
        return v


class Bool(Rule):
    want = "true or false"

    def check(self, v, where):
        if type(v) is not bool:
            raise Invalid(where, self.want, v)
        return v


class Text(Rule):
    def __init__(self, *choices: str, max_len: int = 4096):
        self.choices, self.max_len = choices, max_len
        self.want = f"one of {', '.join(map(repr, choices))}" if choices else f"a text of at most {max_len:,} characters"

    def check(self, v, where):
        if type(v) is not str or (self.choices and v not in self.choices) or len(v) > self.max_len:
            raise Invalid(where, self.want, v)
        return v


class OrNull(Rule):
    def __init__(self, rule: Rule):
        self.rule = rule
        self.want = f"null or {rule.want}"

    def check(self, v, where):
        return None if v is None else self.rule.check(v, where)


class AnyJSON(Rule):
    """Free-form JSON (its nesting is already capped by `MAX_NESTING`)."""

    want = "JSON"

    def check(self, v, where):
        return v


class ListOf(Rule):
    def __init__(self, item: Rule, max_len: int = 1_000_000, length: int | None = None):
        self.item, self.max_len, self.length = item, max_len, length
        self.want = f"a list of {length} items" if length is not None else f"a list of at most {max_len:,} items"

    def check(self, v, where):
        if type(v) is not list or len(v) > self.max_len or (self.length is not None and len(v) != self.length):
            raise Invalid(where, self.want, v)
        for i, x in enumerate(v):
            self.item.check(x, f"{where}[{i}]")
        return v


class DictOf(Rule):
    """An object whose keys are any texts and whose values all follow one rule."""

    def __init__(self, value: Rule, max_len: int = 10_000):
        self.value, self.max_len = value, max_len
        self.want = f"an object of at most {max_len:,} entries"

    def check(self, v, where):
        if type(v) is not dict or len(v) > self.max_len:
            raise Invalid(where, self.want, v)
        for k, x in v.items():
            self.value.check(x, f"{where}.{k}" if where else k)
        return v


class Record(Rule):
    """An object with declared fields. `closed`: other keys are refused (else kept as they
    are: newer files may carry more). `rules`: (test of the whole object, what it must be)."""

    want = "an object"

    def __init__(self, fields: dict[str, Rule], required: tuple[str, ...] = (), closed: bool = False,
                 rules: tuple[tuple[Callable[[dict], bool], str], ...] = ()):
        self.fields, self.required, self.closed, self.rules = fields, required, closed, rules

    def check(self, v, where):
        if type(v) is not dict:
            raise Invalid(where, self.want, v)
        for k in self.required:
            if k not in v:
                raise Invalid(f"{where}.{k}" if where else k, "present", "nothing")
        for k, x in v.items():
            path = f"{where}.{k}" if where else k
            rule = self.fields.get(k)
            if rule is not None:
                rule.check(x, path)
            elif self.closed:
                raise Invalid(path, f"absent (known fields: {', '.join(self.fields)})", x)
        for test, want in self.rules:
            if not test(v):
                raise Invalid(where, want, v)
        return v


_UNITS = Int(1, 1 << 24)
_SIDE = Int(1, 4096)
_STEPS = Int(0, 10**12)
_SEED = Int(-(2**63) + 1, 2**63 - 2)  # manual_seed takes these, seed + 1 included
_EPOCHS = Int(0, 10**6)
_BATCH = Int(1, 1 << 20)
_RATE = Real(0, 1e6)
# Beyond 1e6 torch's optimisers overflow float32 and raise; Infinity (a run told to diverge, as a
# test of the CLI does) diverges at the first step, which the trainer handles (rolls back, says so).
_LEARNING_RATE = Real(0, 1e6, or_inf=True)
_MOMENTUM = Real(0, 1)
_CHAINS = Int(1, 1 << 16)
_FRAMES = Int(1, 1024)

#: The models' config fields (their dataclasses say which a kind has; see `record_of`).
_MODEL_FIELDS: dict[str, Rule] = {
    "n_visible": _UNITS, "n_hidden": _UNITS, "image_shape": OrNull(ListOf(_SIDE, length=3)),
    "var_floor": Real(0, 1e6, above=True),
    "image_size": _SIDE, "channels": Int(1, 4), "latent": _UNITS, "width": Int(1, 1024), "sigmoid_codes": Bool(),
    "beta": Real(0, 1e6), "likelihood": Text(max_len=64), "sigma": Real(0, 1e6, above=True),
    # the texture RBM's (its config's own checks say the same, more closely)
    "n_filters": Int(1, 1024), "filter_size": Int(1, 64), "pooling": Int(1, 8), "visible": Text("gaussian", "binary"),
    "learn_variance": Bool(), "variance": Real(0, 1e3, above=True),
}

#: The training configs' fields, every kind's (threads: a machine's cores at most; see also
#: `Trainer.run`, which never asks torch for more than this machine has).
_TRAIN_FIELDS: dict[str, Rule] = {
    "epochs": _EPOCHS, "ae_epochs": _EPOCHS, "rbm_epochs": _EPOCHS, "momentum_epochs": _EPOCHS,
    "kl_warmup_epochs": _EPOCHS, "batch_size": _BATCH, "rbm_batch_size": _BATCH,
    "learning_rate": _LEARNING_RATE, "rbm_learning_rate": _LEARNING_RATE,
    "lr_schedule": Text("constant", "linear", "cosine"), "rbm_lr_schedule": Text("constant", "linear", "cosine"),
    "lr_final_fraction": Real(0, 1), "warmup_steps": _STEPS, "weight_decay": _RATE, "rbm_weight_decay": _RATE,
    "grad_clip": OrNull(Real(0, 1e12, above=True)), "seed": OrNull(_SEED),
    "frame_every": _STEPS, "snapshot_every": Int(1, 10**9), "threads": OrNull(Int(0, 4096)),
    "k": Int(1, 1000), "rbm_k": Int(1, 1000), "persistent": Bool(), "n_chains": _CHAINS, "rbm_n_chains": _CHAINS,
    "momentum": _MOMENTUM, "final_momentum": _MOMENTUM, "rbm_momentum": _MOMENTUM, "rbm_final_momentum": _MOMENTUM,
    "centering": Bool(), "center_rate": Real(0, 1), "sample_data": Bool(), "tempering": Int(0, 128),
    "optimizer": Text("sgd", "adam"), "loss": Text("bce", "mse"), "code_noise": Real(0, 1e3),
    "n_frames": _FRAMES, "beta": OrNull(Real(0, 1e6)), "frame_kind": Text("samples", "reconstructions"),
    # the texture RBM's: steps of random crops, the chains' torus, sparsity, the moving average
    "steps_per_epoch": Int(1, 10**9), "crop": _SIDE, "chain_size": Int(0, 4096), "sparsity_target": Real(0, 1, above=True),
    "sparsity_cost": Real(0, 1e6), "restart_every": _STEPS, "average": Real(0, 1),
}

#: How every source image became a training image (studio.dataset.Preprocess's fields; other
#: keys are kept for newer versions). Missing keys mean Preprocess's defaults.
_PREPROCESS = Record({
    "size": _SIDE, "crop": Text("center", "fit", "stretch"), "color": Bool(),
    "background": ListOf(Int(0, 255), length=3), "binarize": OrNull(Text("threshold", "dither")),
    "threshold": Real(0, 1), "min_size": Int(1, 1 << 31), "max_pixels": Int(1, 1 << 62),
})
PREPROCESS_DEFAULTS = {"size": 28, "color": False}

#: The reconstruction trainers' own state: running sums of the epoch's metrics.
RECONSTRUCTION_EXTRA = Record({"sums": DictOf(Real(-1e300, 1e300), max_len=64), "count": _STEPS})
#: The texture RBM's trainer keeps tensors only (its chains, the parameters' moving average and
#: its count, the raw parameters: `ConvRBMTrainer.extra_state`), checked against the trainer that
#: resumes from them (`check_state`); no JSON state of its own.
TEXTURE_EXTRA = Record({}, closed=True)
HYBRID_EXTRA = Record(
    {"phase": Int(1, 2), "rbm_start": OrNull(_STEPS), "ae": RECONSTRUCTION_EXTRA, "rbm": Record({})},
    required=("phase",), rules=((lambda e: e["phase"] == 1 or e.get("rbm_start") is not None, "with phase 2, an rbm_start"),),
)


def _by_default(value: Any) -> Rule:
    """The rule of a config field the tables do not name: its default's type (ranges are then
    the config's own `__post_init__`'s to check)."""
    if isinstance(value, bool):
        return Bool()
    if isinstance(value, int):
        return Int(-(2**63), 2**63 - 1)
    if isinstance(value, float):
        return Real(-1e300, 1e300)
    if isinstance(value, str):
        return Text(max_len=256)
    return AnyJSON()


def record_of(cls: type, table: dict[str, Rule], closed: bool) -> Record:
    """The schema of a config dataclass: its fields, ruled by `table` (a nested dataclass by
    its own record); fields without a default are required."""
    rules: dict[str, Rule] = {}
    required = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if dataclasses.is_dataclass(default):
            rules[f.name] = record_of(type(default), table, closed)
        else:
            rules[f.name] = table.get(f.name) or _by_default(default)
        if default is dataclasses.MISSING:
            required.append(f.name)
    return Record(rules, tuple(required), closed)


def _top_schema() -> Record:
    return Record({
        "format": Text(FORMAT), "format_version": Int(1, FORMAT_VERSION), "kind": Text(*sorted(KINDS), max_len=64),
        "config": Record({}), "preprocess": OrNull(_PREPROCESS), "created": Text(max_len=200),
        "torch": Text(max_len=200), "trainer": OrNull(Record({})),
        "extra": OrNull(Record({"source": Text()})),
    }, required=("format", "format_version", "kind", "config"))


def _trainer_schema(info: ModelKind) -> Record:
    train = record_of(info.train_config_class, _TRAIN_FIELDS, closed=False)
    groups = ListOf(Record({"params": ListOf(Int(0, 1 << 20), max_len=1 << 20)}, required=("params",)), max_len=64)
    return Record({
        "step": _STEPS, "elapsed": Real(0, 1e12), "seed": _SEED,
        "history": ListOf(DictOf(Number(), max_len=256), max_len=1_000_000),
        "train_config": train, "optimizer_groups": groups,
        "optimizer_scalars": DictOf(DictOf(Real(0, 1e15), max_len=16), max_len=1 << 20),
        "extra": info.trainer_extra_schema or Record({}),
    }, required=("step", "train_config"))


def _nesting(text: str, limit: int) -> int:
    """How deep `text`'s arrays and objects nest (brackets in strings not counted), up to
    `limit` + 1: measured before json.loads, whose recursion a deep document would exhaust."""
    depth = peak = 0
    for m in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > peak:
            peak = depth
            if peak > limit:
                break
    return peak


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def _image_shape(config: Any) -> tuple[int, int, int] | None:
    shape = getattr(config, "image_shape", None)
    return tuple(int(s) for s in shape) if shape else None


def validate_metadata(meta: Any) -> dict[str, Any]:
    """Check parsed metadata against the schema; returns it, or raises CheckpointError (the
    reason, without the file's name: see `_fail`)."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError("its metadata does not describe a Harmonium checkpoint")
    version = meta.get("format_version")
    if type(version) is int and version > FORMAT_VERSION:
        raise CheckpointError(f"it was written by a newer Harmonium (format {version}; this version reads up to {FORMAT_VERSION})")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"its metadata has no valid format version (got {str(version)[:40]!r}; versions count from 1)")
    kind = meta.get("kind")
    if type(kind) is str and kind not in KINDS:
        raise CheckpointError(f"unknown model kind {kind[:40]!r} (known: {', '.join(sorted(KINDS))})")
    try:
        _top_schema().check(meta, "")
    except Invalid as e:
        raise CheckpointError(f"its metadata is invalid: {e.sentence()}") from None
    info = KINDS[kind]
    try:
        record_of(info.config_class, _MODEL_FIELDS, closed=True).check(meta["config"], "")
        config = info.config_class(**meta["config"])
    except Invalid as e:
        raise CheckpointError(f"its {kind} config is invalid: {e.sentence()}") from None
    except Exception as e:  # the config's own checks (ValueError), or whatever else its values upset
        raise CheckpointError(f"its {kind} config is invalid ({e})") from None
    if meta.get("trainer") is not None:
        try:
            _trainer_schema(info).check(meta["trainer"], "trainer")
        except Invalid as e:
            raise CheckpointError(f"its training state is invalid: {e.sentence()}") from None
        t = meta["trainer"]
        rbm_start = (t.get("extra") or {}).get("rbm_start")
        if rbm_start is not None and rbm_start > t["step"]:
            raise CheckpointError(f"its training state is invalid: its second phase starts at step {rbm_start}, after its last step {t['step']}")
    shape = _image_shape(config)
    if config is not None and shape is None:
        raise CheckpointError(f"its {kind} config says no image shape (image_shape), so its dreams cannot be shown")
    pre = meta.get("preprocess")
    if pre is not None and shape is not None:
        size = pre.get("size", PREPROCESS_DEFAULTS["size"])
        channels = 3 if pre.get("color", PREPROCESS_DEFAULTS["color"]) else 1
        if shape != (channels, size, size):
            raise CheckpointError(f"its preprocessing makes {channels}×{size}×{size} images but its model takes "
                                  f"{'×'.join(map(str, shape))}")
    return meta


# ------------------------------------------------------------------------------- writing
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


#: Values some model tensors cannot hold, by the last part of their name (what a damaged file
#: can put there, and what no model saves): each would make NaN of every image.
_TENSOR_RULES: dict[str, tuple[Callable[[Tensor], bool], str]] = {
    "running_var": (lambda t: bool((t >= 0).all()), "a negative variance"),  # batch norms
    "data_std": (lambda t: bool((t > 0).all()), "a spread that is not positive"),  # the Gaussian RBM's standardisation
    "log_variance": (lambda t: bool((t <= 30).all()), "a log-variance above 30 (of standardised pixels)"),
    "prior_weights": (lambda t: bool((t >= 0).all()) and float(t.sum()) > 0, "mixture weights negative or all zero"),
    "prior_scale_tril": (lambda t: bool((t.diagonal(dim1=-2, dim2=-1) > 0).all()) if t.dim() >= 2 else True,
                         "a Cholesky factor without a positive diagonal"),
}


def _bad_value(name: str, t: Tensor) -> str | None:
    """What is wrong with a tensor's values, or None: NaN, infinities, magnitudes no training
    reaches (a damaged file's flipped exponent bits), values its kind of tensor cannot hold
    (`_TENSOR_RULES`)."""
    if not t.is_floating_point() or t.numel() == 0:
        return None
    if not bool(torch.isfinite(t).all()):
        return "contains NaN or infinite values"
    if float(t.abs().max()) > MAX_MAGNITUDE:
        return f"holds values beyond ±{MAX_MAGNITUDE:g}"
    rule = _TENSOR_RULES.get(name.rsplit(".", 1)[-1])
    if rule is not None and not name.startswith(TRAINER_PREFIX) and not rule[0](t.float()):
        return f"holds {rule[1]}"
    return None


def _meta_json(meta: dict[str, Any], path: Path) -> str:
    try:
        return json.dumps(meta, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"Cannot save {path.name}: its metadata cannot be written as JSON ({e})") from None


def _checked_for_saving(path: Path, meta: dict[str, Any]) -> str:
    """The metadata as JSON, checked as loading will check it (a save that would not reopen is
    refused now, while the model is still in memory)."""
    text = _meta_json(meta, path)
    try:
        validate_metadata(json.loads(text))
    except CheckpointError as e:
        raise CheckpointError(f"Cannot save {path.name}: {e}") from None
    return text


def copy_with_extra(src: str | os.PathLike, dst: str | os.PathLike, extra: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Write the checkpoint `src` to `dst` (atomically; it may be the same file) with `extra`
    merged into its metadata's "extra": every tensor, the training state included, stays as it
    is. `src` is validated as `read_metadata` does. Returns (the path written, the new metadata)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    meta = read_metadata(src)
    try:
        with safe_open(str(src), framework="pt") as f:
            header = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for a broken file
        raise _fail(src, f"its tensors could not be read ({e})") from None
    meta["extra"] = {**(meta.get("extra") or {}), **extra}
    header[META_KEY] = _checked_for_saving(dst, meta)
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
    """Write `model` (and, if given, the trainer's resumable state) to `path` atomically.

    Refused with CheckpointError, the target untouched: a model or training state holding
    NaN or infinite values (a diverged run: parameters and buffers alike, e.g. a batch norm's
    running variance), and metadata that loading would refuse."""
    from safetensors.torch import save_file

    path = Path(path)
    kind = getattr(model, "kind", None)
    if kind not in KINDS:
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
    for name, t in tensors.items():
        why = _bad_value(name, t)
        if why is not None:
            what = "training state's" if name.startswith(TRAINER_PREFIX) else "model's"
            raise CheckpointError(f"Cannot save {path.name}: the {what} tensor {name!r} {why} (training diverged); "
                                  "nothing was written")
    header = {META_KEY: _checked_for_saving(path, meta)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


# ------------------------------------------------------------------------------- reading
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
        overrides of the training config (e.g. more `epochs`).

        Raises ValueError for data or overrides that do not suit the model, CheckpointError
        for a training state that does not fit it (tensors of other shapes, settings the
        trainer refuses): never anything else."""
        info = KINDS[self.kind]
        tmeta = self.meta.get("trainer")
        if not tmeta:
            raise CheckpointError(f"{self.path.name} holds no training state to resume from")
        schema = record_of(info.train_config_class, _TRAIN_FIELDS, closed=False)
        for k, v in overrides.items():
            rule = schema.fields.get(k)
            if rule is not None:
                try:
                    rule.check(v, k)
                except Invalid as e:
                    raise ValueError(f"cannot resume {self.path.name} with that setting: {e.sentence()}") from None
        _check_data(self.model, data, self.path.name)
        cfg = {**info.train_config_class.SAVED_DEFAULTS, **tmeta.get("train_config", {}), **overrides}
        try:
            trainer = info.resume(self.model, data, cfg, device)
        except Exception as e:  # the saved settings, not the data (checked above)
            raise _fail(self.path, f"its training settings cannot be used ({e})") from None
        try:
            trainer.load_state(self.trainer_tensors, tmeta)
        except Exception as e:
            raise _fail(self.path, f"its training state does not fit its model ({e})") from None
        return trainer


def _check_data(model: nn.Module, data: Tensor, name: str) -> None:
    """Images a resumed trainer can train `model` on: some, and of the model's shape (or, flat,
    of its size)."""
    if not isinstance(data, Tensor) or data.dim() < 2 or data.shape[0] < 1:
        raise ValueError("there are no training images")
    shape = _image_shape(getattr(model, "config", None)) or _image_shape(model)
    if shape is None:
        return
    if (tuple(data.shape[1:]) != shape) if data.dim() == 4 else (math.prod(data.shape[1:]) != math.prod(shape)):
        raise ValueError(f"{name} was trained on {'×'.join(map(str, shape))} images, these are "
                         f"{'×'.join(map(str, data.shape[1:]))}: set the preprocessing to match to resume it")


def _fail(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"Cannot open {path.name}: {why}")


def _read_header_length(path: Path) -> None:
    """Refuse what is not a regular file (opened without blocking: a FIFO would wait forever)
    and a safetensors header larger than `MAX_HEADER_BYTES` or than the file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except OSError as e:
        raise _fail(path, f"it cannot be read ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _fail(path, "it is not a regular file")
        if st.st_size == 0:
            raise _fail(path, "the file is empty")
        head = os.read(fd, 8)
    finally:
        os.close(fd)
    if len(head) < 8:
        raise _fail(path, "it is not a safetensors checkpoint or it is damaged (shorter than a header)")
    n = int.from_bytes(head, "little")
    if n > MAX_HEADER_BYTES or n + 8 > st.st_size:
        raise _fail(path, f"it is not a safetensors checkpoint or it is damaged (its header claims {n:,} bytes, "
                          f"the file has {st.st_size:,})")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, validated against the schema, without reading the
    tensors."""
    from safetensors import safe_open

    path = Path(path)
    _read_header_length(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for a broken file
        raise _fail(path, f"it is not a safetensors checkpoint or it is damaged ({e})") from None
    if META_KEY not in header:
        raise _fail(path, "it is a safetensors file but not a Harmonium checkpoint (no 'harmonium' metadata)")
    text = header[META_KEY]
    if len(text) > MAX_META_CHARS:
        raise _fail(path, f"its metadata is {len(text):,} characters long, more than any checkpoint writes ({MAX_META_CHARS:,})")
    if _nesting(text, MAX_NESTING) > MAX_NESTING:
        raise _fail(path, f"its metadata nests more than {MAX_NESTING} levels deep")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(path, f"its metadata is not valid JSON ({e})") from None
    except (ValueError, RecursionError):  # an integer of over 4,300 digits; (nesting is measured above)
        raise _fail(path, "its metadata holds a number too long to read") from None
    try:
        return validate_metadata(meta)
    except CheckpointError as e:
        raise _fail(path, str(e)) from None


#: safetensors' dtype names (read from the header without reading the data) as torch's.
_DTYPES = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
           "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
#: What a trainer saves: float32 moments and chains, uint8 random states, int64 counters.
_TRAINER_DTYPES = (torch.float32, torch.uint8, torch.int64)
_TRAINER_NAME = re.compile(r"trainer\.(optimizer\.\d{1,7}\.[A-Za-z_]{1,40}|extra\.[A-Za-z0-9_.]{1,200})")


def _skeleton(info: ModelKind, config: dict[str, Any], path: Path) -> tuple[dict[str, tuple[tuple[int, ...], torch.dtype]], set[str]]:
    """({tensor name: (shape, dtype)}, the names older files may lack) of the model
    `config` describes, built on the "meta" device: no memory, whatever sizes the config asks
    for. The optional names are the model's `optional_tensors`, newer buffers that keep their
    built value when a file lacks them."""
    try:
        with torch.device("meta"):
            skeleton = info.rebuild(config)
    except Exception as e:
        raise _fail(path, f"its {info.key} config is invalid ({e})") from None
    expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
    return expected, set(getattr(skeleton, "optional_tensors", ()))


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> Checkpoint:
    """Read, validate and rebuild a checkpoint. Raises `CheckpointError` with a clear message."""
    from safetensors import safe_open

    from .training import GLOBAL_RNG_LOCK

    path = Path(path)
    meta = read_metadata(path)
    kind = meta["kind"]
    info = KINDS[kind]
    expected, optional = _skeleton(info, meta["config"], path)
    has_trainer = meta.get("trainer") is not None
    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            model_names = [n for n in names if not n.startswith(TRAINER_PREFIX)]
            trainer_names = [n for n in names if n.startswith(TRAINER_PREFIX)]
            missing = sorted(set(expected) - set(model_names) - optional)
            unexpected = sorted(set(model_names) - set(expected))
            if missing:
                raise _fail(path, f"tensors missing: {', '.join(missing[:5])}")
            if unexpected:
                raise _fail(path, f"unexpected tensors: {', '.join(n[:60] for n in unexpected[:5])}")
            for n in model_names:
                sl = f.get_slice(n)
                shape, dtype = tuple(sl.get_shape()), _DTYPES.get(sl.get_dtype(), sl.get_dtype())
                want_shape, want_dtype = expected[n]
                if shape != want_shape:
                    raise _fail(path, f"tensor {n!r} has shape {list(shape)} but the config needs {list(want_shape)}")
                if dtype != want_dtype:
                    raise _fail(path, f"tensor {n!r} is {dtype}, expected {want_dtype}")
            if trainer_names and not has_trainer:
                raise _fail(path, f"it holds training tensors ({trainer_names[0][:60]!r}) but no training state")
            if len(trainer_names) > MAX_TRAINER_TENSORS:
                raise _fail(path, f"it holds {len(trainer_names):,} training tensors, more than any trainer saves")
            for n in trainer_names:
                if not _TRAINER_NAME.fullmatch(n):
                    raise _fail(path, f"unexpected training tensor {n[:60]!r}")
                dtype = _DTYPES.get(f.get_slice(n).get_dtype(), f.get_slice(n).get_dtype())
                if dtype not in _TRAINER_DTYPES:
                    raise _fail(path, f"training tensor {n!r} is {dtype}, not one of {', '.join(map(str, _TRAINER_DTYPES))}")
            def read(names: list[str], what: str) -> dict[str, Tensor]:
                """The tensors `names`, each refused when its values cannot be (`_bad_value`)."""
                out = {}
                for n in names:
                    t = f.get_tensor(n)
                    why = _bad_value(n, t)
                    if why is not None:
                        raise _fail(path, f"{what} {n!r} {why}")
                    out[n] = t
                return out

            state = read(model_names, "tensor")
            trainer_tensors = {n[len(TRAINER_PREFIX):]: t for n, t in read(trainer_names, "training tensor").items()}
    except CheckpointError:
        raise
    except Exception as e:
        raise _fail(path, f"its tensors could not be read ({e})") from None
    # Built for real now that its sizes are known to match the file. The initial weights are
    # drawn from torch's global generator, under the lock seeded builds hold and without
    # moving it (`factory.build`: two jobs started together must not race on it).
    try:
        with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
            model = info.rebuild(meta["config"])
        model.load_state_dict(state, strict=not optional)  # an optional tensor a file lacks keeps its built value
    except Exception as e:
        raise _fail(path, f"its model could not be rebuilt ({e})") from None
    model.to(device)
    model.eval()
    return Checkpoint(path, kind, model, meta, trainer_tensors, file_sha256(path))
