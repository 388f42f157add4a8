"""Who gets a message: the subscription trie and the retained-message store.

Both are tries keyed by topic level, so a PUBLISH costs a walk of its own
topic's levels (plus wildcard branches), not a scan of every subscription,
and a new subscription finds its retained messages without a scan of every
retained topic when the filter has literal levels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from midge.message import Message
from midge.protocol.topics import MULTI_LEVEL, SEPARATOR, SINGLE_LEVEL


class _SubscriptionNode:
    __slots__ = ("children", "multi", "subscribers")

    def __init__(self) -> None:
        # Most nodes are leaves or pass-through levels: they share these empty
        # dicts until `add` gives them their own (a SUBSCRIBE of a new filter
        # then allocates a third of what it did). Only `add` may mutate them.
        self.children: dict[str, _SubscriptionNode] = _NO_CHILDREN
        # Client id -> granted QoS of the filter that ends at this node.
        self.subscribers: dict[str, int] = _NO_SUBSCRIBERS
        # The same for the filter that ends in '#' right below it ("a/#" on
        # node "a", "#" on the root): '#' has no children, so it needs no node
        # of its own, and matching reads it here instead of looking it up.
        self.multi: dict[str, int] = _NO_SUBSCRIBERS


# Final: compiled code then reads them directly, not as module globals by name.
_NO_CHILDREN: Final[dict[str, _SubscriptionNode]] = {}
_NO_SUBSCRIBERS: Final[dict[str, int]] = {}


MATCH_CACHE_SIZE: Final = 65536  # topics whose receivers are remembered between changes
SINGLES_CACHE_SIZE: Final = 4096  # clients whose one-entry subscriber dict is kept to share


class SubscriptionTrie:
    """Topic filters of every session, indexed by level.

    A filter without wildcards matches one topic only: those are kept in a
    table by filter (`_exact`) instead, one dict entry and no nodes each, and
    a topic costs one lookup there besides its walk of the trie (skipped
    while the trie is empty).

    `match` results are cached per topic until the next subscribe or
    unsubscribe: most traffic repeats a few topics, and subscriptions change
    far less often than messages arrive. Callers must not change the result.

    Most filters have one subscriber, and a client's filters mostly share
    one QoS: a node's subscriber dict of one entry is shared by every such
    node of that client (`_singles`), so a SUBSCRIBE of a new filter makes no
    dict of its own. Hence the rule: a dict of one entry is never changed,
    only replaced; a dict of two or more is the node's own.
    """

    def __init__(self) -> None:
        self._root = _SubscriptionNode()
        self._exact: dict[str, dict[str, int]] = {}  # filter without wildcards -> subscribers
        self.count = 0
        self._cache: dict[str, dict[str, int]] = {}
        self._singles: dict[str, dict[str, int]] = {}  # client id -> {client id: qos}
        # The last of them: a SUBSCRIBE adds all its filters for one client.
        self._single: dict[str, int] = _NO_SUBSCRIBERS
        self._single_client = ""
        self._single_qos = -1

    def add(self, topic_filter: str, client_id: str, qos: int) -> None:
        if self._cache:
            self._cache.clear()
        if SINGLE_LEVEL not in topic_filter and MULTI_LEVEL not in topic_filter:
            exact = self._exact
            subscribers = exact.get(topic_filter, _NO_SUBSCRIBERS)
            exact[topic_filter] = self._with(subscribers, client_id, qos)
            return
        levels = topic_filter.split(SEPARATOR)
        multi = levels[-1] == MULTI_LEVEL
        if multi:
            levels.pop()
        node = self._root
        depth = 0
        count = len(levels)
        while depth < count:
            child = node.children.get(levels[depth])
            if child is None:
                break
            node = child
            depth += 1
        while depth < count:  # the rest of the filter is new: no lookups
            child = _SubscriptionNode()
            if node.children is _NO_CHILDREN:
                node.children = {levels[depth]: child}
            else:
                node.children[levels[depth]] = child
            node = child
            depth += 1
        if multi:
            node.multi = self._with(node.multi, client_id, qos)
        else:
            node.subscribers = self._with(node.subscribers, client_id, qos)

    def _with(self, subscribers: dict[str, int], client_id: str, qos: int) -> dict[str, int]:
        """`subscribers` with `client_id` at `qos`, by the rule of the class docstring."""
        size = len(subscribers)
        if size >= 2:
            if client_id not in subscribers:
                self.count += 1
            subscribers[client_id] = qos
            return subscribers
        if size == 1 and client_id not in subscribers:
            self.count += 1
            return {**subscribers, client_id: qos}  # two: the node's own from now on
        if not size:
            self.count += 1
        if client_id is self._single_client and qos == self._single_qos:
            return self._single
        singles = self._singles
        single = singles.get(client_id)
        if single is None or single[client_id] != qos:
            if len(singles) >= SINGLES_CACHE_SIZE:
                singles.clear()  # only sharing is lost: nodes keep theirs
            single = singles[client_id] = {client_id: qos}
        self._single, self._single_client, self._single_qos = single, client_id, qos
        return single

    def remove(self, topic_filter: str, client_id: str) -> bool:
        """Remove one subscription; prune branches left empty. False if it was absent."""
        self._cache.clear()
        if SINGLE_LEVEL not in topic_filter and MULTI_LEVEL not in topic_filter:
            return self._remove_exact(topic_filter, client_id)
        levels = topic_filter.split(SEPARATOR)
        multi = levels[-1] == MULTI_LEVEL
        if multi:
            levels.pop()
        path = [self._root]
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        last = path[-1]
        subscribers = last.multi if multi else last.subscribers
        if client_id not in subscribers:
            return False
        if len(subscribers) == 1:  # shared, never changed: replaced
            subscribers = _NO_SUBSCRIBERS
        else:
            del subscribers[client_id]
        if multi:
            last.multi = subscribers
        else:
            last.subscribers = subscribers
        self.count -= 1
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.subscribers or node.multi or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    def _remove_exact(self, topic_filter: str, client_id: str) -> bool:
        exact = self._exact
        subscribers = exact.get(topic_filter)
        if subscribers is None or client_id not in subscribers:
            return False
        if len(subscribers) == 1:  # shared, never changed: dropped
            del exact[topic_filter]
        else:
            del subscribers[client_id]
        self.count -= 1
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
        literal = self._exact.get(topic)
        result = {} if literal is None else dict(literal)
        root = self._root
        if not root.children and not root.multi:
            return result  # no filter with a wildcard at all
        levels = topic.split(SEPARATOR)
        # Wildcards never match a first level starting with '$' [MQTT-4.7.2-1].
        wildcards_allowed = not topic.startswith("$")
        nodes = [root]
        for depth, level in enumerate(levels):
            next_nodes = []
            for node in nodes:
                children = node.children
                if depth or wildcards_allowed:
                    if node.multi:
                        _merge(result, node.multi)
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
            if node.multi:  # "sport/#" also matches "sport" itself [MQTT-4.7.1-2]
                _merge(result, node.multi)
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


_NO_RETAINED_CHILDREN: Final[dict[str, _RetainedNode]] = {}


class RetainedStore:
    """The last retained message of each topic."""

    def __init__(self) -> None:
        self._root = _RetainedNode()
        self.count = 0
        self.bytes = 0  # topic and payload bytes of every retained message ($SYS)

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
        else:
            self.bytes -= node.message.size
        self.bytes += message.size
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
        removed = path[-1].message
        if removed is None:
            return
        path[-1].message = None
        self.count -= 1
        self.bytes -= removed.size
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
