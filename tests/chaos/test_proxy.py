"""The fault-injecting TCP proxy, against the session's real redis-server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

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


def raw_connection(proxy: TcpProxy, timeout: float = 2.0) -> socket.socket:
    """A plain socket through the proxy, speaking RESP by hand."""
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def command(sock: socket.socket, *args: str) -> None:
    parts = [f"*{len(args)}\r\n"] + [f"${len(a.encode())}\r\n{a}\r\n" for a in args]
    sock.sendall("".join(parts).encode())


def named(direct: redis.Redis, name: str) -> list[dict[str, Any]]:
    """Redis' clients called ``name`` (CLIENT LIST)."""
    return [c for c in direct.client_list() if c.get("name") == name]


def subscribed(proxy: TcpProxy, channel: str) -> Any:
    """A redis-py PubSub through the proxy, subscribed to ``channel`` (confirmed)."""
    pubsub = client(proxy, timeout=2.0).pubsub()
    pubsub.subscribe(channel)
    reply = pubsub.get_message(timeout=2.0)
    assert reply is not None and reply["type"] == "subscribe", reply
    return pubsub


def test_blackhole_up_holds_commands_and_passes_what_redis_sends(
    proxy: TcpProxy, redis_server: RedisServer
) -> None:
    """blackhole_up: a command never reaches Redis (the client times out), while a
    message Redis pushes still reaches a subscriber; once healed, the held command
    runs."""
    direct = redis_server.client()
    pubsub = subscribed(proxy, "chaos-proxy-up")
    c = client(proxy)
    try:
        direct.delete("chaos-proxy-up")
        assert c.ping() is True
        proxy.blackhole_up()
        assert proxy.mode == "blackhole_up"
        assert direct.publish("chaos-proxy-up", "down") == 1
        got = pubsub.get_message(timeout=2.0)
        assert got is not None and got["data"] == b"down", got
        with pytest.raises(redis.TimeoutError):
            c.set("chaos-proxy-up", "1")
        assert direct.get("chaos-proxy-up") is None  # 0.2 s after it was sent
        proxy.heal()
        wait_until(lambda: direct.get("chaos-proxy-up") == b"1", 2.0)
    finally:
        direct.delete("chaos-proxy-up")
        direct.close()
        pubsub.close()
        c.close()


def test_blackhole_down_runs_commands_and_holds_what_redis_sends(
    proxy: TcpProxy, redis_server: RedisServer
) -> None:
    """blackhole_down: commands run in Redis but their replies never come, nor do
    messages (Redis still counts the subscriber); once healed, both arrive."""
    direct = redis_server.client()
    pubsub = subscribed(proxy, "chaos-proxy-down")
    sock = raw_connection(proxy, timeout=0.2)
    try:
        direct.delete("chaos-proxy-down")
        command(sock, "PING")
        assert sock.recv(64) == b"+PONG\r\n"
        proxy.blackhole_down()
        command(sock, "SET", "chaos-proxy-down", "1")
        wait_until(lambda: direct.get("chaos-proxy-down") == b"1", 2.0)
        with pytest.raises(socket.timeout):
            sock.recv(64)
        assert direct.publish("chaos-proxy-down", "held") == 1
        assert pubsub.get_message(timeout=0.3) is None
        proxy.heal()
        sock.settimeout(2.0)
        assert sock.recv(64) == b"+OK\r\n"
        got = pubsub.get_message(timeout=2.0)
        assert got is not None and got["data"] == b"held", got
    finally:
        direct.delete("chaos-proxy-down")
        direct.close()
        pubsub.close()
        sock.close()


def test_close_upstream_leaves_the_client_side_open_and_silent(
    proxy: TcpProxy, redis_server: RedisServer
) -> None:
    """close_upstream: Redis sees the connection close; its client side stays open,
    swallows what is written and never answers (also after heal), until the client
    closes it; a redis-py client times out once, then reconnects and gets through."""
    direct = redis_server.client()
    sock = raw_connection(proxy)
    c = client(proxy)
    try:
        direct.delete("chaos-proxy-swallowed")
        command(sock, "CLIENT", "SETNAME", "chaos-silent")
        assert sock.recv(64) == b"+OK\r\n"
        assert c.ping() is True
        assert len(named(direct, "chaos-silent")) == 1
        proxy.close_upstream()
        assert proxy.mode == "close_upstream"
        assert proxy.silent_connections == 2
        wait_until(lambda: not named(direct, "chaos-silent"), 2.0)
        command(sock, "SET", "chaos-proxy-swallowed", "1")
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):  # no reply, and no EOF: open and silent
            sock.recv(64)
        assert direct.get("chaos-proxy-swallowed") is None
        with pytest.raises(redis.TimeoutError):
            c.ping()  # its connection is one of the silent ones
        assert c.ping() is True  # a new connection is forwarded
        proxy.heal()
        with pytest.raises(socket.timeout):
            sock.recv(64)
        assert direct.get("chaos-proxy-swallowed") is None
        sock.close()
        wait_until(lambda: proxy.silent_connections == 0, 2.0)
        assert c.ping() is True
    finally:
        direct.delete("chaos-proxy-swallowed")
        direct.close()
        sock.close()
        c.close()


def test_upstream_addresses_are_the_proxied_clients_in_client_list(
    proxy: TcpProxy, redis_server: RedisServer
) -> None:
    """upstream_addresses(): the addr under which Redis lists each proxied client."""
    direct = redis_server.client()
    c = client(proxy, timeout=2.0)
    try:
        c.client_setname("chaos-via-proxy")
        mine = {x["addr"] for x in named(direct, "chaos-via-proxy")}
        assert len(mine) == 1
        wait_until(lambda: proxy.upstream_addresses() == mine, 2.0)
    finally:
        direct.close()
        c.close()
