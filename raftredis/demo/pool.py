"""The demo's worker processes: start them, read their events, send commands, stop them.

Each worker is ``python -m raftredis.demo --worker`` in its own session (so
Ctrl-C reaches only the parent, which then stops the workers). A reader
thread per worker turns its stdout lines into ``(index, event)`` pairs on a
queue the parent's main loop drains; a line that is not a JSON event arrives
as ``_text``, and the end of its stdout as ``_eof``.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .report import plural

__all__ = ["EventQueue", "WorkerHandle", "close_workers", "send", "start_worker", "stop_workers"]

EventQueue = queue.Queue[tuple[int, dict[str, Any]]]


@dataclass
class WorkerHandle:
    """The parent's view of one worker process."""

    index: int
    process: subprocess.Popen[str]
    reader: threading.Thread
    replaces: int | None = None
    id: str | None = None
    killed: bool = False
    exited: bool = False
    stats: dict[str, int] = field(default_factory=dict)


def start_worker(
    index: int,
    *,
    redis_url: str,
    kind: str,
    lease_ttl: float,
    rate: float,
    events: EventQueue,
    replaces: int | None = None,
) -> WorkerHandle:
    """Start worker ``index`` and the thread that puts its events on ``events``."""
    command = [
        sys.executable, "-m", "raftredis.demo", "--worker",
        "--index", str(index),
        "--redis-url", redis_url,
        "--kind", kind,
        "--lease-ttl", repr(lease_ttl),
        "--rate", repr(rate),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
        start_new_session=True,  # Ctrl-C reaches only us; we stop the workers
    )
    assert process.stdout is not None
    reader = threading.Thread(
        target=_read_events,
        args=(index, process.stdout, events),
        name=f"demo-reader-{index}",
        daemon=True,
    )
    handle = WorkerHandle(index, process, reader, replaces=replaces)
    reader.start()
    return handle


def _read_events(index: int, stream: TextIO, events: EventQueue) -> None:
    """One per worker: turn its stdout lines into events for the main loop."""
    with contextlib.suppress(OSError, ValueError):
        for line in stream:
            text = line.strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except ValueError:
                event = None
            if not isinstance(event, dict) or "event" not in event:
                event = {"event": "_text", "text": text}
            events.put((index, event))
    events.put((index, {"event": "_eof", "time": time.time()}))


def send(handle: WorkerHandle, command: str) -> bool:
    """Write ``command`` to the worker's stdin; False if it cannot be sent."""
    stdin = handle.process.stdin
    if stdin is None or stdin.closed:
        return False
    try:
        stdin.write(command + "\n")
        stdin.flush()
    except (OSError, ValueError):
        return False
    return True


def stop_workers(handles: list[WorkerHandle], grace: float, say: Callable[[str], None]) -> None:
    """Ask ``handles`` to stop (stdin), then SIGTERM, then SIGKILL; wait for them.

    ``grace`` is how long they may take to stop on request; ``say`` reports
    the escalations.
    """
    for handle in handles:
        if handle.process.poll() is None:
            send(handle, "stop")
        with contextlib.suppress(OSError, ValueError):
            if handle.process.stdin is not None:
                handle.process.stdin.close()  # EOF means stop too
    for how, wait in (("stop", grace), ("SIGTERM", 2.0), ("SIGKILL", 5.0)):
        alive = [h for h in handles if h.process.poll() is None]
        if not alive:
            return
        if how != "stop":
            say(f"{plural(len(alive), 'worker')} still running: {how}")
        for handle in alive:
            with contextlib.suppress(OSError):
                if how == "SIGTERM":
                    handle.process.terminate()
                elif how == "SIGKILL":
                    handle.process.kill()
        deadline = time.monotonic() + wait
        for handle in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                handle.process.wait(timeout=max(0.0, deadline - time.monotonic()))


def close_workers(handles: list[WorkerHandle]) -> None:
    """Kill whichever of ``handles`` still runs and close their pipes; never raises OSError."""
    for handle in handles:
        if handle.process.poll() is None:
            with contextlib.suppress(OSError):
                handle.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                handle.process.wait(timeout=5.0)
        with contextlib.suppress(OSError, ValueError):
            if handle.process.stdout is not None:
                handle.process.stdout.close()
