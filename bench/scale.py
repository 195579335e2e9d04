"""Scale: hundreds to a thousand instances of one kind, spread over child processes.

Each child process imports raftredis, reports its RSS and thread count, and
waits. On "go" (sent to all children at once; that moment is time zero) each
starts its share of Candidates (``lease_ttl`` 3 s) from a small thread pool,
so the whole kind starts at about the same time, as in a deployment. Each
child reports (by ``time.time()``, one clock on this machine) when all its
Candidates agree on one leader; the figure is the latest of those, once
every child names the same leader and exactly one Candidate leads.

Then, at steady state: Redis CPU (``used_cpu_sys + used_cpu_user`` deltas, in
% of one core) against the same server idle before the start (the
baseline), the CPU of the client processes, commands per second, and what one
Candidate costs: RSS, threads, Redis connections (deltas divided by the
count). Redis runs with ``--maxclients 20000``; children raise their soft
``RLIMIT_NOFILE`` to the hard limit.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import redis

from raftredis import Candidate
from raftredis.timing import Timings

from .common import (
    Check,
    Child,
    Config,
    Figure,
    children,
    command_calls,
    commands,
    config_from_args,
    connected_clients,
    emit,
    log,
    raise_nofile,
    redis_cpu_seconds,
    redis_server,
    table,
)
from .redis_cost import budget

BENCH = "scale"
LEASE_TTL = 3.0
START_THREADS = 8
MODEL_THREADS = 4  # heartbeat, control listener, message listener, dispatch
MODEL_CONNECTIONS = 3  # commands, control pub/sub, messages pub/sub (publish: on first send)


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def child_main(url: str, kind: str, count: int, lease_ttl: float, threads: int) -> None:
    """Child: start ``count`` Candidates on "go", report agreement, answer checks."""
    try:
        nofile = raise_nofile()
        emit("ready", rss=_rss(), threads=threading.active_count(), nofile=nofile, pid=os.getpid())
        cmds = commands()
        next(cmds)  # "go"
        cands = [Candidate(redis=url, kind=kind, lease_ttl=lease_ttl) for _ in range(count)]
        elected: list[tuple[float, int]] = []
        for c in cands:
            c.on("elected", lambda sender, term, **extra: elected.append((time.time(), term)))
        durations: list[float] = []

        def start(c: Candidate) -> None:
            t0 = time.perf_counter()
            c.start(timeout=120)
            durations.append(time.perf_counter() - t0)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(start, cands))
        started = time.time()
        deadline = time.monotonic() + 120
        leader: str | None = None
        while time.monotonic() < deadline:
            ids = {c.leader_id for c in cands}
            if len(ids) == 1 and None not in ids:
                leader = ids.pop()
                break
            time.sleep(0.005)
        emit(
            "agreed",
            t=time.time() if leader else None,
            leader=leader,
            started=started,
            elected=elected,
            durations=durations,
            leading=[c.id for c in cands if c.is_leader],
            rss=_rss(),
            threads=threading.active_count(),
        )
        for cmd in cmds:
            if cmd.get("cmd") == "check":
                emit(
                    "check",
                    leaders=sorted({str(c.leader_id) for c in cands}),
                    leading=[c.id for c in cands if c.is_leader],
                    terms=sorted({c.current_term for c in cands}),
                )
            elif cmd.get("cmd") == "quit":
                break
    except Exception:
        emit("error", text=traceback.format_exc())
    # The parent kills this process: skip 100 graceful stops.
    sys.stdout.flush()
    os._exit(0)


def _publishes(client: redis.Redis) -> int:
    """PUBLISH calls so far, from scripts and clients (notices and messages)."""
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_publish", {}).get("calls", 0))


def _cpu_of(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def run(cfg: Config, sizes: tuple[int, ...] | None = None) -> list[Figure]:
    if sizes is None:
        sizes = cfg.pick((100,), (100, 500, 1000))
    window = cfg.window(8.0, 20.0)
    idle_window = cfg.window(3.0, 6.0)
    step = 2.0
    timings = Timings.from_lease(LEASE_TTL)
    leader_model, follower_model = budget(timings)
    figures: list[Figure] = []
    for n in sizes:
        per = 50 if n <= 100 else 100
        nproc = math.ceil(n / per)
        kind = f"scale-{n}"
        log(f"scale: {n} instances in {nproc} processes")
        with redis_server() as server, children() as procs:
            client = server.client()
            try:
                # Baseline: the same server, idle, before anything connects.
                idle: list[float] = []
                c0, t0 = redis_cpu_seconds(client), time.monotonic()
                for _ in range(max(1, round(idle_window / step))):
                    time.sleep(step)
                    c1, t1 = redis_cpu_seconds(client), time.monotonic()
                    idle.append((c1 - c0) / (t1 - t0) * 100)
                    c0, t0 = c1, t1
                shares = [per] * (n // per) + ([n % per] if n % per else [])
                for share in shares:
                    procs.append(
                        Child(
                            "bench.scale",
                            [
                                "child",
                                server.url,
                                kind,
                                str(share),
                                repr(LEASE_TTL),
                                str(START_THREADS),
                            ],
                        )
                    )
                ready = [p.expect("ready", timeout=120) for p in procs]
                clients_before = connected_clients(client)
                pids = [p.pid for p in procs]
                cpu_go, redis_go, pub_go = (
                    _cpu_of(pids),
                    redis_cpu_seconds(client),
                    _publishes(client),
                )
                start = time.time()
                for p in procs:
                    p.send({"cmd": "go"})
                agreed = [p.expect("agreed", timeout=300) for p in procs]
                startup_client_cpu = _cpu_of(pids) - cpu_go
                startup_redis_cpu = redis_cpu_seconds(client) - redis_go
                startup_publishes = _publishes(client) - pub_go
                leaders = {a["leader"] for a in agreed}
                leading = [i for a in agreed for i in a["leading"]]
                if None in leaders or len(leaders) != 1:
                    log(f"scale: no agreement: leaders {leaders}, leading {leading}")
                all_agree = max((a["t"] or math.inf) for a in agreed) - start
                one_leader = len(leaders) == 1 and None not in leaders and len(leading) == 1
                elected = [e for a in agreed for e in a["elected"]]
                first_elected = min(t for t, _ in elected) - start if elected else math.nan
                started_all = max(a["started"] for a in agreed) - start
                durations = [d * 1000 for a in agreed for d in a["durations"]]
                term_raw = client.get(f"raftredis:{{{kind}}}:term")
                elections = int(term_raw) if term_raw else 0
                clients_after = connected_clients(client)
                rss = sum(a["rss"] - r["rss"] for a, r in zip(agreed, ready)) / n
                threads = sum(a["threads"] - r["threads"] for a, r in zip(agreed, ready)) / n
                conns = (clients_after - clients_before) / n
                log(
                    f"scale: {n} agreed after {all_agree:.2f} s ({elections} elections); "
                    f"steady-state window {window:g} s"
                )
                time.sleep(2.0)
                redis_pct: list[float] = []
                client_pct: list[float] = []
                c0, k0, m0, t0 = (
                    redis_cpu_seconds(client),
                    _cpu_of(pids),
                    command_calls(client),
                    time.monotonic(),
                )
                first = (m0, t0)
                for _ in range(max(1, round(window / step))):
                    time.sleep(step)
                    c1, k1, m1, t1 = (
                        redis_cpu_seconds(client),
                        _cpu_of(pids),
                        command_calls(client),
                        time.monotonic(),
                    )
                    redis_pct.append((c1 - c0) / (t1 - t0) * 100)
                    client_pct.append((k1 - k0) / (t1 - t0) * 100)
                    c0, k0, m0, t0 = c1, k1, m1, t1
                cmd_rate = (m0 - first[0]) / (t0 - first[1]) / n
                for p in procs:
                    p.send({"cmd": "check"})
                checks = [p.expect("check", timeout=60) for p in procs]
                end_leaders = {x for c in checks for x in c["leaders"]}
                end_leading = [x for c in checks for x in c["leading"]]
                stable = len(end_leaders) == 1 and len(end_leading) == 1
                end_terms = sorted({x for c in checks for x in c["terms"]})
            finally:
                client.close()
        limit = 2 * LEASE_TTL
        tag = f"{n} instances"
        figures += [
            Figure(
                BENCH,
                f"start → one leader, all agree, {tag}",
                "s",
                [all_agree],
                baseline_name="lease_ttl",
                baseline_samples=[LEASE_TTL],
                custom_target=f"<= {limit:g} s (2 x lease_ttl), exactly one leader",
                custom_met=one_leader and all_agree <= limit,
                notes=(
                    f"first leader elected after {first_elected:.3f} s; all {n} started after "
                    f"{started_all:.2f} s; {elections} election(s); "
                    f"{nproc} processes x {START_THREADS} start threads; leaders seen "
                    f"{sorted(str(x) for x in leaders)}, leading {len(leading)}"
                ),
                extra={
                    "instances": n,
                    "processes": nproc,
                    "first_elected_s": first_elected,
                    "started_all_s": started_all,
                    "elections": elections,
                    "one_leader": one_leader,
                },
            ),
            Figure(
                BENCH,
                f"CPU spent from start to agreement, {tag}",
                "cpu-s",
                [startup_client_cpu],
                baseline_name="Redis",
                baseline_samples=[startup_redis_cpu],
                notes=f"client processes together (baseline column: Redis) over "
                f"{all_agree:.2f} s; {startup_publishes} PUBLISH calls (each joined notice "
                "goes to every instance already subscribed: O(n^2) deliveries)",
                extra={
                    "client_cpu_s": startup_client_cpu,
                    "redis_cpu_s": startup_redis_cpu,
                    "publishes": startup_publishes,
                },
            ),
            Figure(
                BENCH,
                f"start() duration, {tag}",
                "ms",
                durations,
                notes="each Candidate's start(), while the whole kind starts",
            ),
            Figure(
                BENCH,
                f"Redis CPU at steady state, {tag}",
                "% core",
                redis_pct,
                baseline_name="idle Redis",
                baseline_samples=idle,
                checks=[Check("mean", "<", 25, "%")],
                notes=f"{len(redis_pct)} x {step:g} s windows",
            ),
            Figure(
                BENCH,
                f"client CPU per Candidate, {tag}",
                "% core",
                [p / n for p in client_pct],
                notes=f"all {nproc} child processes together: mean "
                f"{sum(client_pct) / len(client_pct):.0f}% of one core "
                f"(this machine has {os.cpu_count()} cores)",
                extra={"client_total_pct": client_pct},
            ),
            Figure(
                BENCH,
                f"commands/s per instance, {tag}",
                "cmd/s",
                [cmd_rate],
                baseline_name="budget model",
                baseline_samples=[(leader_model + (n - 1) * follower_model) / n],
            ),
            Figure(
                BENCH,
                f"RSS per Candidate, {tag}",
                "KiB",
                [rss / 1024],
            ),
            Figure(
                BENCH,
                f"threads per Candidate, {tag}",
                "",
                [threads],
                baseline_name="model",
                baseline_samples=[MODEL_THREADS],
            ),
            Figure(
                BENCH,
                f"Redis connections per Candidate, {tag}",
                "",
                [conns],
                baseline_name="model",
                baseline_samples=[MODEL_CONNECTIONS],
            ),
            Figure(
                BENCH,
                f"still one leader after the window, {tag}",
                "terms",
                [float(len(end_terms))],
                custom_target="one leader, all agree, no new term",
                custom_met=stable and end_terms == [elections],
                notes=f"terms seen {end_terms}; leaders {len(end_leaders)}, "
                f"leading {len(end_leading)}",
            ),
        ]
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        url, kind, count, ttl, threads = sys.argv[2:7]
        child_main(url, kind, int(count), float(ttl), int(threads))
        return
    argv = sys.argv[1:]
    sizes = None
    if "--sizes" in argv:  # e.g. --sizes 100,200 (diagnostics)
        i = argv.index("--sizes")
        sizes = tuple(int(x) for x in argv[i + 1].split(","))
        del argv[i : i + 2]
    print(table(run(config_from_args(argv, description=__doc__), sizes)))


if __name__ == "__main__":
    main()
