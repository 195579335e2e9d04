"""Keys of a kind overwritten with the wrong type (junk from someone else) are repaired.

The scripts run their commands through ``on_own_key``: a WRONGTYPE reply makes
them delete the junk and carry on, so the kind heals without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import wait_until

from raftredis import Candidate
from raftredis.testing import RedisServer

KIND = "repair"


@pytest.fixture
def cluster() -> Iterator[tuple[RedisServer, list[Candidate]]]:
    with RedisServer() as server:
        candidates = [
            Candidate(redis=server.url, kind=KIND, lease_ttl=1.0).start() for _ in range(3)
        ]
        try:
            yield server, candidates
        finally:
            for c in candidates:
                c.stop()


def healthy(candidates: list[Candidate]) -> bool:
    leaders = [c for c in candidates if c.is_leader]
    if len(leaders) != 1:
        return False
    try:
        listed = {i.id for i in candidates[0].get_instances()}
    except Exception:
        return False
    return listed == {c.id for c in candidates}


@pytest.mark.parametrize("key", ["leader", "term", "members", "meta"])
def test_key_of_the_wrong_type_is_repaired(
    cluster: tuple[RedisServer, list[Candidate]], key: str
) -> None:
    """A list written over one of the kind's keys: one leader again, all members listed,
    messages flow."""
    server, candidates = cluster
    wait_until(lambda: healthy(candidates))
    admin = server.client()
    try:
        name = f"raftredis:{{{KIND}}}:{key}"
        admin.delete(name)
        admin.rpush(name, "junk", "more junk")
        wait_until(lambda: healthy(candidates), timeout=8.0)
        assert admin.type(name) != b"list" or key == "term"
        received: list[object] = []
        candidates[1].on("message", lambda sender, message, **_: received.append(message))
        wait_until(lambda: candidates[0].message_to(candidates[1].id, "hi") == 1 and received)
    finally:
        admin.close()
