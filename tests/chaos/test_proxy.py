"""The fault-injecting TCP proxy, against the session's real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from harness import wait_until
from proxy import TcpProxy
from redis.backoff import NoBackoff
from redis.retry import Retry

from raftredis.testing import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", redis_server.port, name="test-proxy") as p:
        yield p


def client(proxy: TcpProxy, timeout: float = 0.2) -> redis.Redis:
    return redis.Redis.from_url(
        proxy.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def test_data_passes_both_ways(proxy: TcpProxy) -> None:
    """Commands and large replies go through unchanged."""
    c = client(proxy, timeout=2.0)
    try:
        big = b"x" * 300_000
        assert c.ping() is True
        assert c.set("chaos-proxy-test", big) is True
        assert c.get("chaos-proxy-test") == big
        # Counted by the proxy's thread just after each send: maybe a moment after
        # the client has its reply.
        wait_until(lambda: proxy.bytes_forwarded > 2 * len(big), 2.0)
    finally:
        c.delete("chaos-proxy-test")
        c.close()


def test_cut_closes_connections_and_refuses_new_ones(proxy: TcpProxy) -> None:
    """cut: the open connection breaks, new ones are closed at once; heal restores."""
    c = client(proxy)
    try:
        assert c.ping() is True
        proxy.cut()
        assert proxy.connections == 0
        with pytest.raises(redis.ConnectionError):
            c.ping()
        with pytest.raises(redis.ConnectionError):
            c.ping()  # a new connection: accepted and closed
        proxy.heal()
        assert c.ping() is True
    finally:
        c.close()


def test_blackhole_times_out_and_heal_restores(proxy: TcpProxy) -> None:
    """blackhole: a client with socket_timeout=0.2 times out (the connection stays open,
    nothing comes back); a new connection is accepted but also hangs; heal restores."""
    c = client(proxy)
    try:
        assert c.ping() is True
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            c.ping()
        assert 0.15 <= time.monotonic() - started < 1.0
        with pytest.raises(redis.TimeoutError):
            c.ping()  # reconnects through the proxy: accepted, never answered
        proxy.heal()
        assert c.ping() is True
    finally:
        c.close()


def test_blackholed_writes_arrive_after_heal(proxy: TcpProxy, redis_server: RedisServer) -> None:
    """What a client sent into the blackhole reaches Redis once the link heals, like
    TCP after a partition: a timed-out command may still run."""
    direct = redis_server.client()
    c = client(proxy)
    try:
        direct.delete("chaos-proxy-late")
        assert c.ping() is True
        proxy.blackhole()
        with pytest.raises(redis.TimeoutError):
            c.set("chaos-proxy-late", "1")
        assert direct.get("chaos-proxy-late") is None
        proxy.heal()
        wait_until(lambda: direct.get("chaos-proxy-late") == b"1", 2.0)
    finally:
        direct.delete("chaos-proxy-late")
        direct.close()
        c.close()


def test_latency_delays_each_direction(proxy: TcpProxy) -> None:
    """latency(s): a round trip takes about 2 x s; heal makes it fast again."""
    c = client(proxy, timeout=2.0)
    try:
        assert c.ping() is True
        proxy.latency(0.1)
        started = time.monotonic()
        assert c.ping() is True
        assert 0.19 <= time.monotonic() - started < 0.6
        proxy.heal()
        started = time.monotonic()
        assert c.ping() is True
        assert time.monotonic() - started < 0.1
    finally:
        c.close()


def test_bad_modes_are_refused(proxy: TcpProxy) -> None:
    with pytest.raises(ValueError):
        proxy.set_mode("sideways")
    with pytest.raises(ValueError):
        proxy.set_mode("latency", 0.0)
    assert proxy.mode == "pass"
