"""Fast failover against an in-memory arbiter, in simulated time: every way a presence
connection can go away, crossed with crashes, pauses and slow messages.

The arbiter of ``test_simulation.py`` gains what fast failover reads in Redis:
which presence connections are subscribed (``PUBSUB NUMSUB``), the registered
term of a holder that proves its presence, and the takeover suspicion, with
the scripts' rules (acquire, renew with ``clear_suspicion``, takeover). Each
node's presence connection is modelled end to end: its pings cross the
network, Redis answers only while the connection is subscribed, and the
node hears of a closed connection late, or never.

The faults, at random moments, on 3 nodes:

* **crash**: the node stops; Redis sees its connections close at once;
* **pause**: the node stops stepping for up to 3 lease_ttl; its connections stay;
* **kill**: Redis closes the node's presence connection (``CLIENT KILL``, an
  output buffer limit); the node hears the close after a network delay and
  reconnects;
* **silent close**: Redis closes it but the node never hears (a proxy that
  closes only the Redis side): its pings go unanswered;
* **slow network**: every message is delayed up to 20 ms, some up to 3 socket
  timeouts.

After every step the invariants of docs/design-notes.md ("n. Fast failover")
are checked: at any instant at most one node calls itself leader, and it
holds the lease; terms only rise. A large fixed set of seeds explores the
interleavings.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from test_simulation import Faults, Node, Simulation

from raftredis.election import (
    Acquire,
    AcquireResult,
    Command,
    Election,
    Event,
    Lease,
    PresenceLost,
    PresenceProof,
    PresenceRestored,
    Renew,
    RenewResult,
    TakeOver,
    TakeoverResult,
    Watch,
    WatchResult,
)
from raftredis.wire import ControlMessage, ControlType


@dataclass
class PresenceFaults(Faults):
    crash_chance: float = 0.0  # per second per node
    kill_chance: float = 0.0  # per second per node: Redis closes its presence connection
    silent_chance: float = 0.0  # ... and the node never hears of it
    reconnect_delay: float = 0.05


@dataclass
class Presence:
    """A node's presence connection, as Redis and as the node see it."""

    subscribed: bool = True  # on Redis: counted by NUMSUB
    epoch: int = 0  # bumped on every new connection
    silent: bool = False  # closed on Redis, and the node does not know
    restoring: bool = False
    sent: dict[int, float] = field(default_factory=dict)  # ping seq -> local send time
    seq: int = 0


class FastSimulation(Simulation):
    def __init__(self, n: int, seed: int, faults: PresenceFaults, ttl: float = 1.0) -> None:
        self.pfaults = faults
        self.presence: dict[str, Presence] = {}
        self.registered: tuple[int, str] | None = None
        self.suspect: tuple[int, str, float] | None = None
        self.takeovers = 0
        super().__init__(n, seed, faults, ttl)

    def _make_node(self, node_id: str) -> Node:
        node = super()._make_node(node_id)
        node.election = Election(node_id, self.timings, random.Random(self.rng.random()), fast=True)
        self.presence[node_id] = Presence()
        return node

    def run(self, until: float) -> None:
        for node in self.nodes:
            self.at(0.02, lambda t, node=node: self._ping_loop(node, t))
        super().run(until)

    # ------------------------------------------------------------- pings

    def _ping_loop(self, node: Node, t: float) -> None:
        """The presence listener: a ping every presence_interval while it holds the
        lease (or is restoring), when the node runs."""
        if node.stopped:
            return
        interval = self.timings.presence_interval
        p = self.presence[node.id]
        if t >= node.paused_until and (node.election.holds_lease or p.restoring):
            p.seq += 1
            seq, epoch, sent = p.seq, p.epoch, node.local(t)
            p.sent[seq] = sent
            there = self.rng.uniform(0, self.faults.latency)
            self.at(t + there, lambda ta: self._ping_arrives(node, seq, epoch, ta))
        wait = interval if t >= node.paused_until else node.paused_until - t
        self.at(t + wait, lambda t2: self._ping_loop(node, t2))

    def _ping_arrives(self, node: Node, seq: int, epoch: int, t: float) -> None:
        p = self.presence[node.id]
        if not p.subscribed or p.epoch != epoch:
            return  # a closed connection answers nothing
        back = self.rng.uniform(0, self.faults.latency)
        self.at(t + back, lambda tr: self._pong_arrives(node, seq, epoch, tr))

    def _pong_arrives(self, node: Node, seq: int, epoch: int, t: float) -> None:
        p = self.presence[node.id]
        sent = p.sent.pop(seq, None)
        if sent is None or p.epoch != epoch or node.stopped:
            return

        def event(now: float, sent: float = sent) -> Event:
            if p.restoring:
                p.restoring = False
                return PresenceRestored(now, sent)
            return PresenceProof(now, sent)

        node.inbox.append(event)
        self.step(node, t)

    # ------------------------------------------------------------ faults

    def add_presence_faults(self, until: float) -> None:
        f = self.pfaults
        for node in self.nodes:
            for chance, fault in (
                (f.crash_chance, self._crash),
                (f.kill_chance, self._kill),
                (f.silent_chance, self._silent_close),
            ):
                t = 0.5
                while chance:
                    t += self.rng.expovariate(chance)
                    if t > until:
                        break
                    self.at(t, lambda tf, node=node, fault=fault: fault(node, tf))

    def _crash(self, node: Node, t: float) -> None:
        if node.stopped:
            return
        node.stopped = True
        self.presence[node.id].subscribed = False  # the kernel closes its sockets

    def _kill(self, node: Node, t: float) -> None:
        p = self.presence[node.id]
        if node.stopped or not p.subscribed:
            return
        p.subscribed = False
        p.epoch += 1
        p.sent.clear()
        heard = t + self.rng.uniform(0, self.faults.latency)
        self.at(heard, lambda th: self._heard_close(node, th))

    def _silent_close(self, node: Node, t: float) -> None:
        p = self.presence[node.id]
        if node.stopped or not p.subscribed:
            return
        p.subscribed = False
        p.silent = True  # pings now go nowhere; the node is never told

    def _heard_close(self, node: Node, t: float) -> None:
        if node.stopped:
            return
        node.inbox.append(lambda now: PresenceLost(now))
        self.step(node, t)
        delay = self.pfaults.reconnect_delay * self.rng.uniform(0.5, 2.0)
        self.at(max(t, node.paused_until) + delay, lambda tr: self._reconnected(node, tr))

    def _reconnected(self, node: Node, t: float) -> None:
        p = self.presence[node.id]
        if node.stopped:
            return
        p.subscribed = True
        p.restoring = True
        p.sent.clear()

    # ---------------------------------------------------------- commands

    def apply(
        self, node: Node, cmd: Command, t: float, sent: float
    ) -> Callable[[float], Event] | None:
        a, tm = self.arbiter, self.timings
        if isinstance(cmd, Acquire):
            held_before = a.lease(t)
            reply = super().apply(node, cmd, t, sent)
            if held_before is None:  # taken: register, check our presence
                present = self.presence[node.id].subscribed
                self.suspect = None
                self.registered = (a.term, node.id) if present else None
                lease = Lease(a.term, node.id, tm.lease_ttl)
                return lambda now: AcquireResult(now, sent, lease, present)
            return reply
        if isinstance(cmd, Renew):
            reply = super().apply(node, cmd, t, sent)
            held = a.lease(t)
            renewed = held is not None and held[:2] == (node.id, cmd.term)
            if renewed and cmd.clear_suspicion:
                self.suspect = None
            if reply is None:
                return None
            return lambda now: _validated(reply(now), cmd.clear_suspicion)
        if isinstance(cmd, Watch):
            listeners = int(self.presence[cmd.holder].subscribed)
            members = sum(1 for n in self.nodes if not n.stopped)
            return lambda now: WatchResult(now, cmd.holder, cmd.term, listeners, members)
        if isinstance(cmd, TakeOver):
            return self._takeover(node, cmd, t, sent)
        return super().apply(node, cmd, t, sent)

    def _takeover(
        self, node: Node, cmd: TakeOver, t: float, sent: float
    ) -> Callable[[float], Event]:
        """lua/takeover.lua, on the arbiter."""
        a, tm = self.arbiter, self.timings
        held = a.lease(t)
        if held is None:
            return lambda now: TakeoverResult(now, sent, "vacant")
        holder, term, expires = held
        lease = Lease(term, holder, expires - t)
        proves = self.registered == (term, holder)
        if holder == node.id or not proves or self.presence[holder].subscribed:
            self.suspect = None
            return lambda now: TakeoverResult(now, sent, "held", lease)
        window = node.election.takeover_window
        if self.suspect is None or self.suspect[:2] != (term, holder):
            self.suspect = (term, holder, t)
            return lambda now: TakeoverResult(now, sent, "suspect", lease, window)
        waited = t - self.suspect[2]
        if waited < window:
            return lambda now: TakeoverResult(now, sent, "suspect", lease, window - waited)
        # Taken over.
        self.suspect = None
        a.term = max(a.term, cmd.known_term) + 1
        a.holder, a.term_of_lease, a.expires = node.id, a.term, t + tm.lease_ttl
        assert a.term > self.max_elected_term, "a takeover reused or lowered a term"
        self.max_elected_term = a.term
        a.elections.append((t, a.term, node.id))
        self.takeovers += 1
        present = self.presence[node.id].subscribed
        self.registered = (a.term, node.id) if present else None
        self.publish(t, ControlMessage(ControlType.ELECTED, node.id, a.term))
        mine = Lease(a.term, node.id, tm.lease_ttl)
        return lambda now: TakeoverResult(now, sent, "acquired", mine, 0.0, present)


def _validated(event: Event, validated: bool) -> Event:
    if isinstance(event, RenewResult) and validated:
        return RenewResult(event.now, event.sent_at, event.renewed, event.lease, True)
    return event


SCENARIOS = {
    "crashes": PresenceFaults(latency=0.005, crash_chance=0.05),
    "killed connections": PresenceFaults(latency=0.005, kill_chance=0.5),
    # Kills in quick succession: a connection restored, then killed again within a
    # window of the first loss (what the validating renew is for).
    "rapid kills": PresenceFaults(
        latency=0.005, kill_chance=6.0, silent_chance=3.0, reconnect_delay=0.02
    ),
    "silent closes": PresenceFaults(latency=0.005, silent_chance=0.2),
    "pauses and kills": PresenceFaults(latency=0.005, pause_chance=0.3, kill_chance=0.3),
    "everything": PresenceFaults(
        latency=0.02,
        slow_chance=0.05,
        fail_chance=0.05,
        notice_loss=0.2,
        pause_chance=0.2,
        drift=1e-3,
        crash_chance=0.02,
        kill_chance=0.3,
        silent_chance=0.1,
    ),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("seed", range(40))
def test_at_most_one_leader_with_fast_failover(name: str, seed: int) -> None:
    """Three nodes for 30 simulated seconds under each kind of fault, 40 seeds each."""
    sim = FastSimulation(3, seed, SCENARIOS[name])
    sim.add_pauses(30.0)
    sim.add_presence_faults(30.0)
    sim.run(30.0)
    assert sim.arbiter.elections, "nobody was ever elected"
    assert sim.checks > 100


def test_a_crashed_leader_is_replaced_within_a_watch_and_a_window() -> None:
    """The point of it: a crash is detected by the watch, and after the takeover window
    a survivor leads: far sooner than the lease (1 s here)."""
    sim = FastSimulation(3, 11, PresenceFaults(latency=0.001))
    sim.run(3.0)
    (_, term0, first) = sim.arbiter.elections[-1]
    crashed = next(n for n in sim.nodes if n.id == first)
    sim._crash(crashed, sim.now)
    crash_time = sim.now
    sim.run(6.0)
    later = [e for e in sim.arbiter.elections if e[1] > term0]
    assert later and sim.takeovers == 1
    delay = later[0][0] - crash_time
    t = sim.timings
    watch = t.presence_interval * 1.2 * 2  # two followers share it
    assert delay <= watch + crashed.election.takeover_window + 0.05
    assert delay < t.renew_deadline


def test_a_pause_keeps_the_leader_and_the_term() -> None:
    """A pause shorter than renew_deadline: the leader suspends and resumes; nobody else
    is elected (its presence connection stays subscribed)."""
    sim = FastSimulation(3, 12, PresenceFaults(latency=0.001))
    sim.run(3.0)
    (_, term0, first) = sim.arbiter.elections[-1]
    leader = next(n for n in sim.nodes if n.id == first)
    leader.paused_until = sim.now + 0.5 * sim.timings.renew_deadline
    sim.run(6.0)
    assert sim.arbiter.elections[-1][1] == term0
    assert leader.election.is_leader(leader.local(sim.now))
