"""When Redis forgets the lease (evicted, flushed) or refuses to write (out of memory).

Each test runs its own redis-server, because it changes ``maxmemory`` and the
eviction policy. Eviction itself is shown by the chaos scenarios
(``tests/chaos/test_memory.py``); here the lease key is deleted at a chosen
moment, which leaves Redis in the same state an eviction would, so that each
rule is shown by one deterministic test:

* a vanished lease is held until it would have run out (its copy says so,
  and followers remember it): no follower takes it early;
* its leader puts it back at its next renew, and reports it, once;
* a renew refused for lack of memory is an answer: the leader steps down at
  once, nobody takes a lease while writes are refused, and one leader is
  back within 2 x lease_ttl once memory is free again;
* start() warns when Redis may evict.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from helpers import wait_until
from support.kinds import unique_kind

from raftredis import Candidate, Client
from raftredis.errors import EvictionWarning, LeaseVanishedError, RefusedError
from raftredis.keys import KeySpace
from raftredis.store import parse_lease
from raftredis.testing import CandidateGroup, RedisServer

LEASE_TTL = 1.0


@pytest.fixture
def admin(own_server: RedisServer) -> Iterator[redis.Redis]:
    client = own_server.client()
    try:
        yield client
    finally:
        client.close()


class Errors:
    """The errors reported on a Candidate's ``error`` signal."""

    def __init__(self, candidate: Candidate) -> None:
        self.seen: list[BaseException] = []
        self._lock = threading.Lock()
        candidate.on("error", self._add)

    def _add(self, sender: Any, error: BaseException, **extra: Any) -> None:
        with self._lock:
            self.seen.append(error)

    def of(self, kind: type[BaseException]) -> list[Any]:
        with self._lock:
            return [e for e in self.seen if isinstance(e, kind)]


def may_evict(admin: redis.Redis, policy: str = "volatile-lru") -> None:
    """A memory limit far above what the test uses, and an eviction policy: Redis
    may evict, so raftredis keeps the lease's copy up to date."""
    admin.config_set("maxmemory", str(512 << 20))
    admin.config_set("maxmemory-policy", policy)


def start_pair(server: RedisServer) -> tuple[CandidateGroup, Candidate, Candidate]:
    group = CandidateGroup(server.url, unique_kind("mem"), lease_ttl=LEASE_TTL)
    leader = group.start()
    follower = group.start()
    assert leader.is_leader and follower.leader_id == leader.id
    return group, leader, follower


def never_leads_while(candidate: Candidate, seconds: float) -> bool:
    """Watch ``candidate`` for ``seconds``: True if it never claimed to lead."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if candidate.is_leader:
            return False
        time.sleep(0.002)
    return True


def test_a_deleted_lease_is_put_back_by_its_leader_and_nobody_takes_it(
    own_server: RedisServer, admin: redis.Redis
) -> None:
    may_evict(admin)
    group, leader, follower = start_pair(own_server)
    errors = Errors(leader)
    keys = KeySpace("raftredis", leader.kind)
    try:
        wait_until(lambda: admin.get(keys.leader_copy) == admin.get(keys.leader), timeout=3)
        term = leader.current_term
        admin.delete(keys.leader)  # as an eviction would
        # The follower goes on following, and the leader's next renew puts it back.
        lease = wait_until(lambda: parse_lease(admin.get(keys.leader)), timeout=2 * LEASE_TTL)
        assert (lease.holder, lease.term) == (leader.id, term)
        assert never_leads_while(follower, 2 * LEASE_TTL)
        assert leader.is_leader and leader.current_term == term
        reported = wait_until(lambda: errors.of(LeaseVanishedError), timeout=2)
        assert reported[0].restored and reported[0].term == term
        assert "maxmemory-policy volatile-lru" in reported[0].cause
        # Once, not per renew.
        admin.delete(keys.leader)
        wait_until(lambda: admin.get(keys.leader) is not None, timeout=2 * LEASE_TTL)
        assert len(errors.of(LeaseVanishedError)) == 1
    finally:
        group.close()


def ghost_lease(admin: redis.Redis, keys: KeySpace, holder: str, ms: int) -> int:
    """A lease of ``holder`` (no process: a frozen or crashed leader) whose key has
    vanished, as after an eviction: only its copy is left. Returns its expiry."""
    seconds, micros = admin.time()
    expires = int(seconds) * 1000 + int(micros) // 1000 + ms
    term = expires - ms
    admin.set(keys.term, term)
    admin.set(keys.leader_copy, f"{term} {holder} {expires}")
    return expires


def server_ms(admin: redis.Redis) -> int:
    seconds, micros = admin.time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_a_vanished_lease_is_held_until_it_would_have_run_out(
    own_server: RedisServer, admin: redis.Redis
) -> None:
    """Only the copy of a lease is left (its holder frozen, its key evicted): a
    newcomer follows that holder until the lease would have run out, then leads."""
    kind = unique_kind("mem")
    keys = KeySpace("raftredis", kind)
    expires = ghost_lease(admin, keys, "frozen-leader", 1500)
    candidate = Candidate(redis=own_server.url, kind=kind, lease_ttl=LEASE_TTL)
    try:
        candidate.start()
        assert candidate.leader_id == "frozen-leader" and not candidate.is_leader
        left = (expires - server_ms(admin) - 30) / 1000.0
        assert left > 0.5, "the test took too long to get here"
        assert never_leads_while(candidate, left)
        wait_until(lambda: candidate.is_leader, timeout=2 * LEASE_TTL)
        assert server_ms(admin) >= expires
    finally:
        candidate.stop()


def test_a_flushall_leaves_one_leader(own_server: RedisServer, admin: redis.Redis) -> None:
    group, leader, follower = start_pair(own_server)
    errors = Errors(leader)
    keys = KeySpace("raftredis", leader.kind)
    try:
        term = leader.current_term
        admin.flushall()
        lease = wait_until(lambda: parse_lease(admin.get(keys.leader)), timeout=2 * LEASE_TTL)
        assert (lease.holder, lease.term) == (leader.id, term)
        assert admin.get(keys.term) == str(term).encode()
        assert never_leads_while(follower, LEASE_TTL)
        reported = wait_until(lambda: errors.of(LeaseVanishedError), timeout=2)
        assert reported[0].restored
        assert "deleted" in reported[0].cause and "noeviction" in reported[0].cause
        wait_until(lambda: {i.id for i in follower.get_instances()} >= {leader.id, follower.id})
    finally:
        group.close()


def test_readers_see_a_vanished_lease_until_it_runs_out(
    own_server: RedisServer, admin: redis.Redis
) -> None:
    """get_leader(), get_instances() and message_leader() of a Candidate and of a
    Client treat the lease's copy as the lease while it has not run out."""
    kind = unique_kind("mem")
    keys = KeySpace("raftredis", kind)
    inbox = admin.pubsub()
    inbox.subscribe(keys.inbox("frozen-leader"))
    assert inbox.get_message(timeout=2) is not None
    ghost_lease(admin, keys, "frozen-leader", 4000)
    candidate = Candidate(redis=own_server.url, kind=kind, lease_ttl=LEASE_TTL)
    client = Client(redis=own_server.url, kind=kind)
    try:
        candidate.start()
        for reader in (candidate, client):
            leader = reader.get_leader()
            assert leader is not None and leader.id == "frozen-leader"
            assert reader.message_leader({"from": type(reader).__name__}) == 1
        states = {i.id: i.state.value for i in candidate.get_instances()}
        assert states == {candidate.id: "follower"}  # the holder is no member here
        received = [inbox.get_message(timeout=2) for _ in range(2)]
        assert all(m is not None and m["type"] == "message" for m in received)
    finally:
        inbox.close()
        client.close()
        candidate.stop()


def test_a_renew_refused_for_lack_of_memory_steps_down_at_once(
    own_server: RedisServer, admin: redis.Redis
) -> None:
    group, leader, follower = start_pair(own_server)
    errors = Errors(leader)
    try:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")  # every write is refused (OOM)
        refused_at = time.monotonic()
        wait_until(lambda: not leader.is_leader, timeout=LEASE_TTL)
        # Well before its renew_deadline: at the first refused renew.
        assert time.monotonic() - refused_at < leader.timings.renew_deadline
        # Reported on the error signal, whose dispatch thread may run a moment later.
        wait_until(lambda: errors.of(RefusedError), timeout=2.0, message=lambda: str(errors.seen))
        assert "OOM" in str(errors.of(RefusedError)[0])
        # Nobody can write a lease now, so nobody leads.
        assert never_leads_while(follower, LEASE_TTL) and not leader.is_leader
        admin.config_set("maxmemory", "0")
        freed = time.monotonic()
        wait_until(lambda: leader.is_leader or follower.is_leader, timeout=2 * LEASE_TTL)
        assert time.monotonic() - freed <= 2 * LEASE_TTL
        assert not (leader.is_leader and follower.is_leader)
    finally:
        group.close()


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "volatile-ttl"])
def test_start_warns_when_redis_may_evict(
    own_server: RedisServer, admin: redis.Redis, policy: str
) -> None:
    admin.config_set("maxmemory", str(256 << 20))
    admin.config_set("maxmemory-policy", policy)
    candidate = Candidate(redis=own_server.url, kind=unique_kind(), lease_ttl=LEASE_TTL)
    errors = Errors(candidate)
    try:
        candidate.start()
        warning = wait_until(lambda: errors.of(EvictionWarning), timeout=2)[0]
        assert warning.policy == policy and warning.maxmemory == 256 << 20
        assert "noeviction" in str(warning)
    finally:
        candidate.stop()


@pytest.mark.parametrize(("maxmemory", "policy"), [("0", "allkeys-lru"), ("256mb", "noeviction")])
def test_start_does_not_warn_when_redis_cannot_evict(
    own_server: RedisServer, admin: redis.Redis, maxmemory: str, policy: str
) -> None:
    admin.config_set("maxmemory", maxmemory)
    admin.config_set("maxmemory-policy", policy)
    candidate = Candidate(redis=own_server.url, kind=unique_kind(), lease_ttl=LEASE_TTL)
    errors = Errors(candidate)
    seen = threading.Event()
    candidate.on("elected", lambda sender, **extra: seen.set())
    try:
        candidate.start()
        assert seen.wait(2)  # the dispatch thread has delivered what start() queued
        assert not errors.of(EvictionWarning)
    finally:
        candidate.stop()
