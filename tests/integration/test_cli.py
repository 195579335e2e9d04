"""The ``raftredis`` command-line tool against a real redis-server.

``status``, ``send`` and the usage errors run in this process (:func:`cli`);
``watch`` and ``run`` run as real processes (``python -m raftredis``), killed
and signalled the way an operator or a crash would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from cli_helpers import CHILD_SOURCE, TOOL, Tool, Tools, cli, elapsed_until, gone, read_child_log
from helpers import Cluster, free_port

from raftredis.testing import RedisServer, SignalRecorder, wait_until

pytestmark = pytest.mark.integration

LEASE_TTL = 1.0


# ------------------------------------------------------------------- status


def test_status_lists_leader_term_members_and_meta(
    cluster: Cluster, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """status --json and the table show the leader, its term, every member and its meta."""
    candidates = [cluster.start(meta={"n": n}) for n in range(3)]
    leader = cluster.wait_for_leader()
    wait_until(lambda: all(c.leader_id == leader.id for c in candidates))

    result = cli(capsys, "status", "--url", redis_url, "--kind", cluster.kind, "--json")
    assert result.code == 0, result.err
    state = result.json()
    assert state["kind"] == cluster.kind
    assert state["leader"]["id"] == leader.id
    assert state["leader"]["term"] == leader.current_term == state["term"]
    assert [m["id"] for m in state["members"]] == [c.id for c in candidates]  # join order
    assert [m["meta"] for m in state["members"]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert {m["id"]: m["state"] for m in state["members"]} == {
        c.id: "leader" if c is leader else "follower" for c in candidates
    }
    for member in state["members"]:
        assert member["term"] == (leader.current_term if member["id"] == leader.id else None)
        assert 0 < member["expires_in"] <= 2 * LEASE_TTL
        # Both by the server's clock (the refresh by an estimate of it: allow a little).
        assert 0 < member["joined_at"] <= member["last_seen"] + 0.1 <= state["time"] + 0.2

    result = cli(capsys, "status", "--url", redis_url, "--kind", cluster.kind)
    assert result.code == 0, result.err
    assert f"leader {leader.id} (term {leader.current_term})" in result.out
    for n, candidate in enumerate(candidates):
        assert candidate.id in result.out
        assert f'{{"n":{n}}}' in result.out
    # Reading did not join the kind.
    assert [i.id for i in candidates[0].get_instances()] == [c.id for c in candidates]


def test_status_of_an_empty_kind(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A kind nobody ever joined: no leader, no members, no term."""
    result = cli(capsys, "status", "--url", redis_url, "--kind", "nobody-here", "--json")
    assert result.code == 0, result.err
    state = result.json()
    assert (state["leader"], state["term"], state["members"]) == (None, None, [])

    result = cli(capsys, "status", "--url", redis_url, "--kind", "nobody-here")
    assert result.code == 0
    assert "no leader, 0 members" in result.out


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["watch", "--json", "--duration", "5"],
        ["send", "--all", "1"],
        ["run", "--", "true"],
    ],
    ids=lambda c: c[0],
)
def test_unreachable_redis_is_one_line_and_exit_1(command: list[str]) -> None:
    """Nothing listens on the port: exit 1 and one clear line on stderr, no traceback."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    command = [command[0], "--url", url, "--kind", "k", *command[1:]]
    done = subprocess.run([*TOOL, *command], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"raftredis: cannot reach Redis at {url}: Connection refused"
    ]


def test_usage_errors_exit_2(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A payload that is not JSON, no address, a bad kind, bad --meta: exit 2, saying why."""
    result = cli(capsys, "send", "--url", redis_url, "--kind", "k", "--all", "hello")
    assert result.code == 2
    assert "PAYLOAD must be JSON" in result.err
    assert "'\"hello\"'" in result.err  # how to quote it
    result = cli(capsys, "send", "--url", redis_url, "--kind", "k", '"hello"')
    assert result.code == 2
    assert "exactly one of --to ID, --all, --leader, --followers" in result.err
    result = cli(capsys, "status", "--url", redis_url, "--kind", "a:b")
    assert result.code == 2
    result = cli(capsys, "run", "--url", redis_url, "--kind", "k", "--meta", "{x", "--", "true")
    assert result.code == 2
    assert "--meta must be JSON" in result.err
    result = cli(capsys, "status", "--kind", "k", "--url", "http://localhost")
    assert result.code == 2


# --------------------------------------------------------------------- send


def test_send_to_one_all_leader_and_followers(
    cluster: Cluster, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each address reaches the right instances, and the count is printed."""
    leader = cluster.start()
    follower = cluster.start()
    recorder = SignalRecorder().connect(leader, "message").connect(follower, "message")
    args = ["send", "--url", redis_url, "--kind", cluster.kind]

    def payloads(candidate: object) -> list[object]:
        received = recorder.of("message", lambda e: e.sender is candidate)
        return [e.kwargs["message"].payload for e in received]

    result = cli(capsys, *args, "--to", follower.id, '{"n": 1}', "--json")
    assert (result.code, result.json()) == (0, {"received": 1}), result.err
    wait_until(lambda: payloads(follower) == [{"n": 1}])

    result = cli(capsys, *args, "--all", "[2]")
    assert (result.code, result.out) == (0, "received by 2 instances\n"), result.err
    wait_until(lambda: payloads(leader) == [[2]] and payloads(follower) == [{"n": 1}, [2]])

    result = cli(capsys, *args, "--leader", '"three"', "--json")
    assert (result.code, result.json()) == (0, {"received": 1}), result.err
    wait_until(lambda: payloads(leader) == [[2], "three"])

    result = cli(capsys, *args, "--followers", "4", "--json")
    assert result.code == 0, result.err
    assert result.json()["received"] >= 1  # counts the leader too, which drops it
    wait_until(lambda: payloads(follower) == [{"n": 1}, [2], 4])
    assert payloads(leader) == [[2], "three"]
    # The sender never joined.
    assert {i.id for i in leader.get_instances()} == {leader.id, follower.id}


def test_send_does_not_join_the_kind(
    cluster: Cluster, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The running Candidate gets the message, from a raftredis-cli-... sender that is not
    the leader, and no instance_joined or instance_left; it stays the only member, and leader."""
    worker = cluster.start()
    recorder = SignalRecorder().connect(worker, "instance_joined", "instance_left", "message")
    args = ["send", "--url", redis_url, "--kind", cluster.kind]
    result = cli(capsys, *args, "--all", '"hi"', "--json")
    assert (result.code, result.json()) == (0, {"received": 1}), result.err
    message = recorder.wait_for("message").kwargs["message"]
    assert message.sender_id.startswith("raftredis-cli-")
    assert (message.payload, message.from_leader) == ("hi", False)
    # Notices arrive in the order they were published: once a later join and leave
    # are heard, any notice the send had published would have been heard before.
    probe = cluster.start()
    recorder.wait_for("instance_joined", lambda e: e.kwargs["instance"].id == probe.id)
    probe.stop()
    recorder.wait_for("instance_left", lambda e: e.kwargs["instance_id"] == probe.id)
    assert [e.kwargs["instance"].id for e in recorder.of("instance_joined")] == [probe.id]
    assert [e.kwargs["instance_id"] for e in recorder.of("instance_left")] == [probe.id]
    assert worker.is_leader
    assert [i.id for i in worker.get_instances()] == [worker.id]


def test_send_to_an_empty_kind_creates_no_key(
    redis_url: str, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nobody to receive it, and nobody created: no member, no term, no lease, no key."""
    for address in (["--all"], ["--leader"], ["--followers"], ["--to", "someone"]):
        result = cli(capsys, "send", "--url", redis_url, "--kind", "nobody", *address, "1")
        assert (result.code, result.out) == (0, "received by 0 instances\n"), result.err
    assert redis_client.keys("*") == []


# -------------------------------------------------------------------- watch


def leader_of(line: dict[str, Any]) -> str | None:
    return None if line["leader"] is None else str(line["leader"]["id"])


def member_ids(line: dict[str, Any]) -> list[str]:
    return [m["id"] for m in line["members"]]


def has_event(line: dict[str, Any], kind: str, instance_id: str) -> bool:
    return any(e["type"] == kind and e["id"] == instance_id for e in line["events"])


def test_watch_json_follows_joins_and_an_election_live(
    cluster: Cluster, redis_url: str, tools: Tools
) -> None:
    """watch --json prints a line per change: a join, an election, a leave, as they happen."""
    watch = tools.start(
        "watch", "--url", redis_url, "--kind", cluster.kind, "--json", "--duration", "30"
    )

    def line_where(check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            hits = [line for line in watch.json_lines() if check(line)]
            return hits[-1] if hits else None

        return wait_until(found, 10.0, lambda: f"lines: {watch.stdout} {watch.stderr}")

    first = line_where(lambda line: True)
    assert (first["leader"], first["members"], first["events"]) == (None, [], [])

    a = cluster.start(meta={"name": "a"})
    line_where(lambda line: leader_of(line) == a.id and member_ids(line) == [a.id])
    b = cluster.start(meta={"name": "b"})
    # The line of the "joined" notice (the periodic re-read may have printed the change first).
    joined = line_where(lambda line: has_event(line, "joined", b.id))
    assert member_ids(joined) == [a.id, b.id]
    assert [m["meta"] for m in joined["members"]] == [{"name": "a"}, {"name": "b"}]

    a.stop()  # hands over: b is elected
    elected = line_where(lambda line: has_event(line, "elected", b.id))
    assert leader_of(elected) == b.id
    assert elected["leader"]["term"] == b.current_term > a.current_term
    assert member_ids(elected) == [b.id]
    # The watcher never joined.
    assert [i.id for i in b.get_instances()] == [b.id]

    watch.process.send_signal(signal.SIGTERM)
    assert watch.wait() == 0


def test_watch_count_prints_a_table(
    cluster: Cluster, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json and without a terminal, watch prints the table; --count ends it."""
    leader = cluster.start()
    result = cli(capsys, "watch", "--url", redis_url, "--kind", cluster.kind, "--count", "1")
    assert result.code == 0, result.err
    assert f"leader {leader.id}" in result.out


# ---------------------------------------------------------------------- run


def start_supervisor(tools: Tools, redis_url: str, kind: str, log: Path, name: str) -> Tool:
    child = log.with_name("child.py")
    child.write_text(CHILD_SOURCE)
    return tools.start(
        "run", "--url", redis_url, "--kind", kind, "--json",
        "--lease-ttl", str(LEASE_TTL), "--grace", "2",
        "--", sys.executable, str(child), str(log), name,
    )  # fmt: skip


def starts(log: Path) -> list[str]:
    return [line.name for line in read_child_log(log) if line.what == "start"]


def test_run_hands_the_command_over_when_the_leader_is_killed(
    redis_url: str, tmp_path: Path, tools: Tools
) -> None:
    """Exactly one `run` runs the command; SIGKILL it: its command dies, the other starts it."""
    log = tmp_path / "child.log"
    kind = "cron-kill"
    a = start_supervisor(tools, redis_url, kind, log, "a")
    a.wait_for_event("started")
    b = start_supervisor(tools, redis_url, kind, log, "b")
    b.wait_for_event("joined")
    wait_until(lambda: starts(log) == ["a"])
    with contextlib.suppress(AssertionError):  # one lease later, still one copy runs
        wait_until(lambda: len(starts(log)) > 1, timeout=LEASE_TTL)
    assert starts(log) == ["a"]
    orphan = read_child_log(log)[0].pid
    a.track()

    os.kill(a.pid, signal.SIGKILL)
    took = elapsed_until(lambda: starts(log) == ["a", "b"], timeout=10.0)
    assert took < 2 * LEASE_TTL + 0.5, f"the command restarted after {took:.2f}s"
    # The orphaned command got SIGTERM from the watchdog and is gone.
    wait_until(lambda: gone(orphan), timeout=5.0)
    assert ("a", "sigterm") in [(line.name, line.what) for line in read_child_log(log)]
    wait_until(lambda: all(gone(pid) for pid in a.descendants), timeout=5.0)
    new = b.events("started")[-1]
    lines = read_child_log(log)
    assert lines[-1].term == new["term"] > lines[0].term  # RAFTREDIS_TERM: the fencing token


def test_run_sigterm_stops_the_command_then_hands_over(
    redis_url: str, tmp_path: Path, tools: Tools
) -> None:
    """SIGTERM the leading `run`: its command gets SIGTERM, it exits 0, the other takes over."""
    log = tmp_path / "child.log"
    kind = "cron-term"
    a = start_supervisor(tools, redis_url, kind, log, "a")
    a.wait_for_event("started")
    b = start_supervisor(tools, redis_url, kind, log, "b")
    b.wait_for_event("joined")

    a.process.send_signal(signal.SIGTERM)
    assert a.wait() == 0
    names = [(line.name, line.what) for line in read_child_log(log)]
    assert names[:2] == [("a", "start"), ("a", "sigterm")]
    took = elapsed_until(lambda: starts(log) == ["a", "b"], timeout=5.0)
    assert took < LEASE_TTL / 2, f"the handover took {took:.2f}s"
    assert [e["event"] for e in a.events()][-4:] == ["signal", "stopping", "stopped", "left"]


def test_run_stops_the_command_when_leadership_is_lost(
    redis_server: RedisServer, redis_url: str, tmp_path: Path, tools: Tools
) -> None:
    """Redis frozen: the leader demotes itself and SIGTERMs the command; back: it runs again."""
    log = tmp_path / "child.log"
    a = start_supervisor(tools, redis_url, "cron-lost", log, "a")
    first = a.wait_for_event("started")
    redis_server.pause()
    try:
        a.wait_for_event("lost", timeout=5.0)
        wait_until(lambda: [line.what for line in read_child_log(log)] == ["start", "sigterm"])
    finally:
        redis_server.resume()
    wait_until(
        lambda: starts(log) == ["a", "a"],
        timeout=10.0,
        message=lambda: f"log: {read_child_log(log)}; stderr: {a.stderr}",
    )
    # Leading again: in the same term if the lease outlived the pause (fast failover
    # suspends a leader that cannot prove its presence, and resumes it), or a newer one.
    assert read_child_log(log)[-1].term >= first["term"]


def test_run_once_exits_with_the_command_code(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--once: the command's exit code; a command that does not exist: 127."""
    base = ["run", "--url", redis_url, "--kind", "once", "--lease-ttl", "1"]
    result = cli(capsys, *base, "--once", "--", "sh", "-c", "echo ran; exit 3")
    assert result.code == 3, result.err
    assert "command exited by itself (exit code 3)" in result.err
    result = cli(capsys, *base, "--", "/nonexistent/command")
    assert result.code == 127
    assert "cannot run '/nonexistent/command'" in result.err


# ---------------------------------------------------------- extra and demo


def test_core_package_does_not_import_click_or_rich() -> None:
    """import raftredis stays light; without click the tool says what to install."""
    check = "import sys, raftredis; print(sorted({'click', 'rich'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done
    hide = (
        "import sys, runpy; sys.modules['click'] = None; "
        "runpy.run_module('raftredis', run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", hide, "status"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "raftredis: the command-line tool needs click and rich: pip install 'raftredis[cli]'"
    ]


def test_demo_runs(tmp_path: Path) -> None:
    """`raftredis demo` runs the demo and prints its summary."""
    done = subprocess.run(
        [*TOOL, "demo", "--workers", "2", "--duration", "3", "--fault-interval", "0", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["workers"], summary["ended_by"]) == (2, "duration")
    assert summary["leftover_pids"] == []
    assert summary["elections"] >= 1
