"""What raftredis relies on in redis-py beyond its documented API, pinned one test each.

Every item listed in ``raftredis/redispy_seam.py`` has a test here, named
after the behaviour. When a redis-py release breaks one, the failing test
names what changed: fix the seam module (and the test, if the new behaviour
is as good), not the timing it would otherwise have upset somewhere else.
Run against a real redis-server, with whichever redis-py is installed (the
nox matrix runs it on every supported version).
"""

from __future__ import annotations

import ast
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis._parsers import _RESP2Parser
from redis.client import PubSub
from redis.connection import ConnectionPool
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from raftredis import redispy_seam as seam
from raftredis.testing import RedisServer, free_port, wait_until

PACKAGE = Path(__file__).resolve().parents[2] / "raftredis"


@pytest.fixture
def pool(redis_url: str) -> Iterator[ConnectionPool]:
    pool = ConnectionPool.from_url(redis_url, socket_timeout=5.0)
    try:
        yield pool
    finally:
        pool.disconnect()


def _client_id(conn: Any) -> int:
    seam.send_commands(conn, [("CLIENT", "ID")])
    return int(seam.read_reply(conn))


# --------------------------------------------------------------- sockets


def test_a_connection_is_connected_only_between_connect_and_disconnect(
    pool: ConnectionPool,
) -> None:
    conn = pool.make_connection()
    assert not seam.is_connected(conn), "redis-py connections connect lazily"
    conn.connect()
    assert seam.is_connected(conn)
    conn.disconnect()
    assert not seam.is_connected(conn)


def test_interrupt_wakes_a_thread_blocked_in_get_message_at_once(redis_url: str) -> None:
    """How a Listener stops: its read ends at once, with a connection error, and
    (with retry_settings(None)) redis-py does not reconnect inside it."""
    client = redis.Redis.from_url(redis_url, **seam.retry_settings(None))
    pubsub = seam.new_pubsub(client)
    pubsub.subscribe("seam-wake")
    assert pubsub.get_message(timeout=2.0) is not None  # the subscribe confirmation
    finished = threading.Event()
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(pubsub.get_message(timeout=30.0))
        except Exception as exc:
            outcome.append(exc)
        finished.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.2)  # let the reader block in recv (nothing can signal that it has)
    started = time.monotonic()
    assert pubsub.connection is not None
    seam.interrupt(pubsub.connection)
    assert finished.wait(10.0), "interrupt() did not wake the reader"
    # Well under the 30 s read timeout: the read ended because of the shutdown.
    assert time.monotonic() - started < 5.0
    assert outcome and isinstance(outcome[0], redis.ConnectionError), outcome
    # Still the same (dead) socket: redis-py neither dropped nor replaced it.
    assert seam.is_connected(pubsub.connection), "redis-py reconnected or dropped it"
    with pytest.raises(redis.ConnectionError):
        pubsub.get_message(timeout=0.0)
    pubsub.close()
    client.close()


def test_interrupt_of_an_unconnected_connection_does_nothing(pool: ConnectionPool) -> None:
    conn = pool.make_connection()
    seam.interrupt(conn)
    assert not seam.is_connected(conn)


def test_has_unread_bytes_sees_a_connection_closed_by_the_server(
    pool: ConnectionPool, redis_client: redis.Redis
) -> None:
    conn = pool.make_connection()
    client_id = _client_id(conn)
    assert not seam.has_unread_bytes(conn), "an idle, healthy connection has nothing to read"
    redis_client.client_kill_filter(_id=client_id)
    wait_until(lambda: seam.has_unread_bytes(conn), timeout=5.0)
    conn.disconnect()
    assert not seam.has_unread_bytes(conn), "a disconnected connection is not readable"


def test_limit_receive_buffer_caps_the_kernel_receive_buffer(pool: ConnectionPool) -> None:
    """What bounds the messages a slow subscriber holds in its kernel buffer."""
    conn = pool.make_connection()
    seam.limit_receive_buffer(conn, 64 * 1024)  # not connected: nothing to cap
    conn.connect()
    sock = conn._sock
    assert isinstance(sock, socket.socket)
    seam.limit_receive_buffer(conn, 64 * 1024)
    size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert 64 * 1024 <= size <= 2 * 64 * 1024, "Linux doubles it for its bookkeeping, no more"
    seam.send_commands(conn, [("PING",)])
    assert seam.read_reply(conn) in (b"PONG", "PONG", True), "the connection still works"
    conn.disconnect()


def test_the_python_reader_keeps_parsed_bytes_and_trim_read_buffer_frees_them(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A subscriber that always has more waiting: redis-py's pure-Python reader
    keeps every byte it read, parsed or not, until trimmed; trimming between
    reads frees the parsed ones and the messages after it parse as before."""
    client = redis.Redis.from_url(redis_url, parser_class=_RESP2Parser)
    pubsub = seam.new_pubsub(client)
    pubsub.subscribe("seam-trim")
    assert pubsub.get_message(timeout=2.0) is not None  # the subscribe confirmation
    payloads = [f"{n:04d}".encode() + b"x" * 9_996 for n in range(100)]
    for payload in payloads:
        redis_client.publish("seam-trim", payload)
    received = []
    for _ in range(50):
        message = pubsub.get_message(timeout=2.0)
        assert message is not None
        received.append(message["data"])
    conn = pubsub.connection
    assert conn is not None
    stream = conn._parser._buffer._buffer
    kept = stream.getbuffer().nbytes
    assert kept >= 40 * 10_000, (
        f"the reader kept {kept} bytes after parsing 50 messages: redis-py now frees "
        "parsed bytes itself, and seam.trim_read_buffer can go"
    )
    seam.trim_read_buffer(conn, keep=kept + 1)
    assert stream.getbuffer().nbytes == kept, "below the threshold nothing is trimmed"
    seam.trim_read_buffer(conn, keep=64 * 1024)
    assert stream.tell() == 0
    assert stream.getbuffer().nbytes < 64 * 1024 + 10_100, "only the unparsed bytes stay"
    while len(received) < 100:
        message = pubsub.get_message(timeout=2.0)
        assert message is not None
        received.append(message["data"])
    assert received == payloads, "every message parses whole and in order after a trim"
    pubsub.close()
    client.close()


def test_trim_read_buffer_leaves_hiredis_and_unconnected_connections_alone(
    pool: ConnectionPool,
) -> None:
    conn = pool.make_connection()
    seam.trim_read_buffer(conn, keep=0)  # not connected: no buffer
    conn.connect()
    seam.trim_read_buffer(conn, keep=0)  # whichever reader it has
    seam.send_commands(conn, [("PING",)])
    assert seam.read_reply(conn) in (b"PONG", "PONG", True)
    conn.disconnect()


# ------------------------------------------------------ raw connection I/O


def test_connection_settings_make_connections_like_the_pools(pool: ConnectionPool) -> None:
    connection_class, kwargs = seam.connection_settings(pool)
    assert issubclass(connection_class, redis.Connection)
    assert kwargs["socket_timeout"] == 5.0
    conn = seam.new_connection(connection_class, kwargs)
    assert not seam.is_connected(conn)
    seam.send_commands(conn, [("PING",)])
    assert seam.read_reply(conn) in (b"PONG", "PONG", True)
    conn.disconnect()


def test_send_commands_writes_a_pipeline_and_read_reply_reads_each_reply_in_order(
    pool: ConnectionPool,
) -> None:
    conn = pool.make_connection()
    seam.send_commands(conn, [("SET", "seam-k", "1"), ("INCR", "seam-k"), ("GET", "seam-k")])
    assert seam.read_reply(conn) in (b"OK", "OK", True)
    assert seam.read_reply(conn) == 2
    assert seam.read_reply(conn) in (b"2", "2")
    conn.disconnect()


def test_read_reply_raises_an_error_reply_and_the_connection_stays_usable(
    pool: ConnectionPool,
) -> None:
    conn = pool.make_connection()
    seam.send_commands(conn, [("SET", "seam-s", "x"), ("INCR", "seam-s"), ("PING",)])
    seam.read_reply(conn)
    with pytest.raises(redis.ResponseError):
        seam.read_reply(conn)
    assert seam.read_reply(conn) in (b"PONG", "PONG", True)
    conn.disconnect()


class _Calls:
    def __init__(self) -> None:
        self.seen: list[object] = []

    def record(self, conn: object) -> None:
        self.seen.append(conn)


def test_the_connect_callback_fires_on_every_reconnect(pool: ConnectionPool) -> None:
    conn = pool.make_connection()
    conn.connect()
    calls = _Calls()
    seam.on_every_connect(conn, calls.record)
    assert calls.seen == [], "registering does not call back"
    conn.disconnect()
    conn.connect()
    conn.disconnect()
    conn.connect()
    assert calls.seen == [conn, conn]
    conn.disconnect()


def test_get_message_after_a_lost_connection_reconnects_resubscribes_and_calls_back(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The Listener's recovery: a failed read, the Listener drops the connection,
    and the next read reconnects, subscribes the channels again (with their
    handlers) and fires the callback."""
    client = redis.Redis.from_url(redis_url, **seam.retry_settings(None))
    received: list[Any] = []
    pubsub = seam.new_pubsub(client)
    pubsub.subscribe(**{"seam-re": received.append})
    assert pubsub.get_message(timeout=2.0) is not None
    assert pubsub.connection is not None
    reconnects = _Calls()
    seam.on_every_connect(pubsub.connection, reconnects.record)
    redis_client.client_kill_filter(_type="pubsub")

    def delivered() -> bool:
        try:
            pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        except redis.ConnectionError:
            assert pubsub.connection is not None
            pubsub.connection.disconnect()  # as Listener._failed does
            return False
        redis_client.publish("seam-re", b"hello")
        return bool(received)

    wait_until(delivered, timeout=10.0)
    assert reconnects.seen, "the connect callback did not fire on the reconnect"
    assert received[0]["data"] == b"hello"
    pubsub.close()
    client.close()


def test_connections_in_use_lists_the_checked_out_ones(pool: ConnectionPool) -> None:
    lent = pool.get_connection("PING") if _takes_command_name() else pool.get_connection()
    try:
        assert lent in seam.connections_in_use(pool)
    finally:
        pool.release(lent)
    assert lent not in seam.connections_in_use(pool)


def _takes_command_name() -> bool:
    # redis-py 5 requires a command name in get_connection(); 6+ deprecates it.
    return int(redis.__version__.split(".")[0]) < 6


# --------------------------------------------------------------- Sentinel


def test_a_sentinel_pool_knows_the_primary_it_was_told() -> None:
    pool = SentinelConnectionPool("svc", Sentinel([("127.0.0.1", free_port())]))
    assert seam.known_primary(pool) is None, "not asked yet"
    seam.redirect_primary(pool, ("10.0.0.9", 6390))
    assert seam.known_primary(pool) == ("10.0.0.9", 6390)
    assert pool.master_address == ("10.0.0.9", 6390)


def test_primary_moved_compares_a_connection_with_its_pools_primary(redis_server: Any) -> None:
    pool = SentinelConnectionPool("svc", Sentinel([("127.0.0.1", free_port())]))
    seam.redirect_primary(pool, (redis_server.host, redis_server.port))
    _, kwargs = seam.connection_settings(pool)
    conn = seam.new_connection(SentinelManagedConnection, kwargs)
    assert not seam.primary_moved(conn), "not connected: nothing to move"
    # Connected to the server the pool names (as if the sentinels had said so).
    conn.host, conn.port = redis_server.host, redis_server.port
    redis.Connection.connect(conn)
    assert not seam.primary_moved(conn)
    seam.redirect_primary(pool, ("10.0.0.9", 6390))
    assert seam.primary_moved(conn)
    conn.disconnect()
    assert not seam.primary_moved(redis.Connection())


def test_sentinel_client_settings_of_a_master_for_client() -> None:
    port = free_port()
    manager = Sentinel([("127.0.0.1", port)], sentinel_kwargs={"password": "s3"})
    client = manager.master_for("svc", socket_timeout=1.0)
    service, is_primary, addresses, kwargs = seam.sentinel_client_settings(client.connection_pool)
    assert (service, is_primary, addresses) == ("svc", True, [("127.0.0.1", port)])
    assert kwargs["password"] == "s3"
    replica_pool = manager.slave_for("svc").connection_pool
    assert seam.sentinel_client_settings(replica_pool)[1] is False


# ------------------------------------------------------- connect and retry


class _Chosen(seam.AddressChosenAtConnect, redis.Connection):
    def __init__(self, address: tuple[str, int], **kwargs: Any) -> None:
        self.address = address
        self.events: list[tuple[str, tuple[str, int]]] = []
        super().__init__(**kwargs)

    def choose_address(self) -> tuple[str, int]:
        return self.address

    def address_failed(self, address: tuple[str, int]) -> None:
        self.events.append(("failed", address))

    def address_connected(self, address: tuple[str, int]) -> None:
        self.events.append(("connected", address))


def test_a_connection_can_choose_its_address_at_each_connect(redis_server: Any) -> None:
    closed = ("127.0.0.1", free_port())
    conn = _Chosen(closed, host="192.0.2.1", port=1, socket_connect_timeout=2.0)
    with pytest.raises(redis.ConnectionError):
        conn.connect()
    assert conn.events == [("failed", closed)]
    conn.address = (redis_server.host, redis_server.port)
    conn.connect()
    assert conn.events[-1] == ("connected", conn.address)
    assert (conn.host, conn.port) == conn.address
    conn.send_command("PING")
    assert conn.read_response() in (b"PONG", "PONG", True)
    conn.disconnect()


def test_retry_once_retries_only_what_it_is_told_to_and_once(redis_url: str) -> None:
    """redis-py runs every command through ``retry.call_with_retry`` and its failure
    handler drops the connection: a BLPOP that outlasts the socket timeout fails
    twice when retried (once more on a new connection), once when not."""
    for retried, attempts in ((True, 2), (False, 1)):
        asked: list[BaseException] = []

        def should_retry(
            error: BaseException, answer: bool = retried, seen: list[BaseException] = asked
        ) -> bool:
            seen.append(error)
            return answer

        client = redis.Redis.from_url(
            redis_url, socket_timeout=0.2, **seam.retry_settings(seam.RetryOnce(should_retry))
        )
        ids = {client.client_id()}
        with pytest.raises(redis.TimeoutError):
            client.blpop(["seam-never"], timeout=5)
        assert len(asked) == attempts, f"retried={retried}: {asked}"
        assert all(isinstance(error, redis.TimeoutError) for error in asked)
        ids.add(client.client_id())
        assert len(ids) == 2, "the failed connection was not dropped"
        client.close()


# ---------------------------------------------------------------- pub/sub


def test_sharded_pubsub_reports_an_unrequested_shard_unsubscribe_and_keeps_the_channel(
    pool: ConnectionPool,
) -> None:
    dropped: list[object] = []
    pubsub = seam.ShardedPubSub(pool, dropped.append)
    pubsub.shard_channels[b"seam-shard"] = None
    pubsub.connection = pool.make_connection()
    assert pubsub.handle_message([b"sunsubscribe", b"seam-shard", 0]) is None
    assert dropped == [pubsub.connection]
    assert b"seam-shard" in pubsub.shard_channels
    # One it asked for is redis-py's business as usual.
    pubsub.pending_unsubscribe_shard_channels.add(b"seam-shard")
    pubsub.handle_message([b"sunsubscribe", b"seam-shard", 0])
    assert dropped == [pubsub.connection]
    assert b"seam-shard" not in pubsub.shard_channels
    pool.release(pubsub.connection)


def test_new_pubsub_is_a_pubsub(redis_client: redis.Redis) -> None:
    pubsub = seam.new_pubsub(redis_client)
    assert isinstance(pubsub, PubSub)
    pubsub.close()


# ------------------------------------------------------------ the rule


#: Attributes that reach under redis-py's documented API: only the seam may use them.
_INTERNAL_ATTRIBUTES = {
    "_sock",
    "_connect",
    "_in_use_connections",
    "proxy",
    "master_address",
    "nodes_manager",
    "sentinel_manager",
    "connection_kwargs",
    "shard_channels",
    "pending_unsubscribe_shard_channels",
    "run_in_thread",
    "_supported_errors",
    "_parser",
}
#: redis-py names that only the seam may import.
_INTERNAL_IMPORTS = {"PubSubWorkerThread", "SentinelConnectionPoolProxy", "SocketBuffer"}


def test_no_module_but_the_seam_reaches_into_redis_py() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("redispy_seam.py",) or "testing" in path.parts[-1]:
            continue
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            name = None
            if isinstance(node, ast.Attribute) and node.attr in _INTERNAL_ATTRIBUTES:
                name = node.attr
            elif isinstance(node, ast.alias) and node.name in _INTERNAL_IMPORTS:
                name = node.name
            if name is not None:
                where = path.relative_to(PACKAGE.parent)
                offenders.append(f"{where}:{getattr(node, 'lineno', '?')} uses {name}")
    assert not offenders, "use raftredis.redispy_seam instead:\n" + "\n".join(offenders)


def test_the_seam_runs_on_a_unix_socket_too(tmp_path: Path) -> None:
    with RedisServer(unix_socket=True) as server:
        conn = redis.UnixDomainSocketConnection(path=server.unix_socket_path)
        seam.send_commands(conn, [("PING",)])
        assert seam.read_reply(conn) in (b"PONG", "PONG", True)
        assert isinstance(conn._sock, socket.socket)
        seam.interrupt(conn)
        with pytest.raises(redis.ConnectionError):
            seam.send_commands(conn, [("PING",)])
            seam.read_reply(conn)
        conn.disconnect()
