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
    └── InternalError (RuntimeError)      a bug in raftredis was caught; after
                                          repeats the instance stops (reported)

``ProtocolError``, ``ReceiverError``, ``SignalOverflowError``,
``LeaseVanishedError``, ``EvictionWarning`` and ``InternalError`` are never raised into user
code: they arrive on the ``error_occurred`` signal (node-raft-redis name ``"error"``),
with the original exception, if any, as ``__cause__``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "BatchError",
    "ConfigurationError",
    "EvictionWarning",
    "InternalError",
    "LeaderTimeoutError",
    "LeaseVanishedError",
    "MessageError",
    "NotRunningError",
    "ProtocolError",
    "RaftRedisError",
    "ReceiverError",
    "RefusedError",
    "SignalOverflowError",
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


def _rebuild_configuration_error(message: str, option: str | None) -> ConfigurationError:
    return ConfigurationError(message, option=option)


class InternalError(RaftRedisError, RuntimeError):
    """A bug in raftredis was caught (``__cause__`` is the exception); the message says
    what happened to this instance. After repeated failures of its heartbeat the
    instance gives up its role and stops: create a new Candidate to rejoin."""
