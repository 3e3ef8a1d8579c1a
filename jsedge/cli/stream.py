"""`jsedge stream ...`: manage JetStream streams (nats CLI: `nats stream ...`).

    add NAME      --subjects --storage [limits...] | --defaults | --config FILE
    ls            [--names] [--subject FILTER]
    info NAME     [--json]
    view NAME     [--subject S] [--start SEQ] [--page N] [--count N]   (paged browse)
    get NAME SEQ  [--last-for SUBJECT]
    rm-msg NAME SEQ [--erase] [-f]          (alias rmm)
    purge NAME    [--subject S] [--keep N] [--seq N] [-f]
    rm NAME       [-f]
    edit NAME     [any add flag] [--config FILE]
    backup NAME DIR / restore DIR [NAME]

`add` without `--defaults` (or `--config`) needs `--subjects` and `--storage`: at a terminal it asks
for them and every other setting not given (`? Subjects`, `? Storage [file]`, ... as the nats CLI
asks, Enter takes the default shown); without a terminal (scripts, pipes) it never asks and says what
is missing. Settings not asked for default like the nats CLI's `--defaults` (limits retention,
unlimited limits, discard old, 2 minute duplicate window, one replica).

Backups. When the server answers `$JS.API.STREAM.SNAPSHOT` (nats-server; jsedge once implemented)
DIR gets the nats CLI's layout: `backup.json` (`{"config":…,"state":…}` from the snapshot response)
and `stream.tar.s2` (the server's archive, as streamed). Otherwise DIR gets the jsedge JSON-lines
format, which `restore` recognises by `backup.json`'s `"format"` key:

    backup.json     {"format": "jsedge-stream-backup/1", "config": StreamConfig,
                     "state": StreamState, "created": RFC3339, "messages": N}
    messages.jsonl  one line per stored message, in sequence order:
                    {"seq": N, "subject": S, "time": RFC3339, "hdrs": base64 of the raw stored
                     header block (optional), "data": base64 payload (optional)}

Restoring the JSON format creates the stream with the saved config (limits relaxed while loading,
`first_seq` = the first saved sequence, sealed streams sealed at the end), republishes each message
with its stored headers (minus `Nats-Expected-*` checks) and fills interior gaps with deleted
placeholders so sequences match; message timestamps become the restore time and consumers are not
saved. Mirrors cannot be restored this way.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from jsedge.cli import output as out
from jsedge.cli.main import (
    APIError,
    CLIError,
    Context,
    add_command,
    ask,
    confirm,
    execute,
    interactive,
    new_parser,
    subcommands,
)

BACKUP_FORMAT = "jsedge-stream-backup/1"

_RETENTION = {
    "limits": "limits",
    "interest": "interest",
    "work": "workqueue",
    "workq": "workqueue",
    "workqueue": "workqueue",
}
_STORAGE = {"file": "file", "f": "file", "memory": "memory", "mem": "memory", "m": "memory"}


# -------------------------------------------------------------------------------------------------
# flags -> config


def add_config_flags(p: argparse.ArgumentParser, editing: bool = False) -> None:
    g = p.add_argument_group("stream configuration")
    g.add_argument("--subjects", action="append", help="subjects to capture (repeat or comma separate)")
    g.add_argument("--description", help="description")
    g.add_argument("--storage", type=str.lower, choices=sorted(_STORAGE), help="file or memory")
    g.add_argument("--retention", type=str.lower, choices=sorted(_RETENTION), help="limits, interest or workqueue")
    g.add_argument("--discard", type=str.lower, choices=["old", "new"], help="discard policy when full")
    g.add_argument(
        "--discard-per-subject",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="discard new per subject (needs --discard new and --max-msgs-per-subject)",
    )
    g.add_argument("--max-msgs", help="maximum messages (-1 unlimited)")
    g.add_argument("--max-bytes", help="maximum size, e.g. 5GB (-1 unlimited)")
    g.add_argument("--max-age", help="maximum message age, e.g. 7d, 1h (0 unlimited)")
    g.add_argument("--max-msg-size", help="maximum message size, e.g. 1MB (-1 unlimited)")
    g.add_argument(
        "--max-msgs-per-subject",
        "--max-per-subject",
        dest="max_msgs_per_subject",
        help="maximum messages per subject (-1 unlimited)",
    )
    g.add_argument("--max-consumers", help="maximum consumers (-1 unlimited)")
    g.add_argument("--replicas", type=int, help="number of replicas")
    g.add_argument("--dupe-window", help="duplicate detection window, e.g. 2m")
    g.add_argument("--allow-rollup", action=argparse.BooleanOptionalAction, default=None, help="allow Nats-Rollup")
    g.add_argument("--deny-delete", action=argparse.BooleanOptionalAction, default=None, help="deny message deletes")
    g.add_argument("--deny-purge", action=argparse.BooleanOptionalAction, default=None, help="deny purges")
    g.add_argument("--allow-direct", action=argparse.BooleanOptionalAction, default=None, help="allow direct get")
    g.add_argument("--allow-msg-ttl", action=argparse.BooleanOptionalAction, default=None, help="allow Nats-TTL")
    g.add_argument("--ack", action=argparse.BooleanOptionalAction, default=None, help="acknowledge publishes")
    g.add_argument("--config", help="stream configuration JSON file")
    if not editing:
        g.add_argument("--defaults", action="store_true", help="accept defaults for everything not given")


def _int(text: str, what: str) -> int:
    try:
        return (
            int(out.parse_size(text))
            if what in ("max-bytes", "max-msg-size")
            else int(str(text).replace(",", "").replace("_", ""))
        )
    except ValueError:
        raise CLIError(f"invalid --{what} {text!r}") from None


def _dur(text: str, what: str) -> int:
    try:
        return out.parse_duration(text)
    except ValueError:
        raise CLIError(f"invalid --{what} {text!r}") from None


def load_json_file(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise CLIError(f"could not read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CLIError(f"{path}: expected a JSON object")
    return data.get("config", data) if "config" in data and isinstance(data["config"], dict) else data


def apply_flags(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if args.subjects:
        cfg["subjects"] = [s.strip() for item in args.subjects for s in item.split(",") if s.strip()]
    if args.description is not None:
        cfg["description"] = args.description
    if args.storage:
        cfg["storage"] = _STORAGE[args.storage]
    if args.retention:
        cfg["retention"] = _RETENTION[args.retention]
    if args.discard:
        cfg["discard"] = args.discard
    if args.discard_per_subject is not None:
        cfg["discard_new_per_subject"] = args.discard_per_subject
    for flag, key in (
        ("max_msgs", "max_msgs"),
        ("max_msgs_per_subject", "max_msgs_per_subject"),
        ("max_consumers", "max_consumers"),
    ):
        value = getattr(args, flag)
        if value is not None:
            cfg[key] = _int(value, flag.replace("_", "-"))
    if args.max_bytes is not None:
        cfg["max_bytes"] = -1 if str(args.max_bytes).strip() == "-1" else _int(args.max_bytes, "max-bytes")
    if args.max_msg_size is not None:
        cfg["max_msg_size"] = -1 if str(args.max_msg_size).strip() == "-1" else _int(args.max_msg_size, "max-msg-size")
    if args.max_age is not None:
        cfg["max_age"] = _dur(args.max_age, "max-age")
    if args.dupe_window is not None:
        cfg["duplicate_window"] = _dur(args.dupe_window, "dupe-window")
    if args.replicas is not None:
        cfg["num_replicas"] = args.replicas
    for flag, key in (
        ("allow_rollup", "allow_rollup_hdrs"),
        ("deny_delete", "deny_delete"),
        ("deny_purge", "deny_purge"),
        ("allow_direct", "allow_direct"),
        ("allow_msg_ttl", "allow_msg_ttl"),
    ):
        value = getattr(args, flag)
        if value is not None:
            cfg[key] = value
    if args.ack is not None:
        cfg["no_ack"] = not args.ack
    return cfg


def default_config(name: str) -> dict[str, Any]:
    """natscli's `--defaults` answers."""
    return {
        "name": name,
        "subjects": [name],
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_msgs_per_subject": -1,
        "max_msg_size": -1,
        "discard": "old",
        "storage": "file",
        "num_replicas": 1,
        "duplicate_window": 120_000_000_000,
        "allow_rollup_hdrs": False,
        "deny_delete": False,
        "deny_purge": False,
        "allow_direct": False,
    }


def _clean_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A config as the server returned it, ready to send back (server-owned metadata removed)."""
    cfg = dict(cfg)
    meta = {k: v for k, v in (cfg.get("metadata") or {}).items() if not k.startswith("_nats.")}
    if meta:
        cfg["metadata"] = meta
    else:
        cfg.pop("metadata", None)
    return cfg


# -------------------------------------------------------------------------------------------------
# rendering


def decode_headers(hdrs_b64: str | None) -> list[tuple[str, str]]:
    if not hdrs_b64:
        return []
    return parse_header_block(base64.b64decode(hdrs_b64))


def parse_header_block(raw: bytes) -> list[tuple[str, str]]:
    lines = raw.decode("utf-8", "replace").split("\r\n")
    pairs = []
    for line in lines[1:]:
        if not line:
            continue
        key, _, value = line.partition(":")
        pairs.append((key.strip(), value.strip()))
    return pairs


def _title(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def stream_info_text(info: dict[str, Any]) -> str:
    cfg = info.get("config") or {}
    state = info.get("state") or {}
    sections: list[tuple[str | None, list[tuple[str, Any]]]] = []
    top: list[tuple[str, Any]] = []
    if cfg.get("description"):
        top.append(("Description", cfg["description"]))
    if cfg.get("subjects"):
        top.append(("Subjects", ", ".join(cfg["subjects"])))
    top.append(("Replicas", cfg.get("num_replicas", 1)))
    top.append(("Storage", _title(cfg.get("storage", "file"))))
    if cfg.get("sealed"):
        top.append(("Sealed", "true"))
    sections.append((None, top))
    retention = {"limits": "Limits", "interest": "Interest", "workqueue": "WorkQueue"}.get(
        cfg.get("retention", "limits"), cfg.get("retention")
    )
    options = [
        ("Retention", retention),
        ("Acknowledgments", str(not cfg.get("no_ack", False)).lower()),
        (
            "Discard Policy",
            _title(cfg.get("discard", "old")) + (" Per Subject" if cfg.get("discard_new_per_subject") else ""),
        ),
        ("Duplicate Window", out.go_duration(cfg.get("duplicate_window") or 0)),
        ("Direct Get", str(bool(cfg.get("allow_direct"))).lower()),
        ("Allows Msg Delete", str(not cfg.get("deny_delete", False)).lower()),
        ("Allows Purge", str(not cfg.get("deny_purge", False)).lower()),
        ("Allows Per-Message TTL", str(bool(cfg.get("allow_msg_ttl"))).lower()),
        ("Allows Rollups", str(bool(cfg.get("allow_rollup_hdrs"))).lower()),
    ]
    sections.append(("Options", options))
    limits = [
        ("Maximum Messages", out.limit_count(cfg.get("max_msgs", -1))),
        ("Maximum Per Subject", out.limit_count(cfg.get("max_msgs_per_subject", -1))),
        ("Maximum Bytes", out.limit_bytes(cfg.get("max_bytes", -1))),
        ("Maximum Age", "unlimited" if not cfg.get("max_age") else out.human_duration(cfg["max_age"])),
        ("Maximum Message Size", out.limit_bytes(cfg.get("max_msg_size", -1))),
        ("Maximum Consumers", out.limit_count(cfg.get("max_consumers", -1))),
    ]
    sections.append(("Limits", limits))
    cluster = info.get("cluster") or {}
    if cluster:
        rows = [("Name", cluster.get("name", "")), ("Leader", cluster.get("leader", ""))]
        rows += [("Replica", replica_state(r)) for r in cluster.get("replicas") or [] if isinstance(r, dict)]
        sections.append(("Cluster Information", rows))
    for label, key in (("Mirror Information", "mirror"),):
        src = info.get(key)
        if src:
            sections.append(
                (
                    label,
                    [
                        ("Stream Name", src.get("name")),
                        ("Lag", out.comma(src.get("lag", 0))),
                        ("Last Seen", "never" if src.get("active", -1) < 0 else out.human_duration(src["active"])),
                    ],
                )
            )
    for src in info.get("sources") or []:
        sections.append(
            ("Source Information", [("Stream Name", src.get("name")), ("Lag", out.comma(src.get("lag", 0)))])
        )
    first_ts, last_ts = out.fmt_time(state.get("first_ts")), out.fmt_time(state.get("last_ts"))
    st = [
        ("Messages", out.comma(state.get("messages", 0))),
        ("Bytes", out.ibytes(state.get("bytes", 0))),
        ("First Sequence", f"{out.comma(state.get('first_seq', 0))}" + (f" @ {first_ts}" if first_ts else "")),
        ("Last Sequence", f"{out.comma(state.get('last_seq', 0))}" + (f" @ {last_ts}" if last_ts else "")),
    ]
    if state.get("num_deleted"):
        st.append(("Deleted Messages", out.comma(state["num_deleted"])))
    st.append(("Active Consumers", out.comma(state.get("consumer_count", 0))))
    if state.get("num_subjects"):
        st.append(("Number of Subjects", out.comma(state["num_subjects"])))
    sections.append(("State", st))
    header = f"Information for Stream {cfg.get('name', '')}"
    created = out.fmt_time(info.get("created"))
    if created:
        header += f" created {created}"
    return render_sections(header, sections)


def replica_state(replica: dict[str, Any]) -> str:
    """natscli's replica line: "n2, current, seen 1.51s ago" (outdated, OFFLINE, N operations behind)."""
    state = [str(replica.get("name", "")), "current" if replica.get("current") else "outdated"]
    if replica.get("offline"):
        state.append("OFFLINE")
    active = int(replica.get("active") or 0)
    state.append(f"seen {out.human_duration(active)} ago" if active > 0 else "not seen")
    lag = int(replica.get("lag") or 0)
    if lag > 1:
        state.append(f"{out.comma(lag)} operations behind")
    elif lag == 1:
        state.append("1 operation behind")
    return ", ".join(state)


def render_sections(header: str, sections: list[tuple[str | None, list[tuple[str, Any]]]]) -> str:
    width = max(len(k) for _, pairs in sections for k, _ in pairs) + 2
    lines = [header, ""]
    for heading, pairs in sections:
        if heading:
            lines += [f"{heading}:", ""]
        lines += [f"{k.rjust(width)}: {v}" for k, v in pairs]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def message_text(msg: dict[str, Any], stream: str) -> str:
    """`nats stream get`'s layout for a StoredMsg."""
    lines = [
        f"Item: {stream}#{msg.get('seq')} received {out.fmt_time(msg.get('time'))} on Subject {msg.get('subject')}"
    ]
    headers = decode_headers(msg.get("hdrs"))
    if headers:
        lines += ["", "Headers:"] + [f"  {k}: {v}" for k, v in headers]
    lines += ["", _body(base64.b64decode(msg.get("data") or ""))]
    return "\n".join(lines)


def _body(data: bytes) -> str:
    if not data:
        return "nil body"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return repr(data)


# -------------------------------------------------------------------------------------------------
# handlers


async def stream_info(ctx: Context, name: str) -> dict[str, Any]:
    return await ctx.api(f"STREAM.INFO.{name}", context=f"could not get info for stream {name}")


async def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    if args.config:
        cfg = default_config(args.name) if args.defaults else {}
        cfg.update(load_json_file(args.config))
        cfg["name"] = args.name
    elif args.defaults:
        cfg = default_config(args.name)
    else:
        missing = [f for f, v in (("--subjects", args.subjects), ("--storage", args.storage)) if not v]
        if missing and interactive():
            _prompt_missing(args)
        elif missing:
            raise CLIError(f"{' and '.join(missing)} required (or --defaults to accept the defaults, or --config FILE)")
        cfg = default_config(args.name)
    apply_flags(cfg, args)
    info = await ctx.api(f"STREAM.CREATE.{args.name}", cfg, context=f"could not create stream {args.name}")
    info.pop("type", None)
    if ctx.json:
        out.print_json(info)
    else:
        print(f"Stream {args.name} was created\n")
        print(stream_info_text(info))
    return 0


def _prompt_missing(args: argparse.Namespace) -> None:
    """`stream add` at a terminal without the required options: ask for every setting not given,
    in the nats CLI's order, its default shown (Enter takes it)."""

    def is_int(text: str) -> bool:
        return text.lstrip("-").isdigit()

    def parses(parse: Any) -> Any:
        def valid(text: str) -> bool:
            try:
                parse(text, "value")
            except CLIError:
                return False
            return True

        return valid

    is_size, is_duration = parses(_int), parses(_dur)

    def yes_no(text: str) -> bool:
        return text.lower() in ("y", "yes", "n", "no")

    if not args.subjects:
        args.subjects = [ask("Subjects")]
    if not args.storage:
        args.storage = ask("Storage", "file", lambda t: t.lower() in _STORAGE).lower()
    if args.replicas is None:
        args.replicas = int(ask("Replication", "1", lambda t: t.isdigit() and 1 <= int(t) <= 5))
    if not args.retention:
        retention = ask("Retention Policy", "Limits", lambda t: t.lower().replace(" ", "") in _RETENTION_ANSWERS)
        args.retention = _RETENTION_ANSWERS[retention.lower().replace(" ", "")]
    if not args.discard:
        args.discard = ask("Discard Policy", "Old", lambda t: t.lower() in ("old", "new")).lower()
    for attribute, label, default, valid in (
        ("max_msgs", "Stream Messages Limit", "-1", is_int),
        ("max_msgs_per_subject", "Per Subject Messages Limit", "-1", is_int),
        ("max_bytes", "Total Stream Size", "-1", is_size),
        ("max_age", "Message TTL", "-1", lambda t: t == "-1" or is_duration(t)),
        ("max_msg_size", "Max Message Size", "-1", is_size),
        ("dupe_window", "Duplicate Message Window", "2m0s", is_duration),
    ):
        if getattr(args, attribute) is None:
            answer = ask(label, default, valid)
            setattr(args, attribute, "0" if attribute == "max_age" and answer == "-1" else answer)
    for attribute, label, default in (
        ("allow_rollup", "Allow message Roll-ups", "No"),
        ("deny_delete", "Allow message deletion", "Yes"),
        ("deny_purge", "Allow purging subjects or the entire stream", "Yes"),
    ):
        if getattr(args, attribute) is None:
            yes = ask(label, default, yes_no).lower() in ("y", "yes")
            setattr(args, attribute, yes if attribute == "allow_rollup" else not yes)


#: What `stream add` accepts for a retention policy when it asks.
_RETENTION_ANSWERS = {"limits": "limits", "interest": "interest", "workqueue": "work", "work": "work"}


async def cmd_edit(ctx: Context, args: argparse.Namespace) -> int:
    current = await stream_info(ctx, args.name)
    cfg = _clean_config(current["config"])
    if args.config:
        cfg = load_json_file(args.config)
        cfg["name"] = args.name
    apply_flags(cfg, args)
    info = await ctx.api(f"STREAM.UPDATE.{args.name}", cfg, context=f"could not update stream {args.name}")
    info.pop("type", None)
    if ctx.json:
        out.print_json(info)
    else:
        print(f"Stream {args.name} was updated\n")
        print(stream_info_text(info))
    return 0


async def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    info = await stream_info(ctx, args.name)
    info.pop("type", None)
    for key in ("total", "offset", "limit"):
        info.pop(key, None)
    if ctx.json:
        out.print_json(info)
    else:
        print(stream_info_text(info))
    return 0


#: Streams the nats CLI lists only with `--all`: those behind KV buckets, object stores and MQTT.
_SYSTEM_PREFIXES = ("KV_", "OBJ_", "$MQTT_")


async def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    body = {"subject": args.subject} if args.subject else None
    if args.names:
        names = await ctx.paged("STREAM.NAMES", "streams", body)
        if not args.all:
            names = [n for n in names if not n.startswith(_SYSTEM_PREFIXES)]
        if ctx.json:
            out.print_json(names)
        else:
            for n in names:
                print(n)
        return 0
    infos = await ctx.paged("STREAM.LIST", "streams", body)
    infos.sort(key=lambda i: i["config"]["name"])
    every = len(infos)
    if not args.all:
        infos = [i for i in infos if not i["config"]["name"].startswith(_SYSTEM_PREFIXES)]
    if ctx.json:
        out.print_json(infos)
        return 0
    if not infos:
        print("No Streams defined, pass -a to include system streams" if every else "No Streams defined")
        return 0
    table = out.Table("Streams", ["Name", "Description", "Created", "Messages", "Size", "Last Message"], right=(3, 4))
    for info in infos:
        cfg, state = info["config"], info["state"]
        table.add(
            cfg["name"],
            cfg.get("description", ""),
            out.fmt_time(info.get("created")),
            out.comma(state.get("messages", 0)),
            out.ibytes(state.get("bytes", 0)),
            out.since(state.get("last_ts")),
        )
    print(table)
    return 0


async def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    if not confirm(f"Really delete stream {args.name}?", args.force):
        return 1
    await ctx.api(f"STREAM.DELETE.{args.name}", context=f"could not delete stream {args.name}")
    if ctx.json:
        out.print_json({"success": True})
    else:
        print(f"Deleted stream {args.name}")
    return 0


async def cmd_purge(ctx: Context, args: argparse.Namespace) -> int:
    if args.keep is not None and args.seq is not None:
        raise CLIError("--keep and --seq are mutually exclusive")
    body: dict[str, Any] = {}
    if args.subject:
        body["filter"] = args.subject
    if args.keep is not None:
        body["keep"] = args.keep
    if args.seq is not None:
        body["seq"] = args.seq
    if not confirm(f"Really purge stream {args.name}?", args.force):
        return 1
    resp = await ctx.api(f"STREAM.PURGE.{args.name}", body or None, context=f"could not purge stream {args.name}")
    if ctx.json:
        resp.pop("type", None)
        out.print_json(resp)
    else:
        print(f"Purged {out.comma(resp.get('purged', 0))} messages from stream {args.name}")
    return 0


async def get_msg(ctx: Context, stream: str, body: dict[str, Any]) -> dict[str, Any] | None:
    try:
        resp = await ctx.api(f"STREAM.MSG.GET.{stream}", body, context=f"could not get message from stream {stream}")
    except APIError as exc:
        if exc.err_code == 10037 or exc.status == 404 and exc.err_code != 10059:
            return None
        raise
    return resp.get("message")


async def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    if args.last_for:
        body: dict[str, Any] = {"last_by_subj": args.last_for}
    elif args.seq is not None:
        body = {"seq": args.seq}
    else:
        raise CLIError("a sequence or --last-for SUBJECT is required")
    msg = await get_msg(ctx, args.name, body)
    if msg is None:
        raise CLIError(f"could not get message from stream {args.name}: no message found (10037)")
    if ctx.json:
        out.print_json(msg)
    else:
        print(message_text(msg, args.name))
    return 0


async def cmd_rm_msg(ctx: Context, args: argparse.Namespace) -> int:
    if not confirm(f"Really remove message {args.seq} from stream {args.name}?", args.force):
        return 1
    body = {"seq": args.seq} if args.erase else {"seq": args.seq, "no_erase": True}
    await ctx.api(f"STREAM.MSG.DELETE.{args.name}", body, context=f"could not remove message {args.seq}")
    if ctx.json:
        out.print_json({"success": True})
    else:
        print(f"Removed message {args.seq} from stream {args.name}")
    return 0


async def iter_messages(
    ctx: Context, stream: str, start: int = 0, subject: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Stored messages from `start` on, one MSG.GET each (works on any server, no consumer)."""
    seq = max(0, start)
    while True:
        msg = await get_msg(ctx, stream, {"seq": seq, "next_by_subj": subject or ">"})
        if msg is None:
            return
        yield msg
        seq = int(msg["seq"]) + 1


async def cmd_view(ctx: Context, args: argparse.Namespace) -> int:
    await stream_info(ctx, args.name)  # a clear error for unknown streams
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not ctx.json and args.count is None
    shown = 0
    on_page = 0
    async for msg in iter_messages(ctx, args.name, args.start or 0, args.subject):
        if ctx.json:
            print(json.dumps(msg))
        else:
            headers = decode_headers(msg.get("hdrs"))
            print(f"[{msg['seq']}] Subject: {msg['subject']} Received: {out.fmt_time(msg.get('time'))}")
            if headers:
                print()
                for k, v in headers:
                    print(f"  {k}: {v}")
            print()
            print(_body(base64.b64decode(msg.get("data") or "")))
            print()
        shown += 1
        on_page += 1
        if args.count is not None and shown >= args.count:
            break
        if interactive and on_page >= args.page:
            on_page = 0
            answer = input("Next Page? [Y/n] ").strip().lower()
            if answer in ("n", "no", "q"):
                break
    if shown == 0 and not ctx.json:
        print("No messages in stream" if not args.subject else f"No messages matching {args.subject}")
    return 0


# -------------------------------------------------------------------------------------------------
# backup / restore


async def _snapshot(ctx: Context, name: str, directory: Path, consumers: bool, check: bool) -> dict[str, Any] | None:
    """nats CLI layout via $JS.API.STREAM.SNAPSHOT; None when the server does not serve it."""
    inbox = ctx.nc.new_inbox()
    import asyncio

    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def on_chunk(msg: Any) -> None:
        await queue.put(msg)

    sub = await ctx.nc.subscribe(inbox, cb=on_chunk)
    try:
        try:
            resp = await ctx.api(
                f"STREAM.SNAPSHOT.{name}",
                {"deliver_subject": inbox, "no_consumers": not consumers, "chunk_size": 128 * 1024, "jsck": check},
                context=f"could not back up stream {name}",
                timeout=min(ctx.timeout, 3.0),
            )
        except CLIError as exc:
            if isinstance(exc, APIError) or "timeout" not in str(exc) and "no responders" not in str(exc):
                raise
            return None
        resp.pop("type", None)
        directory.mkdir(parents=True, exist_ok=True)
        total = int((resp.get("state") or {}).get("bytes") or 0)
        bar = None if ctx.json else out.Progress(f"Backing up {name}", total)
        received = 0
        with open(directory / "stream.tar.s2", "wb") as handle:
            while True:
                try:
                    msg = await asyncio.wait_for(queue.get(), 10)
                except TimeoutError:
                    raise CLIError(f"could not back up stream {name}: no data from the server for 10s") from None
                status = (msg.headers or {}).get("Status") if msg.headers else None
                if status and status not in ("204",):
                    desc = msg.headers.get("Description", "")
                    raise CLIError(f"could not back up stream {name}: {status} {desc}".rstrip())
                if not msg.data:
                    break
                handle.write(msg.data)
                received += len(msg.data)
                if bar:
                    bar.total = max(bar.total, received)
                    bar.update(len(msg.data))
                if msg.reply:
                    await ctx.nc.publish(msg.reply, b"")
                else:
                    break  # a short final chunk without a reply ends the snapshot
        if bar:
            bar.total = received
            bar.close()
        (directory / "backup.json").write_text(json.dumps(resp, indent=2))
        return {"format": "snapshot", "bytes": received, "state": resp.get("state")}
    finally:
        await sub.unsubscribe()


async def _json_backup(ctx: Context, name: str, directory: Path) -> dict[str, Any]:
    info = await stream_info(ctx, name)
    state = info.get("state") or {}
    directory.mkdir(parents=True, exist_ok=True)
    bar = None if ctx.json else out.Progress(f"Backing up {name}", int(state.get("messages") or 0), unit="msgs")
    count = 0
    with open(directory / "messages.jsonl", "w", encoding="utf-8") as handle:
        async for msg in iter_messages(ctx, name, 0):
            if int(msg["seq"]) > int(state.get("last_seq") or 0):
                break
            record = {"seq": msg["seq"], "subject": msg["subject"], "time": msg.get("time")}
            if msg.get("hdrs"):
                record["hdrs"] = msg["hdrs"]
            if msg.get("data"):
                record["data"] = msg["data"]
            handle.write(json.dumps(record) + "\n")
            count += 1
            if bar:
                bar.total = max(bar.total, count)
                bar.update(1)
    if bar:
        bar.total = count
        bar.close()
    meta = {
        "format": BACKUP_FORMAT,
        "config": _clean_config(info["config"]),
        "state": state,
        "created": info.get("created"),
        "messages": count,
    }
    (directory / "backup.json").write_text(json.dumps(meta, indent=2))
    return {"format": BACKUP_FORMAT, "messages": count, "state": state}


async def cmd_backup(ctx: Context, args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if directory.exists() and any(directory.iterdir()) and not args.force:
        raise CLIError(f"backup directory {directory} is not empty (use --force to overwrite)")
    await stream_info(ctx, args.name)
    result = None if args.json_format else await _snapshot(ctx, args.name, directory, args.consumers, args.check)
    if result is None:
        result = await _json_backup(ctx, args.name, directory)
    if ctx.json:
        out.print_json({"stream": args.name, "directory": str(directory), **result})
    elif result["format"] == "snapshot":
        print(f"Backed up stream {args.name} ({out.ibytes(result['bytes'])} snapshot) to {directory}")
    else:
        print(f"Backed up stream {args.name} ({out.comma(result['messages'])} messages) to {directory}")
    return 0


async def _restore_snapshot(ctx: Context, directory: Path, meta: dict[str, Any], name: str) -> dict[str, Any]:
    cfg = dict(meta.get("config") or {})
    cfg["name"] = name
    resp = await ctx.api(
        f"STREAM.RESTORE.{name}",
        {"config": cfg, "state": meta.get("state") or {}},
        context=f"could not restore stream {name}",
    )
    deliver = resp["deliver_subject"]
    path = directory / "stream.tar.s2"
    size = path.stat().st_size
    bar = None if ctx.json else out.Progress(f"Restoring {name}", size)
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(128 * 1024)
            if not chunk:
                break
            await ctx.request(deliver, chunk)
            if bar:
                bar.update(len(chunk))
    final = await ctx.request(deliver, b"", timeout=max(ctx.timeout, 30))
    if bar:
        bar.close()
    info = json.loads(final.data)
    if info.get("error"):
        raise APIError(info["error"], f"could not restore stream {name}")
    return info


_RELAX = {
    "max_msgs": -1,
    "max_bytes": -1,
    "max_age": 0,
    "max_msgs_per_subject": -1,
    "discard": "old",
    "deny_delete": False,
    "sealed": False,
    "max_msg_size": -1,
    "discard_new_per_subject": False,
}


async def _restore_json(ctx: Context, directory: Path, meta: dict[str, Any], name: str) -> dict[str, Any]:
    target = dict(meta["config"])
    target["name"] = name
    if target.get("mirror"):
        raise CLIError("mirrors cannot be restored from a JSON backup")
    state = meta.get("state") or {}
    loading = dict(target)
    loading.update(_RELAX)
    loading.pop("subject_delete_marker_ttl", None) if not target.get("subject_delete_marker_ttl") else None
    first = int(state.get("first_seq") or 0)
    records_path = directory / "messages.jsonl"
    if first > 1:
        loading["first_seq"] = first
    try:
        await ctx.api(f"STREAM.INFO.{name}")
        raise CLIError(f"could not restore stream {name}: stream already exists")
    except APIError as exc:
        if exc.err_code != 10059:
            raise
    await ctx.api(f"STREAM.CREATE.{name}", loading, context=f"could not restore stream {name}")
    total = int(meta.get("messages") or 0)
    bar = None if ctx.json else out.Progress(f"Restoring {name}", total, unit="msgs")
    expected = first if first > 1 else 1
    mismatched = 0
    restored = 0
    with open(records_path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            rec = json.loads(line)
            seq = int(rec["seq"])
            while expected < seq:  # interior gap: placeholders, deleted right away
                ack = await _publish(ctx, rec["subject"], b"", None)
                await ctx.api(
                    f"STREAM.MSG.DELETE.{name}",
                    {"seq": ack["seq"], "no_erase": True},
                    context=f"could not restore stream {name}",
                )
                expected = ack["seq"] + 1
            headers = None
            if rec.get("hdrs"):
                pairs = [
                    (k, v)
                    for k, v in parse_header_block(base64.b64decode(rec["hdrs"]))
                    if not k.lower().startswith("nats-expected-")
                ]
                headers = pairs or None
            ack = await _publish(ctx, rec["subject"], base64.b64decode(rec.get("data") or ""), headers)
            if ack.get("seq") != seq:
                mismatched += 1
            expected = int(ack.get("seq") or expected) + 1
            restored += 1
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    info = await ctx.api(f"STREAM.UPDATE.{name}", target, context=f"could not restore stream {name} (final config)")
    if mismatched:
        print(f"jsedge: warning: {mismatched} messages were restored with a different sequence", file=sys.stderr)
    return info


async def _publish(ctx: Context, subject: str, data: bytes, headers: list[tuple[str, str]] | None) -> dict[str, Any]:
    hdr = None
    if headers:
        hdr = {}
        for k, v in headers:  # nats-py takes a dict: repeated keys keep the last value
            hdr[k] = v
    msg = await ctx.request(subject, data, headers=hdr)
    resp = json.loads(msg.data or b"{}")
    if resp.get("error"):
        raise APIError(resp["error"], f"could not publish to {subject}")
    return resp


async def cmd_restore(ctx: Context, args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    try:
        meta = json.loads((directory / "backup.json").read_text())
    except (OSError, ValueError) as exc:
        raise CLIError(f"{directory} is not a stream backup: {exc}") from None
    name = args.name or (meta.get("config") or {}).get("name")
    if not name:
        raise CLIError("the backup names no stream; give one")
    if meta.get("format") == BACKUP_FORMAT:
        info = await _restore_json(ctx, directory, meta, name)
    elif (directory / "stream.tar.s2").exists():
        info = await _restore_snapshot(ctx, directory, meta, name)
    else:
        raise CLIError(f"{directory} is not a stream backup (no stream.tar.s2, no {BACKUP_FORMAT} backup.json)")
    info.pop("type", None)
    if ctx.json:
        out.print_json(info)
    else:
        state = info.get("state") or {}
        print(
            f"Restored stream {name} with {out.comma(state.get('messages', 0))} messages and {out.ibytes(state.get('bytes', 0))}"
        )
    return 0


# -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("stream", "Manage JetStream streams")
    sub = subcommands(parser)

    p = add_command(sub, "add", cmd_add, "create a stream", aliases=("create", "new"), fast=True)
    p.add_argument("name")
    add_config_flags(p)

    p = add_command(sub, "edit", cmd_edit, "change a stream's configuration", aliases=("update",), fast=True)
    p.add_argument("name")
    add_config_flags(p, editing=True)

    p = add_command(sub, "ls", cmd_ls, "list streams", aliases=("list",), fast=True)
    p.add_argument("-n", "--names", action="store_true", help="only the names")
    p.add_argument("--subject", help="only streams capturing this subject")
    p.add_argument("-a", "--all", action="store_true", help="include system streams (KV buckets, object stores, MQTT)")

    p = add_command(sub, "info", cmd_info, "stream configuration and state", fast=True)
    p.add_argument("name")

    p = add_command(sub, "view", cmd_view, "browse the messages of a stream", fast=True)
    p.add_argument("name")
    p.add_argument("--subject", "--filter", dest="subject", help="only messages on this subject")
    p.add_argument("--start", "--id", dest="start", type=int, help="first sequence to show")
    p.add_argument("--page", type=int, default=10, help="messages per page on a terminal (default 10)")
    p.add_argument("--count", "-n", type=int, help="show at most this many messages, without paging")

    p = add_command(sub, "get", cmd_get, "a message by sequence", fast=True)
    p.add_argument("name")
    p.add_argument("seq", type=int, nargs="?")
    p.add_argument("--last-for", "-S", help="the newest message on this subject")

    p = add_command(sub, "rm-msg", cmd_rm_msg, "remove a message", aliases=("rmm",), fast=True)
    p.add_argument("name")
    p.add_argument("seq", type=int)
    p.add_argument("--erase", action="store_true", help="overwrite the message data on disk")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")

    p = add_command(sub, "purge", cmd_purge, "remove messages, keep the stream", fast=True)
    p.add_argument("name")
    p.add_argument("--subject", help="only messages on this subject")
    p.add_argument("--keep", type=int, help="keep the newest N messages")
    p.add_argument("--seq", type=int, help="remove messages below this sequence")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")

    p = add_command(sub, "rm", cmd_rm, "delete a stream and its messages", aliases=("delete",), fast=True)
    p.add_argument("name")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")

    p = add_command(sub, "backup", cmd_backup, "back a stream up to a directory")
    p.add_argument("name")
    p.add_argument("dir")
    p.add_argument(
        "--consumers", action=argparse.BooleanOptionalAction, default=True, help="include consumers (snapshot)"
    )
    p.add_argument("--check", action="store_true", help="have the server check the data first (snapshot)")
    p.add_argument("--json-format", action="store_true", help="use the JSON-lines format even if snapshots work")
    p.add_argument("-f", "--force", action="store_true", help="write into a non-empty directory")

    p = add_command(sub, "restore", cmd_restore, "restore a stream from a backup directory")
    p.add_argument("dir")
    p.add_argument("name", nargs="?", help="stream name (default: the backed-up name)")
    return parser


def main(argv: list[str]) -> int:
    return execute(build_parser(), argv)
