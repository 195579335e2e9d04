"""Session: one run of a Candidate, from a start() to its stop().

A Session assembles the parts (the Redis clients, the store, the outbox, the
listeners, the dispatch thread and the heartbeat thread), joins the kind,
and tears everything down in one place. Every part exists from the moment
the Session is built, so nothing that uses one has to ask whether it is
there yet. The Candidate owns the lifecycle; a Session does not decide when
it runs, only how.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis as redis_py
from blinker import NamedSignal

from . import signals
from .asking import MAX_ASK_TIMEOUT, Asker
from .clock import ServerClock
from .config import Config
from .connection import describe
from .control import ControlInbox
from .dispatch import Dispatcher
from .election import (
    Effect,
    Elected,
    Election,
    Event,
    Reconnected,
    StateChanged,
    StopRequested,
)
from .errors import (
    BackendError,
    ConfigurationError,
    EvictionWarning,
    InternalError,
    MessagesLostError,
    RefusedError,
)
from .failures import refused
from .heartbeat import HeartbeatLoop
from .inbox import Inbox
from .leadership import LeaderWork
from .listener import Listener, PresencePinger
from .models import State
from .outbox import Outbox
from .publish_pool import PublishPool
from .receiver_watch import MESSAGE_RECEIVE_BUFFER, inbox_watch
from .reliable import BLOCK_SECONDS, ReliableReader, RequestHandler
from .reliable_outbox import ReliableOutbox
from .signing import ReplayGuard, Signer
from .store import RedisStore, send_to_leader_script
from .wire import MemberRecord, encode_record

__all__ = ["Session"]

log = logging.getLogger("raftredis")


class Session:
    """The parts of one run of a Candidate, and the callbacks that connect them.

    ``owner`` is the Candidate: the sender of every signal. ``meta`` gives
    the meta to write in the member record (it can change while it runs);
    ``changed`` is notified after every election event, for waiters.
    ``on_fatal`` is called (on the heartbeat thread) if the heartbeat gives up.
    """

    def __init__(
        self,
        config: Config,
        member_id: str,
        owner: object,
        *,
        meta: Callable[[], Any],
        leader_work: LeaderWork,
        changed: threading.Condition,
        on_fatal: Callable[[InternalError], None],
        hears_membership: bool,
        answer: Callable[[], RequestHandler | None] = lambda: None,
    ) -> None:
        self.config = config
        self.member_id = member_id
        self.keys = keys = config.keys
        self._owner = owner
        self._leader_work = leader_work
        self._changed = changed
        self._on_fatal = on_fatal
        self._meta = meta
        self.joined_at = 0.0
        self.clock = ServerClock()
        self.last_error: BaseException | None = None
        self.fast_refused: RefusedError | None = None
        self._closing = False
        t = config.timings
        spec = config.connection
        route = keys.base  # in a Redis Cluster: follow the primary of the kind's slot
        self.commands = spec.client(t, retries=1, route_key=route)
        self.publisher = spec.client(t, retries=0, route_key=route)
        # The listeners' own pool: a failed read raises at once (see ConnectionSpec.client).
        self.subscriber = spec.client(t, retries=None, route_key=route)
        self.signer = (
            Signer(config.keyring, self._server_ms, config.replay_window)
            if config.keyring is not None
            else None
        )
        sign = self.signer.sign if self.signer is not None else None
        self.store = RedisStore(self.commands, self.publisher, keys, member_id, sign)
        self.election = Election(member_id, t, fast=config.fast_failover)
        self.presence: PresencePinger | None = None
        self.outbox = Outbox(
            keys,
            member_id,
            config.max_message_bytes,
            PublishPool(self.publisher),
            send_to_leader_script(keys),
            leadership=self,
            signer=self.signer,
        )
        self.reliable_outbox = ReliableOutbox(
            keys,
            member_id,
            config.max_message_bytes,
            PublishPool(self.publisher),
            leadership=self,
            signer=self.signer,
        )
        self.asker = Asker(
            self.reliable_outbox,
            keys,
            member_id,
            lambda: spec.client(t, retries=0, route_key=route, read_timeout=MAX_ASK_TIMEOUT + 5),
            config.keyring,
        )
        self.reader: ReliableReader | None = None
        if config.reliable:
            self.reader = ReliableReader(
                self.commands,
                lambda: spec.client(
                    t, retries=0, route_key=route, read_timeout=BLOCK_SECONDS + 1 + t.socket_timeout
                ),
                keys,
                member_id,
                config.max_message_bytes,
                owner=owner,
                is_leader=self.is_leader,
                answer=answer,
                keyring=config.keyring,
                sign=sign,
                name=self.thread_name("reader"),
                member_expiry=t.member_expiry,
            )
        self.dispatcher = Dispatcher(owner, self.thread_name("dispatch"))
        self.heartbeat = HeartbeatLoop(
            self.election,
            self.store,
            self.clock,
            t,
            self.record,
            on_effect=self._on_effect,
            on_change=self._on_change,
            on_backend_error=self._on_backend_error,
            on_report=self.report,
            on_fatal=self._fatal,
            name=self.thread_name("heartbeat"),
            min_replicas=config.min_replicas,
        )
        self.hears_membership = hears_membership
        self.listeners: list[Listener] = []

    # ------------------------------------------------------------- joining

    def open(self, deadline: float, limit: float, joined_at: float) -> float:
        """Join the kind and start every thread; return once a role is known.

        ``joined_at`` is the join time of an earlier attempt of the same start()
        (0.0: read it from Redis now), so a retried join writes the same record.
        ``limit`` is the whole start's time limit, for the error message. Returns
        the join time. Raises BackendError or ConfigurationError; the caller then
        calls :meth:`close`.
        """
        t = self.config.timings
        store = self.store
        if self.election.fast:
            self._check_presence_allowed()
        sent = time.monotonic()
        server_ms = store.server_time_ms()
        self.clock.update(server_ms, sent, time.monotonic())
        self.joined_at = joined_at or server_ms / 1000.0
        joined = store.heartbeat_full(self.record(), int(t.member_expiry * 1000), "join")
        if joined.taken:
            raise ConfigurationError(
                f"another live instance of kind {self.keys.kind!r} already uses id "
                f"{self.member_id!r}: ids must be unique. Give this instance another id (or "
                "none, for a random one); if that instance has crashed, its entry expires "
                f"within {t.member_expiry:g} s",
                option="id",
            )
        if self.reader is not None:
            self.reader.join()
            self.reader.start()
        self.listeners = self._make_listeners()
        for listener in self.listeners:
            listener.start(max(0.05, deadline - time.monotonic()))
        self.dispatcher.start()
        self.heartbeat.start(joined.members)
        self._wait_for_role(deadline, limit)
        if self.fast_refused is not None:
            log.warning("raftredis: %s", self.fast_refused)
            self.report(self.fast_refused)
        self._warn_if_redis_may_evict()
        return self.joined_at

    def _check_presence_allowed(self) -> None:
        """Fast failover needs PING and PUBSUB NUMSUB: without them the lease decides."""
        refused = self.store.presence_refused()
        if refused is None:
            self.presence = PresencePinger(
                self.config.timings.presence_interval, self.post, self.election.presence_proof
            )
            return
        self.election.fast = False  # before the election starts: it never counted on it
        self.fast_refused = RefusedError(
            f"fast failover is off for this instance: {refused}. Give raftredis' "
            "Redis user +ping and +pubsub|numsub (see docs/production.md#acl); "
            "the lease decides meanwhile"
        )

    def _make_listeners(self) -> list[Listener]:
        keys = self.keys
        t = self.config.timings
        inbox = Inbox(
            self._owner,
            keys,
            self.member_id,
            self.config.max_message_bytes,
            known_term=lambda: self.election.term,
            is_leader=self.is_leader,
            guard=self._replay_guard(),
        )
        listeners = [
            self.control_listener(self.hears_membership),
            Listener(
                self.subscriber,
                inbox.channels,
                name=self.thread_name("messages"),
                on_reconnect=self._on_reconnect,
                on_failure=self.report,
                sharded=keys.sharded,
                watch=inbox_watch(
                    self.commands, keys, self.member_id, self.report, self.thread_name("watch")
                ),
                receive_buffer=MESSAGE_RECEIVE_BUFFER,
            ),
        ]
        if self.presence is not None:
            # A connection of its own, so that a flood of notices or messages never
            # delays the leader's proofs. Redis counts it on our presence channel,
            # where nothing is published.
            listeners.append(
                Listener(
                    self.subscriber,
                    {keys.presence(self.member_id): _ignore},
                    name=self.thread_name("presence"),
                    on_reconnect=lambda: None,
                    on_failure=self.report,
                    sharded=keys.sharded,
                    presence=self.presence,
                    sleep_time=t.presence_interval,
                )
            )
        return listeners

    def control_listener(self, with_membership: bool) -> Listener:
        """A listener of the control channel (and, if asked, the membership channel)."""
        handler = ControlInbox(
            self._owner,
            self.member_id,
            self.config.max_message_bytes,
            post=self.post,
            submit=self.submit,
            report=self.report,
            guard=self._replay_guard(),
        ).handle
        channels = {self.keys.control: handler}
        if with_membership:
            channels[self.keys.membership] = handler
        return Listener(
            self.subscriber,
            channels,
            name=self.thread_name("control"),
            on_reconnect=self._on_reconnect,
            on_failure=self.report,
            sharded=self.keys.sharded,
        )

    def subscribe_membership(self) -> Listener | None:
        """Swap in a control listener that also hears joined/meta notices; return the old
        one for the caller to stop (None if nothing was swapped).

        The new listener replaces the old once it is subscribed: no gap. Notices
        both hear meanwhile are hints the election takes twice harmlessly.
        """
        if self.hears_membership or not self.listeners:
            return None
        listener = self.control_listener(True)
        try:
            listener.start(4 * self.config.timings.socket_timeout)
        except Exception as exc:
            listener.stop(1.0)
            error = BackendError(f"could not subscribe to joined/meta notices: {exc}")
            error.__cause__ = exc
            self.report(error)
            return None
        old, self.listeners[0] = self.listeners[0], listener
        self.hears_membership = True
        return old

    def _wait_for_role(self, deadline: float, limit: float) -> None:
        with self._changed:
            known = self._changed.wait_for(
                lambda: self.role_known() or refused(self.last_error),
                deadline - time.monotonic(),
            )
        error = self.last_error
        if refused(error):
            # An ACL or auth refusal will not go away by waiting: say so now.
            raise BackendError(f"could not start: {error}") from error
        if not known:
            why = f"; the last error: {error}" if error is not None else ""
            raise BackendError(
                f"could not start: no election result from Redis at "
                f"{describe(self.config.connection)} within {limit:g} s{why}"
            ) from error

    def role_known(self) -> bool:
        """Leader, or follower of a known leader."""
        e = self.election
        return e.state is State.LEADER or (e.state is State.FOLLOWER and e.leader_id is not None)

    def _warn_if_redis_may_evict(self) -> None:
        """Report (``error`` signal, and the log) a Redis that may evict raftredis' keys."""
        settings = self.store.memory_settings()
        if settings.refused is not None:
            error = RefusedError(
                f"could not check whether Redis may evict raftredis' keys ({settings.refused}): "
                "give raftredis' Redis user +info (see docs/production.md#acl); until then "
                "the leader also updates its lease's copy at every renew, to be safe"
            )
            log.warning("raftredis: %s", error)
            self.report(error)
            return
        if not settings.may_evict:
            return
        assert settings.policy is not None and settings.maxmemory is not None
        message = (
            f"Redis at {describe(self.config.connection)} may evict keys (maxmemory "
            f"{settings.maxmemory} bytes, maxmemory-policy {settings.policy}): raftredis keeps "
            "one leader through evictions of its lease, but with an allkeys-* policy (or a "
            "FLUSHALL) an instance starting just then can lead beside the leader until the "
            "leader's next renew. Set maxmemory-policy noeviction, or give raftredis a Redis "
            "of its own (another database of the same server does not help: eviction picks "
            "from all of them). See docs/production.md#redis-memory"
        )
        log.warning("raftredis: %s", message)
        self.report(EvictionWarning(message, policy=settings.policy, maxmemory=settings.maxmemory))

    # ------------------------------------------------------------ leaving

    def stop(self, timeout: float) -> None:
        """Resign if leading, leave the kind, then :meth:`close` (within ``timeout``)."""
        self._closing = True
        deadline = time.monotonic() + timeout
        if self.heartbeat.alive:
            done = threading.Event()
            self.heartbeat.post(StopRequested(time.monotonic()), done)
            done.wait(timeout)
        if self.reader is not None:
            self._leave_reliable(max(0.0, deadline - time.monotonic()))
        self.close(max(0.0, deadline - time.monotonic()))

    def _leave_reliable(self, timeout: float) -> None:
        """Stop reading reliable messages and drop this instance's stream, saying what it held."""
        assert self.reader is not None
        self.reader.stop(timeout)
        try:
            left = self.reader.leave()
        except (redis_py.RedisError, OSError) as exc:
            log.warning("raftredis: dropping this instance's reliable stream failed: %s", exc)
            return
        if left:
            error = MessagesLostError(
                f"{left} reliable message(s) to {self.member_id} were still to be taken when it "
                "stopped: dropped with its stream (it left the kind)",
                count=left,
            )
            log.warning("raftredis: %s", error)
            self.report(error)

    def close(self, timeout: float) -> None:
        """Stop every thread and close every connection (waits up to ``timeout`` in all)."""
        self._closing = True
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        if self.heartbeat.alive:
            self.heartbeat.post(StopRequested(time.monotonic()))
            self.heartbeat.join(left())
        self._leader_work.join(left())
        if self.reader is not None:
            self.reader.stop(left())
        self.asker.close()
        for listener in self.listeners:
            listener.stop(left())
        self.listeners = []
        self.dispatcher.stop(left())
        self.outbox.close()
        self.commands.close()
        self.publisher.close()
        self.subscriber.close()

    # ------------------------------------------------ what the parts share

    def record(self) -> str:
        """This member's record: its meta now, when it joined, how long it lives."""
        expiry = self.config.timings.member_expiry
        return encode_record(MemberRecord(self._meta(), self.joined_at, expiry))

    def stamp(self) -> tuple[int, bool]:
        """The outbox's stamp: (term, leads now); never leading once stopping."""
        if self._closing:
            return self.election.term, False
        return self.election.stamp(time.monotonic())

    def is_leader(self) -> bool:
        """Leads now (the local lease deadline, read on every call); False once stopping."""
        return not self._closing and self.election.is_leader(time.monotonic())

    def post(self, event: Event) -> None:
        """Hand an election event to the heartbeat thread."""
        self.heartbeat.post(event)

    def submit(self, signal: NamedSignal, kwargs: Mapping[str, Any]) -> None:
        """Queue a signal for the dispatch thread (never blocks)."""
        self.dispatcher.submit(signal, kwargs)

    def report(self, error: BaseException) -> None:
        """Report an error on the dispatch thread (from threads that never run user code)."""
        self.dispatcher.submit(signals.error_occurred, {"error": error})

    def thread_name(self, role: str) -> str:
        return f"raftredis-{role}-{self.keys.kind}-{self.member_id[:8]}"

    def _server_ms(self) -> int:
        """The Redis server's clock in ms, estimated (the local one before the first sync)."""
        return self.clock.now_ms() if self.clock.synced else int(time.time() * 1000)

    def server_seconds(self) -> float:
        """The Redis server's clock in seconds, estimated."""
        return self._server_ms() / 1000.0

    def _replay_guard(self) -> ReplayGuard | None:
        return self.signer.guard() if self.signer is not None else None

    # ---------------------------------------------- the heartbeat's callbacks

    def _on_effect(self, effect: Effect) -> None:
        """Heartbeat thread: start or stop the leader's work at once, queue the signal."""
        if isinstance(effect, Elected):
            self._leader_work.elected(effect.term)
            if self.reader is not None:
                self.reader.elected()
        elif isinstance(effect, StateChanged) and effect.old is State.LEADER:
            self._leader_work.lost()
            if self.reader is not None:
                self.reader.demoted()
        signal, kwargs = signals.for_effect(effect)
        # Nobody listens (common for leader_changed in large kinds): skip the queue.
        if signal.has_receivers_for(self._owner):
            self.dispatcher.submit(signal, kwargs)

    def _on_change(self) -> None:
        presence = self.presence
        if presence is not None:
            # Prove our presence while we hold the lease, and say whose proofs count.
            presence.active = self.election.holds_lease
            presence.validated(self.election.validated_epoch)
        with self._changed:
            self._changed.notify_all()

    def _on_backend_error(self, error: BackendError) -> None:
        """Remember the error for a start() that waits, and report it."""
        self.last_error = error
        with self._changed:
            self._changed.notify_all()
        self.report(error)

    def _on_reconnect(self) -> None:
        self.heartbeat.post(Reconnected(time.monotonic()))

    def _fatal(self, error: InternalError) -> None:
        self._closing = True
        log.error("raftredis: %s", error)
        self.report(error)
        self._on_fatal(error)


def _ignore(message: dict[str, Any]) -> None:
    """Handler of the presence channel: nothing is ever published there."""
