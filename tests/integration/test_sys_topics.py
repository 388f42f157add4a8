"""$SYS/broker/... from a real `midge serve` (sys_interval = 1), read with Debian's
mosquitto_sub as a Mosquitto dashboard reads it: every name Mosquitto's manual
documents is there, the numbers move with traffic, clients cannot publish
under $SYS, `#` does not match it, and the ACL decides who reads it."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokers import Broker, password_text, pbkdf2_line, start_midge

pytestmark = [
    pytest.mark.skipif(
        any(shutil.which(tool) is None for tool in ("mosquitto_sub", "mosquitto_pub")),
        reason="needs mosquitto-clients (apt-get install)",
    ),
    pytest.mark.timeout(60),
]

# man mosquitto(8), "BROKER STATUS" (Mosquitto 2.0): what a Mosquitto $SYS
# dashboard reads. "+" is each of 1min, 5min, 15min. The manual names the heap
# topics "heap/current size" and "heap/maximum size"; Mosquitto itself
# publishes (and dashboards read) "heap/current" and "heap/maximum". Bridge
# state ($SYS/broker/connection/#) exists only with bridges, which Midge has not.
DOCUMENTED = [
    "bytes/received",
    "bytes/sent",
    "clients/connected",
    "clients/active",
    "clients/expired",
    "clients/disconnected",
    "clients/inactive",
    "clients/maximum",
    "clients/total",
    "heap/current",
    "heap/maximum",
    "load/connections/+",
    "load/bytes/received/+",
    "load/bytes/sent/+",
    "load/messages/received/+",
    "load/messages/sent/+",
    "load/publish/dropped/+",
    "load/publish/received/+",
    "load/publish/sent/+",
    "load/sockets/+",
    "messages/inflight",
    "messages/received",
    "messages/sent",
    "publish/messages/dropped",
    "publish/messages/received",
    "publish/messages/sent",
    "retained messages/count",
    "store/messages/count",
    "messages/stored",
    "store/messages/bytes",
    "subscriptions/count",
    "version",
    "uptime",
]
ALICE, OPS = ("alice", "alice-pw"), ("ops", "ops-pw")
ACL = """\
user alice
topic readwrite #

user ops
topic read $SYS/#
topic readwrite #
"""


def documented_topics() -> set[str]:
    names = set()
    for name in DOCUMENTED:
        if name.endswith("/+"):
            names.update(f"$SYS/broker/{name[:-1]}{window}" for window in ("1min", "5min", "15min"))
        else:
            names.add(f"$SYS/broker/{name}")
    return names


@pytest.fixture(scope="module")
def midge() -> Iterator[Broker]:
    with start_midge('sys_interval = 1\nstore = "memory"\n') as broker:
        yield broker


def sub(broker: Broker, seconds: float, *args: str) -> subprocess.Popen[str]:
    """mosquitto_sub -v for `seconds` (then it exits by itself)."""
    host, port, _ = broker
    command = ["mosquitto_sub", "-h", host, "-p", str(port), "-v", "-W", f"{seconds:g}", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lines_of(process: subprocess.Popen[str]) -> list[tuple[str, str]]:
    out, _ = process.communicate(timeout=30)
    pairs = []
    for line in out.splitlines():
        topic, _, payload = line.partition(" ")
        if topic.startswith("$SYS/broker/retained"):  # "retained messages/count": one space
            rest, _, payload = payload.partition(" ")
            topic = f"{topic} {rest}"
        pairs.append((topic, payload))
    return pairs


def pub(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    host, port, _ = broker
    return subprocess.run(
        ["mosquitto_pub", "-h", host, "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )


def test_a_mosquitto_dashboard_finds_every_documented_name(midge: Broker) -> None:
    seen = {topic for topic, _ in lines_of(sub(midge, 1.5, "-t", "$SYS/#"))}
    missing = documented_topics() - seen
    assert not missing, sorted(missing)


def test_the_numbers_move_with_traffic(midge: Broker) -> None:
    def latest(pairs: list[tuple[str, str]], topic: str) -> str:
        return [payload for name, payload in pairs if name == topic][-1]

    before = lines_of(sub(midge, 1.2, "-t", "$SYS/broker/#"))
    watching = sub(midge, 4, "-t", "$SYS/broker/#")
    time.sleep(0.5)
    for index in range(5):
        assert pub(midge, "-t", "traffic/x", "-m", f"m{index}", "-q", "1").returncode == 0
    after = lines_of(watching)
    for topic in (
        "$SYS/broker/publish/messages/received",
        "$SYS/broker/messages/received",
        "$SYS/broker/bytes/received",
        "$SYS/broker/load/sockets/1min",
        "$SYS/broker/load/publish/received/1min",
    ):
        assert float(latest(after, topic)) > float(latest(before, topic)), topic
    uptime = latest(after, "$SYS/broker/uptime")
    assert uptime.endswith(" seconds") and int(uptime.split()[0]) >= 1
    assert latest(after, "$SYS/broker/version").startswith("midge version ")


def test_clients_cannot_publish_under_sys(midge: Broker) -> None:
    assert pub(midge, "-t", "$SYS/broker/forged", "-m", "1", "-r", "-q", "1").returncode == 0
    assert pub(midge, "-t", "$SYS/forged", "-m", "1", "-r").returncode == 0
    pairs = lines_of(sub(midge, 1.5, "-t", "$SYS/broker/forged", "-t", "$SYS/forged"))
    assert pairs == []


def test_hash_does_not_match_sys(midge: Broker) -> None:
    pairs = lines_of(sub(midge, 1.5, "-t", "#", "-t", "+/broker/uptime"))
    assert not [topic for topic, _ in pairs if topic.startswith("$")]


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Broker]:
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    passwd.write_text(password_text([pbkdf2_line(*ALICE), pbkdf2_line(*OPS)]), encoding="utf-8")
    acl.write_text(ACL, encoding="utf-8")
    config = (
        f'sys_interval = 1\nstore = "memory"\npassword_file = "{passwd}"\n'
        f'acl_file = "{acl}"\nallow_anonymous = false\n'
    )
    with start_midge(config) as broker:
        yield broker


def test_an_acl_without_a_sys_read_rule_stops_delivery(secured: Broker) -> None:
    user, password = ALICE
    denied = sub(secured, 1.5, "-t", "$SYS/#", "-u", user, "-P", password)
    user, password = OPS
    allowed = sub(secured, 1.5, "-t", "$SYS/#", "-u", user, "-P", password)
    assert lines_of(denied) == []
    assert "$SYS/broker/uptime" in {topic for topic, _ in lines_of(allowed)}
