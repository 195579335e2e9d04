"""raftredis: leader election, discovery and messaging for the instances of a service, on Redis.

A Python port, and rethink, of node-raft-redis. Start a :class:`Candidate`
in every instance of a service ("a kind"); exactly one of them leads at a
time, all of them can see each other and send each other JSON messages.
"""

from __future__ import annotations

from . import signals
from .candidate import Candidate
from .client import Client
from .config import Config
from .errors import (
    AskTimeoutError,
    BackendError,
    BatchError,
    ConfigurationError,
    EvictionWarning,
    InternalError,
    LeaderTimeoutError,
    LeaseVanishedError,
    MessageError,
    MessagesLostError,
    NoLeaderError,
    NotRunningError,
    ProtocolError,
    RaftRedisError,
    ReceiverError,
    RefusedError,
    RemoteError,
    SignalOverflowError,
    SlowReceiverError,
    UndeliverableError,
)
from .leadership import Leadership
from .models import Instance, Message, Scope, State
from .outbox import MessageBatch
from .timing import Timings

__version__ = "0.1.0"

__all__ = [
    "AskTimeoutError",
    "BackendError",
    "BatchError",
    "Candidate",
    "Client",
    "Config",
    "ConfigurationError",
    "EvictionWarning",
    "Instance",
    "InternalError",
    "LeaderTimeoutError",
    "Leadership",
    "LeaseVanishedError",
    "Message",
    "MessageBatch",
    "MessageError",
    "MessagesLostError",
    "NoLeaderError",
    "NotRunningError",
    "ProtocolError",
    "RaftRedisError",
    "ReceiverError",
    "RefusedError",
    "RemoteError",
    "Scope",
    "SignalOverflowError",
    "SlowReceiverError",
    "State",
    "Timings",
    "UndeliverableError",
    "__version__",
    "signals",
]
