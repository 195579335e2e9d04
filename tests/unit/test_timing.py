"""Timings: derivation from lease_ttl and validation with messages that say what to change."""

from __future__ import annotations

import pytest

from raftredis.errors import ConfigurationError
from raftredis.timing import Timings


def test_defaults_derive_from_lease_ttl() -> None:
    """The defaults of DESIGN section 3, for lease_ttl = 3 s."""
    t = Timings.from_lease(3.0)
    assert (t.renew_interval, t.renew_deadline, t.membership_refresh, t.member_expiry) == (
        0.75,
        2.0,
        1.5,
        6.0,
    )
    assert t.socket_timeout == pytest.approx(0.25)
    assert t.vacancy_jitter == 0.05 and t.reelect_backoff == 0.15


def test_everything_scales_with_lease_ttl() -> None:
    """A 10 s lease scales every derived interval."""
    t = Timings.from_lease(10.0)
    assert t.renew_interval == 2.5 and t.member_expiry == 20.0


def test_overrides_are_kept() -> None:
    """A given setting replaces the derived one."""
    assert Timings.from_lease(3.0, renew_interval=0.5).renew_interval == 0.5


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"lease_ttl": -1}, "lease_ttl"),
        ({"lease_ttl": float("nan")}, "lease_ttl"),
        ({"lease_ttl": True}, "lease_ttl"),
        ({"lease_ttl": "3"}, "lease_ttl"),
        ({"lease_ttl": 0.05}, "lease_ttl"),
        ({"lease_ttl": 3.0, "renew_deadline": 3.0}, "renew_deadline"),
        ({"lease_ttl": 3.0, "renew_interval": 1.5}, "renew_interval"),
        ({"lease_ttl": 3.0, "socket_timeout": 0.5}, "socket_timeout"),
        ({"lease_ttl": 3.0, "membership_refresh": 4.0}, "membership_refresh"),
        ({"lease_ttl": 3.0, "member_expiry": 2.0}, "member_expiry"),
        ({"lease_ttl": 3.0, "bogus": 1.0}, "bogus"),
    ],
)
def test_impossible_settings_are_refused(kwargs: dict[str, object], names: str) -> None:
    """Each impossible combination raises ConfigurationError naming the setting."""
    with pytest.raises(ConfigurationError, match=names):
        Timings.from_lease(**kwargs)  # type: ignore[arg-type]


def test_configuration_error_is_a_value_error() -> None:
    """Callers catching ValueError catch bad settings too."""
    with pytest.raises(ValueError):
        Timings.from_lease(-1.0)
