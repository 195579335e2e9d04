"""``python -m raftredis.demo``: the demo, or one of its workers (``--worker``)."""

from __future__ import annotations

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
