"""Helpers for the integration tests (their fixtures are in conftest.py).

* :func:`wait_until` polls a condition with a deadline (never sleep and hope).
* :class:`Cluster` creates Candidates of one kind and stops them all at the end.
* :class:`Recorder` records signals (with the thread they arrived on).
* :class:`RawChannels` publishes raw bytes on a kind's channels.
* :func:`get_json` asks a web server of an example app (Flask, Django) for JSON.
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from typing import Any

import redis
from support.kinds import unique_kind

from raftredis import Candidate
from raftredis.testing import (
    CandidateGroup,
    free_port,  # noqa: F401 (re-exported)
    raftredis_threads,  # noqa: F401 (re-exported)
    wait_until,
)
from raftredis.testing import SignalRecorder as Recorder  # noqa: F401 (re-exported)

LEASE_TTL = 1.0


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


# --------------------------------------------------------------------- http


def get_json(port: int, path: str) -> dict[str, Any]:
    """GET ``path`` from 127.0.0.1:``port`` on a new connection (so that a server's
    workers take turns); asserts a 200 and returns the JSON object of the reply."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, body[:500]
        return dict(json.loads(body))
    finally:
        conn.close()
