"""What every command shares: its failure type, Redis clients, and how Redis failures read.

A failure the user can act on (Redis down, a wrong password, a command that
cannot be run) becomes a :class:`CliError`; the entry point prints its
message as one line on stderr and exits with its code. Never a traceback.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

from ..connection import connection_spec, hide_password
from ..errors import BackendError, ConfigurationError
from ..keys import KeySpace

__all__ = [
    "CONNECT_TIMEOUT",
    "CliError",
    "check_reachable",
    "open_client",
    "redact_url",
    "redis_failure",
]

#: Seconds the tool waits for Redis to accept a connection or answer a command.
CONNECT_TIMEOUT = 3.0


class CliError(Exception):
    """A failure to report as one line on stderr, exiting with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, fit to print."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        netloc = f"{user}:***@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:  # several hosts (Sentinel, Cluster), or not even a URL
        return hide_password(url) if "://" in url else "<unparsable URL>"


def open_client(url: str, keys: KeySpace | None = None) -> redis.Redis:
    """A client to ``url`` with short timeouts (the caller closes it).

    ``url`` takes every form ``Candidate(redis=...)`` takes, Sentinel and
    Cluster URLs too; in a Redis Cluster the client talks to the primary
    that serves ``keys`` (or the default prefix). Raises :class:`CliError`
    if the URL cannot be used at all.
    """
    try:
        spec = connection_spec(url)
    except ConfigurationError as exc:
        raise CliError(f"invalid Redis URL {redact_url(url)}: {exc}", code=2) from exc
    pool = spec.pool(
        route_key=(keys.base if keys is not None else "raftredis"),
        socket_timeout=CONNECT_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
    )
    client: redis.Redis = redis.Redis(connection_pool=pool)
    return client


def _reason(exc: BaseException) -> str:
    """The most specific readable cause of a connection failure."""
    for cause in (exc.__cause__, exc.__context__):
        if isinstance(cause, socket.gaierror):
            return str(cause.strerror or cause)
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return "timed out"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
    if isinstance(exc, (redis.TimeoutError, socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).rstrip(".") or type(exc).__name__


def _redis_cause(exc: BaseException) -> BaseException | None:
    """The redis-py or OS error at the root of a raftredis BackendError, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (redis.RedisError, OSError)):
            return current
        current = current.__cause__ or current.__context__
    return None


def redis_failure(url: str, exc: BaseException) -> CliError:
    """Turn a Redis failure while talking to ``url`` into one readable line."""
    where = redact_url(url)
    cause: Any = exc
    if isinstance(exc, BackendError):
        cause = _redis_cause(exc)
        if cause is None:
            return CliError(f"Redis at {where} failed: {exc}")
    if isinstance(cause, redis.AuthenticationError) or (
        isinstance(cause, redis.ResponseError) and "NOAUTH" in str(cause)
    ):
        return CliError(f"Redis at {where} refused the login: {cause}")
    if isinstance(cause, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return CliError(f"cannot reach Redis at {where}: {_reason(cause)}")
    return CliError(f"Redis at {where} failed: {cause}")


def check_reachable(url: str) -> None:
    """PING ``url`` with a plain client: one clear line, fast, if Redis is not there."""
    client = open_client(url)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise redis_failure(url, exc) from exc
    finally:
        client.close()
