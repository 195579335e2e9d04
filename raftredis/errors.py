"""Exceptions raised and reported by raftredis.

The tree::

    RaftRedisError
    ├── ConfigurationError (ValueError)   bad constructor argument or timing
    ├── NotRunningError (RuntimeError)    call needs a started, unforked Candidate
    ├── MessageError (ValueError)         payload not JSON, or too large
    ├── BackendError                      Redis could not be reached or failed
    │   └── BatchError                    ... part way through a MessageBatch
    ├── LeaderTimeoutError (TimeoutError) wait_for_leader() ran out of time
    ├── ProtocolError                     something on the kind's channels was
    │                                     dropped (reported, never raised)
    ├── ReceiverError                     a receiver or while_leader function
    │                                     raised (reported, never raised)
    └── SignalOverflowError               state signals were dropped because
                                          the dispatch queue was full (reported)

The last three are never raised into user code: they arrive on the
``error_occurred`` signal (seed name ``"error"``), with the original
exception, if any, as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BatchError",
    "ConfigurationError",
    "LeaderTimeoutError",
    "MessageError",
    "NotRunningError",
    "ProtocolError",
    "RaftRedisError",
    "ReceiverError",
    "SignalOverflowError",
]


class RaftRedisError(Exception):
    """Base class of every exception raftredis raises or reports."""


class ConfigurationError(RaftRedisError, ValueError):
    """A constructor argument or a timing cannot work; the message says what to change."""


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
