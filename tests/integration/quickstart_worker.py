"""One process of test_quickstart_processes.py: the README quick start, started and stopped
again and again.

Run as ``python quickstart_worker.py URL KIND ROUNDS SEED``. Each round builds a
Candidate (lease_ttl=1) with the quick start's receivers (an ``elected``
receiver that messages the followers and lists the instances; a ``defeated``
one that messages the new leader), starts it, keeps it a few milliseconds and
stops it. Prints one JSON line: how many rounds ran, how often the receivers
ran, and every error reported on the ``error`` signal or raised by a call.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from typing import Any

from raftredis import Candidate, signals


def main(url: str, kind: str, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    errors: list[str] = []
    counts = {"rounds": 0, "elected": 0, "defeated": 0, "listed": 0}
    lock = threading.Lock()

    def note_error(text: str) -> None:
        with lock:
            errors.append(text)

    for _ in range(rounds):
        candidate = Candidate(redis=url, kind=kind, lease_ttl=1.0, meta={"pid": id(errors)})

        def on_elected(sender: Candidate, term: int, **extra: Any) -> None:
            with lock:
                counts["elected"] += 1
            sender.message_followers("Hello from leader")
            sender.get_instances()  # raises (reported on error) if it cannot list
            with lock:
                counts["listed"] += 1

        def on_defeated(sender: Candidate, leader: str | None, **extra: Any) -> None:
            with lock:
                counts["defeated"] += 1
            if leader is not None:
                sender.message_leader("Hello from your new follower")

        candidate.on("elected", on_elected)
        signals.defeated.connect(on_defeated, sender=candidate, weak=False)
        candidate.on("message", lambda sender, message, **extra: None)
        candidate.on(
            "error", lambda sender, error, **extra: note_error(f"{type(error).__name__}: {error}")
        )
        try:
            candidate.start()
            time.sleep(rng.uniform(0.0, 0.05))  # overlap the others' starts and stops
        except Exception as exc:
            note_error(f"start: {type(exc).__name__}: {exc}")
        finally:
            candidate.stop()
        counts["rounds"] += 1
    print(json.dumps({**counts, "errors": errors}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
