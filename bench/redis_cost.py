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

Each size runs twice, on servers of its own: with ``fast_failover=False``
(the lease alone, judged against the budget model) and with the defaults
(fast failover on), whose extra commands per second for the whole kind are
the fast path's cost (target: at most ``FAST_TARGET``, whatever the size).

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
#: The most fast failover may add, in commands per second per kind (issue 13).
FAST_TARGET = 20.0


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
    #: (instances, fast failover on) → its server, rates and mean
    runs = [(n, fast) for n in sizes for fast in (False, True)]
    servers: dict[tuple[int, bool], RedisServer] = {}
    cands: list[Candidate] = []
    rates: dict[tuple[int, bool], list[float]] = {}
    means: dict[tuple[int, bool], float] = {}
    clients: dict[tuple[int, bool], redis.Redis] = {}
    try:
        for n, fast in runs:
            server = RedisServer(extra_args=["--maxclients", str(MAX_CLIENTS)])
            servers[n, fast] = server
            server.start()
            group = [
                Candidate(
                    redis=server.url, kind=f"cost-{n}", fast_failover=None if fast else False
                ).start()
                for _ in range(n)
            ]
            cands += group
            settle(group)
        # Past the start-up traffic (joins, the first campaigns, notice-driven reads).
        time.sleep(cfg.pick(3.0, 5.0))
        clients.update({key: s.client() for key, s in servers.items()})
        log(f"redis cost: {sizes} instances, fast failover off and on, {parts} x {step:g} s")
        marks: dict[tuple[int, bool], list[tuple[float, int]]] = {key: [] for key in runs}

        def mark() -> None:
            for key, client in clients.items():
                marks[key].append((time.monotonic(), command_calls(client)))

        mark()
        for _ in range(parts):
            time.sleep(max(0.0, marks[runs[0]][-1][0] + step - time.monotonic()))
            mark()
        for n, fast in runs:
            m = marks[n, fast]
            rates[n, fast] = [(c1 - c0) / (t1 - t0) / n for (t0, c0), (t1, c1) in zip(m, m[1:])]
            means[n, fast] = (m[-1][1] - m[0][1]) / (m[-1][0] - m[0][0]) / n
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
                "leader alone (a kind of 1), commands/s, fast_failover=False"
                if n == 1
                else f"commands/s per instance, {n} instances, fast_failover=False",
                "cmd/s",
                rates[n, False],
                baseline_name="budget model",
                baseline_samples=[model],
                checks=[Check("mean", "<=", TARGET)] if n > 1 else [],
                notes=f"mean over {parts * step:g} s: {means[n, False]:.3f}",
                extra={"instances": n, "mean": means[n, False], "window_s": parts * step},
            )
        )
        # Per kind: what the defaults (fast failover on) add to the lease alone.
        extra_rates = [
            (on - off) * n for on, off in zip(rates[n, True], rates[n, False], strict=True)
        ]
        extra_mean = (means[n, True] - means[n, False]) * n
        figures.append(
            Figure(
                BENCH,
                f"fast failover's extra commands/s for the kind, {n} instance"
                + ("s" if n > 1 else ""),
                "cmd/s",
                extra_rates,
                checks=[Check("mean", "<=", FAST_TARGET)],
                notes=(
                    f"mean over {parts * step:g} s: {extra_mean:.2f} (the defaults: "
                    f"{means[n, True] * n:.2f} for the kind, against "
                    f"{means[n, False] * n:.2f} with fast_failover=False)"
                ),
                extra={"instances": n, "mean": extra_mean, "window_s": parts * step},
            )
        )
    if 1 in sizes:
        for n in sizes:
            if n > 1:
                follower = (means[n, False] * n - means[1, False]) / (n - 1)
                figures.append(
                    Figure(
                        BENCH,
                        f"follower, commands/s (from {n} instances), fast_failover=False",
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
