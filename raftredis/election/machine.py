"""The election state machine: pure, sans-IO, driven by events that carry the time.

How it decides (the lease, terms, hints, demotion before resignation) is told
in the package's docstring, :mod:`raftredis.election`.
"""

from __future__ import annotations

import random

from ..models import State
from ..timing import Timings
from ..wire import ControlMessage, ControlType
from .commands import (
    Acquire,
    Command,
    Defeated,
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
from .fast import WATCH_SPACING, FastFailover

__all__ = ["COUNT_MEMBERS_EVERY", "HINT_WINDOW", "WATCH_SPACING", "Election"]

#: How far above the known term an ``elected`` notice's term is believed.
HINT_WINDOW = 1000
#: Fast failover: one watch in this many also reads the kind's members (their number,
#: and this follower's turn among them).
COUNT_MEMBERS_EVERY = 16


class Election(FastFailover):
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

    def stamp(self, now: float) -> tuple[int, bool]:
        """(term, leads at ``now``) for an outgoing message, in one atomic read."""
        term = self.leader_term(now)
        return (self.term, False) if term is None else (term, True)

    def deadline_of(self, term: int) -> float | None:
        """The local deadline of our leadership in ``term``, or None if we do not lead in it."""
        leadership = self._leadership
        if leadership is None or leadership[0] != term:
            return None
        if self.fast:
            return min(leadership[1], self._presence_until or float("-inf"))
        return leadership[1]

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
        # Joined and meta notices only feed signals: the control listener hands them
        # to the dispatcher (raftredis.membership) and never posts them here.
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

    def abandon(self) -> list[Command]:
        """Give up at once, for an owner that cannot go on (its loop keeps failing).

        Not leading from the first line on, whatever happens after; stopped.
        Returns the state signals and a Leave that also resigns a held lease
        (best effort: if it fails, the lease runs out by itself).
        """
        self._leadership = None
        term = self._held[0] if self._held is not None else None
        self._held = None
        old, self.state = self.state, State.FOLLOWER
        self.stopped = True
        out: list[Command] = []
        if old is not State.FOLLOWER:
            out = [StateChanged(old, State.FOLLOWER, self.term), Defeated(None, self.term)]
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

    def _publish_leadership(self) -> None:
        """Set what is_leader reads: the lease deadline, and the presence deadline."""
        held = self._held
        if self.state is not State.LEADER or held is None:
            self._leadership = None
            return
        self._leadership = (held[0], held[1])

    def _set_leader(self, leader: str | None) -> list[Command]:
        if leader == self.leader_id:
            return []
        self.leader_id = leader
        return [LeaderChanged(leader, self.term)]

    def _set_state(self, new: State) -> list[Command]:
        old = self.state
        if new is old:
            return []
        self.state = new
        if new is not State.LEADER:
            self._leadership = None
        return self._emit_state(old, new)

    def _emit_state(self, old: State, new: State) -> list[Command]:
        out: list[Command] = [StateChanged(old, new, self.term)]
        if new is State.LEADER:
            out.append(Elected(self.term))
        elif new is State.FOLLOWER:
            out.append(Defeated(self.leader_id, self.term))
        return out
