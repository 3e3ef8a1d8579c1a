"""Consumer config defaulting, validation and update rules (layer 4), in nats-server's order.

`set_defaults` is nats-server's `setConsumerConfigDefaults`, `check_config` its `checkConsumerCfg`
(spec/jetstream-api.md §8.1-§8.2), `check_update` its `checkNewConsumerConfig` (§8.3: failures are
500/10012 with the reason unless the failure is itself a JetStream error). Everything works on the
config object handed in by the caller (a fresh copy decoded from the request). Imports layer 0 and
jetstream models only.
"""

from __future__ import annotations

import re

from jsedge.errors import JSError, js_error
from jsedge.jetstream.models import NS, ConsumerConfig, StreamConfig
from jsedge.jetstream.streamconfig import API_LEVEL, SERVER_VERSION
from jsedge.subjects import is_literal, subjects_overlap, valid_subject

DEFAULT_ACK_WAIT = 30 * NS
DEFAULT_MAX_WAITING = 512
DEFAULT_MAX_ACK_PENDING = 1000
DEFAULT_INACTIVE_THRESHOLD = 5 * NS
DEFAULT_PINNED_TTL = 120 * NS
MIN_HEARTBEAT = NS // 10
MAX_NAME_LEN = 255
MAX_DESCRIPTION_LEN = 4096
MAX_METADATA_LEN = 128 * 1024
_BAD_NAME_CHARS = set(" \t\r\n\f.*>\\/")
_GROUP_NAME = re.compile(r"^[a-zA-Z0-9/_=-]{1,16}$")


def valid_group_name(name: str) -> bool:
    """A priority group name nats-server accepts (A-Z, a-z, 0-9, -_/=, at most 16)."""
    return bool(_GROUP_NAME.match(name))


def valid_consumer_name(name: str) -> bool:
    return bool(name) and not any(ch in _BAD_NAME_CHARS for ch in name)


def is_durable(config: ConsumerConfig) -> bool:
    return bool(config.durable_name)


def required_api_level(config: ConsumerConfig) -> int:
    if config.ack_policy == "flow_control":
        return 4
    if config.pause_until > 0 or config.priority_policy not in ("", "none") or config.priority_groups:
        return 1
    return 0


def set_static_metadata(config: ConsumerConfig) -> None:
    metadata = dict(config.metadata or {})
    for key in ("_nats.ver", "_nats.level"):
        metadata.pop(key, None)
    metadata["_nats.req.level"] = str(required_api_level(config))
    config.metadata = metadata


def strip_dynamic_metadata(config: ConsumerConfig) -> None:
    if config.metadata:
        metadata = {
            k: v for k, v in config.metadata.items() if k not in ("_nats.ver", "_nats.level", "_nats.req.level")
        }
        config.metadata = metadata or None


def dynamic_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    out = dict(metadata or {})
    out["_nats.level"] = str(API_LEVEL)
    out["_nats.ver"] = SERVER_VERSION
    return dict(sorted(out.items()))


#: Fields clamped to 0 when negative, with the name nats-server's pedantic error uses.
_NOT_NEGATIVE = (
    ("max_waiting", "max_waiting"),
    ("max_batch", "max_batch"),
    ("max_expires", "max_expires"),
    ("max_bytes", "max_bytes"),
    ("idle_heartbeat", "idle_heartbeat"),
    ("inactive_threshold", "inactive_threshold"),
    ("priority_timeout", "priority_timeout"),
)


def _pedantic(text: str) -> JSError:
    return js_error("JSPedanticErrF", err=text)


def set_defaults(
    config: ConsumerConfig, stream: StreamConfig, account_max_ack_pending: int = -1, pedantic: bool = False
) -> None:
    """nats-server's setConsumerConfigDefaults (plus the negative-value clamps of §8.1). With
    `pedantic` (the create request's), a value it would change is refused instead (10157)."""
    if config.max_deliver == 0 or config.max_deliver < -1:
        if pedantic and config.max_deliver < -1:
            raise _pedantic("max_deliver must be set to -1")
    for name, shown in _NOT_NEGATIVE[:1]:
        if getattr(config, name) < 0:
            if pedantic:
                raise _pedantic(f"{shown} must not be negative")
            setattr(config, name, 0)
    if config.max_ack_pending < -1:
        if pedantic:
            raise _pedantic("max_ack_pending must be set to -1")
        config.max_ack_pending = -1
    for name, shown in _NOT_NEGATIVE[1:]:
        if getattr(config, name) < 0:
            if pedantic:
                raise _pedantic(f"{shown} must not be negative")
            setattr(config, name, 0)
    if not config.deliver_subject and config.max_waiting == 0:
        config.max_waiting = DEFAULT_MAX_WAITING
    if config.ack_wait == 0 and config.ack_policy in ("explicit", "all"):
        config.ack_wait = DEFAULT_ACK_WAIT
    if config.max_deliver == 0 or config.max_deliver < -1:
        config.max_deliver = -1
    if config.backoff:
        if pedantic and config.ack_wait != config.backoff[0]:
            raise _pedantic("first backoff value has to equal batch AckWait")
        config.ack_wait = config.backoff[0]
    limits = stream.consumer_limits
    if config.max_ack_pending == 0 and limits is not None:
        if pedantic and limits.max_ack_pending > 0:
            raise _pedantic("max_ack_pending must be set if it's configured in stream limits")
        config.max_ack_pending = limits.max_ack_pending
    if config.inactive_threshold == 0 and limits is not None:
        if pedantic and limits.inactive_threshold > 0:
            raise _pedantic("inactive_threshold must be set if it's configured in stream limits")
        config.inactive_threshold = limits.inactive_threshold
    if config.ack_policy != "none" and config.max_ack_pending == 0:
        pending = DEFAULT_MAX_ACK_PENDING
        if 0 < account_max_ack_pending < pending:
            pending = account_max_ack_pending
        config.max_ack_pending = pending
    if not is_durable(config) and config.inactive_threshold == 0:
        config.inactive_threshold = DEFAULT_INACTIVE_THRESHOLD
    if config.priority_policy == "pinned_client" and config.priority_timeout == 0:
        config.priority_timeout = DEFAULT_PINNED_TTL
    if config.ack_policy == "flow_control" and not pedantic:
        # as nats-server: flow control on, and the heartbeat of its sourcing consumers (whatever
        # was asked: the flow control replies that ack depend on it)
        config.flow_control = True
        config.idle_heartbeat = NS


def _policy(text: str) -> JSError:
    return js_error("JSConsumerInvalidPolicyErrF", err=text)


def check_config(config: ConsumerConfig, stream: StreamConfig, account_max_ack_pending: int = -1) -> None:
    """nats-server's checkConsumerCfg; raises the first failing rule."""
    if config.name and not valid_consumer_name(config.name):
        raise js_error("JSStreamInvalidConfigF", err="consumer name can not contain '.', '*', '>', '\\', '/'")
    if config.durable_name and not valid_consumer_name(config.durable_name):
        raise js_error("JSStreamInvalidConfigF", err="consumer durable name can not contain '.', '*', '>', '\\', '/'")
    if config.num_replicas > 0 and config.num_replicas > stream.num_replicas:
        raise js_error("JSConsumerReplicasExceedsStream")
    if config.num_replicas < 0:
        raise js_error("JSReplicasCountCannotBeNegative")
    if stream.retention in ("interest", "workqueue") and config.num_replicas not in (0, stream.num_replicas):
        raise js_error("JSConsumerReplicasShouldMatchStream")
    if config.ack_wait < 0:
        raise js_error("JSConsumerAckWaitNegativeErr")
    if any(b < 0 for b in config.backoff or ()):
        raise js_error("JSConsumerBackOffNegativeErr")
    if config.ack_policy == "flow_control":
        # ADR-60: a push consumer acknowledged by the replies to its flow control (a durable
        # sourcing consumer), so it cannot have ack timers or a delivery limit
        if not config.deliver_subject:
            raise js_error("JSConsumerAckFCRequiresPushErr")
        if not config.flow_control:
            raise js_error("JSConsumerAckFCRequiresFCErr")
        if config.idle_heartbeat != NS:
            raise js_error("JSStreamInvalidConfigF", err="flow control ack policy heartbeat needs to be 1s")
        if config.max_ack_pending <= 0:
            raise js_error("JSConsumerAckFCRequiresMaxAckPendingErr")
        if config.ack_wait != 0 or config.backoff:
            raise js_error("JSConsumerAckFCRequiresNoAckWaitErr")
        if config.max_deliver > 0:
            raise js_error("JSConsumerAckFCRequiresNoMaxDeliverErr")
    if config.backoff and config.max_deliver != -1 and len(config.backoff) > config.max_deliver:
        raise js_error("JSConsumerMaxDeliverBackoffErr")
    if len(config.description.encode()) > MAX_DESCRIPTION_LEN:
        raise js_error("JSConsumerDescriptionTooLongErrF", max=MAX_DESCRIPTION_LEN)
    if config.deliver_subject:
        deliver = config.deliver_subject.encode()
        if not is_literal(deliver):
            raise js_error("JSConsumerDeliverToWildcardsErr")
        if not valid_subject(deliver):
            raise js_error("JSConsumerInvalidDeliverSubject")
        if any(subjects_overlap(s.encode(), deliver) for s in stream.subjects or []):
            raise js_error("JSConsumerDeliverCycleErr")
        if config.max_waiting != 0:
            raise js_error("JSConsumerPushMaxWaitingErr")
        if config.max_ack_pending > 0 and config.ack_policy == "none":
            raise js_error("JSConsumerMaxPendingAckPolicyRequiredErr")
        if 0 < config.idle_heartbeat < MIN_HEARTBEAT:
            raise js_error("JSConsumerSmallHeartbeatErr")
    else:
        if config.ack_policy == "none" and stream.retention == "workqueue":
            raise js_error("JSConsumerPullRequiresAckErr")
        if config.rate_limit_bps > 0:
            raise js_error("JSConsumerPullWithRateLimitErr")
        if config.max_waiting < 0:
            raise js_error("JSConsumerMaxWaitingNegativeErr")
        if config.idle_heartbeat > 0:
            raise js_error("JSConsumerHBRequiresPushErr")
        if config.flow_control:
            raise js_error("JSConsumerFCRequiresPushErr")
        if config.max_batch < 0:
            raise js_error("JSConsumerMaxRequestBatchNegativeErr")
        if config.max_expires != 0 and config.max_expires < 1_000_000:
            raise js_error("JSConsumerMaxRequestExpiresTooSmall")
    if 0 < account_max_ack_pending < config.max_ack_pending:
        raise js_error("JSConsumerMaxPendingAckExcessErrF", limit=account_max_ack_pending)
    limits = stream.consumer_limits
    if limits is not None and limits.max_ack_pending > 0 and config.max_ack_pending > limits.max_ack_pending:
        raise js_error("JSConsumerMaxPendingAckExcessErrF", limit=limits.max_ack_pending)
    if limits is not None and limits.inactive_threshold > 0 and config.inactive_threshold > limits.inactive_threshold:
        raise js_error("JSConsumerInactiveThresholdExcess", limit=_go_duration(limits.inactive_threshold))
    if config.direct:
        if not config.deliver_subject:
            raise js_error("JSConsumerDirectRequiresPushErr")
        if is_durable(config):
            raise js_error("JSConsumerDirectRequiresEphemeralErr")
    if config.filter_subject and config.filter_subjects:
        raise js_error("JSConsumerDuplicateFilterSubjects")
    if config.filter_subject and not valid_subject(config.filter_subject.encode()):
        raise js_error("JSStreamInvalidConfigF", err="invalid subject")
    for item in config.filter_subjects or ():
        if not item:
            raise js_error("JSConsumerEmptyFilter")
    filters = config.filters()
    for i, subject in enumerate(filters):
        if not valid_subject(subject.encode()):
            raise js_error("JSStreamInvalidConfigF", err="invalid subject")
        for j, other in enumerate(filters):
            if i != j and subjects_overlap(subject.encode(), other.encode()):
                raise js_error("JSConsumerOverlappingSubjectFilters")
    _check_start(config)
    if config.sample_freq:
        text = config.sample_freq[:-1] if config.sample_freq.endswith("%") else config.sample_freq
        if not re.fullmatch(r"[+-]?\d+", text):
            raise js_error("JSConsumerInvalidSamplingErrF", err=f'strconv.Atoi: parsing "{text}": invalid syntax')
    if config.flow_control and config.idle_heartbeat == 0:
        raise js_error("JSConsumerWithFlowControlNeedsHeartbeats")
    if config.durable_name and config.name and config.name != config.durable_name:
        raise js_error("JSConsumerCreateDurableAndNameMismatch")
    if sum(len(k.encode()) + len(v.encode()) for k, v in (config.metadata or {}).items()) > MAX_METADATA_LEN:
        raise js_error("JSConsumerMetadataLengthErrF", limit="128KB")
    policy = config.priority_policy or "none"
    if policy != "none":
        if config.deliver_subject:
            raise js_error("JSConsumerPushWithPriorityGroupErr")
        if not config.priority_groups:
            raise js_error("JSConsumerPriorityPolicyWithoutGroup")
        for group in config.priority_groups:
            if not group:
                raise js_error("JSConsumerEmptyGroupName")
            if not _GROUP_NAME.match(group):
                raise js_error("JSConsumerInvalidGroupNameErr")
    else:
        if config.priority_groups:
            raise js_error("JSConsumerPriorityGroupWithPolicyNone")
        if config.priority_timeout:
            raise js_error("JSConsumerPinnedTTLWithoutPriorityPolicyNone")


def _check_start(config: ConsumerConfig) -> None:
    def bad(dp: str, start: str) -> JSError:
        return _policy(f"consumer delivery policy is deliver {dp}, but optional start {start} is also set")

    def not_set(dp: str, what: str) -> JSError:
        return _policy(f"consumer delivery policy is deliver {dp}, but optional {what} is not set")

    policy = config.deliver_policy
    names = {"all": "all", "last": "last", "new": "new", "last_per_subject": "last per subject"}
    if policy in names:
        if config.opt_start_seq > 0:
            raise bad(names[policy], "sequence")
        if config.opt_start_time:
            raise bad(names[policy], "time")
        if policy == "last_per_subject" and not config.filters():
            raise not_set("last per subject", "filter subject")
    elif policy == "by_start_sequence":
        if config.opt_start_seq == 0:
            raise not_set("by start sequence", "start sequence")
        if config.opt_start_time:
            raise bad("by start sequence", "time")
    elif policy == "by_start_time":
        if not config.opt_start_time:
            raise not_set("by start time", "start time")
        if config.opt_start_seq:
            raise bad("by start time", "start sequence")


def check_update(old: ConsumerConfig, new: ConsumerConfig, deliver_has_interest: bool) -> None:
    """nats-server's checkNewConsumerConfig (both configs defaulted, dynamic metadata stripped)."""

    def fail(text: str) -> JSError:
        return js_error("JSConsumerCreateErrF", err=text)

    if old.deliver_policy != new.deliver_policy:
        raise fail("deliver policy can not be updated")
    if old.opt_start_seq != new.opt_start_seq:
        raise fail("start sequence can not be updated")
    if old.opt_start_time != new.opt_start_time:
        raise fail("start time can not be updated")
    if old.ack_policy != new.ack_policy:
        raise fail("ack policy can not be updated")
    if old.replay_policy != new.replay_policy:
        raise fail("replay policy can not be updated")
    if old.idle_heartbeat != new.idle_heartbeat:
        raise fail("heart beats can not be updated")
    if old.flow_control != new.flow_control:
        raise fail("flow control can not be updated")
    if old.deliver_subject != new.deliver_subject:
        if not old.deliver_subject:
            raise fail("can not update pull consumer to push based")
        if not new.deliver_subject:
            raise fail("can not update push consumer to pull based")
    if old.max_waiting != new.max_waiting:
        raise fail("max waiting can not be updated")
    if old.deliver_subject != new.deliver_subject and deliver_has_interest:
        raise js_error("JSConsumerNameExistErr")
    if old.mem_storage != new.mem_storage:
        raise fail("can not update memory storage")
    if old.direct != new.direct or old.sourcing != new.sourcing:
        raise fail("can not update direct or sourcing")
    if new.backoff and new.max_deliver != -1 and len(new.backoff) > new.max_deliver:
        raise js_error("JSConsumerMaxDeliverBackoffErr")


def _go_duration(ns: int) -> str:
    from jsedge.jetstream.headers import format_go_duration

    return format_go_duration(ns)
