#!/usr/bin/env python3
"""How many torch threads should a training job take? Measured, in the three situations the
studio meets: a job alone, two jobs at once, and a job while the Dreams tab's sampler runs.

    python bench/threads.py                # 80 timed steps per run, 1 and 2 threads, ~35 s on 2 cores
    python bench/threads.py --steps 40 --repeats 1

The jobs are the studio's VAE and hybrid (autoencoder + RBM) as `models.factory.build` makes
them, on 100 faces at 32 px (scikit-image's `lfw_subset`, grey, upscaled from 25 px; the
digits of scikit-learn when scikit-image is absent), seeded. Each job runs in its own thread
(as the studio's training workers do) with 1 or 2 torch threads (`TrainConfig.threads`); 5
warm-up steps, then `--steps` steps are timed. The sampler is a `studio.dreams.DreamRunner`
over a binary RBM (1,024 visible × 256 hidden, 64 chains, the Dreams defaults) at up to 75
frames/s, as the Dreams tab runs it. Each figure is the best of `--repeats` runs (seconds per
`--steps` steps): the least disturbed by the other processes on the machine, whose load is
printed first (the 1-minute load average; the machine is shared).

The last lines print what the policy gives each situation on this machine. The policy
(`models.device.thread_rule`) was chosen from this table; see its docstring for the figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.device import thread_rule, usable_cores  # noqa: E402
from models.factory import Options, build  # noqa: E402

KINDS = ("vae", "hybrid")
WARMUP = 5


def faces(n: int = 100, size: int = 32) -> tuple[torch.Tensor, str]:
    """uint8 [n, 1, size, size] real images: LFW faces, else the 8×8 digits (upscaled)."""
    try:
        from skimage.data import lfw_subset

        x, what = lfw_subset()[:n], "lfw_subset faces"  # the first 100 are faces, 25×25 in [0, 1]
    except Exception:  # noqa: BLE001 - scikit-image missing or its data not at hand
        from sklearn.datasets import load_digits

        x, what = load_digits().images[:n] / 16.0, "scikit-learn digits"
    t = torch.from_numpy(np.asarray(x, np.float32))[:, None]
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return (t.clamp(0, 1) * 255).round().to(torch.uint8), what


def make_job(kind: str, data: torch.Tensor, threads: int, seed: int):
    trainer = build(Options(kind=kind, image_shape=tuple(data.shape[1:]), epochs=10_000, seed=seed, frame_every=0), data)
    trainer.config.threads = threads
    return trainer


def time_steps(trainer, steps: int, start: threading.Barrier | None, out: dict, key) -> None:
    """Warm up, wait for the others, then time `steps` optimisation steps (in this thread)."""
    run = trainer.run()
    try:
        while trainer.step < WARMUP:
            next(run)
        if start is not None:
            start.wait()
        t0, first = time.perf_counter(), trainer.step
        while trainer.step < first + steps:
            next(run)
        out[key] = time.perf_counter() - t0
    finally:
        run.close()


def in_threads(jobs: list, steps: int) -> list[float]:
    """Time each job's steps, all jobs side by side, each in its own thread."""
    out: dict = {}
    start = threading.Barrier(len(jobs))
    ts = [threading.Thread(target=time_steps, args=(j, steps, start, out, i), name=f"bench-job-{i}") for i, j in enumerate(jobs)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return [out[i] for i in range(len(jobs))]


def sampler():
    """A Dreams-tab sampler over a binary RBM, running at up to 75 frames/s in its thread."""
    from models.rbm import BernoulliRBM, RBMConfig
    from studio.dreams import DreamRunner, DreamSession

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rbm = BernoulliRBM(RBMConfig(1024, 256, (1, 32, 32)))
    runner = DreamRunner(DreamSession.from_model(rbm, {}, seed=0), max_fps=75.0).start()
    deadline = time.monotonic() + 10
    while runner.frames < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    return runner


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=80, help="timed steps per run (default 80)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per figure, the best kept (default 2)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads per job to compare")
    args = ap.parse_args()

    data, what = faces()
    cores = usable_cores()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{cores} usable cores, load average {load:.2f} at the start; torch {torch.__version__}; "
          f"{len(data)} {what} at {data.shape[-1]} px; seconds per {args.steps} steps, best of {args.repeats}")
    rows: list[tuple[str, str, int, float]] = []
    fps: dict[int, float] = {}  # the sampler's frames per second beside jobs of each thread count
    t_start = time.perf_counter()

    def best(fn) -> list[float]:
        runs = [fn() for _ in range(args.repeats)]
        return [min(r[i] for r in runs) for i in range(len(runs[0]))]

    for threads in args.threads:
        for kind in KINDS:
            (s,) = best(lambda: in_threads([make_job(kind, data, threads, 0)], args.steps))
            rows.append(("alone", kind, threads, s))
        a, b = best(lambda: in_threads([make_job(k, data, threads, 0) for k in KINDS], args.steps))
        rows += [("two jobs", "vae", threads, a), ("two jobs", "hybrid", threads, b)]
        runner = sampler()
        f0, t0 = runner.frames, time.perf_counter()
        try:
            for kind in KINDS:
                (s,) = best(lambda: in_threads([make_job(kind, data, threads, 0)], args.steps))
                rows.append(("with the sampler", kind, threads, s))
            fps[threads] = (runner.frames - f0) / (time.perf_counter() - t0)
        finally:
            runner.stop()

    print(f"\n{'situation':<18}{'job':<8}" + "".join(f"{f'{t} thread' + ('s' if t > 1 else ''):>12}" for t in args.threads))
    for situation in ("alone", "two jobs", "with the sampler"):
        for kind in KINDS:
            cells = [next(s for (sit, k, t, s) in rows if sit == situation and k == kind and t == th) for th in args.threads]
            print(f"{situation:<18}{kind:<8}" + "".join(f"{c:>12.2f}" for c in cells))
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("\nthe sampler beside the jobs: " + ", ".join(f"{fps[t]:.0f} frames/s with {t}-thread jobs" for t in args.threads)
          + f"; load average {load_end:.2f} at the end; {time.perf_counter() - t_start:.0f} s in all")
    print(f"policy here (models.device.thread_rule, {cores} cores, a core left for the UI or the caller): "
          f"a job alone {thread_rule(cores, jobs=1, busy=0)}, two jobs {thread_rule(cores, jobs=2, busy=0)} each, "
          f"a job beside a sampler {thread_rule(cores, jobs=1, busy=1)}")
    ratio = statistics.median(
        next(s for (sit, k, t, s) in rows if sit == sit0 and k == k0 and t == max(args.threads))
        / next(s for (sit, k, t, s) in rows if sit == sit0 and k == k0 and t == min(args.threads))
        for sit0 in ("two jobs", "with the sampler") for k0 in KINDS)
    print(f"with another thread busy, {max(args.threads)} threads take {ratio:.2f}× the time of {min(args.threads)} (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
