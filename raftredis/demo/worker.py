"""A demo worker process: one Candidate, driven by the parent over stdin and stdout.

The parent starts ``python -m raftredis.demo --worker``. The worker reports
events as JSON lines on its stdout (``hello``, ``ready``, ``elected``,
``defeated``, ``reelect``, ``fenced``, ``stats``, ``error``, ``stopped``) and
takes commands as lines on its stdin (``reelect``, ``stop``; EOF means stop).
While it leads it pushes jobs; otherwise it takes them off the queue.
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
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import redis

from ..candidate import Candidate
from ..errors import RaftRedisError
from ..leadership import Leadership
from .jobs import PUSH_LUA, DemoKeys

__all__ = ["Worker", "run_worker"]

log = logging.getLogger("raftredis.demo")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


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


class Worker:
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
        self.push_script = self.client.register_script(PUSH_LUA)
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
        """Campaign, push or take jobs until told to stop; return the exit code."""
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


def run_worker(args: argparse.Namespace) -> int:
    """Run one worker (the hidden ``--worker`` mode) until the parent stops it."""
    logging.basicConfig(
        level=logging.WARNING,
        format=f"worker {args.index} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    worker = Worker(args)

    def on_term(signum: int, frame: FrameType | None) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    return worker.run()
