"""Config: every option is checked by one piece of code, and its errors name the option.

Pure: nothing here connects to Redis (building a Config or a Client does no I/O).
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from raftredis.client import Client
from raftredis.config import Config
from raftredis.connection import describe
from raftredis.errors import ConfigurationError
from raftredis.signing import Keyring, secrets_from
from raftredis.timing import Timings
from raftredis.wire import WireError

SECRET = "a unit test secret of 16+ bytes"
SENTINEL_URL = "redis+sentinel://127.0.0.1:26379/mymaster"


@pytest.mark.parametrize(
    ("options", "option", "text"),
    [
        ({"kind": ""}, "kind", "kind must be a non-empty string"),
        ({"kind": "a b"}, "kind", "kind='a b' is not allowed"),
        ({"key_prefix": "a:b"}, "key_prefix", "key_prefix='a:b' is not allowed"),
        ({"key_prefix": "p" * 201}, "key_prefix", "use at most 200"),
        ({"id": "a b"}, "id", "id='a b' is not allowed"),
        ({"max_message_bytes": 10}, "max_message_bytes", "max_message_bytes=10 is too small"),
        ({"max_message_bytes": "big"}, "max_message_bytes", "must be an int"),
        ({"min_replicas": -1}, "min_replicas", "min_replicas must be an int >= 0"),
        ({"min_replicas": True}, "min_replicas", "min_replicas must be an int >= 0"),
        ({"meta": {"x": object()}}, "meta", "meta must be JSON-serialisable"),
        ({"meta": "m" * 2000, "max_message_bytes": 1024}, "meta", "over max_message_bytes"),
        ({"lease_ttl": 0.01}, "lease_ttl", "lease_ttl=0.01 s is too short"),
        ({"lease_ttl": "3"}, "lease_ttl", "lease_ttl must be a number of seconds"),
        ({"vacancy_jitter": 0}, "vacancy_jitter", "vacancy_jitter must be a positive"),
        # Two timings that do not fit: the error names the one to change.
        ({"socket_timeout": 1}, "socket_timeout", "must be at most half of renew_interval"),
        ({"lease_ttl": 1, "renew_deadline": 2}, "renew_deadline", "must be shorter than lease_ttl"),
        ({"renew_interval": 1.5}, "renew_interval", "must be at most half of renew_deadline"),
        ({"membership_refresh": 4}, "membership_refresh", "at most half of member_expiry"),
        ({"lease_ttl": 1, "member_expiry": 1}, "member_expiry", "must be longer than lease_ttl"),
        ({"presence_interval": 0.15}, "presence_interval", "half of presence_window"),
        ({"lease_ttl": 0.5, "presence_window": 0.5}, "presence_window", "than renew_deadline"),
        ({"secret": "too short"}, "secret", "a secret must be at least 16 bytes"),
        ({"secret": []}, "secret", "secret must not be an empty list"),
        ({"secret": 42}, "secret", "secret must be a str or bytes"),
        ({"replay_window": 0}, "replay_window", "replay_window must be a positive number"),
        ({"fast_failover": "yes"}, "fast_failover", "fast_failover must be True, False or None"),
        ({"fast_failover": True, "redis": SENTINEL_URL}, "fast_failover", "is not safe behind"),
        ({"redis": "http://localhost"}, "redis", "must start with"),
        ({"redis": {"bogus": 1}}, "redis", "unknown key(s) bogus"),
        ({"redis": 6379}, "redis", "redis= must be a dict"),
    ],
)
def test_each_bad_option_is_named(options: dict[str, Any], option: str, text: str) -> None:
    """ConfigurationError.option names the option to change; the message says why."""
    with pytest.raises(ConfigurationError) as caught:
        Config.from_options(**{"kind": "k", **options})
    assert caught.value.option == option
    assert text in str(caught.value)


def test_the_secret_is_never_shown() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Config.from_options(kind="k", secret=["x" * 20, "hunter2"])
    assert caught.value.option == "secret"
    assert "hunter2" not in str(caught.value) and "x" * 20 not in str(caught.value)


def test_timings_name_their_option() -> None:
    """Timings alone (without a Config) name the timing too, an unknown one included."""
    with pytest.raises(ConfigurationError) as caught:
        Timings.from_lease(3.0, bogus=1.0)
    assert caught.value.option == "bogus"
    with pytest.raises(ConfigurationError) as caught:
        Timings(lease_ttl=3.0, renew_deadline=3.0)
    assert caught.value.option == "renew_deadline"


def test_the_option_survives_pickling() -> None:
    """Errors cross process boundaries (multiprocessing) with their option."""
    with pytest.raises(ConfigurationError) as caught:
        Config.from_options(kind="k", lease_ttl=-1)
    copied = pickle.loads(pickle.dumps(caught.value))
    assert (copied.option, str(copied)) == ("lease_ttl", str(caught.value))


def test_a_good_config() -> None:
    config = Config.from_options(
        redis="redis://127.0.0.1:6390/3", kind="k", lease_ttl=2.0, id="one", secret=SECRET
    )
    assert (config.kind, config.key_prefix, config.member_id) == ("k", "raftredis", "one")
    assert config.timings == Timings.from_lease(2.0)
    assert config.keyring is not None and config.fast_failover
    assert SECRET not in repr(config)


# ------------------------------------------------------------ Client.from_config


def test_client_from_config_talks_to_the_configs_kind() -> None:
    """Same Redis, kind, key prefix, secret and message limit; an id of its own."""
    url = "redis://127.0.0.1:6390/3"
    config = Config.from_options(
        redis=url,
        kind="the-kind",
        key_prefix="the-prefix",
        id="member-1",
        max_message_bytes=4096,
        secret=[SECRET, "an older secret, 16+ bytes"],
        lease_ttl=30.0,
    )
    client = Client.from_config(config)
    direct = Client(
        redis=url, kind="the-kind", key_prefix="the-prefix", max_message_bytes=4096, secret=SECRET
    )
    assert (client.kind, client.key_prefix) == ("the-kind", "the-prefix")
    assert describe(client._spec) == describe(direct._spec)
    assert client._spec is not config.connection  # connections of its own
    assert client._keys == direct._keys
    assert client._max_message_bytes == 4096
    assert client.id != "member-1" and client.id.startswith("client-")
    # Signs with the config's first secret: verified by that secret alone.
    assert client._keyring is not None
    signed = client._keyring.sign(b"{}", 1)
    Keyring(secrets_from(SECRET)).verify(signed)
    with pytest.raises(WireError):
        Keyring(secrets_from("an older secret, 16+ bytes")).verify(signed)
    # socket_timeout is the Client's own (default 0.25 s), not the Config's timing.
    assert client._timings.socket_timeout == direct._timings.socket_timeout
    assert Client.from_config(config, socket_timeout=2.0)._timings.socket_timeout == 2.0


def test_client_from_config_without_secret() -> None:
    client = Client.from_config(Config.from_options(kind="plain"))
    assert client._keyring is None
    assert "<Client plain/client-" in repr(client)


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"kind": "a b"}, "kind"),
        ({"key_prefix": ""}, "key_prefix"),
        ({"id": "a/b"}, "id"),
        ({"max_message_bytes": 10}, "max_message_bytes"),
        ({"secret": "short"}, "secret"),
        ({"replay_window": -1}, "replay_window"),
        ({"socket_timeout": 61}, "socket_timeout"),
        ({"redis": "http://localhost"}, "redis"),
    ],
)
def test_client_errors_name_the_option(options: dict[str, Any], option: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Client(**{"kind": "k", **options})
    assert caught.value.option == option


def test_client_from_config_checks_its_socket_timeout() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Client.from_config(Config.from_options(kind="k"), socket_timeout=0)
    assert caught.value.option == "socket_timeout"
