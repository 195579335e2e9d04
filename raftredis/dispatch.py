"""Delivering signals to receivers: isolated calls, and the dispatch thread.

blinker's ``send()`` stops at the first receiver that raises; :func:`deliver`
calls each receiver itself so one bad receiver cannot starve the others.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from typing import Any

from blinker import NamedSignal

from . import signals
from .errors import ReceiverError, SignalOverflowError
from .models import Message
from .runtime import THREADING, Queue, Runtime, Task, is_current

__all__ = ["Dispatcher", "deliver", "deliver_message", "report_error"]

log = logging.getLogger("raftredis")


def deliver(signal: NamedSignal, sender: object, kwargs: Mapping[str, Any]) -> None:
    """Call every receiver of ``signal`` for ``sender``; report the ones that raise."""
    for receiver in list(signal.receivers_for(sender)):
        try:
            receiver(sender, **kwargs)
        except Exception as exc:
            name = getattr(receiver, "__qualname__", repr(receiver))
            if signal is signals.error_occurred:
                # An error in an error receiver is only logged: no loops.
                log.exception("receiver %s of %s raised", name, signal.name)
                continue
            log.exception("receiver %s of %s raised", name, signal.name)
            error = ReceiverError(
                f"receiver {name} of signal {signal.name!r} raised {type(exc).__name__}: {exc}",
                receiver=receiver,
            )
            error.__cause__ = exc
            report_error(sender, error)


def deliver_message(sender: object, message: Message) -> None:
    """A received message's signals: ``message_received``, then ``message_from_leader``
    or ``message_from_follower`` (each receiver isolated), on the calling thread."""
    deliver(signals.message_received, sender, {"message": message})
    follow_up = (
        signals.message_from_leader if message.from_leader else signals.message_from_follower
    )
    deliver(follow_up, sender, {"message": message})


def report_error(sender: object, error: BaseException) -> None:
    """Send ``error_occurred`` on the calling thread (each receiver isolated)."""
    deliver(signals.error_occurred, sender, {"error": error})


_STOP = object()


class Dispatcher:
    """A thread that delivers state signals in order, off the heartbeat thread.

    The queue is bounded; when it is full a signal is dropped and counted,
    and the count is reported as :class:`SignalOverflowError` once there is
    room again. ``submit`` never blocks.
    """

    def __init__(
        self, sender: object, name: str, maxsize: int = 10_000, *, runtime: Runtime = THREADING
    ) -> None:
        self._sender = sender
        self._name = name
        self._runtime = runtime
        self._queue: Queue[Any] = runtime.queue(maxsize)
        self._dropped = 0
        self._lock = threading.Lock()
        #: The dispatch thread, once started.
        self.thread: Task | None = None

    def start(self) -> None:
        """Start the dispatch thread."""
        # It may deliver before spawn() returns; a receiver calling stop() meanwhile
        # finds no thread to join, which is right: it runs on that thread.
        self.thread = self._runtime.spawn(self._run, name=self._name)

    def submit(self, signal: NamedSignal, kwargs: Mapping[str, Any]) -> bool:
        """Queue a signal for delivery; False (and counted) if the queue is full."""
        try:
            self._queue.put_nowait((signal, kwargs))
            return True
        except queue.Full:
            with self._lock:
                self._dropped += 1
            log.warning("dispatch queue full: dropped %s", signal.name)
            return False

    def stop(self, timeout: float | None) -> None:
        """Deliver what is queued, then end the thread (waits up to ``timeout``)."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            log.warning("dispatch queue still full at stop: remaining signals dropped")
        thread = self.thread
        if thread is not None and thread.is_alive() and not is_current(thread):
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            signal, kwargs = item
            deliver(signal, self._sender, kwargs)
            with self._lock:
                dropped, self._dropped = self._dropped, 0
            if dropped:
                report_error(self._sender, SignalOverflowError(dropped))
