"""Redis Cluster events under a kind: primary killed, manual failover, resharding.

Three Candidates of one kind run in this process against a real Redis Cluster
of 3 primaries and 3 replicas on 127.0.0.1 (``tests/topologies/clusters.py``).
For each trial a fresh kind is elected, then, after a random delay of 0 to
``renew_interval`` (so the event lands anywhere in the renew cycle), one
cluster event hits the shard that serves the kind's slot:

``kill``
    SIGKILL the primary (a fresh cluster per trial); its replica is promoted
    by Redis' own failure detection (``cluster-node-timeout`` 1 s).
``kill-min1``
    The same with ``min_replicas=1``: the promoted replica has no replica to
    acknowledge the lease, so the killed node is started again and has to
    rejoin as its replica before a leader can be confirmed.
``pause``
    SIGSTOP the primary (a hung host: its connections stay open and nothing
    answers; a fresh cluster per trial); its replica is promoted as after a kill.
``manual``
    ``CLUSTER FAILOVER`` on the replica (one cluster for every trial).
``reshard``
    The kind's slot, with its keys, moves to another primary (one cluster).

Measured from the moment the event is triggered (``perf_counter``):

* **settle**: exactly one Candidate ``is_leader``, all agree on ``leader_id``,
  and the lease on the node that serves the slot *after* the event (read there
  directly; a node that does not serve the slot yet answers MOVED) starts with
  ``"<term> <leader id> "``;
* **redis**: when Redis itself is done, i.e. that node first answers for the
  slot (and, for information, when the helper's own wait returned:
  ``wait_for_new_owner`` / ``manual_failover`` / ``move_slot``);
* **flow**: the first message round trip (every follower ``message_to`` the
  leader returns 1, and the leader to every follower) that started after the
  new node served the slot; a prober thread tries round trips back to back
  from before the event, and every exception ``message_to`` raised to it is
  counted as a caller error;
* **two leaders**: a sampler thread reads ``is_leader`` of the three every
  1 ms from before the event until settle + 1 s; the time during which two or
  more said True at once (longest stretch and total).

Run from the repository root: ``.venv/bin/python bench/cluster_failover.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

REPO = Path(__file__).resolve().parent.parent
for _path in (REPO, REPO / "tests" / "topologies"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from clusters import ClusterSetup, cluster_binaries  # noqa: E402

from bench.common import Stats, exit_on_sigterm, log, wait_for  # noqa: E402
from raftredis import Candidate  # noqa: E402
from raftredis.testing import agreed_leader  # noqa: E402
from raftredis.timing import Timings  # noqa: E402

SCENARIOS = ("kill", "kill-min1", "pause", "manual", "reshard")
GROUP = 3
#: How long a trial may take to settle (and messages to flow) after the event.
TRIAL_TIMEOUT = 30.0
#: How long the sampler keeps going after the kind settled.
AFTER_SETTLE = 1.0
POLL = 0.002


def lease_key(kind: str) -> str:
    return f"raftredis:{{{kind}}}:leader"


def now_ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


# ------------------------------------------------------------------ threads


class LeaderSampler(threading.Thread):
    """Reads ``is_leader`` of every Candidate every ``interval``; sums the overlaps."""

    def __init__(self, group: list[Candidate], interval: float = 0.001) -> None:
        super().__init__(daemon=True, name="bench-sampler")
        self.group = group
        self.interval = interval
        self.halt = threading.Event()
        self.samples = 0
        self.overlap_total = 0.0  # seconds
        self.overlap_max = 0.0
        self.overlaps: list[tuple[float, float, int]] = []  # (start, seconds, max count)
        self.max_gap = 0.0  # the longest time between two samples (scheduler hiccups)
        self.none_max = 0.0  # the longest stretch with no Candidate leading
        self.none_total = 0.0

    def run(self) -> None:
        start: float | None = None
        none_since: float | None = None
        peak = 0
        last = time.perf_counter()
        while not self.halt.is_set():
            count = sum(1 for c in self.group if c.is_leader)
            now = time.perf_counter()
            self.samples += 1
            self.max_gap = max(self.max_gap, now - last)
            last = now
            if count >= 2:
                if start is None:
                    start, peak = now, count
                peak = max(peak, count)
            elif start is not None:
                self._close(start, now, peak)
                start = None
            if count == 0 and none_since is None:
                none_since = now
            elif count and none_since is not None:
                self.none_total += now - none_since
                self.none_max = max(self.none_max, now - none_since)
                none_since = None
            time.sleep(self.interval)
        if start is not None:
            self._close(start, time.perf_counter(), peak)

    def _close(self, start: float, end: float, peak: int) -> None:
        length = end - start
        self.overlaps.append((start, length, peak))
        self.overlap_total += length
        self.overlap_max = max(self.overlap_max, length)


@dataclass
class Probe:
    started: float
    ended: float
    ok: bool
    errors: list[str]


class MessageProber(threading.Thread):
    """Message round trips back to back: every follower → leader, leader → every follower."""

    def __init__(self, group: list[Candidate]) -> None:
        super().__init__(daemon=True, name="bench-prober")
        self.group = group
        self.halt = threading.Event()
        self.probes: list[Probe] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.perf_counter()
            errors: list[str] = []
            ok = self._round(errors)
            probe = Probe(started, time.perf_counter(), ok, errors)
            with self._lock:
                self.probes.append(probe)
            if not ok:
                time.sleep(0.005)
            else:
                time.sleep(0.002)

    def _round(self, errors: list[str]) -> bool:
        leaders = [c for c in self.group if c.is_leader]
        if len(leaders) != 1:
            return False
        leader = leaders[0]
        ok = True
        for follower in self.group:
            if follower is leader:
                continue
            for sender, receiver in ((follower, leader), (leader, follower)):
                try:
                    if sender.message_to(receiver.id, "ping") != 1:
                        ok = False
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    ok = False
        return ok

    def snapshot(self) -> list[Probe]:
        with self._lock:
            return list(self.probes)


# ------------------------------------------------------------------ a trial


@dataclass
class Trial:
    scenario: str
    kind: str
    ok: bool = False
    failure: str = ""
    settle_ms: float | None = None
    flow_ms: float | None = None
    redis_serves_ms: float | None = None  # the new node first answered for the slot
    redis_helper_ms: float | None = None  # the helper's wait returned
    steps_ms: dict[str, float] = field(default_factory=dict)
    leader_changed: bool | None = None
    term_before: int | None = None
    term_after: int | None = None
    two_leader_max_ms: float = 0.0
    two_leader_total_ms: float = 0.0
    two_leader_windows: list[dict[str, float]] = field(default_factory=list)
    sampler_samples: int = 0
    sampler_max_gap_ms: float = 0.0
    no_leader_max_ms: float = 0.0
    caller_errors: int = 0
    caller_error_span_ms: list[float] = field(default_factory=list)  # first, last error
    caller_error_kinds: dict[str, int] = field(default_factory=dict)
    failed_probes: int = 0
    probes: int = 0
    old_port: int = 0
    new_port: int = 0
    delay_in_cycle_s: float = 0.0


def _is_master(client: redis.Redis) -> bool:
    try:
        return bool(client.execute_command("ROLE")[0] in (b"master", "master"))
    except (redis.RedisError, OSError):
        return False


def lease_on(client: redis.Redis, kind: str) -> bytes | None:
    """The lease as ``client``'s node serves it; raises if the node does not serve the slot."""
    value = client.get(lease_key(kind))
    return value if isinstance(value, bytes) or value is None else str(value).encode()


def settled_on(group: list[Candidate], client: redis.Redis, kind: str) -> Candidate | None:
    leader = agreed_leader(group)
    if leader is None:
        return None
    try:
        value = lease_on(client, kind)
    except (redis.RedisError, OSError):
        return None
    expected = f"{leader.current_term} {leader.id} ".encode()
    return leader if value is not None and value.startswith(expected) else None


def run_trial(
    setup: ClusterSetup,
    scenario: str,
    ttl: float,
    min_replicas: int,
) -> Trial:
    kind = f"cf-{scenario}-{uuid.uuid4().hex[:8]}"
    key = lease_key(kind)
    trial = Trial(scenario, kind)
    timings = Timings.from_lease(ttl)
    group: list[Candidate] = []
    sampler = LeaderSampler(group)
    prober = MessageProber(group)
    new_client: redis.Redis | None = None
    old_client: redis.Redis | None = None
    try:
        for _ in range(GROUP):
            group.append(
                Candidate(redis=setup.url, kind=kind, lease_ttl=ttl, min_replicas=min_replicas)
            )
        for c in group:
            c.start()
        old_owner = setup.owner(key)
        old_client = old_owner.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        before = wait_for(lambda: settled_on(group, old_client, kind), 15.0, POLL)
        if before is None:
            trial.failure = "no settled leader before the event"
            return trial
        trial.term_before = before.current_term
        if scenario in ("kill", "kill-min1", "pause"):
            replicas = setup.replicas_of(old_owner)
            if len(replicas) != 1:
                trial.failure = f"the owner has {len(replicas)} replicas"
                return trial
            new_owner = replicas[0]
        elif scenario == "manual":
            new_owner = setup.replicas_of(old_owner)[0]
        else:
            new_owner = setup.other_primary(key)
        trial.old_port, trial.new_port = old_owner.port, new_owner.port
        new_client = new_owner.client(socket_timeout=0.5, socket_connect_timeout=0.5)

        sampler.start()
        prober.start()
        time.sleep(0.2)  # a few probes before the event
        delay = random.uniform(0.0, timings.renew_interval)
        trial.delay_in_cycle_s = delay
        time.sleep(delay)

        steps: dict[str, float] = {}
        failure: list[BaseException] = []
        t0 = time.perf_counter()

        def event() -> None:
            try:
                if scenario in ("kill", "kill-min1"):
                    old = setup.kill_owner(key)
                    steps["killed"] = now_ms(t0)
                    new = setup.wait_for_new_owner(key, old)
                    steps["wait_for_new_owner"] = now_ms(t0)
                    if new is not new_owner:
                        raise AssertionError(f"{new!r} took over, not {new_owner!r}")
                    if scenario == "kill-min1":
                        old.start()
                        steps["old_restarted"] = now_ms(t0)
                        if not wait_for(lambda: old in setup.replicas_of(new), 20.0, 0.05):
                            raise AssertionError("the old primary did not rejoin")
                        steps["old_rejoined_as_replica"] = now_ms(t0)
                elif scenario == "pause":
                    # Left frozen: the cluster is thrown away after the trial.
                    old_owner.pause()
                    steps["paused"] = now_ms(t0)
                    role = new_owner.client(socket_timeout=0.5, socket_connect_timeout=0.5)
                    try:
                        promoted = wait_for(lambda: _is_master(role), 30.0, 0.005)
                    finally:
                        role.close()
                    if not promoted:
                        raise AssertionError(f"{new_owner!r} was not promoted")
                    steps["promoted"] = now_ms(t0)
                elif scenario == "manual":
                    got = setup.manual_failover(key)
                    steps["manual_failover"] = now_ms(t0)
                    if got is not new_owner:
                        raise AssertionError(f"{got!r} took over, not {new_owner!r}")
                else:
                    setup.move_slot(key, new_owner)
                    steps["move_slot"] = now_ms(t0)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=event, daemon=True, name="bench-event")
        thread.start()

        # Redis' part: the new node answers for the slot (no MOVED, no error).
        def serves() -> bool:
            try:
                lease_on(new_client, kind)
            except (redis.RedisError, OSError):
                return False
            return True

        if not wait_for(serves, TRIAL_TIMEOUT, 0.005):
            thread.join(TRIAL_TIMEOUT)
            trial.failure = f"the new node never served the slot {failure or ''}"
            return trial
        trial.redis_serves_ms = now_ms(t0)
        t_serves = time.perf_counter()
        leader = wait_for(lambda: settled_on(group, new_client, kind), TRIAL_TIMEOUT, POLL)
        if leader is None:
            thread.join(TRIAL_TIMEOUT)
            states = [(c.id[:6], c.is_leader, (c.leader_id or "-")[:6]) for c in group]
            trial.failure = f"not settled within {TRIAL_TIMEOUT} s: {states} {failure or ''}"
            return trial
        t_settled = time.perf_counter()
        trial.settle_ms = (t_settled - t0) * 1000.0
        trial.leader_changed = leader is not before
        trial.term_after = leader.current_term

        def flowed() -> float | None:
            for probe in prober.snapshot():
                if probe.ok and probe.started >= t_serves:
                    return probe.ended
            return None

        ended = wait_for(flowed, TRIAL_TIMEOUT, 0.005)
        if ended is not None:
            trial.flow_ms = (ended - t0) * 1000.0
        left = t_settled + AFTER_SETTLE - time.perf_counter()
        if left > 0:
            time.sleep(left)
        thread.join(TRIAL_TIMEOUT)
        sampler.halt.set()
        prober.halt.set()
        sampler.join(5)
        prober.join(10)
        trial.steps_ms = dict(steps)
        trial.redis_helper_ms = max(steps.values()) if steps else None
        trial.two_leader_max_ms = sampler.overlap_max * 1000.0
        trial.two_leader_total_ms = sampler.overlap_total * 1000.0
        trial.two_leader_windows = [
            {"at_ms": (s - t0) * 1000.0, "ms": d * 1000.0, "leaders": n}
            for s, d, n in sampler.overlaps
        ]
        trial.no_leader_max_ms = sampler.none_max * 1000.0
        trial.sampler_samples = sampler.samples
        trial.sampler_max_gap_ms = sampler.max_gap * 1000.0
        probes = [p for p in prober.snapshot() if p.started >= t0]
        trial.probes = len(probes)
        trial.failed_probes = sum(1 for p in probes if not p.ok)
        erred = [p for p in probes if p.errors]
        if erred:
            trial.caller_error_span_ms = [
                (erred[0].started - t0) * 1000.0,
                (erred[-1].ended - t0) * 1000.0,
            ]
        for p in probes:
            for text in p.errors:
                trial.caller_errors += 1
                name = text.split(":", 1)[0]
                trial.caller_error_kinds[name] = trial.caller_error_kinds.get(name, 0) + 1
        if failure:
            trial.failure = f"event: {failure[0]!r}"
            return trial
        if trial.flow_ms is None:
            trial.failure = "messages did not flow again"
            return trial
        trial.ok = True
        return trial
    finally:
        sampler.halt.set()
        prober.halt.set()
        for c in group:
            with contextlib.suppress(Exception):
                c.stop(timeout=2.0)
        for client in (new_client, old_client):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()


# ------------------------------------------------------------------ driver


def describe_trial(t: Trial) -> str:
    if not t.ok and t.settle_ms is None:
        return f"{t.scenario}: FAILED {t.failure}"
    steps = ", ".join(f"{k} {v:.0f}" for k, v in t.steps_ms.items())
    return (
        f"{t.scenario}: settle {t.settle_ms:.0f} ms, flow "
        f"{t.flow_ms if t.flow_ms is None else round(t.flow_ms)} ms, redis serves "
        f"{t.redis_serves_ms:.0f} ms ({steps}), leader changed {t.leader_changed}, "
        f"term +{(t.term_after or 0) - (t.term_before or 0)}, "
        f"no leader {t.no_leader_max_ms:.0f} ms, two-leader {t.two_leader_total_ms:.1f} ms, "
        f"caller errors {t.caller_errors} {t.caller_error_kinds or ''} "
        f"{[round(x) for x in t.caller_error_span_ms]}"
        + (f" FAILED {t.failure}" if not t.ok else "")
    )


def run_scenario(binaries: tuple[str, str], scenario: str, trials: int, ttl: float) -> list[Trial]:
    results: list[Trial] = []
    min_replicas = 1 if scenario == "kill-min1" else 0
    if scenario.startswith("kill") or scenario == "pause":
        for i in range(trials):
            with ClusterSetup(*binaries) as setup:
                trial = run_trial(setup, scenario, ttl, min_replicas)
            log(f"  {i + 1}/{trials} {describe_trial(trial)}")
            results.append(trial)
        return results
    with ClusterSetup(*binaries) as setup:
        for i in range(trials):
            trial = run_trial(setup, scenario, ttl, min_replicas)
            log(f"  {i + 1}/{trials} {describe_trial(trial)}")
            results.append(trial)
    return results


def summary(scenario: str, trials: list[Trial]) -> dict[str, Any]:
    settle = Stats.of(t.settle_ms for t in trials if t.settle_ms is not None)
    flow = Stats.of(t.flow_ms for t in trials if t.flow_ms is not None)
    serves = Stats.of(t.redis_serves_ms for t in trials if t.redis_serves_ms is not None)
    helper = Stats.of(t.redis_helper_ms for t in trials if t.redis_helper_ms is not None)
    raft = Stats.of(
        t.settle_ms - t.redis_serves_ms
        for t in trials
        if t.settle_ms is not None and t.redis_serves_ms is not None
    )
    changes = [
        t.term_after - t.term_before
        for t in trials
        if t.term_after is not None and t.term_before is not None
    ]
    return {
        "scenario": scenario,
        "trials": len(trials),
        "ok": sum(1 for t in trials if t.ok),
        "settle_ms": settle.as_dict(),
        "flow_ms": flow.as_dict(),
        "redis_serves_ms": serves.as_dict(),
        "redis_helper_ms": helper.as_dict(),
        "raftredis_after_redis_ms": raft.as_dict(),
        "leader_changed": sum(1 for t in trials if t.leader_changed),
        "term_changes": changes,
        "no_leader_max_ms": Stats.of(t.no_leader_max_ms for t in trials).as_dict(),
        "two_leader_max_ms": max((t.two_leader_max_ms for t in trials), default=0.0),
        "two_leader_total_ms": sum(t.two_leader_total_ms for t in trials),
        "caller_errors": sum(t.caller_errors for t in trials),
        "caller_error_kinds": _merge(t.caller_error_kinds for t in trials),
        "sampler_max_gap_ms": max((t.sampler_max_gap_ms for t in trials), default=0.0),
        "failures": [t.failure for t in trials if not t.ok],
    }


def _merge(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _ms(stats: dict[str, float]) -> str:
    if not stats["n"]:
        return "-"
    return f"{stats['median']:.0f} / {stats['max']:.0f}"


def _terms(changes: list[int]) -> str:
    """Terms are the server's clock in ms (or the old term + 1): say how many rose."""
    if not changes:
        return "-"
    higher = [c for c in changes if c > 0]
    text = f"higher {len(higher)}/{len(changes)}"
    if higher:
        text += f" (+{min(higher)}..+{max(higher)})"
    if any(c < 0 for c in changes):
        text += " LOWER!"
    return text


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | trials (ok) | settle median / max ms | messages flow median / max ms "
        "| Redis serves median / max ms | raftredis after Redis median / max ms "
        "| leader changed | term change | no-leader median / max ms "
        "| two-leader max ms (total) | caller errors |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        errors = str(r["caller_errors"])
        if r["caller_error_kinds"]:
            errors += " (" + ", ".join(f"{k} {v}" for k, v in r["caller_error_kinds"].items()) + ")"
        lines.append(
            f"| {r['scenario']} | {r['trials']} ({r['ok']}) | {_ms(r['settle_ms'])} "
            f"| {_ms(r['flow_ms'])} | {_ms(r['redis_serves_ms'])} "
            f"| {_ms(r['raftredis_after_redis_ms'])} "
            f"| {r['leader_changed']}/{r['trials']} | {_terms(r['term_changes'])} "
            f"| {_ms(r['no_leader_max_ms'])} "
            f"| {r['two_leader_max_ms']:.1f} ({r['two_leader_total_ms']:.1f}) | {errors} |"
        )
    return "\n".join(lines)


def redis_version(binary: str) -> str:
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip()


def main(argv: list[str] | None = None) -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per scenario (5)")
    parser.add_argument("--lease-ttl", type=float, default=2.0, help="lease_ttl in s (2.0)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (all)",
    )
    parser.add_argument(
        "--out", default=str(REPO / ".bench" / "cluster_failover.json"), help="JSON report"
    )
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {SCENARIOS}")
    binaries = cluster_binaries()
    version = redis_version(binaries[0])
    machine = {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }
    log(f"redis {version} ({binaries[0]}), nproc {machine['nproc']}, lease_ttl {args.lease_ttl}")
    started = time.monotonic()
    all_trials: dict[str, list[Trial]] = {}
    rows = []
    for scenario in scenarios:
        log(f"{scenario}: {args.trials} trials")
        trials = run_scenario(binaries, scenario, args.trials, args.lease_ttl)
        all_trials[scenario] = trials
        rows.append(summary(scenario, trials))
    machine["loadavg_end"] = os.getloadavg()
    elapsed = time.monotonic() - started
    print(
        f"Redis {version}, nproc {machine['nproc']}, {machine['platform']}, "
        f"lease_ttl {args.lease_ttl:g} s, {elapsed:.0f} s total"
    )
    print()
    print(markdown(rows))
    report = {
        "benchmark": "cluster_failover",
        "redis_version": version,
        "redis_server": binaries[0],
        "machine": machine,
        "lease_ttl": args.lease_ttl,
        "trials_per_scenario": args.trials,
        "elapsed_s": elapsed,
        "summary": rows,
        "trials": {s: [asdict(t) for t in ts] for s, ts in all_trials.items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
