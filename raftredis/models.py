"""Plain data types of the public API: State, Scope, Instance, Message."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Instance", "Message", "Scope", "State"]


class State(str, enum.Enum):
    """The role of a Candidate. The values are node-raft-redis' state names."""

    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"

    def __str__(self) -> str:
        return self.value


class Scope(str, enum.Enum):
    """To whom a message was addressed."""

    DIRECT = "direct"
    ALL = "all"
    FOLLOWERS = "followers"
    LEADER = "leader"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Instance:
    """One live member of a kind, as read from Redis.

    ``joined_at`` and ``last_seen`` are Unix times in seconds by the Redis
    server's clock, so instances on different hosts compare fairly.
    """

    id: str
    meta: Any
    state: State
    joined_at: float
    last_seen: float

    @property
    def is_leader(self) -> bool:
        """True if this instance held the lease when it was read."""
        return self.state is State.LEADER


@dataclass(frozen=True)
class Message:
    """A message received from another instance of the kind.

    ``from_leader`` is true when the sender held the lease when it sent the
    message and its ``term`` is not older than the newest term the receiver
    knew when the message arrived. ``sent_at`` is the sender's wall clock.
    """

    payload: Any
    sender_id: str
    scope: Scope
    from_leader: bool
    term: int
    message_id: str
    sent_at: float
    kind: str = field(default="", compare=False)
    #: True for a message sent with ``reliable=True`` (kept in Redis until taken).
    reliable: bool = field(default=False, compare=False)

    # Seed-style names: node-raft-redis hands receivers ``{message, from}``.
    @property
    def message(self) -> Any:
        """The payload (node-raft-redis' ``message``)."""
        return self.payload

    @property
    def sender(self) -> str:
        """The sender's instance id (node-raft-redis' ``from``)."""
        return self.sender_id
