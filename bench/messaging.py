"""Messaging: round trip and one-sender throughput, against raw redis-py in the same run.

Round trip: A ``message_to`` B; B's receiver answers with ``message_to`` A
from its listener thread; A's receiver hands the answer to the waiting main
thread through a ``queue.SimpleQueue``. The baseline is the same exchange
written by hand: two redis-py clients, each with a pub/sub connection
(``run_in_thread``), JSON encoded with
``json.dumps`` on send and decoded with ``json.loads`` on receipt on both
sides, the same queue. Run twice: with B in a child process (as two
instances of a service are), and with A and B in this process (they then
share one GIL, so each side's CPU also delays the other). raftredis and raw
are interleaved in blocks, so machine noise hits both alike.

Throughput: one sender (this process) makes N sequential ``message_all``
calls; one subscriber (in the child process) counts them and reports when it
has all N. Timed from the first send until that report (and, separately,
until the sender's last call returned). Baseline: N sequential redis-py
``publish`` of ``json.dumps`` payloads, a raw subscriber in the child
decoding and counting. A second baseline does the same with the sender also
subscribed to the channel it publishes on, as every member of a service
listening on a broadcast channel is (a raftredis sender receives its own
broadcasts and drops them; the raw one is given a subscriber that does
nothing at all, the cheapest possible).

Bulk: ``Candidate.batch()`` with N messages (``message_to`` the subscriber,
and ``message_all``), timed from the first message added until ``send()``
returned (the sender's rate) and until the subscriber had all N. Baseline:
a redis-py ``pipeline(transaction=False)`` of N ``publish(json.dumps(...))``.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from raftredis import Candidate, Message

from .common import (
    Check,
    Child,
    Config,
    Figure,
    children,
    commands,
    config_from_args,
    emit,
    log,
    redis_server,
    stop_all,
    table,
)

BENCH = "messaging"
# How long the raw listeners block per read. A message wakes a reader at once
# whatever this is (raftredis' listeners use 1.0 s); 0.1 s lets close() end fast.
SLEEP_TIME = 0.1
REPLY_TIMEOUT = 2.0
X_RT_KIND, X_TPUT_KIND = "msg-rt-x", "msg-tput-x"


class RawPeer:
    """One side of the hand-written baseline: a client and a pub/sub listener thread."""

    def __init__(self, url: str, channel: str, handler: Callable[[RawPeer, Any], object]) -> None:
        self.client = redis.Redis.from_url(url)
        self._handler = handler
        self._pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(**{channel: self._on_message})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            reply = self._pubsub.get_message(timeout=1.0)
            if reply is not None and reply.get("type") == "subscribe":
                break
        self._thread = self._pubsub.run_in_thread(sleep_time=SLEEP_TIME, daemon=True)

    def _on_message(self, message: dict[str, Any]) -> None:
        self._handler(self, json.loads(message["data"]))

    def send(self, channel: str, payload: Any) -> int:
        return int(self.client.publish(channel, json.dumps(payload)))

    def close(self) -> None:
        self._thread.stop()
        self._thread.join(1.0)
        self._pubsub.close()
        self.client.close()


class Counter:
    """Counts messages on one listener thread; sets ``done`` (and calls ``on_done``) at target."""

    def __init__(self, on_done: Callable[[int], None] | None = None) -> None:
        self.count = 0
        self.target = 0
        self.done = threading.Event()
        self._on_done = on_done

    def reset(self, target: int) -> None:
        self.count = 0
        self.target = target
        self.done.clear()

    def hit(self) -> None:
        self.count += 1
        if self.count == self.target:
            self.done.set()
            if self._on_done is not None:
                self._on_done(self.count)


def _echo(sender: Candidate, message: Message, **extra: Any) -> None:
    sender.message_to(message.sender_id, message.payload)


def echo_main(url: str) -> None:
    """Child: B of the round trip and the counting subscriber, for raftredis and raw."""
    cands: list[Candidate] = []
    peers: list[RawPeer] = []
    lock = threading.Lock()

    def report(variant: str) -> Callable[[int], None]:
        def done(count: int) -> None:
            with lock:
                emit("done", variant=variant, count=count)

        return done

    counters = {name: Counter(report(name)) for name in ("rr", "raw", "rawm")}
    try:
        b = Candidate(redis=url, kind=X_RT_KIND).start()
        cands.append(b)
        b.on("message", _echo)
        r = Candidate(redis=url, kind=X_TPUT_KIND).start()
        cands.append(r)
        r.on("message", lambda sender, message, **extra: counters["rr"].hit())
        peers.append(RawPeer(url, "xraw:b", lambda peer, data: peer.send("xraw:a", data)))
        peers.append(RawPeer(url, "xraw:all", lambda peer, data: counters["raw"].hit()))
        peers.append(RawPeer(url, "xraw:allm", lambda peer, data: counters["rawm"].hit()))
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


Rates = tuple[float, float, int]


def _rt_block(
    send: Callable[[dict[str, Any]], object],
    replies: queue.SimpleQueue[Any],
    count: int,
    seq0: int,
) -> tuple[list[float], int]:
    """``count`` round trips; (µs each, lost)."""
    out: list[float] = []
    lost = 0
    perf = time.perf_counter
    for seq in range(seq0, seq0 + count):
        payload = {"op": "echo", "seq": seq, "body": "hello from A"}
        t0 = perf()
        send(payload)
        try:
            reply = replies.get(timeout=REPLY_TIMEOUT)
        except queue.Empty:
            lost += 1
            continue
        t1 = perf()
        if reply.get("seq") != seq:  # a late reply of a lost one: resynchronise
            lost += 1
            while not replies.empty():
                replies.get_nowait()
            continue
        out.append((t1 - t0) * 1e6)
    return out, lost


def _round_trips(
    variants: dict[str, tuple[Callable[[dict[str, Any]], object], queue.SimpleQueue[Any]]],
    rounds: int,
    block: int,
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Interleaved blocks of each variant, after a warm-up; (µs samples, lost) by variant."""
    for send, replies in variants.values():
        _rt_block(send, replies, 200, 0)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    lost = dict.fromkeys(variants, 0)
    seq = 1000
    names = list(variants)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            got, n_lost = _rt_block(*variants[name], block, seq)
            seq += block
            samples[name] += got
            lost[name] += n_lost
    return samples, lost


def _counted(child: Child, variant: str, count: int, send_all: Callable[[], object]) -> Rates:
    """Run ``send_all`` (``count`` messages), counted by the child; (end-to-end msg/s,
    sender msg/s, lost)."""
    child.send({"cmd": "expect", "variant": variant, "n": count})
    child.expect("armed", timeout=10)
    perf = time.perf_counter
    t0 = perf()
    send_all()
    t_sent = perf()
    try:
        child.expect("done", timeout=60)
        lost = 0
    except TimeoutError:
        child.send({"cmd": "count"})
        lost = count - int(child.expect("count", timeout=10)[variant])
    t_done = perf()
    return count / (t_done - t0), count / (t_sent - t0), lost


def _payload(seq: int) -> dict[str, Any]:
    return {"op": "tick", "seq": seq, "body": "hello from the sender"}


def _tput_block(
    send: Callable[[dict[str, Any]], object], child: Child, variant: str, count: int
) -> Rates:
    """``count`` sequential sends."""

    def send_all() -> None:
        for seq in range(count):
            send(_payload(seq))

    return _counted(child, variant, count, send_all)


def _bulk_block(
    send_batch: Callable[[list[dict[str, Any]]], object], child: Child, variant: str, count: int
) -> Rates:
    """One batch of ``count`` (the payloads are built before the clock starts)."""
    payloads = [_payload(seq) for seq in range(count)]
    return _counted(child, variant, count, lambda: send_batch(payloads))


Block = Callable[[Callable[[Any], object], Child, str, int], Rates]


def _interleaved(
    block: Block,
    variants: Sequence[tuple[str, str, Callable[[Any], object]]],
    child: Child,
    rounds: int,
    count: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    """A warm-up block of each variant, then ``rounds`` rounds of blocks, the order
    reversed every other round; (end-to-end rates, sender rates, lost) by name."""
    for _, variant, send in variants:
        block(send, child, variant, max(1, count // 10))
    e2e: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    sender: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    lost = dict.fromkeys(e2e, 0)
    for r in range(rounds):
        for name, variant, send in variants if r % 2 == 0 else variants[::-1]:
            rate, sent_rate, n_lost = block(send, child, variant, count)
            e2e[name].append(rate)
            sender[name].append(sent_rate)
            lost[name] += n_lost
    return e2e, sender, lost


class SilentSubscriber:
    """A redis-py subscriber that ignores what it gets: the cheapest listener there is."""

    def __init__(self, url: str, channel: str) -> None:
        self.client = redis.Redis.from_url(url)
        self._pubsub = self.client.pubsub()  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(**{channel: lambda message: None})
        self._thread = self._pubsub.run_in_thread(sleep_time=SLEEP_TIME, daemon=True)

    def close(self) -> None:
        self._thread.stop()
        self._thread.join(1.0)
        self._pubsub.close()
        self.client.close()


def run(cfg: Config) -> list[Figure]:
    total = cfg.trials(1000, 5000)
    block = max(50, min(500, total // 4))
    rounds = max(1, total // block)
    tput_n = cfg.pick(1000, 5000) if cfg.trial_override is None else max(100, total)
    tput_rounds = cfg.pick(3, 6)
    figures: list[Figure] = []
    with redis_server() as server, children() as procs:
        url = server.url
        cands: list[Candidate] = []
        peers: list[RawPeer | SilentSubscriber] = []
        raw_pub = redis.Redis.from_url(url)
        try:
            child = Child("bench.messaging", ["echo", url])
            procs.append(child)
            ready = child.expect("ready", timeout=30)
            b_id, r_id = str(ready["b_id"]), str(ready["r_id"])

            # --- round trip, B in the child process
            a_x = Candidate(redis=url, kind=X_RT_KIND).start()
            cands.append(a_x)
            rr_x: queue.SimpleQueue[Any] = queue.SimpleQueue()
            a_x.on("message", lambda sender, message, **extra: rr_x.put(message.payload))
            raw_x: queue.SimpleQueue[Any] = queue.SimpleQueue()
            raw_a_x = RawPeer(url, "xraw:a", lambda peer, data: raw_x.put(data))
            peers.append(raw_a_x)
            log(f"messaging: round trip, B in a child process, {rounds} x {block}, interleaved")
            x_samples, x_lost = _round_trips(
                {
                    "rr": (lambda p: a_x.message_to(b_id, p), rr_x),
                    "raw": (lambda p: raw_a_x.send("xraw:b", p), raw_x),
                },
                rounds,
                block,
            )

            # --- round trip, A and B in this process
            a = Candidate(redis=url, kind="msg-rt").start()
            b = Candidate(redis=url, kind="msg-rt").start()
            cands += [a, b]
            rr_replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
            b.on("message", _echo)
            a.on("message", lambda sender, message, **extra: rr_replies.put(message.payload))
            raw_replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
            peers.append(RawPeer(url, "raw:b", lambda peer, data: peer.send("raw:a", data)))
            raw_a = RawPeer(url, "raw:a", lambda peer, data: raw_replies.put(data))
            peers.append(raw_a)
            log(f"messaging: round trip, A and B in one process, {rounds} x {block}, interleaved")
            s_samples, s_lost = _round_trips(
                {
                    "rr": (lambda p: a.message_to(b.id, p), rr_replies),
                    "raw": (lambda p: raw_a.send("raw:b", p), raw_replies),
                },
                rounds,
                block,
            )
            for where, samples, lost in (
                ("B in another process", x_samples, x_lost),
                ("A and B in one process", s_samples, s_lost),
            ):
                figures.append(
                    Figure(
                        BENCH,
                        f"round trip message_to → reply, {where}",
                        "µs",
                        samples["rr"],
                        baseline_name="raw redis-py pub/sub + json",
                        baseline_samples=samples["raw"],
                        checks=[Check("ratio", "<=", 1.3)],
                        notes=f"lost: raftredis {lost['rr']}, raw {lost['raw']}; "
                        f"{rounds} alternating blocks of {block}",
                        extra={"lost": lost, "block": block},
                    )
                )

            # --- throughput: the sender here, the subscriber in the child
            s = Candidate(redis=url, kind=X_TPUT_KIND).start()
            cands.append(s)

            def rr_all(payload: dict[str, Any]) -> object:
                return s.message_all(payload)

            def raw_all(payload: dict[str, Any]) -> object:
                return raw_pub.publish("xraw:all", json.dumps(payload))

            def raw_member_all(payload: dict[str, Any]) -> object:
                return raw_pub.publish("xraw:allm", json.dumps(payload))

            # The raw "member" sender listens on its broadcast channel, doing nothing.
            peers.append(SilentSubscriber(url, "xraw:allm"))
            tput_variants: list[tuple[str, str, Callable[[dict[str, Any]], object]]] = [
                ("rr", "rr", rr_all),
                ("raw", "raw", raw_all),
                ("rawm", "rawm", raw_member_all),
            ]
            log(f"messaging: throughput, {tput_rounds} x {tput_n} messages each, interleaved")
            e2e, calls, t_lost = _interleaved(
                _tput_block, tput_variants, child, tput_rounds, tput_n
            )
            note = (
                "sequential calls, one at a time; the subscriber runs in another process; "
                f"lost: raftredis {t_lost['rr']}, raw {t_lost['raw']}, raw member {t_lost['rawm']}"
            )
            for base, base_name, checks, what in (
                ("raw", "raw publish + json", [Check("ratio", ">=", 0.9)], ""),
                (
                    "rawm",
                    "raw publish + json, sender subscribed",
                    [],
                    ", against a sender that also listens (like a member)",
                ),
            ):
                figures.append(
                    Figure(
                        BENCH,
                        f"message_all x {tput_n}, until the subscriber has all{what}",
                        "msg/s",
                        e2e["rr"],
                        baseline_name=base_name,
                        baseline_samples=e2e[base],
                        checks=checks,
                        higher_is_better=True,
                        notes=note,
                        extra={"lost": t_lost, "messages": tput_n},
                    )
                )
            figures.append(
                Figure(
                    BENCH,
                    f"message_all x {tput_n}, sender calls only",
                    "msg/s",
                    calls["rr"],
                    baseline_name="raw publish + json",
                    baseline_samples=calls["raw"],
                    higher_is_better=True,
                    notes="the sender's loop alone (information)",
                )
            )

            # --- bulk: one batch of N messages against a redis-py pipeline
            bulk_n = cfg.pick(5000, 20000) if cfg.trial_override is None else max(100, total)
            bulk_rounds = cfg.pick(3, 6)

            def rr_batch_to(payloads: list[dict[str, Any]]) -> object:
                batch = s.batch()
                for payload in payloads:
                    batch.message_to(r_id, payload)
                return batch.send()

            def rr_batch_all(payloads: list[dict[str, Any]]) -> object:
                batch = s.batch()
                for payload in payloads:
                    batch.message_all(payload)
                return batch.send()

            def raw_pipeline(payloads: list[dict[str, Any]]) -> object:
                pipe = raw_pub.pipeline(transaction=False)
                for payload in payloads:
                    pipe.publish("xraw:all", json.dumps(payload))
                return pipe.execute()

            bulk_variants: list[tuple[str, str, Callable[[list[dict[str, Any]]], object]]] = [
                ("to", "rr", rr_batch_to),
                ("all", "rr", rr_batch_all),
                ("raw", "raw", raw_pipeline),
            ]
            log(f"messaging: bulk, {bulk_rounds} x batches of {bulk_n}, interleaved")
            bulk_e2e, sender_rate, b_lost = _interleaved(
                _bulk_block, bulk_variants, child, bulk_rounds, bulk_n
            )
            bulk_note = (
                f"one batch of {bulk_n} (sent in chunks of 1,000), timed from the first "
                f"message added; lost: message_to {b_lost['to']}, message_all {b_lost['all']}, "
                f"raw {b_lost['raw']}"
            )
            for name, what in (("to", "message_to"), ("all", "message_all")):
                figures.append(
                    Figure(
                        BENCH,
                        f"batch of {bulk_n} {what}, sender until send() returned",
                        "msg/s",
                        sender_rate[name],
                        baseline_name="redis-py pipeline of publish + json",
                        baseline_samples=sender_rate["raw"],
                        checks=[Check("median", ">=", 30000, "msg/s")],
                        higher_is_better=True,
                        notes=bulk_note,
                    )
                )
                figures.append(
                    Figure(
                        BENCH,
                        f"batch of {bulk_n} {what}, until the subscriber has all",
                        "msg/s",
                        bulk_e2e[name],
                        baseline_name="redis-py pipeline of publish + json",
                        baseline_samples=bulk_e2e["raw"],
                        higher_is_better=True,
                        notes="the subscriber (one Candidate, one Python thread decoding and "
                        "delivering each message to a receiver) is the limit (information)",
                    )
                )
        finally:
            for peer in peers:
                peer.close()
            raw_pub.close()
            stop_all(cands)
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "echo":
        echo_main(sys.argv[2])
        return
    print(table(run(config_from_args(description=__doc__))))


if __name__ == "__main__":
    main()
