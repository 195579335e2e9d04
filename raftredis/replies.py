"""The typed results of the store's reads and scripts, and the lease value's format."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AcquireReply",
    "HeartbeatReply",
    "LeaseRecord",
    "MemberRow",
    "MembersReply",
    "MemorySettings",
    "RenewReply",
    "TakeoverReply",
    "owner_prefix",
    "parse_lease",
]


@dataclass(frozen=True)
class LeaseRecord:
    """The lease value: term, holder, and its expiry by the server's clock (ms)."""

    term: int
    holder: str
    expires_ms: int

    @property
    def owner_prefix(self) -> str:
        return owner_prefix(self.term, self.holder)


def owner_prefix(term: int, holder: str) -> str:
    """The part of the lease value that identifies its holder: ``"<term> <id> "``."""
    return f"{term} {holder} "


def parse_lease(value: bytes | str | None) -> LeaseRecord | None:
    """Parse a lease value; None for a missing or malformed one."""
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    parts = text.split(" ")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit() or not parts[1]:
        return None
    term = int(parts[0])
    if term >= _MAX_TERM:
        return None
    return LeaseRecord(term, parts[1], int(parts[2]))


#: Terms stay below 2**53 so the Lua scripts (which count in doubles) keep them exact.
_MAX_TERM = 2**53


@dataclass(frozen=True)
class AcquireReply:
    acquired: bool
    lease: LeaseRecord
    remaining_ms: int
    #: Held by its copy: the lease key had vanished (evicted, flushed) before it ran out.
    vanished: bool = False
    #: Fast failover, when taken: our presence channel had a listener as we took it.
    present: bool = False


@dataclass(frozen=True)
class TakeoverReply:
    """What the takeover script found: ``vacant``, ``held`` (by us, or a present holder),
    ``suspect`` (the holder's presence is gone; ``remaining_ms`` until it may be taken)
    or ``acquired`` (taken: ``lease`` is ours)."""

    status: str
    lease: LeaseRecord | None
    remaining_ms: int = 0
    present: bool = False


@dataclass(frozen=True)
class RenewReply:
    renewed: bool
    lease: LeaseRecord | None = None
    remaining_ms: int = 0
    #: Renewed by putting back our lease, whose key had vanished before it ran out.
    restored: bool = False


@dataclass(frozen=True)
class HeartbeatReply:
    added: bool
    lease: LeaseRecord | None
    server_ms: int | None = None
    taken: bool = False
    #: Live members of the kind (full heartbeats only).
    members: int | None = None


@dataclass(frozen=True)
class MemorySettings:
    """Redis' memory limit (bytes, 0: none), eviction policy and count of evicted keys."""

    maxmemory: int | None
    policy: str | None
    evicted_keys: int | None
    #: Why they are unknown, when Redis refused INFO (an ACL without +info).
    refused: str | None = None

    @property
    def may_evict(self) -> bool:
        """True if Redis can evict keys: a memory limit and a policy other than noeviction."""
        return bool(self.maxmemory) and self.policy not in (None, "noeviction")


@dataclass(frozen=True)
class MemberRow:
    id: str
    expires_ms: int
    record: bytes | None


@dataclass(frozen=True)
class MembersReply:
    server_ms: int
    lease: LeaseRecord | None
    rows: list[MemberRow]
