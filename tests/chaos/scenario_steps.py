"""Steps the process-based scenarios share (test_scenarios.py, test_connections.py):
finding and waiting for a worker's log events, holding a fault until a chosen time."""

from __future__ import annotations

import time
from typing import Any

from harness import ChaosCluster, WorkerProc

from raftredis.testing import wait_until


def first(events: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The first event whose fields equal ``match``."""
    return next((e for e in events if all(e.get(k) == v for k, v in match.items())), None)


def wait_past(t: float) -> None:
    """Wait until time.time() has passed ``t`` (to hold a fault for a chosen time)."""
    wait_until(lambda: time.time() >= t, timeout=max(0.0, t - time.time()) + 1.0)


def wait_event(
    c: ChaosCluster, worker: WorkerProc, event: str, timeout: float = 5.0, **match: Any
) -> dict[str, Any]:
    """Wait for the first ``event`` line of ``worker`` whose fields equal ``match``."""
    return wait_until(
        lambda: first(worker.events(event), **match),
        timeout,
        lambda: f"no {event} {match}: {c.describe(worker)}",
    )


def leader_term(worker: WorkerProc) -> int:
    """The term ``worker`` leads in now, by its log (AssertionError if it does not lead)."""
    term = worker.leading()
    assert term is not None, f"{worker} does not lead"
    return term
