"""The small parsers every form of ``redis=`` shares: hosts, ports, logins, TLS.

``connection.py`` (one Redis server), ``sentinel.py`` and ``cluster.py`` (the
URLs and dicts of their topologies) build on these; this module imports
nothing else of raftredis but its errors, so any of them can import it.
"""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import unquote

import redis

from .errors import ConfigurationError

__all__ = [
    "CLIENT_SETTINGS",
    "SSL_KEYS",
    "address_list",
    "checked_port",
    "hide_password",
    "parse_address",
    "split_hosts_url",
    "url_for_message",
    "with_tls",
]

#: The TLS settings (``ssl_ca_certs``, ``ssl_certfile``...) that the installed
#: redis-py's SSLConnection takes; a dict may give them along with TLS.
SSL_KEYS = frozenset(
    name
    for name in inspect.signature(redis.SSLConnection.__init__).parameters
    if name.startswith("ssl_")
)

#: What is taken from a user's redis.Redis or RedisCluster (with its ``ssl_*``
#: settings): where and who, nothing about behaviour (redis-py 8 also keeps
#: e.g. RESP3-only maintenance-notification settings there).
CLIENT_SETTINGS = frozenset(
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


def hide_password(url: str) -> str:
    """``url`` with the password after ``user:`` replaced by ``***``."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{tail}"


def url_for_message(url: Any) -> str:
    """``url`` quoted for an error message, without its password or query (which may hold one)."""
    if not isinstance(url, str):
        return repr(url)
    return repr(hide_password(url.partition("?")[0]))


def split_hosts_url(url: str, example: str) -> tuple[str, str, str, dict[str, Any]]:
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


def parse_address(text: str, url: str, default_port: int) -> tuple[str, int]:
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
    return host, checked_port(port)


def checked_port(port: Any) -> int:
    """``port`` if it is a TCP port number; ConfigurationError otherwise."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigurationError(f"redis port must be an int from 1 to 65535, got {port!r}")
    return port


def address_list(value: Any, name: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """A non-empty list of ``(host, port)`` pairs (``"host:port"`` strings are taken too)."""
    pairs: list[tuple[str, int]] = []
    if isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, str) and item:
                pairs.append(parse_address(item, item, default_port))
            elif (
                isinstance(item, (list, tuple))
                and len(item) == 2
                and isinstance(item[0], str)
                and item[0]
            ):
                pairs.append((item[0], checked_port(item[1])))
            else:
                pairs = []
                break
    if not pairs:
        raise ConfigurationError(
            f"{name} must be a non-empty list of (host, port) pairs, such as "
            f"[('10.0.0.1', {default_port}), ('10.0.0.2', {default_port})], got {value!r}"
        )
    return tuple(pairs)


def with_tls(settings: dict[str, Any], connection_class: type[Any], scheme: str) -> type[Any]:
    """The connection class once ``settings`` had their say (``ssl`` is taken out of them).

    ``"ssl": True`` selects TLS; ``ssl_*`` settings without TLS are refused
    (the message suggests a URL of ``scheme``).
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
