"""`jsedge pub|sub|req|reply`: core NATS messaging and JetStream replay (nats CLI: `nats pub` ...).

    pub SUBJECT [BODY]   [--count N] [-H K:V]... [--sleep D] [--reply S] [-J/--jetstream]
    sub SUBJECT          [--queue Q] [--count N] [--wait D] [--raw]
                         [--stream S [--all|--new|--last|--last-per-subject|--start-seq N|--since D]]
    req SUBJECT [BODY]   [-H K:V]... [--raw] [--replies N]
    reply SUBJECT [BODY] [--queue Q] [--echo] [--count N] [-H K:V]...

Bodies and header values are templates like the nats CLI's: `{{Count}}` (1-based message number;
`{{.Count}}` works too), `{{TimeStamp}}` (RFC 3339), `{{Unix}}`, `{{UnixNano}}`, `{{Time}}`,
`{{ID}}` (a unique id), `{{Random 10 100}}` (that many random characters); `reply` also offers
`{{Request}}` (the request body). Without a BODY, `pub` reads the body from stdin when it is not a
terminal.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import time
from datetime import UTC, datetime
from typing import Any

from jsedge.cli import output as out
from jsedge.cli.main import APIError, CLIError, Context, execute, new_parser

_TEMPLATE = re.compile(r"\{\{\s*\.?(\w+)((?:\s+\d+)*)\s*\}\}")


def render(template: str, count: int, request: bytes = b"") -> str:
    def sub(m: re.Match[str]) -> str:
        name, params = m.group(1).lower(), [int(p) for p in m.group(2).split()]
        now = datetime.now(UTC)
        if name == "count":
            return str(count)
        if name == "timestamp":
            return now.isoformat().replace("+00:00", "Z")
        if name == "unix":
            return str(int(now.timestamp()))
        if name == "unixnano":
            return str(time.time_ns())
        if name == "time":
            return now.astimezone().strftime("%H:%M:%S")
        if name == "id":
            import uuid

            return uuid.uuid4().hex
        if name == "random":
            lo = params[0] if params else 10
            hi = params[1] if len(params) > 1 else lo
            return "".join(random.choices(string.ascii_letters + string.digits, k=random.randint(lo, max(lo, hi))))
        if name == "request":
            return request.decode("utf-8", "replace")
        return m.group(0)

    return _TEMPLATE.sub(sub, template) if "{{" in template else template


def parse_headers(items: list[str] | None, count: int = 1) -> dict[str, str] | None:
    if not items:
        return None
    headers: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise CLIError(f"invalid header {item!r}: use KEY:VALUE")
        headers[key.strip()] = render(value.strip(), count)
    return headers


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S")


def _print_msg(msg: Any, raw: bool, label: str) -> None:
    if raw:
        sys.stdout.write(msg.data.decode("utf-8", "replace") + "\n")
        return
    print(label)
    headers = {k: v for k, v in (msg.headers or {}).items()}
    if headers:
        for k, v in headers.items():
            print(f"{k}: {v}")
        print()
    print(msg.data.decode("utf-8", "replace") if msg.data else "nil body")
    print()


# -------------------------------------------------------------------------------------------------
# pub


async def cmd_pub(ctx: Context, args: argparse.Namespace) -> int:
    body = args.body
    if body is None:
        body = "" if sys.stdin.isatty() else sys.stdin.read()
    count = max(1, args.count)
    sleep = out.parse_duration(args.sleep) / 1e9 if args.sleep else 0.0
    bar = (
        out.Progress(f"Publishing to {args.subject}", count, unit="msgs")
        if count > 1 and not ctx.json and not args.quiet
        else None
    )
    acks = []
    for i in range(1, count + 1):
        data = render(body, i).encode()
        headers = parse_headers(args.header, i)
        if args.jetstream:
            msg = await ctx.request(args.subject, data, headers=headers)
            ack = json.loads(msg.data or b"{}")
            if ack.get("error"):
                raise APIError(ack["error"], f"could not publish to {args.subject}")
            acks.append(ack)
            if count == 1 and not ctx.json:
                dup = " (duplicate)" if ack.get("duplicate") else ""
                print(
                    f'{_now()} Published {len(data)} bytes to "{args.subject}"\n{_now()} Stored in Stream: {ack.get("stream")} Sequence: {ack.get("seq")}{dup}'
                )
        else:
            await ctx.nc.publish(args.subject, data, reply=args.reply or "", headers=headers)
            if count == 1 and not ctx.json and not args.quiet:
                print(f'{_now()} Published {len(data)} bytes to "{args.subject}"')
        if bar:
            bar.update(1)
        if sleep:
            import asyncio  # (a command with --sleep runs on nats-py: see build_parser)

            await asyncio.sleep(sleep)
    await ctx.nc.flush(timeout=ctx.timeout)
    if bar:
        bar.close()
    if ctx.json:
        out.print_json(
            {"subject": args.subject, "published": count, "acks": acks}
            if args.jetstream
            else {"subject": args.subject, "published": count}
        )
    elif count > 1 and not args.quiet:
        print(f'{_now()} Published {out.comma(count)} messages to "{args.subject}"')
    return 0


# -------------------------------------------------------------------------------------------------
# sub


async def _stream_consumer(ctx: Context, args: argparse.Namespace, inbox: str) -> str:
    cfg: dict[str, Any] = {
        "deliver_subject": inbox,
        "ack_policy": "none",
        "max_deliver": 1,
        "flow_control": True,
        "idle_heartbeat": 5_000_000_000,
        "replay_policy": "instant",
        "mem_storage": True,
        "num_replicas": 1,
        "inactive_threshold": 300_000_000_000,
        "deliver_policy": "all",
    }
    if args.new:
        cfg["deliver_policy"] = "new"
    elif args.last:
        cfg["deliver_policy"] = "last"
    elif args.last_per_subject:
        cfg["deliver_policy"] = "last_per_subject"
    elif args.start_seq:
        cfg["deliver_policy"], cfg["opt_start_seq"] = "by_start_sequence", args.start_seq
    elif args.since:
        start = datetime.now(UTC).timestamp() - out.parse_duration(args.since) / 1e9
        cfg["deliver_policy"] = "by_start_time"
        cfg["opt_start_time"] = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if args.subject and args.subject != ">":
        cfg["filter_subject"] = args.subject
    info = await ctx.api(
        f"CONSUMER.CREATE.{args.stream}",
        {"stream_name": args.stream, "config": cfg},
        context=f"could not subscribe to stream {args.stream}",
    )
    return info["name"]


async def cmd_sub(ctx: Context, args: argparse.Namespace) -> int:
    if not args.subject and not args.stream:
        raise CLIError("a subject (or --stream) is required")
    import asyncio

    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def on_msg(msg: Any) -> None:
        await queue.put(msg)

    consumer = None
    if args.stream:
        inbox = ctx.nc.new_inbox()
        sub = await ctx.nc.subscribe(inbox, cb=on_msg)
        consumer = await _stream_consumer(ctx, args, inbox)
        what = f"stream {args.stream}" + (f" subject {args.subject}" if args.subject else "")
    else:
        sub = await ctx.nc.subscribe(args.subject, queue=args.queue or "", cb=on_msg)
        what = args.subject + (f" in group {args.queue}" if args.queue else "")
    await ctx.nc.flush(timeout=ctx.timeout)
    if not args.raw and not ctx.json:
        print(f"{_now()} Subscribing on {what}" + (f" (exiting after {args.count} messages)" if args.count else ""))
        sys.stdout.flush()
    deadline = time.monotonic() + out.parse_duration(args.wait) / 1e9 if args.wait else None
    n = 0
    try:
        while not args.count or n < args.count:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            try:
                msg = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                break
            if args.stream and msg.headers and msg.headers.get("Status") == "100":
                if msg.reply:  # flow control
                    await ctx.nc.publish(msg.reply, b"")
                continue
            n += 1
            if ctx.json:
                record: dict[str, Any] = {"subject": msg.subject, "data": msg.data.decode("utf-8", "replace")}
                if msg.headers:
                    record["headers"] = dict(msg.headers)
                if msg.reply:
                    record["reply"] = msg.reply
                print(json.dumps(record))
            elif args.stream:
                from jsedge.cli.consumer import _ack_meta

                meta = _ack_meta(msg.reply)
                _print_msg(
                    msg,
                    args.raw,
                    f"[#{n}] Received JetStream message: stream: {args.stream} seq {meta.get('stream_seq', '?')} "
                    f"/ subject: {msg.subject} / pending: {meta.get('pending', '?')}",
                )
            else:
                _print_msg(
                    msg,
                    args.raw,
                    f'[#{n}] Received on "{msg.subject}"' + (f' with reply "{msg.reply}"' if msg.reply else ""),
                )
            sys.stdout.flush()
    finally:
        await sub.unsubscribe()
        if consumer:
            try:
                await ctx.api(f"CONSUMER.DELETE.{args.stream}.{consumer}", timeout=1)
            except CLIError:
                pass
    return 0


# -------------------------------------------------------------------------------------------------
# req / reply


async def cmd_req(ctx: Context, args: argparse.Namespace) -> int:
    no_responders, timed_out = ctx.request_errors()
    body = args.body
    if body is None:
        body = "" if sys.stdin.isatty() else sys.stdin.read()
    count = max(1, args.count)
    for i in range(1, count + 1):
        data = render(body, i).encode()
        if not args.raw and not ctx.json:
            print(f'{_now()} Sending request on "{args.subject}"')
        started = time.perf_counter()
        try:
            msg = await ctx.nc.request(args.subject, data, timeout=ctx.timeout, headers=parse_headers(args.header, i))
        except no_responders:
            raise CLIError(f"no responders are available on {args.subject}") from None
        except timed_out:
            raise CLIError(f"timeout waiting for a reply on {args.subject}") from None
        rtt = time.perf_counter() - started
        if ctx.json:
            print(
                json.dumps(
                    {
                        "subject": msg.subject,
                        "data": msg.data.decode("utf-8", "replace"),
                        "headers": dict(msg.headers or {}),
                        "rtt": int(rtt * 1e9),
                    }
                )
            )
        else:
            _print_msg(msg, args.raw, f"{_now()} Received with rtt {out.go_duration(int(rtt * 1e9))}")
    return 0


async def cmd_reply(ctx: Context, args: argparse.Namespace) -> int:
    if args.body is None and not args.echo:
        raise CLIError("a reply body or --echo is required")
    import asyncio

    done = asyncio.Event()
    n = 0

    async def on_request(msg: Any) -> None:
        nonlocal n
        n += 1
        if not ctx.json:
            _print_msg(msg, False, f'{_now()} [#{n}] Received on "{msg.subject}"')
        else:
            print(json.dumps({"subject": msg.subject, "data": msg.data.decode("utf-8", "replace")}))
        sys.stdout.flush()
        if msg.reply:
            if args.echo:
                data, headers = msg.data, dict(msg.headers or {}) or None
            else:
                data, headers = render(args.body, n, msg.data).encode(), parse_headers(args.header, n)
            await ctx.nc.publish(msg.reply, data, headers=headers)
        if args.count and n >= args.count:
            done.set()

    sub = await ctx.nc.subscribe(args.subject, queue=args.queue, cb=on_request)
    await ctx.nc.flush(timeout=ctx.timeout)
    if not ctx.json:
        print(f'{_now()} Listening on "{args.subject}" in group "{args.queue}"')
        sys.stdout.flush()
    wait = out.parse_duration(args.wait) / 1e9 if args.wait else None
    try:
        await asyncio.wait_for(done.wait(), wait)
    except TimeoutError:
        pass
    await ctx.nc.flush(timeout=ctx.timeout)
    await sub.unsubscribe()
    return 0


# -------------------------------------------------------------------------------------------------


def build_parser(command: str) -> argparse.ArgumentParser:
    if command == "pub":
        p = new_parser("pub", "Publish messages")
        p.add_argument("subject")
        p.add_argument("body", nargs="?")
        p.add_argument("--count", type=int, default=1, help="publish this many messages")
        p.add_argument("-H", "--header", action="append", help="header KEY:VALUE (repeatable)")
        p.add_argument("--sleep", help="pause between messages, e.g. 100ms")
        p.add_argument("--reply", help="reply subject")
        p.add_argument("-J", "--jetstream", action="store_true", help="publish to JetStream and wait for the ack")
        p.add_argument("-q", "--quiet", action="store_true", help="print nothing")
        # on the blocking client (jsedge.cli.wire) unless it must pause between messages
        p.set_defaults(handler=cmd_pub, fast=lambda args: not args.sleep)
    elif command == "sub":
        p = new_parser("sub", "Subscribe to a subject or replay a stream")
        p.add_argument("subject", nargs="?")
        p.add_argument("--queue", help="queue group")
        p.add_argument("--count", type=int, default=0, help="exit after this many messages")
        p.add_argument("--wait", help="exit after this long")
        p.add_argument("--raw", "-r", action="store_true", help="print only the bodies")
        p.add_argument("--stream", help="replay this JetStream stream (ordered ephemeral consumer)")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--all", action="store_true", help="from the first message (default)")
        g.add_argument("--new", action="store_true", help="only new messages")
        g.add_argument("--last", action="store_true", help="from the last message")
        g.add_argument("--last-per-subject", action="store_true", help="the last message of each subject")
        g.add_argument("--start-seq", type=int, help="from this sequence")
        g.add_argument("--since", help="messages of the last DURATION")
        p.set_defaults(handler=cmd_sub)
    elif command == "req":
        p = new_parser("req", "Send a request and print the reply")
        p.add_argument("subject")
        p.add_argument("body", nargs="?")
        p.add_argument("-H", "--header", action="append", help="header KEY:VALUE (repeatable)")
        p.add_argument("--count", type=int, default=1, help="send this many requests")
        p.add_argument("--raw", "-r", action="store_true", help="print only the reply body")
        p.set_defaults(handler=cmd_req, fast=True)
    elif command == "reply":
        p = new_parser("reply", "Answer requests on a subject")
        p.add_argument("subject")
        p.add_argument("body", nargs="?")
        p.add_argument("--queue", default="NATS-RPLY-22", help="queue group (default NATS-RPLY-22)")
        p.add_argument("--echo", action="store_true", help="reply with the request")
        p.add_argument("-H", "--header", action="append", help="reply header KEY:VALUE (repeatable)")
        p.add_argument("--count", type=int, default=0, help="exit after this many requests")
        p.add_argument("--wait", help="exit after this long")
        p.set_defaults(handler=cmd_reply)
    else:
        raise ValueError(command)
    return p


def main(command: str, argv: list[str]) -> int:
    return execute(build_parser(command), argv)
