"""The control inbox: lease hints go to the election, membership notices straight to
the dispatcher, junk is reported. No Redis: notices are built with the wire encoders."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from blinker import NamedSignal

from raftredis import signals
from raftredis.control import ControlInbox, membership_signal
from raftredis.election import ControlReceived, Event
from raftredis.errors import ProtocolError
from raftredis.wire import ControlMessage, ControlType, MemberRecord, encode_record

ME, OTHER = "me", "other"
RECORD = MemberRecord({"a": 1}, 1.0, 6.0)


class Owner:
    """Stands for the Candidate: the sender receivers are connected for."""


class Recorder:
    def __init__(self) -> None:
        self.owner = Owner()
        self.posted: list[Event] = []
        self.submitted: list[tuple[str, dict[str, Any]]] = []
        self.reports: list[BaseException] = []
        self.inbox = ControlInbox(
            self.owner,
            ME,
            1 << 20,
            post=self.posted.append,
            submit=self._submit,
            report=self.reports.append,
        )

    def _submit(self, signal: NamedSignal, kwargs: Mapping[str, Any]) -> None:
        self.submitted.append((signal.name, dict(kwargs)))

    def hear(self, notice: dict[str, Any] | bytes) -> None:
        raw = notice if isinstance(notice, bytes) else json.dumps(notice).encode()
        self.inbox.handle({"type": "message", "channel": b"ctl", "data": raw})


def notice(kind: str, sender: str, **fields: Any) -> bytes:
    """A notice as the scripts write it (compact JSON, fields in their order)."""
    head = f'{{"v":1,"type":"{kind}","id":{json.dumps(sender)}'
    rest = "".join(f',"{k}":{v}' for k, v in fields.items())
    return (head + rest + "}").encode()


@pytest.fixture
def heard() -> Recorder:
    recorder = Recorder()
    for signal in (signals.instance_joined, signals.meta_changed, signals.instance_left):
        signal.connect(lambda *a, **k: None, sender=recorder.owner, weak=False)
    return recorder


def test_membership_signal_routes_joined_meta_and_left() -> None:
    """Joined/meta of others feed instance_joined/meta_changed; left feeds instance_left
    (anyone's); our own joined/meta and the lease notices feed none."""
    joined = ControlMessage(ControlType.JOINED, OTHER, record=RECORD)
    signal, kwargs = membership_signal(joined, ME) or (None, {})
    assert signal is signals.instance_joined and kwargs["instance"].id == OTHER
    meta = ControlMessage(ControlType.META, OTHER, record=RECORD)
    assert (membership_signal(meta, ME) or (None,))[0] is signals.meta_changed
    left = ControlMessage(ControlType.LEFT, OTHER)
    assert membership_signal(left, ME) == (signals.instance_left, {"instance_id": OTHER})
    assert membership_signal(ControlMessage(ControlType.META, ME, record=RECORD), ME) is None
    assert membership_signal(ControlMessage(ControlType.ELECTED, OTHER, term=3), ME) is None


def test_lease_hints_go_to_the_election(heard: Recorder) -> None:
    """elected and resigned are posted to the heartbeat thread; nothing is submitted."""
    heard.hear(notice("elected", OTHER, term=4))
    heard.hear(notice("resigned", OTHER, term=4))
    kinds = [e.message.type for e in heard.posted if isinstance(e, ControlReceived)]
    assert kinds == [ControlType.ELECTED, ControlType.RESIGNED]
    assert heard.submitted == []


def test_left_is_both_a_hint_and_a_signal(heard: Recorder) -> None:
    """A left notice may be a vacancy (the election's) and is instance_left (receivers')."""
    heard.hear(notice("left", OTHER))
    assert [e.message.type for e in heard.posted if isinstance(e, ControlReceived)] == [
        ControlType.LEFT
    ]
    assert heard.submitted == [("instance_left", {"instance_id": OTHER})]


def test_joined_goes_straight_to_the_dispatcher(heard: Recorder) -> None:
    """Joined and meta never wake the heartbeat thread."""
    heard.hear(notice("joined", OTHER, record=encode_record(RECORD)))
    heard.hear(notice("meta", OTHER, at=2.0, record=encode_record(RECORD)))
    assert heard.posted == []
    assert [name for name, _ in heard.submitted] == ["instance_joined", "meta_changed"]
    assert heard.submitted[0][1]["instance"].meta == {"a": 1}


def test_unheard_membership_notices_are_dropped_unread() -> None:
    """Nobody listens: a joined notice is dropped by its head, even one that would not
    decode (it is never read)."""
    recorder = Recorder()
    recorder.hear(notice("joined", OTHER, record="not a record"))
    assert recorder.posted == [] and recorder.submitted == [] and recorder.reports == []


def test_junk_is_reported_as_a_protocol_error(heard: Recorder) -> None:
    heard.hear(b"\xff not json")
    heard.hear(notice("elected", OTHER, term=0))
    assert len(heard.reports) == 2
    assert all(isinstance(r, ProtocolError) for r in heard.reports)
    assert heard.posted == [] and heard.submitted == []
