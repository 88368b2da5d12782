#!/usr/bin/env python3
"""Make Harmonium's built-in demo set: 120 small procedural pictures (64×64 PNG).

    python resources/demo/make_demo.py          # (re)writes resources/demo/*.png

Six families, twenty each: rings, stripes, spirals, flowers, blobs and glyphs.  Each is a
bright motif on a dark ground in one of a few hand-picked colour pairs, so the set looks good
in the studio in colour and still reads as clean, high-contrast shapes when a tiny binary RBM
sees it at 28×28 grayscale.  Everything is drawn from a fixed seed: running the script again
gives byte-identical files.  The images are generated, so they carry no third-party rights
(CC0 / public domain).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIDE = 64  # written size
SS = 4  # supersampling factor for smooth edges
N_PER_FAMILY = 20
SEED = 20240601

# (ground, motif) colour pairs: dark grounds (luma < 60), bright motifs (luma > 170).
PALETTES: list[tuple[tuple[int, int, int], tuple[int, int, int]]] = [
    ((18, 24, 56), (255, 196, 92)),    # midnight / amber
    ((48, 16, 48), (255, 150, 130)),   # plum / coral
    ((12, 44, 36), (170, 240, 200)),   # forest / mint
    ((28, 28, 32), (240, 232, 214)),   # charcoal / ivory
    ((24, 18, 70), (120, 228, 255)),   # indigo / cyan
    ((60, 12, 24), (250, 214, 110)),   # wine / gold
]

Mask = np.ndarray  # float coverage in [0, 1], shape (SIDE*SS, SIDE*SS)


def _grid(rng: np.random.Generator, jitter: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [-1, 1] around a slightly jittered centre."""
    n = SIDE * SS
    t = (np.arange(n) + 0.5) / n * 2 - 1
    cx, cy = rng.uniform(-jitter, jitter, 2)
    return np.meshgrid(t - cx, t - cy)


def rings(rng: np.random.Generator) -> Mask:
    x, y = _grid(rng)
    r = np.hypot(x, y)
    count = rng.integers(2, 5)
    radius = rng.uniform(0.7, 0.9)
    width = rng.uniform(0.3, 0.45)
    phase = (r / radius * count) % 1.0
    return ((phase < width) & (r < radius)).astype(float)


def stripes(rng: np.random.Generator) -> Mask:
    x, y = _grid(rng, jitter=0.0)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.35, 0.6)
    u = x * np.cos(angle) + y * np.sin(angle)
    band = ((u / period + rng.uniform(0, 1)) % 1.0) < 0.45
    frame = np.maximum(np.abs(x), np.abs(y)) < rng.uniform(0.7, 0.85)
    return (band & frame).astype(float)


def spirals(rng: np.random.Generator) -> Mask:
    x, y = _grid(rng)
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    arms = rng.integers(1, 3)
    pitch = rng.uniform(0.28, 0.4)
    turn = rng.choice([-1, 1])
    phase = (r / pitch - turn * arms * theta / (2 * np.pi) + rng.uniform(0, 1)) % 1.0
    return ((phase < 0.45) & (r < 0.88) & (r > 0.06)).astype(float)


def flowers(rng: np.random.Generator) -> Mask:
    x, y = _grid(rng)
    r, theta = np.hypot(x, y), np.arctan2(y, x)
    petals = rng.integers(3, 8)
    size = rng.uniform(0.65, 0.88)
    spin = rng.uniform(0, 2 * np.pi)
    edge = size * (0.35 + 0.65 * np.abs(np.cos(petals * (theta + spin) / 2)))
    heart = r < size * rng.uniform(0.12, 0.2)
    return ((r < edge) & ~heart | (r < size * 0.08)).astype(float)


def blobs(rng: np.random.Generator) -> Mask:
    x, y = _grid(rng, jitter=0.0)
    field = np.zeros_like(x)
    for _ in range(rng.integers(2, 5)):
        cx, cy = rng.uniform(-0.45, 0.45, 2)
        s = rng.uniform(0.16, 0.3)
        field += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    return (field > 0.55).astype(float)


def glyphs(rng: np.random.Generator) -> Mask:
    n = SIDE * SS
    im = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(im)
    nodes = [(int(n * (0.22 + 0.28 * i)), int(n * (0.22 + 0.28 * j))) for j in range(3) for i in range(3)]
    width = int(n * rng.uniform(0.07, 0.1))
    path = list(rng.choice(9, size=int(rng.integers(3, 6)), replace=False))
    points = [nodes[k] for k in path]
    draw.line(points, fill=255, width=width, joint="curve")
    for px, py in (points[0], points[-1]):
        draw.ellipse((px - width // 2, py - width // 2, px + width // 2, py + width // 2), fill=255)
    if rng.random() < 0.5:  # a dot, like a diacritic
        px, py = nodes[int(rng.integers(9))]
        d = width
        draw.ellipse((px - d, py - d, px + d, py + d), outline=255, width=max(2, width // 2))
    return np.asarray(im, dtype=float) / 255


FAMILIES: dict[str, Callable[[np.random.Generator], Mask]] = {
    "rings": rings, "stripes": stripes, "spirals": spirals,
    "flowers": flowers, "blobs": blobs, "glyphs": glyphs,
}


def render(mask: Mask, ground: tuple[int, int, int], motif: tuple[int, int, int]) -> Image.Image:
    """Colour the supersampled coverage mask and shrink it to SIDE×SIDE (antialiased)."""
    cov = Image.fromarray((np.clip(mask, 0, 1) * 255).astype(np.uint8)).resize(
        (SIDE, SIDE), Image.Resampling.BOX)
    a = np.asarray(cov, dtype=float)[..., None] / 255
    rgb = np.asarray(ground, float) * (1 - a) + np.asarray(motif, float) * a
    return Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB")


def main() -> None:
    for old in HERE.glob("*.png"):
        old.unlink()
    rng = np.random.default_rng(SEED)
    for name, draw in FAMILIES.items():
        for i in range(N_PER_FAMILY):
            ground, motif = PALETTES[int(rng.integers(len(PALETTES)))]
            img = render(draw(rng), ground, motif)
            # A 32-colour palette keeps the files tiny; the antialiasing survives.
            img = img.quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            img.save(HERE / f"{name}_{i:02d}.png", optimize=True)
    total = sum(p.stat().st_size for p in HERE.glob("*.png"))
    print(f"wrote {len(FAMILIES) * N_PER_FAMILY} images to {HERE} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
