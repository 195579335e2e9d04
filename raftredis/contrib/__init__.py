"""Framework integrations, and the pieces they share.

* :mod:`raftredis.contrib.flask`: the ``RaftRedis`` Flask extension;
* :mod:`raftredis.contrib.django`: a Django app (``INSTALLED_APPS``).

Importing this package imports neither Flask nor Django. What is here serves
any integration with a pre-fork server (gunicorn, uWSGI):

* :data:`SETTING_KEYS` names a setting (``KIND``, ``LEASE_TTL``, ``SECRET``...)
  for every Candidate option; :func:`parse_settings` checks settings with
  :class:`~raftredis.config.Config` and reports each problem under its
  setting, and :func:`unknown_settings` refuses the keys that are not
  settings (in :mod:`raftredis.contrib.settings`);
* :class:`LazyCandidate` is this process's Candidate: built and started on
  first use, so never in a process that only forks workers
  (``gunicorn --preload``), and built anew in a forked child;
* :class:`Hooks` keeps receivers and ``while_leader`` functions registered at
  import time, and attaches them to every Candidate built later (both in
  :mod:`raftredis.contrib.lazy`);
* :func:`read_status` reads the members and the leader of a kind without
  joining it (for status commands).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from ..observe import Snapshot, read_kind
from .lazy import RETRY_AFTER, Hooks, LazyCandidate
from .settings import (
    SETTING_KEYS,
    TIMING_KEYS,
    SettingProblem,
    Settings,
    closest_setting,
    parse_settings,
    unknown_settings,
)

__all__ = [
    "RETRY_AFTER",
    "SETTING_KEYS",
    "TIMING_KEYS",
    "Hooks",
    "LazyCandidate",
    "SettingProblem",
    "Settings",
    "closest_setting",
    "format_status",
    "parse_settings",
    "read_status",
    "unknown_settings",
]


# ------------------------------------------------------------------ status


def read_status(
    *, redis: Any = None, kind: str, key_prefix: str = "raftredis", timeout: float = 5.0
) -> Snapshot:
    """The kind's live members and leader, read without joining it (see
    :func:`raftredis.observe.read_kind`)."""
    return read_kind(redis, kind=kind, key_prefix=key_prefix, timeout=timeout)


def format_status(status: Snapshot, where: str = "") -> str:
    """``status`` as a few lines of text for a terminal (``where``: the Redis it came from)."""

    def when(seconds: float | None) -> str:
        if not seconds or seconds <= 0:
            return "?"
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
        return moment.strftime("%Y-%m-%d %H:%M:%SZ")

    leader = status.leader
    named = "none" if leader is None else f"{leader.id} (term {leader.term})"
    lines = [
        f"kind: {status.kind}" + (f" ({where})" if where else ""),
        f"leader: {named}",
        f"instances: {len(status.members)}",
    ]
    for m in status.members:
        meta = json.dumps(m.meta, sort_keys=True, default=str)
        lines.append(f"  {m.id}  {m.state:<8}  joined {when(m.joined_at)}  meta {meta}")
    return "\n".join(lines)
