"""Redis as teams really run it: a cache at its ``maxmemory``, evicting, and admins who FLUSH.

:class:`MemoryPressure` sets ``maxmemory`` and a ``maxmemory-policy`` on a
chaos cluster's Redis and keeps it full with application keys (with or
without a TTL, as the scenario says), from a thread of the test process.
While it runs it counts, from Redis' own keyspace notifications, how often
the kind's lease and term key were evicted. :class:`Flusher` runs
``FLUSHALL`` or ``FLUSHDB`` every few seconds.

Both only touch the test's own redis-server.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import redis

from raftredis.keys import KeySpace

#: Sizes of the application values: a few hundred keys fill 20 MB, so the
#: kind's keys come up often in Redis' eviction samples (5 keys each).
VALUE_BYTES = (32 << 10, 96 << 10)
#: Application keys written per pipeline, and the pause between pipelines
#: (about 100 writes, 6 MB, a second).
BATCH = 2
PAUSE = 0.02
#: Application keys read per pipeline (about 2,000 a second, every live key about
#: every 200 ms): a hot cache, whose keys are as recently used as the lease
#: (Redis' LRU clock counts in whole seconds), so that LRU policies weigh them alike.
READS = 40
#: The application keeps about this share of maxmemory live (a cache with churn:
#: every write also deletes an old key), so memory hovers around the limit:
#: some writes must evict (or are refused), and some find room.
LIVE_SHARE = 1.3


class MemoryPressure:
    """Keep a Redis at ``maxmemory`` under ``policy`` with application keys.

    ``app_ttl``: seconds of TTL on every application key (None: no TTL, so
    under a ``volatile-*`` policy the kind's lease is the only key Redis
    may evict). Use as a context manager; :meth:`release` ends the pressure
    (no memory limit any more) and returns the time it did.
    """

    def __init__(
        self,
        admin: redis.Redis,
        keys: KeySpace,
        *,
        policy: str,
        maxmemory: str = "20mb",
        app_ttl: float | None = None,
    ) -> None:
        self.admin = admin
        self.keys = keys
        self.policy = policy
        self.maxmemory = maxmemory
        self.app_ttl = app_ttl
        self.lease_evictions = 0
        self.term_evictions = 0
        self.other_evictions = 0
        self.refused_writes = 0
        self.released_at: float | None = None
        self._live_keys = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pubsub: Any = None

    def __enter__(self) -> MemoryPressure:
        admin = self.admin
        # Evictions are published by Redis itself, on the keyevent channel.
        admin.config_set("notify-keyspace-events", "Ee")
        self._pubsub = admin.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe("__keyevent@0__:evicted")
        used = int(admin.info("memory")["used_memory"])
        limit = max(_bytes(self.maxmemory), used + (8 << 20))
        self._live_keys = int(LIVE_SHARE * (limit - used) / (sum(VALUE_BYTES) / 2))
        admin.config_set("maxmemory-policy", self.policy)
        admin.config_set("maxmemory", str(limit))
        for target in (self._fill, self._count):
            thread = threading.Thread(target=target, name=f"chaos-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> float:
        """End the pressure: no memory limit, no eviction, the filler stopped."""
        if self.released_at is None:
            self._stop.set()
            for thread in self._threads:
                thread.join(5.0)
            self.admin.config_set("maxmemory", "0")
            self.admin.config_set("maxmemory-policy", "noeviction")
            self.released_at = time.time()
            if self._pubsub is not None:
                self._pubsub.close()
        return self.released_at

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "maxmemory": self.maxmemory,
            "app_ttl": self.app_ttl,
            "lease_evictions": self.lease_evictions,
            "term_evictions": self.term_evictions,
            "other_evictions": self.other_evictions,
            "refused_writes": self.refused_writes,
        }

    def _fill(self) -> None:
        writer = redis.Redis(connection_pool=self.admin.connection_pool)
        rng = random.Random(7)
        values = [b"x" * rng.randint(*VALUE_BYTES) for _ in range(64)]
        n = cursor = 0
        px = None if self.app_ttl is None else int(self.app_ttl * 1000)
        while not self._stop.is_set():
            pipe = writer.pipeline(transaction=False)
            for _ in range(BATCH):
                pipe.set(f"app:{n}", rng.choice(values), px=px)
                if n >= self._live_keys:
                    pipe.delete(f"app:{n - self._live_keys}")
                n += 1
            oldest = max(0, n - self._live_keys)
            for _ in range(READS):
                cursor = oldest + (cursor - oldest + 1) % (n - oldest)
                pipe.touch(f"app:{cursor}")  # TOUCH updates the LRU clock (EXISTS does not)
            for reply in pipe.execute(raise_on_error=False):
                if isinstance(reply, redis.ResponseError):
                    self.refused_writes += 1
            self._stop.wait(PAUSE)

    def _count(self) -> None:
        lease, term = self.keys.leader.encode(), self.keys.term.encode()
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.2)
            except (redis.RedisError, OSError, ValueError):
                return
            if message is None:
                continue
            key = message.get("data")
            if key == lease:
                self.lease_evictions += 1
            elif key == term:
                self.term_evictions += 1
            else:
                self.other_evictions += 1


class Flusher:
    """``FLUSHALL`` or ``FLUSHDB`` (alternately) every ``every`` ± ``jitter`` seconds."""

    def __init__(self, admin: redis.Redis, every: float = 5.0, jitter: float = 0.5) -> None:
        self.admin = admin
        self.every = every
        self.jitter = jitter
        self.flushes: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-flusher", daemon=True)
        self._rng = random.Random()

    def __enter__(self) -> Flusher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> float:
        self._stop.set()
        self._thread.join(5.0)
        return time.time()

    def _run(self) -> None:
        while not self._stop.wait(self.every + self._rng.uniform(-self.jitter, self.jitter)):
            command = "FLUSHALL" if len(self.flushes) % 2 == 0 else "FLUSHDB"
            self.admin.execute_command(command)
            self.flushes.append(time.time())


def _bytes(size: str) -> int:
    units = {"kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}
    text = size.strip().lower()
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)
