"""End to end: the Flask example (examples/flask_app) under real gunicorn, 3 sync workers.

gunicorn runs the example's own gunicorn.conf.py (``--preload``; each worker
starts its Candidate after the fork). Through the app's HTTP endpoints the test
sees the three workers, exactly one of them leader; it SIGKILLs the leader's
worker and sees another worker take over within about two leases, gunicorn's
replacement worker join, and every worker leave when gunicorn stops.
"""

from __future__ import annotations

import http.client
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import free_port, get_json, wait_until
from support.kinds import members, unique_kind
from support.processes import LoggedProcess

pytest.importorskip("gunicorn", reason="gunicorn is not installed (pip install -e '.[test]')")
pytest.importorskip("flask", reason="flask is not installed (pip install -e '.[test]')")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app"
LEASE = 1.0
WORKERS = 3


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_gunicorn_workers_elect_one_leader_and_fail_over(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    kind = unique_kind("gunicorn")
    port = free_port()
    env = {
        **os.environ,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": str(WORKERS),
        "FLASK_RAFTREDIS_URL": redis_url,
        "FLASK_RAFTREDIS_KIND": kind,
        "FLASK_RAFTREDIS_LEASE_TTL": str(LEASE),
    }
    server = LoggedProcess(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
        tmp_path / "gunicorn.log",
        cwd=EXAMPLE,
        env=env,
    )

    def output() -> str:
        return server.output(last=3000)

    def request(path: str) -> dict[str, Any] | None:
        assert server.running, f"gunicorn exited: {output()}"
        try:
            return get_json(port, path)
        except (OSError, http.client.HTTPException):
            return None  # not listening yet

    try:
        # 1. Every worker answers /leader (the kernel spreads new connections over them).
        seen: dict[int, dict[str, Any]] = {}

        def all_workers() -> bool:
            reply = request("/leader")
            if reply is not None:
                seen[reply["pid"]] = reply
            return len(seen) == WORKERS

        wait_until(
            all_workers, timeout=30.0, interval=0.01, message=lambda: f"{seen}; log: {output()}"
        )
        replies = list(seen.values())
        ids = {r["id"] for r in replies}
        assert len(ids) == WORKERS, replies
        leaders = [r for r in replies if r["is_leader"]]
        assert len(leaders) == 1, replies
        old = leaders[0]
        assert {r["leader_id"] for r in replies} == {old["id"]}, replies
        assert members(redis_client, kind) == ids
        cluster = request("/cluster")
        assert cluster is not None and cluster["leader"] == old["id"]
        assert {m["meta"]["pid"] for m in cluster["members"]} == set(seen)

        # 2. SIGKILL the leader's worker: no goodbye, its lease has to expire.
        os.kill(old["pid"], signal.SIGKILL)
        killed_at = time.monotonic()

        def new_leader() -> dict[str, Any] | None:
            reply = request("/cluster")
            if reply is None or reply["leader"] in (None, old["id"]):
                return None
            return reply

        took_over = wait_until(new_leader, timeout=2 * LEASE + 1.0, interval=0.02, message=output)
        elapsed = time.monotonic() - killed_at
        winner = next(m for m in took_over["members"] if m["id"] == took_over["leader"])
        assert winner["meta"]["pid"] != old["pid"] and alive(winner["meta"]["pid"])
        print(f"failover after SIGKILL of the leader's worker: {elapsed:.2f} s")

        # 3. gunicorn replaces the dead worker; the dead member is pruned; still one leader.
        def replaced() -> dict[str, Any] | None:
            reply = request("/cluster")
            if reply is None or len(reply["members"]) != WORKERS:
                return None
            if old["id"] in {m["id"] for m in reply["members"]}:
                return None
            return reply

        settled = wait_until(replaced, timeout=20.0, interval=0.05, message=output)
        states = sorted(m["state"] for m in settled["members"])
        assert states == ["follower"] * (WORKERS - 1) + ["leader"], settled
        assert old["pid"] not in {m["meta"]["pid"] for m in settled["members"]}
    finally:
        returncode = server.stop(group=False, timeout=20)  # the master stops its workers
    assert returncode == 0, output()
    # Every worker left on its way out (worker_exit): nobody waits for a lease to expire.
    wait_until(lambda: members(redis_client, kind) == set(), timeout=5.0, message=output)
    assert redis_client.get(f"raftredis:{{{kind}}}:leader") is None
