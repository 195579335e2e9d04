"""How big a chaos run is: ``CHAOS_SCALE=short`` (the default, ``make test``) or
``full`` (``make chaos``: more faults, more hypothesis examples, longer runs)."""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

SHORT, FULL = "short", "full"


def scale() -> str:
    """``CHAOS_SCALE``: ``short`` (default) or ``full``; any other value is an error."""
    value = os.environ.get("CHAOS_SCALE", SHORT).strip().lower() or SHORT
    if value not in (SHORT, FULL):
        raise ValueError(f"CHAOS_SCALE must be {SHORT!r} or {FULL!r}, got {value!r}")
    return value


def scaled(short: T, full: T) -> T:
    """``short`` in the short version of the chaos suite, ``full`` in the full one."""
    return full if scale() == FULL else short
