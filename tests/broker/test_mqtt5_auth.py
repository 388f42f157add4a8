"""MQTT 5.0 enhanced authentication in the broker core: SCRAM-SHA-256 against a
credentials file, the AUTH exchange, re-authentication, and the hook."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from midge import scram
from midge.broker.enhanced_auth import CONTINUE, FAILURE, SUCCESS, Status
from midge.protocol.packets import Auth, ConnAck, Connect, Disconnect, PingReq, PingResp
from midge.protocol.properties import Properties
from sansio import Client, Harness

MakeHarness = Callable[..., Harness]
METHOD = "SCRAM-SHA-256"


@pytest.fixture
def scram_harness(make_harness: MakeHarness, tmp_path: Path) -> Harness:
    path = tmp_path / "scram"
    credential = scram.format_credential(scram.make_credential("secret", iterations=500))
    path.write_text(f"# users\nalice:{credential}\n")
    return make_harness(scram_file=str(path))


def _auth(reason: int, data: bytes | None, method: str = METHOD) -> Auth:
    return Auth(reason, Properties(authentication_method=method, authentication_data=data))


def start(harness: Harness, user: str, password: str) -> tuple[Client, scram.ScramClient, Auth]:
    """CONNECT with the client-first message; returns the broker's AUTH 0x18."""
    client = harness.open()
    sasl = scram.ScramClient(user, password)
    answer = client.connect(
        "c1",
        level=5,
        properties=Properties(authentication_method=METHOD, authentication_data=sasl.first()),
    )
    assert len(answer) == 1 and isinstance(answer[0], Auth), answer
    assert answer[0].reason_code == 0x18
    return client, sasl, answer[0]


def login(harness: Harness, user: str, password: str) -> tuple[Client, list]:
    client, sasl, challenge = start(harness, user, password)
    assert challenge.properties is not None
    client.send(_auth(0x18, sasl.final(challenge.properties.authentication_data)))
    return client, client.received()


def test_scram_login_succeeds_and_the_client_can_check_the_broker(
    scram_harness: Harness,
) -> None:
    """[MQTT-4.12.0-...] CONNECT, AUTH 0x18 both ways, CONNACK 0 with the final data."""
    client, answer = login(scram_harness, "alice", "secret")
    (connack,) = answer
    assert isinstance(connack, ConnAck) and connack.return_code == 0
    assert connack.properties is not None
    assert connack.properties.authentication_method == METHOD
    assert connack.properties.authentication_data.startswith(b"v=")
    assert scram_harness.broker.connections["c1"].username == "alice"
    client.send(PingReq())
    assert client.received() == [PingResp()]


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("mallory", "secret")])
def test_a_failed_exchange_gets_connack_0x86(
    scram_harness: Harness, user: str, password: str
) -> None:
    client, answer = login(scram_harness, user, password)
    assert answer == [ConnAck(0x86)]
    assert client.closed
    assert "c1" not in scram_harness.broker.sessions


def test_only_auth_may_come_while_authenticating(scram_harness: Harness) -> None:
    client, _, _ = start(scram_harness, "alice", "secret")
    client.send(PingReq())
    assert client.closed


def test_an_auth_with_another_method_is_a_protocol_error(scram_harness: Harness) -> None:
    client, _, _ = start(scram_harness, "alice", "secret")
    client.send(_auth(0x18, b"x", method="PLAIN"))
    assert client.closed


def test_authentication_must_end_within_the_connect_timeout(scram_harness: Harness) -> None:
    client, _, _ = start(scram_harness, "alice", "secret")
    scram_harness.fire(scram_harness.config.connect_timeout + 1)
    assert client.closed


def test_a_method_without_credentials_file_is_not_offered(harness: Harness) -> None:
    client = harness.open()
    answer = client.connect(
        "c1", level=5, properties=Properties(authentication_method=METHOD, authentication_data=b"")
    )
    assert answer == [ConnAck(0x8C)]


def test_re_authentication_succeeds_with_auth_0(scram_harness: Harness) -> None:
    """[MQTT-4.12.1-1] AUTH 0x19 with the same method; the connection goes on."""
    client, _ = login(scram_harness, "alice", "secret")
    sasl = scram.ScramClient("alice", "secret")
    client.send(_auth(0x19, sasl.first()))
    (challenge,) = client.received()
    assert isinstance(challenge, Auth) and challenge.reason_code == 0x18
    assert challenge.properties is not None
    client.send(_auth(0x18, sasl.final(challenge.properties.authentication_data)))
    (done,) = client.received()
    assert isinstance(done, Auth) and done.reason_code == 0
    assert done.properties is not None
    sasl.verify(done.properties.authentication_data)
    assert not client.closed


def test_failed_re_authentication_gets_disconnect_0x87(scram_harness: Harness) -> None:
    """[MQTT-4.12.1-2]."""
    client, _ = login(scram_harness, "alice", "secret")
    sasl = scram.ScramClient("alice", "stolen?")
    client.send(_auth(0x19, sasl.first()))
    (challenge,) = client.received()
    assert isinstance(challenge, Auth) and challenge.properties is not None
    client.send(_auth(0x18, sasl.final(challenge.properties.authentication_data)))
    assert client.received() == [Disconnect(0x87)]
    assert client.closed


def test_re_authentication_with_another_method_is_a_protocol_error(
    scram_harness: Harness,
) -> None:
    client, _ = login(scram_harness, "alice", "secret")
    client.send(_auth(0x19, b"x", method="OTHER"))
    (disconnect,) = client.received()
    assert isinstance(disconnect, Disconnect) and disconnect.reason_code == 0x82


def test_auth_on_a_connection_without_enhanced_auth_is_a_protocol_error(
    harness: Harness,
) -> None:
    client = harness.open()
    client.connect("c1", level=5)
    client.send(_auth(0x19, b"x"))
    (disconnect,) = client.received()
    assert isinstance(disconnect, Disconnect) and disconnect.reason_code == 0x82


# ------------------------------------------------------------------ hook


class _Challenge:
    """A two-step exchange: the broker asks for "42", the client must answer it."""

    def __init__(self) -> None:
        self.username: str | None = None
        self._asked = False

    def step(self, data: bytes | None) -> tuple[Status, bytes | None]:
        if not self._asked:
            self._asked = True
            return CONTINUE, b"what is the answer?"
        if data == b"42":
            self.username = "deep-thought"
            return SUCCESS, None
        return FAILURE, None


class ChallengeHook:
    def authenticate(self, client_id, username, password, peer):  # type: ignore[no-untyped-def]
        return None

    def authorize(self, client_id, username, action, topic):  # type: ignore[no-untyped-def]
        return None

    def start_auth(self, method, client_id, username, peer):  # type: ignore[no-untyped-def]
        return _Challenge() if method == "CHALLENGE" else None


@pytest.mark.parametrize(("reply", "code"), [(b"42", 0), (b"41", 0x86)])
def test_a_hook_offers_its_own_method(make_harness: MakeHarness, reply: bytes, code: int) -> None:
    harness = make_harness(auth_hook="test_mqtt5_auth:ChallengeHook")
    client = harness.open()
    client.version = 5
    client.send(
        Connect("c1", protocol_level=5, properties=Properties(authentication_method="CHALLENGE"))
    )
    (challenge,) = client.received()
    assert isinstance(challenge, Auth) and challenge.properties is not None
    assert challenge.properties.authentication_data == b"what is the answer?"
    client.send(_auth(0x18, reply, method="CHALLENGE"))
    (connack,) = client.received()
    assert isinstance(connack, ConnAck) and connack.return_code == code
    if code == 0:
        assert harness.broker.connections["c1"].username == "deep-thought"
