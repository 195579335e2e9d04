"""KeySpace: the names of a kind's Redis keys and channels, in one place."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeySpace"]


@dataclass(frozen=True)
class KeySpace:
    """The Redis keys and channels of one kind under one prefix.

    ``{kind}`` is a hash tag: every key of a kind lands in one Redis Cluster
    slot, so the multi-key scripts work there too. ``sharded`` (in a Redis
    Cluster) publishes with SPUBLISH and subscribes with SSUBSCRIBE, which
    keep a kind's messages on the shard that serves its slot.
    """

    prefix: str
    kind: str
    sharded: bool = False

    @property
    def publish_command(self) -> str:
        """PUBLISH, or SPUBLISH on a sharded (Redis Cluster) kind."""
        return "SPUBLISH" if self.sharded else "PUBLISH"

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.kind}}}"

    @property
    def leader(self) -> str:
        return f"{self.base}:leader"

    @property
    def leader_copy(self) -> str:
        """The lease's copy, without a TTL: eviction under a ``volatile-*`` policy
        cannot take it, so a lease that vanished is known to be held until it
        would have run out (see ``held_lease`` in ``lua/_lib.lua``)."""
        return f"{self.base}:leader-copy"

    @property
    def term(self) -> str:
        return f"{self.base}:term"

    @property
    def members(self) -> str:
        return f"{self.base}:members"

    @property
    def meta(self) -> str:
        return f"{self.base}:meta"

    @property
    def takeover(self) -> str:
        """Fast failover: the suspicion that the lease holder's presence connection is
        gone, with when it was first seen gone (see ``lua/takeover.lua``)."""
        return f"{self.base}:takeover"

    @property
    def presence_term(self) -> str:
        """Fast failover: ``"<term> <holder>"`` of a lease whose holder proves its presence;
        only such a lease can be taken over (see ``lua/takeover.lua``)."""
        return f"{self.base}:presence-term"

    @property
    def presence_prefix(self) -> str:
        return f"{self.base}:presence:"

    def presence(self, instance_id: str) -> str:
        """Fast failover: the channel an instance's control listener listens on, so that
        Redis counts its presence connection (``PUBSUB NUMSUB``); nothing is published."""
        return f"{self.presence_prefix}{instance_id}"

    @property
    def control(self) -> str:
        return f"{self.base}:control"

    @property
    def membership(self) -> str:
        """joined and meta notices: heard only by instances with receivers for them."""
        return f"{self.base}:membership"

    @property
    def all(self) -> str:
        return f"{self.base}:all"

    @property
    def followers(self) -> str:
        return f"{self.base}:followers"

    @property
    def inbox_prefix(self) -> str:
        return f"{self.base}:to:"

    def inbox(self, instance_id: str) -> str:
        return f"{self.inbox_prefix}{instance_id}"

    # Reliable delivery (reliable.py): Redis Streams, under the kind's hash tag.

    @property
    def reliable_prefix(self) -> str:
        return f"{self.base}:rq:"

    def reliable(self, instance_id: str) -> str:
        """The stream of reliable messages to one instance (its consumer group: its id)."""
        return f"{self.reliable_prefix}{instance_id}"

    @property
    def reliable_all(self) -> str:
        """The stream of reliable messages to all (and to the followers): a group per member."""
        return f"{self.base}:rq-all"

    @property
    def reliable_leader(self) -> str:
        """The stream of reliable messages to whoever leads when they are read (group "leader")."""
        return f"{self.base}:rq-leader"

    @property
    def reliable_index(self) -> str:
        """The hash of the instances that read reliable messages: id -> when it joined (ms),
        then `` gone <ms>`` once the leader saw it was no member (lua/reliable_prune.lua)."""
        return f"{self.base}:rq-index"

    def reply(self, asker_id: str, ask_id: str) -> str:
        """The list an answer to one request is pushed to (it expires with the request)."""
        return f"{self.base}:reply:{asker_id}:{ask_id}"
