"""The proof of `midge config import`: a real mosquitto.conf, served alike by both brokers.

One mosquitto.conf (relative paths, as Mosquitto users write them) opens a
plain TCP listener that admits anonymous clients, a TLS listener and a
WebSocket listener that do not (`per_listener_settings true`), with a
password file written by mosquitto_passwd and `midge passwd`, an ACL file,
and an include_dir. Debian's mosquitto serves it first; a fixed script of
client actions (paho-mqtt over tcp, tls and websockets, mosquitto_pub and
mosquitto_sub) records what happened. Then `midge config import` translates
the same file (only its ports changed), `midge serve --config` starts on
the result, the same script runs, and the two records must be equal.

What the record leaves out on purpose, being documented differences: the
CONNACK code of a refused login (Mosquitto 2.0 answers 5 to a wrong
password, Midge 4, MQTT 3.1.1's "bad user name or password"), so a refusal
is recorded as "refused"; and the SUBACK of a filter the ACL never lets the
client read (Mosquitto grants it, Midge answers 0x80): the record holds
what such a subscriber receives, which is nothing on both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration_support import WAIT, Paho

from brokers import (
    HOST,
    OutputPump,
    free_port,
    mosquitto_binary,
    start_midge_with_log,
    start_mosquitto_with_log,
    stop,
    wait_for_port,
)
from certificates import Certificates, make_certificates

TOOLS = ("mosquitto_passwd", "mosquitto_pub", "mosquitto_sub")
pytestmark = [
    pytest.mark.skipif(
        mosquitto_binary() is None or any(shutil.which(tool) is None for tool in TOOLS),
        reason="needs mosquitto and mosquitto-clients (apt-get install); CI installs them",
    ),
    pytest.mark.timeout(90),
]

PROCESS_TIMEOUT = 15
PASSWORDS = {"alice": "s3cret", "bob": "hunter2"}
ACL = """\
# Anonymous clients may read the public tree.
topic read public/#

user alice
topic readwrite alice/#
topic write public/alice

user bob
topic read alice/#
"""
# Started as root, mosquitto drops to user "mosquitto", who cannot read these
# files in pytest's 0700 folders; Midge does not switch users, so the importer
# reports this line.
RUN_AS = "user root\n" if os.geteuid() == 0 else ""


@dataclass(frozen=True)
class Ports:
    tcp: int
    tls: int
    ws: int

    @staticmethod
    def fresh() -> Ports:
        return Ports(free_port(), free_port(), free_port())


def conf_text(ports: Ports) -> str:
    return f"""\
# A Mosquitto 2 configuration as its users write them.
per_listener_settings true
{RUN_AS}
# Plain MQTT for local services: anonymous clients welcome.
listener {ports.tcp} {HOST}
allow_anonymous true
password_file passwd
acl_file acl

# MQTT over TLS: clients log in.
listener {ports.tls} {HOST}
certfile certs/server.crt
keyfile certs/server.key
cafile certs/ca.crt
tls_version tlsv1.2
allow_anonymous false
password_file passwd
acl_file acl

# Browsers: MQTT over WebSocket; clients log in.
listener {ports.ws} {HOST}
protocol websockets
password_file passwd
acl_file acl

persistence false
persistent_client_expiration 1d
max_queued_messages 100
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true

include_dir conf.d
"""


@dataclass(frozen=True)
class Setup:
    folder: Path
    certs: Certificates


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    folder = tmp_path_factory.mktemp("import")
    (folder / "certs").mkdir()
    certs = make_certificates(folder / "certs")
    passwd = str(folder / "passwd")
    run(["mosquitto_passwd", "-c", "-b", passwd, "alice", PASSWORDS["alice"]])
    run([sys.executable, "-m", "midge", "passwd", "-b", passwd, "bob", PASSWORDS["bob"]])
    (folder / "acl").write_text(ACL, encoding="utf-8")
    (folder / "conf.d").mkdir()
    (folder / "conf.d" / "limits.conf").write_text("max_inflight_messages 20\n", encoding="utf-8")
    return Setup(folder, certs)


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, check=True, timeout=PROCESS_TIMEOUT, capture_output=True, text=True, **kwargs
    )


@contextmanager
def serving(args: list[str], folder: Path, ports: Ports) -> Iterator[None]:
    """Run a broker in `folder` (where the relative paths point) until every port accepts."""
    process = subprocess.Popen(
        args,
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    pump = OutputPump(process)
    try:
        for port in (ports.tcp, ports.tls, ports.ws):
            try:
                wait_for_port(port)
            except AssertionError:
                raise AssertionError(
                    f"{args[0]} did not listen on {port}:\n{pump.text()}"
                ) from None
        yield
    finally:
        stop(process)
        pump.join()


# ------------------------------------------------------------- the script


def login(
    setup: Setup, ports: Ports, transport: str, user: str | None = None, password: str = ""
) -> Paho:
    port = {"tcp": ports.tcp, "tls": ports.tls, "ws": ports.ws}[transport]
    return Paho(
        HOST,
        port,
        username=user,
        password=password or PASSWORDS.get(user or "", ""),
        transport="websockets" if transport == "ws" else "tcp",
        tls={"ca_certs": str(setup.certs.ca)} if transport == "tls" else None,
    )


def outcome(client: Paho) -> str:
    connack = client.connect()
    return "refused" if connack.reason.is_failure else "accepted"


def topics(messages: list[Any]) -> list[tuple[str, bytes, int]]:
    return [(message.topic, message.payload, int(message.retain)) for message in messages]


def tool(
    name: str, port: int, *args: str, ca: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """mosquitto_pub or mosquitto_sub, over TLS when given the CA certificate."""
    common = ["-h", HOST, "-p", str(port)]
    if ca is not None:
        common += ["--cafile", str(ca)]
    return subprocess.run(
        [name, *common, *args], capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False
    )


def script(setup: Setup, ports: Ports) -> list[tuple[str, Any]]:
    """The same client actions against whichever broker serves `ports`; what happened."""
    record: list[tuple[str, Any]] = []
    clients: list[Paho] = []

    def connect(step: str, *args: Any, **kwargs: Any) -> Paho:
        client = login(setup, ports, *args, **kwargs)
        clients.append(client)
        record.append((step, outcome(client)))
        return client

    try:
        # Who may connect where. (A success between failures keeps Midge's
        # login throttle, which spaces failures from one address, short.)
        anonymous = connect("anonymous over tcp", "tcp")
        connect("anonymous over tls", "tls")
        alice = connect("alice over tls", "tls", "alice")
        connect("anonymous over websocket", "ws")
        bob = connect("bob over websocket", "ws", "bob")
        connect("alice with a wrong password", "tls", "alice", "wrong")
        connect("alice over websocket", "ws", "alice")
        connect("an unknown user over tcp", "tcp", "carol", "x")
        connect("bob over tcp", "tcp", "bob")
        messaging(setup, ports, record, alice, bob, anonymous, connect)
    finally:
        for client in clients:
            client.close()
    return record


def messaging(
    setup: Setup,
    ports: Ports,
    record: list[tuple[str, Any]],
    alice: Paho,
    bob: Paho,
    anonymous: Paho,
    connect: Any,
) -> None:
    for client, pattern in ((bob, "alice/#"), (alice, "alice/#"), (anonymous, "public/#")):
        client.subscribe(pattern, 1)
    anonymous.subscribe("alice/#", 1)  # the ACL never lets anonymous clients read it
    alice.publish("alice/hello", "hi bob", qos=1)
    record.append(("bob reads alice/#", topics(bob.until("alice/hello"))))
    bob.publish("alice/forged", "from bob", qos=1)  # bob may only read alice/#
    alice.publish("alice/sentinel", "end", qos=1)
    record.append(
        ("alice's view after bob's denied publish", topics(alice.until("alice/sentinel")))
    )
    alice.publish("public/alice", "r1", qos=1, retain=True)
    record.append(("anonymous reads public/# only", topics(anonymous.until("public/alice"))))
    late = connect("a second anonymous client", "tcp")
    late.subscribe("public/#", 1)
    record.append(("the retained message", topics(late.until("public/alice"))))
    denied = tool("mosquitto_pub", ports.tcp, "-t", "public/x", "-m", "no", "-q", "1")
    record.append(("anonymous mosquitto_pub to a read-only topic", denied.returncode))
    alice.publish("public/alice", "r2", qos=1)
    record.append(("after the denied publish", topics(late.until("public/alice"))))
    ca = setup.certs.ca
    published = tool(
        "mosquitto_pub", ports.tls, "-u", "alice", "-P", PASSWORDS["alice"],
        "-t", "alice/cli", "-m", "over tls", "-q", "1", ca=ca,
    )  # fmt: skip
    record.append(("alice's mosquitto_pub over tls", published.returncode))
    record.append(("bob receives it", topics(bob.until("alice/cli"))))
    refused = tool(
        "mosquitto_sub", ports.tls, "-u", "alice", "-P", "wrong", "-t", "alice/#", "-W", "3", ca=ca
    )
    record.append(("mosquitto_sub with a wrong password", "refused" if refused.returncode else 0))
    retained = tool("mosquitto_sub", ports.tcp, "-t", "public/#", "-v", "-C", "1", "-W", "5")
    record.append(("anonymous mosquitto_sub", (retained.returncode, retained.stdout)))


EXPECTED = [
    ("anonymous over tcp", "accepted"),
    ("anonymous over tls", "refused"),
    ("alice over tls", "accepted"),
    ("anonymous over websocket", "refused"),
    ("bob over websocket", "accepted"),
    ("alice with a wrong password", "refused"),
    ("alice over websocket", "accepted"),
    ("an unknown user over tcp", "refused"),
    ("bob over tcp", "accepted"),
    ("bob reads alice/#", [("alice/hello", b"hi bob", 0)]),
    (
        "alice's view after bob's denied publish",
        [("alice/hello", b"hi bob", 0), ("alice/sentinel", b"end", 0)],
    ),
    ("anonymous reads public/# only", [("public/alice", b"r1", 0)]),
    ("a second anonymous client", "accepted"),
    ("the retained message", [("public/alice", b"r1", 1)]),
    ("anonymous mosquitto_pub to a read-only topic", 0),
    ("after the denied publish", [("public/alice", b"r2", 0)]),
    ("alice's mosquitto_pub over tls", 0),
    ("bob receives it", [("alice/sentinel", b"end", 0), ("alice/cli", b"over tls", 0)]),
    ("mosquitto_sub with a wrong password", "refused"),
    ("anonymous mosquitto_sub", (0, "public/alice r1\n")),
]


def test_the_imported_config_serves_clients_as_mosquitto_did(setup: Setup) -> None:
    folder = setup.folder
    mosquitto_ports = Ports.fresh()
    (folder / "mosquitto.conf").write_text(conf_text(mosquitto_ports), encoding="utf-8")
    binary = mosquitto_binary()
    assert binary is not None
    with serving([binary, "-c", "mosquitto.conf"], folder, mosquitto_ports):
        by_mosquitto = script(setup, mosquitto_ports)
    assert by_mosquitto == EXPECTED

    midge_ports = Ports.fresh()
    conf = folder / "for-midge.conf"
    conf.write_text(conf_text(midge_ports), encoding="utf-8")
    imported = subprocess.run(
        [sys.executable, "-m", "midge", "config", "import", str(conf), "--output", "midge.toml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    left_out = [line for line in imported.stderr.splitlines() if "not translated:" in line]
    if RUN_AS:
        assert imported.returncode == 1, imported.stderr
        assert len(left_out) == 1 and "for-midge.conf:3: user root" in left_out[0], left_out
    else:
        assert imported.returncode == 0, imported.stderr
        assert not left_out
    assert "warning" not in imported.stderr, imported.stderr
    with serving(
        [sys.executable, "-m", "midge", "serve", "--config", "midge.toml"], folder, midge_ports
    ):
        by_midge = script(setup, midge_ports)
    assert by_midge == by_mosquitto


def test_serve_given_the_mosquitto_conf_names_the_import_command(setup: Setup) -> None:
    conf = setup.folder / "plain.conf"
    conf.write_text(conf_text(Ports.fresh()), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "midge", "serve", "--config", str(conf)],
        cwd=setup.folder,
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        check=False,
    )
    assert result.returncode == 2
    assert "looks like a Mosquitto config" in result.stderr
    assert f"midge config import {conf} > midge.toml" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------- a bridge


def bridge_conf(port: int, remote_port: int) -> str:
    return f"""\
listener {port} {HOST}
allow_anonymous true

# To the remote Mosquitto: sensors go up under site1/, commands come down.
connection cloud
address {HOST}:{remote_port}
topic sensors/# out 1 "" site1/
topic commands/# in 1 "" site1/
restart_timeout 1
"""


def test_an_imported_bridge_carries_messages_both_ways(tmp_path: Path) -> None:
    """A mosquitto.conf whose `connection` points at a running Mosquitto, imported
    and served by Midge: what is published here on an `out` topic arrives at the
    remote with the remote prefix, and the way back works too."""
    with start_mosquitto_with_log() as remote:
        port = free_port()
        (tmp_path / "mosquitto.conf").write_text(bridge_conf(port, remote.port), "utf-8")
        command = ["config", "import", "mosquitto.conf", "--output", "midge.toml"]
        imported = subprocess.run(
            [sys.executable, "-m", "midge", *command],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
            check=False,
        )
        assert imported.returncode == 0, imported.stderr
        assert "warning" not in imported.stderr, imported.stderr
        toml = (tmp_path / "midge.toml").read_text("utf-8")
        assert "[[bridges]]" in toml
        with start_midge_with_log(toml, workdir=tmp_path, data_dir=False) as served:
            served.log.wait_for(r"bridge cloud: connected", timeout=WAIT * 2)
            carried_both_ways(served.port, remote.port)


def carried_both_ways(port: int, remote_port: int) -> None:
    at_remote, here = Paho(HOST, remote_port), Paho(HOST, port)
    try:
        at_remote.connect_ok()
        here.connect_ok()
        at_remote.subscribe("site1/#", 1)
        here.subscribe("commands/#", 1)
        here.publish("sensors/t1", "21.5", qos=1)
        [message] = at_remote.until("site1/sensors/t1")
        assert (message.payload, message.qos) == (b"21.5", 1)
        at_remote.publish("site1/commands/fan", "on", qos=1)
        [message] = here.until("commands/fan")
        assert message.payload == b"on"
    finally:
        at_remote.close()
        here.close()
