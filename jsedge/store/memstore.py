"""In-memory stream store (layer 3), nats-server's memstore.

All rules (limits, purge, expiry, reads, state) live in `_core.IndexedStore`; this module only keeps
the header/payload bytes in a dict keyed by sequence (a memory store holds every message in RAM by
definition; the index itself stays in compact arrays). Accounting uses the memory formula of
streams.md §11: 16 + subject + headers + payload. `sync()` resolves at once.

Layer 3: imports jsedge.store.base/_core and the stdlib only.
"""

from __future__ import annotations

from collections.abc import Awaitable

from jsedge.store._core import IndexedStore, apply_ack, apply_delivered, copy_state, resolved
from jsedge.store.base import ConsumerState, StoreClosedError, StoreConfig, StoredMsg


class MemStore(IndexedStore):
    """StreamStore keeping messages in memory."""

    _OVERHEAD = 16
    _HDR_OVERHEAD = 16

    def __init__(self, config: StoreConfig) -> None:
        super().__init__(config)
        self._data: dict[int, tuple[bytes, bytes]] = {}
        self._consumers: dict[str, MemConsumerStore] = {}
        self._meta: bytes | None = None

    # ---- storage hooks
    def _write_msg(self, seq: int, ts: int, subject: bytes, hdr: bytes, data: bytes, ttl_ns: int) -> None:
        self._data[seq] = (hdr, data)

    def _write_skip(self, seq: int, ts: int) -> None:
        pass

    def _read(self, seq: int) -> StoredMsg | None:
        i = seq - self._base
        subject = self._sid_subject[self._sid[i]]
        hdr, data = self._data[seq]
        assert subject is not None
        return StoredMsg(subject, seq, self._ts[i], hdr, data)

    def _on_remove(self, seq: int, front: bool, erase: bool) -> None:
        del self._data[seq]

    def _on_purge_all(self) -> None:
        self._data.clear()

    def _on_bulk_front(self, new_first: int, moved_last: bool) -> None:
        pass

    # ---- lifecycle
    def save_meta(self, data: bytes) -> None:
        self._meta = bytes(data)

    def load_meta(self) -> bytes | None:
        return self._meta

    def sync(self) -> Awaitable[None]:
        return resolved()

    def consumer_store(self, name: str) -> MemConsumerStore:
        self._check_open()
        store = self._consumers.get(name)
        if store is None or store.deleted:
            store = self._consumers[name] = MemConsumerStore(name)
        return store

    def close(self) -> None:
        self._closed = True

    def delete(self) -> None:
        self.close()
        self._data.clear()
        self._consumers.clear()


class MemConsumerStore:
    """ConsumerStore held in memory (ephemeral consumers, `mem_storage:true`, memory streams)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.deleted = False
        self._config: bytes | None = None
        self._state = ConsumerState()

    def _check(self) -> None:
        if self.deleted:
            raise StoreClosedError(f"consumer store {self.name} deleted")

    def load(self) -> tuple[bytes | None, ConsumerState]:
        return self._config, copy_state(self._state)

    def save_config(self, config_json: bytes) -> None:
        self._check()
        self._config = bytes(config_json)

    def update(self, state: ConsumerState) -> None:
        self._check()
        self._state = copy_state(state)

    def update_delivered(self, consumer_seq: int, stream_seq: int, delivery_count: int, ts: int) -> None:
        self._check()
        apply_delivered(self._state, consumer_seq, stream_seq, delivery_count, ts)

    def update_acks(self, consumer_seq: int, stream_seq: int) -> None:
        self._check()
        apply_ack(self._state, consumer_seq, stream_seq)

    def state(self) -> ConsumerState:
        return copy_state(self._state)

    def sync_blocking(self) -> None:
        pass  # nothing to write: a memory consumer lives as long as the process

    def delete(self) -> None:
        self.deleted = True
