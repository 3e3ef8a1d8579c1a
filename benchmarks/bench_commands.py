"""Micro benchmarks of the stream command codec twins, Python against Cython (pytest-benchmark).

    python -m pytest benchmarks/bench_commands.py -o python_files='bench_*.py' -p no:randomly \
        --benchmark-group-by=group --benchmark-columns=min,median,ops

Scenarios (what a replicated publish costs per message): encode a batch entry of 256 StoreMsg commands
(128 B payload, 14 B subject, stated sequence), as a stream leader does per client window, and decode
it back, as every follower does before applying.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from jsedge.jetstream import commands as C


def _twins() -> list[Any]:
    params: list[Any] = [pytest.param((C._encode_store_batch_py, C._decode_batch_py), id="py")]
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") in ("", "0"):
        from jsedge._speedups import commands as compiled

        params.append(pytest.param((compiled.encode_store_batch, compiled.decode_batch), id="c"))
    return params


TWINS = _twins()
BATCH = [
    C.StoreMsg(b"bench.orders.x", b"", b"x" * 128, 1_733_300_000_000_000_000 + i, seq=1_000 + i) for i in range(256)
]


@pytest.mark.parametrize("impl", TWINS)
def test_encode_batch_of_256(benchmark: Any, impl: Any) -> None:
    benchmark.group = "encode-256"
    encode = impl[0]
    data = benchmark(encode, BATCH)
    assert data == C._encode_store_batch_py(BATCH)


@pytest.mark.parametrize("impl", TWINS)
def test_decode_batch_of_256(benchmark: Any, impl: Any) -> None:
    benchmark.group = "decode-256"
    data = C._encode_store_batch_py(BATCH)
    decoded = benchmark(impl[1], data)
    assert len(decoded) == 256
