"""`compression: s2` in the file store: sealed blocks are replaced by compressed copies once those
are durable, every record stays readable (index snapshot, scan, erase, partial batches, power loss,
crashes between the copy and its rename, damaged copies). Real files, nothing mocked; the contract
suite also runs on a compressing store (tests/store/conftest.py, kind "file-s2")."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
from pathlib import Path

import pytest

from jsedge.store import filestore
from jsedge.store.base import StoreConfig
from jsedge.store.filestore import FileStore

T0 = 1_700_000_000_000_000_000
S2 = StoreConfig(name="S", compression="s2")


def open_store(directory: Path, block_size: int = 8192, config: StoreConfig = S2, **kw) -> FileStore:
    kw.setdefault("log", lambda text: None)
    return FileStore(directory, config, block_size=block_size, **kw)


def payload(i: int) -> bytes:
    return json.dumps({"sensor": f"temp-{i % 7}", "value": 20 + i % 13, "unit": "celsius", "n": i}).encode()


def fill(store: FileStore, count: int) -> None:
    for i in range(count):
        store.store_msg(b"sensors.%d" % (i % 7), b"", payload(i), T0 + i)


def compressed_files(directory: Path) -> list[Path]:
    return [p for p in sorted((directory / "msgs").glob("*.blk")) if p.read_bytes()[:4] == b"JSZ\x01"]


def all_messages(store: FileStore, count: int) -> None:
    for i in range(count):
        msg = store.load_msg(i + 1)
        assert msg is not None and msg.data == payload(i) and msg.subject == b"sensors.%d" % (i % 7), i + 1


def test_sealed_blocks_are_compressed_and_every_message_reads_back(tmp_path):
    plain = open_store(tmp_path / "plain", config=StoreConfig(name="S"))
    fill(plain, 2000)
    plain.close()
    store = open_store(tmp_path / "z")
    fill(store, 2000)
    store.close()  # runs the pending renames
    blocks = sorted((tmp_path / "z" / "msgs").glob("*.blk"))
    assert len(compressed_files(tmp_path / "z")) == len(blocks) - 1  # all but the active block
    assert not list((tmp_path / "z" / "msgs").glob("*.tmp"))
    plain_bytes = sum(p.stat().st_size for p in (tmp_path / "plain" / "msgs").glob("*.blk"))
    z_bytes = sum(p.stat().st_size for p in blocks)
    assert z_bytes < plain_bytes * 0.6  # JSON telemetry: about a third
    for from_index in (True, False):
        if not from_index:
            os.unlink(tmp_path / "z" / "index.snap")
        again = open_store(tmp_path / "z")
        assert again.opened_from_index is from_index
        again._flush_all()
        assert again.disk_usage() == sum(p.stat().st_size for p in (tmp_path / "z" / "msgs").glob("*.blk"))
        all_messages(again, 2000)
        seq = again.store_msg(b"sensors.x", b"", b"after", T0 + 5000)
        assert seq == again.state().last_seq
        again.close()
        # the appended message is in the reopened store; the next pass uses what this close wrote
        third = open_store(tmp_path / "z")
        assert third.load_msg(seq).data == b"after"
        third.remove_msg(seq)
        third.close()


async def test_compression_with_a_running_loop_drops_the_plain_copy(tmp_path):
    store = open_store(tmp_path / "z")
    fill(store, 500)
    await asyncio.wait_for(store.sync(), 5)
    deadline = asyncio.get_running_loop().time() + 5
    while any(b.fd >= 0 for b in store._blocks[:-1]):  # the loop is told by the fsync thread
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert len(compressed_files(tmp_path / "z")) == len(store._blocks) - 1
    all_messages(store, 500)
    # a consumer-style walk and the Msg-Id rebuild read compressed blocks whole
    seqs, seq = [], 1
    while (msg := store.load_next_msg(b"sensors.3", seq)) is not None:
        seqs.append(msg.seq)
        seq = msg.seq + 1
    assert seqs == [i + 1 for i in range(500) if i % 7 == 3]
    assert store.headers_since(0) == []  # no message has headers
    store.close()


def test_erase_in_a_compressed_block_leaves_no_trace(tmp_path):
    store = open_store(tmp_path / "z")
    store.store_msg(b"a", b"", b"SECRET-PAYLOAD", T0)
    fill(store, 300)  # seals the first block
    store.close()
    assert compressed_files(tmp_path / "z")
    store = open_store(tmp_path / "z")
    store.remove_msg(1, erase=True)
    assert store.load_msg(1) is None and store.load_msg(2).data == payload(0)
    store.close()
    for path in (tmp_path / "z" / "msgs").glob("*"):
        data = path.read_bytes()
        if data[:4] == b"JSZ\x01":
            data = filestore.decompress_block(data)
        assert b"SECRET" not in data
    again = open_store(tmp_path / "z")
    assert again.load_msg(1) is None and again.load_msg(301).data == payload(299)
    again.close()


def test_erase_while_the_compressed_copy_waits_for_its_rename(tmp_path):
    store = open_store(tmp_path / "z")
    store.store_msg(b"a", b"", b"SECRET-PAYLOAD", T0)
    fill(store, 300)
    sealed = store._blocks[0]
    assert sealed.sealing is not None or sealed.fd < 0
    if sealed.fd >= 0:
        store.remove_msg(1, erase=True)  # pwrite into the plain copy: the compressed one is retaken
    store.close()
    again = open_store(tmp_path / "z")
    assert again.load_msg(1) is None
    again.close()


def test_a_crash_before_the_rename_keeps_the_plain_block(tmp_path):
    """The process died after writing compressed copies (one of them torn) and before the fsync
    thread renamed them: the plain blocks are intact and the copies are removed at open."""
    store = open_store(tmp_path / "z", config=StoreConfig(name="S"))
    fill(store, 300)
    store.close()
    os.unlink(tmp_path / "z" / "index.snap")
    blocks = sorted((tmp_path / "z" / "msgs").glob("*.blk"))
    for k, block in enumerate(blocks[:-1]):
        copy = filestore.compress_block(block.read_bytes())
        Path(str(block) + ".tmp").write_bytes(copy if k % 2 else copy[: len(copy) // 2])
    again = open_store(tmp_path / "z")
    assert not list((tmp_path / "z" / "msgs").glob("*.tmp"))
    assert not compressed_files(tmp_path / "z")
    all_messages(again, 300)
    again.close()


def test_a_compressed_newest_block_is_never_appended_to(tmp_path):
    store = open_store(tmp_path / "z")
    fill(store, 300)
    store.close()
    newest = sorted((tmp_path / "z" / "msgs").glob("*.blk"))[-1]
    os.unlink(newest)  # a crash right after a rotation: the new block never reached the disk
    os.unlink(tmp_path / "z" / "index.snap")
    again = open_store(tmp_path / "z")
    last = again.state().last_seq
    assert again._blocks[-1].fd < 0
    seq = again.store_msg(b"x", b"", b"fresh", T0 + 10_000)
    assert seq == last + 1 and again._blocks[-1].fd >= 0
    again.close()
    third = open_store(tmp_path / "z")
    assert third.load_msg(seq).data == b"fresh"
    all_messages(third, last)
    third.close()


def test_a_damaged_compressed_block_is_logged_and_never_served(tmp_path):
    store = open_store(tmp_path / "z")
    fill(store, 600)
    store.close()
    victim = compressed_files(tmp_path / "z")[0]
    data = bytearray(victim.read_bytes())
    data[40] ^= 0x10
    victim.write_bytes(bytes(data))
    os.unlink(tmp_path / "z" / "index.snap")
    logs: list[str] = []
    again = open_store(tmp_path / "z", log=logs.append)
    assert any("compressed block unreadable (checksum mismatch)" in line for line in logs)
    assert again.recovered_corrupt == 1
    served = [again.load_msg(i + 1) for i in range(600)]
    assert all(m is None or m.data == payload(m.seq - 1) for m in served)
    assert served[-1] is not None and served[0] is None  # the first block's messages are gone
    again.close()


def test_a_partial_batch_reaching_into_a_compressed_block_is_dropped(tmp_path):
    store = open_store(tmp_path / "z", block_size=4096)
    fill(store, 10)
    store.begin_batch(11, 400)
    for i in range(10, 200):  # crosses several rotations: the marker's block is compressed
        store.store_msg(b"sensors.%d" % (i % 7), b"", payload(i), T0 + i)
    store.close()
    assert compressed_files(tmp_path / "z")
    os.unlink(tmp_path / "z" / "index.snap")
    again = open_store(tmp_path / "z", block_size=4096)
    assert again.recovered_partial_batches == 1
    assert again.state().last_seq == 10
    all_messages(again, 10)
    assert again.store_msg(b"y", b"", b"next", T0 + 999) == 11
    again.close()


def test_decompress_rejects_what_is_not_ours():
    good = filestore.compress_block(b"abc" * 100)
    assert filestore.decompress_block(good) == b"abc" * 100
    for bad in (b"", b"JSZ", good[:-1], b"XXXX" + good[4:], good[:4] + b"\x09" + good[5:]):
        with pytest.raises(ValueError):
            filestore.decompress_block(bad)


@pytest.mark.parametrize("seed", [5, 6])
async def test_power_loss_with_compression_keeps_every_synced_record(tmp_path, seed):
    rng = random.Random(seed)
    synced: dict[str, int] = {}

    def on_synced(path: str, length: int) -> None:
        synced[path] = length  # a rename reports the compressed copy's (shorter) length last

    directory = tmp_path / "s"
    store = open_store(directory, block_size=2048, on_synced=on_synced)
    acked: dict[int, bytes] = {}
    for round_ in range(60):
        batch = {}
        for _ in range(rng.randint(1, 8)):
            data = payload(rng.randrange(1000))
            batch[store.store_msg(b"p.%d" % rng.randrange(4), b"", data, T0 + round_)] = data
        if rng.random() < 0.7:
            await asyncio.wait_for(store.sync(), 5)
            acked.update(batch)
    store._flush_all()
    for path in list((directory / "msgs").glob("*")):
        keep = synced.get(str(path))
        if keep is None:
            path.unlink()
            continue
        os.truncate(path, keep)
    again = open_store(directory, block_size=2048)
    for seq, data in acked.items():
        msg = again.load_msg(seq)
        assert msg is not None and msg.data == data, seq
    again.close()


def test_compression_can_be_turned_on_for_an_existing_store(tmp_path):
    store = open_store(tmp_path / "z", config=StoreConfig(name="S"))
    fill(store, 300)
    store.update_config(dataclasses.replace(store.config, compression="s2"))
    for i in range(300, 600):
        store.store_msg(b"sensors.%d" % (i % 7), b"", payload(i), T0 + i)
    store.close()
    assert compressed_files(tmp_path / "z")  # blocks sealed after the change
    again = open_store(tmp_path / "z", config=StoreConfig(name="S"))  # and readable without it
    all_messages(again, 600)
    again.close()
