"""Every model kind's training, tempered sampling and scoring on a GPU (CUDA or MPS): the path a
user with a GPU takes, checked end to end on real faces (scikit-image's LFW subset).

    python bench/cuda_smoke.py [--device cuda] [--epochs 60]

For each kind: train with the CLI's defaults (fewer epochs), draw 200 tempered samples, score
them against the held-out faces; print the seconds, the figures, and that every parameter and
the chains stayed on the device. Exits 1 if anything is not finite or not on the device.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from models.factory import Options, build, make_sampler, sample_images  # noqa: E402
from models.quality import score_model  # noqa: E402
from real_images import faces  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type
    print(f"torch {torch.__version__} on {name}")
    train, heldout = (torch.from_numpy(a) for a in faces(32))
    ok = True
    for kind in ("rbm", "grbm", "vae", "hybrid"):
        t0 = time.perf_counter()
        trainer = build(Options(kind=kind, image_shape=tuple(train.shape[1:]), seed=0, epochs=args.epochs, frame_every=25), train, dev)
        frames = sum(ev.frame is not None for ev in trainer.run())
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t_train = time.perf_counter() - t0
        model = trainer.model
        on_device = all(p.device.type == dev.type for p in model.parameters())
        sampler = make_sampler(model, 16, seed=0) if kind != "vae" else None
        chains = getattr(getattr(sampler, "gibbs", sampler), "visible", None)
        if chains is not None:
            on_device &= chains.device.type == dev.type
        t0 = time.perf_counter()
        s = sample_images(model, 200, seed=0, data=train)
        t_sample = time.perf_counter() - t0
        r = score_model(model, train, heldout, seed=0, ais=(kind == "rbm"), ais_runs=20, ais_betas=2000)
        finite = bool(torch.isfinite(s).all()) and all(v == v for v in (r.mmd2, r.diversity, r.memorisation))
        ok &= on_device and finite
        print(f"{kind:7s} {trainer.total_steps:5d} steps in {t_train:6.1f} s ({frames} frames), 200 samples in {t_sample:5.2f} s ({type(sampler).__name__ if sampler else 'prior'}"
              f"{'/' + type(sampler.gibbs).__name__ if hasattr(sampler, 'gibbs') else ''}); MMD² {r.mmd2:.4f} (floor {r.floor:.4f}, noise {r.ceiling:.3f}), "
              f"diversity {r.diversity:.2f}, memorisation {r.memorisation:.2f}; on {dev.type}: {on_device}, finite: {finite}")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
