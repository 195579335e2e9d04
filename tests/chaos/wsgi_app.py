"""A tiny WSGI app for test_fork.py's gunicorn test (``gunicorn --preload -w 3``).

Like a real app that is preloaded, it creates its Candidate at import, in the
gunicorn master, and does not start it there: each worker starts it after the
fork (see :func:`post_fork`, which the test's gunicorn config calls), and stops
it when the worker exits. ``GET /`` answers ``{"id", "leader", "leader_id", "pid"}``.

The Redis URL and the kind come from the environment (RAFTREDIS_TEST_URL,
RAFTREDIS_TEST_KIND), set by the test.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from raftredis import Candidate

candidate = Candidate(
    redis=os.environ["RAFTREDIS_TEST_URL"],
    kind=os.environ["RAFTREDIS_TEST_KIND"],
    lease_ttl=1.0,
)


def post_fork(server: Any, worker: Any) -> None:
    """gunicorn hook, in each worker after the fork: this worker's instance joins."""
    candidate.start()


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in each worker as it exits: leave, so another takes over at once."""
    candidate.stop(timeout=2.0)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = json.dumps(
        {
            "id": candidate.id,
            "leader": candidate.is_leader,
            "leader_id": candidate.leader_id,
            "pid": os.getpid(),
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
