"""The Raft log on disk (jsedge/cluster/wal.py), against real files in tmp dirs: round trips through
close/reopen, truncation (clean, crash, lost marker), compaction and segment deletion, hard state,
group commit, simulated power loss (every file cut to its last fsynced length, files whose directory
entry was never fsynced removed), interrupted segment deletion, bit flips and torn tails, reads back
from disk, and a hypothesis state machine against an in-memory model of what was acknowledged."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from jsedge.cluster.types import ENTRY_NOOP, ENTRY_NORMAL, ENTRY_PEERS, Entry, HardState, Ready, SnapshotMeta
from jsedge.cluster.wal import CODE_TRUNCATE, CompactedError, LogClosedError, LogCorruptError, RaftLog
from jsedge.store import codec
from jsedge.store._sync import SYNCER

pytestmark = pytest.mark.timeout(180)

PEERS = ("aaaaaaaa", "bbbbbbbb", "cccccccc")


class Disk:
    """Remembers the fsynced length of every file (`on_synced`, called from the fsync thread);
    `power_loss` cuts each file to it and removes the files never fsynced (their directory entry was
    not either: a round fsyncs files, then directories)."""

    def __init__(self) -> None:
        self.synced: dict[str, int] = {}

    def on_synced(self, path: str, length: int) -> None:
        self.synced[path] = max(self.synced.get(path, 0), length)

    def power_loss(self, directory: Path, rng: random.Random | None = None) -> None:
        for path in sorted(directory.glob("*.wal")):
            keep = self.synced.get(str(path))
            if keep is None:
                path.unlink()
                continue
            os.truncate(path, keep)
            if rng is not None and rng.random() < 0.5:  # garbage where unsynced pages were
                with open(path, "ab") as f:
                    f.write(rng.randbytes(rng.randint(1, 40)))


def open_log(directory: Path, lines: list[str] | None = None, **kw: Any) -> RaftLog:
    return RaftLog.open(directory, log=(lines.append if lines is not None else None), **kw)


def entries(first: int, last: int, term: int, size: int = 20, tag: bytes = b"") -> list[Entry]:
    return [Entry(term, i, ENTRY_NORMAL, tag + b"%d-" % i + b"x" * size) for i in range(first, last + 1)]


def state(log: RaftLog) -> tuple[object, ...]:
    return (log.hard_state, log.snapshot, log.snapshot_data, log.first_index, log.last_index, log.entries)


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wal"))


def records(path: Path) -> list[tuple[int, int, bytes]]:
    """(offset, length, body) of every record of a segment file."""
    data = path.read_bytes()
    found, _, _ = codec.scan(data, 0, 0)
    out = []
    for r in range(0, len(found), codec.FIELDS):
        off, rec_len, data_len = found[r + codec.F_OFFSET], found[r + codec.F_LEN], found[r + codec.F_DATA_LEN]
        out.append((off, rec_len, data[off + rec_len - 4 - data_len : off + rec_len - 4]))
    return out


# ---------------------------------------------------------------------------- round trips


async def test_round_trip_through_close_and_reopen(tmp_path: Path) -> None:
    directory = tmp_path / "jetstream" / "$SYS" / "_js_" / "S-R3F-abcdefgh"  # created with its parents
    log = open_log(directory)
    assert state(log) == (HardState(0, ""), None, b"", 1, 0, [])
    assert log.term(0) == 0 and log.entry(1) is None
    written = [
        Entry(1, 1, ENTRY_NOOP, b""),
        Entry(1, 2, ENTRY_PEERS, b"aaaaaaaa,bbbbbbbb"),
        *entries(3, 300, 1),
        Entry(2, 301, ENTRY_NOOP, b""),
        *entries(302, 400, 7, size=3000),  # a term jump, entries larger than the cache
    ]
    log.append(written)
    log.set_hard_state(HardState(7, "bbbbbbbb"))
    await log.sync()
    assert log.entries == written
    before = state(log)
    log.close()
    again = open_log(directory)
    assert state(again) == before
    assert again.entries == written
    assert again.last_term == 7 and again.term(301) == 2 and again.term(401) is None
    again.append(entries(401, 410, 8))
    again.close()
    third = open_log(directory)
    assert third.entries == written + entries(401, 410, 8)
    assert third.statistics().recovered_corrupt == 0
    third.close()


async def test_write_ready_persists_in_order(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g")
    log.append(entries(1, 10, 1))
    ready = Ready(hard_state=HardState(3, "cccccccc"), truncate_from=8, entries=entries(8, 12, 3))
    assert log.write_ready(ready) == (12, 3)
    await log.sync()
    snap = Ready(snapshot=SnapshotMeta(50, 4, PEERS), snapshot_data=b"state", entries=entries(51, 52, 4))
    assert log.write_ready(snap) == (52, 4)
    await log.sync()
    log.close()
    again = open_log(tmp_path / "g")
    assert again.hard_state == HardState(3, "cccccccc")
    assert again.snapshot == SnapshotMeta(50, 4, PEERS) and again.snapshot_data == b"state"
    assert again.entries == entries(51, 52, 4)
    again.close()


def test_invalid_writes_are_refused(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g")
    log.append(entries(1, 5, 1))
    with pytest.raises(ValueError):
        log.append(entries(7, 7, 1))  # a gap
    with pytest.raises(ValueError):
        log.append([Entry(1, 6, 5, b"")])  # kind out of range
    log.compact(SnapshotMeta(3, 1, PEERS), b"")
    with pytest.raises(ValueError):
        log.truncate_from(3)  # compacted
    with pytest.raises(ValueError):
        log.append(entries(2, 2, 1))
    with pytest.raises(CompactedError):
        log.entries_from(3)
    log.compact(SnapshotMeta(2, 1, PEERS), b"older")  # behind the snapshot: a no-op
    assert log.snapshot == SnapshotMeta(3, 1, PEERS)
    log.truncate_from(99)  # beyond the end: nothing to drop
    assert log.last_index == 5
    log.close()
    with pytest.raises(LogClosedError):
        log.append(entries(6, 6, 1))


async def test_appending_over_the_tail_truncates_it(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g")
    log.append(entries(1, 10, 1))
    log.append(entries(7, 8, 2))  # a follower handed entries that conflict from 7 on
    assert log.entries == entries(1, 6, 1) + entries(7, 8, 2)
    log.close()
    again = open_log(tmp_path / "g")
    assert again.entries == entries(1, 6, 1) + entries(7, 8, 2)
    again.close()


async def test_sync_blocking_and_close_resolve_pending_syncs(tmp_path: Path) -> None:
    disk = Disk()
    log = open_log(tmp_path / "g", on_synced=disk.on_synced)
    log.append(entries(1, 5, 1))
    log.sync_blocking()
    assert disk.synced and log.statistics().last_index == 5
    log.append(entries(6, 9, 1))
    pending = log.sync()
    log.close()  # fsyncs in place; the pending future resolves (here or in the fsync thread)
    await asyncio.wait_for(pending, 5)
    log._drop()
    disk.power_loss(tmp_path / "g")
    again = open_log(tmp_path / "g")
    assert again.entries == entries(1, 9, 1)
    again.close()


async def test_large_snapshots_and_entries(tmp_path: Path) -> None:
    disk = Disk()
    log = open_log(tmp_path / "g", on_synced=disk.on_synced, segment_size=64 * 1024)
    big = bytes(range(256)) * 1024  # 256 KiB: several flushes of the write buffer
    log.append([Entry(1, 1, ENTRY_NORMAL, big), Entry(1, 2, ENTRY_NORMAL, big[:1000])])
    log.install_snapshot(SnapshotMeta(10, 2, PEERS), big + b"s")
    log.append([Entry(2, 11, ENTRY_NORMAL, big)])
    await log.sync()
    log._drop()
    disk.power_loss(tmp_path / "g")
    again = open_log(tmp_path / "g", segment_size=64 * 1024)
    assert again.snapshot_data == big + b"s" and again.entries == [Entry(2, 11, ENTRY_NORMAL, big)]
    again.close()


async def test_malformed_records_with_valid_checksums_are_skipped(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g")
    log.append(entries(1, 3, 1))
    log.close()
    (path,) = segment_files(tmp_path / "g")
    extra = bytearray()
    codec.encode_blob(extra, b"\x07\xff")  # a SNAPSHOT body cut short
    codec.encode_tombstone(extra, 5)  # a stream-store record kind
    codec.encode_blob(extra, b"")  # an empty body
    with open(path, "ab") as f:
        f.write(bytes(extra))
    lines: list[str] = []
    again = open_log(tmp_path / "g", lines)
    again.append(entries(4, 4, 1))
    assert again.entries == entries(1, 4, 1)
    assert sum("malformed" in line or "unexpected" in line for line in lines) == 3
    assert again.statistics().recovered_corrupt == 3
    again.close()


# ---------------------------------------------------------------------------- truncation


async def test_truncate_then_append_survives_reopen_and_power_loss(tmp_path: Path) -> None:
    disk = Disk()
    directory = tmp_path / "g"
    log = open_log(directory, on_synced=disk.on_synced)
    log.append(entries(1, 10, 1))
    await log.sync()
    log.truncate_from(6)
    log.append(entries(6, 8, 2, tag=b"new"))
    await log.sync()
    expected = entries(1, 5, 1) + entries(6, 8, 2, tag=b"new")
    assert log.entries == expected
    log.append(entries(9, 12, 2))  # never synced
    log._drop()
    disk.power_loss(directory)
    again = open_log(directory, on_synced=disk.on_synced)
    assert again.entries == expected
    again.close()


async def test_truncation_alone_is_durable(tmp_path: Path) -> None:
    disk = Disk()
    log = open_log(tmp_path / "g", on_synced=disk.on_synced)
    log.append(entries(1, 10, 1))
    await log.sync()
    log.truncate_from(4)
    await log.sync()
    log._drop()
    disk.power_loss(tmp_path / "g")
    again = open_log(tmp_path / "g")
    assert again.entries == entries(1, 3, 1)
    again.close()


async def test_a_lost_truncate_marker_does_not_resurrect_truncated_entries(tmp_path: Path) -> None:
    lines: list[str] = []
    log = open_log(tmp_path / "g")
    log.append(entries(1, 10, 1))
    log.truncate_from(6)
    log.append(entries(6, 7, 2, tag=b"new"))
    log.close()
    (path,) = segment_files(tmp_path / "g")
    marker = [(off, n) for off, n, body in records(path) if body[0] & 7 == CODE_TRUNCATE]
    assert len(marker) == 1
    data = bytearray(path.read_bytes())
    data[marker[0][0] + 2] ^= 0x40  # corrupt the marker record
    path.write_bytes(data)
    again = open_log(tmp_path / "g", lines)
    # the entries written after the marker truncate implicitly; 8..10 of term 1 stay gone
    assert again.entries == entries(1, 5, 1) + entries(6, 7, 2, tag=b"new")
    assert any("corrupt" in line for line in lines)
    again.close()


async def test_truncation_below_the_active_segment_starts_a_new_one(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g", segment_size=400)
    log.append(entries(1, 60, 1))
    segments = len(segment_files(tmp_path / "g"))
    log.truncate_from(5)
    assert len(segment_files(tmp_path / "g")) == segments + 1
    log.append(entries(5, 20, 3))
    await log.sync()
    log.close()
    again = open_log(tmp_path / "g", segment_size=400)
    assert again.entries == entries(1, 4, 1) + entries(5, 20, 3)
    again.close()


# ---------------------------------------------------------------------------- compaction


async def test_compaction_deletes_old_segments_after_the_snapshot_is_durable(tmp_path: Path) -> None:
    disk = Disk()
    directory = tmp_path / "g"
    log = open_log(directory, on_synced=disk.on_synced, segment_size=1024)
    log.append(entries(1, 200, 1))
    await log.sync()
    files_before = segment_files(directory)
    assert len(files_before) > 5
    log.compact(SnapshotMeta(150, 1, PEERS), b"applied up to 150")
    assert log.first_index == 151 and log.entry(150) is None and log.term(150) == 1
    assert segment_files(directory) == files_before  # nothing deleted before the snapshot is durable
    log.append(entries(201, 210, 1))
    await log.sync()
    files_after = segment_files(directory)
    assert len(files_after) < len(files_before) - 3
    assert all(path in files_before or path not in files_before for path in files_after)
    assert log.entries == entries(151, 210, 1)
    log._drop()
    disk.power_loss(directory)
    again = open_log(directory, segment_size=1024)
    assert again.snapshot == SnapshotMeta(150, 1, PEERS) and again.snapshot_data == b"applied up to 150"
    assert again.entries == entries(151, 210, 1)
    # compacting everything leaves the newest segments only
    again.compact(SnapshotMeta(210, 1, PEERS), b"all")
    again.append(entries(211, 260, 1))
    await again.sync()
    again.compact(SnapshotMeta(260, 1, PEERS), b"all")
    await again.sync()
    assert len(segment_files(directory)) <= 2
    assert again.entries == [] and again.first_index == 261
    again.close()
    third = open_log(directory, segment_size=1024)
    assert third.snapshot == SnapshotMeta(260, 1, PEERS) and third.entries == []
    assert third.last_index == 260 and third.last_term == 1
    third.close()


async def test_append_sync_compact_cycles_keep_the_log_small_on_disk(tmp_path: Path) -> None:
    directory = tmp_path / "g"
    log = open_log(directory)  # default 4 MiB segments
    index = 0
    for _ in range(60):  # 60 x 100 KiB
        log.append(entries(index + 1, index + 100, 1, size=1000))
        index += 100
        await log.sync()
        log.compact(SnapshotMeta(index, 1, PEERS), b"applied")
        await log.sync()
        on_disk = sum(path.stat().st_size for path in segment_files(directory))
        assert on_disk < 512 * 1024 and len(segment_files(directory)) <= 2
    assert log.bytes_written < 60 * 100 * 1020 + 60 * 100  # each entry written once, plus small records
    log.close()
    again = open_log(directory)
    assert again.snapshot == SnapshotMeta(index, 1, PEERS) and again.entries == []
    again.close()


async def test_only_the_newest_compaction_between_syncs_is_written(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g")
    log.append(entries(1, 100, 1))
    await log.sync()
    written = log.bytes_written
    for i in range(1, 101):
        log.compact(SnapshotMeta(i, 1, PEERS), b"s" * 100)
    await log.sync()
    assert log.bytes_written - written < 200  # one SNAPSHOT record, not a hundred
    log.close()
    again = open_log(tmp_path / "g")
    assert again.snapshot == SnapshotMeta(100, 1, PEERS) and again.entries == []
    again.close()


async def test_compaction_beyond_the_log_and_install_replace_it(tmp_path: Path) -> None:
    disk = Disk()
    log = open_log(tmp_path / "g", on_synced=disk.on_synced, segment_size=512)
    log.append(entries(1, 40, 1))
    log.compact(SnapshotMeta(60, 2, PEERS), b"ahead")  # the log does not reach 60: emptied
    assert log.entries == [] and log.last_index == 60 and log.last_term == 2
    log.append(entries(61, 70, 2))
    await log.sync()
    log.install_snapshot(SnapshotMeta(65, 3, PEERS[:2]), b"installed")  # drops 66..70 too
    assert log.entries == [] and log.last_index == 65
    log.append(entries(66, 68, 3))
    await log.sync()
    log._drop()
    disk.power_loss(tmp_path / "g")
    again = open_log(tmp_path / "g", segment_size=512)
    assert again.snapshot == SnapshotMeta(65, 3, PEERS[:2]) and again.snapshot_data == b"installed"
    assert again.entries == entries(66, 68, 3)
    again.close()


async def test_a_killed_process_leaves_nothing_to_lose_on_a_later_power_loss(tmp_path: Path) -> None:
    """kill -9: the page cache keeps unsynced writes, so open sees them (here a compaction that makes
    old segments deletable). Nothing is deleted before the first round has made them durable, so a
    power loss right after the restart still finds what was acknowledged."""
    directory = tmp_path / "g"
    disk = Disk()
    log = open_log(directory, on_synced=disk.on_synced, segment_size=512)
    log.append(entries(1, 100, 1))
    await log.sync()
    acked = state(log)
    log.compact(SnapshotMeta(95, 1, PEERS), b"s")
    log.append(entries(101, 130, 1))  # rotates: the snapshot record reaches the new segment's file
    log._drop()  # killed: written pages stay in the page cache, nothing was fsynced
    files = segment_files(directory)
    restarted = open_log(directory, on_synced=disk.on_synced, segment_size=512)
    assert restarted.snapshot == SnapshotMeta(95, 1, PEERS)
    assert segment_files(directory) == files  # deletions wait for the first round
    restarted._drop()
    disk.power_loss(directory)
    again = open_log(directory, on_synced=disk.on_synced, segment_size=512)
    assert state(again) == acked
    # and once a round ran after a restart, what open saw is durable
    again.compact(SnapshotMeta(95, 1, PEERS), b"s")
    again.append(entries(101, 130, 1))
    again._drop()
    restarted = open_log(directory, on_synced=disk.on_synced, segment_size=512)
    seen = state(restarted)
    await restarted.sync()
    restarted._drop()
    disk.power_loss(directory)
    final = open_log(directory, segment_size=512)
    assert state(final) == seen
    final.close()


async def test_an_interrupted_segment_deletion_leaves_harmless_leftovers(tmp_path: Path) -> None:
    directory = tmp_path / "g"
    saved = tmp_path / "saved"
    log = open_log(directory, segment_size=512)
    log.append(entries(1, 100, 1))
    await log.sync()
    shutil.copytree(directory, saved)
    log.compact(SnapshotMeta(90, 1, PEERS), b"s")
    log.append(entries(101, 105, 1))
    await log.sync()
    expected = state(log)
    log.close()
    deleted = sorted(set(os.listdir(saved)) - set(os.listdir(directory)))
    assert len(deleted) >= 3
    # every subset of the unlinks may have reached the disk: restore some of the deleted files
    rng = random.Random(5)
    for trial in range(6):
        work = tmp_path / f"w{trial}"
        shutil.copytree(directory, work)
        for name in deleted:
            if trial == 0 or rng.random() < 0.5:
                shutil.copy(saved / name, work / name)
        lines: list[str] = []
        again = open_log(work, lines, segment_size=512)
        assert state(again) == expected
        await again.sync()  # the leftovers go once the recovered state is durable
        assert sorted(os.listdir(work)) == sorted(os.listdir(directory))
        again.close()


async def test_leftovers_keep_the_hard_state_when_the_rest_lost_every_state_record(tmp_path: Path) -> None:
    directory = tmp_path / "g"
    saved = tmp_path / "saved"
    log = open_log(directory, segment_size=512)
    log.set_hard_state(HardState(6, "bbbbbbbb"))
    log.append(entries(1, 100, 6))
    await log.sync()
    shutil.copytree(directory, saved)
    log.compact(SnapshotMeta(90, 6, PEERS), b"s")
    await log.sync()
    log.close()
    deleted = sorted(set(os.listdir(saved)) - set(os.listdir(directory)))
    assert len(deleted) >= 2
    for path in segment_files(directory):
        data = bytearray(path.read_bytes())
        for off, _, body in records(path):
            if body[0] & 7 == 6:  # STATE
                data[off + 3] ^= 0x10
        path.write_bytes(bytes(data))
    shutil.copy(saved / deleted[0], directory / deleted[0])  # the oldest unlink did not reach the disk
    lines: list[str] = []
    again = open_log(directory, lines, segment_size=512)
    assert again.hard_state == HardState(6, "bbbbbbbb")
    assert again.snapshot == SnapshotMeta(90, 6, PEERS) and again.entries == entries(91, 100, 6)
    assert any("left over" in line for line in lines)
    again.close()


async def test_segments_after_a_gap_that_were_never_synced_are_dropped(tmp_path: Path) -> None:
    """A newer segment can reach the disk without an older one only when no round ever synced it
    (a round fsyncs the directory): the segments before the gap are the log."""
    directory = tmp_path / "g"
    disk = Disk()
    log = open_log(directory, segment_size=512, on_synced=disk.on_synced)
    log.append(entries(1, 60, 1))
    log.set_hard_state(HardState(1, "aaaaaaaa"))
    await log.sync()
    expected = state(log)
    files = segment_files(directory)
    log.append(entries(61, 200, 2))  # several new segments, never synced
    log._drop()
    new = [path for path in segment_files(directory) if path not in files]
    assert len(new) >= 3
    new[0].unlink()  # the first new one did not reach the disk, later ones did
    for path in files:
        os.truncate(path, disk.synced[str(path)])
    lines: list[str] = []
    again = open_log(directory, lines, segment_size=512)
    assert state(again) == expected
    assert any("do not stand alone" in line for line in lines)
    await again.sync()
    assert segment_files(directory) == files
    again.append(entries(61, 62, 2))
    again.close()
    third = open_log(directory, segment_size=512)
    assert third.entries == expected[-1] + entries(61, 62, 2)  # type: ignore[operator]
    third.close()


# ---------------------------------------------------------------------------- hard state


async def test_hard_state_and_entries_are_durable_together(tmp_path: Path) -> None:
    disk = Disk()
    log = open_log(tmp_path / "g", on_synced=disk.on_synced)
    log.set_hard_state(HardState(1, ""))
    log.set_hard_state(HardState(2, "aaaaaaaa"))
    log.append(entries(1, 3, 2))
    await log.sync()
    log.set_hard_state(HardState(3, "bbbbbbbb"))  # never synced
    log._drop()
    disk.power_loss(tmp_path / "g")
    again = open_log(tmp_path / "g", on_synced=disk.on_synced)
    assert again.hard_state == HardState(2, "aaaaaaaa") and again.entries == entries(1, 3, 2)
    again.set_hard_state(HardState(3, "bbbbbbbb"))
    await again.sync()
    again._drop()
    disk.power_loss(tmp_path / "g")
    third = open_log(tmp_path / "g")
    assert third.hard_state == HardState(3, "bbbbbbbb")
    third.close()


async def test_hard_state_survives_the_deletion_of_the_segment_that_first_held_it(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g", segment_size=256)
    log.set_hard_state(HardState(4, "cccccccc"))
    log.append(entries(1, 100, 4))
    await log.sync()
    log.compact(SnapshotMeta(100, 4, PEERS), b"")
    log.append(entries(101, 110, 4))
    await log.sync()
    log.close()
    again = open_log(tmp_path / "g", segment_size=256)
    assert again.hard_state == HardState(4, "cccccccc")
    assert again.entries == entries(101, 110, 4)
    again.close()


# ---------------------------------------------------------------------------- group commit


async def test_group_commit_few_rounds_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync

    def slow_fsync(fd: int) -> None:  # an SD card's fsync, not a fast SSD's: rounds are timing-bound
        time.sleep(0.002)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    log = open_log(tmp_path / "g")
    rounds = SYNCER.rounds
    done: list[int] = []

    async def writer(index: int) -> None:
        log.append([Entry(1, index, ENTRY_NORMAL, b"m%d" % index)])
        await log.sync()
        done.append(index)

    await asyncio.gather(*(writer(i) for i in range(1, 1001)))
    assert done == list(range(1, 1001))  # rounds complete in order
    assert SYNCER.rounds - rounds <= 100  # 1000 syncs, at least 10 per fsync round
    # a sync with nothing new to write resolves at once
    await log.sync()
    rounds = SYNCER.rounds
    await log.sync()
    assert SYNCER.rounds == rounds
    # writes during a round go into the next one; futures still resolve in call order
    order: list[int] = []
    futures = []
    for k in range(50):
        log.append([Entry(1, 1001 + k, ENTRY_NORMAL, b"x")])
        fut = log.sync()
        fut.add_done_callback(functools.partial(lambda k, _: order.append(k), k))
        futures.append(fut)
        if k % 10 == 0:
            await asyncio.sleep(0)
    await asyncio.gather(*futures)
    assert order == list(range(50))
    log.close()


async def test_fsync_failure_fails_the_round_and_every_later_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    log = open_log(tmp_path / "g", lines)
    log.append(entries(1, 3, 1))
    await log.sync()

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "injected")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    log.append(entries(4, 4, 1))
    with pytest.raises(OSError):
        await log.sync()
    monkeypatch.undo()
    log.append(entries(5, 5, 1))
    with pytest.raises(OSError):
        await log.sync()  # the page cache may have dropped what failed: the log is done
    assert any("fsync failed" in line for line in lines)
    log.close()


async def test_delete_removes_the_directory(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g")
    log.append(entries(1, 3, 1))
    await log.sync()
    log.delete()
    assert not (tmp_path / "g").exists()
    with pytest.raises(LogClosedError):
        await log.sync()


# ---------------------------------------------------------------------------- power loss


async def test_power_loss_keeps_everything_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(11)
    directory = tmp_path / "g"
    disk = Disk()
    kw: dict[str, Any] = {"segment_size": 700, "segment_entries": 20, "cache_bytes": 500}
    log = open_log(directory, on_synced=disk.on_synced, **kw)
    for crash in range(25):
        acked = state(log)
        for _ in range(rng.randint(1, 12)):
            op = rng.random()
            if op < 0.55 or not log.entries:
                term = log.last_term + (rng.random() < 0.1)
                log.append(entries(log.last_index + 1, log.last_index + rng.randint(1, 15), term, rng.randint(0, 90)))
            elif op < 0.7:
                log.truncate_from(rng.randint(log.first_index, log.last_index))
            elif op < 0.85:
                i = rng.randint(log.first_index, log.last_index)
                log.compact(SnapshotMeta(i, log.term(i) or 0, PEERS), rng.randbytes(rng.randint(0, 30)))
            else:
                hs = log.hard_state
                log.set_hard_state(HardState(hs.term + rng.randint(0, 1), rng.choice(("", *PEERS))))
            if rng.random() < 0.4:
                await log.sync()
                acked = state(log)
        log._drop()
        disk.power_loss(directory, rng)
        log = open_log(directory, on_synced=disk.on_synced, **kw)
        assert state(log) == acked, crash
    log.close()


async def test_power_loss_with_unsynced_pages_partly_on_disk(tmp_path: Path) -> None:
    """Unsynced pages may or may not reach the disk, in any file, with holes: what was acknowledged
    stays (unless truncated since), and everything recovered (entries, hard state, snapshot) is
    what the log held at some point since the last acknowledged sync -- nothing stale, nothing
    corrupt, never an exception."""
    rng = random.Random(23)
    for trial in range(60):
        directory = tmp_path / f"g{trial}"
        disk = Disk()
        kw: dict[str, Any] = {"segment_size": 600, "segment_entries": 16}
        log = open_log(directory, on_synced=disk.on_synced, **kw)
        full: dict[int, Entry] = {}  # every entry appended and not truncated since (compacted ones too)
        acked_log: dict[int, Entry] = {}
        history: list[tuple[HardState, SnapshotMeta | None, dict[int, Entry]]] = [(log.hard_state, None, {})]
        term = 1
        for _ in range(rng.randint(3, 16)):
            op = rng.random()
            if op < 0.5 or not log.entries:
                batch = entries(log.last_index + 1, log.last_index + rng.randint(1, 20), term, tag=b"t%d" % trial)
                log.append(batch)
                full.update((e.index, e) for e in batch)
            elif op < 0.65:
                index = rng.randint(log.first_index, log.last_index)
                log.truncate_from(index)
                full = {i: e for i, e in full.items() if i < index}
                term += 1
            elif op < 0.8:
                index = rng.randint(log.first_index, log.last_index)
                log.compact(SnapshotMeta(index, log.term(index) or 0, PEERS), b"s%d" % index)
            else:
                log.set_hard_state(HardState(log.hard_state.term + 1, rng.choice(PEERS)))
            if rng.random() < 0.3:
                await log.sync()
                acked_log = {e.index: e for e in log.entries}
                history = []
            history.append((log.hard_state, log.snapshot, dict(full)))
        log._drop()
        for path in segment_files(directory):
            size = path.stat().st_size
            keep = disk.synced.get(str(path))
            if keep is None and rng.random() < 0.5:
                path.unlink()
                continue
            keep = keep or 0
            os.truncate(path, rng.randint(keep, size))  # some unsynced pages made it
            if rng.random() < 0.3:  # and some pages in between did not
                data = bytearray(path.read_bytes())
                hole = rng.randint(keep, max(keep, len(data) - 1))
                end = min(len(data), hole + rng.randint(1, 64))
                data[hole:end] = bytes(end - hole)
                path.write_bytes(bytes(data))
        again = open_log(directory, **kw)
        assert any(again.hard_state == h[0] for h in history), trial
        assert any(again.snapshot == h[1] for h in history), trial
        got = {e.index: e for e in again.entries}
        assert list(got) == list(range(again.first_index, again.last_index + 1))
        for index, e in got.items():  # nothing stale or corrupt
            assert any(h[2].get(index) == e for h in history), (trial, index)
        floor = again.first_index - 1
        for index, e in acked_log.items():  # acknowledged and never truncated since: still there
            if index > floor and all(h[2].get(index) == e for h in history):
                assert got.get(index) == e, (trial, index)
        again.close()


# ---------------------------------------------------------------------------- corruption


async def build_sample(directory: Path) -> tuple[set[Entry], set[HardState], set[SnapshotMeta]]:
    """A log over several segments with truncations, compactions and hard states (all it ever held)."""
    rng = random.Random(7)
    log = open_log(directory, segment_size=900, segment_entries=24)
    written: set[Entry] = set()
    states: set[HardState] = {HardState(0, "")}
    snaps: set[SnapshotMeta] = set()
    term = 1
    for step in range(60):
        batch = entries(log.last_index + 1, log.last_index + rng.randint(1, 8), term, rng.randint(0, 60), b"%d" % step)
        log.append(batch)
        written.update(batch)
        if step % 9 == 4:
            term += 1
            hs = HardState(term, rng.choice(PEERS))
            log.set_hard_state(hs)
            states.add(hs)
            log.truncate_from(log.last_index - rng.randint(0, 3))
        if step % 13 == 12:
            i = log.last_index - 10
            meta = SnapshotMeta(i, log.term(i) or 0, PEERS)
            log.compact(meta, b"snap%d" % i)
            snaps.add(meta)
        await log.sync()
    log.close()
    return written, states, snaps


async def test_random_bit_flips_never_raise_nor_return_corrupt_entries(tmp_path: Path) -> None:
    source = tmp_path / "src"
    written, states, snaps = await build_sample(source)
    rng = random.Random(13)
    files = segment_files(source)
    for trial in range(80):
        work = tmp_path / f"w{trial}"
        shutil.copytree(source, work)
        for _ in range(rng.randint(1, 4)):
            path = work / rng.choice(files).name
            data = bytearray(path.read_bytes())
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            path.write_bytes(bytes(data))
        lines: list[str] = []
        log = open_log(work, lines, segment_size=900, segment_entries=24)
        got = log.entries
        assert all(e in written for e in got), trial
        assert [e.index for e in got] == list(range(log.first_index, log.last_index + 1))
        assert log.hard_state in states and (log.snapshot is None or log.snapshot in snaps)
        assert lines, trial  # every flip hits a record: it is reported
        log.close()
        shutil.rmtree(work)


async def test_torn_tail_at_every_offset(tmp_path: Path) -> None:
    source = tmp_path / "src"
    log = open_log(source, segment_size=1 << 20)
    log.set_hard_state(HardState(2, "aaaaaaaa"))
    log.append(entries(1, 12, 2, size=7))
    log.compact(SnapshotMeta(3, 2, PEERS), b"s")
    log.truncate_from(11)
    log.append(entries(11, 14, 3))
    log.close()
    (path,) = segment_files(source)
    full = path.read_bytes()
    final = entries(4, 10, 2, size=7) + entries(11, 14, 3)
    for cut in range(len(full)):
        work = tmp_path / "w"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        (work / path.name).write_bytes(full[:cut])
        lines: list[str] = []
        again = open_log(work, lines)
        got = again.entries
        assert all(e in final or e in entries(1, 12, 2, size=7) for e in got)
        assert [e.index for e in got] == list(range(again.first_index, again.last_index + 1))
        again.append([Entry(9, again.last_index + 1, ENTRY_NORMAL, b"after")])  # writable after the cut
        again.close()
        reread = open_log(work)
        assert reread.entries[-1] == Entry(9, again.last_index, ENTRY_NORMAL, b"after")
        reread.close()
    again = open_log(source)
    assert again.entries == final and again.hard_state == HardState(2, "aaaaaaaa")
    again.close()


async def test_entries_beyond_the_cache_are_read_back_from_disk(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g", segment_size=2048, cache_bytes=1000)
    written = entries(1, 400, 1, size=50)
    log.append(written)
    stats = log.statistics()
    assert stats.cached_bytes <= 1000 and stats.cached_entries < 10
    assert log.entries_from(1) == written  # partly from unflushed buffers: written out first
    assert log.entries_from(100, max_count=7) == written[99:106]
    assert len(log.entries_from(100, max_bytes=1)) == 1
    assert len(log.entries_from(100, max_bytes=700)) == 11  # 54 B of data + 9 B of framing each
    assert log.entries_from(401) == [] and log.entry(250) == written[249]
    await log.sync()
    # the disk changes under a running log: a read reports it instead of returning bad data
    victim = segment_files(tmp_path / "g")[2]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError):
        log.entries_from(1)
    log.close()


async def test_framing_bytes_per_entry(tmp_path: Path) -> None:
    log = open_log(tmp_path / "g")
    count = 20000
    log.append([Entry(5, i, ENTRY_NORMAL, bytes(128)) for i in range(1, count + 1)])
    await log.sync()
    per_entry = log.bytes_written / count - 128
    assert per_entry <= 10.1, per_entry  # tag 1, length 2, head 1, index delta <= 2, CRC 4
    log.close()


# ---------------------------------------------------------------------------- model-based


@dataclass
class Model:
    hs: HardState = HardState(0, "")
    snap: SnapshotMeta | None = None
    data: bytes = b""
    log: list[Entry] = field(default_factory=list)

    @property
    def floor(self) -> int:
        return self.snap.index if self.snap is not None else 0

    @property
    def last(self) -> int:
        return self.log[-1].index if self.log else self.floor

    @property
    def last_term(self) -> int:
        return self.log[-1].term if self.log else (self.snap.term if self.snap is not None else 0)


class WalMachine(RuleBasedStateMachine):
    """Random appends, truncations, compactions, installs, hard states and syncs; crash (power loss)
    and clean reopen. After a crash the log must be exactly what the last resolved sync acknowledged."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="wal-"))
        self.directory = self.root / "g"
        self.loop = asyncio.new_event_loop()
        self.disk = Disk()
        self.lines: list[str] = []
        self.model = Model()
        self.acked = Model()
        self.log = self.open()

    def open(self) -> RaftLog:
        return RaftLog.open(
            self.directory,
            log=self.lines.append,
            on_synced=self.disk.on_synced,
            segment_size=300,
            segment_entries=6,
            cache_bytes=250,
        )

    def teardown(self) -> None:
        self.log.close()
        self.loop.close()
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(count=st.integers(1, 8), bump=st.integers(0, 2), data=st.binary(max_size=60))
    def append(self, count: int, bump: int, data: bytes) -> None:
        m = self.model
        batch = [Entry(m.last_term + bump, m.last + 1 + k, k % 3, data + b"%d" % k) for k in range(count)]
        self.log.append(batch)
        m.log.extend(batch)

    @precondition(lambda self: self.model.log)
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        m = self.model
        index = data.draw(st.integers(m.floor + 1, m.last))
        self.log.truncate_from(index)
        del m.log[index - m.floor - 1 :]

    @precondition(lambda self: self.model.log)
    @rule(data=st.data(), blob=st.binary(max_size=40))
    def compact(self, data: st.DataObject, blob: bytes) -> None:
        m = self.model
        index = data.draw(st.integers(m.floor + 1, m.last))
        meta = SnapshotMeta(index, m.log[index - m.floor - 1].term, PEERS[: 1 + index % 3])
        self.log.compact(meta, blob)
        del m.log[: index - m.floor]
        m.snap, m.data = meta, blob

    @rule(ahead=st.integers(1, 5), blob=st.binary(max_size=40))
    def compact_beyond_the_end(self, ahead: int, blob: bytes) -> None:
        m = self.model
        meta = SnapshotMeta(m.last + ahead, m.last_term + 1, PEERS)
        self.log.compact(meta, blob)
        m.log, m.snap, m.data = [], meta, blob

    @rule(delta=st.integers(-10, 10), term=st.integers(1, 9), blob=st.binary(max_size=80))
    def install(self, delta: int, term: int, blob: bytes) -> None:
        m = self.model
        meta = SnapshotMeta(max(1, m.last + delta), term, PEERS[:2])
        self.log.install_snapshot(meta, blob)
        m.log, m.snap, m.data = [], meta, blob

    @rule(bump=st.integers(0, 2), vote=st.sampled_from(("", *PEERS)))
    def set_hard_state(self, bump: int, vote: str) -> None:
        hs = HardState(self.model.hs.term + bump, vote)
        self.log.set_hard_state(hs)
        self.model.hs = hs

    @rule()
    def sync(self) -> None:
        async def run() -> None:
            await self.log.sync()

        self.loop.run_until_complete(run())
        self.acked = replace(self.model, log=list(self.model.log))

    @rule(garbage=st.binary(max_size=30))
    def crash(self, garbage: bytes) -> None:
        self.log._drop()
        self.disk.power_loss(self.directory)
        if garbage:
            for path in segment_files(self.directory)[-1:]:
                with open(path, "ab") as f:
                    f.write(garbage)
        self.log = self.open()
        self.model = replace(self.acked, log=list(self.acked.log))
        self.check()

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = self.open()
        self.acked = replace(self.model, log=list(self.model.log))

    @invariant()
    def check(self) -> None:
        m, log = self.model, self.log
        assert (log.hard_state, log.snapshot, log.snapshot_data) == (m.hs, m.snap, m.data)
        assert (log.first_index, log.last_index, log.last_term) == (m.floor + 1, m.last, m.last_term)
        assert log.entries == m.log
        assert log.term(m.floor) == (m.snap.term if m.snap else 0)
        if m.log:
            middle = m.log[len(m.log) // 2]
            assert log.entry(middle.index) == middle
            assert log.entries_from(middle.index, max_count=3) == m.log[len(m.log) // 2 :][:3]


TestWalMachine = WalMachine.TestCase
TestWalMachine.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
