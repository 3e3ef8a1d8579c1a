"""Segment record codec: the selector (layer 3). Import the codec from here only.

The on-disk record format is documented at the top of the reference twin, `_codec_py.py`. This module
exports the twin chosen by `jsedge._ext.load("codec")` — the compiled `jsedge._speedups.codec` unless
JSEDGE_NO_EXTENSIONS is set (or it failed to import, which `_ext` records loudly) — under the plain
names, plus both twins explicitly: `py_impl` (always) and `c_impl` (None when not loaded). The codec
is independent of the parser/sublist pair, so mixing is harmless, but `_ext` switches all together.
"""

from __future__ import annotations

from types import ModuleType

from jsedge import _ext
from jsedge.store import _codec_py as py_impl

c_impl: ModuleType | None = _ext.load("codec")

_impl: ModuleType = c_impl if c_impl is not None else py_impl

#: "c" or "py": the twin in use.
IMPLEMENTATION: str = "c" if c_impl is not None else "py"

# Format constants are identical in both twins; take them from the reference.
TAG_BASE = py_impl.TAG_BASE
KIND_MSG = py_impl.KIND_MSG
KIND_MSG_TTL = py_impl.KIND_MSG_TTL
KIND_SKIP = py_impl.KIND_SKIP
KIND_TOMBSTONE = py_impl.KIND_TOMBSTONE
KIND_ERASED = py_impl.KIND_ERASED
KIND_STATE = py_impl.KIND_STATE
KIND_BLOB = py_impl.KIND_BLOB
KIND_MSG_REF = py_impl.KIND_MSG_REF
MAX_BODY = py_impl.MAX_BODY
FIELDS = py_impl.FIELDS
F_KIND = py_impl.F_KIND
F_OFFSET = py_impl.F_OFFSET
F_LEN = py_impl.F_LEN
F_SEQ = py_impl.F_SEQ
F_TS = py_impl.F_TS
F_AUX = py_impl.F_AUX
F_SUBJ_OFF = py_impl.F_SUBJ_OFF
F_SUBJ_LEN = py_impl.F_SUBJ_LEN
F_HDR_LEN = py_impl.F_HDR_LEN
F_DATA_LEN = py_impl.F_DATA_LEN

#: Raised by `decode` of either twin (the compiled twin's class is a different object: catch both).
CorruptRecordError: tuple[type[ValueError], ...] = (
    (py_impl.CorruptRecordError,) if c_impl is None else (py_impl.CorruptRecordError, c_impl.CorruptRecordError)
)

crc32 = _impl.crc32
encode_msg = _impl.encode_msg
encode_msg_ref = _impl.encode_msg_ref
decode_ref = _impl.decode_ref
encode_skip = _impl.encode_skip
encode_tombstone = _impl.encode_tombstone
encode_state = _impl.encode_state
encode_blob = _impl.encode_blob
erased_record = _impl.erased_record
decode = _impl.decode
scan = _impl.scan
index_sid = _impl.index_sid

__all__ = [
    "IMPLEMENTATION",
    "py_impl",
    "c_impl",
    "CorruptRecordError",
    "crc32",
    "encode_msg",
    "encode_msg_ref",
    "decode_ref",
    "encode_skip",
    "encode_tombstone",
    "encode_state",
    "encode_blob",
    "erased_record",
    "decode",
    "scan",
    "index_sid",
]
