"""Stream backups move between nats-server and jsedge both ways.

A stream with headers, deleted messages, per-subject limits and a durable consumer holding pending,
acknowledged and redelivered messages is backed up (the nats CLI's flow, through `jsedge stream
backup`) from one server kind and restored into a fresh nats-server and a fresh jsedge: the two
restored streams answer STREAM.INFO, every STREAM.MSG.GET, CONSUMER.INFO and the consumer's next
fetch alike (times of creation aside). Damaged archives get nats-server's restore error.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import pytest
from helpers import REPO_ROOT, ServerProcess

API = "$JS.API."
pytestmark = pytest.mark.timeout(120)


def cli(url: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NATS_URL=url)
    proc = subprocess.run(
        [sys.executable, "-m", "jsedge", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO_ROOT),
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    if ok:
        assert proc.returncode == 0, f"jsedge {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc


async def seed(url: str) -> None:
    nc = await nats.connect(url, connect_timeout=3)
    try:
        js = nc.jetstream(timeout=5)
        await js.add_stream(name="ORDERS", subjects=["orders.>"], max_msgs_per_subject=4)
        for i in range(1, 61):
            headers = {"K": str(i), "Nats-Msg-Id": f"id-{i}"} if i % 3 == 0 else None
            await js.publish(f"orders.{i % 6}", (f"payload {i} " * (i % 9 + 1)).encode(), headers=headers)
        await js.publish("orders.big", b"abcd" * 20000)  # long repeats: S2's copy and repeat tags
        await js.delete_msg("ORDERS", 55)
        await js.delete_msg("ORDERS", 61)  # the newest: the restore must keep the sequence after it
        sub = await js.pull_subscribe("orders.>", durable="D", config=nats.js.api.ConsumerConfig(max_deliver=5))
        msgs = await sub.fetch(6, timeout=5)
        for i in (0, 1, 3):
            await msgs[i].ack_sync()
        # as a request: both servers answer once the NAK is processed (nats-server handles a plain
        # one asynchronously, so a flush alone left the next pull racing it)
        await nc.request(msgs[2].reply, b"-NAK", timeout=5)
        again = await sub.fetch(1, timeout=5)  # the NAKed one, delivered a second time
        assert again[0].metadata.num_delivered == 2
        await js.add_consumer("ORDERS", durable_name="NEW", deliver_policy=nats.js.api.DeliverPolicy.NEW)
    finally:
        await nc.close()


async def describe(url: str) -> dict[str, Any]:
    """What a client sees of the restored stream (times of creation and activity masked)."""
    nc = await nats.connect(url, connect_timeout=3)
    out: dict[str, Any] = {}
    try:

        async def req(subject: str, body: Any = None) -> dict[str, Any]:
            msg = await nc.request(API + subject, json.dumps(body).encode() if body is not None else b"", timeout=5)
            doc = json.loads(msg.data)
            for key in ("created", "ts"):
                doc.pop(key, None)
            return doc

        info = await req("STREAM.INFO.ORDERS", {"deleted_details": True})
        out["config"] = info.get("config")
        out["state"] = info.get("state")
        messages = []
        state = info["state"]
        for seq in range(state["first_seq"], state["last_seq"] + 2):
            messages.append(await req("STREAM.MSG.GET.ORDERS", {"seq": seq}))
        out["messages"] = messages
        for name in ("D", "NEW"):
            consumer = await req(f"CONSUMER.INFO.ORDERS.{name}")
            for key in ("delivered", "ack_floor"):
                if isinstance(consumer.get(key), dict):
                    consumer[key].pop("last_active", None)
            out[f"consumer {name}"] = consumer
        # the durable delivers what is left: the pending ones once their ack wait is over are not
        # due yet, so the next fetch gets the messages after the delivered sequence
        js = nc.jetstream(timeout=5)
        sub = await js.pull_subscribe("orders.>", durable="D")
        batch = await sub.fetch(3, timeout=5)
        out["next"] = [(m.subject, m.data, m.metadata.sequence.stream, m.metadata.sequence.consumer) for m in batch]
    finally:
        await nc.close()
    return out


def backup_from(kind: str, tmp_path: Path) -> Path:
    target = tmp_path / f"{kind}-backup"
    server = ServerProcess(kind, ["-js", "-sd", "js"])
    try:
        asyncio.run(seed(server.url))
        r = cli(server.url, "stream", "backup", "ORDERS", str(target))
        assert "Backed up stream ORDERS" in r.stdout
    finally:
        server.cleanup()
    return target


def restore_into(kind: str, backup: Path) -> dict[str, Any]:
    server = ServerProcess(kind, ["-js", "-sd", "js"])
    try:
        r = cli(server.url, "stream", "restore", str(backup))
        assert "Restored stream ORDERS" in r.stdout
        return asyncio.run(describe(server.url))
    finally:
        server.cleanup()


@pytest.mark.parametrize("source", ["nats", "jsedge"])
def test_backup_restores_alike_into_both_servers(source: str, tmp_path: Path) -> None:
    backup = backup_from(source, tmp_path)
    head = (backup / "stream.tar.s2").read_bytes()[:10]
    assert head[4:10] in (b"S2sTwO", b"sNaPpY")  # an S2 (or Snappy) framed stream, as nats-server's
    expected = restore_into("nats", backup)
    got = restore_into("jsedge", backup)
    assert expected["state"]["num_deleted"] >= 2  # interior deletes, the newest one too
    assert len(expected["next"]) == 3
    for key in expected:
        assert got[key] == expected[key], key


def _restore_error(kind: str, backup: Path) -> str:
    server = ServerProcess(kind, ["-js", "-sd", "js"])
    try:
        r = cli(server.url, "stream", "restore", str(backup), ok=False)
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert "(10062)" in out, out
        info = cli(server.url, "stream", "ls", ok=False)
        return info.stdout
    finally:
        server.cleanup()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_backup_gets_the_restore_error(damage: str, tmp_path: Path) -> None:
    backup = backup_from("nats", tmp_path)
    archive = backup / "stream.tar.s2"
    data = archive.read_bytes()
    if damage == "truncated":
        archive.write_bytes(data[: len(data) // 2])
    else:
        archive.write_bytes(data[:10] + bytes(range(256)) * 8)
    for kind in ("nats", "jsedge"):
        listing = _restore_error(kind, backup)
        assert "ORDERS" not in listing, (kind, listing)  # nothing half-restored is left behind


def _old_jsedge_archive() -> bytes:
    """An archive in the format jsedge wrote before it wrote nats-server's (a gzip tar)."""
    import io
    import struct
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        config = {"name": "OLD", "subjects": ["old.>"], "storage": "file", "num_replicas": 1}
        document = {
            "format": "jsedge-snapshot",
            "version": 1,
            "config": config,
            "created": "2026-01-01T00:00:00Z",
            "state": {"messages": 2, "bytes": 0, "first_seq": 3, "last_seq": 5, "last_ts": 0},
        }
        add("stream.json", json.dumps(document).encode())
        records = b""
        for seq, subject, hdr, data in ((3, b"old.a", b"", b"one"), (5, b"old.b", b"NATS/1.0\r\nK: v\r\n\r\n", b"two")):
            records += struct.pack(">QqIII", seq, 1_700_000_000_000_000_000 + seq, len(subject), len(hdr), len(data))
            records += subject + hdr + data
        add("msgs.bin", records)
        consumer = {
            "name": "C",
            "config": json.dumps(
                {"config": {"durable_name": "C", "ack_policy": "explicit"}, "created": "2026-01-01T00:00:00Z"}
            ),
            "state": {"delivered": [1, 3], "ack_floor": [1, 3], "pending": {}, "redelivered": {}},
        }
        add("consumers/C.json", json.dumps(consumer).encode())
    return out.getvalue()


def test_restores_archives_of_earlier_jsedge(tmp_path: Path) -> None:
    backup = tmp_path / "old"
    backup.mkdir()
    (backup / "stream.tar.s2").write_bytes(_old_jsedge_archive())
    config = {"name": "OLD", "subjects": ["old.>"], "storage": "file", "num_replicas": 1}
    (backup / "backup.json").write_text(json.dumps({"config": config, "state": {"messages": 2}}))
    server = ServerProcess("jsedge", ["-js", "-sd", "js"])
    try:
        cli(server.url, "stream", "restore", str(backup))

        async def check() -> None:
            nc = await nats.connect(server.url, connect_timeout=3)
            try:
                js = nc.jetstream(timeout=5)
                info = await js.stream_info("OLD")
                assert (info.state.messages, info.state.first_seq, info.state.last_seq) == (2, 3, 5)
                msg = await js.get_msg("OLD", 5)
                assert (msg.subject, msg.data, msg.headers) == ("old.b", b"two", {"K": "v"})
                consumer = await js.consumer_info("OLD", "C")
                assert consumer.delivered.stream_seq == 3 and consumer.num_pending == 1
            finally:
                await nc.close()

        asyncio.run(check())
    finally:
        server.cleanup()
