"""The ACL file and auth hooks applied by the broker: SUBSCRIBE, PUBLISH, delivery,
retained messages, wills, CONNECT, and `Broker.reload_auth()`; all without sockets."""

from __future__ import annotations

import logging
from typing import ClassVar

import pytest

from midge.broker.broker import Broker
from midge.broker.config import BrokerConfig, ConfigError
from midge.broker.hooks import BaseAuthHook
from midge.protocol.packets import (
    SUBACK_FAILURE,
    ConnAck,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Will,
)

ACL = """\
# anonymous clients
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic write wills/alice

user bob
topic read alice/#
topic read public/#

user admin
topic readwrite #

user ops
topic readwrite $SYS/#

pattern readwrite clients/%c/#
"""


@pytest.fixture
def acl_file(tmp_path):
    path = tmp_path / "acl"
    path.write_text(ACL, encoding="utf-8")
    return path


@pytest.fixture
def secured(make_harness, acl_file):
    """A broker with the ACL above; anonymous clients and any user name may connect."""
    return make_harness(acl_file=str(acl_file))


def login(harness, client_id, username=None, **options):
    return harness.connect(client_id, username=username, **options)


# --------------------------------------------------------------- SUBSCRIBE


def test_denied_filter_gets_0x80_and_the_others_are_granted(secured):
    alice = login(secured, "a1", "alice")
    answer = alice.subscribe(("alice/#", 1), ("bob/#", 1), ("clients/a1/+", 2), ("#", 0))
    assert answer == [SubAck(alice.last_id, (1, SUBACK_FAILURE, 2, 0))]
    assert set(secured.broker.sessions["a1"].subscriptions) == {"alice/#", "clients/a1/+", "#"}


def test_user_without_a_section_has_the_patterns_only(secured):
    carol = login(secured, "c1", "carol")
    answer = carol.subscribe("public/#", "alice/#", "clients/c1/#", "#")
    # "#" is granted: it overlaps clients/c1/#, and delivery filters the rest.
    assert answer == [SubAck(carol.last_id, (0x80, 0x80, 0, 0))]


# ----------------------------------------------------------------- PUBLISH


@pytest.fixture
def reader(secured):
    """bob, who may read alice/# and public/#, subscribed to both."""
    bob = login(secured, "b1", "bob")
    bob.subscribed(("alice/#", 2), ("public/#", 2))
    return bob


@pytest.mark.parametrize("qos2_delivery", ["on_publish", "on_release"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_denied_publish_is_acknowledged_and_dropped(make_harness, acl_file, qos, qos2_delivery):
    harness = make_harness(acl_file=str(acl_file), qos2_delivery=qos2_delivery)
    bob = login(harness, "b1", "bob")
    bob.subscribed(("alice/#", 2))
    intruder = login(harness, "anon")
    intruder.published("alice/x", b"forged", qos, retain=True)  # checks PUBACK / PUBREC..PUBCOMP
    assert bob.received() == []
    assert harness.broker.retained.count == 0
    assert not intruder.closed


def test_denied_publish_is_logged_once_per_client_and_topic(secured, reader, caplog):
    intruder = login(secured, "anon")
    with caplog.at_level(logging.INFO, logger="midge.broker"):
        for _ in range(3):
            intruder.published("alice/x", b"forged", 1)
        intruder.published("alice/y", b"forged", 0)
    refusals = [r.getMessage() for r in caplog.records if "may not publish" in r.getMessage()]
    assert refusals == [
        "client 'anon' (user None) may not publish to 'alice/x': message dropped",
        "client 'anon' (user None) may not publish to 'alice/y': message dropped",
    ]


def test_allowed_publish_goes_through(secured, reader):
    alice = login(secured, "a1", "alice")
    alice.published("alice/x", b"hi", 1)
    alice.published("clients/a1/state", b"on", 0)  # pattern %c
    assert reader.received() == [Publish("alice/x", b"hi", 1, packet_id=1)]


def test_sys_needs_its_own_rule_and_clients_can_never_publish_there(secured):
    admin = login(secured, "ad", "admin")  # readwrite #, which does not reach $SYS
    assert admin.subscribe("$SYS/#")[0] == SubAck(admin.last_id, (0x80,))
    ops = login(secured, "op", "ops")  # readwrite $SYS/#
    ops.subscribed("$SYS/#")
    ops.published("$SYS/broker/fake", b"1", 1)  # acknowledged, never routed
    assert ops.received() == []


# ---------------------------------------------------------------- delivery


def test_delivery_checks_each_receiver_on_the_concrete_topic(secured, reader):
    anonymous = login(secured, "anon")
    anonymous.subscribed("#")  # granted: it may read public/#
    admin = login(secured, "ad", "admin")
    for topic in ("alice/x", "public/news", "public/secret", "other/x"):
        admin.published(topic, b"m", 0)
    assert [p.topic for p in anonymous.received()] == ["public/news"]
    assert [p.topic for p in reader.received()] == ["alice/x", "public/news", "public/secret"]


def test_retained_messages_are_filtered_the_same_way(secured):
    admin = login(secured, "ad", "admin")
    for topic in ("public/news", "public/secret", "alice/diary"):
        admin.published(topic, b"kept", 1, retain=True)
    anonymous = login(secured, "anon")
    answer = anonymous.subscribe(("public/#", 1), ("#", 0))
    assert answer == [
        SubAck(anonymous.last_id, (1, 0)),
        Publish("public/news", b"kept", 1, retain=True, packet_id=1),
        Publish("public/news", b"kept", 0, retain=True),
    ]


def test_offline_session_queues_only_what_its_user_may_read(secured):
    bob = login(secured, "b1", "bob", clean_session=False)
    bob.subscribed(("#", 1))
    bob.disconnect()
    admin = login(secured, "ad", "admin")
    admin.published("other/x", b"not for bob", 1)
    admin.published("public/x", b"for bob", 1)
    assert len(secured.broker.sessions["b1"].queue) == 1
    answer = secured.open().connect("b1", username="bob", clean_session=False)
    assert answer == [ConnAck(0, True), Publish("public/x", b"for bob", 1, packet_id=1)]


def test_queued_messages_are_checked_again_when_sent(secured):
    """A session whose user name is unknown (restored from the store, not
    reconnected since) queues everything; the check happens when it is sent."""
    bob = login(secured, "b1", "bob", clean_session=False)
    bob.subscribed(("#", 1))
    bob.disconnect()
    secured.broker.authorizer.forget("b1")  # what a restart leaves: no known user name
    admin = login(secured, "ad", "admin")
    admin.published("other/x", b"not for bob", 1)
    admin.published("public/x", b"for bob", 1)
    assert len(secured.broker.sessions["b1"].queue) == 2
    answer = secured.open().connect("b1", username="bob", clean_session=False)
    assert answer == [ConnAck(0, True), Publish("public/x", b"for bob", 1, packet_id=1)]


def test_same_client_id_under_another_user_name_gets_that_users_rights(secured):
    first = login(secured, "shared-id", "bob")
    first.subscribed(("alice/#", 0))
    first.disconnect()
    second = login(secured, "shared-id", "carol")
    assert second.subscribe("alice/#")[0] == SubAck(second.last_id, (0x80,))


def test_resumed_session_reads_with_the_new_user_names_rights(secured):
    """A persistent session keeps its subscriptions; what it receives follows
    whoever connected last (the cached receivers of a topic are recomputed)."""
    admin = login(secured, "ad", "admin")
    bob = login(secured, "shared", "bob", clean_session=False)
    bob.subscribed(("alice/#", 0))
    admin.published("alice/x", b"1", 0)
    assert [p.payload for p in bob.received()] == [b"1"]
    bob.disconnect()
    carol = login(secured, "shared", "carol", clean_session=False, present=True)
    admin.published("alice/x", b"2", 0)
    assert carol.received() == []
    carol.disconnect()
    bob = login(secured, "shared", "bob", clean_session=False, present=True)
    admin.published("alice/x", b"3", 0)
    assert [p.payload for p in bob.received()] == [b"3"]


# -------------------------------------------------------------------- wills


@pytest.fixture
def will_watcher(secured):
    admin = login(secured, "ad", "admin")
    admin.subscribed("wills/#")
    return admin


def test_will_is_published_when_its_client_may_write_the_topic(secured, will_watcher):
    alice = login(secured, "a1", "alice", will=Will("wills/alice", b"gone"))
    alice.drop()
    assert will_watcher.received() == [Publish("wills/alice", b"gone")]


def test_will_to_a_denied_topic_is_accepted_at_connect_and_dropped(secured, will_watcher, caplog):
    """As Mosquitto 2.0: CONNECT is not refused; the will is checked when published."""
    bob = login(secured, "b1", "bob", will=Will("wills/bob", b"gone"))  # CONNACK 0
    with caplog.at_level(logging.INFO, logger="midge.broker"):
        bob.drop()
    assert will_watcher.received() == []
    assert "may not publish to 'wills/bob'" in caplog.text
    assert "b1" not in secured.broker.authorizer._clients  # nothing cached for a gone client


# ------------------------------------------------------------------- hooks


class Hook(BaseAuthHook):
    """Logs in "hooked", refuses "banned"; allows hook/allow/#, refuses hook/deny/#."""

    calls: ClassVar[list[tuple[object, ...]]] = []

    def authenticate(self, client_id, username, password, peer):
        Hook.calls.append(("authenticate", client_id, username, password, peer))
        if username == "hooked":
            return password == b"hook-pw"
        return False if username == "banned" else None

    def authorize(self, client_id, username, action, topic):
        Hook.calls.append(("authorize", client_id, username, action, topic))
        if topic.startswith("hook/allow"):
            return True
        if topic.startswith("hook/deny") or topic == "alice/vetoed":
            return False
        if topic == "hook/crash":
            raise RuntimeError("hook bug")
        return None


class NotAHook:
    pass


@pytest.fixture
def hooked(make_harness, acl_file, password_file, password_lines):
    Hook.calls = []
    passwd = password_file([password_lines["7"]("alice", "s3cret")])
    return make_harness(
        acl_file=str(acl_file),
        password_file=passwd,
        allow_anonymous=True,
        auth_hook=f"{__name__}:Hook",
        auth_failure_delay=0,  # one address for every test client: no throttling
    )


def test_hook_authenticates_before_the_password_file(hooked):
    assert isinstance(hooked.broker.auth_hook, Hook)
    login(hooked, "h1", "hooked", password=b"hook-pw")  # not in the password file
    assert Hook.calls[0] == ("authenticate", "h1", "hooked", b"hook-pw", "192.0.2.1:40001")
    for username, password, code in [
        ("hooked", b"wrong", 4),
        ("banned", b"any", 4),
        ("alice", b"wrong", 4),  # no opinion: the password file decides
    ]:
        assert hooked.open().connect("x", username=username, password=password) == [ConnAck(code)]
    login(hooked, "a1", "alice", password=b"s3cret")


def test_hook_authorizes_before_the_acl_and_is_cached(hooked):
    alice = login(hooked, "a1", "alice", password=b"s3cret")
    answer = alice.subscribe("hook/allow/#", "hook/deny/#", "alice/#")
    assert answer == [SubAck(alice.last_id, (0, 0x80, 0))]
    Hook.calls.clear()
    delivered = []
    for _ in range(3):
        delivered += alice.publish("hook/allow/x", b"1")  # the ACL refuses, the hook allows
        delivered += alice.publish("alice/vetoed", b"2")  # the ACL allows, the hook refuses
        delivered += alice.publish("alice/ok", b"3")  # no opinion: the ACL allows
    assert [p.topic for p in delivered] == ["hook/allow/x", "alice/ok"] * 3
    assert Hook.calls == [
        ("authorize", "a1", "alice", "publish", "hook/allow/x"),
        ("authorize", "a1", "alice", "read", "hook/allow/x"),
        ("authorize", "a1", "alice", "publish", "alice/vetoed"),
        ("authorize", "a1", "alice", "publish", "alice/ok"),
        ("authorize", "a1", "alice", "read", "alice/ok"),
    ]


def test_hook_exception_refuses_and_is_logged(hooked, caplog):
    alice = login(hooked, "a1", "alice", password=b"s3cret")
    with caplog.at_level(logging.ERROR, logger="midge.broker"):
        assert alice.subscribe("hook/crash")[0] == SubAck(alice.last_id, (0x80,))
    assert "auth_hook.authorize failed" in caplog.text
    assert not alice.closed


def test_hook_without_acl_file_allows_what_it_has_no_opinion_on(make_harness):
    harness = make_harness(auth_hook=f"{__name__}:Hook")
    client = login(harness, "c1")
    assert client.subscribe("anything/#", "hook/deny/x")[0] == SubAck(client.last_id, (0, 0x80))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("midge_no_such_module:Hook", "cannot import 'midge_no_such_module'"),
        (f"{__name__}:Missing", "has no 'Missing'"),
        (f"{__name__}:NotAHook", "has no method authenticate()"),
        ("no-colon", "must be 'package.module:ClassName'"),
    ],
)
def test_hook_that_cannot_be_loaded_stops_the_start(spec, message):
    with pytest.raises(ConfigError) as error:
        Broker(BrokerConfig(auth_hook=spec).validate())
    assert "'auth_hook'" in str(error.value)
    assert message in str(error.value)


def test_broken_acl_file_stops_the_start(tmp_path):
    path = tmp_path / "acl"
    path.write_text("topic read a\ntopic sometimes b\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        Broker(BrokerConfig(acl_file=str(path)).validate())
    assert str(error.value).startswith(f"config key 'acl_file': {path}:2: unknown access")


def test_acl_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="'acl_file': file not found"):
        BrokerConfig(acl_file=str(tmp_path / "missing")).validate()


def test_no_acl_and_no_hook_means_no_authorizer(harness):
    assert harness.broker.authorizer is None


# ----------------------------------------------------------- failed logins


def test_failed_login_is_logged_without_the_password(
    make_harness, password_file, password_lines, caplog
):
    harness = make_harness(
        password_file=password_file([password_lines["7"]("alice", "s3cret")]),
        allow_anonymous=False,
        auth_failure_delay=0,
    )
    with caplog.at_level(logging.WARNING, logger="midge.broker"):
        harness.open().connect("dev7", username="alice", password=b"guess-123")
        harness.open().connect("dev8")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "login refused (BAD_USERNAME_OR_PASSWORD): client 'dev7', user 'alice', "
        "from 192.0.2.1:40001",
        "login refused (NOT_AUTHORIZED): client 'dev8', user None, from 192.0.2.1:40002",
    ]
    assert "guess-123" not in caplog.text


# ------------------------------------------------------------------ reload


@pytest.fixture
def reloadable(make_harness, acl_file, password_file, password_lines):
    users = [("alice", "s3cret"), ("bob", "b0b"), ("admin", "4dmin")]
    passwd = password_file([password_lines["7"](*user) for user in users])
    harness = make_harness(
        acl_file=str(acl_file), password_file=passwd, allow_anonymous=True, auth_failure_delay=0
    )
    harness.passwd = passwd
    return harness


def test_reload_applies_new_rules_to_connected_clients(reloadable, acl_file):
    reader = login(reloadable, "b1", "bob", password=b"b0b")
    reader.subscribed("alice/#")
    alice = login(reloadable, "a1", "alice", password=b"s3cret")
    alice.published("alice/x", b"before", 0)
    acl_file.write_text(ACL.replace("topic readwrite alice/#", "topic read alice/#"), "utf-8")
    assert reloadable.broker.reload_auth() is True
    alice.published("alice/x", b"after", 0)  # cached as allowed before: the cache is gone
    assert [p.payload for p in reader.received()] == [b"before"]
    assert not alice.closed
    assert not reader.closed


def test_reload_reads_the_password_file_again(reloadable, password_lines):
    with open(reloadable.passwd, "w", encoding="utf-8") as file:
        file.write(password_lines["7"]("bob", "new-pw") + "\n")
    assert reloadable.broker.reload_auth() is True
    assert reloadable.open().connect("x", username="alice", password=b"s3cret") == [ConnAck(4)]
    login(reloadable, "b2", "bob", password=b"new-pw")


@pytest.mark.parametrize("broken", ["acl", "passwd"])
def test_reload_with_a_broken_file_keeps_the_old_rules(reloadable, acl_file, broken, caplog):
    alice = login(reloadable, "a1", "alice", password=b"s3cret")
    watcher = login(reloadable, "ad", "admin", password=b"4dmin")
    watcher.subscribed("alice/#")
    if broken == "acl":
        acl_file.write_text("topic read alice/#\nnonsense\n", "utf-8")
    else:
        with open(reloadable.passwd, "w", encoding="utf-8") as file:
            file.write("alice:not-a-hash\n")
    with caplog.at_level(logging.ERROR, logger="midge.broker"):
        assert reloadable.broker.reload_auth() is False
    assert "keeping the previous rules" in caplog.text
    alice.published("alice/x", b"still allowed", 0)
    assert watcher.received() == [Publish("alice/x", b"still allowed")]
    login(reloadable, "a2", "alice", password=b"s3cret")  # the old password file too


def test_qos2_flows_of_denied_messages_complete(secured, reader):
    """PUBREC, PUBREL, PUBCOMP of a dropped QoS 2 message, packet by packet."""
    intruder = login(secured, "anon")
    assert intruder.publish("alice/x", b"forged", 2, packet_id=9) == [PubRec(9)]
    intruder.send(PubRel(9))
    assert intruder.received() == [PubComp(9)]
    assert intruder.publish("alice/x", b"forged", 1, packet_id=10) == [PubAck(10)]
    assert reader.received() == []
