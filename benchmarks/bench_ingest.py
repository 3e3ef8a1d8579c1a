"""Micro benchmarks of the fused plain publish and apply (jsedge/jetstream/ingest.py), against the
general path they replace (pytest-benchmark).

    python -m pytest benchmarks/bench_ingest.py -o python_files='bench_*.py' -p no:randomly \
        --benchmark-group-by=group --benchmark-columns=min,median,ops

Scenarios, 256 messages of 128 B on one known subject of a file stream with default limits, as one
client window: `publish-256` stores them as a single node does (the general path is
`Stream.process_publish`: checks, a StoreMsg, apply, react, the PubAck queued), `apply-256` applies
256 replicated StoreMsg commands as every replica does (the general path is `Stream.apply` and
`Stream.react`). Each round runs on a fresh stream; the group-commit fsync is not part of it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import types
from typing import Any

import pytest

from jsedge.jetstream import ingest
from jsedge.jetstream.commands import StoreMsg
from jsedge.jetstream.models import StreamConfig
from jsedge.jetstream.stream import Stream, store_config
from jsedge.store.filestore import FileStore

SUBJECT = b"bench.orders.x"
DATA = b"x" * 128


def _paths() -> list[Any]:
    params: list[Any] = [
        pytest.param((None, None), id="general"),
        pytest.param((ingest._ingest_plain_py, ingest._apply_plain_py), id="py"),
    ]
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") in ("", "0"):
        from jsedge._speedups import ingest as compiled

        params.append(pytest.param((compiled.ingest_plain, compiled.apply_plain), id="c"))
    return params


PATHS = _paths()


def _stream(directory: str, loop: asyncio.AbstractEventLoop) -> Stream:
    config = StreamConfig(
        name="B", subjects=["bench.>"], max_msgs=-1, max_bytes=-1, max_msg_size=-1, max_msgs_per_subject=-1
    )
    host = types.SimpleNamespace(
        server=types.SimpleNamespace(loop=loop, logger=None),
        account=None,
        domain="",
        limits=None,
        jetstream=types.SimpleNamespace(explicit_limits=False),
        check_resources=lambda stream, size: None,
    )
    stream = Stream(host, config, FileStore(directory, store_config(config)), created=0)
    stream.process_publish(SUBJECT, b"", b"", DATA)  # the subject is known from here on
    return stream


def _rounds(benchmark: Any, run: Any) -> None:
    loop = asyncio.new_event_loop()
    streams: list[Stream] = []
    with tempfile.TemporaryDirectory() as tmp:

        def setup() -> tuple[tuple[Stream], dict[str, Any]]:
            stream = _stream(os.path.join(tmp, str(len(streams))), loop)
            streams.append(stream)
            return (stream,), {}

        benchmark.pedantic(run, setup=setup, rounds=60, iterations=1)
        for stream in streams:
            stream.store.close()
    loop.close()


@pytest.mark.parametrize("impl", PATHS)
def test_publish_256(benchmark: Any, impl: Any) -> None:
    benchmark.group = "publish-256"
    fast = impl[0]

    def run(stream: Stream) -> None:
        for i in range(256):
            reply = b"_INBOX.b.%d" % i
            if fast is None or not fast(stream, SUBJECT, reply, DATA):
                stream.process_publish(SUBJECT, reply, b"", DATA)
        assert len(stream._pending_acks) == 256

    _rounds(benchmark, run)


@pytest.mark.parametrize("impl", PATHS)
def test_apply_256(benchmark: Any, impl: Any) -> None:
    benchmark.group = "apply-256"
    fast = impl[1]
    ts = time.time_ns()

    def run(stream: Stream) -> None:
        for i in range(256):
            command = StoreMsg(SUBJECT, b"", DATA, ts + i, seq=i + 2)
            if fast is None or not fast(stream, command):
                stream.react(command, stream.apply(command), None)
        assert stream.store.last_seq() == 257

    _rounds(benchmark, run)
