"""The one table of wire errors (layer 0).

* Core protocol `-ERR` texts, and whether each closes the connection.
* Connection close reasons, as `/connz?state=closed` shows them.
* Status lines of header-only messages (no-responders, JetStream pull answers...).

Numbers and texts are nats-server 2.15's; clients pattern-match them, so never reword an entry.
* JetStream API errors `{code, err_code, description}` (the last section): nats-server's complete
  `errors.json`, keyed by nats-server's constant names, and `JSError`, the exception carrying an entry.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProtoErr:
    """A core protocol error: the exact `-ERR` text and whether the connection is closed after it."""

    text: str
    closes: bool

    def line(self, *args: object) -> bytes:
        """The full wire line, `-ERR '<text>'\\r\\n`, with `%`-style arguments filled in."""
        text = self.text % args if args else self.text
        return b"-ERR '" + text.encode() + b"'\r\n"


class ClosedReason(enum.Enum):
    """Why a connection was closed (`/connz` `reason`)."""

    CLIENT_CLOSED = "Client Closed"
    AUTHENTICATION_TIMEOUT = "Authentication Timeout"
    AUTHENTICATION_VIOLATION = "Authentication Failure"
    TLS_HANDSHAKE_ERROR = "TLS Handshake Failure"
    SLOW_CONSUMER_PENDING_BYTES = "Slow Consumer (Pending Bytes)"
    SLOW_CONSUMER_WRITE_DEADLINE = "Slow Consumer (Write Deadline)"
    WRITE_ERROR = "Write Error"
    READ_ERROR = "Read Error"
    PARSE_ERROR = "Parse Error"
    STALE_CONNECTION = "Stale Connection"
    PROTOCOL_VIOLATION = "Protocol Violation"
    BAD_CLIENT_PROTOCOL_VERSION = "Bad Client Protocol Version"
    WRONG_PORT = "Incorrect Port"
    MAX_CONNECTIONS_EXCEEDED = "Maximum Connections Exceeded"
    MAX_ACCOUNT_CONNECTIONS_EXCEEDED = "Maximum Account Connections Exceeded"
    MAX_PAYLOAD_EXCEEDED = "Maximum Message Payload Exceeded"
    MAX_CONTROL_LINE_EXCEEDED = "Maximum Control Line Exceeded"
    MAX_SUBSCRIPTIONS_EXCEEDED = "Maximum Subscriptions Exceeded"
    SERVER_SHUTDOWN = "Server Shutdown"
    AUTHENTICATION_EXPIRED = "Authentication Expired"
    NO_RESPONDERS_REQUIRES_HEADERS = "No Responders Requires Headers"
    KICKED = "Kicked"
    DUPLICATE_ROUTE = "Duplicate Route"
    ROUTE_REMOVED = "Route Removed"
    WRONG_GATEWAY = "Wrong Gateway"
    CLUSTER_NAME_CONFLICT = "Cluster Name Conflict"
    DUPLICATE_SERVER_NAME = "Duplicate Server Name"
    DUPLICATE_CLIENT_ID = "Duplicate Client ID"


# Core -ERR table (spec/protocol.md §13.1).
UNKNOWN_OP = ProtoErr("Unknown Protocol Operation", True)
MAX_CONTROL_LINE = ProtoErr("maximum control line exceeded", True)
MAX_PAYLOAD = ProtoErr("Maximum Payload Violation", True)
AUTH_VIOLATION = ProtoErr("Authorization Violation", True)
AUTH_TIMEOUT = ProtoErr("Authentication Timeout", True)
AUTH_EXPIRED = ProtoErr("User Authentication Expired", True)
BAD_CLIENT_PROTOCOL = ProtoErr("invalid client protocol", True)
NO_RESPONDERS_NEEDS_HEADERS = ProtoErr("no responders requires headers support", True)
MAX_CONNECTIONS = ProtoErr("maximum connections exceeded", True)
MAX_ACCOUNT_CONNECTIONS = ProtoErr("maximum account active connections exceeded", True)
STALE_CONNECTION = ProtoErr("Stale Connection", True)
TLS_REQUIRED = ProtoErr("Secure Connection - TLS Required", True)
ROUTE_PORT = ProtoErr("attempted to connect to route port", True)
LEAF_PORT = ProtoErr("attempted to connect to leaf node port", True)
INVALID_SUBJECT = ProtoErr("Invalid Subject", False)
INVALID_PUBLISH_SUBJECT = ProtoErr("Invalid Publish Subject", False)
PERM_PUBLISH = ProtoErr("Permissions Violation for Publish to %s", False)
PERM_PUBLISH_REPLY = ProtoErr("Permissions Violation for Publish with Reply of %s", False)
PERM_SUBSCRIBE = ProtoErr("Permissions Violation for Subscription to %s", False)
PERM_SUBSCRIBE_QUEUE = ProtoErr("Permissions Violation for Subscription to %s using queue %s", False)
PERM_SUBSCRIBE_TOKENS = ProtoErr("Permissions Violation for Subscription to %s, too many tokens", False)
MAX_SUBSCRIPTIONS = ProtoErr("maximum subscriptions exceeded", False)

#: Parser error keys (reported by both parser twins) -> (error or None for a silent close, reason).
PARSER_ERRORS: dict[str, tuple[ProtoErr | None, ClosedReason]] = {
    "unknown_op": (UNKNOWN_OP, ClosedReason.PROTOCOL_VIOLATION),
    "max_control_line": (MAX_CONTROL_LINE, ClosedReason.MAX_CONTROL_LINE_EXCEEDED),
    "max_payload": (MAX_PAYLOAD, ClosedReason.MAX_PAYLOAD_EXCEEDED),
    "silent": (None, ClosedReason.PROTOCOL_VIOLATION),
}


def go_quote(text: str) -> str:
    """Go's `%q` of a string: double quotes, Go escapes for quotes, backslashes and non-printables."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif ch == "\ufffd" or not ch.isprintable():
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# Status lines of header-only messages (spec/protocol.md §7.2).
STATUS_NO_RESPONDERS = b"NATS/1.0 503\r\n"


# ------------------------------------------------------------------------------------------------
# JetStream API errors (spec/jetstream-api.md §2): nats-server's errors.json as data.


@dataclass(frozen=True, slots=True)
class JSApiError:
    """One JetStream API error: HTTP-like `code`, JetStream `err_code` and the description template.

    Templates mark substituted text with `{name}` (nats-server's `{err}`, `{seq}`, ...)."""

    code: int
    err_code: int
    description: str

    def format(self, **values: object) -> str:
        text = self.description
        for key, value in values.items():
            text = text.replace("{" + key + "}", str(value))
        return text


#: Every JetStream API error by nats-server constant name (`JSStreamNotFoundErr`, ...).
JS_ERRORS: dict[str, JSApiError] = {
    "JSAccountResourcesExceededErr": JSApiError(400, 10002, "resource limits exceeded for account"),
    "JSBadRequestErr": JSApiError(400, 10003, "bad request"),
    "JSClusterIncompleteErr": JSApiError(503, 10004, "incomplete results"),
    "JSClusterNoPeersErrF": JSApiError(400, 10005, "{err}"),
    "JSClusterNotActiveErr": JSApiError(500, 10006, "JetStream not in clustered mode"),
    "JSClusterNotAssignedErr": JSApiError(500, 10007, "JetStream cluster not assigned to this server"),
    "JSClusterNotAvailErr": JSApiError(503, 10008, "JetStream system temporarily unavailable"),
    "JSClusterNotLeaderErr": JSApiError(500, 10009, "JetStream cluster can not handle request"),
    "JSClusterRequiredErr": JSApiError(503, 10010, "JetStream clustering support required"),
    "JSClusterTagsErr": JSApiError(400, 10011, "tags placement not supported for operation"),
    "JSConsumerCreateErrF": JSApiError(500, 10012, "{err}"),
    "JSConsumerNameExistErr": JSApiError(400, 10013, "consumer name already in use"),
    "JSConsumerNotFoundErr": JSApiError(404, 10014, "consumer not found"),
    "JSSnapshotDeliverSubjectInvalidErr": JSApiError(400, 10015, "deliver subject not valid"),
    "JSConsumerDurableNameNotInSubjectErr": JSApiError(
        400, 10016, "consumer expected to be durable but no durable name set in subject"
    ),
    "JSConsumerDurableNameNotMatchSubjectErr": JSApiError(
        400, 10017, "consumer name in subject does not match durable name in request"
    ),
    "JSConsumerDurableNameNotSetErr": JSApiError(
        400, 10018, "consumer expected to be durable but a durable name was not set"
    ),
    "JSConsumerEphemeralWithDurableInSubjectErr": JSApiError(
        400, 10019, "consumer expected to be ephemeral but detected a durable name set in subject"
    ),
    "JSConsumerEphemeralWithDurableNameErr": JSApiError(
        400, 10020, "consumer expected to be ephemeral but a durable name was set in request"
    ),
    "JSStreamExternalApiOverlapErrF": JSApiError(
        400, 10021, "stream external api prefix {prefix} must not overlap with {subject}"
    ),
    "JSStreamExternalDelPrefixOverlapsErrF": JSApiError(
        400, 10022, "stream external delivery prefix {prefix} overlaps with stream subject {subject}"
    ),
    "JSInsufficientResourcesErr": JSApiError(503, 10023, "insufficient resources"),
    "JSStreamInvalidExternalDeliverySubjErrF": JSApiError(
        400, 10024, "stream external delivery prefix {prefix} must not contain wildcards"
    ),
    "JSInvalidJSONErr": JSApiError(400, 10025, "invalid JSON: {err}"),
    "JSMaximumConsumersLimitErr": JSApiError(400, 10026, "maximum consumers limit reached"),
    "JSMaximumStreamsLimitErr": JSApiError(400, 10027, "maximum number of streams reached"),
    "JSMemoryResourcesExceededErr": JSApiError(500, 10028, "insufficient memory resources available"),
    "JSMirrorConsumerSetupFailedErrF": JSApiError(500, 10029, "{err}"),
    "JSMirrorMaxMessageSizeTooBigErr": JSApiError(400, 10030, "stream mirror must have max message size >= source"),
    "JSMirrorWithSourcesErr": JSApiError(400, 10031, "stream mirrors can not also contain other sources"),
    "JSMirrorWithStartSeqAndTimeErr": JSApiError(
        400, 10032, "stream mirrors can not have both start seq and start time configured"
    ),
    "JSMirrorWithSubjectFiltersErr": JSApiError(400, 10033, "stream mirrors can not contain filtered subjects"),
    "JSMirrorWithSubjectsErr": JSApiError(400, 10034, "stream mirrors can not contain subjects"),
    "JSNoAccountErr": JSApiError(503, 10035, "account not found"),
    "JSClusterUnSupportFeatureErr": JSApiError(503, 10036, "not currently supported in clustered mode"),
    "JSNoMessageFoundErr": JSApiError(404, 10037, "no message found"),
    "JSNotEmptyRequestErr": JSApiError(400, 10038, "expected an empty request payload"),
    "JSNotEnabledForAccountErr": JSApiError(503, 10039, "JetStream not enabled for account"),
    "JSClusterPeerNotMemberErr": JSApiError(400, 10040, "peer not a member"),
    "JSRaftGeneralErrF": JSApiError(500, 10041, "{err}"),
    "JSRestoreSubscribeFailedErrF": JSApiError(
        500, 10042, "JetStream unable to subscribe to restore snapshot {subject}: {err}"
    ),
    "JSSequenceNotFoundErrF": JSApiError(400, 10043, "sequence {seq} not found"),
    "JSClusterServerNotMemberErr": JSApiError(400, 10044, "server is not a member of the cluster"),
    "JSSourceConsumerSetupFailedErrF": JSApiError(500, 10045, "{err}"),
    "JSSourceMaxMessageSizeTooBigErr": JSApiError(400, 10046, "stream source must have max message size >= target"),
    "JSStorageResourcesExceededErr": JSApiError(500, 10047, "insufficient storage resources available"),
    "JSStreamAssignmentErrF": JSApiError(500, 10048, "{err}"),
    "JSStreamCreateErrF": JSApiError(500, 10049, "{err}"),
    "JSStreamDeleteErrF": JSApiError(500, 10050, "{err}"),
    "JSStreamGeneralErrorF": JSApiError(500, 10051, "{err}"),
    "JSStreamInvalidConfigF": JSApiError(500, 10052, "{err}"),
    "JSStreamLimitsErrF": JSApiError(500, 10053, "{err}"),
    "JSStreamMessageExceedsMaximumErr": JSApiError(400, 10054, "message size exceeds maximum allowed"),
    "JSStreamMirrorNotUpdatableErr": JSApiError(400, 10055, "stream mirror configuration can not be updated"),
    "JSStreamMismatchErr": JSApiError(400, 10056, "stream name in subject does not match request"),
    "JSStreamMsgDeleteFailedF": JSApiError(500, 10057, "{err}"),
    "JSStreamNameExistErr": JSApiError(400, 10058, "stream name already in use with a different configuration"),
    "JSStreamNotFoundErr": JSApiError(404, 10059, "stream not found"),
    "JSStreamNotMatchErr": JSApiError(400, 10060, "expected stream does not match"),
    "JSStreamReplicasNotUpdatableErr": JSApiError(400, 10061, "Replicas configuration can not be updated"),
    "JSStreamRestoreErrF": JSApiError(500, 10062, "restore failed: {err}"),
    "JSStreamSequenceNotMatchErr": JSApiError(503, 10063, "expected stream sequence does not match"),
    "JSStreamSnapshotErrF": JSApiError(500, 10064, "snapshot failed: {err}"),
    "JSStreamSubjectOverlapErr": JSApiError(400, 10065, "subjects overlap with an existing stream"),
    "JSStreamTemplateCreateErrF": JSApiError(500, 10066, "{err}"),
    "JSStreamTemplateDeleteErrF": JSApiError(500, 10067, "{err}"),
    "JSStreamTemplateNotFoundErr": JSApiError(404, 10068, "template not found"),
    "JSStreamUpdateErrF": JSApiError(500, 10069, "{err}"),
    "JSStreamWrongLastMsgIDErrF": JSApiError(400, 10070, "wrong last msg ID: {id}"),
    "JSStreamWrongLastSequenceErrF": JSApiError(400, 10071, "wrong last sequence: {seq}"),
    "JSTempStorageFailedErr": JSApiError(500, 10072, "JetStream unable to open temp storage for restore"),
    "JSTemplateNameNotMatchSubjectErr": JSApiError(400, 10073, "template name in subject does not match request"),
    "JSStreamReplicasNotSupportedErr": JSApiError(500, 10074, "replicas > 1 not supported in non-clustered mode"),
    "JSPeerRemapErr": JSApiError(503, 10075, "peer remap failed"),
    "JSNotEnabledErr": JSApiError(503, 10076, "JetStream not enabled"),
    "JSStreamStoreFailedF": JSApiError(503, 10077, "{err}"),
    "JSConsumerConfigRequiredErr": JSApiError(400, 10078, "consumer config required"),
    "JSConsumerDeliverToWildcardsErr": JSApiError(400, 10079, "consumer deliver subject has wildcards"),
    "JSConsumerPushMaxWaitingErr": JSApiError(400, 10080, "consumer in push mode can not set max waiting"),
    "JSConsumerDeliverCycleErr": JSApiError(400, 10081, "consumer deliver subject forms a cycle"),
    "JSConsumerMaxPendingAckPolicyRequiredErr": JSApiError(
        400, 10082, "consumer requires ack policy for max ack pending"
    ),
    "JSConsumerSmallHeartbeatErr": JSApiError(400, 10083, "consumer idle heartbeat needs to be >= 100ms"),
    "JSConsumerPullRequiresAckErr": JSApiError(
        400, 10084, "consumer in pull mode requires explicit ack policy on workqueue stream"
    ),
    "JSConsumerPullNotDurableErr": JSApiError(400, 10085, "consumer in pull mode requires a durable name"),
    "JSConsumerPullWithRateLimitErr": JSApiError(400, 10086, "consumer in pull mode can not have rate limit set"),
    "JSConsumerMaxWaitingNegativeErr": JSApiError(400, 10087, "consumer max waiting needs to be positive"),
    "JSConsumerHBRequiresPushErr": JSApiError(400, 10088, "consumer idle heartbeat requires a push based consumer"),
    "JSConsumerFCRequiresPushErr": JSApiError(400, 10089, "consumer flow control requires a push based consumer"),
    "JSConsumerDirectRequiresPushErr": JSApiError(400, 10090, "consumer direct requires a push based consumer"),
    "JSConsumerDirectRequiresEphemeralErr": JSApiError(400, 10091, "consumer direct requires an ephemeral consumer"),
    "JSConsumerOnMappedErr": JSApiError(400, 10092, "consumer direct on a mapped consumer"),
    "JSConsumerFilterNotSubsetErr": JSApiError(
        400, 10093, "consumer filter subject is not a valid subset of the interest subjects"
    ),
    "JSConsumerInvalidPolicyErrF": JSApiError(400, 10094, "{err}"),
    "JSConsumerInvalidSamplingErrF": JSApiError(400, 10095, "failed to parse consumer sampling configuration: {err}"),
    "JSStreamInvalidErr": JSApiError(500, 10096, "stream not valid"),
    "JSStreamHeaderExceedsMaximumErr": JSApiError(400, 10097, "header size exceeds maximum allowed of 64k"),
    "JSConsumerWQRequiresExplicitAckErr": JSApiError(400, 10098, "workqueue stream requires explicit ack"),
    "JSConsumerWQMultipleUnfilteredErr": JSApiError(
        400, 10099, "multiple non-filtered consumers not allowed on workqueue stream"
    ),
    "JSConsumerWQConsumerNotUniqueErr": JSApiError(400, 10100, "filtered consumer not unique on workqueue stream"),
    "JSConsumerWQConsumerNotDeliverAllErr": JSApiError(400, 10101, "consumer must be deliver all on workqueue stream"),
    "JSConsumerNameTooLongErrF": JSApiError(400, 10102, "consumer name is too long, maximum allowed is {max}"),
    "JSConsumerBadDurableNameErr": JSApiError(400, 10103, "durable name can not contain '.', '*', '>'"),
    "JSConsumerStoreFailedErrF": JSApiError(500, 10104, "error creating store for consumer: {err}"),
    "JSConsumerExistingActiveErr": JSApiError(400, 10105, "consumer already exists and is still active"),
    "JSConsumerReplacementWithDifferentNameErr": JSApiError(
        400, 10106, "consumer replacement durable config not the same"
    ),
    "JSConsumerDescriptionTooLongErrF": JSApiError(
        400, 10107, "consumer description is too long, maximum allowed is {max}"
    ),
    "JSConsumerWithFlowControlNeedsHeartbeats": JSApiError(
        400, 10108, "consumer with flow control also needs heartbeats"
    ),
    "JSStreamSealedErr": JSApiError(400, 10109, "invalid operation on sealed stream"),
    "JSStreamPurgeFailedF": JSApiError(500, 10110, "{err}"),
    "JSStreamRollupFailedF": JSApiError(500, 10111, "{err}"),
    "JSConsumerInvalidDeliverSubject": JSApiError(400, 10112, "invalid push consumer deliver subject"),
    "JSStreamMaxBytesRequired": JSApiError(400, 10113, "account requires a stream config to have max bytes set"),
    "JSConsumerMaxRequestBatchNegativeErr": JSApiError(400, 10114, "consumer max request batch needs to be > 0"),
    "JSConsumerMaxRequestExpiresTooSmall": JSApiError(400, 10115, "consumer max request expires needs to be >= 1ms"),
    "JSConsumerMaxDeliverBackoffErr": JSApiError(
        400, 10116, "max deliver is required to be > length of backoff values"
    ),
    "JSStreamInfoMaxSubjectsErr": JSApiError(500, 10117, "subject details would exceed maximum allowed"),
    "JSStreamOfflineErr": JSApiError(500, 10118, "stream is offline"),
    "JSConsumerOfflineErr": JSApiError(500, 10119, "consumer is offline"),
    "JSNoLimitsErr": JSApiError(400, 10120, "no JetStream default or applicable tiered limit present"),
    "JSConsumerMaxPendingAckExcessErrF": JSApiError(
        400, 10121, "consumer max ack pending exceeds system limit of {limit}"
    ),
    "JSStreamMaxStreamBytesExceeded": JSApiError(400, 10122, "stream max bytes exceeds account limit max stream bytes"),
    "JSStreamMoveAndScaleErr": JSApiError(400, 10123, "can not move and scale a stream in a single update"),
    "JSStreamMoveInProgressErr": JSApiError(400, 10124, "stream move already in progress"),
    "JSConsumerMaxRequestBatchExceededF": JSApiError(
        400, 10125, "consumer max request batch exceeds server limit of {limit}"
    ),
    "JSConsumerReplicasExceedsStream": JSApiError(400, 10126, "consumer config replica count exceeds parent stream"),
    "JSConsumerNameContainsPathSeparatorsErr": JSApiError(400, 10127, "Consumer name can not contain path separators"),
    "JSStreamNameContainsPathSeparatorsErr": JSApiError(400, 10128, "Stream name can not contain path separators"),
    "JSStreamReconfigureNotInProgressErr": JSApiError(400, 10129, "stream reconfiguration not in progress"),
    "JSStreamNameExistRestoreFailedErr": JSApiError(400, 10130, "stream name already in use, cannot restore"),
    "JSConsumerCreateFilterSubjectMismatchErr": JSApiError(
        400, 10131, "Consumer create request did not match filtered subject from create subject"
    ),
    "JSConsumerCreateDurableAndNameMismatch": JSApiError(
        400, 10132, "Consumer Durable and Name have to be equal if both are provided"
    ),
    "JSReplicasCountCannotBeNegative": JSApiError(400, 10133, "replicas count cannot be negative"),
    "JSConsumerReplicasShouldMatchStream": JSApiError(
        400, 10134, "consumer config replicas must match interest retention stream's replicas"
    ),
    "JSConsumerMetadataLengthErrF": JSApiError(400, 10135, "consumer metadata exceeds maximum size of {limit}"),
    "JSConsumerDuplicateFilterSubjects": JSApiError(
        400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified"
    ),
    "JSConsumerMultipleFiltersNotAllowed": JSApiError(
        400, 10137, "consumer with multiple subject filters cannot use subject based API"
    ),
    "JSConsumerOverlappingSubjectFilters": JSApiError(400, 10138, "consumer subject filters cannot overlap"),
    "JSConsumerEmptyFilter": JSApiError(400, 10139, "consumer filter in FilterSubjects cannot be empty"),
    "JSSourceDuplicateDetected": JSApiError(400, 10140, "duplicate source configuration detected"),
    "JSSourceInvalidStreamName": JSApiError(400, 10141, "sourced stream name is invalid"),
    "JSMirrorInvalidStreamName": JSApiError(400, 10142, "mirrored stream name is invalid"),
    "JSMirrorWithFirstSeqErr": JSApiError(400, 10143, "stream mirrors can not have first sequence configured"),
    "JSSourceMultipleFiltersNotAllowed": JSApiError(
        400, 10144, "source with multiple subject transforms cannot also have a single subject filter"
    ),
    "JSSourceInvalidSubjectFilter": JSApiError(400, 10145, "source transform source: {err}"),
    "JSSourceInvalidTransformDestination": JSApiError(400, 10146, "source transform: {err}"),
    "JSSourceOverlappingSubjectFilters": JSApiError(400, 10147, "source filters can not overlap"),
    "JSConsumerAlreadyExists": JSApiError(400, 10148, "consumer already exists"),
    "JSConsumerDoesNotExist": JSApiError(400, 10149, "consumer does not exist"),
    "JSMirrorMultipleFiltersNotAllowed": JSApiError(
        400, 10150, "mirror with multiple subject transforms cannot also have a single subject filter"
    ),
    "JSMirrorInvalidSubjectFilter": JSApiError(400, 10151, "mirror transform source: {err}"),
    "JSMirrorOverlappingSubjectFilters": JSApiError(400, 10152, "mirror subject filters can not overlap"),
    "JSConsumerInactiveThresholdExcess": JSApiError(
        400, 10153, "consumer inactive threshold exceeds system limit of {limit}"
    ),
    "JSMirrorInvalidTransformDestination": JSApiError(400, 10154, "mirror transform: {err}"),
    "JSStreamTransformInvalidSource": JSApiError(400, 10155, "stream transform source: {err}"),
    "JSStreamTransformInvalidDestination": JSApiError(400, 10156, "stream transform: {err}"),
    "JSPedanticErrF": JSApiError(400, 10157, "pedantic mode: {err}"),
    "JSStreamDuplicateMessageConflict": JSApiError(409, 10158, "duplicate message id is in process"),
    "JSConsumerPriorityPolicyWithoutGroup": JSApiError(
        400, 10159, "Setting PriorityPolicy requires at least one PriorityGroup to be set"
    ),
    "JSConsumerInvalidPriorityGroupErr": JSApiError(
        400, 10160, "Provided priority group does not exist for this consumer"
    ),
    "JSConsumerEmptyGroupName": JSApiError(400, 10161, "Group name cannot be an empty string"),
    "JSConsumerInvalidGroupNameErr": JSApiError(
        400, 10162, "Valid priority group name must match A-Z, a-z, 0-9, -_/=)+ and may not exceed 16 characters"
    ),
    "JSStreamExpectedLastSeqPerSubjectNotReady": JSApiError(
        503, 10163, "expected last sequence per subject temporarily unavailable"
    ),
    "JSStreamWrongLastSequenceConstantErr": JSApiError(400, 10164, "wrong last sequence"),
    "JSMessageTTLInvalidErr": JSApiError(400, 10165, "invalid per-message TTL"),
    "JSMessageTTLDisabledErr": JSApiError(400, 10166, "per-message TTL is disabled"),
    "JSStreamTooManyRequests": JSApiError(429, 10167, "too many requests"),
    "JSMessageIncrDisabledErr": JSApiError(400, 10168, "message counters is disabled"),
    "JSMessageIncrMissingErr": JSApiError(400, 10169, "message counter increment is missing"),
    "JSMessageIncrPayloadErr": JSApiError(400, 10170, "message counter has payload"),
    "JSMessageIncrInvalidErr": JSApiError(400, 10171, "message counter increment is invalid"),
    "JSMessageCounterBrokenErr": JSApiError(400, 10172, "message counter is broken"),
    "JSMirrorWithCountersErr": JSApiError(400, 10173, "stream mirrors can not also calculate counters"),
    "JSAtomicPublishDisabledErr": JSApiError(400, 10174, "atomic publish is disabled"),
    "JSAtomicPublishMissingSeqErr": JSApiError(400, 10175, "atomic publish sequence is missing"),
    "JSAtomicPublishIncompleteBatchErr": JSApiError(400, 10176, "atomic publish batch is incomplete"),
    "JSAtomicPublishUnsupportedHeaderBatchErr": JSApiError(
        400, 10177, "atomic publish unsupported header used: {header}"
    ),
    "JSConsumerPushWithPriorityGroupErr": JSApiError(400, 10178, "priority groups can not be used with push consumers"),
    "JSAtomicPublishInvalidBatchIDErr": JSApiError(400, 10179, "atomic publish batch ID is invalid"),
    "JSStreamMinLastSeqErr": JSApiError(412, 10180, "min last sequence"),
    "JSConsumerAckPolicyInvalidErr": JSApiError(400, 10181, "consumer ack policy invalid"),
    "JSConsumerReplayPolicyInvalidErr": JSApiError(400, 10182, "consumer replay policy invalid"),
    "JSConsumerAckWaitNegativeErr": JSApiError(400, 10183, "consumer ack wait needs to be positive"),
    "JSConsumerBackOffNegativeErr": JSApiError(400, 10184, "consumer backoff needs to be positive"),
    "JSRequiredApiLevelErr": JSApiError(412, 10185, "JetStream minimum api level required"),
    "JSMirrorWithMsgSchedulesErr": JSApiError(400, 10186, "stream mirrors can not also schedule messages"),
    "JSSourceWithMsgSchedulesErr": JSApiError(400, 10187, "stream source can not also schedule messages"),
    "JSMessageSchedulesDisabledErr": JSApiError(400, 10188, "message schedules is disabled"),
    "JSMessageSchedulesPatternInvalidErr": JSApiError(400, 10189, "message schedules pattern is invalid"),
    "JSMessageSchedulesTargetInvalidErr": JSApiError(400, 10190, "message schedules target is invalid"),
    "JSMessageSchedulesTTLInvalidErr": JSApiError(400, 10191, "message schedules invalid per-message TTL"),
    "JSMessageSchedulesRollupInvalidErr": JSApiError(400, 10192, "message schedules invalid rollup"),
    "JSStreamExpectedLastSeqPerSubjectInvalid": JSApiError(
        400, 10193, "missing sequence for expected last sequence per subject"
    ),
    "JSStreamOfflineReasonErrF": JSApiError(500, 10194, "stream is offline: {err}"),
    "JSConsumerOfflineReasonErrF": JSApiError(500, 10195, "consumer is offline: {err}"),
    "JSConsumerPriorityGroupWithPolicyNone": JSApiError(
        400, 10196, "consumer can not have priority groups when policy is none"
    ),
    "JSConsumerPinnedTTLWithoutPriorityPolicyNone": JSApiError(
        400, 10197, "PinnedTTL cannot be set when PriorityPolicy is none"
    ),
    "JSMirrorWithAtomicPublishErr": JSApiError(400, 10198, "stream mirrors can not also use atomic publishing"),
    "JSAtomicPublishTooLargeBatchErrF": JSApiError(400, 10199, "atomic publish batch is too large: {size}"),
    "JSAtomicPublishInvalidBatchCommitErr": JSApiError(400, 10200, "atomic publish batch commit is invalid"),
    "JSAtomicPublishContainsDuplicateMessageErr": JSApiError(
        400, 10201, "atomic publish batch contains duplicate message id"
    ),
    "JSClusterServerMemberChangeInflightErr": JSApiError(400, 10202, "cluster member change is in progress"),
    "JSMessageSchedulesSourceInvalidErr": JSApiError(400, 10203, "message schedules source is invalid"),
    "JSConsumerInvalidResetErr": JSApiError(400, 10204, "invalid reset: {err}"),
    "JSBatchPublishDisabledErr": JSApiError(400, 10205, "batch publish is disabled"),
    "JSBatchPublishInvalidPatternErr": JSApiError(400, 10206, "batch publish pattern is invalid"),
    "JSBatchPublishInvalidBatchIDErr": JSApiError(400, 10207, "batch publish ID is invalid"),
    "JSBatchPublishUnknownBatchIDErr": JSApiError(400, 10208, "batch publish ID unknown"),
    "JSMirrorWithBatchPublishErr": JSApiError(400, 10209, "stream mirrors can not also use batch publishing"),
    "JSAtomicPublishTooManyInflight": JSApiError(429, 10210, "atomic publish too many inflight"),
    "JSBatchPublishTooManyInflight": JSApiError(429, 10211, "batch publish too many inflight"),
    "JSMessageSchedulesSchedulerInvalidErr": JSApiError(400, 10212, "message schedules invalid scheduler"),
    "JSMirrorDurableConsumerCfgInvalid": JSApiError(400, 10213, "stream mirror consumer config is invalid"),
    "JSMirrorConsumerRequiresAckFCErr": JSApiError(
        400, 10214, "stream mirror consumer requires flow control ack policy"
    ),
    "JSSourceDurableConsumerCfgInvalid": JSApiError(400, 10215, "stream source consumer config is invalid"),
    "JSSourceDurableConsumerDuplicateDetected": JSApiError(400, 10216, "duplicate stream source consumer detected"),
    "JSSourceConsumerRequiresAckFCErr": JSApiError(
        400, 10217, "stream source consumer requires flow control ack policy"
    ),
    "JSConsumerAckFCRequiresPushErr": JSApiError(400, 10218, "flow control ack policy requires a push based consumer"),
    "JSConsumerAckFCRequiresFCErr": JSApiError(400, 10219, "flow control ack policy requires flow control"),
    "JSConsumerAckFCRequiresMaxAckPendingErr": JSApiError(
        400, 10220, "flow control ack policy requires max ack pending"
    ),
    "JSConsumerAckFCRequiresNoAckWaitErr": JSApiError(400, 10221, "flow control ack policy requires unset ack wait"),
    "JSConsumerAckFCRequiresNoMaxDeliverErr": JSApiError(
        400, 10222, "flow control ack policy requires unset max deliver"
    ),
    "JSMessageSchedulesTimeZoneInvalidErr": JSApiError(400, 10223, "message schedules time zone is invalid"),
    "JSClusterRescueErr": JSApiError(400, 10224, "JetStream system rescue not applied: {err}"),
    "JSConsumerStreamIdentityMismatchF": JSApiError(400, 10225, "consumer's stream identity does not match: {msg}"),
    "JSStreamReconfigureInProgressErr": JSApiError(400, 10226, "stream reconfiguration already in progress"),
    "JSMessageSourceHdrNotAllowedErr": JSApiError(400, 10227, "message stream source header is not allowed"),
}

#: The same entries by `err_code`.
JS_ERRORS_BY_CODE: dict[int, JSApiError] = {entry.err_code: entry for entry in JS_ERRORS.values()}


class JSError(Exception):
    """A JetStream failure that carries its table entry; only the API layer (and the PubAck writer)
    turn it into JSON. `description` is the final text (templates already filled)."""

    def __init__(self, entry: JSApiError | str, description: str | None = None, **values: object) -> None:
        if isinstance(entry, str):
            entry = JS_ERRORS[entry]
        self.entry = entry
        if description is None:
            description = entry.format(**values)
        self.description = description
        super().__init__(description)

    @property
    def code(self) -> int:
        return self.entry.code

    @property
    def err_code(self) -> int:
        return self.entry.err_code

    def to_json(self) -> dict[str, object]:
        """The `error` object: `{"code":…,"err_code":…,"description":…}` in nats-server's key order."""
        return {"code": self.entry.code, "err_code": self.entry.err_code, "description": self.description}


def js_error(name: str, description: str | None = None, **values: object) -> JSError:
    """`JSError` by constant name, e.g. `js_error("JSStreamInvalidConfigF", err="...")`."""
    return JSError(JS_ERRORS[name], description, **values)
