"""The :class:`RedisServer` of the testing toolkit: a private ``redis-server`` for a test."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .certificates import TLSFiles, make_tls_files, tls_files_in
from .redis_binary import choose_redis_server, redis_server_version
from .server_process import (
    BIND_ERRORS,
    HOST,
    free_port,
    kill,
    launch,
    make_server_directory,
    remove_data_files,
    requirepass,
    server_command,
    terminate,
)

_PORT_ATTEMPTS = 5


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
            password = requirepass(self._extra_args)
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
        where = self._unix_path() if self._use_unix_socket else f"{HOST}:{self._port}"
        state = "running" if self.running else "stopped"
        return f"<RedisServer {where}{' tls' if self._tls else ''} {state}>"

    # -- properties ------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server binds to: always ``127.0.0.1``."""
        return HOST

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
            return f"redis://{credentials}{HOST}:{self.port}/0"
        files = self.tls_files
        query = urlencode(
            {
                "ssl_ca_certs": str(files.ca_cert),
                "ssl_certfile": str(files.client_cert),
                "ssl_keyfile": str(files.client_key),
            }
        )
        return f"rediss://{credentials}{HOST}:{self.port}/0?{query}"

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
        return tls_files_in(self.directory / "tls")

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
        binary = choose_redis_server(self._binary, tls=self._tls)
        created_dir = self._dir is None
        if self._dir is None:
            self._dir = make_server_directory(unix_socket=self._use_unix_socket)
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
                bind_failed = any(text in str(error) for text in BIND_ERRORS)
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
        if process is not None:
            terminate(process)
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
        if process is not None:
            kill(process)

    def restart(self) -> None:
        """Kill the server and start it again, empty, at the same address.

        This simulates a Redis that crashed and lost its data: every key is
        gone and every connection is dropped.
        """
        self.kill()
        if self._dir is not None:
            remove_data_files(self._dir)
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
            client = redis.Redis(host=HOST, port=self.port, **kwargs)
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
        return redis_server_version(choose_redis_server(self._binary, tls=self._tls))

    # -- internals -------------------------------------------------------

    def _unix_path(self) -> str:
        if self._dir is None:
            raise RuntimeError("the server has not been started")
        return str(self._dir / "redis.sock")

    @property
    def _stderr_path(self) -> Path:
        return self.directory / "redis.stderr"

    def _launch(self, binary: str) -> None:
        """Start the process once and wait until it answers, or raise ``RuntimeError``."""
        if self._use_unix_socket:
            with contextlib.suppress(FileNotFoundError):
                Path(self._unix_path()).unlink()
        command = server_command(
            binary,
            directory=self.directory,
            log_path=self.log_path,
            port=self.port,
            unix_socket_path=self.unix_socket_path,
            tls_files=self.tls_files if self._tls else None,
            tls_auth_clients=self._tls_auth_clients,
            extra_args=self._extra_args,
        )
        # The probe always dials 127.0.0.1, which a TLS certificate need not name.
        probe_options: dict[str, Any] = {"ssl_check_hostname": False} if self._tls else {}
        probe = self.client(
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
            **probe_options,
        )
        try:
            self._process = launch(
                command, log_path=self.log_path, stderr_path=self._stderr_path, probe=probe
            )
        finally:
            probe.close()
