"""What the `$JS.API` dispatcher and its handler modules share (layer 5): `Request`, `Endpoint`,
`Handler` and the response `TYPE_PREFIX`.

Why a module of its own: the dispatcher (`dispatcher.py`) registers the handler modules (`streams`,
`direct`, `snapshot`, `consumers`), and every handler needs the request and endpoint types. While
those types lived in the dispatcher, the two sides imported each other (a cycle, hidden by a
function-level import in `JetStreamAPI.__init__`). Now both sides import this module and nothing
imports back: `dispatcher -> handlers -> request`. The `acyclic_siblings` and "api: dispatcher above
handlers above request" contracts in pyproject.toml (`lint-imports`) keep it that way.

May import layer 0 only: it holds plain data types and must stay a leaf of the api package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

#: Prefix of every API response's `type` field.
TYPE_PREFIX = "io.nats.jetstream.api.v1."


@dataclass(slots=True)
class Request:
    """One API request as handlers see it."""

    jsa: Any  # AccountJetStream (layer 4, passed in: no import needed)
    tokens: list[bytes]  # tokens after `$JS.API.`
    subject: bytes
    reply: bytes
    hdr: bytes
    body: bytes
    src: Any
    #: Headers to send with the answer (b"" = none): a sourcing consumer's create answer carries
    #: the stream's identity (`Nats-Stream-Identity`), as nats-server's.
    response_hdr: bytes = b""


#: A handler gets the dispatcher (`JetStreamAPI`, passed as Any so this module imports nothing of
#: it) and the request, and returns the response payload without `type`, or None when it answered
#: itself or must stay silent (MSG.NEXT, SNAPSHOT, RESTORE); it raises `JSError` for an error reply.
Handler: TypeAlias = Callable[[Any, Request], dict[str, Any] | None]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A handler for a fixed token shape. `arity` = number of tokens after `$JS.API.` (-1 = any ≥ len)."""

    prefix: tuple[bytes, ...]
    arity: int
    response: str
    handler: Handler
    error_fields: tuple[tuple[str, Any], ...] = ()
    counted: bool = True


__all__ = ["TYPE_PREFIX", "Endpoint", "Handler", "Request"]
