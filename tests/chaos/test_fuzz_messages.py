"""Fuzzed message channels: bytes, any JSON and envelope-shaped JSON on every message
channel of a running 3-instance cluster; any JSON payload round-trips; and the pins of
what the fuzzers found there (see fuzz_cluster.py for what every example checks).

The single-input cases (one junk message) are in
tests/integration/test_api_hostile_input.py.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from fuzz_cluster import FuzzCluster, envelope_bytes, fuzz_settings, prepare
from fuzz_inputs import Input, big_int, json_values, message_inputs, mutated
from fuzz_oracle import settle_message_example
from hypothesis import given
from hypothesis import strategies as st

from raftredis import MessageError

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


@fuzz_settings(short=60, full=500)
@given(batch=st.lists(message_inputs(), min_size=1, max_size=6), data=st.data())
def test_fuzzed_message_channels(fuzz: FuzzCluster, batch: list[Input], data: Any) -> None:
    """Bytes, any JSON, and envelope-shaped JSON with fuzzed fields, on every message
    channel of the kind: each is delivered or reported exactly once per receiver, as the
    wire format says; no thread dies, the roles and terms do not change, messages flow."""
    leader = prepare(fuzz)
    term = leader.current_term
    # Draw everything before publishing anything: hypothesis may end an example inside
    # data.draw(), and what was already published would then leak into the next one.
    published: list[tuple[str, bytes]] = []
    for item in batch:
        raw = item.encode(fuzz.ids, term)
        if item.encoding == "json":
            raw = data.draw(mutated(raw), label="bytes")
        published.append((item.suffix(fuzz.ids), raw))
    for suffix, raw in published:
        receivers = fuzz.publish(suffix, raw)
        assert receivers == len(fuzz.subscribers(suffix)), (suffix, receivers)
    settle_message_example(fuzz, published)


@fuzz_settings(short=12, full=150)
@given(payload=json_values, to_one=st.booleans())
def test_any_json_payload_round_trips(fuzz: FuzzCluster, payload: Any, to_one: bool) -> None:
    """Whatever JSON value the leader sends arrives equal (from_leader, in one piece)."""
    leader = prepare(fuzz)
    k = next(i for i, c in enumerate(fuzz.nodes) if c is not leader)
    marker = uuid.uuid4().hex
    body = {"marker": marker, "payload": payload}
    if to_one:
        assert leader.message_to(fuzz.ids[k], body) == 1
    else:
        assert leader.message_all(body) == 2
    got = fuzz.recorders[k].wait_for(
        "message",
        lambda e: (
            isinstance(e.kwargs["message"].payload, dict)
            and e.kwargs["message"].payload.get("marker") == marker
        ),
    )
    message = got.kwargs["message"]
    assert message.payload == body
    assert json.dumps(message.payload, sort_keys=True) == json.dumps(body, sort_keys=True)
    assert message.from_leader is True and message.sender_id == leader.id
    assert not [e for e in fuzz.recorders[k].events if e.name == "error"]


# --------------------------------------------------------- known-bug pins


def test_huge_integer_timestamp_is_a_protocol_error(fresh: FuzzCluster) -> None:
    """Three envelopes with an integer ts of 401 digits: three ProtocolErrors per node,
    no BackendError, and the next message is not held up by a back-off.

    (Regression: OverflowError escaped the decoder into redis-py's exception_handler: a
    BackendError "lost its Redis connection" once, later ones silently, and the listener
    backed off up to 1 s per such message.)"""
    fuzz = fresh
    env = envelope_bytes(300, scope="all").decode()
    head, _, tail = env.partition('"ts":')
    bad = f'{head}"ts":{big_int()}{tail[tail.index(",") :]}'.encode()
    json.loads(bad)  # valid JSON
    for _ in range(3):
        assert fuzz.publish("all", bad) == 3
    started = time.monotonic()
    fuzz.message_barrier()
    elapsed = time.monotonic() - started
    for k, events in enumerate(fuzz.take_all()):
        errors = [e.kwargs["error"] for e in events if e.name == "error"]
        assert [type(e).__name__ for e in errors] == ["ProtocolError"] * 3, (k, errors)
    assert elapsed < 0.3, f"the message listener was held up {elapsed:.2f} s"


@pytest.mark.parametrize("call", ["message_all", "message_to", "message_leader", "set_meta"])
def test_lone_surrogates_are_refused_with_message_error(fresh: FuzzCluster, call: str) -> None:
    """A payload or meta holding a lone surrogate raises MessageError, and set_meta keeps
    the old meta."""
    fuzz = fresh
    leader = fuzz.leader()
    assert leader is not None
    follower = next(c for c in fuzz.nodes if c is not leader)
    bad = {"text": "\ud800"}
    before = follower.meta
    with pytest.raises(MessageError):
        if call == "message_all":
            leader.message_all(bad)
        elif call == "message_to":
            leader.message_to(follower.id, bad)
        elif call == "message_leader":
            follower.message_leader(bad)
        else:
            try:
                follower.set_meta(bad)
            finally:
                if follower.meta != before:
                    follower.set_meta(before)  # undo the damage for the next tests
    assert follower.meta == before
