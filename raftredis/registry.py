"""The Candidates running in this process, and the process-wide hooks that need them.

* After a fork, the child marks every running Candidate as left behind (its
  threads did not survive the fork).
* At interpreter exit, every running Candidate stops cleanly, so the others
  take over at once instead of waiting for the lease to run out.
* When a receiver is connected to a membership signal (``instance_joined``,
  ``meta_changed``), running Candidates start hearing those notices.
"""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from typing import Any, Protocol

from .control import MEMBERSHIP_SIGNALS

__all__ = ["add", "discard", "running"]

log = logging.getLogger("raftredis")


class Member(Protocol):
    """What the process-wide hooks call on a running Candidate."""

    def stop(self, timeout: float | None = None) -> None: ...
    def _forked_away(self) -> None: ...
    def _hear_membership(self) -> None: ...


_running: weakref.WeakSet[Any] = weakref.WeakSet()


def add(member: Member) -> None:
    """``member`` runs in this process now."""
    _running.add(member)


def discard(member: Member) -> None:
    """``member`` no longer runs."""
    _running.discard(member)


def running() -> list[Member]:
    """The Candidates running in this process."""
    return list(_running)


def _after_fork_in_child() -> None:
    for member in running():
        member._forked_away()


def _stop_at_exit() -> None:
    for member in running():
        try:
            member.stop(timeout=1.0)
        except Exception:  # never let one failure stop the others or the exit
            log.exception("raftredis: stopping %r at exit failed", member)


def _membership_receiver_connected(signal: Any, **kwargs: Any) -> None:
    for member in running():
        member._hear_membership()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_stop_at_exit)
for _signal in MEMBERSHIP_SIGNALS:
    _signal.receiver_connected.connect(_membership_receiver_connected, sender=_signal, weak=False)
