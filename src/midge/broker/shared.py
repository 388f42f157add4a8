"""Shared subscriptions: `$share/{group}/{filter}` (MQTT 5.0, section 4.8.2).

Every client subscribed to the same share name (group and filter) is a
member; each matching message goes to one member only. 3.1.1 clients may
use them too, as with EMQX and HiveMQ. Which member: `policy`, one of

- "round_robin" (default): the members in turn;
- "random";
- "hash_client": by the publisher's client id, so one publisher's messages
  stay with one member (in order) while the members stay the same;
- "hash_topic": by topic, the same for each topic.

A member whose client is online is preferred; only when none is online does
a message go to an offline member's queue. A member that disconnects hands
its unacknowledged QoS 1/2 messages of the share to the others
(`Delivery.hand_over_shared`).

Share names are indexed in a `SubscriptionTrie` of their own, by filter,
under the share name as its "client": matching a topic yields the share
names, each a group to pick one member of.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable

from midge.broker.router import SubscriptionTrie
from midge.protocol.topics import is_valid_topic_filter

SHARE_PREFIX = "$share/"


def parse_share(topic_filter: str) -> tuple[str, str] | None:
    """(group, filter) of `$share/{group}/{filter}`; None for any other filter.

    Raises ValueError for a share name the specification forbids: an empty
    group, a group with a wildcard, or an empty or invalid filter
    [MQTT-4.8.2-1, 4.8.2-2].
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    group, slash, shared_filter = topic_filter[len(SHARE_PREFIX) :].partition("/")
    if not group or "+" in group or "#" in group:
        raise ValueError(f"invalid share group in {topic_filter!r}")
    if not slash or not shared_filter or not is_valid_topic_filter(shared_filter):
        raise ValueError(f"invalid filter in shared subscription {topic_filter!r}")
    return group, shared_filter


class _Group:
    __slots__ = ("members", "turn")

    def __init__(self) -> None:
        self.members: dict[str, int] = {}  # client id -> subscription options, in join order
        self.turn = 0  # round robin: where the next search starts


class SharedSubscriptions:
    __slots__ = ("_index", "groups", "policy")

    def __init__(self, policy: str = "round_robin") -> None:
        self.policy = policy
        # Share name -> its members. Read by delivery for every message (empty:
        # no shared subscription, nothing to match), changed only here.
        self.groups: dict[str, _Group] = {}
        self._index = SubscriptionTrie()  # filter -> share names (as "clients")

    def add(self, share_name: str, client_id: str, options: int) -> None:
        parsed = parse_share(share_name)
        assert parsed is not None, "only share names are added here"
        group = self.groups.get(share_name)
        if group is None:
            group = self.groups[share_name] = _Group()
            self._index.add(parsed[1], share_name, 0)
        group.members[client_id] = options

    def remove(self, share_name: str, client_id: str) -> bool:
        group = self.groups.get(share_name)
        if group is None or group.members.pop(client_id, None) is None:
            return False
        if not group.members:
            del self.groups[share_name]
            parsed = parse_share(share_name)
            assert parsed is not None
            self._index.remove(parsed[1], share_name)
        return True

    def match(self, topic: str) -> list[str]:
        """The share names whose filter matches `topic`."""
        if not self.groups:
            return []
        return list(self._index.match(topic))

    def pick(
        self,
        share_name: str,
        topic: str,
        publisher: str,
        online: Callable[[str], bool],
        excluded: str = "",
    ) -> tuple[str, int] | None:
        """The member (client id, options) that gets one message of `share_name`;
        None when it has no member (other than `excluded`)."""
        group = self.groups.get(share_name)
        if group is None:
            return None
        members = [item for item in group.members.items() if item[0] != excluded]
        if not members:
            return None
        ready = [item for item in members if online(item[0])] or members
        policy = self.policy
        if policy == "round_robin":
            chosen = ready[group.turn % len(ready)]
            group.turn = (group.turn + 1) % max(len(group.members), 1)
            return chosen
        if policy == "random":
            return random.choice(ready)
        key = publisher if policy == "hash_client" else topic
        return ready[zlib.crc32(key.encode()) % len(ready)]
