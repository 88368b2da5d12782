"""Responsiveness of the studio: event-loop stalls while models train, and time to window shown.

1. Launch: runs ``main.py`` (a fresh process each time) with ``HARMONIUM_STARTUP_PROBE=1``, which
   prints when the main window is first exposed and quits; reports the time from the process
   start (and from entering ``run_studio``) to that moment.
2. Stalls: in this process, opens the real window on the demo set, then for each model kind
   presses Start (defaults, as a person would) and, for ``--seconds``, runs a ``QTimer``
   heartbeat every ``--beat-ms`` ms on the UI thread. A stall is how late a beat came
   (interval − expected); reports the largest stall and the 99th percentile per kind, plus an
   idle baseline. Everything the UI does during training counts: the worker's signals, the
   progress bar, the curves, the weight filters, the dreams preview.

    .venv/bin/python bench/ui_latency.py                      # all kinds, 5 s each
    .venv/bin/python bench/ui_latency.py --kinds rbm,vae --seconds 3 --switch 0.005

Targets: largest stall ≤ 50 ms, p99 ≤ 20 ms, window shown ≤ 2 s after launch.
Without a display it uses Qt's offscreen platform (painting still happens, into memory).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TARGET_MAX_MS, TARGET_P99_MS, TARGET_SHOWN_S = 50.0, 20.0, 2.0


# ----------------------------------------------------------------------------- launch


def measure_launch(runs: int) -> dict:
    shown, entry, wall = [], [], []
    env = dict(os.environ, HARMONIUM_STARTUP_PROBE="1")
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(ROOT / "main.py")], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        seen = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("HARMONIUM_SHOWN"):
                seen = time.perf_counter() - t0
                m = re.search(r"since_process_start=([\d.na]+) since_run_studio=([\d.]+)", line)
                if m:
                    shown.append(float(m.group(1)))
                    entry.append(float(m.group(2)))
                break
        proc.wait(timeout=120)
        if seen is not None:
            wall.append(seen)
    return {"runs": runs, "shown_since_process_start_s": shown, "shown_since_run_studio_s": entry,
            "shown_since_spawn_s": wall}


# ----------------------------------------------------------------------------- stalls


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


def heartbeat(app, seconds: float, beat_ms: int) -> tuple[list[float], list[float]]:
    """Run the event loop for `seconds` with a beat every `beat_ms`. Returns the stalls (ms) and,
    for each, the UI thread's CPU time in that interval (ms): a stall the UI thread spent
    computing is the UI's own work; one it spent off the CPU is waiting (for the GIL, or for a
    core the OS gave to another thread or process)."""
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    stamps: list[tuple[float, float]] = []
    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(beat_ms)
    timer.timeout.connect(lambda: stamps.append((time.perf_counter(), time.thread_time())))
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    timer.start()
    loop.exec()
    timer.stop()
    stalls = [max(0.0, (b[0] - a[0]) * 1000 - beat_ms) for a, b in zip(stamps, stamps[1:], strict=False)]
    busy = [(b[1] - a[1]) * 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
    return stalls, busy


def wait_until(app, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def measure_stalls(kinds: list[str] | None, seconds: float, beat_ms: int, switch: float) -> dict:
    from PySide6.QtCore import QSettings

    from studio.app import make_application
    from studio.jobs import JobState, Session
    from studio.ui.main_window import MainWindow

    sys.setswitchinterval(switch)
    app = make_application()
    tmp = tempfile.mkdtemp(prefix="harmonium-bench-")
    window = MainWindow(Session(), settings=QSettings(os.path.join(tmp, "s.ini"), QSettings.Format.IniFormat))
    window.show()
    window.start(None)
    if not wait_until(app, lambda: window.is_ready and window.images_ready, 120):
        raise SystemExit("the studio did not get ready in 120 s")
    wait_until(app, lambda: False, 1.5)  # let start-up work (plot pools, first paints) settle
    results = {"idle": summarize(*heartbeat(app, min(seconds, 2.0), beat_ms), beat_ms)}
    panel = window.training_panel
    for kind in kinds or list(panel.pages):
        if kind not in panel.pages:
            print(f"unknown kind {kind!r}; skipped", file=sys.stderr)
            continue
        panel.set_current_kind(kind)
        page = panel.page(kind)
        page.form.reset()
        page.start()  # defaults, as a person would: the trainer is built in the worker
        job = page.job
        stalls, busy = heartbeat(app, seconds, beat_ms)
        steps = job.step
        r = summarize(stalls, busy, beat_ms)
        r.update(steps=steps, steps_per_s=steps / seconds, state=job.state.value, error=job.error)
        results[kind] = r
        t0 = time.perf_counter()
        page.stop()
        wait_until(app, lambda: not window.busy_threads(), 10)
        r["stop_s"] = time.perf_counter() - t0
        if job.state is JobState.FAILED:
            print(f"{kind}: failed: {job.error}", file=sys.stderr)
    window.controller.shutdown(2.0)
    window._close_ok = True
    window.close()
    return results


def summarize(stalls: list[float], busy: list[float], beat_ms: int) -> dict:
    worst = max(range(len(stalls)), key=stalls.__getitem__) if stalls else None
    return {"beats": len(stalls) + 1, "max_stall_ms": max(stalls, default=float("nan")),
            "p99_stall_ms": percentile(stalls, 99), "p50_stall_ms": percentile(stalls, 50),
            "over_20ms": sum(s > 20 for s in stalls), "beat_ms": beat_ms,
            "max_stall_ui_cpu_ms": busy[worst] if worst is not None else float("nan"),
            "ui_cpu_share": sum(busy) / max(1e-9, sum(s + beat_ms for s in stalls))}


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default="", help="comma-separated model kinds (default: every kind)")
    ap.add_argument("--seconds", type=float, default=5.0, help="heartbeat time per kind")
    ap.add_argument("--beat-ms", type=int, default=5)
    ap.add_argument("--switch", type=float, default=None,
                    help="sys.setswitchinterval for the run (default: the studio's, studio.app.SWITCH_INTERVAL)")
    ap.add_argument("--launches", type=int, default=3, help="launches to time (0: skip)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    from studio.app import SWITCH_INTERVAL

    switch = args.switch if args.switch is not None else SWITCH_INTERVAL
    out: dict = {"platform": os.environ.get("QT_QPA_PLATFORM", "xcb"), "cpus": os.cpu_count(),
                 "switch_interval_s": switch, "torch_threads": os.environ.get("HARMONIUM_TORCH_THREADS", "auto")}
    if args.launches:
        launch = measure_launch(args.launches)
        out["launch"] = launch
        shown = launch["shown_since_process_start_s"] or launch["shown_since_spawn_s"]
        print(f"window shown after launch: median {statistics.median(shown):.2f} s, worst {max(shown):.2f} s "
              f"(from run_studio: median {statistics.median(launch['shown_since_run_studio_s']):.2f} s; "
              f"from spawn, parent's clock: median {statistics.median(launch['shown_since_spawn_s']):.2f} s) "
              f"[target ≤ {TARGET_SHOWN_S:.0f} s] {'OK' if max(shown) <= TARGET_SHOWN_S else 'MISSED'}")
    kinds = [k for k in args.kinds.split(",") if k] or None
    stalls = measure_stalls(kinds, args.seconds, args.beat_ms, switch)
    out["stalls"] = stalls
    print(f"\nevent-loop stalls, heartbeat {args.beat_ms} ms, {args.seconds:g} s per kind, switch interval "
          f"{switch * 1000:g} ms (targets: max ≤ {TARGET_MAX_MS:.0f} ms, p99 ≤ {TARGET_P99_MS:.0f} ms)")
    print(f"{'kind':8} {'max ms':>8} {'(UI cpu)':>8} {'p99 ms':>8} {'p50 ms':>8} {'>20ms':>6} {'UI busy':>8} "
          f"{'steps/s':>8}  verdict")
    for kind, r in stalls.items():
        ok = r["max_stall_ms"] <= TARGET_MAX_MS and r["p99_stall_ms"] <= TARGET_P99_MS
        sps = f"{r['steps_per_s']:8.0f}" if "steps_per_s" in r else f"{'-':>8}"
        note = f"  ({r['state']}: {r['error']})" if r.get("error") else ""
        print(f"{kind:8} {r['max_stall_ms']:8.1f} {r['max_stall_ui_cpu_ms']:8.1f} {r['p99_stall_ms']:8.1f} "
              f"{r['p50_stall_ms']:8.2f} {r['over_20ms']:6d} {100 * r['ui_cpu_share']:7.0f}% {sps}  "
              f"{'OK' if ok else 'MISSED'}{note}")
    print("(UI cpu): CPU time the UI thread itself spent within the largest stall; the rest of that stall "
          "it waited for the GIL or a core. UI busy: the UI thread's CPU time over the run.")
    try:
        print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    except OSError:
        pass
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
