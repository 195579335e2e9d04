"""``while_leader``: run functions in their own threads while this instance leads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .errors import ReceiverError

__all__ = ["LeaderFunction", "LeaderWork"]

log = logging.getLogger("raftredis")

LeaderFunction = Callable[[threading.Event], object]


class LeaderWork:
    """Starts each registered function on election; sets its stop event on demotion.

    Runs on the heartbeat thread's callbacks, so it only starts threads and
    sets events: never user code.
    """

    def __init__(self, name: str, report: Callable[[BaseException], None]) -> None:
        self._name = name
        self._report = report
        self._lock = threading.Lock()
        self._functions: list[LeaderFunction] = []
        self._running: list[tuple[threading.Event, threading.Thread]] = []
        self._leading = False

    def add(self, fn: LeaderFunction) -> None:
        """Register ``fn``; start it at once if this instance leads now."""
        with self._lock:
            self._functions.append(fn)
            if self._leading:
                self._launch(fn)

    def elected(self) -> None:
        with self._lock:
            self._leading = True
            self._running = [(e, t) for e, t in self._running if t.is_alive()]
            for fn in self._functions:
                self._launch(fn)

    def lost(self) -> None:
        """Leadership ended: tell every running function to stop."""
        with self._lock:
            self._leading = False
            for stop_event, _ in self._running:
                stop_event.set()

    def join(self, timeout: float | None) -> None:
        self.lost()
        with self._lock:
            threads = [t for _, t in self._running]
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _launch(self, fn: LeaderFunction) -> None:
        stop_event = threading.Event()
        name = getattr(fn, "__name__", "fn")
        thread = threading.Thread(
            target=self._call, args=(fn, stop_event), name=f"{self._name}-{name}", daemon=True
        )
        self._running.append((stop_event, thread))
        thread.start()

    def _call(self, fn: LeaderFunction, stop_event: threading.Event) -> None:
        try:
            fn(stop_event)
        except Exception as exc:
            name = getattr(fn, "__qualname__", repr(fn))
            log.exception("while_leader function %s raised", name)
            error = ReceiverError(
                f"while_leader function {name} raised {type(exc).__name__}: {exc}", receiver=fn
            )
            error.__cause__ = exc
            self._report(error)
