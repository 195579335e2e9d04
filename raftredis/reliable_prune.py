"""The leader removes what departed reliable readers left behind, and reports it.

An instance that reads reliable messages is in its kind's reliable index
(``KeySpace.reliable_index``) from its join to its clean stop, which drops its
stream and its group on the stream for all. One that crashed and never comes
back leaves them. The leader's reliable thread runs ``lua/reliable_prune.lua``
PRUNE_AFTER_ELECTION seconds after it is elected and every PRUNE_INTERVAL
seconds from then on (one script call): an indexed instance that is no member
is marked gone, and once it has been gone for PRUNE_GRACE member expiries (so an
instance restarting with its id meanwhile keeps its messages), its stream, its
group and its index entry are removed, and what they still held is reported as
a MessagesLostError.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from .errors import MessagesLostError
from .keys import KeySpace
from .store import reliable_prune_script
from .stream_format import text

__all__ = ["PRUNE_AFTER_ELECTION", "PRUNE_GRACE", "PRUNE_INTERVAL", "ReliablePruner"]

log = logging.getLogger("raftredis")

#: Seconds between two prunes by the leader.
PRUNE_INTERVAL = 60.0
#: Seconds from an election to the new leader's first prune.
PRUNE_AFTER_ELECTION = 5.0
#: How long an instance is gone before what it left is removed, in member expiries
#: (of the leader's timings): counted from its expiry, or from when the leader first
#: saw it gone; removed by the first prune after that.
PRUNE_GRACE = 2.0
#: Most departed instances removed by one prune (the rest by the next ones).
PRUNE_BATCH = 100


class ReliablePruner:
    """Runs the prune on ``client`` when due (see :meth:`tick`), and reports what was
    dropped with ``report``. Used by the leader's reliable thread only."""

    def __init__(
        self,
        client: redis.Redis,
        keys: KeySpace,
        member_expiry: float,
        report: Callable[[BaseException], None],
    ) -> None:
        self._keys = keys
        self._member_expiry = member_expiry
        self._report = report
        self._script = client.register_script(reliable_prune_script(keys))
        self._next = 0.0

    def elected(self) -> None:
        """This instance leads from now on: prune soon."""
        self._next = time.monotonic() + PRUNE_AFTER_ELECTION

    def tick(self) -> float:
        """Prune if it is time; return the seconds until the next prune."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PRUNE_INTERVAL
            self.prune()
            now = time.monotonic()
        return max(0.0, self._next - now)

    def prune(self) -> None:
        """Remove what departed instances left (one script call); report each one's loss."""
        k = self._keys
        grace_ms = int(PRUNE_GRACE * self._member_expiry * 1000)
        try:
            flat = self._script(
                keys=[k.reliable_index, k.members, k.reliable_all],
                args=[k.reliable_prefix, grace_ms, PRUNE_BATCH],
            )
        except redis.ResponseError as exc:  # refused (an ACL): what they left stays
            log.warning("raftredis: removing what departed reliable readers left failed: %s", exc)
            return
        except (redis.RedisError, OSError) as exc:
            log.info("raftredis: removing what departed reliable readers left failed: %s", exc)
            return
        try:
            dropped = [(text(flat[i]), int(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]
        except (TypeError, ValueError) as exc:
            log.warning("raftredis: an unreadable reply to the reliable_prune script: %s", exc)
            return
        for instance, count in dropped:
            if not count:
                log.info("raftredis: removed the empty reliable stream of departed %s", instance)
                continue
            self._report(
                MessagesLostError(
                    f"instance {instance} left without stopping; {count} reliable message(s) "
                    "to it were dropped (with its stream, once it had been gone for "
                    f"{PRUNE_GRACE * self._member_expiry:g} s)",
                    count=count,
                )
            )
