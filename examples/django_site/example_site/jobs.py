"""Work that must run in one process of the whole site: a while_leader function."""

from __future__ import annotations

import logging
import os

import raftredis.contrib.django as raft
from raftredis import Leadership

log = logging.getLogger(__name__)


@raft.while_leader
def scheduler(stop: Leadership) -> None:
    """Runs in one thread of the leading process; ``stop`` is set when it stops leading."""
    while not stop.wait(10.0):
        log.warning("pid %d leads (term %d): running the scheduled jobs", os.getpid(), stop.term)
