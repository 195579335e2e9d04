"""Crash failover: the leader's process is killed with SIGKILL → ``elected`` elsewhere.

Each trial uses a kind of its own: a child process starts the first Candidate
(it becomes leader and reports when, by ``time.time()``), then the followers
start in this process. With fast failover they are first given one period of
their shared watch (``presence_interval * 1.2 * followers``), so that each has
watched once and knows its turn: the steady state. After a random delay of 0
to ``renew_interval`` more (so the kill lands anywhere in the renew cycle) the
child is killed, and the time
from just before ``kill()`` to the first ``elected`` of a follower is taken on
this process' clock.

Two mechanisms, two sets of figures:

- fast failover (the default with one Redis server), 3 and 10 instances:
  Redis closes the dead process' connections, the followers see its presence
  connection gone and take the lease over once it has stayed gone for
  ``presence_window`` (0.2 s). Target: median < 300 ms, p99 < 500 ms.
  Baseline: the same kill with ``fast_failover=False`` at the same
  ``lease_ttl`` (3 s), measured in the same run.
- the lease alone (``fast_failover=False``; behind Sentinel and in a Cluster,
  where fast failover is off): a follower takes over when the lease it last
  read runs out, between ``lease_ttl - renew_interval`` (killed just before a
  renew) and ``lease_ttl`` (just after one), plus up to ``vacancy_jitter``.
  Baseline: ``lease_ttl`` itself.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from typing import Any

from raftredis import Candidate
from raftredis.election import WATCH_SPACING
from raftredis.timing import Timings

from .common import (
    Check,
    Child,
    Config,
    ElectedWatch,
    Figure,
    children,
    commands,
    config_from_args,
    emit,
    log,
    redis_server,
    stop_all,
    table,
)

BENCH = "failover"
#: The crash failover target of fast failover (issue 13), in ms.
FAST_MEDIAN_MS = 300.0
FAST_P99_MS = 500.0


def child_main(url: str, kind: str, lease_ttl: float, fast: bool) -> None:
    """Child: start one Candidate, report when it is elected, then wait to be killed."""
    candidate = Candidate(redis=url, kind=kind, lease_ttl=lease_ttl, fast_failover=fast)
    elected_at: list[float] = []
    candidate.on("elected", lambda sender, term, **extra: elected_at.append(time.time()))
    candidate.start()
    while not elected_at and candidate.is_leader:
        time.sleep(0.001)
    emit(
        "started",
        id=candidate.id,
        leader=candidate.is_leader,
        elected_at=elected_at[0] if elected_at else None,
    )
    for _ in commands():  # until stdin closes (or SIGKILL)
        pass
    candidate.stop()


def _trial(
    url: str, kind: str, ttl: float, fast: bool, instances: int, timings: Timings
) -> tuple[float | None, dict[str, Any]]:
    """One kill; (failover ms or None on timeout, details)."""
    followers: list[Candidate] = []
    with children() as procs:
        child = Child("bench.failover", ["child", url, kind, repr(ttl), str(int(fast))])
        procs.append(child)
        started = child.expect("started", timeout=30)
        if not started["leader"]:
            raise RuntimeError(f"the child did not become leader of {kind}")
        watch = ElectedWatch()
        try:
            for _ in range(instances - 1):
                c = Candidate(redis=url, kind=kind, lease_ttl=ttl, fast_failover=fast)
                watch.attach(c)
                followers.append(c.start())
            if any(c.leader_id != started["id"] for c in followers):
                raise RuntimeError(f"followers of {kind} do not follow the child")
            if fast:
                # Steady state: every follower has watched once and so knows its turn
                # in the shared watch (one watch period), then a random point of the
                # renew cycle.
                time.sleep(timings.presence_interval * WATCH_SPACING * (instances - 1))
            time.sleep(random.uniform(0.0, timings.renew_interval))
            wall = time.time()
            t0 = time.perf_counter()
            child.kill(signal.SIGKILL)
            event, _ = watch.wait(lambda cid: True, timeout=ttl * 3 + 2)
            elected_at = started["elected_at"] or wall
            details = {
                "kill_phase": ((wall - elected_at) % timings.renew_interval)
                / timings.renew_interval,
                "since_elected_s": wall - elected_at,
            }
            if event is None:
                return None, details
            return (event[0] - t0) * 1000, details
        finally:
            stop_all(followers)


def _kills(
    url: str, label: str, ttl: float, fast: bool, instances: int, trials: int
) -> tuple[list[float], list[float], int]:
    """``trials`` kills; (failover ms, kill phases, misses). A miss counts as the timeout."""
    timings = Timings.from_lease(ttl)
    samples: list[float] = []
    phases: list[float] = []
    misses = 0
    for i in range(trials):
        ms, details = _trial(url, f"failover-{label}-{i}", ttl, fast, instances, timings)
        phases.append(details["kill_phase"])
        if ms is None:
            misses += 1
            ms = (ttl * 3 + 2) * 1000
        samples.append(ms)
    return samples, phases, misses


def _fast_figures(url: str, cfg: Config) -> list[Figure]:
    """Fast failover at the defaults, 3 and 10 instances, against the lease alone."""
    trials = cfg.trials(10, 100)
    base_trials = cfg.trials(3, 10)
    ttl = Timings().lease_ttl
    log(f"failover: fast_failover=False baseline, lease_ttl {ttl:g} s, {base_trials} kills")
    base, _, base_misses = _kills(url, "baseline", ttl, False, 3, base_trials)
    figures = []
    for instances in cfg.pick((3,), (3, 10)):
        log(f"failover: fast failover (defaults), {instances} instances, {trials} kills")
        samples, phases, misses = _kills(url, f"fast-{instances}", ttl, True, instances, trials)
        figures.append(
            Figure(
                BENCH,
                f"SIGKILL → elected, defaults (fast failover), {instances} instances",
                "ms",
                samples,
                baseline_name=f"fast_failover=False, lease_ttl {ttl:g} s",
                baseline_samples=base,
                checks=[
                    Check("median", "<", FAST_MEDIAN_MS, "ms"),
                    Check("p99", "<", FAST_P99_MS, "ms"),
                ],
                notes=(
                    f"presence_window 0.2 s after Redis closed the dead leader's connections; "
                    f"kill phase in the renew cycle {min(phases):.2f}..{max(phases):.2f}; "
                    f"misses: {misses} (baseline misses: {base_misses})"
                ),
                extra={"instances": instances, "kill_phase": phases, "misses": misses},
            )
        )
    return figures


def _lease_figures(url: str, cfg: Config) -> list[Figure]:
    """The lease alone (fast_failover=False) at several lease_ttl, 3 instances."""
    trials = cfg.trials(5, 15)
    ttls: tuple[float, ...] = cfg.pick((1.0,), (1.0, 3.0, 10.0))
    figures: list[Figure] = []
    for ttl in ttls:
        timings = Timings.from_lease(ttl)
        log(f"failover: fast_failover=False, lease_ttl {ttl:g} s, {trials} kills")
        samples, phases, misses = _kills(url, f"lease-{ttl:g}", ttl, False, 3, trials)
        low = (ttl - timings.renew_interval) * 1000
        high = (ttl + timings.vacancy_jitter) * 1000
        figures.append(
            Figure(
                BENCH,
                f"SIGKILL → elected, fast_failover=False, lease_ttl {ttl:g} s",
                "ms",
                samples,
                baseline_name="lease_ttl",
                baseline_samples=[ttl * 1000],
                checks=[
                    Check("median", "<=", ttl * 1000, "ms"),
                    Check("p99", "<=", ttl * 1100, "ms"),
                ],
                notes=(
                    f"expected {low:.0f}..{high:.0f} ms (lease_ttl - renew_interval .. "
                    f"lease_ttl + vacancy_jitter); kill phase in the renew cycle "
                    f"{min(phases):.2f}..{max(phases):.2f}; misses: {misses}"
                ),
                extra={
                    "lease_ttl": ttl,
                    "kill_phase": phases,
                    "expected_ms": [low, high],
                    "misses": misses,
                },
            )
        )
    return figures


def run(cfg: Config) -> list[Figure]:
    with redis_server() as server:
        return _fast_figures(server.url, cfg) + _lease_figures(server.url, cfg)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5] == "1")
        return
    print(table(run(config_from_args(description=__doc__))))


if __name__ == "__main__":
    main()
