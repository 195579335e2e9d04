"""A manual clock for unit tests of code that takes the time as an argument."""

from __future__ import annotations

import math


class FakeClock:
    """A clock that moves only when told to, for unit tests.

    Call it (or read :attr:`now`) to get the time in seconds; use
    :meth:`advance` or :meth:`set` to move it forward. It never goes back.
    """

    def __init__(self, start: float = 1000.0) -> None:
        """Start the clock at ``start`` seconds."""
        #: The current time, in seconds; :meth:`advance` and :meth:`set` move it.
        self.now: float = float(start)

    def __call__(self) -> float:
        """Return the current time, in seconds."""
        return self.now

    def __repr__(self) -> str:
        """Show the current time."""
        return f"FakeClock(now={self.now!r})"

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time.

        Raises:
            ValueError: ``seconds`` is negative or not finite.
        """
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"cannot advance a clock by {seconds!r} seconds")
        self.now += seconds
        return self.now

    def set(self, t: float) -> None:
        """Set the clock to the time ``t``, which must not be earlier than now.

        Raises:
            ValueError: ``t`` is earlier than the current time, or not finite.
        """
        if not math.isfinite(t) or t < self.now:
            raise ValueError(f"cannot set a clock back from {self.now!r} to {t!r}")
        self.now = float(t)
