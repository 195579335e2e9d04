"""Discovery and meta: get_instances(), get_leader(), get_meta()/set_meta()."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import redis
from helpers import Cluster, Recorder, wait_until

from raftredis import Instance, MessageError, NotRunningError, State


def server_time(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def test_get_instances_lists_every_live_instance(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    """Every instance appears once, with its meta and state; exactly one is LEADER."""
    t0 = server_time(redis_client)
    candidates = [cluster.start(meta={"n": n}) for n in range(3)]
    t1 = server_time(redis_client)
    for viewer in candidates:
        instances = viewer.get_instances()
        assert all(isinstance(i, Instance) for i in instances)
        assert [i.id for i in instances] == [c.id for c in candidates]  # in order of joining
        assert [i.meta for i in instances] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert [i.state for i in instances] == [State.LEADER, State.FOLLOWER, State.FOLLOWER]
        assert [i.is_leader for i in instances] == [True, False, False]
        for i in instances:
            assert t0 - 0.01 <= i.joined_at <= t1 + 0.01
            assert i.joined_at - 0.01 <= i.last_seen <= server_time(redis_client) + 0.01
        joined = [i.joined_at for i in instances]
        assert joined == sorted(joined)


def test_last_seen_advances(cluster: Cluster) -> None:
    """last_seen moves forward as instances refresh their membership; joined_at does not."""
    leader = cluster.start()
    follower = cluster.start()
    first = {i.id: i for i in leader.get_instances()}

    def advanced() -> bool:
        now = {i.id: i for i in leader.get_instances()}
        return all(now[k].last_seen > first[k].last_seen + 0.2 for k in first)

    wait_until(advanced, timeout=3.0)
    now = {i.id: i for i in follower.get_instances()}
    assert all(now[k].joined_at == first[k].joined_at for k in first)


def test_stopped_instance_disappears(cluster: Cluster) -> None:
    """After stop() an instance is gone from everyone's get_instances() at once."""
    a, b, c = cluster.start_many(3)
    b.stop()
    for viewer in (a, c):
        assert [i.id for i in viewer.get_instances()] == [a.id, c.id]
    a.stop()
    wait_until(lambda: c.is_leader, timeout=3.0)
    instances = c.get_instances()
    assert [(i.id, i.state) for i in instances] == [(c.id, State.LEADER)]


def test_instances_of_other_kinds_are_not_listed(cluster: Cluster, redis_url: str) -> None:
    """get_instances() lists only the instances of its own kind."""
    mine = cluster.start()
    with Cluster(redis_url) as other_kind:
        other = other_kind.start()
        assert other.is_leader  # its own kind, its own election
        assert [i.id for i in mine.get_instances()] == [mine.id]
        assert [i.id for i in other.get_instances()] == [other.id]


def test_get_leader_returns_the_leader_instance(cluster: Cluster) -> None:
    """get_leader() returns the leader's Instance (id, meta, LEADER), from anywhere."""
    leader = cluster.start(meta={"role": "boss"})
    follower = cluster.start(meta={"role": "worker"})
    for viewer in (leader, follower):
        got = viewer.get_leader()
        assert isinstance(got, Instance)
        assert got.id == leader.id
        assert got.meta == {"role": "boss"}
        assert got.state is State.LEADER and got.is_leader
        listed = next(i for i in viewer.get_instances() if i.id == leader.id)
        assert got.joined_at == pytest.approx(listed.joined_at, abs=0.01)


def test_get_leader_last_seen_is_current(cluster: Cluster) -> None:
    """get_leader().last_seen on a follower agrees with get_instances() once time has passed."""
    leader = cluster.start()
    follower = cluster.start()

    def leader_row() -> Instance:
        return next(i for i in follower.get_instances() if i.id == leader.id)

    wait_until(lambda: leader_row().last_seen > leader_row().joined_at + 0.9, timeout=3.0)
    got = follower.get_leader()
    assert got is not None
    assert got.last_seen == pytest.approx(leader_row().last_seen, abs=0.5)


def test_get_meta_and_set_meta(cluster: Cluster) -> None:
    """set_meta replaces the meta: get_meta, .meta, others' get_instances and meta_changed."""
    a = cluster.start(meta={"v": 0})
    b = cluster.start()
    rec = Recorder().connect(b, "meta_changed")
    assert a.get_meta() == {"v": 0} and a.meta == {"v": 0}
    a.set_meta({"v": 1, "list": [1, 2]})
    assert a.get_meta() == {"v": 1, "list": [1, 2]}
    event = rec.wait_for("meta_changed")
    assert event.kwargs["instance"].id == a.id
    assert event.kwargs["instance"].meta == {"v": 1, "list": [1, 2]}
    assert next(i for i in b.get_instances() if i.id == a.id).meta == {"v": 1, "list": [1, 2]}
    assert next(i for i in a.get_instances() if i.id == a.id).meta == {"v": 1, "list": [1, 2]}
    assert a.get_leader().meta == {"v": 1, "list": [1, 2]}  # type: ignore[union-attr]
    a.set_meta(None)
    rec.wait_for("meta_changed", count=2)
    assert next(i for i in b.get_instances() if i.id == a.id).meta is None


def test_set_meta_before_start_is_published_by_start(cluster: Cluster) -> None:
    """set_meta before start() changes what start() publishes."""
    a = cluster.start()
    b = cluster.new(meta={"old": True})
    b.set_meta({"new": True})
    b.start()
    assert next(i for i in a.get_instances() if i.id == b.id).meta == {"new": True}


def test_meta_changes_survive_a_membership_refresh(cluster: Cluster) -> None:
    """After set_meta, later heartbeats keep the new meta (they do not rewrite the old one)."""
    a = cluster.start(meta={"v": "old"})
    b = cluster.start()
    a.set_meta({"v": "new"})
    first = next(i for i in b.get_instances() if i.id == a.id)
    # Wait for a membership refresh of a (last_seen moves), then read again.
    wait_until(
        lambda: (
            next(i for i in b.get_instances() if i.id == a.id).last_seen > first.last_seen + 0.2
        ),
        timeout=3.0,
    )
    assert next(i for i in b.get_instances() if i.id == a.id).meta == {"v": "new"}


class NotJson:
    pass


@pytest.mark.parametrize("meta", [{1, 2}, NotJson(), float("nan"), {"k": b"b"}])
def test_set_meta_with_non_json_raises(cluster: Cluster, meta: Any) -> None:
    """set_meta with non-JSON raises MessageError and keeps the old meta everywhere."""
    a = cluster.start(meta={"ok": 1})
    b = cluster.start()
    with pytest.raises(MessageError, match="meta"):
        a.set_meta(meta)
    assert a.get_meta() == {"ok": 1}
    assert next(i for i in b.get_instances() if i.id == a.id).meta == {"ok": 1}


def test_set_meta_too_large_raises(cluster: Cluster) -> None:
    """A meta larger than max_message_bytes raises MessageError naming the limit."""
    a = cluster.start(max_message_bytes=1024)
    with pytest.raises(MessageError, match="max_message_bytes"):
        a.set_meta({"big": "x" * 2000})
    assert a.get_meta() is None


def test_set_meta_stores_a_copy(cluster: Cluster) -> None:
    """Changing the dict after set_meta changes nothing."""
    a = cluster.start()
    meta = {"a": [1]}
    a.set_meta(meta)
    meta["a"].append(2)
    assert a.get_meta() == {"a": [1]}
    assert a.get_instances()[0].meta == {"a": [1]}


def test_set_meta_after_stop_does_not_write(cluster: Cluster) -> None:
    """set_meta after stop() may only change the local value: the instance stays gone."""
    a = cluster.start()
    b = cluster.start()
    b.stop()
    with contextlib.suppress(NotRunningError):
        b.set_meta({"late": True})
    assert [i.id for i in a.get_instances()] == [a.id]
