"""Waiting in tests for a condition, with a deadline instead of a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    message: str | Callable[[], str] = "",
    *,
    interval: float = 0.005,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that value.

    For tests: wait for a condition with a deadline instead of sleeping a fixed
    time. After ``timeout`` seconds it raises ``AssertionError`` naming the
    predicate and ``message`` (a string, or a callable for a costly one).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            name = getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(
                f"condition {name} not met within {timeout:g} s" + (f": {text}" if text else "")
            )
        time.sleep(interval)
