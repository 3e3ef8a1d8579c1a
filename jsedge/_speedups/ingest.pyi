"""Type stubs of the compiled plain-publish twin (see jsedge/jetstream/ingest.py)."""

from collections.abc import Callable
from typing import Any

def bind(
    encode_msg: Callable[..., int],
    encode_msg_ref: Callable[..., int],
    discard_new: Any,
    discard_old: Any,
    flush_at: int,
    msg_overhead: int,
    msg_hdr_overhead: int,
    fast_suffix: bytes,
) -> None: ...
def ingest_plain(stream: Any, subject: bytes, reply: bytes, data: Any) -> int: ...
def set_clock(clock: Callable[[], int] | None) -> None: ...
def apply_plain(stream: Any, command: Any) -> int: ...
