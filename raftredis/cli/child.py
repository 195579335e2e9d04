"""The command run by ``raftredis run``: one process group, stopped as a whole.

The command is started in a process group of its own (its pid is the group
id), so a signal sent to the group reaches everything it started, and Ctrl-C
in a terminal reaches only the supervisor, which forwards it. Beside it runs a
reaper (``_reaper.py``): if the supervisor is killed without a chance to stop
the command, the reaper kills the group instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ._reaper import group_alive as _group_alive

__all__ = ["Child", "ChildStartError", "exit_status"]

_REAPER = Path(__file__).with_name("_reaper.py")
_POLL = 0.05


class ChildStartError(Exception):
    """The command could not be started; ``code`` is the shell's: 127 not found, 126 not run."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def exit_status(returncode: int) -> int:
    """A process' exit code as a shell reports it (128 + N when killed by signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def _own_group() -> dict[str, Any]:
    # process_group (3.11+) needs no preexec_fn, which is unsafe with threads running.
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"start_new_session": True}


class Child:
    """One run of the command, in its own process group, guarded by a reaper."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], grace: float) -> None:
        self.command = list(command)
        self.grace = grace
        self.started = time.monotonic()
        self._guard: BinaryIO | None = None
        self._reaper = self._start_reaper(grace)
        try:
            self.process = subprocess.Popen(
                self.command, env=dict(env), stdin=subprocess.DEVNULL, **_own_group()
            )
        except OSError as exc:
            self._release()
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            raise ChildStartError(f"cannot run {self.command[0]!r}: {exc.strerror}", code) from exc
        assert self._guard is not None
        self._guard.write(f"{self.process.pid}\n".encode())
        self._guard.flush()

    def _start_reaper(self, grace: float) -> subprocess.Popen[bytes]:
        read_end, write_end = os.pipe()
        try:
            reaper = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_REAPER), repr(grace)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # out of reach of signals sent to our own group
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._guard = os.fdopen(write_end, "wb")
        return reaper

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        """The command's return code once it has exited (Popen's: -N for signal N)."""
        return self.process.poll()

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the command's whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self, signum: int, hurry: Callable[[], bool] = lambda: False) -> int:
        """Send ``signum`` to the group, SIGKILL it after ``grace`` (or once ``hurry()``).

        Waits until the command and every process left in its group are gone
        (or were sent SIGKILL), and returns the command's return code.
        """
        self.signal(signum)
        self._wait_group(hurry)
        return self._finish()

    def reap(self) -> int:
        """After the command exited by itself: stop what is left of its group, as stop() does.

        A group outlives its leader when the command left processes behind;
        they end with it (SIGTERM, then SIGKILL after ``grace``).
        """
        if _group_alive(self.process.pid):
            self.signal(signal.SIGTERM)
            self._wait_group(lambda: False)
        return self._finish()

    def _wait_group(self, hurry: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.grace
        while self.process.poll() is None or _group_alive(self.process.pid):
            if time.monotonic() >= deadline or hurry():
                self.signal(signal.SIGKILL)
                return
            time.sleep(_POLL)

    def _finish(self) -> int:
        code = self.process.wait()
        self._release()
        return code

    def _release(self) -> None:
        """Tell the reaper the group is taken care of, and let it exit."""
        if self._guard is not None:
            with contextlib.suppress(OSError):
                self._guard.write(b"done\n")
                self._guard.close()
            self._guard = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._reaper.wait(timeout=1.0)
