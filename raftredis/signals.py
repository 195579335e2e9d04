"""The signals a Candidate sends, in one blinker Namespace.

The sender is always the :class:`~raftredis.Candidate`; receivers take the
arguments below as keywords and should accept ``**extra`` for the future.

Where receivers run:

* **dispatch thread** (in order, one at a time): ``elected``, ``defeated``,
  ``state_changed``, ``leader_changed``, ``instance_joined``,
  ``instance_left``, ``meta_changed``, and ``error_occurred`` for errors
  found by the heartbeat and the control listener.
* **message thread** (in order, one at a time, no thread hop from the socket):
  ``message_received``, ``message_from_leader``, ``message_from_follower``,
  and ``error_occurred`` for errors found while receiving messages.

Neither is the heartbeat thread: a slow or raising receiver cannot delay
lease renewal or demotion.

==========================  ==========================  ========================
signal                      keyword arguments           node-raft-redis name
==========================  ==========================  ========================
``elected``                 ``term``                    ``"elected"``
``defeated``                ``leader``, ``term``        ``"defeated"``
``state_changed``           ``old``, ``new``, ``term``  ``"statechange"``
``leader_changed``          ``leader``, ``term``
``message_received``        ``message``                 ``"message"``
``message_from_leader``     ``message``                 ``"message:from:leader"``
``message_from_follower``   ``message``                 ``"message:from:follower"``
``error_occurred``          ``error``                   ``"error"``
``instance_joined``         ``instance``
``instance_left``           ``instance_id``
``meta_changed``            ``instance``
==========================  ==========================  ========================
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from blinker import NamedSignal, Namespace

from .election.commands import Defeated, Effect, Elected, LeaderChanged, StateChanged

__all__ = [
    "SEED_EVENTS",
    "by_name",
    "defeated",
    "elected",
    "error_occurred",
    "for_effect",
    "instance_joined",
    "instance_left",
    "leader_changed",
    "message_from_follower",
    "message_from_leader",
    "message_received",
    "meta_changed",
    "namespace",
    "state_changed",
]

namespace = Namespace()

elected = namespace.signal(
    "elected", doc="This instance became leader. Args: term (the fencing token)."
)
defeated = namespace.signal(
    "defeated",
    doc="This instance went from leader or candidate to follower. Args: leader (id or None), term.",
)
state_changed = namespace.signal(
    "state_changed", doc="The state changed. Args: old, new (State), term."
)
leader_changed = namespace.signal(
    "leader_changed", doc="The known leader changed. Args: leader (id or None), term."
)
message_received = namespace.signal(
    "message_received", doc="A message arrived from another instance. Args: message (Message)."
)
message_from_leader = namespace.signal(
    "message_from_leader", doc="A message from the current leader arrived. Args: message."
)
message_from_follower = namespace.signal(
    "message_from_follower",
    doc="A message from an instance that was not leader arrived. Args: message.",
)
error_occurred = namespace.signal(
    "error_occurred", doc="Something failed in the background. Args: error (an exception)."
)
instance_joined = namespace.signal(
    "instance_joined", doc="Another instance joined the kind. Args: instance (Instance)."
)
instance_left = namespace.signal(
    "instance_left", doc="An instance left or was pruned. Args: instance_id."
)
meta_changed = namespace.signal(
    "meta_changed", doc="Another instance changed its meta. Args: instance (Instance)."
)

#: node-raft-redis event names and the signals they map to.
SEED_EVENTS: dict[str, NamedSignal] = {
    "elected": elected,
    "defeated": defeated,
    "statechange": state_changed,
    "message": message_received,
    "message:from:leader": message_from_leader,
    "message:from:follower": message_from_follower,
    "error": error_occurred,
}

_BY_NAME: dict[str, NamedSignal] = {
    s.name: s
    for s in (
        elected,
        defeated,
        state_changed,
        leader_changed,
        message_received,
        message_from_leader,
        message_from_follower,
        error_occurred,
        instance_joined,
        instance_left,
        meta_changed,
    )
}


def by_name(name: str) -> NamedSignal:
    """The signal for a signal name (``"message_from_leader"``) or a node-raft-redis name
    (``"message:from:leader"``); ``KeyError`` lists the valid names."""
    signal = SEED_EVENTS.get(name) or _BY_NAME.get(name)
    if signal is None:
        valid = sorted({*SEED_EVENTS, *_BY_NAME})
        raise KeyError(f"no signal named {name!r}; valid names: {', '.join(valid)}")
    return signal


# The one table from the election's effects to the signals that announce them.
_EFFECT_SIGNALS: dict[type[Effect], NamedSignal] = {
    StateChanged: state_changed,
    Elected: elected,
    Defeated: defeated,
    LeaderChanged: leader_changed,
}


def for_effect(effect: Effect) -> tuple[NamedSignal, dict[str, Any]]:
    """The signal that announces ``effect``, and its keyword arguments (the effect's fields)."""
    return _EFFECT_SIGNALS[type(effect)], {f.name: getattr(effect, f.name) for f in fields(effect)}
