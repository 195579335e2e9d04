"""Redis cost: commands per second per instance at steady state, default timings.

Counted the way ``INFO commandstats`` counts (an ``EVALSHA`` plus every
``redis.call`` inside the script), without the ``INFO`` calls of the
measurement. Each kind size runs against a Redis server of its own, all at
the same time over the same window (command counts do not depend on CPU
speed, and this saves minutes). The window is cut into sub-windows of
``member_expiry`` (6 s: the leader's full-heartbeat period): the figures give
min / median / p99 over those, and the target is judged on the mean over the
whole window.

Leader and follower are split with the kind of one instance (leader only):
``follower = (total - leader) / (n - 1)``.

Baseline: the command budget worked out from the timings (docs/concepts.md,
"The Redis command budget"): a leader renews (2 commands) every
``renew_interval`` and refreshes its membership (1) every
``membership_refresh``, with the full heartbeat script (6) every
``member_expiry`` instead; a follower refreshes and reads the lease (2) every
``membership_refresh``, with the full script (6) every ``clock_sync_interval``
instead.
"""

from __future__ import annotations

import contextlib
import time

import redis

from raftredis import Candidate
from raftredis.testing import RedisServer
from raftredis.timing import Timings

from .common import (
    MAX_CLIENTS,
    Check,
    Config,
    Figure,
    command_calls,
    config_from_args,
    log,
    settle,
    stop_all,
    table,
)

BENCH = "redis cost"
TARGET = 2.5


def budget(t: Timings) -> tuple[float, float]:
    """(leader, follower) commands per second by the model."""
    renew = 2 / t.renew_interval
    refreshes = t.member_expiry / t.membership_refresh
    leader = renew + ((refreshes - 1) * 1 + 6) / t.member_expiry
    syncs = t.clock_sync_interval / t.membership_refresh
    follower = ((syncs - 1) * 2 + 6) / t.clock_sync_interval
    return leader, follower


def run(cfg: Config) -> list[Figure]:
    sizes: tuple[int, ...] = cfg.pick((1, 3), (1, 3, 10))
    window = cfg.window(12.0, 30.0)
    timings = Timings()
    step = timings.member_expiry
    parts = max(1, round(window / step))
    leader_model, follower_model = budget(timings)
    figures: list[Figure] = []
    servers: dict[int, RedisServer] = {}
    cands: list[Candidate] = []
    rates: dict[int, list[float]] = {}
    means: dict[int, float] = {}
    clients: dict[int, redis.Redis] = {}
    try:
        for n in sizes:
            server = RedisServer(extra_args=["--maxclients", str(MAX_CLIENTS)])
            servers[n] = server
            server.start()
            group = [Candidate(redis=server.url, kind=f"cost-{n}").start() for _ in range(n)]
            cands += group
            settle(group)
        # Past the start-up traffic (joins, the first campaigns, notice-driven reads).
        time.sleep(cfg.pick(3.0, 5.0))
        clients.update({n: s.client() for n, s in servers.items()})
        log(f"redis cost: {sizes} instances, {parts} x {step:g} s window")
        marks: dict[int, list[tuple[float, int]]] = {n: [] for n in sizes}

        def mark() -> None:
            for n, client in clients.items():
                marks[n].append((time.monotonic(), command_calls(client)))

        mark()
        for _ in range(parts):
            time.sleep(max(0.0, marks[sizes[0]][-1][0] + step - time.monotonic()))
            mark()
        for n in sizes:
            m = marks[n]
            rates[n] = [(c1 - c0) / (t1 - t0) / n for (t0, c0), (t1, c1) in zip(m, m[1:])]
            means[n] = (m[-1][1] - m[0][1]) / (m[-1][0] - m[0][0]) / n
    finally:
        for client in clients.values():
            client.close()
        stop_all(cands)
        for server in servers.values():
            with contextlib.suppress(Exception):
                server.stop()

    for n in sizes:
        model = (leader_model + (n - 1) * follower_model) / n
        figures.append(
            Figure(
                BENCH,
                "leader alone (a kind of 1), commands/s"
                if n == 1
                else f"commands/s per instance, {n} instances",
                "cmd/s",
                rates[n],
                baseline_name="budget model",
                baseline_samples=[model],
                checks=[Check("mean", "<=", TARGET)] if n > 1 else [],
                notes=f"mean over {parts * step:g} s: {means[n]:.3f}",
                extra={"instances": n, "mean": means[n], "window_s": parts * step},
            )
        )
    if 1 in sizes:
        for n in sizes:
            if n > 1:
                follower = (means[n] * n - means[1]) / (n - 1)
                figures.append(
                    Figure(
                        BENCH,
                        f"follower, commands/s (from {n} instances)",
                        "cmd/s",
                        [follower],
                        baseline_name="budget model",
                        baseline_samples=[follower_model],
                        notes="(total - leader alone) / (n - 1), means over the window"
                        + (
                            ""
                            if parts * step >= timings.clock_sync_interval
                            else f"; the window is shorter than clock_sync_interval "
                            f"({timings.clock_sync_interval:g} s), so few or no full "
                            "heartbeats of followers fall in it"
                        ),
                        extra={"instances": n},
                    )
                )
    return figures


def main() -> None:
    print(table(run(config_from_args(description=__doc__))))


if __name__ == "__main__":
    main()
