"""Junk in the kind's keys (members, meta, lease, term; junk values and keys of the
wrong type) while a 3-instance cluster runs: it must heal by itself (one leader again,
every member listed, messages flow), reporting only BackendErrors or ProtocolErrors
meanwhile; and the pins of what the fuzzer found there."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from chaos_scale import scaled
from fuzz_cluster import FuzzCluster, fuzz_settings, prepare
from fuzz_inputs import IdRef, big_int, ints, node_ids, records, text, wire_json
from hypothesis import example, given
from hypothesis import strategies as st
from inproc import Candidates, admin_client, one_leader, wait_until
from support.kinds import unique_kind
from support.processes import leader_subprocess

from raftredis import BackendError, ProtocolError, RaftRedisError
from raftredis.testing import RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


@dataclass(frozen=True)
class KeyOp:
    """One junk write into the kind's keys."""

    op: str
    args: tuple[Any, ...] = ()


member_names = st.one_of(
    st.just("junk-member"), node_ids, st.just(""), text, st.binary(min_size=1, max_size=20)
)
# Scores relative to the server's clock (ms); never +inf (see the xfail test below).
score_offsets = st.one_of(
    st.sampled_from([-(10**9), -1, 0, 1500, 10**12]), st.integers(-(10**6), 10**6)
)
junk_records = st.one_of(
    st.binary(max_size=100),
    st.builds(lambda v: json.dumps(v).encode(), wire_json),
    st.builds(lambda r: json.dumps(r).encode(), records),
)
WRONG_TYPES = {
    "leader": ["list", "set", "hash", "zset"],
    "term": ["list", "set", "hash", "zset"],
    "members": ["string", "list", "set", "hash"],
    "meta": ["string", "list", "set", "zset"],
}
key_ops = st.one_of(
    st.builds(KeyOp, st.just("zadd"), st.tuples(member_names, score_offsets)),
    st.builds(KeyOp, st.just("zadd-ninf"), st.tuples(member_names)),
    st.builds(KeyOp, st.just("hset"), st.tuples(member_names, junk_records)),
    st.builds(KeyOp, st.just("hdel"), st.tuples(node_ids)),
    st.sampled_from([KeyOp("wrongtype", (key, t)) for key, ts in WRONG_TYPES.items() for t in ts]),
    st.builds(
        KeyOp,
        st.just("lease"),
        st.one_of(
            st.tuples(
                st.one_of(st.binary(max_size=40), st.builds(lambda h: f"1 {h} 1".encode(), text)),
                st.sampled_from([None, 300, 1500]),
            ),
            # A lease in raftredis' format that ends in the far future: only with an expiry
            # in Redis (without one it stops elections for good while the leader cannot
            # renew; see test_lease_without_expiry_does_not_stop_elections).
            st.tuples(
                st.builds(lambda t, h: f"{t} {h} 99999999999999".encode(), ints, text),
                st.sampled_from([300, 1500]),
            ),
        ),
    ),
    st.builds(KeyOp, st.just("term"), st.tuples(st.one_of(st.binary(max_size=30), ints.map(str)))),
    st.sampled_from([KeyOp("delete", (k,)) for k in ("leader", "term", "members", "meta")]),
)


def _apply(fuzz: FuzzCluster, op: KeyOp) -> None:
    admin = fuzz.admin

    def name(value: Any) -> Any:
        return fuzz.ids[value.k] if isinstance(value, IdRef) else value

    if op.op in ("zadd", "zadd-ninf"):
        seconds, micros = admin.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        score = float("-inf") if op.op == "zadd-ninf" else now_ms + op.args[1]
        admin.zadd(fuzz.key("members"), {name(op.args[0]): score})
    elif op.op == "hset":
        admin.hset(fuzz.key("meta"), name(op.args[0]), op.args[1])
    elif op.op == "hdel":
        admin.hdel(fuzz.key("meta"), name(op.args[0]))
    elif op.op == "wrongtype":
        key = fuzz.key(op.args[0])
        admin.delete(key)
        kind = op.args[1]
        if kind == "string":
            admin.set(key, "junk")
        elif kind == "list":
            admin.rpush(key, "junk", "more junk")
        elif kind == "set":
            admin.sadd(key, "junk")
        elif kind == "hash":
            admin.hset(key, "junk", "junk")
        else:
            admin.zadd(key, {"junk": 1})
    elif op.op == "lease":
        value, px = op.args
        admin.set(fuzz.key("leader"), value, px=px)
    elif op.op == "term":
        admin.set(fuzz.key("term"), op.args[0])
    elif op.op == "delete":
        admin.delete(fuzz.key(op.args[0]))
    else:  # pragma: no cover
        raise AssertionError(op)


def _remove_junk_members(fuzz: FuzzCluster) -> None:
    """Leave no junk member behind (far-future scores would linger for good)."""
    admin = fuzz.admin
    real = {i.encode() for i in fuzz.ids}
    try:
        if admin.type(fuzz.key("members")) == b"zset":
            junk = [m for m in admin.zrange(fuzz.key("members"), 0, -1) if m not in real]
            if junk:
                admin.zrem(fuzz.key("members"), *junk)
        if admin.type(fuzz.key("meta")) == b"hash":
            junk = [f for f in admin.hkeys(fuzz.key("meta")) if f not in real]
            if junk:
                admin.hdel(fuzz.key("meta"), *junk)
    except redis.ResponseError:
        pass  # another type again: the scripts repair it


@pytest.mark.timeout(scaled(120, 1800))
@fuzz_settings(short=10, full=100)
@given(ops=st.lists(key_ops, min_size=1, max_size=4))
# Each kind of junk at least once, whatever the random examples draw:
@example(ops=[KeyOp("wrongtype", ("leader", "list"))])
@example(ops=[KeyOp("wrongtype", ("term", "hash")), KeyOp("delete", ("leader",))])
@example(ops=[KeyOp("wrongtype", ("members", "string"))])
@example(ops=[KeyOp("wrongtype", ("meta", "set"))])
@example(ops=[KeyOp("lease", (b"5 ghost 99999999999999", 1500))])
@example(ops=[KeyOp("lease", (b"junk", None)), KeyOp("term", (b"abc",))])
@example(ops=[KeyOp("zadd", (IdRef(0), -(10**9))), KeyOp("zadd", (IdRef(1), 10**12))])
@example(ops=[KeyOp("hset", (IdRef(1), b"{not json")), KeyOp("hdel", (IdRef(2),))])
@example(ops=[KeyOp("zadd", ("", 1500)), KeyOp("zadd", (b"\xff\xfe", -1))])
def test_junk_in_the_keys(fuzz: FuzzCluster, ops: list[KeyOp]) -> None:
    """Junk members and scores, junk records, a junk lease or term, keys of the wrong type:
    the cluster heals by itself (one leader, every member listed, messages flow), no
    thread dies, and what is reported is a BackendError or a ProtocolError, nothing else."""
    prepare(fuzz)
    try:
        for op in ops:
            with contextlib.suppress(redis.ResponseError):  # e.g. ZADD after a wrong type
                _apply(fuzz, op)
        applied = time.monotonic()
        fuzz.assert_alive()
        # Let the junk be met: at least two renews and a lease read by every node.
        wait_until(lambda: time.monotonic() - applied > 0.6, timeout=1.0)
        fuzz.wait_healthy(timeout=10.0)
        fuzz.assert_messages_flow()
        fuzz.assert_alive()
    finally:
        _remove_junk_members(fuzz)
    for k, events in enumerate(fuzz.take_all()):
        for e in events:
            if e.name == "error":
                error = e.kwargs["error"]
                assert isinstance(error, (BackendError, ProtocolError)), (k, repr(error))


# --------------------------------------------------------- known-bug pins


@pytest.mark.parametrize(
    "junk",
    [
        "inf-score",
        "huge-int-record",
    ],
)
def test_junk_member_does_not_break_get_instances(fresh: FuzzCluster, junk: str) -> None:
    """A junk member with score +inf, or a member record with a 401-digit integer:
    get_instances() still lists the real members (or raises a RaftRedisError).

    (The record case is a regression test: decode_record raised OverflowError.)"""
    fuzz = fresh
    record = fuzz.admin.hget(fuzz.key("meta"), fuzz.ids[1])
    try:
        if junk == "inf-score":
            fuzz.admin.zadd(fuzz.key("members"), {"junk-forever": float("inf")})
        else:
            fuzz.admin.hset(
                fuzz.key("meta"), fuzz.ids[1], f'{{"meta":null,"joined":{big_int()},"ttl":2}}'
            )
        try:
            listed = {i.id for i in fuzz.nodes[0].get_instances()}
        except RaftRedisError:
            listed = set(fuzz.ids)  # reported as the library's own error: acceptable
        assert set(fuzz.ids) <= listed
    finally:
        fuzz.admin.zrem(fuzz.key("members"), "junk-forever")
        if record is not None:
            fuzz.admin.hset(fuzz.key("meta"), fuzz.ids[1], record)
    fuzz.wait_healthy()


def test_lease_without_expiry_does_not_stop_elections(own_redis: RedisServer) -> None:
    """The leader (another process) is killed; its lease is replaced by one in raftredis'
    format that names a ghost, ends in the far future and has no expiry in Redis. The
    followers still elect one of them within a few lease_ttl."""
    kind = unique_kind("noexpiry")
    with leader_subprocess(own_redis.url, kind, timeout=15.0, lease_ttl=1.0) as leading:
        child, leader_id, _term = leading
        with Candidates(own_redis.url, kind) as group:
            followers = [group.start(), group.start()]
            assert all(f.leader_id == leader_id for f in followers)
            child.kill()
            child.wait(10)
            term = max(f.current_term for f in followers)
            admin = admin_client(own_redis)
            try:
                admin.set(f"raftredis:{{{kind}}}:leader", f"{term + 1} ghost 99999999999999")
                wait_until(
                    lambda: one_leader(followers),
                    timeout=5.0,
                    message=lambda: (
                        f"{followers}, lease {admin.get(f'raftredis:{{{kind}}}:leader')!r}"
                    ),
                )
            finally:
                admin.close()
