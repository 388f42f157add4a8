"""/metrics: Prometheus's own parser reads it, and the values move with traffic."""

from __future__ import annotations

from pathlib import Path

from http_support import WAIT, Api, running_api
from prometheus_client.parser import text_string_to_metric_families

from midge.client import Client, ConnectionRefused


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (name, sorted labels) -> value, as Prometheus would read them."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def scrape(api: Api, **options: object) -> dict:
    status, text = await api.get("/metrics", **options)
    assert status == 200, text
    return samples(text)


async def test_metrics_parse_and_move_after_traffic(tmp_path: Path) -> None:
    async with running_api(tmp_path, store="sqlite", data_dir=str(tmp_path / "data")) as api:
        before = await scrape(api, key=None)
        (build,) = [dict(labels)["build"] for name, labels in before if name == "midge_info"]
        assert build in ("pure", "compiled")
        for name in (
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "midge_store_healthy",
            "midge_clients_connected",
            "midge_retained_messages",
        ):
            assert (name, ()) in before, name
        assert value(before, "midge_store_healthy") == 1
        async with Client(
            "127.0.0.1", api.mqtt_port, client_id="m1", clean_session=False
        ) as client:
            await client.subscribe([("m/#", 1), ("$share/g/m/x", 0)])
            for qos in (0, 1, 2):
                await client.publish(f"m/{qos}", b"payload", qos=qos, retain=True)
            for _ in range(3):
                await client.messages().get(WAIT)
            during = await scrape(api, key=None)
        assert value(during, "midge_clients_connected") >= 1
        assert value(during, "midge_subscriptions", kind="plain") >= 1
        assert value(during, "midge_subscriptions", kind="shared") == 1
        assert value(during, "midge_retained_messages") == 3
        assert value(during, "midge_connections_total") > value(before, "midge_connections_total")
        for qos in ("0", "1", "2"):
            received = value(during, "midge_publish_received_total", qos=qos)
            assert received > value(before, "midge_publish_received_total", qos=qos)
        assert value(during, "midge_messages_received_total") >= 3
        assert value(during, "midge_bytes_received_total") > value(
            before, "midge_bytes_received_total"
        )
        assert value(during, "midge_store_commits_total") > value(
            before, "midge_store_commits_total"
        )
        commits = value(during, "midge_store_commit_seconds_count")
        assert commits == value(during, "midge_store_commit_seconds_bucket", le="+Inf") > 0
        assert value(during, "midge_store_commit_seconds_sum") > 0
        after = await scrape(api, key=None)
        assert value(after, "midge_sessions", state="offline") >= 1
        for cause in (
            "queue_full",
            "write_buffer",
            "too_large",
            "expired",
            "no_subscribers",
            "acl",
        ):
            assert ("midge_messages_dropped_total", (("cause", cause),)) in after


async def test_refused_connections_are_counted_by_reason(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    async with running_api(tmp_path, password_file=str(passwd), auth_failure_delay=0.0) as api:
        try:
            async with Client("127.0.0.1", api.mqtt_port, username="who", password="no"):
                pass
        except ConnectionRefused:
            pass
        found = await scrape(api, key=None)
        refused = {
            dict(labels)["reason"]: count
            for (name, labels), count in found.items()
            if name == "midge_connections_refused_total"
        }
        assert sum(refused.values()) >= 1
        assert value(found, "midge_auth_failures_total") >= 1


async def test_metrics_require_key_when_configured(tmp_path: Path) -> None:
    async with running_api(tmp_path, metrics_require_key=True) as api:
        assert (await api.get("/metrics", key=None))[0] == 401
        assert (await api.get("/metrics", key="mk_000000000000_wrong"))[0] == 401
        found = await scrape(api, key=api.reader)
        assert value(found, "midge_http_auth_failures_total") == 1
        assert (await api.get("/healthz", key=None))[0] == 200


async def test_openmetrics_when_asked(tmp_path: Path) -> None:
    async with (
        running_api(tmp_path) as api,
        api.session.get(
            api.base + "/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        ) as response,
    ):
        assert response.status == 200
        assert response.content_type == "application/openmetrics-text"
        assert (await response.text()).rstrip().endswith("# EOF")
