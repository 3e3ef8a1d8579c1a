"""Fixtures for the store tests: a factory opening memstores and filestores on real files."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jsedge.store.base import StorageType, StoreConfig
from jsedge.store.memstore import MemStore

try:  # the file store lands after the memstore; the contract suite picks it up once it exists
    from jsedge.store.filestore import FileStore
except ImportError:  # pragma: no cover - only during bring-up
    FileStore = None  # type: ignore[assignment,misc]

#: "file-s2": the file store with `compression: s2` (4 KiB blocks: most blocks are compressed)
KINDS = ["memory", "file", "file-s2"] if FileStore is not None else ["memory"]


class StoreFactory:
    """`open(**config_fields)` -> a fresh store of the parametrized kind; closed at teardown."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        self.stores: list[Any] = []

    def config(self, **fields: Any) -> StoreConfig:
        fields.setdefault("name", "S")
        fields.setdefault("storage", StorageType.MEMORY if self.kind == "memory" else StorageType.FILE)
        return StoreConfig(**fields)

    def open(self, _name: str = "S", **fields: Any) -> Any:
        config = self.config(name=_name, **fields)
        if self.kind == "memory":
            store: Any = MemStore(config)
        elif self.kind == "file-s2":
            store = FileStore(self.directory / _name, dataclasses.replace(config, compression="s2"), block_size=4096)
        else:
            store = FileStore(self.directory / _name, config, block_size=4096)
        self.stores.append(store)
        return store

    def reopen(self, store: Any, **kwargs: Any) -> Any:
        """Close (file store: then open the same directory again); memory stores return themselves."""
        if self.kind == "memory":
            return store
        store.close()
        new = FileStore(store.directory, store.config, block_size=4096, **kwargs)
        self.stores.append(new)
        return new

    def close(self) -> None:
        for store in self.stores:
            try:
                store.close()
            except Exception:
                pass


@pytest.fixture(params=KINDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(request.param, tmp_path)
    yield factory
    factory.close()


@pytest.fixture
def clock() -> Callable[[], int]:
    """A deterministic nanosecond clock: each call returns 1 ms more than the last."""
    state = {"now": 1_700_000_000_000_000_000}

    def tick() -> int:
        state["now"] += 1_000_000
        return state["now"]

    return tick
