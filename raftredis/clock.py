"""An estimate of the Redis server's clock, kept from TIME replies.

Membership is scored by the server's clock so that clock skew between hosts
does not matter. A follower's routine refresh is a plain pipelined ZADD
scored with this estimate (a script calling TIME on every tick would cost
commands the Redis budget does not have); a full heartbeat re-measures it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ServerClock"]


class ServerClock:
    """Maps the local monotonic clock to the server's clock, in milliseconds."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._offset_ms: float | None = None

    @property
    def synced(self) -> bool:
        """True once a server time has been measured."""
        return self._offset_ms is not None

    def update(self, server_ms: int, sent_at: float, received_at: float) -> None:
        """Record a server time read by a call sent and answered at these local times."""
        midpoint = (sent_at + received_at) / 2
        self._offset_ms = server_ms - midpoint * 1000.0

    def now_ms(self) -> int:
        """The server's clock now, estimated (error about half a round trip)."""
        if self._offset_ms is None:
            raise RuntimeError("server clock not measured yet")
        return int(self._monotonic() * 1000.0 + self._offset_ms)

    def seconds_until(self, server_ms: int) -> float:
        """Seconds from now until the server's clock reads ``server_ms``."""
        return (server_ms - self.now_ms()) / 1000.0
