"""The whole broker against a model: random subscriptions and publishes, who gets what."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from midge.protocol.packets import Publish
from midge.protocol.topics import is_valid_topic_filter, topic_matches

LEVELS = ["a", "b", "+", "#", "$s"]
filters = (
    st.lists(st.sampled_from(LEVELS), min_size=1, max_size=3)
    .map("/".join)
    .filter(is_valid_topic_filter)
)
topics = st.lists(st.sampled_from(["a", "b", "$s"]), min_size=1, max_size=3).map("/".join)
CLIENTS = ("c0", "c1", "c2")
steps = st.lists(
    st.one_of(
        st.tuples(st.just("sub"), st.sampled_from(CLIENTS), filters, st.integers(0, 2)),
        st.tuples(st.just("unsub"), st.sampled_from(CLIENTS), filters),
        st.tuples(st.just("pub"), topics, st.integers(0, 2)),
    ),
    max_size=25,
)


@settings(
    max_examples=60,
    deadline=None,
    # make_harness is a factory: each example builds its own broker from it.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(program=steps)
def test_every_client_gets_exactly_the_model_deliveries(make_harness, program):
    """[MQTT-3.3.5-1, 3.8.4-3, 3.8.4-6, 3.10.4-2, 4.7.2-1] one copy per matching client,
    at min(published QoS, highest granted QoS among its matching filters).
    """
    harness = make_harness()
    clients = {client_id: harness.connect(client_id) for client_id in CLIENTS}
    publisher = harness.connect("publisher")
    model: dict[str, dict[str, int]] = {client_id: {} for client_id in CLIENTS}
    for number, step in enumerate(program):
        if step[0] == "sub":
            _, client_id, topic_filter, qos = step
            clients[client_id].subscribe((topic_filter, qos))
            model[client_id][topic_filter] = qos
        elif step[0] == "unsub":
            _, client_id, topic_filter = step
            clients[client_id].unsubscribe(topic_filter)
            model[client_id].pop(topic_filter, None)
        else:
            _, topic, qos = step
            for client in clients.values():
                client.received()  # SUBACKs, UNSUBACKs (no retained messages here)
            payload = b"%d" % number
            publisher.published(topic, payload, qos)
            for client_id, client in clients.items():
                granted = [q for f, q in model[client_id].items() if topic_matches(f, topic)]
                packets = client.received()
                assert all(isinstance(packet, Publish) for packet in packets)
                got = [(packet.topic, packet.payload, packet.qos) for packet in packets]
                expected = [(topic, payload, min(qos, max(granted)))] if granted else []
                assert got == expected, (client_id, step)
                client.acknowledge(packets)
