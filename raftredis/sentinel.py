"""Following a Redis primary through Sentinel: where to ask, and noticing a move.

redis-py's ``SentinelConnectionPool`` asks the sentinels where the primary
is each time one of its connections connects. :class:`PrimaryWatch` also
asks now and then, and drops the connections of its pools when the primary
has moved, which a manual failover needs (see its docstring). Used by
``connection.py``, which builds the pools.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.connection import ConnectionPool
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from . import redispy_seam as seam
from .timing import Timings

__all__ = ["FollowingPool", "PrimaryWatch", "SentinelSpec", "sentinel_manager"]

log = logging.getLogger("raftredis")


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
