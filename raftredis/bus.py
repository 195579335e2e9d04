"""A pub/sub listener: one connection, a fixed set of channels, one thread of its own.

The thread calls redis-py's ``PubSub.get_message``, which hands each message
to its channel's handler. It is raftredis' own loop rather than redis-py's
``run_in_thread`` worker, so that stopping is in our hands: :meth:`Listener.stop`
sets a flag and wakes the read at once (redis-py 8.2's worker made its
``stop()`` wait out a whole read instead). A failed read is reported and
retried after a back-off; redis-py reconnects and re-subscribes on the next
read. The channel set is subscribed before the thread starts and never
changed, because subscribing from another thread while the worker reads is
not safe. A connect callback reports every reconnect so the owner can
resync state it may have missed.

In a Redis Cluster the channels are shard channels (SSUBSCRIBE). When the
kind's slot leaves the node (resharding, or the node is demoted), Redis
drops those subscriptions with an unrequested ``sunsubscribe`` but keeps
the connection: the listener then reconnects, to the slot's new owner. It
also reconnects when the kind's other connections have learned of a new
owner (a MOVED reply), which a subscriber would otherwise never hear of.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis
from redis.client import PubSub

from . import redispy_seam as seam
from .cluster import SlotMoved
from .errors import BackendError

__all__ = ["Listener", "channel_of"]

log = logging.getLogger("raftredis")

Handler = Callable[[dict[str, Any]], None]

#: How often a listener that backs off after a failure looks for a new route.
_ROUTE_POLL = 0.02


def channel_of(message: dict[str, Any]) -> str:
    """The channel a redis-py pub/sub message came on, as text."""
    channel = message.get("channel", b"")
    return channel.decode("utf-8", "replace") if isinstance(channel, bytes) else str(channel)


class Listener:
    """Reads ``channels`` on its own connection and calls their handlers on its thread.

    ``on_reconnect()`` is called (on the listener thread) after every
    reconnect; ``on_failure(exc)`` when reading fails (at most once per
    outage) and ``on_recovery()`` when it works again.
    """

    def __init__(
        self,
        client: redis.Redis,
        channels: Mapping[str, Handler],
        *,
        name: str,
        on_reconnect: Callable[[], None],
        on_failure: Callable[[BaseException], None],
        sharded: bool = False,
        # How long one read blocks. A message wakes it at once and stop() wakes
        # it too, so a long wait only saves idle CPU (at 0.1 s an idle
        # Candidate's two listeners cost about 1.3 ms/s).
        sleep_time: float = 1.0,
        max_backoff: float = 1.0,
    ) -> None:
        self._client = client
        self._channels = dict(channels)
        self._name = name
        self._sharded = sharded
        self._on_reconnect = on_reconnect
        self._on_failure = on_failure
        self._sleep_time = sleep_time
        self._max_backoff = max_backoff
        self._stopping = threading.Event()
        self._failures = 0
        self._pubsub: PubSub | None = None
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self, timeout: float) -> None:
        """Subscribe, wait for Redis to confirm every channel, then start the thread.

        Raises redis errors (the caller wraps them) and ``TimeoutError``.
        """
        if self._sharded:
            pubsub: PubSub = seam.ShardedPubSub(self._client.connection_pool, self._dropped)
            pubsub.ssubscribe(**self._channels)
            confirmation = "ssubscribe"
        else:
            pubsub = seam.new_pubsub(self._client)
            pubsub.subscribe(**self._channels)
            confirmation = "subscribe"
        self._pubsub = pubsub
        deadline = time.monotonic() + timeout
        confirmed = 0
        while confirmed < len(self._channels):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self._name}: Redis did not confirm the subscriptions")
            reply = pubsub.get_message(timeout=remaining)
            if reply is not None and reply.get("type") == confirmation:
                confirmed += 1
        assert pubsub.connection is not None
        # Registered only now, so it fires on reconnects, not on the first connect.
        seam.on_every_connect(pubsub.connection, self._connected)
        self._thread = threading.Thread(target=self._run, args=(pubsub,), name=self._name)
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout: float | None) -> None:
        """Stop the thread, waking it at once; it closes the connection as it ends.

        Waits up to ``timeout`` for the thread (not at all when called from it,
        by a handler).
        """
        self._stopping.set()
        thread, pubsub = self._thread, self._pubsub
        if thread is None:
            if pubsub is not None:
                pubsub.close()
            return
        if pubsub is not None and pubsub.connection is not None:
            seam.interrupt(pubsub.connection)  # wake a read blocked for up to sleep_time
        if threading.current_thread() is not thread:
            thread.join(timeout)

    def _run(self, pubsub: PubSub) -> None:
        try:
            while not self._stopping.is_set():
                conn = pubsub.connection
                if conn is not None and getattr(conn, "off_route", False):
                    # The kind's commands learned of a new slot owner (MOVED): follow
                    # them, so the shard's primary counts this subscriber as a receiver.
                    log.info("%s: the kind's slot moved; subscribing on its new owner", self._name)
                    conn.disconnect()
                try:
                    pubsub.get_message(ignore_subscribe_messages=True, timeout=self._sleep_time)
                except Exception as exc:
                    if self._stopping.is_set():
                        break
                    self._failed(exc, pubsub)
        finally:
            # Closed here, on the thread that reads, never under a read in progress.
            pubsub.close()

    def _dropped(self, conn: Any) -> None:
        """Redis dropped the shard subscriptions: the slot left this node. Reconnect;
        the next read connects (to the slot's owner now) and subscribes again."""
        log.info("%s: Redis dropped the shard subscriptions; reconnecting", self._name)
        route = getattr(conn, "route", None)
        if route is not None:
            route.forget((conn.host, conn.port))
        conn.disconnect()

    def _connected(self, connection: Any) -> None:
        if self._stopping.is_set():
            return
        self._failures = 0
        log.info("%s reconnected to Redis; resyncing", self._name)
        self._on_reconnect()

    def _failed(self, exc: BaseException, pubsub: PubSub) -> None:
        # redis-py keeps a pub/sub connection whose read failed (and, with our
        # retry settings, does not reconnect it): drop it, so the next read
        # connects again and subscribes to every channel again.
        conn = pubsub.connection
        if conn is not None:
            conn.disconnect()
        if isinstance(exc, SlotMoved):
            # Not a failure: the kind's slot has another owner, which the route
            # knows now. The next read connects there and subscribes again.
            log.info("%s: %s; subscribing on the new owner", self._name, exc)
            return
        self._failures += 1
        if self._failures == 1:
            log.warning("%s lost its Redis connection: %s", self._name, exc)
            error = BackendError(f"{self._name} lost its Redis connection: {exc}")
            error.__cause__ = exc
            self._on_failure(error)
        # Back off so a dead server does not turn this thread into a busy loop.
        backoff = min(self._max_backoff, 0.05 * 2 ** min(self._failures, 5))
        route = getattr(pubsub.connection, "route", None)
        if route is None:
            self._stopping.wait(backoff)
            return
        # In a cluster, stop waiting as soon as the kind's other connections
        # have found the slot's new primary (after a failover): up to a second
        # sooner than the back-off alone would.
        generation = route.generation
        deadline = time.monotonic() + backoff
        while not self._stopping.wait(min(_ROUTE_POLL, max(0.0, deadline - time.monotonic()))):
            if route.generation != generation or time.monotonic() >= deadline:
                return
