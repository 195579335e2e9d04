"""Fast failover on a real Redis: the presence connection, its proofs, and what happens
when it is lost while its instance lives.

A crash (SIGKILL of a leader process) is in test_api_failover.py; the chaos
scenarios (tests/chaos/test_connections.py) close connections in every way a
network or an admin can, under load. Here, one rule a test:

* a leader's presence connection is listed on its presence channel and its
  pings come back as pub/sub pongs (what the proofs rest on);
* the followers learn their turn in the shared watch (their rank by id);
* CLIENT KILL of a leader's presence connection while it lives: it stops leading
  at once and comes back, in the same term, once its connection is back and a
  renew has cleared any suspicion; nobody else leads meanwhile;
* a paused leader (SIGSTOP, shorter than renew_deadline) keeps its term;
* a Redis user without +ping or +pubsub|numsub: fast failover turns itself off
  (reported), and the lease decides;
* Sentinel and Redis Cluster: off, and refused when asked for.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from helpers import Cluster, wait_until
from support.kinds import unique_kind
from support.processes import leader_subprocess

from raftredis import Candidate, ConfigurationError, RefusedError
from raftredis.keys import KeySpace
from raftredis.testing import RedisServer


def test_the_leader_proves_its_presence(cluster: Cluster, redis_client: redis.Redis) -> None:
    leader = cluster.start()
    follower = cluster.start()
    keys = KeySpace("raftredis", cluster.kind)
    for c in (leader, follower):
        assert c.fast_failover
        ((_, listeners),) = redis_client.pubsub_numsub(keys.presence(c.id))
        assert listeners == 1, f"{c.id} has no presence connection"
    # Its proofs keep it leading past a presence window, again and again.
    window = leader.timings.presence_window
    until = time.monotonic() + 5 * window
    while time.monotonic() < until:
        assert leader.is_leader and not follower.is_leader
        time.sleep(window / 4)
    assert redis_client.get(keys.presence_term) == f"{leader.current_term} {leader.id}".encode()


def test_the_followers_take_turns_in_the_order_of_their_ids(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    """The watch reads the members with the listeners: each follower learns its place
    among the followers by id (what spreads their watches evenly over the period)."""
    leader = cluster.start()
    followers = [cluster.start() for _ in range(3)]
    expected = {c.id: rank for rank, c in enumerate(sorted(followers, key=lambda c: c.id))}
    for c in followers:
        assert c._session is not None
        store = c._session.store
        listeners, members, rank = store.presence_listeners(leader.id, count_members=True)
        assert (listeners, members, rank) == (1, 4, expected[c.id])
        assert store.presence_listeners(leader.id) == (1, None, None)
    # ... and the election of each follower has it from its own first watch.
    for c in followers:
        election = c._election
        wait_until(
            lambda e=election, r=expected[c.id]: (
                e._watch_rank == r and e._server_offset is not None
            ),
            timeout=5.0,
            message=f"{c.id} never learned its turn",
        )


def test_killing_every_subscribed_connection_suspends_the_leader_only(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    leader = cluster.start()
    follower = cluster.start()
    term = leader.current_term
    seen: list[str] = []
    leader.on("state_changed", lambda sender, old, new, **extra: seen.append(new.value))
    two_leaders = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if leader.is_leader and follower.is_leader:
                two_leaders.set()
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        channel = KeySpace("raftredis", cluster.kind).presence(leader.id)
        for client in redis_client.client_list(_type="pubsub"):
            if client.get("name") == "" and int(client.get("sub", 0)) == 1:
                redis_client.client_kill_filter(_id=client["id"])
        # Every killed connection reconnects; the leader's presence comes back.
        wait_until(lambda: redis_client.pubsub_numsub(channel)[0][1] == 1, timeout=5)
        wait_until(lambda: leader.is_leader or follower.is_leader, timeout=5)
        time.sleep(3 * leader.timings.presence_window)  # long enough for any takeover
    finally:
        stop.set()
        watcher.join(2)
    assert not two_leaders.is_set(), "two instances led at once"
    if leader.is_leader:
        assert leader.current_term == term
        assert "follower" in seen, "it did not stop leading when its connection was lost"
    else:  # the follower took the lease over: it was gone for a whole window
        assert follower.is_leader and follower.current_term > term


@pytest.fixture
def paused_leader(redis_url: str) -> Iterator[tuple[subprocess.Popen[str], str, str, int]]:
    """A leader Candidate (lease_ttl=3.0) of a fresh kind in a separate process, to be
    paused: (process, kind, id, term)."""
    kind = unique_kind("pause")
    with leader_subprocess(redis_url, kind, lease_ttl=3.0) as (proc, leader_id, term):
        yield proc, kind, leader_id, term


def test_a_pause_shorter_than_renew_deadline_keeps_leader_and_term(
    paused_leader: tuple[subprocess.Popen[str], str, str, int], redis_url: str
) -> None:
    """SIGSTOP keeps the leader's connections open: nobody may take the lease over."""
    proc, kind, leader_id, term = paused_leader
    follower = Candidate(redis=redis_url, kind=kind, lease_ttl=3.0).start()
    try:
        assert follower.leader_id == leader_id
        pause = 0.5 * follower.timings.renew_deadline  # 1 s: five presence windows
        proc.send_signal(signal.SIGSTOP)
        until = time.monotonic() + pause
        while time.monotonic() < until:
            assert not follower.is_leader
            time.sleep(0.01)
        proc.send_signal(signal.SIGCONT)
        time.sleep(follower.timings.renew_interval)
        assert not follower.is_leader and follower.leader_id == leader_id
        assert follower.current_term == term
    finally:
        proc.send_signal(signal.SIGCONT)
        follower.stop()


def test_a_user_without_ping_gets_no_fast_failover(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    user, password = f"noping-{unique_kind()}", "change-me"
    admin.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-ping"
    )
    url = f"redis://{user}:{password}@{redis_server.host}:{redis_server.port}/0"
    candidate = Candidate(redis=url, kind=unique_kind(), lease_ttl=1.0)
    errors: list[BaseException] = []
    candidate.on("error", lambda sender, error, **extra: errors.append(error))
    try:
        candidate.start()
        assert candidate.is_leader and not candidate.fast_failover
        refused = wait_until(lambda: [e for e in errors if isinstance(e, RefusedError)], 2)
        assert "fast failover is off" in str(refused[0]) and "+ping" in str(refused[0])
    finally:
        candidate.stop()
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_off_behind_sentinel_and_in_a_cluster() -> None:
    for url in ("redis+sentinel://127.0.0.1:26379/mymaster", "redis+cluster://127.0.0.1:7000"):
        assert not Candidate(redis=url, kind="k").fast_failover
        with pytest.raises(ConfigurationError, match="fast_failover is not safe"):
            Candidate(redis=url, kind="k", fast_failover=True)
    assert Candidate(redis="redis://127.0.0.1:6379/0", kind="k").fast_failover
    with pytest.raises(ConfigurationError, match="fast_failover must be"):
        Candidate(kind="k", fast_failover="yes")
