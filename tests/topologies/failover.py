"""Checks shared by the Sentinel and Cluster failover tests.

``primary`` is a function that returns the server that holds the kind's keys
now (the Sentinel primary, or the cluster node serving the kind's slot), so
that the lease is checked where Redis keeps it, not only where the
Candidates believe it is.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from raftredis import Candidate
from raftredis.testing import RedisServer, agreed_leader, wait_until

Primary = Callable[[], RedisServer]


def settled(group: list[Candidate], primary: Primary, kind: str) -> Candidate | None:
    """The leader, if exactly one leads, all know it, and the primary's lease names it."""
    leader = agreed_leader(group)
    if leader is None:
        return None
    try:
        client = primary().client()
    except (redis.RedisError, OSError, StopIteration, AssertionError):
        return None  # no primary right now
    try:
        value = client.get(f"raftredis:{{{kind}}}:leader")
    except redis.RedisError:
        return None
    finally:
        client.close()
    expected = f"{leader.current_term} {leader.id} ".encode()
    return leader if value is not None and value.startswith(expected) else None


def healthy(candidate: Candidate) -> bool:
    """Running, with its heartbeat and both listener threads alive."""
    session = candidate._session
    if session is None:
        return False
    heartbeat = session.heartbeat
    listeners = session.listeners
    return (
        candidate.is_running
        and heartbeat.alive
        and len(listeners) == 2
        and all(
            listener.thread is not None and listener.thread.is_alive() for listener in listeners
        )
    )


def messages_flow(group: list[Candidate], leader: Candidate) -> bool:
    """Every follower reaches the leader, and the leader reaches every follower."""
    try:
        return all(c.message_to(leader.id, "ping") == 1 for c in group if c is not leader) and all(
            leader.message_to(c.id, "pong") == 1 for c in group if c is not leader
        )
    except redis.RedisError:
        return False


def check_after_failover(
    group: list[Candidate], primary: Primary, kind: str, old_leader: Candidate, old_term: int
) -> Candidate:
    """One settled leader with a term no lower (higher if it changed), messages flowing."""
    leader = wait_until(
        lambda: settled(group, primary, kind),
        15.0,
        lambda: f"no settled leader: {group}",
    )
    term = leader.current_term
    assert term >= old_term
    if leader is not old_leader:
        assert term > old_term  # a new election
    # The same leader may win again in a new term (the new primary lost the lease):
    # its followers then know who leads already, and read the new term at their
    # next heartbeat. Wait for that rather than assert it at once (a race CI hit).
    wait_until(
        lambda: all(c.current_term == term for c in group),
        5.0,
        lambda: f"the terms did not agree on {term}: {group}",
    )
    wait_until(lambda: messages_flow(group, leader), 10.0, "messages do not reach everyone")
    assert all(healthy(c) for c in group), group
    assert [i.id for i in leader.get_instances()] == [c.id for c in group]
    return leader
