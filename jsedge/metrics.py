"""Prometheus text exposition for `/metrics` on the monitoring port (layer 7).

Names follow prometheus-nats-exporter, so existing dashboards (Grafana 2279) and alerts keep working
when they scrape jsedge directly: every top-level number of `/varz` becomes
`gnatsd_varz_<field>{server_id="…"}` (e.g. `gnatsd_varz_connections`, `gnatsd_varz_slow_consumers`),
`/subsz` totals `gnatsd_subsz_<field>`, `/routez` (in a cluster) `gnatsd_routez_*`, `/leafz` (with leaf
nodes) `gnatsd_leafz_*`, and JetStream `/jsz` data becomes
`jetstream_server_*`, `jetstream_stream_*` and `jetstream_consumer_*` with the exporter's labels.
jsedge-only series are prefixed `jsedge_` (compiled twins, store sync latency, and in a JetStream cluster
`jsedge_jetstream_meta_cluster_size` and `jsedge_raft_*` per Raft group: term, commit/applied/last index,
leader, peers, current).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from jsedge.goparse import parse_duration_ns

#: nats-server's uptime text ("1y2d3h4m5s").
_UPTIME = re.compile(r"(?:(\d+)y)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UPTIME_SCALES = (365 * 86400, 86400, 3600, 60, 1)

_SERVER_LABELS = ("server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader")
_STREAM_LABELS = (*_SERVER_LABELS, "account", "account_id", "stream_name", "stream_leader", "is_stream_leader")
_CONSUMER_LABELS = (
    *_STREAM_LABELS,
    "consumer_name",
    "consumer_leader",
    "is_consumer_leader",
    "consumer_desc",
    "consumer_created",
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        return repr(value)
    return str(value)


class Exposition:
    """Collects samples grouped by metric name, each name with one HELP and TYPE line."""

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, str, list[str]]] = {}

    def add(self, name: str, value: Any, labels: Mapping[str, str], help_text: str = "", kind: str = "gauge") -> None:
        text = _number(value)
        if text is None:
            return
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = (help_text or name, kind, [])
        rendered = ",".join(f'{key}="{_escape(str(val))}"' for key, val in labels.items())
        family[2].append(f"{name}{{{rendered}}} {text}" if rendered else f"{name} {text}")

    def render(self) -> str:
        out: list[str] = []
        for name, (help_text, kind, samples) in self._families.items():
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(samples)
        return "\n".join(out) + "\n"


def add_flat(exposition: Exposition, prefix: str, document: Mapping[str, Any], labels: Mapping[str, str]) -> None:
    """Every top-level number of a monitoring document, as the exporter maps them."""
    for key, value in document.items():
        exposition.add(f"{prefix}_{key}", value, labels, key)


def add_jetstream(exposition: Exposition, jsz: Mapping[str, Any], server_id: str, server_name: str) -> None:
    config = jsz.get("config") or {}
    meta = jsz.get("meta_cluster") or {}
    server = dict(
        zip(
            _SERVER_LABELS,
            (
                server_id,
                server_name,
                meta.get("name", ""),
                config.get("domain", ""),
                meta.get("leader", ""),
                "true" if not meta or meta.get("leader") == server_name else "false",
            ),
        )
    )
    exposition.add(
        "jetstream_server_jetstream_disabled", 1 if jsz.get("disabled") else 0, server, "JetStream disabled or not"
    )
    exposition.add("jetstream_server_max_memory", config.get("max_memory", 0), server, "JetStream Max Memory")
    exposition.add("jetstream_server_max_storage", config.get("max_storage", 0), server, "JetStream Max Storage")
    exposition.add(
        "jetstream_server_total_streams", jsz.get("streams", 0), server, "Total number of streams in JetStream"
    )
    exposition.add(
        "jetstream_server_total_consumers", jsz.get("consumers", 0), server, "Total number of consumers in JetStream"
    )
    exposition.add(
        "jetstream_server_total_messages",
        jsz.get("messages", 0),
        server,
        "Total number of stored messages in JetStream",
    )
    exposition.add(
        "jetstream_server_total_message_bytes", jsz.get("bytes", 0), server, "Total number of bytes stored in JetStream"
    )
    for account in jsz.get("account_details") or ():
        for stream in account.get("stream_detail") or ():
            # the exporter's labels: the leader named in the stream's cluster block
            stream_leader = str((stream.get("cluster") or {}).get("leader", ""))
            labels = dict(server)
            labels.update(
                account=account.get("name", ""),
                account_id=account.get("id", account.get("name", "")),
                stream_name=stream.get("name", ""),
                stream_leader=stream_leader,
                is_stream_leader="true" if stream_leader == server_name else "false",
            )
            state = stream.get("state") or {}
            exposition.add(
                "jetstream_stream_total_messages",
                state.get("messages", 0),
                labels,
                "Total number of messages from a stream",
            )
            exposition.add(
                "jetstream_stream_total_bytes", state.get("bytes", 0), labels, "Total stored bytes from a stream"
            )
            exposition.add(
                "jetstream_stream_first_seq", state.get("first_seq", 0), labels, "First sequence from a stream"
            )
            exposition.add("jetstream_stream_last_seq", state.get("last_seq", 0), labels, "Last sequence from a stream")
            exposition.add(
                "jetstream_stream_consumer_count",
                state.get("consumer_count", 0),
                labels,
                "Total number of consumers from a stream",
            )
            for consumer in stream.get("consumer_detail") or ():
                consumer_leader = str((consumer.get("cluster") or {}).get("leader", server_name))
                clabels = dict(labels)
                clabels.update(
                    consumer_name=consumer.get("name", ""),
                    consumer_leader=consumer_leader,
                    is_consumer_leader="true" if consumer_leader == server_name else "false",
                    consumer_desc=(consumer.get("config") or {}).get("description", ""),
                    consumer_created=consumer.get("created", ""),
                )
                delivered = consumer.get("delivered") or {}
                floor = consumer.get("ack_floor") or {}
                exposition.add(
                    "jetstream_consumer_delivered_consumer_seq",
                    delivered.get("consumer_seq", 0),
                    clabels,
                    "Latest sequence number of a stream consumer",
                )
                exposition.add(
                    "jetstream_consumer_delivered_stream_seq",
                    delivered.get("stream_seq", 0),
                    clabels,
                    "Latest sequence number of a stream",
                )
                exposition.add(
                    "jetstream_consumer_num_ack_pending",
                    consumer.get("num_ack_pending", 0),
                    clabels,
                    "Number of pending acks from a consumer",
                )
                exposition.add(
                    "jetstream_consumer_num_redelivered",
                    consumer.get("num_redelivered", 0),
                    clabels,
                    "Number of redelivered messages from a consumer",
                )
                exposition.add(
                    "jetstream_consumer_num_waiting",
                    consumer.get("num_waiting", 0),
                    clabels,
                    "Number of inflight fetch requests from a pull consumer",
                )
                exposition.add(
                    "jetstream_consumer_num_pending",
                    consumer.get("num_pending", 0),
                    clabels,
                    "Number of pending messages from a consumer",
                )
                exposition.add(
                    "jetstream_consumer_ack_floor_stream_seq",
                    floor.get("stream_seq", 0),
                    clabels,
                    "Number of ack floor stream seq from a consumer",
                )
                exposition.add(
                    "jetstream_consumer_ack_floor_consumer_seq",
                    floor.get("consumer_seq", 0),
                    clabels,
                    "Number of ack floor consumer seq from a consumer",
                )


def add_routes(exposition: Exposition, routez: Mapping[str, Any], server_id: str) -> None:
    """prometheus-nats-exporter's `-routez` series: the route count and, per route, an info
    series plus rtt, subscriptions, uptime and the message/byte counters."""
    labels = {"server_id": server_id}
    exposition.add("gnatsd_routez_num_routes", routez.get("num_routes", 0), labels, "num_routes")
    for route in routez.get("routes") or ():
        base = {**labels, "rid": str(route.get("rid", ""))}
        info = {
            **base,
            "remote_id": str(route.get("remote_id", "")),
            "remote_name": str(route.get("remote_name", "")),
            "account": str(route.get("account", "")),
            "ip": str(route.get("ip", "")),
            "compression": str(route.get("compression", "")),
        }
        exposition.add("gnatsd_routez_route_info", 1, info, "route_info")
        rtt = route.get("rtt")
        if isinstance(rtt, str) and rtt:
            try:
                exposition.add("gnatsd_routez_route_rtt_seconds", parse_duration_ns(rtt) / 1e9, base, "rtt_seconds")
            except ValueError:
                pass
        uptime = _UPTIME.fullmatch(str(route.get("uptime", "")))
        if uptime and any(uptime.groups()):
            seconds = sum(int(part or 0) * scale for part, scale in zip(uptime.groups(), _UPTIME_SCALES, strict=True))
            exposition.add("gnatsd_routez_route_uptime_seconds", seconds, base, "uptime_seconds")
        exposition.add("gnatsd_routez_route_subscriptions", route.get("subscriptions", 0), base, "subscriptions")
        for field in ("in_msgs", "out_msgs", "in_bytes", "out_bytes"):
            exposition.add(f"gnatsd_routez_route_{field}", route.get(field, 0), base, field)


def add_leafs(exposition: Exposition, leafz: Mapping[str, Any], server_id: str) -> None:
    """prometheus-nats-exporter's `-leafz` series: the link count and, per leaf node connection,
    an info series plus rtt, the message/byte counters and the subscription count."""
    exposition.add("gnatsd_leafz_conn_nodes_total", leafz.get("leafnodes", 0), {"server_id": server_id}, "nodes_total")
    for leaf in leafz.get("leafs") or ():
        account = str(leaf.get("account", ""))
        labels = {
            "server_id": server_id,
            "account": account,
            "account_id": account,
            "ip": str(leaf.get("ip", "")),
            "port": str(leaf.get("port", "")),
            "name": str(leaf.get("name", "")),
        }
        exposition.add("gnatsd_leafz_info", 1, labels, "info")
        rtt = leaf.get("rtt")
        seconds = 0.0
        if isinstance(rtt, str) and rtt:
            try:
                seconds = parse_duration_ns(rtt) / 1e9
            except ValueError:
                pass
        exposition.add("gnatsd_leafz_conn_rtt", seconds, labels, "rtt")
        for field in ("in_msgs", "out_msgs", "in_bytes", "out_bytes"):
            exposition.add(f"gnatsd_leafz_conn_{field}", leaf.get(field, 0), labels, field)
        exposition.add(
            "gnatsd_leafz_conn_subscriptions_total", leaf.get("subscriptions", 0), labels, "subscriptions_total"
        )


def render(
    varz: Mapping[str, Any],
    subsz: Mapping[str, Any] | None = None,
    jsz: Mapping[str, Any] | None = None,
    routez: Mapping[str, Any] | None = None,
    leafz: Mapping[str, Any] | None = None,
    twins: Mapping[str, str] | None = None,
    extra: Iterable[tuple[str, Any, Mapping[str, str], str]] = (),
) -> str:
    exposition = Exposition()
    server_id = str(varz.get("server_id", ""))
    labels = {"server_id": server_id}
    add_flat(exposition, "gnatsd_varz", varz, labels)
    slow = varz.get("slow_consumer_stats") or {}
    for kind, value in slow.items():
        exposition.add(
            "gnatsd_varz_slow_consumer_stats", value, {**labels, "type": kind}, "slow consumers by connection kind"
        )
    if subsz is not None:
        add_flat(exposition, "gnatsd_subsz", subsz, labels)
    if routez is not None:
        add_routes(exposition, routez, server_id)
    if leafz is not None:
        add_leafs(exposition, leafz, server_id)
    if jsz is not None:
        add_jetstream(exposition, jsz, server_id, str(varz.get("server_name", "")))
    for name, kind in sorted((twins or {}).items()):
        exposition.add(
            "jsedge_compiled_twin",
            1 if kind == "c" else 0,
            {**labels, "twin": name},
            "1 when the compiled (Cython) twin is loaded",
        )
    for name, value, extra_labels, help_text in extra:
        exposition.add(name, value, {**labels, **extra_labels}, help_text)
    return exposition.render()
