"""Type stub of the compiled parser twin; the reference (and contract) is jsedge/protocol/_parser_py.py."""

from typing import Any

from jsedge._speedups.sublist import ClientCore

KEYWORDS: dict[bytes, int]

class Parser:
    def __init__(
        self,
        core: ClientCore,
        handler: Any,
        max_control_line: int = 4096,
        route: bool = False,
        leaf_account: bytes | None = None,
    ) -> None: ...
    @property
    def closed(self) -> bool: ...
    def feed(self, data: bytes) -> None: ...
