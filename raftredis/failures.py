"""What kind of failure an exception from redis-py is: a refusal, or a timeout."""

from __future__ import annotations

import socket

import redis

__all__ = ["refused", "timed_out"]

# How Redis words an ACL denial: NOPERM replies (6.2 and 7), and inside a script.
_DENIALS = ("NOPERM", "no permissions", "user executing the script can't")


def refused(exc: BaseException | None) -> bool:
    """True if Redis refused us for good: an ACL denial or failed authentication."""
    seen = exc
    while seen is not None:
        if isinstance(seen, (redis.exceptions.NoPermissionError, redis.AuthenticationError)):
            return True
        if isinstance(seen, redis.ResponseError) and any(mark in str(seen) for mark in _DENIALS):
            return True  # a denial inside a script comes as a plain error reply
        seen = seen.__cause__ or seen.__context__
    return False


def timed_out(exc: BaseException) -> bool:
    """True if ``exc`` or one of its causes is a timeout (not a refusal or a bad reply)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (redis.TimeoutError, TimeoutError, socket.timeout)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
