"""Subprocesses a test starts, and the processes they start in turn.

* :class:`ProcessTree` remembers every process seen under one process, so that a
  test can check that none of them is left, or kill them all. A process that has
  exited no longer lists its children: call :meth:`ProcessTree.track` while it runs.
* :class:`LoggedProcess` runs a command (a web server, the demo) in a session of its
  own, its stdout and stderr going to one log file; :meth:`LoggedProcess.stop` ends
  it and whatever it started.
* :func:`leader_subprocess` starts a Candidate in a child process and waits until it
  reports that it leads: a leader the test can SIGKILL or SIGSTOP.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil


class ProcessTree:
    """The processes started under the process ``root``, remembered as they are seen."""

    def __init__(self, root: int) -> None:
        self.root = root
        #: Every process seen under ``root`` so far, by pid.
        self.seen: dict[int, psutil.Process] = {}

    def track(self) -> None:
        """Remember every process running under ``root`` now."""
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.root).children(recursive=True):
                self.seen.setdefault(child.pid, child)

    def survivors(self) -> list[str]:
        """``"pid: command line"`` of each process seen that still runs (zombies do not)."""
        alive = []
        for pid, child in self.seen.items():
            try:
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid}: {' '.join(child.cmdline())}")
            except psutil.NoSuchProcess:
                continue
        return alive

    def kill(self) -> None:
        """SIGKILL the process group of ``root`` and of each process seen, then each of them."""
        self.track()
        for pgid in {self.root, *self.seen}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for proc in self.seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


class LoggedProcess:
    """``args`` in a session of its own (its own process group), stdout and stderr to
    ``log_path``. Use it as a context manager, or call :meth:`stop` in a ``finally``."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                list(args),
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() reaches all it started
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self, last: int | None = None) -> str:
        """What it printed so far (only the ``last`` characters, if given)."""
        text = self.log_path.read_text(errors="replace")
        return text if last is None else text[-last:]

    def stop(self, *, group: bool = True, timeout: float = 10.0) -> int:
        """SIGTERM (to the whole process group, or to the process alone if not ``group``:
        a server that stops its workers itself), up to ``timeout`` seconds for the process
        to exit, then SIGKILL to whatever is left of the group. Returns the exit status."""
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.pid, signal.SIGTERM)
            else:
                self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return self.process.wait()

    def __enter__(self) -> LoggedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# A Candidate in a child process: prints "<id> <1 if leader> <term>", then runs until killed.
LEADER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from raftredis import Candidate
    c = Candidate(redis=sys.argv[1], kind=sys.argv[2], **json.loads(sys.argv[3]))
    c.start()
    print(c.id, int(c.is_leader), c.current_term, flush=True)
    sys.stdin.read()  # until killed
    """
)


@contextlib.contextmanager
def leader_subprocess(
    redis_url: str, kind: str, timeout: float = 20.0, **options: Any
) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    """Start ``Candidate(redis=redis_url, kind=kind, **options)`` in a child process
    (``options`` must be JSON) and wait until it reports that it leads, the first of its
    kind: yields ``(process, candidate id, term)``. The process is killed on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LEADER_SCRIPT, redis_url, kind, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        assert ready, f"the leader process did not report its id within {timeout} s"
        line = proc.stdout.readline().split()
        assert len(line) == 3, f"unexpected output {line!r} of the leader process"
        leader_id, is_leader, term = line
        assert is_leader == "1", f"the process does not lead: {line!r}"
        yield proc, leader_id, int(term)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
