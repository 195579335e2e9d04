"""Redis Sentinel: the redis= forms, and elections and messages across a failover.

Each test that needs servers gets a fresh primary, one replica and three
sentinels (:class:`conftest.SentinelSetup`; skipped without ``redis-sentinel``).
Two failovers are run: a manual one (``SENTINEL FAILOVER``, the old primary
stays up and is reconfigured as a replica later) and a crash (the primary is
killed with SIGKILL and the sentinels promote the replica). After each one
there must be exactly one leader, holding the lease on the new primary, with
a term no lower than before, and messages must flow again. The SIGKILL runs
twice: without min_replicas, and with min_replicas=1 and two replicas.

The term tests at the end run on one plain server: they play a new primary
that lost the last term write (an older term stored, or nothing at all).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
import redis
from failover import check_after_failover, messages_flow, settled

from raftredis import BackendError, Candidate, ConfigurationError
from raftredis.connection import connection_spec, describe
from raftredis.testing import RedisServer, wait_until

if TYPE_CHECKING:
    from conftest import SentinelSetup

#: The name the sentinels monitor the primary by (conftest.SERVICE).
SERVICE = "mymaster"

#: Short leases keep the failovers quick; socket_timeout derives from it (0.17 s).
LEASE_TTL = 2.0


# ------------------------------------------------------------- the redis= forms


def test_the_url_form_and_its_grammar() -> None:
    """redis+sentinel://[user:password@]host[:port],.../service[/db]; no password in describe()."""
    spec = connection_spec("redis+sentinel://alice:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:5/svc/3")
    assert spec.sentinel is not None
    assert spec.sentinel.addresses == (("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 5))
    assert spec.sentinel.service_name == "svc"
    assert spec.kwargs == {"username": "alice", "password": "p@ss", "db": 3}
    assert describe(spec) == "redis+sentinel://10.0.0.1:26380,10.0.0.2:26379,[::1]:5/svc/3"
    assert "p@ss" not in repr(spec)
    assert connection_spec("redis+sentinel://h:1/svc").kwargs == {}
    for bad in (
        "redis+sentinel://h:1",
        "redis+sentinel://h:1/",
        "redis+sentinel://h:1/svc/x",
        "redis+sentinel://h:1/svc/0/more",
        "redis+sentinel://h:x/svc",
        "redis+sentinel://h:1/svc?db=1",
        "redis+sentinel://:secret@h:70000/svc",
    ):
        with pytest.raises(ConfigurationError) as caught:
            connection_spec(bad)
        assert "secret" not in str(caught.value)


def test_the_dict_form() -> None:
    """sentinels + service_name, the data nodes' credentials, the sentinels' own ones."""
    spec = connection_spec(
        {
            "sentinels": [("10.0.0.1", 26379), ["10.0.0.2", 26379]],
            "service_name": "mymaster",
            "password": "data-secret",
            "sentinel_password": "sentinel-secret",
            "db": 2,
        }
    )
    assert spec.sentinel is not None
    assert spec.sentinel.addresses == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert spec.sentinel.password == "sentinel-secret"
    assert spec.kwargs == {"password": "data-secret", "db": 2}
    assert describe(spec) == "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/2"
    # A URL with the sentinels' password next to it.
    spec = connection_spec(
        {"url": "redis+sentinel://h:1/svc", "sentinel_password": "x", "password": "y"}
    )
    assert spec.sentinel is not None and spec.sentinel.password == "x"
    assert spec.kwargs == {"password": "y"}
    for bad, named in (
        ({"service_name": "m"}, "needs sentinels"),
        ({"sentinels": [("h", 1)]}, "needs service_name"),
        ({"sentinels": [], "service_name": "m"}, "non-empty list"),
        ({"sentinels": [("h", 0)], "service_name": "m"}, "port"),
        ({"sentinels": [("h", 1)], "service_name": "m", "host": "h"}, "cannot be combined"),
        ({"sentinels": [("h", 1)], "service_name": "m", "ssl_ca_certs": "ca"}, "need TLS"),
        ({"sentinels": [("h", 1)], "service_name": "m", "url": "redis://h/0"}, "must be a"),
    ):
        with pytest.raises(ConfigurationError, match=named):
            connection_spec(bad)


def test_the_tls_forms() -> None:
    """ssl for the primary and (unless sentinel_ssl says otherwise) the sentinels."""
    both = connection_spec(
        {"sentinels": [("h", 1)], "service_name": "m", "ssl": True, "ssl_ca_certs": "ca.crt"}
    )
    assert both.sentinel is not None and both.sentinel.tls == {"ssl_ca_certs": "ca.crt"}
    assert issubclass(both.connection_class, redis.SSLConnection)
    assert both.kwargs["ssl_ca_certs"] == "ca.crt"
    assert describe(both) == "rediss+sentinel://h:1/m/0"
    plain_sentinels = connection_spec(
        {"sentinels": [("h", 1)], "service_name": "m", "ssl": True, "sentinel_ssl": False}
    )
    assert plain_sentinels.sentinel is not None and plain_sentinels.sentinel.tls is None
    assert issubclass(plain_sentinels.connection_class, redis.SSLConnection)
    only_sentinels = connection_spec(
        {"sentinels": [("h", 1)], "service_name": "m", "sentinel_ssl": True, "ssl_ca_certs": "c"}
    )
    assert only_sentinels.sentinel is not None and only_sentinels.sentinel.tls == {
        "ssl_ca_certs": "c"
    }
    assert not issubclass(only_sentinels.connection_class, redis.SSLConnection)
    assert "ssl_ca_certs" not in only_sentinels.kwargs
    url = connection_spec({"url": "rediss+sentinel://h:1/m", "ssl_ca_certs": "ca.crt"})
    assert url.sentinel is not None and url.sentinel.tls == {"ssl_ca_certs": "ca.crt"}
    assert issubclass(url.connection_class, redis.SSLConnection)


# ---------------------------------------------------------- against sentinels


@pytest.fixture
def sentinel_candidates(
    sentinel_setup: SentinelSetup, candidates: Callable[..., Candidate]
) -> Iterator[Callable[..., Candidate]]:
    """``make(**options)``: a started Candidate of the test's kind, behind the sentinels."""

    def make(**options: Any) -> Candidate:
        options.setdefault(
            "redis", {"sentinels": sentinel_setup.addresses, "service_name": SERVICE}
        )
        options.setdefault("lease_ttl", LEASE_TTL)
        return candidates(**options).start()

    yield make


def _primary(setup: SentinelSetup) -> Callable[[], RedisServer]:
    return lambda: setup.server(setup.primary_port())


def test_election_and_messages_through_sentinel(
    sentinel_setup: SentinelSetup, sentinel_candidates: Callable[..., Candidate], kind: str
) -> None:
    """The dict form, the URL form and a master_for() client elect one leader and message."""
    ports = ",".join(f"127.0.0.1:{port}" for _, port in sentinel_setup.addresses)
    manager = redis.sentinel.Sentinel(sentinel_setup.addresses)
    group = [
        sentinel_candidates(),
        sentinel_candidates(redis=f"redis+sentinel://{ports}/{SERVICE}/0"),
        sentinel_candidates(redis=manager.master_for(SERVICE)),
    ]
    leader = wait_until(lambda: settled(group, _primary(sentinel_setup), kind), 5.0)
    assert messages_flow(group, leader)
    assert leader.message_all("hello") == 2
    assert group[1].config.connection.sentinel is not None
    assert describe(group[2].config.connection) == f"redis+sentinel://{ports}/{SERVICE}/0"
    # min_replicas: the one replica acknowledges a new lease; two cannot.
    assert sentinel_candidates(kind=f"{kind}-1", min_replicas=1).is_leader
    with pytest.raises(BackendError, match="reached 1 of min_replicas=2"):
        sentinel_candidates(kind=f"{kind}-2", min_replicas=2, start_timeout=1.0)


def test_min_replicas_without_replicas(
    plain_server: RedisServer, candidates: Callable[..., Candidate], kind: str
) -> None:
    """No replica acknowledges the lease: no leader, and no lease left behind."""
    candidate = candidates(redis=plain_server.url, lease_ttl=1.0, min_replicas=1)
    with pytest.raises(BackendError, match="reached 0 of min_replicas=1"):
        candidate.start(timeout=1.0)
    client = plain_server.client()
    try:
        assert client.get(f"raftredis:{{{kind}}}:leader") is None
    finally:
        client.close()
    with pytest.raises(ConfigurationError, match="min_replicas"):
        Candidate(kind=kind, min_replicas=-1)


def test_a_manual_failover(
    sentinel_setup: SentinelSetup, sentinel_candidates: Callable[..., Candidate], kind: str
) -> None:
    """SENTINEL FAILOVER while a leader holds the lease: everyone follows the new primary.

    The old primary stays up and writable until Sentinel reconfigures it
    (about 10 s later); the PrimaryWatch moves every connection before that.
    """
    group = [sentinel_candidates() for _ in range(3)]
    old_leader = wait_until(lambda: settled(group, _primary(sentinel_setup), kind), 5.0)
    old_term = old_leader.current_term
    old_port = sentinel_setup.primary_port()
    sentinel = sentinel_setup.sentinel()
    try:
        assert sentinel.sentinel_failover(SERVICE)
    finally:
        sentinel.close()
    started = time.monotonic()
    wait_until(lambda: sentinel_setup.primary_port() != old_port, 10.0, "no new primary")
    new_primary = sentinel_setup.server(sentinel_setup.primary_port())
    assert new_primary.client().info("replication")["role"] == "master"
    check_after_failover(group, _primary(sentinel_setup), kind, old_leader, old_term)
    # Every listener moved within a few watch intervals, long before Sentinel
    # demotes the old primary (which still takes writes meanwhile).
    old_primary = sentinel_setup.server(old_port)
    wait_until(lambda: _subscribers(new_primary) == 2 * len(group), 5.0)
    assert _subscribers(old_primary) == 0
    assert old_primary.client().info("replication")["role"] == "master"
    assert time.monotonic() - started < 8.0
    # And the lease is renewed on the new primary.
    lease_key = f"raftredis:{{{kind}}}:leader"
    client = new_primary.client()
    try:
        first = client.get(lease_key)
        wait_until(lambda: client.get(lease_key) not in (None, first), 3.0, "no renew")
    finally:
        client.close()


def _subscribers(server: RedisServer) -> int:
    """How many pub/sub connections a server has, not counting the sentinels' own."""
    client = server.client(decode_responses=True)
    try:
        clients = client.client_list(_type="pubsub")
        return sum(1 for c in clients if not c.get("name", "").startswith("sentinel-"))
    finally:
        client.close()


@pytest.mark.parametrize(
    ("sentinel_setup", "min_replicas"), [(1, 0), (2, 1)], indirect=["sentinel_setup"]
)
def test_the_primary_is_killed(
    sentinel_setup: SentinelSetup,
    sentinel_candidates: Callable[..., Candidate],
    kind: str,
    min_replicas: int,
) -> None:
    """SIGKILL the primary: the sentinels promote a replica, and the kind recovers.

    With min_replicas=1 there are two replicas, so that the new primary gets
    one again (the other replica, reconfigured by Sentinel) to acknowledge
    the next lease.
    """
    group = [sentinel_candidates(min_replicas=min_replicas) for _ in range(3)]
    old_leader = wait_until(lambda: settled(group, _primary(sentinel_setup), kind), 5.0)
    old_term = old_leader.current_term
    old_port = sentinel_setup.primary_port()
    sentinel_setup.server(old_port).kill()
    wait_until(lambda: sentinel_setup.primary_port() != old_port, 20.0, "no promotion")
    check_after_failover(group, _primary(sentinel_setup), kind, old_leader, old_term)


# ------------------------------------------- terms on a primary that lost writes


@pytest.fixture(scope="module")
def plain_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def _rolled_back(server: RedisServer, kind: str, term: int | None) -> None:
    """Play a new primary that missed the last election: the lease (and its copy, written
    with it) gone, an older term (or none)."""
    client = server.client()
    try:
        client.delete(f"raftredis:{{{kind}}}:leader", f"raftredis:{{{kind}}}:leader-copy")
        if term is None:
            client.delete(f"raftredis:{{{kind}}}:term")
        else:
            client.set(f"raftredis:{{{kind}}}:term", term)
    finally:
        client.close()


@pytest.mark.parametrize("stored", ["older", "none"])
def test_terms_grow_when_the_new_primary_lost_the_last_term(
    plain_server: RedisServer, candidates: Callable[..., Candidate], kind: str, stored: str
) -> None:
    """Terms never go back: the leader, whose lease has not run out, puts it back with its
    term (and the term key with it); or, if it had run out, the next term is above the
    lost one, from the instances' known term or the clock floor."""
    a = candidates(redis=plain_server.url, lease_ttl=1.0).start()
    b = candidates(redis=plain_server.url, lease_ttl=1.0).start()
    wait_until(lambda: a.is_leader != b.is_leader and a.leader_id == b.leader_id, 5.0)
    leader = a if a.is_leader else b
    lost = leader.current_term
    wait_until(lambda: b.current_term == lost, 5.0)
    _rolled_back(plain_server, kind, lost - 1 if stored == "older" else None)
    client = plain_server.client()
    term_key = f"raftredis:{{{kind}}}:term"
    try:
        # The leader's next renew finds the lease gone and puts it back.
        wait_until(
            lambda: int(client.get(term_key) or 0) >= lost,
            5.0,
            lambda: f"the term key is {client.get(term_key)!r} after losing {lost}",
        )
        wait_until(lambda: (a.is_leader or b.is_leader) and not (a.is_leader and b.is_leader))
        assert min(a.current_term, b.current_term) >= lost
        assert (a if a.is_leader else b).current_term >= lost
    finally:
        client.close()


# --------------------------------------------------------------------- over TLS


@pytest.fixture
def tls_sentinel_setup(tls_binary: str, sentinel_binary: str) -> Iterator[SentinelSetup]:
    """A primary, a replica and three sentinels that all speak only TLS, with one CA."""
    from conftest import SentinelSetup

    setup = SentinelSetup(tls_binary, sentinel_binary, tls=True)
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


def test_a_manual_failover_over_tls(
    tls_sentinel_setup: SentinelSetup, candidates: Callable[..., Candidate], kind: str
) -> None:
    """ssl=True reaches the sentinels and the primary by TLS, and follows a failover."""
    setup = tls_sentinel_setup
    settings = {"sentinels": setup.addresses, "service_name": SERVICE, **setup.client_kwargs()}
    group = [candidates(redis=settings, lease_ttl=LEASE_TTL).start() for _ in range(3)]
    assert describe(group[0].config.connection).startswith("rediss+sentinel://")
    old_leader = wait_until(lambda: settled(group, _primary(setup), kind), 5.0)
    old_term = old_leader.current_term
    assert messages_flow(group, old_leader)
    old_port = setup.primary_port()
    sentinel = setup.sentinel()
    try:
        assert sentinel.sentinel_failover(SERVICE)
    finally:
        sentinel.close()
    wait_until(lambda: setup.primary_port() != old_port, 10.0, "no new primary")
    check_after_failover(group, _primary(setup), kind, old_leader, old_term)
    # Without the CA, neither the sentinels nor the primary are trusted.
    stranger = candidates(
        redis={"sentinels": setup.addresses, "service_name": SERVICE, "ssl": True}
    )
    with pytest.raises(BackendError, match="certificate verify failed"):
        stranger.start(timeout=2.0)
