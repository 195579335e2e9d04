"""Fuzzed control channels: bytes, any JSON and notice-shaped JSON on the channels the
control listener reads; notices are hints, never a change of leader or term; and the
pins of what the fuzzer found there (see fuzz_cluster.py for what every example checks).

The single-input cases (one bad notice) are in
tests/integration/test_api_hostile_input.py.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from fuzz_cluster import BARRIER_SENDER, DISPATCH_THREAD, FuzzCluster, fuzz_settings, prepare
from fuzz_inputs import (
    JUNK_FIELD,
    Input,
    TermRef,
    big_int,
    finite,
    ints,
    mutated,
    node_ids,
    records,
    text,
    wire_json,
    wire_numbers,
)
from fuzz_oracle import EITHER, NOTICE_TYPES, REJECT, classify_notice
from hypothesis import given
from hypothesis import strategies as st
from inproc import wait_until

from raftredis import BackendError, ProtocolError

pytestmark = pytest.mark.usefixtures("no_leaked_threads")


notice_ids = st.one_of(st.just("ghost"), node_ids, text.filter(bool))
notice_terms = st.one_of(
    st.builds(TermRef, st.integers(-2, 3)), st.sampled_from([1, 2**53 - 1, 2**53]), ints
)

JUNK_NOTICE_FIELD = {
    "v": JUNK_FIELD["v"],
    "type": st.sampled_from(["", "exploded", "ELECTED", None, 5, ["left"]]),
    "id": st.sampled_from(["", None, 5, ["x"], {}]),
    "term": st.sampled_from([0, -1, 2**53, 2**60, True, 1.5, "3", None]),
    "record": st.one_of(
        st.sampled_from([[], "x", None, {"meta": 1}, {"joined": "x", "ttl": 1}]),
        st.fixed_dictionaries({"joined": st.booleans(), "ttl": finite}),
    ),
    "at": st.one_of(st.sampled_from(["now", None, True, []]), wire_numbers),
}


@st.composite
def notice_dicts(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(NOTICE_TYPES))
    notice: dict[str, Any] = {"v": 1, "type": kind, "id": draw(notice_ids)}
    if kind in ("elected", "resigned"):
        notice["term"] = draw(notice_terms)
    if kind in ("joined", "meta"):
        notice["record"] = draw(records)
    if draw(st.booleans()):
        notice["at"] = draw(st.one_of(finite, wire_numbers))
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(sorted(JUNK_NOTICE_FIELD)))
        if draw(st.booleans()):
            notice.pop(name, None)
        else:
            notice[name] = draw(JUNK_NOTICE_FIELD[name])
    return notice


# Both channels the control listener reads: control (elected, resigned, left) and
# membership (joined, meta); either kind of notice is handled on either.
control_channels = st.sampled_from(["control", "membership"])
control_inputs = st.one_of(
    st.builds(Input, control_channels, st.binary(max_size=200), st.just("raw")),
    st.builds(Input, control_channels, wire_json),
    st.builds(Input, control_channels, notice_dicts()),
    st.builds(Input, control_channels, notice_dicts()),
)


@fuzz_settings(short=60, full=500)
@given(batch=st.lists(control_inputs, min_size=1, max_size=6), data=st.data())
def test_fuzzed_control_channel(fuzz: FuzzCluster, batch: list[Input], data: Any) -> None:
    """Bytes, any JSON and notice-shaped JSON with fuzzed fields on the control channel:
    every invalid notice is reported once per instance (on the dispatch thread), valid
    ones are hints only: the leader and the term never change; joined/meta/left notices
    become their signals; no thread dies; messages flow."""
    leader = prepare(fuzz)
    term = leader.current_term
    published: list[bytes] = []
    for item in batch:  # every draw first (see test_fuzzed_message_channels)
        raw = item.encode(fuzz.ids, term)
        if item.encoding == "json":
            raw = data.draw(mutated(raw), label="bytes")
        published.append(raw)
    for item, raw in zip(batch, published):
        assert fuzz.publish(item.suffix(fuzz.ids), raw) == 3
    fuzz.control_barrier()
    fuzz.assert_alive()
    # Notices are hints: nobody may be deposed, nor learn a term, from them.
    assert leader.is_leader, f"a notice deposed the leader; {fuzz.changes()}"
    assert [c.current_term for c in fuzz.nodes] == [term] * 3, fuzz.changes()
    events = fuzz.take_all()
    for k, node in enumerate(fuzz.nodes):
        rejected = 0
        joined: Counter[str] = Counter()
        meta: Counter[str] = Counter()
        left: Counter[str] = Counter()
        unsure = 0
        for raw in published:
            verdict, obj = classify_notice(raw)
            if verdict == REJECT:
                rejected += 1
                continue
            if verdict == EITHER or obj is None:
                unsure += 1
                continue
            if obj["type"] == "joined" and obj["id"] != node.id:
                joined[obj["id"]] += 1
            elif obj["type"] == "meta" and obj["id"] != node.id:
                meta[obj["id"]] += 1
            elif obj["type"] == "left" and obj["id"] != node.id:
                left[obj["id"]] += 1
        errors = [e for e in events[k] if e.name == "error"]
        for e in errors:
            error = e.kwargs["error"]
            assert isinstance(error, ProtocolError), f"node {k}: unexpected error {error!r}"
            assert error.channel in (fuzz.channel("control"), fuzz.channel("membership"))
            assert e.thread.startswith(DISPATCH_THREAD), e.thread
            assert error.raw in {raw[:200] for raw in published}, (
                f"node {k}: a ProtocolError for something not published in this example: "
                f"{error!r} raw={error.raw!r} at={e.at}; published {published}"
            )
        assert rejected <= len(errors) <= rejected + unsure, (
            f"node {k}: {rejected} invalid notices, {len(errors)} ProtocolErrors: "
            f"{[str(e.kwargs['error']) for e in errors]}"
        )
        got_joined = Counter(
            e.kwargs["instance"].id
            for e in events[k]
            if e.name == "instance_joined"
            and not e.kwargs["instance"].id.startswith(BARRIER_SENDER)
        )
        got_meta = Counter(e.kwargs["instance"].id for e in events[k] if e.name == "meta_changed")
        got_left = Counter(
            e.kwargs["instance_id"]
            for e in events[k]
            if e.name == "instance_left" and e.kwargs["instance_id"] in left
        )
        if not unsure:
            assert got_joined == joined, f"node {k}: joined {got_joined} != {joined}"
            assert got_meta == meta, f"node {k}: meta_changed {got_meta} != {meta}"
            assert got_left == left, f"node {k}: left {got_left} != {left}"
    # A forged resigned/left makes followers campaign once; they follow the leader again.
    wait_until(
        lambda: fuzz.leader() is leader,
        timeout=3.0,
        message=lambda: f"{fuzz.nodes}; {fuzz.changes()}",
    )
    assert leader.current_term == term
    fuzz.assert_messages_flow()


# --------------------------------------------------------- known-bug pins


def test_huge_integer_or_nan_in_a_notice_is_a_protocol_error(fresh: FuzzCluster) -> None:
    """Notices with a 401-digit 'at', a 401-digit record 'joined', and NaN in a record:
    each is one ProtocolError per node (or a valid hint), never a BackendError.

    (Regression: OverflowError / ValueError escaped decode_control, as for envelopes.)"""
    fuzz = fresh
    big = big_int()
    notices = [
        f'{{"v":1,"type":"left","id":"ghost","at":{big}}}',
        f'{{"v":1,"type":"joined","id":"ghost","record":{{"meta":1,"joined":{big},"ttl":1}}}}',
        '{"v":1,"type":"meta","id":"ghost","record":{"meta":NaN,"joined":1,"ttl":1}}',
    ]
    for notice in notices:
        assert fuzz.publish("control", notice.encode()) == 3
    fuzz.control_barrier()
    for k, events in enumerate(fuzz.take_all()):
        errors = [e.kwargs["error"] for e in events if e.name == "error"]
        assert not [e for e in errors if isinstance(e, BackendError)], (k, errors)
        signals = [
            e
            for e in events
            if e.name in ("instance_left", "instance_joined", "meta_changed")
            and "ghost" in str(e.kwargs)
        ]
        assert len(errors) + len(signals) == 3, (k, errors, signals)
