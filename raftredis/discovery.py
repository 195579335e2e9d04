"""Discovery: the kind's members and leader as Instances, from what the store read."""

from __future__ import annotations

import logging

from .models import Instance, State
from .replies import MembersReply
from .wire import MemberRecord, WireError, decode_record

__all__ = ["instances_from", "leader_from"]

log = logging.getLogger("raftredis")


def instances_from(
    reply: MembersReply, my_id: str, my_state: State, member_expiry: float
) -> list[Instance]:
    """Every live member, in order of joining; ``my_state`` is this instance's own.

    A member whose record is missing or unreadable (its meta hash entry was
    lost) is listed with ``meta`` None until it writes its record again.
    """
    holder = reply.lease.holder if reply.lease is not None else None
    instances = []
    for row in reply.rows:
        try:
            record = decode_record(row.record)
        except WireError as exc:
            log.debug("member %r has no usable record: %s", row.id, exc)
            record = MemberRecord(None, row.expires_ms / 1000.0 - member_expiry, member_expiry)
        if row.id == my_id:
            state = my_state
        else:
            state = State.LEADER if row.id == holder else State.FOLLOWER
        last_seen = (row.expires_ms - record.ttl * 1000.0) / 1000.0
        instances.append(record.instance(row.id, state, last_seen))
    instances.sort(key=lambda i: (i.joined_at, i.id))
    return instances


def leader_from(holder: str, raw: bytes | None, expires_ms: int | None) -> Instance:
    """The lease holder as an Instance, from its record and membership expiry (ms)."""
    try:
        record = decode_record(raw)
    except WireError:
        return Instance(holder, None, State.LEADER, 0.0, 0.0)
    last_seen = record.joined_at  # a holder that is no longer a member
    if expires_ms is not None:
        last_seen = (expires_ms - record.ttl * 1000.0) / 1000.0
    return record.instance(holder, State.LEADER, last_seen)
