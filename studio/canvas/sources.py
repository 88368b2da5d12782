"""Turning things into canvas layers, with their provenance.  No Qt here.

Every function returns a :class:`studio.canvas.Layer` whose ``provenance`` says
where its pixels came from — ``source`` (``"dreams"``, ``"texture"`` (also a texture RBM's, :func:`canvas_texture`),
``"model-frame"``, ``"interpolation"``, ``"dataset"``, ``"import"``), and for
model outputs the model ``kind``/``model``, ``checkpoint_sha256`` (``None``
when unknown), ``seed``, ``steps`` and ``temperature`` — which the exports
write into their PNG text chunks.

Pixels are normalised to read-only ``uint8`` ``H×W×C`` arrays (C = 1 gray,
2 gray+alpha, 3 RGB, 4 RGBA), so that a project stores them losslessly as PNG.

Accepted image arrays (:func:`image_pixels`):

* ``H×W`` or ``H×W×C`` (C in 1..4), uint8, uint16, bool or float in [0, 1];
* ``C×H×W`` with C in (1, 3, 4) when the last axis cannot be channels (as the
  models and :class:`~studio.dataset.ImageSet` hold images), e.g. ``3×28×28``;
* torch tensors (moved to the CPU first).

Batches (``n×C×H×W``, the models' layout, whenever the second axis can be
channels; otherwise ``n×H×W×C``) are laid out as a grid by
:func:`from_dream_snapshot` or side by side by :func:`interpolation_strip`.
A single 3-axis array is read as ``H×W×C`` whenever its last axis can be
channels, so pass tiny ``C×H×W`` images (sides ≤ 4) as batches.
"""

from __future__ import annotations

import copy
import hashlib
import os
import secrets
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from studio.canvas import MAX_SCALED_SIDE, Layer
from studio.images import GAP_FILL, GridLayout, mosaic, to_uint8

__all__ = [
    "LayerSourceError",
    "MAX_IMPORT_FRAMES",
    "image_pixels",
    "batch_pixels",
    "grid",
    "from_dream_snapshot",
    "rbm_texture",
    "canvas_texture",
    "sample_frame",
    "vae_frame",
    "interpolation_strip",
    "dataset_image",
    "import_png",
    "detach_model",
]

#: Frames read at most from an animated file by :func:`import_png`.
MAX_IMPORT_FRAMES = 512
#: Pixels an imported image may have (per frame).
MAX_IMPORT_PIXELS = MAX_SCALED_SIDE * MAX_SCALED_SIDE


class LayerSourceError(ValueError):
    """Something could not be turned into a layer; the message says why, for a person."""


# --------------------------------------------------------------------------
# Pixel normalisation
# --------------------------------------------------------------------------


def _to_numpy(images: Any) -> np.ndarray:
    if isinstance(images, np.ndarray):
        return images
    detach = getattr(images, "detach", None)
    if detach is not None:  # a torch tensor
        return detach().to("cpu").numpy()
    return np.asarray(images)


def _quantise(a: np.ndarray) -> np.ndarray:
    """Any supported dtype -> uint8 (floats are clipped to [0, 1] and rounded)."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * np.uint8(255)
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        return to_uint8(a)
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8)
    raise LayerSourceError(f"image pixels of type {a.dtype} are not supported (use uint8 or floats in [0, 1])")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def image_pixels(image: Any) -> np.ndarray:
    """One image as a read-only uint8 ``H×W×C`` array (C = 1..4); see the module docs for what is accepted."""
    a = _to_numpy(image)
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4) and a.shape[0] in (1, 3, 4):
        a = a.transpose(1, 2, 0)  # C×H×W, as the models hold images
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise LayerSourceError(f"expected an image H×W, H×W×C or C×H×W (C = 1–4), got shape {tuple(a.shape)}")
    return _readonly(_quantise(a))


def batch_pixels(images: Any) -> list[np.ndarray]:
    """A batch (``n×C×H×W``, ``n×H×W×C``, or a sequence of images) as a list of uint8 ``H×W×C`` arrays."""
    if isinstance(images, (list, tuple)):
        out = [image_pixels(im) for im in images]
    else:
        a = _to_numpy(images)
        if a.ndim != 4:
            raise LayerSourceError(f"expected a batch of images n×C×H×W or n×H×W×C, got shape {tuple(a.shape)}")
        # n×C×H×W (the models' layout) unless only the last axis can be channels
        if a.shape[1] in (1, 3, 4) and not (a.shape[3] in (1, 2, 3, 4) and a.shape[1] == 4):
            a = a.transpose(0, 2, 3, 1)
        out = [image_pixels(a[i]) for i in range(a.shape[0])]
    if not out:
        raise LayerSourceError("there are no images")
    if len({p.shape for p in out}) != 1:
        raise LayerSourceError("the images do not all have the same size and channels")
    return out


def grid(images: Sequence[np.ndarray], cols: int = 0, pad: int = 1, fill: int = GAP_FILL) -> np.ndarray:
    """Lay same-sized uint8 ``H×W×C`` images out as :func:`studio.images.mosaic` does, in rows
    of ``cols`` (0: about square), ``pad`` pixels apart, on ``fill`` gray (opaque).  Returns a
    read-only uint8 array."""
    stack = np.stack(images)
    c = stack.shape[-1]
    gap = [fill] * (c - 1) + [255] if c in (2, 4) else fill  # the gaps are opaque
    return _readonly(mosaic(stack, pad, gap, cols))


def _provenance(base: Mapping[str, Any] | None, **defaults: Any) -> dict[str, Any]:
    """``defaults`` overlaid by ``base``; ``model`` and ``kind`` mirror each other."""
    prov = dict(defaults)
    prov.update(base or {})
    if "model" in prov and "kind" not in prov:
        prov["kind"] = prov["model"]
    elif "kind" in prov and "model" not in prov:
        prov["model"] = prov["kind"]
    for key in ("checkpoint_sha256", "seed", "steps", "temperature"):
        prov.setdefault(key, None)
    return prov


# --------------------------------------------------------------------------
# Dreams
# --------------------------------------------------------------------------


def from_dream_snapshot(
    pixels: Any,
    provenance: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    chain: int | None = None,
    cols: int = 0,
    pad: int = 1,
) -> Layer:
    """A layer of a dream snapshot: the grid of chains, or one chain.

    ``pixels`` is what the Dreams tab hands over — an RGBA (or gray / RGB)
    image of the grid or of one chain — or a batch of chains
    (``n×C×H×W`` float/uint8, e.g. ``sampler.images()``), which is laid out
    as a grid, or reduced to chain ``chain`` when given.  Dream pixels are
    small: the layer upsamples with ``nearest`` by default, keeping them crisp.
    """
    a = _to_numpy(pixels)
    prov = _provenance(provenance, source="dreams")
    if a.ndim == 4:
        chains = batch_pixels(a)
        if chain is not None:
            if not 0 <= chain < len(chains):
                raise LayerSourceError(f"chain {chain} out of range (0–{len(chains) - 1})")
            source = chains[chain]
            prov["chain"] = int(chain)
        else:
            source = grid(chains, cols, pad)
            prov.setdefault("grid", {"n": len(chains), "cols": GridLayout(len(chains), 1, 1, pad, cols).cols, "pad": pad})
    else:
        source = image_pixels(a)
        if chain is not None:
            prov.setdefault("chain", int(chain))
    if name is None:
        what = f"chain {prov['chain']}" if prov.get("chain") is not None else "grid"
        kind = prov.get("model") or "model"
        steps = f" · step {prov['steps']}" if prov.get("steps") is not None else ""
        name = f"Dreams · {kind} · {what}{steps}"
    return Layer(name=name, source=source, provenance=prov, resample="nearest")


def _seed_used(seed: int | None) -> int:
    """The seed a sampling uses: the one asked, or for a random run one drawn here, so that
    the layer's provenance (and every export of it) records the seed that made it."""
    return secrets.randbelow(2**31) if seed is None else int(seed)


def weights_sha256(model: Any) -> str | None:
    """SHA-256 of a model's weights: its ``state_dict`` entries in name order, each its name,
    dtype, shape and raw bytes. Names the model that made a layer even when no checkpoint
    file holds those weights yet (a model trained in the studio and not saved, or trained on
    since); the same weights give the same hash in any session. None for a non-torch model."""
    state = getattr(model, "state_dict", None)
    if not callable(state):
        return None
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(state().items()):
        if not isinstance(tensor, torch.Tensor):
            continue
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def stamp_job_weights(layer: Layer, job_by_id: Any) -> Layer:
    """``layer`` with ``weights_sha256`` in its provenance when that names the studio's run
    that made it (``job_id``, as the Latent tab's frames and strips and the Dreams tab's
    training frames do) and no weights yet: the run's model's weights hashed now, under its
    step lock, as the layer joins the canvas. A project saved later names the checkpoint that
    holds exactly those weights (``studio.project.saving``); a run trained on since matches
    none, and its layer keeps no checkpoint hash. ``job_by_id``: id → job (or None)."""
    import dataclasses

    prov = layer.provenance
    job_id = prov.get("job_id")
    if job_id is None:
        job_id = (prov.get("training") or {}).get("job_id") if isinstance(prov.get("training"), dict) else None
    if prov.get("weights_sha256") or isinstance(job_id, bool) or not isinstance(job_id, int):
        return layer
    job = job_by_id(job_id)
    model = getattr(job, "model", None)
    if model is None:
        return layer
    lock = getattr(job, "step_lock", None)
    with lock if lock is not None else nullcontext():
        weights = weights_sha256(model)
    if weights is None:
        return layer
    return dataclasses.replace(layer, provenance={**prov, "weights_sha256": weights})


def _is_sampler(obj: Any) -> bool:
    return callable(getattr(obj, "step", None)) and callable(getattr(obj, "images", None)) and not hasattr(obj, "state_dict")


def _model_kind(model: Any) -> str:
    return str(getattr(model, "kind", None) or type(model).__name__)


def rbm_texture(
    model_or_sampler: Any,
    steps: int = 200,
    seed: int | None = 0,
    tiling: str | None = "mirror",
    *,
    temperature: float = 1.0,
    chain: int = 0,
    show: str = "probs",
    scale: float = 4.0,
    resample: str = "bicubic",
    checkpoint_sha256: str | None = None,
    name: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Layer:
    """Sample one chain of a dreaming model and make a layer tiled across the canvas.

    ``model_or_sampler``: an RBM / Gaussian RBM / hybrid (or VAE) model — a
    fresh one-chain sampler seeded with ``seed`` is run for ``steps`` Gibbs
    steps at ``temperature`` (the model itself is not changed; deterministic
    for a given seed) — or a ready sampler (``.step(k)``, ``.images(show)``),
    which is stepped ``steps`` times and read at chain ``chain``.

    ``tiling``: ``"mirror"`` (default: every tile edge meets its mirror image,
    so the texture is seamless), ``"plain"`` or ``None`` (placed once).
    ``show``: ``"probs"`` (smooth means) or ``"samples"`` (binary states).
    The sampling runs torch on the calling thread: call it from a worker.
    """
    if steps < 0:
        raise LayerSourceError("steps must be 0 or more")
    if show not in ("probs", "samples"):
        raise LayerSourceError(f"show must be 'probs' or 'samples', got {show!r}")
    if _is_sampler(model_or_sampler):
        sampler = model_or_sampler
        model = getattr(sampler, "model", None)
    else:
        from models.factory import make_sampler

        model = model_or_sampler
        chain = 0
        seed = _seed_used(seed)
        try:
            sampler = make_sampler(model, n_chains=1, seed=seed, temperature=temperature)
        except ValueError as exc:
            raise LayerSourceError(f"cannot make a texture: {exc}") from None
    kind = _model_kind(model) if model is not None else "sampler"
    import torch

    with torch.no_grad():
        if steps:
            sampler.step(int(steps))
        images = sampler.images(show)
    chains = batch_pixels(images)
    if not 0 <= chain < len(chains):
        raise LayerSourceError(f"chain {chain} out of range (0–{len(chains) - 1})")
    prov = _provenance(
        provenance,
        source="texture",
        model=kind,
        checkpoint_sha256=checkpoint_sha256,
        seed=seed,
        steps=int(getattr(sampler, "steps_taken", steps) or steps),
        temperature=float(getattr(sampler, "temperature", temperature)),
        chain=int(chain),
        show=show,
    )
    if model is not None and not _is_sampler(model_or_sampler):
        prov.setdefault("weights_sha256", weights_sha256(model))
    if name is None:
        name = f"Texture · {kind} · {'mirrored' if tiling == 'mirror' else tiling or 'single'} · seed {seed}"
    return Layer(name=name, source=chains[chain], provenance=prov, tiling=tiling, scale=scale, resample=resample)


def canvas_texture(
    model: Any,
    width: int,
    height: int,
    steps: int | None = None,
    seed: int | None = 0,
    *,
    temperature: float = 1.0,
    show: str = "probs",
    checkpoint_sha256: str | None = None,
    name: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Layer:
    """A texture RBM's seamless texture filling a ``width`` × ``height`` canvas at its own
    size: no upscaling, every pixel dreamt (`models.conv_rbm.synthesize`: ``steps`` sweeps
    from noise, annealed; default `DEFAULT_SWEEPS`; deterministic for a seed).

    The texture lives on a torus, so the layer is tiled plainly (``"plain"``) and repeats
    without a seam: a canvas larger than `MAX_TEXTURE_SIDE` px a side is covered by tiles of
    that size, one smaller than `MIN_TEXTURE_SIDE` by a tile of that size; sides are rounded
    up to whole pooling blocks. The sampling runs torch on the calling thread: call it from a
    worker. A model that is not a texture RBM: :class:`LayerSourceError`."""
    if not hasattr(model, "synthesize"):
        raise LayerSourceError(f"a {_model_kind(model)} model dreams at its training images' size; only a texture "
                               "RBM fills a canvas at the canvas's size")
    from models.conv_rbm import DEFAULT_SWEEPS, MAX_TEXTURE_SIDE, MIN_TEXTURE_SIDE

    steps = DEFAULT_SWEEPS if steps is None else int(steps)
    if steps < 0:
        raise LayerSourceError("steps must be 0 or more")
    if show not in ("probs", "samples"):
        raise LayerSourceError(f"show must be 'probs' or 'samples', got {show!r}")
    if not (int(width) >= 1 and int(height) >= 1):
        raise LayerSourceError(f"a canvas of {width}×{height} px has nothing to fill")
    p = int(model.pooling)

    def side(n: int) -> int:
        n = min(max(int(n), MIN_TEXTURE_SIDE), MAX_TEXTURE_SIDE)
        return n + (-n) % p

    h, w = side(height), side(width)
    try:
        images = model.synthesize(h, w, n=1, steps=steps, seed=seed, temperature=float(temperature), show=show)
    except ValueError as exc:  # the model's own refusal (a size its memory cap forbids, ...)
        raise LayerSourceError(f"cannot make a texture: {exc}") from None
    prov = _provenance(
        provenance,
        source="texture",
        model=_model_kind(model),
        checkpoint_sha256=checkpoint_sha256,
        seed=seed,
        steps=steps,
        temperature=float(temperature),
        show=show,
        width=w,
        height=h,
        canvas=[int(width), int(height)],
        seamless=True,
    )
    if name is None:
        name = f"Texture · {prov['model']} · {w}×{h} seamless · seed {seed}"
    return Layer(name=name, source=batch_pixels(images)[0], provenance=prov, tiling="plain", scale=1.0,
                 resample="nearest")


def sample_frame(
    model: Any,
    seed: int | None = 0,
    *,
    temperature: float = 1.0,
    steps: int = 0,
    n: int = 1,
    checkpoint_sha256: str | None = None,
    name: str | None = None,
    scale: float = 4.0,
    resample: str = "bicubic",
) -> Layer:
    """A frame the model dreams: ``n`` samples (a grid when ``n > 1``) of a VAE
    (decoded prior draws at ``temperature``) or of a hybrid / RBM (``steps``
    Gibbs steps from noise, at least 1).  Placed once (no tiling)."""
    import torch

    kind = _model_kind(model)
    seed = _seed_used(seed)
    if hasattr(model, "sample") and kind == "vae":
        generator = torch.Generator(device=getattr(model, "device", "cpu"))
        if seed is not None:
            generator.manual_seed(int(seed))
        with torch.no_grad():
            images = model.sample(int(n), temperature=temperature, generator=generator)
        used_steps = 0
    else:
        from models.factory import make_sampler

        try:
            sampler = make_sampler(model, n_chains=int(n), seed=seed, temperature=temperature)
        except ValueError as exc:
            raise LayerSourceError(f"cannot sample a frame: {exc}") from None
        used_steps = max(1, int(steps))
        with torch.no_grad():
            sampler.step(used_steps)
            images = sampler.images("probs")
    prov = {"model": kind, "checkpoint_sha256": checkpoint_sha256, "weights_sha256": weights_sha256(model),
            "seed": seed, "steps": used_steps, "temperature": float(temperature), "n": int(n)}
    frames = batch_pixels(images)
    return vae_frame(frames[0] if n == 1 else grid(frames), prov, name=name, scale=scale, resample=resample)


# --------------------------------------------------------------------------
# VAE / hybrid frames, interpolations
# --------------------------------------------------------------------------


def vae_frame(
    image: Any,
    provenance: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    scale: float = 1.0,
    resample: str = "bicubic",
) -> Layer:
    """A layer of one decoded VAE or hybrid frame (float in [0, 1] or uint8,
    ``H×W[×C]`` or ``C×H×W``).  ``provenance`` should name the ``model``,
    ``checkpoint_sha256``, ``seed``, ``temperature`` and the latent it came from."""
    prov = _provenance(provenance, source="model-frame", model="vae")
    if name is None:
        name = f"Frame · {prov.get('model') or 'model'}" + (f" · seed {prov['seed']}" if prov.get("seed") is not None else "")
    return Layer(name=name, source=image_pixels(image), provenance=prov, scale=scale, resample=resample)


def interpolation_strip(
    frames: Any,
    provenance: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    animate: bool = False,
    gap: int = 0,
    vertical: bool = False,
    scale: float = 1.0,
    resample: str = "bicubic",
) -> Layer:
    """A layer of an interpolation (a latent walk): the frames side by side, left
    to right (or top to bottom when ``vertical``) with ``gap`` transparent
    pixels between them; or, with ``animate=True``, an animated layer whose
    frames are the interpolation's steps (exportable as GIF / APNG).

    ``frames``: a batch ``n×C×H×W`` / ``n×H×W×C`` or a sequence of images
    (float in [0, 1] or uint8), all the same size.
    """
    images = batch_pixels(frames)
    prov = _provenance(provenance, source="interpolation", model="vae")
    prov["frames"] = len(images)
    if name is None:
        name = f"Interpolation · {prov.get('model') or 'model'} · {len(images)} frames"
    if animate:
        return Layer(name=name, frames=tuple(images), provenance=prov, scale=scale, resample=resample)
    h, w, c = images[0].shape
    if gap:
        # a gap is transparent: give the strip an alpha channel
        if c in (1, 3):
            images = [np.concatenate([im, np.full((h, w, 1), 255, np.uint8)], axis=2) for im in images]
            c += 1
        spacer = np.zeros((h, gap, c) if not vertical else (gap, w, c), np.uint8)
        parts: list[np.ndarray] = []
        for i, im in enumerate(images):
            if i:
                parts.append(spacer)
            parts.append(im)
    else:
        parts = list(images)
    strip = np.concatenate(parts, axis=0 if vertical else 1)
    return Layer(name=name, source=_readonly(strip), provenance=prov, scale=scale, resample=resample)


# --------------------------------------------------------------------------
# Dataset images, imported files
# --------------------------------------------------------------------------


def dataset_image(image_set: Any, index: int, *, name: str | None = None, scale: float = 1.0,
                  resample: str = "bicubic") -> Layer:
    """Image ``index`` of an :class:`~studio.dataset.ImageSet` (as the models see it:
    preprocessed, ``C×H×W`` uint8), with its file path and preprocessing as provenance."""
    n = len(image_set)
    if not 0 <= index < n:
        raise LayerSourceError(f"there is no image {index} in the set (it has {n})")
    pixels = image_pixels(image_set.images[index])
    paths = getattr(image_set, "paths", None) or []
    path = str(paths[index]) if index < len(paths) else None
    preprocess = getattr(image_set, "preprocess", None)
    prov = {
        "source": "dataset",
        "index": int(index),
        "path": path,
        "preprocess": preprocess.to_dict() if hasattr(preprocess, "to_dict") else preprocess,
    }
    if name is None:
        name = f"Image · {Path(path).name if path else f'#{index}'}"
    return Layer(name=name, source=pixels, provenance=prov, scale=scale, resample=resample)


def _pil_pixels(im: Any) -> np.ndarray:
    """A PIL frame -> uint8 ``H×W×C`` keeping gray, alpha and colour as they are."""
    mode = im.mode
    has_alpha = "A" in im.getbands() or "transparency" in im.info
    if mode in ("L", "LA", "RGB", "RGBA"):
        pass
    elif mode in ("1",):
        im = im.convert("L")
    elif mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im)
        top = 65535 if a.max(initial=0) > 255 else 255
        return _readonly(((np.clip(a, 0, top).astype(np.float64) * 255 / top) + 0.5).astype(np.uint8)[:, :, None])
    elif mode == "P" and not has_alpha:
        im = im.convert("RGB")
    else:
        im = im.convert("RGBA" if has_alpha else "RGB")
    return image_pixels(np.asarray(im))


def import_png(path: str | os.PathLike[str], *, name: str | None = None, animated: bool = True) -> Layer:
    """An image file (PNG, or anything Pillow reads: JPEG, WebP, GIF...) as a layer.

    Gray, gray+alpha, RGB and RGBA stay as they are (palette images become RGB/RGBA,
    16-bit gray is scaled to 8 bits).  An animated file (APNG, GIF) becomes an
    animated layer when ``animated`` (at most :data:`MAX_IMPORT_FRAMES` frames).
    Provenance records the file, and the Harmonium provenance the file carries
    (an exported layer re-imported keeps its history) under ``"imported"``.

    Raises :class:`LayerSourceError` with a clear message for a missing,
    unreadable, damaged or oversized file.
    """
    from PIL import Image, ImageSequence, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise LayerSourceError(f"Cannot import {path.name}: the file does not exist.")
    if path.is_dir():
        raise LayerSourceError(f"Cannot import {path.name}: it is a folder, not an image.")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_IMPORT_PIXELS:
                raise LayerSourceError(f"Cannot import {path.name}: it is {w}×{h} pixels, more than the "
                                       f"{MAX_SCALED_SIDE}×{MAX_SCALED_SIDE} a layer can hold.")
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            frames: list[np.ndarray] = []
            if animated and n_frames > 1:
                for frame in ImageSequence.Iterator(im):
                    frames.append(_pil_pixels(frame.copy()))
                    if len(frames) >= MAX_IMPORT_FRAMES:
                        break
                # frames of a GIF may differ in mode: bring them to one channel count
                channels = max(f.shape[2] for f in frames)
                frames = [f if f.shape[2] == channels else _expand_channels(f, channels) for f in frames]
            else:
                im.load()
                source = _pil_pixels(im)
            text = dict(getattr(im, "text", {}) or {})
    except LayerSourceError:
        raise
    except UnidentifiedImageError:
        if _looks_like_image(path):
            raise LayerSourceError(f"Cannot import {path.name}: the file is damaged or truncated.") from None
        raise LayerSourceError(f"Cannot import {path.name}: it is not an image file Pillow can read.") from None
    except Image.DecompressionBombError:
        raise LayerSourceError(f"Cannot import {path.name}: the image is too large to open safely.") from None
    except PermissionError:
        raise LayerSourceError(f"Cannot import {path.name}: permission denied.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise LayerSourceError(f"Cannot import {path.name}: the file is damaged or truncated ({exc}).") from None
    prov: dict[str, Any] = {"source": "import", "path": str(path.resolve()), "file": path.name}
    embedded = _embedded_provenance(text)
    if embedded:
        prov["imported"] = embedded
    if name is None:
        name = path.stem
    if frames:
        prov["frames"] = len(frames)
        return Layer(name=name, frames=tuple(frames), provenance=prov)
    return Layer(name=name, source=source, provenance=prov)


_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")


def _looks_like_image(path: Path) -> bool:
    """The file starts like a PNG, JPEG, GIF, BMP, WebP or TIFF (so a failure to read it is damage)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return any(head.startswith(m) for m in _MAGIC)


def _expand_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """uint8 ``H×W×C`` -> ``H×W×channels`` (gray to RGB, adding opaque alpha)."""
    c = a.shape[2]
    colour = a[..., : (1 if c in (1, 2) else 3)]
    alpha = a[..., -1:] if c in (2, 4) else np.full(a.shape[:2] + (1,), 255, np.uint8)
    if channels in (3, 4) and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    out = np.concatenate([colour, alpha], axis=2) if channels in (2, 4) else colour
    return _readonly(out)


def _embedded_provenance(text: Mapping[str, str]) -> dict[str, Any] | None:
    import json

    from studio.canvas.export import PROVENANCE_KEY

    raw = text.get(PROVENANCE_KEY)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def detach_model(model: Any, lock: Any = None) -> Any:
    """A private copy of ``model`` (taken while holding ``lock``, e.g. a training job's
    ``step_lock``), so that sampling from it never races the training thread."""
    if lock is None:
        return copy.deepcopy(model)
    with lock:
        return copy.deepcopy(model)
