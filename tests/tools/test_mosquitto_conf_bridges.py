"""The importer's bridges: each `connection` block of a mosquitto.conf as a [[bridges]] table.

Sans-IO like test_mosquitto_conf.py: each test translates a text and reads
the TOML back; the complete outputs are loaded through Midge's own config
loader, and the bridges it makes compared with the BridgeConfig expected.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from midge.bridge.config import BridgeConfig, TopicRule
from midge.broker.config import config_from_toml
from midge.tools.mosquitto_conf_toml import Commented, Table, render, value_text
from midge.tools.mosquitto_conf_translate import Untranslated, translate

CONF = Path("/etc/mosquitto/mosquitto.conf")
HEAD = "listener 1883\nconnection up\naddress h\n"  # lines 1-3: a listener, a bridge


def imported(text: str) -> tuple[dict[str, Any], list[Untranslated], str]:
    """(the TOML as a dict, the untranslated directives, the TOML text)."""
    toml, left = translate(text, CONF)
    return tomllib.loads(toml), left, toml


def bridge(text: str) -> tuple[dict[str, Any], list[tuple[int, str]], str]:
    """The one [[bridges]] table of HEAD + `text`, what was left out, the TOML."""
    data, left, toml = imported(HEAD + text)
    [table] = data["bridges"]
    return table, reported(left), toml


def reported(left: list[Untranslated]) -> list[tuple[int, str]]:
    return [(item.line, item.directive) for item in left]


def note(toml: str, line: int) -> str:
    """The notes written for a line of the mosquitto.conf, joined."""
    return " ".join(re.findall(rf"^#   mosquitto\.conf:{line} `[^`]*`: (.*)$", toml, re.M))


def rule(pattern: str, direction: str = "out", qos: int = 0, local: str = "", remote: str = ""):
    return {
        "pattern": pattern,
        "direction": direction,
        "qos": qos,
        "local_prefix": local,
        "remote_prefix": remote,
    }


# ------------------------------------------------------------ the whole bridge


FULL = """\
listener 1883
connection cloud
addresses mqtt.example.com:8883 backup.example.com
round_robin true
remote_clientid edge-1
remote_username edge
remote_password s3cret
bridge_protocol_version mqttv50
cleansession false
bridge_session_expiry_interval 3600
keepalive_interval 30
try_private false
bridge_cafile certs/ca.crt
bridge_certfile certs/edge.crt
bridge_keyfile certs/edge.key
bridge_insecure true
topic sensors/# out 1 "" site1/
topic commands/# in 2
topic "" in 1 alarm site1/alarm
bridge_outgoing_retain false
notifications true
notification_topic bridges/cloud/state
notifications_local_only true
start_type lazy
threshold 5
idle_timeout 120
restart_timeout 2 20

connection backup
address 10.0.0.2:1884
topic # both
"""


def test_a_connection_block_loads_as_the_bridge_it_describes():
    toml, left = translate(FULL, CONF)
    assert left == []
    config = config_from_toml(toml, "imported", Path("/elsewhere"))
    certs = "/etc/mosquitto/certs"
    assert config.bridges == (
        BridgeConfig(
            name="cloud",
            addresses=("mqtt.example.com:8883", "backup.example.com:1883"),
            round_robin=True,
            client_id="edge-1",
            username="edge",
            password="s3cret",
            protocol="5",
            clean_session=False,
            session_expiry=3600,
            keepalive=30,
            try_private=False,
            tls=True,
            ca_file=f"{certs}/ca.crt",
            cert_file=f"{certs}/edge.crt",
            key_file=f"{certs}/edge.key",
            insecure=True,
            topics=(
                TopicRule("sensors/#", "out", 1, "", "site1/"),
                TopicRule("commands/#", "in", 2),
                TopicRule("", "in", 1, "alarm", "site1/alarm"),
            ),
            outgoing_retain=False,
            notifications=True,
            notification_topic="bridges/cloud/state",
            start="lazy",
            threshold=5,
            idle_timeout=120,
            restart_delay=2,
            restart_delay_max=20,
        ),
        BridgeConfig(
            name="backup",
            addresses=("10.0.0.2:1884",),
            topics=(TopicRule("#", "both"),),
            notifications_remote=True,
        ),
    )
    # The bridges come after the listeners, each key naming its line.
    assert toml.index("[[listeners]]") < toml.index("[[bridges]]")
    assert "[[bridges]]  # mosquitto.conf:2 `connection cloud`" in toml
    assert 'client_id = "edge-1"  # mosquitto.conf:5' in toml
    assert 'remote_prefix = "site1/" },  # mosquitto.conf:17' in toml
    assert "1 directive(s)" not in toml


def test_mosquittos_defaults_need_no_key():
    """A bare bridge: Mosquitto's defaults are Midge's (direction out, QoS 0, no
    prefixes, 3.1.1, no clean session, keepalive 60, restart 5 to 30 s, ...)
    but one: Mosquitto publishes the bridge's state at the remote too."""
    table, left, _toml = bridge("topic a/#\n")
    assert table == {
        "name": "up",
        "addresses": ["h:1883"],
        "topics": [rule("a/#")],
        "notifications_remote": True,
    }
    assert left == []
    config = config_from_toml(translate(HEAD + "topic a/#\n", CONF)[0], "i", Path("/"))
    expected = BridgeConfig(
        "up", ("h:1883",), topics=(TopicRule("a/#"),), notifications_remote=True
    )
    assert config.bridges == (expected,)


def test_every_key_comment_names_its_line_and_notes_say_what_differs():
    _table, _left, toml = bridge("topic a\n")
    assert 'addresses = ["h:1883"]  # mosquitto.conf:3' in toml
    # Mosquitto's state topic differs a little; its copy at the remote is a key.
    assert "$SYS/broker/connection/<host name>.up/state" in note(toml, 2)
    assert "notifications_remote = true  # Mosquitto's default" in toml


# ------------------------------------------------------------ topics


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("topic a/#", rule("a/#")),
        ("topic a/# in", rule("a/#", "in")),
        ("topic a/# BOTH 2", rule("a/#", "both", 2)),  # Mosquitto ignores the case
        ('topic a/# out 1 "" site1/', rule("a/#", "out", 1, "", "site1/")),
        ('topic a/# out 1 here/ ""', rule("a/#", "out", 1, "here/", "")),
        ('topic a/# out 1 "" ""', rule("a/#", "out", 1)),
        ('topic "" in 2 alarm site1/alarm', rule("", "in", 2, "alarm", "site1/alarm")),
        ("topic a/# out 1 l/", rule("a/#", "out", 1, "l/")),  # no remote prefix: none
        ("topic a/# out # a comment", rule("a/#")),  # as Mosquitto: QoS 0, the rest ignored
        ("topic a/# in 1 # l/ r/", rule("a/#", "in", 1)),
    ],
)
def test_a_topic_line_becomes_one_rule(line, expected):
    table, left, _toml = bridge(line + "\n")
    assert table["topics"] == [expected]
    assert left == []


def test_an_empty_prefix_is_written_as_an_empty_string_and_each_rule_names_its_line():
    _table, _left, toml = bridge('topic a out 1 "" r/\ntopic b in 2 l/ ""\n')
    assert (
        '    { pattern = "a", direction = "out", qos = 1, local_prefix = "", '
        'remote_prefix = "r/" },  # mosquitto.conf:4'
    ) in toml
    assert 'local_prefix = "l/", remote_prefix = "" },  # mosquitto.conf:5' in toml
    assert "topics = [  # mosquitto.conf:4, mosquitto.conf:5" in toml


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("topic a out 3", "QoS 3 is not 0, 1 or 2"),
        ("topic a out one", "QoS 'one' is not a number"),
        ("topic a sideways", "direction 'sideways' is not in, out or both"),
        ("topic", "no pattern"),
        ('topic "" in 0 alarm', 'an empty pattern ("") needs both prefixes'),
        ('topic "" in 0 "" remote', 'an empty pattern ("") needs both prefixes'),
        ("topic a out 0 l/+/ r/", "the local prefix 'l/+/' holds a wildcard"),
        ("topic a out 0 l/ r/#", "the remote prefix 'r/#' holds a wildcard"),
        ("topic a/#/b", "the local filter 'a/#/b' (prefix + pattern) is not valid"),
    ],
)
def test_a_bad_topic_line_is_reported_and_the_others_kept(line, why):
    data, left, _toml = imported(HEAD + line + "\ntopic good\n")
    assert reported(left) == [(4, line)]
    assert why in left[0].why
    assert data["bridges"][0]["topics"] == [rule("good")]


def test_a_bridge_with_no_usable_topic_is_left_out_with_every_line():
    data, left, _toml = imported(HEAD + "topic a out 3\nremote_username u\n")
    assert "bridges" not in data
    assert reported(left) == [
        (2, "connection up"),
        (3, "address h"),
        (4, "topic a out 3"),
        (5, "remote_username u"),
    ]
    assert "no topic line could be translated" in left[0].why
    assert "belongs to the bridge of mosquitto.conf:2" in left[1].why
    assert "QoS 3" in left[2].why  # a line keeps its own reason


# ------------------------------------------------------------ name and addresses


def test_addresses_get_their_port_and_ipv6_its_brackets():
    data, left, _toml = imported(
        "connection up\naddresses a b:1884 [::1]:1885 fe80::2:1886 # the rest\ntopic a\n"
    )
    assert data["bridges"][0]["addresses"] == [
        "a:1883",
        "b:1884",
        "[::1]:1885",
        "[fe80::2]:1886",
    ]
    assert left == []


@pytest.mark.parametrize("value", ["h:0", "h:65536", "h:x", "h:", ""])
def test_a_bad_address_leaves_the_bridge_out(value):
    data, left, _toml = imported(f"connection up\naddress {value}\ntopic a\n")
    assert "bridges" not in data
    assert [item.line for item in left] == [1, 2, 3]
    assert "a bridge needs an address" in left[0].why


def test_a_second_address_line_is_refused_as_mosquitto_does():
    table, left, _toml = bridge("address other\ntopic a\n")
    assert table["addresses"] == ["h:1883"]
    assert left == [(4, "address other")]


def test_names_midge_cannot_take_are_changed_and_duplicates_left_out():
    data, left, toml = imported(
        "connection a/b\naddress h\ntopic t\n"
        "connection a+b\naddress h\ntopic t\n"
        "connection a/b\naddress h\ntopic t\n"
        "connection\naddress h\ntopic t\n"
    )
    assert [item["name"] for item in data["bridges"]] == ["a-b", "a-b-2"]
    assert "letters, digits" in toml.split("connection a/b`\nname")[1].splitlines()[0]
    assert "the client id at the remote follows the new name" in note(toml, 1)
    assert [(line, text) for line, text in reported(left) if text.startswith("conn")] == [
        (7, "connection a/b"),
        (10, "connection"),
    ]
    assert "a second bridge named 'a/b'" in left[0].why
    assert "a bridge needs a name" in left[3].why


# ------------------------------------------------------------ the connection


@pytest.mark.parametrize(
    ("lines", "keys"),
    [
        ("bridge_protocol_version mqttv311\n", {"protocol": "3.1.1"}),
        ("bridge_protocol_version mqttv50\n", {"protocol": "5"}),
        ("clientid old\nusername u\npassword p\n", {"client_id": "old", "username": "u"}),
        ("cleansession true\n", {"clean_session": True}),
        ("bridge_session_expiry_interval 0\n", {"session_expiry": 0}),
        ("keepalive_interval 2\n", {"keepalive": 5}),  # Mosquitto's least value
        ("try_private false\n", {"try_private": False}),
        ("round_robin true\n", {"round_robin": True}),
        ("bridge_outgoing_retain false\n", {"outgoing_retain": False}),
        ("start_type once\n", {"start": "once"}),
        ("threshold 0\nidle_timeout 0\n", {"threshold": 1, "idle_timeout": 1}),
        ("restart_timeout 10\n", {"restart_delay": 10, "restart_delay_max": 10}),
        ("restart_timeout 0 30\n", {"restart_delay": 1, "restart_delay_max": 30}),
        ("notifications false\n", {"notifications": False}),
    ],
)
def test_connection_options_become_keys(lines, keys):
    table, left, _toml = bridge(lines + "topic a\n")
    assert {key: table[key] for key in keys} == keys
    assert left == []


def test_old_option_names_and_a_password_alone():
    table, _left, _toml = bridge("password p\nusername u\ntopic a\n")
    assert (table["username"], table["password"]) == ("u", "p")
    # MQTT 3.1.1 sends no password without a user name; 5.0 does.
    table, left, _toml = bridge("remote_password p\ntopic a\n")
    assert "password" not in table
    assert left == [(4, "remote_password p")]
    table, left, _toml = bridge("remote_password p\nbridge_protocol_version mqttv50\ntopic a\n")
    assert table["password"] == "p" and left == []


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("bridge_protocol_version mqttv31", "Midge's bridges speak 3.1.1 or 5.0"),
        ("bridge_protocol_version mqtt", "is not mqttv31, mqttv311 or mqttv50"),
        ("keepalive_interval 70000", "must be at most 65535"),
        ("bridge_session_expiry_interval -1", "must be 0..4294967295"),
        ("start_type manual", "is not automatic, lazy or once"),
        ("restart_timeout 30 10", "the cap is below the base"),
        ("restart_timeout soon", "is not a number of seconds"),
        ("cleansession maybe", "expects true or false"),
        ("remote_username", "no value"),
        ("notification_topic state/#", "not a topic name"),
    ],
)
def test_bad_connection_values_are_reported(line, why):
    _table, left, _toml = bridge(line + "\ntopic a\n")
    assert left == [(4, line)]
    _data, items, _toml = imported(HEAD + line + "\ntopic a\n")
    assert why in items[0].why


def test_the_last_value_counts_and_a_second_string_is_refused():
    table, left, toml = bridge("keepalive_interval 10\nkeepalive_interval 20\ntopic a\n")
    assert table["keepalive"] == 20 and left == []
    assert "replaced by mosquitto.conf:5" in note(toml, 4)
    table, left, _toml = bridge("remote_username a\nremote_username b\ntopic a\n")
    assert table["username"] == "a"
    assert left == [(5, "remote_username b")]


def test_notifications_and_mosquittos_state_topic():
    table, _left, toml = bridge("remote_clientid edge\ntopic a\n")
    assert table["notification_topic"] == "$SYS/broker/connection/edge/state"
    assert 'notification_topic = "$SYS/broker/connection/edge/state"  # Mosquitto' in toml
    assert table["notifications_remote"] is True  # Mosquitto's default
    table, _left, toml = bridge("notifications_local_only false\ntopic a\n")
    assert table["notifications_remote"] is True
    table, _left, toml = bridge("notifications_local_only true\ntopic a\n")
    assert table["notifications_remote"] is False
    table, _left, toml = bridge("notifications false\nremote_clientid edge\ntopic a\n")
    assert "notification_topic" not in table and note(toml, 2) == ""


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("local_clientid here", "joins this broker in-process"),
        ("local_username bridge", "no login, no ACL check"),
        ("local_password secret", "as the persistent session $bridge/up"),
        ("local_cleansession true", "waits"),
        ("local_cleansession false", "as in Midge"),
        ("bridge_attempt_unsubscribe true", "never unsubscribes at the remote"),
        ("bridge_attempt_unsubscribe false", "ends the subscriptions of rules no longer"),
        ("bridge_require_ocsp false", "do not check OCSP"),
        ("bridge_max_packet_size 0", "do not bound the size"),
        ("bridge_max_topic_alias 0", "no topic aliases"),
    ],
)
def test_options_midge_needs_no_key_for_are_notes(line, text):
    _table, left, toml = bridge(line + "\ntopic a\n")
    assert left == []
    assert text in note(toml, 4)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("bridge_alpn mqtt", "no ALPN"),
        ("bridge_ciphers HIGH", "Python's ssl defaults"),
        ("bridge_ciphers_tls1.3 TLS_AES_128_GCM_SHA256", "Python's ssl defaults"),
        ("bridge_bind_address 10.0.0.1", "the address the system chooses"),
        ("bridge_tcp_keepalive 60 10 3", "its MQTT keepalive"),
        ("bridge_tcp_user_timeout 1000", "its MQTT keepalive"),
        ("bridge_receive_maximum 10", "no Receive Maximum"),
        ("bridge_require_ocsp true", "do not check OCSP"),
        ("bridge_max_packet_size 1000", "do not bound the size"),
        ("bridge_max_topic_alias 10", "no topic aliases"),
    ],
)
def test_options_midge_lacks_are_reported_with_the_reason(line, why):
    _table, left, _toml = bridge(line + "\ntopic a\n")
    assert left == [(4, line)]
    _data, items, _toml = imported(HEAD + line + "\ntopic a\n")
    assert why in items[0].why


# ------------------------------------------------------------ TLS


def tls_of(lines: str) -> tuple[dict[str, Any], list[tuple[int, str]], str]:
    table, left, toml = bridge(lines + "topic a\n")
    keys = ("tls", "ca_file", "cert_file", "key_file", "insecure")
    return {key: table[key] for key in keys if key in table}, left, toml


def test_tls_needs_a_ca_option_as_in_mosquitto():
    keys, left, _toml = tls_of("bridge_cafile ca.crt\nbridge_insecure false\n")
    assert keys == {"tls": True, "ca_file": "/etc/mosquitto/ca.crt", "insecure": False}
    assert left == []
    # Without bridge_cafile / bridge_capath / bridge_tls_use_os_certs Mosquitto
    # connects in the clear: the client certificate is not used.
    keys, left, _toml = tls_of("bridge_certfile c.crt\nbridge_keyfile c.key\n")
    assert keys == {} and left == [(4, "bridge_certfile c.crt"), (5, "bridge_keyfile c.key")]


def test_the_system_cas_and_a_ca_folder():
    keys, left, toml = tls_of("bridge_tls_use_os_certs true\n")
    assert keys == {"tls": True} and left == []
    assert "the system's CA certificates" in toml
    keys, left, _toml = tls_of("bridge_capath /etc/ssl/certs\n")
    assert keys == {"tls": True}
    assert left == [(4, "bridge_capath /etc/ssl/certs")]
    keys, left, toml = tls_of("bridge_cafile ca.crt\nbridge_capath /etc/ssl/certs\n")
    assert keys == {"tls": True, "ca_file": "/etc/mosquitto/ca.crt"} and left == []
    assert "ca_file (bridge_cafile) only" in note(toml, 5)
    keys, left, _toml = tls_of("bridge_cafile ca.crt\nbridge_tls_use_os_certs true\n")
    assert keys == {"tls": True, "ca_file": "/etc/mosquitto/ca.crt"}
    assert left == [(5, "bridge_tls_use_os_certs true")]
    keys, left, toml = tls_of("bridge_tls_use_os_certs false\n")
    assert keys == {} and left == [] and "no TLS" in note(toml, 4)


def test_a_client_certificate_needs_its_key_and_tls_versions():
    keys, left, _toml = tls_of("bridge_cafile ca.crt\nbridge_certfile c.crt\n")
    assert keys == {"tls": True, "ca_file": "/etc/mosquitto/ca.crt"}
    assert left == [(5, "bridge_certfile c.crt")]
    _keys, left, toml = tls_of("bridge_cafile ca.crt\nbridge_tls_version tlsv1.2\n")
    assert left == [] and "TLS 1.2 or 1.3" in note(toml, 5)
    _keys, left, _toml = tls_of("bridge_cafile ca.crt\nbridge_tls_version tlsv1.3\n")
    assert left == [(5, "bridge_tls_version tlsv1.3")]


def test_tls_psk_leaves_the_bridge_out():
    data, left, _toml = imported(HEAD + "bridge_identity me\nbridge_psk 00ff\ntopic a\n")
    assert "bridges" not in data
    assert [item.line for item in left] == [2, 3, 4, 5, 6]
    assert "in the clear" in left[0].why
    assert "TLS-PSK" in left[2].why


# ------------------------------------------------------------ scopes


def test_a_bridge_ends_with_its_file_and_the_main_file_goes_on_with_its_own():
    def read_dir(folder: Path) -> list[tuple[Path, str]]:
        return [(folder / "b.conf", "topic in/included\nconnection inner\naddress i\ntopic x\n")]

    toml, left = translate(
        "connection outer\naddress o\ninclude_dir conf.d\ntopic after/include\n", CONF, read_dir
    )
    data = tomllib.loads(toml)
    assert [(item["name"], item["topics"]) for item in data["bridges"]] == [
        ("outer", [rule("after/include")]),
        ("inner", [rule("x")]),
    ]
    assert [(item.source, item.line) for item in left] == [("conf.d/b.conf", 1)]


def test_listener_lines_inside_a_bridge_block_do_not_end_it():
    data, left, _toml = imported(
        "connection up\naddress h\nlistener 1884\nmax_connections 5\ntopic a\n"
    )
    assert data["bridges"][0]["topics"] == [rule("a")]
    assert data["listeners"] == [{"port": 1884, "transport": "tcp"}]
    assert data["max_connections"] == 5 and left == []


# ------------------------------------------------------------ the TOML writer


def test_the_writer_writes_lists_and_inline_tables():
    assert value_text(["a:1883", 'b"']) == '["a:1883", "b\\""]'
    assert value_text({"pattern": "#", "qos": 1, "on": True}) == (
        '{ pattern = "#", qos = 1, on = true }'
    )
    table = Table("a bridge", "m:1", ("name", "topics"))
    table.set("topics", [Commented({"pattern": "a"}, "m:2"), Commented({"pattern": "b"}, "")], "m")
    table.set("name", "x", "m:1")
    text = render(CONF, Table(), [], [], [], [table])
    assert "[[bridges]]  # a bridge\nname = " in text
    assert '    { pattern = "a" },  # m:2\n    { pattern = "b" },\n]' in text
    topics = [{"pattern": "a"}, {"pattern": "b"}]
    assert tomllib.loads(text)["bridges"] == [{"name": "x", "topics": topics}]
