"""The thread that moves a free-running :class:`~studio.dreams.session.DreamSession`'s chains."""

from __future__ import annotations

import threading
from typing import Any, Callable

from studio.dreams.session import DreamSession


class _Wakeup(threading.Event):
    """The session's "an intent arrived" flag, which also hands the intent to the runner."""

    def __init__(self, on_set: Callable[[], None]) -> None:
        super().__init__()
        self._on_set = on_set

    def set(self) -> None:
        super().set()
        self._on_set()


class DreamRunner:
    """Moves a free-running session's chains in a :class:`studio.worker.LatestWorker` (a
    daemon thread named `name`), at most `max_fps` frames a second (a frame is
    `steps_per_frame` Gibbs steps), applying the UI's intents between frames. Paused, it
    still applies intents at once (a reset while paused shows the new start): the session's
    ``wakeup`` hands them to the worker, the newest replacing any waiting one.

    The UI pulls :meth:`DreamSession.latest` at its own pace; nothing is queued per frame.
    While it dreams it counts as a sampler for the thread policy (`models.device.claim`).
    """

    def __init__(self, session: DreamSession, max_fps: float = 60.0, name: str = "dreams-sampler",
                 on_error: Callable[[str], None] | None = None, owner: Any = None) -> None:
        if session.sampler is None:
            raise ValueError("only a free-running session has chains to run")
        self.session = session
        self.max_fps = float(max_fps)
        self.name = name
        self.on_error = on_error
        self.owner = owner
        self.worker: Any = None  # a studio.worker.LatestWorker once started
        self._lock = threading.Lock()
        self._release: Callable[[], None] | None = None  # the sampler's claim on a core
        self.frames = 0  # frames stepped so far
        self.error: str | None = None

    # ------------------------------------------------------------------------- control
    def start(self, paused: bool = False) -> "DreamRunner":
        from studio.worker import LatestWorker

        if self.worker is not None:
            raise RuntimeError("a DreamRunner starts once")
        self.worker = LatestWorker(self.name, on_error=self._failed, owner=self.owner, cancel=self._cancel)
        self.session.wakeup = _Wakeup(self._intent)
        if not paused:
            self.resume()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the thread and wait for it (at most `timeout` s). True when it has ended."""
        self._dreaming(False)
        if self.worker is None:
            self.session.cancel()
            return True
        return self.worker.shutdown(timeout)

    @property
    def alive(self) -> bool:
        return self.worker is not None and self.worker.alive

    @property
    def paused(self) -> bool:
        return self.worker is None or not self.worker.ticking

    def pause(self) -> None:
        self._dreaming(False)

    def resume(self) -> None:
        self._dreaming(True)

    def single_step(self) -> None:
        """One frame now (pausing first if running)."""
        self._dreaming(False)
        if self.worker is not None:
            self.worker.submit(self._frame, keep=True)

    # ------------------------------------------------------------------------ internals
    def _dreaming(self, on: bool) -> None:
        with self._lock:
            w = self.worker
            if on and w is not None and not w.stopped and not w.ticking:
                self._release = self._release or _claim_sampler()
                w.tick(self._frame, 1.0 / self.max_fps if self.max_fps > 0 else 0.0)
            elif not on:
                if w is not None:
                    w.tick(None)
                if self._release is not None:
                    self._release()
                    self._release = None

    def _cancel(self) -> None:
        """The worker is shut down (by :meth:`stop` or ``studio.worker.shutdown_all``): the
        frame in flight stops at its next chunk, and the sampler's claim on a core goes."""
        self.session.cancel()
        self._dreaming(False)

    def _intent(self) -> None:
        """An intent arrived (UI thread): a paused runner applies it now; a running one at
        its next frame."""
        w = self.worker
        if w is not None and not w.ticking:
            w.submit(self.session.apply_pending)

    def _frame(self) -> None:
        if self.session.step() is not None:
            self.frames += 1

    def _failed(self, e: BaseException) -> None:  # keep the message; the UI shows it
        self.error = f"the dreams stopped: {type(e).__name__}: {e}"
        self.session.error = self.error
        self._dreaming(False)
        if self.worker is not None:
            self.worker.shutdown(0.0)
        if self.on_error is not None:
            self.on_error(self.error)


def _claim_sampler() -> Callable[[], None]:
    from models.device import claim

    return claim("sampler")
