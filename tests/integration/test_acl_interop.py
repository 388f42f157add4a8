"""Password files and ACL files shared by Midge and Debian's Mosquitto, with real peers.

One password file is written by both `mosquitto_passwd -b` and `midge passwd -b`,
and one ACL file (with `pattern` lines) is given to both brokers; paho-mqtt and
mosquitto_pub / mosquitto_sub then check that the two brokers agree. The one
intended difference: Midge refuses (SUBACK 0x80) a filter the client can never
read, where Mosquitto 2.0 grants it and delivers nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration_support import Paho, paho

from brokers import Broker, BrokerStartError, mosquitto_binary, start_midge, start_mosquitto

TOOLS = ("mosquitto_passwd", "mosquitto_pub", "mosquitto_sub", "stdbuf")
pytestmark = [
    pytest.mark.skipif(
        mosquitto_binary() is None or any(shutil.which(tool) is None for tool in TOOLS),
        reason="needs mosquitto, mosquitto-clients (apt-get install) and stdbuf",
    ),
    pytest.mark.timeout(60),
]

PROCESS_TIMEOUT = 15
ACL = """\
# No anonymous section: every client here logs in.
user alice
topic readwrite alice/#
topic read devices/#
topic write inbox/#

user bob
topic read alice/#

pattern readwrite devices/%c/#
pattern read inbox/%u/#
"""
USERS = {"alice": "s3cret", "bob": "hunter2"}


@pytest.fixture(scope="module")
def auth_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("acl")
    passwd, acl = folder / "passwd", folder / "acl"
    run(["mosquitto_passwd", "-c", "-b", str(passwd), "alice", USERS["alice"]])
    run([sys.executable, "-m", "midge", "passwd", "-b", str(passwd), "bob", USERS["bob"]])
    acl.write_text(ACL, encoding="utf-8")
    return passwd, acl


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, timeout=PROCESS_TIMEOUT, capture_output=True, text=True)


@pytest.fixture(scope="module", params=["midge", "mosquitto"])
def broker(request: pytest.FixtureRequest, auth_files: tuple[Path, Path]) -> Iterator[Broker]:
    passwd, acl = auth_files
    if request.param == "midge":
        config = (
            f"allow_anonymous = false\npassword_file = {str(passwd)!r}\n"
            f"acl_file = {str(acl)!r}\nauth_failure_delay = 0.0\n"
        )
        with start_midge(config_toml=config) as started:
            yield started
    else:
        extra = f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
        if os.geteuid() == 0:
            # Started as root, mosquitto becomes user "mosquitto", who cannot read
            # these 0600 files in a 0700 folder.
            extra += "user root\n"
        with start_mosquitto(extra_conf=extra) as started:
            yield started


def login(user: str) -> dict[str, str]:
    return {"username": user, "password": USERS[user]}


def test_password_file_written_by_both_tools(broker: Broker) -> None:
    host, port, _ = broker
    for user in USERS:
        with paho(host, port, **login(user)):
            pass
    client = Paho(host, port, username="bob", password="wrong")
    try:
        assert client.connect().reason.is_failure
    finally:
        client.close()


def test_mosquitto_pub_with_client_id_pattern(broker: Broker) -> None:
    """devices/%c/#: only client id dev1 may write devices/dev1/...; the forged
    message is acknowledged (mosquitto_pub -q 1 exits 0) and dropped."""
    host, port, _ = broker
    common = ["-h", host, "-p", str(port), "-u", "bob", "-P", USERS["bob"], "-q", "1"]
    with paho(host, port, **login("alice")) as alice:
        alice.subscribe("devices/#", 1)
        for client_id, payload in (("dev2", "forged"), ("dev1", "21")):
            args = ["-i", client_id, "-t", "devices/dev1/temp", "-m", payload]
            result = subprocess.run(
                ["mosquitto_pub", *common, *args],
                capture_output=True,
                text=True,
                timeout=PROCESS_TIMEOUT,
                check=False,
            )
            assert result.returncode == 0, result.stderr
        received = alice.until("devices/dev1/temp")
        assert [m.payload for m in received] == [b"21"]


def test_mosquitto_sub_with_user_name_pattern(broker: Broker) -> None:
    """inbox/%u/#: bob subscribed to inbox/# with mosquitto_sub gets inbox/bob/... only."""
    host, port, _ = broker
    sub = subprocess.Popen(
        [
            *("stdbuf", "-oL", "mosquitto_sub", "-h", host, "-p", str(port), "-d", "-v"),
            *("-u", "bob", "-P", USERS["bob"], "-t", "inbox/#", "-C", "1", "-W", "10"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sub.stdout is not None
        lines = iter(sub.stdout.readline, "")  # ends at exit: -W bounds the wait
        assert any(line.startswith("Subscribed (mid:") for line in lines), "no SUBACK"
        with paho(host, port, **login("alice")) as alice:
            alice.publish("inbox/carol/hello", b"not for bob", 1)
            alice.publish("inbox/bob/hello", b"for bob", 1)
        output = [line.strip() for line in lines if not line.startswith("Client ")]
        assert sub.wait(timeout=PROCESS_TIMEOUT) == 0
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait(timeout=5)
    assert output == ["inbox/bob/hello for bob"]


def test_paho_with_user_name_pattern(broker: Broker) -> None:
    """inbox/%u/#: bob subscribed to inbox/# receives inbox/bob/... only."""
    host, port, _ = broker
    with paho(host, port, **login("bob")) as bob, paho(host, port, **login("alice")) as alice:
        assert bob.subscribe("inbox/#", 1) != [128]
        alice.publish("inbox/carol/hello", b"not for bob", 1)
        alice.publish("inbox/bob/hello", b"for bob", 1)
        received = bob.until("inbox/bob/hello")
        assert [(m.topic, m.payload) for m in received] == [("inbox/bob/hello", b"for bob")]


def test_filter_that_can_never_be_read(broker: Broker, request: pytest.FixtureRequest) -> None:
    host, port, _ = broker
    with paho(host, port, **login("bob")) as bob:
        codes = bob.subscribe("secret/#", 1)
    if "midge" in request.node.callspec.id:
        assert [int(code.value) for code in codes] == [0x80]
    else:
        assert [int(code.value) for code in codes] == [1]  # Mosquitto 2.0 grants everything


def test_midge_passwd_file_is_accepted_by_mosquitto_pub(broker: Broker) -> None:
    """bob's line was written by `midge passwd`; mosquitto_pub logs in with it."""
    host, port, _ = broker
    base = ["mosquitto_pub", "-h", host, "-p", str(port), "-t", "alice/x", "-m", "1", "-u", "bob"]
    good = subprocess.run([*base, "-P", USERS["bob"]], capture_output=True, timeout=15, check=False)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run([*base, "-P", "nope"], capture_output=True, timeout=15, check=False)
    assert bad.returncode != 0


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("acl_file = {acl!r}\n", "config key 'acl_file': {acl}:2: user without a user name"),
        ('auth_hook = "midge_no_such_module:Hook"\n', "config key 'auth_hook': cannot import"),
    ],
    ids=["broken-acl-file", "missing-hook"],
)
def test_broken_auth_setup_stops_midge(tmp_path: Path, config: str, expected: str) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic read a/#\nuser\n", encoding="utf-8")
    with pytest.raises(BrokerStartError) as error, start_midge(config.format(acl=str(acl))):
        pass
    assert "exited with code 2" in str(error.value)
    assert expected.format(acl=acl) in str(error.value)
    assert "Traceback" not in str(error.value)
