"""The receiving side of messaging: decode, filter, and deliver on the listener thread.

Messages reach their receivers on the thread that read them from the socket: a
hop to another thread would be the largest cost of a round trip. Each receiver
is called in isolation; anything invalid is dropped and reported as a
:class:`~raftredis.errors.ProtocolError` on this thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .dispatch import deliver_message, report_error
from .errors import ProtocolError
from .keys import KeySpace
from .listener import channel_of
from .models import Message, Scope
from .signing import ReplayGuard
from .wire import WireError, decode_envelope, envelope_head

__all__ = ["Inbox"]

log = logging.getLogger("raftredis")


class Inbox:
    """Handles everything published on one instance's message channels."""

    def __init__(
        self,
        sender: object,
        keys: KeySpace,
        member_id: str,
        max_bytes: int,
        *,
        known_term: Callable[[], int],
        is_leader: Callable[[], bool],
        guard: ReplayGuard | None = None,
    ) -> None:
        self._sender = sender
        self._kind = keys.kind
        self._id = member_id
        self._max_bytes = max_bytes
        self._known_term = known_term
        self._is_leader = is_leader
        #: With a secret: drops unsigned, badly signed, old and replayed messages.
        self._guard = guard
        # Our own broadcasts come back to us: recognise them by the head our
        # encoder writes, before paying for a decode (or a signature check: a
        # signed envelope starts with the same head, its signature is at the end).
        self._own_head = envelope_head(keys.kind, member_id).encode()
        # The channel set is fixed; role-based filtering happens on receipt.
        self._scopes: dict[str, tuple[Scope, ...]] = {
            keys.all: (Scope.ALL,),
            keys.followers: (Scope.FOLLOWERS,),
            keys.inbox(member_id): (Scope.DIRECT, Scope.LEADER),
        }

    @property
    def channels(self) -> dict[str, Callable[[dict[str, Any]], None]]:
        """The channels to subscribe, each with this inbox as its handler."""
        return {channel: self.handle for channel in self._scopes}

    def handle(self, message: dict[str, Any]) -> None:
        """A redis-py pub/sub handler: one published message, on the listener thread."""
        data = message.get("data")
        raw = data if isinstance(data, bytes) else b""
        if raw.startswith(self._own_head):
            return
        channel = channel_of(message)
        try:
            received = self.accept(channel, raw)
        except WireError as exc:
            self._reject(ProtocolError(str(exc), channel=channel, raw=raw))
            return
        except ProtocolError as exc:
            self._reject(exc)
            return
        if received is None:
            return
        deliver_message(self._sender, received)

    def accept(self, channel: str, raw: bytes) -> Message | None:
        """Decode one message; None for ones not meant for us (our own, followers-only)."""
        if self._guard is not None:
            self._guard.check(raw)
        envelope = decode_envelope(raw, kind=self._kind, max_bytes=self._max_bytes)
        if envelope.scope not in self._scopes.get(channel, ()):
            raise ProtocolError(
                f"a {envelope.scope.value!r} message arrived on the wrong channel",
                channel=channel,
                raw=raw,
            )
        if envelope.sender_id == self._id:
            return None
        if envelope.scope is Scope.FOLLOWERS and self._is_leader():
            return None
        known_term = self._known_term()
        if envelope.leader and envelope.term < known_term:
            raise ProtocolError(
                f"a message claiming to come from the leader of term {envelope.term} arrived, "
                f"but term {known_term} has begun: dropped as stale or forged",
                channel=channel,
                raw=raw,
            )
        return envelope.to_message()

    def _reject(self, error: ProtocolError) -> None:
        log.warning("%s", error)
        report_error(self._sender, error)
