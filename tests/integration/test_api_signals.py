"""Signals: what each carries, on which thread, per-candidate; on()/off(); bad receivers."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import pytest
from helpers import Cluster, Recorder, wait_until

from raftredis import Candidate, Instance, Message, ReceiverError, State, signals

DISPATCH = "raftredis-dispatch-"
MESSAGES = "raftredis-messages-"


def test_state_signals_of_a_lone_leader(cluster: Cluster) -> None:
    """Starting alone: state_changed follower->candidate->leader, elected(term), leader_changed."""
    recorder = Recorder()
    candidate = cluster.new()
    for name in ("elected", "defeated", "state_changed", "leader_changed"):
        getattr(signals, name).connect_via(candidate)(recorder.receiver(name))
    candidate.start()
    elected = recorder.wait_for("elected")
    assert elected.sender is candidate
    assert elected.kwargs == {"term": candidate.current_term}
    assert elected.thread.startswith(DISPATCH)
    changed = recorder.wait_for("leader_changed")
    assert changed.kwargs == {"leader": candidate.id, "term": candidate.current_term}
    wait_until(lambda: len(recorder.of("state_changed")) >= 2)
    transitions = [(e.kwargs["old"], e.kwargs["new"]) for e in recorder.of("state_changed")]
    assert transitions == [
        (State.FOLLOWER, State.CANDIDATE),
        (State.CANDIDATE, State.LEADER),
    ]
    assert all(e.thread.startswith(DISPATCH) for e in recorder.events)
    assert not recorder.of("defeated")


def test_follower_gets_defeated_then_elected_on_handover(cluster: Cluster) -> None:
    """A follower: defeated(leader, term) at start; elected(term) when the leader stops."""
    leader = cluster.start()
    recorder = Recorder()
    follower = cluster.new()
    recorder.connect(follower, "elected", "defeated", "statechange", "leader_changed")
    follower.start()
    defeated = recorder.wait_for("defeated")
    assert defeated.kwargs == {"leader": leader.id, "term": leader.current_term}
    assert defeated.thread.startswith(DISPATCH)
    old_term = leader.current_term
    leader.stop()
    elected = recorder.wait_for("elected")
    assert elected.kwargs["term"] > old_term
    assert elected.kwargs["term"] == follower.current_term
    changes = [e.kwargs for e in recorder.of("leader_changed")]
    assert changes[0]["leader"] == leader.id
    recorder.wait_for("leader_changed", lambda e: e.kwargs["leader"] == follower.id)
    last = recorder.wait_for("statechange", lambda e: e.kwargs["new"] is State.LEADER)
    assert last.kwargs["old"] is State.CANDIDATE


def test_defeated_when_leader_calls_reelect(cluster: Cluster) -> None:
    """The leader that calls reelect() gets state_changed(leader->follower) and defeated."""
    recorder = Recorder()
    leader = cluster.new()
    recorder.connect(leader, "defeated", "state_changed")
    leader.start()
    follower = cluster.start()
    term = leader.current_term
    leader.reelect()
    defeated = recorder.wait_for("defeated")
    assert defeated.kwargs["term"] >= term
    assert defeated.kwargs["leader"] in (None, follower.id)
    change = recorder.wait_for("state_changed", lambda e: e.kwargs["old"] is State.LEADER)
    assert change.kwargs["new"] is State.FOLLOWER


def test_instance_joined_left_and_meta_changed(cluster: Cluster) -> None:
    """Others are announced: instance_joined(Instance), meta_changed(Instance),
    instance_left(id)."""
    recorder = Recorder()
    watcher = cluster.new()
    recorder.connect(watcher, "instance_joined", "instance_left", "meta_changed")
    watcher.start()
    other = cluster.start(meta={"v": 1})
    joined = recorder.wait_for("instance_joined")
    instance = joined.kwargs["instance"]
    assert isinstance(instance, Instance)
    assert instance.id == other.id
    assert instance.meta == {"v": 1}
    assert instance.state is State.FOLLOWER
    assert joined.thread.startswith(DISPATCH)

    other.set_meta({"v": 2})
    changed = recorder.wait_for("meta_changed")
    assert changed.kwargs["instance"].id == other.id
    assert changed.kwargs["instance"].meta == {"v": 2}
    assert changed.thread.startswith(DISPATCH)

    other.stop()
    left = recorder.wait_for("instance_left")
    assert left.kwargs == {"instance_id": other.id}
    assert left.thread.startswith(DISPATCH)
    # An instance is never told about itself.
    assert all(
        e.kwargs.get("instance_id") != watcher.id
        and getattr(e.kwargs.get("instance"), "id", None) != watcher.id
        for e in recorder.events
    )


def test_message_signals_and_their_thread(cluster: Cluster) -> None:
    """message / message:from:leader / message:from:follower carry a Message, on the
    message thread."""
    leader = cluster.start()
    follower = cluster.start()
    at_follower, at_leader = Recorder(), Recorder()
    at_follower.connect(follower, "message", "message:from:leader", "message:from:follower")
    for name in ("message_received", "message_from_leader", "message_from_follower"):
        getattr(signals, name).connect_via(leader)(at_leader.receiver(name))

    assert leader.message_all({"n": 1}) == 1
    got = at_follower.wait_for("message:from:leader")
    assert isinstance(got.kwargs["message"], Message)
    assert got.kwargs["message"].payload == {"n": 1}
    assert got.thread.startswith(MESSAGES)
    assert at_follower.wait_for("message").thread.startswith(MESSAGES)

    assert follower.message_leader({"n": 2}) == 1
    got = at_leader.wait_for("message_from_follower")
    assert got.kwargs["message"].payload == {"n": 2}
    assert got.thread.startswith(MESSAGES)
    at_leader.wait_for("message_received")
    assert not at_leader.of("message_from_leader")
    assert not at_follower.of("message:from:follower")


def test_error_signal_thread_for_a_bad_message(cluster: Cluster, redis_client: Any) -> None:
    """error_occurred for junk on a message channel arrives on the message thread."""
    candidate = cluster.start()
    recorder = Recorder().connect(candidate, "error")
    redis_client.publish(f"raftredis:{{{cluster.kind}}}:all", b"junk")
    assert recorder.wait_for("error").thread.startswith(MESSAGES)


def test_receivers_only_hear_their_own_candidate(cluster: Cluster) -> None:
    """A receiver connected for one candidate never hears another candidate's signals."""
    first, second = cluster.new(), cluster.new()
    rec_first, rec_second = Recorder(), Recorder()
    names = ("elected", "defeated", "statechange", "message", "instance_joined", "leader_changed")
    rec_first.connect(first, *names)
    signals.elected.connect_via(second)(rec_second.receiver("elected_via"))
    rec_second.connect(second, *names)
    first.start()
    second.start()
    second.message_all("to first")
    first.message_all("to second")
    rec_first.wait_for("message")
    rec_second.wait_for("message")
    first.stop()
    rec_second.wait_for("elected")
    rec_second.wait_for("elected_via")
    assert all(e.sender is first for e in rec_first.events)
    assert all(e.sender is second for e in rec_second.events)
    assert len(rec_first.of("elected")) == 1


def test_on_keeps_a_lambda_alive(cluster: Cluster) -> None:
    """on() holds receivers strongly: a lambda with no other reference still fires."""
    candidate = cluster.new()
    hits: list[int] = []
    candidate.on("elected", lambda sender, **extra: hits.append(extra["term"]))
    gc.collect()
    candidate.start()
    wait_until(lambda: hits == [candidate.current_term], timeout=3.0)


def test_on_as_a_decorator_returns_the_function(cluster: Cluster) -> None:
    """@candidate.on("elected") connects the function and returns it unchanged."""
    candidate = cluster.new()
    hits: list[int] = []

    @candidate.on("elected")
    def on_elected(sender: Candidate, term: int, **extra: Any) -> None:
        hits.append(term)

    assert callable(on_elected) and on_elected.__name__ == "on_elected"
    candidate.start()
    wait_until(lambda: hits == [candidate.current_term], timeout=3.0)


@pytest.mark.parametrize("name", ["nope", "Elected", "message:from:nobody", "", "error_occured"])
def test_on_with_an_unknown_name_raises_value_error(cluster: Cluster, name: str) -> None:
    """on() with an unknown event name raises ValueError listing the valid names."""
    candidate = cluster.new()
    with pytest.raises(ValueError, match="elected"):
        candidate.on(name, lambda sender, **extra: None)


def test_off_with_an_unknown_name_raises_value_error(cluster: Cluster) -> None:
    """off() with an unknown event name raises ValueError, like on()."""
    candidate = cluster.new()
    with pytest.raises(ValueError):
        candidate.off("nope", lambda sender, **extra: None)


def test_off_disconnects(cluster: Cluster) -> None:
    """A receiver disconnected with off() (seed or signal name) is not called any more."""
    leader = cluster.start()
    follower = cluster.start()
    kept, removed, removed2 = Recorder(), Recorder(), Recorder()
    fn_removed = removed.receiver("message")
    fn_removed2 = removed2.receiver("message")
    follower.on("message", kept.receiver("message"))
    follower.on("message", fn_removed)
    follower.on("message_received", fn_removed2)
    leader.message_all("first")
    kept.wait_for("message")
    wait_until(lambda: removed.of("message") and removed2.of("message"))
    follower.off("message", fn_removed)
    follower.off("message", fn_removed2)  # seed name and signal name are the same signal
    leader.message_all("second")
    leader.message_all("third")  # "second" has reached every receiver once kept sees this
    kept.wait_for("message", count=3)
    # Messages are delivered in order on one thread: "second" reached every receiver
    # that was still connected before kept saw it.
    assert [e.kwargs["message"].payload for e in removed.of("message")] == ["first"]
    assert [e.kwargs["message"].payload for e in removed2.of("message")] == ["first"]


def test_seed_names_map_to_signals(cluster: Cluster) -> None:
    """Every seed event name connects to the matching signal."""
    candidate = cluster.new()
    seed = {
        "elected": signals.elected,
        "defeated": signals.defeated,
        "statechange": signals.state_changed,
        "message": signals.message_received,
        "message:from:leader": signals.message_from_leader,
        "message:from:follower": signals.message_from_follower,
        "error": signals.error_occurred,
    }
    for name, signal in seed.items():

        def fn(sender: Any, **extra: Any) -> None:
            pass

        candidate.on(name, fn)
        assert fn in signal.receivers_for(candidate), name
        candidate.off(name, fn)
        assert fn not in signal.receivers_for(candidate), name


# ---------------------------------------------------------------- receivers


def test_raising_state_receiver_is_reported_and_others_still_run(cluster: Cluster) -> None:
    """A raising receiver of elected: error_occurred gets ReceiverError (cause kept); others run."""
    candidate = cluster.new()
    boom = RuntimeError("boom")
    recorder = Recorder()

    def bad(sender: Candidate, **extra: Any) -> None:
        raise boom

    candidate.on("elected", recorder.receiver("before"))
    candidate.on("elected", bad)
    candidate.on("elected", recorder.receiver("after"))
    candidate.on("error", recorder.receiver("error"))
    candidate.start()
    error = recorder.wait_for("error").kwargs["error"]
    assert isinstance(error, ReceiverError)
    assert error.__cause__ is boom
    assert "boom" in str(error) and "elected" in str(error)
    recorder.wait_for("before")
    recorder.wait_for("after")
    assert candidate.is_leader


def test_raising_message_receiver_is_reported_and_others_still_run(cluster: Cluster) -> None:
    """A raising message receiver: ReceiverError on error_occurred; the others and later
    messages are still delivered."""
    leader = cluster.start()
    follower = cluster.start()
    recorder = Recorder()
    boom = KeyError("missing")

    def bad(sender: Candidate, **extra: Any) -> None:
        raise boom

    follower.on("message", bad)
    follower.on("message", recorder.receiver("message"))
    follower.on("error", recorder.receiver("error"))
    leader.message_all(1)
    leader.message_all(2)
    recorder.wait_for("message", count=2)
    recorder.wait_for("error", count=2)
    errors = [e.kwargs["error"] for e in recorder.of("error")]
    assert all(isinstance(e, ReceiverError) and e.__cause__ is boom for e in errors)
    assert [e.kwargs["message"].payload for e in recorder.of("message")] == [1, 2]


def test_raising_error_receiver_does_not_loop(cluster: Cluster) -> None:
    """An error receiver that raises is only logged: no endless error loop, others still run."""
    candidate = cluster.new()
    calls: list[BaseException] = []
    recorder = Recorder()

    def bad_error_receiver(sender: Candidate, error: BaseException, **extra: Any) -> None:
        calls.append(error)
        raise ValueError("error receiver failed")

    candidate.on("elected", lambda sender, **extra: 1 / 0)
    candidate.on("error", bad_error_receiver)
    candidate.on("error", recorder.receiver("error"))
    candidate.start()
    recorder.wait_for("error")
    wait_until(lambda: len(calls) == 1)
    assert isinstance(calls[0], ReceiverError)
    # A little later there is still exactly one report: no loop.
    candidate.message_all("x")  # a round trip through Redis to let anything queued happen
    candidate.get_instances()
    assert len(calls) == 1 and len(recorder.of("error")) == 1


def test_blocking_elected_receiver_does_not_cost_the_lease(cluster: Cluster) -> None:
    """A receiver of elected that blocks for 3 x lease_ttl: the leader keeps its lease."""
    ttl = 1.0
    candidate = cluster.new(lease_ttl=ttl)
    entered, returned = threading.Event(), threading.Event()
    never = threading.Event()

    def block(sender: Candidate, **extra: Any) -> None:
        entered.set()
        never.wait(3 * ttl)
        returned.set()

    candidate.on("elected", block)
    candidate.start()
    follower = cluster.start(lease_ttl=ttl)
    wait_until(entered.is_set, timeout=2.0)
    checks = 0
    while not returned.is_set():
        assert candidate.is_leader, "the leader lost its lease while a receiver blocked"
        assert not follower.is_leader
        assert follower.leader_id == candidate.id
        checks += 1
        time.sleep(0.005)
    assert checks > 100
    assert candidate.is_leader
    term = candidate.current_term
    assert follower.current_term == term


def test_blocking_message_receiver_does_not_cost_the_lease(cluster: Cluster) -> None:
    """A message receiver blocking on the leader for 2 x lease_ttl does not cost the lease."""
    leader = cluster.start()
    follower = cluster.start()
    entered, returned = threading.Event(), threading.Event()
    never = threading.Event()

    def block(sender: Candidate, **extra: Any) -> None:
        entered.set()
        never.wait(2.0)
        returned.set()

    leader.on("message", block)
    assert follower.message_leader("block please") == 1
    wait_until(entered.is_set, timeout=2.0)
    while not returned.is_set():
        assert leader.is_leader
        assert not follower.is_leader
        time.sleep(0.005)
    assert leader.is_leader


def test_dispatch_overflow_is_counted_and_reported(cluster: Cluster, redis_client: Any) -> None:
    """With the dispatch thread blocked, a flood of reports overflows its bounded queue: the
    heartbeat is not blocked (the leader keeps its lease, in the same term) and, once the
    receiver returns, a SignalOverflowError says how many signals were dropped."""
    import logging

    from raftredis import ProtocolError, SignalOverflowError

    leader = cluster.new()
    entered, release = threading.Event(), threading.Event()
    recorder = Recorder()

    def block(sender: Candidate, **extra: Any) -> None:
        entered.set()
        release.wait(20)

    leader.on("elected", block)
    leader.on("error", recorder.receiver("error"))
    leader.start()
    follower = cluster.start()
    wait_until(entered.is_set, timeout=2.0)
    flood = 10_500  # the dispatch queue holds 10 000
    channel = f"raftredis:{{{cluster.kind}}}:control"
    logger = logging.getLogger("raftredis")
    level = logger.level
    logger.setLevel(logging.ERROR)  # 10 500 warnings are not the point here
    try:
        try:
            pipe = redis_client.pipeline(transaction=False)
            for _ in range(flood):
                pipe.publish(channel, b"junk")
            pipe.execute()
            flooded_at = time.monotonic()
            # The control listener keeps reading and the heartbeat keeps renewing meanwhile:
            # the leader keeps its lease, in the same term. (Its is_leader may blink: on a
            # loaded machine the flood can starve its presence listener past the presence
            # window, and fast failover then suspends it until the next proof.)
            term = leader.current_term
            while time.monotonic() - flooded_at < 1.5 * leader.timings.lease_ttl:
                assert leader.leader_id == leader.id and leader.current_term == term
                assert not follower.is_leader and follower.leader_id == leader.id
                time.sleep(0.01)
            wait_until(lambda: leader.is_leader, timeout=1.0)
        finally:
            release.set()

        def is_protocol_error(e: Any) -> bool:
            return isinstance(e.kwargs["error"], ProtocolError)

        def dropped() -> int:
            return sum(
                e.kwargs["error"].dropped
                for e in recorder.of("error")
                if isinstance(e.kwargs["error"], SignalOverflowError)
            )

        wait_until(lambda: dropped() > 0, timeout=20.0, message="no SignalOverflowError")
        # Every junk notice is either delivered as a ProtocolError or counted as dropped.
        wait_until(
            lambda: dropped() + len(recorder.of("error", is_protocol_error)) == flood,
            timeout=20.0,
            message=lambda: (
                f"dropped {dropped()}, "
                f"delivered {len(recorder.of('error', is_protocol_error))} of {flood}"
            ),
        )
    finally:
        logger.setLevel(level)
    assert leader.is_leader


def test_unheard_joined_and_meta_notices_are_recognised_by_their_head(
    cluster: Cluster, redis_client: Any
) -> None:
    """The control listener drops joined/meta notices nobody listens to by their head,
    before decoding them: the heads it matches must be what the scripts publish."""
    from raftredis.control import _SIGNAL_ONLY

    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"raftredis:{{{cluster.kind}}}:membership")
    try:
        wait_until(lambda: pubsub.get_message(timeout=0.1), timeout=2.0)  # the confirmation
        candidate = cluster.start()
        candidate.set_meta({"v": 2})
        notices: list[bytes] = []

        def got_both() -> bool:
            message = pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                notices.append(message["data"])
            return len(notices) >= 2

        wait_until(got_both, timeout=3.0)
    finally:
        pubsub.close()
    joined_head, meta_head = (head for head, _ in _SIGNAL_ONLY)
    assert notices[0].startswith(joined_head), notices[0]
    assert notices[1].startswith(meta_head), notices[1]


def test_joined_and_meta_are_heard_only_by_instances_with_receivers(
    cluster: Cluster, redis_client: Any
) -> None:
    """The membership channel (joined, meta) is subscribed only while a receiver for
    instance_joined or meta_changed exists; connecting one after start() subscribes
    before on() returns, so the very next change is heard."""
    channel = f"raftredis:{{{cluster.kind}}}:membership"

    def subscribers() -> int:
        return int(dict(redis_client.pubsub_numsub(channel))[channel.encode()])

    a = cluster.start()
    assert subscribers() == 0
    rec = Recorder().connect(a, "instance_joined")
    assert subscribers() == 1  # already, before anyone joins
    b = cluster.start()
    assert rec.wait_for("instance_joined").kwargs["instance"].id == b.id
    assert subscribers() == 1  # b has no receiver of its own...
    meta = Recorder().connect(b, "meta_changed")  # ...until now
    assert subscribers() == 2
    a.set_meta({"x": 1})
    assert meta.wait_for("meta_changed").kwargs["instance"].meta == {"x": 1}
    # A receiver connected before start(): subscribed from the start.
    c = cluster.new()
    Recorder().connect(c, "meta_changed")
    c.start()
    assert subscribers() == 3
    c.stop()
    assert subscribers() == 2
