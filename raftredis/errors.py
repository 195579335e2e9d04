"""Exceptions raised and reported by raftredis.

The tree::

    RaftRedisError
    ├── ConfigurationError (ValueError)   bad constructor argument or timing
    ├── NotRunningError (RuntimeError)    call needs a started, unforked Candidate
    ├── MessageError (ValueError)         payload not JSON, or too large
    ├── BackendError                      Redis could not be reached or failed
    │   ├── BatchError                    ... part way through a MessageBatch
    │   ├── RefusedError                  ... answered with an error (out of
    │   │                                 memory, read-only replica...)
    │   └── LeaseVanishedError            the lease vanished from Redis before
    │                                     it ran out (evicted, flushed; reported)
    ├── EvictionWarning                   Redis may evict raftredis' keys
    │                                     (reported at start)
    ├── LeaderTimeoutError (TimeoutError) wait_for_leader() ran out of time
    ├── ProtocolError                     something on the kind's channels was
    │                                     dropped (reported, never raised)
    ├── ReceiverError                     a receiver or while_leader function
    │                                     raised (reported, never raised)
    ├── SignalOverflowError               state signals were dropped because
    │                                     the dispatch queue was full (reported)
    ├── SlowReceiverError                 Redis dropped the message connection of
    │                                     receivers that fell behind (reported)
    └── InternalError (RuntimeError)      a bug in raftredis was caught; after
                                          repeats the instance stops (reported)

``ProtocolError``, ``ReceiverError``, ``SignalOverflowError``, ``SlowReceiverError``,
``LeaseVanishedError``, ``EvictionWarning`` and ``InternalError`` are never raised into user
code: they arrive on the ``error_occurred`` signal (node-raft-redis name ``"error"``),
with the original exception, if any, as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AskTimeoutError",
    "BackendError",
    "BatchError",
    "ConfigurationError",
    "EvictionWarning",
    "InternalError",
    "LeaderTimeoutError",
    "LeaseVanishedError",
    "MessageError",
    "MessagesLostError",
    "NoLeaderError",
    "NotRunningError",
    "ProtocolError",
    "RaftRedisError",
    "ReceiverError",
    "RefusedError",
    "RemoteError",
    "SignalOverflowError",
    "SlowReceiverError",
    "UndeliverableError",
]


class RaftRedisError(Exception):
    """Base class of every exception raftredis raises or reports."""


class ConfigurationError(RaftRedisError, ValueError):
    """A constructor argument or a timing cannot work; the message says what to change.

    ``option`` names the argument that was wrong (``"lease_ttl"``, ``"redis"``...),
    where one is to blame; the Flask and Django integrations map it to their
    setting's name.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild_configuration_error, (str(self), self.option)


class NotRunningError(RaftRedisError, RuntimeError):
    """The call needs a started Candidate (after ``start()``, before ``stop()``, same process)."""


class MessageError(RaftRedisError, ValueError):
    """A payload or meta cannot be sent: not JSON-serialisable, or over the size limit."""


class BackendError(RaftRedisError):
    """Redis could not be reached, timed out, or answered with an error.

    The redis-py exception is kept as ``__cause__``.
    """


class BatchError(BackendError):
    """Redis failed part way through :meth:`MessageBatch.send() <raftredis.MessageBatch.send>`.

    ``counts[i]`` is the receiver count of message ``i`` if it is known to
    have been published, else None; the last ``not_sent`` messages were
    certainly not published. Nothing was retried.
    """

    def __init__(self, message: str, *, counts: list[int | None], not_sent: int) -> None:
        super().__init__(message)
        self.counts = counts
        self.not_sent = not_sent


class RefusedError(BackendError):
    """Redis answered a command with an error: out of memory (``OOM``), a read-only
    replica (``READONLY``), loading, busy...

    An answer, not silence: a leader whose renew is refused stops leading at
    once, and a follower whose campaign is refused takes no lease.
    """


class LeaseVanishedError(BackendError):
    """Reported when the lease vanished from Redis before it ran out, without a resign.

    A Redis that evicts keys (``maxmemory`` with a ``volatile-*`` or
    ``allkeys-*`` policy) or an admin's ``FLUSHALL`` does that. ``restored``
    says whether the leader put its lease back (it still held it) or gave
    it up; ``cause`` is the likely cause, read from Redis (``INFO``) where
    the ACL allows. Reported once, then at most once a minute with a count.
    """

    def __init__(self, message: str, *, term: int, restored: bool, cause: str) -> None:
        super().__init__(message)
        self.term = term
        self.restored = restored
        self.cause = cause


class EvictionWarning(RaftRedisError):
    """Reported by ``start()``: this Redis may evict raftredis' keys.

    It has a ``maxmemory`` and a ``maxmemory-policy`` other than
    ``noeviction``. raftredis keeps one leader through evictions of its
    lease (see docs/production.md, "Redis memory"), but with an ``allkeys-*``
    policy or a ``FLUSHALL`` an instance that starts just then can lead
    beside the leader until the leader's next renew. ``policy`` and
    ``maxmemory`` (bytes) are what Redis said.
    """

    def __init__(self, message: str, *, policy: str, maxmemory: int) -> None:
        super().__init__(message)
        self.policy = policy
        self.maxmemory = maxmemory


class LeaderTimeoutError(RaftRedisError, TimeoutError):
    """``wait_for_leader()`` saw no leader before its timeout."""


class ProtocolError(RaftRedisError):
    """Something published on the kind's channels was not valid and was dropped.

    ``channel`` names where it came from; ``raw`` holds its first bytes.
    """

    def __init__(self, reason: str, *, channel: str = "", raw: bytes = b"") -> None:
        super().__init__(f"dropped input on {channel or 'a channel'}: {reason}")
        self.reason = reason
        self.channel = channel
        self.raw = raw[:200]


class ReceiverError(RaftRedisError):
    """A signal receiver or a ``while_leader`` function raised; ``__cause__`` is its exception."""

    def __init__(self, message: str, *, receiver: object = None) -> None:
        super().__init__(message)
        self.receiver = receiver


class SignalOverflowError(RaftRedisError):
    """State signals were dropped because receivers fell too far behind."""

    def __init__(self, dropped: int) -> None:
        super().__init__(
            f"{dropped} state signal(s) were dropped: a receiver on the dispatch thread is "
            "too slow; move long work to your own thread (while_leader does this for you)"
        )
        self.dropped = dropped


class SlowReceiverError(RaftRedisError):
    """Redis dropped this instance's message connection while its message receivers
    were behind, most likely at its ``client-output-buffer-limit`` for pub/sub.

    Reported on ``error_occurred`` within about a second of the drop, once per
    drop. Messages published to this instance from the drop until it has
    subscribed again are lost (their senders' ``message_*`` counted 0 for it),
    and so are those Redis still held for it; the ones already received are
    still delivered first. ``channel`` is the instance's inbox channel,
    ``behind_for`` how long (seconds) the receivers had kept the message
    listener busy, ``handled`` how many messages they handled meanwhile.
    """

    def __init__(
        self, message: str, *, channel: str = "", behind_for: float = 0.0, handled: int = 0
    ) -> None:
        super().__init__(message)
        self.channel = channel
        self.behind_for = behind_for
        self.handled = handled


def _rebuild_configuration_error(message: str, option: str | None) -> ConfigurationError:
    return ConfigurationError(message, option=option)


class InternalError(RaftRedisError, RuntimeError):
    """A bug in raftredis was caught (``__cause__`` is the exception); the message says
    what happened to this instance. After repeated failures of its heartbeat the
    instance gives up its role and stops: create a new Candidate to rejoin."""


class UndeliverableError(MessageError):
    """A reliable message or request was refused before it was sent: its target is
    not a member of the kind (it left, or never joined) or takes no reliable messages."""


class NoLeaderError(RaftRedisError):
    """A request for the leader found no leader: nobody holds the lease right now."""


class AskTimeoutError(RaftRedisError, TimeoutError):
    """No answer to a request within its timeout (the request may still be handled)."""


class RemoteError(RaftRedisError):
    """The instance that handled a request raised: ``instance_id`` names it,
    ``remote_type`` is the exception's type name; the message is its message."""

    def __init__(self, message: str, *, instance_id: str, remote_type: str) -> None:
        super().__init__(message)
        self.instance_id = instance_id
        self.remote_type = remote_type


class MessagesLostError(RaftRedisError):
    """Reliable messages were lost before they were read (trimmed by length or age, or
    lost by Redis): reported, never raised. ``count`` is how many, if known."""

    def __init__(self, message: str, *, count: int | None) -> None:
        super().__init__(message)
        self.count = count
