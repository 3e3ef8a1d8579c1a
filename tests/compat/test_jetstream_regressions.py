"""JetStream inputs where jsedge once answered differently from nats-server (found by review and by
tests/compat/test_fuzz_jetstream.py): each runs on both servers and must get the answer written here.
"""

from __future__ import annotations

import base64
import json

import nats
import pytest

from tests.helpers import acheck_for

pytestmark = pytest.mark.compat


async def _request(nc, subject: str, body: bytes | dict = b"", headers: dict | None = None) -> dict:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await nc.request(subject, payload, timeout=2, headers=headers)
    return json.loads(reply.data)


async def _stream(nc, name: str, **config) -> None:
    created = await _request(nc, f"$JS.API.STREAM.CREATE.{name}", {"name": name, "subjects": [f"{name}.>"], **config})
    assert "error" not in created, created


def _err(answer: dict) -> int | None:
    return answer.get("error", {}).get("err_code")


PUBLISH_CASES = [
    # (stream config, headers, expected err_code or None for stored)
    ({"allow_msg_ttl": True}, {"Nats-TTL": "9999999999h"}, 10165),  # overflows int64 ns (was a traceback)
    ({"allow_msg_ttl": True}, {"Nats-TTL": "99999999999999999999"}, None),  # digits wrap in Go: accepted
    ({}, {"Nats-TTL": "0"}, 10165),
    ({}, {"Nats-TTL": "-1"}, 10165),
    ({}, {"Nats-TTL": "1s"}, 10166),
    ({}, {"Nats-TTL": ""}, None),
    ({}, {"Nats-Expected-Stream": ""}, None),
    ({}, {"Nats-Rollup": ""}, None),
    ({}, {"Nats-Expected-Last-Sequence": ""}, None),
    ({}, {"Nats-Expected-Last-Subject-Sequence-Subject": ""}, None),
    ({}, {"Nats-Incr": "1"}, 10168),
    ({}, {"Nats-Incr": "x"}, 10171),
    ({}, {"Nats-Batch-Id": "b1"}, 10174),
    ({}, {"Nats-Schedule": "@every 1s"}, 10188),
    ({}, {"Nats-Schedule-Time-Zone": "Bad/Zone"}, 10188),
    ({}, {"Nats-Schedule-Time-Zone": "UTC"}, None),
    ({}, {"Nats-Scheduler": "x"}, 10212),
    ({"allow_msg_counter": True}, {"Nats-Incr": "1"}, None),
    ({"allow_msg_counter": True}, {"Nats-Incr": "1", "Nats-Rollup": "sub"}, 10171),
]


@pytest.mark.parametrize(("config", "headers", "expected"), PUBLISH_CASES)
async def test_publish_headers(server_factory, tmp_path, config, headers, expected) -> None:
    server = server_factory(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(server.url)
    try:
        await _stream(nc, "R", **config)
        ack = await _request(nc, "R.a", b"x" if "Nats-Incr" not in headers else b"", headers=headers)
        assert _err(ack) == expected, ack
        info = await _request(nc, "$JS.API.STREAM.INFO.R")
        assert info["state"]["messages"] == (1 if expected is None else 0)
    finally:
        await nc.close()


async def test_fast_batch_reply_refused(server_factory, tmp_path) -> None:
    server = server_factory(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(server.url)
    try:
        await _stream(nc, "R")
        sub = await nc.subscribe("fb.>")
        await nc.publish("R.a", b"x", reply="fb.uuid.1.0.1.1.$FI")
        answer = json.loads((await sub.next_msg(timeout=2)).data)
        assert _err(answer) == 10205
    finally:
        await nc.close()


async def test_empty_header_block_is_stored(server_factory, tmp_path) -> None:
    server = server_factory(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(server.url)
    try:
        await _stream(nc, "R")
        await nc.request("R.a", b"x", headers={}, timeout=2)  # nats-py sends NATS/1.0 and no header
        message = (await _request(nc, "$JS.API.STREAM.MSG.GET.R", {"seq": 1}))["message"]
        assert base64.b64decode(message["hdrs"]) == b"NATS/1.0\r\n\r\n"
    finally:
        await nc.close()


API_CASES = [
    (
        "$JS.API.STREAM.CREATE.T",
        b'{"name":"T","subjects":["t"],"retention":null}',
        10025,
        'invalid JSON: can not unmarshal "null"',
    ),
    (
        "$JS.API.STREAM.CREATE.T",
        b'{"name":"T","subjects":["t"],"compression":null}',
        10025,
        "invalid JSON: unknown compression algorithm",
    ),
    ("$JS.API.STREAM.CREATE.T", b'{"name":"T","subjects":["t"],"sources":[false]}', 10025, None),
    ("$JS.API.STREAM.CREATE.T", b'{"name":"T","subjects":["t"]', 10025, "invalid JSON: unexpected EOF"),
    (
        "$JS.API.STREAM.CREATE.T",
        b"{not json",
        10025,
        "invalid JSON: invalid character 'n' looking for beginning of object key string at offset 2",
    ),
    (
        "$JS.API.CONSUMER.CREATE.S",
        b'{"stream_name":"S","config":{"deliver_policy":null}}',
        10025,
        'invalid JSON: can not unmarshal "null"',
    ),
    (
        "$JS.API.CONSUMER.CREATE.S",
        b'{"stream_name":"S","config":{"priority_policy":null}}',
        10025,
        "invalid JSON: unknown priority policy: null",
    ),
    (
        "$JS.API.CONSUMER.CREATE.S",
        b'{"stream_name":"S","action":null,"config":{}}',
        10025,
        "invalid JSON: unknown consumer action: null",
    ),
    (
        "$JS.API.CONSUMER.CREATE.S",
        b'{"stream_name":"S","config":{"name":"*"}}',
        10052,
        "consumer name can not contain '.', '*', '>', '\\', '/'",
    ),
    ("$JS.API.STREAM.MSG.GET.S", b'{"batch":-1}', 10003, "bad request"),
    ("$JS.API.STREAM.MSG.GET.S", b'{"seq":1,"batch":-1}', None, None),
]


@pytest.mark.parametrize(("subject", "body", "err_code", "description"), API_CASES)
async def test_api_answers(server_factory, tmp_path, subject, body, err_code, description) -> None:
    server = server_factory(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(server.url)
    try:
        await _stream(nc, "S", allow_direct=True)
        await nc.request("S.a", b"x", timeout=2)
        answer = await _request(nc, subject, body)
        assert _err(answer) == err_code, answer
        if description is not None:
            assert answer["error"]["description"] == description
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("body", "status", "description"),
    [
        (b'{"batch":-1}', "408", "Empty Request"),
        (b'{"seq":1,"batch":-1}', "204", "EOB"),
        (b'{"seq\xff":1}', "408", "Empty Request"),
    ],
)
async def test_direct_get_answers(server_factory, tmp_path, body, status, description) -> None:
    server = server_factory(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(server.url)
    try:
        await _stream(nc, "S", allow_direct=True)
        await nc.request("S.a", b"x", timeout=2)
        reply = await nc.request("$JS.API.DIRECT.GET.S", body, timeout=2)
        assert reply.headers.get("Status") == status and reply.headers.get("Description") == description
        if status == "204":
            assert reply.headers.get("Nats-Num-Pending") == "1" and reply.headers.get("Nats-Last-Sequence") == "0"
    finally:
        await nc.close()


async def test_unnamed_ephemeral_config_has_no_name(server_factory, tmp_path) -> None:
    server = server_factory(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(server.url)
    try:
        await _stream(nc, "S")
        created = await _request(nc, "$JS.API.CONSUMER.CREATE.S", {"stream_name": "S", "config": {}})
        assert len(created["name"]) == 8 and "name" not in created["config"]
        info = await _request(nc, f"$JS.API.CONSUMER.INFO.S.{created['name']}")
        assert info["name"] == created["name"] and "name" not in info["config"]
    finally:
        await nc.close()


async def test_an_expired_purge_marker_leaves_nothing_behind(server_factory, tmp_path) -> None:
    """A KV purge (KV-Operation: PURGE) with its own TTL, on a stream with subject delete markers:
    when it expires, no MaxAge marker replaces it (it was a delete marker itself), as nats-server
    does; an ordinary message that expires gets its marker (seq 3), which expires in turn."""
    server = server_factory(args=["-js", "-sd", str(tmp_path)])
    nc = await nats.connect(server.url)
    try:
        await _stream(nc, "KVM", allow_msg_ttl=True, subject_delete_marker_ttl=1_000_000_000, allow_rollup_hdrs=True)
        purge = {"KV-Operation": "PURGE", "Nats-Rollup": "sub", "Nats-TTL": "1s"}
        assert (await _request(nc, "KVM.k", b"", headers=purge))["seq"] == 1
        assert (await _request(nc, "KVM.m", b"v", headers={"Nats-TTL": "1s"}))["seq"] == 2

        async def emptied():
            state = (await _request(nc, "$JS.API.STREAM.INFO.KVM"))["state"]
            return state if state["messages"] == 0 and state["last_seq"] >= 3 else None

        state = await acheck_for(15, emptied, interval=0.1)
        assert state["last_seq"] == 3, state
    finally:
        await nc.close()
