"""The store logic both stores share (layer 3): sequence index, limits, purge, expiry, reads.

`IndexedStore` implements every rule of the StreamStore contract (streams.md §8–§14) over a compact
sequence index; `memstore.MemStore` and `filestore.FileStore` only say where the bytes live and how a
removal is made durable, through a handful of `_hook` methods. One implementation of the rules means
one place to get them right, and the contract suite runs the same code paths on both stores.

The index has one slot per sequence from `_base` to `last_seq`, held in parallel `array`s — no Python
object per stored message (ARCHITECTURE.md §4):

* `_sid`   array('I')  subject id of the message, `DELETED` for a removed/skipped sequence;
* `_ts`    array('q')  stored timestamp (ns), for first_ts and max_age;
* `_size`  array('I')  accounted size (streams.md §11), so removals never need to read the message.

That is 16 bytes per sequence (the file store adds 4 for the offset in its block). Leading deleted
slots are dropped in bulk once they are more than half of the arrays (amortised O(1)). Subjects are
interned: `_subjects` maps subject -> [sid, count, first_seq, last_seq] (one entry per *distinct*
subject, which the contract allows), so subject-filtered scans compare integers, and a literal filter
uses `codec.index_sid(sids, sid, lo, hi)` (`array.index`; the compiled codec twin scans the buffer
without boxing each slot: ~0.4 µs for 2000 slots instead of ~16 µs).

Per-message TTLs live in a dict + heap (only messages that carry a TTL pay for an entry), `ttl_ns=-1`
messages in a set (exempt from max_age).

The removed-callback (see `base.RemovedCallback`) is called for removals by limits (per-subject,
max_msgs, max_bytes), expiry (max_age, TTL) and purge (which includes rollups) — never for
`remove_msg`, whose caller already knows what it removed.

Layer 3: imports only jsedge.subjects, jsedge.store.base, the codec selector (`index_sid`) and the stdlib.
"""

from __future__ import annotations

import asyncio
import heapq
from array import array
from collections.abc import Awaitable, Generator, Iterable
from typing import Any

from jsedge.store.base import (
    ConsumerState,
    DiscardNewError,
    DiscardPolicy,
    Pending,
    RemovedCallback,
    SequencePair,
    StoreClosedError,
    StoreConfig,
    StoredMsg,
    StreamState,
    SubjectState,
)
from jsedge.store.codec import index_sid
from jsedge.subjects import is_literal, subject_matches

DELETED = 0xFFFFFFFF

# Subject-state list fields (a list, not an object: it is mutated on every store/remove).
_SID, _COUNT, _FIRST, _LAST = 0, 1, 2, 3

#: The longest TTL a record holds: svarint values stay below 2**62 (146 years of nanoseconds).
_MAX_TTL_NS = (1 << 62) - 1

#: Leading deleted slots tolerated before the index arrays are shifted (see `_maybe_compact`).
_COMPACT_MIN = 4096
#: Wildcard filters matching at most this many subjects are served by per-subject `array.index`
#: probes; more subjects fall back to one Python pass over the slots with a set of ids.
_FEW_SUBJECTS = 16


class _Done:
    """An already-resolved awaitable for callers without a running loop (sync tests, tools)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


def resolved() -> Awaitable[None]:
    """A resolved future on the running loop, or a resolved plain awaitable without one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return _Done()
    fut: asyncio.Future[None] = loop.create_future()
    fut.set_result(None)
    return fut


def _whole(subject_filter: bytes | None) -> bool:
    return not subject_filter or subject_filter == b">"


class IndexedStore:
    """StreamStore logic over a sequence index; subclasses provide the storage hooks below."""

    #: Fixed per-message overhead used by `msg_size` (memory 16; the file store overrides it).
    _OVERHEAD = 16
    _HDR_OVERHEAD = 16
    #: whether jetstream/ingest.py may append header-less publishes itself (the file store with
    #: group commit only)
    plain_ingest = False

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        first = max(config.first_seq, 1)
        self._base = first  # sequence of slot 0
        self._sid = array("I")
        self._ts = array("q")
        self._size = array("I")
        self._msgs = 0
        self._bytes = 0
        self._first = first  # lowest stored seq, or last+1 when empty
        self._last = first - 1
        self._last_ts = 0
        # A new stream with first_seq 1 reports first_seq 0 until something happens (streams.md §12).
        self._used = first > 1
        self._subjects: dict[bytes, list[int]] = {}
        self._sid_subject: list[bytes | None] = []
        self._free_sids: list[int] = []
        self._subjects_gen = 0
        self._match_cache: dict[bytes, tuple[int, list[list[int]]]] = {}
        self._ttl_deadline: dict[int, int] = {}
        self._ttl_heap: list[tuple[int, int]] = []
        self._never: set[int] = set()
        self._removed_cb: RemovedCallback | None = None
        self._closed = False

    # ------------------------------------------------------------------ hooks for subclasses
    def _write_msg(self, seq: int, ts: int, subject: bytes, hdr: bytes, data: bytes, ttl_ns: int) -> None:
        raise NotImplementedError

    def _write_skip(self, seq: int, ts: int) -> None:
        raise NotImplementedError

    def _read(self, seq: int) -> StoredMsg | None:
        raise NotImplementedError

    def _on_remove(self, seq: int, front: bool, erase: bool) -> None:
        """A stored message left the index. `front`: it was the first message (a moved floor)."""
        raise NotImplementedError

    def _on_bulk_front(self, new_first: int, moved_last: bool) -> None:
        """Everything below `new_first` is gone (purge); persist it now. `moved_last`: the purge
        moved last_seq (streams.md §9 trap)."""
        raise NotImplementedError

    def _on_compact(self, count: int) -> None:
        """The first `count` index slots were dropped (subclasses shift their parallel arrays)."""

    # ------------------------------------------------------------------ small helpers
    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("store is closed")

    def msg_size(self, subject: bytes, hdr: bytes, data: bytes) -> int:
        if hdr:
            return self._HDR_OVERHEAD + len(subject) + len(hdr) + len(data)
        return self._OVERHEAD + len(subject) + len(data)

    def set_removed_callback(self, callback: RemovedCallback | None) -> None:
        self._removed_cb = callback

    def _live(self, seq: int) -> bool:
        i = seq - self._base
        return 0 <= i < len(self._sid) and self._sid[i] != DELETED

    def _intern(self, subject: bytes) -> list[int]:
        ss = self._subjects.get(subject)
        if ss is None:
            if self._free_sids:
                sid = self._free_sids.pop()
                self._sid_subject[sid] = subject
            else:
                sid = len(self._sid_subject)
                self._sid_subject.append(subject)
            ss = [sid, 0, 0, 0]
            self._subjects[subject] = ss
            self._subjects_gen += 1
        return ss

    def _matching(self, subject_filter: bytes) -> list[list[int]]:
        """Subject-state entries matching a (non-whole) filter; cached per subject-set generation."""
        if is_literal(subject_filter):
            ss = self._subjects.get(subject_filter)
            return [ss] if ss is not None else []
        cached = self._match_cache.get(subject_filter)
        if cached is not None and cached[0] == self._subjects_gen:
            return cached[1]
        result = [ss for subject, ss in self._subjects.items() if subject_matches(subject_filter, subject)]
        if len(self._match_cache) > 256:
            self._match_cache.clear()
        self._match_cache[subject_filter] = (self._subjects_gen, result)
        return result

    # ------------------------------------------------------------------ index mutation
    def _index_append(self, seq: int, ts: int, sid: int, size: int) -> None:
        """Add slot `seq` (== last+1); used for live appends and by file-store recovery."""
        self._sid.append(sid)
        self._ts.append(ts)
        self._size.append(size)
        self._last = seq
        self._used = True

    def _add_live(self, seq: int, ts: int, subject: bytes, size: int, ttl_ns: int) -> None:
        ss = self._intern(subject)
        self._index_append(seq, ts, ss[_SID], size)
        if ss[_COUNT] == 0:
            ss[_FIRST] = seq
        ss[_COUNT] += 1
        ss[_LAST] = seq
        self._msgs += 1
        self._bytes += size
        if self._msgs == 1:
            self._first = seq
        if ttl_ns > 0:
            deadline = ts + ttl_ns
            self._ttl_deadline[seq] = deadline
            heapq.heappush(self._ttl_heap, (deadline, seq))
        elif ttl_ns < 0:
            self._never.add(seq)

    def _add_skip(self, seq: int) -> None:
        self._index_append(seq, 0, DELETED, 0)
        if self._msgs == 0:
            self._first = seq + 1

    def _remove(self, seq: int, *, notify: bool, erase: bool = False) -> bytes | None:
        """Drop one stored message from the index; returns its subject (None when absent)."""
        i = seq - self._base
        if i < 0 or i >= len(self._sid):
            return None
        sid = self._sid[i]
        if sid == DELETED:
            return None
        self._sid[i] = DELETED
        subject = self._sid_subject[sid]
        assert subject is not None
        ss = self._subjects[subject]
        ss[_COUNT] -= 1
        if ss[_COUNT] == 0:
            del self._subjects[subject]
            self._sid_subject[sid] = None
            self._free_sids.append(sid)
            self._subjects_gen += 1
        elif seq == ss[_FIRST]:
            ss[_FIRST] = index_sid(self._sid, sid, i + 1, ss[_LAST] - self._base + 1) + self._base
        elif seq == ss[_LAST]:
            j = i - 1
            sids = self._sid
            while sids[j] != sid:
                j -= 1
            ss[_LAST] = j + self._base
        self._msgs -= 1
        self._bytes -= self._size[i]
        if self._ttl_deadline:
            self._ttl_deadline.pop(seq, None)
        if self._never:
            self._never.discard(seq)
        front = seq == self._first
        self._on_remove(seq, front, erase)
        if front:
            self._advance_first()
        if notify and self._removed_cb is not None:
            self._removed_cb(seq, subject)
        return subject

    def _advance_first(self) -> None:
        if self._msgs == 0:
            self._reset_index(self._last + 1)
            return
        sids = self._sid
        i = self._first - self._base
        while sids[i] == DELETED:
            i += 1
        self._first = i + self._base
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        dead = self._first - self._base
        if dead > _COMPACT_MIN and dead > len(self._sid) // 2:
            del self._sid[:dead]
            del self._ts[:dead]
            del self._size[:dead]
            self._base += dead
            self._on_compact(dead)

    def _reset_index(self, first: int) -> None:
        """Empty index whose next slot is `first` (also used by purge to move the stream)."""
        count = len(self._sid)
        del self._sid[:]
        del self._ts[:]
        del self._size[:]
        self._on_compact(count)
        self._base = first
        self._first = first
        self._last = first - 1

    # ------------------------------------------------------------------ writes
    def begin_batch(self, first_seq: int, last_seq: int) -> None:
        """See `base.StreamStore.begin_batch` (nothing to do in memory)."""

    def end_batch(self, complete: bool = True) -> None:
        """See `base.StreamStore.end_batch`."""

    def store_msg(
        self, subject: bytes, hdr: bytes, data: bytes, ts: int, ttl_ns: int = 0, *, rollup: bool = False
    ) -> int:
        """See `base.StreamStore.store_msg`. `rollup=True` (the publish carries `Nats-Rollup`) lifts the
        discard_new_per_subject rejection (streams.md §8 1a)."""
        if self._closed:
            self._check_open()
        cfg = self.config
        if hdr:
            size = self._HDR_OVERHEAD + len(subject) + len(hdr) + len(data)
        else:
            size = self._OVERHEAD + len(subject) + len(data)
        if cfg.discard is DiscardPolicy.NEW:
            ss = self._subjects.get(subject)
            mps = cfg.max_msgs_per_subject
            at_limit = mps > 0 and ss is not None and ss[_COUNT] >= mps
            if at_limit and cfg.discard_new_per_subject and not rollup:
                raise DiscardNewError("maximum messages per subject exceeded")
            if cfg.max_msgs > 0 and self._msgs >= cfg.max_msgs and not at_limit:
                raise DiscardNewError("maximum messages exceeded")
            if cfg.max_bytes > 0 and self._bytes + size > cfg.max_bytes:
                # The per-subject limit will drop this subject's oldest: accept if that frees enough.
                if not at_limit or ss is None:
                    raise DiscardNewError("maximum bytes exceeded")
                oldest = self._size[ss[_FIRST] - self._base]
                if self._bytes + size - oldest > cfg.max_bytes:
                    raise DiscardNewError("maximum bytes exceeded")
        if ttl_ns > _MAX_TTL_NS:
            # nats-server accepts TTLs of billions of years (`Nats-TTL` digits wrap around int64);
            # the record format holds 146 years, which is as good as forever.
            ttl_ns = _MAX_TTL_NS
        seq = self._last + 1
        self._write_msg(seq, ts, subject, hdr, data, ttl_ns)
        self._add_live(seq, ts, subject, size, ttl_ns)
        self._last_ts = ts
        if cfg.max_msgs_per_subject > 0:
            self._enforce_per_subject(subject)
        if cfg.discard is DiscardPolicy.OLD and (cfg.max_msgs > 0 or cfg.max_bytes > 0):
            self._enforce_discard_old()
        return seq

    def _enforce_per_subject(self, subject: bytes) -> None:
        mps = self.config.max_msgs_per_subject
        if mps <= 0:
            return
        ss = self._subjects.get(subject)
        while ss is not None and ss[_COUNT] > mps:
            self._remove(ss[_FIRST], notify=True)

    def _enforce_discard_old(self) -> None:
        cfg = self.config
        if cfg.discard is not DiscardPolicy.OLD:
            return
        if cfg.max_msgs > 0:
            while self._msgs > cfg.max_msgs:
                self._remove(self._first, notify=True)
        if cfg.max_bytes > 0:
            while self._bytes > cfg.max_bytes and self._msgs:
                self._remove(self._first, notify=True)

    def skip_msg(self, ts: int) -> int:
        self._check_open()
        seq = self._last + 1
        self._write_skip(seq, ts)
        self._add_skip(seq)
        self._last_ts = ts
        return seq

    def remove_msg(self, seq: int, erase: bool = False) -> bool:
        self._check_open()
        return self._remove(seq, notify=False, erase=erase) is not None

    def purge(self, subject: bytes | None = None, seq: int = 0, keep: int = 0) -> int:
        self._check_open()
        if _whole(subject):
            return self._purge_whole(seq, keep)
        assert subject is not None
        matching = self._matching(subject)
        if not matching:
            return 0
        sids = {ss[_SID] for ss in matching}
        lo = min(ss[_FIRST] for ss in matching)
        hi = max(ss[_LAST] for ss in matching)
        if seq > 0:
            hi = min(hi, seq - 1)
        victims: list[int] = []
        if len(matching) == 1:
            sid = matching[0][_SID]
            sid_array = self._sid
            i, end = lo - self._base, hi - self._base + 1
            while i < end:
                try:
                    i = index_sid(sid_array, sid, i, end)
                except ValueError:
                    break
                victims.append(i + self._base)
                i += 1
        else:
            base = self._base
            for i in range(lo - base, hi - base + 1):
                if self._sid[i] in sids:
                    victims.append(i + base)
        if keep > 0:  # keep the newest `keep` of all matching messages (the API forbids seq+keep)
            victims = victims[: max(len(victims) - keep, 0)]
        for victim in victims:
            self._remove(victim, notify=True)
        self._after_purge(False)
        return len(victims)

    def _purge_whole(self, seq: int, keep: int) -> int:
        if keep > 0:
            if keep >= self._msgs:
                return 0
            # the keep-th newest message's seq: walk from whichever end is closer
            drop = self._msgs - keep
            cutoff = self._nth_live(drop)  # seq of the first message kept
            return self._purge_below(cutoff if seq <= 0 else min(cutoff, seq))
        if seq > 0:
            if seq > self._last + 1:
                purged = self._purge_below(self._last + 1, finish=False)
                self._reset_index(seq)
                self._used = True
                self._after_purge(True)
                return purged
            return self._purge_below(seq)
        return self._purge_below(self._last + 1)

    def _nth_live(self, n: int) -> int:
        """Sequence of the live message with `n` live messages before it."""
        sids = self._sid
        i = self._first - self._base
        seen = 0
        while True:
            if sids[i] != DELETED:
                if seen == n:
                    return i + self._base
                seen += 1
            i += 1

    def _purge_below(self, limit: int, finish: bool = True) -> int:
        """Remove every stored message with seq < limit (a moving floor: no per-message tombstones)."""
        purged = 0
        if limit > self._last and self._msgs:
            # everything: rebuild the empty index in one go instead of removing one by one
            purged = self._msgs
            cb = self._removed_cb
            removed: list[tuple[int, bytes]] = []
            if cb is not None:
                base, table = self._base, self._sid_subject
                for i in range(self._first - base, len(self._sid)):
                    sid = self._sid[i]
                    if sid != DELETED:
                        removed.append((i + base, table[sid]))  # type: ignore[arg-type]
            self._subjects.clear()
            self._sid_subject.clear()
            self._free_sids.clear()
            self._subjects_gen += 1
            self._ttl_deadline.clear()
            self._ttl_heap.clear()
            self._never.clear()
            self._msgs = 0
            self._bytes = 0
            self._reset_index(self._last + 1)
            self._on_purge_all()
            for item in removed:
                cb(*item)  # type: ignore[misc]
        else:
            while self._msgs and self._first < limit:
                self._remove(self._first, notify=True)
                purged += 1
        self._used = True
        if finish:
            self._after_purge(False)
        return purged

    def _on_purge_all(self) -> None:
        """Every stored message is gone (subclasses drop their payload storage wholesale)."""

    def _after_purge(self, moved_last: bool) -> None:
        self._on_bulk_front(self._first, moved_last)

    def expire(self, now: int) -> list[StoredMsg]:
        self._check_open()
        removed: list[StoredMsg] = []
        max_age = self.config.max_age_ns
        if max_age > 0 and self._msgs:
            cutoff = now - max_age
            seq = self._first
            while self._msgs and seq <= self._last:
                i = seq - self._base
                if self._sid[i] != DELETED:
                    if self._ts[i] > cutoff:
                        break
                    if seq not in self._never:
                        msg = self._read(seq)
                        self._remove(seq, notify=True)
                        if msg is not None:
                            removed.append(msg)
                seq = max(seq + 1, self._first)
        heap = self._ttl_heap
        while heap and heap[0][0] <= now:
            deadline, seq = heapq.heappop(heap)
            if self._ttl_deadline.get(seq) != deadline:
                continue
            msg = self._read(seq)
            self._remove(seq, notify=True)
            if msg is not None:
                removed.append(msg)
        if len(removed) > 1:
            removed.sort(key=lambda m: m.seq)
        return removed

    def next_expiry(self) -> int:
        best = 0
        heap = self._ttl_heap
        while heap and self._ttl_deadline.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if heap:
            best = heap[0][0]
        max_age = self.config.max_age_ns
        if max_age > 0 and self._msgs:
            seq = self._first
            while seq <= self._last:
                i = seq - self._base
                if self._sid[i] != DELETED and seq not in self._never:
                    deadline = self._ts[i] + max_age
                    if best == 0 or deadline < best:
                        best = deadline
                    break
                seq += 1
        return best

    def update_config(self, config: StoreConfig) -> None:
        self._check_open()
        self.config = config
        if config.max_msgs_per_subject > 0:
            for subject in [s for s, ss in self._subjects.items() if ss[_COUNT] > config.max_msgs_per_subject]:
                self._enforce_per_subject(subject)
        self._enforce_discard_old()

    # ------------------------------------------------------------------ reads
    def load_msg(self, seq: int) -> StoredMsg | None:
        self._check_open()
        if not self._live(seq):
            return None
        return self._read(seq)

    def _next_live(self, start: int, end: int) -> int:
        """First live seq in [start, end], or 0."""
        sids = self._sid
        base = self._base
        for i in range(start - base, end - base + 1):
            if sids[i] != DELETED:
                return i + base
        return 0

    def _next_of(self, ss: list[int], start: int) -> int:
        if start <= ss[_FIRST]:
            return ss[_FIRST]
        if start > ss[_LAST]:
            return 0
        base = self._base
        return index_sid(self._sid, ss[_SID], start - base, ss[_LAST] - base + 1) + base

    def load_next_msg(self, subject_filter: bytes, start_seq: int) -> StoredMsg | None:
        self._check_open()
        start = max(start_seq, self._first)
        if start > self._last or not self._msgs:
            return None
        if _whole(subject_filter):
            seq = self._next_live(start, self._last)
        else:
            matching = self._matching(subject_filter)
            if len(matching) <= _FEW_SUBJECTS:
                found = [s for s in (self._next_of(ss, start) for ss in matching) if s]
                seq = min(found) if found else 0
            else:
                seq = self._scan_forward(start, {ss[_SID] for ss in matching})
        return self._read(seq) if seq else None

    def _scan_forward(self, start: int, sids: set[int]) -> int:
        base = self._base
        slots = self._sid
        for i in range(start - base, len(slots)):
            if slots[i] in sids:
                return i + base
        return 0

    def _scan_back(self, end: int, sids: set[int] | None) -> int:
        base = self._base
        slots = self._sid
        for i in range(min(end, self._last) - base, self._first - base - 1, -1):
            sid = slots[i]
            if sid != DELETED and (sids is None or sid in sids):
                return i + base
        return 0

    def load_last_msg(self, subject_filter: bytes, max_seq: int = 0) -> StoredMsg | None:
        self._check_open()
        if not self._msgs:
            return None
        end = self._last if max_seq <= 0 else min(max_seq, self._last)
        if _whole(subject_filter):
            seq = self._scan_back(end, None)
        else:
            if max_seq <= 0 and b"*" not in subject_filter and b">" not in subject_filter:
                # one literal subject (a KV get): its last sequence, no list built
                ss = self._subjects.get(subject_filter)
                if ss is None:
                    return None
                return self._read(ss[_LAST]) if ss[_LAST] else None
            matching = self._matching(subject_filter)
            if not matching:
                return None
            if max_seq <= 0:
                seq = max(ss[_LAST] for ss in matching)
            else:
                seq = self._scan_back(end, {ss[_SID] for ss in matching})
        return self._read(seq) if seq else None

    def load_prev_msg(self, start_seq: int) -> StoredMsg | None:
        self._check_open()
        if not self._msgs or start_seq < self._first:
            return None
        seq = self._scan_back(start_seq, None)
        return self._read(seq) if seq else None

    def last_seq(self) -> int:
        return self._last

    def _first_since(self, cutoff: int) -> int:
        """The lowest live sequence of the tail whose timestamps are all >= cutoff (0 if none):
        walked back on the index, nothing read."""
        base = self._base
        slots, stamps = self._sid, self._ts
        first = 0
        for i in range(self._last - base, self._first - base - 1, -1):
            if slots[i] == DELETED:
                continue
            if stamps[i] < cutoff:
                break
            first = i + base
        return first

    def headers_since(self, cutoff: int) -> list[tuple[int, int, bytes]]:
        """(seq, ts, headers) of the live messages with headers at the end of the stream stored at
        or after `cutoff` (ns), oldest first: what a stream's Msg-Id window is rebuilt from."""
        self._check_open()
        first = self._first_since(cutoff) if self._msgs else 0
        out: list[tuple[int, int, bytes]] = []
        if not first:
            return out
        seq = first
        while seq <= self._last:
            seq = self._next_live(seq, self._last)
            if not seq:
                break
            msg = self._read(seq)
            if msg is not None and msg.hdr:
                out.append((seq, msg.ts, msg.hdr))
            seq += 1
        return out

    def state(self, *, deleted_details: bool = False, subjects_filter: bytes | None = None) -> StreamState:
        st = StreamState(
            messages=self._msgs,
            bytes=self._bytes,
            last_seq=self._last,
            last_ts=self._last_ts,
            num_subjects=len(self._subjects),
        )
        if self._msgs:
            st.first_seq = self._first
            st.first_ts = self._ts[self._first - self._base]
            st.num_deleted = self._last - self._first + 1 - self._msgs
        else:
            st.first_seq = self._last + 1 if (self._used or self._last > 0) else 0
        if deleted_details:
            st.deleted = []
            if self._msgs and st.num_deleted:
                base = self._base
                sids = self._sid
                st.deleted = [i + base for i in range(self._first - base, len(sids)) if sids[i] == DELETED]
        if subjects_filter is not None:
            if _whole(subjects_filter):
                st.subjects = {s: ss[_COUNT] for s, ss in self._subjects.items()}
            else:
                st.subjects = {self._sid_subject[ss[_SID]]: ss[_COUNT] for ss in self._matching(subjects_filter)}  # type: ignore[misc]  # a live subject's slot is never None
        return st

    def subjects_state(self, subject_filter: bytes) -> dict[bytes, SubjectState]:
        items: Iterable[tuple[bytes, list[int]]]
        if _whole(subject_filter):
            items = self._subjects.items()
        else:
            items = ((self._sid_subject[ss[_SID]], ss) for ss in self._matching(subject_filter))  # type: ignore[misc]
        return {s: SubjectState(ss[_COUNT], ss[_FIRST], ss[_LAST]) for s, ss in items}

    def num_pending(self, start_seq: int, subject_filter: bytes, last_per_subject: bool = False) -> int:
        if not self._msgs:
            return 0
        start = max(start_seq, self._first)
        if start > self._last:
            return 0
        whole = _whole(subject_filter)
        if last_per_subject:
            entries = self._subjects.values() if whole else self._matching(subject_filter)
            return sum(1 for ss in entries if ss[_LAST] >= start)
        base = self._base
        if whole:
            if start == self._first:
                return self._msgs
            return len(self._sid) - (start - base) - self._sid[start - base :].count(DELETED)
        total = 0
        for ss in self._matching(subject_filter):
            if ss[_FIRST] >= start:
                total += ss[_COUNT]
            elif ss[_LAST] >= start:
                total += self._sid[start - base : ss[_LAST] - base + 1].count(ss[_SID])
        return total

    def statistics(self) -> StreamState:
        return self.state()


# ---------------------------------------------------------------------------------------------
# consumer state transitions (shared by both consumer stores, and by file-store log replay)


def apply_delivered(state: ConsumerState, consumer_seq: int, stream_seq: int, delivery_count: int, ts: int) -> None:
    """nats-server `consumerFileStore.UpdateDelivered` (ack policy explicit/all)."""
    if consumer_seq <= state.ack_floor.consumer_seq:
        return  # an old replay
    if stream_seq <= state.delivered.stream_seq:
        pending = state.pending.get(stream_seq)
        if pending is not None:
            pending.timestamp = ts  # keep the original delivery's consumer seq
    else:
        state.pending[stream_seq] = Pending(consumer_seq, ts)
    if consumer_seq > state.delivered.consumer_seq:
        state.delivered.consumer_seq = consumer_seq
    if stream_seq > state.delivered.stream_seq:
        state.delivered.stream_seq = stream_seq
    if delivery_count > 1 and state.redelivered.get(stream_seq, 0) < delivery_count:
        state.redelivered[stream_seq] = delivery_count


def apply_ack(state: ConsumerState, consumer_seq: int, stream_seq: int) -> None:
    """nats-server `consumerFileStore.UpdateAcks`: drop the pending entry, move the ack floor."""
    if stream_seq not in state.pending:
        return
    del state.pending[stream_seq]
    state.redelivered.pop(stream_seq, None)
    if not state.pending:
        state.ack_floor = SequencePair(state.delivered.consumer_seq, state.delivered.stream_seq)
    elif consumer_seq == state.ack_floor.consumer_seq + 1:
        state.ack_floor = SequencePair(consumer_seq, stream_seq)
        # the floor moves up to just below the oldest still-pending message
        oldest = min(state.pending)
        pending = state.pending[oldest]
        if pending.consumer_seq > 0:
            state.ack_floor = SequencePair(pending.consumer_seq - 1, oldest - 1)


def copy_state(state: ConsumerState) -> ConsumerState:
    return ConsumerState(
        delivered=SequencePair(state.delivered.consumer_seq, state.delivered.stream_seq),
        ack_floor=SequencePair(state.ack_floor.consumer_seq, state.ack_floor.stream_seq),
        pending={k: Pending(p.consumer_seq, p.timestamp) for k, p in state.pending.items()},
        redelivered=dict(state.redelivered),
    )
