"""Kill a command's process group when the ``raftredis run`` that started it dies.

Started by ``raftredis run`` (see ``child.py``) as ``python -I -S _reaper.py GRACE``
in a session of its own, with the read end of a pipe as stdin, before the
command. The supervisor writes the command's process group id, then, when it
has stopped the command itself, ``done``. If stdin ends without ``done`` (the
supervisor was killed: SIGKILL, OOM, a crash), the reaper sends SIGTERM to the
group, waits up to GRACE seconds for it to empty, then sends SIGKILL. So an
orphaned command does not go on running beside the one the next leader starts.

Standard library only, and no import of raftredis: it starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (also used by child.py)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    """Wait for the supervisor's word or its death; clean up the group on its death."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    grace = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    stdin = sys.stdin.buffer
    first = stdin.readline().strip()
    if not first.isdigit():
        return 0  # the command never started
    pgid = int(first)
    if stdin.readline().strip() == b"done":
        return 0  # the supervisor stopped the command itself
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return 0
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
