"""Timings: one knob, ``lease_ttl``, from which every other interval derives.

The defaults (``lease_ttl`` = 3 s) and why:

=====================  ===============  ============================================
setting                default          why
=====================  ===============  ============================================
renew_interval         ttl / 4          two renews may fail before the deadline
renew_deadline         ttl * 2 / 3      the leader stops calling itself leader when
                                        its last successful renew was *sent* longer
                                        ago than this: ttl/3 before Redis can
                                        expire the lease
membership_refresh     ttl / 2          followers also learn the lease from it, so
                                        it must come before the lease ends
member_expiry          2 * ttl          a member unseen this long is pruned
vacancy_jitter         50 ms            spreads campaigns after a vacancy notice
reelect_backoff        150 ms           a leader that called reelect() waits this
                                        long so others get the first chance
clock_sync_interval    max(30 s, 10 ttl) followers re-measure the server clock
socket_timeout         renew_interval/3 a command and its one retry fit in one
                                        renew interval
presence_interval      100 ms           fast failover: the leader proves its presence
                                        connection alive this often, and the kind
                                        looks for a leader's vanished connection
                                        this often (between all its followers)
presence_window        200 ms           fast failover: a leader stops calling itself
                                        leader this long after its last proof was
                                        sent; a follower takes over a lease this
                                        long after it saw the leader's connection
                                        gone (and it stayed gone)
=====================  ===============  ============================================

The two presence timings are not derived from ``lease_ttl`` (a crash is
detected in about ``presence_window`` whatever the lease), except that the
window stays below half of ``renew_deadline`` for very short leases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigurationError

__all__ = ["Timings"]

_MIN_LEASE_TTL = 0.1


@dataclass(frozen=True)
class Timings:
    """Validated election timings, in seconds. Build with :meth:`from_lease`."""

    lease_ttl: float = 3.0
    renew_interval: float = 0.75
    renew_deadline: float = 2.0
    membership_refresh: float = 1.5
    member_expiry: float = 6.0
    vacancy_jitter: float = 0.05
    reelect_backoff: float = 0.15
    clock_sync_interval: float = 30.0
    socket_timeout: float = 0.25
    start_timeout: float = 6.0
    presence_interval: float = 0.1
    presence_window: float = 0.2

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_lease(cls, lease_ttl: float = 3.0, **overrides: float | None) -> Timings:
        """Derive every timing from ``lease_ttl``; any of them can be overridden.

        ``None`` values in ``overrides`` mean "derive it". Raises
        :class:`~raftredis.errors.ConfigurationError` naming the setting to
        change when the combination cannot work (in its message and its
        ``option``: of two timings that do not fit, the one to lower).
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigurationError(
                f"unknown timing setting(s) {', '.join(unknown)}; "
                f"the settings are: {', '.join(sorted(names))}",
                option=unknown[0],
            )
        ttl = _positive("lease_ttl", lease_ttl)
        renew_interval = _given(overrides, "renew_interval", ttl / 4)
        derived: dict[str, Any] = {
            "lease_ttl": ttl,
            "renew_interval": renew_interval,
            "renew_deadline": _given(overrides, "renew_deadline", ttl * 2 / 3),
            "membership_refresh": _given(overrides, "membership_refresh", ttl / 2),
            "member_expiry": _given(overrides, "member_expiry", ttl * 2),
            "vacancy_jitter": _given(overrides, "vacancy_jitter", min(0.05, ttl / 20)),
            "reelect_backoff": _given(overrides, "reelect_backoff", min(0.15, ttl / 8)),
            "clock_sync_interval": _given(overrides, "clock_sync_interval", max(30.0, ttl * 10)),
            "socket_timeout": _given(overrides, "socket_timeout", renew_interval / 3),
            "start_timeout": _given(overrides, "start_timeout", max(5.0, ttl * 2)),
        }
        window = _given(overrides, "presence_window", min(0.2, derived["renew_deadline"] / 2))
        derived["presence_window"] = window
        derived["presence_interval"] = _given(overrides, "presence_interval", window / 2)
        return cls(**derived)


def _given(overrides: dict[str, float | None], name: str, default: float) -> float:
    value = overrides.get(name)
    return default if value is None else _positive(name, value)


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(
            f"{name} must be a number of seconds, got {type(value).__name__} {value!r}",
            option=name,
        )
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(
            f"{name} must be a positive, finite number of seconds, got {value!r}",
            option=name,
        )
    return float(value)


def _validate(t: Timings) -> None:
    for f in fields(t):
        _positive(f.name, getattr(t, f.name))
    if t.lease_ttl < _MIN_LEASE_TTL:
        raise ConfigurationError(
            f"lease_ttl={t.lease_ttl} s is too short: use at least {_MIN_LEASE_TTL} s "
            "(scheduling noise alone would cost the leader its lease)",
            option="lease_ttl",
        )
    if t.renew_deadline >= t.lease_ttl:
        raise ConfigurationError(
            f"renew_deadline ({t.renew_deadline:g} s) must be shorter than lease_ttl "
            f"({t.lease_ttl:g} s): a leader has to stop calling itself leader before its "
            "lease can expire in Redis. Lower renew_deadline or raise lease_ttl.",
            option="renew_deadline",
        )
    if t.renew_interval > t.renew_deadline / 2:
        raise ConfigurationError(
            f"renew_interval ({t.renew_interval:g} s) must be at most half of renew_deadline "
            f"({t.renew_deadline:g} s), so that one failed renew can be retried before the "
            "deadline. Lower renew_interval.",
            option="renew_interval",
        )
    if 2 * t.socket_timeout > t.renew_interval:
        raise ConfigurationError(
            f"socket_timeout ({t.socket_timeout:g} s) must be at most half of renew_interval "
            f"({t.renew_interval:g} s): a command and its one retry have to fit in one "
            "renew interval. Lower socket_timeout.",
            option="socket_timeout",
        )
    if t.membership_refresh > t.member_expiry / 2:
        raise ConfigurationError(
            f"membership_refresh ({t.membership_refresh:g} s) must be at most half of "
            f"member_expiry ({t.member_expiry:g} s), or live members would be pruned "
            "after one late refresh. Lower membership_refresh or raise member_expiry.",
            option="membership_refresh",
        )
    if t.presence_interval > t.presence_window / 2:
        raise ConfigurationError(
            f"presence_interval ({t.presence_interval:g} s) must be at most half of "
            f"presence_window ({t.presence_window:g} s), so that one late proof does not "
            "cost the leader its leadership. Lower presence_interval.",
            option="presence_interval",
        )
    if t.presence_window >= t.renew_deadline:
        raise ConfigurationError(
            f"presence_window ({t.presence_window:g} s) must be shorter than renew_deadline "
            f"({t.renew_deadline:g} s), or fast failover would be no faster than the lease. "
            "Lower presence_window.",
            option="presence_window",
        )
    if t.member_expiry <= t.lease_ttl:
        raise ConfigurationError(
            f"member_expiry ({t.member_expiry:g} s) must be longer than lease_ttl "
            f"({t.lease_ttl:g} s), or a live leader could be pruned from the member list.",
            option="member_expiry",
        )
