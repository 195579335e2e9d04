"""The election state machine: pure, sans-IO, driven by events that carry the time.

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

Signals are returned as :class:`Emit` commands; the owner delivers them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from .models import State
from .timing import Timings
from .wire import ControlMessage, ControlType

__all__ = [
    "Acquire",
    "AcquireResult",
    "BackendFailed",
    "Command",
    "ControlReceived",
    "Election",
    "Emit",
    "Event",
    "Heartbeat",
    "HeartbeatResult",
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
    "StopRequested",
    "TakeOver",
    "TakeoverResult",
    "Tick",
    "Watch",
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

# -------------------------------------------------------------- commands


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
class Emit:
    """Deliver a signal to receivers (never on the heartbeat thread)."""

    signal: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


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


Command = Union[Acquire, Renew, Resign, Leave, Heartbeat, Watch, TakeOver, Emit]


#: How far above the known term an ``elected`` notice's term is believed.
HINT_WINDOW = 1000
#: Fast failover: one watch in this many also reads the kind's members (their number,
#: and this follower's turn among them).
COUNT_MEMBERS_EVERY = 16
#: Fast failover: the followers of a kind watch together once per this many
#: presence intervals, so that the watch (about 9 commands a second at the
#: defaults) and the leader's pings (10) stay within 20 commands a second.
WATCH_SPACING = 1.2


class Election:
    """The state machine. Feed it events with :meth:`handle`; run what it returns.

    ``next_wakeup`` is the monotonic time at which it wants a :class:`Tick`.
    """

    def __init__(
        self,
        my_id: str,
        timings: Timings,
        rng: random.Random | None = None,
        *,
        fast: bool = False,
    ) -> None:
        self.my_id = my_id
        self.timings = timings
        #: Fast failover (see the module docstring): presence proofs, watch, takeover.
        self.fast = fast
        self._rng = rng if rng is not None else random.Random()
        self.state = State.FOLLOWER
        self.term = 0
        self.leader_id: str | None = None
        # Leader only: (term, deadline), replaced as one object so that another
        # thread never sees a leader with a term it does not hold.
        self._leadership: tuple[int, float] | None = None
        # The lease we hold in Redis, (term, local deadline): while we lead, and
        # while leadership is suspended for want of a presence proof.
        self._held: tuple[int, float] | None = None
        # Fast failover: whether our presence connection is known alive since the
        # last check (False from its loss until a renew sent after it came back
        # succeeded), and until when the last proof lets us lead.
        self._presence_ok = True
        self._presence_until: float | None = None
        self._validate_next = False  # the next Renew clears a takeover suspicion
        #: The presence connection (by the listener's epoch) whose proofs count; the
        #: listener reads it. Epoch 0 is the one subscribed before start() campaigned.
        self.validated_epoch = 0
        self._restoring_epoch: int | None = None
        self._suspended_since: float | None = None  # holding the lease, not leading
        self._next_watch: float | None = None
        self._next_takeover: float | None = None
        self._watches = 0
        #: Live members of the kind, as last counted (spreads the presence watch).
        self.kind_size = 1
        # Where this follower's watches fall in the shared period (see _watch_at).
        self._watch_rank: int | None = None
        self._server_offset: float | None = None
        #: Follower only: when the lease we last saw ends (local clock).
        self.lease_expires: float | None = None
        self.started = False
        self.stopped = False
        self._next_renew: float | None = None
        self._next_acquire: float | None = None
        self._next_heartbeat: float | None = None
        self._next_full_heartbeat: float | None = None
        self._announce = False
        self._confirm = False  # the next heartbeat reads the lease, even a leader's
        self._last_hint = float("-inf")  # when a notice last caused Redis traffic
        self._hint_term = 0  # highest term named by a believable elected notice

    # ------------------------------------------------------------ queries

    def is_leader(self, now: float) -> bool:
        """True while leader and ``now`` is before the local lease deadline."""
        return self.leader_term(now) is not None

    def leader_term(self, now: float) -> int | None:
        """The term this instance leads in at ``now``, or None: one atomic read.

        With fast failover, also only within ``presence_window`` of the last
        proof's send time; proofs may arrive on another thread (see
        :meth:`presence_proof`), so the presence deadline is read here, now.
        """
        leadership = self._leadership
        if leadership is None or now >= leadership[1]:
            return None
        if self.fast:
            until = self._presence_until
            if until is None or now >= until:
                return None
        return leadership[0]

    def deadline_of(self, term: int) -> float | None:
        """The local deadline of our leadership in ``term``, or None if we do not lead in it."""
        leadership = self._leadership
        if leadership is None or leadership[0] != term:
            return None
        if self.fast:
            return min(leadership[1], self._presence_until or float("-inf"))
        return leadership[1]

    def presence_proof(self, sent_at: float) -> bool:
        """Fast failover, from the presence listener's thread: a pong proved our presence
        connection alive after ``sent_at``. Thread-safe (one float that only grows until
        the connection is lost, read as is by :meth:`leader_term`), so a busy heartbeat
        thread never delays a proof. The listener calls it only for a connection whose
        proofs count (see ``validated_epoch``). Returns True when leadership is suspended:
        post a :class:`PresenceProof` then, for the heartbeat thread to resume it."""
        if not self.fast or not self._presence_ok:
            return False
        until = sent_at + self.timings.presence_window
        current = self._presence_until
        if current is None or until > current:
            self._presence_until = until
        return self._held is not None and self.state is not State.LEADER

    @property
    def lease_deadline(self) -> float | None:
        """Leader only: the instant this instance stops calling itself leader."""
        leadership = self._leadership
        return None if leadership is None else leadership[1]

    @property
    def holds_lease(self) -> bool:
        """True while this instance holds the lease in Redis (leading, or suspended)."""
        return self._held is not None

    @property
    def watch_period(self) -> float:
        """Fast failover: how often this follower counts the leader's presence listeners.

        The followers share the watch: together they look once every
        :data:`WATCH_SPACING` presence intervals, one command each time (one
        watch in :data:`COUNT_MEMBERS_EVERY` also counts the members).
        """
        followers = max(1, self.kind_size - 1)
        return self.timings.presence_interval * WATCH_SPACING * followers

    def _watch_at(self, now: float, first: bool = False) -> float:
        """When this follower should watch next.

        The followers' watches are spread evenly over the shared period: follower
        ``rank`` (by id, among the members other than the leader) watches when the
        Redis server's clock is ``rank`` slots into the period, so a crash is seen
        within one slot (``WATCH_SPACING`` presence intervals) of happening. Random
        phases would leave gaps of several slots now and then. Until the rank and
        the server clock are known, a random point of the period (``first``) or one
        period on. ``first`` also allows a watch sooner than half a period away.
        """
        period = self.watch_period
        rank, offset = self._watch_rank, self._server_offset
        if rank is None or offset is None:
            return now + (self._rng.uniform(0.0, period) if first else period)
        followers = max(1, self.kind_size - 1)
        phase = (rank % followers) * (period / followers)
        earliest = now + offset + (0.0 if first else period / 2)
        slots = math.ceil((earliest - phase) / period)
        return phase + slots * period - offset

    @property
    def takeover_window(self) -> float:
        """Fast failover: how long a leader's presence must stay gone, by Redis' clock,
        before its lease is taken: ``presence_window`` and a margin for clock rates."""
        window = self.timings.presence_window
        return window * 1.01 + 0.005

    @property
    def proposal_floor(self) -> int:
        """The highest term this instance believes was started: what it campaigns above."""
        return max(self.term, self._hint_term)

    @property
    def next_wakeup(self) -> float | None:
        """When the owner should feed a :class:`Tick` (None: only on events)."""
        if self.stopped or not self.started:
            return None
        times = [
            t
            for t in (
                # Full heartbeats ride on a regular one, so they need no wake-up of their own.
                self._next_heartbeat,
                self._next_acquire if self.state is State.FOLLOWER else None,
                self._next_renew if self._held is not None else None,
                self._held[1] if self._held is not None else None,
                self.lease_deadline if self.state is State.LEADER else None,
                # Fast failover: check then whether a proof has come meanwhile (proofs
                # arrive on another thread), and suspend if not.
                self._presence_until if self.state is State.LEADER and self.fast else None,
                self.lease_expires if self.state is State.FOLLOWER else None,
                self._next_watch if self._watching and self.leader_id else None,
                self._next_takeover if self._watching and self.leader_id else None,
                self._give_up_at,
            )
            if t is not None
        ]
        return min(times) if times else None

    # ------------------------------------------------------------- events

    def handle(self, event: Event) -> list[Command]:
        """Apply one event; return the commands to carry out, in order."""
        if self.stopped:
            return []
        if isinstance(event, Start):
            return self._on_start(event.now, event.members)
        if not self.started:
            return []
        if isinstance(event, Tick):
            return self._on_tick(event.now)
        if isinstance(event, AcquireResult):
            return self._on_acquire_result(event)
        if isinstance(event, RenewResult):
            return self._on_renew_result(event)
        if isinstance(event, HeartbeatResult):
            return self._on_heartbeat_result(event)
        if isinstance(event, BackendFailed):
            return self._on_backend_failed(event)
        if isinstance(event, ControlReceived):
            return self._on_control(event.now, event.message)
        if isinstance(event, ReelectRequested):
            return self._on_reelect(event.now)
        if isinstance(event, StopRequested):
            return self._on_stop()
        if isinstance(event, Reconnected):
            self._next_heartbeat = self._next_full_heartbeat = event.now
            return []
        if isinstance(event, PresenceProof):
            return self._on_presence_proof(event)
        if isinstance(event, PresenceLost):
            return self._on_presence_lost(event)
        if isinstance(event, PresenceRestored):
            return self._on_presence_restored(event)
        if isinstance(event, WatchResult):
            return self._on_watch_result(event)
        if isinstance(event, TakeoverResult):
            return self._on_takeover_result(event)
        raise TypeError(f"unknown event {event!r}")

    def _on_start(self, now: float, members: int | None = None) -> list[Command]:
        if self.started:
            return []
        self.started = True
        if members is not None:
            self.kind_size = max(1, members)
        t = self.timings
        # start() ran a full heartbeat (join) just before this.
        self._next_heartbeat = now + t.membership_refresh
        self._next_full_heartbeat = now + t.clock_sync_interval
        return [*self._set_state(State.CANDIDATE), Acquire(self.proposal_floor)]

    def _on_tick(self, now: float) -> list[Command]:
        t = self.timings
        out: list[Command] = []
        if self._held is not None:
            term, until = self._held
            if now >= until:
                # Renewing failed until the deadline: give up before Redis expires it.
                out += self._demote(leader=None)
            elif (
                self._suspended_since is not None
                and now - self._suspended_since >= self.timings.renew_deadline
            ):
                # Our presence could not be proven for that long: let another lead.
                out += self._demote(leader=None)
                self._next_acquire = now + self.timings.reelect_backoff + self._jitter()
                out.append(Resign(term))
            else:
                if self.state is State.LEADER and not self._presence_valid(now):
                    # No recent proof that our presence connection lives: it may be
                    # gone, and then another may take the lease once the window is
                    # over. Stop leading now; keep the lease, and lead again on the
                    # next proof (see _resume).
                    out += self._suspend(now)
                if self._next_renew is not None and now >= self._next_renew:
                    self._next_renew = None  # set again by the result
                    out.append(Renew(term, clear_suspicion=self._validate_next))
        elif self.state is State.FOLLOWER:
            if self.lease_expires is not None and now >= self.lease_expires:
                # The lease we last saw is over and nothing refreshed it.
                self.lease_expires = None
                out += self._set_leader(None)
            if self._next_acquire is not None and now >= self._next_acquire:
                self._next_acquire = None
                out += self._set_state(State.CANDIDATE)
                out.append(Acquire(self.proposal_floor))
            elif self._watching and self.leader_id is not None:
                if self._next_takeover is not None and now >= self._next_takeover:
                    self._next_takeover = None
                    out.append(TakeOver(self.proposal_floor, self.leader_id, self.term))
                elif self._next_watch is not None and now >= self._next_watch:
                    self._next_watch = self._watch_at(now)
                    self._watches += 1
                    count = self._watches % COUNT_MEMBERS_EVERY == 1
                    out.append(Watch(self.leader_id, self.term, count_members=count))
        if self._next_heartbeat is not None and now >= self._next_heartbeat:
            full = self._next_full_heartbeat is not None and now >= self._next_full_heartbeat
            leader = self.state is State.LEADER
            if full:
                interval = t.member_expiry if leader else t.clock_sync_interval
                self._next_full_heartbeat = now + interval
            self._next_heartbeat = now + t.membership_refresh
            # A leader learns about its lease from renewing; only a full
            # heartbeat or a notice to confirm reads it, as a cross-check.
            read = full or not leader or self._confirm
            announce = full and self._announce
            if full:
                self._announce = False
            self._confirm = False
            out.append(Heartbeat(full=full, read_lease=read, announce=announce))
        return out

    def _on_acquire_result(self, ev: AcquireResult) -> list[Command]:
        t = self.timings
        lease = ev.lease
        self._see_term(lease.term)
        if lease.holder == self.my_id:
            # Expiry in Redis is at least sent_at + remaining; keep the same
            # safety margin as after a renew.
            deadline = ev.sent_at + lease.remaining - (t.lease_ttl - t.renew_deadline)
            if deadline <= ev.now:
                # A stale lease of ours, too close to its end to lead on: free it.
                self._next_acquire = ev.now + self._jitter()
                return [*self._set_state(State.FOLLOWER), Resign(lease.term)]
            return self._take(ev.now, ev.sent_at, lease.term, deadline, ev.present)
        out = self._follow(ev.now, lease)
        return [*self._set_state(State.FOLLOWER), *out]

    def _take(
        self, now: float, sent_at: float, term: int, deadline: float, present: bool
    ) -> list[Command]:
        """We hold the lease of ``term`` until ``deadline``: lead, if our presence is
        proven (fast failover: ``present`` at the script, or a proof since)."""
        t = self.timings
        self.term = term
        self._held = (term, deadline)
        self.lease_expires = None
        self._next_acquire = self._next_watch = self._next_takeover = None
        self._next_renew = sent_at + t.renew_interval
        self._next_full_heartbeat = min(self._next_full_heartbeat or now, now + t.member_expiry)
        if self.fast and present:
            # Our presence channel had a listener as the lease was taken (which also
            # dropped any takeover suspicion): a proof, sent at sent_at.
            until = sent_at + t.presence_window
            self._presence_until = max(self._presence_until or until, until)
        if not self._presence_valid(now):
            # Held, but our presence connection is not proven yet: lead once it is.
            self._suspended_since = now
            return [*self._set_state(State.FOLLOWER), *self._set_leader(self.my_id)]
        out = [*self._set_state(State.LEADER), *self._set_leader(self.my_id)]
        self._publish_leadership()
        return out

    def _on_renew_result(self, ev: RenewResult) -> list[Command]:
        t = self.timings
        if self._held is None:
            return []
        if ev.renewed:
            term, until = self._held
            self._held = (term, max(until, ev.sent_at + t.renew_deadline))
            self._next_renew = ev.sent_at + t.renew_interval
            if ev.validated and self.fast and self._restoring_epoch is not None:
                # Sent after our presence connection came back subscribed, and still
                # ours: nobody took it meanwhile, and nobody can while it stays.
                self.validated_epoch = self._restoring_epoch
                self._restoring_epoch = None
                self._presence_ok = True
                self._validate_next = False
                until = ev.sent_at + t.presence_window
                self._presence_until = max(self._presence_until or until, until)
            self._publish_leadership()
            return self._resume(ev.now)
        # Not ours any more: someone else holds it, or it expired. Demote
        # before learning the newer term (see _demote).
        lease = ev.lease
        out = self._demote(lease.holder if lease else None, lease.term if lease else None)
        if lease is not None:
            out += self._follow(ev.now, lease)
        else:
            self._next_acquire = ev.now + self._jitter()
        return out

    def _on_heartbeat_result(self, ev: HeartbeatResult) -> list[Command]:
        out: list[Command] = []
        if ev.rejoined:
            # We had been pruned: re-announce ourselves with a full heartbeat.
            self._next_heartbeat = self._next_full_heartbeat = ev.now
            self._announce = True
        if not ev.lease_read:
            return out
        if ev.members is not None:
            self.kind_size = max(1, ev.members)
        lease = ev.lease
        if self._held is not None:
            if lease is None:
                # No lease key: given up by nobody (we lead), so lost by Redis (evicted,
                # flushed). Renew now: that puts it back while it is ours, or says whose
                # it is (see renew.lua).
                self._next_renew = ev.now
            elif lease.holder != self.my_id:
                out += self._demote(lease.holder, lease.term)
                out += self._follow(ev.now, lease)
            return out
        if lease is not None:
            self._see_term(lease.term)
        if lease is None and self.lease_expires is not None and ev.now < self.lease_expires:
            # Redis shows no lease, but the one we saw has not run out, and nobody said
            # it was given up (a resign notice would have): it may have been evicted or
            # flushed, not freed. It is held until it would have run out, and one renew
            # interval more, so that its leader's next renew can put it back first; the
            # campaign then asks Redis, whose copy of the lease may say more.
            later = self.lease_expires + self.timings.renew_interval + self._jitter()
            if self._next_acquire is None or self._next_acquire < later:
                self._next_acquire = later
            return out
        if lease is None:
            self.lease_expires = None
            out += self._set_leader(None)
            self._schedule_acquire(ev.now + self._jitter())
        elif lease.holder == self.my_id:
            # Our own lease from before a demotion: free it so an election can run.
            self._next_acquire = ev.now + self._jitter()
            out.append(Resign(lease.term))
        else:
            out += self._follow(ev.now, lease)
        return out

    def _on_backend_failed(self, ev: BackendFailed) -> list[Command]:
        t = self.timings
        cmd = ev.command
        if isinstance(cmd, Renew):
            if cmd.clear_suspicion:
                self._validate_next = True  # the next renew must clear it instead
            if ev.refused and self._held is not None:
                # Redis answered, and will not extend the lease (out of memory, a
                # demoted primary...): lead no longer on a lease it may not keep. The
                # lease runs out by itself; campaign once it has.
                deadline = self._held[1]
                out = self._demote(leader=None)
                self.lease_expires = deadline + (t.lease_ttl - t.renew_deadline)
                self._next_acquire = self.lease_expires + self._jitter()
                return out
            # Retry soon; the deadline check in _on_tick demotes if it keeps failing.
            self._next_renew = ev.now + t.renew_interval / 2
            return []
        if isinstance(cmd, Acquire):
            # Redis is unhappy: stop campaigning, let the heartbeat tell us when it is back.
            self._next_heartbeat = min(self._next_heartbeat or ev.now, ev.now + t.renew_interval)
            return self._set_state(State.FOLLOWER)
        if isinstance(cmd, TakeOver) and self._watching:
            # Try again at the next watch (which counts the listeners anew).
            return []
        if isinstance(cmd, Heartbeat):
            self._next_heartbeat = min(self._next_heartbeat or ev.now, ev.now + t.renew_interval)
            # Retry with the full script: it also repairs keys that hold junk.
            self._next_full_heartbeat = ev.now + (t.renew_interval if cmd.full else 0.0)
        return []

    def _on_control(self, now: float, msg: ControlMessage) -> list[Command]:
        out: list[Command] = []
        if msg.type is ControlType.ELECTED:
            if msg.term is not None and self.term < msg.term <= self.term + HINT_WINDOW:
                self._hint_term = max(self._hint_term, msg.term)
            if msg.id != self.my_id and (msg.id != self.leader_id or (msg.term or 0) > self.term):
                # Someone may have been elected: read the lease to know (a hint, see top).
                at = self._hint_time(now)
                self._confirm = True
                if self._next_heartbeat is None or at < self._next_heartbeat:
                    self._next_heartbeat = at
            return out
        if msg.type in (ControlType.RESIGNED, ControlType.LEFT):
            if msg.type is ControlType.LEFT:
                out.append(Emit("instance_left", {"instance_id": msg.id}))
            vacancy = msg.type is ControlType.RESIGNED or msg.id == self.leader_id
            held = self._held is not None
            if msg.id != self.my_id and vacancy and self.state is State.FOLLOWER and not held:
                # A vacancy, maybe (even if we had not yet heard of that leader):
                # campaigning is itself the check. Until it answers, we know of
                # no leader; a forged notice costs one campaign, nothing more.
                if msg.id == self.leader_id:
                    self.lease_expires = None
                    out += self._set_leader(None)
                self._schedule_acquire(self._hint_time(now) + self._jitter())
            return out
        if msg.type is ControlType.JOINED and msg.id != self.my_id:
            out.append(Emit("instance_joined", {"instance": msg.instance}))
        elif msg.type is ControlType.META and msg.id != self.my_id:
            out.append(Emit("meta_changed", {"instance": msg.instance}))
        return out

    def _on_reelect(self, now: float) -> list[Command]:
        # A suspended leader (fast failover) holds the lease and would lead again on
        # its next proof: it gives the lease up too.
        if self.state is not State.LEADER and self._held is None:
            return []
        term = self._held[0] if self._held is not None else self.term
        out = self._demote(leader=None)
        # Give the others the first chance at the lease.
        self._next_acquire = now + self.timings.reelect_backoff + self._jitter()
        return [*out, Resign(term)]

    def _on_stop(self) -> list[Command]:
        term = self._held[0] if self._held is not None else None
        out: list[Command] = []
        if self.state is not State.FOLLOWER or self._held is not None:
            out += self._demote(leader=None)
        self.stopped = True
        return [*out, Leave(term)]

    # ------------------------------------------------------------ helpers

    def _jitter(self) -> float:
        return self._rng.uniform(0.0, self.timings.vacancy_jitter)

    def _hint_time(self, now: float) -> float:
        """When a notice may next cause Redis traffic: at most once per vacancy_jitter."""
        at = max(now, self._last_hint + self.timings.vacancy_jitter)
        self._last_hint = at
        return at

    def _schedule_acquire(self, at: float) -> None:
        if self._next_acquire is None or at < self._next_acquire:
            self._next_acquire = at

    def _see_term(self, term: int) -> None:
        if term > self.term:
            self.term = term

    def _follow(self, now: float, lease: Lease) -> list[Command]:
        """Record ``lease`` (held by someone else) and plan to campaign when it ends."""
        # A real lease never has more than lease_ttl left. A value claiming more
        # (junk, or a lease without expiry) is believed for lease_ttl from when
        # we first saw it, then checked by campaigning (acquire replaces a lease
        # that has no expiry in Redis).
        claimed = max(lease.remaining, 0.0)
        remaining = min(claimed, self.timings.lease_ttl)
        at = now + remaining + self._jitter()
        # (Clock estimates may overshoot by a few ms: only a clear excess counts.)
        suspicious = claimed > 1.25 * self.timings.lease_ttl
        if suspicious and lease.holder == self.leader_id and self._next_acquire:
            at = min(at, self._next_acquire)
        self.lease_expires = now + remaining
        self._next_acquire = at
        if self.fast and lease.holder != self.leader_id:
            # A new leader: the followers are others now, so count them (and our
            # place among them) at the first watch.
            self._next_takeover = None
            self._watches = 0
            self._next_watch = self._watch_at(now, first=True)
        elif self.fast and self._next_watch is None:
            self._next_watch = self._watch_at(now, first=True)
        return self._set_leader(lease.holder)

    def _demote(self, leader: str | None, newer_term: int | None = None) -> list[Command]:
        """Stop leading. The leadership goes first, then a newer term is learned:
        another thread must never see this instance lead with a term it does not hold."""
        old = self.state
        self._leadership = None
        self._held = None
        self._next_renew = None
        self._presence_until = None
        self._validate_next = False
        self._suspended_since = None
        self.state = State.FOLLOWER
        if newer_term is not None:
            self._see_term(newer_term)
        out = self._set_leader(leader)
        if old is State.FOLLOWER:
            return out
        return [*self._emit_state(old, State.FOLLOWER), *out]

    # ------------------------------------------------------ fast failover

    @property
    def _watching(self) -> bool:
        """A follower of a known leader, holding no lease, watches the leader's presence."""
        return self.fast and self.state is State.FOLLOWER and self._held is None

    @property
    def _give_up_at(self) -> float | None:
        """When a suspended leadership is given up (see _on_tick)."""
        since = self._suspended_since
        if since is None or self._held is None:
            return None
        return since + self.timings.renew_deadline

    def _presence_valid(self, now: float) -> bool:
        """May we lead now, as far as our presence connection goes?"""
        if not self.fast:
            return True
        until = self._presence_until
        return self._presence_ok and until is not None and now < until

    def _publish_leadership(self) -> None:
        """Set what is_leader reads: the lease deadline, and the presence deadline."""
        held = self._held
        if self.state is not State.LEADER or held is None:
            self._leadership = None
            return
        self._leadership = (held[0], held[1])

    def _suspend(self, now: float) -> list[Command]:
        """Stop leading (signals, leader work) but keep the lease and renew it."""
        self._leadership = None
        self.state = State.FOLLOWER
        self._suspended_since = now
        return self._emit_state(State.LEADER, State.FOLLOWER)

    def _resume(self, now: float) -> list[Command]:
        """Lead again on the lease we kept, once our presence is proven anew."""
        held = self._held
        if self.state is State.LEADER or held is None or now >= held[1]:
            return []
        if not self._presence_valid(now):
            return []
        self.state = State.LEADER
        self._suspended_since = None
        self._publish_leadership()
        return [*self._emit_state(State.FOLLOWER, State.LEADER), *self._set_leader(self.my_id)]

    def _on_presence_proof(self, ev: PresenceProof) -> list[Command]:
        self.presence_proof(ev.sent_at)
        return self._resume(ev.now)

    def _on_presence_lost(self, ev: PresenceLost) -> list[Command]:
        if not self.fast:
            return []
        self._presence_ok = False
        self._presence_until = None
        if self.state is State.LEADER:
            return self._suspend(ev.now)
        return []

    def _on_presence_restored(self, ev: PresenceRestored) -> list[Command]:
        if not self.fast:
            return []
        if self._held is None:
            # Nothing to prove now; a lease taken later is proven by its acquire.
            self.validated_epoch = ev.epoch
            self._presence_ok = True
            return []
        # Lead again only after a renew sent now, while it is subscribed: that renew
        # proves nobody took the lease meanwhile, and drops a takeover suspicion.
        self._restoring_epoch = ev.epoch
        self._validate_next = True
        self._next_renew = ev.now
        return []

    def _on_watch_result(self, ev: WatchResult) -> list[Command]:
        if ev.members is not None:
            self.kind_size = max(1, ev.members)
            self._watch_rank = ev.rank
            self._server_offset = ev.server_offset
            if self._next_watch is not None:
                self._next_watch = self._watch_at(ev.now)
        if not self._watching or ev.holder != self.leader_id or ev.listeners > 0:
            return []
        # The leader's presence connection is gone: a crash, or a connection lost
        # while it lives. The takeover script tells which, by waiting the window out.
        if self._next_takeover is None:
            return [TakeOver(self.proposal_floor, ev.holder, ev.term)]
        return []

    def _on_takeover_result(self, ev: TakeoverResult) -> list[Command]:
        t = self.timings
        if self._held is not None or self.state is not State.FOLLOWER:
            return []
        lease = ev.lease
        if ev.status == "vacant":
            self.lease_expires = None
            self._schedule_acquire(ev.now + self._jitter())
            return self._set_leader(None)
        if lease is None:
            return []
        self._see_term(lease.term)
        if ev.status == "acquired":
            deadline = ev.sent_at + lease.remaining - (t.lease_ttl - t.renew_deadline)
            return self._take(ev.now, ev.sent_at, lease.term, deadline, ev.present)
        if ev.status == "suspect":
            self._next_takeover = ev.now + ev.remaining + 0.005
            return []
        self._next_takeover = None
        return self._follow(ev.now, lease)

    def _set_leader(self, leader: str | None) -> list[Command]:
        if leader == self.leader_id:
            return []
        self.leader_id = leader
        return [Emit("leader_changed", {"leader": leader, "term": self.term})]

    def _set_state(self, new: State) -> list[Command]:
        old = self.state
        if new is old:
            return []
        self.state = new
        if new is not State.LEADER:
            self._leadership = None
        return self._emit_state(old, new)

    def _emit_state(self, old: State, new: State) -> list[Command]:
        out: list[Command] = [Emit("state_changed", {"old": old, "new": new, "term": self.term})]
        if new is State.LEADER:
            out.append(Emit("elected", {"term": self.term}))
        elif new is State.FOLLOWER:
            out.append(Emit("defeated", {"leader": self.leader_id, "term": self.term}))
        return out
