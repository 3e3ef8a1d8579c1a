"""File store recovery: clean and abrupt reopen, torn tails at every offset, single bit flips,
simulated power loss (files cut to their fsynced lengths), and the state that must survive a restart
(consumer state, tombstones, purges, TTLs). Real files in tmp_path, nothing mocked."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
from pathlib import Path

import pytest

from jsedge.store.base import ConsumerState, Pending, SequencePair, StoreConfig
from jsedge.store.filestore import FileStore

T0 = 1_700_000_000_000_000_000
SEC = 1_000_000_000
HDR = b"NATS/1.0\r\nNats-Msg-Id: x\r\n\r\n"


def open_store(directory: Path, block_size: int = 4096, **kw) -> FileStore:
    kw.setdefault("log", lambda text: None)
    config = kw.pop("config", StoreConfig(name="S"))
    return FileStore(directory, config, block_size=block_size, **kw)


def snapshot(store: FileStore) -> tuple:
    st = store.state(deleted_details=True, subjects_filter=b">")
    msgs = []
    seq = st.first_seq
    while True:
        msg = store.load_next_msg(b">", seq)
        if msg is None:
            break
        msgs.append(msg)
        seq = msg.seq + 1
    return st, msgs


def populate(store: FileStore, count: int = 60) -> None:
    for i in range(count):
        store.store_msg(b"sub.%d" % (i % 5), HDR if i % 3 == 0 else b"", b"payload-%d" % i * (i % 4 + 1), T0 + i * SEC)


def block_files(directory: Path) -> list[Path]:
    return sorted((directory / "msgs").glob("*.blk"))


async def _await_sync(store: FileStore) -> None:
    await asyncio.wait_for(store.sync(), 5)


def test_reopen_after_clean_close(tmp_path):
    store = open_store(tmp_path / "s")
    populate(store, 200)
    store.store_msg(b"ttl", b"", b"t", T0 + 500 * SEC, ttl_ns=30 * SEC)
    store.store_msg(b"never", b"", b"n", T0 + 501 * SEC, ttl_ns=-1)
    store.skip_msg(T0 + 502 * SEC)
    assert len(block_files(tmp_path / "s")) > 1  # rotation happened
    before = snapshot(store)
    expiry = store.next_expiry()
    store.close()
    again = open_store(tmp_path / "s")
    assert snapshot(again) == before
    assert again.next_expiry() == expiry
    assert again.state().last_ts == T0 + 502 * SEC
    assert again.store_msg(b"x", b"", b"", T0 + 600 * SEC) == 204
    assert again.recovered_corrupt == again.recovered_truncated == 0
    after = snapshot(again)
    again.close()
    third = open_store(tmp_path / "s")  # appending to a reopened block kept everything before it
    assert snapshot(third) == after and third.recovered_corrupt == 0
    third.close()


def test_reopen_after_abrupt_stop(tmp_path):
    store = open_store(tmp_path / "s")
    populate(store, 50)
    store.remove_msg(7)
    asyncio.run(_await_sync(store))
    before = snapshot(store)
    # no close(): the object is dropped with its descriptors still open, like a killed process
    again = open_store(tmp_path / "s")
    assert snapshot(again) == before
    again.close()


def test_torn_tail_every_offset(tmp_path):
    src = tmp_path / "src"
    store = open_store(src, block_size=1 << 20)
    for i in range(5):
        store.store_msg(b"a.b", HDR, b"data-%d" % i, T0 + i)
    last_start = store._off[4]
    store.close()
    (path,) = block_files(src)
    full = path.read_bytes()
    for cut in range(last_start, len(full)):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(src, work)
        os.truncate(block_files(work)[0], cut)
        again = open_store(work, block_size=1 << 20)
        st = again.state()
        assert (st.messages, st.last_seq) == (4, 4), cut
        assert [again.load_msg(s).data for s in range(1, 5)] == [b"data-%d" % i for i in range(4)]
        assert again.store_msg(b"a.b", b"", b"new", T0 + 10) == 5
        again.close()
        reread = open_store(work, block_size=1 << 20)
        assert reread.load_msg(5).data == b"new" and reread.recovered_truncated == 0
        reread.close()
        shutil.rmtree(work)


def test_every_single_bit_flip_detected(tmp_path):
    src = tmp_path / "src"
    store = open_store(src, block_size=1 << 20)
    for i in range(3):
        store.store_msg(b"s", b"", b"p%d" % i, T0 + i)
    start, end = store._off[1], store._off[2]
    store.close()
    (path,) = block_files(src)
    original = path.read_bytes()
    for byte in range(start, end):
        for bit in range(8):
            data = bytearray(original)
            data[byte] ^= 1 << bit
            path.write_bytes(data)
            logs: list[str] = []
            again = open_store(src, block_size=1 << 20, log=logs.append)
            assert again.load_msg(2) is None, (byte, bit)
            assert again.load_msg(1).data == b"p0" and again.load_msg(3).data == b"p2", (byte, bit)
            assert again.recovered_corrupt == 1 and logs, (byte, bit)
            again.close()
    path.write_bytes(original)


def test_random_flips_never_serve_corrupt_data(tmp_path):
    rng = random.Random(7)
    src = tmp_path / "s"
    store = open_store(src, block_size=1 << 20)
    payloads = {}
    for i in range(100):
        payload = rng.randbytes(rng.randint(0, 80))
        payloads[store.store_msg(b"r.%d" % (i % 3), b"", payload, T0 + i)] = payload
    store.close()
    (path,) = block_files(src)
    original = path.read_bytes()
    for _ in range(30):
        data = bytearray(original)
        flips = rng.randint(1, 4)
        for _ in range(flips):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(data)
        again = open_store(src, block_size=1 << 20)
        for seq, payload in payloads.items():
            msg = again.load_msg(seq)
            assert msg is None or msg.data == payload
        assert again.state().messages >= 100 - flips  # a flip costs at most its own record
        again.close()


async def test_power_loss_keeps_every_synced_record(tmp_path):
    rng = random.Random(3)
    synced: dict[str, int] = {}

    def on_synced(path: str, length: int) -> None:
        synced[path] = max(synced.get(path, 0), length)

    directory = tmp_path / "s"
    store = open_store(directory, block_size=2048, on_synced=on_synced)
    cs = store.consumer_store("C")
    acked: dict[int, bytes] = {}
    acked_consumer = ConsumerState()
    for round_ in range(40):
        batch = {}
        for _ in range(rng.randint(1, 5)):
            payload = rng.randbytes(rng.randint(1, 60))
            batch[store.store_msg(b"p.%d" % rng.randrange(4), b"", payload, T0 + round_)] = payload
        cs.update_delivered(round_ + 1, max(batch), 1, T0 + round_)
        if rng.random() < 0.7:
            await asyncio.wait_for(store.sync(), 5)
            acked.update(batch)
            acked_consumer = cs.state()
    # an unsynced tail: written to the files, never fsynced
    for _ in range(5):
        store.store_msg(b"p.x", b"", b"lost?", T0 + 99)
    store._flush_all()
    # power loss: every file falls back to its fsynced length, plus garbage where unsynced pages were
    for path in list((directory / "msgs").glob("*.blk")) + list((directory / "obs").rglob("*.log")):
        keep = synced.get(str(path))
        if keep is None:
            path.unlink()
            continue
        os.truncate(path, keep)
        if rng.random() < 0.5:
            with open(path, "ab") as f:
                f.write(rng.randbytes(rng.randint(1, 30)))
    again = open_store(directory, block_size=2048)
    for seq, payload in acked.items():
        msg = again.load_msg(seq)
        assert msg is not None and msg.data == payload, seq
    assert again.consumer_store("C").state().delivered.stream_seq >= acked_consumer.delivered.stream_seq
    again.close()


def test_consumer_state_survives(tmp_path):
    store = open_store(tmp_path / "s")
    cs = store.consumer_store("dur")
    cs.save_config(b'{"durable_name":"dur"}')
    for i in range(1, 3001):  # enough records to roll the log over several generations
        cs.update_delivered(i, i + 100, 1, T0 + i)
        if i % 3:
            cs.update_acks(i, i + 100)
    cs.update_delivered(3001, 3000 + 100, 2, T0 + 5000)
    expected = cs.state()
    store.close()
    again = open_store(tmp_path / "s")
    config, state = again.consumer_store("dur").load()
    assert config == b'{"durable_name":"dur"}'
    assert state == expected
    assert len(list((tmp_path / "s" / "obs" / "dur").glob("state.*.log"))) <= 2
    full = ConsumerState(SequencePair(9, 90), SequencePair(5, 50), {60: Pending(6, T0)}, {60: 2})
    again.consumer_store("dur").update(full)
    again.close()
    third = open_store(tmp_path / "s")
    assert third.consumer_store("dur").state() == full
    third.consumer_store("dur").delete()
    third.close()
    fourth = open_store(tmp_path / "s")
    assert fourth.consumer_store("dur").load() == (None, ConsumerState())
    fourth.close()


def test_consumer_sync_blocking_survives_an_abrupt_stop(tmp_path):
    """A replicated consumer's state written with `update()` (a snapshot from the Raft leader, or
    the state seeding a new group) is durable once `sync_blocking()` returns: the Raft log is told
    it is applied right after, so it is never applied again (the regression: acks lost when a
    server was killed just after installing a consumer snapshot)."""
    store = open_store(tmp_path / "s")
    cs = store.consumer_store("dur")
    cs.save_config(b'{"durable_name":"dur"}')
    full = ConsumerState(SequencePair(5, 5), SequencePair(5, 5), {}, {})
    cs.update(full)
    cs.sync_blocking()
    # no close(): dropped with its descriptors and buffers, like a killed process
    again = open_store(tmp_path / "s")
    assert again.consumer_store("dur").state() == full
    again.close()
    cs.delete()
    cs.sync_blocking()  # deleted: nothing to write, no error
    store.close()


def test_tombstones_survive_and_blocks_are_reaped(tmp_path):
    store = open_store(tmp_path / "s", block_size=1024)
    populate(store, 300)
    blocks_before = len(block_files(tmp_path / "s"))
    for seq in range(2, 301, 2):
        store.remove_msg(seq)
    for seq in range(1, 120, 2):  # empties the leading blocks completely
        store.remove_msg(seq)
    before = snapshot(store)
    assert len(block_files(tmp_path / "s")) < blocks_before
    store.close()
    again = open_store(tmp_path / "s", block_size=1024)
    assert snapshot(again) == before
    again.close()


def test_purge_survives(tmp_path):
    store = open_store(tmp_path / "s", block_size=1024)
    populate(store, 100)
    store.purge(b"sub.1")
    store.close()
    again = open_store(tmp_path / "s", block_size=1024)
    assert again.subjects_state(b"sub.1") == {}
    assert again.state().messages == 80
    again.purge()
    again.close()
    third = open_store(tmp_path / "s", block_size=1024)
    st = third.state()
    assert (st.messages, st.first_seq, st.last_seq, st.last_ts) == (0, 101, 100, T0 + 99 * SEC)
    assert len(block_files(tmp_path / "s")) == 1
    third.purge(seq=1000)
    third.close()
    fourth = open_store(tmp_path / "s", block_size=1024)
    st = fourth.state()
    assert (st.first_seq, st.last_seq) == (1000, 999)
    assert fourth.store_msg(b"a", b"", b"", T0 + 1000 * SEC) == 1000
    fourth.close()


def test_front_removals_by_limits_survive(tmp_path):
    store = open_store(tmp_path / "s", config=StoreConfig(name="S", max_msgs=10))
    populate(store, 50)
    asyncio.run(_await_sync(store))
    before = snapshot(store)
    again = open_store(tmp_path / "s", config=StoreConfig(name="S"))  # limits gone: nothing resurrects
    assert snapshot(again) == before
    again.close()


def test_limits_reapplied_on_open(tmp_path):
    store = open_store(tmp_path / "s")
    populate(store, 50)
    store.close()
    again = open_store(tmp_path / "s", config=StoreConfig(name="S", max_msgs=10))
    st = again.state()
    assert (st.messages, st.first_seq) == (10, 41)
    again.close()


def test_first_seq_and_skip_survive(tmp_path):
    store = open_store(tmp_path / "s", config=StoreConfig(name="S", first_seq=100))
    store.skip_msg(T0)
    store.close()
    again = open_store(tmp_path / "s", config=StoreConfig(name="S", first_seq=100))
    st = again.state()
    assert (st.first_seq, st.last_seq, st.last_ts) == (101, 100, T0)
    again.close()


def test_erase_overwrites_bytes(tmp_path):
    store = open_store(tmp_path / "s")
    store.store_msg(b"a", b"", b"SECRET-PAYLOAD", T0)
    store.store_msg(b"a", b"", b"other", T0 + 1)
    store._flush_all()
    store.remove_msg(1, erase=True)
    store.close()
    assert all(b"SECRET" not in p.read_bytes() for p in block_files(tmp_path / "s"))
    again = open_store(tmp_path / "s")
    assert again.load_msg(1) is None and again.load_msg(2).data == b"other"
    assert again.recovered_corrupt == 0
    again.close()


def test_runtime_corruption_is_not_served(tmp_path):
    logs: list[str] = []
    store = open_store(tmp_path / "s", log=logs.append)
    store.store_msg(b"a", b"", b"hello", T0)
    store.store_msg(b"a", b"", b"world", T0 + 1)
    store._flush_all()
    (path,) = block_files(tmp_path / "s")
    fd = os.open(path, os.O_RDWR)
    os.pwrite(fd, b"J", store._off[0] + 10)
    os.close(fd)
    assert store.load_msg(1) is None and logs
    assert store.load_msg(2).data == b"world"
    store.close()


def test_meta_atomic(tmp_path):
    store = open_store(tmp_path / "s")
    assert store.load_meta() is None
    store.save_meta(b'{"name":"S"}')
    store.save_meta(b'{"name":"S","v":2}')
    store.close()
    assert open_store(tmp_path / "s").load_meta() == b'{"name":"S","v":2}'
    assert not list((tmp_path / "s").glob("*.tmp"))


def test_sync_policies(tmp_path):
    async def run(policy: str) -> None:
        store = open_store(tmp_path / policy, sync_policy=policy, sync_interval=0.05)
        store.store_msg(b"a", b"", b"1", T0)
        await asyncio.wait_for(store.sync(), 5)
        store.close()
        again = open_store(tmp_path / policy)
        assert again.load_msg(1).data == b"1"
        again.close()

    for policy in ("group", "interval", "always"):
        asyncio.run(run(policy))
    with pytest.raises(ValueError):
        open_store(tmp_path / "bad", sync_policy="sometimes")


async def test_group_commit_batches(tmp_path):
    from jsedge.store._sync import SYNCER

    store = open_store(tmp_path / "s", block_size=1 << 20)
    rounds = SYNCER.rounds
    futures = []
    for i in range(200):
        store.store_msg(b"g", b"", b"%d" % i, T0 + i)
        futures.append(store.sync())
    await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert SYNCER.rounds - rounds < 200  # fsyncs were shared
    store.close()


def test_delete_removes_directory(tmp_path):
    store = open_store(tmp_path / "s")
    populate(store, 10)
    store.consumer_store("c").update_delivered(1, 1, 1, T0)
    store.delete()
    assert not (tmp_path / "s").exists()


def _batch(store: FileStore, count: int, stop_after: int | None = None) -> None:
    """Store `count` messages as one atomic batch; with `stop_after`, only that many are stored
    (the process "dies" there: no end_batch)."""
    first = store.last_seq() + 1
    store.begin_batch(first, first + count - 1)
    for i in range(count if stop_after is None else stop_after):
        store.store_msg(b"batch.%d" % (i % 3), b"", b"batched-%d" % i * 20, T0 + 1000 + i)
    if stop_after is None:
        store.end_batch()


@pytest.mark.parametrize("stored", [0, 1, 7, 39])
def test_a_batch_cut_short_is_dropped_whole_on_open(tmp_path, stored):
    """Atomic batch publish: a batch of 40 whose records stop after `stored` (over several small
    blocks) is gone after the restart, and only it: the stream goes on at the batch's first
    sequence, and a second open finds nothing more to drop."""
    store = open_store(tmp_path / "s", block_size=512)
    populate(store, 30)
    store.remove_msg(12)
    _batch(store, 5)  # a complete batch stays
    before = snapshot(store)
    _batch(store, 40, stop_after=stored)
    assert len(block_files(tmp_path / "s")) > 3
    asyncio.run(_await_sync(store))  # the partial batch reached the disk, as a kill can leave it
    again = open_store(tmp_path / "s", block_size=512)
    assert snapshot(again) == before
    assert again.recovered_partial_batches == 1
    assert again.store_msg(b"after", b"", b"a", T0 + 5000) == 36
    again.close()
    third = open_store(tmp_path / "s", block_size=512)
    assert third.recovered_partial_batches == 0 and third.load_msg(36).data == b"a"
    assert snapshot(third)[0].messages == before[0].messages + 1
    third.close()


def test_a_failed_batch_keeps_what_it_stored_and_what_came_after(tmp_path):
    store = open_store(tmp_path / "s")
    populate(store, 10)
    first = store.last_seq() + 1
    store.begin_batch(first, first + 9)
    for i in range(3):
        store.store_msg(b"b", b"", b"part-%d" % i, T0 + 100 + i)
    store.end_batch(complete=False)
    store.store_msg(b"later", b"", b"later", T0 + 200)
    before = snapshot(store)
    store.close()
    again = open_store(tmp_path / "s")
    assert snapshot(again) == before and again.recovered_partial_batches == 0
    again.close()


async def test_power_loss_in_the_middle_of_a_batch(tmp_path):
    """Files cut to their fsynced lengths while a batch was half written (an fsync ran in the
    middle of it): after the restart the batch is entirely absent."""
    synced: dict[str, int] = {}
    store = open_store(tmp_path / "s", block_size=1024, on_synced=lambda path, length: synced.__setitem__(path, length))
    populate(store, 20)
    await _await_sync(store)
    before = snapshot(store)
    _batch(store, 30, stop_after=17)
    await _await_sync(store)  # the fsync covers part of the batch
    for path in block_files(tmp_path / "s"):
        os.truncate(path, synced.get(str(path), 0))
    again = open_store(tmp_path / "s", block_size=1024)
    assert snapshot(again) == before
    again.close()


# ---- the index snapshot of a clean close ---------------------------------------------------------


def _rich(store: FileStore) -> None:
    populate(store, 120)
    store.store_msg(b"ttl", b"", b"t", T0 + 500 * SEC, ttl_ns=30 * SEC)
    store.store_msg(b"never", b"", b"n", T0 + 501 * SEC, ttl_ns=-1)
    store.remove_msg(7)
    store.remove_msg(3, erase=True)
    store.skip_msg(T0 + 502 * SEC)


def test_a_clean_close_reopens_from_the_index_snapshot(tmp_path):
    store = open_store(tmp_path / "s")
    _rich(store)
    before, expiry = snapshot(store), store.next_expiry()
    subjects = store.subjects_state(b">")
    store.close()
    assert (tmp_path / "s" / "index.snap").exists()
    again = open_store(tmp_path / "s")
    assert again.opened_from_index and not (tmp_path / "s" / "index.snap").exists()
    assert snapshot(again) == before and again.next_expiry() == expiry
    assert again.subjects_state(b">") == subjects
    assert again.store_msg(b"after", HDR, b"a", T0 + 600 * SEC) == before[0].last_seq + 1
    after = snapshot(again)
    # killed now (no close): the snapshot is gone, so the next open scans, and finds everything
    third = open_store(tmp_path / "s")
    assert not third.opened_from_index and snapshot(third) == after
    third.close()


def test_a_stale_or_damaged_snapshot_is_not_used(tmp_path):
    store = open_store(tmp_path / "s")
    _rich(store)
    store.close()
    saved = (tmp_path / "s" / "index.snap").read_bytes()
    again = open_store(tmp_path / "s")
    again.store_msg(b"more", b"", b"m", T0 + 700 * SEC)
    asyncio.run(_await_sync(again))
    expected = snapshot(again)
    # a stale snapshot (from before the last write) put back: the block lengths betray it
    (tmp_path / "s" / "index.snap").write_bytes(saved)
    logs: list[str] = []
    third = open_store(tmp_path / "s", log=logs.append)
    assert not third.opened_from_index and snapshot(third) == expected
    assert any("index snapshot not used" in line for line in logs)
    third.close()
    # a flipped bit inside the snapshot: its checksum
    raw = bytearray((tmp_path / "s" / "index.snap").read_bytes())
    raw[len(raw) // 2] ^= 0x10
    (tmp_path / "s" / "index.snap").write_bytes(raw)
    fourth = open_store(tmp_path / "s")
    assert not fourth.opened_from_index and snapshot(fourth) == expected
    fourth.close()
    # a flipped bit inside a block (same length, a new modification time): the scan finds it
    fifth_path = block_files(tmp_path / "s")[0]
    data = bytearray(fifth_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    fifth_path.write_bytes(data)
    logs = []
    fifth = open_store(tmp_path / "s", log=logs.append)
    assert not fifth.opened_from_index and fifth.recovered_corrupt == 1
    fifth.close()


def test_bit_rot_under_a_valid_snapshot_is_never_served(tmp_path):
    """A record damaged after a clean close without its file's length or time changing (bit rot):
    the snapshot is used (no block is read at open), and the record's own CRC keeps it from ever
    being served."""
    store = open_store(tmp_path / "s", block_size=1 << 20)
    for i in range(5):
        store.store_msg(b"s", b"", b"payload-%d" % i, T0 + i)
    start = store._off[2]
    store.close()
    (path,) = block_files(tmp_path / "s")
    stat = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(start + 6)
        byte = handle.read(1)
        handle.seek(start + 6)
        handle.write(bytes([byte[0] ^ 0x40]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    logs: list[str] = []
    again = open_store(tmp_path / "s", block_size=1 << 20, log=logs.append)
    assert again.opened_from_index
    assert again.load_msg(3) is None and any("corrupt" in line for line in logs)
    assert [again.load_msg(s).data for s in (1, 2, 4, 5)] == [b"payload-0", b"payload-1", b"payload-3", b"payload-4"]
    again.close()


async def test_consumer_log_generations_never_strand_the_fsync_thread(tmp_path):
    """A consumer log starting a new generation closed the old file while it was still listed for
    the fsync thread; the thread, scheduled in that gap (the close releases the GIL), died of EBADF
    and every later sync of the stream waited forever. 200 rotations with fsyncs always running."""
    store = open_store(tmp_path / "s")
    store.store_msg(b"a", b"", b"x", T0)
    cs = store.consumer_store("C")
    gen = cs._gen
    rotations = 0
    n = 0
    while rotations < 200:
        for _ in range(64):
            n += 1
            cs.update_delivered(n, 1, 1, T0 + n)
            store._request_sync(None)  # keep the fsync thread busy across the rotation
        if cs._gen != gen:
            rotations += 1
            gen = cs._gen
        await asyncio.wait_for(store.sync(), 5)
    assert cs.state().delivered.consumer_seq == n
    store.close()


def test_forward_reads_see_erases_and_new_records(tmp_path):
    """Forward reads come from one read-ahead chunk; an erase inside the chunk and records written
    after it are still seen as they are now."""
    store = open_store(tmp_path / "s", block_size=1 << 20)
    for i in range(300):
        store.store_msg(b"f.%d" % (i % 3), b"", b"m-%d" % i, T0 + i)
    store._flush_all()
    for seq in range(1, 101):
        assert store.load_msg(seq).data == b"m-%d" % (seq - 1)
    assert store._ahead is not None
    store.remove_msg(120, erase=True)
    assert store.load_msg(119).data == b"m-118"
    assert store.load_msg(120) is None
    assert store.load_msg(121).data == b"m-120"
    walk, seq = [], 101
    while (msg := store.load_next_msg(b"f.1", seq)) is not None:
        walk.append(msg.seq)
        seq = msg.seq + 1
    assert walk == [s for s in range(101, 301) if (s - 1) % 3 == 1 and s != 120]
    store.store_msg(b"f.1", b"", b"late", T0 + 999)
    assert store.load_next_msg(b"f.1", seq).data == b"late"
    store.close()


def test_the_index_snapshot_carries_the_stream_layers_extra_state(tmp_path: Path) -> None:
    """`save_extra` (the stream's Msg-Id window) is kept with the index snapshot of a clean close and
    handed back by the open that uses it; an open that scans has none."""
    store = open_store(tmp_path / "s")
    store.store_msg(b"a", HDR, b"x", T0)
    store.save_extra = lambda: b"window"
    store.close()
    store = open_store(tmp_path / "s")
    assert store.opened_from_index and store.snapshot_extra == b"window"
    store.close()  # (no save_extra this time: nothing kept)
    store = open_store(tmp_path / "s")
    assert store.snapshot_extra is None
    store.save_extra = lambda: b"again"
    store.close()
    os.unlink(tmp_path / "s" / "index.snap")
    store = open_store(tmp_path / "s")
    assert not store.opened_from_index and store.snapshot_extra is None
    store.close()
