"""The README quick start, run many times across processes: every call its receivers
make during start() works (no NotRunningError, nothing reported on ``error``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.kinds import unique_kind

WORKER = Path(__file__).with_name("quickstart_worker.py")
PROCESSES = 3
ROUNDS = 24


def test_the_quick_start_pattern_in_three_processes_started_again_and_again(
    redis_url: str,
) -> None:
    kind = unique_kind("quickstart")
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), redis_url, kind, str(ROUNDS), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(PROCESSES)
    ]
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    errors = [e for report in reports for e in report["errors"]]
    assert not errors, f"{len(errors)} error(s) in {PROCESSES * ROUNDS} starts: {errors[:5]}"
    assert sum(r["rounds"] for r in reports) == PROCESSES * ROUNDS
    # The receivers ran, and every elected receiver listed the instances.
    elected = sum(r["elected"] for r in reports)
    assert elected >= ROUNDS
    assert sum(r["listed"] for r in reports) == elected
