"""Profile the message round trip (and message_all), raftredis against raw redis-py.

    python -m bench.profile_messaging [--n 2000] [--top 20] [--what rt|all]

cProfile only sees the thread that enables it, and a round trip runs on
three: the sender's main thread and two listener threads. So every thread
started after :func:`install` gets a profiler of its own, enabled once
profiling is switched on, and the results of all threads of one side are
merged. Times are given per message (µs), by function and by file, so the
two sides compare directly. Profiling slows everything down; read the
proportions, not the absolute values: the CPU per message measured without
the profiler is printed first. Then the message_all self-delivery test (what
the sender's own listener costs) and micro-benchmarks (timeit) of the pieces
a raftredis message goes through.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import queue
import threading
import time
import timeit
import uuid
from collections import defaultdict
from collections.abc import Callable
from types import FrameType
from typing import Any

import redis

from raftredis import Candidate, Message, signals
from raftredis.dispatch import deliver
from raftredis.inbox import Inbox
from raftredis.keys import KeySpace
from raftredis.models import Scope
from raftredis.wire import Envelope, decode_envelope, encode_envelope

from .common import redis_server, stop_all
from .messaging import Counter, RawPeer

_ON = threading.Event()
_PROFILES: list[tuple[threading.Thread, cProfile.Profile]] = []
_LOCK = threading.Lock()


def _hook(frame: FrameType, event: str, arg: Any) -> None:
    """Python-level profile hook of new threads: swap in a C profiler once switched on."""
    if not _ON.is_set():
        return
    profile = cProfile.Profile(time.thread_time)
    with _LOCK:
        _PROFILES.append((threading.current_thread(), profile))
    profile.enable()  # replaces this hook in this thread, for good


def install() -> None:
    threading.setprofile(_hook)


class _Snapshot:
    """What pstats.Stats needs of a profile, without calling its create_stats().

    create_stats() disables the profile and closes the calls still on its
    stack using the timer of the *calling* thread: from another thread that
    gives garbage (another thread's CPU clock). A snapshot keeps the calls
    that completed, which is all that matters here.
    """

    def __init__(self, profile: cProfile.Profile) -> None:
        profile.snapshot_stats()
        self.stats: dict[Any, Any] = profile.stats

    def create_stats(self) -> None:
        pass


def _merge(profiles: list[_Snapshot]) -> pstats.Stats | None:
    stats: pstats.Stats | None = None
    for p in profiles:
        if not p.stats:
            continue
        if stats is None:
            stats = pstats.Stats(p)  # type: ignore[arg-type]
        else:
            stats.add(p)  # type: ignore[arg-type]
    return stats


def _short(path: str) -> str:
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def report(title: str, stats: pstats.Stats | None, n: int, top: int) -> float:
    """Print the top functions and files; the total CPU µs per message."""
    print(f"\n=== {title}: CPU µs per message (tottime = own time; {n} messages)")
    if stats is None:
        print("(no data)")
        return 0.0
    rows = stats.stats  # type: ignore[attr-defined]
    total = float(sum(v[2] for v in rows.values())) / n * 1e6
    print(f"total: {total:.1f} µs of CPU per message, all threads of this side")
    ordered = sorted(rows.items(), key=lambda kv: kv[1][2], reverse=True)
    print(f"{'tottime':>9} {'cumtime':>9} {'calls':>6}  function")
    for (path, line, name), (_cc, nc, tt, ct, _callers) in ordered[:top]:
        where = f"{_short(path)}:{line}({name})"
        print(f"{tt / n * 1e6:9.2f} {ct / n * 1e6:9.2f} {nc / n:6.2f}  {where}")
    own = [kv for kv in ordered if "/raftredis/" in kv[0][0]]
    if own:
        print("raftredis' own functions (by own time):")
        for (path, line, name), (_cc, nc, tt, ct, _callers) in own[:10]:
            where = f"{_short(path)}:{line}({name})"
            print(f"{tt / n * 1e6:9.2f} {ct / n * 1e6:9.2f} {nc / n:6.2f}  {where}")
    by_file: dict[str, float] = defaultdict(float)
    for (path, _line, _name), (_cc, _nc, tt, _ct, _callers) in rows.items():
        by_file[_short(path)] += tt
    print("by file (own time):")
    for path, tt in sorted(by_file.items(), key=lambda kv: kv[1], reverse=True)[:12]:
        print(f"{tt / n * 1e6:9.2f}  {path}")
    return total


def _profiled(run: Callable[[], None]) -> list[tuple[str, cProfile.Profile]]:
    """Run ``run`` with the main thread and every thread started after install() profiled.

    Only threads that exist during this call should belong to the side being
    measured: create each side's objects, profile, close them, then the next.
    """
    with _LOCK:
        _PROFILES.clear()
    main = cProfile.Profile(time.thread_time)  # CPU time: waiting in recv() costs nothing
    _ON.set()
    time.sleep(0.3)  # idle listener threads wake within sleep_time and switch on
    main.enable()
    try:
        run()
    finally:
        main.disable()
        _ON.clear()
    with _LOCK:
        threads = [(t.name, p) for t, p in _PROFILES]
    return [("main", main), *threads]


def _side(title: str, fn: Callable[[], None], n: int, top: int) -> tuple[float, float]:
    """Profile one side; (CPU µs per message without the profiler, with it)."""
    fn()  # warm-up, unprofiled
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fn()
    cpu = (time.process_time() - cpu0) / n * 1e6
    wall = (time.perf_counter() - wall0) / n * 1e6
    print(
        f"\n{title}: without the profiler {wall:.0f} µs wall and {cpu:.0f} µs of "
        "process CPU per message"
    )
    snapshots = []
    for name, p in _profiled(fn):
        snap = _Snapshot(p)
        snapshots.append(snap)
        own = sum(v[2] for v in snap.stats.values()) / n * 1e6
        if own >= 1.0:
            print(f"  thread {name}: {own:.1f} µs CPU per message (profiled)")
    return cpu, report(title, _merge(snapshots), n, top)


def profile_round_trip(url: str, n: int, top: int) -> tuple[Any, Any]:
    payload = {"op": "echo", "seq": 0, "body": "hello from A"}
    cands: list[Candidate] = []
    try:
        a = Candidate(redis=url, kind="prof-rt").start()
        b = Candidate(redis=url, kind="prof-rt").start()
        cands += [a, b]
        replies: queue.SimpleQueue[Any] = queue.SimpleQueue()

        def echo(sender: Candidate, message: Message, **extra: Any) -> None:
            sender.message_to(message.sender_id, message.payload)

        b.on("message", echo)
        a.on("message", lambda sender, message, **extra: replies.put(message.payload))

        def rr() -> None:
            for _ in range(n):
                a.message_to(b.id, payload)
                replies.get(timeout=2)

        rr_cpu = _side("raftredis round trip", rr, n, top)
    finally:
        stop_all(cands)
    peers: list[RawPeer] = []
    try:
        raw_replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
        raw_b = RawPeer(url, "praw:b", lambda peer, data: peer.send("praw:a", data))
        raw_a = RawPeer(url, "praw:a", lambda peer, data: raw_replies.put(data))
        peers += [raw_a, raw_b]

        def raw() -> None:
            for _ in range(n):
                raw_a.send("praw:b", payload)
                raw_replies.get(timeout=2)

        raw_cpu = _side("raw redis-py round trip", raw, n, top)
    finally:
        for p in peers:
            p.close()
    return rr_cpu, raw_cpu


def profile_message_all(url: str, n: int, top: int) -> tuple[Any, Any]:
    payload = {"op": "tick", "seq": 0, "body": "hello from the sender"}
    cands: list[Candidate] = []
    try:
        s = Candidate(redis=url, kind="prof-all").start()
        r = Candidate(redis=url, kind="prof-all").start()
        cands += [s, r]
        counter = Counter()
        r.on("message", lambda sender, message, **extra: counter.hit())

        def rr() -> None:
            counter.reset(n)
            for _ in range(n):
                s.message_all(payload)
            counter.done.wait(30)

        rr_cpu = _side("raftredis message_all", rr, n, top)
    finally:
        stop_all(cands)
    peers: list[RawPeer] = []
    pub = redis.Redis.from_url(url)
    try:
        raw_counter = Counter()
        peers.append(RawPeer(url, "praw:all", lambda peer, data: raw_counter.hit()))

        def raw() -> None:
            raw_counter.reset(n)
            for _ in range(n):
                pub.publish("praw:all", json.dumps(payload))
            raw_counter.done.wait(30)

        raw_cpu = _side("raw publish", raw, n, top)
    finally:
        for p in peers:
            p.close()
        pub.close()
    return rr_cpu, raw_cpu


def self_delivery(url: str, n: int) -> None:
    """Where message_all's extra CPU goes: the sender's own listener receives every message.

    A Candidate's message listener is subscribed to the kind's ``all``
    channel, so it receives, parses and decodes each of its own broadcasts
    before dropping it. Variant D stops the sender's message listener
    (private attribute, a diagnostic only) to show what that costs.
    """
    payload = {"op": "tick", "seq": 0, "body": "hello from the sender"}

    def measure(name: str, send: Callable[[], object], counter: Counter) -> None:
        for _ in range(2):  # the first pass warms up
            counter.reset(n)
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(n):
                send()
            counter.done.wait(30)
            cpu = (time.process_time() - c0) / n * 1e6
            wall = time.perf_counter() - t0
        print(f"{name:58} {n / wall:7.0f} msg/s {cpu:7.1f} µs CPU/msg (got {counter.count})")

    print(f"\n=== message_all: self-delivery ({n} messages, one process, CPU of all threads)")
    cands: list[Candidate] = []
    peers: list[RawPeer] = []
    pub = redis.Redis.from_url(url)
    try:
        snd = Candidate(redis=url, kind="prof-self").start()
        rcv = Candidate(redis=url, kind="prof-self").start()
        cands += [snd, rcv]
        counter, raw_counter = Counter(), Counter()
        rcv.on("message", lambda sender, message, **extra: counter.hit())
        peers.append(RawPeer(url, "praw:self", lambda peer, data: raw_counter.hit()))
        measure(
            "A raw publish(json.dumps) -> raw subscriber",
            lambda: pub.publish("praw:self", json.dumps(payload)),
            raw_counter,
        )
        measure("B message_all -> Candidate (as is)", lambda: snd.message_all(payload), counter)
        snd._session.listeners[1].stop(1.0)  # the sender's message listener
        measure(
            "D message_all, the sender's own message listener stopped",
            lambda: snd.message_all(payload),
            counter,
        )
    finally:
        for p in peers:
            p.close()
        pub.close()
        stop_all(cands)


def micro() -> None:
    """timeit of the pieces of one raftredis message (µs per call)."""
    payload = {"op": "echo", "seq": 1, "body": "hello from A"}
    env = Envelope("k", "a" * 20, Scope.DIRECT, 3, False, uuid.uuid4().hex, time.time(), payload)
    data = encode_envelope(env, 1 << 20)
    keys = KeySpace("raftredis", "k")

    class Owner:
        pass

    owner = Owner()
    inbox = Inbox(owner, keys, "b" * 20, 1 << 20, known_term=lambda: 3, is_leader=lambda: False)
    channel = keys.inbox("b" * 20)
    msg = {"type": "message", "pattern": None, "channel": channel.encode(), "data": data}
    signals.message_received.connect(lambda s, message, **e: None, sender=owner, weak=False)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("json.dumps(payload)", lambda: json.dumps(payload)),
        ("json.loads(payload)", lambda: json.loads(b'{"op":"echo","seq":1,"body":"hello"}')),
        ("uuid.uuid4().hex", lambda: uuid.uuid4().hex),
        ("time.time()", time.time),
        ("Envelope(...)", lambda: Envelope("k", "a", Scope.DIRECT, 3, False, "x", 0.0, payload)),
        ("encode_envelope", lambda: encode_envelope(env, 1 << 20)),
        ("decode_envelope", lambda: decode_envelope(data, kind="k", max_bytes=1 << 20)),
        ("Inbox.accept", lambda: inbox.accept(channel, data)),
        (
            "deliver(message_received), 1 receiver",
            lambda: deliver(signals.message_received, owner, {"message": None}),
        ),
        (
            "deliver(message_from_follower), 0 receivers",
            lambda: deliver(signals.message_from_follower, owner, {"message": None}),
        ),
        ("Inbox.handle (decode + 2 signals)", lambda: inbox.handle(msg)),
    ]
    print("\n=== micro-benchmarks, µs per call")
    for name, fn in cases:
        number = 20000
        best = min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6
        print(f"{best:8.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="messages per side")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--what", choices=("rt", "all", "both"), default="both")
    parser.add_argument("--no-micro", action="store_true")
    parser.add_argument(
        "--no-self-delivery", action="store_true", help="skip the message_all self-delivery test"
    )
    args = parser.parse_args()
    install()
    summary = []
    with redis_server() as server:
        if args.what in ("rt", "both"):
            summary.append(("round trip", *profile_round_trip(server.url, args.n, args.top)))
        if args.what in ("all", "both"):
            summary.append(("message_all", *profile_message_all(server.url, args.n, args.top)))
        if not args.no_self_delivery:
            self_delivery(server.url, max(args.n, 2000))
    print("\n=== summary: CPU µs per message, all threads of one side")
    print(f"{'':12} {'raftredis':>10} {'raw':>8} {'ratio':>6}   (profiled: raftredis, raw, ratio)")
    for name, (rr, rr_prof), (raw, raw_prof) in summary:
        print(
            f"{name:12} {rr:10.1f} {raw:8.1f} {rr / raw:6.2f}   "
            f"({rr_prof:.1f}, {raw_prof:.1f}, {rr_prof / raw_prof:.2f})"
        )
    if not args.no_micro:
        micro()


if __name__ == "__main__":
    main()
