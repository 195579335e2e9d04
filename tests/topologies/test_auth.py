"""A password-protected server (requirepass): the URL and dict forms, and wrong passwords.

Also the RedisServer side: a server started with ``--requirepass`` in
``extra_args`` becomes ready (its probe logs in), and its URL carries the password.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from raftredis import BackendError, Candidate
from raftredis.testing import RedisServer, wait_until

PASSWORD = "s3cret/with:odd@chars"


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    """A server with requirepass given as a plain redis-server argument."""
    started = time.monotonic()
    with RedisServer(extra_args=["--requirepass", PASSWORD]) as server:
        assert time.monotonic() - started < 5.0  # ready, not the 10 s probe timeout
        yield server


def test_the_server_is_ready_and_its_url_logs_in(password_server: RedisServer) -> None:
    """RedisServer learnt the password from extra_args: client() and url use it."""
    assert password_server.password == PASSWORD
    assert "s3cret%2Fwith%3Aodd%40chars@" in password_server.url
    for client in (password_server.client(), redis.Redis.from_url(password_server.url)):
        try:
            assert client.ping() is True
        finally:
            client.close()
    anonymous = redis.Redis(
        host="127.0.0.1", port=password_server.port, retry=Retry(NoBackoff(), 0)
    )
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
    finally:
        anonymous.close()


def _forms(server: RedisServer) -> dict[str, Any]:
    where = {"host": "127.0.0.1", "port": server.port}
    return {
        "url": server.url,
        "dict": {**where, "password": PASSWORD},
        "dict-url": {"url": f"redis://127.0.0.1:{server.port}/0", "password": PASSWORD},
        "client": redis.Redis(**where, password=PASSWORD),
    }


@pytest.mark.parametrize("form", ["url", "dict", "dict-url", "client"])
def test_candidates_log_in_with_every_form(
    password_server: RedisServer, candidates: Callable[..., Candidate], form: str
) -> None:
    """Two instances elect a leader and message each other on the protected server."""
    target = _forms(password_server)[form]
    a = candidates(redis=target)
    b = candidates(redis=target)
    a.start()
    b.start()
    wait_until(lambda: a.is_leader != b.is_leader and a.leader_id == b.leader_id, 5.0)
    leader, follower = (a, b) if a.is_leader else (b, a)
    assert follower.message_leader("hello") == 1
    assert [i.id for i in leader.get_instances()] == [a.id, b.id]


@pytest.mark.parametrize(
    ("password", "named"),
    [(None, "Authentication required"), ("wrong", "invalid username-password pair")],
)
def test_a_missing_or_wrong_password_fails_start(
    password_server: RedisServer,
    candidates: Callable[..., Candidate],
    password: str | None,
    named: str,
) -> None:
    """start() fails at once, with Redis' reason in the BackendError."""
    target: dict[str, Any] = {"host": "127.0.0.1", "port": password_server.port}
    if password is not None:
        target["password"] = password
    candidate = candidates(redis=target)
    started = time.monotonic()
    with pytest.raises(BackendError, match=named):
        candidate.start()
    assert time.monotonic() - started < 2.0
    assert not candidate.is_running


def test_a_password_server_over_tls(tls_binary: str, candidates: Callable[..., Candidate]) -> None:
    """TLS and a password together: the rediss:// URL carries both."""
    with RedisServer(tls=True, binary=tls_binary, password=PASSWORD) as server:
        assert server.url.startswith("rediss://:s3cret")
        candidate = candidates(redis=server.url).start()
        assert candidate.is_leader
