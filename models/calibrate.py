"""Which matrix-product path is fastest on the CPU at hand: measured once, cached per machine.

The RBM engine's products are σ(xWᵀ + b) at a few shapes (a CD step, a Gibbs half-step).
Several ways of computing them exist and which is fastest depends on the CPU, its vector
units, the BLAS torch was built with and the size: MKL's sgemm (torch.addmm) runs its AVX2
code on AMD CPUs and is half as fast there as oneDNN, whose call costs ~20 µs more; bfloat16
products double the rate where the CPU has bf16 dot products (AVX512-BF16, AMX) and lose
where it emulates them. No crossover measured on one machine holds on another, so none is
written down: `calibration()` times each path at a ladder of sizes on this machine (about half
a second), keeps the table in the user's data folder (`calibration.json`, one JSON file,
written atomically) and measures again when the CPU, the core count or torch's version change.
The engine asks `fastest(paths, macs)` and gets the path with the least measured time at that
size (interpolated between the ladder's sizes).

The paths (`PATHS`): "addmm" (torch.addmm + sigmoid, float32, any build), "fused" (oneDNN's
linear with the sigmoid fused, float32 weights as given), "packed" (the same over weights
reordered once), "fused_bf16" / "packed_bf16" (bfloat16 inputs and weights, float32
accumulation). A path that does not exist in this torch, or that disagrees with addmm, is
left out of the table and never chosen.

``HARMONIUM_CALIBRATION=off`` (the test suite sets it) skips the measurement: the plain
float32 path (`REFERENCE`) everywhere. ``HARMONIUM_PRECISION=float32`` keeps bfloat16 out
whatever the table says. Tests inject a table with `use(calibration)`.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import stat
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

#: every path the table may hold, float32 ones first
PATHS = ("addmm", "fused", "packed", "fused_bf16", "packed_bf16")
BF16_PATHS = ("fused_bf16", "packed_bf16")
CACHE_NAME = "calibration.json"
FORMAT = 1
MAX_CACHE_BYTES = 64 << 10  # a table is ~2 KB per thread count
#: the ladder: rows × inner × out of each timed product (64 rows, 256 outputs, inner 64 .. 2,048):
#: from 1 M to 33.5 M multiply-adds, the RBM engine's products at the studio's sizes
LADDER = tuple((64, n, 256) for n in (64, 128, 256, 512, 1024, 2048))


@dataclass(frozen=True)
class Calibration:
    """Seconds per call of each path at each size of the ladder, for one thread count.

    `macs`: the ladder's sizes (multiply-adds, rising); `times[path][i]`: seconds per call of
    `path` at `macs[i]`; `handoff`: seconds to hand a piece of work to a worker thread and get
    it back (the chain groups' parallel step, `models.sampling`); `convert`: seconds per
    element of a float32 → bfloat16 copy; `gflops` / `gflops_bf16`: the largest product's rate."""

    macs: tuple[float, ...] = ()
    times: dict[str, tuple[float, ...]] = field(default_factory=dict)
    handoff: float = math.inf
    convert: float = math.inf
    threads: int = 1

    def has(self, path: str) -> bool:
        if path == "addmm":
            return True
        if path in BF16_PATHS and not bf16_allowed():
            return False
        return path in self.times and len(self.times[path]) == len(self.macs) > 0

    def time(self, path: str, macs: float) -> float:
        """Predicted seconds per call of `path` for a product of `macs` multiply-adds: piecewise
        linear in log-log between the ladder's sizes, time ∝ size beyond its ends (inf when the
        path is not in the table)."""
        if not self.has(path) or path not in self.times:
            return math.inf
        xs, ys = self.macs, self.times[path]
        m = max(float(macs), 1.0)
        if m <= xs[0]:
            return ys[0] * m / xs[0]
        if m >= xs[-1]:
            return ys[-1] * m / xs[-1]
        i = next(i for i in range(1, len(xs)) if xs[i] >= m)
        f = (math.log(m) - math.log(xs[i - 1])) / (math.log(xs[i]) - math.log(xs[i - 1]))
        return math.exp(math.log(ys[i - 1]) + f * (math.log(ys[i]) - math.log(ys[i - 1])))

    def fastest(self, paths: tuple[str, ...] | list[str], macs: float) -> str:
        """The path of `paths` with the least predicted time at `macs` ("addmm" when the table
        holds none of them: the plain path is always there)."""
        best, best_t = "addmm", math.inf
        for p in paths:
            t = self.time(p, macs) if p in self.times else math.inf
            if self.has(p) and t < best_t:
                best, best_t = p, t
        return best

    def gflops(self, path: str = "fused") -> float:
        """GFLOP/s of `path` at the ladder's largest size (0 when absent)."""
        if path not in self.times or not self.macs:
            return 0.0
        return 2 * self.macs[-1] / self.times[path][-1] / 1e9

    def to_json(self) -> dict:
        finite = lambda x: x if math.isfinite(x) else None  # noqa: E731 - JSON has no infinity
        return {"macs": list(self.macs), "times": {k: list(v) for k, v in self.times.items()},
                "handoff": finite(self.handoff), "convert": finite(self.convert), "threads": self.threads}

    @classmethod
    def from_json(cls, d: object) -> "Calibration":
        """A table from its JSON form; ValueError when anything is missing, of the wrong type,
        not finite and positive, or of another length than the ladder."""
        if not isinstance(d, dict):
            raise ValueError("a calibration is a JSON object")
        macs = _positive_list(d.get("macs"), "macs")
        if len(macs) != len(LADDER) or any(b <= a for a, b in zip(macs, macs[1:])):
            raise ValueError("its sizes are not the ladder's")
        times = d.get("times")
        if not isinstance(times, dict) or not set(times) <= set(PATHS):
            raise ValueError("its paths are not the engine's")
        table = {k: tuple(_positive_list(v, k)) for k, v in times.items()}
        if any(len(v) != len(macs) for v in table.values()):
            raise ValueError("a path has another number of timings than sizes")
        handoff, convert, threads = d.get("handoff"), d.get("convert"), d.get("threads")
        for name, x in (("handoff", handoff), ("convert", convert)):
            if x is not None and not (isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x < 1e6):
                raise ValueError(f"its {name} is not a positive number")
        if not (isinstance(threads, int) and not isinstance(threads, bool) and 1 <= threads <= 4096):
            raise ValueError("its thread count is not a small positive integer")
        inf = lambda x: math.inf if x is None else float(x)  # noqa: E731 - null: not measured
        return cls(tuple(macs), table, inf(handoff), inf(convert), threads)


def _positive_list(x: object, name: str) -> list[float]:
    if not (isinstance(x, list) and 0 < len(x) <= 64):
        raise ValueError(f"its {name} is not a short list")
    out = []
    for v in x:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 or v > 1e12:
            raise ValueError(f"its {name} holds something other than finite positive numbers")
        out.append(float(v))
    return out


#: the plain float32 path everywhere (no measurement: tests, HARMONIUM_CALIBRATION=off, GPUs)
REFERENCE = Calibration()


def bf16_allowed() -> bool:
    """bfloat16 paths may be chosen (``HARMONIUM_PRECISION=float32`` forbids them)."""
    return os.environ.get("HARMONIUM_PRECISION", "").strip().lower() not in ("float32", "fp32", "f32")


# ------------------------------------------------------------------------- the machine
def cpu_model() -> str:
    """The CPU's model string ("AMD EPYC", "Intel(R) Xeon(R) ...") as the OS tells it."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            for line in f.read(1 << 20).decode("utf-8", "replace").splitlines():
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()[:200]
    except OSError:
        pass
    return (platform.processor() or platform.machine() or "unknown")[:200]


def machine_key() -> dict:
    """What a table is valid for: the CPU model, its usable cores and torch's version."""
    from .device import usable_cores

    return {"cpu": cpu_model(), "cores": usable_cores(), "torch": torch.__version__}


# ------------------------------------------------------------------------- measuring
def _timed(fn, budget: float) -> float:
    """Seconds per call of fn: the best of three rounds of calls, each about budget/3 long."""
    return _interleaved({"x": fn}, budget)["x"]


def _interleaved(fns: dict, budget: float, rounds: int = 8) -> dict:
    """Seconds per call of each function, the best of `rounds` rounds in which each function
    runs in turn for about budget/(rounds·len(fns)) seconds: a burst of load from elsewhere
    falls on one round of every path alike, and the best round of each is what compares."""
    per = {}
    for k, fn in fns.items():  # warm-up (oneDNN builds its primitive) and the batch size
        fn()
        t0 = time.perf_counter()
        fn()
        per[k] = max(1, min(2000, int(budget / (rounds * len(fns)) / max(time.perf_counter() - t0, 1e-7))))
    best = {k: math.inf for k in fns}
    deadline = time.perf_counter() + 2 * budget  # a machine so busy that rounds overrun: fewer
    for r in range(rounds):
        if r >= 2 and time.perf_counter() > deadline:
            break
        for k, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(per[k]):
                fn()
            best[k] = min(best[k], (time.perf_counter() - t0) / per[k])
    return best


def measure(budget: float = 0.6) -> Calibration:
    """Time every path at every size of the ladder with torch's current thread count, in about
    `budget` seconds (the paths of one size in interleaved rounds, see `_interleaved`)."""
    from .kernels import onednn_available

    lp = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    reorder = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None)
    onednn = onednn_available()
    bf16 = onednn and _bf16_agrees()
    g = torch.Generator().manual_seed(0)
    per = budget / (len(LADDER) + 1)
    times: dict[str, list[float]] = {}
    macs = []
    with torch.no_grad():
        for rows, n_in, n_out in LADDER:
            x = (torch.rand(rows, n_in, generator=g) < 0.3).float()
            W = torch.randn(n_out, n_in, generator=g) * 0.05  # a linear layer's [out, in]
            b = torch.zeros(n_out)
            macs.append(float(rows * n_in * n_out))
            fns = {"addmm": lambda: torch.sigmoid(torch.addmm(b, x, W.t()))}
            if onednn:
                pk = reorder(W.contiguous(), rows)
                fns["fused"] = lambda: lp(x, W, b, "sigmoid", [], "")
                fns["packed"] = lambda: lp(x, pk, b, "sigmoid", [], "")
            if bf16:
                xb, Wb, bb = x.bfloat16(), W.bfloat16(), b.bfloat16()
                pkb = reorder(Wb.contiguous(), rows)
                fns["fused_bf16"] = lambda: lp(xb, Wb, bb, "sigmoid", [], "")
                fns["packed_bf16"] = lambda: lp(xb, pkb, bb, "sigmoid", [], "")
            for p, t in _interleaved(fns, per).items():
                times.setdefault(p, []).append(t)
        big = torch.randn(512, 1024, generator=g)
        convert = _timed(lambda: big.to(torch.bfloat16), per / 2) / big.numel()
    return Calibration(tuple(macs), {p: tuple(t) for p, t in times.items()}, _handoff(per / 2), convert, torch.get_num_threads())


def _bf16_agrees() -> bool:
    """oneDNN's bfloat16 linear exists here and agrees with float32 to bfloat16's rounding."""
    try:
        lp = torch.ops.mkldnn._linear_pointwise
        g = torch.Generator().manual_seed(1)
        x, W, b = (torch.rand(8, 64, generator=g) < 0.5).float(), torch.randn(16, 64, generator=g) * 0.1, torch.randn(16, generator=g)
        got = lp(x.bfloat16(), W.bfloat16(), b.bfloat16(), "sigmoid", [], "").float()
        return bool(torch.allclose(got, torch.sigmoid(torch.addmm(b, x, W.t())), atol=2e-2))
    except Exception:  # no bf16 kernels in this build
        return False


def _handoff(budget: float) -> float:
    """Seconds to hand an empty task to the chain workers and get it back (inf on one thread)."""
    if torch.get_num_threads() < 2:
        return math.inf
    from .sampling import chain_workers

    pool = chain_workers(2)
    return _timed(lambda: pool.submit(int).result(), budget)


# ------------------------------------------------------------------------- the cache
_lock = threading.Lock()
_tables: dict[int, Calibration] = {}
_injected: list[Calibration] = []
_generation = 0  # see generation()


def generation() -> int:
    """A number that changes whenever `calibration()` may answer otherwise than before in this
    process (a table injected or withdrawn, made or forgotten; not the environment variables,
    read when the engine makes its plans): for plans kept from call to call."""
    return _generation


def cache_path() -> Path:
    from .atomic import data_dir

    return data_dir() / CACHE_NAME


def read_cache(path: Path | None = None) -> dict[int, Calibration]:
    """The tables (by thread count) a cache file holds for this machine; {} when there is none,
    when it was made on another machine or torch, or (with one warning line) when it is not a
    small regular file holding a valid JSON table: it is then measured again and replaced."""
    path = Path(path) if path is not None else cache_path()
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return {}
    except OSError as e:
        warnings.warn(f"ignoring the calibration cache {path}: {e.strerror or e}", RuntimeWarning, stacklevel=2)
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("it is not a regular file")
        if st.st_size > MAX_CACHE_BYTES:
            raise ValueError(f"it is larger than {MAX_CACHE_BYTES // 1024} KB")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_CACHE_BYTES + 1)
        if len(raw) > MAX_CACHE_BYTES:
            raise ValueError(f"it is larger than {MAX_CACHE_BYTES // 1024} KB")
        try:
            doc = json.loads(raw.decode("utf-8"), parse_constant=lambda c: math.nan)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError("it is not JSON") from e
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError("it is not a calibration of this format")
        if doc.get("machine") != machine_key():
            return {}  # another CPU, core count or torch: measured again
        tables = doc.get("tables")
        if not isinstance(tables, dict) or len(tables) > 64:
            raise ValueError("its tables are not a small JSON object")
        out = {}
        for k, v in tables.items():
            cal = Calibration.from_json(v)
            if str(cal.threads) != k:
                raise ValueError("a table is filed under another thread count")
            out[cal.threads] = cal
        return out
    except ValueError as e:
        warnings.warn(f"ignoring the calibration cache {path}: {e}; measuring again", RuntimeWarning, stacklevel=2)
        return {}
    finally:
        os.close(fd)


def write_cache(tables: dict[int, Calibration], path: Path | None = None) -> None:
    """Save the tables for this machine (atomically: a reader sees the old file or the new)."""
    from .atomic import atomic_open

    path = Path(path) if path is not None else cache_path()
    doc = {"format": FORMAT, "machine": machine_key(), "tables": {str(k): v.to_json() for k, v in sorted(tables.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        f.write(json.dumps(doc, indent=1).encode("utf-8"))


def calibration(device: torch.device | str | None = None) -> Calibration:
    """The table for torch's current thread count on this machine: injected (`use`), else
    from this process's memory, else from the cache file, else measured now and saved. The
    plain float32 path (`REFERENCE`) off the CPU and with ``HARMONIUM_CALIBRATION=off``."""
    global _generation
    if _injected:
        return _injected[-1]
    if device is not None and torch.device(device).type != "cpu":
        return REFERENCE
    if os.environ.get("HARMONIUM_CALIBRATION", "").strip().lower() in ("off", "0", "no", "false"):
        return REFERENCE
    threads = torch.get_num_threads()
    cal = _tables.get(threads)
    if cal is not None:
        return cal
    with _lock:
        if threads not in _tables:
            tables = read_cache()
            if threads not in tables:
                tables[threads] = measure()
                try:
                    write_cache(tables)
                except OSError as e:  # a read-only home: measured again next time
                    warnings.warn(f"could not save the calibration: {e.strerror or e}", RuntimeWarning, stacklevel=2)
            _tables.update(tables)
            _generation += 1
        return _tables[threads]


@contextlib.contextmanager
def use(cal: Calibration) -> Iterator[Calibration]:
    """Make every engine decision from `cal` inside the block (tests; benches comparing paths)."""
    global _generation
    _injected.append(cal)
    _generation += 1
    try:
        yield cal
    finally:
        _injected.remove(cal)
        _generation += 1


def forget() -> None:
    """Drop the tables this process holds (the next `calibration()` reads the cache again)."""
    global _generation
    with _lock:
        _tables.clear()
        _generation += 1


def only(*paths: str, threads: int = 1, handoff: float = math.inf) -> Calibration:
    """A table in which `paths` (in that order) win at every size and the others are absent:
    for tests and benches that want one path taken whatever the machine."""
    macs = tuple(float(r * i * o) for r, i, o in LADDER)
    times = {p: tuple(1e-6 * (1 + 0.1 * rank) * m / macs[0] for m in macs) for rank, p in enumerate(paths)}
    return Calibration(macs, times, handoff, 1e-9, threads)
