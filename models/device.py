"""Device choice and seeding: CUDA or MPS when present, else the CPU; float32 everywhere."""
from __future__ import annotations

import random

import numpy as np
import torch

DTYPE = torch.float32


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
