"""Candidate(secret=...): signed messages and notices on a real redis-server.

Forged, unsigned, badly signed and replayed messages and notices are dropped
and reported as ProtocolError; signed Candidates elect and message as usual;
key rotation lets [new, old] instances hear ones still on [old].
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis
from helpers import Cluster, RawChannels, Recorder, wait_until

from raftredis import Candidate, ProtocolError, State
from raftredis.signing import Keyring

SECRET = "correct horse battery staple 42"
OLD = "the old secret, still accepted"
NEW = "the new secret, signing from now"


def _signed_pair(cluster: Cluster, secret: Any = SECRET) -> tuple[Candidate, Candidate, Recorder]:
    leader = cluster.start(secret=secret)
    follower = cluster.start(secret=secret)
    assert cluster.wait_for_leader() is leader
    recorder = Recorder().connect(follower, "message", "error", "defeated", "elected")
    return leader, follower, recorder


def _errors(recorder: Recorder) -> list[ProtocolError]:
    errors = [e.kwargs["error"] for e in recorder.of("error")]
    assert all(isinstance(e, ProtocolError) for e in errors), errors
    return errors


def _check_delivers(sender: Candidate, receiver: Recorder) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    assert sender.message_all(marker) >= 1
    receiver.wait_for("message", lambda e: e.kwargs["message"].payload == marker)


def _capture(client: redis.Redis, channel: str, action: Any) -> bytes:
    """The first message published on ``channel`` while ``action()`` runs."""
    pubsub = client.pubsub()
    pubsub.subscribe(channel)
    try:
        wait_until(lambda: pubsub.get_message(timeout=0.1), timeout=5.0)  # the subscribe reply
        action()
        message = wait_until(lambda: pubsub.get_message(timeout=0.1), timeout=5.0)
        data = message["data"]
        assert isinstance(data, bytes)
        return data
    finally:
        pubsub.close()


def test_signed_candidates_elect_and_message(cluster: Cluster) -> None:
    leader, follower, recorder = _signed_pair(cluster)
    leader_recorder = Recorder().connect(leader, "message", "error")
    assert leader.message_all({"hello": 1}) == 1
    got = recorder.wait_for("message")
    assert got.kwargs["message"].payload == {"hello": 1}
    assert got.kwargs["message"].from_leader is True
    assert follower.message_leader("to the leader") == 1
    leader_recorder.wait_for("message", lambda e: e.kwargs["message"].payload == "to the leader")
    assert leader.message_to(follower.id, "direct") == 1
    recorder.wait_for("message", lambda e: e.kwargs["message"].payload == "direct")
    with follower.batch() as batch:
        for i in range(5):
            batch.message_leader(i)
    leader_recorder.wait_for("message", lambda e: e.kwargs["message"].payload == 4)
    assert not recorder.of("error") and not leader_recorder.of("error")


def test_failover_between_signed_candidates(cluster: Cluster) -> None:
    """Resigned/elected/left notices are signed by Python after the scripts; a stop hands over."""
    leader, follower, recorder = _signed_pair(cluster)
    term = leader.current_term
    started = time.monotonic()
    leader.stop()
    recorder.wait_for("elected", timeout=5.0)
    # Handed over through the signed resigned notice, well before the lease expires.
    assert time.monotonic() - started < cluster.defaults["lease_ttl"]
    assert follower.is_leader and follower.current_term > term
    assert not recorder.of("error")


def test_meta_and_join_notices_are_signed(cluster: Cluster) -> None:
    first = cluster.start(secret=SECRET)
    recorder = Recorder().connect(first, "instance_joined", "meta_changed", "error")
    second = cluster.start(secret=SECRET)
    recorder.wait_for("instance_joined", lambda e: e.kwargs["instance"].id == second.id)
    second.set_meta({"ready": True})
    changed = recorder.wait_for("meta_changed")
    assert changed.kwargs["instance"].meta == {"ready": True}
    assert not recorder.of("error")


@pytest.mark.parametrize("how", ["unsigned", "wrong-key", "garbage-signature", "tampered"])
def test_forged_message_from_the_leader_is_dropped(
    cluster: Cluster, raw: RawChannels, how: str
) -> None:
    leader, _follower, recorder = _signed_pair(cluster)
    body = RawChannels.dumps(
        raw.envelope(**{"from": leader.id, "leader": True, "term": leader.current_term})
    )
    now_ms = int(time.time() * 1000)
    if how == "unsigned":
        data = body
    elif how == "wrong-key":
        data = Keyring([b"not the secret at all!"]).sign(body, now_ms)
    elif how == "garbage-signature":
        data = body[:-1] + b',"st":%d,"sig":"%s"}' % (now_ms, b"A" * 43)
    else:
        signed = Keyring([SECRET.encode()]).sign(body, now_ms)
        data = signed.replace(b'"raw": true', b'"raw": 1234')
        assert data != signed
    assert raw.publish("all", data) == 2
    error = recorder.wait_for("error").kwargs["error"]
    assert isinstance(error, ProtocolError)
    assert "sign" in str(error)
    _check_delivers(leader, recorder)
    assert next(e.kwargs["message"].payload for e in recorder.of("message")).startswith("marker")
    assert len(_errors(recorder)) == 1


def test_replayed_message_is_dropped(
    cluster: Cluster, raw: RawChannels, redis_client: redis.Redis
) -> None:
    leader, _follower, recorder = _signed_pair(cluster)
    captured = _capture(redis_client, raw.channel("all"), lambda: leader.message_all("once"))
    recorder.wait_for("message", lambda e: e.kwargs["message"].payload == "once")
    raw.publish("all", captured)
    error = recorder.wait_for("error").kwargs["error"]
    assert "replay" in str(error)
    assert len([e for e in recorder.of("message") if e.kwargs["message"].payload == "once"]) == 1


def test_message_older_than_the_window_is_dropped(cluster: Cluster, raw: RawChannels) -> None:
    _leader, _follower, recorder = _signed_pair(cluster)
    old_ms = int(time.time() * 1000) - 60_000
    data = Keyring([SECRET.encode()]).sign(RawChannels.dumps(raw.envelope()), old_ms)
    raw.publish("all", data)
    assert "old" in str(recorder.wait_for("error").kwargs["error"])
    assert not recorder.of("message")


def test_replay_window_is_configurable(cluster: Cluster, raw: RawChannels) -> None:
    cluster.start(secret=SECRET)
    follower = cluster.start(secret=SECRET, replay_window=120.0)
    recorder = Recorder().connect(follower, "message", "error")
    data = Keyring([SECRET.encode()]).sign(
        RawChannels.dumps(raw.envelope(payload="a minute old")), int(time.time() * 1000) - 60_000
    )
    raw.publish("all", data)
    recorder.wait_for("message", lambda e: e.kwargs["message"].payload == "a minute old")
    assert not recorder.of("error")


@pytest.mark.parametrize("signed_with", [None, "wrong"])
def test_forged_elected_notice_is_dropped(
    cluster: Cluster, raw: RawChannels, signed_with: str | None
) -> None:
    """A forged elected (naming the follower, a higher term) and resigned change nothing."""
    leader, follower, recorder = _signed_pair(cluster)
    term = leader.current_term
    forged = [
        b'{"v":1,"type":"elected","id":"%s","term":%d}' % (follower.id.encode(), term + 5),
        b'{"v":1,"type":"resigned","id":"%s","term":%d}' % (leader.id.encode(), term),
    ]
    leader_recorder = Recorder().connect(leader, "error", "defeated", "state_changed")
    for notice in forged:
        data = notice
        if signed_with is not None:
            data = Keyring([b"wrong secret, 16+ bytes"]).sign(notice, int(time.time() * 1000))
        raw.publish("control", data)
    recorder.wait_for("error", count=2)
    leader_recorder.wait_for("error", count=2)
    for error in _errors(recorder) + _errors(leader_recorder):
        assert error.channel == raw.channel("control")
    time.sleep(0.3)
    assert leader.is_leader and leader.current_term == term
    assert follower.state is State.FOLLOWER and follower.leader_id == leader.id
    assert follower.current_term == term
    assert not leader_recorder.of("defeated") and not leader_recorder.of("state_changed")


def test_replayed_resigned_notice_is_dropped(
    cluster: Cluster, raw: RawChannels, redis_client: redis.Redis
) -> None:
    """A captured genuine resigned notice, published again, is a replay."""
    leader, _follower, _recorder = _signed_pair(cluster)
    captured = _capture(redis_client, raw.channel("control"), lambda: leader.reelect())
    assert b'"type":"resigned"' in captured and b',"sig":"' in captured
    new_leader = cluster.wait_for_leader()
    watcher = Recorder().connect(new_leader, "error", "defeated")
    raw.publish("control", captured)
    assert "replay" in str(watcher.wait_for("error").kwargs["error"])
    assert new_leader.is_leader and not watcher.of("defeated")


def test_unsigned_candidate_cannot_talk_to_signed_ones(cluster: Cluster) -> None:
    _leader, _follower, recorder = _signed_pair(cluster)
    outsider = cluster.start()  # no secret
    assert outsider.message_all("let me in") == 2
    errors = recorder.wait_for("error").kwargs["error"]
    assert "not signed" in str(errors)
    assert not [e for e in recorder.of("message") if e.kwargs["message"].payload == "let me in"]


def test_key_rotation(cluster: Cluster) -> None:
    """Instances on [new, old] hear instances still on [old], and the other way round
    once those move to [new, old] too."""
    old_leader = cluster.start(secret=[OLD])
    rotated = cluster.start(secret=[NEW, OLD])
    recorder = Recorder().connect(rotated, "message", "error")
    assert cluster.wait_for_leader() is old_leader
    _check_delivers(old_leader, recorder)
    assert rotated.leader_id == old_leader.id
    # The old instance does not know the new key: it drops what [new, old] signs.
    old_recorder = Recorder().connect(old_leader, "message", "error")
    rotated.message_all("signed with new")
    assert "bad signature" in str(old_recorder.wait_for("error").kwargs["error"])
    # Rotated too (restarted): now both accept each other.
    old_leader.stop()
    wait_until(lambda: rotated.is_leader, timeout=5.0)
    restarted = cluster.start(secret=[NEW, OLD])
    restarted_recorder = Recorder().connect(restarted, "message", "error")
    _check_delivers(rotated, restarted_recorder)
    assert not recorder.of("error") and not restarted_recorder.of("error")


def test_bad_secrets_are_refused() -> None:
    from raftredis import ConfigurationError

    for secret in ["short", b"", [], [SECRET, 5], 42]:
        with pytest.raises(ConfigurationError):
            Candidate(kind="k", secret=secret)
    for window in [0, -1, float("nan"), "30", True]:
        with pytest.raises(ConfigurationError):
            Candidate(kind="k", secret=SECRET, replay_window=window)


def test_no_secret_keeps_the_wire_format(
    cluster: Cluster, raw: RawChannels, redis_client: redis.Redis
) -> None:
    leader = cluster.start()
    captured = _capture(redis_client, raw.channel("all"), lambda: leader.message_all("plain"))
    assert b'"sig"' not in captured and b'"st"' not in captured
    assert captured.endswith(b',"payload":"plain"}')


def test_signed_notices_are_published_only_from_python(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    """The secret never reaches Redis: the scripts get a flag, not the key."""
    monitor_lines: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        with redis_client.monitor() as monitor:
            for command in monitor.listen():
                monitor_lines.append(command["command"])
                if stop.is_set():
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.2)
    candidate = cluster.start(secret=SECRET)
    candidate.message_all("x")
    candidate.stop()
    stop.set()
    redis.Redis(connection_pool=redis_client.connection_pool).ping()
    thread.join(5.0)
    assert monitor_lines
    assert not [line for line in monitor_lines if SECRET in line]
    assert any("notices:return" in line for line in monitor_lines)
