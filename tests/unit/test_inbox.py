"""The Inbox: what it delivers, what it skips, what it drops and reports; no Redis.

Each test builds real envelopes with raftredis.wire's encoder (signed with
raftredis.signing where a secret is in play) and hands them to the Inbox as
redis-py's pub/sub would. Delivery happens on the calling thread. The same
paths through Redis are tested in tests/integration/test_api_messaging.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from signal_log import SignalLog

from raftredis import signals
from raftredis.errors import ProtocolError
from raftredis.inbox import Inbox
from raftredis.keys import KeySpace
from raftredis.models import Message, Scope
from raftredis.signing import Keyring, ReplayGuard
from raftredis.wire import EnvelopeWriter

KIND = "svc"
KEYS = KeySpace("raftredis", KIND)
ME = "me"
PEER = "peer"
MAX_BYTES = 4096
SENT_AT = 1_700_000_000.25
SECRET = b"0123456789abcdef-secret"
SERVER_MS = 1_700_000_000_000
MESSAGE_SIGNALS = (
    signals.message_received,
    signals.message_from_leader,
    signals.message_from_follower,
    signals.error_occurred,
)


class Sender:
    """A blinker sender of a test's own."""


class Peer:
    """Another instance of the kind: encodes what it sends, signed if it has a keyring."""

    def __init__(
        self, sender_id: str = PEER, keyring: Keyring | None = None, max_bytes: int = MAX_BYTES
    ) -> None:
        self.sign_at = SERVER_MS
        sign = None if keyring is None else (lambda body: keyring.sign(body, self.sign_at))
        self._writer = EnvelopeWriter(KIND, sender_id, max_bytes, sign)

    def encode(
        self, payload: Any = "hi", *, scope: Scope = Scope.ALL, term: int = 3, leader: bool = False
    ) -> bytes:
        return self._writer.encode(scope, term, leader, SENT_AT, payload)


class Receiver:
    """The Inbox of instance ME, with its role and known term set by the test."""

    def __init__(self, log: SignalLog, guard: ReplayGuard | None = None) -> None:
        self.log = log
        self.term = 3
        self.leading = False
        self.inbox = Inbox(
            log.sender,
            KEYS,
            ME,
            MAX_BYTES,
            known_term=lambda: self.term,
            is_leader=lambda: self.leading,
            guard=guard,
        )

    def receive(self, data: bytes, channel: str = KEYS.all) -> None:
        """Hand the Inbox one message as redis-py's pub/sub does."""
        self.inbox.handle({"type": "message", "channel": channel.encode(), "data": data})

    def messages(self) -> list[Message]:
        return [r.kwargs["message"] for r in self.log.received if r.signal != "error_occurred"]

    def rejected(self) -> ProtocolError:
        """The one error reported: a ProtocolError; and nothing was delivered."""
        [error] = self.log.errors()
        assert isinstance(error, ProtocolError)
        assert self.messages() == []
        return error


@pytest.fixture
def log() -> Iterator[SignalLog]:
    log = SignalLog(Sender())
    log.record(*MESSAGE_SIGNALS)
    try:
        yield log
    finally:
        log.close()


@pytest.fixture
def me(log: SignalLog) -> Receiver:
    return Receiver(log)


def test_the_inbox_listens_on_all_followers_and_its_own_channel(me: Receiver) -> None:
    """Three channels, each handled by the inbox."""
    channels = me.inbox.channels
    assert set(channels) == {KEYS.all, KEYS.followers, KEYS.inbox(ME)}
    assert all(handler == me.inbox.handle for handler in channels.values())


def test_a_leader_message_is_delivered_with_its_fields(me: Receiver) -> None:
    """message_received, then message_from_leader, both with the decoded Message."""
    me.receive(Peer().encode({"job": 1}, term=3, leader=True))
    assert me.log.names() == ["message_received", "message_from_leader"]
    message = me.messages()[0]
    assert me.messages() == [message, message]
    assert message == Message(
        payload={"job": 1},
        sender_id=PEER,
        scope=Scope.ALL,
        from_leader=True,
        term=3,
        message_id=f"{PEER}-1",
        sent_at=SENT_AT,
    )
    assert message.kind == KIND


def test_a_follower_message_is_delivered_as_from_follower(me: Receiver) -> None:
    """A message from an instance that was not leader: message_from_follower follows."""
    me.receive(Peer().encode("hello", term=1, leader=False))
    assert me.log.names() == ["message_received", "message_from_follower"]
    assert not me.messages()[0].from_leader
    assert me.messages()[0].term == 1  # an old term only matters for a leader's message


@pytest.mark.parametrize("scope", [Scope.DIRECT, Scope.LEADER])
def test_direct_and_leader_messages_arrive_on_the_own_channel(me: Receiver, scope: Scope) -> None:
    """Messages to this instance (by id, or as leader) come on its own channel."""
    me.receive(Peer().encode(scope=scope), channel=KEYS.inbox(ME))
    assert [m.scope for m in me.messages()] == [scope, scope]
    assert me.log.errors() == []


def test_own_broadcasts_are_skipped(me: Receiver) -> None:
    """What this instance broadcast comes back to it: skipped, not reported."""
    me.receive(Peer(ME).encode())
    me.receive(Peer(ME).encode(scope=Scope.FOLLOWERS), channel=KEYS.followers)
    assert me.log.received == []


def test_followers_only_messages_are_skipped_by_the_leader(me: Receiver) -> None:
    """A followers message reaches followers; the leader skips it without a report."""
    me.receive(Peer().encode("a", scope=Scope.FOLLOWERS), channel=KEYS.followers)
    me.leading = True
    me.receive(Peer().encode("b", scope=Scope.FOLLOWERS), channel=KEYS.followers)
    assert [m.payload for m in me.messages()] == ["a", "a"]
    assert me.log.errors() == []


@pytest.mark.parametrize(
    ("scope", "channel"),
    [
        (Scope.DIRECT, KEYS.all),
        (Scope.ALL, KEYS.followers),
        (Scope.FOLLOWERS, KEYS.inbox(ME)),
        (Scope.LEADER, KEYS.followers),
    ],
)
def test_a_message_on_the_wrong_channel_is_dropped(
    me: Receiver, scope: Scope, channel: str
) -> None:
    """A scope that does not belong on the channel it came on: ProtocolError."""
    me.receive(Peer().encode(scope=scope), channel=channel)
    error = me.rejected()
    assert error.channel == channel
    assert "wrong channel" in error.reason


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"v": 1}',
        b'{"v": 2, "kind": "svc"}',
        b'{"v":1,"kind":"other","from":"x","scope":"all","term":1,"leader":false,'
        b'"id":"x-1","ts":1.0,"payload":1}',
    ],
)
def test_junk_is_dropped_and_reported(me: Receiver, junk: bytes) -> None:
    """Anything that is not an envelope of this kind: ProtocolError with channel and bytes."""
    me.receive(junk)
    error = me.rejected()
    assert error.channel == KEYS.all
    assert error.raw == junk


def test_an_oversize_message_is_dropped(me: Receiver) -> None:
    """Over max_message_bytes (a sender with a larger limit): ProtocolError."""
    me.receive(Peer(max_bytes=4 * MAX_BYTES).encode("x" * MAX_BYTES))
    assert "max_message_bytes" in me.rejected().reason


def test_a_leader_message_of_an_old_term_is_dropped(me: Receiver) -> None:
    """A message claiming the leadership of a term older than the known one: ProtocolError."""
    me.term = 4
    me.receive(Peer().encode(term=3, leader=True))
    assert "term 4 has begun" in me.rejected().reason
    me.log.received.clear()
    me.receive(Peer().encode(term=4, leader=True))
    assert me.log.names() == ["message_received", "message_from_leader"]


# -------------------------------------------------------------- with a secret


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([SECRET])


@pytest.fixture
def guarded(log: SignalLog, keyring: Keyring) -> Receiver:
    return Receiver(log, ReplayGuard(keyring, lambda: SERVER_MS, window=30.0))


def test_a_signed_message_is_delivered(guarded: Receiver, keyring: Keyring) -> None:
    """Signed with the shared secret, fresh and new: delivered as usual."""
    guarded.receive(Peer(keyring=keyring).encode("signed"))
    assert [m.payload for m in guarded.messages()] == ["signed", "signed"]


def test_an_unsigned_message_is_dropped(guarded: Receiver) -> None:
    """With a secret, an unsigned envelope is dropped and reported."""
    guarded.receive(Peer().encode())
    assert "not signed" in guarded.rejected().reason


def test_a_message_signed_with_another_secret_is_dropped(guarded: Receiver) -> None:
    """A wrong secret (or altered bytes) fails the signature check."""
    guarded.receive(Peer(keyring=Keyring([b"another-secret-of-16+"])).encode())
    assert "bad signature" in guarded.rejected().reason


def test_an_altered_message_is_dropped(guarded: Receiver, keyring: Keyring) -> None:
    """Changing one byte of the signed part breaks the signature."""
    raw = Peer(keyring=keyring).encode("pay 10")
    guarded.receive(raw.replace(b"pay 10", b"pay 99"))
    assert "bad signature" in guarded.rejected().reason


def test_a_replayed_message_is_dropped(guarded: Receiver, keyring: Keyring) -> None:
    """The same signed bytes a second time: delivered once, then reported as a replay."""
    raw = Peer(keyring=keyring).encode("once")
    guarded.receive(raw)
    guarded.receive(raw)
    assert guarded.log.names() == ["message_received", "message_from_follower", "error_occurred"]
    [error] = guarded.log.errors()
    assert isinstance(error, ProtocolError)
    assert "replay" in error.reason


def test_a_message_signed_too_long_ago_is_dropped(guarded: Receiver, keyring: Keyring) -> None:
    """Stamped outside the replay window (by the server clock): dropped as a replay."""
    peer = Peer(keyring=keyring)
    peer.sign_at = SERVER_MS - 31_000
    guarded.receive(peer.encode())
    assert "old" in guarded.rejected().reason
