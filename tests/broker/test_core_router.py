"""SubscriptionTrie and RetainedStore as units, and against topic_matches as an oracle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midge.broker.router import RetainedStore, SubscriptionTrie
from midge.message import Message
from midge.protocol.topics import is_valid_topic_filter, is_valid_topic_name, topic_matches

# ------------------------------------------------------------ SubscriptionTrie


@pytest.mark.parametrize(
    ("topic_filter", "matching", "not_matching"),
    [
        ("a/b", ["a/b"], ["a", "a/b/c", "a/c", "b", "a/b/"]),
        ("a/+", ["a/b", "a/", "a/$b"], ["a", "a/b/c", "b/a"]),  # [MQTT-4.7.1-3]
        ("+/+", ["a/b", "/", "/b", "a/"], ["a", "a/b/c", "$s/a"]),
        ("a/#", ["a", "a/b", "a/b/c", "a/"], ["b", "ab", "b/a"]),  # [MQTT-4.7.1-2]
        ("#", ["a", "a/b", "/", "/a"], ["$SYS/x", "$s", "$"]),  # [MQTT-4.7.2-1]
        ("+", ["a", ""], ["a/b", "/", "$s"]),
        ("+/#", ["a", "a/b", "/"], ["$s/a", "$s"]),
        ("$SYS/#", ["$SYS", "$SYS/x", "$SYS/x/y"], ["SYS/x", "a/$SYS"]),
        ("$SYS/+", ["$SYS/x"], ["$SYS", "$SYS/x/y"]),
        ("/a", ["/a"], ["a", "a/"]),
        ("a/+/c/#", ["a/b/c", "a/x/c/d/e"], ["a/b", "a/b/d"]),
    ],
)
def test_trie_match_rules(topic_filter, matching, not_matching):
    """[MQTT-4.7.1-1..3, 4.7.2-1] wildcard and $-topic rules of the trie."""
    trie = SubscriptionTrie()
    trie.add(topic_filter, "c1", 1)
    for topic in matching:
        assert trie.match(topic) == {"c1": 1}, topic
    for topic in not_matching:
        assert trie.match(topic) == {}, topic


def test_trie_match_gives_the_highest_qos_per_client():
    """[MQTT-3.3.5-1] overlapping filters: one entry per client with its maximum QoS."""
    trie = SubscriptionTrie()
    trie.add("a/+", "c1", 0)
    trie.add("a/#", "c1", 2)
    trie.add("#", "c1", 1)
    trie.add("a/b", "c2", 1)
    trie.add("+/b", "c2", 0)
    trie.add("x", "c3", 2)
    assert trie.match("a/b") == {"c1": 2, "c2": 1}
    assert trie.count == 6


def test_trie_add_same_filter_replaces_qos():
    """[MQTT-3.8.4-3] the same (filter, client) is one subscription."""
    trie = SubscriptionTrie()
    trie.add("a/b", "c1", 2)
    trie.add("a/b", "c1", 0)
    assert trie.count == 1
    assert trie.match("a/b") == {"c1": 0}


def test_trie_remove_prunes_everything():
    """Removing every subscription leaves count 0 and no nodes at all."""
    trie = SubscriptionTrie()
    filters = ["a/b/c", "a/b", "a/+/c", "#", "a/#", "+", "/x", "$SYS/#"]
    for topic_filter in filters:
        trie.add(topic_filter, "c1", 1)
        trie.add(topic_filter, "c2", 0)
    assert trie.count == 16
    for topic_filter in filters:
        assert trie.remove(topic_filter, "c1") is True
        assert trie.remove(topic_filter, "c1") is False
    assert trie.count == 8
    assert trie.match("a/b/c") == {"c2": 0}
    for topic_filter in reversed(filters):
        assert trie.remove(topic_filter, "c2") is True
    assert trie.count == 0
    assert trie._root.children == {}
    assert trie._root.subscribers == {}
    assert trie.match("a/b/c") == {}


def test_trie_remove_keeps_shared_prefixes():
    """Pruning stops at a node that still has a subscriber or children (the
    filters have a wildcard: ones without live in a table, not in the trie)."""
    trie = SubscriptionTrie()
    trie.add("+/b/c", "c1", 1)
    trie.add("+/b", "c2", 1)
    assert trie.remove("+/b/c", "c1") is True
    node_b = trie._root.children["+"].children["b"]
    assert node_b.children == {}
    assert node_b.subscribers == {"c2": 1}
    trie.add("+/b/c/d", "c1", 1)
    assert trie.remove("+/b", "c2") is True
    node_b = trie._root.children["+"].children["b"]
    assert node_b.subscribers == {}
    assert list(node_b.children) == ["c"]
    assert trie.remove("+/b/c/d", "c1") is True
    assert trie._root.children == {}


def test_trie_keeps_filters_without_wildcards_in_a_table():
    """Literal filters match their one topic beside wildcard ones, and leave no nodes."""
    trie = SubscriptionTrie()
    trie.add("a/b", "c1", 1)
    trie.add("a/b", "c2", 2)
    trie.add("a/+", "c1", 2)
    trie.add("$SYS/x", "c3", 0)
    assert list(trie._root.children) == ["a"]
    assert trie.match("a/b") == {"c1": 2, "c2": 2}
    assert trie.match("$SYS/x") == {"c3": 0}
    assert trie.remove("a/b", "c2") is True
    assert trie.remove("a/b", "c2") is False
    assert trie.match("a/b") == {"c1": 2}
    assert trie.remove("a/+", "c1") is True
    assert trie.match("a/b") == {"c1": 1}
    assert trie.count == 2


def test_trie_remove_absent_subscription_changes_nothing():
    trie = SubscriptionTrie()
    trie.add("a/b", "c1", 1)
    assert trie.remove("a/b", "c2") is False
    assert trie.remove("a", "c1") is False
    assert trie.remove("a/b/c", "c1") is False
    assert trie.remove("x/y", "c1") is False
    assert trie.count == 1
    assert trie.match("a/b") == {"c1": 1}


# ------------------------------------------------------------ RetainedStore


def retained(topic: str, payload: bytes = b"x", qos: int = 0) -> Message:
    return Message(topic, payload, qos, True)


def test_retained_store_set_replace_delete():
    """[MQTT-3.3.1-5, 3.3.1-7, 3.3.1-10, 3.3.1-11] one message per topic; empty deletes."""
    store = RetainedStore()
    store.set(retained("a/b", b"1", 1))
    assert store.get("a/b") == retained("a/b", b"1", 1)
    assert store.get("a") is None
    store.set(retained("a/b", b"2", 0))
    assert store.count == 1
    assert store.get("a/b") == retained("a/b", b"2", 0)
    store.set(retained("a/b", b""))
    assert store.get("a/b") is None
    assert store.count == 0
    assert store._root.children == {}
    store.set(retained("never", b""))
    assert store.count == 0
    assert store._root.children == {}


def test_retained_store_delete_keeps_other_topics():
    store = RetainedStore()
    for topic in ("a", "a/b", "a/b/c"):
        store.set(retained(topic))
    store.delete("a/b")
    assert store.count == 2
    assert sorted(message.topic for message in store) == ["a", "a/b/c"]
    store.delete("a/b")  # not there any more
    store.delete("a/b/c/d")
    assert store.count == 2
    store.delete("a/b/c")
    assert store._root.children["a"].children == {}
    store.delete("a")
    assert store._root.children == {}


@pytest.mark.parametrize(
    ("topic_filter", "expected"),
    [
        ("a/#", ["a", "a/b", "a/b/c"]),
        ("#", ["/", "a", "a/b", "a/b/c", "b"]),
        ("+", ["a", "b"]),
        ("+/+", ["/", "a/b"]),
        ("a/+", ["a/b"]),
        ("$x/#", ["$x", "$x/y"]),
        ("$x/+", ["$x/y"]),
        ("+/y", []),
        ("a/b/c/#", ["a/b/c"]),
        ("a/b/c", ["a/b/c"]),
        ("c", []),
    ],
)
def test_retained_store_match(topic_filter, expected):
    """[MQTT-3.3.1-6] with [MQTT-4.7.1-2] ('a/#' matches 'a') and [MQTT-4.7.2-1] ($)."""
    store = RetainedStore()
    for topic in ("a", "a/b", "a/b/c", "b", "$x", "$x/y", "/"):
        store.set(retained(topic))
    assert sorted(message.topic for message in store.match(topic_filter)) == expected


# ------------------------------------------------------------ property: the oracle

FILTER_LEVELS = st.sampled_from(["a", "b", "+", "#", "$s", ""])
TOPIC_LEVELS = st.sampled_from(["a", "b", "$s", ""])
filters = (
    st.lists(FILTER_LEVELS, min_size=1, max_size=4).map("/".join).filter(is_valid_topic_filter)
)
topics = st.lists(TOPIC_LEVELS, min_size=1, max_size=4).map("/".join).filter(is_valid_topic_name)


@settings(max_examples=200, deadline=None)
@given(st.lists(filters, max_size=10, unique=True), topics)
def test_trie_match_agrees_with_topic_matches(filter_list, topic):
    """The trie finds exactly the filters topic_matches accepts [MQTT-4.7]."""
    trie = SubscriptionTrie()
    for number, topic_filter in enumerate(filter_list):
        trie.add(topic_filter, topic_filter, number % 3)
    expected = {
        topic_filter: number % 3
        for number, topic_filter in enumerate(filter_list)
        if topic_matches(topic_filter, topic)
    }
    assert trie.match(topic) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(filters, min_size=1, max_size=10, unique=True), st.data())
def test_trie_after_removals_agrees_and_prunes(filter_list, data):
    """Removing some filters leaves exactly the rest; removing all leaves an empty trie."""
    trie = SubscriptionTrie()
    for topic_filter in filter_list:
        trie.add(topic_filter, "c", 1)
        trie.add(topic_filter, topic_filter, 0)
    removed = data.draw(st.sets(st.sampled_from(filter_list)))
    for topic_filter in removed:
        assert trie.remove(topic_filter, topic_filter) is True
        assert trie.remove(topic_filter, "c") is True
    kept = [topic_filter for topic_filter in filter_list if topic_filter not in removed]
    assert trie.count == 2 * len(kept)
    topic = data.draw(topics)
    matching = {f for f in kept if topic_matches(f, topic)}
    assert set(trie.match(topic)) == matching | ({"c"} if matching else set())
    for topic_filter in kept:
        trie.remove(topic_filter, "c")
        trie.remove(topic_filter, topic_filter)
    assert trie.count == 0
    assert trie._root.children == {}


@settings(max_examples=200, deadline=None)
@given(st.sets(topics, max_size=10), filters)
def test_retained_match_agrees_with_topic_matches(topic_set, topic_filter):
    """RetainedStore.match yields each matching retained topic exactly once."""
    store = RetainedStore()
    for topic in topic_set:
        store.set(retained(topic))
    found = [message.topic for message in store.match(topic_filter)]
    assert len(found) == len(set(found))
    assert set(found) == {topic for topic in topic_set if topic_matches(topic_filter, topic)}


retained_ops = st.lists(
    st.tuples(topics, st.sampled_from([b"", b"x", b"y"])), min_size=1, max_size=15
)


@settings(max_examples=150, deadline=None)
@given(retained_ops, filters)
def test_retained_store_behaves_like_a_dict(operations, topic_filter):
    """[MQTT-3.3.1-7, 3.3.1-10/11] set / replace / delete against a dict model; pruning."""
    store = RetainedStore()
    model: dict[str, bytes] = {}
    for topic, payload in operations:
        store.set(retained(topic, payload))
        if payload:
            model[topic] = payload
        else:
            model.pop(topic, None)
    assert store.count == len(model)
    assert {message.topic: message.payload for message in store} == model
    assert {message.topic for message in store.match(topic_filter)} == {
        topic for topic in model if topic_matches(topic_filter, topic)
    }
    for topic in list(model):
        store.set(retained(topic, b""))
    assert store.count == 0
    assert store._root.children == {}
