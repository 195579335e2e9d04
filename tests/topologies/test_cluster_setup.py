"""The Redis Cluster helper itself (:class:`clusters.ClusterSetup`), on a real cluster.

One cluster of 3 primaries and 3 replicas serves the tests that leave it
whole (the manual failover, which keeps every node up, runs last of them); the
SIGKILL test gets a cluster of its own. Skipped, with the reason, without
redis-server >= 7.0 and redis-cli (:func:`clusters.cluster_binaries`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from clusters import SLOTS, ClusterSetup

from raftredis.testing import RedisServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def fresh_cluster(binaries: tuple[str, str]) -> Iterator[ClusterSetup]:
    """A cluster of its own, for a test that kills a node."""
    with ClusterSetup(*binaries) as setup:
        yield setup


def _assert_moved(error: pytest.ExceptionInfo[redis.exceptions.ResponseError]) -> None:
    assert isinstance(error.value, redis.exceptions.MovedError) or str(error.value).startswith(
        "MOVED"
    ), error.value


def test_three_primaries_with_one_replica_each_cover_every_slot(cluster: ClusterSetup) -> None:
    assert len(cluster.servers) == 6
    assert all(s.running for s in cluster.servers)
    primaries = cluster.primaries()
    assert len(primaries) == 3
    replicas = [r for p in primaries for r in cluster.replicas_of(p)]
    assert all(len(cluster.replicas_of(p)) == 1 for p in primaries)
    assert sorted(s.port for s in primaries + replicas) == sorted(s.port for s in cluster.servers)
    for server in cluster.servers:
        info = server.client(decode_responses=True).cluster("INFO")
        assert info["cluster_state"] == "ok"
        assert int(info["cluster_slots_assigned"]) == SLOTS
    owners = {cluster.owner(slot) for slot in range(0, SLOTS, 97)}
    assert owners == set(primaries)
    assert cluster.startup_nodes == [("127.0.0.1", s.port) for s in cluster.servers]
    ports = [s.port for s in cluster.servers[:3]]
    assert cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports) + "/"
    assert cluster.server(ports[0]) is cluster.servers[0]


def test_the_owner_serves_the_key_and_another_primary_answers_moved(
    cluster: ClusterSetup,
) -> None:
    key = "{owner}key"
    owner = cluster.owner(key)
    assert owner.client(decode_responses=True).execute_command("ROLE")[0] == "master"
    assert cluster.owner(cluster.slot_of(key)) is owner
    client = cluster.primary_client(key, decode_responses=True)
    assert client.set(key, "value")
    assert client.get(key) == "value"
    other = cluster.other_primary(key)
    assert other is not owner
    with pytest.raises(redis.exceptions.ResponseError) as error:
        other.client().get(key)
    _assert_moved(error)


def test_sharded_pubsub_at_the_owner_delivers(cluster: ClusterSetup) -> None:
    channel = "{shard}events"
    owner = cluster.owner(channel)
    pubsub = owner.client(decode_responses=True).pubsub()
    try:
        pubsub.ssubscribe(channel)
        confirmation = pubsub.get_sharded_message(timeout=5.0)
        assert confirmation is not None and confirmation["type"] == "ssubscribe"
        assert cluster.primary_client(channel).spublish(channel, "hello") == 1
        message = wait_until(
            lambda: pubsub.get_sharded_message(timeout=0.5), 5.0, "no smessage arrived"
        )
        assert message["type"] == "smessage"
        assert message["channel"] == channel and message["data"] == "hello"
    finally:
        pubsub.close()
    with pytest.raises(redis.exceptions.ResponseError) as error:
        cluster.other_primary(channel).client().spublish(channel, "misrouted")
    _assert_moved(error)


def test_move_slot_takes_the_keys_to_the_target(cluster: ClusterSetup) -> None:
    key = "{move}key"
    keys = [key, *(f"{{move}}more-{i}" for i in range(150))]  # more than one batch
    source = cluster.owner(key)
    client = source.client(decode_responses=True)
    for index, name in enumerate(keys):
        client.set(name, f"value-{index}")
    target = cluster.other_primary(key)

    cluster.move_slot(key, target)

    assert cluster.owner(key) is target
    moved = target.client(decode_responses=True)
    assert moved.get(key) == "value-0"
    assert moved.get(keys[-1]) == f"value-{len(keys) - 1}"
    assert int(moved.execute_command("CLUSTER", "COUNTKEYSINSLOT", cluster.slot_of(key))) == len(
        keys
    )
    with pytest.raises(redis.exceptions.ResponseError) as error:
        source.client().get(key)
    _assert_moved(error)


def test_manual_failover_makes_the_replica_the_owner(cluster: ClusterSetup) -> None:
    key = "{failover}key"
    old = cluster.owner(key)
    (replica,) = cluster.replicas_of(old)
    client = old.client(decode_responses=True)
    client.set(key, "kept")
    assert client.execute_command("WAIT", 1, 5000) == 1

    new = cluster.manual_failover(key)

    assert new is replica
    assert cluster.owner(key) is new
    assert old.client(decode_responses=True).execute_command("ROLE")[0] == "slave"
    assert cluster.replicas_of(new) == [old]
    assert new.client(decode_responses=True).get(key) == "kept"


def test_kill_owner_promotes_its_replica(fresh_cluster: ClusterSetup) -> None:
    cluster = fresh_cluster
    key = "{crash}key"
    owner = cluster.owner(key)
    (replica,) = cluster.replicas_of(owner)
    client = owner.client(decode_responses=True)
    client.set(key, "survives")
    assert client.execute_command("WAIT", 1, 5000) == 1

    killed = cluster.kill_owner(key)
    began = time.monotonic()
    new = cluster.wait_for_new_owner(key, killed, timeout=15.0)
    took = time.monotonic() - began

    assert killed is owner and not killed.running
    assert new is replica, f"promoted {new!r}, expected {replica!r}"
    assert cluster.owner(key) is new
    assert new.client(decode_responses=True).get(key) == "survives"
    assert took < 15.0
    # The other shards kept serving throughout (cluster-require-full-coverage no).
    other = cluster.other_primary(key)
    assert isinstance(other, RedisServer) and other.running
