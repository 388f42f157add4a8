"""Two cluster nodes embedded in one program (midge.Broker with [cluster]):
messages cross between them, and each shows its part in $SYS and /metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

import midge
from midge.broker.config import BrokerConfig, ListenerConfig
from midge.cluster.config import ClusterConfig
from redis_server import RedisServer

WAIT = 5.0


def node_config(redis: RedisServer, prefix: str, name: str, **settings: object) -> BrokerConfig:
    cluster = ClusterConfig(url=redis.url, name=name, prefix=prefix)
    return BrokerConfig(port=0, cluster=cluster, **settings).validate()  # type: ignore[arg-type]


async def metrics(port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def until(condition: object, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


async def test_two_embedded_nodes_exchange_messages_and_count_them(
    redis_server: RedisServer, unique_prefix: str
) -> None:
    http = (ListenerConfig(port=0, allow_anonymous=True), ListenerConfig(port=0, transport="http"))
    first = node_config(redis_server, unique_prefix, "e1", listeners=http, sys_interval=1)
    second = node_config(redis_server, unique_prefix, "e2", sys_interval=1)
    async with midge.Broker(first) as one, midge.Broker(second) as two:
        assert one.cluster is not None and two.cluster is not None
        async with two.subscribe("e/#", qos=1) as messages:
            for qos in (0, 1, 2):
                assert await one.publish(f"e/{qos}", b"across", qos=qos) == 0
            received = [await asyncio.wait_for(messages.get(), WAIT) for _ in range(3)]
        assert sorted(message.topic for message in received) == ["e/0", "e/1", "e/2"]
        assert one.cluster.figures()["forwarded"] >= 3
        assert two.cluster.figures()["received"] >= 3
        assert two.cluster.figures()["redis_up"] == 1
        http_port = next(item.port for item in one.listeners if item.transport == "http")
        found = await metrics(http_port)
        assert found["midge_cluster_forwarded_total"] >= 3
        assert found["midge_cluster_redis_up"] == 1

        def sys_received() -> int:
            readings = two.retained("$SYS/broker/midge/cluster/received")
            return int(readings[0].payload) if readings else -1

        await until(lambda: sys_received() >= 3, "$SYS/broker/midge/cluster/received stays < 3")


async def test_a_lone_broker_has_no_cluster() -> None:
    async with midge.Broker(port=0, store="memory") as broker:
        assert broker.cluster is None


async def test_a_reload_on_one_node_reloads_every_node(
    redis_server: RedisServer, unique_prefix: str, tmp_path: Path
) -> None:
    passwords = tmp_path / "passwords"
    passwords.write_text("")
    first = node_config(redis_server, unique_prefix, "r1", sys_interval=0)
    second = node_config(
        redis_server, unique_prefix, "r2", sys_interval=0, password_file=str(passwords)
    )
    async with midge.Broker(first) as one, midge.Broker(second) as two:
        before = two.core.authenticator
        await one.reload()
        await until(lambda: two.core.authenticator is not before, "the second node did not reload")
