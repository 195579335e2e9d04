"""Run the raftredis benchmarks and write DIR/results.json and DIR/results.md.

    python bench/run.py --quick --out .bench     # a few minutes (make bench)
    python bench/run.py --full --out .bench      # ~15 to 25 minutes, with plots (make bench-full)
    python bench/run.py --quick --only messaging,discovery

Every figure is given with min / median / p99 over its trials, against a
baseline measured in the same run (or a model value, named as such), and
checked against its target. Each benchmark starts its own redis-server(s)
and child processes and stops them when it ends, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import raftredis
from bench import (
    common,
    discovery,
    failover,
    handover,
    lifecycle,
    messaging,
    redis_cost,
    reliable,
    scale,
)
from bench.common import Config, Figure, log, table
from raftredis.testing import RedisServer, find_redis_server
from raftredis.timing import Timings

BENCHMARKS: dict[str, Callable[[Config], list[Figure]]] = {
    "handover": handover.run,
    "lifecycle": lifecycle.run,
    "failover": failover.run,
    "messaging": messaging.run,
    "reliable": reliable.run,
    "redis_cost": redis_cost.run,
    "discovery": discovery.run,
    "scale": scale.run,
}


def _redis_version() -> dict[str, Any]:
    binary = find_redis_server()
    return {"binary": binary, "version": RedisServer(binary=binary).version()}


def settings(cfg: Config) -> dict[str, Any]:
    """The raftredis settings the benchmarks use."""
    return {
        "version": getattr(raftredis, "__version__", "unknown"),
        "default_timings": asdict(Timings()),
        "lease_ttl": {
            "handover": 3.0,
            "lifecycle": 3.0,
            "failover": list(cfg.pick((1.0,), (1.0, 3.0, 10.0))),
            "messaging": 3.0,
            "reliable": 3.0,
            "redis_cost": 3.0,
            "discovery": 3.0,
            "scale": scale.LEASE_TTL,
        },
        "listener_sleep_time": messaging.SLEEP_TIME,
        "max_message_bytes": 1 << 20,
    }


def write_results(
    out: Path,
    cfg: Config,
    meta: dict[str, Any],
    figures: list[Figure],
    runs: dict[str, dict[str, Any]],
) -> None:
    """results.json (with samples) and results.md (the table, notes, errors)."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        **meta,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "loadavg_end": list(os.getloadavg()),
        "benchmarks": runs,
        "figures": [f.as_dict() for f in figures],
        "summary": {
            "figures": len(figures),
            "with_target": sum(1 for f in figures if f.met is not None),
            "met": sum(1 for f in figures if f.met is True),
            "not_met": [f"{f.benchmark}: {f.name}" for f in figures if f.met is False],
        },
    }
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(out / "results.json")
    m = meta["machine"]
    lines = [
        f"# raftredis benchmarks ({cfg.mode})",
        "",
        f"- started {meta['started']}, finished {doc['finished']}",
        f"- machine: {m['cpu_count']} x {m['cpu_model']}, Python {m['python']}, "
        f"{m['platform']}; load average (1 min) {m['loadavg'][0]:.2f} at the start, "
        f"{doc['loadavg_end'][0]:.2f} at the end (other work on the machine skews figures)",
        f"- Redis {meta['redis']['version']} ({meta['redis']['binary']}), "
        f"redis-py {m['redis_py']}, raftredis {meta['raftredis']['version']}",
        f"- default timings: {meta['raftredis']['default_timings']}",
        "",
        table(figures),
        "",
    ]
    notes = [f"- **{f.benchmark}: {f.name}**: {f.notes}" for f in figures if f.notes]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    errors = {k: v["error"] for k, v in runs.items() if v.get("error")}
    if errors:
        lines += ["## Errors", ""]
        for name, text in errors.items():
            lines += [f"### {name}", "", "```", text.rstrip(), "```", ""]
    lines += [
        "## Benchmarks run",
        "",
        *(f"- {k}: {v['duration_s']:.1f} s" for k, v in runs.items()),
        "",
    ]
    (out / "results.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small sizes, a few minutes (default)")
    mode.add_argument("--full", action="store_true", help="full sizes, with plots")
    parser.add_argument("--out", default=".bench", help="output directory (default .bench)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--trials", type=int, help="override every trial count (smoke runs)")
    parser.add_argument(
        "--window-scale", type=float, default=1.0, help="scale every window (smoke runs)"
    )
    plotting = parser.add_mutually_exclusive_group()
    plotting.add_argument(
        "--plots",
        dest="plots",
        action="store_true",
        default=None,
        help="write PNG plots (default with --full)",
    )
    plotting.add_argument("--no-plots", dest="plots", action="store_false")
    args = parser.parse_args(argv)
    common.exit_on_sigterm()

    cfg = Config(full=args.full, trial_override=args.trials, window_scale=args.window_scale)
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    out = Path(args.out)
    meta: dict[str, Any] = {
        "mode": cfg.mode,
        "overrides": {"trials": args.trials, "window_scale": args.window_scale},
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": common.machine_info(),
        "redis": _redis_version(),
        "raftredis": settings(cfg),
    }
    figures: list[Figure] = []
    runs: dict[str, dict[str, Any]] = {}
    began = time.monotonic()
    for name in names:
        log(f"=== {name} ({cfg.mode})")
        t0 = time.monotonic()
        error = None
        try:
            figures += BENCHMARKS[name](cfg)
        except Exception:
            error = traceback.format_exc()
            log(f"{name} failed:\n{error}")
        runs[name] = {"duration_s": time.monotonic() - t0, "error": error}
        write_results(out, cfg, meta, figures, runs)  # after each: a crash keeps the rest
    meta["duration_s"] = time.monotonic() - began
    write_results(out, cfg, meta, figures, runs)
    if args.plots if args.plots is not None else cfg.full:
        try:
            from bench import plots

            written = plots.make_plots(out / "results.json", out)
            log(f"plots: {', '.join(p.name for p in written)}")
        except ImportError as exc:
            log(f"no plots: {exc} (pip install -e '.[bench]')")
    print(table(figures))
    failed = [f"{f.benchmark}: {f.name}" for f in figures if f.met is False]
    errors = [n for n, r in runs.items() if r["error"]]
    print(
        f"\n{sum(f.met is True for f in figures)} of "
        f"{sum(f.met is not None for f in figures)} targets met"
        + (f"; not met: {'; '.join(failed)}" if failed else "")
        + (f"; errors in {', '.join(errors)}" if errors else "")
        + f". {time.monotonic() - began:.0f} s. Results in {out / 'results.md'} and "
        f"{out / 'results.json'}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
