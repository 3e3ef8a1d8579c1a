"""NATS header blocks as JetStream reads them (layer 4).

nats-server's `sliceHeader`: names match case-sensitively, the first occurrence wins and leading
spaces of the value are skipped. Blocks are raw `NATS/1.0[ status]\\r\\nName: value\\r\\n...\\r\\n\\r\\n`.
Also Go-style duration parsing/formatting for `Nats-TTL`. Imports layer 0 only (`jsedge.goparse`).
"""

from __future__ import annotations

from jsedge.goparse import parse_duration_ns, parse_int64

HDR_LINE = b"NATS/1.0\r\n"
EMPTY_BLOCK = b"NATS/1.0\r\n\r\n"

MSG_ID = b"Nats-Msg-Id"
EXPECTED_STREAM = b"Nats-Expected-Stream"
EXPECTED_LAST_SEQ = b"Nats-Expected-Last-Sequence"
EXPECTED_LAST_SUBJ_SEQ = b"Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJ_SEQ_SUBJ = b"Nats-Expected-Last-Subject-Sequence-Subject"
EXPECTED_LAST_MSG_ID = b"Nats-Expected-Last-Msg-Id"
ROLLUP = b"Nats-Rollup"
TTL = b"Nats-TTL"
MARKER_REASON = b"Nats-Marker-Reason"
STREAM_SOURCE = b"Nats-Stream-Source"
REQUEST_INFO = b"Nats-Request-Info"
REQUIRED_API_LEVEL = b"Nats-Required-Api-Level"
INCR = b"Nats-Incr"
COUNTER_SOURCES = b"Nats-Counter-Sources"
BATCH_ID = b"Nats-Batch-Id"
SCHEDULE = b"Nats-Schedule"
SCHEDULE_TIME_ZONE = b"Nats-Schedule-Time-Zone"
SCHEDULER = b"Nats-Scheduler"
SCHEDULE_NEXT = b"Nats-Schedule-Next"
#: The reply suffix of a fast batch publish (`<prefix>.<uuid>.<flow>.<gap>.<seq>.<op>.$FI`).
FAST_BATCH_SUFFIX = b".$FI"


def get_header(hdr: bytes, name: bytes) -> bytes | None:
    """Value of the first `name:` header (exact case), leading spaces skipped; None when absent."""
    if not hdr:
        return None
    key = b"\r\n" + name + b":"
    index = hdr.find(key)
    if index < 0:
        return None
    start = index + len(key)
    end = hdr.find(b"\r\n", start)
    if end < 0:
        end = len(hdr)
    return hdr[start:end].lstrip(b" ")


def remove_header(hdr: bytes, name: bytes) -> bytes:
    """The block without every `name:` line."""
    key = b"\r\n" + name + b":"
    while True:
        index = hdr.find(key)
        if index < 0:
            return hdr
        end = hdr.find(b"\r\n", index + 2)
        hdr = hdr[:index] + hdr[end:]


def set_header(hdr: bytes, name: bytes, value: bytes) -> bytes:
    """The first `name:` line's value replaced in place (one space after the colon kept, as
    nats-server's setHeader does), or the line appended when there is none."""
    key = b"\r\n" + name + b":"
    index = hdr.find(key) if hdr else -1
    if index < 0:
        return append_headers(hdr, [(name, value)])
    start = index + len(key)
    if hdr[start : start + 1] == b" ":
        start += 1
    end = hdr.find(b"\r", start)
    if end < 0:
        return hdr  # malformed: left alone, as nats-server does
    return hdr[:start] + value + hdr[end:]


def append_headers(hdr: bytes, pairs: list[tuple[bytes, bytes]]) -> bytes:
    """Append `Name: value` lines at the end of the block (creating one if needed)."""
    base = hdr[:-2] if hdr else HDR_LINE
    return base + b"".join(name + b": " + value + b"\r\n" for name, value in pairs) + b"\r\n"


def clean_inbound(hdr: bytes) -> bytes:
    """What is stored: no `Nats-Request-Info`, no status on the first line; a block that this
    leaves empty means "no headers" (a block that arrived empty is kept, as nats-server keeps it)."""
    if not hdr:
        return hdr
    if not hdr.startswith(HDR_LINE):
        end = hdr.find(b"\r\n")
        hdr = HDR_LINE + hdr[end + 2 :]
        if hdr == EMPTY_BLOCK:
            return b""
    if b"\r\n" + REQUEST_INFO + b":" in hdr:
        hdr = remove_header(hdr, REQUEST_INFO)
        if hdr == EMPTY_BLOCK:
            return b""
    return hdr


def parse_go_duration(text: str) -> int:
    """Go's `time.ParseDuration` (ns); ValueError when invalid or out of int64 range."""
    return parse_duration_ns(text)


def format_go_duration(ns: int) -> str:
    """Go's `Duration.String()` for whole seconds and above (`3s`, `1m0s`, `1h0m0s`), ms otherwise."""
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:g}ms" if ns else "0s"
    seconds, frac = divmod(ns, 1_000_000_000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = str(secs) + (("." + f"{frac:09d}".rstrip("0")) if frac else "") + "s"
    if hours:
        return f"{hours}h{minutes}m{sec_text}"
    if minutes:
        return f"{minutes}m{sec_text}"
    return sec_text


def stored_ttl(hdr: bytes) -> int:
    """The TTL a copied or restored message keeps: its `Nats-TTL` parsed, 0 when absent or
    unparsable (nats-server's `ttl, _ := getMessageTTL(hdr)`)."""
    value = get_header(hdr, TTL) if hdr else None
    if value is None:
        return 0
    try:
        return parse_ttl(value)
    except ValueError:
        return 0


def parse_ttl(value: bytes) -> int:
    """`Nats-TTL` as nats-server's `parseMessageTTL`: seconds, -1 for `never`, 0 for no TTL (`00`
    parses so); ValueError (10165) for durations under a second, negative or unparsable values."""
    text = value.decode("utf-8", "replace")
    if text.lower() == "never":
        return -1
    try:
        ns = parse_duration_ns(text)
    except ValueError:
        seconds = parse_int64(value)
        if seconds < 0:
            raise ValueError("invalid TTL") from None
        return seconds
    if ns < 1_000_000_000:
        raise ValueError("invalid TTL")
    return ns // 1_000_000_000


def header_int(value: bytes) -> int:
    """An `Nats-Expected-*` sequence as nats-server reads it: `uint64(parseInt64(v))`, so garbage is
    2**64-1 and overflow wraps."""
    return parse_int64(value) % (1 << 64)
