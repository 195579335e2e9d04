"""The Dispatcher on fake time: order, isolated receivers, overflow, stop.

What real receivers see through a Candidate is tested in
tests/integration/test_api_signals.py; here the dispatch thread runs on a
FakeRuntime, so each test acts, lets the thread settle, and checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_runtime import FakeRuntime
from signal_log import SignalLog

from raftredis import signals
from raftredis.dispatch import Dispatcher
from raftredis.errors import ReceiverError, SignalOverflowError

THREAD = "rr-dispatch"


class Sender:
    """A blinker sender of a test's own."""


@pytest.fixture
def runtime() -> Iterator[FakeRuntime]:
    with FakeRuntime() as runtime:
        yield runtime


@pytest.fixture
def log() -> Iterator[SignalLog]:
    log = SignalLog(Sender())
    try:
        yield log
    finally:
        log.close()


def dispatcher(log: SignalLog, runtime: FakeRuntime, maxsize: int = 100) -> Dispatcher:
    return Dispatcher(log.sender, THREAD, maxsize, runtime=runtime)


def elected(d: Dispatcher, term: int) -> bool:
    return d.submit(signals.elected, {"term": term})


def terms(log: SignalLog) -> list[int]:
    return [r.kwargs["term"] for r in log.received if r.signal == "elected"]


def test_signals_arrive_in_order_on_the_dispatch_thread(
    log: SignalLog, runtime: FakeRuntime
) -> None:
    """Signals reach their receivers in submission order, on the dispatch thread."""
    log.record(signals.elected, signals.leader_changed, signals.state_changed)
    d = dispatcher(log, runtime)
    d.start()
    assert elected(d, 1)
    assert d.submit(signals.leader_changed, {"leader": "a", "term": 1})
    assert elected(d, 2)
    assert d.submit(signals.state_changed, {"old": "follower", "new": "leader", "term": 2})
    runtime.settle()
    assert log.names() == ["elected", "leader_changed", "elected", "state_changed"]
    assert terms(log) == [1, 2]
    assert {r.thread for r in log.received} == {THREAD}


def test_a_raising_receiver_does_not_stop_the_others(log: SignalLog, runtime: FakeRuntime) -> None:
    """The receivers after a raising one still run; the error arrives as ReceiverError."""

    def broken(sender: object, **kwargs: Any) -> None:
        raise ValueError("receiver bug")

    log.connect(signals.elected, broken)
    log.record(signals.elected, signals.error_occurred)
    d = dispatcher(log, runtime)
    d.start()
    elected(d, 1)
    elected(d, 2)
    runtime.settle()
    assert log.names() == ["error_occurred", "elected"] * 2
    assert terms(log) == [1, 2]
    errors = log.errors()
    assert all(isinstance(e, ReceiverError) for e in errors)
    assert errors[0].receiver is broken  # type: ignore[attr-defined]
    assert isinstance(errors[0].__cause__, ValueError)
    assert "broken" in str(errors[0])
    assert {r.thread for r in log.received} == {THREAD}


def test_an_error_receiver_that_raises_is_not_reported_again(
    log: SignalLog, runtime: FakeRuntime
) -> None:
    """A raising error_occurred receiver is only logged: no error about the error, no loop."""
    calls: list[BaseException] = []

    def broken_error_receiver(sender: object, error: BaseException, **kwargs: Any) -> None:
        calls.append(error)
        raise RuntimeError("error receiver bug")

    def broken(sender: object, **kwargs: Any) -> None:
        raise ValueError("receiver bug")

    log.connect(signals.error_occurred, broken_error_receiver)
    log.record(signals.error_occurred)
    log.connect(signals.elected, broken)
    d = dispatcher(log, runtime)
    d.start()
    elected(d, 1)
    runtime.settle()
    assert len(calls) == 1
    assert isinstance(calls[0], ReceiverError)
    assert log.errors() == calls  # the other error receiver got the same one error
    assert d.thread is not None and d.thread.is_alive()


def test_overflow_drops_counts_and_reports_once_there_is_room(
    log: SignalLog, runtime: FakeRuntime
) -> None:
    """A full queue drops signals (submit says False); the count is reported after the next."""
    gate = runtime.event()

    def slow(sender: object, term: int, **kwargs: Any) -> None:
        if term == 1:
            gate.wait()

    log.connect(signals.elected, slow)
    log.record(signals.elected, signals.error_occurred)
    d = dispatcher(log, runtime, maxsize=2)
    d.start()
    assert elected(d, 1)
    runtime.settle()  # the dispatch thread is held in the slow receiver
    assert elected(d, 2)
    assert elected(d, 3)
    assert not elected(d, 4)
    assert not elected(d, 5)
    runtime.settle()
    assert terms(log) == []
    gate.set()
    runtime.settle()
    assert log.names() == ["elected", "error_occurred", "elected", "elected"]
    assert terms(log) == [1, 2, 3]
    [overflow] = log.errors()
    assert isinstance(overflow, SignalOverflowError)
    assert overflow.dropped == 2
    assert elected(d, 6)
    runtime.settle()
    assert terms(log) == [1, 2, 3, 6]
    assert len(log.errors()) == 1  # reported once


def test_stop_delivers_what_is_queued(log: SignalLog, runtime: FakeRuntime) -> None:
    """stop() lets the thread deliver everything queued before it, then ends the thread."""
    log.record(signals.elected)
    d = dispatcher(log, runtime)
    for term in range(1, 4):
        elected(d, term)
    d.start()
    for term in range(4, 7):
        elected(d, term)
    d.stop(timeout=1.0)
    assert terms(log) == [1, 2, 3, 4, 5, 6]
    assert d.thread is not None and not d.thread.is_alive()


def test_stop_before_start_returns(log: SignalLog, runtime: FakeRuntime) -> None:
    """stop() of a dispatcher that never started returns at once."""
    d = dispatcher(log, runtime)
    d.stop(timeout=1.0)
    assert d.thread is None
    assert runtime.running() == []


def test_stop_from_the_dispatch_thread_does_not_deadlock(
    log: SignalLog, runtime: FakeRuntime
) -> None:
    """A receiver may stop its own dispatcher: what is queued is delivered, no self-join."""
    log.record(signals.elected, signals.error_occurred)
    d = dispatcher(log, runtime)
    gate = runtime.event()
    returned: list[int] = []

    def stopper(sender: object, term: int, **kwargs: Any) -> None:
        if term == 1:
            gate.wait()
            d.stop(timeout=1.0)
            returned.append(term)

    log.connect(signals.elected, stopper)
    d.start()
    elected(d, 1)
    elected(d, 2)
    gate.set()  # term 2 is queued before the stop
    runtime.settle()
    assert returned == [1]
    assert terms(log) == [1, 2]
    assert log.errors() == []  # a self-join would raise RuntimeError, reported
    assert d.thread is not None and not d.thread.is_alive()
