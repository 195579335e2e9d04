"""The supervisor behind ``raftredis run``: run a command only while this instance leads.

Threads: raftredis' own threads only report (a ``while_leader`` function
queues each new :class:`~raftredis.Leadership` and wakes the main thread when
it ends); every process is started, signalled and reaped by the main thread,
which also receives SIGINT/SIGTERM/SIGHUP. One thread owning the child keeps
the order of events simple: the command is always stopped before leadership
is handed over, and never started for a leadership that has already ended.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from ..candidate import Candidate
from ..errors import BackendError
from ..leadership import Leadership
from .child import Child, ChildStartError, exit_status
from .common import redis_failure
from .options import Target

__all__ = ["EventLog", "Supervisor"]

#: A command that ran this long before exiting is restarted after the initial delay again.
STABLE_RUN = 30.0
MAX_RESTART_DELAY = 30.0
_TICK = 0.1
_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class EventLog:
    """The supervisor's own lines, on stderr (stdout is the command's): text or JSON."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def __call__(self, event: str, text: str, **fields: Any) -> None:
        """Report ``event``: ``text`` for people, ``fields`` (and the event name) in JSON."""
        if self.as_json:
            line = json.dumps({"time": round(time.time(), 3), "event": event, **fields})
        else:
            now = time.time()
            stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
            line = f"raftredis run {stamp} {text}"
        print(line, file=sys.stderr, flush=True)


class Supervisor:
    """Joins a kind and runs ``command`` while this instance leads; see ``raftredis run``."""

    def __init__(
        self,
        target: Target,
        command: Sequence[str],
        *,
        grace: float,
        lease_ttl: float,
        meta: Any,
        once: bool,
        restart_delay: float,
        log: EventLog,
    ) -> None:
        self.target = target
        self.command = list(command)
        self.grace = grace
        self.once = once
        self.restart_delay = restart_delay
        self.log = log
        self.candidate = Candidate(
            redis=target.url,
            kind=target.kind,
            key_prefix=target.prefix,
            lease_ttl=lease_ttl,
            meta=meta,
        )
        self._wake = threading.Event()
        self._elections: queue.SimpleQueue[Leadership] = queue.SimpleQueue()
        self._leadership: Leadership | None = None
        self._child: Child | None = None
        self._signals: list[int] = []
        self._restart_at = 0.0
        self._next_delay = restart_delay

    # ------------------------------------------------------------ threads

    def _while_leader(self, leadership: Leadership) -> None:
        """On a raftredis leader thread: hand the leadership to the main thread."""
        self._elections.put(leadership)
        self._wake.set()
        leadership.wait()
        self._wake.set()

    def _on_error(self, sender: object, error: BaseException, **extra: object) -> None:
        self.log("error", f"raftredis: {error}", message=str(error))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # No Event.set() here: the handler may run while this thread holds the
        # event's lock (in clear()), and would deadlock. The loop polls every _TICK.
        self._signals.append(signum)

    def _hurry(self) -> bool:
        """A second signal while the command is being stopped: SIGKILL it now."""
        return len(self._signals) >= 2

    # ----------------------------------------------------------- the run

    def run(self) -> int:
        """Join, supervise until a signal (or the command's exit with ``once``); the exit code."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in _HANDLED}
        try:
            self.candidate.while_leader(self._while_leader)
            self.candidate.on("error", self._on_error)
            try:
                self.candidate.start()
            except BackendError as exc:
                raise redis_failure(self.target.url, exc) from exc
            c = self.candidate
            leader = "this instance" if c.is_leader else (c.leader_id or "unknown")
            self.log(
                "joined",
                f"joined kind {c.kind} as {c.id} (leader: {leader})",
                id=c.id,
                kind=c.kind,
                leader=c.leader_id,
            )
            try:
                return self._loop()
            finally:
                if self._child is not None:  # only on an unexpected error
                    self._stop_child(signal.SIGTERM, "the supervisor is failing")
                self.candidate.stop()
                self.log("left", f"left kind {c.kind}", id=c.id)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _loop(self) -> int:
        while True:
            self._wake.wait(_TICK)
            self._wake.clear()
            if self._signals:
                return self._shutdown(self._signals[0])
            while not self._elections.empty():
                self._elected(self._elections.get())
            if self._leadership is not None and self._leadership.is_set():
                self._lost()
            if self._child is not None and self._child.poll() is not None:
                code = self._exited()
                if self.once:
                    return code
            if self._should_start():
                assert self._leadership is not None
                try:
                    self._start(self._leadership.term)
                except ChildStartError as exc:
                    self.log("failed", str(exc), message=str(exc), code=exc.code)
                    return exc.code

    # ------------------------------------------------------------- steps

    def _elected(self, leadership: Leadership) -> None:
        if self._leadership is not None:
            self._lost()  # the old one ended before this one began
        self._leadership = leadership
        self.log("elected", f"elected leader (term {leadership.term})", term=leadership.term)

    def _lost(self) -> None:
        assert self._leadership is not None
        term = self._leadership.term
        self._leadership = None
        self.log("lost", f"leadership lost (term {term})", term=term)
        if self._child is not None:
            self._stop_child(signal.SIGTERM, "leadership lost")

    def _should_start(self) -> bool:
        lead = self._leadership
        return (
            lead is not None
            and not lead.is_set()
            and self._child is None
            and time.monotonic() >= self._restart_at
        )

    def _start(self, term: int) -> None:
        env = dict(os.environ)
        env.update(
            RAFTREDIS_KIND=self.target.kind,
            RAFTREDIS_PREFIX=self.target.prefix,
            RAFTREDIS_ID=self.candidate.id,
            RAFTREDIS_TERM=str(term),
        )
        self._child = Child(self.command, env, self.grace)
        text = shlex.join(self.command)
        self.log(
            "started", f"started `{text}` (pid {self._child.pid})", pid=self._child.pid, term=term
        )

    def _stop_child(self, signum: int, why: str) -> None:
        child = self._child
        assert child is not None
        self.log(
            "stopping",
            f"{why}: sending {signal_name(signum)} to pid {child.pid} and its group"
            f" (SIGKILL after {self.grace:g}s)",
            pid=child.pid,
            signal=signal_name(signum),
        )
        code = child.stop(signum, self._hurry)
        self._child = None
        self.log(
            "stopped",
            f"command stopped ({_describe_exit(code)})",
            pid=child.pid,
            code=exit_status(code),
        )

    def _exited(self) -> int:
        child = self._child
        assert child is not None
        code = child.reap()
        self._child = None
        ran = time.monotonic() - child.started
        self.log(
            "exited",
            f"command exited by itself ({_describe_exit(code)}) after {ran:.1f}s",
            pid=child.pid,
            code=exit_status(code),
        )
        if ran >= STABLE_RUN:
            self._next_delay = self.restart_delay
        delay = self._next_delay
        self._next_delay = min(max(delay * 2, self.restart_delay), MAX_RESTART_DELAY)
        self._restart_at = time.monotonic() + delay
        if not self.once and self._leadership is not None:
            self.log("restarting", f"restarting it in {delay:g}s", delay=delay)
        return exit_status(code)

    def _shutdown(self, signum: int) -> int:
        name = signal_name(signum)
        self.log("signal", f"received {name}: stopping", signal=name)
        if self._child is not None:
            self._stop_child(signum, f"forwarding {name}")
        return 0


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"killed by {signal_name(-returncode)}"
    return f"exit code {returncode}"
