"""The pure parts of Redis Cluster routing: reading CLUSTER SLOTS, and retrying MOVED only."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.exceptions import MovedError

from raftredis.cluster import MovedRetry, SlotMoved, _owner_in

#: A CLUSTER SLOTS reply: two ranges, each with a primary and a replica.
SLOTS: list[Any] = [
    [0, 8191, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.4", 7003, b"id4"]],
    [8192, 16383, [b"", 7001, b"id2"], [b"?", 7004, b"id5"]],
]


def test_the_owner_of_a_slot_and_the_nodes_named() -> None:
    owner, seen = _owner_in(SLOTS, 100, "asked")
    assert owner == ("10.0.0.1", 7000)
    # An empty host is the node asked; "?" (an unknown address) is skipped.
    assert seen == [("10.0.0.1", 7000), ("10.0.0.4", 7003), ("asked", 7001)]
    assert _owner_in(SLOTS, 9000, "asked")[0] == ("asked", 7001)


def test_a_slot_nobody_serves() -> None:
    assert _owner_in(SLOTS[:1], 9000, "asked")[0] is None
    assert _owner_in([], 0, "asked") == (None, [])
    assert _owner_in([[1, 2]], 1, "asked") == (None, [])  # a malformed entry


def _moved() -> SlotMoved:
    return SlotMoved(MovedError("3999 10.0.0.2:7001"), ("10.0.0.2", 7001))


def test_moved_retry_retries_a_moved_reply_once() -> None:
    calls: list[str] = []
    failures: list[BaseException] = []

    def do() -> str:
        calls.append("do")
        if len(calls) == 1:
            raise _moved()
        return "ok"

    assert MovedRetry().call_with_retry(do, failures.append) == "ok"
    assert len(calls) == 2 and isinstance(failures[0], SlotMoved)


def test_moved_retry_gives_up_after_a_second_moved() -> None:
    failures: list[BaseException] = []

    def do() -> str:
        raise _moved()

    with pytest.raises(SlotMoved):
        MovedRetry().call_with_retry(do, failures.append)
    assert len(failures) == 2


def test_moved_retry_never_retries_anything_else() -> None:
    """A lost connection may have run the command: no retry, but the failure handler runs."""
    calls: list[str] = []
    failures: list[tuple[BaseException, int]] = []

    def do() -> str:
        calls.append("do")
        raise redis.ConnectionError("lost")

    with pytest.raises(redis.ConnectionError, match="lost"):
        MovedRetry().call_with_retry(
            do, lambda error, count: failures.append((error, count)), with_failure_count=True
        )
    assert calls == ["do"] and failures[0][1] == 1
