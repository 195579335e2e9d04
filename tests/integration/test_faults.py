"""Redis misbehaving under a running cluster: paused, pub/sub connections killed; the budget.

Each test runs its own redis-server (the shared one must stay healthy).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import wait_until

from raftredis import Candidate
from raftredis.testing import RedisServer


def start_cluster(url: str, n: int, lease_ttl: float = 1.0, **kwargs: Any) -> list[Candidate]:
    return [
        Candidate(redis=url, kind="faults", lease_ttl=lease_ttl, **kwargs).start() for _ in range(n)
    ]


def leaders(cluster: list[Candidate]) -> list[Candidate]:
    return [c for c in cluster if c.is_leader]


def test_paused_redis_demotes_leader_before_lease_can_expire(own_server: RedisServer) -> None:
    """SIGSTOP of Redis: the leader stops calling itself leader by renew_deadline (plus a
    renew interval of scheduling slack), well before lease_ttl; one leader after resume."""
    cluster = start_cluster(own_server.url, 3)
    try:
        (leader,) = wait_until(lambda: leaders(cluster) if len(leaders(cluster)) == 1 else None)
        old_term = leader.current_term
        t = leader.timings
        own_server.pause()
        paused_at = time.monotonic()
        wait_until(lambda: not leader.is_leader, timeout=t.lease_ttl)
        demoted_after = time.monotonic() - paused_at
        assert demoted_after < t.renew_deadline + t.renew_interval
        assert leaders(cluster) == []
        own_server.resume()
        (new_leader,) = wait_until(
            lambda: leaders(cluster) if len(leaders(cluster)) == 1 else None, timeout=10
        )
        assert new_leader.current_term >= old_term
        # Everyone agrees on who leads once the dust settles.
        wait_until(lambda: all(c.leader_id == new_leader.id for c in cluster), timeout=5)
    finally:
        own_server.resume()
        for c in cluster:
            c.stop()


def test_killed_pubsub_connections_reconnect_and_resync(own_server: RedisServer) -> None:
    """CLIENT KILL TYPE pubsub: listeners reconnect, re-subscribe, and messages flow again."""
    cluster = start_cluster(own_server.url, 3)
    got: list[object] = []
    try:
        for c in cluster:
            c.on("message", lambda sender, message, **_: got.append(message.payload))
        admin = own_server.client()
        killed = admin.client_kill_filter(_type="pubsub")
        assert killed >= 6  # two pub/sub connections per Candidate

        def delivered_to_all() -> bool:
            got.clear()
            return cluster[0].message_all("ping") == 2 and wait_for_len(got, 2)

        wait_until(delivered_to_all, timeout=5)
        (leader,) = wait_until(lambda: leaders(cluster) if len(leaders(cluster)) == 1 else None)
        # A leader change after the reconnect still reaches everyone through the new sockets.
        leader.reelect()
        wait_until(lambda: all(c.leader_id not in (None, leader.id) for c in cluster), timeout=5)
        admin.close()
    finally:
        for c in cluster:
            c.stop()


def wait_for_len(items: list[object], n: int, timeout: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(items) >= n:
            return True
        time.sleep(0.005)
    return False


def _commands_per_second(admin: Any, cluster: list[Candidate], seconds: float) -> float:
    """Commands Redis ran per second (INFO commandstats counts each redis.call of a
    script too), measured over ``seconds`` once everyone knows the leader."""
    wait_until(lambda: len({c.leader_id for c in cluster} - {None}) == 1)

    def calls() -> int:
        stats = admin.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")

    before, t0 = calls(), time.monotonic()
    time.sleep(seconds)
    return (calls() - before) / (time.monotonic() - t0)


def test_redis_command_budget_with_default_timings(own_server: RedisServer) -> None:
    """Three instances with default timings and fast failover off stay within 2.5 Redis
    commands per instance per second, as INFO commandstats counts them."""
    admin = own_server.client()
    cluster = start_cluster(own_server.url, 3, lease_ttl=3.0, fast_failover=False)
    try:
        # Two leader prune cycles (member_expiry = 6 s).
        per_instance = _commands_per_second(admin, cluster, 12.0) / len(cluster)
        assert per_instance <= 2.5, f"{per_instance:.2f} commands per instance per second"
        assert per_instance > 0.5  # it did measure the heartbeats
    finally:
        for c in cluster:
            c.stop()
        admin.close()


@pytest.mark.parametrize("instances", [3, 10])
def test_fast_failover_costs_at_most_20_commands_per_second_per_kind(
    own_server: RedisServer, instances: int
) -> None:
    """The leader's presence pings and the followers' shared watch cost at most 20
    commands per second for the whole kind, whatever its size: the same kind measured
    with fast failover off, then on."""
    admin = own_server.client()
    measured = {}
    try:
        for fast in (False, True):
            cluster = start_cluster(own_server.url, instances, lease_ttl=3.0, fast_failover=fast)
            try:
                assert all(c.fast_failover is fast for c in cluster)
                if fast:  # let every follower learn the kind's size (its watches count it)
                    followers = [c for c in cluster if not c.is_leader]
                    wait_until(
                        lambda f=followers: all(c._election.kind_size == instances for c in f),
                        15,
                    )
                measured[fast] = _commands_per_second(admin, cluster, 6.0)
            finally:
                for c in cluster:
                    c.stop()
        extra = measured[True] - measured[False]
        print(f"{instances} instances: {measured[False]:.1f} commands/s, {extra:.1f} more fast")
        assert extra <= 20, f"fast failover costs {extra:.1f} commands per second"
        assert extra > 10  # it did measure the pings and the watch
    finally:
        admin.close()


def test_while_leader_stop_event_is_set_at_the_deadline_even_if_redis_hangs(
    own_server: RedisServer,
) -> None:
    """With Redis paused, the heartbeat thread is stuck in a call when the lease
    deadline passes; the watchdog still sets the stop event within a few ms of
    is_leader turning false."""
    import threading

    candidate = Candidate(redis=own_server.url, kind="watchdog", lease_ttl=1.0).start()
    stopped_at: list[float] = []
    started = threading.Event()

    def work(stop_event: threading.Event) -> None:
        started.set()
        stop_event.wait()
        stopped_at.append(time.monotonic())

    try:
        candidate.while_leader(work)
        assert started.wait(2.0)
        own_server.pause()
        wait_until(lambda: not candidate.is_leader, timeout=2.0, interval=0.001)
        not_leader_at = time.monotonic()
        wait_until(lambda: stopped_at, timeout=2.0, interval=0.001)
        assert stopped_at[0] - not_leader_at < 0.03
    finally:
        own_server.resume()
        candidate.stop()
