"""MQTT 5.0 Topic Aliases (section 3.3.2.3.4), one table per direction and connection.

Outgoing policy: a topic gets an alias the second time it is published (a
topic sent once gains nothing), while the broker's Topic Alias Maximum
leaves numbers free; aliases are never taken back, so the first topics that
repeat keep them for the connection. A PUBLISH that sets up an alias carries
the topic and the alias; later ones carry the alias and an empty topic.

Incoming: the broker may set up aliases up to the maximum we announced in
CONNECT. An alias of 0 or above that maximum, or an empty topic with an
alias never set up, is a Protocol Error (`TopicAliasInvalid`, 0x94).

Both tables start empty on every connection [MQTT-3.3.2-7].
"""

from __future__ import annotations

from midge.protocol.errors import TopicAliasInvalid


class OutgoingAliases:
    """Which alias, if any, to send with a topic."""

    def __init__(self, maximum: int = 0) -> None:
        self.maximum = maximum
        self._aliases: dict[str, int] = {}
        self._topics: dict[int, str] = {}
        self._seen: set[str] = set()

    def reset(self, maximum: int) -> None:
        """A new connection: the broker's maximum, and no alias set up."""
        self.maximum = maximum
        self._aliases.clear()
        self._topics.clear()
        self._seen.clear()

    def choose(self, topic: str) -> tuple[str, int | None]:
        """(topic to send, alias to send) for a PUBLISH to `topic`."""
        alias = self._aliases.get(topic)
        if alias is not None:
            return "", alias
        if not self.maximum or len(self._aliases) >= self.maximum:
            return topic, None
        if topic not in self._seen:
            self._seen.add(topic)
            if len(self._seen) > 4 * self.maximum:
                self._seen.clear()  # bounded memory: topics that never repeat are forgotten
                self._seen.add(topic)
            return topic, None
        alias = next(n for n in range(1, self.maximum + 1) if n not in self._topics)
        self.bind(alias, topic)
        return topic, alias

    def unbind(self, topic: str) -> None:
        alias = self._aliases.pop(topic, None)
        if alias is not None:
            del self._topics[alias]

    def bind(self, alias: int, topic: str) -> None:
        """`alias` now stands for `topic` (also for an alias the caller chose)."""
        if not 1 <= alias <= self.maximum:
            raise ValueError(f"topic alias {alias} is outside the broker's 1..{self.maximum}")
        old = self._topics.get(alias)
        if old is not None:
            del self._aliases[old]
        self._topics[alias] = topic
        self._aliases[topic] = alias


class IncomingAliases:
    """The broker's aliases for topics, as set up by the PUBLISH packets it sent."""

    def __init__(self, maximum: int = 0) -> None:
        self.maximum = maximum
        self._topics: dict[int, str] = {}

    def reset(self) -> None:
        self._topics.clear()

    def resolve(self, topic: str, alias: int | None) -> str:
        """The topic a received PUBLISH is for; records a new mapping."""
        if alias is None:
            if not topic:
                raise TopicAliasInvalid("PUBLISH with neither a topic nor a topic alias")
            return topic
        if not 1 <= alias <= self.maximum:
            raise TopicAliasInvalid(
                f"topic alias {alias} outside the 1..{self.maximum} this client allows"
            )
        if topic:
            self._topics[alias] = topic
            return topic
        known = self._topics.get(alias)
        if known is None:
            raise TopicAliasInvalid(f"topic alias {alias} was never set up")
        return known
