"""What the election is fed: events, each carrying the monotonic time it happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..wire import ControlMessage
from .commands import Command

__all__ = [
    "AcquireResult",
    "BackendFailed",
    "ControlReceived",
    "Event",
    "HeartbeatResult",
    "Lease",
    "PresenceLost",
    "PresenceProof",
    "PresenceRestored",
    "Reconnected",
    "ReelectRequested",
    "RenewResult",
    "Start",
    "StopRequested",
    "TakeoverResult",
    "Tick",
    "WatchResult",
]


@dataclass(frozen=True)
class Lease:
    """The lease as read from Redis: who holds it, its term, seconds left when read."""

    term: int
    holder: str
    remaining: float


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Start:
    """The Candidate has joined the kind and wants to know its role (``members``: the
    kind's live members as its join counted them, if known)."""

    now: float
    members: int | None = None


@dataclass(frozen=True)
class Tick:
    """The next wake-up time has come."""

    now: float


@dataclass(frozen=True)
class AcquireResult:
    """Reply to :class:`Acquire`: ``lease`` is the lease after the script ran.

    ``present`` (fast failover, when we took it): our presence channel had a
    listener as the script ran, a proof that our presence connection lived
    then.
    """

    now: float
    sent_at: float
    lease: Lease
    present: bool = False


@dataclass(frozen=True)
class RenewResult:
    """Reply to :class:`Renew`. ``lease`` is the other holder's lease when not renewed."""

    now: float
    sent_at: float
    renewed: bool
    lease: Lease | None = None
    #: The renew carried ``clear_suspicion`` (the first after our presence came back).
    validated: bool = False


@dataclass(frozen=True)
class HeartbeatResult:
    """Reply to :class:`Heartbeat`.

    ``lease_read`` says whether the lease was read (``lease`` None then means
    vacant); ``rejoined`` says our membership had been pruned and was re-added.
    """

    now: float
    lease_read: bool
    lease: Lease | None = None
    rejoined: bool = False
    #: Live members of the kind (full heartbeats only): spreads the presence watch.
    members: int | None = None


@dataclass(frozen=True)
class BackendFailed:
    """A command could not be carried out: Redis unreachable, timed out, or (``refused``)
    it answered with an error (out of memory, a read-only replica...)."""

    now: float
    command: Command
    error: str = ""
    refused: bool = False


@dataclass(frozen=True)
class ControlReceived:
    """A decoded control notice from the kind's control channel."""

    now: float
    message: ControlMessage


@dataclass(frozen=True)
class ReelectRequested:
    """The user called ``reelect()``."""

    now: float


@dataclass(frozen=True)
class StopRequested:
    """The user called ``stop()``."""

    now: float


@dataclass(frozen=True)
class Reconnected:
    """A pub/sub connection was re-established: notices may have been missed."""

    now: float


@dataclass(frozen=True)
class PresenceProof:
    """Fast failover: a pong on our presence connection, for a ping sent at ``sent_at``.

    The connection was alive, and subscribed, when Redis answered: after ``sent_at``.
    """

    now: float
    sent_at: float


@dataclass(frozen=True)
class PresenceLost:
    """Fast failover: our presence connection broke (or Redis dropped its subscription)."""

    now: float


@dataclass(frozen=True)
class PresenceRestored:
    """Fast failover: our presence connection is back and subscribed (its first pong,
    for a ping sent at ``sent_at`` after it subscribed again); ``epoch`` names it."""

    now: float
    sent_at: float
    epoch: int = 0


@dataclass(frozen=True)
class WatchResult:
    """Fast failover: how many listeners the presence channel of ``holder`` had (and the
    kind's live members, when counted)."""

    now: float
    holder: str
    term: int
    listeners: int
    members: int | None = None
    #: When counted: this follower's place (0-based) among the kind's members other
    #: than ``holder``, by id, or None if it is not among them.
    rank: int | None = None
    #: When known: the Redis server's clock minus the local one, in seconds.
    server_offset: float | None = None


@dataclass(frozen=True)
class TakeoverResult:
    """Fast failover: reply to :class:`TakeOver` (see ``lua/takeover.lua``).

    ``status`` is ``vacant``, ``held`` (``lease``: by a present holder, or us),
    ``suspect`` (``remaining`` seconds until it may be taken) or ``acquired``.
    """

    now: float
    sent_at: float
    status: str
    lease: Lease | None = None
    remaining: float = 0.0
    present: bool = False


Event = Union[
    Start,
    Tick,
    AcquireResult,
    RenewResult,
    HeartbeatResult,
    BackendFailed,
    ControlReceived,
    ReelectRequested,
    StopRequested,
    Reconnected,
    PresenceProof,
    PresenceLost,
    PresenceRestored,
    WatchResult,
    TakeoverResult,
]
