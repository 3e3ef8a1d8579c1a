"""The `$JS.API` subject table and dispatcher (layer 5): the only writer of API error JSON.

One internal subscription per JetStream account on `$JS.API.>` (and `$JS.<domain>.API.>`) routes a
request by its tokens to a handler. Handlers return the payload fields of the response (a dict in
nats-server's key order) or raise `JSError`; the dispatcher wraps both into
`{"type":"io.nats.jetstream.api.v1.<name>", ["error":{…},] …}` with the non-omitempty zero fields an
error response still carries. Subjects no handler claims get no reply at all (nats-server does the
same), and an unexpected exception is logged with its traceback and answered with the generic 10051.

The handler modules (`streams`, `direct`, `snapshot`, `consumers`) add their `Endpoint`s in
`JetStreamAPI.__init__`. The types both sides share live in `jsedge.api.request`, so the import graph
is one-way: dispatcher -> handlers -> request (re-exported here for callers that know them from here).
May import layers 0-4 and the api modules below it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from jsedge import gojson
from jsedge.api import consumers, direct, snapshot, streams
from jsedge.api.request import TYPE_PREFIX, Endpoint, Request
from jsedge.errors import JSError, js_error
from jsedge.jetstream import headers as H
from jsedge.jetstream.host import ServerHandle
from jsedge.jetstream.streamconfig import API_LEVEL
from jsedge.subjects import subject_matches

AUDIT_SUBJECT = b"$JS.EVENT.ADVISORY.API"


def client_info(server: Any, client: Any) -> dict[str, Any] | None:
    """nats-server's detailed ClientInfo of a client connection (advisories), empty fields omitted;
    None for server-internal requests."""
    if client is None or not hasattr(client, "cid"):
        return None
    from jsedge.jetstream.models import format_time_ns

    opts = client.opts
    info: dict[str, Any] = {
        "start": format_time_ns(int(client.start * 1e9)),
        "host": client.remote_host,
        "id": client.cid,
        "acc": client.account.name,
        "user": client.user.name if client.user is not None else "",
        "name": opts.get("name", ""),
        "lang": opts.get("lang", ""),
        "ver": opts.get("version", ""),
        "rtt": int(client.rtt * 1e9),
        "server": server.server_name,
        "kind": "Client",
        "client_type": "nats",
    }
    return {key: value for key, value in info.items() if value not in ("", 0)}


class JetStreamAPI:
    """Subscribes the API subjects of every JetStream account and dispatches requests."""

    def __init__(self, server: ServerHandle, jetstream: Any) -> None:
        self.server = server
        self.jetstream = jetstream
        self.endpoints: list[Endpoint] = []
        self.subs: list[tuple[Any, Any]] = []
        #: Clustered JetStream: the API subscriptions are announced to the routes (every server
        #: sees every request and the cluster's handlers decide who answers); `stream_exists`
        #: tells whether a stream exists anywhere in the cluster.
        self.routed = False
        self.stream_exists: Callable[[Any, str], bool] | None = None
        streams.register(self)
        direct.register(self)
        snapshot.register(self)
        consumers.register(self)

    def add(self, endpoint: Endpoint) -> None:
        self.endpoints.append(endpoint)

    def replace(self, endpoint: Endpoint) -> None:
        """Put `endpoint` in place of the one with the same prefix and arity (clustered JetStream
        installs its own handlers this way), or in front of all."""
        for i, old in enumerate(self.endpoints):
            if old.prefix == endpoint.prefix and old.arity == endpoint.arity:
                self.endpoints[i] = endpoint
                return
        self.endpoints.insert(0, endpoint)

    def start(self) -> None:
        prefixes = [b"$JS.API.>"]
        if self.jetstream.domain:
            prefixes.append(b"$JS." + self.jetstream.domain.encode() + b".API.>")
        for jsa in self.jetstream.accounts.values():
            for prefix in prefixes:
                callback = self._make_callback(jsa)
                # the domain's prefix is announced even on a single server: across a leaf link it is
                # how the other side reaches this JetStream (`$JS.<domain>.API`, `nats --js-domain`)
                routed = self.routed or prefix != b"$JS.API.>"
                self.subs.append(
                    (jsa.account, self.server.subscribe_internal(jsa.account, prefix, callback, routed=routed))
                )
        # an account without JetStream on a server with JetStream: every API call is answered
        # "JetStream not enabled for account" (10039), as nats-server answers it
        enabled = {id(jsa.account) for jsa in self.jetstream.accounts.values()}
        for account in list(getattr(self.server, "accounts", {}).values()):
            if id(account) in enabled or account.is_system:
                continue
            for prefix in prefixes:
                callback = self._make_disabled_callback(account)
                self.subs.append((account, self.server.subscribe_internal(account, prefix, callback, routed=False)))
        self.jetstream.direct_get_handler = self._direct_get

    def stop(self) -> None:
        for account, sub in self.subs:
            self.server.unsubscribe_internal(account, sub)
        self.subs = []
        self.jetstream.direct_get_handler = None

    def _make_callback(self, jsa: Any) -> Callable[..., None]:
        streams = jsa.streams

        def callback(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
            tokens = subject.split(b".")
            # `$JS.API.X` or `$JS.<domain>.API.X`
            rest = tokens[2:] if tokens[1] == b"API" else tokens[3:]
            if len(rest) > 2 and rest[0] == b"DIRECT" and rest[1] == b"GET":
                # the common case of a KV get: the stream's own queue subscription answers it
                stream = streams.get(rest[2].decode("utf-8", "replace"))
                if stream is not None and stream.direct_subs:
                    return
            if hdr_len >= 0:
                hdr, body = bytes(msg[:hdr_len]), bytes(msg[hdr_len:])
            else:
                hdr, body = b"", bytes(msg)
            self.dispatch(Request(jsa, rest, subject, reply, hdr, body, src))

        return callback

    def _make_disabled_callback(self, account: Any) -> Callable[..., None]:
        def callback(sub: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
            if not reply:
                return
            if any(subject_matches(imported, subject) for imported in account.service_imports):
                return  # the account imports this API from another account: that one answers
            tokens = subject.split(b".")
            rest = tokens[2:] if tokens[1] == b"API" else tokens[3:]
            if rest[:2] == [b"DIRECT", b"GET"]:
                # no stream answers there: what a client would get with nobody subscribed
                self.server.send_internal(account, reply, b"", b"NATS/1.0 503\r\n\r\n", b"")
                return
            endpoint = self.find(rest)
            if endpoint is None:
                return
            body = gojson.dumpb(self.error_response(endpoint, js_error("JSNotEnabledForAccountErr")))
            self.server.send_internal(account, reply, b"", b"", body)

        return callback

    def find(self, tokens: list[bytes]) -> Endpoint | None:
        for endpoint in self.endpoints:
            size = len(endpoint.prefix)
            if tuple(tokens[:size]) != endpoint.prefix:
                continue
            if endpoint.arity >= 0 and len(tokens) != endpoint.arity:
                continue
            if endpoint.arity < 0 and len(tokens) <= size:
                continue
            return endpoint
        return None

    def dispatch(self, request: Request) -> None:
        tokens = request.tokens
        if tokens[:2] == [b"DIRECT", b"GET"]:
            self._direct_without_stream(request)
            return
        endpoint = self.find(tokens)
        if endpoint is None:
            return  # nats-server: no subscriber, no reply
        jsa = request.jsa
        try:
            level = H.get_header(request.hdr, H.REQUIRED_API_LEVEL)
            if level is not None and (not level.strip().isdigit() or int(level) > API_LEVEL):
                raise js_error("JSRequiredApiLevelErr")
            payload = endpoint.handler(self, request)
        except JSError as exc:
            if endpoint.counted:
                jsa.api_errors += 1
            self.respond(request, self.error_response(endpoint, exc))
            return
        except Exception:
            self.server.logger.error(
                f"JetStream API request '{jsa.name} > {request.subject.decode(errors='replace')}' failed:\n"
                + traceback.format_exc()
            )
            if endpoint.counted:
                jsa.api_errors += 1
            error = js_error("JSStreamGeneralErrorF", err="unexpected internal error")
            self.respond(request, self.error_response(endpoint, error))
            return
        if payload is None:
            return  # the handler answered itself (or must stay silent)
        response = {"type": TYPE_PREFIX + endpoint.response}
        response.update(payload)
        self.respond(request, response)

    def error_response(self, endpoint: Endpoint, exc: JSError) -> dict[str, Any]:
        response: dict[str, Any] = {"type": TYPE_PREFIX + endpoint.response, "error": exc.to_json()}
        for key, value in endpoint.error_fields:
            response[key] = value
        return response

    def respond(self, request: Request, response: dict[str, Any]) -> None:
        # nats-server counts a call once it is answered ($JS.API.INFO shows total 0 on the first call)
        endpoint = self.find(request.tokens)
        if endpoint is not None and endpoint.counted:
            request.jsa.api_total += 1
        body = gojson.dumpb(response)
        if request.reply:
            hdr = request.response_hdr if "error" not in response else b""
            self.server.send_internal(request.jsa.account, request.reply, b"", hdr, body)
        self._audit(request, body)

    def _audit(self, request: Request, response: bytes) -> None:
        """`$JS.EVENT.ADVISORY.API`: every answered call, as nats-server's JSAPIAudit, when someone
        in the account listens."""
        account = request.jsa.account
        if not account.sublist.has_interest(AUDIT_SUBJECT):
            return
        from jsedge.jetstream import advisory

        fields: list[tuple[str, Any]] = [("server", self.server.server_name)]
        client = client_info(self.server, request.src)
        if client is not None:
            fields.append(("client", client))
        fields.append(("subject", request.subject.decode("utf-8", "replace")))
        if request.body:
            fields.append(("request", request.body.decode("utf-8", "replace")))
        fields.append(("response", response.decode("utf-8", "replace")))
        advisory.publish(
            self.server, account, AUDIT_SUBJECT.decode(), "api_audit", fields, domain=self.jetstream.domain
        )

    # ------------------------------------------------------------------ DIRECT.GET plumbing

    def _direct_without_stream(self, request: Request) -> None:
        """DIRECT.GET for a stream that does not serve it: nobody subscribes in nats-server, so the
        requester sees core no-responders. Our catch-all `$JS.API.>` sub must not hide that."""
        if len(request.tokens) < 3:
            return
        jsa = request.jsa
        stream = jsa.streams.get(request.tokens[2].decode("utf-8", "replace"))
        if stream is not None and stream.direct_subs:
            return  # the stream's own queue subscription answers
        name = request.tokens[2].decode("utf-8", "replace")
        src = request.src
        if self.stream_exists is not None:
            # a cluster: a replica elsewhere answers in the stream's queue group, unless there is no
            # such stream at all (then the requester's own server tells it: no responders)
            if self.stream_exists(jsa, name) or src is None or getattr(src, "kind", 0) != 0:
                return
        for other in jsa.streams.values():
            mirror = other.config.mirror
            if mirror is not None and mirror.name == name and other.config.mirror_direct:
                return  # a mirror with mirror_direct answers for its origin (mirror.py)
        src = request.src
        if request.reply and src is not None and getattr(src, "no_responders", False):
            src.on_no_responders(request.subject, request.reply)

    def _direct_get(self, stream: Any, src: Any, subject: bytes, reply: bytes, hdr_len: int, msg: bytes) -> None:
        if hdr_len >= 0:
            hdr, body = bytes(msg[:hdr_len]), bytes(msg[hdr_len:])
        else:
            hdr, body = b"", bytes(msg)
        try:
            direct.direct_get(self, stream, subject, reply, hdr, body)
        except Exception:
            self.server.logger.error("JetStream direct get failed:\n" + traceback.format_exc())


__all__ = ["AUDIT_SUBJECT", "TYPE_PREFIX", "Endpoint", "JetStreamAPI", "Request", "client_info"]
