"""Fixtures of the chaos tests.

In-process tests (test_fuzz_*.py, test_receivers.py, test_fork.py; helpers in inproc.py):

* ``own_redis``: a redis-server of the test module's own (the tests write junk into keys);
* ``escaped``: records (and still prints) exceptions that end threads;
* ``no_leaked_threads``: not autouse; a module asks for it with
  ``pytest.mark.usefixtures("no_leaked_threads")``;
* ``group`` / ``admin``: Candidates of a fresh kind, a plain client, on ``own_redis``;
* ``fuzz`` / ``fresh``: the fuzz tests' cluster (fuzz_cluster.py), shared by a module.

Process-based scenarios (harness.py): ``no_leftover_processes``, which a module asks
for with ``pytest.mark.usefixtures``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from fuzz_cluster import FuzzCluster, prepare
from harness import no_leftovers
from inproc import Candidates, EscapedExceptions, admin_client, expected_thread_names
from support.kinds import unique_kind

from raftredis import testing
from raftredis.testing import RedisServer, raftredis_threads, wait_until

# ------------------------------------------------------------ in-process tests


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for this test module only (the tests write junk into its keys)."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def escaped() -> Iterator[EscapedExceptions]:
    """threading.excepthook records (and still prints) exceptions that end threads."""
    watch = EscapedExceptions().install()
    try:
        yield watch
    finally:
        watch.uninstall()


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a "raftredis-" thread running (after a grace period)."""
    with testing.no_leaked_threads(timeout=5.0):
        yield


@pytest.fixture
def group(
    request: pytest.FixtureRequest, own_redis: RedisServer, escaped: EscapedExceptions
) -> Iterator[Candidates]:
    """A group of Candidates of a fresh kind (named after the test module) on the
    module's own Redis; afterwards no exception may have escaped a thread."""
    prefix = request.module.__name__.rsplit("_", 1)[-1][:8]
    with Candidates(own_redis.url, unique_kind(prefix)) as g:
        yield g
    escaped.assert_none()


@pytest.fixture
def admin(own_redis: RedisServer) -> Iterator[redis.Redis]:
    """A plain redis-py client to the module's own Redis."""
    client = admin_client(own_redis)
    try:
        yield client
    finally:
        client.close()


# ---------------------------------------------------------------- fuzz tests


@pytest.fixture(scope="module")
def quiet_logs() -> Iterator[None]:
    """Thousands of dropped inputs are each logged as a warning; keep errors only."""
    logger = logging.getLogger("raftredis")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@pytest.fixture(scope="module")
def fuzz(
    own_redis: RedisServer, escaped: EscapedExceptions, quiet_logs: None
) -> Iterator[FuzzCluster]:
    """The module's fuzz cluster; afterwards its threads are gone and none died."""
    cluster = FuzzCluster(own_redis, escaped)
    names: set[str] = set()
    try:
        cluster.wait_healthy()
        names = {n for c in cluster.nodes for n in expected_thread_names(c)}
        yield cluster
    finally:
        cluster.close()
    wait_until(
        lambda: not names & {t.name for t in raftredis_threads()},
        timeout=5.0,
        message="threads of the fuzz cluster outlived it",
    )
    escaped.assert_none()


@pytest.fixture
def fresh(fuzz: FuzzCluster) -> FuzzCluster:
    """The module's cluster, prepared (for tests that are not hypothesis tests)."""
    prepare(fuzz)
    return fuzz


# ---------------------------------------------------------- process scenarios


@pytest.fixture
def no_leftover_processes() -> Iterator[None]:
    """Fail a test that leaves a process a ChaosCluster started running."""
    with no_leftovers():
        yield
