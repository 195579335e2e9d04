"""Elections among several instances: one leader, fast handover, reelect, wait_for_leader."""

from __future__ import annotations

import threading
import time

import pytest
from helpers import Cluster, Recorder, wait_until

from raftredis import Candidate, LeaderTimeoutError, NotRunningError, State
from raftredis.testing import agreed_leader


def test_three_instances_agree_on_one_leader(cluster: Cluster) -> None:
    """With 3 instances exactly one leads; all know its id and the same term."""
    candidates = cluster.start_many(3)
    leader_id = wait_until(lambda: agreed_leader(candidates), timeout=3.0).id
    assert candidates[0].id == leader_id  # the first one started alone
    assert [c.is_leader for c in candidates] == [True, False, False]
    assert [c.state for c in candidates] == [State.LEADER, State.FOLLOWER, State.FOLLOWER]
    assert len({c.current_term for c in candidates}) == 1


def test_instances_started_concurrently_elect_exactly_one(cluster: Cluster) -> None:
    """5 instances started at the same moment from 5 threads end with one leader."""
    candidates = [cluster.new() for _ in range(5)]
    barrier = threading.Barrier(5)
    errors: list[BaseException] = []

    def start(c: Candidate) -> None:
        try:
            barrier.wait()
            c.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(c,)) for c in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors
    assert sum(c.is_leader for c in candidates) == 1
    leader_id = wait_until(lambda: agreed_leader(candidates), timeout=3.0).id
    wait_until(lambda: len({c.current_term for c in candidates}) == 1, timeout=3.0)
    leaders = [i for i in candidates[0].get_instances() if i.is_leader]
    assert [i.id for i in leaders] == [leader_id]


def test_stop_of_the_leader_hands_over_fast(cluster: Cluster) -> None:
    """When the leader stops, another instance leads within 0.5 s, with a higher term."""
    candidates = cluster.start_many(3)
    old = candidates[0]
    assert old.is_leader
    old_term = old.current_term
    rest = candidates[1:]
    started = time.monotonic()
    old.stop()
    new = wait_until(lambda: next((c for c in rest if c.is_leader), None), timeout=3.0)
    elapsed = time.monotonic() - started
    assert elapsed < 0.5, f"handover took {elapsed:.3f} s"
    assert new.current_term > old_term
    wait_until(lambda: agreed_leader(rest) is new, timeout=2.0)
    assert sum(c.is_leader for c in rest) == 1


def test_reelect_hands_leadership_to_another_instance(cluster: Cluster) -> None:
    """reelect() on the leader: another instance leads, the old one gets defeated, terms grow."""
    recorder = Recorder()
    first = cluster.new()
    recorder.connect(first, "elected", "defeated")
    first.start()
    others = cluster.start_many(2)
    everyone = [first, *others]
    old_term = first.current_term
    assert first.reelect() is True
    assert not first.is_leader
    new = wait_until(lambda: next((c for c in others if c.is_leader), None), timeout=3.0)
    assert new.current_term > old_term
    defeated = recorder.wait_for("defeated", lambda e: e.kwargs["term"] >= old_term)
    assert defeated.sender is first
    wait_until(lambda: agreed_leader(everyone) is new, timeout=2.0)
    assert first.state is State.FOLLOWER
    assert first.current_term == new.current_term

    # And again from the new leader: terms keep growing.
    second_term = new.current_term
    assert new.reelect() is True
    newer = wait_until(
        lambda: next((c for c in everyone if c.is_leader and c is not new), None), timeout=3.0
    )
    assert newer.current_term > second_term


def test_reelect_on_a_follower_returns_false(cluster: Cluster) -> None:
    """reelect() on a follower does nothing and returns False."""
    leader = cluster.start()
    follower = cluster.start()
    term = leader.current_term
    assert follower.reelect() is False
    assert leader.is_leader
    assert follower.leader_id == leader.id
    assert leader.current_term == term


def test_reelect_when_alone_elects_the_same_instance_again(cluster: Cluster) -> None:
    """A lone leader that calls reelect() leads again (elected twice), with a higher term."""
    recorder = Recorder()
    candidate = cluster.new()
    recorder.connect(candidate, "elected", "defeated")
    candidate.start()
    term = candidate.current_term
    assert candidate.reelect() is True
    wait_until(lambda: candidate.is_leader, timeout=3.0)
    assert candidate.current_term > term
    recorder.wait_for("elected", count=2)
    terms = [e.kwargs["term"] for e in recorder.of("elected")]
    assert terms == sorted(terms) and terms[-1] == candidate.current_term
    assert recorder.of("defeated")


def test_wait_for_leader_returns_the_leader_id(cluster: Cluster) -> None:
    """wait_for_leader() returns the leader's id, on the leader and on a follower."""
    leader = cluster.start()
    follower = cluster.start()
    assert leader.wait_for_leader(timeout=1.0) == leader.id
    assert follower.wait_for_leader(timeout=1.0) == leader.id
    assert follower.wait_for_leader() == leader.id  # no timeout: returns at once too


def test_wait_for_leader_waits_through_a_handover(cluster: Cluster) -> None:
    """Called from a follower once it knows the leader stopped (during the vacancy),
    wait_for_leader waits and returns the new leader."""
    leader = cluster.start()
    follower = cluster.start()
    leader.stop()
    # Until the resign notice arrives the follower still names the old leader, and
    # wait_for_leader answers what it knows at once (a race the matrix once caught).
    wait_until(lambda: follower.leader_id != leader.id, timeout=3.0)
    assert follower.wait_for_leader(timeout=3.0) == follower.id


def test_leader_ids_follow_the_lease(cluster: Cluster) -> None:
    """get_leader() from every instance names the instance whose is_leader is true."""
    candidates = cluster.start_many(3)
    for c in candidates:
        leader = c.get_leader()
        assert leader is not None
        assert leader.id == candidates[0].id
        assert leader.state is State.LEADER


def test_stopped_leader_is_not_reelected_and_terms_only_grow(cluster: Cluster) -> None:
    """Stopping leaders one after another: each new term is higher than the last."""
    candidates = cluster.start_many(4)
    terms = [candidates[0].current_term]
    remaining = list(candidates)
    while len(remaining) > 1:
        leader = next(c for c in remaining if c.is_leader)
        remaining.remove(leader)
        leader.stop()
        new = wait_until(lambda: next((c for c in remaining if c.is_leader), None), timeout=3.0)
        terms.append(new.current_term)
    assert terms == sorted(set(terms)), terms


def test_wait_for_leader_timeout_and_stop(cluster: Cluster) -> None:
    """wait_for_leader raises NotRunningError when its Candidate stops meanwhile."""
    candidate = cluster.start()
    # With a leader known, it returns at once; to see it block we need no leader,
    # which test_api_outage covers (LeaderTimeoutError). Here: stopped -> NotRunning.
    candidate.stop()
    with pytest.raises(NotRunningError):
        candidate.wait_for_leader(timeout=0.1)
    assert issubclass(LeaderTimeoutError, TimeoutError)
