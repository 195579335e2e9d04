"""Codecs: envelopes, control notices and member records, with hostile input."""

from __future__ import annotations

import json

import pytest

from raftredis.errors import MessageError
from raftredis.models import Scope
from raftredis.wire import (
    ControlType,
    Envelope,
    EnvelopeWriter,
    MemberRecord,
    WireError,
    decode_control,
    decode_envelope,
    decode_record,
    encode_envelope,
    encode_meta_notice,
    encode_record,
)

KIND = "svc"


def envelope(payload: object = None, **changes: object) -> Envelope:
    fields: dict[str, object] = dict(
        kind=KIND,
        sender_id="a",
        scope=Scope.ALL,
        term=3,
        leader=True,
        message_id="m1",
        sent_at=1.5,
        payload=payload,
    )
    fields.update(changes)
    return Envelope(**fields)  # type: ignore[arg-type]


def raw_envelope(**changes: object) -> bytes:
    obj = json.loads(encode_envelope(envelope({"x": 1}), 1 << 20))
    obj.update(changes)
    return json.dumps(obj).encode()


class TestEnvelope:
    @pytest.mark.parametrize("kind", ["svc", 'we"ird\\kïnd ☃'])
    @pytest.mark.parametrize("scope", list(Scope))
    @pytest.mark.parametrize("sent_at", [1.5, 1764190000.123456, 1e-7])
    def test_the_fast_writer_writes_what_encode_envelope_writes(
        self, kind: str, scope: Scope, sent_at: float
    ) -> None:
        """EnvelopeWriter (one f-string) and encode_envelope (a dict) give the same bytes."""
        writer = EnvelopeWriter(kind, "node-1", 1 << 20)
        for leader, term, seq in ((True, 9, 1), (False, 2**53 - 1, 2)):
            payload = {"a": [1, "ü", None], "b": 'q"uote'}
            fast = writer.encode(scope, term, leader, sent_at, payload)
            slow = encode_envelope(
                Envelope(kind, "node-1", scope, term, leader, f"node-1-{seq}", sent_at, payload),
                1 << 20,
            )
            assert fast == slow
            assert decode_envelope(fast, kind=kind, max_bytes=1 << 20).message_id == f"node-1-{seq}"

    def test_the_fast_writer_refuses_what_encode_envelope_refuses(self) -> None:
        writer = EnvelopeWriter(KIND, "a", 1024)
        with pytest.raises(MessageError, match="JSON-serialisable"):
            writer.encode(Scope.ALL, 1, False, 1.0, float("nan"))
        with pytest.raises(MessageError, match="max_message_bytes=1024"):
            writer.encode(Scope.ALL, 1, False, 1.0, "x" * 2000)
        with pytest.raises(MessageError, match="not valid Unicode"):
            writer.encode(Scope.ALL, 1, False, 1.0, "\ud800")

    @pytest.mark.parametrize(
        "payload", [None, 0, 1.5, "text", "ünïcødé ☃", [1, [2]], {"a": {"b": None}}, True]
    )
    def test_round_trip(self, payload: object) -> None:
        """Any JSON value survives encode/decode with all fields intact."""
        sent = envelope(payload)
        got = decode_envelope(encode_envelope(sent, 1 << 20), kind=KIND, max_bytes=1 << 20)
        assert got == sent

    @pytest.mark.parametrize("payload", [{1, 2}, object(), float("nan"), float("inf"), b"x"])
    def test_not_json_raises_message_error(self, payload: object) -> None:
        """Payloads JSON cannot carry raise MessageError naming the problem."""
        with pytest.raises(MessageError, match="JSON"):
            encode_envelope(envelope(payload), 1 << 20)

    def test_too_large_raises_message_error(self) -> None:
        """An envelope over the limit is refused before anything is sent."""
        with pytest.raises(MessageError, match="max_message_bytes"):
            encode_envelope(envelope("x" * 2000), 1024)

    def test_deep_nesting_raises_message_error(self) -> None:
        """A payload nested deeper than JSON can encode is a MessageError, not a crash."""
        deep: list[object] = []
        cur = deep
        for _ in range(100_000):
            nxt: list[object] = []
            cur.append(nxt)
            cur = nxt
        with pytest.raises(MessageError):
            encode_envelope(envelope(deep), 1 << 30)

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b"not json", "not JSON"),
            (b"\xff\xfe\x00", "UTF-8"),
            (b"[1, 2]", "not a JSON object"),
            (b"[" * 100_000, "nested too deeply|not JSON"),
            (raw_envelope(v=2), "version"),
            (raw_envelope(kind="other"), "kind"),
            (raw_envelope(scope="everyone"), "scope"),
            (raw_envelope(term="3"), "term"),
            (raw_envelope(term=True), "term"),
            (raw_envelope(term=-1), "term outside"),
            (raw_envelope(term=2**53), "term outside"),
            (raw_envelope(ts=10**400), "out-of-range"),
            (raw_envelope(leader="yes"), "leader"),
            (raw_envelope(id=5), "'id'"),
            (raw_envelope(ts="now"), "ts"),
        ],
    )
    def test_hostile_input_gives_wire_error(self, raw: bytes, reason: str) -> None:
        """Anything that is not a valid envelope is a WireError saying why."""
        with pytest.raises(WireError, match=reason):
            decode_envelope(raw, kind=KIND, max_bytes=1 << 20)

    def test_missing_payload_is_rejected(self) -> None:
        """An envelope without a payload field is not a message."""
        obj = json.loads(raw_envelope())
        del obj["payload"]
        with pytest.raises(WireError, match="payload"):
            decode_envelope(json.dumps(obj).encode(), kind=KIND, max_bytes=1 << 20)

    def test_oversized_input_is_rejected_before_parsing(self) -> None:
        """Received messages over the limit are dropped unparsed."""
        with pytest.raises(WireError, match="over max_message_bytes"):
            decode_envelope(b" " * 2000, kind=KIND, max_bytes=1024)


class TestControl:
    def test_elected_notice(self) -> None:
        """The notice the acquire script publishes decodes to ELECTED with its term."""
        msg = decode_control(b'{"v":1,"type":"elected","id":"abc","term":7}')
        assert (msg.type, msg.id, msg.term) == (ControlType.ELECTED, "abc", 7)

    def test_meta_notice_round_trip(self) -> None:
        """set_meta's notice carries the record and time; .instance builds an Instance."""
        record = encode_record(MemberRecord({"k": [1]}, 100.0, 6.0))
        msg = decode_control(encode_meta_notice("abc", record, 123.5).encode())
        assert msg.type is ControlType.META and msg.at == 123.5
        inst = msg.instance
        assert inst is not None and inst.meta == {"k": [1]} and inst.last_seen == 123.5

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"null",
            b'{"v":1,"type":"crowned","id":"a"}',
            b'{"v":1,"type":"elected","id":"a"}',
            b'{"v":1,"type":"elected","id":"a","term":0}',
            b'{"v":1,"type":"elected","id":"","term":3}',
            b'{"v":1,"type":"joined","id":"a"}',
            b'{"v":1,"type":"joined","id":"a","record":{"meta":1}}',
            b'{"type":"left","id":"a"}',
            b"\xc3\x28",
        ],
    )
    def test_bad_notices_give_wire_error(self, raw: bytes) -> None:
        """Junk on the control channel is a WireError, never another exception."""
        with pytest.raises(WireError):
            decode_control(raw)


class TestRecord:
    def test_round_trip(self) -> None:
        """Member records survive encode/decode."""
        rec = MemberRecord({"a": 1}, 10.25, 6.0)
        assert decode_record(encode_record(rec)) == rec

    @pytest.mark.parametrize("raw", [None, b"", b"[]", b'{"joined":"x","ttl":1}', b'{"ttl":1}'])
    def test_bad_records(self, raw: bytes | None) -> None:
        """Missing or junk records raise WireError."""
        with pytest.raises(WireError):
            decode_record(raw)
