"""Area 03: keep alive and PINGREQ/PINGRESP (sections 3.1.2.10, 3.12)."""

from __future__ import annotations

import time

from midge.conformance.registry import scenario
from midge.conformance.target import Target
from midge.protocol.packets import PingReq, PingResp

KEEP_ALIVE = 1
SLACK = 1.0
"""Seconds allowed beyond one and a half keep-alive periods before the broker must close."""


@scenario(
    "03-01",
    "With keep alive 1 s and silence the broker closes within 1.5 s (plus slack), sending nothing",
    rule="MQTT-3.1.2-24",
)
def keep_alive_expires(target: Target) -> None:
    client = target.client("c", keep_alive=KEEP_ALIVE)
    started = time.monotonic()
    client.expect_nothing(0.8 * KEEP_ALIVE)  # not before the client's own deadline
    limit = 1.5 * KEEP_ALIVE + SLACK
    client.expect_closed(timeout=limit - (time.monotonic() - started))


@scenario("03-02", "PINGREQ is answered with PINGRESP", rule="MQTT-3.12.4-1")
def ping(target: Target) -> None:
    client = target.client("c")
    for _ in range(3):
        client.send(PingReq())
        client.expect(PingResp)


@scenario(
    "03-03",
    "PINGREQ every half keep-alive period keeps a keep-alive 1 s connection open for 2.5 s",
    rule="MQTT-3.1.2-24",
)
def pings_keep_connection(target: Target) -> None:
    client = target.client("c", keep_alive=KEEP_ALIVE)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        client.expect_nothing(0.5 * KEEP_ALIVE)
        client.send(PingReq())
        client.expect(PingResp)


@scenario(
    "03-04",
    "Keep alive 0 disables the timeout: a silent connection stays open for 3 s",
    rule="MQTT-3.1.2-24",
)
def keep_alive_zero(target: Target) -> None:
    client = target.client("c", keep_alive=0)
    client.expect_nothing(3.0)
    client.still_connected()
