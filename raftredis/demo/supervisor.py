"""The demo's parent process: Redis, the pool of workers, faults, and the report.

:class:`Supervisor` starts (or connects to) Redis, keeps ``--workers``
worker processes running, turns their events into the lines it prints,
disrupts the leader every ``--fault-interval`` seconds and times each
failover, and at the end stops every process it started and prints a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import queue
import signal
import subprocess
import time
from types import FrameType
from typing import Any

import redis

from ..testing import RedisServer
from .faults import FAULT_LABEL, KILL, REELECT, Election, Failover, Fault
from .jobs import DemoKeys, read_job_counts
from .pool import EventQueue, WorkerHandle, close_workers, send, start_worker, stop_workers
from .report import plural, render_summary, short, summary_record

__all__ = ["Supervisor"]


class Supervisor:
    """The parent process: starts everything, injects faults, reports, cleans up."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size: int = args.workers
        self.lease_ttl: float = args.lease_ttl
        self.failover_timeout = 3 * self.lease_ttl + 2.0
        self.keys = DemoKeys(args.kind)
        self.wall0 = time.time()
        self.events: EventQueue = queue.Queue()
        self.workers: dict[int, WorkerHandle] = {}
        self.next_index = 1
        self.server: RedisServer | None = None
        self.redis_pid: int | None = None
        self.url: str = args.redis_url or ""
        self.client: redis.Redis | None = None
        self.signalled: int | None = None
        self.shutting_down = False
        self.leader: int | None = None
        self.leader_term = 0
        self.elections: list[Election] = []
        self.failovers: list[Failover] = []
        self.pending: Fault | None = None
        self.faults = 0
        self.final_counts: dict[str, int] | None = None
        self.leftover: list[int] = []
        self.ended_by = "duration"
        self.finished_at = 0.0

    # -- output ----------------------------------------------------------

    def say(self, message: str, at: float | None = None) -> None:
        """Print ``message``, stamped with the seconds since the demo started."""
        elapsed = (time.time() if at is None else at) - self.wall0
        print(f"[{elapsed:7.2f}s] {message}", flush=True)

    def name(self, index: int | None) -> str:
        """How the output names worker ``index``."""
        if index is None:
            return "nobody"
        handle = self.workers.get(index)
        return f"worker {index} (id {short(handle.id if handle else None)})"

    # -- lifecycle --------------------------------------------------------

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM handler: the main loop stops at its next turn."""
        if self.signalled is None:
            self.signalled = signum

    def run(self) -> int:
        """Run the whole demo and print its summary; return the exit code."""
        try:
            self.start_redis()
            for _ in range(self.size):
                if self.signalled is None:
                    self.spawn()
            self.loop()
        finally:
            self.shutdown()
        print(render_summary(self), flush=True)
        if self.args.json:
            print(json.dumps(summary_record(self)), flush=True)
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
            f"kind {a.kind!r}: {plural(self.size, 'worker')}, lease_ttl {self.lease_ttl:g} s, "
            f"{a.rate:g} jobs/s, {faults}, for {a.duration:g} s"
        )

    def spawn(self, replaces: int | None = None) -> WorkerHandle:
        index, self.next_index = self.next_index, self.next_index + 1
        handle = start_worker(
            index,
            redis_url=self.url,
            kind=self.args.kind,
            lease_ttl=self.lease_ttl,
            rate=self.args.rate,
            events=self.events,
            replaces=replaces,
        )
        self.workers[index] = handle  # before the main loop can see its first event
        return handle

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
        self.elections.append(Election(index, self.workers[index].id, term, at))
        self.leader, self.leader_term = index, term
        message = f"{self.name(index)} elected, term {term}"
        fault = self.pending
        if fault is not None and term > fault.term and at >= fault.at:
            ms = (at - fault.at) * 1000.0
            failover = fault.outcome(index, self.workers[index].id, term, ms)
            self.failovers.append(failover)
            self.pending = None
            cause = f"{FAULT_LABEL[fault.kind]} of worker {fault.victim}"
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

    def on_exit(self, handle: WorkerHandle) -> None:
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
        elif not send(victim, "reelect"):
            self.faults -= 1
            return False
        self.pending = Fault(
            number=self.faults,
            kind=kind,
            victim=victim.index,
            victim_id=victim.id,
            term=self.leader_term,
            at=at,
            timeout_at=time.monotonic() + self.failover_timeout,
        )
        self.say(
            f"FAULT #{self.faults}: {FAULT_LABEL[kind]} of the leader, "
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

    # -- reporting ------------------------------------------------------------

    def job_counts(self) -> dict[str, int] | None:
        """The job counts in Redis (see :func:`read_job_counts`); None if unreadable."""
        if self.client is None:
            return None
        try:
            return read_job_counts(self.client, self.keys)
        except redis.RedisError as exc:
            self.say(f"cannot read the job counts from Redis: {exc}")
            return None

    def report(self) -> None:
        counts = self.job_counts()
        alive = sum(1 for h in self.workers.values() if h.process.poll() is None)
        leader = (
            f"{self.name(self.leader)}, term {self.leader_term}"
            if self.leader is not None
            else "none"
        )
        if counts is None:
            self.say(f"leader: {leader}; {plural(alive, 'worker')} alive")
            return
        self.say(
            f"jobs pushed {counts['pushed']}, processed {counts['processed']}, "
            f"queued {counts['queued']}; leader: {leader}; {plural(alive, 'worker')} alive"
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
            grace = max(3.0, 2 * self.lease_ttl)
            leader = [h for h in handles if h.index == self.leader]
            stop_workers([h for h in handles if h.index != self.leader], grace, self.say)
            stop_workers(leader, grace, self.say)
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
            close_workers(handles)  # kills only after an error above
            if self.client is not None:
                self.client.close()
            if self.server is not None:
                self.server.stop()
                self.say("redis-server stopped")
            self.leftover = [h.process.pid for h in handles if h.process.poll() is None]
            if self.server is not None and self.server.running:
                self.leftover.append(self.server.pid)
