"""Print the compatibility matrix (the results of the nox sessions) as Markdown tables.

    python tools/matrix_summary.py                    # .bench/matrix, printed
    python tools/matrix_summary.py DIR --out FILE     # and written to FILE
    python tools/matrix_summary.py --update docs/compatibility.md

Reads the ``<session>--<server>.json`` files that noxfile.py writes (one per
session and Redis server: versions, test counts, the lifecycle benchmark's
summary, durations) and the ``<session>.mypy.json`` files, and prints:

- the matrix: versions x (tests passed?, stop() p99, reelect p99, start p50,
  threads left, time);
- the mypy --strict results by redis-py version;
- how long each session took.

``--update FILE`` replaces what lies between the ``<!-- matrix:begin -->``
and ``<!-- matrix:end -->`` lines of FILE with the tables, so the docs can be
regenerated from a run. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".bench" / "matrix"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def load(directory: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(test results, mypy results) found in ``directory``."""
    tests: list[dict[str, Any]] = []
    mypy: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.json")):
        if path.name.endswith(".lifecycle.json"):
            continue
        doc = json.loads(path.read_text())
        (mypy if path.name.endswith(".mypy.json") else tests).append(doc)
    return tests, mypy


def _version_key(text: str | None) -> tuple[int, ...]:
    parts = []
    for part in (text or "").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _passed(tests: dict[str, Any]) -> str:
    total = tests.get("tests", 0)
    bad = tests.get("failures", 0) + tests.get("errors", 0)
    if tests.get("exit_code", 1) == 0 and bad == 0 and total:
        return f"yes ({tests.get('passed', 0)})"
    if not total:
        return f"**NO** (pytest exit {tests.get('exit_code')}, no results)"
    return f"**NO**: {bad} of {total} failed"


def _stop(summary: dict[str, Any]) -> str:
    value = summary.get("stop_p99_ms")
    text = _ms(value)
    target = summary.get("target_ms")
    if value is not None and target is not None and value >= target:
        text = f"**{text}**"
    return text


def _row_key(r: dict[str, Any]) -> tuple[Any, ...]:
    """The full session first, then by redis-py, blinker, hiredis, suite and server."""
    v = r["versions"]
    return (
        r.get("suite") != "full",
        _version_key(v.get("redis_py")),
        _version_key(v.get("blinker")),
        v.get("hiredis") is not None,
        r.get("suite") == "topologies",
        _version_key(v.get("redis_server")),
    )


def matrix_table(results: Iterable[dict[str, Any]]) -> str:
    """The versions x results table, one row per session and Redis server."""
    rows = sorted(results, key=_row_key)
    lines = [
        "| session | redis-py | blinker | Redis | suite | tests passed? | stop() p99 ms "
        "| reelect → elected p99 ms | start() p50 ms | threads left | time s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        v = r["versions"]
        bench = r.get("bench", {})
        summary = bench.get("summary") or {}
        extras = f" + hiredis {v['hiredis']}" if v.get("hiredis") else ""
        seconds = r.get("seconds", {})
        took = seconds.get("tests", 0) + seconds.get("bench", 0)
        threads = summary.get("threads_left")
        if summary.get("never_led"):
            threads = f"{threads}; **{summary['never_led']} newcomer(s) never led**"
        if bench.get("skipped"):
            stop = reelect = start = threads = "(not run)"
        elif not summary:
            stop = reelect = start = f"(bench failed, exit {bench.get('exit_code')})"
            threads = "-"
        else:
            stop, reelect = _stop(summary), _ms(summary.get("reelect_p99_ms"))
            start = _ms(summary.get("start_p50_ms"))
        lines.append(
            f"| {r['session']} | {v.get('redis_py')}{extras} | {v.get('blinker')} "
            f"| {v.get('redis_server')} ({r.get('server')}) | {r.get('suite')} "
            f"| {_passed(r.get('tests', {}))} | {stop} | {reelect} | {start} | {threads} "
            f"| {took:.0f} |"
        )
    return "\n".join(lines)


def mypy_table(results: Iterable[dict[str, Any]]) -> str:
    lines = ["| session | redis-py | mypy --strict raftredis | time s |", "|---|---|---|---|"]
    for r in sorted(results, key=lambda r: _version_key(r["versions"].get("redis_py"))):
        verdict = "passes" if r.get("exit_code") == 0 else f"**fails** (exit {r.get('exit_code')})"
        lines.append(
            f"| {r['session']} | {r['versions'].get('redis_py')} | {verdict} "
            f"| {r.get('seconds', 0):.0f} |"
        )
    return "\n".join(lines)


def session_times(tests: Iterable[dict[str, Any]], mypy: Iterable[dict[str, Any]]) -> str:
    """Wall time per session: install + tests + bench over its servers (mypy: its run)."""
    by_session: dict[str, dict[str, float]] = {}
    for r in sorted(tests, key=_row_key):
        s = r.get("seconds", {})
        entry = by_session.setdefault(r["session"], {"install": 0.0, "tests": 0.0, "bench": 0.0})
        for key in entry:
            entry[key] += float(s.get(key, 0.0))
    lines = [
        "| session | install s | tests s | bench s | total s |",
        "|---|---|---|---|---|",
    ]
    total = 0.0
    for name, s in by_session.items():
        subtotal = sum(s.values())
        total += subtotal
        lines.append(
            f"| {name} | {s['install']:.0f} | {s['tests']:.0f} | {s['bench']:.0f} "
            f"| {subtotal:.0f} |"
        )
    for r in mypy:
        install, run = float(r.get("install_seconds", 0.0)), float(r.get("seconds", 0.0))
        total += install + run
        lines.append(f"| {r['session']} | {install:.0f} | {run:.0f} | - | {install + run:.0f} |")
    lines.append(f"| **all** | | | | **{total:.0f}** ({total / 60:.1f} min) |")
    return "\n".join(lines)


def report(directory: Path, *, legend: bool = True) -> str:
    """Every table; ``legend``: with a paragraph saying what the columns are."""
    tests, mypy = load(directory)
    if not tests and not mypy:
        return f"no matrix results in {directory} (run `make matrix` or a nox session)"
    finished = max((r.get("finished", "") for r in [*tests, *mypy]), default="")
    python = next((r["versions"].get("python") for r in [*tests, *mypy]), None)
    failed = [r["session"] + "--" + r["server"] for r in tests if r["tests"].get("exit_code")]
    failed += [r["session"] for r in mypy if r.get("exit_code")]
    head = (
        f"Matrix run finished {finished or 'at an unknown time'}, Python {python}, "
        f"{platform.system()} {platform.machine()}."
    )
    if legend:
        head += (
            " stop() p99 is the worst p99 of stop() and leaving a `with` block (leader or "
            "follower, alone or with 2 others), in ms; reelect is reelect() until another "
            "instance's `elected`; start() is a lone instance's start (bench/lifecycle.py "
            "--quick)."
        )
    head += " In bold: a failure, or a stop() p99 at or above its 50 ms target."
    parts = [head, "", matrix_table(tests) if tests else "(no test sessions)"]
    if mypy:
        parts += ["", mypy_table(mypy)]
    parts += ["", "Session wall times:", "", session_times(tests, mypy)]
    if failed:
        parts += ["", f"Failed: {', '.join(failed)}"]
    return "\n".join(parts)


def update(path: Path, text: str) -> None:
    """Replace the lines between the matrix markers of ``path`` with ``text``."""
    doc = path.read_text(encoding="utf-8")
    begin, end = doc.find(BEGIN), doc.find(END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to update")
    stamp = datetime.date.today().isoformat()
    block = f"{BEGIN}\n<!-- generated by tools/matrix_summary.py on {stamp} -->\n\n{text}\n\n"
    path.write_text(doc[:begin] + block + doc[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--out", type=Path, help="also write the tables to this file")
    parser.add_argument("--update", type=Path, metavar="DOC", help="replace the marked block")
    args = parser.parse_args(argv)
    text = report(args.directory)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    if args.update is not None:  # the page says what the columns are
        update(args.update, report(args.directory, legend=False))
        print(f"\nupdated {args.update}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
