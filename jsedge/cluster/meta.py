"""The meta group's state machine (layer 6, pure): which streams and consumers exist, their configs,
Raft groups and peers, and the names of the servers behind the peer ids.

Every change is a meta command, a small JSON object proposed to `_meta_` by its leader and applied on
every JetStream server through the one `apply_meta()`; the coordinator (`jetstream.py`) then reacts to
what changed (start or stop a local replica). JSON, not a binary codec: meta traffic is a few commands
per API call, and a readable log helps operators. Commands::

    {"op": "server", "peer": id, "name": server name, "cluster": name, "tags": [...]}
    {"op": "server_remove", "peer": id}
    {"op": "stream", "account": a, "config": {StreamConfig}, "group": g, "peers": [ids], "created": ns}
    {"op": "stream_update", "account": a, "config": {StreamConfig}, "peers": [ids]}
    {"op": "stream_scale", "account": a, "name": n, "config": {...}, "group": new g, "peers": [new ids],
     "reply": r, "subject": s, "ts": ns}                      (a replica change, phase 1: seal)
    {"op": "stream_update", "account": a, "config": {...}, "group": new g, "peers": [new ids],
     "seed": id, "consumer_seeds": {consumer: id}, "reply": r, "subject": s, "ts": ns}
                                                              (phase 2: the sealed store seeds g)
    {"op": "stream_remove", "account": a, "name": n, "reply": r, "subject": s, "ts": ns}
    {"op": "consumer", "account": a, "stream": s, "name": n, "config": {ConsumerConfig}, "group": g,
     "peers": [ids], "created": ns}
    {"op": "consumer_remove", "account": a, "stream": s, "name": n}

A snapshot of the state is the same objects in one JSON document (`encode_state`/`decode_state`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from jsedge.cluster.peers import ALPHABET


@dataclass(slots=True)
class ServerEntry:
    peer: str
    name: str
    cluster: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ConsumerAssignment:
    account: str
    stream: str
    name: str
    config: dict[str, Any]
    group: str
    peers: list[str]
    created: int
    #: after the stream's replica change: the server whose consumer store holds the state the
    #: consumer continues from (it seeds the new group, or runs the R1 consumer); "" otherwise
    seed: str = ""


@dataclass(slots=True)
class StreamAssignment:
    account: str
    name: str
    config: dict[str, Any]  # the StreamConfig as nats-server's JSON (models.encode)
    group: str
    peers: list[str]
    created: int
    consumers: dict[str, ConsumerAssignment] = field(default_factory=dict)
    #: the replica whose store seeded the current group after a replica change ("" otherwise)
    seed: str = ""
    #: a replica change under way: {"group", "peers", "reply", "subject", "ts"} until it is done
    scale: dict[str, Any] | None = None

    @property
    def replicas(self) -> int:
        return len(self.peers)


@dataclass(slots=True)
class MetaChange:
    """What one applied command changed, for the coordinator to react to."""

    op: str
    stream: StreamAssignment | None = None
    previous: StreamAssignment | None = None
    consumer: ConsumerAssignment | None = None
    server: ServerEntry | None = None


class MetaState:
    def __init__(self) -> None:
        self.servers: dict[str, ServerEntry] = {}
        #: (account, stream name) -> assignment
        self.streams: dict[tuple[str, str], StreamAssignment] = {}

    # ------------------------------------------------------------------ reads

    def stream(self, account: str, name: str) -> StreamAssignment | None:
        return self.streams.get((account, name))

    def account_streams(self, account: str) -> list[StreamAssignment]:
        return [sa for (acc, _), sa in self.streams.items() if acc == account]

    def server_name(self, peer: str) -> str:
        entry = self.servers.get(peer)
        return entry.name if entry is not None else peer

    def peer_of(self, name_or_peer: str) -> str | None:
        if name_or_peer in self.servers:
            return name_or_peer
        for entry in self.servers.values():
            if entry.name == name_or_peer:
                return entry.peer
        return None

    # ------------------------------------------------------------------ apply

    def apply(self, command: dict[str, Any]) -> MetaChange:
        op = command.get("op")
        if op == "server":
            entry = ServerEntry(
                str(command["peer"]),
                str(command["name"]),
                str(command.get("cluster", "")),
                list(command.get("tags") or []),
            )
            self.servers[entry.peer] = entry
            return MetaChange("server", server=entry)
        if op == "server_remove":
            removed = self.servers.pop(str(command["peer"]), None)
            return MetaChange("server_remove", server=removed)
        if op == "stream":
            config = dict(command["config"])
            key = (str(command["account"]), str(config["name"]))
            previous = self.streams.get(key)
            assignment = StreamAssignment(
                key[0], key[1], config, str(command["group"]), list(command["peers"]), int(command["created"])
            )
            if previous is not None:
                assignment.consumers = previous.consumers
            assignment.seed = str(command.get("seed", ""))
            scale = command.get("scale")
            assignment.scale = dict(scale) if isinstance(scale, dict) else None
            self.streams[key] = assignment
            return MetaChange("stream", stream=assignment, previous=previous)
        if op == "stream_scale":
            # phase 1 of a replica change: the stream's current group seals its log (every replica
            # stops at the same entry), then its leader proposes phase 2, a stream_update with the
            # new group that it seeds
            key = (str(command["account"]), str(command["name"]))
            current = self.streams.get(key)
            if current is None or current.scale is not None:
                return MetaChange("noop")
            current.scale = {
                "group": str(command["group"]),
                "peers": list(command["peers"]),
                "config": dict(command["config"]),
                "reply": str(command.get("reply", "")),
                "subject": str(command.get("subject", "")),
                "ts": int(command.get("ts", 0)),
                "remove": str(command.get("remove", "")),
            }
            return MetaChange("stream_scale", stream=current)
        if op == "stream_update":
            config = dict(command["config"])
            key = (str(command["account"]), str(config["name"]))
            current = self.streams.get(key)
            if current is None:
                return MetaChange("noop")
            group = str(command.get("group") or "")
            if group and group == current.group:
                return MetaChange("noop")  # a second leader of the sealed group proposed it too
            previous = StreamAssignment(
                current.account, current.name, current.config, current.group, list(current.peers), current.created
            )
            current.config = config
            if command.get("peers"):
                current.peers = list(command["peers"])
            if group:
                seed = str(command.get("seed", ""))
                current.group = group
                current.seed = seed
                current.scale = None
                hints = command.get("consumer_seeds")
                for ca in current.consumers.values():
                    _replace_consumer(ca, current, seed, hints)
            return MetaChange("stream_update", stream=current, previous=previous)
        if op == "stream_remove":
            gone = self.streams.pop((str(command["account"]), str(command["name"])), None)
            return MetaChange("stream_remove", stream=gone)
        if op == "consumer":
            key = (str(command["account"]), str(command["stream"]))
            owner = self.streams.get(key)
            if owner is None:
                return MetaChange("noop")
            consumer = ConsumerAssignment(
                key[0],
                key[1],
                str(command["name"]),
                dict(command["config"]),
                str(command.get("group", "")),
                list(command.get("peers") or []),
                int(command.get("created", 0)),
                str(command.get("seed", "")),
            )
            owner.consumers[consumer.name] = consumer
            return MetaChange("consumer", stream=owner, consumer=consumer)
        if op == "consumer_remove":
            key = (str(command["account"]), str(command["stream"]))
            owner = self.streams.get(key)
            dropped = owner.consumers.pop(str(command["name"]), None) if owner is not None else None
            return MetaChange("consumer_remove", stream=owner, consumer=dropped)
        return MetaChange("noop")

    # ------------------------------------------------------------------ snapshots

    def encode(self) -> bytes:
        document = {
            "servers": [
                {"peer": s.peer, "name": s.name, "cluster": s.cluster, "tags": s.tags} for s in self.servers.values()
            ],
            "streams": [
                {
                    "account": sa.account,
                    "config": sa.config,
                    "group": sa.group,
                    "peers": sa.peers,
                    "created": sa.created,
                    "seed": sa.seed,
                    "scale": sa.scale,
                    "consumers": [
                        {
                            "name": ca.name,
                            "config": ca.config,
                            "group": ca.group,
                            "peers": ca.peers,
                            "created": ca.created,
                            "seed": ca.seed,
                        }
                        for ca in sa.consumers.values()
                    ],
                }
                for sa in self.streams.values()
            ],
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> MetaState:
        state = cls()
        if not data:
            return state
        document = json.loads(data)
        for s in document.get("servers") or []:
            state.apply({"op": "server", **s})
        for sa in document.get("streams") or []:
            consumers = sa.get("consumers") or []
            state.apply({"op": "stream", **{k: v for k, v in sa.items() if k != "consumers"}})
            for ca in consumers:
                state.apply({"op": "consumer", "account": sa["account"], "stream": sa["config"]["name"], **ca})
        return state


def consumer_replicas(config: dict[str, Any], stream_config: dict[str, Any], stream_replicas: int) -> int:
    """nats-server's replica count of a consumer (ConsumerConfig.replicas): its `num_replicas`, else
    (0, or more than the stream has) the stream's, except an ephemeral of a limits stream that did
    not ask, which is R1."""
    wanted = int(config.get("num_replicas") or 0)
    if wanted == 0 or wanted > stream_replicas:
        if wanted == 0 and not config.get("durable_name") and stream_config.get("retention", "limits") == "limits":
            return 1
        return stream_replicas
    return wanted


def _replace_consumer(
    ca: ConsumerAssignment, sa: StreamAssignment, stream_seed: str, hints: dict[str, Any] | None = None
) -> None:
    """The stream changed replicas (a new group on new peers): re-place its consumer on them with
    its replica count recomputed, continuing from the state of a server that holds it. Deterministic:
    every meta replica computes the same assignment, group name included.

    The seed is, in order: the consumer group's leader as the stream's leader saw it when it
    proposed the change (`hints`, from `consumer_seeds`: it holds every committed ack), the server
    that seeded the current group (it holds the state even before the group elected a leader), the
    stream's seed, another holder. A command without `consumer_seeds` (an older meta log) keeps the
    older rule, stream seed first, so replaying it gives the assignments it gave."""
    replicas = min(consumer_replicas(ca.config, sa.config, len(sa.peers)), len(sa.peers))
    fits = all(p in sa.peers for p in ca.peers) and len(ca.peers) == replicas and bool(ca.group) == (replicas > 1)
    if fits:
        return
    holders = [p for p in ca.peers if p in sa.peers]
    if hints is None:
        order = [stream_seed]
    else:
        order = [str(hints.get(ca.name) or ""), ca.seed, stream_seed]
    seed = next((p for p in order if p and p in holders), holders[0] if holders else stream_seed)
    if replicas <= 1:
        ca.peers, ca.group = [seed], ""
    else:
        ca.peers = [seed, *[p for p in sa.peers if p != seed]][:replicas]
        storage = "memory" if ca.config.get("mem_storage") or sa.config.get("storage") == "memory" else "file"
        digest = hashlib.sha256(f"{ca.group}|{sa.group}|{ca.name}".encode()).digest()
        suffix = "".join(ALPHABET[b % 62] for b in digest[:8])
        ca.group = f"C-R{replicas}{'M' if storage == 'memory' else 'F'}-{suffix}"
    ca.seed = seed if holders else ""


def encode_command(command: dict[str, Any]) -> bytes:
    return json.dumps(command, separators=(",", ":")).encode()


def decode_command(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("meta command is not an object")
    return value


__all__ = [
    "ConsumerAssignment",
    "MetaChange",
    "MetaState",
    "ServerEntry",
    "StreamAssignment",
    "decode_command",
    "encode_command",
]
