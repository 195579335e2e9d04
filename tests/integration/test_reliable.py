"""Reliable delivery (``reliable=True``) on a real redis-server.

Each scope delivers once, as a reliable Message with the usual signals; a
message waits in Redis while its receiver does not read, or has crashed and
comes back with its id; a command for the leader waits for the next one; a
sender's order holds; a retried send is delivered once; what Redis trimmed
unread is reported; signed kinds sign their streams; stop() does not wait for
the blocking read, and an idle reader costs little; the leader removes what an
instance that never stopped left (after a grace in which a restart keeps it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from helpers import Cluster, RawChannels, Recorder, raftredis_threads, wait_until

import raftredis.reliable_outbox
import raftredis.reliable_prune
from raftredis import (
    Candidate,
    Client,
    Message,
    MessageError,
    MessagesLostError,
    ProtocolError,
    Scope,
    UndeliverableError,
)
from raftredis.keys import KeySpace
from raftredis.signing import Keyring

pytestmark = pytest.mark.integration

SIGNALS = ("message", "message:from:leader", "message:from:follower", "error")
SECRET = "correct horse battery staple 42"

Trio = tuple[Candidate, Candidate, Candidate, dict[str, Recorder]]


# ----------------------------------------------------------------- helpers


def keys_of(candidate: Candidate | Client) -> KeySpace:
    return KeySpace("raftredis", candidate.kind)


def recorded(candidate: Candidate) -> Recorder:
    return Recorder().connect(candidate, *SIGNALS)


def payloads(recorder: Recorder, name: str = "message") -> list[Any]:
    return [e.kwargs["message"].payload for e in recorder.of(name)]


def errors(recorder: Recorder) -> list[BaseException]:
    return [e.kwargs["error"] for e in recorder.of("error")]


def barrier(send: Callable[[Any], int], *recorders: Recorder) -> Any:
    """Send a marker with ``send`` and wait until every recorder has it: what was sent
    before it on the same stream has been handled by then (one reader, in order)."""
    marker = f"marker-{uuid.uuid4().hex}"
    send(marker)
    for recorder in recorders:
        recorder.wait_for("message", lambda e: e.kwargs["message"].payload == marker)
    return marker


class Hold:
    """A message receiver that keeps its reader busy on one payload until released:
    meanwhile nothing more is read, and what is sent waits in Redis."""

    def __init__(self, payload: Any = "hold") -> None:
        self.payload = payload
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, sender: Any, message: Message, **kwargs: Any) -> None:
        if message.payload == self.payload:
            self.entered.set()
            assert self.released.wait(10.0)

    def wait_entered(self) -> None:
        assert self.entered.wait(5.0), f"the receiver never got {self.payload!r}"


@pytest.fixture
def trio(cluster: Cluster) -> Trio:
    """A reliable leader and two reliable followers, each with a recorder."""
    leader, f1, f2 = cluster.start_many(3, reliable=True)
    assert leader.is_leader
    return leader, f1, f2, {c.id: recorded(c) for c in (leader, f1, f2)}


@pytest.fixture
def client(cluster: Cluster, redis_url: str) -> Iterator[Client]:
    """A Client of the ``cluster`` kind (no member)."""
    c = Client(redis=redis_url, kind=cluster.kind)
    try:
        yield c
    finally:
        c.close()


# ------------------------------------------------------------------ scopes


def test_message_to_is_delivered_once_as_a_reliable_message(trio: Trio) -> None:
    """From the leader and from a follower: one delivery each, reliable=True, with
    message_received first and then the follow-up signal of the sender's role."""
    leader, f1, f2, rec = trio
    assert leader.message_to(f1.id, {"n": 1}, reliable=True) == 1
    assert f2.message_to(f1.id, {"n": 2}, reliable=True) == 1
    first = rec[f1.id].wait_for("message:from:leader").kwargs["message"]
    assert (first.payload, first.sender_id, first.scope) == ({"n": 1}, leader.id, Scope.DIRECT)
    assert first.reliable is True and first.from_leader is True
    assert first.term == leader.current_term and first.kind == leader.kind
    second = rec[f1.id].wait_for("message:from:follower").kwargs["message"]
    assert (second.payload, second.sender_id, second.from_leader) == ({"n": 2}, f2.id, False)
    assert second.reliable is True
    marker = barrier(lambda m: leader.message_to(f1.id, m, reliable=True), rec[f1.id])
    assert payloads(rec[f1.id]) == [{"n": 1}, {"n": 2}, marker]
    names = [e.name for e in rec[f1.id].events][:4]
    assert names == ["message", "message:from:leader", "message", "message:from:follower"]
    assert not errors(rec[f1.id]) and not payloads(rec[f2.id]) and not payloads(rec[leader.id])


def test_message_all_reaches_every_other_member_once(trio: Trio) -> None:
    """message_all(reliable=True) counts the other reliable members; the sender does not
    get its own broadcast."""
    leader, f1, f2, rec = trio
    assert f1.message_all({"to": "all"}, reliable=True) == 2
    for c in (leader, f2):
        got = rec[c.id].wait_for("message:from:follower").kwargs["message"]
        assert (got.payload, got.scope, got.sender_id) == ({"to": "all"}, Scope.ALL, f1.id)
        assert got.reliable is True
    marker = barrier(lambda m: leader.message_all(m, reliable=True), rec[f1.id], rec[f2.id])
    assert payloads(rec[f1.id]) == [marker]  # not its own
    assert payloads(rec[f2.id]) == [{"to": "all"}, marker]
    assert payloads(rec[leader.id]) == [{"to": "all"}]


def test_message_followers_from_the_leader_and_from_a_follower(trio: Trio) -> None:
    """From the leader the count is the followers; from a follower it includes the
    leader, which skips the message when it reads it."""
    leader, f1, f2, rec = trio
    assert leader.message_followers("from the leader", reliable=True) == 2
    assert f1.message_followers("from f1", reliable=True) == 2
    got = rec[f2.id].wait_for("message:from:leader").kwargs["message"]
    assert (got.payload, got.scope, got.reliable) == ("from the leader", Scope.FOLLOWERS, True)
    assert rec[f2.id].wait_for("message:from:follower").kwargs["message"].payload == "from f1"
    assert rec[f1.id].wait_for("message").kwargs["message"].payload == "from the leader"
    marker = barrier(lambda m: f2.message_all(m, reliable=True), rec[leader.id], rec[f1.id])
    assert payloads(rec[leader.id]) == [marker]
    assert payloads(rec[f1.id]) == ["from the leader", marker]


def test_message_followers_is_skipped_by_whoever_leads_when_it_is_read(
    cluster: Cluster, client: Client
) -> None:
    """A follower that becomes leader before it reads a message to the followers skips it."""
    leader = cluster.start(reliable=True)
    follower = cluster.start(reliable=True)
    rec, hold = recorded(follower), Hold()
    follower.on("message", hold)
    assert client.message_to(follower.id, "hold", reliable=True) == 1
    hold.wait_entered()
    assert client.message_followers("to the followers", reliable=True) == 2
    leader.stop()
    wait_until(lambda: follower.is_leader, message="the follower was not elected")
    hold.released.set()
    marker = barrier(lambda m: client.message_all(m, reliable=True), rec)
    assert payloads(rec) == ["hold", marker]


def test_message_leader_reaches_the_leader_once(trio: Trio, client: Client) -> None:
    leader, f1, f2, rec = trio
    assert f1.message_leader({"cmd": 1}, reliable=True) == 1
    assert client.message_leader({"cmd": 2}, reliable=True) == 1
    got = rec[leader.id].wait_for("message:from:follower", count=2).kwargs["message"]
    assert (got.scope, got.reliable, got.sender_id) == (Scope.LEADER, True, client.id)
    barrier(lambda m: f2.message_leader(m, reliable=True), rec[leader.id])
    assert payloads(rec[leader.id])[:2] == [{"cmd": 1}, {"cmd": 2}]
    assert len(payloads(rec[leader.id])) == 3
    assert not payloads(rec[f1.id]) and not payloads(rec[f2.id])


# ------------------------------------------------------------- not reading


def test_a_message_sent_while_the_receiver_is_busy_waits_for_it(
    cluster: Cluster, client: Client, redis_client: redis.Redis
) -> None:
    receiver = cluster.start(reliable=True)
    rec, hold = recorded(receiver), Hold()
    receiver.on("message", hold)
    assert client.message_to(receiver.id, "hold", reliable=True) == 1
    hold.wait_entered()
    for n in range(5):
        assert client.message_to(receiver.id, n, reliable=True) == 1
    stream = keys_of(receiver).reliable(receiver.id)
    assert redis_client.xlen(stream) == 6  # "hold" (in hand) and the 5 unread
    hold.released.set()
    marker = barrier(lambda m: client.message_to(receiver.id, m, reliable=True), rec)
    assert payloads(rec) == ["hold", 0, 1, 2, 3, 4, marker]
    wait_until(lambda: redis_client.xlen(stream) == 0, message="taken but not deleted")


def test_a_message_sent_while_the_reader_connection_is_down_arrives(
    cluster: Cluster, client: Client, redis_client: redis.Redis
) -> None:
    """CLIENT KILL of the reading connections: the reader reconnects and reads what
    was sent meanwhile, once each."""
    receiver = cluster.start(reliable=True)
    rec = recorded(receiver)
    readers = wait_until(lambda: blocked_readers(redis_client), message="no blocked read")
    for reader in readers:
        redis_client.execute_command("CLIENT", "KILL", "ID", reader)
    for n in range(5):
        assert client.message_to(receiver.id, n, reliable=True) == 1
    marker = barrier(lambda m: client.message_to(receiver.id, m, reliable=True), rec)
    assert payloads(rec) == [0, 1, 2, 3, 4, marker]
    assert not set(readers) & set(blocked_readers(redis_client))  # new connections read


def test_a_clean_stop_drops_the_stream_and_reports_what_it_held(
    cluster: Cluster, client: Client, redis_client: redis.Redis
) -> None:
    receiver = cluster.start(reliable=True)
    rec, hold = recorded(receiver), Hold()
    receiver.on("message", hold)
    assert client.message_to(receiver.id, "hold", reliable=True) == 1
    hold.wait_entered()
    for n in range(3):
        assert client.message_to(receiver.id, n, reliable=True) == 1
    session = receiver._session
    assert session is not None and session.reader is not None
    reader = session.reader
    stopping = threading.Thread(target=receiver.stop)
    stopping.start()
    # Released once the reader is told to stop: it ends after the message in hand.
    wait_until(lambda: reader._stopping.is_set(), message="the reader was not stopped")
    hold.released.set()
    stopping.join(10.0)
    assert not stopping.is_alive()
    lost = [e for e in errors(rec) if isinstance(e, MessagesLostError)]
    assert len(lost) == 1 and lost[0].count == 3, errors(rec)
    assert payloads(rec) == ["hold"]
    k = keys_of(receiver)
    assert not redis_client.exists(k.reliable(receiver.id))
    groups = redis_client.xinfo_groups(k.reliable_all)
    assert receiver.id.encode() not in [g["name"] for g in groups]
    with pytest.raises(UndeliverableError):
        client.message_to(receiver.id, "after the stop", reliable=True)


# A Candidate in a child process that prints the payload of each message it receives
# (JSON, one a line). With argv[4] == "1" it hangs in the receiver of "hang": killed
# there, that message was taken and never acked. It starts again while the entry of
# its previous life (same id) has not expired yet.
RECEIVER_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    from raftredis import Candidate, ConfigurationError
    url, kind, member_id, hang = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
    lock = threading.Lock()

    def say(value):
        with lock:
            sys.stdout.write(json.dumps(value) + "\\n")
            sys.stdout.flush()

    def received(sender, message):
        say(message.payload)
        if hang and message.payload == "hang":
            time.sleep(60)

    while True:
        c = Candidate(redis=url, kind=kind, id=member_id, lease_ttl=1.0, reliable=True)
        c.on("message", received)
        try:
            c.start()
            break
        except ConfigurationError:
            time.sleep(0.05)
    say("ready")
    sys.stdin.read()
    c.stop()
    """
)


class ReceiverProcess:
    """RECEIVER_SCRIPT in a child process; a thread of the test collects what it prints."""

    def __init__(self, redis_url: str, kind: str, member_id: str, *, hang: bool) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER_SCRIPT, redis_url, kind, member_id, str(int(hang))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: list[Any] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def read_until(self, wanted: Any, timeout: float = 10.0) -> list[Any]:
        """Wait until ``wanted`` was printed; return the payloads printed so far."""
        wait_until(lambda: wanted in self.lines, timeout, lambda: f"printed: {self.lines}")
        return [line for line in self.lines if line != "ready"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def test_a_receiver_that_crashed_gets_what_was_sent_meanwhile_in_order(
    redis_url: str, cluster: Cluster, client: Client
) -> None:
    """SIGKILLed in a receiver, started again with the same id: the message it was
    handling comes again (never acked), then what was sent while it was down."""
    member_id = f"crashy-{uuid.uuid4().hex[:8]}"
    first = ReceiverProcess(redis_url, cluster.kind, member_id, hang=True)
    second: ReceiverProcess | None = None
    try:
        first.read_until("ready")
        assert client.message_to(member_id, "m1", reliable=True) == 1
        assert client.message_to(member_id, "hang", reliable=True) == 1
        assert first.read_until("hang") == ["m1", "hang"]
        for payload in ("m2", "m3"):
            assert client.message_to(member_id, payload, reliable=True) == 1
        first.proc.kill()
        first.proc.wait(10)
        assert client.message_to(member_id, "m4", reliable=True) == 1  # still a member
        second = ReceiverProcess(redis_url, cluster.kind, member_id, hang=False)
        second.read_until("ready")
        assert client.message_to(member_id, "m5", reliable=True) == 1
        assert second.read_until("m5") == ["hang", "m2", "m3", "m4", "m5"]
        assert first.lines == ["ready", "m1", "hang"]
    finally:
        first.close()
        if second is not None:
            second.close()


# ------------------------------------------------------ leader, order, retry


def test_a_command_for_the_leader_waits_while_there_is_none(
    cluster: Cluster, client: Client
) -> None:
    """Nobody leads: the command is kept (1), and the first leader takes it once."""
    assert client.message_leader("early command", reliable=True) == 1
    leader = cluster.new(reliable=True)
    rec = recorded(leader)
    leader.start()
    assert leader.is_leader
    got = rec.wait_for("message").kwargs["message"]
    assert (got.payload, got.scope, got.sender_id) == ("early command", Scope.LEADER, client.id)
    barrier(lambda m: client.message_leader(m, reliable=True), rec)
    assert payloads(rec).count("early command") == 1


@pytest.mark.parametrize("handover", ["stop", "reelect"])
def test_commands_for_the_leader_survive_a_change_of_leader(
    cluster: Cluster, client: Client, redis_client: redis.Redis, handover: str
) -> None:
    """The leader has read a batch of commands and is in the receiver of the first when
    it stops leading: it finishes that one, the next leader takes the rest (one of them
    its own) once, in order, and only after the first is done."""
    first = cluster.start(reliable=True)
    second = cluster.start(reliable=True)
    rec = {c.id: recorded(c) for c in (first, second)}
    hold1, hold2 = Hold("hold-1"), Hold("hold-2")
    first.on("message", hold1)
    first.on("message", hold2)
    assert client.message_leader("hold-1", reliable=True) == 1
    hold1.wait_entered()
    commands: list[Any] = ["hold-2", *range(10)]
    for command in commands:
        assert client.message_leader(command, reliable=True) == 1
    assert second.message_leader("from the next leader", reliable=True) == 1
    key = keys_of(first).reliable_leader
    hold1.released.set()
    hold2.wait_entered()
    assert redis_client.xpending(key, "leader")["pending"] == 12  # read in one batch
    stopping = threading.Thread(target=first.stop)
    if handover == "stop":
        stopping.start()
    else:
        assert first.reelect()
    wait_until(lambda: second.is_leader, message="the second was not elected")

    def taking_over() -> bool:  # claiming, or (wrongly, with the first still at it) taking
        commands = {c.get("cmd") for c in redis_client.client_list()}
        return bool(commands & {"xautoclaim", "xpending"} or payloads(rec[second.id]))

    wait_until(taking_over, message="the second did not take over the leader's stream")
    hold2.released.set()
    marker = barrier(lambda m: client.message_leader(m, reliable=True), rec[second.id])
    if stopping.is_alive():
        stopping.join(10.0)
    assert payloads(rec[first.id]) == ["hold-1", "hold-2"]
    assert payloads(rec[second.id]) == [*range(10), "from the next leader", marker]
    assert not errors(rec[second.id])


def test_one_senders_order_holds_per_thread(cluster: Cluster) -> None:
    """Two threads of one sender send 100 numbered messages each to one receiver: each
    thread's arrive once, in order."""
    receiver = cluster.start(reliable=True)
    sender = cluster.start(reliable=True)
    rec = recorded(receiver)

    def send(thread: int) -> None:
        for n in range(100):
            assert sender.message_to(receiver.id, [thread, n], reliable=True) == 1

    threads = [threading.Thread(target=send, args=(t,)) for t in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    rec.wait_for("message", count=200, timeout=10.0)
    got = payloads(rec)
    assert len(got) == 200
    for thread in (0, 1):
        assert [n for t, n in got if t == thread] == list(range(100))
    assert not errors(rec)


def test_a_send_retried_after_a_lost_reply_is_delivered_once(
    cluster: Cluster, client: Client, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply to the send is lost: it is sent again, so the stream holds the message
    twice, and the receiver delivers it once (and reports no gap)."""
    receiver = cluster.start(reliable=True)
    sender = cluster.start(reliable=True)
    rec, hold = recorded(receiver), Hold()
    receiver.on("message", hold)
    assert sender.message_to(receiver.id, "hold", reliable=True) == 1
    hold.wait_entered()
    session = sender._session
    assert session is not None
    pool = session.reliable_outbox._pool
    run = pool.run
    lost: list[Any] = []

    def lose_the_first_reply(commands: Any) -> Any:
        replies = run(commands)
        if not lost:
            lost.append(replies)
            raise redis.ConnectionError("the reply was lost (test)")
        return replies

    monkeypatch.setattr(pool, "run", lose_the_first_reply)
    assert sender.message_to(receiver.id, "once", reliable=True) == 1
    monkeypatch.undo()
    entries = redis_client.xrange(keys_of(receiver).reliable(receiver.id))
    fields = [f for _, f in entries[1:]]
    assert len(fields) == 2 and fields[0] == fields[1]  # added twice: the same message
    hold.released.set()
    marker = barrier(lambda m: sender.message_to(receiver.id, m, reliable=True), rec)
    assert payloads(rec) == ["hold", "once", marker]
    assert not errors(rec)


def test_messages_trimmed_before_they_were_read_are_reported(
    cluster: Cluster, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams trimmed short while the receiver does not read: the rest arrives, and the
    number lost is reported as MessagesLostError."""
    monkeypatch.setattr(raftredis.reliable_outbox, "MAX_LENGTH", 10)
    receiver = cluster.start(reliable=True)
    rec, hold = recorded(receiver), Hold()
    receiver.on("message", hold)
    assert client.message_to(receiver.id, "hold", reliable=True) == 1
    hold.wait_entered()
    total = 300
    for n in range(total):
        assert client.message_to(receiver.id, n, reliable=True) == 1
    hold.released.set()
    rec.wait_for("message", lambda e: e.kwargs["message"].payload == total - 1)
    error = rec.wait_for("error").kwargs["error"]
    assert isinstance(error, MessagesLostError) and error.count is not None
    kept = payloads(rec)[1:]
    assert kept == list(range(total - len(kept), total))
    assert error.count == total - len(kept) > 0
    assert len(errors(rec)) == 1


# ---------------------------------------------------------------- refusals


def test_sends_nobody_would_read_are_refused(cluster: Cluster, client: Client) -> None:
    reliable = cluster.start(reliable=True)
    plain = cluster.start()
    for sender in (reliable, client):
        with pytest.raises(UndeliverableError, match="not a member"):
            sender.message_to("no-such-instance", "x", reliable=True)
        with pytest.raises(UndeliverableError, match="reliable=True"):
            sender.message_to(plain.id, "x", reliable=True)
        with pytest.raises(UndeliverableError):
            sender.message_to("", "x", reliable=True)
    assert reliable.is_leader
    assert reliable.message_to(reliable.id, "to itself", reliable=True) == 0
    assert reliable.message_leader("to itself, the leader", reliable=True) == 0
    assert issubclass(UndeliverableError, MessageError)
    with pytest.raises(MessageError):
        reliable.message_all({"not json": object()}, reliable=True)


# ----------------------------------------------------------------- signing


def test_a_signed_kind_signs_its_streams_and_drops_unsigned_entries(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    leader = cluster.start(reliable=True, secret=SECRET)
    follower = cluster.start(reliable=True, secret=SECRET)
    rec = recorded(follower)
    assert leader.message_all("signed", reliable=True) == 1
    rec.wait_for("message", lambda e: e.kwargs["message"].payload == "signed")
    k = keys_of(leader)
    (_, fields), *_ = redis_client.xrange(k.reliable_all)
    Keyring([SECRET.encode()]).verify(fields[b"m"])  # raises if not signed right
    envelope = RawChannels(redis_client, leader.kind).envelope(scope="direct", payload="forged")
    redis_client.xadd(
        k.reliable(follower.id), {"m": json.dumps(envelope), "p": "forger.1", "n": "1"}
    )
    error = rec.wait_for("error").kwargs["error"]
    assert isinstance(error, ProtocolError) and "sign" in str(error)
    marker = barrier(lambda m: leader.message_to(follower.id, m, reliable=True), rec)
    assert payloads(rec) == ["signed", marker]


# ------------------------------------------------------------ threads, cost


def blocked_readers(client: redis.Redis) -> list[str]:
    """The ids of the connections blocked in XREADGROUP now."""
    return [
        str(c["id"])
        for c in client.client_list()
        if c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "")
    ]


def test_stop_does_not_wait_for_the_blocking_read(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    """Idle reliable instances (a leader reads two streams) stop in a few ms, threads and all."""
    leader = cluster.start(reliable=True)
    follower = cluster.start(reliable=True)
    wait_until(lambda: len(blocked_readers(redis_client)) == 3, message="reads not blocked")
    for c in (follower, leader):
        started = time.monotonic()
        c.stop()
        took = time.monotonic() - started
        assert took < 1.0, f"stop() took {took:.3f} s"
        assert not [t.name for t in raftredis_threads() if c.id[:8] in t.name]
    assert not blocked_readers(redis_client)


def xreadgroup_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_xreadgroup", {})
    return int(stats.get("calls", 0))


def test_an_idle_reader_costs_about_one_read_per_block(
    cluster: Cluster, redis_client: redis.Redis
) -> None:
    plain = cluster.start()
    redis_client.config_resetstat()
    time.sleep(1.0)  # measuring: no condition to wait for
    assert xreadgroup_calls(redis_client) == 0
    plain.stop()
    cluster.start(reliable=True)  # alone: it leads, and reads two streams
    wait_until(lambda: len(blocked_readers(redis_client)) == 2, message="reads not blocked")
    redis_client.config_resetstat()
    started = time.monotonic()
    time.sleep(3.0)  # measuring: no condition to wait for
    calls = xreadgroup_calls(redis_client)
    assert calls / (time.monotonic() - started) <= 1.0, calls


# ----------------------------------------------------- departed instances

#: Short timings for the pruning tests: a member expires 1 s after its last refresh.
SHORT_LEASE = 0.5


@pytest.fixture
def quick_pruning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader prunes 0.1 s after its election, then every 0.2 s (grace: 2 member
    expiries, 2 s with SHORT_LEASE)."""
    monkeypatch.setattr(raftredis.reliable_prune, "PRUNE_AFTER_ELECTION", 0.1)
    monkeypatch.setattr(raftredis.reliable_prune, "PRUNE_INTERVAL", 0.2)


def crash_holding_three(
    receiver: Candidate, client: Client, monkeypatch: pytest.MonkeyPatch
) -> Recorder:
    """Three messages wait unread in ``receiver``'s stream; it then stops as a crash would
    look from Redis: no leave (its membership expires), its stream and group left behind."""
    rec, hold = recorded(receiver), Hold()
    receiver.on("message", hold)
    assert client.message_to(receiver.id, "hold", reliable=True) == 1
    hold.wait_entered()
    for n in range(3):
        assert client.message_to(receiver.id, n, reliable=True) == 1
    session = receiver._session
    assert session is not None and session.reader is not None
    reader = session.reader
    monkeypatch.setattr(session.store, "leave", lambda term: None)
    monkeypatch.setattr(reader, "leave", lambda: 0)
    stopping = threading.Thread(target=receiver.stop)
    stopping.start()
    wait_until(lambda: reader._stopping.is_set(), message="the reader was not stopped")
    hold.released.set()
    stopping.join(10.0)
    assert not stopping.is_alive()
    return rec


def group_names(client: redis.Redis, stream: str) -> list[bytes]:
    return [g["name"] for g in client.xinfo_groups(stream)]


def test_the_leader_removes_what_an_instance_that_never_stopped_left(
    cluster: Cluster,
    client: Client,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    quick_pruning: None,
) -> None:
    """Once its membership has expired and the grace has passed, the leader deletes the
    crashed instance's stream, its group on the stream for all and its index entry, and
    reports the messages dropped; the live ones keep theirs."""
    leader = cluster.start(reliable=True, lease_ttl=SHORT_LEASE)
    live = cluster.start(reliable=True, lease_ttl=SHORT_LEASE)
    crashed = cluster.start(reliable=True, lease_ttl=SHORT_LEASE)
    assert leader.is_leader
    rec = recorded(leader)
    k = keys_of(leader)
    assert redis_client.hexists(k.reliable_index, crashed.id)
    crashed_rec = crash_holding_three(crashed, client, monkeypatch)
    assert redis_client.xlen(k.reliable(crashed.id)) == 3
    wait_until(
        lambda: b" gone " in (redis_client.hget(k.reliable_index, crashed.id) or b""),
        message="the leader did not mark the crashed instance gone",
    )
    assert redis_client.exists(k.reliable(crashed.id))  # within the grace: kept
    with pytest.raises(UndeliverableError, match="not a member"):  # its membership expired
        client.message_to(crashed.id, "late", reliable=True)
    wait_until(
        lambda: not redis_client.exists(k.reliable(crashed.id)),
        timeout=10.0,
        message="the crashed instance's stream was not removed",
    )
    assert crashed.id.encode() not in group_names(redis_client, k.reliable_all)
    assert not redis_client.hexists(k.reliable_index, crashed.id)
    error = rec.wait_for("error").kwargs["error"]
    assert isinstance(error, MessagesLostError) and error.count == 3, error
    assert crashed.id in str(error) and "left without stopping" in str(error)
    assert not errors(crashed_rec)  # it reported nothing: it "crashed"
    for survivor in (leader, live):
        assert redis_client.exists(k.reliable(survivor.id))
        assert survivor.id.encode() in group_names(redis_client, k.reliable_all)
        assert redis_client.hget(k.reliable_index, survivor.id).isdigit()
    assert live.message_to(leader.id, "still read", reliable=True) == 1
    rec.wait_for("message", lambda e: e.kwargs["message"].payload == "still read")
    assert len(errors(rec)) == 1


def test_an_instance_restarting_within_the_grace_keeps_its_messages(
    cluster: Cluster,
    client: Client,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    quick_pruning: None,
) -> None:
    """Gone (and seen gone by the leader), then started again with its id within the
    grace: its stream was kept, it takes what waited there, and nothing is reported."""
    monkeypatch.setattr(raftredis.reliable_prune, "PRUNE_GRACE", 20.0)
    leader = cluster.start(reliable=True, lease_ttl=SHORT_LEASE)
    crashed = cluster.start(reliable=True, lease_ttl=SHORT_LEASE)
    assert leader.is_leader
    rec = recorded(leader)
    k = keys_of(leader)
    crash_holding_three(crashed, client, monkeypatch)
    wait_until(
        lambda: b" gone " in (redis_client.hget(k.reliable_index, crashed.id) or b""),
        message="the leader did not mark the crashed instance gone",
    )
    again = cluster.new(reliable=True, lease_ttl=SHORT_LEASE, id=crashed.id)
    again_rec = recorded(again)
    again.start()
    again_rec.wait_for("message", count=3)
    assert payloads(again_rec) == [0, 1, 2]
    assert redis_client.hget(k.reliable_index, crashed.id).isdigit()  # back: unmarked
    marker = barrier(lambda m: client.message_to(again.id, m, reliable=True), again_rec)
    assert payloads(again_rec) == [0, 1, 2, marker]
    assert not errors(again_rec) and not errors(rec)
