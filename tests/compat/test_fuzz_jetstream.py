"""Differential JetStream fuzzers: `$JS.API` request bodies and publish headers, on jsedge and
nats-server, compared answer by answer.

* API bodies: stream and consumer create requests built from a valid config with fields of every
  JSON type and range added or replaced (and sometimes a syntax error), message get and direct get
  requests: the same JSON answer (`err_code`, description, echoed config) on both servers.
* Publish headers: a fresh stream per case (one of several configs), one to three publishes with
  headers drawn from every header nats-server reads, values empty, overflowing, negative or
  garbage: the same PubAck (or error) for each publish and the same stored messages afterwards.

Each case uses fresh stream names so state never drifts between cases. jsedge's log must not show
a traceback. CI runs a bounded, derandomized batch; a long run:

    JSEDGE_FUZZ_EXAMPLES=5000 python -m pytest tests/compat/test_fuzz_jetstream.py

(`JSEDGE_FUZZ_SEED=<n>` picks another seed). Mismatches found become regression tests in
tests/compat/test_jetstream_regressions.py.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os

import nats
import pytest
from helpers import ServerProcess
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.compat

EXAMPLES = int(os.environ.get("JSEDGE_FUZZ_EXAMPLES", "60"))
SEED = int(os.environ.get("JSEDGE_FUZZ_SEED", "20261203"))
LONG_RUN = "JSEDGE_FUZZ_EXAMPLES" in os.environ
_names = itertools.count(1)

STREAM_FIELDS = [
    "name",
    "description",
    "subjects",
    "retention",
    "max_consumers",
    "max_msgs",
    "max_bytes",
    "max_age",
    "max_msgs_per_subject",
    "max_msg_size",
    "discard",
    "storage",
    "num_replicas",
    "no_ack",
    "duplicate_window",
    "placement",
    "mirror",
    "sources",
    "compression",
    "first_seq",
    "subject_transform",
    "republish",
    "allow_direct",
    "mirror_direct",
    "discard_new_per_subject",
    "sealed",
    "deny_delete",
    "deny_purge",
    "allow_rollup_hdrs",
    "consumer_limits",
    "allow_msg_ttl",
    "subject_delete_marker_ttl",
    "persist_mode",
    "metadata",
    "pedantic",
    "unknown_field",
    "MAX_MSGS",
    "Retention",
]
CONSUMER_FIELDS = [
    "durable_name",
    "name",
    "description",
    "deliver_policy",
    "opt_start_seq",
    "opt_start_time",
    "ack_policy",
    "ack_wait",
    "max_deliver",
    "backoff",
    "filter_subject",
    "filter_subjects",
    "replay_policy",
    "rate_limit_bps",
    "sample_freq",
    "max_waiting",
    "max_ack_pending",
    "flow_control",
    "headers_only",
    "max_batch",
    "max_expires",
    "max_bytes",
    "deliver_subject",
    "deliver_group",
    "idle_heartbeat",
    "inactive_threshold",
    "num_replicas",
    "mem_storage",
    "metadata",
    "pause_until",
    "unknown",
    "ACK_POLICY",
]
MSG_GET_FIELDS = [
    "seq",
    "last_by_subj",
    "next_by_subj",
    "batch",
    "max_bytes",
    "start_time",
    "multi_last",
    "up_to_seq",
    "up_to_time",
    "no_hdr",
    "bogus",
]

scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, 1, -1, 2, 100, 10**9, 10**18, 2**63 - 1, 2**63, -(2**63), 2**64, 1.5, 1e3, -0.0]),
    st.sampled_from(
        [
            "",
            "x",
            "limits",
            "interest",
            "workqueue",
            "memory",
            "file",
            "new",
            "old",
            "none",
            "s2",
            "all",
            "last",
            "explicit",
            "instant",
            "original",
            "1s",
            "async",
            "default",
            "foo.>",
            "*",
            "2020-01-01T00:00:00Z",
            "not a time",
            "\u00e9",
            "a.b",
        ]
    ),
)
value = st.recursive(
    scalar,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["name", "allow", "subject", "src", "dest", "max_ack_pending", "x", "ack_policy"]),
            inner,
            max_size=2,
        )
    ),
    max_leaves=5,
)


@st.composite
def body(draw: st.DrawFn, base: dict, fields: list[str]) -> bytes:
    document = dict(base)
    for _ in range(draw(st.integers(0, 3))):
        document[draw(st.sampled_from(fields))] = draw(value)
    text = json.dumps(document, separators=(",", ":")).encode()
    mutation = draw(st.integers(0, 12))
    if mutation == 0:
        text = text[: draw(st.integers(0, len(text)))]
    elif mutation == 1:
        text += draw(st.sampled_from([b" x", b"{}", b'{"name":"Z"}', b" ", b"[]", b"null"]))
    elif mutation == 2:
        position = draw(st.integers(0, len(text)))
        text = text[:position] + draw(st.sampled_from([b",", b"}", b'"', b"\x00", b"\xff", b"\\"])) + text[position:]
    return text


@st.composite
def api_case(draw: st.DrawFn) -> tuple[str, bytes, bytes]:
    """(kind, body, extra): kind picks the endpoint; names are filled in per server run."""
    kind = draw(st.sampled_from(["stream", "stream", "consumer", "consumer", "msg_get", "direct_get"]))
    if kind == "stream":
        return kind, draw(body({"name": "@S", "subjects": ["@s.>"], "storage": "memory"}, STREAM_FIELDS)), b""
    if kind == "consumer":
        base = {"stream_name": "@S", "config": {"durable_name": "C", "ack_policy": "explicit"}}
        inner = draw(body(base["config"], CONSUMER_FIELDS))
        if draw(st.booleans()):
            text = b'{"stream_name":"@S","config":' + inner + b"}"
        else:
            text = draw(body(base, ["stream_name", "config", "action", "pedantic", "x"]))
        return kind, text, draw(st.sampled_from([b"", b".C", b".D", b".C.x.>"]))
    fields = MSG_GET_FIELDS
    return kind, draw(body({"seq": 1}, fields)), b""


async def run_api_case(nc, case: tuple[str, bytes, bytes], name: str) -> list:
    kind, raw, extra = case
    raw = raw.replace(b"@S", name.encode()).replace(b"@s", name.lower().encode())
    out: list = []

    async def request(subject: str, payload: bytes) -> None:
        try:
            reply = await nc.request(subject, payload, timeout=2)
        except nats.errors.NoRespondersError:
            out.append("no responders")
            return
        except nats.errors.TimeoutError:
            out.append("timeout")
            return
        out.append(_normalize(reply.headers, reply.data))

    if kind == "stream":
        await request(f"$JS.API.STREAM.CREATE.{name}", raw)
    else:
        await request(
            f"$JS.API.STREAM.CREATE.{name}",
            json.dumps(
                {"name": name, "subjects": [name.lower() + ".>"], "storage": "memory", "allow_direct": True}
            ).encode(),
        )
        await nc.request(name.lower() + ".a", b"one", headers={"H": "1"}, timeout=2)  # stored: acked
        await nc.request(name.lower() + ".b", b"two", timeout=2)
        if kind == "consumer":
            await request(f"$JS.API.CONSUMER.CREATE.{name}{extra.decode()}", raw)
        elif kind == "msg_get":
            await request(f"$JS.API.STREAM.MSG.GET.{name}", raw)
        else:
            sub = await nc.subscribe(nc.new_inbox())
            await nc.publish(f"$JS.API.DIRECT.GET.{name}", raw, reply=sub.subject)
            try:
                while True:
                    msg = await sub.next_msg(timeout=0.3)
                    out.append(_normalize(msg.headers, msg.data))
            except nats.errors.TimeoutError:
                pass
            await sub.unsubscribe()
    await nc.request(f"$JS.API.STREAM.DELETE.{name}", b"", timeout=2)
    return out


_VOLATILE = {"created", "ts", "first_ts", "last_ts", "time", "timestamp", "_nats.ver", "Nats-Time-Stamp"}


def _normalize(headers, data: bytes):
    def scrub(obj):
        if isinstance(obj, dict):
            if obj.get("type") == "io.nats.jetstream.api.v1.consumer_create_response" and len(obj.get("name", "")) == 8:
                obj = {**obj, "name": "<generated>"}  # ephemeral names are random
            return {k: scrub(v) for k, v in obj.items() if k not in _VOLATILE}
        if isinstance(obj, list):
            return [scrub(v) for v in obj]
        return obj

    try:
        document = scrub(json.loads(data)) if data else None
    except ValueError:
        document = data
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict) and error.get("err_code") == 10025:
        # Go's decoder words JSON errors its own way (its scanner and reflection paths): the code is
        # what clients act on, the text is compared by the regression tests where it is stable.
        error["description"] = "invalid JSON: ..."
    return ({k: v for k, v in (headers or {}).items() if k not in _VOLATILE}, document)


# ------------------------------------------------------------------------------ publish headers

HEADER_NAMES = [
    "Nats-Msg-Id",
    "Nats-Expected-Stream",
    "Nats-Expected-Last-Sequence",
    "Nats-Expected-Last-Subject-Sequence",
    "Nats-Expected-Last-Subject-Sequence-Subject",
    "Nats-Expected-Last-Msg-Id",
    "Nats-Rollup",
    "Nats-TTL",
    "Nats-Incr",
    "Nats-Batch-Id",
    "Nats-Batch-Sequence",
    "Nats-Batch-Commit",
    "Nats-Schedule",
    "Nats-Schedule-Time-Zone",
    "Nats-Schedule-Next",
    "Nats-Scheduler",
    "Nats-Stream-Source",
    "Nats-Request-Info",
    "Nats-Marker-Reason",
    "X-Other",
]
HEADER_VALUES = st.sampled_from(
    [
        "",
        "0",
        "1",
        "2",
        "-1",
        "00",
        "abc",
        "1s",
        "500ms",
        "never",
        "NEVER",
        "99999999999999999999",
        "9999999999h",
        "sub",
        "all",
        "SUB",
        "bad",
        "@S",
        "@s.a",
        "@s.b",
        "purge",
        "UTC",
        "Bad/Zone",
        "@every 1s",
        "@at 2020-01-01T00:00:00Z",
        "id-1",
        "id-2",
        "+5",
        "1_0",
        "18446744073709551615",
        "18446744073709551616",
    ]
)
STREAM_CONFIGS = [
    {},
    {"allow_msg_ttl": True},
    {"allow_rollup_hdrs": True},
    {"allow_rollup_hdrs": True, "deny_purge": True},
    {"retention": "interest"},
    {"max_msg_size": 40},
    {"discard": "new", "max_msgs": 1},
    {"max_msgs_per_subject": 1, "discard": "new", "discard_new_per_subject": True},
    {"allow_msg_ttl": True, "subject_delete_marker_ttl": 5_000_000_000},
    {"duplicate_window": 0},
]


@st.composite
def publish_case(draw: st.DrawFn):
    config = {**draw(st.sampled_from(STREAM_CONFIGS)), "storage": draw(st.sampled_from(["memory", "file"]))}
    publishes = []
    for _ in range(draw(st.integers(1, 3))):
        headers = {}
        for _ in range(draw(st.integers(0, 3))):
            headers[draw(st.sampled_from(HEADER_NAMES))] = draw(HEADER_VALUES)
        subject = draw(st.sampled_from(["@s.a", "@s.b"]))
        data = draw(st.sampled_from([b"", b"x", b"y" * 50]))
        fast_batch = draw(st.integers(0, 9)) == 0
        publishes.append((subject, headers, data, fast_batch))
    return config, publishes


async def run_publish_case(nc, case, name: str) -> list:
    config, publishes = case
    lower = name.lower()

    def fill(text: str) -> str:
        return text.replace("@S", name).replace("@s", lower)

    out: list = []
    document = {"name": name, "subjects": [lower + ".>"], **config}
    reply = await nc.request(f"$JS.API.STREAM.CREATE.{name}", json.dumps(document).encode(), timeout=2)
    out.append(_normalize(reply.headers, reply.data))
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox + ".>")
    for index, (subject, headers, data, fast_batch) in enumerate(publishes):
        reply_subject = f"{inbox}.{index}" + (".1.0.1.1.$FI" if fast_batch else "")
        await nc.publish(fill(subject), data, reply=reply_subject, headers={k: fill(v) for k, v in headers.items()})
        try:
            msg = await sub.next_msg(timeout=2)
            out.append(_normalize(msg.headers, msg.data))
        except nats.errors.TimeoutError:
            out.append("timeout")
    await sub.unsubscribe()
    info = await nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=2)
    state = json.loads(info.data).get("state", {})
    out.append({k: state.get(k) for k in ("messages", "first_seq", "last_seq", "num_deleted", "num_subjects")})
    for seq in range(state.get("first_seq", 1) or 1, (state.get("last_seq") or 0) + 1):
        got = await nc.request(f"$JS.API.STREAM.MSG.GET.{name}", json.dumps({"seq": seq}).encode(), timeout=2)
        message = json.loads(got.data).get("message")
        if message:
            hdrs = base64.b64decode(message.get("hdrs", "")) if message.get("hdrs") else b""
            out.append((message["subject"], hdrs, message.get("data")))
    await nc.request(f"$JS.API.STREAM.DELETE.{name}", b"", timeout=2)
    return out


# ------------------------------------------------------------------------------ harness


def _diff(ref: list, got: list) -> str:
    lines = []
    for index in range(max(len(ref), len(got))):
        a = ref[index] if index < len(ref) else "<missing>"
        b = got[index] if index < len(got) else "<missing>"
        if a != b:
            lines.append(f"  [{index}] nats:   {a!r}\n  [{index}] jsedge: {b!r}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    pair = {
        kind: ServerProcess(kind, args=["-js", "-sd", str(tmp_path_factory.mktemp(kind))])
        for kind in ("nats", "jsedge")
    }
    yield pair
    for server in pair.values():
        server.cleanup()


def _fuzz(servers, strategy, runner) -> None:
    loop = asyncio.new_event_loop()
    conns = {kind: loop.run_until_complete(nats.connect(server.url)) for kind, server in servers.items()}
    mismatches: list[str] = []

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not LONG_RUN,
        database=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case) -> None:
        name = f"F{next(_names)}"
        results = {kind: loop.run_until_complete(runner(conns[kind], case, name)) for kind in conns}
        if results["nats"] != results["jsedge"]:
            mismatches.append(f"case {case!r}\n" + _diff(results["nats"], results["jsedge"]))
            if LONG_RUN:
                print(mismatches[-1], flush=True)

    try:
        run()
    finally:
        for conn in conns.values():
            loop.run_until_complete(conn.close())
        loop.close()
    jsedge = servers["jsedge"]
    assert not [line for line in jsedge.log_lines() if "Traceback" in line], "\n".join(jsedge.log_lines()[-40:])
    assert not mismatches, f"{len(mismatches)} of {EXAMPLES} cases differ:\n" + "\n".join(mismatches[:8])


@pytest.mark.timeout(60 + EXAMPLES * 4)
def test_api_body_fuzz(servers) -> None:
    _fuzz(servers, api_case(), run_api_case)


@pytest.mark.timeout(60 + EXAMPLES * 4)
def test_publish_header_fuzz(servers) -> None:
    _fuzz(servers, publish_case(), run_publish_case)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.timeout(240)
def test_streams_leave_no_memory_behind(servers) -> None:
    """Creating, filling and deleting streams (the fuzzers' pattern) returns jsedge's memory to its
    baseline: no per-stream leak."""
    jsedge = servers["jsedge"]
    loop = asyncio.new_event_loop()

    async def burst(count: int) -> None:
        nc = await nats.connect(jsedge.url)
        try:
            for _ in range(count):
                name = f"L{next(_names)}"
                await nc.request(
                    f"$JS.API.STREAM.CREATE.{name}",
                    json.dumps({"name": name, "subjects": [name.lower() + ".>"], "allow_msg_ttl": True}).encode(),
                    timeout=2,
                )
                for index in range(5):
                    await nc.request(f"{name.lower()}.{index}", b"x" * 100, headers={"Nats-TTL": "1h"}, timeout=2)
                await nc.request(
                    f"$JS.API.CONSUMER.CREATE.{name}",
                    json.dumps(
                        {"stream_name": name, "config": {"durable_name": "d", "ack_policy": "explicit"}}
                    ).encode(),
                    timeout=2,
                )
                await nc.request(f"$JS.API.STREAM.DELETE.{name}", b"", timeout=2)
        finally:
            await nc.close()

    try:
        loop.run_until_complete(burst(100))  # warm-up
        baseline = _rss_kib(jsedge.pid)
        loop.run_until_complete(burst(400))
        grown = _rss_kib(jsedge.pid) - baseline
    finally:
        loop.close()
    assert grown < 4 * 1024, f"RSS grew by {grown} KiB over 400 streams"
