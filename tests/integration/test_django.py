"""The Django app (raftredis.contrib.django) against a real redis-server.

In this process (settings configured once, then the app's runtime configured
for a given command line): which processes start a Candidate by themselves,
every Candidate keyword as a key of ``RAFTREDIS``, unknown keys refused, a
``SECRET`` that signs the traffic, and the system check. In subprocesses of
the example site (examples/django_site): ``migrate``/``shell`` start nothing,
``runserver`` starts exactly one Candidate (in the reloader's child, not in
its parent), ``check`` reports a bad setting or an unknown key, and
``raftredis_status`` prints the leader.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import free_port, get_json, raftredis_threads, wait_until
from support.kinds import members, unique_kind
from support.processes import LoggedProcess
from test_settings import (
    DJANGO_OWN,
    KEYWORDS,
    SECRET,
    assert_reached,
    assert_signs_with,
    sample,
    setting_name,
)

from raftredis import Candidate, Leadership
from raftredis.testing import RedisServer

django = pytest.importorskip("django", reason="django is not installed (pip install -e '.[test]')")

import raftredis.contrib.django as raft  # noqa: E402
from raftredis.contrib.django import checks as raft_checks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "django_site"
LEASE = 0.5


# ------------------------------------------------------------- in this process


@pytest.fixture(scope="module")
def django_settings(redis_server: RedisServer) -> None:
    """Django set up once in this process, with the app installed (AUTOSTART off)."""
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["raftredis.contrib.django"],
            RAFTREDIS={"KIND": "unused", "URL": redis_server.url, "AUTOSTART": False},
            DATABASES={},
            USE_TZ=True,
        )
    django.setup()


@pytest.fixture
def configure(django_settings: None, redis_url: str) -> Iterator[Callable[..., str]]:
    """configure(argv, environ={}, **settings): the app's runtime as ready() would set it up
    in a process started with ``argv``; returns the kind. Stopped after the test."""

    def run(argv: list[str], environ: dict[str, str] | None = None, **values: Any) -> str:
        kind = unique_kind("django")
        raft._configure(
            {"KIND": kind, "URL": redis_url, "LEASE_TTL": LEASE, **values}, argv, environ or {}
        )
        return kind

    yield run
    raft.stop(timeout=5.0)
    raft._configure({"KIND": "unused", "AUTOSTART": False}, ["pytest"], {})


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["manage.py", "migrate"], "migrate"),
        (["/srv/site/manage.py", "--settings=x", "runserver", "0:8000"], "runserver"),
        (["/usr/bin/django-admin", "shell"], "shell"),
        (["/venv/lib/python3.11/site-packages/django/__main__.py", "check"], "check"),
        (["manage.py"], "help"),
        (["/venv/bin/gunicorn", "site.wsgi"], None),
        (["uwsgi"], None),
        ([], None),
    ],
)
def test_command_name(argv: list[str], expected: str | None) -> None:
    assert raft.command_name(argv) == expected


@pytest.mark.parametrize("command", ["migrate", "shell", "test", "makemigrations", "check"])
def test_management_commands_start_nothing_by_themselves(
    configure: Callable[..., str], redis_client: redis.Redis, command: str
) -> None:
    """In a command that does not serve, candidate() is not started, is_leader() is False,
    and a request_started signal starts nothing; start() does, when asked."""
    from django.core.signals import request_started

    kind = configure(["manage.py", command])
    candidate = raft.candidate()
    assert not candidate.is_running
    assert raft.is_leader() is False
    request_started.send(sender=None, environ={})
    assert members(redis_client, kind) == set() and raftredis_threads() == []
    assert raft.start() is candidate and candidate.is_leader
    assert raft.is_leader() is True


def test_web_server_starts_at_first_request(
    configure: Callable[..., str], redis_client: redis.Redis
) -> None:
    """Under a server (gunicorn...), ready() starts nothing: the first request does."""
    from django.core.signals import request_started

    kind = configure(["/venv/bin/gunicorn", "site.wsgi"])
    assert raftredis_threads() == [] and members(redis_client, kind) == set()
    request_started.send(sender=None, environ={})
    candidate = raft.candidate()
    assert candidate.is_running and candidate.is_leader
    assert members(redis_client, kind) == {candidate.id}
    assert raft.is_leader() is True


def test_web_server_first_candidate_call_starts_it(configure: Callable[..., str]) -> None:
    configure(["/venv/bin/gunicorn", "site.wsgi"])
    assert raft.candidate().is_leader


def test_autostart_false(configure: Callable[..., str], redis_client: redis.Redis) -> None:
    from django.core.signals import request_started

    kind = configure(["/venv/bin/gunicorn", "site.wsgi"], AUTOSTART=False)
    request_started.send(sender=None, environ={})
    assert not raft.candidate().is_running and raft.is_leader() is False
    assert members(redis_client, kind) == set()


def test_runserver_starts_in_the_reloader_child_only(
    configure: Callable[..., str], redis_client: redis.Redis
) -> None:
    """runserver: the reloader's parent (no RUN_MAIN) never starts; the child starts at
    ready(); --noreload starts at ready(); a command listed in START_IN_COMMANDS too."""
    kind = configure(["manage.py", "runserver"], {})
    assert members(redis_client, kind) == set() and not raft.candidate().is_running
    raft.stop()
    kind = configure(["manage.py", "runserver"], {"RUN_MAIN": "true"})
    assert members(redis_client, kind) == {raft.candidate().id}
    raft.stop()
    kind = configure(["manage.py", "runserver", "--noreload"], {})
    assert members(redis_client, kind) == {raft.candidate().id}
    raft.stop()
    kind = configure(["manage.py", "run_jobs"], {}, START_IN_COMMANDS=["run_jobs"])
    assert members(redis_client, kind) == {raft.candidate().id}


def test_leader_functions_and_receivers_registered_before_start(
    configure: Callable[..., str],
) -> None:
    """while_leader()/on() at import time are attached when the Candidate is built."""
    ran: list[int] = []
    elected: list[int] = []

    def job(stop: Leadership) -> None:
        ran.append(stop.term)

    def on_elected(sender: Candidate, term: int, **extra: Any) -> None:
        elected.append(term)

    raft.while_leader(job)
    raft.on("elected", on_elected)
    try:
        configure(["/venv/bin/gunicorn", "site.wsgi"])
        candidate = raft.candidate()
        wait_until(lambda: ran and elected, timeout=5.0)
        assert ran == elected == [candidate.current_term]
    finally:  # hooks are module-wide: leave none behind for the other tests
        raft._hooks._leader_functions.remove(job)
        raft._hooks._receivers.remove(("elected", on_elected))


# --------------------------------------------------------------- system check


def check(value: Any) -> list[tuple[str, str]]:
    from django.test import override_settings

    with override_settings(RAFTREDIS=value):
        return [(m.id, m.msg) for m in raft_checks.check_settings()]


def test_check_accepts_good_settings(django_settings: None) -> None:
    good = {"KIND": "site", "URL": "redis://localhost:6379/0", "LEASE_TTL": 1, "META": {"a": 1}}
    assert check(good) == []
    assert check({**good, "META": lambda: {"pid": 1}, "START_IN_COMMANDS": ["runserver"]}) == []


@pytest.mark.parametrize(
    ("value", "check_id", "text"),
    [
        (None, "raftredis.E001", "settings.RAFTREDIS is not set"),
        (["KIND"], "raftredis.E001", "settings.RAFTREDIS must be a dict"),
        ({"URL": "redis://h:1/0"}, "raftredis.E002", "RAFTREDIS['KIND'] is not set"),
        ({"KIND": "a:b"}, "raftredis.E002", "RAFTREDIS['KIND']='a:b' is not allowed"),
        ({"KIND": "k", "URL": 6379}, "raftredis.E003", "RAFTREDIS['URL'] must be a URL string"),
        ({"KIND": "k", "URL": "localhost:6379"}, "raftredis.E003", "must start with redis://"),
        ({"KIND": "k", "LEASE_TTL": -1}, "raftredis.E004", "RAFTREDIS['LEASE_TTL'] must be a"),
        (
            {"KIND": "k", "LEASE_TTL": 1, "MEMBER_EXPIRY": 1},
            "raftredis.E004",
            "RAFTREDIS['MEMBER_EXPIRY'] (1 s) must be longer than RAFTREDIS['LEASE_TTL']",
        ),
        ({"KIND": "k", "PREFIX": "a b"}, "raftredis.E005", "RAFTREDIS['PREFIX']="),
        ({"KIND": "k", "META": {1j}}, "raftredis.E005", "RAFTREDIS['META'] must be JSON"),
        ({"KIND": "k", "AUTOSTART": "no"}, "raftredis.E006", "RAFTREDIS['AUTOSTART'] must be"),
        ({"KIND": "k", "START_IN_COMMANDS": "runserver"}, "raftredis.E006", "list of command"),
        ({"KIND": "k", "ID": "a b"}, "raftredis.E005", "RAFTREDIS['ID']='a b' is not allowed"),
        ({"KIND": "k", "SECRET": "short"}, "raftredis.E005", "RAFTREDIS['SECRET']: a secret"),
        ({"KIND": "k", "SECRET": 42}, "raftredis.E005", "RAFTREDIS['SECRET'] must be a str"),
        ({"KIND": "k", "REPLAY_WINDOW": -5}, "raftredis.E005", "RAFTREDIS['REPLAY_WINDOW'] must"),
        ({"KIND": "k", "MIN_REPLICAS": 1.5}, "raftredis.E005", "RAFTREDIS['MIN_REPLICAS'] must"),
        (
            {"KIND": "k", "SOCKET_TIMEOUT": 5},
            "raftredis.E004",
            "RAFTREDIS['SOCKET_TIMEOUT'] (5 s) must be at most half of RAFTREDIS['RENEW_INTERVAL']",
        ),
        ({"KIND": "k", "VACANCY_JITTER": 0}, "raftredis.E004", "RAFTREDIS['VACANCY_JITTER'] must"),
        ({"KIND": "k", "REELECT_BACKOFF": "1"}, "raftredis.E004", "RAFTREDIS['REELECT_BACKOFF']"),
        ({"KIND": "k", "CLOCK_SYNC_INTERVAL": -1}, "raftredis.E004", "CLOCK_SYNC_INTERVAL'] must"),
        ({"KIND": "k", "LEASE_TT": 1}, "raftredis.E007", "RAFTREDIS['LEASE_TT'] is not a"),
    ],
)
def test_check_flags_bad_settings(
    django_settings: None, value: Any, check_id: str, text: str
) -> None:
    found = check(value)
    assert any(i == check_id and text in m for i, m in found), found


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("lease_ttl", "LEASE_TTL"),
        ("SECRETS", "SECRET"),
        ("MIN_REPLICA", "MIN_REPLICAS"),
        ("REDIS", "URL"),
        ("KEY_PREFIX", "PREFIX"),
        ("AUTO_START", "AUTOSTART"),
        ("SOMETHING_ELSE", None),
    ],
)
def test_unknown_key_is_an_error(django_settings: None, key: str, meant: str | None) -> None:
    """A key that is not a setting is an error (E007) naming the key, the setting meant if it
    looks like a typo, and every valid key; load_settings() lists it as a problem."""
    ((check_id, message),) = check({"KIND": "k", key: "a value of 16+ bytes"})
    assert check_id == "raftredis.E007"
    assert message.startswith(f"RAFTREDIS[{key!r}] is not a raftredis setting")
    if meant is None:
        assert "did you mean" not in message
    else:
        assert f"(did you mean RAFTREDIS[{meant!r}]?)" in message
    listed = set(re.findall(r"'([A-Z_]+)'", message.split("the settings are ")[1]))
    assert listed == {setting_name(k) for k in KEYWORDS} | DJANGO_OWN
    config = raft.load_settings({"KIND": "k", key: 1})
    assert not config.ok and config.unknown_keys == (key,)


def test_unknown_key_keeps_the_candidate_off(configure: Callable[..., str]) -> None:
    """With an unknown key the app starts nothing, and candidate()/start() say why."""
    from django.core.exceptions import ImproperlyConfigured

    configure(["/venv/bin/gunicorn", "site.wsgi"], SECRETS=SECRET)
    with pytest.raises(ImproperlyConfigured, match=r"did you mean RAFTREDIS\['SECRET'\]"):
        raft.candidate()
    with pytest.raises(ImproperlyConfigured, match="SECRETS"):
        raft.start()
    assert raft.is_leader() is False and raftredis_threads() == []


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_every_candidate_keyword_is_a_setting(configure: Callable[..., str], keyword: str) -> None:
    """RAFTREDIS[<KEYWORD>] (URL for redis, PREFIX for key_prefix) passes the system check
    and reaches the Candidate. Nothing connects: in `migrate` it is not started."""
    key = setting_name(keyword)
    assert check({"KIND": "k", key: sample(keyword)}) == []
    configure(["manage.py", "migrate"], **{"LEASE_TTL": None, key: sample(keyword)})
    candidate = raft.candidate()
    assert not candidate.is_running
    assert_reached(candidate, keyword)


def test_secret_signs_the_traffic(configure: Callable[..., str], redis_url: str) -> None:
    """RAFTREDIS["SECRET"]: what the site's Candidate publishes is signed with it; a
    Candidate of the kind with the same secret hears it, one with another secret drops it."""
    configure(["/venv/bin/gunicorn", "site.wsgi"], SECRET=SECRET)
    candidate = raft.candidate()
    assert candidate.is_running and candidate.is_leader
    assert_signs_with(candidate, redis_url, SECRET)


def test_new_settings_reach_the_running_candidate(configure: Callable[..., str]) -> None:
    """MIN_REPLICAS and the timings that used to be dropped are in the started Candidate."""
    configure(
        ["/venv/bin/gunicorn", "site.wsgi"],
        SOCKET_TIMEOUT=0.05,
        VACANCY_JITTER=0.01,
        REELECT_BACKOFF=0.02,
        CLOCK_SYNC_INTERVAL=12.0,
        MIN_REPLICAS=0,
        REPLAY_WINDOW=45.0,
    )
    candidate = raft.candidate()
    assert candidate.is_leader
    t = candidate.timings
    assert (t.lease_ttl, t.socket_timeout, t.vacancy_jitter) == (LEASE, 0.05, 0.01)
    assert (t.reelect_backoff, t.clock_sync_interval) == (0.02, 12.0)
    assert (candidate.config.min_replicas, candidate.config.replay_window) == (0, 45.0)


# ------------------------------------------------------------ the example site

PROBE_APP = """
import os
import sys

from django.apps import AppConfig


class ProbeConfig(AppConfig):
    name = "probe_app"

    def ready(self):
        import raftredis.contrib.django as raft

        candidate = raft.candidate()
        print(
            f"PROBE pid={os.getpid()} running={candidate.is_running} leader={raft.is_leader()}",
            file=sys.stderr,
            flush=True,
        )
"""

TEST_SETTINGS = """
import json
import os

from example_site.settings import *  # noqa: F403

if os.environ.get("PROBE"):
    INSTALLED_APPS = [*INSTALLED_APPS, "probe_app.apps.ProbeConfig"]  # noqa: F405
RAFTREDIS = {**RAFTREDIS, **json.loads(os.environ.get("RAFTREDIS_OVERRIDES", "{}"))}  # noqa: F405
"""


@pytest.fixture(scope="module")
def site_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with test settings (extending the example's) and a probe app."""
    path = tmp_path_factory.mktemp("django_site")
    (path / "probe_app").mkdir()
    (path / "probe_app" / "__init__.py").write_text("")
    (path / "probe_app" / "apps.py").write_text(textwrap.dedent(PROBE_APP))
    (path / "raft_test_settings.py").write_text(textwrap.dedent(TEST_SETTINGS))
    return path


def site_env(site_path: Path, redis_url: str, kind: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(site_path), str(SITE), os.environ.get("PYTHONPATH", "")]
        ),
        "DJANGO_SETTINGS_MODULE": "raft_test_settings",
        "REDIS_URL": redis_url,
        "RAFTREDIS_KIND": kind,
        "RAFTREDIS_LEASE_TTL": str(LEASE),
        **extra,
    }


def manage(
    env: dict[str, str], *args: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SITE / "manage.py"), *args],
        cwd=SITE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_migrate_and_shell_do_not_join(
    site_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    """`manage.py migrate` and `manage.py shell -c ...`: an app's ready() that asks for the
    Candidate gets one that is not running, and nobody joins the kind."""
    kind = unique_kind("migrate")
    env = site_env(site_path, redis_url, kind, PROBE="1")
    done = manage(env, "migrate")
    assert done.returncode == 0, done.stderr
    assert "running=False leader=False" in done.stderr, done.stderr
    done = manage(
        env,
        "shell",
        "-c",
        "import raftredis.contrib.django as r; print('RUNNING', r.candidate().is_running)",
    )
    assert done.returncode == 0, done.stderr
    assert "RUNNING False" in done.stdout, done.stdout
    assert members(redis_client, kind) == set()
    assert redis_client.keys(f"raftredis:{{{kind}}}:*") == []


@pytest.mark.parametrize(
    ("overrides", "check_id", "text"),
    [
        (
            {"LEASE_TTL": 1, "RENEW_DEADLINE": 5},
            "raftredis.E004",
            "RAFTREDIS['RENEW_DEADLINE'] (5 s) must be shorter than",
        ),
        (
            {"SECRTE": "a secret of 16+ bytes"},
            "raftredis.E007",
            "RAFTREDIS['SECRTE'] is not a raftredis setting (did you mean RAFTREDIS['SECRET']?)",
        ),
    ],
)
def test_check_command_reports_a_bad_setting(
    site_path: Path, redis_url: str, overrides: dict[str, Any], check_id: str, text: str
) -> None:
    """`manage.py check` fails with the raftredis check id and the key to fix."""
    env = site_env(site_path, redis_url, "bad-kind", RAFTREDIS_OVERRIDES=json.dumps(overrides))
    done = manage(env, "check")
    assert done.returncode == 1
    assert check_id in done.stderr, done.stderr
    assert text in done.stderr


def test_raftredis_status_prints_the_leader(
    site_path: Path, redis_url: str, redis_client: redis.Redis
) -> None:
    """`manage.py raftredis_status` names the leader of a running kind and lists its
    members, without joining; --json gives the same as JSON."""
    kind = unique_kind("status")
    env = site_env(site_path, redis_url, kind)
    leader = Candidate(redis=redis_url, kind=kind, lease_ttl=LEASE, meta={"n": 1})
    follower = Candidate(redis=redis_url, kind=kind, lease_ttl=LEASE, meta={"n": 2})
    with leader, follower:
        done = manage(env, "raftredis_status")
        assert done.returncode == 0, done.stderr
        assert f"leader: {leader.id} (term {leader.current_term})" in done.stdout
        assert "instances: 2" in done.stdout and follower.id in done.stdout
        done = manage(env, "raftredis_status", "--json")
        report = json.loads(done.stdout)
        assert report["leader"]["id"] == leader.id
        assert [i["meta"] for i in report["members"]] == [{"n": 1}, {"n": 2}]
        assert members(redis_client, kind) == {leader.id, follower.id}
    done = manage(env, "raftredis_status")
    assert "leader: none" in done.stdout and "instances: 0" in done.stdout


def test_raftredis_status_fails_clearly_without_redis(site_path: Path) -> None:
    env = site_env(site_path, f"redis://127.0.0.1:{free_port()}/0", "any-kind")
    done = manage(env, "raftredis_status", "--timeout", "0.5")
    assert done.returncode == 1
    assert "could not read the status from Redis" in done.stderr


def test_runserver_with_autoreloader_joins_once(
    site_path: Path, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """`manage.py runserver` (autoreloader on): the watching parent never joins; the serving
    child joins at ready(), leads, and answers /leader with its own pid."""
    kind = unique_kind("runserver")
    port = free_port()
    env = site_env(site_path, redis_url, kind, PROBE="1", PYTHONUNBUFFERED="1")
    with LoggedProcess(
        [sys.executable, str(SITE / "manage.py"), "runserver", f"127.0.0.1:{port}"],
        tmp_path / "runserver.log",
        cwd=SITE,
        env=env,
    ) as server:

        def answer() -> dict[str, Any] | None:
            assert server.running, server.output()
            try:
                return get_json(port, "/leader")
            except (OSError, http.client.HTTPException):
                return None

        reply = wait_until(answer, timeout=30.0, interval=0.05, message=server.output)
        assert reply["is_leader"] is True and reply["pid"] != server.pid
        assert members(redis_client, kind) == {reply["id"]}
        probes = [line for line in server.output().splitlines() if "PROBE" in line]
        assert f"PROBE pid={server.pid} running=False leader=False" in probes, probes
        assert f"PROBE pid={reply['pid']} running=True leader=True" in probes, probes
        cluster = get_json(port, "/cluster")
        assert cluster["leader"] == reply["id"]
        assert [m["meta"]["pid"] for m in cluster["members"]] == [reply["pid"]]
