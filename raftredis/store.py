"""RedisStore: key names, the Lua scripts, and typed results. All I/O of an election.

Every method either returns a typed result or raises
:class:`~raftredis.errors.BackendError` (with the redis-py error as
``__cause__``). Scripts are registered per client (redis-py's ``Script``
reloads them after a Redis restart empties the script cache), each is safe
to run twice, and nothing that publishes is retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

import redis
from redis.commands.core import Script

from .errors import BackendError, RefusedError
from .keys import KeySpace
from .replies import (
    AcquireReply,
    HeartbeatReply,
    LeaseRecord,
    MemberRow,
    MembersReply,
    MemorySettings,
    RenewReply,
    TakeoverReply,
    owner_prefix,
    parse_lease,
)

__all__ = [
    "AcquireReply",
    "HeartbeatReply",
    "LeaseRecord",
    "MemberRow",
    "MembersReply",
    "MemorySettings",
    "RedisStore",
    "RenewReply",
    "TakeoverReply",
    "parse_lease",
    "reliable_prune_script",
    "reliable_send_script",
    "send_to_leader_script",
]

T = TypeVar("T")

log = logging.getLogger("raftredis")


def _load_lua(name: str, publish_command: str) -> str:
    lib = resources.files("raftredis").joinpath("lua/_lib.lua").read_text("utf-8")
    body = resources.files("raftredis").joinpath(f"lua/{name}.lua").read_text("utf-8")
    # The body runs as a function so that its reply can be wrapped with the
    # notices it collected (see announce() in _lib.lua).
    return (
        f"local PUBLISH = '{publish_command}'\n{lib}\nlocal function main()\n{body}\nend\n"
        "local reply = main()\n"
        "if returns_notices then return {reply, announced} end\nreturn reply\n"
    )


#: The last ARGV that makes a script return its notices instead of publishing them.
RETURN_NOTICES = "notices:return"
#: The scripts that announce something on the control or membership channel.
_NOTICE_SCRIPTS = frozenset({"acquire", "resign", "leave", "heartbeat", "members", "takeover"})


_SCRIPT_NAMES = ("acquire", "renew", "resign", "leave", "heartbeat", "members", "takeover")
#: Each script twice: publishing with PUBLISH, and with SPUBLISH (Redis Cluster).
_SCRIPT_TEXT = {
    command: {name: _load_lua(name, command) for name in _SCRIPT_NAMES}
    for command in ("PUBLISH", "SPUBLISH")
}
_SEND_TO_LEADER = {command: _load_lua("send_to_leader", command) for command in _SCRIPT_TEXT}
_RELIABLE_SEND = {command: _load_lua("reliable_send", command) for command in _SCRIPT_TEXT}
_RELIABLE_PRUNE = {command: _load_lua("reliable_prune", command) for command in _SCRIPT_TEXT}


def send_to_leader_script(keys: KeySpace) -> str:
    """The send_to_leader script for ``keys`` (publishing as the kind does), run by the Outbox."""
    return _SEND_TO_LEADER[keys.publish_command]


def reliable_send_script(keys: KeySpace) -> str:
    """The reliable_send script (adds a reliable message to a stream), run by ReliableOutbox."""
    return _RELIABLE_SEND[keys.publish_command]


def reliable_prune_script(keys: KeySpace) -> str:
    """The reliable_prune script (removes what departed reliable readers left), run by
    the leader's ReliablePruner."""
    return _RELIABLE_PRUNE[keys.publish_command]


def _score_ms(value: Any) -> int | None:
    """A membership score as integer ms; None for a missing or non-finite one."""
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _text(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


class RedisStore:
    """All Redis I/O of one Candidate.

    ``commands`` is used for everything that may be retried once;
    ``publisher`` (no retries) for what publishes a notice with a change.
    User messages go through the Outbox (outbox.py).
    """

    def __init__(
        self,
        commands: redis.Redis,
        publisher: redis.Redis,
        keys: KeySpace,
        member_id: str,
        sign: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.commands = commands
        self.publisher = publisher
        self.keys = keys
        self.member_id = member_id
        #: With a secret: signs a notice. The scripts then return their notices
        #: and this store publishes them, signed, right after the script.
        self.sign = sign
        self._info_denied = False
        self._scripts: dict[str, Script] = {
            name: commands.register_script(text)
            for name, text in _SCRIPT_TEXT[keys.publish_command].items()
        }

    # ------------------------------------------------------------ election

    def server_time_ms(self) -> int:
        """The server's clock (TIME), in ms."""
        seconds, micros = self._call("reading the server time", self.commands.time)
        return int(seconds) * 1000 + int(micros) // 1000

    def replicas_acknowledging(self, wanted: int, timeout_ms: int) -> int:
        """How many replicas have every write made so far (``WAIT wanted timeout_ms``).

        WAIT counts the acknowledgements of the last write made *on its own
        connection*, and the acquire ran on whichever connection the pool gave
        it. So a PUBLISH on a channel nobody listens to goes first, on the same
        connection: Redis replicates it after the acquire's writes, so a replica
        that acknowledged it has the lease too.
        """

        def publish_then_wait() -> Any:
            pipe = self.commands.pipeline(transaction=False)
            pipe.execute_command(self.keys.publish_command, f"{self.keys.base}:replicated", b"")
            pipe.execute_command("WAIT", wanted, timeout_ms)
            return pipe.execute()[1]

        return int(self._call("waiting for replicas (WAIT)", publish_then_wait))

    def heartbeat_full(self, record: str, member_expiry_ms: int, mode: str = "") -> HeartbeatReply:
        """Refresh membership by server time, write our record, prune, read the lease.

        ``mode`` "join" refuses (``taken``) when a live member already has our
        id; "announce" publishes ``joined`` even if we were present.
        """
        k = self.keys
        now, added, lease, *rest = self._script(
            "heartbeat",
            [k.members, k.meta, k.leader, k.leader_copy],
            [self.member_id, member_expiry_ms, record, k.control, mode, k.membership],
        )
        return HeartbeatReply(
            added=added == 1,
            lease=parse_lease(lease),
            server_ms=int(now),
            taken=added == -1,
            members=int(rest[0]) if rest else None,
        )

    def heartbeat(self, expires_ms: int, read_lease: bool) -> HeartbeatReply:
        """The routine refresh: a pipelined ZADD (and GET of the lease), no script."""
        k = self.keys

        def run() -> list[Any]:
            pipe = self.commands.pipeline(transaction=False)
            pipe.zadd(k.members, {self.member_id: expires_ms})
            if read_lease:
                pipe.get(k.leader)
            replies: list[Any] = pipe.execute()
            return replies

        replies = self._call("refreshing membership", run)
        lease = parse_lease(replies[1]) if read_lease else None
        return HeartbeatReply(added=bool(replies[0]), lease=lease)

    def acquire(self, known_term: int, ttl_ms: int, fast: bool = False) -> AcquireReply:
        """Take the lease if free; otherwise report who holds it. ``fast`` (fast
        failover): also say whether our presence channel has a listener."""
        k = self.keys
        presence = k.presence(self.member_id) if fast else ""
        reply = self._script(
            "acquire",
            [k.leader, k.term, k.leader_copy, k.takeover, k.presence_term],
            [self.member_id, known_term, ttl_ms, k.control, presence],
        )
        status, value, remaining = reply[:3]
        lease = parse_lease(value)
        if lease is None:
            raise BackendError(f"acquire returned an unreadable lease {value!r}")
        acquired = _text(status) == "acquired"
        extra = reply[3] if len(reply) > 3 else None
        return AcquireReply(
            acquired,
            lease,
            int(remaining),
            vanished=not acquired and extra is not None,
            present=acquired and extra == 1,
        )

    def takeover(self, known_term: int, ttl_ms: int, window_ms: int) -> TakeoverReply:
        """Fast failover: take the lease of a holder whose presence connection has been
        gone for ``window_ms`` (or record that it is gone now); see ``lua/takeover.lua``."""
        k = self.keys
        reply = self._script(
            "takeover",
            [k.leader, k.term, k.leader_copy, k.takeover, k.presence_term],
            [self.member_id, known_term, ttl_ms, k.control, k.presence_prefix, window_ms],
        )
        status = _text(reply[0])
        if status == "vacant":
            return TakeoverReply(status, None)
        lease = parse_lease(reply[1])
        if lease is None:
            raise BackendError(f"takeover returned an unreadable lease {reply[1]!r}")
        present = status == "acquired" and len(reply) > 3 and reply[3] == 1
        return TakeoverReply(status, lease, int(reply[2]), present)

    def presence_refused(self) -> str | None:
        """Fast failover: None if this Redis user may run what it needs (``PING``,
        ``PUBSUB NUMSUB``, our presence channel), else what Redis refused. One round trip."""
        k = self.keys
        channel = k.presence(self.member_id)

        def run() -> list[Any]:
            pipe = self.commands.pipeline(transaction=False)
            pipe.ping()
            pipe.execute_command("PUBSUB", "SHARDNUMSUB" if k.sharded else "NUMSUB", channel)
            pipe.execute_command(k.publish_command, channel, b"")  # the channel's ACL
            replies: list[Any] = pipe.execute(raise_on_error=False)
            return replies

        replies = self._call("checking fast failover's commands", run)
        refused = [str(r) for r in replies if isinstance(r, redis.ResponseError)]
        return "; ".join(refused) if refused else None

    def presence_listeners(
        self, instance_id: str, count_members: bool = False
    ) -> tuple[int, int | None, int | None]:
        """Fast failover: how many connections listen on ``instance_id``'s presence
        channel (one ``PUBSUB NUMSUB``, or ``SHARDNUMSUB`` in a Redis Cluster).

        With ``count_members``, also the kind's members (one ``ZRANGEBYSCORE``,
        which the documented ACL already allows, in the same round trip): their
        number, and this instance's place (0-based) among them by id,
        ``instance_id`` left out (None when it is not a member). Returns
        ``(listeners, members, rank)``; the last two are None without
        ``count_members``.
        """
        k = self.keys

        def run() -> list[Any]:
            pipe = self.commands.pipeline(transaction=False)
            command = "SHARDNUMSUB" if k.sharded else "NUMSUB"
            pipe.execute_command("PUBSUB", command, k.presence(instance_id))
            if count_members:
                pipe.zrangebyscore(k.members, "-inf", "+inf")
            replies: list[Any] = pipe.execute()
            return replies

        replies = self._call("counting a presence channel's listeners", run)
        numsub = replies[0]
        listeners = int(numsub[1]) if isinstance(numsub, (list, tuple)) and len(numsub) > 1 else 0
        if not count_members:
            return listeners, None, None
        ids = [_text(m) for m in replies[1]]  # junk members must not break the count
        others = sorted(i for i in ids if i != instance_id)
        rank = others.index(self.member_id) if self.member_id in others else None
        return listeners, len(ids), rank

    def renew(
        self,
        term: int,
        ttl_ms: int,
        expires_ms: int,
        last_expires_ms: int,
        keep_copy: bool,
        clear_suspicion: bool = False,
    ) -> RenewReply:
        """Extend our lease if we still hold it (``last_expires_ms``: the expiry we
        wrote last, so that a lease Redis lost is put back only if still good).

        ``keep_copy``: update the lease's copy too (one more command), which a
        Redis that may evict needs (see ``KeySpace.leader_copy``).
        ``clear_suspicion`` (fast failover): drop a takeover suspicion, as the first
        renew after our presence connection subscribed again must.
        """
        k = self.keys
        prefix = owner_prefix(term, self.member_id)
        reply = self._script(
            "renew",
            [k.leader, k.leader_copy, k.term, k.takeover],
            [
                prefix,
                f"{prefix}{expires_ms}",
                ttl_ms,
                term,
                last_expires_ms,
                int(keep_copy),
                int(clear_suspicion),
            ],
        )
        status = _text(reply[0])
        if status == "renewed":
            return RenewReply(True, restored=len(reply) > 1)
        if status == "taken":
            return RenewReply(False, parse_lease(reply[1]), int(reply[2]))
        return RenewReply(False)

    def resign(self, term: int) -> bool:
        """Delete our lease of ``term`` if it is still ours; True if it was."""
        k = self.keys
        prefix = owner_prefix(term, self.member_id)
        return bool(
            self._script(
                "resign", [k.leader, k.leader_copy], [prefix, k.control, self.member_id, term]
            )
        )

    def leave(self, term: int | None) -> None:
        """Resign (when ``term`` is given) and remove our membership."""
        k = self.keys
        prefix = "" if term is None else owner_prefix(term, self.member_id)
        self._script(
            "leave",
            [k.leader, k.members, k.meta, k.leader_copy],
            [prefix, k.control, self.member_id, "" if term is None else term],
        )

    # ---------------------------------------------------------- discovery

    def members(self) -> MembersReply:
        """Prune, then every live member with its record, and the lease: one round trip."""
        k = self.keys
        now, lease, flat = self._script(
            "members", [k.members, k.meta, k.leader, k.leader_copy], [k.control]
        )
        rows = []
        for i in range(0, len(flat), 3):
            expires = _score_ms(flat[i + 1])
            if expires is not None:  # a junk member scored +inf is not a member
                rows.append(MemberRow(_text(flat[i]), expires, flat[i + 2]))
        return MembersReply(int(now), parse_lease(lease), rows)

    def lease(self) -> LeaseRecord | None:
        """The lease in force now: the lease key, or its copy if the key vanished before
        the lease ran out (by the server's clock). One round trip."""
        k = self.keys

        def run() -> list[Any]:
            pipe = self.commands.pipeline(transaction=False)
            pipe.get(k.leader)
            pipe.get(k.leader_copy)
            pipe.time()
            replies: list[Any] = pipe.execute()
            return replies

        current, copy, (seconds, micros) = self._call("reading the lease", run)
        lease = parse_lease(current)
        if lease is not None or copy is None:
            return lease
        kept = parse_lease(copy)
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        return kept if kept is not None and kept.expires_ms > now_ms else None

    def memory_settings(self) -> MemorySettings:
        """What Redis' ``INFO`` says of its memory limit, eviction policy and evicted keys.

        Unknown (Nones) when it fails; when the ACL denies ``INFO``, it is not
        asked again by this store (each denial is an entry in ``ACL LOG``).
        """
        unknown = MemorySettings(None, None, None)
        if self._info_denied:
            return unknown
        try:
            info = self._call("reading INFO", self.commands.info)
        except RefusedError as exc:
            self._info_denied = True
            return MemorySettings(None, None, None, refused=str(exc))
        except BackendError:
            return unknown
        return MemorySettings(
            _int_or_none(info.get("maxmemory")),
            _text_or_none(info.get("maxmemory_policy")),
            _int_or_none(info.get("evicted_keys")),
        )

    def member(self, instance_id: str) -> tuple[bytes | None, int | None]:
        """One member's stored record and membership expiry (server ms), pipelined."""
        k = self.keys

        def run() -> list[Any]:
            pipe = self.commands.pipeline(transaction=False)
            pipe.hget(k.meta, instance_id)
            pipe.zscore(k.members, instance_id)
            replies: list[Any] = pipe.execute()
            return replies

        record, score = self._call("reading a member", run)
        return record, _score_ms(score)

    def set_record(self, record: str, notice: str) -> None:
        """Store our record and announce the change, atomically (MULTI/EXEC)."""
        k = self.keys

        def run() -> None:
            pipe = self.publisher.pipeline(transaction=True)
            pipe.hset(k.meta, self.member_id, record)
            body = notice if self.sign is None else self.sign(notice.encode())
            pipe.execute_command(k.publish_command, k.membership, body)
            pipe.execute()

        self._call("storing meta", run)

    # ------------------------------------------------------------ plumbing

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        script = self._scripts[name]
        if self.sign is None or name not in _NOTICE_SCRIPTS:
            return self._call(f"running the {name} script", script, keys=keys, args=args)
        reply, notices = self._call(
            f"running the {name} script", script, keys=keys, args=[*args, RETURN_NOTICES]
        )
        if notices:
            self._publish_signed(notices)
        return reply

    def _publish_signed(self, flat: list[Any]) -> None:
        """Publish what a script announced, signed, on the publisher (never retried).

        Not atomic with the script: a crash or a Redis error in between loses
        these notices. They are hints (the others find out by their own timers),
        so that is logged, not raised: the script's change did happen.
        """
        sign = self.sign
        assert sign is not None
        try:
            pipe = self.publisher.pipeline(transaction=False)
            for i in range(0, len(flat) - 1, 2):
                body = flat[i + 1]
                signed = sign(body if isinstance(body, bytes) else str(body).encode())
                pipe.execute_command(self.keys.publish_command, flat[i], signed)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("raftredis: could not publish %d signed notice(s): %s", len(flat) // 2, exc)

    @staticmethod
    def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.ResponseError as exc:
            # An error reply is an answer: Redis is there and said no (OOM, READONLY...).
            raise RefusedError(f"Redis refused {what}: {exc}") from exc
        except redis.RedisError as exc:
            raise BackendError(f"Redis failed while {what}: {exc}") from exc
        except OSError as exc:
            raise BackendError(f"Redis failed while {what}: {exc}") from exc
