"""The command line of ``python -m raftredis.demo``: parse, check, then run the demo or a worker."""

from __future__ import annotations

import argparse
import math
import signal
import sys
from collections.abc import Sequence

from ..candidate import Candidate
from ..errors import ConfigurationError
from ..timing import Timings
from .jobs import DEFAULT_KIND
from .supervisor import Supervisor
from .worker import run_worker

__all__ = ["build_parser", "main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m raftredis.demo``."""
    parser = argparse.ArgumentParser(
        prog="python -m raftredis.demo",
        description=(
            "Leader election, fencing and failover on real processes: N workers elect a "
            "leader that pushes jobs, the followers process them, and the leader is killed "
            "or asked to resign every few seconds."
        ),
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=4, metavar="N",
        help="number of worker processes to keep running (default: 4)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=_positive_float, default=60.0, metavar="SECONDS",
        help="stop after this many seconds (default: 60); Ctrl-C stops earlier",
    )  # fmt: skip
    parser.add_argument(
        "--kind", default=DEFAULT_KIND,
        help=f"the kind (service name) the workers share (default: {DEFAULT_KIND})",
    )  # fmt: skip
    parser.add_argument(
        "--lease-ttl", type=_positive_float, default=3.0, metavar="SECONDS",
        help="lease_ttl of every Candidate; a killed leader is replaced about this fast "
        "(default: 3.0)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=_positive_float, default=5.0, metavar="JOBS_PER_S",
        help="jobs the leader pushes per second (default: 5)",
    )  # fmt: skip
    parser.add_argument(
        "--fault-interval", type=_non_negative_float, default=10.0, metavar="SECONDS",
        help="disrupt the leader this often, alternating SIGKILL and reelect(); "
        "0 for no faults (default: 10)",
    )  # fmt: skip
    parser.add_argument(
        "--report-every", type=_positive_float, default=5.0, metavar="SECONDS",
        help="print the job counts this often (default: 5)",
    )  # fmt: skip
    parser.add_argument(
        "--redis-url", default=None, metavar="URL",
        help="use this Redis (e.g. redis://localhost:6379/0) instead of starting one",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true",
        help="also print the summary as one line of JSON at the end",
    )  # fmt: skip
    # Worker mode: how the demo starts its own worker processes.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo (or, with the hidden ``--worker`` flag, one worker); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        Timings.from_lease(args.lease_ttl)
        Candidate(kind=args.kind)  # checks the kind; touches no network
    except ConfigurationError as exc:
        parser.error(str(exc))
    if args.worker:
        if not args.redis_url:
            parser.error("--worker needs --redis-url")
        return run_worker(args)
    demo = Supervisor(args)
    previous = {
        signum: signal.signal(signum, demo.on_signal) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        return demo.run()
    except Exception as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
