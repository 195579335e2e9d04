"""Following a Redis primary through Sentinel: where to ask, and noticing a move.

redis-py's ``SentinelConnectionPool`` asks the sentinels where the primary
is each time one of its connections connects. :class:`PrimaryWatch` also
asks now and then, and drops the connections of its pools when the primary
has moved, which a manual failover needs (see its docstring).

The ``redis=`` forms that select Sentinel are parsed here too (a
``redis+sentinel://`` URL, a dict with ``sentinels``, a client of
``Sentinel.master_for()``), into a :data:`SentinelTarget`;
``connection.py`` makes the ConnectionSpec of it and builds the pools.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
from redis.connection import ConnectionPool
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from . import redispy_seam as seam
from .errors import ConfigurationError
from .redis_url import (
    SSL_KEYS,
    address_list,
    hide_password,
    parse_address,
    split_hosts_url,
    url_for_message,
)
from .timing import Timings

__all__ = [
    "SENTINEL_KEYS",
    "SENTINEL_PORT",
    "SENTINEL_SCHEME",
    "TLS_SENTINEL_SCHEME",
    "FollowingPool",
    "PrimaryWatch",
    "SentinelSpec",
    "SentinelTarget",
    "is_sentinel_url",
    "sentinel_from_dict",
    "sentinel_from_pool",
    "sentinel_from_url",
    "sentinel_manager",
]

log = logging.getLogger("raftredis")

#: The URL schemes of a primary found through Redis Sentinel, without and with TLS.
SENTINEL_SCHEME = "redis+sentinel"
TLS_SENTINEL_SCHEME = "rediss+sentinel"
_PREFIXES = (f"{SENTINEL_SCHEME}://", f"{TLS_SENTINEL_SCHEME}://")
#: Keys of a ``redis={...}`` dict that select Redis Sentinel (with ``db``,
#: ``username`` and ``password``, which are the data nodes' settings).
SENTINEL_KEYS = frozenset(
    {"sentinels", "service_name", "sentinel_username", "sentinel_password", "sentinel_ssl"}
)
#: A sentinel's port when a URL leaves it out (Redis Sentinel's default).
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelSpec:
    """Where the sentinels are, which primary to ask them for, and how to log in to them.

    ``tls`` (``ssl_*`` settings, maybe empty) reaches the sentinels over TLS;
    None: plain TCP.
    """

    addresses: tuple[tuple[str, int], ...]
    service_name: str
    username: str | None = None
    password: str | None = None
    tls: Mapping[str, Any] | None = None


#: A ``redis=`` form behind Sentinel, parsed: the data nodes' connection class
#: and settings (db, credentials, TLS), and the sentinels.
SentinelTarget = tuple[type[Any], dict[str, Any], SentinelSpec]


def sentinel_manager(sentinel: SentinelSpec, settings: Mapping[str, Any]) -> Sentinel:
    """redis-py's Sentinel client, asking with our timeouts (and the sentinels' login)."""
    sentinel_kwargs: dict[str, Any] = {
        k: v for k, v in settings.items() if k.startswith("socket_") or k == "retry"
    }
    if sentinel.username is not None:
        sentinel_kwargs["username"] = sentinel.username
    if sentinel.password is not None:
        sentinel_kwargs["password"] = sentinel.password
    if sentinel.tls is not None:
        sentinel_kwargs.update(sentinel.tls, ssl=True)
    return _Sentinels(  # type: ignore[no-untyped-call, unused-ignore]
        list(sentinel.addresses), sentinel_kwargs=sentinel_kwargs
    )


class _Sentinels(Sentinel):
    """redis-py's Sentinel client, saying why no sentinel named a primary, readably.

    redis-py's own message lists each sentinel's client repr (every setting)
    and the class of its error, not the error: a refused TLS certificate or
    a wrong password was lost in it.
    """

    def discover_master(self, service_name: str) -> Any:
        try:
            return super().discover_master(service_name)  # type: ignore[no-untyped-call, unused-ignore]
        except MasterNotFoundError:
            pass
        reasons = []
        for client in self.sentinels:
            settings = seam.connection_settings(client.connection_pool)[1]
            where = f"{settings.get('host')}:{settings.get('port')}"
            try:
                client.ping()
            except (redis.RedisError, OSError) as exc:
                reasons.append(f"{where}: {exc}")
                continue
            reasons.append(f"{where}: answers, but names no healthy primary for it")
        raise MasterNotFoundError(
            f"no sentinel named a primary for {service_name!r} ({'; '.join(reasons)})"
        ) from None


class PrimaryWatch:
    """Asks the sentinels where the primary is, now and then; on a change, drops connections.

    redis-py asks the sentinels only when a connection connects. A manual
    failover (``SENTINEL FAILOVER``) leaves the old primary up and writable
    until Sentinel reconfigures it, about 10 s later; connections open to
    it would keep writing there while new ones reach the new primary, and
    two instances could then lead, one on each server. So every checkout
    from a pool of this watch asks, at most once per ``membership_refresh``
    and on a short-lived thread of its own (a slow sentinel never delays a
    renew), and when the answer changed every connection of its pools is
    dropped, those in use too (the pub/sub listeners reconnect and resync;
    a command in flight is retried once, like after any connection error). The
    PublishPool drops its own connections by the new address on their pools.
    """

    def __init__(self, sentinel: SentinelSpec, timings: Timings, settings: Mapping[str, Any]):
        self.timings = timings
        self.manager = sentinel_manager(sentinel, settings)
        self._service = sentinel.service_name
        self._interval = timings.membership_refresh
        self._pools: weakref.WeakSet[SentinelConnectionPool] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._due = 0.0
        self._asking = False

    def add(self, pool: SentinelConnectionPool) -> None:
        with self._lock:
            self._pools.add(pool)

    def poke(self) -> None:
        """Ask the sentinels in the background if the last answer is old enough."""
        now = time.monotonic()
        with self._lock:
            if self._asking or now < self._due:
                return
            self._asking = True
            self._due = now + self._interval
        threading.Thread(target=self._ask, name="raftredis-sentinel-watch", daemon=True).start()

    def _ask(self) -> None:
        try:
            address = self.manager.discover_master(self._service)
        except (redis.RedisError, OSError):
            return  # no answer: connecting will raise, and be reported, if it matters
        finally:
            with self._lock:
                self._asking = False
        with self._lock:
            pools = list(self._pools)
        moved_from = None
        for pool in pools:
            known = seam.known_primary(pool)
            if known is not None and known != tuple(address):
                moved_from = known
                seam.redirect_primary(pool, address)
                _drop_connections(pool)
        if moved_from is not None:
            log.warning(
                "raftredis: Sentinel moved %s from %s:%s to %s:%s; reconnecting",
                self._service,
                *moved_from,
                *address,
            )


def _drop_connections(pool: ConnectionPool) -> None:
    """Close the idle connections; shut down the sockets of those in use.

    Closing a connection another thread reads from breaks redis-py's reader
    (ValueError on a closed file); a shutdown socket makes that thread's
    read fail as an ordinary connection error, and redis-py disconnects and
    reconnects (through the sentinels) by itself.
    """
    pool.disconnect(inuse_connections=False)
    for conn in seam.connections_in_use(pool):
        seam.interrupt(conn)


class FollowingPool(SentinelConnectionPool):
    """A SentinelConnectionPool whose checkouts poke a :class:`PrimaryWatch`."""

    def __init__(
        self, service_name: str, manager: Sentinel, watch: PrimaryWatch | None, **kwargs: Any
    ) -> None:
        super().__init__(service_name, manager, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        self._watch = watch

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self._watch is not None:
            self._watch.poke()
        return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]


# ------------------------------------------------------- the redis= forms


def is_sentinel_url(value: Any) -> bool:
    """Whether ``value`` is a ``redis+sentinel://`` or ``rediss+sentinel://`` URL."""
    return isinstance(value, str) and value.lower().startswith(_PREFIXES)


def sentinel_from_url(url: str) -> SentinelTarget:
    """``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``.

    The credentials are the data nodes'; sentinel credentials go in the dict
    form (``sentinel_username``, ``sentinel_password``). A host without a
    port means 26379; an IPv6 address goes in brackets. ``rediss+sentinel://``
    reaches the sentinels and the data nodes over TLS (certificates in the
    dict form).
    """
    scheme, netloc, path, kwargs = split_hosts_url(url, "{'url': ..., 'sentinel_password': ...}")
    tls = scheme == TLS_SENTINEL_SCHEME
    addresses = tuple(parse_address(part, url, SENTINEL_PORT) for part in netloc.split(","))
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
    return _managed_class(tls), kwargs, sentinel


def sentinel_from_dict(settings: dict[str, Any]) -> SentinelTarget:
    """The dict form behind Sentinel: ``sentinels`` and ``service_name`` (or a URL).

    ``settings`` is consumed.
    """
    refused = sorted(k for k in settings if k in ("host", "port", "unix_socket_path"))
    if refused:
        raise ConfigurationError(
            f"{', '.join(refused)} cannot be combined with Sentinel in redis=...: the "
            "sentinels say where the primary is"
        )
    url = settings.pop("url", None)
    if url is not None and not is_sentinel_url(url):
        raise ConfigurationError(
            f"with sentinels, url must be a {SENTINEL_SCHEME}:// or {TLS_SENTINEL_SCHEME}:// "
            f"URL, got {url_for_message(url)}"
        )
    url_class, kwargs, old = sentinel_from_url(url) if url is not None else (None, {}, None)
    if "sentinels" in settings:
        addresses = address_list(settings.pop("sentinels"), "sentinels", SENTINEL_PORT)
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
    url_tls = url_class is not None and issubclass(url_class, redis.SSLConnection)
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
    return _managed_class(data_tls), kwargs, sentinel


def sentinel_from_pool(pool: SentinelConnectionPool, taken: dict[str, Any]) -> SentinelTarget:
    """A client from ``Sentinel.master_for()``: the same sentinels, service and credentials.

    ``taken`` are the settings taken from the client's connections.
    """
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
    tls = issubclass(seam.connection_settings(pool)[0], redis.SSLConnection)
    if not tls:
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("ssl_")}
    return _managed_class(tls), kwargs, sentinel


def _managed_class(tls: bool) -> type[Any]:
    """redis-py's connection class that asks the sentinels where the primary is."""
    return SentinelManagedSSLConnection if tls else SentinelManagedConnection
