"""The Candidate: one instance of a kind. Lifecycle, messaging and discovery.

The facade checks arguments and local state, then hands the work to the
parts that do it: the heartbeat thread (election, in ``heartbeat.py``), two
pub/sub listeners (``listener.py``), the dispatch thread (``dispatch.py``) and
the store (``store.py``).
"""

from __future__ import annotations

import atexit
import copy
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import redis as redis_py

from . import signals
from .clock import ServerClock
from .connection import ConnectionSpec, connection_spec, describe
from .dispatch import Dispatcher
from .election import ControlReceived, Election, Emit, Reconnected, ReelectRequested, StopRequested
from .errors import (
    BackendError,
    ConfigurationError,
    EvictionWarning,
    LeaderTimeoutError,
    MessageError,
    NotRunningError,
    ProtocolError,
    RefusedError,
)
from .heartbeat import HeartbeatLoop
from .inbox import Inbox
from .keys import KeySpace
from .leadership import LeaderFunction, LeaderWork
from .listener import Listener, PresencePinger, channel_of
from .models import Instance, Scope, State
from .outbox import MessageBatch, Outbox
from .publish_pool import PublishPool
from .signing import DEFAULT_WINDOW, Keyring, ReplayGuard, secrets_from
from .store import RedisStore, send_to_leader_script
from .timing import Timings
from .wire import (
    CONTROL_OVERHEAD_BYTES,
    VERSION,
    MemberRecord,
    WireError,
    check_json,
    decode_control,
    decode_record,
    encode_meta_notice,
    encode_record,
    utf8,
)

__all__ = ["Candidate"]

log = logging.getLogger("raftredis")

F = TypeVar("F", bound=Callable[..., Any])
_Part = TypeVar("_Part")

_NAME_RE = re.compile(r"[^\s{}:]+")
_ID_RE = re.compile(r"[A-Za-z0-9._\-]{1,128}")
# The lifecycle: new -> starting -> running -> stopping -> stopped (a failed
# start goes back to new). Only start() and stop() change it. While starting,
# the parts come up one by one and the first election's signals may already
# run receivers: "starting" counts as live, and each call works as soon as the
# part it needs is up. While stopping, the signals queued before stop() are
# still delivered: their receivers can still send and read the kind (it is no
# longer live: not leader, not running) until the parts are closed.
_NEW, _STARTING, _RUNNING, _STOPPING, _STOPPED = (
    "new",
    "starting",
    "running",
    "stopping",
    "stopped",
)
_LIVE = (_STARTING, _RUNNING)
_USABLE = (_STARTING, _RUNNING, _STOPPING)

# Joined and meta notices only feed signals. A notice whose signal has no
# receiver (joined, when only meta_changed is heard, say) is dropped before
# decoding and before it wakes the heartbeat thread. Only the canonical head
# is matched: anything else is decoded and checked.
_SIGNAL_ONLY_NOTICES = (
    (f'{{"v":{VERSION},"type":"joined",'.encode(), signals.instance_joined),
    (f'{{"v":{VERSION},"type":"meta",'.encode(), signals.meta_changed),
)

# The signals fed by the kind's membership channel. Every member hears every
# start there (N**2 notices when a fleet starts), so a Candidate subscribes to
# it only while some receiver is connected to one of these signals.
_MEMBERSHIP_SIGNALS = tuple(signal for _, signal in _SIGNAL_ONLY_NOTICES)


def _membership_heard(candidate: Candidate) -> bool:
    return any(signal.has_receivers_for(candidate) for signal in _MEMBERSHIP_SIGNALS)


def _membership_receiver_connected(signal: Any, **kwargs: Any) -> None:
    for candidate in list(_running_candidates):
        candidate._hear_membership()


for _heard in _MEMBERSHIP_SIGNALS:
    _heard.receiver_connected.connect(_membership_receiver_connected, sender=_heard, weak=False)

# Candidates running in this process, so a fork can mark them in the child.
_running_candidates: weakref.WeakSet[Candidate] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for candidate in list(_running_candidates):
        candidate._forked_away()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _stop_at_exit() -> None:
    """Leave cleanly when the interpreter exits, so others take over at once
    instead of waiting for the lease to expire."""
    for candidate in list(_running_candidates):
        try:
            candidate.stop(timeout=1.0)
        except Exception:  # never let one failure stop the others or the exit
            log.exception("raftredis: stopping %r at exit failed", candidate)


class Candidate:
    """One instance of a kind: takes part in the election, carries meta, sends messages.

    Nothing touches the network until :meth:`start`. All methods block and
    are safe to call from any thread, including from signal receivers.

    :param redis: where Redis is: a dict (``host``, ``port``, ``db``,
        ``password``, ``username``, ``url``, ``unix_socket_path``, ``ssl``), a
        URL string, or a ``redis.Redis`` (its connection settings are reused;
        raftredis opens its own connections with its own timeouts).
    :param kind: the name shared by the instances of one service.
    :param meta: JSON-serialisable data that others see in :meth:`get_instances`.
    :param lease_ttl: seconds a lease lasts; every other timing derives from it
        and can be given too (``renew_interval``, ``renew_deadline``,
        ``membership_refresh``, ``member_expiry``, ``start_timeout``,
        ``socket_timeout``, ``vacancy_jitter``, ``reelect_backoff``,
        ``clock_sync_interval``, ``presence_interval``, ``presence_window``; see
        :class:`~raftredis.Timings`).
    :param key_prefix: prefix of every Redis key and channel.
    :param id: this instance's id (default: a random 20-character hex string).
    :param max_message_bytes: largest encoded message sent or accepted.
    :param secret: sign every message and control notice with HMAC-SHA256 and
        drop unsigned, badly signed, old or replayed ones (a str or bytes of at
        least 16 bytes, or a list of them: signs with the first, accepts any).
        Every instance of a kind must use it, or none (see docs/production.md).
    :param replay_window: with a secret, seconds a signed message stays
        acceptable (by the Redis server's clock); default 30.
    :param min_replicas: keep a new lease only once this many replicas have
        acknowledged it (``WAIT``); otherwise give it up and campaign again
        later. 0 (the default) does not wait. See docs/production.md.
    :param fast_failover: replace a crashed leader in about 0.3 s instead of
        at the end of its lease: the leader proves, every ``presence_interval``,
        that a connection of its own is alive, and the others take the lease
        once that connection has been gone from Redis for ``presence_window``
        (see docs/concepts.md). None (the default): on with one Redis server,
        off behind Sentinel and in a Redis Cluster, where it is not safe
        (True there raises ConfigurationError). Costs at most 20 Redis
        commands per second per kind.
    """

    def __init__(
        self,
        *,
        redis: Any = None,
        kind: str,
        meta: Any = None,
        lease_ttl: float = 3.0,
        key_prefix: str = "raftredis",
        id: str | None = None,
        max_message_bytes: int = 1 << 20,
        renew_interval: float | None = None,
        renew_deadline: float | None = None,
        membership_refresh: float | None = None,
        member_expiry: float | None = None,
        start_timeout: float | None = None,
        socket_timeout: float | None = None,
        vacancy_jitter: float | None = None,
        reelect_backoff: float | None = None,
        clock_sync_interval: float | None = None,
        secret: str | bytes | list[str | bytes] | None = None,
        replay_window: float | None = None,
        min_replicas: int = 0,
        fast_failover: bool | None = None,
        presence_interval: float | None = None,
        presence_window: float | None = None,
    ) -> None:
        self._kind = _check_name("kind", kind)
        prefix = _check_name("key_prefix", key_prefix)
        self._explicit_id = id is not None
        self._id = _check_id(id) if id is not None else _new_id()
        if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int):
            raise ConfigurationError(f"max_message_bytes must be an int, got {max_message_bytes!r}")
        if max_message_bytes < 1024:
            raise ConfigurationError(
                f"max_message_bytes={max_message_bytes} is too small: use at least 1024"
            )
        self._max_message_bytes = max_message_bytes
        if isinstance(min_replicas, bool) or not isinstance(min_replicas, int) or min_replicas < 0:
            raise ConfigurationError(f"min_replicas must be an int >= 0, got {min_replicas!r}")
        self._min_replicas = min_replicas
        self.timings = Timings.from_lease(
            lease_ttl,
            renew_interval=renew_interval,
            renew_deadline=renew_deadline,
            membership_refresh=membership_refresh,
            member_expiry=member_expiry,
            start_timeout=start_timeout,
            socket_timeout=socket_timeout,
            vacancy_jitter=vacancy_jitter,
            reelect_backoff=reelect_backoff,
            clock_sync_interval=clock_sync_interval,
            presence_interval=presence_interval,
            presence_window=presence_window,
        )
        try:
            self._checked_meta(meta)
        except MessageError as exc:
            raise ConfigurationError(str(exc)) from None
        self._meta = copy.deepcopy(meta)
        self._spec: ConnectionSpec = connection_spec(redis)
        # In a Redis Cluster the kind's messages use sharded pub/sub (SPUBLISH).
        self._keys = KeySpace(prefix, self._kind, sharded=self._spec.cluster is not None)
        self._lifecycle = _NEW
        self._lifecycle_lock = threading.Lock()
        self._changed = threading.Condition()
        self._pid = os.getpid()
        self._forked = False
        self._joined_at = 0.0
        self._clock = ServerClock()
        self._keyring, self._replay_window = _signing_setup(secret, replay_window)
        self._fast = _fast_failover(fast_failover, self._spec)
        self._presence: PresencePinger | None = None
        self._election = Election(self._id, self.timings, fast=self._fast)
        self._leader_work = LeaderWork(
            self._thread_name("leader"),
            self._report_async,
            lambda term: self._election.deadline_of(term),
        )
        self._store: RedisStore | None = None
        self._fast_refused: BackendError | None = None
        self._subscriber: redis_py.Redis | None = None
        self._outbox: Outbox | None = None
        self._heartbeat: HeartbeatLoop | None = None
        self._dispatcher: Dispatcher | None = None
        self._listeners: list[Listener] = []
        self._hears_membership = False
        self._last_heartbeat_error: BaseException | None = None

    # ------------------------------------------------------------ properties

    @property
    def id(self) -> str:
        """This instance's unique id."""
        return self._id

    @property
    def kind(self) -> str:
        """The kind this instance belongs to."""
        return self._kind

    @property
    def _live_here(self) -> bool:
        """Started, not stopped, and in the process that started it.

        The pid too: a fork that runs no at-fork hooks (uWSGI without
        py-call-osafterfork) leaves _forked unset in the child.
        """
        return self._lifecycle in _LIVE and not self._forked and os.getpid() == self._pid

    @property
    def state(self) -> State:
        """``State.FOLLOWER``, ``State.CANDIDATE`` or ``State.LEADER``."""
        if not self._live_here:
            return State.FOLLOWER
        if self._election.state is State.LEADER and not self.is_leader:
            return State.FOLLOWER  # the deadline passed; the heartbeat is about to notice
        return self._election.state

    @property
    def current_term(self) -> int:
        """The newest term this instance knows of: the fencing token while it leads."""
        return self._election.term

    @property
    def is_leader(self) -> bool:
        """True if this instance leads *now*: checks the local lease deadline on every call."""
        if not self._live_here:
            return False
        return self._election.is_leader(time.monotonic())

    @property
    def leader_term(self) -> int | None:
        """The term this instance leads in *now*, or None: the fencing token to use.

        Unlike reading ``is_leader`` and then ``current_term``, this is one
        atomic check: it never returns a term this instance does not hold.
        """
        if not self._live_here:
            return None
        return self._election.leader_term(time.monotonic())

    @property
    def leader_id(self) -> str | None:
        """The id of the leader as this instance last knew it (None: no leader known)."""
        if not self._live_here:
            return None
        return self._election.leader_id

    @property
    def meta(self) -> Any:
        """A copy of this instance's meta."""
        return copy.deepcopy(self._meta)

    @property
    def is_running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop` (in the same process)."""
        return self._live_here

    # ------------------------------------------------------------- lifecycle

    def start(self, timeout: float | None = None) -> Candidate:
        """Join the kind; return once this instance is leader or follows a known leader.

        Raises :class:`BackendError` if Redis cannot be reached or no role is
        known within ``timeout`` (default ``start_timeout``); nothing is left
        running then. Calling it again while running does nothing.
        """
        with self._lifecycle_lock:
            self._check_process()
            if self._lifecycle == _RUNNING:
                return self
            if self._lifecycle in (_STOPPING, _STOPPED):
                raise NotRunningError(
                    "this Candidate was stopped and cannot start again: create a new Candidate"
                )
            limit = self.timings.start_timeout if timeout is None else timeout
            deadline = time.monotonic() + limit
            backoff = 0.05
            self._joined_at = 0.0  # set by the first attempt that reads the server time
            self._lifecycle = _STARTING
            while True:
                try:
                    self._start_parts(deadline, limit)
                    break
                except BaseException as exc:
                    self._teardown(timeout=1.0)
                    error = self._start_error(exc)
                    # Redis too slow to answer (a whole fleet starting at once): try
                    # again until the deadline. A refused connection fails at once.
                    pause = backoff * random.uniform(0.5, 1.0)
                    if not _timed_out(exc) or time.monotonic() + pause >= deadline:
                        self._lifecycle = _NEW  # start() may be called again
                        if error is exc:
                            raise
                        raise error from exc
                    log.info("start() of %s/%s failed (%s); retrying", self._kind, self._id, exc)
                    time.sleep(pause)
                    backoff = min(1.0, backoff * 2)
            self._lifecycle = _RUNNING
            _running_candidates.add(self)
            if not self._hears_membership and _membership_heard(self):
                self._hear_membership()  # a receiver was connected while we started
            log.info(
                "raftredis %s/%s started as %s (term %d)",
                self._kind,
                self._id,
                self._election.state.value,
                self._election.term,
            )
            return self

    def _start_error(self, exc: BaseException) -> BaseException:
        """What a failed start attempt raises: BackendError for Redis trouble."""
        if isinstance(exc, BackendError) and not str(exc).startswith("could not start"):
            # Say where: the store's messages name the step, not the server.
            where = describe(self._spec)
            return BackendError(f"could not start: Redis at {where}: {exc}")  # raised from exc
        if isinstance(exc, (BackendError, ConfigurationError)):
            return exc
        if isinstance(exc, (redis_py.RedisError, OSError, TimeoutError)):
            return BackendError(f"could not start: Redis at {describe(self._spec)} failed: {exc}")
        return exc

    def _start_parts(self, deadline: float, limit: float) -> None:
        t = self.timings
        # A fresh state machine per attempt: a failed start() can be retried.
        self._election = Election(self._id, t, fast=False)
        self._presence = None
        route = self._keys.base  # in a Redis Cluster: follow the primary of the kind's slot
        commands = self._spec.client(t, retries=1, route_key=route)
        publisher = self._spec.client(t, retries=0, route_key=route)
        # The listeners' own pool: a failed read raises at once (see ConnectionSpec.client).
        subscriber = self._spec.client(t, retries=None, route_key=route)
        self._subscriber = subscriber
        sign = self._sign if self._keyring is not None else None
        store = RedisStore(commands, publisher, self._keys, self._id, sign)
        self._store = store
        self._fast_refused = None
        fast = self._fast
        if fast:
            refused = store.presence_refused()
            if refused is not None:
                fast = False
                self._fast_refused = RefusedError(
                    f"fast failover is off for this instance: {refused}. Give raftredis' "
                    "Redis user +ping and +pubsub|numsub (see docs/production.md#acl); "
                    "the lease decides meanwhile"
                )
        self._election = Election(self._id, t, fast=fast)
        self._presence = None
        if fast:
            self._presence = PresencePinger(
                t.presence_interval, self._post, self._election.presence_proof
            )
        self._outbox = Outbox(
            self._keys,
            self._id,
            self._max_message_bytes,
            PublishPool(publisher),
            send_to_leader_script(self._keys),
            stamp=self._stamp,
            sign=sign,
        )
        sent = time.monotonic()
        server_ms = store.server_time_ms()
        self._clock.update(server_ms, sent, time.monotonic())
        if not self._joined_at:
            # Kept across the attempts of one start(): the record then stays the
            # same, and the join script knows a retried join by its own record.
            self._joined_at = server_ms / 1000.0
        joined = store.heartbeat_full(self._record(), int(t.member_expiry * 1000), "join")
        if joined.taken:
            raise ConfigurationError(
                f"another live instance of kind {self._kind!r} already uses id {self._id!r}: "
                "ids must be unique. Give this instance another id (or none, for a random "
                f"one); if that instance has crashed, its entry expires within "
                f"{t.member_expiry:g} s"
            )
        keys = self._keys
        self._hears_membership = _membership_heard(self)
        self._listeners = [
            self._control_listener(subscriber, self._hears_membership),
            Listener(
                subscriber,
                Inbox(
                    self,
                    keys,
                    self._id,
                    self._max_message_bytes,
                    known_term=lambda: self._election.term,
                    is_leader=lambda: self.is_leader,
                    guard=self._replay_guard(),
                ).channels,
                name=self._thread_name("messages"),
                on_reconnect=self._on_reconnect,
                on_failure=self._report_async,
                sharded=keys.sharded,
            ),
        ]
        if self._presence is not None:
            # Fast failover: a connection of its own, so that a flood of notices or
            # messages never delays the leader's proofs. Redis counts it on our
            # presence channel, where nothing is published.
            self._listeners.append(
                Listener(
                    subscriber,
                    {keys.presence(self._id): _ignore},
                    name=self._thread_name("presence"),
                    on_reconnect=lambda: None,
                    on_failure=self._report_async,
                    sharded=keys.sharded,
                    presence=self._presence,
                    sleep_time=t.presence_interval,
                )
            )
        for listener in self._listeners:
            listener.start(max(0.05, deadline - time.monotonic()))
        self._dispatcher = Dispatcher(self, self._thread_name("dispatch"))
        self._dispatcher.start()
        self._heartbeat = HeartbeatLoop(
            self._election,
            store,
            self._clock,
            t,
            self._record,
            on_emit=self._emit,
            on_change=self._notify,
            on_backend_error=self._heartbeat_failed,
            on_report=self._report_async,
            name=self._thread_name("heartbeat"),
            min_replicas=self._min_replicas,
        )
        self._last_heartbeat_error = None
        self._heartbeat.start(joined.members)
        with self._changed:
            known = self._changed.wait_for(
                lambda: self._role_known() or _refused(self._last_heartbeat_error),
                deadline - time.monotonic(),
            )
        error = self._last_heartbeat_error
        if _refused(error):
            # An ACL or auth refusal will not go away by waiting: say so now.
            raise BackendError(f"could not start: {error}") from error
        if not known:
            why = f"; the last error: {error}" if error is not None else ""
            raise BackendError(
                f"could not start: no election result from Redis at {describe(self._spec)} "
                f"within {limit:g} s{why}"
            ) from error
        if self._fast_refused is not None:
            log.warning("raftredis: %s", self._fast_refused)
            self._report_async(self._fast_refused)
        self._warn_if_redis_may_evict(store)

    @property
    def fast_failover(self) -> bool:
        """Whether fast failover is on (it may be off where Redis refuses what it needs)."""
        return self._election.fast if self._live_here else self._fast

    def _warn_if_redis_may_evict(self, store: RedisStore) -> None:
        """Report (``error`` signal, and the log) a Redis that may evict raftredis' keys."""
        settings = store.memory_settings()
        if settings.refused is not None:
            error = RefusedError(
                f"could not check whether Redis may evict raftredis' keys ({settings.refused}): "
                "give raftredis' Redis user +info (see docs/production.md#acl); until then "
                "the leader also updates its lease's copy at every renew, to be safe"
            )
            log.warning("raftredis: %s", error)
            self._report_async(error)
            return
        if not settings.may_evict:
            return
        assert settings.policy is not None and settings.maxmemory is not None
        message = (
            f"Redis at {describe(self._spec)} may evict keys (maxmemory {settings.maxmemory} "
            f"bytes, maxmemory-policy {settings.policy}): raftredis keeps one leader through "
            "evictions of its lease, but with an allkeys-* policy (or a FLUSHALL) an instance "
            "starting just then can lead beside the leader until the leader's next renew. Set "
            "maxmemory-policy noeviction, or give raftredis a Redis of its own (another "
            "database of the same server does not help: eviction picks from all of them). "
            "See docs/production.md#redis-memory"
        )
        log.warning("raftredis: %s", message)
        self._report_async(
            EvictionWarning(message, policy=settings.policy, maxmemory=settings.maxmemory)
        )

    def _role_known(self) -> bool:
        e = self._election
        return e.state is State.LEADER or (e.state is State.FOLLOWER and e.leader_id is not None)

    def stop(self, timeout: float | None = None) -> None:
        """Resign if leader, leave the kind, and stop every thread (waits up to ``timeout``).

        Idempotent, and safe to call from a signal receiver (it never waits
        for the thread it runs on). After a fork, in the child it only marks
        this Candidate stopped: the parent still owns the membership.
        """
        with self._lifecycle_lock:
            if self._lifecycle != _RUNNING:
                return
            self._lifecycle = _STOPPING
        _running_candidates.discard(self)
        limit = self.timings.start_timeout if timeout is None else timeout
        if self._forked:
            self._lifecycle = _STOPPED
            return
        try:
            heartbeat = self._heartbeat
            if heartbeat is not None:
                done = threading.Event()
                heartbeat.post(StopRequested(time.monotonic()), done)
                done.wait(limit)
            self._teardown(limit)
        finally:
            self._lifecycle = _STOPPED
        self._notify()
        log.info("raftredis %s/%s stopped", self._kind, self._id)

    def _teardown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        heartbeat, self._heartbeat = self._heartbeat, None
        if (
            heartbeat is not None
            and heartbeat.thread.is_alive()
            and heartbeat.thread is not threading.current_thread()
        ):
            heartbeat.post(StopRequested(time.monotonic()))
            heartbeat.thread.join(left())
        self._leader_work.join(left())
        for listener in self._listeners:
            listener.stop(left())
        self._listeners = []
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.stop(left())
        store, self._store = self._store, None
        outbox, self._outbox = self._outbox, None
        if outbox is not None:
            outbox.close()
        if store is not None:
            store.commands.close()
            store.publisher.close()
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            subscriber.close()

    def reelect(self, timeout: float | None = None) -> bool:
        """If this instance leads, resign and let the others campaign first.

        Returns True if it was leader and resigned. It may be elected again
        (``elected`` is then sent again), but only if nobody else takes the
        lease within ``reelect_backoff``. A leader suspended by fast failover
        (it holds the lease but cannot prove its presence connection alive for
        the moment, so ``is_leader`` is False) resigns too, since it would
        otherwise lead again on its next proof.
        """
        heartbeat = self._require_running()
        if not (self.is_leader or self._election.holds_lease):
            return False
        done = threading.Event()
        heartbeat.post(ReelectRequested(time.monotonic()), done)
        done.wait(self.timings.start_timeout if timeout is None else timeout)
        return True

    def wait_for_leader(self, timeout: float | None = None) -> str:
        """Block until some instance (maybe this one) is known to lead; return its id.

        Raises :class:`LeaderTimeoutError` after ``timeout`` seconds (None: wait
        forever) and :class:`NotRunningError` if this Candidate stops meanwhile.
        """
        self._require_running()
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self._election.leader_id is not None or not self.is_running, timeout
            )
        leader = self._election.leader_id
        if not self.is_running:
            raise NotRunningError("the Candidate stopped while waiting for a leader")
        if not ok or leader is None:
            raise LeaderTimeoutError(f"no leader of kind {self._kind!r} within {timeout} s")
        return leader

    def __enter__(self) -> Candidate:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------- receivers

    def on(self, event: str, receiver: F | None = None) -> Any:
        """Connect ``receiver`` to a signal, by signal name or seed event name.

        ``candidate.on("elected", fn)`` or ``@candidate.on("message:from:leader")``.
        The receiver is held strongly (a lambda keeps working) and only hears
        this Candidate. Returns the receiver.
        """
        signal = _signal(event)

        def connect(fn: F) -> F:
            signal.connect(fn, sender=self, weak=False)
            return fn

        return connect(receiver) if receiver is not None else connect

    def off(self, event: str, receiver: Callable[..., Any]) -> None:
        """Disconnect a receiver connected with :meth:`on`."""
        _signal(event).disconnect(receiver, sender=self)

    def while_leader(self, fn: LeaderFunction) -> LeaderFunction:
        """Run ``fn(stop_event)`` in its own thread each time this instance is elected.

        ``stop_event`` (a :class:`~raftredis.Leadership`, a ``threading.Event``)
        is set the moment leadership is lost (or at stop()); the function
        should return soon after. ``stop_event.term`` is the term of this
        leadership: the fencing token for its work. Usable as a decorator.
        """
        if not callable(fn):
            raise TypeError(f"while_leader needs a callable, got {fn!r}")
        self._leader_work.add(fn)
        return fn

    # ------------------------------------------------------------- messaging

    def message_to(self, instance_id: str, payload: Any) -> int:
        """Send ``payload`` to one instance; returns 1 if it received it, else 0."""
        outbox = self._require_outbox()
        return outbox.send(outbox.prepare(Scope.DIRECT, payload, instance_id))

    def message_all(self, payload: Any) -> int:
        """Send ``payload`` to every other instance; returns how many received it."""
        outbox = self._require_outbox()
        return outbox.send(outbox.prepare(Scope.ALL, payload))

    def message_followers(self, payload: Any) -> int:
        """Send ``payload`` to the followers; returns how many instances received it.

        The leader discards these on receipt, so from the leader the count is
        the number of followers; from a follower it includes the leader.
        """
        outbox = self._require_outbox()
        return outbox.send(outbox.prepare(Scope.FOLLOWERS, payload))

    def message_leader(self, payload: Any) -> int:
        """Send ``payload`` to whoever holds the lease now; 1 if it received it, else 0.

        Reading the holder and publishing happen in one Redis script, so the
        message never goes to a leader that has just been replaced. Returns 0
        when there is no leader, or when this instance is the leader.
        """
        outbox = self._require_outbox()
        return outbox.send(outbox.prepare(Scope.LEADER, payload))

    def batch(self) -> MessageBatch:
        """A :class:`~raftredis.MessageBatch`: messages published together, in order.

        For bulk sends: a round trip per 1,000 messages instead of one per
        message. Needs a running Candidate when messages are added and sent.
        """
        return MessageBatch(self._require_outbox)

    def _stamp(self) -> tuple[int, bool]:
        """(term, leads now) for a message, in one atomic check of the lease."""
        if not self._live_here:
            return self._election.term, False
        term = self._election.leader_term(time.monotonic())
        return (self._election.term, False) if term is None else (term, True)

    # ------------------------------------------------------------- discovery

    def get_instances(self) -> list[Instance]:
        """Every live instance of the kind, this one included, in order of joining.

        One Redis round trip, O(members of this kind); expired members are
        pruned on the way. A live member whose record is missing or unreadable
        (its meta hash entry was lost) is listed with ``meta`` None until it
        writes its record again, at its next full heartbeat.
        """
        reply = self._require_store().members()
        holder = reply.lease.holder if reply.lease is not None else None
        instances = []
        for row in reply.rows:
            try:
                record = decode_record(row.record)
            except WireError as exc:
                log.debug("member %r of %s has no usable record: %s", row.id, self._kind, exc)
                seen = (row.expires_ms / 1000.0) - self.timings.member_expiry
                record = MemberRecord(None, seen, self.timings.member_expiry)
            if row.id == self._id:
                state = self.state
            else:
                state = State.LEADER if row.id == holder else State.FOLLOWER
            last_seen = (row.expires_ms - record.ttl * 1000.0) / 1000.0
            instances.append(record.instance(row.id, state, last_seen))
        instances.sort(key=lambda i: (i.joined_at, i.id))
        return instances

    def get_leader(self) -> Instance | None:
        """The instance holding the lease now (read from Redis), or None."""
        store = self._require_store()
        lease = store.lease()
        if lease is None:
            return None
        raw, expires_ms = store.member(lease.holder)
        try:
            record = decode_record(raw)
        except WireError:
            return Instance(lease.holder, None, State.LEADER, 0.0, 0.0)
        last_seen = record.joined_at
        if expires_ms is not None:
            last_seen = (expires_ms - record.ttl * 1000.0) / 1000.0
        return record.instance(lease.holder, State.LEADER, last_seen)

    def get_meta(self) -> Any:
        """A copy of this instance's meta (local, no I/O)."""
        return self.meta

    def set_meta(self, meta: Any) -> None:
        """Replace this instance's meta; others see it in get_instances() and meta_changed.

        Before start() it only changes the local value that start() publishes.
        """
        self._check_process()
        self._checked_meta(meta)
        self._meta = copy.deepcopy(meta)
        store = self._store
        if self._lifecycle in _LIVE and store is not None:
            record = self._record()
            store.set_record(record, encode_meta_notice(self._id, record, self._clock_seconds()))

    # ---------------------------------------------- seed (camelCase) aliases

    def messageTo(self, instance_id: str, payload: Any) -> int:
        """Alias of :meth:`message_to` (node-raft-redis name)."""
        return self.message_to(instance_id, payload)

    def messageAll(self, payload: Any) -> int:
        """Alias of :meth:`message_all` (node-raft-redis name)."""
        return self.message_all(payload)

    def messageFollowers(self, payload: Any) -> int:
        """Alias of :meth:`message_followers` (node-raft-redis name)."""
        return self.message_followers(payload)

    def messageLeader(self, payload: Any) -> int:
        """Alias of :meth:`message_leader` (node-raft-redis name)."""
        return self.message_leader(payload)

    def getInstances(self) -> list[Instance]:
        """Alias of :meth:`get_instances` (node-raft-redis name)."""
        return self.get_instances()

    def getLeader(self) -> Instance | None:
        """Alias of :meth:`get_leader` (node-raft-redis name)."""
        return self.get_leader()

    def getMeta(self) -> Any:
        """Alias of :meth:`get_meta` (node-raft-redis name)."""
        return self.get_meta()

    def setMeta(self, meta: Any) -> None:
        """Alias of :meth:`set_meta` (node-raft-redis name)."""
        self.set_meta(meta)

    @property
    def currentTerm(self) -> int:
        """Alias of :attr:`current_term` (node-raft-redis name)."""
        return self.current_term

    # --------------------------------------------- callbacks from our threads

    def _emit(self, command: Emit) -> None:
        """Heartbeat thread: start/stop leader work at once, queue the signal."""
        if command.signal == "elected":
            self._leader_work.elected(command.kwargs["term"])
        elif command.signal == "state_changed" and command.kwargs.get("old") is State.LEADER:
            self._leader_work.lost()
        signal = signals.by_name(command.signal)
        dispatcher = self._dispatcher
        # Nobody listens (common for instance_joined in large kinds): skip the queue.
        if dispatcher is not None and signal.has_receivers_for(self):
            dispatcher.submit(signal, command.kwargs)

    def _notify(self) -> None:
        presence = self._presence
        if presence is not None:
            # Heartbeat thread, after every event: prove our presence while we hold the
            # lease, and say whose proofs count.
            presence.active = self._election.holds_lease
            presence.validated(self._election.validated_epoch)
        with self._changed:
            self._changed.notify_all()

    def _heartbeat_failed(self, error: BaseException) -> None:
        """Heartbeat thread: remember the error for a start() that waits, and report it."""
        self._last_heartbeat_error = error
        with self._changed:
            self._changed.notify_all()
        self._report_async(error)

    def _report_async(self, error: BaseException) -> None:
        """Report an error on the dispatch thread (from threads that never run user code)."""
        dispatcher = self._dispatcher
        if dispatcher is not None:
            dispatcher.submit(signals.error_occurred, {"error": error})

    def _on_reconnect(self) -> None:
        heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.post(Reconnected(time.monotonic()))

    def _post(self, event: object) -> None:
        """Hand an election event to the heartbeat thread (from the listeners)."""
        heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.post(event)  # type: ignore[arg-type]

    def _control_listener(self, subscriber: redis_py.Redis, with_membership: bool) -> Listener:
        keys = self._keys
        # A replay guard per listener: while a new one replaces the old, both
        # hear the same notices, and neither copy is a replay.
        guard = self._replay_guard()

        def on_control(message: dict[str, Any]) -> None:
            self._on_control(message, guard)

        channels = {keys.control: on_control}
        if with_membership:
            channels[keys.membership] = on_control
        return Listener(
            subscriber,
            channels,
            name=self._thread_name("control"),
            on_reconnect=self._on_reconnect,
            on_failure=self._report_async,
            sharded=keys.sharded,
        )

    def _hear_membership(self) -> None:
        """A joined/meta_changed receiver was connected: subscribe to those notices.

        Done before ``connect()`` returns, so the receiver hears the next
        change; in the background only if start() or stop() holds the
        lifecycle lock (the connect may come from a thread stop() waits for).
        """
        if self._hears_membership or self._forked or not _membership_heard(self):
            return
        if not self._add_membership_listener(blocking=False):
            threading.Thread(
                target=self._add_membership_listener,
                args=(True,),
                name=self._thread_name("subscribe"),
                daemon=True,
            ).start()

    def _add_membership_listener(self, blocking: bool) -> bool:
        """Swap in the listener under the lifecycle lock; False if the lock was busy."""
        if not self._lifecycle_lock.acquire(blocking=blocking):
            return False
        try:
            old = self._subscribe_membership()
        finally:
            self._lifecycle_lock.release()
        if old is not None:
            old.stop(1.0)
        return True

    def _subscribe_membership(self) -> Listener | None:
        """With the lifecycle lock held: swap in a control listener that also hears the
        membership channel; returns the old listener, for the caller to stop."""
        subscriber = self._subscriber
        if self._lifecycle != _RUNNING or self._hears_membership or subscriber is None:
            return None
        # The new listener replaces the old one once it is subscribed: no gap.
        # Notices heard by both meanwhile are hints (elected, resigned, left) that
        # the election takes twice harmlessly.
        listener = self._control_listener(subscriber, True)
        try:
            listener.start(4 * self.timings.socket_timeout)
        except Exception as exc:
            listener.stop(1.0)
            error = BackendError(f"could not subscribe to joined/meta notices: {exc}")
            error.__cause__ = exc
            self._report_async(error)
            return None
        old, self._listeners[0] = self._listeners[0], listener
        self._hears_membership = True
        return old

    def _on_control(self, message: dict[str, Any], guard: ReplayGuard | None = None) -> None:
        """Control listener thread: decode and hand to the heartbeat; no user code."""
        data = message.get("data")
        raw = data if isinstance(data, bytes) else b""
        for head, signal in _SIGNAL_ONLY_NOTICES:
            # Signed notices start with the same head (the signature is at the
            # end): one nobody would hear is dropped unverified, signed or not.
            if raw.startswith(head) and not signal.has_receivers_for(self):
                return
        try:
            if guard is not None:
                guard.check(raw)
            notice = decode_control(raw, self._max_message_bytes + CONTROL_OVERHEAD_BYTES)
        except WireError as exc:
            error = ProtocolError(str(exc), channel=channel_of(message), raw=raw)
            log.warning("%s", error)
            self._report_async(error)
            return
        heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.post(ControlReceived(time.monotonic(), notice))

    # --------------------------------------------------------------- helpers

    def _checked_meta(self, meta: Any) -> None:
        """Meta must be JSON within max_message_bytes (UTF-8 bytes), like a message."""
        size = len(utf8(check_json(meta, "meta"), "meta"))
        if size > self._max_message_bytes:
            raise MessageError(
                f"meta is {size} bytes encoded, over max_message_bytes="
                f"{self._max_message_bytes}; keep meta small (or store a reference to it)"
            )

    def _record(self) -> str:
        return encode_record(MemberRecord(self._meta, self._joined_at, self.timings.member_expiry))

    def _server_ms(self) -> int:
        """The Redis server's clock in ms, estimated (the local one before the first sync)."""
        return self._clock.now_ms() if self._clock.synced else int(time.time() * 1000)

    def _sign(self, body: bytes) -> bytes:
        """Sign an envelope or notice (only called when a secret is set)."""
        assert self._keyring is not None
        return self._keyring.sign(body, self._server_ms())

    def _replay_guard(self) -> ReplayGuard | None:
        """A verifier for one listener, or None without a secret."""
        if self._keyring is None:
            return None
        return ReplayGuard(self._keyring, self._server_ms, self._replay_window)

    def _clock_seconds(self) -> float:
        return self._clock.now_ms() / 1000.0 if self._clock.synced else time.time()

    def _thread_name(self, role: str) -> str:
        return f"raftredis-{role}-{self._kind}-{self._id[:8]}"

    def _check_process(self) -> None:
        if self._lifecycle == _NEW and not self._forked:
            if os.getpid() != self._pid:
                # Created but never started before a fork (e.g. gunicorn --preload):
                # nothing to inherit, but every child would share the random id,
                # so each child draws its own.
                self._pid = os.getpid()
                if not self._explicit_id:
                    self._id = _new_id()
            return
        if self._forked or os.getpid() != self._pid:
            self._forked = self._forked or self._lifecycle in _LIVE
            raise NotRunningError(
                f"this Candidate belongs to process {self._pid}, and this is process "
                f"{os.getpid()} (a fork): threads and connections do not survive fork(). "
                "Create a new Candidate after the fork (gunicorn: in post_fork; "
                "uWSGI: lazy-apps = true)."
            )

    def _require(self, part: _Part | None) -> _Part:
        """``part`` of a live Candidate, or NotRunningError saying why there is none.

        During start() the parts come up in order (store and outbox, listeners,
        dispatcher, heartbeat): a receiver run by the first election finds
        every one of them.
        """
        self._check_process()
        lifecycle = self._lifecycle
        if lifecycle not in _USABLE:
            when = "before start()" if lifecycle == _NEW else "after stop()"
            raise NotRunningError(f"this Candidate is not running ({when}): call start() first")
        if part is None:
            if lifecycle == _STOPPING:
                raise NotRunningError("this Candidate is stopping: call start() on a new one")
            raise NotRunningError(
                "this Candidate is starting but not connected to Redis yet (start() is "
                "still trying): call it again once start() has returned"
            )
        return part

    def _require_running(self) -> HeartbeatLoop:
        return self._require(self._heartbeat)

    def _require_store(self) -> RedisStore:
        return self._require(self._store)

    def _require_outbox(self) -> Outbox:
        return self._require(self._outbox)

    def _forked_away(self) -> None:
        """In a forked child: the threads are gone; stop pretending to run."""
        self._forked = True
        log.warning(
            "raftredis Candidate %s/%s was running in process %s before fork(); in the "
            "child %s it is stopped and is never leader. Create a new Candidate after "
            "the fork.",
            self._kind,
            self._id,
            self._pid,
            os.getpid(),
        )

    def __repr__(self) -> str:
        return (
            f"<Candidate {self._kind}/{self._id} {self.state.value} term={self.current_term} "
            f"{self._lifecycle}>"
        )


def _signal(name: str) -> Any:
    try:
        return signals.by_name(name)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def _check_name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{what} must be a non-empty string, got {value!r}")
    if not _NAME_RE.fullmatch(value):
        raise ConfigurationError(
            f"{what}={value!r} is not allowed: it may not contain whitespace, '{{', '}}' "
            "or ':' (they are part of the Redis key layout); use e.g. 'my-service'"
        )
    if len(value) > 200:
        raise ConfigurationError(f"{what} is {len(value)} characters long; use at most 200")
    return value


# How Redis words an ACL denial: NOPERM replies (6.2 and 7), and inside a script.
_DENIALS = ("NOPERM", "no permissions", "user executing the script can't")


def _refused(exc: BaseException | None) -> bool:
    """True if Redis refused us for good: an ACL denial or failed authentication."""
    seen = exc
    while seen is not None:
        if isinstance(seen, (redis_py.exceptions.NoPermissionError, redis_py.AuthenticationError)):
            return True
        if isinstance(seen, redis_py.ResponseError) and any(mark in str(seen) for mark in _DENIALS):
            return True  # a denial inside a script comes as a plain error reply
        seen = seen.__cause__ or seen.__context__
    return False


def _timed_out(exc: BaseException) -> bool:
    """True if ``exc`` or one of its causes is a timeout (not a refusal or a bad reply)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (redis_py.TimeoutError, TimeoutError, socket.timeout)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _signing_setup(secret: Any, window: float | None) -> tuple[Keyring | None, float]:
    """The keyring for ``secret`` (None without one) and the replay window, checked."""
    if window is None:
        window = DEFAULT_WINDOW
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window < 1e9:
        raise ConfigurationError(f"replay_window must be a positive number, got {window!r}")
    if secret is None:
        return None, float(window)
    return Keyring(secrets_from(secret)), float(window)


def _ignore(message: dict[str, Any]) -> None:
    """Handler of the presence channel: nothing is ever published there."""


def _fast_failover(wanted: Any, spec: ConnectionSpec) -> bool:
    """Whether fast failover is on: by default with one Redis server only."""
    if wanted is not None and not isinstance(wanted, bool):
        raise ConfigurationError(f"fast_failover must be True, False or None, got {wanted!r}")
    where = (
        "behind Sentinel" if spec.sentinel is not None
        else "in a Redis Cluster" if spec.cluster is not None
        else None
    )  # fmt: skip
    if where is None:
        return wanted is not False
    if wanted:
        raise ConfigurationError(
            f"fast_failover is not safe {where}: after a failover the new primary has none "
            "of the leader's connections, so the others would take the lease while the "
            "leader still proves its presence to the old one. Leave it out (the lease "
            "decides, as always); see docs/design-notes.md"
        )
    return False


def _new_id() -> str:
    return uuid.uuid4().hex[:20]


def _check_id(value: Any) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ConfigurationError(
            f"id={value!r} is not allowed: use 1 to 128 letters, digits, '.', '_' or '-' "
            "(or leave it out for a random id)"
        )
    return value
