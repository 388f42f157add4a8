"""Area 20 (MQTT 5.0): CONNECT and CONNACK, client identifiers, takeover, authentication.

The broker's limits are its own: scenarios read them from CONNACK rather than
assume a configuration.
"""

from __future__ import annotations

from midge.conformance.harness import check
from midge.conformance.target import Target
from midge.conformance.v5 import (
    expect_disconnect,
    expect_refused,
    properties_of,
    require,
    scenario5,
    server_properties,
)
from midge.protocol.packets import Disconnect
from midge.protocol.properties import Properties
from midge.protocol.reasons import ReasonCode

KEEP_ALIVE_LARGE = 65535
"""The largest keep alive a client may ask for: a broker with a lower limit says so."""


@scenario5(
    "20-01",
    "A 5.0 CONNECT with Clean Start gets CONNACK reason code 0 and session present 0",
    rule="MQTT-3.2.2-2",
)
def connect_accepted(target: Target) -> None:
    client = target.raw("c")
    connack = client.connect(target.client_id("c"))
    check(connack.return_code == 0, f"c: CONNACK reason code 0x{connack.return_code:02X}")
    check(not connack.session_present, "c: CONNACK session present 1 after Clean Start 1")
    client.still_connected()


@scenario5(
    "20-02",
    "An empty client id gets a CONNACK with a new Assigned Client Identifier for each client",
    rule="MQTT-3.2.2-16",
)
def assigned_client_identifier(target: Target) -> None:
    assigned = []
    for name in ("a", "b"):
        client = target.raw(name)
        connack = client.connect("")
        check(connack.return_code == 0, f"{name}: CONNACK 0x{connack.return_code:02X}")
        identifier = properties_of(connack).assigned_client_identifier
        check(bool(identifier), f"{name}: CONNACK without an Assigned Client Identifier")
        assigned.append(identifier)
    check(assigned[0] != assigned[1], f"both clients were assigned {assigned[0]!r}")


@scenario5(
    "20-03",
    "Keep alive 65535 is accepted; a Server Keep Alive, if sent, replaces it and is enforced",
    rule="MQTT-3.2.2-21",
)
def server_keep_alive(target: Target) -> None:
    client = target.client("c", keep_alive=KEEP_ALIVE_LARGE)
    announced = server_properties(client).server_keep_alive
    if announced is not None:
        check(announced <= KEEP_ALIVE_LARGE, f"c: Server Keep Alive {announced}")
    client.still_connected()


@scenario5(
    "20-04",
    "Request Problem Information 0: no Reason String or User Property on an UNSUBACK",
    rule="MQTT-3.1.2-29",
)
def no_problem_information(target: Target) -> None:
    client = target.client("c", properties=Properties(request_problem_information=0))
    unsuback = client.unsubscribe(target.topic("never-subscribed"))
    leaked = unsuback.properties
    check(
        leaked is None or (leaked.reason_string is None and not leaked.user_properties),
        f"c: UNSUBACK carries {leaked!r} although the client asked for no problem information",
    )


@scenario5(
    "20-05",
    "An unsupported Authentication Method gets CONNACK 0x8C (or 0x87), then the close",
    rule="MQTT-4.12.0-1",
)
def unsupported_auth_method(target: Target) -> None:
    client = target.raw("c")
    packet = client.connect_packet(
        target.client_id("c"),
        properties=Properties(authentication_method="X-MIDGE-CHECK-UNKNOWN"),
    )
    client.decoder.version = 5
    client.send(packet)
    expect_refused(client, ReasonCode.BAD_AUTHENTICATION_METHOD, ReasonCode.NOT_AUTHORIZED)


@scenario5(
    "20-06",
    "Without an Authentication Method the CONNACK carries none (and no AUTH is sent)",
    rule="MQTT-4.12.0-6",
)
def no_auth_method_in_connack(target: Target) -> None:
    client = target.client("c")
    method = server_properties(client).authentication_method
    check(method is None, f"c: CONNACK carries Authentication Method {method!r}")
    client.still_connected()


@scenario5(
    "20-07",
    "A second CONNECT is a Protocol Error: DISCONNECT 0x82, then the close",
    rule="MQTT-3.1.0-2",
)
def second_connect(target: Target) -> None:
    client = target.client("c")
    client.send(client.connect_packet(target.client_id("c")))
    expect_disconnect(client, ReasonCode.PROTOCOL_ERROR)


@scenario5(
    "20-08",
    "Session takeover: the old connection gets DISCONNECT 0x8E, then the close",
    rule="MQTT-3.1.4-3",
)
def session_taken_over(target: Target) -> None:
    old = target.client("c")
    target.client("c")
    expect_disconnect(old, ReasonCode.SESSION_TAKEN_OVER)


@scenario5(
    "20-09",
    "A client DISCONNECT in the short form (no reason code) is a normal disconnection",
    rule="§3.14.2.1",
)
def short_disconnect(target: Target) -> None:
    client = target.client("c")
    client.send(b"\xe0\x00")
    client.expect_closed()


@scenario5(
    "20-10",
    "Response Information is sent only when requested (Request Response Information 1)",
    rule="MQTT-3.1.2-28",
)
def response_information(target: Target) -> None:
    plain = target.client("p")
    unasked = server_properties(plain).response_information
    check(unasked is None, f"p: Response Information {unasked!r} without a request")
    asked = target.client("a", properties=Properties(request_response_information=1))
    asked.still_connected()  # a broker MAY answer without Response Information


@scenario5(
    "20-11",
    "The server does not send a Session Expiry Interval on its DISCONNECT (takeover)",
    rule="MQTT-3.14.2-2",
)
def no_expiry_on_server_disconnect(target: Target) -> None:
    old = target.client("c")
    target.client("c")
    packet = old.receive_or_close(waiting_for="DISCONNECT 0x8E or the close")
    require(isinstance(packet, Disconnect), "the broker closed without DISCONNECT (see 20-08)")
    assert isinstance(packet, Disconnect)
    interval = properties_of(packet).session_expiry_interval
    check(interval is None, f"c: the broker's DISCONNECT carries Session Expiry {interval}")
