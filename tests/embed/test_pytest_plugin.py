"""The pytest plugin, as a project using jsedge would use it: pytester writes a small test module
that talks to the fixtures with nats-py (core, JetStream across a restart, a config marker, a
three-node cluster, a session server) and runs it in a fresh pytest process."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

PROJECT_TESTS = """
import asyncio

import nats
import pytest


def run(coroutine):
    return asyncio.run(coroutine)


def test_core(nats_server):
    async def go():
        nc = await nats.connect(nats_server.client_url)
        sub = await nc.subscribe("greet")
        await nc.publish("greet", b"hello")
        msg = await sub.next_msg(2)
        await nc.close()
        return msg.data

    assert run(go()) == b"hello"


def test_jetstream_survives_a_restart(jetstream_server):
    async def publish():
        nc = await nats.connect(jetstream_server.client_url)
        js = nc.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        ack = await js.publish("orders.1", b"one")
        await nc.close()
        return ack.seq

    async def count():
        nc = await nats.connect(jetstream_server.client_url)
        info = await nc.jetstream().stream_info("ORDERS")
        await nc.close()
        return info.state.messages

    assert run(publish()) == 1
    jetstream_server.restart()
    assert run(count()) == 1


@pytest.mark.jsedge_config("max_payload: 4096")
def test_config_marker(nats_server):
    async def go():
        nc = await nats.connect(nats_server.client_url)
        size = nc.max_payload
        await nc.close()
        return size

    assert run(go()) == 4096


def test_cluster(nats_cluster):
    async def go():
        one = await nats.connect(nats_cluster[0].client_url)
        three = await nats.connect(nats_cluster[2].client_url)
        sub = await three.subscribe("across")
        await three.flush()
        for _ in range(100):
            await one.publish("across", b"x")
            try:
                msg = await sub.next_msg(0.1)
                break
            except nats.errors.TimeoutError:
                continue
        await one.close()
        await three.close()
        return msg.data

    assert len(nats_cluster) == 3
    assert run(go()) == b"x"


async def test_with_pytest_asyncio(nats_server_session):
    nc = await nats.connect(nats_server_session.client_url)
    assert nc.is_connected
    await nc.close()
"""


def test_a_projects_tests_use_the_fixtures(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    root = str(Path(__file__).resolve().parents[2])  # this checkout's jsedge, installed or not
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makepyfile(test_project=PROJECT_TESTS)
    registered = any(ep.value == "jsedge.pytest_plugin" for ep in entry_points(group="pytest11"))
    args = ["-p", "no:cacheprovider", "-o", "asyncio_mode=auto"]
    if not registered:  # (an editable install made before the entry point existed)
        args += ["-p", "jsedge.pytest_plugin"]
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=5)


def test_the_plugin_is_declared_as_a_pytest11_entry_point() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '[project.entry-points.pytest11]\njsedge = "jsedge.pytest_plugin"' in text
