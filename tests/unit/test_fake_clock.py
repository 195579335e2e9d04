"""Tests of raftredis.testing.FakeClock."""

from __future__ import annotations

import math

import pytest

from raftredis.testing import FakeClock


def test_starts_at_the_given_time() -> None:
    """The clock reads its start time, both as an attribute and when called."""
    clock = FakeClock(5.0)
    assert clock.now == 5.0
    assert clock() == 5.0
    assert FakeClock()() == 1000.0


def test_advance_moves_forward_and_returns_the_new_time() -> None:
    """advance() adds to the time and returns the result."""
    clock = FakeClock(10.0)
    assert clock.advance(2.5) == 12.5
    assert clock.advance(0) == 12.5
    assert clock() == 12.5


@pytest.mark.parametrize("seconds", [-0.001, -1.0, math.nan, math.inf])
def test_advance_rejects_negative_or_non_finite(seconds: float) -> None:
    """advance() refuses to go back or to jump to infinity, and keeps the time."""
    clock = FakeClock(10.0)
    with pytest.raises(ValueError):
        clock.advance(seconds)
    assert clock() == 10.0


def test_set_moves_forward_or_stays() -> None:
    """set() accepts a later time or the same time."""
    clock = FakeClock(10.0)
    clock.set(15.0)
    assert clock() == 15.0
    clock.set(15.0)
    assert clock() == 15.0


def test_set_backwards_raises() -> None:
    """set() refuses an earlier time and keeps the current one."""
    clock = FakeClock(10.0)
    with pytest.raises(ValueError):
        clock.set(9.999)
    assert clock() == 10.0
