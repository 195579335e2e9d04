"""LeaderWork on fake time: start on election, stop on demotion or at the deadline, join.

The deadlines come from a dict the test edits (the election's ``deadline_of``);
the watchdog's waits are on the FakeRuntime's clock, which starts at 1000.0
and moves only when a test advances it. What a Candidate does with while_leader
is tested in tests/integration/test_api_while_leader.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fake_runtime import FakeRuntime

from raftredis.errors import ReceiverError
from raftredis.leadership import Leadership, LeaderWork
from raftredis.runtime import Event

NAME = "rr-leader"
WATCHDOG = f"{NAME}-watchdog"


class Job:
    """A while_leader function that records each start, then runs until released."""

    def __init__(self, release: Event, name: str = "job") -> None:
        self.__name__ = name
        self.release = release
        self.starts: list[Leadership] = []
        self.threads: list[str] = []

    def __call__(self, stop_event: Leadership) -> None:
        self.starts.append(stop_event)
        self.threads.append(threading.current_thread().name)
        self.release.wait()

    @property
    def stop_event(self) -> Leadership:
        """The stop event of the latest start."""
        return self.starts[-1]


class Harness:
    """A LeaderWork on a FakeRuntime, with the deadlines and reports it sees."""

    def __init__(self, runtime: FakeRuntime) -> None:
        self.runtime = runtime
        self.deadlines: dict[int, float] = {}
        #: term -> an event deadline_of(term) waits for first (holds a watchdog back).
        self.holds: dict[int, Event] = {}
        self.reports: list[BaseException] = []
        self.release = runtime.event()
        self.work = LeaderWork(NAME, self.reports.append, self.deadline_of, runtime=runtime)

    def deadline_of(self, term: int) -> float | None:
        hold = self.holds.get(term)
        if hold is not None:
            hold.wait()
        return self.deadlines.get(term)

    def job(self, name: str = "job") -> Job:
        job = Job(self.release, name)
        self.work.add(job)
        return job

    def elected(self, term: int, lasts: float = 10.0) -> None:
        """Elected in ``term``, leading until ``lasts`` seconds from now unless renewed."""
        self.deadlines[term] = self.runtime.monotonic() + lasts
        self.work.elected(term)
        self.runtime.settle()


@pytest.fixture
def runtime() -> Iterator[FakeRuntime]:
    with FakeRuntime() as runtime:
        yield runtime


@pytest.fixture
def leader(runtime: FakeRuntime) -> Harness:
    return Harness(runtime)


def test_functions_start_on_elected_with_the_term(leader: Harness) -> None:
    """Nothing runs before the election; then every function, each on its own thread."""
    first, second = leader.job("first"), leader.job("second")
    leader.runtime.settle()
    assert first.starts == second.starts == []
    leader.elected(7)
    for job in (first, second):
        assert [e.term for e in job.starts] == [7]
        assert not job.stop_event.is_set()
    assert first.threads == [f"{NAME}-first"]
    assert second.threads == [f"{NAME}-second"]
    assert sorted(leader.runtime.running()) == [f"{NAME}-first", f"{NAME}-second", WATCHDOG]


def test_stop_events_are_set_when_leadership_is_lost(leader: Harness) -> None:
    """lost() sets every running function's stop event at once; the watchdog ends."""
    first, second = leader.job("first"), leader.job("second")
    leader.elected(7)
    leader.work.lost()
    assert first.stop_event.is_set()
    assert second.stop_event.is_set()
    leader.runtime.settle()
    assert WATCHDOG not in leader.runtime.running()


def test_a_function_added_while_leading_starts_at_once(leader: Harness) -> None:
    """add() during a leadership starts the function with its term, watched by the watchdog."""
    leader.elected(3)
    assert leader.runtime.running() == []  # no functions: no watchdog either
    job = leader.job()
    leader.runtime.settle()
    assert [e.term for e in job.starts] == [3]
    leader.runtime.advance(10.0)
    assert job.stop_event.is_set()


def test_the_watchdog_stops_the_functions_at_the_deadline(leader: Harness) -> None:
    """Nobody calls lost(): the watchdog sets the stop events when the deadline passes."""
    job = leader.job()
    leader.elected(7, lasts=10.0)
    leader.runtime.advance(9.5)
    assert not job.stop_event.is_set()
    leader.runtime.advance(0.5)
    assert job.stop_event.is_set()
    assert WATCHDOG not in leader.runtime.running()


def test_a_renewal_that_moves_the_deadline_keeps_the_functions_running(leader: Harness) -> None:
    """The watchdog re-reads the deadline when the old one passes, and waits for the new one."""
    job = leader.job()
    leader.elected(7, lasts=10.0)
    leader.runtime.advance(5.0)
    leader.deadlines[7] += 10.0  # renewed
    leader.runtime.advance(5.0)
    assert not job.stop_event.is_set()
    assert f"{NAME}-job" in leader.runtime.running()
    leader.runtime.advance(9.5)
    assert not job.stop_event.is_set()
    leader.runtime.advance(0.5)
    assert job.stop_event.is_set()


def test_a_leadership_already_over_stops_its_functions_at_once(leader: Harness) -> None:
    """No deadline (the leadership has ended): the watchdog sets the stop events right away."""
    job = leader.job()
    leader.work.elected(4)  # no deadline known for term 4
    leader.runtime.settle()
    assert job.stop_event.is_set()


def test_a_later_leadership_starts_the_functions_again(leader: Harness) -> None:
    """After a loss, the next election starts each function again with the new term."""
    job = leader.job()
    leader.elected(1, lasts=5.0)
    leader.work.lost()
    leader.elected(2, lasts=20.0)
    assert [e.term for e in job.starts] == [1, 2]
    assert job.starts[0].is_set()
    leader.runtime.advance(10.0)  # past term 1's deadline
    assert not job.stop_event.is_set()


def test_a_late_watchdog_of_an_earlier_leadership_spares_the_next_one(leader: Harness) -> None:
    """A watchdog that fires after its leadership ended stops only that leadership's work."""
    job = leader.job()
    leader.elected(1, lasts=5.0)
    leader.holds[1] = hold = leader.runtime.event()
    leader.runtime.advance(5.0)  # term 1's watchdog wakes, and is held in deadline_of
    leader.work.lost()
    leader.elected(2, lasts=20.0)
    hold.set()  # now it finds term 1 over, and sets the stop events of term 1
    leader.runtime.settle()
    assert [(e.term, e.is_set()) for e in job.starts] == [(1, True), (2, False)]


def test_an_exception_in_a_function_is_reported_as_receiver_error(leader: Harness) -> None:
    """A function that raises is reported (ReceiverError, cause kept); the others run on."""

    def fails(stop_event: Leadership) -> None:
        raise ValueError("boom")

    leader.work.add(fails)
    job = leader.job()
    leader.elected(7)
    [error] = leader.reports
    assert isinstance(error, ReceiverError)
    assert error.receiver is fails
    assert isinstance(error.__cause__, ValueError)
    assert "fails" in str(error)
    assert [e.term for e in job.starts] == [7]
    assert not job.stop_event.is_set()


def test_join_stops_and_waits_for_every_thread(leader: Harness) -> None:
    """join() ends the leadership and returns once the functions and the watchdog ended."""
    stopped: list[int] = []

    def waits_for_its_stop_event(stop_event: Leadership) -> None:
        stop_event.wait()
        stopped.append(stop_event.term)

    leader.work.add(waits_for_its_stop_event)
    leader.deadlines[7] = leader.runtime.monotonic() + 10.0
    leader.work.elected(7)  # no settle: the function blocks outside the runtime
    leader.work.join(timeout=1.0)
    assert stopped == [7]
    assert leader.runtime.running() == []
    assert leader.reports == []


def test_join_from_a_function_does_not_join_its_own_thread(leader: Harness) -> None:
    """A function may call join() (a Candidate's stop() from inside it): no self-join."""
    joined: list[bool] = []

    def stops_everything(stop_event: Leadership) -> None:
        leader.work.join(timeout=1.0)
        joined.append(stop_event.is_set())

    leader.work.add(stops_everything)
    leader.elected(7)
    assert joined == [True]
    assert leader.reports == []
    assert leader.runtime.running() == []
