"""Plots of a results.json: one PNG per benchmark (matplotlib, Agg backend).

python -m bench.plots .bench/results.json [OUTDIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

Fig = dict[str, Any]


def _of(figures: list[Fig], benchmark: str) -> list[Fig]:
    return [f for f in figures if f["benchmark"] == benchmark]


def _base(f: Fig) -> list[float]:
    base = f.get("baseline") or {}
    samples: list[float] = base.get("samples") or []
    return samples


def _cdf(ax: Any, values: list[float], label: str) -> None:
    if not values:
        return
    xs = sorted(values)
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=label)


def handover(figures: list[Fig], out: Path) -> Path | None:
    figs = _of(figures, "handover")
    if not figs:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.5))
    data, labels = [], []
    for f in figs:
        data += [f["samples"], _base(f)]
        labels += [f["figure"].replace(" → elected elsewhere", ""), "  baseline"]
    ax.boxplot(data, whis=(0, 100))
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=25, ha="right", fontsize=8)
    ax.axhline(50, color="tab:orange", ls="--", lw=1, label="median target 50 ms")
    ax.axhline(100, color="tab:red", ls="--", lw=1, label="p99 target 100 ms")
    ax.set_ylabel("ms to elected elsewhere")
    ax.set_title("Graceful handover (baseline: raw SET NX with the same jitter)")
    ax.legend(fontsize=8)
    return _save(fig, out / "handover.png")


def failover(figures: list[Fig], out: Path) -> Path | None:
    figs = _of(figures, "failover")
    if not figs:
        return None
    fast = [f for f in figs if "instances" in f["extra"]]
    lease = [f for f in figs if "lease_ttl" in f["extra"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for f in fast:
        _cdf(left, f["samples"], f"{f['extra']['instances']} instances")
    left.axvline(300, color="tab:orange", ls="--", lw=1, label="median target 300 ms")
    left.axvline(500, color="tab:red", ls="--", lw=1, label="p99 target 500 ms")
    left.set_xlabel("ms from SIGKILL to elected elsewhere")
    left.set_ylabel("fraction of kills")
    left.set_title("Fast failover (the defaults)")
    left.legend(fontsize=8)
    for f in lease:
        ttl = f["extra"]["lease_ttl"]
        phases = f["extra"].get("kill_phase") or [0.0] * len(f["samples"])
        right.scatter(
            phases, [s / (ttl * 1000) for s in f["samples"]], label=f"lease_ttl {ttl:g} s"
        )
    right.axhline(1.0, color="tab:orange", ls="--", lw=1, label="lease_ttl (median target)")
    right.axhline(1.1, color="tab:red", ls="--", lw=1, label="1.1 x lease_ttl (p99 target)")
    right.axhline(0.75, color="grey", ls=":", lw=1, label="lease_ttl - renew_interval")
    # The last renew came phase x renew_interval before the kill (renew_interval = ttl / 4).
    right.plot([0, 1], [1.0, 0.75], color="black", lw=1, alpha=0.5, label="model: 1 - phase / 4")
    right.set_xlabel("moment of the kill within the renew cycle (0..1)")
    right.set_ylabel("failover / lease_ttl")
    right.set_title("The lease alone (fast_failover=False)")
    right.legend(fontsize=8)
    fig.suptitle("Crash failover (SIGKILL of the leader's process)")
    return _save(fig, out / "failover.png")


def messaging(figures: list[Fig], out: Path) -> Path | None:
    figs = _of(figures, "messaging")
    if not figs:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    rt = [f for f in figs if f["unit"] == "µs"]
    ratios = []
    for f in rt:
        where = f["figure"].split(", ", 1)[-1]
        _cdf(ax1, f["samples"], f"raftredis, {where}")
        _cdf(ax1, _base(f), f"raw redis-py, {where}")
        ratios.append(f"{f['ratio']:.2f}")
    ax1.set_xscale("log")
    ax1.xaxis.set_minor_formatter(NullFormatter())  # the minor labels overlap
    ax1.set_xlabel("round trip, µs (log)")
    ax1.set_ylabel("fraction of round trips")
    ax1.set_title(f"Round trip (ratios of medians {', '.join(ratios)})")
    ax1.legend(fontsize=7)
    seq = [f for f in figs if f["unit"] == "msg/s" and "batch" not in f["figure"]]
    seq = [f for f in seq if "sender calls only" not in f["figure"]]
    bulk = [f for f in figs if f["unit"] == "msg/s" and "batch" in f["figure"]]
    labels, ours, theirs = [], [], []
    for f in seq + bulk:
        labels.append(_short_label(f["figure"], (f.get("baseline") or {}).get("name", "")))
        ours.append(f["median"])
        theirs.append((f.get("baseline") or {}).get("median", 0))
    ys = range(len(labels))
    ax2.barh([y + 0.2 for y in ys], ours, height=0.4, label="raftredis")
    ax2.barh([y - 0.2 for y in ys], theirs, height=0.4, label="raw redis-py (same run)")
    ax2.set_yticks(list(ys), labels, fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xscale("log")
    ax2.set_xlabel("messages/s, median (log)")
    ax2.set_title("One sender: sequential calls and batches")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "messaging.png")


def _short_label(name: str, baseline: str) -> str:
    """A bar label from a figure name: what was sent, and how it was timed."""
    what = name.split(",")[0]
    timed = "until received" if "subscriber has all" in name else "sender"
    vs = " (vs subscribed raw sender)" if "subscribed" in baseline else ""
    return f"{what}, {timed}{vs}"


def redis_cost(figures: list[Fig], out: Path) -> Path | None:
    figs = [f for f in _of(figures, "redis cost") if "mean" in f["extra"]]
    if not figs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = [str(f["extra"]["instances"]) for f in figs]
    xs = range(len(figs))
    ax.bar(list(xs), [f["extra"]["mean"] for f in figs], width=0.5, label="measured (mean)")
    ax.scatter(
        list(xs),
        [(f.get("baseline") or {}).get("median", 0.0) for f in figs],
        color="black",
        zorder=3,
        label="budget model",
    )
    ax.axhline(2.5, color="tab:red", ls="--", lw=1, label="target 2.5 per instance")
    ax.set_xticks(list(xs), labels)
    ax.set_xlabel("instances in the kind")
    ax.set_ylabel("commands/s per instance")
    ax.set_title("Redis commands at steady state (default timings)")
    ax.legend(fontsize=8)
    return _save(fig, out / "redis_cost.png")


def discovery(figures: list[Fig], out: Path) -> Path | None:
    figs = [f for f in _of(figures, "discovery") if "members" in f["extra"]]
    if not figs:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for keys in sorted({f["extra"]["unrelated_keys"] for f in figs}):
        rows = sorted(
            (f for f in figs if f["extra"]["unrelated_keys"] == keys),
            key=lambda f: f["extra"]["members"],
        )
        members = [f["extra"]["members"] for f in rows]
        ax.plot(
            members,
            [f["median"] for f in rows],
            marker="o",
            label=f"get_instances(), {keys:,} other keys",
        )
        ax.plot(
            members,
            [(f.get("baseline") or {}).get("median", 0.0) for f in rows],
            marker="x",
            ls="--",
            label=f"raw redis-py, {keys:,} other keys",
        )
    ax.axhline(1000, color="tab:red", ls=":", lw=1, label="1 ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("members of the kind")
    ax.set_ylabel("median latency, µs")
    ax.set_title("Discovery")
    ax.legend(fontsize=7)
    return _save(fig, out / "discovery.png")


def scale(figures: list[Fig], out: Path) -> Path | None:
    figs = _of(figures, "scale")
    if not figs:
        return None

    def series(prefix: str) -> tuple[list[int], list[Fig]]:
        rows = [f for f in figs if f["figure"].startswith(prefix)]
        sizes = [int(f["figure"].rsplit(", ", 1)[1].split()[0]) for f in rows]
        return sizes, rows

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    n, rows = series("start → one leader")
    axes[0][0].plot(n, [f["median"] for f in rows], marker="o", label="all agree")
    axes[0][0].plot(
        n, [f["extra"]["first_elected_s"] for f in rows], marker="x", label="first leader"
    )
    axes[0][0].axhline(6, color="tab:red", ls="--", lw=1, label="2 x lease_ttl")
    axes[0][0].set_ylabel("s from start")
    axes[0][0].set_title("Start-up convergence")
    n, rows = series("Redis CPU")
    axes[0][1].plot(n, [f["mean"] for f in rows], marker="o", label="Redis CPU")
    axes[0][1].plot(
        n,
        [(f.get("baseline") or {}).get("median") for f in rows],
        marker="x",
        ls="--",
        label="idle Redis",
    )
    n2, rows2 = series("client CPU per Candidate")
    axes[0][1].plot(
        n2, [f["mean"] * k for f, k in zip(rows2, n2)], marker="s", label="all client processes"
    )
    axes[0][1].axhline(25, color="tab:red", ls="--", lw=1, label="Redis target 25%")
    axes[0][1].set_ylabel("% of one core")
    axes[0][1].set_title("CPU at steady state")
    n, rows = series("RSS per Candidate")
    axes[1][0].plot(n, [f["median"] for f in rows], marker="o")
    axes[1][0].set_ylabel("KiB per Candidate")
    axes[1][0].set_title("Memory")
    n, rows = series("start() duration")
    axes[1][1].plot(n, [f["median"] for f in rows], marker="o", label="median")
    axes[1][1].plot(n, [f["p99"] for f in rows], marker="x", label="p99")
    axes[1][1].set_ylabel("ms")
    axes[1][1].set_title("start() while the whole kind starts")
    for ax in (a for row in axes for a in row):
        ax.set_xlabel("instances")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out / "scale.png")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(results: Path, out: Path) -> list[Path]:
    """Draw every plot the results have data for; the paths written."""
    figures: list[Fig] = json.loads(Path(results).read_text())["figures"]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for draw in (handover, failover, messaging, redis_cost, discovery, scale):
        try:
            path = draw(figures, out)
        except Exception as exc:  # one bad plot must not lose the others
            print(f"plot {draw.__name__} failed: {exc!r}", file=sys.stderr)
            plt.close("all")
            continue
        if path is not None:
            written.append(path)
    return written


def main() -> None:
    results = Path(sys.argv[1] if len(sys.argv) > 1 else ".bench/results.json")
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else results.parent
    for path in make_plots(results, out):
        print(path)


if __name__ == "__main__":
    main()
