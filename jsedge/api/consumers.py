"""Consumer endpoints of the JetStream API (layer 5): CONSUMER.* (spec/jetstream-api.md §4.12-§4.19).

Create has four subject forms (legacy ephemeral, named, named + filter, legacy durable); the checks
run in nats-server's order (§4.12): JSON, stream name, path separators, durable/name rules, filter in
subject, replicas, stream lookup, then `jetstream.consumers.create_consumer` (defaults, validation,
create-or-update). MSG.NEXT hands the request to the consumer, or — when the consumer does not exist
— answers with core no-responders like nats-server, where nobody subscribes that subject.
"""

from __future__ import annotations

from typing import Any

from jsedge import gojson
from jsedge.api.request import TYPE_PREFIX, Endpoint, Request
from jsedge.api.streams import lookup, optional_body, require_empty
from jsedge.errors import js_error
from jsedge.jetstream.advisory import random_name
from jsedge.jetstream.consumerconfig import valid_group_name
from jsedge.jetstream.consumers import create_consumer, delete_consumer
from jsedge.jetstream.models import (
    ConsumerNamesRequest,
    ConsumerPauseRequest,
    ConsumerResetRequest,
    decode,
    decode_create_consumer_request,
    format_time_ns,
    json_kind,
    parse_json,
)

NAMES_LIMIT = 1024
LIST_LIMIT = 256


def _text(token: bytes) -> str:
    return token.decode("utf-8", "replace")


def consumer_create(api: Any, request: Request) -> dict[str, Any]:
    stream_token, config, action, pedantic = parse_create(request)
    if config.num_replicas > 1:
        raise js_error("JSStreamReplicasNotSupportedErr")
    stream = request.jsa.streams.get(stream_token)
    if stream is None:
        raise js_error("JSStreamNotFoundErr")
    if config.direct or config.sourcing:
        check_stream_identity(request, stream.created)
    existing = stream.consumers.get(config.name) if config.name else None
    durable_sourcing = upgrade_sourcing_consumer(
        stream.config.retention, config, existing.config if existing is not None else None
    )
    consumer = create_consumer(stream, config, action, pedantic=pedantic)
    if durable_sourcing:
        consumer.reset(0)  # (re)attached: what its ack floor does not cover is delivered again
    return consumer.info()


def check_stream_identity(request: Request, created_ns: int) -> None:
    """A mirror's or source's consumer create: refuse it when the request names another identity
    of the stream (`Nats-Stream-Identity`: the stream was re-created, 10225), and answer with the
    stream's identity, as nats-server does (a feed across accounts or domains learns it so)."""
    from jsedge.jetstream.headers import get_header
    from jsedge.jetstream.mirror import stream_identity

    identity = stream_identity(created_ns)
    wanted = get_header(request.hdr, b"Nats-Stream-Identity") if request.hdr else None
    if wanted and wanted.decode(errors="replace") != identity:
        raise js_error("JSConsumerStreamIdentityMismatchF", msg=identity)
    request.response_hdr = b"NATS/1.0\r\nNats-Stream-Identity: " + identity.encode() + b"\r\n\r\n"


def upgrade_sourcing_consumer(retention: str, config: Any, existing: Any = None) -> bool:
    """The consumer a mirror or source asks for (`direct`, `sourcing`, a stable name: ADR-60),
    given its stream's retention and the config of the consumer of that name if there is one.
    Of a limits stream it stays an ephemeral direct consumer, under a name made unique; of a
    work-queue or interest stream it becomes a durable acknowledged by flow control, so nothing
    is removed before the sourcing stream stored it, and interest survives the link going down
    (keeping the deliver policy of the durable it replaces). True for the durable."""
    if not (config.direct and config.sourcing and config.name):
        return False
    if retention == "limits":
        config.name = f"{config.name}-{random_name(8)}"
        return False
    config.direct = False
    config.durable_name = config.name
    config.ack_policy = "flow_control"
    config.ack_wait = config.max_deliver = config.inactive_threshold = 0
    if existing is not None:  # the config of the durable it replaces
        config.deliver_policy = existing.deliver_policy
        config.opt_start_seq = existing.opt_start_seq
        config.opt_start_time = existing.opt_start_time
    return True


def parse_create(request: Request) -> tuple[str, Any, str, bool]:
    """The request checks of a consumer create, in nats-server's order, up to the stream lookup:
    (stream name, config, action)."""
    tokens = request.tokens
    durable_form = tokens[1] == b"DURABLE"
    if durable_form:
        if len(tokens) != 5:
            raise js_error("JSConsumerDurableNameNotInSubjectErr")
        stream_token, consumer_name, filtered = _text(tokens[3]), _text(tokens[4]), ""
    else:
        stream_token = _text(tokens[2])
        consumer_name = _text(tokens[3]) if len(tokens) > 3 else ""
        filtered = ".".join(_text(t) for t in tokens[4:]) if len(tokens) > 4 else ""
    document = parse_json(request.body) if request.body.strip() else {}
    create = decode_create_consumer_request(document)
    config = create.config
    assert config is not None
    if stream_token != create.stream_name:
        raise js_error("JSStreamMismatchErr")
    if consumer_name and ("/" in consumer_name or "\\" in consumer_name):
        raise js_error("JSConsumerNameContainsPathSeparatorsErr")
    if durable_form:
        if not config.durable_name:
            raise js_error("JSConsumerDurableNameNotSetErr")
        if consumer_name != config.durable_name:
            raise js_error("JSConsumerDurableNameNotMatchSubjectErr")
    elif consumer_name:
        if config.durable_name and consumer_name != config.durable_name:
            raise js_error("JSConsumerDurableNameNotMatchSubjectErr")
        config.name = consumer_name
    elif config.durable_name:
        raise js_error("JSConsumerEphemeralWithDurableNameErr")
    if filtered and config.filter_subjects:
        raise js_error("JSConsumerMultipleFiltersNotAllowed")
    if filtered and config.filter_subject != filtered:
        raise js_error("JSConsumerCreateFilterSubjectMismatchErr")
    return stream_token, config, create.action, create.pedantic


def _lookup_consumer(request: Request, stream_index: int = 2) -> Any:
    stream = lookup(request, stream_index)
    consumer = stream.consumers.get(_text(request.tokens[stream_index + 1]))
    if consumer is None:
        raise js_error("JSConsumerNotFoundErr")
    return consumer


def consumer_info(api: Any, request: Request) -> dict[str, Any]:
    require_empty(request.body)
    return _lookup_consumer(request).info()


def _paged(request: Request) -> tuple[Any, int]:
    document = optional_body(request.body)
    options = (
        decode(ConsumerNamesRequest, document, "JSApiConsumersRequest")
        if document is not None
        else ConsumerNamesRequest()
    )
    stream = lookup(request)
    consumers = sorted(stream.consumers.values(), key=lambda c: c.name.encode())
    return consumers, min(max(options.offset, 0), len(consumers))


def consumer_names(api: Any, request: Request) -> dict[str, Any]:
    consumers, offset = _paged(request)
    page = [c.name for c in consumers[offset : offset + NAMES_LIMIT]]
    return {"total": len(consumers), "offset": offset, "limit": NAMES_LIMIT, "consumers": page}


def consumer_list(api: Any, request: Request) -> dict[str, Any]:
    consumers, offset = _paged(request)
    page = [c.info(dynamic=False) for c in consumers[offset : offset + LIST_LIMIT]]
    return {"total": len(consumers), "offset": offset, "limit": LIST_LIMIT, "consumers": page}


def consumer_delete(api: Any, request: Request) -> dict[str, Any]:
    require_empty(request.body)
    stream = lookup(request)
    delete_consumer(stream, _text(request.tokens[3]))
    return {"success": True}


def consumer_pause(api: Any, request: Request) -> dict[str, Any]:
    document = optional_body(request.body)
    options = (
        decode(ConsumerPauseRequest, document, "JSApiConsumerPauseRequest")
        if document is not None
        else ConsumerPauseRequest()
    )
    consumer = _lookup_consumer(request)
    consumer.pause(options.pause_until)
    now = consumer.now()
    until = options.pause_until
    out: dict[str, Any] = {"paused": bool(until) and until > now, "pause_until": format_time_ns(until)}
    if out["paused"]:
        out["pause_remaining"] = until - now
    return out


def consumer_reset(api: Any, request: Request) -> dict[str, Any] | None:
    """`CONSUMER.RESET.<stream>.<consumer>` (2.14). nats-server answers it from the consumer's own
    subscription: where the consumer does not run, nobody answers. A replicated consumer answers
    once the reset state committed."""
    tokens = request.tokens
    stream = request.jsa.streams.get(_text(tokens[2]))
    consumer = stream.consumers.get(_text(tokens[3])) if stream is not None else None
    if consumer is None:
        return None
    seq = 0
    if request.body:
        # json.Unmarshal, not the API's usual Decoder: its syntax errors carry no offset
        syntax = gojson.unmarshal_syntax_error(request.body)
        if syntax:
            raise js_error("JSInvalidJSONErr", err=syntax)
        seq = decode(ConsumerResetRequest, gojson.loads(request.body), "JSApiConsumerResetRequest").seq
    reset_seq = consumer.reset(seq)
    out: dict[str, Any] = consumer.info()
    out["reset_seq"] = reset_seq
    if consumer.clustered is None:
        return out
    response = {"type": TYPE_PREFIX + "consumer_reset_response", **out}

    def committed(fut: Any) -> None:
        if not fut.cancelled() and fut.exception() is None:
            api.respond(request, response)  # (leadership moved first: no answer, the client retries)

    consumer.store.sync().add_done_callback(committed)
    return None


def consumer_unpin(api: Any, request: Request) -> dict[str, Any]:
    """`CONSUMER.UNPIN.<stream>.<consumer>` {"group"}: the group's pinned client is let go (ADR-42),
    checked in nats-server's order."""
    syntax = gojson.unmarshal_syntax_error(request.body)
    if syntax:
        raise js_error("JSInvalidJSONErr", err=syntax)
    document = gojson.loads(request.body)
    group = document.get("group") if isinstance(document, dict) else None
    if group is not None and not isinstance(group, str):
        raise js_error(
            "JSInvalidJSONErr",
            err=f"json: cannot unmarshal {json_kind(group)} into Go struct field JSApiConsumerUnpinRequest.group of type string",
        )
    if not group:
        raise js_error("JSInvalidJSONErr", err="consumer group not specified")
    if not valid_group_name(group):
        raise js_error("JSConsumerInvalidGroupNameErr")
    consumer = _lookup_consumer(request)
    if group not in (consumer.config.priority_groups or []):
        raise js_error("JSConsumerInvalidPriorityGroupErr")
    consumer.unpin(group, "admin")
    return {}


def consumer_msg_next(api: Any, request: Request) -> None:
    tokens = request.tokens
    stream = request.jsa.streams.get(_text(tokens[3]))
    consumer = stream.consumers.get(_text(tokens[4])) if stream is not None else None
    if consumer is None:
        src = request.src
        if request.reply and src is not None and getattr(src, "no_responders", False):
            src.on_no_responders(request.subject, request.reply)
        return None
    consumer.process_pull(request.reply, request.body, request.hdr)
    return None


def clustering_required(api: Any, request: Request) -> dict[str, Any]:
    raise js_error("JSClusterRequiredErr")


def register(api: Any) -> None:
    add = api.add
    paged = (("total", 0), ("offset", 0), ("limit", 0))
    add(Endpoint((b"CONSUMER", b"CREATE"), -1, "consumer_create_response", consumer_create))
    add(Endpoint((b"CONSUMER", b"DURABLE", b"CREATE"), -1, "consumer_create_response", consumer_create))
    add(Endpoint((b"CONSUMER", b"INFO"), 4, "consumer_info_response", consumer_info))
    add(Endpoint((b"CONSUMER", b"NAMES"), 3, "consumer_names_response", consumer_names, (*paged, ("consumers", []))))
    add(Endpoint((b"CONSUMER", b"LIST"), 3, "consumer_list_response", consumer_list, (*paged, ("consumers", []))))
    add(Endpoint((b"CONSUMER", b"DELETE"), 4, "consumer_delete_response", consumer_delete))
    add(
        Endpoint(
            (b"CONSUMER", b"PAUSE"),
            4,
            "consumer_pause_response",
            consumer_pause,
            (("paused", False), ("pause_until", "0001-01-01T00:00:00Z")),
        )
    )
    add(Endpoint((b"CONSUMER", b"MSG", b"NEXT"), 5, "", consumer_msg_next, counted=False))
    add(Endpoint((b"CONSUMER", b"UNPIN"), 4, "consumer_unpin_response", consumer_unpin))
    add(Endpoint((b"CONSUMER", b"RESET"), 4, "consumer_reset_response", consumer_reset, (("reset_seq", 0),), False))
    add(Endpoint((b"CONSUMER", b"LEADER", b"STEPDOWN"), 5, "consumer_leader_stepdown_response", clustering_required))
