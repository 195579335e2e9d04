"""Helpers for the in-process chaos tests (test_fuzz_*.py, test_receivers.py, test_fork.py).

These tests run Candidates inside the pytest process (the process-based scenarios
live in harness.py / test_scenarios.py). What is here:

* :func:`wait_until` (re-exported) polls with a deadline (never sleep and hope);
* :class:`Recorder` records signals with the thread they arrived on;
* :func:`expected_thread_names` / :func:`missing_threads` check that a Candidate's
  four threads are alive;
* :class:`EscapedExceptions` records anything that reaches ``threading.excepthook``;
* :class:`Candidates` (Candidates of one kind with the chaos suite's lease) and
  :func:`admin_client` (a plain client for writing junk).

Their fixtures (``own_redis``, ``escaped``, ``no_leaked_threads``, ``group``,
``admin``) are in conftest.py.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from raftredis import Candidate
from raftredis.testing import (
    THREAD_PREFIX,
    CandidateGroup,
    RedisServer,
    raftredis_threads,
    wait_until,  # noqa: F401 (re-exported)
)
from raftredis.testing import SignalRecorder as Recorder  # noqa: F401 (re-exported)
from raftredis.testing import agreed_leader as one_leader  # noqa: F401 (re-exported)

LEASE_TTL = 1.0
ROLES = ("heartbeat", "control", "messages", "dispatch")


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


# ---------------------------------------------------------------- candidates


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
