"""Kind names for tests that share one Redis, and a kind's members as Redis holds them."""

from __future__ import annotations

import uuid

import redis


def unique_kind(prefix: str = "svc") -> str:
    """A kind name no other test uses: ``prefix``, a dash and ten random hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def members(client: redis.Redis, kind: str) -> set[str]:
    """The instance ids in ``kind``'s members zset (the default key prefix), read directly."""
    ids = client.zrange(f"raftredis:{{{kind}}}:members", 0, -1)
    return {m.decode() if isinstance(m, bytes) else str(m) for m in ids}
