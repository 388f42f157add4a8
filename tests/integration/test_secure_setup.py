"""Issue 6 as a new user tries it: one config file with a TLS listener, a WebSocket
listener, a password file written by Debian's mosquitto_passwd and an ACL file,
used by Mosquitto's own clients and by paho-mqtt."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from integration_support import Paho

from brokers import RunningMidge, free_port, start_midge_with_log
from certificates import Certificates, make_certificates

TIMEOUT = 10
ACL = """\
# alice owns home/alice; bob may only read it; everyone owns clients/<client id>/
user alice
topic readwrite home/alice/#
user bob
topic read home/alice/#
pattern readwrite clients/%c/#
"""


@dataclass(frozen=True)
class Setup:
    midge: RunningMidge
    tls: int
    ws: int
    certs: Certificates


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tool = shutil.which("mosquitto_passwd")
    if tool is None or shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto-clients / mosquitto_passwd are not installed")
    folder = tmp_path_factory.mktemp("secure")
    certs = make_certificates(folder)
    passwd = folder / "passwd"
    for args in (
        ["-c", "-b", str(passwd), "alice", "wonderland"],
        ["-b", str(passwd), "bob", "builder"],
    ):
        subprocess.run([tool, *args], check=True, capture_output=True, timeout=TIMEOUT)
    (folder / "acl").write_text(ACL, encoding="utf-8")
    tls, ws = free_port(), free_port()
    config = (
        f'password_file = "{passwd}"\nacl_file = "{folder / "acl"}"\n'
        "auth_failure_delay = 0.0\n"  # this module logs in wrongly on purpose, often
        f'[[listeners]]\nport = {tls}\ntransport = "tls"\n'
        f'certfile = "{certs.server_cert}"\nkeyfile = "{certs.server_key}"\n'
        f'[[listeners]]\nport = {ws}\ntransport = "ws"\n'
    )
    # --port 0 moves the first listener (TLS) to a free port of the broker's choosing.
    with start_midge_with_log(config_toml=config) as midge:
        yield Setup(midge, midge.port, ws, certs)


def mosquitto(tool: str, setup: Setup, *args: str) -> list[str]:
    return [tool, "-h", "127.0.0.1", "-p", str(setup.tls), "--cafile", str(setup.certs.ca), *args]


def test_mosquitto_clients_over_tls_with_passwords_and_acl(setup: Setup) -> None:
    reader = subprocess.Popen(
        mosquitto("mosquitto_sub", setup, "-u", "bob", "-P", "builder", "-t", "home/#", "-v",
                  "-C", "1", "-W", str(TIMEOUT)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # bob may read home/alice but not write it: acknowledged, dropped, logged.
        denied = subprocess.run(
            mosquitto("mosquitto_pub", setup, "-u", "bob", "-P", "builder", "-t",
                      "home/alice/door", "-m", "forged", "-q", "1"),
            capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        assert denied.returncode == 0, denied.stderr
        # alice publishes until bob's subscriber (which exits after one message) has it:
        # no guessing how long its SUBSCRIBE takes.
        deadline = time.monotonic() + TIMEOUT
        while reader.poll() is None and time.monotonic() < deadline:
            allowed = subprocess.run(
                mosquitto("mosquitto_pub", setup, "-u", "alice", "-P", "wonderland", "-t",
                          "home/alice/door", "-m", "open", "-q", "1"),
                capture_output=True, text=True, timeout=TIMEOUT, check=False,
            )  # fmt: skip
            assert allowed.returncode == 0, allowed.stderr
            time.sleep(0.2)
        out, err = reader.communicate(timeout=TIMEOUT)
    finally:
        reader.kill()
    assert (reader.returncode, out) == (0, "home/alice/door open\n"), err
    setup.midge.log.wait_for(r"user 'bob'\) may not publish to 'home/alice/door'")


@pytest.mark.parametrize(
    ("credentials", "code"),
    [(["-u", "bob", "-P", "wrong"], 4), ([], 5)],
    ids=["wrong-password", "anonymous"],
)
def test_wrong_password_and_anonymous_are_refused(
    setup: Setup, credentials: list[str], code: int
) -> None:
    result = subprocess.run(
        mosquitto("mosquitto_pub", setup, *credentials, "-t", "x", "-m", "y"),
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == code, (result.returncode, result.stderr)


def test_paho_over_websocket_with_password_and_pattern_acl(setup: Setup) -> None:
    client = Paho("127.0.0.1", setup.ws, client_id="web1", username="alice",
                  password="wonderland", transport="websockets")  # fmt: skip
    try:
        client.connect_ok()
        # %c: its own clients/web1/ tree, not another client's.
        assert codes(client.subscribe("clients/web1/#", 1)) == [1]
        assert codes(client.subscribe("clients/other/#", 1)) == [0x80]
        client.publish("clients/web1/x", b"mine", qos=1)
        client.publish("clients/other/x", b"not mine", qos=1)  # acknowledged, dropped
        assert client.get().payload == b"mine"
        assert client.drain() == []
    finally:
        client.close()


def codes(granted: list[object]) -> list[int]:
    """SUBACK return codes from paho's ReasonCode objects."""
    return [int(getattr(code, "value", code)) for code in granted]
