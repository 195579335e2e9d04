"""``while_leader``: run functions in their own threads while this instance leads."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

from .errors import ReceiverError
from .runtime import THREADING, Event, Runtime, Task, is_current

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
    sets events: never user code. While functions run, a watchdog thread also
    sets their stop events at the leader's local deadline: the heartbeat
    thread may be blocked in a call to an unresponsive Redis right then.

    ``deadline_of(term)`` gives the monotonic deadline of the leadership in
    ``term``, or None once it has ended.
    """

    def __init__(
        self,
        name: str,
        report: Callable[[BaseException], None],
        deadline_of: Callable[[int], float | None],
        *,
        runtime: Runtime = THREADING,
    ) -> None:
        self._name = name
        self._report = report
        self._deadline_of = deadline_of
        self._runtime = runtime
        self._ended = runtime.event()
        self._watchdog: Task | None = None
        self._lock = threading.Lock()
        self._functions: list[LeaderFunction] = []
        self._running: list[tuple[Leadership, Task]] = []
        self._term: int | None = None

    def add(self, fn: LeaderFunction) -> None:
        """Register ``fn``; start it at once if this instance leads now."""
        with self._lock:
            self._functions.append(fn)
            if self._term is not None:
                self._launch(fn, self._term)
                self._ensure_watchdog(self._term)

    def elected(self, term: int) -> None:
        """This instance now leads in ``term``: start every function."""
        with self._lock:
            self._term = term
            self._running = [(e, t) for e, t in self._running if t.is_alive()]
            for fn in self._functions:
                self._launch(fn, term)
            if self._functions:
                self._ended.set()  # a watchdog of an earlier leadership must not count
                self._ensure_watchdog(term)

    def _ensure_watchdog(self, term: int) -> None:
        """Start the watchdog of this leadership unless it runs (lock held)."""
        if self._watchdog is not None and self._watchdog.is_alive() and not self._ended.is_set():
            return
        self._ended = self._runtime.event()
        self._watchdog = self._runtime.spawn(
            functools.partial(self._watch, term, self._ended), name=f"{self._name}-watchdog"
        )

    def lost(self) -> None:
        """Leadership ended: tell every running function to stop."""
        with self._lock:
            self._term = None
            self._ended.set()
            for stop_event, _ in self._running:
                stop_event.set()

    def _watch(self, term: int, ended: Event) -> None:
        """Set the stop events of ``term`` when its deadline passes (renewals move it)."""
        while True:
            deadline = self._deadline_of(term)
            left = None if deadline is None else deadline - self._runtime.monotonic()
            if left is None or left <= 0:
                with self._lock:
                    for stop_event, _ in self._running:
                        if stop_event.term == term:
                            stop_event.set()
                return
            if ended.wait(left):
                return

    def join(self, timeout: float | None) -> None:
        self.lost()
        with self._lock:
            threads = [t for _, t in self._running]
            if self._watchdog is not None:
                threads.append(self._watchdog)
        for thread in threads:
            if not is_current(thread):
                thread.join(timeout)

    def _launch(self, fn: LeaderFunction, term: int) -> None:
        stop_event = Leadership(term)
        name = getattr(fn, "__name__", "fn")
        thread = self._runtime.spawn(
            functools.partial(self._call, fn, stop_event), name=f"{self._name}-{name}"
        )
        self._running.append((stop_event, thread))

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
