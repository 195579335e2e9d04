"""raftredis.Client: sending to a kind and reading it without joining it, on a real redis-server.

The kind must not notice the Client: no member, no term, no lease, no notice,
no key at all in an empty kind. Its messages arrive as messages from a
follower; signed ones are checked like a Candidate's; it survives fork().
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid
from typing import Any

import pytest
import redis
from helpers import Cluster, Recorder, free_port, wait_until

from raftredis import (
    BackendError,
    Candidate,
    Client,
    ConfigurationError,
    Message,
    MessageError,
    ProtocolError,
    Scope,
    State,
)
from raftredis.testing import RedisServer, agreed_leader

pytestmark = pytest.mark.integration

SECRET = "correct horse battery staple 42"
OTHER_SECRET = "another secret, another kind 42"

#: What a Client may send to Redis (lower case, as INFO commandstats names them),
#: and what the tests themselves send on their own connection. Nothing that writes.
CLIENT_COMMANDS = {
    "publish", "evalsha", "script", "script|load", "time", "multi", "exec",
    "get", "hget", "zscore", "zrange", "hgetall",
    "hello", "client", "client|setinfo",  # redis-py's connection handshake
}  # fmt: skip
TEST_COMMANDS = {"config", "config|resetstat", "info", "dbsize", "keys", "scan", "ping"}


def _messages(recorder: Recorder, candidate: Candidate, name: str = "message") -> list[Message]:
    return [
        e.kwargs["message"]
        for e in recorder.of(name, lambda e: e.sender is candidate)
        if isinstance(e.kwargs.get("message"), Message)
    ]


def _payloads(recorder: Recorder, candidate: Candidate) -> list[Any]:
    return [m.payload for m in _messages(recorder, candidate)]


def _kind_state(client: redis.Redis, kind: str) -> dict[str, Any]:
    """What the kind's keys say, leaving out what moves by itself (refresh times, lease expiry)."""
    base = f"raftredis:{{{kind}}}"
    lease = client.get(f"{base}:leader")
    return {
        "keys": sorted(client.keys(f"{base}:*")),
        "members": sorted(client.zrange(f"{base}:members", 0, -1)),
        "records": client.hgetall(f"{base}:meta"),
        "term": client.get(f"{base}:term"),
        "lease": None if lease is None else lease.rsplit(b" ", 1)[0],  # term and holder
    }


def _barrier(cluster: Cluster, recorder: Recorder, watchers: list[Candidate]) -> str:
    """Join and leave with one more Candidate, and wait until every watcher heard both.

    Notices reach each watcher in the order Redis published them, so once these
    two arrived, any joined or left notice published before them has arrived too.
    """
    probe = cluster.start()
    for watcher in watchers:
        recorder.wait_for(
            "instance_joined",
            lambda e, w=watcher: e.sender is w and e.kwargs["instance"].id == probe.id,
        )
    probe.stop()
    for watcher in watchers:
        recorder.wait_for(
            "instance_left",
            lambda e, w=watcher: e.sender is w and e.kwargs["instance_id"] == probe.id,
        )
    return probe.id


def _command_names(server: RedisServer) -> set[str]:
    with server.client() as admin:
        stats = admin.info("commandstats")
    return {name.removeprefix("cmdstat_") for name in stats}


# ------------------------------------------------------------------ sending


def test_each_send_reaches_its_receivers_and_returns_the_count(
    cluster: Cluster, redis_url: str
) -> None:
    """With 3 running Candidates: message_to 1, message_all 3, message_followers 3 (the
    leader drops it), message_leader 1, to the leader; each arrives as from a follower."""
    candidates = cluster.start_many(3)
    leader = wait_until(lambda: agreed_leader(candidates))
    followers = [c for c in candidates if c is not leader]
    recorder = Recorder()
    for candidate in candidates:
        recorder.connect(candidate, "message", "message_from_leader", "message_from_follower")
    with Client(redis=redis_url, kind=cluster.kind) as client:
        assert client.message_to(followers[0].id, "direct") == 1
        assert client.message_all("everyone") == 3
        assert client.message_followers("followers") == 3  # counts the leader, which drops it
        assert client.message_leader("leader") == 1
        assert client.message_to("no-such-instance", "lost") == 0
        sender_id = client.id

    wait_until(lambda: _payloads(recorder, followers[0]) == ["direct", "everyone", "followers"])
    wait_until(lambda: _payloads(recorder, followers[1]) == ["everyone", "followers"])
    wait_until(lambda: _payloads(recorder, leader) == ["everyone", "leader"])
    received = [m for c in candidates for m in _messages(recorder, c)]
    assert {(m.sender_id, m.from_leader, m.term) for m in received} == {(sender_id, False, 0)}
    assert {m.payload: m.scope for m in received} == {
        "direct": Scope.DIRECT,
        "everyone": Scope.ALL,
        "followers": Scope.FOLLOWERS,
        "leader": Scope.LEADER,
    }
    # Each one also as a message from a follower, never as one from the leader.
    wait_until(lambda: len(recorder.of("message_from_follower")) == len(received))
    assert recorder.of("message_from_leader") == []
    assert re.fullmatch(r"client-[0-9a-f]{12}", sender_id)


def test_message_leader_follows_the_lease(cluster: Cluster, redis_url: str) -> None:
    """message_leader reaches whoever holds the lease when it is sent, and 0 without one."""
    client = Client(redis=redis_url, kind=cluster.kind)
    try:
        assert client.message_leader("nobody") == 0
        first = cluster.start()
        second = cluster.start()
        recorder = Recorder().connect(first, "message").connect(second, "message")
        assert wait_until(lambda: agreed_leader([first, second])) is first
        assert client.message_leader("to the first") == 1
        first.stop()
        wait_until(lambda: agreed_leader([second]))
        assert client.message_leader("to the second") == 1
        wait_until(lambda: _payloads(recorder, second) == ["to the second"])
        assert _payloads(recorder, first) == ["to the first"]
    finally:
        client.close()


def test_batch_sends_in_order_with_counts(cluster: Cluster, redis_url: str) -> None:
    worker = cluster.start()
    recorder = Recorder().connect(worker, "message")
    with Client(redis=redis_url, kind=cluster.kind) as client:
        batch = client.batch()
        for n in range(5):
            batch.message_to(worker.id, n)
        batch.message_all("all").message_leader("leader").message_followers("dropped")
        assert batch.send() == [1, 1, 1, 1, 1, 1, 1, 1]
        with client.batch() as second:
            second.message_to(worker.id, "last")
        assert second.counts == [1]
    wait_until(lambda: _payloads(recorder, worker) == [0, 1, 2, 3, 4, "all", "leader", "last"])


def test_threads_share_one_client(cluster: Cluster, redis_url: str) -> None:
    """Many threads send at once through one Client: every message arrives, counted once."""
    worker = cluster.start()
    recorder = Recorder().connect(worker, "message")
    counts: list[int] = []
    errors: list[BaseException] = []

    with Client(redis=redis_url, kind=cluster.kind) as client:

        def send(thread: int) -> None:
            try:
                for n in range(25):
                    counts.append(client.message_to(worker.id, [thread, n]))
                    if n % 10 == 0:
                        client.get_instances()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert counts == [1] * 200
    wait_until(lambda: len(_payloads(recorder, worker)) == 200)
    got = _payloads(recorder, worker)
    for t in range(8):  # one thread's messages arrive in its order
        assert [n for thread, n in got if thread == t] == list(range(25))


# ------------------------------------------------------- the kind sees nothing


def test_the_kind_sees_no_join(cluster: Cluster, redis_url: str, redis_client: redis.Redis) -> None:
    """After the Client has sent and read, the kind's keys say what they said before, and
    no running Candidate got instance_joined or instance_left for it."""
    candidates = cluster.start_many(2, meta={"role": "worker"})
    wait_until(lambda: agreed_leader(candidates))
    recorder = Recorder()
    for candidate in candidates:
        recorder.connect(candidate, "instance_joined", "instance_left", "message")
    before = _kind_state(redis_client, cluster.kind)

    client = Client(redis=redis_url, kind=cluster.kind)
    try:
        assert client.message_all("hello") == 2
        assert client.message_followers("hello") == 2
        assert client.message_leader("hello") == 1
        assert client.message_to(candidates[1].id, "hello") == 1
        assert len(client.get_instances()) == 2
        assert client.get_leader() is not None
        client_id = client.id
    finally:
        client.close()
    # 2 + 1 (the leader drops the followers' message) + 1 + 1
    wait_until(lambda: sum(len(_payloads(recorder, c)) for c in candidates) == 5)

    assert _kind_state(redis_client, cluster.kind) == before
    probe = _barrier(cluster, recorder, candidates)
    assert {e.kwargs["instance"].id for e in recorder.of("instance_joined")} == {probe}
    assert {e.kwargs["instance_id"] for e in recorder.of("instance_left")} == {probe}
    assert client_id not in {i.id for i in candidates[0].get_instances()}


def test_an_empty_kind_stays_keyless(redis_url: str) -> None:
    """In a kind nobody runs, every call answers (0, [], None) and no key appears, signed
    or not; the only commands the server saw are reads, TIME and publishes."""
    with RedisServer() as server:
        with server.client() as admin:
            admin.config_resetstat()
        for secret in (None, SECRET):
            with Client(redis=server.url, kind="nobody-here", secret=secret) as client:
                assert client.message_to("anyone", 1) == 0
                assert client.message_all(2) == 0
                assert client.message_followers(3) == 0
                assert client.message_leader(4) == 0
                assert client.batch().message_all(5).message_leader(6).send() == [0, 0]
                assert client.get_instances() == []
                assert client.get_leader() is None
        with server.client() as admin:
            assert admin.dbsize() == 0
            assert admin.keys("*") == []
        seen = _command_names(server)
        assert "publish" in seen and "evalsha" in seen and "time" in seen
        assert seen <= CLIENT_COMMANDS | TEST_COMMANDS, seen - CLIENT_COMMANDS - TEST_COMMANDS


# -------------------------------------------------------------------- reading


def test_get_instances_and_get_leader_match_the_candidates(
    cluster: Cluster, redis_url: str
) -> None:
    candidates = [cluster.start(meta={"n": n}) for n in range(3)]
    leader = wait_until(lambda: agreed_leader(candidates))
    client = Client(redis=redis_url, kind=cluster.kind)
    try:

        def view(instances: list[Any]) -> list[tuple[Any, ...]]:
            return [(i.id, i.meta, i.state, i.joined_at) for i in instances]

        ours = client.get_instances()
        assert view(ours) == view(leader.get_instances()) == view(candidates[1].get_instances())
        assert [i.id for i in ours] == [c.id for c in candidates]  # order of joining
        assert {i.id: i.state for i in ours} == {
            c.id: State.LEADER if c is leader else State.FOLLOWER for c in candidates
        }
        for instance in ours:  # refreshed within the last member_expiry, by the server's clock
            assert instance.joined_at <= instance.last_seen + 0.1
            assert time.time() - instance.last_seen < 2 * leader.timings.member_expiry

        found = client.get_leader()
        expected = candidates[1].get_leader()
        assert found is not None and expected is not None
        assert (found.id, found.meta, found.state, found.joined_at) == (
            expected.id,
            expected.meta,
            State.LEADER,
            expected.joined_at,
        )
        assert found.id == leader.id and found.is_leader

        leader.stop()
        others = [c for c in candidates if c is not leader]
        successor = wait_until(lambda: agreed_leader(others))
        after = wait_until(lambda: client.get_leader())
        assert after.id == successor.id and after.meta == successor.meta
        wait_until(lambda: [i.id for i in client.get_instances()] == [c.id for c in others])
    finally:
        client.close()
    empty = Client(redis=redis_url, kind=f"{cluster.kind}-empty")
    assert (empty.get_instances(), empty.get_leader()) == ([], None)
    empty.close()


# -------------------------------------------------------------------- signing


def test_signed_kind_accepts_the_secret_and_drops_the_rest(
    cluster: Cluster, redis_url: str, redis_client: redis.Redis
) -> None:
    """A Client with the kind's secret is heard; one with another secret, or none, is
    dropped (and reported as ProtocolError); a signature is stamped by the server's clock."""
    leader = cluster.start(secret=SECRET)
    follower = cluster.start(secret=SECRET)
    wait_until(lambda: agreed_leader([leader, follower]))
    recorder = Recorder().connect(follower, "message", "error").connect(leader, "message")
    good = Client(redis=redis_url, kind=cluster.kind, secret=SECRET)
    rotated = Client(redis=redis_url, kind=cluster.kind, secret=[SECRET, OTHER_SECRET])
    wrong = Client(redis=redis_url, kind=cluster.kind, secret=OTHER_SECRET)
    unsigned = Client(redis=redis_url, kind=cluster.kind)
    try:
        assert good.message_all("signed") == 2
        assert good.message_leader("signed to the leader") == 1
        assert rotated.message_to(follower.id, "rotated") == 1
        # Published (and so counted), but dropped on receipt.
        assert wrong.message_to(follower.id, "wrong secret") == 1
        assert unsigned.message_to(follower.id, "unsigned") == 1
        assert good.message_to(follower.id, "last") == 1  # arrives after the dropped two
        wait_until(lambda: "last" in _payloads(recorder, follower))
        assert _payloads(recorder, follower) == ["signed", "rotated", "last"]
        wait_until(lambda: _payloads(recorder, leader) == ["signed", "signed to the leader"])
        reasons = [e.kwargs["error"] for e in recorder.of("error")]
        assert all(isinstance(e, ProtocolError) for e in reasons), reasons
        assert len(reasons) == 2
        assert "bad signature" in reasons[0].reason
        assert "not signed" in reasons[1].reason

        # The stamp is the Redis server's clock (measured with TIME), not the local one.
        pubsub = redis_client.pubsub()
        pubsub.subscribe(f"raftredis:{{{cluster.kind}}}:to:{follower.id}")
        try:
            wait_until(lambda: pubsub.get_message(timeout=0.1))  # the subscribe reply
            assert good.message_to(follower.id, "stamped") == 2  # the follower and us
            raw = wait_until(lambda: pubsub.get_message(timeout=0.1))["data"]
        finally:
            pubsub.close()
        seconds, micros = redis_client.time()
        stamp = json.loads(raw)["st"]
        assert abs(seconds * 1000 + micros // 1000 - stamp) < 1000
    finally:
        for client in (good, rotated, wrong, unsigned):
            client.close()


# ------------------------------------------------------------------ lifecycle


def test_close_releases_the_connections_and_the_next_call_reconnects(
    cluster: Cluster, redis_url: str, redis_client: redis.Redis
) -> None:
    worker = cluster.start()

    def connected() -> int:
        return int(redis_client.info("clients")["connected_clients"])

    idle = connected()
    client = Client(redis=redis_url, kind=cluster.kind)
    assert repr(client) == (
        f"<Client {cluster.kind}/{client.id} prefix='raftredis' redis={redis_url}>"
    )
    assert connected() == idle  # the constructor opened nothing
    assert client.message_to(worker.id, 1) == 1
    assert client.get_leader() is not None
    assert connected() == idle + 2  # one to publish, one to read
    client.close()
    client.close()  # idempotent
    wait_until(lambda: connected() == idle)
    assert client.message_to(worker.id, 2) == 1  # usable again: it reconnects
    with client as same:
        assert same is client
        assert same.get_instances()[0].id == worker.id
    wait_until(lambda: connected() == idle)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_the_child_connects_anew_and_the_parent_keeps_its_connections(
    cluster: Cluster, redis_url: str, redis_client: redis.Redis
) -> None:
    """A Client used before fork() works in the child, under an id of its own and on
    connections of its own; the parent's connections are neither used nor closed."""
    worker = cluster.start()
    recorder = Recorder().connect(worker, "message")
    used = Client(redis=redis_url, kind=cluster.kind)
    unused = Client(redis=redis_url, kind=cluster.kind)  # created at import, say
    pinned = Client(redis=redis_url, kind=cluster.kind, id="web-client")
    assert used.message_to(worker.id, "parent before") == 1
    assert [i.id for i in used.get_instances()] == [worker.id]

    def opened() -> int:
        return int(redis_client.info("stats")["total_connections_received"])

    before_fork = opened()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe and the exit code only
        code = 0
        try:
            os.close(read_fd)
            for n, check in enumerate(
                (
                    lambda: used.message_to(worker.id, "child used") == 1,
                    lambda: unused.message_all("child unused") == 1,
                    lambda: pinned.message_leader("child pinned") == 1,
                    lambda: [i.id for i in used.get_instances()] == [worker.id],
                    lambda: used.get_leader() is not None,
                ),
                start=10,
            ):
                if not check():
                    code = n
                    break
            os.write(write_fd, json.dumps([used.id, unused.id, pinned.id]).encode() + b"\n")
            used.close()  # closes the child's connections only
        except BaseException:
            code = 99
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        line = reader.readline()
    deadline = time.monotonic() + 20.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the child did not exit")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, os.WEXITSTATUS(status)
    child_used, child_unused, child_pinned = json.loads(line)
    # Random ids are drawn again in the child; a given id is kept.
    assert child_used != used.id and child_unused != unused.id
    assert child_pinned == pinned.id == "web-client"
    wait_until(lambda: len(_payloads(recorder, worker)) == 4)
    senders = {m.payload: m.sender_id for m in _messages(recorder, worker)}
    assert senders == {
        "parent before": used.id,
        "child used": child_used,
        "child unused": child_unused,
        "child pinned": "web-client",
    }

    after_child = opened()
    assert after_child > before_fork  # the child opened connections of its own
    # The parent's connections survived the child (and its close()): no reconnect.
    assert used.message_to(worker.id, "parent after") == 1
    assert [i.id for i in used.get_instances()] == [worker.id]
    assert opened() == after_child
    wait_until(lambda: _payloads(recorder, worker)[-1] == "parent after")
    for client in (used, unused, pinned):
        client.close()


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"kind": ""}, "kind must be a non-empty string"),
        ({"kind": "a b"}, "kind='a b' is not allowed"),
        ({"kind": "k", "key_prefix": "x:y"}, "key_prefix='x:y' is not allowed"),
        ({"kind": "k", "id": "not an id"}, "id='not an id' is not allowed"),
        ({"kind": "k", "max_message_bytes": 100}, "use at least 1024"),
        ({"kind": "k", "max_message_bytes": "big"}, "max_message_bytes must be an int"),
        ({"kind": "k", "secret": "short"}, "at least 16 bytes"),
        ({"kind": "k", "secret": []}, "must not be an empty list"),
        ({"kind": "k", "replay_window": -1}, "replay_window must be a positive number"),
        ({"kind": "k", "socket_timeout": 0}, "socket_timeout must be"),
        ({"kind": "k", "socket_timeout": float("inf")}, "socket_timeout must be"),
        ({"kind": "k", "socket_timeout": 600}, "at most 60"),
        ({"kind": "k", "socket_timeout": True}, "socket_timeout must be"),
        ({"kind": "k", "redis": "http://localhost"}, "redis URL must start with"),
        ({"kind": "k", "redis": 42}, "redis= must be"),
        ({"kind": "k", "redis": {"hots": "localhost"}}, "unknown key(s) hots"),
    ],
)
def test_bad_settings_raise_configuration_error(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Client(**kwargs)
    assert words in str(caught.value)


def test_bad_messages_raise_message_error_and_send_nothing(
    redis_url: str, redis_client: redis.Redis
) -> None:
    with pytest.raises(TypeError):
        Client(kind="k", lease_ttl=1.0)  # type: ignore[call-arg]
    opened = int(redis_client.info("stats")["total_connections_received"])
    client = Client(redis=redis_url, kind="k", max_message_bytes=1024)
    try:
        for instance_id in (None, "", 42):
            with pytest.raises(MessageError, match="message_to needs an instance id"):
                client.message_to(instance_id, "x")  # type: ignore[arg-type]
        with pytest.raises(MessageError, match="JSON-serialisable"):
            client.message_all(float("nan"))
        with pytest.raises(MessageError, match="JSON-serialisable"):
            client.message_leader({1, 2})
        with pytest.raises(MessageError, match="over max_message_bytes=1024"):
            client.message_followers("x" * 2000)
        batch = client.batch()
        with pytest.raises(MessageError):
            batch.message_all(object())
        assert len(batch) == 0
        # Refused before anything was sent: no connection was even opened.
        assert int(redis_client.info("stats")["total_connections_received"]) == opened
    finally:
        client.close()


def test_redis_down_or_hung_raises_backend_error_quickly() -> None:
    """Refused: BackendError at once. Paused (SIGSTOP): BackendError within a few socket
    timeouts, never a hang. The constructor itself never touches the network."""
    nowhere = Client(redis=f"redis://127.0.0.1:{free_port()}/0", kind="k", secret=SECRET)
    for call in (
        lambda: nowhere.message_all(1),
        lambda: nowhere.get_instances(),
        lambda: nowhere.get_leader(),
        lambda: nowhere.batch().message_all(1),  # signing needs the server's clock
    ):
        started = time.monotonic()
        with pytest.raises(BackendError) as caught:
            call()
        assert time.monotonic() - started < 1.0
        assert isinstance(caught.value.__cause__, (redis.ConnectionError, OSError))
    nowhere.close()

    with RedisServer() as server:
        client = Client(redis=server.url, kind="k", socket_timeout=0.2)
        try:
            assert client.message_all(1) == 0
            server.pause()
            try:
                for call in (
                    lambda: client.message_all(2),
                    lambda: client.message_leader(3),
                    lambda: client.get_instances(),
                    lambda: client.get_leader(),
                ):
                    started = time.monotonic()
                    with pytest.raises(BackendError):
                        call()
                    assert time.monotonic() - started < 2.0
            finally:
                server.resume()
            # Once Redis answers again, so does the Client.
            assert wait_until(lambda: _answers(client)) is True
        finally:
            client.close()


def _answers(client: Client) -> bool:
    try:
        return client.message_all(uuid.uuid4().hex) == 0
    except BackendError:
        return False


def test_every_redis_form_works(cluster: Cluster, redis_server: RedisServer) -> None:
    """A URL, a dict and a redis.Redis reach the same kind."""
    worker = cluster.start()
    recorder = Recorder().connect(worker, "message")
    given = redis_server.client()
    forms: list[Any] = [
        redis_server.url,
        {"host": redis_server.host, "port": redis_server.port},
        given,
    ]
    try:
        for n, form in enumerate(forms):
            with Client(redis=form, kind=cluster.kind) as client:
                assert client.message_to(worker.id, n) == 1
                assert [i.id for i in client.get_instances()] == [worker.id]
    finally:
        given.close()
    wait_until(lambda: _payloads(recorder, worker) == [0, 1, 2])
