"""What the documented wire format (docs/concepts.md, raftredis/wire.py) says a receiver
must do with an input, written without the library's decoder; and the accounting of a
batch of inputs on every node of the fuzz cluster against it."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from fuzz_cluster import (
    BARRIER_SENDER,
    KIND,
    MAX_BYTES,
    MAX_NOTICE_BYTES,
    MESSAGES_THREAD,
    FuzzCluster,
)

from raftredis import ProtocolError

DELIVER, SILENT, REJECT, EITHER = "deliver", "silent", "reject", "either"


def _load(raw: bytes, limit: int) -> tuple[str, Any]:
    """(verdict, object): REJECT for what no decoder may accept, EITHER where the
    nesting depth makes the outcome depend on the stack of the decoding thread."""
    if len(raw) > limit:
        return REJECT, None
    try:
        textual = raw.decode("utf-8")
    except UnicodeDecodeError:
        return REJECT, None
    if textual.count("[") + textual.count("{") > 400:
        return EITHER, None
    try:
        return "", json.loads(textual)
    except (ValueError, RecursionError):
        return REJECT, None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    """A number that is a finite float (ints beyond a float's range are not)."""
    if not _is_number(value):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _has_non_finite(value: Any) -> bool:
    """NaN or infinity somewhere in a JSON value: not JSON, but read by Python's json."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    return False


def own_head(me: str) -> bytes:
    """How our own encoder starts an envelope: such input is dropped unread (inbox.py)."""
    return f'{{"v":1,"kind":{json.dumps(KIND)},"from":{json.dumps(me)},'.encode()


def _version(obj: dict[str, Any]) -> str:
    """ "" for v == 1; EITHER for true / 1.0 (equal to 1 in Python; lenient is fine)."""
    v = obj.get("v")
    if _is_int(v) and v == 1:
        return ""
    if v is True or (isinstance(v, float) and v == 1.0):
        return EITHER
    return REJECT


def _versioned_object(raw: bytes, limit: int) -> tuple[str, dict[str, Any] | None]:
    """``raw`` as a JSON object of version 1 (the first step of both oracles): ("", obj),
    or (EITHER, obj) if its ``v`` only equals 1; for anything else (REJECT, None), or
    (EITHER, None) where the decoding thread's stack decides (see :func:`_load`)."""
    verdict, obj = _load(raw, limit)
    if verdict:
        return verdict, None
    if not isinstance(obj, dict):
        return REJECT, None
    lenient = _version(obj)
    return (REJECT, None) if lenient == REJECT else (lenient, obj)


def classify_envelope(
    raw: bytes, suffix: str, me: str, me_leads: bool, known_term: int
) -> tuple[str, dict[str, Any] | None]:
    """What receiver ``me`` must do with ``raw`` published on ``suffix`` (docs/concepts.md)."""
    if raw.startswith(own_head(me)):
        return SILENT, None  # "its own message", recognised by the head alone
    lenient, obj = _versioned_object(raw, MAX_BYTES)
    if obj is None:
        return lenient, None
    ok = (
        obj.get("kind") == KIND
        and isinstance(obj.get("kind"), str)
        and obj.get("scope") in ("direct", "all", "followers", "leader")
        and isinstance(obj.get("scope"), str)
        and _is_int(obj.get("term"))
        and 0 <= obj["term"] < 2**53
        and _is_finite(obj.get("ts"))
        and "payload" in obj
        and isinstance(obj.get("from"), str)
        and isinstance(obj.get("leader"), bool)
        and isinstance(obj.get("id"), str)
    )
    if not ok:
        return REJECT, None
    allowed = {"all": ("all",), "followers": ("followers",), f"to:{me}": ("direct", "leader")}
    if obj["scope"] not in allowed.get(suffix, ()):
        return REJECT, None
    if obj["from"] == me:
        return SILENT, obj
    if obj["scope"] == "followers" and me_leads:
        return SILENT, obj
    if obj["leader"] and obj["term"] < known_term:
        return REJECT, None
    if _has_non_finite(obj["payload"]):
        lenient = EITHER  # NaN / Infinity: not JSON (the sender refuses it); either is fine
    return (lenient or DELIVER), obj


NOTICE_TYPES = ("elected", "resigned", "joined", "left", "meta")


def classify_notice(raw: bytes) -> tuple[str, dict[str, Any] | None]:
    """DELIVER (a valid notice, handled as a hint) or REJECT (a ProtocolError)."""
    lenient, obj = _versioned_object(raw, MAX_NOTICE_BYTES)
    if obj is None:
        return lenient, None
    kind = obj.get("type")
    if not isinstance(kind, str) or kind not in NOTICE_TYPES:
        return REJECT, None
    nid = obj.get("id")
    if not isinstance(nid, str) or not nid:
        return REJECT, None
    if kind in ("elected", "resigned"):
        term = obj.get("term")
        if not _is_int(term) or not 1 <= term < 2**53:
            return REJECT, None
    if kind in ("joined", "meta"):
        record = obj.get("record")
        if not isinstance(record, dict):
            return REJECT, None
        if not _is_finite(record.get("joined")) or not _is_finite(record.get("ttl")):
            return REJECT, None
        if _has_non_finite(record.get("meta")):
            lenient = EITHER
    if "at" in obj and not _is_finite(obj["at"]):
        return REJECT, None
    return (lenient or DELIVER), obj


# ---------------------------------------------------------------- accounting


def settle_message_example(
    fuzz: FuzzCluster, published: list[tuple[str, bytes]]
) -> list[list[Any]]:
    """Check the accounting of one batch on every node (after the barrier); return the
    events recorded on each node."""
    roles_before = fuzz.roles()
    fuzz.message_barrier()
    assert fuzz.roles() == roles_before, (
        f"junk on message channels changed a role or a term; {fuzz.changes()}"
    )
    fuzz.assert_alive()
    events = fuzz.take_all()
    for k, node in enumerate(fuzz.nodes):
        me_leads, known_term = roles_before[k]
        expected: Counter[str] = Counter()
        must_deliver: Counter[tuple[str, str]] = Counter()
        may_deliver: Counter[tuple[str, str]] = Counter()
        envelopes: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for suffix, data in published:
            if k not in fuzz.subscribers(suffix):
                continue
            verdict, obj = classify_envelope(data, suffix, node.id, me_leads, known_term)
            expected[verdict] += 1
            if verdict in (DELIVER, EITHER) and obj is not None:
                key = (obj["id"], obj["from"])
                may_deliver[key] += 1
                envelopes.setdefault(key, []).append(obj)
                if verdict == DELIVER:
                    must_deliver[key] += 1
        delivered = [
            e.kwargs["message"]
            for e in events[k]
            if e.name == "message" and e.kwargs["message"].sender_id != BARRIER_SENDER
        ]
        errors = [e for e in events[k] if e.name == "error"]
        context = f"node {k} ({'leader' if me_leads else 'follower'}): expected {dict(expected)}"
        for e in errors:
            error = e.kwargs["error"]
            assert isinstance(error, ProtocolError), f"{context}; unexpected error {error!r}"
            assert e.thread.startswith(MESSAGES_THREAD), (e.thread, error)
            assert (error.channel, error.raw) in {(fuzz.channel(s), d[:200]) for s, d in published}
        got = Counter((m.message_id, m.sender_id) for m in delivered)
        assert not (must_deliver - got), f"{context}; not delivered: {must_deliver - got}"
        assert not (got - may_deliver), f"{context}; delivered but invalid: {got - may_deliver}"
        either = expected[EITHER]
        assert expected[REJECT] <= len(errors) <= expected[REJECT] + either, (
            f"{context}; {len(errors)} ProtocolErrors: {[str(e.kwargs['error']) for e in errors]}"
        )
        assert len(errors) + len(delivered) == expected[REJECT] + expected[DELIVER] + either, (
            f"{context}; {len(errors)} errors + {len(delivered)} delivered"
        )
        for m in delivered:  # delivered as sent
            assert m.kind == KIND
            assert any(
                m.scope.value == o["scope"]
                and m.from_leader is o["leader"]
                and m.term == o["term"]
                and json.dumps(m.payload, sort_keys=True)
                == json.dumps(o["payload"], sort_keys=True)
                for o in envelopes[(m.message_id, m.sender_id)]
            ), (m, envelopes[(m.message_id, m.sender_id)])
    return events
