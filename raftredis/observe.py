"""Read a kind's state from Redis without joining it: the leader, the members, their meta.

Used by :class:`~raftredis.Client`, the ``raftredis`` command line and the
Flask and Django status commands.

An observer only reads. It does not register, campaign, or prune expired
members (the Candidates' scripts do that), so it never shows up in the kind
and never changes it. Everything comes from one ``MULTI``/``EXEC`` (``TIME``
plus the kind's four keys), so the leader and the members are read at the
same instant, and ages are measured on the Redis server's clock.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import redis as redis_py

from .connection import connection_spec
from .keys import KeySpace
from .models import Instance, State
from .store import LeaseRecord, parse_lease
from .wire import WireError, decode_record

__all__ = [
    "LeaderView",
    "MemberView",
    "Snapshot",
    "read_instances",
    "read_kind",
    "read_leader",
    "read_snapshot",
]


@dataclass(frozen=True)
class MemberView:
    """One live member as an observer sees it. Times are server Unix seconds."""

    id: str
    state: str
    meta: Any
    joined_at: float | None
    last_seen: float | None
    expires_at: float
    term: int | None = None  # the lease's term, for the leader only

    @property
    def is_leader(self) -> bool:
        return self.state == "leader"


@dataclass(frozen=True)
class LeaderView:
    """The lease: who holds it, in which term, until when (server Unix seconds)."""

    id: str
    term: int
    expires_at: float


@dataclass(frozen=True)
class Snapshot:
    """A kind at one instant, by the Redis server's clock (``server_time``)."""

    kind: str
    prefix: str
    server_time: float
    leader: LeaderView | None
    term: int | None  # the highest term ever started in this kind (its term key)
    members: tuple[MemberView, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as Unix seconds, expiries as seconds from now)."""
        now = self.server_time
        leader = None
        if self.leader is not None:
            leader = {
                "id": self.leader.id,
                "term": self.leader.term,
                "expires_in": round(self.leader.expires_at - now, 3),
            }
        return {
            "kind": self.kind,
            "prefix": self.prefix,
            "time": round(now, 3),
            "leader": leader,
            "term": self.term,
            "members": [
                {
                    "id": m.id,
                    "state": m.state,
                    "term": m.term,
                    "meta": m.meta,
                    "joined_at": _rounded(m.joined_at),
                    "last_seen": _rounded(m.last_seen),
                    "expires_in": round(m.expires_at - now, 3),
                }
                for m in self.members
            ],
        }

    def fingerprint(self) -> tuple[Any, ...]:
        """What a watcher calls a change: leader and term, members, states and meta.

        Leaves out times, which move on every membership refresh.
        """
        leader = None if self.leader is None else (self.leader.id, self.leader.term)
        members = tuple(
            (m.id, m.state, json.dumps(m.meta, sort_keys=True, default=repr)) for m in self.members
        )
        return (leader, members)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _ok(value: Any, default: Any) -> Any:
    """A reply, or ``default`` where Redis answered with an error (a key of the wrong type)."""
    return default if isinstance(value, Exception) else value


def read_snapshot(client: redis_py.Redis, keys: KeySpace) -> Snapshot:
    """Read the kind behind ``keys`` in one round trip, changing nothing.

    Raises redis-py's errors (``ConnectionError``, ...) when Redis fails.
    A member whose score has passed is left out, as the Candidates' own
    listing would prune it; a member without a readable record is listed
    with ``meta`` None.
    """
    pipe = client.pipeline(transaction=True)
    pipe.time()
    pipe.zrange(keys.members, 0, -1, withscores=True)
    pipe.hgetall(keys.meta)
    pipe.get(keys.leader)
    pipe.get(keys.term)
    pipe.get(keys.leader_copy)
    replies = pipe.execute(raise_on_error=False)
    now_reply, member_rows, records, lease_value, term_value, copy_value = replies
    if isinstance(now_reply, Exception):
        raise now_reply
    seconds, micros = now_reply
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    lease = _held(_ok(lease_value, None), _ok(copy_value, None), now_ms)
    records = {_text(k): v for k, v in _ok(records, {}).items()}
    members = [
        _member(_text(member), score, records.get(_text(member)), lease)
        for member, score in _ok(member_rows, [])
        if math.isfinite(score) and score > now_ms
    ]
    members.sort(key=lambda m: (m.joined_at is None, m.joined_at or 0.0, m.id))
    term_text = _text(_ok(term_value, b"") or b"")
    leader = None
    if lease is not None:
        leader = LeaderView(lease.holder, lease.term, lease.expires_ms / 1000.0)
    return Snapshot(
        kind=keys.kind,
        prefix=keys.prefix,
        server_time=now_ms / 1000.0,
        leader=leader,
        term=int(term_text) if term_text.isdigit() else None,
        members=tuple(members),
    )


def read_instances(client: redis_py.Redis, keys: KeySpace) -> list[Instance]:
    """The live members as ``Candidate.get_instances()`` lists them, read with
    :func:`read_snapshot` (one ``MULTI``/``EXEC``, nothing pruned or written).

    In order of joining. A member without a readable record has ``meta``
    None and ``joined_at`` and ``last_seen`` 0.0, and comes last.
    """
    snapshot = read_snapshot(client, keys)
    return [
        Instance(
            m.id,
            m.meta,
            State.LEADER if m.is_leader else State.FOLLOWER,
            0.0 if m.joined_at is None else m.joined_at,
            0.0 if m.last_seen is None else m.last_seen,
        )
        for m in snapshot.members
    ]


def read_leader(client: redis_py.Redis, keys: KeySpace) -> Instance | None:
    """The lease holder as ``Candidate.get_leader()`` gives it, changing nothing.

    Two round trips, O(1) whatever the size of the kind: the lease, then the
    holder's record and membership score together. None when nobody holds
    the lease (or the lease key holds junk). Raises redis-py's errors when
    Redis fails.
    """
    pipe = client.pipeline(transaction=False)  # a key of the wrong type reads as no lease
    pipe.get(keys.leader)
    pipe.get(keys.leader_copy)
    pipe.time()
    lease_value, copy_value, now_reply = pipe.execute(raise_on_error=False)
    if isinstance(now_reply, Exception):
        raise now_reply
    now_ms = int(now_reply[0]) * 1000 + int(now_reply[1]) // 1000
    lease = _held(_ok(lease_value, None), _ok(copy_value, None), now_ms)
    if lease is None:
        return None
    pipe = client.pipeline(transaction=True)
    pipe.hget(keys.meta, lease.holder)
    pipe.zscore(keys.members, lease.holder)
    raw, score = (_ok(reply, None) for reply in pipe.execute(raise_on_error=False))
    try:
        record = decode_record(raw)
    except WireError:
        return Instance(lease.holder, None, State.LEADER, 0.0, 0.0)
    last_seen = record.joined_at  # a holder that is no longer a member
    if isinstance(score, (int, float)) and math.isfinite(score):
        last_seen = score / 1000.0 - record.ttl  # refreshed ttl seconds before it would expire
    return record.instance(lease.holder, State.LEADER, last_seen)


def _held(lease_value: Any, copy_value: Any, now_ms: int) -> LeaseRecord | None:
    """The lease in force: the lease key's, or its copy's while the copy has not run
    out (the lease key vanished: evicted or flushed; see ``held_lease`` in the scripts)."""
    lease = parse_lease(lease_value)
    if lease is not None or lease_value is not None:
        return lease
    copy = parse_lease(copy_value)
    return copy if copy is not None and copy.expires_ms > now_ms else None


def _member(
    member_id: str, score: float, raw: bytes | None, lease: LeaseRecord | None
) -> MemberView:
    leads = lease is not None and lease.holder == member_id
    expires_at = score / 1000.0
    try:
        record = decode_record(raw)
    except WireError:
        meta, joined, seen = None, None, None
    else:
        meta, joined = record.meta, record.joined_at
        seen = expires_at - record.ttl  # refreshed ttl seconds before it would expire
    return MemberView(
        id=member_id,
        state="leader" if leads else "follower",
        meta=meta,
        joined_at=joined,
        last_seen=seen,
        expires_at=expires_at,
        term=lease.term if leads and lease is not None else None,
    )


def read_kind(
    redis: Any = None, *, kind: str, key_prefix: str = "raftredis", timeout: float = 5.0
) -> Snapshot:
    """Read ``kind`` once, without joining it; ``redis`` takes what ``Candidate(redis=...)``
    takes. Raises redis-py's errors (or ``OSError``) if Redis does not answer within
    ``timeout`` seconds."""
    spec = connection_spec(redis)
    keys = KeySpace(key_prefix, kind)
    pool = spec.pool(route_key=keys.base, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return read_snapshot(redis_py.Redis(connection_pool=pool), keys)
    finally:
        pool.disconnect()
