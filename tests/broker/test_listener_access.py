"""Who may connect on which listener: anonymous policy, certificate identity, keep-alive limit."""

from __future__ import annotations

from midge.broker.config import ListenerConfig
from midge.protocol.packets import ConnAck

PUBLIC = ListenerConfig(1883, host="0.0.0.0")
MUTUAL_TLS = ListenerConfig(
    8883,
    host="0.0.0.0",
    transport="tls",
    certfile="c",
    keyfile="k",
    cafile="ca",
    require_certificate=True,
    use_identity_as_username=True,
)


def open_on(harness, listener, identity=None):
    client = harness.open()
    client.transport = type(client.transport)()  # a fresh FakeTransport for the new socket
    client.connection = harness.broker.connection_made(
        client.transport, "198.51.100.9:5000", harness.now, listener, identity
    )
    return client


def test_anonymous_clients_are_refused_on_a_public_listener_by_default(harness):
    assert harness.open().connect("local") == [ConnAck(0)]  # the loopback default
    public = open_on(harness, PUBLIC)
    assert public.connect("stranger") == [ConnAck(5)]
    assert public.closed


def test_allow_anonymous_opens_a_public_listener(make_harness):
    harness = make_harness(allow_anonymous=True)
    assert open_on(harness, PUBLIC).connect("c") == [ConnAck(0)]


def test_certificate_common_name_is_the_user_name(harness):
    client = open_on(harness, MUTUAL_TLS, identity="alice")
    assert client.connect("device-1", username="ignored", password=b"x") == [ConnAck(0)]
    assert client.connection.username == "alice"
    without = open_on(harness, MUTUAL_TLS, identity=None)
    assert without.connect("device-2") == [ConnAck(5)]


def test_user_name_is_remembered_for_authorization(harness):
    client = harness.open()
    assert client.connect("c", username="bob") == [ConnAck(0)]
    assert client.connection.username == "bob"


def test_keep_alive_beyond_max_keepalive_is_refused(make_harness):
    harness = make_harness(max_keepalive=60)
    assert harness.open().connect("ok", keep_alive=60) == [ConnAck(0)]
    assert harness.open().connect("long", keep_alive=61) == [ConnAck(2)]
    assert harness.open().connect("never", keep_alive=0) == [ConnAck(2)]
    unlimited = make_harness()
    assert unlimited.open().connect("never", keep_alive=0) == [ConnAck(0)]
