"""JetStream API on the wire: byte-exact PubAcks, DIRECT.GET headers and status replies, silence for
unknown subjects, the API-level header, the error table, the dispatcher's exception path, and the
/jsz and /healthz JetStream parts. Raw protocol via `RawClient` where bytes matter.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest

from jsedge.errors import JS_ERRORS, JS_ERRORS_BY_CODE, JSError, js_error
from tests.helpers import RawClient, ServerProcess

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    directory = tmp_path_factory.mktemp("jsapi")
    with ServerProcess("jsedge", ["-js", "-sd", str(directory)], http=True) as server:
        yield server


def connect(srv) -> RawClient:
    client = RawClient(srv.port)
    client.read_info()
    client.send(b'CONNECT {"verbose":false,"headers":true,"no_responders":true,"protocol":1}\r\nPING\r\n')
    line = client.read_line()
    while line.startswith(b"INFO "):  # protocol 1 clients may get an updated INFO after CONNECT
        line = client.read_line()
    assert line == b"PONG\r\n"
    return client


def read_msg(client: RawClient) -> tuple[bytes, bytes, bytes]:
    """(control line, header block, payload) of the next MSG/HMSG."""
    line = client.read_line()
    while line.startswith(b"INFO "):  # an updated INFO may follow CONNECT at any time
        line = client.read_line()
    parts = line.split()
    if parts[0] == b"HMSG":
        hdr_len, total = int(parts[-2]), int(parts[-1])
        blob = client.read_exactly(total + 2)
        return line, blob[:hdr_len], blob[hdr_len:total]
    total = int(parts[-1])
    return line, b"", client.read_exactly(total + 2)[:total]


def request(client: RawClient, subject: str, body: bytes = b"", hdr: bytes = b"") -> tuple[bytes, bytes]:
    if hdr:
        client.send(f"HPUB {subject} _R.1 {len(hdr)} {len(hdr) + len(body)}\r\n".encode() + hdr + body + b"\r\n")
    else:
        client.send(f"PUB {subject} _R.1 {len(body)}\r\n".encode() + body + b"\r\n")
    _, h, payload = read_msg(client)
    return h, payload


@pytest.fixture
def client(srv):
    c = connect(srv)
    c.send(b"SUB _R.> 1\r\n")
    yield c
    c.close()


def create(client: RawClient, name: str, **config) -> dict:
    config = {"name": name, "storage": "memory", **config}
    _, body = request(client, f"$JS.API.STREAM.CREATE.{name}", json.dumps(config).encode())
    reply = json.loads(body)
    assert "error" not in reply, reply
    return reply


def test_puback_bytes(client):
    create(client, "PA", subjects=["pa"])
    _, body = request(client, "pa", b"x")
    assert body == b'{"stream":"PA","seq":1}'
    hdr = b"NATS/1.0\r\nNats-Msg-Id: a\r\n\r\n"
    assert request(client, "pa", b"x", hdr)[1] == b'{"stream":"PA","seq":2}'
    assert request(client, "pa", b"x", hdr)[1] == b'{"stream":"PA","seq":2,"duplicate": true}'
    bad = b"NATS/1.0\r\nNats-Expected-Last-Sequence: 9\r\n\r\n"
    assert request(client, "pa", b"x", bad)[1] == (
        b'{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 2"},"stream":"PA","seq":0}'
    )


def test_direct_get_headers_and_status(client):
    create(client, "DG", subjects=["dg.*"], allow_direct=True)
    request(client, "dg.a", b"one")
    request(client, "dg.b", b"two", b"NATS/1.0\r\nX-Custom: v1\r\n\r\n")
    hdr, body = request(client, "$JS.API.DIRECT.GET.DG", b'{"seq":2}')
    assert re.fullmatch(
        rb"NATS/1.0\r\nX-Custom: v1\r\nNats-Stream: DG\r\nNats-Subject: dg.b\r\nNats-Sequence: 2\r\n"
        rb"Nats-Time-Stamp: \d{4}-\d\d-\d\dT[\d:.]+Z\r\n\r\n",
        hdr,
    )
    assert body == b"two"
    hdr, body = request(client, "$JS.API.DIRECT.GET.DG", b'{"seq":1,"no_hdr":true}')
    assert (hdr, body) == (b"", b"one")
    assert request(client, "$JS.API.DIRECT.GET.DG", b"")[0] == b"NATS/1.0 408 Empty Request\r\n\r\n"
    assert request(client, "$JS.API.DIRECT.GET.DG", b"{}")[0] == b"NATS/1.0 408 Empty Request\r\n\r\n"
    assert request(client, "$JS.API.DIRECT.GET.DG", b"nope")[0] == b"NATS/1.0 408 Malformed Request\r\n\r\n"
    conflict = b'{"seq":1,"last_by_subj":"dg.a"}'
    assert request(client, "$JS.API.DIRECT.GET.DG", conflict)[0] == b"NATS/1.0 408 Bad Request\r\n\r\n"
    assert request(client, "$JS.API.DIRECT.GET.DG", b'{"seq":9}')[0] == b"NATS/1.0 404 Message Not Found\r\n\r\n"
    hdr, body = request(client, "$JS.API.DIRECT.GET.DG.dg.a")
    assert b"Nats-Sequence: 1\r\n" in hdr and body == b"one"
    level = b"NATS/1.0\r\nNats-Required-Api-Level: 9\r\n\r\n"
    assert request(client, "$JS.API.DIRECT.GET.DG", b'{"seq":1}', level)[0] == (
        b"NATS/1.0 412 Required Api Level\r\n\r\n"
    )


def test_direct_get_batch_and_multi_last(client):
    create(client, "DB", subjects=["db.*"], allow_direct=True)
    for subject in ("db.a", "db.b", "db.a"):
        request(client, subject, b"m")
    body = b'{"seq":1,"batch":2}'
    client.send(f"PUB $JS.API.DIRECT.GET.DB _R.2 {len(body)}\r\n".encode() + body + b"\r\n")
    first, second, eob = read_msg(client), read_msg(client), read_msg(client)
    assert b"Nats-Num-Pending: 2\r\nNats-Last-Sequence: 0\r\n" in first[1]
    assert b"Nats-Num-Pending: 1\r\nNats-Last-Sequence: 1\r\n" in second[1]
    assert eob[1] == b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 1\r\nNats-Last-Sequence: 2\r\n\r\n"
    body = b'{"multi_last":["db.*"]}'
    client.send(f"PUB $JS.API.DIRECT.GET.DB _R.3 {len(body)}\r\n".encode() + body + b"\r\n")
    msgs = [read_msg(client) for _ in range(3)]
    assert b"Nats-Sequence: 2\r\n" in msgs[0][1] and b"Nats-Sequence: 3\r\n" in msgs[1][1]
    assert msgs[2][1] == (
        b"NATS/1.0 204 EOB\r\nNats-Num-Pending: 0\r\nNats-Last-Sequence: 3\r\nNats-UpTo-Sequence: 3\r\n\r\n"
    )


def test_direct_get_without_allow_direct_is_no_responders(client):
    create(client, "ND", subjects=["nd"])
    hdr, _ = request(client, "$JS.API.DIRECT.GET.ND", b'{"seq":1}')
    assert hdr.startswith(b"NATS/1.0 503\r\n")


def test_unknown_api_subject_gets_no_reply(client):
    client.send(b"PUB $JS.API.BOGUS _R.9 0\r\n\r\nPUB $JS.API.STREAM.CREATE _R.9 0\r\n\r\nPING\r\n")
    received = client.read_all_available(quiet=0.3, max_time=1.5)
    # (a line starting MSG: the server id in an async INFO may contain "MSG" by chance, seen once)
    lines = received.split(b"\r\n")
    assert b"PONG" in lines and not any(line.startswith((b"MSG ", b"HMSG ")) for line in lines)


def test_required_api_level_json(client):
    level = b"NATS/1.0\r\nNats-Required-Api-Level: x\r\n\r\n"
    _, body = request(client, "$JS.API.INFO", b"", level)
    assert json.loads(body)["error"] == {
        "code": 412,
        "err_code": 10185,
        "description": "JetStream minimum api level required",
    }


def test_error_envelope_and_zero_fields(client):
    _, body = request(client, "$JS.API.STREAM.INFO.NOPE")
    assert body == (
        b'{"type":"io.nats.jetstream.api.v1.stream_info_response","error":{"code":404,"err_code":10059,'
        b'"description":"stream not found"},"total":0,"offset":0,"limit":0}'
    )
    _, body = request(client, "$JS.API.STREAM.NAMES", b'{"subject":"none.such"}')
    assert body.endswith(b'"total":0,"offset":0,"limit":1024,"streams":null}')


def http_get(srv, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.http_port}{path}", timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_jsz_and_healthz(srv, client):
    create(client, "MON", subjects=["mon"])
    request(client, "mon", b"x")
    status, jsz = http_get(srv, "/jsz?streams=true")
    assert status == 200 and "disabled" not in jsz
    assert jsz["streams"] >= 1 and jsz["messages"] >= 1 and jsz["config"]["strict"] is True
    detail = jsz["account_details"][0]
    assert detail["name"] == "$G" and detail["reserved_memory"] == 18446744073709551615
    assert any(s["name"] == "MON" and s["state"]["messages"] == 1 for s in detail["stream_detail"])
    assert http_get(srv, "/healthz?account=$G&stream=MON") == (200, {"status": "ok"})
    status, body = http_get(srv, "/healthz?account=$G&stream=NOPE")
    assert status == 404
    assert body == {"status": "unavailable", "error": 'JetStream stream "NOPE" not found on account "$G"'}
    status, body = http_get(srv, "/healthz?account=FOO")
    assert body["error"] == 'JetStream account "FOO" not found'


def test_error_table_complete():
    assert len(JS_ERRORS) == len(JS_ERRORS_BY_CODE) == 226
    assert JS_ERRORS_BY_CODE[10059].description == "stream not found"
    assert js_error("JSSequenceNotFoundErrF", seq=104).to_json() == {
        "code": 400,
        "err_code": 10043,
        "description": "sequence 104 not found",
    }
    assert isinstance(js_error("JSBadRequestErr"), JSError)


def test_unexpected_exception_becomes_generic_error():
    from jsedge.api.dispatcher import Endpoint, JetStreamAPI, Request

    sent: list[bytes] = []
    errors: list[str] = []

    class FakeServer:
        logger = type("L", (), {"error": staticmethod(errors.append)})()

        def send_internal(self, account, subject, reply, hdr, data):
            sent.append(data)

    class FakeJS:
        domain = ""
        accounts: dict = {}

    api = JetStreamAPI(FakeServer(), FakeJS())

    def boom(api, request):
        raise RuntimeError("kaboom")

    api.endpoints.insert(0, Endpoint((b"BOOM",), 1, "boom_response", boom))
    from jsedge.routing.sublist import Sublist

    account = type("Account", (), {"sublist": Sublist()})()  # nobody listens for API audits
    jsa = type("JSA", (), {"name": "$G", "account": account, "api_total": 0, "api_errors": 0, "streams": {}})()
    api.dispatch(Request(jsa, [b"BOOM"], b"$JS.API.BOOM", b"_R", b"", b"", None))
    assert json.loads(sent[0]) == {
        "type": "io.nats.jetstream.api.v1.boom_response",
        "error": {"code": 500, "err_code": 10051, "description": "unexpected internal error"},
    }
    assert "RuntimeError: kaboom" in errors[0] and jsa.api_errors == 1
