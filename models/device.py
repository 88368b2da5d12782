"""Device choice and seeding: CUDA or MPS when present, else the CPU; float32 everywhere."""
from __future__ import annotations

import os
import random

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
    """Seed Python, NumPy and torch (all devices) so a run with the same seed repeats."""
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


def job_threads() -> int:
    """Torch threads for one training job on the CPU: half the usable cores, at least one.

    A job never runs alone in the studio (the UI thread, the Dreams sampler, often a second
    job), and torch's threads wait on each other at every op: on a 2-core machine with the
    other core busy, a VAE step on 70 faces took 1,000 ms with two threads against 37 ms with
    one (bench/quality.py, measured under load). Half the cores leaves room for the rest."""
    return max(1, usable_cores() // 2)
