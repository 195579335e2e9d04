"""Reliable delivery: messages kept in Redis Streams until their receiver has taken them.

Beside pub/sub (at most once), a Candidate started with ``reliable=True`` reads
three streams of its kind (all under the kind's hash tag, see keys.py):

* ``rq:<id>``, its own: consumer group ``<id>``; what it has taken is acked
  and deleted, so the stream holds only what is still to be taken;
* ``rq-all``: one consumer group per member (created at its join, from then
  on), for messages to all and to the followers (the leader skips those);
* ``rq-leader``, while it leads: consumer group ``leader``. A message there is
  taken by whoever leads when it is read (the sender too, if it leads by
  then). A leader that stops leading finishes the message in hand and gives
  back what it read and did not take; the next one claims that at once,
  waits for the message in hand to be acked, and reads on only then, so the
  leader's messages keep their order and none is taken twice.

A message is delivered, then acked. An instance that dies between the two gets
it again from its pending entries when it starts with the same id, and a leader
that dies leaves its message in hand to the next one once it has been idle for
CLAIM_IDLE: the cases in which a receiver sees a message twice (and the reason
to keep receivers idempotent). Within one process, message ids already
delivered are remembered (a bounded window), so a sender's retry after a lost
reply is not delivered twice. Each writer numbers its messages per stream, so a
gap (what Redis trimmed by length or age before it was read, or lost) is
reported, with its size. The leader removes what an instance that never
stopped left behind (reliable_prune.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis

from . import redispy_seam as seam
from .dispatch import deliver_message, report_error
from .errors import MessagesLostError, ProtocolError, ReceiverError
from .keys import KeySpace
from .models import Message, Scope
from .reliable_prune import ReliablePruner
from .signing import Keyring
from .stream_format import Entry, encode_reply, entries_of, text
from .wire import WireError, decode_envelope

__all__ = ["BLOCK_SECONDS", "ReliableReader", "RequestHandler"]

log = logging.getLogger("raftredis")

#: How long one read waits for a message. A message wakes it at once and stop()
#: too, so a long wait only saves commands: one read per this many seconds, idle.
BLOCK_SECONDS = 10.0
#: Entries read at once.
BATCH = 64
#: Message ids remembered to drop a repeat (a sender's retry); the oldest go first.
SEEN_LIMIT = 100_000
#: A message for the leader that an earlier leader read and has not acked is claimed by
#: the next one after this long (seconds since it was read): a leader that died gave
#: up its message in hand, a live one whose receiver takes longer handles it twice.
CLAIM_IDLE = 5.0
#: How often a new leader looks whether the message in hand of the previous one is done:
#: at first, then less and less often (at most every CLAIM_POLL_MAX seconds).
CLAIM_POLL = 0.01
CLAIM_POLL_MAX = 0.5
#: The idle time (ms) given back to what a leader read and did not take: over CLAIM_IDLE.
_GIVEN_BACK_IDLE_MS = 24 * 3600 * 1000
RequestHandler = Callable[..., Any]


class ReliableReader:
    """Reads this instance's reliable streams on threads of its own and delivers them.

    ``client`` runs the occasional commands (groups, leaving); ``connect`` makes
    the client of each reading thread, whose reads block (see BLOCK_SECONDS).
    ``owner`` is the signal sender (the Candidate); ``is_leader`` is read for
    every message of the leader stream and of ``followers`` scope; ``answer``
    gives the registered request handler, if any; ``member_expiry`` (seconds)
    sets how long the leader waits before it removes what a departed instance
    left (see reliable_prune.py). Receivers run on the reader threads (as pub/sub
    messages run on the listener's).
    """

    def __init__(
        self,
        client: redis.Redis,
        connect: Callable[[], redis.Redis],
        keys: KeySpace,
        member_id: str,
        max_bytes: int,
        *,
        owner: object,
        is_leader: Callable[[], bool],
        answer: Callable[[], RequestHandler | None],
        keyring: Keyring | None,
        sign: Callable[[bytes], bytes] | None,
        name: str,
        member_expiry: float,
    ) -> None:
        self._client = client
        self._new_client = connect
        self._readers: dict[str, redis.Redis] = {}
        self._keys = keys
        self._id = member_id
        self._max_bytes = max_bytes
        self._owner = owner
        self._is_leader = is_leader
        self._answer = answer
        self._keyring = keyring
        self._sign = sign
        self._name = name
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._numbers: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._member_thread: threading.Thread | None = None
        self._leader_thread: threading.Thread | None = None
        self._leading = threading.Event()
        self._pruner = ReliablePruner(client, keys, member_expiry, self._report)

    # ------------------------------------------------------------ lifecycle

    def join(self) -> None:
        """Create this instance's consumer groups (its stream from the start, the
        broadcast stream from now on, the leader stream's group if missing), and
        enter it in the reliable index (by its own clock: the leader reads no time
        from it)."""
        k, me = self._keys, self._id
        for key, group, start in ((k.reliable(me), me, "0"), (k.reliable_all, me, "$"),
                                  (k.reliable_leader, "leader", "0")):  # fmt: skip
            try:
                self._client.execute_command("XGROUP", "CREATE", key, group, start, "MKSTREAM")
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._client.hset(k.reliable_index, me, str(int(time.time() * 1000)))

    def start(self) -> None:
        self._member_thread = threading.Thread(
            target=self._run_member, name=f"{self._name}-reliable", daemon=True
        )
        self._member_thread.start()

    def elected(self) -> None:
        """This instance leads: read the leader stream (after claiming what is pending)."""
        with self._lock:
            self._leading.set()
            # Numbers seen on the leader stream while leading before say nothing now:
            # other leaders have taken messages since (no gap to report).
            for key in [k for k in list(self._numbers) if k[0] == self._keys.reliable_leader]:
                self._numbers.pop(key, None)
            thread = self._leader_thread
            if thread is not None and thread.is_alive():
                return
            self._leader_thread = threading.Thread(
                target=self._run_leader, name=f"{self._name}-reliable-leader", daemon=True
            )
            self._leader_thread.start()

    def demoted(self) -> None:
        """No longer leading: the leader thread ends after the message in hand."""
        self._leading.clear()
        self._wake("leader")

    def stop(self, timeout: float | None) -> None:
        self._stopping.set()
        self._leading.clear()
        self._wake()
        for thread in (self._member_thread, self._leader_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    def leave(self) -> int:
        """At a clean stop: drop this instance's stream, broadcast group and index entry.
        Returns how many messages to it were still to be taken (reported by the caller)."""
        k, me = self._keys, self._id
        pipe = self._client.pipeline(transaction=True)
        pipe.xlen(k.reliable(me))
        pipe.delete(k.reliable(me))
        pipe.execute_command("XGROUP", "DESTROY", k.reliable_all, me)
        pipe.hdel(k.reliable_index, me)
        left, *_ = pipe.execute(raise_on_error=False)
        return int(left) if isinstance(left, int) else 0

    def _wake(self, role: str | None = None) -> None:
        """Interrupt the blocked read of one reading thread (or of all)."""
        for name, client in list(self._readers.items()):
            if role is None or name == role:
                for conn in seam.connections_in_use(client.connection_pool):
                    seam.interrupt(conn)

    # -------------------------------------------------------------- reading

    def _run_member(self) -> None:
        k, me = self._keys, self._id
        client = self._readers["member"] = self._new_client()
        try:
            streams = (k.reliable(me), k.reliable_all)
            self._loop(client, me, streams, lambda: not self._stopping.is_set())
        finally:
            client.close()

    def _run_leader(self) -> None:
        def leading() -> bool:
            return self._leading.is_set() and not self._stopping.is_set()

        client = self._readers["leader"] = self._new_client()
        try:
            while True:
                if self._take_over(client, leading):
                    self._pruner.elected()
                    streams = (self._keys.reliable_leader,)
                    self._loop(client, "leader", streams, leading, self._pruner.tick)
                self._give_back()
                with self._lock:  # elected() again meanwhile: go on rather than end
                    if not leading():
                        self._leader_thread = None
                        return
        finally:
            client.close()

    def _take_over(self, client: redis.Redis, leading: Callable[[], bool]) -> bool:
        """Claim what earlier leaders read and did not take, once they are done with it:
        what they gave back at once, the message in hand when acked or CLAIM_IDLE old.
        False if this instance stopped leading meanwhile."""
        key = self._keys.reliable_leader
        poll = CLAIM_POLL
        while leading():
            try:
                self._claim(client, key, int(CLAIM_IDLE * 1000))
                pending: Any = client.xpending(key, "leader")  # typed as maybe-async
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):  # refused (an ACL): what is left waits
                    log.warning("raftredis: claiming the leader's pending messages failed: %s", exc)
                return True  # the read makes a missing group anew
            except (redis.RedisError, OSError) as exc:
                log.info("raftredis: claiming the leader's pending messages failed: %s", exc)
            else:
                names = [text(c["name"]) for c in pending.get("consumers") or ()]
                if all(name == self._id for name in names):
                    return True
            self._stopping.wait(poll)
            poll = min(CLAIM_POLL_MAX, poll * 2)
        return False

    def _claim(self, client: redis.Redis, key: str, min_idle_ms: int) -> None:
        cursor: Any = "0-0"
        while True:
            reply = client.execute_command(
                "XAUTOCLAIM", key, "leader", self._id, min_idle_ms, cursor, "COUNT", BATCH
            )
            cursor = reply[0]
            if cursor in (b"0-0", "0-0"):
                return

    def _give_back(self) -> None:
        """No longer reading the leader stream: make what this instance read there and did
        not take claimable at once by the next leader. On the commands client: the
        reading one may have been interrupted by stop()."""
        key = self._keys.reliable_leader
        try:
            rows: Any = self._client.xpending_range(key, "leader", "-", "+", BATCH, self._id)
            ids: list[Any] = [row["message_id"] for row in rows]
            if ids:
                self._client.xclaim(
                    key, "leader", self._id, 0, ids, idle=_GIVEN_BACK_IDLE_MS, justid=True
                )
        except (redis.RedisError, OSError) as exc:
            log.info("raftredis: giving back the leader's unread messages failed: %s", exc)

    def _loop(
        self,
        client: redis.Redis,
        group: str,
        streams: tuple[str, ...],
        running: Callable[[], bool],
        chore: Callable[[], float] | None = None,
    ) -> None:
        """Read and take until ``running()`` is false. ``chore``, run before each read,
        does what is due and returns the seconds until it is due again (a cap on the
        blocking read)."""
        pending = True  # first what was read and not taken (a restart, a claim)
        backoff = 0.05
        while running():
            start = "0" if pending else ">"
            block = BLOCK_SECONDS if chore is None else min(BLOCK_SECONDS, chore())
            try:
                reply = client.execute_command(
                    "XREADGROUP", "GROUP", group, self._id, "COUNT", BATCH,
                    *(() if pending else ("BLOCK", max(1, int(block * 1000)))),
                    "STREAMS", *streams, *([start] * len(streams)),
                )  # fmt: skip
                backoff = 0.05
            except (redis.RedisError, OSError) as exc:
                if not running():
                    return
                if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
                    self._rejoin()
                else:
                    log.info("raftredis: reading reliable messages failed (%s); retrying", exc)
                pending = True  # a lost reply left what it read pending: take that first
                self._stopping.wait(backoff)
                backoff = min(1.0, backoff * 2)
                continue
            try:
                entries = entries_of(reply)
            except (TypeError, ValueError, IndexError) as exc:
                self._report(ProtocolError(f"an unreadable reply to XREADGROUP: {exc}"))
                self._stopping.wait(backoff)
                continue
            if pending and not entries:
                pending = False
                continue
            for entry in entries:
                if not running():
                    return  # left pending: read again, here or by the next leader
                if not self._take(client, group, entry):
                    pending = True  # not acked: read again (and dropped as a repeat)

    def _rejoin(self) -> None:
        """Our groups are gone (Redis lost its data, or an admin deleted them)."""
        try:
            self.join()
            report_error(
                self._owner,
                MessagesLostError(
                    "this instance's reliable streams were gone from Redis (flushed, "
                    "or lost by a restart without persistence): they were made anew, and "
                    "what they held is lost",
                    count=None,
                ),
            )
        except (redis.RedisError, OSError) as exc:
            log.info("raftredis: recreating the reliable streams failed: %s", exc)

    # ------------------------------------------------------------- taking

    def _take(self, client: redis.Redis, group: str, entry: Entry) -> bool:
        """Deliver one entry (or answer it), then ack it; report what was wrong with it.
        False if the ack failed."""
        if entry.fields is None:  # deleted while pending: nothing to deliver
            return self._ack(client, group, entry)
        try:
            self._handle(client, entry)
        except WireError as exc:
            raw = entry.fields.get(b"m", b"")
            self._report(ProtocolError(str(exc), channel=entry.stream, raw=raw))
        except ProtocolError as exc:
            self._report(exc)
        return self._ack(client, group, entry)

    def _handle(self, client: redis.Redis, entry: Entry) -> None:
        assert entry.fields is not None
        raw = entry.fields.get(b"m", b"")
        if self._keyring is not None:
            self._keyring.verify(raw)  # a signature, not an age: these wait in Redis
        envelope = decode_envelope(raw, kind=self._keys.kind, max_bytes=self._max_bytes)
        self._check_numbering(entry, envelope.sender_id)
        if not self._first_sight(envelope.message_id):
            return
        if envelope.sender_id == self._id and envelope.scope in (Scope.ALL, Scope.FOLLOWERS):
            return  # our own broadcast (one to the leader is for whoever leads now)
        if envelope.scope is Scope.FOLLOWERS and self._is_leader():
            return
        message = envelope.to_message(reliable=True)
        reply_key = entry.fields.get(b"r")
        if reply_key:
            self._answer_request(client, message, reply_key, entry.fields.get(b"d", b"0"))
            return
        deliver_message(self._owner, message)

    def _answer_request(
        self, client: redis.Redis, message: Message, reply_key: bytes, deadline: bytes
    ) -> None:
        now_ms = time.time() * 1000
        try:
            deadline_ms = int(deadline)
        except ValueError:
            deadline_ms = 0
        if deadline_ms and now_ms > deadline_ms + 1000:
            return  # the asker has given up: an answer now would find nobody
        handler = self._answer()
        if handler is None:
            body: Any = ("NoRequestHandler", f"instance {self._id} has no request handler")
            ok = False
        else:
            try:
                body, ok = handler(self._owner, message=message), True
            except Exception as exc:
                log.exception("request handler %r raised", handler)
                body, ok = (type(exc).__name__, str(exc)), False
        try:
            data = encode_reply(self._id, ok, body, self._sign)
        except Exception as exc:  # an answer that is not JSON: say so to the asker
            error = ReceiverError(f"request handler returned a value that cannot be sent: {exc}")
            error.__cause__ = exc
            self._report(error)
            data = encode_reply(self._id, False, (type(exc).__name__, str(exc)), self._sign)
        ttl_ms = max(1000, int(deadline_ms - now_ms) + 1000) if deadline_ms else 60_000
        pipe = client.pipeline(transaction=True)
        pipe.execute_command("RPUSH", reply_key, data)
        pipe.execute_command("PEXPIRE", reply_key, ttl_ms)
        try:
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("raftredis: sending an answer failed: %s", exc)

    def _check_numbering(self, entry: Entry, sender_id: str) -> None:
        """Report a gap in a writer's numbering on this stream: messages lost before
        they were read (trimmed by length or age, or lost by Redis)."""
        assert entry.fields is not None
        try:
            writer = entry.fields[b"p"].decode()
            number = int(entry.fields[b"n"])
        except (KeyError, ValueError, UnicodeDecodeError):
            raise ProtocolError(
                "a reliable message without its writer's numbering", channel=entry.stream
            ) from None
        key = (entry.stream, writer)
        last = self._numbers.get(key)
        if last is None or number > last:
            self._numbers[key] = number
        if last is not None and number > last + 1:
            lost = number - last - 1
            self._report(
                MessagesLostError(
                    f"{lost} reliable message(s) from {sender_id} on {entry.stream} were lost "
                    "before they were read (trimmed by length or age, or lost by Redis)",
                    count=lost,
                )
            )

    def _first_sight(self, message_id: str) -> bool:
        seen = self._seen
        with self._lock:
            if message_id in seen:
                return False
            seen[message_id] = None
            if len(seen) > SEEN_LIMIT:
                seen.popitem(last=False)
        return True

    def _ack(self, client: redis.Redis, group: str, entry: Entry) -> bool:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("XACK", entry.stream, group, entry.entry_id)
        if entry.stream != self._keys.reliable_all:
            pipe.execute_command("XDEL", entry.stream, entry.entry_id)  # one group: done with it
        try:
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            # Not acked: read again by this reader (a repeat, dropped), or after a
            # restart or by the next leader (the receiver sees it twice).
            log.warning("raftredis: acking a reliable message failed: %s", exc)
            return False
        return True

    def _report(self, error: BaseException) -> None:
        log.warning("%s", error)
        report_error(self._owner, error)
