"""Discovery: ``get_instances()`` latency by kind size and by unrelated keys in Redis.

For 100 and 1,000 members there is no need for as many Candidates: the
members are written straight into the layout the scripts use (the sorted
set ``P:{K}:members``, id → expiry in server ms, far in the future; the hash
``P:{K}:meta``, id → ``{"meta": ..., "joined": ..., "ttl": ...}``), and one
real Candidate calls ``get_instances()``.

Baseline, interleaved in blocks in the same run: the same listing written by
hand with redis-py in one round trip (a pipelined ``ZRANGEBYSCORE`` of the
live members and ``HGETALL`` of the records, ``json.loads`` of each record).
As information, the ``KEYS`` scan that node-raft-redis does for discovery is
timed too: it costs O(all keys in Redis), not O(members).
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from raftredis import Candidate

from .common import (
    Check,
    Config,
    Figure,
    config_from_args,
    log,
    redis_server,
    stop_all,
    table,
)

BENCH = "discovery"
MEMBERS = (3, 100, 1000)
UNRELATED = (0, 200_000)
PREFIX = "raftredis"


def _keys(kind: str) -> tuple[str, str]:
    base = f"{PREFIX}:{{{kind}}}"
    return f"{base}:members", f"{base}:meta"


def write_members(client: redis.Redis, kind: str, count: int) -> None:
    """``count`` members of ``kind`` that never expire (within a benchmark)."""
    members_key, meta_key = _keys(kind)
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    pipe = client.pipeline(transaction=False)
    for start in range(0, count, 1000):
        ids = [f"fake-{i:06d}" for i in range(start, min(count, start + 1000))]
        pipe.zadd(members_key, {i: now_ms + 10**9 for i in ids})
        pipe.hset(
            meta_key,
            mapping={
                i: json.dumps(
                    {
                        "meta": {"host": f"host-{i}", "port": 8000, "zone": "a"},
                        "joined": now_ms / 1000.0,
                        "ttl": 6.0,
                    },
                    separators=(",", ":"),
                )
                for i in ids
            },
        )
    pipe.execute()


def populate(client: redis.Redis, count: int) -> str:
    """``count`` unrelated string keys; how they were written."""
    try:
        client.execute_command(  # type: ignore[no-untyped-call]
            "DEBUG", "POPULATE", count, "unrelated", 64
        )
        return "DEBUG POPULATE"
    except redis.ResponseError:
        pipe = client.pipeline(transaction=False)
        for i in range(count):
            pipe.set(f"unrelated:{i}", "x" * 64)
            if i % 10_000 == 9_999:
                pipe.execute()
        pipe.execute()
        return "pipelined SET"


def raw_members(client: redis.Redis, kind: str) -> list[tuple[str, Any]]:
    """The hand-written listing: live members with their decoded records, by join time."""
    members_key, meta_key = _keys(kind)
    pipe = client.pipeline(transaction=False)
    pipe.zrangebyscore(members_key, f"({int(time.time() * 1000)}", "+inf")
    pipe.hgetall(meta_key)
    live, records = pipe.execute()
    out = []
    for member in live:
        raw = records.get(member)
        record = json.loads(raw) if raw is not None else {}
        out.append((member.decode(), record))
    out.sort(key=lambda item: (item[1].get("joined", 0), item[0]))
    return out


def _time_calls(fn: Any, count: int) -> list[float]:
    perf = time.perf_counter
    out = []
    for _ in range(count):
        t0 = perf()
        fn()
        out.append((perf() - t0) * 1e6)
    return out


def run(cfg: Config) -> list[Figure]:
    calls = cfg.trials(200, 400)
    block = max(10, calls // 10)
    figures: list[Figure] = []
    medians: dict[tuple[int, int], float] = {}
    with redis_server() as server:
        client = server.client()
        cands: list[Candidate] = []
        try:
            for unrelated in UNRELATED:
                if unrelated:
                    how = populate(client, unrelated)
                    log(f"discovery: {client.dbsize()} keys in Redis ({how})")
                for members in MEMBERS:
                    kind = f"disc-{members}-{unrelated}"
                    write_members(client, kind, members - 1)
                    cand = Candidate(redis=server.url, kind=kind).start()
                    cands.append(cand)
                    assert len(cand.get_instances()) == members
                    assert len(raw_members(client, kind)) == members
                    log(f"discovery: {members} members, {unrelated} unrelated keys, {calls} calls")
                    _time_calls(cand.get_instances, 20)  # warm-up
                    _time_calls(lambda kind=kind: raw_members(client, kind), 20)
                    rr: list[float] = []
                    raw: list[float] = []
                    for i in range(max(1, calls // block)):
                        pair = [
                            (rr, cand.get_instances),
                            (raw, lambda kind=kind: raw_members(client, kind)),
                        ]
                        for into, fn in pair if i % 2 == 0 else pair[::-1]:
                            into.extend(_time_calls(fn, block))
                    checks = [Check("median", "<", 1000, "µs"), Check("p99", "<", 1000, "µs")]
                    figures.append(
                        Figure(
                            BENCH,
                            f"get_instances(), {members} members, {unrelated:,} other keys",
                            "µs",
                            rr,
                            baseline_name="raw ZRANGEBYSCORE+HGETALL",
                            baseline_samples=raw,
                            checks=checks if members == 3 else [],
                            extra={"members": members, "unrelated_keys": unrelated},
                        )
                    )
                    medians[(members, unrelated)] = figures[-1].stats.median
                    if members == 3:
                        pattern = f"{PREFIX}:{{{kind}}}:*"
                        keys_scan = _time_calls(lambda p=pattern: client.keys(p), 20)
                        figures.append(
                            Figure(
                                BENCH,
                                f"KEYS scan (node-raft-redis style), {unrelated:,} other keys",
                                "µs",
                                keys_scan,
                                notes="information: O(all keys in Redis)",
                                extra={"unrelated_keys": unrelated},
                            )
                        )
                    cand.stop()
        finally:
            stop_all(cands)
            client.close()
    for unrelated in UNRELATED:
        t3, t100, t1000 = (medians[(m, unrelated)] for m in MEMBERS)
        slope = (t1000 - t100) / (MEMBERS[2] - MEMBERS[1])
        predicted = t3 + (t1000 - t3) * (MEMBERS[1] - MEMBERS[0]) / (MEMBERS[2] - MEMBERS[0])
        linear = abs(t100 - predicted) <= 0.3 * t100
        figures.append(
            Figure(
                BENCH,
                f"get_instances() cost per member (100 → 1,000), {unrelated:,} other keys",
                "µs/member",
                [slope],
                custom_target="linear: t(100) within 30% of the line t(3) to t(1000)",
                custom_met=linear,
                notes=f"medians {t3:.0f} / {t100:.0f} / {t1000:.0f} µs at 3 / 100 / 1,000 "
                f"members; the line predicts {predicted:.0f} µs at 100",
                extra={"medians_us": [t3, t100, t1000], "predicted_100_us": predicted},
            )
        )
    return figures


def main() -> None:
    print(table(run(config_from_args(description=__doc__))))


if __name__ == "__main__":
    main()
