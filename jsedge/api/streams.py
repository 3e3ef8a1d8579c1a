"""Stream endpoints of the JetStream API (layer 5): INFO, STREAM.* (spec/jetstream-api.md §4.1-4.9).

Each handler takes the dispatcher and a `Request` and returns the response payload (without `type`)
or raises JSError. Body rules of §1.3: optional bodies are parsed only when they start with `{`/`[`,
"must be empty" bodies accept nothing but an empty object, required bodies reject empty/`{}`.
"""

from __future__ import annotations

import base64
from typing import Any

from jsedge.api.request import Endpoint, Request
from jsedge.errors import js_error
from jsedge.jetstream.commands import DeleteMsg, PurgeMsgs
from jsedge.jetstream.models import (
    MsgDeleteRequest,
    MsgGetRequest,
    StreamInfoRequest,
    StreamNamesRequest,
    StreamPurgeRequest,
    decode,
    decode_stream_config_request,
    format_time_ns,
    parse_json,
)
from jsedge.subjects import subject_matches, subjects_overlap, valid_subject

NAMES_LIMIT = 1024
LIST_LIMIT = 256
SUBJECTS_LIMIT = 100_000


def optional_body(body: bytes) -> Any:
    stripped = body.lstrip()
    if not stripped or stripped[:1] not in (b"{", b"["):
        return None
    return parse_json(body)


def require_empty(body: bytes) -> None:
    if not body.strip():
        return
    try:
        import json

        value = json.loads(body)
    except ValueError:
        raise js_error("JSNotEmptyRequestErr") from None
    if value != {}:
        raise js_error("JSNotEmptyRequestErr")


def stream_name(request: Request, index: int = 2) -> str:
    return request.tokens[index].decode("utf-8", "replace")


def lookup(request: Request, index: int = 2) -> Any:
    stream = request.jsa.streams.get(stream_name(request, index))
    if stream is None:
        raise js_error("JSStreamNotFoundErr")
    return stream


def _paged(offset: int, total: int) -> int:
    return min(max(offset, 0), total)


# ------------------------------------------------------------------------------------------------


def account_info(api: Any, request: Request) -> dict[str, Any]:
    jsa = request.jsa
    out: dict[str, Any] = {
        "memory": jsa.usage(True),
        "storage": jsa.usage(False),
        "reserved_memory": jsa.reserved(True),
        "reserved_storage": jsa.reserved(False),
        "streams": len(jsa.streams),
        "consumers": sum(len(s.consumers) for s in jsa.streams.values()),
        "limits": {
            "max_memory": jsa.limit("max_memory"),
            "max_storage": jsa.limit("max_store"),
            "max_streams": jsa.limit("max_streams"),
            "max_consumers": jsa.limit("max_consumers"),
            "max_ack_pending": jsa.limit("max_ack_pending"),
            "memory_max_stream_bytes": -1,
            "storage_max_stream_bytes": -1,
            "max_bytes_required": bool(jsa.limit("max_bytes_required")),
        },
    }
    if jsa.domain:
        out["domain"] = jsa.domain
    out["api"] = {"level": 5, "total": jsa.api_total, "errors": jsa.api_errors}
    if jsa.tiered:
        # (the account-wide limits of a tiered account are all zero in nats-server's answer)
        out["limits"]["memory_max_stream_bytes"] = out["limits"]["storage_max_stream_bytes"] = 0
        out["tiers"] = {name: _tier_info(jsa, name, limits) for name, limits in jsa.limits.tiers}
    return out


def _tier_info(jsa: Any, name: str, limits: Any) -> dict[str, Any]:
    """One tier of a tiered account's info: its usage and limits (nats-server's JetStreamTier)."""
    replicas = int(name[1:]) if name[1:].isdigit() else 1
    streams = [s for s in jsa.streams.values() if max(1, s.config.num_replicas) == replicas]
    return {
        "memory": jsa.usage(True, replicas),
        "storage": jsa.usage(False, replicas),
        "reserved_memory": jsa.reserved(True, replicas),
        "reserved_storage": jsa.reserved(False, replicas),
        "streams": len(streams),
        "consumers": sum(len(s.consumers) for s in streams),
        "limits": {
            "max_memory": limits.max_memory,
            "max_storage": limits.max_store,
            "max_streams": limits.max_streams,
            "max_consumers": limits.max_consumers,
            "max_ack_pending": limits.max_ack_pending,
            "memory_max_stream_bytes": -1,
            "storage_max_stream_bytes": -1,
            "max_bytes_required": limits.max_bytes_required,
        },
    }


def _check_name_token(request: Request) -> None:
    token = request.tokens[2]
    if b"/" in token or b"\\" in token:
        raise js_error("JSStreamNameContainsPathSeparatorsErr")


def stream_create(api: Any, request: Request) -> dict[str, Any]:
    document = parse_json(request.body) if request.body.strip() else {}
    config = decode_stream_config_request(document)
    if config.name != stream_name(request):
        raise js_error("JSStreamMismatchErr")
    _check_name_token(request)
    stream, did_create = request.jsa.create_stream(config)
    out = stream.info()
    out["did_create"] = did_create
    return out


def stream_update(api: Any, request: Request) -> dict[str, Any]:
    document = parse_json(request.body) if request.body.strip() else {}
    config = decode_stream_config_request(document)
    jsa = request.jsa
    jsa.defaulted(config, config.pedantic)  # §4.3: validation comes before the name check
    if config.name != stream_name(request):
        raise js_error("JSStreamMismatchErr")
    stream = jsa.update_stream(config)
    return stream.info()


def stream_info(api: Any, request: Request) -> dict[str, Any]:
    document = optional_body(request.body)
    options = (
        decode(StreamInfoRequest, document, "JSApiStreamInfoRequest") if document is not None else StreamInfoRequest()
    )
    stream = lookup(request)
    subjects_filter = options.subjects_filter.encode() if options.subjects_filter else None
    state = stream.state(deleted_details=options.deleted_details, subjects_filter=subjects_filter)
    total = offset = limit = 0
    if state.subjects:
        total = len(state.subjects)
        limit = SUBJECTS_LIMIT
        offset = _paged(options.offset, total)
        if offset or total > SUBJECTS_LIMIT:
            keys = sorted(state.subjects)[offset : offset + SUBJECTS_LIMIT]
            state.subjects = {k: state.subjects[k] for k in keys}
    out: dict[str, Any] = {"total": total, "offset": offset, "limit": limit}
    out.update(stream.info(cluster=True, state=state))
    alternates = getattr(stream.replicated, "alternates", None) if stream.replicated is not None else None
    if alternates is not None:
        found = alternates()
        if found:  # a cluster: the stream and its mirrors, before `ts` as nats-server orders them
            ts = out.pop("ts")
            out["alternates"] = found
            out["ts"] = ts
    return out


def _filtered_streams(request: Request) -> tuple[list[Any], int]:
    document = optional_body(request.body)
    options = (
        decode(StreamNamesRequest, document, "JSApiStreamNamesRequest")
        if document is not None
        else StreamNamesRequest()
    )
    streams = sorted(request.jsa.streams.values(), key=lambda s: s.name.encode())
    if options.subject:
        wanted = options.subject.encode()
        kept = []
        for stream in streams:
            subjects = stream.config.subjects
            if subjects:
                if any(subjects_overlap(s.encode(), wanted) for s in subjects):
                    kept.append(stream)
            elif subject_matches(wanted, stream.name.encode()) or stream.name.encode() == wanted:
                kept.append(stream)
        streams = kept
    return streams, options.offset


def stream_names(api: Any, request: Request) -> dict[str, Any]:
    streams, offset = _filtered_streams(request)
    total = len(streams)
    offset = _paged(offset, total)
    page = [s.name for s in streams[offset : offset + NAMES_LIMIT]]
    return {"total": total, "offset": offset, "limit": NAMES_LIMIT, "streams": page or None}


def stream_list(api: Any, request: Request) -> dict[str, Any]:
    streams, offset = _filtered_streams(request)
    total = len(streams)
    offset = _paged(offset, total)
    page = [s.info(dynamic=False) for s in streams[offset : offset + LIST_LIMIT]]
    return {"total": total, "offset": offset, "limit": LIST_LIMIT, "streams": page}


def stream_delete(api: Any, request: Request) -> dict[str, Any]:
    require_empty(request.body)
    request.jsa.delete_stream(stream_name(request))
    return {"success": True}


def purge_command(stream: Any, body: bytes) -> PurgeMsgs:
    """STREAM.PURGE's checks in nats-server's order, and the command they allow (single node and
    cluster alike)."""
    document = optional_body(body)
    options = (
        decode(StreamPurgeRequest, document, "JSApiStreamPurgeRequest")
        if document is not None
        else StreamPurgeRequest()
    )
    if options.seq and options.keep:
        raise js_error("JSBadRequestErr")
    if stream.config.sealed:
        raise js_error("JSStreamSealedErr")
    if stream.config.deny_purge:
        raise js_error("JSStreamPurgeFailedF", err="stream purge not permitted")
    subject_filter = options.filter.encode() if options.filter and options.filter != ">" else None
    if subject_filter is not None and not valid_subject(subject_filter):
        raise js_error("JSStreamPurgeFailedF", err="invalid subject filter")
    return PurgeMsgs(subject_filter, seq=options.seq, keep=options.keep)


def stream_purge(api: Any, request: Request) -> dict[str, Any]:
    stream = lookup(request)
    return {"success": True, "purged": stream.execute(purge_command(stream, request.body))}


def stream_msg_get(api: Any, request: Request) -> dict[str, Any]:
    from jsedge.api.direct import find_message, parse_get_request

    body = request.body.strip()
    if not body:
        raise js_error("JSBadRequestErr")
    stream = lookup(request, 3)
    options = parse_get_request(parse_json(body), strict=True)
    if options is None or options.batch > 0 or options.max_bytes > 0:
        raise js_error("JSBadRequestErr")
    if not _valid_single_get(options):
        raise js_error("JSBadRequestErr")
    msg = find_message(stream, options)
    if msg is None:
        raise js_error("JSNoMessageFoundErr")
    message: dict[str, Any] = {"subject": msg.subject.decode("utf-8", "replace"), "seq": msg.seq}
    if msg.hdr and not options.no_hdr:
        message["hdrs"] = base64.b64encode(msg.hdr).decode()
    if msg.data:
        message["data"] = base64.b64encode(msg.data).decode()
    message["time"] = format_time_ns(msg.ts)
    return {"message": message}


def _valid_single_get(options: MsgGetRequest) -> bool:
    if options.seq and options.last_by_subj:
        return False
    if options.seq and options.has_start_time:
        return False
    if options.has_start_time and options.last_by_subj:
        return False
    if options.last_by_subj and options.next_by_subj:
        return False
    return bool(options.seq or options.last_by_subj or options.next_by_subj or options.has_start_time)


def msg_delete_command(stream: Any, body: bytes) -> DeleteMsg:
    """STREAM.MSG.DELETE's checks after the empty-body check and the stream lookup, and the command
    they allow (single node and cluster alike)."""
    options = decode(MsgDeleteRequest, parse_json(body), "JSApiMsgDeleteRequest")
    if options.seq == 0:
        raise js_error("JSBadRequestErr")
    if stream.config.sealed:
        raise js_error("JSStreamSealedErr")
    if stream.config.deny_delete:
        raise js_error("JSStreamMsgDeleteFailedF", err="message delete not permitted")
    return DeleteMsg(options.seq, erase=not options.no_erase)


def stream_msg_delete(api: Any, request: Request) -> dict[str, Any]:
    body = request.body.strip()
    if not body:
        raise js_error("JSBadRequestErr")
    stream = lookup(request, 3)
    command = msg_delete_command(stream, body)
    if not stream.execute(command):
        raise js_error("JSSequenceNotFoundErrF", seq=command.seq)
    return {"success": True}


def clustering_required(api: Any, request: Request) -> dict[str, Any]:
    raise js_error("JSClusterRequiredErr")


def register(api: Any) -> None:
    add = api.add
    zero_paged = (("total", 0), ("offset", 0), ("limit", 0))
    add(Endpoint((b"INFO",), 1, "account_info_response", account_info))
    add(Endpoint((b"STREAM", b"CREATE"), 3, "stream_create_response", stream_create))
    add(Endpoint((b"STREAM", b"UPDATE"), 3, "stream_update_response", stream_update))
    add(Endpoint((b"STREAM", b"INFO"), 3, "stream_info_response", stream_info, zero_paged))
    add(Endpoint((b"STREAM", b"NAMES"), 2, "stream_names_response", stream_names, (*zero_paged, ("streams", None))))
    add(Endpoint((b"STREAM", b"LIST"), 2, "stream_list_response", stream_list, (*zero_paged, ("streams", []))))
    add(Endpoint((b"STREAM", b"DELETE"), 3, "stream_delete_response", stream_delete))
    add(Endpoint((b"STREAM", b"PURGE"), 3, "stream_purge_response", stream_purge, (("purged", 0),)))
    add(Endpoint((b"STREAM", b"MSG", b"GET"), 4, "stream_msg_get_response", stream_msg_get, counted=False))
    add(Endpoint((b"STREAM", b"MSG", b"DELETE"), 4, "stream_msg_delete_response", stream_msg_delete))
    add(Endpoint((b"STREAM", b"LEADER", b"STEPDOWN"), 4, "stream_leader_stepdown_response", clustering_required))
    add(Endpoint((b"STREAM", b"PEER", b"REMOVE"), 4, "stream_remove_peer_response", clustering_required))
