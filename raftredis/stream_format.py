"""What a reliable message looks like in a stream, and an answer in its list.

A stream entry has the fields ``m`` (the envelope, signed with a secret),
``p`` (its writer: the id prefix of the sender's messages, unique per process
run), ``n`` (the writer's number for it on this stream, from 1), and for a
request ``r`` (the list the answer goes to) and ``d`` (the asker's deadline,
wall clock ms). An answer is a JSON object: ``from``, then ``ok`` with a
``payload`` or an ``error`` (``type``, ``message``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .wire import check_json, utf8

__all__ = [
    "MAX_AGE_MS",
    "MAX_LENGTH",
    "Entry",
    "encode_reply",
    "entries_of",
    "new_writer_prefix",
    "text",
]

#: Longest stream kept (approximately: Redis trims whole nodes) and oldest entry kept.
MAX_LENGTH = 100_000
MAX_AGE_MS = 24 * 3600 * 1000


def new_writer_prefix(sender_id: str) -> str:
    """The message id prefix of one writer: unique across restarts with the same id."""
    return f"{sender_id}.{uuid.uuid4().hex[:8]}"


def encode_reply(
    responder: str, ok: bool, body: Any, sign: Callable[[bytes], bytes] | None
) -> bytes:
    """An answer to a request: the value, or the remote exception's type and message."""
    sender = check_json(responder, "id")
    if ok:
        text = f'{{"v":1,"from":{sender},"ok":true,"payload":{check_json(body, "the reply")}}}'
    else:
        kind, message = body
        error = check_json({"type": kind, "message": message}, "the error")
        text = f'{{"v":1,"from":{sender},"ok":false,"error":{error}}}'
    data = utf8(text, "the reply")
    return sign(data) if sign is not None else data


@dataclass
class Entry:
    """One entry read from a stream."""

    stream: str
    entry_id: bytes
    #: None: deleted from the stream while it was pending.
    fields: dict[bytes, bytes] | None


def text(value: Any) -> str:
    """A reply element as text; junk bytes (keys anyone can write) never raise."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def entries_of(reply: Any) -> list[Entry]:
    """XREADGROUP's reply as entries (a deleted one has no fields)."""
    out: list[Entry] = []
    for stream, rows in reply or ():
        name = text(stream)
        for entry_id, flat in rows or ():
            fields: dict[bytes, bytes] | None = None
            if isinstance(flat, dict):  # redis-py parses the field list into a dict
                fields = flat
            elif flat is not None:
                fields = {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}
            out.append(Entry(name, entry_id, fields))
    return out
