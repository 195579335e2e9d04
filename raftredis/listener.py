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

What a listener that falls behind holds in this process is bounded: the
kernel's receive buffer can be capped (``receive_buffer``), and the bytes
redis-py's pure-Python reader has parsed are freed between reads. With a
:class:`~raftredis.receiver_watch.ReceiverWatch`, its handlers are timed, so
that a drop by Redis for falling behind is reported at once rather than
after the backlog (see ``receiver_watch.py``).

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
from .election import Event, PresenceLost, PresenceProof, PresenceRestored
from .errors import BackendError
from .receiver_watch import ReceiverWatch

__all__ = ["Listener", "PresencePinger", "channel_of"]

log = logging.getLogger("raftredis")

Handler = Callable[[dict[str, Any]], None]

#: How often a listener that backs off after a failure looks for a new route.
_ROUTE_POLL = 0.02
#: Parsed bytes the pure-Python reader may keep before they are freed.
_READ_BUFFER_KEEP = 256 * 1024


class PresencePinger:
    """Fast failover: proves this instance's presence connection alive, with PINGs.

    The presence listener's connection, one of its own, listens on the
    instance's presence channel, so Redis counts it (``PUBSUB NUMSUB``) while
    it is open. While
    :attr:`active` (the instance holds the lease), the listener's thread
    sends a ``PING`` every ``interval`` on that connection. A subscribed
    connection answers with a pub/sub ``pong``, after the commands before it
    (the subscriptions too): each pong proves the connection alive, and
    subscribed, after its ping was sent. A pong of a connection whose proofs
    count (:meth:`validated`) goes straight to ``proof(sent_at)`` on this
    thread, so that nothing the heartbeat thread waits for delays it; when
    that returns True (leadership suspended), a
    :class:`~raftredis.election.PresenceProof` is also reported, to resume it.
    Through ``report`` go :class:`~raftredis.election.PresenceLost` when the
    connection fails and :class:`~raftredis.election.PresenceRestored` for
    the first pong after it connected again (a ping is sent then, active or
    not). Thread-safe.
    """

    def __init__(
        self,
        interval: float,
        report: Callable[[Event], None],
        proof: Callable[[float], bool],
    ) -> None:
        self.active = False
        self._interval = interval
        self._report = report
        self._proof = proof
        self._validated = 0
        self._lock = threading.Lock()
        self._sent: dict[bytes, float] = {}
        self._epoch = 0
        self._seq = 0
        self._next = 0.0
        self._restoring = False
        self._lost = False

    def due(self, now: float) -> str | None:
        """The token of a ping to send now, or None."""
        with self._lock:
            if not (self.active or self._restoring) or now < self._next:
                return None
            self._next = now + self._interval
            self._seq += 1
            token = f"raftredis-presence:{self._epoch}:{self._seq}"
            self._sent[token.encode()] = now
            if len(self._sent) > 64:  # pongs that never came (a slow or lost connection)
                self._sent.pop(next(iter(self._sent)))
            return token

    def wait(self, now: float) -> float:
        """Seconds until the next ping is due (a read should not block longer)."""
        with self._lock:
            if not (self.active or self._restoring):
                return float("inf")
            return max(0.0, self._next - now)

    def pong(self, data: object, now: float) -> None:
        """A pong came back: report the proof (or the restore) it is."""
        token = data if isinstance(data, bytes) else str(data).encode()
        with self._lock:
            sent_at = self._sent.pop(token, None)
            if sent_at is None:
                return  # an earlier connection's, or not ours
            restoring, self._restoring = self._restoring, False
            self._lost = False
            epoch = self._epoch
            counts = not restoring and epoch == self._validated
        if restoring:
            self._report(PresenceRestored(now, sent_at, epoch))
        elif counts and self._proof(sent_at):
            self._report(PresenceProof(now, sent_at))

    def validated(self, epoch: int) -> None:
        """The election counts the proofs of connection ``epoch`` (it may be gone by now)."""
        with self._lock:
            self._validated = epoch

    def connected(self) -> None:
        """The connection is new (a reconnect, or a replacing listener): its first pong
        restores the presence; pongs of the one before no longer count."""
        with self._lock:
            self._epoch += 1
            self._sent.clear()
            self._restoring = True
            self._next = 0.0

    def failed(self, now: float) -> None:
        """Reading the connection failed: it is gone (reported once per loss)."""
        with self._lock:
            self._sent.clear()
            if self._lost:
                return
            self._lost = True
        self._report(PresenceLost(now))


def channel_of(message: dict[str, Any]) -> str:
    """The channel a redis-py pub/sub message came on, as text."""
    channel = message.get("channel", b"")
    return channel.decode("utf-8", "replace") if isinstance(channel, bytes) else str(channel)


class Listener:
    """Reads ``channels`` on its own connection and calls their handlers on its thread.

    ``on_reconnect()`` is called (on the listener thread) after every
    reconnect; ``on_failure(exc)`` when reading fails (at most once per
    outage, and not for a drop ``watch`` has reported). ``receive_buffer``
    caps the kernel's receive buffer of the connection (bytes).
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
        presence: PresencePinger | None = None,
        watch: ReceiverWatch | None = None,
        receive_buffer: int | None = None,
        # How long one read blocks. A message wakes it at once and stop() wakes
        # it too, so a long wait only saves idle CPU.
        sleep_time: float = 1.0,
        max_backoff: float = 1.0,
    ) -> None:
        self._client = client
        self._channels = (
            {channel: watch.watched(handler) for channel, handler in channels.items()}
            if watch is not None
            else dict(channels)
        )
        self._watch = watch
        self._receive_buffer = receive_buffer
        self._name = name
        self._sharded = sharded
        self._presence = presence
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
        self._limit_receive_buffer(pubsub.connection)
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
        if self._watch is not None:
            self._watch.start()
        self._thread = threading.Thread(target=self._run, args=(pubsub,), name=self._name)
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout: float | None) -> None:
        """Stop the thread, waking it at once; it closes the connection as it ends.

        Waits up to ``timeout`` for the thread (not at all when called from it,
        by a handler).
        """
        watch = self._watch
        if watch is not None:
            watch.stop()  # first: the subscriptions that end now were not dropped
        self._stopping.set()
        thread, pubsub = self._thread, self._pubsub
        if thread is None:
            if pubsub is not None:
                pubsub.close()
            return
        if pubsub is not None and pubsub.connection is not None:
            seam.interrupt(pubsub.connection)  # wake a read blocked for up to sleep_time
        if threading.current_thread() is not thread:
            deadline = None if timeout is None else time.monotonic() + timeout
            thread.join(timeout)
            if watch is not None:
                watch.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

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
                    self._read(pubsub)
                except Exception as exc:
                    if self._stopping.is_set():
                        break
                    self._failed(exc, pubsub)
        finally:
            # Closed here, on the thread that reads, never under a read in progress.
            pubsub.close()

    def _read(self, pubsub: PubSub) -> None:
        """One read (handlers run inside it); with presence, a ping first when due."""
        if self._presence is None:
            pubsub.get_message(ignore_subscribe_messages=True, timeout=self._sleep_time)
        else:
            self._read_with_presence(pubsub, self._presence)
        conn = pubsub.connection
        if conn is not None:
            seam.trim_read_buffer(conn, _READ_BUFFER_KEEP)

    def _read_with_presence(self, pubsub: PubSub, presence: PresencePinger) -> None:
        now = time.monotonic()
        token = presence.due(now)
        if token is not None:
            pubsub.ping(token)
        timeout = min(self._sleep_time, presence.wait(now))
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        if message is not None and message.get("type") == "pong":
            presence.pong(message.get("data"), time.monotonic())

    def _dropped(self, conn: Any) -> None:
        """Redis dropped the shard subscriptions: the slot left this node. Reconnect;
        the next read connects (to the slot's owner now) and subscribes again."""
        log.info("%s: Redis dropped the shard subscriptions; reconnecting", self._name)
        if self._presence is not None:
            self._presence.failed(time.monotonic())
        route = getattr(conn, "route", None)
        if route is not None:
            route.forget((conn.host, conn.port))
        conn.disconnect()

    def _limit_receive_buffer(self, connection: Any) -> None:
        if self._receive_buffer is not None and connection is not None:
            seam.limit_receive_buffer(connection, self._receive_buffer)

    def _connected(self, connection: Any) -> None:
        if self._stopping.is_set():
            return
        self._limit_receive_buffer(connection)
        if self._watch is not None:
            self._watch.reconnected()
        if self._presence is not None:
            self._presence.connected()
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
        if self._presence is not None:
            self._presence.failed(time.monotonic())
        if isinstance(exc, SlotMoved):
            # Not a failure: the kind's slot has another owner, which the route
            # knows now. The next read connects there and subscribes again.
            log.info("%s: %s; subscribing on the new owner", self._name, exc)
            return
        if self._watch is not None and self._watch.expected_close():
            # The drop the watch reported, reached after the messages read before it.
            log.info("%s: the connection Redis dropped has ended; subscribing again", self._name)
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
