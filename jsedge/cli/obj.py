"""`jsedge object ...`: JetStream object stores (nats CLI: `nats object ...`).

    add BUCKET [--ttl D] [--replicas N] [--max-bucket-size S] [--storage file|memory] [--description T]
    put BUCKET FILE [--name NAME]       (progress bar on stderr)
    get BUCKET NAME [--output FILE]     (progress bar on stderr; default: ./NAME's base name)
    ls [BUCKET]                         (buckets; with a bucket: its objects)
    info BUCKET [NAME]
    rm BUCKET [NAME] [-f]               (an object, or the whole bucket)

Buckets use the conventions of ADR-20 (`OBJ_<bucket>`, chunks on `$O.<bucket>.C.<nuid>`, meta on
`$O.<bucket>.M.<base64url name>`), so nats CLI / nats.go clients read what this writes.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jsedge.cli import output as out
from jsedge.cli.main import APIError, CLIError, Context, add_command, confirm, execute, new_parser, subcommands


class _Reader:
    def __init__(self, handle: Any, bar: out.Progress | None) -> None:
        self.handle, self.bar = handle, bar

    def readinto(self, buf: Any) -> int:
        n = self.handle.readinto(buf)
        if self.bar and n:
            self.bar.update(n)
        return n or 0


class _Writer:
    def __init__(self, handle: Any, bar: out.Progress | None) -> None:
        self.handle, self.bar = handle, bar

    def write(self, data: bytes) -> int:
        n = self.handle.write(data)
        if self.bar:
            self.bar.update(len(data))
        return n


#: A subcommand's coroutine function, as `add_command` registers it.
_Command = Callable[[Context, argparse.Namespace], Awaitable[int]]


def _errors(fn: _Command) -> _Command:
    async def wrapper(ctx: Context, args: argparse.Namespace) -> int:
        import nats.js.errors as jse

        try:
            return await fn(ctx, args)
        except jse.BucketNotFoundError:
            raise CLIError(f"bucket {args.bucket} not found") from None
        except jse.ObjectNotFoundError:
            raise CLIError(f"object {getattr(args, 'name', '')} not found in bucket {args.bucket}") from None
        except jse.ObjectDeletedError:
            raise CLIError(f"object {getattr(args, 'name', '')} was deleted") from None
        except jse.DigestMismatchError:
            raise CLIError("digest mismatch: the object's data does not match its SHA-256") from None

    return wrapper


def _check_bucket(name: str) -> None:
    if not re.fullmatch(r"[a-zA-Z0-9_-]+", name):
        raise CLIError(f"invalid bucket name {name!r}")


def bucket_info_text(info: dict[str, Any]) -> str:
    from jsedge.cli.stream import render_sections

    cfg, state = info.get("config") or {}, info.get("state") or {}
    conf = [
        ("Bucket Name", cfg.get("name", "")[4:]),
        ("Description", cfg.get("description", "")),
        ("Replicas", cfg.get("num_replicas", 1)),
        ("TTL", "unlimited" if not cfg.get("max_age") else out.go_duration(cfg["max_age"])),
        ("Sealed", str(bool(cfg.get("sealed"))).lower()),
        ("Size", out.ibytes(state.get("bytes", 0))),
        ("Maximum Bucket Size", out.limit_bytes(cfg.get("max_bytes", -1))),
        ("Backing Store Kind", "JetStream"),
        ("JetStream Stream", cfg.get("name", "")),
        ("Storage", cfg.get("storage", "file").title()),
    ]
    return render_sections(f"Information for Object Store Bucket {cfg.get('name', '')[4:]}", [("Configuration", conf)])


async def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    _check_bucket(args.bucket)
    cfg = {
        "name": f"OBJ_{args.bucket}",
        "subjects": [f"$O.{args.bucket}.C.>", f"$O.{args.bucket}.M.>"],
        "max_age": out.parse_duration(args.ttl) if args.ttl else 0,
        "max_bytes": out.parse_size(args.max_bucket_size) if args.max_bucket_size else -1,
        "storage": args.storage,
        "num_replicas": args.replicas,
        "discard": "new",
        "allow_rollup_hdrs": True,
        "allow_direct": True,
        "max_consumers": -1,
        "max_msgs": -1,
        "max_msgs_per_subject": -1,
        "max_msg_size": -1,
    }
    if args.description:
        cfg["description"] = args.description
    info = await ctx.api(
        f"STREAM.CREATE.OBJ_{args.bucket}", cfg, context=f"could not create object store {args.bucket}"
    )
    info.pop("type", None)
    if ctx.json:
        out.print_json(info)
    else:
        print(bucket_info_text(info))
    return 0


@_errors
async def cmd_put(ctx: Context, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CLIError(f"{path}: not a file")
    name = args.name or path.name
    store = await ctx.js.object_store(args.bucket)
    size = path.stat().st_size
    bar = None if ctx.json else out.Progress(f"Uploading {name}", size)
    with open(path, "rb") as handle:
        info = await store.put(name, _Reader(handle, bar))
    if bar:
        bar.close()
    if ctx.json:
        out.print_json(info.as_dict())
    else:
        print(
            f"Stored {name} in bucket {args.bucket}: {out.ibytes(info.size)} in {info.chunks} chunks, digest {info.digest}"
        )
    return 0


@_errors
async def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    store = await ctx.js.object_store(args.bucket)
    meta = await store.get_info(args.name)
    target = Path(args.output or os.path.basename(args.name) or "object")
    bar = None if ctx.json else out.Progress(f"Downloading {args.name}", meta.size or 0)
    tmp = target.with_name(target.name + ".partial")
    with open(tmp, "wb") as handle:
        await store.get(args.name, writeinto=_Writer(handle, bar))
    tmp.replace(target)
    if bar:
        bar.close()
    if ctx.json:
        out.print_json(
            {"bucket": args.bucket, "name": args.name, "file": str(target), "size": meta.size, "digest": meta.digest}
        )
    else:
        print(f"Wrote {out.ibytes(meta.size or 0)} to {target}")
    return 0


async def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    if args.bucket:
        return await _ls_objects(ctx, args)
    infos = await ctx.paged("STREAM.LIST", "streams", {"subject": "$O.*.M.>"})
    infos = sorted((i for i in infos if i["config"]["name"].startswith("OBJ_")), key=lambda i: i["config"]["name"])
    if ctx.json:
        out.print_json(infos)
        return 0
    if not infos:
        print("No Object Store buckets found")
        return 0
    table = out.Table("Object Store Buckets", ["Bucket", "Description", "Created", "Size", "Last Update"], right=(3,))
    for i in infos:
        cfg, state = i["config"], i["state"]
        table.add(
            cfg["name"][4:],
            cfg.get("description", ""),
            out.fmt_time(i.get("created")),
            out.ibytes(state.get("bytes", 0)),
            out.since(state.get("last_ts")),
        )
    print(table)
    return 0


@_errors
async def _ls_objects(ctx: Context, args: argparse.Namespace) -> int:
    import nats.js.errors as jse

    store = await ctx.js.object_store(args.bucket)
    try:
        items = await store.list()
    except jse.NotFoundError:
        items = []
    items = sorted((i for i in items if not i.deleted), key=lambda i: i.name)
    if ctx.json:
        out.print_json([i.as_dict() for i in items])
        return 0
    if not items:
        print(f"No objects in bucket {args.bucket}")
        return 0
    table = out.Table(f"Bucket Contents {args.bucket}", ["Name", "Size", "Time"], right=(1,))
    for i in items:
        table.add(
            i.name,
            out.ibytes(i.size or 0),
            out.fmt_time(i.mtime) if i.mtime and "T" in str(i.mtime) else str(i.mtime or ""),
        )
    print(table)
    return 0


@_errors
async def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    if not args.name:
        try:
            info = await ctx.api(f"STREAM.INFO.OBJ_{args.bucket}", context=f"could not get object store {args.bucket}")
        except APIError as exc:
            if exc.err_code == 10059:
                raise CLIError(f"bucket {args.bucket} not found") from None
            raise
        for key in ("type", "total", "offset", "limit"):
            info.pop(key, None)
        if ctx.json:
            out.print_json(info)
        else:
            print(bucket_info_text(info))
        return 0
    from jsedge.cli.stream import render_sections

    store = await ctx.js.object_store(args.bucket)
    meta = await store.get_info(args.name)
    if ctx.json:
        out.print_json(meta.as_dict())
        return 0
    pairs = [
        ("Bucket", args.bucket),
        ("Name", meta.name),
        ("Size", out.ibytes(meta.size or 0)),
        ("Chunks", out.comma(meta.chunks or 0)),
        ("Digest", meta.digest or ""),
        ("Modified", str(meta.mtime or "")),
    ]
    if meta.description:
        pairs.insert(2, ("Description", meta.description))
    print(render_sections(f"Object information for {args.bucket} > {meta.name}", [("Configuration", pairs)]))
    return 0


@_errors
async def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    if args.name:
        store = await ctx.js.object_store(args.bucket)
        if not confirm(f"Delete object {args.bucket} > {args.name}?", args.force):
            return 1
        await store.delete(args.name)
        if not ctx.json:
            print(f"Deleted object {args.bucket} > {args.name}")
        return 0
    if not confirm(f"Delete object store {args.bucket} and all its objects?", args.force):
        return 1
    try:
        await ctx.api(f"STREAM.DELETE.OBJ_{args.bucket}", context=f"could not delete object store {args.bucket}")
    except APIError as exc:
        if exc.err_code == 10059:
            raise CLIError(f"bucket {args.bucket} not found") from None
        raise
    if not ctx.json:
        print(f"Deleted object store {args.bucket}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("object", "JetStream object stores")
    sub = subcommands(parser)

    p = add_command(sub, "add", cmd_add, "create an object store bucket", aliases=("new",))
    p.add_argument("bucket")
    p.add_argument("--ttl", help="how long objects are kept (default forever)")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--max-bucket-size", help="largest bucket, e.g. 1GB (default unlimited)")
    p.add_argument("--storage", type=str.lower, choices=["file", "memory"], default="file")
    p.add_argument("--description", help="description")

    p = add_command(sub, "put", cmd_put, "store a file")
    p.add_argument("bucket")
    p.add_argument("file")
    p.add_argument("--name", help="object name (default: the file's name)")

    p = add_command(sub, "get", cmd_get, "fetch an object into a file")
    p.add_argument("bucket")
    p.add_argument("name")
    p.add_argument("-O", "--output", help="file to write (default: the object's base name)")

    p = add_command(sub, "ls", cmd_ls, "list buckets, or the objects of a bucket", aliases=("list",))
    p.add_argument("bucket", nargs="?")

    p = add_command(sub, "info", cmd_info, "bucket or object information")
    p.add_argument("bucket")
    p.add_argument("name", nargs="?")

    p = add_command(sub, "rm", cmd_rm, "delete an object, or a whole bucket")
    p.add_argument("bucket")
    p.add_argument("name", nargs="?")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    return parser


def main(argv: list[str]) -> int:
    return execute(build_parser(), argv)
