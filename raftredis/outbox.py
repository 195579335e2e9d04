"""The sending side of messaging: stamp, encode and publish, one message or a batch.

Every message is stamped with the sender's term and whether it leads, read
in one atomic check when the message is prepared, and published at most
once (a publish that may have happened is never repeated). A batch goes out
in chunks of up to :data:`CHUNK_MESSAGES` messages, each chunk one write
and one read, on one connection, so its messages arrive in order.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import redis
from redis.exceptions import NoScriptError

from .errors import BackendError, BatchError, MessageError
from .keys import KeySpace
from .models import Scope
from .publish_pool import PublishPool
from .signing import Signer
from .wire import EnvelopeWriter

__all__ = ["LeadershipView", "MessageBatch", "NotLeading", "Outbox", "Outgoing"]

#: At most this many messages (or CHUNK_BYTES) per write: bounds the time one
#: write may take against the socket timeout, and Redis' query buffer.
CHUNK_MESSAGES = 1000
CHUNK_BYTES = 1 << 20


class LeadershipView(Protocol):
    """What the outbox reads of the election: how to stamp a message now."""

    def stamp(self) -> tuple[int, bool]:
        """(term, whether this instance leads now), read in one atomic check."""
        ...


class NotLeading:
    """The stamp of a sender that never leads (a Client): term 0, not from the leader."""

    def stamp(self) -> tuple[int, bool]:
        return 0, False


class Outgoing(NamedTuple):
    """One prepared message: the command that publishes it, and how to count its receivers."""

    command: tuple[Any, ...]
    scope: Scope
    #: Our own message listener is subscribed to the channel and counts among the receivers.
    echoes: bool
    size: int


class Outbox:
    """Prepares and publishes the messages of one Candidate (or Client)."""

    def __init__(
        self,
        keys: KeySpace,
        member_id: str,
        max_bytes: int,
        pool: PublishPool,
        send_to_leader_script: str,
        *,
        leadership: LeadershipView,
        signer: Signer | None = None,
        subscribed: bool = True,
    ) -> None:
        self._keys = keys
        # A Candidate's own listener hears its broadcasts (and messages to its own
        # id), and PUBLISH counts it: it is subtracted. A Client subscribes to nothing.
        self._subscribed = subscribed
        self._id = member_id
        self._pool = pool
        sign = signer.sign if signer is not None else None
        self._writer = EnvelopeWriter(keys.kind, member_id, max_bytes, sign)
        self._leadership = leadership
        self._script = send_to_leader_script
        self._script_sha = hashlib.sha1(send_to_leader_script.encode()).hexdigest()
        self._channels = {Scope.ALL: keys.all, Scope.FOLLOWERS: keys.followers}

    def prepare(self, scope: Scope, payload: Any, instance_id: str | None = None) -> Outgoing:
        """Stamp and encode one message; MessageError if it cannot be sent."""
        if scope is Scope.DIRECT and (not isinstance(instance_id, str) or not instance_id):
            raise MessageError(f"message_to needs an instance id (str), got {instance_id!r}")
        term, leader = self._leadership.stamp()
        data = self._writer.encode(scope, term, leader, time.time(), payload)
        keys = self._keys
        if scope is Scope.LEADER:
            command: tuple[Any, ...] = (
                "EVALSHA", self._script_sha, 2, keys.leader, keys.leader_copy,
                keys.inbox_prefix, data, self._id
            )  # fmt: skip
            return Outgoing(command, scope, False, len(data))
        if scope is Scope.DIRECT:
            assert instance_id is not None
            echoes = self._subscribed and instance_id == self._id
            command = (keys.publish_command, keys.inbox(instance_id), data)
            return Outgoing(command, scope, echoes, len(data))
        command = (keys.publish_command, self._channels[scope], data)
        return Outgoing(command, scope, self._subscribed, len(data))

    def send(self, outgoing: Outgoing) -> int:
        """Publish one message; how many other instances received it."""
        try:
            reply = self._run([outgoing])[0]
        except (redis.RedisError, OSError) as exc:
            raise BackendError(f"Redis failed while publishing a message: {exc}") from exc
        if isinstance(reply, redis.ResponseError):
            raise BackendError(f"Redis refused a message: {reply}") from reply
        return _receivers(reply, outgoing)

    def send_many(self, batch: Sequence[Outgoing]) -> list[int]:
        """Publish ``batch`` in order; receiver counts in order, or :class:`BatchError`."""
        counts: list[int | None] = []
        first_error: BaseException | None = None
        for chunk in _chunks(batch):
            try:
                replies = self._run(chunk)
            except (redis.RedisError, OSError) as exc:
                not_sent = len(batch) - len(counts) - len(chunk)
                counts += [None] * (len(batch) - len(counts))
                raise BatchError(
                    f"Redis failed while publishing a batch of {len(batch)} messages: {exc}. "
                    f"{sum(c is not None for c in counts)} were published; the next "
                    f"{len(chunk)} may or may not have been; the last {not_sent} were not",
                    counts=counts,
                    not_sent=not_sent,
                ) from exc
            for reply, outgoing in zip(replies, chunk):
                if isinstance(reply, redis.ResponseError):
                    first_error = first_error or reply
                    counts.append(None)
                else:
                    counts.append(_receivers(reply, outgoing))
        if first_error is not None:
            failed = sum(c is None for c in counts)
            raise BatchError(
                f"Redis refused {failed} of a batch of {len(batch)} messages (the others were "
                f"published): {first_error}",
                counts=counts,
                not_sent=0,
            ) from first_error
        return [c for c in counts if c is not None]

    def close(self) -> None:
        """Close the publishing connections."""
        self._pool.close()

    def _run(self, chunk: Sequence[Outgoing]) -> list[Any]:
        commands = [o.command for o in chunk]
        preload = len(chunk) > 1 and any(o.scope is Scope.LEADER for o in chunk)
        if preload:
            # Load the script ahead of a batch's messages to the leader: retrying one
            # after a NOSCRIPT reply would put it behind the messages after it.
            commands.insert(0, ("SCRIPT", "LOAD", self._script))
        replies = self._pool.run(commands)
        if preload:
            del replies[0]
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            # Redis lost its script cache (a restart): load it and run just those
            # again; a NOSCRIPT reply means that message was not published.
            self._pool.run([("SCRIPT", "LOAD", self._script)])
            again = self._pool.run([chunk[i].command for i in missing])
            for i, reply in zip(missing, again):
                replies[i] = reply
        return replies


def _receivers(reply: Any, outgoing: Outgoing) -> int:
    if outgoing.scope is Scope.LEADER:
        return int(reply[1])  # send_to_leader replies {leader id or nil, receivers}
    return max(0, int(reply) - 1) if outgoing.echoes else int(reply)


def _chunks(batch: Sequence[Outgoing]) -> list[Sequence[Outgoing]]:
    chunks: list[Sequence[Outgoing]] = []
    start = size = 0
    for i, outgoing in enumerate(batch):
        if i > start and (i - start >= CHUNK_MESSAGES or size + outgoing.size > CHUNK_BYTES):
            chunks.append(batch[start:i])
            start, size = i, 0
        size += outgoing.size
    if start < len(batch):
        chunks.append(batch[start:])
    return chunks


class MessageBatch:
    """Messages collected to be published together: one round trip per 1,000 messages.

    Get one from :meth:`Candidate.batch() <raftredis.Candidate.batch>` (or
    :meth:`Client.batch() <raftredis.Client.batch>`), add
    messages with the same methods a Candidate has, then call :meth:`send`::

        batch = candidate.batch()
        for job in jobs:
            batch.message_to(worker_id, job)
        counts = batch.send()   # receivers of each message, in order

    or use it as a context manager, which sends on a clean exit (the counts
    are then in :attr:`counts`). Each message is encoded and stamped (term,
    leader or not) when it is added, so a payload that cannot be sent raises
    :class:`~raftredis.MessageError` at once and nothing is lost later. The
    messages go out in order on one connection. A batch belongs to the
    thread that fills it.
    """

    def __init__(self, outbox: Callable[[], Outbox]) -> None:
        self._outbox = outbox
        self._pending: list[Outgoing] = []
        #: The receiver counts of the last :meth:`send`, in order.
        self.counts: list[int] = []

    def __len__(self) -> int:
        return len(self._pending)

    def message_to(self, instance_id: str, payload: Any) -> MessageBatch:
        """Add a message to one instance (see :meth:`Candidate.message_to`)."""
        return self._add(Scope.DIRECT, payload, instance_id)

    def message_all(self, payload: Any) -> MessageBatch:
        """Add a message to every other instance (see :meth:`Candidate.message_all`)."""
        return self._add(Scope.ALL, payload)

    def message_followers(self, payload: Any) -> MessageBatch:
        """Add a message to the followers (see :meth:`Candidate.message_followers`)."""
        return self._add(Scope.FOLLOWERS, payload)

    def message_leader(self, payload: Any) -> MessageBatch:
        """Add a message to the leader at the time it is published (see
        :meth:`Candidate.message_leader`)."""
        return self._add(Scope.LEADER, payload)

    def send(self) -> list[int]:
        """Publish every message added since the last send; their receiver counts, in order.

        Raises :class:`~raftredis.BatchError` (a
        :class:`~raftredis.BackendError`) if Redis failed part way; its
        ``counts`` say which messages were published. Nothing is retried.
        """
        pending, self._pending = self._pending, []
        self.counts = self._outbox().send_many(pending) if pending else []
        return self.counts

    def clear(self) -> None:
        """Drop the messages added since the last send."""
        self._pending = []

    def __enter__(self) -> MessageBatch:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.send()
        else:
            self.clear()

    def _add(self, scope: Scope, payload: Any, instance_id: str | None = None) -> MessageBatch:
        self._pending.append(self._outbox().prepare(scope, payload, instance_id))
        return self

    def __repr__(self) -> str:
        return f"<MessageBatch of {len(self._pending)} unsent message(s)>"
