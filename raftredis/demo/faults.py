"""What the demo records: the faults it injects, the failovers they cause, elections.

A fault disrupts the leader, alternating between ``SIGKILL`` (its lease has
to expire before another worker can lead) and asking it to ``reelect()`` (it
resigns and announces it). The failover time runs from the fault to the
``elected`` event of the next leader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FAULT_LABEL", "KILL", "REELECT", "Election", "Failover", "Fault"]

KILL, REELECT = "kill", "reelect"
FAULT_LABEL = {KILL: "SIGKILL", REELECT: "reelect()"}


@dataclass
class Fault:
    """A fault injected into the leader, waiting for the next leader to be elected."""

    number: int
    kind: str
    victim: int
    victim_id: str | None
    term: int
    at: float  # wall clock
    timeout_at: float  # monotonic

    def outcome(
        self, leader: int | None, leader_id: str | None, term: int | None, ms: float | None
    ) -> Failover:
        """The failover this fault caused (all None: no new leader in time)."""
        return Failover(
            number=self.number,
            fault=self.kind,
            victim=self.victim,
            victim_id=self.victim_id,
            old_term=self.term,
            new_leader=leader,
            new_leader_id=leader_id,
            new_term=term,
            ms=ms,
        )


@dataclass
class Failover:
    """How a fault ended: who leads next, in which term, and how many ms it took."""

    number: int
    fault: str
    victim: int
    victim_id: str | None
    old_term: int
    new_leader: int | None
    new_leader_id: str | None
    new_term: int | None
    ms: float | None

    @property
    def handover(self) -> bool:
        """True if another worker took over (not the victim re-elected)."""
        return self.new_leader is not None and self.new_leader != self.victim

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "fault": self.fault,
            "victim": self.victim,
            "victim_id": self.victim_id,
            "old_term": self.old_term,
            "new_leader": self.new_leader,
            "new_leader_id": self.new_leader_id,
            "new_term": self.new_term,
            "ms": None if self.ms is None else round(self.ms, 1),
            "handover": self.handover,
        }


@dataclass
class Election:
    """A worker's ``elected`` event."""

    worker: int
    id: str | None
    term: int
    at: float
