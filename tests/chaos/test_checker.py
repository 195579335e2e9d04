"""The checker on synthetic logs: each kind of broken promise is found; a clean run passes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from checker import HARNESS_LOG, ChaosReport, check_logs, check_run
from event_log import as_json_lines

T0 = 1_800_000_000.0


class Run:
    """Writes worker logs and a harness log the way worker.py and harness.py do."""

    def __init__(self, directory: Path, renew_deadline: float = 0.5) -> None:
        self.dir = directory
        self.harness: list[dict[str, Any]] = [
            {
                "t": T0,
                "event": "run_start",
                "scenario": "synthetic",
                "renew_deadline": renew_deadline,
            }
        ]
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.pids: dict[str, int] = {}

    def worker(self, name: str) -> str:
        self.pids[name] = 1000 + len(self.pids)
        self.logs[name] = []
        self.harness.append({"t": T0, "event": "spawn", "name": name, "pid": self.pids[name]})
        return name

    def line(self, name: str, t: float, event: str, **fields: Any) -> None:
        self.logs[name].append(
            {
                "t": T0 + t,
                "event": event,
                "pid": self.pids[name],
                "name": name,
                "id": f"id-{name}",
                **fields,
            }
        )

    def lead(self, name: str, term: int, begin: float, end: float | None) -> None:
        """A leadership interval as the poller logs it (end None: never ended)."""
        self.line(name, begin, "lead_begin", term=term, t_call=T0 + begin)
        if end is not None:
            self.line(
                name,
                end + 0.001,
                "lead_end",
                term=term,
                t_last_true=T0 + end,
                t_last_true_after=T0 + end,
                t_seen_false=T0 + end + 0.001,
            )

    def fault(self, t: float, kind: str, target: str | None = None, converge: bool = True) -> None:
        self.harness.append(
            {"t": T0 + t, "event": "fault", "kind": kind, "target": target, "converge": converge}
        )

    def harness_event(self, t: float, event: str, **fields: Any) -> None:
        self.harness.append({"t": T0 + t, "event": event, **fields})

    def exit(self, name: str, t: float, returncode: int, expected: bool) -> None:
        self.harness_event(
            t, "exit", name=name, pid=self.pids[name], returncode=returncode, expected=expected
        )

    def check(self, extra_text: dict[str, str] | None = None) -> ChaosReport:
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, lines in self.logs.items():
            text = as_json_lines(lines)
            text += (extra_text or {}).get(name, "")
            (self.dir / f"{name}.jsonl").write_text(text)
        (self.dir / HARNESS_LOG).write_text(as_json_lines(self.harness))
        return check_run(self.dir)


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path / "run")


def clean_run(run: Run) -> Run:
    """Two leaders one after the other, a SIGKILL between them, a clean teardown."""
    a, b, c = run.worker("a"), run.worker("b"), run.worker("c")
    for name in (a, b, c):
        run.line(name, 0.1, "started", state="follower", term=0, leader=None)
    run.lead(a, 1, 0.2, None)
    run.line(a, 0.2, "work_start", term=1)
    run.line(a, 0.2, "elected", term=1)
    run.line(b, 0.2, "leader_changed", leader="id-a", term=1)
    run.line(
        b,
        1.0,
        "alive",
        running=True,
        state="follower",
        term=1,
        leader="id-a",
        leader_term=None,
        threads=[],
        missing=[],
    )
    run.fault(5.0, "sigkill", a)
    run.exit(a, 5.01, -9, expected=True)
    run.lead(b, 2, 6.0, 9.0)
    run.line(b, 6.0, "elected", term=2)
    run.line(b, 6.0, "work_start", term=2)
    run.line(b, 9.002, "work_stop", term=2, t_stop=T0 + 9.002, lag=0.001, lag_from_last_true=0.002)
    run.line(b, 9.0, "error", type="BackendError", message="x")
    run.harness_event(9.0, "teardown")
    for name in (b, c):
        run.line(name, 9.1, "exit")
        run.exit(name, 9.2, 0, expected=False)
    return run


def test_clean_run_passes(run: Run) -> None:
    """Leaderships one after the other with rising terms: no failure, and the figures add up."""
    report = clean_run(run).check()
    assert report.ok, report.summary()
    assert report.failures == []
    assert report.elections == 2
    assert [i.end_source for i in report.intervals] == ["exit", "lead_end"]
    assert report.intervals[0].end == pytest.approx(T0 + 5.01)
    # leaderless: from a's death (5.01) to b's election (6.0)
    assert report.leaderless_max == pytest.approx(0.99, abs=1e-6)
    assert report.leaderless_total == pytest.approx(0.99, abs=1e-6)
    assert [c["seconds"] for c in report.convergence] == [pytest.approx(1.0)]
    assert report.errors_by_type == {"BackendError": 1}
    assert report.work_stop_lags == [0.001]
    assert report.work_overlaps == []
    data = report.to_dict()
    json.dumps(data)  # serialisable
    assert data["faults_injected"] == 1 and data["ok"] is True
    assert "OK" in report.summary()


def test_overlap_is_detected(run: Run) -> None:
    """Two processes whose leaderships intersect: an overlap, with both intervals named."""
    a, b = run.worker("a"), run.worker("b")
    run.lead(a, 1, 0.0, 2.0)
    run.lead(b, 2, 1.5, 3.0)
    report = run.check()
    assert not report.ok
    (overlap,) = report.overlaps
    assert overlap["seconds"] == pytest.approx(0.5)
    assert {overlap["a"]["process"], overlap["b"]["process"]} == {"a", "b"}
    assert "overlaps" in report.failures[0]


def test_touching_intervals_do_not_overlap(run: Run) -> None:
    """One leadership ending exactly when the next begins is not an overlap."""
    a, b = run.worker("a"), run.worker("b")
    run.lead(a, 1, 0.0, 2.0)
    run.lead(b, 2, 2.0, 3.0)
    assert run.check().overlaps == []


def test_killed_leader_leads_until_reaped(run: Run) -> None:
    """A leader with no lead_end (SIGKILL) is taken to lead until the harness reaped it,
    and without a reaping, until the end of the logs: overlapping whoever came next."""
    a, b = run.worker("a"), run.worker("b")
    run.lead(a, 1, 0.0, None)
    run.lead(b, 2, 3.0, 4.0)
    report = run.check()
    assert len(report.overlaps) == 1
    assert report.intervals[0].end_source == "open"
    run.exit(a, 1.0, -9, expected=True)
    assert run.check().overlaps == []


def test_term_regression_is_detected(run: Run) -> None:
    """A leadership whose term is below an earlier one's is a regression, as is a
    process whose terms go down."""
    a, b = run.worker("a"), run.worker("b")
    run.lead(a, 5, 0.0, 1.0)
    run.lead(b, 3, 2.0, 3.0)
    report = run.check()
    (regression,) = report.term_regressions
    assert regression["kind"] == "leadership_term_not_greater"
    assert regression["interval"]["term"] == 3 and regression["earlier"]["term"] == 5
    assert report.overlaps == [] and not report.ok


def test_process_term_going_down_is_detected(run: Run) -> None:
    """Per source: a process' alive lines with a falling term are a regression; a
    signal delivered after a newer alive line is not."""
    a = run.worker("a")
    run.line(
        a,
        1.0,
        "alive",
        running=True,
        state="follower",
        term=4,
        leader=None,
        leader_term=None,
        threads=[],
        missing=[],
    )
    run.line(a, 1.1, "leader_changed", leader="x", term=3)  # another source: fine
    run.line(
        a,
        2.0,
        "alive",
        running=True,
        state="follower",
        term=2,
        leader=None,
        leader_term=None,
        threads=[],
        missing=[],
    )
    report = run.check()
    (regression,) = report.term_regressions
    assert regression["kind"] == "process_term_decreased"
    assert (regression["source"], regression["from"], regression["to"]) == ("alive", 4, 2)


def test_shared_term_is_detected(run: Run) -> None:
    """Two processes leading with the same term, even one after the other."""
    a, b = run.worker("a"), run.worker("b")
    run.lead(a, 7, 0.0, 1.0)
    run.lead(b, 7, 2.0, 3.0)
    report = run.check()
    (shared,) = report.shared_terms
    assert shared["term"] == 7
    assert len(report.term_regressions) == 1  # 7 is not above the earlier 7 either
    assert not report.ok


def test_flicker_is_merged_not_a_regression(run: Run) -> None:
    """The same process' term going away and coming back is one leadership (a flicker)."""
    a, b = run.worker("a"), run.worker("b")
    run.lead(a, 1, 0.0, 1.0)
    run.lead(a, 1, 1.01, 2.0)
    run.lead(b, 2, 3.0, 4.0)
    report = run.check()
    assert report.ok, report.summary()
    assert report.elections == 2
    assert len(report.flickers) == 1 and report.intervals[0].pieces == 2


def test_dead_threads_are_reported(run: Run) -> None:
    """A thread_died line, and an alive line of a running Candidate missing a thread."""
    a, b = run.worker("a"), run.worker("b")
    run.line(a, 1.0, "thread_died", thread="raftredis-heartbeat-x", type="KeyError", message="k")
    for t in (1.0, 2.0):  # reported once per role
        run.line(
            b,
            t,
            "alive",
            running=True,
            state="follower",
            term=1,
            leader=None,
            leader_term=None,
            threads=[],
            missing=["control"],
        )
    run.line(
        b,
        3.0,
        "alive",
        running=False,
        state="follower",
        term=1,
        leader=None,
        leader_term=None,
        threads=[],
        missing=["dispatch"],
    )  # not running: fine
    report = run.check()
    assert sorted(d["thread"] for d in report.dead_threads) == ["control", "raftredis-heartbeat-x"]
    assert not report.ok


def test_unexpected_exits_are_reported(run: Run) -> None:
    """A non-zero exit the harness did not cause, and a failed start."""
    a, b, c = run.worker("a"), run.worker("b"), run.worker("c")
    run.exit(a, 1.0, 1, expected=False)
    run.exit(b, 1.0, -9, expected=True)
    run.line(c, 0.5, "start_failed", type="BackendError", message="no")
    report = run.check()
    assert sorted(x["process"] for x in report.unexpected_exits) == ["a", "c"]


def test_leadership_during_an_outage_is_reported(run: Run) -> None:
    """A leadership reaching past outage start + renew_deadline, or beginning inside."""
    a, b = run.worker("a"), run.worker("b")
    run.lead(a, 1, 0.0, 10.4)  # outage from 10: 0.4 s in, under renew_deadline 0.5
    run.harness_event(10.0, "outage_start")
    run.harness_event(12.0, "outage_end")
    run.lead(b, 2, 12.5, 13.0)
    assert run.check().outage_violations == []
    run.logs.clear()
    a, b = run.worker("a"), run.worker("b")
    run.lead(a, 1, 0.0, 10.8)
    run.lead(b, 2, 11.0, 11.1)
    report = run.check()
    whys = sorted(v["why"].split(" ")[0] for v in report.outage_violations)
    assert whys == ["began", "lasted"]


def test_work_checks(run: Run) -> None:
    """while_leader work still running while another leads, and work never stopped
    in a process that exited cleanly."""
    a, b = run.worker("a"), run.worker("b")
    run.lead(a, 1, 0.0, 1.0)
    run.line(a, 0.0, "work_start", term=1)
    run.line(a, 2.5, "work_stop", term=1, t_stop=T0 + 2.5, lag=1.5, lag_from_last_true=1.5)
    run.lead(b, 2, 2.0, 3.0)
    run.line(b, 2.0, "work_start", term=2)
    run.line(b, 3.5, "exit")
    report = run.check()
    (overlap,) = report.work_overlaps
    assert overlap["process"] == "a" and overlap["seconds"] == pytest.approx(0.5)
    assert report.unstopped_work == [{"process": "b", "term": 2, "since": T0 + 2.0}]


def test_partial_last_line_is_counted_not_fatal(run: Run) -> None:
    """A process killed mid-write leaves a partial line: counted, the rest still read."""
    a = run.worker("a")
    run.lead(a, 1, 0.0, 1.0)
    report = run.check({"a": '{"t": 1800000002.0, "event": "ali'})
    assert report.bad_lines == 1
    assert report.elections == 1


def test_check_logs_without_harness(tmp_path: Path) -> None:
    """Worker logs alone can be checked (renew_deadline given by hand)."""
    log = tmp_path / "x.jsonl"
    lines = [
        {"t": T0, "event": "lead_begin", "term": 1, "pid": 1, "name": "x", "id": "x"},
        {
            "t": T0 + 1,
            "event": "lead_end",
            "term": 1,
            "t_last_true": T0 + 1,
            "pid": 1,
            "name": "x",
            "id": "x",
        },
    ]
    log.write_text(as_json_lines(lines))
    report = check_logs([log], renew_deadline=0.5)
    assert report.ok and report.elections == 1
    assert report.settings["renew_deadline"] == 0.5


def test_leadership_whose_elected_receiver_was_never_called_fails(run: Run) -> None:
    """A process that led for seconds without ever logging 'elected' is reported."""
    a = run.worker("a")
    run.line(a, 0.1, "started", state="follower", term=0, leader=None)
    run.lead(a, 1, 0.2, 3.0)
    run.line(a, 0.21, "elected", term=1)
    run.lead(a, 2, 4.0, 6.0)
    run.harness_event(6.1, "teardown")
    run.line(a, 6.2, "exit")
    report = run.check()
    assert [m["term"] for m in report.missed_signals] == [2]
    assert not report.ok


def test_clean_run_calls_every_elected_receiver(run: Run) -> None:
    """In the clean run every leadership reached its elected receiver."""
    assert clean_run(run).check().missed_signals == []
