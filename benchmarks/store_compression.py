"""Bytes on disk and bytes written by the file store with and without `compression: s2`.

    python benchmarks/store_compression.py [--count 200000]

Stores the same messages (JSON telemetry of ~110 B, and 1 KiB JSON documents) in a plain and in a
compressing store, then reports the blocks' size on disk, the bytes the process wrote
(`/proc/self/io` write_bytes: a sealed block is written plain, then once more compressed) and the
time per stored message. Not a test: numbers go to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from jsedge.store.base import StoreConfig
from jsedge.store.filestore import FileStore


def written() -> int:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def messages(kind: str, count: int) -> list[tuple[bytes, bytes]]:
    rng = random.Random(7)
    out = []
    for n in range(count):
        if kind == "telemetry":
            doc = {"sensor": f"temp-{rng.randrange(40)}", "celsius": round(rng.uniform(5, 35), 2), "n": n}
        else:
            doc = {
                "order": n,
                "customer": f"c-{rng.randrange(5000)}",
                "items": [{"sku": f"sku-{rng.randrange(900)}", "qty": rng.randrange(1, 5)} for _ in range(12)],
                "note": " ".join(
                    rng.choice(["fresh", "fragile", "gift", "express", "leave at door"]) for _ in range(40)
                ),
            }
        out.append((b"data.%d" % rng.randrange(40), json.dumps(doc).encode()))
    return out


def run(kind: str, count: int, compression: str) -> dict[str, float]:
    msgs = messages(kind, count)
    with tempfile.TemporaryDirectory() as tmp:
        before = written()
        start = time.perf_counter()
        store = FileStore(Path(tmp) / "s", StoreConfig(name="S", compression=compression))
        ts = time.time_ns()
        for subject, data in msgs:
            store.store_msg(subject, b"", data, ts)
        store.close()
        elapsed = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in (Path(tmp) / "s" / "msgs").glob("*.blk"))
        return {"disk": disk, "written": written() - before, "us_per_msg": elapsed / count * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200_000)
    args = parser.parse_args()
    print("| messages | compression | on disk | written | us/msg |")
    print("|---|---|---|---|---|")
    for kind, count in (("telemetry", args.count), ("1 KiB orders", args.count // 5)):
        for compression in ("none", "s2"):
            r = run(kind, count, compression)
            print(
                f"| {count} {kind} | {compression} | {r['disk'] / 2**20:.1f} MiB | "
                f"{r['written'] / 2**20:.1f} MiB | {r['us_per_msg']:.2f} |"
            )


if __name__ == "__main__":
    main()
