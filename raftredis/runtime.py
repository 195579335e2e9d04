"""The seam between raftredis' background threads and the system: threads, queues, time.

The dispatcher, the leader work and the heartbeat start threads, block on
queues and events, and read the clock only through a :class:`Runtime`, in
the manner of kazoo's handlers. :data:`THREADING` (real threads, real time)
is the default; unit tests pass a fake whose time moves only when the test
advances it (``tests/unit/fake_runtime.py``).

Locks are not part of the seam: they guard short critical sections and are
never held across a wait, so they cannot block on time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

__all__ = ["THREADING", "Event", "Queue", "Runtime", "Task", "ThreadingRuntime", "is_current"]

T = TypeVar("T")


class Task(Protocol):
    """A started thread of a runtime (a ``threading.Thread`` is one)."""

    @property
    def ident(self) -> int | None:
        """The ``threading.get_ident()`` of the thread that runs it."""

    def join(self, timeout: float | None = None) -> None:
        """Wait until it ends, at most ``timeout`` seconds."""

    def is_alive(self) -> bool:
        """True until its target returns."""


class Event(Protocol):
    """A flag threads wait for (a ``threading.Event`` is one)."""

    def set(self) -> None:
        """Set the flag and wake every waiter."""

    def is_set(self) -> bool:
        """True once set."""

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set, at most ``timeout`` seconds; True if it is set."""


class Queue(Protocol[T]):
    """A FIFO between threads (``queue.Queue`` and ``queue.SimpleQueue`` are ones).

    The timed calls raise ``queue.Full`` and ``queue.Empty`` like the stdlib's.
    """

    def put(self, item: T, *, timeout: float | None = None) -> None:
        """Add ``item``; if the queue is bounded and full, wait up to ``timeout`` for room."""

    def put_nowait(self, item: T) -> None:
        """Add ``item``, or raise ``queue.Full`` at once."""

    def get(self, *, timeout: float | None = None) -> T:
        """Take the oldest item, waiting up to ``timeout`` for one."""

    def get_nowait(self) -> T:
        """Take the oldest item, or raise ``queue.Empty`` at once."""


class Runtime(Protocol):
    """What raftredis' background threads need from the system."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (``time.monotonic``)."""

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds``."""

    def spawn(self, target: Callable[[], object], *, name: str) -> Task:
        """Run ``target`` on a new daemon thread called ``name``; return it started."""

    def event(self) -> Event:
        """A new unset event."""

    def queue(self, maxsize: int = 0) -> Queue[T]:
        """A new queue holding at most ``maxsize`` items (0: unbounded)."""


class ThreadingRuntime:
    """The real runtime: ``threading`` threads and events, stdlib queues, ``time``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def spawn(self, target: Callable[[], object], *, name: str) -> Task:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def event(self) -> Event:
        return threading.Event()

    def queue(self, maxsize: int = 0) -> Queue[T]:
        # SimpleQueue (implemented in C) where no bound is needed: the heartbeat's inbox.
        if maxsize <= 0:
            return queue.SimpleQueue()
        return queue.Queue(maxsize)


#: The runtime every part uses unless given another.
THREADING: Runtime = ThreadingRuntime()


def is_current(task: Task) -> bool:
    """True when called on ``task``'s own thread (which must not join itself)."""
    return task.ident == threading.get_ident()
