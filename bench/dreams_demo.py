"""The Dreams tab alone in a window, over an RBM trained for ~20 s on the built-in demo set.

    .venv/bin/python bench/dreams_demo.py [--seconds 20] [--hidden 256] [--size 28]
    ../shared/tools/screenshot.sh /tmp/dreams.png 34 -- .venv/bin/python bench/dreams_demo.py

Trains a binary RBM (PCD) on `resources/demo/`, then opens the Dreams widget with the trained
model free-running, the chains restarted at dataset images, a few Gibbs steps per frame, and a
dream-brush stroke on one chain (its painted pixels keep dreaming, the rest holds).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train_demo_rbm(seconds: float, size: int = 28, hidden: int = 256, seed: int = 0, n_chains: int = 64):
    """A binary RBM trained by PCD for about `seconds` on the demo set (also used by
    bench/canvas_demo.py); returns (trainer, images uint8 [N, 1, size, size], steps)."""
    import torch

    from models.factory import Options, build
    from studio.dataset import Preprocess, load_demo

    data = load_demo(Preprocess(size=size))
    images = torch.from_numpy(data.images)
    opts = Options(kind="rbm", image_shape=tuple(images.shape[1:]), hidden=hidden, seed=seed, n_chains=n_chains,
                   frame_every=0, epochs=400, batch_size=12, learning_rate=0.02)
    trainer = build(opts, images, "cpu")
    t0, steps = time.monotonic(), 0
    run = trainer.run()
    for ev in run:
        steps = ev.step
        if time.monotonic() - t0 > seconds:
            break
    run.close()
    print(f"trained {steps} PCD updates in {time.monotonic() - t0:.1f} s on {len(images)} demo images", flush=True)
    trainer.model.eval()
    return trainer, data.images, steps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="training time (default 20 s)")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps-per-frame", type=int, default=5)
    p.add_argument("--no-brush", action="store_true", help="no demo brush stroke")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)  # as the studio does on a 2-core machine: a core for the UI
    trainer, images, steps = train_demo_rbm(args.seconds, args.size, args.hidden, args.seed)
    model = trainer.model

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMainWindow

    from studio.ui.dreams import DreamsView
    from studio.ui.widgets import app_icon, apply_theme

    app = QApplication.instance() or QApplication(sys.argv)
    apply_theme(app)
    win = QMainWindow()
    win.setWindowTitle("Harmonium — Dreams")
    win.setWindowIcon(app_icon())
    view = DreamsView()
    win.setCentralWidget(view)
    win.resize(1500, 940)
    win.move(40, 20)
    win.show()
    view.steps_slider.setValue(args.steps_per_frame)
    view.set_model(model, {"title": f"Binary RBM · demo set · {steps:,} PCD updates", "seed": args.seed, "kind": "rbm"})
    view.set_dataset_images(images)
    view.reset_from_dataset()

    def brush() -> None:
        lay = view._layout
        if lay is None:
            QTimer.singleShot(200, brush)
            return
        chain = 9
        y, x = lay.origin(chain)
        h, w = lay.height, lay.width
        view.brush_button.setChecked(True)
        view.brush_size.setValue(max(2, h // 7))
        view._brush_stroke(y + h * 0.30, x + w * 0.75, y + h * 0.30, x + w * 0.25, True, False)
        view._brush_stroke(y + h * 0.65, x + w * 0.70, y + h * 0.30, x + w * 0.75, False, False)

    if not args.no_brush:
        QTimer.singleShot(1500, brush)
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
