"""Does hiredis (redis-py's optional C parser) make raftredis' messaging faster?

    nox -s bench-hiredis                                   # in a virtualenv of its own
    python bench/hiredis_compare.py --rounds 3 --out .bench/hiredis   # see the warning

Runs bench/messaging.py (``bench/run.py --quick --only messaging``: round
trips against raw redis-py, sequential and bulk throughput) alternately
without and with hiredis, ``--rounds`` times each, on the same machine in
the same run: the order flips every round, so drifting machine load hits
both alike. Between runs it installs or uninstalls hiredis **in the
environment of the interpreter that runs it** (``python -m pip``), and it
puts things back as they were at the end: run it in a virtualenv of its own
(the ``bench-hiredis`` nox session does), not in one others are using.

Prints, and writes to OUT/summary.md and OUT/summary.json, the samples of
every round pooled by variant: round trip p50/p99 (raftredis and the raw
redis-py baseline), sequential and bulk throughput medians.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, Stats, fmt, log

VARIANTS = ("without", "with")
#: The figures compared (their names in bench/messaging.py start with these).
ROUND_TRIPS = (
    "round trip message_to → reply, B in another process",
    "round trip message_to → reply, A and B in one process",
)
RATES = (
    "message_all x",  # sequential, until the subscriber has all (the first such figure)
    "batch of",  # bulk message_to, sender until send() returned (the first such figure)
)


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True)


def hiredis_installed() -> str | None:
    """The hiredis version redis-py would use here, or None."""
    probe = (
        "import importlib.metadata as m, redis.utils as u; "
        "print(m.version('hiredis') if u.HIREDIS_AVAILABLE else '')"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    ).stdout.strip()
    return out or None


def use(variant: str, requirement: str) -> str | None:
    if variant == "with":
        if hiredis_installed() is None:
            _pip("install", requirement)
    elif hiredis_installed() is not None:
        _pip("uninstall", "-y", "hiredis")
    found = hiredis_installed()
    if (found is None) != (variant == "without"):
        raise RuntimeError(f"could not switch to {variant} hiredis (found {found})")
    return found


def run_messaging(out: Path, trials: int | None) -> dict[str, Any]:
    command = [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--only", "messaging"]
    command += ["--out", str(out), "--no-plots"]
    if trials is not None:
        command += ["--trials", str(trials)]
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    doc: dict[str, Any] = json.loads((out / "results.json").read_text())
    return doc


def _first(figures: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    for figure in figures:
        if figure["figure"].startswith(prefix):
            return figure
    raise KeyError(prefix)


def pool(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Samples by figure name: {"raftredis": [...], "raw": [...]}, every run pooled."""
    pooled: dict[str, dict[str, list[float]]] = {}
    for doc in runs:
        for prefix in ROUND_TRIPS + RATES:
            figure = _first(doc["figures"], prefix)
            entry = pooled.setdefault(figure["figure"], {"raftredis": [], "raw": []})
            entry["raftredis"] += figure["samples"]
            entry["raw"] += (figure.get("baseline") or {}).get("samples", [])
    return pooled


def summarize(
    runs: dict[str, list[dict[str, Any]]], versions: dict[str, str | None]
) -> tuple[str, dict[str, Any]]:
    pooled = {variant: pool(docs) for variant, docs in runs.items()}
    rows = [
        "| figure | who | without hiredis | with hiredis "
        f"{versions['with']} | with / without (p50) |",
        "|---|---|---|---|---|",
    ]
    data: dict[str, Any] = {}
    for name in pooled["without"]:
        unit = "µs" if name.startswith("round trip") else "msg/s"
        for who in ("raftredis", "raw"):
            label = "raftredis" if who == "raftredis" else "raw redis-py"
            a = Stats.of(pooled["without"][name][who])
            b = Stats.of(pooled["with"][name][who])
            ratio = b.median / a.median if a.median else float("nan")
            if unit == "µs":  # lower is better: p50 / p99
                cells = [f"p50 {fmt(s.median)} / p99 {fmt(s.p99)} {unit}" for s in (a, b)]
            else:  # higher is better: the median and the worst run
                cells = [f"p50 {fmt(s.median)} / min {fmt(s.min)} {unit}" for s in (a, b)]
            rows.append(f"| {name} | {label} | {cells[0]} | {cells[1]} | {ratio:.2f}x |")
            data.setdefault(name, {})[who] = {
                "unit": unit,
                "without": a.as_dict(),
                "with": b.as_dict(),
                "ratio_median": ratio,
            }
    note = (
        f"{len(runs['without'])} runs of each, interleaved; samples pooled over the runs. "
        "Round trips: lower is better; msg/s: higher is better. Throughput rows: the "
        "sequential message_all and the bulk batch of message_to (sender side)."
    )
    return "\n".join(rows) + "\n\n" + note, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each variant")
    parser.add_argument("--trials", type=int, help="override the trial counts (smoke runs)")
    parser.add_argument("--hiredis", default="hiredis", help="the requirement to install")
    parser.add_argument("--out", type=Path, default=REPO / ".bench" / "hiredis")
    args = parser.parse_args(argv)
    initially = hiredis_installed()
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    versions: dict[str, str | None] = {}
    try:
        for i in range(args.rounds):
            for variant in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:
                versions[variant] = use(variant, args.hiredis)
                log(f"round {i + 1}/{args.rounds}: messaging {variant} hiredis")
                runs[variant].append(run_messaging(args.out / f"{variant}-{i}", args.trials))
    finally:
        use("with" if initially else "without", f"hiredis=={initially}" if initially else "")
    text, data = summarize(runs, versions)
    redis_py = runs["without"][0]["machine"]["redis_py"]
    head = (
        f"bench/messaging.py --quick, {args.rounds} runs each, interleaved; redis-py {redis_py}, "
        f"hiredis {versions['with']}; Redis {runs['without'][0]['redis']['version']}"
    )
    print(head + "\n\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text(head + "\n\n" + text + "\n")
    (args.out / "summary.json").write_text(
        json.dumps({"versions": versions, "redis_py": redis_py, "figures": data}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
