"""Hypothesis strategies for the fuzz tests: what a hostile publisher sends.

Node ids and terms are random at run time: a strategy draws :class:`IdRef` /
:class:`TermRef`, resolved when the input is published (:class:`Input`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fuzz_cluster import KIND
from hypothesis import strategies as st


@dataclass(frozen=True)
class IdRef:
    """The id of node ``k``, resolved when published (ids are random)."""

    k: int


@dataclass(frozen=True)
class TermRef:
    """The cluster's current term plus ``delta``, resolved when published."""

    delta: int


def resolve(value: Any, ids: list[str], term: int) -> Any:
    if isinstance(value, IdRef):
        return ids[value.k]
    if isinstance(value, TermRef):
        return term + value.delta
    if isinstance(value, dict):
        return {k: resolve(v, ids, term) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ids, term) for v in value]
    return value


# Text without lone surrogates: they cannot be published at all (json.dumps writes them
# into the UTF-8 it cannot encode; see test_fuzz_messages.py,
# test_lone_surrogates_are_refused_with_message_error).
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
ints = st.integers(min_value=-(2**70), max_value=2**70)
finite = st.floats(allow_nan=False, allow_infinity=False)
# On the wire anything goes: integers beyond a float's range, NaN and infinity
# (json.dumps writes them as NaN / Infinity, which Python's decoder reads back).
wire_ints = st.one_of(ints, st.sampled_from([10**400, -(10**400), 2**1024, 2**53]))
wire_numbers = st.one_of(wire_ints, st.floats())


def _json(leaves: Any) -> Any:
    return st.recursive(
        st.none() | st.booleans() | leaves | text,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4)
        ),
        max_leaves=12,
    )


#: JSON that the API can send (a payload or meta).
json_values = _json(ints | finite)
#: What a hostile publisher can put on the wire.
wire_json = _json(wire_numbers)

node_ids = st.builds(IdRef, st.integers(0, 2))
senders = st.one_of(st.just("fuzz-sender"), node_ids, st.just(""), text)
scopes = st.sampled_from(["all", "followers", "direct", "leader"])
terms = st.one_of(
    st.builds(TermRef, st.integers(-2, 2)), st.sampled_from([0, 1, 2**53, 2**64]), ints
)
timestamps = st.one_of(finite, ints, wire_numbers)
JUNK_FIELD = {
    "v": st.sampled_from([0, 2, "1", None, -1, [1], {"v": 1}]),
    "kind": st.one_of(st.sampled_from(["", "other", KIND.upper(), f"{KIND} ", None, 1]), text),
    "from": st.sampled_from([None, 7, True, ["a"], {}]),
    "scope": st.one_of(st.sampled_from(["", "ALL", "everyone", None, 1, ["all"]]), text),
    "term": st.sampled_from([-1, -(2**64), 1.5, "1", True, False, None, [1]]),
    "leader": st.sampled_from([0, 1, "true", None, [], "false"]),
    "id": st.sampled_from([None, 1, True, ["x"], {"id": 1}]),
    "ts": st.sampled_from(["yesterday", None, True, [1.0], {}]),
    "payload": wire_json,
}
FIELDS = sorted(JUNK_FIELD)


@st.composite
def envelope_dicts(draw: Any, scope: str | None = None) -> dict[str, Any]:
    """A valid envelope (of ``scope``, else any), then 0 to 3 fields dropped or replaced by
    junk, maybe extra fields."""
    env: dict[str, Any] = {
        "v": 1,
        "kind": KIND,
        "from": draw(senders),
        "scope": scope if scope is not None else draw(scopes),
        "term": draw(terms),
        "leader": draw(st.booleans()),
        "id": draw(st.one_of(st.uuids().map(lambda u: u.hex), text)),
        "ts": draw(timestamps),
        "payload": draw(wire_json),
    }
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        name = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            env.pop(name, None)
        else:
            env[name] = draw(JUNK_FIELD[name])
    if draw(st.integers(0, 4)) == 0:
        env[draw(text)] = draw(wire_json)
    return env


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """``data``, usually as is, else truncated, with a byte flipped, or with invalid UTF-8."""
    how = draw(st.sampled_from(["same"] * 9 + ["truncate", "flip", "invalid-utf8"]))
    if how == "same" or not data:
        return data
    at = draw(st.integers(0, len(data) - 1))
    if how == "truncate":
        return data[:at]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + data[at:]


@dataclass(frozen=True)
class Input:
    """One thing to publish: ``body`` is bytes, or a JSON value with refs to resolve."""

    target: Any  # a channel suffix, or IdRef for a node's inbox
    body: Any
    encoding: str = "json"  # "raw": body is bytes; "json": encoded, then maybe mutated
    compact: bool = False  # no spaces, as raftredis encodes (its own head is recognised)

    def suffix(self, ids: list[str]) -> str:
        return f"to:{ids[self.target.k]}" if isinstance(self.target, IdRef) else self.target

    def encode(self, ids: list[str], term: int) -> bytes:
        if self.encoding == "raw":
            assert isinstance(self.body, bytes)
            return self.body
        separators = (",", ":") if self.compact else None
        value = resolve(self.body, ids, term)
        return json.dumps(value, ensure_ascii=False, separators=separators).encode()


message_targets = st.one_of(st.sampled_from(["all", "followers", "to:nobody-home"]), node_ids)


@st.composite
def message_inputs(draw: Any) -> Input:
    """Raw bytes, any JSON, or envelope-shaped JSON (mostly of the channel's scope)."""
    target = draw(message_targets)
    kind = draw(st.sampled_from(["binary", "json", "envelope", "envelope", "envelope"]))
    if kind == "binary":
        return Input(target, draw(st.binary(max_size=300)), "raw")
    if kind == "json":
        return Input(target, draw(wire_json))
    scope = None  # any scope: mostly the wrong one for the channel
    if draw(st.integers(0, 3)) > 0:  # mostly the scope that fits the channel
        if isinstance(target, IdRef):
            scope = draw(st.sampled_from(["direct", "leader"]))
        elif target in ("all", "followers"):
            scope = target
    return Input(target, draw(envelope_dicts(scope)), compact=draw(st.booleans()))


#: A member record (as in a joined or meta notice, and the meta hash), its fields fuzzed.
records = st.fixed_dictionaries(
    {
        "meta": wire_json,
        "joined": st.one_of(finite, wire_numbers),
        "ttl": st.one_of(finite, wire_numbers),
    }
)


def big_int() -> str:
    """Valid JSON, an int, beyond a float's range."""
    return "1" + "0" * 400
