"""What loading takes and gives: :class:`Preprocess`, :class:`ImageSet`, :class:`ImageInfo`,
:class:`Rejected`, :class:`LoadCancelled`.  See :mod:`studio.dataset`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from PIL import Image


CROPS: tuple[str, ...] = ("center", "fit", "stretch")
BINARIZE: tuple[str | None, ...] = (None, "threshold", "dither")
MIN_TARGET, MAX_TARGET = 16, 128
#: The largest side a texture's images keep (``Preprocess.native``): a photo's middle square at
#: its own grain, downscaled only beyond this (1,024² px: 1 MB a grey image, 3 MB a colour one).
MAX_NATIVE = 1024


ProgressFn = Callable[[int, int], None]


@dataclass
class Preprocess:
    """How every source image becomes one training image.  Stored in checkpoints as a dict.

    Attributes:
        size: output side in pixels (square), 16..128.
        crop: ``"center"`` (scale the short side to ``size``, crop the middle), ``"fit"``
            (scale the long side to ``size``, pad with ``background``) or ``"stretch"``.
        color: False → 1 channel (grayscale), True → 3 channels (RGB).
        background: RGB colour transparent pixels are composited on, and fit padding colour.
        binarize: None, ``"threshold"`` (pixel ≥ threshold·255 → 255, else 0) or ``"dither"``.
        threshold: the cut for ``binarize="threshold"``, in 0..1.
        min_size: sources smaller than this on either side are refused (see module docs).
        max_pixels: sources whose header claims more pixels are refused before decoding.
        native: the texture kind's images (``studio.dataset.texture``): ``size`` may go up to
            ``MAX_NATIVE`` and is chosen from the photos' own sizes, so each is its middle
            square at (close to) its own grain, never upscaled; False: every kind's ``size``
            up to ``MAX_TARGET``.
    """

    size: int = 28
    crop: str = "center"
    color: bool = False
    background: tuple[int, int, int] = (255, 255, 255)
    binarize: str | None = None
    threshold: float = 0.5
    min_size: int = 8
    max_pixels: int = 64_000_000
    native: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ValueError(f"size must be a whole number of pixels, got {self.size!r}")
        if not isinstance(self.native, bool):
            raise ValueError(f"native must be true or false, got {self.native!r}")
        top = MAX_NATIVE if self.native else MAX_TARGET
        if not MIN_TARGET <= self.size <= top:
            raise ValueError(f"size must be between {MIN_TARGET} and {top} pixels, got {self.size}")
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}; got {self.crop!r}")
        if self.native and self.crop != "center":
            raise ValueError(f"a texture's images are their middle squares (crop 'center'), not {self.crop!r}")
        if self.binarize not in BINARIZE:
            raise ValueError(f"binarize must be None, 'threshold' or 'dither'; got {self.binarize!r}")
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold!r}")
        self.threshold = float(self.threshold)
        self.color = bool(self.color)
        bg = tuple(self.background)
        if len(bg) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in bg):
            raise ValueError(f"background must be three integers 0..255, got {self.background!r}")
        self.background = bg  # type: ignore[assignment]  # lists from JSON become tuples
        if not isinstance(self.min_size, int) or self.min_size < 1:
            raise ValueError(f"min_size must be a positive whole number, got {self.min_size!r}")
        if not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ValueError(f"max_pixels must be a positive whole number, got {self.max_pixels!r}")

    @property
    def channels(self) -> int:
        """1 for grayscale, 3 for RGB."""
        return 3 if self.color else 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (background becomes a list)."""
        d = asdict(self)
        d["background"] = list(self.background)
        if not self.native:  # the dicts (checkpoints, projects) of every other kind stay as they were
            del d["native"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        """Inverse of :meth:`to_dict`.  Missing keys take defaults; unknown keys (written by a
        newer Harmonium) are ignored so old code can still open new checkpoints."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        """One line for people, e.g. ``28×28 grayscale, center crop``."""
        parts = [f"{self.size}×{self.size}", "RGB" if self.color else "grayscale",
                 "the middle square, never upscaled" if self.native else f"{self.crop} crop"]
        if self.binarize:
            parts.append(f"binarized ({self.binarize})")
        return ", ".join(parts)


@dataclass
class Rejected:
    """A file (or folder) that could not be used, and why, in words."""

    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an accepted source file was, and anything notable done to it."""

    format: str
    mode: str
    width: int
    height: int
    notes: tuple[str, ...] = ()


@dataclass
class ImageSet:
    """The loaded set: ``images[i]`` came from ``paths[i]``.

    ``images`` is uint8, C-contiguous, shape ``[N, C, H, W]`` with C = 1 (gray) or 3 (RGB).
    """

    images: np.ndarray
    paths: list[str]
    rejected: list[Rejected]
    preprocess: Preprocess
    info: list[ImageInfo] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:  # the default would print every path
        return (f"ImageSet({len(self)} images {tuple(self.images.shape)} uint8, "
                f"{len(self.rejected)} rejected, {len(self.ignored)} ignored, "
                f"{self.preprocess.describe()})")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return (c, h, w)

    def as_float(self, indices: Sequence[int] | np.ndarray | slice | None = None) -> np.ndarray:
        """float32 in [0, 1] for the given images (a batch); ``None`` means all of them
        (that is a full float copy: 4× the uint8 size — prefer batches for big sets)."""
        batch = self.images if indices is None else self.images[indices]
        return batch.astype(np.float32) * np.float32(1 / 255)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as H×W (gray) or H×W×3 (RGB) uint8, handy for thumbnails."""
        a = self.images[i]
        return a[0] if a.shape[0] == 1 else np.ascontiguousarray(a.transpose(1, 2, 0))

    def pil_image(self, i: int) -> Image.Image:
        """Image ``i`` as a Pillow image (mode L or RGB)."""
        return Image.fromarray(self.image(i))


class LoadCancelled(Exception):
    """Raised by :func:`load_images` when its ``cancel`` event is set.  No partial set is
    returned; ``done``/``total`` say how far it got."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"loading cancelled after {done} of {total} files")
        self.done = done
        self.total = total


class _Refused(Exception):
    """A per-file problem whose reason is already worded for people."""
