"""Building raftredis' own Redis clients from what the user passed.

redis-py's defaults are wrong for a lease: several retries with long socket
timeouts can block one renew for many seconds against a paused server. Every
client built here has short timeouts (from the timings), at most one retry
(scripts are safe to run twice), none for anything that publishes (a retried
PUBLISH could deliver twice), binary replies (input is decoded, and checked,
by raftredis), RESP2, and TCP keepalive so a dead link is noticed.

:func:`connection_spec` tells the forms of ``redis=`` apart and parses those
of one Redis server; each topology parses its own forms, next to the code
that runs it (the small parsers they share are in ``redis_url.py``):

* Behind Redis Sentinel (``redis={"sentinels": [...], "service_name": ...}``
  or a ``redis+sentinel://`` URL) the pools are redis-py's
  ``SentinelConnectionPool``: every new connection asks a sentinel where the
  primary is, and a connection that finds the old primary demoted (a
  READONLY reply) is dropped, so each reconnect reaches the current primary
  (``sentinel.py`` has the rest).
* In a Redis Cluster (``redis={"startup_nodes": [...]}``, a
  ``redis+cluster://`` URL or a ``redis.cluster.RedisCluster``) a kind lives
  in one hash slot, so the pools are ordinary pools whose connections follow
  the primary of that slot (``cluster.py``); :meth:`ConnectionSpec.pool`
  then needs the kind's key.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import ConnectionPool, UnixDomainSocketConnection, parse_url
from redis.retry import Retry
from redis.sentinel import SentinelConnectionPool

from . import redispy_seam as seam
from .cluster import (
    CLUSTER_KEYS,
    CLUSTER_SCHEME,
    TLS_CLUSTER_SCHEME,
    ClusterSpec,
    ClusterTarget,
    MovedRetry,
    RoutedPool,
    SlotRoute,
    cluster_from_client,
    cluster_from_dict,
    cluster_from_url,
    is_cluster_url,
    slot_connection_class,
)
from .errors import ConfigurationError
from .redis_url import CLIENT_SETTINGS, SSL_KEYS, checked_port, hide_password, with_tls
from .sentinel import (
    SENTINEL_KEYS,
    SENTINEL_SCHEME,
    TLS_SENTINEL_SCHEME,
    FollowingPool,
    PrimaryWatch,
    SentinelSpec,
    is_sentinel_url,
    sentinel_from_dict,
    sentinel_from_pool,
    sentinel_from_url,
    sentinel_manager,
)
from .timing import Timings

__all__ = ["ConnectionSpec", "connection_spec", "describe", "hide_password"]

log = logging.getLogger("raftredis")

#: Keys accepted in a ``redis={...}`` dict of one Redis server (and every
#: ``ssl_*`` key of :data:`~raftredis.redis_url.SSL_KEYS`).
DICT_KEYS = frozenset(
    {"url", "host", "port", "db", "password", "username", "unix_socket_path", "ssl"}
)
_OURS = ("socket_timeout", "socket_connect_timeout", "retry", "retry_on_error", "decode_responses")


class ConnectionSpec:
    """Where Redis is and how to connect to it, independent of any pool.

    With ``sentinel``, ``kwargs`` are the settings of the data nodes (db,
    credentials) and the primary's address comes from the sentinels.
    """

    def __init__(
        self,
        connection_class: type[Any],
        kwargs: Mapping[str, Any],
        sentinel: SentinelSpec | None = None,
        cluster: ClusterSpec | None = None,
    ) -> None:
        self.connection_class = connection_class
        self.kwargs = {k: v for k, v in kwargs.items() if k not in _OURS}
        self.sentinel = sentinel
        self.cluster = cluster
        self._watch: PrimaryWatch | None = None
        self._routes: dict[str, SlotRoute] = {}
        self._routes_lock = threading.Lock()

    @property
    def is_unix(self) -> bool:
        return issubclass(self.connection_class, UnixDomainSocketConnection)

    def pool(
        self, watch: PrimaryWatch | None = None, *, route_key: str | None = None, **settings: Any
    ) -> ConnectionPool:
        """A new pool for this spec; ``settings`` (timeouts, retry...) go to every connection.

        In a Redis Cluster, ``route_key`` (any key of the kind) is required:
        the connections follow the primary of its hash slot, through one
        :class:`~raftredis.cluster.SlotRoute` per slot shared by every pool of
        this spec.

        Behind Sentinel it is a ``SentinelConnectionPool`` whose connections
        (``SentinelManagedConnection``) ask the sentinels for the primary on
        every connect. Its ``connection_kwargs`` carry a proxy of the pool
        (``connection_pool``), so a connection made directly from them (as
        the PublishPool does) follows the primary too. The sentinels are asked
        with the same socket timeouts. With ``watch``, the pool also has its
        connections dropped when the watch sees another primary.
        """
        kwargs: dict[str, Any] = {**self.kwargs, **settings}
        if self.cluster is not None:
            if route_key is None:
                raise ConfigurationError(
                    "a Redis Cluster connection follows the primary of one kind's hash slot: "
                    "pass route_key (a key of the kind)"
                )
            return RoutedPool(  # type: ignore[no-untyped-call, unused-ignore]
                connection_class=slot_connection_class(self.connection_class),
                route=self._route(route_key, kwargs),
                **kwargs,
            )
        sentinel = self.sentinel
        if sentinel is None:
            return ConnectionPool(connection_class=self.connection_class, **kwargs)
        manager = watch.manager if watch is not None else sentinel_manager(sentinel, settings)
        pool = FollowingPool(
            sentinel.service_name,
            manager,
            watch,
            connection_class=self.connection_class,
            **kwargs,
        )
        if watch is not None:
            watch.add(pool)
        return pool

    def _route(self, route_key: str, kwargs: Mapping[str, Any]) -> SlotRoute:
        assert self.cluster is not None
        with self._routes_lock:
            route = self._routes.get(route_key)
            if route is None:
                route = SlotRoute(
                    self.cluster.startup_nodes, route_key, kwargs, self.connection_class
                )
                self._routes[route_key] = route
            return route

    def client(
        self,
        timings: Timings,
        *,
        retries: int | None,
        route_key: str | None = None,
        read_timeout: float | None = None,
    ) -> redis.Redis:
        """A new client with its own pool, timeouts from ``timings``, ``retries`` retries.

        In a Redis Cluster a MOVED reply is retried once even with
        ``retries=0``: the command did not run, so it cannot run twice.
        ``retries=None`` is for pub/sub listeners: a failed read raises and
        redis-py does not reconnect in it (the listener's next read does).
        ``read_timeout`` replaces ``socket_timeout`` for replies (not for the
        connect): for a connection that blocks in a read on purpose.
        """
        retry: Retry | None = None
        if retries is not None:
            retry = Retry(NoBackoff(), retries)
            if self.cluster is not None and retries == 0:
                retry = MovedRetry()
        kwargs: dict[str, Any] = dict(self.kwargs)
        kwargs.update(seam.retry_settings(retry))
        kwargs.update(
            socket_timeout=timings.socket_timeout if read_timeout is None else read_timeout,
            socket_connect_timeout=timings.socket_timeout,
            decode_responses=False,
            protocol=2,
            health_check_interval=0,
        )
        if not self.is_unix:
            kwargs.update(socket_keepalive=True, socket_keepalive_options=_keepalive(timings))
        watch = None
        if self.sentinel is not None:
            watch = self._watch
            if watch is None or watch.timings != timings:
                watch = self._watch = PrimaryWatch(self.sentinel, timings, kwargs)
        client: redis.Redis = redis.Redis(
            connection_pool=self.pool(watch, route_key=route_key, **kwargs)
        )
        return client

    def __repr__(self) -> str:
        return f"ConnectionSpec({describe(self)})"


def _keepalive(timings: Timings) -> dict[int, int]:
    """Probe an idle link every few seconds; give up on an unacknowledged send."""
    idle = max(1, int(timings.lease_ttl))
    options: dict[int, int] = {}
    for name, value in (
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", idle),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", int(timings.lease_ttl * 3000)),
    ):
        constant = getattr(socket, name, None)
        if constant is not None:
            options[constant] = value
    return options


def connection_spec(value: Any) -> ConnectionSpec:
    """Accept a ``redis.Redis`` (or ``RedisCluster``), a URL string, a dict, or None.

    None means ``localhost:6379``; anything else raises ConfigurationError.
    """
    if value is None:
        return ConnectionSpec(redis.Connection, {"host": "localhost", "port": 6379})
    if isinstance(value, RedisCluster):
        return _in_cluster(cluster_from_client(value))
    if isinstance(value, redis.Redis):
        return _from_client(value)
    if isinstance(value, str):
        return _from_url(value)
    if isinstance(value, Mapping):
        return _from_dict(value)
    raise ConfigurationError(
        "redis= must be a dict (host/port/db/password/username/url), a URL string "
        f"such as 'redis://localhost:6379/0', or a redis.Redis; got {type(value).__name__}"
    )


def _in_cluster(target: ClusterTarget) -> ConnectionSpec:
    connection_class, kwargs, cluster = target
    return ConnectionSpec(connection_class, kwargs, cluster=cluster)


def _from_client(client: redis.Redis) -> ConnectionSpec:
    """A user's ``redis.Redis``: where it connects and its login, none of its behaviour."""
    pool = client.connection_pool
    connection_class, settings = seam.connection_settings(pool)
    taken = {k: v for k, v in settings.items() if k in CLIENT_SETTINGS or k.startswith("ssl_")}
    if isinstance(pool, SentinelConnectionPool):
        return ConnectionSpec(*sentinel_from_pool(pool, taken))
    return ConnectionSpec(connection_class, taken)


def _from_url(url: Any) -> ConnectionSpec:
    if is_sentinel_url(url):
        return ConnectionSpec(*sentinel_from_url(url))
    if is_cluster_url(url):
        return _in_cluster(cluster_from_url(url))
    if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            "redis URL must start with redis://, rediss://, unix://, "
            f"{SENTINEL_SCHEME}://, {CLUSTER_SCHEME}:// or {TLS_CLUSTER_SCHEME}://, got {url!r}"
        )
    try:
        kwargs = parse_url(url)
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse redis URL {url!r}: {exc}") from exc
    conn_class = kwargs.pop("connection_class", redis.Connection)
    return ConnectionSpec(conn_class, kwargs)


def _from_dict(value: Mapping[Any, Any]) -> ConnectionSpec:
    """A ``redis={...}`` dict: its keys (or its url) say which topology parses it."""
    unknown = sorted(
        str(k) for k in set(value) - DICT_KEYS - SSL_KEYS - SENTINEL_KEYS - CLUSTER_KEYS
    )
    if unknown:
        raise ConfigurationError(
            f"unknown key(s) {', '.join(unknown)} in redis=...; accepted keys: "
            f"{', '.join(sorted(DICT_KEYS))} and, with TLS, ssl_* settings such as "
            "ssl_ca_certs, ssl_certfile, ssl_keyfile; behind Sentinel, "
            f"{', '.join(sorted(SENTINEL_KEYS))}; in a Redis Cluster, startup_nodes "
            "(or pass a URL string, a redis.Redis or a RedisCluster)"
        )
    settings = dict(value)
    if is_cluster_url(settings.get("url")) or CLUSTER_KEYS & settings.keys():
        return _in_cluster(cluster_from_dict(settings))
    if is_sentinel_url(settings.get("url")) or SENTINEL_KEYS & settings.keys():
        return ConnectionSpec(*sentinel_from_dict(settings))
    return _from_server_dict(settings)


def _from_server_dict(settings: dict[str, Any]) -> ConnectionSpec:
    """The dict form of one Redis server: host and port, or a socket path, or a URL."""
    spec = _from_url(settings.pop("url")) if "url" in settings else None
    kwargs: dict[str, Any] = dict(spec.kwargs) if spec else {}
    conn_class: type[Any] = spec.connection_class if spec else redis.Connection
    if "unix_socket_path" in settings:
        conn_class = UnixDomainSocketConnection
        kwargs["path"] = settings.pop("unix_socket_path")
        kwargs.pop("host", None)
        kwargs.pop("port", None)
    conn_class = with_tls(settings, conn_class, "rediss://")
    if "port" in settings:
        checked_port(settings["port"])
    kwargs.update(settings)
    if conn_class is not UnixDomainSocketConnection:
        kwargs.setdefault("host", "localhost")
        kwargs.setdefault("port", 6379)
    return ConnectionSpec(conn_class, kwargs)


def describe(spec: ConnectionSpec) -> str:
    """Where the spec points, without the password (for messages and logs)."""
    kw = spec.kwargs
    if spec.cluster is not None:
        nodes = ",".join(
            f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in spec.cluster.startup_nodes
        )
        secure = issubclass(spec.connection_class, redis.SSLConnection)
        return f"{TLS_CLUSTER_SCHEME if secure else CLUSTER_SCHEME}://{nodes}/"
    if spec.sentinel is not None:
        hosts = ",".join(
            f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in spec.sentinel.addresses
        )
        secure = issubclass(spec.connection_class, redis.SSLConnection)
        scheme = TLS_SENTINEL_SCHEME if secure else SENTINEL_SCHEME
        return f"{scheme}://{hosts}/{spec.sentinel.service_name}/{kw.get('db', 0)}"
    if spec.is_unix:
        return f"unix://{kw.get('path')}?db={kw.get('db', 0)}"
    scheme = "rediss" if issubclass(spec.connection_class, redis.SSLConnection) else "redis"
    return f"{scheme}://{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}"
