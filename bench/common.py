"""Shared helpers of the benchmarks: statistics, figures, Redis servers, processes.

Everything a benchmark measures ends up in a :class:`Figure`: the samples of
one quantity, the samples (or the model value) of its baseline from the same
run, and the target it is checked against. Times inside one process use
``time.perf_counter()``; across processes of this machine ``time.time()``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import redis

from raftredis import Candidate
from raftredis.testing import RedisServer, agreed_leader

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent

#: Redis is started with this maxclients: the scale benchmark opens thousands.
MAX_CLIENTS = 20000


# ----------------------------------------------------------------- config


@dataclass(frozen=True)
class Config:
    """How big a run is: ``quick`` (a few minutes) or ``full``."""

    full: bool = False
    #: For smoke runs: overrides every trial count given to :meth:`trials`.
    trial_override: int | None = None
    #: For smoke runs: multiplies every measuring window given to :meth:`window`.
    window_scale: float = 1.0

    @property
    def mode(self) -> str:
        return "full" if self.full else "quick"

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` or ``full``, by the mode of this run."""
        return full if self.full else quick

    def trials(self, quick: int, full: int) -> int:
        """A trial count: ``quick`` or ``full``, unless overridden for a smoke run."""
        if self.trial_override is not None:
            return self.trial_override
        return int(self.pick(quick, full))

    def window(self, quick: float, full: float) -> float:
        """A measuring window in seconds, scaled for smoke runs."""
        return float(self.pick(quick, full)) * self.window_scale


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that ``finally`` blocks stop servers and children."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def config_from_args(argv: Sequence[str] | None = None, description: str = "") -> Config:
    """The command line shared by every benchmark module run on its own."""
    import argparse

    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=description)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="the quick sizes (default)")
    group.add_argument("--full", action="store_true", help="the full sizes")
    parser.add_argument("--trials", type=int, help="override every trial count (smoke runs)")
    parser.add_argument(
        "--window-scale",
        type=float,
        default=1.0,
        help="multiply every measuring window (smoke runs)",
    )
    args = parser.parse_args(argv)
    return Config(full=args.full, trial_override=args.trials, window_scale=args.window_scale)


def log(text: str) -> None:
    """Progress, on stderr, with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile ``q`` (0 to 100): an actual sample, never interpolated.

    With fewer than 100 samples the 99th percentile is the maximum.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Stats:
    """Summary of a list of samples."""

    n: int
    min: float
    median: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Iterable[float]) -> Stats:
        data = [float(v) for v in values]
        if not data:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        ordered = sorted(data)
        n = len(ordered)
        mid = n // 2
        median = ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0
        return cls(n, ordered[0], median, percentile(ordered, 99), ordered[-1], sum(data) / n)

    def get(self, name: str) -> float:
        value: float = getattr(self, name)
        return value

    def as_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "min": self.min,
            "median": self.median,
            "p99": self.p99,
            "max": self.max,
            "mean": self.mean,
        }


# ---------------------------------------------------------------- figures


_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Check:
    """One condition of a target: ``<stat> <op> <limit>``.

    ``stat`` is a field of :class:`Stats` (``median``, ``p99``, ``mean``...)
    or ``ratio`` / ``ratio_p99`` (against the baseline).
    """

    stat: str
    op: str
    limit: float
    unit: str = ""

    def text(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        stat = "ratio (median)" if self.stat == "ratio" else self.stat
        return f"{stat} {self.op} {self.limit:g}{unit}"


@dataclass
class Figure:
    """One measured quantity, its baseline from the same run, and its target.

    ``higher_is_better`` only changes how the ratio is read: it is always
    ``median / baseline median``.
    """

    benchmark: str
    name: str
    unit: str
    samples: list[float]
    baseline_name: str | None = None
    baseline_samples: list[float] | None = None
    checks: list[Check] = field(default_factory=list)
    higher_is_better: bool = False
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: A target that is not a plain check on the samples: its text and verdict.
    custom_target: str | None = None
    custom_met: bool | None = None

    @property
    def stats(self) -> Stats:
        return Stats.of(self.samples)

    @property
    def baseline(self) -> Stats | None:
        if self.baseline_samples is None:
            return None
        return Stats.of(self.baseline_samples)

    @property
    def ratio(self) -> float | None:
        base = self.baseline
        if base is None or not base.median:
            return None
        return self.stats.median / base.median

    @property
    def ratio_p99(self) -> float | None:
        base = self.baseline
        if base is None or not base.p99:
            return None
        return self.stats.p99 / base.p99

    def value(self, stat: str) -> float | None:
        if stat == "ratio":
            return self.ratio
        if stat == "ratio_p99":
            return self.ratio_p99
        return self.stats.get(stat)

    @property
    def met(self) -> bool | None:
        """True/False against the checks; None when there is no target (information)."""
        if self.custom_target is not None:
            return self.custom_met
        if not self.checks:
            return None
        if not self.samples:
            return False
        for check in self.checks:
            value = self.value(check.stat)
            if value is None or math.isnan(value) or not _OPS[check.op](value, check.limit):
                return False
        return True

    @property
    def target(self) -> str:
        if self.custom_target is not None:
            return self.custom_target
        return " and ".join(check.text() for check in self.checks) or "(info)"

    def as_dict(self, with_samples: bool = True) -> dict[str, Any]:
        base = self.baseline
        out: dict[str, Any] = {
            "benchmark": self.benchmark,
            "figure": self.name,
            "unit": self.unit,
            "trials": len(self.samples),
            **{k: v for k, v in self.stats.as_dict().items() if k != "n"},
            "baseline": None
            if base is None
            else {"name": self.baseline_name, "trials": base.n, **_no_n(base.as_dict())},
            "ratio": self.ratio,
            "ratio_p99": self.ratio_p99,
            "target": self.target,
            "checks": [vars(c) for c in self.checks],
            "met": self.met,
            "higher_is_better": self.higher_is_better,
            "notes": self.notes,
            "extra": self.extra,
        }
        if with_samples:
            out["samples"] = self.samples
            if self.baseline_samples is not None:
                out["baseline"]["samples"] = self.baseline_samples
        return out


def _no_n(d: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in d.items() if k != "n"}


def fmt(value: float | None) -> str:
    """A number for a table: three significant digits, no exponent below 1e6."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    v = float(value)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 0.01:
        return f"{v:.3f}"
    return f"{v:.2g}"


def table(figures: Sequence[Figure]) -> str:
    """The markdown table of results."""
    head = (
        "| benchmark | figure | trials | min / median / p99 | baseline (median) "
        "| ratio | target | met? |\n|---|---|---|---|---|---|---|---|"
    )
    rows = [head]
    for f in figures:
        s = f.stats
        unit = f" {f.unit}" if f.unit else ""
        spread = f"{fmt(s.min)} / {fmt(s.median)} / {fmt(s.p99)}{unit}"
        base = f.baseline
        baseline = "-" if base is None else f"{fmt(base.median)}{unit} ({f.baseline_name})"
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        if f.ratio_p99 is not None and base is not None and base.n > 1:
            ratio += f" (p99 {f.ratio_p99:.2f}x)"
        met = {None: "info", True: "yes", False: "**NO**"}[f.met]
        judged = [c.stat for c in f.checks if c.stat not in ("median", "p99", "min")]
        if f.met is not None and "mean" in judged:
            met += f" (mean {fmt(s.mean)})"
        rows.append(
            f"| {f.benchmark} | {f.name} | {s.n} | {spread} | {baseline} | {ratio} "
            f"| {f.target} | {met} |"
        )
    return "\n".join(rows)


# ---------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """What this ran on: CPU count and model, Python, OS, load."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg": list(os.getloadavg()),
        "rlimit_nofile": [soft, hard],
        "redis_py": redis.__version__,
    }


# ------------------------------------------------------------------ redis


@contextlib.contextmanager
def redis_server(extra_args: Sequence[str] = ()) -> Iterator[RedisServer]:
    """A private redis-server (TCP, no persistence) for one benchmark; always stopped."""
    server = RedisServer(extra_args=["--maxclients", str(MAX_CLIENTS), *extra_args])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def command_calls(client: redis.Redis, exclude: Iterable[str] = ("info",)) -> int:
    """Sum of ``calls`` in INFO commandstats, without the excluded commands."""
    stats = client.info("commandstats")
    skip = {f"cmdstat_{name}" for name in exclude}
    return sum(int(v["calls"]) for k, v in stats.items() if k not in skip)


def redis_cpu_seconds(client: redis.Redis) -> float:
    """used_cpu_sys + used_cpu_user of the server process."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def connected_clients(client: redis.Redis) -> int:
    return int(client.info("clients")["connected_clients"])


# ------------------------------------------------------------- candidates


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.005) -> T | None:
    """Poll ``predicate`` until it returns something truthy: that value, or None at ``timeout``.

    Unlike ``raftredis.testing.wait_until`` it does not raise: a benchmark
    counts a miss as a result.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def settle(candidates: Sequence[Candidate], timeout: float = 10.0, quiet: float = 0.0) -> str:
    """Wait until all agree on one leader (then ``quiet`` more seconds); its id."""
    leader = wait_for(lambda: agreed_leader(candidates), timeout)
    if leader is None:
        states = [(c.id[:6], c.state.value, (c.leader_id or "-")[:6]) for c in candidates]
        raise RuntimeError(f"no agreed leader within {timeout} s: {states}")
    if quiet:
        time.sleep(quiet)
        leader = agreed_leader(candidates)
        if leader is None:
            return settle(candidates, timeout, quiet)
    return leader.id


def stop_all(candidates: Iterable[Candidate], timeout: float = 2.0) -> None:
    """Stop every candidate, ignoring failures (cleanup path)."""
    for c in list(candidates):
        with contextlib.suppress(Exception):
            c.stop(timeout=timeout)


class ElectedWatch:
    """Collects ``elected`` signals of several candidates: (perf_counter, id, term)."""

    def __init__(self) -> None:
        self._events: queue.SimpleQueue[tuple[float, str, int]] = queue.SimpleQueue()

    def attach(self, candidate: Candidate) -> None:
        events = self._events

        def on_elected(sender: Candidate, term: int, **extra: Any) -> None:
            events.put((time.perf_counter(), sender.id, term))

        candidate.on("elected", on_elected)

    def drain(self) -> None:
        while True:
            try:
                self._events.get_nowait()
            except queue.Empty:
                return

    def wait(
        self, accept: Callable[[str], bool], timeout: float
    ) -> tuple[tuple[float, str, int] | None, list[tuple[float, str, int]]]:
        """The first accepted election within ``timeout``, and the others seen before it."""
        deadline = time.monotonic() + timeout
        others: list[tuple[float, str, int]] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, others
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                return None, others
            if accept(event[1]):
                return event, others
            others.append(event)


# -------------------------------------------------------------- processes


def child_env() -> dict[str, str]:
    """The environment of benchmark children: the repo on the path, unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stderr_tail(stream: IO[bytes], who: str, lines: int = 15) -> str:
    """The last ``lines`` lines a process wrote to ``stream`` (its stderr file), as a
    paragraph to append to an error message ("" if it wrote nothing)."""
    with contextlib.suppress(OSError, ValueError):
        stream.flush()
        stream.seek(0)
        text = stream.read().decode("utf-8", "replace").strip()
        if text:
            return f"\n{who} stderr:\n" + "\n".join(text.splitlines()[-lines:])
    return ""


def close_streams(process: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
    """Close a child's stdin and stdout pipes and the file its stderr went to."""
    for stream in (process.stdin, process.stdout, stderr):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()


class Child:
    """A Python child process (``python -m <module> <args>``) that talks JSON lines.

    Its stdout is read by a thread into a queue; stdin takes commands; stderr
    goes to a temporary file shown when something fails. Always call
    :meth:`kill` (or use :func:`children`).
    """

    def __init__(self, module: str, args: Sequence[str]) -> None:
        self.module = module
        self._stderr: IO[bytes] = _tempfile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=str(REPO),
            env=child_env(),
            start_new_session=True,
        )
        self._lines: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"read-{module}")
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for raw in stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                self._lines.put(json.loads(line))
            except ValueError:
                self._lines.put({"event": "text", "text": line})
        self._lines.put(None)

    def send(self, obj: dict[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write((json.dumps(obj) + "\n").encode())
        stdin.flush()

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next message whose ``event`` is ``event``; raises on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"{self.module} sent no {event!r} within {timeout} s{self.tail()}"
                )
            try:
                msg = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if msg is None:
                self._lines.put(None)
                raise RuntimeError(
                    f"{self.module} exited ({self.process.poll()}) before {event!r}{self.tail()}"
                )
            if msg.get("event") == event:
                return msg
            if msg.get("event") == "error":
                raise RuntimeError(f"{self.module}: {msg.get('text')}{self.tail()}")

    def tail(self) -> str:
        return stderr_tail(self._stderr, "child")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the child (and its process group) and reap it; idempotent."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        close_streams(self.process, self._stderr)


def _tempfile() -> IO[bytes]:
    import tempfile

    return tempfile.TemporaryFile(prefix="raftredis-bench-")


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to put :class:`Child` processes in; every one is killed on exit."""
    procs: list[Child] = []
    try:
        yield procs
    finally:
        for child in procs:
            child.kill()


# ----------------------------------------------------------- child side


def emit(event: str, **fields: Any) -> None:
    """Child side: one JSON line on stdout."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def commands() -> Iterator[dict[str, Any]]:
    """Child side: JSON commands from stdin, until EOF."""
    for line in sys.stdin:
        line = line.strip()
        if line:
            yield json.loads(line)
