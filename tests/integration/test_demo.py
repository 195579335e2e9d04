"""End-to-end tests of the demo, ``python -m raftredis.demo``: real processes, real faults.

Each test runs the demo as a subprocess (it starts its own redis-server and
worker processes), watches which processes it starts, and reads the JSON
summary it prints last (``--json``).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.processes import LoggedProcess, ProcessTree

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO = [sys.executable, "-m", "raftredis.demo", "--json"]


class DemoRun:
    """A running demo whose output goes to a file and whose child processes are tracked."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self._run = LoggedProcess([*DEMO, *args], tmp_path / "demo.out")
        self.process = self._run.process
        self._tree = ProcessTree(self.process.pid)

    @property
    def children(self) -> dict[int, psutil.Process]:
        """Every process seen under the demo (workers, redis-server), by pid."""
        return self._tree.seen

    def watch(self) -> None:
        """Remember every process the demo has started so far (workers, redis-server)."""
        self._tree.track()

    def output(self) -> str:
        return self._run.output()

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.process.poll() is None, f"the demo exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.output()}"
            self.watch()
            time.sleep(0.1)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        try:
            while self.process.poll() is None:
                if time.monotonic() > deadline:
                    self.process.kill()
                    pytest.fail(f"the demo ran longer than {timeout} s:\n{self.output()}")
                self.watch()
                time.sleep(0.1)
        finally:
            self.process.wait()
        return self.process.returncode

    def summary(self) -> dict[str, Any]:
        lines = self.output().strip().splitlines()
        assert lines, "the demo printed nothing"
        summary: dict[str, Any] = json.loads(lines[-1])
        return summary

    def survivors(self) -> list[str]:
        """The processes started by the demo that are still running (should be none)."""
        return self._tree.survivors()


def _check_no_leftovers(run: DemoRun, summary: dict[str, Any]) -> None:
    assert summary["leftover_pids"] == []
    assert run.survivors() == []
    started = set(summary["worker_pids"])
    if summary["redis_pid"] is not None:
        started.add(summary["redis_pid"])
    # The processes seen from outside are the ones the summary accounts for.
    assert set(run.children) <= started
    assert len(summary["worker_pids"]) >= summary["workers"]


def test_demo_fails_over_after_kill_and_reelect(tmp_path: Path) -> None:
    """With faults every 4 s, each of SIGKILL and reelect() hands leadership over fast."""
    run = DemoRun(
        tmp_path,
        *("--workers", "3", "--duration", "14", "--fault-interval", "4", "--lease-ttl", "1.0"),
    )
    code = run.wait(timeout=40)
    output = run.output()
    assert code == 0, output
    summary = run.summary()

    failovers = summary["failovers"]
    assert len(failovers) >= 2, output
    assert {f["fault"] for f in failovers} >= {"kill", "reelect"}, output
    for failover in failovers:
        assert failover["ms"] is not None, f"no new leader after fault {failover}:\n{output}"
        assert 0 <= failover["ms"] < 3000, output
        assert failover["new_term"] > failover["old_term"]
        if failover["fault"] == "kill":
            assert failover["handover"], output  # a killed worker cannot come back

    terms = summary["terms"]
    assert terms == sorted(set(terms)), "every election starts a new, higher term"
    assert summary["elections"] == len(terms) >= len(failovers) + 1

    jobs = summary["jobs"]
    assert jobs["processed"] > 0, output
    assert jobs["pushed"] >= jobs["processed"] + jobs["queued"]
    kills = sum(1 for f in failovers if f["fault"] == "kill")
    assert 0 <= jobs["lost"] <= kills, "only a killed worker can lose a job (the one it held)"
    assert jobs["fenced"] == 0

    assert "elected, term" in output and "Summary" in output
    assert "failover #1 after SIGKILL" in output
    _check_no_leftovers(run, summary)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_stops_cleanly_on_a_signal(tmp_path: Path, signum: signal.Signals) -> None:
    """Ctrl-C (SIGINT) or SIGTERM stops the demo early, with a summary and no process left."""
    run = DemoRun(
        tmp_path,
        *("--workers", "2", "--duration", "60", "--fault-interval", "0", "--lease-ttl", "1.0"),
    )
    try:
        run.wait_for("joined as a follower", timeout=20)
        run.watch()
        run.process.send_signal(signum)
    finally:
        code = run.wait(timeout=20)
    output = run.output()
    assert code == 128 + signum, output
    summary = run.summary()
    assert summary["ended_by"] == signum.name
    assert summary["elections"] >= 1
    assert len(summary["worker_pids"]) == 2
    _check_no_leftovers(run, summary)
