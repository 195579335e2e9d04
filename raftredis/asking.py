"""Request/reply on reliable delivery: ask one instance, or the leader, and wait.

A request is a reliable message that carries the key of a Redis list and a
deadline. The instance that takes it calls its request handler and pushes the
answer (or the exception's type and message) to that list, which expires soon
after the deadline; the asker waits on it with ``BLPOP``. Answers are signed
like messages when the kind has a secret.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from .errors import AskTimeoutError, BackendError, ProtocolError, RemoteError
from .keys import KeySpace
from .models import Scope
from .reliable_outbox import ReliableOutbox
from .signing import Keyring

__all__ = ["MAX_ASK_TIMEOUT", "Asker", "check_timeout"]

#: The longest wait for an answer; the waiting connection's reads allow this much.
MAX_ASK_TIMEOUT = 300.0


def check_timeout(timeout: Any) -> float:
    """A request's timeout: seconds above 0 and at most MAX_ASK_TIMEOUT."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout <= MAX_ASK_TIMEOUT
    ):
        raise ValueError(
            f"timeout must be a number of seconds above 0 and at most {MAX_ASK_TIMEOUT:g}, "
            f"got {timeout!r}"
        )
    return float(timeout)


class Asker:
    """Sends requests through ``outbox`` and waits for their answers.

    ``connect`` makes the client whose connections wait for answers (their reads
    must allow MAX_ASK_TIMEOUT); it is made on the first request.
    """

    def __init__(
        self,
        outbox: ReliableOutbox,
        keys: KeySpace,
        asker_id: str,
        connect: Callable[[], redis.Redis],
        keyring: Keyring | None,
    ) -> None:
        self._outbox = outbox
        self._keys = keys
        self._id = asker_id
        self._new_client = connect
        self._keyring = keyring
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()

    def ask(self, scope: Scope, payload: Any, instance_id: str | None, timeout: float) -> Any:
        """Send a request and return the answer; see Candidate.ask for the errors."""
        timeout = check_timeout(timeout)
        reply_key = self._keys.reply(self._id, uuid.uuid4().hex)
        started = time.monotonic()
        deadline_ms = int(time.time() * 1000 + timeout * 1000)
        self._outbox.send(scope, payload, instance_id, reply_to=reply_key, deadline_ms=deadline_ms)
        left = max(0.001, timeout - (time.monotonic() - started))
        who = f"instance {instance_id!r}" if scope is Scope.DIRECT else "the leader"
        try:
            # BLPOP takes a timeout in seconds with decimals (Redis 6.0 on).
            reply: Any = self._waiting_client().execute_command("BLPOP", reply_key, f"{left:.3f}")
        except (redis.RedisError, OSError) as exc:
            raise BackendError(f"Redis failed while waiting for an answer of {who}: {exc}") from exc
        if reply is None:
            raise AskTimeoutError(
                f"no answer from {who} of kind {self._keys.kind!r} within {timeout:g} s (the "
                "request may still be handled)"
            )
        raw = reply[1]
        return self._answer(raw if isinstance(raw, bytes) else str(raw).encode(), who)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _waiting_client(self) -> redis.Redis:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _answer(self, raw: bytes, who: str) -> Any:
        if self._keyring is not None:
            try:
                self._keyring.verify(raw)
            except Exception as exc:
                raise ProtocolError(f"the answer of {who} was not signed right: {exc}") from None
        try:
            answer = json.loads(raw)
            responder = str(answer["from"])
            if answer["ok"]:
                return answer.get("payload")
            error = answer["error"]
            kind, message = str(error["type"]), str(error["message"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"the answer of {who} could not be read: {exc}") from None
        raise RemoteError(
            f"instance {responder!r} raised {kind} handling the request: {message}",
            instance_id=responder,
            remote_type=kind,
        )
