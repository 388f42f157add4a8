"""Who gets a message: the subscription trie and the retained-message store.

Both are tries keyed by topic level, so a PUBLISH costs a walk of its own
topic's levels (plus wildcard branches), not a scan of every subscription,
and a new subscription finds its retained messages without a scan of every
retained topic when the filter has literal levels.
"""

from __future__ import annotations

from collections.abc import Iterator

from midge.message import Message
from midge.protocol.topics import MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL


class _SubscriptionNode:
    __slots__ = ("children", "subscribers")

    def __init__(self) -> None:
        # Most nodes are leaves or pass-through levels: they share these empty
        # dicts until `add` gives them their own (a SUBSCRIBE of a new filter
        # then allocates a third of what it did). Only `add` may mutate them.
        self.children: dict[str, _SubscriptionNode] = _NO_CHILDREN
        # Client id -> granted QoS of the filter that ends at this node.
        self.subscribers: dict[str, int] = _NO_SUBSCRIBERS


_NO_CHILDREN: dict[str, _SubscriptionNode] = {}
_NO_SUBSCRIBERS: dict[str, int] = {}


MATCH_CACHE_SIZE = 65536  # topics whose receivers are remembered between changes


class SubscriptionTrie:
    """Topic filters of every session, indexed by level.

    `match` results are cached per topic until the next subscribe or
    unsubscribe: most traffic repeats a few topics, and subscriptions change
    far less often than messages arrive. Callers must not change the result.
    """

    def __init__(self) -> None:
        self._root = _SubscriptionNode()
        self.count = 0
        self._cache: dict[str, dict[str, int]] = {}

    def add(self, topic_filter: str, client_id: str, qos: int) -> None:
        self._cache.clear()
        node = self._root
        for level in topic_filter.split(SEPARATOR):
            child = node.children.get(level)
            if child is None:
                if node.children is _NO_CHILDREN:
                    node.children = {}
                child = node.children[level] = _SubscriptionNode()
            node = child
        if node.subscribers is _NO_SUBSCRIBERS:
            node.subscribers = {}
        if client_id not in node.subscribers:
            self.count += 1
        node.subscribers[client_id] = qos

    def remove(self, topic_filter: str, client_id: str) -> bool:
        """Remove one subscription; prune branches left empty. False if it was absent."""
        self._cache.clear()
        path = [self._root]
        for level in topic_filter.split(SEPARATOR):
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        if path[-1].subscribers.pop(client_id, None) is None:
            return False
        self.count -= 1
        levels = topic_filter.split(SEPARATOR)
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.subscribers or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    def match(self, topic: str) -> dict[str, int]:
        """Client id -> highest granted QoS among its filters matching `topic`."""
        cached = self._cache.get(topic)
        if cached is None:
            if len(self._cache) >= MATCH_CACHE_SIZE:
                self._cache.clear()
            cached = self._cache[topic] = self._match(topic)
        return cached

    def _match(self, topic: str) -> dict[str, int]:
        result: dict[str, int] = {}
        levels = topic.split(SEPARATOR)
        # Wildcards never match a first level starting with '$' [MQTT-4.7.2-1].
        wildcards_allowed = not topic.startswith("$")
        nodes = [self._root]
        for depth, level in enumerate(levels):
            next_nodes = []
            for node in nodes:
                children = node.children
                if depth or wildcards_allowed:
                    hash_node = children.get(MULTI_LEVEL)
                    if hash_node is not None:
                        _merge(result, hash_node.subscribers)
                    plus_node = children.get(SINGLE_LEVEL)
                    if plus_node is not None:
                        next_nodes.append(plus_node)
                exact = children.get(level)
                if exact is not None:
                    next_nodes.append(exact)
            if not next_nodes:
                return result
            nodes = next_nodes
        for node in nodes:
            _merge(result, node.subscribers)
            # "sport/#" also matches "sport" itself [MQTT-4.7.1-2].
            hash_node = node.children.get(MULTI_LEVEL)
            if hash_node is not None:
                _merge(result, hash_node.subscribers)
        return result


def _merge(result: dict[str, int], subscribers: dict[str, int]) -> None:
    for client_id, qos in subscribers.items():
        if result.get(client_id, -1) < qos:
            result[client_id] = qos


class _RetainedNode:
    __slots__ = ("children", "message")

    def __init__(self) -> None:
        # Leaves (most nodes) share one empty dict until `set` gives them their own.
        self.children: dict[str, _RetainedNode] = _NO_RETAINED_CHILDREN
        self.message: Message | None = None


_NO_RETAINED_CHILDREN: dict[str, _RetainedNode] = {}


class RetainedStore:
    """The last retained message of each topic."""

    def __init__(self) -> None:
        self._root = _RetainedNode()
        self.count = 0

    def set(self, message: Message) -> None:
        """Store `message` for its topic; an empty payload deletes [MQTT-3.3.1-10]."""
        if not message.payload:
            self.delete(message.topic)
            return
        node = self._root
        for level in message.topic.split(SEPARATOR):
            child = node.children.get(level)
            if child is None:
                if node.children is _NO_RETAINED_CHILDREN:
                    node.children = {}
                child = node.children[level] = _RetainedNode()
            node = child
        if node.message is None:
            self.count += 1
        node.message = message

    def get(self, topic: str) -> Message | None:
        node = self._root
        for level in topic.split(SEPARATOR):
            child = node.children.get(level)
            if child is None:
                return None
            node = child
        return node.message

    def delete(self, topic: str) -> None:
        levels = topic.split(SEPARATOR)
        path = [self._root]
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return
            path.append(child)
        if path[-1].message is None:
            return
        path[-1].message = None
        self.count -= 1
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.message is not None or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]

    def match(self, topic_filter: str) -> Iterator[Message]:
        """Every retained message whose topic matches `topic_filter`."""
        yield from _match_retained(self._root, topic_filter.split(SEPARATOR), 0)

    def __iter__(self) -> Iterator[Message]:
        yield from _descendants(self._root)


def _match_retained(node: _RetainedNode, levels: list[str], depth: int) -> Iterator[Message]:
    if depth == len(levels):
        if node.message is not None:
            yield node.message
        return
    level = levels[depth]
    if level == MULTI_LEVEL:
        # "a/#" matches "a" itself as well as everything below it.
        if node.message is not None and depth > 0:
            yield node.message
        for name, child in node.children.items():
            if depth == 0 and name.startswith("$"):
                continue
            yield from _descendants(child)
    elif level == SINGLE_LEVEL:
        for name, child in node.children.items():
            if depth == 0 and name.startswith("$"):
                continue
            yield from _match_retained(child, levels, depth + 1)
    else:
        exact = node.children.get(level)
        if exact is not None:
            yield from _match_retained(exact, levels, depth + 1)


def _descendants(node: _RetainedNode) -> Iterator[Message]:
    stack = [node]
    while stack:
        current = stack.pop()
        if current.message is not None:
            yield current.message
        stack.extend(current.children.values())
