"""Chaos scenarios: a Redis that forgets, as real ones do.

Many teams point raftredis at the Redis they already have: a cache with a
``maxmemory`` and an eviction policy, whose admins run ``FLUSHALL``. Each
scenario runs 4 worker processes (lease_ttl 1 s) against such a Redis:

* kept at ``maxmemory`` by application keys, under each eviction policy
  (with application keys without a TTL, a ``volatile-*`` policy can evict
  nothing but the kind's lease);
* emptied by ``FLUSHALL``/``FLUSHDB`` every 5 ± 0.5 s.

and asserts the checker's promises over every process' log (no two leaders
at once, terms never go back, no while_leader work overlapping another's
leadership), and that one leader is back within 2 x lease_ttl once the
pressure ends. ``CHAOS_SCALE=full`` holds each fault for 60 s, as the
measurements in docs/reliability.md do.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chaos_scale import scaled
from harness import ChaosCluster, wait_until
from memory import Flusher, MemoryPressure

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.usefixtures("no_leftover_processes"),
]

LEASE_TTL = 1.0
WORKERS = 4
HOLD = scaled(6.0, 60.0)
TIMEOUT = scaled(120, 300)

#: (maxmemory-policy, TTL of the application keys): the rows of docs/reliability.md.
POLICIES = [
    pytest.param("volatile-lru", None, id="volatile-lru-lease-only-evictable"),
    pytest.param("allkeys-lru", None, id="allkeys-lru"),
    pytest.param("volatile-lru", 60.0, id="volatile-lru-app-ttl"),
    pytest.param("volatile-ttl", 60.0, id="volatile-ttl-app-ttl"),
    pytest.param("noeviction", None, id="noeviction"),
]


def hold(seconds: float) -> None:
    """Keep the fault on for ``seconds`` (a chosen duration, not a wait for a condition)."""
    until = time.time() + seconds
    wait_until(lambda: time.time() >= until, timeout=seconds + 1.0, interval=0.05)


def leader_back(c: ChaosCluster, since: float) -> float:
    """Seconds from ``since`` until one leader is agreed on (by Redis and every log)."""
    c.wait_for_one_leader(timeout=10 * LEASE_TTL)
    return time.time() - since


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize(("policy", "app_ttl"), POLICIES)
def test_a_redis_that_evicts(tmp_path: Path, policy: str, app_ttl: float | None) -> None:
    name = f"m-{policy}-{'ttl' if app_ttl else 'nottl'}"
    with ChaosCluster(name, run_dir=tmp_path / "run", n=WORKERS, lease_ttl=LEASE_TTL) as c:
        c.wait_for_one_leader(timeout=10)
        with MemoryPressure(c.admin, c.keys, policy=policy, app_ttl=app_ttl) as pressure:
            c.fault("memory-pressure", None, converge=False, policy=policy, app_ttl=app_ttl)
            hold(HOLD)
            released = pressure.release()
        back = leader_back(c, released)
        c.extra.update(pressure=pressure.summary(), leader_back_s=round(back, 3))
    report = c.assert_promises()
    print(pressure.summary(), f"leader back {back:.3f} s after the pressure ended")
    assert back <= 2 * LEASE_TTL, f"no leader until {back:.2f} s after the pressure ended"
    if policy == "volatile-lru" and app_ttl is None:
        assert pressure.lease_evictions > 0, "the scenario did not evict the lease"
    assert report.faults_injected >= 1


@pytest.mark.timeout(TIMEOUT)
def test_flushall_and_flushdb_every_few_seconds(tmp_path: Path) -> None:
    with ChaosCluster("m-flush", run_dir=tmp_path / "run", n=WORKERS, lease_ttl=LEASE_TTL) as c:
        c.wait_for_one_leader(timeout=10)
        every = scaled(2.0, 5.0)
        with Flusher(c.admin, every=every, jitter=every / 10) as flusher:
            hold(HOLD)
            released = flusher.release()
        for t in flusher.flushes:
            c.fault("flush", None, converge=False, at=t)
        back = leader_back(c, released)
        c.extra.update(flushes=len(flusher.flushes), leader_back_s=round(back, 3))
    report = c.assert_promises()
    assert flusher.flushes, "nothing was flushed"
    assert back <= 2 * LEASE_TTL
    assert report.faults_injected >= len(flusher.flushes)
