"""The minimal ACL user of docs/production.md: it runs the whole API, and nothing less does.

Every command raftredis sends (the Lua scripts' own commands included: Redis
checks those against the user too) must be allowed, on the keys and channels
under the prefix. ``ACL LOG`` must stay empty: a denial that redis-py ignores
(CLIENT SETINFO on connect) would show up there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from raftredis import BackendError, Candidate
from raftredis.testing import RedisServer, SignalRecorder, wait_until

DOC = Path(__file__).resolve().parents[2] / "docs" / "production.md"
USER, PASSWORD = "raftredis", "change-me"

#: The rules of the documented ACL SETUSER line, after ``on >password``.
RULE_TEXT = (
    "resetkeys resetchannels ~raftredis:* &raftredis:* -@all "
    "+evalsha +script|load +time +get +set +del +pttl +zadd +zrem +zrangebyscore +zscore +zcard "
    "+hset +hget +hmget +hdel +publish +subscribe +multi +exec +info +ping +pubsub|numsub"
)
RULES = RULE_TEXT.split()
#: redis-py sends CLIENT SETINFO on every connection; Redis 7.0 does not know it
#: (and refuses this rule), 6.2 and 7.2+ need it to keep ACL LOG empty.
SETINFO = "+client|setinfo"


def _version(server: RedisServer) -> tuple[int, ...]:
    return tuple(int(part) for part in server.version().split(".")[:2])


def _rules_for(server: RedisServer) -> list[str]:
    version = _version(server)
    return RULES if (7, 0) <= version < (7, 2) else [*RULES, SETINFO]


def _set_user(admin: redis.Redis, rules: list[str]) -> None:
    admin.execute_command("ACL", "SETUSER", USER, "on", f">{PASSWORD}", *rules)


def _acl_log(admin: redis.Redis) -> list[dict[str, object]]:
    return [dict(entry) for entry in admin.acl_log()]


def _url(server: RedisServer) -> str:
    return f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0"


def test_the_documented_line_is_the_one_tested() -> None:
    """docs/production.md shows exactly these rules (the test keeps the page honest)."""
    text = DOC.read_text()
    line = f"ACL SETUSER {USER} on >{PASSWORD} {RULE_TEXT}"
    assert line in text
    assert SETINFO in text


def test_the_minimal_user_runs_the_whole_api(
    acl_server: RedisServer, admin: redis.Redis, candidates: Callable[..., Candidate]
) -> None:
    """start, an election of two, every message, a batch, discovery, meta and its
    notices, reelect and stop: no error, and no denial in ACL LOG."""
    _set_user(admin, _rules_for(acl_server))
    as_url = _url(acl_server)
    as_dict = {"host": "127.0.0.1", "port": acl_server.port, "username": USER, "password": PASSWORD}
    a = candidates(redis=as_url, meta={"n": 1})
    b = candidates(redis=as_dict, meta={"n": 2})
    signals = ("message", "instance_joined", "meta_changed", "error", "elected")
    recorders = {c.id: SignalRecorder().connect(c, *signals) for c in (a, b)}
    a.start()
    b.start()
    recorders[a.id].wait_for("instance_joined", lambda e: e.kwargs["instance"].id == b.id)
    wait_until(lambda: a.is_leader != b.is_leader and a.leader_id == b.leader_id, 5.0)
    leader, follower = (a, b) if a.is_leader else (b, a)

    assert follower.message_to(leader.id, "direct") == 1
    assert follower.message_leader("to leader") == 1
    assert leader.message_followers("to followers") == 1
    assert leader.message_all("to all") == 1
    with follower.batch() as batch:
        batch.message_to(leader.id, 1).message_all(2).message_followers(3).message_leader(4)
    assert batch.counts == [1, 1, 1, 1]  # the leader counts for followers, and drops it
    recorders[leader.id].wait_for("message", count=5)
    recorders[follower.id].wait_for("message", count=2)

    instances = follower.get_instances()
    assert [i.id for i in instances] == [a.id, b.id]
    assert [i.meta for i in instances] == [{"n": 1}, {"n": 2}]
    found = follower.get_leader()
    assert found is not None and found.id == leader.id
    follower.set_meta({"n": 3})
    recorders[leader.id].wait_for("meta_changed", lambda e: e.kwargs["instance"].id == follower.id)

    term = leader.current_term
    assert leader.reelect() is True
    wait_until(lambda: any((c.leader_term or 0) > term for c in (a, b)), 5.0)
    a.stop()
    b.stop()

    assert not any(r.of("error") for r in recorders.values()), [
        e.kwargs["error"] for r in recorders.values() for e in r.of("error")
    ]
    assert _acl_log(admin) == []
    # Nothing outside the prefix; what stays for good: the term, and (fast failover) the
    # last term whose holder proved its presence.
    base = f"raftredis:{{{a.kind}}}"
    assert sorted(admin.keys("*")) == [f"{base}:presence-term", f"{base}:term"]


def _exercise(url: str, kind: str) -> list[str]:
    """Run the API as far as it goes with two instances; every error, raised or reported."""
    errors: list[str] = []
    a = Candidate(redis=url, kind=kind, lease_ttl=1.0)
    b = Candidate(redis=url, kind=kind, lease_ttl=1.0)
    for candidate in (a, b):
        candidate.on("error", lambda sender, error, **extra: errors.append(str(error)))
        candidate.on("instance_joined", lambda sender, **extra: None)
    try:
        a.start(timeout=2.0)
        b.start(timeout=2.0)
        leader, follower = (a, b) if a.is_leader else (b, a)
        follower.message_to(leader.id, "direct")
        follower.message_leader("to leader")
        leader.message_all("to all")
        follower.batch().message_leader(1).message_followers(2).send()
        follower.get_instances()
        follower.get_leader()
        follower.set_meta({"n": 1})
        leader.reelect()
        wait_until(lambda: a.leader_id is not None and a.leader_id == b.leader_id, 3.0)
    except Exception as exc:
        errors.append(f"raised: {exc}")
    finally:
        a.stop()
        b.stop()
    return errors


@pytest.mark.parametrize("rule", [r for r in RULES if r[0] in "+~&"])
def test_every_rule_is_needed(
    acl_server: RedisServer, admin: redis.Redis, kind: str, rule: str
) -> None:
    """Without any one rule, some part of the API fails or is refused: the line is minimal.

    Most make start() fail; a few only break a background step (resigning,
    leaving), which is reported on error_occurred and shows in ACL LOG.
    """
    _set_user(admin, [r for r in _rules_for(acl_server) if r != rule])
    errors = _exercise(_url(acl_server), kind)
    denied = _acl_log(admin)
    if rule[0] == "+":
        # Redis 7 names a refused subcommand "script|load", 6.2 only "script".
        names = {rule[1:], rule[1:].split("|")[0]}
        assert any(entry["object"] in names for entry in denied), (denied, errors)
    else:
        reason = "key" if rule[0] == "~" else "channel"
        assert any(entry["reason"] == reason for entry in denied), (denied, errors)
    assert errors


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        ("&raftredis:*", "publish to the channel"),
        ("+evalsha", "'evalsha'"),
        ("+subscribe", "'subscribe'"),
        ("+time", "'time'"),
        ("~raftredis:*", "access one of the keys"),
    ],
)
def test_a_missing_permission_is_named_by_start(
    acl_server: RedisServer,
    admin: redis.Redis,
    candidates: Callable[..., Candidate],
    missing: str,
    named: str,
) -> None:
    """Without one of the rules, start() fails at once with Redis' refusal in the message."""
    _set_user(admin, [rule for rule in _rules_for(acl_server) if rule != missing])
    candidate = candidates(redis=_url(acl_server))
    with pytest.raises(BackendError, match=re.escape(named)) as info:
        candidate.start()
    assert not candidate.is_running
    assert "permission" in str(info.value) or "can't" in str(info.value)
    assert _acl_log(admin), "the denial is in ACL LOG too"


def test_a_command_refused_inside_a_script_is_named_in_acl_log(
    acl_server: RedisServer, admin: redis.Redis, candidates: Callable[..., Candidate]
) -> None:
    """A command that only a Lua script runs (PUBLISH of a notice): Redis' error does
    not always name it, ACL LOG does."""
    _set_user(admin, [rule for rule in _rules_for(acl_server) if rule != "+publish"])
    with pytest.raises(BackendError, match="script"):
        candidates(redis=_url(acl_server)).start()
    # The context is "lua" (Redis 7) or "multi" (6.2, which runs scripts like a MULTI).
    denied = [(e["context"], e["object"]) for e in _acl_log(admin)]
    assert any(obj == "publish" and context in ("lua", "multi") for context, obj in denied)


def _reliable_rules() -> list[str]:
    """The rules docs/production.md adds for reliable delivery and requests."""
    text = " ".join(DOC.read_text().split())
    found = re.search(r"\*\*Reliable delivery and requests\*\*.*?add `([^`]+)`", text)
    assert found is not None, "the reliable-delivery bullet of the ACL section is gone"
    return found.group(1).split()


def test_the_documented_reliable_rules_run_reliable_delivery_and_requests(
    acl_server: RedisServer, admin: redis.Redis, candidates: Callable[..., Candidate]
) -> None:
    """The minimal user plus the documented reliable-delivery rules: every reliable
    send, the take-over of the leader stream at a change of leader, a request to an
    instance and to the leader, and a clean stop; no error, nothing in ACL LOG."""
    _set_user(admin, [*_rules_for(acl_server), *_reliable_rules()])
    url = _url(acl_server)
    a = candidates(redis=url, reliable=True)
    b = candidates(redis=url, reliable=True)
    recorders = {c.id: SignalRecorder().connect(c, "message", "error") for c in (a, b)}
    for c in (a, b):
        c.on_request(lambda sender, message, **extra: {"by": sender.id, "got": message.payload})
    a.start()
    b.start()
    wait_until(lambda: a.is_leader != b.is_leader and a.leader_id == b.leader_id, 5.0)
    leader, follower = (a, b) if a.is_leader else (b, a)
    assert follower.message_to(leader.id, "direct", reliable=True) == 1
    assert follower.message_leader("to the leader", reliable=True) == 1
    assert leader.message_all("to all", reliable=True) == 1
    assert leader.message_followers("to followers", reliable=True) == 1
    recorders[leader.id].wait_for("message", count=2)
    recorders[follower.id].wait_for("message", count=2)
    assert follower.ask(leader.id, 1) == {"by": leader.id, "got": 1}
    assert follower.ask_leader(2) == {"by": leader.id, "got": 2}
    # A change of leader: the new one takes over the leader stream (XPENDING, XAUTOCLAIM).
    term = leader.current_term
    assert leader.reelect() is True
    wait_until(lambda: any((c.leader_term or 0) > term for c in (a, b)), 5.0)
    leader, follower = (a, b) if a.is_leader else (b, a)
    assert follower.ask_leader(3) == {"by": leader.id, "got": 3}
    a.stop()
    b.stop()
    assert not any(r.of("error") for r in recorders.values()), [
        e.kwargs["error"] for r in recorders.values() for e in r.of("error")
    ]
    assert _acl_log(admin) == []
