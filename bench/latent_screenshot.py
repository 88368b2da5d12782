#!/usr/bin/env python3
"""Screenshot of the Latent tab for the README: a VAE (the factory's, latent 32) trained on the
demo set (resources/demo, 120 RGB images of 64×64), explored with its 16 most used dimensions,
one slider moved. Runs offscreen.

    python bench/latent_screenshot.py [--epochs 250] [--out resources/screenshots/latent.png]
    python bench/latent_screenshot.py --window     # the whole studio window on the Latent tab
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=250)
    ap.add_argument("--out", default=str(ROOT / "resources" / "screenshots" / "latent.png"))
    ap.add_argument("--window", action="store_true", help="grab the studio's main window, not the tab alone")
    args = ap.parse_args()
    if args.window:
        return window_shot(args)

    from PySide6.QtWidgets import QApplication

    from models.factory import Options, build
    from studio.ui.latent_view import LatentView

    paths = sorted((ROOT / "resources" / "demo").glob("*.png"))
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((64, 64))).transpose(2, 0, 1) for p in paths])
    data = torch.from_numpy(images)
    tr = build(Options(kind="vae", image_shape=(3, 64, 64), epochs=args.epochs, seed=0, frame_every=0), data, device="cpu")
    t0 = time.perf_counter()
    for _ in tr.run():
        pass
    print(f"trained {args.epochs} epochs on {len(data)} images in {time.perf_counter() - t0:.1f} s")

    app = QApplication.instance() or QApplication([])
    view = LatentView()
    view.resize(1100, 640)
    view.show()
    view.set_model(tr.model, data, {"kind": "vae", "title": "Variational autoencoder · demo set"})
    deadline = time.monotonic() + 30
    while view.explorer is None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    ex = view.explorer
    view.sliders[ex.order[0]].setValue(1.6)
    view.sliders[ex.order[2]].setValue(-1.2)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    view.grab().save(args.out)
    print(f"wrote {args.out}; sliders: {list(view.sliders)[:16]}")
    view.shutdown()
    return 0


def _wait(app, until, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)


def window_shot(args) -> int:
    """Train the VAE, open it in the studio over the demo set (RGB, 64 px), show the Latent tab
    with two sliders moved and an interpolation strip, and grab the whole window."""
    import tempfile

    from PySide6.QtCore import QSettings

    from models.checkpoint import save_checkpoint
    from models.factory import Options, build
    from studio.app import make_application
    from studio.dataset import Preprocess, load_demo
    from studio.jobs import Session
    from studio.ui.main_window import MainWindow

    pre = Preprocess(size=64, color=True)
    data = torch.from_numpy(load_demo(pre).images)
    tr = build(Options(kind="vae", image_shape=(3, 64, 64), epochs=args.epochs, seed=0, frame_every=0), data, device="cpu")
    for _ in tr.run():
        pass
    tmp = Path(tempfile.mkdtemp())
    ckpt = save_checkpoint(tmp / "demo-vae.safetensors", tr.model, trainer=tr, preprocess=pre.to_dict())
    app = make_application()
    w = MainWindow(Session(pre), settings=QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    w.resize(1600, 1000)
    w.show()
    w.start(None)
    _wait(app, lambda: w.is_ready and w.images_ready)
    w.open_model(ckpt)
    _wait(app, lambda: w.latent_view is not None and w.latent_view.explorer is not None)
    w.tabs.setCurrentWidget(w.latent_view)
    view = w.latent_view
    ex = view.explorer
    view.sliders[ex.order[0]].setValue(1.6)
    view.sliders[ex.order[2]].setValue(-1.2)
    _wait(app, lambda: False, 1.0)
    view.make_strip(100, 60, 8)  # a flower to a spiral
    _wait(app, lambda: False, 2.0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    w.grab().save(args.out)
    print(f"wrote {args.out}")
    w.controller.shutdown(timeout=2.0)
    view.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
