"""Building raftredis' own Redis clients from what the user passed.

redis-py's defaults are wrong for a lease: several retries with long socket
timeouts can block one renew for many seconds against a paused server. Every
client built here has short timeouts (from the timings), at most one retry
(scripts are safe to run twice), none for anything that publishes (a retried
PUBLISH could deliver twice), binary replies (input is decoded, and checked,
by raftredis), RESP2, and TCP keepalive so a dead link is noticed.
"""

from __future__ import annotations

import inspect
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import ConnectionPool, UnixDomainSocketConnection, parse_url
from redis.retry import Retry

from .errors import ConfigurationError
from .timing import Timings

__all__ = ["ConnectionSpec", "connection_spec", "describe"]

#: Keys accepted in a ``redis={...}`` dict (and every ``ssl_*`` key of :data:`SSL_KEYS`).
DICT_KEYS = frozenset(
    {"url", "host", "port", "db", "password", "username", "unix_socket_path", "ssl"}
)
#: The TLS settings (``ssl_ca_certs``, ``ssl_certfile``...) that the installed
#: redis-py's SSLConnection takes; a dict may give them along with TLS.
SSL_KEYS = frozenset(
    name
    for name in inspect.signature(redis.SSLConnection.__init__).parameters
    if name.startswith("ssl_")
)
_OURS = ("socket_timeout", "socket_connect_timeout", "retry", "decode_responses")
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
    """Where Redis is and how to connect to it, independent of any pool."""

    def __init__(self, connection_class: type[Any], kwargs: Mapping[str, Any]) -> None:
        self.connection_class = connection_class
        self.kwargs = {k: v for k, v in kwargs.items() if k not in _OURS}

    @property
    def is_unix(self) -> bool:
        return issubclass(self.connection_class, UnixDomainSocketConnection)

    def client(self, timings: Timings, *, retries: int) -> redis.Redis:
        """A new client with its own pool, timeouts from ``timings``, ``retries`` retries."""
        kwargs: dict[str, Any] = dict(self.kwargs)
        kwargs.update(
            socket_timeout=timings.socket_timeout,
            socket_connect_timeout=timings.socket_timeout,
            retry=Retry(NoBackoff(), retries),
            decode_responses=False,
            protocol=2,
            health_check_interval=0,
        )
        if not self.is_unix:
            kwargs.update(socket_keepalive=True, socket_keepalive_options=_keepalive(timings))
        pool = ConnectionPool(connection_class=self.connection_class, **kwargs)
        return redis.Redis(connection_pool=pool)

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
    if isinstance(value, redis.Redis):
        pool = value.connection_pool
        taken = {
            k: v
            for k, v in pool.connection_kwargs.items()
            if k in _FROM_CLIENT or k.startswith("ssl_")
        }
        return ConnectionSpec(pool.connection_class, taken)
    if value is None:
        return ConnectionSpec(redis.Connection, {"host": "localhost", "port": 6379})
    if isinstance(value, str):
        return _from_url(value)
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in set(value) - DICT_KEYS - SSL_KEYS)
        if unknown:
            raise ConfigurationError(
                f"unknown key(s) {', '.join(unknown)} in redis=...; accepted keys: "
                f"{', '.join(sorted(DICT_KEYS))} and, with TLS, ssl_* settings such as "
                "ssl_ca_certs, ssl_certfile, ssl_keyfile (or pass a URL string or a redis.Redis)"
            )
        settings = dict(value)
        spec = _from_url(settings.pop("url")) if "url" in settings else None
        kwargs: dict[str, Any] = dict(spec.kwargs) if spec else {}
        conn_class: type[Any] = spec.connection_class if spec else redis.Connection
        if "unix_socket_path" in settings:
            conn_class = UnixDomainSocketConnection
            kwargs["path"] = settings.pop("unix_socket_path")
            kwargs.pop("host", None)
            kwargs.pop("port", None)
        if settings.pop("ssl", False):
            conn_class = redis.SSLConnection
        tls_settings = sorted(k for k in settings if k in SSL_KEYS)
        if tls_settings and not issubclass(conn_class, redis.SSLConnection):
            raise ConfigurationError(
                f"{', '.join(tls_settings)} in redis=... need TLS: add \"ssl\": True "
                "(or use a rediss:// url)"
            )
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


def _from_url(url: Any) -> ConnectionSpec:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"redis URL must start with redis://, rediss:// or unix://, got {url!r}"
        )
    try:
        kwargs = parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigurationError(f"cannot parse redis URL {url!r}: {exc}") from exc
    conn_class = kwargs.pop("connection_class", redis.Connection)
    return ConnectionSpec(conn_class, kwargs)


def describe(spec: ConnectionSpec) -> str:
    """Where the spec points, without the password (for messages and logs)."""
    kw = spec.kwargs
    if spec.is_unix:
        return f"unix://{kw.get('path')}?db={kw.get('db', 0)}"
    scheme = "rediss" if issubclass(spec.connection_class, redis.SSLConnection) else "redis"
    return f"{scheme}://{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}"
