"""Helpers for the in-process chaos tests (test_fuzz.py, test_receivers.py, test_fork.py).

These tests run Candidates inside the pytest process (the process-based scenarios
live in harness.py / test_scenarios.py). What is here:

* :data:`SCALE` ("short" by default, "full" with ``CHAOS_SCALE=full``) and
  :func:`scaled` to pick sizes from it;
* :func:`wait_until` / :func:`stays` poll with deadlines (never sleep and hope);
* :class:`Recorder` records signals with the thread they arrived on;
* :class:`ThreadWatch` checks that a Candidate's four threads are alive;
* :class:`EscapedExceptions` records anything that reaches ``threading.excepthook``;
* fixtures ``own_redis`` (a redis-server of the test module's own: the tests write
  junk into keys), ``escaped`` and ``no_leaked_threads``. Import them into a test
  module under other names (``from inproc import own_redis_fixture``): they register
  under the names ``own_redis``, ``escaped`` and ``no_leaked_threads``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from raftredis import Candidate
from raftredis.testing import (
    THREAD_PREFIX,
    CandidateGroup,
    RedisServer,
    no_leaked_threads,
    raftredis_threads,
    wait_until,  # noqa: F401 (re-exported)
)
from raftredis.testing import ReceivedSignal as Received  # noqa: F401 (re-exported)
from raftredis.testing import SignalRecorder as Recorder  # noqa: F401 (re-exported)
from raftredis.testing import agreed_leader as one_leader  # noqa: F401 (re-exported)

T = TypeVar("T")

LEASE_TTL = 1.0
ROLES = ("heartbeat", "control", "messages", "dispatch")

#: "short" (make test) or "full" (make chaos: more hypothesis examples, longer runs).
SCALE = "full" if os.environ.get("CHAOS_SCALE", "short").strip().lower() == "full" else "short"


def scaled(short: T, full: T) -> T:
    """``short`` in short mode, ``full`` with CHAOS_SCALE=full."""
    return full if SCALE == "full" else short


# ------------------------------------------------------------------ polling


def stays(predicate: Callable[[], Any], seconds: float, interval: float = 0.005) -> int:
    """Assert ``predicate`` holds at every poll for ``seconds``; return the number of polls."""
    end = time.monotonic() + seconds
    polls = 0
    while time.monotonic() < end:
        assert predicate(), (
            f"{getattr(predicate, '__name__', predicate)} failed after {polls} polls"
        )
        polls += 1
        time.sleep(interval)
    return polls


def unique_kind(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------- signals


# ----------------------------------------------------------------- threads


def expected_thread_names(candidate: Candidate) -> set[str]:
    """The four threads every running Candidate has (see Candidate._thread_name)."""
    return {f"{THREAD_PREFIX}{role}-{candidate.kind}-{candidate.id[:8]}" for role in ROLES}


def missing_threads(candidates: list[Candidate]) -> set[str]:
    """Names of expected raftredis threads of ``candidates`` that are not alive."""
    alive = {t.name for t in raftredis_threads()}
    expected: set[str] = set()
    for c in candidates:
        expected |= expected_thread_names(c)
    return expected - alive


class EscapedExceptions:
    """Records every exception that ends a thread (``threading.excepthook``)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, BaseException | None]] = []
        self._previous: Any = None

    def _hook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        self.seen.append((name, args.exc_value))
        self._previous(args)

    def install(self) -> EscapedExceptions:
        self._previous = threading.excepthook
        threading.excepthook = self._hook
        return self

    def uninstall(self) -> None:
        threading.excepthook = self._previous

    def assert_none(self) -> None:
        assert not self.seen, f"exceptions escaped from threads: {self.seen}"


# ----------------------------------------------------------------- fixtures


@pytest.fixture(name="own_redis", scope="module")
def own_redis_fixture() -> Iterator[RedisServer]:
    """A redis-server for this test module only (the tests write junk into its keys)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(name="escaped", scope="module")
def escaped_fixture() -> Iterator[EscapedExceptions]:
    """threading.excepthook records (and still prints) exceptions that end threads."""
    watch = EscapedExceptions().install()
    try:
        yield watch
    finally:
        watch.uninstall()


@pytest.fixture(name="no_leaked_threads", autouse=False)
def no_leaked_threads_fixture() -> Iterator[None]:
    """Fail a test that leaves a "raftredis-" thread running (after a grace period)."""
    with no_leaked_threads(timeout=5.0):
        yield


class Candidates(CandidateGroup):
    """Candidates of one kind on ``url``, with the chaos suite's lease by default."""

    def __init__(self, url: str, kind: str, **defaults: Any) -> None:
        super().__init__(url, kind, **{"lease_ttl": LEASE_TTL, **defaults})

    @property
    def url(self) -> str:
        return str(self.redis)


def admin_client(server: RedisServer) -> redis.Redis:
    """A plain client for writing junk (short timeouts, so a test never hangs on it)."""
    return server.client(socket_timeout=5.0, socket_connect_timeout=5.0)


@pytest.fixture(name="group")
def group_fixture(
    request: pytest.FixtureRequest, own_redis: RedisServer, escaped: EscapedExceptions
) -> Iterator[Candidates]:
    """A group of Candidates of a fresh kind (named after the test module) on the
    module's own Redis; afterwards no exception may have escaped a thread."""
    prefix = request.module.__name__.rsplit("_", 1)[-1][:8]
    with Candidates(own_redis.url, unique_kind(prefix)) as g:
        yield g
    escaped.assert_none()


@pytest.fixture(name="admin")
def admin_fixture(own_redis: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client to the module's own Redis."""
    client = admin_client(own_redis)
    try:
        yield client
    finally:
        client.close()
