"""Crash failover: the leader's process is killed with SIGKILL → ``elected`` elsewhere.

Each trial uses a kind of its own: a child process starts the first Candidate
(it becomes leader and reports when, by ``time.time()``), then two followers
start in this process. After a random delay of 0 to ``renew_interval`` (so
the kill lands anywhere in the renew cycle) the child is killed, and the time
from just before ``kill()`` to the first ``elected`` of a follower is taken on
this process' clock.

Baseline: ``lease_ttl`` itself, the time a crashed holder's lease lives on in
Redis. A follower takes over when the lease it last read runs out, so the
failover should fall between ``lease_ttl - renew_interval`` (killed just
before a renew) and ``lease_ttl`` (just after one), plus up to
``vacancy_jitter``.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from typing import Any

from raftredis import Candidate
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
FOLLOWERS = 2


def child_main(url: str, kind: str, lease_ttl: float) -> None:
    """Child: start one Candidate, report when it is elected, then wait to be killed."""
    candidate = Candidate(redis=url, kind=kind, lease_ttl=lease_ttl)
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
    url: str, kind: str, ttl: float, timings: Timings
) -> tuple[float | None, dict[str, Any]]:
    """One kill; (failover ms or None on timeout, details)."""
    followers: list[Candidate] = []
    with children() as procs:
        child = Child("bench.failover", ["child", url, kind, repr(ttl)])
        procs.append(child)
        started = child.expect("started", timeout=30)
        if not started["leader"]:
            raise RuntimeError(f"the child did not become leader of {kind}")
        watch = ElectedWatch()
        try:
            for _ in range(FOLLOWERS):
                c = Candidate(redis=url, kind=kind, lease_ttl=ttl)
                watch.attach(c)
                followers.append(c.start())
            if any(c.leader_id != started["id"] for c in followers):
                raise RuntimeError(f"followers of {kind} do not follow the child")
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


def run(cfg: Config) -> list[Figure]:
    trials = cfg.trials(5, 15)
    ttls: tuple[float, ...] = cfg.pick((1.0,), (1.0, 3.0, 10.0))
    figures: list[Figure] = []
    with redis_server() as server:
        for ttl in ttls:
            timings = Timings.from_lease(ttl)
            log(f"failover: lease_ttl {ttl:g} s, {trials} kills")
            samples: list[float] = []
            phases: list[float] = []
            misses = 0
            for i in range(trials):
                ms, details = _trial(server.url, f"failover-{ttl:g}-{i}", ttl, timings)
                phases.append(details["kill_phase"])
                if ms is None:
                    misses += 1
                    ms = (ttl * 3 + 2) * 1000
                samples.append(ms)
            low = (ttl - timings.renew_interval) * 1000
            high = (ttl + timings.vacancy_jitter) * 1000
            figures.append(
                Figure(
                    BENCH,
                    f"SIGKILL → elected, lease_ttl {ttl:g} s",
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    print(table(run(config_from_args(description=__doc__))))


if __name__ == "__main__":
    main()
