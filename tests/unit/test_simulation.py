"""Many Elections against an in-memory arbiter, in simulated time, with faults.

Each node runs the real :class:`Election`; a discrete-event loop plays the
heartbeat thread (one command at a time, blocking), Redis (atomic operations
applied at one instant, with the lease expiring by the arbiter's clock),
pub/sub (notices delivered late, or lost), and the faults: slow and failed
commands, lost replies, processes paused past their lease, clocks that run a
little fast or slow. After every step it checks the promises:

* at any instant at most one node calls itself leader, and it holds the lease;
* a leader's own deadline never outlasts its lease in the arbiter;
* terms only rise: each election's term is above every earlier one, and no
  node's known term ever goes down.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from raftredis.election import (
    Acquire,
    AcquireResult,
    BackendFailed,
    Command,
    ControlReceived,
    Effect,
    Election,
    Event,
    Heartbeat,
    HeartbeatResult,
    Lease,
    Leave,
    ReelectRequested,
    Renew,
    RenewResult,
    Resign,
    Start,
    StopRequested,
    Tick,
)
from raftredis.models import State
from raftredis.timing import Timings
from raftredis.wire import ControlMessage, ControlType


@dataclass
class Arbiter:
    """The Redis side: a lease with an expiry, a term counter, and pub/sub."""

    holder: str | None = None
    term: int = 0
    expires: float = 0.0
    elections: list[tuple[float, int, str]] = field(default_factory=list)

    def lease(self, now: float) -> tuple[str, int, float] | None:
        if self.holder is not None and now < self.expires:
            return self.holder, self.term_of_lease, self.expires
        self.holder = None
        return None

    term_of_lease: int = 0


@dataclass
class Faults:
    latency: float = 0.002
    slow_chance: float = 0.0  # a command takes up to 3 socket timeouts
    fail_chance: float = 0.0  # lost before or after Redis applied it
    notice_loss: float = 0.0
    pause_chance: float = 0.0  # per second per node
    drift: float = 0.0  # max relative clock rate error


@dataclass
class Node:
    id: str
    election: Election
    drift: float
    offset: float
    pending: deque[Command] = field(default_factory=deque)
    inbox: deque[Callable[[float], Event]] = field(default_factory=deque)
    # The reply to the command in flight: handled before anything else, as the
    # heartbeat thread does (it runs the commands a result returns at once).
    result: Callable[[float], Event] | None = None
    busy: bool = False
    paused_until: float = 0.0
    max_term: int = 0
    wake_token: int = 0
    stopped: bool = False

    def local(self, t: float) -> float:
        return self.offset + t * (1 + self.drift)

    def to_global(self, local: float) -> float:
        return (local - self.offset) / (1 + self.drift)


class Simulation:
    def __init__(self, n: int, seed: int, faults: Faults, ttl: float = 1.0) -> None:
        self.rng = random.Random(seed)
        self.timings = Timings.from_lease(ttl)
        self.faults = faults
        self.arbiter = Arbiter()
        self.queue: list[tuple[float, int, Callable[[float], None]]] = []
        self.seq = itertools.count()
        self.now = 0.0
        self.nodes = [self._make_node(f"n{i}") for i in range(n)]
        self.leader_time = 0.0
        self.max_elected_term = 0
        self.checks = 0

    def _make_node(self, node_id: str) -> Node:
        f = self.faults
        return Node(
            id=node_id,
            election=Election(node_id, self.timings, random.Random(self.rng.random())),
            drift=self.rng.uniform(-f.drift, f.drift),
            offset=self.rng.uniform(0, 1000),
        )

    # ------------------------------------------------------------ engine

    def at(self, t: float, fn: Callable[[float], None]) -> None:
        heapq.heappush(self.queue, (t, next(self.seq), fn))

    def run(self, until: float) -> None:
        for i, node in enumerate(self.nodes):
            start = i * 0.01
            self.at(start, lambda t, node=node: self._start(node, t))
        while self.queue and self.queue[0][0] <= until:
            t, _, fn = heapq.heappop(self.queue)
            self.now = t
            fn(t)
            self.check(t)

    def _start(self, node: Node, t: float) -> None:
        node.inbox.append(lambda now: Start(now))
        self.step(node, t)

    def step(self, node: Node, t: float) -> None:
        """Let ``node`` run until it blocks on I/O or sleeps."""
        if node.stopped:
            return
        if t < node.paused_until:
            self.at(node.paused_until, lambda t2: self.step(node, t2))
            return
        e = node.election
        for _ in range(1000):
            if node.busy:
                return
            if node.result is not None:
                result, node.result = node.result, None
                self.feed(node, result(node.local(t)))
                continue
            if node.pending:
                cmd = node.pending.popleft()
                if not isinstance(cmd, Effect):
                    self.start_io(node, cmd, t)
                continue
            if node.inbox:
                self.feed(node, node.inbox.popleft()(node.local(t)))
                continue
            wake = e.next_wakeup
            if e.stopped:
                node.stopped = True
                return
            if wake is None:
                return
            if wake <= node.local(t):
                self.feed(node, Tick(node.local(t)))
                if not node.pending and e.next_wakeup == wake:
                    raise AssertionError(f"{node.id} asks to wake at {wake} but does nothing")
                continue
            node.wake_token += 1
            token = node.wake_token
            self.at(
                max(t, node.to_global(wake) + 1e-9),
                lambda t2, token=token: token == node.wake_token and self.step(node, t2),
            )
            return
        raise AssertionError(f"{node.id} did not settle")

    def feed(self, node: Node, event: Event) -> None:
        node.pending.extend(node.election.handle(event))
        assert node.election.term >= node.max_term, "a node's known term went down"
        node.max_term = node.election.term
        self.check(self.now)

    # ---------------------------------------------------------- commands

    def start_io(self, node: Node, cmd: Command, t: float) -> None:
        f, rng, tm = self.faults, self.rng, self.timings
        node.busy = True
        sent = node.local(t)
        timeout = 2 * tm.socket_timeout
        there = rng.uniform(0, f.latency)
        back = rng.uniform(0, f.latency)
        if rng.random() < f.slow_chance:
            there += rng.uniform(0, 3 * tm.socket_timeout)
        outcome = rng.random()
        lost_before = outcome < f.fail_chance / 2
        lost_after = f.fail_chance / 2 <= outcome < f.fail_chance

        def apply(ta: float) -> None:
            result = self.apply(node, cmd, ta, sent)

            def reply(tr: float) -> None:
                node.busy = False
                if lost_after or (tr - t) > timeout:
                    node.result = lambda now: BackendFailed(now, cmd)
                elif result is not None:
                    node.result = result
                self.step(node, tr)

            self.at(ta + back, reply)

        if lost_before:

            def failed(tr: float) -> None:
                node.busy = False
                node.result = lambda now: BackendFailed(now, cmd)
                self.step(node, tr)

            self.at(t + timeout, failed)
        else:
            self.at(t + there, apply)

    def apply(
        self, node: Node, cmd: Command, t: float, sent: float
    ) -> Callable[[float], Event] | None:
        a, tm = self.arbiter, self.timings
        held = a.lease(t)
        if isinstance(cmd, Acquire):
            if held is None:
                a.term = max(a.term, cmd.known_term) + 1
                a.holder, a.term_of_lease, a.expires = node.id, a.term, t + tm.lease_ttl
                assert a.term > self.max_elected_term, "an election reused or lowered a term"
                self.max_elected_term = a.term
                a.elections.append((t, a.term, node.id))
                self.publish(t, ControlMessage(ControlType.ELECTED, node.id, a.term))
                lease = Lease(a.term, node.id, tm.lease_ttl)
            else:
                lease = Lease(held[1], held[0], held[2] - t)
            return lambda now: AcquireResult(now, sent, lease)
        if isinstance(cmd, Renew):
            if held is not None and held[0] == node.id and held[1] == cmd.term:
                a.expires = t + tm.lease_ttl
                return lambda now: RenewResult(now, sent, True)
            other = None if held is None else Lease(held[1], held[0], held[2] - t)
            return lambda now: RenewResult(now, sent, False, other)
        if isinstance(cmd, (Resign, Leave)):
            term = cmd.term
            if term is not None and held is not None and held[:2] == (node.id, term):
                a.holder = None
                self.publish(t, ControlMessage(ControlType.RESIGNED, node.id, term))
            return None
        if isinstance(cmd, Heartbeat):
            lease = None if held is None else Lease(held[1], held[0], held[2] - t)
            seen = lease if cmd.read_lease else None
            return lambda now: HeartbeatResult(now, cmd.read_lease, seen)
        raise AssertionError(cmd)

    def publish(self, t: float, msg: ControlMessage) -> None:
        for node in self.nodes:
            if self.rng.random() < self.faults.notice_loss:
                continue
            delay = self.rng.uniform(0, self.faults.latency)

            def deliver(td: float, node: Node = node) -> None:
                node.inbox.append(lambda now: ControlReceived(now, msg))
                self.step(node, td)

            self.at(t + delay, deliver)

    # ------------------------------------------------------------ faults

    def add_pauses(self, until: float) -> None:
        chance = self.faults.pause_chance
        if not chance:
            return
        for node in self.nodes:
            t = 0.0
            while True:
                t += self.rng.expovariate(chance)
                if t > until:
                    break
                length = self.rng.uniform(0, 3 * self.timings.lease_ttl)

                def pause(tp: float, node: Node = node, length: float = length) -> None:
                    node.paused_until = max(node.paused_until, tp + length)

                self.at(t, pause)

    # ---------------------------------------------------------- invariants

    def check(self, t: float) -> None:
        self.checks += 1
        a = self.arbiter
        held = a.lease(t)
        leaders = [n for n in self.nodes if n.election.is_leader(n.local(t))]
        assert len(leaders) <= 1, f"two leaders at t={t}: {[n.id for n in leaders]}"
        for n in leaders:
            assert held is not None and held[0] == n.id, f"{n.id} leads without the lease at {t}"
            deadline = n.election.lease_deadline
            assert deadline is not None
            assert n.to_global(deadline) <= held[2], f"{n.id}'s deadline outlasts its lease"


SCENARIOS = {
    "calm": Faults(),
    "slow network": Faults(latency=0.05, slow_chance=0.2),
    "failing commands": Faults(latency=0.01, fail_chance=0.2, notice_loss=0.3),
    "paused processes": Faults(latency=0.005, pause_chance=0.2),
    "everything": Faults(
        latency=0.03,
        slow_chance=0.1,
        fail_chance=0.1,
        notice_loss=0.2,
        pause_chance=0.1,
        drift=1e-3,
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("seed", range(4))
def test_at_most_one_leader_under_faults(name: str, seed: int) -> None:
    """Five nodes for 120 simulated seconds: the promises hold and leaders are elected."""
    sim = Simulation(5, seed, SCENARIOS[name])
    sim.add_pauses(120.0)
    sim.run(120.0)
    assert sim.arbiter.elections, "nobody was ever elected"
    assert sim.checks > 1000


def test_calm_cluster_elects_once_and_keeps_the_leader() -> None:
    """Without faults there is exactly one election and the leader never changes."""
    sim = Simulation(5, 1, Faults())
    sim.run(60.0)
    assert len(sim.arbiter.elections) == 1
    leaders = {n.id for n in sim.nodes if n.election.state is State.LEADER}
    assert leaders == {sim.arbiter.elections[0][2]}
    assert all(n.election.leader_id == sim.arbiter.elections[0][2] for n in sim.nodes)


def test_reelect_hands_over_within_jitter() -> None:
    """reelect() on the leader: another node holds the lease within tens of ms."""
    sim = Simulation(5, 2, Faults(latency=0.001))
    sim.run(5.0)
    (_, term0, first) = sim.arbiter.elections[-1]
    leader = next(n for n in sim.nodes if n.id == first)
    leader.inbox.append(lambda now: ReelectRequested(now))
    sim.step(leader, sim.now)
    sim.run(10.0)
    later = [e for e in sim.arbiter.elections if e[1] > term0]
    assert later and later[0][2] != first
    assert later[0][0] - 5.0 < 0.1


def test_crashed_leader_is_replaced_when_lease_ends() -> None:
    """A leader that stops answering (crash) is replaced about lease_ttl later."""
    sim = Simulation(5, 3, Faults(latency=0.001))
    sim.run(5.0)
    (_, term0, first) = sim.arbiter.elections[-1]
    crashed = next(n for n in sim.nodes if n.id == first)
    crashed.stopped = True  # no more steps: like kill -9
    crash_time = sim.now
    sim.run(15.0)
    later = [e for e in sim.arbiter.elections if e[1] > term0]
    assert later, "no new leader after the crash"
    delay = later[0][0] - crash_time
    assert delay <= sim.timings.lease_ttl + 0.1


def test_stop_of_leader_hands_over_fast() -> None:
    """stop() on the leader: resign notice, others campaign at once."""
    sim = Simulation(3, 4, Faults(latency=0.001))
    sim.run(5.0)
    (_, term0, first) = sim.arbiter.elections[-1]
    leader = next(n for n in sim.nodes if n.id == first)
    leader.inbox.append(lambda now: StopRequested(now))
    sim.step(leader, sim.now)
    sim.run(6.0)
    later = [e for e in sim.arbiter.elections if e[1] > term0]
    assert later and later[0][0] - 5.0 < 0.1
