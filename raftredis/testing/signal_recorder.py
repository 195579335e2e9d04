"""Recording the signals of Candidates in tests, from whatever thread sends them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .polling import wait_until

if TYPE_CHECKING:
    from ..candidate import Candidate


@dataclass(frozen=True)
class ReceivedSignal:
    """One signal as a :class:`SignalRecorder` saw it, with the thread it arrived on."""

    name: str
    sender: Any
    kwargs: dict[str, Any]
    thread: str
    at: float = field(default_factory=time.monotonic)


class SignalRecorder:
    """Records the signals of Candidates, from any thread, in arrival order.

    For tests: ``recorder = SignalRecorder().connect(candidate, "elected",
    "message")``, then ``recorder.wait_for("elected")``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[ReceivedSignal] = []

    def receiver(self, name: str) -> Callable[..., None]:
        """A receiver that records every call as a signal called ``name``."""

        def receive(sender: Any, **kwargs: Any) -> None:
            event = ReceivedSignal(name, sender, dict(kwargs), threading.current_thread().name)
            with self._lock:
                self._events.append(event)

        receive.__name__ = f"record_{name}"
        return receive

    def connect(self, candidate: Candidate, *names: str) -> SignalRecorder:
        """Connect a recording receiver to each named signal of ``candidate`` (via on())."""
        for name in names:
            candidate.on(name, self.receiver(name))
        return self

    @property
    def events(self) -> list[ReceivedSignal]:
        """Everything recorded so far."""
        with self._lock:
            return list(self._events)

    def of(
        self, name: str, predicate: Callable[[ReceivedSignal], bool] = lambda e: True
    ) -> list[ReceivedSignal]:
        """The recorded signals called ``name`` that match ``predicate``."""
        return [e for e in self.events if e.name == name and predicate(e)]

    def wait_for(
        self,
        name: str,
        predicate: Callable[[ReceivedSignal], bool] = lambda e: True,
        timeout: float = 5.0,
        count: int = 1,
    ) -> ReceivedSignal:
        """Wait until ``count`` matching signals arrived; return the last of them."""

        def enough() -> ReceivedSignal | None:
            hits = self.of(name, predicate)
            return hits[count - 1] if len(hits) >= count else None

        found = wait_until(
            enough,
            timeout,
            lambda: f"{name} x{count}; recorded: {[(e.name, e.kwargs) for e in self.events][-20:]}",
        )
        assert found is not None  # wait_until returns only truthy values
        return found

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._events.clear()

    def take(self) -> list[ReceivedSignal]:
        """Return and forget everything recorded so far."""
        with self._lock:
            events, self._events = self._events, []
            return events
