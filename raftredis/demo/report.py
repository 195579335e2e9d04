"""The demo's summary: as text for people, and as one JSON record (``--json``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .faults import FAULT_LABEL, KILL, REELECT

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["plural", "render_summary", "short", "summary_record"]


def short(instance_id: str | None) -> str:
    """The first 8 characters of an instance id, enough to tell workers apart."""
    return "?" if instance_id is None else instance_id[:8]


def plural(n: int, noun: str) -> str:
    """``n`` and ``noun``, with an ``s`` unless ``n`` is 1."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def summary_record(demo: Supervisor) -> dict[str, Any]:
    """The summary of a finished demo as a JSON-ready dict."""
    return {
        "ended_by": demo.ended_by,
        "seconds": round(demo.finished_at - demo.wall0, 2),
        "kind": demo.args.kind,
        "workers": demo.size,
        "lease_ttl": demo.lease_ttl,
        "elections": len(demo.elections),
        "terms": [e.term for e in demo.elections],
        "failovers": [f.as_dict() for f in demo.failovers],
        "jobs": demo.final_counts,
        "worker_pids": [h.process.pid for h in demo.workers.values()],
        "worker_stats": {str(i): h.stats for i, h in demo.workers.items()},
        "redis_pid": demo.redis_pid,
        "leftover_pids": demo.leftover,
    }


def render_summary(demo: Supervisor) -> str:
    """The summary of a finished demo as text: elections, failovers, jobs, processes."""
    out = [
        "",
        f"Summary ({demo.finished_at - demo.wall0:.1f} s, ended by {demo.ended_by}, "
        f"{plural(demo.size, 'worker')}, lease_ttl {demo.lease_ttl:g} s)",
    ]
    terms = [e.term for e in demo.elections]
    span = f" (terms {min(terms)} to {max(terms)})" if terms else ""
    out.append(f"  elections: {len(demo.elections)}{span}")
    out.append(f"  failovers: {len(demo.failovers)}")
    for f in demo.failovers:
        if f.ms is None:
            result = "no new leader: timed out"
        else:
            who = f"worker {f.new_leader}" if f.handover else "the same worker"
            result = f"{f.ms:7.0f} ms  (term {f.old_term} -> {f.new_term}, {who})"
        out.append(f"    #{f.number:<3} {FAULT_LABEL[f.fault]:<9} of worker {f.victim:<3} {result}")
    done = [f.ms for f in demo.failovers if f.ms is not None]
    for kind in (KILL, REELECT):
        times = [f.ms for f in demo.failovers if f.fault == kind and f.ms is not None]
        if times:
            out.append(
                f"    after {FAULT_LABEL[kind]}: min {min(times):.0f} ms, "
                f"max {max(times):.0f} ms, mean {sum(times) / len(times):.0f} ms"
            )
    if len(done) < len(demo.failovers):
        out.append(f"    {len(demo.failovers) - len(done)} faults got no new leader in time")
    c = demo.final_counts
    if c is None:
        out.append("  jobs: unknown (Redis could not be read)")
    else:
        out.append(
            f"  jobs: pushed {c['pushed']}, processed {c['processed']}, "
            f"still queued {c['queued']}, lost {c['lost']} "
            f"(pushes refused by fencing: {c['fenced']})"
        )
    killed = sum(1 for h in demo.workers.values() if h.killed)
    left = f"LEFT RUNNING: {demo.leftover}" if demo.leftover else "none left running"
    out.append(
        f"  processes: {plural(len(demo.workers), 'worker')} started, {killed} killed; {left}"
    )
    return "\n".join(out)
