"""Rendering a canvas state: the per-layer pipeline (scale, colourise, invert, levels, tile)
and :class:`Renderer` with its byte-bounded caches.  See :mod:`studio.canvas`."""

from __future__ import annotations

import math
import mmap
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from studio.canvas.blend import TINY_ALPHA, composite_into, to_float
from studio.canvas.layer import BAND_PIXELS, GradientMap, Layer, Levels, LUMA_WEIGHTS, Palette, RGB

if TYPE_CHECKING:  # annotations only: the model imports the renderer
    from studio.canvas.model import CanvasState


class _Ident:
    """Hashable identity wrapper for a pixel array (holds a reference, so the
    ``id`` cannot be recycled while a cache key containing it is alive)."""

    __slots__ = ("obj",)

    def __init__(self, obj: object) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Ident) and other.obj is self.obj

    def __repr__(self) -> str:
        return f"_Ident({id(self.obj):#x})"


class _ByteLRU:
    """A least-recently-used cache bounded by the total bytes of its values.

    Scan-resistant: entries used since the last :meth:`new_pass` are never
    evicted to make room; a value that does not fit otherwise is simply not
    stored.  (With plain LRU, a render whose layers need more than the budget
    would evict each layer just before it is needed again, every time.)
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._pass = 0
        self._items: OrderedDict[Any, tuple[Any, int, int]] = OrderedDict()  # key -> (value, nbytes, pass)

    def new_pass(self) -> None:
        """Start a render pass: entries used from now on are protected until the next pass."""
        self._pass += 1

    def get(self, key: Any) -> Any | None:
        item = self._items.get(key)
        if item is None:
            return None
        self._items[key] = (item[0], item[1], self._pass)
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: Any, value: Any, nbytes: int) -> bool:
        """Store ``value``; returns False if it could not be made to fit."""
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]
        for old_key in [k for k, (_, _, used) in self._items.items() if used < self._pass]:
            if self.bytes + nbytes <= self.max_bytes:
                break
            self.bytes -= self._items.pop(old_key)[1]
        if self.bytes + nbytes > self.max_bytes:
            return False
        self._items[key] = (value, nbytes, self._pass)
        self.bytes += nbytes
        return True

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class _Planes:
    """Channel-first float32 tensors: straight colour ``(1|3, h, w)`` and alpha
    ``(1, h, w)`` (``None`` = opaque).  Channel-first because broadcasting alpha
    over the leading axis is much faster in torch than over a trailing axis."""

    colour: torch.Tensor
    alpha: torch.Tensor | None

    @property
    def nbytes(self) -> int:
        """Memory held (whole storages: a tiled layer is a view into a slightly taller buffer)."""
        n = self.colour.untyped_storage().nbytes()
        if self.alpha is not None:
            n += self.alpha.untyped_storage().nbytes()
        return n


def _to_planes(pixels: np.ndarray) -> _Planes:
    """Pixels -> float planes; an alpha channel that is fully opaque is dropped."""
    f = torch.from_numpy(to_float(pixels)).permute(2, 0, 1)
    channels = f.shape[0]
    colour, alpha = (f[:1], f[1:]) if channels == 2 else (f[:3], f[3:]) if channels == 4 else (f, None)
    if alpha is not None and bool((alpha >= 1.0).all()):
        alpha = None
    return _Planes(colour.contiguous(), None if alpha is None else alpha.contiguous())


_TORCH_MODES = {"nearest": "nearest-exact", "bilinear": "bilinear", "bicubic": "bicubic"}


def _resample(planes: _Planes, width: int, height: int, method: str) -> _Planes:
    """Resize to ``width×height``; premultiplies alpha around filtering so
    transparent pixels don't bleed their colour."""
    c, h, w = planes.colour.shape
    if (w, h) == (width, height):
        return planes
    stack = planes.colour if planes.alpha is None else torch.cat([planes.colour * planes.alpha, planes.alpha])
    nchw = stack.unsqueeze(0)
    mode = _TORCH_MODES[method]
    if mode == "nearest-exact":
        out = F.interpolate(nchw, size=(height, width), mode=mode)
    else:
        antialias = width < w or height < h
        out = F.interpolate(nchw, size=(height, width), mode=mode, align_corners=False, antialias=antialias)
    out = out[0].clamp_(0.0, 1.0)
    if planes.alpha is None:
        return _Planes(out, None)
    alpha = out[c:].clone()  # a copy, so the 4-channel buffer can be freed
    colour = (out[:c] / alpha.clamp(min=TINY_ALPHA)).clamp_(0.0, 1.0)  # premultiplied colour is 0 where α is 0
    return _Planes(colour, alpha)


def _luminance(colour: torch.Tensor) -> torch.Tensor:
    """Lum(C) = 0.3 R + 0.59 G + 0.11 B (W3C Compositing § "Non-separable blend modes")."""
    if colour.shape[0] == 1:
        return colour[0]
    r, g, b = LUMA_WEIGHTS
    return colour[0] * r + colour[1] * g + colour[2] * b


def _colourise(colour: torch.Tensor, spec: GradientMap | Palette) -> torch.Tensor:
    """Map luminance through a gradient map or palette; returns ``(3, h, w)``."""
    lum = _luminance(colour)
    if isinstance(spec, Palette):
        table = torch.tensor(spec.colours, dtype=torch.float32).t().contiguous()  # (3, N)
        n = len(spec.colours)
        band = torch.clamp((lum * n).long(), 0, n - 1)
        return table[:, band]
    return _gradient(lum, spec.stops)


def _gradient(lum: torch.Tensor, stops: tuple[tuple[float, RGB], ...]) -> torch.Tensor:
    """Piecewise-linear gradient lookup: ``C0 + Σ_k clamp((L − p_k) / (p_k+1 − p_k), 0, 1) · (C_k+1 − C_k)``.

    Exact linear interpolation between neighbouring stops (no lookup table);
    two stops at the same position make a hard edge, luminance at or above it
    taking the later stop's colour.
    """
    (_, first), *_ = stops
    out = _alloc((3, *lum.shape))
    for k in range(3):
        out[k].fill_(first[k])
    for (p0, c0), (p1, c1) in zip(stops, stops[1:]):
        if p1 > p0:
            t = ((lum - p0) / (p1 - p0)).clamp_(0.0, 1.0)
        else:
            t = (lum >= p0).to(torch.float32)
        for k in range(3):
            if c1[k] != c0[k]:
                out[k].add_(t, alpha=c1[k] - c0[k])
    return out


def _apply_levels(colour: torch.Tensor, levels: Levels) -> torch.Tensor:
    out = (colour - levels.in_black).div_(levels.in_white - levels.in_black).clamp_(0.0, 1.0)
    if levels.gamma != 1.0:
        out.pow_(1.0 / levels.gamma)
    return out.mul_(levels.out_white - levels.out_black).add_(levels.out_black)


def _has_colour_ops(layer: Layer) -> bool:
    return layer.colourise is not None or layer.invert or not layer.levels.is_identity


def _adjust(planes: _Planes, layer: Layer) -> _Planes:
    colour = planes.colour
    if layer.colourise is not None:
        colour = _colourise(colour, layer.colourise)
    if layer.invert:
        colour = 1.0 - colour
    if not layer.levels.is_identity:
        colour = _apply_levels(colour, layer.levels)
    return _Planes(colour.contiguous(), planes.alpha)


def _tile_period(t: torch.Tensor, tiling: str) -> torch.Tensor:
    """One period of the tiling: the tile itself, or for ``"mirror"`` a 2×2 block
    ``[[T, flipX T], [flipY T, flipXY T]]`` whose edges all meet seamlessly."""
    if tiling == "plain":
        return t
    top = torch.cat([t, t.flip(2)], dim=2)
    return torch.cat([top, top.flip(1)], dim=1)


def _tile(t: torch.Tensor, tiling: str, x: int, y: int, width: int, height: int) -> torch.Tensor:
    """Fill ``height×width`` with tiles whose origin is at canvas (x, y):
    canvas pixel (X, Y) takes period pixel ((Y − y) mod Ph, (X − x) mod Pw)."""
    period = _tile_period(t, tiling)
    c, ph, pw = period.shape
    oy, ox = (-y) % ph, (-x) % pw
    reps_y, reps_x = -(-(height + oy) // ph), -(-(width + ox) // pw)
    strip = period.repeat(1, 1, reps_x)[:, :, ox : ox + width]  # one period tall, canvas wide
    # Copy the strip down the canvas; the row offset is a view (every channel
    # plane stays contiguous, which is all the blend kernels need).
    rows = _alloc((c, reps_y * ph, width))
    rows.view(c, reps_y, ph, width).copy_(strip.unsqueeze(1).expand(c, reps_y, ph, width))
    return rows[:, oy : oy + height]


def _footprint(layer: Layer, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Canvas rectangle ``(x0, y0, x1, y1)`` the layer covers, or ``None``."""
    if layer.tiling is not None:
        return 0, 0, width, height
    w, h = layer.scaled_size
    x0, y0 = max(layer.x, 0), max(layer.y, 0)
    x1, y1 = min(layer.x + w, width), min(layer.y + h, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


class Renderer:
    """Renders :class:`CanvasState` values with caching.  Thread-safe (one lock).

    Two byte-bounded LRU caches.  Per-layer pixels (``layer_cache_bytes``):

    * ``scaled``   — pixels identity, scale, resample;
    * ``adjusted`` — scaled key + colourise, invert, levels;
    * ``placed``   — adjusted key + tiling, x, y, canvas size (tiled layers only;
      untiled layers blend straight from the adjusted pixels at their offset).

    Composites (``composite_cache_bytes``), keyed by canvas size, background and
    the *blend keys* (adjusted key + tiling, x, y, mode, opacity) of visible layers:

    * ``prefix`` — a premultiplied snapshot of the composite below the most
      recently edited layer, so editing it again re-blends only it and the
      layers above it;
    * ``final`` / ``uint8`` — finished composites, so undo/redo back to a
      rendered state is a lookup.

    Changing opacity or blend mode re-blends from the cached prefix; changing
    levels re-runs that layer's colour stage from its cached scaled pixels.
    The accumulator is a reused workspace, so an edit allocates little.

    ``threads``: torch intra-op threads while rendering (restored afterwards;
    ``None`` leaves torch's setting alone).  The default is 1: the kernels are
    memory-bound, and on a busy machine (a model training next to the
    canvas, other jobs) each multi-threaded torch op can wait a whole
    scheduler slice for its second thread — measured on the 2-core dev box
    under load, a 1024² edit took ~25 ms with 1 thread and 100–250 ms with 2.
    With torch's OpenMP backend the setting is per calling thread, so a render
    worker thread does not affect other threads.
    """

    def __init__(
        self,
        layer_cache_bytes: int = 2 << 30,
        composite_cache_bytes: int = 1 << 30,
        threads: int | None = 1,
    ) -> None:
        self.threads = threads
        self._layers = _ByteLRU(layer_cache_bytes)
        self._composites = _ByteLRU(composite_cache_bytes)
        self._lock = threading.RLock()
        self._last_keys: tuple[Any, ...] = ()
        self._work: tuple[torch.Tensor, torch.Tensor] | None = None
        self.stats = {"final_hits": 0, "prefix_hits": 0, "blends": 0, "prepares": 0}

    def clear(self) -> None:
        """Drop every cached value and the workspace."""
        with self._lock:
            self._layers.clear()
            self._composites.clear()
            self._last_keys = ()
            self._work = None

    # ---- per-layer preparation -------------------------------------------

    def _cached(self, key: tuple[Any, ...], make: Callable[[], _Planes]) -> _Planes:
        value = self._layers.get(key)
        if value is None:
            value = make()
            self._layers.put(key, value, value.nbytes)
        return value

    @staticmethod
    def _adjust_key(layer: Layer) -> tuple[Any, ...]:
        scale = (1.0, None) if layer.scaled_size == layer.pixels.shape[1::-1] else (layer.scale, layer.resample)
        return (_Ident(layer.pixels), *scale, layer.colourise, layer.invert, layer.levels)

    def _prepared(self, layer: Layer, width: int, height: int) -> tuple[_Planes, int, int]:
        """The layer's finished pixels and where their top-left lands on the canvas."""
        adjust_key = self._adjust_key(layer)
        scaled_key = ("scaled", *adjust_key[:3])

        def make_scaled() -> _Planes:
            self.stats["prepares"] += 1
            planes = _to_planes(layer.pixels)
            return _resample(planes, *layer.scaled_size, layer.resample)

        def make_adjusted() -> _Planes:
            if not _has_colour_ops(layer):
                return make_scaled()  # the same pixels: cache them once, under this key
            # keep the scaled pixels too, so colour edits don't resample again
            return _adjust(self._cached(scaled_key, make_scaled), layer)

        adjusted = self._cached(("adjusted", *adjust_key), make_adjusted)
        if layer.tiling is None:
            return adjusted, layer.x, layer.y

        def make_placed() -> _Planes:
            alpha = adjusted.alpha
            return _Planes(
                _tile(adjusted.colour, layer.tiling, layer.x, layer.y, width, height),
                None if alpha is None else _tile(alpha, layer.tiling, layer.x, layer.y, width, height),
            )

        placed_key = ("placed", *adjust_key, layer.tiling, layer.x, layer.y, width, height)
        return self._cached(placed_key, make_placed), 0, 0

    @classmethod
    def _blend_key(cls, layer: Layer) -> tuple[Any, ...]:
        return (*cls._adjust_key(layer), layer.tiling, layer.x, layer.y, layer.blend_mode, layer.opacity)

    # ---- compositing -----------------------------------------------------

    def _blend_layer(self, acc_rgb: torch.Tensor, acc_alpha: torch.Tensor | None, layer: Layer) -> None:
        height, width = acc_rgb.shape[1:]
        box = _footprint(layer, width, height)
        if box is None or layer.opacity <= 0.0:
            return
        planes, px, py = self._prepared(layer, width, height)
        x0, y0, x1, y1 = box
        self.stats["blends"] += 1
        for top, bottom in _bands(y0, y1, x1 - x0):
            src = (slice(None), slice(top - py, bottom - py), slice(x0 - px, x1 - px))
            dst = (slice(None), slice(top, bottom), slice(x0, x1))
            composite_into(
                acc_rgb[dst],
                None if acc_alpha is None else acc_alpha[dst],
                planes.colour[src],
                None if planes.alpha is None else planes.alpha[src],
                layer.blend_mode,
                layer.opacity,
            )

    def _workspace(self, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Reused accumulator planes (premultiplied colour, alpha) for this size."""
        if self._work is None or self._work[0].shape[1:] != (height, width):
            self._work = None  # free the old one first
            self._work = (_alloc((3, height, width)), _alloc((1, height, width)))
        return self._work

    def _start_point(
        self, state: CanvasState, base: tuple[Any, ...], keys: tuple[Any, ...]
    ) -> tuple[int, torch.Tensor, torch.Tensor | None]:
        """Load the deepest cached prefix composite, or the background, into the
        workspace.  Returns the index of the first layer still to blend."""
        rgb, alpha = self._workspace(state.width, state.height)
        for k in range(len(keys), 0, -1):
            snap = self._composites.get(("prefix", base, keys[:k]))
            if snap is not None:
                self.stats["prefix_hits"] += 1
                rgb.copy_(snap[0])
                if snap[1] is None:
                    return k, rgb, None
                alpha.copy_(snap[1])
                return k, rgb, alpha
        if state.background is None:
            rgb.zero_()
            alpha.zero_()
            return 0, rgb, alpha
        r, g, b, a = state.background
        for channel, value in enumerate((r * a, g * a, b * a)):
            rgb[channel].fill_(value)
        if a >= 1.0:
            return 0, rgb, None
        alpha.fill_(a)
        return 0, rgb, alpha

    def _store_prefix(
        self, base: tuple[Any, ...], keys: tuple[Any, ...], rgb: torch.Tensor, alpha: torch.Tensor | None
    ) -> None:
        key = ("prefix", base, keys)
        if self._composites.get(key) is None:
            snap = (_alloc(rgb.shape).copy_(rgb), None if alpha is None else _alloc(alpha.shape).copy_(alpha))
            nbytes = rgb.numel() * 4 + (0 if alpha is None else alpha.numel() * 4)
            self._composites.put(key, snap, nbytes)

    def _covers_opaquely(self, layer: Layer, state: CanvasState) -> bool:
        """True if the layer leaves the composite fully opaque (αs = 1 everywhere)."""
        if layer.opacity < 1.0 or _footprint(layer, state.width, state.height) != (0, 0, state.width, state.height):
            return False
        planes, _, _ = self._prepared(layer, state.width, state.height)
        return planes.alpha is None

    def _final_key(self, state: CanvasState) -> tuple[Any, ...]:
        visible = tuple(layer for layer in state.layers if layer.visible)
        return ((state.width, state.height, state.background), tuple(self._blend_key(layer) for layer in visible))

    def _composite(self, state: CanvasState) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Blend the visible layers into the workspace, starting from the deepest
        cached prefix.  Returns premultiplied colour and alpha (``None`` = opaque)."""
        self._layers.new_pass()
        self._composites.new_pass()
        visible = [layer for layer in state.layers if layer.visible]
        base, keys = self._final_key(state)
        start, acc_rgb, acc_alpha = self._start_point(state, base, keys)
        edited = _common_prefix_len(keys, self._last_keys)
        for i in range(start, len(visible)):
            if i == edited and i > start:
                self._store_prefix(base, keys[:i], acc_rgb, acc_alpha)
            self._blend_layer(acc_rgb, acc_alpha, visible[i])
            if acc_alpha is not None and self._covers_opaquely(visible[i], state):
                acc_alpha = None  # αo = 1 everywhere from here on: take the opaque fast path
        self._last_keys = keys
        return acc_rgb, acc_alpha

    def _render_cached(self, state: CanvasState, kind: str, finish: Callable[..., torch.Tensor]) -> np.ndarray:
        key = (kind, *self._final_key(state))
        cached = self._composites.get(key)
        if cached is not None:
            self.stats["final_hits"] += 1
            self._last_keys = key[2]
            return cached
        out = finish(*self._composite(state)).numpy()
        out.flags.writeable = False
        self._composites.put(key, out, out.nbytes)
        return out

    def render(self, state: CanvasState) -> np.ndarray:
        """The composite of ``state``: ``H×W×4`` float32 straight RGBA in [0, 1], read-only."""
        with self._lock, _torch_threads(self.threads):
            return self._render_cached(state, "final", _to_rgba_float)

    def render_uint8(self, state: CanvasState) -> np.ndarray:
        """The composite as ``H×W×4`` uint8 straight RGBA, read-only; identical to
        ``to_uint8(render(state))`` but made straight from the accumulator."""
        with self._lock, _torch_threads(self.threads):
            return self._render_cached(state, "uint8", _to_rgba_uint8)

    def render_layer(self, layer: Layer, width: int, height: int, *, apply_opacity: bool = False) -> np.ndarray:
        """The layer alone on a transparent ``height×width`` canvas (straight RGBA float32)."""
        with self._lock, _torch_threads(self.threads):
            out = _alloc((height, width, 4)).zero_()
            box = _footprint(layer, width, height)
            if box is None:
                return out.numpy()
            planes, px, py = self._prepared(layer, width, height)
            x0, y0, x1, y1 = box
            src = (slice(None), slice(y0 - py, y1 - py), slice(x0 - px, x1 - px))
            region = out[y0:y1, x0:x1].permute(2, 0, 1)  # channel-first view
            region[:3] = planes.colour[src]
            region[3:] = 1.0 if planes.alpha is None else planes.alpha[src]
            if apply_opacity:
                region[3:] *= layer.opacity
            return out.numpy()


_HUGE_PAGE_MIN_BYTES = 32 << 20
_NUMPY_DTYPES = {torch.float32: np.float32, torch.uint8: np.uint8}


def _alloc(shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised tensor; very large ones are backed by transparent huge pages where offered.

    glibc serves allocations above 32 MiB with a fresh ``mmap`` every time, so
    each 4 KiB page of a 4096² buffer (192–256 MiB) page-faults on first touch
    — on the dev VM that was ~0.75 ms per MiB, a large share of a 4096²
    re-render.  An anonymous mapping advised ``MADV_HUGEPAGE`` faults per
    2 MiB instead (measured: 4096² edits ~25–30 % faster).  Smaller buffers
    use ``torch.empty``: glibc recycles those without faults, and huge pages
    measured slower there.  The mapping is released when the last tensor /
    array viewing it is garbage-collected.
    """
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if nbytes < _HUGE_PAGE_MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE") or dtype not in _NUMPY_DTYPES:
        return torch.empty(tuple(shape), dtype=dtype)
    try:
        buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        buffer.madvise(mmap.MADV_HUGEPAGE)
    except (OSError, ValueError):
        return torch.empty(tuple(shape), dtype=dtype)
    array = np.frombuffer(buffer, dtype=_NUMPY_DTYPES[dtype]).reshape(tuple(shape))
    return torch.from_numpy(array)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads, then restore the setting."""
    previous = torch.get_num_threads()
    if threads is None or threads == previous:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _bands(y0: int, y1: int, width: int) -> Iterator[tuple[int, int]]:
    """Row ranges of about :data:`BAND_PIXELS` pixels covering ``[y0, y1)``.

    Working band by band keeps the kernels' temporaries small: they stay in CPU
    cache and are recycled by the allocator instead of being fresh,
    page-faulting allocations the size of the whole layer.
    """
    step = max(1, BAND_PIXELS // max(1, width))
    for top in range(y0, y1, step):
        yield top, min(top + step, y1)


def _straight_band(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Straight colour of a band of premultiplied planes, clamped to [0, 1]."""
    if alpha is None:
        return rgb.clamp(0.0, 1.0)
    return torch.div(rgb, alpha.clamp(min=TINY_ALPHA)).clamp_(0.0, 1.0)  # colour is 0 where α is 0


def _to_rgba_float(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Premultiplied channel-first planes -> straight ``H×W×4`` float32 RGBA in [0, 1]."""
    height, width = rgb.shape[1:]
    out = _alloc((height, width, 4))
    view = out.permute(2, 0, 1)
    for top, bottom in _bands(0, height, width):
        rows = slice(top, bottom)
        view[:3, rows] = _straight_band(rgb[:, rows], None if alpha is None else alpha[:, rows])
        view[3:, rows] = 1.0 if alpha is None else alpha[:, rows].clamp(0.0, 1.0)
    return out


def _to_rgba_uint8(rgb: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Like :func:`_to_rgba_float` then :func:`studio.images.to_uint8`, bit for bit,
    without the full-size float intermediate."""
    height, width = rgb.shape[1:]
    out = _alloc((height, width, 4), torch.uint8)
    view = out.permute(2, 0, 1)
    for top, bottom in _bands(0, height, width):
        rows = slice(top, bottom)
        view[:3, rows] = _straight_band(rgb[:, rows], None if alpha is None else alpha[:, rows]).mul_(255.0).add_(0.5)
        view[3:, rows] = 255 if alpha is None else alpha[:, rows].clamp(0.0, 1.0).mul_(255.0).add_(0.5)
    return out


def _common_prefix_len(a: Sequence[Any], b: Sequence[Any]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
