"""What travels over Redis: message envelopes, control notices, member records.

Everything is JSON (never pickle: anyone who can publish on the Redis server
would run code in every instance). Decoders treat their input as hostile:
any bytes at all give either a value or a :class:`WireError` saying why they
were dropped, never another exception.
"""

from __future__ import annotations

import enum
import functools
import itertools
import json
import math
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Callable, TypeVar, cast

from .errors import MessageError
from .models import Instance, Message, Scope, State

__all__ = [
    "ControlMessage",
    "ControlType",
    "Envelope",
    "EnvelopeWriter",
    "MemberRecord",
    "WireError",
    "decode_control",
    "decode_envelope",
    "decode_record",
    "encode_envelope",
    "encode_meta_notice",
    "encode_record",
    "envelope_head",
    "notice_head",
]

F = TypeVar("F", bound=Callable[..., Any])

VERSION = 1
#: A notice carries a member record (meta up to max_message_bytes) plus this much.
CONTROL_OVERHEAD_BYTES = 64 * 1024
#: Payloads and meta nest at most this deep, so every receiver can decode them
#: (json's decoder recurses; a listener thread has less stack left than a caller).
MAX_DEPTH = 500
_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[^\[\]{}]+')


class WireError(ValueError):
    """Input that is not a valid envelope, notice or record; the text says why."""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _loads(raw: bytes | str, what: str) -> Any:
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise WireError(f"{what} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise WireError(f"{what} is nested too deeply to decode") from None
    except ValueError as exc:
        raise WireError(f"{what} is not JSON ({exc})") from None


def _versioned_object(raw: bytes, what: str, max_bytes: int, limit: str) -> dict[str, Any]:
    """The JSON object in ``raw``, checked for size and protocol version."""
    if len(raw) > max_bytes:
        raise WireError(f"{what} of {len(raw)} bytes is over {limit}={max_bytes}")
    obj = _loads(raw, what)
    if not isinstance(obj, dict):
        raise WireError(f"{what} is not a JSON object")
    if obj.get("v") != VERSION:
        raise WireError(f"{what} has unsupported version {obj.get('v')!r}")
    return obj


def check_json(value: Any, what: str) -> str:
    """Encode ``value`` as compact JSON or raise :class:`MessageError` saying why not."""
    try:
        text = _dumps(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise MessageError(
            f"{what} must be JSON-serialisable (dict, list, str, int, float, bool or None; "
            f"no NaN or infinity): {exc}"
        ) from exc
    if _depth(text) > MAX_DEPTH:
        raise MessageError(f"{what} is nested more than {MAX_DEPTH} levels deep; flatten it")
    return text


def utf8(text: str, what: str) -> bytes:
    """``text`` as UTF-8, or MessageError (lone surrogates pass json.dumps but not this)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MessageError(f"{what} holds text that is not valid Unicode: {exc}") from None


def _depth(text: str) -> int:
    """How deep the JSON in ``text`` nests (cheap unless it has many brackets)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0  # cannot be deeper than the number of brackets
    brackets = _NESTING.sub("", text)  # drop strings and everything but brackets
    steps = accumulate(1 if c in "[{" else -1 for c in brackets)
    return max(steps, default=0)


# ------------------------------------------------------------- envelopes


@dataclass(frozen=True)
class Envelope:
    """A user message as sent: the payload and who sent it, when, as what."""

    kind: str
    sender_id: str
    scope: Scope
    term: int
    leader: bool
    message_id: str
    sent_at: float
    payload: Any

    def to_message(self, *, reliable: bool = False) -> Message:
        """The :class:`~raftredis.Message` its receivers get."""
        return Message(
            payload=self.payload,
            sender_id=self.sender_id,
            scope=self.scope,
            from_leader=self.leader,
            term=self.term,
            message_id=self.message_id,
            sent_at=self.sent_at,
            kind=self.kind,
            reliable=reliable,
        )


def envelope_head(kind: str, sender_id: str) -> str:
    """The text every envelope from ``sender_id`` starts with (its listener drops its own)."""
    return f'{{"v":{VERSION},"kind":{_dumps(kind)},"from":{_dumps(sender_id)},'


class EnvelopeWriter:
    """Encodes one sender's envelopes. The constant head is encoded once, not per message.

    The output is the same JSON :func:`encode_envelope` writes, put together
    with one f-string: building and dumping a dict per message cost more than
    the publish itself spends in Python.
    """

    def __init__(
        self,
        kind: str,
        sender_id: str,
        max_bytes: int,
        sign: Callable[[bytes], bytes] | None = None,
        *,
        id_prefix: str | None = None,
    ) -> None:
        self.head = envelope_head(kind, sender_id)
        #: Set with a secret (see signing.py): appends the timestamp and signature.
        self._sign = sign
        self._scope_at = f'{self.head}"scope":"'
        # Message ids are "<prefix>-<n>"; a reliable writer's prefix has a random part,
        # so that ids stay unique when an instance restarts with the same id.
        self._id_prefix = sender_id if id_prefix is None else id_prefix
        self._max_bytes = max_bytes
        self._seq = itertools.count(1)

    def encode(self, scope: Scope, term: int, leader: bool, sent_at: float, payload: Any) -> bytes:
        """Encode one message; raise :class:`MessageError` if the payload is not JSON or too big."""
        body = check_json(payload, "the payload")
        message_id = f"{self._id_prefix}-{next(self._seq)}"  # ids need no JSON escaping
        return _finish(
            f'{self._scope_at}{scope.value}","term":{term:d},'
            f'"leader":{"true" if leader else "false"},"id":"{message_id}",'
            f'"ts":{float(sent_at)!r},"payload":{body}}}',
            self._max_bytes,
            self._sign,
        )


def encode_envelope(envelope: Envelope, max_bytes: int) -> bytes:
    """Encode ``envelope``; raise :class:`MessageError` if the payload is not JSON or too big."""
    body = check_json(envelope.payload, "the payload")
    head = _dumps(
        {
            "v": VERSION,
            "kind": envelope.kind,
            "from": envelope.sender_id,
            "scope": envelope.scope.value,
            "term": envelope.term,
            "leader": envelope.leader,
            "id": envelope.message_id,
            "ts": envelope.sent_at,
        }
    )
    # Splice the payload in rather than encoding the whole dict twice.
    return _finish(f'{head[:-1]},"payload":{body}}}', max_bytes)


def _finish(text: str, max_bytes: int, sign: Callable[[bytes], bytes] | None = None) -> bytes:
    data = utf8(text, "the payload")
    if sign is not None:
        data = sign(data)  # before the size check: receivers check the signed size
    if len(data) > max_bytes:
        raise MessageError(
            f"the message is {len(data)} bytes encoded, over max_message_bytes={max_bytes}; "
            "send a smaller payload (or a reference to the data, e.g. a Redis key)"
        )
    return data


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise WireError(f"{what} has no valid {name!r} field")
    return value


def _number(obj: dict[str, Any], name: str, what: str) -> float:
    """A finite number field (ints beyond a float's range are refused, not raised)."""
    value = _field(obj, name, (int, float), what)
    try:
        number = float(value)
    except OverflowError:
        raise WireError(f"{what} has an out-of-range {name!r} field") from None
    if not math.isfinite(number):
        raise WireError(f"{what} has a non-finite {name!r} field")
    return number


def _hostile(decode: F) -> F:
    """Make a decoder total: any failure on hostile input becomes a WireError."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return decode(*args, **kwargs)
        except WireError:
            raise
        except Exception as exc:  # a decoder bug must not kill a listener thread
            raise WireError(f"undecodable input ({type(exc).__name__}: {exc})") from exc

    return cast(F, functools.wraps(decode)(guarded))


@_hostile
def decode_envelope(raw: bytes, *, kind: str, max_bytes: int) -> Envelope:
    """Decode an envelope received on one of ``kind``'s message channels."""
    obj = _versioned_object(raw, "message", max_bytes, "max_message_bytes")
    msg_kind = _field(obj, "kind", str, "message")
    if msg_kind != kind:
        raise WireError(f"message is for kind {msg_kind[:100]!r}, not {kind!r}")
    try:
        scope = Scope(obj.get("scope"))
    except ValueError:
        raise WireError("message has no valid 'scope' field") from None
    term = _field(obj, "term", int, "message")
    sent_at = _number(obj, "ts", "message")
    if not 0 <= term < 2**53:
        raise WireError("message has a term outside 0 to 2**53 - 1")
    if "payload" not in obj:
        raise WireError("message has no 'payload' field")
    return Envelope(
        kind=kind,
        sender_id=_field(obj, "from", str, "message"),
        scope=scope,
        term=term,
        leader=_field(obj, "leader", bool, "message"),
        message_id=_field(obj, "id", str, "message"),
        sent_at=sent_at,
        payload=obj["payload"],
    )


# --------------------------------------------------------- member records


@dataclass(frozen=True)
class MemberRecord:
    """What an instance stores about itself in the kind's meta hash."""

    meta: Any
    joined_at: float
    ttl: float

    def instance(self, instance_id: str, state: State, last_seen: float) -> Instance:
        """The public view of this record."""
        return Instance(instance_id, self.meta, state, self.joined_at, last_seen)


def encode_record(record: MemberRecord) -> str:
    """Encode a member record (meta must already be known to be JSON)."""
    return _dumps({"meta": record.meta, "joined": record.joined_at, "ttl": record.ttl})


@_hostile
def decode_record(raw: bytes | str | None) -> MemberRecord:
    """Decode a member record; missing or junk records raise :class:`WireError`."""
    if raw is None:
        raise WireError("member has no record")
    return _record_from(_loads(raw, "member record"))


def _record_from(obj: Any) -> MemberRecord:
    if not isinstance(obj, dict):
        raise WireError("member record is not a JSON object")
    joined = _number(obj, "joined", "member record")
    ttl = _number(obj, "ttl", "member record")
    return MemberRecord(meta=obj.get("meta"), joined_at=joined, ttl=ttl)


# -------------------------------------------------------- control notices


class ControlType(str, enum.Enum):
    """The kinds of control notice; published by the Lua scripts and set_meta."""

    ELECTED = "elected"
    RESIGNED = "resigned"
    JOINED = "joined"
    LEFT = "left"
    META = "meta"


@dataclass(frozen=True)
class ControlMessage:
    """A decoded control notice. ``record`` comes with joined and meta notices."""

    type: ControlType
    id: str
    term: int | None = None
    record: MemberRecord | None = None
    at: float | None = None

    @property
    def instance(self) -> Instance | None:
        """The instance a joined/meta notice describes (state: follower)."""
        if self.record is None:
            return None
        seen = self.at if self.at is not None else self.record.joined_at
        return self.record.instance(self.id, State.FOLLOWER, seen)


def notice_head(notice_type: ControlType) -> bytes:
    """How every notice of ``notice_type`` that raftredis writes begins (signed or not:
    a signature goes at the end), so a listener can skip one without decoding it."""
    return f'{{"v":{VERSION},"type":"{notice_type.value}",'.encode()


def encode_meta_notice(instance_id: str, record: str, at: float) -> str:
    """The notice set_meta publishes; ``record`` is an encoded member record."""
    head = f'{{"v":{VERSION},"type":"meta","id":{_dumps(instance_id)},"at":{at!r}'
    return f'{head},"record":{record}}}'


@_hostile
def decode_control(
    raw: bytes, max_bytes: int = (1 << 20) + CONTROL_OVERHEAD_BYTES
) -> ControlMessage:
    """Decode a control notice from the kind's control channel.

    ``max_bytes`` is the sender's ``max_message_bytes`` plus
    :data:`CONTROL_OVERHEAD_BYTES` (a notice carries a whole member record).
    """
    obj = _versioned_object(raw, "control notice", max_bytes, "the notice limit")
    try:
        ctype = ControlType(obj.get("type"))
    except ValueError:
        raise WireError("control notice has no valid 'type' field") from None
    instance_id = _field(obj, "id", str, "control notice")
    if not instance_id:
        raise WireError("control notice has an empty 'id'")
    term: int | None = None
    if ctype in (ControlType.ELECTED, ControlType.RESIGNED):
        term = _field(obj, "term", int, "control notice")
        if not 1 <= term < 2**53:
            raise WireError("control notice has a term outside 1 to 2**53 - 1")
    record: MemberRecord | None = None
    if ctype in (ControlType.JOINED, ControlType.META):
        rec = obj.get("record")
        if not isinstance(rec, dict):
            raise WireError("control notice has no valid 'record' field")
        record = _record_from(rec)
    return ControlMessage(
        type=ctype,
        id=instance_id,
        term=term,
        record=record,
        at=_number(obj, "at", "control notice") if "at" in obj else None,
    )
