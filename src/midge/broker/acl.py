"""Per-topic access control from a Mosquitto-format ACL file (`acl_file`).

The file (as in mosquitto.conf(5)):

    # comment                      a line whose first non-blank is `#`
    topic [read|write|readwrite|deny] TOPIC
    user USERNAME                  later `topic` lines belong to USERNAME
    pattern [read|write|readwrite|deny] TOPIC   for every client; %c: client
                                   id, %u: user name

No access word means readwrite; TOPIC may hold `+` and `#` and, after an
access word, spaces (as in Mosquitto, `topic read` alone is a rule for the
topic named "read"). `topic` lines before the first `user` line are the
section of anonymous clients (no user name). Other lines, an unknown access
word or an invalid TOPIC are errors naming the file and line.

How a decision is made, following Mosquitto 2.0 (`security_default.c`):

- With an ACL file, whatever it does not grant is denied.
- A client's own section (its `user` section, or the anonymous one) is
  consulted first, then the `pattern` rules. Within each, `deny` lines come
  first: a matching deny refuses, else a matching grant for the action
  allows. So deny wins within a section, and a user's own grant wins over a
  `pattern ... deny` (Mosquitto does the same). A user name without a
  section gets the patterns only; an anonymous client gets the anonymous
  section and the patterns without `%u`.
- Patterns do not apply to a client whose id or user name holds `+` or `#`
  (it could otherwise widen its own rules).
- `$` topics ($SYS/...): a rule whose first level is a wildcard never
  matches them (as in subscriptions [MQTT-4.7.2-1]); grant them with a rule
  that starts with the `$` level, e.g. `topic read $SYS/#`. Clients can
  never publish to $SYS, whatever the file says (the broker owns it).
- Publish and receive are checked on the concrete topic. Receiving is
  checked at delivery for each message, so `topic read a/#` with
  `topic deny a/secret` delivers a/x but not a/secret to a `#` subscriber.
- SUBSCRIBE (Mosquitto 2.0 grants every filter and only filters delivery;
  Midge answers 0x80 for a filter that can never deliver anything): a filter
  is refused when a deny rule covers all of it (every topic it matches is
  denied), and granted when a read rule overlaps it (some topic matches
  both); a deny that covers only part of it is enforced at delivery. In
  section order, as above. So `#` is granted to a client that may read
  a/#, and receives only a/...; a client that may read nothing gets 0x80.

`AccessControl` answers these questions without I/O; `load_acl_file` reads
the file (at start and on reload only).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from midge.protocol.topics import (
    MULTI_LEVEL,
    SEPARATOR,
    SINGLE_LEVEL,
    is_valid_topic_filter,
    topic_matches,
)

READ = 1
WRITE = 2
DENY = 0  # a rule with no access: refuses reading and writing
ACCESS_WORDS = {"read": READ, "write": WRITE, "readwrite": READ | WRITE, "deny": DENY}
DANGEROUS = ("+", "#")  # in a client id or user name, patterns do not apply


class AclFileError(ValueError):
    """An ACL file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Rule:
    access: int  # READ, WRITE, both, or DENY
    topic: str  # a topic filter; for patterns it may hold %c and %u


@dataclass(slots=True)
class Section:
    """Rules consulted together: deny rules first, then grants, in file order."""

    denies: list[Rule] = field(default_factory=list)
    grants: list[Rule] = field(default_factory=list)

    def add(self, rule: Rule) -> None:
        (self.denies if rule.access == DENY else self.grants).append(rule)


@dataclass(slots=True)
class AclRules:
    anonymous: Section = field(default_factory=Section)
    users: dict[str, Section] = field(default_factory=dict)
    patterns: Section = field(default_factory=Section)


# ------------------------------------------------------------------ parsing


def load_acl_file(path: str | Path) -> AclRules:
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AclFileError(f"{path}: cannot read: {exc}") from None
    return parse_acl(text, str(path))


def parse_acl(text: str, source: str = "<acl>") -> AclRules:
    rules = AclRules()
    section = rules.anonymous
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            keyword, *rest = line.split(None, 1)
            if keyword == "user":
                section = rules.users.setdefault(_username(rest), Section())
            elif keyword == "topic":
                section.add(_rule(rest, pattern=False))
            elif keyword == "pattern":
                rules.patterns.add(_rule(rest, pattern=True))
            else:
                raise ValueError(f"unknown line {keyword!r} (topic, user or pattern)")
        except ValueError as exc:
            raise AclFileError(f"{source}:{number}: {exc}") from None
    return rules


def _username(rest: list[str]) -> str:
    if not rest:
        raise ValueError("user without a user name")
    return rest[0]


def _rule(rest: list[str], pattern: bool) -> Rule:
    if not rest:
        raise ValueError("topic missing")
    words = rest[0].split(None, 1)
    if len(words) == 1:
        access, topic = READ | WRITE, words[0]  # no access word: readwrite
    elif words[0] in ACCESS_WORDS:
        access, topic = ACCESS_WORDS[words[0]], words[1]
    else:
        raise ValueError(f"unknown access {words[0]!r} (read, write, readwrite or deny)")
    checked = topic.replace("%c", "c").replace("%u", "u") if pattern else topic
    if not is_valid_topic_filter(checked):
        raise ValueError(f"invalid topic {topic!r}")
    return Rule(access, topic)


# ---------------------------------------------------------------- decisions

# (rule topic, topic or filter) -> does the rule apply?
Matcher = Callable[[str, str], bool]


class AccessControl:
    """What the ACL file lets one client (id, user name) do with a topic."""

    def __init__(self, rules: AclRules) -> None:
        self.rules = rules

    def can_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        return self._decide(client_id, username, WRITE, topic, topic_matches, topic_matches)

    def can_read(self, client_id: str, username: str | None, topic: str) -> bool:
        """May the client receive a message published to `topic`?"""
        return self._decide(client_id, username, READ, topic, topic_matches, topic_matches)

    def can_subscribe(self, client_id: str, username: str | None, topic_filter: str) -> bool:
        return self._decide(client_id, username, READ, topic_filter, covers, overlaps)

    def _decide(
        self,
        client_id: str,
        username: str | None,
        action: int,
        topic: str,
        denied_by: Matcher,
        granted_by: Matcher,
    ) -> bool:
        for section in self._sections(client_id, username):
            for denied in section.denies:
                if denied_by(denied.topic, topic):
                    return False
            for granted in section.grants:
                if granted.access & action and granted_by(granted.topic, topic):
                    return True
        return False

    def _sections(self, client_id: str, username: str | None) -> Iterator[Section]:
        own = self.rules.anonymous if username is None else self.rules.users.get(username)
        if own is not None:
            yield own
        if _dangerous(client_id) or (username is not None and _dangerous(username)):
            return
        patterns = self.rules.patterns
        yield Section(
            _substituted(patterns.denies, client_id, username),
            _substituted(patterns.grants, client_id, username),
        )


def _dangerous(name: str) -> bool:
    return any(char in name for char in DANGEROUS)


_PLACEHOLDER = re.compile("%[cu]")


def _substituted(rules: list[Rule], client_id: str, username: str | None) -> list[Rule]:
    """Pattern rules with %c and %u filled in; %u rules skip anonymous clients."""
    values = {"%c": client_id, "%u": username or ""}
    return [
        Rule(rule.access, _PLACEHOLDER.sub(lambda found: values[found.group()], rule.topic))
        for rule in rules
        if username is not None or "%u" not in rule.topic
    ]


# ------------------------------------------------------ filters vs. filters


def covers(rule: str, topic_filter: str) -> bool:
    """Does every topic that `topic_filter` matches also match `rule`?"""
    rule_levels = rule.split(SEPARATOR)
    levels = topic_filter.split(SEPARATOR)
    if _dollar_mismatch(rule_levels[0], levels[0]):
        return False
    for index, rule_level in enumerate(rule_levels):
        if rule_level == MULTI_LEVEL:
            return True  # whatever follows, including nothing ("a/#" matches "a")
        if index >= len(levels):
            return False
        level = levels[index]
        if level == MULTI_LEVEL or (level == SINGLE_LEVEL and rule_level != SINGLE_LEVEL):
            return False  # the filter reaches topics the rule does not
        if rule_level not in (SINGLE_LEVEL, level):
            return False
    return len(levels) == len(rule_levels)


def overlaps(rule: str, topic_filter: str) -> bool:
    """Is there a topic that both `rule` and `topic_filter` match?"""
    rule_levels = rule.split(SEPARATOR)
    levels = topic_filter.split(SEPARATOR)
    if _dollar_mismatch(rule_levels[0], levels[0]) or _dollar_mismatch(levels[0], rule_levels[0]):
        return False
    for rule_level, level in zip(rule_levels, levels, strict=False):
        if MULTI_LEVEL in (rule_level, level):
            return True
        if SINGLE_LEVEL not in (rule_level, level) and rule_level != level:
            return False
    longer = rule_levels if len(rule_levels) > len(levels) else levels
    # Equal lengths meet; otherwise only a final "#" matching nothing bridges the gap.
    extra = longer[min(len(rule_levels), len(levels)) :]
    return not extra or extra == [MULTI_LEVEL]


def _dollar_mismatch(wild: str, literal: str) -> bool:
    """A first-level wildcard never reaches `$` topics [MQTT-4.7.2-1]."""
    return wild in (SINGLE_LEVEL, MULTI_LEVEL) and literal.startswith("$")
