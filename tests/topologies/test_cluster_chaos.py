"""Chaos on a real Redis Cluster: the chaos promises across shard faults.

The machinery of ``tests/chaos`` (real worker processes, one
:class:`raftredis.Candidate` each, JSON-lines logs, the checker) run against a
3-primary/3-replica Redis 7 cluster (:class:`clusters.ClusterSetup`) instead of
one ``redis-server``: the workers get ``redis+cluster://`` URLs and follow the
primary that serves their kind's hash slot. Faults, in turn:

* ``primary_kill``: SIGKILL of the primary serving the kind's slot. It is a Redis
  outage for the kind (``outage_start`` just before the kill) until a replica
  promotes itself (``outage_end``, and a converging ``primary_promoted`` fault,
  at the start of the last ROLE poll that still found the replica a replica: no
  leader may begin before that, and the old leader must stop believing within
  renew_deadline of the kill). The killed node is started again (``node_rejoin``)
  and rejoins as a replica, so that the cluster is 3+3 again before the next fault;
* ``cluster_failover``: ``CLUSTER FAILOVER`` on the replica of the kind's shard;
* ``reshard``: the kind's slot, with its keys, moved to another primary;
* ``sigkill``: SIGKILL of the leader worker, and a replacement spawned.

After each fault there must be exactly one leader again (Redis' lease and the
logs agree) within a generous deadline. At the end the checker's verdict must
hold: no overlapping leaderships, no term regression or shared term, no dead
thread, no unexpected exit, no leadership inside an outage; and the leaderless
time of each round must stay within its bound. ``CHAOS_SCALE=short`` (default)
injects two faults of each kind per lease (about 40 s in all); ``full`` ten. Reports go to
``$CHAOS_REPORT_DIR/cluster-chaos-ttl<lease_ttl>.json``.

Skipped, with the reason, without redis-server 7.0+ and redis-cli.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from clusters import ClusterSetup

from raftredis.store import LeaseRecord, parse_lease
from raftredis.testing import RedisServer

# tests/chaos is not a package: its modules import each other by their bare names.
CHAOS_DIR = Path(__file__).resolve().parents[1] / "chaos"
if str(CHAOS_DIR) not in sys.path:
    sys.path.insert(0, str(CHAOS_DIR))

import harness  # noqa: E402
from chaos_scale import scaled  # noqa: E402
from harness import ChaosCluster, no_leftovers  # noqa: E402
from scenario_steps import leader_term  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The fault kinds of a round, chosen in turn.
ROUND_KINDS = ("primary_kill", "cluster_failover", "reshard", "sigkill")
#: How long a round may wait for exactly one leader again (generous: a loaded CI box).
LEADER_DEADLINE = 30.0
#: How long a killed primary's replica may take to promote itself (node timeout 1 s).
PROMOTION_DEADLINE = 20.0
#: A node to be promoted, or a rejoined one, is polled this often (seconds).
ROLE_POLL = 0.002


def leaderless_bound(kind: str, lease_ttl: float) -> float:
    """The longest leaderless gap a round of ``kind`` may have.

    sigkill: the dead leader's lease runs out (lease_ttl), then the next poll
    takes it (as in the single-server scenario s1), plus 1 s of slack.
    primary_kill: the node timeout (1 s) and the replica's election (up to about
    2 s) before a primary serves the slot again, the lease that the promoted
    replica holds (lease_ttl), plus 3 s of slack for a loaded box.
    cluster_failover and reshard: the leader may miss renewals while the slot
    moves and demote itself; the lease then runs out (lease_ttl), plus 2 s.
    """
    slack = {"sigkill": 1.0, "primary_kill": 6.0, "cluster_failover": 2.0, "reshard": 2.0}
    return lease_ttl + slack[kind]


class _ClusterAsRedis:
    """What :class:`harness.ChaosCluster` needs of its ``redis`` attribute: a URL
    for the workers, a port for the report, and ``stop()`` at the teardown."""

    def __init__(self, setup: ClusterSetup) -> None:
        self.setup = setup
        self.url = ""

    @property
    def port(self) -> int:
        return self.setup.servers[0].port

    def stop(self) -> None:
        self.setup.stop()


class ClusterChaos(ChaosCluster):
    """A :class:`~harness.ChaosCluster` whose workers run against a Redis Cluster.

    ``admin`` and :meth:`lease` read the primary serving the kind's slot (the
    lease key is ``raftredis:{<kind>}:leader``), following MOVED replies and
    asking the cluster again after a connection error.
    """

    def __init__(self, scenario: str, *, setup: ClusterSetup, **kwargs: Any) -> None:
        super().__init__(scenario, **kwargs)
        self.setup = setup
        self.redis = _ClusterAsRedis(setup)  # type: ignore[assignment]
        self._owner_clients: dict[int, redis.Redis] = {}
        self._owner_port: int | None = None

    def _start_redis(self) -> dict[str, Any]:
        self.setup.start()
        self.note_nodes()
        self.redis.url = self.setup.url
        owner = self.setup.owner(self.keys.leader)
        self._owner_port = owner.port
        self._admin = self._client(owner.port)
        return {
            "redis_port": owner.port,
            "redis_url": self.setup.url,
            "cluster_ports": [s.port for s in self.setup.servers],
            "lease_key": self.keys.leader,
            "slot": self.setup.slot_of(self.keys.leader),
        }

    def note_nodes(self) -> None:
        """Register the running nodes with the harness' check for leftover processes."""
        for server in self.setup.live_servers():
            harness._spawned[server.pid] = "redis-server"

    # -- reading the lease from the slot's primary ---------------------------

    def _client(self, port: int) -> redis.Redis:
        client = self._owner_clients.get(port)
        if client is None:
            client = self.setup.server(port).client(socket_timeout=1.0, socket_connect_timeout=1.0)
            self._owner_clients[port] = client
        return client

    def _forget_owner(self) -> None:
        self._owner_port = None

    def _current_owner_port(self) -> int | None:
        if self._owner_port is None:
            try:
                self._owner_port = self.setup.owner(self.keys.leader).port
            except LookupError:
                return None
        return self._owner_port

    @property
    def admin(self) -> redis.Redis:
        """A plain client to the primary that serves the kind's slot (as last known)."""
        port = self._current_owner_port()
        if port is None:
            raise RuntimeError("no node serves the kind's slot now")
        self._admin = self._client(port)
        return self._admin

    def lease(self) -> LeaseRecord | None:
        """The lease as the slot's primary holds it now (None: no lease, or no primary)."""
        for _ in range(3):
            port = self._current_owner_port()
            if port is None:
                return None
            try:
                return parse_lease(self._client(port).get(self.keys.leader))
            except redis.ResponseError as exc:
                words = str(exc).split()
                if words and words[0] in ("MOVED", "ASK") and len(words) == 3:
                    self._owner_port = int(words[2].rsplit(":", 1)[1])
                    continue
                self._forget_owner()
                return None
            except redis.RedisError:
                self._forget_owner()
                return None
        return None

    def _teardown(self) -> None:
        for client in self._owner_clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._owner_clients.clear()
        self._admin = None
        super()._teardown()

    # -- cluster faults ------------------------------------------------------

    def wait_whole(self, timeout: float = 30.0) -> None:
        """Wait until the cluster is 3+3 again (ClusterSetup's own start-up check)."""
        self.setup.wait_whole(timeout)

    def kill_primary(self) -> dict[str, Any]:
        """SIGKILL the kind's primary: an outage until its replica promotes itself;
        then start the killed node again and wait until it has rejoined as a replica."""
        key = self.keys.leader
        old = self.setup.owner(key)
        replicas = self.setup.replicas_of(old)
        assert replicas, f"{old!r} has no replica"
        probes = {
            r.port: r.client(socket_timeout=0.5, socket_connect_timeout=0.5) for r in replicas
        }
        try:
            for probe in probes.values():
                probe.ping()
            t_kill = self.fault("primary_kill", f"redis:{old.port}", converge=False)
            self.outage_start()
            old.kill()
            promoted, t_end = self._wait_promotion(probes, old)
        finally:
            for probe in probes.values():
                with contextlib.suppress(Exception):
                    probe.close()
        # The outage ends, and the converging fault is noted, at the start of the
        # last ROLE call that still found the replica a replica: it was promoted after.
        self.log.write("outage_end", t=t_end)
        self.log.write(
            "fault",
            t=t_end,
            kind="primary_promoted",
            target=f"redis:{promoted}",
            converge=True,
            detected=time.time(),
        )
        new = self.setup.wait_for_new_owner(key, old, timeout=PROMOTION_DEADLINE)
        self._forget_owner()
        t_rejoin = self.fault("node_rejoin", f"redis:{old.port}", converge=False)
        old.start()
        self.note_nodes()
        self.wait_whole()
        assert self.setup.owner(key) is new, "the slot moved again while the node rejoined"
        assert old in self.setup.replicas_of(new), f"{old!r} did not rejoin under {new!r}"
        return {
            "old_primary": old.port,
            "new_primary": new.port,
            "promoted_after": t_end - t_kill,
            "whole_after_rejoin": time.time() - t_rejoin,
        }

    def _wait_promotion(
        self, probes: dict[int, redis.Redis], old: RedisServer
    ) -> tuple[int, float]:
        """Poll ROLE on the replicas until one says master; return its port and the
        start of the last call that found it a replica."""
        last_replica = {port: time.time() for port in probes}
        deadline = time.monotonic() + PROMOTION_DEADLINE
        while time.monotonic() < deadline:
            for port, probe in probes.items():
                sent = time.time()
                try:
                    role = probe.execute_command("ROLE")[0]
                except redis.RedisError:
                    continue
                if role in (b"master", "master"):
                    return port, last_replica[port]
                last_replica[port] = sent
            time.sleep(ROLE_POLL)
        raise AssertionError(
            f"no replica of {old.port} promoted itself within {PROMOTION_DEADLINE} s: "
            f"{self.setup.owners_of(self.setup.slot_of(self.keys.leader))}"
        )

    def failover(self) -> dict[str, Any]:
        """CLUSTER FAILOVER on the replica of the kind's primary (the old primary
        becomes its replica: the cluster stays 3+3)."""
        key = self.keys.leader
        old = self.setup.owner(key)
        self.fault("cluster_failover", f"redis:{old.port}", converge=False)
        new = self.setup.manual_failover(key)
        self._forget_owner()
        self.wait_whole()
        return {"old_primary": old.port, "new_primary": new.port}

    def reshard(self) -> dict[str, Any]:
        """Move the kind's slot, with its keys, to another primary."""
        key = self.keys.leader
        old = self.setup.owner(key)
        target = self.setup.other_primary(key)
        self.fault("reshard", f"redis:{old.port}", converge=False, to=f"redis:{target.port}")
        self.setup.move_slot(key, target)
        self._forget_owner()
        return {"old_primary": old.port, "new_primary": target.port}


def chaos_round(c: ClusterChaos, kind: str) -> dict[str, Any]:
    """One fault of ``kind``, then exactly one leader again, with a term no lower."""
    before = c.wait_for_one_leader(timeout=LEADER_DEADLINE)
    term = leader_term(before)
    t0 = time.time()
    if kind == "primary_kill":
        info = c.kill_primary()
    elif kind == "cluster_failover":
        info = c.failover()
    elif kind == "reshard":
        info = c.reshard()
    elif kind == "sigkill":
        c.restart(before, signal.SIGKILL, wait=False)
        info = {}
    else:
        raise ValueError(kind)
    after = c.wait_for_one_leader(
        timeout=LEADER_DEADLINE, other_than=before if kind == "sigkill" else None
    )
    after_term = leader_term(after)
    assert after_term >= term, f"term {after_term} after {kind}, {term} before"
    if kind == "sigkill":
        assert after_term > term
        c.wait_started(c.live())
    return {
        "kind": kind,
        "t": t0,
        "t_end": time.time(),
        "term_before": term,
        "term_after": after_term,
        "same_leader": after is before,
        **info,
    }


def leaderless_by_round(
    intervals: list[Any], rounds: list[dict[str, Any]], window_end: float
) -> list[dict[str, Any]]:
    """For each round, its longest leaderless gap and its total leaderless time, from
    the round's fault to the next round's (the last one: to the teardown)."""
    out = []
    for i, rnd in enumerate(rounds):
        start = rnd["t"]
        end = rounds[i + 1]["t"] if i + 1 < len(rounds) else window_end
        covered = start
        longest = total = 0.0
        for iv in intervals:  # sorted by begin
            if iv.end <= covered:
                continue
            if iv.begin >= end:
                break
            if iv.begin > covered:
                gap = iv.begin - covered
                longest, total = max(longest, gap), total + gap
            covered = max(covered, iv.end)
        if covered < end:
            gap = end - covered
            longest, total = max(longest, gap), total + gap
        out.append({"kind": rnd["kind"], "t": start, "longest": longest, "total": total})
    return out


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    with no_leftovers():
        yield


@pytest.mark.timeout(scaled(150, 1200))
@pytest.mark.parametrize("lease_ttl", [1.0, 2.0], ids=["ttl1", "ttl2"])
def test_cluster_chaos(tmp_path: Path, binaries: tuple[str, str], lease_ttl: float) -> None:
    """Kill the slot's primary, fail it over, reshard it, kill the leader, in turn:
    one leader after each fault; overall no overlap, no term regression, no dead
    thread, no leadership inside an outage, bounded leaderless time."""
    faults = scaled(2 * len(ROUND_KINDS), 10 * len(ROUND_KINDS))
    kinds = [ROUND_KINDS[i % len(ROUND_KINDS)] for i in range(faults)]
    setup = ClusterSetup(*binaries)
    with ClusterChaos(
        f"cluster-chaos-ttl{lease_ttl:g}",
        setup=setup,
        run_dir=tmp_path / "run",
        n=5,
        lease_ttl=lease_ttl,
        kind="cluster-chaos",
    ) as c:
        rounds = [chaos_round(c, kind) for kind in kinds]
        c.extra["rounds"] = rounds
    report = c.report
    assert report is not None
    gaps = leaderless_by_round(report.intervals, rounds, report.window[1])
    report.extra["leaderless_by_round"] = gaps
    report.extra["leaderless_max_by_kind"] = {
        kind: max(g["longest"] for g in gaps if g["kind"] == kind) for kind in set(kinds)
    }
    if c.report_path is not None:  # the report again, with the figures per round
        c.report_path.write_text(json.dumps(report.to_dict(), indent=1, default=repr))
    print("leaderless max by kind:", report.extra["leaderless_max_by_kind"])
    c.assert_promises()

    by_kind = report.to_dict()["faults_by_kind"]
    n_kills = kinds.count("primary_kill")
    assert by_kind == {
        k: v
        for k, v in {
            "primary_kill": n_kills,
            "primary_promoted": n_kills,
            "node_rejoin": n_kills,
            "cluster_failover": kinds.count("cluster_failover"),
            "reshard": kinds.count("reshard"),
            "sigkill": kinds.count("sigkill"),
        }.items()
        if v
    }, by_kind
    assert report.faults_injected == faults + 2 * n_kills
    assert len(report.extra["outages"]) == n_kills
    conv = {x["kind"]: x["seconds"] for x in report.convergence}
    assert all(x["seconds"] is not None for x in report.convergence), (
        f"no election after a fault: {report.convergence}"
    )
    assert set(conv) <= {"primary_promoted", "sigkill"}, conv
    slow = [g for g in gaps if g["longest"] > leaderless_bound(g["kind"], lease_ttl)]
    assert not slow, f"leaderless longer than the bound: {slow}"
