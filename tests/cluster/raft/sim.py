"""A deterministic simulator for the Raft core (jsedge/cluster/raft.py): N nodes in one process, a
simulated clock, a simulated network and simulated disks, all driven by one seeded `random.Random`.

The driver contract of `Ready` is modelled exactly: a Ready's persistence (snapshot, truncate, append,
hard state) completes some time later, Readies complete in order, the Ready's messages are sent only
after its persistence (or, for a node in "eager" mode, at once when the Ready has nothing to persist),
its committed entries are applied after that, and only then is the core told `persisted(...)` /
`snapshot_installed(...)`. A crash loses everything not yet persisted (a random prefix of the
in-progress writes may have reached the disk without the core hearing of it). Every message goes
through the wire codec. The network drops, duplicates, delays (reorders) and partitions, one way or
both ways.

Invariants are checked after every step (`Cluster.check` plus checks at the moment things happen):

* election safety: at most one leader per term, ever (a leader counts once its term is durable);
* log matching over every node's durable log: one (index, term) is always the same entry, preceded by
  the same term (hence, inductively, the same prefix);
* commitment: an entry a leader calls committed is durable on a majority of its config;
* leader completeness: a new leader's log holds every entry committed in an earlier term;
* state machine safety: every node applies the same command at the same index, in order, once;
* durability of the core's promises: an AppendResponse(success) never acknowledges an entry that is
  not on the sender's disk, a vote is durable before it is granted, a node never applies an entry it
  has not persisted, a durable term never goes down and a durable vote never changes within a term;
* liveness (`run_until_converged`): after the faults stop, one leader emerges and every member
  applies its whole log, within a bounded simulated time.
"""

from __future__ import annotations

import bisect
import heapq
import random
from collections import Counter, deque
from collections.abc import Callable

from jsedge.cluster import codec
from jsedge.cluster.raft import MembershipBusy, NotLeader, RaftNode, RaftTiming
from jsedge.cluster.types import (
    ENTRY_NORMAL,
    AppendResponse,
    Entry,
    HardState,
    Message,
    Ready,
    SnapshotMeta,
    SnapshotRequest,
    VoteResponse,
)

GROUP = "S-R3F-sim"
IDS = ("n1", "n2", "n3", "n4", "n5", "n6", "n7")

_DELIVER = 0
_PERSIST = 1
_TICK = 2


class InvariantViolation(AssertionError):
    pass


class StateMachine:
    """The replicated state: the commands applied, with their index."""

    __slots__ = ("applied", "commands")

    def __init__(self, applied: int = 0, commands: list[tuple[int, bytes]] | None = None) -> None:
        self.applied = applied
        self.commands: list[tuple[int, bytes]] = commands if commands is not None else []

    def apply(self, entry: Entry) -> None:
        if entry.index <= self.applied:
            return  # restored from a snapshot taken after this entry
        if entry.index != self.applied + 1:
            raise InvariantViolation(f"state machine at {self.applied} handed entry {entry.index}")
        self.applied = entry.index
        if entry.kind == ENTRY_NORMAL:
            self.commands.append((entry.index, entry.data))

    def encode(self) -> bytes:
        return b"\n".join([b"%d" % self.applied] + [b"%d:%s" % (i, d.hex().encode()) for i, d in self.commands])

    @classmethod
    def decode(cls, data: bytes) -> StateMachine:
        if not data:
            return cls()
        head, *rest = data.split(b"\n")
        commands = []
        for line in rest:
            index, hexdata = line.split(b":")
            commands.append((int(index), bytes.fromhex(hexdata.decode())))
        return cls(int(head), commands)


class Storage:
    """What a node's disk holds: only what was persisted."""

    __slots__ = ("hard_state", "log", "snapshot", "snapshot_data")

    def __init__(self) -> None:
        self.hard_state = HardState(0, "")
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data = b""
        self.log: list[Entry] = []

    @property
    def snap_index(self) -> int:
        return self.snapshot.index if self.snapshot is not None else 0

    def last_index(self) -> int:
        return self.snap_index + len(self.log)

    def term_at(self, index: int) -> int | None:
        snap = self.snap_index
        if index == snap:
            return self.snapshot.term if self.snapshot is not None else 0
        k = index - snap - 1
        if 0 <= k < len(self.log):
            return self.log[k].term
        return None

    def covers(self, index: int, term: int) -> bool:
        """The disk holds the entry (index, term), or a snapshot past it."""
        if index < self.snap_index:
            return True
        return self.term_at(index) == term


class _Pending:
    __slots__ = ("done_at", "last_index", "last_term", "persist", "ready", "sent")

    def __init__(self, ready: Ready, last_index: int, last_term: int, persist: bool, done_at: float) -> None:
        self.ready = ready
        self.last_index = last_index
        self.last_term = last_term
        self.persist = persist
        self.done_at = done_at
        self.sent = False


class SimNode:
    def __init__(self, id: str, peers: tuple[str, ...]) -> None:
        self.id = id
        self.initial_peers = peers
        self.storage = Storage()
        self.core: RaftNode | None = None
        self.sm = StateMachine()
        self.pending: deque[_Pending] = deque()
        self.incarnation = 0
        self.busy_until = 0.0
        self.tick_token = 0
        self.tick_at = float("inf")
        self.cursor = 0  # index of the last committed entry the core handed out
        self.seen_commit = 0
        self.leader_term = 0
        self.eager = False

    @property
    def alive(self) -> bool:
        return self.core is not None


class _Msg:
    __slots__ = ("alive", "data", "dst", "src")

    def __init__(self, src: str, dst: str, data: bytes) -> None:
        self.src = src
        self.dst = dst
        self.data = data
        self.alive = True


class Cluster:
    """A Raft group under simulation. All randomness comes from `self.rng` (seeded)."""

    def __init__(
        self,
        seed: int,
        *,
        nodes: int = 3,
        timing: RaftTiming | None = None,
        manual_network: bool = False,
        trace: bool = False,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.timing = timing or RaftTiming()
        self.manual_network = manual_network
        self.now = 0.0
        self.events: list[tuple[float, int, int, object, int]] = []
        self.seq = 0
        self.net: list[_Msg] = []  # manual network: messages in flight
        self.blocked: set[tuple[str, str]] = set()
        self.drop_rate = 0.0
        self.dup_rate = 0.0
        self.slow_rate = 0.0  # share of messages delayed for seconds
        self.latency = (0.0005, 0.02)
        self.persist_delay = (0.0002, 0.01)
        self.slow_persist_rate = 0.0
        self.crash_on_commit = 0.0  # chance that a leader crashes the moment its commit index moves
        self.nodes: dict[str, SimNode] = {}
        self.commands = 0
        # invariant bookkeeping
        self.leaders: dict[int, str] = {}
        self._completeness_checked: set[int] = set()
        self.seen_entries: dict[tuple[int, int], tuple[int, bytes, int]] = {}
        self.committed: dict[int, tuple[int, int, bytes, int]] = {}  # index -> term, kind, data, commit term
        self.applied_entries: dict[int, tuple[int, int, bytes]] = {}
        self.stats: Counter[str] = Counter()
        self.tracing = trace
        self.trace: deque[str] = deque(maxlen=600)
        members = IDS[:nodes]
        for nid in members:
            node = SimNode(nid, members)
            node.eager = self.rng.random() < 0.5
            self.nodes[nid] = node
            self.start(nid)

    # ---------------------------------------------------------------------------------- plumbing

    def _t(self, text: str) -> None:
        self.trace.append(f"{self.now:10.4f} {text}")

    def _push(self, at: float, kind: int, payload: object, token: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, payload, token))

    def fail(self, text: str) -> InvariantViolation:
        return InvariantViolation(f"seed {self.seed} t={self.now:.4f}: {text}")

    def live(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None]

    def leader_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.core is not None and n.core.role == "leader"]

    def _schedule_tick(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        deadline = core.next_deadline
        if deadline == float("inf"):
            return
        at = max(deadline, self.now) + self.rng.uniform(0.0, 0.05)  # a coarse timer
        if at < node.tick_at or node.tick_at <= self.now:
            node.tick_token += 1
            node.tick_at = at
            self._push(at, _TICK, node.id, node.tick_token)

    # ---------------------------------------------------------------------------------- nodes

    def start(self, nid: str) -> None:
        """(Re)start a node from its disk."""
        node = self.nodes[nid]
        assert node.core is None
        st = node.storage
        node.sm = StateMachine.decode(st.snapshot_data) if st.snapshot is not None else StateMachine()
        node.incarnation += 1
        node.pending.clear()
        node.busy_until = self.now
        node.tick_at = float("inf")
        node.core = RaftNode(
            nid,
            node.initial_peers,
            rng=random.Random(self.rng.getrandbits(64)),
            config=self.timing,
            hard_state=st.hard_state,
            snapshot=st.snapshot,
            log=list(st.log),
            now=self.now,
            snapshot_data=lambda: node.sm.encode(),
        )
        node.cursor = st.snap_index
        node.seen_commit = node.core.commit_index
        node.leader_term = 0
        self.stats["starts"] += 1
        if self.tracing:
            self._t(f"{nid} start term={st.hard_state.term} last={st.last_index()} snap={st.snap_index}")
        self._schedule_tick(node)

    def crash(self, nid: str) -> None:
        node = self.nodes[nid]
        if node.core is None:
            return
        # writes in progress: a random prefix reached the disk, unknown to the core
        for item in node.pending:
            if not item.persist:
                continue
            if self.rng.random() < 0.5:
                break
            self._write(node, item.ready)
        node.pending.clear()
        node.core = None
        node.incarnation += 1
        self.stats["crashes"] += 1
        if self.tracing:
            self._t(f"{nid} CRASH")

    def add_node(self, nid: str, peers: tuple[str, ...]) -> None:
        """A node that was never part of the group, started with an empty disk."""
        node = SimNode(nid, peers)
        node.eager = self.rng.random() < 0.5
        self.nodes[nid] = node
        self.start(nid)

    # ---------------------------------------------------------------------------------- the driver

    def _handle(self, node: SimNode, ready: Ready) -> None:
        core = node.core
        assert core is not None
        if ready.empty():
            self._schedule_tick(node)
            return
        persist = bool(
            ready.hard_state is not None or ready.truncate_from or ready.entries or ready.snapshot is not None
        )
        if persist:
            lo, hi = self.persist_delay
            delay = self.rng.uniform(lo, hi)
            if self.slow_persist_rate and self.rng.random() < self.slow_persist_rate:
                delay = self.rng.uniform(0.05, 1.5)
            done = max(self.now + delay, node.busy_until)
            node.busy_until = done
        else:
            done = self.now
        item = _Pending(ready, core.last_index, core.last_term, persist, done)
        if not persist and node.eager and ready.messages:
            item.sent = True  # nothing to persist: an eager driver sends at once
            for dst, msg in ready.messages:
                self._send(node, dst, msg)
        node.pending.append(item)
        if persist:
            self._push(done, _PERSIST, node.id, node.incarnation)
        elif len(node.pending) == 1:
            self._drain(node)
        self._schedule_tick(node)

    def _drain(self, node: SimNode) -> None:
        incarnation = node.incarnation
        while node.pending and node.incarnation == incarnation:
            item = node.pending[0]
            if item.persist and item.done_at > self.now:
                return
            node.pending.popleft()
            self._complete(node, item)

    def _write(self, node: SimNode, ready: Ready) -> None:
        """Step 1 of a Ready: make it durable."""
        st = node.storage
        snap = ready.snapshot
        if snap is not None:
            if snap.index <= st.snap_index:
                raise self.fail(f"{node.id}: snapshot {snap.index} does not move past {st.snap_index}")
            st.log = [e for e in st.log if e.index > snap.index]
            st.snapshot = snap
            st.snapshot_data = ready.snapshot_data
        if ready.truncate_from:
            cut = ready.truncate_from - st.snap_index - 1
            if cut < 0:
                raise self.fail(f"{node.id}: truncation at {ready.truncate_from} below the snapshot")
            for entry in st.log[cut:]:
                known = self.committed.get(entry.index)
                if known is not None and known[0] == entry.term:
                    raise self.fail(f"{node.id} drops committed entry {entry.index} (term {entry.term}) from its disk")
            del st.log[cut:]
        for entry in ready.entries:
            if entry.index != st.last_index() + 1:
                raise self.fail(f"{node.id}: entry {entry.index} does not continue the disk log at {st.last_index()}")
            prev_term = st.term_at(entry.index - 1)
            if prev_term is None:
                prev_term = -1
            key = (entry.index, entry.term)
            seen = self.seen_entries.get(key)
            if seen is None:
                self.seen_entries[key] = (entry.kind, entry.data, prev_term)
            elif (seen[0], seen[1]) != (entry.kind, entry.data) or (
                prev_term >= 0 and seen[2] >= 0 and prev_term != seen[2]
            ):
                raise self.fail(f"log matching: {node.id} holds {entry} with prev term {prev_term}, elsewhere {seen}")
            st.log.append(entry)
        hs = ready.hard_state
        if hs is not None:
            old = st.hard_state
            if hs.term < old.term:
                raise self.fail(f"{node.id}: durable term goes down {old} -> {hs}")
            if hs.term == old.term and old.voted_for and hs.voted_for != old.voted_for:
                raise self.fail(f"{node.id}: durable vote changes within a term {old} -> {hs}")
            st.hard_state = hs

    def _complete(self, node: SimNode, item: _Pending) -> None:
        ready = item.ready
        if item.persist:
            self._write(node, ready)
            if ready.snapshot is not None:
                sm = StateMachine.decode(ready.snapshot_data)
                if sm.applied < ready.snapshot.index:
                    raise self.fail(f"{node.id}: snapshot data at {sm.applied} behind its index {ready.snapshot.index}")
                self._check_commands(node, sm)
                node.sm = sm
                node.cursor = ready.snapshot.index
                self.stats["snapshots_installed"] += 1
        if not item.sent:
            for dst, msg in ready.messages:
                self._send(node, dst, msg)
        for entry in ready.committed:
            self._apply(node, entry)
        core = node.core
        assert core is not None
        if ready.snapshot is not None:
            self._handle(node, core.snapshot_installed(ready.snapshot))
            if node.core is not core:
                return
        if item.persist:
            self._handle(node, core.persisted(item.last_index, item.last_term))

    def _apply(self, node: SimNode, entry: Entry) -> None:
        if entry.index != node.cursor + 1:
            raise self.fail(f"{node.id}: committed entry {entry.index} handed out after {node.cursor}")
        node.cursor = entry.index
        if not node.storage.covers(entry.index, entry.term):
            raise self.fail(f"{node.id}: applies entry {entry.index} that is not on its disk")
        known = self.applied_entries.get(entry.index)
        mine = (entry.term, entry.kind, entry.data)
        if known is None:
            self.applied_entries[entry.index] = mine
        elif known != mine:
            raise self.fail(f"state machine safety: {node.id} applies {mine} at {entry.index}, another node {known}")
        committed = self.committed.get(entry.index)
        if committed is not None and committed[:3] != mine:
            raise self.fail(f"{node.id} applies {mine} at {entry.index}, committed was {committed}")
        node.sm.apply(entry)
        self.stats["applied"] += 1

    def _check_commands(self, node: SimNode, sm: StateMachine) -> None:
        for index, data in sm.commands:
            known = self.applied_entries.get(index)
            if known is not None and (known[1], known[2]) != (ENTRY_NORMAL, data):
                raise self.fail(f"{node.id}: snapshot holds {data!r} at {index}, applied elsewhere {known}")

    # ---------------------------------------------------------------------------------- network

    def _send(self, node: SimNode, dst: str, msg: Message) -> None:
        st = node.storage
        if isinstance(msg, AppendResponse) and msg.success and msg.index:
            core = node.core
            assert core is not None
            term = core.term_at(msg.index)
            if msg.index > st.last_index() or (term is not None and not st.covers(msg.index, term)):
                raise self.fail(f"{node.id} acknowledges {msg.index} before it is on disk (disk {st.last_index()})")
        elif isinstance(msg, VoteResponse) and msg.granted and not msg.pre_vote:
            if st.hard_state != HardState(msg.term, dst):
                raise self.fail(f"{node.id} grants a vote to {dst} in {msg.term}, disk says {st.hard_state}")
        elif isinstance(msg, SnapshotRequest):
            self.stats["snapshots_sent"] += 1
        data = codec.encode(GROUP, msg)
        self.stats["messages"] += 1
        if self.tracing:
            self._t(f"{node.id} -> {dst} {msg!r:.300}")
        if self.manual_network:
            self.net.append(_Msg(node.id, dst, data))
            return
        rng = self.rng
        copies = 2 if self.dup_rate and rng.random() < self.dup_rate else 1
        for _ in range(copies):
            if self.drop_rate and rng.random() < self.drop_rate:
                self.stats["dropped"] += 1
                continue
            if self.slow_rate and rng.random() < self.slow_rate:
                delay = rng.uniform(0.5, 5.0)
            else:
                delay = rng.uniform(*self.latency)
            self._push(self.now + delay, _DELIVER, _Msg(node.id, dst, data), 0)

    def deliver(self, msg: _Msg) -> None:
        msg.alive = False
        if (msg.src, msg.dst) in self.blocked:
            self.stats["blocked"] += 1
            return
        node = self.nodes.get(msg.dst)
        if node is None or node.core is None:
            return
        group, decoded = codec.decode(msg.data)
        assert group == GROUP
        if self.tracing:
            self._t(f"{msg.src} => {msg.dst} {decoded!r:.300}")
        self._handle(node, node.core.step(decoded, self.now))

    # ---------------------------------------------------------------------------------- time

    def next_event(self, *, until: float = float("inf")) -> bool:
        """Process the earliest event at or before `until`; False when there is none."""
        events = self.events
        while events:
            at, _, kind, payload, token = events[0]
            if at > until:
                return False
            heapq.heappop(events)
            if at > self.now:
                self.now = at
            if kind == _DELIVER:
                assert isinstance(payload, _Msg)
                if payload.alive:
                    self.deliver(payload)
                    return True
            elif kind == _PERSIST:
                assert isinstance(payload, str)
                node = self.nodes[payload]
                if node.core is not None and node.incarnation == token:
                    self._drain(node)
                    return True
            else:
                assert isinstance(payload, str)
                node = self.nodes[payload]
                if node.core is not None and node.tick_token == token:
                    node.tick_at = float("inf")
                    if self.tracing:
                        self._t(f"{node.id} tick")
                    self._handle(node, node.core.tick(self.now))
                    return True
        return False

    def advance(self, dt: float, *, check: bool = True) -> None:
        """Run every event due within `dt`, checking the invariants after each."""
        until = self.now + dt
        while self.next_event(until=until):
            if check:
                self.check()
        self.now = until

    # ---------------------------------------------------------------------------------- manual network

    def deliver_at(self, k: int) -> bool:
        msg = self._take(k)
        if msg is None:
            return False
        self.deliver(msg)
        return True

    def drop_at(self, k: int) -> None:
        self._take(k)

    def duplicate_at(self, k: int) -> None:
        if self.net:
            msg = self.net[k % len(self.net)]
            self.net.append(_Msg(msg.src, msg.dst, msg.data))

    def automatic_network(self) -> None:
        """Leave manual delivery: what is in flight is scheduled, and so is everything sent from now."""
        self.manual_network = False
        for msg in self.net:
            self._push(self.now + self.rng.uniform(*self.latency), _DELIVER, msg, 0)
        self.net = []

    def _take(self, k: int) -> _Msg | None:
        net = self.net
        if not net:
            return None
        i = k % len(net)
        msg = net[i]
        net[i] = net[-1]
        net.pop()
        return msg

    # ---------------------------------------------------------------------------------- clients and operators

    def propose(self, count: int = 1) -> int | None:
        leaders = self.leader_nodes()
        if not leaders:
            return None
        node = self.rng.choice(leaders)
        assert node.core is not None
        datas = []
        for _ in range(count):
            self.commands += 1
            datas.append(b"c%d" % self.commands)
        try:
            if count == 1:
                index, ready = node.core.propose(datas[0], self.now)
            else:
                index, ready = node.core.propose_many(datas, self.now)
        except NotLeader:
            return None
        self.stats["proposed"] += count
        if self.tracing:
            self._t(f"{node.id} propose {datas} at {index}")
        self._handle(node, ready)
        return index

    def compact(self, nid: str) -> None:
        node = self.nodes[nid]
        core = node.core
        if core is None or core.installing is not None:
            return
        index = node.sm.applied
        if index > core.applied or index <= node.storage.snap_index:
            return
        core.compact(index)
        snap = core.snapshot
        assert snap is not None and snap.index == index
        st = node.storage
        if not st.covers(index, snap.term):
            raise self.fail(f"{nid}: compacting to {index}, which is not on disk")
        st.log = [e for e in st.log if e.index > index]
        st.snapshot = snap
        st.snapshot_data = node.sm.encode()
        self.stats["compactions"] += 1
        if self.tracing:
            self._t(f"{nid} compact {index}")

    def change_membership(self) -> None:
        leaders = self.leader_nodes()
        if not leaders:
            return
        node = self.rng.choice(leaders)
        core = node.core
        assert core is not None
        peers = core.peers
        rng = self.rng
        if len(peers) > 1 and (len(peers) >= 5 or rng.random() < 0.5):
            gone = rng.choice(peers)
            target = tuple(p for p in peers if p != gone)
        else:
            candidates = [i for i in IDS if i not in peers]
            if not candidates:
                return
            new = rng.choice(candidates)
            target = (*peers, new)
        try:
            index, ready = core.propose_peers(target, self.now)
        except (NotLeader, MembershipBusy):
            return
        self.stats["membership_changes"] += 1
        if self.tracing:
            self._t(f"{node.id} propose peers {target} at {index}")
        self._handle(node, ready)
        for nid in target:
            if nid not in self.nodes:
                self.add_node(nid, target)
            elif self.nodes[nid].core is None and rng.random() < 0.5:
                self.start(nid)

    def transfer(self) -> None:
        leaders = self.leader_nodes()
        if not leaders:
            return
        node = self.rng.choice(leaders)
        core = node.core
        assert core is not None
        others = [p for p in core.peers if p != node.id]
        target = self.rng.choice([None, *others])
        self.stats["transfers"] += 1
        if self.tracing:
            self._t(f"{node.id} transfer to {target}")
        self._handle(node, core.transfer_leadership(target, self.now))

    def step_down(self) -> None:
        leaders = self.leader_nodes()
        if leaders:
            node = self.rng.choice(leaders)
            assert node.core is not None
            if self.tracing:
                self._t(f"{node.id} step down")
            self._handle(node, node.core.step_down(self.now))

    def leader_unreachable(self) -> None:
        """A random live follower is told its leader's route closed (the driver's hint, raft.py
        `leader_unreachable`), true or not: it must never break safety, only hasten elections."""
        followers = [n for n in self.live() if n.core is not None and n.core.role != "leader" and n.core.leader]
        if followers:
            node = self.rng.choice(followers)
            assert node.core is not None
            if self.tracing:
                self._t(f"{node.id} hears its leader {node.core.leader} is unreachable")
            node.core.leader_unreachable(self.now, 1.5)
            self._schedule_tick(node)

    def partition(self) -> None:
        ids = sorted(self.nodes)
        side = {i for i in ids if self.rng.random() < 0.5}
        self.blocked = {(a, b) for a in ids for b in ids if a != b and ((a in side) != (b in side))}
        if self.tracing:
            self._t(f"partition {sorted(side)} | {sorted(set(ids) - side)}")

    def isolate_leader(self) -> None:
        """Cut a leader off from everyone (its last appends stay on it alone: Figure 8's material)."""
        leaders = self.leader_nodes()
        if not leaders:
            return
        lone = self.rng.choice(leaders).id
        self.blocked |= {(a, b) for a in self.nodes for b in self.nodes if a != b and lone in (a, b)}
        if self.tracing:
            self._t(f"isolate {lone}")

    def block_link(self) -> None:
        ids = sorted(self.nodes)
        a, b = self.rng.sample(ids, 2) if len(ids) > 1 else (ids[0], ids[0])
        self.blocked.add((a, b))
        if self.tracing:
            self._t(f"block {a} -> {b}")

    def heal(self) -> None:
        self.blocked = set()
        if self.tracing:
            self._t("heal")

    def calm(self) -> None:
        """Stop every fault: heal, a clean network, fast disks, every crashed node back."""
        self.heal()
        self.drop_rate = self.dup_rate = self.slow_rate = self.slow_persist_rate = self.crash_on_commit = 0.0
        for nid in sorted(self.nodes):
            if self.nodes[nid].core is None:
                self.start(nid)

    # ---------------------------------------------------------------------------------- invariants

    def check(self) -> None:
        leaders_now: dict[int, str] = {}
        doomed: list[str] = []
        for node in self.nodes.values():
            core = node.core
            if core is None:
                continue
            if core.applied > core.commit_index:
                raise self.fail(f"{node.id}: applied {core.applied} beyond commit {core.commit_index}")
            if core.role != "leader":
                continue
            term = core.term
            if node.leader_term != term:
                # commits it knew as a follower were checked when their leader made them
                node.leader_term = term
                node.seen_commit = core.commit_index
            other = leaders_now.setdefault(term, node.id)
            if other != node.id:
                raise self.fail(f"two leaders in term {term}: {other} and {node.id}")
            if node.storage.hard_state.term != term:
                continue  # not durable yet: its term may still be lost
            known = self.leaders.setdefault(term, node.id)
            if known != node.id:
                raise self.fail(f"two leaders in term {term}: {known} (earlier) and {node.id}")
            if known is node.id and term not in self._completeness_checked:
                self._completeness_checked.add(term)
                self._check_completeness(node)
            if core.commit_index > node.seen_commit:
                self._record_commits(node)
                if self.crash_on_commit and self.rng.random() < self.crash_on_commit:
                    doomed.append(node.id)
        for nid in doomed:
            self.crash(nid)

    def _check_completeness(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        snap = core.snapshot.index if core.snapshot is not None else 0
        for index, (term, _kind, _data, commit_term) in self.committed.items():
            if commit_term >= core.term or index <= snap:
                continue
            if core.term_at(index) != term:
                raise self.fail(
                    f"leader completeness: {node.id} leads term {core.term} without entry {index} "
                    f"(term {term}, committed in term {commit_term}); it has term {core.term_at(index)}"
                )
        self.stats["leaders"] += 1

    def _record_commits(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        peers = core.peers
        quorum = len(peers) // 2 + 1
        for index in range(node.seen_commit + 1, core.commit_index + 1):
            got = core.entries(index, index)
            if not got:
                continue
            entry = got[0]
            durable = sum(1 for p in peers if p in self.nodes and self.nodes[p].storage.covers(index, entry.term))
            if durable < quorum:
                raise self.fail(
                    f"{node.id} (term {core.term}) commits {index} but only {durable} of {peers} have it on disk"
                )
            record = (entry.term, entry.kind, entry.data, core.term)
            known = self.committed.get(index)
            if known is None:
                self.committed[index] = record
            elif known[:3] != record[:3]:
                raise self.fail(f"{node.id} commits {record} at {index}, committed earlier: {known}")
        node.seen_commit = core.commit_index

    # ---------------------------------------------------------------------------------- liveness

    def converged(self) -> bool:
        leaders = self.leader_nodes()
        if len(leaders) != 1:
            return False
        leader = leaders[0]
        core = leader.core
        assert core is not None
        if core.commit_index != core.last_index or core.transferring:
            return False
        target = core.commit_index
        for nid in core.peers:
            node = self.nodes.get(nid)
            if node is None or node.core is None:
                return False
            other = node.core
            if other.term != core.term or other.leader != leader.id or other.applied != target:
                return False
            if node.sm.applied != target or node.pending:
                return False
        reference = leader.sm.commands
        return all(self.nodes[nid].sm.commands == reference for nid in core.peers)

    def run_until_converged(self, limit: float = 120.0) -> float:
        """After `calm()`: run until converged; the simulated time it took. Raises if it does not."""
        start = self.now
        deadline = start + limit
        next_look = self.now
        while self.now < deadline:
            if not self.next_event(until=deadline):
                self.now = deadline
                break
            self.check()
            if self.now >= next_look:
                next_look = self.now + 0.25
                if self.converged():
                    self._check_final()
                    return self.now - start
        if self.converged():
            self._check_final()
            return self.now - start
        raise self.fail(f"no convergence within {limit}s after the faults stopped: {self.describe()}")

    def _check_final(self) -> None:
        """Every entry ever applied anywhere is in the converged state machine."""
        (leader,) = self.leader_nodes()
        commands = dict(leader.sm.commands)
        for index, (_term, kind, data) in self.applied_entries.items():
            if kind == ENTRY_NORMAL and commands.get(index) != data:
                raise self.fail(
                    f"applied entry {index} ({data!r}) lost: the converged state has {commands.get(index)!r}"
                )

    def describe(self) -> str:
        parts = []
        for nid, node in sorted(self.nodes.items()):
            core = node.core
            if core is None:
                parts.append(f"{nid}: down")
                continue
            parts.append(
                f"{nid}: {core.role} term={core.term} leader={core.leader or '-'} commit={core.commit_index} "
                f"applied={core.applied} last={core.last_index} persisted={core.persisted_index} "
                f"peers={','.join(core.peers)} sm={node.sm.applied} pending={len(node.pending)}"
            )
        return "; ".join(parts)


# -------------------------------------------------------------------------------------- scenarios

Action = Callable[[Cluster], None]


def run_seed(seed: int, steps: int = 300, *, trace: bool = False, unreachable: bool = False) -> Cluster:
    """One random scenario: `steps` random actions (events, client proposals, faults, compactions,
    membership changes, transfers) with the invariants checked after each, then the faults stop and
    the group must converge. Deterministic in `seed`. With `unreachable`, followers are also told at
    random that their leader is unreachable (a separate family of runs: the default runs, and so the
    regression seeds, stay as they were)."""
    setup = random.Random(seed)
    # a quarter of the seeds churn leaders: appends of one entry, leaders crashed or cut off right
    # after they appended, so that entries of many terms sit on minorities (Figure 8's material)
    churn = setup.random() < 0.25
    size = setup.choice((3, 3, 5) if churn else (1, 2, 3, 3, 3, 4, 5, 5))
    timing = RaftTiming(
        max_append_entries=1 if churn else setup.choice((1, 3, 8, 512)),
        max_append_bytes=setup.choice((8, 64, 1 << 20)),
        max_inflight=1 if churn else setup.choice((1, 2, 4, 64)),
    )
    c = Cluster(setup.getrandbits(64), nodes=size, timing=timing, trace=trace)
    c.seed = seed
    rng = c.rng
    c.drop_rate = rng.choice((0.0, 0.0, 0.02, 0.1, 0.3))
    c.dup_rate = rng.choice((0.0, 0.02, 0.1))
    c.slow_rate = rng.choice((0.0, 0.01, 0.05))
    c.slow_persist_rate = rng.choice((0.0, 0.02, 0.1))
    c.crash_on_commit = rng.choice((0.0, 0.3)) if churn else 0.0
    weights = {
        "event": 60.0,
        "advance": rng.choice((4.0, 10.0)),
        "propose": rng.choice((5.0, 15.0)),
        "crash": rng.choice((0.0, 1.0, 2.0)),
        "crash_leader": rng.choice((2.0, 4.0) if churn else (0.0, 0.0, 1.0)),
        "isolate_leader": rng.choice((2.0, 4.0) if churn else (0.0, 0.0, 1.0)),
        "restart": 3.0,
        "partition": rng.choice((0.0, 0.5, 1.5)),
        "block": rng.choice((0.0, 0.5)),
        "heal": 1.5,
        "compact": rng.choice((0.0, 1.0, 4.0)),
        "membership": rng.choice((0.0, 0.5, 2.0)),
        "transfer": rng.choice((0.0, 0.3, 1.0)),
        "step_down": rng.choice((0.0, 0.2)),
    }
    if unreachable:
        weights["unreachable"] = 2.0
    names = list(weights)
    cumulative = []
    total = 0.0
    for name in names:
        total += weights[name]
        cumulative.append(total)
    for _ in range(steps):
        action = names[bisect.bisect_right(cumulative, rng.random() * total)]
        if action == "event":
            if not c.next_event():
                c.advance(1.0)
        elif action == "advance":
            c.advance(rng.uniform(0.1, 4.0))
        elif action == "propose":
            c.propose(rng.choice((1, 1, 1, 2, 5)))
        elif action == "crash":
            alive = [n.id for n in c.live()]
            if alive:
                c.crash(rng.choice(alive))
        elif action == "crash_leader":
            leaders = c.leader_nodes()
            if leaders:
                c.crash(rng.choice(leaders).id)
        elif action == "isolate_leader":
            c.isolate_leader()
        elif action == "restart":
            down = sorted(nid for nid, n in c.nodes.items() if n.core is None)
            if down:
                c.start(rng.choice(down))
        elif action == "partition":
            c.partition()
        elif action == "block":
            c.block_link()
        elif action == "heal":
            c.heal()
        elif action == "compact":
            alive = [n.id for n in c.live()]
            if alive:
                c.compact(rng.choice(alive))
        elif action == "membership":
            c.change_membership()
        elif action == "transfer":
            c.transfer()
        elif action == "step_down":
            c.step_down()
        elif action == "unreachable":
            c.leader_unreachable()
        c.check()
    c.calm()
    c.run_until_converged()
    # and it still works: a last command commits everywhere
    if c.propose() is None:
        raise c.fail("no leader to take a command after convergence")
    c.run_until_converged(limit=30.0)
    return c
