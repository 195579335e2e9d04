"""Scenario 9 of "Prove it under faults": a Candidate and os.fork().

Threads do not survive fork(): a Candidate running in the parent is, in the child,
a copy with no threads, the same id, and (maybe) the parent's lease. It must not
believe it leads, must say how to do it right, and its stop() must leave the
parent's membership and lease alone. A Candidate created but not started before
the fork (gunicorn --preload) is started in each child under an id of its own.

Children report to the parent through pipes (JSON lines) and end with os._exit;
every wait has a deadline, and a child that hangs is killed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from inproc import LEASE_TTL, Candidates, Recorder, wait_until
from support.kinds import members, unique_kind
from support.processes import LoggedProcess

from raftredis import Candidate, ConfigurationError, NotRunningError
from raftredis.testing import RedisServer

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    pytest.mark.usefixtures("no_leaked_threads"),
]

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------ child plumbing


class Child:
    """A forked child running ``body(send, receive)``; JSON lines both ways over pipes."""

    def __init__(self, body: Callable[[Callable[[Any], None], Callable[[], str]], None]) -> None:
        up_r, up_w = os.pipe()
        down_r, down_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 0
            try:
                os.close(up_r)
                os.close(down_w)
                up = os.fdopen(up_w, "w", buffering=1)
                down = os.fdopen(down_r, "r")

                def send(obj: Any) -> None:
                    up.write(json.dumps(obj) + "\n")
                    up.flush()

                def receive() -> str:
                    return down.readline().strip()

                try:
                    body(send, receive)
                except BaseException as exc:
                    send({"crashed": f"{type(exc).__name__}: {exc}"})
                    code = 3
            except BaseException:
                code = 4
            finally:
                os._exit(code)
        os.close(up_w)
        os.close(down_r)
        self.pid = pid
        self._up = os.fdopen(up_r, "r")
        self._down = os.fdopen(down_w, "w", buffering=1)
        self._buffer = ""
        self.status: int | None = None

    def read(self, timeout: float = 10.0) -> Any:
        """The next JSON line from the child (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while "\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._up], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"child {self.pid} said nothing within {timeout} s")
            chunk = os.read(self._up.fileno(), 65536).decode()
            if not chunk:
                raise AssertionError(f"child {self.pid} closed its pipe: {self.wait()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split("\n", 1)
        reply = json.loads(line)
        assert not (isinstance(reply, dict) and "crashed" in reply), reply
        return reply

    def say(self, command: str) -> None:
        self._down.write(command + "\n")
        self._down.flush()

    def wait(self, timeout: float = 15.0) -> int:
        """The child's exit code; it is killed if it does not exit within ``timeout``."""
        if self.status is not None:
            return self.status
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            time.sleep(0.01)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.status = -9
        raise AssertionError(f"child {self.pid} did not exit within {timeout} s: killed")

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(AssertionError):  # killed: nothing more to do
                self.wait(timeout=5.0)
        self._up.close()
        self._down.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        child.close()


def lease_holder(admin: redis.Redis, kind: str) -> str | None:
    value = admin.get(f"raftredis:{{{kind}}}:leader")
    return None if value is None else value.split(b" ")[1].decode()


# --------------------------------------------------------------------- tests


def test_running_candidate_in_a_forked_child(
    group: Candidates, admin: redis.Redis, children: list[Child]
) -> None:
    """In the child: the copy of the parent's leader is not leader (is_leader False,
    leader_term None, state follower), every call raises NotRunningError saying to create
    the Candidate after the fork (post_fork / lazy-apps), and its stop() does nothing in
    Redis. A new Candidate in the child joins, follows the parent and messages it. The
    parent stays leader and member throughout."""
    parent = group.start()
    follower = group.start()
    recorder = Recorder().connect(parent, "message", "instance_joined", "instance_left")
    assert parent.is_leader
    term = parent.current_term

    def child(send: Callable[[Any], None], receive: Callable[[], str]) -> None:
        report: dict[str, Any] = {
            "is_leader": parent.is_leader,
            "leader_term": parent.leader_term,
            "state": parent.state.value,
            "is_running": parent.is_running,
            "leader_id": parent.leader_id,
            "id": parent.id,
        }
        calls: dict[str, Callable[[], Any]] = {
            "message_all": lambda: parent.message_all("from the child"),
            "message_to": lambda: parent.message_to(follower.id, "from the child"),
            "message_leader": lambda: parent.message_leader("from the child"),
            "get_instances": parent.get_instances,
            "get_leader": parent.get_leader,
            "set_meta": lambda: parent.set_meta({"child": True}),
            "reelect": parent.reelect,
            "wait_for_leader": lambda: parent.wait_for_leader(0.1),
            "start": parent.start,
        }
        raised: dict[str, str] = {}
        for name, call in calls.items():
            try:
                call()
                raised[name] = "no exception"
            except NotRunningError as exc:
                raised[name] = f"NotRunningError: {exc}"
            except Exception as exc:
                raised[name] = f"{type(exc).__name__}: {exc}"
        report["raised"] = raised
        parent.stop()  # must do nothing in Redis
        report["after_stop"] = [parent.is_running, parent.is_leader]
        send(report)
        receive()  # the parent checked Redis after the stop()
        fresh = Candidate(redis=group.url, kind=group.kind, lease_ttl=LEASE_TTL)
        fresh.start()
        send(
            {
                "fresh_id": fresh.id,
                "fresh_leader_id": fresh.leader_id,
                "fresh_is_leader": fresh.is_leader,
                "to_parent": fresh.message_to(parent.id, "hello from the child"),
                "to_leader": fresh.message_leader("hello leader"),
            }
        )
        receive()
        fresh.stop()
        send({"stopped": True})

    kid = Child(child)
    children.append(kid)
    report = kid.read()
    assert report["is_leader"] is False
    assert report["leader_term"] is None
    assert report["state"] == "follower"
    assert report["is_running"] is False
    assert report["id"] == parent.id
    for name, text in report["raised"].items():
        assert text.startswith("NotRunningError"), (name, text)
        assert "fork" in text and "post_fork" in text and "lazy-apps" in text, (name, text)
    assert report["after_stop"] == [False, False]
    # The child's stop() left the parent's lease and membership alone.
    assert lease_holder(admin, group.kind) == parent.id
    assert members(admin, group.kind) == {parent.id, follower.id}
    assert parent.is_leader
    kid.say("go on")
    hello = kid.read()
    assert hello["fresh_id"] not in (parent.id, follower.id)
    assert hello["fresh_leader_id"] == parent.id and hello["fresh_is_leader"] is False
    assert hello["to_parent"] == 1 and hello["to_leader"] == 1
    got = recorder.wait_for("message", count=2)
    payloads = [e.kwargs["message"].payload for e in recorder.of("message")]
    assert payloads == ["hello from the child", "hello leader"], got
    assert all(e.kwargs["message"].sender_id == hello["fresh_id"] for e in recorder.of("message"))
    recorder.wait_for("instance_joined", lambda e: e.kwargs["instance"].id == hello["fresh_id"])
    kid.say("stop")
    assert kid.read() == {"stopped": True}
    assert kid.wait() == 0
    recorder.wait_for("instance_left", lambda e: e.kwargs["instance_id"] == hello["fresh_id"])
    # The parent still leads, in the same term, renewing past a whole lease.
    until = time.monotonic() + 1.2 * LEASE_TTL
    while time.monotonic() < until:
        assert parent.is_leader and parent.current_term == term
        time.sleep(0.01)
    assert {i.id for i in follower.get_instances()} == {parent.id, follower.id}
    assert follower.leader_id == parent.id


def _start_in_child(
    candidate: Candidate,
) -> Callable[[Callable[[Any], None], Callable[[], str]], None]:
    """Child body: start the inherited, never-started Candidate; report; obey commands."""

    def body(send: Callable[[Any], None], receive: Callable[[], str]) -> None:
        try:
            candidate.start()
        except ConfigurationError as exc:
            send({"started": False, "error": str(exc), "id": candidate.id})
            return
        send({"started": True, "id": candidate.id})
        while True:
            command = receive()
            if command == "report":
                send(
                    {
                        "id": candidate.id,
                        "is_leader": candidate.is_leader,
                        "leader_id": candidate.leader_id,
                    }
                )
            else:
                candidate.stop()
                send({"stopped": True})
                return

    return body


def test_preloaded_candidate_started_in_three_children(
    group: Candidates, admin: redis.Redis, children: list[Child]
) -> None:
    """gunicorn --preload: a Candidate built (not started) in the parent, started in each of
    three children: three distinct ids (none the parent's), exactly one leader that all
    three name; all leave cleanly."""
    shared = group.new()
    parent_id = shared.id
    for _ in range(3):
        children.append(Child(_start_in_child(shared)))
    started = [kid.read() for kid in children]
    assert all(s["started"] for s in started), started
    ids = [s["id"] for s in started]
    assert len(set(ids)) == 3 and parent_id not in ids, (parent_id, ids)
    wait_until(lambda: members(admin, group.kind) == set(ids), timeout=3.0)

    def reports() -> list[dict[str, Any]]:
        for kid in children:
            kid.say("report")
        return [kid.read() for kid in children]

    # All three name one leader (the last to start may still be reading the lease).
    states = wait_until(
        lambda: (lambda r: r if len({x["leader_id"] for x in r}) == 1 else None)(reports()),
        timeout=3.0,
    )
    leaders = [s["id"] for s in states if s["is_leader"]]
    assert len(leaders) == 1, states
    assert states[0]["leader_id"] == leaders[0]
    assert lease_holder(admin, group.kind) == leaders[0]
    for kid in children:
        kid.say("stop")
    assert [kid.read() for kid in children] == [{"stopped": True}] * 3
    assert [kid.wait() for kid in children] == [0, 0, 0]
    assert members(admin, group.kind) == set()
    assert lease_holder(admin, group.kind) is None
    assert shared.id == parent_id and not shared.is_running


def test_preloaded_candidate_with_an_explicit_id_starts_in_one_child_only(
    group: Candidates, admin: redis.Redis, children: list[Child]
) -> None:
    """The same with id= given: one child starts it, the others' start() raises
    ConfigurationError saying the id is taken, and leaves the winner's membership alone."""
    shared = group.new(id="fixed-id")
    for _ in range(3):
        children.append(Child(_start_in_child(shared)))
    outcomes = [kid.read() for kid in children]
    winners = [k for k, o in enumerate(outcomes) if o["started"]]
    assert len(winners) == 1, outcomes
    for k, outcome in enumerate(outcomes):
        assert outcome["id"] == "fixed-id"
        if k not in winners:
            assert "already uses id" in outcome["error"] and "fixed-id" in outcome["error"]
            assert children[k].wait() == 0
    winner = children[winners[0]]
    winner.say("report")
    state = winner.read()
    assert state == {"id": "fixed-id", "is_leader": True, "leader_id": "fixed-id"}
    assert members(admin, group.kind) == {"fixed-id"}
    assert lease_holder(admin, group.kind) == "fixed-id"
    winner.say("stop")
    assert winner.read() == {"stopped": True}
    assert winner.wait() == 0
    assert members(admin, group.kind) == set()


# ------------------------------------------------------------------ gunicorn


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5.0)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5.0)
        sock.connect(self._path)
        self.sock = sock


def _get(path: str) -> dict[str, Any]:
    conn = _UnixHTTPConnection(path)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        assert response.status == 200
        return dict(json.loads(response.read()))
    finally:
        conn.close()


GUNICORN_CONF = """
bind = "unix:{sock}"
workers = 3
preload_app = True
graceful_timeout = 5
loglevel = "warning"


def post_fork(server, worker):
    import wsgi_app  # already imported by the master (--preload): the same Candidate
    wsgi_app.post_fork(server, worker)


def worker_exit(server, worker):
    import wsgi_app
    wsgi_app.worker_exit(server, worker)
"""


def test_gunicorn_preload_three_workers(
    own_redis: RedisServer, admin: redis.Redis, tmp_path: Path
) -> None:
    """gunicorn --preload -w 3 with the app's Candidate created at import and started in
    post_fork: the three workers answer with three ids, exactly one of them leader, all
    naming it; after SIGTERM every worker has left the kind."""
    pytest.importorskip(
        "gunicorn", reason="gunicorn is not installed (pip install -e '.[test]' brings it)"
    )
    kind = unique_kind("gunicorn")
    sock = str(tmp_path / "g.sock")
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text(GUNICORN_CONF.format(sock=sock))
    env = {
        **os.environ,
        "RAFTREDIS_TEST_URL": own_redis.url,
        "RAFTREDIS_TEST_KIND": kind,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    server = LoggedProcess(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "-w",
            "3",
            "-c",
            str(conf),
            "--pythonpath",
            str(HERE),
            "wsgi_app:app",
        ],
        tmp_path / "gunicorn.log",
        env=env,
    )

    def output() -> str:
        return server.output(last=3000)

    try:
        seen: dict[int, dict[str, Any]] = {}

        def all_three() -> bool:
            assert server.running, f"gunicorn exited: {output()}"
            try:
                reply = _get(sock)
            except (OSError, http.client.HTTPException):
                return False  # not listening yet
            seen[reply["pid"]] = reply
            return len(seen) == 3

        wait_until(
            all_three, timeout=30.0, interval=0.02, message=lambda: f"seen {seen}; log: {output()}"
        )
        replies = list(seen.values())
        ids = {r["id"] for r in replies}
        assert len(ids) == 3, replies
        leaders = [r["id"] for r in replies if r["leader"]]
        assert len(leaders) == 1, replies
        assert {r["leader_id"] for r in replies} == {leaders[0]}, replies
        assert members(admin, kind) == ids
        assert lease_holder(admin, kind) == leaders[0]
    finally:
        returncode = server.stop(group=False, timeout=20)  # the master stops its workers
    assert returncode == 0, output()
    wait_until(
        lambda: members(admin, kind) == set(),
        timeout=5.0,
        message=lambda: f"still members: {members(admin, kind)}",
    )
    assert lease_holder(admin, kind) is None
