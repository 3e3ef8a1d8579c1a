"""Account JetStream limits (`accounts { A { jetstream { max_streams, max_consumers, max_mem,
max_file, max_ack_pending } } }`) against jsedge and nats-server 2.15.1: the same refusals with the
same err_codes, and the same limits in `$JS.API.INFO`."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from tests.helpers import ServerProcess, assert_same_lines, js_api, run_on_both_with_config

pytestmark = [pytest.mark.compat, pytest.mark.timeout(60)]

CONFIG = """
jetstream { store_dir: "%s" }
accounts {
  A {
    users: [ { user: a, password: a } ]
    jetstream { max_streams: 2, max_consumers: 2, max_mem: 1MB, max_file: 2MB, max_ack_pending: 50 }
  }
  B { users: [ { user: b, password: b } ], jetstream: enabled }
  C { users: [ { user: c, password: c } ] }
}
"""


def _short(answer: dict) -> str:
    error = answer.get("error")
    if error:
        return f"error {error['err_code']} {error['description']}"
    return "ok"


async def _script(server) -> list[str]:
    out: list[str] = []
    nc = await nats.connect(server.url, user="a", password="a")
    try:
        info = await js_api(nc, "$JS.API.INFO")
        out.append(f"A limits {json.dumps(info.get('limits'), sort_keys=True)}")
        for name, config in (
            ("M", {"storage": "memory", "max_bytes": 2_000_000}),
            ("M", {"storage": "memory", "max_bytes": 500_000}),
            ("F", {"storage": "file", "max_bytes": 3_000_000}),
            ("F", {"storage": "file", "max_bytes": 1_000_000}),
            ("X", {"storage": "file", "max_bytes": 1000}),
        ):
            answer = await js_api(
                nc, f"$JS.API.STREAM.CREATE.{name}", {"name": name, "subjects": [name.lower()], **config}
            )
            out.append(f"create {name} {config} -> {_short(answer)}")
        for durable, extra in (
            ("c1", {}),
            ("c2", {"max_ack_pending": 100}),
            ("c2", {"max_ack_pending": 10}),
            ("c3", {}),
        ):
            body = {"stream_name": "F", "config": {"durable_name": durable, "ack_policy": "explicit", **extra}}
            answer = await js_api(nc, f"$JS.API.CONSUMER.CREATE.F.{durable}", body)
            mine = answer.get("config", {}).get("max_ack_pending")
            out.append(f"consumer {durable} {extra} -> {_short(answer)} max_ack_pending={mine}")
        info = await js_api(nc, "$JS.API.INFO")
        out.append(f"A usage streams={info.get('streams')} consumers={info.get('consumers')}")
    finally:
        await nc.close()
    for user in ("b", "c"):
        nc = await nats.connect(server.url, user=user, password=user)
        try:
            info = await js_api(nc, "$JS.API.INFO")
            out.append(f"{user.upper()} info {_short(info)} limits {json.dumps(info.get('limits'), sort_keys=True)}")
        finally:
            await nc.close()
    # an account without JetStream: each API answers 10039 in its own response type
    nc = await nats.connect(server.url, user="c", password="c")
    try:
        for subject, body in (
            ("$JS.API.STREAM.CREATE.X", b'{"name":"X"}'),
            ("$JS.API.STREAM.NAMES", b""),
            ("$JS.API.CONSUMER.INFO.X.Y", b""),
            ("$JS.API.STREAM.MSG.GET.X", b'{"seq":1}'),
            ("$JS.API.DIRECT.GET.X", b'{"seq":1}'),
        ):
            try:
                reply = await nc.request(subject, body, timeout=1)
                out.append(f"C {subject} -> {reply.data.decode()}")
            except nats.errors.NoRespondersError:
                out.append(f"C {subject} -> no responders")
    finally:
        await nc.close()
    return out


def test_account_jetstream_limits_as_nats_server(tmp_path):
    assert_same_lines(*run_on_both_with_config(tmp_path, CONFIG, _script))


def test_jsz_accounts_reports_account_limits_as_nats_server(tmp_path):
    """`/jsz?accounts=true`: an account with limits reserves them (`reserved_memory`,
    `reserved_storage`), as nats-server reports it."""
    import urllib.request

    def details(kind: str) -> list[dict]:
        directory = tmp_path / f"jsz-{kind}"
        directory.mkdir()
        with ServerProcess(kind, config=(CONFIG % directory) + "http_port: -1\n", http=True) as server:

            async def fill() -> None:
                nc = await nats.connect(server.url, user="a", password="a")
                await js_api(nc, "$JS.API.STREAM.CREATE.F", {"name": "F", "subjects": ["f"], "max_bytes": 1_000_000})
                await nc.request("f", b"x" * 100, timeout=3)
                await nc.close()

            asyncio.run(fill())
            with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/jsz?accounts=true", timeout=5) as page:
                document = json.load(page)
        return sorted(document["account_details"], key=lambda d: d["name"])

    expected, actual = details("nats"), details("jsedge")
    assert expected == actual
