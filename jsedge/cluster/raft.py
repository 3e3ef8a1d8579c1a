"""The Raft core (layer 6, sans-IO): one `RaftNode` per Raft group member. It does no I/O, reads no
clock and draws randomness only from the injected `random.Random`; it imports only the stdlib and the
cluster's sans-IO vocabulary (`jsedge.cluster.types`, and `jsedge.cluster.codec` for the peer-set
encoding of ENTRY_PEERS entries). The asyncio driver (`transport.py`) owns the clock, the network,
the log on disk (`wal.py`) and the state machine.

Driver contract
---------------
Every call that changes state returns a `Ready` (types.py): persist it (in order: snapshot, truncate,
append, hard state; fsynced), then send its messages, then apply its committed entries; then report
durability with `persisted(last index, last term)` (and `snapshot_installed(meta)` after a snapshot).
Readies are persisted in the order they were returned, so `persisted(i, t)` means the whole log up to
`i` is durable. An empty Ready may be a shared instance: never mutate a Ready.

Persistence and acknowledgements (the choice this core makes):

* A follower's AppendResponse(success) is held in the core until `persisted` covers what it
  acknowledges; it is released in the Ready that `persisted` (or `snapshot_installed`) returns. So an
  acknowledgement never depends on how the driver orders messages of different Readies, and one fsync
  that covers several appends (group commit) releases one acknowledgement for all of them. A
  heartbeat (an empty append) is answered at once, acknowledging no more than is already durable.
* The leader counts its own log only from `persisted` (never an entry it has not fsynced itself).
* A vote grant, and any message sent after a term change, travels in the same Ready as the
  HardState that records it (the driver sends it only after persisting that Ready).
* Committed entries handed out never go beyond min(commit index, own persisted index), each exactly
  once and in order (ENTRY_NOOP and ENTRY_PEERS entries too, so the driver can track the applied index).

Protocol features: pre-vote (thesis §9.6) and leader stickiness (a voter that heard from a current
leader within `election_min` ignores (pre-)votes that are not a leadership transfer), check-quorum
(a leader that has not heard from a majority within `lost_quorum` steps down), a no-op entry at the
start of every term, the Figure 8 commit rule (only entries of the current term are committed by
counting), single-server membership changes that take effect when appended (one at a time, and only
after the leader committed an entry of its own term: the fix for the single-server change bug),
leadership transfer with TimeoutNow, log compaction with snapshots sent to followers that fell behind
it, and per-follower flow control: probe / replicate (pipelined up to `max_inflight` appends, batches
bounded by `max_append_entries` and `max_append_bytes`) / snapshot, fast backtracking with the
follower's hint, and heartbeats as empty appends that carry the commit index.

Snapshots: `compact(index)` drops the log up to `index` (the driver's state machine is durable
there). A follower that needs an entry before the leader's compaction point gets a SnapshotRequest
whose data comes from the `snapshot_data` callback: the state machine as it is now, which may be
ahead of the snapshot index, so a state machine restored from it must skip committed entries it
already reflects (streams do, by sequence). The receiver's log restarts after `meta.index` at once
(Ready.snapshot, plus truncate_from when it held later entries); its committed entries wait until the
driver calls `snapshot_installed(meta)`, which also answers the leader with a SnapshotResponse.

Performance: the log is a list of entries with an offset (the snapshot index), so appends, lookups
and slices cost what they touch; the hot paths (propose, an append on a follower, its response on the
leader) do no per-entry work beyond building the message and no copies of the log.
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from jsedge.cluster.codec import decode_peers, encode_peers
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

__all__ = ["MembershipBusy", "NotLeader", "RaftNode", "RaftStatistics", "RaftTiming"]

_INF = float("inf")

# roles (a pre-candidate reports itself as "candidate": it is campaigning, without a new term yet)
_FOLLOWER = 0
_PRE_CANDIDATE = 1
_CANDIDATE = 2
_LEADER = 3
_ROLE_NAMES = ("follower", "candidate", "candidate", "leader")

# follower progress states, as seen by the leader
_PROBE = 0  # one append at a time until the follower's log position is found
_REPLICATE = 1  # pipelined appends
_SNAPSHOT = 2  # a snapshot was sent; wait for it to be installed

_EMPTY_READY = Ready()
_NO_HARD_STATE = HardState(0, "")


class NotLeader(Exception):
    """Raised by calls only a leader may make (propose, membership, transfer). `leader` is the known
    leader's id ("" when unknown, or this node itself while it hands leadership over)."""

    def __init__(self, leader: str = "", reason: str = "") -> None:
        self.leader = leader
        if not reason:
            reason = f"not the leader (the leader is {leader})" if leader else "not the leader (no leader known)"
        super().__init__(reason)


class MembershipBusy(Exception):
    """A membership change cannot start now: another one is not committed yet, or the new leader has
    not committed an entry of its own term yet. Retry later."""


@dataclass(frozen=True, slots=True)
class RaftTiming:
    """Timers (seconds) and flow-control limits. Defaults are nats-server's (spec/clustering.md §4.4)."""

    heartbeat: float = 1.0
    election_min: float = 4.0
    election_max: float = 9.0
    #: check-quorum: a leader that has not heard from a majority within this long steps down
    lost_quorum: float = 10.0
    #: entries per AppendRequest
    max_append_entries: int = 512
    #: payload bytes per AppendRequest (at least one entry is always sent)
    max_append_bytes: int = 1 << 20
    #: AppendRequests in flight per follower while replicating
    max_inflight: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat < self.election_min <= self.election_max:
            raise ValueError("need 0 < heartbeat < election_min <= election_max")
        if self.lost_quorum <= self.heartbeat:
            raise ValueError("lost_quorum must be longer than the heartbeat")
        if self.max_append_entries < 1 or self.max_append_bytes < 1 or self.max_inflight < 1:
            raise ValueError("append limits must be at least 1")


@dataclass(frozen=True, slots=True)
class RaftStatistics:
    """A snapshot of a node's state for monitoring."""

    id: str
    role: str
    term: int
    leader: str
    leader_since: float
    commit_index: int
    applied: int
    last_index: int
    persisted_index: int
    snapshot_index: int
    peers: tuple[str, ...]
    voted_for: str


class _Progress:
    """What the leader knows about one follower."""

    __slots__ = (
        "inflight",
        "inflight_since",
        "known_commit",
        "last_contact",
        "match",
        "next",
        "probe_sent",
        "snapshot_index",
        "snapshot_sent_at",
        "state",
    )

    def __init__(self, next_index: int, now: float) -> None:
        self.match = 0  # highest index the follower has persisted that matches our log
        self.next = next_index  # next index to send
        self.state = _PROBE
        self.probe_sent = False  # PROBE: an append is outstanding
        self.inflight: deque[int] = deque()  # REPLICATE: last index of each append in flight
        self.inflight_since = now  # REPLICATE: since when the oldest append waits (or the last progress)
        self.last_contact = now  # last message from the follower (check-quorum, monitoring)
        self.snapshot_index = 0  # SNAPSHOT: index of the snapshot sent
        self.snapshot_sent_at = 0.0
        self.known_commit = 0  # the highest commit index sent that the follower could apply


class RaftNode:
    """One member of a Raft group. See the module docstring for the driver contract.

    Restart from what the WAL recovered: `hard_state`, the snapshot `snapshot` and the durable log
    entries after it (`log`, in order). `peers` (including `id`) is the membership when neither the
    snapshot nor a config entry of the log says otherwise; the latest ENTRY_PEERS entry of the log
    wins, as soon as it is in the log.
    """

    __slots__ = (
        "_acked",
        "_applied",
        "_became_leader_at",
        "_cfg",
        "_commit",
        "_configs",
        "_election_deadline",
        "_heartbeat_deadline",
        "_hs",
        "_installing",
        "_is_member",
        "_last_leader_contact",
        "_leader",
        "_leader_since",
        "_leader_term",
        "_log",
        "_msgs",
        "_now",
        "_out_entries",
        "_out_snapshot",
        "_out_snapshot_data",
        "_out_truncate",
        "_peers",
        "_pending_ack",
        "_persisted",
        "_progress",
        "_quorum",
        "_rng",
        "_role",
        "_snap",
        "_snap_index",
        "_snap_term",
        "_snapshot_data",
        "_term",
        "_term_start",
        "_transfer_deadline",
        "_transfer_target",
        "_vote",
        "_votes",
        "id",
    )

    def __init__(
        self,
        id: str,
        peers: Iterable[str],
        *,
        rng: random.Random,
        config: RaftTiming | None = None,
        hard_state: HardState = _NO_HARD_STATE,
        snapshot: SnapshotMeta | None = None,
        log: Sequence[Entry] = (),
        now: float = 0.0,
        snapshot_data: Callable[[], bytes] | None = None,
    ) -> None:
        self.id = id
        self._rng = rng
        self._cfg = config if config is not None else RaftTiming()
        self._snapshot_data = snapshot_data
        self._term = hard_state.term
        self._vote = hard_state.voted_for
        self._hs = hard_state  # the last hard state handed out (or recovered): what is on disk
        self._snap = snapshot
        self._snap_index = snapshot.index if snapshot is not None else 0
        self._snap_term = snapshot.term if snapshot is not None else 0
        entries = list(log)
        expected = self._snap_index + 1
        term = self._snap_term
        for entry in entries:
            if entry.index != expected or entry.term < term:
                raise ValueError(f"recovered log is not contiguous at index {entry.index} (expected {expected})")
            expected += 1
            term = entry.term
        self._log: list[Entry] = entries
        # (index, peers) of every config in the log, the one in force at the snapshot (or at start) first
        base = tuple(snapshot.peers) if snapshot is not None else tuple(peers)
        self._configs: list[tuple[int, tuple[str, ...]]] = [(self._snap_index, base)]
        for entry in entries:
            if entry.kind == ENTRY_PEERS:
                self._configs.append((entry.index, decode_peers(entry.data)))
        self._peers: tuple[str, ...] = ()
        self._quorum = 1
        self._is_member = False
        self._commit = self._snap_index
        self._applied = self._snap_index
        self._persisted = self._snap_index + len(entries)  # the recovered log is durable
        self._installing: SnapshotMeta | None = None
        self._role = _FOLLOWER
        self._leader = ""
        self._leader_term = 0
        self._leader_since = 0.0
        self._now = now
        self._last_leader_contact = -_INF
        self._election_deadline = _INF
        self._heartbeat_deadline = _INF
        self._became_leader_at = 0.0
        self._term_start = 0  # leader: index of its no-op (the first entry of its term)
        self._votes: dict[str, bool] = {}
        self._progress: dict[str, _Progress] = {}
        self._transfer_target = ""
        self._transfer_deadline = 0.0
        self._pending_ack = 0  # follower: highest verified index not yet acknowledged (waits for persistence)
        self._acked = 0  # follower: highest index acknowledged to the current leader in this term
        # the Ready being assembled
        self._msgs: list[tuple[str, Message]] = []
        self._out_entries: list[Entry] = []
        self._out_truncate = 0
        self._out_snapshot: SnapshotMeta | None = None
        self._out_snapshot_data = b""
        self._set_config()
        self._reset_election(now)

    # ------------------------------------------------------------------------------ observability

    @property
    def role(self) -> str:
        """ "leader", "follower" or "candidate" (also while pre-voting)."""
        return _ROLE_NAMES[self._role]

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> str:
        return self._vote

    @property
    def leader(self) -> str:
        """The current leader's id ("" when unknown)."""
        return self._leader

    @property
    def leader_since(self) -> float:
        """The `now` at which this node learned of (or became) the current leader."""
        return self._leader_since

    @property
    def last_leader_contact(self) -> float:
        """Follower: the `now` of the last message from the current leader (-inf when none)."""
        return self._last_leader_contact

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def applied(self) -> int:
        """The index of the last committed entry handed out (or of the snapshot)."""
        return self._applied

    @property
    def last_index(self) -> int:
        return self._snap_index + len(self._log)

    @property
    def last_term(self) -> int:
        return self._log[-1].term if self._log else self._snap_term

    @property
    def persisted_index(self) -> int:
        return self._persisted

    @property
    def peers(self) -> tuple[str, ...]:
        """The membership in force (the latest config in the log)."""
        return self._peers

    @property
    def snapshot(self) -> SnapshotMeta | None:
        """The compaction point (the last snapshot taken or installed)."""
        return self._snap

    @property
    def installing(self) -> SnapshotMeta | None:
        """The snapshot handed out for installation and not yet confirmed by `snapshot_installed`."""
        return self._installing

    @property
    def transferring(self) -> bool:
        """A leadership transfer is in progress (proposals are refused)."""
        return bool(self._transfer_target)

    @property
    def next_deadline(self) -> float:
        """The earliest `now` at which `tick` has something to do (a driver may sleep until then)."""
        if self._role == _LEADER:
            if self._transfer_target and self._transfer_deadline < self._heartbeat_deadline:
                return self._transfer_deadline
            return self._heartbeat_deadline
        return self._election_deadline if self._can_campaign() else _INF

    def quorum(self) -> int:
        """Members needed for a majority of the current config."""
        return self._quorum

    def progress(self, peer: str) -> tuple[int, float]:
        """Leader only: (match index, `now` of the last message from `peer`). For the leader itself:
        (its persisted index, the current `now`). KeyError for a peer that is not a member."""
        if self._role != _LEADER:
            raise NotLeader(self._leader)
        if peer == self.id:
            return self._persisted, self._now
        pr = self._progress[peer]
        return pr.match, pr.last_contact

    def term_at(self, index: int) -> int | None:
        """The term of the entry at `index` (the snapshot's for its index, 0 for index 0), None when
        the entry is compacted away or beyond the log."""
        if index == self._snap_index:
            return self._snap_term
        k = index - self._snap_index - 1
        if 0 <= k < len(self._log):
            return self._log[k].term
        return None

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo..hi (inclusive) still in the log."""
        off = self._snap_index + 1
        return self._log[max(lo - off, 0) : max(hi - off + 1, 0)]

    def statistics(self) -> RaftStatistics:
        return RaftStatistics(
            id=self.id,
            role=self.role,
            term=self._term,
            leader=self._leader,
            leader_since=self._leader_since,
            commit_index=self._commit,
            applied=self._applied,
            last_index=self.last_index,
            persisted_index=self._persisted,
            snapshot_index=self._snap_index,
            peers=self._peers,
            voted_for=self._vote,
        )

    # ------------------------------------------------------------------------------ driver calls

    def tick(self, now: float) -> Ready:
        """Timers: election timeout (pre-vote, then campaign), leader heartbeats and check-quorum,
        the end of a leadership transfer that did not happen."""
        self._now = now
        if self._role == _LEADER:
            if self._transfer_target and now >= self._transfer_deadline:
                self._transfer_target = ""
            if now >= self._heartbeat_deadline:
                self._heartbeat_deadline = now + self._cfg.heartbeat
                if not self._check_quorum(now):
                    for peer, pr in self._progress.items():
                        self._heartbeat(peer, pr, now)
                    if self._transfer_target:
                        self._maybe_send_timeout_now()  # again, in case it was lost
        elif now >= self._election_deadline:
            if self._can_campaign():
                self._pre_vote(now)
            else:
                self._reset_election(now)
        return self._ready()

    def step(self, msg: Message, now: float) -> Ready:
        """Handle a message from a peer."""
        self._now = now
        term = msg.term
        if term > self._term:
            if isinstance(msg, VoteRequest):
                if not msg.transfer and self._in_lease(now):
                    return self._ready()  # leader stickiness: a current leader exists, ignore
                if not msg.pre_vote:
                    self._become_follower(term, "", now)
            elif isinstance(msg, VoteResponse) and msg.granted and msg.pre_vote:
                pass  # granted pre-votes carry the term we will campaign for
            elif isinstance(msg, (AppendRequest, SnapshotRequest, TimeoutNow)):
                self._become_follower(term, msg.leader, now)
            else:
                self._become_follower(term, "", now)
        elif term < self._term:
            # A stale leader or candidate: tell it the newer term (with check-quorum and pre-vote, a
            # node that moved ahead could otherwise never rejoin, nor the stale leader learn of it).
            if isinstance(msg, (AppendRequest, SnapshotRequest)):
                self._msgs.append((msg.leader, AppendResponse(self._term, self.id, False, self.last_index + 1)))
            elif isinstance(msg, VoteRequest):
                self._msgs.append((msg.candidate, VoteResponse(self._term, self.id, False, msg.pre_vote)))
            return self._ready()
        if isinstance(msg, AppendRequest):
            self._on_append(msg, now)
        elif isinstance(msg, AppendResponse):
            self._on_append_response(msg, now)
        elif isinstance(msg, VoteRequest):
            self._on_vote_request(msg, now)
        elif isinstance(msg, VoteResponse):
            self._on_vote_response(msg, now)
        elif isinstance(msg, SnapshotRequest):
            self._on_snapshot(msg, now)
        elif isinstance(msg, SnapshotResponse):
            self._on_snapshot_response(msg, now)
        else:
            self._on_timeout_now(msg, now)
        return self._ready()

    def propose(self, data: bytes, now: float | None = None) -> tuple[int, Ready]:
        """Leader: append a command; (its index, Ready). NotLeader when not the leader or while a
        leadership transfer is in progress."""
        if self._role != _LEADER or self._transfer_target:
            raise NotLeader(self._leader)
        if now is not None:
            self._now = now
        index = self._append_local(ENTRY_NORMAL, data)
        for peer, pr in self._progress.items():
            self._send_append(peer, pr)
        return index, self._ready()

    def propose_many(self, datas: Iterable[bytes], now: float | None = None) -> tuple[int, Ready]:
        """Leader: append several commands at once; (index of the first, Ready). The others follow it
        one by one. With no commands: (next index, empty Ready)."""
        if self._role != _LEADER or self._transfer_target:
            raise NotLeader(self._leader)
        if now is not None:
            self._now = now
        first = self.last_index + 1
        index = first
        term = self._term
        batch = []
        for data in datas:
            batch.append(Entry(term, index, ENTRY_NORMAL, data))
            index += 1
        if batch:
            self._log.extend(batch)
            self._out_entries.extend(batch)
            for peer, pr in self._progress.items():
                self._send_append(peer, pr)
        return first, self._ready()

    def propose_peers(self, new_peers: Iterable[str], now: float | None = None) -> tuple[int, Ready]:
        """Leader: change the membership by exactly one peer (added or removed); (index of the
        ENTRY_PEERS entry, Ready). The new config counts as soon as it is appended. NotLeader when not
        the leader; MembershipBusy while an earlier change is uncommitted or before this leader
        committed an entry of its term; ValueError for anything but a one-peer change."""
        if self._role != _LEADER or self._transfer_target:
            raise NotLeader(self._leader)
        if now is not None:
            self._now = now
        target = tuple(new_peers)
        if len(set(target)) != len(target) or not target:
            raise ValueError(f"invalid peer set {target!r}")
        current = set(self._peers)
        diff = current.symmetric_difference(target)
        if len(diff) != 1:
            raise ValueError(f"a membership change adds or removes exactly one peer: {self._peers!r} -> {target!r}")
        if self._configs[-1][0] > self._commit:
            raise MembershipBusy("a membership change is still uncommitted")
        if self._commit < self._term_start:
            raise MembershipBusy("the leader has not committed an entry of its term yet")
        index = self._append_local(ENTRY_PEERS, encode_peers(target))
        for peer, pr in self._progress.items():
            self._send_append(peer, pr)
        return index, self._ready()

    def persisted(self, index: int, term: int) -> Ready:
        """The driver reports the log durable up to (index, term), with the hard state written with
        it. A report for an entry that is no longer in the log (truncated meanwhile) is ignored."""
        if index > self._persisted and self.term_at(index) == term:
            self._persisted = index
            if self._role == _LEADER:
                if self._maybe_commit():
                    self._on_commit_advanced()
            elif self._pending_ack:
                self._release_ack()
        return self._ready()

    def snapshot_installed(self, meta: SnapshotMeta) -> Ready:
        """The driver installed the snapshot handed out in `Ready.snapshot` (state machine restored,
        log reset): committed entries after it flow again and the leader hears about it."""
        if self._installing is None or self._installing != meta:
            return self._ready()  # stale: a newer snapshot replaced it
        self._installing = None
        if self._persisted < meta.index:
            self._persisted = meta.index
        if self._leader and self._role == _FOLLOWER:
            self._msgs.append((self._leader, SnapshotResponse(self._term, self.id, meta.index)))
        if self._pending_ack:
            self._release_ack()
        return self._ready()

    def compact(self, index: int) -> None:
        """The state machine is durable up to `index` (<= applied): drop the log up to it and remember
        the snapshot point (its term and the membership in force there)."""
        if index <= self._snap_index:
            return
        if index > self._applied:
            raise ValueError(f"cannot compact to {index}: only {self._applied} is applied")
        term = self.term_at(index)
        assert term is not None
        peers = self._peers_at(index)
        del self._log[: index - self._snap_index]
        self._snap = SnapshotMeta(index, term, peers)
        self._snap_index = index
        self._snap_term = term
        configs = self._configs
        keep = 0
        for k, (at, _) in enumerate(configs):
            if at <= index:
                keep = k
        if keep:
            del configs[:keep]

    def transfer_leadership(self, target: str | None, now: float) -> Ready:
        """Leader: hand leadership to `target` (None: the most up-to-date follower). Proposals are
        refused until it happens or an election timeout passes; the target is brought up to date, then
        gets TimeoutNow and campaigns at once."""
        if self._role != _LEADER:
            raise NotLeader(self._leader)
        self._now = now
        if target is None:
            best = -1
            for peer, pr in self._progress.items():
                if pr.match > best:
                    best, target = pr.match, peer
            if target is None:
                return self._ready()  # nobody to hand over to
        elif target == self.id:
            return self._ready()
        elif target not in self._progress:
            raise ValueError(f"{target} is not a member of the group")
        self._transfer_target = target
        self._transfer_deadline = now + self._cfg.election_min
        if not self._maybe_send_timeout_now():
            pr = self._progress[target]
            if pr.state != _SNAPSHOT:
                # bring the target up to date now, resending what it has not acknowledged (appends
                # in flight may be lost, and waiting for the stall detection would eat the deadline)
                pr.state = _PROBE
                pr.probe_sent = False
                pr.inflight.clear()
                pr.next = pr.match + 1
                self._send_append(target, pr)
        return self._ready()

    def step_down(self, now: float | None = None) -> Ready:
        """Leader: give up leadership (shutdown, lame duck): the most up-to-date follower, if it has
        the whole log, is told to campaign at once; this node becomes a follower."""
        if now is not None:
            self._now = now
        if self._role == _LEADER:
            self._hand_over()
        return self._ready()

    # ------------------------------------------------------------------------------ the Ready

    def _ready(self) -> Ready:
        committed: list[Entry] | None = None
        hi = self._commit if self._commit < self._persisted else self._persisted
        if hi > self._applied and self._installing is None:
            off = self._snap_index + 1
            committed = self._log[self._applied + 1 - off : hi + 1 - off]
            self._applied = hi
        hard_state = None
        if self._term != self._hs.term or self._vote != self._hs.voted_for:
            hard_state = self._hs = HardState(self._term, self._vote)
        msgs = self._msgs
        entries = self._out_entries
        if not (
            msgs
            or entries
            or committed
            or hard_state is not None
            or self._out_truncate
            or self._out_snapshot is not None
        ):
            return _EMPTY_READY
        ready = Ready(
            messages=msgs,
            hard_state=hard_state,
            truncate_from=self._out_truncate,
            entries=entries,
            snapshot=self._out_snapshot,
            snapshot_data=self._out_snapshot_data,
            committed=committed if committed is not None else [],
        )
        # the lists now belong to the Ready (even empty ones: the driver may keep the Ready around)
        self._msgs = []
        self._out_entries = []
        self._out_truncate = 0
        self._out_snapshot = None
        self._out_snapshot_data = b""
        return ready

    # ------------------------------------------------------------------------------ log

    def _append_local(self, kind: int, data: bytes) -> int:
        index = self._snap_index + len(self._log) + 1
        entry = Entry(self._term, index, kind, data)
        self._log.append(entry)
        self._out_entries.append(entry)
        if kind == ENTRY_PEERS:
            self._configs.append((index, decode_peers(data)))
            self._set_config()
        return index

    def _append_entries(self, entries: Sequence[Entry]) -> None:
        """Follower: entries that continue the log."""
        self._log.extend(entries)
        self._out_entries.extend(entries)
        changed = False
        for entry in entries:
            if entry.kind == ENTRY_PEERS:
                self._configs.append((entry.index, decode_peers(entry.data)))
                changed = True
        if changed:
            self._set_config()

    def _truncate(self, index: int) -> None:
        """Drop every entry >= index (a follower whose log conflicts with its leader's)."""
        if index <= self._commit:
            raise RuntimeError(f"Raft safety violation: truncating committed entry {index} (commit {self._commit})")
        del self._log[index - self._snap_index - 1 :]
        if self._persisted >= index:
            self._persisted = index - 1
        if self._pending_ack >= index:
            self._pending_ack = index - 1
        # the Ready says: truncate, then append; fold this truncation into what it says already
        start = self._out_truncate or index
        out = self._out_entries
        if out:
            start = min(start, out[0].index)
            if out[-1].index >= index:
                self._out_entries = [e for e in out if e.index < index]
        self._out_truncate = min(start, index)
        configs = self._configs
        if configs[-1][0] >= index:
            while len(configs) > 1 and configs[-1][0] >= index:
                configs.pop()
            self._set_config()

    def _peers_at(self, index: int) -> tuple[str, ...]:
        for at, peers in reversed(self._configs):
            if at <= index:
                return peers
        return self._configs[0][1]

    def _set_config(self) -> None:
        peers = self._configs[-1][1]
        was_member = self._is_member
        self._peers = peers
        self._quorum = len(peers) // 2 + 1
        self._is_member = self.id in peers
        if self._is_member and not was_member and self._role != _LEADER:
            self._reset_election(self._now)  # joined: a full election timeout before campaigning
        if self._role == _LEADER:
            progress = self._progress
            next_index = self.last_index + 1
            for peer in peers:
                if peer != self.id and peer not in progress:
                    progress[peer] = _Progress(next_index, self._now)
            for peer in [p for p in progress if p not in peers]:
                del progress[peer]
            if self._transfer_target and self._transfer_target not in progress:
                self._transfer_target = ""

    def campaign_soon(self, now: float, within: float) -> None:
        """A new group's designated first leader: campaign within `within` seconds rather than after
        a whole election timeout (nats-server's new assets elect at once, and clients wait for the
        create with a 5 s timeout). Timeouts are not a safety matter: votes still decide."""
        if self._role != _LEADER and not self._leader and self._can_campaign():
            self._election_deadline = now + self._rng.uniform(0.0, within)

    def leader_unreachable(self, now: float, within: float) -> None:
        """The driver saw the connection to the leader's server close (its process died, or the
        link broke): stop counting on that leader and campaign within `within` seconds instead of
        after a whole election timeout. Not a safety matter (votes decide), nor a disruption: a
        voter that still hears the leader refuses the pre-vote (leader stickiness)."""
        if self._role == _LEADER or not self._leader or not self._can_campaign():
            return
        self._last_leader_contact = -_INF
        self._election_deadline = min(self._election_deadline, now + self._rng.uniform(0.1 * within, within))

    # ------------------------------------------------------------------------------ roles

    def _reset_election(self, now: float) -> None:
        cfg = self._cfg
        self._election_deadline = now + self._rng.uniform(cfg.election_min, cfg.election_max)

    def _in_lease(self, now: float) -> bool:
        """Leader stickiness: this node believes a current leader exists."""
        if self._role == _LEADER:
            return True
        return bool(self._leader) and now - self._last_leader_contact < self._cfg.election_min

    def _become_follower(self, term: int, leader: str, now: float) -> None:
        if term > self._term:
            self._term = term
            self._vote = ""
        if self._role == _LEADER:
            self._progress = {}
            self._transfer_target = ""
            self._heartbeat_deadline = _INF
        self._role = _FOLLOWER
        self._votes = {}
        if leader:
            if leader != self._leader or self._leader_term != term:
                self._leader_since = now
                self._leader_term = term
            self._last_leader_contact = now
        self._leader = leader
        self._pending_ack = 0
        self._acked = 0
        self._reset_election(now)

    def _can_campaign(self) -> bool:
        """A member of the latest config; or of the one before it while the latest (which removes
        this node) is not known to be committed: a leader that appended its own removal and lost
        leadership must be able to win again and finish the change, else the group can deadlock
        (the remaining members may need its vote)."""
        if self._installing is not None:
            return False  # its state machine is not there yet: it could not serve a snapshot
        if self._is_member:
            return True
        configs = self._configs
        return len(configs) > 1 and configs[-1][0] > self._commit and self.id in configs[-2][1]

    def _own_vote(self) -> dict[str, bool]:
        return {self.id: True} if self._is_member else {}

    def _pre_vote(self, now: float) -> None:
        if self._is_member and self._quorum == 1:
            self._campaign(now, transfer=False)
            return
        self._role = _PRE_CANDIDATE
        self._leader = ""
        self._pending_ack = 0
        self._votes = self._own_vote()
        self._reset_election(now)
        request = VoteRequest(self._term + 1, self.id, self.last_index, self.last_term, pre_vote=True)
        for peer in self._peers:
            if peer != self.id:
                self._msgs.append((peer, request))

    def _campaign(self, now: float, *, transfer: bool) -> None:
        self._term += 1
        self._vote = self.id
        self._role = _CANDIDATE
        self._leader = ""
        self._pending_ack = 0
        self._votes = self._own_vote()
        self._reset_election(now)
        if self._is_member and self._quorum == 1:
            self._become_leader(now)
            return
        request = VoteRequest(self._term, self.id, self.last_index, self.last_term, transfer=transfer)
        for peer in self._peers:
            if peer != self.id:
                self._msgs.append((peer, request))

    def _become_leader(self, now: float) -> None:
        self._role = _LEADER
        self._leader = self.id
        self._leader_term = self._term
        self._leader_since = now
        self._became_leader_at = now
        self._votes = {}
        self._transfer_target = ""
        self._election_deadline = _INF
        self._heartbeat_deadline = now + self._cfg.heartbeat
        next_index = self.last_index + 1
        self._progress = {peer: _Progress(next_index, now) for peer in self._peers if peer != self.id}
        self._term_start = self._append_local(ENTRY_NOOP, b"")
        for peer, pr in self._progress.items():
            self._send_append(peer, pr)

    def _hand_over(self) -> None:
        """Leader: stop leading; tell the most up-to-date follower holding the whole log to campaign."""
        last = self.last_index
        target = ""
        for peer, pr in self._progress.items():
            if pr.match == last:
                target = peer
                break
        if target:
            self._msgs.append((target, TimeoutNow(self._term, self.id)))
        self._become_follower(self._term, "", self._now)

    def _check_quorum(self, now: float) -> bool:
        """Leader: step down when a majority has not been heard from within lost_quorum. True if so."""
        cutoff = now - self._cfg.lost_quorum
        if self._became_leader_at > cutoff:
            return False
        active = 1 if self._is_member else 0
        for pr in self._progress.values():
            if pr.last_contact > cutoff:
                active += 1
        if active >= self._quorum:
            return False
        self._become_follower(self._term, "", now)
        return True

    # ------------------------------------------------------------------------------ elections

    def _on_vote_request(self, m: VoteRequest, now: float) -> None:
        # here m.term >= self._term (> only for a pre-vote: a real vote made us follow its term)
        vote = self._vote
        if m.pre_vote:
            can_vote = m.term > self._term or vote == m.candidate or (not vote and not self._leader)
        else:
            can_vote = vote == m.candidate or (not vote and not self._leader)
        last_term = self.last_term
        up_to_date = m.last_term > last_term or (m.last_term == last_term and m.last_index >= self.last_index)
        if can_vote and up_to_date:
            self._msgs.append((m.candidate, VoteResponse(m.term, self.id, True, m.pre_vote)))
            if not m.pre_vote:
                self._vote = m.candidate
                self._reset_election(now)
                # A grant travels with the HardState recording it, even when that was handed out
                # before (a repeated request): the driver persists it again before sending, so the
                # grant can never overtake the vote's fsync.
                self._hs = _NO_HARD_STATE
        else:
            self._msgs.append((m.candidate, VoteResponse(self._term, self.id, False, m.pre_vote)))

    def _on_vote_response(self, m: VoteResponse, now: float) -> None:
        if m.pre_vote:
            if self._role != _PRE_CANDIDATE or (m.granted and m.term != self._term + 1):
                return
        elif self._role != _CANDIDATE or m.term != self._term:
            return
        if m.voter not in self._peers:
            return
        votes = self._votes
        votes[m.voter] = m.granted
        granted = sum(1 for v in votes.values() if v)
        if granted >= self._quorum:
            if self._role == _PRE_CANDIDATE:
                self._campaign(now, transfer=False)
            else:
                self._become_leader(now)
        elif len(votes) - granted > len(self._peers) - self._quorum:
            self._become_follower(self._term, "", now)  # lost

    def _on_timeout_now(self, m: TimeoutNow, now: float) -> None:
        if self._role != _LEADER and self._can_campaign():
            self._campaign(now, transfer=True)

    # ------------------------------------------------------------------------------ follower side

    def _on_append(self, m: AppendRequest, now: float) -> None:
        if self._role == _LEADER:
            return  # two leaders in one term cannot happen; never follow another one
        if self._role != _FOLLOWER or self._leader != m.leader:
            self._become_follower(m.term, m.leader, now)
        else:
            self._last_leader_contact = now
            self._reset_election(now)
        prev = m.prev_index
        entries: Sequence[Entry] = m.entries
        snap_index = self._snap_index
        if prev < snap_index:
            # everything up to our snapshot is committed, hence in the leader's log: skip it
            skip = snap_index - prev
            entries = entries[skip:] if skip < len(entries) else ()
            prev = snap_index
        log = self._log
        last = snap_index + len(log)
        if prev > last:
            self._msgs.append((m.leader, AppendResponse(self._term, self.id, False, last + 1)))
            return
        if prev > snap_index:
            prev_term = log[prev - snap_index - 1].term
            if prev_term != m.prev_term:
                # hint: the first index of our conflicting term (the leader retries from there)
                first = bisect.bisect_left(log, prev_term, 0, prev - snap_index - 1, key=lambda e: e.term)
                hint = max(snap_index + 1 + first, self._commit + 1)
                self._msgs.append((m.leader, AppendResponse(self._term, self.id, False, hint)))
                return
        count = len(entries)
        if count:
            if prev == last:
                self._append_entries(entries)
            else:
                off = snap_index + 1
                size = len(log)
                i = 0
                while i < count:
                    entry = entries[i]
                    k = entry.index - off
                    if k >= size:
                        break
                    if log[k].term != entry.term:
                        self._truncate(entry.index)
                        break
                    i += 1
                if i < count:
                    self._append_entries(entries[i:] if i else entries)
        verified = prev + count
        if m.commit > self._commit:
            commit = m.commit if m.commit < verified else verified
            if commit > self._commit:
                self._commit = commit
        self._ack(verified, heartbeat=not m.entries)

    def _ack(self, verified: int, *, heartbeat: bool) -> None:
        """Acknowledge the log up to `verified` (known to match the leader's) once it is durable."""
        durable = self._persisted if self._installing is None else 0
        if verified <= durable:
            self._msgs.append((self._leader, AppendResponse(self._term, self.id, True, verified)))
            if verified > self._acked:
                self._acked = verified
            return
        if verified > self._pending_ack:
            self._pending_ack = verified
        if heartbeat:  # answer a heartbeat at once (the leader counts contacts), claiming what is durable
            self._msgs.append((self._leader, AppendResponse(self._term, self.id, True, durable)))

    def _release_ack(self) -> None:
        if self._installing is not None or self._role != _FOLLOWER or not self._leader:
            return
        index = self._pending_ack if self._pending_ack < self._persisted else self._persisted
        if index > self._acked:
            self._msgs.append((self._leader, AppendResponse(self._term, self.id, True, index)))
            self._acked = index
        if self._persisted >= self._pending_ack:
            self._pending_ack = 0

    def _on_snapshot(self, m: SnapshotRequest, now: float) -> None:
        if self._role == _LEADER:
            return
        if self._role != _FOLLOWER or self._leader != m.leader:
            self._become_follower(m.term, m.leader, now)
        else:
            self._last_leader_contact = now
            self._reset_election(now)
        meta = m.meta
        if meta.index <= self._commit:
            self._ack(self._commit, heartbeat=True)  # stale: we have all of it
            return
        if self.term_at(meta.index) == meta.term:
            # our log holds the snapshot's last entry: keep the log, just learn the commit
            self._commit = meta.index
            self._ack(meta.index, heartbeat=True)
            return
        old_last = self.last_index
        self._log = []
        self._snap = meta
        self._snap_index = meta.index
        self._snap_term = meta.term
        self._configs = [(meta.index, tuple(meta.peers))]
        self._set_config()
        self._commit = meta.index
        self._applied = meta.index
        self._persisted = meta.index  # counts once installed (every use waits for `_installing` to clear)
        self._installing = meta
        self._pending_ack = 0
        self._acked = 0
        self._out_snapshot = meta
        self._out_snapshot_data = m.data
        self._out_entries = []
        self._out_truncate = meta.index + 1 if old_last > meta.index else 0

    # ------------------------------------------------------------------------------ leader side

    def _on_append_response(self, m: AppendResponse, now: float) -> None:
        if self._role != _LEADER:
            return
        peer = m.follower
        pr = self._progress.get(peer)
        if pr is None:
            return
        pr.last_contact = now
        if m.success:
            index = m.index
            if index > pr.match:
                pr.match = index
                if pr.next <= index:
                    pr.next = index + 1
                inflight = pr.inflight
                while inflight and inflight[0] <= index:
                    inflight.popleft()
                pr.inflight_since = now
                if pr.state == _PROBE:
                    pr.state = _REPLICATE
                    pr.probe_sent = False
                    pr.next = index + 1
                elif pr.state == _SNAPSHOT and index >= pr.snapshot_index:
                    pr.state = _REPLICATE
                    pr.next = index + 1
                    inflight.clear()
                if self._transfer_target == peer:
                    self._maybe_send_timeout_now()
                if self._maybe_commit():
                    self._on_commit_advanced()
                    return
            elif pr.state == _PROBE and index >= pr.next - 1:
                pr.state = _REPLICATE  # the probe matched where we already knew
                pr.probe_sent = False
                pr.next = index + 1
            self._send_append(peer, pr)
            return
        if pr.state == _SNAPSHOT:
            return  # a contact; the snapshot is on its way
        last = self.last_index
        hint = m.index
        if hint > last + 1:
            hint = last + 1
        if hint <= pr.match:
            # The follower no longer has entries it once acknowledged: its disk was replaced or
            # wiped. Holding on to the old match would probe past its end forever; start over
            # from what it has (the entries it lost still count as committed: a majority
            # acknowledged them when it mattered, and commit never moves back).
            pr.match = hint - 1 if hint > 0 else 0
        pr.state = _PROBE
        pr.probe_sent = False
        pr.inflight.clear()
        pr.next = hint
        self._send_append(peer, pr)

    def _on_snapshot_response(self, m: SnapshotResponse, now: float) -> None:
        if self._role != _LEADER:
            return
        pr = self._progress.get(m.follower)
        if pr is None:
            return
        pr.last_contact = now
        if m.index <= 0:
            return
        if m.index > pr.match:
            pr.match = m.index
        if pr.state == _SNAPSHOT:
            pr.state = _PROBE
            pr.probe_sent = False
            pr.inflight.clear()
            pr.next = pr.match + 1
        if self._maybe_commit():
            self._on_commit_advanced()
        else:
            self._send_append(m.follower, pr)

    def _maybe_commit(self) -> bool:
        """Leader: advance the commit index to the highest index a majority persisted, if it is of the
        current term (Figure 8). True if it moved."""
        peers = self._peers
        if not peers:
            return False
        progress = self._progress
        me = self.id
        matches = [self._persisted if p == me else progress[p].match for p in peers]
        matches.sort(reverse=True)
        index = matches[self._quorum - 1]
        if index > self._commit and self.term_at(index) == self._term:
            self._commit = index
            return True
        return False

    def _on_commit_advanced(self) -> None:
        if not self._is_member and self._commit >= self._configs[-1][0]:
            self._hand_over()  # removed from the group: the change is committed, leave
            return
        for peer, pr in self._progress.items():
            self._send_append(peer, pr)

    def _maybe_send_timeout_now(self) -> bool:
        target = self._transfer_target
        pr = self._progress.get(target)
        if pr is None or pr.match != self.last_index:
            return False
        self._msgs.append((target, TimeoutNow(self._term, self.id)))
        return True

    def _heartbeat(self, peer: str, pr: _Progress, now: float) -> None:
        state = pr.state
        if state == _REPLICATE:
            if pr.inflight and now - pr.inflight_since >= self._cfg.heartbeat:
                # no progress for a heartbeat: appends were lost, find the follower's position again
                pr.state = _PROBE
                pr.probe_sent = False
                pr.inflight.clear()
                pr.next = pr.match + 1
                self._send_append(peer, pr)
                return
            self._send_empty(peer, pr)
        elif state == _PROBE:
            pr.probe_sent = False
            self._send_append(peer, pr)
        elif now - pr.snapshot_sent_at >= self._cfg.election_min:
            self._send_snapshot(peer, pr)  # lost? send it again
        else:
            self._send_empty(peer, pr)

    def _send_append(self, peer: str, pr: _Progress) -> None:
        """Send what `peer` needs next, as far as flow control allows."""
        state = pr.state
        if state == _REPLICATE:
            last = self._snap_index + len(self._log)
            cap = self._cfg.max_inflight
            inflight = pr.inflight
            while pr.next <= last and len(inflight) < cap:
                if not self._send_entries(peer, pr):
                    return
            if not inflight and pr.known_commit < self._commit and pr.known_commit < pr.match:
                self._send_empty(peer, pr)  # nothing to carry the new commit index
        elif state == _PROBE and not pr.probe_sent:
            self._send_entries(peer, pr)

    def _send_entries(self, peer: str, pr: _Progress) -> bool:
        """One append from pr.next (empty if nothing is left: a probe). False if a snapshot went instead."""
        nxt = pr.next
        prev = nxt - 1
        snap_index = self._snap_index
        if prev < snap_index:
            self._send_snapshot(peer, pr)
            return False
        log = self._log
        off = snap_index + 1
        prev_term = self._snap_term if prev == snap_index else log[prev - off].term
        last = snap_index + len(log)
        cfg = self._cfg
        hi = last if last - prev <= cfg.max_append_entries else prev + cfg.max_append_entries
        entries: tuple[Entry, ...]
        if hi == nxt:
            entries = (log[nxt - off],)
        elif hi > nxt:
            batch = log[nxt - off : hi - off + 1]
            limit = cfg.max_append_bytes
            total = 0
            for k, entry in enumerate(batch):
                total += len(entry.data)
                if total > limit and k:
                    del batch[k:]
                    break
            entries = tuple(batch)
        else:
            entries = ()
        commit = self._commit
        self._msgs.append((peer, AppendRequest(self._term, self.id, prev, prev_term, entries, commit)))
        sent_to = prev + len(entries)
        known = commit if commit < sent_to else sent_to
        if known > pr.known_commit:
            pr.known_commit = known
        if pr.state == _REPLICATE:
            if entries:
                if not pr.inflight:
                    pr.inflight_since = self._now
                pr.inflight.append(sent_to)
                pr.next = sent_to + 1
        else:
            pr.probe_sent = True
        return True

    def _send_empty(self, peer: str, pr: _Progress) -> None:
        """A heartbeat or commit notice: an empty append at the follower's known match (always matches).
        When that entry is compacted away, at index 0 (contact only, no commit information)."""
        match = pr.match
        prev_term = self.term_at(match)
        if prev_term is None:
            match = prev_term = 0
        commit = self._commit
        self._msgs.append((peer, AppendRequest(self._term, self.id, match, prev_term, (), commit)))
        known = commit if commit < match else match
        if known > pr.known_commit:
            pr.known_commit = known

    def _send_snapshot(self, peer: str, pr: _Progress) -> None:
        meta = self._snap
        assert meta is not None
        data = self._snapshot_data() if self._snapshot_data is not None else b""
        self._msgs.append((peer, SnapshotRequest(self._term, self.id, meta, data)))
        pr.state = _SNAPSHOT
        pr.snapshot_index = meta.index
        pr.snapshot_sent_at = self._now
        pr.probe_sent = False
        pr.inflight.clear()
