"""The signing codec: sign/verify, rotation, tampering, wrong keys, age and replays."""

from __future__ import annotations

import json

import pytest

from raftredis.errors import ConfigurationError
from raftredis.models import Scope
from raftredis.signing import Keyring, ReplayGuard, secrets_from
from raftredis.wire import EnvelopeWriter, WireError, decode_control, decode_envelope

KEY = b"k" * 32
OTHER = b"o" * 32
NOW = 1_700_000_000_000
BODY = b'{"v":1,"type":"elected","id":"abc","term":7}'


class Clock:
    def __init__(self, ms: int = NOW) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def guard(keys: list[bytes], clock: Clock | None = None, **kw: object) -> ReplayGuard:
    return ReplayGuard(Keyring(keys), clock or Clock(), **kw)  # type: ignore[arg-type]


def test_signed_is_the_body_plus_two_fields() -> None:
    signed = Keyring([KEY]).sign(BODY, NOW)
    assert signed.startswith(BODY[:-1] + b',"st":%d,"sig":"' % NOW)
    obj = json.loads(signed)
    assert obj["st"] == NOW and len(obj["sig"]) == 43
    # Decoders read a signed notice as before.
    assert decode_control(signed).term == 7


def test_verify_round_trip() -> None:
    ring = Keyring([KEY])
    assert ring.verify(ring.sign(BODY, NOW))[0] == NOW
    guard([KEY]).check(ring.sign(BODY, NOW))


def test_rotation_signs_with_the_first_and_accepts_any() -> None:
    old, rotated = Keyring([OTHER]), Keyring([KEY, OTHER])
    rotated.verify(old.sign(BODY, NOW))
    assert Keyring([KEY]).verify(rotated.sign(BODY, NOW))[0] == NOW
    with pytest.raises(WireError, match="bad signature"):
        old.verify(rotated.sign(BODY, NOW))


def test_every_tampered_byte_is_detected() -> None:
    signed = Keyring([KEY]).sign(BODY, NOW)
    ring = Keyring([KEY])
    for i in range(len(signed)):
        tampered = signed[:i] + bytes([signed[i] ^ 0x01]) + signed[i + 1 :]
        with pytest.raises(WireError):
            ring.verify(tampered)


def test_wrong_key_unsigned_and_truncated_are_refused() -> None:
    ring = Keyring([KEY])
    with pytest.raises(WireError, match="bad signature"):
        ring.verify(Keyring([OTHER]).sign(BODY, NOW))
    with pytest.raises(WireError, match="not signed"):
        ring.verify(BODY)
    signed = ring.sign(BODY, NOW)
    for junk in [b"", b"}", signed[:-1], signed[:-2] + b"}", signed + b" ", b'"}' * 40]:
        with pytest.raises(WireError):
            ring.verify(junk)


def test_a_forged_timestamp_field_in_the_body_does_not_count() -> None:
    """Only the st right before the signature is the stamp (it is what was signed last)."""
    body = b'{"v":1,"type":"left","id":"x","st":1}'
    assert Keyring([KEY]).verify(Keyring([KEY]).sign(body, NOW))[0] == NOW


def test_too_old_and_future_are_dropped() -> None:
    ring = Keyring([KEY])
    clock = Clock()
    g = guard([KEY], clock, window=30.0)
    g.check(ring.sign(BODY, NOW - 29_000))
    with pytest.raises(WireError, match="old"):
        g.check(ring.sign(BODY, NOW - 31_000))
    with pytest.raises(WireError, match="future"):
        g.check(ring.sign(BODY, NOW + 31_000))


def test_replay_is_dropped_and_distinct_messages_are_not() -> None:
    ring = Keyring([KEY])
    g = guard([KEY])
    first = ring.sign(BODY, NOW)
    g.check(first)
    with pytest.raises(WireError, match="replay"):
        g.check(first)
    g.check(ring.sign(BODY, NOW + 1))  # same notice, another moment: not a replay


def test_seen_set_is_bounded_and_forgets_after_the_window() -> None:
    ring = Keyring([KEY])
    clock = Clock()
    g = guard([KEY], clock, window=1.0, limit=10)
    for i in range(50):
        g.check(ring.sign(b'{"n":%d}' % i, NOW))
    assert len(g._seen) == 10
    clock.ms += 2_500
    g.check(ring.sign(b'{"n":"later"}', clock.ms))
    assert len(g._seen) == 1


def test_envelope_writer_signs_within_max_bytes() -> None:
    ring = Keyring([KEY])
    writer = EnvelopeWriter("kind", "me", 1024, lambda body: ring.sign(body, NOW))
    data = writer.encode(Scope.ALL, 3, True, 1.5, {"x": 1})
    ring.verify(data)
    envelope = decode_envelope(data, kind="kind", max_bytes=1024)
    assert envelope.payload == {"x": 1} and envelope.leader
    assert data.startswith(writer.head.encode())
    from raftredis.errors import MessageError

    with pytest.raises(MessageError):  # fits unsigned, not with the signature
        writer.encode(Scope.ALL, 3, True, 1.5, "x" * 900)
    EnvelopeWriter("kind", "me", 1024).encode(Scope.ALL, 3, True, 1.5, "x" * 900)


def test_secrets_from() -> None:
    assert secrets_from("s" * 16) == [b"s" * 16]
    assert secrets_from([b"a" * 16, "b" * 16]) == [b"a" * 16, b"b" * 16]
    for bad in [[], "short", 7, [None], ("a" * 16, b"")]:
        with pytest.raises(ConfigurationError):
            secrets_from(bad)


def test_only_the_canonical_spelling_of_a_signature_verifies() -> None:
    """Every other last character of the signature is refused (no malleable spare bits)."""
    ring = Keyring([KEY])
    signed = ring.sign(BODY, NOW)
    last = len(signed) - 3  # the signature's last character, before '"}'
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for char in alphabet:
        if char != signed[last]:
            with pytest.raises(WireError):
                ring.verify(signed[:last] + bytes([char]) + signed[last + 1 :])
