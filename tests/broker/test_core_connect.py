"""CONNECT handling: the first packet, CONNACK return codes, client ids, authentication."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from midge.protocol.codec import encode
from midge.protocol.packets import (
    ConnAck,
    Connect,
    PingReq,
    PingResp,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    Will,
)

ACCEPTED = bytes((0x20, 2, 0, 0))


def connack(code: int) -> bytes:
    return bytes((0x20, 2, 0, code))


def assert_graceful_close(client) -> None:
    """[MQTT-3.2.2-5] after a refusing CONNACK the server closes the connection, and the
    CONNACK must reach the client: close after flushing, not abort (which drops the buffer).
    """
    assert client.transport.closed
    assert not client.transport.aborted


# ------------------------------------------------------------ first packet


@pytest.mark.parametrize(
    "packet",
    [PingReq(), Subscribe(1, (Subscription("a", 0),)), Publish("a", b"x")],
    ids=["pingreq", "subscribe", "publish"],
)
def test_first_packet_other_than_connect_closes_without_answer(harness, packet):
    """[MQTT-3.1.0-1] the first packet from a client must be CONNECT; else close."""
    client = harness.open()
    client.send(packet)
    assert client.raw() == b""
    assert client.closed
    assert harness.broker.open_connections == 0
    assert harness.broker.stats.protocol_violations == 1


def test_second_connect_is_a_protocol_violation(harness):
    """[MQTT-3.1.0-2] a second CONNECT closes the connection, without a CONNACK."""
    client = harness.connect("c1")
    client.send(Connect("c1"))
    assert client.raw() == b""
    assert client.closed
    assert "c1" not in harness.broker.connections
    assert harness.broker.stats.protocol_violations == 1


def test_accepted_connack_bytes(harness):
    """[MQTT-3.2.2-1] CONNACK 0 with session present 0 for a clean session."""
    client = harness.open()
    client.send(Connect("c1"))
    assert client.raw() == ACCEPTED
    assert not client.closed
    assert harness.broker.connections["c1"] is client.connection


def test_connect_split_into_single_bytes(harness):
    """[MQTT-3.1.0-1] a CONNECT arriving one byte at a time is handled once it is whole."""
    client = harness.open()
    data = encode(Connect("c1", keep_alive=30))
    for byte in data[:-1]:
        client.send(bytes((byte,)))
    assert client.raw() == b""
    client.send(data[-1:])
    assert client.raw() == ACCEPTED


# ------------------------------------------------------------ CONNACK 1


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("MQTT", 6),
        ("MQTT", 255),
        ("MQIsdp", 5),
        pytest.param("MQTT", 3),
        pytest.param("MQIsdp", 4),
    ],
)
def test_unacceptable_protocol_level_gets_connack_1_then_close(harness, name, level):
    """[MQTT-3.1.2-2] an unsupported level gets CONNACK 1 and the connection closes."""
    client = harness.open()
    client.send(encode(Connect("c1", protocol_level=level, protocol_name=name)))
    assert client.raw() == connack(1)
    assert_graceful_close(client)
    assert harness.broker.connections == {}
    assert harness.broker.sessions == {}


def test_mqisdp_at_level_4_is_not_accepted_under_a_generated_id(harness):
    """[MQTT-3.1.2-2] 'MQIsdp' is level 3 only; level 4 with that name must be refused.

    Today the CONNECT is accepted without its payload being read: client id, will and
    credentials are ignored and the client runs under a broker-generated id.
    """
    client = harness.open()
    client.send(encode(Connect("c1", protocol_level=4, protocol_name="MQIsdp")))
    assert client.raw() == connack(1)
    assert harness.broker.connections == {}


def test_refused_connect_ignores_the_rest_of_the_chunk(harness):
    """[MQTT-3.1.4-5] after refusing CONNECT the server processes nothing more."""
    client = harness.open()
    client.send(
        encode(Connect("c1", protocol_level=6))
        + encode(Subscribe(1, (Subscription("a", 0),)))
        + encode(PingReq())
    )
    assert client.raw() == connack(1)


# ------------------------------------------------------------ CONNACK 2


def test_empty_client_id_with_persistent_session_is_rejected(harness):
    """[MQTT-3.1.3-8] zero-length id with clean session 0: CONNACK 2, then close."""
    client = harness.open()
    client.send(Connect("", clean_session=False))
    assert client.raw() == connack(2)
    assert_graceful_close(client)
    assert harness.broker.sessions == {}


def test_empty_client_id_on_mqtt_3_1_is_rejected(harness):
    """MQTT 3.1 (MQIsdp) requires a 1-23 character id: CONNACK 2 [MQTT-3.1.3-9]."""
    client = harness.open()
    client.send(encode(Connect("", protocol_level=3, protocol_name="MQIsdp"), 3))
    assert client.raw() == connack(2)
    assert_graceful_close(client)


@pytest.mark.parametrize(
    "client_id",
    ["has-dash", "has space", "x" * 24, "caf\u00e9", "under_score", "a/b"],
)
def test_strict_client_id_rejects_non_alnum_and_long_ids(make_harness, client_id):
    """[MQTT-3.1.3-5] strict ids: 1-23 of 0-9a-zA-Z; others get CONNACK 2 [MQTT-3.1.3-9]."""
    harness = make_harness(strict_client_id=True)
    client = harness.open()
    client.send(Connect(client_id))
    assert client.raw() == connack(2)
    assert_graceful_close(client)
    assert harness.broker.connections == {}


@pytest.mark.parametrize("client_id", ["a", "abcXYZ0123456789", "x" * 23])
def test_strict_client_id_accepts_short_alnum_ids(make_harness, client_id):
    """[MQTT-3.1.3-5] 1 to 23 characters of 0-9a-zA-Z must be accepted."""
    harness = make_harness(strict_client_id=True)
    client = harness.open()
    client.send(Connect(client_id))
    assert client.raw() == ACCEPTED
    assert harness.broker.connections[client_id] is client.connection


@pytest.mark.parametrize("client_id", ["has-dash", "x" * 100, "caf\u00e9"])
def test_lenient_client_id_accepts_other_ids(harness, client_id):
    """[MQTT-3.1.3-5] a server MAY allow longer ids and other characters (the default)."""
    client = harness.open()
    client.send(Connect(client_id))
    assert client.raw() == ACCEPTED
    assert harness.broker.connections[client_id] is client.connection


def test_empty_client_id_with_clean_session_gets_a_unique_id(harness):
    """[MQTT-3.1.3-6] the server assigns a unique id to a zero-length one (clean session 1)."""
    first = harness.open()
    second = harness.open()
    assert first.connect("") == [ConnAck(0, False)]
    assert second.connect("") == [ConnAck(0, False)]
    ids = first.connection.client_id, second.connection.client_id
    assert all(ids)
    assert ids[0] != ids[1]
    assert harness.broker.connections == {ids[0]: first.connection, ids[1]: second.connection}
    assert not first.closed
    assert not second.closed
    # The two are separate sessions: what one subscribes to reaches only it.
    first.subscribed("t")
    second.published("t", b"x")
    assert first.received() == [Publish("t", b"x")]
    assert second.received() == []


def test_generated_id_skips_ids_already_in_use(harness):
    """[MQTT-3.1.3-6] the assigned id is unique even against ids clients chose themselves."""
    taken = harness.connect("midge-auto-1", clean_session=False)
    taken.disconnect()  # the persistent session stays
    client = harness.open()
    assert client.connect("") == [ConnAck(0, False)]
    assert client.connection.client_id not in ("", "midge-auto-1")
    assert harness.broker.sessions["midge-auto-1"].persistent


# ------------------------------------------------------------ CONNACK 3


def test_max_connections_refuses_a_new_client_with_connack_3(make_harness):
    """CONNACK 3 (server unavailable) when the server is full [MQTT-3.2.2-5 closes]."""
    harness = make_harness(max_connections=1)
    first = harness.connect("one")
    second = harness.open()
    second.send(Connect("two"))
    assert second.raw() == connack(3)
    assert_graceful_close(second)
    assert not first.closed
    assert list(harness.broker.connections) == ["one"]
    # Once the first leaves there is room again.
    first.disconnect()
    third = harness.open()
    third.send(Connect("two"))
    assert third.raw() == ACCEPTED


def test_max_connections_still_allows_a_takeover(make_harness):
    """[MQTT-3.1.4-2] a client id already connected may take over even when the server is full."""
    harness = make_harness(max_connections=1)
    first = harness.connect("one")
    second = harness.open()
    second.send(Connect("one"))
    assert second.raw() == ACCEPTED
    assert first.closed
    assert harness.broker.connections == {"one": second.connection}


def test_max_connections_refuses_an_empty_id(make_harness):
    """An empty id is never a takeover, so a full server answers CONNACK 3."""
    harness = make_harness(max_connections=1)
    harness.connect("one")
    client = harness.open()
    client.send(Connect(""))
    assert client.raw() == connack(3)


# ------------------------------------------------------------ CONNACK 4 / 5


def run_mosquitto_passwd(path, username: str, password: str) -> None:
    binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not shutil.which(binary):
        pytest.skip("mosquitto_passwd is not installed")
    subprocess.run(
        [binary, "-c", "-b", str(path), username, password],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture
def mosquitto_password_file(tmp_path):
    path = tmp_path / "mosquitto.passwd"
    run_mosquitto_passwd(path, "alice", "s3cret")
    return str(path)


@pytest.fixture(params=["mosquitto_passwd", "$7$", "$6$"])
def alice_file(request, password_file, password_lines):
    """A password file holding alice / s3cret in each format the broker reads."""
    if request.param == "mosquitto_passwd":
        return request.getfixturevalue("mosquitto_password_file")
    other = password_lines["7"]("bob", "other")
    return password_file(["# users", other, password_lines[request.param[1]]("alice", "s3cret")])


def test_mosquitto_passwd_writes_a_pbkdf2_line(mosquitto_password_file):
    """The file the binary writes is `alice:$7$iterations$salt$hash` (what auth.py reads)."""
    with open(mosquitto_password_file, encoding="utf-8") as file:
        line = file.read().strip()
    assert line.startswith("alice:$7$")
    assert len(line.split("$")) == 5


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        ("alice", b"s3cret", 0),
        ("alice", b"wrong", 4),
        ("alice", b"", 4),
        ("alice", None, 4),
        ("mallory", b"s3cret", 4),
        ("ALICE", b"s3cret", 4),
        (None, None, 5),
    ],
    ids=[
        "right",
        "wrong-password",
        "empty-password",
        "no-password",
        "unknown-user",
        "case-matters",
        "anonymous",
    ],
)
def test_password_file_connack_codes(make_harness, alice_file, username, password, code):
    """CONNACK 4 for bad credentials, 5 for anonymous (return codes of section 3.2.2.3)."""
    harness = make_harness(allow_anonymous=False, password_file=alice_file)
    client = harness.open()
    client.send(Connect("c1", username=username, password=password))
    assert client.raw() == connack(code)
    assert client.closed is (code != 0)
    assert not client.transport.aborted
    assert ("c1" in harness.broker.connections) is (code == 0)


def test_password_file_with_anonymous_allowed(make_harness, alice_file):
    """allow_anonymous still checks the credentials a client does send."""
    harness = make_harness(allow_anonymous=True, password_file=alice_file)
    anonymous = harness.open()
    anonymous.send(Connect("anon"))
    assert anonymous.raw() == ACCEPTED
    liar = harness.open()
    liar.send(Connect("liar", username="alice", password=b"nope"))
    assert liar.raw() == connack(4)


def test_anonymous_refused_with_connack_5(make_harness):
    """CONNACK 5 (not authorized) for a client without user name when anonymous is off."""
    harness = make_harness(allow_anonymous=False)
    client = harness.open()
    client.send(Connect("c1"))
    assert client.raw() == connack(5)
    assert_graceful_close(client)
    assert harness.broker.sessions == {}


def test_refused_connect_does_not_take_over_the_existing_client(make_harness, alice_file):
    """[MQTT-3.1.4-2] applies only to an accepted CONNECT: a bad password kicks no one."""
    harness = make_harness(allow_anonymous=False, password_file=alice_file)
    owner = harness.open()
    owner.send(Connect("c1", username="alice", password=b"s3cret"))
    assert owner.raw() == ACCEPTED
    intruder = harness.open()
    intruder.send(Connect("c1", username="alice", password=b"guess"))
    assert intruder.raw() == connack(4)
    assert not owner.closed
    assert harness.broker.connections == {"c1": owner.connection}
    owner.send(PingReq())
    assert owner.received() == [PingResp()]


# ------------------------------------------------------------ refusals and the will


WILL = Will("will/topic", b"bye", 1, True)


@pytest.mark.parametrize(
    ("config", "connect", "code"),
    [
        ({}, Connect("c1", will=WILL, protocol_level=6), 1),
        ({}, Connect("", clean_session=False, will=WILL), 2),
        ({"strict_client_id": True}, Connect("bad-id", will=WILL), 2),
        ({"max_connections": 1}, Connect("c1", will=WILL), 3),
        ({"allow_anonymous": False}, Connect("c1", will=WILL), 5),
    ],
    ids=["level", "empty-id", "strict-id", "full", "anonymous"],
)
def test_refused_connection_does_not_publish_its_will(
    make_harness, password_file, password_lines, config, connect, code
):
    """[MQTT-3.1.2-8] a will exists only once the CONNECT is accepted; refusals publish none."""
    users = password_file([password_lines["7"]("watcher", "pw")])
    harness = make_harness(password_file=users, **config)
    watcher = harness.connect("watcher", username="watcher", password=b"pw")
    watcher.subscribed(("will/#", 1))
    client = harness.open()
    client.send(connect)
    assert client.raw() == connack(code)
    client.drop()
    assert watcher.received() == []
    assert harness.broker.retained.count == 0
    assert harness.broker.stats.messages_received == 0


def test_suback_after_connect_in_the_same_chunk(harness):
    """[MQTT-3.1.4-4]: after CONNACK 0 the server goes on with the packets that follow."""
    client = harness.open()
    client.send(encode(Connect("c1")) + encode(Subscribe(7, (Subscription("a/+", 2),))))
    assert client.received() == [ConnAck(0), SubAck(7, (2,))]


@pytest.mark.parametrize(("allow_anonymous", "code"), [(True, 0), (False, 5)])
def test_user_name_without_password_file(make_harness, allow_anonymous, code):
    """Without a password file a user name is an identity only (as in Mosquitto):
    accepted when anonymous access is allowed, CONNACK 5 otherwise.
    """
    harness = make_harness(allow_anonymous=allow_anonymous)
    client = harness.open()
    client.send(Connect("c1", username="alice", password=b"anything"))
    assert client.raw() == connack(code)
    assert client.closed is (code != 0)


def test_a_bridge_session_id_is_not_for_network_clients(harness):
    """A bridge's own session is "$bridge/<name>" (its messages for the remote
    broker wait there): a network client may not take it over."""
    client = harness.open()
    assert client.connect("$bridge/cloud") == [ConnAck(2)]
    assert "$bridge/cloud" not in harness.broker.sessions
