"""Training as a generator of events, shared by every model kind.

A `Trainer` owns a model, its data, an optimiser and whatever state the method needs (e.g. the
persistent chains of PCD). `trainer.run()` is a generator: each optimisation step yields a
`TrainEvent` (step, epoch, metrics, elapsed time, optionally a frame of the model's dreams),
each finished epoch yields an "epoch" event with that epoch's metrics, and the end yields
"done". The CLI iterates it under a progress bar, the GUI iterates it in a worker thread, the
tests iterate it directly. Pausing is not pulling; stopping is closing the generator; calling
`run()` again resumes where it stopped (optimiser and chain state kept, also through a
checkpoint).

Divergence: when a step's metrics or the model's tensors (parameters and floating-point buffers,
such as a batch norm's running statistics) stop being finite, the trainer restores the last good
snapshot of the model and raises `TrainingDiverged` with an explanation. A run stopped (its
generator closed) between two checks is checked as it stops, and rolled back the same way, so a
stopped model never holds NaN.

Resuming (`load_state`) takes a saved state only after checking it against this trainer: the
optimiser's tensors by parameter, name, shape and value, its parameter groups by structure,
the trainer's own state by `check_state`. Anything else raises ValueError.

Threads: `config.threads` never asks torch for more threads than this machine's usable cores;
None takes the process's thread policy (`models.device.job_threads`).
"""
from __future__ import annotations

import math
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Iterator

import torch
from torch import Tensor, nn

from .device import claim, default_threads, job_threads, usable_cores

#: Held by whoever draws from torch's global random generator in `models` (building a model's
#: initial weights, drawing a trainer's seed): seeded builds in two threads would otherwise race
#: on it and get each other's numbers (`factory.build`). Reentrant: a build draws a seed inside.
GLOBAL_RNG_LOCK = threading.RLock()

#: The per-parameter state torch's optimisers keep: {key: shaped like the parameter (True) or a
#: scalar (False)}; values that must not be negative are listed in `_NON_NEGATIVE_STATE`.
OPTIMIZER_STATE: dict[type, dict[str, bool]] = {
    torch.optim.SGD: {"momentum_buffer": True},
    torch.optim.Adam: {"exp_avg": True, "exp_avg_sq": True, "step": False},
}
_NON_NEGATIVE_STATE = ("exp_avg_sq", "step")


class TrainingDiverged(RuntimeError):
    """Training stopped because it diverged; the model holds the last good weights."""

    def __init__(self, message: str, step: int, good_step: int):
        super().__init__(message)
        self.step = step
        self.good_step = good_step


@dataclass
class TrainEvent:
    """One thing that happened during training."""

    kind: str  # "step" | "epoch" | "done"
    step: int  # optimiser steps done so far, over the whole life of the trainer
    epoch: int  # epochs completed so far
    total_steps: int
    total_epochs: int
    metrics: dict[str, float]
    elapsed: float  # seconds spent training (time while paused, i.e. not pulled, excluded)
    frame: Tensor | None = None  # [n, C, H, W] in [0, 1] on the CPU: the model's current dreams

    @property
    def progress(self) -> float:
        return self.step / max(1, self.total_steps)

    @property
    def eta(self) -> float:
        """Estimated seconds left, from the pace so far."""
        if self.step == 0:
            return float("nan")
        return self.elapsed / self.step * (self.total_steps - self.step)


@dataclass
class TrainConfig:
    """What every trainer takes. Subclasses add the method's own knobs.

    `SAVED_DEFAULTS`: what a field added later is for a checkpoint saved before it (the runs of
    then did without it); a resumed run takes these where its saved config lacks the field, a
    new run the class's defaults."""

    SAVED_DEFAULTS: ClassVar[dict[str, Any]] = {}

    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # "constant" | "linear" | "cosine" (decay to lr_final_fraction)
    lr_final_fraction: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max gradient norm, None = no clipping
    seed: int | None = None
    frame_every: int = 0  # a frame every this many steps (0: no frames)
    snapshot_every: int = 100  # keep a last-good copy of the weights this often (steps)
    threads: int | None = None  # CPU threads for this run's tensor ops (None: the trainer decides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def lr_factor(config: TrainConfig, step: int, total_steps: int) -> float:
    """Multiplier of the base learning rate at `step` (linear warm-up, then the schedule)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    t = min(1.0, step / max(1, total_steps))
    end = config.lr_final_fraction
    if config.lr_schedule == "constant":
        return 1.0
    if config.lr_schedule == "linear":
        return 1.0 + (end - 1.0) * t
    if config.lr_schedule == "cosine":
        return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown learning-rate schedule {config.lr_schedule!r} (constant, linear, cosine)")


def streamed_mean_std(data: Tensor, to_float, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Per-feature mean and std of `data` converted chunk by chunk by `to_float` (no float copy
    of the whole set is ever made)."""
    s = s2 = None
    n = data.shape[0]
    for i in range(0, n, chunk):
        x = to_float(data[i : i + chunk]).to("cpu", torch.float64)  # float64 on the CPU (MPS has none)
        s = x.sum(0) if s is None else s + x.sum(0)
        s2 = (x * x).sum(0) if s2 is None else s2 + (x * x).sum(0)
    mean = s / n
    var = (s2 / n - mean * mean).clamp_min(0.0)
    return mean.float(), var.sqrt().float()


class Trainer:
    """Base class: the loop, the events, the snapshots, the divergence check, the state.

    Subclasses implement `prepare()` (once, before the first step of a fresh model),
    `train_step(batch) -> metrics`, optionally `epoch_metrics()` and `frame()`, and list
    their extra state in `extra_state()` / `load_extra_state()`.
    """

    config: TrainConfig

    def __init__(self, model: nn.Module, data: Tensor, config: TrainConfig, device: torch.device | str | None = None):
        if data.shape[0] < 1:
            raise ValueError("there are no training images")
        self.model = model
        self.config = config
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        # Small sets live on the device; a large one stays where it is and moves batch by batch.
        nbytes = data.numel() * data.element_size()
        self.data = data.to(self.device) if nbytes < 512 * 2**20 else data
        if config.seed is not None:
            self.seed = config.seed
        else:
            with GLOBAL_RNG_LOCK:
                self.seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, float]] = []
        self.optimizer = self.make_optimizer()
        self._good: dict[str, Tensor] | None = None
        self._good_step = 0
        self._prepared = False
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)
        self.last_rollback: tuple[int, int] | None = None  # (step, restored step) of the last roll-back

    # ----------------------------------------------------------------------- to override
    def make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay)

    def prepare(self) -> None:
        """Set data-dependent initial values (biases from base rates, standardisation...)."""

    def train_step(self, batch: Tensor) -> dict[str, float]:
        raise NotImplementedError

    def epoch_metrics(self) -> dict[str, float]:
        return {}

    def frame(self) -> Tensor | None:
        return None

    def auto_threads(self) -> int:
        """CPU threads to use when the config says None: the process's thread policy
        (`models.device.job_threads`: the cores left by the jobs and samplers running)."""
        return job_threads()

    def extra_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {}, {}

    def load_extra_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        pass

    # ------------------------------------------------------------------------------ sizes
    @property
    def n_samples(self) -> int:
        return self.data.shape[0]

    @property
    def batch_size(self) -> int:
        return max(1, min(self.config.batch_size, self.n_samples))

    @property
    def batches_per_epoch(self) -> int:
        return max(1, self.n_samples // self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.config.epochs * self.batches_per_epoch

    @property
    def epoch(self) -> int:
        return self.step // self.batches_per_epoch

    def current_lr(self) -> float:
        return self.config.learning_rate * lr_factor(self.config, self.step, self.total_steps)

    # ------------------------------------------------------------------------------ loop
    def _permutation(self, epoch: int) -> Tensor:
        """The order of the samples in `epoch`: fixed by (seed, epoch), so a resumed run visits
        the same batches as an uninterrupted one."""
        if self._perm_epoch != epoch:
            g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}:{epoch}".encode()))
            self._perm = torch.randperm(self.n_samples, generator=g)
            self._perm_epoch = epoch
        return self._perm

    def batch_indices(self, step: int) -> Tensor:
        e, i = divmod(step, self.batches_per_epoch)
        return self._permutation(e)[i * self.batch_size : (i + 1) * self.batch_size]

    def _event(self, kind: str, metrics: dict[str, float], frame: Tensor | None = None) -> TrainEvent:
        return TrainEvent(kind, self.step, self.epoch, self.total_steps, self.config.epochs, metrics, self.elapsed, frame)

    def run(self) -> Iterator[TrainEvent]:
        """Train until `config.epochs` are done, yielding events. Close it to stop; call again to resume.

        On the CPU the thread count is set for the thread that iterates (torch's OpenMP setting
        is per thread), at most the usable cores (a file's `threads: 100000` once reached
        torch and crashed it), and restored when the generator finishes or is closed. A run
        closed with non-finite weights (they are checked at epochs and snapshots only) is
        rolled back to the last good snapshot as it stops. While it runs on the CPU it counts
        as a job for the thread policy (`models.device.claim`): jobs started meanwhile take
        fewer threads."""
        cpu = self.device.type == "cpu"
        release = claim("job") if cpu else (lambda: None)
        try:
            threads = self.config.threads or (self.auto_threads() if cpu else None)
            threads = max(1, min(int(threads), usable_cores())) if threads else None
        except BaseException:
            release()
            raise
        if threads:
            torch.set_num_threads(threads)
        try:
            yield from self._run()
        finally:
            release()
            if threads:
                # Back to the policy's count for other work, not to what this thread read when
                # the run started: jobs in other threads set and reset it meanwhile, so that
                # reading raced, and the work after a run (a sampler's frames, a decode) ran
                # on 1 or 2 threads by timing, with different rounding.
                torch.set_num_threads(default_threads())
            if self._good is not None and self._bad_tensors():
                self._roll_back()

    def _driver(self) -> tuple["Trainer", int]:
        """(the trainer whose data, optimiser and `train_step` the loop drives next, the step it
        started at): this trainer from step 0. A trainer made of phases (the hybrid) hands
        over its active phase's trainer here, switching phases when one is done."""
        return self, 0

    def _label(self, metrics: dict[str, float]) -> dict[str, float]:
        """Metrics as the events carry them (a trainer made of phases tags its phase's)."""
        return metrics

    def _run(self) -> Iterator[TrainEvent]:
        if not self._prepared and self.step == 0:
            self.prepare()
        self._prepared = True
        self.model.train()
        if self._good is None:
            self._snapshot()
        while self.step < self.total_steps:
            inner, first = self._driver()
            t0 = time.perf_counter()
            inner.step = self.step - first  # (itself: unchanged)
            idx = inner.batch_indices(inner.step)
            batch = inner.data.index_select(0, idx.to(inner.data.device))  # a row gather, 5× faster than data[idx]
            for group in inner.optimizer.param_groups:
                group["lr"] = inner.current_lr() * group.get("lr_scale", 1.0)
            metrics = self._label(inner.train_step(batch))
            self.step += 1
            inner.step = self.step - first
            self.elapsed += time.perf_counter() - t0
            self._check(metrics)
            if self.step % self.config.snapshot_every == 0:
                self._snapshot()
            every = self.config.frame_every
            frame = self.frame() if every and self.step % every == 0 else None
            yield self._event("step", metrics, frame)
            if inner.step % inner.batches_per_epoch == 0:
                t0 = time.perf_counter()
                em = self._label(inner.epoch_metrics())
                self._check(em, params=True)
                self._snapshot()
                self.elapsed += time.perf_counter() - t0
                self.history.append({"epoch": self.epoch, "step": self.step, **em})
                yield self._event("epoch", em)
        self.model.eval()
        yield self._event("done", self.history[-1] if self.history else {})

    def fit(self) -> "Trainer":
        """Run to the end (scikit-learn's name)."""
        for _ in self.run():
            pass
        return self

    # ------------------------------------------------------------------------ divergence
    @property
    def good_state(self) -> dict[str, Tensor] | None:
        """The last good snapshot of the model's state dict (None before the first): what a
        divergence rolls back to. Shared, not copied: read it, never write to it."""
        return self._good

    @property
    def good_step(self) -> int:
        """The step at which `good_state` was taken."""
        return self._good_step

    def _watched(self) -> tuple[nn.Module, str]:
        """(the part of the model that training changes now, its prefix in the state dict): the
        whole model here; a trainer made of phases names the active phase's part, so snapshots
        and checks do not copy and scan frozen weights every epoch."""
        return self.model, ""

    def _bad_tensors(self) -> list[str]:
        """Names of the watched parameters and floating-point buffers (batch-norm statistics,
        ...) that hold a NaN or an infinity."""
        part, prefix = self._watched()
        named = list(part.named_parameters()) + [(k, b) for k, b in part.named_buffers() if b.is_floating_point()]
        return [prefix + k for k, t in named if not torch.isfinite(t).all()]

    def _snapshot(self) -> None:
        """Keep a last-good copy of the weights, never of weights that are already bad: a step's
        metrics may be computed before its update, so the weights themselves are checked here
        (bad ones raise `TrainingDiverged`, rolling back to the previous copy)."""
        if self._good is not None and self._bad_tensors():
            self._check({}, params=True)
        part, prefix = self._watched()
        if self._good is None or part is self.model:
            self._good = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:  # the rest of the model has not changed since the last full copy
            self._good.update({prefix + k: v.detach().clone() for k, v in part.state_dict().items()})
        self._good_step = self.step

    def on_rollback(self) -> None:
        """Called after the model was restored to the last good snapshot (e.g. to restart
        persistent chains that ran on the bad weights)."""

    def _roll_back(self) -> None:
        """Restore the last good snapshot; momentum built on the bad steps is dropped."""
        assert self._good is not None
        self.model.load_state_dict(self._good)
        self.optimizer = self.make_optimizer()
        self.on_rollback()
        self.last_rollback = (self.step, self._good_step)

    def _check(self, metrics: dict[str, float], params: bool = False) -> None:
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if params:
            bad += self._bad_tensors()
        if not bad:
            return
        self._roll_back()
        what = ", ".join(bad)
        raise TrainingDiverged(
            f"Training diverged at step {self.step} (epoch {self.epoch + 1}): {what} became "
            f"{'NaN or infinite'}. The model was rolled back to step {self._good_step}, the last "
            f"good state. Try a lower learning rate (it was {self.current_lr():.3g}) or stronger "
            f"gradient clipping.",
            step=self.step,
            good_step=self._good_step,
        )

    # ----------------------------------------------------------------------------- state
    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Everything needed to resume, as (tensors, JSON-able metadata)."""
        tensors: dict[str, Tensor] = {}
        opt = self.optimizer.state_dict()
        for pid, st in opt["state"].items():
            for k, v in st.items():
                if isinstance(v, Tensor):
                    tensors[f"optimizer.{pid}.{k}"] = v
        scalars = {str(pid): {k: v for k, v in st.items() if not isinstance(v, Tensor)} for pid, st in opt["state"].items()}
        extra_t, extra_m = self.extra_state()
        tensors.update({f"extra.{k}": v for k, v in extra_t.items()})
        meta = {
            "step": self.step,
            "elapsed": self.elapsed,
            "seed": self.seed,
            "history": self.history,
            "train_config": self.config.to_dict(),
            "optimizer_groups": opt["param_groups"],
            "optimizer_scalars": scalars,
            "extra": extra_m,
        }
        return tensors, meta

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Resume from `state()`'s (tensors, metadata), as a checkpoint keeps them (the metadata
        already checked against the checkpoint's schema). The optimiser's tensors are checked
        against this trainer's parameters before they are used, the trainer's own state by
        `check_state` after it is loaded; anything that does not fit raises ValueError.

        The optimiser's hyperparameters are this trainer's (from its config: the loop sets the
        learning rate, and the RBMs their momentum, at every step anyway); the saved groups
        must only have the same structure."""
        state = self._optimizer_state(tensors, meta)
        self.step = int(meta["step"])
        self.elapsed = float(meta.get("elapsed", 0.0))
        self.seed = int(meta.get("seed", self.seed))
        self.history = list(meta.get("history", []))
        if state or meta.get("optimizer_groups"):
            groups = self.optimizer.state_dict()["param_groups"]
            saved = meta.get("optimizer_groups") or []
            if [g.get("params") for g in saved] != [g["params"] for g in groups]:
                raise ValueError(f"its optimiser has {len(saved)} parameter group(s) of other parameters than this "
                                 f"model's {len(groups)}")
            self.optimizer.load_state_dict({"state": state, "param_groups": groups})
        extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
        self.load_extra_state(extra, meta.get("extra", {}))
        self.check_state()
        self._prepared = True
        self._good = None

    def _optimizer_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """The optimiser's per-parameter state from the saved tensors ("optimizer.<index>.<key>")
        and scalars, each checked: a parameter this optimiser has, a key its kind keeps
        (`OPTIMIZER_STATE`), the parameter's shape (a scalar for "step"), finite values, none
        negative where they cannot be."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        keys = OPTIMIZER_STATE.get(type(self.optimizer), {})
        state: dict[int, dict[str, Any]] = {}

        def slot(pid: str, key: str, where: str) -> tuple[int, bool]:
            if not pid.isdigit() or int(pid) >= len(params) or key not in keys:
                raise ValueError(f"{where} names no state of this {type(self.optimizer).__name__} optimiser "
                                 f"({len(params)} parameters; {', '.join(keys) or 'no state'})")
            return int(pid), keys[key]

        for name, t in tensors.items():
            if not name.startswith("optimizer."):
                continue
            _, pid, key = (name.split(".", 2) + ["", ""])[:3]
            i, shaped = slot(pid, key, f"tensor {name!r}")
            want = tuple(params[i].shape) if shaped else ()
            if tuple(t.shape) != want and not (not shaped and t.numel() == 1):
                raise ValueError(f"tensor {name!r} has shape {list(t.shape)}, its parameter needs {list(want)}")
            if not t.is_floating_point():
                raise ValueError(f"tensor {name!r} is {t.dtype}, not floating point")
            if not bool(torch.isfinite(t).all()) or (key in _NON_NEGATIVE_STATE and bool((t < 0).any())):
                raise ValueError(f"tensor {name!r} holds values an optimiser cannot have (NaN, infinite or negative)")
            value = t.to(self.device, copy=True)
            state.setdefault(i, {})[key] = value if shaped else value.reshape(())
        for pid, scalars in (meta.get("optimizer_scalars") or {}).items():
            for key, v in scalars.items():
                i, shaped = slot(pid, key, f"the saved scalar {key!r} of parameter {pid}")
                if shaped:
                    raise ValueError(f"the saved scalar {key!r} of parameter {pid} should be a tensor")
                state.setdefault(i, {})[key] = torch.tensor(float(v))
        for i, st in state.items():  # torch's optimisers expect all of a parameter's state or none
            if set(st) != set(keys):
                raise ValueError(f"the optimiser's state of parameter {i} is incomplete (has {', '.join(sorted(st))}; "
                                 f"needs {', '.join(keys)})")
        return state

    def check_state(self) -> None:
        """After `load_state`: raise ValueError when the loaded state does not fit this trainer
        (chains of another size, ...). Nothing to check here."""
