"""start() / stop(): roles right after start, idempotence, errors, no leaked threads."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from helpers import Cluster, free_port, raftredis_threads, wait_until
from support.kinds import unique_kind

from raftredis import BackendError, Candidate, ConfigurationError, NotRunningError, State
from raftredis.session import Session
from raftredis.testing import RedisServer


def test_lone_instance_leads_when_start_returns(cluster: Cluster) -> None:
    """A lone instance is leader as soon as start() returns, and start() is fast."""
    candidate = cluster.new()
    started = time.monotonic()
    returned = candidate.start()
    elapsed = time.monotonic() - started
    assert returned is candidate
    assert candidate.is_leader
    assert candidate.state is State.LEADER
    assert candidate.leader_id == candidate.id
    assert candidate.current_term >= 1
    assert candidate.is_running
    assert elapsed < 1.0, f"start() took {elapsed:.3f} s"


def test_second_instance_follows_when_start_returns(cluster: Cluster) -> None:
    """An instance started after a leader is a follower of it as soon as start() returns."""
    first = cluster.start()
    second = cluster.new()
    started = time.monotonic()
    second.start()
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"start() took {elapsed:.3f} s"
    assert second.state is State.FOLLOWER
    assert not second.is_leader
    assert second.leader_id == first.id
    assert second.current_term == first.current_term
    assert first.is_leader


def test_start_twice_is_a_no_op(cluster: Cluster) -> None:
    """A second start() returns at once and changes nothing (same threads, same term)."""
    candidate = cluster.start()
    threads = {t.name for t in raftredis_threads()}
    term = candidate.current_term
    assert candidate.start() is candidate
    assert candidate.is_leader
    assert candidate.current_term == term
    assert {t.name for t in raftredis_threads()} == threads
    assert len(candidate.get_instances()) == 1


def test_stop_twice_is_fine_and_start_after_stop_fails(cluster: Cluster) -> None:
    """stop() is idempotent; start() after stop() raises NotRunningError."""
    candidate = cluster.start()
    candidate.stop()
    assert not candidate.is_running
    assert not candidate.is_leader
    assert candidate.leader_id is None
    candidate.stop()
    candidate.stop(timeout=0.1)
    with pytest.raises(NotRunningError, match="create a new Candidate"):
        candidate.start()


def test_stop_before_start_is_fine(cluster: Cluster) -> None:
    """stop() on a Candidate never started does nothing (and it can still start)."""
    candidate = cluster.new()
    candidate.stop()
    candidate.start()
    assert candidate.is_leader


def test_stop_removes_threads_and_membership(cluster: Cluster) -> None:
    """After stop() no thread of the candidate runs and it is no longer a member."""
    first = cluster.start()
    second = cluster.start()
    assert raftredis_threads()
    second.stop()
    assert [i.id for i in first.get_instances()] == [first.id]
    first.stop()
    wait_until(lambda: not raftredis_threads(), timeout=2.0, message="threads left after stop()")


METHODS = [
    ("message_to", ("someone", {"x": 1})),
    ("message_all", ({"x": 1},)),
    ("message_followers", ({"x": 1},)),
    ("message_leader", ({"x": 1},)),
    ("messageTo", ("someone", 1)),
    ("messageAll", (1,)),
    ("messageFollowers", (1,)),
    ("messageLeader", (1,)),
    ("get_instances", ()),
    ("getInstances", ()),
    ("get_leader", ()),
    ("getLeader", ()),
    ("reelect", ()),
    ("wait_for_leader", (0.1,)),
]


@pytest.mark.parametrize(("method", "args"), METHODS, ids=[m for m, _ in METHODS])
def test_calls_before_start_raise_not_running(cluster: Cluster, method: str, args: tuple) -> None:
    """Messaging and discovery before start() raise NotRunningError saying to start()."""
    candidate = cluster.new()
    with pytest.raises(NotRunningError, match=r"start\(\)"):
        getattr(candidate, method)(*args)


@pytest.mark.parametrize(("method", "args"), METHODS, ids=[m for m, _ in METHODS])
def test_calls_after_stop_raise_not_running(cluster: Cluster, method: str, args: tuple) -> None:
    """Messaging and discovery after stop() raise NotRunningError."""
    candidate = cluster.start()
    candidate.stop()
    with pytest.raises(NotRunningError):
        getattr(candidate, method)(*args)


def test_local_state_is_readable_in_every_phase(cluster: Cluster) -> None:
    """id, kind, meta, state and get_meta() work before start, while running and after stop."""
    candidate = cluster.new(meta={"a": 1})

    def check(expected_state: State) -> None:
        assert candidate.kind == cluster.kind
        assert candidate.get_meta() == {"a": 1}
        assert candidate.getMeta() == {"a": 1}
        assert candidate.state is expected_state
        assert candidate.id in repr(candidate)

    check(State.FOLLOWER)
    candidate.start()
    check(State.LEADER)
    candidate.stop()
    check(State.FOLLOWER)
    assert candidate.current_term >= 1  # the last term it knew


def test_context_manager_starts_and_stops(cluster: Cluster) -> None:
    """`with candidate:` starts it (leader inside) and stops it on exit."""
    candidate = cluster.new()
    other = cluster.start()
    with candidate as entered:
        assert entered is candidate
        assert candidate.is_running
        assert candidate.leader_id == other.id
        assert len(other.get_instances()) == 2
    assert not candidate.is_running
    assert [i.id for i in other.get_instances()] == [other.id]


def test_context_manager_stops_on_exception(cluster: Cluster) -> None:
    """An exception inside `with` still stops the candidate (and resigns its lease)."""
    follower = cluster.start()
    candidate = cluster.new()
    follower.stop()
    with pytest.raises(ZeroDivisionError), candidate:
        assert candidate.is_leader
        1 / 0  # noqa: B018
    assert not candidate.is_running
    assert not candidate.is_leader


def test_unreachable_redis_fails_fast_and_leaves_nothing_running() -> None:
    """Redis on a closed port: start() raises BackendError quickly; no thread is left."""
    port = free_port()
    candidate = Candidate(
        redis=f"redis://127.0.0.1:{port}/0", kind=unique_kind(), lease_ttl=1.0, start_timeout=2.0
    )
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        candidate.start()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"start() took {elapsed:.3f} s, start_timeout is 2 s"
    assert str(port) in str(info.value)
    assert info.value.__cause__ is not None
    assert not candidate.is_running
    assert not candidate.is_leader
    assert not raftredis_threads()
    with pytest.raises(NotRunningError):
        candidate.message_all(1)
    candidate.stop()  # harmless


def test_start_can_be_retried_after_a_backend_error() -> None:
    """A start() that failed because Redis was down can be retried once Redis is up."""
    with RedisServer() as server:
        server.kill()
        candidate = Candidate(redis=server.url, kind=unique_kind(), lease_ttl=1.0)
        try:
            with pytest.raises(BackendError):
                candidate.start()
            server.start()
            candidate.start()
            assert candidate.is_leader
        finally:
            candidate.stop()


def test_hung_redis_start_times_out_within_start_timeout() -> None:
    """A paused (SIGSTOP) Redis: start() raises BackendError within start_timeout."""
    with RedisServer() as server:
        candidate = Candidate(
            redis=server.url, kind=unique_kind(), lease_ttl=1.0, start_timeout=1.5
        )
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BackendError):
                candidate.start()
            elapsed = time.monotonic() - started
            assert elapsed < 1.5 + 0.5, f"start() took {elapsed:.3f} s"
        finally:
            server.resume()
        assert not raftredis_threads()


def test_start_timeout_argument_is_honoured() -> None:
    """start(timeout=...) bounds the wait on a hung server too."""
    with RedisServer() as server:
        candidate = Candidate(redis=server.url, kind=unique_kind(), lease_ttl=1.0)
        server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(BackendError):
                candidate.start(timeout=0.5)
            assert time.monotonic() - started < 1.5
        finally:
            server.resume()


def test_stop_from_an_elected_receiver(cluster: Cluster) -> None:
    """stop() called inside a receiver (on the dispatch thread) works and leaves no thread."""
    candidate = cluster.new()
    stopped = threading.Event()
    errors: list[BaseException] = []

    def stop_on_elected(sender: Candidate, **extra: object) -> None:
        try:
            sender.stop(timeout=2.0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        stopped.set()

    candidate.on("elected", stop_on_elected)
    candidate.start()
    wait_until(stopped.is_set, timeout=3.0, message="stop() in the receiver did not return")
    assert not errors
    assert not candidate.is_running
    wait_until(lambda: not raftredis_threads(), timeout=3.0, message="threads left")


def test_stop_from_a_message_receiver(cluster: Cluster) -> None:
    """stop() called inside a message receiver (on the message thread) works."""
    leader = cluster.start()
    follower = cluster.start()
    stopped = threading.Event()
    follower.on("message", lambda sender, **extra: (sender.stop(timeout=2.0), stopped.set()))
    assert leader.message_all("please stop") == 1
    wait_until(stopped.is_set, timeout=3.0, message="stop() in the receiver did not return")
    assert not follower.is_running
    assert [i.id for i in leader.get_instances()] == [leader.id]


def test_stop_honours_its_timeout_when_a_receiver_blocks(cluster: Cluster) -> None:
    """A receiver blocked on the dispatch thread cannot make stop() outlast its timeout."""
    candidate = cluster.new()
    release = threading.Event()
    entered = threading.Event()

    def block(sender: Candidate, **extra: object) -> None:
        entered.set()
        release.wait(10)

    candidate.on("elected", block)
    candidate.start()
    try:
        wait_until(entered.is_set, timeout=3.0)
        started = time.monotonic()
        candidate.stop(timeout=0.5)
        elapsed = time.monotonic() - started
        assert elapsed < 1.2, f"stop(timeout=0.5) took {elapsed:.3f} s"
        assert not candidate.is_running
    finally:
        release.set()


def test_stop_of_a_follower_keeps_the_leader(cluster: Cluster) -> None:
    """Stopping a follower does not disturb the leader."""
    leader = cluster.start()
    follower = cluster.start()
    term = leader.current_term
    follower.stop()
    assert leader.is_leader
    assert leader.current_term == term


def test_password_protected_redis() -> None:
    """A password in the URL or the dict works; a wrong one fails with BackendError that
    does not leak the password."""
    # (RedisServer(extra_args=["--requirepass", ...]) never becomes ready: its probe does
    # not authenticate. Set the password once it runs instead.)
    with RedisServer() as server:
        admin = server.client()
        admin.config_set("requirepass", "s3cret-pw")
        admin.close()
        kind = unique_kind()
        good_url = f"redis://:s3cret-pw@{server.host}:{server.port}/0"
        with Cluster(good_url, kind) as c:
            assert c.start().is_leader
            follower = c.start(
                redis={"host": server.host, "port": server.port, "password": "s3cret-pw"}
            )
            assert follower.leader_id == c.candidates[0].id
        bad = Candidate(
            redis=f"redis://:wrong-pw@{server.host}:{server.port}/0", kind=kind, lease_ttl=1.0
        )
        with pytest.raises(BackendError) as info:
            bad.start()
        assert "wrong-pw" not in str(info.value)
        assert "wrong-pw" not in repr(bad)
        assert not raftredis_threads()


def test_duplicate_id_is_refused_at_start(cluster: Cluster) -> None:
    """start() refuses an id that a live instance of the kind already uses (two instances
    with one id would both think they hold the lease); the first is undisturbed and the
    id becomes usable again once that instance stops."""
    first = cluster.start(id="same-id")
    twin = cluster.new(id="same-id")
    with pytest.raises(ConfigurationError, match="same-id"):
        twin.start()
    assert not twin.is_running and not twin.is_leader
    assert first.is_leader
    assert [i.id for i in first.get_instances()] == ["same-id"]
    first.stop()
    again = cluster.start(id="same-id")
    assert again.is_leader


def test_start_rides_out_a_redis_that_is_too_slow_for_a_while() -> None:
    """Redis hung for 1 s (as under a fleet-wide start): the attempts that time out are
    retried until start()'s deadline, and the retry is not refused as a duplicate id."""
    with RedisServer() as server:
        candidate = Candidate(redis=server.url, kind=unique_kind(), lease_ttl=1.0, id="slow-1")
        server.pause()
        resume = threading.Timer(1.0, server.resume)
        resume.start()
        try:
            started = time.monotonic()
            candidate.start(timeout=8.0)
            elapsed = time.monotonic() - started
            assert candidate.is_running and candidate.is_leader
            assert 0.9 < elapsed < 6.0, f"start() took {elapsed:.2f} s"
            assert [i.id for i in candidate.get_instances()] == ["slow-1"]
        finally:
            resume.join()
            server.resume()
            candidate.stop()
        assert not raftredis_threads()


def test_a_retried_join_is_not_refused_as_a_duplicate_id(redis_client: Any) -> None:
    """The join script run twice with the same record (redis-py retries a call whose reply
    timed out) succeeds both times; another record under a live id is refused."""
    from raftredis.keys import KeySpace
    from raftredis.store import RedisStore

    keys = KeySpace("raftredis", unique_kind())
    store = RedisStore(redis_client, redis_client, keys, "dup-1")
    record = '{"meta":null,"joined":1764190000.123,"ttl":6.0}'
    first = store.heartbeat_full(record, 6000, "join")
    again = store.heartbeat_full(record, 6000, "join")
    assert first.added and not first.taken
    assert not again.added and not again.taken
    other = store.heartbeat_full('{"meta":null,"joined":1764190000.456,"ttl":6.0}', 6000, "join")
    assert other.taken


def test_a_fork_without_at_fork_hooks_does_not_lead(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child forked by C code that skips Python's at-fork hooks (uWSGI without
    py-call-osafterfork) still sees is_leader False: the pid is checked too."""
    import os

    leader = cluster.start()
    assert leader.is_leader and leader.leader_term is not None
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)
    assert not leader.is_leader
    assert leader.leader_term is None
    assert leader.state is State.FOLLOWER
    monkeypatch.setattr(os, "getpid", lambda: real_pid)
    assert leader.is_leader  # back in the parent


def test_an_acl_denial_fails_start_at_once_and_says_why(redis_url: str, redis_client: Any) -> None:
    """A user who may not SET (the acquire script's lease write) gets a BackendError from
    start() naming the denial, at once, not "no election result" after start_timeout."""
    kind = unique_kind()
    redis_client.execute_command(
        "ACL", "SETUSER", "no-set", "on", "nopass", "~*", "&*", "+@all", "-set"
    )
    host = redis_client.connection_pool.connection_kwargs["host"]
    port = redis_client.connection_pool.connection_kwargs["port"]
    candidate = Candidate(
        redis={"host": host, "port": port, "username": "no-set"}, kind=kind, lease_ttl=1.0
    )
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match="could not start") as info:
            candidate.start(timeout=6.0)
        assert time.monotonic() - started < 3.0
        assert "can't run this command" in str(info.value) or "NOPERM" in str(info.value)
        assert not candidate.is_running
    finally:
        redis_client.execute_command("ACL", "DELUSER", "no-set")
    assert not raftredis_threads()


def test_the_api_works_from_an_elected_receiver_while_start_waits(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick start's pattern, held inside start(): start() does not return until
    the elected receiver has run, so every call it makes happens while starting."""
    follower = cluster.start()
    follower.reelect()  # free the lease: the new candidate wins it during its start()
    candidate = cluster.new()
    done = threading.Event()
    seen: dict[str, Any] = {}

    def on_elected(sender: Candidate, term: int, **extra: Any) -> None:
        try:
            seen["running"] = sender.is_running
            seen["leader"] = sender.is_leader
            seen["leader_term"] = sender.leader_term
            seen["ids"] = [i.id for i in sender.get_instances()]
            seen["got_leader"] = sender.get_leader()
            seen["sent"] = sender.message_followers("hello from the leader")
            sender.set_meta({"elected": term})
            seen["batch"] = sender.batch().message_all("batched").send()
        except Exception as exc:  # reported below, by the test
            seen["error"] = exc
        finally:
            done.set()
            with sender._changed:  # let start() look again
                sender._changed.notify_all()

    candidate.on("elected", on_elected)
    original = Session.role_known
    monkeypatch.setattr(Session, "role_known", lambda self: done.is_set() and original(self))
    wait_until(lambda: not follower.is_leader and follower.leader_id is None, timeout=5)
    candidate.start()
    assert done.is_set()
    assert "error" not in seen, f"an API call failed during start(): {seen['error']!r}"
    assert seen["running"] and seen["leader"]
    assert seen["leader_term"] == candidate.current_term
    assert set(seen["ids"]) == {follower.id, candidate.id}
    assert seen["got_leader"].id == candidate.id
    assert seen["sent"] == 1 and seen["batch"] == [1]
    assert candidate.get_meta() == {"elected": candidate.current_term}


def test_a_failed_start_leaves_the_api_refusing_and_start_retryable() -> None:
    """Between a failed start() and the next, calls raise NotRunningError (not some
    half-built state), and the Candidate can be started once Redis is there."""
    port = free_port()
    candidate = Candidate(redis=f"redis://127.0.0.1:{port}/0", kind=unique_kind(), start_timeout=1)
    with pytest.raises(BackendError):
        candidate.start()
    assert not candidate.is_running
    with pytest.raises(NotRunningError, match="before start"):
        candidate.get_instances()
    with RedisServer(port=port):
        candidate.start()
        assert candidate.is_running and candidate.is_leader
        candidate.stop()
    assert not raftredis_threads()
