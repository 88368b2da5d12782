"""The model engine, imported in a worker thread at start-up so the window shows first."""

from __future__ import annotations

from typing import Any

from models import kinds  # the kinds' records: no torch imported


def load_engine() -> dict[str, Any]:
    """Import torch and the model kinds, warm them up; runs in a worker thread at start-up.

    Torch's default thread count comes from the process's thread policy
    (`models.device.default_threads`: a core is left for the UI thread); training jobs take
    theirs from the same policy (`models.device.job_threads`). ``HARMONIUM_TORCH_THREADS``
    overrides both.
    """
    import gc

    # Importing torch makes ~350,000 long-lived objects; each full collection meanwhile walks
    # them all (up to 0.3 s, holding the GIL, so the window freezes). Pause the collector for
    # the import, then freeze what exists: later full collections skip it (~2 ms instead).
    gc.disable()
    try:
        info = _load_engine()
    finally:
        gc.freeze()
        gc.enable()
    return info


def _load_engine() -> dict[str, Any]:
    import torch

    from models.device import default_threads

    threads = default_threads()
    torch.set_num_threads(threads)
    import pyqtgraph  # noqa: F401 - imported here so the UI thread never pays for it

    import models.checkpoint  # noqa: F401
    from models.device import default_device, describe_device

    # The first optimiser imports torch._dynamo (seconds): pay it now, not at the first Start.
    p = torch.zeros(1, requires_grad=True)
    torch.optim.SGD([p], lr=0.1)
    torch.optim.Adam([p], lr=0.1)
    for record in kinds.KINDS.values():  # every kind's modules, here rather than on the UI thread
        record.load()
    return {"device": describe_device(default_device()), "threads": threads}
