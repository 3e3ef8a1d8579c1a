"""Retention across the consumers of a stream (layer 4, streams.md §7): an interest or work-queue
stream drops a message once no consumer needs it any more. Works on the consumers' `matches_subject`
/ `needs_ack`, so it imports no consumer code.

The consumers asked are the ones running here (`stream.consumers`) and, on a cluster, views of the
others that the stream's replica supplies (`stream.replicated.consumer_views()`): a replicated
consumer led elsewhere answers from this server's replica of its state (which may lag: it then
says "needed", and the message stays until a later check), one with no state here always says
"needed". So a message is never dropped while some consumer still needs it.
"""

from __future__ import annotations

from typing import Any

from jsedge.jetstream.commands import DeleteMsg


def consumers_of(stream: Any) -> list[Any]:
    """Everything that may need a message of `stream`: its consumers here, and views of the
    consumers that run elsewhere (a cluster)."""
    out = list(stream.consumers.values())
    views = getattr(stream.replicated, "consumer_views", None) if stream.replicated is not None else None
    if views is not None:
        out += views()
    return out


def check_message_retention(stream: Any, seq: int, subject: bytes | None, consumers: list[Any] | None = None) -> None:
    """Remove `seq` from an interest/workqueue stream once no consumer needs it. `consumers`:
    `consumers_of(stream)` when the caller checks many messages at once."""
    retention = stream.config.retention
    if retention == "limits":
        return
    if retention == "interest":
        if subject is None:
            msg = stream.store.load_msg(seq)
            if msg is None:
                return
            subject = msg.subject
        for consumer in consumers if consumers is not None else consumers_of(stream):
            if consumer.matches_subject(subject) and consumer.needs_ack(seq):
                return
    _remove(stream, seq)


def _remove(stream: Any, seq: int) -> None:
    """Delete `seq`. A replicated stream answers with a future (the delete is proposed or
    forwarded to its leader); one that fails is not retried here: the consumer leader's sweep
    asks again (cluster/consumer.py)."""
    result = stream.execute(DeleteMsg(seq, erase=False))
    add_done_callback = getattr(result, "add_done_callback", None)
    if add_done_callback is not None:
        add_done_callback(_retrieve)


def _retrieve(fut: Any) -> None:
    if not fut.cancelled():
        fut.exception()


def recheck_interest(stream: Any) -> None:
    """After a consumer left an interest stream: drop every message nobody wants any more."""
    if stream.config.retention != "interest":
        return
    store = stream.store
    seq = store.state().first_seq
    removable: list[int] = []
    consumers = consumers_of(stream)
    while True:
        msg = store.load_next_msg(b">", seq)
        if msg is None:
            break
        if not any(c.matches_subject(msg.subject) and c.needs_ack(msg.seq) for c in consumers):
            removable.append(msg.seq)
        seq = msg.seq + 1
    for seq in removable:
        _remove(stream, seq)


__all__ = ["check_message_retention", "consumers_of", "recheck_interest"]
