"""Print the table of docs/reliability.md ("A Redis that forgets") from chaos reports.

    python tests/chaos/memory_table.py REPORT_DIR [BEFORE_DIR]

``REPORT_DIR`` holds the JSON reports of ``tests/chaos/test_memory.py``
(``CHAOS_REPORT_DIR``, written by ``make chaos``); ``BEFORE_DIR``, if given,
the reports of the same scenarios run with an earlier version, shown beside.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: Scenario (report name) -> what Redis did, in the order of the table.
ROWS = {
    "m-volatile-lru-nottl": (
        "`volatile-lru`, app keys without a TTL (the lease is the only evictable key)"
    ),
    "m-allkeys-lru-nottl": "`allkeys-lru`, app keys without a TTL",
    "m-volatile-lru-ttl": "`volatile-lru`, app keys with a TTL",
    "m-volatile-ttl-ttl": "`volatile-ttl`, app keys with a TTL",
    "m-flush": "`FLUSHALL` / `FLUSHDB` every 5 ± 0.5 s",
    "m-noeviction-nottl": "`noeviction`, the same load",
}


def load(directory: Path) -> dict[str, dict[str, Any]]:
    return {
        name: json.loads((directory / f"{name}.json").read_text())
        for name in ROWS
        if (directory / f"{name}.json").exists()
    }


def overlaps(report: dict[str, Any]) -> str:
    found = report.get("overlaps", [])
    if not found:
        return "0"
    longest = max(o["seconds"] for o in found) * 1000
    return f"**{len(found)}, up to {longest:.1f} ms**"


def cells(report: dict[str, Any] | None) -> list[str]:
    if report is None:
        return ["-"] * 7
    extra = report.get("extra", {})
    pressure = extra.get("pressure", {})
    evicted = pressure.get("lease_evictions")
    if evicted is not None and pressure.get("term_evictions"):
        evicted = f"{evicted} (term key {pressure['term_evictions']})"
    errors = report.get("errors_by_type", {})
    said = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "nothing"
    back = extra.get("leader_back_s")
    work = len(report.get("work_overlaps", []))
    return [
        "-" if evicted is None else str(evicted),
        str(report.get("elections", "?")),
        overlaps(report),
        f"**{work}**" if work else "0",
        f"{report.get('leaderless_total', 0):.1f} s",
        said,
        "no leader" if back is None else f"{back:.2f} s",
    ]


def main(argv: list[str]) -> int:
    if not 2 <= len(argv) <= 3:
        print(__doc__, file=sys.stderr)
        return 2
    after = load(Path(argv[1]))
    before = load(Path(argv[2])) if len(argv) == 3 else {}
    header = [
        "what Redis did (60 s)",
        "lease evicted",
        "elections",
        "overlapping leadership",
        "overlapping while_leader work",
        "without a leader",
        "reported on `error`",
        "leader back after",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, what in ROWS.items():
        if before:
            print("| " + " | ".join([f"{what}: before", *cells(before.get(name))]) + " |")
            print("| " + " | ".join(["now", *cells(after.get(name))]) + " |")
        else:
            print("| " + " | ".join([what, *cells(after.get(name))]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
