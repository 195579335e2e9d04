"""Redis Cluster: the redis= forms, kinds on their shards, resharding and failovers.

The servers are a real cluster of 3 primaries and 3 replicas on 127.0.0.1,
made with ``redis-cli --cluster create`` (:class:`clusters.ClusterSetup`;
skipped, with the reason, without redis-server 7.0+ and redis-cli). One
cluster serves the tests that keep every node up, including a live
resharding of a kind's slot and a manual ``CLUSTER FAILOVER``; killing a
shard's primary gets a cluster of its own. After each move there must be
exactly one leader, holding the lease on the node that serves the kind's
slot now, with a term no lower than before, and messages must flow again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from clusters import ClusterSetup
from failover import check_after_failover, healthy, messages_flow, settled
from redis.cluster import RedisCluster
from support.kinds import unique_kind

from raftredis import BackendError, Candidate, ConfigurationError
from raftredis.connection import connection_spec, describe
from raftredis.observe import read_kind
from raftredis.testing import (
    RedisServer,
    SignalRecorder,
    make_tls_files,
    redis_server_supports_tls,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "a-test-secret-of-32-bytes-length"

#: The command line, run as a real process.
TOOL = (sys.executable, "-m", "raftredis")

#: Short leases keep the failovers quick.
LEASE_TTL = 2.0


def _lease_key(kind: str) -> str:
    return f"raftredis:{{{kind}}}:leader"


# ------------------------------------------------------------- the redis= forms


def test_the_url_form_and_its_grammar() -> None:
    spec = connection_spec("redis+cluster://alice:s%3Acret@10.0.0.1:7000,10.0.0.2,[::1]:7002/")
    assert spec.cluster is not None
    assert spec.cluster.startup_nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert spec.kwargs == {"username": "alice", "password": "s:cret"}
    assert describe(spec) == "redis+cluster://10.0.0.1:7000,10.0.0.2:6379,[::1]:7002/"
    assert connection_spec("redis+cluster://h:1").cluster is not None  # no slash
    assert connection_spec("REDIS+CLUSTER://h:1/0").cluster is not None
    for bad, why in [
        ("redis+cluster://h:1/1", "only database 0"),
        ("redis+cluster://h:1/?x=1", "no query"),
        ("redis+cluster://h:port/", "cannot parse the address"),
        ("redis+cluster://:1/", "cannot parse the address"),
        ("redis+cluster://h:70000/", "from 1 to 65535"),
    ]:
        with pytest.raises(ConfigurationError, match=why):
            connection_spec(bad)


def test_the_dict_form() -> None:
    spec = connection_spec({"startup_nodes": [("a", 7000), "b:7001", "c"], "password": "pw"})
    assert spec.cluster is not None
    assert spec.cluster.startup_nodes == (("a", 7000), ("b", 7001), ("c", 6379))
    assert spec.kwargs == {"password": "pw"}
    spec = connection_spec({"url": "redis+cluster://a:7000/", "username": "u", "password": "p"})
    assert spec.cluster is not None and spec.kwargs == {"username": "u", "password": "p"}
    for bad, why in [
        ({"startup_nodes": []}, "non-empty list of \\(host, port\\) pairs"),
        ({"startup_nodes": [("a", "x")]}, "from 1 to 65535"),
        ({"startup_nodes": [("a", 1)], "host": "b"}, "host cannot be combined with startup_nodes"),
        ({"startup_nodes": [("a", 1)], "db": 2}, "only database 0"),
        ({"startup_nodes": [("a", 1)], "ssl_ca_certs": "ca.crt"}, "need TLS"),
        ({"startup_nodes": [("a", 1)], "sentinels": [("a", 1)]}, "cannot be combined"),
        ({"url": "redis://a:1", "startup_nodes": [("a", 1)]}, "must be a redis\\+cluster://"),
    ]:
        with pytest.raises(ConfigurationError, match=why):
            connection_spec(bad)
    # TLS: ssl and the ssl_* settings, or a rediss+cluster:// url.
    spec = connection_spec({"startup_nodes": ["a:1"], "ssl": True, "ssl_ca_certs": "ca.crt"})
    assert spec.connection_class is redis.SSLConnection and spec.kwargs["ssl_ca_certs"] == "ca.crt"
    spec = connection_spec({"url": "rediss+cluster://a:1,b:2/", "ssl_ca_certs": "ca.crt"})
    assert spec.connection_class is redis.SSLConnection
    assert describe(spec) == "rediss+cluster://a:1,b:2/"
    # A Cluster connection is useless without a kind's key to route by.
    with pytest.raises(ConfigurationError, match="route_key"):
        connection_spec("redis+cluster://a:1/").pool()


# ------------------------------------------------------------- on a real cluster


@pytest.fixture
def cluster_candidates(
    candidates: Callable[..., Candidate],
) -> Callable[..., Candidate]:
    """``make(setup, **options)``: a started Candidate of the test's kind in ``setup``."""

    def make(setup: ClusterSetup, **options: Any) -> Candidate:
        options.setdefault("redis", setup.url)
        options.setdefault("lease_ttl", LEASE_TTL)
        return candidates(**options).start()

    return make


def _owner(setup: ClusterSetup, kind: str) -> Callable[[], RedisServer]:
    return lambda: setup.owner(_lease_key(kind))


def _shard_subscribers(server: RedisServer, channel: str) -> int:
    client = server.client()
    try:
        reply = client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
        return int(reply[1])
    finally:
        client.close()


def test_election_and_messages_on_the_kinds_shard(
    cluster: ClusterSetup,
    cluster_candidates: Callable[..., Candidate],
    kind: str,
) -> None:
    """The URL, dict and RedisCluster forms elect one leader; messages use sharded pub/sub."""
    host, port = cluster.startup_nodes[0]
    group = [
        cluster_candidates(cluster),
        cluster_candidates(cluster, redis={"startup_nodes": cluster.startup_nodes[3:]}),
        cluster_candidates(cluster, redis=RedisCluster(host=host, port=port)),
    ]
    leader = wait_until(lambda: settled(group, _owner(cluster, kind), kind), 5.0)
    recorder = SignalRecorder()
    for candidate in group:
        recorder.connect(candidate, "message")
    follower = next(c for c in group if c is not leader)
    assert leader.message_all("to all") == 2
    assert leader.message_followers("to followers") == 2
    assert follower.message_leader("to the leader") == 1
    assert messages_flow(group, leader)
    recorder.wait_for("message", count=2 + 2 + 1 + 4)
    # Every listener is on the shard's primary, on shard channels, and none
    # uses classic pub/sub, which a cluster would broadcast to every node.
    owner = cluster.owner(_lease_key(kind))
    assert _shard_subscribers(owner, f"raftredis:{{{kind}}}:control") == len(group)
    assert _shard_subscribers(owner, f"raftredis:{{{kind}}}:all") == len(group)
    for server in cluster.live_servers():
        client = server.client()
        try:
            assert client.execute_command("PUBSUB", "NUMPAT") == 0
            assert client.execute_command("PUBSUB", "CHANNELS") == []
        finally:
            client.close()
    # Anyone can read the kind through the cluster URL.
    snapshot = read_kind(cluster.url, kind=kind)
    assert snapshot.leader is not None and snapshot.leader.id == leader.id
    assert len(snapshot.members) == 3


def test_signed_notices_and_messages(
    cluster: ClusterSetup, cluster_candidates: Callable[..., Candidate], kind: str
) -> None:
    """With a secret, the client publishes the signed notices itself: SPUBLISH too."""
    group = [cluster_candidates(cluster, secret=SECRET) for _ in range(2)]
    recorder = SignalRecorder()
    recorder.connect(group[0], "instance_joined")
    leader = wait_until(lambda: settled(group, _owner(cluster, kind), kind), 5.0)
    assert messages_flow(group, leader)
    third = cluster_candidates(cluster, secret=SECRET)
    assert recorder.wait_for("instance_joined").kwargs["instance"].id == third.id


def test_kinds_spread_over_the_shards(
    cluster: ClusterSetup, cluster_candidates: Callable[..., Candidate]
) -> None:
    """Kinds whose slots three different primaries serve each live on their own primary."""
    kinds: dict[int, str] = {}
    prefix = unique_kind("spread")
    for i in range(200):
        name = f"{prefix}-{i}"
        kinds.setdefault(cluster.owner(_lease_key(name)).port, name)
        if len(kinds) == 3:
            break
    assert len(kinds) == 3
    leaders = {port: cluster_candidates(cluster, kind=name) for port, name in kinds.items()}
    for port, candidate in leaders.items():
        assert candidate.is_leader
        server = cluster.server(port)
        client = server.client()
        try:
            assert client.get(_lease_key(candidate.kind)) is not None
        finally:
            client.close()
        assert _shard_subscribers(server, f"raftredis:{{{candidate.kind}}}:control") == 1


def test_the_kinds_slot_moves_to_another_primary(
    cluster: ClusterSetup, cluster_candidates: Callable[..., Candidate], kind: str
) -> None:
    """Live resharding of the kind's slot while a leader holds the lease.

    The keys move with the slot; MOVED replies take the commands along, and
    the dropped shard subscriptions are made again on the new owner.
    """
    group = [cluster_candidates(cluster) for _ in range(3)]
    old_leader = wait_until(lambda: settled(group, _owner(cluster, kind), kind), 5.0)
    old_term = old_leader.current_term
    old_owner = cluster.owner(_lease_key(kind))
    target = cluster.other_primary(_lease_key(kind))
    cluster.move_slot(_lease_key(kind), target)
    assert cluster.owner(_lease_key(kind)) is target
    leader = check_after_failover(group, _owner(cluster, kind), kind, old_leader, old_term)
    assert leader is old_leader and leader.current_term == old_term  # nothing to re-elect
    channel = f"raftredis:{{{kind}}}:control"
    wait_until(lambda: _shard_subscribers(target, channel) == len(group), 5.0)
    assert _shard_subscribers(old_owner, channel) == 0


def test_a_manual_failover(
    cluster: ClusterSetup, cluster_candidates: Callable[..., Candidate], kind: str
) -> None:
    """CLUSTER FAILOVER on the shard's replica: the old primary becomes its replica."""
    group = [cluster_candidates(cluster) for _ in range(3)]
    old_leader = wait_until(lambda: settled(group, _owner(cluster, kind), kind), 5.0)
    old_term = old_leader.current_term
    started = time.monotonic()
    new_owner = cluster.manual_failover(_lease_key(kind))
    check_after_failover(group, _owner(cluster, kind), kind, old_leader, old_term)
    assert cluster.owner(_lease_key(kind)) is new_owner
    channel = f"raftredis:{{{kind}}}:all"
    wait_until(lambda: _shard_subscribers(new_owner, channel) == len(group), 5.0)
    assert time.monotonic() - started < 8.0


@pytest.mark.parametrize("min_replicas", [0, 1])
def test_the_shards_primary_is_killed(
    binaries: tuple[str, str],
    cluster_candidates: Callable[..., Candidate],
    kind: str,
    min_replicas: int,
) -> None:
    """SIGKILL the primary serving the kind: its replica is promoted, and the kind recovers.

    With min_replicas=1 a lease needs a replica's acknowledgement, and the
    promoted replica has none: the killed node is started again, rejoins as
    its replica, and only then can a leader be (re)confirmed.
    """
    with ClusterSetup(*binaries) as setup:
        group = [cluster_candidates(setup, min_replicas=min_replicas) for _ in range(3)]
        old_leader = wait_until(lambda: settled(group, _owner(setup, kind), kind), 5.0)
        old_term = old_leader.current_term
        old = setup.kill_owner(_lease_key(kind))
        new = setup.wait_for_new_owner(_lease_key(kind), old)
        if min_replicas:
            old.start()
            wait_until(
                lambda: old in setup.replicas_of(new), 15.0, "the old primary did not rejoin"
            )
        check_after_failover(group, _owner(setup, kind), kind, old_leader, old_term)
        for candidate in group:
            candidate.stop()
        assert not any(healthy(c) for c in group)


def test_the_shards_primary_is_paused(
    binaries: tuple[str, str], cluster_candidates: Callable[..., Candidate], kind: str
) -> None:
    """SIGSTOP the primary serving the kind (a hung host: connections open, nothing answers).

    The leader steps down by its own deadline, the replica is promoted, one
    leader follows on it; when the old primary wakes up it is demoted, and
    everyone still talks to the new one.
    """
    with ClusterSetup(*binaries) as setup:
        group = [cluster_candidates(setup) for _ in range(3)]
        old_leader = wait_until(lambda: settled(group, _owner(setup, kind), kind), 5.0)
        old_term = old_leader.current_term
        old = setup.owner(_lease_key(kind))
        replica = setup.replicas_of(old)[0]
        probe = replica.client(socket_timeout=1.0)
        old.pause()
        try:
            # Not through setup.owner(): that asks every node, the frozen one too.
            wait_until(lambda: not any(c.is_leader for c in group), LEASE_TTL + 1.0)
            wait_until(lambda: probe.execute_command("ROLE")[0] == b"master", 15.0)
            check_after_failover(group, lambda: replica, kind, old_leader, old_term)
        finally:
            old.resume()
            probe.close()
        woken = old.client(socket_timeout=1.0)
        try:
            wait_until(lambda: woken.execute_command("ROLE")[0] == b"slave", 10.0)
        finally:
            woken.close()
        check_after_failover(group, _owner(setup, kind), kind, old_leader, old_term)


#: The documented cluster variant of the minimal ACL user (docs/production.md):
#: sharded pub/sub instead of the classic commands, and CLUSTER SLOTS to find the kind.
CLUSTER_ACL_CHANGES = {"+publish": "+spublish", "+subscribe": "+ssubscribe"}
CLUSTER_ACL_EXTRA = ["+cluster|slots"]


def test_the_minimal_acl_user_in_a_cluster(
    cluster: ClusterSetup, cluster_candidates: Callable[..., Candidate], kind: str
) -> None:
    """The standalone ACL line with the cluster changes runs the API; ACL LOG stays empty."""
    from test_acl import PASSWORD, RULES, USER

    rules = [CLUSTER_ACL_CHANGES.get(rule, rule) for rule in RULES] + CLUSTER_ACL_EXTRA
    doc = (Path(__file__).resolve().parents[2] / "docs" / "production.md").read_text()
    for change in [*CLUSTER_ACL_CHANGES.values(), *CLUSTER_ACL_EXTRA]:
        assert change in doc
    for server in cluster.live_servers():
        client = server.client()
        try:
            client.execute_command("ACL", "SETUSER", USER, "reset", "on", f">{PASSWORD}", *rules)
            client.acl_log_reset()
        finally:
            client.close()
    nodes = ",".join(f"{h}:{p}" for h, p in cluster.startup_nodes)
    url = f"redis+cluster://{USER}:{PASSWORD}@{nodes}/"
    group = [cluster_candidates(cluster, redis=url) for _ in range(2)]
    recorder = SignalRecorder()
    recorder.connect(group[0], "meta_changed")
    leader = wait_until(lambda: settled(group, _owner(cluster, kind), kind), 5.0)
    assert messages_flow(group, leader)
    assert leader.message_all("hello") == 1
    group[1].set_meta({"zone": "b"})
    recorder.wait_for("meta_changed")
    for server in cluster.live_servers():
        client = server.client()
        try:
            assert client.acl_log() == [], server
        finally:
            client.close()


def test_a_plain_server_is_not_a_cluster(candidates: Callable[..., Candidate]) -> None:
    """A cluster URL to a server without cluster mode fails start() with the reason."""
    with RedisServer() as server:
        candidate = candidates(redis=f"redis+cluster://127.0.0.1:{server.port}/")
        with pytest.raises(BackendError, match="cluster support disabled"):
            candidate.start(timeout=2.0)


def test_the_cli_reads_a_kind_in_the_cluster(
    cluster: ClusterSetup, cluster_candidates: Callable[..., Candidate], kind: str
) -> None:
    """``raftredis status --url redis+cluster://...`` finds the kind on its shard."""
    leader = cluster_candidates(cluster)
    done = subprocess.run(
        [*TOOL, "status", "--url", cluster.url, "--kind", kind, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["leader"]["id"] == leader.id


def test_the_cli_watches_a_kind_in_the_cluster(
    cluster: ClusterSetup, cluster_candidates: Callable[..., Candidate], kind: str
) -> None:
    """``raftredis watch`` hears the kind's notices on its shard channels."""
    watch = subprocess.Popen(
        [*TOOL, "watch", "--url", cluster.url, "--kind", kind, "--json", "--duration", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = watch.stdout.readline() if watch.stdout else ""
        assert json.loads(first)["members"] == []  # subscribed and read: nobody yet
        a = cluster_candidates(cluster)
        b = cluster_candidates(cluster)
        a.stop()  # hands over: b is elected, and the notice says so
        out, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.communicate()
    assert watch.returncode == 0, err
    events = [e for line in out.splitlines() for e in json.loads(line)["events"]]
    assert {"type": "elected", "id": b.id} in [
        {"type": e["type"], "id": e["id"]} for e in events
    ], events


def test_a_tls_cluster(binaries: tuple[str, str], candidates: Callable[..., Candidate]) -> None:
    """tls-cluster yes: rediss+cluster:// with the CA; a resharding is followed over TLS too.

    A client that does not trust the nodes' CA is refused by start(), with the reason.
    """
    if not redis_server_supports_tls(binaries[0]):
        pytest.skip(f"{binaries[0]} was built without TLS (run `make redis-apt`)")
    with ClusterSetup(*binaries, tls=True) as setup:
        kind = unique_kind("tls")
        group = [
            candidates(redis=setup.redis_settings, kind=kind, lease_ttl=LEASE_TTL).start()
            for _ in range(3)
        ]
        assert describe(group[0].config.connection).startswith("rediss+cluster://127.0.0.1:")
        leader = wait_until(lambda: settled(group, _owner(setup, kind), kind), 5.0)
        old_term = leader.current_term
        assert messages_flow(group, leader)
        setup.move_slot(_lease_key(kind), setup.other_primary(_lease_key(kind)))
        check_after_failover(group, _owner(setup, kind), kind, leader, old_term)

        other_ca = make_tls_files(setup.servers[0].directory / "other-ca")
        stranger = candidates(
            redis={"url": setup.url, "ssl_ca_certs": str(other_ca.ca_cert)}, kind=kind
        )
        with pytest.raises(BackendError, match="certificate verify failed"):
            stranger.start(timeout=2.0)
