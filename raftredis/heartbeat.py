"""The heartbeat thread: feeds the Election events and carries out its commands.

It owns the only mutable election state, talks to Redis through the
:class:`~raftredis.store.RedisStore`, and never runs user code: the
election's effects go to the ``on_effect`` callback, which queues their
signals for the dispatch thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
from collections import deque
from collections.abc import Callable

from .clock import ServerClock
from .election import (
    Acquire,
    AcquireResult,
    BackendFailed,
    Command,
    Effect,
    Election,
    Event,
    Heartbeat,
    HeartbeatResult,
    Lease,
    Leave,
    Renew,
    RenewResult,
    Resign,
    Start,
    TakeOver,
    TakeoverResult,
    Tick,
    Watch,
    WatchResult,
)
from .errors import BackendError, InternalError, LeaseVanishedError, RefusedError
from .runtime import THREADING, Queue, Runtime, Task, is_current
from .runtime import Event as Signal
from .store import LeaseRecord, RedisStore
from .timing import Timings

__all__ = ["HeartbeatLoop"]

log = logging.getLogger("raftredis")

#: After reporting a vanished lease, further ones are counted and reported at most this often.
VANISHED_REPORT_INTERVAL = 60.0

#: An unexpected exception in the loop (a bug) is reported and the loop pauses,
#: twice as long each time from FIRST_BACKOFF up to MAX_BACKOFF; after
#: MAX_FAILURES in a row the instance gives up its role and stops.
FIRST_BACKOFF = 0.01
MAX_BACKOFF = 0.5
MAX_FAILURES = 5


class HeartbeatLoop:
    """Runs one Election against Redis on a dedicated thread.

    Other threads talk to it only through :meth:`post`. ``on_effect`` receives
    every :class:`~raftredis.election.Effect` (on this thread; it must not
    block), ``on_change`` is called after every event so waiters can re-check
    the state, ``on_backend_error`` once per run of Redis failures, and
    ``on_report`` gets what is worth reporting but is no failure (a lease Redis
    lost, a bug caught). ``on_fatal`` is called once, on this thread, if the
    loop gives up after :data:`MAX_FAILURES` unexpected exceptions in a row: the
    election has then been abandoned (not leading, stopped) and the thread ends.
    """

    def __init__(
        self,
        election: Election,
        store: RedisStore,
        clock: ServerClock,
        timings: Timings,
        record: Callable[[], str],
        *,
        on_effect: Callable[[Effect], None],
        on_change: Callable[[], None],
        on_backend_error: Callable[[BackendError], None],
        on_report: Callable[[BaseException], None] = lambda error: None,
        on_fatal: Callable[[InternalError], None] = lambda error: None,
        name: str,
        min_replicas: int = 0,
        runtime: Runtime = THREADING,
    ) -> None:
        self.election = election
        self._min_replicas = min_replicas
        self._store = store
        self._clock = clock
        self._timings = timings
        self._record = record
        self._on_effect = on_effect
        self._on_fatal = on_fatal
        self._runtime = runtime
        self._name = name
        self._bugs_in_a_row = 0
        self._on_change = on_change
        self._on_backend_error = on_backend_error
        self._on_report = on_report
        self._monotonic = runtime.monotonic
        #: The expiry (server ms) of the lease value this instance wrote last.
        self._lease_expires_ms = 0
        #: Update the lease's copy at each renew: needed where Redis may evict
        #: (see KeySpace.leader_copy). True until Redis is known not to evict, and
        #: checked again every clock_sync_interval while leading.
        self.keep_lease_copy = True
        self._next_memory_check = float("-inf")
        self._evicted_keys: int | None = None  # Redis' evicted_keys when last read
        self._vanished_unreported = 0
        self._next_vanished_report = float("-inf")
        self._inbox: Queue[tuple[Event, Signal | None]] = runtime.queue()
        self._failing = False
        #: The heartbeat thread, once started.
        self.thread: Task | None = None

    def start(self, members: int | None = None) -> None:
        """Start the thread; ``members``: the kind's live members at the join, if known."""
        self.post(Start(self._monotonic(), members))
        self.thread = self._runtime.spawn(self._run, name=self._name)

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self.thread is not None and self.thread.is_alive()

    def join(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` for the thread to end (not from the thread itself)."""
        thread = self.thread
        if thread is not None and thread.is_alive() and not is_current(thread):
            thread.join(timeout)

    def post(self, event: Event, done: Signal | None = None) -> None:
        """Hand an event to the heartbeat thread; ``done`` is set once it was handled."""
        self._inbox.put((event, done))

    # ----------------------------------------------------------- the loop

    def _run(self) -> None:
        election = self.election
        while not election.stopped:
            wakeup = election.next_wakeup
            timeout = None if wakeup is None else max(0.0, wakeup - self._monotonic())
            done: Signal | None = None
            try:
                event, done = self._inbox.get(timeout=timeout)
            except queue.Empty:
                event = Tick(self._monotonic())
            try:
                self._handle(event)
                self._bugs_in_a_row = 0
            except Exception as exc:  # a bug: must neither kill the thread silently nor spin
                self._bug(event, exc)
            finally:
                if done is not None:
                    done.set()
        # Wake anyone still waiting on an event posted after the stop.
        while True:
            try:
                _, done = self._inbox.get_nowait()
            except queue.Empty:
                break
            if done is not None:
                done.set()

    def _handle(self, event: Event) -> None:
        pending: deque[Command] = deque(self.election.handle(event))
        self._on_change()
        while pending:
            command = pending.popleft()
            if isinstance(command, Effect):
                self._on_effect(command)
                continue
            result = self._execute(command)
            if result is not None:
                pending.extend(self.election.handle(result))
                self._on_change()

    def _bug(self, event: Event, exc: Exception) -> None:
        """An unexpected exception: report it and back off; give up if it keeps coming."""
        self._bugs_in_a_row += 1
        count = self._bugs_in_a_row
        log.error("raftredis heartbeat failed handling %r", event, exc_info=exc)
        if count < MAX_FAILURES:
            error = InternalError(
                f"the heartbeat failed handling {type(event).__name__} "
                f"({type(exc).__name__}: {exc}); {count} of {MAX_FAILURES} failures in a row "
                "before this instance stops. This is a bug in raftredis: please report it "
                "with the traceback from the log"
            )
            error.__cause__ = exc
            self._on_report(error)
            self._runtime.sleep(min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (count - 1)))
            return
        fatal = InternalError(
            f"the heartbeat failed {count} times in a row (the last: {type(exc).__name__}: "
            f"{exc}): this instance gave up its role and stopped. This is a bug in "
            "raftredis: please report it with the traceback from the log"
        )
        fatal.__cause__ = exc
        self._give_up(fatal)

    def _give_up(self, error: InternalError) -> None:
        """Abandon the election (no longer leading, at once) and resign, best effort."""
        for command in self.election.abandon():
            try:
                if isinstance(command, Effect):
                    self._on_effect(command)
                else:
                    self._carry_out(command, self._monotonic())
            except Exception:  # giving up must finish: the lease runs out by itself
                log.exception("raftredis: while giving up, %r failed", command)
        self._on_change()
        self._on_fatal(error)

    # ------------------------------------------------------- the commands

    def _execute(self, command: Command) -> Event | None:
        sent_at = self._monotonic()
        try:
            result = self._carry_out(command, sent_at)
        except BackendError as exc:
            if not self._failing:
                self._failing = True
                log.warning("raftredis: %s", exc)
                self._on_backend_error(exc)
            refused = isinstance(exc, RefusedError)
            return BackendFailed(self._monotonic(), command, str(exc), refused=refused)
        if self._failing:
            self._failing = False
            log.info("raftredis: Redis answers again")
        return result

    def _carry_out(self, command: Command, sent_at: float) -> Event | None:
        t = self._timings
        store = self._store
        ttl_ms = int(t.lease_ttl * 1000)
        if isinstance(command, Acquire):
            acquired = store.acquire(command.known_term, ttl_ms, fast=self.election.fast)
            if acquired.acquired and self._min_replicas > 0:
                self._require_replicas(acquired.lease.term)
            if acquired.lease.holder == store.member_id:
                self._lease_expires_ms = acquired.lease.expires_ms
            held = self._lease(acquired.lease, acquired.remaining_ms / 1000.0)
            return AcquireResult(self._monotonic(), sent_at, held, acquired.present)
        if isinstance(command, Watch):
            listeners, members, rank = store.presence_listeners(
                command.holder, command.count_members
            )
            now = self._monotonic()
            # The server clock only matters with a count (it places this follower's turn).
            counted = members is not None and self._clock.synced
            offset = self._clock.now_ms() / 1000.0 - now if counted else None
            return WatchResult(now, command.holder, command.term, listeners, members, rank, offset)
        if isinstance(command, TakeOver):
            window_ms = max(1, round(self.election.takeover_window * 1000))
            found = store.takeover(command.known_term, ttl_ms, window_ms)
            seen = None
            if found.lease is not None:
                seen = self._lease(found.lease, found.remaining_ms / 1000.0)
                if found.status == "acquired":
                    if self._min_replicas > 0:
                        self._require_replicas(found.lease.term)
                    self._lease_expires_ms = found.lease.expires_ms
            return TakeoverResult(
                self._monotonic(),
                sent_at,
                found.status,
                seen,
                found.remaining_ms / 1000.0,
                found.present,
            )
        if isinstance(command, Renew):
            self._check_memory_settings()
            expires_ms = self._clock.now_ms() + ttl_ms
            renewed = store.renew(
                command.term,
                ttl_ms,
                expires_ms,
                self._lease_expires_ms,
                self.keep_lease_copy,
                clear_suspicion=command.clear_suspicion,
            )
            if renewed.renewed:
                self._lease_expires_ms = expires_ms
                if renewed.restored:
                    self._lease_vanished(command.term, restored=True)
            elif renewed.lease is None and self._clock.now_ms() < self._lease_expires_ms:
                # No lease, and ours had not run out: not given up, lost by Redis.
                self._lease_vanished(command.term, restored=False)
            other = None
            if renewed.lease is not None:
                other = self._lease(renewed.lease, renewed.remaining_ms / 1000.0)
            return RenewResult(
                self._monotonic(), sent_at, renewed.renewed, other, command.clear_suspicion
            )
        if isinstance(command, Heartbeat):
            expiry_ms = int(t.member_expiry * 1000)
            if command.full:
                mode = "announce" if command.announce else ""
                reply = store.heartbeat_full(self._record(), expiry_ms, mode)
                assert reply.server_ms is not None
                now = self._monotonic()
                self._clock.update(reply.server_ms, sent_at, now)
            else:
                reply = store.heartbeat(self._clock.now_ms() + expiry_ms, command.read_lease)
                now = self._monotonic()
            lease: Lease | None = None
            if reply.lease is not None:
                remaining = self._clock.seconds_until(reply.lease.expires_ms)
                lease = self._lease(reply.lease, remaining)
            # A full heartbeat that added us re-announced us already.
            rejoined = reply.added and not command.full
            return HeartbeatResult(now, command.read_lease, lease, rejoined, reply.members)
        if isinstance(command, Resign):
            store.resign(command.term)
            return None
        if isinstance(command, Leave):
            store.leave(command.term)
            return None
        raise TypeError(f"unknown command {command!r}")

    def _require_replicas(self, term: int) -> None:
        """Keep a new lease only if ``min_replicas`` replicas acknowledged it (WAIT).

        Otherwise give it up and raise BackendError: the election takes it as
        a failed campaign and tries again later. WAIT waits at most half a
        socket timeout, so the connection does not time out first.
        """
        wanted = self._min_replicas
        wait_ms = max(1, int(self._timings.socket_timeout * 500))
        why = ""
        try:
            acked = self._store.replicas_acknowledging(wanted, wait_ms)
        except BackendError as exc:
            acked, why = 0, f" ({exc})"
        if acked >= wanted:
            return
        # If Redis is unreachable the lease expires by itself; we never lead on it.
        with contextlib.suppress(BackendError):
            self._store.resign(term)
        raise BackendError(
            f"the lease of term {term} reached {acked} of min_replicas={wanted} "
            f"replica(s) within {wait_ms} ms{why}; gave it up"
        )

    def _check_memory_settings(self) -> None:
        """Now and then while leading: may Redis evict (its policy can change at runtime)?"""
        now = self._monotonic()
        if now < self._next_memory_check:
            return
        self._next_memory_check = now + self._timings.clock_sync_interval
        settings = self._store.memory_settings()
        # Unknown (INFO and CONFIG denied): keep the copy, to be safe.
        self.keep_lease_copy = settings.may_evict or settings.policy is None
        self._evicted_keys = settings.evicted_keys

    def _lease_vanished(self, term: int, *, restored: bool) -> None:
        """Report a lease Redis lost: at once, then at most once per interval, with a count."""
        self._vanished_unreported += 1
        now = self._monotonic()
        if now < self._next_vanished_report:
            return
        count, self._vanished_unreported = self._vanished_unreported, 0
        self._next_vanished_report = now + VANISHED_REPORT_INTERVAL
        cause = self._vanished_cause()
        outcome = (
            "it was still ours, so it was put back"
            if restored
            else "another instance may have taken it, so this one stopped leading"
        )
        times = "" if count == 1 else f" ({count} times since the last report)"
        message = (
            f"the lease of term {term} vanished from Redis before it ran out{times}: "
            f"{outcome}. Likely cause: {cause}. See docs/production.md#redis-memory"
        )
        log.warning("raftredis: %s", message)
        self._on_report(LeaseVanishedError(message, term=term, restored=restored, cause=cause))

    def _vanished_cause(self) -> str:
        """Why the lease vanished, as far as Redis' INFO can tell."""
        settings = self._store.memory_settings()
        before, self._evicted_keys = self._evicted_keys, settings.evicted_keys
        if settings.policy is None:
            return (
                "evicted (maxmemory) or deleted (FLUSHALL, FLUSHDB, DEL); this Redis user "
                "may not read INFO or CONFIG to tell which"
            )
        limit = f"maxmemory {settings.maxmemory} bytes, maxmemory-policy {settings.policy}"
        if not settings.may_evict:
            return f"deleted (FLUSHALL, FLUSHDB, DEL): this Redis does not evict ({limit})"
        fix = "set maxmemory-policy noeviction, or give raftredis a Redis of its own"
        evicted = settings.evicted_keys
        if before is not None and evicted is not None and evicted > before:
            return f"evicted: Redis evicted {evicted - before} keys lately ({limit}); {fix}"
        return f"evicted or deleted (FLUSHALL, FLUSHDB, DEL) ({limit}); {fix}"

    @staticmethod
    def _lease(record: LeaseRecord, remaining: float) -> Lease:
        return Lease(term=record.term, holder=record.holder, remaining=remaining)
