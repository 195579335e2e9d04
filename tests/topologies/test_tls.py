"""raftredis over TLS: the three forms of redis=, and certificates that must be refused."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from raftredis import BackendError, Candidate, ConfigurationError
from raftredis.testing import RedisServer, SignalRecorder, make_tls_files, wait_until


def _leader_and_follower(a: Candidate, b: Candidate) -> tuple[Candidate, Candidate]:
    wait_until(lambda: a.is_leader != b.is_leader and a.leader_id == b.leader_id, 5.0)
    return (a, b) if a.is_leader else (b, a)


def _refused(candidate: Candidate) -> tuple[BackendError, float]:
    """start() the candidate, which must fail: the error and how long it took."""
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        candidate.start()
    elapsed = time.monotonic() - started
    assert not candidate.is_running
    assert elapsed < candidate.timings.start_timeout
    return info.value, elapsed


def test_election_and_messaging_over_tls(
    tls_server: RedisServer, candidates: Callable[..., Candidate]
) -> None:
    """Two instances elect one leader and exchange every kind of message, over rediss://."""
    assert tls_server.url.startswith("rediss://")
    a = candidates(redis=tls_server.url, meta={"n": 1})
    b = candidates(redis=tls_server.url, meta={"n": 2})
    recorders = {c.id: SignalRecorder().connect(c, "message") for c in (a, b)}
    a.start()
    b.start()
    leader, follower = _leader_and_follower(a, b)
    assert [i.id for i in follower.get_instances()] == [a.id, b.id]
    assert follower.message_to(leader.id, "direct") == 1
    assert follower.message_leader("to leader") == 1
    assert leader.message_followers("to followers") == 1
    assert leader.message_all("to all") == 1
    assert follower.batch().message_leader("batched").send() == [1]
    recorders[leader.id].wait_for("message", count=3)
    recorders[follower.id].wait_for("message", count=2)
    got = {
        c.id: [e.kwargs["message"].payload for e in recorders[c.id].of("message")] for c in (a, b)
    }
    assert got[leader.id] == ["direct", "to leader", "batched"]
    assert got[follower.id] == ["to followers", "to all"]
    assert leader.reelect() is True
    wait_until(lambda: follower.get_leader() is not None, 5.0)


@pytest.mark.parametrize("form", ["url", "dict", "client"])
def test_every_form_of_redis_passes_the_client_certificate(
    mtls_server: RedisServer, candidates: Callable[..., Candidate], form: str
) -> None:
    """A URL, a dict with ssl_* keys and a redis.Redis(ssl=True) all reach a server that
    requires a client certificate: the CA and the certificate are passed on."""
    files = mtls_server.tls_files
    tls = files.client_kwargs()
    target: Any
    if form == "url":
        target = mtls_server.url
    elif form == "dict":
        target = {"host": "localhost", "port": mtls_server.port, **tls}
    else:
        target = redis.Redis(host="127.0.0.1", port=mtls_server.port, **tls)
    a = candidates(redis=target)
    b = candidates(redis=target)
    a.start()
    b.start()
    leader, follower = _leader_and_follower(a, b)
    assert follower.message_to(leader.id, {"form": form}) == 1
    assert len(leader.get_instances()) == 2


def test_a_server_certificate_from_another_ca_is_refused(
    tls_server: RedisServer, candidates: Callable[..., Candidate], tmp_path: Path
) -> None:
    """Verification is on by default: a CA that did not sign the server's certificate
    makes start() fail at once, saying the certificate could not be verified."""
    other = make_tls_files(tmp_path / "other-ca")
    candidate = candidates(
        redis={
            "host": "127.0.0.1",
            "port": tls_server.port,
            **other.client_kwargs(client_cert=False),
        }
    )
    error, elapsed = _refused(candidate)
    assert "certificate verify failed" in str(error)
    assert elapsed < 2.0


def test_without_a_ca_the_system_store_refuses_a_private_ca(
    tls_server: RedisServer, candidates: Callable[..., Candidate]
) -> None:
    """rediss:// with no CA at all checks against the system's CAs, which do not know ours."""
    url = f"rediss://127.0.0.1:{tls_server.port}/0"
    error, _ = _refused(candidates(redis=url))
    assert "certificate verify failed" in str(error)


def test_a_certificate_for_another_host_is_refused(
    tls_binary: str, candidates: Callable[..., Candidate]
) -> None:
    """redis-py checks the host name against the certificate (ssl_check_hostname, on by
    default since redis-py 6); turning the check off is the caller's explicit choice."""
    default = inspect.signature(redis.SSLConnection.__init__).parameters["ssl_check_hostname"]
    if default.default is not True:
        pytest.skip("this redis-py does not check host names by default")
    with RedisServer(tls=True, binary=tls_binary, tls_server_names=["redis.example"]) as server:
        tls = server.tls_files.client_kwargs()
        error, _ = _refused(candidates(redis={"host": "127.0.0.1", "port": server.port, **tls}))
        assert "certificate verify failed" in str(error)
        assert "mismatch" in str(error) or "hostname" in str(error)
        unchecked = redis.Redis(host="127.0.0.1", port=server.port, ssl_check_hostname=False, **tls)
        assert candidates(redis=unchecked).start().is_running


def test_a_missing_client_certificate_is_refused(
    mtls_server: RedisServer, candidates: Callable[..., Candidate]
) -> None:
    """A server with tls-auth-clients yes refuses a client without a certificate.

    Under TLS 1.3 the server sends its refusal after the handshake, so the
    client learns it on its first read ("certificate required") or, when the
    server has already closed, on its first write (an unexpected EOF).
    """
    tls = mtls_server.tls_files.client_kwargs(client_cert=False)
    error, elapsed = _refused(
        candidates(redis={"host": "127.0.0.1", "port": mtls_server.port, **tls})
    )
    text = str(error)
    assert "certificate required" in text or "EOF occurred in violation of protocol" in text
    assert elapsed < 2.0


def test_plain_redis_against_a_tls_port_fails_fast(
    tls_server: RedisServer, candidates: Callable[..., Candidate]
) -> None:
    """redis:// (no TLS) to a TLS port: the server drops the connection, start() fails."""
    error, elapsed = _refused(candidates(redis=f"redis://127.0.0.1:{tls_server.port}/0"))
    assert "127.0.0.1" in str(error)
    assert elapsed < 2.0


def test_tls_settings_in_a_dict_need_tls() -> None:
    """ssl_* keys without ssl=True (or a rediss:// url) are a configuration error, not a
    crash at connect time; unknown keys are still refused."""
    with pytest.raises(ConfigurationError, match=r"ssl_ca_certs in redis=\.\.\. need TLS"):
        Candidate(redis={"host": "localhost", "ssl_ca_certs": "/ca.crt"}, kind="k")
    with pytest.raises(ConfigurationError, match="unknown key"):
        Candidate(redis={"host": "localhost", "ssl": True, "ssl_no_such": 1}, kind="k")
    Candidate(redis={"url": "rediss://localhost:6380/0", "ssl_ca_certs": "/ca.crt"}, kind="k")
