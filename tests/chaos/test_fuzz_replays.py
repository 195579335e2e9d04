"""Real envelopes replayed where they do not belong: another kind's traffic on this
kind's channels, and a deposed leader's messages after everyone knows the newer term
(see fuzz_cluster.py for the cluster and what is checked)."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from fuzz_cluster import BARRIER_SENDER, FuzzCluster
from inproc import Candidates, admin_client, wait_until
from support.kinds import unique_kind

from raftredis import ProtocolError
from raftredis.testing import RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def test_real_envelopes_of_another_kind_are_dropped(
    fuzz: FuzzCluster, own_redis: RedisServer
) -> None:
    """Envelopes captured from another kind's real traffic, replayed on every channel of
    this kind: each subscriber reports each one as for another kind; nothing is delivered."""
    fuzz.wait_healthy()
    fuzz.take_all()
    other_kind = unique_kind("other")
    client = admin_client(own_redis)
    listener = client.pubsub()
    with Candidates(own_redis.url, other_kind) as others:
        a, b = others.start(), others.start()
        leader, follower = (a, b) if a.is_leader else (b, a)
        base = f"raftredis:{{{other_kind}}}"
        listener.subscribe(f"{base}:all", f"{base}:followers", f"{base}:to:{leader.id}")
        wait_until(lambda: listener.get_message(timeout=0.05) is None and listener.subscribed)
        assert leader.message_all("other kind: all") == 2  # the follower and our listener
        assert follower.message_leader("other kind: to the leader") == 2  # + our listener
        assert leader.message_followers("other kind: followers") == 2
        captured: list[bytes] = []

        def got_three() -> bool:
            message = listener.get_message(timeout=0.05)
            if message is not None and message["type"] == "message":
                captured.append(message["data"])
            return len(captured) == 3

        wait_until(got_three, timeout=5.0)
    listener.close()
    client.close()
    counts: Counter[int] = Counter()
    for data in captured:
        for suffix in fuzz.message_suffixes():
            fuzz.publish(suffix, data)
            for k in fuzz.subscribers(suffix):
                counts[k] += 1
    fuzz.message_barrier()
    for k, events in enumerate(fuzz.take_all()):
        errors = [e.kwargs["error"] for e in events if e.name == "error"]
        assert len(errors) == counts[k], (k, [str(e) for e in errors])
        assert all(isinstance(e, ProtocolError) and other_kind in str(e) for e in errors)
        assert not [
            e
            for e in events
            if e.name == "message" and e.kwargs["message"].sender_id != BARRIER_SENDER
        ]
    fuzz.assert_alive()


def test_replayed_messages_of_a_deposed_leader_are_dropped(
    fuzz: FuzzCluster, own_redis: RedisServer
) -> None:
    """Real envelopes of the leader (to all, to the followers, to one follower), captured
    off the wire, replayed after it lost the lease and everyone knows the newer term: none
    arrives as a message from the leader; each is dropped and reported as stale, except
    where the API drops it silently (its own message; followers-only on the new leader)."""
    old = fuzz.wait_healthy()
    fuzz.take_all()
    target = next(c for c in fuzz.nodes if c is not old)
    client = admin_client(own_redis)
    listener = client.pubsub()
    listener.subscribe(
        fuzz.channel("all"), fuzz.channel("followers"), fuzz.channel(f"to:{target.id}")
    )
    wait_until(lambda: listener.get_message(timeout=0.05) is None and listener.subscribed)
    sent = {
        "all": old.message_all({"replay": "all"}),
        "followers": old.message_followers({"replay": "followers"}),
        f"to:{target.id}": old.message_to(target.id, {"replay": "direct"}),
    }
    assert sent == {"all": 3, "followers": 3, f"to:{target.id}": 2}, sent  # our listener too
    captured: dict[str, bytes] = {}
    prefix = fuzz.channel("")

    def capture() -> bool:
        message = listener.get_message(timeout=0.05)
        if message is not None and message["type"] == "message":
            captured[message["channel"].decode()[len(prefix) :]] = message["data"]
        return len(captured) == 3

    wait_until(capture, timeout=5.0)
    listener.close()
    client.close()
    # The originals arrived as messages from the leader.
    for k, node in enumerate(fuzz.nodes):
        if node is not old:
            fuzz.recorders[k].wait_for("message_from_leader", count=2 if node is target else 1)
    old_term = old.current_term
    # Depose it: reelect until someone else leads (it may win again after its back-off).
    deadline = time.monotonic() + 15.0
    while fuzz.leader() in (old, None) and time.monotonic() < deadline:
        if old.is_leader:
            old.reelect()
        time.sleep(0.05)
    new = fuzz.wait_healthy()
    assert new is not old and new.current_term > old_term
    wait_until(lambda: all(c.current_term == new.current_term for c in fuzz.nodes), timeout=3.0)
    fuzz.take_all()
    for suffix, data in captured.items():
        fuzz.publish(suffix, data)
    fuzz.message_barrier()
    events = fuzz.take_all()
    for k, node in enumerate(fuzz.nodes):
        from_leader = [e for e in events[k] if e.name == "message_from_leader"]
        replayed = [
            e for e in events[k] if e.name == "message" and e.kwargs["message"].sender_id == old.id
        ]
        errors = [e.kwargs["error"] for e in events[k] if e.name == "error"]
        assert not replayed and not from_leader, (k, replayed)
        if node is old:
            expected = 0  # its own messages: dropped silently
        elif node is new:
            expected = 1 + (1 if node is target else 0)  # all (+ direct); followers: silent
        else:
            expected = 2 + (1 if node is target else 0)  # all and followers (+ direct)
        assert len(errors) == expected, (k, node is new, node is target, [str(e) for e in errors])
        for error in errors:  # today: "... leader of term N ...: dropped as stale or forged"
            assert isinstance(error, ProtocolError)
            assert error.raw in {data[:200] for data in captured.values()}
    fuzz.assert_alive()
    fuzz.assert_messages_flow()
