"""What clustered JetStream reports to monitoring (layer 6, read-only): `/jsz` `meta_cluster`, `/varz`
`jetstream.meta`, the `cluster` block of `/jsz` stream details, `/healthz`'s clustered checks and the
Raft series of `/metrics`.

Every function takes the JetStreamCluster (cluster/jetstream.py) and only reads it. The shapes and
texts are nats-server 2.15's (monitor.go `Jsz`/`updateJszVarz`/`healthz`, jetstream_cluster.go
`clusterInfo`, raft.go `Peers`/`isCurrent`; spec/monitoring.md §9.4, spec/clustering.md §4.6):

* a group's `replicas` are its peers other than this server (every peer, this one included, while
  the group has no leader). The leader knows each follower's lag and last contact; a follower knows
  only when it last heard from the leader (current = within two heartbeats) and nothing about the
  other followers (`current: false, active: 0`). A peer unseen for longer than the lost-quorum
  interval is never current; `offline` when its route is gone or its hellos stopped;
* the meta group's MetaClusterInfo adds `peer` (the leader's id), `cluster_size`, `quorum_needed`, the
  pending counters (jsedge runs API requests inline: always 0) and `snapshot` (entries and bytes of
  the meta log since its last compaction);
* `/healthz` fails while the meta group has no leader or this server is not current with it, then
  when a stream (or consumer) placed on this server is not current.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from jsedge.cluster.peers import peer_id
from jsedge.errors import go_quote
from jsedge.jetstream.models import format_time_ns

if TYPE_CHECKING:
    from jsedge.cluster.group import RaftGroup
    from jsedge.cluster.jetstream import JetStreamCluster

_NS = 1_000_000_000
ZERO_TIME = "0001-01-01T00:00:00Z"
#: nats-server gives a consumer this long to appear after its assignment before /healthz complains.
CONSUMER_GRACE_NS = 5 * _NS


# ------------------------------------------------------------------------------------------------
# cluster info blocks


def _group_running(group: RaftGroup | None) -> bool:
    return group is not None and group.started and not group.stopped and group.node is not None


def _routed_peers(cluster: JetStreamCluster) -> set[str]:
    """Peer ids of the servers a route connects this one to right now."""
    routes = cluster.server.routes
    if routes is None:
        return set()
    return {peer_id(route.remote_name) for route in list(routes.routes.values()) if route.remote_name}


def group_replicas(cluster: JetStreamCluster, group: RaftGroup, now: float | None = None) -> list[dict[str, Any]]:
    """PeerInfo of the group's peers as this server sees them (nats-server's clusterInfo over Peers())."""
    if not _group_running(group):
        return []
    node = group.node
    if now is None:
        now = group.loop.time()
    me = cluster.me
    leader = node.leader
    leading = node.role == "leader"
    heartbeat = group.timing.heartbeat
    lost_quorum = group.timing.lost_quorum
    routed = _routed_peers(cluster)
    out = []
    for peer in node.peers:
        if leader and peer == me:
            continue  # this server is left out, unless the group is leaderless
        current = False
        last = -math.inf
        lag = 0
        if peer == me:
            current = True
        elif leading:
            try:
                match, last = node.progress(peer)
            except Exception:  # a peer leaving the group
                match, last = 0, -math.inf
            lag = max(node.commit_index - match, 0)
            current = lag == 0
        elif peer == leader:
            last = node.last_leader_contact
            current = now - last <= 2 * heartbeat
        since = now - last if math.isfinite(last) and now > last else 0.0
        if current and since > lost_quorum:
            current = False
        name = cluster.name_of(peer)
        info: dict[str, Any] = {"name": name, "current": current}
        if name == peer and peer != me:
            # nats-server's text for a peer whose server it has not heard of (its lag is misleading)
            info["name"] = f"Server name unknown at this time (peerID: {peer})"
            info["offline"] = True
            lag = 0
        elif peer != me and (peer not in routed or not cluster.peer_online(peer)):
            # nats-server marks a server offline when it shuts down or its statsz stop; here: its
            # route is gone, or its hellos stopped
            info["offline"] = True
        info["active"] = int(since * _NS)
        if lag:
            info["lag"] = lag
        info["peer"] = peer
        out.append(info)
    return out


def group_cluster_info(
    cluster: JetStreamCluster, group: RaftGroup | None, raft_group: str = "", leader_since_ns: int = 0
) -> dict[str, Any]:
    """A group's ClusterInfo (STREAM.INFO `cluster`, `/jsz` stream details). `leader_since_ns` is shown
    only on the leader, as nats-server does; an R1 asset (no group) reports this server as leader."""
    info: dict[str, Any] = {}
    if cluster.cluster_name:
        info["name"] = cluster.cluster_name
    if group is None:
        info["leader"] = cluster.server_name
        return info
    if raft_group:
        info["raft_group"] = raft_group
    if not _group_running(group):
        return info
    leader = group.node.leader
    if leader:
        info["leader"] = cluster.name_of(leader)
        if leader == cluster.me and leader_since_ns:
            info["leader_since"] = format_time_ns(leader_since_ns)
    info["system_account"] = True
    info["traffic_account"] = cluster.system_account_name
    replicas = group_replicas(cluster, group)
    if replicas:
        info["replicas"] = replicas
    return info


def stream_cluster_info(cluster: JetStreamCluster, account: str, stream: str) -> dict[str, Any] | None:
    """The `cluster` block of a stream this server holds a replica of (None when it holds none)."""
    replica = cluster.replicas.get((account, stream))
    if replica is None:
        return None
    group = replica.group
    leader_since = int(replica.leader_since or 0) if group is not None and group.is_leader else 0
    return group_cluster_info(cluster, group, replica.group_name, leader_since)


def stream_raft_group(cluster: JetStreamCluster, account: str, stream: str) -> str:
    """`/jsz?raft=true` `stream_raft_group`: the group's name when the stream is replicated here."""
    replica = cluster.replicas.get((account, stream))
    if replica is None or replica.group is None:
        return ""
    return str(replica.group_name)


def meta_cluster_info(cluster: JetStreamCluster, *, statsz: bool = False) -> dict[str, Any] | None:
    """MetaClusterInfo (`/jsz` meta_cluster, `/varz` jetstream.meta); None before the meta group runs.
    `statsz`: the server statsz variant, where a server that does not lead the meta group sends a short
    form (the group's name instead of the cluster's, no replicas)."""
    group = cluster.meta
    if not _group_running(group):
        return None
    node = group.node
    leader = node.leader
    brief = statsz and node.role != "leader"
    info: dict[str, Any] = {}
    name = group.name if brief else cluster.cluster_name
    if name:
        info["name"] = name
    if leader:
        info["leader"] = cluster.name_of(leader)
        info["peer"] = leader
    replicas = [] if brief else group_replicas(cluster, group)
    if replicas:
        info["replicas"] = replicas
    info["cluster_size"] = len(node.peers)
    info["quorum_needed"] = node.quorum() if node.peers else 0
    # API requests are handled inline (no routed-request queues): nothing is ever pending
    info["pending"] = 0
    info["pending_requests"] = 0
    info["pending_infos"] = 0
    snapshot_index = node.snapshot.index if node.snapshot is not None else 0
    entries = node.entries(snapshot_index + 1, node.last_index)
    info["snapshot"] = {
        "pending_entries": max(node.last_index - snapshot_index, 0),
        "pending_size": sum(len(entry.data) for entry in entries),
        "last_time": ZERO_TIME,
    }
    return info


# ------------------------------------------------------------------------------------------------
# counters


def ha_assets(cluster: JetStreamCluster) -> int:
    """nats-server's `ha_assets` (its number of Raft nodes): the meta group plus the replicated
    streams this server holds (consumers run unreplicated here)."""
    count = 1 if _group_running(cluster.meta) else 0
    return count + sum(1 for replica in list(cluster.replicas.values()) if _group_running(replica.group))


def leader_counts(cluster: JetStreamCluster) -> tuple[int, int]:
    """(`streams_leader`, `consumers_leader`) of `/jsz?raft=true`: streams this server leads (or
    holds unreplicated) and the consumers it runs (they are unreplicated)."""
    streams = consumers = 0
    for replica in list(cluster.replicas.values()):
        if replica.group is None or replica.group.is_leader:
            streams += 1
        stream = replica.stream
        if stream is not None:
            consumers += len(getattr(stream, "consumers", {}) or {})
    return streams, consumers


# ------------------------------------------------------------------------------------------------
# /healthz


def group_current(group: RaftGroup | None, now: float | None = None) -> bool:
    """nats-server's raft `isCurrent`: running, something committed, and either leading or in recent
    contact with the leader, not installing a snapshot, everything committed applied."""
    if group is None or not _group_running(group):
        return False
    node = group.node
    if node.commit_index == 0:
        return False
    if node.role == "leader":
        return True
    if now is None:
        now = group.loop.time()
    if node.leader and node.leader != group.me and now - node.last_leader_contact > 2 * group.timing.heartbeat:
        return False
    if node.installing is not None:
        return False
    return group.applied >= node.commit_index


def meta_health(cluster: JetStreamCluster) -> str:
    """Why the meta layer is unhealthy ("" when it is healthy), in nats-server's words."""
    group = cluster.meta
    if not group.started:
        return "JetStream has not established contact with a meta leader"
    if group.failed is not None:
        return f"JetStream meta layer write error: {group.failed}"
    if group.stopped:
        return "JetStream meta layer is not running"
    if not group.node.leader:
        return "JetStream has not established contact with a meta leader"
    if not group_current(group):
        return "JetStream is not current with the meta leader"
    return ""


def _stream_health(cluster: JetStreamCluster, sa: Any) -> str:
    """nats-server's isStreamHealthy for a stream placed on this server ("" when healthy)."""
    replica = cluster.replicas.get((sa.account, sa.name))
    if replica is None or replica.stream is None:
        return "stream not found"
    group = replica.group
    if len(sa.peers) <= 1:
        return ""
    if group is None:
        return "group node missing"
    if group.failed is not None:
        return f"node write error: {group.failed}"
    if getattr(replica, "_catchup", None) is not None:
        return "stream catching up"
    if not group_current(group):
        return "group node unhealthy"
    return ""


def _consumer_health(cluster: JetStreamCluster, sa: Any, ca: Any) -> str:
    """nats-server's isConsumerHealthy for a consumer placed on this server (consumers are R1 here:
    it must exist once its assignment is a few seconds old)."""
    replica = cluster.replicas.get((sa.account, sa.name))
    stream = replica.stream if replica is not None else None
    if stream is None:
        return "stream missing"
    if ca.name not in stream.consumers and time.time_ns() - int(ca.created or 0) >= CONSUMER_GRACE_NS:
        return "consumer not found"
    return ""


def _error(kind: str, message: str, account: str = "", stream: str = "", consumer: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": kind}
    if account:
        out["account"] = account
    if stream:
        out["stream"] = stream
    if consumer:
        out["consumer"] = consumer
    out["error"] = message
    return out


def health(
    cluster: JetStreamCluster, *, meta_only: bool = False, account: str = "", stream: str = "", consumer: str = ""
) -> tuple[int, list[dict[str, Any]]]:
    """The clustered part of nats-server's healthz: (HTTP status, HealthzErrors in the order found).
    Without `details` only the first error is reported (nats-server returns at the first one)."""
    problem = meta_health(cluster)
    if problem:
        return 503, [_error("JETSTREAM", problem)]
    if meta_only:
        return 200, []
    me = cluster.me
    state = cluster.state
    assignments = [sa for sa in list(state.streams.values()) if not account or sa.account == account]
    if account:
        if not assignments:
            return 404, [_error("ACCOUNT", f"JetStream account {go_quote(account)} not found", account)]
        if stream:
            sa = state.stream(account, stream)
            if sa is None or me not in sa.peers:
                message = f"JetStream stream {go_quote(stream)} not found on account {go_quote(account)}"
                return 404, [_error("STREAM", message, account, stream)]
            assignments = [sa]
            if consumer:
                ca = sa.consumers.get(consumer)
                if ca is None or me not in ca.peers:
                    message = (
                        f"JetStream consumer {go_quote(consumer)} not found for stream {go_quote(stream)} "
                        f"on account {go_quote(account)}"
                    )
                    return 404, [_error("CONSUMER", message, account, stream, consumer)]
    errors = []
    for sa in assignments:
        if me not in sa.peers:
            continue
        problem = _stream_health(cluster, sa)
        if problem:
            message = f"JetStream stream '{sa.account} > {sa.name}' is not current: {problem}"
            errors.append(_error("STREAM", message, sa.account, sa.name))
            continue
        for name, ca in list(sa.consumers.items()):
            if consumer and name != consumer:
                continue
            if me not in ca.peers:
                continue
            problem = _consumer_health(cluster, sa, ca)
            if problem:
                message = f"JetStream consumer '{sa.account} > {sa.name} > {name}' is not current: {problem}"
                errors.append(_error("CONSUMER", message, sa.account, sa.name, name))
    return (503 if errors else 200), errors


# ------------------------------------------------------------------------------------------------
# /metrics


def raft_metrics(cluster: JetStreamCluster) -> list[tuple[str, Any, dict[str, str], str]]:
    """jsedge_raft_* series, one set per Raft group this server runs, plus the meta group's size:
    (name, value, labels, help) as `metrics.render(extra=...)` takes them."""
    out: list[tuple[str, Any, dict[str, str], str]] = []
    meta = cluster.meta
    if _group_running(meta):
        out.append(
            ("jsedge_jetstream_meta_cluster_size", len(meta.node.peers), {}, "servers in the JetStream meta group")
        )
    groups: list[tuple[RaftGroup, str, str, str]] = [(meta, "_meta_", "", "")]
    for (account, stream), replica in sorted(list(cluster.replicas.items())):
        if replica.group is not None:
            groups.append((replica.group, replica.group_name, account, stream))
    for group, name, account, stream in groups:
        if not _group_running(group):
            continue
        node = group.node
        labels = {"raft_group": name, "account": account, "stream_name": stream}
        out.append(("jsedge_raft_term", node.term, labels, "current Raft term of the group"))
        out.append(("jsedge_raft_commit_index", node.commit_index, labels, "highest committed Raft index"))
        out.append(("jsedge_raft_applied_index", group.applied, labels, "highest Raft index applied here"))
        out.append(("jsedge_raft_last_index", node.last_index, labels, "highest Raft index in the local log"))
        out.append(("jsedge_raft_is_leader", 1 if node.role == "leader" else 0, labels, "1 when this server leads"))
        out.append(("jsedge_raft_peers", len(node.peers), labels, "members of the Raft group"))
        out.append(("jsedge_raft_current", 1 if group_current(group) else 0, labels, "1 when current with its leader"))
    return out


def advisory_peers(cluster: JetStreamCluster, group: RaftGroup) -> list[dict[str, Any]]:
    """The `replicas` of a leader-elected or quorum-lost advisory: every peer of the group, this
    server included, as nats-server's Server.replicas lists them (name, current, active, lag, peer)."""
    if not _group_running(group):
        return []
    now = group.loop.time()
    seen = {peer: (current, since, lag) for peer, current, since, lag in group.replicas(now)}
    out = []
    for peer in group.node.peers:
        current, since, lag = seen.get(peer, (True, 0.0, 0))
        info: dict[str, Any] = {"name": cluster.name_of(peer), "current": current, "active": max(int(since * 1e9), 0)}
        if lag:
            info["lag"] = lag
        info["peer"] = peer
        out.append(info)
    return out


__all__ = [
    "advisory_peers",
    "group_cluster_info",
    "group_current",
    "group_replicas",
    "ha_assets",
    "health",
    "leader_counts",
    "meta_cluster_info",
    "meta_health",
    "raft_metrics",
    "stream_cluster_info",
    "stream_raft_group",
]
