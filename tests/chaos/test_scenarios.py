"""Chaos scenarios: real worker processes, a real redis-server, real faults.

Every scenario runs a :class:`~harness.ChaosCluster` (5 workers unless
stated, lease_ttl 1 s), injects its faults, and then asserts the checker's
verdict over every process' log (no overlapping leaderships, no term
regression, no dead thread, no unexpected exit; see ``checker.py``) plus its
own expectations. ``CHAOS_SCALE=short`` (the default, run by ``make test``)
injects a few faults per scenario; ``CHAOS_SCALE=full`` (``make chaos``) many
more. Reports go to ``$CHAOS_REPORT_DIR`` (default ``.chaos/``).
"""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from chaos_scale import scale, scaled
from harness import ChaosCluster, WorkerProc, wait_until
from scenario_steps import first, leader_term, wait_event, wait_past

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.usefixtures("no_leftover_processes"),
]

LEASE_TTL = 1.0
TIMEOUT = scaled(150, 900)


# ----------------------------------------------------------------- scenario 1


@pytest.mark.timeout(TIMEOUT)
def test_sigkill_leader_repeatedly(tmp_path: Path) -> None:
    """SIGKILL the leader again and again (each replaced by a new worker): the next
    leader comes when the dead leader's lease ends, within lease_ttl + 1 s, with a
    higher term."""
    rounds = scaled(4, 60)
    with ChaosCluster("s1-sigkill-leader", run_dir=tmp_path / "run", lease_ttl=LEASE_TTL) as c:
        for _ in range(rounds):
            leader = c.wait_for_one_leader(timeout=10)
            term = leader_term(leader)
            c.restart(leader, signal.SIGKILL, wait=False)
            new = c.wait_for_one_leader(timeout=LEASE_TTL + 5, other_than=leader)
            assert leader_term(new) > term
        c.wait_started(c.live())
    report = c.assert_promises()
    assert report.faults_injected == rounds
    assert len(report.convergence) == rounds
    slow = [x for x in report.convergence if x["seconds"] is None or x["seconds"] >= LEASE_TTL + 1]
    assert not slow, slow
    assert report.elections >= rounds + 1


# ----------------------------------------------------------------- scenario 2


def sigstop_round(c: ChaosCluster, freeze: float) -> dict[str, Any]:
    rd = c.timings.renew_deadline
    leader = c.wait_for_one_leader(timeout=10)
    term = leader_term(leader)
    t_stop = c.sigstop(leader)
    new = c.wait_for_one_leader(timeout=LEASE_TTL + 5, other_than=leader)
    new_begin = first(new.events("lead_begin"), term=leader_term(new))
    assert new_begin is not None
    wait_past(t_stop + freeze)
    t_cont = c.sigcont(leader)
    assert t_stop <= new_begin["t"] <= t_cont, "the new leader was elected meanwhile"

    end = wait_event(c, leader, "lead_end", term=term)
    assert end["t_last_true"] <= t_stop + rd
    assert end["t"] >= t_cont  # logged on waking: it was leading when frozen
    stop = wait_event(c, leader, "work_stop", term=term)

    def follows() -> bool:  # the leader of the moment (Redis' lease), by an alive line
        lease = c.lease()
        alive = leader.events("alive", since=t_cont)
        return bool(
            lease
            and alive
            and alive[-1]["state"] == "follower"
            and alive[-1]["leader"] == lease.holder
        )

    wait_until(follows, 5.0, lambda: c.describe(leader))
    after = leader.events(since=t_cont)
    claims = [
        e
        for e in after
        if (e["event"] == "lead_begin" and e["term"] == term)
        or (e["event"] == "alive" and e.get("leader_term") == term)
        or (e["event"] == "elected" and e["term"] == term)
    ]
    assert claims == [], "claimed the old term after waking"
    # No alive line written after waking, before the poller's lead_end, shows it leading.
    before_end = [e for e in after if e["t"] < end["t"] and e["event"] == "alive"]
    assert all(e["state"] != "leader" for e in before_end)
    return {
        "term": term,
        "last_true_after_stop": end["t_last_true"] - t_stop,
        "new_leader_after_stop": new_begin["t"] - t_stop,
        "stop_seen_after_cont": stop["t_stop"] - t_cont,
        "lead_end_logged_after_cont": end["t"] - t_cont,
    }


@pytest.mark.timeout(TIMEOUT)
def test_sigstop_leader_past_its_lease(tmp_path: Path) -> None:
    """SIGSTOP the leader for 2 x lease_ttl, then SIGCONT: meanwhile another was
    elected; on waking the old leader's first word is that it does not lead (its
    last 'leader' read came before the freeze + renew_deadline, it never claims the
    old term again), its while_leader work got the stop event, and it follows."""
    rounds = scaled(2, 25)
    with ChaosCluster("s2-sigstop-leader", run_dir=tmp_path / "run", lease_ttl=LEASE_TTL) as c:
        c.extra["rounds"] = [sigstop_round(c, freeze=2 * LEASE_TTL) for _ in range(rounds)]
    # A frozen leader's while_leader work cannot stop while it is frozen: the work
    # overlaps are expected here (that is what the fencing term is for).
    report = c.assert_promises(work_overlaps=False)
    assert sum(f["kind"] == "sigstop" for f in report.faults) == rounds
    conv = [x["seconds"] for x in report.convergence if x["kind"] == "sigstop"]
    assert len(conv) == rounds and all(s is not None and s < LEASE_TTL + 1 for s in conv), conv


# ----------------------------------------------------------------- scenario 3


def link_fault_round(c: ChaosCluster, mode: str) -> dict[str, Any]:
    """Break the leader's link (``blackhole`` or ``cut``), check demotion, election
    and rejoining after the link heals."""
    rd = c.timings.renew_deadline
    leader = c.wait_for_one_leader(timeout=10)
    term = leader_term(leader)
    assert leader.proxy is not None
    t_fault = c.fault(mode, leader)
    leader.proxy.set_mode(mode)
    end = wait_event(c, leader, "lead_end", timeout=rd + 2.0, term=term)
    demoted_after = end["t_last_true"] - t_fault
    assert demoted_after <= rd + 0.1, demoted_after
    new = c.wait_for_one_leader(timeout=LEASE_TTL + 5, other_than=leader)
    new_term = leader_term(new)
    assert new_term > term
    t_heal = c.fault("heal", leader, converge=False)
    leader.proxy.heal()

    def rejoined() -> bool:
        alive = leader.events("alive", since=t_heal)
        lease = c.lease()
        return bool(
            alive
            and lease is not None
            and alive[-1]["running"]
            and alive[-1]["state"] == "follower"
            and alive[-1]["leader"] == lease.holder
            and alive[-1]["term"] >= new_term
        )

    wait_until(rejoined, 5.0, lambda: c.describe(leader))
    return {
        "term": term,
        "demoted_after": demoted_after,
        "rejoined_after_heal": time.time() - t_heal,
    }


@pytest.mark.timeout(TIMEOUT)
def test_blackholed_leader_link(tmp_path: Path) -> None:
    """Blackhole the leader's link to Redis (its proxy forwards nothing): it demotes
    itself by renew_deadline; another is elected after the lease; once the link
    heals it rejoins as a follower of the new leader."""
    rounds = scaled(2, 25)
    with ChaosCluster(
        "s3-blackhole-leader", run_dir=tmp_path / "run", lease_ttl=LEASE_TTL, proxied=True
    ) as c:
        c.extra["rounds"] = [link_fault_round(c, "blackhole") for _ in range(rounds)]
    report = c.assert_promises()
    assert sum(f["kind"] == "blackhole" for f in report.faults) == rounds
    conv = [x["seconds"] for x in report.convergence if x["kind"] == "blackhole"]
    assert len(conv) == rounds and all(s is not None and s < LEASE_TTL + 1 for s in conv), conv


@pytest.mark.timeout(TIMEOUT)
def test_cut_leader_link(tmp_path: Path) -> None:
    """Cut the leader's link (its proxy closes every connection and refuses new
    ones): the same as a blackhole, but every call fails at once instead of timing
    out: demotion by renew_deadline, a new leader after the lease, rejoining."""
    rounds = scaled(1, 15)
    with ChaosCluster(
        "s3b-cut-leader", run_dir=tmp_path / "run", lease_ttl=LEASE_TTL, proxied=True
    ) as c:
        c.extra["rounds"] = [link_fault_round(c, "cut") for _ in range(rounds)]
    report = c.assert_promises()
    assert sum(f["kind"] == "cut" for f in report.faults) == rounds
    conv = [x["seconds"] for x in report.convergence if x["kind"] == "cut"]
    assert len(conv) == rounds and all(s is not None and s < LEASE_TTL + 1 for s in conv), conv


# ----------------------------------------------------------------- scenario 4


def redis_restart_round(c: ChaosCluster) -> dict[str, Any]:
    c.wait_all_know(c.wait_for_one_leader(timeout=15))
    t_kill = c.kill_redis()
    c.wait_no_leader(timeout=c.timings.renew_deadline + 1.0)
    no_leader_after = time.time() - t_kill
    wait_past(t_kill + 1.5 * LEASE_TTL)
    before = c.max_term_seen()
    t_up = c.start_redis_empty()
    term = leader_term(c.wait_for_one_leader(timeout=15))
    assert term > before, f"term {term} after the restart, {before} seen before"
    return {
        "no_leader_after": no_leader_after,
        "term_before": before,
        "term_after": term,
        "leader_after_restart": time.time() - t_up,
    }


@pytest.mark.timeout(TIMEOUT)
def test_redis_killed_and_restarted_empty(tmp_path: Path) -> None:
    """Kill redis-server and start it again empty: nobody leads while it is gone
    (beyond renew_deadline after the kill); afterwards one leader whose term is
    above every term seen before.

    Redis is killed once every worker knows the current term: the promise rests on
    that (see test_redis_data_loss_before_the_others_know_the_term for the gap)."""
    rounds = scaled(2, 20)
    with ChaosCluster("s4-redis-restart", run_dir=tmp_path / "run", lease_ttl=LEASE_TTL) as c:
        c.extra["rounds"] = [redis_restart_round(c) for _ in range(rounds)]
    report = c.assert_promises()
    assert len(report.extra["outages"]) == rounds
    conv = [x["seconds"] for x in report.convergence if x["kind"] == "redis_restart"]
    assert len(conv) == rounds and all(s is not None for s in conv), conv


@pytest.mark.timeout(60)
def test_redis_data_loss_before_the_others_know_the_term(tmp_path: Path) -> None:
    """The leader is elected in a term the others have not heard of (their links are
    blackholed), then dies; Redis restarts empty; the next leader must still get a
    term above every earlier leader's. Deterministic: the survivors cannot know.

    This found a bug: acquire proposed max(stored term, highest term seen) + 1, so
    the next leader got the dead leader's term (one fencing token, two leaders).
    Fixed by flooring a term proposed without a stored one at the server's clock."""
    with ChaosCluster(
        "s4b-term-after-data-loss",
        run_dir=tmp_path / "run",
        n=3,
        lease_ttl=LEASE_TTL,
        proxied=True,
    ) as c:
        leader = c.wait_for_one_leader(timeout=10)
        known = c.wait_all_know(leader)
        followers = [w for w in c.live() if w is not leader]
        for w in followers:
            assert w.proxy is not None
            c.fault("blackhole", w, converge=False)
            w.proxy.blackhole()
        c.fault("reelect", leader, converge=False)
        assert leader.send("reelect")
        # It resigns and, as nobody else can reach Redis, takes the lease again.
        newest = wait_until(
            lambda: (leader.leading() or 0) > known and leader.leading(), 5.0, c.describe
        )
        c.kill(leader, signal.SIGKILL, converge=False)
        c.kill_redis()
        for w in followers:
            assert w.proxy is not None
            c.fault("heal", w, converge=False)
            w.proxy.heal()
        c.start_redis_empty()
        after = leader_term(c.wait_for_one_leader(timeout=10))
        c.extra["terms"] = {"known_to_all": known, "dead_leader": newest, "after_restart": after}
    report = c.report
    assert report is not None
    assert after > newest, f"term {after} after the restart; a dead leader held {newest}"
    c.assert_promises()


# ----------------------------------------------------------------- scenario 5


def redis_pause_round(c: ChaosCluster) -> dict[str, Any]:
    old = c.wait_for_one_leader(timeout=15)
    term = leader_term(old)
    t_pause = c.pause_redis()
    c.wait_no_leader(timeout=c.timings.renew_deadline + 1.0)
    no_leader_after = time.time() - t_pause
    wait_past(t_pause + 2 * LEASE_TTL)
    t_resume = c.resume_redis()
    new = c.wait_for_one_leader(timeout=15)
    assert leader_term(new) > term
    return {
        "no_leader_after": no_leader_after,
        "leader_after_resume": time.time() - t_resume,
        "same_leader": new is old,
    }


@pytest.mark.timeout(TIMEOUT)
def test_redis_paused_past_the_lease(tmp_path: Path) -> None:
    """SIGSTOP redis-server for 2 x lease_ttl, then SIGCONT: the leader demotes
    itself by renew_deadline, nobody leads meanwhile, one leader afterwards."""
    rounds = scaled(2, 20)
    with ChaosCluster("s5-redis-pause", run_dir=tmp_path / "run", lease_ttl=LEASE_TTL) as c:
        c.extra["rounds"] = [redis_pause_round(c) for _ in range(rounds)]
    report = c.assert_promises()
    assert len(report.extra["outages"]) == rounds
    conv = [x["seconds"] for x in report.convergence if x["kind"] == "redis_resume"]
    assert len(conv) == rounds and all(s is not None for s in conv), conv


# ----------------------------------------------------------------- scenario 6


def pubsub_kill_round(c: ChaosCluster, i: int) -> dict[str, Any]:
    control, everyone = c.keys.control, c.keys.all
    leader = c.wait_for_one_leader(timeout=10)
    live = c.live()
    n = len(live)
    t_kill = c.fault("pubsub_kill", converge=False)
    killed = c.admin.client_kill_filter(_type="pubsub")
    # Three a worker: its control, message and (fast failover) presence listeners.
    assert killed == 3 * n, f"killed {killed} pub/sub connections of {n} workers"
    if i % 2 == 1:
        c.fault("reelect", leader)
        assert leader.send("reelect")

    def resubscribed() -> bool:
        counts = dict(c.admin.pubsub_numsub(control, everyone))
        return counts.get(control.encode()) == n and counts.get(everyone.encode()) == n

    wait_until(resubscribed, 5.0, lambda: str(c.admin.pubsub_numsub(control, everyone)))
    resubscribed_after = time.time() - t_kill

    def lines(w: WorkerProc, event: str, text: str) -> int:
        return sum(text in e["message"] for e in w.events(event, since=t_kill))

    def each_listener_resynced_and_reported() -> bool:
        return all(
            lines(w, "lib_log", "reconnected") >= 2
            and lines(w, "error", "lost its Redis connection") >= 2
            for w in live
        )

    wait_until(each_listener_resynced_and_reported, 5.0, lambda: c.describe(*live))
    holder = c.wait_for_one_leader(timeout=10)

    def agree() -> bool:
        for w in live:
            alive = w.events("alive", since=t_kill)
            if not alive or alive[-1]["leader"] != holder.id:
                return False
        return True

    wait_until(agree, 5.0, lambda: c.describe(*live))
    sender = live[i % n]
    nonce = uuid.uuid4().hex
    t_pub = time.time()
    assert sender.send("publish " + json.dumps({"nonce": nonce}))

    def got(w: WorkerProc, event: str) -> list[dict[str, Any]]:
        return [
            e
            for e in w.events(event, since=t_pub)
            if isinstance(e["payload"], dict) and e["payload"].get("nonce") == nonce
        ]

    wait_until(
        lambda: all(got(w, "message") for w in live if w is not sender),
        5.0,
        lambda: c.describe(*live),
    )
    published = wait_until(lambda: got(sender, "published"), 5.0)
    assert published[0]["count"] == n - 1
    return {"resubscribed_after": resubscribed_after, "workers": n}


@pytest.mark.timeout(TIMEOUT)
def test_pubsub_connections_killed(tmp_path: Path) -> None:
    """CLIENT KILL TYPE pubsub: every listener reports its lost connection,
    re-subscribes and resyncs (every other round the leader also resigns right after
    the kill, so notices are lost and only the resync tells the others); messages
    flow to all again."""
    rounds = scaled(3, 40)
    with ChaosCluster("s6-pubsub-kill", run_dir=tmp_path / "run", lease_ttl=LEASE_TTL) as c:
        c.extra["rounds"] = [pubsub_kill_round(c, i) for i in range(rounds)]
    report = c.assert_promises()
    assert sum(f["kind"] == "pubsub_kill" for f in report.faults) == rounds


# ----------------------------------------------------------------- scenario 8


@pytest.mark.timeout(TIMEOUT)
def test_churn(tmp_path: Path) -> None:
    """Up to 20 instances started and stopped at random (SIGTERM and SIGKILL, the
    leader too, now and then a reelect): one leader at a time throughout; at the
    end get_instances() converges to the live set within member_expiry + 1 s."""
    duration = scaled(15.0, 60.0)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    actions: dict[str, int] = {}
    with ChaosCluster(
        "s8-churn", run_dir=tmp_path / "run", n=12, lease_ttl=LEASE_TTL, poll_interval=0.002
    ) as c:
        c.extra["seed"] = seed
        member_expiry = c.timings.member_expiry
        end = time.monotonic() + duration
        last_change = time.time()
        while time.monotonic() < end:
            c.note_exits()
            live = c.live()
            for w in live:
                w.tail.refresh()
            started = [w for w in live if w.tail.started and not w.tail.exited]
            lease = c.lease()
            leader = c.by_id(lease.holder) if lease is not None else None
            roll = rng.random()
            if len(live) < 20 and (len(live) < 10 or roll < 0.45):
                c.fault("spawn", converge=False)
                c.spawn(wait=False)
                action = "spawn"
            elif started and roll < 0.6 and leader is not None and leader in started:
                how = rng.choice([signal.SIGTERM, signal.SIGKILL])
                c.kill(leader, how)
                action = f"leader_{signal.Signals(how).name}"
            elif started and roll < 0.65 and leader is not None and leader in started:
                c.fault("reelect", leader)
                leader.send("reelect")
                action = "reelect"
            elif started:
                victim = rng.choice(started)
                how = rng.choice([signal.SIGTERM, signal.SIGKILL])
                is_leader = victim is leader
                c.kill(victim, how, converge=is_leader)
                action = ("leader_" if is_leader else "") + signal.Signals(how).name
            else:
                action = "wait"
            actions[action] = actions.get(action, 0) + 1
            last_change = time.time()
            time.sleep(rng.uniform(0.05, 0.4))  # pacing between churn actions
        c.extra["actions"] = actions
        c.wait_started(c.live())
        leader = c.wait_for_one_leader(timeout=15)
        live_ids = {w.id for w in c.live()}
        # Killed instances are pruned member_expiry after their last refresh (before
        # the last kill); started ones are members once started (now).
        deadline = max(last_change + member_expiry, time.time()) + 1.0

        def instances_match() -> bool:
            before = len(leader.events("instances"))
            assert leader.send("instances")
            got = wait_until(lambda: leader.events("instances")[before:], 5.0)
            return set(got[0]["ids"]) == live_ids

        wait_until(
            instances_match,
            max(0.5, deadline - time.time()),
            lambda: f"live {sorted(live_ids)}, instances {leader.last('instances')}",
            interval=0.1,
        )
        c.extra["membership_converged_after_last_change"] = time.time() - last_change
        c.extra["live_at_end"] = len(live_ids)
    report = c.assert_promises(work_overlaps=True)
    kills = sum(f["kind"] in ("sigkill", "sigterm") for f in report.faults)
    assert kills >= scaled(10, 40), actions
    assert report.processes >= scaled(15, 50), actions


def test_scale_is_known() -> None:
    """CHAOS_SCALE is one of the two known values (a typo must not run the short suite)."""
    assert scale() in ("short", "full")
