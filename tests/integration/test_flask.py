"""The Flask extension (raftredis.contrib.flask) against a real redis-server.

Lazy start (no thread, no connection before the first request), every
Candidate keyword as a setting, configuration errors naming the key, unknown
keys refused, a secret that signs the traffic, is_leader, receivers and
leader functions registered at import time, two apps on one extension,
concurrent first requests, a fork, the `flask raftredis status` command, and a
Redis that cannot be reached.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import free_port, raftredis_threads, wait_until
from support.kinds import members, unique_kind
from support.processes import LoggedProcess
from test_settings import (
    FLASK_OWN,
    KEYWORDS,
    SECRET,
    assert_reached,
    assert_signs_with,
    sample,
    setting_name,
)

from raftredis import BackendError, Candidate, ConfigurationError, Leadership

flask = pytest.importorskip("flask", reason="flask is not installed (pip install -e '.[test]')")

from raftredis.contrib.flask import RaftRedis  # noqa: E402

LEASE = 0.5


@pytest.fixture
def extensions() -> Iterator[list[tuple[RaftRedis, flask.Flask]]]:
    """(extension, app) pairs whose Candidates are stopped after the test."""
    made: list[tuple[RaftRedis, flask.Flask]] = []
    yield made
    for extension, app in made:
        extension.stop(app, timeout=5.0)


def make_app(
    made: list[tuple[RaftRedis, flask.Flask]],
    url: str,
    *,
    extension: RaftRedis | None = None,
    name: str = "example",
    **config: Any,
) -> tuple[RaftRedis, flask.Flask]:
    app = flask.Flask(name)
    app.config.update(RAFTREDIS_URL=url, RAFTREDIS_LEASE_TTL=LEASE)
    app.config.update(config)
    if "RAFTREDIS_KIND" not in config:
        app.config["RAFTREDIS_KIND"] = unique_kind("flask")
    extension = extension or RaftRedis()
    extension.init_app(app)

    @app.get("/")
    def index() -> Any:
        return {"is_leader": extension.is_leader, "pid": os.getpid()}

    made.append((extension, app))
    return extension, app


# ------------------------------------------------------------------ lazy start


def test_nothing_runs_before_the_first_request(
    redis_url: str, redis_client: redis.Redis, extensions: list[Any]
) -> None:
    """init_app starts no thread and joins nothing; the first request starts the Candidate,
    which leads (it is alone), and the request sees is_leader True."""
    extension, app = make_app(extensions, redis_url)
    kind = app.config["RAFTREDIS_KIND"]
    assert raftredis_threads() == []
    assert members(redis_client, kind) == set()
    response = app.test_client().get("/")
    assert response.status_code == 200
    assert response.get_json()["is_leader"] is True
    with app.app_context():
        candidate = extension.candidate
        assert candidate.is_running and candidate.is_leader
        assert extension.is_leader
    assert members(redis_client, kind) == {candidate.id}
    assert raftredis_threads() != []
    # Later requests reuse the same Candidate.
    app.test_client().get("/")
    with app.app_context():
        assert extension.candidate is candidate


def test_candidate_property_starts_it_outside_requests(
    redis_url: str, extensions: list[Any]
) -> None:
    """ext.candidate in an app context (or with RaftRedis(app)) builds and starts it."""
    app = flask.Flask("direct")
    app.config.update(RAFTREDIS_URL=redis_url, RAFTREDIS_KIND=unique_kind(), RAFTREDIS_LEASE_TTL=1)
    extension = RaftRedis(app)
    extensions.append((extension, app))
    candidate = extension.candidate  # no app context: falls back on RaftRedis(app)
    assert candidate.is_running and candidate.is_leader
    assert candidate.timings.lease_ttl == 1.0
    with app.app_context():
        assert extension.candidate is candidate


def test_autostart_false_waits_for_start(
    redis_url: str, redis_client: redis.Redis, extensions: list[Any]
) -> None:
    """With RAFTREDIS_AUTOSTART False, requests and is_leader start nothing: start() does."""
    extension, app = make_app(extensions, redis_url, RAFTREDIS_AUTOSTART=False)
    kind = app.config["RAFTREDIS_KIND"]
    assert app.test_client().get("/").get_json()["is_leader"] is False
    assert members(redis_client, kind) == set()
    with app.app_context():
        assert not extension.candidate.is_running
    assert raftredis_threads() == []
    candidate = extension.start(app)
    assert candidate.is_leader
    assert app.test_client().get("/").get_json()["is_leader"] is True


def test_stop_then_use_again_starts_a_new_candidate(redis_url: str, extensions: list[Any]) -> None:
    """stop() resigns and leaves; the next request builds and starts a fresh Candidate."""
    extension, app = make_app(extensions, redis_url)
    app.test_client().get("/")
    first = extension.get_candidate(app)
    extension.stop(app)
    assert not first.is_running
    assert app.test_client().get("/").get_json()["is_leader"] is True
    second = extension.get_candidate(app)
    assert second is not first and second.id != first.id and second.is_running


def test_concurrent_first_requests_start_one_candidate(
    redis_url: str, redis_client: redis.Redis, extensions: list[Any]
) -> None:
    """Eight threads hitting ext.candidate at once get one and the same Candidate."""
    extension, app = make_app(extensions, redis_url)
    barrier = threading.Barrier(8)
    got: list[Candidate] = []

    def hit() -> None:
        barrier.wait()
        with app.app_context():
            got.append(extension.candidate)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8 and len({id(c) for c in got}) == 1
    assert members(redis_client, app.config["RAFTREDIS_KIND"]) == {got[0].id}


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"RAFTREDIS_KIND": None}, "RAFTREDIS_KIND is not set"),
        ({"RAFTREDIS_KIND": "has space"}, "RAFTREDIS_KIND='has space' is not allowed"),
        ({"RAFTREDIS_URL": 6379}, "RAFTREDIS_URL must be a URL string"),
        ({"RAFTREDIS_URL": "http://localhost"}, "RAFTREDIS_URL: redis URL must start with"),
        ({"RAFTREDIS_LEASE_TTL": 0.01}, "RAFTREDIS_LEASE_TTL=0.01 s is too short"),
        ({"RAFTREDIS_LEASE_TTL": "3"}, "RAFTREDIS_LEASE_TTL must be a number of seconds"),
        (
            {"RAFTREDIS_LEASE_TTL": 1, "RAFTREDIS_RENEW_DEADLINE": 2},
            "RAFTREDIS_RENEW_DEADLINE (2 s) must be shorter than RAFTREDIS_LEASE_TTL",
        ),
        ({"RAFTREDIS_META": {"x": object()}}, "RAFTREDIS_META must be JSON-serialisable"),
        ({"RAFTREDIS_AUTOSTART": "yes"}, "RAFTREDIS_AUTOSTART must be True or False"),
        ({"RAFTREDIS_ID": "a b"}, "RAFTREDIS_ID='a b' is not allowed"),
        ({"RAFTREDIS_MAX_MESSAGE_BYTES": 10}, "RAFTREDIS_MAX_MESSAGE_BYTES=10 is too small"),
        ({"RAFTREDIS_SECRET": "too-short"}, "RAFTREDIS_SECRET: a secret must be at least 16"),
        ({"RAFTREDIS_SECRET": 42}, "RAFTREDIS_SECRET must be a str or bytes"),
        ({"RAFTREDIS_SECRET": []}, "RAFTREDIS_SECRET must not be an empty list"),
        ({"RAFTREDIS_REPLAY_WINDOW": 0}, "RAFTREDIS_REPLAY_WINDOW must be a positive number"),
        ({"RAFTREDIS_MIN_REPLICAS": -1}, "RAFTREDIS_MIN_REPLICAS must be an int >= 0"),
        ({"RAFTREDIS_MIN_REPLICAS": "1"}, "RAFTREDIS_MIN_REPLICAS must be an int >= 0"),
        (
            {"RAFTREDIS_SOCKET_TIMEOUT": 1},
            "RAFTREDIS_SOCKET_TIMEOUT (1 s) must be at most half of RAFTREDIS_RENEW_INTERVAL",
        ),
        ({"RAFTREDIS_VACANCY_JITTER": "x"}, "RAFTREDIS_VACANCY_JITTER must be a number of"),
        ({"RAFTREDIS_REELECT_BACKOFF": 0}, "RAFTREDIS_REELECT_BACKOFF must be a positive"),
        ({"RAFTREDIS_CLOCK_SYNC_INTERVAL": -1}, "RAFTREDIS_CLOCK_SYNC_INTERVAL must be a"),
    ],
)
def test_bad_configuration_names_the_key(config: dict[str, Any], expected: str) -> None:
    """init_app raises ConfigurationError naming the setting to fix (no Redis needed)."""
    app = flask.Flask("bad")
    app.config.update(RAFTREDIS_KIND="good-kind", RAFTREDIS_URL="redis://localhost:1/0")
    app.config.update(config)
    with pytest.raises(ConfigurationError) as caught:
        RaftRedis(app)
    assert expected in str(caught.value)
    assert "raftredis" not in app.extensions


def test_url_defaults_to_redis_url_env(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, extensions: list[Any]
) -> None:
    """Without RAFTREDIS_URL, $REDIS_URL is used; constructor overrides beat app.config."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    app = flask.Flask("env")
    app.config["RAFTREDIS_KIND"] = "ignored-kind"
    kind = unique_kind("override")
    extension = RaftRedis(app, kind=kind, lease_ttl=LEASE)
    extensions.append((extension, app))
    candidate = extension.candidate
    assert candidate.kind == kind and candidate.is_leader


def test_bad_secret_is_not_shown() -> None:
    """A secret that is refused does not appear in the error."""
    app = flask.Flask("bad-secret")
    app.config.update(RAFTREDIS_KIND="good-kind", RAFTREDIS_SECRET=["x" * 20, "hunter2"])
    with pytest.raises(ConfigurationError, match="RAFTREDIS_SECRET") as caught:
        RaftRedis(app)
    assert "hunter2" not in str(caught.value) and "x" * 20 not in str(caught.value)


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_every_candidate_keyword_is_a_setting(keyword: str) -> None:
    """RAFTREDIS_<KEYWORD> (RAFTREDIS_URL for redis, RAFTREDIS_PREFIX for key_prefix) and
    RaftRedis(<keyword>=...) both reach the Candidate. Nothing connects: it is not started."""
    by_config = flask.Flask("by-config")
    by_config.config.update(RAFTREDIS_KIND=unique_kind(), RAFTREDIS_AUTOSTART=False)
    by_config.config[f"RAFTREDIS_{setting_name(keyword)}"] = sample(keyword)
    extension = RaftRedis(by_config)
    assert_reached(extension.get_candidate(by_config, start=False), keyword)
    by_keyword = flask.Flask("by-keyword")
    by_keyword.config.update(RAFTREDIS_KIND=unique_kind(), RAFTREDIS_AUTOSTART=False)
    extension = RaftRedis(by_keyword, **{keyword: sample(keyword)})
    assert_reached(extension.get_candidate(by_keyword, start=False), keyword)
    assert raftredis_threads() == []


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("RAFTREDIS_SECRETS", "RAFTREDIS_SECRET"),
        ("RAFTREDIS_LEASE_TT", "RAFTREDIS_LEASE_TTL"),
        ("RAFTREDIS_min_replicas", "RAFTREDIS_MIN_REPLICAS"),
        ("RAFTREDIS_REDIS", "RAFTREDIS_URL"),
        ("RAFTREDIS_KEY_PREFIX", "RAFTREDIS_PREFIX"),
        ("RAFTREDIS_SOMETHING_ELSE", None),
    ],
)
def test_unknown_key_is_refused(key: str, meant: str | None) -> None:
    """A RAFTREDIS_* key that is not a setting fails init_app; the message names the key,
    the setting meant (if it looks like a typo) and every valid setting."""
    app = flask.Flask("typo")
    app.config.update({"RAFTREDIS_KIND": "good-kind", key: "a value of 16+ bytes"})
    with pytest.raises(ConfigurationError) as caught:
        RaftRedis(app)
    message = str(caught.value)
    assert message.startswith(f"{key} is not a raftredis setting")
    if meant is None:
        assert "did you mean" not in message
    else:
        assert f"(did you mean {meant}?)" in message
    listed = set(re.findall(r"RAFTREDIS_([A-Z_]+)", message.split("the settings are ")[1]))
    assert listed == {setting_name(k) for k in KEYWORDS} | FLASK_OWN
    assert "raftredis" not in app.extensions


def test_unknown_constructor_keyword() -> None:
    with pytest.raises(TypeError, match=r"lease_tll \(did you mean lease_ttl\?\)"):
        RaftRedis(lease_tll=1)
    with pytest.raises(TypeError, match=r"autostart; accepted: .*min_replicas.*secret"):
        RaftRedis(autostart=False)


@pytest.mark.parametrize("how", ["config", "keyword"])
def test_secret_signs_the_traffic(redis_url: str, extensions: list[Any], how: str) -> None:
    """RAFTREDIS_SECRET (or RaftRedis(secret=...)): what the app's Candidate publishes is
    signed with it; a Candidate of the kind with the same secret hears it, one with
    another secret drops it (ProtocolError)."""
    app = flask.Flask("signed")
    app.config.update(RAFTREDIS_URL=redis_url, RAFTREDIS_KIND=unique_kind("signed"))
    app.config["RAFTREDIS_LEASE_TTL"] = LEASE
    if how == "config":
        app.config["RAFTREDIS_SECRET"] = SECRET
        extension = RaftRedis(app)
    else:
        extension = RaftRedis(app, secret=SECRET)
    extensions.append((extension, app))
    candidate = extension.start(app)
    assert candidate.is_leader
    assert_signs_with(candidate, redis_url, SECRET)


def test_new_timings_reach_the_running_candidate(redis_url: str, extensions: list[Any]) -> None:
    """The timings that init_app used to drop are in the started Candidate's timings."""
    extension, app = make_app(
        extensions,
        redis_url,
        RAFTREDIS_SOCKET_TIMEOUT=0.05,
        RAFTREDIS_VACANCY_JITTER=0.01,
        RAFTREDIS_REELECT_BACKOFF=0.02,
        RAFTREDIS_CLOCK_SYNC_INTERVAL=12.0,
        RAFTREDIS_REPLAY_WINDOW=45.0,
    )
    assert app.test_client().get("/").get_json()["is_leader"] is True
    candidate = extension.get_candidate(app)
    t = candidate.timings
    assert (t.lease_ttl, t.socket_timeout, t.vacancy_jitter) == (LEASE, 0.05, 0.01)
    assert (t.reelect_backoff, t.clock_sync_interval) == (0.02, 12.0)
    assert candidate.config.replay_window == 45.0


def test_no_app_and_no_context_is_a_clear_error(redis_url: str) -> None:
    extension = RaftRedis()
    with pytest.raises(RuntimeError, match="application context"):
        _ = extension.candidate
    other = flask.Flask("other")
    with other.app_context(), pytest.raises(RuntimeError, match="init_app"):
        _ = extension.candidate


# ------------------------------------------------------------ receivers, work


def test_receivers_and_leader_functions_registered_at_import(
    redis_url: str, extensions: list[Any]
) -> None:
    """on() and while_leader() before any Candidate exists are attached when it is built;
    the leader function runs in the app's context and is stopped by ext.stop()."""
    extension = RaftRedis()
    elected: list[int] = []
    ran: list[tuple[str, int]] = []
    stopped = threading.Event()

    @extension.on("elected")
    def on_elected(sender: Candidate, term: int, **extra: Any) -> None:
        elected.append(term)

    @extension.while_leader
    def job(stop: Leadership) -> None:
        ran.append((flask.current_app.name, stop.term))
        stop.wait()
        stopped.set()

    _, app = make_app(extensions, redis_url, extension=extension, name="withjobs")
    app.test_client().get("/")
    candidate = extension.get_candidate(app)
    wait_until(lambda: elected and ran, timeout=5.0)
    assert ran == [("withjobs", candidate.current_term)]
    assert elected == [candidate.current_term]
    # Registered after the Candidate exists: attached at once (and started, as it leads).
    late: list[int] = []
    extension.while_leader(lambda stop: late.append(stop.term))
    wait_until(lambda: late, timeout=5.0)
    extension.stop(app)
    assert stopped.wait(5.0)


def test_unknown_signal_name_is_refused_at_registration() -> None:
    extension = RaftRedis()
    with pytest.raises(ValueError, match="no signal named"):
        extension.on("elect", lambda sender, **extra: None)
    with pytest.raises(TypeError):
        extension.while_leader("not callable")  # type: ignore[arg-type]


def test_two_apps_share_one_extension(
    redis_url: str, redis_client: redis.Redis, extensions: list[Any]
) -> None:
    """One extension object, two apps: a Candidate each, with each app's own config."""
    extension = RaftRedis()
    _, one = make_app(extensions, redis_url, extension=extension, name="one")
    _, two = make_app(extensions, redis_url, extension=extension, name="two")
    assert one.test_client().get("/").get_json()["is_leader"] is True
    assert two.test_client().get("/").get_json()["is_leader"] is True
    a, b = extension.get_candidate(one), extension.get_candidate(two)
    assert a is not b and a.id != b.id
    assert (a.kind, b.kind) == (one.config["RAFTREDIS_KIND"], two.config["RAFTREDIS_KIND"])
    assert members(redis_client, a.kind) == {a.id}
    assert members(redis_client, b.kind) == {b.id}
    with two.app_context():
        assert extension.candidate is b


def test_two_apps_of_one_kind_elect_one_leader(redis_url: str, extensions: list[Any]) -> None:
    """Two apps configured with the same kind behave as two instances: one leads."""
    kind = unique_kind("shared")
    _, one = make_app(extensions, redis_url, name="one", RAFTREDIS_KIND=kind)
    extension_two, two = make_app(extensions, redis_url, name="two", RAFTREDIS_KIND=kind)
    leaders = [app.test_client().get("/").get_json()["is_leader"] for app in (one, two)]
    assert leaders == [True, False]
    with two.app_context():
        follower = extension_two.candidate
        assert follower.wait_for_leader(5.0) != follower.id


# ------------------------------------------------------------------ failures


def test_unreachable_redis_does_not_fail_requests(extensions: list[Any]) -> None:
    """Redis down: requests are served (is_leader False), and not every request waits for
    a connection (retry after a pause); ext.candidate raises BackendError."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    extension, app = make_app(extensions, url)
    client = app.test_client()
    assert client.get("/").get_json()["is_leader"] is False
    lazy = app.extensions["raftredis"].lazy
    first_error = lazy.last_error
    assert isinstance(first_error, BackendError)
    for _ in range(20):
        assert client.get("/").status_code == 200
    assert lazy.last_error is first_error  # no new attempt within the retry pause
    with app.app_context(), pytest.raises(BackendError):
        _ = extension.candidate
    assert raftredis_threads() == []


# ---------------------------------------------------------------------- CLI


def test_status_command_prints_members_and_leader(redis_url: str, extensions: list[Any]) -> None:
    """`flask raftredis status` lists the kind's members and names the leader, read-only."""
    extension, app = make_app(extensions, redis_url, RAFTREDIS_META={"role": "web"})
    kind = app.config["RAFTREDIS_KIND"]
    app.test_client().get("/")
    leader = extension.get_candidate(app)
    with Candidate(redis=redis_url, kind=kind, lease_ttl=LEASE, meta="other") as follower:
        runner = app.test_cli_runner()
        result = runner.invoke(args=["raftredis", "status"])
        assert result.exit_code == 0, result.output
        assert f"leader: {leader.id} (term {leader.current_term})" in result.output
        assert "instances: 2" in result.output
        assert follower.id in result.output and '{"role": "web"}' in result.output
        result = runner.invoke(args=["raftredis", "status", "--json"])
        report = json.loads(result.output)
        assert report["leader"]["id"] == leader.id and report["kind"] == kind
        assert [i["id"] for i in report["members"]] == [leader.id, follower.id]
        assert [i["state"] for i in report["members"]] == ["leader", "follower"]
    # The status command did not join the kind.
    assert {i.id for i in leader.get_instances()} == {leader.id}


def test_status_command_reports_unreachable_redis(extensions: list[Any]) -> None:
    _, app = make_app(extensions, f"redis://127.0.0.1:{free_port()}/0")
    result = app.test_cli_runner().invoke(args=["raftredis", "status", "--timeout", "0.5"])
    assert result.exit_code != 0
    assert "could not read the status from Redis" in result.output


# ---------------------------------------------------------------------- fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_builds_its_own_candidate(redis_url: str, extensions: list[Any]) -> None:
    """After os.fork(), the child's ext.candidate is a new Candidate (new id) that joins
    and follows the parent's; the parent's stays leader."""
    extension, app = make_app(extensions, redis_url)
    app.test_client().get("/")
    parent = extension.get_candidate(app)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 0
        try:
            with app.app_context():
                child = extension.candidate
                report = {
                    "id": child.id,
                    "running": child.is_running,
                    "leader_id": child.wait_for_leader(5.0),
                    "is_leader": extension.is_leader,
                }
                extension.stop()
            os.write(write_end, json.dumps(report).encode())
        except BaseException as exc:
            os.write(write_end, json.dumps({"error": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        chunks = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_end, 65536) if ready else b""
            if not chunk:
                break
            chunks.append(chunk)
        report = json.loads(b"".join(chunks) or b"{}")
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report == {
        "id": report["id"],
        "running": True,
        "leader_id": parent.id,
        "is_leader": False,
    }
    assert report["id"] != parent.id
    assert parent.is_leader and extension.get_candidate(app) is parent


# ------------------------------------------------------- real processes

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app"

EXIT_SCRIPT = """
import sys
from flask import Flask
from raftredis.contrib.flask import RaftRedis

raft = RaftRedis()

@raft.while_leader
def job(stop):
    while not stop.wait(0.05):
        pass

app = Flask("exiting")
app.config.update(RAFTREDIS_URL=sys.argv[1], RAFTREDIS_KIND=sys.argv[2], RAFTREDIS_LEASE_TTL=5)
raft.init_app(app)
app.get("/")(lambda: {"is_leader": raft.is_leader})
print(app.test_client().get("/").get_json()["is_leader"], flush=True)
"""


def test_interpreter_exit_leaves_the_kind(redis_url: str, redis_client: redis.Redis) -> None:
    """A process that leads and simply ends (no stop() call) exits promptly, resigning and
    leaving the kind on its way out: nobody waits for its 5 s lease."""
    kind = unique_kind("exit")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, redis_url, kind],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert time.monotonic() - started < 5.0
    assert members(redis_client, kind) == set()
    assert redis_client.get(f"raftredis:{{{kind}}}:leader") is None


def test_flask_run_with_reloader_joins_once(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """`flask run --debug` (the example app): the reloader's parent loads the app but never
    joins; the serving child joins at its first request and leads."""
    kind = unique_kind("reloader")
    port = free_port()
    env = {
        **os.environ,
        "FLASK_RAFTREDIS_URL": redis_url,
        "FLASK_RAFTREDIS_KIND": kind,
        "FLASK_RAFTREDIS_LEASE_TTL": "1",
        "PYTHONUNBUFFERED": "1",
    }
    with LoggedProcess(
        [sys.executable, "-m", "flask", "--app", "app", "run", "--debug", "--port", str(port)],
        tmp_path / "flask.log",
        cwd=EXAMPLE,
        env=env,
    ) as server:

        def answer() -> dict[str, Any] | None:
            # Unlike get_json(): any reply but a 200 means "not serving yet".
            assert server.running, server.output()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
            try:
                conn.request("GET", "/leader")
                response = conn.getresponse()
                return dict(json.loads(response.read())) if response.status == 200 else None
            except (OSError, http.client.HTTPException):
                return None
            finally:
                conn.close()

        reply = wait_until(answer, timeout=30.0, interval=0.05, message=server.output)
        assert reply["is_leader"] is True and reply["pid"] != server.pid
        assert members(redis_client, kind) == {reply["id"]}
