"""Following the Redis Cluster primary that serves one kind.

Every key and channel of a kind carries the ``{kind}`` hash tag, so a whole
kind lives in one hash slot, served by one primary at a time. raftredis
therefore talks to that primary as to a single Redis, through redis-py's
ordinary client, pools and pub/sub, and only has to know which node it is.
A :class:`SlotRoute` knows, and every connection of the kind follows it:

* a connection that connects while no owner is known asks the cluster
  (``CLUSTER SLOTS`` on the nodes it knows, one after the other, and then
  the primary named, whose own map is the first to change in a failover);
* a ``MOVED`` reply names the new owner: the route takes it and the reply
  is raised as :class:`SlotMoved`, a connection error, so redis-py drops the
  connection and retries the command once, on the new owner. A command that
  got MOVED did not run, so the retry is safe even for a publish;
* a connection error, a timeout or a ``CLUSTERDOWN`` reply makes the route
  forget that owner, so the next connect asks again: after a failover that
  finds the promoted replica;
* each connection remembers the route's generation when it connected, and
  is reconnected at checkout if the route has changed since: one
  connection's MOVED moves the others before they send anything.

Sharded pub/sub (SPUBLISH, SSUBSCRIBE; Redis 7.0 and newer) keeps a kind's
messages on its own shard; the channels carry the hash tag too.

The ``redis=`` forms that select a Redis Cluster are parsed here too (a
``redis+cluster://`` URL, a dict with ``startup_nodes``, a ``RedisCluster``),
into a :data:`ClusterTarget`; ``connection.py`` makes the ConnectionSpec of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.connection import ConnectionPool
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, MovedError

from .errors import ConfigurationError
from .redis_url import (
    CLIENT_SETTINGS,
    address_list,
    hide_password,
    parse_address,
    split_hosts_url,
    url_for_message,
    with_tls,
)
from .redispy_seam import AddressChosenAtConnect, RetryOnce, cluster_client_settings, is_connected
from .sentinel import SENTINEL_KEYS

__all__ = [
    "CLUSTER_KEYS",
    "CLUSTER_SCHEME",
    "TLS_CLUSTER_SCHEME",
    "ClusterSpec",
    "ClusterTarget",
    "MovedRetry",
    "RoutedPool",
    "SlotMoved",
    "SlotRoute",
    "cluster_from_client",
    "cluster_from_dict",
    "cluster_from_url",
    "is_cluster_url",
    "slot_connection_class",
]

log = logging.getLogger("raftredis")


#: At most this many node addresses are remembered for asking where a slot is.
MAX_KNOWN_NODES = 64

#: The URL schemes of a Redis Cluster (its nodes, comma-separated), without and with TLS.
CLUSTER_SCHEME = "redis+cluster"
TLS_CLUSTER_SCHEME = "rediss+cluster"
_PREFIXES = (f"{CLUSTER_SCHEME}://", f"{TLS_CLUSTER_SCHEME}://")
#: The key of a ``redis={...}`` dict that selects Redis Cluster.
CLUSTER_KEYS = frozenset({"startup_nodes"})
#: A node's port when a URL or ``startup_nodes`` leaves it out.
NODE_PORT = 6379


@dataclass(frozen=True)
class ClusterSpec:
    """The nodes to ask first where a slot is (more are learned from their answers)."""

    startup_nodes: tuple[tuple[str, int], ...]


#: A ``redis=`` form of a Redis Cluster, parsed: the connection class
#: (``redis.Connection`` or ``redis.SSLConnection``), the login and TLS
#: settings, and the nodes.
ClusterTarget = tuple[type[Any], dict[str, Any], ClusterSpec]


class SlotMoved(redis.ConnectionError):
    """A MOVED reply: the slot has another owner now; the command did not run."""

    def __init__(self, moved: MovedError, address: tuple[str, int]) -> None:
        super().__init__(f"hash slot {moved.slot_id} moved to {address[0]}:{address[1]}")
        self.moved = moved
        self.address = address


class MovedRetry(RetryOnce):
    """For what must not run twice: retries a MOVED reply once, nothing else.

    Every failure still goes to the failure handler (which drops the
    connection, or reconnects a pub/sub one), as with no retries at all.
    """

    def __init__(self) -> None:
        super().__init__(lambda error: isinstance(error, SlotMoved))


class SlotRoute:
    """Which primary serves one hash slot; shared by every connection of a kind.

    The nodes are asked on connections of ``connection_class``
    (``redis.Connection``, or ``redis.SSLConnection`` for TLS) made with
    ``connect_kwargs`` (credentials, timeouts, TLS settings).
    """

    def __init__(
        self,
        startup_nodes: Sequence[tuple[str, int]],
        route_key: str,
        connect_kwargs: Mapping[str, Any],
        connection_class: type[Any] = redis.Connection,
    ) -> None:
        self._connection_class = connection_class
        self.slot = key_slot(route_key.encode())
        self._known: list[tuple[str, int]] = list(dict.fromkeys(startup_nodes))
        self._connect_kwargs = {
            k: v for k, v in connect_kwargs.items() if k not in ("host", "port", "route")
        }
        self._lock = threading.Lock()
        self._owner: tuple[str, int] | None = None
        self._suspect: tuple[str, int] | None = None
        #: Bumped on every change of owner: connections made before reconnect.
        self.generation = 0

    @property
    def known_owner(self) -> tuple[str, int] | None:
        """The owner as last learned, without asking (None when it must be asked)."""
        return self._owner

    def owner(self) -> tuple[tuple[str, int], int]:
        """The primary serving the slot (asked of the cluster if not known), and the generation.

        Raises ``redis.ConnectionError`` naming every node asked when none
        could say.
        """
        with self._lock:
            if self._owner is None:
                self._owner = self._ask()
                self.generation += 1
            return self._owner, self.generation

    def moved(self, address: tuple[str, int]) -> None:
        """A MOVED reply named ``address`` as the owner."""
        with self._lock:
            if self._owner != address:
                log.info("raftredis: hash slot %d is served by %s:%d now", self.slot, *address)
                self._owner = address
                self.generation += 1
            self._remember([address])

    def forget(self, address: tuple[str, int]) -> None:
        """``address`` failed us: ask the cluster again on the next connect."""
        with self._lock:
            self._suspect = address
            if self._owner == address:
                self._owner = None
                self.generation += 1

    def _ask(self) -> tuple[str, int]:
        # The node that failed last is asked last: it may be paused or cut off,
        # and still believe it serves the slot.
        nodes = sorted(self._known, key=lambda node: node == self._suspect)
        reasons: list[str] = []
        for host, port in nodes:
            try:
                slots = self._cluster_slots(host, port)
            except (redis.RedisError, OSError) as exc:
                reasons.append(f"{host}:{port}: {exc}")
                continue
            owner, seen = _owner_in(slots, self.slot, host)
            self._remember(seen)
            if owner is not None:
                return self._confirmed(owner, (host, port))
            reasons.append(f"{host}:{port}: no primary serves hash slot {self.slot}")
        raise redis.ConnectionError(
            f"no Redis Cluster node could say which primary serves hash slot {self.slot} "
            f"({'; '.join(reasons)})"
        )

    def _confirmed(self, owner: tuple[str, int], asked: tuple[str, int]) -> tuple[str, int]:
        """``owner``, unless it knows better: then the primary it names.

        Another node's map can lag a failover by a moment; the demoted
        primary itself knows at once. A pub/sub connection to a replica
        would still hear the shard, but SPUBLISH counts only the receivers
        on the primary.
        """
        if owner == asked:
            return owner
        try:
            slots = self._cluster_slots(*owner)
        except (redis.RedisError, OSError):
            return owner  # connecting will fail too, and ask again
        named, _ = _owner_in(slots, self.slot, owner[0])
        return named if named is not None else owner

    def _cluster_slots(self, host: str, port: int) -> Any:
        conn: Any = self._connection_class(host=host, port=port, **self._connect_kwargs)
        try:
            conn.send_command("CLUSTER", "SLOTS")
            reply = conn.read_response()
        finally:
            conn.disconnect()
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply

    def _remember(self, nodes: Iterable[tuple[str, int]]) -> None:
        for node in nodes:
            if node not in self._known and len(self._known) < MAX_KNOWN_NODES:
                self._known.append(node)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _owner_in(
    slots: Any, slot: int, asked_host: str
) -> tuple[tuple[str, int] | None, list[tuple[str, int]]]:
    """The primary of ``slot`` in a CLUSTER SLOTS reply, and every node it names.

    An empty host means "the host you asked"; "?" means the node does not
    know the address (skipped).
    """
    owner = None
    seen: list[tuple[str, int]] = []
    for entry in slots or ():
        if not isinstance(entry, (list, tuple)) or len(entry) < 3:
            continue
        start, end = int(entry[0]), int(entry[1])
        for i, node in enumerate(entry[2:]):
            host = _text(node[0]) or asked_host
            if host == "?":
                continue
            address = (host, int(node[1]))
            seen.append(address)
            if i == 0 and start <= slot <= end:
                owner = address
    return owner, seen


class _SlotRouted(AddressChosenAtConnect):
    """Mixin for a redis-py connection class: connect to, and follow, a route's owner."""

    route: SlotRoute

    def __init__(self, *, route: SlotRoute, **kwargs: Any) -> None:
        self.route = route
        self._route_generation = -1
        self._connecting_generation = -1
        super().__init__(**kwargs)

    def choose_address(self) -> tuple[str, int]:
        address, self._connecting_generation = self.route.owner()
        return address

    def address_failed(self, address: tuple[str, int]) -> None:
        self.route.forget(address)

    def address_connected(self, address: tuple[str, int]) -> None:
        self._route_generation = self._connecting_generation

    @property
    def off_route(self) -> bool:
        """Connected, but the route has changed since: reconnect before writing."""
        return is_connected(self) and self._route_generation != self.route.generation

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[misc, unused-ignore]
        except MovedError as exc:
            address = (exc.host or self.host, exc.port)
            self.route.moved(address)
            raise SlotMoved(exc, address) from exc
        except ClusterDownError:
            self.route.forget((self.host, self.port))
            raise
        except (redis.ConnectionError, redis.TimeoutError):
            self.route.forget((self.host, self.port))
            raise


class SlotConnection(_SlotRouted, redis.Connection):
    """A TCP connection to whichever primary its route names."""


class SlotSSLConnection(_SlotRouted, redis.SSLConnection):
    """A TLS connection to whichever primary its route names."""


class RoutedPool(ConnectionPool):
    """A pool of slot-following connections: one that is off route is dropped at checkout.

    Checked here, before anything is written, and not in the connection's
    own send: a connection writes during its handshake too, and dropping it
    there would mix the replies of two connections.
    """

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        conn: Any = super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call, unused-ignore]
        if getattr(conn, "off_route", False):
            conn.disconnect()  # the command's write connects it again, to the new owner
        return conn


def slot_connection_class(base: type[Any]) -> type[Any]:
    """The slot-following class for ``base``: TCP, or TLS."""
    if base is redis.Connection:
        return SlotConnection
    if base is redis.SSLConnection:
        return SlotSSLConnection
    raise TypeError(f"no slot-following connection for {base.__name__}")


# ------------------------------------------------------- the redis= forms


def is_cluster_url(value: Any) -> bool:
    """Whether ``value`` is a ``redis+cluster://`` or ``rediss+cluster://`` URL."""
    return isinstance(value, str) and value.lower().startswith(_PREFIXES)


def cluster_from_url(url: str) -> ClusterTarget:
    """``redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]``.

    Any node will do, primary or replica; more are learned from the cluster.
    A host without a port means 6379. A cluster has only database 0.
    ``rediss+cluster://`` is the same with TLS (certificates in the dict form).
    """
    scheme, netloc, path, kwargs = split_hosts_url(url, "{'url': ..., 'password': ...}")
    tls = scheme == TLS_CLUSTER_SCHEME
    if path.strip("/") not in ("", "0"):
        raise ConfigurationError(
            f"a Redis Cluster has only database 0, but {hide_password(url)!r} names "
            f"{path.strip('/')!r}: use {CLUSTER_SCHEME}://host:port[,host:port...]"
        )
    nodes = tuple(parse_address(part, url, NODE_PORT) for part in netloc.split(","))
    connection_class = redis.SSLConnection if tls else redis.Connection
    return connection_class, kwargs, ClusterSpec(nodes)


def cluster_from_dict(settings: dict[str, Any]) -> ClusterTarget:
    """The dict form of a Redis Cluster: ``startup_nodes`` (or a URL), and the login.

    ``settings`` is consumed.
    """
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
    url = settings.pop("url", None)
    if url is not None and not is_cluster_url(url):
        raise ConfigurationError(
            f"with startup_nodes, url must be a {CLUSTER_SCHEME}:// or {TLS_CLUSTER_SCHEME}:// "
            f"URL, got {url_for_message(url)}"
        )
    connection_class: type[Any] = redis.Connection
    kwargs: dict[str, Any] = {}
    nodes: tuple[tuple[str, int], ...] = ()
    if url is not None:
        connection_class, kwargs, from_url = cluster_from_url(url)
        nodes = from_url.startup_nodes
    if "startup_nodes" in settings:
        nodes = address_list(settings.pop("startup_nodes"), "startup_nodes", NODE_PORT)
    if not nodes:
        raise ConfigurationError(
            "redis=... of a Redis Cluster needs startup_nodes, a list of (host, port) pairs"
        )
    connection_class = with_tls(settings, connection_class, f"{TLS_CLUSTER_SCHEME}://")
    kwargs.update(settings)  # username, password, ssl_*
    return connection_class, kwargs, ClusterSpec(nodes)


def cluster_from_client(client: RedisCluster) -> ClusterTarget:
    """A ``redis.cluster.RedisCluster``: its nodes and its login, none of its behaviour."""
    nodes, settings = cluster_client_settings(client)
    tls = issubclass(settings.get("connection_class", redis.Connection), redis.SSLConnection)
    taken = {
        k: v
        for k, v in settings.items()
        if (k in CLIENT_SETTINGS or k.startswith("ssl_"))
        and k not in ("host", "port", "db", "path")
    }
    return redis.SSLConnection if tls else redis.Connection, taken, ClusterSpec(tuple(nodes))
