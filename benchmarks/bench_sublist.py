"""Micro benchmarks of the sublist twins, Python against Cython (pytest-benchmark).

Run from the repo root (file names here are bench_*, not test_*):

    python -m pytest benchmarks/bench_sublist.py -o python_files='bench_*.py' -p no:randomly \
        --benchmark-group-by=group --benchmark-columns=min,median,ops

Scenarios: match with a cache hit; match with a cache miss on 10k and 100k subscriptions (cache off,
so every call walks the trie); insert+remove churn on a warm 10k sublist; deliver of a 16 B and a
1 KiB message to 1 and 4 subscribers, in batches of 100 publishes followed by one flush_pending (what
one socket read does on the server).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import pytest

from jsedge.routing import _sublist_py


def _twins() -> list[Any]:
    params: list[Any] = [pytest.param(_sublist_py, id="py")]
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") in ("", "0"):
        params.append(pytest.param(importlib.import_module("jsedge._speedups.sublist"), id="c"))
    return params


TWINS = _twins()
BATCH = 100


def populate(impl: ModuleType, count: int, cache: bool = True) -> Any:
    """A realistic mix: mostly literal service subjects, 10% `*`, 1% `>`, 5% queue subscribers."""
    sublist = impl.Sublist(cache=cache)
    core = impl.ClientCore()
    for index in range(count):
        region = b"r%d" % (index % 16)
        if index % 100 == 0:
            subject = b"orders.%b.>" % region
        elif index % 10 == 0:
            subject = b"orders.%b.*.created" % region
        else:
            subject = b"orders.%b.%d.created" % (region, index)
        queue = b"workers" if index % 20 == 0 else None
        sublist.insert(impl.Subscription(core, subject, b"%d" % index, queue))
    return sublist


@pytest.mark.parametrize("impl", TWINS)
def test_match_cache_hit(benchmark: Any, impl: ModuleType) -> None:
    benchmark.group = "match-cache-hit-10k"
    sublist = populate(impl, 10_000)
    subject = b"orders.r2.1234.created"  # 1234 % 16 == 2: a literal subscription exists
    sublist.match(subject)
    result = benchmark(sublist.match, subject)
    assert result.psubs


@pytest.mark.parametrize("count", [10_000, 100_000])
@pytest.mark.parametrize("impl", TWINS)
def test_match_cache_miss(benchmark: Any, impl: ModuleType, count: int) -> None:
    benchmark.group = f"match-cache-miss-{count // 1000}k"
    sublist = populate(impl, count, cache=False)
    subject = b"orders.r5.1237.created"
    result = benchmark(sublist.match, subject)
    assert result.psubs


@pytest.mark.parametrize("impl", TWINS)
def test_insert_remove_churn(benchmark: Any, impl: ModuleType) -> None:
    benchmark.group = "insert-remove-churn-10k"
    sublist = populate(impl, 10_000)
    for index in range(1000):  # a warm cache, so invalidation has work to do
        sublist.match(b"orders.r%d.%d.created" % (index % 16, index))
    core = impl.ClientCore()
    literal = impl.Subscription(core, b"orders.r3.99999.created", b"x")
    wildcard = impl.Subscription(core, b"orders.r3.*.created", b"y")

    def churn() -> None:
        sublist.insert(literal)
        sublist.remove(literal)
        sublist.insert(wildcard)
        sublist.remove(wildcard)

    benchmark(churn)


@pytest.mark.parametrize("receivers", [1, 4])
@pytest.mark.parametrize("size", [16, 1024])
@pytest.mark.parametrize("impl", TWINS)
def test_deliver(benchmark: Any, impl: ModuleType, size: int, receivers: int) -> None:
    benchmark.group = f"deliver-{size}B-to-{receivers}-x{BATCH}"
    sublist = populate(impl, 1000)
    src = impl.ClientCore()
    src.sublist = sublist
    for index in range(receivers):
        core = impl.ClientCore()
        core.pending = src.pending
        sublist.insert(impl.Subscription(core, b"bench.subject", b"%d" % index))
    payload = b"x" * size
    deliver = impl.deliver
    flush_pending = impl.flush_pending
    pending = src.pending

    def one_read() -> None:
        for _ in range(BATCH):
            deliver(src, b"bench.subject", b"", -1, payload)
        flush_pending(pending)

    benchmark(one_read)
    assert src.in_msgs >= BATCH
