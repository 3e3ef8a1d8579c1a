"""JetStream advisories and metrics (layer 4): `$JS.EVENT.ADVISORY.>` / `$JS.EVENT.METRIC.>` events.

Each event is `{"type", "id", "timestamp", <fields in nats-server's struct order>, "domain"?}`
(spec/jetstream-api.md §9). nats-server publishes delivery-related events (NAK, TERMINATED,
MAX_DELIVERIES, ack metrics) only when somebody listens; `publish(..., only_if_interest=True)` does
the same check against the account sublist. May import layer 0 and jetstream models.
"""

from __future__ import annotations

import os
import time
from typing import Any

from jsedge import gojson
from jsedge.jetstream.models import format_time_ns

ADVISORY_PREFIX = "$JS.EVENT.ADVISORY."
METRIC_PREFIX = "$JS.EVENT.METRIC."
TYPE_PREFIX = "io.nats.jetstream.advisory.v1."
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def random_name(size: int) -> str:
    """Base62 text of `size` characters (ephemeral consumer names are 8, event ids 22)."""
    raw = os.urandom(size)
    return "".join(_ALPHABET[b % 62] for b in raw)


def publish(
    server: Any,
    account: Any,
    subject: str,
    kind: str,
    fields: list[tuple[str, Any]],
    *,
    domain: str = "",
    only_if_interest: bool = False,
    type_name: str = "",
) -> None:
    subject_bytes = subject.encode()
    if only_if_interest and not account.sublist.has_interest(subject_bytes):
        return
    event: dict[str, Any] = {
        "type": type_name or TYPE_PREFIX + kind,
        "id": random_name(22),
        "timestamp": format_time_ns(time.time_ns()),
    }
    for key, value in fields:
        event[key] = value
    if domain:
        event["domain"] = domain
    server.send_internal(account, subject_bytes, b"", b"", gojson.dumpb(event))


def stream_action(stream: Any, action: str) -> None:
    """STREAM.CREATED / STREAM.UPDATED / STREAM.DELETED (`stream_action`: create, modify, delete)."""
    verb = {"create": "CREATED", "delete": "DELETED", "modify": "UPDATED"}[action]
    publish(
        stream.server,
        stream.account,
        f"{ADVISORY_PREFIX}STREAM.{verb}.{stream.name}",
        "stream_action",
        [("stream", stream.name), ("action", action)],
        domain=stream.host.domain,
    )


def leader_event(
    server: Any,
    account: Any,
    system_account: Any,
    subject: str,
    kind: str,
    fields: list[tuple[str, Any]],
    domain: str = "",
) -> None:
    """A clustered stream's or consumer's LEADER_ELECTED / QUORUM_LOST: to the asset's account, and
    to the system account with an `account` field (nats-server sends both)."""
    if account is not system_account:
        publish(server, account, subject, kind, fields, domain=domain, only_if_interest=True)
    if system_account is not None:
        publish(
            server,
            system_account,
            subject,
            kind,
            [("account", account.name), *fields],
            domain=domain,
            only_if_interest=True,
        )


def consumer_pin(consumer: Any, group: str, pin_id: str = "", reason: str = "") -> None:
    """CONSUMER.PINNED (`pin_id`) / CONSUMER.UNPINNED (`reason`: "timeout" or "admin")."""
    fields: list[tuple[str, Any]] = [
        ("account", consumer.account.name),
        ("stream", consumer.stream.name),
        ("consumer", consumer.name),
    ]
    if consumer.domain:
        fields.append(("domain", consumer.domain))
    fields.append(("group", group))
    fields.append(("pinned_id", pin_id) if pin_id else ("reason", reason))
    what = "PINNED" if pin_id else "UNPINNED"
    publish(
        consumer.server,
        consumer.account,
        f"{ADVISORY_PREFIX}CONSUMER.{what}.{consumer.stream.name}.{consumer.name}",
        "consumer_group_pinned" if pin_id else "consumer_group_unpinned",
        fields,
        only_if_interest=True,
    )


def consumer_action(consumer: Any, action: str) -> None:
    """CONSUMER.CREATED / CONSUMER.DELETED (`consumer_action`)."""
    verb = {"create": "CREATED", "delete": "DELETED", "modify": "UPDATED"}[action]
    publish(
        consumer.server,
        consumer.account,
        f"{ADVISORY_PREFIX}CONSUMER.{verb}.{consumer.stream.name}.{consumer.name}",
        "consumer_action",
        [("stream", consumer.stream.name), ("consumer", consumer.name), ("action", action)],
        domain=consumer.domain,
    )


def consumer_pause(consumer: Any, paused: bool, pause_until: int) -> None:
    publish(
        consumer.server,
        consumer.account,
        f"{ADVISORY_PREFIX}CONSUMER.PAUSE.{consumer.stream.name}.{consumer.name}",
        "consumer_pause",
        [
            ("stream", consumer.stream.name),
            ("consumer", consumer.name),
            ("paused", paused),
            ("pause_until", format_time_ns(pause_until)),
        ],
        domain=consumer.domain,
    )


def max_deliveries(consumer: Any, stream_seq: int, deliveries: int) -> None:
    publish(
        consumer.server,
        consumer.account,
        f"{ADVISORY_PREFIX}CONSUMER.MAX_DELIVERIES.{consumer.stream.name}.{consumer.name}",
        "max_deliver",
        [
            ("stream", consumer.stream.name),
            ("consumer", consumer.name),
            ("stream_seq", stream_seq),
            ("deliveries", deliveries),
        ],
        domain=consumer.domain,
        only_if_interest=True,
    )


def nak(consumer: Any, consumer_seq: int, stream_seq: int, deliveries: int) -> None:
    publish(
        consumer.server,
        consumer.account,
        f"{ADVISORY_PREFIX}CONSUMER.MSG_NAKED.{consumer.stream.name}.{consumer.name}",
        "nak",
        [
            ("stream", consumer.stream.name),
            ("consumer", consumer.name),
            ("consumer_seq", consumer_seq),
            ("stream_seq", stream_seq),
            ("deliveries", deliveries),
        ],
        domain=consumer.domain,
        only_if_interest=True,
    )


def terminated(consumer: Any, consumer_seq: int, stream_seq: int, deliveries: int, reason: str) -> None:
    fields: list[tuple[str, Any]] = [
        ("stream", consumer.stream.name),
        ("consumer", consumer.name),
        ("consumer_seq", consumer_seq),
        ("stream_seq", stream_seq),
        ("deliveries", deliveries),
    ]
    if reason:
        fields.append(("reason", reason))
    publish(
        consumer.server,
        consumer.account,
        f"{ADVISORY_PREFIX}CONSUMER.MSG_TERMINATED.{consumer.stream.name}.{consumer.name}",
        "terminated",
        fields,
        domain=consumer.domain,
        only_if_interest=True,
    )


def ack_metric(consumer: Any, consumer_seq: int, stream_seq: int, ack_time: int, deliveries: int) -> None:
    publish(
        consumer.server,
        consumer.account,
        f"{METRIC_PREFIX}CONSUMER.ACK.{consumer.stream.name}.{consumer.name}",
        "consumer_ack",
        [
            ("stream", consumer.stream.name),
            ("consumer", consumer.name),
            ("consumer_seq", consumer_seq),
            ("stream_seq", stream_seq),
            ("ack_time", ack_time),
            ("deliveries", deliveries),
        ],
        domain=consumer.domain,
        only_if_interest=True,
        type_name="io.nats.jetstream.metric.v1.consumer_ack",
    )
