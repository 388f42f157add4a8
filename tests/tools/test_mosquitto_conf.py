"""The mosquitto.conf importer without sockets: every directive family, by example.

`translate` is sans-IO: include_dir folders come from a dictionary here. The
TOML each test gets is parsed back, and the complete outputs are loaded
through Midge's own config loader (`config_from_toml`), as `midge serve
--config` would load them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from midge.broker.config import ConfigError, config_from_toml
from midge.tools.mosquitto_conf import (
    BRIDGE_DIRECTIVES,
    LISTENER_DIRECTIVES,
    SECURITY_DIRECTIVES,
    mosquitto_order,
    parse,
    parse_duration,
)
from midge.tools.mosquitto_conf_rules import GLOBAL_RULES
from midge.tools.mosquitto_conf_translate import Untranslated, translate

CONF = Path("/etc/mosquitto/mosquitto.conf")


def imported(
    text: str, files: Mapping[str, Sequence[tuple[str, str]]] | None = None, conf: Path = CONF
) -> tuple[dict[str, Any], list[Untranslated]]:
    """(the TOML as a dict, the untranslated directives) of a mosquitto.conf text."""

    def read_dir(folder: Path) -> list[tuple[Path, str]]:
        if files is None or str(folder) not in files:
            raise FileNotFoundError(2, "No such file or directory")
        return [(folder / name, content) for name, content in files[str(folder)]]

    toml, left = translate(text, conf, read_dir)
    return tomllib.loads(toml), left


def reported(left: list[Untranslated]) -> list[tuple[int, str]]:
    return [(item.line, item.directive) for item in left]


# ------------------------------------------------------------ the file format


def test_parse_skips_comments_and_keeps_line_numbers_and_whole_values():
    directives = parse(
        "# comment\n\nlistener 1883\n  # indented comment\npassword_file /etc/a b\nport\t1884\n",
        "m.conf",
    )
    assert [(d.line, d.name, d.value) for d in directives] == [
        (3, "listener", "1883"),
        (5, "password_file", "/etc/a b"),  # a path is the rest of the line
        (6, "port", "1884"),
    ]
    assert directives[0].where == "m.conf:3"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2h", 7200),
        ("14d", 14 * 86400),
        ("1w", 7 * 86400),
        ("2m", 60 * 86400),  # Mosquitto's month is 30 days
        ("1y", 365 * 86400),
        ("0d", None),
        ("5", None),
        ("5s", None),
        ("-1d", None),
        ("d", None),
    ],
)
def test_durations_as_mosquitto_counts_them(text, seconds):
    assert parse_duration(text) == seconds


def test_include_dir_order_puts_each_capital_just_before_its_small_letter():
    names = ["b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf"]
    assert sorted(names, key=mosquitto_order) == [
        "00.conf",
        "01.conf",
        "A.conf",
        "a.conf",
        "B.conf",
        "b.conf",
    ]


# ------------------------------------------------------------ listeners


def test_no_listener_is_mosquittos_local_only_mode():
    data, left = imported("persistence false\n")
    assert (data["host"], data["port"]) == ("127.0.0.1", 1883)
    assert "listeners" not in data and "allow_anonymous" not in data
    config = config_from_toml(translate("", CONF)[0], "x", Path("/"))
    assert config.anonymous_allowed(config.effective_listeners()[0])  # as Mosquitto 2
    assert left == []


def test_the_default_listener_of_port_and_bind_address():
    data, left = imported("port 1884\nbind_address 10.0.0.1\nmax_connections 50\n")
    assert data["listeners"] == [{"port": 1884, "host": "10.0.0.1", "transport": "tcp"}]
    assert data["allow_anonymous"] is False  # Mosquitto 2, once a listener is configured
    assert data["max_connections"] == 50  # one listener: the same limit
    assert left == []


def test_listeners_and_their_transports_with_absolute_paths():
    data, left = imported(
        "listener 1883\n"
        "listener 8883 0.0.0.0\ncertfile certs/server.crt\nkeyfile /keys/server.key\n"
        "cafile certs/ca.crt\nrequire_certificate true\nuse_identity_as_username true\n"
        "tls_version tlsv1.3\n"
        "listener 9001 127.0.0.1\nprotocol websockets\n"
        "listener 9443\nprotocol websockets\ncertfile s.crt\nkeyfile s.key\n"
    )
    assert data["host"] == ""  # listeners without an address: every address
    assert data["listeners"] == [
        {"port": 1883, "transport": "tcp"},
        {
            "port": 8883,
            "host": "0.0.0.0",
            "transport": "tls",
            "certfile": "/etc/mosquitto/certs/server.crt",
            "keyfile": "/keys/server.key",
            "cafile": "/etc/mosquitto/certs/ca.crt",
            "require_certificate": True,
            "use_identity_as_username": True,
            "tls_version": "1.3",
        },
        {"port": 9001, "host": "127.0.0.1", "transport": "ws"},
        {
            "port": 9443,
            "transport": "wss",
            "certfile": "/etc/mosquitto/s.crt",
            "keyfile": "/etc/mosquitto/s.key",
        },
    ]
    assert left == []


def test_socket_domain_chooses_the_every_address_of_its_family():
    data, left = imported("listener 1883\nsocket_domain ipv4\nlistener 1884\nsocket_domain ipv6\n")
    assert [item["host"] for item in data["listeners"]] == ["0.0.0.0", "::"]
    assert left == []
    _data, left = imported("listener 1883 broker.example\nsocket_domain ipv4\n")
    assert reported(left) == [(2, "socket_domain ipv4")]


def test_listener_options_midge_lacks_are_reported_with_their_lines():
    _data, left = imported(
        "listener 8883\ncertfile c\nkeyfile k\ncapath /etc/ssl/certs\nciphers HIGH\n"
        "mount_point tenant/\nmax_qos 2\nhttp_dir /www\ntls_version tlsv1.1\n"
    )
    assert reported(left) == [
        (4, "capath /etc/ssl/certs"),
        (5, "ciphers HIGH"),
        (6, "mount_point tenant/"),  # max_qos 2 is Midge's behaviour: not reported
        (8, "http_dir /www"),
        (9, "tls_version tlsv1.1"),
    ]
    assert "mount points" in left[2].why


def test_a_listener_midge_cannot_open_is_left_out_with_every_line():
    data, left = imported(
        "listener 1883\n"
        "listener 8883\ncertfile c.crt\nmax_connections 5\n"  # no keyfile
        "listener 0 /run/mosquitto.sock\n"
    )
    assert [item["port"] for item in data["listeners"]] == [1883]
    assert reported(left) == [
        (2, "listener 8883"),
        (3, "certfile c.crt"),
        (4, "max_connections 5"),
        (5, "listener 0 /run/mosquitto.sock"),
    ]
    assert "both certfile and keyfile" in left[0].why
    assert "belongs to the listener of mosquitto.conf:2" in left[1].why
    assert "Unix socket" in left[3].why


def test_tls_options_on_a_plain_listener_are_reported_not_applied():
    data, left = imported("listener 1883\ncafile ca.crt\nrequire_certificate true\n")
    assert data["listeners"] == [{"port": 1883, "transport": "tcp"}]
    assert reported(left) == [(2, "cafile ca.crt"), (3, "require_certificate true")]


def test_per_listener_limits_become_global_only_when_they_mean_the_same():
    data, left = imported("listener 1\nmax_topic_alias 5\nlistener 2\nmax_topic_alias 5\n")
    assert data["max_topic_alias"] == 5 and left == []
    _data, left = imported("listener 1\nmax_connections 10\nlistener 2\nmax_connections 10\n")
    assert reported(left) == [(2, "max_connections 10"), (4, "max_connections 10")]
    data, left = imported("listener 1\nmax_connections -1\nlistener 2\n")
    assert "max_connections" not in data and left == []


# ------------------------------------------------------------ security


def test_global_security_settings_apply_wherever_they_are_written():
    data, left = imported(
        "listener 1883\nallow_anonymous true\npassword_file passwd\nacl_file /etc/acl\n"
        "listener 8883\ncertfile c\nkeyfile k\n"
    )
    assert data["allow_anonymous"] is True
    assert data["password_file"] == "/etc/mosquitto/passwd"
    assert data["acl_file"] == "/etc/acl"
    assert all("allow_anonymous" not in item for item in data["listeners"])
    assert left == []


def test_per_listener_settings_give_each_listener_its_anonymous_policy():
    data, left = imported(
        "per_listener_settings true\n"
        "listener 1883\nallow_anonymous true\npassword_file pw\nacl_file acl\n"
        "listener 8883\ncertfile c\nkeyfile k\npassword_file pw\nacl_file acl\n"
    )
    assert [item["allow_anonymous"] for item in data["listeners"]] == [True, False]
    assert "allow_anonymous" not in data
    assert (data["password_file"], data["acl_file"]) == ("/etc/mosquitto/pw", "/etc/mosquitto/acl")
    assert left == []


def test_per_listener_files_that_differ_are_reported():
    data, left = imported(
        "per_listener_settings true\nlistener 1883\npassword_file a\nacl_file acl\n"
        "listener 1884\npassword_file b\nacl_file acl\n"
    )
    assert "password_file" not in data and data["acl_file"] == "/etc/mosquitto/acl"
    assert reported(left) == [(3, "password_file a"), (6, "password_file b")]
    assert "one password_file for all listeners" in left[0].why
    _data, left = imported(
        "per_listener_settings true\nlistener 1883\npassword_file a\nlistener 1884\n"
    )
    assert reported(left) == [(3, "password_file a")]  # the second listener has none


def test_per_listener_settings_before_any_listener_set_the_unopened_default_listener():
    data, left = imported("per_listener_settings true\nallow_anonymous true\nlistener 1883\n")
    assert data["listeners"] == [{"port": 1883, "transport": "tcp", "allow_anonymous": False}]
    assert reported(left) == [(2, "allow_anonymous true")]


def test_plugins_and_psk_are_reported():
    _data, left = imported(
        "listener 1883\nplugin /usr/lib/dynamic-security.so\nplugin_opt_config_file x.json\n"
        "psk_file psk\nauth_opt_backend mysql\n"
    )
    assert [item.line for item in left] == [2, 3, 4, 5]
    assert "auth_hook" in left[0].why and "PSK" in left[2].why


# ------------------------------------------------------------ global settings


def test_persistence_maps_to_the_store_and_the_data_dir():
    data, left = imported("persistence true\npersistence_location data/\npersistence_file m.db\n")
    assert (data["store"], data["data_dir"]) == ("sqlite", "/etc/mosquitto/data")
    assert reported(left) == [(3, "persistence_file m.db")]
    data, _left = imported("")
    assert data["store"] == "memory"  # Mosquitto's default keeps nothing


def test_limits_and_delivery_settings():
    data, left = imported(
        "max_inflight_messages 0\nmax_queued_messages 500\nmax_queued_bytes 0\n"
        "max_keepalive 300\nmax_packet_size 1024\nqueue_qos0_messages true\n"
        "persistent_client_expiration 2w\nmessage_size_limit 0\nmax_inflight_bytes 0\n"
        "retain_available true\nset_tcp_nodelay true\nupgrade_outgoing_qos false\n"
    )
    assert {key: data[key] for key in data if key.startswith(("max_", "queue", "persistent"))} == {
        "max_inflight_messages": 65535,  # Mosquitto's 0: no limit
        "max_queued_messages": 500,
        "max_queued_bytes": 0,
        "max_keepalive": 300,
        "max_packet_size": 1024,
        "queue_qos0_messages": True,
        "persistent_session_expiry": 14 * 86400,
    }
    assert left == []


def test_settings_whose_meaning_midge_lacks_are_reported():
    _data, left = imported(
        "message_size_limit 1000\nmax_packet_size 10\nretain_available false\n"
        "autosave_interval 60\nuser mosquitto\npid_file /run/m.pid\n"
        "persistent_client_expiration 10\nno_such_option 1\nallow_anonymous maybe\n"
    )
    assert [item.line for item in left] == list(range(1, 10))
    assert "Mosquitto would refuse" in left[7].why  # the unknown directive
    assert str(left[0]).startswith("mosquitto.conf:1: message_size_limit 1000: ")


@pytest.mark.parametrize(
    ("lines", "level", "left_out"),
    [
        ([], None, []),
        (["all"], "debug", []),
        (["error", "warning", "notice", "information"], "info", []),
        (["notice"], "info", []),
        (["error", "warning"], "warning", []),
        (["error", "subscribe"], "error", [2]),
        (["none"], "error", [1]),
    ],
)
def test_log_types_become_a_log_level(lines, level, left_out):
    data, left = imported("".join(f"log_type {line}\n" for line in lines))
    assert data.get("log_level") == level
    assert [item.line for item in left] == left_out


def test_log_destinations_other_than_standard_error_are_reported():
    _data, left = imported("log_dest stderr\nlog_dest file /var/log/m.log\nlog_dest syslog\n")
    assert reported(left) == [(2, "log_dest file /var/log/m.log"), (3, "log_dest syslog")]


def test_a_bridge_option_before_any_connection_is_reported():
    """The bridges themselves: test_mosquitto_conf_bridges.py."""
    data, left = imported(
        "listener 1883\ntopic # out 1\nconnection upstream\naddress 10.0.0.1:1883\n"
        "topic # out 1\nmax_queued_messages 10\n"
    )
    assert reported(left) == [(2, "topic # out 1")]
    assert "no `connection` line before it" in left[0].why
    assert [bridge["name"] for bridge in data["bridges"]] == ["upstream"]
    assert data["max_queued_messages"] == 10  # a global option inside a bridge block


def test_a_setting_given_twice_counts_once_and_says_so():
    toml, left = translate("max_queued_messages 1\nmax_queued_messages 2\n", CONF)
    assert tomllib.loads(toml)["max_queued_messages"] == 2
    assert "replaced by mosquitto.conf:2" in toml
    assert left == []


# ------------------------------------------------------------ include_dir


def test_include_dir_reads_the_folder_in_mosquittos_order():
    data, left = imported(
        "include_dir conf.d\n",
        {
            "/etc/mosquitto/conf.d": [
                ("a.conf", "listener 1883\nmax_queued_messages 5\n"),
                ("b.conf", "cafile ca.crt\nmax_queued_messages 7\ninclude_dir more\n"),
            ]
        },
    )
    # b.conf's cafile comes before its first listener: the default listener's.
    assert [item["port"] for item in data["listeners"]] == [1883, 1883]
    assert data["max_queued_messages"] == 7
    assert [(item.source, item.line, item.directive) for item in left] == [
        ("conf.d/b.conf", 1, "cafile ca.crt"),  # no certfile on that listener
        ("conf.d/b.conf", 3, "include_dir more"),  # read only from the main file
    ]


def test_an_unreadable_include_dir_is_reported():
    _data, left = imported("include_dir /nowhere\n")
    assert reported(left) == [(1, "include_dir /nowhere")]
    _toml, left = translate("include_dir conf.d\n", CONF)  # no reader given
    assert reported(left) == [(1, "include_dir conf.d")]


# ------------------------------------------------------------ the whole file


def test_the_output_loads_through_midges_config_loader(tmp_path):
    for name in ("passwd", "acl", "server.crt", "server.key", "ca.crt"):
        (tmp_path / name).write_text("x\n", encoding="utf-8")
    (tmp_path / "data").mkdir()
    conf = tmp_path / "mosquitto.conf"
    toml, left = translate(
        "per_listener_settings true\npersistence true\npersistence_location data\n"
        "listener 1883 127.0.0.1\nallow_anonymous true\npassword_file passwd\nacl_file acl\n"
        "listener 8883\ncertfile server.crt\nkeyfile server.key\ncafile ca.crt\n"
        "require_certificate true\npassword_file passwd\nacl_file acl\n"
        "listener 9001\nprotocol websockets\npassword_file passwd\nacl_file acl\n"
        "log_type all\nmax_keepalive 120\n",
        conf,
    )
    assert left == []
    config = config_from_toml(toml, "imported", Path("/somewhere/else"))
    assert [item.transport for item in config.effective_listeners()] == ["tcp", "tls", "ws"]
    assert [config.anonymous_allowed(item) for item in config.effective_listeners()] == [
        True,
        False,
        False,
    ]
    assert config.password_file == str(tmp_path / "passwd")
    assert (config.store, config.data_dir, config.log_level) == (
        "sqlite",
        str(tmp_path / "data"),
        "debug",
    )
    assert toml.startswith("# Midge configuration imported from ")
    assert "resolved against" in toml and "# mosquitto.conf:20" in toml


def test_a_missing_file_shows_when_the_output_is_loaded(tmp_path):
    toml, _left = translate("listener 1883\npassword_file nothere\n", tmp_path / "m.conf")
    with pytest.raises(ConfigError, match=str(tmp_path / "nothere")):
        config_from_toml(toml, "imported", tmp_path)


def test_untranslated_lines_close_the_toml_too():
    toml, left = translate("user mosquitto\nlistener 1883\n", CONF)
    assert len(left) == 1
    assert toml.rstrip().endswith(str(left[0]))
    assert "1 directive(s) could not be translated" in toml


def test_local_only_mode_admits_anonymous_clients_whatever_the_file_says():
    """Mosquitto 2.0.11 without a listener admits local anonymous clients even with
    `allow_anonymous false` (checked by hand); the import reports the line."""
    data, left = imported("allow_anonymous false\n")
    assert "allow_anonymous" not in data and "listeners" not in data
    assert reported(left) == [(1, "allow_anonymous false")]
    data, left = imported("allow_anonymous true\n")
    assert "allow_anonymous" not in data and left == []


def test_a_per_listener_password_file_before_any_listener_opens_the_default_one():
    """As in Mosquitto: with per_listener_settings, password_file configures the
    default listener (port 1883, every address), which it thereby opens."""
    data, left = imported("per_listener_settings true\npassword_file pw\n")
    assert data["listeners"] == [{"port": 1883, "transport": "tcp", "allow_anonymous": False}]
    assert data["password_file"] == "/etc/mosquitto/pw" and data["host"] == ""
    assert left == []


ALL_DIRECTIVES = sorted(
    BRIDGE_DIRECTIVES
    | LISTENER_DIRECTIVES
    | SECURITY_DIRECTIVES
    | GLOBAL_RULES.keys()
    | {"listener", "port", "bind_address", "include_dir", "log_type", "log_dest"}
    | {"persistence", "persistence_location", "persistence_file", "per_listener_settings"}
)


@pytest.mark.parametrize("value", ["", "junk", "-1", "true", "0"])
@pytest.mark.parametrize("context", ["", "per_listener_settings true\nlistener 1883\n"])
def test_any_directive_with_any_value_gives_a_toml_that_parses(value, context):
    """No line makes the importer fail: each is translated, noted or reported."""
    text = context + "".join(f"{name} {value}\n" for name in ALL_DIRECTIVES)
    toml, left = translate(text, CONF)
    tomllib.loads(toml)
    lines = {item.line for item in left}
    assert all(1 <= line <= text.count("\n") for line in lines)


REALISTIC = """\
per_listener_settings true
user mosquitto
pid_file /run/mosquitto.pid
port 1883
bind_address 127.0.0.1
allow_anonymous true
persistence false
persistence true
persistence_location /var/lib/mosquitto/
log_dest stderr
log_dest syslog
log_type error
log_type warning
log_type information
max_queued_messages 100
max_queued_messages 200
listener 8883
certfile a.crt
keyfile a.key
cafile ca.crt
certfile b.crt
require_certificate true
use_identity_as_username true
password_file pw
acl_file acl
listener 9001
protocol websockets
max_connections 10
connection b
address h
topic # both
"""


@pytest.mark.parametrize(
    "text",
    [REALISTIC]
    + [
        context + "".join(f"{name} {value}\n" for name in ALL_DIRECTIVES)
        for context in ("", "per_listener_settings true\nlistener 1883\n")
        for value in ("", "junk", "true", "false", "0", "10", "2")
    ],
)
def test_no_line_is_dropped_silently(text):
    """Each directive line is named in the TOML: by a key it set, a note, or the
    untranslated list."""
    toml, _left = translate(text, CONF)
    named = {int(line) for line in re.findall(r"mosquitto\.conf:(\d+)", toml)}
    silent = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if number not in named
    ]
    assert silent == []


def test_sys_interval_is_translated():
    data, left = imported("sys_interval 30\n")
    assert data["sys_interval"] == 30 and left == []
    data, left = imported("sys_interval 0\n")  # off in both
    assert data["sys_interval"] == 0 and left == []
