"""The studio's background threads: one "newest request wins" worker, one task queue, and one
registry that stops them all within a deadline. No Qt here: a Qt view hands results to its UI
thread itself (a queued signal, or a QTimer that polls), so the UI thread never waits.

* :class:`LatestWorker` — one daemon thread with a one-slot mailbox. :meth:`~LatestWorker.submit`
  replaces the request that has not started yet (a slider dragged faster than the model decodes
  skips the stale values; a canvas edited faster than it renders skips the stale states);
  ``keep=True`` requests are jobs instead, run in order before the newest request and never
  dropped. :meth:`~LatestWorker.tick` repeats a callable at a pace while no request waits (a
  sampler's frames, a latent walk). Results that are not None go to ``deliver(result)``; errors
  go to ``on_error(exc)`` (or are logged), and the thread goes on. The canvas render thread, the
  Dreams sampler (:class:`studio.dreams.DreamRunner`) and the Latent tab's decoder
  (:class:`studio.latent.LatentRunner`) are this worker.
* :class:`TaskQueue` — tasks that must all run, in order, in one thread (the Dreams tab's
  exports: every file asked for is written, even while the window closes). It is a
  ``ThreadPoolExecutor`` with one thread, because that is exactly its semantics: Futures, no task
  dropped, and a non-daemon thread that finishes its queue before the interpreter exits —
  a newest-wins mailbox would drop an export.
* :func:`shutdown_all` — every worker, queue and thread group registered here (training workers
  and image loaders register too, see ``studio.ui.workers``) is asked to stop at once, then
  waited for until one common deadline. A window calls it once, for what it owns.

``shutdown(deadline)`` never waits longer than ``deadline`` seconds. A job in flight finishes
(Python cannot interrupt a thread); it is told through :attr:`LatestWorker.stopping` and the
``cancel`` callable, and a job that checks either ends promptly. Its result is not delivered.
"""
from __future__ import annotations

import atexit
import collections
import concurrent.futures
import logging
import threading
import time
import weakref
from typing import Any, Callable, Protocol, runtime_checkable

__all__ = ["LatestWorker", "Stoppable", "TaskQueue", "register", "registered", "shutdown_all"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------- registry
@runtime_checkable
class Stoppable(Protocol):
    """What :func:`shutdown_all` needs of a thread (or a group of threads)."""

    name: str

    @property
    def owner(self) -> Any: ...  # who made it (a view, a window), or None

    @property
    def alive(self) -> bool: ...

    def shutdown(self, deadline: float = 0.0) -> bool:
        """Ask it to stop; wait at most ``deadline`` s; True when it has ended."""

    def join(self, timeout: float | None = None) -> bool:
        """Wait at most ``timeout`` s (None: as long as it takes); True when it has ended."""


_REGISTRY: "weakref.WeakSet[Stoppable]" = weakref.WeakSet()
_REGISTRY_LOCK = threading.Lock()


def register(item: Stoppable) -> Stoppable:
    """Let :func:`shutdown_all` stop ``item``. Held weakly: what nobody holds is forgotten."""
    with _REGISTRY_LOCK:
        _REGISTRY.add(item)
    return item


def _alive(item: Stoppable) -> bool:
    """``item.alive``; an item that cannot say (a Qt object whose C++ side is deleted) is gone."""
    try:
        return bool(item.alive)
    except Exception:  # noqa: BLE001 - e.g. RuntimeError: Internal C++ object already deleted
        return False


def registered(where: Callable[[Stoppable], bool] | None = None, alive: bool = True) -> list[Stoppable]:
    """The registered items ``where`` accepts (all by default), only the live ones by default.
    An item ``where`` or ``alive`` fails on is left out (and forgotten: it is gone)."""
    with _REGISTRY_LOCK:
        items = list(_REGISTRY)
    out = []
    for s in items:
        try:
            wanted = where is None or where(s)
        except Exception:  # noqa: BLE001 - a deleted Qt object, say
            wanted = False
            with _REGISTRY_LOCK:
                _REGISTRY.discard(s)
        if wanted and (not alive or _alive(s)):
            out.append(s)
    return out


def shutdown_all(deadline: float = 2.0, where: Callable[[Stoppable], bool] | None = None) -> bool:
    """Stop every registered item ``where`` accepts (all by default): each is asked at once,
    then all are waited for until one common deadline, ``deadline`` s from now. True when all
    have ended; False when some are still finishing a job (they end on their own after it).
    Never raises (a window calls it from its closeEvent): an item that fails is logged."""
    items = registered(where)
    end = time.monotonic() + max(0.0, deadline)
    for step in ("shutdown", "join"):
        for s in items:
            try:
                if step == "shutdown":
                    s.shutdown(0.0)
                else:
                    s.join(max(0.0, end - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - stopping the others matters more
                _report(exc, None, getattr(s, "name", repr(s)))
    return not any(_alive(s) for s in items)


@atexit.register
def _shutdown_at_exit() -> None:
    # Daemon threads are frozen mid-job at interpreter exit; one holding a Qt object then can
    # crash the exit. Stop them first (a job in flight gets two seconds to finish).
    shutdown_all(2.0)


def _weak(owner: Any) -> Callable[[], Any]:
    if owner is None:
        return lambda: None
    try:
        return weakref.ref(owner)
    except TypeError:  # not weakly referenceable: hold it
        return lambda: owner


def _report(exc: BaseException, on_error: Callable[[BaseException], Any] | None, name: str) -> None:
    """Hand ``exc`` to ``on_error``; log it when there is none or when that fails too."""
    if on_error is not None:
        try:
            on_error(exc)
            return
        except Exception as second:  # noqa: BLE001 - the worker must go on
            log.error("%s: the error handler failed", name, exc_info=second)
    log.error("%s: a job failed", name, exc_info=exc)


# ----------------------------------------------------------------------------- the worker
class LatestWorker:
    """One daemon thread running callables, newest request first.

    ``deliver(result)`` and ``on_error(exc)`` are called on the worker thread: a Qt view
    re-emits them as signals. ``cancel()`` is called (on the stopping thread) when the worker
    is shut down, to interrupt the job in flight (e.g. a sampler's cancel flag). ``owner``
    (held weakly) says who made the worker, so a window can stop what is its own.

    Every method only notes an intent under a lock held for microseconds: the caller never
    waits for a job (except :meth:`shutdown` and :meth:`join`, up to their deadline).
    """

    def __init__(self, name: str, deliver: Callable[[Any], Any] | None = None,
                 on_error: Callable[[BaseException], Any] | None = None, *, owner: Any = None,
                 cancel: Callable[[], Any] | None = None) -> None:
        self.name = name
        self.deliver = deliver
        self.on_error = on_error
        self._owner = _weak(owner)
        self._cancel = cancel
        self._cond = threading.Condition()
        self._pending: Callable[[], Any] | None = None  # the newest replaceable request
        self._kept: collections.deque[Callable[[], Any]] = collections.deque()  # jobs, in order
        self._tick: Callable[[], Any] | None = None
        self._every = 0.0
        self._next_tick = 0.0
        self._running = False  # a job is in flight
        self.stopping = threading.Event()  # set by shutdown: a long job may poll it and end early
        self.requests_run = 0
        self.requests_dropped = 0
        self.ticks = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        register(self)
        self._thread.start()

    # ------------------------------------------------------------------------- intents
    def submit(self, fn: Callable[[], Any], *, keep: bool = False) -> bool:
        """Run ``fn()`` next, replacing the request that has not started yet (counted in
        :attr:`requests_dropped`); with ``keep``, after the kept jobs before it, replacing
        nothing and never replaced. False (nothing done) once the worker is shut down."""
        with self._cond:
            if self.stopping.is_set():
                return False
            if keep:
                self._kept.append(fn)
            else:
                if self._pending is not None:
                    self.requests_dropped += 1
                self._pending = fn
            self._cond.notify()
        return True

    def tick(self, fn: Callable[[], Any] | None, every: float = 0.0) -> None:
        """Call ``fn()`` again and again while no request waits, starting at most one call every
        ``every`` seconds (0: back to back); the first call comes at once. None stops it."""
        with self._cond:
            if self.stopping.is_set():
                return
            self._tick = fn
            self._every = max(0.0, float(every))
            self._next_tick = time.monotonic()
            self._cond.notify()

    @property
    def ticking(self) -> bool:
        return self._tick is not None

    def idle(self) -> bool:
        """No request waits (one may still be running)."""
        with self._cond:
            return self._pending is None and not self._kept

    @property
    def busy(self) -> bool:
        """A request is running or waiting."""
        with self._cond:
            return self._running or self._pending is not None or bool(self._kept)

    @property
    def owner(self) -> Any:
        return self._owner()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopped(self) -> bool:
        """:meth:`shutdown` was called: the thread ends (after the job it is on, if any)."""
        return self.stopping.is_set()

    def shutdown(self, deadline: float = 0.0) -> bool:
        """Stop: waiting requests and ticks are dropped, the job in flight is told (``cancel``,
        :attr:`stopping`) and its result is not delivered. Waits at most ``deadline`` s for the
        thread to end; True when it has. Safe to call again, and from the worker thread."""
        with self._cond:
            first = not self.stopping.is_set()
            self.stopping.set()
            self._pending = None
            self._kept.clear()
            self._tick = None
            self._cond.notify()
        if first and self._cancel is not None:
            try:
                self._cancel()
            except Exception as exc:  # noqa: BLE001 - stopping must not fail
                _report(exc, None, self.name)
        return self.join(deadline)

    def join(self, timeout: float | None = None) -> bool:
        """Wait at most ``timeout`` s (None: as long as it takes) for the thread to end."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---------------------------------------------------------------------------- loop
    def _next(self) -> tuple[Callable[[], Any], bool] | None:
        """(the next callable, whether it is a tick), or None to end. Waits for work."""
        with self._cond:
            while True:
                if self.stopping.is_set():
                    return None
                if self._kept:
                    fn, is_tick = self._kept.popleft(), False
                    break
                if self._pending is not None:
                    fn, self._pending, is_tick = self._pending, None, False
                    break
                if self._tick is not None:
                    wait = self._next_tick - time.monotonic()
                    if wait <= 0:
                        fn, is_tick = self._tick, True
                        self._next_tick = time.monotonic() + self._every
                        break
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            self._running = True
            return fn, is_tick

    def _loop(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            fn, is_tick = job
            try:
                result = fn()
                if is_tick:
                    self.ticks += 1
                else:
                    self.requests_run += 1
                if result is not None and self.deliver is not None and not self.stopping.is_set():
                    self.deliver(result)
            except Exception as exc:  # noqa: BLE001 - reported, and the thread goes on
                self.errors += 1
                self.last_error = exc
                if not self.stopping.is_set():
                    _report(exc, self.on_error, self.name)
            finally:
                with self._cond:
                    self._running = False

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "running"
        return f"<LatestWorker {self.name!r} {state}{'' if self.alive else ', ended'}>"


# ------------------------------------------------------------------------------ task queue
class TaskQueue:
    """Tasks run one after another in one thread, each exactly once: none is ever dropped.

    The thread is made at the first :meth:`submit` (named ``name``), is not a daemon (Python
    finishes its queue before it exits), and ends at :meth:`shutdown` once the queue is done.
    """

    def __init__(self, name: str, owner: Any = None) -> None:
        self.name = name
        self._owner = _weak(owner)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._futures: set[concurrent.futures.Future] = set()
        self._lock = threading.Lock()
        self._closed = False
        register(self)

    def submit(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Queue ``fn()``; its Future. RuntimeError once the queue is shut down."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: the queue is shut down")
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
            fut = self._executor.submit(fn)
            self._futures.add(fut)
        fut.add_done_callback(self._forget)
        return fut

    def _forget(self, fut: concurrent.futures.Future) -> None:
        with self._lock:
            self._futures.discard(fut)

    @property
    def owner(self) -> Any:
        return self._owner()

    @property
    def alive(self) -> bool:
        """Tasks are waiting or running."""
        with self._lock:
            return bool(self._futures)

    def shutdown(self, deadline: float | None = 0.0) -> bool:
        """Take no more tasks; the queued ones still run. Waits at most ``deadline`` s (None:
        until the queue is done); True when it is done and its thread has ended."""
        with self._lock:
            self._closed = True
        return self.join(deadline)

    def join(self, timeout: float | None = None) -> bool:
        with self._lock:
            pending = set(self._futures)
            executor = self._executor
        done = not concurrent.futures.wait(pending, timeout).not_done if pending else True
        if done and executor is not None and self._closed:
            executor.shutdown(wait=True)  # the queue is empty: the thread ends at once
        return done

