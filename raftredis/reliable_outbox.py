"""The sending side of reliable delivery: number, encode and add to a stream.

Each message is added by one script (``lua/reliable_send.lua``) that refuses
what nobody would read (a target that is no member, or takes no reliable
messages; a request for the leader when nobody leads). A send whose reply was
lost (the connection failed) is sent once more, as the same message: the
receiver drops the repeat by its id. One writer's messages to one stream are
sent one at a time, so they are numbered, and kept, in the order sent.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import redis
from redis.exceptions import NoScriptError

from .errors import BackendError, NoLeaderError, UndeliverableError
from .keys import KeySpace
from .models import Scope
from .outbox import LeadershipView
from .publish_pool import PublishPool
from .signing import Signer
from .store import reliable_send_script
from .stream_format import MAX_AGE_MS, MAX_LENGTH, new_writer_prefix, text
from .wire import EnvelopeWriter

__all__ = ["ReliableOutbox"]


class ReliableOutbox:
    """Sends the reliable messages and requests of one Candidate (or Client)."""

    def __init__(
        self,
        keys: KeySpace,
        member_id: str,
        max_bytes: int,
        pool: PublishPool,
        *,
        leadership: LeadershipView,
        signer: Signer | None = None,
    ) -> None:
        self._keys = keys
        self._id = member_id
        self._pool = pool
        self._leadership = leadership
        self._prefix = new_writer_prefix(member_id)
        sign = signer.sign if signer is not None else None
        self._writer = EnvelopeWriter(keys.kind, member_id, max_bytes, sign, id_prefix=self._prefix)
        self._script = reliable_send_script(keys)
        self._sha = hashlib.sha1(self._script.encode()).hexdigest()
        self._numbers: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def send(
        self,
        scope: Scope,
        payload: Any,
        instance_id: str | None = None,
        *,
        reply_to: str = "",
        deadline_ms: int = 0,
    ) -> int:
        """Add one message to its stream; how many instances will read it.

        Returns 0 for a message to this instance itself, or to the leader when
        this instance leads (nobody receives their own message). Raises
        UndeliverableError (no such member, or it reads no reliable messages; a
        request to itself), NoLeaderError (a request for the leader, and nobody leads),
        MessageError (not JSON, too big) or BackendError.
        """
        k = self._keys
        if scope is Scope.DIRECT:
            if not isinstance(instance_id, str) or not instance_id:
                raise UndeliverableError(
                    f"a message to one instance needs its id, got {instance_id!r}"
                )
            stream = k.reliable(instance_id)
        elif scope is Scope.LEADER:
            stream = k.reliable_leader
        else:
            stream = k.reliable_all
        term, leader = self._leadership.stamp()
        data = self._writer.encode(scope, term, leader, time.time(), payload)
        with self._stream_lock(stream):
            number = self._numbers.get(stream, 0) + 1
            args = (
                scope.value, instance_id or "", data, self._id, self._prefix, number,
                reply_to, deadline_ms, MAX_LENGTH, MAX_AGE_MS,
                "1" if reply_to and scope is Scope.LEADER else "0",
            )  # fmt: skip
            command = ("EVALSHA", self._sha, 4, stream, k.members, k.leader, k.leader_copy, *args)
            reply = self._run(command)
            status = text(reply[0])
            if status == "ok":
                self._numbers[stream] = number
                return int(reply[1])
        if status == "self":
            if reply_to:
                target = "itself" if scope is Scope.DIRECT else "itself: it leads"
                raise UndeliverableError(f"instance {self._id!r} does not ask {target}")
            return 0  # as on pub/sub: nobody receives their own message
        if status == "gone":
            raise UndeliverableError(
                f"instance {instance_id!r} is not a member of kind {k.kind!r} (it left, or never "
                "joined): a reliable message to it would never be read"
            )
        if status == "unreliable":
            raise UndeliverableError(
                f"instance {instance_id!r} of kind {k.kind!r} takes no reliable messages: start "
                "it with reliable=True"
            )
        if status == "no-leader":
            raise NoLeaderError(f"kind {k.kind!r} has no leader right now: nobody to ask")
        raise BackendError(f"Redis answered a reliable send with {reply!r}")

    def _stream_lock(self, stream: str) -> threading.Lock:
        with self._lock:
            lock = self._locks.get(stream)
            if lock is None:
                lock = self._locks[stream] = threading.Lock()
            return lock

    def _run(self, command: tuple[Any, ...]) -> Any:
        """Run the script (loading it if Redis lost it); once more if the reply was lost."""
        for attempt in (1, 2):
            try:
                reply = self._pool.run([command])[0]
                if isinstance(reply, NoScriptError):
                    self._pool.run([("SCRIPT", "LOAD", self._script)])
                    reply = self._pool.run([command])[0]
            except (redis.RedisError, OSError) as exc:
                if attempt == 2:
                    raise BackendError(
                        f"Redis failed while adding a reliable message: {exc}"
                    ) from exc
                continue
            if isinstance(reply, redis.ResponseError):
                raise BackendError(f"Redis refused a reliable message: {reply}") from reply
            return reply
        raise AssertionError("unreachable")
