"""ChaosCluster: real worker processes around their own redis-server, faults, a verdict.

::

    with ChaosCluster("sigkill-leader", run_dir=tmp_path, n=5) as cluster:
        leader = cluster.wait_for_one_leader()
        cluster.kill(leader)              # SIGKILL, noted as a fault
        cluster.spawn()                   # a replacement
        cluster.wait_for_one_leader(other_than=leader)
    report = cluster.report               # the checker's verdict over every log
    cluster.assert_promises()

Each cluster starts its own :class:`~raftredis.testing.RedisServer`, and its
workers (``worker.py``, one :class:`raftredis.Candidate` each) as
subprocesses in their own sessions, each with a JSON-lines log in
``run_dir``, optionally behind its own :class:`~proxy.TcpProxy`. The harness
writes ``run_dir/harness.jsonl``: the settings, every process spawned and
reaped, every fault (``fault(kind, target)``), Redis outages, and the start
of the teardown. On leaving the ``with`` block every worker is stopped
(``exit`` on stdin, then SIGTERM, then SIGKILL), Redis is stopped, the
checker reads the logs, and the report is written as JSON to
``$CHAOS_REPORT_DIR/<scenario>.json`` (default ``.chaos/`` in the repository).
No process is left behind: every one the harness started is reaped, and a
final check with psutil fails the test if one survived.

``CHAOS_SCALE`` (``short``, the default, or ``full``) sets how many faults a
scenario injects: see :func:`chaos_scale.scaled`.

With ``client_names=True`` each worker's Redis URL carries
``?client_name=chaos-<name>``, so that every connection of its Candidate is
named after it in ``CLIENT LIST``. :meth:`ChaosCluster.connections` finds a
worker's connections by that name and also by address (the worker's own
sockets, or its proxy's connections to Redis), so a connection that renamed
itself is still found; :meth:`ChaosCluster.client_kill` and
:meth:`ChaosCluster.pubsub_overflow` close them from Redis' side while the
worker runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import psutil
import redis
from chaos_scale import scale
from checker import ChaosReport, check_run
from event_log import EventLog, EventTail
from proxy import TcpProxy

from raftredis import Timings
from raftredis.keys import KeySpace
from raftredis.store import LeaseRecord, parse_lease
from raftredis.testing import RedisServer, wait_until

#: redis-server arguments that keep every acknowledged write across a SIGKILL.
AOF = ("--appendonly", "yes", "--appendfsync", "always")
#: What :func:`connection_role` calls a Candidate's connections.
PUBSUB, PUBLISHER, COMMANDS = "pubsub", "publisher", "commands"
ROLES = (COMMANDS, PUBLISHER, PUBSUB)
#: The last command of a connection that publishes (the PublishPool, the store's notices).
_PUBLISHING = frozenset({"publish", "spublish", "exec", "multi"})

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER = HERE / "worker.py"

#: Every process a ChaosCluster started in this test session: checked for leftovers.
_spawned: dict[int, str] = {}


def report_dir() -> Path:
    return Path(os.environ.get("CHAOS_REPORT_DIR") or REPO / ".chaos")


def named_url(url: str, client_name: str) -> str:
    """``url`` with ``client_name=...`` added to its query (redis://, rediss://,
    unix:// URLs; others, which take no query, are returned unchanged)."""
    if urlsplit(url).scheme not in ("redis", "rediss", "unix") or "client_name=" in url:
        return url
    return f"{url}{'&' if '?' in url else '?'}client_name={client_name}"


def connection_role(row: dict[str, str]) -> str:
    """The kind of a Candidate's connection, from its CLIENT LIST row.

    ``pubsub``: subscribed to something (a listener); ``publisher``: its last
    command published (the PublishPool's connections, the notices published with a
    change); ``commands``: the rest (the heartbeat's scripts, reads). A
    connection that has just (re)connected counts as ``commands`` until it has
    subscribed or published.
    """
    counts = (row.get(k, "0") for k in ("sub", "psub", "ssub"))
    if "P" in row.get("flags", "") or any(c.isdigit() and int(c) > 0 for c in counts):
        return PUBSUB
    if row.get("cmd", "") in _PUBLISHING:
        return PUBLISHER
    return COMMANDS


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def leftover_processes() -> list[psutil.Process]:
    """Processes started by a ChaosCluster that are still running (zombies excluded)."""
    out = []
    for pid, cmd in list(_spawned.items()):
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and cmd in " ".join(proc.cmdline()):
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            _spawned.pop(pid, None)
    return out


class LogTail:
    """Reads a worker's log as it grows; keeps the events and the leadership state."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._tail = EventTail(path)
        self.open_term: int | None = None  # the poller says: leading in this term now
        self.started = False
        self.start_failed = False
        self.exited = False

    def refresh(self) -> list[dict[str, Any]]:
        for event in self._tail.read_new():
            self._see(event)
            self.events.append(event)
        return self.events

    def _see(self, e: dict[str, Any]) -> None:
        ev = e.get("event")
        if ev == "lead_begin":
            self.open_term = int(e["term"])
        elif ev == "lead_end":
            self.open_term = None
        elif ev == "started":
            self.started = True
        elif ev == "start_failed":
            self.start_failed = True
        elif ev == "exit":
            self.exited = True


class WorkerProc:
    """One worker process: its Popen, log, Candidate id, and proxy (if any)."""

    def __init__(
        self,
        name: str,
        cid: str,
        proc: subprocess.Popen[bytes],
        log_path: Path,
        proxy: TcpProxy | None,
        client_name: str | None = None,
    ) -> None:
        self.name = name
        self.id = cid
        self.proc = proc
        self.log_path = log_path
        self.proxy = proxy
        #: The client name of its Redis connections (None: not named).
        self.client_name = client_name
        self.tail = LogTail(log_path)
        self.stopped = False  # SIGSTOPped
        self.reaped = False

    def __repr__(self) -> str:
        return f"<worker {self.name} pid={self.pid} id={self.id}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def events(self, event: str | None = None, since: float = 0.0) -> list[dict[str, Any]]:
        """This worker's log lines so far (of one ``event`` type, from time ``since``)."""
        events = self.tail.refresh()
        return [e for e in events if (event is None or e.get("event") == event) and e["t"] >= since]

    def last(self, event: str) -> dict[str, Any] | None:
        found = self.events(event)
        return found[-1] if found else None

    def leading(self) -> int | None:
        """The term this worker's poller last saw it lead in (None: not leading)."""
        self.tail.refresh()
        return self.tail.open_term if self.running and not self.stopped else None

    def send(self, command: str) -> bool:
        """Write one command line to the worker's stdin; False if it is gone."""
        stdin = self.proc.stdin
        if stdin is None or not self.running:
            return False
        try:
            stdin.write(command.encode() + b"\n")
            stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False


class ChaosCluster:
    """Redis, N worker processes, faults, and the checker's report at the end."""

    def __init__(
        self,
        scenario: str,
        *,
        run_dir: Path,
        n: int = 5,
        lease_ttl: float = 1.0,
        proxied: bool = False,
        kind: str = "chaos",
        poll_interval: float = 0.001,
        known_bug: str | None = None,
        client_names: bool = False,
        redis_args: Sequence[str] = (),
        worker_args: Sequence[str] = (),
    ) -> None:
        """``known_bug``: this scenario reproduces a library bug (its test is an
        xfail); the summary lists its report apart. ``client_names``: name each
        worker's Redis connections ``chaos-<name>`` (a URL query; see the module
        docstring). Off by default: a named connection sends CLIENT SETNAME on
        every connect and waits for the reply before its first command, which
        changes what a blackholed client gets to send. ``redis_args``: more
        redis-server arguments (:data:`AOF` keeps every write across a restart,
        see :meth:`start_redis_kept`). ``worker_args``: more ``worker.py``
        arguments for every worker."""
        self.scenario = scenario
        self.run_dir = Path(run_dir)
        self.n = n
        self.lease_ttl = lease_ttl
        self.timings = Timings.from_lease(lease_ttl)
        self.proxied = proxied
        self.kind = kind
        self.poll_interval = poll_interval
        self.client_names = client_names
        self.keys = KeySpace("raftredis", kind)
        self.redis = RedisServer(extra_args=redis_args)
        self.worker_args = tuple(worker_args)
        self.workers: list[WorkerProc] = []  # every worker ever started, in order
        self.report: ChaosReport | None = None
        self.report_path: Path | None = None
        self.extra: dict[str, Any] = {"known_bug": known_bug} if known_bug else {}
        self._admin: redis.Redis | None = None
        self._log: EventLog | None = None
        self._counter = 0
        self._redis_paused = False

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> ChaosCluster:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._log = EventLog(self.run_dir / "harness.jsonl")
        try:
            redis_fields = self._start_redis()
            t = self.timings
            self._log.write(
                "run_start",
                scenario=self.scenario,
                scale=scale(),
                n=self.n,
                lease_ttl=t.lease_ttl,
                renew_deadline=t.renew_deadline,
                renew_interval=t.renew_interval,
                member_expiry=t.member_expiry,
                proxied=self.proxied,
                client_names=self.client_names,
                **redis_fields,
            )
            started = [self.spawn(wait=False) for _ in range(self.n)]
            self.wait_started(started)
        except BaseException:
            self._teardown()
            raise
        return self

    def _start_redis(self) -> dict[str, Any]:
        """Start Redis and the admin client; the fields this adds to the run_start line.

        A subclass may run the workers against something else (a Redis Cluster).
        """
        self.redis.start()
        _spawned[self.redis.pid] = "redis-server"
        self._admin = self.redis.client(socket_timeout=2.0, socket_connect_timeout=2.0)
        return {"redis_port": self.redis.port}

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._teardown()
        if exc_type is None:
            left = leftover_processes()
            assert not left, f"processes left behind: {left}"

    @property
    def admin(self) -> redis.Redis:
        """A redis-py client straight to the server (not through any proxy)."""
        if self._admin is None:
            raise RuntimeError("the cluster is not running")
        return self._admin

    @property
    def log(self) -> EventLog:
        if self._log is None:
            raise RuntimeError("the cluster is not running")
        return self._log

    def live(self) -> list[WorkerProc]:
        """Workers whose process runs (frozen ones included)."""
        return [w for w in self.workers if w.running]

    # -------------------------------------------------------------- workers

    def spawn(
        self, *, proxied: bool | None = None, wait: bool = True, cid: str | None = None
    ) -> WorkerProc:
        """Start one more worker (behind its own proxy if ``proxied``), with the
        Candidate id ``cid`` (default: a new one)."""
        proxied = self.proxied if proxied is None else proxied
        name = f"w{self._counter:03d}"
        self._counter += 1
        cid = cid or f"{name}-{uuid.uuid4().hex[:8]}"
        proxy = None
        url = self.redis.url
        if proxied:
            proxy = TcpProxy("127.0.0.1", self.redis.port, name=f"proxy-{name}").start()
            url = proxy.url
        client_name = None
        if self.client_names:
            client_name = f"chaos-{name}"
            url = named_url(url, client_name)
        log_path = self.run_dir / f"{name}.jsonl"
        stderr: IO[bytes]
        with open(self.run_dir / f"{name}.stderr", "wb") as stderr:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    "--redis",
                    url,
                    "--kind",
                    self.kind,
                    "--lease-ttl",
                    repr(self.lease_ttl),
                    "--log",
                    str(log_path),
                    "--id",
                    cid,
                    "--name",
                    name,
                    "--poll-interval",
                    repr(self.poll_interval),
                    *self.worker_args,
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                cwd=str(REPO),
            )
        _spawned[proc.pid] = str(log_path)
        worker = WorkerProc(name, cid, proc, log_path, proxy, client_name)
        self.workers.append(worker)
        self.log.write("spawn", name=name, pid=proc.pid, id=cid, proxied=proxied, url=url)
        if wait:
            self.wait_started([worker])
        return worker

    def wait_started(self, workers: list[WorkerProc], timeout: float = 30.0) -> None:
        """Wait until each worker has started (its start() returned)."""

        def all_started() -> bool:
            for w in workers:
                w.tail.refresh()
                if w.tail.start_failed or not w.running:
                    raise AssertionError(f"{w} failed to start: {self.describe(w)}")
            return all(w.tail.started for w in workers)

        wait_until(all_started, timeout, lambda: self.describe(*workers))

    def restart(
        self, worker: WorkerProc, sig: int = signal.SIGKILL, *, wait: bool = True
    ) -> WorkerProc:
        """Kill ``worker`` (SIGKILL unless told; a fault) if it runs, and start a
        replacement (a new process, with a new id); ``wait`` for it to start."""
        if worker.running:
            self.kill(worker, sig)
        return self.spawn(proxied=worker.proxy is not None, wait=wait)

    def restart_same_id(
        self, worker: WorkerProc, sig: int = signal.SIGKILL, *, converge: bool = False
    ) -> WorkerProc:
        """Kill ``worker`` (a fault) if it runs, and start a new process with the same
        Candidate id once Redis no longer lists that id as a live member (start()
        refuses an id in use). Returns the new worker, started."""
        if worker.running:
            self.kill(worker, sig, converge=converge)
        self.wait_member_gone(worker.id)
        return self.spawn(proxied=worker.proxy is not None, cid=worker.id)

    def wait_member_gone(self, cid: str, timeout: float | None = None) -> None:
        """Wait until the membership of ``cid`` has run out (by the server's clock)."""

        def gone() -> bool:
            try:
                score = self.admin.zscore(self.keys.members, cid)
                seconds, micros = self.admin.time()
            except redis.RedisError:
                return False
            return score is None or score < seconds * 1000 + micros // 1000

        limit = self.timings.member_expiry + 5.0 if timeout is None else timeout
        wait_until(gone, limit, lambda: f"{cid} is still a member", interval=0.05)

    def kill(
        self, worker: WorkerProc, sig: int = signal.SIGKILL, *, converge: bool = True
    ) -> float:
        """Send ``sig`` (noted as a fault) and, for SIGKILL/SIGTERM, reap the process.

        Returns the fault's time (taken just before the signal was sent).
        """
        kind = {signal.SIGKILL: "sigkill", signal.SIGTERM: "sigterm"}.get(sig, f"signal{sig}")
        t = self.fault(kind, worker, converge=converge)
        with contextlib.suppress(ProcessLookupError):
            worker.proc.send_signal(sig)
            if worker.stopped and sig != signal.SIGKILL:
                worker.proc.send_signal(signal.SIGCONT)
        worker.stopped = False
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self._reap(worker, timeout=15.0, expected=sig == signal.SIGKILL)
        return t

    def sigstop(self, worker: WorkerProc, *, converge: bool = True) -> float:
        """Freeze a worker (SIGSTOP), noted as a fault; returns the fault's time."""
        t = self.fault("sigstop", worker, converge=converge)
        worker.proc.send_signal(signal.SIGSTOP)
        worker.stopped = True
        return t

    def sigcont(self, worker: WorkerProc, *, converge: bool = False) -> float:
        """Thaw a frozen worker (SIGCONT), noted as a fault; returns the fault's time."""
        t = self.fault("sigcont", worker, converge=converge)
        worker.proc.send_signal(signal.SIGCONT)
        worker.stopped = False
        return t

    def _reap(self, worker: WorkerProc, timeout: float, expected: bool) -> int | None:
        try:
            code = worker.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if not worker.reaped:
            worker.reaped = True
            self.log.write(
                "exit", name=worker.name, pid=worker.pid, returncode=code, expected=expected
            )
            if worker.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    worker.proc.stdin.close()
            if worker.proxy is not None:
                worker.proxy.close()
        return code

    def note_exits(self) -> list[WorkerProc]:
        """Reap (and log) workers that exited on their own; returns them."""
        gone = []
        for w in self.workers:
            if not w.reaped and w.proc.poll() is not None:
                self._reap(w, timeout=1.0, expected=False)
                gone.append(w)
        return gone

    # --------------------------------------------------------------- faults

    def fault(
        self,
        kind: str,
        target: WorkerProc | str | None = None,
        *,
        converge: bool = True,
        **extra: Any,
    ) -> float:
        """Note a fault at time.time() (call it just before acting); returns that time.

        ``converge``: the checker measures the time from this fault to the
        next election (false for faults after which none is expected).
        """
        name = target.name if isinstance(target, WorkerProc) else target
        fields: dict[str, Any] = {"kind": kind, "target": name, "converge": converge, **extra}
        if isinstance(target, WorkerProc):
            fields["pid"] = target.pid
            fields["id"] = target.id
        return self.log.write("fault", **fields)

    def outage_start(self) -> float:
        return self.log.write("outage_start")

    def outage_end(self) -> float:
        return self.log.write("outage_end")

    def pause_redis(self) -> float:
        """SIGSTOP redis-server (a fault and the start of an outage)."""
        t = self.fault("redis_pause", "redis", converge=False)
        self.outage_start()
        self.redis.pause()
        self._redis_paused = True
        return t

    def resume_redis(self) -> float:
        """SIGCONT redis-server (a fault, converging: a leader is expected after it).

        The outage ends, and the fault is noted, just *before* the signal: a
        leader may be elected the moment Redis runs again."""
        self.outage_end()
        t = self.fault("redis_resume", "redis", converge=True)
        self.redis.resume()
        self._redis_paused = False
        return t

    def kill_redis(self) -> float:
        """SIGKILL redis-server (a fault and the start of an outage)."""
        t = self.fault("redis_kill", "redis", converge=False)
        self.outage_start()
        self.redis.kill()
        return t

    def start_redis_kept(self) -> float:
        """Start the killed redis-server again on the same port, with what it saved
        (all of it with :data:`AOF`); noted like :meth:`start_redis_empty`."""
        self.outage_end()
        t = self.fault("redis_restart_kept", "redis", converge=True)
        self.redis.start()
        _spawned[self.redis.pid] = "redis-server"
        return t

    def start_redis_empty(self) -> float:
        """Start the killed redis-server again, empty, on the same port.

        The outage ends, and the fault is noted, just *before* the start: the
        workers may elect a leader before ``RedisServer.restart()`` has seen the
        server answer."""
        self.outage_end()
        t = self.fault("redis_restart", "redis", converge=True)
        self.redis.restart()
        _spawned[self.redis.pid] = "redis-server"
        return t

    # ------------------------------------------------- connections of a worker

    def _addresses(self, worker: WorkerProc) -> set[str]:
        """``host:port`` under which Redis lists ``worker``'s connections: its proxy's
        connections to Redis, or the worker's own TCP sockets to Redis' port."""
        if worker.proxy is not None:
            return worker.proxy.upstream_addresses()
        try:
            proc = psutil.Process(worker.pid)
            sockets = (
                proc.net_connections("tcp")
                if hasattr(proc, "net_connections")
                else proc.connections("tcp")
            )
        except psutil.Error:
            return set()
        port = self.redis.port
        return {
            f"{c.laddr.ip}:{c.laddr.port}"
            for c in sockets
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        }

    def connections(self, worker: WorkerProc) -> list[dict[str, str]]:
        """``worker``'s connections as Redis lists them now (CLIENT LIST rows, each
        with its ``role``: see :func:`connection_role`), found by client name and by
        address."""
        addresses = self._addresses(worker)
        rows = []
        for row in self.admin.client_list():
            named = worker.client_name is not None and row.get("name") == worker.client_name
            if named or row.get("addr") in addresses:
                rows.append({**row, "role": connection_role(row)})
        return rows

    def wait_connections(
        self, worker: WorkerProc, role: str, count: int = 1, timeout: float = 5.0
    ) -> list[dict[str, str]]:
        """Wait until ``worker`` has at least ``count`` connections of ``role``."""

        def enough() -> list[dict[str, str]]:
            rows = [r for r in self.connections(worker) if r["role"] == role]
            return rows if len(rows) >= count else []

        return wait_until(enough, timeout, lambda: f"{worker}: {self.connections(worker)}")

    def client_kill(
        self, worker: WorkerProc, role: str | None = None, *, converge: bool = False
    ) -> list[dict[str, str]]:
        """CLIENT KILL ID every connection of ``worker`` (of one ``role``, or all of
        them), at once (one pipeline), while it runs; noted as a ``client_kill``
        fault. Returns the rows killed (Redis answered 1 for each)."""
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown connection role {role!r}; use one of {ROLES}")
        rows = [r for r in self.connections(worker) if role is None or r["role"] == role]
        self.fault(
            "client_kill",
            worker,
            converge=converge,
            role=role or "all",
            connections=[(r["id"], r["role"]) for r in rows],
        )
        pipe = self.admin.pipeline(transaction=False)
        for r in rows:
            pipe.client_kill_filter(_id=r["id"])
        replies = pipe.execute(raise_on_error=False)
        return [r for r, n in zip(rows, replies) if n == 1]

    def pubsub_overflow(
        self,
        worker: WorkerProc,
        *,
        channel: str | None = None,
        converge: bool = False,
        hard_limit: int = 64 * 1024,
        message_bytes: int = 256 * 1024,
        timeout: float = 5.0,
    ) -> list[dict[str, str]]:
        """Make Redis close ``worker``'s pub/sub connection for its output buffer.

        ``client-output-buffer-limit pubsub`` is lowered (CONFIG SET) to a hard
        limit of ``hard_limit`` bytes, and a message of ``message_bytes`` (junk,
        not a raftredis envelope) is published on ``channel`` (default: the
        worker's inbox, the one channel only it listens to) until Redis has
        closed one of the worker's pub/sub connections, the one that listens
        there (published again every 0.5 s, up to ``timeout``). The limit is
        restored before returning. Noted as a ``pubsub_overflow`` fault. Returns
        the rows of the connections Redis closed.
        """
        channel = channel or self.keys.inbox(worker.id)
        before = {r["id"]: r for r in self.connections(worker) if r["role"] == PUBSUB}
        setting = "client-output-buffer-limit"
        saved = _text(self.admin.config_get(setting)[setting]).split()
        pubsub = saved[saved.index("pubsub") + 1 : saved.index("pubsub") + 4]
        self.fault(
            "pubsub_overflow",
            worker,
            converge=converge,
            channel=channel,
            hard_limit=hard_limit,
            message_bytes=message_bytes,
            connections=sorted(before),
        )
        payload = b"\x00" * message_bytes
        published = [0.0]

        def closed() -> list[str]:
            live = {r["id"] for r in self.admin.client_list()}
            gone = [i for i in before if i not in live]
            if not gone and time.monotonic() - published[0] >= 0.5:
                published[0] = time.monotonic()
                self.admin.publish(channel, payload)
            return gone

        try:
            self.admin.config_set(setting, f"pubsub {hard_limit} 0 0")
            gone = wait_until(
                closed, timeout, lambda: f"{worker}: {self.connections(worker)}", interval=0.01
            )
        finally:
            self.admin.config_set(setting, "pubsub " + " ".join(pubsub))
        return [before[i] for i in gone]

    # --------------------------------------------------------------- queries

    def lease(self) -> LeaseRecord | None:
        """The lease as Redis holds it now (None: no lease, or Redis unreachable)."""
        try:
            return parse_lease(self.admin.get(self.keys.leader))
        except redis.RedisError:
            return None

    def by_id(self, cid: str) -> WorkerProc | None:
        return next((w for w in self.workers if w.id == cid), None)

    def leaders_by_log(self) -> list[tuple[WorkerProc, int]]:
        """Live, running workers whose poller says they lead now, with the term."""
        out = []
        for w in self.live():
            term = w.leading()
            if term is not None:
                out.append((w, term))
        return out

    def leader_worker(self) -> WorkerProc | None:
        """The one leader, if Redis' lease and the workers' logs agree on it now."""
        lease = self.lease()
        if lease is None:
            return None
        leading = self.leaders_by_log()
        if len(leading) != 1:
            return None
        worker, term = leading[0]
        if worker.id != lease.holder or term != lease.term:
            return None
        return worker

    def wait_for_one_leader(
        self,
        timeout: float = 10.0,
        *,
        other_than: WorkerProc | None = None,
        min_term: int | None = None,
    ) -> WorkerProc:
        """Wait until Redis' lease names a live worker whose log says it leads in that
        term, and no other worker's log says it leads; return that worker."""

        def one_leader() -> WorkerProc | None:
            self.note_exits()
            worker = self.leader_worker()
            if worker is None or worker is other_than:
                return None
            if min_term is not None and (worker.leading() or 0) < min_term:
                return None
            return worker

        return wait_until(one_leader, timeout, self._leader_state)

    def wait_no_leader(self, timeout: float) -> None:
        """Wait until no live worker's log says it leads."""
        wait_until(lambda: not self.leaders_by_log(), timeout, self._leader_state)

    def wait_all_know(self, leader: WorkerProc, timeout: float = 5.0) -> int:
        """Wait until every other live, unfrozen worker has logged that ``leader`` leads
        in its current term (a ``leader_changed`` or ``alive`` line); return the term."""
        term = leader.leading()
        assert term is not None, f"{leader} does not lead"

        def knows(w: WorkerProc) -> bool:
            return any(
                e.get("event") in ("leader_changed", "alive")
                and e.get("leader") == leader.id
                and isinstance(e.get("term"), int)
                and e["term"] >= term
                for e in w.events()
            )

        def everyone() -> bool:
            return all(knows(w) for w in self.live() if w is not leader and not w.stopped)

        wait_until(everyone, timeout, lambda: self.describe())
        return term

    def _leader_state(self) -> str:
        lease = self.lease()
        leading = [(w.name, t) for w, t in self.leaders_by_log()]
        return f"lease={lease}, leading by the logs={leading}, live={len(self.live())}"

    def max_term_seen(self) -> int:
        """The highest term any worker's log mentions so far."""
        best = 0
        for w in self.workers:
            for e in w.events():
                term = e.get("term")
                if isinstance(term, int) and term > best:
                    best = term
        return best

    def describe(self, *workers: WorkerProc) -> str:
        """The last few log lines of ``workers`` (default: all), for failure messages."""
        lines = []
        for w in workers or tuple(self.workers):
            events = w.events()
            tail = [
                {k: v for k, v in e.items() if k not in ("pid", "name", "id")} for e in events[-8:]
            ]
            err = ""
            with contextlib.suppress(OSError):
                err = (self.run_dir / f"{w.name}.stderr").read_text()[-1500:]
            lines.append(f"{w} running={w.running} rc={w.proc.returncode} tail={tail} {err}")
        return "\n".join(lines)

    # -------------------------------------------------------------- teardown

    def _teardown(self) -> None:
        if self._log is None:
            return
        log = self._log
        errors: list[str] = []
        try:
            log.write("teardown")
            if self._redis_paused:
                with contextlib.suppress(Exception):
                    self.redis.resume()
                self._redis_paused = False
            self._stop_workers()
        except Exception as exc:  # never skip the rest of the cleanup
            errors.append(f"stopping workers: {exc!r}")
        finally:
            self._kill_everything()
            for w in self.workers:
                if w.proxy is not None:
                    w.proxy.close()
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close()
                self._admin = None
            self.redis.stop()
            log.write("run_end")
            log.close()
            self._log = None
        self.report = check_run(self.run_dir, self.scenario)
        self.report.extra.update(self.extra)
        self.report.extra["run_dir"] = str(self.run_dir)
        if errors:
            self.report.extra["teardown_errors"] = errors
        out = report_dir()
        out.mkdir(parents=True, exist_ok=True)
        self.report_path = out / f"{self.scenario}.json"
        self.report_path.write_text(json.dumps(self.report.to_dict(), indent=1, default=repr))

    def _stop_workers(self) -> None:
        for w in self.workers:
            if w.running and w.stopped:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGCONT)
                w.stopped = False
            if w.proxy is not None and w.running:
                w.proxy.heal()
        self.note_exits()
        for w in self.live():
            w.send("exit")
        deadline = time.monotonic() + 15.0
        for w in self.live():
            self._reap(w, timeout=max(0.1, deadline - time.monotonic()), expected=False)
        for w in self.live():  # did not exit on request: SIGTERM, then SIGKILL
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
            self._reap(w, timeout=5.0, expected=False)

    def _kill_everything(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGKILL)
            self._reap(w, timeout=10.0, expected=False)

    # ------------------------------------------------------------- verdicts

    def assert_promises(self, *, work_overlaps: bool = True) -> ChaosReport:
        """Assert the checker's verdict: no overlap, no term regression, no dead
        thread, no unexpected exit; and (unless told otherwise) no while_leader
        work running while another process led."""
        report = self.report
        assert report is not None, "the cluster has not been torn down yet"
        print(report.summary())
        print(f"report: {self.report_path}")
        assert report.overlaps == [], report.summary()
        assert report.term_regressions == [], report.summary()
        assert report.shared_terms == [], report.summary()
        assert report.dead_threads == [], report.summary()
        assert report.unexpected_exits == [], report.summary()
        assert report.outage_violations == [], report.summary()
        assert report.unstopped_work == [], report.summary()
        assert report.bad_lines == 0, report.summary()
        if work_overlaps:
            assert report.work_overlaps == [], report.work_overlaps[:3]
        elif self.report_path is not None:  # note it for the summary
            report.extra["work_overlaps_expected"] = True
            self.report_path.write_text(json.dumps(report.to_dict(), indent=1, default=repr))
        assert report.ok, report.summary()
        return report


@contextlib.contextmanager
def no_leftovers() -> Iterator[None]:
    """Fail if a process a ChaosCluster started is still running afterwards."""
    yield
    left = leftover_processes()
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not left, f"processes left behind: {left}"
