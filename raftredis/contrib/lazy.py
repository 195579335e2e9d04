"""This process's Candidate for the framework integrations, built and started on first use.

:class:`LazyCandidate` builds its Candidate (``Candidate.from_config``) only
when it is first needed, so never in a process that only forks workers
(``gunicorn --preload``), and anew in a forked child. :class:`Hooks` keeps
receivers and ``while_leader`` functions registered at import time and
attaches them to every Candidate built later.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from .. import signals
from ..candidate import Candidate
from ..errors import NotRunningError
from ..leadership import LeaderFunction
from .settings import Settings

__all__ = ["RETRY_AFTER", "Hooks", "LazyCandidate"]

log = logging.getLogger("raftredis.contrib")

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds between two implicit start attempts after one failed (Redis down, say),
#: so that every request does not wait for its own failed connection.
RETRY_AFTER = 5.0


# ------------------------------------------------------ receivers, leader work


def _check_event(event: str) -> None:
    try:
        signals.by_name(event)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


class Hooks:
    """Receivers and ``while_leader`` functions for Candidates that do not exist yet.

    Register them at import time (``hooks.on("elected", fn)``,
    ``@hooks.while_leader``); each :class:`LazyCandidate` using these hooks
    attaches them to its Candidate when it builds one, and functions registered
    later are attached to the Candidates already built in this process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._receivers: list[tuple[str, Callable[..., Any]]] = []
        self._leader_functions: list[LeaderFunction] = []
        self._lazies: weakref.WeakSet[LazyCandidate] = weakref.WeakSet()
        _all_hooks.add(self)

    def on(self, event: str, receiver: F | None = None) -> Any:
        """Connect ``receiver`` to a signal of every Candidate built with these hooks.

        ``event`` is a signal name or a node-raft-redis event name, as for
        :meth:`raftredis.Candidate.on` (``ValueError`` for an unknown one).
        Usable as a decorator. Returns the receiver.
        """
        _check_event(event)

        def connect(fn: F) -> F:
            with self._lock:
                self._receivers.append((event, fn))
                for lazy in list(self._lazies):
                    candidate = lazy.current()
                    if candidate is not None:
                        candidate.on(event, fn)
            return fn

        return connect(receiver) if receiver is not None else connect

    def while_leader(self, fn: LeaderFunction) -> LeaderFunction:
        """Run ``fn(stop_event)`` in its own thread each time a Candidate built here leads.

        See :meth:`raftredis.Candidate.while_leader`. Usable as a decorator;
        ``TypeError`` if ``fn`` is not callable.
        """
        if not callable(fn):
            raise TypeError(f"while_leader needs a callable, got {fn!r}")
        with self._lock:
            self._leader_functions.append(fn)
            for lazy in list(self._lazies):
                candidate = lazy.current()
                if candidate is not None:
                    candidate.while_leader(lazy.wrap(fn))
        return fn

    def _build(self, lazy: LazyCandidate) -> Candidate:
        # Built and published under the lock, so on()/while_leader() never miss it.
        with self._lock:
            candidate = Candidate.from_config(lazy.settings.config())
            for event, fn in self._receivers:
                candidate.on(event, fn)
            for fn in self._leader_functions:
                candidate.while_leader(lazy.wrap(fn))
            lazy._candidate = candidate
            lazy._pid = os.getpid()
            self._lazies.add(lazy)
        return candidate

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


# ----------------------------------------------------------- lazy candidate


class LazyCandidate:
    """This process's Candidate for one configuration, built and started on first use.

    Nothing happens when it is created: no Candidate, no connection, no thread.
    :meth:`get` builds the Candidate (attaching ``hooks``) and starts it;
    :meth:`try_start` does the same for implicit starts (a request), without
    raising or waiting for another thread's start. In a forked child the
    parent's Candidate is forgotten and a new one, with an id of its own, is
    built on first use there.

    ``wrap(fn)`` adapts each ``while_leader`` function (Flask pushes an
    application context around it, for example).
    """

    def __init__(
        self,
        settings: Settings,
        hooks: Hooks,
        *,
        wrap: Callable[[LeaderFunction], LeaderFunction] | None = None,
        label: str = "raftredis",
        retry_after: float = RETRY_AFTER,
    ) -> None:
        if not settings.ok:
            raise settings.error()
        self.settings = settings
        self.label = label
        self.retry_after = retry_after
        self.last_error: BaseException | None = None
        self._hooks = hooks
        self._wrap = wrap
        self._lock = threading.Lock()
        self._candidate: Candidate | None = None
        self._pid = os.getpid()
        self._retry_at = 0.0
        _all_lazies.add(self)

    def wrap(self, fn: LeaderFunction) -> LeaderFunction:
        """``fn`` as attached to this Candidate (see the class docstring)."""
        return fn if self._wrap is None else self._wrap(fn)

    def current(self) -> Candidate | None:
        """This process's Candidate if it was built (running or not), else None. No I/O."""
        candidate = self._candidate
        return candidate if candidate is not None and self._pid == os.getpid() else None

    def running(self) -> Candidate | None:
        """This process's Candidate if it runs, else None. No I/O."""
        candidate = self.current()
        return candidate if candidate is not None and candidate.is_running else None

    def get(self, *, start: bool = True, timeout: float | None = None) -> Candidate:
        """This process's Candidate, built if needed, and started if ``start``.

        Raises what ``Candidate.start()`` raises (``BackendError`` when Redis
        cannot be reached); the next call then tries again with a new Candidate.
        """
        with self._lock:
            return self._get(start, timeout)

    def try_start(self) -> Candidate | None:
        """Start this process's Candidate if it is not running; never raises.

        Returns the running Candidate, or None when it could not start (logged;
        the next attempt comes :attr:`retry_after` seconds later), when another
        thread is starting it right now, or when the interpreter is exiting.
        """
        candidate = self.running()
        if candidate is not None:
            return candidate
        if _exiting or time.monotonic() < self._retry_at:
            return None
        if not self._lock.acquire(blocking=False):
            return None  # another thread is starting it: do not queue requests behind it
        try:
            return self._get(True, None)
        except Exception as exc:
            self.last_error = exc
            self._retry_at = time.monotonic() + self.retry_after
            log.warning(
                "%s: could not start the raftredis Candidate of kind %r (retrying in %g s): %s",
                self.label,
                self.settings.kind,
                self.retry_after,
                exc,
            )
            return None
        finally:
            self._lock.release()

    def stop(self, timeout: float | None = None) -> None:
        """Stop this process's Candidate (resign, leave); the next use builds a new one."""
        with self._lock:
            candidate = self.current()
            self._candidate = None
        if candidate is not None:
            candidate.stop(timeout)

    def _get(self, start: bool, timeout: float | None) -> Candidate:
        if self._pid != os.getpid():
            self._forget()  # a fork that bypassed the at-fork hooks
        candidate = self._candidate or self._hooks._build(self)
        if start and not candidate.is_running:
            if _exiting:
                raise NotRunningError("the interpreter is exiting: not starting a Candidate")
            try:
                try:
                    candidate.start(timeout)
                except NotRunningError:
                    # Stopped by someone (a Candidate runs only once): start a new one.
                    candidate = self._hooks._build(self)
                    candidate.start(timeout)
            except BaseException:
                # A Candidate whose start() failed may not start again: build anew next time.
                self._candidate = None
                raise
            self.last_error = None
            self._retry_at = 0.0
        return candidate

    def _forget(self) -> None:
        self._candidate = None
        self._pid = os.getpid()
        self._retry_at = 0.0
        self.last_error = None

    def _after_fork(self) -> None:
        # The child is single-threaded here: a lock held by a parent thread is replaced.
        self._lock = threading.Lock()
        self._forget()


_all_hooks: weakref.WeakSet[Hooks] = weakref.WeakSet()
_all_lazies: weakref.WeakSet[LazyCandidate] = weakref.WeakSet()
_exiting = False


def _after_fork_in_child() -> None:
    for hooks in list(_all_hooks):
        hooks._after_fork()
    for lazy in list(_all_lazies):
        lazy._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _refuse_starts_at_exit() -> None:
    # Registered after raftredis.candidate's own hook, so it runs before it: no request
    # thread starts a new Candidate while the running ones are stopped.
    global _exiting
    _exiting = True
