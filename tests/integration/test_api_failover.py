"""Failures: a leader killed with SIGKILL, Redis killed and restarted empty, os.fork()."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Cluster, Recorder, wait_until
from support.processes import leader_subprocess

from raftredis import BackendError, LeaderTimeoutError, NotRunningError, State
from raftredis.testing import RedisServer

# ------------------------------------------------------------ crash failover


@pytest.fixture
def leader_process(
    cluster: Cluster, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    """A leader Candidate (lease_ttl=1.0) in a separate process: (process, id, term).
    Without fast failover, unless the test is parametrized with ``fast``."""
    fast = bool(getattr(request, "param", False))
    with leader_subprocess(
        cluster.redis, cluster.kind, lease_ttl=1.0, meta={"pid": "child"}, fast_failover=fast
    ) as leading:
        yield leading


def test_killed_leader_is_replaced_when_its_lease_expires(
    cluster: Cluster, leader_process: tuple[subprocess.Popen[str], str, int]
) -> None:
    """A leader killed with SIGKILL is replaced about when its lease (1 s) expires, with a
    higher term; it is pruned from the members later and instance_left is sent."""
    proc, dead_id, dead_term = leader_process
    recorder = Recorder()
    follower = cluster.new(fast_failover=False)
    recorder.connect(follower, "elected", "instance_left")
    follower.start()
    assert follower.leader_id == dead_id
    assert not follower.is_leader
    assert {i.id for i in follower.get_instances()} == {dead_id, follower.id}
    # Let the child renew at least once so that the kill happens mid-lease.
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    killed_at = time.monotonic()
    wait_until(lambda: follower.is_leader, timeout=5.0)
    elapsed = time.monotonic() - killed_at
    assert 0.3 <= elapsed <= 2.5, f"took over {elapsed:.3f} s after the kill"
    assert follower.current_term > dead_term
    assert recorder.wait_for("elected").kwargs["term"] == follower.current_term
    # The dead member is pruned after member_expiry (2 x lease_ttl) and announced.
    wait_until(lambda: [i.id for i in follower.get_instances()] == [follower.id], timeout=5.0)
    left = recorder.wait_for("instance_left", timeout=5.0)
    assert left.kwargs["instance_id"] == dead_id


def test_killed_leader_among_several_followers(
    cluster: Cluster, leader_process: tuple[subprocess.Popen[str], str, int]
) -> None:
    """With 3 followers, exactly one replaces the killed leader and all agree on it."""
    proc, dead_id, dead_term = leader_process
    followers = cluster.start_many(3, fast_failover=False)
    assert all(f.leader_id == dead_id for f in followers)
    proc.kill()
    proc.wait(5)
    new = wait_until(lambda: next((f for f in followers if f.is_leader), None), timeout=5.0)
    wait_until(lambda: all(f.leader_id == new.id for f in followers), timeout=3.0)
    assert sum(f.is_leader for f in followers) == 1
    assert new.current_term > dead_term


@pytest.mark.parametrize("leader_process", [True], indirect=True, ids=["fast"])
def test_a_killed_leader_is_taken_over_before_its_lease_runs_out(
    cluster: Cluster, leader_process: tuple[subprocess.Popen[str], str, int], redis_client: Any
) -> None:
    """Fast failover: the kernel closes the dead leader's presence connection, the
    followers see it gone and take the lease once the window is over: well before the
    lease would have run out. All agree on the new leader."""
    proc, dead_id, dead_term = leader_process
    followers = cluster.start_many(2)
    assert all(f.fast_failover and f.leader_id == dead_id for f in followers)
    lease_key = f"raftredis:{{{cluster.kind}}}:leader"
    time.sleep(0.3)  # let the leader renew, so that its lease has most of a ttl left
    left = redis_client.pttl(lease_key) / 1000.0
    proc.kill()
    killed_at = time.monotonic()
    proc.wait(5)
    new = wait_until(lambda: next((f for f in followers if f.is_leader), None), timeout=5.0)
    elapsed = time.monotonic() - killed_at
    assert elapsed < left, f"taken {elapsed:.3f} s after the kill, the lease had {left:.3f} s"
    wait_until(lambda: all(f.leader_id == new.id for f in followers), timeout=3.0)
    assert sum(f.is_leader for f in followers) == 1
    assert new.current_term > dead_term


# ------------------------------------------------------ Redis down and back


def test_redis_killed_then_restarted_empty(own_server: RedisServer) -> None:
    """Redis dies: the leader demotes itself before its lease could expire and nobody leads;
    Redis comes back empty: a leader again, with a term above every earlier one."""
    ttl = 1.0
    with Cluster(own_server.url, lease_ttl=ttl) as c:
        a, b = c.start_many(2)
        recorders = {x.id: Recorder().connect(x, "defeated", "error", "message") for x in (a, b)}
        old_term = a.current_term
        assert a.is_leader and b.leader_id == a.id

        own_server.kill()
        killed_at = time.monotonic()
        wait_until(lambda: not a.is_leader, timeout=3.0)
        elapsed = time.monotonic() - killed_at
        assert elapsed < ttl, f"leader still claimed the lease {elapsed:.3f} s after Redis died"
        assert elapsed <= a.timings.renew_deadline + 0.2
        assert not b.is_leader
        recorders[a.id].wait_for("defeated")
        assert a.state is not State.LEADER

        # Nobody leads while Redis is down, and both come to know there is no leader.
        wait_until(lambda: a.leader_id is None and b.leader_id is None, timeout=3.0)
        assert not a.is_leader and not b.is_leader
        with pytest.raises(LeaderTimeoutError):
            b.wait_for_leader(timeout=0.2)
        # User calls fail with BackendError, never hang.
        for call in (a.get_instances, b.get_leader, lambda: a.message_all("x")):
            started = time.monotonic()
            with pytest.raises(BackendError) as info:
                call()
            assert info.value.__cause__ is not None
            assert time.monotonic() - started < 1.0
        # The outage was reported on error_occurred, as BackendError.
        wait_until(
            lambda: any(
                isinstance(e.kwargs["error"], BackendError)
                for r in recorders.values()
                for e in r.of("error")
            ),
            timeout=3.0,
        )

        own_server.restart()
        restarted_at = time.monotonic()
        leader = c.wait_for_leader(timeout=5.0)
        assert time.monotonic() - restarted_at < 5.0
        assert leader.current_term > old_term
        other = b if leader is a else a
        wait_until(lambda: other.leader_id == leader.id, timeout=5.0)
        assert not other.is_leader
        # Membership is rebuilt (the data was lost) ...
        wait_until(lambda: {i.id for i in leader.get_instances()} == {a.id, b.id}, timeout=5.0)
        # ... and messaging works again once the listeners have re-subscribed.
        wait_until(lambda: leader.message_all("after restart") == 1, timeout=5.0)
        recorders[other.id].wait_for(
            "message", lambda e: e.kwargs["message"].payload == "after restart"
        )


def test_wait_for_leader_raises_not_running_when_stopped(own_server: RedisServer) -> None:
    """wait_for_leader blocked with no leader raises NotRunningError when stop() is called."""
    with Cluster(own_server.url) as c:
        a = c.start()
        own_server.kill()
        wait_until(lambda: a.leader_id is None, timeout=3.0)
        outcome: list[BaseException | str] = []

        def wait() -> None:
            try:
                outcome.append(a.wait_for_leader(timeout=10.0))
            except BaseException as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        with contextlib.suppress(Exception):
            a.stop(timeout=2.0)
        waiter.join(5.0)
        assert not waiter.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], NotRunningError)


def test_paused_redis_demotes_the_leader_in_time(own_server: RedisServer) -> None:
    """A hung (SIGSTOP) Redis: the leader stops calling itself leader before the lease ends;
    after SIGCONT the same lease is renewed or a new leader elected."""
    ttl = 1.0
    with Cluster(own_server.url, lease_ttl=ttl) as c:
        a, b = c.start_many(2)
        term = a.current_term
        own_server.pause()
        paused_at = time.monotonic()
        try:
            wait_until(lambda: not a.is_leader, timeout=3.0)
            elapsed = time.monotonic() - paused_at
            assert elapsed < ttl, f"still leader {elapsed:.3f} s into the pause"
            assert not b.is_leader
        finally:
            own_server.resume()
        leader = c.wait_for_leader(timeout=5.0)
        assert leader.current_term >= term
        wait_until(lambda: (b if leader is a else a).leader_id == leader.id, timeout=5.0)


# ------------------------------------------------------------------ fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_is_not_leader_and_says_why(cluster: Cluster) -> None:
    """In a forked child the Candidate is stopped: not leader, calls raise NotRunningError
    mentioning fork; a new Candidate works there; the parent stays leader."""
    parent = cluster.start()
    follower_in_parent = cluster.start()
    assert parent.is_leader
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 0
        try:
            checks = [
                lambda: parent.is_leader is False,
                lambda: parent.state is State.FOLLOWER,
                lambda: parent.is_running is False,
                lambda: parent.leader_id is None,
            ]
            for n, check in enumerate(checks, start=10):
                if not check():
                    code = n
                    break
            if code == 0:
                for n, call in enumerate(
                    (
                        lambda: parent.message_all("from the child"),
                        lambda: parent.get_instances(),
                        lambda: parent.start(),
                        lambda: parent.reelect(),
                    ),
                    start=20,
                ):
                    try:
                        call()
                        code = n
                        break
                    except NotRunningError as exc:
                        if "fork" not in str(exc):
                            code = n + 10
                            break
            if code == 0:
                parent.stop()  # must not touch the parent's membership or lease
                fresh = cluster.new()
                fresh.start()
                if fresh.is_leader or fresh.leader_id != parent.id:
                    code = 40
                fresh.stop()
        except BaseException:
            code = 99
        finally:
            os._exit(code)
    # The parent.
    deadline = time.monotonic() + 20.0
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError("the child did not exit")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (
        f"child failed check {os.WEXITSTATUS(status)}"
    )
    assert parent.is_leader
    assert follower_in_parent.leader_id == parent.id
    ids = [i.id for i in parent.get_instances()]
    assert ids == [parent.id, follower_in_parent.id]
    # The parent keeps renewing: still leader after more than a lease_ttl.
    start_term = parent.current_term
    renewed_until = time.monotonic() + 1.2 * parent.timings.lease_ttl
    while time.monotonic() < renewed_until:
        assert parent.is_leader
        time.sleep(0.01)
    assert parent.current_term == start_term


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_never_started_candidate_can_start_in_a_forked_child(cluster: Cluster) -> None:
    """A Candidate created but not started before fork() (gunicorn --preload) can be started
    in the child, with an id of its own (children must not share the parent's random id)."""
    watcher = cluster.new()
    recorder = Recorder().connect(watcher, "instance_joined")
    watcher.start()
    shared = cluster.new()  # created, never started, in the parent
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            shared.start()
            if shared.leader_id != watcher.id:
                code = 10
            os.write(write_fd, shared.id.encode() + b"\n")
            shared.stop()
        except BaseException:
            code = 99
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        child_id = reader.readline().strip().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, os.WEXITSTATUS(status)
    assert child_id, "the child did not start the Candidate"
    assert child_id != shared.id, "the child reused the parent's random id"
    joined = recorder.wait_for("instance_joined", lambda e: e.kwargs["instance"].id == child_id)
    assert joined.kwargs["instance"].id == child_id
    shared.start()  # the parent's copy still works, under its own id
    assert shared.leader_id == watcher.id
    assert {i.id for i in watcher.get_instances()} == {watcher.id, shared.id}
