"""Requests and answers (``ask``, ``ask_leader``, ``on_request``) on a real redis-server.

The answer comes back, or the handler's exception as RemoteError, or
AskTimeoutError; what cannot be asked is refused at once; a request to the
leader outlives the leader that took it; answers of a signed kind are signed.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from helpers import Cluster, Recorder, wait_until

import raftredis.reliable
from raftredis import (
    AskTimeoutError,
    Candidate,
    Client,
    Message,
    NoLeaderError,
    ProtocolError,
    ReceiverError,
    RemoteError,
    Scope,
    UndeliverableError,
)
from raftredis.asking import MAX_ASK_TIMEOUT
from raftredis.keys import KeySpace

pytestmark = pytest.mark.integration

SECRET = "correct horse battery staple 42"

Pair = tuple[Candidate, Candidate]


class Handler:
    """A request handler that answers who it is and what it got; it holds on the payload
    "slow" until released, and raises on a payload {"raise": message}."""

    def __init__(self) -> None:
        self.requests: list[Message] = []
        self.entered = threading.Event()
        self.released = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, candidate: Candidate, message: Message, **kwargs: Any) -> Any:
        with self._lock:
            self.requests.append(message)
        if message.payload == "slow":
            self.entered.set()
            assert self.released.wait(10.0)
        if isinstance(message.payload, dict) and "raise" in message.payload:
            raise KeyError(message.payload["raise"])
        return {"by": candidate.id, "echo": message.payload}

    def payloads(self) -> list[Any]:
        with self._lock:
            return [m.payload for m in self.requests]


@pytest.fixture
def pair(cluster: Cluster) -> Pair:
    """A reliable leader and a reliable follower, each answering with a Handler."""
    leader, follower = cluster.start_many(2, reliable=True)
    assert leader.is_leader
    for c in (leader, follower):
        c.on_request(Handler())
    return leader, follower


def handler_of(candidate: Candidate) -> Handler:
    handler = candidate._request_handler
    assert isinstance(handler, Handler)
    return handler


@pytest.fixture
def client(cluster: Cluster, redis_url: str) -> Iterator[Client]:
    c = Client(redis=redis_url, kind=cluster.kind)
    try:
        yield c
    finally:
        c.close()


class Asking:
    """One ask on a thread of its own: its answer or exception when it ends."""

    def __init__(self, ask: Callable[[], Any]) -> None:
        self.answer: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(ask,), daemon=True)
        self._thread.start()

    def _run(self, ask: Callable[[], Any]) -> None:
        try:
            self.answer = ask()
        except BaseException as exc:
            self.error = exc

    def result(self, timeout: float = 10.0) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the ask did not end"
        if self.error is not None:
            raise self.error
        return self.answer


# ----------------------------------------------------------------- answers


def test_ask_returns_the_answer_of_the_handler(pair: Pair) -> None:
    leader, follower = pair
    assert leader.ask(follower.id, {"q": 1}) == {"by": follower.id, "echo": {"q": 1}}
    assert follower.ask_leader([1, 2], timeout=5) == {"by": leader.id, "echo": [1, 2]}
    (request,) = handler_of(follower).requests
    assert (request.sender_id, request.scope, request.reliable) == (leader.id, Scope.DIRECT, True)
    assert request.from_leader is True
    (request,) = handler_of(leader).requests
    assert (request.sender_id, request.scope, request.from_leader) == (
        follower.id,
        Scope.LEADER,
        False,
    )


def test_an_instance_does_not_ask_itself(pair: Pair) -> None:
    """Nobody receives their own message: a request to itself, or to the leader from the
    leader, is refused before it is sent."""
    leader, _ = pair
    with pytest.raises(UndeliverableError, match="itself"):
        leader.ask_leader("me")
    with pytest.raises(UndeliverableError, match="itself"):
        leader.ask(leader.id, "myself")
    assert handler_of(leader).requests == []


def test_concurrent_asks_get_their_own_answers(pair: Pair) -> None:
    leader, follower = pair
    results: dict[int, Any] = {}

    def ask(n: int) -> None:
        results[n] = follower.ask(leader.id, n, timeout=5)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10.0)
    assert results == {n: {"by": leader.id, "echo": n} for n in range(20)}


def test_a_client_asks_an_instance_and_the_leader(pair: Pair, client: Client) -> None:
    leader, follower = pair
    assert client.ask(follower.id, "hi") == {"by": follower.id, "echo": "hi"}
    assert client.ask_leader("boss") == {"by": leader.id, "echo": "boss"}
    assert handler_of(leader).requests[0].sender_id == client.id


# ------------------------------------------------------------------ errors


def test_an_exception_of_the_handler_reaches_the_asker(pair: Pair, client: Client) -> None:
    leader, follower = pair
    for asker in (leader, client):
        with pytest.raises(RemoteError, match="no such thing") as caught:
            asker.ask(follower.id, {"raise": "no such thing"})
        assert caught.value.instance_id == follower.id
        assert caught.value.remote_type == "KeyError"


def test_no_request_handler_reaches_the_asker(cluster: Cluster) -> None:
    leader = cluster.start(reliable=True)
    silent = cluster.start(reliable=True)
    with pytest.raises(RemoteError, match="no request handler") as caught:
        leader.ask(silent.id, "anyone?")
    assert (caught.value.instance_id, caught.value.remote_type) == (silent.id, "NoRequestHandler")


def test_an_answer_that_is_not_json_is_a_remote_error(cluster: Cluster) -> None:
    leader = cluster.start(reliable=True)
    odd = cluster.start(reliable=True)
    odd.on_request(lambda candidate, message, **kwargs: object())
    recorder = Recorder().connect(odd, "error")
    with pytest.raises(RemoteError) as caught:
        leader.ask(odd.id, "x")
    assert caught.value.instance_id == odd.id
    assert isinstance(recorder.wait_for("error").kwargs["error"], ReceiverError)


def test_a_slow_handler_times_the_asker_out(pair: Pair) -> None:
    leader, follower = pair
    started = time.monotonic()
    with pytest.raises(AskTimeoutError) as caught:
        leader.ask(follower.id, "slow", timeout=0.3)
    took = time.monotonic() - started
    assert 0.3 <= took < 2.0, took
    assert isinstance(caught.value, TimeoutError)
    handler_of(follower).released.set()
    # The late answer goes to the request's own list: the next ask gets its own.
    assert leader.ask(follower.id, "after") == {"by": follower.id, "echo": "after"}


@pytest.mark.parametrize(
    "timeout", [0, -1.0, MAX_ASK_TIMEOUT + 1, float("nan"), float("inf"), True, "1", None]
)
def test_a_bad_timeout_is_refused_before_anything_is_sent(
    pair: Pair, client: Client, redis_client: redis.Redis, timeout: Any
) -> None:
    leader, follower = pair
    for ask in (
        lambda: leader.ask(follower.id, "x", timeout=timeout),
        lambda: leader.ask_leader("x", timeout=timeout),
        lambda: client.ask(follower.id, "x", timeout=timeout),
    ):
        with pytest.raises(ValueError, match="timeout"):
            ask()
    assert handler_of(follower).requests == [] and handler_of(leader).requests == []
    assert redis_client.xlen(KeySpace("raftredis", leader.kind).reliable(follower.id)) == 0


def test_what_cannot_be_asked_is_refused_at_once(cluster: Cluster, client: Client) -> None:
    with pytest.raises(NoLeaderError):
        client.ask_leader("nobody leads", timeout=5)
    reliable = cluster.start(reliable=True)
    plain = cluster.start()
    for asker in (reliable, client, plain):
        with pytest.raises(UndeliverableError, match="not a member"):
            asker.ask("no-such-instance", "x", timeout=5)
    with pytest.raises(UndeliverableError, match="reliable=True"):
        reliable.ask(plain.id, "x", timeout=5)


# ------------------------------------------------------ a change of leader


def test_ask_leader_survives_the_leader_stopping(pair: Pair, client: Client) -> None:
    """The leader stops while it answers one request and another waits: it answers the
    first, and the next leader answers the other."""
    leader, follower = pair
    slow = Asking(lambda: client.ask_leader("slow", timeout=10))
    assert handler_of(leader).entered.wait(5.0)
    waiting = Asking(lambda: client.ask_leader("waiting", timeout=10))
    key = KeySpace("raftredis", leader.kind).reliable_leader
    wait_until(lambda: client_xlen(client, key) == 2, message="the second request was not sent")
    stopping = threading.Thread(target=leader.stop)
    stopping.start()
    wait_until(lambda: follower.is_leader, message="the follower was not elected")
    handler_of(leader).released.set()
    assert slow.result() == {"by": leader.id, "echo": "slow"}
    assert waiting.result() == {"by": follower.id, "echo": "waiting"}
    stopping.join(10.0)
    assert handler_of(leader).payloads() == ["slow"]
    assert handler_of(follower).payloads() == ["waiting"]


def client_xlen(client: Client, key: str) -> int:
    connected = client._this_process()
    return int(connected.commands.xlen(key))


# A leader in a child process whose request handler hangs: it prints "<id>" once it
# leads and "handling" when a request is in its handler.
HANGING_LEADER = textwrap.dedent(
    """
    import sys, time
    from raftredis import Candidate
    c = Candidate(redis=sys.argv[1], kind=sys.argv[2], lease_ttl=1.0, reliable=True)

    @c.on_request
    def hang(candidate, message):
        print("handling", flush=True)
        time.sleep(60)

    c.start()
    print(c.id, flush=True)
    sys.stdin.read()
    """
)


def test_a_request_in_the_hands_of_a_leader_that_died_is_answered_by_the_next(
    redis_url: str, cluster: Cluster, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILLed in its handler: the next leader claims the request once it has been idle
    for CLAIM_IDLE, and answers within the asker's timeout."""
    monkeypatch.setattr(raftredis.reliable, "CLAIM_IDLE", 0.5)
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_LEADER, redis_url, cluster.kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first_id = read_line(proc)
        successor = cluster.start(reliable=True)
        assert successor.leader_id == first_id
        successor.on_request(Handler())
        asking = Asking(lambda: client.ask_leader("orphan", timeout=10))
        assert read_line(proc) == "handling"
        proc.kill()
        assert asking.result() == {"by": successor.id, "echo": "orphan"}
        assert handler_of(successor).payloads() == ["orphan"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def read_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"the child printed nothing within {timeout} s"
    return proc.stdout.readline().strip()


# ----------------------------------------------------------------- signing


def test_a_signed_kind_signs_answers_and_refuses_unsigned_ones(
    cluster: Cluster, redis_url: str, redis_client: redis.Redis
) -> None:
    leader = cluster.start(reliable=True, secret=SECRET)
    follower = cluster.start(reliable=True, secret=SECRET)
    follower.on_request(Handler())
    signed = Client(redis=redis_url, kind=cluster.kind, secret=SECRET)
    try:
        # The asker checks the answer's signature: these pass only if it is signed right.
        assert signed.ask(follower.id, "signed") == {"by": follower.id, "echo": "signed"}
        assert leader.ask(follower.id, "signed too") == {"by": follower.id, "echo": "signed too"}
        asking = Asking(lambda: signed.ask(follower.id, "slow", timeout=10))
        assert handler_of(follower).entered.wait(5.0)
        stream = KeySpace("raftredis", leader.kind).reliable(follower.id)
        ((_, fields),) = redis_client.xrange(stream)
        forged = {"v": 1, "from": follower.id, "ok": True, "payload": "forged"}
        redis_client.rpush(fields[b"r"], json.dumps(forged))
        with pytest.raises(ProtocolError, match="sign"):
            asking.result()
        handler_of(follower).released.set()
    finally:
        signed.close()
