"""HeartbeatLoop against a scripted store, on the test's thread, with fake time.

The loop's own job: carry out the election's commands, hand its effects on,
and survive its own bugs (report, back off, and after repeats give up the
role and stop) instead of spinning.
"""

from __future__ import annotations

import queue
import random
from typing import Any, cast

from raftredis.clock import ServerClock
from raftredis.election import (
    AcquireResult,
    Command,
    Defeated,
    Effect,
    Elected,
    Election,
    Event,
    Lease,
    Start,
    StateChanged,
    Tick,
)
from raftredis.errors import InternalError
from raftredis.heartbeat import FIRST_BACKOFF, MAX_BACKOFF, MAX_FAILURES, HeartbeatLoop
from raftredis.models import State
from raftredis.runtime import Runtime
from raftredis.store import RedisStore
from raftredis.timing import Timings

T = Timings.from_lease(3.0)
ME = "me"


class ScriptedStore:
    """Records what the loop asks of Redis; answers nothing else."""

    member_id = ME

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def leave(self, term: int | None) -> None:
        self.calls.append(("leave", term))

    def resign(self, term: int) -> None:
        self.calls.append(("resign", term))


class FakeTime:
    """The loop's runtime, for a loop run on the test's thread: a monotonic clock that
    only moves when slept on, and a plain queue (nothing is spawned)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def queue(self, maxsize: int = 0) -> queue.SimpleQueue[Any]:
        return queue.SimpleQueue()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Harness:
    def __init__(self, election: Election) -> None:
        self.store = ScriptedStore()
        self.time = FakeTime()
        self.effects: list[Effect] = []
        self.reports: list[BaseException] = []
        self.fatal: list[InternalError] = []
        self.changes = 0
        self.loop = HeartbeatLoop(
            election,
            cast(RedisStore, self.store),
            ServerClock(),
            T,
            lambda: "{}",
            on_effect=self.effects.append,
            on_change=self._changed,
            on_backend_error=self.reports.append,
            on_report=self.reports.append,
            on_fatal=self.fatal.append,
            name="test-heartbeat",
            runtime=cast(Runtime, self.time),
        )

    def _changed(self) -> None:
        self.changes += 1

    def run(self, *events: Event) -> None:
        """Post ``events`` and run the loop on this thread until the election stops."""
        for event in events:
            self.loop.post(event)
        self.loop._run()


class Faulty(Election):
    """An election whose handle() raises for the first ``failures`` events after start."""

    def __init__(self, failures: int) -> None:
        super().__init__(ME, T, random.Random(1))
        self.failures = failures
        self.seen: list[Event] = []

    def handle(self, event: Event) -> list[Command]:
        if self.started and self.failures > 0 and isinstance(event, Tick):
            self.failures -= 1
            raise ValueError(f"bug #{self.failures}")
        self.seen.append(event)
        if isinstance(event, Tick) and event.now >= 200.0:
            self.stopped = True  # lets the loop end once the test's events are through
            return []
        return super().handle(event) if not isinstance(event, Tick) else []


def leading(election: Election) -> Election:
    election.handle(Start(100.0))
    election.handle(AcquireResult(100.0, 100.0, Lease(5, ME, T.lease_ttl)))
    assert election.state is State.LEADER
    return election


def test_a_bug_is_reported_and_backed_off_and_the_loop_goes_on() -> None:
    """Two failures: each reported as InternalError (cause kept), each followed by a
    longer pause; the next event is handled as usual."""
    election = leading(Faulty(failures=2))
    h = Harness(election)
    h.run(Tick(100.1), Tick(100.2), Tick(100.3), Tick(200.0))
    bugs = [r for r in h.reports if isinstance(r, InternalError)]
    assert len(bugs) == 2
    assert all(isinstance(b.__cause__, ValueError) for b in bugs)
    assert "bug in raftredis" in str(bugs[0]) and f"of {MAX_FAILURES}" in str(bugs[0])
    assert h.time.sleeps == [FIRST_BACKOFF, 2 * FIRST_BACKOFF]
    assert Tick(100.3) in election.seen  # handled after the failures
    assert h.fatal == [] and election.state is State.LEADER


def test_a_success_resets_the_count_of_failures_in_a_row() -> None:
    """Failures separated by a handled event never add up to giving up."""
    election = leading(Faulty(failures=0))
    h = Harness(election)
    events: list[Event] = []
    for i in range(2 * MAX_FAILURES):
        election.failures = 1 if i % 2 == 0 else 0
        events.append(Tick(100.0 + i / 100))
    # The failures are set per event by the test: a simple alternation.
    alternating = [True, False] * MAX_FAILURES

    def handle(event: Event, _h: Any = Election.handle) -> list[Command]:
        if isinstance(event, Tick) and event.now >= 200.0:
            election.stopped = True
            return []
        if isinstance(event, Tick) and alternating.pop(0):
            raise ValueError("every other event")
        return []

    election.handle = handle  # type: ignore[method-assign]
    h.run(*events, Tick(200.0))
    assert h.fatal == []
    assert h.time.sleeps == [FIRST_BACKOFF] * MAX_FAILURES


def test_repeated_bugs_give_up_the_role_and_stop() -> None:
    """MAX_FAILURES in a row: the leader is demoted at once (signals sent), resigns and
    leaves (best effort), on_fatal gets a clear InternalError, and the thread ends."""
    election = leading(Faulty(failures=MAX_FAILURES))
    h = Harness(election)
    h.run(*(Tick(100.1 + i / 100) for i in range(MAX_FAILURES)))
    assert len(h.fatal) == 1
    assert "gave up its role and stopped" in str(h.fatal[0])
    assert isinstance(h.fatal[0].__cause__, ValueError)
    assert not election.is_leader(h.time.now) and election.stopped
    assert StateChanged(State.LEADER, State.FOLLOWER, 5) in h.effects
    assert Defeated(None, 5) in h.effects
    assert ("leave", 5) in h.store.calls
    backoffs = [min(MAX_BACKOFF, FIRST_BACKOFF * 2**i) for i in range(MAX_FAILURES - 1)]
    assert h.time.sleeps == backoffs


def test_giving_up_finishes_even_if_leaving_fails() -> None:
    """A Redis that fails the resign too: the loop still calls on_fatal and ends."""
    election = leading(Faulty(failures=MAX_FAILURES))
    h = Harness(election)

    def broken_leave(term: int | None) -> None:
        raise ConnectionError("Redis is gone too")

    h.store.leave = broken_leave  # type: ignore[method-assign]
    h.run(*(Tick(100.1 + i / 100) for i in range(MAX_FAILURES)))
    assert len(h.fatal) == 1 and election.stopped


def test_effects_go_to_on_effect_in_order() -> None:
    """What the election returns as effects reaches on_effect, in order, on this thread."""
    election = Election(ME, T, random.Random(1))
    h = Harness(election)
    election.handle(Start(100.0))
    h.loop._handle(AcquireResult(100.0, 100.0, Lease(5, ME, T.lease_ttl)))
    kinds = [type(e) for e in h.effects]
    assert kinds[:2] == [StateChanged, Elected]
    assert h.changes >= 1


def test_abandon_from_follower_only_leaves() -> None:
    """A follower that gives up has no state to announce: just the Leave."""
    election = Election(ME, T, random.Random(1))
    election.handle(Start(100.0))
    election.handle(AcquireResult(100.0, 100.0, Lease(5, "other", 2.0)))
    out = election.abandon()
    assert [c for c in out if isinstance(c, Effect)] == []
    assert election.stopped and election.handle(Tick(101.0)) == []
