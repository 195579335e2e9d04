"""JSON-lines event logs: one JSON object a line, each with ``t`` (``time.time()``) and
``event``.

* :class:`EventLog` writes one: ``worker.py`` a worker's, ``harness.py`` the harness'.
* :class:`EventTail` follows one as it grows (the harness watching its workers).
* :func:`read_events` reads one whole (the checker).
* :func:`as_json_lines` is the text of made-up events (the checker's own tests).

``worker.py`` runs as a script from this folder: this module needs nothing but the
standard library.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class EventLog:
    """An append-only JSON-lines log, safe from any thread: each line is a single
    ``write()`` on an ``O_APPEND`` file, so it is on disk at once and lines never mix."""

    def __init__(self, path: str | os.PathLike[str], **fields: Any) -> None:
        """``fields`` go into every line, after ``t`` and ``event``."""
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._fields = fields
        self._lock = threading.Lock()

    def write(self, event: str, t: float | None = None, **fields: Any) -> float:
        """Append one line (at ``t``, default now); returns its ``t``."""
        now = time.time() if t is None else t
        record = {"t": now, "event": event, **self._fields, **fields}
        data = (json.dumps(record, default=repr, separators=(",", ":")) + "\n").encode()
        with self._lock:
            os.write(self._fd, data)
        return now

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


class EventTail:
    """Follows a JSON-lines file as it grows (it need not exist yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""  # a line being written: completed by a later read

    def read_new(self) -> list[dict[str, Any]]:
        """The complete lines added since the last call (unreadable ones skipped)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        events = []
        for line in lines:
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except ValueError:  # not JSON, or not UTF-8
                continue
        return events


def read_events(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The events of a JSON-lines file, and how many lines were not events (a process
    killed mid-write leaves at most a partial last line)."""
    events: list[dict[str, Any]] = []
    bad = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(obj, dict) and isinstance(obj.get("t"), (int, float)):
                events.append(obj)
            else:
                bad += 1
    return events, bad


def as_json_lines(events: Iterable[dict[str, Any]]) -> str:
    """The JSON-lines text of ``events``, one per line."""
    return "".join(json.dumps(e) + "\n" for e in events)
