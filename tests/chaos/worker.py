"""A chaos-test worker: one real :class:`raftredis.Candidate` in its own process.

Run as::

    python tests/chaos/worker.py --redis URL --kind K --lease-ttl T --log PATH \
        [--id ID] [--name NAME] [--poll-interval S] [--reliable [--reliable-delay S]]

Everything the Candidate does is appended to ``--log`` as JSON lines by an
:class:`event_log.EventLog`: one object per line, each written with a single
``write()`` on an ``O_APPEND`` file (so it is on disk at once and lines of
different threads never mix).
Every line has ``t`` (``time.time()``), ``event``, ``pid``, ``name`` and
``id`` (the Candidate's id). The events:

``starting``, ``started`` (state, term, leader), ``start_failed`` (type, message)
    the lifecycle of ``start()``.
``elected`` (term), ``defeated`` (leader, term), ``state_changed`` (old, new,
term), ``leader_changed`` (leader, term), ``error`` (type, message),
``message`` (payload, sender, scope, from_leader, term), ``joined`` /
``left`` (instance id)
    the Candidate's signals, logged by receivers (dispatch/message threads).
    An ``error`` carries the ``count`` of a MessagesLostError.
``reliable`` (payload, sender, scope, message_id, term, leading)
    with ``--reliable`` (``Candidate(reliable=True)``): a reliable message, logged
    on the reader thread as it is delivered, before raftredis acks it;
    ``leading`` is ``candidate.is_leader`` then. The receiver then sleeps
    ``--reliable-delay`` seconds (a slow receiver: kills land between delivery
    and ack).
``lead_begin`` (term, t, t_call) / ``lead_end`` (term, t_last_true,
t_last_true_after, t_seen_false)
    leadership as seen by a poller thread that reads ``candidate.leader_term``
    (one atomic read) every ``--poll-interval`` seconds. Each read is
    bracketed by two clock reads, ``before`` and ``after``; the Candidate's
    own check happened somewhere in between. ``lead_begin.t`` is ``after``
    of the first read that returned the term and ``lead_end.t_last_true`` is
    ``before`` of the last one, so this process *certainly* believed it led
    during ``[lead_begin.t, lead_end.t_last_true]``, even if it was frozen
    (SIGSTOP) between a read and a clock read. Reads are about a millisecond
    apart, so the belief may have lasted up to that much longer on each side.
    (``t_call`` and ``t_last_true_after`` are the other clock reads.) A term
    that comes back after a gap in the same process is logged as a new
    ``lead_begin`` of the same term; the checker calls that a flicker.
``work_start`` (term) / ``work_stop`` (term, t_set, t_stop, lag, lag_from_last_true)
    a ``while_leader`` function. ``t_set`` is when raftredis set its stop
    event (noted by wrapping ``Leadership.set`` in this process), ``t_stop``
    when the function saw it; ``lag`` is ``t_set`` minus the poller's first
    read that no longer returned that term (negative: the stop event came
    first), ``lag_from_last_true`` the same from the last read that did;
    ``None`` if the poller never saw the term.
``alive`` (every second: running, state, term, leader, leader_term, threads,
missing)
    ``threads`` are the names of this process' ``raftredis-*`` threads;
    ``missing`` are the Candidate's own thread roles (heartbeat, control,
    messages, dispatch) that have no live thread while it runs.
``thread_died`` (thread, type, message, traceback)
    an exception ended a thread (``threading.excepthook``).
``lib_log`` (level, logger, message)
    raftredis' own log records, INFO and up.
``command`` / ``command_error``, ``published`` (count, payload),
``instances`` (ids, leaders), ``signal`` (the SIGTERM/SIGINT received),
``stdin_closed``, ``orphaned`` (the parent died), ``stopped`` (seconds),
``exit``.

Commands come on stdin, one per line: ``reelect``, ``stop`` (stop the
Candidate, keep the process), ``publish <json>`` (``message_all``),
``instances`` (``get_instances()``, logged), ``exit`` (stop, then exit 0).
End of stdin, SIGTERM, SIGINT and the death of the parent process all mean
``exit``. The exit status is 0 after a clean stop, 3 if ``start()`` failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any

from event_log import EventLog

from raftredis import Candidate, Leadership, Message

ROLES = ("heartbeat", "control", "messages", "dispatch")

_event_set = Leadership.set


def _noted_set(self: Leadership) -> None:
    """Leadership.set, noting when raftredis first set the stop event."""
    if getattr(self, "set_at", None) is None:
        self.set_at = time.time()  # type: ignore[attr-defined]
    _event_set(self)


Leadership.set = _noted_set  # type: ignore[method-assign]
THREAD_PREFIX = "raftredis-"
EXIT_OK = 0
EXIT_START_FAILED = 3


class LibraryLogHandler(logging.Handler):
    """Copies raftredis' log records into the JSON log."""

    def __init__(self, log: EventLog) -> None:
        super().__init__(logging.INFO)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log.write(
                "lib_log", level=record.levelname, logger=record.name, message=record.getMessage()
            )
        except Exception:  # logging must never raise into the library
            self.handleError(record)


class LeadershipPoller(threading.Thread):
    """Reads ``candidate.leader_term`` every ``interval`` s; logs each change."""

    def __init__(self, candidate: Candidate, log: EventLog, interval: float) -> None:
        super().__init__(name="chaos-poller", daemon=True)
        self._candidate = candidate
        self._log = log
        self._interval = interval
        self._halt = threading.Event()
        self._lock = threading.Lock()
        # term -> (before of the last read that returned it, before of the first that did not)
        self._ended: dict[int, tuple[float, float]] = {}
        self.term: int | None = None
        self._last_true = (0.0, 0.0)

    def run(self) -> None:
        while not self._halt.is_set():
            self.poll_once()
            time.sleep(self._interval)
        self.poll_once()
        if self.term is not None:  # still leading when told to stop: close the interval
            self._end(self.term, time.time(), time.time(), reason="poller_stopped")

    def poll_once(self) -> None:
        before = time.time()
        term = self._candidate.leader_term
        after = time.time()
        current = self.term
        if term == current:
            if term is not None:
                self._last_true = (before, after)
            return
        if current is not None:
            self._end(current, before, after)
        if term is not None:
            self._log.write("lead_begin", t=after, term=term, t_call=before)
            self.term = term
            self._last_true = (before, after)

    def _end(self, term: int, before: float, after: float, reason: str = "") -> None:
        last_before, last_after = self._last_true
        with self._lock:
            self._ended[term] = (last_before, before)
            self.term = None
        fields: dict[str, Any] = {
            "term": term,
            "t_last_true": last_before,
            "t_last_true_after": last_after,
            "t_seen_false": before,
        }
        if reason:
            fields["reason"] = reason
        self._log.write("lead_end", **fields)

    def ended(self, term: int) -> tuple[float, float] | None:
        with self._lock:
            return self._ended.get(term)

    def halt(self, timeout: float) -> None:
        self._halt.set()
        self.join(timeout)


class Worker:
    """Wires a Candidate to the log, the poller, stdin commands and signals."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.candidate = Candidate(
            redis=args.redis,
            kind=args.kind,
            lease_ttl=args.lease_ttl,
            id=args.id,
            reliable=args.reliable,
        )
        self.log = EventLog(args.log, pid=os.getpid(), name=args.name, id=self.candidate.id)
        self.poller = LeadershipPoller(self.candidate, self.log, args.poll_interval)
        self.shutdown = threading.Event()
        self.signalled: str | None = None
        self.parent = os.getppid()

    # ------------------------------------------------------------ wiring

    def install(self) -> None:
        log = self.log

        def thread_died(hook: threading.ExceptHookArgs) -> None:
            thread = hook.thread.name if hook.thread is not None else None
            text = "".join(
                traceback.format_exception(hook.exc_type, hook.exc_value, hook.exc_traceback)
            )
            log.write(
                "thread_died",
                thread=thread,
                type=hook.exc_type.__name__,
                message=str(hook.exc_value),
                traceback=text[-4000:],
            )

        threading.excepthook = thread_died
        handler = LibraryLogHandler(log)
        library_logger = logging.getLogger("raftredis")
        library_logger.addHandler(handler)
        library_logger.setLevel(logging.INFO)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

        c = self.candidate
        c.on("elected", lambda sender, term, **_: log.write("elected", term=term))
        c.on(
            "defeated",
            lambda sender, leader, term, **_: log.write("defeated", leader=leader, term=term),
        )
        c.on(
            "state_changed",
            lambda sender, old, new, term, **_: log.write(
                "state_changed", old=old.value, new=new.value, term=term
            ),
        )
        c.on(
            "leader_changed",
            lambda sender, leader, term, **_: log.write("leader_changed", leader=leader, term=term),
        )
        c.on(
            "error_occurred",
            lambda sender, error, **_: log.write(
                "error",
                type=type(error).__name__,
                message=str(error)[:500],
                cause=type(error.__cause__).__name__ if error.__cause__ is not None else None,
                count=getattr(error, "count", None),
            ),
        )
        c.on("message_received", self._on_message)
        c.on(
            "instance_joined",
            lambda sender, instance, **_: log.write("joined", instance=instance.id),
        )
        c.on(
            "instance_left",
            lambda sender, instance_id, **_: log.write("left", instance=instance_id),
        )
        c.while_leader(self._leader_work)

    def _on_message(self, sender: Candidate, message: Message, **_: Any) -> None:
        if not message.reliable:
            self.log.write(
                "message",
                payload=message.payload,
                sender=message.sender_id,
                scope=message.scope.value,
                from_leader=message.from_leader,
                term=message.term,
            )
            return
        self.log.write(
            "reliable",
            payload=message.payload,
            sender=message.sender_id,
            scope=message.scope.value,
            message_id=message.message_id,
            term=message.term,
            leading=self.candidate.is_leader,
        )
        if self.args.reliable_delay > 0:
            time.sleep(self.args.reliable_delay)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Runs on the main thread between two bytecodes, maybe inside EventLog.write
        # (which holds its lock): only note it here; the main loop logs it.
        self.signalled = signal.Signals(signum).name
        self.shutdown.set()

    def _leader_work(self, stop_event: Leadership) -> None:
        term = stop_event.term
        started_at = time.time()
        self.log.write("work_start", t=started_at, term=term)
        stop_event.wait()
        stopped_at = time.time()
        set_at = float(getattr(stop_event, "set_at", None) or stopped_at)
        # The poller sees the loss within a poll or two of the stop event; wait a little.
        # An end of this term the poller saw before this function started belongs to an
        # earlier leadership of the same term (a flicker): not this one's.
        ended = None
        deadline = time.monotonic() + 0.5
        while ended is None and time.monotonic() < deadline:
            ended = self.poller.ended(term)
            if ended is not None and ended[1] < started_at:
                ended = None
            if ended is None:
                time.sleep(0.002)
        lag = None if ended is None else set_at - ended[1]
        lag_last_true = None if ended is None else set_at - ended[0]
        self.log.write(
            "work_stop",
            term=term,
            t_set=set_at,
            t_stop=stopped_at,
            lag=lag,
            lag_from_last_true=lag_last_true,
        )

    # ------------------------------------------------------------- running

    def run(self) -> int:
        self.install()
        self.poller.start()
        self.log.write("starting", redis=self.args.redis, lease_ttl=self.args.lease_ttl)
        try:
            self.candidate.start()
        except Exception as exc:
            self.log.write("start_failed", type=type(exc).__name__, message=str(exc)[:500])
            self.poller.halt(1.0)
            return EXIT_START_FAILED
        c = self.candidate
        self.log.write("started", state=c.state.value, term=c.current_term, leader=c.leader_id)
        threading.Thread(target=self._read_commands, name="chaos-stdin", daemon=True).start()
        next_alive = time.monotonic()
        while not self.shutdown.is_set():
            now = time.monotonic()
            if now >= next_alive:
                self._alive()
                next_alive = now + 1.0
                if os.getppid() != self.parent:  # orphaned: the test runner is gone
                    self.log.write("orphaned")
                    break
            self.shutdown.wait(min(0.2, max(0.0, next_alive - time.monotonic())))
        if self.signalled is not None:
            self.log.write("signal", signal=self.signalled)
        started = time.monotonic()
        self.candidate.stop(timeout=5.0)
        self.log.write("stopped", seconds=time.monotonic() - started)
        self.poller.halt(1.0)
        self.log.write("exit")
        return EXIT_OK

    def _alive(self) -> None:
        c = self.candidate
        names = sorted(
            t.name
            for t in threading.enumerate()
            if t.name.startswith(THREAD_PREFIX) and t.is_alive()
        )
        running = c.is_running
        missing = []
        if running:
            missing = [
                role
                for role in ROLES
                if not any(n.startswith(f"{THREAD_PREFIX}{role}-") for n in names)
            ]
        self.log.write(
            "alive",
            running=running,
            state=c.state.value,
            term=c.current_term,
            leader=c.leader_id,
            leader_term=c.leader_term,
            threads=names,
            missing=missing,
        )

    def _read_commands(self) -> None:
        for raw in sys.stdin:
            line = raw.strip()
            if not line:
                continue
            command, _, rest = line.partition(" ")
            try:
                if self._command(command, rest):
                    return
            except Exception as exc:
                self.log.write(
                    "command_error", cmd=command, type=type(exc).__name__, message=str(exc)[:500]
                )
        self.log.write("stdin_closed")
        self.shutdown.set()

    def _command(self, command: str, rest: str) -> bool:
        """Carry out one command; True means: stop reading commands."""
        c = self.candidate
        if command == "reelect":
            self.log.write("command", cmd="reelect", result=c.reelect())
        elif command == "stop":
            started = time.monotonic()
            c.stop(timeout=5.0)
            self.log.write("stopped", seconds=time.monotonic() - started, by="command")
        elif command == "publish":
            payload = json.loads(rest)
            count = c.message_all(payload)
            self.log.write("published", count=count, payload=payload)
        elif command == "instances":
            instances = c.get_instances()
            leader = [i.id for i in instances if i.is_leader]
            self.log.write("instances", ids=[i.id for i in instances], leaders=leader)
        elif command == "exit":
            self.log.write("command", cmd="exit")
            self.shutdown.set()
            return True
        else:
            self.log.write("command_error", cmd=command, type="UnknownCommand", message=rest)
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis", required=True, help="Redis URL (maybe a proxy's)")
    parser.add_argument("--kind", required=True)
    parser.add_argument("--lease-ttl", type=float, required=True)
    parser.add_argument("--log", required=True, help="JSON-lines log file (appended to)")
    parser.add_argument("--id", default=None, help="Candidate id (default: random)")
    parser.add_argument("--name", default="", help="a label for this worker in the logs")
    parser.add_argument("--poll-interval", type=float, default=0.001)
    parser.add_argument("--reliable", action="store_true", help="Candidate(reliable=True)")
    parser.add_argument(
        "--reliable-delay", type=float, default=0.0, help="seconds each reliable message takes"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The log stays open until the process ends: daemon threads may still write to it.
    return Worker(args).run()


if __name__ == "__main__":
    sys.exit(main())
