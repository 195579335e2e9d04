"""FakeRuntime: raftredis' runtime seam on fake time, for fast deterministic unit tests.

Spawned targets run on real threads, but every wait they make through the
runtime (events, queues, joins, sleeps) is on fake time, which moves only
when the test calls :meth:`FakeRuntime.advance`. :meth:`FakeRuntime.settle`
returns once every spawned thread has ended or is blocked on something that
cannot happen before the test acts (an unset event, an empty queue, a
deadline later than now). So a test acts, settles, and checks: it never
sleeps, and "nothing happened" is as checkable as "something happened".

A spawned thread must block only through the runtime: one blocked anywhere
else (a ``threading.Event``) never counts as settled, and ``settle`` fails
after :attr:`FakeRuntime.real_limit` seconds of real time instead of hanging.

Waits on the test's own thread (``Dispatcher.stop`` joining, say) return as
soon as their condition holds; when it cannot hold until time moves (all
spawned threads settled), a timed wait gives up at once without moving time
and an untimed one raises :class:`Deadlock`.

It lives in tests/ rather than raftredis/: it is test machinery, and the
library only needs the seam (:mod:`raftredis.runtime`).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from raftredis.runtime import Event, Queue, Task

__all__ = ["Deadlock", "FakeRuntime"]

T = TypeVar("T")


class Deadlock(AssertionError):
    """A wait on the test's thread can never end, or spawned threads never settle."""


class _Closed(BaseException):
    """Unwinds a spawned thread still waiting when the runtime is closed.

    A BaseException, so the code under test (``except Exception``) lets it through.
    """


class _Wait:
    """What a blocked spawned thread waits for: a condition, or a fake-time deadline."""

    def __init__(self, ready: Callable[[], bool], deadline: float | None) -> None:
        self.ready = ready
        self.deadline = deadline


class FakeTask:
    """A spawned target: a real daemon thread whose state the runtime tracks."""

    def __init__(self, runtime: FakeRuntime, target: Callable[[], object], name: str) -> None:
        self._runtime = runtime
        self._target = target
        self.name = name
        self.done = False
        #: What the thread waits for while blocked in the runtime, else None.
        self.waiting: _Wait | None = None
        #: The exception the target raised, if any (settle() re-raises it).
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def join(self, timeout: float | None = None) -> None:
        if self.ident == threading.get_ident():
            raise RuntimeError("cannot join current thread")
        with self._runtime.cond:
            self._runtime.block(lambda: self.done, timeout)

    def is_alive(self) -> bool:
        with self._runtime.cond:
            return not self.done

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target()
        except _Closed:
            pass
        except BaseException as exc:  # reported by settle(): the test must fail
            self.error = exc
        finally:
            with self._runtime.cond:
                self.done = True
                self.waiting = None
                self._runtime.cond.notify_all()

    def real_join(self, timeout: float) -> None:
        self._thread.join(timeout)


class FakeEvent:
    """An event whose waits are on the runtime's fake time."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self._runtime = runtime
        self._flag = False

    def set(self) -> None:
        with self._runtime.cond:
            self._flag = True
            self._runtime.cond.notify_all()

    def is_set(self) -> bool:
        with self._runtime.cond:
            return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        with self._runtime.cond:
            return self._runtime.block(lambda: self._flag, timeout)


class FakeQueue(Generic[T]):
    """A FIFO whose blocking calls wait on fake time; ``maxsize`` <= 0 is unbounded."""

    def __init__(self, runtime: FakeRuntime, maxsize: int) -> None:
        self._runtime = runtime
        self._maxsize = maxsize
        self._items: deque[T] = deque()

    def _has_room(self) -> bool:
        return self._maxsize <= 0 or len(self._items) < self._maxsize

    def put(self, item: T, *, timeout: float | None = None) -> None:
        with self._runtime.cond:
            if not self._runtime.block(self._has_room, timeout):
                raise queue.Full
            self._items.append(item)
            self._runtime.cond.notify_all()

    def put_nowait(self, item: T) -> None:
        self.put(item, timeout=0)

    def get(self, *, timeout: float | None = None) -> T:
        with self._runtime.cond:
            if not self._runtime.block(lambda: bool(self._items), timeout):
                raise queue.Empty
            item = self._items.popleft()
            self._runtime.cond.notify_all()
            return item

    def get_nowait(self) -> T:
        return self.get(timeout=0)

    def __len__(self) -> int:
        with self._runtime.cond:
            return len(self._items)


class FakeRuntime:
    """A :class:`raftredis.runtime.Runtime` on fake time; see the module docstring.

    Use it as a context manager (or call :meth:`close`) so that threads still
    blocked at the end of a test are unwound.
    """

    def __init__(self, start: float = 1000.0, *, real_limit: float = 2.0) -> None:
        #: Guards the fake time and the state of every fake event, queue and task.
        self.cond = threading.Condition()
        self._now = start
        #: Real seconds a wait on the test's thread may take before Deadlock.
        self.real_limit = real_limit
        self.tasks: list[FakeTask] = []
        self._closed = False

    # ----------------------------------------------------------- the seam

    def monotonic(self) -> float:
        with self.cond:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self.cond:
            self.block(lambda: False, seconds)

    def spawn(self, target: Callable[[], object], *, name: str) -> Task:
        task = FakeTask(self, target, name)
        with self.cond:
            if self._closed:
                raise RuntimeError("the FakeRuntime is closed")
            self.tasks.append(task)
        task.start()
        return task

    def event(self) -> Event:
        return FakeEvent(self)

    def queue(self, maxsize: int = 0) -> Queue[T]:
        return FakeQueue(self, maxsize)

    # ------------------------------------------------------ test controls

    def advance(self, seconds: float) -> float:
        """Move fake time forward, then settle; return the new time."""
        if not seconds >= 0:
            raise ValueError(f"time only moves forward, not by {seconds!r}")
        with self.cond:
            self._now += seconds
            self.cond.notify_all()
        self.settle()
        return self.monotonic()

    def settle(self) -> None:
        """Wait (real time, bounded) until no spawned thread can go on before the test acts.

        Re-raises the first exception a spawned target let escape.
        """
        with self.cond:
            if not self.cond.wait_for(self._settled, self.real_limit):
                raise Deadlock(f"spawned threads did not settle: {self._describe()}")
            self._raise_task_error()

    def close(self) -> None:
        """Unwind every spawned thread still waiting, and wait for them to end."""
        with self.cond:
            self._closed = True
            self.cond.notify_all()
        for task in self.tasks:
            task.real_join(self.real_limit)
        with self.cond:
            self._raise_task_error()

    def __enter__(self) -> FakeRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def running(self) -> list[str]:
        """The names of the spawned threads that have not ended."""
        with self.cond:
            return [t.name for t in self.tasks if not t.done]

    # ------------------------------------------------------ the machinery

    def block(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Wait (``cond`` held) until ``ready()``; False if ``timeout`` fake seconds pass first."""
        deadline = None if timeout is None else self._now + timeout
        me = self._current_task()
        while True:
            if self._closed and me is not None:
                raise _Closed
            if ready():
                return True
            if deadline is not None and self._now >= deadline:
                return False
            if me is None:
                # The test's own thread: once the spawned ones have settled, nothing
                # changes until the test moves time, which it cannot do from in here.
                if self._settled():
                    if deadline is not None:
                        return False
                    raise Deadlock(f"this wait can never end: {self._describe()}")
                if not self.cond.wait(self.real_limit):
                    raise Deadlock(f"spawned threads did not settle: {self._describe()}")
                continue
            me.waiting = _Wait(ready, deadline)
            self.cond.notify_all()  # settle() may be waiting for this thread to block
            try:
                self.cond.wait()
            finally:
                me.waiting = None

    def _current_task(self) -> FakeTask | None:
        me = threading.get_ident()
        return next((t for t in self.tasks if t.ident == me and not t.done), None)

    def _settled(self) -> bool:
        """True when every spawned thread has ended or waits for what has not happened."""
        for task in self.tasks:
            if task.done:
                continue
            wait = task.waiting
            if wait is None or wait.ready():
                return False
            if wait.deadline is not None and self._now >= wait.deadline:
                return False
        return True

    def _describe(self) -> str:
        states = [
            f"{t.name}: {'ended' if t.done else 'blocked' if t.waiting else 'running'}"
            for t in self.tasks
        ]
        return ", ".join(states) or "no threads"

    def _raise_task_error(self) -> None:
        for task in self.tasks:
            if task.error is not None:
                error, task.error = task.error, None
                raise AssertionError(f"spawned target {task.name} raised") from error
