"""Where acks and flow-control replies reach their consumer (layer 4): `$JS.ACK.<stream>.<consumer>…`
and `$JS.FC.<stream>.<consumer>…` messages are dispatched to `Consumer.process_ack` /
`process_flow_control`.

One server: one `$JS.ACK.>` and one `$JS.FC.>` subscription per account, kept to this server. A
cluster: each consumer subscribes its own two subjects where it runs (its group's leader), announced
to the routes, so an ack published on any server reaches it (as nats-server does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ACK_PREFIX = b"$JS.ACK."
FC_PREFIX = b"$JS.FC."


def _handlers(jsa: Any) -> tuple[Callable[..., None], Callable[..., None]]:
    """The callbacks for `$JS.ACK…` and `$JS.FC…` messages of an account's consumers."""
    server = jsa.server
    # (stream, consumer) names as they appear in ack subjects -> the consumer: acks come in runs for
    # one consumer, so the names are not decoded per ack. A consumer that was closed or replaced
    # (deleted, recreated, or its stream) is looked up again.
    recent: dict[tuple[bytes, bytes], Any] = {}

    def on_ack(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        body = bytes(msg[hdr_len:]) if hdr_len >= 0 else bytes(msg)
        tokens = subject.split(b".")
        if len(tokens) == 9:
            key, rest = (tokens[2], tokens[3]), tokens[4:7]
        elif len(tokens) >= 11:
            key, rest = (tokens[4], tokens[5]), tokens[6:9]
        else:
            return
        consumer = recent.get(key)
        if consumer is None or consumer.closed or not _current(jsa, consumer):
            consumer = _lookup(jsa, key[0], key[1])
            if consumer is not None:
                if len(recent) >= 64:
                    recent.clear()
                recent[key] = consumer
        if consumer is None or consumer.config.ack_policy in ("none", "flow_control"):
            # nats-server has no ack subscription for these (flow_control: the replies to flow
            # control ack): a request gets "no responders"
            if reply and src is not None and getattr(src, "no_responders", False):
                src.on_no_responders(subject, reply)
            return
        try:
            consumer.process_ack(rest, reply, body)
        except Exception:
            import traceback

            server.logger.error("JetStream ack processing failed:\n" + traceback.format_exc())

    def on_fc(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        tokens = subject.split(b".")
        if len(tokens) == 5:
            consumer = _lookup(jsa, tokens[2], tokens[3])
        elif len(tokens) >= 7:
            consumer = _lookup(jsa, tokens[4], tokens[5])
        else:
            return
        if consumer is not None:
            consumer.process_flow_control(subject, bytes(msg[:hdr_len]) if hdr_len > 0 else b"")

    return on_ack, on_fc


def ensure_account_subscriptions(jsa: Any) -> None:
    """A single server: one `$JS.ACK.>` and one `$JS.FC.>` subscription serve every consumer of the
    account (kept to this server)."""
    if getattr(jsa, "consumer_subs", None):
        return
    server = jsa.server
    account = jsa.account
    on_ack, on_fc = _handlers(jsa)
    jsa.consumer_subs = [
        server.subscribe_internal(account, b"$JS.ACK.>", on_ack, routed=False),
        server.subscribe_internal(account, b"$JS.FC.>", on_fc, routed=False),
    ]


def release_account_subscriptions(jsa: Any) -> None:
    for sub in getattr(jsa, "consumer_subs", None) or ():
        jsa.server.unsubscribe_internal(jsa.account, sub)
    jsa.consumer_subs = []


def _current(jsa: Any, consumer: Any) -> bool:
    """Is `consumer` still the one its account's stream has under its name?"""
    stream = consumer.stream
    return jsa.streams.get(stream.name) is stream and stream.consumers.get(consumer.name) is consumer


def _lookup(jsa: Any, stream_name: bytes, consumer_name: bytes) -> Any:
    stream = jsa.streams.get(stream_name.decode("utf-8", "replace"))
    if stream is None:
        return None
    return stream.consumers.get(consumer_name.decode("utf-8", "replace"))


def subscribe_consumer(jsa: Any, stream_name: str, consumer_name: str) -> list[Any]:
    """A cluster: this consumer's own routed `$JS.ACK` and `$JS.FC` subscriptions."""
    on_ack, on_fc = _handlers(jsa)
    server, account = jsa.server, jsa.account
    suffix = stream_name.encode() + b"." + consumer_name.encode() + b".>"
    return [
        server.subscribe_internal(account, ACK_PREFIX + suffix, on_ack, routed=True),
        server.subscribe_internal(account, FC_PREFIX + suffix, on_fc, routed=True),
    ]


__all__ = [
    "ACK_PREFIX",
    "FC_PREFIX",
    "ensure_account_subscriptions",
    "release_account_subscriptions",
    "subscribe_consumer",
]
