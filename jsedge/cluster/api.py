"""The `$JS.API` in a JetStream cluster (layer 6): who answers what, and how a request becomes a meta
or stream command.

Every server subscribes the API subjects (announced to the routes), so every server sees every
request; exactly one answers (spec/clustering.md §4.3):

* account info, stream create/update/delete/names/list, consumer create/delete/names/list, meta
  stepdown and server remove: the meta leader. Create and update are proposed to `_meta_`; the
  stream's leader (the one replica for R1) answers once the assignment took effect and it leads.
* stream info/purge/msg get/msg delete/stepdown/snapshot and the consumer requests: the stream's
  leader (a leaderless group's members answer info so it stays readable); DIRECT.GET: any replica.
* with no meta leader for longer than the lost-quorum interval, servers answer with 10008 after
  nats-server's 500 ms delay (giving a leader the chance to answer first).

Consumers of a clustered stream live on the stream leader that created them, with their state on that
server (replicated consumers are the next step); their requests are answered where they live.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from jsedge.api import consumers as consumer_api
from jsedge.api import snapshot as snapshot_api
from jsedge.api import streams as stream_api
from jsedge.api.request import TYPE_PREFIX, Endpoint, Request
from jsedge.cluster.meta import StreamAssignment
from jsedge.cluster.peers import group_name, peer_id
from jsedge.cluster.raft import MembershipBusy, NotLeader
from jsedge.errors import JSError, js_error
from jsedge.jetstream.models import (
    MetaServerRemoveRequest,
    StreamNamesRequest,
    StreamRemovePeerRequest,
    decode,
    decode_stream_config_request,
    encode,
    parse_json,
)
from jsedge.jetstream.streamconfig import check_update, set_static_metadata
from jsedge.subjects import subject_matches, subjects_overlap

ERR_DELAY = 0.5
#: A create/update answer is only sent for a meta command this fresh (not for a replayed log).
FRESH = 10 * 1_000_000_000
INFO_TIMEOUT = 2.0


def _name(request: Request, index: int = 2) -> str:
    return request.tokens[index].decode("utf-8", "replace")


class ClusterAPI:
    def __init__(self, api: Any, cluster: Any) -> None:
        self.api = api
        self.cluster = cluster
        self.server = api.server
        #: scatter-gather of infos for LIST: id -> (waiting peers, results, finish)
        self._gathers: dict[str, dict[str, Any]] = {}
        self.system_subs: list[Any] = []
        self._next_gather = 0

    def install(self) -> None:
        api = self.api
        api.routed = True
        api.stream_exists = lambda jsa, name: self.cluster.state.stream(jsa.name, name) is not None
        api.cluster_info_request = self.cluster_info_request
        api.cluster_info_reply = self.cluster_info_reply
        paged = (("total", 0), ("offset", 0), ("limit", 0))
        replace = api.replace
        replace(Endpoint((b"INFO",), 1, "account_info_response", self.account_info))
        replace(Endpoint((b"STREAM", b"CREATE"), 3, "stream_create_response", self.stream_create))
        replace(Endpoint((b"STREAM", b"UPDATE"), 3, "stream_update_response", self.stream_update))
        replace(Endpoint((b"STREAM", b"DELETE"), 3, "stream_delete_response", self.stream_delete))
        replace(
            Endpoint((b"STREAM", b"INFO"), 3, "stream_info_response", self.leader_only(stream_api.stream_info), paged)
        )
        replace(
            Endpoint((b"STREAM", b"NAMES"), 2, "stream_names_response", self.stream_names, (*paged, ("streams", None)))
        )
        replace(Endpoint((b"STREAM", b"LIST"), 2, "stream_list_response", self.stream_list, (*paged, ("streams", []))))
        replace(Endpoint((b"STREAM", b"PURGE"), 3, "stream_purge_response", self.stream_purge, (("purged", 0),)))
        replace(
            Endpoint(
                (b"STREAM", b"MSG", b"GET"),
                4,
                "stream_msg_get_response",
                self.leader_only(stream_api.stream_msg_get, 3),
                counted=False,
            )
        )
        replace(Endpoint((b"STREAM", b"MSG", b"DELETE"), 4, "stream_msg_delete_response", self.stream_msg_delete))
        replace(
            Endpoint((b"STREAM", b"LEADER", b"STEPDOWN"), 4, "stream_leader_stepdown_response", self.stream_stepdown)
        )
        replace(Endpoint((b"STREAM", b"PEER", b"REMOVE"), 4, "stream_remove_peer_response", self.stream_peer_remove))
        # a snapshot comes from the stream's leader alone; a restore is received by the meta leader,
        # which seeds the stream from its store (R1, then a replica change to the archive's count)
        replace(
            Endpoint(
                (b"STREAM", b"SNAPSHOT"), 3, "stream_snapshot_response", self.leader_only(snapshot_api.stream_snapshot)
            )
        )
        replace(
            Endpoint(
                (b"STREAM", b"RESTORE"), 3, "stream_restore_response", self.stream_restore, (("deliver_subject", ""),)
            )
        )
        api.cluster_restore = self.finish_restore
        self._subscribe_system()
        replace(Endpoint((b"META", b"LEADER", b"STEPDOWN"), 3, "meta_leader_stepdown_response", self.meta_stepdown))
        replace(Endpoint((b"SERVER", b"REMOVE"), 2, "meta_server_remove_response", self.server_remove))
        replace(Endpoint((b"CONSUMER", b"MSG", b"NEXT"), 5, "", self.consumer_msg_next, counted=False))
        replace(Endpoint((b"CONSUMER", b"CREATE"), -1, "consumer_create_response", self.consumer_create))
        replace(Endpoint((b"CONSUMER", b"DURABLE", b"CREATE"), -1, "consumer_create_response", self.consumer_create))
        replace(Endpoint((b"CONSUMER", b"DELETE"), 4, "consumer_delete_response", self.consumer_delete))
        replace(
            Endpoint(
                (b"CONSUMER", b"NAMES"), 3, "consumer_names_response", self.consumer_names, (*paged, ("consumers", []))
            )
        )
        replace(
            Endpoint(
                (b"CONSUMER", b"LIST"), 3, "consumer_list_response", self.consumer_list, (*paged, ("consumers", []))
            )
        )
        # the rest is answered where the consumer lives
        for endpoint in list(api.endpoints):
            if endpoint.prefix[:2] in ((b"CONSUMER", b"INFO"), (b"CONSUMER", b"PAUSE"), (b"CONSUMER", b"UNPIN")):
                replace(
                    Endpoint(
                        endpoint.prefix,
                        endpoint.arity,
                        endpoint.response,
                        self.consumer_local(endpoint.handler),
                        endpoint.error_fields,
                        endpoint.counted,
                    )
                )
        replace(
            Endpoint(
                (b"CONSUMER", b"LEADER", b"STEPDOWN"),
                5,
                "consumer_leader_stepdown_response",
                self.consumer_local(self.consumer_stepdown, 3),
            )
        )

    # ------------------------------------------------------------------ answering rules

    def respond_later(self, request: Request, endpoint_name: str, error: JSError, delay: float = ERR_DELAY) -> None:
        endpoint = self.api.find(request.tokens)
        if endpoint is None:
            return
        response = self.api.error_response(endpoint, error)
        self.server.loop.call_later(delay, self.api.respond, request, response)

    def meta_only(self, request: Request, *, leaderless_now: bool = False) -> bool:
        """True when this server must handle a meta-level request; answers 10008 when leaderless."""
        cluster = self.cluster
        if cluster.is_meta_leader:
            return True
        if cluster.meta_leaderless():
            error = js_error("JSClusterNotAvailErr")
            if leaderless_now:
                raise error
            self.respond_later(request, "", error)
        return False

    def stream_role(self, request: Request, index: int = 2) -> tuple[str, Any]:
        """('answer', replica) when this server answers for the stream named by token `index`,
        ('silent', None) otherwise (after arranging nats-server's error answers)."""
        cluster = self.cluster
        account = request.jsa.name
        name = _name(request, index)
        sa = cluster.state.stream(account, name)
        if sa is None:
            if cluster.is_meta_leader:
                raise js_error("JSStreamNotFoundErr")
            if cluster.meta_leaderless():
                self.respond_later(request, "", js_error("JSClusterNotAvailErr"))
            return "silent", None
        replica = cluster.replica(account, name)
        if replica is None:
            if cluster.is_meta_leader and not any(cluster.peer_online(p) for p in sa.peers):
                self.respond_later(request, "", js_error("JSStreamOfflineErr"))
            elif cluster.meta_leaderless():
                self.respond_later(request, "", js_error("JSClusterNotAvailErr"))
            return "silent", None
        if replica.is_leader:
            return "answer", replica
        group = replica.group
        if group is not None and not group.leader:
            return "leaderless", replica
        return "silent", None

    def leader_only(self, handler: Any, index: int = 2) -> Any:
        def wrapped(api: Any, request: Request) -> Any:
            tokens = request.tokens
            if tokens[:2] == [b"CONSUMER", b"DURABLE"]:
                index_here = 3
            else:
                index_here = index
            if len(tokens) <= index_here:
                return handler(api, request)
            role, _replica = self.stream_role(request, index_here)
            if role == "answer" or (role == "leaderless" and tokens[:2] == [b"STREAM", b"INFO"]):
                return handler(api, request)
            return None

        return wrapped

    # ------------------------------------------------------------------ consumers

    def consumer_local(self, handler: Any, index: int = 2) -> Any:
        """A consumer request answered where the consumer lives; the meta leader answers when it
        does not exist."""

        def wrapped(api: Any, request: Request) -> Any:
            tokens = request.tokens
            if len(tokens) <= index + 1:
                return handler(api, request)
            stream = request.jsa.streams.get(_name(request, index))
            name = _name(request, index + 1)
            if stream is not None and name in stream.consumers:
                return handler(api, request)
            cluster = self.cluster
            sa = cluster.state.stream(request.jsa.name, _name(request, index))
            if cluster.is_meta_leader:
                if sa is None:
                    raise js_error("JSStreamNotFoundErr")
                if name not in sa.consumers:
                    raise js_error("JSConsumerNotFoundErr")
            elif cluster.meta_leaderless():
                self.respond_later(request, "", js_error("JSClusterNotAvailErr"))
            return None

        return wrapped

    @staticmethod
    def _direct_create(request: Request) -> bool:
        """A `direct` consumer (the internal consumer of a mirror or source, nats-server's
        `JS_MIRROR_`/`JS_SRC_`): not replicated, not in the meta group, created and answered by
        the stream's leader alone (as nats-server's cluster does)."""
        if b'"direct"' not in request.body or request.tokens[1:2] == [b"DURABLE"]:
            return False
        try:
            document = parse_json(request.body)
            config = document.get("config") if isinstance(document, dict) else None
            return isinstance(config, dict) and config.get("direct") is True
        except Exception:
            return False

    def _create_direct(self, request: Request) -> dict[str, Any] | None:
        from jsedge.jetstream.consumers import create_consumer

        role, replica = self.stream_role(request, 2)
        if role != "answer" or replica is None or replica.stream is None:
            return None
        _stream_name, config, action, pedantic = consumer_api.parse_create(request)
        # a mirror's or source's consumer of a limits stream: its stable name made unique
        consumer_api.upgrade_sourcing_consumer(replica.stream.config.retention, config)
        consumer = create_consumer(replica.stream, config, action, pedantic=pedantic)
        info: dict[str, Any] = consumer.info()
        return info

    def _sourcing_durable(self, request: Request) -> bool:
        """A mirror's or source's consumer of a work-queue or interest stream: it becomes a
        replicated durable (ADR-60), created through the meta group like any durable."""
        try:
            document = parse_json(request.body)
            config = document.get("config") if isinstance(document, dict) else None
            if not (isinstance(config, dict) and config.get("sourcing") is True and config.get("name")):
                return False
            sa = self.cluster.state.stream(request.jsa.name, request.tokens[2].decode("utf-8", "replace"))
            return sa is not None and decode_stream_config_request(sa.config).retention != "limits"
        except Exception:
            return False

    def consumer_create(self, api: Any, request: Request) -> dict[str, Any] | None:
        if self._direct_create(request) and not self._sourcing_durable(request):
            return self._create_direct(request)
        if not self.meta_only(request, leaderless_now=True):
            return None
        from jsedge.jetstream import advisory
        from jsedge.jetstream.consumerconfig import check_config, set_defaults, strip_dynamic_metadata
        from jsedge.jetstream.consumers import _comparable
        from jsedge.jetstream.models import decode_consumer_config

        stream_name, config, action, pedantic = consumer_api.parse_create(request)
        jsa = request.jsa
        cluster = self.cluster
        sa = cluster.state.stream(jsa.name, stream_name)
        if sa is None:
            raise js_error("JSStreamNotFoundErr")
        stream_config = decode_stream_config_request(sa.config)
        stream_config.pedantic = False
        if config.direct and config.sourcing and config.name:
            known = sa.consumers.get(config.name)
            consumer_api.upgrade_sourcing_consumer(
                stream_config.retention, config, decode_consumer_config(known.config) if known is not None else None
            )
        from jsedge.cluster.meta import consumer_replicas

        account_max_ack = jsa.limit("max_ack_pending", consumer_replicas(encode(config), sa.config, len(sa.peers)))
        if not isinstance(account_max_ack, int) or isinstance(account_max_ack, bool):
            account_max_ack = -1
        name = config.name or config.durable_name
        if len(name.encode()) > 255:
            raise js_error("JSConsumerNameTooLongErrF", max=255)
        set_defaults(config, stream_config, account_max_ack, pedantic)
        check_config(config, stream_config, account_max_ack)
        strip_dynamic_metadata(config)
        existing = sa.consumers.get(name) if name else None
        if existing is not None:
            current = decode_consumer_config(existing.config)
            if action == "create" and _comparable(config) != _comparable(current):
                raise js_error("JSConsumerAlreadyExists")
            host, created, group = existing.peers, existing.created, existing.group
        else:
            if action == "update":
                raise js_error("JSConsumerDoesNotExist")
            self._check_consumer_count(jsa, sa, config, stream_config)
            if not name:
                while True:
                    name = advisory.random_name(8)
                    if name not in sa.consumers:
                        break
            host, group = self._consumer_placement(sa, config, stream_config)
            created = time.time_ns()
        cluster.propose_meta(
            {
                "op": "consumer",
                "account": jsa.name,
                "stream": stream_name,
                "name": name,
                "config": encode(config),
                "group": group,
                "peers": host,
                "created": created,
                "action": action,
                "reply": request.reply.decode("utf-8", "replace"),
                "subject": request.subject.decode("utf-8", "replace"),
                "ts": time.time_ns(),
            }
        )
        return None  # the server that hosts it answers

    def _check_consumer_count(self, jsa: Any, sa: StreamAssignment, config: Any, stream_config: Any) -> None:
        """nats-server's count before a new consumer is proposed: the stream's `max_consumers`
        caps its consumers, the account's (its tier's, by the consumer's replicas) those of the
        stream in that tier; direct and sourcing consumers are not counted."""
        from jsedge.cluster.meta import consumer_replicas

        replicas = consumer_replicas(encode(config), sa.config, len(sa.peers))
        jsa.require_tier(replicas)
        tier_max = jsa.limit("max_consumers", replicas)
        if not isinstance(tier_max, int) or isinstance(tier_max, bool):
            tier_max = -1
        stream_max = stream_config.max_consumers
        if stream_max <= 0 and tier_max <= 0:
            return
        total = tier_total = 0
        for ca in sa.consumers.values():
            if ca.config.get("direct") or ca.config.get("sourcing"):
                continue
            total += 1
            if not jsa.tiered or consumer_replicas(ca.config, sa.config, len(sa.peers)) == replicas:
                tier_total += 1
        if (stream_max > 0 and total >= stream_max) or (tier_max > 0 and tier_total >= tier_max):
            raise js_error("JSMaximumConsumersLimitErr")

    def _consumer_placement(self, sa: StreamAssignment, config: Any, stream_config: Any) -> tuple[list[str], str]:
        """(peers, Raft group) of a new consumer: nats-server's replica count (`num_replicas`, else
        the stream's; an unnamed-replicas ephemeral of a limits stream is R1), on the stream's
        peers with its leader first (the group's first leader); R1 has no group."""
        from jsedge.cluster.meta import consumer_replicas
        from jsedge.cluster.peers import group_name

        replicas = consumer_replicas(encode(config), sa.config, len(sa.peers))
        cluster = self.cluster
        if replicas <= 1:
            # one replica: a random online server of the stream, as nats-server spreads them (an
            # ordered consumer or a KV watcher is then not always on the stream leader's server)
            online = [p for p in sa.peers if cluster.peer_online(p)]
            return [random.choice(online) if online else self._consumer_host(sa)], ""
        first = self._consumer_host(sa)
        others = [p for p in sa.peers if p != first]
        online = [p for p in others if cluster.peer_online(p)]
        rest = online + [p for p in others if p not in online]
        peers = [first, *rest][:replicas]
        storage = "memory" if config.mem_storage else stream_config.storage
        return peers, group_name("C", replicas, storage)

    def _consumer_host(self, sa: StreamAssignment) -> str:
        """Where a new consumer lives: the stream's leader when this server knows it, else its
        first online replica."""
        cluster = self.cluster
        replica = cluster.replica(sa.account, sa.name)
        if replica is not None:
            leader = replica.leader_peer if replica.group is None else replica.group.leader
            if leader:
                return str(leader)
        for peer in sa.peers:
            if cluster.peer_online(peer):
                return peer
        return sa.peers[0]

    def host_consumer(
        self, replica: Any, ca: Any, command: dict[str, Any], *, clustered: Any = None, store: Any = None
    ) -> Any:
        """This server hosts the consumer of a committed assignment (R1: the server it is placed on;
        replicated: its group's leader): create or update it here and answer the request. Returns
        the consumer, or None when the create failed (the meta group then forgets it)."""
        from jsedge.jetstream.consumers import create_consumer
        from jsedge.jetstream.models import decode_consumer_config

        stream = replica.stream
        config = decode_consumer_config(ca.config)
        request = _proposed_request(replica.jsa, command)
        try:
            consumer = create_consumer(
                stream,
                config,
                str(command.get("action", "")),
                assigned_name=ca.name,
                store=store,
                created=ca.created if clustered is not None else 0,
                clustered=clustered,
            )
        except JSError as exc:
            if request is not None:
                endpoint = self.api.find(request.tokens)
                if endpoint is not None:
                    self.api.respond(request, self.api.error_response(endpoint, exc))
            if ca.name not in stream.consumers:
                self.cluster.propose_meta_anywhere(
                    {"op": "consumer_remove", "account": ca.account, "stream": ca.stream, "name": ca.name}
                )
            return None
        if request is None:
            return consumer
        if consumer.config.sourcing and not consumer.config.direct:
            # a mirror's or source's durable (ADR-60), (re)attached: reset to its ack floor, and
            # answered once that committed, as nats-server does (what the feed before had not
            # acknowledged is delivered again, from delivery sequence 1)
            reset_seq = consumer.reset(0)
            reset: dict[str, Any] = {"type": TYPE_PREFIX + "consumer_reset_response", **consumer.info()}
            reset["reset_seq"] = reset_seq

            def committed(fut: Any) -> None:
                if not fut.cancelled() and fut.exception() is None:
                    self.api.respond(request, reset)

            asyncio.ensure_future(consumer.store.sync()).add_done_callback(committed)
            return consumer
        response: dict[str, Any] = {"type": TYPE_PREFIX + "consumer_create_response"}
        response.update(consumer.info())
        self.api.respond(request, response)
        return consumer

    def consumer_delete(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request):
            return None
        stream_api.require_empty(request.body)
        jsa = request.jsa
        sa = self.cluster.state.stream(jsa.name, _name(request))
        if sa is None:
            raise js_error("JSStreamNotFoundErr")
        name = _name(request, 3)
        if name not in sa.consumers:
            raise js_error("JSConsumerNotFoundErr")
        command = {
            "op": "consumer_remove",
            "account": jsa.name,
            "stream": sa.name,
            "name": name,
            "reply": request.reply.decode("utf-8", "replace"),
            "subject": request.subject.decode("utf-8", "replace"),
            "ts": time.time_ns(),
        }
        fut = self.cluster.propose_meta(command)
        # nats-server: the consumer's leader answers once it has removed the consumer (so a
        # CONSUMER.INFO after the answer finds nothing); the meta leader answers only when every
        # server of the consumer is offline
        offline = not any(self.cluster.peer_online(p) for p in sa.consumers[name].peers)
        self._answer_when(fut, request, lambda _result: {"success": True}, errors_only=not offline)
        return None

    def _consumer_page(self, request: Request) -> tuple[StreamAssignment, list[str], int]:
        from jsedge.jetstream.models import ConsumerNamesRequest

        document = stream_api.optional_body(request.body)
        options = (
            decode(ConsumerNamesRequest, document, "JSApiConsumersRequest")
            if document is not None
            else ConsumerNamesRequest()
        )
        sa = self.cluster.state.stream(request.jsa.name, _name(request))
        if sa is None:
            raise js_error("JSStreamNotFoundErr")
        names = sorted(sa.consumers, key=lambda n: n.encode())
        return sa, names, min(max(options.offset, 0), len(names))

    def consumer_names(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request):
            return None
        _sa, names, offset = self._consumer_page(request)
        page = names[offset : offset + consumer_api.NAMES_LIMIT]
        return {"total": len(names), "offset": offset, "limit": consumer_api.NAMES_LIMIT, "consumers": page}

    def consumer_list(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request):
            return None
        sa, names, offset = self._consumer_page(request)
        page = names[offset : offset + consumer_api.LIST_LIMIT]
        head = {"total": len(names), "offset": offset, "limit": consumer_api.LIST_LIMIT}
        results: dict[str, Any] = {}
        asks: list[tuple[str, list[str], dict[str, Any]]] = []
        stream = request.jsa.streams.get(sa.name)
        for name in page:
            if stream is not None and name in stream.consumers:
                results[name] = stream.consumers[name].info(dynamic=False)
            else:
                document = {"account": sa.account, "stream": sa.name, "consumer": name}
                asks.append((name, sa.consumers[name].peers, document))
        self._scatter(request, head, "consumers", page, results, asks)
        return None

    def consumer_msg_next(self, api: Any, request: Request) -> None:
        """A pull request goes to the server where the consumer lives; where it lives nowhere (no
        such stream), the requester's own server answers no-responders, as nats-server."""
        stream = request.jsa.streams.get(_name(request, 3))
        if stream is not None and _name(request, 4) in stream.consumers:
            return consumer_api.consumer_msg_next(api, request)
        if self.cluster.state.stream(request.jsa.name, _name(request, 3)) is not None:
            return None
        src = request.src
        if request.reply and src is not None and getattr(src, "kind", 0) == 0 and getattr(src, "no_responders", False):
            src.on_no_responders(request.subject, request.reply)
        return None

    # ------------------------------------------------------------------ account info

    def account_info(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request):
            return None
        from jsedge.cluster.meta import consumer_replicas
        from jsedge.jetstream.manager import tier_name

        out = stream_api.account_info(api, request)
        streams = self.cluster.state.account_streams(request.jsa.name)
        out["streams"] = len(streams)
        out["consumers"] = sum(len(sa.consumers) for sa in streams) or out["consumers"]

        def reserved(tier: str | None) -> tuple[int, int]:
            memory = storage = 0
            for sa in streams:
                max_bytes = int(sa.config.get("max_bytes") or 0)
                if max_bytes > 0 and (tier is None or tier_name(int(sa.config.get("num_replicas") or 1)) == tier):
                    if sa.config.get("storage") == "memory":
                        memory += max_bytes
                    else:
                        storage += max_bytes
            return memory, storage

        # the account's streams and reservations are the meta group's (nats-server's), not
        # only the replicas this server holds
        out["reserved_memory"], out["reserved_storage"] = reserved(None)
        tiers = out.get("tiers")
        if isinstance(tiers, dict):
            for name, tier in tiers.items():
                tier["streams"] = tier["consumers"] = 0
                tier["reserved_memory"], tier["reserved_storage"] = reserved(name)
            for sa in streams:
                tier = tiers.get(tier_name(int(sa.config.get("num_replicas") or 1)))
                if tier is not None:
                    tier["streams"] += 1
                for ca in sa.consumers.values():
                    consumer_tier = tiers.get(tier_name(consumer_replicas(ca.config, sa.config, len(sa.peers))))
                    if consumer_tier is not None:
                        consumer_tier["consumers"] += 1
        return out

    # ------------------------------------------------------------------ create / update / delete

    def _placement(
        self, config: Any, sa: StreamAssignment | None = None, exclude: list[str] | None = None
    ) -> list[str]:
        cluster = self.cluster
        replicas = config.num_replicas or 1
        if exclude:
            replicas -= len(exclude)
        placement = config.placement
        if placement is not None and placement.cluster and placement.cluster != cluster.cluster_name:
            raise js_error("JSClusterNoPeersErrF", err="no suitable peers for placement")
        members = set(cluster.meta.node.peers) or {cluster.me}
        candidates = []
        # why servers were passed over, for nats-server's error text (selectPeerError)
        offline = exclude_set = False
        missing: list[str] = []
        excluded: list[str] = []
        wanted_tags = list(placement.tags) if placement is not None and placement.tags else []
        # jetstream { unique_tag: "az" }: the replicas' servers each need a different az:* tag (off
        # when the placement names such a tag itself)
        unique = cluster.server.config.jetstream.unique_tag.lower()
        if unique and any(t.lstrip("!").lower().startswith(unique) for t in wanted_tags):
            unique = ""
        unique_owners: set[str] = set()
        unique_failed = False
        order = sorted(members)
        random.shuffle(order)
        for peer in order:
            if not cluster.peer_online(peer):
                offline = True
                continue
            if exclude and peer in exclude:
                continue
            tag_list = [
                t.lower()
                for t in (
                    cluster.server.config.server_tags
                    if peer == cluster.me
                    else (cluster.peers.get(peer) or {}).get("tags", [])
                )
            ]
            tags = set(tag_list)
            if "!jetstream" in tags:
                exclude_set = True
                continue
            matched = True
            for tag in wanted_tags:
                name = tag[1:] if tag.startswith("!") else tag
                present = name.lower() in tags
                if tag.startswith("!") and present:
                    if name not in excluded:
                        excluded.append(name)
                    matched = False
                    break
                if not tag.startswith("!") and not present:
                    if name not in missing:
                        missing.append(name)
                    matched = False
                    break
            if not matched:
                continue
            if unique:
                value = next((t for t in tag_list if t.startswith(unique)), None)
                if value is None or value in unique_owners:
                    unique_failed = True
                    continue
                unique_owners.add(value)
            candidates.append(peer)
        if len(candidates) < replicas:
            text = "no suitable peers for placement"
            if offline:
                text += ", peer offline"
            if exclude_set:
                text += ", exclude tag set"
            if unique_failed:
                text += ", server tag not unique"
            if missing:
                text += ", tags not matched [" + ", ".join(f"'{t}'" for t in missing) + "]"
            if excluded:
                text += ", tags excluded [" + ", ".join(f"'{t}'" for t in excluded) + "]"
            raise js_error("JSClusterNoPeersErrF", err=text)
        load = {peer: 0 for peer in candidates}
        for other in cluster.state.streams.values():
            for peer in other.peers:
                if peer in load:
                    load[peer] += 1
        random.shuffle(candidates)
        candidates.sort(key=lambda p: load[p])
        chosen = candidates[:replicas]
        preferred = placement.preferred if placement is not None else ""
        if preferred:
            wanted = cluster.state.peer_of(preferred) or preferred
            if wanted in candidates and wanted not in chosen:
                chosen[-1] = wanted
        return chosen

    def _rescale_peers(self, config: Any, sa: StreamAssignment, replicas: int) -> list[str]:
        """The peers wanted after a replica change: the current ones that are online first (they hold
        the data), then new ones by placement. The replica that seals the old group puts itself in
        when it is not (it seeds the new group)."""
        cluster = self.cluster
        keep = [p for p in sa.peers if cluster.peer_online(p)]
        if replicas <= len(keep):
            return keep[:replicas]
        return keep + self._placement(config, exclude=keep)

    def _subscribe_system(self) -> None:
        """The system account has no JetStream of its own, yet its users send the meta-level
        requests (SERVER.REMOVE, META.LEADER.STEPDOWN): subscribe those subjects there."""
        account = self.cluster.system_account
        if account is None:
            return
        requester = _SystemRequester(account)
        api = self.api

        def on_request(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
            hdr, body = (bytes(msg[:hdr_len]), bytes(msg[hdr_len:])) if hdr_len >= 0 else (b"", bytes(msg))
            api.dispatch(Request(requester, subject.split(b".")[2:], subject, reply, hdr, body, src))

        for subject in (b"$JS.API.SERVER.REMOVE", b"$JS.API.META.LEADER.STEPDOWN"):
            self.system_subs.append(self.server.subscribe_internal(account, subject, on_request, routed=True))

    # ------------------------------------------------------------------ restore

    def stream_restore(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request, leaderless_now=True):
            return None
        if self.cluster.state.stream(request.jsa.name, _name(request)) is not None:
            raise js_error("JSStreamNameExistRestoreFailedErr")
        return snapshot_api.stream_restore(api, request)

    def finish_restore(
        self, jsa: Any, name: str, fileobj: Any, request_config: dict[str, Any] | None = None
    ) -> asyncio.Future[Any]:
        """The archive of a restore arrived here (the meta leader): build the store on this server,
        register the stream with this server as its one replica and seed, then change the replica
        count to the archive's. The future resolves to the stream's info once it is done."""
        cluster = self.cluster
        loop = self.server.loop
        done: asyncio.Future[Any] = loop.create_future()
        if cluster.state.stream(jsa.name, name) is not None:
            raise js_error("JSStreamNameExistRestoreFailedErr")
        stream = snapshot_api.restore_stream(jsa, name, fileobj, request_config)  # a local stream, for now
        config = stream.config
        wanted = config.num_replicas or 1
        for other in cluster.state.account_streams(jsa.name):
            mine = [s.encode() for s in config.subjects or []]
            for subject in other.config.get("subjects") or []:
                if any(subjects_overlap(subject.encode(), m) for m in mine):
                    jsa.delete_stream(name)
                    raise js_error("JSStreamSubjectOverlapErr")
        consumers = [(c.name, encode(c.config), c.created) for c in stream.consumers.values()]
        created = stream.created
        jsa.close_replica(name, delete=False)
        single = encode(config)
        single["num_replicas"] = 1
        group = group_name("S", 1, config.storage)
        jsa._write_meta(decode_stream_config_request(single), created, group)  # the replica reopens it
        me = cluster.me

        def registered(change: Any) -> None:
            replica = cluster.replica(jsa.name, name)
            if replica is None or replica.stream is None:
                if not done.done():
                    done.set_exception(js_error("JSStreamRestoreErrF", err="the restored stream did not open"))
                return
            for consumer_name, consumer_config, consumer_created in consumers:
                if consumer_name in replica.stream.consumers:
                    cluster.propose_meta(
                        {
                            "op": "consumer",
                            "account": jsa.name,
                            "stream": name,
                            "name": consumer_name,
                            "config": consumer_config,
                            "group": "",
                            "peers": [me],
                            "created": consumer_created,
                        }
                    )
            if wanted == 1:
                done.set_result(replica.stream.info(cluster=True))
                return
            target = dict(single)
            target["num_replicas"] = wanted
            sa = cluster.state.stream(jsa.name, name)
            assert sa is not None
            try:
                peers = self._rescale_peers(decode_stream_config_request(target), sa, wanted)
            except JSError as exc:
                done.set_exception(exc)
                return
            new_group = group_name("S", wanted, config.storage)
            cluster.propose_meta(
                {
                    "op": "stream_scale",
                    "account": jsa.name,
                    "name": name,
                    "config": target,
                    "group": new_group,
                    "peers": peers,
                    "ts": time.time_ns(),
                }
            )

            def scaled(change2: Any) -> None:
                replica2 = cluster.replica(jsa.name, name)
                if replica2 is None or replica2.group_name != new_group:
                    cluster.wait_for(jsa.name, name, scaled)  # not yet the seeded group
                    return

                def answer(r: Any) -> None:
                    if not done.done():
                        done.set_result(r.stream.info(cluster=True))

                if replica2.is_leader:
                    answer(replica2)
                else:
                    replica2.waiting_response.append(answer)

            cluster.wait_for(jsa.name, name, scaled)

        cluster.wait_for(jsa.name, name, registered)
        cluster.propose_meta(
            {
                "op": "stream",
                "account": jsa.name,
                "config": single,
                "group": group,
                "peers": [me],
                "created": created,
                "seed": me,
            }
        )
        return done

    def _check_origins(self, jsa: Any, config: Any) -> None:
        """The mirror/source checks that need the other streams (sizes, cycles, mirror_direct),
        against the meta group's view of the account's streams (the origins may run elsewhere)."""
        if config.mirror is None and not config.sources:
            return
        from types import SimpleNamespace

        from jsedge.jetstream import mirror

        streams: dict[str, Any] = {}
        for sa in self.cluster.state.account_streams(jsa.name):
            if sa.name != config.name:
                origin = decode_stream_config_request(sa.config)
                streams[sa.name] = SimpleNamespace(config=origin)
        mirror.check_origins(SimpleNamespace(streams=streams, domain=jsa.domain), config)

    def stream_create(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request, leaderless_now=True):
            return None
        document = parse_json(request.body) if request.body.strip() else {}
        config = decode_stream_config_request(document)
        if config.name != _name(request):
            raise js_error("JSStreamMismatchErr")
        token = request.tokens[2]
        if b"/" in token or b"\\" in token:
            raise js_error("JSStreamNameContainsPathSeparatorsErr")
        if config.sealed:
            raise js_error("JSStreamInvalidConfigF", err="stream configuration for create can not be sealed")
        jsa = request.jsa
        config = jsa.defaulted(config, config.pedantic)
        if config.mirror_direct and config.mirror is None:
            raise js_error("JSStreamInvalidConfigF", err="stream has no mirror but does have mirror direct")
        self._check_origins(jsa, config)
        cluster = self.cluster
        existing = cluster.state.stream(jsa.name, config.name)
        set_static_metadata(config)
        encoded = encode(config)
        if existing is not None:
            if _comparable(existing.config) != _comparable(encoded):
                raise js_error("JSStreamNameExistErr")
            peers, group, created = existing.peers, existing.group, existing.created
            encoded = existing.config
        else:
            for other in cluster.state.account_streams(jsa.name):
                mine = [s.encode() for s in config.subjects or []]
                for subject in other.config.get("subjects") or []:
                    if any(subjects_overlap(subject.encode(), m) for m in mine):
                        raise js_error("JSStreamSubjectOverlapErr")
            replicas = max(1, config.num_replicas)
            jsa.require_tier(replicas)
            max_streams = jsa.limit("max_streams", replicas)
            if isinstance(max_streams, int) and max_streams > 0:
                mine = cluster.state.account_streams(jsa.name)
                if jsa.tiered:  # a tier counts its own streams
                    mine = [sa for sa in mine if max(1, int(sa.config.get("num_replicas") or 1)) == replicas]
                if len(mine) >= max_streams:
                    raise js_error("JSMaximumStreamsLimitErr")
            peers = self._placement(config)
            group = group_name("S", len(peers), config.storage)
            created = time.time_ns()
        cluster.propose_meta(
            {
                "op": "stream",
                "account": jsa.name,
                "config": encoded,
                "group": group,
                "peers": peers,
                "created": created,
                "reply": request.reply.decode("utf-8", "replace"),
                "subject": request.subject.decode("utf-8", "replace"),
                "ts": time.time_ns(),
            }
        )
        return None  # the stream's leader answers

    def stream_update(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request, leaderless_now=True):
            return None
        document = parse_json(request.body) if request.body.strip() else {}
        config = decode_stream_config_request(document)
        jsa = request.jsa
        jsa.defaulted(config, config.pedantic)
        if config.name != _name(request):
            raise js_error("JSStreamMismatchErr")
        config = jsa.defaulted(config, config.pedantic)
        sa = self.cluster.state.stream(jsa.name, config.name)
        if sa is None:
            raise js_error("JSStreamNotFoundErr")
        current = decode_stream_config_request(sa.config)
        current.pedantic = False
        replicas = config.num_replicas or 1
        scaling = replicas != len(sa.peers)
        if scaling:
            if sa.scale is not None:
                raise js_error("JSClusterNotAvailErr")  # the previous replica change is not done yet
            current.num_replicas = config.num_replicas
        config = check_update(current, config)
        self._check_origins(jsa, config)
        for other in self.cluster.state.account_streams(jsa.name):
            if other.name == config.name:
                continue
            mine = [s.encode() for s in config.subjects or []]
            for subject in other.config.get("subjects") or []:
                if any(subjects_overlap(subject.encode(), m) for m in mine):
                    raise js_error("JSStreamSubjectOverlapErr")
        set_static_metadata(config)
        if scaling:
            self.cluster.propose_meta(
                {
                    "op": "stream_scale",
                    "account": jsa.name,
                    "name": config.name,
                    "config": encode(config),
                    "group": group_name("S", replicas, config.storage),
                    "peers": self._rescale_peers(config, sa, replicas),
                    "reply": request.reply.decode("utf-8", "replace"),
                    "subject": request.subject.decode("utf-8", "replace"),
                    "ts": time.time_ns(),
                }
            )
            return None  # the seed of the new group answers once it leads
        self.cluster.propose_meta(
            {
                "op": "stream_update",
                "account": jsa.name,
                "config": encode(config),
                "reply": request.reply.decode("utf-8", "replace"),
                "subject": request.subject.decode("utf-8", "replace"),
                "ts": time.time_ns(),
            }
        )
        return None

    def stream_delete(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request):
            return None
        stream_api.require_empty(request.body)
        jsa = request.jsa
        name = _name(request)
        if self.cluster.state.stream(jsa.name, name) is None:
            raise js_error("JSStreamNotFoundErr")
        command = {
            "op": "stream_remove",
            "account": jsa.name,
            "name": name,
            "reply": request.reply.decode("utf-8", "replace"),
            "subject": request.subject.decode("utf-8", "replace"),
            "ts": time.time_ns(),
        }
        fut = self.cluster.propose_meta(command)
        # the stream's leader answers once it has removed the stream (cluster/jetstream.py
        # _remove_stream); only errors come from here
        self._answer_when(fut, request, lambda _result: {"success": True}, errors_only=True)
        return None

    def _answer_when(
        self, fut: asyncio.Future[Any], request: Request, payload: Any, *, errors_only: bool = False
    ) -> None:
        """Answer `request` when `fut` (a proposal) is done: its error, or (unless `errors_only`:
        another server answers a success) `payload(result)`."""
        endpoint = self.api.find(request.tokens)
        if endpoint is None:
            return

        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled():
                return
            exc = f.exception()
            if isinstance(exc, JSError):
                self.api.respond(request, self.api.error_response(endpoint, exc))
                return
            if exc is not None:
                return  # leadership lost before the commit: the client times out and retries
            if errors_only:
                return
            try:
                body = payload(f.result())
            except JSError as error:
                self.api.respond(request, self.api.error_response(endpoint, error))
                return
            response = {"type": TYPE_PREFIX + endpoint.response}
            response.update(body)
            self.api.respond(request, response)

        fut.add_done_callback(done)

    # ------------------------------------------------------------------ names / list

    def _assignments(self, request: Request) -> tuple[list[StreamAssignment], int]:
        document = stream_api.optional_body(request.body)
        options = (
            decode(StreamNamesRequest, document, "JSApiStreamNamesRequest")
            if document is not None
            else StreamNamesRequest()
        )
        streams = sorted(self.cluster.state.account_streams(request.jsa.name), key=lambda sa: sa.name.encode())
        if options.subject:
            wanted = options.subject.encode()
            kept = []
            for sa in streams:
                subjects = sa.config.get("subjects") or []
                if subjects:
                    if any(subjects_overlap(s.encode(), wanted) for s in subjects):
                        kept.append(sa)
                elif subject_matches(wanted, sa.name.encode()) or sa.name.encode() == wanted:
                    kept.append(sa)
            streams = kept
        return streams, options.offset

    def stream_names(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request):
            return None
        streams, offset = self._assignments(request)
        total = len(streams)
        offset = min(max(offset, 0), total)
        page = [sa.name for sa in streams[offset : offset + stream_api.NAMES_LIMIT]]
        return {"total": total, "offset": offset, "limit": stream_api.NAMES_LIMIT, "streams": page or None}

    def stream_list(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not self.meta_only(request):
            return None
        streams, offset = self._assignments(request)
        total = len(streams)
        offset = min(max(offset, 0), total)
        page = streams[offset : offset + stream_api.LIST_LIMIT]
        head = {"total": total, "offset": offset, "limit": stream_api.LIST_LIMIT}
        self._gather(request, page, head)
        return None

    def _gather(self, request: Request, page: list[StreamAssignment], head: dict[str, Any]) -> None:
        """Collect each stream's info from its leader (locally when we lead it), then answer."""
        results: dict[str, Any] = {}
        asks: list[tuple[str, list[str], dict[str, Any]]] = []
        for sa in page:
            replica = self.cluster.replica(sa.account, sa.name)
            if replica is not None and replica.is_leader:
                results[sa.name] = replica.stream.info(dynamic=False, cluster=True)
            else:
                asks.append((sa.name, sa.peers, {"account": sa.account, "stream": sa.name}))
        self._scatter(request, head, "streams", [sa.name for sa in page], results, asks)

    def _scatter(
        self,
        request: Request,
        head: dict[str, Any],
        field: str,
        names: list[str],
        results: dict[str, Any],
        asks: list[tuple[str, list[str], dict[str, Any]]],
    ) -> None:
        """Answer a LIST with the infos in `results` and those `asks` (name, peers, info request)
        bring from other servers within INFO_TIMEOUT; names nobody answered for are `missing`."""
        cluster = self.cluster
        self._next_gather += 1
        gather_id = f"{cluster.me}.{self._next_gather}"
        asked: set[str] = set()
        for name, peers, document in asks:
            asked.add(name)
            for peer in peers:
                if peer != cluster.me:
                    cluster.transport.send_control(peer, "info", {"id": gather_id, **document})
        endpoint = self.api.find(request.tokens)

        def finish() -> None:
            gather = self._gathers.pop(gather_id, None)
            if gather is None or endpoint is None:
                return
            if gather["handle"] is not None:
                gather["handle"].cancel()
            response: dict[str, Any] = {"type": TYPE_PREFIX + endpoint.response}
            response.update(head)
            response[field] = [results[n] for n in names if n in results]
            missing = [n for n in names if n not in results]
            if missing:
                response["missing"] = missing
            self.api.respond(request, response)

        if not asked:
            self._gathers[gather_id] = {"handle": None}
            finish()
            return
        handle = self.server.loop.call_later(INFO_TIMEOUT, finish)
        self._gathers[gather_id] = {"handle": handle, "asked": asked, "results": results, "finish": finish}

    def cluster_info_request(self, sender: str, document: dict[str, Any]) -> None:
        replica = self.cluster.replica(str(document.get("account", "")), str(document.get("stream", "")))
        if replica is None:
            return
        consumer_name = document.get("consumer")
        if consumer_name:
            consumer = replica.stream.consumers.get(str(consumer_name))
            if consumer is None:
                return
            self.cluster.transport.send_control(
                sender,
                "info_reply",
                {"id": document.get("id"), "name": consumer.name, "info": consumer.info(dynamic=False)},
            )
            return
        if not replica.is_leader:
            return
        info = replica.stream.info(dynamic=False, cluster=True)
        self.cluster.transport.send_control(
            sender, "info_reply", {"id": document.get("id"), "name": replica.name, "info": info}
        )

    def cluster_info_reply(self, sender: str, document: dict[str, Any]) -> None:
        gather = self._gathers.get(str(document.get("id", "")))
        if gather is None or "asked" not in gather:
            return
        name = str(document.get("name", ""))
        if name not in gather["asked"]:
            return
        gather["asked"].discard(name)
        gather["results"][name] = document.get("info")
        if not gather["asked"]:
            gather["finish"]()

    # ------------------------------------------------------------------ stream leader requests

    def stream_purge(self, api: Any, request: Request) -> dict[str, Any] | None:
        role, replica = self.stream_role(request)
        if role != "answer":
            return None
        stream = replica.stream
        command = stream_api.purge_command(stream, request.body)
        if replica.group is None:
            return {"success": True, "purged": stream.execute(command)}
        self._answer_when(stream.execute(command), request, lambda purged: {"success": True, "purged": purged})
        return None

    def stream_msg_delete(self, api: Any, request: Request) -> dict[str, Any] | None:
        role, replica = self.stream_role(request, 3)
        if role != "answer":
            return None
        stream = replica.stream
        body = request.body.strip()
        if not body:
            raise js_error("JSBadRequestErr")
        command = stream_api.msg_delete_command(stream, body)
        seq = command.seq

        def result(removed: Any) -> dict[str, Any]:
            if not removed:
                raise js_error("JSSequenceNotFoundErrF", seq=seq)
            return {"success": True}

        if replica.group is None:
            return result(stream.execute(command))
        self._answer_when(stream.execute(command), request, result)
        return None

    def stream_stepdown(self, api: Any, request: Request) -> dict[str, Any] | None:
        role, replica = self.stream_role(request, 3)
        if role != "answer":
            return None
        group = replica.group
        if group is not None:
            group.transfer(self._stepdown_target(group, request.body))
        return {"success": True}

    def consumer_stepdown(self, api: Any, request: Request) -> dict[str, Any] | None:
        """Answered by the consumer's leader (consumer_local): an R1 consumer has nothing to step
        down from (success, as nats-server); a replicated one hands leadership over, to
        `placement.preferred` when given."""
        stream = request.jsa.streams.get(_name(request, 3))
        consumer = stream.consumers.get(_name(request, 4)) if stream is not None else None
        member = getattr(consumer, "clustered", None)
        if member is None or member.group is None:
            return {"success": True}
        member.step_down(self._stepdown_target(member.group, request.body))
        return {"success": True}

    def _stepdown_target(self, group: Any, body: bytes) -> str | None:
        """The peer a leader stepdown hands over to (None: any), from the request's `placement` as
        nats-server picks it (getStepDownPreferredPlacement): `preferred` names a member of the
        group; `cluster` and `tags` filter the online members."""
        document = stream_api.optional_body(body)
        placement = document.get("placement") if isinstance(document, dict) else None
        if not isinstance(placement, dict):
            return None
        cluster = self.cluster
        preferred = str(placement.get("preferred") or "")
        peers = [p for p in group.node.peers]
        if preferred:
            target = next((p for p in peers if cluster.name_of(p) == preferred), None)
            if target == cluster.me:
                raise js_error("JSClusterNoPeersErrF", err=f'preferred server "{preferred}" is already leader')
            if target is None:
                raise js_error("JSClusterNoPeersErrF", err=f'preferred server "{preferred}" not known')
            return str(target)
        wanted_cluster = str(placement.get("cluster") or "")
        tags = [str(t) for t in placement.get("tags") or []]
        possible = []
        for peer in peers:
            if peer == cluster.me or not cluster.peer_online(peer):
                continue
            if wanted_cluster and wanted_cluster != cluster.cluster_name:
                continue
            have = (
                cluster.server.config.server_tags
                if peer == cluster.me
                else (cluster.peers.get(peer) or {}).get("tags", [])
            )
            have_lower = {str(t).lower() for t in have}
            if any(t.lower() not in have_lower for t in tags):
                continue
            possible.append(peer)
        if not possible:
            raise js_error("JSClusterNoPeersErrF", err="no replacement peer connected")
        return str(random.choice(possible))

    def stream_peer_remove(self, api: Any, request: Request) -> dict[str, Any] | None:
        role, _replica = self.stream_role(request, 3)
        if role != "answer":
            return None
        # nats-server's checks, in its order; a member can only be removed when a server outside
        # the group can take its place (requireReplicas), else "peer remap failed"
        if not request.body.strip():
            raise js_error("JSBadRequestErr")
        peer_request = decode(StreamRemovePeerRequest, parse_json(request.body), "JSApiStreamRemovePeerRequest")
        if not peer_request.peer:
            raise js_error("JSBadRequestErr")
        sa = _replica.assignment
        wanted = peer_id(peer_request.peer)
        if wanted not in sa.peers:
            wanted = peer_request.peer
        if wanted not in sa.peers:
            raise js_error("JSClusterPeerNotMemberErr")
        cluster = self.cluster
        spare = [p for p in cluster.state.servers if p not in sa.peers and cluster.peer_online(p)]
        if not spare or sa.scale is not None or len(sa.peers) < 2:
            # (an R1 stream would need its store copied by its only server before it leaves: not built)
            raise js_error("JSPeerRemapErr")
        # the replica moves to a spare server: a replica change to the same count (the old group is
        # sealed and a new one seeded by a replica that stays, see cluster/stream.py)
        config = dict(sa.config)
        peers = [p for p in sa.peers if p != wanted] + [random.choice(spare)]
        cluster.propose_meta_anywhere(
            {
                "op": "stream_scale",
                "account": sa.account,
                "name": sa.name,
                "config": config,
                "group": group_name("S", len(peers), str(config.get("storage", "file"))),
                "peers": peers,
                "remove": wanted,
                "ts": time.time_ns(),
            }
        )
        return {"success": True}

    # ------------------------------------------------------------------ system account requests

    def meta_stepdown(self, api: Any, request: Request) -> dict[str, Any] | None:
        if not getattr(request.jsa.account, "is_system", False) or not self.cluster.is_meta_leader:
            return None  # only the system account may, and others get no answer (nats-server)
        preferred = ""
        document = stream_api.optional_body(request.body)
        if isinstance(document, dict):
            placement = document.get("placement") or {}
            if isinstance(placement, dict):
                preferred = str(placement.get("preferred") or "")
        target = self.cluster.state.peer_of(preferred) if preferred else None
        self.cluster.meta.transfer(target)
        return {"success": True}

    def server_remove(self, api: Any, request: Request) -> dict[str, Any] | None:
        """$JS.API.SERVER.REMOVE (system account): take a server out of the meta group (answered
        once the membership change commits), then move its stream replicas to spare servers."""
        cluster = self.cluster
        if not getattr(request.jsa.account, "is_system", False) or not cluster.is_meta_leader:
            return None
        if not request.body.strip():
            raise js_error("JSBadRequestErr")
        options = decode(MetaServerRemoveRequest, parse_json(request.body), "JSApiMetaServerRemoveRequest")
        found = ""
        for peer in cluster.meta.node.peers:
            if options.peer_id:
                if peer == options.peer_id:
                    found = peer
                    break
                continue
            if cluster.name_of(peer) == options.peer:
                found = peer
                break
        if not found:
            raise js_error("JSClusterServerNotMemberErr")
        if cluster.removing:
            raise js_error("JSClusterServerMemberChangeInflightErr")
        try:
            index = cluster.meta.propose_peers(tuple(p for p in cluster.meta.node.peers if p != found))
        except MembershipBusy:
            raise js_error("JSClusterServerMemberChangeInflightErr") from None
        except NotLeader:
            return None
        cluster.removing[found] = index
        endpoint = self.api.find(request.tokens)

        def committed() -> None:
            if not cluster.is_meta_leader:
                cluster.removing.pop(found, None)
                return  # the client times out, as with nats-server when its leader changes
            if cluster.meta.node.commit_index < index:
                self.server.loop.call_later(0.05, committed)
                return
            cluster.removing.pop(found, None)
            cluster.removed.add(found)
            cluster.propose_meta({"op": "server_remove", "peer": found})
            self._move_replicas_off(found)
            if endpoint is not None:
                self.api.respond(request, {"type": TYPE_PREFIX + endpoint.response, "success": True})

        committed()
        return None

    def _move_replicas_off(self, gone: str) -> None:
        """Streams with a replica on a removed server: move it to a spare server where one exists."""
        cluster = self.cluster
        for sa in list(cluster.state.streams.values()):
            if gone not in sa.peers or sa.scale is not None or len(sa.peers) < 2:
                continue
            spare = [p for p in cluster.state.servers if p not in sa.peers and p != gone and cluster.peer_online(p)]
            if not spare:
                continue
            peers = [p for p in sa.peers if p != gone] + [random.choice(spare)]
            cluster.propose_meta(
                {
                    "op": "stream_scale",
                    "account": sa.account,
                    "name": sa.name,
                    "config": dict(sa.config),
                    "group": group_name("S", len(peers), str(sa.config.get("storage", "file"))),
                    "peers": peers,
                    "remove": gone,
                    "ts": time.time_ns(),
                }
            )


class _SystemRequester:
    """Stands in for an account's JetStream when a system account user calls the meta-level API."""

    def __init__(self, account: Any) -> None:
        self.account = account
        self.name = account.name
        self.api_total = 0
        self.api_errors = 0


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    metadata = dict(out.get("metadata") or {})
    metadata.pop("_nats.req.level", None)
    out["metadata"] = metadata
    return out


# answers sent by a stream's leader for requests the meta leader proposed


def _proposed_request(jsa: Any, command: dict[str, Any]) -> Request | None:
    """The request a proposed meta command carries (`reply`, `subject`, `ts`), to answer from
    the server that completes it; None when it has no reply or is too old to be waited for."""
    reply = str(command.get("reply") or "")
    if not reply or time.time_ns() - int(command.get("ts", 0)) > FRESH:
        return None
    subject = str(command.get("subject") or "").encode()
    tokens = subject.split(b".")
    rest = tokens[2:] if len(tokens) > 1 and tokens[1] == b"API" else tokens[3:]
    return Request(jsa, rest, subject, reply.encode(), b"", b"", None)


def answer_assignment(
    api: Any, replica: Any, command: dict[str, Any], response_name: str, extra: dict[str, Any]
) -> None:
    request = _proposed_request(replica.jsa, command)
    if request is None:
        return
    response: dict[str, Any] = {"type": TYPE_PREFIX + response_name}
    response.update(replica.stream.info(cluster=True))
    response.update(extra)
    api.respond(request, response)


def answer_consumer_delete(api: Any, jsa: Any, command: dict[str, Any]) -> None:
    """CONSUMER.DELETE answered by the server that led the consumer, once it is gone."""
    request = _proposed_request(jsa, command)
    if request is None:
        return
    api.respond(request, {"type": TYPE_PREFIX + "consumer_delete_response", "success": True})


def answer_stream_delete(api: Any, jsa: Any, command: dict[str, Any]) -> None:
    """STREAM.DELETE answered by the server that led the stream, once it is gone."""
    request = _proposed_request(jsa, command)
    if request is None:
        return
    api.respond(request, {"type": TYPE_PREFIX + "stream_delete_response", "success": True})


__all__ = ["ClusterAPI", "answer_assignment", "answer_consumer_delete", "answer_stream_delete"]
