"""Targeted hostile input at the wire format's limits on every channel: the size limit,
nesting deeper than any stack, invalid UTF-8 inside otherwise valid envelopes and
notices (see fuzz_cluster.py for the cluster and what is checked)."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from typing import Any

import pytest
from fuzz_cluster import BARRIER_SENDER, MAX_BYTES, FuzzCluster, envelope_bytes
from fuzz_oracle import REJECT, classify_envelope, settle_message_example

from raftredis import Candidate, MessageError, ProtocolError

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


def test_size_limit_boundary_on_every_channel(fresh: FuzzCluster) -> None:
    """An envelope of exactly max_message_bytes is delivered; one byte more is dropped and
    reported (naming the limit) by every subscriber of every message channel; the sender's
    own check has the same limit."""
    fuzz = fresh
    published: list[tuple[str, bytes]] = []
    for suffix in fuzz.message_suffixes():
        scope = {"all": "all", "followers": "followers"}.get(suffix, "direct")
        for size in (MAX_BYTES, MAX_BYTES + 1):
            data = envelope_bytes(size, scope=scope)
            assert fuzz.publish(suffix, data) == len(fuzz.subscribers(suffix))
            published.append((suffix, data))
    events = settle_message_example(fuzz, published)
    for k in range(3):
        errors = [e.kwargs["error"] for e in events[k] if e.name == "error"]
        assert errors and all("max_message_bytes" in str(e) for e in errors), (k, errors)
        assert all(len(e.raw) == 200 for e in errors)  # the first bytes are kept
    # The sender: the largest payload it accepts (probed on an inbox nobody listens on)
    # arrives; a few bytes more raise MessageError. (The envelope's length varies by a
    # byte or two with the digits of its timestamp, hence the margin.)
    leader = fuzz.leader()
    assert leader is not None
    k = next(i for i, c in enumerate(fuzz.nodes) if c is not leader)
    low, high = 0, MAX_BYTES
    while low < high:
        mid = (low + high + 1) // 2
        try:
            leader.message_to("nobody-home", "q" * mid)
            low = mid
        except MessageError:
            high = mid - 1
    assert MAX_BYTES - 400 < low < MAX_BYTES
    fits = "q" * (low - 4)
    assert leader.message_to(fuzz.ids[k], fits) == 1
    fuzz.recorders[k].wait_for("message", lambda e: e.kwargs["message"].payload == fits)
    with pytest.raises(MessageError, match="max_message_bytes"):
        leader.message_to(fuzz.ids[k], "q" * (low + 4))


def test_deep_nesting_on_every_channel(fresh: FuzzCluster) -> None:
    """Nesting far beyond any recursion limit, as bare JSON and inside an envelope's payload,
    on every channel (control included): each subscriber reports each one; nothing dies."""
    fuzz = fresh
    deep_payload = b"[" * 50_000 + b"]" * 50_000
    env = envelope_bytes(300, scope="all")
    inside = env.replace(b'"payload":"', b'"payload":' + deep_payload + b',"x":"')
    bodies = [b"[" * 30_000, b'{"a":' * 30_000, inside]
    counts: Counter[int] = Counter()
    for suffix in [*fuzz.message_suffixes(), "control"]:
        for body in bodies:
            data = body if suffix != "control" else body.replace(b'"scope":"all"', b'"type":"left"')
            fuzz.publish(suffix, data)
            for k in fuzz.subscribers(suffix) if suffix != "control" else [0, 1, 2]:
                counts[k] += 1
    fuzz.message_barrier()
    fuzz.control_barrier()
    fuzz.assert_alive()
    for k, events in enumerate(fuzz.take_all()):
        errors = [e.kwargs["error"] for e in events if e.name == "error"]
        assert len(errors) == counts[k], (k, [str(e) for e in errors])
        assert all(isinstance(e, ProtocolError) for e in errors)
        assert not [
            e
            for e in events
            if e.name == "message" and e.kwargs["message"].sender_id != BARRIER_SENDER
        ]
    fuzz.assert_messages_flow()


class _ShallowCall(threading.Thread):
    """Runs one call as the whole of a thread's run(): the shallowest stack a caller can
    have (a script's main thread has about the same)."""

    def __init__(self, fn: Any, *args: Any) -> None:
        super().__init__(name="shallow-call")
        self.fn, self.args = fn, args
        self.result: Any = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # handed to the test, never kills the thread
            self.result = exc

    def call(self) -> Any:
        self.start()
        self.join(30)
        assert not self.is_alive(), "the call did not finish"
        return self.result


def _nested(depth: int) -> Any:
    payload: Any = "bottom"
    for _ in range(depth):
        payload = [payload]
    return payload


def _probe_and_send_deepest(sender: Candidate) -> tuple[int, int]:
    """Find the deepest list nesting ``sender`` accepts from a shallow thread (message_to
    an inbox nobody listens on publishes to no one), then message_all a payload that deep
    from a stack just as shallow. Returns (depth, receivers)."""
    low, high = 10, 5000
    while low < high:
        mid = (low + high + 1) // 2
        result = _ShallowCall(sender.message_to, "nobody-home", _nested(mid)).call()
        if isinstance(result, MessageError):
            high = mid - 1
        elif isinstance(result, BaseException):
            raise result
        else:
            low = mid
    receivers = _ShallowCall(sender.message_all, _nested(low)).call()
    if isinstance(receivers, BaseException):
        raise receivers
    return low, int(receivers)


def test_deepest_payload_the_sender_accepts_is_delivered(fresh: FuzzCluster) -> None:
    """A payload as deep as message_all accepts arrives at the followers, and nobody
    (the sender included) reports it as a ProtocolError.

    (Regression: the only limit was the caller's stack, so from a shallow thread
    message_all accepted payloads that the receivers' listener threads - with a deeper
    stack - could not decode; every receiver dropped them after message_all counted them
    received.)"""
    fuzz = fresh
    leader = fuzz.leader()
    assert leader is not None
    depth, receivers = _probe_and_send_deepest(leader)
    assert 100 <= depth < sys.getrecursionlimit() - 200, depth  # far from any stack's limit
    assert receivers == 2
    fuzz.message_barrier()
    events = fuzz.take_all()
    errors = [
        (k, str(e.kwargs["error"])) for k, ev in enumerate(events) for e in ev if e.name == "error"
    ]
    assert not errors, f"depth {depth}: {errors}"
    for k, node in enumerate(fuzz.nodes):
        if node is leader:
            continue
        delivered = [
            e
            for e in events[k]
            if e.name == "message" and e.kwargs["message"].sender_id == leader.id
        ]
        assert len(delivered) == 1, (k, depth)


def test_invalid_utf8_in_valid_envelopes_and_notices(fresh: FuzzCluster) -> None:
    """Invalid UTF-8 inside otherwise valid envelopes (every message channel) and notices:
    every subscriber reports each one; nothing is delivered; the cluster is unharmed."""
    fuzz = fresh
    counts: Counter[int] = Counter()
    for suffix in fuzz.message_suffixes():
        scope = {"all": "all", "followers": "followers"}.get(suffix, "direct")
        for bad in (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"):
            data = envelope_bytes(200, scope=scope).replace(b'"payload":"p', b'"payload":"' + bad)
            assert classify_envelope(data, suffix, "x", False, 0)[0] == REJECT
            fuzz.publish(suffix, data)
            for k in fuzz.subscribers(suffix):
                counts[k] += 1
    for bad in (b"\xff", b"\xc3\x28"):
        notice = b'{"v":1,"type":"left","id":"ghost' + bad + b'"}'
        fuzz.publish("control", notice)
        for k in range(3):
            counts[k] += 1
    fuzz.message_barrier()
    fuzz.control_barrier()
    for k, events in enumerate(fuzz.take_all()):
        errors = [e.kwargs["error"] for e in events if e.name == "error"]
        assert len(errors) == counts[k] and all(isinstance(e, ProtocolError) for e in errors)
        assert all("UTF-8" in str(e) for e in errors), [str(e) for e in errors]
        assert not [
            e
            for e in events
            if e.name == "instance_left"
            or (e.name == "message" and e.kwargs["message"].sender_id != BARRIER_SENDER)
        ]
    fuzz.assert_alive()
    fuzz.assert_messages_flow()
