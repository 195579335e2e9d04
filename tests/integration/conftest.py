"""Fixtures of the integration tests (helpers.py and cli_helpers.py hold the helpers).

* ``no_leaked_threads`` (autouse): no "raftredis-" thread may outlive a test;
* ``cluster``: Candidates of a fresh kind on the session's (flushed) Redis, lease_ttl=1.0;
* ``raw``: a :class:`helpers.RawChannels` publisher for the ``cluster`` kind's channels;
* ``own_server``: a redis-server of the test's own, for tests that kill, pause or fill it;
* ``tools``: ``raftredis`` tool processes (test_cli.py), all killed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from cli_helpers import Tools
from helpers import Cluster, RawChannels

from raftredis import testing
from raftredis.testing import RedisServer


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves any "raftredis-" thread running (after a short grace period)."""
    with testing.no_leaked_threads(timeout=3.0):
        yield


@pytest.fixture
def cluster(redis_url: str) -> Iterator[Cluster]:
    """Candidates of a fresh kind on the session's (flushed) Redis, lease_ttl=1.0."""
    with Cluster(redis_url) as c:
        yield c


@pytest.fixture
def raw(redis_client: redis.Redis, cluster: Cluster) -> RawChannels:
    """Raw publishing on the channels of the ``cluster`` fixture's kind."""
    return RawChannels(redis_client, cluster.kind)


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that kill, pause or fill it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def tools() -> Iterator[Tools]:
    """Start tool processes with ``tools.start(...)``; all are killed after the test."""
    started = Tools()
    try:
        yield started
    finally:
        started.kill_all()
