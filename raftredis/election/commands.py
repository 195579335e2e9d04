"""What the election asks of its owner: commands to carry out against Redis, and
effects to announce (each becomes a signal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..models import State

__all__ = [
    "Acquire",
    "Command",
    "Defeated",
    "Effect",
    "Elected",
    "Heartbeat",
    "LeaderChanged",
    "Leave",
    "Renew",
    "Resign",
    "StateChanged",
    "TakeOver",
    "Watch",
]


@dataclass(frozen=True)
class Acquire:
    """Take the lease if it is free, proposing a term above ``known_term``."""

    known_term: int


@dataclass(frozen=True)
class Renew:
    """Extend our lease of ``term``, only if we still hold it.

    ``clear_suspicion`` (fast failover): also drop a takeover suspicion; the
    first renew after our presence connection came back carries it.
    """

    term: int
    clear_suspicion: bool = False


@dataclass(frozen=True)
class Resign:
    """Delete our lease of ``term`` (if still ours) and announce the vacancy."""

    term: int


@dataclass(frozen=True)
class Leave:
    """Resign (if ``term`` is given) and remove our membership: the last command."""

    term: int | None


@dataclass(frozen=True)
class Heartbeat:
    """Refresh our membership; ``full`` also prunes and re-measures the server clock.

    ``announce`` (full only) publishes ``joined`` even if our membership was
    present: after a routine refresh had to re-add us.
    """

    full: bool
    read_lease: bool
    announce: bool = False


@dataclass(frozen=True)
class Watch:
    """Fast failover: count the listeners of the leader's presence channel (and, when
    ``count_members``, the kind's live members, to spread the watch among them)."""

    holder: str
    term: int
    count_members: bool = False


@dataclass(frozen=True)
class TakeOver:
    """Fast failover: take the lease of ``holder`` if its presence has been gone for a
    whole window (or record that it is gone now)."""

    known_term: int
    holder: str
    term: int


# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class Effect:
    """What the election tells its owner; the owner maps each kind to a signal
    (:func:`raftredis.signals.for_effect`) and delivers it off the heartbeat thread."""


@dataclass(frozen=True)
class StateChanged(Effect):
    """This instance's state changed from ``old`` to ``new``, in ``term``."""

    old: State
    new: State
    term: int


@dataclass(frozen=True)
class Elected(Effect):
    """This instance leads now, in ``term``: start the leader's work."""

    term: int


@dataclass(frozen=True)
class Defeated(Effect):
    """This instance follows now (``leader``: who leads, if known)."""

    leader: str | None
    term: int


@dataclass(frozen=True)
class LeaderChanged(Effect):
    """The leader this instance knows of changed (None: no leader known)."""

    leader: str | None
    term: int


Command = Union[Acquire, Renew, Resign, Leave, Heartbeat, Watch, TakeOver, Effect]
