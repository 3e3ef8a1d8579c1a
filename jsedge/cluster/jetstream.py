"""Clustered JetStream's coordinator (layer 6): the meta group, the peers, and this server's replicas.

`JetStreamCluster(server, jetstream, api)` is built by the composition root (server.py) when JetStream
runs on a server with routes. It

* runs the meta group `_meta_` over every JetStream server of the cluster (jsedge servers only: a
  nats-server peer with JetStream gets a warning from the route layer and is left out);
* learns its peers from `hello` control messages sent every second to the servers the routes know
  (name, cluster, tags, whether the sender's meta group is configured, its leader);
* bootstraps the meta group once: when no peer has a configured meta group and at least
  max(2, number of configured routes) servers are known (nats-server's expected cluster size), the
  server with the smallest peer id writes the initial membership (everyone it knows) as the first
  entry of its log and campaigns; the others learn it by replication. Servers that join later are
  added by the meta leader (one membership change at a time) when their hello arrives;
* applies meta commands (meta.py) and reacts: opens, updates and closes this server's replicas
  (cluster/stream.py), answers API requests that wait for an assignment to take effect;
* installs the cluster's `$JS.API` handlers (cluster/api.py).

Raft logs live in `<store_dir>/jetstream/<system account>/_js_/<group>/` as in nats-server.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

from jsedge.cluster.api import FRESH as FRESH_REQUEST
from jsedge.cluster.api import ClusterAPI, answer_assignment
from jsedge.cluster.group import RaftGroup
from jsedge.cluster.meta import MetaChange, MetaState, StreamAssignment, decode_command, encode_command
from jsedge.cluster.peers import META_GROUP, peer_id
from jsedge.cluster.stream import ClusteredStream
from jsedge.cluster.transport import Transport
from jsedge.cluster.types import Entry, SnapshotMeta
from jsedge.jetstream import advisory
from jsedge.jetstream.commands import UpdateConfig
from jsedge.jetstream.models import decode_stream_config_request

HELLO_INTERVAL = 1.0
#: A peer is online while its hellos keep arriving within this many seconds.
ONLINE_WINDOW = 3.5
#: Compact the meta log after this many applied entries.
META_COMPACT_EVERY = 1024


class MetaMachine:
    """The meta group's state machine: MetaState plus the coordinator's reactions."""

    def __init__(self, cluster: JetStreamCluster) -> None:
        self.cluster = cluster
        self.applied_since_compact = 0

    def apply(self, entry: Entry) -> Any:
        command = decode_command(entry.data)
        change = self.cluster.state.apply(command)
        if not self.cluster.recovering:
            self.cluster.on_meta_change(change, command)
        self.applied_since_compact += 1
        return change

    def applied_upto(self, index: int) -> None:
        cluster = self.cluster
        if cluster.recovering:
            node = cluster.meta.node
            if index >= cluster.recover_upto or (node.leader and index >= node.commit_index):
                cluster.finish_recovery()
        if self.applied_since_compact >= META_COMPACT_EVERY:
            self.applied_since_compact = 0
            # the meta state lives in memory: the snapshot written with the compaction is its copy
            self.cluster.meta.compact(index)

    def snapshot(self) -> bytes:
        return self.cluster.state.encode()

    async def restore(self, meta: SnapshotMeta, data: bytes, leader: str) -> None:
        self.cluster.recovering = False  # the leader's snapshot is the whole state
        self.cluster.restore_state(MetaState.decode(data))

    def leader_changed(self, is_leader: bool, leader: str) -> None:
        self.cluster.meta_leader_changed(is_leader, leader)


class JetStreamCluster:
    def __init__(self, server: Any, jetstream: Any, api: Any) -> None:
        self.server = server
        self.jetstream = jetstream
        self.api = api
        self.logger = server.logger
        self.loop = server.loop
        self.server_name: str = server.server_name
        self.me = peer_id(self.server_name)
        config = server.config
        self.system_account_name = config.system_account or "$SYS"
        self.system_account = server.accounts.get(self.system_account_name)
        self.transport = Transport(server, self.system_account, self.me)
        self.state = MetaState()
        #: replaying this server's own meta log at start (see start()); up to this index
        self.recovering = False
        self.recover_upto = 0
        self.machine = MetaMachine(self)
        self.meta = RaftGroup(META_GROUP, self.group_dir(META_GROUP), self.me, (), self.transport, server, self.machine)
        #: (account, stream) -> this server's replica
        self.replicas: dict[tuple[str, str], ClusteredStream] = {}
        #: peer id -> what its last hello said, and when it came
        self.peers: dict[str, dict[str, Any]] = {}
        self.started_at = time.monotonic()
        self.meta_leader_since = 0
        self._hello_handle: Any = None
        self._bootstrap_candidate_since = 0.0
        self._adding: str = ""
        #: SERVER.REMOVE: peers being taken out of the meta group (-> proposal index), and the ones
        #: taken out (never added back automatically while this server leads)
        self.removing: dict[str, int] = {}
        self.removed: set[str] = set()
        #: (account, stream) -> callbacks waiting for a meta change to that stream
        self.waiting: dict[tuple[str, str], list[Callable[[MetaChange], None]]] = {}
        self.stopped = False
        self.cluster_api = ClusterAPI(api, self)
        self.cluster_api.install()

    # ------------------------------------------------------------------ names

    @property
    def cluster_name(self) -> str:
        routes = self.server.routes
        return str(routes.cluster_name) if routes is not None else str(self.server.config.cluster.name)

    def name_of(self, peer: str) -> str:
        if peer == self.me:
            return self.server_name
        entry = self.state.servers.get(peer)
        if entry is not None:
            return entry.name
        seen = self.peers.get(peer)
        if seen is not None:
            return str(seen["name"])
        # not heard of yet (just restarted): a peer id is the hash of its server's name, and the
        # routes know their servers' names (nats-server logs the name too)
        routes = getattr(self.server, "routes", None)
        for route in list(getattr(routes, "routes", {}).values()) if routes is not None else ():
            name = getattr(route, "remote_name", "")
            if name and peer_id(name) == peer:
                return str(name)
        return peer

    def peer_online(self, peer: str) -> bool:
        if peer == self.me:
            return True
        seen = self.peers.get(peer)
        return seen is not None and time.monotonic() - seen["at"] < ONLINE_WINDOW

    def group_dir(self, group: str) -> str:
        return os.path.join(self.jetstream.store_root, self.system_account_name, "_js_", group)

    @property
    def is_meta_leader(self) -> bool:
        return self.meta.is_leader

    @property
    def meta_leader(self) -> str:
        return self.meta.leader

    def meta_leaderless(self) -> bool:
        """No meta leader, for longer than a lost-quorum interval since start (nats-server)."""
        if not self.meta.started or self.meta.leader:
            return False
        return time.monotonic() - self.started_at > self.meta.timing.lost_quorum

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.system_account is None:
            self.logger.error("JetStream cluster requires a system account: JetStream is not clustered")
            return
        self.transport.control.update(
            {
                "hello": self._on_hello,
                "propose": self._on_forwarded_proposal,
                "catchup": self._on_catchup_request,
                "info": self._on_info_request,
                "info_reply": self._on_info_reply,
            }
        )
        self.transport.start()
        self.logger.info("Starting JetStream cluster")
        self.logger.info("Creating JetStream metadata controller")
        self.meta.start()
        log = self.meta.log
        if log.snapshot is not None and log.snapshot_data:
            self.state = MetaState.decode(log.snapshot_data)
        # Recovery: the commands in this server's own meta log are applied to the state only, and
        # the replicas are reconciled once, with the state they end in (nats-server's
        # recoveryUpdates). Acting on each replayed command would act on assignments that later
        # ones replaced: an old stream command names the group a replica change retired, and
        # opening the store for that group would start it afresh.
        self.recover_upto = self.meta.node.last_index
        self.recovering = self.recover_upto > (log.snapshot.index if log.snapshot is not None else 0)
        if not self.recovering:
            self.restore_state(self.state)
        self.logger.info(f"JetStream cluster Node: {self.me}")
        self._hello_handle = self.loop.call_soon(self._hello)

    def routes_changed(self) -> None:
        """A route opened or closed. Groups whose leader runs on a server this one no longer has a
        route to elect a new leader soon instead of after a whole election timeout: a killed
        process closes its routes at once, so a crash fails over in about a second (a partition,
        which closes nothing, still waits for the timeout)."""
        routes = getattr(self.server, "routes", None)
        if routes is None or self.stopped:
            return
        reachable = {peer_id(conn.remote_name) for conn in routes.routes.values() if conn.remote_name}
        for peer, seen in self.peers.items():
            if peer not in reachable:
                # offline now rather than when its hellos stop arriving: placement (an R1
                # consumer's server, say) must not pick a server that was just killed
                seen["at"] = 0.0
        groups = [self.meta]
        for replica in self.replicas.values():
            if replica.group is not None:
                groups.append(replica.group)
            groups.extend(m.group for m in replica.consumer_groups.values() if m.group is not None)
        for group in groups:
            leader = group.leader if group.started else ""
            if leader and leader != self.me and leader not in reachable:
                self.logger.debug(f"RAFT [{self.me} - {group.name}] The route to leader {leader} closed")
                group.leader_unreachable()

    async def hand_over(self, timeout: float = 1.0) -> None:
        """Lame duck and shutdown: hand every group this server leads to a caught-up follower
        (nats-server's transferRaftLeaders), waiting up to `timeout` for the transfers."""
        groups = [self.meta] + [r.group for r in self.replicas.values() if r.group is not None]
        leading = [g for g in groups if g.is_leader and len(g.node.peers) > 1]
        if not leading:
            return
        for group in leading:
            try:
                group.transfer(None)
            except Exception:
                pass
        deadline = self.loop.time() + timeout
        while self.loop.time() < deadline and any(g.is_leader for g in leading):
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.stopped = True
        if self._hello_handle is not None:
            self._hello_handle.cancel()
            self._hello_handle = None
        for replica in list(self.replicas.values()):
            replica.stop()
        self.replicas.clear()
        if self.meta is not None:
            self.meta.stop()
        self.transport.stop()

    # ------------------------------------------------------------------ peers and bootstrap

    def _route_peers(self) -> dict[str, str]:
        """Peer id -> server name of the jsedge JetStream servers the routes connect us to."""
        out: dict[str, str] = {}
        routes = self.server.routes
        if routes is None:
            return out
        for route in list(routes.routes.values()):
            info = route.remote_info
            if "jsedge" in info and info.get("jetstream") and route.remote_name:
                out[peer_id(route.remote_name)] = route.remote_name
        return out

    def _hello(self) -> None:
        self._hello_handle = None
        if self.stopped:
            return
        if self.logger.debug_enabled:
            n = self.meta.node
            self.logger.debug(
                f"META role={n.role} term={n.term} leader={n.leader} commit={n.commit_index} "
                f"applied={n.applied} last={n.last_index} persisted={n.persisted_index} peers={n.peers}"
            )
            for key, r in self.replicas.items():
                if r.group is not None:
                    g = r.group.node
                    self.logger.debug(
                        f"STREAM {key} role={g.role} term={g.term} leader={g.leader} commit={g.commit_index} "
                        f"applied={g.applied} last={g.last_index} persisted={g.persisted_index}"
                    )
        try:
            self._say_hello()
            self._maybe_bootstrap()
            self._maybe_add_peers()
            for replica in list(self.replicas.values()):
                if replica.assignment.scale is not None:
                    replica.seal()  # a replica change under way: (re)try its next step
        except Exception as exc:  # never let the timer die
            self.logger.error(f"JetStream cluster housekeeping failed: {exc!r}")
        interval = HELLO_INTERVAL if self.meta.node.peers else HELLO_INTERVAL / 4
        self._hello_handle = self.loop.call_later(interval, self._hello)

    def _hello_document(self) -> dict[str, Any]:
        return {
            "name": self.server_name,
            "cluster": self.cluster_name,
            "tags": list(self.server.config.server_tags),
            "configured": bool(self.meta.node.peers),
            "leader": self.meta_leader,
        }

    def _say_hello(self) -> None:
        document = self._hello_document()
        for peer in self._route_peers():
            self.transport.send_control(peer, "hello", document)

    def _on_hello(self, sender: str, document: dict[str, Any]) -> None:
        name = document.get("name")
        if not sender or not isinstance(name, str) or peer_id(name) != sender:
            return  # a peer id is its server name's hash: anything else is not a JetStream server
        tags = document.get("tags")
        self.peers[sender] = {
            "name": name,
            "cluster": str(document.get("cluster", "")),
            "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
            "configured": bool(document.get("configured")),
            "leader": str(document.get("leader", "")),
            "at": time.monotonic(),
        }

    def _maybe_bootstrap(self) -> None:
        node = self.meta.node
        if node.peers or node.last_index:
            return
        now = time.monotonic()
        known = {p for p, seen in self.peers.items() if now - seen["at"] < ONLINE_WINDOW}
        if any(self.peers[p]["configured"] for p in known):
            self._bootstrap_candidate_since = 0.0
            return  # an existing meta group will add us
        expected = max(2, len(self.server.config.cluster.routes))
        if len(known) + 1 < expected:
            self._bootstrap_candidate_since = 0.0
            return
        if not self._bootstrap_candidate_since:
            self._bootstrap_candidate_since = now  # let the view settle for a round
            return
        if now - self._bootstrap_candidate_since < HELLO_INTERVAL:
            return
        members = tuple(sorted(known | {self.me}))
        if members[0] != self.me:
            return  # the smallest peer id bootstraps
        self.logger.info(f"JetStream cluster bootstrapping the metadata group with {len(members)} servers")
        self.meta.bootstrap(members)

    def _maybe_add_peers(self) -> None:
        """Meta leader: add JetStream servers that said hello but are not members (one at a time)."""
        if not self.is_meta_leader:
            return
        node = self.meta.node
        members = set(node.peers)
        for peer, seen in self.peers.items():
            if not self.peer_online(peer) or peer in self.removed or peer in self.removing:
                continue
            if peer not in self.state.servers:
                self.propose_meta(
                    {
                        "op": "server",
                        "peer": peer,
                        "name": seen["name"],
                        "cluster": seen["cluster"],
                        "tags": seen["tags"],
                    }
                )
            if peer in members or peer == self._adding:
                continue
            try:
                self._adding = peer
                self.meta.propose_peers(tuple(sorted(members | {peer})))
                self.logger.info(f"JetStream cluster adding peer {seen['name']} ({peer}) to the metadata group")
            except Exception:
                self._adding = ""
            return
        self._adding = ""

    # ------------------------------------------------------------------ meta

    def propose_meta(self, command: dict[str, Any]) -> Any:
        return self.meta.propose(encode_command(command))

    def propose_meta_anywhere(self, command: dict[str, Any]) -> None:
        """Propose a meta command from any server: forwarded to the meta leader if not this one."""
        if self.is_meta_leader:
            fut = self.propose_meta(command)
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        elif self.meta_leader:
            self.forward_proposal(self.meta_leader, META_GROUP, encode_command(command))

    def meta_leader_changed(self, is_leader: bool, leader: str) -> None:
        if is_leader:
            self.meta_leader_since = time.time_ns()
            self.logger.info("Self is new JetStream cluster metadata leader")
            if self.me not in self.state.servers:
                self.propose_meta(
                    {
                        "op": "server",
                        "peer": self.me,
                        "name": self.server_name,
                        "cluster": self.cluster_name,
                        "tags": list(self.server.config.server_tags),
                    }
                )
        elif leader:
            self.meta_leader_since = time.time_ns()
            self.logger.info(f"JetStream cluster new metadata leader: {self.name_of(leader)}/{self.cluster_name}")
        else:
            self.logger.warn("JetStream cluster no metadata leader")

    def finish_recovery(self) -> None:
        """The meta log this server had at start is applied: reconcile with the state it ends in."""
        self.recovering = False
        self.logger.debug(f"JetStream cluster recovered the meta state up to {self.recover_upto}")
        self.restore_state(self.state)

    def restore_state(self, state: MetaState) -> None:
        """A meta snapshot replaced the state: reconcile the local replicas with it."""
        self.state = state
        wanted = {key for key, sa in state.streams.items() if self.me in sa.peers}
        for key in list(self.replicas):
            if key not in wanted:
                self._close_replica(key, delete=True)
        for key in wanted:
            replica = self._ensure_replica(state.streams[key])
            if replica is not None:
                self._reconcile_consumers(replica, state.streams[key])

    def on_meta_change(self, change: MetaChange, command: dict[str, Any]) -> None:
        op = change.op
        if self.logger.debug_enabled:
            self.logger.debug(
                f"JetStream cluster meta change: {op} {command.get('account', '')} {command.get('name', '')}"
            )
        sa = change.stream
        if op == "stream_scale" and sa is not None:
            replica = self.replicas.get((sa.account, sa.name))
            if replica is not None:
                replica.assignment = sa
                replica.seal()
        elif op in ("stream", "stream_update") and sa is not None:
            key = (sa.account, sa.name)
            regrouped = op == "stream_update" and change.previous is not None and change.previous.group != sa.group
            if self.me in sa.peers:
                replica = self._ensure_replica(sa)
                if replica is not None:
                    if op == "stream":
                        self._answer_create(replica, command, existed=change.previous is not None)
                    elif regrouped:
                        self._reconcile_consumers(replica, sa)
                        if sa.seed == self.me:
                            self._answer_regroup(replica, command)
                    else:
                        self._update_config(replica, command)
            elif key in self.replicas:
                self._close_replica(key, delete=True)
        elif op == "stream_remove" and sa is not None:
            self._remove_stream(sa, command)
        key2 = (sa.account, sa.name) if sa is not None else None
        if key2 is not None:
            for callback in self.waiting.pop(key2, []):
                callback(change)
        if op in ("consumer", "consumer_remove"):
            self.on_consumer_change(change, command)

    def on_consumer_change(self, change: MetaChange, command: dict[str, Any]) -> None:
        """A consumer assignment: the server it is placed on creates (or updates, or deletes) it
        and answers the create request."""
        sa, ca = change.stream, change.consumer
        if sa is None or ca is None:
            return
        replica = self.replicas.get((sa.account, sa.name))
        if replica is None or replica.stream is None:
            return
        stream = replica.stream
        if change.op == "consumer_remove":
            from jsedge.cluster.api import answer_consumer_delete

            member = replica.consumer_groups.pop(ca.name, None)
            if member is not None:
                was_leader = member.is_leader
                member.delete()
                if was_leader:
                    answer_consumer_delete(self.api, replica.jsa, command)
                return
            if ca.name in stream.consumers:
                from jsedge.jetstream.consumers import delete_consumer

                try:
                    delete_consumer(stream, ca.name)
                except Exception as exc:
                    self.logger.warn(f"JetStream cluster: deleting consumer '{sa.name} > {ca.name}' failed: {exc}")
            if not ca.group and ca.peers and ca.peers[0] == self.me:
                answer_consumer_delete(self.api, replica.jsa, command)
            return
        if ca.group:
            self._ensure_consumer_group(replica, ca, command)
            return
        if not ca.peers or ca.peers[0] != self.me:
            return
        if command.get("reply") and time.time_ns() - int(command.get("ts", 0)) <= FRESH_REQUEST:
            self.cluster_api.host_consumer(replica, ca, command)
        else:
            # not a request being answered (a replay of the meta log after a restart, a re-placed
            # consumer): continue from the state stored here rather than create it afresh
            from jsedge.cluster.consumer import run_local

            member = replica.consumer_groups.pop(ca.name, None)
            if member is not None:
                member.retire(keep_store=True)
            run_local(self, replica, ca, command)

    def _ensure_consumer_group(self, replica: ClusteredStream, ca: Any, command: dict[str, Any]) -> None:
        """A replicated consumer: its members join its Raft group (the leader runs and answers). A
        member of the consumer's previous group (a replica change) leaves it, keeping its store when
        it stays a member (the seed continues from it; the others are brought to the seed's)."""
        from jsedge.cluster.consumer import ClusteredConsumer

        stream = replica.stream
        stays = self.me in ca.peers
        member = replica.consumer_groups.get(ca.name)
        if member is not None and member.group_name != ca.group:
            replica.consumer_groups.pop(ca.name, None)
            member.retire(keep_store=stays)
            member = None
        running = stream.consumers.get(ca.name) if stream is not None else None
        if running is not None and running.clustered is None:
            # it ran here alone (R1) until now: stop it; its store seeds the group
            del stream.consumers[ca.name]
            running.stop()
            if not stays:
                running.store.delete()
        if not stays:
            return
        if member is not None:
            member.update(ca, command)
            return
        member = ClusteredConsumer(self, replica, ca)
        try:
            member.open(command)
        except Exception as exc:
            self.logger.error(f"JetStream cluster: opening consumer '{ca.stream} > {ca.name}' failed: {exc}")
            return
        replica.consumer_groups[ca.name] = member

    def _reconcile_consumers(self, replica: ClusteredStream, sa: StreamAssignment) -> None:
        """After a replica opened (a restart, a meta snapshot) or its stream changed replicas: run
        this server's part of every consumer of the stream as assigned, and nothing else."""
        from jsedge.cluster.consumer import run_local

        stream = replica.stream
        if stream is None:
            return
        for name in list(replica.consumer_groups):
            ca = sa.consumers.get(name)
            if ca is None:
                replica.consumer_groups.pop(name).delete()
            elif ca.group != replica.consumer_groups[name].group_name:
                replica.consumer_groups.pop(name).retire(keep_store=bool(ca.peers) and ca.peers[0] == self.me)
        for ca in list(sa.consumers.values()):
            if ca.group:
                self._ensure_consumer_group(replica, ca, {})
            elif ca.peers and ca.peers[0] == self.me and ca.name not in stream.consumers:
                run_local(self, replica, ca)

    def _answer_create(self, replica: ClusteredStream, command: dict[str, Any], *, existed: bool = False) -> None:
        """STREAM.CREATE is answered by the new stream's leader, once it leads (a repeated create
        of the same stream is answered without `did_create`, as nats-server's cluster does)."""
        if not command.get("reply"):
            return
        extra: dict[str, Any] = {} if existed else {"did_create": True}

        def answer(r: ClusteredStream) -> None:
            answer_assignment(self.api, r, command, "stream_create_response", extra)
            if not existed and r.stream is not None:
                advisory.stream_action(r.stream, "create")  # by the leader that answers

        if replica.is_leader:
            answer(replica)
        else:
            replica.waiting_response.append(answer)

    def _answer_regroup(self, replica: ClusteredStream, command: dict[str, Any]) -> None:
        """A replica change is done when the seed leads the new group: it answers STREAM.UPDATE."""
        if not command.get("reply"):
            return

        def answer(r: ClusteredStream) -> None:
            answer_assignment(self.api, r, command, "stream_update_response", {})

        if replica.is_leader:
            answer(replica)
        else:
            replica.waiting_response.append(answer)

    def _update_config(self, replica: ClusteredStream, command: dict[str, Any]) -> None:
        """STREAM.UPDATE: the stream's leader puts the new config into the stream's own log (every
        replica applies it at the same point), then answers."""
        if not replica.is_leader:
            return
        config = decode_stream_config_request(command["config"])
        config.pedantic = False
        result = replica.stream.execute(UpdateConfig(config))

        def answer(_f: Any = None) -> None:
            if isinstance(result, asyncio.Future) and (result.cancelled() or result.exception() is not None):
                return
            answer_assignment(self.api, replica, command, "stream_update_response", {})
            if replica.stream is not None:
                advisory.stream_action(replica.stream, "modify")

        if isinstance(result, asyncio.Future):
            result.add_done_callback(answer)
        else:
            replica.jsa._write_meta(config, replica.stream.created)
            replica.jsa.attach_mirror(replica.stream)
            answer()

    def wait_for(self, account: str, stream: str, callback: Callable[[MetaChange], None]) -> None:
        self.waiting.setdefault((account, stream), []).append(callback)

    # ------------------------------------------------------------------ replicas

    def _ensure_replica(self, sa: StreamAssignment) -> ClusteredStream | None:
        key = (sa.account, sa.name)
        jsa = self.jetstream.accounts.get(sa.account)
        if jsa is None:
            self.logger.warn(
                f"JetStream cluster: stream '{sa.account} > {sa.name}' assigned here, but the account has no JetStream"
            )
            return None
        replica = self.replicas.get(key)
        config = decode_stream_config_request(sa.config)
        config.pedantic = False
        keep = False
        if replica is not None and replica.group_name != sa.group:
            # a new group: after a replica change this server's store carries over (the seed's is
            # the new group's snapshot, the others' are a prefix of it); a re-created stream starts over
            keep = bool(sa.seed) and replica.sealed
            if keep:
                replica.stop()
                self.replicas.pop(key, None)
                # the store is written and fsynced (close) before the old group's log is deleted:
                # until then that log is the only durable copy of what was applied from it
                jsa.close_replica(sa.name, delete=False)
                replica.delete(consumers=False)  # the old group's log only
            else:
                self._close_replica(key, delete=True)
            replica = None
        elif replica is None and sa.seed == self.me:
            keep = True  # restarted between the seal and opening the seeded group
        if replica is None:
            self.logger.debug(f"JetStream cluster opening replica of '{sa.account} > {sa.name}' ({sa.group})")
            replica = ClusteredStream(self, jsa, sa)
            try:
                jsa.open_replica(config, sa.created, sa.group, replica.open, keep=keep)
            except Exception as exc:
                self.logger.error(f"JetStream cluster: opening stream '{sa.account} > {sa.name}' failed: {exc}")
                return None
            self.replicas[key] = replica
            self._reconcile_consumers(replica, sa)
            return replica
        replica.assignment = sa
        return replica

    def _close_replica(self, key: tuple[str, str], *, delete: bool, removed: bool = False) -> None:
        replica = self.replicas.pop(key, None)
        if replica is None:
            return
        # a removed stream's advisory comes from the replica that led it (nats-server's wasLeader)
        stream = replica.stream
        advise = removed and stream is not None and (replica.group is None or replica.is_leader)
        if delete:
            replica.delete()
        else:
            replica.stop()
        jsa = self.jetstream.accounts.get(key[0])
        if jsa is not None:
            jsa.close_replica(key[1], delete=delete)
        if advise:
            advisory.stream_action(stream, "delete")  # after its consumers' (nats-server's order)

    def _remove_stream(self, sa: Any, command: dict[str, Any]) -> None:
        """STREAM.DELETE is answered (as nats-server does) by the replica that led the stream, once
        it is gone, so a STREAM.INFO after the answer finds nothing; by every member when the
        stream had no leader; by the meta leader when every member is offline."""
        key = (sa.account, sa.name)
        replica = self.replicas.get(key)
        member = replica is not None
        was_leader = replica is not None and replica.is_leader
        had_leader = replica is not None and (replica.group is None or bool(replica.leader_peer))
        self._close_replica(key, delete=True, removed=True)
        offline = not any(self.peer_online(p) for p in sa.peers)
        if not (was_leader or (member and not had_leader) or (offline and self.is_meta_leader)):
            return
        from jsedge.cluster.api import answer_stream_delete

        jsa = self.jetstream.accounts.get(sa.account)
        if jsa is not None:
            answer_stream_delete(self.api, jsa, command)

    def replica(self, account: str, name: str) -> ClusteredStream | None:
        return self.replicas.get((account, name))

    # ------------------------------------------------------------------ control messages

    def forward_proposal(self, leader: str, group: str, data: bytes) -> None:
        import base64

        self.transport.send_control(leader, "propose", {"group": group, "data": base64.b64encode(data).decode()})

    def _on_forwarded_proposal(self, sender: str, document: dict[str, Any]) -> None:
        import base64

        group = str(document.get("group", ""))
        try:
            data = base64.b64decode(str(document.get("data", "")))
        except ValueError:
            return
        if group == META_GROUP:
            if self.is_meta_leader:
                try:
                    command = decode_command(data)
                except ValueError:
                    return
                if command.get("op") == "consumer_remove":
                    self.propose_meta_anywhere(command)
                elif command.get("op") == "stream_update" and self._is_seal_report(sender, command):
                    self.propose_meta_anywhere(command)
                elif command.get("op") == "stream_scale" and self._is_peer_move(sender, command):
                    self.propose_meta_anywhere(command)
                elif command.get("op") == "consumer" and self._is_consumer_config_report(sender, command):
                    self.propose_meta_anywhere(command)
            return
        for replica in self.replicas.values():
            if replica.group_name == group:
                replica.forwarded(data)
                return

    def _is_seal_report(self, sender: str, command: dict[str, Any]) -> bool:
        """Phase 2 of a replica change, forwarded by the replica that sealed the old group (the only
        stream command a server other than the meta leader may propose)."""
        config = command.get("config")
        if not isinstance(config, dict) or command.get("seed") != sender:
            return False
        sa = self.state.stream(str(command.get("account", "")), str(config.get("name", "")))
        return sa is not None and sa.scale is not None and sa.scale.get("group") == command.get("group")

    def _is_consumer_config_report(self, sender: str, command: dict[str, Any]) -> bool:
        """A replicated consumer's leader reporting a config it changed itself (CONSUMER.PAUSE):
        the same consumer, group and peers, from one of those peers, answering nobody."""
        sa = self.state.stream(str(command.get("account", "")), str(command.get("stream", "")))
        ca = sa.consumers.get(str(command.get("name", ""))) if sa is not None else None
        return (
            ca is not None
            and bool(ca.group)
            and sender in ca.peers
            and command.get("group") == ca.group
            and command.get("peers") == ca.peers
            and isinstance(command.get("config"), dict)
            and not command.get("reply")
        )

    def _is_peer_move(self, sender: str, command: dict[str, Any]) -> bool:
        """STREAM.PEER.REMOVE, forwarded by the stream's leader: a move of one replica."""
        sa = self.state.stream(str(command.get("account", "")), str(command.get("name", "")))
        if sa is None or sa.scale is not None or sender not in sa.peers:
            return False
        peers = command.get("peers")
        return isinstance(peers, list) and len(peers) == len(sa.peers) and command.get("remove") in sa.peers

    def _on_catchup_request(self, sender: str, document: dict[str, Any]) -> None:
        group = str(document.get("group", ""))
        for replica in self.replicas.values():
            if replica.group_name == group:
                try:
                    replica.serve_catchup(sender, int(document.get("start", 0)), int(document.get("last", 0)))
                except Exception as exc:
                    self.logger.warn(f"JetStream cluster catch-up for {group} failed: {exc}")
                return

    # scatter-gather of stream/consumer info for LIST (cluster/api.py)

    def _on_info_request(self, sender: str, document: dict[str, Any]) -> None:
        hook = getattr(self.api, "cluster_info_request", None)
        if hook is not None:
            hook(sender, document)

    def _on_info_reply(self, sender: str, document: dict[str, Any]) -> None:
        hook = getattr(self.api, "cluster_info_reply", None)
        if hook is not None:
            hook(sender, document)


__all__ = ["JetStreamCluster", "MetaMachine"]
