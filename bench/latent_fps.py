#!/usr/bin/env python3
"""Benchmark the Latent tab's live decode: frames per second while a slider is dragged.

    python bench/latent_fps.py                    # 64×64 RGB, the factory's VAE, 300 slider moves
    python bench/latent_fps.py --channels 1 --moves 600 --threads 1
    python bench/latent_fps.py --kind hybrid      # the hybrid's autoencoder instead

The model comes from `models.factory.build` exactly as the studio makes it (latent 32, the
default width for 64 px), trained one epoch on a small generated set (decode speed does not
depend on training). A `LatentExplorer` is made over it (a private copy, the set encoded, the
sliders ordered); then one dimension — the first slider's — is moved 300 times across its
range, as a drag would, each move decoded to a uint8 image by `LatentExplorer.set_dim`
(the whole path a slider event takes, minus painting). A few moves are made first, not timed.
Target (issue 8): ≥ 30 frames per second at 64×64 on the CPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.factory import Options, build  # noqa: E402
from studio.latent import LatentExplorer  # noqa: E402

TARGET_FPS = 30.0


def make_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """n soft discs on a gradient, uint8 [n, C, size, size]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, channels, size, size), np.uint8)
    for i in range(n):
        cx, cy, r = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75), rng.uniform(0.08, 0.3)
        alpha = 1 / (1 + np.exp((np.hypot(xx - cx, yy - cy) - r) * size / 1.5))
        colour = rng.uniform(0, 1, (channels, 1, 1)).astype(np.float32)
        out[i] = np.clip((0.2 * (xx + yy) + colour * alpha) * 255, 0, 255).astype(np.uint8)
    return torch.from_numpy(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["vae", "hybrid"], default="vae")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--channels", type=int, choices=[1, 3], default=3)
    ap.add_argument("--n", type=int, default=128, help="images in the set (default 128)")
    ap.add_argument("--moves", type=int, default=300, help="slider moves timed (default 300)")
    ap.add_argument("--repeats", type=int, default=3, help="timed drags; the median is reported (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = make_images(args.n, args.channels, args.size)
    extra = {"rbm_epochs": 1} if args.kind == "hybrid" else {}
    tr = build(Options(kind=args.kind, image_shape=(args.channels, args.size, args.size), epochs=1, seed=0,
                       frame_every=0, extra=extra), data, device="cpu")
    for _ in tr.run():
        pass
    explorer = LatentExplorer(tr.model, data)
    dim = explorer.order[0]
    low, high = explorer.slider_range(dim)
    values = np.concatenate([np.linspace(low, high, args.moves // 2), np.linspace(high, low, args.moves - args.moves // 2)])

    for v in values[:10]:  # warm-up
        explorer.set_dim(dim, float(v))
    rates = []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        for v in values:
            image = explorer.set_dim(dim, float(v))
        rates.append(len(values) / (time.perf_counter() - t0))
    fps = statistics.median(rates)
    print(f"{args.kind} {args.channels}×{args.size}×{args.size}, latent {explorer.latent_dim}, "
          f"torch threads {torch.get_num_threads()}: {len(values)} slider moves × {len(rates)} drags, "
          f"image {image.shape} {image.dtype}")
    print(f"decode: {fps:.0f} frames/s (median; runs {', '.join(f'{r:.0f}' for r in rates)}), "
          f"{1000 / fps:.2f} ms/frame — target ≥ {TARGET_FPS:.0f}: {'PASS' if fps >= TARGET_FPS else 'FAIL'}")
    return 0 if fps >= TARGET_FPS else 1


if __name__ == "__main__":
    sys.exit(main())
