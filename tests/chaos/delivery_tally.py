"""Counts what became of numbered reliable messages: lost, duplicated, reordered.

Input: the senders' attempts (:class:`reliable_senders.Sent`), the ``reliable``
events of every worker log of a run (see ``worker.py``) and the harness log
(its SIGKILLs). :func:`tally` returns the figures, per destination (a worker's
id, or ``leader``) and in total:

* ``sent``: attempts that returned (Redis took them); ``refused`` and
  ``failed`` attempts are counted apart (a failed one may still be delivered);
* ``delivered``: sent messages delivered at least once; ``lost``: sent and
  never delivered;
* ``duplicates``: deliveries beyond the first, each judged by the delivery
  before it, from process P at time t:

  - ``explained_kill``: the documented case, a receiver that died between
    delivery and ack: P was SIGKILLed after t, before this delivery, and
    delivered nothing later on that stream (else it had acked this one);
  - ``explained_ack``: P logged that acking a reliable message failed (Redis
    was down) after t, before this delivery;
  - ``unexplained``: the rest;
* ``order_violations``: per sender and destination, a number delivered for
  the first time after a higher one was (redeliveries are left out);
* ``misdelivered``: a message to one instance delivered by another;
  ``leader_not_leading``: a message to the leader handled by a process that
  did not lead at that moment.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from event_log import read_events
from reliable_senders import FAILED, LEADER, OK, REFUSED, Sent

from raftredis.keys import KeySpace

HARNESS_LOG = "harness.jsonl"
#: What reliable.py logs when an ack failed (the message will be delivered again).
ACK_FAILED = "acking a reliable message failed"
#: The stream a MessagesLostError with a count names (reliable.py's wording).
_LOST_ON = re.compile(r" on (\S+) were lost")
#: Examples kept per kind of finding.
EXAMPLES = 5


@dataclass(frozen=True)
class Delivery:
    """One ``reliable`` event: message (dest, sender, n) delivered by a process."""

    dest: str
    sender: str
    n: int
    t: float
    process: str  # the log's name (one process)
    pid: int
    receiver_id: str
    leading: bool | None


@dataclass
class RunLogs:
    """What the tally needs from a run directory."""

    deliveries: list[Delivery]
    #: pid -> time of the SIGKILL the harness sent it.
    killed_at: dict[int, float]
    #: process -> times at which it logged a failed ack.
    failed_acks: dict[str, list[float]]
    #: process -> its ``error`` events.
    errors: dict[str, list[dict[str, Any]]]


def read_run(run_dir: Path) -> RunLogs:
    run_dir = Path(run_dir)
    deliveries: list[Delivery] = []
    failed_acks: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(run_dir.glob("*.jsonl")):
        if path.name == HARNESS_LOG:
            continue
        events, _ = read_events(path)
        for e in events:
            kind = e.get("event")
            if kind == "reliable":
                p = e.get("payload")
                if not isinstance(p, dict) or not {"s", "d", "n"} <= p.keys():
                    continue
                deliveries.append(
                    Delivery(
                        dest=str(p["d"]),
                        sender=str(p["s"]),
                        n=int(p["n"]),
                        t=float(e["t"]),
                        process=path.stem,
                        pid=int(e.get("pid") or 0),
                        receiver_id=str(e.get("id")),
                        leading=e.get("leading"),
                    )
                )
            elif kind == "lib_log" and ACK_FAILED in str(e.get("message")):
                failed_acks[path.stem].append(float(e["t"]))
            elif kind == "error":
                errors[path.stem].append(e)
    killed_at: dict[int, float] = {}
    harness, _ = read_events(run_dir / HARNESS_LOG)
    for e in harness:
        if e.get("event") == "fault" and e.get("kind") == "sigkill" and e.get("pid"):
            killed_at[int(e["pid"])] = float(e["t"])
    deliveries.sort(key=lambda d: d.t)
    return RunLogs(deliveries, killed_at, dict(failed_acks), dict(errors))


def _new_counts() -> dict[str, Any]:
    return {
        "sent": 0,
        "refused": 0,
        "failed": 0,
        "delivered": 0,
        "delivered_after_failed_send": 0,
        "lost": 0,
        "duplicates": 0,
        "explained_kill": 0,
        "explained_ack": 0,
        "unexplained": 0,
        "order_violations": 0,
        "misdelivered": 0,
        "leader_not_leading": 0,
    }


def _judge(previous: Delivery, this: Delivery, later_on_stream: bool, run: RunLogs) -> str:
    """Why ``this`` delivery repeats ``previous`` (see the module docstring)."""
    killed = run.killed_at.get(previous.pid)
    if killed is not None and previous.t <= killed <= this.t and not later_on_stream:
        return "explained_kill"
    if any(previous.t <= t <= this.t for t in run.failed_acks.get(previous.process, ())):
        return "explained_ack"
    return "unexplained"


def tally(sends: list[Sent], run: RunLogs) -> dict[str, Any]:
    """The figures, per destination and in total, with a few examples of each finding."""
    per_dest: dict[str, dict[str, Any]] = defaultdict(_new_counts)
    examples: dict[str, list[Any]] = defaultdict(list)

    def note(kind: str, what: Any) -> None:
        if len(examples[kind]) < EXAMPLES:
            examples[kind].append(what)

    status: dict[tuple[str, str, int], str] = {}
    for s in sends:
        status[(s.dest, s.sender, s.n)] = s.status
        per_dest[s.dest][{OK: "sent", REFUSED: "refused", FAILED: "failed"}[s.status]] += 1

    by_message: dict[tuple[str, str, int], list[Delivery]] = defaultdict(list)
    # (process, dest) -> time of its last delivery on that stream
    last_on_stream: dict[tuple[str, str], float] = {}
    for d in run.deliveries:
        by_message[(d.dest, d.sender, d.n)].append(d)
        last_on_stream[(d.process, d.dest)] = d.t
        if d.dest != LEADER and d.receiver_id != d.dest:
            per_dest[d.dest]["misdelivered"] += 1
            note("misdelivered", d.__dict__)
        if d.dest == LEADER and d.leading is False:
            per_dest[d.dest]["leader_not_leading"] += 1
            note("leader_not_leading", d.__dict__)

    for key, deliveries in by_message.items():
        counts = per_dest[key[0]]
        sent_as = status.get(key)
        if sent_as == OK:
            counts["delivered"] += 1
        elif sent_as == FAILED:
            counts["delivered_after_failed_send"] += 1
        for previous, this in zip(deliveries, deliveries[1:]):
            later = last_on_stream[(previous.process, previous.dest)] > previous.t
            verdict = _judge(previous, this, later, run)
            counts["duplicates"] += 1
            counts[verdict] += 1
            if verdict == "unexplained":
                note("unexplained", {"first": previous.__dict__, "again": this.__dict__})

    for key, sent_as in status.items():
        if sent_as == OK and key not in by_message:
            per_dest[key[0]]["lost"] += 1
            note("lost", {"dest": key[0], "sender": key[1], "n": key[2]})

    highest: dict[tuple[str, str], int] = {}
    firsts = sorted((ds[0] for ds in by_message.values()), key=lambda d: d.t)
    for d in firsts:
        top = highest.get((d.sender, d.dest), 0)
        if d.n < top:
            per_dest[d.dest]["order_violations"] += 1
            note("order_violations", {**d.__dict__, "after": top})
        highest[(d.sender, d.dest)] = max(top, d.n)

    total = _new_counts()
    for counts in per_dest.values():
        for k, v in counts.items():
            total[k] += v
    return {"total": total, "per_destination": dict(per_dest), "examples": dict(examples)}


def lost_messages(sends: list[Sent], run: RunLogs) -> list[Sent]:
    """The sent messages never delivered."""
    delivered = {(d.dest, d.sender, d.n) for d in run.deliveries}
    return [s for s in sends if s.status == OK and (s.dest, s.sender, s.n) not in delivered]


def lost_reports(run: RunLogs) -> dict[str, list[dict[str, Any]]]:
    """Each process' MessagesLostError reports: time, count (None: not known), message."""
    return {
        process: [
            {"t": e["t"], "count": e.get("count"), "message": str(e.get("message"))}
            for e in events
            if e.get("type") == "MessagesLostError"
        ]
        for process, events in run.errors.items()
    }


def reported_counts(reports: dict[str, list[dict[str, Any]]], keys: KeySpace) -> dict[str, int]:
    """The counted losses reported, per destination (the stream a report names)."""
    out: dict[str, int] = defaultdict(int)
    for found in reports.values():
        for r in found:
            match = _LOST_ON.search(r["message"])
            if r["count"] is None or match is None:
                continue
            stream = match.group(1)
            if stream == keys.reliable_leader:
                out[LEADER] += r["count"]
            elif stream.startswith(keys.reliable_prefix):
                out[stream[len(keys.reliable_prefix) :]] += r["count"]
    return dict(out)


def line(figures: dict[str, Any]) -> str:
    """The totals on one line."""
    t = figures["total"]
    return (
        f"sent {t['sent']} (refused {t['refused']}, failed {t['failed']}), delivered "
        f"{t['delivered']} (+{t['delivered_after_failed_send']} of failed sends), lost "
        f"{t['lost']}, duplicates {t['duplicates']} (explained: kill {t['explained_kill']}, "
        f"failed ack {t['explained_ack']}; unexplained {t['unexplained']}), order "
        f"violations {t['order_violations']}, misdelivered {t['misdelivered']}, leader "
        f"messages handled while not leading {t['leader_not_leading']}"
    )
