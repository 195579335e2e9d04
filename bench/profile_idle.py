"""What an idle Candidate costs in client CPU, and where it goes.

    python -m bench.profile_idle [--count 50] [--seconds 6] [--sleep-times 0.1,1.0]

Starts ``count`` Candidates of one kind in this process, lets them settle,
and measures the process CPU over ``seconds``, once per pub/sub listener
``sleep_time``. raftredis' listeners call redis-py's
``run_in_thread(sleep_time=0.1)``, whose loop calls ``get_message(timeout=
sleep_time)``: every listener wakes up 10 times a second even when nothing
arrives, and each Candidate has two. Values other than the default are set
by patching the keyword default of ``raftredis.listener.Listener`` (a diagnostic,
not an API). Then the cost of one idle ``get_message`` wake-up is timed on
its own.
"""

from __future__ import annotations

import argparse
import time

import psutil

import raftredis.listener
from raftredis import Candidate
from raftredis.connection import connection_spec
from raftredis.timing import Timings

from .common import redis_server, settle, stop_all


def idle_cpu(url: str, count: int, seconds: float, sleep_time: float) -> float:
    """CPU µs per second per idle Candidate with listeners at ``sleep_time``."""
    defaults = raftredis.listener.Listener.__init__.__kwdefaults__
    assert defaults is not None
    saved = defaults["sleep_time"]
    defaults["sleep_time"] = sleep_time
    cands: list[Candidate] = []
    try:
        kind = f"idle-{sleep_time:g}"
        cands = [Candidate(redis=url, kind=kind).start() for _ in range(count)]
        settle(cands)
        time.sleep(2.0)
        proc = psutil.Process()
        c0, t0 = proc.cpu_times(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = proc.cpu_times(), time.monotonic()
        cpu = (c1.user + c1.system - c0.user - c0.system) / (t1 - t0)
        return float(cpu) / count * 1e6
    finally:
        defaults["sleep_time"] = saved
        stop_all(cands)


def wakeup_cost(url: str, calls: int = 2000) -> float:
    """CPU µs of one ``get_message(timeout=...)`` that times out on an idle channel."""
    client = connection_spec(url).client(Timings(), retries=0)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe("idle-probe")
        while pubsub.get_message(timeout=1.0) is None:
            pass
        c0 = time.process_time()
        for _ in range(calls):
            pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0005)
        return (time.process_time() - c0) / calls * 1e6
    finally:
        pubsub.close()
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--sleep-times", default="0.1,1.0")
    args = parser.parse_args()
    with redis_server() as server:
        for sleep_time in (float(x) for x in args.sleep_times.split(",")):
            per = idle_cpu(server.url, args.count, args.seconds, sleep_time)
            print(
                f"listener sleep_time {sleep_time:g} s: {per:.0f} µs CPU per second per idle "
                f"Candidate; 1,000 of them: {per * 1000 / 1e4:.0f}% of one core"
            )
        print(f"one idle get_message wake-up: {wakeup_cost(server.url):.1f} µs CPU")


if __name__ == "__main__":
    main()
