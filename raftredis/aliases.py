"""The node-raft-redis names of a Candidate's methods (camelCase), as aliases."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import Instance

__all__ = ["NodeRaftRedisNames"]


class NodeRaftRedisNames:
    """Mixin: ``messageTo``, ``getInstances``... call the snake_case methods."""

    if TYPE_CHECKING:  # what the aliases call, defined by Candidate

        def message_to(self, instance_id: str, payload: Any) -> int: ...

        def message_all(self, payload: Any) -> int: ...

        def message_followers(self, payload: Any) -> int: ...

        def message_leader(self, payload: Any) -> int: ...

        def get_instances(self) -> list[Instance]: ...

        def get_leader(self) -> Instance | None: ...

        def get_meta(self) -> Any: ...

        def set_meta(self, meta: Any) -> None: ...

        @property
        def current_term(self) -> int: ...

    def messageTo(self, instance_id: str, payload: Any) -> int:
        """Alias of :meth:`message_to` (node-raft-redis name)."""
        return self.message_to(instance_id, payload)

    def messageAll(self, payload: Any) -> int:
        """Alias of :meth:`message_all` (node-raft-redis name)."""
        return self.message_all(payload)

    def messageFollowers(self, payload: Any) -> int:
        """Alias of :meth:`message_followers` (node-raft-redis name)."""
        return self.message_followers(payload)

    def messageLeader(self, payload: Any) -> int:
        """Alias of :meth:`message_leader` (node-raft-redis name)."""
        return self.message_leader(payload)

    def getInstances(self) -> list[Instance]:
        """Alias of :meth:`get_instances` (node-raft-redis name)."""
        return self.get_instances()

    def getLeader(self) -> Instance | None:
        """Alias of :meth:`get_leader` (node-raft-redis name)."""
        return self.get_leader()

    def getMeta(self) -> Any:
        """Alias of :meth:`get_meta` (node-raft-redis name)."""
        return self.get_meta()

    def setMeta(self, meta: Any) -> None:
        """Alias of :meth:`set_meta` (node-raft-redis name)."""
        self.set_meta(meta)

    @property
    def currentTerm(self) -> int:
        """Alias of :attr:`current_term` (node-raft-redis name)."""
        return self.current_term
