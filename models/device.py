"""Device choice, seeding and the process's thread policy: CUDA or MPS when present, else the
CPU; float32 everywhere; how many torch threads each job takes (`thread_rule`)."""
from __future__ import annotations

import os
import random
import threading
from typing import Callable

import numpy as np
import torch


def default_device(prefer: str | None = None) -> torch.device:
    """The best device here: `prefer` if given ("cpu", "cuda", "mps"), else CUDA, MPS, CPU."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """A short human name for the status bar: "CPU (2 threads)", "CUDA: NVIDIA H100", ..."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    return f"CPU ({torch.get_num_threads()} threads)"


def seed_everything(seed: int | None) -> None:
    """Seed Python, NumPy and torch (all devices) so a run with the same seed repeats. For a
    process that runs one job on its main thread (the CLI, a bench): the studio's jobs and
    samplers run in threads, each with its own generator (`make_generator`), and never touch
    the global ones."""
    if seed is None:
        return
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A private random stream on `device` (chains and sampling draw from it, not the global one)."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells, else the count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------- thread policy
# One place decides how many torch threads each piece of CPU work takes. torch's threads wait
# on each other at every op, so a thread that finds its core taken stalls all the others: on
# a 2-core machine with the other core busy, a VAE step on 70 faces took 1,000 ms with two
# threads against 37 ms with one (bench/quality.py), and bench/threads.py measures the three
# situations the studio meets (see `thread_rule` for its figures). So the policy never hands
# out more threads than there are idle cores, counting what else runs in this process.

#: What computes in this process besides the thread that asks: training jobs, Dreams samplers.
BUSY_KINDS = ("job", "sampler")
_busy = {kind: 0 for kind in BUSY_KINDS}
_busy_lock = threading.Lock()


def thread_rule(cores: int, jobs: int = 1, busy: int = 0) -> int:
    """Torch threads for each of `jobs` training jobs on `cores` cores while `busy` other
    threads compute (Dreams samplers): one core is left for the rest (the studio's UI thread,
    or the caller's; the OS, other programs), the others are shared evenly; at least one.

    Measured with bench/threads.py on a shared 2-core VM (load average 3.5-4.1 from other
    programs; VAE / hybrid on 100 faces at 32 px; seconds per 80 steps, one thread vs two):
    alone 0.85 vs 1.58 and 0.79 vs 1.56; two jobs at once 1.80 vs 2.39 and 1.73 vs 1.56;
    beside the Dreams sampler (73 frames/s either way) 0.61 vs 1.50 and 0.54 vs 1.90. Two
    threads lost in five of six cases, by 1.9x at the median, and won the sixth by 10 %:
    a thread that finds its core taken stalls the others, and on a user's machine the
    "other" core is seldom idle. Hence a core left for the rest, always.
    """
    return max(1, (int(cores) - 1 - max(0, int(busy))) // max(1, int(jobs)))


def _env_threads() -> int:
    """``HARMONIUM_TORCH_THREADS`` (a positive integer), else 0: a person's override."""
    try:
        return max(0, int(os.environ.get("HARMONIUM_TORCH_THREADS", "0") or 0))
    except ValueError:
        return 0


def job_threads() -> int:
    """Torch threads for a training job that starts now, after its `claim("job")`:
    `thread_rule` over the usable cores, the jobs and the samplers that have claimed.
    ``HARMONIUM_TORCH_THREADS`` overrides."""
    cores = usable_cores()
    if _env_threads():
        return min(cores, _env_threads())
    with _busy_lock:
        jobs, samplers = _busy["job"], _busy["sampler"]
    return thread_rule(cores, jobs=max(1, jobs), busy=samplers)


def default_threads() -> int:
    """Torch threads for the process's other work (a Dreams frame, a canvas render, a decode):
    what one job alone would get. The studio makes it torch's default once, at start."""
    cores = usable_cores()
    return min(cores, _env_threads()) if _env_threads() else thread_rule(cores, jobs=1, busy=0)


def claim(kind: str) -> Callable[[], None]:
    """Count one `kind` ("job", "sampler") as computing until the returned function is called
    (calling it again does nothing): jobs that start meanwhile take fewer threads."""
    if kind not in BUSY_KINDS:
        raise ValueError(f"unknown kind of CPU work {kind!r} ({', '.join(BUSY_KINDS)})")
    with _busy_lock:
        _busy[kind] += 1
    released = False

    def release() -> None:
        nonlocal released
        with _busy_lock:
            if not released:
                released = True
                _busy[kind] -= 1

    return release


def busy_counts() -> dict[str, int]:
    """How many of each kind have claimed a core now."""
    with _busy_lock:
        return dict(_busy)
