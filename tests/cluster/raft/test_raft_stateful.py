"""The Raft core under hypothesis' rule-based state machine: hypothesis picks, step by step, which
message is delivered, dropped or duplicated, when time passes (timers fire, disks finish writing),
which node crashes (losing what it had not persisted) or restarts, when the network splits and heals,
and when clients propose, nodes compact, the membership changes or leadership moves. The simulator
(sim.py) checks every safety invariant after each step; at the end the faults stop and the group must
converge. Failures shrink to a short sequence of steps."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sim

from jsedge.cluster.raft import RaftTiming

pytestmark = pytest.mark.timeout(300)

PICK = st.integers(0, 1 << 20)


class RaftMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cluster: sim.Cluster | None = None

    @property
    def c(self) -> sim.Cluster:
        assert self.cluster is not None
        return self.cluster

    @initialize(
        size=st.integers(1, 5),
        seed=st.integers(0, 2**32 - 1),
        entries=st.sampled_from((1, 2, 512)),
        inflight=st.sampled_from((1, 2, 64)),
    )
    def setup(self, size: int, seed: int, entries: int, inflight: int) -> None:
        timing = RaftTiming(max_append_entries=entries, max_inflight=inflight)
        self.cluster = sim.Cluster(seed, nodes=size, timing=timing, manual_network=True)

    # the network, message by message
    @rule(k=PICK)
    def deliver(self, k: int) -> None:
        self.c.deliver_at(k)

    @rule(k=PICK)
    def deliver_several(self, k: int) -> None:
        for i in range(8):
            self.c.deliver_at(k + i)
            self.c.check()

    @rule(k=PICK)
    def drop(self, k: int) -> None:
        self.c.drop_at(k)

    @rule(k=PICK)
    def duplicate(self, k: int) -> None:
        self.c.duplicate_at(k)

    @rule()
    def partition(self) -> None:
        self.c.partition()

    @rule()
    def heal(self) -> None:
        self.c.heal()

    # time: timers fire, writes complete
    @rule(dt=st.sampled_from((0.001, 0.02, 0.3, 1.0, 4.5, 9.5)))
    def time_passes(self, dt: float) -> None:
        self.c.advance(dt)

    # nodes
    @rule(k=PICK)
    def crash(self, k: int) -> None:
        alive = sorted(n.id for n in self.c.live())
        if alive:
            self.c.crash(alive[k % len(alive)])

    @rule(k=PICK)
    def restart(self, k: int) -> None:
        down = sorted(nid for nid, n in self.c.nodes.items() if n.core is None)
        if down:
            self.c.start(down[k % len(down)])

    @rule(k=PICK)
    def compact(self, k: int) -> None:
        alive = sorted(n.id for n in self.c.live())
        if alive:
            self.c.compact(alive[k % len(alive)])

    # clients and operators
    @rule(count=st.integers(1, 3))
    def propose(self, count: int) -> None:
        self.c.propose(count)

    @rule()
    def change_membership(self) -> None:
        self.c.change_membership()

    @rule()
    def transfer(self) -> None:
        self.c.transfer()

    @rule()
    def step_down(self) -> None:
        self.c.step_down()

    @invariant()
    def safe(self) -> None:
        if self.cluster is not None:
            self.c.check()

    def teardown(self) -> None:
        if self.cluster is None:
            return
        self.c.automatic_network()
        self.c.calm()
        self.c.run_until_converged()


RaftMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestRaftStateful = RaftMachine.TestCase
