"""The local broker killed with SIGKILL in the middle of a stream, and restarted (issue 15).

One local `midge serve` bridges `stream/#` out, at QoS 2, to two remotes at
once: Debian's mosquitto over MQTT 3.1.1 ("to-mosquitto") and a second
`midge serve` over 5.0 ("to-midge"). A paho client publishes numbered QoS 1
(or QoS 2) messages on the local broker, paced; a subscriber at each remote
takes `site1/stream/#`. The local broker is killed (SIGKILL: what a crash or
the OOM killer does) in the middle of the stream, then started again on the
same port and data dir. What must hold:

- every message it acknowledged before it died reaches both subscribers
  (the bridge's session, in the local store, kept what the remotes had not
  acknowledged; at QoS 1 what was in flight may come twice: counted; at
  QoS 2 nothing comes twice: each side's QoS 2 state survived);
- in order: no message comes, the first time, after a later one;
- after the restart each bridge resumes its remote session, logs so, and
  carries new messages.
"""

from __future__ import annotations

import pytest
from bridge_support import Peers, bridged_to_both, wait_connected
from integration_support import Paho, paho, unique

from streams import WAIT, Inbox, Stream

pytestmark = pytest.mark.timeout(60)

TOPIC = "stream/n"
PACE = 0.002  # seconds between two messages (a few hundred per second: many in flight)
BEFORE_KILL = 300  # messages acknowledged before the kill


@pytest.mark.parametrize("qos", [1, 2])
def test_nothing_the_local_broker_acknowledged_is_lost_when_it_is_killed(
    peers: Peers, qos: int
) -> None:
    local, remotes = bridged_to_both(peers, 2)
    subscribers = {name: Paho(remote.host, remote.port) for name, remote in remotes.items()}
    publisher = Paho(local.host, local.port)
    try:
        for sub in subscribers.values():
            sub.connect_ok()
            sub.subscribe("site1/stream/#", 2)
        inboxes = {name: Inbox(sub, f"site1/{TOPIC}") for name, sub in subscribers.items()}
        publisher.connect_ok()
        with Stream(publisher, TOPIC, qos, pace=PACE) as stream:
            stream.wait_acknowledged(BEFORE_KILL)
            local.kill()
            assert local.log.matching(r"bridge \S+: connection to .* lost") == []
            publisher.drop()
        acknowledged = stream.acknowledged()
        print(f"killed with {stream.sent} sent, {len(acknowledged)} acknowledged")

        local.start()
        for name, remote in remotes.items():
            line = wait_connected(local, name)[0]
            assert f"connected to {remote.address} (" in line
            assert "session resumed" in line, line
        for name, inbox in inboxes.items():
            inbox.wait_for(acknowledged, timeout=3 * WAIT)
            inbox.check(acknowledged, qos, f"{name} across a SIGKILL at QoS {qos}")
            assert inbox.overtaken() == [], f"{name}: came after a later message"

        # The restarted bridges carry new messages.
        after = unique("after")
        with paho(local.host, local.port) as client:
            client.publish(f"stream/{after}", "after", 1)
        for name, sub in subscribers.items():
            got = [m.topic for m in sub.until(f"site1/stream/{after}")]
            assert got[-1] == f"site1/stream/{after}", name
    finally:
        publisher.close()
        for sub in subscribers.values():
            sub.close()
