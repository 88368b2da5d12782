"""Loading many files into one array in worker threads (:func:`load_images`), augmentation,
the built-in demo set.  See :mod:`studio.dataset`."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from studio.dataset.decode import _load_one
from studio.dataset.records import ImageInfo, ImageSet, LoadCancelled, Preprocess, ProgressFn, Rejected
from studio.dataset.walk import _as_sources, _is_image_name, _sort_key, _walk


_ROOT = Path(__file__).resolve().parents[2]  # the repository: studio/dataset/load.py → ../../


def default_workers() -> int:
    """Decode threads used when ``workers`` is None: one per core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def _compact(images: np.ndarray, keep: list[int]) -> np.ndarray:
    """Move the kept rows to the front, in order, and shrink the array in place (no copy of
    the whole set).  Safe because no views of ``images`` outlive the decoding tasks."""
    for dst, src in enumerate(keep):
        if dst != src:
            images[dst] = images[src]
    if len(keep) != images.shape[0]:
        images.resize((len(keep), *images.shape[1:]), refcheck=False)
    return images


def load_images(
    sources: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    preprocess: Preprocess | None = None,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    follow_links: bool = False,
) -> ImageSet:
    """Scan ``sources`` and decode every candidate into one uint8 ``[N, C, H, W]`` array.

    Args:
        sources: files and/or folders (a single path is accepted too).
        preprocess: how to turn each source into a training image (default ``Preprocess()``).
        progress: called as ``progress(done, total)`` on the *calling* thread: once with
            ``(0, total)`` before decoding, then whenever files finish (``done`` only grows,
            possibly by several at a time, and ends at ``total`` unless cancelled).
        cancel: when set (from any thread), loading stops promptly and
            :class:`LoadCancelled` is raised; no partial set is returned.
        workers: decoding threads (default :func:`default_workers`); 1 decodes inline.
        follow_links: follow symbolic links that lead out of the dropped folders too (by
            default such links are rejected, with their target, and not read: a link to "/"
            in a dropped folder must not walk the whole disk). Links inside are followed.

    Per-file problems never raise: they end up in ``ImageSet.rejected`` with a reason.
    """
    pp = preprocess if preprocess is not None else Preprocess()
    if not isinstance(pp, Preprocess):
        raise TypeError(f"preprocess must be a Preprocess, got {type(pp).__name__}")
    found = _walk(_as_sources(sources), follow_links)
    files = found.files
    total = len(files)
    if cancel is not None and cancel.is_set():
        raise LoadCancelled(0, total)
    images = np.empty((total, pp.channels, pp.size, pp.size), dtype=np.uint8)
    results: list[ImageInfo | Rejected | None] = [None] * total
    n_workers = default_workers() if workers is None else max(1, int(workers))
    if progress is not None:
        progress(0, total)
    if n_workers == 1 or total <= 1:
        done = _run_inline(files, pp, images, results, progress, cancel)
    else:
        done = _run_pool(files, pp, images, results, progress, cancel, n_workers)
    if done < total:
        raise LoadCancelled(done, total)

    keep = [i for i, r in enumerate(results) if isinstance(r, ImageInfo)]
    rejected = found.rejected + [r for r in results if isinstance(r, Rejected)]
    rejected.sort(key=lambda r: _sort_key(Path(r.path)))
    return ImageSet(
        images=_compact(images, keep),
        paths=[str(files[i]) for i in keep],
        rejected=rejected,
        preprocess=pp,
        info=[results[i] for i in keep],  # type: ignore[misc]
        ignored=[str(p) for p in found.ignored],
    )


def _run_inline(files: list[Path], pp: Preprocess, images: np.ndarray, results: list,
                progress: ProgressFn | None, cancel: threading.Event | None) -> int:
    for i, path in enumerate(files):
        if cancel is not None and cancel.is_set():
            return i
        results[i] = _load_one(path, pp, images[i])
        if progress is not None:
            progress(i + 1, len(files))
    return len(files)


def _run_pool(files: list[Path], pp: Preprocess, images: np.ndarray, results: list,
              progress: ProgressFn | None, cancel: threading.Event | None, n_workers: int) -> int:
    """Decode with a bounded window of in-flight tasks so cancellation is prompt and the
    bookkeeping stays small; results are collected on the calling thread."""
    total = len(files)
    window = n_workers * 4
    next_index = 0
    done = 0
    pending: dict[Future, int] = {}
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="harmonium-ingest") as pool:
        try:
            while True:
                while next_index < total and len(pending) < window:
                    fut = pool.submit(_load_one, files[next_index], pp, images[next_index])
                    pending[fut] = next_index
                    next_index += 1
                if not pending:
                    break
                finished, _ = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for fut in finished:
                    results[pending.pop(fut)] = fut.result()
                    done += 1
                if finished and progress is not None:
                    progress(done, total)
                if cancel is not None and cancel.is_set():
                    return done
        finally:
            for fut in pending:
                fut.cancel()
    return done


# ----------------------------------------------------------------------------- augmentation


def augment(
    images: np.ndarray,
    n: int,
    rng: np.random.Generator | int | None = None,
    *,
    hflip: bool = True,
    vflip: bool = False,
    max_shift: float = 0.125,
    max_zoom: float = 0.15,
) -> np.ndarray:
    """``n`` new images made from random picks of ``images`` ([N, C, H, W] uint8), for tiny sets.

    Each pick is optionally mirrored (``hflip``; ``vflip`` is off by default because most
    pictures have an up), zoomed in by up to ``max_zoom`` (a random crop scaled back up) and
    shifted by up to ``max_shift`` of the side (edges repeat into the gap).  Sampling is nearest
    neighbour, so binarized sets stay exactly 0/255.  Returns a new uint8 [n, C, H, W] array.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError("augment needs a non-empty [N, C, H, W] array")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    _, c, h, w = images.shape
    out = np.empty((n, c, h, w), dtype=images.dtype)
    rows, cols = np.arange(h), np.arange(w)
    for k in range(n):
        src = images[rng.integers(images.shape[0])]
        zoom = 1.0 + rng.uniform(0.0, max_zoom)
        cy, cx = (h - 1) / 2, (w - 1) / 2
        dy = rng.uniform(-max_shift, max_shift) * h
        dx = rng.uniform(-max_shift, max_shift) * w
        ry = np.clip(np.rint((rows - cy) / zoom + cy - dy), 0, h - 1).astype(np.intp)
        rx = np.clip(np.rint((cols - cx) / zoom + cx - dx), 0, w - 1).astype(np.intp)
        if hflip and rng.random() < 0.5:
            rx = rx[::-1]
        if vflip and rng.random() < 0.5:
            ry = ry[::-1]
        out[k] = src[:, ry[:, None], rx[None, :]]
    return out


# ----------------------------------------------------------------------------- demo set


def demo_folder() -> Path:
    """The built-in demo set (``resources/demo``), made by ``resources/demo/make_demo.py``."""
    return _ROOT / "resources" / "demo"


def load_demo(preprocess: Preprocess | None = None, **kwargs: Any) -> ImageSet:
    """Load the built-in demo images (keyword arguments go to :func:`load_images`)."""
    folder = demo_folder()
    files = sorted(p for p in folder.glob("*") if p.is_file() and _is_image_name(p.name))
    if not files:
        raise FileNotFoundError(
            f"the demo images are missing from {folder}; make them with "
            f"`python {folder / 'make_demo.py'}`")
    return load_images(files, preprocess, **kwargs)
