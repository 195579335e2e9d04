"""Huge meta: over, just under, and (in UTF-8 bytes) past max_message_bytes, with
set_meta and at construction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from inproc import Candidates, Recorder, wait_until
from support.kinds import unique_kind

from raftredis import Candidate, ConfigurationError, MessageError
from raftredis.testing import RedisServer

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


@pytest.fixture
def pair(own_redis: RedisServer) -> Iterator[tuple[Candidate, Candidate, Recorder]]:
    """Two Candidates with the default max_message_bytes (1 MiB), in a kind of their own."""
    with Candidates(own_redis.url, unique_kind("meta")) as group:
        a = group.start()
        b = group.new()
        recorder = Recorder().connect(b, "meta_changed", "instance_joined", "error")
        b.start()
        yield a, b, recorder


def _meta_of_bytes(size: int, char: str = "m") -> str:
    """A str meta whose JSON encoding is ``size`` bytes (ASCII ``char``)."""
    return char * (size - 2)


def test_set_meta_over_the_limit_raises_and_publishes_nothing(
    pair: tuple[Candidate, Candidate, Recorder],
) -> None:
    """set_meta over max_message_bytes raises MessageError; the old meta stays, locally
    and for the others."""
    a, b, recorder = pair
    a.set_meta({"small": True})
    recorder.wait_for("meta_changed", lambda e: e.kwargs["instance"].id == a.id)
    limit = 1 << 20
    with pytest.raises(MessageError, match="max_message_bytes"):
        a.set_meta(_meta_of_bytes(limit + 1))
    assert a.meta == {"small": True}
    listed = {i.id: i.meta for i in b.get_instances()}
    assert listed[a.id] == {"small": True}
    a.set_meta("marker")
    recorder.wait_for("meta_changed", lambda e: e.kwargs["instance"].meta == "marker")
    assert len(recorder.of("meta_changed")) == 2


def test_meta_just_under_the_limit_reaches_the_others(
    pair: tuple[Candidate, Candidate, Recorder],
) -> None:
    """set_meta with meta just under max_message_bytes: accepted, and others get
    meta_changed with it (no ProtocolError).

    (Regression: the meta notice, ~120 bytes more than the record, was over the fixed
    1 MiB notice limit, so every peer dropped it.)"""
    a, _b, recorder = pair
    meta = _meta_of_bytes((1 << 20) - 64)
    a.set_meta(meta)
    first = wait_until(lambda: recorder.of("meta_changed") + recorder.of("error"), timeout=5.0)
    assert first[0].name == "meta_changed", first[0].kwargs
    assert first[0].kwargs["instance"].meta == meta


def test_multibyte_meta_over_the_limit_in_bytes_is_refused(
    pair: tuple[Candidate, Candidate, Recorder],
) -> None:
    """A meta under the limit in characters but over it in UTF-8 bytes raises MessageError.

    (Regression: set_meta compared the length of the JSON text in characters.)"""
    a, _b, _recorder = pair
    meta = "é" * ((1 << 20) // 2 + 1000)  # 525 288 characters, 1 050 576 bytes
    assert len(json.dumps(meta, ensure_ascii=False).encode()) > 1 << 20
    with pytest.raises(MessageError):
        a.set_meta(meta)


def test_huge_meta_at_construction_is_refused_or_announced(own_redis: RedisServer) -> None:
    """A meta over max_message_bytes given to the constructor is refused (ConfigurationError
    or MessageError), or else the others hear the instance join.

    (Regression: any size was accepted, and every peer dropped the joined notice.)"""
    with Candidates(own_redis.url, unique_kind("bigmeta")) as group:
        watcher = group.new()
        recorder = Recorder().connect(watcher, "instance_joined", "error")
        watcher.start()
        try:
            big = group.new(meta=_meta_of_bytes(2 << 20))
        except (ConfigurationError, MessageError):
            return
        big.start()

        def heard() -> list[Any]:
            return recorder.of("error") + recorder.of(
                "instance_joined", lambda e: e.kwargs["instance"].id == big.id
            )

        first = wait_until(heard, timeout=5.0)
        assert first[0].name == "instance_joined", first[0].kwargs
