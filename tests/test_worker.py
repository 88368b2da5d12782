"""The studio's one worker (studio.worker), the registry a window stops its threads with, the
process's thread policy (models.device) and the rule that worker threads never touch torch's
global random generator."""
from __future__ import annotations

import logging
import threading
import time

import pytest
import torch

from studio.worker import LatestWorker, TaskQueue, register, registered, shutdown_all

WAIT = 10.0  # generous bounds: a loaded machine is slow, never wrong


def wait_for(cond, timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def live(name: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name == name and t.is_alive())


@pytest.fixture
def gate():
    """Opened by the test (or at its end): releases the request `held` made."""
    ev = threading.Event()
    yield ev
    ev.set()


def held(name: str, gate: threading.Event, result="held", **kw) -> LatestWorker:
    """A worker whose first request runs until ``gate`` opens, then gives ``result``."""
    w = LatestWorker(name, **kw)
    started = threading.Event()
    w.submit(lambda: started.set() or gate.wait(WAIT) and result)
    assert started.wait(WAIT)  # running: the next requests wait
    return w


# ------------------------------------------------------------------------- newest wins
def test_of_a_hundred_requests_only_the_newest_waiting_one_runs_and_is_delivered(gate):
    got, computed = [], []
    w = held("test-newest", gate, "first", deliver=got.append)
    for i in range(100):
        w.submit(lambda i=i: computed.append(i) or i)
    assert w.busy and not w.idle()
    gate.set()
    assert wait_for(lambda: 99 in got)
    assert wait_for(lambda: not w.busy)
    assert got == ["first", 99] and computed == [99]
    assert w.requests_dropped == 99 and w.requests_run == 2
    assert w.shutdown(WAIT) and not w.alive


def test_requests_made_faster_than_they_run_skip_stale_ones_and_always_end_on_the_last():
    got: list[int] = []
    w = LatestWorker("test-stream", got.append)
    for i in range(100):
        w.submit(lambda i=i: time.sleep(0.001) or i)
    assert wait_for(lambda: got and got[-1] == 99)
    assert got == sorted(got) and len(set(got)) == len(got)  # in order, none twice
    assert w.requests_run + w.requests_dropped == 100 and w.requests_run == len(got)
    assert w.shutdown(WAIT)


def test_kept_requests_run_in_order_before_the_newest_and_are_never_dropped(gate):
    got = []
    w = held("test-kept", gate, "busy", deliver=got.append)
    w.submit(lambda: 0)
    w.submit(lambda: "strip", keep=True)
    for i in range(1, 6):
        w.submit(lambda i=i: i)
    w.submit(lambda: "export", keep=True)
    gate.set()
    assert wait_for(lambda: len(got) == 4)
    assert got == ["busy", "strip", "export", 5] and w.requests_dropped == 5
    assert w.shutdown(WAIT)


def test_a_tick_repeats_while_no_request_waits_and_stops_when_cleared():
    got = []
    w = LatestWorker("test-tick", got.append)
    w.tick(lambda: "tick", every=0.0)
    assert wait_for(lambda: w.ticks >= 5) and w.ticking
    w.submit(lambda: "request")  # a request goes before the next tick
    assert wait_for(lambda: "request" in got)
    w.tick(None)
    assert not w.ticking
    assert wait_for(lambda: not w.busy)
    time.sleep(0.02)  # the tick in flight when it was cleared has ended by now
    n = w.ticks
    time.sleep(0.05)
    assert w.ticks == n  # no tick since
    assert w.shutdown(WAIT)


# ---------------------------------------------------------------------------- shutdown
def test_shutdown_returns_within_its_deadline_with_a_slow_job_in_flight_and_leaves_no_thread():
    """The job in flight is told (``stopping``, ``cancel``) and ends early; its result is not
    delivered; no thread is left."""
    got, cancelled = [], threading.Event()
    w = LatestWorker("test-slow", got.append, cancel=cancelled.set)
    started = threading.Event()

    def slow():
        started.set()
        for _ in range(1000):  # 10 s unless told to stop
            if w.stopping.is_set():
                return "too late"
            time.sleep(0.01)
        return "done"

    w.submit(slow)
    assert started.wait(WAIT)
    w.submit(lambda: "waiting")  # dropped by the shutdown
    before = live("test-slow")
    t0 = time.monotonic()
    assert w.shutdown(WAIT / 2)
    assert time.monotonic() - t0 < WAIT / 2
    assert cancelled.is_set() and not w.alive and live("test-slow") == before - 1 == 0
    assert got == [] and w.requests_run == 1  # neither result delivered, the waiting one never run
    assert not w.submit(lambda: "after")  # a stopped worker takes nothing
    assert w.shutdown(0.0)  # twice is harmless


def test_a_job_that_ignores_the_stop_bounds_shutdown_by_the_deadline_and_ends_after_its_job(gate):
    got = []
    w = held("test-stubborn", gate, "late", deliver=got.append)
    t0 = time.monotonic()
    assert not w.shutdown(0.05)  # still finishing its job
    assert time.monotonic() - t0 < 0.05 + WAIT / 2
    assert w.alive and w.stopped
    gate.set()
    assert w.join(WAIT) and not w.alive and live("test-stubborn") == 0
    assert got == []  # the late result is not delivered


# ------------------------------------------------------------------------------ errors
def test_errors_are_reported_not_swallowed_and_the_worker_goes_on():
    got, errors = [], []
    w = LatestWorker("test-errors", got.append, errors.append)
    w.submit(lambda: 1 / 0)
    assert wait_for(lambda: errors)
    w.submit(lambda: "after")
    assert wait_for(lambda: got == ["after"])
    assert isinstance(errors[0], ZeroDivisionError) and w.errors == 1 and w.last_error is errors[0]
    assert w.shutdown(WAIT)


def test_without_a_handler_an_error_is_logged_with_its_traceback(caplog):
    w = LatestWorker("test-logged")
    with caplog.at_level(logging.ERROR, logger="studio.worker"):
        w.submit(lambda: [][1])
        assert wait_for(lambda: w.errors == 1)
        assert wait_for(lambda: caplog.records)
    rec = caplog.records[-1]
    assert "test-logged" in rec.getMessage() and rec.exc_info[0] is IndexError
    w.tick(lambda: {}["x"])  # a failing tick is reported too, and the handler's own failure as well
    assert wait_for(lambda: w.errors >= 2) and isinstance(w.last_error, KeyError)
    assert w.shutdown(WAIT)


# ---------------------------------------------------------------------------- registry
def test_shutdown_all_stops_what_the_filter_accepts_within_one_deadline(gate):
    mine, other = object(), object()  # say, two windows' views
    a = LatestWorker("test-reg-a", owner=mine)
    b = held("test-reg-b", gate, owner=mine)  # busy when the window closes
    c = LatestWorker("test-reg-c", owner=other)
    assert {s.name for s in registered(lambda s: s.owner is mine)} == {"test-reg-a", "test-reg-b"}
    t0 = time.monotonic()
    assert not shutdown_all(0.1, where=lambda s: s.owner is mine)  # b is still on its job
    assert time.monotonic() - t0 < 0.1 + WAIT / 2
    assert not a.alive and b.stopped and c.alive and not c.stopped
    gate.set()
    assert b.join(WAIT) and registered(lambda s: s.owner is mine) == []
    assert c.shutdown(WAIT)


def test_a_registered_item_that_fails_is_left_out_and_never_stops_the_others():
    """A Qt object whose C++ side is deleted raises on every call: shutdown_all (called from a
    window's closeEvent, where an exception crashes PySide) must go on without it."""

    class Deleted:
        name = "deleted"

        @property
        def owner(self):
            raise RuntimeError("Internal C++ object (JobsController) already deleted.")

        @property
        def alive(self):
            raise RuntimeError("Internal C++ object already deleted.")

        def shutdown(self, deadline=0.0):
            raise RuntimeError("deleted")

        def join(self, timeout=None):
            raise RuntimeError("deleted")

    class Failing(Deleted):
        owner = None
        alive = True  # says it lives, then fails to stop

    broken, failing = register(Deleted()), register(Failing())
    w = LatestWorker("test-survivor")
    assert broken not in registered() and broken not in registered(lambda s: s.owner is None)
    assert not shutdown_all(1.0, where=lambda s: s in (broken, failing, w))  # failing "lives" on
    assert not w.alive
    del broken, failing


def test_a_task_queue_runs_every_task_even_once_shut_down():
    done, gate = [], threading.Event()
    q = TaskQueue("test-queue")
    assert live("test-queue_0") == 0  # no thread before the first task
    futures = [q.submit(lambda: gate.wait(WAIT) and done.append("first"))]
    futures += [q.submit(lambda i=i: done.append(i) or i) for i in range(3)]
    assert q.alive and not q.shutdown(0.0)  # asked to stop: takes no more, runs what it has
    with pytest.raises(RuntimeError, match="shut down"):
        q.submit(lambda: None)
    gate.set()
    assert q.shutdown(None)
    assert done == ["first", 0, 1, 2] and [f.result() for f in futures[1:]] == [0, 1, 2]
    assert not q.alive and live("test-queue_0") == 0


# ----------------------------------------------------------------------------- windows
def test_closing_windows_stops_every_thread_they_own(qtbot, tmp_path, monkeypatch):
    """Each window's Canvas render thread, Dreams sampler and Latent decoder end when it closes
    (one shutdown_all); the threads of the windows still open go on."""
    from PySide6.QtCore import QSettings

    from models.rbm import BernoulliRBM, RBMConfig
    from studio.app import make_application
    from studio.dataset import Preprocess
    from studio.jobs import Session
    from studio.ui.main_window import MainWindow

    names = ("canvas-render", "dreams-sampler", "latent-explorer")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    make_application()
    before = {n: live(n) for n in names}
    windows = []
    for i in range(2):
        w = MainWindow(Session(Preprocess(size=16)),
                       settings=QSettings(str(tmp_path / f"s{i}.ini"), QSettings.Format.IniFormat))
        w.show()
        w.start_engine()
        qtbot.waitUntil(lambda: w.canvas_view is not None and w.latent_view is not None and w.dreams is not None,
                        timeout=60_000)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(i)
            rbm = BernoulliRBM(RBMConfig(64, 16, (1, 8, 8)))
        assert w.dreams.set_model(rbm, {"seed": i})
        windows.append(w)
    qtbot.waitUntil(lambda: all(w.dreams.runner.frames > 0 for w in windows), timeout=10_000)
    assert {n: live(n) for n in names} == {n: before[n] + 2 for n in names}
    for k, w in enumerate(windows):
        w.close()
        qtbot.waitUntil(lambda: w._close_ok, timeout=10_000)
        assert {n: live(n) for n in names} == {n: before[n] + 1 - k for n in names}
        w.deleteLater()


# ------------------------------------------------------------------------ thread policy
def test_the_thread_rule_never_hands_out_more_threads_than_idle_cores():
    from models.device import thread_rule

    assert thread_rule(2) == 1 and thread_rule(2, jobs=2, busy=1) == 1  # a 2-core machine: one each
    assert thread_rule(8) == 7 and thread_rule(8, jobs=2) == 3 and thread_rule(8, busy=1) == 6
    assert thread_rule(16, jobs=3, busy=1) == 4 and thread_rule(1) == 1 and thread_rule(4, jobs=9, busy=5) == 1
    for cores in range(1, 65):
        for jobs in range(1, 9):
            for busy in range(0, 5):
                t = thread_rule(cores, jobs, busy)
                assert t >= 1 and (t == 1 or jobs * t + busy <= cores - 1)  # a core left for the rest
                assert t >= thread_rule(cores, jobs + 1, busy) and t >= thread_rule(cores, jobs, busy + 1)


def test_jobs_and_samplers_that_claim_cores_leave_fewer_threads_to_the_next_job(monkeypatch):
    import models.device as device

    monkeypatch.delenv("HARMONIUM_TORCH_THREADS", raising=False)
    monkeypatch.setattr(device, "usable_cores", lambda: 8)
    base = device.busy_counts()
    assert base == {"job": 0, "sampler": 0}  # nothing left claimed by earlier tests
    first = device.claim("job")
    assert device.job_threads() == 7 and device.default_threads() == 7
    second = device.claim("job")
    assert device.job_threads() == 3
    sampler = device.claim("sampler")
    assert device.job_threads() == 3 and device.busy_counts() == {"job": 2, "sampler": 1}
    second()
    second()  # releasing twice releases once
    assert device.job_threads() == 6 and device.busy_counts() == {"job": 1, "sampler": 1}
    first(), sampler()
    assert device.busy_counts() == base
    monkeypatch.setenv("HARMONIUM_TORCH_THREADS", "2")
    assert device.job_threads() == 2 and device.default_threads() == 2
    monkeypatch.setenv("HARMONIUM_TORCH_THREADS", "999")
    assert device.job_threads() == 8  # never more than the cores
    with pytest.raises(ValueError, match="unknown kind of CPU work"):
        device.claim("gpu")


def test_a_run_claims_a_job_while_it_lives_and_takes_the_policys_threads(monkeypatch):
    import models.device as device
    from models.rbm import BernoulliRBM, RBMConfig
    from models.rbm_trainer import RBMTrainConfig, RBMTrainer

    monkeypatch.delenv("HARMONIUM_TORCH_THREADS", raising=False)
    before = torch.get_num_threads()
    data = (torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = BernoulliRBM(RBMConfig(16, 8, (1, 4, 4)))
    sampler = device.claim("sampler")  # the Dreams tab is running
    try:
        expected = device.thread_rule(device.usable_cores(), jobs=1, busy=1)
        run = RBMTrainer(m, data, RBMTrainConfig(epochs=2, batch_size=10, seed=0)).run()
        next(run)
        assert device.busy_counts()["job"] == 1 and torch.get_num_threads() == expected
        run.close()
    finally:
        sampler()
    assert device.busy_counts() == {"job": 0, "sampler": 0} and torch.get_num_threads() == before


def test_a_dreams_runner_claims_a_sampler_while_it_dreams():
    import models.device as device
    from models.rbm import BernoulliRBM, RBMConfig
    from studio.dreams import DreamRunner, DreamSession

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rbm = BernoulliRBM(RBMConfig(64, 16, (1, 8, 8)))
    r = DreamRunner(DreamSession.from_model(rbm, {}, n_chains=4, seed=0), max_fps=200).start(paused=True)
    try:
        assert device.busy_counts()["sampler"] == 0
        r.resume()
        assert device.busy_counts()["sampler"] == 1 and wait_for(lambda: r.frames > 0)
        r.pause()
        assert device.busy_counts()["sampler"] == 0
        r.resume()
    finally:
        assert r.stop()
    assert device.busy_counts()["sampler"] == 0 and live("dreams-sampler") == 0


# --------------------------------------------------------------------------- randomness
def test_seeded_jobs_and_samplers_in_threads_never_touch_the_global_generator():
    """Every kind's seeded job trains a few steps in a worker thread, and the Dreams sampler
    runs over it: torch's global generator is neither seeded nor drawn from (each job and
    sampler has its own generator), so two identical runs give identical numbers whatever
    else runs."""
    from models.factory import Options, build, make_sampler

    data = (torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    results: dict = {}

    def job(kind: str, key) -> None:
        tr = build(Options(kind=kind, image_shape=(1, 28, 28), hidden=16, latent=4, epochs=1, batch_size=10,
                           seed=5, frame_every=0, n_chains=4), data, "cpu")
        run = tr.run()
        for _ in range(3):
            next(run)
        run.close()
        out = [p.detach().clone() for p in tr.model.parameters()]
        if kind != "ae":
            s = make_sampler(tr.model, n_chains=3, seed=9)
            s.step(2)
            out.append(s.images("probs").detach().clone())
        results[key] = out

    kinds = ("rbm", "grbm", "ae", "vae", "hybrid")
    for rep in range(2):
        threads = [threading.Thread(target=job, args=(k, (k, rep)), name=f"test-job-{k}") for k in kinds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert torch.equal(torch.get_rng_state(), state)  # not moved, not reseeded
    for k in kinds:
        assert all(torch.equal(a, b) for a, b in zip(results[(k, 0)], results[(k, 1)], strict=True))
