"""One source of truth for the settings of the Flask and Django integrations.

Every keyword of ``Candidate.__init__`` is a setting (``SETTING_KEYS`` is read
from the signature), under the name that ``docs/flask.md`` and
``docs/django.md`` list, and those pages list no other. A new Candidate
keyword therefore fails here until it has a sample value below and a row in
both pages.

The helpers at the bottom are shared with test_flask.py and test_django.py:
``SAMPLES`` and :func:`assert_reached` (a setting reached the Candidate), and
:func:`assert_signs_with` (an integration's Candidate signs its traffic, seen
on the wire).
"""

from __future__ import annotations

import inspect
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import Recorder, wait_until

from raftredis import Candidate, ProtocolError
from raftredis.connection import describe
from raftredis.contrib import SETTING_KEYS, TIMING_KEYS, parse_settings
from raftredis.signing import Keyring, secrets_from
from raftredis.timing import Timings
from raftredis.wire import WireError

DOCS = Path(__file__).resolve().parents[2] / "docs"

#: Every keyword of Candidate(), from its signature (``self`` left out), in its order.
KEYWORDS = list(inspect.signature(Candidate.__init__).parameters)[1:]
#: The settings not named after their keyword in upper case (the names of 0.1).
RENAMED = {"redis": "URL", "key_prefix": "PREFIX"}
#: The integrations' own settings, which are not Candidate keywords.
FLASK_OWN = {"AUTOSTART"}
DJANGO_OWN = {"AUTOSTART", "START_IN_COMMANDS"}

SECRET = "the integration test secret, 16+ bytes"
OTHER_SECRET = "a different secret, also 16+ bytes"

#: A valid value for every Candidate keyword, unlike its default (each one on its own,
#: with the default lease_ttl of 3 s).
SAMPLES: dict[str, Any] = {
    "redis": "redis://127.0.0.1:6390/3",
    "kind": "sample-kind",
    "meta": {"role": "web", "n": 1},
    "lease_ttl": 2.0,
    "key_prefix": "sample-prefix",
    "id": "sample-id-1",
    "max_message_bytes": 4096,
    "renew_interval": 0.6,
    "renew_deadline": 1.8,
    "membership_refresh": 1.0,
    "member_expiry": 8.0,
    "start_timeout": 9.0,
    "socket_timeout": 0.2,
    "vacancy_jitter": 0.02,
    "reelect_backoff": 0.3,
    "clock_sync_interval": 45.0,
    "secret": SECRET,
    "replay_window": 90.0,
    "min_replicas": 1,
    "fast_failover": False,
    "reliable": True,
    "presence_interval": 0.08,
    "presence_window": 0.3,
}


def _signature(candidate: Candidate) -> bytes | None:
    keyring = candidate.config.keyring
    return None if keyring is None else keyring.sign(b"{}", 1)


#: What a Candidate made of each keyword (private attributes where there is no property).
OBSERVE: dict[str, Callable[[Candidate], Any]] = {
    "redis": lambda c: describe(c.config.connection),
    "kind": lambda c: c.kind,
    "meta": lambda c: c.meta,
    "key_prefix": lambda c: c.config.key_prefix,
    "id": lambda c: c.id,
    "max_message_bytes": lambda c: c.config.max_message_bytes,
    **{f.name: (lambda c, name=f.name: getattr(c.timings, name)) for f in fields(Timings)},
    "secret": _signature,
    "replay_window": lambda c: c.config.replay_window,
    "min_replicas": lambda c: c.config.min_replicas,
    "fast_failover": lambda c: c.fast_failover,
    "reliable": lambda c: c.config.reliable,
}


def setting_name(keyword: str) -> str:
    """The setting of a Candidate keyword, by the documented rule."""
    return RENAMED.get(keyword, keyword.upper())


def sample(keyword: str) -> Any:
    """The sample value of ``keyword``; fails for a keyword this module does not know yet."""
    assert keyword in SAMPLES and keyword in OBSERVE, (
        f"Candidate has a new keyword {keyword!r}: give it a sample value (SAMPLES) and a way "
        "to observe it (OBSERVE) in tests/integration/test_settings.py, and document its "
        "setting in docs/flask.md and docs/django.md"
    )
    return SAMPLES[keyword]


def assert_reached(candidate: Candidate, keyword: str) -> None:
    """``candidate`` got the sample value of ``keyword``: it looks like a Candidate built
    with that value directly, and unlike one built without it."""
    value = sample(keyword)
    observe = OBSERVE[keyword]
    direct = Candidate(**{"kind": "direct-kind", keyword: value})
    default = Candidate(kind="default-kind")
    assert observe(candidate) == observe(direct), keyword
    assert observe(direct) != observe(default), f"the sample of {keyword} is its default"


def assert_signs_with(sender: Candidate, redis_url: str, secret: str) -> None:
    """Prove on the wire that ``sender`` (running) signs with ``secret``.

    The bytes it publishes end with a signature that verifies with ``secret``
    and not with another; a Candidate of the same kind with ``secret`` gets
    the message, one with another secret drops it and reports a ProtocolError.
    """
    kind, lease = sender.kind, sender.timings.lease_ttl
    same = Candidate(redis=redis_url, kind=kind, lease_ttl=lease, secret=secret)
    other = Candidate(redis=redis_url, kind=kind, lease_ttl=lease, secret=OTHER_SECRET)
    same_seen = Recorder().connect(same, "message")
    other_seen = Recorder().connect(other, "message", "error")
    channel = f"raftredis:{{{kind}}}:all"
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(channel)
        wait_until(lambda: pubsub.get_message(timeout=0.1), timeout=5.0)  # the subscribe reply
        with same, other:
            marker = f"signed-{uuid.uuid4().hex}"

            def published() -> bytes | None:
                message = pubsub.get_message(timeout=0.1)
                data = message["data"] if message else None
                return data if isinstance(data, bytes) and marker.encode() in data else None

            assert sender.message_all(marker) >= 2
            data = wait_until(published, timeout=5.0)
            assert b',"sig":"' in data, data
            Keyring(secrets_from(secret)).verify(data)
            with pytest.raises(WireError, match="bad signature"):
                Keyring(secrets_from(OTHER_SECRET)).verify(data)

            def got_it(event: Any) -> bool:
                return bool(event.kwargs["message"].payload == marker)

            same_seen.wait_for("message", got_it)
            error = other_seen.wait_for(
                "error", lambda e: getattr(e.kwargs["error"], "channel", "") == channel
            ).kwargs["error"]
            assert isinstance(error, ProtocolError) and "bad signature" in str(error)
            assert not other_seen.of("message", got_it)
    finally:
        pubsub.close()
        client.close()


# ------------------------------------------------------------------ the table


def test_settings_are_read_from_candidates_signature() -> None:
    """SETTING_KEYS holds every Candidate keyword, under the documented name, and no more;
    TIMING_KEYS every keyword that is a timing."""
    assert dict(SETTING_KEYS) == {setting_name(k): k for k in KEYWORDS}
    timings = {f.name for f in fields(Timings)}
    assert [SETTING_KEYS[k] for k in TIMING_KEYS] == [k for k in KEYWORDS if k in timings]


@pytest.mark.parametrize("keyword", KEYWORDS)
def test_every_keyword_has_a_sample(keyword: str) -> None:
    """A new Candidate keyword fails here until the tests know how to set and observe it."""
    sample(keyword)


def test_checking_every_setting_connects_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_settings() with every setting (a secret, a URL...) opens no connection."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a connection was opened while checking the settings")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    settings = parse_settings({setting_name(k): sample(k) for k in KEYWORDS}, environ={})
    assert settings.ok, settings.problems
    assert set(settings.candidate_kwargs()) == set(KEYWORDS)


def test_each_problem_is_reported_under_its_own_setting() -> None:
    """Several bad settings at once: one problem each, attributed to its setting and
    opening with its name (the core messages name Candidate keywords)."""
    bad = {
        "KIND": "good-kind",
        "SECRET": "too short",
        "REPLAY_WINDOW": 0,
        "MIN_REPLICAS": -1,
        "ID": "a b",
        "PREFIX": "a:b",
        "MAX_MESSAGE_BYTES": 10,
        "SOCKET_TIMEOUT": 1,
    }
    settings = parse_settings(bad, name=lambda key: f"<{key}>", environ={})
    assert sorted(p.key for p in settings.problems) == sorted(set(bad) - {"KIND"})
    for problem in settings.problems:
        assert problem.message.startswith(f"<{problem.key}>"), problem
        assert "too short" not in problem.message  # the secret is never shown
    assert "too short" not in repr(parse_settings({"KIND": "k", "SECRET": "too short"}))


# ------------------------------------------------------------------- the docs


def documented(page: str, pattern: str) -> set[str]:
    """The setting names in the first column of the settings table of ``docs/<page>``."""
    lines = (DOCS / page).read_text().splitlines()
    start = lines.index("| key | default | meaning |")
    names: set[str] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        first = line.split("|")[1]
        names.update(re.findall(pattern, first))
    return names


PAGES = {
    "flask.md": (r"`RAFTREDIS_([A-Z_]+)`", FLASK_OWN),
    "django.md": (r"`([A-Z_]+)`", DJANGO_OWN),
}


@pytest.mark.parametrize("page", sorted(PAGES))
@pytest.mark.parametrize("keyword", KEYWORDS)
def test_docs_list_every_keyword(page: str, keyword: str) -> None:
    pattern, _ = PAGES[page]
    assert setting_name(keyword) in documented(page, pattern), (
        f"docs/{page} does not list the setting {setting_name(keyword)} ({keyword})"
    )


@pytest.mark.parametrize("page", sorted(PAGES))
def test_docs_list_no_other_setting(page: str) -> None:
    pattern, own = PAGES[page]
    assert documented(page, pattern) == {setting_name(k) for k in KEYWORDS} | own
