"""Message lookups (layer 5): STREAM.MSG.GET's selection rules and DIRECT.GET (ADR-31).

DIRECT.GET replies are raw messages, not JSON: the stored header block plus `Nats-Stream`,
`Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp` (and `Nats-Num-Pending`, `Nats-Last-Sequence` in
batches), or a header-only status message (`NATS/1.0 404 Message Not Found`, `408 Bad Request`, ...).
The request body is decoded leniently (unknown keys ignored), unlike the JSON API.
"""

from __future__ import annotations

from typing import Any

from jsedge import gojson
from jsedge.errors import JSError
from jsedge.jetstream import headers as H
from jsedge.jetstream.models import MsgGetRequest, decode, format_time_ns
from jsedge.jetstream.streamconfig import API_LEVEL
from jsedge.store.base import StoredMsg

MULTI_LAST_MAX = 1024
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

STATUS_EMPTY = b"NATS/1.0 408 Empty Request\r\n\r\n"
STATUS_MALFORMED = b"NATS/1.0 408 Malformed Request\r\n\r\n"
STATUS_BAD = b"NATS/1.0 408 Bad Request\r\n\r\n"
STATUS_NOT_FOUND = b"NATS/1.0 404 Message Not Found\r\n\r\n"
STATUS_NO_RESULTS = b"NATS/1.0 404 No Results\r\n\r\n"
STATUS_TOO_MANY = b"NATS/1.0 413 Too Many Results\r\n\r\n"
STATUS_API_LEVEL = b"NATS/1.0 412 Required Api Level\r\n\r\n"

_SELECTORS = ("last_by_subj", "next_by_subj", "multi_last", "seq", "batch", "start_time", "up_to_seq", "up_to_time")
_KNOWN = {f for f in MsgGetRequest.__dataclass_fields__ if not f.startswith("has_")}


def parse_get_request(document: Any, *, strict: bool) -> MsgGetRequest | None:
    """MsgGetRequest from parsed JSON; strict (MSG.GET) raises 10025, lenient returns None if bad."""
    if not isinstance(document, dict):
        if strict:
            decode(MsgGetRequest, document, "JSApiMsgGetRequest")
        return None
    if not strict:
        document = {k: v for k, v in document.items() if k in _KNOWN}
    try:
        options = decode(MsgGetRequest, document, "JSApiMsgGetRequest")
    except JSError:
        if strict:
            raise
        return None
    options.has_start_time = document.get("start_time") is not None
    options.has_up_to_time = document.get("up_to_time") is not None
    return options


def seq_for_time(stream: Any, ts: int) -> int:
    """First sequence whose timestamp is >= ts (0 when none). Timestamps grow with sequences."""
    state = stream.store.state()
    if not state.messages:
        return 0
    low, high = state.first_seq, state.last_seq
    found = 0
    while low <= high:
        mid = (low + high) // 2
        msg = stream.store.load_next_msg(b">", mid)
        if msg is None:
            high = mid - 1
            continue
        if msg.ts >= ts:
            found = msg.seq
            high = mid - 1
        else:
            low = msg.seq + 1
    return found


def find_message(stream: Any, options: MsgGetRequest) -> StoredMsg | None:
    store = stream.store
    if options.last_by_subj:
        return store.load_last_msg(options.last_by_subj.encode())
    start = options.seq
    if options.has_start_time:
        start = seq_for_time(stream, options.start_time)
        if not start:
            return None
    if options.next_by_subj:
        return store.load_next_msg(options.next_by_subj.encode(), start)
    if options.has_start_time:
        return store.load_next_msg(b">", start)
    return store.load_msg(options.seq)


def _conflicts(options: MsgGetRequest) -> bool:
    seq, last, nxt = options.seq, options.last_by_subj, options.next_by_subj
    start, multi = options.has_start_time, bool(options.multi_last)
    return bool(
        (seq and last)
        or (seq and start)
        or (start and last)
        or (last and nxt)
        or (last and options.batch > 0)
        or (last and multi)
        or (nxt and multi)
        or (options.up_to_seq and options.has_up_to_time)
    )


def _message_headers(stream: Any, msg: StoredMsg, extra: list[tuple[bytes, bytes]]) -> bytes:
    """The stored headers plus Nats-Stream/-Subject/-Sequence/-Time-Stamp (and `extra`), built in
    one formatting step (a KV get pays this once per answer)."""
    head = msg.hdr[:-2] if msg.hdr else H.HDR_LINE
    out = b"%bNats-Stream: %b\r\nNats-Subject: %b\r\nNats-Sequence: %d\r\nNats-Time-Stamp: %b\r\n" % (
        head,
        stream.name.encode(),
        msg.subject,
        msg.seq,
        format_time_ns(msg.ts).encode(),
    )
    for name, value in extra:
        out += name + b": " + value + b"\r\n"
    return out + b"\r\n"


def direct_get(api: Any, stream: Any, subject: bytes, reply: bytes, hdr: bytes, body: bytes) -> None:
    if not reply:
        return
    server = api.server
    account = stream.account

    def status(line: bytes) -> None:
        server.send_internal(account, reply, b"", line, b"")

    level = H.get_header(hdr, H.REQUIRED_API_LEVEL)
    if level is not None and (not level.strip().isdigit() or int(level) > API_LEVEL):
        status(STATUS_API_LEVEL)
        return
    tokens = subject.split(b".")
    key = b".".join(tokens[5:]) if len(tokens) > 5 else b""
    stripped = body.strip()
    if key and not stripped:
        # the common form (a KV get): the last message of the subject in the request's subject,
        # no options: no JSON, no request object
        msg = stream.store.load_last_msg(key)
        if msg is None:
            status(STATUS_NOT_FOUND)
            return
        _send_msg(api, stream, reply, msg, False, [])
        return
    document: Any = None
    if stripped:
        try:
            document = gojson.loads(stripped)
        except ValueError:
            status(STATUS_MALFORMED)
            return
    if len(tokens) > 5:
        # form B: the key is the subject, the body may only carry non-selecting options
        if not key:
            status(STATUS_BAD)
            return
        options = parse_get_request(document if document is not None else {}, strict=False)
        if options is None:
            status(STATUS_MALFORMED)
            return
        if isinstance(document, dict) and any(document.get(name) for name in _SELECTORS):
            status(STATUS_BAD)
            return
        options.last_by_subj = key.decode("utf-8", "replace")
    else:
        if document is None:
            status(STATUS_EMPTY)
            return
        options = parse_get_request(document, strict=False)
        if options is None:
            status(STATUS_MALFORMED)
            return
        if not any(
            [options.seq, options.last_by_subj, options.next_by_subj, options.multi_last, options.has_start_time]
        ):
            status(STATUS_EMPTY)
            return
        if _conflicts(options):
            status(STATUS_BAD)
            return
    if options.multi_last:
        _multi_last(api, stream, reply, options)
        return
    if options.batch != 0:  # nats-server: any non-zero batch, even a negative one, is a batch request
        _batch(api, stream, reply, options)
        return
    msg = find_message(stream, options)
    if msg is None:
        status(STATUS_NOT_FOUND)
        return
    _send_msg(api, stream, reply, msg, options.no_hdr, [])


def _send_msg(
    api: Any, stream: Any, reply: bytes, msg: StoredMsg, no_hdr: bool, extra: list[tuple[bytes, bytes]]
) -> None:
    hdr = b"" if no_hdr else _message_headers(stream, msg, extra)
    api.server.send_internal(stream.account, reply, b"", hdr, msg.data)


def _batch(api: Any, stream: Any, reply: bytes, options: MsgGetRequest) -> None:
    store = stream.store
    subject_filter = options.next_by_subj.encode() if options.next_by_subj else b">"
    start = options.seq
    if options.has_start_time:
        start = seq_for_time(stream, options.start_time)
        if not start:
            api.server.send_internal(stream.account, reply, b"", STATUS_NOT_FOUND, b"")
            return
    start = max(start, 1)
    max_bytes = options.max_bytes if options.max_bytes > 0 else DEFAULT_MAX_BYTES
    pending = store.num_pending(start, subject_filter)
    if options.batch < 0:  # nats-server's loop runs zero times: only the end of batch
        api.server.send_internal(stream.account, reply, b"", _eob(pending, 0), b"")
        return
    last_sent = 0
    sent = 0
    size = 0
    seq = start
    while sent < options.batch:
        msg = store.load_next_msg(subject_filter, seq)
        if msg is None or (options.up_to_seq and msg.seq > options.up_to_seq):
            if sent == 0:
                api.server.send_internal(stream.account, reply, b"", STATUS_NOT_FOUND, b"")
                return
            break
        pending -= 1
        extra = [(b"Nats-Num-Pending", str(max(pending, 0)).encode()), (b"Nats-Last-Sequence", str(last_sent).encode())]
        _send_msg(api, stream, reply, msg, options.no_hdr, extra)
        last_sent = msg.seq
        sent += 1
        seq = msg.seq + 1
        size += len(msg.subject) + len(msg.hdr) + len(msg.data)
        if size >= max_bytes:
            break
    remaining = store.num_pending(last_sent + 1, subject_filter)
    api.server.send_internal(stream.account, reply, b"", _eob(remaining, last_sent), b"")


def _eob(pending: int, last_seq: int) -> bytes:
    return (
        b"NATS/1.0 204 EOB\r\nNats-Num-Pending: "
        + str(pending).encode()
        + b"\r\nNats-Last-Sequence: "
        + str(last_seq).encode()
        + b"\r\n\r\n"
    )


def _multi_last(api: Any, stream: Any, reply: bytes, options: MsgGetRequest) -> None:
    store = stream.store
    server = api.server
    state = store.state()
    up_to = options.up_to_seq or state.last_seq
    if options.has_up_to_time:
        first_after = seq_for_time(stream, options.up_to_time)
        up_to = (first_after - 1) if first_after else state.last_seq
        if up_to < state.first_seq:
            server.send_internal(stream.account, reply, b"", STATUS_NO_RESULTS, b"")
            return
    seqs: set[int] = set()
    subjects: set[bytes] = set()
    for subject_filter in options.multi_last or []:
        for subject, info in store.subjects_state(subject_filter.encode()).items():
            subjects.add(subject)
            if len(subjects) > MULTI_LAST_MAX:
                server.send_internal(stream.account, reply, b"", STATUS_TOO_MANY, b"")
                return
            last_seq = info.last_seq
            if last_seq > up_to:
                msg = store.load_last_msg(subject, up_to)
                if msg is None:
                    continue
                last_seq = msg.seq
            if last_seq >= options.seq:
                seqs.add(last_seq)
    ordered = sorted(seqs)
    if not ordered:
        server.send_internal(stream.account, reply, b"", STATUS_NO_RESULTS, b"")
        return
    if options.batch > 0:
        ordered_page = ordered[: options.batch]
    else:
        ordered_page = ordered
    max_bytes = options.max_bytes if options.max_bytes > 0 else DEFAULT_MAX_BYTES
    last_sent = 0
    size = 0
    sent = 0
    for index, seq in enumerate(ordered_page):
        msg = store.load_msg(seq)
        if msg is None:
            continue
        extra = [
            (b"Nats-Num-Pending", str(len(ordered) - index - 1).encode()),
            (b"Nats-Last-Sequence", str(last_sent).encode()),
        ]
        _send_msg(api, stream, reply, msg, options.no_hdr, extra)
        last_sent = seq
        sent = index + 1
        size += len(msg.subject) + len(msg.hdr) + len(msg.data)
        if size >= max_bytes:
            break
    eob = (
        b"NATS/1.0 204 EOB\r\nNats-Num-Pending: "
        + str(len(ordered) - sent).encode()
        + b"\r\nNats-Last-Sequence: "
        + str(last_sent).encode()
        + b"\r\nNats-UpTo-Sequence: "
        + str(up_to).encode()
        + b"\r\n\r\n"
    )
    server.send_internal(stream.account, reply, b"", eob, b"")


def register(api: Any) -> None:
    """DIRECT.GET is served by each stream's own queue subscription (see Stream._subscribe)."""
