"""Micro benchmarks of the segment codec twins, Python against Cython (pytest-benchmark).

    python -m pytest benchmarks/bench_codec.py -o python_files='bench_*.py' -p no:randomly \
        --benchmark-group-by=group --benchmark-columns=min,median,ops

Scenarios: encode one 128 B record (16 B subject, no headers) and one 1 KiB record with a 40 B header
block into a block buffer; scan a 4 MiB block of 128 B records (what a restart does per block).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest

from jsedge.store import _codec_py


def _twins() -> list[Any]:
    params: list[Any] = [pytest.param(_codec_py, id="py")]
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") in ("", "0"):
        params.append(pytest.param(importlib.import_module("jsedge._speedups.codec"), id="c"))
    return params


TWINS = _twins()
BASE_SEQ = 1_000_000
BASE_TS = 1_700_000_000_000_000_000
SUBJECT = b"orders.eu.create"
HDR = b"NATS/1.0\r\nNats-Msg-Id: 0123456789ab\r\n\r\n"


@pytest.mark.parametrize("size,hdr", [(128, b""), (1024, HDR)], ids=["128B", "1KiB+hdr"])
@pytest.mark.parametrize("impl", TWINS)
def test_encode(benchmark: Any, impl: ModuleType, size: int, hdr: bytes) -> None:
    benchmark.group = f"encode-{size}B"
    payload = b"x" * size
    encode = impl.encode_msg
    out = bytearray()

    def run() -> None:
        del out[:]
        for i in range(100):
            encode(out, BASE_SEQ, BASE_TS, BASE_SEQ + 5000 + i, BASE_TS + 3_000_000_000 + i, SUBJECT, hdr, payload)

    benchmark(run)
    assert len(out) > 100 * size


def _block(impl: ModuleType, count: int) -> bytes:
    out = bytearray()
    for i in range(count):
        impl.encode_msg(out, BASE_SEQ, BASE_TS, BASE_SEQ + i, BASE_TS + i * 1000, SUBJECT, b"", b"y" * 128)
    return bytes(out)


@pytest.mark.parametrize("impl", TWINS)
def test_scan_block(benchmark: Any, impl: ModuleType) -> None:
    benchmark.group = "scan-4MiB-block"
    block = _block(_codec_py, 4 * 1024 * 1024 // 150)
    entries, corrupt, end = benchmark(impl.scan, block, BASE_SEQ, BASE_TS)
    assert not corrupt and end == len(block)


@pytest.mark.parametrize("impl", TWINS)
def test_decode_one(benchmark: Any, impl: ModuleType) -> None:
    benchmark.group = "decode-128B"
    block = _block(_codec_py, 1)
    benchmark(impl.decode, block, 0, BASE_SEQ, BASE_TS)
