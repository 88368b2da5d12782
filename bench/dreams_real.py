#!/usr/bin/env python3
"""A screenshot of the studio window dreaming with a trained model over a folder of real images.

    .venv/bin/python bench/dreams_real.py --model CKPT --folder FOLDER --out PNG
        [--size 1600x1000] [--seconds 30] [--score-timeout 180] [--max-kb 400] [--hold S]
    ../shared/tools/screenshot.sh /tmp/x11.png 120 -- .venv/bin/python bench/dreams_real.py
        --model CKPT --folder FOLDER --out /tmp/window.png --hold 60

The real main window, as a person gets it: the folder is opened at the checkpoint's own
preprocessing (its size, grey or colour: the dataset dock shows the images as the model sees
them), the checkpoint is opened as with File → Open Model (its run appears on its kind's
training page, is scored against the folder's held-out tenth in the background, and its quality
card shows there), then the Dreams tab is shown dreaming freely with the tab's defaults (64
chains from noise, one step a frame). The script waits for the score (the Dreams tab puts up its
banner when the dreams collapsed or copy the training images), lets the chains dream at least
``--seconds`` in all, prints how much each chain changed over the last 10 s and how far apart
the chains are (mean |Δpixel| in [0, 1]), and saves ``window.grab()``. The UI thread only ever
waits in a Qt event loop; the sampler runs in its own thread. The window uses a throw-away
settings file, never the person's own settings. A grab over ``--max-kb`` is saved again with a
256-colour palette (Pillow's median cut), so README pictures stay small.

Runs offscreen unless QT_QPA_PLATFORM is set (screenshot.sh sets it to xcb and grabs the
virtual X screen while ``--hold`` keeps the window open). The README's shots
(resources/screenshots/dreams-real-KIND.png) dream over the 70 training faces of
``bench.real_images.faces`` written as 64-px PNGs into /tmp/dreams-real/faces, each kind trained
with the command line's defaults:

    harmonium train /tmp/dreams-real/faces --model KIND --size 32 --out /tmp/dreams-real/KIND.safetensors
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait(until: Callable[[], bool], seconds: float, poll_ms: int = 50) -> bool:
    """Run the Qt event loop until `until()` is true or `seconds` have passed; returns `until()`."""
    from PySide6.QtCore import QEventLoop, QTimer

    if until():
        return True
    loop = QEventLoop()
    deadline = time.monotonic() + seconds
    timer = QTimer()
    timer.setInterval(poll_ms)

    def check() -> None:
        if until() or time.monotonic() >= deadline:
            loop.quit()

    timer.timeout.connect(check)
    timer.start()
    loop.exec()
    timer.stop()
    return until()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint (.safetensors) to open")
    ap.add_argument("--folder", required=True, help="folder of the images it was trained on (opened in the dataset dock)")
    ap.add_argument("--out", required=True, help="PNG to write (the whole window)")
    ap.add_argument("--size", default="1600x1000", help="window size WxH (default 1600x1000, as the README's other shots)")
    ap.add_argument("--seconds", type=float, default=30.0, help="dreaming time before the shot, after scoring (default 30)")
    ap.add_argument("--score-timeout", type=float, default=180.0, help="longest wait for the quality score (default 180 s)")
    ap.add_argument("--max-kb", type=float, default=400.0, help="above this, save with a 256-colour palette (default 400; 0: never)")
    ap.add_argument("--hold", type=float, default=0.0, help="keep the window open this long after the shot (for screenshot.sh)")
    args = ap.parse_args()
    w_px, h_px = (int(v) for v in args.size.lower().split("x"))

    from PySide6.QtCore import QSettings

    from models.checkpoint import load_checkpoint
    from studio.app import SWITCH_INTERVAL, make_application
    from studio.dataset import Preprocess
    from studio.jobs import Session
    from studio.ui.main_window import MainWindow

    ckpt_path = Path(args.model).resolve()
    pre = Preprocess.from_dict(load_checkpoint(ckpt_path, device="cpu").preprocess or {})
    sys.setswitchinterval(SWITCH_INTERVAL)  # as run_studio does
    app = make_application()
    tmp = Path(tempfile.mkdtemp(prefix="dreams-real-"))
    w = MainWindow(Session(pre), settings=QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    w.resize(w_px, h_px)
    w.show()
    t0 = time.monotonic()
    w.start(str(Path(args.folder).resolve()))
    if not wait(lambda: w.is_ready and w.images_ready, 120):
        print(f"the window was not ready after 120 s (engine {w.is_ready}, images {w.images_ready})", file=sys.stderr)
        return 1
    n_images = len(w.session.images) if w.session.images is not None else 0
    print(f"window ready in {time.monotonic() - t0:.1f} s: {n_images} images from {args.folder} at {pre.describe()}")

    errors: list[tuple[str, str]] = []  # what the window shows, recorded here
    show_error = w.show_error
    w.show_error = lambda title, message: (errors.append((title, message)), show_error(title, message))
    w.open_model(ckpt_path)
    if not wait(lambda: errors or (w.current_job() is not None and w.current_job().path == ckpt_path), 60):
        print("the model did not open within 60 s", file=sys.stderr)
        return 1
    if errors:
        print(f"error: {errors[-1]}", file=sys.stderr)
        return 1
    job = w.current_job()
    w.tabs.setCurrentWidget(w.dreams)

    def dreaming() -> bool:
        s = w.dreams.session
        return s is not None and s.source == "sampler" and s.meta.get("job_id") == job.id and w.dreams.worker_alive

    if not wait(dreaming, 60):
        print(f"the Dreams tab did not start dreaming: {w.dreams.last_message}", file=sys.stderr)
        return 1
    t_dream = time.monotonic()
    print(f"{job.kind} ({job.title}) opened, step {job.step}; dreaming")

    t_score = time.monotonic()
    if job.kind != "texture":  # a texture run gets no quality card (nothing of its size is held out)
        wait(lambda: job.quality_status not in ("", "scoring"), args.score_timeout)
    print(f"quality: {job.quality_status or 'none'} after {time.monotonic() - t_score:.1f} s")
    if job.quality_status == "ready" and job.quality is not None:
        for line in job.quality.lines():
            print(f"  {line}")
    window_s = 10.0  # the chains' movement is measured over the last seconds before the shot
    wait(lambda: False, max(1.0, args.seconds - window_s - (time.monotonic() - t_dream)))
    before = w.dreams.shown_frame
    wait(lambda: False, window_s)
    after = w.dreams.shown_frame
    s = w.dreams.session
    if before is not None and after is not None and before.pixels.shape == after.pixels.shape:
        a, b = before.pixels.astype(np.float32) / 255, after.pixels.astype(np.float32) / 255
        moved = np.abs(b - a).reshape(len(a), -1).mean(1)
        flat = b.reshape(len(b), -1)
        apart = np.abs(flat[:, None] - flat[None]).mean(-1)[~np.eye(len(b), dtype=bool)]
        pairs = (f"; chains differ from each other by {apart.mean():.3f} (closest pair {apart.min():.3f})"
                 if apart.size else " (one chain)")
        print(f"over the last {after.time - before.time:.1f} s ({before.steps:,} -> {after.steps:,} steps): each chain changed "
              f"by {moved.mean():.3f} mean |Δpixel| (min {moved.min():.3f}){pairs}")
    banner = w.dreams.quality_banner_text
    print(f"dreamt {time.monotonic() - t_dream:.1f} s: live step {s.steps:,}, {s.settings.n_chains} chains, "
          f"{s.settings.steps_per_frame} step(s)/frame; banner: {banner or 'none'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shot = w.grab()
    if not shot.save(str(out)):
        print(f"could not write {out}", file=sys.stderr)
        return 1
    kb = out.stat().st_size / 1024
    if args.max_kb and kb > args.max_kb:
        from PIL import Image

        Image.open(out).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
        print(f"{kb:.0f} KB over {args.max_kb:.0f} KB: saved with a 256-colour palette")
    print(f"wrote {out} ({shot.width()}×{shot.height()}, {out.stat().st_size / 1024:.0f} KB)")
    if args.hold > 0:
        wait(lambda: False, args.hold)
    w.dreams.shutdown()
    w.controller.shutdown(timeout=2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
