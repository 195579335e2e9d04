"""Helpers for tests/integration/test_cli.py: the ``raftredis`` tool as real processes
(its ``tools`` fixture is in conftest.py).

* :func:`cli` runs the tool in this process (fast: no interpreter start) and
  returns its exit code with what it printed.
* :class:`Tool` runs it as a subprocess (``python -m raftredis ...``) in a
  session of its own, collects its stdout and stderr lines on threads, and
  remembers every process it starts, so that :class:`Tools` can kill them all
  (process groups included) at the end of a test, whatever happened.
* :data:`CHILD` is a command for ``raftredis run`` that logs its start and the
  SIGTERM it gets to a file, with its pid, name and RAFTREDIS_TERM.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from support.processes import ProcessTree

from raftredis.cli import main
from raftredis.testing import wait_until

TOOL = [sys.executable, "-m", "raftredis"]

# A command for `raftredis run`: logs "<name> <pid> start|sigterm <term>" to a file.
CHILD_SOURCE = """\
import os, signal, sys, time
log, name = sys.argv[1], sys.argv[2]
def write(what):
    with open(log, "a") as f:
        f.write(f"{name} {os.getpid()} {what} {os.environ.get('RAFTREDIS_TERM')}\\n")
def on_term(signum, frame):
    write("sigterm")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
write("start")
while True:
    time.sleep(0.05)
"""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run ``raftredis ARGS`` in this process; its exit code and output."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


@dataclass(frozen=True)
class LogLine:
    name: str
    pid: int
    what: str
    term: int


def read_child_log(path: Path) -> list[LogLine]:
    """The lines the CHILD commands wrote so far."""
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        name, pid, what, term = raw.split()
        lines.append(LogLine(name, int(pid), what, int(term)))
    return lines


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Tool:
    """``python -m raftredis ARGS`` in its own session, its output lines collected."""

    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [*TOOL, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,  # its own group: the test can kill all of it
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        #: Every process seen under this one (:meth:`track`), by pid.
        self.tree = ProcessTree(self.process.pid)
        self._threads = [
            threading.Thread(target=self._pump, args=(self.process.stdout, self.stdout)),
            threading.Thread(target=self._pump, args=(self.process.stderr, self.stderr)),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def descendants(self) -> dict[int, psutil.Process]:
        """Every process seen under this one so far, by pid."""
        return self.tree.seen

    def track(self) -> None:
        """Remember every process started under this one so far (for the final cleanup)."""
        self.tree.track()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON event lines of ``raftredis run --json`` (stderr), optionally of one kind."""
        found = []
        for line in list(self.stderr):
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and (name is None or event.get("event") == name):
                    found.append(event)
        return found

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.stdout)]

    def wait_for_event(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            self.track()
            hits = self.events(name)
            return hits[-1] if hits else None

        return wait_until(seen, timeout, lambda: f"no {name!r} event; stderr: {self.stderr}")

    def wait(self, timeout: float = 10.0) -> int:
        code = self.process.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)
        return code

    def kill(self) -> None:
        """SIGKILL this process, its group, and every process it was seen to start."""
        self.tree.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5.0)


class Tools:
    """The tool processes of one test; :meth:`kill_all` at the end, always."""

    def __init__(self) -> None:
        self.started: list[Tool] = []

    def start(self, *args: str) -> Tool:
        tool = Tool(*args)
        self.started.append(tool)
        return tool

    def kill_all(self, extra_pids: Callable[[], list[int]] = list) -> None:
        for tool in self.started:
            tool.kill()
        for pid in extra_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def elapsed_until(predicate: Callable[[], Any], timeout: float, message: str = "") -> float:
    """Seconds until ``predicate`` holds (AssertionError after ``timeout``)."""
    started = time.monotonic()
    wait_until(predicate, timeout, message, interval=0.01)
    return time.monotonic() - started
