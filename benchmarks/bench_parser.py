"""Micro benchmarks of the parser twins, Python against Cython (pytest-benchmark).

Run from the repo root (file names here are bench_*, not test_*):

    python -m pytest benchmarks/bench_parser.py -o python_files='bench_*.py' -p no:randomly \
        --benchmark-group-by=group --benchmark-columns=min,median,ops

or, for a quick table of c/py ratios without pytest: `PYTHONPATH=. python benchmarks/bench_parser.py`.

Scenario: a stream of pipelined `PUB subj.ect <n>` frames (16 B and 1 KiB payloads: 10k PUBs;
64 KiB payloads: 1k PUBs, 64 MiB, to keep memory reasonable), pre-cut into reads of 65521 bytes
(a prime just under 64 KiB, so the read boundaries fall at every kind of awkward offset: inside op
names, control lines, payloads and CRLFs), fed to a fresh parser.
* `handler`: `fast_pub` False; the handler's `proto_pub` only counts calls (parser cost alone).
* `fused`: `fast_pub` True; the parser hands each message to the sublist twin's `deliver()`, which
  frames it into one subscriber's outbuf; after each read `flush_pending()` runs, as the server
  does (the subscriber's default `flush()` drops the buffer).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from jsedge.protocol import _parser_py
from jsedge.routing import _sublist_py

READ = 65521
SIZES = {16: 10_000, 1024: 10_000, 65536: 1_000}


def _twins() -> list[tuple[str, Any, Any]]:
    twins: list[tuple[str, Any, Any]] = [("py", _parser_py, _sublist_py)]
    if os.environ.get("JSEDGE_NO_EXTENSIONS", "") in ("", "0"):
        twins.append(
            (
                "c",
                importlib.import_module("jsedge._speedups.parser"),
                importlib.import_module("jsedge._speedups.sublist"),
            )
        )
    return twins


TWINS = _twins()


def make_reads(size: int, count: int) -> list[bytes]:
    payload = b"x" * size
    frame = b"PUB bench.subject.%d %d\r\n%s\r\n" % (size, size, payload)
    stream = frame * count
    return [stream[k : k + READ] for k in range(0, len(stream), READ)]


class Counter:
    """Handler whose proto_pub only counts."""

    def __init__(self) -> None:
        self.pubs = 0

    def proto_pub_arg(self, subject: bytes) -> None:
        pass

    def proto_pub(self, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        self.pubs += 1

    def proto_error(self, key: str) -> None:
        raise AssertionError(f"parser error {key}")


def handler_run(parser_mod: Any, sublist_mod: Any, reads: list[bytes], count: int) -> Callable[[], None]:
    def run() -> None:
        core = sublist_mod.ClientCore()
        handler = Counter()
        p = parser_mod.Parser(core, handler)
        for chunk in reads:
            p.feed(chunk)
        assert handler.pubs == count

    return run


def fused_run(parser_mod: Any, sublist_mod: Any, reads: list[bytes], count: int, size: int) -> Callable[[], None]:
    sl = sublist_mod.Sublist()
    subscriber = sublist_mod.ClientCore()
    subscriber.sublist = sl
    sl.insert(sublist_mod.Subscription(subscriber, b"bench.subject.%d" % size, b"1"))
    flush_pending = sublist_mod.flush_pending

    def run() -> None:
        core = sublist_mod.ClientCore()
        core.fast_pub = True
        core.sublist = sl
        p = parser_mod.Parser(core, Counter())
        pending = core.pending
        for chunk in reads:
            p.feed(chunk)
            flush_pending(pending)
        assert core.in_msgs == count

    return run


_READS: dict[int, list[bytes]] = {}


def reads_for(size: int) -> list[bytes]:
    if size not in _READS:
        _READS[size] = make_reads(size, SIZES[size])
    return _READS[size]


@pytest.mark.parametrize("size", list(SIZES), ids=lambda s: f"{s}B")
@pytest.mark.parametrize("twin", TWINS, ids=[t[0] for t in TWINS])
def test_parse_handler(benchmark: Any, twin: tuple[str, Any, Any], size: int) -> None:
    benchmark.group = f"parse-handler-{size}B"
    _, parser_mod, sublist_mod = twin
    benchmark(handler_run(parser_mod, sublist_mod, reads_for(size), SIZES[size]))


@pytest.mark.parametrize("size", list(SIZES), ids=lambda s: f"{s}B")
@pytest.mark.parametrize("twin", TWINS, ids=[t[0] for t in TWINS])
def test_parse_fused(benchmark: Any, twin: tuple[str, Any, Any], size: int) -> None:
    benchmark.group = f"parse-fused-1sub-{size}B"
    _, parser_mod, sublist_mod = twin
    benchmark(fused_run(parser_mod, sublist_mod, reads_for(size), SIZES[size], size))


def _best(fn: Callable[[], None], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    """Print per-message times and the c/py ratio of every scenario (best of 5)."""
    if len(TWINS) < 2:
        sys.exit("compiled twins not available (JSEDGE_NO_EXTENSIONS set?)")
    print(f"{'scenario':<24}{'py ns/msg':>12}{'c ns/msg':>12}{'py/c speedup':>14}")
    for mode in ("handler", "fused"):
        for size, count in SIZES.items():
            reads = reads_for(size)
            times = []
            for _, parser_mod, sublist_mod in TWINS:
                if mode == "handler":
                    fn = handler_run(parser_mod, sublist_mod, reads, count)
                else:
                    fn = fused_run(parser_mod, sublist_mod, reads, count, size)
                times.append(_best(fn) / count * 1e9)
            print(f"{mode + ' ' + str(size) + 'B':<24}{times[0]:>12.0f}{times[1]:>12.0f}{times[0] / times[1]:>13.1f}x")


if __name__ == "__main__":
    main()
