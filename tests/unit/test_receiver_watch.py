"""The ReceiverWatch on fake time: when it asks Redis, and what it reports.

Handlers are called on the test's thread, each advancing fake time by how
long it "works"; the watch's thread runs on the same fake time, so each test
says exactly how busy the listener was and checks how often the probe ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fake_runtime import FakeRuntime

from raftredis.errors import RefusedError, SlowReceiverError
from raftredis.receiver_watch import INTERVAL, ReceiverWatch


class Probe:
    """Stands for ``PUBSUB NUMSUB``: answers ``subscribers`` (or raises ``error``), counts calls."""

    def __init__(self) -> None:
        self.subscribers = 1
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.subscribers


@pytest.fixture
def runtime() -> Iterator[FakeRuntime]:
    with FakeRuntime() as runtime:
        yield runtime


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def reports() -> list[BaseException]:
    return []


@pytest.fixture
def watch(
    runtime: FakeRuntime, probe: Probe, reports: list[BaseException]
) -> Iterator[ReceiverWatch]:
    watch = ReceiverWatch(probe, "inbox", reports.append, name="watch", runtime=runtime)
    watch.start()
    runtime.settle()
    yield watch
    watch.stop()
    watch.join(1.0)
    assert runtime.running() == []


def handler(runtime: FakeRuntime, watch: ReceiverWatch, seconds: float) -> Callable[[], None]:
    """A watched handler that keeps the listener busy for ``seconds`` of fake time."""
    handle = watch.watched(lambda message: runtime.advance(seconds))
    message: dict[str, Any] = {"data": b"x"}
    return lambda: handle(message)


def busy_for(
    runtime: FakeRuntime, watch: ReceiverWatch, seconds: float, each: float = 0.05
) -> None:
    """Handlers back to back, each found waiting, for ``seconds``."""
    handle = handler(runtime, watch, each)
    for _ in range(round(seconds / each)):
        handle()


def test_an_idle_listener_costs_no_probe(
    runtime: FakeRuntime, watch: ReceiverWatch, probe: Probe
) -> None:
    runtime.advance(60.0)
    assert probe.calls == 0


def test_messages_that_leave_the_listener_mostly_waiting_cost_no_probe(
    runtime: FakeRuntime, watch: ReceiverWatch, probe: Probe
) -> None:
    handle = handler(runtime, watch, 0.001)
    for _ in range(100):  # 1 ms of work, then 49 ms of waiting for the next message
        handle()
        runtime.advance(0.049)
    runtime.advance(10.0)
    assert probe.calls == 0


def test_a_busy_listener_is_probed_once_an_interval_and_not_reported_while_subscribed(
    runtime: FakeRuntime, watch: ReceiverWatch, probe: Probe, reports: list[BaseException]
) -> None:
    busy_for(runtime, watch, 3.0)
    assert 3.0 / INTERVAL - 2 <= probe.calls <= 3.0 / INTERVAL
    assert reports == []
    calls = probe.calls
    runtime.advance(10.0)  # idle again: the watch sleeps
    assert probe.calls <= calls + 1


def test_a_drop_is_reported_at_the_next_probe_once_until_the_listener_resubscribes(
    runtime: FakeRuntime, watch: ReceiverWatch, probe: Probe, reports: list[BaseException]
) -> None:
    busy_for(runtime, watch, 1.0)
    probe.subscribers = 0
    dropped_at = runtime.monotonic()
    handle = handler(runtime, watch, 0.05)
    while not reports:
        handle()
        assert runtime.monotonic() - dropped_at <= INTERVAL + 0.05
    (error,) = reports
    assert isinstance(error, SlowReceiverError)
    assert error.channel == "inbox"
    assert error.behind_for >= 1.0 and error.handled >= 20
    assert "lost" in str(error) and "message_*" in str(error)
    calls = probe.calls
    busy_for(runtime, watch, 2.0)  # the backlog read before the drop
    assert len(reports) == 1 and probe.calls == calls, "once per drop, and no probe after it"
    assert watch.expected_close() and not watch.expected_close()

    watch.reconnected()
    busy_for(runtime, watch, 1.0)
    assert len(reports) == 2, "a drop after the listener subscribed again is a new one"


def test_one_long_handler_is_watched_while_it_runs(
    runtime: FakeRuntime, watch: ReceiverWatch, probe: Probe, reports: list[BaseException]
) -> None:
    probe.subscribers = 0

    def work(message: dict[str, Any]) -> None:
        for _ in range(10):
            runtime.advance(0.1)

    watch.watched(work)({"data": b"x"})
    assert len(reports) == 1 and isinstance(reports[0], SlowReceiverError)
    assert reports[0].handled == 1


def test_a_refused_probe_is_reported_once_and_the_watch_stops_asking(
    runtime: FakeRuntime, watch: ReceiverWatch, probe: Probe, reports: list[BaseException]
) -> None:
    probe.error = redis.ResponseError("NOPERM this user has no permissions to run 'pubsub|numsub'")
    busy_for(runtime, watch, 2.0)
    assert probe.calls == 1
    (error,) = reports
    assert isinstance(error, RefusedError) and "+pubsub|numsub" in str(error)


def test_an_unreachable_redis_is_left_to_the_listener_to_report(
    runtime: FakeRuntime, watch: ReceiverWatch, probe: Probe, reports: list[BaseException]
) -> None:
    probe.error = redis.ConnectionError("Connection refused")
    busy_for(runtime, watch, 1.0)
    assert probe.calls >= 2 and reports == []


def test_stop_ends_the_thread_while_it_watches(
    runtime: FakeRuntime, probe: Probe, reports: list[BaseException]
) -> None:
    watch = ReceiverWatch(probe, "inbox", reports.append, name="watch", runtime=runtime)
    watch.start()
    busy_for(runtime, watch, 0.5)
    watch.stop()
    watch.join(1.0)
    assert runtime.running() == []
