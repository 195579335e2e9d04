"""Reliable delivery and requests: against pub/sub messaging in the same run.

One private Redis; B (the echoing instance) and R (the counting one) run in a
child process, as the instances of a service do; A and the sender S run here.
All of them run with ``reliable=True``, so the pub/sub and the reliable
figures come from the same instances, only the flag of the send differing.

Round trip: A sends B a message, B's receiver sends it back to A the same way
(``message_to(..., reliable=message.reliable)``) from its reading thread, A's
receiver hands it to the waiting main thread through a ``queue.SimpleQueue``.
Pub/sub and reliable are interleaved in blocks (bench/messaging.py's
helpers), so machine noise hits both alike. In the same blocks: ``A.ask(B)``
and ``A.ask_leader()`` (B leads: it started first, alone), whose handler on B
returns the payload; the answer goes through the same queue, so every
variant pays the same hand-over. A second baseline, for information, is the
reliable exchange written by hand: redis-py ``XADD`` of ``json.dumps``, a
thread reading with ``XREADGROUP BLOCK`` that decodes, hands over, then acks
and deletes the entry (at least once, as raftredis), without raftredis'
envelope, checks, numbering and membership test.

Throughput: S makes N sequential ``message_to(R)`` calls, pub/sub and
reliable in alternating blocks; R counts each kind and reports when it has
all N. Timed from the first send until that report.

Idle cost: ``INFO commandstats`` over a window at steady state, a kind of one
(it leads) and a kind of three, each with ``reliable=True`` and with
``reliable=False``, each on a Redis server of its own, at the same time. A
reliable instance's extra commands are its stream commands (the blocked
``XREADGROUP`` of each reading thread, renewed every ``BLOCK_SECONDS``; the
leader has two threads): they are counted by name, because the difference of
the totals also holds the heartbeats' phases (reported beside, for
information).
"""

from __future__ import annotations

import contextlib
import json
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from raftredis import Candidate, Message
from raftredis.reliable import BLOCK_SECONDS
from raftredis.testing import RedisServer

from .common import (
    Check,
    Child,
    Config,
    Figure,
    children,
    command_calls,
    commands,
    config_from_args,
    emit,
    log,
    redis_server,
    settle,
    stop_all,
    table,
    wait_for,
)
from .messaging import REPLY_TIMEOUT, SLEEP_TIME, Counter, _interleaved, _round_trips, _tput_block

BENCH = "reliable"
RT_KIND, TPUT_KIND = "rel-rt", "rel-tput"
#: Targets: ask's median (µs), reliable round trip against pub/sub, idle extra per instance.
ASK_MEDIAN_US = 2000.0
RT_RATIO = 3.0
IDLE_EXTRA = 0.25


class RawStreamPeer:
    """The hand-written baseline: sends with XADD, reads one stream with a consumer group
    on a thread of its own, acks and deletes each entry after its handler ran."""

    def __init__(self, url: str, stream: str, handler: Callable[[RawStreamPeer, Any], object]):
        self.client = redis.Redis.from_url(url)
        self._reader = redis.Redis.from_url(url)
        self._stream = stream
        self._handler = handler
        with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: made by an earlier run
            self.client.xgroup_create(stream, "g", id="0", mkstream=True)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"raw-{stream}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            # Blocks like the messaging baseline's listeners: a message wakes it at once.
            reply: Any = self._reader.xreadgroup(
                "g", "c", {self._stream: ">"}, count=64, block=int(SLEEP_TIME * 1000)
            )
            for _, rows in reply or ():
                for entry_id, fields in rows:
                    self._handler(self, json.loads(fields[b"m"]))
                    pipe = self._reader.pipeline(transaction=False)
                    pipe.xack(self._stream, "g", entry_id)
                    pipe.xdel(self._stream, entry_id)
                    pipe.execute()

    def send(self, stream: str, payload: Any) -> object:
        return self.client.xadd(stream, {"m": json.dumps(payload)})

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(1.0)
        self._reader.close()
        self.client.close()


def _echo(sender: Candidate, message: Message, **extra: Any) -> None:
    sender.message_to(message.sender_id, message.payload, reliable=message.reliable)


def _answer(candidate: Candidate, message: Message) -> Any:
    return message.payload


def echo_main(url: str) -> None:
    """Child: B (echoes, answers requests, leads its kind) and R (counts)."""
    cands: list[Candidate] = []
    peers: list[RawStreamPeer] = []
    lock = threading.Lock()

    def report(variant: str) -> Callable[[int], None]:
        def done(count: int) -> None:
            with lock:
                emit("done", variant=variant, count=count)

        return done

    counters = {name: Counter(report(name)) for name in ("pub", "rel")}

    def count(sender: Candidate, message: Message, **extra: Any) -> None:
        counters["rel" if message.reliable else "pub"].hit()

    try:
        b = Candidate(redis=url, kind=RT_KIND, reliable=True)
        b.on("message", _echo)
        b.on_request(_answer)
        cands.append(b.start())
        if wait_for(lambda: b.is_leader, 10.0) is None:
            raise RuntimeError("B was not elected alone within 10 s")
        r = Candidate(redis=url, kind=TPUT_KIND, reliable=True)
        r.on("message", count)
        cands.append(r.start())
        peers.append(RawStreamPeer(url, "xs:b", lambda peer, data: peer.send("xs:a", data)))
        with lock:
            emit("ready", b_id=b.id, r_id=r.id)
        for cmd in commands():
            if cmd.get("cmd") == "expect":
                counter = counters[cmd["variant"]]
                counter.reset(int(cmd["n"]))
                with lock:
                    emit("armed", count=counter.count)
            elif cmd.get("cmd") == "count":
                with lock:
                    emit("count", **{k: c.count for k, c in counters.items()})
    finally:
        for peer in peers:
            peer.close()
        stop_all(cands)


def _asking(ask: Callable[[Any], Any], answers: queue.SimpleQueue[Any]) -> Callable[[Any], None]:
    """A send for the round-trip helpers: the answer (or a marker of a miss) to the queue."""

    def send(payload: Any) -> None:
        try:
            answers.put(ask(payload))
        except Exception as exc:  # counted as lost by the helper (its seq does not match)
            log(f"reliable: a request failed: {exc!r}")
            answers.put({"seq": None})

    return send


def _messaging(cfg: Config) -> list[Figure]:
    total = cfg.trials(1000, 5000)
    block = max(50, min(500, total // 4))
    rounds = max(1, total // block)
    tput_n = cfg.pick(1000, 5000) if cfg.trial_override is None else max(100, total)
    tput_rounds = cfg.pick(3, 6)
    figures: list[Figure] = []
    with redis_server() as server, children() as procs:
        url = server.url
        cands: list[Candidate] = []
        peers: list[RawStreamPeer] = []
        try:
            child = Child("bench.reliable", ["echo", url])
            procs.append(child)
            ready = child.expect("ready", timeout=30)
            b_id, r_id = str(ready["b_id"]), str(ready["r_id"])

            a = Candidate(redis=url, kind=RT_KIND, reliable=True)
            pub_q: queue.SimpleQueue[Any] = queue.SimpleQueue()
            rel_q: queue.SimpleQueue[Any] = queue.SimpleQueue()
            ask_q: queue.SimpleQueue[Any] = queue.SimpleQueue()
            a.on(
                "message",
                lambda sender, message, **extra: (rel_q if message.reliable else pub_q).put(
                    message.payload
                ),
            )
            cands.append(a.start())
            if wait_for(lambda: a.leader_id == b_id, 10.0) is None:
                raise RuntimeError(f"A does not see B as its leader: {a.leader_id!r}")
            raw_q: queue.SimpleQueue[Any] = queue.SimpleQueue()
            raw_a = RawStreamPeer(url, "xs:a", lambda peer, data: raw_q.put(data))
            peers.append(raw_a)

            log(f"reliable: round trips and requests, {rounds} x {block}, interleaved")
            samples, lost = _round_trips(
                {
                    "pub": (lambda p: a.message_to(b_id, p), pub_q),
                    "rel": (lambda p: a.message_to(b_id, p, reliable=True), rel_q),
                    "ask": (_asking(lambda p: a.ask(b_id, p, REPLY_TIMEOUT), ask_q), ask_q),
                    "leader": (_asking(lambda p: a.ask_leader(p, REPLY_TIMEOUT), ask_q), ask_q),
                    "raw": (lambda p: raw_a.send("xs:b", p), raw_q),
                },
                rounds,
                block,
            )
            pub_name = "pub/sub message_to round trip"
            rt_note = (
                f"B in another process; {rounds} alternating blocks of {block}; lost: "
                + ", ".join(f"{k} {v}" for k, v in lost.items())
            )
            figures.append(
                Figure(
                    BENCH,
                    "round trip message_to(reliable=True) → reply",
                    "µs",
                    samples["rel"],
                    baseline_name=pub_name,
                    baseline_samples=samples["pub"],
                    checks=[Check("ratio", "<=", RT_RATIO)],
                    notes=rt_note,
                    extra={"lost": lost, "block": block},
                )
            )
            figures.append(
                Figure(
                    BENCH,
                    "round trip message_to(reliable=True) → reply, against raw streams",
                    "µs",
                    samples["rel"],
                    baseline_name="raw redis-py XADD / XREADGROUP / XACK + json",
                    baseline_samples=samples["raw"],
                    notes="what raftredis adds to a stream exchange written by hand (information)",
                )
            )
            for key, what in (("ask", "ask(B) → answer"), ("leader", "ask_leader() → answer")):
                figures.append(
                    Figure(
                        BENCH,
                        f"{what}, B in another process",
                        "µs",
                        samples[key],
                        baseline_name=pub_name,
                        baseline_samples=samples["pub"],
                        checks=[Check("median", "<", ASK_MEDIAN_US, "µs")],
                    )
                )

            s = Candidate(redis=url, kind=TPUT_KIND, reliable=True).start()
            cands.append(s)
            log(f"reliable: throughput, {tput_rounds} x {tput_n} messages each, interleaved")
            e2e, calls, t_lost = _interleaved(
                _tput_block,
                [
                    ("rel", "rel", lambda p: s.message_to(r_id, p, reliable=True)),
                    ("pub", "pub", lambda p: s.message_to(r_id, p)),
                ],
                child,
                tput_rounds,
                tput_n,
            )
            figures.append(
                Figure(
                    BENCH,
                    f"message_to(reliable=True) x {tput_n}, until the receiver has all",
                    "msg/s",
                    e2e["rel"],
                    baseline_name="pub/sub message_to",
                    baseline_samples=e2e["pub"],
                    higher_is_better=True,
                    notes="sequential calls from one sender; the receiver runs in another "
                    f"process; lost: reliable {t_lost['rel']}, pub/sub {t_lost['pub']}",
                    extra={"lost": t_lost, "messages": tput_n},
                )
            )
            figures.append(
                Figure(
                    BENCH,
                    f"message_to(reliable=True) x {tput_n}, sender calls only",
                    "msg/s",
                    calls["rel"],
                    baseline_name="pub/sub message_to",
                    baseline_samples=calls["pub"],
                    higher_is_better=True,
                    notes="the sender's loop alone (information)",
                )
            )
        finally:
            for peer in peers:
                peer.close()
            stop_all(cands)
    return figures


def _stream_calls(client: redis.Redis) -> dict[str, int]:
    """Calls of each stream command (``xreadgroup``...) in INFO commandstats."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in stats.items()
        if name.startswith("cmdstat_x")
    }


def _idle(cfg: Config) -> list[Figure]:
    sizes = (1, 3)
    window = cfg.window(10.0, 30.0)
    runs = [(n, rel) for n in sizes for rel in (False, True)]
    figures: list[Figure] = []
    with contextlib.ExitStack() as stack:
        servers: dict[tuple[int, bool], RedisServer] = {
            key: stack.enter_context(redis_server()) for key in runs
        }
        cands: list[Candidate] = []
        stack.callback(stop_all, cands)
        for (n, rel), server in servers.items():
            group = [
                Candidate(redis=server.url, kind=f"idle-{n}", reliable=rel).start()
                for _ in range(n)
            ]
            cands += group
            settle(group)
        time.sleep(cfg.pick(3.0, 5.0))  # past the start-up traffic
        clients = {key: stack.enter_context(s.client()) for key, s in servers.items()}
        log(f"reliable: idle Redis cost, kinds of {sizes}, {window:g} s")

        def mark() -> dict[tuple[int, bool], tuple[int, dict[str, int]]]:
            return {key: (command_calls(c), _stream_calls(c)) for key, c in clients.items()}

        t0, before = time.monotonic(), mark()
        time.sleep(window)
        t1, after = time.monotonic(), mark()
    span = t1 - t0
    for n in sizes:
        total = {rel: (after[n, rel][0] - before[n, rel][0]) / span / n for rel in (False, True)}
        streams = {
            name: count - before[n, True][1].get(name, 0)
            for name, count in after[n, True][1].items()
        }
        extra = sum(streams.values()) / span / n
        threads = n + 1  # each instance's own reading thread, and the leader's
        model = threads / BLOCK_SECONDS / n
        who = "a kind of 1 (it leads)" if n == 1 else f"a kind of {n}, per instance"
        figures.append(
            Figure(
                BENCH,
                f"idle extra Redis commands/s of reliable=True, {who}",
                "cmd/s",
                [extra],
                baseline_name=f"model: a read per {BLOCK_SECONDS:g} s per reading thread",
                baseline_samples=[model],
                checks=[Check("mean", "<=", IDLE_EXTRA, "cmd/s")],
                notes=(
                    f"stream commands over {span:.1f} s: "
                    + (", ".join(f"{k} {v}" for k, v in sorted(streams.items()) if v) or "none")
                    + f"; all commands per instance: {total[True]:.2f}/s with reliable=True, "
                    f"{total[False]:.2f}/s without (difference {total[True] - total[False]:+.2f},"
                    " heartbeat phases included)"
                ),
                extra={"instances": n, "window_s": span, "total": total, "streams": streams},
            )
        )
    return figures


def run(cfg: Config) -> list[Figure]:
    return _messaging(cfg) + _idle(cfg)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "echo":
        echo_main(sys.argv[2])
        return
    print(table(run(config_from_args(description=__doc__))))


if __name__ == "__main__":
    main()
