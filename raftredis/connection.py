"""Building raftredis' own Redis clients from what the user passed.

redis-py's defaults are wrong for a lease: several retries with long socket
timeouts can block one renew for many seconds against a paused server. Every
client built here has short timeouts (from the timings), at most one retry
(scripts are safe to run twice), none for anything that publishes (a retried
PUBLISH could deliver twice), binary replies (input is decoded, and checked,
by raftredis), RESP2, and TCP keepalive so a dead link is noticed.

Behind Redis Sentinel (``redis={"sentinels": [...], "service_name": ...}`` or a
``redis+sentinel://`` URL) the pools are redis-py's ``SentinelConnectionPool``:
every new connection asks a sentinel where the primary is, and a connection
that finds the old primary demoted (a READONLY reply) is dropped, so each
reconnect reaches the current primary (``sentinel.py`` has the rest).

In a Redis Cluster (``redis={"startup_nodes": [...]}``, a ``redis+cluster://``
URL or a ``redis.cluster.RedisCluster``) a kind lives in one hash slot, so the
pools are ordinary pools whose connections follow the primary of that slot
(``cluster.py``); :meth:`ConnectionSpec.pool` then needs the kind's key.
"""

from __future__ import annotations

import inspect
import logging
import socket
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import ConnectionPool, UnixDomainSocketConnection, parse_url
from redis.retry import Retry
from redis.sentinel import (
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from . import redispy_seam as seam
from .cluster import ClusterSpec, MovedRetry, RoutedPool, SlotRoute, slot_connection_class
from .errors import ConfigurationError
from .sentinel import FollowingPool, PrimaryWatch, SentinelSpec, sentinel_manager
from .timing import Timings

__all__ = ["ConnectionSpec", "connection_spec", "describe", "hide_password"]

log = logging.getLogger("raftredis")

#: The URL schemes of a primary found through Redis Sentinel, without and with TLS.
SENTINEL_SCHEME = "redis+sentinel"
TLS_SENTINEL_SCHEME = "rediss+sentinel"
_SENTINEL_PREFIXES = (f"{SENTINEL_SCHEME}://", f"{TLS_SENTINEL_SCHEME}://")
#: The URL schemes of a Redis Cluster (its nodes, comma-separated), without and with TLS.
CLUSTER_SCHEME = "redis+cluster"
TLS_CLUSTER_SCHEME = "rediss+cluster"
_CLUSTER_PREFIXES = (f"{CLUSTER_SCHEME}://", f"{TLS_CLUSTER_SCHEME}://")
#: The key of a ``redis={...}`` dict that selects Redis Cluster.
CLUSTER_KEYS = frozenset({"startup_nodes"})
#: A sentinel's port when a URL leaves it out (Redis Sentinel's default).
SENTINEL_PORT = 26379

#: Keys accepted in a ``redis={...}`` dict (and every ``ssl_*`` key of :data:`SSL_KEYS`).
DICT_KEYS = frozenset(
    {"url", "host", "port", "db", "password", "username", "unix_socket_path", "ssl"}
)
#: Keys of a ``redis={...}`` dict that select Redis Sentinel (with ``db``,
#: ``username`` and ``password``, which are the data nodes' settings).
SENTINEL_KEYS = frozenset(
    {"sentinels", "service_name", "sentinel_username", "sentinel_password", "sentinel_ssl"}
)
#: The TLS settings (``ssl_ca_certs``, ``ssl_certfile``...) that the installed
#: redis-py's SSLConnection takes; a dict may give them along with TLS.
SSL_KEYS = frozenset(
    name
    for name in inspect.signature(redis.SSLConnection.__init__).parameters
    if name.startswith("ssl_")
)
_OURS = ("socket_timeout", "socket_connect_timeout", "retry", "retry_on_error", "decode_responses")
#: What is taken from a user's redis.Redis: where and who, nothing about behaviour
#: (redis-py 8 also keeps e.g. RESP3-only maintenance-notification settings there).
_FROM_CLIENT = frozenset(
    {
        "host",
        "port",
        "db",
        "username",
        "password",
        "credential_provider",
        "path",
        "client_name",
        "encoding",
        "encoding_errors",
    }
)


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
        self, timings: Timings, *, retries: int | None, route_key: str | None = None
    ) -> redis.Redis:
        """A new client with its own pool, timeouts from ``timings``, ``retries`` retries.

        In a Redis Cluster a MOVED reply is retried once even with
        ``retries=0``: the command did not run, so it cannot run twice.
        ``retries=None`` is for pub/sub listeners: a failed read raises and
        redis-py does not reconnect in it (the listener's next read does).
        """
        retry: Retry | None = None
        if retries is not None:
            retry = Retry(NoBackoff(), retries)
            if self.cluster is not None and retries == 0:
                retry = MovedRetry()
        kwargs: dict[str, Any] = dict(self.kwargs)
        kwargs.update(seam.retry_settings(retry))
        kwargs.update(
            socket_timeout=timings.socket_timeout,
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
    """Accept a ``redis.Redis``, a URL string, or a dict; raise ConfigurationError otherwise."""
    if isinstance(value, RedisCluster):
        return _from_cluster_client(value)
    if isinstance(value, redis.Redis):
        pool = value.connection_pool
        connection_class, settings = seam.connection_settings(pool)
        taken = {k: v for k, v in settings.items() if k in _FROM_CLIENT or k.startswith("ssl_")}
        if isinstance(pool, SentinelConnectionPool):
            return _from_sentinel_pool(pool, taken)
        return ConnectionSpec(connection_class, taken)
    if value is None:
        return ConnectionSpec(redis.Connection, {"host": "localhost", "port": 6379})
    if isinstance(value, str):
        return _from_url(value)
    if isinstance(value, Mapping):
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
        url_is_cluster = isinstance(settings.get("url"), str) and settings[
            "url"
        ].lower().startswith(_CLUSTER_PREFIXES)
        if url_is_cluster or CLUSTER_KEYS & set(settings):
            return _cluster_from_dict(settings)
        url_is_sentinel = isinstance(settings.get("url"), str) and settings[
            "url"
        ].lower().startswith(_SENTINEL_PREFIXES)
        if url_is_sentinel or SENTINEL_KEYS & set(settings):
            return _sentinel_from_dict(settings)
        spec = _from_url(settings.pop("url")) if "url" in settings else None
        kwargs: dict[str, Any] = dict(spec.kwargs) if spec else {}
        conn_class: type[Any] = spec.connection_class if spec else redis.Connection
        if "unix_socket_path" in settings:
            conn_class = UnixDomainSocketConnection
            kwargs["path"] = settings.pop("unix_socket_path")
            kwargs.pop("host", None)
            kwargs.pop("port", None)
        conn_class = _with_tls(settings, conn_class, "rediss://")
        if "port" in settings:
            port = settings["port"]
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ConfigurationError(f"redis port must be an int from 1 to 65535, got {port!r}")
        kwargs.update(settings)
        if conn_class is not UnixDomainSocketConnection:
            kwargs.setdefault("host", "localhost")
            kwargs.setdefault("port", 6379)
        return ConnectionSpec(conn_class, kwargs)
    raise ConfigurationError(
        "redis= must be a dict (host/port/db/password/username/url), a URL string "
        f"such as 'redis://localhost:6379/0', or a redis.Redis; got {type(value).__name__}"
    )


def _with_tls(settings: dict[str, Any], connection_class: type[Any], scheme: str) -> type[Any]:
    """The connection class once ``settings`` had their say (``ssl`` is taken out of them).

    ``"ssl": True`` selects TLS; ``ssl_*`` settings without TLS are refused.
    """
    if settings.pop("ssl", False):
        connection_class = redis.SSLConnection
    tls_settings = sorted(k for k in settings if k in SSL_KEYS)
    if tls_settings and not issubclass(connection_class, redis.SSLConnection):
        raise ConfigurationError(
            f'{", ".join(tls_settings)} in redis=... need TLS: add "ssl": True '
            f"(or use a {scheme} url)"
        )
    return connection_class


def _from_url(url: Any) -> ConnectionSpec:
    if isinstance(url, str) and url.lower().startswith(_SENTINEL_PREFIXES):
        return _from_sentinel_url(url)
    if isinstance(url, str) and url.lower().startswith(_CLUSTER_PREFIXES):
        return _from_cluster_url(url)
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


# ----------------------------------------------------------------- Sentinel


def _from_sentinel_url(url: str) -> ConnectionSpec:
    """``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``.

    The credentials are the data nodes'; sentinel credentials go in the dict
    form (``sentinel_username``, ``sentinel_password``). A host without a
    port means 26379; an IPv6 address goes in brackets. ``rediss+sentinel://``
    reaches the sentinels and the data nodes over TLS (certificates in the
    dict form).
    """
    scheme, netloc, path, kwargs = _split_hosts_url(url, "{'url': ..., 'sentinel_password': ...}")
    tls = scheme == TLS_SENTINEL_SCHEME
    addresses = tuple(_address(part, url, SENTINEL_PORT) for part in netloc.split(","))
    parts = path.split("/") if path else []
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not 1 <= len(parts) <= 2 or not parts[0]:
        raise ConfigurationError(
            f"cannot parse redis URL {hide_password(url)!r}: expected "
            f"{SENTINEL_SCHEME}://[user:password@]host:port[,host:port...]/service_name[/db]"
        )
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ConfigurationError(f"the db in {hide_password(url)!r} must be a number")
        kwargs["db"] = int(parts[1])
    sentinel = SentinelSpec(addresses, unquote(parts[0]), tls={} if tls else None)
    connection_class = SentinelManagedSSLConnection if tls else SentinelManagedConnection
    return ConnectionSpec(connection_class, kwargs, sentinel)


def _address(text: str, url: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` or ``[IPv6][:port]`` from a URL with several addresses."""
    host, port_text = text, ""
    if text.startswith("["):  # [IPv6]:port
        host, _, tail = text[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else tail
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if not host or (port_text and not port_text.isdigit()):
        raise ConfigurationError(
            f"cannot parse the address {text!r} in {hide_password(url)!r}: use host:port"
        )
    port = int(port_text) if port_text else default_port
    return host, _checked_port(port)


def _split_hosts_url(url: str, example: str) -> tuple[str, str, str, dict[str, Any]]:
    """A Sentinel or Cluster URL (several hosts, no query): scheme, hosts, path, login.

    ``example`` shows the dict form, where the settings a URL cannot take go.
    """
    scheme, _, rest = url.partition("://")
    if "?" in rest or "#" in rest:
        raise ConfigurationError(
            f"a {scheme.lower()}:// URL takes no query or fragment; give other settings "
            f"in the dict form, e.g. {example}"
        )
    netloc, _, path = rest.partition("/")
    netloc, kwargs = _credentials(netloc)
    return scheme.lower(), netloc, path, kwargs


def _credentials(netloc: str) -> tuple[str, dict[str, Any]]:
    """Split ``[user][:password]@`` off a URL's netloc; the rest, and the login kwargs."""
    kwargs: dict[str, Any] = {}
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        user, has_password, password = credentials.partition(":")
        if user:
            kwargs["username"] = unquote(user)
        if has_password:
            kwargs["password"] = unquote(password)
    return netloc, kwargs


def _checked_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigurationError(f"redis port must be an int from 1 to 65535, got {port!r}")
    return port


def hide_password(url: str) -> str:
    """``url`` with the password after ``user:`` replaced by ``***``."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{tail}"


def _sentinel_from_dict(settings: dict[str, Any]) -> ConnectionSpec:
    """The dict form behind Sentinel: ``sentinels`` and ``service_name`` (or a URL)."""
    refused = sorted(k for k in settings if k in ("host", "port", "unix_socket_path"))
    if refused:
        raise ConfigurationError(
            f"{', '.join(refused)} cannot be combined with Sentinel in redis=...: the "
            "sentinels say where the primary is"
        )
    base = _from_url(settings.pop("url")) if "url" in settings else None
    if base is not None and base.sentinel is None:
        raise ConfigurationError(
            f"with sentinels, url must be a {SENTINEL_SCHEME}:// or {TLS_SENTINEL_SCHEME}:// "
            f"URL, got {describe(base)!r}"
        )
    kwargs: dict[str, Any] = dict(base.kwargs) if base else {}
    old = base.sentinel if base else None
    if "sentinels" in settings:
        addresses = _address_list(settings.pop("sentinels"), "sentinels", SENTINEL_PORT)
    elif old is not None:
        addresses = old.addresses
    else:
        raise ConfigurationError(
            "redis=... behind Sentinel needs sentinels, a list of (host, port) pairs"
        )
    service = settings.pop("service_name", old.service_name if old else None)
    if not isinstance(service, str) or not service:
        raise ConfigurationError(
            f"redis=... behind Sentinel needs service_name, the name the sentinels monitor "
            f"the primary by (e.g. 'mymaster'), got {service!r}"
        )
    # TLS: "ssl" for the data nodes (default: as the URL says), "sentinel_ssl"
    # for the sentinels (default: as the data nodes); both with the ssl_* settings.
    url_tls = base is not None and issubclass(base.connection_class, redis.SSLConnection)
    data_tls = bool(settings.pop("ssl", url_tls))
    sentinel_tls = bool(settings.pop("sentinel_ssl", data_tls))
    tls_settings = {k: settings.pop(k) for k in sorted(settings) if k in SSL_KEYS}
    if tls_settings and not (data_tls or sentinel_tls):
        raise ConfigurationError(
            f'{", ".join(tls_settings)} in redis=... need TLS: add "ssl": True (the primary '
            f'and the sentinels) or "sentinel_ssl": True (or use a {TLS_SENTINEL_SCHEME}:// url)'
        )
    sentinel = SentinelSpec(
        addresses,
        service,
        username=settings.pop("sentinel_username", None),
        password=settings.pop("sentinel_password", None),
        tls=tls_settings if sentinel_tls else None,
    )
    kwargs.update(settings)  # db, username, password: the data nodes'
    if data_tls:
        kwargs.update(tls_settings)
    connection_class = SentinelManagedSSLConnection if data_tls else SentinelManagedConnection
    return ConnectionSpec(connection_class, kwargs, sentinel)


def _from_sentinel_pool(pool: SentinelConnectionPool, taken: dict[str, Any]) -> ConnectionSpec:
    """A client from ``Sentinel.master_for()``: the same sentinels, service and credentials."""
    service_name, is_primary, addresses, login = seam.sentinel_client_settings(pool)
    if not is_primary:
        raise ConfigurationError(
            "redis= is a client of a Sentinel replica (slave_for): raftredis needs the "
            "primary; pass Sentinel.master_for(...) instead"
        )
    sentinel_tls = {k: v for k, v in login.items() if k.startswith("ssl_")}
    sentinel = SentinelSpec(
        tuple(addresses),
        service_name,
        login.get("username"),
        login.get("password"),
        tls=sentinel_tls if login.get("ssl") else None,
    )
    kwargs = {k: v for k, v in taken.items() if k not in ("host", "port")}
    if issubclass(seam.connection_settings(pool)[0], redis.SSLConnection):
        return ConnectionSpec(SentinelManagedSSLConnection, kwargs, sentinel)
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("ssl_")}
    return ConnectionSpec(SentinelManagedConnection, kwargs, sentinel)


# ------------------------------------------------------------ Redis Cluster


def _from_cluster_url(url: str) -> ConnectionSpec:
    """``redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]``.

    Any node will do, primary or replica; more are learned from the cluster.
    A host without a port means 6379. A cluster has only database 0.
    ``rediss+cluster://`` is the same with TLS (certificates in the dict form).
    """
    scheme, netloc, path, kwargs = _split_hosts_url(url, "{'url': ..., 'password': ...}")
    tls = scheme == TLS_CLUSTER_SCHEME
    if path.strip("/") not in ("", "0"):
        raise ConfigurationError(
            f"a Redis Cluster has only database 0, but {hide_password(url)!r} names "
            f"{path.strip('/')!r}: use {CLUSTER_SCHEME}://host:port[,host:port...]"
        )
    nodes = tuple(_address(part, url, 6379) for part in netloc.split(","))
    connection_class = redis.SSLConnection if tls else redis.Connection
    return ConnectionSpec(connection_class, kwargs, cluster=ClusterSpec(nodes))


def _cluster_from_dict(settings: dict[str, Any]) -> ConnectionSpec:
    """The dict form of a Redis Cluster: ``startup_nodes`` (or a URL), and the login."""
    refused = sorted(
        k for k in settings if k in ("host", "port", "unix_socket_path") or k in SENTINEL_KEYS
    )
    if refused:
        raise ConfigurationError(
            f"{', '.join(refused)} cannot be combined with startup_nodes (Redis Cluster) in "
            "redis=...: list every address in startup_nodes"
        )
    if settings.get("db", 0) != 0:
        raise ConfigurationError(f"a Redis Cluster has only database 0, got db={settings['db']!r}")
    settings.pop("db", None)
    base = _from_url(settings.pop("url")) if "url" in settings else None
    if base is not None and base.cluster is None:
        raise ConfigurationError(
            f"with startup_nodes, url must be a {CLUSTER_SCHEME}:// URL, got {describe(base)!r}"
        )
    kwargs: dict[str, Any] = dict(base.kwargs) if base else {}
    if "startup_nodes" in settings:
        nodes = _address_list(settings.pop("startup_nodes"), "startup_nodes", 6379)
    else:
        assert base is not None and base.cluster is not None
        nodes = base.cluster.startup_nodes
    connection_class = _with_tls(
        settings, base.connection_class if base else redis.Connection, f"{TLS_CLUSTER_SCHEME}://"
    )
    kwargs.update(settings)  # username, password, ssl_*
    return ConnectionSpec(connection_class, kwargs, cluster=ClusterSpec(nodes))


def _from_cluster_client(client: RedisCluster) -> ConnectionSpec:
    """A ``redis.cluster.RedisCluster``: its nodes and its login, none of its behaviour."""
    nodes, settings = seam.cluster_client_settings(client)
    tls = issubclass(settings.get("connection_class", redis.Connection), redis.SSLConnection)
    taken = {
        k: v
        for k, v in settings.items()
        if (k in _FROM_CLIENT or k.startswith("ssl_")) and k not in ("host", "port", "db", "path")
    }
    return ConnectionSpec(
        redis.SSLConnection if tls else redis.Connection, taken, cluster=ClusterSpec(tuple(nodes))
    )


def _address_list(value: Any, name: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """A non-empty list of ``(host, port)`` pairs (``"host:port"`` strings are taken too)."""
    pairs: list[tuple[str, int]] = []
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, str) and item:
                pairs.append(_address(item, item, default_port))
            elif (
                isinstance(item, (list, tuple))
                and len(item) == 2
                and isinstance(item[0], str)
                and item[0]
            ):
                pairs.append((item[0], _checked_port(item[1])))
            else:
                pairs = []
                break
    if not pairs:
        raise ConfigurationError(
            f"{name} must be a non-empty list of (host, port) pairs, such as "
            f"[('10.0.0.1', {default_port}), ('10.0.0.2', {default_port})], got {value!r}"
        )
    return tuple(pairs)


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
