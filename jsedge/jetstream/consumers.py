"""The consumers of a stream (layer 4): create (defaults, validation, nats-server's checks and
errors), attach, delete, stop and recover from disk. `consumer.py` is one consumer; this module is
what the API layer, the stream manager and the cluster call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from jsedge.errors import js_error
from jsedge.jetstream import advisory
from jsedge.jetstream.ackroute import ensure_account_subscriptions, subscribe_consumer
from jsedge.jetstream.consumer import Consumer
from jsedge.jetstream.consumerconfig import (
    check_config,
    check_update,
    set_defaults,
    set_static_metadata,
    strip_dynamic_metadata,
)
from jsedge.jetstream.models import ConsumerConfig, decode_consumer_config, encode, parse_time_ns
from jsedge.jetstream.retention import recheck_interest
from jsedge.subjects import subjects_overlap


def _wq_unique(stream: Any, name: str, filters: list[str]) -> bool:
    for other in stream.consumers.values():
        if other.name == name:
            continue
        if not other.filters:
            return False
        for mine in filters:
            if any(subjects_overlap(mine.encode(), theirs) for theirs in other.filters):
                return False
    return True


def _comparable(config: ConsumerConfig) -> dict[str, Any]:
    copy = config.copy()
    strip_dynamic_metadata(copy)
    copy.pause_until = 0
    return encode(copy)


def create_consumer(
    stream: Any,
    config: ConsumerConfig,
    action: str = "",
    *,
    now: Callable[[], int] | None = None,
    assigned_name: str = "",
    store: Any = None,
    created: int = 0,
    clustered: Any = None,
    pedantic: bool = False,
) -> Consumer:
    """addConsumerWithAction after the API layer's subject/name checks (jetstream-api.md §4.12, §8).
    `assigned_name`: the name a cluster's meta leader chose for an unnamed ephemeral consumer;
    `store`, `created`, `clustered`: a replicated consumer's store, creation time and group member
    (cluster/consumer.py)."""
    jsa = stream.host
    replicas = stream.config.num_replicas
    account_max_ack = jsa.limit("max_ack_pending", replicas) if hasattr(jsa, "limit") else -1
    if not isinstance(account_max_ack, int) or isinstance(account_max_ack, bool):
        account_max_ack = -1
    name = config.name or config.durable_name or assigned_name
    if len(name.encode()) > 255:
        raise js_error("JSConsumerNameTooLongErrF", max=255)
    set_defaults(config, stream.config, account_max_ack, pedantic)
    check_config(config, stream.config, account_max_ack)
    strip_dynamic_metadata(config)
    existing = stream.consumers.get(name) if name else None
    if existing is not None:
        if action == "create" and _comparable(config) != _comparable(existing.config):
            raise js_error("JSConsumerAlreadyExists")
        if stream.config.retention == "workqueue" and not _wq_unique(stream, name, config.filters()):
            raise js_error("JSConsumerWQConsumerNotUniqueErr")
        if _comparable(config) == _comparable(existing.config):
            return existing
        old = existing.config.copy()
        strip_dynamic_metadata(old)
        has_interest = bool(old.deliver_subject) and stream.account.sublist.has_interest(old.deliver_subject.encode())
        check_update(old, config, has_interest)
        existing.update(config)
        return existing
    if action == "update":
        raise js_error("JSConsumerDoesNotExist")
    max_consumers = stream.config.max_consumers
    if max_consumers > 0 and len(stream.consumers) >= max_consumers:
        raise js_error("JSMaximumConsumersLimitErr")
    account_max = jsa.limit("max_consumers", replicas) if hasattr(jsa, "limit") else -1
    if isinstance(account_max, int) and not isinstance(account_max, bool) and account_max > 0:
        tiered = getattr(jsa, "tiered", False)
        total = sum(
            len(s.consumers)
            for s in jsa.streams.values()
            if not tiered or max(1, s.config.num_replicas) == max(1, replicas)
        )
        if total >= account_max:
            raise js_error("JSMaximumConsumersLimitErr")
    if stream.config.retention == "workqueue" and not config.direct and not config.sourcing:
        if config.ack_policy not in ("explicit", "flow_control"):
            raise js_error("JSConsumerWQRequiresExplicitAckErr")
        if stream.consumers:
            filters = config.filters()
            if not filters:
                raise js_error("JSConsumerWQMultipleUnfilteredErr")
            if not _wq_unique(stream, name, filters):
                raise js_error("JSConsumerWQConsumerNotUniqueErr")
        if config.deliver_policy != "all":
            raise js_error("JSConsumerWQConsumerNotDeliverAllErr")
    if not name:
        # A generated name is not written into the config: nats-server 2.15 leaves `name` out of an
        # unnamed ephemeral consumer's config in every answer.
        while True:
            name = advisory.random_name(8)
            if name not in stream.consumers:
                break
    elif name != assigned_name or config.name or config.durable_name:
        config.name = name
    set_static_metadata(config)
    consumer = Consumer(
        stream,
        name,
        config,
        created or (now or time.time_ns)(),
        store if store is not None else _open_store(stream, name, config),
        now=now,
    )
    consumer.clustered = clustered
    consumer.set_start_position()
    consumer.save_config()
    consumer.store.update(consumer.state_snapshot())
    attach(stream, consumer)
    advisory.consumer_action(consumer, "create")
    if config.pause_until and config.pause_until > consumer.now():
        advisory.consumer_pause(consumer, True, config.pause_until)
    return consumer


def _open_store(stream: Any, name: str, config: ConsumerConfig) -> Any:
    """The consumer's state store: on disk with a file stream, ephemeral consumers included (they
    come back after a restart, on a cluster too, where the meta group brings them back, and go
    after their inactive threshold, as nats-server's do), in memory with `mem_storage`."""
    if config.mem_storage:
        from jsedge.store.memstore import MemConsumerStore

        return MemConsumerStore(name)
    return stream.store.consumer_store(name)


def attach(stream: Any, consumer: Consumer) -> None:
    stream.consumers[consumer.name] = consumer
    consumer.remove = lambda: delete_consumer(stream, consumer.name)
    jsa = stream.host
    if getattr(stream, "replicated", None) is not None or getattr(jsa.server, "leafnodes", None) is not None:
        # a cluster: the consumer runs on one server, and acks may be published on any; leaf
        # nodes: acks and flow-control replies may come across a link (a consumer used through
        # `$JS.<domain>.API`, the feed of another domain's source)
        consumer.routed_subs = subscribe_consumer(jsa, stream.name, consumer.name)
    else:
        ensure_account_subscriptions(jsa)
    consumer.start()


def delete_consumer(stream: Any, name: str) -> None:
    consumer = stream.consumers.pop(name, None)
    if consumer is None:
        raise js_error("JSConsumerNotFoundErr")
    replicated = getattr(stream, "replicated", None)
    if replicated is not None:
        replicated.consumer_gone(name)  # a cluster's meta group forgets it too
    consumer.stop(deleted=True)
    try:
        consumer.store.delete()
    except Exception:
        pass
    advisory.consumer_action(consumer, "delete")
    recheck_interest(stream)


def stop_consumers(stream: Any, *, deleted: bool) -> None:
    for consumer in list(stream.consumers.values()):
        consumer.stop(deleted=deleted)
        if deleted:
            advisory.consumer_action(consumer, "delete")
    if deleted:
        stream.consumers.clear()


def recover_consumers(stream: Any) -> None:
    """The consumers of a file stream (durable and ephemeral), from `<stream dir>/obs/<name>/`
    (config + state log)."""
    import os

    directory = getattr(stream.store, "_obs_dir", None)
    if directory is None or not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        try:
            store = stream.store.consumer_store(name)
            raw, state = store.load()
            if raw is None:
                store.delete()
                continue
            document = json.loads(raw)
            if document.get("group"):
                continue  # a replicated consumer: its Raft group runs it (cluster/consumer.py)
            config = decode_consumer_config(document["config"])
            created = parse_time_ns(document.get("created", "0001-01-01T00:00:00Z"))
            consumer = Consumer(stream, name, config, created, store)
            consumer.restore_state(state)
            attach(stream, consumer)
        except Exception as exc:
            stream.server.logger.error(f"  Error recreating consumer '{stream.name} > {name}': {exc}")


__all__ = [
    "attach",
    "create_consumer",
    "delete_consumer",
    "recover_consumers",
    "stop_consumers",
]
