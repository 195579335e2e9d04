"""Graceful handover: leader ``reelect()`` / ``stop()`` → ``elected`` on another instance.

All instances run in this process, so one clock times both ends: from just
before the call to the moment another instance's ``elected`` receiver runs
(on its dispatch thread, where users see it).

Baseline, in the same run and interleaved trial by trial: the same handover
written by hand with redis-py: the leader pipelines ``DEL lease`` and
``PUBLISH resigned``; every other node listens (``run_in_thread``) and answers
with ``SET lease NX PX`` at once, with no jitter. raftredis waits a random
0 to ``vacancy_jitter`` (50 ms) before campaigning, on purpose (fewer
colliding campaigns); with n instances the fastest of n - 1 jitters averages
``vacancy_jitter / n``.
"""

from __future__ import annotations

import json
import queue
import random
import time
from typing import Any

import redis

from raftredis import Candidate
from raftredis.timing import Timings

from .common import (
    Check,
    Config,
    ElectedWatch,
    Figure,
    Stats,
    config_from_args,
    log,
    redis_server,
    settle,
    stop_all,
    table,
)

BENCH = "handover"
TIMEOUT = 3.0  # a handover slower than this counts as TIMEOUT (censored) and as a miss


class RawLockNode:
    """One node of the hand-written baseline: a lease key and a notice channel."""

    def __init__(
        self,
        url: str,
        node_id: str,
        lease_key: str,
        channel: str,
        events: queue.SimpleQueue[tuple[float, str]],
        jitter: float = 0.0,
    ) -> None:
        self.id = node_id
        self.jitter = jitter
        self.lease_key = lease_key
        self._channel = channel
        self._events = events
        self.client = redis.Redis.from_url(url)
        self._pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(**{channel: self._on_notice})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            reply = self._pubsub.get_message(timeout=1.0)
            if reply is not None and reply.get("type") == "subscribe":
                break
        self._thread = self._pubsub.run_in_thread(sleep_time=0.1, daemon=True)

    def _on_notice(self, message: dict[str, Any]) -> None:
        notice = json.loads(message["data"])
        if notice.get("type") != "resigned" or notice.get("id") == self.id:
            return
        if self.jitter:
            time.sleep(random.uniform(0.0, self.jitter))
        if self.client.set(self.lease_key, self.id, nx=True, px=3000):
            self._events.put((time.perf_counter(), self.id))

    def acquire(self) -> bool:
        return bool(self.client.set(self.lease_key, self.id, nx=True, px=3000))

    def resign(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.lease_key)
        pipe.publish(self._channel, json.dumps({"type": "resigned", "id": self.id}))
        pipe.execute()

    def close(self) -> None:
        self._thread.stop()
        self._thread.join(1.0)
        self._pubsub.close()
        self.client.close()


def _raw_trial(nodes: list[RawLockNode], events: queue.SimpleQueue[tuple[float, str]]) -> float:
    lease = nodes[0].client.get(nodes[0].lease_key)
    holder = lease.decode() if isinstance(lease, bytes) else None
    leader = next((n for n in nodes if n.id == holder), None)
    if leader is None:  # expired between trials (3 s): take it again
        leader = nodes[0]
        leader.client.delete(leader.lease_key)
        leader.acquire()
    while not events.empty():
        events.get_nowait()
    t0 = time.perf_counter()
    leader.resign()
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            at, who = events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return TIMEOUT * 1000
        if who != leader.id:
            return (at - t0) * 1000


def _rr_trial(
    cands: list[Candidate], watch: ElectedWatch, op: str, url: str, kind: str
) -> tuple[float, bool]:
    """One raftredis handover; (ms, ok). ``op`` "stop" replaces the stopped leader."""
    leader_id = settle(cands, quiet=0.2)
    leader = next(c for c in cands if c.id == leader_id)
    watch.drain()
    t0 = time.perf_counter()
    if op == "reelect":
        leader.reelect()
    else:
        leader.stop()
    event, _ = watch.wait(lambda cid: cid != leader_id, TIMEOUT)
    ms = TIMEOUT * 1000 if event is None else (event[0] - t0) * 1000
    if op == "stop":
        cands.remove(leader)
        fresh = Candidate(redis=url, kind=kind)
        watch.attach(fresh)
        cands.append(fresh.start())
    return ms, event is not None


def run(cfg: Config) -> list[Figure]:
    trials = cfg.trials(10, 30)
    jitter = Timings().vacancy_jitter
    jitter_ms = jitter * 1000
    figures: list[Figure] = []
    with redis_server() as server:
        url = server.url
        for n in (3, 10):
            kind = f"handover-{n}"
            log(f"handover: {n} instances, {trials} trials each of reelect, stop, raw, raw+jitter")
            watch = ElectedWatch()
            cands: list[Candidate] = []
            variants = ("reelect", "stop", "raw", "raw_jitter")
            results: dict[str, list[float]] = {v: [] for v in variants}
            misses = dict.fromkeys(variants, 0)
            pools: dict[str, tuple[list[RawLockNode], queue.SimpleQueue[tuple[float, str]]]] = {}
            try:
                for _ in range(n):
                    c = Candidate(redis=url, kind=kind)
                    watch.attach(c)
                    cands.append(c.start())
                for variant, delay in (("raw", 0.0), ("raw_jitter", jitter)):
                    events: queue.SimpleQueue[tuple[float, str]] = queue.SimpleQueue()
                    key, channel = f"{variant}:{n}:lease", f"{variant}:{n}:control"
                    nodes = pools.setdefault(variant, ([], events))[0]
                    for i in range(n):
                        nodes.append(RawLockNode(url, f"node{i}", key, channel, events, delay))
                    nodes[0].acquire()
                # Warm-up: one of each, not recorded.
                _rr_trial(cands, watch, "reelect", url, kind)
                for nodes, events in pools.values():
                    _raw_trial(nodes, events)
                for i in range(trials):
                    # Rotate the order so no variant always runs right after another.
                    order = list(variants[i % 4 :] + variants[: i % 4])
                    for op in order:
                        if op in pools:
                            ms = _raw_trial(*pools[op])
                            ok = ms < TIMEOUT * 1000
                            time.sleep(jitter + 0.05)  # let late campaigns finish
                        else:
                            ms, ok = _rr_trial(cands, watch, op, url, kind)
                        results[op].append(ms)
                        misses[op] += 0 if ok else 1
            finally:
                for nodes, _ in pools.values():
                    for node in nodes:
                        node.close()
                stop_all(cands)
            raw = Stats.of(results["raw"])
            for op, label in (("reelect", "reelect()"), ("stop", "stop()")):
                figures.append(
                    Figure(
                        BENCH,
                        f"{label} → elected elsewhere, {n} instances",
                        "ms",
                        results[op],
                        baseline_name="raw SET NX, same jitter",
                        baseline_samples=results["raw_jitter"],
                        checks=[Check("median", "<", 50, "ms"), Check("p99", "<", 100, "ms")],
                        notes=(
                            f"raftredis waits a random 0..{jitter_ms:g} ms before campaigning "
                            f"(expected fastest of {n - 1}: {jitter_ms / n:.1f} ms); the "
                            f"baseline does the same; raw without jitter: median "
                            f"{raw.median:.2f} ms, p99 {raw.p99:.2f} ms. Misses "
                            f"(>{TIMEOUT:g} s, counted as {TIMEOUT:g} s): {misses[op]}"
                        ),
                        extra={
                            "instances": n,
                            "misses": misses[op],
                            "baseline_misses": misses["raw_jitter"],
                            "expected_jitter_ms": jitter_ms / n,
                            "raw_no_jitter_ms": results["raw"],
                        },
                    )
                )
    return figures


def main() -> None:
    print(table(run(config_from_args(description=__doc__))))


if __name__ == "__main__":
    main()
