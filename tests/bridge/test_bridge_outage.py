"""The remote goes away for 10 s in the middle of a QoS 1 stream, and comes back (issue 15).

One local `midge serve` bridges `stream/#` out, at QoS 1, to two remotes at
once: Debian's mosquitto over MQTT 3.1.1 ("to-mosquitto", with
`persistence true`, so its sessions survive a restart) and a second `midge
serve` over 5.0 ("to-midge", whose sqlite store keeps them). A paho client
publishes numbered QoS 1 messages on the local broker, paced, all along; at
each remote a persistent subscriber (clean session 0) takes `site1/stream/#`.
Both remotes are stopped (SIGTERM) for 10 s and started again on the same
ports and data. What must hold:

- every message the local broker acknowledged reaches both subscribers, in
  order (QoS 1: a message may come twice, counted);
- the local broker goes on acknowledging while the remotes are away (what
  is for them waits in the bridge's session);
- each bridge logs the loss, logs "cannot connect" once however many
  attempts fail, and tries again with backoff: a few times over the 10 s,
  each wait between restart_delay and restart_delay_max, not a busy loop;
- back, it logs that it connected and resumed its session;
- its state topic goes "1", "0", "1".
"""

from __future__ import annotations

import time

import pytest
from bridge_support import (
    FAST_RETRY,
    Peer,
    Peers,
    States,
    bridged_to_both,
    delays,
    retry_lines,
)
from integration_support import Paho, unique

from streams import WAIT, Inbox, Stream, connect_again

pytestmark = pytest.mark.timeout(90)

OUTAGE = 10.0  # seconds the remotes are away
PACE = 0.01  # seconds between two messages of the stream (about 100 msg/s)
TOPIC = "stream/n"


def persistent_subscriber(remote: Peer) -> Paho:
    client = Paho(remote.host, remote.port, client_id=unique("sub"), clean_session=False)
    client.connect_ok()
    client.subscribe("site1/stream/#", 1)
    return client


def check_retries(local: Peer, name: str, address: str, retried: list[str]) -> None:
    """One warning for the whole outage; a few attempts, with backoff."""
    refused = local.log.matching(rf"bridge {name}: cannot connect to {address}: ")
    assert len(refused) == 1, refused
    waits = delays(retried)
    low, high = FAST_RETRY["restart_delay"], FAST_RETRY["restart_delay_max"]
    assert 3 <= len(waits) <= OUTAGE / low / 2, (
        f"bridge {name}: {len(waits)} attempts in {OUTAGE:g} s: {waits}"
    )
    assert all(low <= wait <= high for wait in waits), waits
    assert max(waits) > low, f"no backoff: {waits}"


def test_what_the_local_broker_acknowledged_reaches_the_remote_after_an_outage(
    peers: Peers,
) -> None:
    local, remotes = bridged_to_both(peers, 1, persistent=True)
    subscribers = {name: persistent_subscriber(remote) for name, remote in remotes.items()}
    inboxes = {name: Inbox(sub, f"site1/{TOPIC}") for name, sub in subscribers.items()}
    states = States(local)
    publisher = Paho(local.host, local.port)
    publisher.connect_ok()
    try:
        with Stream(publisher, TOPIC, 1, pace=PACE) as stream:
            stream.wait_acknowledged(50)
            for name, inbox in inboxes.items():
                inbox.wait_count(20)
                states.wait(name, "1")

            # ---- the remotes go away; the local broker goes on taking messages
            for remote in remotes.values():
                remote.stop()
            stopped = time.monotonic()
            acknowledged_then = len(stream.acknowledged())
            for name, remote in remotes.items():
                local.log.wait_for(rf"bridge {name}: connection to {remote.address} lost: ")
                states.wait(name, "0")
            before = {name: len(retry_lines(local, name)) for name in remotes}
            time.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))
            retried = {name: retry_lines(local, name)[before[name] :] for name in remotes}
            taken = len(stream.acknowledged()) - acknowledged_then
            assert taken > 0.5 * OUTAGE / PACE, (
                f"the local broker acknowledged {taken} messages in the {OUTAGE:g} s "
                f"the remotes were away ({stream.sent} sent in all)"
            )

            # ---- back on the same ports, with their sessions
            for name, remote in remotes.items():
                remote.start()
                connack = connect_again(subscribers[name], remote.host, remote.port)
                assert not connack.reason.is_failure, f"{remote.name}: {connack.reason}"
                assert connack.session_present, f"{remote.name} lost the subscriber's session"
            for name, remote in remotes.items():
                resumed = local.log.wait_for(
                    rf"bridge {name}: connected to {remote.address} \(.*session resumed\)"
                )
                assert len(resumed) == 1, resumed
                states.wait(name, "1")
            time.sleep(1.0)  # the stream flows through the new links a while
        stream.wait_all_acknowledged()
        acknowledged = stream.acknowledged()
        for name, inbox in inboxes.items():
            inbox.wait_for(acknowledged, timeout=3 * WAIT)
            inbox.check(acknowledged, 1, f"{name} after an outage of {OUTAGE:g} s")
            assert inbox.overtaken() == [], f"{name}: came after a later message"
            assert inbox.others == []
    finally:
        publisher.close()
        states.close()
        for sub in subscribers.values():
            sub.close()
    for name, remote in remotes.items():
        check_retries(local, name, remote.address, retried[name])
        assert states.seen[name] == ["1", "0", "1"], states.seen[name]
