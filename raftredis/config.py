"""Config: every setting of a Candidate, checked once, frozen.

:class:`~raftredis.Candidate`, :class:`~raftredis.Client` and the Flask and
Django integrations are all built from a :class:`Config`, so a setting is
checked by one piece of code and its error names the option that was wrong
(:attr:`ConfigurationError.option`). Building one does no I/O.
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from .connection import ConnectionSpec, connection_spec
from .errors import ConfigurationError, MessageError
from .keys import KeySpace
from .signing import DEFAULT_WINDOW, Keyring, secrets_from
from .timing import Timings
from .wire import check_json, utf8

__all__ = [
    "Config",
    "check_id",
    "check_max_message_bytes",
    "check_name",
    "check_redis",
    "new_member_id",
    "signing_setup",
]

_NAME_RE = re.compile(r"[^\s{}:]+")
_ID_RE = re.compile(r"[A-Za-z0-9._\-]{1,128}")

#: The smallest max_message_bytes: room for an envelope and a small payload.
MIN_MESSAGE_BYTES = 1024


@dataclass(frozen=True)
class Config:
    """A Candidate's settings, validated. Build one with :meth:`from_options`.

    ``member_id`` is None when no ``id`` was given: each start draws a random
    one (20 random hex digits). ``fast_failover`` is resolved: on with one
    Redis server unless turned off, off behind Sentinel and in a Cluster.
    """

    kind: str
    key_prefix: str
    connection: ConnectionSpec
    timings: Timings
    meta: Any = None
    member_id: str | None = None
    max_message_bytes: int = 1 << 20
    min_replicas: int = 0
    fast_failover: bool = True
    keyring: Keyring | None = field(default=None, repr=False)
    replay_window: float = DEFAULT_WINDOW
    #: Read reliable messages and requests (raftredis.reliable).
    reliable: bool = False
    #: What was passed as ``redis=`` (a Client reuses it after a fork).
    redis: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_options(
        cls,
        *,
        redis: Any = None,
        kind: str,
        meta: Any = None,
        lease_ttl: float = 3.0,
        key_prefix: str = "raftredis",
        id: str | None = None,
        max_message_bytes: int = 1 << 20,
        renew_interval: float | None = None,
        renew_deadline: float | None = None,
        membership_refresh: float | None = None,
        member_expiry: float | None = None,
        start_timeout: float | None = None,
        socket_timeout: float | None = None,
        vacancy_jitter: float | None = None,
        reelect_backoff: float | None = None,
        clock_sync_interval: float | None = None,
        secret: str | bytes | list[str | bytes] | None = None,
        replay_window: float | None = None,
        min_replicas: int = 0,
        fast_failover: bool | None = None,
        presence_interval: float | None = None,
        presence_window: float | None = None,
        reliable: bool = False,
    ) -> Config:
        """Check every option as :class:`~raftredis.Candidate` takes them.

        Raises :class:`ConfigurationError` naming the first option that is wrong.
        """
        kind = check_name("kind", kind)
        key_prefix = check_name("key_prefix", key_prefix)
        member_id = check_id(id) if id is not None else None
        max_message_bytes = check_max_message_bytes(max_message_bytes)
        if isinstance(min_replicas, bool) or not isinstance(min_replicas, int) or min_replicas < 0:
            raise ConfigurationError(
                f"min_replicas must be an int >= 0, got {min_replicas!r}", option="min_replicas"
            )
        timings = Timings.from_lease(
            lease_ttl,
            renew_interval=renew_interval,
            renew_deadline=renew_deadline,
            membership_refresh=membership_refresh,
            member_expiry=member_expiry,
            start_timeout=start_timeout,
            socket_timeout=socket_timeout,
            vacancy_jitter=vacancy_jitter,
            reelect_backoff=reelect_backoff,
            clock_sync_interval=clock_sync_interval,
            presence_interval=presence_interval,
            presence_window=presence_window,
        )
        try:
            check_meta(meta, max_message_bytes)
        except MessageError as exc:
            raise ConfigurationError(str(exc), option="meta") from None
        if not isinstance(reliable, bool):
            raise ConfigurationError(
                f"reliable must be True or False, got {reliable!r}", option="reliable"
            )
        keyring, window = signing_setup(secret, replay_window)
        spec = check_redis(redis)
        return cls(
            kind=kind,
            key_prefix=key_prefix,
            connection=spec,
            timings=timings,
            meta=copy.deepcopy(meta),
            member_id=member_id,
            max_message_bytes=max_message_bytes,
            min_replicas=min_replicas,
            fast_failover=resolve_fast_failover(fast_failover, spec),
            keyring=keyring,
            replay_window=window,
            reliable=reliable,
            redis=redis,
        )

    @property
    def keys(self) -> KeySpace:
        """The kind's keys and channels (sharded pub/sub in a Redis Cluster)."""
        return KeySpace(self.key_prefix, self.kind, sharded=self.connection.cluster is not None)


def check_name(what: str, value: Any) -> str:
    """A kind or key prefix: non-empty, at most 200 characters, none of the key layout's."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string, got {value!r}", option=what)
    if not _NAME_RE.fullmatch(value):
        raise ConfigurationError(
            f"{what}={value!r} is not allowed: it may not contain whitespace, '{{', '}}' "
            "or ':' (they are part of the Redis key layout); use e.g. 'my-service'",
            option=what,
        )
    if len(value) > 200:
        raise ConfigurationError(
            f"{what} is {len(value)} characters long; use at most 200", option=what
        )
    return value


def check_id(value: Any) -> str:
    """An instance id: 1 to 128 letters, digits, '.', '_' or '-'."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ConfigurationError(
            f"id={value!r} is not allowed: use 1 to 128 letters, digits, '.', '_' or '-' "
            "(or leave it out for a random id)",
            option="id",
        )
    return value


def new_member_id() -> str:
    """A random instance id: 20 hex digits."""
    return uuid.uuid4().hex[:20]


def check_max_message_bytes(value: Any) -> int:
    """``max_message_bytes``: an int of at least 1024."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(
            f"max_message_bytes must be an int, got {value!r}", option="max_message_bytes"
        )
    if value < MIN_MESSAGE_BYTES:
        raise ConfigurationError(
            f"max_message_bytes={value} is too small: use at least {MIN_MESSAGE_BYTES}",
            option="max_message_bytes",
        )
    return value


def check_meta(meta: Any, max_message_bytes: int) -> None:
    """Meta must be JSON within ``max_message_bytes`` (UTF-8 bytes), like a message.

    Raises :class:`~raftredis.MessageError` (``set_meta`` raises it as is).
    """
    size = len(utf8(check_json(meta, "meta"), "meta"))
    if size > max_message_bytes:
        raise MessageError(
            f"meta is {size} bytes encoded, over max_message_bytes="
            f"{max_message_bytes}; keep meta small (or store a reference to it)"
        )


def signing_setup(secret: Any, window: float | None) -> tuple[Keyring | None, float]:
    """The keyring for ``secret`` (None without one) and the replay window, checked."""
    if window is None:
        window = DEFAULT_WINDOW
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window < 1e9:
        raise ConfigurationError(
            f"replay_window must be a positive number, got {window!r}", option="replay_window"
        )
    if secret is None:
        return None, float(window)
    return Keyring(secrets_from(secret)), float(window)  # its errors name "secret"


def check_redis(value: Any) -> ConnectionSpec:
    """Where Redis is (see :func:`~raftredis.connection.connection_spec`); no I/O.

    Its errors name the option ``redis``.
    """
    try:
        return connection_spec(value)
    except ConfigurationError as exc:
        if exc.option is None:
            exc.option = "redis"
        raise


def resolve_fast_failover(wanted: Any, spec: ConnectionSpec) -> bool:
    """Whether fast failover is on: by default with one Redis server only."""
    if wanted is not None and not isinstance(wanted, bool):
        raise ConfigurationError(
            f"fast_failover must be True, False or None, got {wanted!r}", option="fast_failover"
        )
    where = (
        "behind Sentinel" if spec.sentinel is not None
        else "in a Redis Cluster" if spec.cluster is not None
        else None
    )  # fmt: skip
    if where is None:
        return wanted is not False
    if wanted:
        raise ConfigurationError(
            f"fast_failover is not safe {where}: after a failover the new primary has none "
            "of the leader's connections, so the others would take the lease while the "
            "leader still proves its presence to the old one. Leave it out (the lease "
            "decides, as always); see docs/design-notes.md",
            option="fast_failover",
        )
    return False
