"""Candidate(...): every accepted form of ``redis=`` works; bad input fails clearly."""

from __future__ import annotations

import math

import pytest
import redis
from helpers import Cluster
from support.kinds import unique_kind

import raftredis
from raftredis import Candidate, ConfigurationError
from raftredis.testing import RedisServer

# ------------------------------------------------------------ redis= forms


def _start_alone(redis_target: object, kind: str | None = None) -> None:
    with Cluster(redis_target, kind) as c:
        candidate = c.start()
        assert candidate.is_running
        assert candidate.is_leader
        assert candidate.leader_id == candidate.id
        assert candidate.current_term >= 1
        assert [i.id for i in candidate.get_instances()] == [candidate.id]


def test_redis_as_url_string(redis_url: str) -> None:
    """A URL string is accepted; the instance starts and leads."""
    _start_alone(redis_url)


def test_redis_as_host_port_dict(redis_server: RedisServer, redis_url: str) -> None:
    """A {host, port} dict is accepted."""
    _start_alone({"host": redis_server.host, "port": redis_server.port})


def test_redis_as_url_dict(redis_url: str) -> None:
    """A {url} dict is accepted."""
    _start_alone({"url": redis_url})


def test_redis_as_unix_socket_dict(unix_redis_server: RedisServer) -> None:
    """A {unix_socket_path} dict is accepted."""
    unix_redis_server.client().flushall()
    _start_alone({"unix_socket_path": unix_redis_server.unix_socket_path})


def test_redis_as_unix_url(unix_redis_server: RedisServer) -> None:
    """A unix:// URL is accepted."""
    _start_alone(unix_redis_server.url)


def test_redis_as_client_instance(redis_url: str) -> None:
    """A redis.Redis built with from_url() is accepted; the user's client still works."""
    client = redis.Redis.from_url(redis_url)
    try:
        _start_alone(client)
        assert client.ping()
    finally:
        client.close()


def test_redis_as_decoding_client_instance(redis_server: RedisServer, redis_url: str) -> None:
    """A redis.Redis built with decode_responses=True is accepted (raftredis needs bytes)."""
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    try:
        _start_alone(client)
    finally:
        client.close()


def test_redis_as_unix_client_instance(unix_redis_server: RedisServer) -> None:
    """A redis.Redis on a unix socket is accepted."""
    client = redis.Redis(unix_socket_path=unix_redis_server.unix_socket_path)
    try:
        _start_alone(client)
    finally:
        client.close()


@pytest.mark.parametrize("form", ["url", "dict", "client"])
def test_the_database_number_is_honoured(
    form: str, redis_server: RedisServer, redis_url: str
) -> None:
    """db=3 (in a URL, a dict, or a client) puts the kind's keys in database 3 only."""
    kind = unique_kind()
    url3 = f"redis://{redis_server.host}:{redis_server.port}/3"
    target: object = {
        "url": url3,
        "dict": {"host": redis_server.host, "port": redis_server.port, "db": 3},
        "client": redis.Redis.from_url(url3),
    }[form]
    db0, db3 = redis.Redis.from_url(redis_url), redis.Redis.from_url(url3)
    try:
        with Cluster(target, kind) as c:
            leader = c.start()
            key = f"raftredis:{{{kind}}}:leader"
            value = db3.get(key)
            assert value is not None and leader.id.encode() in value
            assert db0.get(key) is None
    finally:
        db3.flushdb()
        db0.close()
        db3.close()
        if isinstance(target, redis.Redis):
            target.close()


def test_key_prefix_is_used(redis_client: redis.Redis, redis_url: str) -> None:
    """key_prefix= replaces 'raftredis' in every key."""
    kind = unique_kind()
    with Cluster(redis_url, kind, key_prefix="myapp") as c:
        leader = c.start()
        value = redis_client.get(f"myapp:{{{kind}}}:leader")
        assert value is not None and leader.id.encode() in value
        assert redis_client.get(f"raftredis:{{{kind}}}:leader") is None


def test_explicit_id_is_kept(cluster: Cluster) -> None:
    """An explicit id= is the instance's id everywhere."""
    candidate = cluster.start(id="node-1.a_b")
    assert candidate.id == "node-1.a_b"
    assert candidate.leader_id == "node-1.a_b"
    assert [i.id for i in candidate.get_instances()] == ["node-1.a_b"]


def test_default_ids_are_unique_strings(redis_url: str) -> None:
    """Without id=, each Candidate gets a different non-empty string id."""
    ids = {Candidate(redis=redis_url, kind="k").id for _ in range(50)}
    assert len(ids) == 50
    assert all(isinstance(i, str) and i for i in ids)


def test_constructor_does_no_io() -> None:
    """Nothing touches the network before start(): a closed port is fine until then."""
    candidate = Candidate(redis="redis://127.0.0.1:1/0", kind="k", lease_ttl=1.0)
    assert candidate.state is raftredis.State.FOLLOWER
    assert candidate.is_leader is False
    assert candidate.leader_id is None
    assert candidate.current_term == 0


def test_meta_is_copied(cluster: Cluster) -> None:
    """The meta passed in is copied: changing the caller's dict later changes nothing."""
    meta = {"a": [1, 2]}
    candidate = cluster.new(meta=meta)
    meta["a"].append(3)
    assert candidate.meta == {"a": [1, 2]}
    returned = candidate.get_meta()
    returned["a"].append(4)
    assert candidate.meta == {"a": [1, 2]}


# ------------------------------------------------------------- bad input

BAD_ARGUMENTS = [
    # (kwargs, words the message must contain)
    ({"kind": ""}, ["kind"]),
    ({"kind": "a{b"}, ["kind", "{"]),
    ({"kind": "a}b"}, ["kind", "}"]),
    ({"kind": "a:b"}, ["kind", ":"]),
    ({"kind": "a b"}, ["kind", "whitespace"]),
    ({"kind": "a\tb"}, ["kind", "whitespace"]),
    ({"kind": 42}, ["kind", "string"]),
    ({"kind": None}, ["kind", "string"]),
    ({"kind": b"bytes"}, ["kind", "string"]),
    ({"kind": "x" * 201}, ["kind", "200"]),
    ({"meta": {1, 2}}, ["meta", "JSON"]),
    ({"meta": object()}, ["meta", "JSON"]),
    ({"meta": float("nan")}, ["meta", "NaN"]),
    ({"meta": {"x": float("inf")}}, ["meta"]),
    ({"meta": {"k": b"bytes"}}, ["meta", "JSON"]),
    ({"lease_ttl": 1.0, "renew_deadline": 1.0}, ["renew_deadline", "lease_ttl"]),
    ({"lease_ttl": 1.0, "renew_deadline": 1.5}, ["renew_deadline", "lease_ttl"]),
    ({"lease_ttl": 1.0, "renew_interval": 0.4}, ["renew_interval", "renew_deadline"]),
    ({"lease_ttl": 1.0, "renew_deadline": 0.5, "renew_interval": 0.3}, ["renew_interval"]),
    ({"lease_ttl": -1.0}, ["lease_ttl"]),
    ({"lease_ttl": 0}, ["lease_ttl"]),
    ({"lease_ttl": 0.0}, ["lease_ttl"]),
    ({"lease_ttl": float("nan")}, ["lease_ttl"]),
    ({"lease_ttl": float("inf")}, ["lease_ttl"]),
    ({"lease_ttl": True}, ["lease_ttl"]),
    ({"lease_ttl": "3"}, ["lease_ttl"]),
    ({"lease_ttl": None}, ["lease_ttl"]),
    ({"lease_ttl": 0.05}, ["lease_ttl", "0.1"]),
    ({"lease_ttl": 1.0, "renew_interval": -0.1}, ["renew_interval"]),
    ({"lease_ttl": 1.0, "member_expiry": 0.9}, ["member_expiry"]),
    ({"lease_ttl": 1.0, "start_timeout": 0}, ["start_timeout"]),
    ({"redis": 6379}, ["redis"]),
    ({"redis": 1.5}, ["redis"]),
    ({"redis": ["localhost"]}, ["redis"]),
    ({"redis": {"hots": "localhost"}}, ["hots"]),
    ({"redis": {"host": "localhost", "prot": 6379}}, ["prot"]),
    ({"redis": {"host": "localhost", "port": "6379"}}, ["port"]),
    ({"redis": {"host": "localhost", "port": 70000}}, ["port"]),
    ({"redis": "http://localhost:6379"}, ["redis", "http://localhost:6379"]),
    ({"redis": "localhost:6379"}, ["redis"]),
    ({"redis": {"url": "mysql://localhost"}}, ["redis", "mysql://localhost"]),
    ({"id": ""}, ["id"]),
    ({"id": "has space"}, ["id"]),
    ({"id": "a:b"}, ["id"]),
    ({"id": "x" * 129}, ["id"]),
    ({"id": 7}, ["id"]),
    ({"id": None, "kind": "svc\t"}, ["kind"]),
    ({"max_message_bytes": 100}, ["max_message_bytes"]),
    ({"max_message_bytes": 0}, ["max_message_bytes"]),
    ({"max_message_bytes": 1.5e6}, ["max_message_bytes"]),
    ({"max_message_bytes": True}, ["max_message_bytes"]),
    ({"key_prefix": "a b"}, ["key_prefix"]),
    ({"key_prefix": ""}, ["key_prefix"]),
]


@pytest.mark.parametrize(
    ("kwargs", "words"),
    BAD_ARGUMENTS,
    ids=[f"{sorted(k)}={list(k.values())!r}"[:60] for k, _ in BAD_ARGUMENTS],
)
def test_bad_argument_raises_configuration_error(kwargs: dict, words: list[str]) -> None:
    """Bad constructor input raises ConfigurationError (a ValueError) naming the setting."""
    options = {"redis": "redis://127.0.0.1:1/0", "kind": "svc", **kwargs}
    with pytest.raises(ConfigurationError) as info:
        Candidate(**options)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, raftredis.RaftRedisError)
    text = str(info.value)
    for word in words:
        assert word in text, f"{word!r} not in message {text!r}"


@pytest.mark.parametrize("kwargs", [{"kind": "svc\n"}, {"id": "node\n"}, {"key_prefix": "p\n"}])
def test_trailing_newline_is_rejected(kwargs: dict) -> None:
    """A name or id ending in a newline is rejected like any other whitespace.

    (Regression: '$' in re.match also matched before a trailing newline, and an id such as
    'node\\n' broke the lease format: acquire.lua did not recognise the live lease of such
    a leader and replaced it, so the next instance to start became a second leader.)
    """
    options = {"redis": "redis://127.0.0.1:1/0", "kind": "svc", **kwargs}
    with pytest.raises(ConfigurationError):
        Candidate(**options)


def test_unknown_keyword_is_a_type_error() -> None:
    """A misspelt keyword argument fails loudly (TypeError), not silently."""
    with pytest.raises(TypeError, match="lease_tll"):
        Candidate(kind="svc", lease_tll=1.0)  # type: ignore[call-arg]


def test_kind_is_required() -> None:
    """kind is a required keyword argument."""
    with pytest.raises(TypeError):
        Candidate(redis="redis://127.0.0.1:1/0")  # type: ignore[call-arg]


def test_valid_edge_settings_are_accepted() -> None:
    """Boundary values that can work are accepted, and derived timings are consistent."""
    c = Candidate(redis="redis://127.0.0.1:1/0", kind="svc", lease_ttl=0.1)
    assert c.timings.lease_ttl == 0.1
    assert c.timings.renew_deadline < c.timings.lease_ttl
    assert c.timings.renew_interval <= c.timings.renew_deadline / 2
    c = Candidate(redis="redis://127.0.0.1:1/0", kind="svc", lease_ttl=2, max_message_bytes=1024)
    assert c.timings.lease_ttl == 2.0
    assert math.isclose(c.timings.renew_deadline, 4 / 3)
    c = Candidate(redis="redis://127.0.0.1:1/0", kind="émoji-😀.ok_1", meta=None)
    assert c.kind == "émoji-😀.ok_1"
