"""Fuzzed input on a signed kind: only genuine, fresh, first-seen signed envelopes
are delivered; replays, mutations, other keys, unsigned and stale envelopes, and junk
are each dropped and reported as a ProtocolError."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from fuzz_cluster import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from inproc import (
    Candidates,
    EscapedExceptions,
    Recorder,
    admin_client,
    missing_threads,
    one_leader,
    wait_until,
)
from support.kinds import unique_kind

from raftredis import Candidate, ProtocolError
from raftredis.signing import Keyring
from raftredis.testing import RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


SIGNING_KEY = b"fuzz secret, 16 bytes or more"


@pytest.fixture(scope="module")
def signed_pair(
    own_redis: RedisServer, escaped: EscapedExceptions
) -> Iterator[tuple[Candidate, Candidate, Recorder, redis.Redis]]:
    """A signed leader and follower in a kind of their own (the follower is recorded),
    and a plain client to publish junk with."""
    client = admin_client(own_redis)
    with Candidates(own_redis.url, unique_kind("signed"), secret=SIGNING_KEY) as group:
        leader = group.start()
        follower = group.start()
        wait_until(lambda: one_leader([leader, follower]) is leader, timeout=5.0)
        yield leader, follower, Recorder().connect(follower, "message", "error"), client
    client.close()


@dataclass(frozen=True)
class SignedInput:
    """One input for a signed kind: how it is made, its payload, and a mutation draw."""

    how: str  # genuine, replay, mutated, wrong-key, unsigned, old, binary
    payload: Any
    junk: bytes  # the binary input, or the bytes a mutation splices in


signed_inputs = st.builds(
    SignedInput,
    how=st.sampled_from(["genuine", "replay", "mutated", "wrong-key", "unsigned", "old", "binary"]),
    payload=st.one_of(st.none(), st.integers(), st.text(max_size=20)),
    junk=st.binary(max_size=40),
)


def _signed_envelope(kind: str, payload: Any, key: bytes, at_ms: int) -> tuple[bytes, bytes]:
    """(unsigned, signed) bytes of a valid envelope "from" a peer that does not exist."""
    body = json.dumps(
        {
            "v": 1, "kind": kind, "from": "fuzz-peer", "scope": "all", "term": 0,
            "leader": False, "id": uuid.uuid4().hex, "ts": time.time(), "payload": payload,
        },
        separators=(",", ":"),
    ).encode()  # fmt: skip
    return body, Keyring([key]).sign(body, at_ms)


@fuzz_settings(short=25, full=300)
@given(batch=st.lists(signed_inputs, min_size=1, max_size=6), cut=st.integers(0, 10**6))
def test_fuzzed_signed_kind(
    signed_pair: tuple[Candidate, Candidate, Recorder, redis.Redis],
    batch: list[SignedInput],
    cut: int,
) -> None:
    """In a signed kind only genuine, fresh, first-seen signed envelopes are delivered;
    every other input is dropped and reported as a ProtocolError."""
    leader, follower, recorder, client = signed_pair
    recorder.clear()
    channel = f"raftredis:{{{follower.kind}}}:all"
    now = int(time.time() * 1000)
    published: list[tuple[bytes, bool]] = []  # (data, expected delivered)
    for i, item in enumerate(batch):
        payload = {"n": i, "v": item.payload}
        body, signed = _signed_envelope(follower.kind, payload, SIGNING_KEY, now)
        if item.how == "genuine":
            published.append((signed, True))
        elif item.how == "replay":
            published += [(signed, True), (signed, False)]
        elif item.how == "mutated":
            at = cut % len(signed)
            data = signed[:at] + item.junk + signed[at + 1 :]
            published.append((data, data == signed))
        elif item.how == "wrong-key":
            published.append((_signed_envelope(follower.kind, payload, b"w" * 20, now)[1], False))
        elif item.how == "unsigned":
            published.append((body, False))
        elif item.how == "old":
            stale = _signed_envelope(follower.kind, payload, SIGNING_KEY, now - 60_000)[1]
            published.append((stale, False))
        else:
            published.append((item.junk, False))
    for data, _ in published:
        client.publish(channel, data)
    marker = f"barrier-{uuid.uuid4().hex}"
    leader.message_all(marker)
    recorder.wait_for("message", lambda e: e.kwargs["message"].payload == marker)
    delivered = [e.kwargs["message"].payload for e in recorder.of("message")]
    assert delivered.pop() == marker
    errors = [e.kwargs["error"] for e in recorder.of("error")]
    assert all(isinstance(e, ProtocolError) for e in errors), errors
    expected = [json.loads(d)["payload"] for d, ok in published if ok]
    assert delivered == expected
    assert len(errors) == sum(not ok for _, ok in published)
    assert not missing_threads([leader, follower])
