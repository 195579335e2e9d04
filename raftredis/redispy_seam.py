"""Every use of redis-py beyond its documented API, in one place.

Everywhere else raftredis uses redis-py as its documentation shows: clients,
pools, pipelines, ``PubSub.get_message``, ``Script``, ``Retry``, the
exceptions. What a lease and fast stops need beyond that is here, each item
pinned by a test in ``tests/integration/test_redispy_seam.py`` that is named
after the behaviour it pins. A redis-py release that changes one of them
fails that test, by name, instead of showing up as a slow stop or a lost
message somewhere else.

What is relied on:

* **A connection's socket** (``Connection._sock``): whether a connection is
  connected, polling an idle one for bytes it should not have (closed by
  the server), shutting it down to wake a thread blocked reading it, and
  capping its receive buffer (``SO_RCVBUF``, which redis-py's settings
  cannot set: its socket options are TCP-level only).
* **The pure-Python reader's buffer** (``Connection._parser._buffer``, a
  ``SocketBuffer`` around a ``BytesIO``): freeing what it has parsed.
* **Raw I/O on a connection**: a connection made from a pool's
  ``connection_class`` and ``connection_kwargs``, written with
  ``pack_commands`` + ``send_packed_command`` and read with
  ``read_response``, for publishes without the pool's per-command costs.
* **Reconnect callbacks**: ``register_connect_callback`` fires after every
  connect of a connection, reconnects included.
* **The connections a pool has lent out** (``_in_use_connections``).
* **The primary a Sentinel pool knows** (``proxy.master_address``).
* **Choosing the address at connect time** (overriding ``_connect``), for
  connections that follow a Redis Cluster slot.
* **How redis-py calls a Retry** (``call_with_retry`` and its arguments),
  for a retry that retries a MOVED reply and nothing else, and which
  errors it lets a Retry retry (``retry_on_error``, which redis-py 5 needs).
* **A shard channel unsubscribed by the server**: PubSub's
  ``handle_message`` and its ``shard_channels`` bookkeeping.
* **What a RedisCluster and a Sentinel client were built with**: their
  nodes, sentinels and connection settings.

Type annotations differ between redis-py versions too (5.x ships few, 8.2
more): calls whose annotations changed carry ``unused-ignore`` in their
``type: ignore`` so that ``mypy --strict`` passes with every supported version.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis._parsers.socket import SocketBuffer
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.cluster import RedisCluster
from redis.connection import ConnectionPool
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool, SentinelManagedConnection

__all__ = [
    "AddressChosenAtConnect",
    "RetryOnce",
    "ShardedPubSub",
    "cluster_client_settings",
    "connection_settings",
    "connections_in_use",
    "has_unread_bytes",
    "interrupt",
    "is_connected",
    "known_primary",
    "limit_receive_buffer",
    "new_connection",
    "new_pubsub",
    "on_every_connect",
    "primary_moved",
    "read_reply",
    "redirect_primary",
    "retry_settings",
    "send_commands",
    "sentinel_client_settings",
    "trim_read_buffer",
]

T = TypeVar("T")

#: The errors redis-py's Retry handles by default (its own copy is private).
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    socket.timeout,
)

# ---------------------------------------------------------------- sockets


# Attributes are read directly, not with getattr() and a default: if a redis-py
# release renames one, raftredis fails loudly (and the seam tests say which)
# instead of quietly treating every connection as closed.


def _socket(conn: Any) -> socket.socket | None:
    sock = conn._sock
    return sock if isinstance(sock, socket.socket) else None


def is_connected(conn: Any) -> bool:
    """True if ``conn`` holds an open socket (redis-py connects lazily)."""
    return conn._sock is not None


def interrupt(conn: Any) -> None:
    """Wake a thread blocked reading ``conn``: its read fails as a connection error.

    Shutting the socket down (not closing it) is what makes another thread's
    ``recv`` return at once; closing it under a reader would break redis-py's
    buffered reader instead. Does nothing if ``conn`` is not connected.
    """
    sock = _socket(conn)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def has_unread_bytes(conn: Any) -> bool:
    """True if an idle connection is readable: closed by the server, or holding stray bytes.

    One poll with a zero timeout (``socket.recv`` would wait out the socket's
    timeout, and TLS sockets refuse ``MSG_PEEK``). False when not connected.
    """
    sock = conn._sock
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def limit_receive_buffer(conn: Any, size: int) -> None:
    """Cap ``conn``'s kernel receive buffer at ``size`` bytes (``SO_RCVBUF``; Linux
    doubles it for its bookkeeping) and stop the kernel from growing it.

    Set after the connect (redis-py opens the socket and connects in one
    step), so the window agreed at the handshake may be larger: the kernel
    still holds no more than the cap. Does nothing if ``conn`` is not connected.
    """
    sock = _socket(conn)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def trim_read_buffer(conn: Any, keep: int) -> None:
    """Free what redis-py's pure-Python reader has parsed, once that is ``keep`` bytes or more.

    That reader drops parsed bytes only when it has parsed all it read, so on
    a connection that always has more waiting (a subscriber behind its
    publishers) it keeps everything it ever read. Call it between reads only,
    on the thread that reads. hiredis's reader frees parsed bytes itself, and
    an unconnected connection has nothing to free: both are left alone.
    """
    reader = conn._parser._buffer
    if not isinstance(reader, SocketBuffer):
        return
    stream = reader._buffer
    with contextlib.suppress(ValueError, AttributeError):  # closed, or dropped, meanwhile
        if stream.tell() < keep:
            return
        unparsed = stream.read()
        stream.seek(0)
        stream.truncate()
        stream.write(unparsed)
        stream.seek(0)


# ------------------------------------------------------ raw connection I/O


def connection_settings(pool: ConnectionPool) -> tuple[type[Any], dict[str, Any]]:
    """The class and keyword arguments ``pool`` makes its connections with."""
    return pool.connection_class, dict(pool.connection_kwargs)


def new_connection(connection_class: type[Any], kwargs: dict[str, Any]) -> Any:
    """A new, unconnected connection, outside any pool."""
    return connection_class(**kwargs)


def send_commands(conn: Any, commands: Sequence[Sequence[Any]]) -> None:
    """Write ``commands`` in one write (connecting first if needed).

    ``connect()`` is called explicitly: a Sentinel-managed connection asks
    the sentinels where the primary is there, while a send on an unconnected
    connection would reconnect to the last address. No health check: the
    caller checks idle connections itself (:func:`has_unread_bytes`).
    """
    if not is_connected(conn):
        conn.connect()
    conn.send_packed_command(conn.pack_commands(commands), check_health=False)


def read_reply(conn: Any) -> Any:
    """Read one reply from ``conn``; an error reply is raised (``redis.ResponseError``)."""
    return conn.read_response()


def on_every_connect(conn: Any, callback: Callable[[Any], None]) -> None:
    """Call ``callback(conn)`` after each later connect of ``conn`` (reconnects too).

    redis-py holds a bound method weakly: it is called while its object lives.
    """
    conn.register_connect_callback(callback)


def connections_in_use(pool: ConnectionPool) -> list[Any]:
    """The connections ``pool`` has lent out right now (a snapshot)."""
    return list(pool._in_use_connections)  # type: ignore[attr-defined, unused-ignore]


# --------------------------------------------------------------- Sentinel


def primary_moved(conn: Any) -> bool:
    """True if ``conn`` is Sentinel-managed, connected, and its pool knows of another
    primary by now (the connection is still on the old one)."""
    if not isinstance(conn, SentinelManagedConnection) or not is_connected(conn):
        return False
    known = conn.connection_pool.master_address  # the pool's proxy
    return known is not None and tuple(known) != (conn.host, conn.port)


def known_primary(pool: ConnectionPool) -> tuple[str, int] | None:
    """The primary's address as a Sentinel pool last learned it, or None (not yet asked)."""
    address = pool.proxy.master_address  # type: ignore[attr-defined, unused-ignore]
    return None if address is None else (str(address[0]), int(address[1]))


def redirect_primary(pool: SentinelConnectionPool, address: tuple[str, int]) -> None:
    """Tell a Sentinel pool the primary is at ``address`` now (its next connects go there)."""
    pool.proxy.master_address = address


def sentinel_client_settings(
    pool: SentinelConnectionPool,
) -> tuple[str, bool, list[tuple[str, int]], dict[str, Any]]:
    """Of a ``Sentinel.master_for()`` client's pool: the service name, whether it is
    the primary's pool, the sentinels' addresses, and the sentinels' connection settings."""
    manager = pool.sentinel_manager
    addresses = [
        (
            str(s.connection_pool.connection_kwargs["host"]),
            int(s.connection_pool.connection_kwargs["port"]),
        )
        for s in manager.sentinels
    ]
    return str(pool.service_name), bool(pool.is_master), addresses, dict(manager.sentinel_kwargs)


# ---------------------------------------------------------------- Cluster


def cluster_client_settings(client: RedisCluster) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Of a ``RedisCluster``: every node it knows (startup nodes first), and its
    connection settings (``connection_class`` among them)."""
    manager = client.nodes_manager
    nodes = [
        (str(node.host), int(node.port))
        for node in [*manager.startup_nodes.values(), *manager.nodes_cache.values()]
    ]
    return list(dict.fromkeys(nodes)), dict(manager.connection_kwargs)


class AddressChosenAtConnect:
    """Mixin for a redis-py connection class: the address is chosen at each connect.

    Subclasses implement :meth:`choose_address`; :meth:`address_failed` is
    called when connecting to it fails, :meth:`address_connected` when it
    worked. redis-py connects in ``_connect`` (the socket part of
    ``connect()``), after which it runs the handshake and the callbacks.
    """

    host: str
    port: int

    def choose_address(self) -> tuple[str, int]:
        raise NotImplementedError

    def address_failed(self, address: tuple[str, int]) -> None:
        """Connecting to ``address`` failed (the error is raised after this)."""

    def address_connected(self, address: tuple[str, int]) -> None:
        """The socket to ``address`` is open (the handshake follows)."""

    def _connect(self) -> Any:
        address = self.choose_address()
        self.host, self.port = address
        try:
            sock = super()._connect()  # type: ignore[misc]
        except OSError:
            self.address_failed(address)
            raise
        self.address_connected(address)
        return sock


def retry_settings(retry: Retry | None) -> dict[str, Any]:
    """Connection settings that make redis-py retry as ``retry`` says, on every version.

    redis-py 5 retries only the errors listed in ``retry_on_error`` (its
    failure handler raises the others, whatever the Retry says); 6 and newer
    retry what the Retry supports. Listing the same errors gives both the
    same behaviour. (Each connection takes a deep copy of ``retry``.)

    ``None``: a failed command raises at once and nothing else happens. With
    a Retry of merely 0 retries, redis-py 6 and newer still run the failure
    handler, which reconnects a pub/sub connection (and subscribes again)
    inside the read that failed: a listener woken at stop() would reconnect
    before it could end. Handling no error leaves the reconnect to the
    caller: redis-py's pub/sub reads keep a connection whose read failed, so
    the caller disconnects it, and the next read connects and subscribes again.
    """
    if retry is None:
        return {"retry": Retry(NoBackoff(), 0, ()), "retry_on_error": []}
    return {"retry": retry, "retry_on_error": list(RETRYABLE_ERRORS)}


class RetryOnce(Retry):
    """A Retry for what must not run twice: retries once, and only if ``should_retry(error)``.

    Every failure still goes to redis-py's failure handler (which drops the
    connection, or reconnects a pub/sub one), as with no retries at all.
    """

    def __init__(self, should_retry: Callable[[Exception], bool]) -> None:
        super().__init__(NoBackoff(), 1, RETRYABLE_ERRORS)  # type: ignore[no-untyped-call, unused-ignore]
        self._should_retry = should_retry

    def call_with_retry(  # type: ignore[override, unused-ignore]
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        attempt = 1
        while True:
            try:
                return do()
            except RETRYABLE_ERRORS as error:
                if with_failure_count:
                    fail(error, attempt)
                else:
                    fail(error)
                retry = self._should_retry(error) and (is_retryable is None or is_retryable(error))
                if attempt > 1 or not retry:
                    raise
                attempt += 1


# ----------------------------------------------------------------- pub/sub


class ShardedPubSub(PubSub):
    """Shard-channel subscriptions that are told when the server drops them.

    When a Redis Cluster node stops serving the channels' slot it sends an
    ``sunsubscribe`` nobody asked for and keeps the connection. redis-py
    would forget the channels; here ``on_dropped(connection)`` is called
    instead, and the channels stay registered, so the caller can drop the
    connection and have the next read reconnect and subscribe again.
    """

    def __init__(self, pool: ConnectionPool, on_dropped: Callable[[Any], None]) -> None:
        super().__init__(pool)  # type: ignore[no-untyped-call, unused-ignore]
        self._on_dropped = on_dropped

    def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        if (
            isinstance(response, list)
            and len(response) > 1
            and response[0] in (b"sunsubscribe", "sunsubscribe")
            and response[1] in self.shard_channels
            and response[1] not in self.pending_unsubscribe_shard_channels
        ):
            if self.connection is not None:
                self._on_dropped(self.connection)
            return None
        return super().handle_message(response, ignore_subscribe_messages)  # type: ignore[no-untyped-call, unused-ignore]


def new_pubsub(client: redis.Redis, **kwargs: Any) -> PubSub:
    """``client.pubsub(**kwargs)`` (annotated in some redis-py versions, not in others)."""
    pubsub: PubSub = client.pubsub(**kwargs)
    return pubsub
