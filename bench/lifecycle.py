"""Lifecycle: how long ``start()``, ``stop()``, ``reelect()`` and leaving a ``with`` block take.

    python -m bench.lifecycle --quick                  # 20 trials of each (about 30 s)
    python -m bench.lifecycle --trials 100 --json out.json

Every call is timed on the calling thread, from just before the call until
it returns, for a LEADER and for a FOLLOWER, ALONE (the only instance of its
kind) and WITH 2 OTHERS (two more instances of the kind, in this process).
A follower is never alone: it always has a leader, so it is measured with 2
others only. ``reelect()`` is also timed until another instance's
``elected`` receiver runs (the handover, as bench/handover.py measures it).

After every ``stop()`` and every ``with`` block, right when it returns, the
threads of that instance (``raftredis-*`` threads whose name carries its id)
that are still alive are counted: there should be none. The figures are
printed, never asserted; the issue's target (p99 under 50 ms for ``stop()``,
``reelect()`` and leaving a ``with`` block) is shown as a target.

Trials of one kind are run in rounds, so machine noise is spread over every
figure:

- alone: ``start()`` → ``stop()``; ``start()`` → ``reelect()`` → (elected
  again) → ``stop()``; ``with Candidate(...)``;
- with 2 others, which stay up for the whole run: a follower joins and
  ``stop()``s; a follower joins in a ``with`` block and leaves it; the
  leader ``reelect()``s until a newly joined instance leads, which then
  ``stop()``s, or leaves its ``with`` block.

Each ``stop()`` and ``with`` exit counts under the role the instance had
when it was called. The winner of each ``reelect()`` is random (about 2
calls until the newcomer leads); a newcomer that has not led after 20 is
recorded with its state (``never_led``) and stops as a follower.

``--json OUT`` writes the figures (with every sample) and a ``summary`` for
the compatibility matrix (tools/matrix_summary.py): the worst ``stop()``
p99, the ``reelect()`` → ``elected`` p99, the ``start()`` p50 and the
threads left.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import operator
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import blinker
import redis

from bench.common import (
    Check,
    Config,
    ElectedWatch,
    Figure,
    Stats,
    exit_on_sigterm,
    fmt,
    log,
    machine_info,
    redis_server,
    settle,
    stop_all,
    wait_for,
)
from raftredis import Candidate
from raftredis.testing import RedisServer, find_redis_server, raftredis_threads

BENCH = "lifecycle"
#: The issue's target for every call that ends or hands over leadership.
TARGET_MS = 50.0
#: How long a reelect() may take to reach another instance's elected.
HANDOVER_TIMEOUT = 3.0
#: How many reelect() calls a round may make before a new instance leads.
MAX_REELECTS = 20

START_ALONE = "start(), alone → leader"
START_JOIN = "start(), with 2 others → follower"
STOP_LEADER_ALONE = "stop(), leader alone"
STOP_LEADER_OTHERS = "stop(), leader with 2 others"
STOP_FOLLOWER_OTHERS = "stop(), follower with 2 others"
REELECT_ALONE = "reelect() returns, leader alone"
REELECT_OTHERS = "reelect() returns, leader with 2 others"
REELECT_HANDOVER = "reelect() → elected elsewhere, leader with 2 others"
WITH_LEADER_ALONE = "leaving `with`, leader alone"
WITH_LEADER_OTHERS = "leaving `with`, leader with 2 others"
WITH_FOLLOWER_OTHERS = "leaving `with`, follower with 2 others"

#: Figures that end or hand over leadership: the ones with the target.
ENDINGS = (
    STOP_LEADER_ALONE,
    STOP_LEADER_OTHERS,
    STOP_FOLLOWER_OTHERS,
    WITH_LEADER_ALONE,
    WITH_LEADER_OTHERS,
    WITH_FOLLOWER_OTHERS,
)
TARGETED = (*ENDINGS, REELECT_ALONE, REELECT_OTHERS)
ORDER = (
    START_ALONE,
    START_JOIN,
    STOP_LEADER_ALONE,
    STOP_LEADER_OTHERS,
    STOP_FOLLOWER_OTHERS,
    WITH_LEADER_ALONE,
    WITH_LEADER_OTHERS,
    WITH_FOLLOWER_OTHERS,
    REELECT_ALONE,
    REELECT_OTHERS,
    REELECT_HANDOVER,
)


#: (alone, leading) → figure, for stop() and for leaving a with block.
STOP_FIGURES = {
    (True, True): STOP_LEADER_ALONE,
    (False, True): STOP_LEADER_OTHERS,
    (False, False): STOP_FOLLOWER_OTHERS,
}
WITH_FIGURES = {
    (True, True): WITH_LEADER_ALONE,
    (False, True): WITH_LEADER_OTHERS,
    (False, False): WITH_FOLLOWER_OTHERS,
}


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0


def _ending(figures: dict[tuple[bool, bool], str], candidate: Candidate, alone: bool) -> str | None:
    """The figure of an ending call, by the role ``candidate`` has now; None for a lone
    instance that does not lead (it lost its lease: a sample of nothing, not recorded)."""
    return figures.get((alone, candidate.is_leader))


class Recorder:
    """Samples by figure name, and the threads found alive after each stop."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {name: [] for name in ORDER}
        self.stops = 0
        #: (figure, thread names) for every stop that left threads of its instance.
        self.leftovers: list[tuple[str, list[str]]] = []
        self.handover_misses = 0
        self.reelect_rounds: list[int] = []
        #: Newcomers that did not lead after MAX_REELECTS reelect() calls: their state.
        self.never_led: list[dict[str, Any]] = []
        #: Ending calls of a lone instance that had lost its lease (not recorded).
        self.unclassified = 0

    def add(self, name: str | None, ms: float) -> None:
        if name is None:
            self.unclassified += 1
        else:
            self.samples[name].append(ms)

    def check_threads(self, name: str, candidate: Candidate) -> None:
        """Count the threads of ``candidate`` still alive right after it stopped."""
        self.stops += 1
        tag = candidate.id[:8]
        alive = [t.name for t in raftredis_threads() if tag in t.name]
        if alive:
            self.leftovers.append((name, alive))


class Bench:
    """The candidates of one run, on one Redis."""

    def __init__(self, url: str, rec: Recorder) -> None:
        self.url = url
        self.rec = rec
        self.watch = ElectedWatch()
        self.live: list[Candidate] = []

    def new(self, kind: str) -> Candidate:
        candidate = Candidate(redis=self.url, kind=kind)
        self.watch.attach(candidate)
        self.live.append(candidate)
        return candidate

    def start(self, kind: str, figure: str | None) -> Candidate:
        candidate = self.new(kind)
        t0 = time.perf_counter()
        candidate.start()
        if figure is not None:
            self.rec.add(figure, _ms(t0))
        return candidate

    def stop(self, candidate: Candidate, *, alone: bool) -> None:
        """Time ``stop()``: a sample of the figure of the role it had when called."""
        figure = _ending(STOP_FIGURES, candidate, alone)
        t0 = time.perf_counter()
        candidate.stop()
        self.rec.add(figure, _ms(t0))
        self.rec.check_threads(figure or "stop()", candidate)
        self.live.remove(candidate)

    @contextlib.contextmanager
    def within(self, kind: str, *, alone: bool) -> Iterator[Candidate]:
        """``with Candidate(...)``: times the exit of the block (a sample of the figure of
        the role it had when the block ended), and its entry as a start."""
        candidate = self.new(kind)
        t0 = time.perf_counter()
        with candidate:
            self.rec.add(START_ALONE if alone else START_JOIN, _ms(t0))
            yield candidate
            figure = _ending(WITH_FIGURES, candidate, alone)
            t1 = time.perf_counter()
        self.rec.add(figure, _ms(t1))
        self.rec.check_threads(figure or "leaving `with`", candidate)
        self.live.remove(candidate)

    def reelect_until(self, group: list[Candidate], wanted: Candidate) -> bool:
        """The leader ``reelect()``s until ``wanted`` leads; each handover is timed.

        False (and the newcomer's state recorded) if it did not lead after
        MAX_REELECTS calls: the winner of each is random, so that should not happen.
        """
        for rounds in range(1, MAX_REELECTS + 1):
            leader_id = settle(group, quiet=0.05)
            if leader_id == wanted.id:
                self.rec.reelect_rounds.append(rounds - 1)
                return True
            leader = next(c for c in group if c.id == leader_id)
            self.watch.drain()
            t0 = time.perf_counter()
            leader.reelect()
            self.rec.add(REELECT_OTHERS, _ms(t0))
            event, _ = self.watch.wait(partial(operator.ne, leader_id), HANDOVER_TIMEOUT)
            if event is None:
                self.rec.handover_misses += 1
            else:
                self.rec.add(REELECT_HANDOVER, (event[0] - t0) * 1000.0)
            # The resigned leader waits reelect_backoff before it campaigns again.
        tag = wanted.id[:8]
        self.rec.never_led.append(
            {
                "id": wanted.id,
                "state": wanted.state.value,
                "leader_id": wanted.leader_id,
                "term": wanted.current_term,
                "group_terms": [c.current_term for c in group],
                "threads": sorted(t.name for t in raftredis_threads() if tag in t.name),
            }
        )
        log(f"lifecycle: {wanted.id} did not lead after {MAX_REELECTS} reelect() calls: "
            f"{self.rec.never_led[-1]}")  # fmt: skip
        return False

    def alone_round(self) -> None:
        kind = f"lifecycle-alone-{uuid.uuid4().hex[:8]}"
        leader = self.start(kind, START_ALONE)
        self.stop(leader, alone=True)

        leader = self.start(kind, START_ALONE)
        t0 = time.perf_counter()
        leader.reelect()
        self.rec.add(REELECT_ALONE, _ms(t0))
        if wait_for(lambda: leader.is_leader, timeout=HANDOVER_TIMEOUT) is None:
            raise RuntimeError("a lone leader was not elected again after reelect()")
        self.stop(leader, alone=True)

        with self.within(kind, alone=True) as candidate:
            if not candidate.is_leader:
                raise RuntimeError("a lone instance did not lead when start() returned")

    def others_round(self, kind: str, others: list[Candidate]) -> None:
        # A follower joins and stops.
        follower = self.start(kind, START_JOIN)
        settle([*others, follower])
        self.stop(follower, alone=False)

        # A follower joins in a with block and leaves it.
        with self.within(kind, alone=False) as candidate:
            settle([*others, candidate])

        # A newcomer is made leader by reelect() of the leaders before it, then stops
        # (counted as a follower's stop in the rare case it never led).
        newcomer = self.start(kind, START_JOIN)
        self.reelect_until([*others, newcomer], newcomer)
        self.stop(newcomer, alone=False)
        settle(others)

        # The same, in a with block.
        with self.within(kind, alone=False) as candidate:
            self.reelect_until([*others, candidate], candidate)
        settle(others)


def run(cfg: Config) -> list[Figure]:
    """Every lifecycle figure, on a private redis-server."""
    trials = cfg.trials(20, 100)
    rec = Recorder()
    with redis_server() as server:
        bench = Bench(server.url, rec)
        try:
            log(f"lifecycle: {trials} rounds alone, then {trials} rounds with 2 others")
            for _ in range(trials):
                bench.alone_round()
            kind = f"lifecycle-others-{uuid.uuid4().hex[:8]}"
            others = [bench.start(kind, None), bench.start(kind, None)]
            for _ in range(trials):
                bench.others_round(kind, others)
        finally:
            stop_all(bench.live)
    return figures_of(rec)


def figures_of(rec: Recorder) -> list[Figure]:
    left = sum(len(names) for _, names in rec.leftovers)
    checks = [Check("p99", "<", TARGET_MS, "ms")]
    figures = []
    for name in ORDER:
        notes = ""
        if name == REELECT_HANDOVER:
            notes = (
                f"misses (no elected within {HANDOVER_TIMEOUT:g} s): {rec.handover_misses}; "
                f"raftredis waits a random 0..50 ms (vacancy_jitter) before campaigning"
            )
        elif name == REELECT_OTHERS:
            rounds = rec.reelect_rounds
            notes = (
                "reelect() calls until a newcomer led: "
                f"{sum(rounds)} in {len(rounds)} rounds (the winner of each is random; "
                f"about 2 a round expected); newcomers that never led within "
                f"{MAX_REELECTS}: {len(rec.never_led)}"
            )
            if rec.never_led:
                notes += f" (e.g. {rec.never_led[0]})"
        elif name in ENDINGS:
            leftovers = [names for figure, names in rec.leftovers if figure == name]
            notes = f"instances that left threads alive when it returned: {len(leftovers)}"
            if leftovers:
                notes += f" (e.g. {leftovers[0]})"
        figures.append(
            Figure(
                BENCH,
                name,
                "ms",
                rec.samples[name],
                checks=list(checks) if name in TARGETED else [],
                notes=notes,
            )
        )
    figures.append(
        Figure(
            BENCH,
            "threads left alive right after stop() / the with block",
            "threads",
            [float(left)],
            custom_target="0",
            custom_met=left == 0,
            notes=f"over {rec.stops} stops"
            + (
                f"; {rec.unclassified} lone instances had lost their lease"
                if rec.unclassified
                else ""
            ),
            extra={"stops": rec.stops, "leftovers": rec.leftovers, "never_led": rec.never_led},
        )
    )
    return figures


def summary(figures: list[Figure]) -> dict[str, Any]:
    """The matrix figures: worst stop p99, reelect → elected p99, start p50, threads left."""
    by_name = {f.name: f for f in figures}
    endings = [by_name[name].stats for name in ENDINGS if by_name[name].samples]
    worst = max(endings, key=lambda s: s.p99) if endings else Stats.of([])
    worst_name = next(
        (n for n in ENDINGS if by_name[n].samples and by_name[n].stats.p99 == worst.p99), None
    )
    threads = by_name["threads left alive right after stop() / the with block"]
    return {
        "stop_p99_ms": worst.p99,
        "stop_p99_of": worst_name,
        "stop_max_ms": max((s.max for s in endings), default=None),
        "stop_p50_ms": Stats.of([v for name in ENDINGS for v in by_name[name].samples]).median,
        "reelect_p99_ms": by_name[REELECT_HANDOVER].stats.p99,
        "reelect_return_p99_ms": Stats.of(
            by_name[REELECT_ALONE].samples + by_name[REELECT_OTHERS].samples
        ).p99,
        "start_p50_ms": by_name[START_ALONE].stats.median,
        "start_join_p50_ms": by_name[START_JOIN].stats.median,
        "threads_left": int(threads.samples[0]) if threads.samples else None,
        "never_led": len(threads.extra.get("never_led", [])),
        "target_ms": TARGET_MS,
    }


def versions() -> dict[str, Any]:
    """What the figures were measured with."""
    binary = find_redis_server()
    try:
        import hiredis  # type: ignore[import-not-found, unused-ignore]

        hiredis_version: str | None = str(getattr(hiredis, "__version__", "yes"))
    except ImportError:
        hiredis_version = None
    return {
        "python": sys.version.split()[0],
        "redis_py": redis.__version__,
        "blinker": _version_of("blinker", blinker),
        "hiredis": hiredis_version,
        "redis_server": RedisServer(binary=binary).version(),
        "redis_server_binary": binary,
    }


def _version_of(name: str, module: object) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def spread(figures: list[Figure]) -> str:
    """p50 / p99 / max in ms, one line per figure."""
    head = "| figure | trials | p50 | p99 | max | target | met? |\n|---|---|---|---|---|---|---|"
    rows = [head]
    for f in figures:
        s = f.stats
        met = {None: "info", True: "yes", False: "**NO**"}[f.met]
        rows.append(
            f"| {f.name} | {s.n} | {fmt(s.median)} | {fmt(s.p99)} | {fmt(s.max)} "
            f"| {f.target} | {met} |"
        )
    return "\n".join(rows)


def write_json(path: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        **meta,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "summary": summary(figures),
        "figures": [f.as_dict() for f in figures],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="20 rounds of each (default)")
    mode.add_argument("--full", action="store_true", help="100 rounds of each")
    parser.add_argument("--trials", type=int, help="rounds of each (overrides --quick/--full)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the figures to OUT")
    args = parser.parse_args(argv)
    exit_on_sigterm()
    cfg = Config(full=args.full, trial_override=args.trials)
    meta: dict[str, Any] = {
        "benchmark": BENCH,
        "mode": cfg.mode,
        "trials": cfg.trials(20, 100),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": versions(),
        "machine": machine_info(),
    }
    began = time.monotonic()
    figures = run(cfg)
    meta["duration_s"] = round(time.monotonic() - began, 1)
    v = meta["versions"]
    out(
        f"lifecycle ({cfg.mode}, {meta['trials']} rounds, {meta['duration_s']} s): "
        f"redis-py {v['redis_py']}, blinker {v['blinker']}, Redis {v['redis_server']}, "
        f"hiredis {v['hiredis'] or 'no'}"
    )
    out(spread(figures))
    s = summary(figures)
    out(
        f"\nworst stop p99 {fmt(s['stop_p99_ms'])} ms ({s['stop_p99_of']}); "
        f"reelect → elected p99 {fmt(s['reelect_p99_ms'])} ms; "
        f"start p50 {fmt(s['start_p50_ms'])} ms; threads left {s['threads_left']}"
    )
    if args.json is not None:
        write_json(args.json, figures, meta)
        out(f"figures in {args.json}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
