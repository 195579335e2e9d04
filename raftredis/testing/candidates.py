"""Helpers for tests that run Candidates: a group stopped as one, their leader, leaked threads."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .polling import wait_until

if TYPE_CHECKING:
    from ..candidate import Candidate

#: Every thread raftredis starts has a name that begins with this.
THREAD_PREFIX = "raftredis-"


def raftredis_threads() -> list[threading.Thread]:
    """The live threads raftredis started: after every Candidate stopped, none should be."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


@contextlib.contextmanager
def no_leaked_threads(timeout: float = 5.0) -> Iterator[None]:
    """Check that the block leaves no raftredis thread running (after ``timeout`` seconds).

    Threads alive before the block (an earlier test's) are not counted.
    Raises ``AssertionError`` naming the leftovers.
    """
    before = set(raftredis_threads())
    yield

    def leaked() -> list[threading.Thread]:
        return [t for t in raftredis_threads() if t not in before]

    wait_until(
        lambda: not leaked(),
        timeout=timeout,
        message=lambda: f"threads still alive after the test: {[t.name for t in leaked()]}",
    )


def agreed_leader(candidates: Iterable[Candidate]) -> Candidate | None:
    """The leader, if exactly one of ``candidates`` leads and every one of them names it."""
    group = list(candidates)
    leaders = [c for c in group if c.is_leader]
    if len(leaders) != 1:
        return None
    leader = leaders[0]
    return leader if all(c.leader_id == leader.id for c in group) else None


class CandidateGroup:
    """Candidates of one kind on one Redis, for tests; :meth:`close` stops every one.

    ``defaults`` are keyword arguments for every Candidate (``lease_ttl=1.0``,
    say); :meth:`new` and :meth:`start` take more, which win. Use it as a
    context manager to stop them all at the end of a test, also on failure.
    """

    def __init__(self, redis: Any, kind: str, **defaults: Any) -> None:
        self.redis = redis
        self.kind = kind
        self.defaults = defaults
        self.candidates: list[Candidate] = []

    def new(self, **kwargs: Any) -> Candidate:
        """A Candidate of this kind, not started (but stopped at :meth:`close`)."""
        from ..candidate import Candidate

        candidate = Candidate(**{"redis": self.redis, "kind": self.kind, **self.defaults, **kwargs})
        self.candidates.append(candidate)
        return candidate

    def start(self, **kwargs: Any) -> Candidate:
        """A new, started Candidate."""
        return self.new(**kwargs).start()

    def start_many(self, n: int, **kwargs: Any) -> list[Candidate]:
        """``n`` new Candidates, started one after the other."""
        return [self.start(**kwargs) for _ in range(n)]

    def leaders(self) -> list[Candidate]:
        """The Candidates that lead now (more than one would be a bug)."""
        return [c for c in self.candidates if c.is_leader]

    def close(self) -> None:
        """Stop every Candidate, newest first; raise the first error once all were tried."""
        errors: list[BaseException] = []
        for candidate in reversed(self.candidates):
            try:
                candidate.stop(timeout=5.0)
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self.candidates.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> CandidateGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
