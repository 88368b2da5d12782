#!/usr/bin/env python3
"""Benchmark image ingestion: N generated JPEGs loaded at SIZE×SIZE RGB.

    python bench/ingest.py                      # 10,000 × 256×256 JPEGs → 64×64 RGB
    python bench/ingest.py --n 500              # quick smoke run
    python bench/ingest.py --dir /tmp/ingest    # keep (and reuse) the generated files

Generation is excluded from the measurement.  Reported: wall seconds of `load_images`, the
uint8 array size, and the peak extra resident memory (RSS growth over the baseline taken just
before loading, sampled from /proc/self/status every 2 ms, plus VmHWM after resetting it where
the kernel allows).  Targets (issue 3): ≤ 20 s and ≤ 300 MB extra on a 2-core machine.
The generated files sit in the OS page cache, so this measures decoding, not a cold disk.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from studio.dataset import Preprocess, default_workers, load_images  # noqa: E402

TARGET_SECONDS = 20.0
TARGET_EXTRA_MB = 300.0


def make_jpeg(args: tuple[str, int, int]) -> None:
    """One photo-like JPEG: smooth colour field + a few shapes + grain, deterministic by index."""
    path, index, side = args
    rng = np.random.default_rng(index)
    base = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
        (side, side), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(3):
        x0, y0 = rng.integers(0, side, 2)
        r = int(rng.integers(side // 16, side // 4))
        draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    pixels = np.asarray(base, dtype=np.int16) + rng.integers(-10, 11, (side, side, 3), dtype=np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=88)


def generate(folder: Path, n: int, side: int) -> float:
    """Write n JPEGs (skipping ones already there); returns seconds taken."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = [(str(folder / f"img_{i:05d}.jpg"), i, side) for i in range(n)
            if not (folder / f"img_{i:05d}.jpg").exists()]
    t0 = time.perf_counter()
    if todo:
        with Pool(os.cpu_count() or 1) as pool:
            pool.map(make_jpeg, todo, chunksize=64)
    return time.perf_counter() - t0


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler(threading.Thread):
    """Tracks the maximum VmRSS while running."""

    def __init__(self, interval: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_kb = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        self.peak_kb = max(self.peak_kb, _status_kb("VmRSS"))
        return self.peak_kb


def measure(folder: Path, size: int, workers: int | None, color: bool) -> None:
    pp = Preprocess(size=size, color=color, crop="center")
    ticks = [0]

    def progress(done: int, total: int) -> None:
        ticks[0] += 1

    # Warm up imports/codecs on one file so the baseline includes them.
    load_images([next(folder.glob("*.jpg"))], pp, workers=1)
    hwm_ok = _reset_hwm()
    base_kb = _status_kb("VmRSS")
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    result = load_images([folder], pp, progress=progress, workers=workers)
    seconds = time.perf_counter() - t0
    peak_kb = sampler.stop()
    if hwm_ok:
        peak_kb = max(peak_kb, _status_kb("VmHWM"))
    extra_mb = (peak_kb - base_kb) / 1024
    array_mb = result.images.nbytes / 2**20
    n = len(result)

    print(f"loaded     {n} images ({len(result.rejected)} rejected) → array {tuple(result.images.shape)} uint8")
    print(f"workers    {workers or default_workers()} threads on {os.cpu_count()} cores")
    print(f"time       {seconds:.2f} s  ({n / seconds:.0f} images/s)   target ≤ {TARGET_SECONDS:.0f} s"
          f"  {'OK' if seconds <= TARGET_SECONDS else 'MISSED'}")
    print(f"array      {array_mb:.1f} MiB")
    print(f"peak extra {extra_mb:.1f} MiB RSS over baseline ({base_kb / 1024:.0f} MiB)   target ≤ "
          f"{TARGET_EXTRA_MB:.0f} MB  {'OK' if extra_mb <= TARGET_EXTRA_MB else 'MISSED'}"
          f"   (overhead beyond the array: {extra_mb - array_mb:.1f} MiB)")
    print(f"progress   {ticks[0]} callbacks")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="number of JPEGs (default 10000)")
    ap.add_argument("--size", type=int, default=64, help="target side in pixels (default 64)")
    ap.add_argument("--source-size", type=int, default=256, help="generated JPEG side (default 256)")
    ap.add_argument("--workers", type=int, default=None, help="decode threads (default: one per core)")
    ap.add_argument("--gray", action="store_true", help="load grayscale instead of RGB")
    ap.add_argument("--dir", type=Path, default=None, help="keep generated files here and reuse them")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="harmonium-ingest-") as tmp:
        folder = args.dir or Path(tmp)
        gen = generate(folder, args.n, args.source_size)
        disk_mb = sum(p.stat().st_size for p in folder.glob("*.jpg")) / 2**20
        print(f"generated  {args.n} × {args.source_size}×{args.source_size} JPEGs in {gen:.1f} s "
              f"({disk_mb:.0f} MiB on disk, not measured)")
        measure(folder, args.size, args.workers, color=not args.gray)
    return 0


if __name__ == "__main__":
    sys.exit(main())
