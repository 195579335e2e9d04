"""The Candidate: one instance of a kind, as its users see it.

A thin facade: it checks arguments and the lifecycle, then hands the work
to the :class:`~raftredis.session.Session` of the current run (the threads,
the connections, the election). Its settings are a frozen
:class:`~raftredis.config.Config`.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis as redis_py

from . import registry, signals
from .aliases import NodeRaftRedisNames
from .config import Config, check_meta, new_member_id
from .connection import describe
from .control import MEMBERSHIP_SIGNALS
from .discovery import instances_from, leader_from
from .election import Election, ReelectRequested
from .errors import (
    BackendError,
    ConfigurationError,
    InternalError,
    LeaderTimeoutError,
    NotRunningError,
)
from .failures import timed_out
from .leadership import LeaderFunction, LeaderWork
from .models import Instance, Scope, State
from .outbox import MessageBatch, Outbox
from .reliable import RequestHandler
from .session import Session
from .wire import encode_meta_notice

__all__ = ["Candidate"]

log = logging.getLogger("raftredis")

F = TypeVar("F", bound=Callable[..., Any])

# The lifecycle: new -> starting -> running -> stopping -> stopped (a failed
# start goes back to new); "forked" in a child process that a fork left it
# running in. Only start(), stop() and the fork hook change it. While starting,
# the first election's signals may already run receivers: "starting" counts as
# live, and the API works as soon as the Session exists. While stopping, the
# signals queued before stop() are still delivered: their receivers can still
# send and read the kind (it is no longer live: not leader, not running).
_NEW, _STARTING, _RUNNING, _STOPPING, _STOPPED, _FORKED = (
    "new",
    "starting",
    "running",
    "stopping",
    "stopped",
    "forked",
)
_LIVE = (_STARTING, _RUNNING)
_USABLE = (_STARTING, _RUNNING, _STOPPING)


class Candidate(NodeRaftRedisNames):
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
    :param reliable: also read reliable messages and requests (kept in Redis
        Streams until taken; see docs/messaging.md): needed to receive
        ``message_*(..., reliable=True)``, :meth:`ask` and :meth:`ask_leader`
        (sending them works without it). Costs a thread, a connection, and an
        idle read every 10 s (two while leading).
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
        reliable: bool = False,
    ) -> None:
        config = Config.from_options(
            redis=redis,
            kind=kind,
            meta=meta,
            lease_ttl=lease_ttl,
            key_prefix=key_prefix,
            id=id,
            max_message_bytes=max_message_bytes,
            renew_interval=renew_interval,
            renew_deadline=renew_deadline,
            membership_refresh=membership_refresh,
            member_expiry=member_expiry,
            start_timeout=start_timeout,
            socket_timeout=socket_timeout,
            vacancy_jitter=vacancy_jitter,
            reelect_backoff=reelect_backoff,
            clock_sync_interval=clock_sync_interval,
            secret=secret,
            replay_window=replay_window,
            min_replicas=min_replicas,
            fast_failover=fast_failover,
            presence_interval=presence_interval,
            presence_window=presence_window,
            reliable=reliable,
        )
        self._setup(config)

    @classmethod
    def from_config(cls, config: Config) -> Candidate:
        """A Candidate with the settings of ``config`` (see :class:`~raftredis.config.Config`)."""
        if not isinstance(config, Config):
            raise TypeError(f"from_config needs a raftredis Config, got {config!r}")
        candidate = cls.__new__(cls)
        candidate._setup(config)
        return candidate

    def _setup(self, config: Config) -> None:
        self._config = config
        self.timings = config.timings
        self._id = config.member_id or new_member_id()
        self._meta = copy.deepcopy(config.meta)
        self._lifecycle = _NEW
        self._pid = os.getpid()
        self._lifecycle_lock = threading.Lock()
        self._changed = threading.Condition()
        self._session: Session | None = None
        self._request_handler: RequestHandler | None = None
        # The state machine of the current run, or of the last one (current_term after stop).
        self._election = Election(self._id, config.timings, fast=config.fast_failover)
        self._leader_work = LeaderWork(
            f"raftredis-leader-{config.kind}-{self._id[:8]}",
            self._report,
            lambda term: self._election.deadline_of(term),
        )

    # ------------------------------------------------------------ properties

    @property
    def config(self) -> Config:
        """This Candidate's settings (frozen)."""
        return self._config

    @property
    def id(self) -> str:
        """This instance's unique id."""
        return self._id

    @property
    def kind(self) -> str:
        """The kind this instance belongs to."""
        return self._config.kind

    @property
    def _live_here(self) -> bool:
        """Started, not stopped, and in the process that started it.

        The pid too: a fork that runs no at-fork hooks (uWSGI without
        py-call-osafterfork) leaves the lifecycle as it was in the child.
        """
        return self._lifecycle in _LIVE and os.getpid() == self._pid

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
        session = self._session
        return self._live_here and session is not None and session.is_leader()

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

    @property
    def fast_failover(self) -> bool:
        """Whether fast failover is on (it may be off where Redis refuses what it needs)."""
        return self._election.fast

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
            self._lifecycle = _STARTING
            try:
                self._start_session(time.monotonic() + limit, limit)
            except BaseException:
                self._lifecycle = _NEW  # start() may be called again
                raise
            self._lifecycle = _RUNNING
            registry.add(self)
            session = self._session
            assert session is not None
            if not session.hears_membership and self._membership_heard():
                self._hear_membership()  # a receiver was connected while we started
            log.info(
                "raftredis %s/%s started as %s (term %d)",
                self.kind,
                self._id,
                self._election.state.value,
                self._election.term,
            )
            return self

    def _start_session(self, deadline: float, limit: float) -> None:
        """Open a Session, retrying while Redis is too slow to answer (a whole fleet
        starting at once) until the deadline; a refused connection fails at once."""
        backoff = 0.05
        joined_at = 0.0  # kept across attempts: a retried join writes the same record
        while True:
            session = Session(
                self._config,
                self._id,
                self,
                meta=lambda: self._meta,
                leader_work=self._leader_work,
                changed=self._changed,
                on_fatal=self._gave_up,
                hears_membership=self._membership_heard(),
                answer=lambda: self._request_handler,
            )
            # Published before it opens: receivers of the first election use it.
            self._session, self._election = session, session.election
            try:
                session.open(deadline, limit, joined_at)
                return
            except BaseException as exc:
                joined_at = session.joined_at
                session.close(1.0)
                self._session = None
                error = self._start_error(exc)
                pause = backoff * random.uniform(0.5, 1.0)
                if not timed_out(exc) or time.monotonic() + pause >= deadline:
                    if error is exc:
                        raise
                    raise error from exc
                log.info("start() of %s/%s failed (%s); retrying", self.kind, self._id, exc)
                time.sleep(pause)
                backoff = min(1.0, backoff * 2)

    def _start_error(self, exc: BaseException) -> BaseException:
        """What a failed start attempt raises: BackendError for Redis trouble."""
        where = describe(self._config.connection)
        if isinstance(exc, BackendError) and not str(exc).startswith("could not start"):
            # Say where: the store's messages name the step, not the server.
            return BackendError(f"could not start: Redis at {where}: {exc}")  # raised from exc
        if isinstance(exc, (BackendError, ConfigurationError)):
            return exc
        if isinstance(exc, (redis_py.RedisError, OSError, TimeoutError)):
            return BackendError(f"could not start: Redis at {where} failed: {exc}")
        return exc

    def stop(self, timeout: float | None = None) -> None:
        """Resign if leader, leave the kind, and stop every thread (waits up to ``timeout``).

        Idempotent, and safe to call from a signal receiver (it never waits
        for the thread it runs on). After a fork, in the child it only marks
        this Candidate stopped: the parent still owns the membership.
        """
        with self._lifecycle_lock:
            forked = self._lifecycle == _FORKED or (
                self._lifecycle == _RUNNING and os.getpid() != self._pid
            )
            if forked:
                self._lifecycle = _STOPPED
                return
            if self._lifecycle != _RUNNING:
                return
            self._lifecycle = _STOPPING
        registry.discard(self)
        limit = self.timings.start_timeout if timeout is None else timeout
        session = self._session
        try:
            if session is not None:
                session.stop(limit)
        finally:
            self._lifecycle = _STOPPED
        with self._changed:
            self._changed.notify_all()
        log.info("raftredis %s/%s stopped", self.kind, self._id)

    def _gave_up(self, error: InternalError) -> None:
        """Heartbeat thread, after it gave up: stop, from a thread of its own (stop()
        joins the heartbeat thread)."""
        threading.Thread(
            target=self.stop, name=f"raftredis-stop-{self.kind}-{self._id[:8]}", daemon=True
        ).start()

    def reelect(self, timeout: float | None = None) -> bool:
        """If this instance leads, resign and let the others campaign first.

        Returns True if it was leader and resigned. It may be elected again
        (``elected`` is then sent again), but only if nobody else takes the
        lease within ``reelect_backoff``. A leader suspended by fast failover
        (it holds the lease but cannot prove its presence connection alive for
        the moment, so ``is_leader`` is False) resigns too, since it would
        otherwise lead again on its next proof.
        """
        session = self._require_session()
        if not (self.is_leader or self._election.holds_lease):
            return False
        done = threading.Event()
        session.heartbeat.post(ReelectRequested(time.monotonic()), done)
        done.wait(self.timings.start_timeout if timeout is None else timeout)
        return True

    def wait_for_leader(self, timeout: float | None = None) -> str:
        """Block until some instance (maybe this one) is known to lead; return its id.

        Raises :class:`LeaderTimeoutError` after ``timeout`` seconds (None: wait
        forever) and :class:`NotRunningError` if this Candidate stops meanwhile.
        """
        self._require_session()
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self._election.leader_id is not None or not self.is_running, timeout
            )
        leader = self._election.leader_id
        if not self.is_running:
            raise NotRunningError("the Candidate stopped while waiting for a leader")
        if not ok or leader is None:
            raise LeaderTimeoutError(f"no leader of kind {self.kind!r} within {timeout} s")
        return leader

    def __enter__(self) -> Candidate:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------- receivers

    def on(self, event: str, receiver: F | None = None) -> Any:
        """Connect ``receiver`` to a signal, by signal name or node-raft-redis event name.

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

    def message_to(self, instance_id: str, payload: Any, *, reliable: bool = False) -> int:
        """Send ``payload`` to one instance; returns 1 if it received it, else 0.

        ``reliable=True``: kept in Redis until that instance takes it (it must
        run with ``reliable=True``); returns 1, or raises
        :class:`~raftredis.UndeliverableError` if it is no member (it left) or
        reads no reliable messages. See docs/messaging.md.
        """
        if reliable:
            return self._reliable(Scope.DIRECT, payload, instance_id)
        outbox = self._outbox()
        return outbox.send(outbox.prepare(Scope.DIRECT, payload, instance_id))

    def message_all(self, payload: Any, *, reliable: bool = False) -> int:
        """Send ``payload`` to every other instance; returns how many received it.

        ``reliable=True``: kept in Redis until each member that reads reliable
        messages has taken it; returns how many such members there are.
        """
        if reliable:
            return self._reliable(Scope.ALL, payload)
        outbox = self._outbox()
        return outbox.send(outbox.prepare(Scope.ALL, payload))

    def message_followers(self, payload: Any, *, reliable: bool = False) -> int:
        """Send ``payload`` to the followers; returns how many instances received it.

        The leader discards these on receipt, so from the leader the count is
        the number of followers; from a follower it includes the leader.
        ``reliable=True`` as for :meth:`message_all` (the leader at the time of
        reading discards it).
        """
        if reliable:
            return self._reliable(Scope.FOLLOWERS, payload)
        outbox = self._outbox()
        return outbox.send(outbox.prepare(Scope.FOLLOWERS, payload))

    def message_leader(self, payload: Any, *, reliable: bool = False) -> int:
        """Send ``payload`` to whoever holds the lease now; 1 if it received it, else 0.

        Reading the holder and publishing happen in one Redis script, so the
        message never goes to a leader that has just been replaced. Returns 0
        when there is no leader, or when this instance is the leader.
        ``reliable=True``: kept in Redis for whoever leads when it is read, so
        it survives a change of leader (and waits while there is none); returns 1.
        """
        if reliable:
            return self._reliable(Scope.LEADER, payload)
        outbox = self._outbox()
        return outbox.send(outbox.prepare(Scope.LEADER, payload))

    def ask(self, instance_id: str, payload: Any, timeout: float = 2.0) -> Any:
        """Send a request to one instance and return its answer (see :meth:`on_request`).

        Raises :class:`~raftredis.AskTimeoutError` without an answer within
        ``timeout`` seconds, :class:`~raftredis.RemoteError` if its handler
        raised, :class:`~raftredis.UndeliverableError` if it is no member or
        reads no reliable messages.
        """
        return self._require_session().asker.ask(Scope.DIRECT, payload, instance_id, timeout)

    def ask_leader(self, payload: Any, timeout: float = 2.0) -> Any:
        """Send a request to whoever leads when it is read, and return the answer.

        Raises :class:`~raftredis.NoLeaderError` when nobody leads at the send,
        and the errors of :meth:`ask`. A request taken by a leader that crashed
        before answering is taken again by the next one.
        """
        return self._require_session().asker.ask(Scope.LEADER, payload, None, timeout)

    def on_request(self, handler: F) -> F:
        """Register the function that answers requests (one per Candidate; usable as a
        decorator): ``handler(candidate, message=Message)`` returns a JSON value.

        It runs on the reliable reader's thread (``reliable=True`` is needed to
        receive requests); an exception it raises reaches the asker as a
        :class:`~raftredis.RemoteError`.
        """
        if not callable(handler):
            raise TypeError(f"on_request needs a callable, got {handler!r}")
        self._request_handler = handler
        return handler

    def _reliable(self, scope: Scope, payload: Any, instance_id: str | None = None) -> int:
        return self._require_session().reliable_outbox.send(scope, payload, instance_id)

    def batch(self) -> MessageBatch:
        """A :class:`~raftredis.MessageBatch`: messages published together, in order.

        For bulk sends: a round trip per 1,000 messages instead of one per
        message. Needs a running Candidate when messages are added and sent.
        """
        return MessageBatch(self._outbox)

    # ------------------------------------------------------------- discovery

    def get_instances(self) -> list[Instance]:
        """Every live instance of the kind, this one included, in order of joining.

        One Redis round trip, O(members of this kind); expired members are
        pruned on the way. A live member whose record is missing or unreadable
        (its meta hash entry was lost) is listed with ``meta`` None until it
        writes its record again, at its next full heartbeat.
        """
        reply = self._require_session().store.members()
        return instances_from(reply, self._id, self.state, self.timings.member_expiry)

    def get_leader(self) -> Instance | None:
        """The instance holding the lease now (read from Redis), or None."""
        store = self._require_session().store
        lease = store.lease()
        if lease is None:
            return None
        raw, expires_ms = store.member(lease.holder)
        return leader_from(lease.holder, raw, expires_ms)

    def get_meta(self) -> Any:
        """A copy of this instance's meta (local, no I/O)."""
        return self.meta

    def set_meta(self, meta: Any) -> None:
        """Replace this instance's meta; others see it in get_instances() and meta_changed.

        Before start() it only changes the local value that start() publishes.
        """
        self._check_process()
        check_meta(meta, self._config.max_message_bytes)
        self._meta = copy.deepcopy(meta)
        session = self._session
        if self._lifecycle in _LIVE and session is not None:
            record = session.record()
            notice = encode_meta_notice(self._id, record, session.server_seconds())
            session.store.set_record(record, notice)

    # --------------------------------------------------------------- helpers

    def _report(self, error: BaseException) -> None:
        """Report an error on the dispatch thread of the current run, if there is one."""
        session = self._session
        if session is not None:
            session.report(error)

    def _membership_heard(self) -> bool:
        return any(signal.has_receivers_for(self) for signal in MEMBERSHIP_SIGNALS)

    def _hear_membership(self) -> None:
        """A joined/meta_changed receiver was connected: subscribe to those notices.

        Done before ``connect()`` returns, so the receiver hears the next
        change; in the background only if start() or stop() holds the
        lifecycle lock (the connect may come from a thread stop() waits for).
        """
        session = self._session
        if session is None or session.hears_membership or not self._membership_heard():
            return
        if not self._add_membership_listener(blocking=False):
            threading.Thread(
                target=self._add_membership_listener,
                args=(True,),
                name=session.thread_name("subscribe"),
                daemon=True,
            ).start()

    def _add_membership_listener(self, blocking: bool) -> bool:
        """Swap in the listener under the lifecycle lock; False if the lock was busy."""
        if not self._lifecycle_lock.acquire(blocking=blocking):
            return False
        try:
            session = self._session
            old = None
            if self._lifecycle == _RUNNING and session is not None:
                old = session.subscribe_membership()
        finally:
            self._lifecycle_lock.release()
        if old is not None:
            old.stop(1.0)
        return True

    def _require_session(self) -> Session:
        """The Session of a live (or stopping) Candidate, or NotRunningError saying why."""
        self._check_process()
        lifecycle, session = self._lifecycle, self._session
        if lifecycle not in _USABLE or session is None:
            when = "before start()" if lifecycle == _NEW else "after stop()"
            raise NotRunningError(f"this Candidate is not running ({when}): call start() first")
        return session

    def _outbox(self) -> Outbox:
        return self._require_session().outbox

    def _check_process(self) -> None:
        if self._lifecycle == _NEW:
            if os.getpid() != self._pid:
                # Created but never started before a fork (e.g. gunicorn --preload):
                # nothing to inherit, but every child would share the random id,
                # so each child draws its own.
                self._pid = os.getpid()
                if self._config.member_id is None:
                    self._id = new_member_id()
            return
        if self._lifecycle == _FORKED or os.getpid() != self._pid:
            if self._lifecycle in _LIVE:
                self._lifecycle = _FORKED
            raise NotRunningError(
                f"this Candidate belongs to process {self._pid}, and this is process "
                f"{os.getpid()} (a fork): threads and connections do not survive fork(). "
                "Create a new Candidate after the fork (gunicorn: in post_fork; "
                "uWSGI: lazy-apps = true)."
            )

    def _forked_away(self) -> None:
        """In a forked child: the threads are gone; stop pretending to run."""
        if self._lifecycle in _LIVE:
            self._lifecycle = _FORKED
        log.warning(
            "raftredis Candidate %s/%s was running in process %s before fork(); in the "
            "child %s it is stopped and is never leader. Create a new Candidate after "
            "the fork.",
            self.kind,
            self._id,
            self._pid,
            os.getpid(),
        )

    def __repr__(self) -> str:
        return (
            f"<Candidate {self.kind}/{self._id} {self.state.value} term={self.current_term} "
            f"{self._lifecycle}>"
        )


def _signal(name: str) -> Any:
    try:
        return signals.by_name(name)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
