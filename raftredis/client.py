"""The Client: talks to a kind without joining it.

A :class:`Client` sends the same messages a Candidate sends and reads the
same members and leader, but it never becomes a member: it writes no key,
takes no part in any election, subscribes to nothing and announces nothing.
It is meant for processes that only talk to a kind, such as web workers
that hand jobs to a kind of background workers.

Its Redis connections belong to the process that opened them. They are
opened on first use, and a process forked from one that used the Client
(gunicorn's workers, say) opens its own: it never uses the sockets it
inherited, nor shuts them down, so the parent's connections stay open.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import redis as redis_py

from .asking import MAX_ASK_TIMEOUT, Asker
from .clock import ServerClock
from .config import (
    Config,
    check_id,
    check_max_message_bytes,
    check_name,
    check_redis,
    signing_setup,
)
from .connection import ConnectionSpec, connection_spec, describe
from .errors import BackendError, ConfigurationError
from .keys import KeySpace
from .models import Instance, Scope
from .observe import read_instances, read_leader
from .outbox import MessageBatch, NotLeading, Outbox
from .publish_pool import PublishPool
from .reliable_outbox import ReliableOutbox
from .signing import DEFAULT_WINDOW, Keyring, Signer
from .store import send_to_leader_script
from .timing import Timings

__all__ = ["Client"]

log = logging.getLogger("raftredis")

T = TypeVar("T")

#: socket_timeout when none is given: a default Candidate's.
DEFAULT_SOCKET_TIMEOUT = Timings().socket_timeout
#: The longest socket_timeout accepted: longer would be a hang, not a timeout.
MAX_SOCKET_TIMEOUT = 60.0
#: With a secret, how often the offset to the Redis server's clock is measured
#: again (a default Candidate's clock_sync_interval).
CLOCK_SYNC_INTERVAL = Timings().clock_sync_interval
#: After a failed re-measurement, the old estimate is used this long before
#: the next try (it stays good for far longer than a replay window).
CLOCK_RETRY = 1.0

# Taken while a Client moves to a new process (the first use after a fork).
_switch_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # Held in the parent at the fork by a thread that does not exist here: replace it.
    global _switch_lock
    _switch_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """Sends messages to a kind and reads its members, without joining it.

    A Client is not a member: it writes no key (no membership, no term, no
    lease), never campaigns, and subscribes to nothing, so the instances of
    the kind see no ``instance_joined`` or ``instance_left`` for it, and it
    receives no messages. Its messages reach them as messages from a
    follower: ``message_from_follower`` (after ``message_received``), with
    ``message.sender_id`` the Client's :attr:`id` and ``message.term`` 0.

    Nothing touches the network in the constructor. The connections are
    opened on first use, belong to the process that opened them, and are
    opened again in a forked child (a Client created at import time works
    in every gunicorn worker). Every method is safe to call from any thread.

    :param redis: where Redis is; anything ``Candidate(redis=...)`` takes (a
        URL, a dict, a ``redis.Redis``, Sentinel, a Redis Cluster).
    :param kind: the kind to talk to.
    :param key_prefix: the kind's key prefix (the Candidates' ``key_prefix``).
    :param id: the sender id the receivers see (default ``client-`` and 12
        random hex digits, drawn again in each forked child). Same rules as a
        Candidate's id; do not reuse a member's id.
    :param max_message_bytes: the largest encoded message sent (at least 1024).
    :param secret: the kind's secret: sign every message as a Candidate with
        this secret does (see docs/production.md). Needed when the kind's
        Candidates have one: they drop unsigned messages.
    :param replay_window: accepted so that a Candidate's settings can be
        passed as they are; only checked (a Client receives nothing).
    :param socket_timeout: seconds every Redis command and connect may take
        (default 0.25, as a default Candidate's; at most 60).
    """

    def __init__(
        self,
        *,
        redis: Any = None,
        kind: str,
        key_prefix: str = "raftredis",
        id: str | None = None,
        max_message_bytes: int = 1 << 20,
        secret: str | bytes | list[str | bytes] | None = None,
        replay_window: float | None = None,
        socket_timeout: float | None = None,
    ) -> None:
        kind = check_name("kind", kind)
        key_prefix = check_name("key_prefix", key_prefix)
        member_id = check_id(id) if id is not None else None
        max_message_bytes = check_max_message_bytes(max_message_bytes)
        keyring, _ = signing_setup(secret, replay_window)
        self._setup(redis, kind, key_prefix, member_id, max_message_bytes, keyring, socket_timeout)

    @classmethod
    def from_config(cls, config: Config, *, socket_timeout: float | None = None) -> Client:
        """A Client for the kind ``config`` describes.

        It talks to the same Redis (``config.redis``, connected anew), kind
        and key prefix, signs with the same secret and sends messages of up
        to the same ``max_message_bytes``. Its id is a random one of its own
        (never the Candidate's), and ``socket_timeout`` is as for the
        constructor (default 0.25 s, not the Config's timing).
        """
        client = cls.__new__(cls)
        client._setup(
            config.redis,
            config.kind,
            config.key_prefix,
            None,
            config.max_message_bytes,
            config.keyring,
            socket_timeout,
        )
        return client

    def _setup(
        self,
        redis: Any,
        kind: str,
        key_prefix: str,
        member_id: str | None,
        max_message_bytes: int,
        keyring: Keyring | None,
        socket_timeout: Any,
    ) -> None:
        """Set up from checked settings (``redis`` and ``socket_timeout`` are checked here)."""
        self._kind = kind
        self._prefix = key_prefix
        self._explicit_id = member_id is not None
        self._id = member_id if member_id is not None else _new_id()
        self._max_message_bytes = max_message_bytes
        self._keyring = keyring
        self._timings = _timings(socket_timeout)
        self._redis = redis
        self._spec = check_redis(redis)  # no I/O
        # In a Redis Cluster the kind's messages use sharded pub/sub (SPUBLISH).
        self._keys = KeySpace(self._prefix, self._kind, sharded=self._spec.cluster is not None)
        self._pid = os.getpid()  # the process that _spec and _id belong to
        self._lock = threading.Lock()
        self._connected: _Connected | None = None

    # ------------------------------------------------------------ properties

    @property
    def id(self) -> str:
        """The sender id the receivers see (a new random one in each forked child)."""
        self._check_process()
        return self._id

    @property
    def kind(self) -> str:
        """The kind this Client talks to."""
        return self._kind

    @property
    def key_prefix(self) -> str:
        """The kind's key prefix."""
        return self._prefix

    # ------------------------------------------------------------- messaging

    def message_to(self, instance_id: str, payload: Any, *, reliable: bool = False) -> int:
        """Send ``payload`` to one instance; 1 if it received it, else 0.

        0 also for an unknown id or a disconnected instance. Raises
        :class:`~raftredis.MessageError` if ``instance_id`` is not a
        non-empty string or ``payload`` cannot be sent (not JSON, too large),
        and :class:`~raftredis.BackendError` if Redis fails. ``reliable=True``
        as for :meth:`Candidate.message_to <raftredis.Candidate.message_to>`.
        """
        if reliable:
            return self._reliable(Scope.DIRECT, payload, instance_id)
        outbox = self._outbox()
        return outbox.send(outbox.prepare(Scope.DIRECT, payload, instance_id))

    def message_all(self, payload: Any, *, reliable: bool = False) -> int:
        """Send ``payload`` to every instance of the kind; how many received it."""
        if reliable:
            return self._reliable(Scope.ALL, payload)
        outbox = self._outbox()
        return outbox.send(outbox.prepare(Scope.ALL, payload))

    def message_followers(self, payload: Any, *, reliable: bool = False) -> int:
        """Send ``payload`` to the followers; how many instances received it.

        Every instance is subscribed to the followers' channel and the leader
        drops these messages on receipt, so while there is a leader the
        count includes it (as from a follower Candidate).
        """
        if reliable:
            return self._reliable(Scope.FOLLOWERS, payload)
        outbox = self._outbox()
        return outbox.send(outbox.prepare(Scope.FOLLOWERS, payload))

    def message_leader(self, payload: Any, *, reliable: bool = False) -> int:
        """Send ``payload`` to whoever holds the lease now; 1 if it received it, else 0.

        Reading the holder and publishing happen in one Redis script, so the
        message never goes to a leader that has just been replaced. 0 when
        there is no leader. ``reliable=True``: kept for whoever leads when it is
        read (see :meth:`Candidate.message_leader <raftredis.Candidate.message_leader>`).
        """
        if reliable:
            return self._reliable(Scope.LEADER, payload)
        outbox = self._outbox()
        return outbox.send(outbox.prepare(Scope.LEADER, payload))

    def ask(self, instance_id: str, payload: Any, timeout: float = 2.0) -> Any:
        """Send a request to one instance and return its answer (as
        :meth:`Candidate.ask <raftredis.Candidate.ask>`)."""
        return self._this_process().asker.ask(Scope.DIRECT, payload, instance_id, timeout)

    def ask_leader(self, payload: Any, timeout: float = 2.0) -> Any:
        """Send a request to whoever leads when it is read, and return the answer (as
        :meth:`Candidate.ask_leader <raftredis.Candidate.ask_leader>`)."""
        return self._this_process().asker.ask(Scope.LEADER, payload, None, timeout)

    def _reliable(self, scope: Scope, payload: Any, instance_id: str | None = None) -> int:
        return self._this_process().reliable_outbox.send(scope, payload, instance_id)

    def batch(self) -> MessageBatch:
        """A :class:`~raftredis.MessageBatch`: messages published together, in order.

        For bulk sends: one round trip per 1,000 messages instead of one per
        message. A batch belongs to the thread that fills it.
        """
        return MessageBatch(self._outbox)

    # ------------------------------------------------------------- discovery

    def get_instances(self) -> list[Instance]:
        """Every live instance of the kind, in order of joining, read from Redis.

        As ``Candidate.get_instances()`` lists them (state ``LEADER`` for the
        lease holder, ``FOLLOWER`` for the others), in one ``MULTI``/``EXEC``
        that reads and changes nothing else: members whose membership has
        expired are left out, not pruned. Raises
        :class:`~raftredis.BackendError` if Redis fails.
        """
        connected = self._this_process()
        return connected.read("reading the members", read_instances)

    def get_leader(self) -> Instance | None:
        """The instance holding the lease now, read from Redis, or None if nobody does.

        As ``Candidate.get_leader()`` gives it (``meta`` None if its record is
        missing). Two reads, O(1), nothing written. Raises
        :class:`~raftredis.BackendError` if Redis fails.
        """
        connected = self._this_process()
        return connected.read("reading the leader", read_leader)

    # ------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Close this process's connections to Redis.

        The Client stays usable: the next call connects again (as with
        ``redis.Redis.close()``). Idempotent. In a forked child it closes
        only what the child opened, never the parent's connections.
        """
        self._check_process()
        with self._lock:
            connected, self._connected = self._connected, None
        if connected is not None:
            connected.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = describe(self._spec)  # without the password
        return f"<Client {self._kind}/{self._id} prefix={self._prefix!r} redis={where}>"

    # --------------------------------------------------------------- helpers

    def _outbox(self) -> Outbox:
        return self._this_process().outbox

    def _this_process(self) -> _Connected:
        """This process's connections (no I/O: they connect on first use)."""
        connected = self._connected
        if connected is not None and connected.pid == os.getpid():
            return connected
        self._check_process()
        with self._lock:
            connected = self._connected
            if connected is None or connected.pid != os.getpid():
                connected = self._connected = _Connected(self, self._spec, self._id)
            return connected

    def _check_process(self) -> None:
        """After a fork, in the child: start afresh, without touching the parent's connections.

        Checked by pid, not only by an at-fork hook: some servers fork without
        running them (uWSGI without py-call-osafterfork). The parent's
        connections are only dropped here; garbage collection then closes the
        child's copies of their file descriptors (redis-py shuts a socket down
        only in the process that opened it), so they stay open in the parent.
        """
        if os.getpid() == self._pid:
            return
        with _switch_lock:
            if os.getpid() == self._pid:
                return  # another thread of this process has just done it
            # The parent's lock may have been held by a thread that did not survive the fork.
            self._lock = threading.Lock()
            self._connected = None
            # The parent's spec holds locks, a Sentinel watch and cluster routes of its own.
            self._spec = connection_spec(self._redis)
            if not self._explicit_id:
                self._id = _new_id()  # each worker is a sender of its own
            self._pid = os.getpid()  # last: other threads then see a finished switch


class _Connected:
    """A Client's connections, sender and server clock in one process."""

    def __init__(self, client: Client, spec: ConnectionSpec, sender_id: str) -> None:
        self.pid = os.getpid()
        self._where = describe(spec)
        keys = client._keys
        timings = client._timings
        # Reads (and TIME) may be retried once; publishes never are (the PublishPool).
        self.commands = spec.client(timings, retries=1, route_key=keys.base)
        self._publisher = spec.client(timings, retries=0, route_key=keys.base)
        self._keys = keys
        self._keyring = client._keyring
        self._clock = ServerClock()
        self._clock_due = 0.0
        self._clock_lock = threading.Lock()
        keyring = self._keyring
        signer = Signer(keyring, self._server_ms, DEFAULT_WINDOW) if keyring else None
        self.outbox = Outbox(
            keys,
            sender_id,
            client._max_message_bytes,
            PublishPool(self._publisher),
            send_to_leader_script(keys),
            leadership=NotLeading(),
            signer=signer,
            subscribed=False,
        )
        self.reliable_outbox = ReliableOutbox(
            keys,
            sender_id,
            client._max_message_bytes,
            PublishPool(self._publisher),
            leadership=NotLeading(),
            signer=signer,
        )
        self.asker = Asker(
            self.reliable_outbox,
            keys,
            sender_id,
            lambda: spec.client(
                timings, retries=0, route_key=keys.base, read_timeout=MAX_ASK_TIMEOUT + 5
            ),
            keyring,
        )

    def read(self, what: str, reader: Callable[[redis_py.Redis, KeySpace], T]) -> T:
        """Run a read of observe.py; BackendError when Redis fails."""
        try:
            return reader(self.commands, self._keys)
        except (redis_py.RedisError, OSError) as exc:
            raise BackendError(f"Redis at {self._where} failed while {what}: {exc}") from exc

    def close(self) -> None:
        self.outbox.close()
        self.asker.close()
        for client in (self.commands, self._publisher):
            client.connection_pool.disconnect()

    def _server_ms(self) -> int:
        """The Redis server's clock, estimated: signatures are checked against it."""
        clock = self._clock
        if not clock.synced or time.monotonic() >= self._clock_due:
            self._sync_clock()
        return clock.now_ms()

    def _sync_clock(self) -> None:
        clock = self._clock
        # One thread measures; the others go on with the estimate they have.
        if not self._clock_lock.acquire(blocking=not clock.synced):
            return
        try:
            if clock.synced and time.monotonic() < self._clock_due:
                return  # another thread has just measured it
            sent = time.monotonic()
            try:
                reply: Any = self.commands.time()  # Awaitable | Any before redis-py 8
                seconds, micros = reply
            except (redis_py.RedisError, OSError) as exc:
                if not clock.synced:
                    raise BackendError(
                        f"Redis at {self._where} failed while reading the server time "
                        f"(needed to sign messages): {exc}"
                    ) from exc
                log.info("raftredis: could not re-measure the Redis server's clock: %s", exc)
                self._clock_due = time.monotonic() + CLOCK_RETRY
                return
            received = time.monotonic()
            clock.update(int(seconds) * 1000 + int(micros) // 1000, sent, received)
            self._clock_due = received + CLOCK_SYNC_INTERVAL
        finally:
            self._clock_lock.release()


def _new_id() -> str:
    return f"client-{uuid.uuid4().hex[:12]}"


def _timings(socket_timeout: Any) -> Timings:
    """Timings for ConnectionSpec.client(): ``socket_timeout``, and a lease long enough for it.

    A Client holds no lease; the lease only sets the TCP keepalive (and, behind
    Sentinel, how often the primary's address is checked), as for a Candidate.
    """
    if socket_timeout is None:
        socket_timeout = DEFAULT_SOCKET_TIMEOUT
    if (
        isinstance(socket_timeout, bool)
        or not isinstance(socket_timeout, (int, float))
        or not math.isfinite(socket_timeout)
        or not 0 < socket_timeout <= MAX_SOCKET_TIMEOUT
    ):
        raise ConfigurationError(
            f"socket_timeout must be a number of seconds above 0 and at most "
            f"{MAX_SOCKET_TIMEOUT:g}, got {socket_timeout!r}; leave it out for "
            f"{DEFAULT_SOCKET_TIMEOUT:g} s",
            option="socket_timeout",
        )
    # Timings wants 2 x socket_timeout <= renew_interval (lease_ttl / 4).
    lease_ttl = max(Timings().lease_ttl, 8.0 * socket_timeout)
    return Timings.from_lease(lease_ttl, socket_timeout=float(socket_timeout))
