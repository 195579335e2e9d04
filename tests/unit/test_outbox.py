"""The Outbox's bookkeeping (chunks, counts, partial failures), with a scripted sender.

What Redis does with the commands is tested in tests/integration/test_api_batch.py;
here the sender is a stand-in that answers or fails on cue, so the accounting of
every failure point can be checked exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import pytest
import redis

from raftredis import BackendError, BatchError, Scope
from raftredis.keys import KeySpace
from raftredis.outbox import CHUNK_BYTES, CHUNK_MESSAGES, Outbox, Outgoing, _chunks
from raftredis.publish_pool import PublishPool

KEYS = KeySpace("raftredis", "svc")


class ScriptedSender:
    """Answers each PUBLISH with 2 receivers; raises ConnectionError on call ``fail_on``."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[list[tuple[Any, ...]]] = []
        self.fail_on = fail_on

    def run(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        self.calls.append([tuple(c) for c in commands])
        if self.fail_on == len(self.calls):
            raise redis.ConnectionError("connection reset")
        return [2 for _ in commands]


class Leading:
    """A leadership view that always leads in one term."""

    def __init__(self, term: int) -> None:
        self.term = term

    def stamp(self) -> tuple[int, bool]:
        return self.term, True


def outbox(sender: ScriptedSender, max_bytes: int = 1 << 20) -> Outbox:
    return Outbox(
        KEYS, "me", max_bytes, cast(PublishPool, sender), "return 1", leadership=Leading(7)
    )


def test_prepare_stamps_and_encodes_each_scope() -> None:
    box = outbox(ScriptedSender())
    direct = box.prepare(Scope.DIRECT, {"a": 1}, "other")
    assert direct.command[:2] == ("PUBLISH", KEYS.inbox("other")) and not direct.echoes
    envelope = json.loads(direct.command[2])
    assert envelope["term"] == 7 and envelope["leader"] is True and envelope["payload"] == {"a": 1}
    assert envelope["from"] == "me" and envelope["id"] == "me-1"
    assert box.prepare(Scope.DIRECT, 1, "me").echoes  # our own inbox: we count ourselves
    assert box.prepare(Scope.ALL, 1).command[1] == KEYS.all
    assert box.prepare(Scope.FOLLOWERS, 1).command[1] == KEYS.followers
    leader = box.prepare(Scope.LEADER, 1)
    assert leader.command[0] == "EVALSHA" and leader.command[3] == KEYS.leader
    assert json.loads(box.prepare(Scope.ALL, 1).command[2])["id"] == "me-6"


def test_counts_leave_out_our_own_listener() -> None:
    box = outbox(ScriptedSender())
    assert box.send(box.prepare(Scope.ALL, 1)) == 1  # 2 subscribers, one of them us
    assert box.send(box.prepare(Scope.DIRECT, 1, "other")) == 2


def test_chunks_split_by_count_and_by_bytes() -> None:
    def item(size: int) -> Outgoing:
        return Outgoing(("PUBLISH", "c", b""), Scope.ALL, True, size)

    many = [item(10)] * (CHUNK_MESSAGES * 2 + 1)
    assert [len(c) for c in _chunks(many)] == [CHUNK_MESSAGES, CHUNK_MESSAGES, 1]
    big = [item(CHUNK_BYTES // 3 + 1)] * 7
    assert [len(c) for c in _chunks(big)] == [2, 2, 2, 1]
    huge = [item(CHUNK_BYTES * 2)] * 2  # a message over the chunk size still goes, alone
    assert [len(c) for c in _chunks(huge)] == [1, 1]
    assert _chunks([]) == []


def test_a_failure_in_the_second_chunk_reports_what_was_sent() -> None:
    sender = ScriptedSender(fail_on=2)
    box = outbox(sender)
    n = CHUNK_MESSAGES * 2 + 5
    batch = [box.prepare(Scope.DIRECT, i, "other") for i in range(n)]
    with pytest.raises(BatchError) as caught:
        box.send_many(batch)
    error = caught.value
    assert error.counts[:CHUNK_MESSAGES] == [2] * CHUNK_MESSAGES
    assert error.counts[CHUNK_MESSAGES:] == [None] * (n - CHUNK_MESSAGES)
    assert error.not_sent == 5  # the third chunk never went out
    assert len(sender.calls) == 2
    assert f"{CHUNK_MESSAGES} were published" in str(error)
    assert isinstance(error.__cause__, redis.ConnectionError)


def test_a_failed_single_send_is_a_backend_error_and_not_retried() -> None:
    sender = ScriptedSender(fail_on=1)
    box = outbox(sender)
    with pytest.raises(BackendError, match="publishing a message"):
        box.send(box.prepare(Scope.ALL, 1))
    assert len(sender.calls) == 1


def test_a_batch_with_leader_messages_loads_the_script_first() -> None:
    sender = ScriptedSender()
    box = outbox(sender)
    batch = [box.prepare(Scope.LEADER, 1), box.prepare(Scope.ALL, 2)]
    sender.run = lambda commands: [  # type: ignore[method-assign]
        "sha" if c[0] == "SCRIPT" else ([b"leader", 1] if c[0] == "EVALSHA" else 3)
        for c in commands
    ]
    assert box.send_many(batch) == [1, 2]
