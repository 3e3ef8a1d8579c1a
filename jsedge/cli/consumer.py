"""`jsedge consumer ...`: manage JetStream consumers (nats CLI: `nats consumer ...`).

    add STREAM NAME  --pull | --target SUBJECT, --deliver, --ack [--max-deliver --ack-wait --filter
                     --replay --max-pending --backoff ...] | --defaults | --config FILE
    ls STREAM        [--names]
    info STREAM NAME
    next STREAM NAME [--count N] [--ack/--no-ack] [--wait 5s]
    rm STREAM NAME   [-f]
    pause STREAM NAME [--until TIME|DURATION] / resume STREAM NAME

`add` without `--defaults` (or `--config`) needs `--pull` or `--target`, `--deliver` and `--ack`: at a
terminal it asks for them and the usual others as the nats CLI does (Enter takes the default shown);
without a terminal it never asks and says what is missing. The rest defaults like the nats CLI's
`--defaults`.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from jsedge.cli import output as out
from jsedge.cli.main import (
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
from jsedge.cli.stream import load_json_file

_DELIVER = {
    "all": "all",
    "new": "new",
    "last": "last",
    "last-per-subject": "last_per_subject",
    "subject": "last_per_subject",
    "last_per_subject": "last_per_subject",
}


def add_config_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("consumer configuration")
    g.add_argument("--pull", action="store_true", help="a pull consumer")
    g.add_argument("--target", help="push consumer: deliver to this subject")
    g.add_argument(
        "--deliver", help="all, new, last, last-per-subject, a start sequence, or a duration/RFC3339 start time"
    )
    g.add_argument("--ack", type=str.lower, choices=["none", "all", "explicit"], help="acknowledgement policy")
    g.add_argument("--max-deliver", type=int, help="maximum deliveries per message (-1 unlimited)")
    g.add_argument("--ack-wait", help="time to wait for an ack, e.g. 30s")
    g.add_argument("--filter", action="append", help="filter subject (repeat for several)")
    g.add_argument("--replay", type=str.lower, choices=["instant", "original"], help="replay policy")
    g.add_argument("--max-pending", type=int, help="maximum outstanding acks")
    g.add_argument("--backoff", help="redelivery backoff: comma separated durations, e.g. 1s,5s,30s")
    g.add_argument("--description", help="description")
    g.add_argument("--deliver-group", help="push consumer queue group")
    g.add_argument("--heartbeat", help="push idle heartbeat interval")
    g.add_argument("--flow-control", action=argparse.BooleanOptionalAction, default=None, help="push flow control")
    g.add_argument("--headers-only", action=argparse.BooleanOptionalAction, default=None, help="deliver headers only")
    g.add_argument("--max-waiting", type=int, help="pull: maximum waiting requests")
    g.add_argument("--max-pull-batch", type=int, help="pull: maximum batch per request")
    g.add_argument("--inactive-threshold", help="remove the consumer after this idle time")
    g.add_argument("--replicas", type=int, help="replicas (0 = the stream's)")
    g.add_argument("--config", help="consumer configuration JSON file")
    g.add_argument("--defaults", action="store_true", help="accept defaults for everything not given")


def _dur(text: str, what: str) -> int:
    try:
        return out.parse_duration(text)
    except ValueError:
        raise CLIError(f"invalid --{what} {text!r}") from None


def apply_flags(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    if args.target:
        cfg["deliver_subject"] = args.target
    if args.deliver:
        value = args.deliver.strip()
        for key in ("opt_start_seq", "opt_start_time"):
            cfg.pop(key, None)
        if value.lower() in _DELIVER:
            cfg["deliver_policy"] = _DELIVER[value.lower()]
        elif value.isdigit():
            cfg["deliver_policy"], cfg["opt_start_seq"] = "by_start_sequence", int(value)
        elif re.match(r"^\d{4}-\d\d-\d\d", value):
            cfg["deliver_policy"], cfg["opt_start_time"] = "by_start_time", value
        else:
            ago = _dur(value, "deliver")
            start = datetime.now(UTC) - timedelta(microseconds=ago / 1000)
            cfg["deliver_policy"], cfg["opt_start_time"] = "by_start_time", start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if args.ack:
        cfg["ack_policy"] = args.ack
        if args.ack == "none":
            cfg.pop("ack_wait", None)
            cfg.pop("max_ack_pending", None)
    if args.max_deliver is not None:
        cfg["max_deliver"] = args.max_deliver
    if args.ack_wait is not None:
        cfg["ack_wait"] = _dur(args.ack_wait, "ack-wait")
    if args.filter:
        subjects = [s.strip() for item in args.filter for s in item.split(",") if s.strip()]
        cfg.pop("filter_subject", None)
        cfg.pop("filter_subjects", None)
        if len(subjects) == 1:
            cfg["filter_subject"] = subjects[0]
        elif subjects:
            cfg["filter_subjects"] = subjects
    if args.replay:
        cfg["replay_policy"] = args.replay
    if args.max_pending is not None:
        cfg["max_ack_pending"] = args.max_pending
    if args.backoff:
        if args.backoff.lower() == "none":
            cfg.pop("backoff", None)
        else:
            cfg["backoff"] = [_dur(b.strip(), "backoff") for b in args.backoff.split(",") if b.strip()]
    if args.description is not None:
        cfg["description"] = args.description
    if args.deliver_group:
        cfg["deliver_group"] = args.deliver_group
    if args.heartbeat:
        cfg["idle_heartbeat"] = _dur(args.heartbeat, "heartbeat")
    if args.flow_control is not None:
        cfg["flow_control"] = args.flow_control
    if args.headers_only is not None:
        cfg["headers_only"] = args.headers_only
    if args.max_waiting is not None:
        cfg["max_waiting"] = args.max_waiting
    if args.max_pull_batch is not None:
        cfg["max_batch"] = args.max_pull_batch
    if args.inactive_threshold:
        cfg["inactive_threshold"] = _dur(args.inactive_threshold, "inactive-threshold")
    if args.replicas is not None:
        cfg["num_replicas"] = args.replicas
    return cfg


def _title(text: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in str(text).replace("_", " ").split())


def consumer_info_text(info: dict[str, Any]) -> str:
    from jsedge.cli.stream import render_sections

    cfg = info.get("config") or {}
    conf: list[tuple[str, Any]] = [("Name", info.get("name", cfg.get("name", "")))]
    if cfg.get("description"):
        conf.append(("Description", cfg["description"]))
    if cfg.get("deliver_subject"):
        conf.append(("Delivery Subject", cfg["deliver_subject"]))
        if cfg.get("deliver_group"):
            conf.append(("Deliver Queue Group", cfg["deliver_group"]))
    else:
        conf.append(("Pull Mode", "true"))
    if cfg.get("filter_subject"):
        conf.append(("Filter Subject", cfg["filter_subject"]))
    if cfg.get("filter_subjects"):
        conf.append(("Filter Subjects", ", ".join(cfg["filter_subjects"])))
    policy = cfg.get("deliver_policy", "all")
    conf.append(
        (
            "Deliver Policy",
            {
                "last_per_subject": "Last Per Subject",
                "by_start_sequence": f"From Sequence {cfg.get('opt_start_seq')}",
                "by_start_time": f"Since {cfg.get('opt_start_time')}",
            }.get(policy, _title(policy)),
        )
    )
    conf.append(("Ack Policy", _title(cfg.get("ack_policy", "none"))))
    if cfg.get("ack_wait"):
        conf.append(("Ack Wait", out.human_duration(cfg["ack_wait"])))
    conf.append(("Replay Policy", _title(cfg.get("replay_policy", "instant"))))
    if cfg.get("max_deliver", -1) > 0:
        conf.append(("Maximum Deliveries", out.comma(cfg["max_deliver"])))
    if cfg.get("backoff"):
        conf.append(("Backoff", ", ".join(out.human_duration(b) for b in cfg["backoff"])))
    if cfg.get("max_ack_pending"):
        conf.append(("Max Ack Pending", out.limit_count(cfg["max_ack_pending"])))
    if cfg.get("max_waiting"):
        conf.append(("Max Waiting Pulls", out.comma(cfg["max_waiting"])))
    if cfg.get("idle_heartbeat"):
        conf.append(("Idle Heartbeat", out.human_duration(cfg["idle_heartbeat"])))
    if cfg.get("flow_control"):
        conf.append(("Flow Control", "true"))
    if cfg.get("headers_only"):
        conf.append(("Headers Only", "true"))
    if cfg.get("inactive_threshold"):
        conf.append(("Inactive Threshold", out.human_duration(cfg["inactive_threshold"])))
    if cfg.get("pause_until") and info.get("paused"):
        conf.append(
            (
                "Paused Until",
                f"{out.fmt_time(cfg['pause_until'])} ({out.human_duration(info.get('pause_remaining', 0))} remaining)",
            )
        )
    delivered = info.get("delivered") or {}
    floor = info.get("ack_floor") or {}
    last_active = delivered.get("last_active")
    state = [
        (
            "Last Delivered Message",
            f"Consumer sequence: {out.comma(delivered.get('consumer_seq', 0))} Stream sequence: "
            f"{out.comma(delivered.get('stream_seq', 0))}"
            + (f" Last delivery: {out.since(last_active)} ago" if last_active else ""),
        ),
        (
            "Acknowledgment Floor",
            f"Consumer sequence: {out.comma(floor.get('consumer_seq', 0))} Stream sequence: {out.comma(floor.get('stream_seq', 0))}",
        ),
        (
            "Outstanding Acks",
            f"{out.comma(info.get('num_ack_pending', 0))}"
            + (f" out of maximum {out.limit_count(cfg['max_ack_pending'])}" if cfg.get("max_ack_pending") else ""),
        ),
        ("Redelivered Messages", out.comma(info.get("num_redelivered", 0))),
        ("Unprocessed Messages", out.comma(info.get("num_pending", 0))),
    ]
    if not cfg.get("deliver_subject"):
        state.append(
            (
                "Waiting Pulls",
                f"{out.comma(info.get('num_waiting', 0))} of maximum {out.comma(cfg.get('max_waiting', 512))}",
            )
        )
    else:
        state.append(("Active Interest", "Active" if info.get("push_bound") else "No interest"))
    header = f"Information for Consumer {info.get('stream_name')} > {info.get('name')}"
    created = out.fmt_time(info.get("created"))
    if created:
        header += f" created {created}"
    return render_sections(header, [("Configuration", conf), ("State", state)])


def _strip(resp: dict[str, Any]) -> dict[str, Any]:
    resp.pop("type", None)
    return resp


async def cmd_add(ctx: Context, args: argparse.Namespace) -> int:
    cfg: dict[str, Any] = {}
    if args.config:
        cfg = load_json_file(args.config)
    elif not args.defaults:
        missing = []
        if not args.pull and not args.target:
            missing.append("--pull or --target")
        if not args.deliver:
            missing.append("--deliver")
        if not args.ack:
            missing.append("--ack")
        if missing and interactive():
            _prompt_missing(args)
        elif missing:
            raise CLIError(f"{', '.join(missing)} required (or --defaults to accept the defaults, or --config FILE)")
    cfg.setdefault("deliver_policy", "all")
    cfg.setdefault("ack_policy", "explicit" if not args.ack else args.ack)
    cfg.setdefault("replay_policy", "instant")
    apply_flags(cfg, args)
    name = args.name or cfg.get("durable_name") or cfg.get("name")
    if not name:
        raise CLIError("a consumer name is required")
    cfg["durable_name"] = name
    cfg["name"] = name
    if cfg.get("ack_policy") != "none" and "ack_wait" not in cfg:
        cfg["ack_wait"] = 30_000_000_000
    body = {"stream_name": args.stream, "config": cfg, "action": "create"}
    info = await ctx.api(f"CONSUMER.CREATE.{args.stream}.{name}", body, context=f"could not create consumer {name}")
    if ctx.json:
        out.print_json(_strip(info))
    else:
        print(consumer_info_text(info))
    return 0


def _prompt_missing(args: argparse.Namespace) -> None:
    """`consumer add` at a terminal without the required options: ask as the nats CLI asks, the
    default shown (Enter takes it)."""
    if not args.name:
        args.name = ask("Consumer name")
    if not args.pull and not args.target:
        target = ask("Delivery target (empty for Pull Consumers)", "-")
        if target == "-":
            args.pull = True
        else:
            args.target = target
    if not args.deliver:
        args.deliver = ask(
            "Start policy (all, new, last, subject, 1h, msg sequence)",
            "all",
            lambda t: t.lower() in _DELIVER or t.isdigit() or bool(re.fullmatch(r"[0-9.]+[smhdwy]", t)),
        )
    if not args.ack:
        args.ack = ask("Acknowledgment policy", "explicit", lambda t: t.lower() in ("none", "all", "explicit")).lower()
    if args.replay is None:
        args.replay = ask("Replay policy", "instant", lambda t: t.lower() in ("instant", "original")).lower()
    if not args.filter:
        subjects = ask("Filter Stream by subjects (blank for all)", "-")
        args.filter = None if subjects == "-" else [s.strip() for s in subjects.split(",") if s.strip()]
    if args.max_deliver is None:
        args.max_deliver = int(ask("Maximum Allowed Deliveries", "-1", lambda t: t.lstrip("-").isdigit()))
    if args.max_pending is None and args.ack != "none":
        args.max_pending = int(ask("Maximum Acknowledgments Pending", "0", lambda t: t.isdigit()))


async def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    info = await ctx.api(
        f"CONSUMER.INFO.{args.stream}.{args.name}", context=f"could not load consumer {args.stream} > {args.name}"
    )
    if ctx.json:
        out.print_json(_strip(info))
    else:
        print(consumer_info_text(info))
    return 0


async def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    if args.names:
        names = await ctx.paged(f"CONSUMER.NAMES.{args.stream}", "consumers")
        if ctx.json:
            out.print_json(names)
        else:
            for n in sorted(names):
                print(n)
        return 0
    infos = await ctx.paged(f"CONSUMER.LIST.{args.stream}", "consumers")
    infos.sort(key=lambda i: i.get("name", ""))
    if ctx.json:
        out.print_json(infos)
        return 0
    if not infos:
        print(f"No Consumers defined for stream {args.stream}")
        return 0
    table = out.Table(
        f"Consumers for Stream {args.stream}",
        ["Name", "Description", "Created", "Ack Pending", "Unprocessed", "Last Delivery"],
        right=(3, 4),
    )
    for info in infos:
        cfg = info.get("config") or {}
        last = (info.get("delivered") or {}).get("last_active")
        table.add(
            info.get("name"),
            cfg.get("description", ""),
            out.fmt_time(info.get("created")),
            out.comma(info.get("num_ack_pending", 0)),
            out.comma(info.get("num_pending", 0)),
            out.since(last) if last else "never",
        )
    print(table)
    return 0


async def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    if not confirm(f"Really delete consumer {args.stream} > {args.name}?", args.force):
        return 1
    await ctx.api(
        f"CONSUMER.DELETE.{args.stream}.{args.name}", context=f"could not delete consumer {args.stream} > {args.name}"
    )
    if ctx.json:
        out.print_json({"success": True})
    else:
        print(f"Deleted consumer {args.stream} > {args.name}")
    return 0


async def cmd_pause(ctx: Context, args: argparse.Namespace) -> int:
    until = args.until or "24h"
    if re.match(r"^\d{4}-\d\d-\d\d", until):
        stamp = until
    else:
        when = datetime.now(UTC) + timedelta(microseconds=_dur(until, "until") / 1000)
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    resp = await ctx.api(
        f"CONSUMER.PAUSE.{args.stream}.{args.name}",
        {"pause_until": stamp},
        context=f"could not pause consumer {args.stream} > {args.name}",
    )
    if ctx.json:
        out.print_json(_strip(resp))
    elif resp.get("paused"):
        print(
            f"Paused {args.stream} > {args.name} until {out.fmt_time(resp.get('pause_until'))} "
            f"({out.human_duration(resp.get('pause_remaining', 0))} remaining)"
        )
    else:
        print(f"Consumer {args.stream} > {args.name} is not paused (the time is in the past)")
    return 0


async def cmd_resume(ctx: Context, args: argparse.Namespace) -> int:
    resp = await ctx.api(
        f"CONSUMER.PAUSE.{args.stream}.{args.name}",
        None,
        context=f"could not resume consumer {args.stream} > {args.name}",
    )
    if ctx.json:
        out.print_json(_strip(resp))
    else:
        print(f"Consumer {args.stream} > {args.name} was resumed")
    return 0


async def cmd_next(ctx: Context, args: argparse.Namespace) -> int:
    import nats.errors

    info = await ctx.api(
        f"CONSUMER.INFO.{args.stream}.{args.name}", context=f"could not load consumer {args.stream} > {args.name}"
    )
    if (info.get("config") or {}).get("deliver_subject"):
        raise CLIError(
            f"consumer {args.stream} > {args.name} is a push consumer; use `jsedge sub` on its delivery subject"
        )
    ack_policy = (info.get("config") or {}).get("ack_policy", "none")
    wait = _dur(args.wait, "wait")
    subject = f"{ctx.api_prefix}.CONSUMER.MSG.NEXT.{args.stream}.{args.name}"
    received = 0
    results = []
    inbox = ctx.nc.new_inbox()
    sub = await ctx.nc.subscribe(inbox)  # pulled messages keep their own subjects: no request mux
    for i in range(args.count):
        # the first pull waits for a message; later ones return at once when nothing is left
        body = {"batch": 1, "expires": wait} if i == 0 else {"batch": 1, "no_wait": True}
        try:
            await ctx.nc.publish(subject, json.dumps(body).encode(), reply=inbox)
            msg = await sub.next_msg(timeout=wait / 1e9 + 1)
        except (nats.errors.TimeoutError, TimeoutError):
            break
        status = (msg.headers or {}).get("Status") if msg.headers else None
        if status:
            if status in ("404", "408", "409") or not msg.reply:
                if status == "409" and (msg.headers or {}).get("Description", "").lower().startswith(
                    "consumer deleted"
                ):
                    raise CLIError(f"consumer {args.stream} > {args.name} was deleted")
                break
        received += 1
        meta = _ack_meta(msg.reply)
        acked = False
        if args.ack and ack_policy != "none" and msg.reply:
            try:
                await ctx.nc.request(msg.reply, b"+ACK", timeout=2)
            except Exception:
                await ctx.nc.flush()
            acked = True
        if ctx.json:
            results.append(
                {
                    "subject": msg.subject,
                    "headers": dict(msg.headers or {}),
                    "data": msg.data.decode("utf-8", "replace"),
                    "stream_seq": meta.get("stream_seq"),
                    "consumer_seq": meta.get("consumer_seq"),
                    "delivered": meta.get("delivered"),
                    "pending": meta.get("pending"),
                    "acked": acked,
                }
            )
            continue
        stamp = datetime.now().strftime("%H:%M:%S")
        print(
            f"[{stamp}] subj: {msg.subject} / tries: {meta.get('delivered', '?')} / cons seq: {meta.get('consumer_seq', '?')} "
            f"/ str seq: {meta.get('stream_seq', '?')} / pending: {meta.get('pending', '?')}"
        )
        if msg.headers:
            print()
            for k, v in msg.headers.items():
                print(f"  {k}: {v}")
        print()
        print(msg.data.decode("utf-8", "replace") if msg.data else "nil body")
        print()
        if acked:
            print("Acknowledged message")
            print()
    if ctx.json:
        out.print_json(results)
    if received == 0:
        raise CLIError(f"no message received from {args.stream} > {args.name} within {out.go_duration(wait)}")
    if received < args.count and not ctx.json:
        print(f"Received {received} of {args.count} requested messages: no more pending")
    return 0


def _ack_meta(reply: str | None) -> dict[str, int]:
    """$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (+ v2 domain/hash tokens)."""
    if not reply:
        return {}
    tokens = reply.split(".")
    if len(tokens) >= 12:  # v2: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>...
        tokens = tokens[:2] + tokens[4:]
    if len(tokens) < 9:
        return {}
    try:
        return {
            "delivered": int(tokens[4]),
            "stream_seq": int(tokens[5]),
            "consumer_seq": int(tokens[6]),
            "pending": int(tokens[8]),
        }
    except ValueError:
        return {}


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("consumer", "Manage JetStream consumers")
    sub = subcommands(parser)

    p = add_command(sub, "add", cmd_add, "create a consumer", aliases=("create", "new"), fast=True)
    p.add_argument("stream")
    p.add_argument("name", nargs="?")
    add_config_flags(p)

    p = add_command(sub, "ls", cmd_ls, "list the consumers of a stream", aliases=("list",), fast=True)
    p.add_argument("stream")
    p.add_argument("-n", "--names", action="store_true", help="only the names")

    p = add_command(sub, "info", cmd_info, "consumer configuration and state", fast=True)
    p.add_argument("stream")
    p.add_argument("name")

    p = add_command(sub, "next", cmd_next, "pull the next messages of a pull consumer")
    p.add_argument("stream")
    p.add_argument("name")
    p.add_argument("--count", type=int, default=1, help="number of messages (default 1)")
    p.add_argument(
        "--ack", action=argparse.BooleanOptionalAction, default=True, help="acknowledge the messages (default)"
    )
    p.add_argument("--wait", default="5s", help="how long to wait for the first message (default 5s)")

    p = add_command(sub, "rm", cmd_rm, "delete a consumer", aliases=("delete",), fast=True)
    p.add_argument("stream")
    p.add_argument("name")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")

    p = add_command(sub, "pause", cmd_pause, "pause a consumer until a time", fast=True)
    p.add_argument("stream")
    p.add_argument("name")
    p.add_argument("--until", help="RFC 3339 time or a duration from now (default 24h)")

    p = add_command(sub, "resume", cmd_resume, "resume a paused consumer", aliases=("unpause",), fast=True)
    p.add_argument("stream")
    p.add_argument("name")
    return parser


def main(argv: list[str]) -> int:
    return execute(build_parser(), argv)
