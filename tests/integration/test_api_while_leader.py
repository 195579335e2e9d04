"""while_leader(fn): fn(stop_event) runs in its own thread while this instance leads."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from helpers import Cluster, Recorder, wait_until

from raftredis import ReceiverError


class Work:
    """A while_leader function that records each run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: list[dict[str, Any]] = []
        self.__name__ = "work"

    def __call__(self, stop_event: threading.Event) -> None:
        run: dict[str, Any] = {
            "thread": threading.current_thread().name,
            "started": True,
            "stopped": False,
            "event": stop_event,
        }
        with self.lock:
            self.runs.append(run)
        stop_event.wait(30)
        run["stopped"] = stop_event.is_set()
        run["finished"] = True

    def count(self) -> int:
        with self.lock:
            return len(self.runs)


def test_runs_when_elected_and_stops_on_reelect(cluster: Cluster) -> None:
    """fn runs on its own thread once elected; its stop_event is set on reelect()."""
    work = Work()
    leader = cluster.new()
    assert leader.while_leader(work) is work
    leader.start()
    wait_until(lambda: work.count() == 1, timeout=2.0)
    run = work.runs[0]
    assert run["thread"].startswith("raftredis-leader-")
    assert run["thread"] != threading.current_thread().name
    assert not run["event"].is_set()
    follower = cluster.start()
    leader.reelect()
    wait_until(lambda: run.get("finished"), timeout=2.0)
    assert run["stopped"] is True
    wait_until(lambda: follower.is_leader, timeout=3.0)
    assert work.count() == 1  # not started again on the instance that lost


def test_stop_event_is_set_on_stop(cluster: Cluster) -> None:
    """stop() sets the stop_event and the function's thread ends."""
    work = Work()
    leader = cluster.new()
    leader.while_leader(work)
    leader.start()
    wait_until(lambda: work.count() == 1, timeout=2.0)
    leader.stop()
    assert work.runs[0]["event"].is_set()
    wait_until(lambda: work.runs[0].get("finished"), timeout=2.0)


def test_registered_while_leader_starts_at_once(cluster: Cluster) -> None:
    """A function registered while already leader starts at once."""
    leader = cluster.start()
    assert leader.is_leader
    work = Work()
    leader.while_leader(work)
    wait_until(lambda: work.count() == 1, timeout=1.0)
    assert not work.runs[0]["event"].is_set()


def test_registered_on_a_follower_waits_for_election(cluster: Cluster) -> None:
    """On a follower nothing runs until it is elected; then fn starts."""
    leader = cluster.start()
    follower = cluster.start()
    work = Work()
    follower.while_leader(work)
    assert work.count() == 0
    leader.stop()
    wait_until(lambda: work.count() == 1, timeout=3.0)
    assert follower.is_leader


def test_decorator_form_and_reelection_runs_again(cluster: Cluster) -> None:
    """@candidate.while_leader works; each election starts a new run, with a new event."""
    candidate = cluster.new()
    events: list[threading.Event] = []

    @candidate.while_leader
    def job(stop_event: threading.Event) -> None:
        events.append(stop_event)
        stop_event.wait(30)

    assert callable(job)
    candidate.start()
    wait_until(lambda: len(events) == 1, timeout=2.0)
    candidate.reelect()  # alone: it is elected again after the back-off
    wait_until(lambda: len(events) == 2, timeout=3.0)
    assert events[0].is_set()
    assert not events[1].is_set()
    assert events[0] is not events[1]


def test_every_registered_function_runs(cluster: Cluster) -> None:
    """Several functions each get their own thread and their own stop_event."""
    works = [Work() for _ in range(3)]
    candidate = cluster.new()
    for w in works:
        candidate.while_leader(w)
    candidate.start()
    wait_until(lambda: all(w.count() == 1 for w in works), timeout=2.0)
    assert len({id(w.runs[0]["event"]) for w in works}) == 3


def test_raising_function_is_reported(cluster: Cluster) -> None:
    """A while_leader function that raises is reported as ReceiverError (cause kept)."""
    candidate = cluster.new()
    recorder = Recorder()
    candidate.on("error", recorder.receiver("error"))
    boom = RuntimeError("leader work failed")

    def fails(stop_event: threading.Event) -> None:
        raise boom

    candidate.while_leader(fails)
    candidate.start()
    error = recorder.wait_for("error").kwargs["error"]
    assert isinstance(error, ReceiverError)
    assert error.__cause__ is boom
    assert candidate.is_leader  # leadership is not affected


def test_while_leader_needs_a_callable(cluster: Cluster) -> None:
    """while_leader(non-callable) raises TypeError."""
    with pytest.raises(TypeError):
        cluster.new().while_leader(42)  # type: ignore[arg-type]


def test_stop_event_is_set_before_another_leader_is_elected(cluster: Cluster) -> None:
    """When leadership moves (reelect), the old leader's stop_event is already set when the
    new leader's function starts."""
    old_work = Work()
    old = cluster.new()
    old.while_leader(old_work)
    old.start()
    seen_set: list[bool] = []

    def checking(stop_event: threading.Event) -> None:
        seen_set.append(old_work.runs[0]["event"].is_set())
        stop_event.wait(30)

    new = cluster.new()
    new.while_leader(checking)
    new.start()
    wait_until(lambda: old_work.count() == 1)
    assert not seen_set
    old.reelect()
    wait_until(lambda: seen_set, timeout=3.0)
    assert seen_set == [True]
    assert new.is_leader
