"""The ACL file: parsing (Mosquitto's format) and the decisions of `AccessControl`."""

from __future__ import annotations

import pytest

from midge.broker.acl import (
    DENY,
    READ,
    WRITE,
    AccessControl,
    AclFileError,
    Rule,
    covers,
    load_acl_file,
    overlaps,
    parse_acl,
)


def acl(text: str) -> AccessControl:
    return AccessControl(parse_acl(text))


# ------------------------------------------------------------------ parsing


def test_every_line_kind_lands_in_its_section():
    rules = parse_acl(
        """
        # anonymous section
        topic read public/#
        topic   deny   public/secret
        topic open/+

        user alice
        topic write alice/out
        topic readwrite shared/#
        pattern read clients/%c/#
        user bob smith
        topic read bob/#
        user alice
        topic read alice/in
        pattern write users/%u/state
        """
    )
    assert rules.anonymous.grants == [Rule(READ, "public/#"), Rule(READ | WRITE, "open/+")]
    assert rules.anonymous.denies == [Rule(DENY, "public/secret")]
    # A second `user alice` section adds to the first, as in Mosquitto.
    assert rules.users["alice"].grants == [
        Rule(WRITE, "alice/out"),
        Rule(READ | WRITE, "shared/#"),
        Rule(READ, "alice/in"),
    ]
    assert rules.users["bob smith"].grants == [Rule(READ, "bob/#")]
    # Pattern lines belong to everyone, wherever they stand.
    assert rules.patterns.grants == [Rule(READ, "clients/%c/#"), Rule(WRITE, "users/%u/state")]


def test_topic_with_spaces_and_the_lone_access_word():
    rules = parse_acl("topic read a b/c\ntopic read\n")
    # After an access word the rest is the topic; alone, the word is the topic (Mosquitto).
    assert rules.anonymous.grants == [Rule(READ, "a b/c"), Rule(READ | WRITE, "read")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("bogus x", "unknown line 'bogus'"),
        ("topic", "topic missing"),
        ("user", "user without a user name"),
        ("topic fetch a/b", "unknown access 'fetch'"),
        ("topic read a/#/b", "invalid topic 'a/#/b'"),
        ("pattern read a/%c+/x", "invalid topic 'a/%c+/x'"),
    ],
)
def test_parse_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "acl"
    path.write_text(f"# ok\ntopic read x\n{line}\n", encoding="utf-8")
    with pytest.raises(AclFileError) as error:
        load_acl_file(path)
    assert str(error.value).startswith(f"{path}:3: ")
    assert message in str(error.value)


def test_unreadable_file_is_an_acl_file_error(tmp_path):
    with pytest.raises(AclFileError, match="cannot read"):
        load_acl_file(tmp_path / "missing")


# ---------------------------------------------------------------- decisions


def test_access_words():
    control = acl("topic read r\ntopic write w\ntopic readwrite rw\ntopic both\n")
    for topic, can_read, can_write in [
        ("r", True, False),
        ("w", False, True),
        ("rw", True, True),
        ("both", True, True),
        ("other", False, False),
    ]:
        assert control.can_read("c", None, topic) is can_read, topic
        assert control.can_publish("c", None, topic) is can_write, topic


def test_anonymous_section_is_for_clients_without_user_name():
    control = acl("topic read public/#\nuser alice\ntopic read alice/#\n")
    assert control.can_read("c", None, "public/x")
    assert not control.can_read("c", None, "alice/x")
    assert control.can_read("c", "alice", "alice/x")
    assert not control.can_read("c", "alice", "public/x")  # the anonymous rules are not hers
    assert not control.can_read("c", "carol", "public/x")  # no section: patterns only


def test_patterns_substitute_client_id_and_user_name():
    control = acl("pattern readwrite clients/%c/#\npattern read users/%u/+\n")
    assert control.can_publish("dev1", None, "clients/dev1/temp")
    assert not control.can_publish("dev1", None, "clients/dev2/temp")
    assert control.can_read("dev1", "alice", "users/alice/inbox")
    assert not control.can_publish("dev1", "alice", "users/alice/inbox")
    assert not control.can_read("dev1", "alice", "users/bob/inbox")
    # %u never applies to an anonymous client.
    assert not control.can_read("dev1", None, "users//inbox")


def test_pattern_with_both_placeholders():
    control = acl("pattern write %u/%c/state\n")
    assert control.can_publish("kitchen", "alice", "alice/kitchen/state")
    assert not control.can_publish("kitchen", "bob", "alice/kitchen/state")


@pytest.mark.parametrize(("client_id", "username"), [("a+", None), ("a#", None), ("c", "u#")])
def test_patterns_do_not_apply_to_wildcard_names(client_id, username):
    """A client id "+" would otherwise turn clients/%c/# into clients/+/#."""
    control = acl("pattern readwrite clients/%c/#\npattern read all/#\n")
    assert not control.can_read(client_id, username, f"clients/{client_id}/x")
    assert not control.can_read(client_id, username, "all/x")


def test_deny_wins_within_a_section_whatever_the_order():
    control = acl("topic read a/#\ntopic deny a/secret\nuser u\ntopic deny b/+\ntopic b/#\n")
    assert control.can_read("c", None, "a/open")
    assert not control.can_read("c", None, "a/secret")
    assert control.can_read("c", "u", "b/x/y")
    assert not control.can_read("c", "u", "b/x")
    assert not control.can_publish("c", "u", "b/x")


def test_deny_pattern_refuses_what_another_pattern_grants():
    control = acl("pattern readwrite home/%c/#\npattern deny home/%c/locks/#\n")
    assert control.can_publish("h1", None, "home/h1/lights")
    assert not control.can_publish("h1", None, "home/h1/locks/front")


def test_own_section_is_consulted_before_patterns():
    """As in Mosquitto 2.0: a user's own grant wins over a pattern deny, and
    a user's own deny over a pattern grant."""
    control = acl(
        "user admin\ntopic readwrite secret/#\ntopic deny public/x\n"
        "pattern deny secret/#\npattern readwrite public/#\n"
    )
    assert control.can_publish("c", "admin", "secret/plans")
    assert not control.can_publish("c", "other", "secret/plans")
    assert not control.can_read("c", "admin", "public/x")
    assert control.can_read("c", "other", "public/x")


def test_sys_topics_need_a_rule_starting_with_dollar():
    control = acl("topic read #\ntopic read +/broker/#\nuser ops\ntopic read $SYS/#\n")
    assert control.can_read("c", None, "anything/at/all")
    assert not control.can_read("c", None, "$SYS/broker/uptime")
    assert control.can_read("c", "ops", "$SYS/broker/uptime")
    assert not control.can_subscribe("c", None, "$SYS/#")
    assert control.can_subscribe("c", "ops", "$SYS/broker/+")


def test_wildcard_subscriptions():
    control = acl("topic read sensors/+/temp\ntopic read logs/#\ntopic deny logs/private/#\n")
    allowed = ["sensors/+/temp", "sensors/kitchen/temp", "#", "+/+/temp", "logs/#", "logs/+"]
    # Granted when a read rule overlaps it; delivery then filters each message.
    for topic_filter in allowed:
        assert control.can_subscribe("c", None, topic_filter), topic_filter
    refused = ["sensors/+/humidity", "sensors/+", "other/#", "logs/private/#", "logs/private/x"]
    # Refused when nothing readable can match, or a deny covers the whole filter.
    for topic_filter in refused:
        assert not control.can_subscribe("c", None, topic_filter), topic_filter


def test_write_only_rules_do_not_grant_subscriptions():
    control = acl("topic write cmd/#\n")
    assert not control.can_subscribe("c", None, "cmd/#")


def test_no_rules_deny_everything():
    control = acl("")
    assert not control.can_read("c", None, "a")
    assert not control.can_publish("c", "u", "a")
    assert not control.can_subscribe("c", "u", "#")


# ------------------------------------------------------ filters vs. filters


@pytest.mark.parametrize(
    ("rule", "topic_filter", "expected"),
    [
        ("#", "a/b", True),
        ("#", "#", True),
        ("a/#", "a", True),
        ("a/#", "a/+/c", True),
        ("a/+", "a/b", True),
        ("a/+", "a/+", True),
        ("a/+", "a/#", False),
        ("a/b", "a/+", False),
        ("a/+/c", "a/+/#", False),
        ("a", "a/#", False),
        ("a/b", "a/b/c", False),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/+", True),
        ("$SYS/#", "#", False),
    ],
)
def test_covers(rule, topic_filter, expected):
    assert covers(rule, topic_filter) is expected


@pytest.mark.parametrize(
    ("rule", "topic_filter", "expected"),
    [
        ("a/b", "a/+", True),
        ("a/+", "+/b", True),
        ("a/#", "a", True),
        ("a", "a/#", True),
        ("a/+/#", "a/b", True),
        ("a/+", "a", False),
        ("a/b", "a/c", False),
        ("a/b/c", "a/b", False),
        ("#", "$SYS/#", False),
        ("$SYS/#", "#", False),
        ("$SYS/broker", "$SYS/+", True),
    ],
)
def test_overlaps(rule, topic_filter, expected):
    assert overlaps(rule, topic_filter) is expected
