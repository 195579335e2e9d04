"""Senders of numbered reliable messages for the reliable-delivery chaos scenario.

Each :class:`Sender` is a thread of the test process with a
:class:`raftredis.Client` of its own (its own sender id, so its own numbering
in Redis), sending to one destination: one worker's id
(``message_to(..., reliable=True)``) or :data:`LEADER`
(``message_leader(..., reliable=True)``). Its payloads are
``{"s": sender name, "d": destination, "n": sequence number}``, n counting from 1,
one at a time. Each attempt is recorded as a :class:`Sent`:

* ``ok``: Redis took it (the call returned): it must be delivered;
* ``refused``: UndeliverableError (the destination was no member at that moment,
  for instance a receiver killed longer ago than member_expiry): never sent;
* ``failed``: another error (Redis down): maybe added, maybe not.

The next attempt always takes the next number, so a destination sees each
sender's numbers in increasing order if the order is kept.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from raftredis import Client, UndeliverableError

#: The destination of ``message_leader(..., reliable=True)``.
LEADER = "leader"
OK, REFUSED, FAILED = "ok", "refused", "failed"


@dataclass(frozen=True)
class Sent:
    """One attempt to send one numbered message."""

    sender: str
    dest: str
    n: int
    t: float
    status: str
    error: str = ""


class Sender(threading.Thread):
    """Sends numbered reliable messages to ``dest`` about ``rate`` times a second."""

    def __init__(self, redis_url: str, kind: str, name: str, dest: str, rate: float) -> None:
        super().__init__(name=f"chaos-sender-{name}", daemon=True)
        self.sender_name = name
        self.dest = dest
        self.interval = 1.0 / rate
        self.client = Client(redis=redis_url, kind=kind, id=f"sender-{name}")
        self.sent: list[Sent] = []
        self._halt = threading.Event()
        self._rng = random.Random(name)

    def run(self) -> None:
        n = 0
        try:
            while not self._halt.is_set():
                n += 1
                self.sent.append(self._send_one(n))
                self._halt.wait(self.interval * self._rng.uniform(0.5, 1.5))
        finally:
            self.client.close()

    def _send_one(self, n: int) -> Sent:
        payload = {"s": self.sender_name, "d": self.dest, "n": n}
        t = time.time()
        try:
            if self.dest == LEADER:
                self.client.message_leader(payload, reliable=True)
            else:
                self.client.message_to(self.dest, payload, reliable=True)
        except UndeliverableError as exc:
            return Sent(self.sender_name, self.dest, n, t, REFUSED, str(exc)[:200])
        except Exception as exc:  # Redis down or failing: maybe added, maybe not
            return Sent(self.sender_name, self.dest, n, t, FAILED, f"{type(exc).__name__}: {exc}")
        return Sent(self.sender_name, self.dest, n, t, OK)

    def halt(self, timeout: float = 10.0) -> None:
        self._halt.set()
        self.join(timeout)


class Senders:
    """One Sender per destination (and more to the leader), started together."""

    def __init__(
        self,
        redis_url: str,
        kind: str,
        destinations: list[str],
        *,
        rate: float,
        leader_senders: int = 1,
        leader_rate: float | None = None,
    ) -> None:
        self.senders = [
            Sender(redis_url, kind, f"to-{i}", dest, rate) for i, dest in enumerate(destinations)
        ]
        self.senders += [
            Sender(redis_url, kind, f"lead-{i}", LEADER, leader_rate or rate)
            for i in range(leader_senders)
        ]

    def __enter__(self) -> Senders:
        for s in self.senders:
            s.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.halt()

    def halt(self) -> None:
        for s in self.senders:
            s._halt.set()
        for s in self.senders:
            s.halt()

    def records(self) -> list[Sent]:
        return [record for s in self.senders for record in list(s.sent)]

    def count(self, status: str = OK) -> int:
        return sum(r.status == status for r in self.records())

    def dump(self, path: Path) -> None:
        """Every attempt, as JSON (not ``*.jsonl``: the checker reads those as workers)."""
        path.write_text(json.dumps([asdict(r) for r in self.records()]))
