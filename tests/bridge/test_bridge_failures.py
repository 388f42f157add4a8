"""Remotes a bridge cannot use (issue 15): refused logins, failed TLS handshakes, nobody there.

One local `midge serve` has these bridges, all retrying quickly
(restart_delay 0.2 s, at most 1 s):

- "badlogin" (3.1.1) and "badlogin5" (5.0) to a mosquitto with
  `allow_anonymous false` and a password file made by mosquitto_passwd, with
  a wrong password; "badlogin-midge" the same to a `midge serve` (a password
  file, anonymous clients refused); "goodlogin", with the right password,
  shows that the refusal is about the password;
- "badtls" to a mosquitto TLS listener whose certificate the bridge's
  `ca_file` (another, self-signed certificate) did not sign; "goodtls", with
  the CA that did, shows that the listener works (and carries a message);
- "nobody" to a loopback port where nothing listens.

Over a few seconds, what must hold: each failing bridge logs why, in words
naming the remote (once, however many attempts fail), and tries again with
backoff (a few attempts, each wait within restart_delay..restart_delay_max:
not a busy loop; the remotes that log connections see as few); its state
topic holds "0" (the working ones "1"); and the local broker serves its own
clients meanwhile, without burning CPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bridge_support import (
    FAST_RETRY,
    Peer,
    Peers,
    States,
    bridge_table,
    cpu_seconds,
    delays,
    retry_lines,
    rule,
    wait_connected,
)
from integration_support import paho, unique

from brokers import free_port, password_text, pbkdf2_line
from certificates import make_certificates

pytestmark = pytest.mark.timeout(60)

WINDOW = 3.0  # seconds the bridges are watched failing
USER, PASSWORD = "edge", "right horse battery"
FAILING = ("badlogin", "badlogin5", "badlogin-midge", "badtls", "nobody")
WORKING = ("goodlogin", "goodtls")


@dataclass
class Failing:
    peers: Peers
    local: Peer
    remotes: dict[str, Peer]  # by bridge name
    addresses: dict[str, str]  # by bridge name
    ca: Path  # the CA that signed the TLS listener's certificate
    started: float = 0.0  # when every bridge had had its first attempt
    cpu_at_start: float = 0.0
    cpu_in_window: float | None = None
    states: dict[str, list[str]] = field(default_factory=dict)

    def watched(self) -> None:
        """Wait until the bridges have been failing for WINDOW seconds (once)."""
        if self.cpu_in_window is None:
            time.sleep(max(0.0, self.started + WINDOW - time.monotonic()))
            self.cpu_in_window = cpu_seconds(self.local.process.pid) - self.cpu_at_start


@pytest.fixture(scope="module")
def failing(module_peers: Peers) -> Failing:
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install mosquitto)")
    folder = module_peers.folder
    passwd = folder / "mosquitto.passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwd), USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=30,
    )
    midge_passwd = folder / "midge.passwd"
    midge_passwd.write_text(password_text([pbkdf2_line(USER, PASSWORD)]), encoding="utf-8")
    (folder / "tls").mkdir()
    certs = make_certificates(folder / "tls")
    logins = module_peers.mosquitto(
        "mosquitto-logins", f"allow_anonymous false\npassword_file {passwd}\n"
    )
    midge_logins = module_peers.midge(
        "midge-logins", f'allow_anonymous = false\npassword_file = "{midge_passwd}"\n'
    )
    tls = module_peers.mosquitto(
        "mosquitto-tls",
        f"certfile {certs.server_cert}\nkeyfile {certs.server_key}\n",
    )
    remotes = {
        "badlogin": logins,
        "badlogin5": logins,
        "goodlogin": logins,
        "badlogin-midge": midge_logins,
        "badtls": tls,
        "goodtls": tls,
    }
    addresses = {name: remote.address for name, remote in remotes.items()}
    addresses["nobody"] = f"127.0.0.1:{free_port()}"
    keys: dict[str, dict[str, object]] = {
        "badlogin": {"username": USER, "password": "wrong"},
        "badlogin5": {"username": USER, "password": "wrong", "protocol": "5"},
        "badlogin-midge": {"username": USER, "password": "wrong"},
        "goodlogin": {"username": USER, "password": PASSWORD},
        "badtls": {"tls": True, "ca_file": str(certs.stranger_cert)},
        "goodtls": {"tls": True, "ca_file": str(certs.ca)},
        "nobody": {},
    }
    tables = [
        bridge_table(name, addresses[name], [rule(f"x/{name}/#", "out", 1)], **keys[name])
        for name in (*FAILING, *WORKING)
    ]
    local = module_peers.midge("local", "".join(tables))
    made = Failing(module_peers, local, remotes, addresses, certs.ca)
    for name in WORKING:
        wait_connected(local, name)
    for name in FAILING:
        local.log.wait_for(rf"bridge {re.escape(name)}: next attempt in ")
    made.started = time.monotonic()
    made.cpu_at_start = cpu_seconds(local.process.pid)
    return made


def warnings_of(failing: Failing, name: str) -> list[str]:
    return failing.local.log.matching(rf"WARNING midge\.bridge: bridge {re.escape(name)}: ")


# ---------------------------------------------------------------- why, in the log


def test_a_refused_login_is_logged_with_the_connack(failing: Failing) -> None:
    for name, refusal in (
        ("badlogin", r"CONNACK 5 \(not authorized\)"),
        ("badlogin-midge", r"CONNACK 4 \(bad user name or password\)"),
        # mosquitto 2.0.11 says 135 (0x87 not authorized), others 134 (0x86)
        ("badlogin5", r"CONNACK 13[45] \((not authorized|bad user name or password)\)"),
    ):
        address = re.escape(failing.addresses[name])
        [line] = warnings_of(failing, name)
        assert re.search(rf"bridge {name}: {address} refused the connection: {refusal}$", line), (
            line
        )


def test_a_failed_tls_handshake_is_logged(failing: Failing) -> None:
    address = failing.addresses["badtls"]
    [line] = warnings_of(failing, "badtls")
    assert f"bridge badtls: TLS handshake with {address} failed: " in line, line
    assert "CERTIFICATE_VERIFY_FAILED" in line.upper().replace(" ", "_"), line


def test_a_remote_not_listening_is_logged(failing: Failing) -> None:
    address = failing.addresses["nobody"]
    [line] = warnings_of(failing, "nobody")
    assert f"bridge nobody: cannot connect to {address}: " in line, line
    assert "refused" in line.lower(), line


# ---------------------------------------------------------------- backoff, not a busy loop


@pytest.mark.parametrize("name", FAILING)
def test_a_failing_bridge_retries_with_backoff(failing: Failing, name: str) -> None:
    failing.watched()
    elapsed = time.monotonic() - failing.started
    waits = delays(retry_lines(failing.local, name))
    low, high = FAST_RETRY["restart_delay"], FAST_RETRY["restart_delay_max"]
    assert 2 <= len(waits) <= elapsed / low + 2, f"{len(waits)} attempts in {elapsed:.1f} s"
    assert all(low <= wait <= high for wait in waits), waits
    assert sum(waits[:-1]) <= elapsed + 0.5, f"waits {waits} do not fit in {elapsed:.1f} s"
    assert len(warnings_of(failing, name)) == 1, "a remote that stays away is logged once"
    assert not failing.local.log.matching(rf"bridge {re.escape(name)}: connected to ")


def test_the_remotes_see_few_attempts(failing: Failing) -> None:
    failing.watched()
    elapsed = time.monotonic() - failing.started
    logins = failing.remotes["badlogin"].log
    # mosquitto logs each client it refuses; the two bad-login bridges share it
    refused = logins.matching(r"disconnected, not authori[sz]ed")
    assert 4 <= len(refused) <= 2 * (elapsed / FAST_RETRY["restart_delay"] + 2), refused
    tls = failing.remotes["badtls"].log
    handshakes = tls.matching(r"New connection from")
    assert len(handshakes) <= elapsed / FAST_RETRY["restart_delay"] + 10, len(handshakes)


# ---------------------------------------------------------------- what still works


def test_the_working_bridges_connect_and_carry_messages(failing: Failing) -> None:
    logins, tls = failing.remotes["goodlogin"], failing.remotes["goodtls"]
    subscribers = {
        "goodlogin": paho(logins.host, logins.port, username=USER, password=PASSWORD),
        "goodtls": paho(tls.host, tls.port, tls={"ca_certs": str(failing.ca)}),
    }
    for name, subscriber in subscribers.items():
        address = failing.addresses[name]
        line = f"bridge {name}: connected to {address} (MQTT 3.1.1, as a bridge, session new)"
        assert line in failing.local.log.text()
        topic = f"x/{name}/{unique('t')}"
        with subscriber as sub, paho(failing.local.host, failing.local.port) as pub:
            sub.subscribe(topic, 1)
            pub.publish(topic, "through", 1)
            message = sub.get()
            assert (message.topic, message.payload) == (topic, b"through"), name


def test_the_state_topics_say_which_bridges_are_up(failing: Failing) -> None:
    states = States(failing.local)
    try:
        for name in FAILING:
            states.wait(name, "0")
        for name in WORKING:
            states.wait(name, "1")
        assert dict(states.take()) == {
            **{name: ["0"] for name in FAILING},
            **{name: ["1"] for name in WORKING},
        }
    finally:
        states.close()


def test_local_clients_are_served_meanwhile(failing: Failing) -> None:
    topic = f"local/{unique('t')}"
    with (
        paho(failing.local.host, failing.local.port) as sub,
        paho(failing.local.host, failing.local.port) as pub,
    ):
        sub.subscribe(f"{topic}/#", 1)
        began = time.monotonic()
        for number in range(50):
            pub.publish(f"{topic}/{number}", str(number), 1)
        got = [int(message.payload) for message in sub.get_many(50)]
        took = time.monotonic() - began
    assert got == list(range(50))
    assert took < 2.0, f"50 QoS 1 messages took {took:.2f} s"
    failing.watched()
    assert failing.cpu_in_window is not None
    assert failing.cpu_in_window < 0.5 * WINDOW, (
        f"the local broker used {failing.cpu_in_window:.2f} s of CPU in {WINDOW:g} s "
        "of failing bridges"
    )
