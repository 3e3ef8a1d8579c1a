"""Account exports and imports in config mode (layer 2): messages and requests that cross accounts.

An account exports a *stream* (messages on a subject) or a *service* (requests on a subject, answered
by its responders), publicly or to listed accounts; another account imports it. The config reader
(jsedge.config) checks that every import is covered by an export open to the importer; this module
wires them with internal subscriptions:

* **Stream import** (exporter E, importer I): a subscription in E on the imported subject delivers
  each message into I, on the subject the import gives it (`prefix.` + subject, or `to` with the
  wildcards carried over), to I's subscribers and JetStream streams on this server. The
  subscription is announced to the routes, as nats-server announces its shadow subscriptions, so
  the exporter's messages published elsewhere come here too: each server delivers to its own
  importers (jsedge and nats-server nodes alike).
* **Service import**: a subscription in I on the local subject (`to`, else the exported subject)
  forwards each request into E on the exported subject, with a `Nats-Request-Info` header
  (`{"acc": I, "rtt": ns}`, as nats-server sets it) and a reply subject of E's own,
  `_R_.<6 chars>.<random>`; a subscription in E on `_R_.<6 chars>.>` maps each response back to the
  requester's reply subject in I. A singleton service keeps the mapping for one response, `stream`
  and `chunked` ones until `response_threshold` passes without a response (nats-server: 2 min).
  A reply on `$JS.ACK.` passes unchanged (pull consumers served across accounts, as nats-server).
  No responder in E: the mapping goes and a requester that asked for it gets the 503 status.

Where a request is forwarded: on the server where it entered the cluster (a request that came over
a route is never forwarded by a service import: the first server did it), and a response comes back
to the server holding the mapping. Service import subscriptions are not announced to routes; the
response wildcard is (a responder may sit on another server). A forwarded message does not trigger imports
again inside the forward (no chains, no loops).

Service latency tracking (an export's `latency`): a sampled request's first response publishes
nats-server's `io.nats.server.metric.v1.service_latency` to the latency subject in the exporting
account (requestor: account and RTT, or who it is when the import shares; responder: who it is;
start, service, system and total latency in ns, computed as nats-server backs them out of the
clients' RTTs); a responder on another server is measured there and merged in (`RemoteLatency`).
Not done: the error statuses of requests that got no response.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import OrderedDict
from typing import Any

from jsedge.config import export_allows
from jsedge.routing.sublist import KIND_ROUTER, ClientCore, Subscription, deliver_as
from jsedge.routing.tracing import set_header
from jsedge.subjects import subject_matches
from jsedge.transform import SubjectTransform

REQUEST_INFO = b"Nats-Request-Info"
_ACK_PREFIX = b"$JS.ACK."
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _token(size: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(size))


def _import_transform(src: str, dest: str) -> SubjectTransform | None:
    """`src` -> `dest` with dest's `*` and `>` taking src's wildcards in order (nats-server's
    implicit import mapping); None when the subjects are the same (the subject passes as is)."""
    if src == dest:
        return None
    number = 0
    tokens = []
    for token in dest.split("."):
        if token == "*":
            number += 1
            tokens.append(f"${number}")
        else:
            tokens.append(token)
    return SubjectTransform(src, ".".join(tokens))


class _Response:
    __slots__ = ("account", "reply", "singleton", "expires", "tracking")

    def __init__(self, account: Any, reply: bytes, singleton: bool, expires: float) -> None:
        self.account = account
        self.reply = reply
        self.singleton = singleton
        self.expires = expires
        #: A sampled request (service latency tracking): (start ns, requestor, share, export).
        self.tracking: tuple[int, Any, bool, Any] | None = None


_TRACE_HEADERS = (b"uber-trace-id", b"x-b3-traceid", b"b3", b"traceparent")


def _sampled(export: Any, hdr_len: int, msg: bytes) -> bool:
    """nats-server's shouldSample: a percentage, or with "headers" a request whose trace headers
    ask for it (X-B3-Sampled: 0 says no)."""
    if export is None or not export.latency_subject:
        return False
    sampling = int(export.latency_sampling)
    if sampling >= 100:
        return True
    if sampling > 0:
        return secrets.randbelow(100) < sampling
    if hdr_len <= 0:
        return False
    head = bytes(msg[:hdr_len]).lower()
    if b"\r\nx-b3-sampled: 0" in head:
        return False
    return b"\r\nx-b3-sampled: 1" in head or any(b"\r\n" + name + b":" in head for name in _TRACE_HEADERS)


def _rfc3339(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return text + ("." + f"{fraction:09d}".rstrip("0") if fraction else "") + "Z"


def client_info(server: Any, client: Any, full: bool) -> dict[str, Any]:
    """nats-server's ClientInfo of a client connection: the account and RTT only, or (shared,
    and always for a responder) who it is."""
    account = getattr(getattr(client, "account", None), "name", "")
    rtt = int((getattr(client, "rtt", 0.0) or 0.0) * 1e9)
    if not full:
        return {"acc": account, "rtt": rtt}
    opts = getattr(client, "opts", None) or {}
    user = getattr(client, "user", None)
    info: dict[str, Any] = {
        "start": _rfc3339(int(float(getattr(client, "start", 0.0) or 0.0) * 1e9)),
        "host": getattr(client, "remote_host", "") or "",
        "id": getattr(client, "cid", 0),
        "acc": account,
    }
    name = getattr(user, "name", "") or ""
    if name:
        info["user"] = name
    for key, field in (("name", "name"), ("lang", "lang"), ("version", "ver")):
        value = opts.get(key) if isinstance(opts, dict) else None
        if isinstance(value, str) and value:
            info[field] = value
    info["rtt"] = rtt
    info["server"] = server.server_id
    cluster = getattr(getattr(server.config, "cluster", None), "name", "")
    if cluster:
        info["cluster"] = cluster
    info["kind"] = "Client"
    info["client_type"] = "nats"
    return info


class _Responses:
    """The reply mappings of one exporting account on this server (`_R_.<prefix>.<token>`)."""

    def __init__(self, wiring: Imports, account: Any) -> None:
        self.wiring = wiring
        self.account = account
        self.prefix = b"_R_." + _token(6).encode() + b"."
        self.pending: OrderedDict[bytes, _Response] = OrderedDict()
        self.sub: Subscription = wiring.server.subscribe_internal(account, self.prefix + b">", self.on_response)

    def new_reply(self, importer: Any, reply: bytes, singleton: bool, threshold: float, tracked: bool = False) -> bytes:
        now = time.monotonic()
        self.expire(now)
        # nats-server's shape: _R_.xxxxxx.yyyyyy, and for a sampled request (with a system
        # account) .<this server's hash>.T, so the responder's server sends its measurement here
        suffix = b"." + self.wiring.latency.hash + b".T" if tracked and self.wiring.latency.hash else b""
        token = self.prefix + _token(6).encode() + suffix
        while token in self.pending:
            token = self.prefix + _token(6).encode() + suffix
        self.pending[token] = _Response(importer, reply, singleton, now + threshold)
        return token

    def track(self, token: bytes, requestor: Any, share: bool, export: Any) -> None:
        response = self.pending.get(token)
        if response is not None:
            response.tracking = (time.time_ns(), requestor, share, export)

    def _measure(self, token: bytes, response: _Response, responder: Any) -> None:
        """nats-server's sendTrackingLatency, for the first response of a sampled request. A
        response that came over a route waits for the responder's server's measurement (M2,
        `$SYS.LATENCY.M2.<this server's hash>`) and is merged with it, as nats-server does."""
        start, requestor, share, export = response.tracking  # type: ignore[misc]
        response.tracking = None
        server = self.wiring.server
        now = time.time_ns()
        service_rtt = now - start
        requestor_info = client_info(server, requestor, share) if requestor is not None else None
        responder_info = client_info(server, responder, True) if responder is not None else None
        request_rtt = requestor_info["rtt"] if requestor_info else 0
        responder_rtt = responder_info["rtt"] if responder_info else 0
        metric: dict[str, Any] = {
            "type": "io.nats.server.metric.v1.service_latency",
            "id": _token(22),
            "timestamp": _rfc3339(time.time_ns()),
            "status": 200,
        }
        if requestor_info is not None:
            metric["requestor"] = requestor_info
        if responder_info is not None:
            metric["responder"] = responder_info
        system = time.time_ns() - now if responder_rtt > 0 else 0
        metric["start"] = _rfc3339(start - request_rtt)
        metric["service"] = max(0, service_rtt - responder_rtt)
        metric["system"] = max(0, system)
        metric["total"] = request_rtt + service_rtt + system
        if responder is None and token.endswith(b".T"):
            latency = self.wiring.latency
            m2 = latency.m2.pop(token, None)
            if m2 is None:
                moment = time.monotonic()
                latency._prune(latency.m1, moment)
                latency.m1[token] = (metric, self.account, export.latency_subject, moment + 120.0)
                return
            merge_latency(metric, m2[0])
        self.wiring.send_latency(self.account, export.latency_subject, metric)

    def expire(self, now: float) -> None:
        pending = self.pending
        while pending:
            token, response = next(iter(pending.items()))
            if response.expires > now:
                break
            del pending[token]

    def on_response(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        routed = sub.matched or subject
        response = self.pending.get(routed)
        if response is None:
            return
        if response.singleton:
            del self.pending[routed]
        else:
            self.pending.move_to_end(routed)
        if response.tracking is not None:
            self._measure(routed, response, src if src is not None and src.kind != KIND_ROUTER else None)
        shown = subject if subject != routed else response.reply
        self.wiring.forward(response.account, response.reply, shown, reply, hdr_len, msg)


def server_hash(name: str) -> bytes:
    """nats-server's 8-letter hash of a server name (its `shash`: tracked reply suffixes, the
    remote latency subject)."""
    digest = hashlib.sha256(name.encode()).digest()
    return "".join(_ALPHABET[byte % 62] for byte in digest[:8]).encode()


def merge_latency(m1: dict[str, Any], m2: dict[str, Any]) -> None:
    """nats-server's ServiceLatency.merge: the requestor's server's measurement (M1) takes the
    responder and the service time measured where the responder is (M2); the system latency is
    what is left."""
    responder = m2.get("responder")
    rtt = int(responder.get("rtt") or 0) if isinstance(responder, dict) else 0
    service = int(m2.get("service") or 0)
    m1["system"] = max(0, int(m1.get("service") or 0) - (service + rtt))
    m1["service"] = max(0, service)
    if isinstance(responder, dict):
        m1["responder"] = responder
    # (keep the field order nats-server's JSON has: responder before start)
    for key in ("start", "service", "system", "total"):
        m1[key] = m1.pop(key)


class RemoteLatency:
    """Service latency across routes, nats-server's two halves:

    * here the requestor's side: a sampled request's reply ends `.<hash>.T`; this server takes
      `$SYS.LATENCY.M2.<hash>` (system account) and merges each with its own measurement (M1) of the
      response that came back over a route (`_Responses._measure`), whichever arrives first waiting.
    * here the responder's side: a request that came over a route with such a reply, to a service
      an account here exports with latency tracking (`track`: the route's slow path), is timed
      until a local client responds (an internal `_R_.*.*.*.T` subscription in the exporting
      account); then `{"account", "req_id", "m2"}` goes to `$SYS.LATENCY.M2.<hash of the reply>`.
    """

    def __init__(self, wiring: Imports) -> None:
        self.wiring = wiring
        server = wiring.server
        self.hash = server_hash(server.server_name) if getattr(server, "events", None) is not None else b""
        #: requestor's side: reply -> (M1, exporting account, latency subject, expires) / (M2, expires)
        self.m1: dict[bytes, tuple[dict[str, Any], Any, str, float]] = {}
        self.m2: dict[bytes, tuple[dict[str, Any], float]] = {}
        #: responder's side: reply -> (start ns, exporting account name, expires)
        self.requests: dict[bytes, tuple[int, str, float]] = {}
        #: accounts with a latency-tracked service export: name -> the exports' subjects
        self.tracked: dict[str, list[bytes]] = {}
        self.subs: list[tuple[Any, Subscription]] = []

    def wire(self) -> None:
        server = self.wiring.server
        self.hash = server_hash(server.server_name) if server.events is not None else b""
        self.tracked = {}
        for account_config in server.config.accounts:
            subjects = [e.subject.encode() for e in account_config.exports if e.kind == "service" and e.latency_subject]
            account = server.accounts.get(account_config.name)
            if subjects and account is not None:
                self.tracked[account.name] = subjects
                sub = server.subscribe_internal(account, b"_R_.*.*.*.T", self._on_local_response, routed=False)
                self.subs.append((account, sub))
        events = server.events
        if self.hash and self.tracked and events is not None:
            subject = b"$SYS.LATENCY.M2." + self.hash
            self.subs.append((events.system, server.subscribe_internal(events.system, subject, self._on_m2)))

    def unwire(self) -> None:
        for account, sub in self.subs:
            self.wiring.server.unsubscribe_internal(account, sub)
        self.subs = []

    @staticmethod
    def _prune(table: dict[bytes, Any], now: float) -> None:
        if len(table) > 1024:
            for key in [k for k, v in table.items() if v[-1] <= now]:
                del table[key]

    # ---- the responder's side

    def track(self, account: Any, subject: bytes, reply: bytes) -> None:
        """A request for `subject` in `account` came over a route with a tracked reply."""
        subjects = self.tracked.get(account.name)
        if not subjects or not any(subject_matches(s, subject) for s in subjects):
            return
        now = time.monotonic()
        self._prune(self.requests, now)
        self.requests[reply] = (time.time_ns(), account.name, now + 120.0)

    def _on_local_response(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if src is None or src.kind == KIND_ROUTER:
            return
        entry = self.requests.pop(subject, None)
        if entry is None:
            return
        start, account_name, _expires = entry
        server = self.wiring.server
        responder = client_info(server, src, True)
        rtt = int(responder.get("rtt") or 0)
        service = max(0, time.time_ns() - start - rtt)
        m2 = {
            "type": "",
            "id": "",
            "timestamp": "0001-01-01T00:00:00Z",
            "status": 200,
            "responder": responder,
            "start": _rfc3339(start),
            "service": service,
            "system": 0,
            "total": service + rtt,
        }
        body = json.dumps({"account": account_name, "req_id": subject.decode(), "m2": m2}, separators=(",", ":"))
        events = server.events
        if events is not None:
            target = b"$SYS.LATENCY.M2." + subject.split(b".")[-2]
            server.send_internal(events.system, target, b"", b"", body.encode())

    # ---- the requestor's side

    def _on_m2(self, sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        try:
            document = json.loads(bytes(msg[hdr_len:] if hdr_len > 0 else msg))
            token = str(document["req_id"]).encode()
            m2 = document["m2"]
        except (ValueError, KeyError, TypeError):
            self.wiring.server.logger.error("Error unmarshalling remote latency measurement")
            return
        if not isinstance(m2, dict):
            return
        waiting = self.m1.pop(token, None)
        if waiting is None:
            now = time.monotonic()
            self._prune(self.m2, now)
            self.m2[token] = (m2, now + 120.0)
            return
        metric, account, latency_subject, _expires = waiting
        merge_latency(metric, m2)
        self.wiring.send_latency(account, latency_subject, metric)


class Imports:
    """Every import of the server's accounts, wired by `wire()` and undone by `unwire()`."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.subs: list[tuple[Any, Subscription]] = []
        self.responses: dict[str, _Responses] = {}
        self.latency = RemoteLatency(self)
        #: Set while a forward is delivering: imports do not chain.
        self.forwarding = False
        #: The stand-in publisher of local-only forwards (a route's kind: nothing goes to routes).
        self._local_src: Any = None

    # ------------------------------------------------------------------ wiring

    def wire(self) -> None:
        self.unwire()
        server = self.server
        exports = {account.name: account.exports for account in server.config.accounts}
        self.latency.wire()
        for account_config in server.config.accounts:
            importer = server.accounts.get(account_config.name)
            if importer is None:
                continue
            importer.service_imports = []
            for entry in account_config.imports:
                exporter = server.accounts.get(entry.account)
                if exporter is None:
                    continue
                if entry.kind == "stream":
                    self._wire_stream(importer, exporter, entry)
                else:
                    allowed = (e for e in exports.get(entry.account, ()) if export_allows(e, entry, importer.name))
                    export = next(allowed, None)
                    self._wire_service(importer, exporter, entry, export)

    def unwire(self) -> None:
        self.latency.unwire()
        for account, sub in self.subs:
            self.server.unsubscribe_internal(account, sub)
        self.subs = []
        for responses in self.responses.values():
            self.server.unsubscribe_internal(responses.account, responses.sub)
        self.responses = {}
        for account in self.server.accounts.values():
            account.service_imports = []

    def _wire_stream(self, importer: Any, exporter: Any, entry: Any) -> None:
        if entry.prefix:
            transform: SubjectTransform | None = _import_transform(entry.subject, entry.prefix + "." + entry.subject)
        else:
            transform = _import_transform(entry.subject, entry.to) if entry.to else None

        def on_message(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
            if self.forwarding:
                return
            routed = sub.matched or subject
            target = transform.apply(routed) if transform is not None else routed
            if target is None:
                return
            shown = target if subject == routed else subject  # a JetStream delivery shows its own subject
            self.forward_local(importer, target, shown, reply, hdr_len, msg)

        # announced like nats-server's shadow subscriptions: the exporter's messages published on
        # another server come here, and each server delivers them to its own importers
        sub = self.server.subscribe_internal(exporter, entry.subject.encode(), on_message, routed=True)
        self.subs.append((exporter, sub))

    def _wire_service(self, importer: Any, exporter: Any, entry: Any, export: Any) -> None:
        local = entry.to or entry.subject
        transform = _import_transform(local, entry.subject)
        singleton = export is None or export.response_type == "singleton"
        threshold = export.response_threshold if export is not None else 120.0
        share = bool(entry.share)

        def on_request(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
            if self.forwarding or (src is not None and src.kind == KIND_ROUTER):
                return
            target = transform.apply(subject) if transform is not None else subject
            if target is None:
                return
            new_reply = reply
            responses = None
            if reply and not reply.startswith(_ACK_PREFIX):
                responses = self._responses(exporter)
                sampled = _sampled(export, hdr_len, msg)
                new_reply = responses.new_reply(importer, reply, singleton, threshold, tracked=sampled)
                if sampled:
                    responses.track(new_reply, src, share, export)
            if src is not None:
                info = {"acc": importer.name, "rtt": int((getattr(src, "rtt", 0.0) or 0.0) * 1e9)}
                msg, hdr_len = set_header(msg, hdr_len, REQUEST_INFO, json.dumps(info, separators=(",", ":")).encode())
            if self.forward(exporter, target, target, new_reply, hdr_len, msg) == 0:
                if responses is not None:
                    responses.pending.pop(new_reply, None)
                if reply and src is not None and getattr(src, "no_responders", False):
                    src.on_no_responders(subject, reply)

        sub = self.server.subscribe_internal(importer, local.encode(), on_request, routed=False)
        self.subs.append((importer, sub))
        importer.service_imports.append(local.encode())

    def _responses(self, exporter: Any) -> _Responses:
        responses = self.responses.get(exporter.name)
        if responses is None:
            responses = self.responses[exporter.name] = _Responses(self, exporter)
        return responses

    # ------------------------------------------------------------------ forwarding

    def send_latency(self, account: Any, subject: str, metric: dict[str, Any]) -> None:
        body = json.dumps(metric, separators=(",", ":")).encode()
        self.server.send_internal(account, subject.encode(), b"", b"", body)

    def forward_local(self, account: Any, subject: bytes, shown: bytes, reply: bytes, hdr_len: int, msg: bytes) -> int:
        """Deliver a stream-imported message into `account` on this server only (its clients, leaf
        connections and JetStream streams; one member of each queue group here), as nats-server's
        shadow subscriptions do: every server with importers receives the exporter's message and
        delivers it to its own."""
        if self._local_src is None:
            core = ClientCore()
            core.kind = KIND_ROUTER  # as if it came over a route: it goes to no route
            core.pending = self.server.pending
            self._local_src = core
        queues = [group[0].queue for group in account.sublist.match(subject).qsubs if group]
        outer = self.forwarding
        self.forwarding = True
        try:
            count = deliver_as(account.sublist, self._local_src, subject, shown, reply, hdr_len, msg, queues)
        finally:
            self.forwarding = outer
        self.server.schedule_flush()
        return count

    def forward(self, account: Any, subject: bytes, shown: bytes, reply: bytes, hdr_len: int, msg: bytes) -> int:
        """Deliver into `account` as a message published there by the server (its subscribers on
        every server, its JetStream streams); imports do not fire again inside (a response that
        an internal responder sends at once still goes back: response mappings are not imports)."""
        outer = self.forwarding
        self.forwarding = True
        try:
            count = deliver_as(account.sublist, None, subject, shown, reply, hdr_len, msg)
        finally:
            self.forwarding = outer
        self.server.schedule_flush()
        return count
