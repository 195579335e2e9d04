"""The demo's job queue in Redis: its keys, the fenced push script, the counts.

Redis keys used besides raftredis' own (``K`` is the kind)::

    demo:{K}:jobs     list of pending jobs (JSON: seq, term, leader, pushed_at)
    demo:{K}:seq      number of jobs pushed (also the last sequence number)
    demo:{K}:done     set of the sequence numbers processed
    demo:{K}:fence    the newest leader term seen by the push script
    demo:{K}:fenced   number of pushes refused because their term was stale
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

__all__ = ["DEFAULT_KIND", "PUSH_LUA", "DemoKeys", "read_job_counts"]

DEFAULT_KIND = "demo-jobs"

# KEYS: 1 fence, 2 jobs, 3 seq, 4 fenced counter
# ARGV: 1 term of the pushing leader, 2 its id, 3 its wall clock (s)
# Returns {"pushed", seq} or {"fenced", newest term seen}.
PUSH_LUA = """
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
local term = tonumber(ARGV[1])
if term < fence then
  redis.call('INCR', KEYS[4])
  return {'fenced', fence}
end
if term > fence then
  redis.call('SET', KEYS[1], ARGV[1])
end
local seq = redis.call('INCR', KEYS[3])
local job = cjson.encode({seq = seq, term = term, leader = ARGV[2], pushed_at = ARGV[3]})
redis.call('LPUSH', KEYS[2], job)
return {'pushed', seq}
"""


@dataclass(frozen=True)
class DemoKeys:
    """The demo's Redis keys for one kind (``{kind}`` is a Redis Cluster hash tag)."""

    kind: str

    @property
    def base(self) -> str:
        return f"demo:{{{self.kind}}}"

    @property
    def jobs(self) -> str:
        return f"{self.base}:jobs"

    @property
    def seq(self) -> str:
        return f"{self.base}:seq"

    @property
    def done(self) -> str:
        return f"{self.base}:done"

    @property
    def fence(self) -> str:
        return f"{self.base}:fence"

    @property
    def fenced(self) -> str:
        return f"{self.base}:fenced"

    def all(self) -> list[str]:
        return [self.jobs, self.seq, self.done, self.fence, self.fenced]


def read_job_counts(client: redis.Redis, keys: DemoKeys) -> dict[str, int]:
    """The jobs pushed, processed, still queued, lost and fenced, read from Redis.

    Lost jobs were taken off the list by a process that died before recording
    them: the queue is at-most-once by design. Raises :class:`redis.RedisError`.
    """
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.seq)
    pipe.scard(keys.done)
    pipe.llen(keys.jobs)
    pipe.get(keys.fenced)
    seq, done, queued, fenced = pipe.execute()
    pushed, processed, queued = int(seq or 0), int(done), int(queued)
    return {
        "pushed": pushed,
        "processed": processed,
        "queued": queued,
        "lost": pushed - processed - queued,
        "fenced": int(fenced or 0),
    }
