"""Fast failover, the part of the election that replaces a crashed leader within
about a presence window instead of at the end of its lease.

The leader proves, every ``presence_interval``, that a connection of its own is
alive; it leads only within ``presence_window`` of its last proof and otherwise
suspends (keeping the lease). The followers take turns watching the leader's
presence channel and take the lease over once Redis has seen it gone for a whole
window (the takeover script checks that by Redis' clock). See design note n.

:class:`FastFailover` is a mixin of :class:`~raftredis.election.Election`: its
methods read and write the machine's state, and are kept here so that the
machine's module stays about the lease.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from ..models import State
from ..timing import Timings
from .commands import Command, TakeOver
from .events import (
    Lease,
    PresenceLost,
    PresenceProof,
    PresenceRestored,
    TakeoverResult,
    WatchResult,
)

__all__ = ["WATCH_SPACING", "FastFailover"]

#: The followers of a kind watch together once per this many presence intervals, so
#: that the watch and the leader's pings stay within the kind's Redis budget.
WATCH_SPACING = 1.2


class FastFailover:
    """Presence proofs, the shared watch and the takeover (a mixin of Election)."""

    # The machine's state that fast failover reads and writes (set by Election).
    my_id: str
    timings: Timings
    fast: bool
    state: State
    leader_id: str | None
    lease_expires: float | None
    kind_size: int
    validated_epoch: int
    _rng: random.Random
    _held: tuple[int, float] | None
    _leadership: tuple[int, float] | None
    _presence_ok: bool
    _presence_until: float | None
    _validate_next: bool
    _restoring_epoch: int | None
    _suspended_since: float | None
    _next_watch: float | None
    _next_takeover: float | None
    _next_renew: float | None
    _watch_rank: int | None
    _server_offset: float | None

    if TYPE_CHECKING:  # the machine's own steps, which the takeover ends in

        @property
        def proposal_floor(self) -> int: ...
        def _take(
            self, now: float, sent_at: float, term: int, deadline: float, present: bool
        ) -> list[Command]: ...
        def _follow(self, now: float, lease: Lease) -> list[Command]: ...
        def _emit_state(self, old: State, new: State) -> list[Command]: ...
        def _set_leader(self, leader: str | None) -> list[Command]: ...
        def _see_term(self, term: int) -> None: ...
        def _schedule_acquire(self, at: float) -> None: ...
        def _jitter(self) -> float: ...
        def _publish_leadership(self) -> None: ...

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
