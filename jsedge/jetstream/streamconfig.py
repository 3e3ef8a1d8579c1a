"""Stream config defaulting, validation and update rules (layer 4), in nats-server's order.

`check_stream_config` is nats-server's `checkStreamCfg` (spec/jetstream-api.md §6): the first failing
rule wins and most failures are 500/10052 with a free-text reason. `check_update` adds the §7 update
rules. Both work on a copy; the caller's config is never mutated. Imports layer 0 and jetstream models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from jsedge.errors import JSError, js_error
from jsedge.jetstream.models import NS, ConsumerLimits, RePublish, StreamConfig, StreamSource
from jsedge.jetstream.models import SubjectTransform as SubjectTransformConfig
from jsedge.subjects import is_literal, subject_is_subset, subjects_overlap, valid_subject
from jsedge.transform import SubjectTransform, TransformError

API_LEVEL = 5
SERVER_VERSION = "2.15.1"
DEFAULT_DUPLICATE_WINDOW = 120 * NS
MIN_WINDOW = NS // 10  # 100 ms
MAX_NAME_LEN = 255
MAX_DESCRIPTION_LEN = 4096
MAX_METADATA_LEN = 128 * 1024
_BAD_NAME_CHARS = set(" \t\r\n\f.*>\\/")


def invalid(reason: str) -> JSError:
    return js_error("JSStreamInvalidConfigF", err=reason)


def valid_stream_name(name: str) -> bool:
    return bool(name) and not any(ch in _BAD_NAME_CHARS for ch in name)


def _durable_source_ok(source: StreamSource) -> bool:
    """A mirror or source fed by the user's durable (ADR-60): a valid consumer name, one literal
    deliver subject, and no start or filter of its own (the durable's config says those)."""
    consumer = source.consumer
    assert consumer is not None
    deliver = consumer.deliver_subject.encode()
    if not valid_stream_name(consumer.name) or not is_literal(deliver) or not valid_subject(deliver):
        return False
    return not (source.opt_start_seq or source.opt_start_time or source.filter_subject)


def required_api_level(config: StreamConfig) -> int:
    if config.allow_batched:
        return 4
    if config.allow_msg_counter or config.allow_atomic or config.allow_msg_schedules or config.persist_mode == "async":
        return 2
    if config.allow_msg_ttl or config.subject_delete_marker_ttl > 0:
        return 1
    return 0


def set_static_metadata(config: StreamConfig) -> None:
    """Store `_nats.req.level`, drop dynamic keys (they are added to responses only)."""
    metadata = dict(config.metadata or {})
    for key in ("_nats.ver", "_nats.level"):
        metadata.pop(key, None)
    metadata["_nats.req.level"] = str(required_api_level(config))
    config.metadata = metadata


def with_dynamic_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    out = dict(metadata or {})
    out["_nats.level"] = str(API_LEVEL)
    out["_nats.ver"] = SERVER_VERSION
    return dict(sorted(out.items()))


def _pedantic_limit(config: StreamConfig, name: str, pedantic: bool) -> None:
    value = getattr(config, name)
    if value == 0 or value < -1:
        if pedantic and value < -1:
            raise js_error("JSPedanticErrF", err=f"{name} must be set to -1")
        setattr(config, name, -1)


def check_stream_config(
    original: StreamConfig,
    *,
    pedantic: bool = False,
    max_duplicate_window: int = 0,
    other_streams: Iterable[StreamConfig] = (),
) -> StreamConfig:
    """Defaulted and validated copy of `original` (raises JSError)."""
    config = dataclasses.replace(original)
    config.metadata = dict(original.metadata) if original.metadata else None
    config.subjects = list(original.subjects) if original.subjects else None
    # 1. names and sizes
    if not valid_stream_name(config.name):
        raise invalid("stream name is required and can not contain '.', '*', '>', '\\', '/'")
    if len(config.name.encode()) > MAX_NAME_LEN:
        raise invalid(f"stream name is too long, maximum allowed is {MAX_NAME_LEN}")
    if len(config.description.encode()) > MAX_DESCRIPTION_LEN:
        raise invalid(f"stream description is too long, maximum allowed is {MAX_DESCRIPTION_LEN}")
    if config.metadata and sum(len(k) + len(v) for k, v in config.metadata.items()) > MAX_METADATA_LEN:
        raise invalid(f"stream metadata exceeds maximum size of {MAX_METADATA_LEN} bytes")
    # 3. storage / replicas
    if config.num_replicas == 0:
        config.num_replicas = 1
    if config.num_replicas > 5:
        raise invalid("maximum replicas is 5")
    if config.num_replicas < 0:
        raise js_error("JSReplicasCountCannotBeNegative")
    # 4. limits
    for name in ("max_msgs", "max_msgs_per_subject", "max_bytes", "max_msg_size", "max_consumers"):
        _pedantic_limit(config, name, pedantic)
    # 5. max age
    if config.max_age < 0:
        raise invalid("max age can not be negative")
    if 0 < config.max_age < MIN_WINDOW:
        raise invalid("max age needs to be >= 100ms")
    # 6. duplicate window
    if config.duplicate_window == 0 and config.mirror is None and not config.sources:
        window = DEFAULT_DUPLICATE_WINDOW
        if max_duplicate_window and window > max_duplicate_window:
            window = max_duplicate_window
        if config.max_age and config.max_age < window:
            window = config.max_age
        config.duplicate_window = window
    if config.duplicate_window < 0:
        raise invalid("duplicates window can not be negative")
    if config.max_age and config.duplicate_window > config.max_age:
        raise invalid("duplicates window can not be larger then max age")
    if max_duplicate_window and config.duplicate_window > max_duplicate_window:
        raise invalid(f"duplicates window can not be larger then server limit of {max_duplicate_window // NS}s")
    if 0 < config.duplicate_window < MIN_WINDOW:
        raise invalid("duplicates window needs to be >= 100ms")
    # 7. rollups need purge
    if config.deny_purge and config.allow_rollup_hdrs:
        raise invalid("roll-ups require the purge permission")
    # 8. counters
    if config.allow_msg_counter:
        if config.discard == "new":
            raise invalid("counter stream cannot use discard new")
        if config.allow_msg_ttl:
            raise invalid("counter stream cannot use message TTLs")
        if config.allow_msg_schedules:
            raise invalid("counter stream cannot use message schedules")
        if config.retention != "limits":
            raise invalid("counter stream can only use limits retention")
    # 9. discard new per subject
    if config.discard_new_per_subject:
        if config.discard != "new":
            raise invalid("discard new per subject requires discard new policy to be set")
        if config.max_msgs_per_subject <= 0:
            raise invalid("discard new per subject requires max msgs per subject > 0")
    # 10. subject delete markers
    if config.subject_delete_marker_ttl:
        if config.subject_delete_marker_ttl < 0:
            raise invalid("subject delete marker TTL must not be negative")
        if config.mirror is not None:
            raise invalid("subject delete markers forbidden on mirrors")
        if config.subject_delete_marker_ttl < NS:
            raise invalid("subject delete marker TTL must be at least 1 second")
        if pedantic:  # (nats-server 2.15.1 answers these as invalid config, not as pedantic errors)
            if not config.allow_msg_ttl:
                raise invalid("subject delete marker cannot be set if message TTLs are disabled")
            if not config.allow_rollup_hdrs:
                raise invalid("subject delete marker cannot be set if roll-ups are disabled")
        config.allow_msg_ttl = True
        config.allow_rollup_hdrs = True
        config.deny_purge = False
    # 11. schedules
    if config.allow_msg_schedules:
        if config.discard == "new":
            raise invalid("message scheduling cannot use discard new")
        if pedantic and not config.allow_rollup_hdrs:
            raise invalid("message scheduling cannot be set if roll-ups are disabled")
        config.allow_rollup_hdrs = True
        config.deny_purge = False
    # 12. persist mode
    if config.persist_mode == "async":
        if config.storage != "file":
            raise invalid("async persist mode is only supported on file storage")
        if config.num_replicas > 1:
            raise invalid("async persist mode is not supported on replicated streams")
        if config.allow_atomic:
            raise invalid("async persist mode is not supported with atomic publish")
    # 13. mirror
    if config.mirror is not None:
        mirror = config.mirror
        if config.first_seq:
            raise js_error("JSMirrorWithFirstSeqErr")
        if config.subjects:
            raise js_error("JSMirrorWithSubjectsErr")
        if config.sources:
            raise js_error("JSMirrorWithSourcesErr")
        if config.allow_msg_counter:
            raise js_error("JSMirrorWithCountersErr")
        if config.allow_atomic:
            raise js_error("JSMirrorWithAtomicPublishErr")
        if config.allow_batched:
            raise js_error("JSMirrorWithBatchPublishErr")
        if config.allow_msg_schedules:
            raise js_error("JSMirrorWithMsgSchedulesErr")
        if mirror.consumer is not None and not _durable_source_ok(mirror):
            raise js_error("JSMirrorDurableConsumerCfgInvalid")
        # JSMirrorWithStartSeqAndTimeErr exists in the error table, but nats-server 2.15.1 accepts a
        # mirror with both opt_start_seq and opt_start_time (checked on the binary): so do we.
        if mirror.filter_subject and mirror.subject_transforms:
            raise js_error("JSMirrorMultipleFiltersNotAllowed")
        _check_source_transforms(mirror.subject_transforms or [], mirror=True)
        if not valid_stream_name(mirror.name):
            raise js_error("JSMirrorInvalidStreamName")
    # 14. sources
    if config.sources:
        seen: set[tuple[str, str, str, str]] = set()
        durables: set[tuple[str, str, str]] = set()
        for source in config.sources:
            if not valid_stream_name(source.name):
                raise js_error("JSSourceInvalidStreamName")
            key = (
                source.name,
                source.filter_subject,
                ",".join(f"{t.src}>{t.dest}" for t in source.subject_transforms or []),
                source.consumer.name if source.consumer is not None else "",
            )
            if key in seen:
                raise js_error("JSSourceDuplicateDetected")
            seen.add(key)
            if source.filter_subject and source.subject_transforms:
                raise js_error("JSSourceMultipleFiltersNotAllowed")
            _check_source_transforms(source.subject_transforms or [], mirror=False)
            if source.consumer is not None:
                if not _durable_source_ok(source):
                    raise js_error("JSSourceDurableConsumerCfgInvalid")
                # one durable feeds one source of a stream
                prefix = source.external.api if source.external is not None else ""
                durable = (source.name, prefix, source.consumer.name)
                if durable in durables:
                    raise js_error("JSSourceDurableConsumerDuplicateDetected")
                durables.add(durable)
            if source.external is not None and source.external.deliver:
                deliver = source.external.deliver.encode()
                if b"*" in deliver.split(b".") or b">" in deliver.split(b"."):
                    raise js_error("JSStreamInvalidExternalDeliverySubjErrF", prefix=source.external.deliver)
    # 16. subjects
    if not config.subjects and config.mirror is None and not config.sources:
        config.subjects = [config.name]
    subjects = [s.encode() for s in config.subjects or []]
    seen_subjects: set[bytes] = set()
    for subject in subjects:
        if not valid_subject(subject):
            raise invalid("invalid subject")
        seen_subjects.add(subject)  # duplicates are reported by the overlap check below, as nats-server does
    for index, subject in enumerate(subjects):
        for other in subjects[index + 1 :]:
            if subjects_overlap(subject, other):
                first, second = (subject, other) if subject_is_subset(subject, other) else (other, subject)
                raise invalid(f'subject "{first.decode()}" overlaps with "{second.decode()}"')
    for subject in subjects:
        if subject == b">" and not config.no_ack:
            raise invalid("capturing all subjects requires no-ack to be true")
        for api in (b"$JS.>", b"$JSC.>", b"$NRG.>"):
            if subjects_overlap(subject, api) and not subject_is_subset(subject, b"$JS.EVENT.>") and not config.no_ack:
                raise invalid("subjects that overlap with jetstream api require no-ack to be true")
        if (
            subjects_overlap(subject, b"$SYS.>")
            and not subject_is_subset(subject, b"$SYS.ACCOUNT.>")
            and not config.no_ack
        ):
            raise invalid("subjects that overlap with system api require no-ack to be true")
    # 17.
    if not subjects and config.mirror is None and not config.sources:
        raise invalid("stream needs at least one configured subject or be a source/mirror")
    # 19. subject transform
    if config.subject_transform is not None:
        transform = config.subject_transform
        if not valid_subject((transform.src or ">").encode()):
            raise js_error("JSStreamTransformInvalidSource", err="invalid subject")
        try:
            SubjectTransform(transform.src, transform.dest)
        except TransformError:
            raise js_error("JSStreamTransformInvalidDestination", err="invalid subject transform destination") from None
    # 20. republish
    if config.republish is not None:
        republish: RePublish = config.republish
        if not republish.src:
            if pedantic:
                raise js_error("JSPedanticErrF", err="republish source can not be empty")
            republish = dataclasses.replace(republish, src=">")
            config.republish = republish
        dest = republish.dest.encode()
        if not valid_subject(republish.src.encode()) or not valid_subject(dest):
            raise invalid(
                f"stream configuration for republish with transform from '{republish.src}' to '{republish.dest}' not valid"
            )
        for subject in subjects:
            if subjects_overlap(dest, subject):
                raise invalid("stream configuration for republish destination forms a cycle")
        try:
            SubjectTransform(republish.src, republish.dest)
        except TransformError:
            raise invalid(
                f"stream configuration for republish with transform from '{republish.src}' to '{republish.dest}' not valid"
            ) from None
    # 21. placement
    if config.placement is not None:
        if config.placement.preferred:
            raise invalid("preferred server not permitted in placement")
        if not config.placement.cluster and not config.placement.tags:
            config.placement = None
    if config.consumer_limits is None:
        config.consumer_limits = ConsumerLimits()
    if config.persist_mode == "default":
        config.persist_mode = ""
    return config


def _check_source_transforms(transforms: list[SubjectTransformConfig], *, mirror: bool) -> None:
    prefix = "JSMirror" if mirror else "JSSource"
    sources: list[bytes] = []
    for transform in transforms:
        src = (transform.src or ">").encode()
        if not valid_subject(src):
            raise js_error(f"{prefix}InvalidSubjectFilter", err="invalid subject")
        try:
            SubjectTransform(transform.src, transform.dest)
        except TransformError:
            raise js_error(
                f"{prefix}InvalidTransformDestination", err="invalid subject transform destination"
            ) from None
        for other in sources:
            if subjects_overlap(src, other):
                raise js_error(f"{prefix}OverlappingSubjectFilters")
        sources.append(src)


def check_update(old: StreamConfig, new: StreamConfig) -> StreamConfig:
    """§7 update rules on an already defaulted `new`; returns the config to store."""
    if new.name != old.name:
        raise invalid("stream configuration name must match original")
    if new.storage != old.storage:
        raise invalid("stream configuration update can not change storage type")
    if new.retention != old.retention and "workqueue" in (new.retention, old.retention):
        raise invalid("stream configuration update can not change retention policy to/from workqueue")
    if old.sealed and not new.sealed:
        raise invalid("stream configuration update can not unseal a sealed stream")
    if old.deny_delete and not new.deny_delete:
        raise invalid("stream configuration update can not cancel deny message deletes")
    if old.deny_purge and not new.deny_purge:
        raise invalid("stream configuration update can not cancel deny purge")
    if old.mirror is not None and new.mirror is not None and new.mirror != old.mirror:
        raise js_error("JSStreamMirrorNotUpdatableErr")
    if old.mirror is None and new.mirror is not None:
        raise js_error("JSStreamMirrorNotUpdatableErr")
    if old.allow_msg_ttl and not new.allow_msg_ttl:
        raise invalid("message TTL status can not be disabled")
    if old.allow_msg_counter != new.allow_msg_counter:
        raise invalid("stream configuration update can not change message counter setting")
    if old.allow_msg_schedules and not new.allow_msg_schedules:
        raise invalid("stream configuration update can not disable message schedules")
    if (old.persist_mode or "default") != (new.persist_mode or "default"):
        raise invalid("stream configuration update can not change persist mode")
    if new.sealed and not old.sealed:
        new.max_age = 0
        new.discard = "new"
        new.deny_delete = True
        new.deny_purge = True
        new.allow_rollup_hdrs = False
    return new
