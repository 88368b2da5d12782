"""The studio's Canvas tab with a composed picture, for the README screenshot.

    .venv/bin/python bench/canvas_demo.py [--seconds 8] [--hidden 128] [--seed 3]
    ../shared/tools/screenshot.sh /tmp/canvas.png 25 -- .venv/bin/python bench/canvas_demo.py

Trains a small binary RBM on the built-in demo set for a few seconds, opens the main window on
the demo set with that model (as an opened checkpoint, so it shows in the Training dock), and
composes a 1024 × 1024 canvas of five layers, bottom to top:

1. a seamless texture: one RBM chain after 400 Gibbs steps, mirrored tiles, bicubic ×5,
   gradient-mapped ("Ocean");
2. a dataset image (a flower, 28 px as the model sees it) scaled up bicubic ×26,
   gradient-mapped black → orange → cream, blended *screen*;
3. the RBM's dream grid (16 chains), crisp nearest ×3, through a palette, blended *hard light*;
4. an imported PNG (a demo flower in colour) bicubic ×5, levels lifting its black point, blended *screen*;
5. a plain-tiled texture of another chain, inverted, blended *soft light* at 45 %.

The window uses a throw-away settings file, so it never touches the person's own settings.

    .venv/bin/python bench/canvas_demo.py --latency [--sizes 1024 4096]

measures instead, without a window on screen, what a person sees: the time from an opacity edit
(the slider) to the new composite being in the view, with bench/canvas.py's 8 layers, and how
long the UI thread itself was busy per edit (the render runs in the view's render thread).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def compose(view, model, images, sha: str, steps: int, seed: int) -> None:
    """The five layers (see the module docs) on a 1024² canvas."""
    import numpy as np

    from models.factory import make_sampler
    from studio.canvas import GradientMap, Levels, Palette
    from studio.canvas.sources import dataset_image, from_dream_snapshot, import_png, rbm_texture
    from studio.ui.canvas import GRADIENT_PRESETS, PALETTE_PRESETS

    def gradient(name: str) -> GradientMap:
        colours = GRADIENT_PRESETS[name]
        n = len(colours)
        return GradientMap(tuple((i / (n - 1), c) for i, c in enumerate(colours)))

    view.set_canvas_size(1024, 1024, (0.08, 0.08, 0.1, 1.0))
    texture = rbm_texture(model, steps=400, seed=seed, tiling="mirror", scale=5.0, checkpoint_sha256=sha,
                          provenance={"model_step": steps})
    view.add_layer(_set(texture, colourise=gradient("Ocean")))

    paths = [Path(p).name for p in images.paths]
    flower = next((i for i, p in enumerate(paths) if p.startswith("flowers")), 0)
    image = dataset_image(images, flower, scale=26.0, resample="bicubic")
    ember = GradientMap(((0.0, "#000000"), (0.5, "#d9480f"), (1.0, "#fff3bf")))  # black: neutral under screen
    view.add_layer(_set(image, colourise=ember, levels=Levels(in_black=0.08), blend_mode="screen", opacity=0.9),
                   center=True)

    sampler = make_sampler(model, n_chains=16, seed=seed + 1)
    sampler.step(300)
    grid = from_dream_snapshot(sampler.images("probs"), {"model": "rbm", "checkpoint_sha256": sha, "seed": seed + 1,
                                                         "steps": 300, "temperature": 1.0})
    grid = _set(grid, scale=3.0, x=1024 - 3 * grid.source.shape[1] - 56, y=1024 - 3 * grid.source.shape[0] - 56,
                blend_mode="hard-light", colourise=Palette(PALETTE_PRESETS["Risograph"]))
    view.add_layer(grid)

    demo = ROOT / "resources" / "demo"
    imported = import_png(next(iter(sorted(demo.glob("flowers_1*.png")))))
    view.add_layer(_set(imported, scale=5.0, resample="bicubic", x=60, y=56, blend_mode="screen",
                        levels=Levels(in_black=0.2)))  # its dark ground to black: no halo under screen

    plain = rbm_texture(model, steps=150, seed=seed + 5, tiling="plain", scale=2.0, checkpoint_sha256=sha)
    view.add_layer(_set(plain, invert=True, blend_mode="soft-light", opacity=0.45))
    view.select_layer(view.canvas.layers[1].id)
    np.seterr(all="ignore")


def _set(layer, **changes):
    import dataclasses

    return dataclasses.replace(layer, **changes)


def latency(sizes: list[int], edits: int = 8) -> None:
    """Edit → on-screen latency of the Canvas view (offscreen), 8 layers, median and worst."""
    import os
    import statistics

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT / "bench"))
    from canvas import build_canvas  # bench/canvas.py
    from PySide6.QtWidgets import QApplication

    from studio.ui.canvas import CanvasView

    app = QApplication.instance() or QApplication([])
    for size in sizes:
        view = CanvasView(build_canvas(size))
        view.resize(1200, 800)
        view.show()

        def wait() -> None:
            while not view.is_current():
                app.processEvents()
                time.sleep(0.001)

        t0 = time.perf_counter()
        wait()
        first = (time.perf_counter() - t0) * 1000
        view.select_layer(view.canvas.layers[4].id)
        wait()
        shown, busy = [], []
        for i in range(edits):
            t0 = time.perf_counter()
            view.opacity_slider.setValue(30 + 5 * i)  # as a drag does
            busy.append((time.perf_counter() - t0) * 1000)
            wait()
            app.processEvents()  # the repaint
            shown.append((time.perf_counter() - t0) * 1000)
        print(f"{size}²: first render {first:.0f} ms; edit → shown median {statistics.median(shown):.0f} ms, "
              f"worst {max(shown):.0f} ms; UI thread busy per edit ≤ {max(busy):.1f} ms", flush=True)
        view.shutdown()
        view.deleteLater()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0, help="RBM training time (default 8 s)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--latency", action="store_true", help="measure edit → on-screen latency instead")
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    args = p.parse_args()
    if args.latency:
        latency(args.sizes)
        return 0

    import torch

    torch.set_num_threads(1)
    from bench.dreams_demo import train_demo_rbm

    trainer, _, steps = train_demo_rbm(args.seconds, 28, args.hidden, args.seed, n_chains=16)
    from models.checkpoint import save_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="harmonium-canvas-demo-"))
    ckpt = save_checkpoint(tmp / "demo-rbm.safetensors", trainer.model, trainer=trainer,
                           preprocess={"size": 28}, extra={"source": "demo set"})

    from PySide6.QtCore import QSettings, Qt, QTimer

    from studio.app import make_application
    from studio.ui.main_window import MainWindow

    app = make_application()
    window = MainWindow(settings=QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    window.setGeometry(0, 0, 1600, 1000)
    window.show()
    window.start(None)  # the demo set
    window.open_model(ckpt)
    state = {"done": False}

    def when_ready() -> None:
        if not (window.is_ready and window.images_ready and window.canvas_view is not None and window.session.jobs):
            QTimer.singleShot(100, when_ready)
            return
        if state["done"]:
            return
        state["done"] = True
        job = window.session.jobs[-1]
        sha = getattr(getattr(job, "checkpoint", None), "sha256", None)
        window.tabs.setCurrentWidget(window.canvas_view)
        window.resizeDocks([window.dataset_dock, window.training_dock], [250, 330], Qt.Orientation.Horizontal)
        compose(window.canvas_view, job.model, window.session.images, sha, steps, args.seed)
        window.statusBar().showMessage("Canvas: 5 layers · 1024 × 1024", 60_000)

    QTimer.singleShot(200, when_ready)
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
