"""Focused tests of the Raft core (jsedge/cluster/raft.py): one behaviour each, driven by hand with a
small synchronous driver (`Group`) or message by message."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from jsedge.cluster.codec import decode_peers, encode_peers
from jsedge.cluster.raft import MembershipBusy, NotLeader, RaftNode, RaftTiming
from jsedge.cluster.types import (
    ENTRY_NOOP,
    ENTRY_NORMAL,
    ENTRY_PEERS,
    AppendRequest,
    AppendResponse,
    Entry,
    HardState,
    Message,
    Ready,
    SnapshotMeta,
    SnapshotRequest,
    SnapshotResponse,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

pytestmark = pytest.mark.timeout(60)

T = RaftTiming()
ABC = ("a", "b", "c")


def node(id: str, peers: tuple[str, ...] = ABC, seed: int = 0, **kwargs: object) -> RaftNode:
    return RaftNode(id, peers, rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]


def sent(ready: Ready, kind: type) -> list[tuple[str, Message]]:
    return [(dst, m) for dst, m in ready.messages if isinstance(m, kind)]


class Group:
    """A synchronous driver for several nodes: every Ready is persisted at once (recorded in `disk`),
    its messages queued, its committed entries recorded, then `persisted` is reported."""

    def __init__(self, ids: tuple[str, ...] = ABC, timing: RaftTiming = T, **nodes: RaftNode) -> None:
        self.now = 0.0
        self.nodes: dict[str, RaftNode] = {}
        self.queue: list[tuple[str, str, Message]] = []
        self.applied: dict[str, list[Entry]] = {i: [] for i in ids}
        self.down: set[str] = set()
        self.drop: Callable[[str, str, Message], bool] = lambda src, dst, m: False
        for i, nid in enumerate(ids):
            self.nodes[nid] = nodes.get(nid) or RaftNode(nid, ids, rng=random.Random(i), config=timing)

    def handle(self, nid: str, ready: Ready) -> None:
        core = self.nodes[nid]
        for dst, msg in ready.messages:
            self.queue.append((nid, dst, msg))
        self.applied[nid].extend(ready.committed)
        if ready.snapshot is not None:
            self.handle(nid, core.snapshot_installed(ready.snapshot))
        if ready.entries or ready.hard_state or ready.truncate_from or ready.snapshot:
            self.handle(nid, core.persisted(core.last_index, core.last_term))

    def tick(self, nid: str, dt: float = 0.0) -> None:
        self.now += dt
        self.handle(nid, self.nodes[nid].tick(self.now))

    def advance(self, seconds: float, step: float = 0.5) -> None:
        """Let time pass, every node ticking every `step` (down nodes are cut off, not stopped)."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(self.now + step, end)
            for nid, core in self.nodes.items():
                self.handle(nid, core.tick(self.now))
            self.run()

    def elect(self, nid: str) -> None:
        """Make `nid` time out and run the election to its end."""
        self.now += T.election_max + 0.01
        self.handle(nid, self.nodes[nid].tick(self.now))
        self.run()
        assert self.nodes[nid].role == "leader"

    def propose(self, nid: str, data: bytes) -> int:
        index, ready = self.nodes[nid].propose(data, self.now)
        self.handle(nid, ready)
        return index

    def run(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            src, dst, msg = self.queue.pop(0)
            if dst in self.down or src in self.down or self.drop(src, dst, msg):
                continue
            self.handle(dst, self.nodes[dst].step(msg, self.now))
        raise AssertionError("messages never stopped")


# ------------------------------------------------------------------------------------------ basics


def test_single_node_elects_itself_and_commits_only_what_it_persisted() -> None:
    n = node("a", ("a",))
    ready = n.tick(T.election_max)
    assert n.role == "leader" and n.term == 1 and n.leader == "a" and n.leader_since == T.election_max
    assert ready.hard_state == HardState(1, "a")
    assert [e.kind for e in ready.entries] == [ENTRY_NOOP]
    assert ready.committed == [] and n.commit_index == 0  # not persisted yet
    index, ready = n.propose(b"x", T.election_max)
    assert index == 2 and ready.committed == [] and n.commit_index == 0
    ready = n.persisted(1, 1)
    assert [e.index for e in ready.committed] == [1] and n.commit_index == 1
    ready = n.persisted(2, 1)
    assert [e.data for e in ready.committed] == [b"x"] and n.applied == 2


def test_propose_on_a_follower_raises_not_leader_with_the_leader() -> None:
    g = Group()
    g.elect("a")
    with pytest.raises(NotLeader) as info:
        g.nodes["b"].propose(b"x", g.now)
    assert info.value.leader == "a"
    with pytest.raises(NotLeader):
        g.nodes["b"].propose_many([b"x"], g.now)


def test_replication_commits_and_applies_everywhere_in_order() -> None:
    g = Group()
    g.elect("a")
    for k in range(5):
        g.propose("a", b"c%d" % k)
    g.run()
    g.tick("a", T.heartbeat)  # the followers learn the last commit index
    g.run()
    for nid in ABC:
        assert [e.data for e in g.applied[nid] if e.kind == ENTRY_NORMAL] == [b"c%d" % k for k in range(5)]
        assert g.nodes[nid].commit_index == 6


def test_propose_many_appends_consecutive_entries_in_one_append() -> None:
    g = Group()
    g.elect("a")
    first, ready = g.nodes["a"].propose_many([b"x", b"y", b"z"], g.now)
    assert first == 2 and [e.index for e in ready.entries] == [2, 3, 4]
    appends = sent(ready, AppendRequest)
    assert appends and all(len(m.entries) == 3 for _, m in appends)  # type: ignore[union-attr]


def test_observability() -> None:
    g = Group()
    g.elect("a")
    a = g.nodes["a"]
    assert a.quorum() == 2 and a.peers == ABC and a.role == "leader"
    assert g.nodes["b"].leader == "a" and g.nodes["b"].leader_since == g.now
    match, contact = a.progress("b")
    assert match == a.last_index and contact == g.now
    assert a.progress("a") == (a.persisted_index, g.now)
    stats = a.statistics()
    assert stats.role == "leader" and stats.commit_index == a.commit_index and stats.peers == ABC
    with pytest.raises(NotLeader):
        g.nodes["b"].progress("a")
    assert g.nodes["b"].next_deadline > g.now and a.next_deadline == pytest.approx(g.now + T.heartbeat)


# ------------------------------------------------------------------------------------------ persistence


def test_follower_never_acknowledges_before_persisted() -> None:
    b = node("b")
    append = AppendRequest(1, "a", 0, 0, (Entry(1, 1, ENTRY_NOOP, b""), Entry(1, 2, ENTRY_NORMAL, b"x")), 0)
    ready = b.step(append, 1.0)
    assert [e.index for e in ready.entries] == [1, 2]
    assert not [m for _, m in sent(ready, AppendResponse) if m.success and m.index > 0]  # type: ignore[union-attr]
    # the same append again (a duplicate) must not be acknowledged either
    ready = b.step(append, 1.1)
    assert not [m for _, m in sent(ready, AppendResponse) if m.index > 0]  # type: ignore[union-attr]
    ready = b.persisted(1, 1)
    assert sent(ready, AppendResponse) == [("a", AppendResponse(1, "b", True, 1))]
    ready = b.persisted(2, 1)
    assert sent(ready, AppendResponse) == [("a", AppendResponse(1, "b", True, 2))]
    # once durable, a duplicate is acknowledged at once
    assert sent(b.step(append, 1.2), AppendResponse) == [("a", AppendResponse(1, "b", True, 2))]


def test_heartbeat_is_answered_at_once_claiming_only_what_is_durable() -> None:
    b = node("b")
    b.step(AppendRequest(1, "a", 0, 0, (Entry(1, 1, ENTRY_NOOP, b""),), 0), 1.0)
    ready = b.step(AppendRequest(1, "a", 1, 1, (), 1), 1.5)
    assert sent(ready, AppendResponse) == [("a", AppendResponse(1, "b", True, 0))]
    assert ready.committed == []  # commit 1 is known, but entry 1 is not on disk yet
    ready = b.persisted(1, 1)
    assert [e.index for e in ready.committed] == [1]
    assert sent(ready, AppendResponse) == [("a", AppendResponse(1, "b", True, 1))]


def test_committed_never_beyond_own_persisted_index() -> None:
    b = node("b")
    entries = tuple(Entry(1, i, ENTRY_NORMAL, b"%d" % i) for i in range(1, 6))
    ready = b.step(AppendRequest(1, "a", 0, 0, entries, 5), 1.0)
    assert b.commit_index == 5 and ready.committed == []
    assert [e.index for e in b.persisted(3, 1).committed] == [1, 2, 3]
    assert [e.index for e in b.persisted(5, 1).committed] == [4, 5]
    assert b.persisted(5, 1).committed == []  # each entry handed out once


def test_stale_persisted_report_after_truncation_is_ignored() -> None:
    b = node("b")
    b.step(AppendRequest(1, "a", 0, 0, (Entry(1, 1, ENTRY_NORMAL, b"x"), Entry(1, 2, ENTRY_NORMAL, b"y")), 0), 1.0)
    # a new leader overwrites index 2 before the first write is reported
    ready = b.step(AppendRequest(2, "c", 1, 1, (Entry(2, 2, ENTRY_NORMAL, b"z"),), 0), 2.0)
    assert ready.truncate_from == 2 and [e.data for e in ready.entries] == [b"z"]
    b.persisted(2, 1)  # the old write of (2, term 1): no longer in the log
    assert b.persisted_index == 0
    ready = b.persisted(2, 2)
    assert b.persisted_index == 2 and sent(ready, AppendResponse) == [("c", AppendResponse(2, "b", True, 2))]


def test_truncation_takes_back_what_was_persisted() -> None:
    b = node("b")
    b.step(AppendRequest(1, "a", 0, 0, (Entry(1, 1, ENTRY_NORMAL, b"x"), Entry(1, 2, ENTRY_NORMAL, b"y")), 0), 1.0)
    b.persisted(2, 1)
    ready = b.step(AppendRequest(2, "c", 1, 1, (Entry(2, 2, ENTRY_NORMAL, b"z"),), 0), 2.0)
    assert ready.truncate_from == 2 and b.persisted_index == 1
    assert not [m for _, m in sent(ready, AppendResponse) if m.index > 1]  # type: ignore[union-attr]


def test_follower_acknowledges_and_commits_only_what_the_leader_verified() -> None:
    """A follower with a longer tail from an old term: an append that matches at index 1 says nothing
    about 2..5, so neither the acknowledgement nor the commit index may go past 1."""
    old = [Entry(1, 1, ENTRY_NOOP, b"")] + [Entry(1, i, ENTRY_NORMAL, b"old") for i in range(2, 6)]
    b = node("b", hard_state=HardState(1, ""), log=old)
    ready = b.step(AppendRequest(2, "a", 1, 1, (), 5), 1.0)
    assert sent(ready, AppendResponse) == [("a", AppendResponse(2, "b", True, 1))]
    assert b.commit_index == 1 and [e.index for e in ready.committed] == [1]


def test_leader_counts_its_own_log_only_once_persisted() -> None:
    a = node("a")
    ready = a.tick(T.election_max)
    ready = a.step(VoteResponse(1, "b", True, pre_vote=True), 10.0)
    ready = a.step(VoteResponse(1, "b", True), 10.0)  # leader, noop at 1 not persisted by the driver yet
    assert a.role == "leader" and [e.index for e in ready.entries] == [1]
    # b persisted and acknowledged the noop: one of three, plus the leader's unpersisted copy: no commit
    a.step(AppendResponse(1, "b", True, 1), 10.1)
    assert a.commit_index == 0
    ready = a.persisted(1, 1)
    assert a.commit_index == 1 and [e.index for e in ready.committed] == [1]


def test_vote_grant_travels_with_its_hard_state_even_when_repeated() -> None:
    b = node("b")
    request = VoteRequest(1, "a", 0, 0)
    ready = b.step(request, 20.0)
    assert ready.hard_state == HardState(1, "a")
    assert sent(ready, VoteResponse) == [("a", VoteResponse(1, "b", True))]
    ready = b.step(request, 20.1)  # a duplicate request: granted again, with the hard state again
    assert ready.hard_state == HardState(1, "a") and sent(ready, VoteResponse)[0][1].granted  # type: ignore[union-attr]
    # another candidate in the same term is refused
    ready = b.step(VoteRequest(1, "c", 5, 1), 20.2)
    assert sent(ready, VoteResponse) == [("c", VoteResponse(1, "b", False))]


def test_vote_refused_to_a_candidate_with_an_older_log() -> None:
    b = node("b", log=[Entry(1, 1, ENTRY_NOOP, b""), Entry(2, 2, ENTRY_NORMAL, b"x")], hard_state=HardState(2, ""))
    assert not sent(b.step(VoteRequest(3, "a", 5, 1), 20.0), VoteResponse)[0][1].granted  # type: ignore[union-attr]
    assert not sent(b.step(VoteRequest(3, "c", 1, 2), 20.0), VoteResponse)[0][1].granted  # type: ignore[union-attr]
    assert sent(b.step(VoteRequest(3, "c", 2, 2), 20.0), VoteResponse)[0][1].granted  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------ Figure 8


def test_figure_8_an_old_term_entry_on_a_majority_is_not_committed_by_counting() -> None:
    """Raft paper, Figure 8: S1 leads term 4 holding (2, term 2); it brings S3 up to that entry, so a
    majority holds it, but committing it by counting would be unsafe (S5 with (2, term 3) could still
    win and overwrite it). Only once an entry of term 4 is on a majority do both commit."""
    ids = ("s1", "s2", "s3", "s4", "s5")
    e1 = Entry(1, 1, ENTRY_NORMAL, b"one")
    e2 = Entry(2, 2, ENTRY_NORMAL, b"two")
    timing = RaftTiming(max_append_entries=1)
    s1 = RaftNode("s1", ids, rng=random.Random(1), config=timing, hard_state=HardState(3, ""), log=[e1, e2])
    s1.tick(T.election_max)
    s1.step(VoteResponse(4, "s2", True, pre_vote=True), 10.0)
    s1.step(VoteResponse(4, "s3", True, pre_vote=True), 10.0)
    s1.step(VoteResponse(4, "s2", True), 10.0)
    ready = s1.step(VoteResponse(4, "s3", True), 10.0)
    assert s1.role == "leader" and s1.term == 4 and s1.last_index == 3  # its noop
    s1.persisted(3, 4)
    # s2 holds 1..2 and acknowledges them; s3 holds only 1: bring it to 2 (one entry per append)
    s1.step(AppendResponse(4, "s2", True, 2), 10.1)
    ready = s1.step(AppendResponse(4, "s3", False, 2), 10.1)
    (append,) = [m for dst, m in sent(ready, AppendRequest) if dst == "s3"]
    assert isinstance(append, AppendRequest) and [e.index for e in append.entries] == [2]
    s1.step(AppendResponse(4, "s3", True, 2), 10.2)
    assert s1.commit_index == 0  # (2, term 2) is on s1, s2, s3 but of an older term
    s1.step(AppendResponse(4, "s3", True, 3), 10.3)
    assert s1.commit_index == 0  # (3, term 4) is on s1 and s3 only
    ready = s1.step(AppendResponse(4, "s2", True, 3), 10.3)
    assert s1.commit_index == 3 and [e.index for e in ready.committed] == [1, 2, 3]


# ------------------------------------------------------------------------------------------ elections


def test_pre_vote_keeps_a_partitioned_node_from_raising_its_term() -> None:
    g = Group()
    g.elect("a")
    term = g.nodes["a"].term
    g.down.add("c")  # c is cut off: it times out again and again
    campaigns = 0
    for _ in range(100):
        g.advance(0.5)
        campaigns += g.nodes["c"].role == "candidate"
        assert g.nodes["c"].term == term and g.nodes["a"].role == "leader"
    assert campaigns
    # it comes back while pre-voting: the group keeps its leader and its term
    while g.nodes["c"].role != "candidate":
        g.advance(0.5)
    g.down.clear()
    g.advance(T.election_max * 2)
    assert g.nodes["a"].role == "leader" and g.nodes["a"].term == term
    assert g.nodes["c"].role == "follower" and g.nodes["c"].leader == "a" and g.nodes["c"].term == term


def test_leader_stickiness_ignores_votes_but_not_transfers() -> None:
    b = node("b")
    b.step(AppendRequest(1, "a", 0, 0, (), 0), 10.0)
    ready = b.step(VoteRequest(2, "c", 9, 1), 11.0)  # within election_min of hearing from a
    assert ready.messages == [] and b.term == 1 and b.leader == "a"
    ready = b.step(VoteRequest(2, "c", 9, 1, pre_vote=True), 11.0)
    assert ready.messages == [] and b.term == 1
    ready = b.step(VoteRequest(2, "c", 9, 1, transfer=True), 11.0)
    assert sent(ready, VoteResponse) == [("c", VoteResponse(2, "b", True))] and b.term == 2
    # once the leader has been silent for election_min, votes count again
    d = node("d", ("a", "b", "d"))
    d.step(AppendRequest(1, "a", 0, 0, (), 0), 10.0)
    ready = d.step(VoteRequest(2, "b", 9, 1, pre_vote=True), 10.0 + T.election_min)
    assert sent(ready, VoteResponse) == [("b", VoteResponse(2, "d", True, pre_vote=True))] and d.term == 1


def test_pre_vote_grant_does_not_change_the_voter() -> None:
    b = node("b")
    ready = b.step(VoteRequest(1, "a", 0, 0, pre_vote=True), 20.0)
    assert sent(ready, VoteResponse) == [("a", VoteResponse(1, "b", True, pre_vote=True))]
    assert b.term == 0 and b.voted_for == "" and ready.hard_state is None


def test_stale_leader_learns_the_newer_term_from_a_refusal() -> None:
    b = node("b", hard_state=HardState(5, ""))
    ready = b.step(AppendRequest(3, "a", 0, 0, (), 0), 1.0)
    assert sent(ready, AppendResponse) == [("a", AppendResponse(5, "b", False, 1))]
    a = node("a")
    a.tick(T.election_max)
    a.step(VoteResponse(1, "b", True, pre_vote=True), 10.0)
    a.step(VoteResponse(1, "b", True), 10.0)
    assert a.role == "leader"
    a.step(AppendResponse(5, "b", False, 1), 10.1)
    assert a.role == "follower" and a.term == 5


def test_check_quorum_leader_steps_down_when_it_loses_the_majority() -> None:
    g = Group()
    g.elect("a")
    g.down.update({"b", "c"})
    start = g.now
    while g.nodes["a"].role == "leader":
        g.tick("a", T.heartbeat)
        g.run()
        assert g.now - start <= T.lost_quorum + T.heartbeat
    assert g.now - start >= T.lost_quorum - T.heartbeat
    assert g.nodes["a"].leader == ""
    with pytest.raises(NotLeader):
        g.nodes["a"].propose(b"x", g.now)


def test_check_quorum_keeps_a_leader_that_hears_from_a_majority() -> None:
    g = Group()
    g.elect("a")
    g.down.add("c")
    for _ in range(30):
        g.tick("a", T.heartbeat)
        g.run()
    assert g.nodes["a"].role == "leader"


# ------------------------------------------------------------------------------------------ transfer


def test_transfer_brings_the_target_up_to_date_then_hands_over() -> None:
    g = Group()
    g.elect("a")
    g.down.add("c")
    for k in range(3):
        g.propose("a", b"c%d" % k)
    g.run()
    g.down.clear()
    ready = g.nodes["a"].transfer_leadership("c", g.now)
    assert g.nodes["a"].transferring and not sent(ready, TimeoutNow)  # c lags: catch up first
    with pytest.raises(NotLeader):
        g.nodes["a"].propose(b"refused", g.now)
    g.handle("a", ready)
    g.run()
    assert g.nodes["c"].role == "leader" and g.nodes["a"].role == "follower"
    assert g.nodes["c"].term == g.nodes["a"].term and g.nodes["a"].leader == "c"
    g.propose("c", b"after")


def test_transfer_to_none_picks_the_most_up_to_date_follower() -> None:
    g = Group()
    g.elect("a")
    g.down.add("b")
    g.propose("a", b"x")
    g.run()
    g.down.clear()
    ready = g.nodes["a"].transfer_leadership(None, g.now)
    assert [dst for dst, _ in sent(ready, TimeoutNow)] == ["c"]


def test_transfer_aborts_after_an_election_timeout() -> None:
    g = Group()
    g.elect("a")
    g.down.add("c")
    g.handle("a", g.nodes["a"].transfer_leadership("c", g.now))
    g.run()
    assert g.nodes["a"].transferring
    for _ in range(int(T.election_min / T.heartbeat) + 1):
        g.tick("a", T.heartbeat)
        g.run()
    assert not g.nodes["a"].transferring and g.nodes["a"].role == "leader"
    g.propose("a", b"accepted again")


def test_step_down_hands_over_to_an_up_to_date_follower() -> None:
    g = Group()
    g.elect("a")
    g.propose("a", b"x")
    g.run()
    ready = g.nodes["a"].step_down(g.now)
    assert g.nodes["a"].role == "follower" and len(sent(ready, TimeoutNow)) == 1
    g.handle("a", ready)
    g.run()
    assert sum(1 for n in g.nodes.values() if n.role == "leader") == 1 and g.nodes["a"].role == "follower"


# ------------------------------------------------------------------------------------------ flow control


def test_pipelining_is_bounded_by_max_inflight_and_batches_by_max_entries() -> None:
    timing = RaftTiming(max_inflight=2, max_append_entries=2)
    g = Group(timing=timing)
    g.elect("a")
    a = g.nodes["a"]
    _, ready = a.propose_many([b"%d" % i for i in range(10)], g.now)
    to_b = [m for dst, m in sent(ready, AppendRequest) if dst == "b"]
    assert len(to_b) == 2 and all(len(m.entries) == 2 for m in to_b)  # type: ignore[union-attr]
    g.handle("a", ready)
    g.run()
    assert g.nodes["b"].last_index == a.last_index and a.commit_index == a.last_index


def test_max_append_bytes_limits_a_batch_but_always_sends_one_entry() -> None:
    g = Group(timing=RaftTiming(max_append_bytes=10))
    g.elect("a")
    _, ready = g.nodes["a"].propose_many([b"x" * 8, b"y" * 8, b"z" * 20], g.now)
    sizes = [[len(e.data) for e in m.entries] for dst, m in sent(ready, AppendRequest) if dst == "b"]  # type: ignore[union-attr]
    assert sizes[0] == [8]
    g.handle("a", ready)
    g.run()
    assert g.nodes["b"].last_index == g.nodes["a"].last_index


def test_fast_backtracking_uses_the_followers_hint() -> None:
    """A follower with a long divergent tail of an old term: one rejection skips the whole term."""
    old = [Entry(1, 1, ENTRY_NOOP, b"")] + [Entry(2, i, ENTRY_NORMAL, b"old") for i in range(2, 52)]
    b = node("b", hard_state=HardState(2, ""), log=old)
    ready = b.step(AppendRequest(3, "a", 51, 3, (), 0), 1.0)
    assert sent(ready, AppendResponse) == [("a", AppendResponse(3, "b", False, 2))]
    ready = b.step(AppendRequest(3, "a", 60, 3, (), 0), 1.0)
    assert sent(ready, AppendResponse) == [("a", AppendResponse(3, "b", False, 52))]


def test_lost_appends_are_resent_after_a_heartbeat_without_progress() -> None:
    g = Group()
    g.elect("a")
    g.drop = lambda src, dst, m: dst == "b" and isinstance(m, AppendRequest) and bool(m.entries)
    g.propose("a", b"lost")
    g.run()
    g.drop = lambda src, dst, m: False
    assert g.nodes["b"].last_index < g.nodes["a"].last_index
    for _ in range(3):
        g.tick("a", T.heartbeat)
        g.run()
    assert g.nodes["b"].last_index == g.nodes["a"].last_index


# ------------------------------------------------------------------------------------------ snapshots


def test_snapshot_install_on_a_follower_behind_the_compaction_point() -> None:
    state = {"data": b"state@4"}
    a = RaftNode("a", ABC, rng=random.Random(0), snapshot_data=lambda: state["data"])
    g = Group(a=a)
    g.elect("a")
    g.down.add("c")
    for k in range(3):
        g.propose("a", b"c%d" % k)
    g.run()
    assert g.nodes["a"].applied == 4
    g.nodes["a"].compact(4)
    assert g.nodes["a"].snapshot == SnapshotMeta(4, 1, ABC)
    g.down.clear()
    g.tick("a", T.heartbeat)  # c is probed, it has nothing: it needs the snapshot
    c = g.nodes["c"]
    seen: list[Ready] = []
    while g.queue:
        src, dst, msg = g.queue.pop(0)
        ready = g.nodes[dst].step(msg, g.now)
        if isinstance(msg, SnapshotRequest):
            assert msg.data == b"state@4" and msg.meta.index == 4
            seen.append(ready)
            break
        g.handle(dst, ready)
    (ready,) = seen
    assert ready.snapshot == SnapshotMeta(4, 1, ABC) and ready.snapshot_data == b"state@4"
    assert c.installing == ready.snapshot and c.commit_index == 4 and c.applied == 4
    assert not sent(ready, AppendResponse) and not sent(ready, SnapshotResponse)
    ready = c.snapshot_installed(ready.snapshot)
    assert sent(ready, SnapshotResponse) == [("a", SnapshotResponse(c.term, "c", 4))]
    g.handle("c", ready)
    g.run()
    g.propose("a", b"after")
    g.run()
    assert c.last_index == g.nodes["a"].last_index and c.applied == g.nodes["a"].applied == 5
    assert [e.data for e in g.applied["c"] if e.kind == ENTRY_NORMAL] == [b"after"]  # the rest came as the snapshot


def test_committed_entries_wait_for_snapshot_installed() -> None:
    c = node("c")
    meta = SnapshotMeta(10, 2, ABC)
    ready = c.step(SnapshotRequest(2, "a", meta, b"s"), 1.0)
    assert ready.snapshot == meta
    ready = c.step(AppendRequest(2, "a", 10, 2, (Entry(2, 11, ENTRY_NORMAL, b"x"),), 11), 1.1)
    ready = c.persisted(11, 2)
    assert ready.committed == [] and not sent(ready, AppendResponse)  # not installed yet
    ready = c.snapshot_installed(meta)
    assert [e.index for e in ready.committed] == [11]
    assert ("a", AppendResponse(2, "c", True, 11)) in ready.messages


def test_stale_snapshot_is_ignored() -> None:
    b = node("b")
    entries = tuple(Entry(1, i, ENTRY_NORMAL, b"") for i in range(1, 6))
    b.step(AppendRequest(1, "a", 0, 0, entries, 5), 1.0)
    b.persisted(5, 1)
    ready = b.step(SnapshotRequest(1, "a", SnapshotMeta(3, 1, ABC), b"old"), 2.0)
    assert ready.snapshot is None and b.last_index == 5
    assert sent(ready, AppendResponse) == [("a", AppendResponse(1, "b", True, 5))]


def test_snapshot_matching_our_log_keeps_the_entries_after_it() -> None:
    b = node("b")
    entries = tuple(Entry(1, i, ENTRY_NORMAL, b"") for i in range(1, 9))
    b.step(AppendRequest(1, "a", 0, 0, entries, 2), 1.0)
    b.persisted(8, 1)
    ready = b.step(SnapshotRequest(1, "a", SnapshotMeta(5, 1, ABC), b"s"), 2.0)
    assert ready.snapshot is None and ready.truncate_from == 0 and b.last_index == 8 and b.commit_index == 5


def test_restart_from_snapshot_and_log() -> None:
    meta = SnapshotMeta(10, 3, ("a", "b"))
    log = [Entry(3, 11, ENTRY_NORMAL, b"x"), Entry(4, 12, ENTRY_PEERS, encode_peers(("a", "b", "d")))]
    n = RaftNode("a", ABC, rng=random.Random(0), hard_state=HardState(4, "b"), snapshot=meta, log=log)
    assert n.peers == ("a", "b", "d") and n.last_index == 12 and n.applied == 10 and n.commit_index == 10
    assert n.term == 4 and n.voted_for == "b" and n.persisted_index == 12
    with pytest.raises(ValueError):
        RaftNode("a", ABC, rng=random.Random(0), snapshot=meta, log=[Entry(3, 12, ENTRY_NORMAL, b"")])


def test_compact_refuses_beyond_applied() -> None:
    n = node("a", ("a",))
    n.tick(T.election_max)
    with pytest.raises(ValueError):
        n.compact(1)
    n.persisted(1, 1)
    n.compact(1)
    assert n.snapshot == SnapshotMeta(1, 1, ("a",)) and n.last_index == 1 and n.entries(1, 1) == []


# ------------------------------------------------------------------------------------------ membership


def test_add_a_peer_counts_at_once_and_one_change_at_a_time() -> None:
    g = Group(("a", "b", "c", "d"))
    for nid in ABC:  # d is new: it starts knowing the target membership
        g.nodes[nid] = RaftNode(nid, ABC, rng=random.Random(hash(nid) % 7))
    g.nodes["d"] = RaftNode("d", ("a", "b", "c", "d"), rng=random.Random(9))
    g.elect("a")
    a = g.nodes["a"]
    index, ready = a.propose_peers(("a", "b", "c", "d"), g.now)
    assert a.peers == ("a", "b", "c", "d") and a.quorum() == 3
    assert ready.entries[-1].kind == ENTRY_PEERS and decode_peers(ready.entries[-1].data) == ("a", "b", "c", "d")
    with pytest.raises(MembershipBusy):
        a.propose_peers(ABC, g.now)
    g.handle("a", ready)
    g.run()
    assert a.commit_index >= index and g.nodes["d"].last_index == a.last_index
    with pytest.raises(ValueError):
        a.propose_peers(("a", "b"), g.now)  # two at once
    g.tick("a", T.heartbeat)
    g.run()
    assert g.nodes["d"].peers == ("a", "b", "c", "d") and g.nodes["d"].applied == a.applied


def test_membership_change_waits_for_the_leader_to_commit_its_term() -> None:
    a = node("a")
    a.tick(T.election_max)
    a.step(VoteResponse(1, "b", True, pre_vote=True), 10.0)
    a.step(VoteResponse(1, "b", True), 10.0)
    with pytest.raises(MembershipBusy):
        a.propose_peers(("a", "b"), 10.0)


def test_removed_leader_steps_down_once_the_change_commits() -> None:
    g = Group()
    g.elect("a")
    a = g.nodes["a"]
    index, ready = a.propose_peers(("b", "c"), g.now)
    assert a.role == "leader" and a.quorum() == 2  # still leads the group without itself
    g.handle("a", ready)
    g.run()
    assert a.role == "follower"
    assert [n.role for n in (g.nodes["b"], g.nodes["c"])].count("leader") == 1  # TimeoutNow handed it over
    # a removed node never campaigns
    assert a.next_deadline == float("inf")
    g.tick("a", 100.0)
    assert a.role == "follower"


def test_uncommitted_config_reverts_when_truncated() -> None:
    b = node("b")
    peers = encode_peers(("a", "b", "c", "d"))
    b.step(AppendRequest(1, "a", 0, 0, (Entry(1, 1, ENTRY_NOOP, b""), Entry(1, 2, ENTRY_PEERS, peers)), 1), 1.0)
    assert b.peers == ("a", "b", "c", "d")
    ready = b.step(AppendRequest(2, "c", 1, 1, (Entry(2, 2, ENTRY_NOOP, b""),), 1), 2.0)
    assert ready.truncate_from == 2 and b.peers == ABC


def test_leader_with_its_own_uncommitted_removal_can_win_again() -> None:
    """It appended the change removing itself and lost leadership before it committed: it must
    still be able to campaign (the others may need its vote), and finish the change."""
    peers = encode_peers(("b", "c"))
    log = [Entry(1, 1, ENTRY_NOOP, b""), Entry(1, 2, ENTRY_PEERS, peers)]
    a = RaftNode("a", ABC, rng=random.Random(0), hard_state=HardState(1, "a"), log=log)
    assert a.peers == ("b", "c") and a.next_deadline < float("inf")
    ready = a.tick(T.election_max)
    assert sorted(dst for dst, _ in sent(ready, VoteRequest)) == ["b", "c"]


def test_propose_peers_rejects_bad_sets() -> None:
    g = Group()
    g.elect("a")
    a = g.nodes["a"]
    g.propose("a", b"x")
    g.run()
    for bad in [(), ("a", "a", "b"), ("a", "b", "c"), ("x", "y")]:
        with pytest.raises(ValueError):
            a.propose_peers(bad, g.now)
    with pytest.raises(NotLeader):
        g.nodes["b"].propose_peers(("a", "b"), g.now)


def test_timing_validation() -> None:
    with pytest.raises(ValueError):
        RaftTiming(heartbeat=5.0)
    with pytest.raises(ValueError):
        RaftTiming(max_inflight=0)


def test_follower_whose_disk_was_wiped_catches_up_again() -> None:
    g = Group()
    g.elect("a")
    for k in range(5):
        g.propose("a", b"c%d" % k)
    g.run()
    g.tick("a", T.heartbeat)
    g.run()
    assert g.nodes["a"].progress("c")[0] == g.nodes["a"].last_index
    # c comes back with an empty disk (a replaced SD card): the leader must not keep probing past its end
    g.nodes["c"] = RaftNode("c", ABC, rng=random.Random(9), config=T)
    g.applied["c"] = []
    for _ in range(6):
        g.tick("a", T.heartbeat)
        g.run()
    assert g.nodes["c"].last_index == g.nodes["a"].last_index
    assert [e.data for e in g.applied["c"] if e.kind == ENTRY_NORMAL] == [b"c%d" % k for k in range(5)]


def test_campaign_soon_starts_a_new_groups_election_without_a_full_timeout() -> None:
    n = node("a")
    n.campaign_soon(0.0, 0.2)
    ready = n.tick(0.21)
    assert sent(ready, VoteRequest), "a pre-vote goes out well before election_min"
    assert T.election_min > 0.21
    # a node that already follows a leader ignores it
    g = Group()
    g.elect("a")
    b = g.nodes["b"]
    b.campaign_soon(g.now, 0.2)
    assert not sent(b.tick(g.now + 0.21), VoteRequest)
