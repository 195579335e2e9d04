"""``raftredis watch``: a live view of a kind that follows elections, joins, leaves and meta.

The watcher subscribes to the kind's notice channels (``control``: elected,
resigned, left; ``membership``: joined, meta) and re-reads the whole state
(:func:`~raftredis.observe.read_snapshot`) on every notice and at least
every ``--interval`` seconds. The state in Redis is the truth; the notices
only say when to look again (they are pub/sub and can be missed, and a
crashed leader's lease just expires, with no notice). It never joins the kind.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections import deque
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click
import redis
from redis.client import PubSub
from rich.console import Console
from rich.live import Live

from ..observe import Snapshot, read_snapshot
from ..redispy_seam import new_pubsub
from ..wire import WireError, decode_control
from .common import open_client, redact_url, redis_failure
from .options import Target, target_options
from .render import snapshot_table, watch_view

__all__ = ["Watcher", "watch"]

_EVENT_LINES = 8


def _describe(notice: dict[str, Any]) -> str:
    """One line for a control notice, for the event log under the live table."""
    text = f"{notice['type']} {notice['id']}"
    if notice.get("term") is not None:
        text += f" (term {notice['term']})"
    if notice["type"] == "meta":
        text += f" meta={json.dumps(notice.get('meta'), separators=(',', ':'))}"
    return text


class Watcher:
    """Follows one kind: yields a snapshot whenever it changes (and the notices since)."""

    def __init__(self, target: Target, interval: float) -> None:
        self.target = target
        self.interval = interval
        self._client = open_client(target.url, target.keys)
        self._pubsub: PubSub | None = None
        self.outage: str | None = None  # the current Redis failure, while there is one

    def close(self) -> None:
        """Close the subscription and the client."""
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
            self._pubsub = None
        self._client.close()

    @property
    def channels(self) -> tuple[str, ...]:
        """The kind's notice channels: elections and leaves, joins and meta changes."""
        keys = self.target.keys
        return (keys.control, keys.membership)

    def connect(self) -> None:
        """Subscribe to the notice channels (before the first read, so nothing is missed)."""
        pubsub = new_pubsub(self._client, ignore_subscribe_messages=True)
        try:
            if self.target.keys.sharded:
                pubsub.ssubscribe(*self.channels)
            else:
                pubsub.subscribe(*self.channels)
        except BaseException:
            pubsub.close()
            raise
        self._pubsub = pubsub

    def changes(
        self, deadline: float | None
    ) -> Iterator[tuple[Snapshot, list[dict[str, Any]], bool]]:
        """Yield ``(snapshot, notices since the last read, changed)`` until ``deadline``.

        Reads again on every notice and every ``interval`` seconds; ``changed``
        is False for a periodic read that found nothing new (the live view
        still redraws its ages). Redis failures after the start are retried
        every second, with :attr:`outage` set meanwhile.
        """
        last: tuple[Any, ...] | None = None
        notices: list[dict[str, Any]] = []
        next_read = 0.0
        while deadline is None or time.monotonic() < deadline:
            try:
                if self._pubsub is None:
                    self.connect()
                if notices or time.monotonic() >= next_read:
                    snapshot = read_snapshot(self._client, self.target.keys)
                    self._recovered()
                    changed = snapshot.fingerprint() != last
                    last = snapshot.fingerprint()
                    yield snapshot, notices, changed
                    notices = []
                    next_read = time.monotonic() + self.interval
                until = next_read if deadline is None else min(next_read, deadline)
                notices.extend(self._notices(max(0.0, until - time.monotonic())))
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._lost(exc)
                pause = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                time.sleep(max(0.0, pause))

    def _notices(self, timeout: float) -> list[dict[str, Any]]:
        """Wait up to ``timeout`` for notices; return every one that is waiting by then."""
        assert self._pubsub is not None
        found: list[dict[str, Any]] = []
        message = self._pubsub.get_message(timeout=timeout)
        while message is not None:
            if message.get("type") in ("message", "smessage"):
                found.append(self._decode(message["data"]))
            message = self._pubsub.get_message(timeout=0.0)
        return found

    @staticmethod
    def _decode(raw: bytes) -> dict[str, Any]:
        try:
            notice = decode_control(raw)
        except WireError as exc:
            return {"type": "invalid", "id": "?", "error": str(exc)}
        out: dict[str, Any] = {"type": notice.type.value, "id": notice.id}
        if notice.term is not None:
            out["term"] = notice.term
        if notice.record is not None:
            out["meta"] = notice.record.meta
        return out

    def _lost(self, exc: BaseException) -> None:
        message = redis_failure(self.target.url, exc).message
        if self.outage is None:
            click.echo(f"raftredis: {message}; retrying every second", err=True)
        self.outage = message
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
            self._pubsub = None

    def _recovered(self) -> None:
        if self.outage is not None:
            click.echo(f"raftredis: Redis at {redact_url(self.target.url)} is back", err=True)
            self.outage = None


class _Stop(Exception):
    """SIGTERM: end the watch like Ctrl-C does."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


@click.command(short_help="Follow a kind live: elections, joins, leaves, meta.")
@target_options
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Exit after N changes (N lines with --json); the state at start is the first.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Exit after this many seconds.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Re-read the state at least this often, even without notices.",
)
def watch(target: Target, count: int | None, duration: float | None, interval: float) -> int:
    """Follow a kind live: elections, joins, leaves and meta changes, until Ctrl-C.

    Without joining the kind. With --json, print one JSON object per line,
    whenever the state changed or control notices arrived: the object of
    `status --json`, plus "events", the notices that led to this read (empty
    for the first line and for changes that only the periodic re-read found,
    such as a crashed leader's lease expiring).
    Ctrl-C, SIGTERM, --count and --duration end it with exit code 0.
    """
    watcher = Watcher(target, interval)
    deadline = None if duration is None else time.monotonic() + duration
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            watcher.connect()
        except (redis.RedisError, OSError) as exc:
            raise redis_failure(target.url, exc) from exc
        if target.as_json:
            _print_json(watcher, deadline, count)
        else:
            _show_live(watcher, deadline, count)
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        watcher.close()
    return 0


def _print_json(watcher: Watcher, deadline: float | None, count: int | None) -> None:
    printed = 0
    for snapshot, notices, changed in watcher.changes(deadline):
        if not changed and not notices:
            continue  # a notice is worth a line even when the state looks the same
        line = snapshot.to_json()
        line["events"] = notices
        click.echo(json.dumps(line))
        sys.stdout.flush()
        printed += 1
        if count is not None and printed >= count:
            return


def _show_live(watcher: Watcher, deadline: float | None, count: int | None) -> None:
    console = Console()
    events: deque[str] = deque(maxlen=_EVENT_LINES)
    changes = 0
    if not console.is_terminal:
        # Not a terminal (a pipe, a file): print a table per change instead of redrawing.
        for snapshot, notices, changed in watcher.changes(deadline):
            if changed:
                for notice in notices:
                    console.print(f"{time.strftime('%H:%M:%S')} {_describe(notice)}")
                console.print(snapshot_table(snapshot))
                changes += 1
                if count is not None and changes >= count:
                    return
        return
    with Live(console=console, auto_refresh=False, transient=False) as live:
        for snapshot, notices, changed in watcher.changes(deadline):
            stamp = time.strftime("%H:%M:%S")
            events.extend(f"{stamp} {_describe(notice)}" for notice in notices)
            caption = f"Ctrl-C to quit; read {stamp}"
            live.update(watch_view(snapshot_table(snapshot, caption), list(events)), refresh=True)
            if changed:
                changes += 1
                if count is not None and changes >= count:
                    return
