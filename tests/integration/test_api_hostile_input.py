"""Junk on the kind's channels is dropped and reported; the listeners stay alive."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from helpers import Cluster, RawChannels, Recorder, wait_until

from raftredis import Candidate, ProtocolError, State

DISPATCH = "raftredis-dispatch-"
MESSAGES = "raftredis-messages-"


def _env(raw: RawChannels, **overrides: Any) -> bytes:
    return RawChannels.dumps(raw.envelope(**overrides))


def _without(raw: RawChannels, field: str) -> bytes:
    env = raw.envelope()
    del env[field]
    return RawChannels.dumps(env)


# (channel suffix, data); "{to}" is replaced by the follower's inbox suffix.
MESSAGE_JUNK: dict[str, Any] = {
    "not-json": ("all", lambda r: b"this is not json"),
    "empty": ("all", lambda r: b""),
    "invalid-utf8": ("all", lambda r: b'{"v":1,"kind":"\xff\xfe"}'),
    "invalid-utf8-inbox": ("{to}", lambda r: b"\xc3\x28\xa0\xa1"),
    "json-list": ("all", lambda r: b"[1, 2, 3]"),
    "json-string": ("followers", lambda r: b'"just a string"'),
    "json-null": ("all", lambda r: b"null"),
    "wrong-kind": ("all", lambda r: _env(r, kind="another-kind")),
    "wrong-version": ("all", lambda r: _env(r, v=2)),
    "scope-followers-on-all": ("all", lambda r: _env(r, scope="followers")),
    "scope-all-on-followers": ("followers", lambda r: _env(r, scope="all")),
    "scope-all-on-inbox": ("{to}", lambda r: _env(r, scope="all")),
    "scope-direct-on-all": ("all", lambda r: _env(r, scope="direct")),
    "scope-unknown": ("all", lambda r: _env(r, scope="everyone")),
    "missing-payload": ("all", lambda r: _without(r, "payload")),
    "missing-from": ("all", lambda r: _without(r, "from")),
    "missing-term": ("all", lambda r: _without(r, "term")),
    "missing-scope": ("all", lambda r: _without(r, "scope")),
    "missing-ts": ("all", lambda r: _without(r, "ts")),
    "missing-kind": ("all", lambda r: _without(r, "kind")),
    "term-is-bool": ("all", lambda r: _env(r, term=True)),
    "term-is-float": ("all", lambda r: _env(r, term=1.5)),
    "term-is-negative": ("all", lambda r: _env(r, term=-1)),
    "ts-is-string": ("all", lambda r: _env(r, ts="yesterday")),
    "ts-infinite": ("all", lambda r: _env(r).replace(b'"ts":', b'"ts":1e999,"x":')),
    "from-is-number": ("all", lambda r: _env(r, **{"from": 7})),
    "deeply-nested-list": ("all", lambda r: b"[" * 100_000),
    "deeply-nested-object": ("all", lambda r: b'{"a":' * 100_000),
    "deeply-nested-payload": (
        "all",
        lambda r: _env(r).replace(
            b'"payload":', b'"payload":' + b"[" * 50_000 + b"]" * 50_000 + b',"x":'
        ),
    ),
    "stale-leader-claim": ("all", lambda r: _env(r, leader=True, term=0)),
    "stale-leader-claim-inbox": ("{to}", lambda r: _env(r, leader=True, term=0, scope="direct")),
}


@pytest.fixture
def pair(cluster: Cluster, raw: RawChannels) -> tuple[Candidate, Candidate, Recorder]:
    leader = cluster.start()
    follower = cluster.start()
    recorder = Recorder().connect(follower, "message", "error", "defeated", "elected")
    return leader, follower, recorder


def _check_still_working(
    leader: Candidate, follower: Candidate, recorder: Recorder, term: int
) -> None:
    marker = f"after-{uuid.uuid4().hex}"
    assert leader.message_all(marker) == 1
    got = recorder.wait_for("message", lambda e: e.kwargs["message"].payload == marker)
    assert got.kwargs["message"].from_leader is True
    # Nothing but the marker was delivered as a message.
    assert [e.kwargs["message"].payload for e in recorder.of("message")] == [marker]
    assert leader.is_leader and leader.current_term == term
    assert follower.leader_id == leader.id and follower.state is State.FOLLOWER
    assert follower.current_term == term


@pytest.mark.parametrize("case", sorted(MESSAGE_JUNK), ids=sorted(MESSAGE_JUNK))
def test_junk_on_a_message_channel_is_dropped_and_reported(
    pair: tuple[Candidate, Candidate, Recorder], raw: RawChannels, case: str
) -> None:
    """Each bad input is dropped, reported as ProtocolError on the message thread, and a
    normal message still arrives afterwards; the leader is unchanged."""
    leader, follower, recorder = pair
    term = leader.current_term
    suffix, make = MESSAGE_JUNK[case]
    suffix = f"to:{follower.id}" if suffix == "{to}" else suffix
    data = make(raw)
    receivers = raw.publish(suffix, data)
    assert receivers >= 1
    event = recorder.wait_for("error")
    error = event.kwargs["error"]
    assert isinstance(error, ProtocolError), repr(error)
    assert error.channel == raw.channel(suffix)
    assert error.raw == data[:200]
    assert event.thread.startswith(MESSAGES)
    assert str(error)
    _check_still_working(leader, follower, recorder, term)
    assert len(recorder.of("error")) == 1


def test_many_junk_messages_in_a_row(
    pair: tuple[Candidate, Candidate, Recorder], raw: RawChannels
) -> None:
    """Every junk message is reported once; the listener survives all of them."""
    leader, follower, recorder = pair
    term = leader.current_term
    cases = sorted(MESSAGE_JUNK)
    for case in cases:
        suffix, make = MESSAGE_JUNK[case]
        suffix = f"to:{follower.id}" if suffix == "{to}" else suffix
        raw.publish(suffix, make(raw))
    recorder.wait_for("error", count=len(cases))
    _check_still_working(leader, follower, recorder, term)
    assert len(recorder.of("error")) == len(cases)


def test_own_messages_echoed_back_are_ignored(
    pair: tuple[Candidate, Candidate, Recorder], raw: RawChannels
) -> None:
    """A valid envelope carrying the receiver's own id is dropped silently (not reported)."""
    leader, follower, recorder = pair
    raw.publish("all", _env(raw, **{"from": follower.id}))
    _check_still_working(leader, follower, recorder, leader.current_term)
    assert not recorder.of("error")


def test_a_valid_raw_envelope_is_delivered(
    pair: tuple[Candidate, Candidate, Recorder], raw: RawChannels
) -> None:
    """The envelope format in helpers is right: a valid one is delivered as a message."""
    leader, _follower, recorder = pair
    raw.publish("all", _env(raw, payload={"raw": 1}, term=leader.current_term))
    got = recorder.wait_for("message").kwargs["message"]
    assert got.payload == {"raw": 1} and got.sender_id == "raw-sender"
    assert not recorder.of("error")


def test_current_leader_claim_is_accepted(
    pair: tuple[Candidate, Candidate, Recorder], raw: RawChannels
) -> None:
    """A leader=true message with the current term is accepted as from_leader (the boundary
    of the stale-term check)."""
    leader, _follower, recorder = pair
    raw.publish("all", _env(raw, leader=True, term=leader.current_term, payload="fresh"))
    got = recorder.wait_for("message").kwargs["message"]
    assert got.from_leader is True and got.payload == "fresh"


# ------------------------------------------------------------ control channel

CONTROL_JUNK: dict[str, bytes] = {
    "not-json": b"{{{",
    "invalid-utf8": b"\xff\xfe\xfd",
    "json-list": b"[]",
    "wrong-version": json.dumps({"v": 9, "type": "left", "id": "x"}).encode(),
    "unknown-type": json.dumps({"v": 1, "type": "exploded", "id": "x"}).encode(),
    "missing-id": json.dumps({"v": 1, "type": "left"}).encode(),
    "empty-id": json.dumps({"v": 1, "type": "left", "id": ""}).encode(),
    "elected-without-term": json.dumps({"v": 1, "type": "elected", "id": "x"}).encode(),
    "elected-term-zero": json.dumps({"v": 1, "type": "elected", "id": "x", "term": 0}).encode(),
    "joined-without-record": json.dumps({"v": 1, "type": "joined", "id": "x"}).encode(),
    "meta-bad-record": json.dumps(
        {"v": 1, "type": "meta", "id": "x", "record": {"meta": 1}}
    ).encode(),
    "deeply-nested": b"[" * 100_000,
}


@pytest.mark.parametrize("case", sorted(CONTROL_JUNK), ids=sorted(CONTROL_JUNK))
def test_junk_on_the_control_channel_is_dropped_and_reported(
    pair: tuple[Candidate, Candidate, Recorder], raw: RawChannels, case: str
) -> None:
    """Junk control notices: ProtocolError (dispatch thread), and the election goes on."""
    leader, follower, recorder = pair
    term = leader.current_term
    data = CONTROL_JUNK[case]
    assert raw.publish("control", data) >= 2
    event = recorder.wait_for("error")
    assert isinstance(event.kwargs["error"], ProtocolError)
    assert event.kwargs["error"].channel == raw.channel("control")
    assert event.thread.startswith(DISPATCH)
    _check_still_working(leader, follower, recorder, term)
    # The control listener still works: a real handover is still noticed at once.
    leader.stop()
    wait_until(lambda: follower.is_leader, timeout=0.5 + 1.0)
    assert follower.current_term > term


def control_barrier(raw: RawChannels, recorder: Recorder) -> None:
    """Publish a 'joined' notice of a made-up member and wait for its instance_joined signal.

    Control notices are handled in order on the heartbeat thread, so once this one has
    been handled, every notice published before it has been handled too.
    """
    marker = f"marker-{uuid.uuid4().hex[:12]}"
    notice = {
        "v": 1,
        "type": "joined",
        "id": marker,
        "record": {"meta": None, "joined": 1.0, "ttl": 2.0},
    }
    assert raw.publish("control", json.dumps(notice)) >= 1
    recorder.wait_for("instance_joined", lambda e: e.kwargs["instance"].id == marker)


def test_stale_control_notices_do_not_disturb_the_leader(
    cluster: Cluster, raw: RawChannels
) -> None:
    """Well-formed but stale notices (an older term's elected; resigned/left of strangers)
    change nothing."""
    raw.client.set(f"raftredis:{{{cluster.kind}}}:term", 5)  # so that older terms exist
    leader = cluster.start()
    follower = cluster.new()
    recorder = Recorder().connect(
        follower, "message", "error", "defeated", "elected", "leader_changed", "instance_joined"
    )
    follower.start()
    recorder.wait_for("leader_changed")  # the one from start()
    leader_recorder = Recorder().connect(leader, "defeated", "instance_joined")
    term = leader.current_term
    assert term > 5  # above the stored term (and the server clock in ms)
    notices = [
        {"v": 1, "type": "elected", "id": "stranger", "term": term - 1},
        {"v": 1, "type": "resigned", "id": "stranger", "term": term},
        {"v": 1, "type": "left", "id": "stranger"},
    ]
    for notice in notices:
        assert raw.publish("control", json.dumps(notice)) >= 2
    control_barrier(raw, recorder)
    control_barrier(raw, leader_recorder)
    _check_still_working(leader, follower, recorder, term)
    assert not recorder.of("error")
    assert not recorder.of("elected")
    assert [e.kwargs["leader"] for e in recorder.of("leader_changed")] == [leader.id]
    assert not leader_recorder.of("defeated")


def test_stale_resigned_notice_of_the_leader_is_harmless(
    cluster: Cluster, raw: RawChannels
) -> None:
    """A 'resigned' notice of the leader with an older term: the leader keeps leading, and
    the follower (which may briefly re-check the lease) follows it again."""
    raw.client.set(f"raftredis:{{{cluster.kind}}}:term", 5)
    leader = cluster.start()
    follower = cluster.start()
    recorder = Recorder().connect(
        follower, "message", "error", "defeated", "elected", "instance_joined"
    )
    leader_recorder = Recorder().connect(leader, "defeated", "instance_joined")
    term = leader.current_term
    stale = {"v": 1, "type": "resigned", "id": leader.id, "term": term - 1}
    assert raw.publish("control", json.dumps(stale)) >= 2
    control_barrier(raw, recorder)
    control_barrier(raw, leader_recorder)
    wait_until(lambda: follower.leader_id == leader.id, timeout=2.0)
    _check_still_working(leader, follower, recorder, term)
    assert not recorder.of("elected")
    assert not leader_recorder.of("defeated")


def _stays(predicate: Any, seconds: float) -> bool:
    """True if ``predicate`` holds at every poll during ``seconds`` (an observation window)."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not predicate():
            return False
        time.sleep(0.005)
    return True


def test_forged_elected_notice_does_not_depose_the_leader(
    pair: tuple[Candidate, Candidate, Recorder], raw: RawChannels
) -> None:
    """A forged elected notice (no lease behind it) must not cost the real leader its role."""
    leader, _follower, _recorder = pair
    term = leader.current_term
    forged = {"v": 1, "type": "elected", "id": "ghost", "term": term + 1}
    assert raw.publish("control", json.dumps(forged)) >= 2
    assert _stays(lambda: leader.is_leader, 0.5), "the leader was deposed by a forged notice"


@pytest.mark.parametrize("junk", [2**53, 2**60, -5, "abc", "1e400", "nan"])
def test_junk_in_the_term_key_is_ignored(cluster: Cluster, raw: RawChannels, junk: object) -> None:
    """A term key that raftredis cannot have written (out of the exact range of Lua's
    doubles, negative, not a number) is ignored: elections work and terms grow strictly.

    (Regression: with the term key at 2**53, acquire.lua computed 2**53 + 1 == 2**53, so
    every later election got the same term; a forged notice could put it there.)
    """
    raw.client.set(f"raftredis:{{{cluster.kind}}}:term", junk)
    first = cluster.start()
    second = cluster.start()
    terms = [first.current_term]
    first.reelect()
    wait_until(lambda: second.is_leader, timeout=3.0)
    terms.append(second.current_term)
    assert terms[0] < terms[1] < 2**53, terms


def test_forged_notice_with_a_huge_term_is_rejected(
    pair: tuple[Candidate, Candidate, Recorder], raw: RawChannels
) -> None:
    """An elected notice with a term of 2**53 or more is dropped as a ProtocolError and no
    instance adopts the term."""
    leader, follower, recorder = pair
    term = leader.current_term
    raw.publish("control", json.dumps({"v": 1, "type": "elected", "id": "ghost", "term": 2**60}))
    assert isinstance(recorder.wait_for("error").kwargs["error"], ProtocolError)
    _check_still_working(leader, follower, recorder, term)


def test_elections_continue_at_the_top_of_the_term_range(
    cluster: Cluster, raw: RawChannels
) -> None:
    """With the stored term at 2**53 - 2 (out of reach of real elections: only junk gets
    there), the last exact term is used once, then the term key counts as junk and
    terms start again: the kind keeps a leader, and every term stays exact.

    (Regression: the next term was 2**53, which the lease parser refuses, so nobody
    could ever lead again.)
    """
    raw.client.set(f"raftredis:{{{cluster.kind}}}:term", 2**53 - 2)
    first = cluster.start()
    cluster.start()
    assert first.is_leader and first.current_term == 2**53 - 1
    first.reelect()
    leader = cluster.wait_for_leader(timeout=2.5)
    assert leader.leader_term is not None and leader.leader_term < 2**53 - 1
