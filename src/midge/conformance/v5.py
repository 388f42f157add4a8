"""What MQTT 5.0 scenarios share: the decorator, expectations on reason codes, CONNACK values.

A 5.0 broker reports most errors itself: a CONNACK with a reason code of
0x80 or above for a bad CONNECT (it MAY, then MUST close), a DISCONNECT with
the reason code before closing for any other packet (it SHOULD, section
4.13.1). The scenarios hold a broker to the reason code the spec names.
"""

from __future__ import annotations

from collections.abc import Callable

from midge.conformance.harness import NotApplicable, RawClient, ScenarioFailed, check, describe
from midge.conformance.registry import MQTT_5, ScenarioFunction, scenario
from midge.conformance.target import Target
from midge.protocol.packets import ConnAck, Disconnect, Publish, Subscription
from midge.protocol.properties import Properties

NO_PROPERTIES = Properties()

DEFAULT_RECEIVE_MAXIMUM = 65535
"""Receive Maximum when CONNACK carries none (3.2.2.3.3)."""

PACKET_LIMIT_CHECKED = 1 << 20
"""The largest advertised Maximum Packet Size a scenario exceeds on purpose (1 MiB)."""


def scenario5(
    scenario_id: str, title: str, rule: str
) -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Register an MQTT 5.0 scenario (run with `--protocol 5`)."""
    return scenario(scenario_id, title, rule, protocol=MQTT_5)


def hex_codes(codes: tuple[int, ...]) -> str:
    return " or ".join(f"0x{code:02X}" for code in codes)


def properties_of(packet: ConnAck | Publish | Disconnect | None) -> Properties:
    """A packet's properties, empty ones when it carries none."""
    if packet is None or packet.properties is None:
        return NO_PROPERTIES
    return packet.properties


def server_properties(client: RawClient) -> Properties:
    """The properties of the CONNACK the client received."""
    return properties_of(client.connack)


def expect_disconnect(client: RawClient, *codes: int, timeout: float | None = None) -> None:
    """The broker sends DISCONNECT with one of `codes`, then closes the connection."""
    packet = client.receive(timeout, f"DISCONNECT {hex_codes(codes)}")
    if not isinstance(packet, Disconnect):
        raise ScenarioFailed(
            f"{client.name}: expected DISCONNECT {hex_codes(codes)}, got {describe(packet)}"
        )
    check(
        packet.reason_code in codes,
        f"{client.name}: DISCONNECT reason code 0x{packet.reason_code:02X}, "
        f"expected {hex_codes(codes)}",
    )
    client.expect_closed()


def expect_refused(client: RawClient, *codes: int, close_conforms: bool = False) -> None:
    """A bad CONNECT: a CONNACK with one of `codes` (it MAY), then the close (it MUST).

    `close_conforms`: closing without CONNACK passes too.
    """
    packet = client.receive_or_close(waiting_for=f"CONNACK {hex_codes(codes)} or the close")
    if packet is None:
        check(close_conforms, f"{client.name}: closed without CONNACK {hex_codes(codes)}")
        return
    if not isinstance(packet, ConnAck):
        wrong = describe(packet)
        raise ScenarioFailed(f"{client.name}: expected CONNACK or the close, got {wrong}")
    check(
        packet.return_code in codes,
        f"{client.name}: CONNACK reason code 0x{packet.return_code:02X}, "
        f"expected {hex_codes(codes)}",
    )
    client.expect_closed()


def send_connect_bytes(client: RawClient, data: bytes) -> None:
    """Send a hand-built level 5 CONNECT; the client then decodes the answer as 5.0."""
    client.decoder.version = 5
    client.send(data, allow_closed=True)


def subscriber(
    target: Target,
    name: str,
    *subscriptions: Subscription,
    properties: Properties | None = None,
    connect: Properties | None = None,
    clean_start: bool = True,
) -> RawClient:
    """A connected client holding `subscriptions`, each granted its QoS."""
    client = target.client(name, clean_session=clean_start, properties=connect)
    suback = client.subscribe_with(*subscriptions, properties=properties)
    wanted = tuple(s.qos for s in subscriptions)
    check(suback.return_codes == wanted, f"{name}: SUBACK {suback.return_codes}, expected {wanted}")
    return client


def require(condition: bool, why: str) -> None:
    """Mark the scenario not applicable unless the broker's configuration allows it."""
    if not condition:
        raise NotApplicable(why)


def expect_properties(client: RawClient, publish: Publish, **wanted: object) -> None:
    """The PUBLISH carries these property values (None / (): absent)."""
    properties = properties_of(publish)
    wrong = [
        f"{name}={getattr(properties, name)!r} (expected {value!r})"
        for name, value in wanted.items()
        if getattr(properties, name) != value
    ]
    check(not wrong, f"{client.name}: PUBLISH properties {', '.join(wrong)}: {describe(publish)}")
