"""gunicorn settings for the example: ``gunicorn -c gunicorn.conf.py app:app``.

Each worker is one instance of the kind (one Candidate per worker); exactly
one worker of all the hosts leads. ``GUNICORN_BIND`` and ``GUNICORN_WORKERS``
override the address and the number of workers.
"""

from __future__ import annotations

import os
from typing import Any

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
worker_class = "sync"
# Safe with raftredis: init_app() does no I/O, and each worker builds and starts its
# own Candidate after the fork. The master never joins the kind.
preload_app = True
graceful_timeout = 10


def post_worker_init(worker: Any) -> None:
    """Join as soon as the worker is ready, not at its first request, so that the
    leader-only jobs run even when no request comes."""
    from app import raft  # the module gunicorn loaded (app:app)

    try:
        raft.start(worker.wsgi)
    except Exception as exc:  # Redis down: the worker serves anyway, and retries on requests
        worker.log.warning("raftredis did not start in worker %s: %s", worker.pid, exc)


def worker_exit(server: Any, worker: Any) -> None:
    """Leave at once when the worker stops, so another takes over without waiting
    for the lease to expire."""
    from app import raft

    if getattr(worker, "wsgi", None) is not None:
        raft.stop(worker.wsgi, timeout=2.0)
