"""MessageBatch (Candidate.batch()) and the PublishPool's connections, against a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from helpers import Cluster, Recorder

from raftredis import (
    BackendError,
    BatchError,
    Candidate,
    MessageBatch,
    MessageError,
    NotRunningError,
    Scope,
)
from raftredis.outbox import CHUNK_MESSAGES


def record(*candidates: Candidate) -> dict[str, Recorder]:
    return {c.id: Recorder().connect(c, "message") for c in candidates}


def received(recorder: Recorder) -> list[Any]:
    return [e.kwargs["message"].payload for e in recorder.of("message")]


def test_a_batch_delivers_every_scope_in_order_with_counts(cluster: Cluster) -> None:
    """One send: counts like the single calls', payloads arrive in the order added."""
    leader, f1, f2 = cluster.start_many(3)
    assert leader.is_leader
    recorders = record(leader, f1, f2)
    batch = f1.batch()
    batch.message_to(f2.id, "to f2").message_all("to all").message_followers("to followers")
    batch.message_leader("to the leader").message_to("nobody-here", "lost")
    assert len(batch) == 5
    assert batch.send() == [1, 2, 2, 1, 0]
    assert len(batch) == 0 and batch.counts == [1, 2, 2, 1, 0]
    recorders[f2.id].wait_for("message", count=3)
    recorders[leader.id].wait_for("message", count=2)
    assert received(recorders[f2.id]) == ["to f2", "to all", "to followers"]
    assert received(recorders[leader.id]) == ["to all", "to the leader"]
    scopes = [e.kwargs["message"].scope for e in recorders[leader.id].of("message")]
    assert scopes == [Scope.ALL, Scope.LEADER]
    assert received(recorders[f1.id]) == []


def test_a_long_batch_goes_out_in_chunks_and_in_order(cluster: Cluster) -> None:
    """More than one chunk of messages: all arrive, in order, counted one each."""
    a, b = cluster.start_many(2)
    recorder = record(b)[b.id]
    n = CHUNK_MESSAGES * 2 + 17
    batch = a.batch()
    for i in range(n):
        batch.message_to(b.id, i)
    assert batch.send() == [1] * n
    recorder.wait_for("message", count=n, timeout=20)
    assert received(recorder) == list(range(n))


def test_a_batch_of_big_messages_is_split_by_size(cluster: Cluster) -> None:
    """40 messages of 100 kB (4 MB): split by bytes, all delivered intact."""
    a, b = cluster.start_many(2)
    recorder = record(b)[b.id]
    body = "x" * 100_000
    with a.batch() as batch:
        for i in range(40):
            batch.message_to(b.id, {"i": i, "body": body})
    assert batch.counts == [1] * 40
    recorder.wait_for("message", count=40, timeout=20)
    got = received(recorder)
    assert [p["i"] for p in got] == list(range(40)) and all(p["body"] == body for p in got)


def test_the_context_manager_sends_only_on_a_clean_exit(cluster: Cluster) -> None:
    a, b = cluster.start_many(2)
    recorder = record(b)[b.id]
    with pytest.raises(KeyError), a.batch() as batch:
        batch.message_to(b.id, "never")
        raise KeyError("the caller failed")
    assert len(batch) == 0
    with a.batch() as batch:
        batch.message_to(b.id, "sent")
    assert batch.counts == [1]
    recorder.wait_for("message")
    assert received(recorder) == ["sent"]


def test_a_bad_payload_raises_when_added_and_leaves_the_batch_usable(cluster: Cluster) -> None:
    a, b = cluster.start_many(2)
    recorder = record(b)[b.id]
    batch = a.batch().message_to(b.id, 1)
    with pytest.raises(MessageError, match="JSON-serialisable"):
        batch.message_to(b.id, {1, 2})
    with pytest.raises(MessageError, match="max_message_bytes"):
        batch.message_all("x" * (2 << 20))
    with pytest.raises(MessageError, match="instance id"):
        batch.message_to("", 1)
    batch.message_to(b.id, 2)
    assert batch.send() == [1, 1]
    recorder.wait_for("message", count=2)
    assert received(recorder) == [1, 2]
    assert batch.send() == []  # nothing pending


def test_clear_drops_pending_messages(cluster: Cluster) -> None:
    a, b = cluster.start_many(2)
    batch = a.batch().message_to(b.id, 1).message_to(b.id, 2)
    batch.clear()
    assert len(batch) == 0 and batch.send() == []
    assert "0 unsent" in repr(batch)


def test_a_batch_needs_a_running_candidate(cluster: Cluster) -> None:
    """Adding or sending needs a running Candidate: NotRunningError before start() and
    after stop(); messages added before a stop are not sent."""
    c = cluster.new()
    early = c.batch()
    with pytest.raises(NotRunningError, match="call start"):
        early.message_all("too early")
    c.start()
    batch = c.batch().message_all("late")
    assert isinstance(batch, MessageBatch)
    c.stop()
    with pytest.raises(NotRunningError, match="after stop"):
        batch.send()


def test_message_leader_in_a_batch_survives_a_flushed_script_cache(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    """After SCRIPT FLUSH (as after a Redis restart) the script is loaded again and
    each message to the leader is published exactly once."""
    leader, follower = cluster.start_many(2)
    recorder = record(leader)[leader.id]
    assert follower.message_leader("before") == 1
    redis_client.script_flush()
    assert follower.batch().message_leader(1).message_to(leader.id, 2).message_leader(3).send() == [
        1,
        1,
        1,
    ]
    redis_client.script_flush()
    assert follower.message_leader(4) == 1
    recorder.wait_for("message", count=5)
    assert received(recorder) == ["before", 1, 2, 3, 4]


def test_error_replies_fail_only_their_own_messages(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    """A user whose ACL forbids one inbox: that message fails with a BatchError, the
    rest of the batch is published, and counts say which is which."""
    kind = cluster.kind
    base = f"raftredis:{{{kind}}}"
    channels = [
        f"&{base}:{name}" for name in ("control", "membership", "all", "followers", "to:a*")
    ]
    redis_client.execute_command(
        "ACL", "SETUSER", "limited", "on", "nopass", "~*", "+@all", "resetchannels", *channels
    )
    try:
        receiver = cluster.start(id="a-receiver")
        url = redis_client.connection_pool.connection_kwargs
        sender = cluster.start(
            id="a-sender",
            redis={"host": url["host"], "port": url["port"], "username": "limited"},
        )
        recorder = record(receiver)[receiver.id]
        batch = sender.batch().message_to(receiver.id, 1).message_to("z-forbidden", 2)
        batch.message_to(receiver.id, 3)
        with pytest.raises(BatchError, match="refused 1 of a batch of 3") as caught:
            batch.send()
        assert caught.value.counts == [1, None, 1]
        assert caught.value.not_sent == 0
        assert isinstance(caught.value, BackendError)
        with pytest.raises(BackendError, match="refused"):
            sender.message_to("z-forbidden", 4)
        recorder.wait_for("message", count=2)
        assert received(recorder) == [1, 3]
    finally:
        cluster.close()
        redis_client.execute_command("ACL", "DELUSER", "limited")


def test_sending_reconnects_when_redis_closed_an_idle_connection(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    """CLIENT KILL of every normal connection: the next message_to still gets through
    (the idle connection is found closed before anything is written to it)."""
    a, b = cluster.start_many(2)
    recorder = record(b)[b.id]
    assert a.message_to(b.id, "first") == 1
    killed = redis_client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert int(killed) >= 1
    assert a.message_to(b.id, "after the kill") == 1
    assert a.batch().message_to(b.id, "batched").send() == [1]
    recorder.wait_for("message", count=3)
    assert received(recorder) == ["first", "after the kill", "batched"]


def test_concurrent_senders_each_get_their_own_connection(cluster: Cluster) -> None:
    """8 threads sending at once: every message arrives once, each thread's in order."""
    import threading

    a, b = cluster.start_many(2)
    recorder = record(b)[b.id]
    per_thread = 200

    def send(t: int) -> None:
        for i in range(per_thread):
            assert a.message_to(b.id, [t, i]) == 1

    threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    recorder.wait_for("message", count=8 * per_thread, timeout=20)
    got = received(recorder)
    for t in range(8):
        assert [i for tt, i in got if tt == t] == list(range(per_thread))
