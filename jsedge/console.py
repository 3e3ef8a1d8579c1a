"""The web console on the monitoring port (layer 7): server-rendered HTML pages over the same
snapshots the JSON endpoints serve (`/varz`, `/jsz`, `/connz`: the monitor builds them and hands
them here), so there is no second source of truth.

Pages (under the monitoring base path): `/console` (the server at a glance: connections, traffic
with a live chart, slow consumers, JetStream usage against its limits, the store's disk, CPU, RSS,
the board's temperature, the cluster), `/console/streams` (every stream: messages, bytes, subjects,
consumers, first and last time; KV buckets and object stores marked), `/console/stream?acc=&name=`
(its config, its consumers with pending / ack pending / redelivered / last active, and a paged
message browser with headers and payloads as text or hex), `/console/kv` and `/console/objects`
(a bucket's keys with revisions and history, a store's objects), `/console/connections`,
`/console/accounts` (connections, subscriptions, traffic and JetStream use per account),
`/console/cluster` (routes, the meta group, every replicated stream's leader and followers with
their lag) and `/console/leafs` (leaf node links, either side). The streams page draws a growth
line per stream (it polls `/jsz?streams=true` every five seconds).

No build step, no CDN: plain HTML, one stylesheet and a few lines of vanilla JavaScript (the live
chart polls `/varz` every two seconds and draws an inline SVG). Everything that comes from clients
(subjects, headers, payloads, names) goes through `html.escape`. Actions (publish a message, purge a
stream, delete a message, step a leader down) appear only with `http: { console: { actions: true } }`
and the port's auth; they go through the JetStream API and publish path a client uses (jsedge.monitor
`console_action`), carry a per-server form token against cross-site posts, and are logged.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

_STYLE = """
body{font-family:ui-sans-serif,system-ui,sans-serif;margin:0;color:#1f2430;background:#f6f7fb}
header{background:#24304a;color:#fff;padding:10px 20px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header b{font-size:18px}header a{color:#cfe0ff;text-decoration:none}header a.on{color:#fff;font-weight:600}
main{padding:16px 20px;max-width:1200px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #dde1ea;border-radius:8px;padding:10px 14px;min-width:150px}
.card .k{font-size:12px;color:#667}.card .v{font-size:20px;font-weight:600}
table{border-collapse:collapse;background:#fff;margin:8px 0 18px;width:100%}
th,td{border:1px solid #dde1ea;padding:4px 8px;text-align:left;font-size:13px;vertical-align:top}
th{background:#eef1f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #dde1ea;padding:8px;overflow:auto;font-size:12px;white-space:pre-wrap;word-break:break-all}
.bar{background:#e4e8f0;border-radius:4px;height:8px;width:140px}.bar span{display:block;height:8px;border-radius:4px;background:#3b82f6}
.tag{font-size:11px;background:#e8eefc;color:#2a4a8a;border-radius:4px;padding:1px 5px;margin-left:4px}
.muted{color:#778}a{color:#2b54c5}td pre{margin:0}
"""

_CHART = """
<svg id="chart" width="600" height="120" viewBox="0 0 600 120" role="img" aria-label="messages per second">
<rect width="600" height="120" fill="#fff" stroke="#dde1ea"/>
<polyline id="in" fill="none" stroke="#3b82f6" stroke-width="2" points=""/>
<polyline id="out" fill="none" stroke="#f59e0b" stroke-width="2" points=""/>
<text id="scale" x="6" y="14" font-size="11" fill="#778"></text></svg>
<div class="muted">messages/s, last two minutes: <span style="color:#3b82f6">in</span>,
<span style="color:#f59e0b">out</span> <span id="rates"></span></div>
<script>
(function(){
  const url = location.pathname.replace(/\\/console.*$/, "") + "/varz";
  const samples = []; let last = null;
  function draw(){
    const max = Math.max(1, ...samples.map(s => Math.max(s[0], s[1])));
    for (const [id, k] of [["in", 0], ["out", 1]]) {
      document.getElementById(id).setAttribute("points",
        samples.map((s, i) => (600 - (samples.length - 1 - i) * 10) + "," + (118 - s[k] / max * 100)).join(" "));
    }
    document.getElementById("scale").textContent = "max " + Math.round(max) + "/s";
    const s = samples[samples.length - 1];
    if (s) document.getElementById("rates").textContent = "(now " + Math.round(s[0]) + " in, " + Math.round(s[1]) + " out)";
  }
  async function tick(){
    try {
      const v = await (await fetch(url)).json();
      const now = performance.now() / 1000;
      if (last) {
        const dt = Math.max(0.001, now - last.t);
        samples.push([(v.in_msgs - last.i) / dt, (v.out_msgs - last.o) / dt]);
        if (samples.length > 60) samples.shift();
        draw();
      }
      last = {t: now, i: v.in_msgs, o: v.out_msgs};
    } catch (e) { /* the server went away: keep the chart */ }
  }
  tick(); setInterval(tick, 2000);
})();
</script>
"""

_PAGES = (
    ("", "Overview"),
    ("/streams", "Streams"),
    ("/connections", "Connections"),
    ("/accounts", "Accounts"),
    ("/cluster", "Cluster"),
    ("/leafs", "Leaf nodes"),
)

#: The streams page's sparklines: every 5 s the page reads `/jsz?streams=true` (the numbers the
#: table came from) and draws each stream's message count over the last few minutes.
_SPARKS = """
<script>
(function(){
  const url = location.pathname.replace(/\\/console.*$/, "") + "/jsz?streams=true";
  const series = {};
  function draw(){
    for (const svg of document.querySelectorAll("svg.spark")) {
      const s = series[svg.dataset.key] || [];
      if (s.length < 2) continue;
      const lo = Math.min(...s), hi = Math.max(...s), span = Math.max(1, hi - lo);
      svg.querySelector("polyline").setAttribute("points",
        s.map((v, i) => (i * 120 / 35).toFixed(1) + "," + (19 - (v - lo) / span * 17).toFixed(1)).join(" "));
      svg.querySelector("title").textContent = s[0] + " \\u2192 " + s[s.length - 1] + " messages";
    }
  }
  async function tick(){
    try {
      const j = await (await fetch(url)).json();
      for (const a of j.account_details || []) for (const st of a.stream_detail || []) {
        const key = a.name + "/" + st.name, s = series[key] || (series[key] = []);
        s.push((st.state || {}).messages || 0);
        if (s.length > 36) s.shift();
      }
      draw();
    } catch (e) { /* the server went away: keep the lines */ }
  }
  tick(); setInterval(tick, 5000);
})();
</script>
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return _e(value)


def _bytes(value: Any) -> str:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return _e(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _ago(value: Any) -> str:
    """A Raft peer's `active` (nanoseconds since it was last heard, as /jsz reports it)."""
    try:
        return f"{int(value) / 1e9:.1f} s ago"
    except (TypeError, ValueError):
        return _e(value)


def _page(base: str, active: str, title: str, body: str, server_name: str) -> bytes:
    nav = " ".join(
        f'<a href="{_e(base)}/console{path}"{" class=on" if path == active else ""}>{label}</a>'
        for path, label in _PAGES
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no /favicon.ico request (a 404 in the browser's console)
        f"<title>{_e(title)} · {_e(server_name)}</title><style>{_STYLE}</style></head><body>"
        f'<header><b>{_e(server_name)}</b>{nav}<a href="{_e(base or "/")}">JSON endpoints</a></header>'
        f"<main>{body}</main></body></html>"
    ).encode()


def _cards(items: Iterable[tuple[str, str]]) -> str:
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{v}</div></div>' for k, v in items)
        + "</div>"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _bar(used: float, limit: float) -> str:
    if limit <= 0:
        return f"{_bytes(used)} <span class=muted>(no limit)</span>"
    share = max(0.0, min(1.0, used / limit))
    return f'{_bytes(used)} of {_bytes(limit)}<div class="bar"><span style="width:{share * 100:.1f}%"></span></div>'


def system_figures(store_dir: str) -> dict[str, Any]:
    """What the JSON endpoints do not have: the store's disk and the board's temperature."""
    out: dict[str, Any] = {}
    if store_dir:
        try:
            fs = os.statvfs(store_dir)
            out["disk_free"] = fs.f_bavail * fs.f_frsize
            out["disk_total"] = fs.f_blocks * fs.f_frsize
        except OSError:
            pass
    try:
        with open("/sys/class/thermal/thermal_zone0/temp") as handle:
            out["temperature"] = int(handle.read().strip()) / 1000
    except (OSError, ValueError):
        pass
    return out


def _form(base: str, actions: dict[str, str], fields: dict[str, str], button: str, back: str, confirm: str = "") -> str:
    hidden = "".join(f'<input type="hidden" name="{_e(k)}" value="{_e(v)}">' for k, v in fields.items())
    check = f' onsubmit="return confirm({_e(json.dumps(confirm))})"' if confirm else ""
    return (
        f'<form method="post" action="{_e(base)}/console/action" style="display:inline"{check}>'
        f'<input type="hidden" name="csrf" value="{_e(actions["csrf"])}"><input type="hidden" name="back" value="{_e(back)}">'
        f"{hidden}<button>{_e(button)}</button></form>"
    )


def _publish_form(base: str, actions: dict[str, str], acc: str, back: str, subject: str = "") -> str:
    return (
        f'<form method="post" action="{_e(base)}/console/action">'
        f'<input type="hidden" name="csrf" value="{_e(actions["csrf"])}"><input type="hidden" name="back" value="{_e(back)}">'
        f'<input type="hidden" name="action" value="publish"><input type="hidden" name="acc" value="{_e(acc)}">'
        f'subject <input name="subject" value="{_e(subject)}" required> payload <input name="payload" size="40"> '
        "<button>Publish</button></form>"
    )


def _done(actions: dict[str, str] | None) -> str:
    if actions and actions.get("done"):
        return f'<p class="card" role="status">{_e(actions["done"])}</p>'
    return ""


def overview(
    base: str,
    varz: dict[str, Any],
    jsz: dict[str, Any],
    system: dict[str, Any],
    actions: dict[str, str] | None = None,
) -> bytes:
    name = str(varz.get("server_name") or varz.get("server_id") or "jsedge")
    cards = [
        ("version", _e(varz.get("version", ""))),
        ("uptime", _e(varz.get("uptime", ""))),
        ("connections", _num(varz.get("connections", 0))),
        ("messages in / out", f"{_num(varz.get('in_msgs', 0))} / {_num(varz.get('out_msgs', 0))}"),
        ("bytes in / out", f"{_bytes(varz.get('in_bytes', 0))} / {_bytes(varz.get('out_bytes', 0))}"),
        ("slow consumers", _num(varz.get("slow_consumers", 0))),
        ("CPU", f"{_e(varz.get('cpu', 0))} %"),
        ("memory (RSS)", _bytes(varz.get("mem", 0))),
    ]
    if "temperature" in system:
        cards.append(("temperature", f"{system['temperature']:.1f} °C"))
    body = f"{_done(actions)}<h2>Server</h2>{_cards(cards)}<h3>Traffic</h3>{_CHART}"
    if actions is not None:
        body += "<h3>Publish a test message</h3>" + _publish_form(base, actions, "$G", f"{base}/console")
    if jsz and not jsz.get("disabled"):
        config = jsz.get("config") or {}
        js_cards = [
            ("streams", _num(jsz.get("streams", 0))),
            ("consumers", _num(jsz.get("consumers", 0))),
            ("messages", _num(jsz.get("messages", 0))),
            ("file storage", _bar(float(jsz.get("storage", 0) or 0), float(config.get("max_storage", 0) or 0))),
            ("memory storage", _bar(float(jsz.get("memory", 0) or 0), float(config.get("max_memory", 0) or 0))),
        ]
        if "disk_free" in system:
            used = system["disk_total"] - system["disk_free"]
            js_cards.append(("store disk used", _bar(used, system["disk_total"])))
        body += f"<h2>JetStream</h2>{_cards(js_cards)}"
        largest = sorted(
            (
                (str(account.get("name", "")), stream)
                for account in jsz.get("account_details") or []
                for stream in account.get("stream_detail") or []
            ),
            key=lambda item: -int((item[1].get("state") or {}).get("bytes", 0) or 0),
        )[:10]
        if largest:
            rows = [
                (
                    f'<a href="{_e(base)}/console/stream?acc={quote(acc)}&amp;name={quote(str(stream.get("name", "")))}">'
                    f"{_e(stream.get('name', ''))}</a>{_kind(str(stream.get('name', '')))}",
                    _num((stream.get("state") or {}).get("messages", 0)),
                    _bytes((stream.get("state") or {}).get("bytes", 0)),
                    _e((stream.get("state") or {}).get("last_ts", "")),
                )
                for acc, stream in largest
            ]
            body += "<h3>Largest streams</h3>" + _table(("stream", "messages", "bytes", "last message"), rows, (1, 2))
    cluster = varz.get("cluster") or {}
    if cluster.get("name"):
        meta = jsz.get("meta_cluster") or {}
        peers = [
            (_e(peer.get("name", "")), "yes" if peer.get("current") else "no", _ago(peer.get("active", "")))
            for peer in meta.get("replicas") or []
        ]
        body += (
            f"<h2>Cluster {_e(cluster['name'])}</h2>"
            + _cards(
                [
                    ("routes", _num(varz.get("routes", 0))),
                    ("meta leader", _e(meta.get("leader", "—"))),
                    ("cluster size", _num(meta.get("cluster_size", 0))),
                ]
            )
            + (_table(("peer", "current", "last active"), peers) if peers else "")
        )
    leaf = varz.get("leaf") or {}
    if varz.get("leafnodes"):
        body += f"<h2>Leaf nodes</h2>{_cards([('links', _num(varz.get('leafnodes', 0))), ('port', _e(leaf.get('port', '')))])}"
    return _page(base, "", "Overview", body, name)


def _kind(stream: str) -> str:
    if stream.startswith("KV_"):
        return '<span class="tag">KV bucket</span>'
    if stream.startswith("OBJ_"):
        return '<span class="tag">object store</span>'
    if stream.startswith("$MQTT_"):
        return '<span class="tag">MQTT</span>'
    return ""


def streams_page(base: str, server_name: str, jsz: dict[str, Any]) -> bytes:
    rows = []
    for account in jsz.get("account_details") or []:
        acc = str(account.get("name", ""))
        for stream in account.get("stream_detail") or []:
            name = str(stream.get("name", ""))
            state = stream.get("state") or {}
            config = stream.get("config") or {}
            link = f"{_e(base)}/console/stream?acc={quote(acc)}&amp;name={quote(name)}"
            extra = ""
            if name.startswith(("KV_", "OBJ_")):
                page, bucket = ("kv", name[3:]) if name.startswith("KV_") else ("objects", name[4:])
                extra = f' <a href="{_e(base)}/console/{page}?acc={quote(acc)}&amp;bucket={quote(bucket)}">{page}</a>'
            spark = (
                f'<svg class="spark" data-key="{_e(acc)}/{_e(name)}" width="120" height="20" role="img">'
                '<title>growth</title><polyline fill="none" stroke="#3b82f6" stroke-width="1.5" points=""/></svg>'
            )
            rows.append(
                (
                    _e(acc),
                    f'<a href="{link}">{_e(name)}</a>{_kind(name)}{extra}',
                    _e(", ".join(config.get("subjects") or [])),
                    _num(state.get("messages", 0)),
                    spark,
                    _bytes(state.get("bytes", 0)),
                    _num(state.get("consumer_count", 0)),
                    _e(state.get("first_ts", "")),
                    _e(state.get("last_ts", "")),
                )
            )
    table = (
        _table(
            ("account", "stream", "subjects", "messages", "growth", "bytes", "consumers", "first", "last"),
            rows,
            (3, 5, 6),
        )
        + _SPARKS
        if rows
        else "<p class=muted>No streams.</p>"
    )
    return _page(base, "/streams", "Streams", f"<h2>Streams</h2>{table}", server_name)


def _payload(data: bytes) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        text = None
    if (
        text is not None
        and text.isprintable()
        or text is not None
        and all(c.isprintable() or c in "\r\n\t" for c in text)
    ):
        return f"<pre>{_e(text)}</pre>"
    return f"<pre class=muted>hex: {_e(data[:4096].hex(' '))}</pre>"


def stream_page(
    base: str,
    server_name: str,
    acc: str,
    detail: dict[str, Any] | None,
    messages: Sequence[Any],
    first_seq: int,
    page_size: int,
    actions: dict[str, str] | None = None,
) -> bytes:
    if detail is None:
        return _page(base, "/streams", "Stream", f"<h2>No stream {_e(acc)} &gt; {_e('?')}</h2>", server_name)
    name = str(detail.get("name", ""))
    state = detail.get("state") or {}
    config = detail.get("config") or {}
    back = f"{base}/console/stream?acc={quote(acc)}&name={quote(name)}"
    body = _done(actions) + f"<h2>{_e(name)}{_kind(name)} <span class=muted>in {_e(acc)}</span></h2>"
    if actions is not None:
        fields = {"acc": acc, "stream": name}
        body += "<p>" + _form(base, actions, {**fields, "action": "purge"}, "Purge stream", back, f"Purge {name}?")
        if (detail.get("cluster") or {}).get("replicas"):
            body += " " + _form(base, actions, {**fields, "action": "stepdown"}, "Step leader down", back)
        subjects = config.get("subjects") or [""]
        first_subject = str(subjects[0]).replace(">", "test").replace("*", "test")
        body += "</p>" + _publish_form(base, actions, acc, back, first_subject)
    body += _cards(
        [
            ("messages", _num(state.get("messages", 0))),
            ("bytes", _bytes(state.get("bytes", 0))),
            ("first sequence", _num(state.get("first_seq", 0))),
            ("last sequence", _num(state.get("last_seq", 0))),
            ("consumers", _num(state.get("consumer_count", 0))),
        ]
    )
    cluster = detail.get("cluster") or {}
    if cluster.get("replicas"):
        replicas = ", ".join(
            f"{r.get('name')} ({'current' if r.get('current') else 'behind'}, lag {r.get('lag', 0)})"
            for r in cluster.get("replicas") or []
        )
        body += f"<p>leader <b>{_e(cluster['leader'])}</b>; replicas: {_e(replicas) or '—'}</p>"
    consumers = []
    for consumer in detail.get("consumer_detail") or []:
        delivered = consumer.get("delivered") or {}
        consumers.append(
            (
                _e(consumer.get("name", "")),
                _num(consumer.get("num_pending", 0)),
                _num(consumer.get("num_ack_pending", 0)),
                _num(consumer.get("num_redelivered", 0)),
                _num(delivered.get("stream_seq", 0)),
                _e(delivered.get("last_active", "")),
            )
        )
    body += "<h3>Consumers</h3>" + (
        _table(
            ("consumer", "pending", "ack pending", "redelivered", "delivered up to", "last active"),
            consumers,
            (1, 2, 3, 4),
        )
        if consumers
        else "<p class=muted>None.</p>"
    )
    body += "<h3>Messages</h3>"
    rows = []
    for msg in messages:
        headers = msg.hdr.decode(errors="replace").split("\r\n")[1:] if msg.hdr else []
        header_text = "<br>".join(_e(line) for line in headers if line)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(msg.ts / 1e9)) if msg.ts else ""
        seq_cell = _num(msg.seq)
        if actions is not None:
            seq_cell += " " + _form(
                base, actions, {"acc": acc, "stream": name, "action": "delete", "seq": str(msg.seq)}, "delete", back
            )
        rows.append(
            (
                seq_cell,
                _e(msg.subject.decode(errors="replace")),
                _e(stamp),
                header_text,
                _payload(bytes(msg.data)),
            )
        )
    link = f"{_e(base)}/console/stream?acc={quote(acc)}&amp;name={quote(name)}"
    last_shown = messages[-1].seq if messages else first_seq
    paging = []
    if first_seq > int(state.get("first_seq", 0) or 0):
        paging.append(f'<a href="{link}&amp;seq={max(1, first_seq - page_size)}">← earlier</a>')
    if last_shown < int(state.get("last_seq", 0) or 0):
        paging.append(f'<a href="{link}&amp;seq={last_shown + 1}">later →</a>')
    body += (
        _table(("seq", "subject", "time (UTC)", "headers", "payload"), rows, (0,))
        if rows
        else "<p class=muted>None.</p>"
    )
    body += " ".join(paging)
    body += "<h3>Configuration</h3><pre>" + _e(json.dumps(config, indent=2, sort_keys=True)) + "</pre>"
    return _page(base, "/streams", name, body, server_name)


def kv_page(base: str, server_name: str, acc: str, bucket: str, keys: Sequence[tuple[str, Any, int]]) -> bytes:
    """A KV bucket's keys: (key, its newest message, how many revisions the bucket keeps of it)."""
    rows = []
    for key, msg, history in keys:
        operation = "PUT"
        if msg.hdr:
            for line in msg.hdr.decode(errors="replace").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "kv-operation":
                    operation = value.strip()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(msg.ts / 1e9)) if msg.ts else ""
        rows.append((_e(key), _num(msg.seq), _e(operation), _num(history), _e(stamp), _payload(bytes(msg.data))))
    table = (
        _table(("key", "revision", "operation", "history", "time (UTC)", "value"), rows, (1, 3))
        if rows
        else "<p class=muted>No keys.</p>"
    )
    link = f"{_e(base)}/console/stream?acc={quote(acc)}&amp;name={quote('KV_' + bucket)}"
    body = (
        f'<h2>KV bucket {_e(bucket)} <span class=muted>in {_e(acc)}</span></h2><p><a href="{link}">its stream</a></p>'
    )
    return _page(base, "/streams", f"KV {bucket}", body + table, server_name)


def objects_page(base: str, server_name: str, acc: str, bucket: str, objects: Sequence[dict[str, Any]]) -> bytes:
    """An object store's objects (their newest metadata records)."""
    rows = []
    for info in objects:
        if info.get("deleted"):
            continue
        rows.append(
            (
                _e(info.get("name", "")),
                _bytes(info.get("size", 0)),
                _num(info.get("chunks", 0)),
                _e(info.get("mtime", "")),
                _e(info.get("description", "")),
            )
        )
    table = (
        _table(("object", "size", "chunks", "modified", "description"), rows, (1, 2))
        if rows
        else "<p class=muted>No objects.</p>"
    )
    body = f"<h2>Object store {_e(bucket)} <span class=muted>in {_e(acc)}</span></h2>"
    return _page(base, "/streams", f"Objects {bucket}", body + table, server_name)


def connections_page(base: str, server_name: str, connz: dict[str, Any]) -> bytes:
    rows = []
    for conn in connz.get("connections") or []:
        who = conn.get("name") or conn.get("mqtt_client") or ""
        rows.append(
            (
                _num(conn.get("cid", 0)),
                _e(conn.get("type", conn.get("kind", ""))),
                _e(who),
                _e(f"{conn.get('ip', '')}:{conn.get('port', '')}"),
                _e(conn.get("account", "")),
                _e(" ".join(x for x in (conn.get("lang", ""), conn.get("version", "")) if x)),
                _num(conn.get("subscriptions", 0)),
                _subjects(conn.get("subscriptions_list") or []),
                _num(conn.get("in_msgs", 0)),
                _num(conn.get("out_msgs", 0)),
                _e(conn.get("uptime", "")),
                _e(conn.get("idle", "")),
            )
        )
    table = (
        _FILTER
        + _table(
            (
                "cid",
                "type",
                "name / client id",
                "address",
                "account",
                "client",
                "subs",
                "subscribed to",
                "in",
                "out",
                "uptime",
                "idle",
            ),
            rows,
            (0, 6, 8, 9),
        )
        if rows
        else "<p class=muted>No connections.</p>"
    )
    return _page(base, "/connections", "Connections", f"<h2>Connections ({len(rows)})</h2>{table}", server_name)


def _subjects(subjects: Sequence[Any], shown: int = 8) -> str:
    """A connection's subscriptions, the first few (all of them searchable through the title)."""
    names = sorted(str(subject) for subject in subjects)
    text = ", ".join(names[:shown]) + (f" … (+{len(names) - shown})" if len(names) > shown else "")
    return f'<span title="{_e(" ".join(names))}">{_e(text)}</span>' if names else ""


#: A search box over a page's table: rows whose text does not contain what is typed are hidden.
_FILTER = """<p><input id="filter" type="search" placeholder="search: name, address, account, subject..."
 style="width:320px;padding:4px" autocomplete="off"></p>
<script>
document.getElementById("filter").addEventListener("input", function(){
  const q = this.value.toLowerCase();
  for (const tr of document.querySelectorAll("main table tr:not(:first-child)")) {
    const text = (tr.textContent + " " + [...tr.querySelectorAll("[title]")].map(e => e.title).join(" ")).toLowerCase();
    tr.style.display = text.includes(q) ? "" : "none";
  }
});
</script>
"""


def accounts_page(base: str, server_name: str, accstatz: dict[str, Any], jsz: dict[str, Any]) -> bytes:
    """Every account: connections, subscriptions, traffic, and its JetStream use."""
    usage: dict[str, dict[str, Any]] = {}
    for account in jsz.get("account_details") or []:
        streams = account.get("stream_detail") or []
        usage[str(account.get("name", ""))] = {
            "streams": len(streams),
            "consumers": sum(int((st.get("state") or {}).get("consumer_count", 0) or 0) for st in streams),
            "messages": sum(int((st.get("state") or {}).get("messages", 0) or 0) for st in streams),
            "bytes": sum(int((st.get("state") or {}).get("bytes", 0) or 0) for st in streams),
        }
    rows = []
    names = sorted({str(a.get("acc", "")) for a in accstatz.get("account_statz") or []} | set(usage))
    statz = {str(a.get("acc", "")): a for a in accstatz.get("account_statz") or []}
    for name in names:
        st = statz.get(name, {})
        js = usage.get(name, {})
        rows.append(
            (
                _e(name),
                _num(st.get("conns", 0)),
                _num(st.get("num_subscriptions", 0)),
                _num((st.get("received") or {}).get("msgs", 0)),
                _num((st.get("sent") or {}).get("msgs", 0)),
                _num(js.get("streams", 0)),
                _num(js.get("consumers", 0)),
                _num(js.get("messages", 0)),
                _bytes(js.get("bytes", 0)),
            )
        )
    table = (
        _table(
            (
                "account",
                "connections",
                "subscriptions",
                "msgs in",
                "msgs out",
                "streams",
                "consumers",
                "stored",
                "bytes",
            ),
            rows,
            (1, 2, 3, 4, 5, 6, 7, 8),
        )
        if rows
        else "<p class=muted>No accounts in use.</p>"
    )
    return _page(base, "/accounts", "Accounts", f"<h2>Accounts ({len(rows)})</h2>{table}", server_name)


def _replicas(cluster: dict[str, Any]) -> str:
    parts = []
    for replica in cluster.get("replicas") or []:
        state = "current" if replica.get("current") else "behind"
        if replica.get("offline"):
            state = "offline"
        lag = int(replica.get("lag", 0) or 0)
        parts.append(f"{_e(replica.get('name', ''))} ({state}{f', lag {lag:,}' if lag else ''})")
    return ", ".join(parts) or '<span class="muted">—</span>'


def cluster_page(
    base: str, server_name: str, varz: dict[str, Any], routez: dict[str, Any], jsz: dict[str, Any]
) -> bytes:
    """Routes, the meta group, and every replicated stream's leader and replicas with their lag."""
    cluster = varz.get("cluster") or {}
    if not cluster.get("name") and not routez.get("routes"):
        body = "<h2>Cluster</h2><p class=muted>This server is not in a cluster (no <code>cluster {}</code>).</p>"
        return _page(base, "/cluster", "Cluster", body, server_name)
    routes = [
        (
            _e(route.get("remote_name", "")),
            _e(f"{route.get('ip', '')}:{route.get('port', '')}"),
            "out" if route.get("did_solicit") else "in",
            _e(route.get("rtt", "")),
            _num(route.get("in_msgs", 0)),
            _num(route.get("out_msgs", 0)),
            _bytes(route.get("pending_size", 0)),
            _e(route.get("uptime", "")),
        )
        for route in routez.get("routes") or []
    ]
    body = f"<h2>Cluster {_e(cluster.get('name', ''))}</h2>"
    body += "<h3>Routes</h3>" + (
        _table(("server", "address", "dialled", "rtt", "msgs in", "msgs out", "pending", "uptime"), routes, (4, 5, 6))
        if routes
        else "<p class=muted>No routes connected.</p>"
    )
    meta = jsz.get("meta_cluster") or {}
    if meta:
        peers = [
            (
                _e(peer.get("name", "")),
                "yes" if peer.get("current") else "no",
                "offline" if peer.get("offline") else "online",
                _ago(peer.get("active", "")),
            )
            for peer in meta.get("replicas") or []
        ]
        body += "<h3>JetStream meta group</h3>" + _cards(
            [("leader", _e(meta.get("leader", "") or "—")), ("size", _num(meta.get("cluster_size", 0)))]
        )
        if peers:
            body += _table(("peer", "current", "state", "last active"), peers)
    rows = []
    for account in jsz.get("account_details") or []:
        acc = str(account.get("name", ""))
        for stream in account.get("stream_detail") or []:
            info = stream.get("cluster") or {}
            replicas = int((stream.get("config") or {}).get("num_replicas", 1) or 1)
            if replicas < 2 and not info.get("replicas"):
                continue
            link = f"{_e(base)}/console/stream?acc={quote(acc)}&amp;name={quote(str(stream.get('name', '')))}"
            rows.append(
                (
                    _e(acc),
                    f'<a href="{link}">{_e(stream.get("name", ""))}</a>{_kind(str(stream.get("name", "")))}',
                    _num(replicas),
                    _e(info.get("raft_group", "")),
                    _e(info.get("leader", "") or "—"),
                    _replicas(info),
                )
            )
    body += "<h3>Replicated streams</h3>" + (
        _table(("account", "stream", "replicas", "group", "leader", "followers"), rows, (2,))
        if rows
        else "<p class=muted>No replicated streams.</p>"
    )
    return _page(base, "/cluster", "Cluster", body, server_name)


def leafs_page(base: str, server_name: str, varz: dict[str, Any], leafz: dict[str, Any]) -> bytes:
    """Leaf node links, in both directions (this server as hub and as leaf)."""
    leaf = varz.get("leaf") or {}
    rows = [
        (
            _e(link.get("name", "")),
            # (`is_spoke`: this server is the spoke of the link, the side that dialled)
            "leaf (we dialled the hub)" if link.get("is_spoke") else "hub side (a leaf dialled us)",
            _e(link.get("account", "")),
            _e(f"{link.get('ip', '')}:{link.get('port', '')}"),
            _e(link.get("rtt", "")),
            _num(link.get("subscriptions", 0)),
            _num(link.get("in_msgs", 0)),
            _num(link.get("out_msgs", 0)),
        )
        for link in leafz.get("leafs") or []
    ]
    body = "<h2>Leaf nodes</h2>" + _cards(
        [("links", _num(len(rows))), ("leaf port", _e(leaf.get("port", "")) or '<span class="muted">none</span>')]
    )
    body += (
        _table(("remote", "role", "account", "address", "rtt", "subs", "msgs in", "msgs out"), rows, (5, 6, 7))
        if rows
        else "<p class=muted>No leaf node links.</p>"
    )
    return _page(base, "/leafs", "Leaf nodes", body, server_name)


__all__ = [
    "accounts_page",
    "cluster_page",
    "leafs_page",
    "connections_page",
    "kv_page",
    "objects_page",
    "overview",
    "stream_page",
    "streams_page",
    "system_figures",
]
