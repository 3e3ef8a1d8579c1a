"""Differential properties of the fused plain publish and apply (jsedge/jetstream/ingest.py and its
compiled twin jsedge/_speedups/ingest.pyx): the same publishes (or the same replicated StoreMsg
commands), fed to three file streams -- one through the general path only (`Stream.process_publish`,
or `Stream.apply` + `Stream.react`), one through the Python reference first, one through the compiled
twin first -- leave byte-identical block files and buffers, the same index arrays and subject states,
the same PubAcks queued in the same order, the same Msg-Id window, and the same notifications to
consumers and listeners, whatever the limits, discard policy, expiry, sizes, stated sequences and
write-once references."""

from __future__ import annotations

import asyncio
import importlib
import os
import tempfile
import types
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from jsedge.jetstream import ingest
from jsedge.jetstream.commands import StoreMsg
from jsedge.jetstream.models import StreamConfig
from jsedge.jetstream.stream import Stream, store_config
from jsedge.store.filestore import FileStore

COMPILED = os.environ.get("JSEDGE_NO_EXTENSIONS", "") in ("", "0")


def _compiled_ingest() -> Any:
    try:
        return importlib.import_module("jsedge._speedups.ingest").ingest_plain
    except ImportError as exc:  # a missing compiled twin is a failure, never a skip
        pytest.fail(f"compiled ingest twin not importable: {exc}")


class Recorder:
    """A consumer as the stream sees one: it hears of stored and removed messages."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bytes | None]] = []

    def on_stored(self, seq: int, subject: bytes) -> None:
        self.calls.append(("stored", seq, subject))

    def on_removed(self, seq: int, subject: bytes | None) -> None:
        self.calls.append(("removed", seq, subject))

    def on_purged(self) -> None:
        self.calls.append(("purged", 0, None))


def _stream(directory: Path, config: StreamConfig, loop: asyncio.AbstractEventLoop, block_size: int) -> Stream:
    sent: list[tuple[bytes, bytes, bytes]] = []
    server = types.SimpleNamespace(
        loop=loop,
        logger=None,
        sent=sent,
        send_internal=lambda account, subject, reply, hdr, data: sent.append((subject, hdr, data)),
    )
    host = types.SimpleNamespace(
        server=server,
        account=None,
        domain="",
        limits=None,
        jetstream=types.SimpleNamespace(explicit_limits=False),
        check_resources=lambda stream, size: None,
    )
    store = FileStore(directory, store_config(config), block_size=block_size)
    stream = Stream(host, config, store, created=0)
    stream.consumers["C"] = Recorder()
    listened: list[tuple[int, bytes]] = []
    stream.stored_listeners.append(lambda seq, subject: listened.append((seq, subject)))
    stream.listened = listened  # type: ignore[attr-defined]
    return stream


def _feed(stream: Stream, fast: Any, publishes: list[tuple[bytes, bytes, bytes, bytes]], now: list[int]) -> int:
    """Stream._on_publish with the fast path `fast` (None: the general path only); returns how many
    publishes the fast path took."""
    taken = 0
    for subject, reply, hdr, data in publishes:
        now[0] += 1_000_003
        if not hdr and fast is not None and fast(stream, subject, reply, memoryview(data)):
            taken += 1
            continue
        stream.process_publish(subject, reply, hdr, data)
    return taken


def _state(stream: Stream) -> dict[str, Any]:
    store = stream.store
    assert isinstance(store, FileStore)
    blocks = []
    for block in store._blocks:
        on_disk = Path(block.path).read_bytes()
        blocks.append((Path(block.path).name, on_disk + bytes(block.buf), block.size, block.live))
    consumer = stream.consumers["C"]
    assert isinstance(consumer, Recorder)
    return {
        "index": (list(store._sid), list(store._ts), list(store._size), list(store._off), store._base),
        "subjects": {subject: list(ss) for subject, ss in store._subjects.items()},
        "counts": (store._msgs, store._bytes, store._first, store._last, store._last_ts),
        "blocks": blocks,
        "acks": list(stream._pending_acks),
        "sent": stream.server.sent,
        "sync_requested": stream._sync_requested,
        "last_msg_id": stream.last_msg_id,
        "consumer": consumer.calls,
        "listened": stream.listened,  # type: ignore[attr-defined]
        "expiry_at": stream._expiry_at,
        "dedup": dict(stream.dedup),
        "refs": (list(store._ref_runs), list(store._ref_files), dict(store._ref_live)),
    }


configs = st.fixed_dictionaries(
    {
        "max_msgs": st.sampled_from([-1, 6, 20]),
        "max_bytes": st.sampled_from([-1, 700, 3000]),
        "max_msgs_per_subject": st.sampled_from([-1, 1, 3]),
        "discard": st.sampled_from(["old", "new"]),
        "discard_new_per_subject": st.booleans(),
        "max_age": st.sampled_from([0, 60_000_000_000]),
        "no_ack": st.booleans(),
        "max_msg_size": st.sampled_from([-1, -1, 24]),
    }
)
publishes = st.lists(
    st.tuples(
        st.sampled_from([b"a", b"b.c", b"d.e.f", b"g"]),
        st.sampled_from([b"", b"_INBOX.x.1", b"_INBOX.x.2", b"r.$FI"]),
        st.sampled_from([b"", b"", b"", b"NATS/1.0\r\nNats-Msg-Id: m\r\n\r\n"]),
        st.binary(max_size=30),
    ),
    min_size=4,
    max_size=80,
)


def _differential(fields: dict[str, Any], twins: list[Any], run: Any, block_size: int, **extra: Any) -> list[dict]:
    """Run `run(stream, fast, now, tmp)` on a fresh stream for each twin (None: the general path
    only), with the clock at the same start each time; assert identical states and that both twins
    took the same messages; returns the states."""
    if fields["discard_new_per_subject"] and (fields["discard"] != "new" or fields["max_msgs_per_subject"] <= 0):
        fields["discard_new_per_subject"] = False  # nats-server refuses the flag otherwise
    config = StreamConfig(name="S", subjects=[">"], **fields, **extra)
    loop = asyncio.new_event_loop()
    now = [1_800_000_000_000_000_000]
    states = []
    taken = []
    try:
        with tempfile.TemporaryDirectory() as tmp, mock.patch("time.time_ns", lambda: now[0]):
            ingest.set_clock(lambda: now[0])
            for k, fast in enumerate(twins):
                now[0] = 1_800_000_000_000_000_000
                stream = _stream(Path(tmp) / str(k), config, loop, block_size)
                taken.append(run(stream, fast, now, Path(tmp)))
                states.append(_state(stream))
                stream.store.close()
    finally:
        ingest.set_clock(None)
        loop.close()
    for state in states[1:]:
        for key in states[0]:
            assert state[key] == states[0][key], key
    assert len(set(taken[1:])) == 1, taken  # both twins take the same messages
    event("fast path took " + ("none" if not taken[1] else "1-9" if taken[1] < 10 else "10+"))
    return states


@given(configs, publishes, st.sampled_from([512, 4096, 1 << 20]))
@settings(max_examples=200, deadline=None)
def test_fused_and_general_paths_leave_the_same_stream(fields, feed, block_size) -> None:
    twins: list[Any] = [None, ingest._ingest_plain_py]
    if COMPILED:
        twins.append(_compiled_ingest())
    _differential(fields, twins, lambda stream, fast, now, tmp: _feed(stream, fast, feed, now), block_size)


commands = st.lists(
    st.tuples(
        st.sampled_from([b"a", b"b.c", b"d.e.f", b"g"]),
        st.sampled_from([b"", b"", b"NATS/1.0\r\nA: b\r\n\r\n"]),
        st.binary(max_size=30),
        st.sampled_from([0, 0, 0, 0, 5]),  # ttl
        st.sampled_from([b"", b"", b"", b"id-1", b"id-2"]),
        st.sampled_from(["", "", "", "", "sub"]),
        st.sampled_from(["next", "next", "next", "none", "stale", "ahead"]),
        st.sampled_from([None, None, "ref", "ref", "wrong"]),  # write-once hint
    ),
    min_size=4,
    max_size=60,
)


def _apply(stream: Stream, fast: Any, feed: list[Any], now: list[int], ref_path: str) -> int:
    """ClusteredStream._apply_batch with the fast path `fast` (None: the general path only)."""
    store = stream.store
    assert isinstance(store, FileStore)
    fid = store.link_ref(ref_path)
    taken = 0
    for subject, hdr, data, ttl, msg_id, rollup, stated, hint in feed:
        now[0] += 1_000_003
        seq = {"next": store._last + 1, "none": 0, "stale": max(store._last, 1), "ahead": store._last + 2}[stated]
        command = StoreMsg(subject, hdr, data, now[0], ttl, msg_id, rollup, seq)
        if hint is not None and not ttl:
            store.set_ref(store._last + 1, fid, 100, len(data) + (1 if hint == "wrong" else 0))
        try:
            if fast is not None and fast(stream, command):
                taken += 1
                continue
            try:
                result = stream.apply(command)
            except Exception:  # DiscardNewError and sequence mismatches: refused, as a replica does
                continue
            stream.react(command, result, None)
        finally:
            store.clear_ref()
    return taken


@given(configs, commands, st.sampled_from([512, 1 << 20]))
@settings(max_examples=200, deadline=None)
def test_fused_and_general_apply_leave_the_same_stream(fields, feed, block_size) -> None:
    twins: list[Any] = [None, ingest._apply_plain_py]
    if COMPILED:
        twins.append(_compiled_apply())

    def run(stream: Stream, fast: Any, now: list[int], tmp: Path) -> int:
        segment = tmp / "segment"
        segment.write_bytes(bytes(4096))
        return _apply(stream, fast, feed, now, str(segment))

    states = _differential(fields, twins, run, block_size, duplicate_window=60_000_000_000)
    event("stored by reference" if any(states[0]["refs"][2].values()) else "no reference")


def _compiled_apply() -> Any:
    try:
        return importlib.import_module("jsedge._speedups.ingest").apply_plain
    except ImportError as exc:
        pytest.fail(f"compiled ingest twin not importable: {exc}")


def _plain_config(**fields: Any) -> StreamConfig:
    limits = {"max_msgs": -1, "max_bytes": -1, "max_msg_size": -1, "max_msgs_per_subject": -1}
    return StreamConfig(name="S", subjects=[">"], **(limits | fields))


def test_the_fast_path_takes_plain_publishes() -> None:
    """A header-less publish to a known subject of a plain stream is taken; each exception is not."""
    config = _plain_config()
    loop = asyncio.new_event_loop()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            stream = _stream(Path(tmp), config, loop, 1 << 20)
            fast = ingest.ingest_plain
            assert not fast(stream, b"a", b"r", b"x")  # a new subject: the general path interns it
            stream.process_publish(b"a", b"r", b"", b"x")
            assert fast(stream, b"a", b"r", b"y") == 2
            assert not fast(stream, b"a", b"r.$FI", b"y")  # a fast batch
            stream.host.limits = object()  # account limits: check_resources has work to do
            assert not fast(stream, b"a", b"r", b"y")
            stream.host.limits = None
            for field, value in (("sealed", True), ("allow_msg_counter", True), ("retention", "interest")):
                stream.config = _plain_config(**{field: value})
                stream._compile()
                assert not stream.plain and not fast(stream, b"a", b"r", b"y"), field
            stream.store.close()
    finally:
        loop.close()


def test_the_compiled_twin_is_the_one_in_use() -> None:
    if not COMPILED:
        pytest.skip("JSEDGE_NO_EXTENSIONS is set: the compiled twin is not in use")
    assert ingest.IMPLEMENTATION == "c"
    assert ingest.ingest_plain is _compiled_ingest()
