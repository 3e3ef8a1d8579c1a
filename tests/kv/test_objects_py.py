"""Object stores through nats-py's object-store API, on jsedge and on nats-server (both kinds).

put (chunked, several sizes, re-put under the same name purges the old chunks), get (ordered
consumer until the pending token is 0, SHA-256 check), get_info, list, delete, links (the
client follows them; nats-py cannot create them, so the link meta is published by hand in the
nats.go/ADR-20 format), watch (initial state, None marker, updates), update_meta, seal, status,
and a corrupted digest that the client must detect.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from nats.js.api import ObjectMeta, ObjectMetaOptions, StorageType
from nats.js.errors import (
    BadRequestError,
    DigestMismatchError,
    NotFoundError,
    ObjectNotFoundError,
)

pytestmark = pytest.mark.timeout(30)


def _blob(n: int) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


def _digest(b: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).decode()


def _meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M." + base64.urlsafe_b64encode(name.encode()).decode()


async def _drain_initial(watcher, timeout=3.0):
    out = []
    while True:
        e = await watcher.updates(timeout=timeout)
        if e is None:
            return out
        out.append(e)


@pytest.mark.parametrize("storage", [StorageType.FILE, StorageType.MEMORY], ids=["file", "mem"])
async def test_put_get_info_chunks(nc, storage):
    js = nc.jetstream()
    obs = await js.create_object_store("files", storage=storage)
    si = await js.stream_info("OBJ_files")
    assert si.config.subjects == ["$O.files.C.>", "$O.files.M.>"]
    assert si.config.allow_direct and si.config.allow_rollup_hdrs and si.config.discard == "new"
    assert si.config.max_consumers == -1 and si.config.duplicate_window == 120

    big = _blob(300_000)  # 3 chunks of the default 128 KiB
    info = await obs.put("dir/a.txt", big)
    assert (info.size, info.chunks, info.digest) == (300_000, 3, _digest(big))
    assert await obs.put("empty", b"") is not None
    small = b"hello"
    await obs.put("small", small, meta=ObjectMeta(description="tiny", options=ObjectMetaOptions(max_chunk_size=2)))

    got = await obs.get("dir/a.txt")
    assert got.data == big and got.info.digest == _digest(big)
    got = await obs.get("small")
    assert got.data == small and got.info.chunks == 3 and got.info.description == "tiny"
    assert (await obs.get("empty")).data == b""
    out = io.BytesIO()
    await obs.get("dir/a.txt", writeinto=out)
    assert out.getvalue() == big

    i = await obs.get_info("dir/a.txt")
    assert (i.name, i.bucket, i.size, i.chunks, i.deleted) == ("dir/a.txt", "files", 300_000, 3, False)
    # meta subject layout and the stored JSON
    raw = await js.get_last_msg("OBJ_files", _meta_subject("files", "dir/a.txt"))
    assert raw.subject == "$O.files.M.ZGlyL2EudHh0" and raw.headers["Nats-Rollup"] == "sub"
    meta = json.loads(raw.data)
    assert meta["nuid"] == i.nuid and meta["digest"] == _digest(big)
    with pytest.raises(ObjectNotFoundError):
        await obs.get_info("missing")
    with pytest.raises(ObjectNotFoundError):
        await obs.get("missing")

    st = await obs.status()
    assert st.bucket == "files" and not st.sealed and st.size == (await js.stream_info("OBJ_files")).state.bytes
    # 3 + 0 + 3 chunks + 3 metas
    assert (await js.stream_info("OBJ_files")).state.messages == 9


async def test_reput_purges_old_chunks_and_delete(nc):
    js = nc.jetstream()
    obs = await js.create_object_store("o")
    v1 = _blob(200_000)
    i1 = await obs.put("x", v1)
    v2 = b"second version"
    i2 = await obs.put("x", v2)
    assert i1.nuid != i2.nuid
    assert (await obs.get("x")).data == v2
    si = await js.stream_info("OBJ_o")
    assert si.state.messages == 2  # one chunk + the rolled-up meta
    with pytest.raises(NotFoundError):
        await js.get_last_msg("OBJ_o", f"$O.o.C.{i1.nuid}")

    await obs.delete("x")
    with pytest.raises(ObjectNotFoundError):
        await obs.get("x")
    d = await obs.get_info("x", show_deleted=True)
    assert d.deleted and d.size == 0 and d.chunks == 0
    si = await js.stream_info("OBJ_o")
    assert si.state.messages == 1  # only the tombstone meta
    # put again after delete
    await obs.put("x", b"third")
    assert (await obs.get("x")).data == b"third"


async def test_list_and_watch(nc):
    js = nc.jetstream()
    obs = await js.create_object_store("lw")
    with pytest.raises(NotFoundError):
        await obs.list()
    w0 = await obs.watch()
    assert await w0.updates(timeout=3) is None
    await obs.put("a", b"1")
    e = await w0.updates(timeout=3)
    assert (e.name, e.size) == ("a", 1)
    await w0.stop()

    await obs.put("b", b"22")
    await obs.put("a", b"333")
    await obs.put("c", b"4")
    await obs.delete("c")
    names = [(o.name, o.size, o.deleted) for o in await obs.list()]
    assert names == [("b", 2, False), ("a", 3, False), ("c", 0, True)]
    assert [o.name for o in await obs.list(ignore_deletes=True)] == ["b", "a"]

    w = await obs.watch()
    assert [o.name for o in await _drain_initial(w)] == ["b", "a", "c"]
    await obs.put("d", b"d")
    e = await w.updates(timeout=3)
    assert (e.name, e.size, e.digest) == ("d", 1, _digest(b"d"))
    await obs.delete("b")
    e = await w.updates(timeout=3)
    assert (e.name, e.deleted) == ("b", True)
    await w.stop()

    wu = await obs.watch(updates_only=True)
    await obs.put("e", b"e")
    e = await wu.updates(timeout=3)
    assert e.name == "e"
    await wu.stop()
    wh = await obs.watch(include_history=True)
    hist = await _drain_initial(wh)
    assert [o.name for o in hist] == ["a", "c", "d", "b", "e"]
    await wh.stop()


async def test_update_meta_and_seal(nc):
    js = nc.jetstream()
    obs = await js.create_object_store("um")
    await obs.put("doc", b"content", meta=ObjectMeta(description="v1", headers={"X-A": ["1"]}))
    await obs.update_meta("doc", ObjectMeta(name="doc", description="v2", headers={"X-A": ["2"]}))
    i = await obs.get_info("doc")
    assert i.description == "v2" and i.headers == {"X-A": ["2"]} and i.size == 7
    assert (await obs.get("doc")).data == b"content"
    assert (await js.stream_info("OBJ_um")).state.messages == 2  # chunk + one meta (rollup)

    await obs.seal()
    si = await js.stream_info("OBJ_um")
    assert si.config.sealed and si.config.deny_delete and si.config.deny_purge
    assert (await obs.status()).sealed
    with pytest.raises(BadRequestError):
        await obs.put("new", b"x")
    assert (await obs.get("doc")).data == b"content"


async def test_link_is_followed(nc):
    js = nc.jetstream()
    src = await js.create_object_store("src")
    dst = await js.create_object_store("dst")
    payload = _blob(150_000)
    await src.put("target", payload)
    link = {
        "name": "lnk",
        "bucket": "dst",
        "nuid": "LINKNUID0000000000000",
        "size": 0,
        "chunks": 0,
        "mtime": "2026-01-01T00:00:00Z",
        "options": {"link": {"bucket": "src", "name": "target"}},
    }
    await js.publish(_meta_subject("dst", "lnk"), json.dumps(link).encode(), headers={"Nats-Rollup": "sub"})
    i = await dst.get_info("lnk")
    assert i.is_link() and i.options.link.bucket == "src"
    got = await dst.get("lnk")
    assert got.data == payload and got.info.name == "target"


async def test_digest_mismatch_detected(nc):
    js = nc.jetstream()
    obs = await js.create_object_store("dg")
    info = await obs.put("f", b"genuine data")
    meta = json.loads((await js.get_last_msg("OBJ_dg", _meta_subject("dg", "f"))).data)
    meta["digest"] = _digest(b"something else")
    await js.publish(_meta_subject("dg", "f"), json.dumps(meta).encode(), headers={"Nats-Rollup": "sub"})
    assert (await obs.get_info("f")).nuid == info.nuid
    with pytest.raises(DigestMismatchError):
        await obs.get("f")


async def test_delete_bucket(nc):
    js = nc.jetstream()
    obs = await js.create_object_store("gone")
    await obs.put("a", b"1")
    assert await js.delete_object_store("gone")
    with pytest.raises(Exception):
        await js.object_store("gone")
