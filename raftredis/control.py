"""The receiving side of the kind's control channel: decode, verify, and route.

Notices about the lease (``elected``, ``resigned``, ``left``) are hints for the
election, so they go to the heartbeat thread. Notices about membership
(``joined``, ``meta``, ``left``) only feed signals, so they go straight to the
dispatch thread, in the order they were heard. Nothing here runs user code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from blinker import NamedSignal

from . import signals
from .election import ControlReceived, Event
from .errors import ProtocolError
from .listener import channel_of
from .signing import ReplayGuard
from .wire import (
    CONTROL_OVERHEAD_BYTES,
    ControlMessage,
    ControlType,
    WireError,
    decode_control,
    notice_head,
)

__all__ = ["MEMBERSHIP_SIGNALS", "ControlInbox", "membership_signal"]

log = logging.getLogger("raftredis")

# Joined and meta notices only feed signals. One whose signal has no receiver is
# dropped before it is decoded or verified (a fleet that starts sends N**2 of them).
_SIGNAL_ONLY = (
    (notice_head(ControlType.JOINED), signals.instance_joined),
    (notice_head(ControlType.META), signals.meta_changed),
)

#: The signals fed by the kind's membership channel: a Candidate subscribes to it
#: only while one of them has a receiver.
MEMBERSHIP_SIGNALS = tuple(signal for _, signal in _SIGNAL_ONLY)

# The notices the election takes as hints about the lease.
_HINTS = (ControlType.ELECTED, ControlType.RESIGNED, ControlType.LEFT)


def membership_signal(
    notice: ControlMessage, my_id: str
) -> tuple[NamedSignal, dict[str, Any]] | None:
    """The signal a notice feeds, with its arguments; None for lease notices and
    for our own joined and meta notices."""
    if notice.type is ControlType.LEFT:
        return signals.instance_left, {"instance_id": notice.id}
    if notice.id == my_id:
        return None
    if notice.type is ControlType.JOINED:
        return signals.instance_joined, {"instance": notice.instance}
    if notice.type is ControlType.META:
        return signals.meta_changed, {"instance": notice.instance}
    return None


class ControlInbox:
    """Handles what one control listener hears (the control and membership channels).

    ``post`` hands an election event to the heartbeat thread; ``submit`` queues
    a signal on the dispatch thread; ``report`` reports an error there.
    """

    def __init__(
        self,
        owner: object,
        my_id: str,
        max_message_bytes: int,
        *,
        post: Callable[[Event], None],
        submit: Callable[[NamedSignal, Mapping[str, Any]], object],
        report: Callable[[BaseException], None],
        guard: ReplayGuard | None = None,
    ) -> None:
        self._owner = owner
        self._id = my_id
        self._max_bytes = max_message_bytes + CONTROL_OVERHEAD_BYTES
        self._post = post
        self._submit = submit
        self._report = report
        # One guard per listener: while a new listener replaces the old, both hear
        # the same notices, and neither copy is a replay.
        self._guard = guard

    def handle(self, message: dict[str, Any]) -> None:
        """A redis-py pub/sub handler: one notice, on the listener thread."""
        data = message.get("data")
        raw = data if isinstance(data, bytes) else b""
        for head, signal in _SIGNAL_ONLY:
            if raw.startswith(head) and not signal.has_receivers_for(self._owner):
                return
        try:
            if self._guard is not None:
                self._guard.check(raw)
            notice = decode_control(raw, self._max_bytes)
        except WireError as exc:
            error = ProtocolError(str(exc), channel=channel_of(message), raw=raw)
            log.warning("%s", error)
            self._report(error)
            return
        if notice.type in _HINTS:
            self._post(ControlReceived(time.monotonic(), notice))
        routed = membership_signal(notice, self._id)
        if routed is not None and routed[0].has_receivers_for(self._owner):
            self._submit(*routed)
