"""Pixels without Qt or torch: the one float → uint8 conversion and the one mosaic.

Every part of the studio that turns model output into bytes (the training panel's frames, the
Dreams tab, the CLI's ``harmonium sample``, the canvas's layer sources and exports) goes through
:func:`to_uint8` / :func:`images_to_uint8`, and every grid of tiles is laid out by
:func:`mosaic` at the places :class:`GridLayout` says, so a grid on screen, in a PNG and on the
canvas is the same, pixel for pixel.

Conversion: floats are clamped to [0, 1], scaled by 255 and rounded half up, in float32 (so
``0.5`` is 128); NaN becomes 0, +inf 255, -inf 0. ``uint8`` passes through untouched.

Plain numpy, so ``studio.jobs`` and the CLI's light commands import it without torch; a torch
tensor is accepted too (it is moved to the CPU and read as an array).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["GAP_FILL", "GridLayout", "images_to_uint8", "mosaic", "tile", "to_uint8"]

GAP_FILL = 32  # grey of the gaps between tiles (uint8)


def _as_array(pixels: Any) -> np.ndarray:
    """An ndarray view of ``pixels`` (a torch tensor is detached and brought to the CPU)."""
    if isinstance(pixels, np.ndarray):
        return pixels
    detach = getattr(pixels, "detach", None)
    if detach is not None:  # a torch tensor, without importing torch here
        return detach().to("cpu").numpy()
    return np.asarray(pixels)


def to_uint8(pixels: Any) -> np.ndarray:
    """Float pixels in [0, 1] (any shape) -> uint8 [0, 255], round half up, clamped, NaN as 0;
    uint8 is returned as it is (the same array)."""
    a = _as_array(pixels)
    if a.dtype == np.uint8:
        return a
    out = np.fmax(a, np.float32(0.0), dtype=np.float32)  # fmax/fmin drop NaN: NaN -> 0
    np.fmin(out, np.float32(1.0), out=out)
    out *= np.float32(255.0)
    out += np.float32(0.5)
    return out.astype(np.uint8)


def images_to_uint8(images: Any) -> np.ndarray:
    """Images ``[n, C, H, W]`` (float in [0, 1], or uint8; array or tensor) -> read-only uint8
    ``[n, H, W, C]``, the layout every frame, mosaic and PNG of the studio uses."""
    a = _as_array(images)
    if a.ndim != 4:
        raise ValueError(f"expected images [n, C, H, W], got shape {tuple(a.shape)}")
    out = np.ascontiguousarray(to_uint8(a).transpose(0, 2, 3, 1))
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class GridLayout:
    """Where each tile lies in a :func:`mosaic`: ``cols`` tiles per row (0: about square),
    ``pad`` pixels of gap around and between the tiles."""

    n: int
    height: int
    width: int
    pad: int = 1
    cols: int = 0  # 0: ceil(sqrt(n))

    def __post_init__(self) -> None:
        if self.cols <= 0:
            object.__setattr__(self, "cols", max(1, math.ceil(math.sqrt(self.n))))

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.n / self.cols))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the mosaic in pixels."""
        return (self.rows * (self.height + self.pad) + self.pad, self.cols * (self.width + self.pad) + self.pad)

    def origin(self, chain: int) -> tuple[int, int]:
        """(y, x) of the tile's top-left pixel."""
        r, q = divmod(int(chain), self.cols)
        return self.pad + r * (self.height + self.pad), self.pad + q * (self.width + self.pad)

    def chain_at(self, y: float, x: float) -> tuple[int, float, float] | None:
        """The tile under mosaic point (y, x) and the point in the tile's pixels, or None
        over a gap or outside."""
        cy, ry = divmod(y - self.pad, self.height + self.pad)
        cx, rx = divmod(x - self.pad, self.width + self.pad)
        if cy < 0 or cx < 0 or cx >= self.cols or ry >= self.height or rx >= self.width:
            return None
        chain = int(cy) * self.cols + int(cx)
        if chain >= self.n:
            return None
        return chain, float(ry), float(rx)


def mosaic(pixels: Any, pad: int = 1, fill: float | Sequence[float] | None = None, cols: int = 0) -> np.ndarray:
    """Tiles ``[n, H, W, C]`` -> one ``[rows·(H+pad)+pad, cols·(W+pad)+pad, C]`` mosaic of the
    same dtype, laid out as :class:`GridLayout` says, with ``fill`` in the gaps: a number, or
    one per channel (e.g. an opaque alpha); None: :data:`GAP_FILL` grey (for floats, 32/255).
    No Python loop over the tiles."""
    pixels = np.asarray(pixels)
    n, h, w, c = pixels.shape
    if fill is None:
        fill = GAP_FILL if pixels.dtype == np.uint8 else GAP_FILL / 255.0
    gap = np.asarray(fill, dtype=pixels.dtype)
    lay = GridLayout(n, h, w, pad, cols)
    tiles = np.empty((lay.rows * lay.cols, h + pad, w + pad, c), pixels.dtype)
    tiles[...] = gap
    tiles[:n, :h, :w] = pixels
    grid = tiles.reshape(lay.rows, lay.cols, h + pad, w + pad, c).transpose(0, 2, 1, 3, 4)
    out = np.empty((*lay.shape, c), pixels.dtype)
    out[...] = gap
    out[pad:, pad:] = grid.reshape(lay.rows * (h + pad), lay.cols * (w + pad), c)
    return out


def tile(images: Any, cols: int = 0, pad: int = 1, fill: float | None = None) -> np.ndarray:
    """Images in the models' layout ``[n, C, H, W]`` (any dtype) -> their :func:`mosaic`:
    ``[Hm, Wm]`` for gray (C = 1), else ``[Hm, Wm, C]``, of the same dtype."""
    m = mosaic(_as_array(images).transpose(0, 2, 3, 1), pad, fill, cols)
    return m[..., 0] if m.shape[-1] == 1 else m
