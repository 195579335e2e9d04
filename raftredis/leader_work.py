"""``while_leader``: run functions in their own threads while this instance leads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .errors import ReceiverError

__all__ = ["LeaderFunction", "LeaderWork", "Leadership"]

log = logging.getLogger("raftredis")



class Leadership(threading.Event):
    """The stop event handed to a ``while_leader`` function.

    It is set the moment leadership is lost. ``term`` is the term this
    leadership holds: use it as the fencing token of the work the function
    does (it never changes, unlike ``Candidate.current_term``).
    """

    def __init__(self, term: int) -> None:
        super().__init__()
        self.term = term


LeaderFunction = Callable[[Leadership], object]


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
        self._running: list[tuple[Leadership, threading.Thread]] = []
        self._term: int | None = None

    def add(self, fn: LeaderFunction) -> None:
        """Register ``fn``; start it at once if this instance leads now."""
        with self._lock:
            self._functions.append(fn)
            if self._term is not None:
                self._launch(fn, self._term)

    def elected(self, term: int) -> None:
        """This instance now leads in ``term``: start every function."""
        with self._lock:
            self._term = term
            self._running = [(e, t) for e, t in self._running if t.is_alive()]
            for fn in self._functions:
                self._launch(fn, term)

    def lost(self) -> None:
        """Leadership ended: tell every running function to stop."""
        with self._lock:
            self._term = None
            for stop_event, _ in self._running:
                stop_event.set()

    def join(self, timeout: float | None) -> None:
        self.lost()
        with self._lock:
            threads = [t for _, t in self._running]
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    def _launch(self, fn: LeaderFunction, term: int) -> None:
        stop_event = Leadership(term)
        name = getattr(fn, "__name__", "fn")
        thread = threading.Thread(
            target=self._call, args=(fn, stop_event), name=f"{self._name}-{name}", daemon=True
        )
        self._running.append((stop_event, thread))
        thread.start()

    def _call(self, fn: LeaderFunction, stop_event: Leadership) -> None:
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
