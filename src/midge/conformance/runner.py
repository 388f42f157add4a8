"""Run scenarios against a target and report one `Result` each."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from midge.conformance.harness import ScenarioFailed, Target
from midge.conformance.registry import Scenario, all_scenarios

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

DEVIATIONS: dict[str, dict[str, str]] = {
    "mosquitto": {
        "01-02": (
            "mosquitto implements MQTT 5.0, so level 5 is not an unsupported level to it: it "
            "parses this 3.1.1-layout CONNECT as a 5.0 CONNECT (properties after keep alive), "
            "finds it malformed and closes without CONNACK ('disconnected due to protocol "
            "error') instead of CONNACK 1 [MQTT-3.1.2-2], which only a 3.1.1 server must send"
        ),
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

INTERMITTENT: dict[str, frozenset[str]] = {
    "mosquitto": frozenset({"03-01", "04-02"}),
}
"""Deviations that depend on timing: the broker sometimes passes them by chance."""


@dataclass(frozen=True, slots=True)
class Result:
    id: str
    title: str
    rule: str
    passed: bool
    detail: str
    seconds: float


def select(only: Iterable[str] | None) -> list[Scenario]:
    """All scenarios, or those whose id equals or starts with "AREA-" of an entry of `only`."""
    scenarios = all_scenarios()
    if only is None:
        return scenarios
    wanted = set(only)
    known = {s.id for s in scenarios}
    areas = {k.split("-")[0] for k in known}
    unknown = [w for w in wanted if w not in known and w not in areas]
    if unknown:
        raise ValueError(f"unknown scenario ids: {', '.join(sorted(unknown))}")
    return [s for s in scenarios if s.id in wanted or s.id.split("-")[0] in wanted]


def run_one(target: Target, item: Scenario) -> Result:
    """Run one scenario on a fresh scoped target, then clean up after it."""
    scoped = target.scoped(item.id.replace("-", ""))
    started = time.monotonic()
    passed, detail = False, ""
    try:
        item.function(scoped)
        passed = True
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
    return Result(item.id, item.title, item.rule, passed, detail, time.monotonic() - started)


def run(
    target: Target,
    only: list[str] | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run the selected scenarios (all when `only` is None) in id order."""
    results = []
    for item in select(only):
        result = run_one(target, item)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results
