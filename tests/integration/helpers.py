"""Shared helpers for the tests/integration/test_api_*.py modules.

* :func:`wait_until` polls a condition with a deadline (never sleep and hope).
* :class:`Cluster` creates Candidates of one kind and stops them all at the end.
* :class:`Recorder` records signals (with the thread they arrived on).
* fixtures: ``cluster`` (Candidates on the session's Redis, lease_ttl=1.0),
  ``no_leaked_threads`` (autouse where imported: no "raftredis-" thread may
  outlive a test), ``raw`` (a RawChannels publisher for the kind's channels).

Import the fixtures into a test module with
``from helpers import cluster_fixture, no_leaked_threads, ...`` (they are
registered under the names ``cluster`` and ``raw``; importing them under other
names keeps linters from seeing the test arguments as redefinitions).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from raftredis import Candidate, State, testing
from raftredis.testing import (
    CandidateGroup,
    free_port,  # noqa: F401 (re-exported)
    raftredis_threads,
    wait_until,
)
from raftredis.testing import ReceivedSignal as Received  # noqa: F401 (re-exported)
from raftredis.testing import SignalRecorder as Recorder  # noqa: F401 (re-exported)

T = TypeVar("T")

LEASE_TTL = 1.0


# ------------------------------------------------------------------ polling


def timed_wait(predicate: Callable[[], Any], timeout: float = 5.0, message: str = "") -> float:
    """Like :func:`wait_until`, but return how long the wait took (seconds)."""
    started = time.monotonic()
    wait_until(predicate, timeout=timeout, message=message)
    return time.monotonic() - started


def assert_no_raftredis_threads(timeout: float = 3.0) -> None:
    wait_until(
        lambda: not raftredis_threads(),
        timeout=timeout,
        message=lambda: f"threads still alive: {[t.name for t in raftredis_threads()]}",
    )


def unique_kind(prefix: str = "svc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------- candidates


class Cluster(CandidateGroup):
    """Candidates of one kind on one Redis; :meth:`close` stops every one of them."""

    def __init__(self, redis_target: Any, kind: str | None = None, **defaults: Any) -> None:
        defaults = {"lease_ttl": LEASE_TTL, **defaults}
        super().__init__(redis_target, kind or unique_kind(), **defaults)

    def running(self) -> list[Candidate]:
        return [c for c in self.candidates if c.is_running]

    def leader(self) -> Candidate | None:
        """The one running Candidate that is leader now, or None (asserts there is at most one)."""
        leaders = self.leaders()
        assert len(leaders) <= 1, f"more than one leader: {leaders}"
        return leaders[0] if leaders else None

    def wait_for_leader(self, timeout: float = 5.0, exclude: Candidate | None = None) -> Candidate:
        def found() -> Candidate | None:
            leader = self.leader()
            return leader if leader is not None and leader is not exclude else None

        return wait_until(found, timeout=timeout, message=lambda: f"candidates: {self.candidates}")

    def followers(self) -> list[Candidate]:
        return [c for c in self.running() if not c.is_leader]


# ------------------------------------------------------------ raw channels


class RawChannels:
    """Publishes raw bytes on a kind's channels with plain redis-py."""

    def __init__(self, client: redis.Redis, kind: str, prefix: str = "raftredis") -> None:
        self.client = client
        self.kind = kind
        self.base = f"{prefix}:{{{kind}}}"

    def channel(self, suffix: str) -> str:
        return f"{self.base}:{suffix}"

    def publish(self, suffix: str, data: bytes | str) -> int:
        return int(self.client.publish(self.channel(suffix), data))

    def envelope(self, **overrides: Any) -> dict[str, Any]:
        """A valid envelope (scope "all" from a follower), with ``overrides`` applied."""
        env: dict[str, Any] = {
            "v": 1,
            "kind": self.kind,
            "from": "raw-sender",
            "scope": "all",
            "term": 0,
            "leader": False,
            "id": uuid.uuid4().hex,
            "ts": time.time(),
            "payload": {"raw": True},
        }
        env.update(overrides)
        return env

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()


# ----------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves any "raftredis-" thread running (after a short grace period)."""
    with testing.no_leaked_threads(timeout=3.0):
        yield


@pytest.fixture(name="cluster")
def cluster_fixture(redis_url: str) -> Iterator[Cluster]:
    """Candidates of a fresh kind on the session's (flushed) Redis, lease_ttl=1.0."""
    with Cluster(redis_url) as c:
        yield c


@pytest.fixture(name="raw")
def raw_fixture(redis_client: redis.Redis, cluster: Cluster) -> RawChannels:
    """Raw publishing on the channels of the ``cluster`` fixture's kind."""
    return RawChannels(redis_client, cluster.kind)


def states(candidates: list[Candidate]) -> list[State]:
    return [c.state for c in candidates]
