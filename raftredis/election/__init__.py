"""The election: a pure state machine, sans-IO, driven by events that carry the time.

Theory of operation
-------------------
Redis is the arbiter. One key holds the lease, ``"<term> <holder id> <expiry ms>"``,
written only by atomic scripts. This module decides *when* to talk to Redis and
*what* the replies mean; it never talks to Redis, never reads a clock and never
starts a thread. The heartbeat thread (``heartbeat.py``) feeds it events and
carries out the commands it returns, so every timing decision here is tested
with a fake clock.

States: FOLLOWER, CANDIDATE (an acquire is in flight), LEADER.

* A follower knows the lease from its periodic heartbeat (which reads the lease
  value) and from ``elected``/``resigned``/``left`` control notices. It
  campaigns (``Acquire``) when the lease it last saw has expired (plus a small
  jitter), or at once, with jitter, on a vacancy notice.
* ``Acquire`` proposes ``max(stored term, highest term seen) + 1``; the script
  takes the lease only if nobody holds it.
* A leader counts its lease from the moment it *sent* the command that took or
  renewed it (Redis applied it later, so Redis' expiry is later still). It
  calls itself leader only until ``sent_at + renew_deadline``, which is
  ``lease_ttl - renew_deadline`` before Redis can expire the lease. It renews
  every ``renew_interval``; if renewing keeps failing it demotes itself at the
  deadline, before anyone else can take the lease.
* Demotion always happens here, locally, *before* a resign reaches Redis, so
  ``is_leader`` is false before anyone else can be elected.
* Control notices are hints, never facts: anyone who can publish on the Redis
  server can forge one. An ``elected`` notice makes an instance read the
  lease now; a ``resigned``/``left`` notice of the leader makes a follower
  campaign now. Both are rate-limited, so a flood of notices costs Redis a
  bounded number of commands. ``current_term`` and the leader are learned
  only from Redis. The term an ``elected`` notice names is kept apart, as a
  *hint*, and only raises what this instance proposes when it campaigns: if
  Redis loses its data right after an election, before anyone read the new
  lease, the next term is still above it. A hint may exceed the known term by
  at most ``HINT_WINDOW``, so forged notices cannot run terms up quickly.

Signals are returned as :class:`~raftredis.election.commands.Effect` values
(elected, demoted, leader changed...); the owner delivers them.

The package: the machine (``machine``, with fast failover in ``fast``), the
events it is fed (``events``) and the commands and effects it returns
(``commands``), all re-exported here.
"""

from __future__ import annotations

from .commands import (
    Acquire,
    Command,
    Defeated,
    Effect,
    Elected,
    Heartbeat,
    LeaderChanged,
    Leave,
    Renew,
    Resign,
    StateChanged,
    TakeOver,
    Watch,
)
from .events import (
    AcquireResult,
    BackendFailed,
    ControlReceived,
    Event,
    HeartbeatResult,
    Lease,
    PresenceLost,
    PresenceProof,
    PresenceRestored,
    Reconnected,
    ReelectRequested,
    RenewResult,
    Start,
    StopRequested,
    TakeoverResult,
    Tick,
    WatchResult,
)
from .machine import COUNT_MEMBERS_EVERY, HINT_WINDOW, WATCH_SPACING, Election

__all__ = [
    "COUNT_MEMBERS_EVERY",
    "HINT_WINDOW",
    "WATCH_SPACING",
    "Acquire",
    "AcquireResult",
    "BackendFailed",
    "Command",
    "ControlReceived",
    "Defeated",
    "Effect",
    "Elected",
    "Election",
    "Event",
    "Heartbeat",
    "HeartbeatResult",
    "LeaderChanged",
    "Lease",
    "Leave",
    "PresenceLost",
    "PresenceProof",
    "PresenceRestored",
    "Reconnected",
    "ReelectRequested",
    "Renew",
    "RenewResult",
    "Resign",
    "Start",
    "StateChanged",
    "StopRequested",
    "TakeOver",
    "TakeoverResult",
    "Tick",
    "Watch",
    "WatchResult",
]
