"""`jsedge bench ...`: throughput and latency benchmarks (nats CLI: `nats bench ...`).

    pub SUBJECT | sub SUBJECT | pubsub SUBJECT | request SUBJECT
    js pub SUBJECT | js fetch SUBJECT | kv put | kv get
    common: --msgs N (default 100000), --size BYTES (default 128), --clients N (default 1)

Each client is its own connection (all in this process). The summary line is nats bench's:
`Pub stats: 123,456 msgs/sec ~ 15.07 MB/sec`, with per-client lines and min/avg/max/stddev for
several clients, then latency percentiles: per publish call (pub), publish-to-receive (sub,
pubsub: a timestamp in the payload), round trip (request, js pub, kv put, kv get) or per fetched
message (js fetch). `bench sub` alone waits for another process to publish on SUBJECT.
JetStream benchmarks use the stream `--stream` (default `benchstream`, created when missing on
SUBJECT with `--storage`, purged first with `--purge`) and the bucket `--bucket`
(default `benchbucket`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import struct
import sys
import time
from typing import Any

from jsedge.cli import output as out
from jsedge.cli.main import APIError, CLIError, Context, add_command, execute, new_parser, subcommands

_TS = struct.Struct(">Q")


class Stats:
    def __init__(self, name: str) -> None:
        self.name = name
        self.msgs = 0
        self.bytes = 0
        self.start = 0.0
        self.end = 0.0

    def rate(self) -> float:
        elapsed = max(self.end - self.start, 1e-9)
        return self.msgs / elapsed


def _split(total: int, clients: int) -> list[int]:
    base, extra = divmod(total, clients)
    return [base + (1 if i < extra else 0) for i in range(clients)]


def _payload(size: int) -> bytearray:
    return bytearray(b"x" * size)


def _stamp(buf: bytearray) -> bytes:
    if len(buf) >= 8:
        buf[:8] = _TS.pack(time.perf_counter_ns())
    return bytes(buf)


def percentile(sorted_values: list[int], pct: float) -> int:
    if not sorted_values:
        return 0
    k = max(0, min(len(sorted_values) - 1, math.ceil(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summary(kind: str, stats: list[Stats], size: int) -> dict[str, Any]:
    start = min(s.start for s in stats)
    end = max(s.end for s in stats)
    msgs = sum(s.msgs for s in stats)
    rate = msgs / max(end - start, 1e-9)
    return {
        "kind": kind,
        "msgs": msgs,
        "bytes": msgs * size,
        "seconds": end - start,
        "msgs_per_sec": rate,
        "mb_per_sec": rate * size / (1024 * 1024),
        "clients": [
            {"msgs": s.msgs, "msgs_per_sec": s.rate(), "mb_per_sec": s.rate() * size / (1024 * 1024)} for s in stats
        ],
    }


def print_summary(kind: str, data: dict[str, Any]) -> None:
    print(f"{kind} stats: {out.comma(int(data['msgs_per_sec']))} msgs/sec ~ {data['mb_per_sec']:.2f} MB/sec")
    clients = data["clients"]
    if len(clients) > 1:
        for i, c in enumerate(clients, 1):
            print(
                f" [{i}] {out.comma(int(c['msgs_per_sec']))} msgs/sec ~ {c['mb_per_sec']:.2f} MB/sec ({out.comma(c['msgs'])} msgs)"
            )
        rates = [c["msgs_per_sec"] for c in clients]
        avg = sum(rates) / len(rates)
        std = math.sqrt(sum((r - avg) ** 2 for r in rates) / len(rates))
        print(
            f" min {out.comma(int(min(rates)))} | avg {out.comma(int(avg))} | max {out.comma(int(max(rates)))} | stddev {out.comma(int(std))} msgs"
        )


def latency_stats(latencies: list[int]) -> dict[str, int]:
    values = sorted(latencies)
    if not values:
        return {}
    return {
        "min": values[0],
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "p99.9": percentile(values, 99.9),
        "max": values[-1],
        "avg": int(sum(values) / len(values)),
        "count": len(values),
    }


def print_latency(label: str, lat: dict[str, int]) -> None:
    if not lat:
        return
    parts = " | ".join(f"{k} {out.go_duration(lat[k])}" for k in ("min", "p50", "p90", "p99", "p99.9", "max"))
    print(f"{label} latency: {parts}")


class Bench:
    """Runs the clients of one benchmark, each with its own connection."""

    def __init__(self, ctx: Context, args: argparse.Namespace) -> None:
        self.ctx = ctx
        self.args = args
        self.size = out.parse_size(args.size)
        self.clients = max(1, args.clients)
        self.msgs = max(1, args.msgs)
        self.conns: list[Any] = []
        self.latencies: list[int] = []
        self.tracked: list[Stats] = []
        self._progress: asyncio.Task[None] | None = None
        self._bar: out.Progress | None = None

    def track(self, st: Stats) -> Stats:
        """A client's stats, counted by the progress bar (a terminal only, as `nats bench` draws it)."""
        self.tracked.append(st)
        if self._progress is None and not self.ctx.json and sys.stderr.isatty():
            self._progress = asyncio.get_running_loop().create_task(self._draw())
        return st

    async def _draw(self) -> None:
        self._bar = out.Progress("Progress", self.msgs, unit="msgs")
        while True:
            await asyncio.sleep(0.1)
            self._redraw()

    def _redraw(self) -> None:
        bar = self._bar
        if bar is not None:
            # every client of each kind (publishers, subscribers) counts towards the total
            bar.total = self.msgs * max(1, -(-len(self.tracked) // max(1, self.clients)))
            bar.update(sum(st.msgs for st in self.tracked) - bar.done)

    async def conn(self) -> Any:
        other = Context(self.ctx.args)
        nc = await other.connect()
        self.conns.append(other)
        return nc

    async def close(self) -> None:
        for c in self.conns:
            await c.close()

    def header(self, what: str, extra: str = "") -> None:
        if not self.ctx.json:
            a = self.args
            subject = f"subject={a.subject}, " if getattr(a, "subject", None) else ""
            print(
                f"Starting {what} benchmark [{subject}msgs={out.comma(self.msgs)}, "
                f"msgsize={out.ibytes(self.size)}, clients={self.clients}{extra}]"
            )

    def finish(self, results: dict[str, list[Stats]], latency_label: str) -> int:
        if self._progress is not None:
            self._progress.cancel()
            self._redraw()
            if self._bar is not None:
                self._bar.close()
        lat = latency_stats(self.latencies)
        if self.ctx.json:
            data = {kind: summary(kind, stats, self.size) for kind, stats in results.items()}
            data["latency"] = lat
            out.print_json(data)
            return 0
        for kind, stats in results.items():
            print_summary(kind, summary(kind, stats, self.size))
        print_latency(latency_label, lat)
        return 0


# -------------------------------------------------------------------------------------------------
# core


async def _publisher(b: Bench, nc: Any, subject: str, count: int, record_latency: bool, stamp: bool) -> Stats:
    st = b.track(Stats("pub"))
    buf = _payload(b.size)
    lat = b.latencies if record_latency else None
    st.start = time.perf_counter()
    for index in range(count):
        t0 = time.perf_counter_ns()
        await nc.publish(subject, _stamp(buf) if stamp else bytes(buf))
        if lat is not None:
            lat.append(time.perf_counter_ns() - t0)
        st.msgs = index + 1  # (the progress bar reads it)
    await nc.flush(timeout=max(b.ctx.timeout, 30))
    st.end = time.perf_counter()
    st.msgs, st.bytes = count, count * b.size
    return st


async def _subscriber(
    b: Bench, nc: Any, subject: str, expect: int, ready: asyncio.Event | None = None
) -> tuple[Stats, Any]:
    st = b.track(Stats("sub"))
    done = asyncio.get_running_loop().create_future()
    lat = b.latencies

    async def on_msg(msg: Any) -> None:
        now = time.perf_counter_ns()
        if st.msgs == 0:
            st.start = time.perf_counter()
        st.msgs += 1
        if len(msg.data) >= 8:
            sent = _TS.unpack_from(msg.data)[0]
            if 0 < sent <= now:
                lat.append(now - sent)
        if st.msgs >= expect and not done.done():
            st.end = time.perf_counter()
            done.set_result(True)

    await nc.subscribe(subject, cb=on_msg, pending_msgs_limit=max(65536, expect + 1))
    await nc.flush()
    return st, done


async def _wait(done: list[Any], idle: float, stats: list[Stats]) -> None:
    """Wait for all subscribers; give up when none made progress for `idle` seconds."""
    last, seen = time.monotonic(), -1
    while not all(d.done() for d in done):
        await asyncio.sleep(0.05)
        total = sum(s.msgs for s in stats)
        if total != seen:
            seen, last = total, time.monotonic()
        elif time.monotonic() - last > idle:
            for s in stats:
                if not s.end:
                    s.end = time.perf_counter()
            got = sum(s.msgs for s in stats)
            raise CLIError(
                f"subscribers stopped receiving after {out.comma(got)} messages (slow consumer or lost messages?)"
            )


async def cmd_pub(ctx: Context, args: argparse.Namespace) -> int:
    b = Bench(ctx, args)
    b.header("Core NATS publisher")
    try:
        conns = [await b.conn() for _ in range(b.clients)]
        stats = await asyncio.gather(
            *(_publisher(b, nc, args.subject, n, True, False) for nc, n in zip(conns, _split(b.msgs, b.clients)))
        )
    finally:
        await b.close()
    return b.finish({"Pub": list(stats)}, "Publish call")


async def cmd_sub(ctx: Context, args: argparse.Namespace) -> int:
    b = Bench(ctx, args)
    b.header("Core NATS subscriber")
    try:
        subs = [await _subscriber(b, await b.conn(), args.subject, b.msgs) for _ in range(b.clients)]
        if not ctx.json:
            print(f"Waiting for {out.comma(b.msgs)} messages on {args.subject} per subscriber")
        await _wait([d for _, d in subs], out.parse_duration(args.idle) / 1e9, [s for s, _ in subs])
    finally:
        await b.close()
    return b.finish({"Sub": [s for s, _ in subs]}, "Publish to receive")


async def cmd_pubsub(ctx: Context, args: argparse.Namespace) -> int:
    b = Bench(ctx, args)
    b.header("Core NATS pub/sub")
    try:
        subs = [await _subscriber(b, await b.conn(), args.subject, b.msgs) for _ in range(b.clients)]
        conns = [await b.conn() for _ in range(b.clients)]
        pubs_task = asyncio.gather(
            *(_publisher(b, nc, args.subject, n, False, True) for nc, n in zip(conns, _split(b.msgs, b.clients)))
        )
        pubs = await pubs_task
        await _wait([d for _, d in subs], out.parse_duration(args.idle) / 1e9, [s for s, _ in subs])
    finally:
        await b.close()
    return b.finish({"Pub": list(pubs), "Sub": [s for s, _ in subs]}, "Publish to receive")


async def cmd_request(ctx: Context, args: argparse.Namespace) -> int:
    b = Bench(ctx, args)
    b.header("Core NATS request/reply")

    async def replier(nc: Any) -> None:
        async def on_req(msg: Any) -> None:
            await nc.publish(msg.reply, msg.data)

        await nc.subscribe(args.subject, queue="jsedge-bench", cb=on_req)
        await nc.flush()

    async def requester(nc: Any, count: int) -> Stats:
        st = b.track(Stats("req"))
        data = bytes(_payload(b.size))
        st.start = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter_ns()
            await nc.request(args.subject, data, timeout=ctx.timeout)
            b.latencies.append(time.perf_counter_ns() - t0)
        st.end = time.perf_counter()
        st.msgs = count
        return st

    try:
        if not args.no_replier:
            for _ in range(b.clients):
                await replier(await b.conn())
        conns = [await b.conn() for _ in range(b.clients)]
        stats = await asyncio.gather(*(requester(nc, n) for nc, n in zip(conns, _split(b.msgs, b.clients))))
    finally:
        await b.close()
    return b.finish({"Request": list(stats)}, "Request round trip")


# -------------------------------------------------------------------------------------------------
# JetStream


async def _ensure_stream(ctx: Context, args: argparse.Namespace) -> None:
    try:
        await ctx.api(f"STREAM.INFO.{args.stream}")
        if args.purge:
            await ctx.api(f"STREAM.PURGE.{args.stream}", context=f"could not purge {args.stream}")
        return
    except APIError as exc:
        if exc.err_code != 10059:
            raise
    cfg = {
        "name": args.stream,
        "subjects": [args.subject],
        "storage": args.storage,
        "retention": "limits",
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "discard": "old",
        "num_replicas": 1,
    }
    await ctx.api(f"STREAM.CREATE.{args.stream}", cfg, context=f"could not create stream {args.stream}")


async def cmd_js_pub(ctx: Context, args: argparse.Namespace) -> int:
    b = Bench(ctx, args)
    await _ensure_stream(ctx, args)
    b.header("JetStream publisher", f", stream={args.stream}, batch={args.batch}")

    async def publisher(nc: Any, count: int) -> Stats:
        st = b.track(Stats("pub"))
        data = bytes(_payload(b.size))
        st.start = time.perf_counter()
        sent = 0

        async def one() -> None:
            t0 = time.perf_counter_ns()
            msg = await nc.request(args.subject, data, timeout=ctx.timeout)
            b.latencies.append(time.perf_counter_ns() - t0)
            if msg.data.startswith(b'{"error"') or b'"error"' in msg.data[:20]:
                raise CLIError(f"publish failed: {json.loads(msg.data)['error'].get('description')}")

        while sent < count:
            window = min(args.batch, count - sent)
            await asyncio.gather(*(one() for _ in range(window)))
            sent += window
            st.msgs = sent
        st.end = time.perf_counter()
        st.msgs = count
        return st

    try:
        conns = [await b.conn() for _ in range(b.clients)]
        stats = await asyncio.gather(*(publisher(nc, n) for nc, n in zip(conns, _split(b.msgs, b.clients))))
    finally:
        await b.close()
    return b.finish({"Pub": list(stats)}, "Publish ack round trip")


async def cmd_js_fetch(ctx: Context, args: argparse.Namespace) -> int:
    b = Bench(ctx, args)
    info = await ctx.api(
        f"STREAM.INFO.{args.stream}", context=f"could not use stream {args.stream} (run `bench js pub` first)"
    )
    available = int((info.get("state") or {}).get("messages") or 0)
    if available == 0:
        raise CLIError(f"stream {args.stream} has no messages (run `jsedge bench js pub {args.subject}` first)")
    b.msgs = min(b.msgs, available)
    b.header("JetStream fetch consumer", f", stream={args.stream}, batch={args.batch}")
    consumer = "jsedge-bench-fetch"
    cfg = {
        "durable_name": consumer,
        "name": consumer,
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": 30_000_000_000,
        "max_ack_pending": -1,
        "replay_policy": "instant",
    }
    try:
        await ctx.api(f"CONSUMER.DELETE.{args.stream}.{consumer}")
    except CLIError:
        pass
    await ctx.api(
        f"CONSUMER.CREATE.{args.stream}.{consumer}",
        {"stream_name": args.stream, "config": cfg},
        context="could not create the benchmark consumer",
    )
    subject = f"{ctx.api_prefix}.CONSUMER.MSG.NEXT.{args.stream}.{consumer}"
    remaining = [b.msgs]

    async def fetcher(nc: Any) -> Stats:
        st = b.track(Stats("fetch"))
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        st.start = time.perf_counter()
        while remaining[0] > 0:
            want = min(args.batch, remaining[0])
            remaining[0] -= want
            t0 = time.perf_counter_ns()
            await nc.publish(subject, json.dumps({"batch": want, "expires": 2_000_000_000}).encode(), reply=inbox)
            got = 0
            while got < want:
                try:
                    msg = await sub.next_msg(timeout=3)
                except Exception:
                    break
                if msg.headers and msg.headers.get("Status"):
                    break
                got += 1
                b.latencies.append(time.perf_counter_ns() - t0)
                await nc.publish(msg.reply, b"+ACK")
            st.msgs += got
            if got < want:
                remaining[0] += want - got
                if got == 0:
                    break
        await nc.flush()
        st.end = time.perf_counter()
        await sub.unsubscribe()
        return st

    try:
        conns = [await b.conn() for _ in range(b.clients)]
        stats = await asyncio.gather(*(fetcher(nc) for nc in conns))
    finally:
        await b.close()
        try:
            await ctx.api(f"CONSUMER.DELETE.{args.stream}.{consumer}")
        except CLIError:
            pass
    return b.finish({"Fetch": list(stats)}, "Fetch (request to message)")


async def _ensure_bucket(ctx: Context, args: argparse.Namespace) -> None:
    try:
        await ctx.api(f"STREAM.INFO.KV_{args.bucket}")
        return
    except APIError as exc:
        if exc.err_code != 10059:
            raise
    cfg = {
        "name": f"KV_{args.bucket}",
        "subjects": [f"$KV.{args.bucket}.>"],
        "max_msgs_per_subject": 1,
        "discard": "new",
        "allow_rollup_hdrs": True,
        "deny_delete": True,
        "allow_direct": True,
        "storage": args.storage,
        "num_replicas": 1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_consumers": -1,
        "duplicate_window": 120_000_000_000,
    }
    await ctx.api(f"STREAM.CREATE.KV_{args.bucket}", cfg, context=f"could not create bucket {args.bucket}")


async def cmd_kv_put(ctx: Context, args: argparse.Namespace) -> int:
    b = Bench(ctx, args)
    await _ensure_bucket(ctx, args)
    b.header("KV put", f", bucket={args.bucket}, keys={args.keys}")

    async def putter(nc: Any, index: int, count: int) -> Stats:
        st = b.track(Stats("put"))
        data = bytes(_payload(b.size))
        st.start = time.perf_counter()
        for i in range(count):
            key = f"$KV.{args.bucket}.{(index + i * b.clients) % args.keys}"
            t0 = time.perf_counter_ns()
            msg = await nc.request(key, data, timeout=ctx.timeout)
            b.latencies.append(time.perf_counter_ns() - t0)
            if b'"error"' in msg.data:
                raise CLIError(f"put failed: {json.loads(msg.data)['error'].get('description')}")
        st.end = time.perf_counter()
        st.msgs = count
        return st

    try:
        conns = [await b.conn() for _ in range(b.clients)]
        stats = await asyncio.gather(
            *(putter(nc, i, n) for i, (nc, n) in enumerate(zip(conns, _split(b.msgs, b.clients))))
        )
    finally:
        await b.close()
    return b.finish({"Put": list(stats)}, "Put round trip")


async def cmd_kv_get(ctx: Context, args: argparse.Namespace) -> int:
    b = Bench(ctx, args)
    try:
        info = await ctx.api(f"STREAM.INFO.KV_{args.bucket}")
    except APIError as exc:
        raise CLIError(f"bucket {args.bucket} not found (run `jsedge bench kv put` first)") from exc
    direct = bool((info.get("config") or {}).get("allow_direct"))
    b.header("KV get", f", bucket={args.bucket}, keys={args.keys}")

    async def getter(nc: Any, index: int, count: int) -> Stats:
        st = b.track(Stats("get"))
        st.start = time.perf_counter()
        for i in range(count):
            key = f"$KV.{args.bucket}.{(index + i * b.clients) % args.keys}"
            t0 = time.perf_counter_ns()
            if direct:
                msg = await nc.request(f"{ctx.api_prefix}.DIRECT.GET.KV_{args.bucket}.{key}", b"", timeout=ctx.timeout)
                if msg.headers and msg.headers.get("Status") == "404":
                    raise CLIError(f"key {key} not found (run `jsedge bench kv put` with as many --keys first)")
            else:
                msg = await nc.request(
                    f"{ctx.api_prefix}.STREAM.MSG.GET.KV_{args.bucket}",
                    json.dumps({"last_by_subj": key}).encode(),
                    timeout=ctx.timeout,
                )
                if b'"error"' in msg.data[:40]:
                    raise CLIError(f"key {key} not found (run `jsedge bench kv put` with as many --keys first)")
            b.latencies.append(time.perf_counter_ns() - t0)
        st.end = time.perf_counter()
        st.msgs = count
        return st

    try:
        conns = [await b.conn() for _ in range(b.clients)]
        stats = await asyncio.gather(
            *(getter(nc, i, n) for i, (nc, n) in enumerate(zip(conns, _split(b.msgs, b.clients))))
        )
    finally:
        await b.close()
    b.size = max(b.size, 0)
    return b.finish({"Get": list(stats)}, "Get round trip")


# -------------------------------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser, subject: bool = True) -> None:
    if subject:
        p.add_argument("subject")
    p.add_argument("--msgs", type=int, default=100_000, help="number of messages (default 100000)")
    p.add_argument("--size", default="128", help="message size, e.g. 128, 1KB (default 128)")
    p.add_argument(
        "--clients", type=int, default=1, help="concurrent clients, each with its own connection (default 1)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("bench", "Benchmark a NATS server")
    sub = subcommands(parser)
    for name, fn, text in (
        ("pub", cmd_pub, "core publishers"),
        ("sub", cmd_sub, "core subscribers (publish elsewhere)"),
        ("pubsub", cmd_pubsub, "core publishers and subscribers"),
        ("request", cmd_request, "request/reply"),
    ):
        p = add_command(sub, name, fn, text)
        _common(p)
        if name in ("sub", "pubsub"):
            p.add_argument("--idle", default="10s", help="give up after no messages for this long (default 10s)")
        if name == "request":
            p.add_argument("--no-replier", action="store_true", help="do not start repliers (another process answers)")

    js = sub.add_parser("js", help="JetStream benchmarks")
    jsub = subcommands(js, "JetStream benchmarks")
    for name, fn, text in (
        ("pub", cmd_js_pub, "JetStream publishers (acknowledged)"),
        ("fetch", cmd_js_fetch, "pull consumer fetches"),
    ):
        p = add_command(jsub, name, fn, text)
        _common(p)
        p.add_argument("--stream", default="benchstream", help="stream (default benchstream)")
        p.add_argument("--storage", type=str.lower, choices=["file", "memory"], default="file")
        p.add_argument(
            "--batch",
            type=int,
            default=100 if name == "fetch" else 1,
            help="fetch batch / publishes in flight per client",
        )
        p.add_argument("--purge", action="store_true", help="purge the stream first")

    kv = sub.add_parser("kv", help="key-value benchmarks")
    ksub = subcommands(kv, "key-value benchmarks")
    for name, fn, text in (("put", cmd_kv_put, "KV puts"), ("get", cmd_kv_get, "KV gets")):
        p = add_command(ksub, name, fn, text)
        _common(p, subject=False)
        p.add_argument("--bucket", default="benchbucket", help="bucket (default benchbucket)")
        p.add_argument("--keys", type=int, default=100, help="distinct keys (default 100)")
        p.add_argument("--storage", type=str.lower, choices=["file", "memory"], default="file")
    return parser


def main(argv: list[str]) -> int:
    return execute(build_parser(), argv)
