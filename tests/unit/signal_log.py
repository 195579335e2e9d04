"""SignalLog: connects receivers of raftredis' signals for one sender, and records what arrives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from blinker import NamedSignal

__all__ = ["Received", "SignalLog"]


@dataclass(frozen=True)
class Received:
    """One call of a recording receiver."""

    signal: str
    kwargs: dict[str, Any]
    thread: str


class SignalLog:
    """Receivers for one sender, disconnected by :meth:`close` (blinker's signals are global).

    Each test uses a sender of its own, so receivers of other tests never fire.
    """

    def __init__(self, sender: object) -> None:
        self.sender = sender
        self.received: list[Received] = []
        self._connected: list[tuple[NamedSignal, Callable[..., Any]]] = []

    def record(self, *signals: NamedSignal) -> None:
        """Record every send of ``signals`` in :attr:`received`."""
        for signal in signals:

            def recorder(sender: object, _name: str = signal.name, **kwargs: Any) -> None:
                self.received.append(Received(_name, kwargs, threading.current_thread().name))

            self.connect(signal, recorder)

    def connect(self, signal: NamedSignal, receiver: Callable[..., Any]) -> None:
        """Connect ``receiver`` (strongly) until :meth:`close`."""
        signal.connect(receiver, sender=self.sender, weak=False)
        self._connected.append((signal, receiver))

    def names(self) -> list[str]:
        """The names of the signals received, in order."""
        return [r.signal for r in self.received]

    def errors(self) -> list[BaseException]:
        """The errors ``error_occurred`` received, in order."""
        return [r.kwargs["error"] for r in self.received if r.signal == "error_occurred"]

    def close(self) -> None:
        for signal, receiver in self._connected:
            signal.disconnect(receiver, sender=self.sender)
        self._connected = []
