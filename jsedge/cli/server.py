"""`jsedge server ...`: inspect and check a NATS server (nats CLI: `nats server ...`).

    info                      server identity, limits and JetStream usage
    check connection          Nagios-style: connect, RTT and request round-trip times
    check jetstream           Nagios-style: JetStream usage against thresholds, peers (--expected)
    report jetstream          per-server JetStream table
    ping                      servers answering, with round-trip times

The system-account endpoints (`$SYS.REQ.SERVER.…`) are used when the credentials allow them;
otherwise the data comes from the connection's INFO and `$JS.API.INFO`, so every command works
with an ordinary user against jsedge or nats-server.

Checks print `STATUS Name detail detail | perfdata` and exit 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN, like the nats CLI's `server check` in its default (nagios) format.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from jsedge.cli import output as out
from jsedge.cli.main import APIError, CLIError, Context, add_command, execute, new_parser, subcommands

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_STATUS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


async def gather(ctx: Context, subject: str, body: Any = None, timeout: float = 1.0, expect: int = 0) -> list[Any]:
    """Responses to a scatter request (system pings); stops at `expect` replies or `timeout`.

    A no-responders status (no permission / no system account) gives an empty list at once.
    """
    inbox = ctx.nc.new_inbox()
    sub = await ctx.nc.subscribe(inbox)
    replies: list[Any] = []
    try:
        await ctx.nc.publish(subject, b"" if body is None else json.dumps(body).encode(), reply=inbox)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                msg = await sub.next_msg(timeout=remaining)
            except Exception:
                break
            if msg.headers and msg.headers.get("Status") == "503":
                break
            try:
                replies.append(json.loads(msg.data))
            except ValueError:
                continue
            if expect and len(replies) >= expect:
                break
    finally:
        await sub.unsubscribe()
    return replies


async def account_info(ctx: Context) -> dict[str, Any] | None:
    try:
        return await ctx.api("INFO", timeout=min(ctx.timeout, 2.0))
    except APIError:
        return None
    except CLIError:
        return None


def _server_info(ctx: Context) -> dict[str, Any]:
    info = getattr(ctx.nc, "_server_info", None) or {}
    return dict(info)


# -------------------------------------------------------------------------------------------------
# info


async def cmd_info(ctx: Context, args: argparse.Namespace) -> int:
    sinfo = _server_info(ctx)
    varz = None
    target = args.server_id or sinfo.get("server_id")
    replies = await gather(ctx, f"$SYS.REQ.SERVER.{target}.VARZ", {}, timeout=min(ctx.timeout, 1.0), expect=1)
    if replies and isinstance(replies[0], dict) and "data" in replies[0]:
        varz = replies[0]["data"]
    acct = await account_info(ctx)
    if ctx.json:
        out.print_json({"server": sinfo, "varz": varz, "jetstream": acct})
        return 0
    v = varz or {}
    name = v.get("server_name") or sinfo.get("server_name") or sinfo.get("server_id")
    print(f"Server information for {name} ({v.get('server_id') or sinfo.get('server_id')})\n")
    process = [
        ("Version", v.get("version") or sinfo.get("version")),
        ("Go Version", v.get("go") or sinfo.get("go")),
        ("Git Commit", v.get("git_commit") or sinfo.get("git_commit") or ""),
    ]
    if v.get("start"):
        process += [("Start Time", out.fmt_time(v["start"])), ("Uptime", v.get("uptime", ""))]
    conn = [
        ("Host", f"{sinfo.get('host')}:{sinfo.get('port')}"),
        ("Client ID", sinfo.get("client_id")),
        ("Client IP", sinfo.get("client_ip", "")),
        ("Protocol", sinfo.get("proto")),
        ("Headers Supported", str(bool(sinfo.get("headers"))).lower()),
        ("Maximum Payload", out.ibytes(sinfo.get("max_payload") or 0)),
        ("Auth Required", str(bool(sinfo.get("auth_required"))).lower()),
        ("TLS Required", str(bool(sinfo.get("tls_required"))).lower()),
    ]
    if sinfo.get("cluster"):
        conn.append(("Cluster", sinfo["cluster"]))
    if sinfo.get("connect_urls"):
        conn.append(("Client URLs", ", ".join(sinfo["connect_urls"])))
    sections: list[tuple[str | None, list[tuple[str, Any]]]] = [
        ("Process Details", process),
        ("Connection Details", conn),
    ]
    if v:
        limits = [
            ("Maximum Connections", out.comma(v.get("max_connections", 0))),
            (
                "Maximum Subscriptions",
                out.comma(v.get("max_subscriptions", 0)) if v.get("max_subscriptions") else "unlimited",
            ),
            ("Maximum Control Line", out.ibytes(v.get("max_control_line", 0))),
            ("Maximum Pending", out.ibytes(v.get("max_pending", 0))),
            ("Write Deadline", out.go_duration(v.get("write_deadline", 0))),
        ]
        stats = [
            ("Connections", out.comma(v.get("connections", 0))),
            ("Subscriptions", out.comma(v.get("subscriptions", 0))),
            ("Messages", f"{out.comma(v.get('in_msgs', 0))} in {out.comma(v.get('out_msgs', 0))} out"),
            ("Bytes", f"{out.ibytes(v.get('in_bytes', 0))} in {out.ibytes(v.get('out_bytes', 0))} out"),
            ("Slow Consumers", out.comma(v.get("slow_consumers", 0))),
            ("Memory", out.ibytes(v.get("mem", 0))),
            ("CPU", f"{v.get('cpu', 0)}%"),
        ]
        sections += [("Limits", limits), ("Statistics", stats)]
    if acct is not None:
        lim = acct.get("limits") or {}
        jsec = [
            ("Domain", acct.get("domain", "")),
            ("API Level", (acct.get("api") or {}).get("level", 0)),
            ("Streams", out.comma(acct.get("streams", 0))),
            ("Consumers", out.comma(acct.get("consumers", 0))),
            ("Memory In Use", out.ibytes(acct.get("memory", 0))),
            ("File In Use", out.ibytes(acct.get("storage", 0))),
            ("Account Max Memory", out.limit_bytes(lim.get("max_memory", -1))),
            ("Account Max File", out.limit_bytes(lim.get("max_storage", -1))),
            ("API Requests", out.comma((acct.get("api") or {}).get("total", 0))),
            ("API Errors", out.comma((acct.get("api") or {}).get("errors", 0))),
        ]
        if v.get("jetstream", {}).get("config"):
            cfg = v["jetstream"]["config"]
            jsec += [
                ("Storage Directory", cfg.get("store_dir", "")),
                ("Max Memory", out.limit_bytes(cfg.get("max_memory"))),
                ("Max File", out.limit_bytes(cfg.get("max_storage"))),
            ]
        sections.append(("JetStream", jsec))
    else:
        sections.append(("JetStream", [("Enabled", str(bool(sinfo.get("jetstream"))).lower())]))
    from jsedge.cli.stream import render_sections

    print("\n".join(render_sections("", sections).splitlines()[2:]))
    return 0


# -------------------------------------------------------------------------------------------------
# checks


class Check:
    def __init__(self, name: str) -> None:
        self.name = name
        self.status = OK
        self.details: list[str] = []
        self.perf: list[str] = []

    def ok(self, text: str) -> None:
        self.details.append(f"OK:{text}")

    def warn(self, text: str) -> None:
        self.status = max(self.status, WARNING)
        self.details.append(f"WARN:{text}")

    def crit(self, text: str) -> None:
        self.status = CRITICAL
        self.details.append(f"CRIT:{text}")

    def unknown(self, text: str) -> None:
        if self.status == OK:
            self.status = UNKNOWN
        self.details.append(f"UNKNOWN:{text}")

    def threshold(
        self, label: str, value: float, warn: float, crit: float, text: str, higher_is_worse: bool = True
    ) -> None:
        if crit > 0 and value >= crit:
            self.crit(text)
        elif warn > 0 and value >= warn:
            self.warn(text)
        else:
            self.ok(text)

    def render(self, as_json: bool) -> str:
        if as_json:
            return json.dumps(
                {"name": self.name, "status": _STATUS[self.status], "details": self.details, "perf_data": self.perf},
                indent=2,
            )
        text = f"{_STATUS[self.status]} {self.name} {' '.join(self.details)}".rstrip()
        if self.perf:
            text += " | " + " ".join(self.perf)
        return text


def _secs(ns: int) -> float:
    return ns / 1e9


async def cmd_check_connection(ctx: Context, args: argparse.Namespace) -> int:
    check = Check("Connection")
    cw, cc = out.parse_duration(args.connect_warn), out.parse_duration(args.connect_critical)
    rw, rc = out.parse_duration(args.rtt_warn), out.parse_duration(args.rtt_critical)
    qw, qc = out.parse_duration(args.req_warn), out.parse_duration(args.req_critical)
    try:
        await ctx.connect()
    except CLIError as exc:
        check.crit(f"connection failed: {exc}")
        print(check.render(ctx.json))
        return check.status
    connect = ctx.connect_time
    check.threshold(
        "connect",
        connect * 1e9,
        cw,
        cc,
        f"connected to {ctx.nc.connected_url.geturl() if ctx.nc.connected_url else ctx.url} in {out.go_duration(connect * 1e9)}",
    )
    check.perf.append(f"connect_time={connect:.4f}s;{_secs(cw):.4f};{_secs(cc):.4f}")
    started = time.perf_counter()
    await ctx.nc.flush(timeout=ctx.timeout)
    rtt = time.perf_counter() - started
    check.threshold("rtt", rtt * 1e9, rw, rc, f"rtt time {out.go_duration(int(rtt * 1e9))}")
    check.perf.append(f"rtt={rtt:.4f}s;{_secs(rw):.4f};{_secs(rc):.4f}")
    subject = ctx.nc.new_inbox()

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    await ctx.nc.subscribe(subject, cb=echo)
    started = time.perf_counter()
    try:
        await ctx.nc.request(subject, b"ping", timeout=ctx.timeout)
        took = time.perf_counter() - started
        check.threshold("request", took * 1e9, qw, qc, f"round trip took {took:.6f}s")
        check.perf.append(f"request_time={took:.4f}s;{_secs(qw):.4f};{_secs(qc):.4f}")
    except Exception as exc:
        check.crit(f"request failed: {str(exc) or type(exc).__name__}")
    print(check.render(ctx.json))
    return check.status


async def cmd_check_jetstream(ctx: Context, args: argparse.Namespace) -> int:
    check = Check("JetStream")
    try:
        await ctx.connect()
    except CLIError as exc:
        check.crit(f"connection failed: {exc}")
        print(check.render(ctx.json))
        return check.status
    try:
        acct = await ctx.api("INFO", timeout=min(ctx.timeout, 3.0))
    except CLIError as exc:
        check.crit(f"JetStream not available: {exc}")
        print(check.render(ctx.json))
        return check.status
    jsz = None
    replies = await gather(
        ctx, f"$SYS.REQ.SERVER.{_server_info(ctx).get('server_id')}.JSZ", {}, timeout=min(ctx.timeout, 1.0), expect=1
    )
    if replies and isinstance(replies[0], dict):
        jsz = replies[0].get("data")
    lim = acct.get("limits") or {}
    max_mem, max_store = lim.get("max_memory", -1), lim.get("max_storage", -1)
    if jsz and jsz.get("config"):
        max_mem = max_mem if max_mem and max_mem > 0 else jsz["config"].get("max_memory", -1)
        max_store = max_store if max_store and max_store > 0 else jsz["config"].get("max_storage", -1)
    for label, used, limit, warn, crit in (
        ("memory", acct.get("memory", 0), max_mem, args.mem_warn, args.mem_critical),
        ("storage", acct.get("storage", 0), max_store, args.store_warn, args.store_critical),
    ):
        pct = 0 if not limit or limit <= 0 else used * 100 / limit
        check.threshold(label, pct, warn, crit, f"{pct:.0f}% {label}")
        check.perf += [f"{label}={used}B", f"{label}_pct={pct:.0f}%;{warn:g};{crit:g}"]
    streams, consumers = acct.get("streams", 0), acct.get("consumers", 0)
    for label, value, warn, crit in (
        ("streams", streams, args.stream_warn, args.stream_critical),
        ("consumers", consumers, args.consumer_warn, args.consumer_critical),
    ):
        check.threshold(label, value, warn, crit, f"{value} {label}")
        check.perf.append(f"{label}={value}")
    api = acct.get("api") or {}
    check.perf += [f"api_total={api.get('total', 0)}", f"api_errors={api.get('errors', 0)}"]
    peers = 1
    if jsz and jsz.get("meta_cluster"):
        peers = int(jsz["meta_cluster"].get("cluster_size") or len(jsz["meta_cluster"].get("replicas") or []) + 1)
    if args.expected is not None:
        if peers < args.expected:
            check.crit(f"{peers} peers of expected {args.expected}")
        else:
            check.ok(f"{peers} peers")
        check.perf.append(f"peers={peers};{args.expected};{args.expected}")
    print(check.render(ctx.json))
    return check.status


# -------------------------------------------------------------------------------------------------
# report / ping


async def cmd_report_jetstream(ctx: Context, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    replies = await gather(ctx, "$SYS.REQ.SERVER.PING.JSZ", {"accounts": False}, timeout=min(ctx.timeout, 2.0))
    meta: dict[str, Any] | None = None  # the meta leader's meta_cluster
    expected_size = 0
    for reply in replies:
        data = (reply or {}).get("data") or {}
        srv = (reply or {}).get("server") or {}
        if not data:
            continue
        is_leader = False
        row_meta = data.get("meta_cluster")
        if isinstance(row_meta, dict):
            if row_meta.get("leader") and row_meta.get("leader") == srv.get("name"):
                is_leader = True
                meta = row_meta
            expected_size = max(expected_size, int(row_meta.get("cluster_size") or 0))
        rows.append(
            {
                "server": srv.get("name"),
                "meta_leader": is_leader,
                "cluster": srv.get("cluster", ""),
                "domain": data.get("config", {}).get("domain", ""),
                "streams": data.get("streams", 0),
                "consumers": data.get("consumers", 0),
                "messages": data.get("messages", 0),
                "bytes": data.get("bytes", 0),
                "memory": data.get("memory", 0),
                "storage": data.get("storage", 0),
                "api_requests": (data.get("api") or {}).get("total", 0),
                "api_errors": (data.get("api") or {}).get("errors", 0),
            }
        )
    if not rows:
        acct = await ctx.api("INFO", context="could not get JetStream information")
        sinfo = _server_info(ctx)
        infos = await ctx.paged("STREAM.LIST", "streams")
        rows.append(
            {
                "server": sinfo.get("server_name") or sinfo.get("server_id"),
                "cluster": sinfo.get("cluster", ""),
                "domain": acct.get("domain", ""),
                "streams": acct.get("streams", 0),
                "consumers": acct.get("consumers", 0),
                "messages": sum((i.get("state") or {}).get("messages", 0) for i in infos),
                "bytes": sum((i.get("state") or {}).get("bytes", 0) for i in infos),
                "memory": acct.get("memory", 0),
                "storage": acct.get("storage", 0),
                "api_requests": (acct.get("api") or {}).get("total", 0),
                "api_errors": (acct.get("api") or {}).get("errors", 0),
            }
        )
    rows.sort(key=lambda r: r["server"] or "")
    if ctx.json:
        out.print_json(rows)
        return 0
    table = out.Table(
        "JetStream Summary",
        [
            "Server",
            "Cluster",
            "Domain",
            "Streams",
            "Consumers",
            "Messages",
            "Bytes",
            "Memory",
            "File",
            "API Req",
            "API Err",
        ],
        right=range(3, 11),
    )
    totals = {
        k: 0 for k in ("streams", "consumers", "messages", "bytes", "memory", "storage", "api_requests", "api_errors")
    }
    for r in rows:
        for k in totals:
            totals[k] += int(r.get(k) or 0)
        table.add(
            (r["server"] or "") + ("*" if r.get("meta_leader") else ""),
            r["cluster"],
            r["domain"],
            out.comma(r["streams"]),
            out.comma(r["consumers"]),
            out.comma(r["messages"]),
            out.ibytes(r["bytes"]),
            out.ibytes(r["memory"]),
            out.ibytes(r["storage"]),
            out.comma(r["api_requests"]),
            out.comma(r["api_errors"]),
        )
    table.add(
        "",
        "",
        "",
        out.comma(totals["streams"]),
        out.comma(totals["consumers"]),
        out.comma(totals["messages"]),
        out.ibytes(totals["bytes"]),
        out.ibytes(totals["memory"]),
        out.ibytes(totals["storage"]),
        out.comma(totals["api_requests"]),
        out.comma(totals["api_errors"]),
    )
    print(table)
    if expected_size and meta is None:
        print()
        print(
            f"WARNING: No cluster meta leader found. The cluster expects {expected_size} nodes but only "
            f"{len(rows)} responded. JetStream operation requires at least {expected_size // 2 + 1} up nodes."
        )
    elif meta is not None:
        print()
        print(meta_group_table(meta))
    return 0


async def cmd_report_leafnodes(ctx: Context, args: argparse.Namespace) -> int:
    """The leaf node links of every server (`$SYS.REQ.SERVER.PING.LEAFZ`: a system account user)."""
    replies = await gather(ctx, "$SYS.REQ.SERVER.PING.LEAFZ", {}, timeout=min(ctx.timeout, 2.0))
    rows: list[dict[str, Any]] = []
    answered = 0
    for reply in replies:
        data = (reply or {}).get("data")
        srv = (reply or {}).get("server") or {}
        if not isinstance(data, dict):
            continue
        answered += 1
        for leaf in data.get("leafs") or []:
            rows.append(
                {
                    "server": srv.get("name") or srv.get("id") or "",
                    "name": leaf.get("name", ""),
                    "account": leaf.get("account", ""),
                    "address": f"{leaf.get('ip', '')}:{leaf.get('port', '')}",
                    "spoke": bool(leaf.get("is_spoke")),
                    "rtt": leaf.get("rtt", ""),
                    "in_msgs": int(leaf.get("in_msgs") or 0),
                    "out_msgs": int(leaf.get("out_msgs") or 0),
                    "in_bytes": int(leaf.get("in_bytes") or 0),
                    "out_bytes": int(leaf.get("out_bytes") or 0),
                    "subscriptions": int(leaf.get("subscriptions") or 0),
                }
            )
    if not answered:
        raise CLIError(
            "no server answered $SYS.REQ.SERVER.PING.LEAFZ: the leaf node report needs a system account user"
        )
    rows.sort(key=lambda r: (r["server"], r["name"]))
    if ctx.json:
        out.print_json(rows)
        return 0
    if not rows:
        print("No leaf node connections found")
        return 0
    table = out.Table(
        "Leafnode Report",
        [
            "Server",
            "Name",
            "Account",
            "Address",
            "Spoke",
            "RTT",
            "Msgs In",
            "Msgs Out",
            "Bytes In",
            "Bytes Out",
            "Subs",
        ],
        right=range(6, 11),
    )
    for r in rows:
        table.add(
            r["server"],
            r["name"],
            r["account"],
            r["address"],
            "yes" if r["spoke"] else "",
            r["rtt"],
            out.comma(r["in_msgs"]),
            out.comma(r["out_msgs"]),
            out.ibytes(r["in_bytes"]),
            out.ibytes(r["out_bytes"]),
            out.comma(r["subscriptions"]),
        )
    print(table.render())
    return 0


def meta_group_table(meta: dict[str, Any]) -> out.Table:
    """natscli's "RAFT Meta Group Information" from the meta leader's `meta_cluster`: its replicas
    plus the leader itself, by name."""
    leader = str(meta.get("leader", ""))
    peers = [dict(p) for p in meta.get("replicas") or [] if isinstance(p, dict)]
    peers.append({"name": leader, "current": True, "active": 0, "lag": 0, "peer": meta.get("peer", "")})
    peers.sort(key=lambda p: str(p.get("name", "")))
    table = out.Table(
        "RAFT Meta Group Information", ["Connection Name", "ID", "Leader", "Current", "Online", "Active", "Lag"]
    )
    for peer in peers:
        active = int(peer.get("active") or 0)
        table.add(
            peer.get("name", ""),
            peer.get("peer", ""),
            "yes" if peer.get("name") == leader else "",
            str(bool(peer.get("current"))).lower(),
            "false" if peer.get("offline") else "true",
            out.human_duration(active) if active > 0 else "0.00s",
            out.comma(int(peer.get("lag") or 0)),
        )
    return table


async def cmd_ping(ctx: Context, args: argparse.Namespace) -> int:
    results: list[tuple[str, float]] = []
    started = time.perf_counter()
    inbox = ctx.nc.new_inbox()
    sub = await ctx.nc.subscribe(inbox)
    await ctx.nc.publish("$SYS.REQ.SERVER.PING", b"", reply=inbox)
    deadline = time.monotonic() + min(ctx.timeout, 1.0)
    while time.monotonic() < deadline:
        try:
            msg = await sub.next_msg(timeout=max(0.01, deadline - time.monotonic()))
        except Exception:
            break
        if msg.headers and msg.headers.get("Status") == "503":
            break
        try:
            srv = json.loads(msg.data).get("server") or {}
        except ValueError:
            continue
        results.append((srv.get("name") or srv.get("id") or "?", time.perf_counter() - started))
        if args.expect and len(results) >= args.expect:
            break
    await sub.unsubscribe()
    if not results:  # not a system user: ping the connected server with PING/PONG
        sinfo = _server_info(ctx)
        name = sinfo.get("server_name") or sinfo.get("server_id") or ctx.url
        for _ in range(max(1, args.count)):
            t0 = time.perf_counter()
            await ctx.nc.flush(timeout=ctx.timeout)
            results.append((name, time.perf_counter() - t0))
    if ctx.json:
        out.print_json([{"server": n, "rtt": int(r * 1e9)} for n, r in results])
        return 0
    width = max(len(n) for n, _ in results) + 4
    for n, r in results:
        print(f"{n.ljust(width)}rtt={out.go_duration(int(r * 1e9))}")
    rtts = [r * 1000 for _, r in results]
    print("\n---- ping statistics ----")
    print(f"{len(results)} replies max: {max(rtts):.2f} min: {min(rtts):.2f} avg: {sum(rtts) / len(rtts):.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser("server", "Inspect and check NATS servers")
    sub = subcommands(parser)

    p = add_command(sub, "info", cmd_info, "server information")
    p.add_argument("server_id", nargs="?", help="server id (default: the connected server)")

    check = sub.add_parser("check", help="Nagios-style health checks")
    csub = subcommands(check, "checks")
    p = add_command(csub, "connection", cmd_check_connection, "check connecting and round trips", aliases=("conn",))
    p.set_defaults(connect=False)
    p.add_argument("--connect-warn", default="500ms")
    p.add_argument("--connect-critical", default="1s")
    p.add_argument("--rtt-warn", default="500ms")
    p.add_argument("--rtt-critical", default="1s")
    p.add_argument("--req-warn", default="500ms")
    p.add_argument("--req-critical", default="1s")
    p = add_command(csub, "jetstream", cmd_check_jetstream, "check JetStream usage and peers", aliases=("js",))
    p.set_defaults(connect=False)
    p.add_argument(
        "--expected", "--peer-expect", dest="expected", type=int, help="expected JetStream peers (cluster size)"
    )
    p.add_argument("--mem-warn", type=float, default=75, help="memory use warning %% (default 75)")
    p.add_argument("--mem-critical", type=float, default=90, help="memory use critical %% (default 90)")
    p.add_argument("--store-warn", type=float, default=75, help="storage use warning %% (default 75)")
    p.add_argument("--store-critical", type=float, default=90, help="storage use critical %% (default 90)")
    p.add_argument("--stream-warn", type=float, default=-1, help="stream count warning (-1 off)")
    p.add_argument("--stream-critical", type=float, default=-1, help="stream count critical (-1 off)")
    p.add_argument("--consumer-warn", type=float, default=-1, help="consumer count warning (-1 off)")
    p.add_argument("--consumer-critical", type=float, default=-1, help="consumer count critical (-1 off)")

    report = sub.add_parser("report", help="reports")
    rsub = subcommands(report, "reports")
    add_command(rsub, "jetstream", cmd_report_jetstream, "JetStream usage per server", aliases=("js",))
    add_command(rsub, "leafnodes", cmd_report_leafnodes, "leaf node links per server", aliases=("leafs", "leaf"))

    p = add_command(sub, "ping", cmd_ping, "ping servers")
    p.add_argument("--count", type=int, default=1, help="pings when not a system user")
    p.add_argument("--expect", type=int, default=0, help="stop after this many servers replied")
    return parser


def main(argv: list[str]) -> int:
    return execute(build_parser(), argv)
