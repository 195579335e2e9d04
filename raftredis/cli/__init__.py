"""The ``raftredis`` command-line tool: status, watch, send, run, demo.

This module is the console-script entry point. It imports nothing beyond the
standard library at import time, so that without the ``cli`` extra (click and
rich) the tool can still say what to install instead of raising a traceback.
The commands live in :mod:`raftredis.cli.app`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["MISSING_EXTRA", "main"]

#: Printed (to stderr) when click or rich is not installed.
MISSING_EXTRA = (
    "raftredis: the command-line tool needs click and rich: pip install 'raftredis[cli]'"
)
_CLI_DEPENDENCIES = frozenset({"click", "rich"})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``raftredis`` command line and return its exit code.

    ``argv`` defaults to ``sys.argv[1:]``. Exit codes: 0 success, 1 failure,
    2 usage error (``run --once`` passes on its command's code).
    """
    try:
        from .app import run_cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _CLI_DEPENDENCIES:
            raise
        print(MISSING_EXTRA, file=sys.stderr)
        return 1
    return run_cli(argv)
