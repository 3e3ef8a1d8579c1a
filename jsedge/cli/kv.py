"""`jsedge kv ...`: JetStream key-value buckets (nats CLI: `nats kv ...`).

    add BUCKET [--history N] [--ttl D] [--replicas N] [--max-value-size S] [--max-bucket-size S]
               [--storage file|memory] [--description T]
    put BUCKET KEY [VALUE]        (VALUE from stdin when omitted)
    get BUCKET KEY [--revision N] [--raw]
    create BUCKET KEY [VALUE] / update BUCKET KEY VALUE REVISION
    del BUCKET KEY [-f] / purge BUCKET KEY [-f]
    history BUCKET KEY
    watch BUCKET [KEY-FILTER] [--count N] [--wait D]
    ls [BUCKET]                   (buckets; with a bucket: its keys)
    info BUCKET / rm BUCKET [-f]

Buckets are created with the nats CLI's (nats.go's) stream settings: `KV_<bucket>`, subjects
`$KV.<bucket>.>`, discard new, rollups allowed, deletes denied, direct get allowed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from jsedge.cli import output as out
from jsedge.cli.main import APIError, CLIError, Context, add_command, confirm, execute, new_parser, subcommands

#: A subcommand's coroutine function, as `add_command` registers it.
_Command = Callable[[Context, argparse.Namespace], Awaitable[int]]


def _kv_errors(fn: _Command) -> _Command:
    async def wrapper(ctx: Context, args: argparse.Namespace) -> int:
        try:
            return await fn(ctx, args)
        except Exception as exc:
            if "nats" not in sys.modules:  # on the blocking client: no nats-py error to translate
                raise
            _translate(exc, args)
            raise

    return wrapper


def _translate(exc: Exception, args: argparse.Namespace) -> None:
    """Raise the CLIError for a nats-py KV error; return for any other exception."""
    import nats.js.errors as jse

    key = getattr(args, "key", "")
    if isinstance(exc, jse.BucketNotFoundError):
        raise CLIError(f"bucket {args.bucket} not found") from None
    if isinstance(exc, (jse.KeyNotFoundError, jse.KeyDeletedError)):
        raise CLIError(f"key {key!s} not found in bucket {args.bucket}") from None
    if isinstance(exc, jse.NoKeysError):
        raise CLIError(f"no keys found in bucket {args.bucket}") from None
    if isinstance(exc, jse.KeyWrongLastSequenceError):
        raise CLIError(str(exc.description or "wrong last sequence")) from None
    if isinstance(exc, jse.InvalidKeyError):
        raise CLIError(f"invalid key {key!r}") from None
    if isinstance(exc, jse.InvalidBucketNameError):
        raise CLIError(f"invalid bucket name {args.bucket!r}") from None


async def _bucket(ctx: Context, name: str) -> Any:
    return await ctx.js.key_value(name)


def _created(entry: Any) -> str:
    if not entry.created:
        return ""
    created = entry.created
    if isinstance(created, (int, float)):
        dt = datetime.fromtimestamp(created / 1e9 if created > 1e12 else created, UTC)
    else:
        dt = created
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _value(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


def bucket_info_text(info: dict[str, Any]) -> str:
    from jsedge.cli.stream import render_sections

    cfg, state = info.get("config") or {}, info.get("state") or {}
    bucket = cfg.get("name", "")[3:]
    conf = [
        ("Bucket Name", bucket),
        ("History Kept", out.comma(cfg.get("max_msgs_per_subject", 1))),
        ("Values Stored", out.comma(state.get("messages", 0))),
        ("Compressed", str(cfg.get("compression", "none") != "none").lower()),
        ("Backing Store Kind", "JetStream"),
        ("Bucket Size", out.ibytes(state.get("bytes", 0))),
        ("Maximum Bucket Size", out.limit_bytes(cfg.get("max_bytes", -1))),
        ("Maximum Value Size", out.limit_bytes(cfg.get("max_msg_size", -1))),
        ("Maximum Age", "unlimited" if not cfg.get("max_age") else out.go_duration(cfg["max_age"])),
        ("JetStream Stream", cfg.get("name", "")),
        ("Storage", cfg.get("storage", "file").title()),
    ]
    if cfg.get("description"):
        conf.insert(1, ("Description", cfg["description"]))
    header = f"Information for Key-Value Store Bucket {bucket}"
    if info.get("created"):
        header += f" created {out.fmt_time(info['created'])}"
    return render_sections(header, [("Configuration", conf)])


@_kv_errors
async def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    import re

    if not re.fullmatch(r"[a-zA-Z0-9_-]+", args.bucket):
        raise CLIError(f"invalid bucket name {args.bucket!r}")
    if not 1 <= args.history <= 64:
        raise CLIError("--history must be between 1 and 64")
    ttl = out.parse_duration(args.ttl) if args.ttl else 0
    dupe = 120_000_000_000 if not ttl or ttl >= 120_000_000_000 else ttl
    cfg = {
        "name": f"KV_{args.bucket}",
        "subjects": [f"$KV.{args.bucket}.>"],
        "retention": "limits",
        "max_msgs_per_subject": args.history,
        "max_bytes": out.parse_size(args.max_bucket_size) if args.max_bucket_size else -1,
        "max_age": ttl,
        "max_msg_size": out.parse_size(args.max_value_size) if args.max_value_size else -1,
        "storage": args.storage,
        "num_replicas": args.replicas,
        "allow_rollup_hdrs": True,
        "deny_delete": True,
        "duplicate_window": dupe,
        "max_msgs": -1,
        "max_consumers": -1,
        "allow_direct": True,
        "discard": "new",
    }
    if args.description:
        cfg["description"] = args.description
    info = await ctx.api(f"STREAM.CREATE.KV_{args.bucket}", cfg, context=f"could not create bucket {args.bucket}")
    info.pop("type", None)
    if ctx.json:
        out.print_json(info)
    else:
        print(bucket_info_text(info))
    return 0


async def _bucket_info(ctx: Context, bucket: str) -> dict[str, Any]:
    """STREAM.INFO of the bucket's stream; "bucket ... not found" when there is none."""
    try:
        return await ctx.api(f"STREAM.INFO.KV_{bucket}", context=f"could not get bucket {bucket}")
    except APIError as exc:
        if exc.err_code == 10059:
            raise CLIError(f"bucket {bucket} not found") from None
        raise


@_kv_errors
async def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    info = await _bucket_info(ctx, args.bucket)
    for key in ("type", "total", "offset", "limit"):
        info.pop(key, None)
    if ctx.json:
        out.print_json(info)
    else:
        print(bucket_info_text(info))
    return 0


def _read_value(value: str | None) -> bytes:
    if value is not None:
        return value.encode()
    if sys.stdin.isatty():
        raise CLIError("a value is required (or pipe it on stdin)")
    return sys.stdin.buffer.read()


#: Keys nats-py and the nats CLI accept (no leading or trailing dot).
_KEY = r"[-/_=.a-zA-Z0-9]+"


async def _write_prefix(ctx: Context, bucket: str) -> str:
    """`$KV.<bucket>.` for writes to the bucket (its origin's for a mirror), after checking that the
    bucket exists, as nats-py's `key_value()` does."""
    info = await _bucket_info(ctx, bucket)
    mirror = (info.get("config") or {}).get("mirror") or {}
    name = str(mirror.get("name") or "")
    return f"$KV.{name[3:] if name.startswith('KV_') else bucket}."


async def _kv_write(
    ctx: Context, bucket: str, key: str, data: bytes, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """Publish one entry to a bucket and wait for the stream's PubAck: the ack, or APIError.
    Plain requests (no nats-py KV object), so put/create/update/del/purge run on either client."""
    import json
    import re

    if not re.fullmatch(_KEY, key) or key.startswith(".") or key.endswith("."):
        raise CLIError(f"invalid key {key!r}")
    subject = await _write_prefix(ctx, bucket) + key
    msg = await ctx.request(subject, data, headers=headers)
    try:
        ack = json.loads(msg.data or b"{}")
    except ValueError:
        raise CLIError(f"invalid response on {subject}: {msg.data[:200]!r}") from None
    if ack.get("error"):
        raise APIError(ack["error"])
    return dict(ack)


def _print_written(ctx: Context, args: argparse.Namespace, data: bytes, ack: dict[str, Any]) -> None:
    if ctx.json:
        out.print_json({"bucket": args.bucket, "key": args.key, "revision": ack.get("seq")})
    else:
        print(_value(data))


async def cmd_put(ctx: Context, args: argparse.Namespace) -> int:
    data = _read_value(args.value)
    _print_written(ctx, args, data, await _kv_write(ctx, args.bucket, args.key, data))
    return 0


def _expect(revision: int) -> dict[str, str]:
    return {"Nats-Expected-Last-Subject-Sequence": str(revision)}


async def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    data = _read_value(args.value)
    try:
        ack = await _kv_write(ctx, args.bucket, args.key, data, _expect(0))
    except APIError as exc:
        if exc.err_code != 10071:  # wrong last sequence: the key exists, unless its last entry is a delete
            raise
        entry = await get_entry(ctx, args.bucket, args.key, None, deleted=True)
        if entry["operation"] == "PUT":
            raise CLIError(exc.description) from None
        ack = await _kv_write(ctx, args.bucket, args.key, data, _expect(int(entry["revision"])))
    _print_written(ctx, args, data, ack)
    return 0


async def cmd_update(ctx: Context, args: argparse.Namespace) -> int:
    data = args.value.encode()
    try:
        ack = await _kv_write(ctx, args.bucket, args.key, data, _expect(args.revision))
    except APIError as exc:
        raise CLIError(exc.description) from None
    _print_written(ctx, args, data, ack)
    return 0


async def get_entry(ctx: Context, bucket: str, key: str, revision: int | None, deleted: bool = False) -> dict[str, Any]:
    """The latest (or a given) revision of a key via STREAM.MSG.GET (no direct get needed); the
    latest only if it is a value, unless `deleted`."""
    import base64

    from jsedge.cli.stream import decode_headers, get_msg

    subject = f"$KV.{bucket}.{key}"
    try:
        msg = await get_msg(ctx, f"KV_{bucket}", {"seq": revision} if revision else {"last_by_subj": subject})
    except APIError as exc:
        if exc.err_code == 10059:
            raise CLIError(f"bucket {bucket} not found") from None
        raise
    if msg is None or msg.get("subject") != subject:
        raise CLIError(f"key {key} not found in bucket {bucket}")
    headers = dict(decode_headers(msg.get("hdrs")))
    op = headers.get("KV-Operation") or ("PURGE" if headers.get("Nats-Marker-Reason") else "PUT")
    if op != "PUT" and not revision and not deleted:
        raise CLIError(f"key {key} not found in bucket {bucket}")
    return {
        "bucket": bucket,
        "key": key,
        "revision": msg["seq"],
        "created": msg.get("time"),
        "operation": op,
        "value": base64.b64decode(msg.get("data") or ""),
    }


async def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    entry = await get_entry(ctx, args.bucket, args.key, args.revision)
    if ctx.json:
        out.print_json({**entry, "value": _value(entry["value"])})
    elif args.raw:
        sys.stdout.buffer.write(entry["value"])
        sys.stdout.flush()
    else:
        print(f"{args.bucket} > {args.key} revision: {entry['revision']} created @ {out.fmt_time(entry['created'])}\n")
        print(_value(entry["value"]) if entry["operation"] == "PUT" else f"(deleted: {entry['operation']})")
    return 0


async def cmd_del(ctx: Context, args: argparse.Namespace) -> int:
    if not confirm(f"Delete key {args.bucket} > {args.key}?", args.force):
        return 1
    await _kv_write(ctx, args.bucket, args.key, b"", {"KV-Operation": "DEL"})
    if not ctx.json:
        print(f"Deleted key {args.bucket} > {args.key}")
    return 0


async def cmd_purge(ctx: Context, args: argparse.Namespace) -> int:
    if not confirm(f"Purge key {args.bucket} > {args.key} and its history?", args.force):
        return 1
    await _kv_write(ctx, args.bucket, args.key, b"", {"KV-Operation": "PURGE", "Nats-Rollup": "sub"})
    if not ctx.json:
        print(f"Purged key {args.bucket} > {args.key}")
    return 0


@_kv_errors
async def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    kv = await _bucket(ctx, args.bucket)
    entries = await kv.history(args.key)
    if ctx.json:
        out.print_json(
            [
                {
                    "key": e.key,
                    "revision": e.revision,
                    "operation": e.operation or "PUT",
                    "created": _created(e),
                    "value": _value(e.value),
                }
                for e in entries
            ]
        )
        return 0
    table = out.Table(
        f"History for {args.bucket} > {args.key}", ["Key", "Revision", "Op", "Created", "Length", "Value"], right=(1, 4)
    )
    for e in entries:
        value = _value(e.value)
        table.add(
            e.key,
            e.revision,
            e.operation or "PUT",
            _created(e),
            len(e.value or b""),
            value if len(value) <= 40 else value[:37] + "...",
        )
    print(table)
    return 0


@_kv_errors
async def cmd_watch(ctx: Context, args: argparse.Namespace) -> int:
    import nats.errors

    kv = await _bucket(ctx, args.bucket)
    watcher = await kv.watch(args.key or ">", include_history=args.history)
    deadline = None
    if args.wait:
        import time

        deadline = time.monotonic() + out.parse_duration(args.wait) / 1e9
    n = 0
    try:
        while not args.count or n < args.count:
            timeout = 3600.0
            if deadline is not None:
                import time

                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
            try:
                entry = await watcher.updates(timeout=timeout)
            except nats.errors.TimeoutError:
                if deadline is not None:
                    break
                continue
            if entry is None:  # end of the initial values
                continue
            n += 1
            op = entry.operation or "PUT"
            if ctx.json:
                print(
                    __import__("json").dumps(
                        {"key": entry.key, "revision": entry.revision, "operation": op, "value": _value(entry.value)}
                    )
                )
            elif op == "PUT":
                print(f"[{_created(entry)}] {op} {args.bucket} > {entry.key}: {_value(entry.value)}")
            else:
                print(f"[{_created(entry)}] {op} {args.bucket} > {entry.key}")
            sys.stdout.flush()
    finally:
        await watcher.stop()
    return 0


async def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    if args.bucket:
        return await _ls_keys(ctx, args)
    infos = await ctx.paged("STREAM.LIST", "streams", {"subject": "$KV.*.>"})
    infos = sorted((i for i in infos if i["config"]["name"].startswith("KV_")), key=lambda i: i["config"]["name"])
    if ctx.json:
        out.print_json([i["config"]["name"][3:] for i in infos] if args.names else infos)
        return 0
    if args.names:
        for i in infos:
            print(i["config"]["name"][3:])
        return 0
    if not infos:
        print("No Key-Value buckets found")
        return 0
    table = out.Table(
        "Key-Value Buckets", ["Bucket", "Description", "Created", "Size", "Values", "Last Update"], right=(3, 4)
    )
    for i in infos:
        cfg, state = i["config"], i["state"]
        table.add(
            cfg["name"][3:],
            cfg.get("description", ""),
            out.fmt_time(i.get("created")),
            out.ibytes(state.get("bytes", 0)),
            out.comma(state.get("messages", 0)),
            out.since(state.get("last_ts")),
        )
    print(table)
    return 0


@_kv_errors
async def _ls_keys(ctx: Context, args: argparse.Namespace) -> int:
    import nats.js.errors as jse

    kv = await _bucket(ctx, args.bucket)
    try:
        keys = sorted(await kv.keys())
    except jse.NoKeysError:
        keys = []
    if ctx.json:
        out.print_json(keys)
    elif not keys:
        print(f"No keys found in bucket {args.bucket}")
    else:
        for k in keys:
            print(k)
    return 0


async def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    if not confirm(f"Delete bucket {args.bucket} and all its data?", args.force):
        return 1
    try:
        await ctx.api(f"STREAM.DELETE.KV_{args.bucket}", context=f"could not delete bucket {args.bucket}")
    except APIError as exc:
        if exc.err_code == 10059:
            raise CLIError(f"bucket {args.bucket} not found") from None
        raise
    if not ctx.json:
        print(f"Deleted bucket {args.bucket}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("kv", "JetStream key-value buckets")
    sub = subcommands(parser)

    p = add_command(sub, "add", cmd_add, "create a bucket", aliases=("new", "create-bucket"), fast=True)
    p.add_argument("bucket")
    p.add_argument("--history", type=int, default=1, help="values kept per key (1-64, default 1)")
    p.add_argument("--ttl", help="how long values are kept, e.g. 1h (default forever)")
    p.add_argument("--replicas", type=int, default=1, help="replicas (default 1)")
    p.add_argument("--max-value-size", help="largest value, e.g. 1MB (default unlimited)")
    p.add_argument("--max-bucket-size", help="largest bucket, e.g. 1GB (default unlimited)")
    p.add_argument("--storage", type=str.lower, choices=["file", "memory"], default="file")
    p.add_argument("--description", help="description")

    p = add_command(sub, "put", cmd_put, "store a value", fast=True)
    p.add_argument("bucket")
    p.add_argument("key")
    p.add_argument("value", nargs="?")

    p = add_command(sub, "create", cmd_create, "store a value if the key does not exist", fast=True)
    p.add_argument("bucket")
    p.add_argument("key")
    p.add_argument("value", nargs="?")

    p = add_command(sub, "update", cmd_update, "store a value if the key is at a revision", fast=True)
    p.add_argument("bucket")
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("revision", type=int)

    p = add_command(sub, "get", cmd_get, "get a value", fast=True)
    p.add_argument("bucket")
    p.add_argument("key")
    p.add_argument("--revision", type=int, help="a specific revision")
    p.add_argument("--raw", action="store_true", help="print only the value")

    for name, fn, text in (
        ("del", cmd_del, "delete a key (history kept)"),
        ("purge", cmd_purge, "delete a key and its history"),
    ):
        p = add_command(sub, name, fn, text, aliases=("delete",) if name == "del" else (), fast=True)
        p.add_argument("bucket")
        p.add_argument("key")
        p.add_argument("-f", "--force", action="store_true", help="do not ask")

    p = add_command(sub, "history", cmd_history, "all revisions of a key")
    p.add_argument("bucket")
    p.add_argument("key")

    p = add_command(sub, "watch", cmd_watch, "watch a bucket for changes")
    p.add_argument("bucket")
    p.add_argument("key", nargs="?", help="key or filter (default all)")
    p.add_argument("--count", type=int, default=0, help="exit after this many updates")
    p.add_argument("--wait", help="exit after this long")
    p.add_argument("--history", action="store_true", help="start with every revision kept, not just the latest")

    p = add_command(sub, "ls", cmd_ls, "list buckets, or the keys of a bucket", aliases=("list",))
    p.set_defaults(fast=lambda args: not args.bucket)  # a bucket's keys come from nats-py's watcher
    p.add_argument("bucket", nargs="?")
    p.add_argument("-n", "--names", action="store_true", help="only bucket names")

    p = add_command(sub, "info", cmd_info, "bucket configuration and state", aliases=("status",), fast=True)
    p.add_argument("bucket")

    p = add_command(sub, "rm", cmd_rm, "delete a bucket", fast=True)
    p.add_argument("bucket")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    return parser


def main(argv: list[str]) -> int:
    return execute(build_parser(), argv)
