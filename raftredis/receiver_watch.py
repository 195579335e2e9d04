"""ReceiverWatch: tells at once when Redis drops a message listener that fell behind.

Redis holds what a subscriber has not read yet in an output buffer, and drops
the connection when that buffer passes its ``client-output-buffer-limit`` for
pub/sub. The listener hears of it only when its read fails: after it has
handled everything already on its way, which for a slow receiver can take
many seconds, while every message published meanwhile is lost. So while
the message listener is kept busy, a thread of this watch asks Redis every
:data:`INTERVAL` whether the listener's inbox channel still has a subscriber
(``PUBSUB NUMSUB``, or ``SHARDNUMSUB`` in a Redis Cluster). Only this
instance's message connection subscribes it, so 0 means Redis dropped it:
the watch reports a :class:`~raftredis.errors.SlowReceiverError` at once, one
per drop.

An idle instance pays nothing: the thread blocks until a message arrives,
and stops asking as soon as the listener waits for messages again. The
listener thread only counts, with a few attribute writes per message, how
long its handlers and the reads of messages already waiting kept it busy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from .errors import RefusedError, SlowReceiverError
from .keys import KeySpace
from .runtime import THREADING, Event, Runtime, Task

__all__ = ["INTERVAL", "MESSAGE_RECEIVE_BUFFER", "ReceiverWatch", "inbox_watch"]

log = logging.getLogger("raftredis")

Handler = Callable[[dict[str, Any]], None]

#: How often the watch looks at a busy listener, and asks Redis about it.
INTERVAL = 0.3
#: The share of an interval the listener must have been busy for the watch to ask Redis.
BUSY_SHARE = 0.9
#: A read that started a handler sooner than this after the last one ended found its
#: message waiting (the time went into parsing it): the listener was busy meanwhile.
WAITING_GAP = 0.002
#: The kernel receive buffer of the message connection (``SO_RCVBUF``). Small, so
#: that a backlog piles up in Redis, whose output-buffer limit applies to it,
#: rather than in this process; large enough not to slow a receiver that keeps up.
MESSAGE_RECEIVE_BUFFER = 256 * 1024


class ReceiverWatch:
    """Watches one listener's handlers; asks ``probe()`` for its subscribers while they are behind.

    The listener wraps each handler with :meth:`watched`, calls :meth:`start`,
    :meth:`stop` and :meth:`join` with its own, and :meth:`reconnected` when it
    has subscribed again. ``probe()`` returns how many connections subscribe
    ``channel`` (it runs on the watch's thread); ``report`` takes the error.
    """

    def __init__(
        self,
        probe: Callable[[], int],
        channel: str,
        report: Callable[[BaseException], None],
        *,
        name: str,
        runtime: Runtime = THREADING,
        interval: float = INTERVAL,
    ) -> None:
        self._probe = probe
        self._channel = channel
        self._report = report
        self._name = name
        self._runtime = runtime
        self._interval = interval
        self._stopping = runtime.event()
        self._task: Task | None = None
        # Written by the listener thread only; the watch thread reads them (each
        # read or write of one attribute is atomic).
        self._handled = 0
        self._busy = 0.0  # seconds busy, in total
        self._started_at = 0.0  # when the handler in progress started; 0.0: none
        self._ended_at = float("-inf")
        # The watch thread sleeps on _wake until a handler starts: it sets _armed,
        # then _wake. The watch makes a new event before it clears _armed, and
        # looks once more at _handled after, so a handler that starts meanwhile
        # is never missed.
        self._wake: Event = runtime.event()
        self._armed = False
        # Set by the watch thread when it reported a drop; cleared on reconnect,
        # which also counts the connections (a probe that outlived one is moot).
        self._cut = False
        self._connection = 0
        self._close_expected = False
        self._refused = False

    # ------------------------------------------------------- listener thread

    def watched(self, handler: Handler) -> Handler:
        """``handler``, counted: how long it keeps the listener busy."""

        def handle(message: dict[str, Any]) -> None:
            self._began()
            try:
                handler(message)
            finally:
                self._ended()

        return handle

    def _began(self) -> None:
        now = self._runtime.monotonic()
        gap = now - self._ended_at
        if gap < WAITING_GAP:
            self._busy += gap
        self._handled += 1
        self._started_at = now
        if not self._armed:
            self._armed = True
            self._wake.set()

    def _ended(self) -> None:
        now = self._runtime.monotonic()
        started, self._started_at = self._started_at, 0.0
        self._busy += now - started
        self._ended_at = now

    def reconnected(self) -> None:
        """The listener subscribed again: a later drop is a new one, reported again."""
        self._connection += 1
        self._cut = False
        self._close_expected = False

    def expected_close(self) -> bool:
        """True once after a reported drop: the listener's failed read is that drop,
        already reported (it should subscribe again at once, and report nothing)."""
        expected, self._close_expected = self._close_expected, False
        return expected

    # --------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._task = self._runtime.spawn(self._run, name=self._name)

    def stop(self) -> None:
        """Tell the thread to end (before the listener unsubscribes: that is no drop)."""
        self._stopping.set()
        self._wake.set()

    def join(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` for the thread to end (a probe in progress ends first)."""
        task = self._task
        if task is not None:
            task.join(timeout)

    # ------------------------------------------------------------ watch thread

    def _run(self) -> None:
        # stop() sets _stopping before _wake, and the watch makes a new _wake before
        # it looks at _stopping here: a stop is never missed.
        while not self._stopping.is_set():
            self._wake.wait()
            if not self._stopping.is_set():
                self._watch_while_busy()

    def _sample(self, now: float) -> tuple[float, int, int]:
        """Seconds busy in total until ``now``, messages begun, and messages finished."""
        started, handled = self._started_at, self._handled
        if not started:
            return self._busy, handled, handled
        return self._busy + (now - started), handled, handled - 1

    def _watch_while_busy(self) -> None:
        """Look every interval while messages come; return when none came in one."""
        runtime = self._runtime
        then = runtime.monotonic()
        busy, handled, finished = self._sample(then)
        behind_since, finished_before = 0.0, finished
        while not self._stopping.wait(self._interval):
            now = runtime.monotonic()
            busy_now, handled_now, finished_now = self._sample(now)
            if busy_now - busy >= BUSY_SHARE * (now - then):
                if not behind_since:
                    behind_since, finished_before = then, finished
                if not self._cut and not self._refused:
                    self._check(now - behind_since, handled_now - finished_before)
            else:
                behind_since = 0.0
            if handled_now == handled and handled_now == finished_now:
                # Nothing came in a whole interval: sleep until a handler starts.
                self._wake = runtime.event()
                self._armed = False
                if self._handled == handled_now and not self._started_at:
                    return
                self._armed = True
            then, busy, handled, finished = now, busy_now, handled_now, finished_now

    def _check(self, behind_for: float, handled: int) -> None:
        """Ask Redis whether the listener is still subscribed; report it if not."""
        connection = self._connection
        try:
            subscribers = self._probe()
        except redis.ResponseError as exc:
            self._refused = True
            refused = RefusedError(
                f"cannot tell when Redis drops this instance's message connection for "
                f"falling behind: {exc}. Give raftredis' Redis user +pubsub|numsub "
                "(+pubsub|shardnumsub in a Redis Cluster; see docs/production.md#acl)"
            )
            refused.__cause__ = exc
            log.warning("raftredis: %s", refused)
            self._report(refused)
            return
        except Exception as exc:
            # Redis unreachable: the listener and the heartbeat report that.
            log.debug("%s: could not count the subscribers: %s", self._name, exc)
            return
        if subscribers > 0 or self._stopping.is_set() or connection != self._connection:
            return
        self._cut = self._close_expected = True
        error = SlowReceiverError(
            "Redis dropped this instance's message connection while its message "
            f"receivers were behind (they had kept it busy for {behind_for:.1f} s and "
            f"handled {handled} messages meanwhile), most likely at Redis's "
            "client-output-buffer-limit for pub/sub. Messages published to this instance "
            "since are lost (message_* counted 0 for it), as are those Redis still held "
            "for it; those already received are still delivered, then it subscribes "
            "again. Make the receivers faster or hand their work to a thread or queue "
            "of your own; senders can check the count message_* returns, and send "
            "commands that must arrive with reliable=True (see "
            "docs/messaging.md#a-slow-receiver)",
            channel=self._channel,
            behind_for=behind_for,
            handled=handled,
        )
        log.warning("raftredis: %s", error)
        self._report(error)


def inbox_watch(
    commands: redis.Redis,
    keys: KeySpace,
    member_id: str,
    report: Callable[[BaseException], None],
    name: str,
) -> ReceiverWatch:
    """The watch of an instance's message listener: asks ``commands`` about its inbox channel."""
    channel = keys.inbox(member_id)
    command = "SHARDNUMSUB" if keys.sharded else "NUMSUB"

    def probe() -> int:
        reply = commands.execute_command("PUBSUB", command, channel)
        return int(reply[1]) if isinstance(reply, (list, tuple)) and len(reply) > 1 else 0

    return ReceiverWatch(probe, channel, report, name=name)
