"""Messaging: delivery, receiver counts, Message fields, scopes, aliases, bad payloads."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from helpers import Cluster, Recorder, wait_until

from raftredis import Candidate, Message, MessageError, Scope


@pytest.fixture
def trio(cluster: Cluster) -> tuple[Candidate, Candidate, Candidate, dict[str, Recorder]]:
    """A leader and two followers, each with a recorder of its message signals."""
    leader, f1, f2 = cluster.start_many(3)
    assert leader.is_leader
    recorders = {}
    for c in (leader, f1, f2):
        recorders[c.id] = Recorder().connect(
            c, "message", "message:from:leader", "message:from:follower", "error"
        )
    return leader, f1, f2, recorders


def payloads(recorder: Recorder, name: str = "message") -> list[Any]:
    return [e.kwargs["message"].payload for e in recorder.of(name)]


def barrier(sender: Candidate, receivers: list[Candidate], recorders: dict[str, Recorder]) -> None:
    """Send a marker to each receiver directly and wait for it: anything sent before it
    on the same channels has been handled by then (one thread, in order)."""
    marker = f"marker-{uuid.uuid4().hex}"
    for r in receivers:
        assert sender.message_to(r.id, marker) == 1
    for r in receivers:
        recorders[r.id].wait_for("message", lambda e, m=marker: e.kwargs["message"].payload == m)


def test_message_all_reaches_every_other_instance(trio: Any) -> None:
    """message_all from a follower returns 2 and both others get it; the sender does not."""
    leader, f1, f2, rec = trio
    assert f1.message_all({"hello": "all"}) == 2
    for c in (leader, f2):
        got = rec[c.id].wait_for("message").kwargs["message"]
        assert got.payload == {"hello": "all"}
        assert got.scope is Scope.ALL
        assert got.sender_id == f1.id
        assert got.from_leader is False
    barrier(leader, [f1], rec)
    assert payloads(rec[f1.id]) == [payloads(rec[f1.id])[-1]]  # only the marker


def test_message_followers_from_the_leader(trio: Any) -> None:
    """message_followers from the leader returns 2; both followers get it, the leader does not."""
    leader, f1, f2, rec = trio
    assert leader.message_followers("to followers") == 2
    for c in (f1, f2):
        got = rec[c.id].wait_for("message:from:leader").kwargs["message"]
        assert got.payload == "to followers"
        assert got.scope is Scope.FOLLOWERS
        assert got.from_leader is True
        assert got.term == leader.current_term
    barrier(f1, [leader], rec)
    assert "to followers" not in payloads(rec[leader.id])


def test_message_followers_from_a_follower(trio: Any) -> None:
    """From a follower the count includes the leader (which drops it): 2 with 3 instances."""
    leader, f1, f2, rec = trio
    assert f1.message_followers("from f1") == 2
    got = rec[f2.id].wait_for("message:from:follower").kwargs["message"]
    assert got.payload == "from f1" and got.scope is Scope.FOLLOWERS
    barrier(f2, [leader], rec)
    assert "from f1" not in payloads(rec[leader.id])


def test_message_leader_from_a_follower(trio: Any) -> None:
    """message_leader from a follower returns 1; the leader gets it with scope LEADER."""
    leader, f1, f2, rec = trio
    assert f1.message_leader({"q": 1}) == 1
    got = rec[leader.id].wait_for("message:from:follower").kwargs["message"]
    assert got.payload == {"q": 1}
    assert got.scope is Scope.LEADER
    assert got.sender_id == f1.id
    assert got.from_leader is False
    barrier(leader, [f2], rec)
    assert {"q": 1} not in payloads(rec[f2.id])


def test_message_leader_from_the_leader_returns_zero(trio: Any) -> None:
    """message_leader on the leader itself sends nothing and returns 0."""
    leader, f1, _f2, rec = trio
    assert leader.message_leader("to myself") == 0
    barrier(f1, [leader], rec)
    assert "to myself" not in payloads(rec[leader.id])


def test_message_to_one_instance(trio: Any) -> None:
    """message_to(id) returns 1 and only that instance gets it, with scope DIRECT."""
    leader, f1, f2, rec = trio
    assert leader.message_to(f2.id, [1, 2, 3]) == 1
    got = rec[f2.id].wait_for("message:from:leader").kwargs["message"]
    assert got.payload == [1, 2, 3] and got.scope is Scope.DIRECT
    assert f2.message_to(f1.id, "f2->f1") == 1
    got = rec[f1.id].wait_for("message:from:follower").kwargs["message"]
    assert got.payload == "f2->f1" and got.sender_id == f2.id
    barrier(leader, [f1], rec)
    assert [1, 2, 3] not in payloads(rec[f1.id])


def test_message_to_unknown_or_self_returns_zero(trio: Any) -> None:
    """message_to an unknown id returns 0; to oneself returns 0 and nothing is received."""
    leader, f1, _f2, rec = trio
    assert leader.message_to("no-such-instance", "lost") == 0
    assert f1.message_to(f1.id, "to myself") == 0
    barrier(leader, [f1], rec)
    assert "to myself" not in payloads(rec[f1.id])


@pytest.mark.parametrize("bad_id", ["", None, 42, b"bytes"])
def test_message_to_needs_an_id(trio: Any, bad_id: Any) -> None:
    """message_to with an empty or non-str id raises MessageError."""
    leader = trio[0]
    with pytest.raises(MessageError):
        leader.message_to(bad_id, "x")


def test_message_fields(trio: Any, redis_client: redis.Redis) -> None:
    """Message fields: payload, sender_id, scope, from_leader, term, message_id, sent_at."""
    leader, f1, _f2, rec = trio
    before = time.time()
    assert leader.message_to(f1.id, {"n": [1, {"deep": None}], "s": "é😀"}) == 1
    assert leader.message_to(f1.id, "second") == 1
    rec[f1.id].wait_for("message", count=2)
    after = time.time()
    first, second = (e.kwargs["message"] for e in rec[f1.id].of("message"))
    assert isinstance(first, Message)
    assert first.payload == {"n": [1, {"deep": None}], "s": "é😀"}
    assert first.sender_id == leader.id
    assert first.scope is Scope.DIRECT
    assert first.from_leader is True
    assert first.term == leader.current_term
    assert isinstance(first.message_id, str) and first.message_id
    assert first.message_id != second.message_id
    assert before - 1 <= first.sent_at <= second.sent_at <= after + 1
    # Seed-style names.
    assert first.message == first.payload
    assert first.sender == leader.id


@pytest.mark.parametrize(
    "payload", [None, True, 0, -1.5, "", "text", [], {}, {"a": [1, 2, {"b": None}]}, 10**30]
)
def test_any_json_payload_round_trips(trio: Any, payload: Any) -> None:
    """Every kind of JSON value arrives equal to what was sent."""
    leader, f1, _f2, rec = trio
    assert leader.message_to(f1.id, payload) == 1
    got = rec[f1.id].wait_for("message").kwargs["message"]
    assert got.payload == payload and type(got.payload) is type(payload)


def test_messages_arrive_in_order(trio: Any) -> None:
    """Many messages from one sender arrive at a receiver in the order they were sent."""
    leader, f1, _f2, rec = trio
    for i in range(200):
        assert leader.message_to(f1.id, i) == 1
    rec[f1.id].wait_for("message", count=200)
    assert payloads(rec[f1.id]) == list(range(200))


def test_camel_case_aliases(trio: Any) -> None:
    """messageTo/All/Followers/Leader, getInstances/Leader/Meta, setMeta, currentTerm work."""
    leader, f1, f2, rec = trio
    assert leader.messageTo(f1.id, "to") == 1
    assert leader.messageAll("all") == 2
    assert leader.messageFollowers("followers") == 2
    assert f2.messageLeader("leader") == 1
    rec[f1.id].wait_for("message", count=3)
    assert payloads(rec[f1.id]) == ["to", "all", "followers"]
    rec[leader.id].wait_for("message")
    assert payloads(rec[leader.id]) == ["leader"]
    assert {i.id for i in f1.getInstances()} == {leader.id, f1.id, f2.id}
    got = f1.getLeader()
    assert got is not None and got.id == leader.id
    f1.setMeta({"camel": True})
    assert f1.getMeta() == {"camel": True}
    wait_until(
        lambda: next(i for i in leader.getInstances() if i.id == f1.id).meta == {"camel": True}
    )
    assert leader.currentTerm == leader.current_term >= 1
    assert f1.currentTerm == leader.currentTerm


# ------------------------------------------------------------- bad payloads


def _assert_nothing_published(
    redis_client: redis.Redis, kind: str, action: Any, expected: type[Exception]
) -> Exception:
    """Run ``action``; it must raise ``expected`` and publish nothing on the kind's channels."""
    pubsub = redis_client.pubsub()
    pattern = f"raftredis:{{{kind}}}:*"
    try:
        pubsub.psubscribe(pattern)
        reply = pubsub.get_message(timeout=2.0)
        assert reply is not None and reply["type"] == "psubscribe"
        with pytest.raises(expected) as info:
            action()
        sentinel = f"sentinel-{uuid.uuid4().hex}".encode()
        redis_client.publish(f"raftredis:{{{kind}}}:sentinel", sentinel)
        seen = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            msg = pubsub.get_message(timeout=0.1)
            if msg is None or msg["type"] != "pmessage":
                continue
            if msg["data"] == sentinel:
                break
            seen.append(msg)
        else:
            raise AssertionError("the sentinel never arrived")
        assert seen == [], f"published although the call failed: {seen}"
        return info.value
    finally:
        pubsub.close()


class NotJson:
    pass


NOT_JSON = [
    {1, 2},
    NotJson(),
    float("nan"),
    float("inf"),
    {"k": b"bytes"},
    {(1, 2): "tuple key"},
    lambda: None,
]


@pytest.mark.parametrize("payload", NOT_JSON, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize(
    "method", ["message_all", "message_followers", "message_leader", "message_to"]
)
def test_non_json_payload_raises_and_publishes_nothing(
    cluster: Cluster, redis_client: redis.Redis, method: str, payload: Any
) -> None:
    """A payload that is not JSON raises MessageError and nothing is published."""
    leader = cluster.start()
    follower = cluster.start()
    sender = follower if method == "message_leader" else leader
    args = (follower.id, payload) if method == "message_to" else (payload,)
    error = _assert_nothing_published(
        redis_client, cluster.kind, lambda: getattr(sender, method)(*args), MessageError
    )
    assert isinstance(error, ValueError)
    assert "JSON" in str(error)


def test_self_referencing_payload_raises_message_error(cluster: Cluster) -> None:
    """A payload that contains itself raises MessageError (not RecursionError/ValueError)."""
    leader = cluster.start()
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(MessageError):
        leader.message_all(loop)


def test_oversized_payload_raises_message_error(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    """A message over max_message_bytes raises MessageError naming the limit; nothing is sent."""
    leader = cluster.start(max_message_bytes=2048)
    receiver = cluster.start(max_message_bytes=2048)
    rec = Recorder().connect(receiver, "message")
    error = _assert_nothing_published(
        redis_client, cluster.kind, lambda: leader.message_all("x" * 4000), MessageError
    )
    assert "max_message_bytes" in str(error) and "2048" in str(error)
    with pytest.raises(MessageError):
        leader.message_to(receiver.id, {"k": "y" * 2100})
    with pytest.raises(MessageError):
        receiver.message_leader(["z" * 2100])
    # A payload that fits still goes through.
    assert leader.message_all("x" * 1000) == 1
    assert rec.wait_for("message").kwargs["message"].payload == "x" * 1000


def test_oversized_message_is_dropped_by_the_receiver(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    """A receiver with a smaller limit drops a bigger message as a ProtocolError."""
    from raftredis import ProtocolError

    sender = cluster.start(max_message_bytes=1 << 20)
    receiver = cluster.start(max_message_bytes=1024)
    rec = Recorder().connect(receiver, "message", "error")
    assert sender.message_to(receiver.id, "a" * 5000) == 1
    error = rec.wait_for("error").kwargs["error"]
    assert isinstance(error, ProtocolError)
    assert sender.message_to(receiver.id, "small") == 1
    assert rec.wait_for("message").kwargs["message"].payload == "small"
    assert payloads(rec) == ["small"]


def test_other_kinds_do_not_hear_messages(cluster: Cluster, redis_url: str) -> None:
    """message_all of one kind does not reach instances of another kind (counts say so too)."""
    a = cluster.start()
    b = cluster.start()
    with Cluster(redis_url) as other_kind:
        stranger = other_kind.start()
        rec_stranger = Recorder().connect(stranger, "message")
        rec_b = Recorder().connect(b, "message")
        assert a.message_all("kind only") == 1
        assert a.message_followers("followers only") == 1
        assert a.message_to(stranger.id, "wrong kind") == 0
        rec_b.wait_for("message", count=2)
        assert stranger.message_all("other kind") == 0
        assert not rec_stranger.events


def test_reply_from_inside_a_receiver(trio: Any) -> None:
    """A receiver can send (message_to the sender) from the message thread: an echo works."""
    leader, f1, _f2, rec = trio
    f1.on(
        "message:from:leader",
        lambda sender, message, **extra: sender.message_to(
            message.sender_id, ["echo", message.payload]
        ),
    )
    assert leader.message_to(f1.id, "ping") == 1
    got = rec[leader.id].wait_for("message").kwargs["message"]
    assert got.payload == ["echo", "ping"] and got.sender_id == f1.id


def test_concurrent_senders(trio: Any) -> None:
    """Several threads sending through one Candidate at once: every message arrives."""
    import threading

    leader, f1, _f2, rec = trio
    counts: list[int] = []
    lock = threading.Lock()

    def send(t: int) -> None:
        for i in range(50):
            n = leader.message_to(f1.id, [t, i])
            with lock:
                counts.append(n)

    threads = [threading.Thread(target=send, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert counts == [1] * 200
    rec[f1.id].wait_for("message", count=200)
    got = payloads(rec[f1.id])
    assert sorted(map(tuple, got)) == [(t, i) for t in range(4) for i in range(50)]
    for t in range(4):  # each sender thread's messages stay in its order
        assert [i for tt, i in got if tt == t] == list(range(50))
