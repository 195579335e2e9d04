"""One ``redis-server`` process for tests: its command line, launch, readiness and end.

These are the steps that :class:`~raftredis.testing.RedisServer` strings
together; each works on a plain ``subprocess.Popen`` and paths.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from .certificates import TLSFiles

HOST = "127.0.0.1"
"""The only address a test server binds to."""

START_TIMEOUT = 10.0
"""Seconds a new server has to answer before it counts as failed."""

STOP_TIMEOUT = 5.0
"""Seconds a server has to exit after ``SIGTERM`` before it gets ``SIGKILL``."""

BIND_ERRORS = (
    "Address already in use",
    "Could not create server TCP listening socket",
    "Could not create server TLS listening socket",
)
"""Log lines of a server that could not bind its port (another one may do)."""

_POLL_INTERVAL = 0.02
_LOG_TAIL_LINES = 20
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes on Linux, 104 on the BSDs
# How long a server must outlive a refused probe to count as ours (see wait_until_answering).
_REFUSED_GRACE = 0.1


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that was free a moment ago (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def requirepass(args: Sequence[str]) -> str | None:
    """The password of the last ``--requirepass`` in redis-server arguments, if any."""
    password = None
    for flag, value in zip(args, args[1:]):
        if flag == "--requirepass":
            password = value
    return password


def make_server_directory(*, unix_socket: bool) -> Path:
    """A new private temporary directory for a server (short enough for its socket)."""
    directory = tempfile.mkdtemp(prefix="raftredis-")
    if unix_socket and len(os.path.join(directory, "redis.sock")) > _MAX_UNIX_PATH:
        # A long $TMPDIR would make the socket path too long to bind.
        os.rmdir(directory)
        directory = tempfile.mkdtemp(prefix="raftredis-", dir="/tmp")
    return Path(directory)


def server_command(
    binary: str,
    *,
    directory: Path,
    log_path: Path,
    port: int,
    unix_socket_path: str | None,
    tls_files: TLSFiles | None,
    tls_auth_clients: str,
    extra_args: Sequence[str],
) -> list[str]:
    """The ``redis-server`` command line: no persistence, no daemon, ``extra_args`` last.

    ``port`` is the TLS port when ``tls_files`` is given (the plain port is
    then 0); it is ignored for a unix-socket server.
    """
    plain_port = 0 if unix_socket_path is not None or tls_files is not None else port
    command = [
        binary,
        "--bind", HOST,
        "--port", str(plain_port),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--daemonize", "no",
        "--protected-mode", "no",
        "--loglevel", "warning",
        "--logfile", str(log_path),
    ]  # fmt: skip
    if unix_socket_path is not None:
        command += ["--unixsocket", unix_socket_path, "--unixsocketperm", "700"]
    if tls_files is not None:
        command += [
            "--tls-port", str(port),
            "--tls-cert-file", str(tls_files.server_cert),
            "--tls-key-file", str(tls_files.server_key),
            "--tls-ca-cert-file", str(tls_files.ca_cert),
            "--tls-auth-clients", tls_auth_clients,
        ]  # fmt: skip
    return command + list(extra_args)


def _spawn(command: Sequence[str], stderr_path: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own, its stderr appended to ``stderr_path``.

    Its own session keeps Ctrl-C in a terminal for the tests, not Redis.
    Redis reports errors in its arguments on stderr, before it opens its
    log file: they go to a file of their own for the error message.
    """
    with open(stderr_path, "ab") as stderr:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def wait_until_answering(process: subprocess.Popen[bytes], probe: redis.Redis) -> str | None:
    """Poll ``probe`` until the server of ``process`` answers; ``None``, or why it did not.

    Another server may own the port (when ours failed to bind it): only an
    answer from our own process counts. When the probe may not run INFO (a
    password it does not know, an ACL that denies it), the answer cannot say
    whose it is: ours counts as ready once its process has outlived that
    answer by a moment (a redis-server that fails to bind exits within
    milliseconds).
    """
    deadline = time.monotonic() + START_TIMEOUT
    refused_since: float | None = None
    while True:
        if process.poll() is not None:
            return f"redis-server exited with status {process.returncode}"
        try:
            info: Any = probe.info("server")
            if int(info.get("process_id", process.pid)) == process.pid:
                return None
        except (redis.exceptions.AuthenticationError, redis.exceptions.ResponseError):
            # NOAUTH, WRONGPASS, NOPERM...: a server answered. (Checked first:
            # AuthenticationError is a ConnectionError.)
            now = time.monotonic()
            if refused_since is None:
                refused_since = now
            elif now - refused_since >= _REFUSED_GRACE:
                return None
        except (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.BusyLoadingError,
        ):
            pass
        if time.monotonic() >= deadline:
            return f"redis-server did not answer within {START_TIMEOUT:g} s"
        time.sleep(_POLL_INTERVAL)


def launch(
    command: Sequence[str], *, log_path: Path, stderr_path: Path, probe: redis.Redis
) -> subprocess.Popen[bytes]:
    """Start ``command`` and return its process once it answers ``probe``.

    Raises:
        RuntimeError: the server exited or did not answer within 10 seconds;
            it is killed, and the message ends with what it wrote to its
            stderr and its log meanwhile.
    """
    log_offset = _file_size(log_path)
    stderr_offset = _file_size(stderr_path)
    process = _spawn(command, stderr_path)
    try:
        failure = wait_until_answering(process, probe)
    except BaseException:
        kill(process)
        raise
    if failure is None:
        return process
    kill(process)
    message = f"{failure}; command: {list(command)!r}"
    errors = _log_tail(stderr_path, stderr_offset)
    if errors:
        message += f"\nstderr:\n{errors}"
    message += f"\nlog tail:\n{_log_tail(log_path, log_offset) or '(empty)'}"
    raise RuntimeError(message)


def remove_data_files(directory: Path) -> None:
    """Delete what a server may have saved in ``directory``, so that it restarts empty."""
    for name in ("dump.rdb", "appendonly.aof", "appendonlydir"):
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def terminate(process: subprocess.Popen[bytes]) -> None:
    """End ``process``: ``SIGTERM`` and ``SIGCONT`` (it may be paused), ``SIGKILL`` after 5 s."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGCONT)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    """Kill ``process`` with ``SIGKILL`` (if it still runs) and wait for it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait()


def _file_size(path: Path) -> int:
    """The size of ``path`` in bytes, 0 if it does not exist: where new output will start."""
    return path.stat().st_size if path.exists() else 0


def _log_tail(path: Path, offset: int) -> str:
    """The last lines of ``path`` written after ``offset`` ("" if it cannot be read)."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-_LOG_TAIL_LINES:])
