"""Reads the logs of a chaos run and judges them: did the promises hold?

A run directory holds one JSON-lines log per worker process (written by
``worker.py``) and ``harness.jsonl`` (written by ``harness.py``: the run's
settings, every process spawned and reaped, every fault injected, Redis
outages, the start of the teardown). :func:`check_run` reads them all and
returns a :class:`ChaosReport`.

What counts as a failure (:attr:`ChaosReport.failures`):

* **overlaps**: two processes believed they led at the same time. A process
  believed it led during ``[lead_begin.t, lead_end.t_last_true]`` (see
  ``worker.py``); a process killed while leading is taken to have believed
  it until the harness reaped it.
* **term regressions**: a process' terms went down (checked per source,
  because signals are delivered later than they are decided: the signals'
  terms, the ``alive`` lines' terms, the poller's terms); or a leadership
  interval's term is not greater than the term of every leadership interval
  that began before it.
* **shared terms**: two processes led with the same term.
* **dead threads**: a ``thread_died`` line, or an ``alive`` line of a
  running Candidate with one of its threads missing.
* **unexpected exits**: a worker that exited with a non-zero status the
  harness did not cause (it killed it), or that failed to start.
* **outage violations**: a leadership interval reaching more than
  ``renew_deadline`` into a Redis outage, or beginning during one.
* **unstopped work**: a ``while_leader`` function still running when its
  process exited cleanly.

Also reported: leaderless time (total, longest gap) between the first
election and the teardown, the number of elections, the time from each
fault to the next election (``convergence``), errors by type, flickers (a
process' leadership of one term that went away and came back: merged into
one interval for the checks above), ``while_leader`` stop lags, and
``work_overlaps`` (a ``while_leader`` function still running while another
process led, from ``work_start`` to the moment raftredis set the stop event:
unavoidable for a process frozen past its lease, which is what fencing
tokens are for; scenarios without frozen workers assert there are none).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from event_log import read_events

HARNESS_LOG = "harness.jsonl"
#: Slack for comparisons with fault times: the harness notes the time just
#: before it acts, and a poll reads the clock about a millisecond apart.
OUTAGE_SLACK = 0.05
#: Events whose ``term`` is decided and delivered in order by the dispatch thread.
SIGNAL_EVENTS = frozenset({"elected", "defeated", "state_changed", "leader_changed"})


@dataclass(frozen=True)
class Interval:
    """One process' leadership of one term: ``[begin, end]`` in ``time.time()`` seconds."""

    process: str
    name: str
    pid: int
    id: str
    term: int
    begin: float
    end: float
    end_source: str  # "lead_end", "exit" (reaped while leading) or "open" (end of the logs)
    pieces: int = 1  # more than 1: flickers merged

    @property
    def seconds(self) -> float:
        return self.end - self.begin


@dataclass
class ProcessLog:
    """The parsed log of one worker process."""

    process: str
    path: Path
    events: list[dict[str, Any]]
    bad_lines: int = 0
    pid: int = 0
    name: str = ""
    id: str = ""
    exit_t: float | None = None
    returncode: int | None = None
    expected_exit: bool = False


@dataclass
class ChaosReport:
    """What a run's logs show. ``failures`` lists what broke a promise."""

    scenario: str
    settings: dict[str, Any] = field(default_factory=dict)
    processes: int = 0
    window: tuple[float, float] = (0.0, 0.0)
    faults: list[dict[str, Any]] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    elections: int = 0
    overlaps: list[dict[str, Any]] = field(default_factory=list)
    term_regressions: list[dict[str, Any]] = field(default_factory=list)
    shared_terms: list[dict[str, Any]] = field(default_factory=list)
    flickers: list[dict[str, Any]] = field(default_factory=list)
    leaderless_total: float = 0.0
    leaderless_max: float = 0.0
    leaderless_gaps: list[dict[str, Any]] = field(default_factory=list)
    convergence: list[dict[str, Any]] = field(default_factory=list)
    dead_threads: list[dict[str, Any]] = field(default_factory=list)
    errors_by_type: dict[str, int] = field(default_factory=dict)
    unexpected_exits: list[dict[str, Any]] = field(default_factory=list)
    outage_violations: list[dict[str, Any]] = field(default_factory=list)
    unstopped_work: list[dict[str, Any]] = field(default_factory=list)
    work_overlaps: list[dict[str, Any]] = field(default_factory=list)
    work_stop_lags: list[float] = field(default_factory=list)
    #: Leaderships of 0.5 s or more whose process never logged ``elected`` for
    #: that term: a receiver that was never called.
    missed_signals: list[dict[str, Any]] = field(default_factory=list)
    bad_lines: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def faults_injected(self) -> int:
        return len(self.faults)

    @property
    def convergence_seconds(self) -> list[float]:
        return [c["seconds"] for c in self.convergence if c["seconds"] is not None]

    @property
    def failures(self) -> list[str]:
        """One line per broken promise (empty: the run passed the checks)."""
        out = []
        for name in (
            "overlaps",
            "term_regressions",
            "shared_terms",
            "dead_threads",
            "unexpected_exits",
            "outage_violations",
            "unstopped_work",
            "missed_signals",
        ):
            items = getattr(self, name)
            if items:
                out.append(f"{len(items)} {name.replace('_', ' ')}: {items[:3]}")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["intervals"] = [asdict(i) for i in self.intervals]
        data["faults_injected"] = self.faults_injected
        data["failures"] = self.failures
        data["ok"] = self.ok
        data["convergence_stats"] = stats(self.convergence_seconds)
        data["work_stop_lag_stats"] = stats(self.work_stop_lags)
        data["faults_by_kind"] = dict(Counter(f.get("kind", "?") for f in self.faults))
        return data

    def summary(self) -> str:
        conv = stats(self.convergence_seconds)
        lags = stats(self.work_stop_lags)
        lines = [
            f"chaos report {self.scenario!r}: {'OK' if self.ok else 'FAILED'}",
            f"  processes {self.processes}, faults {self.faults_injected} "
            f"{dict(Counter(f.get('kind', '?') for f in self.faults))}, "
            f"elections {self.elections}, run {self.window[1] - self.window[0]:.1f} s",
            f"  overlaps {len(self.overlaps)}, term regressions {len(self.term_regressions)}, "
            f"shared terms {len(self.shared_terms)}, dead threads {len(self.dead_threads)}, "
            f"unexpected exits {len(self.unexpected_exits)}, "
            f"outage violations {len(self.outage_violations)}, "
            f"unstopped work {len(self.unstopped_work)}",
            f"  leaderless {self.leaderless_total:.3f} s in total, longest gap "
            f"{self.leaderless_max:.3f} s",
            "  convergence after faults: "
            + (
                f"n={conv['n']} min {conv['min']:.3f} s, median {conv['median']:.3f} s, "
                f"max {conv['max']:.3f} s"
                if conv["n"]
                else "n=0"
            ),
            "  while_leader stop lag: "
            + (f"max {lags['max'] * 1000:.1f} ms (n={lags['n']})" if lags["n"] else "n=0")
            + f", work overlaps {len(self.work_overlaps)}, flickers {len(self.flickers)}",
            f"  errors by type: {self.errors_by_type or '{}'}",
        ]
        if self.bad_lines:
            lines.append(f"  unreadable log lines: {self.bad_lines}")
        lines += [f"  FAILURE {f}" for f in self.failures]
        return "\n".join(lines)


def stats(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


# ------------------------------------------------------------------ reading


def load_process(path: Path) -> ProcessLog:
    events, bad = read_events(path)
    log = ProcessLog(process=path.stem, path=path, events=events, bad_lines=bad)
    for e in events:
        log.pid = log.pid or int(e.get("pid") or 0)
        log.name = log.name or str(e.get("name") or "")
        log.id = log.id or str(e.get("id") or "")
    return log


def check_run(run_dir: Path | str, scenario: str = "") -> ChaosReport:
    """Check every worker log in ``run_dir`` against ``run_dir/harness.jsonl``."""
    run_dir = Path(run_dir)
    logs = sorted(p for p in run_dir.glob("*.jsonl") if p.name != HARNESS_LOG)
    harness = run_dir / HARNESS_LOG
    return check_logs(logs, harness if harness.exists() else None, scenario=scenario)


def check_logs(
    worker_logs: Iterable[Path],
    harness_log: Path | None = None,
    *,
    scenario: str = "",
    renew_deadline: float | None = None,
) -> ChaosReport:
    """Check the given worker logs (and the harness' log, if any)."""
    harness_events: list[dict[str, Any]] = []
    bad = 0
    if harness_log is not None:
        harness_events, bad = read_events(harness_log)
    procs = [load_process(Path(p)) for p in worker_logs]
    return Checker(procs, harness_events, scenario, renew_deadline, bad).report()


# ----------------------------------------------------------------- checking


class Checker:
    def __init__(
        self,
        procs: list[ProcessLog],
        harness: list[dict[str, Any]],
        scenario: str,
        renew_deadline: float | None,
        bad_lines: int,
    ) -> None:
        self.procs = procs
        self.harness = harness
        settings: dict[str, Any] = {}
        for e in harness:
            if e.get("event") == "run_start":
                settings = {k: v for k, v in e.items() if k not in ("t", "event")}
        if renew_deadline is not None:
            settings["renew_deadline"] = renew_deadline
        self.report_ = ChaosReport(
            scenario=scenario or str(settings.get("scenario", "")), settings=settings
        )
        self.report_.processes = len(procs)
        self.report_.bad_lines = bad_lines + sum(p.bad_lines for p in procs)
        self._attach_exits()

    def _attach_exits(self) -> None:
        by_pid = {p.pid: p for p in self.procs if p.pid}
        by_name = {p.process: p for p in self.procs}
        for e in self.harness:
            if e.get("event") != "exit":
                continue
            proc = by_pid.get(int(e.get("pid") or 0)) or by_name.get(str(e.get("name")))
            if proc is not None:
                proc.exit_t = float(e["t"])
                proc.returncode = e.get("returncode")
                proc.expected_exit = bool(e.get("expected"))

    def report(self) -> ChaosReport:
        r = self.report_
        all_t = [e["t"] for p in self.procs for e in p.events] + [e["t"] for e in self.harness]
        end_of_logs = max(all_t) if all_t else 0.0
        r.faults = [
            {k: v for k, v in e.items() if k != "event"}
            for e in self.harness
            if e.get("event") == "fault"
        ]
        r.intervals = self._intervals(end_of_logs)
        r.elections = len(r.intervals)
        self._overlaps()
        self._terms()
        self._window_and_gaps(end_of_logs)
        self._convergence()
        self._threads()
        self._errors_and_exits()
        self._outages()
        self._work(end_of_logs)
        self._signals()
        return r

    def _signals(self) -> None:
        """Every leadership long enough to hear of must have reached the elected receiver."""
        by_name = {p.process: p for p in self.procs}
        for interval in self.report_.intervals:
            if interval.seconds < 0.5:
                continue  # killed or demoted before the dispatch thread could log it
            proc = by_name.get(interval.process)
            # Only workers that log signals at all (synthetic logs may not).
            if proc is None or not any(e.get("event") == "elected" for e in proc.events):
                continue
            heard = any(
                e.get("event") == "elected" and e.get("term") == interval.term for e in proc.events
            )
            if not heard:
                self.report_.missed_signals.append(
                    {"process": interval.process, "term": interval.term, "begin": interval.begin}
                )

    # -- leadership intervals ---------------------------------------------

    def _intervals(self, end_of_logs: float) -> list[Interval]:
        out: list[Interval] = []
        for p in self.procs:
            raw: list[tuple[int, float, float, str]] = []
            open_term: int | None = None
            open_begin = 0.0
            for e in p.events:
                ev = e.get("event")
                if ev == "lead_begin":
                    if open_term is not None:  # a begin without an end: close at the new read
                        cut = float(e.get("t_call", e["t"]))
                        raw.append((open_term, open_begin, cut, "lead_end"))
                    open_term, open_begin = int(e["term"]), float(e["t"])
                elif ev == "lead_end" and open_term is not None:
                    end = max(open_begin, float(e["t_last_true"]))
                    raw.append((open_term, open_begin, end, "lead_end"))
                    open_term = None
            if open_term is not None:
                if p.exit_t is not None:
                    raw.append((open_term, open_begin, max(open_begin, p.exit_t), "exit"))
                else:
                    raw.append((open_term, open_begin, max(open_begin, end_of_logs), "open"))
            merged: list[Interval] = []
            for term, begin, end, source in raw:
                if merged and merged[-1].term == term:
                    prev = merged[-1]
                    self.report_.flickers.append(
                        {
                            "process": p.process,
                            "term": term,
                            "gap_from": prev.end,
                            "gap_to": begin,
                            "gap": begin - prev.end,
                        }
                    )
                    merged[-1] = Interval(
                        p.process,
                        p.name,
                        p.pid,
                        p.id,
                        term,
                        prev.begin,
                        end,
                        source,
                        prev.pieces + 1,
                    )
                else:
                    merged.append(
                        Interval(p.process, p.name, p.pid, p.id, term, begin, end, source)
                    )
            out.extend(merged)
        out.sort(key=lambda i: (i.begin, i.end))
        return out

    def _overlaps(self) -> None:
        intervals = self.report_.intervals
        for i, a in enumerate(intervals):
            for b in intervals[i + 1 :]:
                if b.begin >= a.end:
                    break  # sorted by begin: no later interval can overlap a
                if a.process == b.process:
                    continue
                overlap = min(a.end, b.end) - b.begin
                if overlap > 0:
                    self.report_.overlaps.append(
                        {
                            "seconds": overlap,
                            "from": b.begin,
                            "a": _brief(a),
                            "b": _brief(b),
                        }
                    )

    def _terms(self) -> None:
        r = self.report_
        for p in self.procs:
            last: dict[str, tuple[int, float]] = {}
            for e in p.events:
                ev = e.get("event")
                if ev in SIGNAL_EVENTS:
                    source = "signals"
                elif ev == "alive":
                    source = "alive"
                elif ev == "lead_begin":
                    source = "poller"
                else:
                    continue
                term = e.get("term")
                if not isinstance(term, int):
                    continue
                prev = last.get(source)
                if prev is not None and term < prev[0]:
                    r.term_regressions.append(
                        {
                            "kind": "process_term_decreased",
                            "process": p.process,
                            "source": source,
                            "from": prev[0],
                            "to": term,
                            "t": e["t"],
                            "event": ev,
                        }
                    )
                last[source] = (term, e["t"])
        best: Interval | None = None
        for iv in r.intervals:  # sorted by begin
            if best is not None and iv.term <= best.term and best.begin < iv.begin:
                r.term_regressions.append(
                    {
                        "kind": "leadership_term_not_greater",
                        "interval": _brief(iv),
                        "earlier": _brief(best),
                    }
                )
            if best is None or iv.term > best.term:
                best = iv
        by_term: dict[int, list[Interval]] = defaultdict(list)
        for iv in r.intervals:
            by_term[iv.term].append(iv)
        for term, ivs in sorted(by_term.items()):
            if len({iv.process for iv in ivs}) > 1:
                r.shared_terms.append({"term": term, "intervals": [_brief(iv) for iv in ivs]})

    # -- time without a leader --------------------------------------------

    def _window_and_gaps(self, end_of_logs: float) -> None:
        r = self.report_
        if not r.intervals:
            r.window = (end_of_logs, end_of_logs)
            return
        start = r.intervals[0].begin
        end = end_of_logs
        for e in self.harness:
            if e.get("event") == "teardown":
                end = float(e["t"])
        r.window = (start, end)
        covered_to = start
        gaps: list[dict[str, Any]] = []
        for iv in r.intervals:
            if iv.begin >= end:
                break
            if iv.begin > covered_to:
                gaps.append(self._gap(covered_to, iv.begin))
            covered_to = max(covered_to, iv.end)
        if covered_to < end:
            gaps.append(self._gap(covered_to, end))
        r.leaderless_total = sum(g["seconds"] for g in gaps)
        r.leaderless_max = max((g["seconds"] for g in gaps), default=0.0)
        r.leaderless_gaps = sorted(gaps, key=lambda g: -g["seconds"])[:10]

    def _gap(self, start: float, end: float) -> dict[str, Any]:
        before = [f for f in self.report_.faults if f["t"] <= end]
        last_fault = before[-1] if before else None
        return {
            "from": start,
            "to": end,
            "seconds": end - start,
            "after_fault": None if last_fault is None else last_fault.get("kind"),
        }

    def _convergence(self) -> None:
        r = self.report_
        begins = [iv.begin for iv in r.intervals]
        for f in r.faults:
            if not f.get("converge", True):
                continue
            t = float(f["t"])
            nxt = next((b for b in begins if b >= t), None)
            r.convergence.append(
                {
                    "kind": f.get("kind"),
                    "target": f.get("target"),
                    "t": t,
                    "seconds": None if nxt is None else nxt - t,
                }
            )

    # -- threads, errors, exits -------------------------------------------

    def _threads(self) -> None:
        r = self.report_
        for p in self.procs:
            reported: set[str] = set()
            for e in p.events:
                ev = e.get("event")
                if ev == "thread_died":
                    r.dead_threads.append(
                        {
                            "process": p.process,
                            "thread": e.get("thread"),
                            "t": e["t"],
                            "how": f"{e.get('type')}: {e.get('message')}",
                        }
                    )
                elif ev == "alive" and e.get("running") and e.get("missing"):
                    for role in e["missing"]:
                        if role not in reported:
                            reported.add(role)
                            r.dead_threads.append(
                                {
                                    "process": p.process,
                                    "thread": role,
                                    "t": e["t"],
                                    "how": "missing from an alive line",
                                }
                            )

    def _errors_and_exits(self) -> None:
        r = self.report_
        counts: Counter[str] = Counter()
        for p in self.procs:
            for e in p.events:
                ev = e.get("event")
                if ev == "error":
                    counts[str(e.get("type"))] += 1
                elif ev == "command_error":
                    counts[f"command:{e.get('type')}"] += 1
                elif ev == "start_failed":
                    r.unexpected_exits.append(
                        {
                            "process": p.process,
                            "why": f"start failed: {e.get('type')}: {e.get('message')}",
                        }
                    )
        # From the harness' own records: a process that died before writing a line counts too.
        for e in self.harness:
            code = e.get("returncode")
            if e.get("event") == "exit" and code not in (None, 0) and not e.get("expected"):
                r.unexpected_exits.append({"process": e.get("name"), "why": f"exit status {code}"})
        r.errors_by_type = dict(sorted(counts.items()))

    def _outages(self) -> None:
        r = self.report_
        rd = r.settings.get("renew_deadline")
        outages: list[tuple[float, float]] = []
        started: float | None = None
        for e in self.harness:
            if e.get("event") == "outage_start":
                started = float(e["t"])
            elif e.get("event") == "outage_end" and started is not None:
                outages.append((started, float(e["t"])))
                started = None
        if started is not None:
            outages.append((started, r.window[1]))
        r.extra["outages"] = [{"from": s, "to": e, "seconds": e - s} for s, e in outages]
        if rd is None:
            return
        for s, e in outages:
            for iv in r.intervals:
                if iv.begin >= e or iv.end <= s:
                    continue
                if s + OUTAGE_SLACK <= iv.begin < e:
                    why = "began during the outage"
                elif iv.end > s + rd + OUTAGE_SLACK:
                    why = f"lasted {iv.end - s:.3f} s into the outage (renew_deadline {rd:g} s)"
                else:
                    continue
                r.outage_violations.append({"interval": _brief(iv), "outage": [s, e], "why": why})

    def _work(self, end_of_logs: float) -> None:
        r = self.report_
        works: list[tuple[ProcessLog, int, float, float]] = []
        for p in self.procs:
            open_work: dict[int, float] = {}
            clean_exit = any(e.get("event") == "exit" for e in p.events)
            for e in p.events:
                ev = e.get("event")
                if ev == "work_start":
                    open_work[int(e["term"])] = float(e["t"])
                elif ev == "work_stop":
                    term = int(e["term"])
                    begin = open_work.pop(term, None)
                    if e.get("lag") is not None:
                        r.work_stop_lags.append(float(e["lag"]))
                    if begin is not None:
                        # Until raftredis set the stop event (the function noticed it
                        # a little later, which is up to the function).
                        end = e.get("t_set", e.get("t_stop", e["t"]))
                        works.append((p, term, begin, float(end)))
            for term, begin in open_work.items():
                if clean_exit:
                    r.unstopped_work.append({"process": p.process, "term": term, "since": begin})
                end = p.exit_t if p.exit_t is not None else end_of_logs
                works.append((p, term, begin, end))
        for p, term, begin, end in works:
            for iv in r.intervals:
                if iv.process == p.process:
                    continue
                overlap = min(end, iv.end) - max(begin, iv.begin)
                if overlap > 0:
                    r.work_overlaps.append(
                        {
                            "process": p.process,
                            "term": term,
                            "work": [begin, end],
                            "leader": _brief(iv),
                            "seconds": overlap,
                        }
                    )


def _brief(iv: Interval) -> dict[str, Any]:
    return {
        "process": iv.process,
        "id": iv.id,
        "term": iv.term,
        "begin": iv.begin,
        "end": iv.end,
        "end_source": iv.end_source,
    }


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Check the logs of a chaos run.")
    parser.add_argument("run_dir")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    args = parser.parse_args(argv)
    report = check_run(args.run_dir)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=repr))
    else:
        print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
