"""raftredis.testing.RedisServer's TLS, password and user options, and finding a TLS binary."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import pytest
import redis

from raftredis import testing
from raftredis.testing import (
    RedisServer,
    find_redis_server,
    find_tls_redis_server,
    make_tls_files,
    redis_binary,
    redis_server_supports_tls,
)


def test_tls_server_files_url_and_client(tls_server: RedisServer) -> None:
    """A TLS server listens only on its TLS port and hands out what a client needs."""
    files = tls_server.tls_files
    for path in (files.ca_cert, files.server_cert, files.server_key):
        assert path.is_file() and path.parent == tls_server.directory / "tls"
    assert tls_server.tls and tls_server.url.startswith(f"rediss://127.0.0.1:{tls_server.port}/0?")
    client = tls_server.client(decode_responses=True)
    try:
        assert client.config_get("port") == {"port": "0"}
        assert client.config_get("tls-port") == {"tls-port": str(tls_server.port)}
    finally:
        client.close()
    from_url = redis.Redis.from_url(tls_server.url)
    try:
        assert from_url.ping() is True
    finally:
        from_url.close()


def test_the_certificates_chain_to_the_ca(tmp_path: Path) -> None:
    """make_tls_files: the server certificate verifies against the CA for its names."""
    files = make_tls_files(tmp_path, server_names=["db.internal", "10.1.2.3"])
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(files.ca_cert), str(files.server_cert),
         str(files.client_cert)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    text = subprocess.run(
        ["openssl", "x509", "-in", str(files.server_cert), "-noout", "-text"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "DNS:db.internal" in text and "IP Address:10.1.2.3" in text
    ssl.create_default_context(cafile=str(files.ca_cert)).load_cert_chain(
        str(files.client_cert), str(files.client_key)
    )
    assert files.client_kwargs(client_cert=False) == {
        "ssl": True,
        "ssl_ca_certs": str(files.ca_cert),
    }


def test_restart_keeps_the_certificates(tls_binary: str) -> None:
    """restart() of a TLS server reuses its CA, so clients built before still connect."""
    with RedisServer(tls=True, binary=tls_binary) as server:
        before = server.tls_files.ca_cert.read_bytes()
        server.restart()
        assert server.tls_files.ca_cert.read_bytes() == before
        client = server.client()
        try:
            assert client.ping() is True
        finally:
            client.close()


def test_a_server_with_a_user_and_password() -> None:
    """username/password are used by client() and url; the default user is still ready."""
    with RedisServer(
        username="alice",
        password="pw",
        extra_args=["--user", "alice", "on", ">pw", "~*", "&*", "+@all"],
    ) as server:
        assert server.url == f"redis://alice:pw@127.0.0.1:{server.port}/0"
        client = server.client(decode_responses=True)
        try:
            assert client.acl_whoami() == "alice"
        finally:
            client.close()


def test_a_probe_that_may_not_run_info_still_sees_the_server() -> None:
    """When the probe is refused (here: the default user may run nothing), an answer
    from our own live process counts as ready: no 10 s wait."""
    started = time.monotonic()
    with RedisServer(extra_args=["--user", "default", "on", "nopass", "-@all"]) as server:
        assert time.monotonic() - started < 5.0
        assert server.running


def test_option_errors() -> None:
    """Combinations that cannot work are refused before anything starts."""
    with pytest.raises(ValueError, match="unix"):
        RedisServer(tls=True, unix_socket=True)
    with pytest.raises(ValueError, match="tls_auth_clients"):
        RedisServer(tls=True, tls_auth_clients="sometimes")
    with pytest.raises(ValueError, match="username needs a password"):
        RedisServer(username="alice")


def test_find_tls_redis_server_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no TLS-capable binary anywhere, the error names the package to install."""
    monkeypatch.delenv(testing.ENV_VAR, raising=False)
    monkeypatch.setattr(redis_binary, "_tls_candidates", lambda: [])
    with pytest.raises(RuntimeError, match="apt-get install redis-server"):
        find_tls_redis_server()
    monkeypatch.setattr(redis_binary, "redis_server_supports_tls", lambda binary: False)
    with pytest.raises(RuntimeError, match="built without TLS"):
        RedisServer(tls=True, binary=find_redis_server()).start()


def test_supports_tls(tls_binary: str, tmp_path: Path) -> None:
    """The TLS check tells a TLS build from a non-executable file."""
    assert redis_server_supports_tls(tls_binary)
    not_a_server = tmp_path / "redis-server"
    not_a_server.write_text("")
    assert not redis_server_supports_tls(str(not_a_server))
