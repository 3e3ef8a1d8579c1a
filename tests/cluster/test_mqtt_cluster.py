"""MQTT on a three-node jsedge cluster: the MQTT streams are R3 (as nats-server makes them when
the routes name three servers), a persistent session with its queued QoS 1 messages survives the
loss of the node that led the message stream (the client resuming on another node), and a client
id that connects to a second node closes its connection on the first."""

from __future__ import annotations

import asyncio
import queue
import time
from typing import Any

import nats
import pytest
from helpers import Cluster, acheck_for, free_port

mqtt = pytest.importorskip("paho.mqtt.client")

pytestmark = pytest.mark.timeout(180)

FAST = {"JSEDGE_RAFT_HEARTBEAT": "0.2", "JSEDGE_RAFT_ELECTION": "0.8-1.6", "JSEDGE_RAFT_LOST_QUORUM": "2.5"}


class _Device:
    def __init__(self, port: int, client_id: str, clean: bool) -> None:
        self.messages: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self.acks: queue.Queue[tuple[int, bool]] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload), m.qos))
        self.client.on_connect = lambda _c, _u, flags, reason, _p: self.acks.put(
            (int(reason.value), bool(flags.session_present))
        )
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self.subacks.put([int(c.value) for c in codes])
        self.client.reconnect_delay_set(60, 60)
        self.port = port

    def connect(self) -> tuple[int, bool]:
        self.client.connect("127.0.0.1", self.port, 30)
        self.client.loop_start()
        return self.acks.get(timeout=30)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_session_and_queued_messages_survive_a_node_loss() -> None:
    ports = [free_port() for _ in range(3)]
    with Cluster(
        ["jsedge"] * 3,
        extra_args=["-js", "-sd", "js"],
        env=FAST,
        config=lambda i: f"mqtt {{ listen: 127.0.0.1:{ports[i]} }}\n",
    ) as cluster:
        nc = await nats.connect(cluster[0].url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream(timeout=2)

        async def ready() -> bool:
            try:
                await js.account_info()
            except Exception:
                return False
            return True

        await acheck_for(30, ready)
        loop = asyncio.get_running_loop()

        def first_visit() -> Any:
            device = _Device(ports[0], "sensor-1", clean=False)
            ack = device.connect()
            device.client.subscribe("cmd/#", 1)
            granted = device.subacks.get(timeout=30)
            device.close()
            return ack, granted

        ack, granted = await loop.run_in_executor(None, first_visit)
        assert ack == (0, False) and granted == [1]
        info = await js.stream_info("$MQTT_msgs")
        assert info.config.num_replicas == 3
        leader = info.cluster.leader
        victim = int(leader[1:]) - 1  # nodes are named n1..n3
        await nc.close()
        cluster.kill(victim)
        others = [i for i in range(3) if i != victim]
        # a device reconnecting while the cluster elects new leaders is refused (as by nats-server):
        # wait until the survivors answer for the MQTT streams
        nc = await nats.connect(cluster[others[0]].url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
        js = nc.jetstream(timeout=2)

        async def led() -> bool:
            try:
                for name in ("$MQTT_msgs", "$MQTT_sess", "$MQTT_rmsgs", "$MQTT_qos2in"):
                    info = await js.stream_info(name)
                    if not info.cluster or not info.cluster.leader or info.cluster.leader == leader:
                        return False
            except Exception:
                return False
            return True

        await acheck_for(30, led)
        await nc.close()

        def publish_and_resume() -> Any:
            ctl = _Device(ports[others[0]], "ctl", clean=True)
            assert ctl.connect()[0] == 0
            deadline = time.monotonic() + 30
            for payload in (b"on", b"off"):
                info = ctl.client.publish("cmd/light", payload, 1)
                info.wait_for_publish(max(1.0, deadline - time.monotonic()))
                assert info.is_published()
            ctl.close()
            device = _Device(ports[others[1]], "sensor-1", clean=False)
            ack = device.connect()
            got = [device.messages.get(timeout=30) for _ in range(2)]
            device.close()
            return ack, got

        ack, got = await loop.run_in_executor(None, publish_and_resume)
        assert ack == (0, True)
        assert got == [("cmd/light", b"on", 1), ("cmd/light", b"off", 1)]

        def takeover_across_servers() -> Any:
            # the device comes back on one node, then (a second connection with its id) on the
            # other: the first node closes its connection, as nats-server's do
            first = _Device(ports[others[0]], "sensor-1", clean=False)
            first_ack = first.connect()
            second = _Device(ports[others[1]], "sensor-1", clean=False)
            second_ack = second.connect()
            deadline = time.monotonic() + 15
            while first.client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.05)
            closed = not first.client.is_connected()
            first.client.loop_stop()
            second.close()
            return first_ack, second_ack, closed

        first_ack, second_ack, closed = await loop.run_in_executor(None, takeover_across_servers)
        assert first_ack == (0, True) and second_ack == (0, True) and closed
        cluster[others[0]].wait_for_log(
            'Closing because a remote connection has started with the same client ID: "sensor-1"'
        )
