"""Print an aggregated summary of the chaos reports in a directory.

Usage: ``python tests/chaos/summarize.py [REPORT_DIR]`` (default:
``$CHAOS_REPORT_DIR`` or ``.chaos/``). Reads every ``*.json`` report written
by ``harness.ChaosCluster`` and prints, per scenario and in total: faults
injected, elections, overlaps, term regressions, dead threads, the longest
leaderless gap, convergence after faults (min/median/max) and the
``while_leader`` stop lag; and the figures of the reliable-delivery scenarios
(sent, delivered, lost, duplicates, order violations). Reports of scenarios that reproduce a known
library bug (``extra.known_bug``) are listed apart and left out of the totals.
Exits 1 if a report (other than a known bug's) records a failure.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def load(directory: Path) -> list[dict[str, Any]]:
    reports = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
            continue
        if isinstance(data, dict) and "scenario" in data:
            reports.append(data)
    return reports


def row(r: dict[str, Any]) -> list[str]:
    conv = r.get("convergence_stats") or {}
    lag = r.get("work_stop_lag_stats") or {}
    return [
        str(r["scenario"]),
        str(r.get("extra", {}).get("scale", r.get("settings", {}).get("scale", "?"))),
        str(r.get("faults_injected", 0)),
        str(r.get("elections", 0)),
        str(len(r.get("overlaps", []))),
        str(len(r.get("term_regressions", [])) + len(r.get("shared_terms", []))),
        str(len(r.get("dead_threads", []))),
        str(len(r.get("unexpected_exits", []))),
        _ms(r.get("leaderless_max")),
        f"{_ms(conv.get('min'))}/{_ms(conv.get('median'))}/{_ms(conv.get('max'))}",
        _ms(lag.get("max")),
        str(len(r.get("work_overlaps", [])))
        + (" (expected)" if r.get("extra", {}).get("work_overlaps_expected") else ""),
        "ok" if r.get("ok") else "FAILED",
    ]


HEADER = [
    "scenario",
    "scale",
    "faults",
    "elections",
    "overlaps",
    "term regr.",
    "dead thr.",
    "bad exits",
    "max leaderless ms",
    "converge ms min/med/max",
    "stop lag ms",
    "work ovl.",
    "verdict",
]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [HEADER, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def delivery_line(t: dict[str, Any]) -> str:
    """The figures of a reliable-delivery scenario (``extra.delivery.total``)."""
    return (
        f"sent {t['sent']}, delivered {t['delivered']}, lost {t['lost']}, duplicates "
        f"{t['duplicates']} (explained {t['explained_kill'] + t['explained_ack']}, "
        f"unexplained {t['unexplained']}), order violations {t['order_violations']}"
    )


def summarize(reports: list[dict[str, Any]]) -> tuple[str, bool]:
    normal = [r for r in reports if not r.get("extra", {}).get("known_bug")]
    bugs = [r for r in reports if r.get("extra", {}).get("known_bug")]
    out = [table([row(r) for r in normal])] if normal else ["(no chaos reports)"]
    kinds: Counter[str] = Counter()
    for r in normal:
        kinds.update(r.get("faults_by_kind", {}))
    conv = [
        c["seconds"]
        for r in normal
        for c in r.get("convergence", [])
        if c.get("seconds") is not None
    ]
    total = {
        "faults injected": sum(r.get("faults_injected", 0) for r in normal),
        "elections": sum(r.get("elections", 0) for r in normal),
        "overlaps": sum(len(r.get("overlaps", [])) for r in normal),
        "term regressions": sum(len(r.get("term_regressions", [])) for r in normal),
        "shared terms": sum(len(r.get("shared_terms", [])) for r in normal),
        "dead threads": sum(len(r.get("dead_threads", [])) for r in normal),
        "unexpected exits": sum(len(r.get("unexpected_exits", [])) for r in normal),
        "outage violations": sum(len(r.get("outage_violations", [])) for r in normal),
        "work overlaps (unexpected)": sum(
            len(r.get("work_overlaps", []))
            for r in normal
            if not r.get("extra", {}).get("work_overlaps_expected")
        ),
        "max leaderless s": round(
            max((r.get("leaderless_max", 0.0) for r in normal), default=0.0), 3
        ),
    }
    out.append("")
    out.append("totals: " + ", ".join(f"{k} {v}" for k, v in total.items()))
    out.append("faults by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    if conv:
        out.append(
            f"convergence over all faults: n={len(conv)}, min {min(conv):.3f} s, "
            f"median {statistics.median(conv):.3f} s, max {max(conv):.3f} s"
        )
    errors: Counter[str] = Counter()
    for r in normal:
        errors.update(r.get("errors_by_type", {}))
    out.append(
        "errors reported by the workers: "
        + (", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none")
    )
    for r in normal:
        delivery = r.get("extra", {}).get("delivery")
        if delivery:
            text = delivery_line(delivery["total"])
            reported = r["extra"].get("lost_counts_reported")
            if reported is not None:
                text += f", losses reported by the receivers {sum(reported.values())}"
            out.append(f"reliable delivery in {r['scenario']}: {text}")
    failed = [r for r in normal if not r.get("ok")]
    for r in failed:
        out.append(f"FAILED {r['scenario']}: {r.get('failures')}")
    for r in bugs:
        out.append(
            f"known bug reproduced by {r['scenario']}: "
            f"{'reproduced' if not r.get('ok') else 'NOT reproduced'}; "
            f"{r['extra']['known_bug']}"
        )
    return "\n".join(out), not failed


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    directory = Path(args[0] if args else os.environ.get("CHAOS_REPORT_DIR") or ".chaos")
    text, ok = summarize(load(directory))
    print(f"chaos summary ({directory})")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
