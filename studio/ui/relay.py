"""Bringing the document's events to a Qt view on the view's own (the UI) thread.

The document (:class:`studio.jobs.Session`) announces changes through psygnal signals, on the
thread that made the change: the UI thread for what the person does, a worker for what a
worker makes (the Latent tab's explorer is built on its worker). A view must only be touched on
the UI thread, so it listens through a :class:`Relay`: a call made on the view's thread goes
straight to the slot, one from any other thread is queued to it through a Qt signal (a queued
connection: the way Qt itself hands data between threads). psygnal holds the relay's bound
method weakly, so a view that is gone stops listening by itself; one whose Qt object was deleted
first gets nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal
from shiboken6 import isValid


class Relay(QObject):
    """Calls ``slot`` on this object's thread with what ``signal`` (a psygnal signal) emits."""

    _queued = Signal(tuple)

    def __init__(self, signal: Any, slot: Callable[..., Any], parent: QObject) -> None:
        super().__init__(parent)
        self._slot = slot
        self._queued.connect(self._deliver)
        self._signal = signal
        signal.connect(self.receive)

    def receive(self, *args: Any) -> None:
        """psygnal's callback, on the thread that changed the document."""
        if not isValid(self):
            return
        if QThread.currentThread() is self.thread():
            self._slot(*args)
        else:
            self._queued.emit(args)

    def _deliver(self, args: tuple) -> None:
        self._slot(*args)

    def close(self) -> None:
        """Stop listening (the view is shut down)."""
        self._signal.disconnect(self.receive, missing_ok=True)


def listen(owner: QObject, signal: Any, slot: Callable[..., Any]) -> Relay:
    """``slot`` hears ``signal`` on ``owner``'s thread while ``owner`` lives (kept on it)."""
    relay = Relay(signal, slot, owner)
    relays = owner.__dict__.setdefault("_relays", [])
    relays.append(relay)
    return relay
