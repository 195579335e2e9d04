"""Fast failover in the pure Election, with a fake clock: presence proofs, suspension,
the followers' watch and the takeover, no Redis and no sleeps.

The rules (docs/design-notes.md, "n. Fast failover"):

* a leader leads only while its lease holds *and* a proof of its presence
  connection is recent: it was sent less than ``presence_window`` ago;
* without a recent proof it suspends its leadership (signals, leader work) but
  keeps and renews the lease, and resumes on the next proof, in the same term;
* a lost presence connection counts again only after a renew sent once it is
  back (that renew drops any takeover suspicion);
* a follower watches the leader's presence channel and, when it is empty,
  asks the takeover script, which takes the lease only after a whole window.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from raftredis.election import (
    Acquire,
    AcquireResult,
    BackendFailed,
    Command,
    Effect,
    Election,
    Heartbeat,
    HeartbeatResult,
    Lease,
    Leave,
    PresenceLost,
    PresenceProof,
    PresenceRestored,
    ReelectRequested,
    Renew,
    RenewResult,
    Resign,
    Start,
    StopRequested,
    TakeOver,
    TakeoverResult,
    Tick,
    Watch,
    WatchResult,
)
from raftredis.models import State
from raftredis.signals import for_effect
from raftredis.timing import Timings

T = Timings.from_lease(3.0)  # presence: interval 0.1, window 0.2
W = T.presence_window
ME, OTHER = "me", "other"


def names(commands: list[Command]) -> list[str]:
    return [for_effect(c)[0].name for c in commands if isinstance(c, Effect)]


def io(commands: list[Command]) -> list[Command]:
    return [c for c in commands if not isinstance(c, Effect)]


def election(**kwargs: Any) -> Election:
    return Election(ME, T, random.Random(7), fast=True, **kwargs)


def fast_leader(now: float = 100.0, term: int = 5) -> Election:
    e = election()
    e.handle(Start(now, members=3))
    out = e.handle(AcquireResult(now, now, Lease(term, ME, T.lease_ttl), present=True))
    assert e.state is State.LEADER and "elected" in names(out)
    return e


def fast_follower(now: float = 100.0, term: int = 5, members: int = 3) -> Election:
    e = election()
    e.handle(Start(now, members=members))
    e.handle(AcquireResult(now, now, Lease(term, OTHER, 2.5)))
    assert e.state is State.FOLLOWER and e.leader_id == OTHER
    return e


def tick_until(
    e: Election, until: float, wanted: type, *, lease: Lease | None = None
) -> tuple[float, Any]:
    """Feed ticks at every wake-up until one yields a ``wanted`` command. Renews are
    answered as renewed, and heartbeats with ``lease`` (if given), as Redis would."""
    while True:
        wake = e.next_wakeup
        assert wake is not None and wake <= until, f"no {wanted.__name__} by {until}"
        now = wake
        for command in e.handle(Tick(now)):
            if isinstance(command, wanted):
                return now, command
            if isinstance(command, Renew):
                e.handle(RenewResult(now, now, True, validated=command.clear_suspicion))
            if isinstance(command, Heartbeat) and lease is not None:
                e.handle(HeartbeatResult(now, True, lease))


class TestLeaderPresence:
    def test_leads_on_the_acquires_proof_for_one_window(self) -> None:
        e = fast_leader(100.0)
        assert e.is_leader(100.0 + W - 0.001)
        assert not e.is_leader(100.0 + W)  # the lease alone no longer suffices
        # ... and wakes by then, to suspend (signals, leader work) if no proof came.
        wake = e.next_wakeup
        assert wake is not None and wake <= 100.0 + W

    def test_proofs_from_another_thread_count_at_once(self) -> None:
        """The presence listener hands proofs over directly, not through the heartbeat
        thread's queue: a busy heartbeat never costs a healthy leader its leadership."""
        e = fast_leader(100.0)
        assert e.presence_proof(100.15) is False  # leading: nothing to resume
        assert e.is_leader(100.15 + W - 0.001)
        assert e.handle(Tick(100.0 + W)) == []  # the tick finds the newer proof

    def test_each_proof_extends_leadership_from_its_send_time(self) -> None:
        e = fast_leader(100.0)
        e.handle(PresenceProof(100.15, sent_at=100.1))
        assert e.is_leader(100.1 + W - 0.001) and not e.is_leader(100.1 + W)

    def test_an_acquire_without_presence_holds_but_does_not_lead(self) -> None:
        e = election()
        e.handle(Start(100.0))
        out = e.handle(AcquireResult(100.0, 100.0, Lease(5, ME, T.lease_ttl), present=False))
        assert e.holds_lease and not e.is_leader(100.0) and "elected" not in names(out)

    def test_without_proofs_it_suspends_and_resumes_in_the_same_term(self) -> None:
        """A pause longer than the window: leadership stops (defeated), the lease is kept
        and renewed; the next proof resumes it (elected again, same term)."""
        e = fast_leader(100.0)
        out = e.handle(Tick(100.0 + W))
        assert "defeated" in names(out) and e.state is State.FOLLOWER
        assert e.holds_lease and e.leader_id == ME and e.term == 5
        assert Renew(5) in e.handle(Tick(100.0 + T.renew_interval))  # kept renewing
        out = e.handle(PresenceProof(101.0, sent_at=100.99))
        assert "elected" in names(out) and e.is_leader(101.0) and e.term == 5

    def test_a_late_proof_does_not_resume(self) -> None:
        e = fast_leader(100.0)
        e.handle(Tick(100.0 + W))
        assert e.handle(PresenceProof(101.0, sent_at=100.5)) == []  # sent_at + W < now
        assert not e.is_leader(101.0)

    def test_suspended_for_a_whole_renew_deadline_it_resigns(self) -> None:
        e = fast_leader(100.0)
        e.handle(Tick(100.0 + W))
        now, command = tick_until(e, 100.0 + W + T.renew_deadline + 0.01, Resign)
        assert command == Resign(5) and not e.holds_lease
        assert now >= 100.0 + W + T.renew_deadline

    def test_a_suspended_leader_asked_to_reelect_gives_the_lease_up(self) -> None:
        """reelect() while suspended: it would lead again on its next proof, so it
        resigns the lease it holds, and a proof then resumes nothing."""
        e = fast_leader(100.0)
        e.handle(Tick(100.0 + W))
        assert e.holds_lease and not e.is_leader(100.0 + W)
        out = e.handle(ReelectRequested(100.3))
        assert Resign(5) in out and not e.holds_lease and e.leader_id is None
        assert "elected" not in names(e.handle(PresenceProof(100.35, sent_at=100.34)))
        assert not e.is_leader(100.35)

    def test_a_follower_asked_to_reelect_does_nothing(self) -> None:
        e = fast_follower()
        assert e.handle(ReelectRequested(100.1)) == [] and e.leader_id == OTHER

    def test_a_lost_connection_suspends_at_once_and_its_proofs_stop_counting(self) -> None:
        e = fast_leader(100.0)
        out = e.handle(PresenceLost(100.05))
        assert "defeated" in names(out) and not e.is_leader(100.05)
        assert e.handle(PresenceProof(100.1, sent_at=100.09)) == []
        assert not e.is_leader(100.1)

    def test_restored_presence_counts_after_a_renew_that_clears_the_suspicion(self) -> None:
        e = fast_leader(100.0)
        e.handle(PresenceLost(100.05))
        e.handle(PresenceRestored(100.2, sent_at=100.19))
        assert not e.is_leader(100.2)
        (renew,) = io(e.handle(Tick(100.2)))
        assert renew == Renew(5, clear_suspicion=True)
        out = e.handle(RenewResult(100.21, 100.2, True, validated=True))
        assert "elected" in names(out) and e.is_leader(100.21)
        assert e.is_leader(100.2 + W - 0.001) and not e.is_leader(100.2 + W)
        # Later proofs count again.
        e.handle(PresenceProof(100.35, sent_at=100.3))
        assert e.is_leader(100.3 + W - 0.001)

    def test_a_failed_validating_renew_is_retried_with_the_flag(self) -> None:
        e = fast_leader(100.0)
        e.handle(PresenceLost(100.05))
        e.handle(PresenceRestored(100.2, sent_at=100.19))
        e.handle(Tick(100.2))
        e.handle(BackendFailed(100.45, Renew(5, clear_suspicion=True), "timeout"))
        _, renew = tick_until(e, 101.0, Renew)
        assert renew == Renew(5, clear_suspicion=True)

    def test_a_renew_that_finds_the_lease_taken_demotes(self) -> None:
        e = fast_leader(100.0)
        e.handle(PresenceLost(100.05))
        e.handle(PresenceRestored(100.2, sent_at=100.19))
        e.handle(Tick(100.2))
        e.handle(RenewResult(100.21, 100.2, False, Lease(9, OTHER, 3.0), validated=True))
        assert not e.holds_lease and e.leader_id == OTHER and e.term == 9

    def test_stop_while_suspended_resigns_the_held_lease(self) -> None:
        e = fast_leader(100.0)
        e.handle(PresenceLost(100.05))
        out = e.handle(StopRequested(100.1))
        assert Leave(5) in out

    def test_without_fast_failover_proofs_mean_nothing(self) -> None:
        e = Election(ME, T, random.Random(7))
        e.handle(Start(100.0))
        e.handle(AcquireResult(100.0, 100.0, Lease(5, ME, T.lease_ttl)))
        assert e.is_leader(100.0 + W + 0.5)
        assert e.handle(PresenceLost(100.6)) == [] and e.is_leader(100.6)


class TestWatchAndTakeover:
    def test_followers_share_the_watch(self) -> None:
        e = fast_follower(100.0, members=5)
        assert e.watch_period == pytest.approx(T.presence_interval * 1.2 * 4)
        now, watch = tick_until(e, 100.0 + e.watch_period + 0.01, Watch)
        assert watch.holder == OTHER and watch.term == 5
        now2, _ = tick_until(e, now + e.watch_period + 0.01, Watch)
        assert now2 == pytest.approx(now + e.watch_period)

    def test_one_watch_in_sixteen_counts_the_members(self) -> None:
        e = fast_follower(100.0, members=2)
        counted = []
        now = 100.0
        for _ in range(32):
            now, watch = tick_until(e, now + 1.0, Watch, lease=Lease(5, OTHER, 2.5))
            counted.append(watch.count_members)
        assert counted.count(True) == 2 and counted[0]
        e.handle(WatchResult(now, OTHER, 5, 1, members=7))
        assert e.kind_size == 7

    def test_followers_take_turns_by_the_server_clock(self) -> None:
        """Three followers with unrelated local clocks: once each knows its rank and the
        server clock, their watches fall one slot (period / 3) apart by the server's
        clock, each one period after its last, so a crash waits at most one slot."""
        offsets = [5000.0, 123.4, -50.0]  # server clock minus each local clock
        server_watches: list[list[float]] = []
        for rank, offset in enumerate(offsets):
            e = fast_follower(100.0, members=4)
            e.handle(WatchResult(100.05, OTHER, 5, 1, members=4, rank=rank, server_offset=offset))
            period = e.watch_period
            assert period == pytest.approx(T.presence_interval * 1.2 * 3)
            now, times = 100.05, []
            for _ in range(6):
                now, _ = tick_until(e, now + 2 * period, Watch, lease=Lease(5, OTHER, 2.5))
                times.append(now + offset)
            server_watches.append(times)
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            assert gaps == pytest.approx([period] * 5)
        period = T.presence_interval * 1.2 * 3
        phases = sorted(times[-1] % period for times in server_watches)
        slots = [b - a for a, b in zip(phases, [*phases[1:], phases[0] + period], strict=True)]
        assert slots == pytest.approx([period / 3] * 3, abs=1e-6)

    def test_without_a_rank_the_watch_keeps_its_own_period(self) -> None:
        e = fast_follower(100.0, members=3)
        e.handle(WatchResult(100.05, OTHER, 5, 1, members=3, rank=None, server_offset=7.0))
        now, _ = tick_until(e, 101.0, Watch)
        now2, _ = tick_until(e, now + 1.0, Watch)
        assert now2 == pytest.approx(now + e.watch_period)

    def test_a_new_leader_recounts_the_followers_at_the_first_watch(self) -> None:
        e = fast_follower(100.0, members=3)
        tick_until(e, 101.0, Watch)
        tick_until(e, 101.5, Watch)  # the second watch does not count
        e.handle(AcquireResult(101.6, 101.6, Lease(6, "third", 2.5)))
        assert e.leader_id == "third"
        _, watch = tick_until(e, 102.5, Watch)
        assert watch.holder == "third" and watch.count_members

    def test_a_present_leader_is_left_alone(self) -> None:
        e = fast_follower()
        assert e.handle(WatchResult(100.1, OTHER, 5, listeners=1)) == []

    def test_an_absent_leader_is_taken_over_only_after_the_window(self) -> None:
        e = fast_follower()
        (takeover,) = e.handle(WatchResult(100.1, OTHER, 5, listeners=0))
        assert takeover == TakeOver(5, OTHER, 5)
        e.handle(TakeoverResult(100.11, 100.1, "suspect", Lease(5, OTHER, 2.0), remaining=0.2))
        assert e.state is State.FOLLOWER and e.leader_id == OTHER
        now, again = tick_until(e, 100.4, TakeOver)
        assert now >= 100.31 and again == TakeOver(5, OTHER, 5)
        out = e.handle(
            TakeoverResult(now + 0.001, now, "acquired", Lease(6, ME, 3.0), present=True)
        )
        assert "elected" in names(out) and e.is_leader(now + 0.01) and e.term == 6

    def test_a_takeover_that_finds_the_holder_back_follows_it(self) -> None:
        e = fast_follower()
        e.handle(WatchResult(100.1, OTHER, 5, listeners=0))
        out = e.handle(TakeoverResult(100.11, 100.1, "held", Lease(5, OTHER, 2.4)))
        assert e.state is State.FOLLOWER and e.leader_id == OTHER and out == []
        assert e.lease_expires == pytest.approx(100.11 + 2.4)

    def test_a_vacant_lease_is_campaigned_for(self) -> None:
        e = fast_follower()
        e.handle(WatchResult(100.1, OTHER, 5, listeners=0))
        e.handle(TakeoverResult(100.11, 100.1, "vacant"))
        assert e.leader_id is None
        _, acquire = tick_until(e, 100.11 + T.vacancy_jitter + 0.01, Acquire)
        assert acquire == Acquire(5)

    def test_a_watch_about_an_earlier_leader_is_ignored(self) -> None:
        e = fast_follower()
        assert e.handle(WatchResult(100.1, "someone-else", 4, listeners=0)) == []

    def test_the_leader_does_not_watch(self) -> None:
        e = fast_leader()
        e.handle(HeartbeatResult(100.5, True, Lease(5, ME, 2.5), members=3))
        wake = e.next_wakeup
        assert wake is not None
        assert not any(isinstance(c, (Watch, TakeOver)) for c in e.handle(Tick(wake)))
