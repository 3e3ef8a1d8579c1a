"""nats-server's stream backup archive (layer 5): read and written, so backups move both ways.

`nats stream backup` saves what the server streams for `$JS.API.STREAM.SNAPSHOT`: nats-server
(2.10.26, 2.11.11, 2.14.6 and 2.15.1 alike, checked) sends an S2 stream (`jsedge.store.s2`) of its
storage-independent archive, and its restore accepts that archive from any server. jsedge writes the
same archive, so a jsedge backup restores into nats-server and a nats-server backup into jsedge.

The archive (nats-server's `server/archive` package) is the 8 bytes ``NATSARC1`` and then entries,
each ``uvarint(len(name)) varint(timestamp) uvarint(sequence) uvarint(header size) uvarint(payload
size) name`` followed by header size + payload size bytes (varint = zigzag, Go's encoding/binary),
in this order:

* `state.json` — the stream state as `STREAM.INFO` shows it (`messages`, `bytes`, `first_seq`,
  `first_ts`, `last_seq`, `last_ts`, `num_deleted`, `consumer_count`, ...). `consumer_count` says
  how many consumer entries follow. jsedge adds a `jsedge` object (the stream's creation time, its
  store metadata such as source cursors) that nats-server ignores.
* `consumer_count` entries named `consumers/<name>`: JSON `{"config": ConsumerConfig, "state":
  {"delivered": {"consumer_seq", "stream_seq"}, "ack_floor": {...}, "pending": {"<stream seq>":
  {"Sequence": consumer seq, "Timestamp": ns}}, "redelivered": {"<stream seq>": redeliveries}}}`.
* one entry per stored message in sequence order: name = subject, timestamp = its time (ns),
  sequence, header size = its header block, payload size = its data; gaps are deleted sequences.
* an end marker: an entry with every field zero (its absence means the backup was cut short).

The stream's config is not in the archive: it travels in the snapshot response and the restore
request (the nats CLI keeps it in `backup.json`).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from jsedge.jetstream.commands import svarint, uvarint
from jsedge.jetstream.models import format_time_ns
from jsedge.store.s2 import S2Reader

MAGIC = b"NATSARC1"
#: Longest entry name accepted (nats-server's bound).
MAX_NAME = 1 << 20


class NatsArchiveError(ValueError):
    """The archive is not a readable nats-server backup."""


# ------------------------------------------------------------------------------------------ write


def entry(name: bytes, timestamp: int, sequence: int, header: bytes, payload: bytes) -> bytes:
    """One archive entry: its head, then the header block and the payload (varints as Go's
    encoding/binary writes them: LEB128, zigzag for the signed timestamp)."""
    head = bytearray()
    uvarint(len(name), head)
    svarint(timestamp, head)
    uvarint(sequence, head)
    uvarint(len(header), head)
    uvarint(len(payload), head)
    return b"".join((head, name, header, payload))


END = entry(b"", 0, 0, b"", b"")


def consumer_json(config: dict[str, Any], state: Any) -> bytes:
    """A `consumers/<name>` entry's JSON from a consumer config document and a `ConsumerState`."""
    doc: dict[str, Any] = {
        "config": config,
        "state": {
            "delivered": {"consumer_seq": state.delivered.consumer_seq, "stream_seq": state.delivered.stream_seq},
            "ack_floor": {"consumer_seq": state.ack_floor.consumer_seq, "stream_seq": state.ack_floor.stream_seq},
        },
    }
    if state.pending:
        doc["state"]["pending"] = {
            str(seq): {"Sequence": p.consumer_seq, "Timestamp": p.timestamp} for seq, p in sorted(state.pending.items())
        }
    if state.redelivered:
        # nats-server counts redeliveries (deliveries - 1); jsedge's state holds deliveries
        doc["state"]["redelivered"] = {str(seq): n - 1 for seq, n in sorted(state.redelivered.items()) if n > 1}
    return json.dumps(doc, separators=(",", ":")).encode()


def jsedge_extras(created: str, meta: bytes | None) -> dict[str, Any]:
    """What jsedge keeps beside nats-server's state.json fields."""
    extras: dict[str, Any] = {"created": created}
    if meta:
        extras["meta"] = base64.b64encode(meta).decode()
    return extras


# ------------------------------------------------------------------------------------------- read


class _Entries:
    """The entries of an archive, read from a decoded byte stream."""

    def __init__(self, source: Any) -> None:
        self.source = source
        head = self._exact(len(MAGIC), allow_eof=True)
        if head != MAGIC:
            raise NatsArchiveError("not a nats-server backup archive")

    def _exact(self, n: int, *, allow_eof: bool = False) -> bytes:
        data = bytes(self.source.read(n))
        if len(data) != n and not (allow_eof and not data):
            raise NatsArchiveError("backup was truncated")
        return data

    def _uvarint(self) -> int:
        value = shift = 0
        while True:
            b = bytes(self.source.read(1))
            if not b:
                raise NatsArchiveError("backup was truncated")
            value |= (b[0] & 0x7F) << shift
            if b[0] < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise NatsArchiveError("invalid archive entry")

    def next(self) -> tuple[bytes, int, int, bytes, bytes]:
        """(name, timestamp, sequence, header block, payload)."""
        name_len = self._uvarint()
        raw = self._uvarint()
        timestamp = (raw >> 1) ^ -(raw & 1)
        sequence = self._uvarint()
        header_size = self._uvarint()
        payload_size = self._uvarint()
        if name_len > MAX_NAME or header_size + payload_size > 1 << 40:
            raise NatsArchiveError("invalid archive entry")
        name = self._exact(name_len)
        body = self._exact(header_size + payload_size)
        return name, timestamp, sequence, body[:header_size], body[header_size:]


def read_nats_archive(
    handle: BinaryIO, config: dict[str, Any] | None
) -> tuple[dict[str, Any], Iterator[tuple[int, int, bytes, bytes, bytes]], bytes | None, list[dict[str, Any]]]:
    """Read a backup archive (`handle` at the start of its S2 stream) into what
    `jsedge.api.snapshot` restores from: (stream document with `config` — the restore request's —
    and `state`, the messages in sequence order as (seq, ts, subject, header, payload), the store
    metadata jsedge saved, consumer documents). Messages are read lazily, as the restore applies
    them; an archive cut short fails there."""
    entries = _Entries(S2Reader(handle))
    name, ts, _seq, _hdr, body = entries.next()
    if name != b"state.json":
        raise NatsArchiveError("expected state.json first")
    try:
        state = json.loads(body)
    except ValueError as exc:
        raise NatsArchiveError(f"error in state.json: {exc}") from None
    if not isinstance(state, dict):
        raise NatsArchiveError("error in state.json")
    consumers: list[dict[str, Any]] = []
    for _ in range(int(state.get("consumer_count") or 0)):
        name, _ts, _seq, _hdr, body = entries.next()
        if not name.startswith(b"consumers/"):
            raise NatsArchiveError(f"expected consumer, found {name.decode('utf-8', 'replace')!r}")
        cname = name[len(b"consumers/") :].decode("utf-8", "replace")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise NatsArchiveError(f"failed to decode consumer {cname!r} state: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
            raise NatsArchiveError(f"consumer {cname!r} is missing config")
        raw = doc.get("state")
        if not isinstance(raw, dict):
            raise NatsArchiveError(f"consumer {cname!r} is missing state")
        # the consumer store's document: its config and creation time (not in the archive: now)
        stored = {"config": doc["config"], "created": format_time_ns(time.time_ns())}
        consumers.append({"name": cname, "config": json.dumps(stored), "state": _consumer_state(raw)})
    found = state.get("jsedge")
    extras: dict[str, Any] = found if isinstance(found, dict) else {}
    meta = base64.b64decode(extras["meta"]) if extras.get("meta") else None
    document = {
        "config": dict(config or {}),
        "created": extras.get("created") or "",
        "state": {
            "first_seq": int(state.get("first_seq") or 0),
            "last_seq": int(state.get("last_seq") or 0),
            "last_ts": 0,
        },
    }

    def messages() -> Iterator[tuple[int, int, bytes, bytes, bytes]]:
        while True:
            subject, timestamp, sequence, header, payload = entries.next()
            if sequence == 0:
                if subject or timestamp or header or payload:
                    raise NatsArchiveError("expected message sequence")
                return
            yield sequence, timestamp, subject, header, payload

    return document, messages(), meta, consumers


def _consumer_state(raw: dict[str, Any]) -> dict[str, Any]:
    """nats-server's consumer state JSON as jsedge's snapshot consumer document state."""

    def pair(doc: Any) -> list[int]:
        doc = doc if isinstance(doc, dict) else {}
        return [int(doc.get("consumer_seq") or 0), int(doc.get("stream_seq") or 0)]

    pending = {}
    for seq, p in (raw.get("pending") or {}).items():
        p = p if isinstance(p, dict) else {}
        pending[str(int(seq))] = [int(p.get("Sequence") or 0), int(p.get("Timestamp") or 0)]
    # nats-server counts redeliveries; jsedge's consumer state holds deliveries
    redelivered = {str(int(seq)): int(n) + 1 for seq, n in (raw.get("redelivered") or {}).items()}
    return {
        "delivered": pair(raw.get("delivered")),
        "ack_floor": pair(raw.get("ack_floor")),
        "pending": pending,
        "redelivered": redelivered,
    }


__all__ = ["END", "MAGIC", "NatsArchiveError", "consumer_json", "entry", "jsedge_extras", "read_nats_archive"]
