"""The pure Election with a fake clock: every timing decision, no Redis, no sleeps."""

from __future__ import annotations

import random
from typing import Any

import pytest

from raftredis.election import (
    Acquire,
    AcquireResult,
    BackendFailed,
    Command,
    ControlReceived,
    Effect,
    Election,
    Heartbeat,
    HeartbeatResult,
    Lease,
    Leave,
    Reconnected,
    ReelectRequested,
    Renew,
    RenewResult,
    Resign,
    Start,
    StopRequested,
    Tick,
)
from raftredis.models import State
from raftredis.signals import for_effect
from raftredis.timing import Timings
from raftredis.wire import ControlMessage, ControlType

T = Timings.from_lease(3.0)  # renew 0.75, deadline 2.0, refresh 1.5, expiry 6.0
ME, OTHER = "me", "other"


def emits(commands: list[Command]) -> list[tuple[str, dict[str, Any]]]:
    """The signals the effects among ``commands`` are announced with, by name."""
    effects = [c for c in commands if isinstance(c, Effect)]
    return [(signal.name, kwargs) for signal, kwargs in map(for_effect, effects)]


def io(commands: list[Command]) -> list[Command]:
    return [c for c in commands if not isinstance(c, Effect)]


def signal_names(commands: list[Command]) -> list[str]:
    return [name for name, _ in emits(commands)]


def new_election() -> Election:
    return Election(ME, T, random.Random(7))


def leader_at(now: float = 100.0, term: int = 5) -> Election:
    """An election that won term ``term`` with an acquire sent at ``now``."""
    e = new_election()
    e.handle(Start(now))
    e.handle(AcquireResult(now, now, Lease(term, ME, T.lease_ttl)))
    assert e.state is State.LEADER
    return e


def follower_of(now: float = 100.0, term: int = 5, remaining: float = 2.5) -> Election:
    e = new_election()
    e.handle(Start(now))
    e.handle(AcquireResult(now, now, Lease(term, OTHER, remaining)))
    assert e.state is State.FOLLOWER
    return e


def control(kind: ControlType, id: str, term: int | None = None) -> ControlMessage:
    return ControlMessage(type=kind, id=id, term=term)


class TestStart:
    def test_start_campaigns_at_once_with_known_term(self) -> None:
        """Start moves to candidate and asks for the lease right away: no start-up delay."""
        e = new_election()
        out = e.handle(Start(10.0))
        assert io(out) == [Acquire(0)]
        assert e.state is State.CANDIDATE
        assert emits(out) == [
            ("state_changed", {"old": State.FOLLOWER, "new": State.CANDIDATE, "term": 0})
        ]

    def test_winning_makes_leader_and_emits_elected_with_term(self) -> None:
        """An acquired lease makes this instance leader of that term."""
        e = new_election()
        e.handle(Start(10.0))
        out = e.handle(AcquireResult(10.01, 10.0, Lease(1, ME, 3.0)))
        assert e.state is State.LEADER and e.term == 1 and e.leader_id == ME
        assert ("elected", {"term": 1}) in emits(out)
        assert ("leader_changed", {"leader": ME, "term": 1}) in emits(out)

    def test_losing_follows_holder_and_emits_defeated(self) -> None:
        """A held lease makes this instance a follower of the holder (seed: defeated)."""
        e = new_election()
        e.handle(Start(10.0))
        out = e.handle(AcquireResult(10.01, 10.0, Lease(4, OTHER, 2.0)))
        assert e.state is State.FOLLOWER and e.leader_id == OTHER and e.term == 4
        assert ("defeated", {"leader": OTHER, "term": 4}) in emits(out)

    def test_events_before_start_are_ignored(self) -> None:
        """Nothing happens before Start."""
        e = new_election()
        assert e.handle(Tick(5.0)) == []
        assert e.next_wakeup is None


class TestLeaderLease:
    def test_deadline_counts_from_send_time(self) -> None:
        """The lease deadline is sent_at + renew_deadline, not reply time."""
        e = new_election()
        e.handle(Start(10.0))
        e.handle(AcquireResult(10.5, 10.0, Lease(1, ME, 3.0)))
        assert e.lease_deadline == pytest.approx(10.0 + T.renew_deadline)
        assert e.is_leader(11.99)
        assert not e.is_leader(12.0)

    def test_renews_every_interval(self) -> None:
        """The leader asks to renew renew_interval after the last renew was sent."""
        e = leader_at(100.0)
        assert e.next_wakeup == pytest.approx(100.0 + T.renew_interval)
        assert Renew(5) in e.handle(Tick(100.75))
        e.handle(RenewResult(100.76, 100.75, True))
        assert e.lease_deadline == pytest.approx(100.75 + T.renew_deadline)
        assert e.next_wakeup == pytest.approx(100.75 + T.renew_interval)

    def test_demotes_itself_at_deadline_when_renews_fail(self) -> None:
        """Two failed renews, then demotion at the deadline, well before Redis expiry."""
        e = leader_at(100.0)
        assert Renew(5) in e.handle(Tick(100.75))
        e.handle(BackendFailed(101.0, Renew(5)))
        assert e.state is State.LEADER
        wake = e.next_wakeup
        assert wake is not None and wake < 102.0
        assert Renew(5) in e.handle(Tick(wake))
        e.handle(BackendFailed(wake + 0.25, Renew(5)))
        out = e.handle(Tick(102.0))
        assert e.state is State.FOLLOWER
        assert not e.is_leader(102.0)
        assert "defeated" in signal_names(out)
        # Redis cannot expire the lease before 100.0 + lease_ttl.
        assert 100.0 + T.lease_ttl > 102.0

    def test_deadline_wakeup_is_scheduled(self) -> None:
        """Even with no renew due, the leader wakes by its deadline and demotes there."""
        e = leader_at(100.0)
        e._next_renew = None  # as if a renew result never came back
        now = 100.0
        while e.state is State.LEADER:
            wake = e.next_wakeup
            assert wake is not None and wake <= 100.0 + T.renew_deadline
            now = wake
            e.handle(Tick(now))
        assert now == pytest.approx(100.0 + T.renew_deadline)

    def test_lost_lease_demotes_at_once(self) -> None:
        """A renew that finds someone else's lease demotes and follows it."""
        e = leader_at(100.0)
        e.handle(Tick(100.75))
        out = e.handle(RenewResult(100.76, 100.75, False, Lease(6, OTHER, 3.0)))
        assert e.state is State.FOLLOWER and e.leader_id == OTHER and e.term == 6
        assert ("defeated", {"leader": OTHER, "term": 6}) in emits(out)

    def test_vanished_lease_demotes_and_campaigns(self) -> None:
        """A renew that finds no lease (Redis lost it) demotes and campaigns soon."""
        e = leader_at(100.0)
        e.handle(Tick(100.75))
        e.handle(RenewResult(100.76, 100.75, False, None))
        assert e.state is State.FOLLOWER
        wake = e.next_wakeup
        assert wake is not None and wake <= 100.76 + T.vacancy_jitter
        assert Acquire(5) in e.handle(Tick(wake))

    def test_refused_renew_demotes_at_once(self) -> None:
        """An error reply (OOM, READONLY) is an answer: the leader steps down now, not at
        its deadline, and campaigns only once its lease has run out in Redis."""
        e = leader_at(100.0)
        assert Renew(5) in e.handle(Tick(100.75))
        out = e.handle(BackendFailed(100.76, Renew(5), "OOM", refused=True))
        assert e.state is State.FOLLOWER and not e.is_leader(100.76)
        assert "defeated" in signal_names(out)
        expires = 100.0 + T.lease_ttl  # the lease in Redis, counted from the acquire
        assert e.lease_expires == pytest.approx(expires)
        assert e._next_acquire is not None and e._next_acquire >= expires
        assert Acquire(5) not in io(e.handle(Tick(expires - 0.01)))

    def test_unanswered_renew_keeps_leading_until_the_deadline(self) -> None:
        """A timeout is silence, not an answer: retry until the deadline."""
        e = leader_at(100.0)
        e.handle(Tick(100.75))
        e.handle(BackendFailed(100.76, Renew(5), "timeout", refused=False))
        assert e.state is State.LEADER

    def test_leader_reading_no_lease_renews_at_once(self) -> None:
        """A leader's cross-check that finds no lease key (evicted, flushed) renews now:
        the renew puts the lease back while it is ours, or says whose it is."""
        e = leader_at(100.0)
        out = e.handle(HeartbeatResult(100.3, True, None))
        assert e.state is State.LEADER and out == []
        assert e.next_wakeup == pytest.approx(100.3)
        assert Renew(5) in e.handle(Tick(100.3))

    def test_late_acquire_reply_uses_remaining(self) -> None:
        """Our own stale lease with little left is not led on: it is resigned."""
        e = new_election()
        e.handle(Start(10.0))
        out = e.handle(AcquireResult(10.01, 10.0, Lease(3, ME, 0.5)))
        assert e.state is State.FOLLOWER
        assert Resign(3) in out

    def test_own_lease_with_time_left_is_led_on_with_margin(self) -> None:
        """An acquire that finds our own lease (a retried script) leads with the same margin."""
        e = new_election()
        e.handle(Start(10.0))
        e.handle(AcquireResult(10.01, 10.0, Lease(3, ME, 2.9)))
        assert e.state is State.LEADER
        assert e.lease_deadline == pytest.approx(10.0 + 2.9 - (T.lease_ttl - T.renew_deadline))

    def test_full_heartbeat_showing_other_holder_demotes(self) -> None:
        """A leader whose cross-check reads another holder steps down."""
        e = leader_at(100.0)
        out = e.handle(HeartbeatResult(101.0, True, Lease(9, OTHER, 2.0)))
        assert e.state is State.FOLLOWER and e.leader_id == OTHER
        assert "defeated" in signal_names(out)


class TestFollower:
    def test_campaigns_when_seen_lease_ends(self) -> None:
        """A follower campaigns just after the lease it saw would expire."""
        e = follower_of(100.0, remaining=2.5)
        wake = e.next_wakeup
        assert wake is not None
        # The heartbeat (1.5 s) comes first and would normally push it out.
        assert e.handle(Tick(100.0 + T.membership_refresh))[-1] == Heartbeat(False, True)
        out = e.handle(Tick(102.5 + T.vacancy_jitter))
        assert Acquire(5) in out
        assert e.state is State.CANDIDATE

    def test_heartbeat_pushes_campaign_out(self) -> None:
        """A heartbeat that reads a renewed lease moves the campaign time."""
        e = follower_of(100.0, remaining=2.5)
        e.handle(Tick(101.5))
        e.handle(HeartbeatResult(101.51, True, Lease(5, OTHER, 2.9)))
        assert e._next_acquire is not None and e._next_acquire >= 101.51 + 2.9

    def test_heartbeat_seeing_vacancy_campaigns_soon(self) -> None:
        """No lease in Redis, and the one last seen has run out: campaign within the jitter."""
        e = follower_of(100.0, remaining=1.0)
        out = e.handle(Tick(101.0))
        out += e.handle(HeartbeatResult(101.01, True, None))
        assert e.leader_id is None
        assert ("leader_changed", {"leader": None, "term": 5}) in emits(out)
        if Acquire(5) not in io(out):
            wake = e.next_wakeup
            assert wake is not None and wake <= 101.01 + T.vacancy_jitter
            assert Acquire(5) in e.handle(Tick(wake))

    def test_a_lease_that_vanished_before_it_ran_out_is_held_until_then(self) -> None:
        """No lease in Redis, but the one last seen has not run out and nobody resigned it:
        Redis lost it (evicted, flushed). Follow its holder until it would have run out."""
        e = follower_of(100.0, remaining=2.5)
        e.handle(Tick(101.5))
        out = e.handle(HeartbeatResult(101.51, True, None))
        assert out == []
        assert e.leader_id == OTHER and e.lease_expires == 102.5
        wake = e.next_wakeup
        assert wake is not None and wake >= 102.5
        assert Acquire(5) not in io(e.handle(Tick(102.49)))
        # ... and one renew interval more: its leader's renew may put it back first.
        assert Acquire(5) not in io(e.handle(Tick(102.5 + T.renew_interval - 0.01)))
        assert Acquire(5) in io(e.handle(Tick(102.5 + T.renew_interval + T.vacancy_jitter)))

    def test_a_resign_notice_frees_a_vanished_lease_at_once(self) -> None:
        e = follower_of(100.0, remaining=2.5)
        e.handle(HeartbeatResult(100.5, True, None))
        e.handle(ControlReceived(100.6, control(ControlType.RESIGNED, OTHER, 5)))
        wake = e.next_wakeup
        assert wake is not None and wake <= 100.6 + T.vacancy_jitter
        assert Acquire(5) in e.handle(Tick(wake))

    def test_resigned_notice_campaigns_at_once(self) -> None:
        """The leader's resign notice makes followers campaign within the jitter."""
        e = follower_of(100.0)
        e.handle(ControlReceived(100.2, control(ControlType.RESIGNED, OTHER, 5)))
        assert e.leader_id is None  # until the campaign tells who leads
        wake = e.next_wakeup
        assert wake is not None and wake <= 100.2 + T.vacancy_jitter
        assert Acquire(5) in e.handle(Tick(wake))

    def test_left_notice_of_leader_counts_as_vacancy(self) -> None:
        """The leader leaving is a vacancy (its instance_left: tests/unit/test_control.py)."""
        e = follower_of(100.0)
        e.handle(ControlReceived(100.2, control(ControlType.LEFT, OTHER)))
        assert e.leader_id is None
        wake = e.next_wakeup
        assert wake is not None and wake <= 100.2 + T.vacancy_jitter
        assert Acquire(5) in e.handle(Tick(wake))

    def test_elected_notice_makes_follower_read_the_lease_now(self) -> None:
        """An elected notice is a hint: the lease is read at once, and only Redis'
        answer changes the leader and the term."""
        e = follower_of(100.0)
        assert e.handle(ControlReceived(100.2, control(ControlType.ELECTED, "third", 6))) == []
        assert e.leader_id == OTHER and e.term == 5
        assert e.next_wakeup == pytest.approx(100.2)
        assert e.handle(Tick(100.2))[-1] == Heartbeat(full=False, read_lease=True)
        out = e.handle(HeartbeatResult(100.21, True, Lease(6, "third", 2.9)))
        assert e.leader_id == "third" and e.term == 6
        assert ("leader_changed", {"leader": "third", "term": 6}) in emits(out)

    def test_forged_elected_notice_does_not_depose_leader(self) -> None:
        """A leader hearing of another election checks the lease; if it still
        holds it, nothing changes."""
        e = leader_at(100.0)
        e.handle(ControlReceived(100.2, control(ControlType.ELECTED, "ghost", 99)))
        assert e.is_leader(100.2) and e.term == 5
        hb = [c for c in e.handle(Tick(100.2)) if isinstance(c, Heartbeat)]
        assert hb == [Heartbeat(full=False, read_lease=True)]
        e.handle(HeartbeatResult(100.21, True, Lease(5, ME, 2.9)))
        assert e.is_leader(100.21) and e.term == 5

    def test_notice_flood_is_rate_limited(self) -> None:
        """However many notices arrive, they cause at most one Redis read per jitter."""
        e = follower_of(100.0)
        reads = 0
        now = 100.1
        for i in range(1000):
            now = 100.1 + i * 0.001
            e.handle(ControlReceived(now, control(ControlType.ELECTED, f"x{i}", 6 + i)))
            reads += sum(1 for c in e.handle(Tick(now)) if isinstance(c, Heartbeat))
        assert reads <= (now - 100.1) / T.vacancy_jitter + 2

    def test_own_elected_notice_is_ignored(self) -> None:
        """Our own elected notice changes nothing."""
        e = leader_at(100.0)
        assert e.handle(ControlReceived(100.2, control(ControlType.ELECTED, ME, 5))) == []

    def test_own_stale_lease_is_resigned(self) -> None:
        """A follower that finds its own old lease frees it for an election."""
        e = follower_of(100.0)
        e.handle(Tick(101.5))
        out = e.handle(HeartbeatResult(101.51, True, Lease(4, ME, 1.0)))
        assert Resign(4) in out

    def test_leader_forgotten_when_lease_passes_unrefreshed(self) -> None:
        """If heartbeats fail, the known leader is dropped when its lease has passed."""
        e = follower_of(100.0, remaining=2.5)
        e.handle(Tick(101.5))
        e.handle(BackendFailed(101.6, Heartbeat(False, True)))
        out = e.handle(Tick(102.5))
        assert e.leader_id is None
        assert ("leader_changed", {"leader": None, "term": 5}) in emits(out)

    def test_failed_acquire_stops_campaigning(self) -> None:
        """Redis failing during a campaign: back to follower, retry via the heartbeat."""
        e = follower_of(100.0, remaining=0.0)
        wake = 100.0 + T.vacancy_jitter
        assert Acquire(5) in e.handle(Tick(wake))
        out = e.handle(BackendFailed(wake + 0.1, Acquire(5)))
        assert e.state is State.FOLLOWER
        assert "defeated" in signal_names(out)
        assert e._next_acquire is None
        assert e._next_heartbeat is not None and e._next_heartbeat <= wake + 0.1 + T.renew_interval


class TestHandover:
    def test_reelect_demotes_before_resigning(self) -> None:
        """reelect(): the state is follower before the Resign goes out."""
        e = leader_at(100.0)
        out = e.handle(ReelectRequested(100.1))
        assert e.state is State.FOLLOWER and not e.is_leader(100.1)
        assert isinstance(out[-1], Resign) and out[-1] == Resign(5)
        assert "defeated" in signal_names(out)
        # It waits reelect_backoff before campaigning itself.
        assert e._next_acquire is not None and e._next_acquire >= 100.1 + T.reelect_backoff

    def test_reelect_on_follower_does_nothing(self) -> None:
        """Only a leader re-elects."""
        e = follower_of(100.0)
        assert e.handle(ReelectRequested(100.1)) == []

    def test_stop_as_leader_leaves_with_term(self) -> None:
        """stop() as leader: demote, then one Leave that also resigns."""
        e = leader_at(100.0)
        out = e.handle(StopRequested(100.1))
        assert io(out) == [Leave(5)]
        assert e.stopped and e.next_wakeup is None
        assert e.handle(Tick(200.0)) == []

    def test_stop_as_follower_leaves_without_term(self) -> None:
        """stop() as follower: just Leave."""
        e = follower_of(100.0)
        assert io(e.handle(StopRequested(100.1))) == [Leave(None)]


class TestMembership:
    def test_heartbeat_cadence_and_full_heartbeats(self) -> None:
        """Followers refresh every membership_refresh; full heartbeats every clock_sync_interval."""
        e = follower_of(100.0, remaining=100.0)
        seen: list[Heartbeat] = []
        now = 100.0
        while now < 100.0 + T.clock_sync_interval + 2:
            wake = e.next_wakeup
            assert wake is not None
            now = wake
            seen += [c for c in e.handle(Tick(now)) if isinstance(c, Heartbeat)]
            for c in list(seen[-1:]):
                e.handle(HeartbeatResult(now, c.read_lease, Lease(5, OTHER, 100.0)))
        assert len(seen) == pytest.approx(T.clock_sync_interval / T.membership_refresh, abs=2)
        assert sum(1 for h in seen if h.full) == 1

    def test_leader_heartbeat_does_not_read_lease(self) -> None:
        """A leader's routine heartbeat is a bare ZADD."""
        e = leader_at(100.0)
        hb = [c for c in e.handle(Tick(101.5)) if isinstance(c, Heartbeat)]
        assert hb == [Heartbeat(full=False, read_lease=False)]

    def test_rejoined_triggers_full_heartbeat(self) -> None:
        """When our membership had been pruned, a full heartbeat re-announces us."""
        e = follower_of(100.0)
        e.handle(Tick(101.5))
        e.handle(HeartbeatResult(101.51, True, Lease(5, OTHER, 2.0), rejoined=True))
        assert e.next_wakeup == pytest.approx(101.51)
        out = e.handle(Tick(101.51))
        assert Heartbeat(full=True, read_lease=True, announce=True) in out

    def test_reconnect_triggers_full_heartbeat(self) -> None:
        """After a pub/sub reconnect, state is re-read at once."""
        e = follower_of(100.0)
        e.handle(Reconnected(100.3))
        assert Heartbeat(full=True, read_lease=True) in e.handle(Tick(100.3))

    def test_joined_and_meta_notices_are_not_the_elections(self) -> None:
        """Joined/meta notices only feed signals (tests/unit/test_control.py): no effect here."""
        from raftredis.wire import MemberRecord

        e = follower_of(100.0)
        rec = MemberRecord({"a": 1}, 1.0, 6.0)
        joined = ControlMessage(ControlType.JOINED, "x", record=rec)
        assert e.handle(ControlReceived(100.1, joined)) == []
        mine = ControlMessage(ControlType.META, ME, record=rec)
        assert e.handle(ControlReceived(100.1, mine)) == []


class _TermWatcher(Election):
    """Fails if a newer term is learned while this instance still leads an older one."""

    def _see_term(self, term: int) -> None:
        leadership = self._leadership
        assert leadership is None or term <= leadership[0], (
            f"learned term {term} while leading term {leadership[0]}: another thread could "
            "read is_leader True with a term this instance does not hold"
        )
        super()._see_term(term)


class TestFencingToken:
    def _leader(self) -> Election:
        e = _TermWatcher(ME, T, random.Random(1))
        e.handle(Start(100.0))
        e.handle(AcquireResult(100.0, 100.0, Lease(5, ME, T.lease_ttl)))
        return e

    def test_leader_term_is_the_held_term(self) -> None:
        """leader_term is the term of the lease while it lasts, then None."""
        e = self._leader()
        assert e.leader_term(100.5) == 5
        assert e.leader_term(100.0 + T.renew_deadline) is None

    @pytest.mark.parametrize(
        "event",
        [
            RenewResult(100.8, 100.75, False, Lease(6, OTHER, 3.0)),
            HeartbeatResult(101.0, True, Lease(6, OTHER, 3.0)),
        ],
        ids=["renew", "heartbeat"],
    )
    def test_demotion_happens_before_the_newer_term_is_learned(self, event: Any) -> None:
        """Losing to term 6: leadership ends before current_term becomes 6."""
        e = self._leader()
        if isinstance(event, RenewResult):
            e.handle(Tick(100.75))
        e.handle(event)
        assert e.term == 6 and e.leader_term(101.0) is None and e.state is State.FOLLOWER


class TestTermHints:
    def test_elected_notice_raises_the_proposal_not_the_term(self) -> None:
        """A believable elected notice makes the next campaign propose above it,
        without changing current_term (which only Redis sets)."""
        e = follower_of(100.0, term=5)
        e.handle(ControlReceived(100.1, control(ControlType.ELECTED, "x", 7)))
        assert e.term == 5 and e.proposal_floor == 7
        e.handle(ControlReceived(100.2, control(ControlType.RESIGNED, OTHER, 5)))
        sent: list[Command] = []
        for _ in range(5):  # the notice's lease read comes first, then the campaign
            wake = e.next_wakeup
            assert wake is not None
            sent += io(e.handle(Tick(wake)))
            if any(isinstance(c, Acquire) for c in sent):
                break
        assert Acquire(7) in sent

    def test_implausible_hint_is_ignored(self) -> None:
        """A notice far above the known term (a forgery) does not move the proposal."""
        e = follower_of(100.0, term=5)
        e.handle(ControlReceived(100.1, control(ControlType.ELECTED, "x", 5 + 10**6)))
        assert e.proposal_floor == 5
