"""Type stubs of the compiled segment codec twin (see jsedge/store/_codec_py.py for the format)."""

from array import array

TAG_BASE: int
KIND_MSG: int
KIND_MSG_TTL: int
KIND_SKIP: int
KIND_TOMBSTONE: int
KIND_ERASED: int
KIND_STATE: int
KIND_BLOB: int
KIND_MSG_REF: int
NUM_KINDS: int
MAX_BODY: int
MAX_VARINT: int
MAX_UVARINT: int
FIELDS: int
F_KIND: int
F_OFFSET: int
F_LEN: int
F_SEQ: int
F_TS: int
F_AUX: int
F_SUBJ_OFF: int
F_SUBJ_LEN: int
F_HDR_LEN: int
F_DATA_LEN: int

class CorruptRecordError(ValueError): ...

def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int: ...
def varint_len(value: int) -> int: ...
def encode_msg(
    out: bytearray,
    base_seq: int,
    base_ts: int,
    seq: int,
    ts: int,
    subject: bytes,
    hdr: bytes,
    data: bytes,
    ttl: int = 0,
) -> int: ...
def encode_msg_ref(
    out: bytearray,
    base_seq: int,
    base_ts: int,
    seq: int,
    ts: int,
    subject: bytes,
    hdr: bytes,
    data_len: int,
    file: int,
    offset: int,
    crc: int,
) -> int: ...
def decode_ref(ref: bytes) -> tuple[int, int, int, int]: ...
def encode_skip(out: bytearray, base_seq: int, base_ts: int, seq: int, ts: int) -> int: ...
def encode_tombstone(out: bytearray, seq: int) -> int: ...
def encode_state(out: bytearray, first_seq: int, last_seq: int, last_ts: int) -> int: ...
def encode_blob(out: bytearray, data: bytes) -> int: ...
def erased_record(rec_len: int, base_seq: int, seq: int) -> bytes: ...
def decode(
    buf: bytes | bytearray | memoryview, offset: int, base_seq: int, base_ts: int
) -> tuple[int, int, int, int, bytes, bytes, bytes, int]: ...
def scan(
    buf: bytes | bytearray | memoryview, base_seq: int, base_ts: int, start: int = 0
) -> tuple[array, list[tuple[int, int]], int]: ...
def index_sid(arr: array, value: int, lo: int, hi: int) -> int: ...
