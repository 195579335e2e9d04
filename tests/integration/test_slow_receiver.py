"""A slow receiver is told at once when Redis drops it, and an idle one pays nothing for that.

A receiver that takes 50 ms per message, flooded with 10 KB messages, on a
Redis whose pub/sub output-buffer limit is small (256 KB hard, 64 KB for 1 s):
Redis drops its message connection within a fraction of a second. The
``SlowReceiverError`` must come within 1.5 s of the drop (the test sees the
drop by polling ``PUBSUB NUMSUB`` from an admin client), once; the messages
read before the drop are still delivered, then the instance subscribes again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from helpers import Cluster

from raftredis import BackendError, Candidate, SlowReceiverError
from raftredis.testing import RedisServer, wait_until

PAYLOAD = "x" * 10_000


@pytest.fixture
def tight_server() -> Iterator[RedisServer]:
    """A Redis that drops a subscriber holding over 256 KB, or over 64 KB for a second."""
    with RedisServer() as server:
        # CONFIG SET: Redis 6.2 takes no multi-word value on its command line.
        admin = server.client()
        admin.config_set("client-output-buffer-limit", "pubsub 256kb 64kb 1")
        admin.close()
        yield server


def subscribers(admin: redis.Redis, channel: str) -> int:
    return int(admin.execute_command("PUBSUB", "NUMSUB", channel)[1])


def numsub_calls(admin: redis.Redis) -> int:
    """PUBSUB calls Redis ran (``pubsub|numsub`` on Redis 7, all of PUBSUB before)."""
    stats: dict[str, Any] = admin.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_pubsub"))


class Flood:
    """Sends 10 KB messages to one instance from a thread until stopped; counts them."""

    def __init__(self, sender: Candidate, to: str) -> None:
        self.sender, self.to = sender, to
        self.sent = self.counted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.counted += self.sender.message_to(self.to, PAYLOAD)
            self.sent += 1

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10.0)


def test_a_receiver_that_falls_behind_is_told_within_a_second_of_the_drop(
    tight_server: RedisServer,
) -> None:
    admin = tight_server.client()
    with Cluster(tight_server.url) as group:
        receiver, sender = group.start(), group.start()
        inbox = receiver.config.keys.inbox(receiver.id)
        slow = threading.Event()
        slow.set()
        received: list[float] = []
        errors: list[tuple[float, BaseException]] = []

        @receiver.on("message_received")
        def work(sender: object, message: object) -> None:
            received.append(time.monotonic())
            if slow.is_set():
                time.sleep(0.05)

        @receiver.on("error")
        def failed(sender: object, error: BaseException) -> None:
            errors.append((time.monotonic(), error))

        def slow_receiver_errors() -> list[tuple[float, BaseException]]:
            return [(t, e) for t, e in errors if isinstance(e, SlowReceiverError)]

        with Flood(sender, receiver.id) as flood:
            wait_until(lambda: subscribers(admin, inbox) == 0, timeout=10.0, interval=0.002)
            dropped_at = time.monotonic()
            reported = wait_until(slow_receiver_errors, timeout=5.0)
        reported_at, error = reported[0]
        assert reported_at - dropped_at <= 1.5, f"told {reported_at - dropped_at:.2f} s after"
        assert isinstance(error, SlowReceiverError)
        assert error.channel == inbox and error.handled >= 1
        assert flood.counted < flood.sent, "the sender's count shows the messages lost"

        # The messages read before the drop are still delivered; then it subscribes again.
        slow.clear()
        wait_until(lambda: subscribers(admin, inbox) == 1, timeout=30.0)
        assert any(t > reported_at for t in received), "what was read before the drop arrives"
        count = len(received)
        assert sender.message_to(receiver.id, "after") == 1
        wait_until(lambda: len(received) > count, timeout=5.0)
        assert len(slow_receiver_errors()) == 1, "reported once per drop"
        lost = [e for _, e in errors if isinstance(e, BackendError)]
        assert lost == [], "the end of the dropped connection is not reported a second time"


def test_an_idle_candidate_never_asks_redis_whether_it_is_subscribed(
    own_server: RedisServer,
) -> None:
    """No PUBSUB NUMSUB while idle, nor for messages that leave the receiver mostly
    waiting (fast failover is off: its presence watch uses NUMSUB too)."""
    admin = own_server.client()
    with Cluster(own_server.url, fast_failover=False) as group:
        leader, follower = group.start(), group.start()
        group.wait_for_leader()
        got: list[object] = []
        follower.on("message_received", lambda sender, message: got.append(message))
        before = numsub_calls(admin)
        for n in range(20):
            assert leader.message_to(follower.id, {"n": n}) == 1
            time.sleep(0.05)  # a steady trickle: the receiver mostly waits
        wait_until(lambda: len(got) == 20, timeout=5.0)
        time.sleep(3.0)  # idle: what is checked is that nothing happens
        assert numsub_calls(admin) == before
