"""Messages across a bridge (issue 15): both directions, prefixes, wildcards, QoS, retain, loops.

One local `midge serve` has a bridge to each of two real remotes, Debian's
mosquitto 2.0 and a second `midge serve`, over MQTT 3.1.1 and over 5.0:
four bridges ("mosquitto311", "mosquitto5", "midge311", "midge5"), each with

- an *out* rule   `+/data/#`           local `up/NAME/...`   -> remote `site1/NAME/...`
- an *in* rule    `cmd/+/#`            remote `hq/NAME/...`  -> local `down/NAME/...`
- a *both* rule   `loop/NAME/#`        the same topics on both sides,

at QoS 2; and two more ("mosquittoNR", "midgeNR") with `outgoing_retain =
false`. Clients are paho-mqtt and mosquitto_pub / mosquitto_sub. What must
hold: what matches a rule crosses once, with its topic mapped, its payload
and QoS kept, what does not match stays; a retained message stays retained
on the other side (not out with outgoing_retain = false), including one the
remote held before the bridge connected; a message on a `both` topic
arrives once on the other side and never comes back; each bridge's state
topic holds "1", on the local broker only.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest
from bridge_support import Peer, Peers, bridge_table, rule, state_topic, wait_connected
from integration_support import Paho, paho, unique
from test_mosquitto_clients import FORMAT, TOOLS, pub, subscribe

from streams import wait_until

pytestmark = pytest.mark.timeout(60)

REMOTES = ("mosquitto", "midge")
PROTOCOLS = {"3.1.1": "311", "5": "5"}
BRIDGES = pytest.mark.parametrize(
    ("remote", "protocol"),
    [(remote, protocol) for remote in REMOTES for protocol in PROTOCOLS],
    ids=[f"{remote}-{protocol}" for remote in REMOTES for protocol in PROTOCOLS],
)
QOS = pytest.mark.parametrize("qos", [0, 1, 2])
QUIET = 1.0  # seconds to watch for what must not come (again)
needs_mosquitto_clients = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="needs mosquitto_pub, mosquitto_sub (apt-get install mosquitto-clients), stdbuf",
)


def bridge_name(remote: str, protocol: str) -> str:
    return f"{remote}{PROTOCOLS[protocol]}"


def no_retain_name(remote: str) -> str:
    return f"{remote}NR"


@dataclass
class Mesh:
    peers: Peers
    local: Peer
    remotes: dict[str, Peer]

    def remote(self, kind: str) -> tuple[str, int]:
        peer = self.remotes[kind]
        return peer.host, peer.port


@pytest.fixture(scope="module")
def mesh(module_peers: Peers) -> Mesh:
    remotes = {
        "mosquitto": module_peers.mosquitto("mosquitto"),
        "midge": module_peers.midge("remote-midge"),
    }
    tables = []
    for kind, remote in remotes.items():
        for protocol in PROTOCOLS:
            name = bridge_name(kind, protocol)
            # held by the remote before the bridge connects: comes in with its subscription
            with paho(remote.host, remote.port) as client:
                client.publish(f"hq/{name}/cmd/early", f"early {name}", 1, retain=True)
            topics = [
                rule(
                    "+/data/#", "out", 2, local_prefix=f"up/{name}/", remote_prefix=f"site1/{name}/"
                ),
                rule("cmd/+/#", "in", 2, local_prefix=f"down/{name}/", remote_prefix=f"hq/{name}/"),
                rule(f"loop/{name}/#", "both", 2),
            ]
            tables.append(bridge_table(name, remote.address, topics, protocol=protocol))
        name = no_retain_name(kind)
        topics = [rule("#", "out", 1, local_prefix=f"nr/{name}/", remote_prefix=f"nr/{name}/")]
        tables.append(bridge_table(name, remote.address, topics, outgoing_retain=False))
    local = module_peers.midge("local", "".join(tables))
    for kind in REMOTES:
        for name in (
            *(bridge_name(kind, protocol) for protocol in PROTOCOLS),
            no_retain_name(kind),
        ):
            wait_connected(local, name)
    made = Mesh(module_peers, local, remotes)
    # Every remote subscription is in place once its retained message has come in.
    with paho(local.host, local.port) as client:
        client.subscribe("down/+/cmd/early", 1)
        early = {message.topic for message in client.get_many(4)}
        assert early == {f"down/{bridge_name(k, p)}/cmd/early" for k in REMOTES for p in PROTOCOLS}
    return made


def until_marker(client: Paho, marker: str, mine: str) -> list[tuple[str, bytes, int, bool]]:
    """(topic, payload, QoS, retain) of each message up to and including the
    marker; without the retained messages of other tests (no `mine` in their topic)."""
    return [
        (m.topic, m.payload, m.qos, m.retain)
        for m in client.until(marker)
        if mine in m.topic or not m.retain
    ]


def check_crossing(
    publisher: Paho, subscriber: Paho, publishes: list[tuple[str, str | None]], qos: int, mine: str
) -> None:
    """Publish each (topic, topic on the other side or None: stays) in turn; the
    last is the marker. Exactly those that cross arrive, mapped, in order."""
    for number, (topic, _) in enumerate(publishes):
        publisher.publish(topic, f"{number} at QoS {qos}", qos)
    marker = publishes[-1][1]
    assert marker is not None
    got = until_marker(subscriber, marker, mine)
    expected = [
        (mapped, f"{number} at QoS {qos}".encode(), qos, False)
        for number, (_, mapped) in enumerate(publishes)
        if mapped is not None
    ]
    assert got == expected
    assert quiet(subscriber, 0.2) == []


def quiet(client: Paho, seconds: float = QUIET) -> list[tuple[str, bytes]]:
    """What `client` gets in the next `seconds` (nothing, when all is well)."""
    wait_until(lambda: False, seconds)
    return [(m.topic, m.payload) for m in client.drain()]


# ---------------------------------------------------------------- both directions


@QOS
@BRIDGES
def test_out_rule_carries_local_messages_to_the_remote(
    mesh: Mesh, remote: str, protocol: str, qos: int
) -> None:
    name = bridge_name(remote, protocol)
    device = unique("d")
    local, there = f"up/{name}/{device}", f"site1/{name}/{device}"
    publishes = [  # (local topic, remote topic or None: no rule takes it)
        (f"{local}/data/temp", f"{there}/data/temp"),
        (f"{local}/status", None),  # `+/data/#`: not data
        (f"{local}/data/a/b/c", f"{there}/data/a/b/c"),  # `#`: any depth
        (f"up/{name}/x/{device}/data/t", None),  # `+`: one level only
        (f"{local}/data", f"{there}/data"),  # `#` takes the parent level too
        (f"up/{name}x/{device}/data/t", None),  # another prefix
        (f"{local}/data/marker", f"{there}/data/marker"),
    ]
    with paho(*mesh.remote(remote)) as sub, paho(mesh.local.host, mesh.local.port) as pub_:
        sub.subscribe(f"site1/{name}/#", 2)
        check_crossing(pub_, sub, publishes, qos, device)


@QOS
@BRIDGES
def test_in_rule_carries_remote_messages_to_the_local_broker(
    mesh: Mesh, remote: str, protocol: str, qos: int
) -> None:
    name = bridge_name(remote, protocol)
    device = unique("d")
    there, local = f"hq/{name}/cmd/{device}", f"down/{name}/cmd/{device}"
    publishes = [  # (remote topic, local topic or None)
        (f"{there}/reboot", f"{local}/reboot"),
        (f"hq/{name}/cmd", None),  # `cmd/+/#` needs a level after cmd
        (f"{there}/a/b", f"{local}/a/b"),
        (f"hq/{name}/cmdx/{device}", None),
        (there, local),  # `#` takes the parent level too
        (f"site1/{name}/cmd/{device}", None),  # the out side's prefix
        (f"{there}/marker", f"{local}/marker"),
    ]
    with paho(mesh.local.host, mesh.local.port) as sub, paho(*mesh.remote(remote)) as pub_:
        sub.subscribe(f"down/{name}/#", 2)
        check_crossing(pub_, sub, publishes, qos, device)


@pytest.mark.parametrize("remote", REMOTES)
def test_the_log_says_how_each_bridge_connected(mesh: Mesh, remote: str) -> None:
    address = mesh.remotes[remote].address
    for protocol, flag in (("3.1.1", ", as a bridge"), ("5", "")):
        name = bridge_name(remote, protocol)
        version = "MQTT 5.0" if protocol == "5" else "MQTT 3.1.1"
        line = f"bridge {name}: connected to {address} ({version}{flag}, session new)"
        assert line in mesh.local.log.text()
    assert not mesh.local.log.matching(r"bridge \S+: (cannot connect|connection to .* lost)")


# ---------------------------------------------------------------- retained messages


@needs_mosquitto_clients
@BRIDGES
def test_a_retained_message_goes_out_retained(mesh: Mesh, remote: str, protocol: str) -> None:
    name = bridge_name(remote, protocol)
    device = unique("r")
    with paho(mesh.local.host, mesh.local.port) as client:
        client.publish(f"up/{name}/{device}/data/last", "kept", 1, retain=True)
    there = f"site1/{name}/{device}/data/last"
    # A new subscriber at the remote gets it as a retained message ("%r": 1).
    sub = subscribe(mesh.remotes[remote].broker, "-t", there, "-q", "1", "-F", FORMAT, "-C", "1")
    assert sub.lines() == [f"1 1 {there} kept"]


@pytest.mark.parametrize("remote", REMOTES)
def test_with_outgoing_retain_false_nothing_is_retained_at_the_remote(
    mesh: Mesh, remote: str
) -> None:
    name = no_retain_name(remote)
    device = unique("r")
    with paho(*mesh.remote(remote)) as live, paho(mesh.local.host, mesh.local.port) as client:
        live.subscribe(f"nr/{name}/{device}/#", 1)
        client.publish(f"nr/{name}/{device}/bridged", "not kept", 1, retain=True)
        message = live.get()  # it crossed, as a live message
        assert (message.topic, message.payload) == (f"nr/{name}/{device}/bridged", b"not kept")
        live.publish(f"nr/{name}/{device}/direct", "kept", 1, retain=True)  # the control
    with paho(*mesh.remote(remote)) as late:
        late.subscribe(f"nr/{name}/{device}/#", 1)
        retained = [(m.topic, m.payload, m.retain) for m in late.get_many(1)]
        assert retained == [(f"nr/{name}/{device}/direct", b"kept", True)]
        assert quiet(late, 0.5) == []


@BRIDGES
def test_what_the_remote_held_retained_before_the_bridge_connected_is_retained_here(
    mesh: Mesh, remote: str, protocol: str
) -> None:
    name = bridge_name(remote, protocol)
    with paho(mesh.local.host, mesh.local.port) as client:
        client.subscribe(f"down/{name}/cmd/early", 1)
        message = client.get()
        assert (message.payload, message.retain) == (f"early {name}".encode(), True)


@needs_mosquitto_clients
@BRIDGES
def test_a_message_retained_at_the_remote_is_retained_here(
    mesh: Mesh, remote: str, protocol: str
) -> None:
    name = bridge_name(remote, protocol)
    device = unique("r")
    here = f"down/{name}/cmd/{device}/config"
    with paho(mesh.local.host, mesh.local.port) as live:
        live.subscribe(here, 1)
        pub(mesh.remotes[remote].broker, "-t", f"hq/{name}/cmd/{device}/config", "-m", "v2", "-r")
        pub(mesh.remotes[remote].broker, "-t", f"hq/{name}/cmd/{device}/config", "-m", "v3", "-r")
        assert [m.payload for m in live.get_many(2)] == [b"v2", b"v3"]  # both crossed
    with paho(mesh.local.host, mesh.local.port) as late:
        late.subscribe(here, 1)
        message = late.get()
        assert (message.payload, message.retain) == (b"v3", True)
        assert quiet(late, 0.2) == []


# ---------------------------------------------------------------- no loops


@BRIDGES
def test_a_both_topic_crosses_once_each_way_and_never_comes_back(
    mesh: Mesh, remote: str, protocol: str
) -> None:
    name = bridge_name(remote, protocol)
    device = unique("l")
    topic = f"loop/{name}/{device}"
    with (
        paho(mesh.local.host, mesh.local.port) as here,
        paho(*mesh.remote(remote)) as there,
    ):
        here.subscribe(f"{topic}/#", 2)
        there.subscribe(f"{topic}/#", 2)
        for qos in (1, 2):
            here.publish(f"{topic}/from-local", f"local {qos}", qos)
            there.publish(f"{topic}/from-remote", f"remote {qos}", qos)
        expected = sorted(
            (f"{topic}/from-{side}", f"{side} {qos}".encode())
            for side in ("local", "remote")
            for qos in (1, 2)
        )
        for client in (here, there):
            got = [(m.topic, m.payload) for m in client.get_many(4)]
            assert sorted(got) == expected, "each message once on each side"
        wait_until(lambda: False, QUIET)  # a loop would bring them again meanwhile
        assert here.drain() == [] and there.drain() == [], "a message came back"


# ---------------------------------------------------------------- the state topic


def test_each_bridge_state_is_retained_one_on_the_local_broker_only(mesh: Mesh) -> None:
    names = [bridge_name(kind, protocol) for kind in REMOTES for protocol in PROTOCOLS]
    names += [no_retain_name(kind) for kind in REMOTES]
    with paho(mesh.local.host, mesh.local.port) as client:
        client.subscribe("$SYS/broker/connection/+/state", 1)
        got = {(m.topic, m.payload, m.retain) for m in client.get_many(len(names))}
        assert got == {(state_topic(name), b"1", True) for name in names}
        assert quiet(client, 0.2) == []
    with paho(*mesh.remote("midge")) as client:  # a broker without bridges has no such topic
        client.subscribe("$SYS/broker/connection/#", 1)
        assert quiet(client, 0.5) == []
