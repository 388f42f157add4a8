"""Run scenarios against a target and report one `Result` each."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from midge.conformance.harness import NotApplicable, ScenarioFailed
from midge.conformance.registry import MQTT_3_1_1, PROTOCOL_CHOICES, Scenario, all_scenarios
from midge.conformance.target import Target

_MOSQUITTO_KEEP_ALIVE = (
    "mosquitto 2.0.11 checks keep alive only every 5 s (keepalive__check runs when "
    "last_keepalive_check + 5 < now), so a silent keep-alive 1 s client is dropped after up "
    "to ~6 s (measured 5.6-6.0 s), not within 1.5 s [MQTT-3.1.2-24]; it meets the limit only "
    "when a periodic check happens to fall inside the window"
)

_OPTIONAL_EMPTY_ID = (
    "a server MAY accept a zero-byte client id with clean session 1 and assign one "
    "[MQTT-3.1.3-6]; a broker that does not answers CONNACK 2 (identifier rejected) "
    "[MQTT-3.1.3-9], which the spec allows"
)

_MOSQUITTO_NO_DISCONNECT = (
    "mosquitto 2.0.11 closes the connection without the DISCONNECT 0x82 (Protocol Error) that "
    "section 4.13.1 says a server SHOULD send before closing for an error in a packet other "
    "than CONNECT (for a Malformed Packet it does send DISCONNECT 0x81, see 23-01)"
)

_MOSQUITTO_WRONG_CODE = (
    "mosquitto 2.0.11 sends DISCONNECT 0x81 (Malformed Packet) where the spec names another "
    "reason code"
)

MOSQUITTO_5: dict[str, str] = {
    "20-07": _MOSQUITTO_NO_DISCONNECT + "; here for a second CONNECT [MQTT-3.1.0-2]",
    "20-08": (
        "on a session takeover mosquitto 2.0.11 closes the old connection without sending it "
        "DISCONNECT 0x8E (Session taken over) [MQTT-3.1.4-3]"
    ),
    "23-03": _MOSQUITTO_NO_DISCONNECT + "; here for a duplicate Message Expiry Interval",
    "23-05": (
        "mosquitto 2.0.11 accepts a PUBLISH from a client carrying a Subscription Identifier, "
        "which [MQTT-3.3.4-6] forbids (a Protocol Error), and keeps the connection open"
    ),
    "23-06": (
        "mosquitto 2.0.11 closes the connection without the DISCONNECT 0x81 (Malformed Packet) "
        "that section 4.13.1 says a server SHOULD send, for a User Property that is not "
        "well-formed UTF-8 [MQTT-1.5.4-1] (for an undefined property it does send it, 23-02)"
    ),
    "23-07": _MOSQUITTO_WRONG_CODE
    + ": Subscription Identifier 0 is a Protocol Error, 0x82 (section 3.8.2.1.2)",
    "25-03": _MOSQUITTO_WRONG_CODE
    + ": Topic Alias 0 is 'Topic Alias invalid', 0x94 (section 3.3.2.3.4) [MQTT-3.3.2-8]",
    "26-01": (
        "mosquitto 2.0.11 exceeds a client's Receive Maximum: with Receive Maximum 2 and two "
        "QoS 1 messages in flight, one PUBACK lets two more through (three unacknowledged) "
        "[MQTT-3.3.4-9]; the QoS 2 window (26-02) is kept"
    ),
    "26-03": (
        "a client exceeding mosquitto 2.0.11's Receive Maximum (20) gets PUBREC 0x97 (Quota "
        "exceeded) for the extra QoS 2 message and stays connected, instead of DISCONNECT 0x93 "
        "(Receive Maximum exceeded) that section 3.3.4 prescribes"
    ),
    "27-08": _MOSQUITTO_WRONG_CODE + ": Retain Handling 3 is a Protocol Error, 0x82 (3.8.3.1)",
    "29-03": (
        "mosquitto 2.0.11 grants '$share//filter' (an empty ShareName, [MQTT-4.8.2-1]) and "
        "'$share/g' (no '/' and Topic Filter after the ShareName, [MQTT-4.8.2-2]); it refuses "
        "'$share/g+x/filter'"
    ),
    "29-04": (
        "mosquitto 2.0.11 grants No Local on a shared subscription (SUBACK 1) instead of treating "
        "it as a Protocol Error [MQTT-3.8.3-4]"
    ),
    "29-05": (
        "mosquitto 2.0.11 sends retained messages when a shared subscription is made; section "
        "3.3.1.3 sends them only for a new Non-shared Subscription"
    ),
}
"""Mosquitto 2.0.11's deviations from the MQTT 5.0 scenarios (`--protocol 5`)."""

DEVIATIONS: dict[str, dict[str, str]] = {
    "mosquitto": {
        **MOSQUITTO_5,
        "03-01": _MOSQUITTO_KEEP_ALIVE,
        "04-02": _MOSQUITTO_KEEP_ALIVE + "; the will follows the late close",
        "05-05": (
            "mosquitto treats a SUBSCRIBE with an invalid filter as a malformed packet and "
            "closes the connection ('Invalid subscription string ..., disconnecting') rather "
            "than answering SUBACK 0x80 for the invalid filters and granting the valid ones "
            "[MQTT-3.8.4-5]; 3.1.1 has no explicit rule for invalid filters (4.7.1 defines "
            "them, [MQTT-4.8.0-1] allows closing), and Midge answers 0x80"
        ),
        "06-11": (
            "mosquitto 2.0.11 delivers one copy at the QoS of the first matching subscription "
            "it meets in its topic tree (the QoS 0 'o/+' one here; with 'p/+' QoS 1 and 'p/#' "
            "QoS 2 it sends QoS 1), not at the maximum QoS of all matching subscriptions "
            "[MQTT-3.3.5-1]"
        ),
        "09-08": (
            "mosquitto accepts a QoS 0 PUBLISH with DUP 1 (first byte 0x38) and even delivers "
            "it; [MQTT-3.3.1-2] forbids DUP on QoS 0 and [MQTT-4.8.0-1] requires closing the "
            "connection on a protocol violation"
        ),
        "09-10": (
            "mosquitto ignores the flag bits of PINGREQ (first byte 0xC1) and answers PINGRESP; "
            "[MQTT-2.2.2-2] requires closing the connection on invalid fixed-header flags"
        ),
    },
    "strict-client-id": {
        "01-12": _OPTIONAL_EMPTY_ID,
        "01-13": _OPTIONAL_EMPTY_ID,
        "01-16": (
            "a server MAY accept client ids longer than 23 characters or outside 0-9a-zA-Z "
            "[MQTT-3.1.3-5]; a broker that accepts only those the spec guarantees answers "
            "CONNACK 2 (identifier rejected) instead, which the spec allows"
        ),
    },
}
"""Broker (or broker profile) name -> scenario id -> why it knowingly fails the scenario.

"strict-client-id" is not a broker: it lists the scenarios that check optional
client-id behaviour, for brokers configured to accept only the ids the spec guarantees.
"""

ONE_NODE: dict[str, str] = {}
"""Scenario id -> why its clients all go to one node when the target is a cluster.

None so far: every scenario, the takeover and session ones included, passes
with its clients spread over a 3-node Midge cluster (tests/cluster/test_cluster_check.py),
since one client id has one connection cluster-wide.
"""

INTERMITTENT: dict[str, frozenset[str]] = {
    "mosquitto": frozenset({"03-01", "04-02"}),
}
"""Deviations that depend on timing: the broker sometimes passes them by chance."""


@dataclass(frozen=True, slots=True)
class Result:
    """One scenario's outcome; `applicable` False: the broker's configuration ruled it out.

    A scenario that is not applicable counts as passed (nothing failed) and
    says why in `detail`.
    """

    id: str
    title: str
    rule: str
    passed: bool
    detail: str
    seconds: float
    applicable: bool = True


def select(only: Iterable[str] | None, protocol: str = MQTT_3_1_1) -> list[Scenario]:
    """The scenarios of `protocol`; with `only`, those whose id or area is in `only`."""
    scenarios = all_scenarios(protocol)
    if only is None:
        return scenarios
    wanted = set(only)
    unknown = _unknown(wanted, scenarios)
    if unknown:
        raise ValueError(f"unknown scenario ids: {', '.join(unknown)}{_hint(unknown, protocol)}")
    return [s for s in scenarios if s.id in wanted or s.id.split("-")[0] in wanted]


def _unknown(wanted: set[str], scenarios: list[Scenario]) -> list[str]:
    known = {s.id for s in scenarios}
    areas = {k.split("-")[0] for k in known}
    return sorted(w for w in wanted if w not in known and w not in areas)


def _hint(unknown: list[str], protocol: str) -> str:
    """Which --protocol the unknown ids belong to, when another one has them."""
    for other in PROTOCOL_CHOICES:
        if other != protocol and len(_unknown(set(unknown), all_scenarios(other))) < len(unknown):
            return f" for MQTT {protocol} (they are MQTT {other} scenarios: --protocol {other})"
    return ""


def run_one(target: Target, item: Scenario) -> Result:
    """Run one scenario on a fresh scoped target (speaking its protocol), then clean up.

    On a cluster its clients go to the nodes in turn, unless it is in `ONE_NODE`.
    """
    scoped = target.scoped(
        item.id.replace("-", ""), version=item.version, one_node=item.id in ONE_NODE
    )
    started = time.monotonic()
    passed, detail, applicable = False, "", True
    try:
        item.function(scoped)
        passed = True
    except NotApplicable as exc:
        passed, detail, applicable = True, f"not applicable: {exc}", False
    except ScenarioFailed as exc:
        detail = str(exc)
    except OSError as exc:
        detail = f"network error: {exc!r}"
    except Exception as exc:  # a bug in the scenario: report it, keep running the others
        detail = f"scenario error: {exc!r}"
    finally:
        try:
            scoped.cleanup()
        except (ScenarioFailed, OSError) as exc:
            detail = f"{detail}; cleanup failed: {exc}" if detail else f"cleanup failed: {exc}"
    seconds = time.monotonic() - started
    return Result(item.id, item.title, item.rule, passed, detail, seconds, applicable)


def run(
    target: Target,
    only: list[str] | None = None,
    on_result: Callable[[Result], None] | None = None,
    protocol: str = MQTT_3_1_1,
) -> list[Result]:
    """Run the selected scenarios of `protocol` (all when `only` is None) in id order."""
    results = []
    for item in select(only, protocol):
        result = run_one(target, item)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results
