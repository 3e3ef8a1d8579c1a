"""Accounts (layer 2): isolated subject spaces, each with its own sublist and clients.

`$G` (the global account) and the system account (`$SYS` by default) always exist. Exports and
imports between accounts are not wired yet: the server logs that they are ignored.
"""

from __future__ import annotations

import time
from typing import Any

from jsedge.routing.sublist import Sublist


class Account:
    __slots__ = ("name", "sublist", "clients", "is_system", "created", "config")

    def __init__(self, name: str, *, cache: bool = True, is_system: bool = False, config: Any = None) -> None:
        self.name = name
        self.sublist = Sublist(cache)
        self.clients: set[Any] = set()
        self.is_system = is_system
        self.created = time.time()
        self.config = config

    def add_client(self, client: Any) -> None:
        self.clients.add(client)

    def remove_client(self, client: Any) -> None:
        self.clients.discard(client)

    def statistics(self) -> dict[str, Any]:
        return {"name": self.name, "connections": len(self.clients), "subscriptions": self.sublist.count}
